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
//! path as the line writes it (see below):
//!
//! ```text
//! D - - path/to/dir
//! F <size> <sha256 hex> path/to/file
//! L <len> <sha256 hex of the target text> path/to/link
//! O - - path/to/fifo-or-device
//! ```
//!
//! **Names are any bytes Linux allows** (everything but `/` and NUL): a
//! backslash, a newline, a tab, a leading dash or bytes that are not UTF-8
//! are ordinary. Each line names its path in an injective text form (see
//! [`digest_name`]): in a UTF-8 name `\` is written `\\` and a newline
//! `\n`; a name that is not UTF-8 is written byte by byte as `\xNN`. So two
//! different names never share a line, and the digest of a tree whose names
//! are all UTF-8 is the one earlier runners computed. Lines are sorted by
//! that form. An [`Entry`] keeps the exact name: `path` is the name itself
//! when it is UTF-8; otherwise `path` shows it (U+FFFD for the bytes that
//! are not UTF-8) and `path_hex` holds the exact bytes, and only
//! [`Entry::rel_path`] turns an entry into a filesystem path, after
//! checking it ([`check_tree_path`]): an entry read back from a record, a
//! listing or a cache entry is never trusted.

use sha2::{Digest as _, Sha256};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// A sha256 content digest, stored as 64 lowercase hex characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Digest(String);

impl Sha256Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Sha256Digest(hex::encode(Sha256::digest(bytes)))
    }

    /// Wraps an already computed digest.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Sha256Digest(hex::encode(bytes))
    }

    /// Parses the manifest form `sha256:<64 lowercase hex>`.
    pub fn parse(text: &str) -> Result<Self, DigestSyntaxError> {
        let hex = text
            .strip_prefix("sha256:")
            .ok_or_else(|| DigestSyntaxError {
                text: text.to_string(),
                problem: "must start with `sha256:`",
            })?;
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(DigestSyntaxError {
                text: text.to_string(),
                problem: "must be `sha256:` followed by 64 lowercase hex characters",
            });
        }
        Ok(Sha256Digest(hex.to_string()))
    }

    /// The 64 hex characters.
    pub fn hex(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for Sha256Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Read back only in the form it is written, `sha256:<64 lowercase hex>`:
/// a record or cache entry with anything else is refused, never sliced.
impl<'de> serde::Deserialize<'de> for Sha256Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
        Sha256Digest::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", self.0)
    }
}

/// A digest that is not in the form `sha256:<64 lowercase hex>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("digest `{text}` {problem}")]
pub struct DigestSyntaxError {
    /// The text as given.
    pub text: String,
    /// What is wrong with it.
    pub problem: &'static str,
}

/// What kind of filesystem entry a tree contains.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    /// Path relative to the tree root, `/`-separated: exactly the bytes on
    /// disk when they are UTF-8, else their lossy form (for people only;
    /// `path_hex` is then the path).
    pub path: String,
    /// The exact bytes of the path, in lowercase hex, present only when
    /// they are not UTF-8 (see [`path_fields`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_hex: Option<String>,
    /// What it is.
    #[serde(flatten)]
    pub kind: EntryKind,
    /// Size in bytes (files only; 0 otherwise).
    pub size: u64,
    /// sha256 of the contents (files only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl Entry {
    /// An entry named by the exact bytes `path` (relative, `/`-separated).
    pub fn named(path: &[u8], kind: EntryKind, size: u64, sha256: Option<String>) -> Entry {
        let (path, path_hex) = path_fields(path);
        Entry {
            path,
            path_hex,
            kind,
            size,
            sha256,
        }
    }

    /// The exact bytes of the path, checked to be a plain relative path
    /// ([`check_tree_path`]) in its one spelling ([`exact_path`]).
    pub fn path_bytes(&self) -> Result<Vec<u8>, UnsafePath> {
        exact_path(&self.path, self.path_hex.as_deref())
    }

    /// The path as a relative filesystem path, checked like
    /// [`Entry::path_bytes`]: the only way an entry becomes a path.
    pub fn rel_path(&self) -> Result<std::path::PathBuf, UnsafePath> {
        Ok(bytes_to_path(self.path_bytes()?))
    }

    /// The path for a message: the exact bytes, escaped for the terminal.
    pub fn shown(&self) -> String {
        match self.path_bytes() {
            Ok(b) => crate::sanitize::escape_bytes_for_terminal(&b),
            Err(_) => crate::sanitize::escape_for_terminal(&self.path),
        }
    }
}

/// `bytes` as a filesystem path, exactly.
pub fn bytes_to_path(bytes: Vec<u8>) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStringExt;
    std::path::PathBuf::from(std::ffi::OsString::from_vec(bytes))
}

/// The JSON fields that name the path `bytes`: the path itself and no
/// `path_hex` when it is UTF-8 (so every document written before names were
/// kept exactly reads the same), else its lossy form and its exact bytes in
/// hex.
pub fn path_fields(bytes: &[u8]) -> (String, Option<String>) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_string(), None),
        Err(_) => (
            String::from_utf8_lossy(bytes).into_owned(),
            Some(hex::encode(bytes)),
        ),
    }
}

/// The exact path that the fields `path` and `path_hex` of a document name,
/// checked: `path_hex` must be lowercase hex of bytes that are *not* UTF-8
/// (a UTF-8 path has one spelling, `path` alone) and `path` must be their
/// lossy form, so what people are shown is what is restored; the bytes must
/// be a plain relative path ([`check_tree_path`]).
pub fn exact_path(path: &str, path_hex: Option<&str>) -> Result<Vec<u8>, UnsafePath> {
    let bytes = match path_hex {
        None => path.as_bytes().to_vec(),
        Some(h) => {
            let lower = h
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            let bytes = hex::decode(h)
                .ok()
                .filter(|_| lower)
                .ok_or(UnsafePath::BadHex)?;
            if std::str::from_utf8(&bytes).is_ok() {
                return Err(UnsafePath::HexOfUtf8);
            }
            if String::from_utf8_lossy(&bytes) != path {
                return Err(UnsafePath::Mismatch);
            }
            bytes
        }
    };
    check_tree_path(&bytes)?;
    Ok(bytes)
}

/// Whether `path` is a plain relative path inside a tree: `/`-separated,
/// not empty, no empty, `.` or `..` component (so no leading or trailing
/// `/`), no NUL. Every other byte is allowed.
pub fn check_tree_path(path: &[u8]) -> Result<(), UnsafePath> {
    if path.is_empty() {
        return Err(UnsafePath::Empty);
    }
    if path.contains(&0) {
        return Err(UnsafePath::Nul);
    }
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" => return Err(UnsafePath::EmptyComponent),
            b"." | b".." => return Err(UnsafePath::DotComponent),
            _ => {}
        }
    }
    Ok(())
}

/// Why a path read back from a document is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UnsafePath {
    /// The path is empty.
    #[error("the path is empty")]
    Empty,
    /// It holds a NUL byte.
    #[error("the path holds a NUL byte")]
    Nul,
    /// It starts or ends with `/`, or holds `//`.
    #[error("the path has an empty component (a leading, trailing or doubled `/`)")]
    EmptyComponent,
    /// A component is `.` or `..`.
    #[error("the path has a `.` or `..` component")]
    DotComponent,
    /// `path_hex` is not lowercase hex.
    #[error("its `path_hex` is not lowercase hex")]
    BadHex,
    /// `path_hex` spells a UTF-8 path, which is written in `path` alone.
    #[error("its `path_hex` spells a UTF-8 path")]
    HexOfUtf8,
    /// `path` is not what `path_hex` shows as.
    #[error("its `path` is not the lossy form of its `path_hex`")]
    Mismatch,
}

/// The form in which a digest line names the path `bytes` (see the module
/// docs): per `/`-separated component, a UTF-8 component with `\` doubled
/// and a newline written `\n`, any other component as `\xNN` per byte.
/// Injective, and the identity on UTF-8 names without `\` or newline.
pub fn digest_name(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for (i, c) in bytes.split(|&b| b == b'/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        match std::str::from_utf8(c) {
            Ok(s) => {
                for ch in s.chars() {
                    match ch {
                        '\\' => out.push_str("\\\\"),
                        '\n' => out.push_str("\\n"),
                        ch => out.push(ch),
                    }
                }
            }
            Err(_) => {
                for b in c {
                    out.push_str(&format!("\\x{b:02x}"));
                }
            }
        }
    }
    out
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
    let f = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    hash_reader(f)
}

/// sha256 and length of everything `r` yields.
fn hash_reader(mut r: impl Read) -> io::Result<(Sha256Digest, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((Sha256Digest::from_bytes(hasher.finalize().into()), total))
}

/// Walks `root` (which must be a directory, not a link to one) and digests
/// everything under it, reading every file.
pub fn tree(root: &Path) -> io::Result<Tree> {
    tree_with(root, None)
}

/// Like [`tree`], but files whose device, inode, size, mtime and ctime are
/// those recorded in `index` are not read again: their recorded digest is
/// used. Files are hashed on several threads (see [`default_hash_threads`]).
pub fn tree_with(root: &Path, index: Option<&HashIndex>) -> io::Result<Tree> {
    tree_with_threads(root, index, default_hash_threads())
}

/// How many threads a tree hash uses by default: one per core, at most
/// eight. Asked once per process: the answer reads several cgroup files,
/// and a run hashes its inputs and each output.
pub fn default_hash_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_HASH_THREADS)
    })
}

/// Like [`tree_with`], on at most `threads` threads (at least one). The
/// digest does not depend on the thread count; benchmarks use this to
/// measure hashing on one core against several.
pub fn tree_with_threads(
    root: &Path,
    index: Option<&HashIndex>,
    threads: usize,
) -> io::Result<Tree> {
    let meta = std::fs::symlink_metadata(root)?;
    if !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a directory", root.display()),
        ));
    }
    let mut entries = Vec::new();
    let mut files = Vec::new();
    let mut names = Vec::new();
    walk(root, &[], &mut entries, &mut names, &mut files)?;
    hash_files(&mut entries, &files, index, threads)?;
    // Sorted by the form the lines write (not by the raw bytes): that is
    // the order earlier runners used, so their digests still hold.
    let mut named: Vec<(String, Entry)> = names.into_iter().zip(entries).collect();
    named.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut hasher = Sha256::new();
    for (name, e) in &named {
        hasher.update(digest_line(name, e).as_bytes());
    }
    Ok(Tree {
        digest: Sha256Digest::from_bytes(hasher.finalize().into()),
        entries: named.into_iter().map(|(_, e)| e).collect(),
    })
}

/// The line of entry `e`, whose path the line writes as `name` (its
/// [`digest_name`]).
fn digest_line(name: &str, e: &Entry) -> String {
    match &e.kind {
        EntryKind::Dir => format!("D - - {name}\n"),
        EntryKind::File => format!(
            "F {} {} {name}\n",
            e.size,
            e.sha256.as_deref().unwrap_or(""),
        ),
        EntryKind::Symlink { target } => format!(
            "L {} {} {name}\n",
            target.len(),
            hex::encode(Sha256::digest(target.as_bytes())),
        ),
        EntryKind::Other => format!("O - - {name}\n"),
    }
}

/// Most threads one tree hash uses. Hashing is bound by the disk and the
/// sha256 rate of a core; beyond a handful of threads there is nothing to
/// gain and much memory (a 1 MiB buffer each) to lose.
const MAX_HASH_THREADS: usize = 8;

/// Fills in size and digest of the file entries (`files` holds, for each,
/// its index in `entries` and its path), on up to `threads` threads that
/// take files from a shared counter, so one huge file does not hold up the
/// rest.
fn hash_files(
    entries: &mut [Entry],
    files: &[(usize, std::path::PathBuf)],
    index: Option<&HashIndex>,
    threads: usize,
) -> io::Result<()> {
    let threads = threads.max(1).min(files.len());
    let results: Vec<std::sync::OnceLock<io::Result<(Sha256Digest, u64)>>> =
        files.iter().map(|_| std::sync::OnceLock::new()).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let work = || {
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some((_, path)) = files.get(i) else { break };
            let _ = results[i].set(file_indexed(path, index));
        }
    };
    if threads <= 1 {
        work();
    } else {
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(work);
            }
        });
    }
    for ((slot, _), result) in files.iter().zip(results) {
        let (digest, size) = result.into_inner().expect("every file is hashed")?;
        entries[*slot].size = size;
        entries[*slot].sha256 = Some(digest.hex().to_string());
    }
    Ok(())
}

/// sha256 of one file, served from `index` when the file is unchanged
/// since it was indexed, and recorded there otherwise.
fn file_indexed(path: &Path, index: Option<&HashIndex>) -> io::Result<(Sha256Digest, u64)> {
    let Some(index) = index else {
        return file(path);
    };
    let f = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    // The stamp comes from the open file, so a path swapped for another
    // file between the walk and here cannot borrow the old file's digest.
    let before = Stamp::of(&f.metadata()?);
    if let Some(d) = index.lookup(path, &before) {
        return Ok((d, before.size));
    }
    let started = std::time::SystemTime::now();
    let (digest, size) = hash_reader(f.try_clone()?)?;
    let after = Stamp::of(&f.metadata()?);
    // Only a file that did not change while it was read, and whose mtime is
    // old enough that a later write could not leave the same stamp behind
    // (mtime granularity), is indexed.
    if before == after && after.settled_before(started, index.settle) {
        index.insert(path, after, &digest);
    }
    Ok((digest, size))
}

/// Identity and change stamps of a file, as `fstat` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_s: i64,
    mtime_ns: i64,
    ctime_s: i64,
    ctime_ns: i64,
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_s: m.mtime(),
            mtime_ns: m.mtime_nsec(),
            ctime_s: m.ctime(),
            ctime_ns: m.ctime_nsec(),
        }
    }

    /// Whether both mtime and ctime lie at least `settle` seconds before
    /// `t`. Timestamps advance in coarse ticks, so a file written in the
    /// same tick as it was hashed could change again without its stamp
    /// changing; such a file is hashed again next time rather than trusted.
    fn settled_before(&self, t: std::time::SystemTime, settle: i64) -> bool {
        let Ok(t) = t.duration_since(std::time::UNIX_EPOCH) else {
            return false;
        };
        let t = t.as_secs() as i64;
        self.mtime_s + settle <= t && self.ctime_s + settle <= t
    }
}

/// How old (in whole seconds) a file's timestamps must be before its digest
/// is remembered.
const RACY_SECONDS: i64 = 2;

/// The index of file digests kept in the state directory
/// (`hash-index.json`), so that hashing an unchanged input tree stats its
/// files instead of reading them.
///
/// An entry is used only when the file's device, inode, size, mtime and
/// ctime all match. ctime cannot be set by an unprivileged user, so
/// restoring an old mtime after editing a file does not fool it. The index
/// is as trustworthy as the state directory it lives in; `--no-cache` runs
/// without it, and `cordon verify` never uses it.
#[derive(Debug)]
pub struct HashIndex {
    path: Option<std::path::PathBuf>,
    entries: std::sync::Mutex<std::collections::HashMap<std::path::PathBuf, IndexEntry>>,
    /// Seconds a file's timestamps must lie in the past to be indexed.
    settle: i64,
    hits: std::sync::atomic::AtomicU64,
    misses: std::sync::atomic::AtomicU64,
    /// Whether an entry was added since the index was loaded: an unchanged
    /// index is not written back.
    changed: std::sync::atomic::AtomicBool,
}

/// How often an index was consulted, for diagnostics and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexStats {
    /// Files whose digest came from the index.
    pub hits: u64,
    /// Files that were read and hashed.
    pub misses: u64,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct IndexEntry {
    #[serde(flatten)]
    stamp: Stamp,
    sha256: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct IndexFile {
    version: u32,
    files: std::collections::BTreeMap<std::path::PathBuf, IndexEntry>,
}

/// The index file's format version; a file of another version is ignored.
const INDEX_VERSION: u32 = 1;

impl HashIndex {
    /// The index file under `state_dir`.
    pub fn file_in(state_dir: &Path) -> std::path::PathBuf {
        state_dir.join("hash-index.json")
    }

    /// Loads the index of `state_dir`. A missing, unreadable or damaged
    /// index is an empty one: it only ever saves work, so losing it costs
    /// time, never correctness.
    pub fn load(state_dir: &Path) -> HashIndex {
        let path = Self::file_in(state_dir);
        let files = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<IndexFile>(&b).ok())
            .filter(|f| f.version == INDEX_VERSION)
            .map(|f| f.files.into_iter().collect())
            .unwrap_or_default();
        HashIndex::with(Some(path), files, RACY_SECONDS)
    }

    /// An index that is never saved (for tests, benchmarks and one-off
    /// hashing).
    pub fn in_memory() -> HashIndex {
        HashIndex::with(None, Default::default(), RACY_SECONDS)
    }

    fn with(
        path: Option<std::path::PathBuf>,
        files: std::collections::HashMap<std::path::PathBuf, IndexEntry>,
        settle: i64,
    ) -> HashIndex {
        HashIndex {
            path,
            entries: std::sync::Mutex::new(files),
            settle,
            hits: Default::default(),
            misses: Default::default(),
            changed: Default::default(),
        }
    }

    /// Lookups served and missed since the index was loaded.
    pub fn stats(&self) -> IndexStats {
        use std::sync::atomic::Ordering::Relaxed;
        IndexStats {
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
        }
    }

    /// Number of files indexed.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no file is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<std::path::PathBuf, IndexEntry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lookup(&self, path: &Path, stamp: &Stamp) -> Option<Sha256Digest> {
        use std::sync::atomic::Ordering::Relaxed;
        let found = self
            .lock()
            .get(path)
            .filter(|e| e.stamp == *stamp)
            .and_then(|e| Sha256Digest::parse(&format!("sha256:{}", e.sha256)).ok());
        match found {
            Some(_) => self.hits.fetch_add(1, Relaxed),
            None => self.misses.fetch_add(1, Relaxed),
        };
        found
    }

    fn insert(&self, path: &Path, stamp: Stamp, digest: &Sha256Digest) {
        self.changed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.lock().insert(
            path.to_path_buf(),
            IndexEntry {
                stamp,
                sha256: digest.hex().to_string(),
            },
        );
    }

    /// The digest of the regular file at `path` (a symbolic link is
    /// followed, as reading a component does) when the index vouches for
    /// it: its device, inode, size, mtime and ctime are those it had when
    /// it was hashed. Nothing is read.
    pub fn vouch(&self, path: &Path) -> Option<Sha256Digest> {
        let meta = std::fs::metadata(path).ok()?;
        if !meta.is_file() {
            return None;
        }
        self.lookup(path, &Stamp::of(&meta))
    }

    /// Reads the regular file at `path` whole (at most `max` bytes, see
    /// [`crate::fsutil::read_regular`]) and hashes it; the digest is
    /// remembered when the file did not change while it was read and its
    /// timestamps have settled, so that a later [`HashIndex::vouch`] can
    /// answer without reading.
    pub fn read_whole(&self, path: &Path, max: u64) -> io::Result<(Vec<u8>, Sha256Digest)> {
        let started = std::time::SystemTime::now();
        let before = Stamp::of(&std::fs::metadata(path)?);
        let bytes = crate::fsutil::read_regular(path, max)?;
        let after = Stamp::of(&std::fs::metadata(path)?);
        let digest = Sha256Digest::of(&bytes);
        if before == after
            && after.size == bytes.len() as u64
            && after.settled_before(started, self.settle)
        {
            self.insert(path, after, &digest);
        }
        Ok((bytes, digest))
    }

    /// Writes the index back atomically, leaving out files that no longer
    /// exist. Two runners sharing a state directory may overwrite each
    /// other's additions; that costs a re-hash, nothing more.
    /// Nothing is written when no file was added since the index was loaded
    /// (entries of deleted files are then left out on a later save).
    pub fn save(&self) -> io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if !self.changed.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        let files: std::collections::BTreeMap<_, _> = self
            .lock()
            .iter()
            .filter(|(p, _)| std::fs::symlink_metadata(p).is_ok())
            .map(|(p, e)| (p.clone(), e.clone()))
            .collect();
        let bytes = serde_json::to_vec(&IndexFile {
            version: INDEX_VERSION,
            files,
        })
        .map_err(io::Error::other)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        crate::fsutil::write_atomic(path, &bytes)
    }
}

/// Lists everything under `dir` (whose path from the tree root is the
/// bytes `prefix`) into `out`, and each entry's [`digest_name`] into
/// `names`. Names are taken exactly as the directory holds them and the
/// walk opens each entry by the path it read, never by a rebuilt one.
fn walk(
    dir: &Path,
    prefix: &[u8],
    out: &mut Vec<Entry>,
    names: &mut Vec<String>,
    files: &mut Vec<(usize, std::path::PathBuf)>,
) -> io::Result<()> {
    for item in std::fs::read_dir(dir)? {
        let item = item?;
        let name = item.file_name();
        let mut rel = prefix.to_vec();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(name.as_bytes());
        let path = item.path();
        // `DirEntry::file_type` does not follow symlinks.
        let ft = item.file_type()?;
        names.push(digest_name(&rel));
        if ft.is_symlink() {
            let target = std::fs::read_link(&path)?;
            out.push(Entry::named(
                &rel,
                EntryKind::Symlink {
                    target: target.to_string_lossy().into_owned(),
                },
                0,
                None,
            ));
        } else if ft.is_dir() {
            out.push(Entry::named(&rel, EntryKind::Dir, 0, None));
            walk(&path, &rel, out, names, files)?;
        } else if ft.is_file() {
            // Hashed afterwards, in parallel (see `hash_files`).
            files.push((out.len(), path));
            out.push(Entry::named(&rel, EntryKind::File, 0, None));
        } else {
            out.push(Entry::named(&rel, EntryKind::Other, 0, None));
        }
    }
    Ok(())
}

/// Deepest directory [`charged_bytes`] measures. Deeper trees fail the
/// measurement (and so the step): a step can nest directories through
/// handles far past `PATH_MAX`, and a measurement that skipped what it
/// cannot name would let those bytes through uncounted. The output check
/// walks to the same depth (it takes this bound), so no tree the check
/// accepts is one the measurement cannot walk.
pub const MAX_MEASURED_DEPTH: usize = 64;

/// Bytes a tree occupies for the output limit: each file's length rounded up
/// to 4 KiB blocks, and 4 KiB for every entry, so that a flood of empty files
/// or directories is charged like the disk space and inodes it uses. Never
/// follows links. Entries that vanish during the walk (the step deleted
/// them) are skipped; anything else that cannot be opened or read, and any
/// tree deeper than [`MAX_MEASURED_DEPTH`], is an error: a limit that
/// cannot be measured fails closed.
pub fn charged_bytes(root: &Path) -> io::Result<u64> {
    const BLOCK: u64 = 4096;
    let gone = |e: &io::Error| e.kind() == io::ErrorKind::NotFound;
    let mut total = 0u64;
    let mut stack = vec![(root.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        if depth > MAX_MEASURED_DEPTH {
            return Err(io::Error::other(format!(
                "the output tree is deeper than {MAX_MEASURED_DEPTH} directories"
            )));
        }
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if gone(&e) && depth > 0 => continue,
            Err(e) => return Err(e),
        };
        for item in rd {
            let item = match item {
                Ok(i) => i,
                Err(e) if gone(&e) => continue,
                Err(e) => return Err(e),
            };
            total = total.saturating_add(BLOCK);
            let ft = match item.file_type() {
                Ok(t) => t,
                Err(e) if gone(&e) => continue,
                Err(e) => return Err(e),
            };
            if ft.is_dir() {
                stack.push((item.path(), depth + 1));
            } else if ft.is_file() {
                match item.metadata() {
                    Ok(m) => total = total.saturating_add(m.len().div_ceil(BLOCK) * BLOCK),
                    Err(e) if gone(&e) => continue,
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_too_deep_to_measure_is_an_error_not_zero() {
        let d = tempfile::tempdir().unwrap();
        let mut p = d.path().to_path_buf();
        for _ in 0..=MAX_MEASURED_DEPTH + 1 {
            p.push("d");
        }
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("big"), vec![0u8; 10_000]).unwrap();
        let e = charged_bytes(d.path()).unwrap_err().to_string();
        assert!(e.contains("deeper than"), "{e}");
        assert!(charged_bytes(&d.path().join("d")).is_err());
        let shallow = tempfile::tempdir().unwrap();
        std::fs::write(shallow.path().join("f"), b"x").unwrap();
        assert_eq!(charged_bytes(shallow.path()).unwrap(), 4096 + 4096);
    }

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

    /// The digest lines, written out by hand: the format records already
    /// signed were hashed with, which must never change for UTF-8 names.
    #[test]
    fn utf8_names_keep_the_digest_earlier_runners_computed() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("m\\d")).unwrap();
        std::fs::write(d.path().join("m\\d/a\nb.txt"), b"x").unwrap();
        std::fs::write(d.path().join("-z\t"), b"").unwrap();
        let x = Sha256Digest::of(b"x");
        let empty = Sha256Digest::of(b"");
        let lines = format!(
            "F 0 {} -z\t\nD - - m\\\\d\nF 1 {} m\\\\d/a\\nb.txt\n",
            empty.hex(),
            x.hex()
        );
        let t = tree(d.path()).unwrap();
        assert_eq!(t.digest, Sha256Digest::of(lines.as_bytes()));
        // Entries hold the names exactly, with no second spelling.
        let paths: Vec<_> = t.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["-z\t", "m\\d", "m\\d/a\nb.txt"]);
        assert!(t.entries.iter().all(|e| e.path_hex.is_none()));
        for e in &t.entries {
            assert!(d.path().join(e.rel_path().unwrap()).exists(), "{e:?}");
        }
    }

    #[test]
    fn a_name_that_is_not_utf8_is_kept_byte_exact() {
        use std::os::unix::ffi::OsStrExt as _;
        let d = tempfile::tempdir().unwrap();
        let raw = b"caf\xe9\\x.bin";
        let name = std::ffi::OsStr::from_bytes(raw);
        std::fs::write(d.path().join(name), b"bytes").unwrap();
        // A UTF-8 name that spells the escape the line uses for it.
        std::fs::write(d.path().join("caf\\xe9\\x.bin"), b"bytes").unwrap();
        let t = tree(d.path()).unwrap();
        assert_eq!(t.entries.len(), 2);
        let e = t.entries.iter().find(|e| e.path_hex.is_some()).unwrap();
        assert_eq!(e.path_bytes().unwrap(), raw);
        assert_eq!(e.path, String::from_utf8_lossy(raw));
        assert_eq!(
            std::fs::read(d.path().join(e.rel_path().unwrap())).unwrap(),
            b"bytes"
        );
        assert_ne!(digest_name(raw), digest_name(b"caf\\xe9\\x.bin"));
        // Through JSON and back, exactly.
        let back: Entry = serde_json::from_str(&serde_json::to_string(e).unwrap()).unwrap();
        assert_eq!(&back, e);
    }

    #[test]
    fn a_path_read_back_is_refused_unless_plain_and_in_its_one_spelling() {
        for bad in [
            "",
            "/etc/passwd",
            "a//b",
            "a/",
            "..",
            "a/../b",
            "./a",
            "a\0b",
        ] {
            assert!(exact_path(bad, None).is_err(), "{bad:?}");
        }
        for good in ["a", "a\\b", "a\nb", "-rf", " ", "a/b/c"] {
            assert_eq!(exact_path(good, None).unwrap(), good.as_bytes());
        }
        let hex = |b: &[u8]| hex::encode(b);
        let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        for bad in [&b"\xff/../x"[..], b"/\xff", b"\xff\0", b"\xff//a"] {
            assert!(exact_path(&lossy(bad), Some(&hex(bad))).is_err(), "{bad:?}");
        }
        // Hex of a UTF-8 name, upper-case hex, odd hex and a `path` that is
        // not what the bytes show as are each refused.
        assert_eq!(exact_path("a", Some("61")), Err(UnsafePath::HexOfUtf8));
        assert_eq!(exact_path("\u{fffd}", Some("FF")), Err(UnsafePath::BadHex));
        assert_eq!(exact_path("\u{fffd}", Some("f")), Err(UnsafePath::BadHex));
        assert_eq!(exact_path("x", Some("ff")), Err(UnsafePath::Mismatch));
        assert_eq!(exact_path("\u{fffd}", Some("ff")).unwrap(), b"\xff");
    }

    mod names {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn the_line_form_of_a_path_is_injective(
                a in proptest::collection::vec(any::<u8>(), 1..12),
                b in proptest::collection::vec(any::<u8>(), 1..12),
            ) {
                let clean = |v: Vec<u8>| -> Vec<u8> { v.into_iter().filter(|&x| x != 0).collect() };
                let (a, b) = (clean(a), clean(b));
                if a != b {
                    prop_assert_ne!(digest_name(&a), digest_name(&b));
                }
                prop_assert!(!digest_name(&a).contains('\n'));
            }
        }
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

    /// An index that trusts files however fresh, so tests need not wait
    /// for timestamps to settle.
    fn eager_index() -> HashIndex {
        HashIndex::with(None, Default::default(), 0)
    }

    #[test]
    fn an_index_serves_unchanged_files_without_reading_them() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..20 {
            std::fs::write(d.path().join(format!("f{i}")), format!("file {i}")).unwrap();
        }
        let index = eager_index();
        let first = tree_with(d.path(), Some(&index)).unwrap();
        assert_eq!(first, tree(d.path()).unwrap());
        assert_eq!(index.len(), 20);
        assert_eq!(
            index.stats(),
            IndexStats {
                hits: 0,
                misses: 20
            }
        );
        let second = tree_with(d.path(), Some(&index)).unwrap();
        assert_eq!(second, first);
        assert_eq!(
            index.stats(),
            IndexStats {
                hits: 20,
                misses: 20
            }
        );
    }

    #[test]
    fn an_edit_that_keeps_size_and_mtime_is_still_seen() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("data.csv");
        std::fs::write(&f, b"a,b\n1,2\n").unwrap();
        let mtime = std::fs::metadata(&f).unwrap().modified().unwrap();
        let index = eager_index();
        let first = tree_with(d.path(), Some(&index)).unwrap();
        // Same size, mtime put back: only the ctime tells.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&f, b"a,b\n9,2\n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let second = tree_with(d.path(), Some(&index)).unwrap();
        assert_ne!(second.digest, first.digest);
        assert_eq!(second, tree(d.path()).unwrap());
    }

    #[test]
    fn a_whole_file_read_once_is_vouched_for_until_it_changes() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("c.wasm");
        std::fs::write(&f, b"component").unwrap();
        let index = eager_index();
        assert_eq!(index.vouch(&f), None, "never read: nothing to vouch for");
        let (bytes, digest) = index.read_whole(&f, 1 << 20).unwrap();
        assert_eq!(bytes, b"component");
        assert_eq!(index.vouch(&f), Some(digest.clone()));
        // Rewritten (same size): the ctime moves, the vouching stops.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&f, b"c0mponent").unwrap();
        assert_eq!(index.vouch(&f), None);
        // Too large is refused as before, and not remembered.
        assert!(index.read_whole(&f, 3).is_err());
        // A file written just now is read but not remembered by default.
        let strict = HashIndex::in_memory();
        strict.read_whole(&f, 1 << 20).unwrap();
        assert_eq!(strict.vouch(&f), None);
    }

    #[test]
    fn a_replaced_file_is_rehashed_and_fresh_files_are_not_indexed() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("x");
        std::fs::write(&f, b"one").unwrap();
        let index = eager_index();
        let first = tree_with(d.path(), Some(&index)).unwrap();
        // A new inode under the same name, same size.
        std::fs::remove_file(&f).unwrap();
        std::fs::write(&f, b"two").unwrap();
        let second = tree_with(d.path(), Some(&index)).unwrap();
        assert_ne!(second.digest, first.digest);
        // The default index does not remember a file written just now.
        let strict = HashIndex::in_memory();
        tree_with(d.path(), Some(&strict)).unwrap();
        assert!(strict.is_empty());
    }

    #[test]
    fn the_index_survives_a_save_and_ignores_a_damaged_file() {
        let state = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        std::fs::write(data.path().join("a"), b"alpha").unwrap();
        let index = HashIndex::with(
            Some(HashIndex::file_in(state.path())),
            Default::default(),
            0,
        );
        tree_with(data.path(), Some(&index)).unwrap();
        index.save().unwrap();
        let loaded = HashIndex::load(state.path());
        assert_eq!(loaded.len(), 1);
        tree_with(data.path(), Some(&loaded)).unwrap();
        assert_eq!(loaded.stats().hits, 1);
        // Served entirely from the index: nothing new to write back, so a
        // removed file is not written again.
        std::fs::remove_file(HashIndex::file_in(state.path())).unwrap();
        loaded.save().unwrap();
        assert!(
            !HashIndex::file_in(state.path()).exists(),
            "an unchanged index is not rewritten"
        );
        index.save().unwrap();
        std::fs::write(HashIndex::file_in(state.path()), b"{ not json").unwrap();
        assert!(HashIndex::load(state.path()).is_empty());
    }

    #[test]
    fn the_digest_does_not_depend_on_the_thread_count() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..40 {
            std::fs::write(d.path().join(format!("f{i}")), vec![i as u8; 1000 + i]).unwrap();
        }
        let one = tree_with_threads(d.path(), None, 1).unwrap();
        for threads in [0, 2, 3, 16] {
            assert_eq!(tree_with_threads(d.path(), None, threads).unwrap(), one);
        }
    }

    #[test]
    fn many_files_hash_the_same_in_parallel_as_one_by_one() {
        let d = tempfile::tempdir().unwrap();
        let mut expected = Vec::new();
        for i in 0..200 {
            let name = format!("d{}/f{i}", i % 7);
            std::fs::create_dir_all(d.path().join(format!("d{}", i % 7))).unwrap();
            let body = vec![i as u8; i * 37];
            std::fs::write(d.path().join(&name), &body).unwrap();
            expected.push((name, Sha256Digest::of(&body)));
        }
        let t = tree(d.path()).unwrap();
        for (name, digest) in expected {
            let e = t.entries.iter().find(|e| e.path == name).unwrap();
            assert_eq!(e.sha256.as_deref(), Some(digest.hex()));
        }
    }

    #[test]
    fn charged_bytes_counts_entries_and_blocks() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), vec![0u8; 5000]).unwrap();
        std::fs::write(d.path().join("b"), b"").unwrap();
        assert_eq!(charged_bytes(d.path()).unwrap(), 4096 + 8192 + 4096);
    }
}
