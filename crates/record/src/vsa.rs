//! SLSA Verification Summary Attestations: what an environment signs when
//! `cordon promote` lets an artifact in, and what a run in that
//! environment checks before it reads a mount that `requires = "promoted"`.
//!
//! A VSA is an in-toto Statement v1 with the predicate type
//! [`PREDICATE_TYPE`] (<https://slsa.dev/spec/v1.0/verification_summary>),
//! in a DSSE envelope signed by the *target* environment's record key. Its
//! subjects are the artifact's tree (named by its guest path with a
//! trailing `/`, as records name read mounts) and every file in it, each
//! by sha256. They are kept under `<state>/promotions/<env>/`, one file per
//! promotion, named after the artifact's tree digest so that a run finds
//! the VSAs of an input without reading the others.
//!
//! This module builds and checks the statement; signing is the engine's
//! (the key lives in a secret store this crate never opens).

use crate::attest::{self, TrustedKey};
use cordon_core::digest::{Entry, EntryKind, Sha256Digest};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// The predicate type of a SLSA VSA v1.
pub const PREDICATE_TYPE: &str = "https://slsa.dev/verification_summary/v1";

/// `verificationResult` of a promotion that passed.
pub const PASSED: &str = "PASSED";

/// `verificationResult` of a promotion that failed.
pub const FAILED: &str = "FAILED";

/// The SLSA version the VSA's levels refer to.
pub const SLSA_VERSION: &str = "1.0";

/// The level a promotion verifies. Build level 1: the provenance exists,
/// is complete back to the source datasets, and says how the artifact was
/// made. Cordon does not claim level 2 or 3: the runner's records are
/// signed, but nothing here proves the runner ran on a hosted, hardened
/// build platform, which those levels require.
pub const VERIFIED_LEVEL: &str = "SLSA_BUILD_LEVEL_1";

/// Largest VSA envelope read; a promotion's envelope is a few kilobytes
/// per file of the artifact, and a state directory anyone can write must
/// not make a run read without bound.
pub const MAX_VSA_BYTES: u64 = 16 << 20;

/// The verifier id of environment `env` (the `verifier.id` of its VSAs).
pub fn verifier_id(env: &str) -> String {
    format!("https://example.invalid/cordon/verifier/{env}")
}

/// Where the VSAs environment `env` signed live in `state_dir`.
pub fn promotions_dir(state_dir: &Path, env: &str) -> PathBuf {
    state_dir.join("promotions").join(env)
}

/// The file of the VSA of promotion `id` of the tree `tree`.
pub fn vsa_path(state_dir: &Path, env: &str, tree: &Sha256Digest, id: &str) -> PathBuf {
    promotions_dir(state_dir, env).join(format!("{}.{id}.vsa.dsse.json", tree.hex()))
}

/// A resource by URI and sha256, as VSAs name the policy and the input
/// attestations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// Its URI (a path relative to the state directory for records).
    pub uri: String,
    /// Its sha256.
    pub sha256: Sha256Digest,
}

/// What a VSA says.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The environment that verified (and signs).
    pub environment: String,
    /// RFC 3339 time of the verification.
    pub time_verified: String,
    /// The artifact's URI in the target environment.
    pub resource_uri: String,
    /// The artifact's guest path in the step that produced it.
    pub guest: String,
    /// The artifact's tree digest.
    pub tree: Sha256Digest,
    /// Every entry of the tree (files become subjects).
    pub entries: Vec<Entry>,
    /// The promotion policy set, by digest.
    pub policy: Resource,
    /// The signed records and the pipeline record verified, by digest.
    pub inputs: Vec<Resource>,
    /// Whether the promotion passed.
    pub passed: bool,
}

fn resource(r: &Resource) -> Value {
    json!({"uri": r.uri, "digest": {"sha256": r.sha256.hex()}})
}

/// The in-toto Statement of `s`.
pub fn statement(s: &Summary) -> Value {
    let guest = s.guest.trim_end_matches('/');
    let mut subject =
        vec![json!({"name": format!("{guest}/"), "digest": {"sha256": s.tree.hex()}})];
    for e in &s.entries {
        if let (EntryKind::File, Some(h)) = (&e.kind, &e.sha256) {
            let mut d = json!({"name": format!("{guest}/{}", e.path), "digest": {"sha256": h}});
            // A name that is not UTF-8 is shown lossy in `name`; its exact
            // bytes go beside it, as in a record's statement (`attest`).
            if let Some(hex) = &e.path_hex {
                d["annotations"] = json!({"pathHex": hex});
            }
            subject.push(d);
        }
    }
    json!({
        "_type": attest::STATEMENT_TYPE,
        "subject": subject,
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "verifier": {"id": verifier_id(&s.environment)},
            "timeVerified": s.time_verified,
            "resourceUri": s.resource_uri,
            "policy": resource(&s.policy),
            "inputAttestations": s.inputs.iter().map(resource).collect::<Vec<_>>(),
            "verificationResult": if s.passed { PASSED } else { FAILED },
            "verifiedLevels": if s.passed { vec![VERIFIED_LEVEL] } else { Vec::new() },
            "slsaVersion": SLSA_VERSION,
        },
    })
}

/// Whether a tree has a valid VSA of an environment, and what is wrong
/// with the ones that are not.
#[derive(Debug, Clone, Default)]
pub struct Lookup {
    /// A VSA that holds: signed by a trusted key, by this environment's
    /// verifier, PASSED, naming the tree.
    pub valid: Option<PathBuf>,
    /// Why each other candidate does not count.
    pub problems: Vec<String>,
}

/// Looks for a VSA of environment `env` in `state_dir` that promoted the
/// tree `tree`, checked against `trusted` (the keys trusted for `env`'s
/// records).
pub fn find(state_dir: &Path, env: &str, tree: &Sha256Digest, trusted: &[TrustedKey]) -> Lookup {
    let mut out = Lookup::default();
    let dir = promotions_dir(state_dir, env);
    let prefix = format!("{}.", tree.hex());
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".vsa.dsse.json"))
            })
            .map(|e| e.path())
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    for f in files {
        match check(&f, env, tree, trusted) {
            Ok(()) => {
                out.valid = Some(f);
                return out;
            }
            Err(why) => out.problems.push(format!("{}: {why}", f.display())),
        }
    }
    out
}

/// Checks the VSA envelope at `path`: signature, statement type,
/// predicate type, verifier, result and subject. The problem is a sentence
/// for [`Lookup::problems`].
fn check(
    path: &Path,
    env: &str,
    tree: &Sha256Digest,
    trusted: &[TrustedKey],
) -> Result<(), String> {
    let bytes = cordon_core::fsutil::read_regular(path, MAX_VSA_BYTES)
        .map_err(|e| format!("cannot be read: {e}"))?;
    let (payload_type, payload) =
        attest::open_envelope(&bytes, trusted).map_err(|e| e.to_string())?;
    if payload_type != attest::PAYLOAD_TYPE {
        return Err(format!(
            "payload type {payload_type} is not an in-toto statement"
        ));
    }
    let st: Value =
        serde_json::from_slice(&payload).map_err(|e| format!("statement is not JSON: {e}"))?;
    if st["_type"] != attest::STATEMENT_TYPE || st["predicateType"] != PREDICATE_TYPE {
        return Err("not a SLSA verification summary".into());
    }
    let p = &st["predicate"];
    if p["verifier"]["id"] != verifier_id(env).as_str() {
        return Err(format!("not verified by environment `{env}`"));
    }
    if p["verificationResult"] != PASSED {
        return Err("its verificationResult is not PASSED".into());
    }
    let names_tree = st["subject"].as_array().is_some_and(|subjects| {
        subjects.iter().any(|s| {
            s["name"].as_str().is_some_and(|n| n.ends_with('/'))
                && s["digest"]["sha256"] == tree.hex()
        })
    });
    if !names_tree {
        return Err(format!("it does not name the tree {tree}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(tree: &Sha256Digest) -> Summary {
        Summary {
            environment: "prod".into(),
            time_verified: "2026-01-01T00:00:00Z".into(),
            resource_uri: "file:///d/prod/model".into(),
            guest: "/model".into(),
            tree: tree.clone(),
            entries: vec![Entry {
                path: "model.json".into(),
                path_hex: None,
                kind: EntryKind::File,
                size: 2,
                sha256: Some(Sha256Digest::of(b"{}").hex().to_string()),
            }],
            policy: Resource {
                uri: "promotions/prod/x.policy.json".into(),
                sha256: Sha256Digest::of(b"p"),
            },
            inputs: vec![],
            passed: true,
        }
    }

    #[test]
    fn a_promoted_file_named_with_bytes_not_utf8_is_a_subject_with_its_exact_bytes() {
        let mut s = summary(&Sha256Digest::of(b"tree"));
        s.entries[0] = Entry::named(
            b"m\xff.bin",
            EntryKind::File,
            2,
            s.entries[0].sha256.clone(),
        );
        let st = statement(&s);
        assert_eq!(st["subject"][1]["name"], "/model/m\u{fffd}.bin");
        assert_eq!(
            st["subject"][1]["annotations"]["pathHex"],
            hex::encode(b"m\xff.bin")
        );
        // A UTF-8 name is the subject as it always was.
        assert!(
            statement(&summary(&s.tree))["subject"][1]
                .get("annotations")
                .is_none()
        );
    }

    #[test]
    fn a_vsa_holds_only_signed_passed_by_this_verifier_and_for_this_tree() {
        let d = tempfile::tempdir().unwrap();
        let tree = Sha256Digest::of(b"tree");
        let (private, public) = attest::generate();
        std::fs::write(d.path().join("k.pub"), public).unwrap();
        let key = TrustedKey::load(&d.path().join("k.pub")).unwrap();
        let key_file = d.path().join("k.key");
        std::fs::write(&key_file, private).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let signer = attest::Signer::load(&key_file).unwrap();
        let write = |s: &Summary, id: &str| {
            let payload = serde_json::to_vec(&statement(s)).unwrap();
            let env = signer.envelope(attest::PAYLOAD_TYPE, &payload).unwrap();
            let p = vsa_path(d.path(), "prod", &s.tree, id);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, serde_json::to_vec(&env).unwrap()).unwrap();
        };
        assert!(
            find(d.path(), "prod", &tree, std::slice::from_ref(&key))
                .valid
                .is_none()
        );
        let mut failed = summary(&tree);
        failed.passed = false;
        write(&failed, "a");
        let l = find(d.path(), "prod", &tree, std::slice::from_ref(&key));
        assert!(
            l.valid.is_none() && l.problems[0].contains("not PASSED"),
            "{l:?}"
        );
        write(&summary(&tree), "b");
        assert!(
            find(d.path(), "prod", &tree, std::slice::from_ref(&key))
                .valid
                .is_some()
        );
        // Another environment's verifier, or an untrusted key, does not count.
        assert!(
            find(d.path(), "staging", &tree, std::slice::from_ref(&key))
                .valid
                .is_none()
        );
        let (_, other) = attest::generate();
        std::fs::write(d.path().join("o.pub"), other).unwrap();
        let other = TrustedKey::load(&d.path().join("o.pub")).unwrap();
        assert!(find(d.path(), "prod", &tree, &[other]).valid.is_none());
    }
}
