//! Reviewers' approvals: `<stem>.approvals.json` beside a manifest, in a
//! checkout anyone can change. A manifest counts as approved only by an
//! envelope a trusted reviewer signed over exactly its digests.

use crate::envelopes::{signer, trusted};
use crate::mutate;
use cordon_manifest::manifest::Sha256Digest;
use cordon_policy::approval;
use proptest::prelude::*;
use serde_json::json;

fn digests() -> (Sha256Digest, Sha256Digest) {
    (
        Sha256Digest::of(b"manifest"),
        Sha256Digest::of(b"component"),
    )
}

fn payload() -> Vec<u8> {
    let (m, c) = digests();
    serde_json::to_vec(&json!({
        "_type": approval::APPROVAL_TYPE,
        "step": "train",
        "manifest": {"sha256": m.hex()},
        "component": {"sha256": c.hex()},
        "approvedAt": "2026-01-01T00:00:00Z",
    }))
    .unwrap()
}

fn approvals() -> serde_json::Value {
    let by = |n: u8| {
        signer(n)
            .envelope(approval::PAYLOAD_TYPE, &payload())
            .unwrap()
    };
    json!([by(2), by(1)])
}

fn status(bytes: &[u8]) -> approval::Status {
    let d = tempfile::tempdir().unwrap();
    let manifest = d.path().join("train.toml");
    std::fs::write(approval::file_for(&manifest), bytes).unwrap();
    let (m, c) = digests();
    approval::status_of(&manifest, &m, &c, &[trusted(&signer(1))])
}

#[test]
fn the_seed_is_approved() {
    let st = status(&serde_json::to_vec(&approvals()).unwrap());
    assert!(st.approved, "{st:?}");
    assert_eq!(st.problems.len(), 1, "the untrusted reviewer's: {st:?}");
}

/// An approval whose keyid is not ASCII: naming it in a problem cut it at
/// a byte count and panicked in the middle of a character.
#[test]
fn an_approval_with_a_multibyte_keyid_is_a_problem_not_a_panic() {
    let mut list = approvals();
    list[0]["signatures"][0]["keyid"] = json!("abcdefgé-not-a-key");
    let st = status(&serde_json::to_vec(&list).unwrap());
    assert!(st.approved, "the trusted one still holds: {st:?}");
    assert!(st.problems[0].contains("abcdefg"), "{st:?}");
}

/// An approvals file is read whole: one larger than any list of
/// approvals is refused before it is read into memory.
#[test]
fn an_oversized_approvals_file_is_refused_unread() {
    let d = tempfile::tempdir().unwrap();
    let manifest = d.path().join("train.toml");
    let file = std::fs::File::create(approval::file_for(&manifest)).unwrap();
    file.set_len(approval::MAX_APPROVALS_BYTES + 1).unwrap();
    let (m, c) = digests();
    let st = approval::status_of(&manifest, &m, &c, &[trusted(&signer(1))]);
    assert!(!st.approved);
    assert!(st.problems[0].contains("larger than"), "{st:?}");
}

proptest! {
    #![proptest_config(crate::config(128))]

    #[test]
    fn a_mutated_approvals_file_approves_only_what_a_trusted_reviewer_signed(
        bytes in mutate::json(approvals()),
    ) {
        let st = status(&bytes);
        for p in &st.problems {
            prop_assert!(!p.is_empty());
        }
        if st.approved {
            // Some envelope in the file still carries the signed payload.
            let list: Vec<serde_json::Value> = serde_json::from_slice(&bytes).unwrap();
            prop_assert!(list.iter().any(|e| approval::payload_of(e)
                == serde_json::from_slice(&payload()).ok()));
            prop_assert_eq!(st.reviewers, vec![signer(1).keyid().to_string()]);
        }
        if let Ok(list) = serde_json::from_slice::<Vec<serde_json::Value>>(&bytes) {
            for e in &list {
                let _ = approval::payload_of(e);
            }
        }
    }
}
