//! One step of a pipeline on this machine (`cordon run PIPELINE --step
//! NAME`), its upstream inputs taken from the shared store.
//!
//! The steps a step depends on (its lineage) ran elsewhere. Their outputs
//! are not trusted because a file or an object says so: the shared chain is
//! verified first (every link, every record signed by a key trusted for
//! the environment here, no run and no record in two entries), then the
//! newest successful record of each upstream step names the tree digest
//! and files of each output; those files come from the store,
//! are checked against the record's digests, and are published to the
//! upstream step's output directory through the one "restore, verify,
//! publish" routine ([`crate::outputs::Staging::refill`]). Only then does
//! the step run, as in a whole pipeline run, so its own record binds the
//! digests of exactly those inputs.
//!
//! **Upstream means the step the pipeline names.** A record is the
//! upstream step's only when its manifest digest is the one the pipeline
//! file resolves for that step today and its environment is this one: a
//! record of any other manifest that happens to carry the same step name
//! and component (an ad-hoc run with other arguments or mounts, in the
//! same environment) is never taken, however new. A chain with a problem
//! anywhere — a replayed entry above all — gives no upstream output.
//!
//! A missing or unverifiable upstream record is an error naming the step
//! and nothing runs. This module never parses a command line.

use crate::remote::{RemoteError, RemoteStore};
use cordon_manifest::manifest::{Access, Sha256Digest};
use cordon_manifest::pipeline::PipelinePlan;
use cordon_record::attest::TrustedKey;
use cordon_record::record::StepRecord;
use std::path::PathBuf;

/// One upstream output published here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    /// The upstream step.
    pub step: String,
    /// Its output mount (guest path).
    pub guest: String,
    /// Where it was published.
    pub host: PathBuf,
    /// The run that produced it.
    pub run_id: String,
    /// The tree digest it has.
    pub tree: Sha256Digest,
}

/// Why the step's upstream inputs cannot be taken. Nothing has run.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The pipeline has no such step.
    #[error("pipeline `{pipeline}` has no step `{step}` (steps: {known})")]
    NoSuchStep {
        /// The pipeline.
        pipeline: String,
        /// The name asked for.
        step: String,
        /// The steps it has.
        known: String,
    },
    /// Upstream outputs can be taken only from a shared store.
    #[error(
        "--step runs one step with inputs from the shared store, but environment `{env}` has none\n  fix: add [env.{env}.store] to cordon.toml (docs/scale-out.md)"
    )]
    NoStore {
        /// The environment.
        env: String,
    },
    /// Nothing here is trusted to judge the records.
    #[error(
        "no key is trusted for environment `{env}`, so the upstream records of step `{step}` cannot be verified\n  fix: trust each machine's public key (`--trusted-key`, CORDON_TRUSTED_KEYS or <secrets home>/trusted/{env}/)"
    )]
    NoTrust {
        /// The environment.
        env: String,
        /// The step that was to run.
        step: String,
    },
    /// The shared chain does not verify.
    #[error(
        "the shared chain does not verify, so no upstream output of step `{step}` is taken: {problem}"
    )]
    Chain {
        /// The step that was to run.
        step: String,
        /// Its first problem.
        problem: String,
    },
    /// No record of an upstream step.
    #[error("{0}")]
    Missing(Box<MissingUpstream>),
    /// The upstream output could not be restored and checked.
    #[error("output {guest} of step `{upstream}` (run {run_id}): {problem}")]
    Restore {
        /// The upstream step.
        upstream: String,
        /// Its output mount.
        guest: String,
        /// The run.
        run_id: String,
        /// What failed.
        problem: String,
    },
    /// The store failed.
    #[error(transparent)]
    Remote(#[from] RemoteError),
}

/// An upstream step of which the shared chain holds no usable record.
#[derive(Debug, thiserror::Error)]
#[error(
    "step `{step}` reads {guest} from step `{upstream}`, but the shared chain holds no successful record of `{upstream}` with manifest {manifest} in environment `{env}`\n  fix: run `cordon run {pipeline} --env {env} --step {upstream}` first"
)]
pub struct MissingUpstream {
    /// The step that was to run.
    pub step: String,
    /// The upstream step.
    pub upstream: String,
    /// Its output mount.
    pub guest: String,
    /// The digest of the manifest the pipeline resolves for it.
    pub manifest: Sha256Digest,
    /// The pipeline file.
    pub pipeline: String,
    /// The environment.
    pub env: String,
}

/// The index of step `name` in `plan`.
pub fn select(plan: &PipelinePlan, name: &str) -> Result<usize, UpstreamError> {
    plan.steps
        .iter()
        .position(|s| s.name == name)
        .ok_or_else(|| UpstreamError::NoSuchStep {
            pipeline: plan.name.clone(),
            step: name.into(),
            known: plan
                .steps
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// `plan` with step `i` alone: no dependencies, since its inputs are
/// published here already ([`take_inputs`]).
pub fn only(mut plan: PipelinePlan, i: usize) -> PipelinePlan {
    let step = plan.steps.swap_remove(i);
    let cacheable = plan.cacheable[i];
    plan.steps = vec![step];
    plan.cacheable = vec![cacheable];
    plan.deps = vec![Vec::new()];
    plan.reasons.clear();
    plan
}

/// Takes every output that step `i` reads from its upstream steps from the
/// shared store and publishes it where the pipeline puts it; see the
/// module documentation for what is checked.
pub fn take_inputs(
    plan: &PipelinePlan,
    i: usize,
    remote: &RemoteStore,
    trusted: &[TrustedKey],
) -> Result<Vec<Taken>, UpstreamError> {
    let step = &plan.steps[i];
    let env = step.environment.clone();
    // Every (upstream step, its write mount) that step `i` reads.
    let mut wanted = Vec::new();
    for &d in &plan.deps[i] {
        let up = &plan.steps[d];
        for w in up.mounts.iter().filter(|w| w.access == Access::Write) {
            let read = step.mounts.iter().any(|m| {
                m.access != Access::Write
                    && (m.host.starts_with(&w.host) || w.host.starts_with(&m.host))
            });
            if read {
                wanted.push((d, w));
            }
        }
    }
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    if trusted.is_empty() {
        return Err(UpstreamError::NoTrust {
            env,
            step: step.name.clone(),
        });
    }
    let report = remote.verify_chain(trusted)?;
    if let Some(problem) = report.problems.first() {
        return Err(UpstreamError::Chain {
            step: step.name.clone(),
            problem: problem.clone(),
        });
    }
    let records: Vec<StepRecord> = report
        .records
        .iter()
        .filter_map(|r| serde_json::from_str(r).ok())
        .collect();
    let cas = crate::cas::Cas::for_state(&step.state_dir).map_err(RemoteError::Local)?;
    let mut taken = Vec::new();
    for (d, w) in wanted {
        let up = &plan.steps[d];
        let found = records.iter().rev().find_map(|r| {
            let ok = r.success
                && r.step == up.name
                && r.environment == env
                && r.manifest.sha256 == up.manifest_sha256
                && r.component.sha256 == up.component_digest;
            ok.then(|| {
                r.mounts
                    .iter()
                    .find(|m| m.guest == w.guest && m.access == Access::Write)
                    .and_then(|m| m.after.as_ref())
                    .and_then(|t| t.entries.as_ref().map(|e| (r, t, e)))
            })
            .flatten()
        });
        let Some((record, tree, entries)) = found else {
            return Err(UpstreamError::Missing(Box::new(MissingUpstream {
                step: step.name.clone(),
                upstream: up.name.clone(),
                guest: w.guest.clone(),
                manifest: up.manifest_sha256.clone(),
                pipeline: plan.path.display().to_string(),
                env,
            })));
        };
        let restore = |problem: String| UpstreamError::Restore {
            upstream: up.name.clone(),
            guest: w.guest.clone(),
            run_id: record.run_id.clone(),
            problem,
        };
        // The destination is replaced whole: what it holds must be a tree
        // a record names (here, or in the verified shared chain), never a
        // user's files (see `outputs::existing`).
        {
            use crate::outputs::existing::{Holding, Inspected, inspect};
            let shown =
                || cordon_core::sanitize::escape_for_terminal(&w.host.display().to_string());
            match inspect(&step.state_dir, &w.host, None) {
                Err(e) => return Err(restore(format!("cannot tell what {} holds: {e}", shown()))),
                Ok(Inspected::NotDirectory) => {
                    return Err(restore(format!("{} is not a directory", shown())));
                }
                Ok(Inspected::Holding(Holding::Unrecorded(u)))
                    if !records.iter().any(|r| {
                        r.success
                            && r.step == up.name
                            && r.mounts.iter().any(|m| {
                                m.guest == w.guest
                                    && m.after.as_ref().is_some_and(|t| t.sha256 == u.tree.digest)
                            })
                    }) =>
                {
                    return Err(restore(format!(
                        "{} holds {} path(s) no record names ({}); nothing was replaced\n  fix: move them out of the way",
                        shown(),
                        u.count,
                        u.listed.join(", ")
                    )));
                }
                Ok(Inspected::Holding(_)) => {}
            }
        }
        remote.fetch_tree(&cas, &tree.sha256, entries, &w.guest)?;
        let staging = crate::outputs::Staging::create(
            step.state_dir
                .join("staging")
                .join(format!("upstream-{}", record.run_id)),
            &[(w.guest.clone(), w.host.clone())],
        )
        .map_err(|e| restore(e.to_string()))?;
        // Held until the publication is done, so that a `cordon repair`
        // meanwhile takes this staging for a live run's, not a stopped one's.
        let _staging_lock = match cordon_record::journal::lock_staging(staging.root()) {
            Ok(l) => l,
            Err(e) => {
                staging.discard();
                return Err(restore(e.to_string()));
            }
        };
        match staging.refill(&cas, &[(entries.as_slice(), &tree.sha256)]) {
            // No record is sealed before this publication: make the
            // removals of finished runs' intents durable first (see
            // `journal::finish`).
            Ok(_) => match cordon_record::journal::settle(&step.state_dir) {
                Ok(()) => staging.publish().map_err(|e| restore(e.to_string()))?,
                Err(e) => {
                    staging.discard();
                    return Err(restore(format!("cannot flush the journal: {e}")));
                }
            },
            Err(e) => {
                staging.discard();
                return Err(restore(e.to_string()));
            }
        }
        taken.push(Taken {
            step: up.name.clone(),
            guest: w.guest.clone(),
            host: w.host.clone(),
            run_id: record.run_id.clone(),
            tree: tree.sha256.clone(),
        });
    }
    Ok(taken)
}
