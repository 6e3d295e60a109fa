//! Signed, hash-chained records: what an auditor who trusts neither the CI
//! machine nor us can check, and what tampering each check catches.

use crate::harness::*;
use crate::intoto::in_toto_verify;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use cordon_engine::keys::TrustRoots;
use cordon_manifest::config::WorkspaceConfig;
use cordon_record::verify::{Scope, verify};
use cordon_test_artifacts::{CHECKSUM, PROBE};
use ed25519_dalek::pkcs8::DecodePublicKey;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// A workspace whose `dev` environment signs its records.
fn signed_workspace() -> Workspace {
    let ws = Workspace::new();
    let out = ws.cordon(&["key", "generate", "--env", "dev"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    ws
}

fn records_dir(ws: &Workspace) -> PathBuf {
    ws.path(".cordon/records")
}

/// Record file paths in chain order.
fn record_paths(ws: &Workspace) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(records_dir(ws))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| is_record_file(p))
        .collect();
    v.sort();
    v
}

fn envelope_of(record: &Path) -> PathBuf {
    record.with_extension("dsse.json")
}

/// Verifies in-process (the same library `cordon verify` calls) and
/// returns the findings as text.
fn findings(ws: &Workspace) -> Vec<String> {
    let config = WorkspaceConfig::discover(None, ws.root()).unwrap();
    let roots = TrustRoots {
        command_line: vec![ws.trusted_key("dev")],
        environment: Vec::new(),
    };
    verify(&ws.path(".cordon"), &config, &roots, &Scope::All)
        .unwrap()
        .findings
        .iter()
        .map(|f| f.to_string())
        .collect()
}

/// Fails when any file under `dir` holds a PEM private key.
fn assert_no_private_key_in(dir: &Path) {
    for e in walk_files(dir) {
        let text = std::fs::read(&e).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&text).contains("PRIVATE KEY"),
            "a private key file lies at {}",
            e.display()
        );
    }
}

/// A probe step that prints, so each run leaves a small record.
fn printing_step(ws: &Workspace) {
    ws.step(PROBE, &["print", "hello"], "");
}

fn run_ok(ws: &Workspace) {
    let out = ws.run(&[]);
    assert_eq!(out.code, 0, "{out:?}");
}

fn checksum_step(ws: &Workspace) {
    ws.write("data/a.txt", "alpha\n");
    ws.write("data/sub/b.txt", "beta\n");
    ws.step(
        CHECKSUM,
        &["--input", "/in", "--output", "/out"],
        &(mount("/in", "data", "read") + &mount("/out", "sums", "write")),
    );
}

fn statement_of(envelope: &Path) -> (Value, Value) {
    let env: Value = serde_json::from_slice(&std::fs::read(envelope).unwrap()).unwrap();
    let payload = B64.decode(env["payload"].as_str().unwrap()).unwrap();
    (env, serde_json::from_slice(&payload).unwrap())
}

#[test]
fn statement_has_the_in_toto_slsa_structure() {
    let ws = signed_workspace();
    checksum_step(&ws);
    run_ok(&ws);
    let rec_path = &record_paths(&ws)[0];
    let rec_bytes = std::fs::read(rec_path).unwrap();
    let rec: Value = serde_json::from_slice(&rec_bytes).unwrap();
    let (env, st) = statement_of(&envelope_of(rec_path));

    assert_eq!(env["payloadType"], "application/vnd.in-toto+json");
    assert_eq!(st["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(st["predicateType"], "https://slsa.dev/provenance/v1");
    let sums = std::fs::read(ws.path("sums/SHA256SUMS")).unwrap();
    assert_eq!(
        st["subject"],
        serde_json::json!([{"name": "/out/SHA256SUMS", "digest": {"sha256": sha256_hex(&sums)}}])
    );

    let bd = &st["predicate"]["buildDefinition"];
    assert_eq!(bd["buildType"], "https://example.invalid/cordon/step/v1");
    assert_eq!(bd["externalParameters"]["environment"], "dev");
    assert_eq!(bd["externalParameters"]["args"], rec["args"]);
    assert_eq!(bd["externalParameters"]["mounts"][0]["access"], "read");
    assert_eq!(bd["internalParameters"]["limits"], rec["limits"]);
    assert_eq!(
        bd["internalParameters"]["reproducibility"]["reproducible"],
        true
    );
    let deps = bd["resolvedDependencies"].as_array().unwrap();
    let dep = |name: &str| {
        deps.iter()
            .find(|d| d["name"] == name)
            .unwrap_or_else(|| panic!("no dependency {name}: {deps:?}"))
    };
    assert_eq!(
        dep("component")["digest"]["sha256"],
        sha256_hex(&std::fs::read(CHECKSUM).unwrap())
    );
    assert_eq!(dep("/in/a.txt")["digest"]["sha256"], sha256_hex(b"alpha\n"));
    assert_eq!(
        dep("/in/sub/b.txt")["digest"]["sha256"],
        sha256_hex(b"beta\n")
    );

    let rd = &st["predicate"]["runDetails"];
    assert_eq!(
        rd["builder"]["id"],
        "https://example.invalid/cordon/runner/dev"
    );
    assert_eq!(rd["metadata"]["invocationId"], rec["run_id"]);
    assert_eq!(rd["metadata"]["startedOn"], rec["started_at"]);
    assert_eq!(rd["metadata"]["finishedOn"], rec["finished_at"]);
    let by = rd["byproducts"].as_array().unwrap();
    let product = |name: &str| by.iter().find(|b| b["name"] == name).unwrap();
    assert_eq!(
        format!(
            "sha256:{}",
            product("stdout")["digest"]["sha256"].as_str().unwrap()
        ),
        rec["stdout"]["sha256"].as_str().unwrap()
    );
    assert_eq!(
        product("record")["digest"]["sha256"],
        sha256_hex(&rec_bytes)
    );
    let detail = &product("cordon")["annotations"];
    assert_eq!(detail["termination"], rec["termination"]);
    assert_eq!(detail["usage"]["fuel"], rec["usage"]["fuel"]);
    assert_eq!(detail["chain"]["sequence"], 1);
}

/// The DSSE pre-authentication encoding, written out here from the spec
/// rather than taken from the runner.
fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut v = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    v.extend_from_slice(payload);
    v
}

#[test]
fn dsse_signature_verifies_with_an_independent_implementation() {
    let ws = signed_workspace();
    printing_step(&ws);
    run_ok(&ws);
    let envelope = envelope_of(&record_paths(&ws)[0]);
    let (env, _) = statement_of(&envelope);
    let payload = B64.decode(env["payload"].as_str().unwrap()).unwrap();
    let sig_bytes = B64
        .decode(env["signatures"][0]["sig"].as_str().unwrap())
        .unwrap();
    let pem = std::fs::read_to_string(ws.trusted_key("dev")).unwrap();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
    let key = ed25519_dalek::VerifyingKey::from_public_key_pem(&pem).unwrap();
    let sig = ed25519_dalek::Signature::from_slice(&sig_bytes).unwrap();
    let message = pae("application/vnd.in-toto+json", &payload);
    key.verify_strict(&message, &sig)
        .expect("the signature verifies over the PAE");
    let mut tampered = message.clone();
    *tampered.last_mut().unwrap() ^= 1;
    assert!(key.verify_strict(&tampered, &sig).is_err());

    // The keyid is in-toto's: sha256 of the canonical JSON of the key.
    let keyid = sha256_hex(
        format!(
            r#"{{"keytype":"ed25519","keyval":{{"public":"{}"}},"scheme":"ed25519"}}"#,
            hex::encode(key.as_bytes())
        )
        .as_bytes(),
    );
    assert_eq!(env["signatures"][0]["keyid"], keyid.as_str());

    // Keys are never replaced.
    let again = ws.cordon(&["key", "generate", "--env", "dev"], &[]);
    assert_eq!(again.code, 2, "{again:?}");
    assert!(
        again.stderr.contains("already has a record-signing key"),
        "{again:?}"
    );
    assert_eq!(std::fs::read_to_string(ws.trusted_key("dev")).unwrap(), pem);
    let again = ws.cordon(&["key", "generate", "--env", "dev", "--if-missing"], &[]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stderr.contains("already signs"), "{again:?}");

    // The private key is nowhere in the workspace: it lives in the
    // environment's encrypted store, which is private.
    assert_no_private_key_in(ws.root());
    assert_no_private_key_in(ws.secrets_home());
    use std::os::unix::fs::PermissionsExt;
    let store = ws.secrets_home().join("stores/dev.store");
    let mode = std::fs::metadata(&store).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "the store is private: {mode:o}");

    // A second implementation, when the machine has one: Python's
    // `cryptography` loading the PEM itself.
    let has_python = std::process::Command::new("python3")
        .args(["-c", "import cryptography"])
        .status()
        .is_ok_and(|s| s.success());
    if has_python {
        let script = r#"
import base64, json, sys
from cryptography.hazmat.primitives.serialization import load_pem_public_key
env = json.load(open(sys.argv[1]))
key = load_pem_public_key(open(sys.argv[2], "rb").read())
payload = base64.b64decode(env["payload"])
t = env["payloadType"].encode()
pae = b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)
key.verify(base64.b64decode(env["signatures"][0]["sig"]), pae)
print("verified")
"#;
        let out = std::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(&envelope)
            .arg(ws.trusted_key("dev"))
            .output()
            .unwrap();
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("verified"),
            "{out:?}"
        );
    }
}

#[test]
fn every_single_byte_flip_of_a_record_or_log_entry_is_detected() {
    let ws = signed_workspace();
    printing_step(&ws);
    run_ok(&ws);
    run_ok(&ws);
    assert_eq!(findings(&ws), Vec::<String>::new());
    let first = record_paths(&ws)[0].clone();
    for file in [first.clone(), records_dir(&ws).join("chain.log")] {
        let original = std::fs::read(&file).unwrap();
        for i in 0..original.len() {
            let mut bytes = original.clone();
            bytes[i] ^= 0x01;
            std::fs::write(&file, &bytes).unwrap();
            assert!(
                !findings(&ws).is_empty(),
                "flipping byte {i} of {} went unnoticed",
                file.display()
            );
        }
        std::fs::write(&file, &original).unwrap();
    }
    // The envelope: a flip in the signature, the payload and the keyid.
    let envelope = envelope_of(&first);
    let original = std::fs::read_to_string(&envelope).unwrap();
    let v: Value = serde_json::from_str(&original).unwrap();
    for field in [
        v["signatures"][0]["sig"].as_str().unwrap(),
        v["payload"].as_str().unwrap(),
        v["signatures"][0]["keyid"].as_str().unwrap(),
    ] {
        let at = original.find(field).unwrap() + field.len() / 2;
        let mut bytes = original.clone().into_bytes();
        bytes[at] ^= 0x01;
        std::fs::write(&envelope, &bytes).unwrap();
        assert!(!findings(&ws).is_empty(), "a flip at {at} went unnoticed");
    }
    std::fs::write(&envelope, &original).unwrap();
    assert_eq!(findings(&ws), Vec::<String>::new());
}

#[test]
fn deleting_reordering_and_duplicating_records_is_detected() {
    let ws = signed_workspace();
    printing_step(&ws);
    for _ in 0..3 {
        run_ok(&ws);
    }
    assert_eq!(findings(&ws), Vec::<String>::new());
    let log = records_dir(&ws).join("chain.log");
    let log_text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = log_text.lines().collect();
    assert_eq!(lines.len(), 3);
    let paths = record_paths(&ws);
    let with_log = |lines: &[&str], check: &dyn Fn(Vec<String>)| {
        std::fs::write(&log, lines.join("\n") + "\n").unwrap();
        check(findings(&ws));
        std::fs::write(&log, &log_text).unwrap();
    };

    // A record deleted.
    let middle = std::fs::read(&paths[1]).unwrap();
    std::fs::remove_file(&paths[1]).unwrap();
    let f = findings(&ws);
    assert!(
        f.iter()
            .any(|x| x.contains("record file") && x.contains("missing")),
        "{f:?}"
    );
    // ... together with its log entry.
    with_log(&[lines[0], lines[2]], &|f| {
        assert!(f.iter().any(|x| x.contains("chain.log line 2")), "{f:?}")
    });
    std::fs::write(&paths[1], &middle).unwrap();

    // Log entries reordered.
    with_log(&[lines[0], lines[2], lines[1]], &|f| {
        assert!(f.iter().any(|x| x.contains("sequence number")), "{f:?}")
    });
    // A log entry duplicated.
    with_log(&[lines[0], lines[1], lines[1], lines[2]], &|f| {
        assert!(f.iter().any(|x| x.contains("duplicated")), "{f:?}")
    });
    // A record file duplicated under another run id.
    let copy = records_dir(&ws).join("20000101T000000.000000Z-probe-00000000.json");
    std::fs::copy(&paths[2], &copy).unwrap();
    let f = findings(&ws);
    assert!(f.iter().any(|x| x.contains("is not in the chain")), "{f:?}");
    std::fs::remove_file(&copy).unwrap();
    // An envelope copied under another run id.
    let copy = records_dir(&ws).join("20000101T000000.000000Z-probe-00000000.dsse.json");
    std::fs::copy(envelope_of(&paths[2]), &copy).unwrap();
    let f = findings(&ws);
    assert!(f.iter().any(|x| x.contains("not in the chain")), "{f:?}");
    std::fs::remove_file(&copy).unwrap();
    // Two records swapped on disk (each keeps a valid signature).
    let (a, b) = (std::fs::read(&paths[0]).unwrap(), middle.clone());
    std::fs::write(&paths[0], &b).unwrap();
    std::fs::write(&paths[1], &a).unwrap();
    let f = findings(&ws);
    assert!(f.iter().any(|x| x.contains("was modified")), "{f:?}");
    std::fs::write(&paths[0], &a).unwrap();
    std::fs::write(&paths[1], &b).unwrap();

    assert_eq!(findings(&ws), Vec::<String>::new());
}

#[test]
fn a_modified_output_file_is_detected_and_named() {
    let ws = signed_workspace();
    checksum_step(&ws);
    run_ok(&ws);
    let ok = ws.cordon(&["verify"], &[]);
    assert_eq!(ok.code, 0, "{ok:?}");
    std::fs::write(ws.path("sums/SHA256SUMS"), "forged\n").unwrap();
    let out = ws.cordon(&["verify"], &[]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout.contains("output /out") && out.stdout.contains("SHA256SUMS changed"),
        "{out:?}"
    );
    let run_id = record_paths(&ws)[0]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(out.stdout.contains(&format!("record {run_id}")), "{out:?}");
    // The same, for one record by file and by run id.
    let rec = record_paths(&ws)[0].display().to_string();
    assert_eq!(ws.cordon(&["verify", &rec], &[]).code, 1);
    assert_eq!(ws.cordon(&["verify", "--run", &run_id], &[]).code, 1);
    assert_eq!(
        ws.cordon(&["verify", "--run", "no-such-run"], &[]).code,
        2,
        "an unknown run is a bad invocation"
    );
}

#[test]
fn outputs_replaced_by_a_later_run_are_checked_against_the_later_record() {
    let ws = signed_workspace();
    checksum_step(&ws);
    run_ok(&ws);
    ws.write("data/c.txt", "gamma\n");
    run_ok(&ws);
    let out = ws.cordon(&["verify"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
}

#[test]
fn a_record_signed_by_an_untrusted_key_is_rejected() {
    let ws = signed_workspace();
    printing_step(&ws);
    run_ok(&ws);
    assert_eq!(ws.cordon(&["verify"], &[]).code, 0);
    // Another key is made and trusted instead of the one that signed.
    ws.write("cordon.toml", "[env.dev]\n[env.other]\n");
    assert_eq!(
        ws.cordon(&["key", "generate", "--env", "other"], &[]).code,
        0
    );
    let dev_trust = ws.trusted_key("dev");
    std::fs::remove_file(&dev_trust).unwrap();
    std::fs::copy(ws.trusted_key("other"), &dev_trust).unwrap();
    let out = ws.cordon(&["verify"], &[]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("not a trusted key"), "{out:?}");
}

#[test]
fn unsigned_records_are_reported_and_protected_environments_refuse_to_run_unsigned() {
    let ws = Workspace::new();
    printing_step(&ws);
    let out = ws.run(&[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("has no signing key"), "{out:?}");
    let v = ws.cordon(&["verify"], &[]);
    assert_eq!(v.code, 1, "{v:?}");
    assert!(v.stdout.contains("is not signed"), "{v:?}");

    ws.write("cordon.toml", "[env.prod]\nprotected = true\n");
    let out = ws.cordon(&["run", "step.toml", "--env", "prod"], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("protected") && out.stderr.contains("cordon key generate --env prod"),
        "{out:?}"
    );
}

#[test]
fn two_runners_appending_concurrently_keep_the_chain_valid() {
    let ws = signed_workspace();
    printing_step(&ws);
    let runs_each = 4;
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..runs_each {
                    run_ok(&ws);
                }
            });
        }
    });
    let log = std::fs::read_to_string(records_dir(&ws).join("chain.log")).unwrap();
    assert_eq!(log.lines().count(), 2 * runs_each);
    assert_eq!(record_paths(&ws).len(), 2 * runs_each);
    assert_eq!(findings(&ws), Vec::<String>::new());
}

#[test]
fn a_runner_killed_during_a_write_leaves_a_verifiable_log() {
    let ws = signed_workspace();
    printing_step(&ws);
    run_ok(&ws);
    let dir = records_dir(&ws);
    // What a runner killed mid-append leaves: the first half of its log
    // line, without the newline, and a half-written record under a
    // temporary name.
    let log = std::fs::read(dir.join("chain.log")).unwrap();
    std::fs::write(
        dir.join("chain.log"),
        [&log[..], &log[..log.len() / 2]].concat(),
    )
    .unwrap();
    // Appends write their temporaries in `records/.tmp/` (runners before
    // it, beside the records: `verify` ignores those too).
    std::fs::write(
        dir.join(".tmp/.20991231T000000.000000Z-probe-deadbeef.json.tmp-999999-cafe0000"),
        b"{\"format\": \"cordon.st",
    )
    .unwrap();
    std::fs::write(
        dir.join(".20991231T000000.000000Z-probe-deadbeef.dsse.json.tmp-999999-cafe0001"),
        b"{\"payload\": \"ey",
    )
    .unwrap();
    assert_eq!(findings(&ws), Vec::<String>::new());
    assert_eq!(ws.cordon(&["verify"], &[]).code, 0);
    // The next runner appends after the intact entry and clears the debris.
    run_ok(&ws);
    assert_eq!(findings(&ws), Vec::<String>::new());
    let leftovers: Vec<String> = std::fs::read_dir(dir.join(".tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(
        std::fs::read_to_string(dir.join("chain.log"))
            .unwrap()
            .lines()
            .count(),
        2
    );
}

/// The first `n` bytes of the seeded stream `stream` of `seed`, computed
/// from the documented construction.
fn seeded_bytes(seed: &[u8], stream: u8, n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut counter = 0u64;
    while out.len() < n {
        let mut h = Sha256::new();
        h.update(seed);
        h.update([stream]);
        h.update(counter.to_le_bytes());
        out.extend_from_slice(&h.finalize());
        counter += 1;
    }
    out.truncate(n);
    out
}

#[test]
fn the_step_sees_the_recorded_clock_and_seed() {
    let ws = Workspace::new();
    ws.step(PROBE, &["time", "--", "random"], "");
    let out = ws.run(&[]);
    assert_eq!(out.code, 0, "{out:?}");
    let rec = ws.record();
    let r = &rec["reproducibility"];
    assert_eq!(r["reproducible"], true);
    assert_eq!(r["clock"], "fixed");
    assert_eq!(r["random"], "seeded");
    // Native floats by default, on the architecture the record names.
    assert_eq!(r["nan_canonicalization"], false);
    assert_eq!(r["arch"], std::env::consts::ARCH);
    let secs = r["fixed_clock_unix_s"].as_u64().unwrap();
    assert_eq!(
        out.probe_lines("time"),
        [format!("time: ok {}", secs as u128 * 1_000_000_000)]
    );
    // `wasi:random` in wasmtime-wasi 48 draws one u32 per byte and keeps
    // its low byte, so byte i of the answer is byte 4*i of the stream.
    let seed = hex::decode(r["seed"].as_str().unwrap()).unwrap();
    let stream = seeded_bytes(&seed, 0, 64);
    let expected: Vec<u8> = stream.iter().step_by(4).copied().collect();
    assert_eq!(
        out.probe_lines("random"),
        [format!("random: ok {}", hex::encode(expected))]
    );
}

#[test]
fn reexecution_reproduces_outputs_bit_for_bit() {
    let ws = signed_workspace();
    ws.write("data/in.txt", "input\n");
    ws.step(
        PROBE,
        &[
            "read",
            "/in/in.txt",
            "--",
            "write-time",
            "/out/time.txt",
            "--",
            "write-random",
            "/out/random.txt",
        ],
        &(mount("/in", "data", "read") + &mount("/out", "out", "write")),
    );
    run_ok(&ws);
    // The component file changes after the run; the store still has the
    // one that ran.
    std::fs::write(ws.path("probe.wasm"), b"rebuilt").unwrap();
    let out = ws.cordon(&["verify", "--reexecute"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains("reproducible (2 output files identical)"),
        "{out:?}"
    );

    // An input that changed since the run is reported, not silently used.
    ws.write("data/in.txt", "other\n");
    let out = ws.cordon(&["verify", "--reexecute"], &[]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout.contains("input /in") && out.stdout.contains("changed since the run"),
        "{out:?}"
    );
}

#[test]
fn reexecution_flags_a_step_that_reads_the_real_clock() {
    let ws = signed_workspace();
    ws.step(
        PROBE,
        &["write-time", "/out/time.txt"],
        &mount("/out", "out", "write"),
    );
    let toml = std::fs::read_to_string(ws.path("step.toml")).unwrap();
    std::fs::write(
        ws.path("step.toml"),
        toml.replace("args =", "clock = \"real\"\nargs ="),
    )
    .unwrap();
    run_ok(&ws);
    let rec = ws.record();
    assert_eq!(rec["reproducibility"]["reproducible"], false);
    assert_eq!(rec["reproducibility"]["clock"], "real");
    assert!(rec["reproducibility"].get("fixed_clock_unix_s").is_none());
    let out = ws.cordon(&["verify", "--reexecute"], &[]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout.contains("re-execution differs")
            && out.stdout.contains("opted out")
            && out.stdout.contains("/out/time.txt changed"),
        "{out:?}"
    );
}

#[test]
fn float_nans_are_canonical_whatever_the_cpu_when_the_step_asks() {
    let ws = Workspace::new();
    ws.step(PROBE, &["nan"], "");
    let manifest = std::fs::read_to_string(ws.path("step.toml")).unwrap();
    // `floats` belongs to [step]: put it right after the digest line.
    let manifest = manifest.replacen("\nargs", "\nfloats = \"canonical\"\nargs", 1);
    assert!(manifest.contains("floats = \"canonical\""), "{manifest}");
    ws.write("step.toml", manifest);
    let plan = ws.cordon(&["plan", "step.toml"], &[]);
    assert!(plan.stdout.contains("floats canonical"), "{}", plan.stdout);
    let out = ws.run(&[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.probe_lines("nan"), ["nan: ok 0x7fc00000"]);
    let rec = ws.record();
    assert_eq!(rec["reproducibility"]["nan_canonicalization"], true);
    // The architecture is recorded either way; with canonical NaNs a
    // re-execution anywhere is held to the same bits.
    assert_eq!(rec["reproducibility"]["arch"], std::env::consts::ARCH);
    let audit = ws.cordon(&["audit", "step.toml"], &[]);
    assert!(
        !audit.stdout.contains("only on the same CPU architecture"),
        "{}",
        audit.stdout
    );
}

#[test]
fn float_nans_are_the_cpus_by_default_and_the_record_names_the_architecture() {
    let ws = Workspace::new();
    ws.step(PROBE, &["nan"], "");
    let manifest = std::fs::read_to_string(ws.path("step.toml")).unwrap();
    assert!(!manifest.contains("floats"), "{manifest}");
    let plan = ws.cordon(&["plan", "step.toml"], &[]);
    assert!(plan.stdout.contains("floats native"), "{}", plan.stdout);
    let out = ws.run(&[]);
    assert_eq!(out.code, 0, "{out:?}");
    let line = &out.probe_lines("nan")[0];
    // The CPU's own NaN: x86-64 (and AArch64) keep a quiet NaN's payload
    // through an addition, which canonicalization would have replaced.
    if cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
        assert_eq!(line, "nan: ok 0x7fc12345");
    } else {
        assert!(
            line.starts_with("nan: ok 0x7f") || line.starts_with("nan: ok 0xff"),
            "{line}"
        );
    }
    let rec = ws.record();
    assert_eq!(
        rec["reproducibility"]["nan_canonicalization"], false,
        "{rec}"
    );
    assert_eq!(
        rec["reproducibility"]["arch"],
        std::env::consts::ARCH,
        "{rec}"
    );
    // A re-execution on the same architecture is held to the same bits.
    // (The workspace signs nothing, which verify reports on its own.)
    let verify = ws.cordon(&["verify", "--reexecute"], &[]);
    assert!(
        verify.stderr.contains(": reproducible (")
            && !verify.stderr.contains("another architecture"),
        "{verify:?}"
    );
    // Reviewers are told what it costs.
    let audit = ws.cordon(&["audit", "step.toml"], &[]);
    assert!(
        audit.stdout.contains("only on the same CPU architecture"),
        "{}",
        audit.stdout
    );
}

#[test]
fn exported_in_toto_links_and_layout_pass_in_toto_verify_until_an_output_is_tampered_with() {
    let ws = signed_workspace();
    // The layout's owner is a person with a key file of their own.
    assert_eq!(
        ws.cordon(&["key", "reviewer", "owner", "--dir", "keys"], &[])
            .code,
        0
    );
    checksum_step(&ws);
    run_ok(&ws);
    let run_id = record_paths(&ws)[0]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
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
    let keyid = {
        let (env, _) = statement_of(&envelope_of(&record_paths(&ws)[0]));
        env["signatures"][0]["keyid"].as_str().unwrap().to_string()
    };
    let link_path = ws.path(&format!("meta/checksum.{}.link", &keyid[..8]));
    let (_, link) = statement_of(&link_path);
    assert_eq!(link["_type"], "link");
    assert_eq!(link["name"], "checksum");
    assert_eq!(
        link["materials"]["data/a.txt"]["sha256"],
        sha256_hex(b"alpha\n")
    );
    let sums = std::fs::read(ws.path("sums/SHA256SUMS")).unwrap();
    assert_eq!(
        link["products"]["sums/SHA256SUMS"]["sha256"],
        sha256_hex(&sums)
    );

    let args = [
        "--layout",
        "meta/root.layout",
        "--verification-keys",
        "keys/owner.pub",
        "--link-dir",
        "meta",
    ];
    let Some(ok) = in_toto_verify(&ws, &args) else {
        return;
    };
    assert!(ok.status.success(), "{ok:?}");
    // A layout checked against a key that did not sign it fails.
    let wrong = in_toto_verify(
        &ws,
        &[
            "--layout",
            "meta/root.layout",
            "--verification-keys",
            ws.trusted_key("dev").to_str().unwrap(),
            "--link-dir",
            "meta",
        ],
    )
    .unwrap();
    assert_eq!(wrong.status.code(), Some(1), "{wrong:?}");
    // A tampered output fails.
    std::fs::write(ws.path("sums/SHA256SUMS"), "forged\n").unwrap();
    let tampered = in_toto_verify(&ws, &args).unwrap();
    assert_eq!(tampered.status.code(), Some(1), "{tampered:?}");
}

#[test]
fn every_statement_validates_with_in_toto_attestation_and_securesystemslib() {
    let ws = signed_workspace();
    // A run with output files, a failed run, and a run that writes nothing.
    checksum_step(&ws);
    run_ok(&ws);
    ws.step(PROBE, &["exit", "1"], "");
    assert_eq!(ws.run(&[]).code, 1);
    printing_step(&ws);
    run_ok(&ws);
    let n = validate_envelopes_with_outside_tools(&records_dir(&ws), &ws.trusted_key("dev"));
    assert_eq!(n, 3);
    // The failed run's statement is about its record file.
    let failed = &record_paths(&ws)[1];
    let (_, statement) = statement_of(&envelope_of(failed));
    let bytes = std::fs::read(failed).unwrap();
    assert_eq!(
        statement["subject"][0]["digest"]["sha256"],
        sha256_hex(&bytes)
    );
    assert!(
        statement["predicate"]["buildDefinition"]["externalParameters"]["manifest"]["digest"]
            ["sha256"]
            .as_str()
            .is_some_and(|d| !d.contains(':')),
        "{statement}"
    );
}

#[test]
fn every_record_reads_back_through_its_type_byte_for_byte() {
    let ws = signed_workspace();
    checksum_step(&ws);
    run_ok(&ws);
    run_ok(&ws); // a cache hit
    ws.step(PROBE, &["metric", "m", "1", "--", "exit", "1"], "");
    assert_eq!(ws.run(&[]).code, 1);
    let paths = record_paths(&ws);
    assert_eq!(paths.len(), 3);
    for p in paths {
        let bytes = std::fs::read(&p).unwrap();
        let record: cordon_record::record::StepRecord =
            serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert_eq!(
            String::from_utf8(record.to_bytes()).unwrap(),
            String::from_utf8(bytes.clone()).unwrap(),
            "{}: the typed record is the whole record",
            p.display()
        );
        // A record written before later fields existed still reads.
        let mut old: Value = serde_json::from_slice(&bytes).unwrap();
        for field in [
            "cache",
            "reproducibility",
            "report",
            "usage",
            "compiled_from_cache",
            "secrets",
            "signed_by",
            "policy",
        ] {
            old.as_object_mut().unwrap().remove(field);
        }
        let read: cordon_record::record::StepRecord = serde_json::from_value(old)
            .unwrap_or_else(|e| panic!("{}: an older record does not read: {e}", p.display()));
        assert!(!read.reproducibility.reproducible);
    }
}
