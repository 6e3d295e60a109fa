//! Reviewer approvals: separation of duties for protected environments.
//!
//! `cordon approve step.toml --key REVIEWER.key` signs a statement that
//! binds the manifest's sha256 and the component digest it pins, and keeps
//! it beside the manifest in `<stem>.approvals.json` (a JSON array of DSSE
//! envelopes, payload type [`PAYLOAD_TYPE`], one per reviewer key). Any
//! change to the manifest (a grant, a limit, a re-pinned component) voids
//! every approval of it: the reviewer approved what they read, nothing
//! else. Environments list the reviewer keys they trust in `cordon.toml`
//! (`[env.NAME.policy] reviewers`), and the user trusts more in their own
//! configuration (`<secrets home>/trusted/NAME/reviewers/*.pub`); the
//! default policy pack requires a valid approval by one of them in
//! protected environments.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use cordon_manifest::manifest::{Manifest, Sha256Digest};
use cordon_record::attest::{Signer, TrustedKey};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// The DSSE payload type of an approval.
pub const PAYLOAD_TYPE: &str = "application/vnd.cordon.approval+json";

/// The `_type` of an approval payload.
pub const APPROVAL_TYPE: &str = "https://cordon.dev/approval/v1";

/// Why an approval could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    /// The manifest is invalid.
    #[error("{0}")]
    Manifest(#[from] cordon_manifest::manifest::ManifestError),
    /// The reviewer's key cannot be used.
    #[error("{0}")]
    Key(#[from] cordon_record::attest::AttestError),
    /// The component on disk is not the one the manifest pins.
    #[error("{0}")]
    Component(String),
    /// The approvals file is damaged or cannot be written.
    #[error("{path}: {message}")]
    File {
        /// The approvals file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// The approvals file of the manifest at `manifest_path`.
pub fn file_for(manifest_path: &Path) -> PathBuf {
    let stem = manifest_path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("step");
    manifest_path.with_file_name(format!("{stem}.approvals.json"))
}

/// What [`approve`] wrote.
#[derive(Debug)]
pub struct Written {
    /// The approvals file.
    pub path: PathBuf,
    /// The reviewer key's id.
    pub keyid: String,
    /// Whether an earlier approval by the same key was replaced.
    pub replaced: bool,
}

/// Signs an approval of the manifest at `manifest_path` with the reviewer
/// key at `key_path`. The component must be on disk and match the pinned
/// digest: a reviewer approves a component they can inspect.
pub fn approve(manifest_path: &Path, key_path: &Path) -> Result<Written, ApprovalError> {
    let manifest = Manifest::load(manifest_path)?;
    let component = manifest.dir.join(&manifest.component);
    let bytes = cordon_manifest::plan::read_component(&component).map_err(|e| {
        ApprovalError::Component(format!(
            "cannot read component {}: {e}; build it before approving",
            component.display()
        ))
    })?;
    let actual = Sha256Digest::of(&bytes);
    if actual != manifest.digest {
        return Err(ApprovalError::Component(format!(
            "component {} has digest {actual}, but {} pins {}; pin the build you reviewed (`cordon pin`) before approving",
            component.display(),
            manifest_path.display(),
            manifest.digest
        )));
    }
    let signer = Signer::load(key_path)?;
    let payload = json!({
        "_type": APPROVAL_TYPE,
        "step": manifest.name,
        "manifest": {"sha256": manifest.sha256.hex()},
        "component": {"sha256": manifest.digest.hex()},
        "approvedAt": cordon_record::record::now_rfc3339(),
    });
    let envelope = signer.envelope(
        PAYLOAD_TYPE,
        &serde_json::to_vec(&payload).expect("JSON encodes"),
    )?;
    let path = file_for(manifest_path);
    let mut list = read_file(&path)?;
    let before = list.len();
    list.retain(|e| keyid_of(e) != Some(signer.keyid()));
    let replaced = list.len() != before;
    list.push(envelope);
    let text = serde_json::to_vec_pretty(&list).expect("JSON encodes");
    cordon_core::fsutil::write_atomic_beside_user_files(&path, &text).map_err(|e| {
        ApprovalError::File {
            path: path.clone(),
            message: format!("cannot write: {e}"),
        }
    })?;
    Ok(Written {
        path,
        keyid: signer.keyid().to_string(),
        replaced,
    })
}

/// Largest approvals file read. It holds one envelope of about a
/// kilobyte per reviewer; it sits in a checkout anyone can change, and is
/// read whole, so a planted large file (or `/dev/zero` behind a link) must
/// not fill the runner's memory.
pub const MAX_APPROVALS_BYTES: u64 = 1 << 20;

fn read_file(path: &Path) -> Result<Vec<Value>, ApprovalError> {
    match cordon_core::fsutil::read_regular(path, MAX_APPROVALS_BYTES) {
        Ok(b) => serde_json::from_slice::<Vec<Value>>(&b).map_err(|e| ApprovalError::File {
            path: path.to_path_buf(),
            message: format!("not a JSON array of approval envelopes: {e}"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(ApprovalError::File {
            path: path.to_path_buf(),
            message: format!("cannot read: {e}"),
        }),
    }
}

fn keyid_of(envelope: &Value) -> Option<&str> {
    envelope["signatures"][0]["keyid"].as_str()
}

/// Whether a manifest is approved for an environment, and why not.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    /// At least one approval is valid, current and by a trusted reviewer.
    pub approved: bool,
    /// The key ids of the reviewers whose approvals hold.
    pub reviewers: Vec<String>,
    /// Why each other approval does not count (stale, untrusted, bad).
    pub problems: Vec<String>,
}

/// Checks the approvals of `manifest` against the reviewer keys an
/// environment trusts. A manifest written inline in a pipeline has no
/// approvals file and is never approved.
pub fn status(manifest: &Manifest, trusted: &[TrustedKey]) -> Status {
    status_of(&manifest.path, &manifest.sha256, &manifest.digest, trusted)
}

/// Like [`status`], for the manifest at `manifest_path` as a record names
/// it: the approvals must bind exactly `manifest_sha256` and
/// `component_digest` (what ran), whatever the file holds now.
/// `cordon promote` asks this of every step in an artifact's provenance.
pub fn status_of(
    manifest_path: &Path,
    manifest_sha256: &Sha256Digest,
    component_digest: &Sha256Digest,
    trusted: &[TrustedKey],
) -> Status {
    let path = file_for(manifest_path);
    let mut st = Status::default();
    let list = match read_file(&path) {
        Ok(l) => l,
        Err(e) => {
            st.problems.push(e.to_string());
            return st;
        }
    };
    if list.is_empty() {
        st.problems
            .push(format!("no approvals ({} does not exist)", path.display()));
        return st;
    }
    for envelope in &list {
        let keyid = keyid_of(envelope).unwrap_or("?");
        // The keyid is the file's, not necessarily hex: cut it at a
        // character, never inside one.
        let short: String = keyid.chars().take(8).collect();
        match check(envelope, manifest_sha256, component_digest, trusted) {
            Ok(()) => {
                st.approved = true;
                st.reviewers.push(keyid.to_string());
            }
            Err(why) => st.problems.push(format!("approval by {short}: {why}")),
        }
    }
    st
}

fn check(
    envelope: &Value,
    manifest_sha256: &Sha256Digest,
    component_digest: &Sha256Digest,
    trusted: &[TrustedKey],
) -> Result<(), String> {
    let bytes = serde_json::to_vec(envelope).map_err(|e| e.to_string())?;
    let (payload_type, payload) = match cordon_record::attest::open_envelope(&bytes, trusted) {
        Ok(p) => p,
        Err(e) => {
            // Name the problem a reviewer can act on.
            let text = e.to_string();
            return Err(if text.contains("not a trusted key") {
                "signed by a key that is not a trusted reviewer of this environment".into()
            } else if text.contains("no trusted keys") {
                "this environment trusts no reviewer keys ([env.NAME.policy] reviewers, or <secrets home>/trusted/NAME/reviewers/)".into()
            } else {
                text
            });
        }
    };
    if payload_type != PAYLOAD_TYPE {
        return Err(format!("payload type {payload_type} is not an approval"));
    }
    let p: Value = serde_json::from_slice(&payload).map_err(|e| format!("payload: {e}"))?;
    if p["_type"] != APPROVAL_TYPE {
        return Err("payload is not an approval".into());
    }
    if p["manifest"]["sha256"].as_str() != Some(manifest_sha256.hex()) {
        return Err("stale: the manifest changed after it was approved".into());
    }
    if p["component"]["sha256"].as_str() != Some(component_digest.hex()) {
        return Err("stale: the component changed after it was approved".into());
    }
    Ok(())
}

/// Decodes an approval envelope's payload without checking it (for
/// listing); `None` if it is not one.
pub fn payload_of(envelope: &Value) -> Option<Value> {
    let b = B64.decode(envelope["payload"].as_str()?).ok()?;
    serde_json::from_slice(&b).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(d: &Path) -> (PathBuf, PathBuf, TrustedKey) {
        std::fs::write(d.join("c.wasm"), b"component bytes").unwrap();
        let digest = Sha256Digest::of(b"component bytes");
        let m = d.join("step.toml");
        std::fs::write(
            &m,
            format!("[step]\nname = \"s\"\ncomponent = \"c.wasm\"\ndigest = \"{digest}\"\n"),
        )
        .unwrap();
        let (private, public) = cordon_record::attest::generate();
        std::fs::write(d.join("r.key"), private).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d.join("r.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(d.join("r.pub"), public).unwrap();
        let trusted = TrustedKey::load(&d.join("r.pub")).unwrap();
        (m, d.join("r.key"), trusted)
    }

    #[test]
    fn an_approval_holds_until_the_manifest_or_component_changes() {
        let d = tempfile::tempdir().unwrap();
        let (m, key, trusted) = setup(d.path());
        let w = approve(&m, &key).unwrap();
        assert_eq!(w.path, d.path().join("step.approvals.json"));
        let st = status(&Manifest::load(&m).unwrap(), std::slice::from_ref(&trusted));
        assert!(st.approved, "{st:?}");

        // Approving again replaces, never duplicates.
        assert!(approve(&m, &key).unwrap().replaced);
        assert_eq!(read_file(&w.path).unwrap().len(), 1);

        // An edit to the manifest voids it.
        let text = std::fs::read_to_string(&m).unwrap();
        std::fs::write(&m, format!("{text}args = [\"--more\"]\n")).unwrap();
        let st = status(&Manifest::load(&m).unwrap(), std::slice::from_ref(&trusted));
        assert!(!st.approved);
        assert!(
            st.problems[0].contains("stale: the manifest changed"),
            "{st:?}"
        );

        // Untrusted keys do not count.
        std::fs::write(&m, text).unwrap();
        let (_, other_pub) = cordon_record::attest::generate();
        std::fs::write(d.path().join("o.pub"), other_pub).unwrap();
        let other = TrustedKey::load(&d.path().join("o.pub")).unwrap();
        let st = status(&Manifest::load(&m).unwrap(), &[other]);
        assert!(!st.approved);
        assert!(st.problems[0].contains("not a trusted reviewer"), "{st:?}");
    }

    #[test]
    fn a_component_that_does_not_match_its_pin_is_not_approved() {
        let d = tempfile::tempdir().unwrap();
        let (m, key, _) = setup(d.path());
        std::fs::write(d.path().join("c.wasm"), b"rebuilt").unwrap();
        let err = approve(&m, &key).unwrap_err().to_string();
        assert!(err.contains("pin the build you reviewed"), "{err}");
        assert!(!d.path().join("step.approvals.json").exists());
    }
}
