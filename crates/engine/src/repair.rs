//! `cordon repair`: finishing what a killed runner left in a state
//! directory, by the commit protocol of [`cordon_record::journal`]. An
//! intent without its record is rolled back (the staging removed, nothing
//! published); an intent with its record is rolled forward (publication
//! completed from the staged trees); staging of stopped runs, half-done
//! exchanges beside outputs and cache entries that point at no chained
//! record are removed.

use cordon_core::fsutil;
use cordon_record::journal::{finish, is_live, lock_path, pending};

use std::io;
use std::path::{Path, PathBuf};

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
        use cordon_core::sanitize::escape_for_terminal as esc;
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
        // A run is decided once its record is chained; a promotion once
        // its verification summary is written.
        let decided = chained(&intent.run) || intent.vsa.as_deref().is_some_and(Path::is_file);
        if decided {
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
                let no_wait = cordon_core::cancel::Cancel::new();
                no_wait.cancel();
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
                    let in_place = cordon_core::digest::tree(&t.dest)
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

/// What every command that changes a state directory does first: when a
/// stopped runner left anything behind (an intent in the journal, a
/// staging area, a record file the chain does not list), the whole of
/// [`repair_state`] runs, completing or rolling back each of them; when
/// nothing was left, it costs a listing of the journal, the staging area
/// and the records directory, and changes nothing. Live runs are never
/// touched (their staging is locked). Returns what was done.
pub fn recover(state: &Path) -> io::Result<Vec<Repair>> {
    if !state.is_dir() || !left_behind(state)? {
        return Ok(Vec::new());
    }
    repair_state(state, false)
}

/// The run ids the chain in `records_dir` lists.
fn chained_runs(records_dir: &Path) -> io::Result<std::collections::BTreeSet<String>> {
    Ok(cordon_record::chain::read_lines(records_dir)?
        .iter()
        .filter_map(|l| cordon_record::chain::LogEntry::parse(l).ok())
        .map(|e| e.run)
        .collect())
}

/// Whether anything a stopped runner could have left is there at all.
fn left_behind(state: &Path) -> io::Result<bool> {
    let non_empty = |dir: &Path| -> io::Result<bool> {
        match std::fs::read_dir(dir) {
            Ok(mut entries) => Ok(entries.next().is_some()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    };
    if non_empty(&state.join(cordon_record::journal::JOURNAL_DIR))? {
        return Ok(true);
    }
    // Staging areas of live runs are there too; `repair` leaves them be.
    if let Ok(entries) = std::fs::read_dir(state.join("staging")) {
        for e in entries {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "lock") {
                continue;
            }
            if !is_live(&p) {
                return Ok(true);
            }
        }
    }
    let records_dir = state.join("records");
    if !records_dir.is_dir() {
        return Ok(false);
    }
    // A record file the chain does not list: compared by run id, so a
    // removed file cannot hide an unchained one by keeping the counts equal.
    let chained = chained_runs(&records_dir)?;
    Ok(cordon_record::verify::record_files(&records_dir)?
        .iter()
        .any(|run| !chained.contains(run)))
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
    let _lock = if records_dir.join(cordon_record::chain::LOCK_FILE).exists() {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(records_dir.join(cordon_record::chain::LOCK_FILE))?;
        f.lock()?;
        Some(f)
    } else {
        None
    };
    let chained = chained_runs(&records_dir)?;
    let on_disk = if records_dir.is_dir() {
        cordon_record::verify::record_files(&records_dir)?
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
    // The destinations of unfinished publications (runs, restores and
    // promotions alike), taken before they are finished: a kill inside an
    // exchange leaves its swap leftover beside one of them.
    let mut outputs: Vec<PathBuf> = pending(state)?
        .0
        .iter()
        .flat_map(|i| i.trees.iter().map(|t| t.dest.clone()))
        .collect();
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
    // Every host path a chained record publishes to, read through the
    // record types.
    for run in &chained {
        let path = cordon_record::chain::record_path(&records_dir, run);
        let Ok(bytes) = fsutil::read_regular(&path, cordon_record::record::MAX_RECORD_BYTES) else {
            continue;
        };
        if let Ok(r) = serde_json::from_slice::<cordon_record::record::StepRecord>(&bytes) {
            outputs.extend(
                r.mounts
                    .into_iter()
                    .filter(|m| m.access == cordon_manifest::manifest::Access::Write)
                    .map(|m| m.host),
            );
        } else if let Ok(r) = serde_json::from_slice::<cordon_record::record::RestoreRecord>(&bytes)
        {
            outputs.extend(r.trees.into_iter().map(|t| t.host));
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
        .find(|p| cordon_core::digest::tree(p).is_ok_and(|t| t.digest.to_string() == tree))
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
    use cordon_record::journal::{Intent, JOURNAL_DIR, StagedTree, begin, lock_staging};

    fn intent(state: &Path, run: &str, dest: &Path) -> Intent {
        let staging = state.join("staging").join(run);
        let staged = staging.join("0-out");
        std::fs::create_dir_all(&staged).unwrap();
        std::fs::write(staged.join("a.txt"), b"new").unwrap();
        let tree = cordon_core::digest::tree(&staged)
            .unwrap()
            .digest
            .to_string();
        Intent {
            run: run.into(),
            staging,
            trees: vec![StagedTree {
                guest: "/out".into(),
                staged,
                dest: dest.to_path_buf(),
                tree,
            }],
            vsa: None,
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
