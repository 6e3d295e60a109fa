//! Small filesystem operations with the durability Cordon promises:
//! atomic replacement and private directories.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Writes `bytes` to a fresh temporary file beside `path` (mode 0600,
/// fsynced) and hands it to `place`, which moves it into place; the
/// temporary file never outlives the call, and the directory is fsynced.
fn write_via_temp(
    path: &Path,
    bytes: &[u8],
    place: impl FnOnce(&Path, &Path) -> io::Result<()>,
) -> io::Result<()> {
    place_via_temp(path, bytes, place)?;
    sync_dir(parent_dir(path))
}

/// [`write_via_temp`] without the directory fsync, for callers that place
/// several files in one directory and fsync it once.
fn place_via_temp(
    path: &Path,
    bytes: &[u8],
    place: impl FnOnce(&Path, &Path) -> io::Result<()>,
) -> io::Result<()> {
    place_via_temp_synced(path, bytes, true, place)
}

fn place_via_temp_synced(
    path: &Path,
    bytes: &[u8],
    sync: bool,
    place: impl FnOnce(&Path, &Path) -> io::Result<()>,
) -> io::Result<()> {
    place_via_temp_in(parent_dir(path), path, bytes, sync, place)
}

/// [`place_via_temp_synced`] with the temporary file in `dir`, which must
/// be on the same file system as `path`.
fn place_via_temp_in(
    dir: &Path,
    path: &Path,
    bytes: &[u8],
    sync: bool,
    place: impl FnOnce(&Path, &Path) -> io::Result<()>,
) -> io::Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    let result = f
        .write_all(bytes)
        .and_then(|_| if sync { f.sync_all() } else { Ok(()) })
        .and_then(|_| place(&tmp, path));
    // After a rename the temporary name is gone; after a hard link (or a
    // failure) it must be removed.
    let _ = fs::remove_file(&tmp);
    result
}

/// Reads a text file that must be a regular file of at most `max` bytes.
///
/// Manifests, pipelines and configuration come from users and from
/// checkouts anyone can change: `manifest = "/dev/zero"` or a FIFO must be a
/// clear error, not a read that never ends. The size is checked on the open
/// file, and the read stops at `max + 1` bytes whatever the metadata said.
pub fn read_regular_to_string(path: &Path, max: u64) -> io::Result<String> {
    String::from_utf8(read_regular(path, max)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
}

/// Like [`read_regular_to_string`], for bytes (a component): a regular
/// file of at most `max` bytes, refused before reading when it is anything
/// else (a FIFO, a device such as `/dev/zero`, a directory) or larger.
pub fn read_regular(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
    // writer before the type check below could refuse it.
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let too_big = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {max} bytes"),
        )
    };
    if meta.len() > max {
        return Err(too_big());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    f.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_big());
    }
    Ok(bytes)
}

/// Writes `bytes` to `path` atomically: a temporary file in the same
/// directory, fsync, rename, fsync of the directory. A crash leaves either
/// the old file or the new one, never a torn one. A new file is private
/// (0600); a replaced one keeps its permissions, so rewriting a user's
/// `cordon.toml` or manifest (`cordon pin`, `cordon key generate`) leaves it
/// as readable as it was.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_via_temp(path, bytes, |tmp, path| {
        if let Ok(meta) = fs::metadata(path) {
            fs::set_permissions(tmp, meta.permissions())?;
        }
        fs::rename(tmp, path)
    })
}

/// [`write_atomic`] for a file that sits among the user's own files (a
/// manifest, its approvals): first the temporaries an earlier writer of
/// the same file left when it was killed (`.NAME.tmp-PID-*` whose process
/// is gone) are removed, so a kill never strands one there for good.
pub fn write_atomic_beside_user_files(path: &Path, bytes: &[u8]) -> io::Result<()> {
    remove_dead_temporaries(path);
    write_atomic(path, bytes)
}

/// Removes `.NAME.tmp-PID-*` beside `path` whose process no longer runs.
/// Best effort: what cannot be listed or removed stays, and a process id
/// that was reused keeps its file until a later write.
fn remove_dead_temporaries(path: &Path) {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return;
    };
    let prefix = format!(".{name}.tmp-");
    let Ok(entries) = fs::read_dir(parent_dir(path)) else {
        return;
    };
    for e in entries.flatten() {
        let file = e.file_name();
        let Some(rest) = file.to_str().and_then(|f| f.strip_prefix(&prefix)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// Replaces `path` with `bytes` atomically (readers see the old file or
/// the new one, never a mix) but without fsyncing: for hints whose loss in
/// a power failure costs only time, such as an action-cache entry. After a
/// power failure the file may be missing, old, or empty; its readers must
/// treat an unreadable one as absent. Two fsyncs fewer per step run.
pub fn replace_unsynced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    place_via_temp_synced(path, bytes, false, |tmp, path| {
        if let Ok(meta) = fs::metadata(path) {
            fs::set_permissions(tmp, meta.permissions())?;
        }
        fs::rename(tmp, path)
    })
}

/// Writes `bytes` to a new file at `path`, failing if it exists; durable
/// like [`write_atomic`]. Used for records, which are never overwritten.
pub fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    // A hard link fails if `path` exists, unlike rename, which replaces.
    write_via_temp(path, bytes, |tmp, path| fs::hard_link(tmp, path))
}

/// Writes each `(path, bytes)` as a new file like [`write_new`], all in
/// the directory `dir`, which is fsynced once after the last: a record and
/// its signed envelope cost one directory fsync, not two. Fails at the
/// first file that exists or cannot be written (earlier ones stay).
pub fn write_new_in(dir: &Path, files: &[(&Path, &[u8])]) -> io::Result<()> {
    for (path, bytes) in files {
        debug_assert_eq!(parent_dir(path), dir);
        place_via_temp(path, bytes, |tmp, path| fs::hard_link(tmp, path))?;
    }
    sync_dir(dir)
}

/// Writes each `(path, bytes)` as a new file like [`write_new_in`], but
/// makes nothing durable: the caller makes a whole batch durable at once
/// with [`sync_filesystem`]. Readers never see a torn file (each is written
/// under a temporary name in `tmp_dir`, on the same file system, and linked
/// into place); a crash before the sync may lose any of them, so nothing
/// may point at them until it returns.
///
/// Where the file system supports it (Linux: ext4, XFS, btrfs, tmpfs),
/// each file is written as an unnamed temporary (`O_TMPFILE`) in its own
/// directory and then linked into place, so no temporary name is created
/// and deleted. That matters beyond the two system calls saved: on ext4
/// without a journal, every inode deleted in the last minutes is skipped
/// one by one by each later inode allocation, so a pipeline that deleted
/// two temporaries per record made each record slower to create than the
/// one before. A file an interrupted write leaves unlinked is freed by
/// the file system. Elsewhere the named temporary in `tmp_dir` is used.
pub fn write_new_unsynced_via(tmp_dir: &Path, files: &[(&Path, &[u8])]) -> io::Result<()> {
    for (path, bytes) in files {
        match write_new_unnamed(path, bytes) {
            Ok(()) => {}
            Err(Unnamed::Unsupported) => {
                place_via_temp_in(tmp_dir, path, bytes, false, |tmp, path| {
                    fs::hard_link(tmp, path)
                })?
            }
            Err(Unnamed::Failed(e)) => return Err(e),
        }
    }
    Ok(())
}

/// Why [`write_new_unnamed`] did not write a file.
enum Unnamed {
    /// No unnamed temporaries here (the file system, the kernel, or no
    /// `/proc` to link one by): use a named one. Nothing was created.
    Unsupported,
    /// Writing or linking failed (`path` exists, the disk is full, …).
    Failed(io::Error),
}

/// Writes `bytes` to a new file at `path` through an unnamed temporary
/// file in its directory (mode 0600), linked into place only once whole:
/// readers never see a torn file, and `path` is never replaced.
#[cfg(target_os = "linux")]
fn write_new_unnamed(path: &Path, bytes: &[u8]) -> Result<(), Unnamed> {
    use std::os::fd::AsRawFd;
    let mut f = match OpenOptions::new()
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE)
        .open(parent_dir(path))
    {
        Ok(f) => f,
        // EOPNOTSUPP: the file system has none; EISDIR/EINVAL: the kernel
        // predates them (it takes the flag for O_DIRECTORY).
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)
            ) =>
        {
            return Err(Unnamed::Unsupported);
        }
        Err(e) => return Err(Unnamed::Failed(e)),
    };
    f.write_all(bytes).map_err(Unnamed::Failed)?;
    // Linking an open file by descriptor needs a privilege; through its
    // `/proc` path it does not. `linkat` never replaces `path`.
    let proc_path = format!("/proc/self/fd/{}", f.as_raw_fd());
    match rustix::fs::linkat(
        rustix::fs::CWD,
        proc_path.as_str(),
        rustix::fs::CWD,
        path,
        rustix::fs::AtFlags::SYMLINK_FOLLOW,
    ) {
        Ok(()) => Ok(()),
        // No `/proc` mounted: nothing is named yet.
        Err(rustix::io::Errno::NOENT) if !Path::new("/proc/self/fd").is_dir() => {
            Err(Unnamed::Unsupported)
        }
        Err(e) => Err(Unnamed::Failed(e.into())),
    }
}

#[cfg(not(target_os = "linux"))]
fn write_new_unnamed(_: &Path, _: &[u8]) -> Result<(), Unnamed> {
    Err(Unnamed::Unsupported)
}

/// Makes everything written so far to the file system that holds `dir`
/// durable, its directory entries included: one `syncfs` on Linux, which
/// costs one flush however many files a batch wrote (and reports a
/// write-back error of any of them). Elsewhere, each of `files` and `dir`
/// is fsynced.
pub fn sync_filesystem(dir: &Path, files: &[&Path]) -> io::Result<()> {
    let d = File::open(dir)?;
    #[cfg(target_os = "linux")]
    {
        let _ = files;
        rustix::fs::syncfs(&d).map_err(io::Error::from)
    }
    #[cfg(not(target_os = "linux"))]
    {
        for f in files {
            File::open(f)?.sync_all()?;
        }
        d.sync_all()
    }
}

/// The directory containing `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// fsyncs a directory so a rename in it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `path` (and missing parents) with mode 0700 for the directories
/// it creates.
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// The absolute form of `path` with every existing ancestor canonicalised
/// (symlinks in the existing part resolved), the missing rest appended.
pub fn resolve(path: &Path) -> io::Result<PathBuf> {
    let abs = std::path::absolute(path)?;
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    loop {
        match existing.canonicalize() {
            Ok(c) => {
                let mut out = c;
                for part in rest.iter().rev() {
                    out.push(part);
                }
                return Ok(out);
            }
            Err(_) => match (existing.parent(), existing.file_name()) {
                (Some(parent), Some(name)) => {
                    rest.push(name.to_os_string());
                    existing = parent;
                }
                _ => return Ok(abs),
            },
        }
    }
}

/// Copies a tree of regular files and directories (the caller has checked
/// there is nothing else in it).
pub fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir(to)?;
    for item in fs::read_dir(from)? {
        let item = item?;
        let ft = item.file_type()?;
        let dest = to.join(item.file_name());
        if ft.is_dir() {
            copy_tree(&item.path(), &dest)?;
        } else if ft.is_file() {
            fs::copy(item.path(), &dest)?;
        } else {
            return Err(io::Error::other(format!(
                "refusing to copy {}: not a regular file",
                item.path().display()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_temporary_a_killed_writer_left_beside_a_users_file_is_removed_by_the_next_write() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("train.approvals.json");
        // A process id no process has (beyond the kernel's pid_max).
        let dead = d.path().join(".train.approvals.json.tmp-4194305-0badf00d");
        std::fs::write(&dead, b"half").unwrap();
        // One of a live process (this one) stays.
        let live = d.path().join(format!(
            ".train.approvals.json.tmp-{}-00000001",
            std::process::id()
        ));
        std::fs::write(&live, b"mine").unwrap();
        let other = d.path().join(".other.json.tmp-4194305-0badf00d");
        std::fs::write(&other, b"not ours").unwrap();
        write_atomic_beside_user_files(&path, b"{}").unwrap();
        assert!(!dead.exists());
        assert!(live.exists());
        assert!(
            other.exists(),
            "only temporaries of the file written are removed"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"{}");
    }

    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_new_file_is_private_and_a_replaced_one_keeps_its_mode() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        write_atomic(&p, b"one").unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&p), 0o600);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(mode(&p), 0o644);
        let n = d.path().join("n");
        write_new(&n, b"x").unwrap();
        assert_eq!(mode(&n), 0o600);
        assert!(write_new(&n, b"y").is_err(), "never overwrites");
    }

    #[test]
    fn write_new_never_overwrites() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("r.json");
        write_new(&p, b"one").unwrap();
        assert!(write_new(&p, b"two").is_err());
        assert_eq!(fs::read(&p).unwrap(), b"one");
        assert_eq!(
            fs::read_dir(d.path()).unwrap().count(),
            1,
            "no temporary file left behind"
        );
    }

    /// A batch file is written whole, private, never over an existing one,
    /// and leaves no temporary name anywhere: not beside it, not in the
    /// temporary directory.
    #[test]
    fn unsynced_new_files_are_whole_private_and_leave_no_temporaries() {
        let d = tempfile::tempdir().unwrap();
        let tmp = d.path().join(".tmp");
        fs::create_dir(&tmp).unwrap();
        let (a, b) = (d.path().join("a.json"), d.path().join("b.json"));
        write_new_unsynced_via(&tmp, &[(&a, b"record"), (&b, b"envelope")]).unwrap();
        assert_eq!(fs::read(&a).unwrap(), b"record");
        assert_eq!(fs::read(&b).unwrap(), b"envelope");
        let mode = fs::metadata(&a).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let err = write_new_unsynced_via(&tmp, &[(&a, b"forged")]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
        assert_eq!(fs::read(&a).unwrap(), b"record", "never overwritten");
        let mut names: Vec<_> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, [".tmp", "a.json", "b.json"]);
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
    }

    /// On Linux the batch files are written without a named temporary, so
    /// writing them deletes no inode (which, on ext4 without a journal,
    /// every later inode allocation would have to skip): the only directory
    /// event is the file's own name appearing.
    #[cfg(target_os = "linux")]
    #[test]
    fn unsynced_new_files_create_and_delete_no_temporary() {
        use rustix::fs::inotify;
        let d = tempfile::tempdir().unwrap();
        let tmp = d.path().join(".tmp");
        fs::create_dir(&tmp).unwrap();
        if let Err(Unnamed::Unsupported) = write_new_unnamed(&d.path().join("probe"), b"") {
            eprintln!("no O_TMPFILE on this file system; nothing to check");
            return;
        }
        let ino = inotify::init(inotify::CreateFlags::NONBLOCK).unwrap();
        let watch = inotify::WatchFlags::CREATE
            | inotify::WatchFlags::DELETE
            | inotify::WatchFlags::MOVED_TO
            | inotify::WatchFlags::MOVED_FROM;
        let dir_wd = inotify::add_watch(&ino, d.path(), watch).unwrap();
        inotify::add_watch(&ino, &tmp, watch).unwrap();
        let (a, b) = (d.path().join("a.json"), d.path().join("b.json"));
        write_new_unsynced_via(&tmp, &[(&a, b"record"), (&b, b"envelope")]).unwrap();
        let mut buf = [std::mem::MaybeUninit::uninit(); 4096];
        let mut reader = inotify::Reader::new(&ino, &mut buf);
        let mut events = Vec::new();
        while let Ok(e) = reader.next() {
            let name = e.file_name().map(|n| n.to_string_lossy().into_owned());
            events.push((e.wd() == dir_wd, e.events(), name));
        }
        let names: Vec<_> = events
            .iter()
            .map(|(in_dir, flags, name)| {
                assert!(
                    *in_dir,
                    "nothing happens in the temporary directory: {events:?}"
                );
                assert_eq!(*flags, inotify::ReadFlags::CREATE, "{events:?}");
                name.clone().unwrap_or_default()
            })
            .collect();
        assert_eq!(names, ["a.json", "b.json"]);
    }

    #[test]
    fn resolve_handles_missing_tails() {
        let d = tempfile::tempdir().unwrap();
        let r = resolve(&d.path().join("a/b")).unwrap();
        assert_eq!(r, d.path().canonicalize().unwrap().join("a/b"));
    }
}
