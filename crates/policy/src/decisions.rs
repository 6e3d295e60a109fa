//! A cache of policy decisions, so that running the same plan under the
//! same policy does not parse and evaluate the Rego again in every process
//! (about a millisecond of every `cordon run`).
//!
//! Evaluation is a pure function of the policy sources, the rules the
//! environment disables and the input document, so its outcome (the
//! violations) can be remembered under a digest of exactly those
//! ([`decision_key`]). The one builtin that is not pure in this build of
//! regorus is `rand.intn`; a policy whose text mentions `intn` is never
//! cached ([`cacheable`]).
//!
//! **An entry is trusted only if its seal holds.** Entries live in the state
//! directory (`<state>/cache/policy/<key>.json`), which anything able to
//! write there could edit to turn a refusal into an allow. So each entry is
//! sealed ([`Seal`]) with a key kept outside the state directory (the
//! runner uses the compile cache's key, which already vouches for native
//! code it loads) under a name that binds the entry's key. An entry that is
//! missing, unreadable, too large, unsealed, or that names another key or
//! does not parse is ignored and policy is evaluated as if there were no
//! cache: the cache can only ever save work, never change a decision.
//! Storing is best effort and not fsynced: a lost entry is a miss.

use cordon_manifest::manifest::Sha256Digest;
use cordon_record::run::Violation;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Bumped whenever what an entry means changes: the entry format, how
/// violations are read from `deny`, or the Rego engine's semantics.
const FORMAT: &str = "cordon-policy-decision/v2 regorus-0.14";

/// Largest entry read back; a larger file is a miss. Far above what any
/// real set of violations serializes to.
const MAX_ENTRY_BYTES: u64 = 4 << 20;

/// Seals entries with a key the state directory does not hold, and opens
/// them only when the seal holds.
pub trait Seal {
    /// The bytes to store under `name` for `payload`.
    fn seal(&self, name: &str, payload: &[u8]) -> Vec<u8>;
    /// The payload inside `sealed`, read under `name`, when its seal holds.
    fn open<'a>(&self, name: &str, sealed: &'a [u8]) -> Option<&'a [u8]>;
}

/// Where decisions are remembered, and what vouches for them.
pub struct DecisionCache<'a> {
    state_dir: PathBuf,
    dir: PathBuf,
    seal: &'a dyn Seal,
}

/// Whether the outcome of `sources` may be remembered: not when a source
/// could call `rand.intn`, the one builtin here whose result changes from
/// one evaluation to the next. Erring towards "no" only costs time.
pub fn cacheable(sources: &[(String, String)]) -> bool {
    !sources.iter().any(|(_, text)| text.contains("intn"))
}

/// The digest that names the outcome of evaluating `sources` (name, text)
/// over the input document `input` (its JSON text) with `disabled` default
/// rules, `default_pack` being the module whose rules may be disabled.
pub fn decision_key(
    sources: &[(String, String)],
    input: &str,
    default_pack: &str,
    disabled: &[(String, String)],
) -> Sha256Digest {
    let header = json!({
        "format": FORMAT,
        "runner": env!("CARGO_PKG_VERSION"),
        "default_pack": default_pack,
        "sources": sources
            .iter()
            .map(|(name, text)| json!([name, Sha256Digest::of(text.as_bytes()).hex()]))
            .collect::<Vec<_>>(),
        "disabled": disabled.iter().map(|(n, _)| n).collect::<Vec<_>>(),
    });
    // The input is hashed as the text policy evaluates, after everything
    // else: compact JSON holds no raw newline, so the header ends at the
    // first one and no other header and input give the same bytes.
    let mut h = Sha256::new();
    h.update(header.to_string().as_bytes());
    h.update(b"\n");
    h.update(input.as_bytes());
    Sha256Digest::from_bytes(h.finalize().into())
}

impl<'a> DecisionCache<'a> {
    /// The cache of the state directory `state_dir`, sealed by `seal`.
    pub fn new(state_dir: &Path, seal: &'a dyn Seal) -> DecisionCache<'a> {
        DecisionCache {
            state_dir: state_dir.to_path_buf(),
            dir: state_dir.join("cache").join("policy"),
            seal,
        }
    }

    /// The file an entry of `key` is kept in.
    pub fn entry_path(&self, key: &Sha256Digest) -> PathBuf {
        self.dir.join(format!("{}.json", key.hex()))
    }

    /// The name an entry is sealed under: it binds the key, so that an
    /// entry copied to another key's file does not open.
    fn seal_name(key: &Sha256Digest) -> String {
        format!("cordon-policy-decision/v1/{}", key.hex())
    }

    /// The remembered violations of `key`, or `None` for anything short of
    /// an intact entry sealed for this very key.
    pub fn lookup(&self, key: &Sha256Digest) -> Option<Vec<Violation>> {
        let sealed =
            cordon_core::fsutil::read_regular(&self.entry_path(key), MAX_ENTRY_BYTES).ok()?;
        let payload = self.seal.open(&Self::seal_name(key), &sealed)?;
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Entry {
            key: String,
            violations: Vec<Violation>,
        }
        let entry: Entry = serde_json::from_slice(payload).ok()?;
        (entry.key == key.hex()).then_some(entry.violations)
    }

    /// Remembers `violations` as the outcome of `key`: written to a
    /// temporary file and renamed into place, so a reader sees a whole
    /// entry or none, and not fsynced: a lost entry is a miss. Failures are
    /// ignored (the next run evaluates).
    pub fn store(&self, key: &Sha256Digest, violations: &[Violation]) {
        let payload = json!({"key": key.hex(), "violations": violations}).to_string();
        let sealed = self.seal.seal(&Self::seal_name(key), payload.as_bytes());
        // The state directory is created private by the run itself; the
        // cache never creates it (with the default mode) on its own.
        if !self.state_dir.is_dir() {
            return;
        }
        let _ = cordon_core::fsutil::create_private_dir(&self.dir)
            .and_then(|()| cordon_core::fsutil::replace_unsynced(&self.entry_path(key), &sealed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in seal for the tests: a checksum of name and payload. It is
    /// no MAC (anyone can compute it); it only lets the tests tell an intact
    /// entry from an edited one, as the runner's keyed MAC does.
    struct Sum;
    impl Sum {
        fn tag(name: &str, payload: &[u8]) -> Vec<u8> {
            Sha256Digest::of(&[name.as_bytes(), &[0], payload].concat())
                .hex()
                .as_bytes()
                .to_vec()
        }
    }
    impl Seal for Sum {
        fn seal(&self, name: &str, payload: &[u8]) -> Vec<u8> {
            [&Self::tag(name, payload)[..], payload].concat()
        }
        fn open<'a>(&self, name: &str, sealed: &'a [u8]) -> Option<&'a [u8]> {
            let (tag, payload) = sealed.split_at_checked(64)?;
            (tag == Self::tag(name, payload)).then_some(payload)
        }
    }

    fn violation() -> Violation {
        Violation {
            rule: "r".into(),
            step: Some("s".into()),
            message: "m".into(),
            fix: None,
            source: "p.rego".into(),
            mount: None,
            secret: None,
        }
    }

    #[test]
    fn an_entry_reads_back_only_intact_and_under_its_own_key() {
        let d = tempfile::tempdir().unwrap();
        let cache = DecisionCache::new(d.path(), &Sum);
        let key = Sha256Digest::of(b"one");
        let other = Sha256Digest::of(b"two");
        assert_eq!(cache.lookup(&key), None, "nothing stored yet");
        cache.store(&key, &[violation()]);
        assert_eq!(cache.lookup(&key), Some(vec![violation()]));

        // Copied to another key's file: its seal names the first key.
        std::fs::copy(cache.entry_path(&key), cache.entry_path(&other)).unwrap();
        assert_eq!(cache.lookup(&other), None);

        // Any byte changed: the seal no longer holds.
        let good = std::fs::read(cache.entry_path(&key)).unwrap();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 1;
            std::fs::write(cache.entry_path(&key), &bad).unwrap();
            assert_eq!(cache.lookup(&key), None, "byte {i} flipped");
        }
        // Truncated, empty, or a directory in its place: a miss.
        std::fs::write(cache.entry_path(&key), &good[..good.len() - 1]).unwrap();
        assert_eq!(cache.lookup(&key), None);
        std::fs::write(cache.entry_path(&key), b"").unwrap();
        assert_eq!(cache.lookup(&key), None);
        std::fs::remove_file(cache.entry_path(&key)).unwrap();
        std::fs::create_dir(cache.entry_path(&key)).unwrap();
        assert_eq!(cache.lookup(&key), None);
    }

    #[test]
    fn a_sealed_entry_for_another_key_inside_does_not_open() {
        // Sealed correctly for `key`'s name but saying it is `other`'s
        // outcome: refused, so a payload cannot be moved between keys even
        // by whoever holds the seal.
        let d = tempfile::tempdir().unwrap();
        let cache = DecisionCache::new(d.path(), &Sum);
        let key = Sha256Digest::of(b"one");
        let payload = json!({"key": Sha256Digest::of(b"two").hex(), "violations": []}).to_string();
        std::fs::create_dir_all(cache.entry_path(&key).parent().unwrap()).unwrap();
        std::fs::write(
            cache.entry_path(&key),
            Sum.seal(&DecisionCache::seal_name(&key), payload.as_bytes()),
        )
        .unwrap();
        assert_eq!(cache.lookup(&key), None);
    }

    #[test]
    fn the_key_binds_every_source_the_input_and_the_disabled_rules() {
        let sources = vec![("a.rego".to_string(), "package a".to_string())];
        let input = r#"{"steps":[]}"#;
        let k = decision_key(&sources, input, "builtin", &[]);
        assert_eq!(k, decision_key(&sources, input, "builtin", &[]));
        let other_text = vec![("a.rego".to_string(), "package b".to_string())];
        let other_name = vec![("b.rego".to_string(), "package a".to_string())];
        assert_ne!(k, decision_key(&other_text, input, "builtin", &[]));
        assert_ne!(k, decision_key(&other_name, input, "builtin", &[]));
        assert_ne!(
            k,
            decision_key(&sources, r#"{"steps":[1]}"#, "builtin", &[])
        );
        assert_ne!(
            k,
            decision_key(&sources, input, "builtin", &[("r".into(), "line 1".into())])
        );
        assert_ne!(k, decision_key(&sources, input, "other", &[]));
    }

    #[test]
    fn a_policy_that_can_draw_random_numbers_is_not_cached() {
        let pure = (
            "a.rego".to_string(),
            "package a\ndeny contains 1 if false".to_string(),
        );
        let random = (
            "b.rego".to_string(),
            "package b\ndeny contains 1 if rand.intn(\"x\", 2) == 0".to_string(),
        );
        assert!(cacheable(std::slice::from_ref(&pure)));
        assert!(!cacheable(&[pure, random]));
    }
}
