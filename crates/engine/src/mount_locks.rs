//! Locks on the host paths a step mounts, so that what a step reads is what
//! its record says it read.
//!
//! A run hashes its read mounts before the step starts and names those
//! digests in its record. Another runner publishing to one of those paths
//! in the meantime would make the record lie, and two runners publishing to
//! one destination at once would trip over each other's exchange. So every
//! run, from before its inputs are hashed until its outputs are published
//! (the whole commit, see [`cordon_record::journal`]), holds:
//!
//! - a **shared** lock on each `read` mount's host path (many readers at
//!   once, no writer);
//! - an **exclusive** lock on each `write` mount's destination and each
//!   `read-write` mount's path (one writer, no reader).
//!
//! A path a step mounts twice is locked once, exclusively if any of its
//! mounts writes. The lock of a path is the file
//! `<state>/locks/<sha256 of the resolved host path>.lock`, locked with
//! `flock` (std's [`File::lock`]): it is advisory, so it binds runners
//! sharing that state directory and nothing else; what anything else does
//! to a read mount is caught after the run (see `exec`). Lock files are
//! never removed: removing one that another run is waiting on would let two
//! runs hold "the" lock of one path at once.
//!
//! **Waiting.** A run whose lock is held waits for it (its caller is told,
//! once, to say so), and stops waiting when it is cancelled. Locks are always
//! taken in one order, by key, and all of a step's locks are taken before
//! it starts and released together after its commit; a run never waits
//! while holding a lock another run's step waits for in a cycle, so two
//! runners never deadlock.
//!
//! **Edges.** Paths are compared as resolved by the plan (absolute,
//! canonical). A mount inside another run's mount (`data/` and
//! `data/model/`) is a different path and is not serialized by these
//! locks; the post-run check of read mounts still fails a step whose input
//! changed under it.
//!
//! This module never reads a mount and never sees a secret value.

use cordon_core::fsutil;
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The lock directory inside a state directory.
pub const LOCKS_DIR: &str = "locks";

/// How often a waiting run looks at its lock again. Waiting polls instead of
/// blocking in `flock` so that Ctrl-C stops a run that waits; a blocked
/// `flock` cannot be interrupted from another thread.
const POLL: Duration = Duration::from_millis(25);

/// How a path is locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LockMode {
    /// Readers: many at once.
    Shared,
    /// A writer: alone.
    Exclusive,
}

/// One path to lock, in the order locks are taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathLock {
    /// The sha256 (hex) of the path's bytes: the lock file's name and the
    /// order locks are taken in.
    pub key: String,
    /// The resolved host path.
    pub path: PathBuf,
    /// Shared or exclusive.
    pub mode: LockMode,
}

/// The locks a step needs for `mounts` (resolved host path, mode): one per
/// path, exclusive if any mount of it is, sorted by key. Taking them in
/// this order is what keeps runners from deadlocking.
pub fn lock_order(mounts: impl IntoIterator<Item = (PathBuf, LockMode)>) -> Vec<PathLock> {
    let mut locks: Vec<PathLock> = Vec::new();
    for (path, mode) in mounts {
        let key = hex::encode(Sha256::digest(path.as_os_str().as_encoded_bytes()));
        match locks.iter_mut().find(|l| l.key == key) {
            Some(l) => l.mode = l.mode.max(mode),
            None => locks.push(PathLock { key, path, mode }),
        }
    }
    locks.sort_by(|a, b| a.key.cmp(&b.key));
    locks
}

/// Why the locks of a step could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The lock file could not be created or locked.
    #[error("cannot lock mount path {path} ({lock}): {source}")]
    Io {
        /// The mounted host path.
        path: PathBuf,
        /// Its lock file.
        lock: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The run was cancelled while it waited.
    #[error("stopped while waiting for another run to release {path}")]
    Cancelled {
        /// The mounted host path waited for.
        path: PathBuf,
    },
}

/// The locks a run holds; dropping it releases them all.
#[derive(Debug)]
pub struct HeldLocks {
    _files: Vec<File>,
}

/// Takes every lock in `locks`, in that order (as [`lock_order`] returns
/// them), under `state`, waiting for each that another run holds, until
/// `cancel` is set. `on_wait` is told once of each path it waits for, so
/// the caller can say why the run does not start.
pub fn acquire(
    state: &Path,
    locks: &[PathLock],
    cancel: Option<&cordon_core::cancel::Cancel>,
    on_wait: &mut dyn FnMut(&Path),
) -> Result<HeldLocks, LockError> {
    let dir = state.join(LOCKS_DIR);
    let mut files = Vec::with_capacity(locks.len());
    for l in locks {
        let lock = dir.join(format!("{}.lock", l.key));
        let io_err = |source| LockError::Io {
            path: l.path.clone(),
            lock: lock.clone(),
            source,
        };
        fsutil::create_private_dir(&dir).map_err(io_err)?;
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock)
            .map_err(io_err)?;
        let mut said = false;
        loop {
            let attempt = match l.mode {
                LockMode::Shared => f.try_lock_shared(),
                LockMode::Exclusive => f.try_lock(),
            };
            match attempt {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(e)) => return Err(io_err(e)),
            }
            if cancel.is_some_and(|c| c.is_cancelled()) {
                return Err(LockError::Cancelled {
                    path: l.path.clone(),
                });
            }
            if !said {
                on_wait(&l.path);
                said = true;
            }
            std::thread::sleep(POLL);
        }
        files.push(f);
    }
    Ok(HeldLocks { _files: files })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    /// The order depends on the paths only, never on the order the
    /// manifest lists them in: that is what rules out a deadlock between
    /// two runs that list the same paths differently.
    #[test]
    fn locks_are_taken_in_one_order_whatever_the_manifest_order() {
        let a = lock_order([
            (p("/w/data/model"), LockMode::Exclusive),
            (p("/w/data/pseudonymized"), LockMode::Shared),
            (p("/w/data/raw"), LockMode::Shared),
        ]);
        let b = lock_order([
            (p("/w/data/raw"), LockMode::Shared),
            (p("/w/data/model"), LockMode::Exclusive),
            (p("/w/data/pseudonymized"), LockMode::Shared),
        ]);
        assert_eq!(a, b);
        assert!(a.windows(2).all(|w| w[0].key < w[1].key), "{a:?}");
        let model = a.iter().find(|l| l.path == p("/w/data/model")).unwrap();
        assert_eq!(model.mode, LockMode::Exclusive);
        assert_eq!(
            model.key,
            hex::encode(Sha256::digest(b"/w/data/model")),
            "the key is the sha256 of the resolved path"
        );
    }

    #[test]
    fn a_path_mounted_twice_is_locked_once_exclusively_if_either_mount_writes() {
        for mounts in [
            [
                (p("/w/x"), LockMode::Shared),
                (p("/w/x"), LockMode::Exclusive),
            ],
            [
                (p("/w/x"), LockMode::Exclusive),
                (p("/w/x"), LockMode::Shared),
            ],
        ] {
            let locks = lock_order(mounts);
            assert_eq!(locks.len(), 1, "{locks:?}");
            assert_eq!(locks[0].mode, LockMode::Exclusive);
        }
    }

    /// A run that waits holds no lock that sorts after the one it waits
    /// for, whatever order its manifest lists them in. So of two runs that
    /// need the same locks, the one that holds the first can always take
    /// the rest: no cycle, no deadlock. (Taken in manifest order, the
    /// waiting run below would hold `second` while waiting for `first`.)
    #[test]
    fn a_run_waiting_for_a_lock_holds_none_that_sorts_after_it() {
        let state = tempfile::tempdir().unwrap();
        let sorted = lock_order([
            (p("/w/a"), LockMode::Exclusive),
            (p("/w/b"), LockMode::Exclusive),
        ]);
        let (first, second) = (sorted[0].clone(), sorted[1].clone());
        let held_first = acquire(
            state.path(),
            std::slice::from_ref(&first),
            None,
            &mut |_| {},
        )
        .unwrap();

        let (waits, waiting) = mpsc::channel();
        let dir = state.path().to_path_buf();
        let listed = [second.path.clone(), first.path.clone()];
        let other = std::thread::spawn(move || {
            let locks = lock_order(listed.map(|p| (p, LockMode::Exclusive)));
            acquire(&dir, &locks, None, &mut |p| {
                waits.send(p.to_path_buf()).unwrap()
            })
            .map(drop)
        });
        // A generous bound on a condition, not a timing assertion.
        let on = waiting
            .recv_timeout(Duration::from_secs(120))
            .expect("the other run waits");
        assert_eq!(on, first.path, "it waits for the lock that sorts first");
        // It holds nothing meanwhile: `second` is free.
        let cancel = cordon_core::cancel::Cancel::new();
        cancel.cancel();
        let held_second = acquire(
            state.path(),
            std::slice::from_ref(&second),
            Some(&cancel),
            &mut |_| {},
        )
        .expect("the waiting run holds no lock that sorts after the one it waits for");
        drop((held_first, held_second));
        other
            .join()
            .unwrap()
            .expect("and it goes ahead once released");
    }

    #[test]
    fn a_shared_lock_admits_readers_and_keeps_a_writer_out() {
        let state = tempfile::tempdir().unwrap();
        let read = lock_order([(p("/w/in"), LockMode::Shared)]);
        let write = lock_order([(p("/w/in"), LockMode::Exclusive)]);
        let r1 = acquire(state.path(), &read, None, &mut |_| {}).unwrap();
        let r2 = acquire(state.path(), &read, None, &mut |_| {}).unwrap();
        // A writer waits; cancelled, it stops waiting with the reason.
        let cancel = cordon_core::cancel::Cancel::new();
        cancel.cancel();
        let err = acquire(state.path(), &write, Some(&cancel), &mut |_| {}).unwrap_err();
        assert!(matches!(err, LockError::Cancelled { .. }), "{err}");
        drop(r1);
        drop(r2);
        acquire(state.path(), &write, Some(&cancel), &mut |_| {})
            .expect("free once the readers are gone");
    }
}
