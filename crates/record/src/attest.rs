//! Attestations: a record as an in-toto Statement (SLSA provenance v1) in
//! a signed DSSE envelope, and the ed25519 keys that sign and verify it.
//!
//! The statement is derived from the record's stored JSON bytes by a pure
//! function ([`statement`]), so a verifier can rebuild it from the record
//! file and compare: the signature then covers every field of the record.
//! Tools that know nothing of Cordon verify the envelope with the public key
//! alone (see `docs/records.md`).
//!
//! This module never sees a secret value: it reads records, which hold only
//! secret names, providers and versions.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use cordon_manifest::manifest::Sha256Digest;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde_json::{Value, json};
use std::path::Path;

/// `_type` of an in-toto Statement v1.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The predicate type: SLSA provenance v1.
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// DSSE payload type of an in-toto statement.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// Names the semantics of a Cordon step run (documented in
/// `docs/records.md`); the version changes when the meaning of a field does.
pub const BUILD_TYPE: &str = "https://example.invalid/cordon/step/v1";
/// Prefix of `runDetails.builder.id`; the environment follows.
pub const BUILDER_ID: &str = "https://example.invalid/cordon/runner";

/// Why an attestation could not be made or checked.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    /// A key file could not be read or written.
    #[error("{path}: {message}")]
    Key {
        /// The key file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// An envelope is malformed or its signature does not hold.
    #[error("{0}")]
    Envelope(String),
}

fn key_err(path: &Path, message: impl Into<String>) -> AttestError {
    AttestError::Key {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// The keyid of a public key as in-toto and securesystemslib compute it:
/// sha256 (hex) of the OLPC canonical JSON of the key's public form.
pub fn keyid(key: &VerifyingKey) -> String {
    let canonical = format!(
        r#"{{"keytype":"ed25519","keyval":{{"public":"{}"}},"scheme":"ed25519"}}"#,
        hex::encode(key.as_bytes())
    );
    Sha256Digest::of(canonical.as_bytes()).hex().to_string()
}

/// Signs with a key that lives elsewhere (OpenBao Transit): the private
/// key never reaches this process. Implementors return the 64-byte
/// ed25519 signature of `message` exactly (no prehash), or why not.
pub trait RemoteSign: Send + Sync + std::fmt::Debug {
    /// The signature of `message`.
    fn sign(&self, message: &[u8]) -> Result<[u8; 64], RemoteSignError>;
}

/// Why a remote signer gave no signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RemoteSignError(pub String);

/// Who holds a signer's private key, as records name it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedBy {
    /// The in-toto keyid of the public key.
    pub keyid: String,
    /// Where the private key is kept: `local-store`, `vault-transit`, `file`
    /// or `key` (a key handed in by a caller).
    pub holder: String,
    /// The key's name at its holder (the Transit key), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The key's version at its holder, when it has versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

enum Backend {
    Local(Box<SigningKey>),
    Remote(std::sync::Arc<dyn RemoteSign>),
}

/// An environment's signing key.
pub struct Signer {
    backend: Backend,
    public: VerifyingKey,
    info: SignedBy,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({} by {})", self.info.keyid, self.info.holder)
    }
}

impl Signer {
    /// Loads a PKCS#8 PEM private key. The file must not be readable by
    /// group or others: a signing key anyone on the machine can read proves
    /// nothing.
    pub fn load(path: &Path) -> Result<Signer, AttestError> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|e| key_err(path, e.to_string()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(key_err(
                path,
                format!(
                    "the signing key is readable by others (mode {:o}); run `chmod 600 {}`",
                    meta.permissions().mode() & 0o777,
                    path.display()
                ),
            ));
        }
        let pem = std::fs::read_to_string(path).map_err(|e| key_err(path, e.to_string()))?;
        let key = SigningKey::from_pkcs8_pem(&pem)
            .map_err(|e| key_err(path, format!("not an ed25519 PKCS#8 PEM private key: {e}")))?;
        let mut signer = Signer::from_key(key);
        signer.info.holder = "file".into();
        Ok(signer)
    }

    /// Wraps a key.
    pub fn from_key(key: SigningKey) -> Signer {
        let public = key.verifying_key();
        Signer {
            info: SignedBy {
                keyid: keyid(&public),
                holder: "key".into(),
                key: None,
                version: None,
            },
            backend: Backend::Local(Box::new(key)),
            public,
        }
    }

    /// A signer whose private key stays with `remote`; `public` is its
    /// public key, against which every signature is checked before use.
    pub fn remote(
        public: VerifyingKey,
        holder: &str,
        key: Option<String>,
        version: Option<u64>,
        remote: std::sync::Arc<dyn RemoteSign>,
    ) -> Signer {
        Signer {
            info: SignedBy {
                keyid: keyid(&public),
                holder: holder.into(),
                key,
                version,
            },
            backend: Backend::Remote(remote),
            public,
        }
    }

    /// Names the holder (and version) of the key, as records state it.
    pub fn held_by(mut self, holder: &str, version: Option<u64>) -> Signer {
        self.info.holder = holder.into();
        self.info.version = version;
        self
    }

    /// The in-toto keyid of the public half.
    pub fn keyid(&self) -> &str {
        &self.info.keyid
    }

    /// Who holds the key, for records.
    pub fn signed_by(&self) -> &SignedBy {
        &self.info
    }

    /// The public half.
    pub fn public(&self) -> VerifyingKey {
        self.public
    }

    /// The ed25519 signature of `message`. A remote signature is checked
    /// against the public key first: a server that answers with another
    /// key's signature (or garbage) must not produce a record nobody can
    /// verify.
    pub fn sign(&self, message: &[u8]) -> Result<Signature, AttestError> {
        match &self.backend {
            Backend::Local(k) => Ok(k.sign(message)),
            Backend::Remote(r) => {
                let bytes = r.sign(message).map_err(|e| AttestError::Envelope(e.0))?;
                let sig = Signature::from_bytes(&bytes);
                self.public.verify_strict(message, &sig).map_err(|_| {
                    AttestError::Envelope(format!(
                        "the signature from {} does not verify with key {}; has the key been rotated?",
                        self.info.holder,
                        short(&self.info.keyid)
                    ))
                })?;
                Ok(sig)
            }
        }
    }

    /// A DSSE envelope over `payload`.
    pub fn envelope(&self, payload_type: &str, payload: &[u8]) -> Result<Value, AttestError> {
        let sig = self.sign(&pae(payload_type, payload))?;
        Ok(json!({
            "payloadType": payload_type,
            "payload": B64.encode(payload),
            "signatures": [{"keyid": self.info.keyid, "sig": B64.encode(sig.to_bytes())}],
        }))
    }
}

/// A fresh key pair: the private key as PKCS#8 PEM, the public key as PEM
/// SubjectPublicKeyInfo.
pub fn generate() -> (String, String) {
    let key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let private = key
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .expect("an ed25519 key encodes")
        .to_string();
    let public = key
        .verifying_key()
        .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .expect("an ed25519 key encodes");
    (private, public)
}

/// A public key a verifier trusts.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    /// in-toto keyid.
    pub keyid: String,
    /// The key.
    pub key: VerifyingKey,
    /// Where it came from, for messages.
    pub source: String,
}

impl TrustedKey {
    /// Loads a PEM SubjectPublicKeyInfo ed25519 key.
    pub fn load(path: &Path) -> Result<TrustedKey, AttestError> {
        let pem = std::fs::read_to_string(path).map_err(|e| key_err(path, e.to_string()))?;
        let key = VerifyingKey::from_public_key_pem(&pem)
            .map_err(|e| key_err(path, format!("not an ed25519 PEM public key: {e}")))?;
        Ok(TrustedKey {
            keyid: keyid(&key),
            key,
            source: path.display().to_string(),
        })
    }
}

/// The DSSE pre-authentication encoding: what is actually signed.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// Checks a DSSE envelope against `trusted` keys and returns its payload
/// type and payload. At least one signature must be by a trusted key and
/// valid; signatures by unknown keys are ignored, a bad signature by a
/// trusted key is an error.
pub fn open_envelope(
    envelope: &[u8],
    trusted: &[TrustedKey],
) -> Result<(String, Vec<u8>), AttestError> {
    let bad = |m: &str| AttestError::Envelope(m.to_string());
    let v: Value = serde_json::from_slice(envelope)
        .map_err(|e| AttestError::Envelope(format!("the envelope is not JSON: {e}")))?;
    let payload_type = v["payloadType"]
        .as_str()
        .ok_or_else(|| bad("the envelope has no payloadType"))?;
    let payload = v["payload"]
        .as_str()
        .and_then(|p| B64.decode(p).ok())
        .ok_or_else(|| bad("the envelope's payload is not base64"))?;
    let sigs = v["signatures"]
        .as_array()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad("the envelope has no signatures"))?;
    let message = pae(payload_type, &payload);
    let mut seen = Vec::new();
    for s in sigs {
        let keyid = s["keyid"].as_str().unwrap_or("");
        seen.push(keyid.to_string());
        let Some(k) = trusted.iter().find(|k| k.keyid == keyid) else {
            continue;
        };
        let sig = s["sig"]
            .as_str()
            .and_then(|x| B64.decode(x).ok())
            .and_then(|b| Signature::from_slice(&b).ok())
            .ok_or_else(|| bad("a signature is not a base64 ed25519 signature"))?;
        k.key.verify(&message, &sig).map_err(|_| {
            AttestError::Envelope(format!(
                "the signature by trusted key {} ({}) does not verify",
                short(keyid),
                k.source
            ))
        })?;
        return Ok((payload_type.to_string(), payload));
    }
    Err(AttestError::Envelope(if trusted.is_empty() {
        "no trusted keys are configured for this environment (trusted-keys in cordon.toml)".into()
    } else {
        format!(
            "signed by {}, which is not a trusted key of this environment",
            seen.iter()
                .map(|k| short(k).to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }))
}

/// The first eight characters of a keyid, for messages. A keyid in an
/// envelope is whatever its writer put there, not necessarily hex: it is
/// cut at a character, never inside one.
fn short(keyid: &str) -> &str {
    keyid
        .char_indices()
        .nth(8)
        .map_or(keyid, |(end, _)| &keyid[..end])
}

fn hex_of(d: &Value) -> Value {
    // Record digests are `sha256:<hex>`; in-toto digest sets want bare hex.
    match d.as_str() {
        Some(s) => Value::String(s.strip_prefix("sha256:").unwrap_or(s).to_string()),
        None => Value::Null,
    }
}

/// A descriptor of a file whose name is not UTF-8 carries the exact bytes
/// (the record entry's `path_hex`) as the annotation `pathHex`: its `name`
/// is only the lossy form. Descriptors of every other file are unchanged,
/// so records signed before names were kept exactly still verify.
fn exact_name(descriptor: &mut Value, entry: &Value) {
    if let Some(hex) = entry["path_hex"].as_str() {
        descriptor["annotations"] = json!({"pathHex": hex});
    }
}

fn join_guest(guest: &str, path: &str) -> String {
    format!("{}/{path}", guest.trim_end_matches('/'))
}

/// Which form of the statement to build. Records signed by earlier
/// runners carry the [`StatementForm::Legacy`] form; they must keep
/// verifying, so the verifier rebuilds both and accepts the one signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementForm {
    /// The form every new record is signed with: at least one subject (the
    /// record file itself when the run published no output file), and bare
    /// hex in every digest, as in-toto and SLSA define them.
    Current,
    /// The first form: an empty subject list for runs without output files
    /// and `externalParameters.manifest` as the record stores it.
    Legacy,
}

/// The in-toto Statement for a record, given the record's stored bytes.
/// Pure: the same bytes always give the same statement.
pub fn statement(record_bytes: &[u8]) -> Result<Value, serde_json::Error> {
    statement_in(record_bytes, StatementForm::Current)
}

/// [`statement`] in a given form.
pub fn statement_in(record_bytes: &[u8], form: StatementForm) -> Result<Value, serde_json::Error> {
    let r: Value = serde_json::from_slice(record_bytes)?;
    let record_digest = Sha256Digest::of(record_bytes);

    let mut subjects = Vec::new();
    let mut deps = vec![
        json!({
            "name": "component",
            "uri": format!("file://{}", r["component"]["path"].as_str().unwrap_or("")),
            "digest": {"sha256": hex_of(&r["component"]["sha256"])},
        }),
        json!({
            "name": "manifest",
            "uri": format!("file://{}", r["manifest"]["path"].as_str().unwrap_or("")),
            "digest": {"sha256": hex_of(&r["manifest"]["sha256"])},
        }),
    ];
    let mut mounts = Vec::new();
    for m in r["mounts"].as_array().into_iter().flatten() {
        let guest = m["guest"].as_str().unwrap_or("");
        let host = m["host"].as_str().unwrap_or("");
        mounts.push(json!({
            "guest": guest, "host": host, "access": m["access"],
            "purpose": m["purpose"], "classification": m["classification"],
        }));
        if let Some(before) = m.get("before") {
            deps.push(json!({
                "name": format!("{guest}/"),
                "uri": format!("file://{host}/"),
                "digest": {"sha256": hex_of(&before["sha256"])},
                "annotations": {"kind": "tree", "files": before["files"], "bytes": before["bytes"]},
            }));
            for e in before["entries"].as_array().into_iter().flatten() {
                if let Some(h) = e["sha256"].as_str() {
                    let path = e["path"].as_str().unwrap_or("");
                    let mut dep = json!({
                        "name": join_guest(guest, path),
                        "uri": format!("file://{host}/{path}"),
                        "digest": {"sha256": h},
                    });
                    exact_name(&mut dep, e);
                    deps.push(dep);
                }
            }
        }
        if let Some(after) = m.get("after") {
            for e in after["entries"].as_array().into_iter().flatten() {
                if let Some(h) = e["sha256"].as_str() {
                    let mut subject = json!({
                        "name": join_guest(guest, e["path"].as_str().unwrap_or("")),
                        "digest": {"sha256": h},
                    });
                    exact_name(&mut subject, e);
                    subjects.push(subject);
                }
            }
        }
    }
    // A statement is about something: a run that published no file (it
    // failed, or writes nothing) is attested by the record file itself, so
    // outside tools that require a subject accept every statement.
    if subjects.is_empty() && form == StatementForm::Current {
        subjects.push(json!({
            "name": format!("records/{}.json", r["run_id"].as_str().unwrap_or("")),
            "digest": {"sha256": record_digest.hex()},
            "annotations": {"kind": "cordon-record"},
        }));
    }
    let manifest = match form {
        StatementForm::Legacy => r["manifest"].clone(),
        StatementForm::Current => json!({
            "path": r["manifest"]["path"],
            "digest": {"sha256": hex_of(&r["manifest"]["sha256"])},
        }),
    };
    let environment = r["environment"].as_str().unwrap_or("");
    let secrets: Value = r["secrets"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v["granted_uses"].clone()))
                .collect::<serde_json::Map<_, _>>()
                .into()
        })
        .unwrap_or_else(|| json!({}));
    Ok(json!({
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "step": r["step"],
                    "environment": environment,
                    "manifest": manifest,
                    "args": r["args"],
                    "env": r["env"],
                    "mounts": mounts,
                    "secrets": secrets,
                },
                "internalParameters": {
                    "limits": r["limits"],
                    "sandbox": r["runner"]["sandbox"],
                    "reproducibility": r["reproducibility"],
                    "compiledFromCache": r["compiled_from_cache"],
                },
                "resolvedDependencies": deps,
            },
            "runDetails": {
                "builder": {
                    "id": format!("{BUILDER_ID}/{environment}"),
                    "version": {"cordon": r["runner"]["version"]},
                },
                "metadata": {
                    "invocationId": r["run_id"],
                    "startedOn": r["started_at"],
                    "finishedOn": r["finished_at"],
                },
                "byproducts": [
                    {"name": "stdout", "digest": {"sha256": hex_of(&r["stdout"]["sha256"])}},
                    {"name": "stderr", "digest": {"sha256": hex_of(&r["stderr"]["sha256"])}},
                    {
                        "name": "record",
                        "mediaType": "application/json",
                        "digest": {"sha256": record_digest.hex()},
                    },
                    {
                        "name": "cordon",
                        "annotations": {
                            "success": r["success"],
                            "termination": r["termination"],
                            "outputs": r["outputs"],
                            "usage": r["usage"],
                            "secrets": r["secrets"],
                            "secretsNotGranted": r.get("secrets_not_granted").cloned().unwrap_or_else(|| json!({})),
                            "report": r["report"],
                            "networkCalls": r.get("network").cloned().unwrap_or_else(|| json!([])),
                            "policy": r.get("policy").cloned().unwrap_or(Value::Null),
                            "chain": r["chain"],
                        },
                    },
                ],
            },
        },
    }))
}

/// The statement for `record_bytes`, serialized as the DSSE payload.
pub fn statement_bytes(record_bytes: &[u8]) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&statement(record_bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_named_with_backslash_newline_or_bytes_not_utf8_is_a_subject_exactly() {
        let d = |s: &str| Sha256Digest::of(s.as_bytes()).to_string();
        let h = Sha256Digest::of(b"x").hex().to_string();
        let tree = json!({"sha256": d("t"), "files": 3, "bytes": 3, "entries": [
            {"path": "models\\v1.bin", "file": null, "size": 1, "sha256": h},
            {"path": "a\nb.txt", "file": null, "size": 1, "sha256": h},
            {"path": "x\u{fffd}", "path_hex": "78ff", "file": null, "size": 1, "sha256": h},
        ]});
        let record = json!({
            "run_id": "r", "environment": "dev", "component": {"path": "/c", "sha256": d("c")},
            "manifest": {"path": "/m", "sha256": d("m")}, "runner": {}, "stdout": {}, "stderr": {},
            "mounts": [
                {"guest": "/in", "host": "/i", "access": "read", "before": tree},
                {"guest": "/out", "host": "/o", "access": "write", "after": tree},
            ],
        });
        let st = statement(&serde_json::to_vec(&record).unwrap()).unwrap();
        let names: Vec<(&str, &Value)> = st["subject"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["name"].as_str().unwrap(), &s["annotations"]))
            .collect();
        assert_eq!(
            names,
            [
                ("/out/models\\v1.bin", &Value::Null),
                ("/out/a\nb.txt", &Value::Null),
                ("/out/x\u{fffd}", &json!({"pathHex": "78ff"})),
            ]
        );
        let deps = st["predicate"]["buildDefinition"]["resolvedDependencies"]
            .as_array()
            .unwrap();
        let exact: Vec<&Value> = deps
            .iter()
            .filter(|d| d["annotations"]["pathHex"].is_string())
            .collect();
        assert_eq!(exact.len(), 1);
        assert_eq!(exact[0]["name"], "/in/x\u{fffd}");
    }

    #[test]
    fn keyid_matches_the_in_toto_definition() {
        // RFC 8032 test vector 1's public key.
        let public: [u8; 32] =
            hex::decode("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
                .unwrap()
                .try_into()
                .unwrap();
        let key = VerifyingKey::from_bytes(&public).unwrap();
        let canonical = r#"{"keytype":"ed25519","keyval":{"public":"d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"},"scheme":"ed25519"}"#;
        assert_eq!(keyid(&key), Sha256Digest::of(canonical.as_bytes()).hex());
    }

    #[test]
    fn pae_is_the_dsse_encoding() {
        assert_eq!(pae("t", b"hello"), b"DSSEv1 1 t 5 hello");
    }

    #[test]
    fn envelopes_verify_only_with_the_right_key_and_bytes() {
        let a = Signer::from_key(SigningKey::from_bytes(&[1; 32]));
        let b = Signer::from_key(SigningKey::from_bytes(&[2; 32]));
        let trusted = |s: &Signer| TrustedKey {
            keyid: s.keyid().into(),
            key: s.public(),
            source: "test".into(),
        };
        let env = serde_json::to_vec(&a.envelope(PAYLOAD_TYPE, b"{}").unwrap()).unwrap();
        let (t, p) = open_envelope(&env, &[trusted(&a)]).unwrap();
        assert_eq!((t.as_str(), p.as_slice()), (PAYLOAD_TYPE, &b"{}"[..]));
        let err = open_envelope(&env, &[trusted(&b)]).unwrap_err().to_string();
        assert!(err.contains("not a trusted key"), "{err}");
        let mut v: Value = serde_json::from_slice(&env).unwrap();
        v["payload"] = B64.encode(b"{ }").into();
        let err = open_envelope(&serde_json::to_vec(&v).unwrap(), &[trusted(&a)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not verify"), "{err}");
    }
}
