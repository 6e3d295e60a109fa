//! `cordon restore`: re-publish the outputs of an earlier run from the
//! content store (rollback).
//!
//! A record names the host paths its outputs were published to, and a
//! restore replaces those paths. So the record is **verified before any
//! path is touched**, as `cordon verify --run ID` verifies it
//! ([`cordon_record::verify::verify_with`]): the chain, the record's digest in it
//! and its signature by a key trusted for its environment. Any finding
//! refuses the restore, except that a record written without a signature
//! (its environment had no signing key) is restored with a warning when
//! the environment is not protected, since only the chain vouches for it.
//! The outputs themselves are not hashed: that they changed is what a
//! restore repairs. The record is then parsed into typed values, every
//! path and digest checked ([`crate::cache::ActionEntry`]'s rules).
//!
//! Outputs are staged under `<state>/staging/restore-<run>-<tag>`, checked
//! against the record's tree digests, then published. On any failure the
//! staging area is removed, so a failed restore never blocks the next one.
//! The destinations are locked exclusively for the whole restore, as a
//! run locks its write mounts ([`crate::mount_locks`]). This module never
//! writes outside that staging area and the host paths of a record that
//! verified.

use crate::cas::{Cas, CasError, is_blob_name};
use crate::keys::TrustRoots;
use crate::outputs::{OutputError, RefillError, Staging};
use cordon_core::digest::EntryKind;
use cordon_manifest::config::WorkspaceConfig;
use cordon_manifest::manifest::Access;
use cordon_manifest::manifest::Sha256Digest;
use cordon_record::record::{RestoreRecord, RestoredTree, RestoredWhat, StepRecord, TreeRecord};
use cordon_record::verify::{Checks, FindingKind, Scope, VerifyError};
use std::path::{Path, PathBuf};

/// Largest record file read (see the record crate's constant).
pub const MAX_RECORD_BYTES: u64 = cordon_record::record::MAX_RECORD_BYTES;

/// Why a restore did not happen (or did not finish).
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The run is unknown, or the state directory has no records.
    #[error(transparent)]
    Unknown(#[from] VerifyError),
    /// The record does not verify: nothing was touched.
    #[error(
        "the record of run `{run}` does not verify, so nothing was restored:\n  {}\n  fix: run `cordon verify --run {run}` and restore a record that holds",
        problems.join("\n  ")
    )]
    Unverified {
        /// The run.
        run: String,
        /// What `verify` found.
        problems: Vec<String>,
    },
    /// The record verified but is not one that can be restored.
    #[error("record {path}: {problem}")]
    Unusable {
        /// The record file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The run failed, so it published nothing.
    #[error("run `{0}` did not succeed; it published nothing to restore")]
    NotPublished(String),
    /// The staging area could not be made.
    #[error("cannot create the staging directory: {0}")]
    Staging(std::io::Error),
    /// The journal could not be flushed before publishing.
    #[error("cannot flush the publication journal before publishing: {0}")]
    Journal(std::io::Error),
    /// An output could not be rebuilt from the content store.
    #[error("cannot restore {guest} of run {run}: {source}")]
    Store {
        /// Guest path.
        guest: String,
        /// The run.
        run: String,
        /// What failed.
        source: CasError,
    },
    /// A rebuilt output does not have the record's tree digest.
    #[error("restored {guest} does not match the record's tree digest")]
    Mismatch {
        /// Guest path.
        guest: String,
    },
    /// Checking or publishing the rebuilt outputs failed.
    #[error(transparent)]
    Publish(#[from] OutputError),
    /// The destinations could not be locked against runs publishing there.
    #[error(transparent)]
    Lock(#[from] crate::mount_locks::LockError),
    /// The restore record cannot be signed where the environment requires
    /// it: nothing was touched.
    #[error(transparent)]
    Signer(#[from] crate::keys::KeyError),
    /// A destination holds something no record names and it could not be
    /// kept in the content store, or is not a directory: nothing was
    /// touched.
    #[error("{0}")]
    Existing(String),
    /// The restore record could not be written or chained: nothing was
    /// published.
    #[error("cannot write the restore record: {0}")]
    Record(std::io::Error),
}

impl RestoreError {
    /// Whether the failure says something about the state directory's
    /// integrity (exit 1, like `cordon verify`), rather than bad input (2)
    /// or a failure of the runner or the host (3).
    pub fn is_verification_failure(&self) -> bool {
        matches!(self, RestoreError::Unverified { .. })
    }

    /// Whether the failure is a wrong invocation or an unusable record.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            RestoreError::Unknown(_)
                | RestoreError::Unusable { .. }
                | RestoreError::NotPublished(_)
                | RestoreError::Signer(_)
        )
    }
}

/// One output mount that was restored.
#[derive(Debug, Clone)]
pub struct RestoredMount {
    /// Guest path.
    pub guest: String,
    /// Where it was published.
    pub host: PathBuf,
    /// Its tree digest.
    pub tree: Sha256Digest,
}

/// What a restore did.
#[derive(Debug, Default)]
pub struct Restored {
    /// The mounts published, in record order.
    pub mounts: Vec<RestoredMount>,
    /// Things to tell the user (an unsigned record, say).
    pub warnings: Vec<String>,
    /// The restore's own record, chained (absent when nothing was
    /// published).
    pub record: Option<PathBuf>,
}

/// A write mount to restore, checked.
struct Planned {
    guest: String,
    host: PathBuf,
    tree: Sha256Digest,
    entries: Vec<cordon_core::digest::Entry>,
}

/// Verifies the record of `run` in `state_dir` against `roots` (and
/// `workspace`'s environments), then restores its outputs.
pub fn restore(
    state_dir: &Path,
    run: &str,
    workspace: &WorkspaceConfig,
    roots: &TrustRoots,
    what: RestoredWhat,
) -> Result<Restored, RestoreError> {
    let verdict = cordon_record::verify::verify_with(
        state_dir,
        workspace,
        roots,
        &Scope::Run(run.to_string()),
        Checks { outputs: false },
    )?;
    let path = cordon_record::chain::record_path(&state_dir.join("records"), run);
    let unusable = |problem: String| RestoreError::Unusable {
        path: path.clone(),
        problem,
    };
    let bytes = cordon_core::fsutil::read_regular(&path, MAX_RECORD_BYTES)
        .map_err(|e| unusable(format!("cannot be read: {e}")))?;
    // Read through the record schemas, like `verify` (which has just
    // checked this very file) and re-execution.
    let source = Source::read(&bytes, what).map_err(unusable)?;
    // From here on the attempt is about a known run in a known
    // environment: a failure leaves a record too (posture counts them).
    let signer = match workspace.envs.get(&source.environment) {
        Some(env) => crate::keys::signer_for_run(env, &workspace.dir)?.map(|k| k.signer),
        None => None,
    };
    let environment = source.environment.clone();
    let result = restore_verified(
        state_dir,
        run,
        workspace,
        &verdict,
        source,
        what,
        signer.as_ref(),
    );
    if let Err(e) = &result
        && !matches!(e, RestoreError::Record(_))
    {
        let mut failed = RestoreRecord::new(&environment, run, what, Vec::new());
        failed.failure = Some(e.to_string());
        if let Err(e) = cordon_record::chain::seal_restore(
            &state_dir.join("records"),
            &mut failed,
            signer.as_ref(),
        ) {
            tracing::warn!("cannot record the failed restore: {e}");
        }
    }
    result
}

/// [`restore`] once the source record is read: checks what `verify`
/// found, then publishes.
fn restore_verified(
    state_dir: &Path,
    run: &str,
    workspace: &WorkspaceConfig,
    verdict: &cordon_record::verify::Verdict,
    source: Source,
    what: RestoredWhat,
    signer: Option<&cordon_record::attest::Signer>,
) -> Result<Restored, RestoreError> {
    let path = cordon_record::chain::record_path(&state_dir.join("records"), run);
    let unusable = |problem: String| RestoreError::Unusable {
        path: path.clone(),
        problem,
    };
    let protected = workspace
        .envs
        .get(&source.environment)
        .is_some_and(|e| e.protected);

    let subject = format!("record {run}");
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    for f in &verdict.findings {
        let about_this_run =
            f.subject == subject || f.subject.starts_with(cordon_record::chain::LOG_FILE);
        match f.kind {
            FindingKind::Unsigned if !protected => warnings.push(format!(
                "{f}; only the chain vouches for it, and anyone who can write the state directory can rewrite a chain"
            )),
            FindingKind::Chain if !about_this_run => {}
            FindingKind::Output | FindingKind::Reexecution => {}
            _ => problems.push(f.to_string()),
        }
    }
    if !problems.is_empty() {
        return Err(RestoreError::Unverified {
            run: run.to_string(),
            problems,
        });
    }
    warnings.extend(verdict.warnings.iter().cloned());

    if !source.success {
        return Err(RestoreError::NotPublished(run.to_string()));
    }
    if source.run_id != run {
        return Err(unusable(format!(
            "it names run `{}`",
            cordon_core::sanitize::escape_for_terminal(&source.run_id)
        )));
    }
    let planned = plan_mounts(source.trees).map_err(unusable)?;
    if planned.is_empty() {
        return Ok(Restored {
            mounts: Vec::new(),
            warnings,
            record: None,
        });
    }
    // The restore's record is signed by the key of the environment the
    // restored run ran in, found before anything was touched.
    let (mounts, record) = publish(state_dir, run, what, &source.environment, &planned, signer)?;
    Ok(Restored {
        mounts,
        warnings,
        record: Some(record),
    })
}

/// The environment the record of `run` in `state_dir` names, when it can
/// be read (a step or restore record); nothing is verified here.
pub fn environment_of(state_dir: &Path, run: &str) -> Option<String> {
    if !cordon_record::chain::is_run_id(run) {
        return None;
    }
    let path = cordon_record::chain::record_path(&state_dir.join("records"), run);
    let bytes = cordon_core::fsutil::read_regular(&path, MAX_RECORD_BYTES).ok()?;
    Source::read(&bytes, RestoredWhat::Outputs)
        .ok()
        .map(|s| s.environment)
}

/// The record a restore reads: a step record, or an earlier restore's.
struct Source {
    run_id: String,
    environment: String,
    success: bool,
    /// (guest, host, tree) of what `what` selects.
    trees: Vec<(String, PathBuf, TreeRecord)>,
}

impl Source {
    fn read(bytes: &[u8], what: RestoredWhat) -> Result<Source, String> {
        if cordon_record::record::is_restore_record(bytes) {
            let r: RestoreRecord = serde_json::from_slice(bytes)
                .map_err(|e| format!("is not a restore record this runner can read: {e}"))?;
            let trees = r
                .trees
                .into_iter()
                .filter_map(|t| {
                    let tree = match what {
                        RestoredWhat::Outputs => Some(t.tree),
                        RestoredWhat::Replaced => t.replaced,
                    }?;
                    Some((t.guest, t.host, tree))
                })
                .collect();
            return Ok(Source {
                run_id: r.run_id,
                environment: r.environment,
                success: true,
                trees,
            });
        }
        let record: StepRecord = serde_json::from_slice(bytes)
            .map_err(|e| format!("is not a record this runner can restore: {e}"))?;
        let mut trees = Vec::new();
        for m in record
            .mounts
            .into_iter()
            .filter(|m| m.access == Access::Write)
        {
            let tree = match what {
                RestoredWhat::Outputs => Some(m.after.ok_or_else(|| {
                    format!(
                        "it lacks the tree of output {}",
                        cordon_core::sanitize::escape_for_terminal(&m.guest)
                    )
                })?),
                RestoredWhat::Replaced => m.replaced,
            };
            if let Some(tree) = tree {
                trees.push((m.guest, m.host, tree));
            }
        }
        Ok(Source {
            run_id: record.run_id,
            environment: record.environment,
            // A run that failed published nothing, and replaced nothing.
            success: record.success,
            trees,
        })
    }
}

/// The write mounts of a record, every path and digest checked.
fn plan_mounts(trees: Vec<(String, PathBuf, TreeRecord)>) -> Result<Vec<Planned>, String> {
    let mut out = Vec::new();
    for (guest_path, host, after) in trees {
        let guest = cordon_core::sanitize::escape_for_terminal(&guest_path);
        if !host.is_absolute() {
            return Err(format!(
                "output {guest} has a host path that is not absolute"
            ));
        }
        let tree = after.sha256;
        let listed = after
            .entries
            .ok_or_else(|| format!("it lacks the entries of {guest}"))?;
        let mut entries = Vec::with_capacity(listed.len());
        for e in listed {
            // The exact name (`path`, or `path_hex` for one that is not
            // UTF-8), checked in its one spelling: it is what is restored.
            if let Err(why) = e.path_bytes() {
                return Err(format!(
                    "output {guest} lists `{}`, which is not a plain relative path ({why})",
                    cordon_core::sanitize::escape_for_terminal(&e.path)
                ));
            }
            if let Some(h) = &e.sha256
                && !is_blob_name(h)
            {
                return Err(format!(
                    "output {guest} lists a file with an invalid digest"
                ));
            }
            match (&e.kind, &e.sha256) {
                (EntryKind::File, Some(_)) | (EntryKind::Dir, None) => entries.push(e),
                _ => {
                    return Err(format!(
                        "output {guest} lists `{}`, which is not a plain file or directory",
                        e.shown()
                    ));
                }
            }
        }
        out.push(Planned {
            guest: guest_path,
            host,
            tree,
            entries,
        });
    }
    Ok(out)
}

/// Stages, checks and publishes `planned` by the commit protocol of a run
/// ([`cordon_record::journal`]): staged and checked, what the destinations
/// hold that no record names kept in the content store, the intent
/// written, the restore record chained (signed by `signer`), then
/// published. The staging area is removed on every failure before the
/// record; after it, the intent lets the next command complete the
/// publication. Returns the mounts and the record's file.
fn publish(
    state_dir: &Path,
    run: &str,
    what: RestoredWhat,
    environment: &str,
    planned: &[Planned],
    signer: Option<&cordon_record::attest::Signer>,
) -> Result<(Vec<RestoredMount>, PathBuf), RestoreError> {
    // A restore publishes like a run does, so it holds the same exclusive
    // locks on the destinations (see `mount_locks`): it waits for a run
    // that reads or writes one of them, and keeps new ones out until done.
    let _locks = crate::mount_locks::acquire(
        state_dir,
        &crate::mount_locks::lock_order(
            planned
                .iter()
                .map(|p| (p.host.clone(), crate::mount_locks::LockMode::Exclusive)),
        ),
        None,
        &mut crate::exec::say_waiting,
    )?;
    let root = state_dir.join("staging").join(format!(
        "restore-{run}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let writes: Vec<(String, PathBuf)> = planned
        .iter()
        .map(|p| (p.guest.clone(), p.host.clone()))
        .collect();
    let staging = match Staging::create(root.clone(), &writes) {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&root);
            return Err(RestoreError::Staging(e));
        }
    };
    // Held until the publication is done, so that a recovery meanwhile
    // takes this staging for a live run's, not a stopped one's.
    let _staging_lock = match cordon_record::journal::lock_staging(staging.root()) {
        Ok(l) => l,
        Err(e) => {
            staging.discard();
            return Err(RestoreError::Staging(e));
        }
    };
    let wanted: Vec<_> = planned
        .iter()
        .map(|p| (p.entries.as_slice(), &p.tree))
        .collect();
    let trees = match staging.refill(&Cas::new(state_dir), &wanted) {
        Ok(t) => t,
        Err(e) => {
            staging.discard();
            return Err(match e {
                RefillError::Store { guest, source } => RestoreError::Store {
                    guest,
                    run: run.to_string(),
                    source,
                },
                RefillError::Check(e) => RestoreError::Publish(e),
                RefillError::Mismatch { guest } => RestoreError::Mismatch { guest },
            });
        }
    };
    // A restore repairs outputs that changed: what it replaces that no
    // record names is kept in the store first, and its record says so.
    let replaced = match keep_existing(state_dir, planned) {
        Ok(r) => r,
        Err(e) => {
            staging.discard();
            return Err(e);
        }
    };
    let mut record = RestoreRecord::new(
        environment,
        run,
        what,
        planned
            .iter()
            .zip(&trees)
            .zip(replaced)
            .map(|((p, t), replaced)| RestoredTree {
                guest: p.guest.clone(),
                host: p.host.clone(),
                tree: TreeRecord::of(t, true),
                replaced,
            })
            .collect(),
    );
    let intent = cordon_record::journal::Intent {
        run: record.run_id.clone(),
        staging: staging.root().to_path_buf(),
        trees: staging
            .mounts
            .iter()
            .zip(planned)
            .map(|(s, p)| cordon_record::journal::StagedTree {
                guest: s.guest.clone(),
                staged: s.dir.clone(),
                dest: s.dest.clone(),
                tree: p.tree.to_string(),
            })
            .collect(),
        vsa: None,
    };
    if let Err(e) = cordon_record::journal::begin(state_dir, &intent) {
        staging.discard();
        return Err(RestoreError::Journal(e));
    }
    cordon_core::fault::point("restore-after-intent");
    let sealed =
        match cordon_record::chain::seal_restore(&state_dir.join("records"), &mut record, signer) {
            Ok(s) => s,
            Err(e) => {
                // No record: nothing may be published, and nothing was.
                staging.discard();
                let _ = cordon_record::journal::finish(state_dir, &record.run_id);
                return Err(RestoreError::Record(e));
            }
        };
    cordon_core::fault::point("restore-after-record");
    staging.publish()?;
    cordon_core::fault::point("restore-after-publish");
    for p in planned {
        crate::outputs::existing::remember(state_dir, &p.host, &record.run_id);
    }
    cordon_record::journal::finish(state_dir, &record.run_id).map_err(RestoreError::Journal)?;
    let mounts = planned
        .iter()
        .map(|p| RestoredMount {
            guest: p.guest.clone(),
            host: p.host.clone(),
            tree: p.tree.clone(),
        })
        .collect();
    Ok((mounts, sealed.record_path))
}

/// For each destination, what it holds that no record names, kept in the
/// content store (see `outputs::existing`); a destination that is not a
/// directory refuses the restore.
fn keep_existing(
    state_dir: &Path,
    planned: &[Planned],
) -> Result<Vec<Option<TreeRecord>>, RestoreError> {
    use crate::outputs::existing::{Holding, Inspected, inspect};
    let mut out = Vec::with_capacity(planned.len());
    for p in planned {
        let host = cordon_core::sanitize::escape_for_terminal(&p.host.display().to_string());
        let found = inspect(state_dir, &p.host, None)
            .map_err(|e| RestoreError::Existing(format!("cannot tell what {host} holds: {e}")))?;
        match found {
            Inspected::NotDirectory => {
                return Err(RestoreError::Existing(format!(
                    "{host} is not a directory; nothing was restored\n  fix: move it out of the way"
                )));
            }
            Inspected::Holding(Holding::Unrecorded(u)) => {
                let stored = Cas::for_state(state_dir)
                    .and_then(|cas| cas.store_tree(&p.host))
                    .map_err(|e| {
                        RestoreError::Existing(format!(
                            "cannot keep what {host} holds in the content store before replacing it: {e}"
                        ))
                    })?;
                if stored != u.tree.digest {
                    return Err(RestoreError::Existing(format!(
                        "{host} changed while it was kept in the content store; nothing was restored"
                    )));
                }
                out.push(Some(TreeRecord::of(&u.tree, true)));
            }
            Inspected::Holding(_) => out.push(None),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cordon_core::digest::Entry;
    use cordon_record::record::TreeRecord;

    #[test]
    fn a_record_mount_with_an_escaping_path_or_bad_digest_is_refused() {
        let view = |path: &str, sha: Option<&str>| {
            (
                "/out".to_string(),
                PathBuf::from("/tmp/out"),
                TreeRecord {
                    sha256: Sha256Digest::of(b"t"),
                    files: 1,
                    bytes: 1,
                    entries: Some(vec![Entry {
                        path: path.into(),
                        path_hex: None,
                        kind: if sha.is_some() {
                            EntryKind::File
                        } else {
                            EntryKind::Dir
                        },
                        size: 1,
                        sha256: sha.map(str::to_string),
                    }]),
                },
            )
        };
        let good = "a".repeat(64);
        assert!(plan_mounts(vec![view("f.txt", Some(&good))]).is_ok());
        for (path, sha) in [
            ("../f", Some(good.as_str())),
            ("/etc/passwd", Some(good.as_str())),
            ("a//b", None),
            ("f", Some("x")),
            ("f", Some("aé")),
        ] {
            assert!(
                plan_mounts(vec![view(path, sha)]).is_err(),
                "{path:?} {sha:?}"
            );
        }
        let mut relative = view("f", None);
        relative.1 = PathBuf::from("out");
        assert!(plan_mounts(vec![relative]).is_err());
    }

    #[test]
    fn a_failed_publish_removes_the_staging_area() {
        let d = tempfile::tempdir().unwrap();
        let state = d.path().join("state");
        let cas = Cas::new(&state);
        let f = d.path().join("f");
        std::fs::write(&f, b"bytes").unwrap();
        let hex = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"bytes"));
        cas.put_file(&f, &hex).unwrap();
        // The destination's parent is a file: publishing fails.
        std::fs::write(d.path().join("blocked"), b"").unwrap();
        let src = d.path().join("src");
        std::fs::create_dir(&src).unwrap();
        std::fs::copy(&f, src.join("f")).unwrap();
        let tree = cordon_core::digest::tree(&src).unwrap();
        let planned = vec![Planned {
            guest: "/out".into(),
            host: d.path().join("blocked/out"),
            tree: tree.digest,
            entries: tree.entries,
        }];
        // What is at the destination cannot be read, so nothing is
        // recorded and nothing published.
        assert!(matches!(
            publish(&state, "r", RestoredWhat::Outputs, "dev", &planned, None),
            Err(RestoreError::Existing(_))
        ));
        let left: Vec<_> = std::fs::read_dir(state.join("staging"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
