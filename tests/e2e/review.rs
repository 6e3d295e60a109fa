//! Reviewer tools: `cordon audit`, `cordon diff` and `cordon inspect`.
//!
//! Audit and diff output on the example pipeline is compared with golden
//! files in `tests/golden/` (`UPDATE_UI=1 cargo test` rewrites them, like
//! the manifest error files). The example's pinned digests change whenever
//! a step is rebuilt and pinned, so they appear as `@DIGEST:<step>@`.

use crate::harness::*;
use cordon_test_artifacts::{
    CHECKSUM, CSV_VALIDATE, PLAIN, PROBE, PSEUDONYMIZE, SIGN_MODEL, TRAIN, TRAIN_EVALUATE,
};
use serde_json::Value;
use std::path::{Path, PathBuf};

const STEPS: [&str; 5] = ["validate", "pseudonymize", "train", "evaluate", "sign"];

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/ml-pipeline")
}

/// Copies the example's pipeline, manifests and cordon.toml into `dir` of
/// the workspace (no components, no data: the reviewer tools need
/// neither). Returns each step's pinned digest.
fn copy_example(ws: &Workspace, dir: &str) -> Vec<(String, String)> {
    let ex = example_dir();
    let prefix = if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    };
    for f in ["cordon.toml", "pipeline.toml"] {
        ws.write(&format!("{prefix}{f}"), std::fs::read(ex.join(f)).unwrap());
    }
    let mut digests = Vec::new();
    for s in STEPS {
        let rel = format!("steps/{s}.toml");
        let text = std::fs::read_to_string(ex.join(&rel)).unwrap();
        digests.push((s.to_string(), pinned_digest(&text)));
        ws.write(&format!("{prefix}{rel}"), text);
    }
    digests
}

/// The component digest a step manifest pins (its `digest = "…"` line).
fn pinned_digest(manifest: &str) -> String {
    manifest
        .lines()
        .find_map(|l| l.strip_prefix("digest = \""))
        .and_then(|d| d.strip_suffix('"'))
        .unwrap()
        .to_string()
}

/// Replaces each step's digest with a placeholder.
fn stable(text: &str, digests: &[(String, String)]) -> String {
    let mut out = text.to_string();
    for (step, digest) in digests {
        out = out.replace(digest, &format!("@DIGEST:{step}@"));
    }
    out
}

/// Compares `actual` with `tests/golden/<name>`, or rewrites it under
/// `UPDATE_UI=1`. Returns a failure description.
fn golden(name: &str, actual: &str) -> Option<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_UI").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return None;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    (expected != actual).then(|| {
        format!(
            "--- {}\nexpected:\n{expected}\nactual:\n{actual}",
            path.display()
        )
    })
}

fn json(out: &Output) -> Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

/// Edits `rel` in the workspace: replaces `from` (which must be there) by
/// `to`.
fn edit(ws: &Workspace, rel: &str, from: &str, to: &str) {
    let text = std::fs::read_to_string(ws.path(rel)).unwrap();
    assert!(text.contains(from), "{rel} lacks {from:?}");
    ws.write(rel, text.replacen(from, to, 1));
}

#[test]
fn audit_of_the_example_pipeline_matches_the_golden_files() {
    let ws = Workspace::new();
    let digests = copy_example(&ws, "");
    let mut failures = Vec::new();
    for (format, file) in [
        ("text", "audit.txt"),
        ("markdown", "audit.md"),
        ("json", "audit.json"),
    ] {
        let out = ws.cordon(
            &["audit", "pipeline.toml", "--env", "dev", "--format", format],
            &[],
        );
        assert_eq!(out.code, 0, "{out:?}");
        assert_eq!(out.stderr, "", "{out:?}");
        failures.extend(golden(file, &stable(&out.stdout, &digests)));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn audit_says_what_each_step_may_do_in_plain_language() {
    let ws = Workspace::new();
    copy_example(&ws, "");
    let out = ws.cordon(&["audit", "pipeline.toml", "--format", "json"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    let a = json(&out);
    assert_eq!(a["environment"]["name"], "dev");
    let step = |name: &str| {
        a["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()
            .clone()
    };
    let p = step("pseudonymize");
    assert_eq!(
        p["secrets"][0]["summary"][0],
        "may compute HMAC-SHA256 with pseudonym-key; never sees it"
    );
    assert_eq!(p["mounts"][0]["host"], "data/dev/validated");
    assert_eq!(p["mounts"][0]["written_by"], "validate");
    assert_eq!(p["network"], serde_json::json!([]));
    assert_eq!(p["approval"], Value::Null);
    assert_eq!(p["flags"][0]["code"], "declassifies");
    assert_eq!(
        step("sign")["secrets"][0]["summary"][0],
        "may sign with model-signing-key; never sees it"
    );
    assert_eq!(step("train")["cacheable"]["value"], true);
    assert_eq!(step("train")["reproducible"]["value"], true);

    // The same workspace named with a relative --config.
    let out = ws.cordon(
        &[
            "audit",
            "pipeline.toml",
            "--config",
            "cordon.toml",
            "--format",
            "json",
        ],
        &[],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        json(&out)["steps"][0]["mounts"][0]["host"],
        "data/dev/raw",
        "{}",
        out.stdout
    );

    // Another environment: its data roots, its protection.
    let out = ws.cordon(&["audit", "pipeline.toml", "--env", "prod"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("environment prod (protected;"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("mounted from data/prod/raw"),
        "{}",
        out.stdout
    );
}

#[test]
fn audit_flags_reveal_read_write_and_restricted_data() {
    let ws = Workspace::new();
    ws.write(
        "step.toml",
        "[step]\nname = \"risky\"\ncomponent = \"risky.wasm\"\n\
         digest = \"sha256:0000000000000000000000000000000000000000000000000000000000000000\"\n\
         clock = \"real\"\n\n\
         [[mount]]\nguest = \"/vault\"\nhost = \"secrets-dir\"\naccess = \"read-write\"\n\
         purpose = \"rotate keys\"\nclassification = \"restricted\"\n\n\
         [[secret]]\nname = \"db-password\"\nuses = [\"reveal\", \"hmac\"]\n\n\
         [limits]\nmemory = \"1GiB\"\n",
    );
    // Neither the component nor the mounted directory exists: the audit
    // reads only the manifest.
    let out = ws.cordon(&["audit", "step.toml"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    let t = &out.stdout;
    for line in [
        "  secret       may READ the value of db-password (reveal)\n",
        "  secret       may compute HMAC-SHA256 with db-password; never sees it\n",
        "  cacheable    no: it changes a read-write mount in place\n",
        "  reproducible no: it sees the host's real wall clock (`clock = \"real\"`)\n",
        "  risk         restricted-data: mount /vault holds restricted data\n",
        "  risk         reveal: the step may read the value of secret db-password, not only use it\n",
        "  risk         reveal-with-egress: the step may read the value of secret db-password and write outputs: it can leak the value in any encoding (XOR, reversal, splitting), which no check can recognise\n",
        "memory 1 GiB; timeout 5 min (default);",
        "may read and change secrets-dir in place at /vault; changes are not staged and survive a failed step (restricted)",
    ] {
        assert!(t.contains(line), "missing {line:?} in\n{t}");
    }
    assert!(t.contains("  risk         read-write: mount /vault"), "{t}");
}

#[test]
fn audit_text_cannot_be_forged_by_a_purpose() {
    let ws = Workspace::new();
    ws.write(
        "step.toml",
        "[step]\nname = \"s\"\ncomponent = \"s.wasm\"\n\
         digest = \"sha256:0000000000000000000000000000000000000000000000000000000000000000\"\n\n\
         [[mount]]\nguest = \"/in\"\nhost = \"d\"\naccess = \"read\"\nclassification = \"public\"\n\
         purpose = \"\"\"x\n  risk         none <img src=x onerror=alert(1)>\"\"\"\n",
    );
    let out = ws.cordon(&["audit", "step.toml"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout.matches("\n  risk ").count(),
        1,
        "a purpose made a line of its own:\n{}",
        out.stdout
    );
    let md = ws.cordon(&["audit", "step.toml", "--format", "markdown"], &[]);
    // Every `<` of the purpose is escaped: no HTML reaches the comment.
    assert!(md.stdout.contains("\\<img"), "{}", md.stdout);
    assert!(!md.stdout.replace("\\<", "").contains('<'), "{}", md.stdout);
}

#[test]
fn audit_errors_name_the_file_and_the_fix() {
    let ws = Workspace::new();
    copy_example(&ws, "");
    let out = ws.cordon(&["audit", "pipeline.toml", "--env", "staging"], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("no environment `staging` (defined: dev, prod)"),
        "{}",
        out.stderr
    );
    ws.write("cordon.toml", "[env.dev]\n");
    let out = ws.cordon(&["audit", "pipeline.toml"], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains(
            "steps/validate.toml:10:8: `${data_root}` is not defined for environment `dev`"
        ),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("fix: define it under `[env.dev.vars]`"),
        "{}",
        out.stderr
    );
    edit(&ws, "steps/train.toml", "purpose", "purpos");
    let out = ws.cordon(&["audit", "steps/train.toml"], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.starts_with("error: steps/train.toml:"),
        "{}",
        out.stderr
    );
    let out = ws.cordon(&["audit", "missing.toml"], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("missing.toml: cannot read"),
        "{}",
        out.stderr
    );
}

#[test]
fn audit_in_ci_needs_no_record_keys() {
    let ws = Workspace::new();
    copy_example(&ws, "");
    edit(
        &ws,
        "cordon.toml",
        "[env.prod]\nprotected = true\n",
        "[env.prod]\nprotected = true\n\n[env.prod.records]\nsigning-key = \"keys/prod.key\"\n",
    );
    let out = ws.cordon(&["audit", "pipeline.toml", "--env", "prod"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
}

/// Makes `new/` a changed copy of the example in `old/`, with one change
/// of most kinds: returns the digests of the old side.
fn changed_example(ws: &Workspace) -> Vec<(String, String)> {
    let digests = copy_example(ws, "old");
    copy_example(ws, "new");
    let d = |s: &str| digests.iter().find(|(n, _)| n == s).unwrap().1.clone();
    let rebuilt = format!("sha256:{}", "ab".repeat(32));
    edit(ws, "new/steps/validate.toml", &d("validate"), &rebuilt);
    edit(
        ws,
        "new/steps/pseudonymize.toml",
        "uses = [\"hmac\"]",
        "uses = [\"hmac\"]\nkey = \"pseudonym-key-2025\"",
    );
    edit(
        ws,
        "new/steps/pseudonymize.toml",
        "the same rows with personal columns pseudonymized",
        "the same rows, pseudonymized",
    );
    edit(
        ws,
        "new/steps/train.toml",
        "memory = \"256MiB\"",
        "memory = \"1GiB\"",
    );
    edit(
        ws,
        "new/steps/train.toml",
        "fuel = 20_000_000_000",
        "fuel = 10_000_000_000",
    );
    edit(ws, "new/steps/train.toml", "\"400\"", "\"800\"");
    edit(
        ws,
        "new/steps/train.toml",
        "[limits]",
        "[[secret]]\nname = \"db-password\"\nuses = [\"reveal\"]\n\n[limits]",
    );
    edit(
        ws,
        "new/steps/evaluate.toml",
        "access = \"read\"",
        "access = \"read-write\"",
    );
    edit(
        ws,
        "new/steps/sign.toml",
        "classification = \"internal\"",
        "classification = \"restricted\"",
    );
    edit(
        ws,
        "new/steps/sign.toml",
        "args = [",
        "clock = \"real\"\nargs = [",
    );
    edit(
        ws,
        "new/pipeline.toml",
        "needs = [\"evaluate\"]",
        "needs = [\"evaluate\"]\ncache = false",
    );
    let text = std::fs::read_to_string(ws.path("new/pipeline.toml")).unwrap();
    ws.write(
        "new/pipeline.toml",
        text + "\n[[step]]\nmanifest = \"steps/publish.toml\"\n",
    );
    ws.write(
        "new/steps/publish.toml",
        format!(
            "[step]\nname = \"publish\"\ncomponent = \"../components/publish.wasm\"\ndigest = \"sha256:{}\"\n\n\
             [env]\nTARGET = \"models\"\n\n\
             [[mount]]\nguest = \"/in\"\nhost = \"${{data_root}}/signature\"\naccess = \"read\"\n\
             purpose = \"signatures to publish\"\nclassification = \"public\"\n",
            "cd".repeat(32)
        ),
    );
    digests
}

#[test]
fn diff_of_the_example_pipeline_matches_the_golden_files() {
    let ws = Workspace::new();
    let digests = changed_example(&ws);
    let mut failures = Vec::new();
    for (format, file) in [
        ("text", "diff.txt"),
        ("markdown", "diff.md"),
        ("json", "diff.json"),
    ] {
        let out = ws.cordon(
            &[
                "diff",
                "old/pipeline.toml",
                "new/pipeline.toml",
                "--format",
                format,
            ],
            &[],
        );
        assert_eq!(out.code, 1, "escalations exit 1: {out:?}");
        assert_eq!(out.stderr, "", "{out:?}");
        failures.extend(golden(file, &stable(&out.stdout, &digests)));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn diff_lists_escalations_first() {
    let ws = Workspace::new();
    changed_example(&ws);
    let out = ws.cordon(
        &[
            "diff",
            "old/pipeline.toml",
            "new/pipeline.toml",
            "--format",
            "json",
        ],
        &[],
    );
    let d = json(&out);
    assert_eq!(d["escalates"], true);
    let dirs: Vec<&str> = d["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["direction"].as_str().unwrap())
        .collect();
    let first_other = dirs.iter().position(|d| *d != "escalation").unwrap();
    assert!(
        dirs[first_other..].iter().all(|d| *d != "escalation"),
        "{dirs:?}"
    );
    // The reverse takes every grant back, but the digest still changes:
    // a different build needs review whichever way it goes.
    let back = ws.cordon(
        &[
            "diff",
            "new/pipeline.toml",
            "old/pipeline.toml",
            "--format",
            "json",
        ],
        &[],
    );
    assert_eq!(back.code, 1, "{back:?}");
    let codes: Vec<String> = json(&back)["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["direction"] == "escalation")
        .map(|c| c["code"].as_str().unwrap().to_string())
        .collect();
    // Moving from read-write back to read, a restricted mount back to
    // internal, a reveal removed: none of them escalates.
    assert_eq!(
        codes,
        ["component-changed", "secret-key", "limit-raised"],
        "{}",
        back.stdout
    );
}

/// A manifest for the per-kind diff cases: `step` lines go into [step],
/// `rest` after it.
fn case_manifest(step: &str, rest: &str) -> String {
    format!(
        "[step]\nname = \"s\"\ncomponent = \"s.wasm\"\n\
         digest = \"sha256:0000000000000000000000000000000000000000000000000000000000000000\"\n{step}\n{rest}"
    )
}

fn mount_toml(host: &str, access: &str, class: &str) -> String {
    format!(
        "[[mount]]\nguest = \"/m\"\nhost = \"{host}\"\naccess = \"{access}\"\npurpose = \"p\"\nclassification = \"{class}\"\n"
    )
}

fn secret_toml(uses: &str, key: &str) -> String {
    format!("[[secret]]\nname = \"k\"\nuses = [{uses}]\n{key}\n")
}

/// Runs `cordon diff old.toml new.toml --format json`; returns the exit
/// code and the (direction, code) of every change.
fn diff_codes(ws: &Workspace, old: &str, new: &str) -> (i32, Vec<(String, String)>) {
    ws.write("old.toml", old);
    ws.write("new.toml", new);
    let out = ws.cordon(&["diff", "old.toml", "new.toml", "--format", "json"], &[]);
    assert!(out.code == 0 || out.code == 1, "{out:?}");
    let changes = json(&out)["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["direction"].as_str().unwrap().to_string(),
                c["code"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (out.code, changes)
}

#[test]
fn every_kind_of_escalation_exits_1_and_its_reverse_exits_0() {
    let ws = Workspace::new();
    let m = |step: &str, rest: &str| case_manifest(step, rest);
    let read = mount_toml("d", "read", "internal");
    // (what, less, more, code going up, code coming down)
    let cases: Vec<(&str, String, String, &str, &str)> = vec![
        (
            "new mount",
            m("", ""),
            m("", &read),
            "mount-added",
            "mount-removed",
        ),
        (
            "read -> read-write",
            m("", &read),
            m("", &mount_toml("d", "read-write", "internal")),
            "mount-access",
            "mount-access",
        ),
        (
            "write -> read-write",
            m("", &mount_toml("d", "write", "internal")),
            m("", &mount_toml("d", "read-write", "internal")),
            "mount-access",
            "mount-access",
        ),
        (
            "higher classification",
            m("", &read),
            m("", &mount_toml("d", "read", "restricted")),
            "mount-classification",
            "mount-classification",
        ),
        (
            "new secret",
            m("", ""),
            m("", &secret_toml("\"hmac\"", "")),
            "secret-added",
            "secret-removed",
        ),
        (
            "new use",
            m("", &secret_toml("\"hmac\"", "")),
            m("", &secret_toml("\"hmac\", \"sign\"", "")),
            "secret-use-added",
            "secret-use-removed",
        ),
        (
            "reveal",
            m("", &secret_toml("\"sign\"", "")),
            m("", &secret_toml("\"sign\", \"reveal\"", "")),
            "secret-reveal",
            "secret-use-removed",
        ),
        (
            "raised fuel",
            m("", "[limits]\nfuel = 1000\n"),
            m("", "[limits]\nfuel = 2000\n"),
            "limit-raised",
            "limit-lowered",
        ),
        (
            "raised memory",
            m("", "[limits]\nmemory = \"64MiB\"\n"),
            m("", "[limits]\nmemory = \"128MiB\"\n"),
            "limit-raised",
            "limit-lowered",
        ),
        (
            "raised timeout",
            m("", "[limits]\ntimeout = \"10s\"\n"),
            m("", ""),
            "limit-raised",
            "limit-lowered",
        ),
        (
            "raised output",
            m("", "[limits]\noutput = \"1MiB\"\n"),
            m("", "[limits]\noutput = \"2MiB\"\n"),
            "limit-raised",
            "limit-lowered",
        ),
        (
            "new network destination",
            m("", ""),
            m("", "[network]\nallow = [\"https://api.example.com/v1/\"]\n"),
            "network-added",
            "network-removed",
        ),
        (
            "raised request count",
            m(
                "",
                "[network]\nallow = [\"https://api.example.com/v1/\"]\n[limits]\nrequests = 5\n",
            ),
            m(
                "",
                "[network]\nallow = [\"https://api.example.com/v1/\"]\n[limits]\nrequests = 50\n",
            ),
            "limit-raised",
            "limit-lowered",
        ),
        (
            "real clock",
            m("", ""),
            m("clock = \"real\"", ""),
            "clock-real",
            "clock-fixed",
        ),
        (
            "real randomness",
            m("", ""),
            m("random = \"real\"", ""),
            "random-real",
            "random-seeded",
        ),
    ];
    let mut failures = Vec::new();
    for (what, less, more, up, down) in &cases {
        let (code, changes) = diff_codes(&ws, less, more);
        let want = ("escalation".to_string(), up.to_string());
        if code != 1
            || changes.iter().filter(|c| c.0 == "escalation").count() != 1
            || !changes.contains(&want)
        {
            failures.push(format!("{what}: up: exit {code}, {changes:?}"));
        }
        let (code, changes) = diff_codes(&ws, more, less);
        if code != 0 || changes != vec![("de-escalation".to_string(), down.to_string())] {
            failures.push(format!("{what}: down: exit {code}, {changes:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn changes_that_escalate_both_ways() {
    let ws = Workspace::new();
    let m = |rest: &str| case_manifest("", rest);
    let other_digest = m("").replace(&"0".repeat(64), &"1".repeat(64));
    for (what, a, b, code) in [
        ("component digest", m(""), other_digest, "component-changed"),
        (
            "host path",
            m(&mount_toml("a", "read", "internal")),
            m(&mount_toml("b", "read", "internal")),
            "mount-host",
        ),
        (
            "read <-> write",
            m(&mount_toml("d", "read", "internal")),
            m(&mount_toml("d", "write", "internal")),
            "mount-access",
        ),
        (
            "provider key",
            m(&secret_toml("\"hmac\"", "key = \"a\"")),
            m(&secret_toml("\"hmac\"", "key = \"b\"")),
            "secret-key",
        ),
    ] {
        for (x, y) in [(&a, &b), (&b, &a)] {
            let (exit, changes) = diff_codes(&ws, x, y);
            assert_eq!(exit, 1, "{what}");
            assert_eq!(
                changes,
                [("escalation".to_string(), code.to_string())],
                "{what}"
            );
        }
    }
}

#[test]
fn neutral_changes_and_no_changes_exit_0() {
    let ws = Workspace::new();
    let a = case_manifest("args = [\"-a\"]", &mount_toml("d", "read", "internal"));
    let b = case_manifest(
        "args = [\"-b\"]",
        &(mount_toml("d", "read", "internal").replace("purpose = \"p\"", "purpose = \"q\"")
            + "[env]\nMODE = \"fast\"\n"),
    );
    let (code, changes) = diff_codes(&ws, &a, &b);
    assert_eq!(code, 0);
    let codes: Vec<&str> = changes.iter().map(|c| c.1.as_str()).collect();
    assert_eq!(codes, ["mount-purpose", "env-added", "args-changed"]);
    assert!(changes.iter().all(|c| c.0 == "neutral"));
    let (code, changes) = diff_codes(&ws, &a, &a);
    assert_eq!((code, changes.len()), (0, 0));
    let out = ws.cordon(&["diff", "old.toml", "new.toml"], &[]);
    assert_eq!(
        out.stdout,
        "capability diff of manifest old.toml -> new.toml\nno capability changes\n"
    );
}

#[test]
fn diff_errors_exit_2_and_name_the_file() {
    let ws = Workspace::new();
    copy_example(&ws, "");
    let out = ws.cordon(&["diff", "pipeline.toml", "missing.toml"], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("missing.toml: cannot read the file"),
        "{}",
        out.stderr
    );
    let out = ws.cordon(&["diff", "pipeline.toml", "steps/train.toml"], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("steps/train.toml: is a manifest, but pipeline.toml is a pipeline"),
        "{}",
        out.stderr
    );
    ws.write(
        "bad.toml",
        "[step]\nname = \"x\"\ncomponent = \"x.wasm\"\ndigest = \"sha256:1\"\nfuel = 3\n",
    );
    let out = ws.cordon(&["diff", "steps/train.toml", "bad.toml"], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .starts_with("error: bad.toml:5:1: unknown field `fuel`"),
        "{}",
        out.stderr
    );
    let out = ws.cordon(&["diff", "pipeline.toml"], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("give two files to compare"),
        "{}",
        out.stderr
    );
    let out = ws.cordon(&["diff", "--git", "HEAD", "a.toml", "b.toml"], &[]);
    assert_eq!(out.code, 2, "{out:?}");
}

fn git(ws: &Workspace, args: &[&str]) {
    let out = std::process::Command::new("git")
        .args([
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.invalid",
        ])
        .args([
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(ws.root())
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?}: {out:?}");
}

#[test]
fn diff_against_a_git_revision_reads_the_pipeline_and_its_manifests_there() {
    let ws = Workspace::new();
    copy_example(&ws, "ml");
    git(&ws, &["init", "-q"]);
    git(&ws, &["add", "."]);
    git(&ws, &["commit", "-q", "-m", "example"]);

    let out = ws.cordon(&["diff", "--git", "HEAD", "ml/pipeline.toml"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout,
        "capability diff of pipeline HEAD:ml/pipeline.toml -> ml/pipeline.toml\nno capability changes\n"
    );

    // A change to a manifest the pipeline names, not to the pipeline file.
    edit(
        &ws,
        "ml/steps/train.toml",
        "memory = \"256MiB\"",
        "memory = \"2GiB\"",
    );
    let out = ws.cordon(&["diff", "--git", "HEAD", "ml/pipeline.toml"], &[]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout
            .contains("! ESCALATION  train: memory limit raised from 256 MiB to 2 GiB\n"),
        "{}",
        out.stdout
    );
    // The manifest alone.
    let out = ws.cordon(&["diff", "--git", "HEAD", "ml/steps/train.toml"], &[]);
    assert_eq!(out.code, 1, "{out:?}");

    // An invalid manifest at the revision is named as REV:path.
    edit(
        &ws,
        "ml/steps/train.toml",
        "memory = \"2GiB\"",
        "memory = \"256MiB\"",
    );
    edit(
        &ws,
        "ml/steps/evaluate.toml",
        "[limits]",
        "[limits]\nfule = 1",
    );
    git(&ws, &["commit", "-q", "-am", "typo"]);
    edit(&ws, "ml/steps/evaluate.toml", "fule = 1", "");
    let out = ws.cordon(&["diff", "--git", "HEAD", "ml/pipeline.toml"], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("HEAD:ml/steps/evaluate.toml:"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("unknown field `fule`"),
        "{}",
        out.stderr
    );

    let out = ws.cordon(&["diff", "--git", "no-such-rev", "ml/pipeline.toml"], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("`no-such-rev` is not a revision of the repository"),
        "{}",
        out.stderr
    );
    let out = ws.cordon(&["diff", "--git=--output=x", "ml/pipeline.toml"], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        !ws.path("x").exists(),
        "a revision was passed to git as an option"
    );
}

#[test]
fn diff_outside_a_git_repository_says_so() {
    let ws = Workspace::new();
    copy_example(&ws, "");
    let out = ws.cordon(
        &["diff", "--git", "HEAD", "pipeline.toml"],
        &[(
            "GIT_CEILING_DIRECTORIES",
            ws.root().parent().unwrap().to_str().unwrap(),
        )],
    );
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("is not inside a git repository"),
        "{}",
        out.stderr
    );
}

fn inspect(ws: &Workspace, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["inspect"];
    all.extend(args);
    all.extend(["--format", "json"]);
    let out = ws.cordon(&all, &[]);
    let v = if out.code == 0 {
        json(&out)
    } else {
        Value::Null
    };
    (out.code, v)
}

fn names(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn inspect_reads_every_first_party_step() {
    let ws = Workspace::new();
    for artifact in [
        CHECKSUM,
        CSV_VALIDATE,
        PSEUDONYMIZE,
        TRAIN,
        TRAIN_EVALUATE,
        SIGN_MODEL,
        PROBE,
    ] {
        let (code, v) = inspect(&ws, &[artifact]);
        assert_eq!(code, 0, "{artifact}");
        let bytes = std::fs::read(artifact).unwrap();
        assert_eq!(v["digest"], format!("sha256:{}", sha256_hex(&bytes)));
        assert_eq!(v["size"], bytes.len());
        assert_eq!(v["runnable"], true, "{artifact}");
        assert!(
            names(&v, "exports")
                .iter()
                .any(|e| e.starts_with("wasi:cli/run@0.2")),
            "{artifact}: {v}"
        );
        let langs = v["producers"].to_string();
        assert!(langs.contains("Rust"), "{artifact}: {langs}");
        assert_eq!(v["manifest"], Value::Null);
    }
    let (_, v) = inspect(&ws, &[PSEUDONYMIZE]);
    let secrets = v["imports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| {
            i["name"]
                .as_str()
                .unwrap()
                .starts_with("cordon:step/secrets@")
        })
        .expect("pseudonymize imports the secrets interface")
        .clone();
    assert_eq!(secrets["kind"], "interface");
    let f = secrets["functions"].to_string();
    assert!(
        f.contains("[method]secret.hmac-sha256") && !f.contains("reveal"),
        "{f}"
    );
}

#[test]
fn inspect_reads_a_plain_wasi_command() {
    let ws = Workspace::new();
    let (code, v) = inspect(&ws, &[PLAIN]);
    assert_eq!(code, 0);
    let imports = names(&v, "imports");
    assert!(
        imports.iter().all(|i| !i.starts_with("cordon:")),
        "{imports:?}"
    );
    assert!(
        imports
            .iter()
            .any(|i| i.starts_with("wasi:cli/environment@0.2")),
        "{imports:?}"
    );
    let out = ws.cordon(&["inspect", PLAIN], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("    export wasi:cli/run@0.2"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("  runs      yes: it exports wasi:cli/run"),
        "{}",
        out.stdout
    );
}

#[test]
fn inspect_with_a_manifest_finds_over_privilege_and_denied_imports() {
    let ws = Workspace::new();
    // The plain step reads /in and writes /out, and knows no secret.
    ws.step(
        PLAIN,
        &["-v"],
        "[[secret]]\nname = \"api-token\"\nuses = [\"hmac\"]\n",
    );
    let (code, v) = inspect(&ws, &["plain.wasm", "--manifest", "step.toml"]);
    assert_eq!(code, 0);
    let c = &v["manifest"];
    assert_eq!(c["digest_matches"], true);
    let subjects = |key: &str| -> Vec<String> {
        c[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["subject"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(subjects("unused_grants"), ["secret api-token"]);
    let denied = subjects("denied_imports");
    assert!(
        denied
            .iter()
            .any(|d| d.starts_with("wasi:filesystem/preopens@")),
        "no mount granted: {denied:?}"
    );
    assert_eq!(subjects("unavailable_imports"), Vec::<String>::new());

    // Pseudonymize calls hmac only: a reveal grant is over-privilege.
    ws.step(
        PSEUDONYMIZE,
        &[],
        &format!(
            "{}[[secret]]\nname = \"pseudonym-key\"\nuses = [\"hmac\", \"reveal\"]\n",
            mount("/in", "data", "read")
        ),
    );
    let (_, v) = inspect(&ws, &["pseudonymize.wasm", "--manifest", "step.toml"]);
    let unused: Vec<&str> = v["manifest"]["unused_grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["subject"].as_str().unwrap())
        .collect();
    assert_eq!(unused, ["secret pseudonym-key: reveal"]);
    assert_eq!(v["manifest"]["denied_imports"], serde_json::json!([]));

    // Another build than the pinned one.
    ws.component(CHECKSUM, "pseudonymize.wasm");
    let out = ws.cordon(
        &["inspect", "pseudonymize.wasm", "--manifest", "step.toml"],
        &[],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .contains("  digest    DIFFERS: the manifest pins sha256:"),
        "{}",
        out.stdout
    );
}

#[test]
fn inspect_rejects_what_is_not_a_component_clearly() {
    let ws = Workspace::new();
    ws.write("garbage.wasm", "this is not a WebAssembly component");
    ws.write("core.wasm", b"\0asm\x01\0\0\0");
    ws.write("truncated.wasm", b"\0asm\x0d\0\x01\0\x01\x7f");
    for (file, message) in [
        (
            "garbage.wasm",
            "error: garbage.wasm: not a WebAssembly file (it lacks the `\\0asm` header)\n  fix:",
        ),
        (
            "core.wasm",
            "error: core.wasm: a core WebAssembly module, not a component\n  fix: build for the wasm32-wasip2 target",
        ),
        (
            "truncated.wasm",
            "error: truncated.wasm: not a valid WebAssembly component: ",
        ),
        (
            "missing.wasm",
            "error: missing.wasm: cannot read the component",
        ),
    ] {
        let out = ws.cordon(&["inspect", file], &[]);
        assert_eq!(out.code, 2, "{file}: {out:?}");
        assert!(out.stderr.starts_with(message), "{file}: {}", out.stderr);
        assert_eq!(out.stdout, "", "{file}");
    }
    copy_example(&ws, "");
    ws.component(PLAIN, "plain.wasm");
    let out = ws.cordon(
        &["inspect", "plain.wasm", "--manifest", "pipeline.toml"],
        &[],
    );
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("pipeline.toml: is a pipeline"),
        "{}",
        out.stderr
    );
}

#[test]
fn audit_and_inspect_speak_of_network_grants_and_approvals() {
    let ws = Workspace::new();
    ws.step(
        cordon_test_artifacts::HTTP_PROBE,
        &[],
        &(mount("/in", "data", "read").replace("purpose", "classification = \"confidential\"\npurpose")
            + "[network]\nallow = [{ url = \"http://127.0.0.1:8080/hooks/\", methods = [\"POST\"] }]\n\n\
               [[secret]]\nname = \"deploy-token\"\nuses = [\"http-header\"]\nhosts = [\"127.0.0.1:8080\"]\n"),
    );
    ws.mkdir("data");
    assert_eq!(
        ws.cordon(&["key", "reviewer", "alice", "--dir", "keys"], &[])
            .code,
        0
    );
    ws.write(
        "cordon.toml",
        "[env.dev.policy]\nreviewers = [\"keys/alice.pub\"]\n",
    );
    let out = ws.cordon(&["audit", "step.toml"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    for expected in [
        "may connect to http://127.0.0.1:8080/hooks/ (POST only)",
        "network-with-confidential-data",
        "NOT approved: no approvals",
        "requests",
    ] {
        assert!(
            out.stdout.contains(expected),
            "missing {expected:?}:\n{}",
            out.stdout
        );
    }
    assert_eq!(
        ws.cordon(&["approve", "step.toml", "--key", "keys/alice.key"], &[])
            .code,
        0
    );
    let out = ws.cordon(&["audit", "step.toml"], &[]);
    assert!(
        out.stdout.contains("approved by reviewer key"),
        "{}",
        out.stdout
    );

    // Without the grant, the component's wasi:http imports are denied.
    let manifest = std::fs::read_to_string(ws.path("step.toml")).unwrap();
    let bare = manifest[..manifest.find("[network]").unwrap()].to_string();
    ws.write("bare.toml", bare);
    let (code, v) = inspect(&ws, &["http-probe.wasm", "--manifest", "bare.toml"]);
    assert_eq!(code, 0, "{v}");
    let denied = v.to_string();
    assert!(
        denied.contains("the manifest has no `[network]` grant"),
        "{denied}"
    );
}

/// The input document policy reads is a public contract (docs/policy.md,
/// "The input document"): every key of the example pipeline's steps, plus
/// a step with network grants and a secret bound to hosts, compared with
/// `tests/golden/policy-input.json`.
#[test]
fn the_policy_input_of_the_example_pipeline_matches_the_golden_file() {
    let ws = Workspace::new();
    crate::pipelines::example_pipeline(&ws);
    let mut digests: Vec<(String, String)> = STEPS
        .iter()
        .map(|s| {
            let text = std::fs::read_to_string(ws.path(&format!("steps/{s}.toml"))).unwrap();
            (s.to_string(), pinned_digest(&text))
        })
        .collect();
    let plain = std::fs::read(PLAIN).unwrap();
    ws.write("components/publish.wasm", &plain);
    let publish = format!("sha256:{}", sha256_hex(&plain));
    digests.push(("publish".into(), publish.clone()));
    let pipeline = std::fs::read_to_string(ws.path("pipeline.toml")).unwrap();
    ws.write(
        "pipeline.toml",
        format!(
            "{pipeline}\n[[step]]\nneeds = [\"sign\"]\ninline = \"\"\"\n\
             [step]\nname = \"publish\"\ncomponent = \"components/publish.wasm\"\n\
             digest = \"{publish}\"\nargs = [\"--to\", \"registry\"]\n\n\
             [network]\nallow = [\n  \"https://registry.example.com/v2/\",\n  \
             {{ url = \"http://127.0.0.1:8080/hooks/\", methods = [\"POST\"] }},\n]\n\n\
             [[secret]]\nname = \"registry-token\"\nuses = [\"http-header\"]\n\
             hosts = [\"registry.example.com\"]\n\n\
             [limits]\nfuel = 1000\nrequests = 3\n\"\"\"\n"
        ),
    );
    let out = ws.cordon(
        &["check", "pipeline.toml", "--env", "dev", "--format", "json"],
        &[],
    );
    let mut report = json(&out);
    // A manifest's digest changes with every pinned rebuild of a step.
    for step in report["input"]["steps"].as_array_mut().unwrap() {
        let sha = &mut step["manifest"]["sha256"];
        let hex = sha.as_str().unwrap();
        assert!(
            hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
            "{hex}"
        );
        *sha = "@MANIFEST-SHA256@".into();
    }
    let input = serde_json::to_string_pretty(&report["input"]).unwrap() + "\n";
    let root = ws.root().canonicalize().unwrap().display().to_string();
    let failure = golden(
        "policy-input.json",
        &stable(&input, &digests).replace(&root, "$WORKSPACE"),
    );
    assert!(failure.is_none(), "{}", failure.unwrap());
}
