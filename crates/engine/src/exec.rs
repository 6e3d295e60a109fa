//! Running one planned step: hash the inputs, stage the outputs, run the
//! sandbox, check and publish (or keep) the outputs, write the record.
//!
//! This is where the one-way flow meets: it takes a [`StepPlan`] and resolved
//! secrets, drives the sandbox, and hands the facts to the record. It never
//! parses a manifest and never sees a secret value except to pass it on.

use crate::cache::{
    ActionCache, ActionEntry, CachedEntry, CachedOutput, action_keys, report_json,
    uncacheable_reason,
};
use crate::outputs::check::{self, MountCheck};
use crate::outputs::{OutputError, Staging};
use cordon_core::digest::{self, Tree};
use cordon_core::sanitize::escape_for_terminal;
use cordon_manifest::manifest::{Access, ClockMode, RandomMode};
use cordon_manifest::plan::StepPlan;
use cordon_record::record::CacheInfo;
use cordon_record::record::{
    self, FileRef, MountRecord, Publication, Reproducibility, RunnerInfo, StepRecord, TreeRecord,
};
use cordon_sandbox::stdio::Forward;
use cordon_sandbox::{
    Determinism, Grants, Preopen, Sandbox, Stdio, StepComponent, Termination, Watched,
};
use cordon_secrets::{Redactor, ResolvedSecret};
use std::path::PathBuf;
use std::sync::Arc;

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Do not forward the step's stdout/stderr to the terminal.
    pub quiet: bool,
    /// Run even when the action cache has the outputs (`--no-cache`).
    pub no_cache: bool,
    /// The pipeline says `cache = false` for this step.
    pub cache_forbidden: bool,
    /// Set to stop the step (Ctrl-C); the run then publishes nothing.
    pub cancel: Option<cordon_core::cancel::Cancel>,
    /// The environment's record signing key; without one the record is
    /// chained but not signed.
    pub signer: Option<std::sync::Arc<cordon_record::attest::Signer>>,
    /// The index of input file digests; unchanged files are not read again.
    /// Without one (and always with `no_cache`), every input is read.
    pub hash_index: Option<Arc<digest::HashIndex>>,
    /// The policy decision that let this run go ahead, for the record.
    pub policy: Option<Arc<cordon_policy::policy::Decision>>,
    /// The environment's shared store, when it has one: misses of the
    /// local action cache are looked up there, and every record goes to
    /// its chain (see [`crate::remote`]).
    pub remote: Option<Arc<crate::remote::RemoteStore>>,
}

/// A finished run: the record and where it was written.
#[derive(Debug)]
pub struct StepRun {
    /// The record.
    pub record: StepRecord,
    /// Its file.
    pub record_path: PathBuf,
    /// Its signed statement, when the environment signs records.
    pub envelope_path: Option<PathBuf>,
}

/// A failure of the runner (not of the step): the run could not be carried
/// out or its results could not be stored.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct ExecError {
    what: String,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl ExecError {
    /// Whether the run was cancelled before its step started, while it
    /// waited for another run's mount lock: it ran nothing and wrote no
    /// record, so it is an interruption, not a failure of the runner.
    pub fn is_cancelled(&self) -> bool {
        matches!(
            self.source.downcast_ref::<crate::mount_locks::LockError>(),
            Some(crate::mount_locks::LockError::Cancelled { .. })
        )
    }

    /// A panic caught while running a step (a runner bug), with what it
    /// said.
    pub fn panicked(message: String) -> ExecError {
        ExecError {
            what: "the runner failed on this step (a bug; please report it)".into(),
            source: message.into(),
        }
    }
}

fn fail<E: std::error::Error + Send + Sync + 'static>(
    what: impl Into<String>,
) -> impl FnOnce(E) -> ExecError {
    let what = what.into();
    move |e| ExecError {
        what,
        source: Box::new(e),
    }
}

fn tree_record(t: &Tree, with_entries: bool) -> TreeRecord {
    TreeRecord::of(t, with_entries)
}

/// Runs `plan` once and commits it: the record is durable, then the
/// outputs are published.
pub fn run_step(
    plan: &StepPlan,
    sandbox: &Sandbox,
    component: &StepComponent,
    secrets: Vec<ResolvedSecret>,
    opts: &RunOptions,
) -> Result<StepRun, ExecError> {
    let run = execute_step(plan, sandbox, component, secrets, opts)?;
    commit_batch(vec![run]).pop().expect("one result per run")
}

/// A step that ran (or was served from the action cache) and waits for
/// [`commit_batch`]: its record is built but not written, its outputs are
/// staged but not published, and its mount locks are still held. Nothing
/// of it is visible, so a runner that stops here loses only this run.
pub struct Uncommitted {
    state: PathBuf,
    record: StepRecord,
    redactor: Redactor,
    signer: Option<Arc<cordon_record::attest::Signer>>,
    pending: Option<(Staging, Option<ActionEntry>)>,
    key: Option<crate::cache::ActionKey>,
    shared_key: Option<crate::cache::ActionKey>,
    remote: Option<Arc<crate::remote::RemoteStore>>,
    runner_failure: Option<ExecError>,
    // Held until the outputs are published (dropped with the run, after
    // its commit): the mount locks, then the staging lock.
    _mount_locks: Option<crate::mount_locks::HeldLocks>,
    _staging_lock: Option<cordon_record::journal::StagingLock>,
}

impl Uncommitted {
    /// Whether the step succeeded (its record will say so once sealed).
    pub fn succeeded(&self) -> bool {
        self.record.success
    }
}

/// Runs `plan` once, up to its commit: see [`Uncommitted`].
pub fn execute_step(
    plan: &StepPlan,
    sandbox: &Sandbox,
    component: &StepComponent,
    secrets: Vec<ResolvedSecret>,
    opts: &RunOptions,
) -> Result<Uncommitted, ExecError> {
    let run_id = record::new_run_id(&plan.name);
    let started_at = record::now_rfc3339();
    let (determinism, reproducibility) = determinism_for(plan);
    let state = &plan.state_dir;

    // Held from before the inputs are hashed until the outputs are
    // published (dropped on return): no runner sharing this state directory
    // changes a read mount while the step may read it, or publishes to one
    // of its destinations alongside it (see `mount_locks`).
    let mount_locks = crate::mount_locks::acquire(
        state,
        &mount_lock_order(plan),
        opts.cancel.as_ref(),
        &mut say_waiting,
    )
    .map_err(fail(format!(
        "cannot lock the mounts of step {}",
        plan.name
    )))?;

    // Inputs are hashed before the step starts: the record binds what the
    // step could read.
    // `--no-cache` trusts nothing remembered, not even file digests.
    let index = if opts.no_cache {
        None
    } else {
        opts.hash_index.as_deref()
    };
    // What the write mounts' host directories hold: replaced only when a
    // record can bring it back (see `outputs::existing`). Checked again
    // here, under the mount locks, whatever was checked before the run.
    let replaced = existing_data(plan, index)?;
    let mut before: Vec<Option<Tree>> = Vec::new();
    for m in &plan.mounts {
        before.push(match m.access {
            Access::Read | Access::ReadWrite => {
                Some(digest::tree_with(&m.host, index).map_err(fail(format!(
                    "cannot hash input mount {} ({})",
                    m.guest,
                    m.host.display()
                )))?)
            }
            Access::Write => None,
        });
    }

    // The action cache: serve the outputs of an identical earlier run.
    let action_cache = ActionCache::new(state);
    let uncacheable = uncacheable_reason(plan, &secrets, !opts.cache_forbidden);
    let inputs: Vec<(String, cordon_manifest::manifest::Sha256Digest)> = plan
        .mounts
        .iter()
        .zip(&before)
        .filter_map(|(m, t)| t.as_ref().map(|t| (m.guest.clone(), t.digest.clone())))
        .collect();
    // Both keys come from one key document (see `cache`); an entry is
    // served only when its record proves the key it is filed under.
    let keys = uncacheable
        .is_none()
        .then(|| action_keys(plan, &inputs, &secrets));
    let key = keys.as_ref().map(|k| k.local.clone());
    let cached = match &keys {
        Some(k) if !opts.no_cache => action_cache.get(k).unwrap_or_else(|damaged| {
            // Never trusted, never fatal: the run's own entry replaces it.
            tracing::warn!("{damaged}; running step {}", plan.name);
            None
        }),
        _ => None,
    };
    // The shared store files runs under a key without host paths, so a
    // machine with another checkout directory finds them (see `remote`).
    let shared_key = keys
        .as_ref()
        .filter(|_| opts.remote.is_some())
        .map(|k| k.shared.clone());
    let cached = match (cached, &keys, opts.remote.as_deref()) {
        (cached, Some(k), Some(remote)) if !opts.no_cache => {
            crate::remote::hit_or_pull(remote, &action_cache, state, cached, k, &plan.name)
        }
        (cached, ..) => cached,
    };
    if let Some(k) = &key
        && let Some(entry) = cached
    {
        match serve_from_cache(
            plan,
            &run_id,
            started_at.clone(),
            &before,
            &replaced,
            &action_cache,
            k,
            &entry,
            component.from_cache,
            reproducibility.clone(),
            opts,
        ) {
            // A hit is shared too: a run that executed here while the store
            // was failing gets its outputs and entry there on a later hit.
            Ok(mut run) => {
                run.shared_key = shared_key;
                run._mount_locks = Some(mount_locks);
                return Ok(run);
            }
            // A damaged cache entry costs a re-run, never a wrong result.
            Err(e) => tracing::warn!(
                "damaged cache entry for {}: {e}; running the step",
                plan.name
            ),
        }
    }
    let cache_info = CacheInfo {
        key: key.as_ref().map(|k| k.0.to_string()),
        hit: false,
        source_run: None,
        uncacheable: uncacheable.clone(),
    };

    let writes: Vec<(String, PathBuf)> = plan
        .mounts
        .iter()
        .filter(|m| m.access == Access::Write)
        .map(|m| (m.guest.clone(), m.host.clone()))
        .collect();
    let staging = Staging::create(state.join("staging").join(&run_id), &writes)
        .map_err(fail("cannot create the staging directory"))?;
    // Held until the run is committed: `cordon repair` leaves a locked
    // staging alone.
    let staging_lock = lock_staging(&staging)?;

    let mut preopens = Vec::new();
    let mut watched = Vec::new();
    let mut staged = staging.mounts.iter();
    for m in &plan.mounts {
        match m.access {
            Access::Read => preopens.push(Preopen {
                host: m.host.clone(),
                guest: m.guest.clone(),
                writable: false,
            }),
            Access::ReadWrite => {
                watched.push(Watched {
                    path: m.host.clone(),
                    baseline: digest::charged_bytes(&m.host).map_err(fail(format!(
                        "cannot measure read-write mount {} before the run",
                        escape_for_terminal(&m.guest)
                    )))?,
                });
                preopens.push(Preopen {
                    host: m.host.clone(),
                    guest: m.guest.clone(),
                    writable: true,
                });
            }
            Access::Write => {
                let s = staged.next().expect("one staging dir per write mount");
                watched.push(Watched {
                    path: s.dir.clone(),
                    baseline: 0,
                });
                preopens.push(Preopen {
                    host: s.dir.clone(),
                    guest: m.guest.clone(),
                    writable: true,
                });
            }
        }
    }

    // The run's logs; the capture makes the directory with the first byte
    // a stream keeps, so a silent step leaves nothing here.
    let run_dir = state.join("runs").join(&run_id);
    let redactor = Redactor::new(&secrets);
    let grants = Grants {
        argv: plan.argv.clone(),
        env: plan.env.clone(),
        preopens,
        secrets,
        limits: plan.limits,
        outputs: watched,
        cancel: opts.cancel.clone(),
        determinism,
        network: plan.network.clone(),
        secret_hosts: plan
            .secrets
            .iter()
            .filter(|g| !g.hosts.is_empty())
            .map(|g| (g.name.clone(), g.hosts.clone()))
            .collect(),
    };
    let stdio = Stdio {
        prefix: format!("[{}] ", plan.name),
        stdout: if opts.quiet {
            Forward::None
        } else {
            Forward::Stdout
        },
        stderr: if opts.quiet {
            Forward::None
        } else {
            Forward::Stderr
        },
        stdout_log: Some(run_dir.join("stdout.log")),
        stderr_log: Some(run_dir.join("stderr.log")),
    };
    let outcome = sandbox
        .run(component, grants, stdio)
        .map_err(fail("cannot run the step"))?;

    // The locks keep other runners out, not everything else on the host:
    // a read mount that changed while the step ran fails the step, so the
    // record never names an input the step may not have seen.
    let input_changed = changed_input(plan, &before, index);

    // The output check, on every writable mount and whatever the step's
    // exit: a step that fails on purpose must not get a value out through
    // the partial output kept for inspection either.
    let checks = check_outputs(plan, &staging, &redactor);
    let leaked = checks.iter().any(MountCheck::leaks);
    let refusal = first_refusal(&checks, &redactor);
    if leaked {
        // What leaks in a read-write mount is already on the host: take it
        // out again. (Only when there are values to protect; see
        // `MountCheck::removes`.)
        for (m, c) in plan
            .mounts
            .iter()
            .filter(|m| m.access == Access::ReadWrite)
            .zip(checks.iter().filter(|c| c.in_place))
        {
            check::remove_refused(&m.host, c).map_err(fail(format!(
                "cannot remove refused output from read-write mount {}",
                escape_for_terminal(&m.guest)
            )))?;
        }
    }

    // Outputs: publish only when the step succeeded and the check passed,
    // and only after the record is chained (see `journal`).
    let mut success = outcome.termination.success() && refusal.is_none() && input_changed.is_none();
    // Why the step failed, most serious first: a leak, an input that
    // changed under it, then its own exit.
    let failure_reason = || {
        refusal
            .clone()
            .or_else(|| input_changed.clone())
            .unwrap_or_else(|| outcome.termination.describe())
    };
    let mut pending: Option<(Staging, Option<ActionEntry>)> = None;
    let mut runner_failure: Option<ExecError> = None;
    let mut after_trees: Vec<Tree> = Vec::new();
    let publication = if leaked {
        let reason = refusal.clone().unwrap_or_default();
        // A refused output is not kept: only its listing (names redacted,
        // sizes, digests), never the bytes that leaked.
        staging.destroy().map_err(fail(
            "cannot remove a refused output from the staging directory",
        ))?;
        let listing = check::keep_listing(&state.join("failed").join(&run_id), &reason, &checks)
            .map_err(fail("cannot keep the listing of the refused output"))?;
        Publication::Withheld {
            reason,
            kept_at: None,
            listing: Some(listing),
        }
    } else if writes.is_empty() {
        // No write mount: the (empty) staging root goes at once.
        staging.discard();
        if success {
            Publication::NoOutputs
        } else {
            Publication::Withheld {
                reason: failure_reason(),
                kept_at: None,
                listing: None,
            }
        }
    } else {
        let verdict = if success {
            match staging.verify() {
                Ok(trees) => Ok(trees),
                Err(OutputError::Io { what, source }) => {
                    return Err(ExecError {
                        what,
                        source: Box::new(source),
                    });
                }
                Err(e) => Err(e.to_string()),
            }
        } else {
            Err(failure_reason())
        };
        match verdict {
            Ok(trees) => {
                after_trees = trees;
                // Stage 1 of the commit (see `journal`): the staged trees
                // go into the content store, for rollback (`cordon
                // restore`) and for the action cache; they are published
                // only once the record that names them is chained.
                let cas = action_cache.cas();
                let stored: Result<(), crate::cache::CasError> = staging
                    .mounts
                    .iter()
                    .zip(&after_trees)
                    .try_for_each(|(s, t)| cas.put_entries(&s.dir, &t.entries));
                match stored {
                    Ok(()) => {
                        let cache_entry = key.as_ref().map(|k| ActionEntry {
                            key: k.0.to_string(),
                            run_id: run_id.clone(),
                            record: state.join("records").join(format!("{run_id}.json")),
                            outputs: staging
                                .mounts
                                .iter()
                                .zip(&after_trees)
                                .map(|(s, t)| CachedOutput {
                                    guest: s.guest.clone(),
                                    tree: t.digest.to_string(),
                                    entries: t
                                        .entries
                                        .iter()
                                        .map(CachedEntry::from_entry)
                                        .collect(),
                                })
                                .collect(),
                            report: report_json(&outcome.report),
                        });
                        pending = Some((staging, cache_entry));
                        Publication::Published
                    }
                    Err(e) => {
                        // Every run leaves a record, a runner failure too.
                        success = false;
                        staging.discard();
                        let what = format!(
                            "cannot store the outputs in the content store ({e}); nothing was published"
                        );
                        runner_failure.get_or_insert(ExecError {
                            what: what.clone(),
                            source: Box::new(e),
                        });
                        Publication::runner_failure(&what)
                    }
                }
            }
            Err(reason) => {
                success = false;
                let kept = staging
                    .keep(&state.join("failed").join(&run_id))
                    .map_err(fail("cannot keep the partial output"))?;
                Publication::Withheld {
                    reason,
                    kept_at: Some(kept),
                    listing: None,
                }
            }
        }
    };

    let mut after_iter = after_trees.iter();
    let mut mounts = Vec::new();
    for (i, (m, before)) in plan.mounts.iter().zip(before).enumerate() {
        let after = match m.access {
            Access::Write => after_iter.next().map(|t| tree_record(t, true)),
            Access::ReadWrite => match digest::tree(&m.host) {
                Ok(t) => Some(tree_record(&t, true)),
                // The check already failed the step over what this mount
                // holds (a tree too deep to name, say); the record says why.
                Err(_) if refusal.is_some() => None,
                Err(e) => {
                    return Err(fail(format!(
                        "cannot hash read-write mount {}",
                        escape_for_terminal(&m.guest)
                    ))(e));
                }
            },
            Access::Read => None,
        };
        mounts.push(MountRecord {
            guest: m.guest.clone(),
            host: m.host.clone(),
            access: m.access,
            purpose: m.purpose.clone(),
            classification: m.classification,
            before: before.as_ref().map(|t| tree_record(t, true)),
            after,
            replaced: replaced[i].clone(),
        });
    }

    let mut report = outcome.report;
    // The step's own words pass through the redactor like its logs do.
    report.annotations = report
        .annotations
        .into_iter()
        .map(|(k, v)| (redactor.redact_str(&k), redactor.redact_str(&v)))
        .collect();
    // The component goes into the store so the run can be repeated from
    // its record (`cordon verify --reexecute`) after the file is rebuilt.
    let mut publication = publication;
    if let Err(e) = crate::cas::Cas::for_state(state).and_then(|cas| {
        // Present already (every run after the first): the file is not
        // read, whether or not planning read it.
        if cas.has(&plan.component_digest) {
            return Ok(());
        }
        cas.put_verified(&plan.component_digest, &plan.component_bytes.get()?)
    }) {
        let what = format!("cannot store the component in the content store ({e})");
        if let Some((staging, _)) = pending.take() {
            staging.discard();
            success = false;
            publication = Publication::runner_failure(&format!("{what}; nothing was published"));
        }
        runner_failure.get_or_insert(ExecError {
            what,
            source: Box::new(e),
        });
    }
    let record = step_record(
        plan,
        &run_id,
        started_at,
        component.from_cache,
        reproducibility,
        opts,
        RunParts {
            args: plan.argv.iter().map(|a| redactor.redact_str(a)).collect(),
            env: plan
                .env
                .iter()
                .map(|(k, v)| (k.clone(), redactor.redact_str(v)))
                .collect(),
            mounts,
            secrets: outcome.secrets,
            secrets_not_granted: outcome.secrets_not_granted,
            network: outcome.network,
            network_omitted: outcome.network_omitted,
            usage: outcome.usage,
            stdout: outcome.stdout,
            stderr: outcome.stderr,
            report,
            termination: redact_termination(outcome.termination, &redactor),
            success,
            outputs: publication,
            cache: cache_info,
        },
    );
    Ok(Uncommitted {
        state: state.clone(),
        record,
        redactor,
        signer: opts.signer.clone(),
        pending,
        key,
        shared_key,
        remote: opts.remote.clone(),
        runner_failure,
        _mount_locks: Some(mount_locks),
        _staging_lock: staging_lock,
    })
}

/// Commits `runs` together (stages 2–6 of the commit protocol, see
/// [`cordon_record::journal`]): each run's publication intent, then every
/// record sealed as one batch — one chain lock and one durability barrier
/// for all of them ([`cordon_record::chain::seal_batch`]) — then, run by
/// run, its cache entry, its publication and its shared-store copy. No
/// run's outputs are published before the batch that holds its record is
/// durable. One result per run, in order; a run whose record is chained
/// but whose runner failed still ends in its error.
pub fn commit_batch(mut runs: Vec<Uncommitted>) -> Vec<Result<StepRun, ExecError>> {
    // Stage 2: the intents. A run whose intent cannot be written publishes
    // nothing and records that instead.
    let intent_failed: Vec<Option<ExecError>> = runs.iter_mut().map(begin_intent).collect();
    cordon_core::fault::point("after-intent");

    // Stage 3: the records, in groups that share a state directory and a
    // signer (every run of a pipeline does).
    let mut sealed: Vec<std::io::Result<cordon_record::chain::Sealed>> =
        Vec::with_capacity(runs.len());
    let mut start = 0;
    while start < runs.len() {
        let same = |r: &Uncommitted| {
            r.state == runs[start].state
                && match (&r.signer, &runs[start].signer) {
                    (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                    (None, None) => true,
                    _ => false,
                }
        };
        let end = start + runs[start..].iter().take_while(|r| same(r)).count();
        let group = &mut runs[start..end];
        let records_dir = group[0].state.join("records");
        let signer = group[0].signer.clone();
        let mut batch: Vec<cordon_record::chain::ToSeal<'_>> = group
            .iter_mut()
            .map(|r| cordon_record::chain::ToSeal {
                record: &mut r.record,
                redactor: &r.redactor,
            })
            .collect();
        sealed.extend(cordon_record::chain::seal_batch(
            &records_dir,
            &mut batch,
            signer.as_deref(),
        ));
        start = end;
    }
    cordon_core::fault::point("after-record");

    // Stages 4–6, run by run; each run's locks go with it.
    let finish = |((run, sealed), intent_failed): (
        (Uncommitted, std::io::Result<cordon_record::chain::Sealed>),
        Option<ExecError>,
    )| {
        let sealed = sealed.map_err(fail("cannot write the execution record"))?;
        if let Some(e) = intent_failed {
            return Err(e);
        }
        finish_commit(run, sealed)
    };
    let items: Vec<_> = runs.into_iter().zip(sealed).zip(intent_failed).collect();
    if items.len() < 2 || items.iter().all(|((r, _), _)| r.remote.is_none()) {
        return items.into_iter().map(finish).collect();
    }
    // With a shared store, each run's round trips to it overlap with the
    // others' (as they did when every worker shared its own run), a few
    // runs at a time; every run still finishes before the batch is done.
    let mut results = Vec::with_capacity(items.len());
    let mut items = items.into_iter();
    loop {
        let chunk: Vec<_> = items.by_ref().take(SHARED_IN_FLIGHT).collect();
        if chunk.is_empty() {
            break;
        }
        std::thread::scope(|scope| {
            let handles: Vec<_> = chunk
                .into_iter()
                .map(|item| scope.spawn(move || finish(item)))
                .collect();
            for h in handles {
                results.push(h.join().unwrap_or_else(|_| {
                    Err(ExecError::panicked(
                        "the commit of this run panicked".into(),
                    ))
                }));
            }
        });
    }
    results
}

/// How many runs of a batch share their records with the shared store at
/// once.
const SHARED_IN_FLIGHT: usize = 8;

/// Stage 2 for one run with outputs to publish: the durable publication
/// intent. When it cannot be written, nothing is visible yet: the staging
/// goes and the record says so instead.
fn begin_intent(run: &mut Uncommitted) -> Option<ExecError> {
    cordon_core::fault::point("before-intent");
    let (staging, _) = run.pending.as_ref()?;
    let after: Vec<&TreeRecord> = run
        .record
        .mounts
        .iter()
        .filter(|m| m.access == Access::Write)
        .filter_map(|m| m.after.as_ref())
        .collect();
    let intent = cordon_record::journal::Intent {
        run: run.record.run_id.clone(),
        staging: staging.root().to_path_buf(),
        trees: staging
            .mounts
            .iter()
            .zip(after)
            .map(|(s, t)| cordon_record::journal::StagedTree {
                guest: s.guest.clone(),
                staged: s.dir.clone(),
                dest: s.dest.clone(),
                tree: t.sha256.to_string(),
            })
            .collect(),
        vsa: None,
    };
    // The intent shares the durability barrier of the batch that seals the
    // record (see `begin_unsynced`); a journal elsewhere gets its own.
    let begun = cordon_record::journal::begin_unsynced(&run.state, &intent).and_then(|shared| {
        if shared {
            Ok(())
        } else {
            cordon_record::journal::begin(&run.state, &intent)
        }
    });
    let e = begun.err()?;
    let (staging, _) = run.pending.take().expect("checked above");
    staging.discard();
    let what = format!("cannot write the publication intent ({e}); nothing was published");
    run.record.success = false;
    run.record.outputs = Publication::runner_failure(&what);
    Some(ExecError {
        what,
        source: Box::new(e),
    })
}

/// Stages 4–6 for one run whose record is durable: the cache entry, the
/// publication, the end of the intent; then the shared store.
fn finish_commit(
    run: Uncommitted,
    sealed: cordon_record::chain::Sealed,
) -> Result<StepRun, ExecError> {
    let Uncommitted {
        state,
        record,
        pending,
        key,
        shared_key,
        remote,
        runner_failure,
        ..
    } = run;
    let run_id = record.run_id.clone();
    let action_cache = ActionCache::new(&state);
    if let Some((staging, cache_entry)) = pending {
        if let (Some(k), Some(entry)) = (&key, cache_entry)
            && let Err(e) = action_cache.put(k, &entry)
        {
            tracing::warn!("cannot write the action cache entry: {e}");
        }
        cordon_core::fault::point("after-cache");
        staging.publish().map_err(|e| ExecError {
            what: format!(
                "the record of run {run_id} is written, but publishing its outputs failed; run `cordon repair` to complete the publication"
            ),
            source: Box::new(e),
        })?;
        cordon_core::fault::point("after-publish");
        for m in record.mounts.iter().filter(|m| m.access == Access::Write) {
            crate::outputs::existing::remember(&state, &m.host, &run_id);
        }
        cordon_record::journal::finish(&state, &run_id)
            .map_err(fail("cannot remove the finished publication intent"))?;
    }
    let step_run = StepRun {
        record,
        record_path: sealed.record_path,
        envelope_path: sealed.envelope_path,
    };
    let shared = Some((&action_cache, key.as_ref().zip(shared_key.as_ref())));
    let step_run = share(remote.as_deref(), shared, step_run)?;
    match runner_failure {
        // The record of the failed run is chained; the runner's own
        // failure still ends the command with exit 3.
        Some(e) => Err(e),
        None => Ok(step_run),
    }
}

/// Puts a sealed run's record in the shared chain, and a run's outputs
/// and action entry in the shared cache (`cache`, for a run that executed),
/// when the environment has a shared store. A record that does not reach
/// the store makes the run a runner failure: no step is reported as done
/// without its record where every machine can verify it.
fn share(
    remote: Option<&crate::remote::RemoteStore>,
    cache: Option<(&ActionCache, Option<crate::remote::Keys<'_>>)>,
    run: StepRun,
) -> Result<StepRun, ExecError> {
    let Some(remote) = remote else {
        return Ok(run);
    };
    remote
        .share_run(cache, &run.record_path, run.envelope_path.as_deref())
        .map_err(fail(format!(
            "run {} is recorded on this machine but not in the shared store {}; run it again when the store is back",
            run.record.run_id,
            remote.url()
        )))?;
    Ok(run)
}

/// Locks a run's staging area until the run is committed, so `cordon
/// repair` leaves it alone; a run that stages nothing has none to lock.
fn lock_staging(
    staging: &Staging,
) -> Result<Option<cordon_record::journal::StagingLock>, ExecError> {
    if staging.mounts.is_empty() {
        return Ok(None);
    }
    cordon_record::journal::lock_staging(staging.root())
        .map(Some)
        .map_err(fail("cannot lock the staging directory"))
}

/// Says why a run does not start yet (see [`crate::mount_locks`]).
pub(crate) fn say_waiting(path: &std::path::Path) {
    say!(
        "cordon: waiting for another run to release {}",
        escape_for_terminal(&path.display().to_string())
    );
}

/// The locks a run of `plan` holds (see [`crate::mount_locks`]): shared on
/// what it only reads, exclusive on what it writes.
fn mount_lock_order(plan: &StepPlan) -> Vec<crate::mount_locks::PathLock> {
    use crate::mount_locks::LockMode;
    crate::mount_locks::lock_order(plan.mounts.iter().map(|m| {
        let mode = match m.access {
            Access::Read => LockMode::Shared,
            Access::Write | Access::ReadWrite => LockMode::Exclusive,
        };
        (m.host.clone(), mode)
    }))
}

/// Hashes every `read` mount again after the run and names the first whose
/// tree is no longer the one hashed before it (the digests the record
/// holds), or `None`. With the hash index, a file is read again unless its
/// device, inode, size, mtime and ctime are unchanged, as before the run.
fn changed_input(
    plan: &StepPlan,
    before: &[Option<Tree>],
    index: Option<&digest::HashIndex>,
) -> Option<String> {
    for (m, b) in plan.mounts.iter().zip(before) {
        let (Access::Read, Some(b)) = (m.access, b) else {
            continue;
        };
        let reason = match digest::tree_with(&m.host, index) {
            Ok(now) if now.digest == b.digest => continue,
            Ok(now) => format!(
                "input mount {} changed during the run ({} when the step started, {} after); nothing was published",
                escape_for_terminal(&m.guest),
                b.digest,
                now.digest
            ),
            // Gone or unreadable is changed too: the step did not read
            // what was hashed, or cannot be shown to have.
            Err(e) => format!(
                "input mount {} changed during the run (it cannot be hashed again: {e}); nothing was published",
                escape_for_terminal(&m.guest)
            ),
        };
        return Some(reason);
    }
    None
}

/// For each mount of `plan` (in order), the tree its publication will
/// replace that no record names, kept in the content store (a `write`
/// mount with `existing = "keep"`); `None` for every other mount. A write
/// mount whose host directory holds unrecorded data without that opt-in,
/// or is not a directory, refuses the run: nothing a user put there is
/// destroyed.
fn existing_data(
    plan: &StepPlan,
    index: Option<&digest::HashIndex>,
) -> Result<Vec<Option<TreeRecord>>, ExecError> {
    use crate::outputs::existing::{self, Holding, Inspected};
    let mut out = Vec::with_capacity(plan.mounts.len());
    for m in &plan.mounts {
        if m.access != Access::Write {
            out.push(None);
            continue;
        }
        let host = escape_for_terminal(&m.host.display().to_string());
        let found = existing::inspect(&plan.state_dir, &m.host, index).map_err(fail(format!(
            "cannot tell what write mount {} ({host}) holds",
            escape_for_terminal(&m.guest)
        )))?;
        match found {
            Inspected::Holding(Holding::Nothing | Holding::Recorded { .. }) => out.push(None),
            Inspected::Holding(Holding::Unrecorded(u)) if m.keep_existing => {
                let cas = crate::cas::Cas::for_state(&plan.state_dir)
                    .map_err(fail("cannot open the content store"))?;
                let stored = cas.store_tree(&m.host).map_err(fail(format!(
                    "cannot keep what write mount {} ({host}) holds in the content store",
                    escape_for_terminal(&m.guest)
                )))?;
                if stored != u.tree.digest {
                    return Err(ExecError {
                        what: format!(
                            "write mount {} ({host}) changed while it was kept in the content store; nothing ran",
                            escape_for_terminal(&m.guest)
                        ),
                        source: "changed while stored".into(),
                    });
                }
                out.push(Some(tree_record(&u.tree, true)));
            }
            Inspected::Holding(Holding::Unrecorded(u)) => {
                return Err(ExecError {
                    what: format!(
                        "write mount {} ({host}) of step {} holds {} path(s) no recorded run published there ({}); nothing ran",
                        escape_for_terminal(&m.guest),
                        plan.name,
                        u.count,
                        u.listed.join(", ")
                    ),
                    source: "fix: move them out, or add `existing = \"keep\"` to the mount".into(),
                });
            }
            Inspected::NotDirectory => {
                return Err(ExecError {
                    what: format!(
                        "write mount {} ({host}) of step {} is not a directory; nothing ran",
                        escape_for_terminal(&m.guest),
                        plan.name
                    ),
                    source: "fix: move it out of the way".into(),
                });
            }
        }
    }
    Ok(out)
}

/// Publishes a cached run's outputs and records the hit.
#[allow(clippy::too_many_arguments)]
fn serve_from_cache(
    plan: &StepPlan,
    run_id: &str,
    started_at: String,
    before: &[Option<Tree>],
    replaced: &[Option<TreeRecord>],
    cache: &ActionCache,
    key: &crate::cache::ActionKey,
    entry: &ActionEntry,
    compiled_from_cache: bool,
    reproducibility: Reproducibility,
    opts: &RunOptions,
) -> Result<Uncommitted, ExecError> {
    // A hit must come from a recorded run: an entry whose record is gone
    // (or was moved aside by `cordon repair`) means "run the step".
    if !entry.record.is_file() {
        return Err(ExecError {
            what: format!(
                "cache entry points at run {}, which has no record",
                entry.run_id
            ),
            source: "no record".into(),
        });
    }
    let writes: Vec<(String, PathBuf)> = plan
        .mounts
        .iter()
        .filter(|m| m.access == Access::Write)
        .map(|m| (m.guest.clone(), m.host.clone()))
        .collect();
    let staging = Staging::create(plan.state_dir.join("staging").join(run_id), &writes)
        .map_err(fail("cannot create the staging directory"))?;
    let staging_lock = lock_staging(&staging)?;
    // Every failure below removes the staging area, so the run that
    // follows a refused cache entry starts from a clean one.
    // Each staged mount's entries and tree digest, from the entry; an
    // entry that lacks one, or names a tree digest that does not parse, is
    // refused before anything is restored.
    let wanted: Result<
        Vec<(
            Vec<cordon_core::digest::Entry>,
            cordon_core::digest::Sha256Digest,
        )>,
        ExecError,
    > = staging
        .mounts
        .iter()
        .map(|s| {
            let out = entry
                .outputs
                .iter()
                .find(|o| o.guest == s.guest)
                .ok_or_else(|| ExecError {
                    what: format!("cache entry lacks output {}", s.guest),
                    source: "incomplete entry".into(),
                })?;
            let tree =
                cordon_core::digest::Sha256Digest::parse(&out.tree).map_err(|e| ExecError {
                    what: format!("cache entry names no tree digest for output {}", s.guest),
                    source: Box::new(e),
                })?;
            Ok((
                out.entries.iter().map(CachedEntry::to_entry).collect(),
                tree,
            ))
        })
        .collect();
    let wanted = match wanted {
        Ok(w) => w,
        Err(e) => {
            staging.discard();
            return Err(e);
        }
    };
    let refs: Vec<_> = wanted.iter().map(|(e, t)| (e.as_slice(), t)).collect();
    let trees = match staging.refill(cache.cas(), &refs) {
        Ok(t) => t,
        Err(e) => {
            staging.discard();
            let what = match &e {
                crate::outputs::RefillError::Store { guest, .. } => {
                    format!("cannot restore cached output {guest}")
                }
                crate::outputs::RefillError::Check(_) => "cached output failed verification".into(),
                crate::outputs::RefillError::Mismatch { guest } => {
                    format!("cached output {guest} does not match its tree digest")
                }
            };
            return Err(ExecError {
                what,
                source: Box::new(e),
            });
        }
    };
    let mut after = trees.iter();
    let mounts = plan
        .mounts
        .iter()
        .zip(before)
        .zip(replaced)
        .map(|((m, b), replaced)| MountRecord {
            guest: m.guest.clone(),
            host: m.host.clone(),
            access: m.access,
            purpose: m.purpose.clone(),
            classification: m.classification,
            before: b.as_ref().map(|t| tree_record(t, false)),
            after: (m.access == Access::Write)
                .then(|| after.next().map(|t| tree_record(t, true)))
                .flatten(),
            replaced: replaced.clone(),
        })
        .collect();
    let empty = |log: Option<PathBuf>| cordon_sandbox::stdio::StreamSummary {
        sha256: cordon_manifest::manifest::Sha256Digest::of(b""),
        bytes_written: 0,
        bytes_captured: 0,
        truncated: false,
        redacted: false,
        escaped: false,
        log,
    };
    let report: cordon_sandbox::host::Report =
        serde_json::from_value(entry.report.clone()).unwrap_or_default();
    let record = step_record(
        plan,
        run_id,
        started_at,
        compiled_from_cache,
        reproducibility,
        opts,
        RunParts {
            args: plan.argv.clone(),
            env: plan.env.iter().cloned().collect(),
            mounts,
            secrets: Default::default(),
            secrets_not_granted: Default::default(),
            network: Vec::new(),
            network_omitted: None,
            usage: Default::default(),
            stdout: empty(None),
            stderr: empty(None),
            report,
            termination: Termination::Exited { code: 0 },
            success: true,
            outputs: if writes.is_empty() {
                Publication::NoOutputs
            } else {
                Publication::Published
            },
            cache: CacheInfo {
                key: Some(key.0.to_string()),
                hit: true,
                source_run: Some(entry.run_id.clone()),
                uncacheable: None,
            },
        },
    );
    // The hit's record is chained before its outputs are published, like
    // any run's.
    let pending = if writes.is_empty() {
        staging.discard();
        None
    } else {
        Some((staging, None))
    };
    Ok(Uncommitted {
        state: plan.state_dir.clone(),
        record,
        redactor: Redactor::default(),
        signer: opts.signer.clone(),
        pending,
        key: Some(key.clone()),
        shared_key: None,
        remote: opts.remote.clone(),
        runner_failure: None,
        _mount_locks: None,
        _staging_lock: staging_lock,
    })
}

/// What one run (or cache hit) produced, for [`step_record`].
struct RunParts {
    args: Vec<String>,
    env: std::collections::BTreeMap<String, String>,
    mounts: Vec<MountRecord>,
    secrets: std::collections::BTreeMap<String, cordon_record::run::SecretAudit>,
    secrets_not_granted: std::collections::BTreeMap<String, u64>,
    network: Vec<cordon_record::run::NetworkCall>,
    network_omitted: Option<cordon_record::run::OmittedCalls>,
    usage: cordon_record::run::Usage,
    stdout: cordon_record::run::StreamSummary,
    stderr: cordon_record::run::StreamSummary,
    report: cordon_record::run::Report,
    termination: Termination,
    success: bool,
    outputs: Publication,
    cache: CacheInfo,
}

/// The one place a step record is built: what the plan says ran, and what
/// the run (or the cache hit) produced. It is sealed (redacted as values,
/// chained, signed) by `commit`.
fn step_record(
    plan: &StepPlan,
    run_id: &str,
    started_at: String,
    compiled_from_cache: bool,
    reproducibility: Reproducibility,
    opts: &RunOptions,
    parts: RunParts,
) -> StepRecord {
    StepRecord {
        format: record::RECORD_FORMAT.into(),
        run_id: run_id.to_string(),
        step: plan.name.clone(),
        environment: plan.environment.clone(),
        runner: RunnerInfo::default(),
        manifest: FileRef {
            path: plan.manifest_path.clone(),
            sha256: plan.manifest_sha256.clone(),
        },
        component: FileRef {
            path: plan.component_path.clone(),
            sha256: plan.component_digest.clone(),
        },
        compiled_from_cache,
        args: parts.args,
        env: parts.env,
        mounts: parts.mounts,
        secrets: parts.secrets,
        secrets_not_granted: parts.secrets_not_granted,
        network: parts.network,
        network_omitted: parts.network_omitted,
        limits: plan.limits,
        usage: parts.usage,
        stdout: parts.stdout,
        stderr: parts.stderr,
        report: parts.report,
        termination: parts.termination,
        success: parts.success,
        outputs: parts.outputs,
        cache: parts.cache,
        started_at,
        finished_at: record::now_rfc3339(),
        reproducibility,
        policy: opts.policy.as_deref().cloned(),
        chain: None,
        signed_by: None,
    }
}

/// A fixed clock (this second) and a fresh seed, unless the manifest opts
/// out; and how the record describes them.
fn determinism_for(plan: &StepPlan) -> (Determinism, Reproducibility) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let clock = (plan.clock == ClockMode::Fixed).then_some(now.as_secs());
    let seed = (plan.random == RandomMode::Seeded).then(rand::random::<[u8; 32]>);
    (
        Determinism {
            wall_clock: clock.map(std::time::Duration::from_secs),
            seed,
        },
        Reproducibility {
            reproducible: clock.is_some() && seed.is_some(),
            clock: plan.clock,
            fixed_clock_unix_s: clock,
            random: plan.random,
            seed: seed.map(hex::encode),
            nan_canonicalization: plan.floats == cordon_manifest::manifest::FloatMode::Canonical,
            arch: Some(cordon_record::record::host_arch().into()),
        },
    )
}

fn redact_termination(t: Termination, r: &Redactor) -> Termination {
    match t {
        Termination::Trapped { message, detail } => Termination::Trapped {
            message: r.redact_str(&message),
            detail: r.redact_str(&detail),
        },
        other => other,
    }
}

/// Runs the output check on every writable mount, in manifest order: the
/// staged directory of each `write` mount, the host directory of each
/// `read-write` mount.
fn check_outputs(plan: &StepPlan, staging: &Staging, redactor: &Redactor) -> Vec<MountCheck> {
    let mut staged = staging.mounts.iter();
    plan.mounts
        .iter()
        .filter_map(|m| match m.access {
            Access::Read => None,
            Access::Write => staged
                .next()
                .map(|s| check::check_mount(&s.dir, &m.guest, false, redactor)),
            Access::ReadWrite => Some(check::check_mount(&m.host, &m.guest, true, redactor)),
        })
        .collect()
}

/// The reason the check gives for failing the step: the first problem that
/// can leak a value, else the first problem, named by mount and path.
fn first_refusal(checks: &[MountCheck], redactor: &Redactor) -> Option<String> {
    let leaking = checks.iter().find(|c| c.leaks());
    let c = leaking.or_else(|| checks.iter().find(|c| c.worst().is_some()))?;
    c.worst().map(|p| c.reason(p, redactor))
}
