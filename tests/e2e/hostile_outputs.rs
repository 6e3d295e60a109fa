//! A step granted `reveal` tries to get the value out through what the
//! runner publishes or prints: names of output files and directories,
//! symbolic link targets, a name the checker once could not open, a
//! read-write mount, a tree deeper than the check walks, a special file it
//! cannot read. Every attempt must fail the step (exit 1, the reason in the
//! record), publish nothing, and leave the value in no file and no byte
//! the runner printed.

use crate::harness::*;
use cordon_test_artifacts::HOSTILE;
use std::path::Path;

/// A value that can be a file name (no `/`, valid UTF-8), holding the
/// characters that escaping and JSON change: `"`, `\` and a newline.
const NAMEABLE: &str = "n4me\"with\\back\nslash-7c1d";

/// A value with bytes that are not UTF-8, and `"`, `\` and a newline; it
/// cannot be a WASI file name, so it is used for contents.
const BINARY: &[u8] = b"b\xffin\"ary\\\n\xfe-value-39";

/// A value holding `/`, so it can be spelled across two directory names.
const SPLIT: &str = "split-sec/ret-value-42";

/// A workspace whose `dev` environment reads `token` from the runner's
/// environment.
fn env_workspace() -> Workspace {
    let ws = Workspace::new();
    ws.write("cordon.toml", "[env.dev.secrets]\nprovider = \"env\"\n");
    ws
}

/// A workspace whose local store holds `token` = `value` (any bytes).
fn local_workspace(value: &[u8]) -> Workspace {
    let ws = Workspace::new();
    let out = ws.cordon_with_input(&["secret", "set", "token"], &[], Some(value));
    assert_eq!(out.code, 0, "{out:?}");
    ws
}

const GRANT: &str = "[[secret]]\nname = \"token\"\nuses = [\"reveal\"]\n";

/// `hostile ATTACK token DIR [N]` with the mounts `mounts`.
fn hostile(ws: &Workspace, args: &[&str], mounts: &str) {
    ws.step(HOSTILE, args, &format!("{mounts}{GRANT}"));
}

/// The forms a value can take on the way out: as it is, its hex in both
/// cases, its base64, how JSON and a terminal escape it, and (for the
/// streams, which the harness reads as lossy UTF-8) its lossy text.
fn forms(value: &[u8]) -> Vec<Vec<u8>> {
    use base64::Engine;
    let lossy = String::from_utf8_lossy(value).into_owned();
    let mut forms = vec![
        value.to_vec(),
        hex::encode(value).into_bytes(),
        hex::encode_upper(value).into_bytes(),
        base64::engine::general_purpose::STANDARD
            .encode(value)
            .into_bytes(),
        base64::engine::general_purpose::URL_SAFE
            .encode(value)
            .into_bytes(),
        lossy.clone().into_bytes(),
        lossy.escape_default().to_string().into_bytes(),
    ];
    let json = serde_json::to_string(&lossy).unwrap();
    forms.push(json.trim_matches('"').as_bytes().to_vec());
    forms.sort();
    forms.dedup();
    forms
}

/// Every name, link target and file content under `dir`, each as one
/// separate piece (a value split across two pieces is not "in" either).
fn pieces(dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let path = e.path();
        let shown = path.display().to_string();
        out.push((
            format!("the name of {shown}"),
            std::os::unix::ffi::OsStrExt::as_bytes(e.file_name().as_os_str()).to_vec(),
        ));
        // Also the path from the workspace root, so a value spelled across
        // nested names is seen.
        out.push((
            format!("the path of {shown}"),
            std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()).to_vec(),
        ));
        let ft = e.file_type().unwrap();
        if ft.is_symlink() {
            let target = std::fs::read_link(&path).unwrap();
            out.push((
                format!("the link target of {shown}"),
                std::os::unix::ffi::OsStrExt::as_bytes(target.as_os_str()).to_vec(),
            ));
        } else if ft.is_dir() {
            pieces(&path, out);
        } else if ft.is_file() {
            out.push((
                format!("the contents of {shown}"),
                std::fs::read(&path).unwrap(),
            ));
        }
    }
}

/// The value, in none of its [`forms`], is in any file name, link target
/// or file under the workspace (the state directory included), nor in
/// anything the runner printed.
fn assert_appears_nowhere(ws: &Workspace, out: &Output, value: &[u8]) {
    let mut all = Vec::new();
    pieces(ws.root(), &mut all);
    all.push((
        "the runner's stdout".into(),
        out.stdout.clone().into_bytes(),
    ));
    all.push((
        "the runner's stderr".into(),
        out.stderr.clone().into_bytes(),
    ));
    for form in forms(value) {
        for (what, bytes) in &all {
            assert!(
                !contains(bytes, &form),
                "the value (as {}) appears in {what}",
                String::from_utf8_lossy(&form).escape_default()
            );
        }
    }
}

/// The step failed, its record says `reason_has` (and is otherwise silent
/// about the value), and nothing of the value is left anywhere.
fn assert_refused(ws: &Workspace, out: &Output, value: &[u8], reason_has: &[&str]) -> String {
    assert_eq!(out.code, 1, "{out:?}");
    let rec = ws.record();
    assert_eq!(rec["success"], false, "{rec}");
    let reason = rec["outputs"]["withheld"]["reason"]
        .as_str()
        .unwrap_or_else(|| panic!("no reason in {rec}"))
        .to_string();
    for part in reason_has {
        assert!(
            reason.contains(part),
            "{part:?} not in the reason {reason:?}"
        );
    }
    assert!(
        out.stderr.contains(&reason),
        "the runner printed the recorded reason: {}",
        out.stderr
    );
    assert_appears_nowhere(ws, out, value);
    reason
}

/// A refused write mount is not kept: its listing is, with names
/// redacted, and nothing else of it.
fn assert_only_a_listing_is_kept(ws: &Workspace) -> serde_json::Value {
    let rec = ws.record();
    let withheld = &rec["outputs"]["withheld"];
    assert!(withheld["kept_at"].is_null(), "refused bytes kept: {rec}");
    let listing = withheld["listing"].as_str().expect("a listing is kept");
    let listing = Path::new(listing);
    assert!(
        listing.starts_with(ws.path(".cordon/failed")),
        "{listing:?}"
    );
    let dir = listing.parent().unwrap();
    let names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [listing.file_name().unwrap()], "only the listing");
    assert!(
        !ws.path(".cordon/staging").exists()
            || std::fs::read_dir(ws.path(".cordon/staging"))
                .unwrap()
                .next()
                .is_none(),
        "the staging area is gone"
    );
    serde_json::from_slice(&std::fs::read(listing).unwrap()).unwrap()
}

#[test]
fn a_file_named_after_the_secret_is_not_published() {
    let ws = env_workspace();
    hostile(
        &ws,
        &["name-file", "token", "/out"],
        &mount("/out", "out", "write"),
    );
    let out = ws.run(&[("CORDON_SECRET_TOKEN", NAMEABLE)]);
    assert!(out.stdout.contains("name-file: ok"), "{out:?}");
    assert_refused(
        &ws,
        &out,
        NAMEABLE.as_bytes(),
        &[
            "output mount /out",
            "/out/[REDACTED:token]",
            "holds a secret value",
        ],
    );
    assert!(!ws.path("out").exists(), "nothing published");
    let listing = assert_only_a_listing_is_kept(&ws);
    let text = listing.to_string();
    assert!(text.contains("[REDACTED:token]"), "{text}");
    assert!(text.contains("\"sha256\""), "digests are kept: {text}");
}

#[test]
fn a_directory_named_after_the_secret_is_not_published() {
    let ws = env_workspace();
    hostile(
        &ws,
        &["name-dir", "token", "/out"],
        &mount("/out", "out", "write"),
    );
    let out = ws.run(&[("CORDON_SECRET_TOKEN", NAMEABLE)]);
    assert!(out.stdout.contains("name-dir: ok"), "{out:?}");
    assert_refused(
        &ws,
        &out,
        NAMEABLE.as_bytes(),
        &["/out/[REDACTED:token]", "holds a secret value"],
    );
    assert!(!ws.path("out").exists(), "nothing published");
    assert_only_a_listing_is_kept(&ws);
}

#[test]
fn a_value_spelled_across_nested_directory_names_is_not_published() {
    let ws = env_workspace();
    hostile(
        &ws,
        &["name-path", "token", "/out"],
        &mount("/out", "out", "write"),
    );
    let out = ws.run(&[("CORDON_SECRET_TOKEN", SPLIT)]);
    assert!(out.stdout.contains("name-path: ok"), "{out:?}");
    assert_refused(
        &ws,
        &out,
        SPLIT.as_bytes(),
        &["/out/[REDACTED:token]", "holds a secret value"],
    );
    assert!(!ws.path("out").exists(), "nothing published");
    assert_only_a_listing_is_kept(&ws);
}

#[test]
fn a_symlink_target_spelling_the_value_never_reaches_a_message() {
    let ws = env_workspace();
    hostile(
        &ws,
        &["symlink-target", "token", "/out"],
        &mount("/out", "out", "write"),
    );
    let out = ws.run(&[("CORDON_SECRET_TOKEN", NAMEABLE)]);
    assert!(out.stdout.contains("symlink-target: ok"), "{out:?}");
    assert_refused(
        &ws,
        &out,
        NAMEABLE.as_bytes(),
        &[
            "output mount /out",
            "/out/link",
            "symbolic link",
            "holds a secret value",
        ],
    );
    assert!(!ws.path("out").exists(), "nothing published");
    assert_only_a_listing_is_kept(&ws);
}

#[test]
fn a_backslash_in_one_name_does_not_hide_a_raw_value_in_another_file() {
    let ws = local_workspace(BINARY);
    hostile(
        &ws,
        &["backslash-then-raw", "token", "/out"],
        &mount("/out", "out", "write"),
    );
    let out = ws.run(&[]);
    assert!(out.stdout.contains("backslash-then-raw: ok"), "{out:?}");
    assert_refused(
        &ws,
        &out,
        BINARY,
        &["output file /out/z.txt contains a secret value"],
    );
    assert!(!ws.path("out").exists(), "nothing published");
    assert_only_a_listing_is_kept(&ws);
}

#[test]
fn a_newline_in_one_name_does_not_hide_a_raw_value_in_another_file() {
    let ws = local_workspace(BINARY);
    hostile(
        &ws,
        &["newline-then-raw", "token", "/out"],
        &mount("/out", "out", "write"),
    );
    let out = ws.run(&[]);
    assert!(out.stdout.contains("newline-then-raw: ok"), "{out:?}");
    assert_refused(
        &ws,
        &out,
        BINARY,
        &["output file /out/z.txt contains a secret value"],
    );
    assert!(!ws.path("out").exists(), "nothing published");
    let listing = assert_only_a_listing_is_kept(&ws).to_string();
    // The other name is listed escaped, never as a raw newline.
    assert!(listing.contains(r"a\\nb"), "{listing}");
}

#[test]
fn a_read_write_mount_holding_the_value_fails_the_step() {
    let ws = local_workspace(BINARY);
    ws.write("data/keep.txt", "the user's own data");
    hostile(
        &ws,
        &["raw", "token", "/data"],
        &mount("/data", "data", "read-write"),
    );
    let out = ws.run(&[]);
    assert!(out.stdout.contains("raw: ok"), "{out:?}");
    assert_refused(
        &ws,
        &out,
        BINARY,
        &[
            "read-write mount /data",
            "/data/x.txt contains a secret value",
            "removed",
        ],
    );
    assert!(!ws.path("data/x.txt").exists(), "the leaked file is gone");
    assert_eq!(
        std::fs::read(ws.path("data/keep.txt")).unwrap(),
        b"the user's own data",
        "the rest of the mount is untouched"
    );
}

#[test]
fn an_unreadable_output_fails_the_step_closed() {
    let ws = local_workspace(BINARY);
    ws.mkdir("data");
    // A FIFO: opening it for reading would wait for a writer forever, so
    // the check cannot read it and must refuse rather than pass it.
    let fifo = ws.path("data/pipe");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    hostile(
        &ws,
        &["plain", "token", "/data"],
        &mount("/data", "data", "read-write"),
    );
    let out = ws.run(&[]);
    assert!(out.stdout.contains("plain: ok"), "{out:?}");
    assert_refused(
        &ws,
        &out,
        BINARY,
        &[
            "read-write mount /data",
            "cannot check /data/pipe",
            "fails closed",
        ],
    );
    assert!(
        std::fs::symlink_metadata(&fifo).is_err(),
        "what the check cannot judge is not left in place"
    );
}

#[test]
fn a_tree_deeper_than_the_limit_fails_the_step_not_the_runner() {
    let ws = local_workspace(BINARY);
    // Deep enough that its path is longer than any the host can name at
    // once (PATH_MAX is 4096 bytes: `d/` 2,100 times is 4,200).
    hostile(
        &ws,
        &["deep-tree", "token", "/out", "2100"],
        &mount("/out", "out", "write"),
    );
    // The output measurement stops the step once its tree is deeper than
    // it measures (it may not get to say "ok"); the output check then
    // refuses what was written.
    let out = ws.run(&[]);
    assert_refused(
        &ws,
        &out,
        BINARY,
        &["output mount /out", "deeper than", "directories"],
    );
    assert_eq!(
        ws.record()["termination"]["kind"],
        "limit-exceeded",
        "{}",
        ws.record()
    );
    assert!(!ws.path("out").exists(), "nothing published");
    assert_only_a_listing_is_kept(&ws);
}
