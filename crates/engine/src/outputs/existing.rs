//! What a `write` mount's host directory holds before a run replaces it.
//!
//! Publishing a `write` mount replaces its host directory whole (see the
//! parent module). The invariant this module keeps: **nothing is replaced
//! that no record can bring back.** Before a run, each write mount's host
//! directory is one of:
//!
//! - absent or empty: nothing to lose;
//! - exactly a tree that a recorded run (or a recorded restore) published
//!   at that path: its files are in the content store and its record names
//!   them, so `cordon restore` brings it back, and replacing it stays silent;
//! - anything else (a file a user put there, an edited output, a tree from
//!   elsewhere): **unrecorded**. The run is refused before anything runs,
//!   naming the mount, up to [`MAX_LISTED`] of the unknown paths and the
//!   fix, unless the mount says `existing = "keep"`: the tree is then put
//!   into the content store first and the run's record names it as
//!   `replaced` (`cordon restore --run RUN --replaced` brings it back).
//!
//! Which record published a tree at a path is looked up through a hint,
//! `<state>/published/<sha256 of the host path>`, holding the run id of
//! the last publication there. The hint is never trusted by itself: the
//! record it names is read and must list that path with that tree digest.
//! A missing or stale hint (a runner killed between publishing and writing
//! it, an older state directory) costs one scan of the records, newest
//! first, and the hint is written again. So the hint is written without a
//! flush of its own.
//!
//! A host path that exists but is not a directory is refused whatever the
//! mount says: a directory cannot be published over it without destroying
//! it, and a user put it there.
//!
//! Every path this module reports comes from a directory a user or a step
//! wrote; it is escaped for the terminal where it is shown.

use cordon_core::digest::{self, Entry, EntryKind, HashIndex, Tree};
use cordon_core::sanitize::escape_for_terminal;
use cordon_manifest::manifest::Access;
use cordon_manifest::plan::StepPlan;
use cordon_record::record::{TreeRecord, published_trees};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// How many unknown paths a refusal names (the rest are counted).
pub const MAX_LISTED: usize = 10;

/// Largest record read while looking for the one that published a tree
/// (as `restore` reads them).
const MAX_RECORD_BYTES: u64 = cordon_record::record::MAX_RECORD_BYTES;

/// The hints' directory inside a state directory.
const PUBLISHED_DIR: &str = "published";

/// What a write mount's host directory holds.
#[derive(Debug)]
pub enum Holding {
    /// Nothing: absent, or an empty directory.
    Nothing,
    /// Exactly the tree a recorded run or restore published there.
    Recorded {
        /// The run (or restore) whose record names it.
        run: String,
    },
    /// Something no record names.
    Unrecorded(Unrecorded),
}

/// A host directory's contents that no record names.
#[derive(Debug)]
pub struct Unrecorded {
    /// The tree as it is now.
    pub tree: Tree,
    /// Up to [`MAX_LISTED`] paths (inside the directory) that differ from
    /// the last tree recorded there, or that are there at all when none
    /// was; escaped for the terminal.
    pub listed: Vec<String>,
    /// How many paths differ in all.
    pub count: usize,
}

/// Why a run is refused before anything runs: write mounts that hold
/// data no record can bring back.
#[derive(Debug, thiserror::Error)]
pub enum ExistingError {
    /// Unrecorded data in one or more write mounts.
    #[error("{}", describe(.0))]
    Unrecorded(Vec<Refusal>),
    /// A host directory could not be read or hashed (fails closed).
    #[error("cannot tell what write mount {guest} of step {step} ({}) holds: {source}", escape_for_terminal(&host.display().to_string()))]
    Unreadable {
        /// The step.
        step: String,
        /// The guest path.
        guest: String,
        /// The host path.
        host: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// One write mount that would destroy unrecorded data.
#[derive(Debug)]
pub struct Refusal {
    /// The step.
    pub step: String,
    /// Its manifest.
    pub manifest: PathBuf,
    /// Where the mount's `host` is written in it.
    pub at: cordon_manifest::manifest::Location,
    /// The guest path.
    pub guest: String,
    /// The host path.
    pub host: PathBuf,
    /// What is there: `None` when the host path is not a directory.
    pub unrecorded: Option<Unrecorded>,
}

fn describe(refusals: &[Refusal]) -> String {
    let mut out = Vec::new();
    for r in refusals {
        let host = escape_for_terminal(&r.host.display().to_string());
        let manifest = format!(
            "{}:{}:{}",
            escape_for_terminal(&r.manifest.display().to_string()),
            r.at.line,
            r.at.column
        );
        match &r.unrecorded {
            None => {
                out.push(format!(
                    "{manifest}: step `{}`: write mount {} ({host}) is not a directory; publishing the step's output there would destroy it",
                    r.step, r.guest
                ));
                out.push(format!(
                    "  fix: move {host} out of the way, or point the mount's `host` at a directory"
                ));
            }
            Some(u) => {
                out.push(format!(
                    "{manifest}: step `{}`: write mount {} ({host}) holds {} that no recorded run published there; publishing the step's output would replace {}:",
                    r.step,
                    r.guest,
                    match u.count {
                        1 => "a path".to_string(),
                        n => format!("{n} paths"),
                    },
                    if u.count == 1 { "it" } else { "them" }
                ));
                for p in &u.listed {
                    out.push(format!("    {p}"));
                }
                if u.count > u.listed.len() {
                    out.push(format!("    … and {} more", u.count - u.listed.len()));
                }
                out.push(format!(
                    "  fix: move them out of {host}, or add `existing = \"keep\"` to this [[mount]] to keep them in the content store before they are replaced (`cordon restore --run RUN --replaced` brings them back)"
                ));
            }
        }
    }
    out.join("\n")
}

/// What `host`, the host directory of a write mount, holds now, for the
/// state directory `state`. Hashes the directory (through `index`, so
/// unchanged files are not read again).
pub fn inspect(state: &Path, host: &Path, index: Option<&HashIndex>) -> io::Result<Inspected> {
    let meta = match std::fs::symlink_metadata(host) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Inspected::Holding(Holding::Nothing));
        }
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        return Ok(Inspected::NotDirectory);
    }
    let tree = digest::tree_with(host, index)?;
    if tree.entries.is_empty() {
        return Ok(Inspected::Holding(Holding::Nothing));
    }
    let records = state.join("records");
    // The hint first: one record read.
    if let Some(run) = read_hint(state, host)
        && let Some(bytes) = read_record(&records, &run)
        && publishes(&bytes, host, &tree)
    {
        return Ok(Inspected::Holding(Holding::Recorded { run }));
    }
    // Then every record, newest first.
    let mut newest_here: Option<TreeRecord> = None;
    for run in record_ids_newest_first(&records)? {
        let Some(bytes) = read_record(&records, &run) else {
            continue;
        };
        for (h, t) in published_trees(&bytes) {
            if h != host {
                continue;
            }
            if t.sha256 == tree.digest {
                remember(state, host, &run);
                return Ok(Inspected::Holding(Holding::Recorded { run }));
            }
            if newest_here.is_none() {
                newest_here = Some(t);
            }
        }
    }
    let differing = differing_paths(newest_here.as_ref(), &tree);
    Ok(Inspected::Holding(Holding::Unrecorded(Unrecorded {
        count: differing.len(),
        listed: differing
            .into_iter()
            .take(MAX_LISTED)
            .map(|p| escape_for_terminal(&p))
            .collect(),
        tree,
    })))
}

/// What [`inspect`] found at a host path.
#[derive(Debug)]
pub enum Inspected {
    /// A directory, or nothing.
    Holding(Holding),
    /// Something that is not a directory.
    NotDirectory,
}

/// Checks every write mount of `plans` before anything runs: `Ok` with
/// nothing to refuse, or every mount that holds unrecorded data without
/// `existing = "keep"` (and every host path that is not a directory).
pub fn refuse_unrecorded(
    plans: &[StepPlan],
    index: Option<&HashIndex>,
) -> Result<(), ExistingError> {
    let mut refusals = Vec::new();
    for plan in plans {
        for m in plan.mounts.iter().filter(|m| m.access == Access::Write) {
            let found = inspect(&plan.state_dir, &m.host, index).map_err(|source| {
                ExistingError::Unreadable {
                    step: plan.name.clone(),
                    guest: m.guest.clone(),
                    host: m.host.clone(),
                    source,
                }
            })?;
            let unrecorded = match found {
                Inspected::NotDirectory => None,
                Inspected::Holding(Holding::Unrecorded(u)) if !m.keep_existing => Some(u),
                Inspected::Holding(_) => continue,
            };
            refusals.push(Refusal {
                step: plan.name.clone(),
                manifest: plan.manifest_path.clone(),
                at: m.host_at,
                guest: m.guest.clone(),
                host: m.host.clone(),
                unrecorded,
            });
        }
    }
    if refusals.is_empty() {
        Ok(())
    } else {
        Err(ExistingError::Unrecorded(refusals))
    }
}

/// Notes that run `run`'s record names the tree now published at `host`
/// (a hint for [`inspect`]; see the module doc for why it is not flushed).
/// Failing to write it costs a scan of the records later, nothing else.
pub fn remember(state: &Path, host: &Path, run: &str) {
    let dir = state.join(PUBLISHED_DIR);
    let _ = cordon_core::fsutil::create_private_dir(&dir).and_then(|()| {
        cordon_core::fsutil::replace_unsynced(&hint_path(state, host), run.as_bytes())
    });
}

fn hint_path(state: &Path, host: &Path) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let name = cordon_manifest::manifest::Sha256Digest::of(host.as_os_str().as_bytes());
    state.join(PUBLISHED_DIR).join(name.hex())
}

fn read_hint(state: &Path, host: &Path) -> Option<String> {
    let bytes = cordon_core::fsutil::read_regular(&hint_path(state, host), 256).ok()?;
    let run = String::from_utf8(bytes).ok()?;
    cordon_record::chain::is_run_id(&run).then_some(run)
}

fn read_record(records: &Path, run: &str) -> Option<Vec<u8>> {
    cordon_core::fsutil::read_regular(
        &cordon_record::chain::record_path(records, run),
        MAX_RECORD_BYTES,
    )
    .ok()
}

/// Whether the record `bytes` says it published `tree` at `host`.
fn publishes(bytes: &[u8], host: &Path, tree: &Tree) -> bool {
    published_trees(bytes)
        .iter()
        .any(|(h, t)| h == host && t.sha256 == tree.digest)
}

/// The run ids of the record files in `records`, newest first (run ids
/// start with their UTC time). A missing directory holds none.
fn record_ids_newest_first(records: &Path) -> io::Result<Vec<String>> {
    let mut ids: Vec<String> = match cordon_record::verify::record_files(records) {
        Ok(ids) => ids.into_iter().collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    ids.reverse();
    Ok(ids)
}

/// The paths of `now` that are not in `recorded` with the same content,
/// and those of `recorded` that are gone; every path of `now` without a
/// recorded tree. Directories that only hold such paths are not listed
/// themselves.
fn differing_paths(recorded: Option<&TreeRecord>, now: &Tree) -> Vec<String> {
    let identity = |e: &Entry| match (&e.kind, &e.sha256) {
        (_, Some(h)) => format!("file {h}"),
        (EntryKind::Symlink { target }, _) => format!("link {target}"),
        (EntryKind::Dir, _) => "dir".into(),
        _ => "other".into(),
    };
    let before: BTreeMap<&str, String> = recorded
        .and_then(|r| r.entries.as_deref())
        .unwrap_or_default()
        .iter()
        .map(|e| (e.path.as_str(), identity(e)))
        .collect();
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for e in &now.entries {
        seen.insert(e.path.as_str());
        if e.kind == EntryKind::Dir {
            continue;
        }
        match before.get(e.path.as_str()) {
            Some(id) if *id == identity(e) => {}
            Some(_) => out.push(format!("{} (changed)", e.path)),
            None => out.push(e.path.clone()),
        }
    }
    for (p, id) in &before {
        if id != "dir" && !seen.contains(p) {
            out.push(format!("{p} (removed)"));
        }
    }
    // An empty directory a user made counts too.
    if out.is_empty() {
        out.extend(
            now.entries
                .iter()
                .filter(|e| e.kind == EntryKind::Dir && !before.contains_key(e.path.as_str()))
                .map(|e| format!("{}/", e.path)),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree_of(entries: &[(&str, &str)]) -> (tempfile::TempDir, Tree) {
        let d = tempfile::tempdir().unwrap();
        for (p, c) in entries {
            let path = d.path().join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, c).unwrap();
        }
        let t = digest::tree(d.path()).unwrap();
        (d, t)
    }

    #[test]
    fn an_absent_or_empty_directory_holds_nothing() {
        let state = tempfile::tempdir().unwrap();
        let d = tempfile::tempdir().unwrap();
        let absent = d.path().join("out");
        assert!(matches!(
            inspect(state.path(), &absent, None).unwrap(),
            Inspected::Holding(Holding::Nothing)
        ));
        std::fs::create_dir(&absent).unwrap();
        assert!(matches!(
            inspect(state.path(), &absent, None).unwrap(),
            Inspected::Holding(Holding::Nothing)
        ));
    }

    #[test]
    fn a_users_file_with_no_record_is_unrecorded_and_named() {
        let state = tempfile::tempdir().unwrap();
        let (d, _) = tree_of(&[("my-notes.txt", "mine")]);
        match inspect(state.path(), d.path(), None).unwrap() {
            Inspected::Holding(Holding::Unrecorded(u)) => {
                assert_eq!(u.count, 1);
                assert_eq!(u.listed, vec!["my-notes.txt".to_string()]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_file_where_a_directory_belongs_is_not_a_directory() {
        let state = tempfile::tempdir().unwrap();
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("out"), "a file").unwrap();
        assert!(matches!(
            inspect(state.path(), &d.path().join("out"), None).unwrap(),
            Inspected::NotDirectory
        ));
    }

    #[test]
    fn only_paths_that_differ_from_the_recorded_tree_are_listed() {
        let (_d, recorded) = tree_of(&[("model.bin", "v1"), ("sub/a.txt", "a")]);
        let (_e, now) = tree_of(&[
            ("model.bin", "v1"),
            ("sub/a.txt", "edited"),
            ("notes.txt", "n"),
        ]);
        let rec = TreeRecord {
            sha256: recorded.digest.clone(),
            files: 2,
            bytes: 3,
            entries: Some(recorded.entries.clone()),
        };
        let listed = differing_paths(Some(&rec), &now);
        assert_eq!(
            listed,
            vec!["notes.txt".to_string(), "sub/a.txt (changed)".to_string()]
        );
    }

    #[test]
    fn more_unknown_paths_than_listed_are_counted() {
        let state = tempfile::tempdir().unwrap();
        let files: Vec<(String, &str)> = (0..25).map(|i| (format!("f{i:02}"), "x")).collect();
        let refs: Vec<(&str, &str)> = files.iter().map(|(p, c)| (p.as_str(), *c)).collect();
        let (d, _) = tree_of(&refs);
        match inspect(state.path(), d.path(), None).unwrap() {
            Inspected::Holding(Holding::Unrecorded(u)) => {
                assert_eq!(u.count, 25);
                assert_eq!(u.listed.len(), MAX_LISTED);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_stale_hint_is_not_trusted() {
        let state = tempfile::tempdir().unwrap();
        let (d, _) = tree_of(&[("my-notes.txt", "mine")]);
        // A hint naming a run whose record does not exist.
        remember(state.path(), d.path(), "20260101T000000Z-a-00000000");
        assert!(matches!(
            inspect(state.path(), d.path(), None).unwrap(),
            Inspected::Holding(Holding::Unrecorded(_))
        ));
    }
}
