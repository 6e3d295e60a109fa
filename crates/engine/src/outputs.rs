//! Staged outputs: a `write` mount is a fresh directory the step fills;
//! its contents replace the host directory only when the step succeeds.
//! What the host directory held before is replaced only when a record can
//! bring it back ([`existing`]): a tree a recorded run published there, or
//! one the run keeps in the content store (`existing = "keep"`).
//!
//! Before publishing, every staged tree is walked without following links.
//! A symbolic link (or a FIFO, socket or device) in an output **fails the
//! step**: a link planted by a step can point anywhere on the host, so
//! publishing it, hashing through it or caching it could leak the target's
//! bytes. The partial output is then kept under the state directory for
//! inspection, exactly like the output of any failed step.
//!
//! Before that, [`check`] walks every writable mount (staged `write`
//! mounts and `read-write` mounts in place) for secret values in names,
//! link targets and contents, and fails closed; this module then only ever
//! sees outputs the check let through, or removes what it refused. The
//! messages here name guest-chosen paths escaped for the terminal.
//!
//! Publishing one mount is atomic from a reader's point of view: the new
//! tree is brought next to the destination, then exchanged with the old one
//! in one `renameat2(RENAME_EXCHANGE)`, so the destination always names a
//! whole tree, old or new, never nothing; the old tree is removed after.
//! On a different filesystem the new tree is first copied next to the
//! destination. A kill leaves at most a `.NAME.cordon-new-*` or
//! `.NAME.cordon-old-*` tree beside it, which `cordon repair` removes.
//!
//! Publication itself is the last step of a run's commit (see
//! [`cordon_record::journal`]): the record that names the outputs is durable first.

use cordon_core::digest::{self, EntryKind, Tree};
use cordon_core::fsutil;
use cordon_core::sanitize::escape_for_terminal;
use std::io;
use std::path::{Path, PathBuf};

pub mod check;
pub mod existing;

/// One staged write mount.
#[derive(Debug, Clone)]
pub struct Staged {
    /// Guest path.
    pub guest: String,
    /// Where the contents are published.
    pub dest: PathBuf,
    /// The staging directory the guest writes into.
    pub dir: PathBuf,
}

/// The staging area of one run.
#[derive(Debug)]
pub struct Staging {
    root: PathBuf,
    /// Staged mounts, in manifest order.
    pub mounts: Vec<Staged>,
}

/// Why staged outputs cannot be published.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The step left a link or special file in an output.
    #[error(
        "output mount {guest} contains {what} `{path}`{detail}; outputs must be regular files and directories"
    )]
    NotPlain {
        /// Guest mount path.
        guest: String,
        /// Path inside the mount.
        path: String,
        /// `a symbolic link` or `a special file`.
        what: &'static str,
        /// ` -> target` for links.
        detail: String,
    },
    /// Hashing or moving failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// Why outputs could not be rebuilt from the content store.
#[derive(Debug, thiserror::Error)]
pub enum RefillError {
    /// A tree's files could not be restored from the store.
    #[error("cannot restore {guest}: {source}")]
    Store {
        /// Guest path.
        guest: String,
        /// What failed.
        source: crate::cas::CasError,
    },
    /// Hashing what was restored failed.
    #[error(transparent)]
    Check(#[from] OutputError),
    /// A rebuilt tree does not have the digest it was restored for.
    #[error("{guest} does not match its tree digest")]
    Mismatch {
        /// Guest path.
        guest: String,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> OutputError {
    let what = what.into();
    move |source| OutputError::Io { what, source }
}

/// A name for a guest path usable as a directory name: `/out/model` → `out_model`.
fn slug(guest: &str) -> String {
    let s: String = guest
        .trim_start_matches('/')
        .chars()
        .map(|c| if c == '/' { '_' } else { c })
        .collect();
    if s.is_empty() { "root".into() } else { s }
}

impl Staging {
    /// Rebuilds each staged mount from the content store and checks it:
    /// `wanted[i]` holds the entries and tree digest of `mounts[i]`. The one
    /// "restore, verify" every publication from the store goes through (a
    /// cache hit, `cordon restore`); the caller publishes or discards.
    pub fn refill(
        &self,
        cas: &crate::cas::Cas,
        wanted: &[(
            &[cordon_core::digest::Entry],
            &cordon_manifest::manifest::Sha256Digest,
        )],
    ) -> Result<Vec<Tree>, RefillError> {
        for (s, (entries, _)) in self.mounts.iter().zip(wanted) {
            cas.restore_entries(entries, &s.dir)
                .map_err(|source| RefillError::Store {
                    guest: s.guest.clone(),
                    source,
                })?;
        }
        let trees = self.verify()?;
        for ((t, (_, digest)), s) in trees.iter().zip(wanted).zip(&self.mounts) {
            if t.digest != **digest {
                return Err(RefillError::Mismatch {
                    guest: s.guest.clone(),
                });
            }
        }
        Ok(trees)
    }

    /// Creates empty staging directories under `root` for `(guest, dest)`
    /// write mounts.
    pub fn create(root: PathBuf, mounts: &[(String, PathBuf)]) -> io::Result<Staging> {
        // A run without write mounts stages nothing: no directory to make
        // now and remove after (which, on a file system mounted with
        // `discard`, costs more than the rest of a trivial step).
        if mounts.is_empty() {
            return Ok(Staging {
                root,
                mounts: Vec::new(),
            });
        }
        fsutil::create_private_dir(&root)?;
        let mut staged = Vec::new();
        for (i, (guest, dest)) in mounts.iter().enumerate() {
            let dir = root.join(format!("{i}-{}", slug(guest)));
            std::fs::create_dir(&dir)?;
            staged.push(Staged {
                guest: guest.clone(),
                dest: dest.clone(),
                dir,
            });
        }
        Ok(Staging {
            root,
            mounts: staged,
        })
    }

    /// The staging root of the run.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Digests every staged tree and refuses links and special files.
    pub fn verify(&self) -> Result<Vec<Tree>, OutputError> {
        let mut trees = Vec::new();
        for m in &self.mounts {
            let tree =
                digest::tree(&m.dir).map_err(io_err(format!("cannot hash output {}", m.guest)))?;
            for e in &tree.entries {
                match &e.kind {
                    EntryKind::Symlink { target } => {
                        return Err(OutputError::NotPlain {
                            guest: m.guest.clone(),
                            path: escape_for_terminal(&e.path),
                            what: "a symbolic link",
                            detail: format!(" -> {}", escape_for_terminal(target)),
                        });
                    }
                    EntryKind::Other => {
                        return Err(OutputError::NotPlain {
                            guest: m.guest.clone(),
                            path: escape_for_terminal(&e.path),
                            what: "a special file",
                            detail: String::new(),
                        });
                    }
                    _ => {}
                }
            }
            trees.push(tree);
        }
        Ok(trees)
    }

    /// Publishes every staged mount to its destination and removes the
    /// staging area.
    pub fn publish(self) -> Result<(), OutputError> {
        for m in &self.mounts {
            publish_one(&m.dir, &m.dest).map_err(io_err(format!(
                "cannot publish {} to {}",
                m.guest,
                m.dest.display()
            )))?;
        }
        let _ = std::fs::remove_dir_all(&self.root);
        Ok(())
    }

    /// Like [`Staging::publish`], and on failure the staging area is
    /// removed too: for outputs the content store still holds (a cache
    /// hit, `cordon restore`), so a failure leaves nothing that blocks the
    /// next attempt. Mounts published before the failure stay published.
    pub fn publish_or_remove(self) -> Result<(), OutputError> {
        let root = self.root.clone();
        let result = self.publish();
        if result.is_err() {
            let _ = check::remove_tree(&root);
        }
        result
    }

    /// Moves the staging area to `keep` (for a failed run) and returns it.
    pub fn keep(self, keep: &Path) -> io::Result<PathBuf> {
        if let Some(parent) = keep.parent() {
            fsutil::create_private_dir(parent)?;
        }
        std::fs::rename(&self.root, keep)?;
        Ok(keep.to_path_buf())
    }

    /// Removes the staging area, at any depth, and says whether it could:
    /// for an output the check refused, whose bytes must not stay behind.
    pub fn destroy(self) -> io::Result<()> {
        if self.mounts.is_empty() {
            return Ok(());
        }
        check::remove_tree(&self.root)
    }

    /// Removes the staging area.
    pub fn discard(self) {
        let _ = self.destroy();
    }
}

/// Publishes `staged` at `dest` (see the module doc). Public for `cordon
/// repair`, which completes publications a killed runner left half done.
pub fn publish_one(staged: &Path, dest: &Path) -> io::Result<()> {
    let parent = dest
        .parent()
        .ok_or_else(|| io::Error::other("output path has no parent"))?;
    std::fs::create_dir_all(parent)?;
    let name = dest.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let tag = format!("{}-{:08x}", std::process::id(), rand::random::<u32>());
    // Bring the new tree onto the destination's filesystem first.
    let incoming = parent.join(format!(".{name}.cordon-new-{tag}"));
    match std::fs::rename(staged, &incoming) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            if let Err(e) = fsutil::copy_tree(staged, &incoming) {
                let _ = std::fs::remove_dir_all(&incoming);
                return Err(e);
            }
        }
        Err(e) => return Err(e),
    }
    cordon_core::fault::point("before-exchange");
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    match renameat_with(CWD, &incoming, CWD, dest, RenameFlags::EXCHANGE) {
        Ok(()) => {
            cordon_core::fault::point("mid-exchange");
            // `incoming` now names the previous tree.
            let old = parent.join(format!(".{name}.cordon-old-{tag}"));
            std::fs::rename(&incoming, &old)?;
            fsutil::sync_dir(parent)?;
            std::fs::remove_dir_all(&old)?;
            Ok(())
        }
        // Nothing to exchange with: the first publication.
        Err(e) if e == rustix::io::Errno::NOENT && !dest.exists() => {
            if let Err(e) = std::fs::rename(&incoming, dest) {
                let _ = std::fs::remove_dir_all(&incoming);
                return Err(e);
            }
            fsutil::sync_dir(parent)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&incoming);
            Err(e.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_replaces_previous_output_atomically() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("out");
        std::fs::create_dir(&dest).unwrap();
        std::fs::write(dest.join("old.txt"), b"old").unwrap();
        let st = Staging::create(d.path().join("stage"), &[("/out".into(), dest.clone())]).unwrap();
        std::fs::write(st.mounts[0].dir.join("new.txt"), b"new").unwrap();
        let trees = st.verify().unwrap();
        assert_eq!(trees[0].file_count(), 1);
        st.publish().unwrap();
        assert!(!dest.join("old.txt").exists());
        assert_eq!(std::fs::read(dest.join("new.txt")).unwrap(), b"new");
        let leftovers: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("out")]);
    }

    #[test]
    fn symlink_in_output_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let st = Staging::create(
            d.path().join("stage"),
            &[("/out".into(), d.path().join("out"))],
        )
        .unwrap();
        std::os::unix::fs::symlink("/etc/passwd", st.mounts[0].dir.join("leak")).unwrap();
        let err = st.verify().unwrap_err().to_string();
        assert!(err.contains("symbolic link `leak` -> /etc/passwd"), "{err}");
    }
}
