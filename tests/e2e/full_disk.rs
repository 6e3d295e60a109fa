//! A full disk, on a small tmpfs holding the state directory and the
//! outputs: every earlier record and output stays intact, nothing is
//! published without a record, the error says what happened, and once
//! there is room again `repair`, `verify` and the next run all succeed.
//!
//! Mounting a tmpfs needs root (CI runs as root); elsewhere the tests say
//! they are skipped and why.

use crate::harness::*;
use cordon_test_artifacts::PROBE;
use std::path::PathBuf;

/// A tmpfs of `size` mounted at `path`, unmounted on drop.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(path: PathBuf, size: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(&path).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!(
                "skipped: cannot mount a tmpfs at {} (needs root); CI runs this test",
                path.display()
            );
            return None;
        }
        Some(SmallDisk(path))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills the file system holding `filler` to its last block.
fn fill(filler: &std::path::Path) {
    use std::io::Write as _;
    let mut f = std::fs::File::create(filler).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    while f.write_all(&[0u8; 512]).is_ok() {}
    let _ = f.sync_all();
}

/// `cordon ARGS --state disk/state` in the workspace.
fn on_disk(ws: &Workspace, args: &[&str]) -> Output {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--state", "disk/state"]);
    ws.cordon(&all, &[])
}

fn write_step(ws: &Workspace, file: &str, content: &str) {
    ws.step(
        PROBE,
        &["write", &format!("/out/{file}"), content],
        &mount("/out", "disk/out", "write"),
    );
}

#[test]
fn a_step_that_fills_the_disk_publishes_nothing_and_loses_nothing() {
    let ws = Workspace::new();
    let Some(_disk) = SmallDisk::mount(ws.path("disk"), "6m") else {
        return;
    };
    assert_eq!(ws.cordon(&["key", "generate", "--env", "dev"], &[]).code, 0);
    write_step(&ws, "a.txt", "first");
    let first = on_disk(&ws, &["run", "step.toml"]);
    assert_eq!(first.code, 0, "{first:?}");

    // Writes until the disk is full.
    ws.step(
        PROBE,
        &["flood-disk", "/out/big"],
        &mount("/out", "disk/out", "write"),
    );
    let out = on_disk(&ws, &["run", "step.toml", "--no-cache"]);
    assert!(out.code == 1 || out.code == 3, "{out:?}");
    assert_eq!(
        std::fs::read_to_string(ws.path("disk/out/a.txt")).unwrap(),
        "first",
        "the earlier output stands"
    );
    assert!(
        !ws.path("disk/out/big").exists(),
        "nothing of the flood is published"
    );

    let r = on_disk(&ws, &["repair"]);
    assert_eq!(r.code, 0, "{r:?}");
    let v = on_disk(&ws, &["verify"]);
    assert_eq!(v.code, 0, "every record holds: {v:?}");
    write_step(&ws, "b.txt", "after");
    let next = on_disk(&ws, &["run", "step.toml"]);
    assert_eq!(next.code, 0, "the next run works: {next:?}");
    assert_eq!(on_disk(&ws, &["verify"]).code, 0);
}

#[test]
fn a_disk_too_full_for_the_record_fails_the_runner_clearly_and_publishes_nothing() {
    let ws = Workspace::new();
    let Some(_disk) = SmallDisk::mount(ws.path("disk"), "6m") else {
        return;
    };
    assert_eq!(ws.cordon(&["key", "generate", "--env", "dev"], &[]).code, 0);
    write_step(&ws, "a.txt", "first");
    assert_eq!(on_disk(&ws, &["run", "step.toml"]).code, 0);
    let records_before = std::fs::read(ws.path("disk/state/records/chain.log")).unwrap();

    // Something else fills the disk, to the last block.
    let filler = ws.path("disk/filler");
    fill(&filler);
    write_step(&ws, "a.txt", "second");
    let out = on_disk(&ws, &["run", "step.toml", "--no-cache"]);
    assert_eq!(out.code, 3, "the runner itself failed: {out:?}");
    assert!(
        out.stderr.contains("No space left on device"),
        "the error says why: {out:?}"
    );
    assert_eq!(
        std::fs::read_to_string(ws.path("disk/out/a.txt")).unwrap(),
        "first",
        "nothing was published without a record"
    );
    assert!(
        std::fs::read(ws.path("disk/state/records/chain.log"))
            .unwrap()
            .starts_with(&records_before),
        "earlier records are intact"
    );

    std::fs::remove_file(&filler).unwrap();
    let r = on_disk(&ws, &["repair"]);
    assert_eq!(r.code, 0, "{r:?}");
    let v = on_disk(&ws, &["verify"]);
    assert_eq!(v.code, 0, "{v:?}");
    let next = on_disk(&ws, &["run", "step.toml", "--no-cache"]);
    assert_eq!(next.code, 0, "{next:?}");
    assert_eq!(
        std::fs::read_to_string(ws.path("disk/out/a.txt")).unwrap(),
        "second"
    );
}

/// The outputs' file system is full while a run publishes (its record is
/// already durable on another one): the runner fails clearly, and once
/// space is freed the next ordinary run completes the publication by
/// itself (nobody runs `repair`), and everything verifies.
#[test]
fn an_output_disk_full_during_publication_is_completed_by_the_next_run_once_space_is_freed() {
    let ws = Workspace::new();
    let Some(_disk) = SmallDisk::mount(ws.path("disk"), "2m") else {
        return;
    };
    assert_eq!(ws.cordon(&["key", "generate", "--env", "dev"], &[]).code, 0);
    write_step(&ws, "a.txt", "first");
    // The state directory is on the workspace's disk, the output on the
    // small one: publishing copies across file systems.
    assert_eq!(ws.cordon(&["run", "step.toml"], &[]).code, 0);
    let filler = ws.path("disk/filler");
    fill(&filler);
    let big = "x".repeat(96 * 1024);
    write_step(&ws, "a.txt", &big);
    let out = ws.cordon(&["run", "step.toml"], &[]);
    assert_eq!(out.code, 3, "{out:?}");
    assert!(out.stderr.contains("No space left on device"), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(ws.path("disk/out/a.txt")).unwrap(),
        "first",
        "the output is the old tree, whole"
    );
    // As the failure left it: verify names the unfinished publication.
    assert_eq!(ws.cordon(&["verify"], &[]).code, 1);

    std::fs::remove_file(&filler).unwrap();
    let next = ws.cordon(&["run", "step.toml"], &[]);
    assert_eq!(next.code, 0, "{next:?}");
    assert!(
        next.stderr.contains("recovered: 1 publication completed"),
        "{next:?}"
    );
    assert_eq!(
        std::fs::read_to_string(ws.path("disk/out/a.txt")).unwrap(),
        big
    );
    let v = ws.cordon(&["verify"], &[]);
    assert_eq!(v.code, 0, "{v:?}");
}
