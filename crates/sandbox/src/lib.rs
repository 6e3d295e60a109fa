//! The sandbox: a wasmtime engine, a linker that offers only what Cordon
//! grants, and one store per step run.
//!
//! Resolved [`Grants`] go in, a [`RunOutcome`] comes out. This crate must
//! never read a manifest, open a path the plan did not resolve, publish an
//! output or write a record (the engine does); like
//! `WasiCtxBuilder`, nothing is available to the guest until a grant adds it:
//!
//! - **Filesystem**: one WASI preopen per mount, read-only or read-write. No
//!   ambient filesystem, no current directory.
//! - **Environment and arguments**: exactly the granted ones; nothing is
//!   inherited from the runner.
//! - **Network**: `wasi:sockets` is not linked at all. A component that
//!   imports it still instantiates (Rust's standard library may import it
//!   without using it), but every socket function is a stub that traps with
//!   "network access denied": there is no socket, no DNS, not even a
//!   denied one. `wasi:http` is linked only for a step with a `[network]`
//!   grant (see [`net`]); without one its functions trap the same way.
//! - **Clock and randomness**: unless the grants say otherwise, a wall clock
//!   fixed to one instant and random streams from one seed
//!   ([`determinism`]). Float NaN bits are the CPU's unless the step asks
//!   for canonical NaNs ([`FloatMode`]). The same inputs then give the same
//!   outputs on any machine of the same CPU architecture (on any machine at
//!   all with canonical NaNs).
//! - **Stdin** is empty; stdout/stderr go through [`stdio::Capture`].
//! - **Limits**: fuel (instructions), linear memory (a [`ResourceLimiter`]),
//!   wall time (epoch interruption plus an async timeout, so a step blocked in
//!   a host call such as `sleep` is stopped too), and output bytes (a
//!   watchdog thread that measures the output mounts while the step runs).
//!
//! The sandbox has the three moments of Spin's factors: once per engine
//! ([`Sandbox::new`] builds the linker), once per component
//! ([`Sandbox::load`] compiles or loads the cached artifact and
//! pre-instantiates), once per run ([`Sandbox::run`] builds the store).

#![deny(unsafe_code)]
#![deny(missing_docs)]

#[macro_use]
extern crate cordon_core;

pub mod compiled;
pub mod determinism;
pub mod host;
pub mod net;
pub mod stdio;

pub use determinism::Determinism;

use cordon_core::digest::charged_bytes;
use cordon_manifest::manifest::{FloatMode, Limits, Sha256Digest};
use cordon_secrets::{Redactor, ResolvedSecret};
use host::{CordonData, CordonHost, CordonView, Report, SecretAudit};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use stdio::{Capture, Forward, StreamSummary};
use wasmtime::component::{
    Component, HasData, Linker, ResourceTable, ResourceTableError, ResourceType,
};
use wasmtime::{Config, Engine, ResourceLimiter, Store, Trap};
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// How often the epoch ticks. A CPU-bound step yields to the runner's
/// executor at every tick, which is how the wall-clock timeout and the output
/// watchdog can stop a step that never calls the host. 10 ms keeps the
/// stopping delay small at a negligible cost (one check per tick).
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// How often the output watchdog measures the output mounts. The overshoot
/// past the output limit is at most what the step can write in this time
/// plus one measurement.
pub const OUTPUT_POLL: Duration = Duration::from_millis(20);

/// Most core instances, tables and memories one step may create. A
/// component made by a normal toolchain needs a handful; the bound stops a
/// crafted component from making the host allocate without limit.
const MAX_INSTANCES: usize = 1_000;
const MAX_TABLES: usize = 1_000;
const MAX_MEMORIES: usize = 100;
/// Most elements in one table (function references): 10M is far beyond any
/// real program and bounds host memory spent on tables (~80 MB).
const MAX_TABLE_ELEMENTS: usize = 10_000_000;

/// Most resources a step may hold at once: open files and directories,
/// streams, HTTP header maps, requests, responses, secret handles. Each one
/// is host memory (and some a host descriptor) the guest chooses to
/// allocate, outside its linear-memory limit; wasmtime's default table
/// allows millions. A real step holds dozens; 2,048 leaves room for deep
/// directory walks and many open files while bounding the host side.
pub const MAX_RESOURCES: usize = 2_048;

/// Most bytes one `wasi:http` header map (`fields`) may hold. wasmtime's
/// default is 128 KiB per map, and a guest may create maps without sending
/// them: with [`MAX_RESOURCES`] of them that was 256 MiB of runner memory
/// whatever the step's memory limit. 16 KiB is what common servers accept
/// for all request headers together, and bounds header maps to
/// `MAX_RESOURCES × 16 KiB` = 32 MiB of host memory, documented in
/// docs/network.md. Bodies are bounded by `[limits] request-bytes`.
pub const MAX_HTTP_FIELDS_BYTES: usize = 16 * 1024;

/// Errors of the runner itself, or of a component that cannot run at all.
/// A step that runs and fails is not an error: it is a [`Termination`].
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The engine could not be configured.
    #[error("cannot set up the wasm engine: {0}")]
    Engine(String),
    /// The bytes are not a valid component, or it needs imports Cordon does
    /// not provide.
    #[error("{0}")]
    InvalidComponent(String),
    /// With [`SandboxOptions::cached_only`]: the component has no usable
    /// compiled artifact in the cache for this sandbox's engine (none yet,
    /// the cache is off, or the artifact does not fit the pooling
    /// allocator's slots). Nothing was compiled.
    #[error("no usable compiled artifact in the cache: {0}")]
    NotCached(String),
    /// A filesystem problem while preparing the run.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

fn wasm_err(e: wasmtime::Error) -> String {
    format!("{e:#}")
}

/// A directory the guest sees.
#[derive(Debug, Clone)]
pub struct Preopen {
    /// Host directory (already resolved and checked by the plan).
    pub host: PathBuf,
    /// Absolute guest path.
    pub guest: String,
    /// Whether the guest may create, change and delete entries.
    pub writable: bool,
}

/// A directory whose growth counts against the output limit.
#[derive(Debug, Clone)]
pub struct Watched {
    /// The directory.
    pub path: PathBuf,
    /// Its charged size when the run starts (not counted).
    pub baseline: u64,
}

/// Everything the step is granted, resolved.
#[derive(Debug, Clone)]
pub struct Grants {
    /// argv, starting with the step name.
    pub argv: Vec<String>,
    /// The environment, exactly.
    pub env: Vec<(String, String)>,
    /// Directories.
    pub preopens: Vec<Preopen>,
    /// Secrets with their values.
    pub secrets: Vec<ResolvedSecret>,
    /// Limits.
    pub limits: Limits,
    /// Directories the output limit applies to.
    pub outputs: Vec<Watched>,
    /// Set from outside (Ctrl-C) to stop the step.
    pub cancel: Option<cordon_core::cancel::Cancel>,
    /// Fixed clock and seeded randomness, when the run is reproducible.
    pub determinism: Determinism,
    /// The destinations the step may reach over `wasi:http`.
    pub network: Option<cordon_manifest::manifest::NetworkGrant>,
    /// For secrets with the `http-header` use: the hosts each is bound to.
    pub secret_hosts: BTreeMap<String, Vec<String>>,
}

/// Where the step's stdout/stderr go.
#[derive(Debug, Clone)]
pub struct Stdio {
    /// Prefix for forwarded lines, e.g. `[train] `.
    pub prefix: String,
    /// Where stdout is forwarded.
    pub stdout: Forward,
    /// Where stderr is forwarded.
    pub stderr: Forward,
    /// Capture files; `None` keeps only the digest.
    pub stdout_log: Option<PathBuf>,
    /// Capture file for stderr.
    pub stderr_log: Option<PathBuf>,
}

impl Stdio {
    /// Nothing forwarded, nothing kept but the digests: for re-execution and
    /// measurement.
    pub fn discard() -> Stdio {
        Stdio {
            prefix: String::new(),
            stdout: Forward::None,
            stderr: Forward::None,
            stdout_log: None,
            stderr_log: None,
        }
    }
}

pub use cordon_record::run::{LimitKind, Termination, Usage};

/// What happened in one run.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// How it ended.
    pub termination: Termination,
    /// What it consumed.
    pub usage: Usage,
    /// The step's stdout.
    pub stdout: StreamSummary,
    /// The step's stderr.
    pub stderr: StreamSummary,
    /// Facts the step reported.
    pub report: Report,
    /// Per granted secret: uses and refusals.
    pub secrets: BTreeMap<String, SecretAudit>,
    /// Secret names requested but not granted, with counts.
    pub secrets_not_granted: BTreeMap<String, u64>,
    /// Every HTTP request the step made or tried to make, up to
    /// [`net::MAX_RECORDED_CALLS`].
    pub network: Vec<net::NetworkCall>,
    /// The calls past that bound, counted.
    pub network_omitted: Option<net::OmittedCalls>,
}

/// A compiled, pre-instantiated component. Cloning it is cheap (the
/// compiled code is shared), so the steps of a pipeline that run the same
/// component share one.
#[derive(Clone)]
pub struct StepComponent {
    pre: CommandPre<StepState>,
    /// The engine it was compiled for; its stores are made with it.
    engine: Engine,
    /// Whether the compiled artifact came from the on-disk cache.
    pub from_cache: bool,
}

/// Tracks and bounds linear memory. Returning an error (not `false`) from
/// `memory_growing` traps at once, so the run is reported as a memory-limit
/// stop rather than as whatever the guest's allocator does on failure.
struct MemoryLimiter {
    limit: u64,
    /// Bytes of all linear memories together.
    total: u64,
    peak: u64,
    exceeded: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // The limiter is told one memory's sizes, not which memory; it is
        // also called for each memory's initial allocation (current = 0), so
        // charging every delta to one total bounds all memories together.
        let total = self.total + desired.saturating_sub(current) as u64;
        if total > self.limit {
            self.exceeded = true;
            wasmtime::bail!(
                "memory limit of {} bytes exceeded (the step asked for {total})",
                self.limit
            );
        }
        self.total = total;
        self.peak = self.peak.max(total);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

/// Per-run store data.
pub struct StepState {
    wasi: WasiCtx,
    table: ResourceTable,
    cordon: CordonHost,
    limiter: MemoryLimiter,
    /// `wasi:http` state; present only with a network grant (and only then
    /// is `wasi:http` linked).
    http: Option<(wasmtime_wasi_http::WasiHttpCtx, net::NetHooks)>,
}

impl wasmtime_wasi_http::WasiHttpView for StepState {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        let (ctx, hooks) = self
            .http
            .as_mut()
            .expect("wasi:http is linked only for runs with a network grant");
        wasmtime_wasi_http::WasiHttpCtxView {
            ctx,
            table: &mut self.table,
            hooks,
        }
    }
}

impl WasiView for StepState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

struct HasIo;

impl HasData for HasIo {
    type Data<'a> = &'a mut ResourceTable;
}

/// Ticks the engine's epoch until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// How the engine is set up; the defaults are what `cordon run` uses.
#[derive(Debug, Clone, Copy, Default)]
pub struct SandboxOptions {
    /// Use wasmtime's pooling allocator: instance slots (memories, tables)
    /// reserved once up front and reused, instead of mapped per instance.
    /// Instantiation gets cheaper, at the price of reserving virtual address
    /// space for `pool_slots` instances at start-up, which only pays off
    /// when one process runs many steps. Each slot's memory and tables are
    /// zeroed in place ([`KEEP_RESIDENT`]) rather than unmapped when a step
    /// ends, which spares the other cores the TLB shootdown of an unmap;
    /// its fiber stack is zeroed too ([`KEEP_RESIDENT_STACK`]).
    /// A component that does not fit a slot fails to load with this
    /// option; [`Sandbox::load_step`] says so, and the caller may load it
    /// into a sandbox without pooling instead.
    pub pooling: bool,
    /// With `pooling`: the largest memory limit of the steps this sandbox
    /// runs, so that a slot never refuses growth the step's own limit
    /// allows (at least 4 GiB, the whole of a 32-bit memory).
    pub pool_max_memory: u64,
    /// With `pooling`: how many steps may run at once, each a slot; 0 is
    /// [`POOL_SLOTS`]. Every slot reserves address space up front (4 GiB and
    /// more per memory), so a pool sized for the steps that really run at
    /// once stays within an address-space limit that one run fits in.
    pub pool_slots: u32,
    /// Load components only from the compile cache and never compile: a
    /// miss, or an artifact this engine cannot use, is
    /// [`SandboxError::NotCached`]. For a pooled sandbox tried first, with
    /// one without pooling to fall back on.
    pub cached_only: bool,
    /// Measurement only (benchmarks attribute the cost of each guarantee
    /// with it): compile without fuel metering, so the fuel limit is not
    /// enforced. `cordon` never sets it.
    pub without_fuel: bool,
}

/// Components at least this large are announced while they compile, with
/// their size and then how long it took. Compile time grows with code
/// size: an interpreter-sized component (componentize-py's are about
/// 18 MiB) takes long enough on its first run that silence looks like a
/// hang, while steps below this size compile quickly and stay quiet.
pub const ANNOUNCE_COMPILE_BYTES: usize = 4 << 20;

/// The most slots a pool has, and its size when [`SandboxOptions::pool_slots`]
/// is 0: a pipeline that runs more steps at once goes without pooling.
pub const POOL_SLOTS: u32 = 64;

/// Bytes of each pooled linear memory (and table) zeroed with `memset` when
/// a step ends instead of being given back to the kernel: a trivial step
/// touches about 1 MiB, and giving pages back (`madvise`) makes the kernel
/// flush every core's TLB for them.
pub const KEEP_RESIDENT: usize = 2 << 20;

/// Bytes at the top of each pooled fiber stack (where a step's host calls
/// run) zeroed with `memset` when a step ends; the rest is given back.
pub const KEEP_RESIDENT_STACK: usize = 64 << 10;

/// One engine (one set of compiler settings) and its linker.
struct Kit {
    engine: Engine,
    linker: Linker<StepState>,
}

/// The engines, their linkers, and the compiled-component cache.
pub struct Sandbox {
    /// For steps with the CPU's own NaNs (the default, `floats = "native"`).
    native: Kit,
    /// For steps with `floats = "canonical"`, made on first use; shared with
    /// the epoch thread, which ticks both engines.
    canonical: Arc<std::sync::OnceLock<Kit>>,
    options: SandboxOptions,
    /// The compiled-component cache and the key that seals its artifacts
    /// (see [`crate::compiled`]); without a key nothing is cached.
    cache: Option<(PathBuf, crate::compiled::CacheKey)>,
    _ticker: EpochTicker,
}

/// An engine and linker with the sandbox's settings; `canonical_nans` says
/// whether float results have their NaNs canonicalized.
fn make_kit(options: &SandboxOptions, canonical_nans: bool) -> Result<Kit, SandboxError> {
    let mut config = Config::new();
    if options.pooling {
        let mut pool = wasmtime::PoolingAllocationConfig::default();
        let slots = match options.pool_slots {
            0 => POOL_SLOTS,
            n => n,
        };
        // Room for what a normal toolchain's component declares (an
        // interpreter's included). Each limit per component times the slots
        // is the pool's total, so any component that loads can run in
        // every slot at once; one beyond a limit fails to load, never to
        // instantiate. Growth is bounded as without pooling: tables by
        // MAX_TABLE_ELEMENTS, memories by the step's own limit (the
        // store's limiter), never by a smaller slot.
        pool.total_component_instances(slots)
            .max_core_instances_per_component(16)
            .total_core_instances(slots * 16)
            .max_memories_per_component(4)
            .total_memories(slots * 4)
            .max_tables_per_component(8)
            .total_tables(slots * 8)
            // One fiber stack per call into a step; room for more, since a
            // stack that runs out fails a call, not a load.
            .total_stacks(slots * 4)
            .max_memories_per_module(4)
            .max_tables_per_module(8)
            .max_core_instance_size(16 << 20)
            .max_component_instance_size(16 << 20)
            .table_elements(MAX_TABLE_ELEMENTS)
            .max_memory_size(options.pool_max_memory.max(4 << 30) as usize)
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT)
            .async_stack_keep_resident(KEEP_RESIDENT_STACK);
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        // A reused fiber stack would still hold the last step's frames: its
        // wasm locals spilled there and the host frames of its calls (its
        // secret uses among them). Compiled code never reads a stack slot
        // before writing it, but a fresh mapping held nothing, and a
        // reused one must not either (wasmtime's defense in depth for
        // pooled stacks).
        config.async_stack_zeroing(true);
    }
    config.wasm_component_model(true);
    config.consume_fuel(!options.without_fuel);
    config.epoch_interruption(true);
    config.cranelift_nan_canonicalization(canonical_nans);
    let engine = Engine::new(&config).map_err(|e| SandboxError::Engine(wasm_err(e)))?;
    let linker = base_linker(&engine).map_err(|e| SandboxError::Engine(wasm_err(e)))?;
    Ok(Kit { engine, linker })
}

impl Sandbox {
    /// An engine with fuel and epoch interruption on, and a linker with WASI
    /// (minus sockets) and the Cordon interfaces. Compiled components are
    /// cached in `cache_dir` when given.
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Sandbox, SandboxError> {
        Sandbox::with_options(cache_dir, SandboxOptions::default())
    }

    /// Like [`Sandbox::new`], set up as `options` say.
    pub fn with_options(
        cache_dir: Option<PathBuf>,
        options: SandboxOptions,
    ) -> Result<Sandbox, SandboxError> {
        let native = make_kit(&options, false)?;
        let canonical: Arc<std::sync::OnceLock<Kit>> = Default::default();

        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            let engine = native.engine.clone();
            let canonical = canonical.clone();
            std::thread::Builder::new()
                .name("cordon-epoch".into())
                .spawn(move || {
                    // Parked rather than asleep, so that dropping the
                    // sandbox wakes it at once instead of waiting out a tick
                    // (which would add up to a tick to every `cordon run`).
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::park_timeout(EPOCH_TICK);
                        engine.increment_epoch();
                        if let Some(canonical) = canonical.get() {
                            canonical.engine.increment_epoch();
                        }
                    }
                })
                .map_err(|e| SandboxError::Io {
                    what: "cannot start the epoch thread".into(),
                    source: e,
                })?
        };
        let cache = cache_dir.and_then(|dir| {
            let key = crate::compiled::key_path()
                .ok_or_else(|| {
                    std::io::Error::other(
                        "no place for its key: neither CORDON_SECRETS_HOME, XDG_CONFIG_HOME nor HOME is set",
                    )
                })
                .and_then(|p| crate::compiled::CacheKey::load_or_create(&p));
            match key {
                Ok(key) => Some((dir, key)),
                Err(e) => {
                    // Without a key an artifact could not be checked, so none
                    // is loaded: every run compiles.
                    tracing::warn!("compiled components are not cached: {e}");
                    None
                }
            }
        });
        Ok(Sandbox {
            native,
            canonical,
            options,
            cache,
            _ticker: EpochTicker {
                stop,
                thread: Some(thread),
            },
        })
    }

    /// The path the compiled form of `digest` is cached at. The name binds
    /// the component digest and the engine's compatibility hash (wasmtime
    /// version, compiler settings, CPU features), so a changed engine never
    /// loads an artifact compiled for another.
    fn cache_path(&self, engine: &Engine, digest: &Sha256Digest) -> Option<PathBuf> {
        use std::hash::{Hash, Hasher};
        let (dir, _) = self.cache.as_ref()?;
        let mut h = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        Some(dir.join(format!("{}-{:016x}.cwasm", digest.hex(), h.finish())))
    }

    /// Compiles the component (whose digest the plan has verified to be
    /// `digest`) or loads the cached compilation, and pre-instantiates it
    /// for a step without network access.
    pub fn load(
        &self,
        digest: &Sha256Digest,
        component: &cordon_manifest::plan::ComponentBytes,
    ) -> Result<StepComponent, SandboxError> {
        self.load_step(digest, component, false, FloatMode::default())
    }

    /// The engine and linker for `floats`, the canonical one made on first
    /// use.
    fn kit(&self, floats: FloatMode) -> Result<&Kit, SandboxError> {
        match floats {
            FloatMode::Native => Ok(&self.native),
            FloatMode::Canonical => {
                if self.canonical.get().is_none() {
                    // Should two loads race, one kit wins and both the loads
                    // and the epoch thread use that one.
                    let _ = self.canonical.set(make_kit(&self.options, true)?);
                }
                Ok(self.canonical.get().expect("set just above"))
            }
        }
    }

    /// Like [`Sandbox::load`], with network linking and compiled for the step's float mode: with
    /// [`FloatMode::Canonical`], an engine with NaN canonicalization (and
    /// its own compiled-cache entries) runs it.
    pub fn load_step(
        &self,
        digest: &Sha256Digest,
        source: &cordon_manifest::plan::ComponentBytes,
        network: bool,
        floats: FloatMode,
    ) -> Result<StepComponent, SandboxError> {
        let kit = self.kit(floats)?;
        let cache = self.cache_path(&kit.engine, digest);
        let mut from_cache = false;
        let mut component = None;
        if let (Some(path), Some((_, key))) = (&cache, &self.cache) {
            component = self.load_sealed(&kit.engine, key, path);
            from_cache = component.is_some();
        }
        let component = match component {
            Some(c) => c,
            None if self.options.cached_only => {
                return Err(SandboxError::NotCached(format!("component {digest}")));
            }
            None => {
                // Only a compile needs the bytes: a cached compilation of the
                // pinned digest runs without the file being read at all.
                let bytes = source.get().map_err(|e| {
                    SandboxError::InvalidComponent(format!("cannot read the component: {e}"))
                })?;
                let bytes: &[u8] = &bytes;
                let announce = bytes.len() >= ANNOUNCE_COMPILE_BYTES;
                let started = Instant::now();
                if announce {
                    say!(
                        "cordon: compiling component {} ({}) to native code; {}",
                        digest,
                        cordon_core::units::format_size(bytes.len() as u64),
                        if cache.is_some() {
                            "the result is cached, so this happens once (`cordon compile` does it ahead of time)"
                        } else {
                            "the compile cache is off (see the warning above), so every run compiles"
                        }
                    );
                }
                let c = Component::new(&kit.engine, bytes)
                    .map_err(|e| SandboxError::InvalidComponent(explain_invalid(bytes, e)))?;
                if announce {
                    say!(
                        "cordon: compiled component {} in {:.1} s",
                        digest,
                        started.elapsed().as_secs_f64()
                    );
                }
                if let Some(path) = &cache {
                    self.store_compiled(&c, path);
                }
                c
            }
        };
        let mut linker = kit.linker.clone();
        if network {
            wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
                .map_err(|e| SandboxError::Engine(wasm_err(e)))?;
        }
        stub_absent_imports(&kit.engine, &mut linker, &component, !network)
            .map_err(|e| SandboxError::InvalidComponent(wasm_err(e)))?;
        let pre = linker.instantiate_pre(&component).map_err(|e| {
            SandboxError::InvalidComponent(format!(
                "the component needs imports Cordon does not provide: {}\n  fix: a step may import WASI 0.2 cli, clocks, filesystem, io, random, and the cordon:step interfaces",
                wasm_err(e)
            ))
        })?;
        let pre = CommandPre::new(pre).map_err(|e| {
            SandboxError::InvalidComponent(format!(
                "the component is not a WASI command (it must export wasi:cli/run): {}\n  fix: build a binary crate for wasm32-wasip2 (`fn main`)",
                wasm_err(e)
            ))
        })?;
        Ok(StepComponent {
            pre,
            engine: kit.engine.clone(),
            from_cache,
        })
    }

    /// The cached compilation at `path`, when there is one and its seal
    /// holds; otherwise `None` (with a warning for a file that is there but
    /// refused), and the caller recompiles. The crate's one `unsafe` block
    /// (loading native code) is here.
    #[allow(unsafe_code)]
    fn load_sealed(
        &self,
        engine: &Engine,
        key: &crate::compiled::CacheKey,
        path: &Path,
    ) -> Option<Component> {
        let name = path.file_name()?.to_str()?;
        let artifact =
            match cordon_core::fsutil::read_regular(path, crate::compiled::MAX_ARTIFACT_BYTES) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
                Err(e) => return self.unusable(path, &format!("cannot be read: {e}")),
            };
        let serialized = match key.open(name, &artifact) {
            Ok(s) => s,
            Err(e) => return self.unusable(path, &e.to_string()),
        };
        // SAFETY: `serialized` is, byte for byte, what `store_compiled` got
        // from `Component::serialize` of this engine for this file name: its
        // keyed BLAKE3 tag, checked just above over the bytes in memory (so
        // the file cannot change between check and use), is keyed with a
        // secret kept outside the cache directory, 0600 in the user's
        // secrets home, which no step can mount (see `crate::compiled`).
        // Forging it takes that key, that is, the user's own files.
        // wasmtime's header check then rejects an artifact of another
        // engine configuration (and a pooled engine one too large for its
        // slots, which a sandbox without pooling uses as it is).
        match unsafe { Component::deserialize(engine, serialized) } {
            Ok(c) => Some(c),
            Err(e) => self.unusable(path, &wasm_err(e)),
        }
    }

    /// Reports a cached artifact this sandbox cannot use, and returns no
    /// component. A sandbox that compiles says it does so now; one that
    /// only loads from the cache compiles nothing, and the sandbox its
    /// caller falls back to reports the artifact itself if it is bad.
    fn unusable(&self, path: &Path, why: &str) -> Option<Component> {
        let why = cordon_core::sanitize::escape_lines(why);
        if self.options.cached_only {
            tracing::debug!("compiled component {}: {why}", path.display());
        } else {
            tracing::warn!(
                "compiled component {} is unusable ({why}); recompiling",
                path.display()
            );
        }
        None
    }

    fn store_compiled(&self, component: &Component, path: &Path) {
        let Some((_, key)) = &self.cache else {
            return;
        };
        let result = (|| -> std::io::Result<()> {
            let bytes = component
                .serialize()
                .map_err(|e| std::io::Error::other(wasm_err(e)))?;
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| std::io::Error::other("cache file names are UTF-8"))?;
            let sealed = key.seal(name, &bytes);
            if let Some(dir) = path.parent() {
                cordon_core::fsutil::create_private_dir(dir)?;
            }
            cordon_core::fsutil::write_atomic(path, &sealed)
        })();
        if let Err(e) = result {
            // The cache is an optimisation: a failure costs a recompile next
            // time, never the run.
            tracing::warn!(
                "cannot cache the compiled component at {}: {e}",
                path.display()
            );
        }
    }

    /// Runs the step once with exactly `grants`.
    pub fn run(
        &self,
        component: &StepComponent,
        grants: Grants,
        stdio: Stdio,
    ) -> Result<RunOutcome, SandboxError> {
        let redactor = Redactor::new(&grants.secrets);
        let io = |what: &str, e| SandboxError::Io {
            what: what.into(),
            source: e,
        };
        let out = Capture::new(
            stdio.prefix.clone(),
            stdio.stdout,
            redactor.clone(),
            stdio.stdout_log.clone(),
            grants.limits.stdout,
        )
        .map_err(|e| io("cannot create the stdout capture file", e))?;
        let err = Capture::new(
            stdio.prefix.clone(),
            stdio.stderr,
            redactor.clone(),
            stdio.stderr_log.clone(),
            grants.limits.stdout,
        )
        .map_err(|e| io("cannot create the stderr capture file", e))?;

        let mut b = WasiCtxBuilder::new();
        b.args(&grants.argv);
        for (k, v) in &grants.env {
            b.env(k, v);
        }
        for p in &grants.preopens {
            let perms = if p.writable {
                FsPerms::ReadWrite
            } else {
                FsPerms::ReadOnly
            };
            b.preopened_dir(&p.host, &p.guest, perms)
                .map_err(|e| SandboxError::Io {
                    what: format!("cannot open {} for mount {}", p.host.display(), p.guest),
                    source: std::io::Error::other(wasm_err(e)),
                })?;
        }
        b.stdout(out.clone());
        b.stderr(err.clone());
        // Belt and braces: sockets are not linked at all, but should a later
        // change link them, the context still grants no address and no DNS.
        b.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        determinism::apply(&grants.determinism, &mut b);

        let limits = grants.limits;
        let mut cordon = CordonHost::new(grants.secrets.clone());
        let http = grants.network.as_ref().map(|grant| {
            let bound: Vec<net::Bound> = grants
                .secrets
                .iter()
                .filter(|s| {
                    s.uses
                        .contains(&cordon_manifest::manifest::SecretUse::HttpHeader)
                })
                .map(|s| net::Bound {
                    name: s.name.clone(),
                    placeholder: net::placeholder_for(&s.name),
                    value: s.value.clone(),
                    hosts: grants
                        .secret_hosts
                        .get(&s.name)
                        .cloned()
                        .unwrap_or_default(),
                })
                .collect();
            cordon.placeholders = bound
                .iter()
                .map(|b| (b.name.clone(), b.placeholder.clone()))
                .collect();
            let hooks = net::NetHooks::new(
                grant,
                bound,
                &grants.secrets,
                net::NetLimits {
                    requests: limits.requests,
                    bytes: limits.request_bytes,
                    timeout: limits.request_timeout,
                },
            );
            let mut ctx = wasmtime_wasi_http::WasiHttpCtx::new();
            ctx.set_field_size_limit(MAX_HTTP_FIELDS_BYTES);
            (ctx, hooks)
        });
        let net_state = http.as_ref().map(|(_, h)| h.state.clone());
        let state = StepState {
            wasi: b.build(),
            table: {
                let mut t = ResourceTable::new();
                t.set_max_capacity(MAX_RESOURCES);
                t
            },
            http,
            cordon,
            limiter: MemoryLimiter {
                limit: limits.memory,
                total: 0,
                peak: 0,
                exceeded: false,
            },
        };
        let mut store = Store::new(&component.engine, state);
        store.limiter(|s| &mut s.limiter);
        if !self.options.without_fuel {
            store
                .set_fuel(limits.fuel)
                .map_err(|e| SandboxError::Engine(wasm_err(e)))?;
        }
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);

        let grants_cancel = grants.cancel.clone();
        let mut watchdog = OutputWatchdog::start(grants.outputs, limits.output);
        let tripped = watchdog.tripped();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| io("cannot start the async runtime", e))?;

        let started = Instant::now();
        let result = rt.block_on(async {
            let run = async {
                let cmd = component.pre.instantiate_async(&mut store).await?;
                cmd.wasi_cli_run().call_run(&mut store).await
            };
            tokio::select! {
                r = run => Outcome::Finished(r),
                _ = tokio::time::sleep(limits.timeout) => Outcome::TimedOut,
                _ = tripped => Outcome::OutputExceeded,
                _ = cancelled(grants_cancel) => Outcome::Interrupted,
            }
        });
        let wall = started.elapsed();
        let (output_bytes, unmeasured) = watchdog.stop();

        let termination = match result {
            Outcome::Finished(Ok(Ok(()))) => Termination::Exited { code: 0 },
            Outcome::Finished(Ok(Err(()))) => Termination::Exited { code: 1 },
            Outcome::Finished(Err(e)) => classify(e, &store, &limits),
            Outcome::Interrupted => Termination::Interrupted,
            Outcome::TimedOut => Termination::LimitExceeded {
                limit: LimitKind::Timeout,
                message: format!(
                    "stopped: wall-clock timeout of {} exceeded",
                    humantime(limits.timeout)
                ),
            },
            Outcome::OutputExceeded => Termination::LimitExceeded {
                limit: LimitKind::Output,
                message: format!(
                    "stopped: output limit of {} exceeded (the step wrote at least {})",
                    cordon_core::units::format_size(limits.output),
                    cordon_core::units::format_size(output_bytes)
                ),
            },
        };
        // The last measurement decides too: a burst written between two
        // polls, just before the step ended, is over the limit all the
        // same. And a limit that could not be measured fails the step.
        let termination = match (&termination, unmeasured) {
            (_, Some(why)) if !matches!(termination, Termination::Interrupted) => {
                Termination::LimitExceeded {
                    limit: LimitKind::Output,
                    message: format!(
                        "stopped: the outputs could not be measured against the output limit ({why})"
                    ),
                }
            }
            (Termination::LimitExceeded { .. } | Termination::Interrupted, _) => termination,
            _ if output_bytes > limits.output => Termination::LimitExceeded {
                limit: LimitKind::Output,
                message: format!(
                    "output limit of {} exceeded (the step wrote {})",
                    cordon_core::units::format_size(limits.output),
                    cordon_core::units::format_size(output_bytes)
                ),
            },
            _ => termination,
        };
        let fuel_left = store.get_fuel().unwrap_or(0);
        let state = store.into_data();
        Ok(RunOutcome {
            termination,
            usage: Usage {
                fuel: limits.fuel.saturating_sub(fuel_left),
                peak_memory: state.limiter.peak,
                wall_ms: wall.as_millis() as u64,
                output_bytes,
            },
            stdout: out
                .finish()
                .map_err(|e| io("cannot write the stdout log", e))?,
            stderr: err
                .finish()
                .map_err(|e| io("cannot write the stderr log", e))?,
            report: state.cordon.report,
            secrets: state.cordon.audit,
            secrets_not_granted: state.cordon.not_granted,
            network_omitted: net_state
                .as_ref()
                .and_then(|s| s.lock().unwrap_or_else(|p| p.into_inner()).omitted.take()),
            network: net_state
                .map(|s| std::mem::take(&mut s.lock().unwrap_or_else(|p| p.into_inner()).calls))
                .unwrap_or_default(),
        })
    }
}

/// A one-line reason a file is not a usable component, with the fix.
fn explain_invalid(bytes: &[u8], e: wasmtime::Error) -> String {
    if !bytes.starts_with(b"\0asm") {
        return "not a WebAssembly file (it lacks the `\\0asm` header)\n  fix: point `component` at the .wasm file the build produced".into();
    }
    // Bytes 4..8: version and layer; layer 0 is a core module.
    if bytes.get(6..8) == Some(&[0, 0]) {
        return "a core WebAssembly module, not a component\n  fix: build for the wasm32-wasip2 target, which produces a component".into();
    }
    let root = e.chain().last().map(|c| c.to_string()).unwrap_or_default();
    format!(
        "not a valid WebAssembly component: {}",
        root.lines().next().unwrap_or_default()
    )
}

/// Resolves once `flag` is set; never when there is none.
async fn cancelled(flag: Option<cordon_core::cancel::Cancel>) {
    match flag {
        Some(f) => {
            while !f.is_cancelled() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        None => std::future::pending().await,
    }
}

enum Outcome {
    Interrupted,
    Finished(wasmtime::Result<Result<(), ()>>),
    TimedOut,
    OutputExceeded,
}

fn humantime(d: Duration) -> String {
    if d.as_millis().is_multiple_of(1000) {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Tells a guest exit from a limit from a trap.
fn classify(e: wasmtime::Error, store: &Store<StepState>, limits: &Limits) -> Termination {
    if let Some(exit) = e.downcast_ref::<I32Exit>() {
        return Termination::Exited { code: exit.0 };
    }
    if store.data().limiter.exceeded {
        return Termination::LimitExceeded {
            limit: LimitKind::Memory,
            message: format!(
                "stopped: memory limit of {} exceeded",
                cordon_core::units::format_size(limits.memory)
            ),
        };
    }
    if let Some(Trap::OutOfFuel) = e.downcast_ref::<Trap>() {
        return Termination::LimitExceeded {
            limit: LimitKind::Fuel,
            message: format!("stopped: fuel limit of {} exhausted", limits.fuel),
        };
    }
    // A full resource table can only be the cap: wasmtime-wasi traps
    // instead of returning an error to the guest, and the step should learn
    // from its record which limit that was, not read a table's message.
    let table_full = e.chain().any(|c| {
        matches!(
            c.downcast_ref::<ResourceTableError>(),
            Some(ResourceTableError::Full)
        )
    });
    if table_full {
        return Termination::LimitExceeded {
            limit: LimitKind::Resources,
            message: format!(
                "stopped: the step held {MAX_RESOURCES} resources at once (open files and directories, streams, HTTP header maps, requests), the most a step may"
            ),
        };
    }
    let message = e.chain().last().map(|c| c.to_string()).unwrap_or_default();
    Termination::Trapped {
        message,
        detail: format!("{e:?}"),
    }
}

/// The interfaces `base_linker` defines, as `package/interface@major.minor`:
/// an import of any patch version of one of them is served (the linker
/// matches semver-compatible versions). `wasi:sockets` is not among them:
/// its interfaces are stubbed so that every call traps. `cordon inspect`
/// compares a component's imports with this list; change it with the
/// linker.
pub const LINKED_INTERFACES: &[&str] = &[
    "wasi:io/error@0.2",
    "wasi:io/poll@0.2",
    "wasi:io/streams@0.2",
    "wasi:clocks/wall-clock@0.2",
    "wasi:clocks/monotonic-clock@0.2",
    "wasi:filesystem/types@0.2",
    "wasi:filesystem/preopens@0.2",
    "wasi:random/random@0.2",
    "wasi:random/insecure@0.2",
    "wasi:random/insecure-seed@0.2",
    "wasi:cli/exit@0.2",
    "wasi:cli/environment@0.2",
    "wasi:cli/stdin@0.2",
    "wasi:cli/stdout@0.2",
    "wasi:cli/stderr@0.2",
    "wasi:cli/terminal-input@0.2",
    "wasi:cli/terminal-output@0.2",
    "wasi:cli/terminal-stdin@0.2",
    "wasi:cli/terminal-stdout@0.2",
    "wasi:cli/terminal-stderr@0.2",
    "cordon:step/secrets@0.1",
    "cordon:step/report@0.1",
];

/// WASI 0.2 without sockets, plus the Cordon interfaces. Mirrors
/// `wasmtime_wasi::p2::add_to_linker_async` minus `wasi:sockets`.
fn base_linker(engine: &Engine) -> wasmtime::Result<Linker<StepState>> {
    use wasmtime_wasi::cli::{WasiCli, WasiCliView};
    use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
    use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
    use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random};
    use wasmtime_wasi::random::WasiRandom;
    use wasmtime_wasi_io::bindings::wasi::io;

    let mut linker = Linker::<StepState>::new(engine);
    let l = &mut linker;
    io::error::add_to_linker::<StepState, HasIo>(l, |t| &mut t.table)?;
    io::poll::add_to_linker::<StepState, HasIo>(l, |t| &mut t.table)?;
    io::streams::add_to_linker::<StepState, HasIo>(l, |t| &mut t.table)?;
    clocks::wall_clock::add_to_linker::<StepState, WasiClocks>(l, StepState::clocks)?;
    clocks::monotonic_clock::add_to_linker::<StepState, WasiClocks>(l, StepState::clocks)?;
    filesystem::types::add_to_linker::<StepState, WasiFilesystem>(l, StepState::filesystem)?;
    filesystem::preopens::add_to_linker::<StepState, WasiFilesystem>(l, StepState::filesystem)?;
    random::random::add_to_linker::<StepState, WasiRandom>(l, |t| t.wasi.random())?;
    random::insecure::add_to_linker::<StepState, WasiRandom>(l, |t| t.wasi.random())?;
    random::insecure_seed::add_to_linker::<StepState, WasiRandom>(l, |t| t.wasi.random())?;
    cli::exit::add_to_linker::<StepState, WasiCli>(l, StepState::cli)?;
    cli::environment::add_to_linker::<StepState, WasiCli>(l, StepState::cli)?;
    cli::stdin::add_to_linker::<StepState, WasiCli>(l, StepState::cli)?;
    cli::stdout::add_to_linker::<StepState, WasiCli>(l, StepState::cli)?;
    cli::stderr::add_to_linker::<StepState, WasiCli>(l, StepState::cli)?;
    cli::terminal_input::add_to_linker::<StepState, WasiCli>(l, StepState::cli)?;
    cli::terminal_output::add_to_linker::<StepState, WasiCli>(l, StepState::cli)?;
    cli::terminal_stdin::add_to_linker::<StepState, WasiCli>(l, StepState::cli)?;
    cli::terminal_stdout::add_to_linker::<StepState, WasiCli>(l, StepState::cli)?;
    cli::terminal_stderr::add_to_linker::<StepState, WasiCli>(l, StepState::cli)?;
    host::bindings::HostApi::add_to_linker::<StepState, CordonData>(l, |s| CordonView {
        table: &mut s.table,
        host: &mut s.cordon,
    })?;
    Ok(linker)
}

/// Defines every function of every `wasi:sockets` interface the component
/// imports as a trap that says the network is not granted. The component
/// instantiates (toolchains import sockets even when a program never uses
/// them), but no socket can ever be created.
///
/// Resources the interfaces *define* get fresh host types that nothing can
/// construct; resources they merely `use` from another interface (such as
/// `wasi:io/poll.pollable`) are aliases and are left for the linker to
/// resolve to the real definition.
fn stub_absent_imports(
    engine: &Engine,
    linker: &mut Linker<StepState>,
    component: &Component,
    stub_http: bool,
) -> wasmtime::Result<()> {
    use wasmtime::component::types::ComponentItem;
    let mut seen: Vec<wasmtime::component::ResourceType> = Vec::new();
    let mut next_payload = 0u32;
    for (name, item) in component.component_type().imports(engine) {
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        let stub =
            name.starts_with("wasi:sockets/") || (stub_http && name.starts_with("wasi:http/"));
        let mut li = if stub {
            Some(linker.instance(name)?)
        } else {
            None
        };
        for (export, ty) in instance.exports(engine) {
            match ty.ty {
                ComponentItem::Resource(rt) => {
                    let alias = seen.contains(&rt);
                    if !alias {
                        seen.push(rt);
                    }
                    if let Some(li) = li.as_mut()
                        && !alias
                    {
                        li.resource(export, ResourceType::host_dynamic(next_payload), |_, _| {
                            Ok(())
                        })?;
                        next_payload += 1;
                    }
                }
                ComponentItem::ComponentFunc(_) => {
                    if let Some(li) = li.as_mut() {
                        let what = format!("{name}#{export}");
                        li.func_new(export, move |_, _, _, _| {
                            wasmtime::bail!("network access denied: the step called `{what}`, but its manifest grants no network access")
                        })?;
                    }
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Measures the output mounts on a thread while the step runs and trips
/// when their growth passes the limit.
struct OutputWatchdog {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    /// Why a measurement failed, when one did.
    failure: Arc<std::sync::Mutex<Option<String>>>,
    tripped: Option<tokio::sync::oneshot::Receiver<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl OutputWatchdog {
    fn start(dirs: Vec<Watched>, limit: u64) -> OutputWatchdog {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let failure = Arc::new(std::sync::Mutex::new(None));
        let (tx, rx) = tokio::sync::oneshot::channel();
        if dirs.is_empty() {
            return OutputWatchdog {
                stop,
                peak,
                failure,
                tripped: Some(rx),
                thread: None,
            };
        }
        let thread = {
            let stop = stop.clone();
            let peak = peak.clone();
            let failure = failure.clone();
            std::thread::Builder::new()
                .name("cordon-output-watch".into())
                .spawn(move || {
                    let mut tx = Some(tx);
                    loop {
                        let measured: std::io::Result<u64> = dirs
                            .iter()
                            .map(|d| charged_bytes(&d.path).map(|b| b.saturating_sub(d.baseline)))
                            .sum();
                        let grown = match measured {
                            Ok(g) => g,
                            Err(e) => {
                                // A limit that cannot be measured fails closed.
                                if let Ok(mut slot) = failure.lock() {
                                    slot.get_or_insert(e.to_string());
                                }
                                if let Some(tx) = tx.take() {
                                    let _ = tx.send(());
                                }
                                return;
                            }
                        };
                        peak.fetch_max(grown, Ordering::Relaxed);
                        if grown > limit {
                            if let Some(tx) = tx.take() {
                                let _ = tx.send(());
                            }
                            return;
                        }
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        // Parked, not asleep: `stop` unparks it, so the run
                        // does not wait out a poll interval when it ends.
                        std::thread::park_timeout(OUTPUT_POLL);
                    }
                })
        };
        OutputWatchdog {
            stop,
            peak,
            failure,
            tripped: Some(rx),
            thread: thread.ok(),
        }
    }

    /// A future that resolves when the limit is passed, and never if it is
    /// not (or when nothing is watched).
    fn tripped(&mut self) -> impl std::future::Future<Output = ()> + use<> {
        let rx = self.tripped.take();
        async move {
            let tripped = match rx {
                Some(rx) => rx.await.is_ok(),
                None => false,
            };
            if !tripped {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Stops the thread; returns the largest growth seen (one last
    /// measurement included) and why a measurement failed, if one did.
    fn stop(mut self) -> (u64, Option<String>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
        let failure = self.failure.lock().ok().and_then(|mut f| f.take());
        (self.peak.load(Ordering::Relaxed), failure)
    }
}
