//! SLSA verification summaries: what a run checks before it reads a mount
//! that `requires = "promoted"`, from files under the state directory.

use crate::envelopes::{signer, trusted};
use crate::mutate;
use cordon_core::digest::{Entry, EntryKind};
use cordon_manifest::manifest::Sha256Digest;
use cordon_record::vsa::{self, Resource, Summary};
use proptest::prelude::*;

fn tree() -> Sha256Digest {
    Sha256Digest::of(b"tree")
}

fn summary() -> Summary {
    Summary {
        environment: "prod".into(),
        time_verified: "2026-01-01T00:00:00Z".into(),
        resource_uri: "file:///w/data/prod/model".into(),
        guest: "/model".into(),
        tree: tree(),
        entries: vec![Entry {
            path: "model.json".into(),
            path_hex: None,
            kind: EntryKind::File,
            size: 2,
            sha256: Some(Sha256Digest::of(b"{}").hex().to_string()),
        }],
        policy: Resource {
            uri: "promotions/prod/p.json".into(),
            sha256: Sha256Digest::of(b"p"),
        },
        inputs: vec![Resource {
            uri: "records/r.json".into(),
            sha256: Sha256Digest::of(b"r"),
        }],
        passed: true,
    }
}

fn statement() -> Vec<u8> {
    serde_json::to_vec(&vsa::statement(&summary())).unwrap()
}

fn envelope() -> serde_json::Value {
    signer(1)
        .envelope(cordon_record::attest::PAYLOAD_TYPE, &statement())
        .unwrap()
}

fn find(bytes: &[u8]) -> vsa::Lookup {
    let d = tempfile::tempdir().unwrap();
    let path = vsa::vsa_path(d.path(), "prod", &tree(), "p1");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, bytes).unwrap();
    vsa::find(d.path(), "prod", &tree(), &[trusted(&signer(1))])
}

#[test]
fn the_seed_is_a_valid_summary() {
    let l = find(&serde_json::to_vec(&envelope()).unwrap());
    assert!(l.valid.is_some(), "{l:?}");
}

proptest! {
    #![proptest_config(crate::config(128))]

    #[test]
    fn a_mutated_summary_holds_only_as_signed(bytes in mutate::json(envelope())) {
        let l = find(&bytes);
        if l.valid.is_some() {
            let (_, payload) = cordon_record::attest::open_envelope(&bytes, &[trusted(&signer(1))])
                .expect("a valid summary opens");
            prop_assert_eq!(payload, statement());
        } else {
            prop_assert_eq!(l.problems.len(), 1);
        }
    }

    #[test]
    fn a_signed_statement_with_mutated_fields_holds_only_if_it_says_so(
        bytes in mutate::json(vsa::statement(&summary())),
    ) {
        // Signed by the trusted key: only the statement's own fields decide.
        let env = signer(1).envelope(cordon_record::attest::PAYLOAD_TYPE, &bytes).unwrap();
        let l = find(&serde_json::to_vec(&env).unwrap());
        if l.valid.is_some() {
            let st: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            prop_assert_eq!(&st["predicate"]["verificationResult"], vsa::PASSED);
            prop_assert_eq!(&st["predicateType"], vsa::PREDICATE_TYPE);
            prop_assert_eq!(&st["predicate"]["verifier"]["id"], &vsa::verifier_id("prod"));
        }
    }
}
