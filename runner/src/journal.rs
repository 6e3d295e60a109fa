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
//!    ([`crate::outputs::publish_one`]);
//! 6. **done**: the intent is removed.
//!
//! So no output is ever visible without a chained record that names it,
//! and no cache entry points at a run without one. Throughout, from before
//! the inputs are hashed to the end of 5, the run holds its mount locks
//! ([`crate::mount_locks`]), so no other runner of the state directory
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
//! This module owns the journal's format and the repair; it never runs a
//! step and never sees a secret value.

use crate::fsutil;
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

/// Step 6: the run is done; its intent goes.
pub fn finish(state: &Path, run: &str) -> io::Result<()> {
    match std::fs::remove_file(intent_path(state, run)) {
        Ok(()) => fsutil::sync_dir(&journal_dir(state)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
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
/// never removes the staging of a run that is still going. Dropping it
/// removes the lock file.
#[derive(Debug)]
pub struct StagingLock {
    path: PathBuf,
    _file: File,
}

impl Drop for StagingLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Takes the lock of the staging root `root` (created if needed).
pub fn lock_staging(root: &Path) -> io::Result<StagingLock> {
    fsutil::create_private_dir(root)?;
    let path = lock_path(root);
    let f = File::create(&path)?;
    f.lock()?;
    Ok(StagingLock { path, _file: f })
}

fn lock_path(root: &Path) -> PathBuf {
    let mut name = root.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Whether a live run holds `root`'s lock.
/// Fails safe: only a lock file that is absent, or that opens and locks,
/// says the run is gone; anything else counts as live and is left alone.
fn is_live(root: &Path) -> bool {
    match File::open(lock_path(root)) {
        Ok(f) => match f.try_lock() {
            Ok(()) => false,
            Err(std::fs::TryLockError::WouldBlock) => true,
            Err(std::fs::TryLockError::Error(_)) => true,
        },
        Err(e) => e.kind() != io::ErrorKind::NotFound,
    }
}

/// What repair found and did (or, dry, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repair {
    /// An intent whose record is chained: publication completed.
    RolledForward {
        /// The run.
        run: String,
        /// Trees published now (the others were already in place).
        published: usize,
    },
    /// An intent without a record: nothing was visible; staging removed.
    RolledBack {
        /// The run.
        run: String,
    },
    /// A staging root no live run holds and no intent names: removed.
    LeftoverStaging {
        /// The directory.
        path: PathBuf,
    },
    /// A `.NAME.cordon-new-*` or `.NAME.cordon-old-*` tree beside a
    /// published output: removed.
    LeftoverSwap {
        /// The directory.
        path: PathBuf,
    },
    /// A record file the chain does not list (its runner stopped between
    /// writing it and chaining it): moved to `records/orphaned/`.
    Orphaned {
        /// The run.
        run: String,
    },
    /// An action-cache entry for a run without a chained record, or a
    /// damaged one: removed (the step simply runs again next time).
    StaleCacheEntry {
        /// The entry file.
        path: PathBuf,
    },
    /// Something repair will not decide by itself.
    NeedsHand {
        /// What it is.
        subject: String,
        /// Why, and what to do.
        problem: String,
    },
}

impl std::fmt::Display for Repair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Run ids, guest paths and host paths come from journal and record
        // files anyone who can write the state directory can edit: every
        // one is escaped before it reaches a terminal or a repair record.
        use crate::sanitize::escape_for_terminal as esc;
        let path = |p: &Path| esc(&p.display().to_string());
        match self {
            Repair::RolledForward { run, published } => write!(
                f,
                "run {}: its record is chained; publication completed ({published} output tree{} published now)",
                esc(run),
                if *published == 1 { "" } else { "s" }
            ),
            Repair::RolledBack { run } => write!(
                f,
                "run {}: stopped before its record was written; nothing had been published; its staging was removed",
                esc(run)
            ),
            Repair::LeftoverStaging { path: p } => {
                write!(f, "leftover staging {} of a stopped run: removed", path(p))
            }
            Repair::LeftoverSwap { path: p } => {
                write!(f, "leftover publication tree {}: removed", path(p))
            }
            Repair::Orphaned { run } => write!(
                f,
                "record {} is not in the chain (its runner stopped before chaining it): moved to records/orphaned/",
                esc(run)
            ),
            Repair::StaleCacheEntry { path: p } => write!(
                f,
                "cache entry {} points at a run without a chained record (or is damaged): removed",
                path(p)
            ),
            Repair::NeedsHand { subject, problem } => {
                write!(f, "{}: {}", esc(subject), esc(problem))
            }
        }
    }
}

/// Finds unfinished runs and leftovers in `state` and, unless `dry_run`,
/// completes or rolls back each. `chained(run)` says whether the run's
/// record is in the chain. A tree already moved into place is recognised
/// by the digest the intent holds.
pub fn repair(
    state: &Path,
    dry_run: bool,
    chained: &dyn Fn(&str) -> bool,
) -> io::Result<Vec<Repair>> {
    let mut done = Vec::new();
    let (intents, damaged) = pending(state)?;
    for p in damaged {
        done.push(Repair::NeedsHand {
            subject: p.display().to_string(),
            problem: "is not a journal intent a runner wrote; look at it, then remove it".into(),
        });
    }
    let mut named: Vec<PathBuf> = Vec::new();
    for intent in intents {
        named.push(intent.staging.clone());
        if is_live(&intent.staging) {
            continue;
        }
        if chained(&intent.run) {
            // Completing a publication is publishing: it needs the
            // destinations' exclusive locks, like a run (see
            // `mount_locks`). It does not wait for them: repair holds the
            // chain lock, which the live run holding them needs to finish.
            let _locks = if dry_run {
                None
            } else {
                let locks = crate::mount_locks::lock_order(
                    intent
                        .trees
                        .iter()
                        .map(|t| (t.dest.clone(), crate::mount_locks::LockMode::Exclusive)),
                );
                let no_wait = std::sync::atomic::AtomicBool::new(true);
                match crate::mount_locks::acquire(state, &locks, Some(&no_wait), &mut |_| {}) {
                    Ok(held) => Some(held),
                    Err(crate::mount_locks::LockError::Cancelled { path }) => {
                        done.push(Repair::NeedsHand {
                            subject: format!("run {}", intent.run),
                            problem: format!(
                                "a running run holds {}; run `cordon repair` again once it has finished",
                                path.display()
                            ),
                        });
                        continue;
                    }
                    Err(e) => return Err(io::Error::other(e)),
                }
            };
            let mut published = 0;
            let mut problems = Vec::new();
            for t in &intent.trees {
                if t.staged.is_dir() {
                    published += 1;
                    if !dry_run && let Err(e) = crate::outputs::publish_one(&t.staged, &t.dest) {
                        problems.push(format!("{}: {e}", t.guest));
                    }
                } else {
                    // Already moved: the destination holds the tree the
                    // record names, or the kill came between moving the
                    // staged tree beside the destination and exchanging
                    // it in, and it waits there as `.NAME.cordon-new-*`.
                    let in_place = crate::digest::tree(&t.dest)
                        .is_ok_and(|tree| tree.digest.to_string() == t.tree);
                    if in_place {
                        continue;
                    }
                    match incoming_tree(&t.dest, &t.tree) {
                        Some(incoming) => {
                            published += 1;
                            if !dry_run
                                && let Err(e) = crate::outputs::publish_one(&incoming, &t.dest)
                            {
                                problems.push(format!("{}: {e}", t.guest));
                            }
                        }
                        None => problems.push(format!(
                            "{} ({}) holds another tree than the record names, and no staged copy is left",
                            t.guest,
                            t.dest.display()
                        )),
                    }
                }
            }
            if !problems.is_empty() {
                done.push(Repair::NeedsHand {
                    subject: format!("run {}", intent.run),
                    problem: format!(
                        "cannot complete its publication: {}; the journal entry is kept",
                        problems.join("; ")
                    ),
                });
                continue;
            }
            if !dry_run {
                let _ = crate::outputs::check::remove_tree(&intent.staging);
                let _ = std::fs::remove_file(lock_path(&intent.staging));
                finish(state, &intent.run)?;
            }
            done.push(Repair::RolledForward {
                run: intent.run,
                published,
            });
        } else {
            if !dry_run {
                let _ = crate::outputs::check::remove_tree(&intent.staging);
                let _ = std::fs::remove_file(lock_path(&intent.staging));
                finish(state, &intent.run)?;
            }
            done.push(Repair::RolledBack { run: intent.run });
        }
    }
    // Staging roots of runs that stopped without an intent.
    if let Ok(entries) = std::fs::read_dir(state.join("staging")) {
        let mut roots: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect();
        roots.sort();
        for root in roots {
            if named.contains(&root) || is_live(&root) {
                continue;
            }
            if !dry_run {
                crate::outputs::check::remove_tree(&root)?;
                let _ = std::fs::remove_file(lock_path(&root));
            }
            done.push(Repair::LeftoverStaging { path: root });
        }
    }
    Ok(done)
}

/// Everything `cordon repair` does to a state directory, in order: under
/// the chain lock (so no runner is between writing a record and chaining
/// it), records outside the chain are moved to `records/orphaned/`; then
/// unfinished runs are rolled forward or back ([`repair`]); then leftover
/// publication trees beside every output a record names are removed.
/// With `dry_run`, nothing changes and the same list is returned.
pub fn repair_state(state: &Path, dry_run: bool) -> io::Result<Vec<Repair>> {
    let records_dir = state.join("records");
    let mut done = Vec::new();
    let _lock = if records_dir.join(crate::chain::LOCK_FILE).exists() {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(records_dir.join(crate::chain::LOCK_FILE))?;
        f.lock()?;
        Some(f)
    } else {
        None
    };
    let chained: std::collections::BTreeSet<String> = crate::chain::read_lines(&records_dir)?
        .iter()
        .filter_map(|l| crate::chain::LogEntry::parse(l).ok())
        .map(|e| e.run)
        .collect();
    let on_disk = if records_dir.is_dir() {
        crate::verify::record_files(&records_dir)?
    } else {
        Default::default()
    };
    for run in on_disk.difference(&chained) {
        let aside = records_dir.join("orphaned");
        if !dry_run {
            fsutil::create_private_dir(&aside)?;
            for name in [format!("{run}.json"), format!("{run}.dsse.json")] {
                let from = records_dir.join(&name);
                if from.exists() {
                    std::fs::rename(&from, aside.join(&name))?;
                }
            }
            fsutil::sync_dir(&records_dir)?;
        }
        done.push(Repair::Orphaned { run: run.clone() });
    }
    done.extend(repair(state, dry_run, &|run| chained.contains(run))?);
    // Cache entries that point at a run without a chained record (left by
    // an older runner, or whose record was just moved aside) or that are
    // damaged.
    for path in crate::cache::ActionCache::new(state).stale_entries(&|run| chained.contains(run))? {
        if !dry_run {
            std::fs::remove_file(&path)?;
        }
        done.push(Repair::StaleCacheEntry { path });
    }
    // Every host path a record publishes to.
    let mut outputs = Vec::new();
    for run in &chained {
        let path = crate::chain::record_path(&records_dir, run);
        let Ok(text) = fsutil::read_regular_to_string(&path, 64 << 20) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        for m in v["mounts"].as_array().into_iter().flatten() {
            if m["access"] == "write"
                && let Some(h) = m["host"].as_str()
            {
                outputs.push(PathBuf::from(h));
            }
        }
    }
    outputs.sort();
    outputs.dedup();
    done.extend(sweep_swaps(&outputs, dry_run)?);
    Ok(done)
}

/// A `.NAME.cordon-new-*` tree beside `dest` whose digest is `tree`: a
/// staged output moved next to its destination by a runner killed before
/// the exchange.
fn incoming_tree(dest: &Path, tree: &str) -> Option<PathBuf> {
    let parent = dest.parent()?;
    let prefix = format!(".{}.cordon-new-", dest.file_name()?.to_string_lossy());
    std::fs::read_dir(parent)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .find(|p| crate::digest::tree(p).is_ok_and(|t| t.digest.to_string() == tree))
}

/// Removes `.NAME.cordon-new-*` / `.NAME.cordon-old-*` trees beside each of
/// `outputs` (the host paths records publish to), unless `dry_run`.
pub fn sweep_swaps(outputs: &[PathBuf], dry_run: bool) -> io::Result<Vec<Repair>> {
    let mut done = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for dest in outputs {
        let (Some(parent), Some(name)) = (dest.parent(), dest.file_name()) else {
            continue;
        };
        let name = name.to_string_lossy();
        let prefixes = [
            format!(".{name}.cordon-new-"),
            format!(".{name}.cordon-old-"),
        ];
        let Ok(entries) = std::fs::read_dir(parent) else {
            continue;
        };
        for e in entries.filter_map(|e| e.ok()) {
            let n = e.file_name().to_string_lossy().into_owned();
            if prefixes.iter().any(|p| n.starts_with(p.as_str())) && seen.insert(e.path()) {
                if !dry_run {
                    crate::outputs::check::remove_tree(&e.path())?;
                }
                done.push(Repair::LeftoverSwap { path: e.path() });
            }
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(state: &Path, run: &str, dest: &Path) -> Intent {
        let staging = state.join("staging").join(run);
        let staged = staging.join("0-out");
        std::fs::create_dir_all(&staged).unwrap();
        std::fs::write(staged.join("a.txt"), b"new").unwrap();
        let tree = crate::digest::tree(&staged).unwrap().digest.to_string();
        Intent {
            run: run.into(),
            staging,
            trees: vec![StagedTree {
                guest: "/out".into(),
                staged,
                dest: dest.to_path_buf(),
                tree,
            }],
        }
    }

    #[test]
    fn an_intent_without_a_record_is_rolled_back_and_nothing_is_published() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("out");
        let i = intent(d.path(), "r1", &dest);
        begin(d.path(), &i).unwrap();
        let dry = repair(d.path(), true, &|_| false).unwrap();
        assert_eq!(dry, vec![Repair::RolledBack { run: "r1".into() }]);
        assert!(i.staging.exists(), "a dry run changes nothing");
        repair(d.path(), false, &|_| false).unwrap();
        assert!(!dest.exists() && !i.staging.exists());
        assert!(pending(d.path()).unwrap().0.is_empty());
    }

    #[test]
    fn an_intent_with_its_record_is_rolled_forward() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("out");
        let i = intent(d.path(), "r1", &dest);
        begin(d.path(), &i).unwrap();
        let done = repair(d.path(), false, &|r| r == "r1").unwrap();
        assert_eq!(
            done,
            vec![Repair::RolledForward {
                run: "r1".into(),
                published: 1
            }]
        );
        assert_eq!(std::fs::read(dest.join("a.txt")).unwrap(), b"new");
        assert!(pending(d.path()).unwrap().0.is_empty());
        // Killed after publishing, before finishing: found complete.
        let i = intent(d.path(), "r2", &dest);
        begin(d.path(), &i).unwrap();
        crate::outputs::publish_one(&i.trees[0].staged, &dest).unwrap();
        let done = repair(d.path(), false, &|_| true).unwrap();
        assert_eq!(
            done,
            vec![Repair::RolledForward {
                run: "r2".into(),
                published: 0
            }]
        );
    }

    #[test]
    fn a_run_killed_between_moving_its_tree_beside_the_output_and_exchanging_it_is_completed() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("out");
        std::fs::create_dir(&dest).unwrap();
        std::fs::write(dest.join("old.txt"), b"old").unwrap();
        let i = intent(d.path(), "r1", &dest);
        begin(d.path(), &i).unwrap();
        // What the first rename of `publish_one` leaves.
        let incoming = d.path().join(".out.cordon-new-1-0");
        std::fs::rename(&i.trees[0].staged, &incoming).unwrap();
        let done = repair(d.path(), false, &|_| true).unwrap();
        assert_eq!(
            done,
            vec![Repair::RolledForward {
                run: "r1".into(),
                published: 1
            }]
        );
        assert_eq!(std::fs::read(dest.join("a.txt")).unwrap(), b"new");
        assert!(!dest.join("old.txt").exists());
    }

    #[test]
    fn the_staging_of_a_live_run_is_never_removed() {
        let d = tempfile::tempdir().unwrap();
        let live = d.path().join("staging").join("live");
        let _lock = lock_staging(&live).unwrap();
        let dead = d.path().join("staging").join("dead");
        std::fs::create_dir_all(&dead).unwrap();
        let done = repair(d.path(), false, &|_| false).unwrap();
        assert_eq!(done, vec![Repair::LeftoverStaging { path: dead.clone() }]);
        assert!(live.exists() && !dead.exists());
    }

    #[test]
    fn names_from_the_state_directory_are_escaped_when_shown() {
        let shown = Repair::RolledBack {
            run: "r\u{1b}[2Jx\rcordon: ok".into(),
        }
        .to_string();
        assert!(
            !shown.contains('\u{1b}') && !shown.contains('\r'),
            "{shown}"
        );
        let shown = Repair::NeedsHand {
            subject: "run \u{202e}x".into(),
            problem: "a\nb".into(),
        }
        .to_string();
        assert!(
            !shown.contains('\u{202e}') && !shown.contains('\n'),
            "{shown}"
        );
    }

    #[test]
    fn a_damaged_intent_is_reported_not_guessed_at() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join(JOURNAL_DIR)).unwrap();
        std::fs::write(d.path().join(JOURNAL_DIR).join("x.json"), b"{not json").unwrap();
        let done = repair(d.path(), false, &|_| false).unwrap();
        assert!(matches!(done[0], Repair::NeedsHand { .. }), "{done:?}");
    }
}
