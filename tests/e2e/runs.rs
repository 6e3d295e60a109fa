//! Real steps end to end: outputs, records, secrets, redaction, and nothing
//! lost when a step fails.

use crate::harness::*;
use cordon_test_artifacts::{CHECKSUM, CSV_VALIDATE, PLAIN, PROBE};
use hmac::{Hmac, Mac};

const KEY: &str = "k3y-v4lue-that-must-never-print";

/// `cordon.toml` selecting the `env` provider (`CORDON_SECRET_<NAME>`).
const ENV_PROVIDER: &str = "[env.dev.secrets]\nprovider = \"env\"\n";

#[test]
fn checksum_step_hashes_inputs_and_authenticates_with_a_secret_handle() {
    let ws = Workspace::new();
    ws.write("data/a.txt", "alpha\n");
    ws.write("data/sub/b.txt", "beta\n");
    ws.step(
        CHECKSUM,
        &[
            "--input",
            "/in",
            "--output",
            "/out",
            "--hmac-key",
            "signing-key",
        ],
        &(mount("/in", "data", "read")
            + &mount("/out", "sums", "write")
            + "[[secret]]\nname = \"signing-key\"\nuses = [\"hmac\"]\n"),
    );
    ws.write("cordon.toml", ENV_PROVIDER);
    let out = ws.run(&[("CORDON_SECRET_SIGNING_KEY", KEY)]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("[checksum] hashed 2 files, 11 bytes"),
        "{}",
        out.stdout
    );

    let sums = std::fs::read_to_string(ws.path("sums/SHA256SUMS")).unwrap();
    let expected = format!(
        "{}  a.txt\n{}  sub/b.txt\n",
        sha256_hex(b"alpha\n"),
        sha256_hex(b"beta\n")
    );
    assert_eq!(sums, expected);
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(KEY.as_bytes()).unwrap();
    mac.update(sums.as_bytes());
    let tag = hex::encode(mac.finalize().into_bytes());
    assert_eq!(
        std::fs::read_to_string(ws.path("sums/SHA256SUMS.hmac")).unwrap(),
        format!("{tag}\n")
    );

    let rec = ws.record();
    assert_eq!(rec["success"], true);
    assert_eq!(rec["outputs"], "published");
    assert_eq!(rec["secrets"]["signing-key"]["provider"], "env");
    assert_eq!(rec["secrets"]["signing-key"]["used"]["hmac"], 1);
    assert_eq!(rec["report"]["metrics"]["files"], 2.0);
    assert_eq!(rec["report"]["annotations"]["hmac-key"], "signing-key");
    // Output digests in the record match the published files.
    let entries = rec["mounts"][1]["after"]["entries"].as_array().unwrap();
    let sums_entry = entries.iter().find(|e| e["path"] == "SHA256SUMS").unwrap();
    assert_eq!(sums_entry["sha256"], sha256_hex(sums.as_bytes()));
    assert_eq!(
        rec["component"]["sha256"],
        format!("sha256:{}", sha256_hex(&std::fs::read(CHECKSUM).unwrap()))
    );
    assert!(
        !contains(&ws.state_bytes(), KEY.as_bytes()),
        "the secret value reached the state directory"
    );
    assert!(!out.stdout.contains(KEY) && !out.stderr.contains(KEY));
}

#[test]
fn csv_validation_publishes_clean_rows_and_a_report() {
    let ws = Workspace::new();
    ws.write("raw/people.csv", "name,age\nada,36\n,41\nbob\ncy,29\n");
    ws.step(
        CSV_VALIDATE,
        &["--require", "name,age", "--max-invalid", "5"],
        &(mount("/in", "raw", "read") + &mount("/out", "clean", "write")),
    );
    let out = ws.run(&[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        std::fs::read_to_string(ws.path("clean/people.csv")).unwrap(),
        "name,age\nada,36\ncy,29\n"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ws.path("clean/report.json")).unwrap()).unwrap();
    assert_eq!(report["rows"], 4);
    assert_eq!(report["rejected"], 2);
    let rec = ws.record();
    assert_eq!(rec["report"]["metrics"]["rows_rejected"], 2.0);
}

#[test]
fn a_failed_step_publishes_nothing_and_leaves_earlier_outputs_intact() {
    let ws = Workspace::new();
    ws.write("raw/people.csv", "name,age\nada,36\n");
    ws.step(
        CSV_VALIDATE,
        &["--require", "name,age"],
        &(mount("/in", "raw", "read") + &mount("/out", "clean", "write")),
    );
    assert_eq!(ws.run(&[]).code, 0);
    let published = snapshot(&ws.path("clean"));

    // Now the data is bad: the step writes partial output, then fails.
    ws.write("raw/people.csv", "name,age\nada,36\nbob\n");
    let out = ws.run(&[]);
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        snapshot(&ws.path("clean")),
        published,
        "earlier outputs changed"
    );
    assert!(
        out.stderr.contains("partial output kept at"),
        "{}",
        out.stderr
    );
    let records = ws.records();
    assert_eq!(records.len(), 2, "both runs are recorded");
    let failed = &records[1];
    assert_eq!(failed["success"], false);
    let kept = failed["outputs"]["withheld"]["kept_at"].as_str().unwrap();
    let kept_files: Vec<String> = snapshot(std::path::Path::new(kept))
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert!(
        kept_files.iter().any(|p| p.ends_with("report.json")),
        "{kept_files:?}"
    );
    // The first record is untouched by the second run.
    assert_eq!(records[0]["success"], true);
}

#[test]
fn a_plain_wasi_command_is_a_valid_step() {
    let ws = Workspace::new();
    ws.write("in/greeting.txt", "hello");
    ws.step(
        PLAIN,
        &["--flag"],
        &(mount("/in", "in", "read") + &mount("/out", "out", "write")),
    );
    let out = ws.run(&[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .contains(r#"[plain] plain step, argv = ["plain", "--flag"]"#),
        "{}",
        out.stdout
    );
    assert_eq!(
        std::fs::read_to_string(ws.path("out/greeting.txt")).unwrap(),
        "HELLO"
    );
}

#[test]
fn secret_uses_and_names_not_granted_are_refused_and_recorded() {
    let ws = Workspace::new();
    ws.step(
        PROBE,
        &[
            "secret-hmac",
            "deploy-token",
            "data",
            "--",
            "secret-hmac",
            "other",
            "data",
            "--",
            "secret-name",
            "deploy-token",
        ],
        "[[secret]]\nname = \"deploy-token\"\nuses = [\"sign\"]\n",
    );
    ws.write("cordon.toml", ENV_PROVIDER);
    let out = ws.run(&[
        ("CORDON_SECRET_DEPLOY_TOKEN", KEY),
        ("CORDON_SECRET_OTHER", "other-value"),
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let hmacs = out.probe_lines("secret-hmac");
    assert_eq!(
        hmacs[0],
        "secret-hmac: err this use of the secret is not granted"
    );
    assert_eq!(
        hmacs[1],
        "secret-hmac: err secret not granted by the step's manifest"
    );
    assert_eq!(
        out.probe_lines("secret-name")[0],
        "secret-name: ok deploy-token"
    );
    let rec = ws.record();
    assert_eq!(rec["secrets"]["deploy-token"]["denied"]["hmac"], 1);
    assert_eq!(rec["secrets_not_granted"]["other"], 1);
    assert!(rec["secrets"].get("other").is_none());
}

#[test]
fn a_secret_value_in_logs_is_redacted_and_in_outputs_fails_the_step() {
    let ws = Workspace::new();
    // The value reaches the step through an input file (say, a leaked
    // config), not through the handle, which never reveals it.
    ws.write("in/config.txt", KEY);
    ws.step(
        PROBE,
        &[
            "read",
            "/in/config.txt",
            "--",
            "eprint",
            KEY,
            "--",
            "annotate",
            "note",
            KEY,
            "--",
            "write",
            "/out/copy.txt",
            KEY,
        ],
        &(mount("/in", "in", "read")
            + &mount("/out", "out", "write")
            + "[[secret]]\nname = \"api-key\"\nuses = [\"hmac\"]\n"),
    );
    ws.write("cordon.toml", ENV_PROVIDER);
    let out = ws.run(&[("CORDON_SECRET_API_KEY", KEY)]);
    assert!(
        !out.stdout.contains(KEY) && !out.stderr.contains(KEY),
        "{out:?}"
    );
    assert!(out.stdout.contains("[REDACTED:api-key]"), "{}", out.stdout);
    assert_eq!(out.code, 1, "a secret in an output fails the step: {out:?}");
    assert!(
        out.stderr.contains("contains a secret value"),
        "{}",
        out.stderr
    );
    assert!(!ws.path("out").exists());
    let rec = ws.record();
    assert_eq!(rec["stdout"]["redacted"], true);
    assert_eq!(rec["report"]["annotations"]["note"], "[REDACTED:api-key]");
    let records_dir = ws.path(".cordon/records");
    for e in std::fs::read_dir(records_dir).unwrap() {
        let path = e.unwrap().path();
        // `.tmp/`, where appends write, is empty between them.
        if path.is_dir() {
            assert_eq!(std::fs::read_dir(&path).unwrap().count(), 0, "{path:?}");
            continue;
        }
        assert!(!contains(&std::fs::read(&path).unwrap(), KEY.as_bytes()));
    }
    for e in std::fs::read_dir(ws.path(".cordon/runs")).unwrap() {
        for f in std::fs::read_dir(e.unwrap().path()).unwrap() {
            assert!(
                !contains(&std::fs::read(f.unwrap().path()).unwrap(), KEY.as_bytes()),
                "log file leaked"
            );
        }
    }
}

#[test]
fn the_second_run_loads_the_compiled_component_from_the_cache() {
    let ws = Workspace::new();
    ws.step(PLAIN, &[], "");
    // A private compile cache so this test sees the first compile.
    let state = ws.path("state");
    let out1 = ws.cordon(
        &["run", "step.toml", "--state", state.to_str().unwrap()],
        &[(
            "CORDON_COMPILE_CACHE",
            state.join("compiled").to_str().unwrap(),
        )],
    );
    let out2 = ws.cordon(
        &["run", "step.toml", "--state", state.to_str().unwrap()],
        &[(
            "CORDON_COMPILE_CACHE",
            state.join("compiled").to_str().unwrap(),
        )],
    );
    assert_eq!((out1.code, out2.code), (0, 0));
    let mut recs: Vec<serde_json::Value> = std::fs::read_dir(state.join("records"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| is_record_file(p))
        .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
        .collect();
    recs.sort_by_key(|r| r["started_at"].as_str().unwrap().to_string());
    assert_eq!(recs[0]["compiled_from_cache"], false);
    assert_eq!(recs[1]["compiled_from_cache"], true);
}

#[test]
fn pin_writes_the_current_digest_and_run_then_accepts_it() {
    let ws = Workspace::new();
    ws.step(PLAIN, &[], "");
    let toml = std::fs::read_to_string(ws.path("step.toml")).unwrap();
    let real = toml
        .lines()
        .find(|l| l.starts_with("digest"))
        .unwrap()
        .to_string();
    ws.write("step.toml", toml.replace(&real, "digest = \"sha256:0000000000000000000000000000000000000000000000000000000000000000\"  # pinned"));
    assert_eq!(ws.run(&[]).code, 2);
    let pin = ws.cordon(&["pin", "step.toml"], &[]);
    assert_eq!(pin.code, 0, "{pin:?}");
    let pinned = std::fs::read_to_string(ws.path("step.toml")).unwrap();
    assert!(pinned.contains(&real), "{pinned}");
    assert_eq!(ws.run(&[]).code, 0);
}

#[test]
fn help_documents_the_exit_codes() {
    let ws = Workspace::new();
    for args in [&["--help"][..], &["run", "--help"][..]] {
        let out = ws.cordon(args, &[]);
        assert_eq!(out.code, 0);
        for line in [
            "0  success",
            "1  the step failed",
            "2  the invocation, manifest",
            "3  the runner itself failed",
        ] {
            assert!(
                out.stdout.contains(line),
                "{args:?} lacks `{line}`:\n{}",
                out.stdout
            );
        }
    }
    assert_eq!(ws.cordon(&["run"], &[]).code, 2, "a usage error exits 2");
}

#[test]
fn unchanged_inputs_are_served_from_the_hash_index_and_edits_are_still_seen() {
    let ws = Workspace::new();
    let a = ws.write("data/a.txt", "alpha\n");
    ws.write("data/sub/b.txt", "beta\n");
    ws.step(
        CHECKSUM,
        &["--input", "/in", "--output", "/out"],
        &(mount("/in", "data", "read") + &mount("/out", "sums", "write")),
    );
    // The index only remembers files whose timestamps have settled (they
    // advance in coarse ticks); let them.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert_eq!(ws.run(&[]).code, 0);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ws.path(".cordon/hash-index.json")).unwrap())
            .unwrap();
    let files = index["files"].as_object().unwrap();
    let canonical = std::fs::canonicalize(&a).unwrap();
    assert_eq!(
        files[canonical.to_str().unwrap()]["sha256"],
        sha256_hex(b"alpha\n"),
        "{index}"
    );
    let data = std::fs::canonicalize(ws.path("data")).unwrap();
    assert_eq!(
        files
            .keys()
            .filter(|k| std::path::Path::new(k).starts_with(&data))
            .count(),
        2,
        "{index}"
    );
    // The component is remembered too, by its canonical path, so the next
    // run does not read and hash it again.
    let component = std::fs::canonicalize(ws.path("checksum.wasm")).unwrap();
    assert!(files.contains_key(component.to_str().unwrap()), "{index}");

    // Same size, mtime put back: only the inode's change time tells. The
    // index must not serve the old digest (which would also make the
    // action cache hand back the old outputs).
    let mtime = std::fs::metadata(&a).unwrap().modified().unwrap();
    std::fs::write(&a, "ALPHA\n").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&a)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert_eq!(ws.run(&[]).code, 0);
    let sums = std::fs::read_to_string(ws.path("sums/SHA256SUMS")).unwrap();
    assert!(sums.contains(&sha256_hex(b"ALPHA\n")), "{sums}");
    let recs = ws.records();
    assert_eq!(recs.len(), 2);
    assert!(recs.iter().all(|r| r["cache"]["hit"] == false), "{recs:?}");
}
