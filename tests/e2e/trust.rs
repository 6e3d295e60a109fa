//! Where the keys behind records live, and where a verifier's trust comes
//! from: never only from the workspace whose records it judges.

use crate::harness::*;
use cordon_test_artifacts::PROBE;
use std::path::Path;

/// A workspace whose protected `prod` environment signs its records and
/// runs an unapproved probe step (the approval rules are switched off so
/// the test is about keys, not approvals).
fn prod_workspace(extra_records: &str) -> Workspace {
    let ws = Workspace::new();
    ws.write(
        "cordon.toml",
        format!(
            "[env.prod]\nprotected = true\n\n[env.prod.policy]\ndisable = [\"protected-approval\", \"protected-explicit-limits\"]\n{extra_records}"
        ),
    );
    let out = ws.cordon(&["key", "generate", "--env", "prod"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    ws.step(PROBE, &["print", "accuracy 0.50"], "");
    let out = ws.cordon(&["run", "step.toml", "--env", "prod"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    ws
}

/// The only record of the workspace: (run id, path).
fn only_record(ws: &Workspace) -> (String, std::path::PathBuf) {
    let mut records: Vec<_> = std::fs::read_dir(ws.path(".cordon/records"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| is_record_file(p))
        .collect();
    assert_eq!(records.len(), 1);
    let p = records.remove(0);
    (p.file_stem().unwrap().to_str().unwrap().to_string(), p)
}

/// What an attacker who can write the workspace and the state directory
/// does: edits the record, signs the edited statement with a key of their
/// own, and rewrites the chain entry to the new digests.
fn forge(ws: &Workspace, signer: &cordon_record::attest::Signer) {
    let (run, record) = only_record(ws);
    let text = std::fs::read_to_string(&record).unwrap();
    let forged = text.replacen("\"probe\"", "\"probe-forged\"", 1);
    assert_ne!(forged, text, "the record names its step");
    std::fs::write(&record, &forged).unwrap();
    let statement = cordon_record::attest::statement_bytes(forged.as_bytes()).unwrap();
    let envelope = signer
        .envelope(cordon_record::attest::PAYLOAD_TYPE, &statement)
        .unwrap();
    let envelope = serde_json::to_vec(&envelope).unwrap();
    let envelope_path = record.with_extension("dsse.json");
    std::fs::write(&envelope_path, &envelope).unwrap();
    let log = ws.path(".cordon/records/chain.log");
    let line = std::fs::read_to_string(&log).unwrap();
    let mut entry: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
    assert_eq!(entry["run"], run.as_str());
    entry["record"] = format!("sha256:{}", sha256_hex(forged.as_bytes())).into();
    entry["envelope"] = format!("sha256:{}", sha256_hex(&envelope)).into();
    std::fs::write(
        &log,
        format!("{}\n", serde_json::to_string(&entry).unwrap()),
    )
    .unwrap();
}

#[test]
fn a_key_added_to_cordon_toml_cannot_make_a_forged_record_of_a_protected_environment_verify() {
    let ws = prod_workspace("");
    let out = ws.cordon(&["verify"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    // The attacker's own key pair, trusted by an edit of cordon.toml.
    let out = ws.cordon(&["key", "reviewer", "mallory", "--dir", "keys"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    let mallory = cordon_record::attest::Signer::load(&ws.path("keys/mallory.key")).unwrap();
    forge(&ws, &mallory);
    let config = std::fs::read_to_string(ws.path("cordon.toml")).unwrap();
    ws.write(
        "cordon.toml",
        format!("{config}\n[env.prod.records]\ntrusted-keys = [\"keys/mallory.pub\"]\n"),
    );
    let out = ws.cordon(&["verify"], &[]);
    assert_eq!(out.code, 1, "the forgery must not verify: {out:?}");
    assert!(out.stdout.contains("not a trusted key"), "{out:?}");
    assert!(
        out.stderr
            .contains("trusted-keys of cordon.toml are ignored"),
        "the verifier says why the workspace's key does not count: {out:?}"
    );
}

#[test]
fn in_an_unprotected_environment_workspace_keys_count_only_with_a_self_asserted_warning() {
    let ws = Workspace::new();
    let out = ws.cordon(&["key", "reviewer", "k", "--dir", "keys"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    ws.write(
        "cordon.toml",
        "[env.dev.records]\nsigning-key = \"keys/k.key\"\ntrusted-keys = [\"keys/k.pub\"]\n",
    );
    ws.step(PROBE, &["print", "hi"], "");
    let out = ws.run(&[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("key files are deprecated")
            && out.stderr.contains("inside the workspace"),
        "a key file in the workspace is called out: {out:?}"
    );
    let out = ws.cordon(&["verify"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains("anyone who can edit the file can change"),
        "{out:?}"
    );
    assert!(
        out.stderr.contains("(cordon.toml, self-asserted)"),
        "{out:?}"
    );
}

#[test]
fn no_secret_or_key_of_the_workspace_is_written_by_key_generate() {
    let ws = Workspace::new();
    ws.write("cordon.toml", "# shared settings\n");
    let out = ws.cordon(&["key", "generate", "--env", "dev"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        std::fs::read_to_string(ws.path("cordon.toml")).unwrap(),
        "# shared settings\n",
        "cordon.toml is not edited"
    );
    let entries: Vec<_> = std::fs::read_dir(ws.root())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, vec![std::ffi::OsString::from("cordon.toml")]);
    assert!(ws.trusted_key("dev").starts_with(ws.secrets_home()));
}

#[test]
fn verify_from_another_directory_finds_the_configuration_beside_the_state_directory() {
    let ws = prod_workspace("");
    let elsewhere = tempfile::tempdir().unwrap();
    let state = ws.path(".cordon");
    let out = run_in(
        &ws,
        elsewhere.path(),
        &["verify", "--state", state.to_str().unwrap()],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("trusting for `prod`"), "{out:?}");
}

#[test]
fn without_a_trusted_key_verify_says_where_it_looked_and_what_to_pass() {
    let ws = prod_workspace("");
    // The verifier is another user: nothing in their trust directory.
    let other_home = tempfile::tempdir().unwrap();
    let out = ws.cordon(
        &["verify"],
        &[("CORDON_SECRETS_HOME", other_home.path().to_str().unwrap())],
    );
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout
            .contains("no key is trusted for environment `prod`")
            && out.stdout.contains("--trusted-key FILE"),
        "{out:?}"
    );
    // Given the environment's public key out of band, it verifies.
    let key = ws.trusted_key("prod");
    let out = ws.cordon(
        &["verify", "--trusted-key", key.to_str().unwrap()],
        &[("CORDON_SECRETS_HOME", other_home.path().to_str().unwrap())],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("(--trusted-key)"), "{out:?}");
    let out = ws.cordon(
        &["verify"],
        &[
            ("CORDON_SECRETS_HOME", other_home.path().to_str().unwrap()),
            ("CORDON_TRUSTED_KEYS", key.to_str().unwrap()),
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("(CORDON_TRUSTED_KEYS)"), "{out:?}");
}

#[test]
fn verify_since_the_first_signed_run_skips_the_earlier_unsigned_records_and_says_how_many() {
    let ws = Workspace::new();
    ws.step(PROBE, &["print", "before signing"], "");
    for _ in 0..2 {
        let out = ws.cordon(&["run", "step.toml", "--no-cache"], &[]);
        assert_eq!(out.code, 0, "{out:?}");
    }
    let out = ws.cordon(&["key", "generate", "--env", "dev"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = ws.cordon(&["run", "step.toml", "--no-cache"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    let all = ws.cordon(&["verify"], &[]);
    assert_eq!(all.code, 1, "the unsigned records fail: {all:?}");
    let log = std::fs::read_to_string(ws.path(".cordon/records/chain.log")).unwrap();
    let third: serde_json::Value = serde_json::from_str(log.lines().nth(2).unwrap()).unwrap();
    let run = third["run"].as_str().unwrap();
    let out = ws.cordon(&["verify", "--since", run], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("skipped 2 earlier records"), "{out:?}");
    assert!(out.stderr.contains("verified 1 record"), "{out:?}");
    // The chain before the run is still checked: an edited early entry fails.
    let edited = log.replacen("\"seq\":1", "\"seq\":7", 1);
    assert_ne!(edited, log);
    std::fs::write(ws.path(".cordon/records/chain.log"), edited).unwrap();
    let out = ws.cordon(&["verify", "--since", run], &[]);
    assert_eq!(out.code, 1, "{out:?}");
    let out = ws.cordon(&["verify", "--since", "no-such-run"], &[]);
    assert_eq!(out.code, 2, "{out:?}");
}

#[test]
fn an_empty_cordon_toml_means_the_built_in_dev_environment() {
    let ws = Workspace::new();
    ws.write("cordon.toml", "");
    ws.step(PROBE, &["print", "hi"], "");
    let out = ws.run(&[]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = ws.cordon(&["run", "step.toml", "--env", "prod"], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("no environment `prod`"), "{out:?}");
}

#[test]
fn without_a_cordon_toml_errors_name_no_file_that_does_not_exist() {
    let ws = Workspace::new();
    ws.step(PROBE, &["print", "hi"], "");
    let out = ws.cordon(&["run", "step.toml", "--env", "prod"], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        !out.stderr.contains("cordon.toml:") && out.stderr.contains("there is no cordon.toml"),
        "{out:?}"
    );
    assert!(!ws.path("cordon.toml").exists());
}

/// `cordon ARGS` run from `dir` instead of the workspace.
fn run_in(ws: &Workspace, dir: &Path, args: &[&str]) -> Output {
    let out = ws.command(args, &[]).current_dir(dir).output().unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        raw_stdout: out.stdout,
        raw_stderr: out.stderr,
    }
}

#[test]
fn a_signed_chain_head_kept_elsewhere_detects_that_the_newest_records_were_removed() {
    let ws = prod_workspace("");
    for _ in 0..2 {
        let out = ws.cordon(&["run", "step.toml", "--env", "prod", "--no-cache"], &[]);
        assert_eq!(out.code, 0, "{out:?}");
    }
    let out = ws.cordon(&["records", "head", "--env", "prod"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    let kept = tempfile::tempdir().unwrap();
    let head = kept.path().join("head.json");
    std::fs::write(&head, &out.stdout).unwrap();
    let head = head.to_str().unwrap();
    let out = ws.cordon(&["verify", "--head", head], &[]);
    assert_eq!(out.code, 0, "{out:?}");

    // Whoever can write the state directory removes the newest record:
    // its files and its chain line. The chain alone still verifies.
    let log_path = ws.path(".cordon/records/chain.log");
    let log = std::fs::read_to_string(&log_path).unwrap();
    let mut lines: Vec<&str> = log.lines().collect();
    let last: serde_json::Value = serde_json::from_str(lines.pop().unwrap()).unwrap();
    let run = last["run"].as_str().unwrap();
    std::fs::remove_file(ws.path(&format!(".cordon/records/{run}.json"))).unwrap();
    std::fs::remove_file(ws.path(&format!(".cordon/records/{run}.dsse.json"))).unwrap();
    std::fs::write(&log_path, format!("{}\n", lines.join("\n"))).unwrap();
    let out = ws.cordon(&["verify"], &[]);
    assert_eq!(out.code, 0, "a truncated chain is a valid chain: {out:?}");
    let out = ws.cordon(&["verify", "--head", head], &[]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout.contains("newest records were removed"),
        "{out:?}"
    );

    // A head nobody trusted signed is refused outright.
    let other_home = tempfile::tempdir().unwrap();
    let out = ws.cordon(
        &["verify", "--head", head],
        &[("CORDON_SECRETS_HOME", other_home.path().to_str().unwrap())],
    );
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("not a valid signed chain head"),
        "{out:?}"
    );
}
