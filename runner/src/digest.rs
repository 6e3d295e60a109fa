//! Content digests of files and directory trees.
//!
//! A tree digest names a directory's exact contents: every entry, its kind,
//! its size and its bytes. It is what the record stores for every mount and
//! what the action cache will key on.
//!
//! This module **never follows a symbolic link**: a link is hashed as a link
//! (its target text), never as the bytes it points to. A step that plants
//! `out/leak -> /etc/shadow` therefore cannot get the target's bytes into a
//! digest, a record or a cache entry. Files are opened with `O_NOFOLLOW` so a
//! link swapped in between the directory walk and the open is refused, too.
//!
//! The digest is sha256 over one line per entry, in byte order of the
//! relative path:
//!
//! ```text
//! D - - path/to/dir
//! F <size> <sha256 hex> path/to/file
//! L <len> <sha256 hex of the target text> path/to/link
//! O - - path/to/fifo-or-device
//! ```

use crate::manifest::Sha256Digest;
use sha2::{Digest as _, Sha256};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// What kind of filesystem entry a tree contains.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link, never followed; `target` is the link text.
    Symlink {
        /// The link's target, as stored in the link.
        target: String,
    },
    /// A FIFO, socket or device node.
    Other,
}

/// One entry of a tree.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    /// Path relative to the tree root, `/`-separated.
    pub path: String,
    /// What it is.
    #[serde(flatten)]
    pub kind: EntryKind,
    /// Size in bytes (files only; 0 otherwise).
    pub size: u64,
    /// sha256 of the contents (files only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// The digest of a directory tree and what it contains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    /// sha256 over the entry lines (see the module docs).
    pub digest: Sha256Digest,
    /// Every entry, sorted by path.
    pub entries: Vec<Entry>,
}

impl Tree {
    /// Number of regular files.
    pub fn file_count(&self) -> u64 {
        self.entries
            .iter()
            .filter(|e| e.kind == EntryKind::File)
            .count() as u64
    }

    /// Total bytes of regular files.
    pub fn total_bytes(&self) -> u64 {
        self.entries.iter().map(|e| e.size).sum()
    }

    /// The entries that are symbolic links.
    pub fn symlinks(&self) -> impl Iterator<Item = &Entry> {
        self.entries
            .iter()
            .filter(|e| matches!(e.kind, EntryKind::Symlink { .. }))
    }
}

/// sha256 of one regular file, opened without following a final symlink.
pub fn file(path: &Path) -> io::Result<(Sha256Digest, u64)> {
    let mut f = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((Sha256Digest::from_bytes(hasher.finalize().into()), total))
}

/// Walks `root` (which must be a directory, not a link to one) and digests
/// everything under it.
pub fn tree(root: &Path) -> io::Result<Tree> {
    let meta = std::fs::symlink_metadata(root)?;
    if !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a directory", root.display()),
        ));
    }
    let mut entries = Vec::new();
    walk(root, "", &mut entries)?;
    entries.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    let mut hasher = Sha256::new();
    for e in &entries {
        let line = match &e.kind {
            EntryKind::Dir => format!("D - - {}\n", e.path),
            EntryKind::File => format!(
                "F {} {} {}\n",
                e.size,
                e.sha256.as_deref().unwrap_or(""),
                e.path
            ),
            EntryKind::Symlink { target } => {
                format!(
                    "L {} {} {}\n",
                    target.len(),
                    hex::encode(Sha256::digest(target.as_bytes())),
                    e.path
                )
            }
            EntryKind::Other => format!("O - - {}\n", e.path),
        };
        hasher.update(line.as_bytes());
    }
    Ok(Tree {
        digest: Sha256Digest::from_bytes(hasher.finalize().into()),
        entries,
    })
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<Entry>) -> io::Result<()> {
    for item in std::fs::read_dir(dir)? {
        let item = item?;
        let name = item.file_name();
        // Names that are not UTF-8 are kept byte-exact in the digest via an
        // escaped form, so two different names never collide.
        let name = match name.to_str() {
            Some(s) => s.replace('\\', "\\\\").replace('\n', "\\n"),
            None => name
                .as_bytes()
                .iter()
                .map(|b| format!("\\x{b:02x}"))
                .collect(),
        };
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let path = item.path();
        // `DirEntry::file_type` does not follow symlinks.
        let ft = item.file_type()?;
        if ft.is_symlink() {
            let target = std::fs::read_link(&path)?;
            out.push(Entry {
                path: rel,
                kind: EntryKind::Symlink {
                    target: target.to_string_lossy().into_owned(),
                },
                size: 0,
                sha256: None,
            });
        } else if ft.is_dir() {
            out.push(Entry {
                path: rel.clone(),
                kind: EntryKind::Dir,
                size: 0,
                sha256: None,
            });
            walk(&path, &rel, out)?;
        } else if ft.is_file() {
            let (digest, size) = file(&path)?;
            out.push(Entry {
                path: rel,
                kind: EntryKind::File,
                size,
                sha256: Some(digest.hex().to_string()),
            });
        } else {
            out.push(Entry {
                path: rel,
                kind: EntryKind::Other,
                size: 0,
                sha256: None,
            });
        }
    }
    Ok(())
}

/// Bytes a tree occupies for the output limit: each file's length rounded up
/// to 4 KiB blocks, and 4 KiB for every entry, so that a flood of empty files
/// or directories is charged like the disk space and inodes it uses. Never
/// follows links; entries that vanish during the walk are skipped.
pub fn charged_bytes(root: &Path) -> u64 {
    const BLOCK: u64 = 4096;
    let mut total = 0u64;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for item in rd.flatten() {
            total = total.saturating_add(BLOCK);
            let Ok(ft) = item.file_type() else { continue };
            if ft.is_dir() {
                stack.push(item.path());
            } else if ft.is_file()
                && let Ok(m) = item.metadata()
            {
                total = total.saturating_add(m.len().div_ceil(BLOCK) * BLOCK);
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_digest_is_stable_and_content_sensitive() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/a.txt"), b"hello").unwrap();
        std::fs::write(d.path().join("b.txt"), b"world").unwrap();
        let t1 = tree(d.path()).unwrap();
        let t2 = tree(d.path()).unwrap();
        assert_eq!(t1, t2);
        assert_eq!(t1.file_count(), 2);
        assert_eq!(t1.total_bytes(), 10);
        assert_eq!(
            t1.entries
                .iter()
                .map(|e| e.path.as_str())
                .collect::<Vec<_>>(),
            ["b.txt", "sub", "sub/a.txt"]
        );
        std::fs::write(d.path().join("b.txt"), b"World").unwrap();
        assert_ne!(tree(d.path()).unwrap().digest, t1.digest);
    }

    #[test]
    fn symlinks_are_hashed_as_links_never_followed() {
        let d = tempfile::tempdir().unwrap();
        let secret = d.path().join("secret");
        std::fs::write(&secret, b"top secret").unwrap();
        let out = d.path().join("out");
        std::fs::create_dir(&out).unwrap();
        std::os::unix::fs::symlink(&secret, out.join("leak")).unwrap();
        let t = tree(&out).unwrap();
        assert_eq!(t.symlinks().count(), 1);
        assert_eq!(t.total_bytes(), 0);
        assert!(t.entries[0].sha256.is_none());
        // Opening the link itself as a file is refused.
        assert!(file(&out.join("leak")).is_err());
    }

    #[test]
    fn charged_bytes_counts_entries_and_blocks() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), vec![0u8; 5000]).unwrap();
        std::fs::write(d.path().join("b"), b"").unwrap();
        assert_eq!(charged_bytes(d.path()), 4096 + 8192 + 4096);
    }
}
