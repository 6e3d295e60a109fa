//! Rendered documents and the numbers in them: a step's metric names are
//! text in every document the runner writes (the provenance card in
//! Markdown and JSON, posture in OpenMetrics, the JUnit and JSON reports),
//! read back by the parsers their readers use; a step's metric values are
//! finite numbers, and records written before that held hold still.

use crate::harness::*;
use cordon_test_artifacts::PROBE;
use std::path::PathBuf;

/// A metric name that is a Markdown link to a page that "approves" the
/// change, and one that is an HTML image with a script.
const LINK: &str = "[approve](https://evil.example/approve)";
const IMAGE: &str = "<img src=x onerror=alert(1)>";

/// Writes `pipeline.toml`: one probe step `probe` written inline, with
/// `args`.
fn probe_pipeline(ws: &Workspace, args: &[&str]) {
    let digest = ws.component(PROBE, "probe.wasm");
    let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    ws.write(
        "pipeline.toml",
        format!(
            "[pipeline]\nname = \"rendering\"\n\n[[step]]\ninline = \"\"\"\n[step]\n\
             name = \"probe\"\ncomponent = \"probe.wasm\"\ndigest = \"{digest}\"\n\
             args = [{}]\n\"\"\"\n",
            args.join(", ")
        ),
    );
}

/// Runs the pipeline (reports in `r.xml` and `r.json`); returns the
/// pipeline run id.
fn run_pipeline(ws: &Workspace) -> String {
    let out = ws.cordon(
        &[
            "run",
            "pipeline.toml",
            "--report",
            "junit=r.xml",
            "--report",
            "json=r.json",
        ],
        &[],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let runs: Vec<PathBuf> = std::fs::read_dir(ws.path(".cordon/pipelines"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs[0].file_stem().unwrap().to_str().unwrap().to_string()
}

/// Runs a Python script with the test tools (tests/tools/requirements.txt);
/// returns its stdout, failing with its stderr.
fn python(script: &str, args: &[&std::path::Path]) -> String {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 runs (./test.sh installs the test tools)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// What markdown-it-py (GFM-like: tables, strikethrough, autolinks) finds
/// in a Markdown file: links, images and raw HTML, then the text a reader
/// sees, one token per line.
const MARKDOWN_TOKENS: &str = r#"
import sys
from markdown_it import MarkdownIt
md = MarkdownIt("gfm-like")
def walk(tokens):
    for t in tokens:
        yield t
        if t.children:
            yield from walk(t.children)
tokens = list(walk(md.parse(open(sys.argv[1], encoding="utf-8").read())))
active = [t.type for t in tokens if t.type in ("link_open", "image", "html_inline", "html_block")]
print(len(active), " ".join(active))
for t in tokens:
    if t.type in ("text", "code_inline"):
        print(t.content)
"#;

#[test]
fn a_metric_named_like_a_link_or_an_image_is_plain_text_in_the_markdown_card() {
    let ws = Workspace::new();
    probe_pipeline(&ws, &["metric", LINK, "1", "--", "metric", IMAGE, "2"]);
    let run = run_pipeline(&ws);
    let card = ws.cordon(&["card", "--run", &run, "--format", "markdown"], &[]);
    assert_eq!(card.code, 0, "{card:?}");
    let file = ws.write("card.md", &card.stdout);
    let seen = python(MARKDOWN_TOKENS, &[&file]);
    let mut lines = seen.lines();
    assert_eq!(
        lines.next(),
        Some("0 "),
        "links, images or HTML in the card:\n{}",
        card.stdout
    );
    // Shown as what the step wrote, character for character.
    let text: Vec<&str> = lines.collect();
    for name in [LINK, IMAGE] {
        assert!(
            text.iter().any(|t| t.contains(name)),
            "`{name}` not shown as text: {text:?}"
        );
    }

    // The JSON card holds the names as they are, as data.
    let json = ws.cordon(&["card", "--run", &run, "--format", "json"], &[]);
    assert_eq!(json.code, 0, "{json:?}");
    let card: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(card["steps"][0]["metrics"][LINK], 1.0, "{card}");
    assert_eq!(card["steps"][0]["metrics"][IMAGE], 2.0, "{card}");
}

#[test]
fn a_step_reporting_nan_or_infinity_succeeds_and_its_record_counts_the_refusal() {
    let ws = Workspace::new();
    let key = ws.cordon(&["key", "generate", "--env", "dev"], &[]);
    assert_eq!(key.code, 0, "{key:?}");
    probe_pipeline(
        &ws,
        &[
            "metric", "loss", "NaN", "--", "metric", "gain", "inf", "--", "metric", "debt", "-inf",
            "--", "metric", "rows", "3",
        ],
    );
    let run = run_pipeline(&ws);

    let rec = ws.latest_record("probe");
    assert_eq!(
        rec["report"]["metrics"],
        serde_json::json!({"rows": 3.0}),
        "{rec}"
    );
    assert_eq!(rec["report"]["non_finite"], 3, "{rec}");
    // Not as `null` either (the arguments name them, the report does not).
    assert!(!rec["report"].to_string().contains("null"), "{rec}");

    let verify = ws.cordon(&["verify"], &[]);
    assert_eq!(verify.code, 0, "{verify:?}");
    for format in ["markdown", "json"] {
        let card = ws.cordon(&["card", "--run", &run, "--format", format], &[]);
        assert_eq!(card.code, 0, "{card:?}");
    }
    let posture = ws.cordon(&["posture", "--env", "dev", "--format", "json"], &[]);
    assert_eq!(posture.code, 0, "{posture:?}");
    let p: serde_json::Value = serde_json::from_str(&posture.stdout).unwrap();
    assert_eq!(p["runs"], 1, "{p}");
    assert_eq!(p["passing"], 1, "{p}");
    assert_eq!(p["unverifiable"], serde_json::json!({}), "{p}");

    // As Prometheus reads it: the same fixed families, the run counted.
    let om = ws.cordon(&["posture", "--env", "dev", "--format", "openmetrics"], &[]);
    assert_eq!(om.code, 0, "{om:?}");
    let file = ws.write("posture.txt", &om.stdout);
    let families = python(
        r#"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
for f in text_string_to_metric_families(open(sys.argv[1], encoding="utf-8").read()):
    for s in f.samples:
        print(s.name, s.labels.get("environment"), s.value)
"#,
        &[&file],
    );
    assert!(
        families.lines().any(|l| l == "cordon_runs dev 1"),
        "{families}"
    );
    assert!(
        families
            .lines()
            .any(|l| l == "cordon_unverifiable_records dev 0"),
        "{families}"
    );

    // The reports parse as their readers parse them.
    let junit = python(
        r#"
import sys
from junitparser import JUnitXml
for suite in JUnitXml.fromfile(sys.argv[1]):
    for case in suite:
        print(case.name)
"#,
        &[&ws.path("r.xml")],
    );
    assert_eq!(junit.trim(), "probe", "{junit}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ws.path("r.json")).unwrap()).unwrap();
    assert_eq!(report["steps"][0]["status"], "succeeded", "{report}");
}

/// A signing key the test holds itself, configured as the environment's
/// deprecated `signing-key` file, so the test can sign a record as an
/// older runner would have: (private key file, public key file).
fn file_signed_workspace(ws: &Workspace) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let (private, public) = cordon_record::attest::generate();
    let key = ws.secrets_home().join("dev.key");
    std::fs::write(&key, private).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let public_file = ws.secrets_home().join("dev.pub");
    std::fs::write(&public_file, public).unwrap();
    ws.write(
        "cordon.toml",
        format!(
            "version = 1\n\n[env.dev]\n\n[env.dev.records]\nsigning-key = \"{}\"\n",
            key.display()
        ),
    );
    (key, public_file)
}

#[test]
fn a_record_an_older_runner_wrote_with_a_null_metric_still_verifies_and_renders() {
    let ws = Workspace::new();
    let (key, public) = file_signed_workspace(&ws);
    probe_pipeline(
        &ws,
        &["metric", "loss", "0.25", "--", "metric", "rows", "3"],
    );
    let run = run_pipeline(&ws);

    // What a runner before the refusal wrote for `loss = NaN`: `null`,
    // signed and chained like any record.
    let path = ws.records_paths().pop().unwrap();
    let old = std::fs::read_to_string(&path).unwrap();
    let new = old.replace("\"loss\": 0.25", "\"loss\": null");
    assert_ne!(old, new, "{old}");
    std::fs::write(&path, &new).unwrap();
    let signer = cordon_record::attest::Signer::load(&key).unwrap();
    let payload = cordon_record::attest::statement_bytes(new.as_bytes()).unwrap();
    let mut envelope = serde_json::to_vec_pretty(
        &signer
            .envelope(cordon_record::attest::PAYLOAD_TYPE, &payload)
            .unwrap(),
    )
    .unwrap();
    envelope.push(b'\n');
    let envelope_path = path.with_extension("dsse.json");
    let old_envelope = std::fs::read(&envelope_path).unwrap();
    std::fs::write(&envelope_path, &envelope).unwrap();
    let log = ws.path(".cordon/records/chain.log");
    let digest = |b: &[u8]| format!("sha256:{}", sha256_hex(b));
    let text = std::fs::read_to_string(&log).unwrap();
    let relinked = text
        .replace(&digest(old.as_bytes()), &digest(new.as_bytes()))
        .replace(&digest(&old_envelope), &digest(&envelope));
    assert_ne!(text, relinked);
    std::fs::write(&log, relinked).unwrap();
    let pipeline = ws.path(&format!(".cordon/pipelines/{run}.json"));
    let summary = std::fs::read_to_string(&pipeline).unwrap();
    std::fs::write(
        &pipeline,
        summary.replace("\"loss\": 0.25", "\"loss\": null"),
    )
    .unwrap();

    let trusted = public.display().to_string();
    let verify = ws.cordon(&["verify", "--trusted-key", &trusted], &[]);
    assert_eq!(verify.code, 0, "{verify:?}");
    for format in ["markdown", "json"] {
        let card = ws.cordon(&["card", "--run", &run, "--format", format], &[]);
        assert_eq!(card.code, 0, "{card:?}");
        assert!(card.stdout.contains("rows"), "{}", card.stdout);
    }
    let posture = ws.cordon(
        &[
            "posture",
            "--env",
            "dev",
            "--format",
            "json",
            "--trusted-key",
            &trusted,
        ],
        &[],
    );
    assert_eq!(posture.code, 0, "{posture:?}");
    let p: serde_json::Value = serde_json::from_str(&posture.stdout).unwrap();
    assert_eq!(p["runs"], 1, "{p}");
    assert_eq!(p["unverifiable"], serde_json::json!({}), "{p}");
}

#[test]
fn a_record_posture_cannot_read_is_counted_and_named_not_skipped() {
    let ws = Workspace::new();
    let key = ws.cordon(&["key", "generate", "--env", "dev"], &[]);
    assert_eq!(key.code, 0, "{key:?}");
    probe_pipeline(&ws, &["metric", "rows", "3"]);
    run_pipeline(&ws);
    let path = ws.records_paths().pop().unwrap();
    let run = path.file_stem().unwrap().to_str().unwrap().to_string();
    let text = std::fs::read_to_string(&path).unwrap();
    // Still JSON that names its environment, no longer a step record.
    std::fs::write(&path, text.replacen("\"step\":", "\"stepp\":", 1)).unwrap();

    let out = ws.cordon(&["posture", "--env", "dev", "--format", "json"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    let p: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(p["runs"], 1, "{p}");
    assert_eq!(p["passing"], 0, "{p}");
    assert!(p["unverifiable"][&run].is_string(), "{p}");
    let text = ws.cordon(&["posture", "--env", "dev"], &[]);
    assert!(
        text.stdout.contains("unverifiable records: 1") && text.stdout.contains(&run),
        "{text:?}"
    );
}
