//! The commit protocol of one step run, and its journal.
//!
//! A run's outputs become visible in this order, each step durable before
//! the next begins:
//!
//! 1. **stage**: the step writes into staging directories; they are checked
//!    (secrets, links, limits) and digested, and go into the content store;
//! 2. **intent**: `<state>/journal/<run>.json` names every staged tree,
//!    where it goes and its digest;
//! 3. **record**: the record that names those outputs is written and
//!    appended to the chain (signed, fsynced);
//! 4. **cache**: the action-cache entry that points at that record;
//! 5. **publish**: each staged tree is exchanged into place
//!    (the engine's `outputs::publish_one`);
//! 6. **done**: the intent is removed.
//!
//! So no output is ever visible without a chained record that names it,
//! and no cache entry points at a run without one. Throughout, from before
//! the inputs are hashed to the end of 5, the run holds its mount locks
//! (the engine's `mount_locks`), so no other runner of the state directory
//! publishes to its destinations or changes what it reads. A runner killed at any
//! point leaves one of three states, which `cordon repair` finishes (and
//! `cordon verify` reports until it has):
//!
//! - an intent and no record (killed in 2–3): nothing was published; the
//!   staging is removed (**rolled back**);
//! - an intent and its record (killed in 3–6): publication is completed
//!   from the staged trees, or found already complete (**rolled forward**);
//! - a staging directory without an intent, whose run no longer holds its
//!   lock (killed while the step ran): removed.
//!
//! This module owns the journal's format: writing and reading intents and
//! finding what a stopped runner left. Acting on it (`cordon repair`) is the
//! engine's; this module never runs a step, never publishes and never sees
//! a secret value.

use cordon_core::fsutil;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// The journal directory inside a state directory.
pub const JOURNAL_DIR: &str = "journal";

/// Largest journal file read back. An intent names a handful of mounts;
/// anything larger was not written by a runner.
const MAX_INTENT_BYTES: u64 = 1 << 20;

/// One staged tree an intent will publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StagedTree {
    /// The guest path of the write mount.
    pub guest: String,
    /// The staging directory that holds it.
    pub staged: PathBuf,
    /// Where it is published.
    pub dest: PathBuf,
    /// Its tree digest (`sha256:<hex>`).
    pub tree: String,
}

/// A run that is about to publish its outputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Intent {
    /// The run id (its record's file stem).
    pub run: String,
    /// The run's staging root, removed once the run is done.
    pub staging: PathBuf,
    /// Every tree to publish.
    pub trees: Vec<StagedTree>,
    /// For a promotion: the verification summary that commits it. Once
    /// that file exists the promotion is decided, and recovery completes
    /// the publication as it does a run's whose record is chained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vsa: Option<PathBuf>,
}

fn journal_dir(state: &Path) -> PathBuf {
    state.join(JOURNAL_DIR)
}

fn intent_path(state: &Path, run: &str) -> PathBuf {
    journal_dir(state).join(format!("{run}.json"))
}

/// Step 2: writes the intent durably (temporary file, fsync, rename, fsync
/// of the directory).
pub fn begin(state: &Path, intent: &Intent) -> io::Result<()> {
    fsutil::create_private_dir(&journal_dir(state))?;
    let bytes = serde_json::to_vec_pretty(intent).map_err(io::Error::other)?;
    fsutil::write_atomic(&intent_path(state, &intent.run), &bytes)
}

/// Step 2 without its own flush, for a commit whose record is sealed right
/// after on the same file system: the seal's barrier
/// ([`crate::chain::seal_batch`]) makes the intent durable before the log
/// line that chains the record, and an intent matters only once its record
/// is chained (until then `repair` rolls the run back, intent or not).
/// Returns `Ok(false)`, having written nothing, when the journal is not on
/// the records' file system: the caller must then use [`begin`].
pub fn begin_unsynced(state: &Path, intent: &Intent) -> io::Result<bool> {
    let dir = journal_dir(state);
    fsutil::create_private_dir(&dir)?;
    fsutil::create_private_dir(&state.join("records"))?;
    if !shares_records_fs(state)? {
        return Ok(false);
    }
    let bytes = serde_json::to_vec_pretty(intent).map_err(io::Error::other)?;
    fsutil::replace_unsynced(&intent_path(state, &intent.run), &bytes)?;
    Ok(true)
}

/// Step 6: the run is done; its intent goes.
///
/// The removal is flushed only when the journal is not on the records'
/// file system. On the same one, every later record is sealed behind a
/// `syncfs` of that file system ([`crate::chain::seal_batch`]) before its
/// run publishes anything, and that barrier makes this removal durable
/// too; a publication that seals no record (`cordon restore`, a
/// promotion, an upstream step's outputs) calls [`settle`] first. So a
/// removal lost to a power cut can only come back as the intent of a run
/// whose outputs are still the ones it published, which `repair` finds
/// complete. Its own flush would cost every run with outputs a flush of
/// the disk's cache for nothing.
pub fn finish(state: &Path, run: &str) -> io::Result<()> {
    match std::fs::remove_file(intent_path(state, run)) {
        Ok(()) if shares_records_fs(state)? => Ok(()),
        Ok(()) => fsutil::sync_dir(&journal_dir(state)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Makes the removals of finished intents durable (see [`finish`]), for a
/// publication into a destination of `state`'s runs that seals no record
/// first: without it, a power cut could bring back the intent of a run
/// whose destination that publication has since changed, and `repair`
/// would find the run's outputs replaced.
pub fn settle(state: &Path) -> io::Result<()> {
    match fsutil::sync_dir(&journal_dir(state)) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Whether the journal is on the records' file system, whose seal
/// barriers then cover it. Only Linux seals with a `syncfs`; elsewhere a
/// seal flushes its own files alone, so the journal never shares it.
fn shares_records_fs(state: &Path) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    if !cfg!(target_os = "linux") {
        return Ok(false);
    }
    let records = match std::fs::metadata(state.join("records")) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    Ok(std::fs::metadata(journal_dir(state))?.dev() == records.dev())
}

/// Every intent in the journal, with the ones that cannot be read named
/// by their file (a damaged intent is reported, never guessed at).
pub fn pending(state: &Path) -> io::Result<(Vec<Intent>, Vec<PathBuf>)> {
    let mut intents = Vec::new();
    let mut damaged = Vec::new();
    let dir = journal_dir(state);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((intents, damaged)),
        Err(e) => return Err(e),
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    paths.sort();
    for p in paths {
        match fsutil::read_regular_to_string(&p, MAX_INTENT_BYTES)
            .ok()
            .and_then(|t| serde_json::from_str::<Intent>(&t).ok())
            .filter(|i| p.file_stem().is_some_and(|s| s.to_string_lossy() == i.run))
        {
            Some(i) => intents.push(i),
            None => damaged.push(p),
        }
    }
    Ok((intents, damaged))
}

/// The intents of runs that are no longer running (a live run's intent is
/// its commit in progress, not an interruption), and damaged intent files.
pub fn unfinished(state: &Path) -> io::Result<(Vec<Intent>, Vec<PathBuf>)> {
    let (intents, damaged) = pending(state)?;
    Ok((
        intents
            .into_iter()
            .filter(|i| !is_live(&i.staging))
            .collect(),
        damaged,
    ))
}

/// Staging roots of runs that were stopped while their step ran: no live
/// run holds them and no intent names them. Their run left no record (it
/// never reached its commit); `cordon repair` removes them.
pub fn stopped_runs(state: &Path) -> io::Result<Vec<PathBuf>> {
    let (intents, _) = pending(state)?;
    let named: Vec<&PathBuf> = intents.iter().map(|i| &i.staging).collect();
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(state.join("staging")) {
        for e in entries.filter_map(|e| e.ok()) {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) && !named.contains(&&p) && !is_live(&p) {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The lock a live run holds on its staging root, so that `cordon repair`
/// never removes the staging of a run that is still going: an exclusive
/// `flock` on the staging root directory itself, released when the run
/// ends however it ends. Locking the directory, not a lock file beside it,
/// creates and deletes nothing: on ext4 without a journal every deleted
/// inode slows later inode allocations for minutes.
#[derive(Debug)]
pub struct StagingLock {
    _dir: File,
}

/// Takes the lock of the staging root `root` (created if needed).
pub fn lock_staging(root: &Path) -> io::Result<StagingLock> {
    fsutil::create_private_dir(root)?;
    let dir = File::open(root)?;
    dir.lock()?;
    Ok(StagingLock { _dir: dir })
}

/// The lock file beside the staging root `root` that runners before the
/// directory lock held; `repair` removes one it finds.
pub fn lock_path(root: &Path) -> PathBuf {
    let mut name = root.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Whether a live run holds `root`'s lock (the directory's, or the lock
/// file an earlier runner holds). Fails safe: only a lock that is absent,
/// or that opens and locks, says the run is gone; anything else counts as
/// live and is left alone.
pub fn is_live(root: &Path) -> bool {
    let held = |f: File| match f.try_lock() {
        Ok(()) => false,
        Err(std::fs::TryLockError::WouldBlock) => true,
        Err(std::fs::TryLockError::Error(_)) => true,
    };
    let by = |path: &Path| match File::open(path) {
        Ok(f) => held(f),
        Err(e) => e.kind() != io::ErrorKind::NotFound,
    };
    by(root) || by(&lock_path(root))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An intent written without its own flush reads back like one written
    /// with it, and only where the records share its file system.
    #[test]
    fn an_unsynced_intent_is_pending_like_a_synced_one() {
        let d = tempfile::tempdir().unwrap();
        let intent = |run: &str| Intent {
            run: run.into(),
            staging: d.path().join("staging").join(run),
            trees: Vec::new(),
            vsa: None,
        };
        assert!(begin_unsynced(d.path(), &intent("a")).unwrap());
        begin(d.path(), &intent("b")).unwrap();
        let (pending, damaged) = pending(d.path()).unwrap();
        let mut runs: Vec<&str> = pending.iter().map(|i| i.run.as_str()).collect();
        runs.sort();
        assert_eq!(runs, ["a", "b"]);
        assert!(damaged.is_empty());
        finish(d.path(), "a").unwrap();
        assert_eq!(pending_runs(d.path()), ["b"]);
    }

    /// A run's staging counts as live exactly while its lock is held, by
    /// this runner (a lock on the directory, no file beside it) or by an
    /// earlier one (its lock file).
    #[test]
    fn a_staging_root_is_live_while_its_lock_is_held() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("staging").join("run-1");
        let lock = lock_staging(&root).unwrap();
        assert!(is_live(&root));
        assert!(stopped_runs(d.path()).unwrap().is_empty(), "a live run's");
        assert_eq!(
            std::fs::read_dir(d.path().join("staging")).unwrap().count(),
            1,
            "no lock file beside the staging root"
        );
        drop(lock);
        assert!(!is_live(&root));
        assert_eq!(stopped_runs(d.path()).unwrap(), std::slice::from_ref(&root));

        let legacy = File::create(lock_path(&root)).unwrap();
        legacy.lock().unwrap();
        assert!(is_live(&root), "an earlier runner's lock file counts");
        drop(legacy);
        assert!(!is_live(&root));
        std::fs::remove_dir(&root).unwrap();
        assert!(!is_live(&root), "a removed staging is no run's");
    }

    /// Settling a state directory without a journal is nothing to do;
    /// with one, it flushes it.
    #[test]
    fn settling_works_with_and_without_a_journal() {
        let d = tempfile::tempdir().unwrap();
        settle(d.path()).unwrap();
        begin(
            d.path(),
            &Intent {
                run: "a".into(),
                staging: d.path().join("staging/a"),
                trees: Vec::new(),
                vsa: None,
            },
        )
        .unwrap();
        finish(d.path(), "a").unwrap();
        settle(d.path()).unwrap();
        assert!(pending_runs(d.path()).is_empty());
    }

    fn pending_runs(state: &Path) -> Vec<String> {
        pending(state)
            .unwrap()
            .0
            .into_iter()
            .map(|i| i.run)
            .collect()
    }
}
