//! The action cache: which run already produced a step's outputs.
//!
//! The content store itself is [`crate::cas`]: every output file of every
//! successful run is kept there by its sha256, so outputs can be restored
//! (cache hits, `cordon restore`) and re-checked byte for byte.
//!
//! **Action cache** (`<state>/cache/actions/<key>.json`): maps an
//! [`ActionKey`] — everything that can change a step's outputs — to the run
//! that produced them. The key is the digest of one typed document,
//! [`KeyDocument`]: the component and manifest digests, the resolved grants
//! (args, env, limits, each mount's guest path and access), the digest of
//! every input tree, the granted secrets' names, providers, versions and
//! uses (never values), the clock, randomness and float modes, the
//! environment and the sandbox semantics version. Change any of them and
//! the key changes. The same document, without the mounts' host paths, is
//! the key of the shared store ([`ActionKeys::shared`]); no second copy of
//! it exists anywhere.
//!
//! **An entry proves its key.** The document is built either from the plan
//! that is about to run ([`KeyDocument::for_plan`]) or from what a run's
//! record says ran ([`KeyDocument::for_record`]). On every hit the entry's
//! record is read and its document rebuilt: an entry whose record does not
//! give the key it is filed under (copied over another key, or naming
//! another run's record) is a [`DamagedEntry`], so the step runs. A record
//! from another machine (a shared hit) names that machine's host paths, so
//! it proves the shared key instead, which leaves only host paths out: a
//! step sees guest paths alone, and what it reads there is bound by the
//! input tree digests.
//!
//! **Nothing read back is trusted.** An entry file is parsed into typed
//! values and checked as a whole before any of it is used
//! ([`ActionEntry::parse`]): its key must be the one it is filed under, every
//! digest 64 lowercase hex characters, every path a plain relative path
//! (no `..`, no empty or `.` parts, no NUL), every kind `file` or `dir`.
//! An entry that fails is a [`DamagedEntry`]: the step runs as on a miss,
//! with a warning, and the run's own entry replaces it. A blob name that is
//! not a digest is refused before it becomes a path. This module must never
//! index, slice or join an unchecked string from the state directory.

pub use crate::cas::{Cas, CasError, is_blob_name, is_tree_path};
use cordon_core::digest::{Entry, EntryKind};
use cordon_manifest::manifest::Sha256Digest;
use cordon_manifest::plan::StepPlan;
use cordon_sandbox::host::Report;
use cordon_secrets::ResolvedSecret;

use std::io;
use std::path::{Path, PathBuf};

/// Bumped whenever the meaning of a step run changes in a way the other key
/// parts do not capture (engine semantics, WASI behaviour, staging rules).
pub const SANDBOX_SEMANTICS: &str = "cordon-sandbox/1 wasmtime-48 wasi-p2";

/// The digest of everything that determines a step's outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionKey(pub Sha256Digest);

/// Why a step is never served from the cache, or `None` when it may be.
pub fn uncacheable_reason(
    plan: &StepPlan,
    secrets: &[ResolvedSecret],
    pipeline_allows: bool,
) -> Option<String> {
    uncacheable_by_grants(
        plan.mounts.iter().map(|m| m.access),
        secrets.iter().map(|s| (s.name.as_str(), &s.uses)),
        plan.network.is_some(),
        pipeline_allows,
    )
    .or_else(|| {
        secrets
            .iter()
            .find(|s| s.version.is_none())
            .map(|s| unversioned_secret_reason(&s.name, s.provider))
    })
}

pub use cordon_manifest::plan::{uncacheable_by_grants, unversioned_secret_reason};

/// Format of the key document: bumped (with [`SANDBOX_SEMANTICS`] for
/// changes of meaning) whenever a field is added, so that no two versions
/// of the document can give one key.
pub const KEY_FORMAT: &str = "cordon.action-key/v2";

/// The local key and the shared key of one run, from one [`KeyDocument`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionKeys {
    /// Under which this state directory files the run: the document with
    /// the mounts' host paths.
    pub local: ActionKey,
    /// Under which the shared store files it: the document without host
    /// paths, so that machines with other checkout directories share hits.
    pub shared: ActionKey,
}

/// Which key a [`KeyDocument`] is serialized for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
enum KeyScope {
    /// This state directory: host paths included.
    Local,
    /// The shared store: host paths left out.
    Shared,
}

/// One mount as the key sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyMount {
    /// Guest path: where the step sees it.
    pub guest: String,
    /// Access.
    pub access: cordon_manifest::manifest::Access,
    /// Host path (the local key only; `None` in the shared one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<PathBuf>,
    /// The tree digest the step could read (read and read-write mounts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<Sha256Digest>,
}

/// One granted secret as the key sees it: never its value (a rotated value
/// is a new version).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeySecret {
    /// Its name.
    pub name: String,
    /// The provider that supplied it.
    pub provider: String,
    /// The provider's version of the value.
    pub version: Option<String>,
    /// The uses granted.
    pub uses: std::collections::BTreeSet<cordon_manifest::manifest::SecretUse>,
}

/// How the key names a step's float mode. Native floats give the NaN bits
/// of this CPU architecture, so the architecture is part of the key: a
/// result made on another architecture (a shared store) is not what
/// running the step here would give. Canonical NaNs are the same anywhere.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyFloats {
    /// `floats = "canonical"`.
    Canonical,
    /// `floats = "native"`, on this architecture.
    Native {
        /// The CPU architecture, as records name it.
        arch: String,
    },
}

/// Everything that determines a step's outputs, as typed values: the one
/// source of both action keys. Serialized by serde in field order (never
/// through `Debug`), so the bytes hashed are a function of these values.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyDocument {
    format: &'static str,
    scope: KeyScope,
    /// [`SANDBOX_SEMANTICS`] and the runner's sandbox as records name it.
    pub semantics: (String, String),
    /// The environment.
    pub environment: String,
    /// The component's digest.
    pub component: Sha256Digest,
    /// The manifest's digest: what the reviewer approved.
    pub manifest: Sha256Digest,
    /// argv.
    pub args: Vec<String>,
    /// The granted environment variables.
    pub env: std::collections::BTreeMap<String, String>,
    /// Limits.
    pub limits: cordon_manifest::manifest::Limits,
    /// Mounts in manifest order, with the input tree digests.
    pub mounts: Vec<KeyMount>,
    /// Granted secrets, by name.
    pub secrets: Vec<KeySecret>,
    /// The wall clock the step sees.
    pub clock: cordon_manifest::manifest::ClockMode,
    /// The randomness the step sees.
    pub random: cordon_manifest::manifest::RandomMode,
    /// NaN handling.
    pub floats: KeyFloats,
}

impl KeyDocument {
    /// The document of `plan` about to run, its read mounts hashing to
    /// `inputs` (guest path → tree digest), with `secrets` resolved.
    pub fn for_plan(
        plan: &StepPlan,
        inputs: &[(String, Sha256Digest)],
        secrets: &[ResolvedSecret],
    ) -> KeyDocument {
        let mut secrets: Vec<KeySecret> = secrets
            .iter()
            .map(|s| KeySecret {
                name: s.name.clone(),
                provider: s.provider.to_string(),
                version: s.version.clone(),
                uses: s.uses.clone(),
            })
            .collect();
        secrets.sort_by(|a, b| a.name.cmp(&b.name));
        KeyDocument {
            format: KEY_FORMAT,
            scope: KeyScope::Local,
            semantics: (
                SANDBOX_SEMANTICS.into(),
                cordon_record::record::RunnerInfo::default().sandbox,
            ),
            environment: plan.environment.clone(),
            component: plan.component_digest.clone(),
            manifest: plan.manifest_sha256.clone(),
            args: plan.argv.clone(),
            env: plan.env.iter().cloned().collect(),
            limits: plan.limits,
            mounts: plan
                .mounts
                .iter()
                .map(|m| KeyMount {
                    guest: m.guest.clone(),
                    access: m.access,
                    host: Some(m.host.clone()),
                    input: inputs
                        .iter()
                        .find(|(g, _)| *g == m.guest)
                        .map(|(_, d)| d.clone()),
                })
                .collect(),
            secrets,
            clock: plan.clock,
            random: plan.random,
            floats: match plan.floats {
                cordon_manifest::manifest::FloatMode::Canonical => KeyFloats::Canonical,
                cordon_manifest::manifest::FloatMode::Native => KeyFloats::Native {
                    arch: cordon_record::record::host_arch().into(),
                },
            },
        }
    }

    /// The document of what `record` says ran: the proof an action entry
    /// carries. Only the record of a successful run that executed proves a
    /// key (a cache hit's record ran nothing, so it cannot); a record that
    /// lacks a fact the key needs (the architecture of native floats)
    /// proves none.
    pub fn for_record(record: &cordon_record::record::StepRecord) -> Result<KeyDocument, String> {
        if !record.success {
            return Err(format!(
                "its record is of run {}, which failed",
                record.run_id
            ));
        }
        if record.cache.hit {
            return Err(format!(
                "its record is of run {}, a cache hit, which ran nothing",
                record.run_id
            ));
        }
        let r = &record.reproducibility;
        let floats = if r.nan_canonicalization {
            KeyFloats::Canonical
        } else {
            KeyFloats::Native {
                arch: r.arch.clone().ok_or_else(|| {
                    "its record does not name the CPU architecture its native floats ran on"
                        .to_string()
                })?,
            }
        };
        Ok(KeyDocument {
            format: KEY_FORMAT,
            scope: KeyScope::Local,
            semantics: (SANDBOX_SEMANTICS.into(), record.runner.sandbox.clone()),
            environment: record.environment.clone(),
            component: record.component.sha256.clone(),
            manifest: record.manifest.sha256.clone(),
            args: record.args.clone(),
            env: record.env.clone(),
            limits: record.limits,
            mounts: record
                .mounts
                .iter()
                .map(|m| KeyMount {
                    guest: m.guest.clone(),
                    access: m.access,
                    host: Some(m.host.clone()),
                    input: match m.access {
                        cordon_manifest::manifest::Access::Write => None,
                        _ => m.before.as_ref().map(|t| t.sha256.clone()),
                    },
                })
                .collect(),
            secrets: record
                .secrets
                .iter()
                .map(|(name, s)| KeySecret {
                    name: name.clone(),
                    provider: s.provider.clone(),
                    version: s.version.clone(),
                    uses: s.granted_uses.iter().copied().collect(),
                })
                .collect(),
            clock: r.clock,
            random: r.random,
            floats,
        })
    }

    /// Both keys of the document.
    pub fn keys(&self) -> ActionKeys {
        let local = self.digest();
        let mut shared = self.clone();
        shared.scope = KeyScope::Shared;
        for m in &mut shared.mounts {
            m.host = None;
        }
        ActionKeys {
            local,
            shared: shared.digest(),
        }
    }

    fn digest(&self) -> ActionKey {
        ActionKey(Sha256Digest::of(
            &serde_json::to_vec(self).expect("a key document serializes"),
        ))
    }
}

/// Both keys of a step whose read mounts hash to `inputs` (guest path →
/// tree digest).
pub fn action_keys(
    plan: &StepPlan,
    inputs: &[(String, Sha256Digest)],
    secrets: &[ResolvedSecret],
) -> ActionKeys {
    KeyDocument::for_plan(plan, inputs, secrets).keys()
}

/// The local action key of a step (see [`action_keys`]).
pub fn action_key(
    plan: &StepPlan,
    inputs: &[(String, Sha256Digest)],
    secrets: &[ResolvedSecret],
) -> ActionKey {
    action_keys(plan, inputs, secrets).local
}

/// Whether the record at `record` proves `keys`: the key document of what
/// it says ran gives the local key (a run on this machine) or the shared
/// key (a run another machine shared, whose host paths are its own).
pub fn record_proves(entry: &ActionEntry, keys: &ActionKeys) -> Result<(), String> {
    let bytes = cordon_core::fsutil::read_regular(&entry.record, MAX_RECORD_BYTES)
        .map_err(|e| format!("its record cannot be read: {e}"))?;
    let parsed: cordon_record::record::StepRecord =
        serde_json::from_slice(&bytes).map_err(|e| format!("its record does not parse: {e}"))?;
    if parsed.run_id != entry.run_id {
        return Err(format!(
            "its record is of run {}, not of run {}",
            cordon_core::sanitize::escape_for_terminal(&parsed.run_id),
            entry.run_id
        ));
    }
    proves(&parsed, keys)?;
    names_outputs(&parsed, entry)
}

/// Whether `record` names exactly the output trees `entry` restores: the
/// entry may not restore a tree its record did not write.
pub fn names_outputs(
    record: &cordon_record::record::StepRecord,
    entry: &ActionEntry,
) -> Result<(), String> {
    for o in &entry.outputs {
        let recorded = record.mounts.iter().any(|m| {
            m.guest == o.guest
                && m.access == cordon_manifest::manifest::Access::Write
                && m.after
                    .as_ref()
                    .is_some_and(|t| t.sha256.to_string() == o.tree)
        });
        if !recorded {
            return Err(format!(
                "its record does not name tree {} for output {}",
                cordon_core::sanitize::escape_for_terminal(&o.tree),
                cordon_core::sanitize::escape_for_terminal(&o.guest)
            ));
        }
    }
    Ok(())
}

/// Whether `record` (parsed) proves `keys`; see [`record_proves`].
pub fn proves(record: &cordon_record::record::StepRecord, keys: &ActionKeys) -> Result<(), String> {
    let got = KeyDocument::for_record(record)?.keys();
    if got.local == keys.local || got.shared == keys.shared {
        Ok(())
    } else {
        Err(format!(
            "its record (run {}) is of another action: what it says ran gives key {}, not the key it is filed under",
            cordon_core::sanitize::escape_for_terminal(&record.run_id),
            got.local.0
        ))
    }
}

/// Largest record read to check an entry's key: the same cap as every
/// other reader of records.
pub const MAX_RECORD_BYTES: u64 = cordon_record::record::MAX_RECORD_BYTES;

/// One written mount of a cached run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CachedOutput {
    /// Guest path.
    pub guest: String,
    /// Tree digest.
    pub tree: String,
    /// Entries (paths and file digests).
    pub entries: Vec<CachedEntry>,
}

/// A file or directory of a cached output.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CachedEntry {
    /// Relative path (exact when UTF-8; see `cordon_core::digest::Entry`).
    pub path: String,
    /// The path's exact bytes in hex, only when they are not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_hex: Option<String>,
    /// `file` or `dir`.
    pub kind: String,
    /// Size.
    pub size: u64,
    /// sha256 (files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl CachedEntry {
    /// From a digest entry (files and directories only).
    pub fn from_entry(e: &Entry) -> CachedEntry {
        CachedEntry {
            path: e.path.clone(),
            path_hex: e.path_hex.clone(),
            kind: if e.kind == EntryKind::Dir {
                "dir".into()
            } else {
                "file".into()
            },
            size: e.size,
            sha256: e.sha256.clone(),
        }
    }

    /// Back to a digest entry.
    pub fn to_entry(&self) -> Entry {
        Entry {
            path: self.path.clone(),
            path_hex: self.path_hex.clone(),
            kind: if self.kind == "dir" {
                EntryKind::Dir
            } else {
                EntryKind::File
            },
            size: self.size,
            sha256: self.sha256.clone(),
        }
    }
}

/// An action-cache entry that cannot be used: it does not parse, or a
/// field fails its check. The step runs as on a miss.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("damaged cache entry {}: {problem}", file.display())]
pub struct DamagedEntry {
    /// The entry file.
    pub file: PathBuf,
    /// What is wrong with it.
    pub problem: String,
}

/// What the action cache remembers about a run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ActionEntry {
    /// The key, as `sha256:...`.
    pub key: String,
    /// The run that produced the outputs.
    pub run_id: String,
    /// Its record file.
    pub record: PathBuf,
    /// The outputs by mount.
    pub outputs: Vec<CachedOutput>,
    /// The facts the step reported.
    pub report: serde_json::Value,
}

/// Largest action-cache entry read back. An entry lists the files of a
/// step's outputs (about 150 bytes each), so 64 MiB is some 400,000 files;
/// the cap keeps a damaged or planted entry from filling the runner's
/// memory.
pub const MAX_ENTRY_BYTES: u64 = 64 << 20;

impl ActionEntry {
    /// Parses and checks the bytes of the entry filed under `key`. On
    /// success every digest is a blob name, every path a plain relative
    /// path and every kind `file` (with a digest) or `dir` (without), so
    /// nothing downstream has to check again. Never panics, whatever the
    /// bytes.
    pub(crate) fn parse(bytes: &[u8], key: &ActionKey) -> Result<ActionEntry, String> {
        use cordon_core::sanitize::escape_for_terminal as shown;
        let entry: ActionEntry =
            serde_json::from_slice(bytes).map_err(|e| format!("not an entry: {e}"))?;
        if entry.key != key.0.to_string() {
            return Err(format!(
                "it is filed under {} but names key `{}`",
                key.0,
                shown(&entry.key)
            ));
        }
        if !cordon_record::chain::is_run_id(&entry.run_id) {
            return Err(format!(
                "`{}` is not a run id the runner makes",
                shown(&entry.run_id)
            ));
        }
        for o in &entry.outputs {
            let guest = shown(&o.guest);
            if Sha256Digest::parse(&o.tree).is_err() {
                return Err(format!("output {guest} has no valid tree digest"));
            }
            for e in &o.entries {
                let path = shown(&e.path);
                if let Err(why) = cordon_core::digest::exact_path(&e.path, e.path_hex.as_deref()) {
                    return Err(format!(
                        "output {guest} lists `{path}`, which is not a plain relative path ({why})"
                    ));
                }
                match (e.kind.as_str(), e.sha256.as_deref()) {
                    ("file", Some(h)) if is_blob_name(h) => {}
                    ("file", _) => {
                        return Err(format!(
                            "file `{path}` of output {guest} has no valid sha256 digest"
                        ));
                    }
                    ("dir", None) => {}
                    (kind, _) => {
                        return Err(format!(
                            "`{path}` of output {guest} has kind `{}` (expected `file`, or `dir` without a digest)",
                            shown(kind)
                        ));
                    }
                }
            }
        }
        Ok(entry)
    }
}

/// The action cache under `<state>/cache/actions`.
#[derive(Debug, Clone)]
pub struct ActionCache {
    dir: PathBuf,
    state: PathBuf,
    cas: Cas,
}

impl ActionCache {
    /// The cache of the state directory.
    pub fn new(state_dir: &Path) -> ActionCache {
        ActionCache {
            dir: state_dir.join("cache").join("actions"),
            state: state_dir.to_path_buf(),
            cas: Cas::new(state_dir),
        }
    }

    /// The state directory it belongs to.
    pub fn state_dir(&self) -> &Path {
        &self.state
    }

    /// The content store behind it.
    pub fn cas(&self) -> &Cas {
        &self.cas
    }

    /// The entry filed under `keys.local`: `Ok(None)` when there is none
    /// or a blob it needs is no longer in the store, [`DamagedEntry`] when
    /// the file is there but unusable (see [`ActionEntry::parse`]) or its
    /// record does not prove the key ([`record_proves`]).
    pub fn get(&self, keys: &ActionKeys) -> Result<Option<ActionEntry>, DamagedEntry> {
        let key = &keys.local;
        let file = self.dir.join(format!("{}.json", key.0.hex()));
        let damaged = |problem: String| DamagedEntry {
            file: file.clone(),
            problem,
        };
        let bytes = match cordon_core::fsutil::read_regular(&file, MAX_ENTRY_BYTES) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(damaged(format!("cannot be read: {e}"))),
        };
        let entry = ActionEntry::parse(&bytes, key).map_err(&damaged)?;
        // The entry says which run made the outputs; that run's record
        // must say it ran exactly this action.
        record_proves(&entry, keys).map_err(&damaged)?;
        let complete = entry.outputs.iter().all(|o| {
            o.entries
                .iter()
                .all(|e| e.sha256.as_deref().is_none_or(|h| self.cas.has_blob(h)))
        });
        Ok(complete.then_some(entry))
    }

    /// Entry files that point at a run `chained` does not name, or that are
    /// damaged: no cache hit may come from a run without a chained record.
    /// (Entries whose blobs left the store are merely unusable, not stale.)
    pub fn stale_entries(&self, chained: &dyn Fn(&str) -> bool) -> io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for e in entries.filter_map(|e| e.ok()) {
            let path = e.path();
            let Some(hex) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
            else {
                continue;
            };
            let Ok(digest) = Sha256Digest::parse(&format!("sha256:{hex}")) else {
                out.push(path);
                continue;
            };
            let stale = match cordon_core::fsutil::read_regular(&path, MAX_ENTRY_BYTES) {
                Ok(bytes) => ActionEntry::parse(&bytes, &ActionKey(digest))
                    .map_or(true, |entry| !chained(&entry.run_id)),
                Err(_) => true,
            };
            if stale {
                out.push(path);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Remembers `entry` (its blobs must already be stored).
    pub fn put(&self, key: &ActionKey, entry: &ActionEntry) -> io::Result<()> {
        cordon_core::fsutil::create_private_dir(&self.dir)?;
        let bytes = serde_json::to_vec_pretty(entry).map_err(io::Error::other)?;
        // Not fsynced: an entry is a hint written after the record it points
        // at is durable. Lost in a power failure, the step runs again; left
        // empty or torn, it is a damaged entry, which is a miss (see
        // `ActionEntry::parse`). What a crash can lose of records and
        // outputs does not change.
        cordon_core::fsutil::replace_unsynced(
            &self.dir.join(format!("{}.json", key.0.hex())),
            &bytes,
        )
    }
}

/// Serialises a report for the action entry.
pub fn report_json(r: &Report) -> serde_json::Value {
    serde_json::to_value(r).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cordon_manifest::manifest::{Access, SecretUse};
    use std::collections::BTreeSet;

    #[test]
    fn grants_alone_decide_some_steps_are_never_cached() {
        let hmac = BTreeSet::from([SecretUse::Hmac]);
        let reveal = BTreeSet::from([SecretUse::Sign, SecretUse::Reveal]);
        assert_eq!(
            uncacheable_by_grants([Access::Read, Access::Write], [("k", &hmac)], false, true),
            None
        );
        assert!(
            uncacheable_by_grants([], [], false, false)
                .unwrap()
                .contains("cache = false")
        );
        assert!(
            uncacheable_by_grants([Access::ReadWrite], [], false, true)
                .unwrap()
                .contains("read-write")
        );
        assert_eq!(
            uncacheable_by_grants([], [("k", &hmac), ("r", &reveal)], false, true).unwrap(),
            "it may reveal secret `r`"
        );
    }

    /// The plan of a step `s` with one read mount `/in`, in a temporary
    /// workspace (kept alive by the returned directory).
    fn one_read_mount_plan() -> (tempfile::TempDir, cordon_manifest::plan::StepPlan) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("c.wasm"), b"component").unwrap();
        let digest = Sha256Digest::of(b"component");
        let manifest = dir.path().join("step.toml");
        std::fs::write(
            &manifest,
            format!("[step]\nname = \"s\"\ncomponent = \"c.wasm\"\ndigest = \"{digest}\"\n\n[[mount]]\nguest = \"/in\"\nhost = \"data\"\naccess = \"read\"\npurpose = \"p\"\n"),
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        let m = cordon_manifest::manifest::Manifest::load(&manifest).unwrap();
        let ws = cordon_manifest::config::WorkspaceConfig::implicit(dir.path());
        let env = ws.env(cordon_manifest::config::DEFAULT_ENV).unwrap();
        let state = dir.path().join(".cordon");
        let ctx = cordon_manifest::plan::PlanContext {
            env,
            workspace_dir: dir.path(),
            state_dir: &state,
            produced: &[],
            hash_index: None,
        };
        let plan = cordon_manifest::plan::plan_step(&m, &ctx).unwrap();
        (dir, plan)
    }

    /// Each part of the action key is there: changing any one of them gives
    /// a different key, so a run that differs in it is never served another
    /// run's outputs.
    #[test]
    fn every_part_of_the_action_key_changes_it() {
        let (_dir, plan) = one_read_mount_plan();
        let inputs = vec![("/in".to_string(), Sha256Digest::of(b"tree"))];
        let secret = ResolvedSecret {
            name: "k".into(),
            uses: BTreeSet::from([SecretUse::Hmac]),
            provider: "local",
            version: Some("1".into()),
            credential: None,
            value: cordon_secrets::SecretValue::new(b"value".to_vec()),
        };
        let base = action_key(&plan, &inputs, std::slice::from_ref(&secret));
        assert_eq!(
            base,
            action_key(&plan, &inputs, std::slice::from_ref(&secret)),
            "the key is a function of its parts"
        );

        let mut changed: Vec<(&str, ActionKey)> = Vec::new();
        let mut p = plan.clone();
        p.env.push(("MODE".into(), "fast".into()));
        changed.push((
            "an environment variable",
            action_key(&p, &inputs, std::slice::from_ref(&secret)),
        ));
        let mut p = plan.clone();
        p.component_digest = Sha256Digest::of(b"another component");
        changed.push((
            "the component digest",
            action_key(&p, &inputs, std::slice::from_ref(&secret)),
        ));
        let mut p = plan.clone();
        p.manifest_sha256 = Sha256Digest::of(b"another manifest");
        changed.push((
            "the manifest digest",
            action_key(&p, &inputs, std::slice::from_ref(&secret)),
        ));
        let mut p = plan.clone();
        p.mounts[0].access = cordon_manifest::manifest::Access::ReadWrite;
        changed.push((
            "a mount's access",
            action_key(&p, &inputs, std::slice::from_ref(&secret)),
        ));
        let mut p = plan.clone();
        p.mounts[0].guest = "/elsewhere".into();
        changed.push((
            "a mount's guest path",
            action_key(&p, &inputs, std::slice::from_ref(&secret)),
        ));
        let mut p = plan.clone();
        p.random = cordon_manifest::manifest::RandomMode::Real;
        changed.push((
            "the random mode",
            action_key(&p, &inputs, std::slice::from_ref(&secret)),
        ));
        let mut p = plan.clone();
        p.argv.push("--epochs".into());
        changed.push((
            "an argument",
            action_key(&p, &inputs, std::slice::from_ref(&secret)),
        ));
        let mut p = plan.clone();
        p.environment = "prod".into();
        changed.push((
            "the environment",
            action_key(&p, &inputs, std::slice::from_ref(&secret)),
        ));
        let mut p = plan.clone();
        p.limits.fuel += 1;
        changed.push((
            "a limit",
            action_key(&p, &inputs, std::slice::from_ref(&secret)),
        ));
        let mut p = plan.clone();
        p.floats = cordon_manifest::manifest::FloatMode::Canonical;
        changed.push((
            "the float mode",
            action_key(&p, &inputs, std::slice::from_ref(&secret)),
        ));
        let mut p = plan.clone();
        p.clock = cordon_manifest::manifest::ClockMode::Real;
        changed.push((
            "the clock mode",
            action_key(&p, &inputs, std::slice::from_ref(&secret)),
        ));
        let other_input = vec![("/in".to_string(), Sha256Digest::of(b"other tree"))];
        changed.push((
            "an input tree",
            action_key(&plan, &other_input, std::slice::from_ref(&secret)),
        ));
        let mut s = secret.clone();
        s.version = Some("2".into());
        changed.push(("the secret version", action_key(&plan, &inputs, &[s])));
        let mut s = secret.clone();
        s.uses.insert(SecretUse::Sign);
        changed.push(("the secret uses", action_key(&plan, &inputs, &[s])));
        changed.push(("the set of secrets", action_key(&plan, &inputs, &[])));
        // The value never enters the key: a rotated value is a new version.
        let mut s = secret.clone();
        s.value = cordon_secrets::SecretValue::new(b"another value".to_vec());
        assert_eq!(
            base,
            action_key(&plan, &inputs, &[s]),
            "values are not in the key"
        );

        for (what, key) in &changed {
            assert_ne!(*key, base, "changing {what} must change the action key");
        }
    }

    /// The shared key is the local one without host paths: another
    /// checkout directory shares it, nothing else does.
    #[test]
    fn the_shared_key_leaves_out_host_paths_and_nothing_else() {
        let (_dir, plan) = one_read_mount_plan();
        let inputs = vec![("/in".to_string(), Sha256Digest::of(b"tree"))];
        let base = action_keys(&plan, &inputs, &[]);
        assert_ne!(base.local, base.shared);
        let mut moved = plan.clone();
        moved.mounts[0].host = PathBuf::from("/elsewhere/data");
        let moved = action_keys(&moved, &inputs, &[]);
        assert_ne!(moved.local, base.local, "a host path is in the local key");
        assert_eq!(moved.shared, base.shared, "and not in the shared one");
        let other = vec![("/in".to_string(), Sha256Digest::of(b"other tree"))];
        assert_ne!(action_keys(&plan, &other, &[]).shared, base.shared);
    }

    #[test]
    fn cas_round_trip_and_corruption() {
        let d = tempfile::tempdir().unwrap();
        let cas = Cas::new(d.path());
        let f = d.path().join("f");
        std::fs::write(&f, b"bytes").unwrap();
        let hex = Sha256Digest::of(b"bytes").hex().to_string();
        cas.put_file(&f, &hex).unwrap();
        assert!(cas.has_blob(&hex));
        let out = d.path().join("out");
        cas.restore_file(&hex, &out).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"bytes");
        // A wrong digest is refused on the way in...
        assert!(matches!(
            cas.put_file(&f, &"0".repeat(64)),
            Err(CasError::Corrupt { .. })
        ));
        // ...and a tampered blob on the way out.
        std::fs::write(cas.blob_at(&hex).unwrap(), b"tampered").unwrap();
        assert!(matches!(
            cas.restore_file(&hex, &d.path().join("o2")),
            Err(CasError::Corrupt { .. })
        ));
        assert!(!d.path().join("o2").exists());
    }

    mod parse {
        use super::*;
        use proptest::prelude::*;

        fn key() -> ActionKey {
            ActionKey(Sha256Digest::of(b"key"))
        }

        /// An entry whose strings are arbitrary (multibyte, empty, `..`),
        /// shaped like a real one so parsing gets past the JSON.
        fn entry_json(
            run: String,
            tree: String,
            path: String,
            kind: String,
            sha: Option<String>,
        ) -> Vec<u8> {
            serde_json::to_vec(&serde_json::json!({
                "key": key().0.to_string(),
                "run_id": run,
                "record": "/r.json",
                "outputs": [{"guest": "/out", "tree": tree, "entries": [
                    {"path": path, "kind": kind, "size": 1, "sha256": sha}
                ]}],
                "report": null,
            }))
            .unwrap()
        }

        proptest! {
            #[test]
            fn any_bytes_parse_or_fail_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                let _ = ActionEntry::parse(&bytes, &key());
            }

            #[test]
            fn an_accepted_entry_holds_only_checked_names(
                run in "\\PC{0,12}|[0-9T.Z]{4,12}-s-[0-9a-f]{8}",
                tree in "\\PC{0,8}|sha256:[0-9a-f]{64}",
                path in "\\PC{0,12}|[a-z./]{1,12}",
                kind in "file|dir|symlink|\\PC{0,4}",
                sha in proptest::option::of("\\PC{0,4}|[0-9a-f]{64}|[0-9a-f]{63}é"),
            ) {
                let cas = Cas::new(Path::new("/nonexistent"));
                if let Some(s) = &sha {
                    // Never a panic, whatever the name.
                    let _ = cas.has_blob(s);
                }
                if let Ok(e) = ActionEntry::parse(&entry_json(run, tree, path, kind, sha), &key()) {
                    for o in &e.outputs {
                        for c in &o.entries {
                            prop_assert!(is_tree_path(&c.path));
                            prop_assert!(!c.path.split('/').any(|p| p == ".."));
                            match c.kind.as_str() {
                                "file" => prop_assert!(c.sha256.as_deref().is_some_and(is_blob_name)),
                                "dir" => prop_assert!(c.sha256.is_none()),
                                other => prop_assert!(false, "kind {other}"),
                            }
                        }
                    }
                }
            }
        }
    }
}
