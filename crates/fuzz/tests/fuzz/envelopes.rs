//! DSSE envelopes (what signs every record, approval, VSA and chain head)
//! and signed chain heads. What a verifier is handed may be any bytes; it
//! must accept exactly the payload a trusted key signed, nothing else.

use crate::mutate;
use cordon_record::attest::{self, Signer, TrustedKey};
use cordon_record::head::{self, ChainHead};
use ed25519_dalek::SigningKey;
use proptest::prelude::*;

pub fn signer(seed: u8) -> Signer {
    Signer::from_key(SigningKey::from_bytes(&[seed; 32]))
}

pub fn trusted(s: &Signer) -> TrustedKey {
    TrustedKey {
        keyid: s.keyid().into(),
        key: s.public(),
        source: "test".into(),
    }
}

const PAYLOAD: &[u8] = br#"{"_type":"https://in-toto.io/Statement/v1","subject":[]}"#;

fn envelope() -> serde_json::Value {
    let mut env = signer(1).envelope(attest::PAYLOAD_TYPE, PAYLOAD).unwrap();
    // A second signature by a key nobody trusts, which must be skipped.
    let other = signer(2).envelope(attest::PAYLOAD_TYPE, PAYLOAD).unwrap();
    env["signatures"]
        .as_array_mut()
        .unwrap()
        .insert(0, other["signatures"][0].clone());
    env
}

fn the_head() -> ChainHead {
    ChainHead {
        format: head::HEAD_FORMAT.into(),
        environment: "prod".into(),
        sequence: 7,
        run: "20260101T000000.000Z-train-0123abcd".into(),
        entry: cordon_manifest::manifest::Sha256Digest::of(b"line").to_string(),
        taken_at: "2026-01-01T00:00:00Z".into(),
    }
}

/// An envelope whose signatures name a key nobody trusts with a keyid
/// that is not ASCII: the error message cut the keyid at a byte count and
/// panicked in the middle of a character.
#[test]
fn an_envelope_signed_by_an_unknown_key_with_a_multibyte_keyid_is_refused() {
    let mut env = envelope();
    env["signatures"] = serde_json::json!([{"keyid": "abcdefgé", "sig": ""}]);
    let bytes = serde_json::to_vec(&env).unwrap();
    let err = attest::open_envelope(&bytes, &[trusted(&signer(1))]).unwrap_err();
    assert!(err.to_string().contains("abcdefg"), "{err}");
}

proptest! {
    #![proptest_config(crate::config(256))]

    #[test]
    fn a_mutated_envelope_opens_only_to_the_signed_payload(bytes in mutate::json(envelope())) {
        let keys = [trusted(&signer(1))];
        match attest::open_envelope(&bytes, &keys) {
            Ok((ptype, payload)) => {
                prop_assert_eq!(ptype, attest::PAYLOAD_TYPE);
                prop_assert_eq!(payload, PAYLOAD);
            }
            Err(e) => { let _ = e.to_string(); }
        }
        // Nothing opens without a trusted key, or with only another one.
        prop_assert!(attest::open_envelope(&bytes, &[]).is_err());
        prop_assert!(attest::open_envelope(&bytes, &[trusted(&signer(3))]).is_err());
    }

    #[test]
    fn any_payload_round_trips_through_an_envelope(
        ptype in mutate::string(),
        payload in proptest::collection::vec(any::<u8>(), 0..128),
    ) {
        let s = signer(1);
        let env = serde_json::to_vec(&s.envelope(&ptype, &payload).unwrap()).unwrap();
        let (t, p) = attest::open_envelope(&env, &[trusted(&s)]).unwrap();
        prop_assert_eq!(t, ptype);
        prop_assert_eq!(p, payload);
    }

    #[test]
    fn a_mutated_head_opens_only_to_the_signed_head(
        bytes in mutate::bytes(head::sign(&the_head(), &signer(1)).unwrap()),
        lines in proptest::collection::vec("\\PC{0,40}", 0..10),
    ) {
        let _ = head::claimed_environment(&bytes);
        match head::open(&bytes, &[trusted(&signer(1))]) {
            Ok(h) => prop_assert_eq!(&h, &the_head()),
            Err(e) => { let _ = e.to_string(); }
        }
        // Checking a head against any chain never panics, whatever its
        // sequence number says.
        let _ = head::check(&the_head(), &lines);
    }

    #[test]
    fn any_signed_head_checks_against_any_chain_without_panicking(
        head in (any::<u64>(), mutate::string(), mutate::string()).prop_map(|(sequence, run, entry)| {
            ChainHead { sequence, run, entry, ..the_head() }
        }),
        lines in proptest::collection::vec("\\PC{0,40}", 0..10),
    ) {
        let signed = head::sign(&head, &signer(1)).unwrap();
        prop_assert_eq!(head::open(&signed, &[trusted(&signer(1))]).unwrap(), head.clone());
        prop_assert_eq!(head::claimed_environment(&signed).unwrap(), head.environment.clone());
        let _ = head::check(&head, &lines);
    }
}
