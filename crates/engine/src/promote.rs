//! `cordon promote`: the one way an artifact crosses from a lower
//! environment into a higher one.
//!
//! For each artifact of a pipeline run in the source environment:
//!
//! 1. **Lineage.** Starting at the step that wrote the artifact, every read
//!    mount of every step is followed to the step of the same run that
//!    wrote that tree to that path; a tree no step wrote is a source
//!    dataset. A read tree that differs from what a step of the run wrote
//!    to the same path (the intermediate output was swapped) is refused.
//!    The lineage is built from the signed step records, never from the
//!    unsigned pipeline record, which only indexes them.
//! 2. **Verification.** Every record of the lineage is verified as `cordon
//!    verify --run` does (chain, record digest, statement, outputs on disk),
//!    and its envelope must carry a valid signature by a key the *target*
//!    environment trusts for the source
//!    ([`cordon_record::trust::promotion_keys`]): the user's trust in the
//!    source's key for its own records does not open the target's gate.
//! 3. **Policy.** The promotion policy of the target
//!    ([`cordon_policy::promotion`]) is evaluated over the verified
//!    provenance.
//! 4. **Publication.** Only when nothing was refused — for every artifact —
//!    is each copied by digest from the content store into the target's
//!    data root (staged, checked and exchanged into place like a step's
//!    output, under the same mount lock), and a SLSA VSA signed by the
//!    target's record key written under `<state>/promotions/<target>/`. A
//!    refusal writes nothing into the target and returns every reason.

use crate::cas::Cas;
use crate::keys::KeyError;
use crate::outputs::{RefillError, Staging};
use cordon_core::digest::{Entry, Sha256Digest};
use cordon_core::sanitize::escape_for_terminal;
use cordon_manifest::config::{EnvConfig, WorkspaceConfig};
use cordon_manifest::manifest::Access;
use cordon_policy::promotion::{self, ArtifactRef, Provenance};
use cordon_record::attest;
use cordon_record::chain;
use cordon_record::pipeline::{Dataset, PipelineRecord, pipeline_record_path};
use cordon_record::record::StepRecord;
use cordon_record::trust::{TrustRoots, promotion_keys, promotion_trust_dir};
use cordon_record::verify::{Checks, FindingKind, Scope};
use cordon_record::vsa;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Largest record file read: records are kilobytes, a state directory
/// anyone can write must not make a promotion read without bound.
const MAX_RECORD_BYTES: u64 = 64 << 20;

/// Format of the policy-set document a VSA's `policy` names.
pub const POLICY_SET_FORMAT: &str = "cordon.promotion-policy/v1";

/// What to promote.
#[derive(Debug, Clone)]
pub struct PromoteRequest<'a> {
    /// The state directory holding the pipeline run's records.
    pub state_dir: &'a Path,
    /// The workspace that defines both environments.
    pub workspace: &'a WorkspaceConfig,
    /// The pipeline run id.
    pub pipeline_run: &'a str,
    /// The source environment.
    pub from: &'a str,
    /// The target environment.
    pub to: &'a str,
    /// One artifact by guest path (`/model`); every artifact of the run
    /// when `None`.
    pub artifact: Option<&'a str>,
    /// Extra public keys (`--trusted-key`) the target trusts for records of
    /// the source, for this promotion.
    pub trusted_keys: &'a [PathBuf],
}

/// One artifact let in.
#[derive(Debug, Clone)]
pub struct PromotedArtifact {
    /// The step that wrote it.
    pub step: String,
    /// Its guest path.
    pub guest: String,
    /// Its tree digest.
    pub tree: Sha256Digest,
    /// Where it now is in the target.
    pub dest: PathBuf,
    /// The signed VSA.
    pub vsa: PathBuf,
}

/// What a promotion did.
#[derive(Debug, Clone, Default)]
pub struct Promoted {
    /// Every artifact let in.
    pub artifacts: Vec<PromotedArtifact>,
    /// What the user should hear that is not a refusal.
    pub warnings: Vec<String>,
}

/// Why a promotion did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    /// The provenance does not verify or the policy refuses it; nothing was
    /// written into the target.
    #[error("promotion from `{from}` to `{to}` refused; nothing was written into `{to}`:\n{}", reasons.iter().map(|r| format!("  - {}", escape_for_terminal(r))).collect::<Vec<_>>().join("\n"))]
    Refused {
        /// The source environment.
        from: String,
        /// The target environment.
        to: String,
        /// Every reason.
        reasons: Vec<String>,
    },
    /// The request or the configuration is wrong.
    #[error("{0}")]
    BadInput(String),
    /// The promotion policy could not be evaluated.
    #[error(transparent)]
    Policy(#[from] cordon_policy::policy::PolicyError),
    /// The target's record key cannot be used.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Reading the state directory failed.
    #[error(transparent)]
    Verify(#[from] cordon_record::verify::VerifyError),
    /// Copying into the target or writing the VSA failed.
    #[error("{what}: {message}")]
    Publish {
        /// What was being done.
        what: String,
        /// What failed.
        message: String,
    },
}

impl PromoteError {
    /// Whether it is a refusal (exit 1), as opposed to bad input (exit 2)
    /// or a runner failure.
    pub fn is_refusal(&self) -> bool {
        matches!(self, PromoteError::Refused { .. })
    }

    /// Whether the request or configuration is at fault.
    pub fn is_bad_input(&self) -> bool {
        matches!(self, PromoteError::BadInput(_) | PromoteError::Key(_))
    }
}

/// An artifact chosen for promotion, with its lineage.
struct Candidate {
    /// Index of the record that wrote it.
    producer: usize,
    guest: String,
    host: PathBuf,
    tree: Sha256Digest,
    entries: Vec<Entry>,
    /// Indices of the lineage's records, producer first.
    lineage: Vec<usize>,
    datasets: Vec<Dataset>,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    let bytes = cordon_core::fsutil::read_regular(path, MAX_RECORD_BYTES)
        .map_err(|e| format!("{} cannot be read: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{} is not readable: {e}", path.display()))
}

/// Resolves `root` (a `data_root` value) against the workspace directory.
fn data_root(env: &EnvConfig, workspace: &WorkspaceConfig) -> Option<PathBuf> {
    let v = env.vars.get("data_root")?;
    let p = workspace.dir.join(v);
    Some(cordon_core::fsutil::resolve(&p).unwrap_or(p))
}

/// Where an artifact at `host` in `source` lands in `target`: the same
/// path relative to the data roots.
fn destination(
    state_dir: &Path,
    host: &Path,
    source: &EnvConfig,
    target: &EnvConfig,
    workspace: &WorkspaceConfig,
) -> Result<PathBuf, String> {
    let from_root = data_root(source, workspace).ok_or_else(|| {
        format!(
            "environment `{}` has no `data_root` in [env.{}.vars], so the artifact's place in it is unknown",
            source.name, source.name
        )
    })?;
    let to_root = data_root(target, workspace).ok_or_else(|| {
        format!(
            "environment `{}` has no `data_root` in [env.{}.vars] to promote into",
            target.name, target.name
        )
    })?;
    let rel = host.strip_prefix(&from_root).map_err(|_| {
        format!(
            "the artifact's host path {} is outside the data root {} of `{}`",
            host.display(),
            from_root.display(),
            source.name
        )
    })?;
    if rel.as_os_str().is_empty() {
        return Err("the artifact is the whole data root".into());
    }
    let dest = to_root.join(rel);
    // A promotion publishes like a step's output, so it must not reach
    // what no mount may reach: a misconfigured data root would otherwise
    // let an artifact overwrite the runner's records or secrets.
    let mut protected = vec![(state_dir.to_path_buf(), "the state directory")];
    if let Some(home) = cordon_core::locations::secrets_home() {
        protected.push((home, "the secrets home"));
    }
    if let Some(c) = &target.config_file {
        protected.push((c.clone(), "the workspace configuration"));
    }
    for (p, what) in protected {
        let p = cordon_core::fsutil::resolve(&p).unwrap_or(p);
        if dest.starts_with(&p) || p.starts_with(&dest) {
            return Err(format!(
                "the artifact's destination {} in `{}` reaches {what} ({})",
                dest.display(),
                target.name,
                p.display()
            ));
        }
    }
    Ok(dest)
}

fn written(
    r: &StepRecord,
) -> impl Iterator<
    Item = (
        &cordon_record::record::MountRecord,
        &cordon_record::record::TreeRecord,
    ),
> {
    r.mounts
        .iter()
        .filter(|m| m.access == Access::Write)
        .filter_map(|m| m.after.as_ref().map(|t| (m, t)))
}

/// Follows the lineage back from `producer` (see the module doc).
fn lineage(
    records: &[StepRecord],
    producer: usize,
    reasons: &mut Vec<String>,
) -> (Vec<usize>, Vec<Dataset>) {
    let mut order = vec![producer];
    let mut seen = BTreeSet::from([producer]);
    let mut datasets: Vec<Dataset> = Vec::new();
    let mut i = 0;
    while i < order.len() {
        let r = &records[order[i]];
        i += 1;
        for m in r.mounts.iter().filter(|m| m.access != Access::Write) {
            let Some(before) = &m.before else { continue };
            let wrote_here: Vec<(usize, &Sha256Digest)> = records
                .iter()
                .enumerate()
                .flat_map(|(j, w)| {
                    written(w)
                        .filter(|(wm, _)| wm.host == m.host)
                        .map(move |(_, t)| (j, &t.sha256))
                })
                .collect();
            if let Some((j, _)) = wrote_here.iter().find(|(_, d)| **d == before.sha256) {
                if seen.insert(*j) {
                    order.push(*j);
                }
            } else if let Some((j, d)) = wrote_here.first() {
                reasons.push(format!(
                    "step `{}` read {} ({}) as {}, but step `{}` of the same run wrote {} there: the intermediate output was changed between the steps",
                    r.step,
                    m.host.display(),
                    before.sha256,
                    m.guest,
                    records[*j].step,
                    d
                ));
            } else if !datasets
                .iter()
                .any(|d| d.host == m.host && d.sha256 == before.sha256)
            {
                datasets.push(Dataset {
                    step: r.step.clone(),
                    guest: m.guest.clone(),
                    host: m.host.clone(),
                    sha256: before.sha256.clone(),
                    files: before.files,
                    bytes: before.bytes,
                    classification: m.classification,
                });
            }
        }
    }
    (order, datasets)
}

/// An artifact picked for promotion, before its lineage is followed.
struct Chosen {
    /// Index of the record that wrote it.
    producer: usize,
    guest: String,
    host: PathBuf,
    tree: Sha256Digest,
    entries: Vec<Entry>,
}

/// Chooses the artifacts: every artifact of the run, or the tree named by
/// `guest` (an output's guest path, or a read mount's guest path whose
/// tree a step of the run wrote, such as `/model`).
fn choose(
    pipeline: &PipelineRecord,
    records: &[StepRecord],
    guest: Option<&str>,
) -> Result<Vec<Chosen>, String> {
    let producer_of = |host: &Path, tree: &Sha256Digest| {
        records.iter().enumerate().find_map(|(j, r)| {
            written(r)
                .find(|(m, t)| m.host == host && t.sha256 == *tree)
                .map(|(m, t)| (j, m.guest.clone(), t.entries.clone().unwrap_or_default()))
        })
    };
    let mut out: Vec<Chosen> = Vec::new();
    let mut push = |j: usize, g: String, host: PathBuf, tree: Sha256Digest, entries: Vec<Entry>| {
        if !out.iter().any(|c| c.host == host && c.tree == tree) {
            out.push(Chosen {
                producer: j,
                guest: g,
                host,
                tree,
                entries,
            });
        }
    };
    match guest {
        None => {
            for a in &pipeline.artifacts {
                let (j, _, entries) = producer_of(&a.host, &a.sha256).ok_or_else(|| {
                    format!(
                        "artifact {} of step `{}` is named by no step record of the run",
                        a.guest, a.step
                    )
                })?;
                push(
                    j,
                    a.guest.clone(),
                    a.host.clone(),
                    a.sha256.clone(),
                    entries,
                );
            }
        }
        Some(g) => {
            for r in records {
                for m in r.mounts.iter().filter(|m| m.guest == g) {
                    let tree = match m.access {
                        Access::Write => m.after.as_ref(),
                        _ => m.before.as_ref(),
                    };
                    if let Some(t) = tree
                        && let Some((j, _, entries)) = producer_of(&m.host, &t.sha256)
                    {
                        push(j, g.to_string(), m.host.clone(), t.sha256.clone(), entries);
                    }
                }
            }
            if out.is_empty() {
                let mut known: BTreeSet<&str> = BTreeSet::new();
                for r in records {
                    for m in &r.mounts {
                        known.insert(&m.guest);
                    }
                }
                return Err(format!(
                    "no step of pipeline run `{}` wrote a tree that is mounted at {g}; mounts of the run: {}",
                    pipeline.run_id,
                    known.into_iter().collect::<Vec<_>>().join(", ")
                ));
            }
            if out.len() > 1 {
                return Err(format!(
                    "{g} names {} different trees in pipeline run `{}` ({}); name an output mount of one step",
                    out.len(),
                    pipeline.run_id,
                    out.iter()
                        .map(|c| format!("`{}` → {}", records[c.producer].step, c.host.display()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
    }
    Ok(out)
}

/// Verifies `request`'s artifacts and, when nothing is refused, publishes
/// them into the target with a signed VSA each (see the module doc).
///
/// With `reexecute`, each step of a lineage that is not reproducible by
/// construction (it saw the real clock or real randomness) is run again
/// from its record in that sandbox (see [`crate::reexec`]); one that gives
/// the same outputs, streams and exit status counts as re-executed for
/// the promotion policy, one that differs is refused.
pub fn promote(
    request: &PromoteRequest<'_>,
    reexecute: Option<&cordon_sandbox::Sandbox>,
) -> Result<Promoted, PromoteError> {
    let PromoteRequest {
        state_dir,
        workspace,
        pipeline_run,
        from,
        to,
        ..
    } = *request;
    let bad = |m: String| PromoteError::BadInput(m);
    if from == to {
        return Err(bad(format!(
            "--from and --to both name `{from}`; a promotion crosses from one environment into another"
        )));
    }
    let env = |name: &str| {
        workspace.envs.get(name).ok_or_else(|| {
            bad(format!(
                "environment `{name}` is not defined{}; defined: {}",
                workspace
                    .path
                    .as_ref()
                    .map(|p| format!(" in {}", p.display()))
                    .unwrap_or_default(),
                workspace
                    .envs
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    };
    let source = env(from)?;
    let target = env(to)?;
    if !chain::is_run_id(pipeline_run) {
        return Err(bad(format!(
            "`{}` is not a run id",
            escape_for_terminal(pipeline_run)
        )));
    }
    let pipeline_path = pipeline_record_path(state_dir, pipeline_run);
    if !pipeline_path.is_file() {
        return Err(bad(format!(
            "no pipeline run `{pipeline_run}` in {} (looked for {})",
            state_dir.display(),
            pipeline_path.display()
        )));
    }
    let pipeline: PipelineRecord = read_json(&pipeline_path).map_err(bad)?;
    // The target signs what it lets in; without a key there is nothing to
    // promote into.
    let signer = crate::keys::record_signer(target, &workspace.dir)?.ok_or_else(|| {
        bad(format!(
            "environment `{to}` has no record-signing key to sign the verification summary\n  fix: run `cordon key generate --env {to}`"
        ))
    })?;

    let mut reasons = Vec::new();
    let mut warnings = Vec::new();
    if pipeline.environment != from {
        reasons.push(format!(
            "pipeline run `{pipeline_run}` ran in environment `{}`, not `{from}`",
            pipeline.environment
        ));
    }
    if !pipeline.success {
        reasons.push(format!("pipeline run `{pipeline_run}` did not succeed"));
    }
    let records_dir = state_dir.join("records");
    let mut records: Vec<StepRecord> = Vec::new();
    for s in &pipeline.steps {
        let Some(run) = &s.run_id else { continue };
        if !chain::is_run_id(run) {
            reasons.push(format!("step `{}` names an invalid run id", s.name));
            continue;
        }
        match read_json::<StepRecord>(&chain::record_path(&records_dir, run)) {
            Ok(r) if r.run_id == *run => records.push(r),
            Ok(_) => reasons.push(format!("the record of step `{}` names another run", s.name)),
            Err(e) => reasons.push(format!("the record of step `{}` (run {run}): {e}", s.name)),
        }
    }
    let chosen = choose(&pipeline, &records, request.artifact).map_err(bad)?;

    let keys = promotion_keys(to, from, request.trusted_keys)
        .map_err(|e| bad(format!("a key trusted for promotion: {e}")))?;
    if keys.is_empty() {
        reasons.push(format!(
            "environment `{to}` trusts no key for records of `{from}`: put the public key of `{from}`'s records in {} or pass --trusted-key FILE",
            promotion_trust_dir(to, from)
                .map_or_else(|| "the user trust directory".into(), |d| d.display().to_string())
        ));
    }
    let trusted: Vec<attest::TrustedKey> = keys.iter().map(|(k, _)| k.clone()).collect();
    let roots = TrustRoots {
        command_line: trusted.iter().map(|k| PathBuf::from(&k.source)).collect(),
        environment: Vec::new(),
    };

    let mut candidates = Vec::new();
    for Chosen {
        producer,
        guest,
        host,
        tree,
        entries,
    } in chosen
    {
        let (lineage, datasets) = lineage(&records, producer, &mut reasons);
        candidates.push(Candidate {
            producer,
            guest,
            host,
            tree,
            entries,
            lineage,
            datasets,
        });
    }

    // Verify every record in any lineage once.
    let in_lineage: BTreeSet<usize> = candidates.iter().flat_map(|c| c.lineage.clone()).collect();
    let mut envelopes: BTreeMap<usize, Sha256Digest> = BTreeMap::new();
    for &i in &in_lineage {
        let r = &records[i];
        let subject = format!("record {}", r.run_id);
        if r.environment != from {
            reasons.push(format!(
                "{subject} (step `{}`) is of environment `{}`, not `{from}`",
                r.step, r.environment
            ));
        }
        let verdict = cordon_record::verify::verify_with(
            state_dir,
            workspace,
            &roots,
            &Scope::Run(r.run_id.clone()),
            Checks { outputs: true },
        )?;
        for f in &verdict.findings {
            let about = f.subject == subject || f.subject.starts_with(chain::LOG_FILE);
            if about || f.kind == FindingKind::Chain {
                reasons.push(format!("{f} (step `{}`)", r.step));
            }
        }
        warnings.extend(verdict.warnings);
        // The signature that counts is one by a key the target trusts for
        // the source, whatever else the user trusts.
        let envelope = chain::envelope_path(&records_dir, &r.run_id);
        match cordon_core::fsutil::read_regular(&envelope, MAX_RECORD_BYTES) {
            Err(_) => reasons.push(format!(
                "{subject} (step `{}`) is not signed; `{to}` admits only records signed by a key it trusts for `{from}`",
                r.step
            )),
            Ok(bytes) => {
                if !trusted.is_empty()
                    && let Err(e) = attest::open_envelope(&bytes, &trusted)
                {
                    reasons.push(format!(
                        "{subject} (step `{}`): {e}; `{to}` trusts for records of `{from}`: {}",
                        r.step,
                        keys.iter()
                            .map(|(k, o)| format!("{} ({})", &k.keyid[..8.min(k.keyid.len())], o.describe()))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                envelopes.insert(i, Sha256Digest::of(&bytes));
            }
        }
    }
    warnings.sort();
    warnings.dedup();

    let mut reexecuted = BTreeSet::new();
    if let Some(sandbox) = reexecute {
        for &i in &in_lineage {
            let r = &records[i];
            if r.reproducibility.reproducible {
                continue;
            }
            let report =
                crate::reexec::reexecute_scope(state_dir, &Scope::Run(r.run_id.clone()), sandbox)
                    .map_err(|e| PromoteError::Publish {
                    what: format!("re-executing step `{}`", r.step),
                    message: e.to_string(),
                })?;
            for f in &report.findings {
                reasons.push(format!("{f} (step `{}`, re-executed)", r.step));
            }
            if report.findings.is_empty()
                && report.reproduced.iter().any(|(run, _, _)| *run == r.run_id)
            {
                reexecuted.insert(r.run_id.clone());
            }
            // Identical outputs from another architecture count, but the
            // promotion says they were not the same-architecture check.
            for (_, _, caveat) in report
                .reproduced
                .iter()
                .filter(|(run, _, _)| *run == r.run_id)
            {
                if let Some(why) = caveat {
                    warnings.push(format!("step `{}` re-executed: {why}", r.step));
                }
            }
        }
    }

    // Policy, per artifact.
    let mut evaluations = Vec::new();
    let mut destinations = Vec::new();
    for c in &candidates {
        let producer = &records[c.producer];
        let p = Provenance {
            source: from,
            target,
            pipeline: &pipeline,
            artifact: ArtifactRef {
                step: &producer.step,
                guest: &c.guest,
                sha256: &c.tree,
            },
            datasets: c.datasets.iter().collect(),
            steps: c.lineage.iter().map(|&i| &records[i]).collect(),
            reexecuted: reexecuted.clone(),
        };
        let e = promotion::evaluate(target, promotion::input(&p)?)?;
        for v in &e.violations {
            reasons.push(format!(
                "[{}] {}{}",
                v.rule,
                v.message,
                v.fix
                    .as_ref()
                    .map(|f| format!(" (fix: {f})"))
                    .unwrap_or_default()
            ));
        }
        evaluations.push(e);
        match destination(state_dir, &c.host, source, target, workspace) {
            Ok(d) => destinations.push(d),
            Err(e) => {
                reasons.push(e);
                destinations.push(PathBuf::new());
            }
        }
    }
    if !reasons.is_empty() {
        reasons.dedup();
        return Err(PromoteError::Refused {
            from: from.into(),
            to: to.into(),
            reasons,
        });
    }

    let mut promoted = Promoted {
        artifacts: Vec::new(),
        warnings,
    };
    for ((c, e), dest) in candidates.iter().zip(&evaluations).zip(destinations) {
        let id = cordon_core::clock::new_run_id("promote");
        let pub_err = |what: String| {
            move |e: std::io::Error| PromoteError::Publish {
                what,
                message: e.to_string(),
            }
        };
        // The policy set the VSA names: every file by digest and the
        // target's settings, kept beside the VSA so an auditor can read
        // what the digest covers.
        let policy_doc = json!({
            "format": POLICY_SET_FORMAT,
            "environment": to,
            "input_version": promotion::INPUT_VERSION,
            "files": e.files,
            "settings": {
                "required_steps": target.promotion.required_steps,
                "classifications": target.promotion.classifications,
                "break_glass": target.promotion.break_glass,
                "native_floats": target.promotion.native_floats,
                "reviewers": target.policy.reviewers.len(),
                "protected": target.protected,
            },
        });
        let mut policy_bytes = serde_json::to_vec_pretty(&policy_doc).expect("JSON encodes");
        policy_bytes.push(b'\n');
        let dir = vsa::promotions_dir(state_dir, to);
        std::fs::create_dir_all(&dir).map_err(pub_err(format!("creating {}", dir.display())))?;
        let policy_path = dir.join(format!("{id}.policy.json"));
        let mut inputs = vec![vsa::Resource {
            uri: format!("pipelines/{pipeline_run}.json"),
            sha256: Sha256Digest::of(
                &std::fs::read(&pipeline_path)
                    .map_err(pub_err(format!("reading {}", pipeline_path.display())))?,
            ),
        }];
        for i in &c.lineage {
            if let Some(d) = envelopes.get(i) {
                inputs.push(vsa::Resource {
                    uri: format!("records/{}.dsse.json", records[*i].run_id),
                    sha256: d.clone(),
                });
            }
        }
        let summary = vsa::Summary {
            environment: to.into(),
            time_verified: cordon_core::clock::now_rfc3339(),
            resource_uri: format!("file://{}", dest.display()),
            guest: c.guest.clone(),
            tree: c.tree.clone(),
            entries: c.entries.clone(),
            policy: vsa::Resource {
                uri: format!("promotions/{to}/{id}.policy.json"),
                sha256: Sha256Digest::of(&policy_bytes),
            },
            inputs,
            passed: true,
        };
        let payload = serde_json::to_vec(&vsa::statement(&summary)).expect("JSON encodes");
        let envelope = signer
            .signer
            .envelope(attest::PAYLOAD_TYPE, &payload)
            .map_err(|e| PromoteError::Publish {
                what: "signing the verification summary".into(),
                message: e.to_string(),
            })?;
        let path = vsa::vsa_path(state_dir, to, &c.tree, &id);
        let mut bytes = serde_json::to_vec_pretty(&envelope).expect("JSON encodes");
        bytes.push(b'\n');
        // One transaction: the decision and the VSA are durable before the
        // tree enters the target's data root (see `publish`).
        publish(
            state_dir,
            pipeline_run,
            c,
            &dest,
            &Decided {
                id: &id,
                policy: (&policy_path, &policy_bytes),
                vsa: (&path, &bytes),
            },
        )?;
        promoted.artifacts.push(PromotedArtifact {
            step: records[c.producer].step.clone(),
            guest: c.guest.clone(),
            tree: c.tree.clone(),
            dest,
            vsa: path,
        });
    }
    Ok(promoted)
}

/// What commits one promotion: its id, the policy set and the signed VSA,
/// each with the file it is written to.
struct Decided<'a> {
    id: &'a str,
    policy: (&'a Path, &'a [u8]),
    vsa: (&'a Path, &'a [u8]),
}

/// Copies `c` from the content store into `dest` by the commit protocol of
/// a run ([`cordon_record::journal`]), with the VSA as its record: staged
/// and checked against its tree digest under the destination's exclusive
/// mount lock; the intent written (naming the VSA); the policy set and the
/// VSA written durably; then the tree exchanged into place and the intent
/// removed. A kill before the VSA is written leaves the old tree (recovery
/// removes the staging); after it, recovery completes the publication. So
/// the target holds the old tree, or the new tree with its VSA.
fn publish(
    state_dir: &Path,
    run: &str,
    c: &Candidate,
    dest: &Path,
    decided: &Decided<'_>,
) -> Result<(), PromoteError> {
    let fail = |message: String| PromoteError::Publish {
        what: format!("copying {} into {}", c.guest, dest.display()),
        message,
    };
    let _locks = crate::mount_locks::acquire(
        state_dir,
        &crate::mount_locks::lock_order([(
            dest.to_path_buf(),
            crate::mount_locks::LockMode::Exclusive,
        )]),
        None,
        &mut crate::exec::say_waiting,
    )
    .map_err(|e| fail(e.to_string()))?;
    let root = state_dir.join("staging").join(format!(
        "promote-{run}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let staging = match Staging::create(root.clone(), &[(c.guest.clone(), dest.to_path_buf())]) {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&root);
            return Err(fail(e.to_string()));
        }
    };
    // Held until the publication is done, so that a `cordon repair`
    // meanwhile takes this staging for a live run's, not a stopped one's.
    let _staging_lock = match cordon_record::journal::lock_staging(staging.root()) {
        Ok(l) => l,
        Err(e) => {
            staging.discard();
            return Err(fail(e.to_string()));
        }
    };
    if let Err(e) = staging.refill(&Cas::new(state_dir), &[(c.entries.as_slice(), &c.tree)]) {
        staging.discard();
        return Err(fail(match e {
            RefillError::Mismatch { .. } => {
                format!("the content store does not hold the tree {}", c.tree)
            }
            other => other.to_string(),
        }));
    }
    // No record is sealed before this publication: make the removals of
    // finished runs' intents durable first (see `journal::finish`).
    if let Err(e) = cordon_record::journal::settle(state_dir) {
        staging.discard();
        return Err(fail(e.to_string()));
    }
    let intent = cordon_record::journal::Intent {
        run: decided.id.to_string(),
        staging: staging.root().to_path_buf(),
        trees: staging
            .mounts
            .iter()
            .map(|s| cordon_record::journal::StagedTree {
                guest: s.guest.clone(),
                staged: s.dir.clone(),
                dest: s.dest.clone(),
                tree: c.tree.to_string(),
            })
            .collect(),
        vsa: Some(decided.vsa.0.to_path_buf()),
    };
    if let Err(e) = cordon_record::journal::begin(state_dir, &intent) {
        staging.discard();
        return Err(fail(format!("cannot write the publication intent: {e}")));
    }
    cordon_core::fault::point("promote-after-intent");
    let written = cordon_core::fsutil::write_new(decided.policy.0, decided.policy.1)
        .and_then(|()| cordon_core::fsutil::write_new(decided.vsa.0, decided.vsa.1));
    if let Err(e) = written {
        // Not decided: nothing is published, and the intent goes.
        staging.discard();
        let _ = cordon_record::journal::finish(state_dir, decided.id);
        return Err(PromoteError::Publish {
            what: format!("writing {}", decided.vsa.0.display()),
            message: e.to_string(),
        });
    }
    cordon_core::fault::point("promote-after-vsa");
    // From here the promotion is decided: a failure leaves the intent for
    // the next command to complete.
    staging.publish().map_err(|e| {
        fail(format!(
            "{e}; the promotion is decided (its VSA is written): the next `cordon run`, `promote` or `repair` in this state directory completes it"
        ))
    })?;
    cordon_core::fault::point("promote-after-publish");
    cordon_record::journal::finish(state_dir, decided.id).map_err(|e| fail(e.to_string()))
}

/// A mount that requires promoted inputs (`requires = "promoted"`) whose
/// tree no valid VSA of the run's environment names.
#[derive(Debug, Clone)]
pub struct Unpromoted {
    /// The step.
    pub step: String,
    /// Its manifest.
    pub manifest: PathBuf,
    /// The mount's guest path.
    pub guest: String,
    /// Its host path.
    pub host: PathBuf,
    /// Its tree digest now (none when it cannot be hashed).
    pub tree: Option<Sha256Digest>,
    /// Why it does not count as promoted.
    pub problems: Vec<String>,
    /// The state directory whose promotions were searched: a summary kept
    /// in another one does not count, so the message names it.
    pub state_dir: PathBuf,
}

impl std::fmt::Display for Unpromoted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: step `{}` requires promoted input at {} ({}), but {}",
            self.manifest.display(),
            escape_for_terminal(&self.step),
            escape_for_terminal(&self.guest),
            self.host.display(),
            match &self.tree {
                Some(t) =>
                    format!("no valid verification summary of this environment names its tree {t}"),
                None => "it cannot be hashed".into(),
            }
        )?;
        for p in &self.problems {
            write!(f, "\n  {}", escape_for_terminal(p))?;
        }
        write!(
            f,
            "\n  searched the promotions of the state directory {} (--state or CORDON_STATE name another)",
            escape_for_terminal(&self.state_dir.display().to_string())
        )?;
        write!(
            f,
            "\n  fix: promote the artifact into this environment with `cordon promote --run PIPELINE_RUN --from ENV --to ENV`"
        )
    }
}

/// The mounts of `plans` that require promoted inputs and whose trees have
/// no valid VSA of `env` (signed by a key trusted for `env`'s records, as
/// `roots` and the user's configuration say). Called before a run starts;
/// the run then hashes the same trees into its records.
pub fn unpromoted_inputs(
    env: &EnvConfig,
    roots: &TrustRoots,
    plans: &[cordon_manifest::plan::StepPlan],
) -> Result<Vec<Unpromoted>, PromoteError> {
    let mut out = Vec::new();
    let mut keys: Option<Vec<attest::TrustedKey>> = None;
    for p in plans {
        for m in p.mounts.iter().filter(|m| m.requires_promoted) {
            if keys.is_none() {
                let t = roots
                    .keys_for(&env.name, Some(env))
                    .map_err(|e| PromoteError::BadInput(e.to_string()))?;
                keys = Some(t.keys.into_iter().map(|(k, _)| k).collect());
            }
            let keys = keys.as_deref().unwrap_or_default();
            let mut u = Unpromoted {
                step: p.name.clone(),
                manifest: p.manifest_path.clone(),
                guest: m.guest.clone(),
                host: m.host.clone(),
                tree: None,
                problems: Vec::new(),
                state_dir: p.state_dir.clone(),
            };
            match cordon_core::digest::tree(&m.host) {
                Err(e) => u.problems.push(e.to_string()),
                Ok(t) => {
                    let found = vsa::find(&p.state_dir, &env.name, &t.digest, keys);
                    if found.valid.is_some() {
                        continue;
                    }
                    if keys.is_empty() {
                        u.problems.push(format!(
                            "no key is trusted for environment `{}`, so no verification summary can be checked",
                            env.name
                        ));
                    }
                    u.problems.extend(found.problems);
                    u.tree = Some(t.digest);
                }
            }
            out.push(u);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace(dir: &Path, prod_root: &str) -> WorkspaceConfig {
        let toml = format!(
            "version = 1\n[env.dev.vars]\ndata_root = \"data/dev\"\n[env.prod.vars]\ndata_root = \"{prod_root}\"\n"
        );
        std::fs::write(dir.join("cordon.toml"), toml).unwrap();
        std::fs::create_dir_all(dir.join("data/dev/model")).unwrap();
        WorkspaceConfig::load(&dir.join("cordon.toml")).unwrap()
    }

    #[test]
    fn an_artifact_lands_at_the_same_place_under_the_target_data_root() {
        let d = tempfile::tempdir().unwrap();
        let root = cordon_core::fsutil::resolve(d.path()).unwrap();
        let ws = workspace(&root, "data/prod");
        let dest = destination(
            &root.join(".cordon"),
            &root.join("data/dev/model"),
            &ws.envs["dev"],
            &ws.envs["prod"],
            &ws,
        )
        .unwrap();
        assert_eq!(dest, root.join("data/prod/model"));
        // Outside the source's data root: its place in the target is unknown.
        let err = destination(
            &root.join(".cordon"),
            &root.join("elsewhere/model"),
            &ws.envs["dev"],
            &ws.envs["prod"],
            &ws,
        )
        .unwrap_err();
        assert!(err.contains("outside the data root"), "{err}");
    }

    #[test]
    fn a_target_data_root_that_reaches_the_state_directory_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let root = cordon_core::fsutil::resolve(d.path()).unwrap();
        let ws = workspace(&root, ".cordon/records");
        let err = destination(
            &root.join(".cordon"),
            &root.join("data/dev/model"),
            &ws.envs["dev"],
            &ws.envs["prod"],
            &ws,
        )
        .unwrap_err();
        assert!(err.contains("reaches the state directory"), "{err}");
    }
}
