//! Running a pipeline: independent steps side by side, each step after the
//! ones it depends on, a failure stopping only its dependents (or everything
//! with `fail_fast`), Ctrl-C stopping running steps without publishing, and
//! progress for a person at a terminal or plain lines for CI.
//!
//! Every step goes through [`exec::run_step`](crate::exec::run_step), so a
//! step in a pipeline is checked, staged, cached and recorded exactly like a
//! single `cordon run step.toml`.

use crate::exec::{ExecError, RunOptions, StepRun, Uncommitted, commit_batch, execute_step};
use cordon_manifest::manifest::Access;
use cordon_manifest::pipeline::PipelinePlan;
use cordon_record::record::StepRecord;
use cordon_sandbox::{Sandbox, StepComponent, Termination};
use cordon_secrets::ResolvedSecret;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How to run a pipeline.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// Most steps running at once.
    pub jobs: usize,
    /// Stop starting steps after the first failure.
    pub fail_fast: bool,
    /// Never serve a step from the action cache.
    pub no_cache: bool,
    /// Show a live view (a terminal); otherwise one plain line per event.
    pub live: bool,
    /// Set by Ctrl-C.
    pub cancel: cordon_core::cancel::Cancel,
    /// The environment's record signer.
    pub signer: Option<Arc<cordon_record::attest::Signer>>,
    /// The environment's shared store (see [`crate::remote`]).
    pub remote: Option<Arc<crate::remote::RemoteStore>>,
    /// The input hash index shared by every step of the run.
    pub hash_index: Option<Arc<cordon_core::digest::HashIndex>>,
    /// The policy decision for the run, copied into every step record.
    pub policy: Option<Arc<cordon_policy::policy::Decision>>,
}

pub use cordon_record::pipeline::StepStatus;

/// The result of one step of a pipeline run.
#[derive(Debug, Clone)]
pub struct StepResult {
    /// Step name.
    pub name: String,
    /// Final status.
    pub status: StepStatus,
    /// Wall time, when it ran.
    pub duration: Duration,
    /// Its record, when one was written.
    pub record: Option<StepRecord>,
    /// The record file.
    pub record_path: Option<PathBuf>,
    /// Why it failed or was skipped.
    pub message: Option<String>,
    /// Whether the runner itself failed on this step.
    pub runner_fault: bool,
}

/// The result of a pipeline run.
#[derive(Debug, Clone)]
pub struct PipelineOutcome {
    /// Per step, in file order.
    pub steps: Vec<StepResult>,
    /// Wall time of the whole run.
    pub duration: Duration,
}

impl PipelineOutcome {
    /// Whether every step succeeded or was cached.
    pub fn success(&self) -> bool {
        self.steps.iter().all(|s| s.status.ok())
    }
}

struct State {
    results: Vec<StepResult>,
    secrets: Vec<Option<Vec<ResolvedSecret>>>,
    running: usize,
    failed: bool,
    /// Steps still `Waiting`.
    waiting: usize,
    /// Per step, how many of its dependencies have not yet succeeded.
    unmet: Vec<usize>,
    /// Per step, the steps that depend on it.
    dependents: Vec<Vec<usize>>,
    /// Waiting steps whose dependencies all succeeded, lowest index (file
    /// order) first: picking the next step costs a heap pop, not a scan of
    /// the whole pipeline, so ten thousand steps stay linear.
    ready: std::collections::BinaryHeap<std::cmp::Reverse<usize>>,
    /// A step failed or was skipped since the last [`settle_skips`].
    skips_due: bool,
}

impl State {
    fn new(
        plan: &PipelinePlan,
        results: Vec<StepResult>,
        secrets: Vec<Vec<ResolvedSecret>>,
    ) -> State {
        let n = plan.steps.len();
        let mut dependents = vec![Vec::new(); n];
        for (i, deps) in plan.deps.iter().enumerate() {
            for &d in deps {
                dependents[d].push(i);
            }
        }
        let unmet: Vec<usize> = plan.deps.iter().map(Vec::len).collect();
        let ready = (0..n)
            .filter(|&i| unmet[i] == 0)
            .map(std::cmp::Reverse)
            .collect();
        State {
            results,
            secrets: secrets.into_iter().map(Some).collect(),
            running: 0,
            failed: false,
            waiting: n,
            unmet,
            dependents,
            ready,
            skips_due: false,
        }
    }

    /// The next step to start, marked running.
    fn take_ready(&mut self) -> Option<usize> {
        while let Some(std::cmp::Reverse(i)) = self.ready.pop() {
            // Skipped while it sat in the heap.
            if self.results[i].status == StepStatus::Waiting {
                self.results[i].status = StepStatus::Running;
                self.running += 1;
                self.waiting -= 1;
                return Some(i);
            }
        }
        None
    }

    /// Step `i` succeeded (or was cached): the dependents it was the last
    /// unmet dependency of become ready.
    fn succeeded(&mut self, i: usize) {
        for k in 0..self.dependents[i].len() {
            let j = self.dependents[i][k];
            self.unmet[j] -= 1;
            if self.unmet[j] == 0 && self.results[j].status == StepStatus::Waiting {
                self.ready.push(std::cmp::Reverse(j));
            }
        }
    }
}

/// Prints progress.
trait Progress: Sync {
    fn started(&self, i: usize);
    fn finished(&self, i: usize, r: &StepResult);
    /// The run is over; `results` is every step's final state (a step
    /// skipped after a failure never started or finished).
    fn done(&self, results: &[StepResult]);
}

struct Plain {
    names: Vec<String>,
}

impl Progress for Plain {
    fn started(&self, i: usize) {
        say!("cordon: [{}] started", self.names[i]);
    }

    fn finished(&self, _i: usize, r: &StepResult) {
        let record = r
            .record_path
            .as_ref()
            .map(|p| format!(" record: {}", p.display()))
            .unwrap_or_default();
        let why = r
            .message
            .as_ref()
            .map(|m| format!(": {}", cordon_core::sanitize::escape_for_terminal(m)))
            .unwrap_or_default();
        say!(
            "cordon: [{}] {} in {} ms{why}{record}",
            r.name,
            r.status.word(),
            r.duration.as_millis()
        );
    }

    fn done(&self, _results: &[StepResult]) {}
}

struct Live {
    bars: Vec<indicatif::ProgressBar>,
    _multi: indicatif::MultiProgress,
}

impl Live {
    fn new(names: &[String]) -> Live {
        let multi = indicatif::MultiProgress::new();
        let width = names.iter().map(String::len).max().unwrap_or(4);
        let style = indicatif::ProgressStyle::with_template("{spinner} {prefix} {msg}")
            .expect("valid template");
        let bars = names
            .iter()
            .map(|n| {
                let b = multi.add(indicatif::ProgressBar::new_spinner());
                b.set_style(style.clone());
                b.set_prefix(format!("{n:width$}"));
                b.set_message("waiting");
                b
            })
            .collect();
        Live {
            bars,
            _multi: multi,
        }
    }
}

impl Progress for Live {
    fn started(&self, i: usize) {
        self.bars[i].set_message("running");
        self.bars[i].enable_steady_tick(Duration::from_millis(120));
    }

    fn finished(&self, i: usize, r: &StepResult) {
        let why = r
            .message
            .as_ref()
            .map(|m| format!(" — {}", cordon_core::sanitize::escape_for_terminal(m)))
            .unwrap_or_default();
        self.bars[i].finish_with_message(format!(
            "{} ({} ms){why}",
            r.status.word(),
            r.duration.as_millis()
        ));
    }

    fn done(&self, results: &[StepResult]) {
        // The last frame says what the summary says: a step skipped after
        // a failure shows `skipped` and why, not `waiting`.
        for (i, b) in self.bars.iter().enumerate() {
            if !b.is_finished() {
                match results.get(i) {
                    Some(r) => self.finished(i, r),
                    None => b.finish(),
                }
            }
        }
    }
}

/// Loads the component of every step, once per distinct component and
/// linking (digest, network, float mode) however many steps run it: one
/// compiled-cache read and one pre-instantiation each. On failure, the index
/// of the first step whose component could not be loaded.
pub fn load_components(
    sandbox: &Sandbox,
    steps: &[cordon_manifest::plan::StepPlan],
) -> Result<Vec<StepComponent>, (usize, cordon_sandbox::SandboxError)> {
    type Linking = (
        cordon_manifest::manifest::Sha256Digest,
        bool,
        cordon_manifest::manifest::FloatMode,
    );
    let mut loaded: std::collections::HashMap<Linking, StepComponent> = Default::default();
    let mut components = Vec::with_capacity(steps.len());
    for (i, p) in steps.iter().enumerate() {
        let key = (p.component_digest.clone(), p.network.is_some(), p.floats);
        let c = match loaded.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => e.get().clone(),
            std::collections::hash_map::Entry::Vacant(e) => e
                .insert(
                    sandbox
                        .load_step(
                            &p.component_digest,
                            &p.component_bytes,
                            p.network.is_some(),
                            p.floats,
                        )
                        .map_err(|err| (i, err))?,
                )
                .clone(),
        };
        components.push(c);
    }
    Ok(components)
}

/// Runs every step of `plan`. `components[i]` and `secrets[i]` belong to
/// step `i`.
pub fn run_pipeline(
    plan: &PipelinePlan,
    sandbox: &Sandbox,
    components: &[StepComponent],
    secrets: Vec<Vec<ResolvedSecret>>,
    opts: &PipelineOptions,
) -> PipelineOutcome {
    let n = plan.steps.len();
    let names: Vec<String> = plan.steps.iter().map(|s| s.name.clone()).collect();
    let progress: Box<dyn Progress> = if opts.live {
        Box::new(Live::new(&names))
    } else {
        Box::new(Plain {
            names: names.clone(),
        })
    };
    let state = Mutex::new(State::new(
        plan,
        names
            .iter()
            .map(|name| StepResult {
                name: name.clone(),
                status: StepStatus::Waiting,
                duration: Duration::ZERO,
                record: None,
                record_path: None,
                message: None,
                runner_fault: false,
            })
            .collect(),
        secrets,
    ));
    let wake = Condvar::new();
    let started = Instant::now();
    let workers = opts.jobs.clamp(1, n.max(1));

    std::thread::scope(|scope| {
        // Workers run steps and hand each finished one to the committer,
        // which seals whatever has gathered as one batch (group commit)
        // and only then reports those steps done: a worker goes on with
        // the next ready step while the last one's record is being made
        // durable, but no step's outputs are published, and no dependent
        // starts, before its batch is durable.
        // Bounded: a worker that gets ahead of the committer waits instead
        // of queueing runs without limit. Each run waiting to be sealed
        // holds descriptors (its mount locks and staging lock), its staged
        // outputs on disk and its record in memory, and trivial steps run
        // faster than they are sealed: unbounded, the queue grew with the
        // pipeline until the runner ran out of descriptors.
        let (to_commit, inbox) = std::sync::mpsc::sync_channel::<Handoff>(MAX_WAITING);
        for _ in 0..workers {
            let to_commit = to_commit.clone();
            let (state, wake, progress) = (&state, &wake, progress.as_ref());
            scope.spawn(move || {
                worker(
                    plan, sandbox, components, opts, state, wake, progress, &to_commit,
                )
            });
        }
        drop(to_commit);
        committer(&inbox, &state, &wake, progress.as_ref());
    });
    let st = state.into_inner().unwrap_or_else(|p| p.into_inner());
    progress.done(&st.results);
    PipelineOutcome {
        steps: st.results,
        duration: started.elapsed(),
    }
}

/// A step that ran, on its way from a worker to the committer.
struct Handoff {
    index: usize,
    started: Instant,
    run: Uncommitted,
}

/// The most runs sealed as one batch: bounds what one barrier holds up.
const MAX_BATCH: usize = 256;

/// The most finished runs waiting for the committer; a worker with one
/// more waits. Together with the batch being sealed, this bounds the runs
/// that hold their locks and staging at once. Batches of this size already
/// share a flush between dozens of runs, so the bound costs no throughput.
const MAX_WAITING: usize = 64;

#[allow(clippy::too_many_arguments)]
fn worker(
    plan: &PipelinePlan,
    sandbox: &Sandbox,
    components: &[StepComponent],
    opts: &PipelineOptions,
    state: &Mutex<State>,
    wake: &Condvar,
    progress: &dyn Progress,
    to_commit: &std::sync::mpsc::SyncSender<Handoff>,
) {
    loop {
        let (i, secrets) = {
            let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if st.skips_due || opts.cancel.is_cancelled() {
                    settle_skips(plan, &mut st, opts);
                }
                if let Some(i) = st.take_ready() {
                    let secrets = st.secrets[i].take().unwrap_or_default();
                    break (i, secrets);
                }
                if st.running == 0 || st.waiting == 0 {
                    wake.notify_all();
                    return;
                }
                st = wake.wait(st).unwrap_or_else(|p| p.into_inner());
            }
        };
        progress.started(i);
        let t0 = Instant::now();
        let run_opts = RunOptions {
            // Step output would tear the live view; it is in the logs.
            quiet: opts.live,
            no_cache: opts.no_cache,
            cache_forbidden: !plan.cacheable[i],
            cancel: Some(opts.cancel.clone()),
            signer: opts.signer.clone(),
            hash_index: opts.hash_index.clone(),
            policy: opts.policy.clone(),
            remote: opts.remote.clone(),
        };
        // A panic here is a runner bug, but it must not leave this step
        // `running` for ever and every other worker waiting on it: it
        // becomes a runner failure of this step (exit 3), like any other.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            cordon_core::fault::panic_point("worker-panic");
            execute_step(&plan.steps[i], sandbox, &components[i], secrets, &run_opts)
        }))
        .unwrap_or_else(|panic| Err(ExecError::panicked(panic_message(&*panic))));
        match result {
            Ok(run) => {
                // A failure is known before it is durable: `fail_fast`
                // starts nothing after it, even while it is being sealed.
                if !run.succeeded() {
                    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
                    st.failed = true;
                    st.skips_due = true;
                }
                let handoff = Handoff {
                    index: i,
                    started: t0,
                    run,
                };
                // The committer outlives every worker; should it be gone,
                // the step still ends, as a runner failure.
                if let Err(std::sync::mpsc::SendError(h)) = to_commit.send(handoff) {
                    drop(h.run);
                    settle(
                        state,
                        wake,
                        progress,
                        i,
                        t0,
                        Err(ExecError::panicked("the committer is gone".into())),
                    );
                }
            }
            Err(e) => settle(state, wake, progress, i, t0, Err(e)),
        }
    }
}

/// Seals what the workers hand over, in batches of whatever has gathered
/// since the last one, and settles each step once its batch is durable.
/// Returns when every worker has returned and every run is committed.
fn committer(
    inbox: &std::sync::mpsc::Receiver<Handoff>,
    state: &Mutex<State>,
    wake: &Condvar,
    progress: &dyn Progress,
) {
    while let Ok(first) = inbox.recv() {
        let mut batch = vec![first];
        batch.extend(inbox.try_iter().take(MAX_BATCH - 1));
        let places: Vec<(usize, Instant)> = batch.iter().map(|h| (h.index, h.started)).collect();
        let runs: Vec<Uncommitted> = batch.into_iter().map(|h| h.run).collect();
        let n = runs.len();
        cordon_core::fault::slow_point("slow-commit", n);
        let results = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| commit_batch(runs)))
            .unwrap_or_else(|panic| {
                let message = panic_message(&*panic);
                (0..n)
                    .map(|_| Err(ExecError::panicked(message.clone())))
                    .collect()
            });
        for ((i, t0), result) in places.into_iter().zip(results) {
            settle(state, wake, progress, i, t0, result);
        }
    }
}

/// Step `i` is over: its result, its status, and a wake-up for the workers
/// waiting on it.
fn settle(
    state: &Mutex<State>,
    wake: &Condvar,
    progress: &dyn Progress,
    i: usize,
    t0: Instant,
    result: Result<StepRun, ExecError>,
) {
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    let r = &mut st.results[i];
    r.duration = t0.elapsed();
    match result {
        Ok(StepRun {
            record,
            record_path,
            ..
        }) => {
            r.status = if record.cache.hit {
                StepStatus::Cached
            } else if record.termination == Termination::Interrupted {
                StepStatus::Interrupted
            } else if record.success {
                StepStatus::Succeeded
            } else {
                StepStatus::Failed
            };
            if !record.success {
                r.message = Some(match &record.outputs {
                    cordon_record::record::Publication::Withheld { reason, .. } => reason.clone(),
                    _ => record.termination.describe(),
                });
            }
            r.record = Some(record);
            r.record_path = Some(record_path);
        }
        // Ctrl-C while it waited for another run's lock: nothing ran.
        Err(e) if e.is_cancelled() => {
            r.status = StepStatus::Skipped;
            r.message = Some(format!("interrupted: {e}"));
        }
        Err(e) => {
            r.status = StepStatus::Failed;
            r.runner_fault = true;
            r.message = Some(format!("{e:#}"));
        }
    }
    if r.status.ok() {
        st.succeeded(i);
    } else {
        st.failed = true;
        st.skips_due = true;
    }
    st.running -= 1;
    progress.finished(i, &st.results[i]);
    wake.notify_all();
}

/// What a caught panic says, for the step's failure message.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}

/// Marks steps that can no longer run as skipped.
fn settle_skips(plan: &PipelinePlan, st: &mut State, opts: &PipelineOptions) {
    st.skips_due = false;
    let stop_all = opts.cancel.is_cancelled() || (opts.fail_fast && st.failed);
    let mut changed = true;
    while changed {
        changed = false;
        for i in 0..plan.steps.len() {
            if st.results[i].status != StepStatus::Waiting {
                continue;
            }
            let blocked = plan.deps[i].iter().find(|&&d| {
                matches!(
                    st.results[d].status,
                    StepStatus::Failed | StepStatus::Skipped | StepStatus::Interrupted
                )
            });
            let why = match blocked {
                Some(&d) => Some(format!("`{}` did not succeed", plan.steps[d].name)),
                None if stop_all && opts.cancel.is_cancelled() => Some("interrupted".into()),
                None if stop_all => Some("--fail-fast after a failure".into()),
                None => None,
            };
            if let Some(why) = why {
                st.results[i].status = StepStatus::Skipped;
                st.results[i].message = Some(why);
                st.waiting -= 1;
                changed = true;
            }
        }
    }
}

pub use cordon_record::pipeline::{PIPELINE_RECORD_FORMAT, PipelineRecord, pipeline_record_path};

/// Builds and writes the pipeline record under `<state>/pipelines/`.
pub fn write_pipeline_record(
    plan: &PipelinePlan,
    outcome: &PipelineOutcome,
    state_dir: &std::path::Path,
    policy: Option<&cordon_policy::policy::Decision>,
) -> std::io::Result<PathBuf> {
    let run_id = cordon_record::record::new_run_id(&plan.name);
    let environment = plan
        .steps
        .first()
        .map(|s| s.environment.clone())
        .unwrap_or_default();
    let produced: Vec<&PathBuf> = plan
        .steps
        .iter()
        .flat_map(|s| {
            s.mounts
                .iter()
                .filter(|m| m.access != Access::Read)
                .map(|m| &m.host)
        })
        .collect();
    // A step no other step needs: its outputs are the pipeline's artifacts.
    let mut needed = vec![false; plan.steps.len()];
    for &d in plan.deps.iter().flatten() {
        needed[d] = true;
    }
    let mut datasets = Vec::new();
    let mut artifacts = Vec::new();
    let mut steps = Vec::new();
    for (i, r) in outcome.steps.iter().enumerate() {
        steps.push(cordon_record::pipeline::PipelineStep {
            name: r.name.clone(),
            status: r.status,
            duration_ms: r.duration.as_millis() as u64,
            run_id: r.record.as_ref().map(|x| x.run_id.clone()),
            record: r.record_path.clone(),
            cache_hit: r.record.as_ref().is_some_and(|x| x.cache.hit),
            metrics: r.record.as_ref().map(|x| x.report.metrics.clone()),
            message: r.message.clone(),
        });
        let Some(rec) = &r.record else { continue };
        let terminal = !needed[i];
        for m in &rec.mounts {
            if m.access == Access::Read
                && !produced.iter().any(|p| m.host.starts_with(p))
                && let Some(b) = &m.before
            {
                datasets.push(cordon_record::pipeline::Dataset {
                    step: r.name.clone(),
                    guest: m.guest.clone(),
                    host: m.host.clone(),
                    sha256: b.sha256.clone(),
                    files: b.files,
                    bytes: b.bytes,
                    classification: m.classification,
                });
            }
            if terminal
                && m.access != Access::Read
                && let Some(a) = &m.after
            {
                artifacts.push(cordon_record::pipeline::Artifact {
                    step: r.name.clone(),
                    guest: m.guest.clone(),
                    host: m.host.clone(),
                    sha256: a.sha256.clone(),
                    files: a.entries.clone(),
                });
            }
        }
    }
    let record = PipelineRecord {
        format: PIPELINE_RECORD_FORMAT.into(),
        run_id: run_id.clone(),
        pipeline: plan.name.clone(),
        file: cordon_record::record::FileRef {
            path: plan.path.clone(),
            sha256: plan.sha256.clone(),
        },
        environment,
        success: outcome.success(),
        duration_ms: outcome.duration.as_millis() as u64,
        steps,
        datasets,
        artifacts,
        policy: policy.cloned(),
        finished_at: cordon_record::record::now_rfc3339(),
    };
    let path = pipeline_record_path(state_dir, &run_id);
    cordon_core::fsutil::create_private_dir(path.parent().unwrap_or(state_dir))?;
    cordon_core::fsutil::write_new(&path, &record.to_bytes())?;
    Ok(path)
}

/// The schema version of the JSON report.
pub const REPORT_SCHEMA: &str = "cordon.report/v1";

/// `--report json=FILE`: the pipeline and every step, typed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JsonReport {
    /// [`REPORT_SCHEMA`]: the version of this document's shape
    /// (docs/schemas/report.schema.json).
    pub schema: &'static str,
    /// Pipeline name.
    pub pipeline: String,
    /// Whether every step succeeded or was cached.
    pub success: bool,
    /// Wall time, milliseconds.
    pub duration_ms: u64,
    /// The pipeline record's file.
    pub pipeline_record: PathBuf,
    /// Each step, in pipeline order.
    pub steps: Vec<JsonReportStep>,
}

/// One step of a [`JsonReport`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct JsonReportStep {
    /// Step name.
    pub name: String,
    /// How it ended.
    pub status: StepStatus,
    /// Wall time, milliseconds.
    pub duration_ms: u64,
    /// The step record's run id.
    pub run_id: Option<String>,
    /// The step record's file.
    pub record: Option<PathBuf>,
    /// Whether it was served from the action cache.
    pub cache_hit: bool,
    /// Why it failed or was skipped.
    pub message: Option<String>,
}

/// `--report json=FILE`: every step, status, duration, record id, cache hit.
pub fn json_report(
    plan: &PipelinePlan,
    outcome: &PipelineOutcome,
    pipeline_record: &std::path::Path,
) -> JsonReport {
    JsonReport {
        schema: REPORT_SCHEMA,
        pipeline: plan.name.clone(),
        success: outcome.success(),
        duration_ms: outcome.duration.as_millis() as u64,
        pipeline_record: pipeline_record.to_path_buf(),
        steps: outcome
            .steps
            .iter()
            .map(|r| JsonReportStep {
                name: r.name.clone(),
                status: r.status,
                duration_ms: r.duration.as_millis() as u64,
                run_id: r.record.as_ref().map(|x| x.run_id.clone()),
                record: r.record_path.clone(),
                cache_hit: r.record.as_ref().is_some_and(|x| x.cache.hit),
                message: r.message.clone(),
            })
            .collect(),
    }
}

/// Whether XML 1.0 allows `c` in a document at all (its `Char`
/// production): tab, newline, carriage return, and everything from U+0020
/// except the surrogates (which a `char` cannot be) and U+FFFE/U+FFFF.
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
}

/// `s` as XML 1.0 character data or an attribute value (double- or
/// single-quoted). Markup characters become entities; tab, newline and
/// carriage return become character references, so an attribute keeps
/// them (a parser would turn them into spaces) and a carriage return
/// survives line-end normalization; every character XML 1.0 forbids (the
/// other C0 controls, U+FFFE, U+FFFF) is replaced by its Unicode escape
/// (`\u{1b}`), so the report still parses and still shows what the step wrote. Step
/// names, messages and streams are chosen by steps and pipeline authors.
fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push_str(&format!("&#{};", c as u32)),
            c if xml_char(c) => out.push(c),
            c => out.extend(c.escape_unicode()),
        }
    }
    out
}

/// Most bytes of a step's captured stream a JUnit report carries in
/// `system-out` / `system-err` (the end of it, where failures are said).
pub const JUNIT_STREAM_BYTES: usize = 64 * 1024;

/// Lines of stderr a failure's text quotes.
pub const JUNIT_FAILURE_LINES: usize = 20;

/// The last `max` bytes of a captured (already redacted and escaped)
/// stream, from the start of a line; empty when there is none.
fn stream_tail(log: Option<&std::path::Path>, max: usize) -> String {
    let Some(bytes) = log.and_then(|p| cordon_core::fsutil::read_regular(p, u64::MAX >> 1).ok())
    else {
        return String::new();
    };
    let from = bytes.len().saturating_sub(max);
    let mut tail = &bytes[from..];
    if from > 0
        && let Some(nl) = tail.iter().position(|&b| b == b'\n')
    {
        tail = &tail[nl + 1..];
    }
    String::from_utf8_lossy(tail).into_owned()
}

/// `--report junit=FILE`: each step a test case, in the dialect of the
/// Jenkins xUnit `junit-10.xsd` (what GitLab, Jenkins and GitHub test
/// reporters read). A failure says how the step ended and quotes the last
/// lines of its (redacted) stderr; `system-out` and `system-err` hold the
/// end of its redacted streams, at most [`JUNIT_STREAM_BYTES`] each.
pub fn junit_report(plan: &PipelinePlan, outcome: &PipelineOutcome) -> String {
    junit_document(&plan.name, outcome)
}

/// [`junit_report`] for the pipeline named `pipeline`: every value a step
/// or the pipeline file chose goes through [`xml_escape`].
fn junit_document(pipeline: &str, outcome: &PipelineOutcome) -> String {
    let failures = outcome
        .steps
        .iter()
        .filter(|r| matches!(r.status, StepStatus::Failed | StepStatus::Interrupted))
        .count();
    let skipped = outcome
        .steps
        .iter()
        .filter(|r| r.status == StepStatus::Skipped)
        .count();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    // `testsuites` takes no `skipped` count in junit-10.xsd; the suite does.
    x.push_str(&format!(
        "<testsuites name=\"cordon\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" time=\"{:.3}\">\n",
        outcome.steps.len(),
        outcome.duration.as_secs_f64()
    ));
    x.push_str(&format!(
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{:.3}\">\n",
        xml_escape(pipeline),
        outcome.steps.len(),
        outcome.duration.as_secs_f64()
    ));
    for r in &outcome.steps {
        x.push_str(&format!(
            "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\">",
            xml_escape(pipeline),
            xml_escape(&r.name),
            r.duration.as_secs_f64()
        ));
        let msg = xml_escape(r.message.as_deref().unwrap_or(""));
        let stdout_log = r.record.as_ref().and_then(|x| x.stdout.log.as_deref());
        let stderr_log = r.record.as_ref().and_then(|x| x.stderr.log.as_deref());
        // Read once: the failure quotes its end, system-err holds it.
        let err = stream_tail(stderr_log, JUNIT_STREAM_BYTES);
        match r.status {
            StepStatus::Failed | StepStatus::Interrupted => {
                let termination = r
                    .record
                    .as_ref()
                    .map(|x| x.termination.describe())
                    .unwrap_or_else(|| "the runner failed".into());
                let lines: Vec<&str> = err.lines().collect();
                let last = &lines[lines.len().saturating_sub(JUNIT_FAILURE_LINES)..];
                let mut text = format!("{}\n{termination}", r.message.as_deref().unwrap_or(""));
                if !last.is_empty() {
                    text.push_str("\nlast lines of stderr:\n");
                    text.push_str(&last.join("\n"));
                }
                x.push_str(&format!(
                    "<failure message=\"{msg}\" type=\"{}\">{}</failure>",
                    xml_escape(&termination),
                    xml_escape(&text)
                ))
            }
            StepStatus::Skipped => x.push_str(&format!("<skipped message=\"{msg}\"/>")),
            _ => {}
        }
        let mut out = String::new();
        if let Some(p) = &r.record_path {
            out.push_str(&format!("record: {}\n", p.display()));
        }
        out.push_str(&stream_tail(stdout_log, JUNIT_STREAM_BYTES));
        if !out.is_empty() {
            x.push_str(&format!("<system-out>{}</system-out>", xml_escape(&out)));
        }
        if !err.is_empty() {
            x.push_str(&format!("<system-err>{}</system-err>", xml_escape(&err)));
        }
        x.push_str("</testcase>\n");
    }
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn outcome_of(names: &[String], message: &str) -> PipelineOutcome {
        let statuses = [
            StepStatus::Failed,
            StepStatus::Skipped,
            StepStatus::Succeeded,
            StepStatus::Interrupted,
        ];
        PipelineOutcome {
            steps: names
                .iter()
                .zip(statuses.iter().cycle())
                .map(|(name, status)| StepResult {
                    name: name.clone(),
                    status: *status,
                    duration: Duration::from_millis(5),
                    record: None,
                    record_path: Some(PathBuf::from(format!("/records/{name}.json"))),
                    message: Some(message.to_string()),
                    runner_fault: false,
                })
                .collect(),
            duration: Duration::from_millis(20),
        }
    }

    /// An element: its name, its attributes in order, its text.
    type Element = (String, Vec<(String, String)>, String);

    /// The elements and attributes of a JUnit document as an XML parser
    /// reads it, with every attribute's and text's value.
    fn xml_structure(xml: &str) -> Result<Vec<Element>, String> {
        let doc = roxmltree::Document::parse(xml).map_err(|e| format!("{e}: {xml}"))?;
        Ok(doc
            .descendants()
            .filter(|n| n.is_element())
            .map(|n| {
                (
                    n.tag_name().name().to_string(),
                    n.attributes()
                        .map(|a| (a.name().to_string(), a.value().to_string()))
                        .collect(),
                    n.children()
                        .filter(|c| c.is_text())
                        .filter_map(|c| c.text())
                        .collect(),
                )
            })
            .collect())
    }

    fn hostile() -> impl Strategy<Value = String> {
        prop_oneof![
            "[<>&\"'=/!\\\\\\[\\]\n\r\t\u{0}\u{1}\u{1b}\u{7f}\u{85}\u{fffe}\u{ffff}a-z -]{0,30}",
            any::<String>(),
            Just("\"/><testcase name=\"forged\"/><x a=\"".to_string()),
            Just("]]><![CDATA[<failure/>".to_string()),
        ]
    }

    /// Without the characters XML 1.0 cannot hold, what the escaper wrote
    /// must read back as the value itself.
    fn readable(s: &str) -> String {
        s.chars()
            .map(|c| {
                if xml_char(c) {
                    c.to_string()
                } else {
                    c.escape_unicode().to_string()
                }
            })
            .collect()
    }

    #[test]
    fn a_step_name_with_markup_and_control_characters_leaves_the_junit_report_well_formed() {
        let names = vec![
            "a\"/><testcase name=\"x".to_string(),
            "b\u{1b}[2J\u{0}".to_string(),
        ];
        let xml = junit_document("p<&>", &outcome_of(&names, "m\r\n\u{ffff}"));
        let elements = xml_structure(&xml).unwrap();
        let cases: Vec<_> = elements.iter().filter(|e| e.0 == "testcase").collect();
        assert_eq!(cases.len(), 2, "{xml}");
        assert_eq!(cases[0].1[1], ("name".to_string(), names[0].clone()));
        assert_eq!(cases[1].1[1].1, "b\\u{1b}[2J\\u{0}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_step_or_pipeline_text_leaves_the_junit_report_its_elements(
            pipeline in hostile(),
            names in proptest::collection::vec(hostile(), 1..5),
            message in hostile(),
        ) {
            let plain: Vec<String> = (0..names.len()).map(|i| format!("step{i}")).collect();
            let xml = junit_document(&pipeline, &outcome_of(&names, &message));
            let got = xml_structure(&xml).map_err(TestCaseError::fail)?;
            let want = xml_structure(&junit_document("p", &outcome_of(&plain, "m")))
                .map_err(TestCaseError::fail)?;
            let shape = |v: &[Element]| -> Vec<(String, Vec<String>)> {
                v.iter()
                    .map(|(n, a, _)| (n.clone(), a.iter().map(|(k, _)| k.clone()).collect()))
                    .collect()
            };
            prop_assert_eq!(shape(&got), shape(&want));
            let cases: Vec<_> = got.iter().filter(|e| e.0 == "testcase").collect();
            for (case, name) in cases.iter().zip(&names) {
                prop_assert_eq!(&case.1[0].1, &readable(&pipeline));
                prop_assert_eq!(&case.1[1].1, &readable(name));
            }
        }

        #[test]
        fn any_step_text_leaves_the_json_report_its_keys(
            names in proptest::collection::vec(hostile(), 1..5),
            message in hostile(),
        ) {
            let report = JsonReport {
                schema: REPORT_SCHEMA,
                pipeline: message.clone(),
                success: false,
                duration_ms: 1,
                pipeline_record: PathBuf::from(&message),
                steps: outcome_of(&names, &message)
                    .steps
                    .iter()
                    .map(|r| JsonReportStep {
                        name: r.name.clone(),
                        status: r.status,
                        duration_ms: 1,
                        run_id: None,
                        record: r.record_path.clone(),
                        cache_hit: false,
                        message: r.message.clone(),
                    })
                    .collect(),
            };
            let text = serde_json::to_string_pretty(&report).unwrap();
            let back: serde_json::Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(back["steps"].as_array().unwrap().len(), names.len());
            for (s, name) in back["steps"].as_array().unwrap().iter().zip(&names) {
                prop_assert_eq!(s["name"].as_str().unwrap(), name.as_str());
                prop_assert_eq!(s["message"].as_str().unwrap(), message.as_str());
            }
        }
    }
}
