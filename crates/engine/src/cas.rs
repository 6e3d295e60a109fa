//! The one content-addressed store of a state directory, under
//! `<state>/cas/`: blobs by sha256, and directory trees by their tree digest
//! (see `digest`). Every output file of every successful run (for cache hits
//! and `cordon restore`), every component that ran and every input tree
//! kept for re-execution live here, in one layout:
//!
//! ```text
//! cas/blobs/sha256/<2 hex>/<62 hex>   the bytes whose sha256 is the name
//! cas/trees/sha256/<64 hex>.json      a tree listing: {"format", "entries": [
//!                                     {"path", "path_hex" (names not UTF-8),
//!                                      "kind": "file"|"dir"|"symlink"|"other",
//!                                      "sha256" (files), "target" (links)}]}
//! ```
//!
//! Entry names are any bytes Linux allows (`models\v1.bin`, a newline, a
//! leading `-`, bytes that are not UTF-8): a listing names each entry
//! exactly, with `path_hex` beside a path that is not UTF-8 (see
//! [`cordon_core::digest`]), and files are read and restored under their
//! exact names.
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

use cordon_core::digest::{self, Entry, EntryKind};
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
        /// Its exact bytes in hex, when they are not UTF-8.
        #[serde(default)]
        path_hex: Option<String>,
        /// Blob name (64 hex).
        sha256: String,
    },
    /// A directory.
    Dir {
        /// Relative path.
        path: String,
        /// Its exact bytes in hex, when they are not UTF-8.
        #[serde(default)]
        path_hex: Option<String>,
    },
    /// A symbolic link, restored as a link.
    Symlink {
        /// Relative path.
        path: String,
        /// Its exact bytes in hex, when they are not UTF-8.
        #[serde(default)]
        path_hex: Option<String>,
        /// The link's target.
        target: String,
    },
    /// A special file, which cannot be restored.
    Other {
        /// Relative path.
        path: String,
        /// Its exact bytes in hex, when they are not UTF-8.
        #[serde(default)]
        path_hex: Option<String>,
    },
}

impl Listed {
    /// The entry's relative path, as shown to people.
    pub fn path(&self) -> &str {
        self.fields().0
    }

    /// The `path` and `path_hex` fields.
    fn fields(&self) -> (&str, Option<&str>) {
        match self {
            Listed::File { path, path_hex, .. }
            | Listed::Dir { path, path_hex }
            | Listed::Symlink { path, path_hex, .. }
            | Listed::Other { path, path_hex } => (path, path_hex.as_deref()),
        }
    }

    /// The entry's exact relative path, checked to be plain
    /// ([`digest::exact_path`]).
    pub fn rel_path(&self) -> Result<PathBuf, digest::UnsafePath> {
        let (path, hex) = self.fields();
        digest::exact_path(path, hex).map(digest::bytes_to_path)
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Listing {
    format: String,
    entries: Vec<Listed>,
}

/// Parses a stored tree listing and checks every entry: a plain relative
/// path in its one spelling ([`digest::exact_path`]), a blob name that is a digest, a
/// link target that is not empty and holds no NUL. Never panics, whatever
/// the bytes.
pub(crate) fn parse_listing(bytes: &[u8]) -> Result<Vec<Listed>, String> {
    let listing: Listing =
        serde_json::from_slice(bytes).map_err(|e| format!("not a tree listing: {e}"))?;
    if listing.format != TREE_FORMAT {
        return Err("it has an unknown format".into());
    }
    for e in &listing.entries {
        let shown = || cordon_core::sanitize::escape_for_terminal(e.path());
        if let Err(why) = e.rel_path() {
            return Err(format!("it has an unsafe path `{}` ({why})", shown()));
        }
        match e {
            Listed::File { sha256, .. } if !is_blob_name(sha256) => {
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

/// A blob that is missing or does not match its name.
#[derive(Debug, thiserror::Error)]
pub enum CasError {
    /// Not in the store.
    #[error("blob {0} is not in the content store")]
    Missing(String),
    /// The bytes do not hash to the name.
    #[error("blob {hex} is corrupt: its bytes hash to {actual}")]
    Corrupt {
        /// Expected digest.
        hex: String,
        /// What the bytes hash to.
        actual: String,
    },
    /// The name is not a sha256 digest (64 lowercase hex characters); it
    /// never becomes a path.
    #[error("`{0}` is not a blob name (64 lowercase hex characters)")]
    BadName(String),
    /// Reading or writing failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Whether `hex` is a blob name: exactly 64 lowercase hex characters.
pub fn is_blob_name(hex: &str) -> bool {
    hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether `path` is a plain relative path inside a tree: `/`-separated,
/// no empty, `.` or `..` part, no leading `/`, no NUL
/// ([`digest::check_tree_path`]); any other byte (a backslash, a newline,
/// a leading `-`) is an ordinary part of a name.
pub fn is_tree_path(path: &str) -> bool {
    digest::check_tree_path(path.as_bytes()).is_ok()
}

/// The exact relative path of `e`, checked, or an error naming it.
fn entry_path(e: &Entry) -> Result<PathBuf, CasError> {
    e.rel_path().map_err(|why| {
        CasError::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "cannot use `{}`: not a plain relative path ({why})",
                cordon_core::sanitize::escape_for_terminal(&e.path)
            ),
        ))
    })
}

/// The content store of a state directory, rooted at one directory.
#[derive(Debug, Clone)]
pub struct Cas {
    root: PathBuf,
}

fn corrupt(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Copies `from` to a new file `to` in 1 MiB pieces (never the whole file
/// in memory: an output can be far larger than the runner's own budget),
/// fsyncs it, and returns the sha256 of what was copied. `from` is opened
/// without following a symbolic link.
fn copy_hashing(from: &Path, to: &Path) -> io::Result<String> {
    use sha2::{Digest as _, Sha256};
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let mut src = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(from)?;
    let mut dst = std::fs::File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        dst.write_all(&buf[..n])?;
    }
    dst.sync_all()?;
    Ok(hex::encode(h.finalize()))
}

impl Cas {
    /// The store of a state directory (`<state>/cas`), created only when
    /// something is stored.
    pub fn new(state_dir: &Path) -> Cas {
        Cas {
            root: state_dir.join("cas"),
        }
    }

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

    /// Where blob `hex` is written, once `hex` is known to be a blob name.
    pub(crate) fn blob_at(&self, hex: &str) -> Result<PathBuf, CasError> {
        if !is_blob_name(hex) {
            return Err(CasError::BadName(
                cordon_core::sanitize::escape_for_terminal(hex),
            ));
        }
        Ok(self
            .root
            .join("blobs/sha256")
            .join(&hex[..2])
            .join(&hex[2..]))
    }

    /// Where blob `hex` can be read: its place, or, for a state directory
    /// whose action cache was written before the stores became one, the
    /// place that cache used (`<cas>/sha256/<2>/<62>`), so earlier runs stay
    /// restorable. Reads verify either way.
    fn readable_blob(&self, hex: &str) -> Result<Option<PathBuf>, CasError> {
        let at = self.blob_at(hex)?;
        if at.is_file() {
            return Ok(Some(at));
        }
        let legacy = self.root.join("sha256").join(&hex[..2]).join(&hex[2..]);
        Ok(legacy.is_file().then_some(legacy))
    }

    #[cfg(test)]
    fn blob_path(&self, d: &Sha256Digest) -> PathBuf {
        self.blob_at(d.hex()).expect("a digest is a blob name")
    }

    fn tree_path(&self, d: &Sha256Digest) -> PathBuf {
        self.root
            .join("trees/sha256")
            .join(format!("{}.json", d.hex()))
    }

    /// Whether a blob with digest `d` is stored.
    pub fn has(&self, d: &Sha256Digest) -> bool {
        self.has_blob(d.hex())
    }

    /// Whether blob `hex` is stored (never, for a name that is not a
    /// digest).
    pub fn has_blob(&self, hex: &str) -> bool {
        self.readable_blob(hex).is_ok_and(|p| p.is_some())
    }

    /// Whether a tree with digest `d` is stored.
    pub fn has_tree(&self, d: &Sha256Digest) -> bool {
        self.tree_path(d).is_file()
    }

    /// Stores `bytes`; returns their digest.
    pub fn put(&self, bytes: &[u8]) -> io::Result<Sha256Digest> {
        let d = Sha256Digest::of(bytes);
        let path = self.blob_at(d.hex()).map_err(io::Error::other)?;
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

    /// The bytes with digest `d`, checked against it: for what the runner
    /// reads whole anyway (a component). Trees are restored file by file,
    /// streamed ([`Cas::restore_file`]).
    pub fn get(&self, d: &Sha256Digest) -> io::Result<Vec<u8>> {
        let path = self
            .readable_blob(d.hex())
            .map_err(io::Error::other)?
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("blob {d} is not in the content store"),
                )
            })?;
        // Only a regular file: a FIFO or device planted under a blob's name
        // is refused, not read.
        let bytes = cordon_core::fsutil::read_regular(&path, u64::MAX >> 1)?;
        let actual = Sha256Digest::of(&bytes);
        if actual != *d {
            return Err(corrupt(format!(
                "the store's blob {d} has digest {actual}: the store is corrupt"
            )));
        }
        Ok(bytes)
    }

    /// Stores the file at `path`, which must hash to `hex`; streamed, and
    /// copied (never hard-linked: a later in-place edit of a published file
    /// must not change the store).
    pub fn put_file(&self, path: &Path, hex: &str) -> Result<(), CasError> {
        let dest = self.blob_at(hex)?;
        if dest.is_file() {
            return Ok(());
        }
        let dir = dest.parent().expect("blob has a parent");
        cordon_core::fsutil::create_private_dir(dir)?;
        let tmp = dir.join(format!(
            ".tmp-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let actual = match copy_hashing(path, &tmp) {
            Ok(a) => a,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e.into());
            }
        };
        if actual != hex {
            let _ = std::fs::remove_file(&tmp);
            return Err(CasError::Corrupt {
                hex: hex.into(),
                actual,
            });
        }
        std::fs::rename(&tmp, &dest)?;
        Ok(())
    }

    /// Copies blob `hex` to the new file `dest`, streamed and verified on
    /// the way; a mismatch removes `dest`.
    pub fn restore_file(&self, hex: &str, dest: &Path) -> Result<(), CasError> {
        let src = self
            .readable_blob(hex)?
            .ok_or_else(|| CasError::Missing(hex.into()))?;
        let actual = copy_hashing(&src, dest)?;
        if actual != hex {
            let _ = std::fs::remove_file(dest);
            return Err(CasError::Corrupt {
                hex: hex.into(),
                actual,
            });
        }
        Ok(())
    }

    /// Stores every file of the tree rooted at `dir` whose entries (from
    /// `digest::tree`) are `entries`.
    pub fn put_entries(&self, dir: &Path, entries: &[Entry]) -> Result<(), CasError> {
        for e in entries {
            if let (EntryKind::File, Some(hex)) = (&e.kind, &e.sha256) {
                self.put_file(&dir.join(entry_path(e)?), hex)?;
            }
        }
        Ok(())
    }

    /// Whether every file of a tree with these entries is stored.
    pub fn has_entries(&self, entries: &[Entry]) -> bool {
        entries
            .iter()
            .all(|e| e.sha256.as_deref().is_none_or(|h| self.has_blob(h)))
    }

    /// Recreates a tree of plain files and directories with these entries
    /// under the (existing, empty) directory `dir`.
    pub fn restore_entries(&self, entries: &[Entry], dir: &Path) -> Result<(), CasError> {
        for e in entries {
            let target = dir.join(entry_path(e)?);
            match (&e.kind, &e.sha256) {
                (EntryKind::Dir, _) => std::fs::create_dir_all(&target)?,
                (EntryKind::File, Some(hex)) => {
                    if let Some(p) = target.parent() {
                        std::fs::create_dir_all(p)?;
                    }
                    self.restore_file(hex, &target)?;
                }
                _ => {
                    return Err(CasError::Io(io::Error::other(format!(
                        "cannot restore `{}`: not a plain file",
                        e.shown()
                    ))));
                }
            }
        }
        Ok(())
    }

    /// Stores every file under `dir` (streamed) and the tree's listing;
    /// returns the tree digest (the same `digest::tree` computes). A file
    /// that changes while it is stored is an error.
    pub fn store_tree(&self, dir: &Path) -> io::Result<Sha256Digest> {
        let tree = digest::tree(dir)?;
        for e in &tree.entries {
            if let (EntryKind::File, Some(hex)) = (&e.kind, &e.sha256) {
                let rel = entry_path(e).map_err(|e| corrupt(e.to_string()))?;
                match self.put_file(&dir.join(rel), hex) {
                    Ok(()) => {}
                    Err(CasError::Corrupt { .. }) => {
                        return Err(corrupt(format!(
                            "{}/{} changed while it was being stored",
                            cordon_core::sanitize::escape_for_terminal(&dir.to_string_lossy()),
                            e.shown()
                        )));
                    }
                    Err(CasError::Io(e)) => return Err(e),
                    Err(other) => return Err(corrupt(other.to_string())),
                }
            }
        }
        let entries: Vec<serde_json::Value> = tree
            .entries
            .iter()
            .map(|e| {
                let mut v = match &e.kind {
                    EntryKind::File => {
                        serde_json::json!({"path": e.path, "kind": "file", "sha256": e.sha256})
                    }
                    EntryKind::Dir => serde_json::json!({"path": e.path, "kind": "dir"}),
                    EntryKind::Symlink { target } => {
                        serde_json::json!({"path": e.path, "kind": "symlink", "target": target})
                    }
                    EntryKind::Other => serde_json::json!({"path": e.path, "kind": "other"}),
                };
                // Only a name that is not UTF-8 carries its exact bytes, so
                // listings of UTF-8 trees stay as they always were.
                if let Some(h) = &e.path_hex {
                    v["path_hex"] = h.clone().into();
                }
                v
            })
            .collect();
        let listing = serde_json::json!({"format": TREE_FORMAT, "entries": entries});
        let path = self.tree_path(&tree.digest);
        cordon_core::fsutil::create_private_dir(path.parent().expect("tree paths have a parent"))?;
        cordon_core::fsutil::write_atomic(&path, &serde_json::to_vec(&listing)?)?;
        Ok(tree.digest)
    }

    /// Recreates the tree with digest `d` at `dest` (which must not exist),
    /// file by file (streamed and verified), and checks the result's digest.
    pub fn restore_tree(&self, d: &Sha256Digest, dest: &Path) -> io::Result<()> {
        let bytes = cordon_core::fsutil::read_regular(&self.tree_path(d), MAX_LISTING_BYTES)?;
        let entries = parse_listing(&bytes).map_err(|e| corrupt(format!("tree {d}: {e}")))?;
        std::fs::create_dir(dest)?;
        // Every entry goes into a directory this restore made: a listing
        // could otherwise restore a link and then write "inside" it, outside
        // `dest`, before the digest check below finds the tree wrong.
        let mut made = std::collections::HashSet::from([PathBuf::new()]);
        for e in &entries {
            let rel = e
                .rel_path()
                .map_err(|why| corrupt(format!("tree {d}: {why}")))?;
            if !made.contains(rel.parent().unwrap_or(Path::new(""))) {
                return Err(corrupt(format!(
                    "tree {d}: `{}` is not in a directory the tree lists before it",
                    cordon_core::sanitize::escape_for_terminal(e.path())
                )));
            }
            let path = dest.join(&rel);
            match e {
                Listed::Dir { .. } => {
                    std::fs::create_dir(&path)?;
                    made.insert(rel);
                }
                Listed::File { sha256, .. } => match self.restore_file(sha256, &path) {
                    Ok(()) => {}
                    Err(CasError::Io(e)) => return Err(e),
                    Err(other) => return Err(corrupt(format!("tree {d}: {other}"))),
                },
                Listed::Symlink { target, .. } => std::os::unix::fs::symlink(target, &path)?,
                Listed::Other { path: rel, .. } => {
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
    fn one_layout_serves_entries_and_trees_and_blobs_of_the_old_layout_stay_readable() {
        let d = tempfile::tempdir().unwrap();
        let cas = Cas::new(d.path());
        let f = d.path().join("f");
        std::fs::write(&f, b"output").unwrap();
        let hex = Sha256Digest::of(b"output").hex().to_string();
        cas.put_file(&f, &hex).unwrap();
        // What the action cache stores, `get` and trees read: one place.
        assert!(cas.has(&Sha256Digest::of(b"output")));
        assert_eq!(cas.get(&Sha256Digest::of(b"output")).unwrap(), b"output");
        assert!(
            d.path()
                .join("cas/blobs/sha256")
                .join(&hex[..2])
                .join(&hex[2..])
                .is_file()
        );
        // A blob an older runner's action cache wrote at `cas/sha256/`.
        let old = Sha256Digest::of(b"older").hex().to_string();
        let legacy = d.path().join("cas/sha256").join(&old[..2]);
        std::fs::create_dir_all(&legacy).unwrap();
        std::fs::write(legacy.join(&old[2..]), b"older").unwrap();
        assert!(cas.has_blob(&old));
        cas.restore_file(&old, &d.path().join("restored")).unwrap();
        assert_eq!(std::fs::read(d.path().join("restored")).unwrap(), b"older");
        // ... and is verified like any other.
        std::fs::write(legacy.join(&old[2..]), b"tampered").unwrap();
        assert!(matches!(
            cas.restore_file(&old, &d.path().join("again")),
            Err(CasError::Corrupt { .. })
        ));
        assert!(!d.path().join("again").exists());
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

    /// Writes `files` (exact byte paths, parents created) under `root`.
    fn write_named(root: &Path, files: &[(Vec<u8>, Vec<u8>)]) {
        for (name, body) in files {
            let p = root.join(digest::bytes_to_path(name.clone()));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, body).unwrap();
        }
    }

    #[test]
    fn output_named_with_backslash_newline_dash_or_bytes_not_utf8_round_trips_exactly() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        std::fs::create_dir(&src).unwrap();
        let names: Vec<Vec<u8>> = vec![
            b"models\\v1.bin".to_vec(),
            b"a\nb.txt".to_vec(),
            b"tab\there".to_vec(),
            b"--rf".to_vec(),
            b"caf\xe9/\xff\xfe".to_vec(),
            b"\\x41".to_vec(),
        ];
        let files: Vec<_> = names.iter().map(|n| (n.clone(), n.clone())).collect();
        write_named(&src, &files);
        let cas = Cas::open(&d.path().join("cas")).unwrap();
        let t = cas.store_tree(&src).unwrap();
        let before = digest::tree(&src).unwrap();
        assert_eq!(t, before.digest);
        // The listing is restored under the exact names...
        let dst = d.path().join("dst");
        cas.restore_tree(&t, &dst).unwrap();
        for n in &names {
            let p = dst.join(digest::bytes_to_path(n.clone()));
            assert_eq!(std::fs::read(&p).unwrap(), *n);
        }
        // ... and so are the entries a record or cache entry keeps.
        let again = d.path().join("again");
        std::fs::create_dir(&again).unwrap();
        cas.put_entries(&src, &before.entries).unwrap();
        cas.restore_entries(&before.entries, &again).unwrap();
        assert_eq!(digest::tree(&again).unwrap(), before);
    }

    #[test]
    fn a_listing_whose_path_hex_escapes_the_tree_is_refused() {
        let h = "a".repeat(64);
        for (path, hex) in [
            ("\u{fffd}/../x", "ff2f2e2e2f78"),
            ("/\u{fffd}", "2fff"),
            ("\u{fffd}\u{0}", "ff00"),
            ("x", "78"),
            ("other", "ff"),
        ] {
            let listing = serde_json::json!({"format": TREE_FORMAT, "entries": [
                {"path": path, "path_hex": hex, "kind": "file", "sha256": h}
            ]});
            let err = parse_listing(&serde_json::to_vec(&listing).unwrap()).unwrap_err();
            assert!(err.contains("unsafe path"), "{err}");
        }
    }

    mod names {
        use super::*;
        use proptest::prelude::*;

        /// A name Linux allows: any bytes but `/` and NUL, not `.` or `..`.
        fn name() -> impl Strategy<Value = Vec<u8>> {
            proptest::collection::vec(
                any::<u8>().prop_filter("no / or NUL", |b| *b != b'/' && *b != 0),
                1..16,
            )
            .prop_filter("not . or ..", |n| n != b"." && n != b"..")
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]
            #[test]
            fn any_byte_names_survive_digest_store_restore_digest(
                files in proptest::collection::btree_map(
                    proptest::collection::vec(name(), 1..3),
                    proptest::collection::vec(any::<u8>(), 0..32),
                    1..6,
                ),
            ) {
                let d = tempfile::tempdir().unwrap();
                let src = d.path().join("src");
                std::fs::create_dir(&src).unwrap();
                // A path that is a prefix of another is a directory there,
                // so only the longest paths of each branch are files.
                let mut written = Vec::new();
                for (parts, body) in &files {
                    let path = parts.join(&b'/');
                    let blocked = written.iter().any(|(p, _): &(Vec<u8>, Vec<u8>)| {
                        p.starts_with(&path) && p.get(path.len()) == Some(&b'/')
                            || path.starts_with(p) && path.get(p.len()) == Some(&b'/')
                    });
                    if !blocked && !written.iter().any(|(p, _)| *p == path) {
                        written.push((path, body.clone()));
                    }
                }
                write_named(&src, &written);
                let before = digest::tree(&src).unwrap();
                let cas = Cas::open(&d.path().join("cas")).unwrap();
                let stored = cas.store_tree(&src).unwrap();
                prop_assert_eq!(&stored, &before.digest);
                let dst = d.path().join("dst");
                cas.restore_tree(&stored, &dst).unwrap();
                let after = digest::tree(&dst).unwrap();
                prop_assert_eq!(&after, &before);
                for (path, body) in &written {
                    let p = dst.join(digest::bytes_to_path(path.clone()));
                    prop_assert_eq!(&std::fs::read(p).unwrap(), body);
                }
                // The entries as a record or cache entry keeps them (JSON and
                // back) rebuild the same tree, too.
                let json = serde_json::to_vec(&before.entries).unwrap();
                let entries: Vec<Entry> = serde_json::from_slice(&json).unwrap();
                let again = d.path().join("again");
                std::fs::create_dir(&again).unwrap();
                cas.restore_entries(&entries, &again).unwrap();
                prop_assert_eq!(digest::tree(&again).unwrap(), before);
            }
        }
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
                            prop_assert!(is_tree_path(e.path()));
                            if let Listed::File { sha256, .. } = e {
                                prop_assert!(is_blob_name(sha256));
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
