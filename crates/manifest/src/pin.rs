//! `cordon pin`: the digest a manifest pins, compared with (or set to) the
//! digest of the component it names.
//!
//! A reviewer's approval is bound to the digest in the manifest, so a
//! committed manifest must pin exactly what a clean build produces. `pin`
//! writes the digest after a build the author has reviewed; `pin --check`
//! only compares, so CI can fail when committed digests drift from the
//! build (see docs/reproducible-builds.md).
//!
//! The manifest is edited with `toml_edit`, which keeps its comments and
//! layout: the only change a reviewer sees is the `digest` line. The file
//! is replaced atomically (temporary file, fsync, rename), so a failed
//! write leaves the old manifest whole.

use crate::manifest::Sha256Digest;
use std::path::{Path, PathBuf};

/// Why a manifest could not be compared or pinned.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// The manifest cannot be read or has no component to pin.
    #[error("{path}: {message}")]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// What is wrong, and what to do.
        message: String,
    },
    /// The component the manifest names cannot be read.
    #[error(
        "{manifest}: cannot read component {component}: {source}\n  fix: build the step first (the README's first command builds every example step)"
    )]
    Component {
        /// The manifest.
        manifest: PathBuf,
        /// The component path, resolved against the manifest's directory.
        component: PathBuf,
        /// The read error.
        source: std::io::Error,
    },
    /// Writing the manifest failed; it is unchanged.
    #[error("cannot write {0}: {1}")]
    Write(PathBuf, std::io::Error),
}

/// What comparing a manifest with its component found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinned {
    /// The manifest.
    pub manifest: PathBuf,
    /// The digest the manifest pins, if any.
    pub pinned: Option<String>,
    /// The digest of the component as it is on disk.
    pub actual: Sha256Digest,
}

impl Pinned {
    /// Whether the manifest already pins the component's digest.
    pub fn holds(&self) -> bool {
        self.pinned.as_deref() == Some(self.actual.to_string().as_str())
    }
}

/// Reads `manifest` and digests the component it names, changing nothing.
pub fn compare(manifest: &Path) -> Result<Pinned, PinError> {
    Ok(load(manifest)?.0)
}

/// Writes the component's digest into `manifest` when it differs from the
/// one pinned there. Returns what was found before the change.
pub fn pin(manifest: &Path) -> Result<Pinned, PinError> {
    let (found, mut doc) = load(manifest)?;
    if !found.holds() {
        let digest = found.actual.to_string();
        match doc["step"]["digest"].as_value_mut() {
            // Replace the string only: a comment after it stays.
            Some(v) => {
                let decor = v.decor().clone();
                *v = digest.into();
                *v.decor_mut() = decor;
            }
            None => doc["step"]["digest"] = toml_edit::value(digest),
        }
        cordon_core::fsutil::write_atomic_beside_user_files(manifest, doc.to_string().as_bytes())
            .map_err(|e| PinError::Write(manifest.to_path_buf(), e))?;
    }
    Ok(found)
}

fn load(manifest: &Path) -> Result<(Pinned, toml_edit::DocumentMut), PinError> {
    let bad = |message: String| PinError::Manifest {
        path: manifest.to_path_buf(),
        message,
    };
    let source =
        cordon_core::fsutil::read_regular_to_string(manifest, crate::manifest::MAX_FILE_BYTES)
            .map_err(|e| bad(format!("cannot read the manifest: {e}")))?;
    let doc: toml_edit::DocumentMut = source
        .parse()
        .map_err(|e| bad(format!("not valid TOML: {e}")))?;
    let component = doc
        .get("step")
        .and_then(|s| s.get("component"))
        .and_then(|c| c.as_str())
        .ok_or_else(|| {
            bad("[step] has no `component`\n  fix: add `component = \"path/to/step.wasm\"` under [step]".into())
        })?
        .to_string();
    let pinned = doc
        .get("step")
        .and_then(|s| s.get("digest"))
        .and_then(|d| d.as_str())
        .map(str::to_string);
    let dir = match manifest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let component = dir.join(component);
    let actual = cordon_core::digest::file(&component)
        .map(|(digest, _)| digest)
        .map_err(|source| PinError::Component {
            manifest: manifest.to_path_buf(),
            component: component.clone(),
            source,
        })?;
    Ok((
        Pinned {
            manifest: manifest.to_path_buf(),
            pinned,
            actual,
        },
        doc,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(dir: &Path, digest: &str) -> PathBuf {
        std::fs::write(dir.join("step.wasm"), b"\0asm component bytes").unwrap();
        let m = dir.join("step.toml");
        std::fs::write(
            &m,
            format!(
                "# reviewed\n[step]\nname = \"s\"\ncomponent = \"step.wasm\"\ndigest = \"{digest}\" # pinned\n"
            ),
        )
        .unwrap();
        m
    }

    #[test]
    fn check_reports_drift_and_changes_nothing() {
        let d = tempfile::tempdir().unwrap();
        let m = manifest(d.path(), "sha256:00");
        let before = std::fs::read(&m).unwrap();
        let found = compare(&m).unwrap();
        assert!(!found.holds());
        assert_eq!(found.pinned.as_deref(), Some("sha256:00"));
        assert_eq!(
            found.actual,
            Sha256Digest::of(b"\0asm component bytes"),
            "the digest of the file's bytes"
        );
        assert_eq!(std::fs::read(&m).unwrap(), before);
    }

    #[test]
    fn pin_writes_only_the_digest_and_keeps_comments() {
        let d = tempfile::tempdir().unwrap();
        let m = manifest(d.path(), "sha256:00");
        pin(&m).unwrap();
        let text = std::fs::read_to_string(&m).unwrap();
        let want = Sha256Digest::of(b"\0asm component bytes").to_string();
        assert!(
            text.contains(&format!("digest = \"{want}\" # pinned")),
            "{text}"
        );
        assert!(text.starts_with("# reviewed\n"));
        assert!(compare(&m).unwrap().holds());
    }

    #[test]
    fn a_missing_component_names_the_manifest_and_the_fix() {
        let d = tempfile::tempdir().unwrap();
        let m = manifest(d.path(), "sha256:00");
        std::fs::remove_file(d.path().join("step.wasm")).unwrap();
        let e = compare(&m).unwrap_err().to_string();
        assert!(e.starts_with(&m.display().to_string()), "{e}");
        assert!(e.contains("fix: build the step first"), "{e}");
    }
}
