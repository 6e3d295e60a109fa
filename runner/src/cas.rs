//! A content-addressed store under `<state>/cas/`: blobs by sha256, and
//! directory trees by their tree digest (see `digest`).
//!
//! ```text
//! cas/blobs/sha256/<2 hex>/<62 hex>   the bytes whose sha256 is the name
//! cas/trees/sha256/<64 hex>.json      a tree listing: {"format", "entries": [
//!                                     {"path", "kind": "file"|"dir"|"symlink"|"other",
//!                                      "sha256" (files), "target" (links)}]}
//! ```
//!
//! ```no_run
//! # fn main() -> std::io::Result<()> {
//! use cordon::cas::Cas;
//! let cas = Cas::open(std::path::Path::new(".cordon/cas"))?;
//! let d = cas.put(b"hello")?;
//! assert!(cas.has(&d));
//! assert_eq!(cas.get(&d)?, b"hello");
//! let tree = cas.store_tree(std::path::Path::new("data"))?;
//! cas.restore_tree(&tree, std::path::Path::new("/tmp/data-again"))?;
//! # Ok(()) }
//! ```
//!
//! Writes are atomic (temporary file, fsync, rename), so a killed writer
//! never leaves a torn blob under its final name, and two writers of the same
//! content simply both succeed. **Reads verify**: [`Cas::get`] and
//! [`Cas::restore_tree`] rehash what they return and fail on a mismatch, so
//! a corrupted or tampered store is an error, never wrong data. Like
//! `digest`, the store never follows a symbolic link when reading a tree;
//! links are stored as links.

use crate::digest::{self, EntryKind};
use crate::manifest::Sha256Digest;
use std::io;
use std::path::{Path, PathBuf};

/// Format identifier of a stored tree listing.
pub const TREE_FORMAT: &str = "cordon.cas-tree/v1";

/// A content-addressed store rooted at one directory.
#[derive(Debug, Clone)]
pub struct Cas {
    root: PathBuf,
}

fn corrupt(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

impl Cas {
    /// The store of a state directory (`<state>/cas`), created if missing.
    pub fn for_state(state_dir: &Path) -> io::Result<Cas> {
        Cas::open(&state_dir.join("cas"))
    }

    /// The store rooted at `root`, created (mode 0700) if missing.
    pub fn open(root: &Path) -> io::Result<Cas> {
        crate::fsutil::create_private_dir(root)?;
        Ok(Cas {
            root: root.to_path_buf(),
        })
    }

    fn blob_path(&self, d: &Sha256Digest) -> PathBuf {
        let h = d.hex();
        self.root.join("blobs/sha256").join(&h[..2]).join(&h[2..])
    }

    fn tree_path(&self, d: &Sha256Digest) -> PathBuf {
        self.root
            .join("trees/sha256")
            .join(format!("{}.json", d.hex()))
    }

    /// Whether a blob with digest `d` is stored.
    pub fn has(&self, d: &Sha256Digest) -> bool {
        self.blob_path(d).is_file()
    }

    /// Whether a tree with digest `d` is stored.
    pub fn has_tree(&self, d: &Sha256Digest) -> bool {
        self.tree_path(d).is_file()
    }

    /// Stores `bytes`; returns their digest.
    pub fn put(&self, bytes: &[u8]) -> io::Result<Sha256Digest> {
        let d = Sha256Digest::of(bytes);
        let path = self.blob_path(&d);
        if !path.is_file() {
            crate::fsutil::create_private_dir(path.parent().expect("blob paths have a parent"))?;
            crate::fsutil::write_atomic(&path, bytes)?;
        }
        Ok(d)
    }

    /// Stores `bytes`, whose digest the caller has already computed and
    /// checked to be `d` (a plan's component): when the blob is present
    /// nothing is hashed or written again.
    pub fn put_verified(&self, d: &Sha256Digest, bytes: &[u8]) -> io::Result<()> {
        if self.has(d) {
            return Ok(());
        }
        let stored = self.put(bytes)?;
        if stored != *d {
            return Err(corrupt(format!(
                "bytes said to have digest {d} have digest {stored}"
            )));
        }
        Ok(())
    }

    /// The bytes with digest `d`, checked against it.
    pub fn get(&self, d: &Sha256Digest) -> io::Result<Vec<u8>> {
        let bytes = std::fs::read(self.blob_path(d))?;
        let actual = Sha256Digest::of(&bytes);
        if actual != *d {
            return Err(corrupt(format!(
                "the store's blob {d} has digest {actual}: the store is corrupt"
            )));
        }
        Ok(bytes)
    }

    /// Stores every file under `dir` and the tree's listing; returns the
    /// tree digest (the same `digest::tree` computes).
    pub fn store_tree(&self, dir: &Path) -> io::Result<Sha256Digest> {
        let tree = digest::tree(dir)?;
        for e in &tree.entries {
            if e.kind == EntryKind::File {
                let bytes = read_nofollow(&dir.join(&e.path))?;
                let d = self.put(&bytes)?;
                if Some(d.hex()) != e.sha256.as_deref() {
                    return Err(corrupt(format!(
                        "{} changed while it was being stored",
                        dir.join(&e.path).display()
                    )));
                }
            }
        }
        let entries: Vec<serde_json::Value> = tree
            .entries
            .iter()
            .map(|e| match &e.kind {
                EntryKind::File => {
                    serde_json::json!({"path": e.path, "kind": "file", "sha256": e.sha256})
                }
                EntryKind::Dir => serde_json::json!({"path": e.path, "kind": "dir"}),
                EntryKind::Symlink { target } => {
                    serde_json::json!({"path": e.path, "kind": "symlink", "target": target})
                }
                EntryKind::Other => serde_json::json!({"path": e.path, "kind": "other"}),
            })
            .collect();
        let listing = serde_json::json!({"format": TREE_FORMAT, "entries": entries});
        let path = self.tree_path(&tree.digest);
        crate::fsutil::create_private_dir(path.parent().expect("tree paths have a parent"))?;
        crate::fsutil::write_atomic(&path, &serde_json::to_vec(&listing)?)?;
        Ok(tree.digest)
    }

    /// Recreates the tree with digest `d` at `dest` (which must not exist),
    /// and checks the result's digest.
    pub fn restore_tree(&self, d: &Sha256Digest, dest: &Path) -> io::Result<()> {
        let listing: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.tree_path(d))?)?;
        if listing["format"] != TREE_FORMAT {
            return Err(corrupt(format!("tree {d} has an unknown format")));
        }
        std::fs::create_dir(dest)?;
        for e in listing["entries"].as_array().into_iter().flatten() {
            let rel = e["path"].as_str().unwrap_or("");
            if rel.is_empty()
                || rel
                    .split('/')
                    .any(|c| c.is_empty() || c == "." || c == "..")
            {
                return Err(corrupt(format!("tree {d} has an unsafe path `{rel}`")));
            }
            let path = dest.join(rel);
            match e["kind"].as_str() {
                Some("dir") => std::fs::create_dir(&path)?,
                Some("file") => {
                    let blob = Sha256Digest::parse(&format!(
                        "sha256:{}",
                        e["sha256"].as_str().unwrap_or("")
                    ))
                    .map_err(corrupt)?;
                    std::fs::write(&path, self.get(&blob)?)?;
                }
                Some("symlink") => {
                    std::os::unix::fs::symlink(e["target"].as_str().unwrap_or(""), &path)?
                }
                _ => {
                    return Err(corrupt(format!(
                        "tree {d} has an entry that cannot be restored: {rel}"
                    )));
                }
            }
        }
        let actual = digest::tree(dest)?.digest;
        if actual != *d {
            return Err(corrupt(format!(
                "restored tree has digest {actual}, not {d}: the store is corrupt"
            )));
        }
        Ok(())
    }
}

fn read_nofollow(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let mut v = Vec::new();
    f.read_to_end(&mut v)?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_round_trip_and_corruption_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let cas = Cas::open(&d.path().join("cas")).unwrap();
        let h = cas.put(b"hello").unwrap();
        assert_eq!(h, Sha256Digest::of(b"hello"));
        assert!(cas.has(&h));
        assert_eq!(cas.get(&h).unwrap(), b"hello");
        assert_eq!(cas.put(b"hello").unwrap(), h, "storing twice is fine");
        std::fs::write(cas.blob_path(&h), b"jello").unwrap();
        let err = cas.get(&h).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    }

    #[test]
    fn trees_round_trip_with_links_kept_as_links() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("a.txt"), b"alpha").unwrap();
        std::fs::write(src.join("sub/b.txt"), b"beta").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", src.join("link")).unwrap();
        let cas = Cas::open(&d.path().join("cas")).unwrap();
        let t = cas.store_tree(&src).unwrap();
        assert!(cas.has_tree(&t));
        cas.restore_tree(&t, &d.path().join("dst")).unwrap();
        assert_eq!(digest::tree(&d.path().join("dst")).unwrap().digest, t);
        assert_eq!(
            std::fs::read_link(d.path().join("dst/link")).unwrap(),
            Path::new("/etc/passwd")
        );
        // A tampered blob fails the restore.
        std::fs::write(cas.blob_path(&Sha256Digest::of(b"beta")), b"BETA").unwrap();
        assert!(cas.restore_tree(&t, &d.path().join("dst2")).is_err());
    }
}
