//! Journal intents: what a killed runner left for the next command to
//! roll forward or back. Anyone who can write the state directory can
//! leave any bytes there.

use crate::mutate;
use cordon_record::journal::{self, Intent};
use proptest::prelude::*;

const RUN: &str = "20260101T000000.000Z-train-0123abcd";

fn intent() -> serde_json::Value {
    serde_json::json!({
        "run": RUN,
        "staging": "/s/staging/r",
        "trees": [{"guest": "/out", "staged": "/s/staging/r/out", "dest": "/w/out",
                   "tree": cordon_manifest::manifest::Sha256Digest::of(b"t").to_string()}],
    })
}

proptest! {
    #![proptest_config(crate::config(128))]

    #[test]
    fn a_mutated_intent_is_read_or_named_as_damaged(bytes in mutate::json(intent())) {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join(journal::JOURNAL_DIR)).unwrap();
        let file = d.path().join(journal::JOURNAL_DIR).join(format!("{RUN}.json"));
        std::fs::write(&file, &bytes).unwrap();
        let (intents, damaged) = journal::pending(d.path()).unwrap();
        prop_assert_eq!(intents.len() + damaged.len(), 1);
        for i in &intents {
            // An intent is only ever taken for the run its file is named after.
            prop_assert_eq!(&i.run, RUN);
        }
        let _ = journal::unfinished(d.path()).unwrap();
    }

    #[test]
    fn any_intent_round_trips_through_the_journal(
        trees in proptest::collection::vec(
            (mutate::string(), mutate::string(), mutate::string(), mutate::string()),
            0..3,
        ),
        staging in mutate::string(),
    ) {
        let d = tempfile::tempdir().unwrap();
        // Built from JSON, so that fields added later with defaults need
        // no change here.
        let trees: Vec<serde_json::Value> = trees
            .into_iter()
            .map(|(guest, staged, dest, tree)| {
                serde_json::json!({"guest": guest, "staged": staged, "dest": dest, "tree": tree})
            })
            .collect();
        let intent: Intent = serde_json::from_value(
            serde_json::json!({"run": RUN, "staging": staging, "trees": trees}),
        )
        .unwrap();
        journal::begin(d.path(), &intent).unwrap();
        let (intents, damaged) = journal::pending(d.path()).unwrap();
        prop_assert!(damaged.is_empty());
        prop_assert_eq!(intents, vec![intent]);
    }
}
