//! The output check: what a step left in a writable mount (a staged
//! `write` mount, or a `read-write` mount in place) is judged before
//! anything of it is published, kept or named in a message.
//!
//! It owns three things:
//!
//! - **The walk.** Every name (files, directories, links, special files),
//!   the full path from the mount's guest path (so a value spelled across
//!   nested names is seen), every symbolic link's target text and every
//!   regular file's bytes are searched for secret values in every form the
//!   [`Redactor`] detects. The walk goes from directory handle to directory
//!   handle (openat-style), never through a path string rebuilt from
//!   escaped names, so a name holding `\`, a newline or bytes that are not
//!   UTF-8 is opened exactly as it is. The handles are `cap-std` [`Dir`]s:
//!   a well-kept crate that already confines wasmtime's own filesystem
//!   access, so there is no hand-written `openat` and no `unsafe` here, and
//!   even an entry swapped for a link cannot take the walk outside the
//!   mount. File contents are streamed in [`CHUNK`]-byte reads with an
//!   overlap of `redactor.longest() - 1` bytes, so memory stays bounded and
//!   a value straddling two reads is still found.
//! - **Failing closed.** Anything the check cannot open, read or walk (an
//!   I/O error, a special file, a tree deeper than [`MAX_OUTPUT_DEPTH`], a
//!   path longer than [`MAX_OUTPUT_PATH_BYTES`]) is a [`Problem`] that fails
//!   the step and is treated like a leak: it is never reported as clean.
//! - **Showing names.** Every guest-chosen name or target that reaches a
//!   message or a listing is redacted *as a value* first, then escaped for
//!   the terminal ([`cordon_core::sanitize`]), then redacted again (an escape can
//!   itself spell a value, e.g. a newline shown as `\n`).
//!
//! It never publishes, and it never writes a byte it judged outside the
//! mount: the listing it produces holds redacted names and digests only.
//! Removing what it refused is [`empty_dir`]'s job, which works at any
//! depth with two directory handles.

use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt as _};
use cordon_secrets::Redactor;
use sha2::{Digest as _, Sha256};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

/// How deep the check walks below a mount's root before it refuses the
/// output.
///
/// The walk holds one directory handle open per level (and the digest and
/// copy code that runs after it recurse once per level), so without a
/// limit a step could make the runner hold thousands of descriptors or
/// overflow its stack with a tree built one `openat` at a time, a tree far
/// deeper than any path the kernel can name at once. 64 levels is many
/// times what real outputs use (partitioned datasets and checkpoint trees
/// nest a handful of levels) and costs the runner at most 64 descriptors.
/// Raising it means checking that `digest`, `fsutil::copy_tree` and the
/// content store still handle that depth without a fault in the runner.
pub const MAX_OUTPUT_DEPTH: usize = cordon_core::digest::MAX_MEASURED_DEPTH;

/// The longest relative path (in bytes) an output entry may have.
///
/// After the check, digests, publishing and the content store name entries
/// by whole paths under the state directory, and the kernel takes at most
/// 4,096 bytes (PATH_MAX) per path. 2 KiB for the part the step chose
/// leaves the rest for the state directory's own prefix, so an output the
/// check lets through can never turn into a runner error later.
pub const MAX_OUTPUT_PATH_BYTES: usize = 2048;

/// Bytes read from a file at a time. Large enough that the overlap kept
/// between reads (a few hundred bytes for a typical secret) is small next
/// to it; small enough that checking a huge file costs no memory to speak
/// of.
pub const CHUNK: usize = 64 << 10;

/// Where a finding is and what it is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Refused {
    /// The entry's name (or its path) holds a secret value.
    Name,
    /// The link's target text holds a secret value.
    LinkTarget,
    /// The file's bytes hold a secret value.
    Contents,
    /// The check could not open or read it.
    Unreadable,
    /// It lies deeper than [`MAX_OUTPUT_DEPTH`].
    TooDeep,
    /// Its path is longer than [`MAX_OUTPUT_PATH_BYTES`].
    PathTooLong,
    /// A link or special file in a staged output, which is never published
    /// (see the `outputs` module); its name and target are clean.
    NotPlain,
}

impl Refused {
    /// Whether the entry's bytes may hold (or did hold) a secret value, so
    /// nothing of it may be kept as it is: everything but a clean link or
    /// special file.
    pub fn leaks(self) -> bool {
        self != Refused::NotPlain
    }
}

/// One thing the check refuses, ready for a message.
#[derive(Debug, Clone)]
pub struct Problem {
    /// What is wrong.
    pub refused: Refused,
    /// The entry's guest path, redacted and escaped.
    pub shown: String,
    /// Extra detail (an I/O error; for [`Refused::NotPlain`] what the entry
    /// is), redacted and escaped.
    pub detail: String,
    /// A link's target, redacted and escaped.
    pub target: Option<String>,
    /// The entry's names from the mount root, exactly as on disk, for
    /// removal.
    components: Vec<OsString>,
}

/// One entry as a listing keeps it: no bytes of the step's, names redacted.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Listed {
    /// Path from the mount's guest path, redacted and escaped.
    pub path: String,
    /// `file`, `dir`, `symlink` or `other`.
    pub kind: &'static str,
    /// Bytes (files).
    pub size: u64,
    /// sha256 of the contents (files that could be read whole).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// A link's target, redacted and escaped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Why the check refused the entry, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<Refused>,
}

/// The check of one mount.
#[derive(Debug)]
pub struct MountCheck {
    /// The guest path.
    pub guest: String,
    /// Whether this is a `read-write` mount (checked in place) rather than
    /// a staged `write` mount.
    pub in_place: bool,
    /// Whether what leaks in this (read-write) mount is removed from it:
    /// only when there are secret values to protect. A run without secrets
    /// has nothing to leak, so the check never deletes a user's data then.
    pub removes: bool,
    /// Every entry, in walk order (byte order of names within a directory).
    pub entries: Vec<Listed>,
    /// Everything refused, in walk order.
    pub problems: Vec<Problem>,
}

impl MountCheck {
    /// Whether anything in this mount may leak a value or could not be
    /// judged (and so must not be kept or left as it is).
    pub fn leaks(&self) -> bool {
        self.problems.iter().any(|p| p.refused.leaks())
    }

    /// The first problem that leaks, else the first problem.
    pub fn worst(&self) -> Option<&Problem> {
        self.problems
            .iter()
            .find(|p| p.refused.leaks())
            .or(self.problems.first())
    }

    /// One line for people and the record: names the mount and the entry,
    /// and what happens to the output.
    pub fn reason(&self, problem: &Problem, redactor: &Redactor) -> String {
        let mount = if self.in_place {
            format!("read-write mount {}", show(redactor, self.guest.as_bytes()))
        } else {
            format!("output mount {}", show(redactor, self.guest.as_bytes()))
        };
        let outcome = if self.removes {
            "it was removed from the mount"
        } else if self.in_place {
            "the step fails"
        } else {
            "nothing was published"
        };
        let p = &problem.shown;
        let d = &problem.detail;
        let text = match problem.refused {
            // The wording of a staged file is the one users already know.
            Refused::Contents if !self.in_place => {
                format!("output file {p} contains a secret value; {outcome}")
            }
            Refused::Contents => format!("{mount}: file {p} contains a secret value; {outcome}"),
            Refused::Name => format!("{mount}: the name {p} holds a secret value; {outcome}"),
            Refused::LinkTarget => {
                format!("{mount}: the target of symbolic link {p} holds a secret value; {outcome}")
            }
            Refused::Unreadable => {
                format!("{mount}: cannot check {p} ({d}); the check fails closed, so {outcome}")
            }
            Refused::TooDeep => format!(
                "{mount}: {p} lies deeper than {MAX_OUTPUT_DEPTH} directories, the most the output check walks; {outcome}"
            ),
            Refused::PathTooLong => format!(
                "{mount}: the path {p} is longer than {MAX_OUTPUT_PATH_BYTES} bytes, the most the output check allows; {outcome}"
            ),
            Refused::NotPlain => format!(
                "{mount} contains {d} {p}{}; outputs must be regular files and directories",
                problem
                    .target
                    .as_ref()
                    .map(|t| format!(" -> {t}"))
                    .unwrap_or_default()
            ),
        };
        // The pieces are redacted already; this pass catches a value that
        // only our own words around them complete.
        redactor.redact_str(&text)
    }
}

/// `raw` (a guest-chosen name, path or target) as it may appear in a
/// message or a listing: redacted as a value, escaped for the terminal,
/// and redacted again, since an escape can itself spell a value.
pub fn show(redactor: &Redactor, raw: &[u8]) -> String {
    let escaped = cordon_core::sanitize::escape_bytes_for_terminal(&redactor.redact(raw));
    redactor.redact_str(&escaped)
}

/// One directory being walked: its handle, the names still to visit (read
/// once and sorted, so the walk and its messages are the same every run)
/// and its raw path from the mount's guest path.
struct Frame {
    dir: Dir,
    pending: std::vec::IntoIter<OsString>,
    path: Vec<u8>,
    components: Vec<OsString>,
}

/// Checks the mount whose host directory is `root` and whose guest path is
/// `guest`. Never fails: what cannot be checked is a [`Problem`].
pub fn check_mount(root: &Path, guest: &str, in_place: bool, redactor: &Redactor) -> MountCheck {
    let mut check = MountCheck {
        guest: guest.to_string(),
        in_place,
        removes: in_place && !redactor.is_empty(),
        entries: Vec::new(),
        problems: Vec::new(),
    };
    let root_path = guest.trim_end_matches('/').as_bytes().to_vec();
    let opened = Dir::open_ambient_dir(root, cap_std::ambient_authority())
        .and_then(|dir| Ok((sorted_names(&dir)?, dir)));
    let (names, dir) = match opened {
        Ok(x) => x,
        Err(e) => {
            check.problems.push(Problem {
                refused: Refused::Unreadable,
                shown: show(redactor, guest.as_bytes()),
                detail: show(redactor, e.to_string().as_bytes()),
                target: None,
                components: Vec::new(),
            });
            return check;
        }
    };
    let mut stack = vec![Frame {
        dir,
        pending: names.into_iter(),
        path: root_path,
        components: Vec::new(),
    }];
    while let Some(frame) = stack.last_mut() {
        let Some(name) = frame.pending.next() else {
            stack.pop();
            continue;
        };
        let mut path = frame.path.clone();
        path.push(b'/');
        path.extend_from_slice(name.as_bytes());
        let mut components = frame.components.clone();
        components.push(name.clone());
        let depth = components.len();
        let shown = show(redactor, &path);
        let mut listed = Listed {
            path: shown.clone(),
            kind: "other",
            size: 0,
            sha256: None,
            target: None,
            refused: None,
        };
        let mut refuse = |refused: Refused, detail: String, listed: &mut Listed| {
            listed.refused = Some(refused);
            check.problems.push(Problem {
                refused,
                shown: shown.clone(),
                detail,
                target: listed.target.clone(),
                components: components.clone(),
            });
        };
        let meta = match frame.dir.symlink_metadata(&name) {
            Ok(m) => m,
            Err(e) => {
                refuse(
                    Refused::Unreadable,
                    show(redactor, e.to_string().as_bytes()),
                    &mut listed,
                );
                check.entries.push(listed);
                continue;
            }
        };
        let ft = meta.file_type();
        listed.kind = if ft.is_dir() {
            "dir"
        } else if ft.is_file() {
            "file"
        } else if ft.is_symlink() {
            "symlink"
        } else {
            "other"
        };
        // The path is searched whole, from the guest path on, so a value
        // split across nested names (or completed by the mount's own path)
        // is seen where it is completed.
        // A refused name still gets its size and digest listed; only a
        // refused directory is not walked into (all of it goes).
        let mut descend = true;
        if redactor.contains_secret(&path) {
            refuse(Refused::Name, String::new(), &mut listed);
            descend = false;
        } else if path.len() - guest.trim_end_matches('/').len() - 1 > MAX_OUTPUT_PATH_BYTES {
            refuse(Refused::PathTooLong, String::new(), &mut listed);
            descend = false;
        }
        if ft.is_symlink() {
            match frame.dir.read_link_contents(&name) {
                Ok(target) => {
                    let target = target.as_os_str().as_bytes();
                    listed.target = Some(show(redactor, target));
                    if redactor.contains_secret(target) {
                        refuse(Refused::LinkTarget, String::new(), &mut listed);
                    } else if !in_place && descend {
                        refuse(Refused::NotPlain, "a symbolic link".into(), &mut listed);
                    }
                }
                Err(e) => refuse(
                    Refused::Unreadable,
                    show(redactor, e.to_string().as_bytes()),
                    &mut listed,
                ),
            }
        } else if ft.is_file() && redactor.is_empty() {
            // No value to look for: contents cannot be refused, so they are
            // not read here (the staging digest reads them once).
            listed.size = meta.len();
        } else if ft.is_file() {
            match scan_file(&frame.dir, &name, redactor) {
                Ok(scan) => {
                    listed.size = scan.size;
                    listed.sha256 = Some(scan.sha256);
                    if scan.secret {
                        refuse(Refused::Contents, String::new(), &mut listed);
                    }
                }
                Err(e) => refuse(
                    Refused::Unreadable,
                    show(redactor, e.to_string().as_bytes()),
                    &mut listed,
                ),
            }
        } else if ft.is_dir() && !descend {
            // Refused whole: what is inside goes with it.
        } else if ft.is_dir() {
            if depth >= MAX_OUTPUT_DEPTH {
                refuse(Refused::TooDeep, String::new(), &mut listed);
            } else {
                let opened = frame
                    .dir
                    .open_dir(&name)
                    .and_then(|dir| Ok((sorted_names(&dir)?, dir)));
                match opened {
                    Ok((names, dir)) => {
                        check.entries.push(listed);
                        stack.push(Frame {
                            dir,
                            pending: names.into_iter(),
                            path,
                            components,
                        });
                        continue;
                    }
                    Err(e) => refuse(
                        Refused::Unreadable,
                        show(redactor, e.to_string().as_bytes()),
                        &mut listed,
                    ),
                }
            }
        } else if !descend || (in_place && redactor.is_empty()) {
            // A special file already refused by name, or one in a
            // read-write mount of a run without secrets: nothing to find.
        } else if in_place {
            // A FIFO, socket or device: reading it could block forever or
            // never end, so the check cannot vouch for it.
            refuse(
                Refused::Unreadable,
                "a special file, which the check does not read".into(),
                &mut listed,
            );
        } else {
            refuse(Refused::NotPlain, "a special file".into(), &mut listed);
        }
        check.entries.push(listed);
    }
    check
}

/// The names in `dir`, in byte order.
fn sorted_names(dir: &Dir) -> io::Result<Vec<OsString>> {
    let mut names = dir
        .entries()?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<Vec<_>>>()?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// What streaming one file found.
struct Scan {
    size: u64,
    sha256: String,
    secret: bool,
}

/// Reads the regular file `name` in `dir` in [`CHUNK`]s, hashing it and
/// searching it for secret values. Opened without following a link and
/// without blocking, and checked to be a regular file once open, so
/// nothing swapped in after the walk saw it can stall or fool the check.
fn scan_file(dir: &Dir, name: &OsStr, redactor: &Redactor) -> io::Result<Scan> {
    let mut opts = OpenOptions::new();
    opts.read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY);
    let mut file = dir.open_with(name, &opts)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    scan_reader(&mut file, redactor)
}

/// Streams `r`: a value found in any window, or across the boundary of two
/// reads, sets `secret`. Between reads the last `longest() - 1` bytes are
/// kept, the most of a value that can lie before a boundary.
fn scan_reader(r: &mut impl io::Read, redactor: &Redactor) -> io::Result<Scan> {
    let keep = redactor.longest().saturating_sub(1);
    let mut hasher = Sha256::new();
    let mut window: Vec<u8> = Vec::with_capacity(keep + CHUNK);
    let mut chunk = vec![0u8; CHUNK];
    let mut size = 0u64;
    let mut secret = false;
    loop {
        let n = match r.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&chunk[..n]);
        size += n as u64;
        if secret {
            continue;
        }
        window.extend_from_slice(&chunk[..n]);
        if redactor.contains_secret(&window) {
            secret = true;
            continue;
        }
        let drop = window.len().saturating_sub(keep);
        window.drain(..drop);
    }
    Ok(Scan {
        size,
        sha256: hex::encode(hasher.finalize()),
        secret,
    })
}

/// Writes `listing.json` into `dir` (created private): the reason and every
/// checked entry, names redacted and escaped, sizes and digests, and never
/// a byte of the step's. It is what is kept of a refused output.
pub fn keep_listing(dir: &Path, reason: &str, checks: &[MountCheck]) -> io::Result<PathBuf> {
    #[derive(serde::Serialize)]
    struct Mount<'a> {
        guest: &'a str,
        access: &'static str,
        entries: &'a [Listed],
    }
    #[derive(serde::Serialize)]
    struct Listing<'a> {
        format: u32,
        reason: &'a str,
        mounts: Vec<Mount<'a>>,
    }
    let listing = Listing {
        format: LISTING_FORMAT,
        reason,
        mounts: checks
            .iter()
            .map(|c| Mount {
                guest: &c.guest,
                access: if c.in_place { "read-write" } else { "write" },
                entries: &c.entries,
            })
            .collect(),
    };
    cordon_core::fsutil::create_private_dir(dir)?;
    let path = dir.join("listing.json");
    let bytes = serde_json::to_vec_pretty(&listing).map_err(io::Error::other)?;
    cordon_core::fsutil::write_atomic(&path, &bytes)?;
    Ok(path)
}

/// The format version of `listing.json`.
pub const LISTING_FORMAT: u32 = 1;

/// Removes what the check refused in a read-write mount: each refused
/// entry (a refused directory with everything in it). Entries are reached
/// from `root` by their names, handle by handle.
pub fn remove_refused(root: &Path, check: &MountCheck) -> io::Result<()> {
    if !check.removes {
        return Ok(());
    }
    let root = Dir::open_ambient_dir(root, cap_std::ambient_authority())?;
    for p in check.problems.iter().filter(|p| p.refused.leaks()) {
        let Some((name, parents)) = p.components.split_last() else {
            continue;
        };
        let mut dir = root.try_clone()?;
        for c in parents {
            dir = dir.open_dir(c)?;
        }
        match dir.symlink_metadata(name) {
            Ok(m) if m.is_dir() => {
                empty_dir(&dir.open_dir(name)?)?;
                dir.remove_dir(name)?;
            }
            Ok(_) => dir.remove_file(name)?,
            // Already gone with a refused directory above it.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Removes the directory `path` and everything in it, however deep.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    let dir = Dir::open_ambient_dir(path, cap_std::ambient_authority())?;
    empty_dir(&dir)?;
    drop(dir);
    std::fs::remove_dir(path)
}

/// Empties `dir`, at any depth, holding two directory handles and never
/// recursing: files go at once, and each subdirectory's own
/// subdirectories are moved up into `dir` (under fresh names) before the
/// emptied subdirectory is removed, so every pass lifts the remaining tree
/// one level. A recursive removal would hold a descriptor and a stack frame
/// per level, which a step that builds a tree one `openat` at a time could
/// exhaust.
pub fn empty_dir(dir: &Dir) -> io::Result<()> {
    let mut fresh = 0u64;
    loop {
        let names = sorted_names(dir)?;
        if names.is_empty() {
            return Ok(());
        }
        for name in names {
            if !dir.symlink_metadata(&name)?.is_dir() {
                dir.remove_file(&name)?;
                continue;
            }
            let child = dir.open_dir(&name)?;
            for inner in sorted_names(&child)? {
                if child.symlink_metadata(&inner)?.is_dir() {
                    let lifted = loop {
                        fresh += 1;
                        let n = PathBuf::from(format!(".cordon-lift-{fresh}"));
                        if dir.symlink_metadata(&n).is_err() {
                            break n;
                        }
                    };
                    child.rename(&inner, dir, &lifted)?;
                } else {
                    child.remove_file(&inner)?;
                }
            }
            drop(child);
            dir.remove_dir(&name)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cordon_secrets::{ResolvedSecret, SecretValue};

    fn redactor(value: &[u8]) -> Redactor {
        Redactor::new(&[ResolvedSecret {
            name: "token".into(),
            uses: Default::default(),
            provider: "env",
            version: None,
            credential: None,
            value: SecretValue::new(value.to_vec()),
        }])
    }

    #[test]
    fn names_with_a_newline_and_a_backslash_are_opened_as_they_are() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a\nb"), b"harmless").unwrap();
        std::fs::write(d.path().join("c\\d"), b"harmless").unwrap();
        std::fs::write(d.path().join("z.txt"), b"xx secret-value-1 xx").unwrap();
        let check = check_mount(d.path(), "/out", false, &redactor(b"secret-value-1"));
        let paths: Vec<_> = check.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["/out/a\\nb", "/out/c\\d", "/out/z.txt"]);
        assert!(check.entries[..2].iter().all(|e| e.sha256.is_some()));
        assert_eq!(check.problems.len(), 1, "{:?}", check.problems);
        let p = &check.problems[0];
        assert_eq!(p.refused, Refused::Contents);
        assert_eq!(
            check.reason(p, &redactor(b"secret-value-1")),
            "output file /out/z.txt contains a secret value; nothing was published"
        );
    }

    #[test]
    fn a_value_straddling_a_chunk_boundary_is_found() {
        let value = b"straddling-secret-value";
        let r = redactor(value);
        assert!(r.longest() >= value.len());
        for split in [1, value.len() / 2, value.len() - 1] {
            let mut data = vec![b'.'; CHUNK - split];
            data.extend_from_slice(value);
            data.extend(vec![b'.'; 100]);
            let scan = scan_reader(&mut data.as_slice(), &r).unwrap();
            assert!(scan.secret, "split {split}");
            assert_eq!(scan.size, data.len() as u64);
        }
        // Its hex form straddling the boundary of the second and third
        // reads is found too.
        let hex_form = hex::encode(value);
        let mut data = vec![b'.'; 2 * CHUNK - 5];
        data.extend_from_slice(hex_form.as_bytes());
        assert!(scan_reader(&mut data.as_slice(), &r).unwrap().secret);
        let clean = vec![b'.'; 3 * CHUNK];
        assert!(!scan_reader(&mut clean.as_slice(), &r).unwrap().secret);
    }

    #[test]
    fn a_tree_deeper_than_the_limit_is_refused_and_can_still_be_removed() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("out");
        std::fs::create_dir(&root).unwrap();
        let mut dir = Dir::open_ambient_dir(&root, cap_std::ambient_authority()).unwrap();
        // Deeper than any path the kernel can name at once (4,096 bytes),
        // built handle by handle as a step would.
        for _ in 0..MAX_OUTPUT_DEPTH.max(2100) {
            dir.create_dir("d").unwrap();
            dir = dir.open_dir("d").unwrap();
        }
        dir.write("leak.txt", b"secret-value-1").unwrap();
        drop(dir);
        let r = redactor(b"secret-value-1");
        let check = check_mount(&root, "/out", false, &r);
        let p = check.worst().unwrap();
        assert_eq!(p.refused, Refused::TooDeep);
        assert!(check.leaks());
        assert_eq!(check.entries.len(), MAX_OUTPUT_DEPTH);
        assert!(
            check.reason(p, &r).contains("deeper than 64 directories"),
            "{}",
            check.reason(p, &r)
        );
        remove_tree(&root).unwrap();
        assert!(!root.exists());
    }

    #[test]
    fn names_paths_and_link_targets_holding_the_value_are_refused_redacted() {
        let d = tempfile::tempdir().unwrap();
        let value = b"na\"me\\wi\nth-secret";
        let r = redactor(value);
        let name = OsStr::from_bytes(value);
        std::fs::write(d.path().join(name), b"harmless").unwrap();
        std::os::unix::fs::symlink(name, d.path().join("link")).unwrap();
        // `split-se` / `cret-9`: harmless names, the value together.
        std::fs::create_dir(d.path().join("split-se")).unwrap();
        std::fs::write(d.path().join("split-se/cret-9"), b"").unwrap();
        let check = check_mount(d.path(), "/out", false, &r);
        let kinds: Vec<_> = check.problems.iter().map(|p| p.refused).collect();
        assert_eq!(kinds, [Refused::LinkTarget, Refused::Name]);
        let split = check_mount(d.path(), "/out", false, &redactor(b"split-se/cret-9"));
        let named: Vec<_> = split
            .problems
            .iter()
            .filter(|p| p.refused == Refused::Name)
            .map(|p| p.shown.as_str())
            .collect();
        assert_eq!(named, ["/out/[REDACTED:token]"]);
        for p in &check.problems {
            let reason = check.reason(p, &r);
            assert!(reason.contains("[REDACTED:token]") || reason.contains("/out/link"));
            assert!(
                !reason.contains('\n') && !reason.contains("wi\\nth"),
                "{reason}"
            );
        }
        let listing = serde_json::to_string(&check.entries).unwrap();
        assert!(listing.contains("[REDACTED:token]"), "{listing}");
        assert!(!listing.contains("secret"), "{listing}");
    }

    #[test]
    fn control_characters_in_a_name_are_escaped_in_messages() {
        let d = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("x\u{1b}[2J\r\u{202e}")).unwrap();
        let r = redactor(b"unrelated-value");
        let check = check_mount(d.path(), "/out", false, &r);
        let p = check.worst().unwrap();
        assert_eq!(p.refused, Refused::NotPlain);
        assert!(!check.leaks(), "a clean link keeps today's partial output");
        assert_eq!(
            check.reason(p, &r),
            "output mount /out contains a symbolic link /out/x\\u{1b}[2J\\r\\u{202e} -> /etc/passwd; outputs must be regular files and directories"
        );
    }

    #[test]
    fn what_cannot_be_read_fails_closed_and_a_refused_entry_is_removed_in_place() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("pipe");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/x.txt"), b"..secret-value-1..").unwrap();
        std::fs::write(d.path().join("keep.txt"), b"data").unwrap();
        let r = redactor(b"secret-value-1");
        let check = check_mount(d.path(), "/data", true, &r);
        let kinds: Vec<_> = check.problems.iter().map(|p| p.refused).collect();
        assert_eq!(kinds, [Refused::Unreadable, Refused::Contents]);
        assert_eq!(
            check.reason(check.worst().unwrap(), &r),
            "read-write mount /data: cannot check /data/pipe (a special file, which the check does not read); the check fails closed, so it was removed from the mount"
        );
        remove_refused(d.path(), &check).unwrap();
        assert!(std::fs::symlink_metadata(&fifo).is_err());
        assert!(!d.path().join("sub/x.txt").exists());
        assert!(d.path().join("keep.txt").exists() && d.path().join("sub").is_dir());
        assert!(check_mount(d.path(), "/data", true, &r).problems.is_empty());
    }

    #[test]
    fn a_missing_root_is_a_problem_not_a_clean_result() {
        let d = tempfile::tempdir().unwrap();
        let check = check_mount(
            &d.path().join("gone"),
            "/out",
            false,
            &redactor(b"v4lue-1234"),
        );
        assert_eq!(check.worst().unwrap().refused, Refused::Unreadable);
        assert!(check.leaks());
    }
}
