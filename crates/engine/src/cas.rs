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
//! use cordon_engine::cas::Cas;
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
//!
//! **Nothing read back is trusted**: a blob is rehashed, a tree listing is
//! parsed into typed entries ([`parse_listing`]) whose every path is a plain
//! relative path, every blob name a digest and every link target non-empty
//! before anything is created, and the restored tree is hashed again. A
//! store that fails any check is an error, never a panic.

use cordon_core::digest::{self, EntryKind};
use cordon_manifest::manifest::Sha256Digest;
use std::io;
use std::path::{Path, PathBuf};

/// Format identifier of a stored tree listing.
pub const TREE_FORMAT: &str = "cordon.cas-tree/v1";

/// Largest tree listing read back: some 500,000 entries. A listing is
/// read whole; the cap keeps a damaged or planted one from filling memory.
pub const MAX_LISTING_BYTES: u64 = 64 << 20;

/// One entry of a stored tree listing, checked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Listed {
    /// A regular file with the digest of its bytes.
    File {
        /// Relative path.
        path: String,
        /// Blob name (64 hex).
        sha256: String,
    },
    /// A directory.
    Dir {
        /// Relative path.
        path: String,
    },
    /// A symbolic link, restored as a link.
    Symlink {
        /// Relative path.
        path: String,
        /// The link's target.
        target: String,
    },
    /// A special file, which cannot be restored.
    Other {
        /// Relative path.
        path: String,
    },
}

impl Listed {
    /// The entry's relative path.
    pub fn path(&self) -> &str {
        match self {
            Listed::File { path, .. }
            | Listed::Dir { path }
            | Listed::Symlink { path, .. }
            | Listed::Other { path } => path,
        }
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Listing {
    format: String,
    entries: Vec<Listed>,
}

/// Parses a stored tree listing and checks every entry: a plain relative
/// path ([`crate::cache::is_tree_path`]), a blob name that is a digest, a
/// link target that is not empty and holds no NUL. Never panics, whatever
/// the bytes.
pub fn parse_listing(bytes: &[u8]) -> Result<Vec<Listed>, String> {
    let listing: Listing =
        serde_json::from_slice(bytes).map_err(|e| format!("not a tree listing: {e}"))?;
    if listing.format != TREE_FORMAT {
        return Err("it has an unknown format".into());
    }
    for e in &listing.entries {
        let shown = || cordon_core::sanitize::escape_for_terminal(e.path());
        if !crate::cache::is_tree_path(e.path()) {
            return Err(format!("it has an unsafe path `{}`", shown()));
        }
        match e {
            Listed::File { sha256, .. } if !crate::cache::is_blob_name(sha256) => {
                return Err(format!("file `{}` has no valid digest", shown()));
            }
            Listed::Symlink { target, .. } if target.is_empty() || target.contains('\0') => {
                return Err(format!("link `{}` has an invalid target", shown()));
            }
            _ => {}
        }
    }
    Ok(listing.entries)
}

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
        cordon_core::fsutil::create_private_dir(root)?;
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
            cordon_core::fsutil::create_private_dir(
                path.parent().expect("blob paths have a parent"),
            )?;
            cordon_core::fsutil::write_atomic(&path, bytes)?;
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
        // Any size (an output file), but only a regular file: a FIFO or
        // device planted under a blob's name is refused, not read.
        let bytes = cordon_core::fsutil::read_regular(&self.blob_path(d), u64::MAX >> 1)?;
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
        cordon_core::fsutil::create_private_dir(path.parent().expect("tree paths have a parent"))?;
        cordon_core::fsutil::write_atomic(&path, &serde_json::to_vec(&listing)?)?;
        Ok(tree.digest)
    }

    /// Recreates the tree with digest `d` at `dest` (which must not exist),
    /// and checks the result's digest.
    pub fn restore_tree(&self, d: &Sha256Digest, dest: &Path) -> io::Result<()> {
        let bytes = cordon_core::fsutil::read_regular(&self.tree_path(d), MAX_LISTING_BYTES)?;
        let entries = parse_listing(&bytes).map_err(|e| corrupt(format!("tree {d}: {e}")))?;
        std::fs::create_dir(dest)?;
        for e in &entries {
            let path = dest.join(e.path());
            match e {
                Listed::Dir { .. } => std::fs::create_dir(&path)?,
                Listed::File { sha256, .. } => {
                    let blob = Sha256Digest::parse(&format!("sha256:{sha256}"))
                        .map_err(|e| corrupt(e.to_string()))?;
                    std::fs::write(&path, self.get(&blob)?)?;
                }
                Listed::Symlink { target, .. } => std::os::unix::fs::symlink(target, &path)?,
                Listed::Other { path: rel } => {
                    return Err(corrupt(format!(
                        "tree {d} has an entry that cannot be restored: {}",
                        cordon_core::sanitize::escape_for_terminal(rel)
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

    mod parse {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_bytes_parse_or_fail_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                let _ = parse_listing(&bytes);
            }

            #[test]
            fn an_accepted_listing_holds_only_safe_paths_and_blob_names(
                path in "\\PC{0,12}|[a-z./]{1,12}",
                kind in "file|dir|symlink|other|\\PC{0,4}",
                sha in "\\PC{0,4}|[0-9a-f]{64}|[0-9a-f]{63}é",
                target in "\\PC{0,6}",
            ) {
                let listing = serde_json::json!({"format": TREE_FORMAT, "entries": [
                    {"path": path, "kind": kind, "sha256": sha, "target": target}
                ]});
                let mut only_needed = listing.clone();
                let e = &mut only_needed["entries"][0];
                match kind.as_str() {
                    "file" => { e.as_object_mut().unwrap().remove("target"); }
                    "symlink" => { e.as_object_mut().unwrap().remove("sha256"); }
                    _ => {
                        e.as_object_mut().unwrap().remove("target");
                        e.as_object_mut().unwrap().remove("sha256");
                    }
                }
                for l in [listing, only_needed] {
                    if let Ok(entries) = parse_listing(&serde_json::to_vec(&l).unwrap()) {
                        for e in &entries {
                            prop_assert!(crate::cache::is_tree_path(e.path()));
                            if let Listed::File { sha256, .. } = e {
                                prop_assert!(crate::cache::is_blob_name(sha256));
                            }
                            if let Listed::Symlink { target, .. } = e {
                                prop_assert!(!target.is_empty());
                            }
                        }
                    }
                }
            }
        }
    }
}
