//! `cordon promote` on the example pipeline: only an artifact whose whole
//! provenance verifies against the *target's* trust roots and promotion
//! policy crosses from `dev` into `prod`, and a refusal writes nothing
//! into `prod`.

use crate::harness::*;
use crate::pipelines::example_pipeline;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The example's workspace file with `prod` trusting reviewer alice, the
/// promotion settings `promotion` (TOML lines of `[env.prod.promotion]`,
/// in place of the example's own table) and `dev_policy` as
/// `[env.dev.policy]`.
fn configure(ws: &Workspace, promotion: &str, dev_policy: &str) {
    let base = example_config_without("[env.prod.promotion]");
    ws.write(
        "cordon.toml",
        format!(
            "{base}\n[env.dev.policy]\n{dev_policy}\n\n[env.prod.policy]\nreviewers = [\"keys/alice.pub\"]\n\n[env.prod.promotion]\n{promotion}\n"
        ),
    );
}

/// The example's `cordon.toml` without the table `header` (which must be
/// there), and with neither table the tests here write themselves, so
/// none of them is defined twice.
fn example_config_without(header: &str) -> String {
    let base = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/ml-pipeline/cordon.toml"),
    )
    .unwrap();
    let headers: Vec<&str> = base
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('['))
        .collect();
    assert!(headers.contains(&header), "{header} in {headers:?}");
    for own in ["[env.dev.policy]", "[env.prod.policy]"] {
        assert!(!headers.contains(&own), "the example now defines {own}");
    }
    let mut out = String::new();
    let mut skipping = false;
    for line in base.lines() {
        if line.trim_start().starts_with('[') {
            skipping = line.trim() == header;
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The example set up, `prod` with its own record key and reviewer alice,
/// and one dev run of the pipeline; returns the pipeline run id.
fn example_run(ws: &Workspace, dev_policy: &str, run_args: &[&str]) -> String {
    example_run_with(ws, dev_policy, run_args, &|_| {})
}

/// [`example_run`], with `prepare` changing the workspace before the run.
fn example_run_with(
    ws: &Workspace,
    dev_policy: &str,
    run_args: &[&str],
    prepare: &dyn Fn(&Workspace),
) -> String {
    example_pipeline(ws);
    prepare(ws);
    let out = ws.cordon(&["key", "reviewer", "alice", "--dir", "keys"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    configure(ws, "", dev_policy);
    let key = ws.cordon(&["key", "generate", "--env", "prod", "--if-missing"], &[]);
    assert_eq!(key.code, 0, "{key:?}");
    let mut args = vec!["run", "pipeline.toml", "--env", "dev"];
    args.extend_from_slice(run_args);
    let run = ws.cordon(&args, &[]);
    assert_eq!(run.code, 0, "{run:?}");
    let runs: Vec<PathBuf> = std::fs::read_dir(ws.path(".cordon/pipelines"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1);
    runs[0].file_stem().unwrap().to_str().unwrap().to_string()
}

/// Lets `prod` trust the dev records' key for promotions from `dev`.
fn trust_dev_for_prod(ws: &Workspace) {
    let dir = ws.secrets_home().join("trusted/prod/promote-from/dev");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(ws.trusted_key("dev"), dir.join("dev.pub")).unwrap();
}

/// The public key of prod's records, which `cordon key generate` put in
/// the user's trust directory (beside the `promote-from/` keys).
fn prod_key(ws: &Workspace) -> PathBuf {
    let dir = ws.secrets_home().join("trusted/prod");
    let keys: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pub"))
        .collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    keys.into_iter().next().unwrap()
}

fn approve_all(ws: &Workspace) {
    for s in ["validate", "pseudonymize", "train", "evaluate", "sign"] {
        let out = ws.cordon(
            &[
                "approve",
                &format!("steps/{s}.toml"),
                "--key",
                "keys/alice.key",
            ],
            &[],
        );
        assert_eq!(out.code, 0, "{out:?}");
    }
}

fn promote(ws: &Workspace, run: &str, extra: &[&str]) -> Output {
    let mut args = vec!["promote", "--run", run, "--from", "dev", "--to", "prod"];
    args.extend_from_slice(extra);
    ws.cordon(&args, &[])
}

/// Everything a promotion could write into `prod`: its data root and the
/// VSAs it signs.
fn target_state(ws: &Workspace) -> Vec<(String, Vec<u8>)> {
    let mut s = snapshot(&ws.path("data/prod"));
    if ws.path(".cordon/promotions").exists() {
        s.extend(snapshot(&ws.path(".cordon/promotions")));
    }
    s
}

fn assert_refused(out: &Output, reason: &str) {
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("refused; nothing was written into `prod`")
            && out.stderr.contains(reason),
        "expected `{reason}` in: {}",
        out.stderr
    );
}

/// Copies dev's model into prod by hand (the same bytes, but nothing
/// vouches for them) and checks that `run` (a `cordon` command line)
/// refuses with exit 2, saying `refusal`, and runs nothing.
fn refuses_a_hand_copied_model(ws: &Workspace, run: &[&str], refusal: &str) {
    std::fs::create_dir_all(ws.path("data/prod/model")).unwrap();
    for (name, bytes) in snapshot(&ws.path("data/dev/model")) {
        ws.write(&format!("data/prod/model/{name}"), bytes);
    }
    let records = ws.records().len();
    let out = ws.cordon(run, &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains(refusal)
            && out
                .stderr
                .contains("no valid verification summary of this environment names its tree"),
        "{}",
        out.stderr
    );
    assert_eq!(ws.records().len(), records, "nothing ran");
}

/// Refused because prod's reviewer approved none of the model's steps:
/// one reason per step of its lineage.
fn assert_refused_for_approval(out: &Output) {
    assert_refused(out, "[promotion-approval] step `train`");
    for s in ["validate", "pseudonymize"] {
        assert!(
            out.stderr
                .contains(&format!("[promotion-approval] step `{s}`")),
            "{}",
            out.stderr
        );
    }
}

/// Validates the VSA envelope at `vsa` as an outside verifier would: the
/// DSSE signature with securesystemslib against `key`, the Statement with
/// in-toto-attestation, the predicate strictly against the SLSA VSA v1
/// message of in-toto-attestation (unknown fields are errors), then the
/// fields the spec requires. Prints the subjects as `name digest` lines.
fn validate_vsa(vsa: &Path, key: &Path) -> String {
    // The VSA v1 fields, from https://slsa.dev/spec/v1.0/verification_summary:
    // verifier.id, timeVerified, resourceUri, policy {uri, digest},
    // inputAttestations [{uri, digest}], verificationResult PASSED|FAILED,
    // verifiedLevels (array of SLSA_<TRACK>_LEVEL_<N>), slsaVersion.
    let script = r#"
import json, sys
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey
from google.protobuf import json_format
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement
from in_toto_attestation.predicates.vsa.v1 import vsa_pb2

key = SSlibKey.from_crypto(load_pem_public_key(open(sys.argv[2], "rb").read()))
env = Envelope.from_dict(json.load(open(sys.argv[1])))
assert env.payload_type == "application/vnd.in-toto+json", env.payload_type
env.verify([key], 1)
st = json.loads(env.payload)
Statement.copy_from_pb(json_format.ParseDict(st, statement_pb2.Statement())).validate()
assert st["predicateType"] == "https://slsa.dev/verification_summary/v1", st["predicateType"]
p = st["predicate"]
# Strict: unknown fields are errors. in-toto-attestation 0.9.3 declares
# verifiedLevels a single string, where the SLSA VSA v1 spec says an array
# of levels; that field is checked against the spec below instead.
json_format.ParseDict({k: v for k, v in p.items() if k != "verifiedLevels"}, vsa_pb2.VerificationSummary())
assert p["verifier"]["id"] == "https://example.invalid/cordon/verifier/prod", p["verifier"]
assert p["timeVerified"].endswith("Z"), p["timeVerified"]
assert p["resourceUri"].startswith("file:///") and p["resourceUri"].endswith("/data/prod/model"), p["resourceUri"]
assert p["policy"]["uri"].startswith("promotions/prod/"), p["policy"]
assert len(p["policy"]["digest"]["sha256"]) == 64, p["policy"]
assert p["verificationResult"] == "PASSED", p["verificationResult"]
assert p["verifiedLevels"] == ["SLSA_BUILD_LEVEL_1"], p["verifiedLevels"]
assert p["slsaVersion"] == "1.0"
uris = [a["uri"] for a in p["inputAttestations"]]
assert uris[0].startswith("pipelines/"), uris
assert len([u for u in uris if u.startswith("records/") and u.endswith(".dsse.json")]) == 3, uris
for a in p["inputAttestations"]:
    assert len(a["digest"]["sha256"]) == 64, a
for s in st["subject"]:
    print(s["name"], s["digest"]["sha256"])
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(vsa)
        .arg(key)
        .output()
        .expect("python3 runs (./test.sh installs securesystemslib and in-toto-attestation)");
    assert!(
        out.status.success(),
        "the VSA fails outside validation: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The record of step `step` of pipeline run `run`.
fn step_record(ws: &Workspace, run: &str, step: &str) -> serde_json::Value {
    let p: serde_json::Value = serde_json::from_slice(
        &std::fs::read(ws.path(&format!(".cordon/pipelines/{run}.json"))).unwrap(),
    )
    .unwrap();
    let id = p["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == step)
        .unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    serde_json::from_slice(&std::fs::read(ws.path(&format!(".cordon/records/{id}.json"))).unwrap())
        .unwrap()
}

fn vsas(ws: &Workspace) -> Vec<PathBuf> {
    let dir = ws.path(".cordon/promotions/prod");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.to_string_lossy().ends_with(".vsa.dsse.json"));
    v
}

#[test]
fn only_a_model_whose_provenance_the_target_trusts_and_approves_is_promoted() {
    let ws = Workspace::new();
    let run = example_run(&ws, "", &[]);
    let before = target_state(&ws);

    // prod trusts no key for dev records yet: the user's own trust in the
    // dev key (for `cordon verify`) does not open prod's gate.
    let out = promote(&ws, &run, &["--artifact", "/model"]);
    assert_refused(
        &out,
        "environment `prod` trusts no key for records of `dev`",
    );

    // A key prod trusts, but not the one that signed.
    let other = ws.path("other.pub");
    std::fs::write(&other, cordon_record::attest::generate().1).unwrap();
    let out = promote(
        &ws,
        &run,
        &[
            "--artifact",
            "/model",
            "--trusted-key",
            other.to_str().unwrap(),
        ],
    );
    assert_refused(&out, "which is not a trusted key of this environment");
    assert_eq!(target_state(&ws), before, "a refusal wrote into prod");

    // Trusted, but prod is protected and its reviewer approved nothing.
    trust_dev_for_prod(&ws);
    let out = promote(&ws, &run, &["--artifact", "/model"]);
    assert_refused_for_approval(&out);
    assert!(
        !out.stderr.contains("step `evaluate`"),
        "evaluate is not in the model's lineage: {}",
        out.stderr
    );

    // Approved, but prod accepts no confidential source data.
    approve_all(&ws);
    configure(
        &ws,
        "classifications = [\"public\", \"internal\"]\nrequired-steps = [\"train\"]",
        "",
    );
    let out = promote(&ws, &run, &["--artifact", "/model"]);
    assert_refused(&out, "[promotion-classification]");
    assert!(
        out.stderr.contains("is classified confidential"),
        "{}",
        out.stderr
    );
    // A step the target requires that the lineage lacks.
    configure(&ws, "required-steps = [\"train\", \"evaluate\"]", "");
    let out = promote(&ws, &run, &["--artifact", "/model"]);
    assert_refused(
        &out,
        "[promotion-required-steps] step `evaluate` is required",
    );
    assert_eq!(target_state(&ws), before, "a refusal wrote into prod");

    // Everything holds: the model is copied by digest and the VSA signed.
    configure(
        &ws,
        "required-steps = [\"train\"]\nclassifications = [\"confidential\", \"internal\"]",
        "",
    );
    let out = promote(&ws, &run, &["--artifact", "/model"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains("cordon: promoted /model of step `train`"),
        "{}",
        out.stderr
    );
    assert_eq!(
        snapshot(&ws.path("data/prod/model")),
        snapshot(&ws.path("data/dev/model")),
        "the model in prod is the model of the run"
    );
    let files = vsas(&ws);
    assert_eq!(files.len(), 1, "{files:?}");
    let subjects = validate_vsa(&files[0], &prod_key(&ws));
    let train = step_record(&ws, &run, "train");
    let out_mount = train["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["guest"] == "/out")
        .unwrap();
    let tree = out_mount["after"]["sha256"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    let mut lines = subjects.lines();
    assert_eq!(
        lines.next().unwrap(),
        format!("/model/ {tree}"),
        "{subjects}"
    );
    // Every file subject is the file now in prod.
    for line in lines {
        let (name, digest) = line.split_once(' ').unwrap();
        let rel = name.strip_prefix("/model/").unwrap();
        let bytes = std::fs::read(ws.path(&format!("data/prod/model/{rel}"))).unwrap();
        assert_eq!(sha256_hex(&bytes), digest, "{name}");
    }
    // The VSA's name says which tree it promoted; the policy set it
    // names is kept beside it with that digest.
    assert!(
        files[0]
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with(tree)
    );

    // A swapped intermediate output is refused, and prod stays as it was.
    let before = target_state(&ws);
    ws.write("data/dev/pseudonymized/customers.csv", "id,age\n1,2\n");
    let out = promote(&ws, &run, &["--artifact", "/model"]);
    assert_refused(&out, "(step `pseudonymize`)");
    assert_eq!(target_state(&ws), before, "a refusal wrote into prod");
}

#[test]
fn an_artifact_of_a_break_glass_run_is_refused_unless_the_target_accepts_break_glass() {
    let ws = Workspace::new();
    ws.write(
        "policy/no-train.rego",
        "package org.freeze\n\ndeny contains v if {\n\tsome s in input.steps\n\ts.name == \"train\"\n\tv := {\"rule\": \"freeze\", \"step\": s.name, \"message\": \"training is frozen\"}\n}\n",
    );
    let run = example_run(
        &ws,
        "files = [\"policy/no-train.rego\"]\nbreak-glass = true",
        &["--break-glass", "incident 42: retrain now"],
    );
    trust_dev_for_prod(&ws);
    approve_all(&ws);
    let before = target_state(&ws);
    let out = promote(&ws, &run, &["--artifact", "/model"]);
    assert_refused(
        &out,
        "[promotion-break-glass] step `train` ran with break-glass",
    );
    assert!(
        out.stderr.contains("incident 42: retrain now"),
        "{}",
        out.stderr
    );
    assert_eq!(target_state(&ws), before, "a refusal wrote into prod");

    configure(
        &ws,
        "break-glass = true",
        "files = [\"policy/no-train.rego\"]\nbreak-glass = true",
    );
    let out = promote(&ws, &run, &["--artifact", "/model"]);
    assert_eq!(out.code, 0, "{out:?}");
}

#[test]
fn a_mount_that_requires_promotion_refuses_a_copied_model_and_accepts_a_promoted_one() {
    let ws = Workspace::new();
    let run = example_run(&ws, "", &[]);
    trust_dev_for_prod(&ws);
    approve_all(&ws);
    ws.step(
        cordon_test_artifacts::PLAIN,
        &[],
        "[[mount]]\nguest = \"/model\"\nhost = \"data/prod/model\"\naccess = \"read\"\npurpose = \"the model to serve\"\nclassification = \"internal\"\nrequires = \"promoted\"\n\n[limits]\nfuel = 1_000_000_000\nmemory = \"64MiB\"\ntimeout = \"30s\"\noutput = \"1MiB\"\n",
    );
    let out = ws.cordon(&["approve", "step.toml", "--key", "keys/alice.key"], &[]);
    assert_eq!(out.code, 0, "{out:?}");

    // Someone copies the model into prod by hand: the same bytes, but
    // nothing vouches for them.
    refuses_a_hand_copied_model(
        &ws,
        &["run", "step.toml", "--env", "prod"],
        "step.toml: step `plain` requires promoted input at /model",
    );

    let out = promote(&ws, &run, &["--artifact", "/model"]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = ws.cordon(&["run", "step.toml", "--env", "prod"], &[]);
    assert_eq!(out.code, 0, "{out:?}");

    // A VSA of another environment does not count: dev's runs do not
    // accept prod's summaries.
    let out = ws.cordon(&["run", "step.toml", "--env", "dev"], &[]);
    assert_eq!(out.code, 2, "{out:?}");

    // The model's provenance card names the promotion.
    let out = ws.cordon(&["card", "--run", &run, "--format", "json"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    ws.write("card.json", &out.stdout);
    validate_json(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/schemas/provenance-card.schema.json"),
        &ws.path("card.json"),
    );
    let card: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(card["pipeline"], "churn-model");
    assert_eq!(card["promotions"][0]["environment"], "prod");
    assert_eq!(card["promotions"][0]["result"], "PASSED");
    assert!(
        !out.stdout.contains(crate::pipelines::EXAMPLE_SECRET),
        "a secret value in the card"
    );
}

#[test]
fn the_provenance_card_of_the_example_run_names_datasets_steps_grants_and_signatures() {
    let ws = Workspace::new();
    let run = example_run(&ws, "", &[]);
    let out = ws.cordon(&["card", "--run", &run, "--format", "json"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    ws.write("card.json", &out.stdout);
    validate_json(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/schemas/provenance-card.schema.json"),
        &ws.path("card.json"),
    );
    let card: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let datasets = card["datasets"].as_array().unwrap();
    assert_eq!(datasets.len(), 1, "{datasets:?}");
    assert_eq!(datasets[0]["classification"], "confidential");
    assert!(
        datasets[0]["host"]
            .as_str()
            .unwrap()
            .ends_with("data/dev/raw")
    );
    let steps = card["steps"].as_array().unwrap();
    let names: Vec<&str> = steps.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["validate", "pseudonymize", "train", "evaluate", "sign"]
    );
    for s in steps {
        assert_eq!(s["policy"]["decision"], "allow", "{s}");
        assert!(s["signature"]["keyid"].is_string(), "signed: {s}");
        assert_eq!(s["reproducible"], true, "{s}");
    }
    let pseudo = &steps[1];
    assert_eq!(pseudo["secrets"][0]["name"], "pseudonym-key");
    assert!(
        steps[3]["metrics"]["auc"].as_f64().unwrap() > 0.6,
        "{}",
        steps[3]
    );
    assert!(card["promotions"].as_array().unwrap().is_empty());
    assert!(
        !out.stdout.contains(crate::pipelines::EXAMPLE_SECRET),
        "a secret value in the card"
    );

    let md = ws.cordon(&["card", "--run", &run], &[]);
    assert_eq!(md.code, 0, "{md:?}");
    for line in [
        "# Provenance card: `churn-model`",
        "## Datasets",
        "| dataset | read by | digest | files | classification | purpose |",
        "## Steps",
        "## Grants",
        "- secret `pseudonym-key` from local",
        "## Promotions",
    ] {
        assert!(md.stdout.contains(line), "`{line}` in:\n{}", md.stdout);
    }
    assert!(md.stdout.contains("| `train` |"), "{}", md.stdout);
    golden_card(&normalized(&md.stdout, &card, &ws));
}

/// The Markdown card with what differs between runs replaced: the
/// workspace path, run ids, the finish time, key ids and digests (which
/// change with every rebuilt step, and which the JSON checks above and
/// the schema cover).
fn normalized(md: &str, card: &serde_json::Value, ws: &Workspace) -> String {
    let mut s = md.replace(
        &ws.root().canonicalize().unwrap().display().to_string(),
        "$WORKSPACE",
    );
    s = s.replace(card["run_id"].as_str().unwrap(), "$PIPELINE_RUN");
    s = s.replace(card["finished_at"].as_str().unwrap(), "$FINISHED");
    for st in card["steps"].as_array().unwrap() {
        s = s.replace(st["run_id"].as_str().unwrap(), "$RUN");
        let keyid = st["signature"]["keyid"].as_str().unwrap();
        s = s.replace(&keyid[..8], "$KEYID");
    }
    let mut out = String::new();
    let mut rest = s.as_str();
    while let Some(i) = rest.find("sha256:") {
        out.push_str(&rest[..i + 7]);
        rest = &rest[i + 7..];
        let hex = rest.chars().take_while(|c| c.is_ascii_hexdigit()).count();
        if hex > 0 {
            out.push_str("$DIGEST");
            rest = &rest[hex..];
        }
    }
    out.push_str(rest);
    out
}

/// Compares the card with `tests/golden/card.md` (`UPDATE_UI=1` rewrites
/// it, as for the other golden files).
fn golden_card(actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden/card.md");
    if std::env::var_os("UPDATE_UI").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        expected,
        actual,
        "{} differs (UPDATE_UI=1 rewrites it)",
        path.display()
    );
}

#[test]
fn a_step_that_saw_the_real_clock_is_promoted_only_after_it_re_executes_identically() {
    let ws = Workspace::new();
    let run = example_run_with(&ws, "", &[], &|ws| {
        let train = std::fs::read_to_string(ws.path("steps/train.toml")).unwrap();
        ws.write(
            "steps/train.toml",
            train.replacen("[step]\n", "[step]\nclock = \"real\"\n", 1),
        );
    });
    assert_eq!(
        step_record(&ws, &run, "train")["reproducibility"]["reproducible"],
        false
    );
    trust_dev_for_prod(&ws);
    approve_all(&ws);
    let before = target_state(&ws);
    let out = promote(&ws, &run, &["--artifact", "/model"]);
    assert_refused(
        &out,
        "[promotion-reproducible] step `train` is not reproducible",
    );
    assert_eq!(target_state(&ws), before, "a refusal wrote into prod");

    // Run again from its record, it gives the same model: that is proof
    // enough for the default pack.
    let out = promote(&ws, &run, &["--artifact", "/model", "--reexecute"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        snapshot(&ws.path("data/prod/model")),
        snapshot(&ws.path("data/dev/model"))
    );
}

#[test]
fn the_promotion_table_refuses_unknown_keys_and_missing_policy_files_at_their_line() {
    let ws = Workspace::new();
    ws.write(
        "cordon.toml",
        "version = 1\n[env.dev]\n[env.prod.promotion]\nbreakglass = true\n",
    );
    ws.step(cordon_test_artifacts::PLAIN, &[], "");
    let out = ws.cordon(&["check", "step.toml", "--env", "dev"], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("cordon.toml:4:1: unknown field `breakglass`"),
        "{}",
        out.stderr
    );
    ws.write(
        "cordon.toml",
        "version = 1\n[env.dev]\n[env.prod.promotion]\npolicy = [\"policy/missing.rego\"]\n",
    );
    let out = ws.cordon(&["check", "step.toml", "--env", "dev"], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("cordon.toml:4:11: promotion policy file")
            && out.stderr.contains("policy/missing.rego does not exist"),
        "{}",
        out.stderr
    );
}

#[test]
fn posture_counts_a_break_glass_run_and_a_failed_step() {
    let ws = Workspace::new();
    ws.write(
        "policy/no-train.rego",
        "package org.freeze\n\ndeny contains v if {\n\tsome s in input.steps\n\ts.name == \"train\"\n\tv := {\"rule\": \"freeze\", \"step\": s.name, \"message\": \"training is frozen\"}\n}\n",
    );
    example_run(
        &ws,
        "files = [\"policy/no-train.rego\"]\nbreak-glass = true",
        &["--break-glass", "incident 42: retrain now"],
    );
    ws.step(
        cordon_test_artifacts::PROBE,
        &["exit", "1"],
        &mount("/out", "out", "write"),
    );
    let out = ws.cordon(&["run", "step.toml", "--env", "dev"], &[]);
    assert_eq!(out.code, 1, "{out:?}");

    let out = ws.cordon(&["posture", "--env", "dev", "--format", "json"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    let p: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(p["runs"], 6, "{p}");
    assert_eq!(p["failed"], 1, "{p}");
    let bg = p["break_glass"].as_array().unwrap();
    assert!(
        bg.iter()
            .any(|b| b["step"] == "train" && b["justification"] == "incident 42: retrain now"),
        "{p}"
    );
    // Passing: succeeded, a clean decision, and a record that verifies.
    assert_eq!(p["passing"], 5 - bg.len() as u64, "{p}");
    assert_eq!(p["unsigned"].as_array().unwrap().len(), 0, "{p}");
    assert_eq!(p["unverifiable"].as_object().unwrap().len(), 0, "{p}");
    let secrets: Vec<&str> = p["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(secrets, ["model-signing-key", "pseudonym-key"], "{p}");
    assert!(!out.stdout.contains(crate::pipelines::EXAMPLE_SECRET));

    let out = ws.cordon(&["posture", "--env", "dev", "--format", "openmetrics"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("cordon_runs{environment=\"dev\"} 6\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("cordon_runs_failed{environment=\"dev\"} 1\n"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.ends_with("# EOF\n"), "{}", out.stdout);
    // prod ran nothing.
    let out = ws.cordon(&["posture", "--env", "prod", "--format", "json"], &[]);
    let p: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(p["runs"], 0, "{p}");
}

/// The promotion `examples/ml-pipeline/run.sh` shows, step by step through
/// the binary, with the example's own `cordon.toml` (its
/// `[env.prod.promotion]` table): prod's reviewer and the key prod trusts
/// for dev's records live in the user's configuration, not the workspace;
/// the promotion is refused while the reviewer has approved nothing, and
/// writes nothing into prod; approved, it is accepted; the prod step whose
/// input requires promotion refuses the model until then, and runs on it
/// after.
#[test]
fn the_example_demo_refuses_then_accepts_the_promotion_into_prod() {
    let ws = Workspace::new();
    example_pipeline(&ws);
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/ml-pipeline");
    ws.write(
        "steps/release.toml",
        std::fs::read(example.join("steps/release.toml")).unwrap(),
    );
    let pin = ws.cordon(&["pin", "steps/release.toml"], &[]);
    assert_eq!(pin.code, 0, "{pin:?}");
    let config = std::fs::read_to_string(ws.path("cordon.toml")).unwrap();
    assert!(
        config.contains("[env.prod.promotion]")
            && !config
                .lines()
                .any(|l| l.trim_start().starts_with("reviewers")),
        "the example's own configuration, with no reviewer in it: {config}"
    );
    let run = ws.cordon(
        &[
            "run",
            "pipeline.toml",
            "--env",
            "dev",
            "--report",
            "json=.cordon/last-run.json",
        ],
        &[],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ws.path(".cordon/last-run.json")).unwrap()).unwrap();
    let run_id = Path::new(report["pipeline_record"].as_str().unwrap())
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();

    // As run.sh sets prod up, all of it in the user's configuration.
    let out = ws.cordon(&["key", "generate", "--env", "prod", "--if-missing"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = ws.cordon_with_input(
        &["secret", "set", "model-signing-key", "--env", "prod"],
        &[],
        Some(crate::pipelines::EXAMPLE_SECRET.as_bytes()),
    );
    assert_eq!(out.code, 0, "{out:?}");
    trust_dev_for_prod(&ws);
    let reviewers = ws.secrets_home().join("reviewers");
    let out = ws.cordon(
        &[
            "key",
            "reviewer",
            "prod-reviewer",
            "--dir",
            reviewers.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let trusted = ws.secrets_home().join("trusted/prod/reviewers");
    std::fs::create_dir_all(&trusted).unwrap();
    std::fs::copy(
        reviewers.join("prod-reviewer.pub"),
        trusted.join("prod-reviewer.pub"),
    )
    .unwrap();
    let reviewer_key = reviewers.join("prod-reviewer.key");

    // Refused: the reviewer prod trusts has approved none of the steps
    // that made the model. Every reason is printed; prod is untouched.
    let before = target_state(&ws);
    let out = ws.cordon(
        &[
            "promote",
            "--run",
            &run_id,
            "--from",
            "dev",
            "--to",
            "prod",
            "--artifact",
            "/model",
        ],
        &[],
    );
    assert_refused_for_approval(&out);
    assert!(
        !out.stderr.contains("promotion-required-steps"),
        "the example's required steps are in the model's lineage: {}",
        out.stderr
    );
    assert_eq!(target_state(&ws), before, "a refusal wrote into prod");
    assert!(!ws.path("data/prod/model").exists());

    // The reviewer approves; the release step still refuses a model that
    // has not come in through promotion, even one with the right bytes.
    for s in [
        "validate",
        "pseudonymize",
        "train",
        "evaluate",
        "sign",
        "release",
    ] {
        let out = ws.cordon(
            &[
                "approve",
                &format!("steps/{s}.toml"),
                "--key",
                reviewer_key.to_str().unwrap(),
            ],
            &[],
        );
        assert_eq!(out.code, 0, "{out:?}");
    }
    assert!(
        walk_files(ws.root())
            .iter()
            .all(|p| !p.extension().is_some_and(|x| x == "key" || x == "pub")),
        "a key in the workspace"
    );
    let release = [
        "run",
        "steps/release.toml",
        "--env",
        "prod",
        "--state",
        ".cordon",
    ];
    refuses_a_hand_copied_model(
        &ws,
        &release,
        "release.toml: step `release` requires promoted input at /in",
    );
    assert!(!ws.path("data/prod/signature").exists());

    // Accepted: the model is copied by digest and prod signs the VSA.
    let promote = [
        "promote",
        "--run",
        &run_id,
        "--from",
        "dev",
        "--to",
        "prod",
        "--artifact",
        "/model",
    ];
    let out = ws.cordon(&promote, &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains("cordon: promoted /model of step `train`"),
        "{}",
        out.stderr
    );
    assert_eq!(
        snapshot(&ws.path("data/prod/model")),
        snapshot(&ws.path("data/dev/model"))
    );
    let files = vsas(&ws);
    assert_eq!(files.len(), 1, "{files:?}");
    validate_vsa(&files[0], &prod_key(&ws));

    // The release step runs in prod on the promoted model.
    let out = ws.cordon(&release, &[]);
    assert_eq!(out.code, 0, "{out:?}");
    let rec = ws
        .records()
        .into_iter()
        .find(|r| r["step"] == "release")
        .expect("a record of the release step");
    assert_eq!(rec["environment"], "prod", "{rec}");
    assert!(ws.path("data/prod/signature").is_dir());

    // run.sh runs twice: promoting the same model again is accepted too.
    let out = ws.cordon(&promote, &[]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = ws.cordon(&["verify", "--state", ".cordon"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
}

/// A promotion killed at each point of its commit leaves prod holding the
/// old tree (here: none), or the new tree with its VSA; the next ordinary
/// `cordon promote` completes or rolls back what it left, with nobody
/// running `repair`, and everything verifies after.
#[cfg(feature = "fault-injection")]
#[test]
fn a_promotion_killed_at_any_point_leaves_the_old_tree_or_the_new_tree_with_its_vsa() {
    for point in [
        "promote-after-intent",
        "promote-after-vsa",
        // The first promotion into prod renames; there is no exchange.
        "before-exchange",
        "promote-after-publish",
    ] {
        let ws = Workspace::new();
        let run = example_run(&ws, "", &[]);
        trust_dev_for_prod(&ws);
        approve_all(&ws);
        configure(
            &ws,
            "required-steps = [\"train\"]\nclassifications = [\"confidential\", \"internal\"]",
            "",
        );
        let killed = ws.cordon(
            &[
                "promote",
                "--run",
                &run,
                "--from",
                "dev",
                "--to",
                "prod",
                "--artifact",
                "/model",
            ],
            &[("CORDON_FAULT", point)],
        );
        assert_ne!(killed.code, 0, "{point}: {killed:?}");
        // Exactly as the kill left it.
        let model = ws.path("data/prod/model");
        let holds_new = model.exists() && snapshot(&model) == snapshot(&ws.path("data/dev/model"));
        if holds_new {
            assert_eq!(vsas(&ws).len(), 1, "{point}: the new tree without its VSA");
        } else {
            assert!(
                !model.exists() || snapshot(&model).is_empty(),
                "{point}: prod holds a tree that is neither old nor new"
            );
        }
        // The next ordinary command completes what was left.
        let out = promote(&ws, &run, &["--artifact", "/model"]);
        assert_eq!(out.code, 0, "{point}: {out:?}");
        assert_eq!(
            snapshot(&model),
            snapshot(&ws.path("data/dev/model")),
            "{point}"
        );
        assert!(!vsas(&ws).is_empty(), "{point}");
        let leftovers: Vec<_> = std::fs::read_dir(ws.path(".cordon/staging"))
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(
            leftovers
                .iter()
                .all(|n: &std::ffi::OsString| n.to_string_lossy().ends_with(".lock")),
            "{point}: {leftovers:?}"
        );
        assert!(
            ws.path(".cordon/journal")
                .read_dir()
                .map_or(true, |mut d| d.next().is_none()),
            "{point}: an intent is left"
        );
        let beside: Vec<String> = std::fs::read_dir(ws.path("data/prod"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".cordon-new-") || n.contains(".cordon-old-"))
            .collect();
        assert!(beside.is_empty(), "{point}: {beside:?}");
        let v = ws.cordon(&["verify"], &[]);
        assert_eq!(v.code, 0, "{point}: {v:?}");
    }
}
