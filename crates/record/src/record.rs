//! Execution records: what ran, on what, with which grants, what came out.
//!
//! One JSON document per step run, written once under
//! `<state>/records/<run-id>.json` and never overwritten (`chain::seal`
//! writes it, links it into the hash chain and signs its statement). The
//! record holds names, digests and counts; it never sees a secret value
//! (stdout and stderr digests are of the redacted streams).
//!
//! `attest` turns the stored bytes into an in-toto statement: subjects are
//! the output files, dependencies the component, manifest and input files.

use crate::run::{
    Decision, NetworkCall, OmittedCalls, Report, SecretAudit, StreamSummary, Termination, Usage,
};
use cordon_core::digest::Entry;
use cordon_core::redact::Redact;
use cordon_manifest::manifest::{
    Access, Classification, ClockMode, Limits, RandomMode, Sha256Digest,
};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Largest record file read: records list every input and output file
/// (about 150 bytes each); 64 MiB is some 400,000 files. The cap keeps a
/// planted file from filling memory.
pub const MAX_RECORD_BYTES: u64 = 64 << 20;

/// Format identifier of the record document.
pub const RECORD_FORMAT: &str = "cordon.step-record/v1";

/// A tree digest as the record stores it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TreeRecord {
    /// Tree digest (see `digest`).
    pub sha256: Sha256Digest,
    /// Regular files.
    pub files: u64,
    /// Bytes of regular files.
    pub bytes: u64,
    /// Every entry with its digest: inputs and outputs alike, so the
    /// statement can name every input file as a dependency and every output
    /// file as a subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entries: Option<Vec<Entry>>,
}

impl TreeRecord {
    /// The record of tree `t`, with every entry or only the counts.
    pub fn of(t: &cordon_core::digest::Tree, with_entries: bool) -> TreeRecord {
        TreeRecord {
            sha256: t.digest.clone(),
            files: t.file_count(),
            bytes: t.total_bytes(),
            entries: with_entries.then(|| t.entries.clone()),
        }
    }
}

/// A mount as the record stores it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MountRecord {
    /// Guest path.
    pub guest: String,
    /// Host path.
    pub host: PathBuf,
    /// Access; `read-write` mounts were changed in place, not staged.
    pub access: Access,
    /// Why the step needed it.
    pub purpose: String,
    /// Data classification.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classification: Option<Classification>,
    /// Tree before the run (read and read-write mounts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<TreeRecord>,
    /// Tree after the run (write and read-write mounts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<TreeRecord>,
    /// For a `write` mount with `existing = "keep"`: what its host
    /// directory held that no recorded run had published there, put into
    /// the content store before the output replaced it (`cordon restore
    /// --run RUN --replaced` brings it back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced: Option<TreeRecord>,
}

/// What happened to the step's outputs.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Publication {
    /// Outputs were published to their host paths.
    Published,
    /// Nothing was published; the partial output is kept at `kept_at`.
    Withheld {
        /// Why.
        reason: String,
        /// Where the partial output is, for inspection.
        #[serde(skip_serializing_if = "Option::is_none")]
        kept_at: Option<PathBuf>,
        /// For an output the check refused (a secret value in a name or in
        /// contents, or something it could not read): its listing, names
        /// redacted, sizes and digests, kept instead of its bytes.
        #[serde(skip_serializing_if = "Option::is_none")]
        listing: Option<PathBuf>,
    },
    /// The step has no write mounts.
    NoOutputs,
}

impl Publication {
    /// Nothing published because the runner itself failed after the step
    /// ran (`what` says how): the record of such a run says so.
    pub fn runner_failure(what: &str) -> Publication {
        Publication::Withheld {
            reason: format!("runner failure: {what}"),
            kept_at: None,
            listing: None,
        }
    }
}

/// The action cache's part of a record.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct CacheInfo {
    /// The action key (absent for steps that are never cached).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Whether the outputs were served from the cache instead of running.
    pub hit: bool,
    /// For a hit: the run that produced the outputs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_run: Option<String>,
    /// Why the step is never cached, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uncacheable: Option<String>,
}

/// The runner that produced a record.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RunnerInfo {
    /// `cordon`.
    pub name: String,
    /// Runner version.
    pub version: String,
    /// Sandbox semantics: engine and WASI version.
    pub sandbox: String,
}

impl Default for RunnerInfo {
    fn default() -> Self {
        RunnerInfo {
            name: "cordon".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            sandbox: "wasmtime-48 wasi-p2".into(),
        }
    }
}

/// A file reference with its digest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileRef {
    /// Path on the host.
    pub path: PathBuf,
    /// Content digest.
    pub sha256: Sha256Digest,
}

/// What the step saw of time and randomness, so that it can be run again
/// in the same world.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Reproducibility {
    /// Whether re-running the step with the same inputs is expected to give
    /// the same outputs: false when the manifest opted out of the fixed
    /// clock or the seeded randomness.
    pub reproducible: bool,
    /// The wall clock the step saw.
    pub clock: ClockMode,
    /// The instant a fixed wall clock showed, in seconds since the Unix
    /// epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fixed_clock_unix_s: Option<u64>,
    /// The randomness the step saw.
    pub random: RandomMode,
    /// The seed of the step's random streams (64 hex characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<String>,
    /// Whether the engine canonicalized NaNs: true when the manifest says
    /// `floats = "canonical"`; otherwise NaN bit patterns are the CPU's
    /// and a re-execution is bit for bit only on the same CPU architecture
    /// (`arch`).
    #[serde(default = "canonical_by_default")]
    pub nan_canonicalization: bool,
    /// The CPU architecture the step ran on, as Rust names it
    /// (`std::env::consts::ARCH`: `x86_64`, `aarch64`, …). With native
    /// floats it is where a re-execution is bit for bit. Absent in records
    /// written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
}

/// Records written before the float setting existed always canonicalized.
fn canonical_by_default() -> bool {
    true
}

/// The CPU architecture this process runs on, as records name it.
pub fn host_arch() -> &'static str {
    std::env::consts::ARCH
}

/// What a record without reproducibility facts (written before they were
/// recorded) is read as: not reproducible, nothing fixed.
impl Default for Reproducibility {
    fn default() -> Self {
        Reproducibility {
            reproducible: false,
            clock: ClockMode::Real,
            fixed_clock_unix_s: None,
            random: RandomMode::Real,
            seed: None,
            nan_canonicalization: true,
            arch: None,
        }
    }
}

/// The record's place in the state directory's hash chain (see `chain`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ChainLink {
    /// 1 for the first record of the state directory.
    pub sequence: u64,
    /// Digest of the previous log entry (all zeros for the first).
    pub previous: Sha256Digest,
}

/// One step run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StepRecord {
    /// [`RECORD_FORMAT`].
    pub format: String,
    /// Unique id of this run.
    pub run_id: String,
    /// Step name.
    pub step: String,
    /// The environment the step ran in.
    pub environment: String,
    /// Runner identity.
    pub runner: RunnerInfo,
    /// The manifest that granted the run.
    pub manifest: FileRef,
    /// The component that ran.
    pub component: FileRef,
    /// Whether the compiled component came from the cache.
    #[serde(default)]
    pub compiled_from_cache: bool,
    /// argv.
    pub args: Vec<String>,
    /// The environment the step saw.
    pub env: BTreeMap<String, String>,
    /// Mounts with their tree digests.
    pub mounts: Vec<MountRecord>,
    /// Granted secrets: provider, version, uses (never values).
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretAudit>,
    /// Secret names the step asked for that were not granted.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub secrets_not_granted: BTreeMap<String, u64>,
    /// Every HTTP request the step made or tried to make: method, URL
    /// (query values redacted), outcome, status, bytes and sha256 of both
    /// bodies, duration, and the secrets attached.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub network: Vec<NetworkCall>,
    /// Calls past the number a record lists, counted by outcome.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub network_omitted: Option<OmittedCalls>,
    /// Limits granted.
    pub limits: Limits,
    /// Resources used.
    #[serde(default)]
    pub usage: Usage,
    /// The step's stdout.
    pub stdout: StreamSummary,
    /// The step's stderr.
    pub stderr: StreamSummary,
    /// Facts the step reported.
    #[serde(default)]
    pub report: Report,
    /// How the step ended.
    pub termination: Termination,
    /// Whether the run succeeded (exit 0 and outputs acceptable).
    pub success: bool,
    /// What happened to the outputs.
    pub outputs: Publication,
    /// The action cache's view of this run.
    #[serde(default)]
    pub cache: CacheInfo,
    /// RFC 3339 start time.
    pub started_at: String,
    /// RFC 3339 end time.
    pub finished_at: String,
    /// Clock, randomness and float semantics the step ran with.
    #[serde(default)]
    pub reproducibility: Reproducibility,
    /// The policy that let the run go ahead: files by digest, disabled
    /// rules, and the decision (`allow`, or `break-glass` with the
    /// justification and every violation overridden).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<Decision>,
    /// Place in the hash chain; set when the record is appended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainLink>,
    /// The key that signs the record's statement and where it is held
    /// (its keyid, `local-store`, `vault-transit` with the Transit key's
    /// name and version, or `file`); set when the record is sealed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<crate::attest::SignedBy>,
}

impl StepRecord {
    /// The canonical bytes of the record (pretty JSON, stable field order).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("records serialize");
        v.push(b'\n');
        v
    }

    /// Replaces every secret value in the strings that can carry one — the
    /// ones a step or a manifest author chose: arguments, environment
    /// values, metric names, annotations, names asked for but not granted,
    /// trap messages, refusal reasons, network URLs and reasons — as
    /// *values*, before anything is serialized. Digests, paths the plan
    /// resolved and counts are left alone: redacting serialized text would
    /// let a value with `"` or `\` survive JSON escaping, and a short value
    /// (`0000`) would rewrite digests and break the document.
    pub fn redact_values(&mut self, r: &dyn Redact) {
        if r.is_empty() {
            return;
        }
        for a in &mut self.args {
            *a = r.redact_str(a);
        }
        for v in self.env.values_mut() {
            *v = r.redact_str(v);
        }
        let rekey = |m: &mut BTreeMap<String, u64>| {
            *m = std::mem::take(m)
                .into_iter()
                .map(|(k, v)| (r.redact_str(&k), v))
                .collect();
        };
        rekey(&mut self.secrets_not_granted);
        self.report.metrics = std::mem::take(&mut self.report.metrics)
            .into_iter()
            .map(|(k, v)| (r.redact_str(&k), v))
            .collect();
        self.report.annotations = std::mem::take(&mut self.report.annotations)
            .into_iter()
            .map(|(k, v)| (r.redact_str(&k), r.redact_str(&v)))
            .collect();
        self.termination.redact(r);
        for c in &mut self.network {
            c.url = r.redact_str(&c.url);
            if let Some(reason) = &mut c.reason {
                *reason = r.redact_str(reason);
            }
        }
        if let Publication::Withheld { reason, .. } = &mut self.outputs {
            *reason = r.redact_str(reason);
        }
    }
}

/// Format identifier of a repair record.
pub const REPAIR_FORMAT: &str = "cordon.repair-record/v1";

/// What one `cordon repair` did to a state directory, chained like a step
/// record so that completing or rolling back a run is as visible as the run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepairRecord {
    /// [`REPAIR_FORMAT`].
    pub format: String,
    /// Its id in the chain (`<time>-repair-<random>`).
    pub run_id: String,
    /// The environment whose key signs it.
    pub environment: String,
    /// The runner that repaired.
    pub runner: RunnerInfo,
    /// RFC 3339 time of the repair.
    pub repaired_at: String,
    /// Each thing done, as `cordon repair` printed it.
    pub actions: Vec<String>,
    /// Place in the hash chain; set when it is appended.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub chain: Option<ChainLink>,
    /// The key that signs it; set when it is appended.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub signed_by: Option<crate::attest::SignedBy>,
}

impl RepairRecord {
    /// A record of `actions`, for `environment`, not yet chained.
    pub fn new(environment: &str, actions: Vec<String>) -> RepairRecord {
        RepairRecord {
            format: REPAIR_FORMAT.into(),
            run_id: new_run_id("repair"),
            environment: environment.into(),
            runner: RunnerInfo::default(),
            repaired_at: now_rfc3339(),
            actions,
            chain: None,
            signed_by: None,
        }
    }

    /// The canonical bytes (pretty JSON, newline-terminated).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("records serialize");
        v.push(b'\n');
        v
    }
}

/// Whether the record bytes are a repair record (read by its `format`).
pub fn is_repair_record(bytes: &[u8]) -> bool {
    format_of(bytes).is_some_and(|f| f == REPAIR_FORMAT)
}

/// Format identifier of a restore record.
pub const RESTORE_FORMAT: &str = "cordon.restore-record/v1";

/// A tree `cordon restore` published again, and where.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoredTree {
    /// The guest path of the write mount it belongs to.
    pub guest: String,
    /// Where it was published.
    pub host: PathBuf,
    /// The tree, with every entry.
    pub tree: TreeRecord,
    /// What the host directory held that no record named, put into the
    /// content store before the restore replaced it (`cordon restore --run
    /// THIS --replaced` brings it back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced: Option<TreeRecord>,
}

/// What one `cordon restore` published, chained and signed like a step
/// record: a rollback is as visible as the runs it rolled back, and
/// `cordon verify` judges the restored outputs against it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreRecord {
    /// [`RESTORE_FORMAT`].
    pub format: String,
    /// Its id in the chain (`<time>-restore-<random>`).
    pub run_id: String,
    /// The environment whose key signs it.
    pub environment: String,
    /// The runner that restored.
    pub runner: RunnerInfo,
    /// RFC 3339 time of the restore.
    pub restored_at: String,
    /// The run whose trees were published again.
    pub restored_run: String,
    /// `outputs` for the run's outputs, `replaced` for what it replaced
    /// (`existing = "keep"`).
    pub what: RestoredWhat,
    /// Every tree published, in the record's mount order.
    pub trees: Vec<RestoredTree>,
    /// Why the restore failed, for one that published nothing (its
    /// `trees` are empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// Place in the hash chain; set when it is appended.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub chain: Option<ChainLink>,
    /// The key that signs it; set when it is appended.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub signed_by: Option<crate::attest::SignedBy>,
}

/// Which trees of a run a restore published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestoredWhat {
    /// The run's outputs.
    Outputs,
    /// What the run's outputs replaced.
    Replaced,
}

impl RestoreRecord {
    /// A record of restoring `trees` of run `restored_run`, for
    /// `environment`, not yet chained.
    pub fn new(
        environment: &str,
        restored_run: &str,
        what: RestoredWhat,
        trees: Vec<RestoredTree>,
    ) -> RestoreRecord {
        RestoreRecord {
            format: RESTORE_FORMAT.into(),
            run_id: new_run_id("restore"),
            environment: environment.into(),
            runner: RunnerInfo::default(),
            restored_at: now_rfc3339(),
            restored_run: restored_run.into(),
            what,
            trees,
            failure: None,
            chain: None,
            signed_by: None,
        }
    }

    /// The canonical bytes (pretty JSON, newline-terminated).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("records serialize");
        v.push(b'\n');
        v
    }
}

/// Whether the record bytes are a restore record (read by its `format`).
pub fn is_restore_record(bytes: &[u8]) -> bool {
    format_of(bytes).is_some_and(|f| f == RESTORE_FORMAT)
}

/// The `format` of a record file, when it has one.
fn format_of(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Format {
        format: String,
    }
    serde_json::from_slice::<Format>(bytes)
        .ok()
        .map(|f| f.format)
}

/// The trees a record says it left in place, with their host paths: the
/// outputs of a step run that succeeded and published them (ran or served
/// from the cache), or the trees a restore published. Anything else
/// (a failed run, a repair record, a file that is no record) left none.
pub fn published_trees(bytes: &[u8]) -> Vec<(PathBuf, TreeRecord)> {
    match format_of(bytes).as_deref() {
        Some(RECORD_FORMAT) => match serde_json::from_slice::<StepRecord>(bytes) {
            Ok(r) if r.success && matches!(r.outputs, Publication::Published) => r
                .mounts
                .into_iter()
                .filter(|m| m.access == Access::Write)
                .filter_map(|m| Some((m.host, m.after?)))
                .collect(),
            _ => Vec::new(),
        },
        Some(RESTORE_FORMAT) => match serde_json::from_slice::<RestoreRecord>(bytes) {
            Ok(r) => r.trees.into_iter().map(|t| (t.host, t.tree)).collect(),
            Err(_) => Vec::new(),
        },
        _ => Vec::new(),
    }
}

pub use cordon_core::clock::{new_run_id, now_rfc3339};

#[cfg(test)]
mod tests {
    use super::Reproducibility;

    #[test]
    fn records_from_before_the_architecture_was_recorded_still_read_as_written() {
        // The reproducibility facts of a record written before `arch` (and
        // before `nan_canonicalization`): canonical NaNs, no architecture.
        let old: Reproducibility = serde_json::from_str(
            r#"{"reproducible": true, "clock": "fixed", "fixed_clock_unix_s": 1, "random": "seeded", "seed": "00"}"#,
        )
        .unwrap();
        assert!(old.nan_canonicalization);
        assert_eq!(old.arch, None);
        // Re-serialized, it gains no field it did not have: its digest and
        // signature cover the bytes as written, and a record is never
        // rewritten, but a reader must not invent facts either.
        let again = serde_json::to_value(&old).unwrap();
        assert!(again.get("arch").is_none(), "{again}");

        let new = Reproducibility {
            nan_canonicalization: false,
            arch: Some(super::host_arch().into()),
            ..Default::default()
        };
        let v = serde_json::to_value(&new).unwrap();
        assert_eq!(v["arch"], std::env::consts::ARCH);
        assert_eq!(v["nan_canonicalization"], false);
    }
}
