//! `cordon export in-toto` checked by the real `in-toto-verify`: what a
//! verifier who trusts only the layout owner's key can check about one
//! step run and about a whole pipeline run, and which tampering each check
//! catches.

use crate::harness::*;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use cordon_test_artifacts::CHECKSUM;
use ed25519_dalek::Signer as _;
use ed25519_dalek::pkcs8::DecodePublicKey;
use serde_json::Value;
use std::path::{Path, PathBuf};

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

/// The example pipeline set up in a workspace whose layout owner has a key
/// pair in `keys/`.
fn example_with_owner() -> Workspace {
    let ws = Workspace::new();
    crate::pipelines::example_pipeline(&ws);
    let out = ws.cordon(&["key", "reviewer", "owner", "--dir", "keys"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    ws
}

/// Runs the example pipeline in `dev`; returns the pipeline run's id.
fn run_example(ws: &Workspace) -> String {
    let out = ws.cordon(
        &[
            "run",
            "pipeline.toml",
            "--env",
            "dev",
            "--report",
            "json=r.json",
        ],
        &[],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let report: Value = serde_json::from_slice(&std::fs::read(ws.path("r.json")).unwrap()).unwrap();
    Path::new(report["pipeline_record"].as_str().unwrap())
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string()
}

/// `cordon export in-toto --pipeline-run ID` into `dir`.
fn export_pipeline(ws: &Workspace, id: &str, dir: &str) -> Output {
    ws.cordon(
        &[
            "export",
            "in-toto",
            "--pipeline-run",
            id,
            "--layout-key",
            "keys/owner.key",
            dir,
        ],
        &[],
    )
}

/// The example pipeline, run and exported into `meta/`.
fn exported_example() -> Workspace {
    let ws = example_with_owner();
    let id = run_example(&ws);
    let out = export_pipeline(&ws, &id, "meta");
    assert_eq!(out.code, 0, "{out:?}");
    ws
}

/// The payload of a DSSE envelope file.
fn payload_of(envelope: &Path) -> Value {
    let env: Value = serde_json::from_slice(&std::fs::read(envelope).unwrap()).unwrap();
    serde_json::from_slice(&B64.decode(env["payload"].as_str().unwrap()).unwrap()).unwrap()
}

/// The link file of `step` in `dir`.
fn link_of(ws: &Workspace, dir: &str, step: &str) -> PathBuf {
    let links: Vec<PathBuf> = std::fs::read_dir(ws.path(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            name.starts_with(&format!("{step}.")) && name.ends_with(".link")
        })
        .collect();
    assert_eq!(links.len(), 1, "one link of {step}: {links:?}");
    links.into_iter().next().unwrap()
}

const STEPS: [&str; 5] = ["validate", "pseudonymize", "train", "evaluate", "sign"];

/// Runs `in-toto-verify` on `meta/` and expects it to fail (exit 1) with
/// `expected` in its message.
fn assert_in_toto_refuses(ws: &Workspace, expected: &str) {
    let Some(out) = in_toto_verify(ws, &VERIFY_META) else {
        return;
    };
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr_of(&out).contains(expected),
        "in-toto-verify names {expected:?}: {}",
        stderr_of(&out)
    );
}

#[test]
fn an_exported_pipeline_run_passes_in_toto_verify_and_so_does_its_rerun_from_the_cache() {
    let ws = example_with_owner();
    let first = run_example(&ws);
    let out = export_pipeline(&ws, &first, "meta");
    assert_eq!(out.code, 0, "{out:?}");

    // One link per step, signed for by the environment's trusted key.
    let layout = payload_of(&ws.path("meta/root.layout"));
    let pem = std::fs::read_to_string(ws.trusted_key("dev")).unwrap();
    let dev = ed25519_dalek::VerifyingKey::from_public_key_pem(&pem).unwrap();
    let keys = layout["keys"].as_object().unwrap();
    assert_eq!(keys.len(), 1, "{layout}");
    let (keyid, key) = keys.iter().next().unwrap();
    assert_eq!(key["keyval"]["public"], hex::encode(dev.as_bytes()));
    let names: Vec<&str> = layout["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, STEPS);
    for step in STEPS {
        assert!(
            ws.path(&format!("meta/{step}.{}.link", &keyid[..8]))
                .is_file(),
            "{step}"
        );
    }
    // The lineage is in the layout: train's rows are pseudonymize's.
    let train = &layout["steps"][2];
    assert_eq!(
        train["expected_materials"],
        serde_json::json!([
            [
                "MATCH",
                "data/dev/pseudonymized/*",
                "WITH",
                "PRODUCTS",
                "FROM",
                "pseudonymize"
            ],
            ["DISALLOW", "data/dev/pseudonymized/*"],
            ["DISALLOW", "*"]
        ])
    );
    assert_eq!(
        layout["steps"][0]["expected_materials"][0],
        serde_json::json!(["ALLOW", "data/dev/raw/*"])
    );

    let Some(ok) = in_toto_verify(&ws, &VERIFY_META) else {
        return;
    };
    assert!(ok.status.success(), "{ok:?}");

    // Run again: every step is served from the cache, and the export of
    // that run verifies too, its links naming the inputs each step saw.
    let second = run_example(&ws);
    let report: Value = serde_json::from_slice(&std::fs::read(ws.path("r.json")).unwrap()).unwrap();
    assert!(
        report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["cache_hit"] == true),
        "{report}"
    );
    let out = export_pipeline(&ws, &second, "meta2");
    assert_eq!(out.code, 0, "{out:?}");
    let train = payload_of(&link_of(&ws, "meta2", "train"));
    assert!(
        train["materials"]["data/dev/pseudonymized/customers.csv"]["sha256"].is_string(),
        "{train}"
    );
    assert!(
        train["environment"]["cordon-cache-hit-of"].is_string(),
        "{train}"
    );
    let cached = in_toto_verify(
        &ws,
        &[
            "--layout",
            "meta2/root.layout",
            "--verification-keys",
            "keys/owner.pub",
            "--link-dir",
            "meta2",
        ],
    )
    .unwrap();
    assert!(cached.status.success(), "{cached:?}");
}

#[test]
fn an_exported_pipeline_run_fails_in_toto_verify_when_an_intermediate_output_is_swapped() {
    let ws = exported_example();
    // The pseudonymized rows are replaced by the rows before
    // pseudonymization, e-mail addresses and all. The links still say what
    // each step consumed; the inspection re-reads every step's outputs on
    // disk and finds the file is no longer pseudonymize's product.
    std::fs::copy(
        ws.path("data/dev/validated/customers.csv"),
        ws.path("data/dev/pseudonymized/customers.csv"),
    )
    .unwrap();
    assert_in_toto_refuses(
        &ws,
        "'DISALLOW data/dev/pseudonymized/*' matched the following artifacts: ['data/dev/pseudonymized/customers.csv']",
    );
}

#[test]
fn a_pipeline_run_whose_train_step_consumed_rows_pseudonymize_did_not_produce_fails_in_toto_verify()
{
    let ws = example_with_owner();
    let id = run_example(&ws);
    // Train is run again by hand on other rows, and that run is passed off
    // as the pipeline's: the pipeline record (unsigned) is edited to name
    // it. Every step record still verifies, so the export goes ahead; the
    // layout's rule for train's materials does not.
    let pseudo = ws.path("data/dev/pseudonymized/customers.csv");
    let rows = std::fs::read(&pseudo).unwrap();
    std::fs::copy(ws.path("data/dev/validated/customers.csv"), &pseudo).unwrap();
    let out = ws.cordon(
        &[
            "run",
            "steps/train.toml",
            "--env",
            "dev",
            "--state",
            ".cordon",
        ],
        &[],
    );
    assert_eq!(out.code, 0, "{out:?}");
    std::fs::write(&pseudo, rows).unwrap();
    let trains: Vec<Value> = ws
        .records()
        .into_iter()
        .filter(|r| r["step"] == "train")
        .collect();
    assert_eq!(
        trains.len(),
        2,
        "the pipeline's train run and the one by hand"
    );
    let train_run = trains[1]["run_id"].clone();
    let record_path = ws.path(&format!(".cordon/pipelines/{id}.json"));
    let mut record: Value = serde_json::from_slice(&std::fs::read(&record_path).unwrap()).unwrap();
    record["steps"][2]["run_id"] = train_run;
    std::fs::write(&record_path, serde_json::to_vec_pretty(&record).unwrap()).unwrap();
    let out = export_pipeline(&ws, &id, "meta");
    assert_eq!(out.code, 0, "{out:?}");
    assert_in_toto_refuses(
        &ws,
        "'DISALLOW data/dev/pseudonymized/*' matched the following artifacts: ['data/dev/pseudonymized/customers.csv']\nFull trace for 'expected_materials' of item 'train'",
    );
}

#[test]
fn an_exported_pipeline_run_fails_in_toto_verify_when_a_final_output_is_deleted() {
    let ws = exported_example();
    std::fs::remove_file(ws.path("data/dev/signature/signatures.json")).unwrap();
    assert_in_toto_refuses(
        &ws,
        "'REQUIRE data/dev/signature/signatures.json' did not find",
    );
}

#[test]
fn an_exported_pipeline_run_fails_in_toto_verify_when_a_link_file_is_removed() {
    let ws = exported_example();
    std::fs::remove_file(link_of(&ws, "meta", "pseudonymize")).unwrap();
    assert_in_toto_refuses(
        &ws,
        "Step 'pseudonymize' requires '1' link metadata file(s), found '0'",
    );
}

#[test]
fn an_exported_pipeline_run_fails_in_toto_verify_when_a_link_is_signed_by_an_untrusted_key() {
    let ws = exported_example();
    // The same link, signed by a key the layout does not name.
    let path = link_of(&ws, "meta", "train");
    let mut envelope: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let payload = B64.decode(envelope["payload"].as_str().unwrap()).unwrap();
    let payload_type = envelope["payloadType"].as_str().unwrap().to_string();
    let mut pae = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    pae.extend_from_slice(&payload);
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let keyid = sha256_hex(
        format!(
            r#"{{"keytype":"ed25519","keyval":{{"public":"{}"}},"scheme":"ed25519"}}"#,
            hex::encode(stranger.verifying_key().as_bytes())
        )
        .as_bytes(),
    );
    envelope["signatures"] = serde_json::json!([{
        "keyid": keyid,
        "sig": B64.encode(stranger.sign(&pae).to_bytes()),
    }]);
    std::fs::write(&path, serde_json::to_vec_pretty(&envelope).unwrap()).unwrap();
    assert_in_toto_refuses(
        &ws,
        "Step 'train' requires at least '1' links validly signed by different authorized functionaries. Only found '0'",
    );
}

#[test]
fn a_pipeline_run_whose_records_do_not_verify_is_not_exported() {
    let ws = example_with_owner();
    let id = run_example(&ws);
    std::fs::write(ws.path("data/dev/model/model.json"), "{}").unwrap();
    let out = export_pipeline(&ws, &id, "meta");
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("do not verify"), "{}", out.stderr);
    assert!(!ws.path("meta/root.layout").exists());
    // --run and --pipeline-run name different things; both at once is an
    // error.
    let both = ws.cordon(
        &[
            "export",
            "in-toto",
            "--run",
            "x",
            "--pipeline-run",
            &id,
            "--layout-key",
            "keys/owner.key",
            "meta",
        ],
        &[],
    );
    assert_eq!(both.code, 2, "{both:?}");
    assert!(
        both.stderr.contains("cannot be used with"),
        "{}",
        both.stderr
    );
}
