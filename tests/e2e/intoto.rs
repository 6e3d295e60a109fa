//! `cordon export in-toto` checked by the real `in-toto-verify`: what a
//! verifier who trusts only the layout owner's key can check about one
//! step run and about a whole pipeline run, and which tampering each check
//! catches.

use crate::harness::*;
use cordon_test_artifacts::CHECKSUM;

/// `in-toto-verify` from PyPI `in-toto`: required, since the point is that
/// a tool nobody here wrote accepts the export.
pub(crate) fn in_toto_verify(ws: &Workspace, args: &[&str]) -> Option<std::process::Output> {
    let found = std::process::Command::new("in-toto-verify")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CORDON_TEST_SKIP_IN_TOTO").is_some(),
            "in-toto-verify is not installed: `pip install in-toto` (or set CORDON_TEST_SKIP_IN_TOTO=1 to skip this check)"
        );
        return None;
    }
    Some(
        std::process::Command::new("in-toto-verify")
            .args(args)
            .current_dir(ws.root())
            .output()
            .unwrap(),
    )
}

/// The arguments that verify `meta/root.layout` with the owner's key.
const VERIFY_META: [&str; 6] = [
    "--layout",
    "meta/root.layout",
    "--verification-keys",
    "keys/owner.pub",
    "--link-dir",
    "meta",
];

/// A workspace whose `dev` environment signs its records and whose layout
/// owner has a key pair in `keys/`.
fn signed_workspace_with_owner() -> Workspace {
    let ws = Workspace::new();
    let out = ws.cordon(&["key", "generate", "--env", "dev"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = ws.cordon(&["key", "reviewer", "owner", "--dir", "keys"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    ws
}

fn stderr_of(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn an_exported_step_run_fails_in_toto_verify_when_an_output_is_deleted() {
    let ws = signed_workspace_with_owner();
    ws.write("data/a.txt", "alpha\n");
    ws.step(
        CHECKSUM,
        &["--input", "/in", "--output", "/out"],
        &(mount("/in", "data", "read") + &mount("/out", "sums", "write")),
    );
    let run = ws.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    let run_id = ws.record()["run_id"].as_str().unwrap().to_string();
    let out = ws.cordon(
        &[
            "export",
            "in-toto",
            "--run",
            &run_id,
            "--layout-key",
            "keys/owner.key",
            "meta",
        ],
        &[],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let Some(ok) = in_toto_verify(&ws, &VERIFY_META) else {
        return;
    };
    assert!(ok.status.success(), "{ok:?}");
    std::fs::remove_file(ws.path("sums/SHA256SUMS")).unwrap();
    let deleted = in_toto_verify(&ws, &VERIFY_META).unwrap();
    assert_eq!(deleted.status.code(), Some(1), "{deleted:?}");
    assert!(
        stderr_of(&deleted).contains("sums/SHA256SUMS"),
        "the failure names the missing product: {}",
        stderr_of(&deleted)
    );
}
