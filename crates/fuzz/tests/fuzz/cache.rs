//! Action-cache entries, through the public cache: what a hit restores is
//! chosen by an entry file, and the record it points at, that anyone with
//! write access to the state directory (or, pulled, the shared bucket) may
//! have written. A hit is served only from a checked entry whose record
//! says it ran exactly the action the entry is filed under.

use crate::mutate;
use crate::records::step_record;
use cordon_engine::cache::{ActionCache, ActionEntry, ActionKeys, KeyDocument};
use cordon_engine::cas::{is_blob_name, is_tree_path};
use cordon_manifest::manifest::Sha256Digest;
use cordon_record::record::StepRecord;
use proptest::prelude::*;
use std::path::{Path, PathBuf};

const RUN: &str = "20260101T000000.000Z-train-0123abcd";

fn record() -> StepRecord {
    serde_json::from_value(step_record()).unwrap()
}

fn keys() -> ActionKeys {
    KeyDocument::for_record(&record()).unwrap().keys()
}

fn entry(record: &Path) -> serde_json::Value {
    serde_json::json!({
        "key": keys().local.0.to_string(),
        "run_id": RUN,
        "record": record,
        // The write mount and tree the record names.
        "outputs": [{"guest": "/out", "tree": Sha256Digest::of(b"tree").to_string(), "entries": [
            {"path": "sub", "kind": "dir", "size": 0},
            {"path": "sub/model.json", "kind": "file", "size": 2,
             "sha256": Sha256Digest::of(b"{}").hex()},
        ]}],
        "report": {"metrics": {"loss": 0.5}, "annotations": {}, "dropped": 0},
    })
}

/// A state directory whose record is `record` (bytes) and whose entry is
/// what `entry_bytes` makes of the record's path, with the entry's blob
/// stored.
fn state(
    record: &[u8],
    entry_bytes: impl FnOnce(&Path) -> Vec<u8>,
) -> (tempfile::TempDir, ActionCache, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let cache = ActionCache::new(d.path());
    cache.cas().put(b"{}").unwrap();
    let record_file = d.path().join("r.json");
    std::fs::write(&record_file, record).unwrap();
    let entry_file = d
        .path()
        .join("cache/actions")
        .join(format!("{}.json", keys().local.0.hex()));
    std::fs::create_dir_all(entry_file.parent().unwrap()).unwrap();
    std::fs::write(&entry_file, entry_bytes(&record_file)).unwrap();
    (d, cache, record_file)
}

fn check_hit(cache: &ActionCache, e: &ActionEntry) -> Result<(), TestCaseError> {
    prop_assert_eq!(&e.key, &keys().local.0.to_string());
    prop_assert!(cordon_record::chain::is_run_id(&e.run_id));
    for o in &e.outputs {
        prop_assert!(Sha256Digest::parse(&o.tree).is_ok());
        for c in &o.entries {
            prop_assert!(is_tree_path(&c.path));
            if let Some(h) = &c.sha256 {
                prop_assert!(is_blob_name(h) && cache.cas().has_blob(h));
            }
        }
    }
    Ok(())
}

fn default_entry(record: &Path) -> Vec<u8> {
    serde_json::to_vec(&entry(record)).unwrap()
}

#[test]
fn the_seed_is_a_hit() {
    let (_d, cache, _) = state(&record().to_bytes(), default_entry);
    assert!(cache.get(&keys()).unwrap().is_some());
}

proptest! {
    #![proptest_config(crate::config(128))]

    #[test]
    fn a_mutated_entry_is_a_checked_hit_a_miss_or_damaged(
        bytes in mutate::json(entry(Path::new("RECORD"))),
    ) {
        // The entry points at the record wherever the seed said RECORD.
        let (_d, cache, _) = state(&record().to_bytes(), |record_file| {
            String::from_utf8_lossy(&bytes)
                .replace("RECORD", record_file.to_str().unwrap())
                .into_bytes()
        });
        match cache.get(&keys()) {
            Ok(Some(e)) => check_hit(&cache, &e)?,
            Ok(None) => {}
            Err(damaged) => { let _ = damaged.to_string(); }
        }
        prop_assert!(cache.stale_entries(&|run| run == RUN).unwrap().len() <= 1);
    }

    #[test]
    fn an_entry_whose_record_was_changed_is_a_hit_only_for_the_same_action(
        bytes in mutate::json(step_record()),
    ) {
        let (_d, cache, _) = state(&bytes, default_entry);
        match cache.get(&keys()) {
            Ok(Some(e)) => {
                check_hit(&cache, &e)?;
                // What the changed record says ran is what the entry is
                // filed under, fact for fact; host paths aside, since a
                // record another machine shared proves the shared key.
                let changed: StepRecord = serde_json::from_slice(&bytes).unwrap();
                // And it restores only trees the record says it wrote.
                for o in &e.outputs {
                    prop_assert!(changed.mounts.iter().any(|m| m.guest == o.guest
                        && m.access == cordon_manifest::manifest::Access::Write
                        && m.after.as_ref().is_some_and(|t| t.sha256.to_string() == o.tree)));
                }
                let without_hosts = |mut doc: KeyDocument| {
                    for m in &mut doc.mounts {
                        m.host = None;
                    }
                    doc
                };
                prop_assert_eq!(
                    without_hosts(KeyDocument::for_record(&changed).unwrap()),
                    without_hosts(KeyDocument::for_record(&record()).unwrap())
                );
            }
            Ok(None) => prop_assert!(false, "every blob is stored"),
            Err(damaged) => { let _ = damaged.to_string(); }
        }
    }

    #[test]
    fn a_valid_entry_round_trips_through_the_cache(
        paths in proptest::collection::vec("[a-z0-9._-]{1,8}(/[a-z0-9é_-]{1,8}){0,2}", 1..4),
        report in mutate::json_value(),
    ) {
        prop_assume!(paths.iter().all(|p| is_tree_path(p)));
        let (_d, cache, record_file) = state(&record().to_bytes(), default_entry);
        let blob = Sha256Digest::of(b"{}");
        let files: Vec<serde_json::Value> = paths
            .iter()
            .map(|p| serde_json::json!({"path": p, "kind": "file", "size": 2, "sha256": blob.hex()}))
            .collect();
        let entry: ActionEntry = serde_json::from_value(serde_json::json!({
            "key": keys().local.0.to_string(),
            "run_id": RUN,
            "record": record_file,
            "outputs": [{"guest": "/out", "tree": Sha256Digest::of(b"tree").to_string(), "entries": files}],
            "report": report,
        }))
        .unwrap();
        cache.put(&keys().local, &entry).unwrap();
        let back = cache.get(&keys()).unwrap().expect("a hit");
        prop_assert_eq!(serde_json::to_value(&back).unwrap(), serde_json::to_value(&entry).unwrap());
    }
}
