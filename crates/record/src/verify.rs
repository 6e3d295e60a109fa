//! `cordon verify`: does everything a state directory says still hold?
//!
//! Checked, for every record in scope:
//!
//! - **the chain**: every log line parses, numbers count up from 1, and each
//!   line's `prev` is the digest of the line before; no run id and no
//!   record digest appears twice (both places are named);
//!   every record file on disk is in the log (always checked in full,
//!   because a broken chain anywhere undermines every record after it);
//! - **the record**: its file exists and has the digest the log holds, and
//!   its own `chain` field names the same place in the chain;
//! - **the signature**: its DSSE envelope has the digest the log holds, is
//!   signed by a key the verifier trusts for the record's environment (see
//!   [`cordon_engine::keys`]: the user's trust directory, `--trusted-key`,
//!   `CORDON_TRUSTED_KEYS`; a workspace's own `trusted-keys` only as
//!   self-asserted candidates), and its statement is exactly the statement
//!   rebuilt from the record file, so the signature covers every field of
//!   the record;
//! - **the outputs**: published output trees still have the digests the
//!   record holds. A mount written again by a later run is checked against
//!   that later record only (the earlier outputs were replaced by design).
//!
//! Each problem is a [`Finding`] that names the record (or log line) and
//! what is wrong. Verification reads only; it never repairs anything.

use crate::attest::{self, TrustedKey};
use crate::chain::{self, LogEntry};
use crate::record::{Publication, StepRecord, TreeRecord};
use crate::trust::{TrustOrigin, TrustRoots};
use cordon_core::digest;
use cordon_manifest::config::WorkspaceConfig;
use cordon_manifest::manifest::Sha256Digest;
use serde_json::Value;

/// A record file's bytes and what they parse to.
type Parsed = (Vec<u8>, Result<StepRecord, String>);
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One thing that does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What it is about: `record <run id>` or `chain.log line <n>`.
    pub subject: String,
    /// What is wrong.
    pub problem: String,
    /// Which check found it.
    pub kind: FindingKind,
}

/// Which check a [`Finding`] comes from: what a caller such as `cordon
/// restore` may go ahead despite (an output that changed is what a
/// restore repairs) and what it must not (anything else).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingKind {
    /// The log's structure: a line, a link, a record missing from it.
    Chain,
    /// The record file: missing, modified, or placed elsewhere.
    Record,
    /// The signed envelope: missing, modified, or not signed by a trusted
    /// key.
    Signature,
    /// The record was written without a signature (its environment had no
    /// signing key): only the chain vouches for it.
    Unsigned,
    /// A published output no longer matches the record.
    Output,
    /// Re-execution gave other outputs (`--reexecute`).
    Reexecution,
    /// A runner stopped in the middle of a run's commit: `cordon repair`
    /// completes or rolls it back.
    Unfinished,
}

/// What a verification covers beyond chain, records and signatures.
#[derive(Debug, Clone, Copy)]
pub struct Checks {
    /// Hash the published outputs of each record in scope.
    pub outputs: bool,
}

impl Default for Checks {
    fn default() -> Self {
        Checks { outputs: true }
    }
}

/// One line: the subject and the problem, escaped. Both quote what records
/// and the chain hold (output file names a step chose, guest paths), which a
/// step or anyone who edits the state directory can fill with control
/// characters.
impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use cordon_core::sanitize::escape_for_terminal;
        write!(
            f,
            "{}: {}",
            escape_for_terminal(&self.subject),
            escape_for_terminal(&self.problem)
        )
    }
}

/// The result of a verification.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Records checked in detail.
    pub records: usize,
    /// Records before `--since` whose signatures and outputs were not
    /// checked (their chain entries were).
    pub skipped: usize,
    /// Everything that does not hold; empty means all is well.
    pub findings: Vec<Finding>,
    /// The keys trusted, per environment, with where each came from.
    pub trusted: Vec<(String, String, TrustOrigin)>,
    /// Things the verifier should know that are not failures (keys that
    /// are only self-asserted, say).
    pub warnings: Vec<String>,
}

/// A verification that could not be carried out at all (bad invocation).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The state directory has no records.
    #[error(
        "{0} holds no records (no chain.log); name the state directory with --state, or run a step first"
    )]
    NoRecords(PathBuf),
    /// The run named is not in the chain or on disk.
    #[error("no record of run `{0}` in {1}")]
    UnknownRun(String, PathBuf),
    /// Reading the state directory failed.
    #[error("cannot read {0}: {1}")]
    Io(PathBuf, std::io::Error),
}

/// What to verify.
#[derive(Debug, Clone)]
pub enum Scope {
    /// Every record in the log.
    All,
    /// One run, by id.
    Run(String),
    /// The run with this id and every later one: for an environment that
    /// began signing after its first records. The whole chain is still
    /// checked; earlier records are only counted.
    Since(String),
}

struct Ctx<'a> {
    workspace: &'a WorkspaceConfig,
    roots: &'a TrustRoots,
    trusted: Vec<(String, String, TrustOrigin)>,
    warnings: Vec<String>,
    keys: BTreeMap<String, Result<Vec<TrustedKey>, String>>,
    findings: Vec<Finding>,
}

impl Ctx<'_> {
    fn fail(&mut self, kind: FindingKind, subject: impl Into<String>, problem: impl Into<String>) {
        self.findings.push(Finding {
            subject: subject.into(),
            problem: problem.into(),
            kind,
        });
    }

    fn trusted(&mut self, env: &str) -> Result<Vec<TrustedKey>, String> {
        if !self.keys.contains_key(env) {
            let config = self.workspace.envs.get(env);
            let keys = match self.roots.keys_for(env, config) {
                Err(e) => Err(e.to_string()),
                Ok(crate::trust::Trusted { keys, warnings }) => {
                    self.warnings.extend(warnings);
                    for (k, origin) in &keys {
                        self.trusted
                            .push((env.to_string(), k.source.clone(), *origin));
                    }
                    if keys.is_empty() {
                        Err(no_trusted_key(env, self.workspace))
                    } else {
                        Ok(keys.into_iter().map(|(k, _)| k).collect())
                    }
                }
            };
            self.keys.insert(env.to_string(), keys);
        }
        self.keys[env].clone()
    }
}

/// Why no key is trusted for `env`, with where the verifier looked and
/// what to pass.
fn no_trusted_key(env: &str, workspace: &WorkspaceConfig) -> String {
    let dir = crate::trust::trust_dir(env).map_or_else(
        || "the user trust directory".into(),
        |d| d.display().to_string(),
    );
    let config = match &workspace.path {
        Some(p) => format!("; the workspace file used was {}", p.display()),
        None => " and no cordon.toml was found (pass --config if the records' workspace defines this environment)".into(),
    };
    format!(
        "no key is trusted for environment `{env}` (looked in {dir}, --trusted-key and {}{config}); pass the environment's public key with --trusted-key FILE",
        crate::trust::TRUSTED_KEYS_VAR
    )
}

fn record_subject(run: &str) -> String {
    format!("record {run}")
}

/// Verifies the state directory `state_dir` against `workspace`'s trusted
/// keys.
pub fn verify(
    state_dir: &Path,
    workspace: &WorkspaceConfig,
    roots: &TrustRoots,
    scope: &Scope,
) -> Result<Verdict, VerifyError> {
    verify_with(state_dir, workspace, roots, scope, Checks::default())
}

/// Like [`verify`], with `checks` saying whether outputs are hashed.
pub fn verify_with(
    state_dir: &Path,
    workspace: &WorkspaceConfig,
    roots: &TrustRoots,
    scope: &Scope,
    checks: Checks,
) -> Result<Verdict, VerifyError> {
    let records_dir = state_dir.join("records");
    let io = |e| VerifyError::Io(records_dir.clone(), e);
    if !records_dir.join(chain::LOG_FILE).is_file() {
        return Err(VerifyError::NoRecords(state_dir.to_path_buf()));
    }
    let lines = chain::read_lines(&records_dir).map_err(io)?;
    let mut cx = Ctx {
        workspace,
        roots,
        trusted: Vec::new(),
        warnings: Vec::new(),
        keys: BTreeMap::new(),
        findings: Vec::new(),
    };

    // The chain's structure.
    let mut entries: Vec<LogEntry> = Vec::new();
    let mut prev = chain::genesis().to_string();
    let mut seen_runs: BTreeMap<String, u64> = BTreeMap::new();
    let mut unique = chain::Uniqueness::default();
    for (i, line) in lines.iter().enumerate() {
        let subject = format!("{} line {}", chain::LOG_FILE, i + 1);
        let expected_seq = i as u64 + 1;
        match LogEntry::parse(line) {
            Err(e) => cx.fail(
                FindingKind::Chain,
                &subject,
                format!("not a chain entry: {e}"),
            ),
            Ok(entry) => {
                if entry.seq != expected_seq {
                    cx.fail(FindingKind::Chain,
                        &subject,
                        format!(
                            "sequence number {} where {expected_seq} belongs (an entry was removed, reordered or inserted)",
                            entry.seq
                        ),
                    );
                }
                if entry.prev != prev {
                    cx.fail(FindingKind::Chain,
                        &subject,
                        format!(
                            "links to {} but the previous entry's digest is {prev} (the log was edited, reordered or truncated)",
                            entry.prev
                        ),
                    );
                }
                // Positions by place in the log, which a duplicate with a
                // forged `seq` cannot hide behind.
                if let Some(problem) = unique.check(expected_seq, &entry.run, &entry.record) {
                    cx.fail(FindingKind::Chain, &subject, problem);
                }
                seen_runs.entry(entry.run.clone()).or_insert(entry.seq);
                entries.push(entry);
            }
        }
        prev = Sha256Digest::of(line.as_bytes()).to_string();
    }

    // Record files the chain does not list.
    let on_disk = record_files(&records_dir).map_err(io)?;
    for run in &on_disk {
        if !seen_runs.contains_key(run) {
            cx.fail(FindingKind::Chain,
                record_subject(run),
                "is not in the chain: it was added outside a run, or its runner stopped before appending it",
            );
        }
    }

    for run in envelope_files(&records_dir).map_err(io)? {
        if !seen_runs.contains_key(&run) {
            cx.fail(
                FindingKind::Chain,
                record_subject(&run),
                "has a signed envelope but is not in the chain",
            );
        }
    }

    // Runs whose runner stopped in the middle of their commit.
    let (unfinished, damaged) = crate::journal::unfinished(state_dir).map_err(io)?;
    for p in damaged {
        cx.fail(
            FindingKind::Unfinished,
            format!("journal {}", p.display()),
            "is not a publication intent a runner wrote; run `cordon repair`",
        );
    }
    for root in crate::journal::stopped_runs(state_dir).map_err(io)? {
        let run = root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        cx.fail(
            FindingKind::Unfinished,
            format!("run {run}"),
            "its runner stopped while the step ran: it left no record and published nothing (anything the step sent over the network is not recorded); the next `cordon run`, `restore` or `promote` in this state directory removes its staging (or run `cordon repair`)",
        );
    }
    let mut interrupted = BTreeSet::new();
    for i in &unfinished {
        if seen_runs.contains_key(&i.run) {
            cx.fail(
                FindingKind::Unfinished,
                record_subject(&i.run),
                "its runner stopped while publishing its outputs; the next `cordon run`, `restore` or `promote` in this state directory completes the publication (or run `cordon repair`)",
            );
            interrupted.insert(i.run.clone());
        } else {
            cx.fail(
                FindingKind::Unfinished,
                format!("run {}", i.run),
                "its runner stopped after staging its outputs, before its record was written (nothing was published); the next `cordon run`, `restore` or `promote` in this state directory removes what it staged (or run `cordon repair`)",
            );
        }
    }

    // Which record last wrote each host path: only its outputs must match.
    let mut last_writer: BTreeMap<String, String> = BTreeMap::new();
    // Records are read through their type: a file that is not one is
    // reported below, never half-read by key.
    let mut parsed: BTreeMap<String, Parsed> = BTreeMap::new();
    for e in &entries {
        let path = chain::record_path(&records_dir, &e.run);
        if let Ok(bytes) = std::fs::read(&path) {
            let record = serde_json::from_slice::<StepRecord>(&bytes).map_err(|e| e.to_string());
            // Only a record with the digest the chain holds may say which
            // host paths it wrote last; a modified one could otherwise take
            // that over from the real last writer and hide its outputs.
            let intact = Sha256Digest::of(&bytes).to_string() == e.record;
            if let (Ok(r), true) = (&record, intact) {
                for m in r.mounts.iter().filter(|m| m.after.is_some()) {
                    last_writer.insert(m.host.display().to_string(), e.run.clone());
                }
            }
            // A restore wrote its trees last where it published them.
            if intact && let Ok(Some(own)) = own_bytes_record(&bytes) {
                for (_, host, _) in &own.trees {
                    last_writer.insert(host.display().to_string(), e.run.clone());
                }
            }
            parsed.insert(e.run.clone(), (bytes, record));
        }
    }

    let mut skipped = 0;
    let selected: Vec<&LogEntry> = match scope {
        Scope::All => entries.iter().collect(),
        Scope::Run(id) => {
            let e: Vec<&LogEntry> = entries.iter().filter(|e| e.run == *id).collect();
            if e.is_empty() {
                if on_disk.contains(id) {
                    // Already reported as not in the chain.
                    return Ok(cx.verdict(1, 0));
                }
                return Err(VerifyError::UnknownRun(id.clone(), records_dir));
            }
            e
        }
        Scope::Since(id) => {
            let Some(from) = entries.iter().position(|e| e.run == *id) else {
                return Err(VerifyError::UnknownRun(id.clone(), records_dir));
            };
            skipped = from;
            entries[from..].iter().collect()
        }
    };

    for entry in &selected {
        // An interrupted publication is reported above; its outputs are
        // what `cordon repair` will complete.
        let checks = Checks {
            outputs: checks.outputs && !interrupted.contains(&entry.run),
        };
        check_record(&mut cx, &records_dir, entry, &parsed, &last_writer, checks);
    }
    Ok(cx.verdict(selected.len(), skipped))
}

impl Ctx<'_> {
    fn verdict(self, records: usize, skipped: usize) -> Verdict {
        let mut warnings = self.warnings;
        warnings.dedup();
        Verdict {
            records,
            skipped,
            findings: self.findings,
            trusted: self.trusted,
            warnings,
        }
    }
}

fn check_record(
    cx: &mut Ctx<'_>,
    records_dir: &Path,
    entry: &LogEntry,
    parsed: &BTreeMap<String, Parsed>,
    last_writer: &BTreeMap<String, String>,
    checks: Checks,
) {
    let subject = record_subject(&entry.run);
    let findings_before = cx.findings.len();
    // Read once, when the chain was walked.
    let Some((bytes, _)) = parsed.get(&entry.run) else {
        let path = chain::record_path(records_dir, &entry.run);
        let why = std::fs::metadata(&path)
            .err()
            .map_or_else(|| "it cannot be read".to_string(), |e| e.to_string());
        cx.fail(
            FindingKind::Record,
            &subject,
            format!("the record file {} is missing: {why}", path.display()),
        );
        return;
    };
    let bytes = bytes.as_slice();
    let digest = Sha256Digest::of(bytes).to_string();
    if digest != entry.record {
        cx.fail(FindingKind::Record,
            &subject,
            format!(
                "the record file has digest {digest}, but chain entry {} holds {} (the record was modified)",
                entry.seq, entry.record
            ),
        );
    }
    // A repair record (what `cordon repair` did) and a restore record (what
    // `cordon restore` published) are chained and signed like a step
    // record, but sign their own bytes instead of a statement.
    let repair = match own_bytes_record(bytes) {
        Ok(r) => r,
        Err(e) => {
            cx.fail(FindingKind::Record, &subject, e);
            return;
        }
    };
    let record = match (&repair, parsed.get(&entry.run)) {
        (Some(_), _) => None,
        (None, Some((_, Ok(r)))) => Some(r),
        (None, Some((_, Err(e)))) => {
            cx.fail(
                FindingKind::Record,
                &subject,
                format!(
                    "the record file is not a {} document: {e}",
                    crate::record::RECORD_FORMAT
                ),
            );
            return;
        }
        (None, None) => {
            cx.fail(
                FindingKind::Record,
                &subject,
                "the record file cannot be read",
            );
            return;
        }
    };
    let (run_id, link, environment) = match (&repair, record) {
        (Some(r), _) => (&r.run_id, &r.chain, r.environment.clone()),
        (None, Some(r)) => (&r.run_id, &r.chain, r.environment.clone()),
        (None, None) => return,
    };
    if *run_id != entry.run {
        cx.fail(
            FindingKind::Record,
            &subject,
            format!("the record names run {run_id}"),
        );
    }
    let placed = link.as_ref().map(|l| (l.sequence, l.previous.to_string()));
    if placed.as_ref() != Some(&(entry.seq, entry.prev.clone())) {
        let (seq, prev) = placed.unwrap_or((0, "nothing".into()));
        cx.fail(
            FindingKind::Record,
            &subject,
            format!(
                "the record places itself at {seq} after {prev}, but the chain holds it at {} after {}",
                entry.seq, entry.prev
            ),
        );
    }

    // The signature.
    let env_path = chain::envelope_path(records_dir, &entry.run);
    match &entry.envelope {
        None => cx.fail(
            FindingKind::Unsigned,
            &subject,
            format!("is not signed (environment `{environment}` had no signing key when it ran)"),
        ),
        Some(expected) => match std::fs::read(&env_path) {
            Err(e) => cx.fail(
                FindingKind::Signature,
                &subject,
                format!("the signed envelope {} is missing: {e}", env_path.display()),
            ),
            Ok(env_bytes) => {
                let d = Sha256Digest::of(&env_bytes).to_string();
                if d != *expected {
                    cx.fail(FindingKind::Signature,
                        &subject,
                        format!("the envelope has digest {d}, but the chain holds {expected} (the envelope was modified)"),
                    );
                }
                match cx.trusted(&environment) {
                    Err(msg) => cx.fail(
                        FindingKind::Signature,
                        &subject,
                        format!("cannot check the signature: {msg}"),
                    ),
                    Ok(keys) => match attest::open_envelope(&env_bytes, &keys) {
                        Err(e) => {
                            cx.fail(FindingKind::Signature, &subject, format!("signature: {e}"))
                        }
                        Ok((ptype, payload)) if let Some(own) = &repair => {
                            // A repair or restore record signs its own bytes.
                            if ptype != own.payload_type || payload != bytes {
                                cx.fail(
                                    FindingKind::Signature,
                                    &subject,
                                    format!(
                                        "the signed {} record does not match the record file",
                                        own.kind
                                    ),
                                );
                            }
                        }
                        Ok((ptype, payload)) => {
                            if ptype != attest::PAYLOAD_TYPE {
                                cx.fail(
                                    FindingKind::Signature,
                                    &subject,
                                    format!("the envelope's payload type is {ptype}"),
                                );
                            }
                            let signed: Option<Value> = serde_json::from_slice(&payload).ok();
                            let matches = |form| {
                                signed.is_some() && attest::statement_in(bytes, form).ok() == signed
                            };
                            if !matches(attest::StatementForm::Current)
                                && !matches(attest::StatementForm::Legacy)
                            {
                                cx.fail(FindingKind::Signature,
                                    &subject,
                                    "the signed statement does not match the record file (the record was modified after signing)",
                                );
                            }
                        }
                    },
                }
            }
        },
    }

    // The outputs. A record that already failed is not trusted to name
    // them: the host paths it lists are not hashed (an edited record could
    // otherwise send the verifier through `/usr`). Only a missing
    // signature lets the check go on, since the chain still vouches for
    // the record.
    let record_failed = cx.findings[findings_before..]
        .iter()
        .any(|f| f.kind != FindingKind::Unsigned);
    if !checks.outputs || record_failed {
        return;
    }
    let trees: Vec<(&String, &Path, &TreeRecord)> = match (&repair, record) {
        (Some(own), _) => own
            .trees
            .iter()
            .map(|(g, h, t)| (g, h.as_path(), t))
            .collect(),
        (None, Some(record)) => {
            if matches!(record.outputs, Publication::Withheld { .. }) {
                return;
            }
            record
                .mounts
                .iter()
                .filter_map(|m| Some((&m.guest, m.host.as_path(), m.after.as_ref()?)))
                .collect()
        }
        (None, None) => return,
    };
    for (guest, host_path, after) in trees {
        let host = host_path.display().to_string();
        if last_writer.get(&host) != Some(&entry.run) {
            continue;
        }
        match digest::tree(host_path) {
            Err(e) => cx.fail(
                FindingKind::Output,
                &subject,
                format!("output {guest} ({host}) cannot be read: {e}"),
            ),
            Ok(tree) => {
                if tree.digest != after.sha256 {
                    let diff = differing_files(after, &tree);
                    cx.fail(
                        FindingKind::Output,
                        &subject,
                        format!(
                            "output {guest} ({host}) no longer matches the record: {}",
                            diff.join(", ")
                        ),
                    );
                }
            }
        }
    }
}

/// A record that signs its own bytes (a repair or a restore record),
/// with what the checks need of it.
struct OwnRecord {
    run_id: String,
    chain: Option<crate::record::ChainLink>,
    environment: String,
    /// The DSSE payload type its envelope must carry.
    payload_type: &'static str,
    /// `repair` or `restore`, for messages.
    kind: &'static str,
    /// What it published: (guest, host, tree); none for a repair.
    trees: Vec<(String, PathBuf, TreeRecord)>,
}

/// Reads `bytes` as a repair or restore record when its `format` says it
/// is one (`Ok(None)` for anything else); a file that says it is one but
/// is not is an error naming the format.
fn own_bytes_record(bytes: &[u8]) -> Result<Option<OwnRecord>, String> {
    use crate::record::{REPAIR_FORMAT, RESTORE_FORMAT, RepairRecord, RestoreRecord};
    let not = |format: &str, e: serde_json::Error| {
        format!("the record file is not a {format} document: {e}")
    };
    if crate::record::is_repair_record(bytes) {
        let r: RepairRecord = serde_json::from_slice(bytes).map_err(|e| not(REPAIR_FORMAT, e))?;
        return Ok(Some(OwnRecord {
            run_id: r.run_id,
            chain: r.chain,
            environment: r.environment,
            payload_type: chain::REPAIR_PAYLOAD_TYPE,
            kind: "repair",
            trees: Vec::new(),
        }));
    }
    if crate::record::is_restore_record(bytes) {
        let r: RestoreRecord = serde_json::from_slice(bytes).map_err(|e| not(RESTORE_FORMAT, e))?;
        return Ok(Some(OwnRecord {
            run_id: r.run_id,
            chain: r.chain,
            environment: r.environment,
            payload_type: chain::RESTORE_PAYLOAD_TYPE,
            kind: "restore",
            trees: r
                .trees
                .into_iter()
                .map(|t| (t.guest, t.host, t.tree))
                .collect(),
        }));
    }
    Ok(None)
}

/// What identifies an entry's content: the file's sha256, the link's
/// target, or the kind.
fn entry_identity(e: &digest::Entry) -> String {
    match (&e.kind, &e.sha256) {
        (_, Some(h)) => h.clone(),
        (digest::EntryKind::Symlink { target }, None) => format!("symlink to {target:?}"),
        (digest::EntryKind::Dir, None) => "dir".into(),
        _ => "other".into(),
    }
}

/// Names of the entries that differ between a recorded tree and a tree on
/// disk.
pub fn differing_files(recorded: &TreeRecord, now: &digest::Tree) -> Vec<String> {
    let listing = |entries: &[digest::Entry]| -> BTreeMap<String, String> {
        entries
            .iter()
            .map(|e| (e.path.clone(), entry_identity(e)))
            .collect()
    };
    let before = listing(recorded.entries.as_deref().unwrap_or_default());
    let after = listing(&now.entries);
    let names: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    let mut out = Vec::new();
    for n in names {
        match (before.get(n), after.get(n)) {
            (Some(a), Some(b)) if a == b => {}
            (Some(_), Some(_)) => out.push(format!("{n} changed")),
            (Some(_), None) => out.push(format!("{n} missing")),
            (None, Some(_)) => out.push(format!("{n} added")),
            (None, None) => {}
        }
    }
    if out.is_empty() {
        out.push("the tree differs".into());
    }
    out
}

/// Run ids of the envelope files in `records_dir`.
fn envelope_files(records_dir: &Path) -> std::io::Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for e in std::fs::read_dir(records_dir)? {
        let name = e?.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".dsse.json")
            && !name.starts_with('.')
        {
            out.insert(stem.to_string());
        }
    }
    Ok(out)
}

/// Run ids of the record files in `records_dir`.
/// The run ids of the record files in `records_dir` (not envelopes, not
/// temporaries).
pub fn record_files(records_dir: &Path) -> std::io::Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for e in std::fs::read_dir(records_dir)? {
        let name = e?.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name.ends_with(".dsse.json") {
            continue;
        }
        if let Some(stem) = name.strip_suffix(".json") {
            out.insert(stem.to_string());
        }
    }
    Ok(out)
}

/// Checks a signed chain head (see [`crate::head`]) against the chain in
/// `state_dir`: its signature with the keys trusted for the environment it
/// names, then that the chain still reaches its entry unchanged. A head
/// that does not hold is a [`Finding`]; a head that cannot be read or
/// opened is an error (the verifier was handed the wrong file).
pub fn check_head(
    state_dir: &Path,
    workspace: &WorkspaceConfig,
    roots: &TrustRoots,
    envelope: &[u8],
) -> Result<Option<Finding>, crate::head::HeadError> {
    let env = crate::head::claimed_environment(envelope)?;
    let trusted = roots
        .keys_for(&env, workspace.envs.get(&env))
        .map_err(|e| crate::head::HeadError::Invalid(e.to_string()))?
        .keys
        .into_iter()
        .map(|(k, _)| k)
        .collect::<Vec<_>>();
    let head = crate::head::open(envelope, &trusted)?;
    let records_dir = state_dir.join("records");
    let lines = chain::read_lines(&records_dir)
        .map_err(|e| crate::head::HeadError::Io(records_dir.clone(), e))?;
    Ok(crate::head::check(&head, &lines).map(|problem| Finding {
        subject: format!("{} (signed head)", chain::LOG_FILE),
        problem,
        kind: FindingKind::Chain,
    }))
}
