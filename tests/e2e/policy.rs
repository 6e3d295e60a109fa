//! Policy as code: the default pack, user rules, `cordon check` and its
//! formats, approvals, and break-glass — every refusal before a step runs.

use crate::harness::*;
use cordon_test_artifacts::{PLAIN, PROBE};

const LIMITS: &str =
    "[limits]\nfuel = 1_000_000_000\nmemory = \"64MiB\"\ntimeout = \"30s\"\noutput = \"1MiB\"\n";

/// A workspace with a protected `prod` environment that trusts reviewer
/// `alice`, signs its records, and has `extra` in its policy table.
fn protected(ws: &Workspace, extra: &str) {
    let out = ws.cordon(&["key", "reviewer", "alice", "--dir", "keys"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    ws.write(
        "cordon.toml",
        format!(
            "[env.dev]\n\n[env.prod]\nprotected = true\n\n[env.prod.policy]\nreviewers = [\"keys/alice.pub\"]\n{extra}\n"
        ),
    );
    let out = ws.cordon(&["key", "generate", "--env", "prod"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
}

fn check(ws: &Workspace, env: &str) -> Output {
    ws.cordon(&["check", "step.toml", "--env", env], &[])
}

#[test]
fn a_protected_environment_refuses_an_unapproved_step_with_default_limits() {
    let ws = Workspace::new();
    ws.step(PLAIN, &[], "");
    protected(&ws, "");
    // dev is not protected: clean.
    let out = check(&ws, "dev");
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("no violations"), "{}", out.stdout);

    let out = check(&ws, "prod");
    assert_eq!(out.code, 2, "{out:?}");
    for expected in [
        "violation: [protected-approval] step `plain`",
        "no approvals",
        "fix: a reviewer whose key is in [env.prod.policy] reviewers runs `cordon approve step.toml --key REVIEWER.key`",
        "violation: [protected-explicit-limits] step `plain`: limit `fuel` is not set",
        "fix: add `timeout = ...` under [limits] in step.toml",
        "why: ",
    ] {
        assert!(
            out.stdout.contains(expected),
            "missing {expected:?}:\n{}",
            out.stdout
        );
    }
    // `run` checks first and runs nothing.
    let out = ws.cordon(&["run", "step.toml", "--env", "prod"], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("policy refused the run"),
        "{}",
        out.stderr
    );
    assert!(ws.records().is_empty());
}

#[test]
fn an_approval_lets_the_step_run_until_the_manifest_or_component_changes() {
    let ws = Workspace::new();
    ws.step(PLAIN, &[], LIMITS);
    protected(&ws, "");
    let out = ws.cordon(&["approve", "step.toml", "--key", "keys/alice.key"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(ws.path("step.approvals.json").is_file());
    assert_eq!(check(&ws, "prod").code, 0);

    let out = ws.cordon(&["run", "step.toml", "--env", "prod"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    let rec = ws.record();
    assert_eq!(rec["policy"]["decision"], "allow");
    let files = rec["policy"]["files"].as_array().unwrap();
    assert_eq!(files[0]["path"], "builtin:cordon/default.rego");
    assert_eq!(files[0]["sha256"].as_str().unwrap().len(), 64);

    // An edit to the manifest voids the approval.
    let manifest = std::fs::read_to_string(ws.path("step.toml")).unwrap();
    ws.write(
        "step.toml",
        manifest.replace("args = []", "args = [\"--x\"]"),
    );
    let out = check(&ws, "prod");
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stdout
            .contains("stale: the manifest changed after it was approved"),
        "{}",
        out.stdout
    );

    // So does a rebuilt component, once pinned.
    ws.write("step.toml", &manifest);
    assert_eq!(check(&ws, "prod").code, 0);
    std::fs::copy(PROBE, ws.path("plain.wasm")).unwrap();
    assert_eq!(ws.cordon(&["pin", "step.toml"], &[]).code, 0);
    let out = check(&ws, "prod");
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stdout.contains("stale: the manifest changed"),
        "{}",
        out.stdout
    );
}

#[test]
fn an_approval_by_an_untrusted_key_does_not_count() {
    let ws = Workspace::new();
    ws.step(PLAIN, &[], LIMITS);
    protected(&ws, "");
    assert_eq!(
        ws.cordon(&["key", "reviewer", "mallory", "--dir", "other"], &[])
            .code,
        0
    );
    let out = ws.cordon(&["approve", "step.toml", "--key", "other/mallory.key"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = check(&ws, "prod");
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stdout
            .contains("not a trusted reviewer of this environment"),
        "{}",
        out.stdout
    );
}

fn break_glass(ws: &Workspace, why: &str) -> Output {
    ws.cordon(
        &["run", "step.toml", "--env", "prod", "--break-glass", why],
        &[],
    )
}

#[test]
fn break_glass_runs_only_where_allowed_with_a_justification_and_is_recorded() {
    let ws = Workspace::new();
    ws.step(PLAIN, &[], "");
    protected(&ws, "");
    // Not allowed in this environment.
    let out = break_glass(&ws, "outage 12");
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("does not allow break-glass"),
        "{}",
        out.stderr
    );
    assert!(ws.records().is_empty());

    let config = std::fs::read_to_string(ws.path("cordon.toml")).unwrap();
    ws.write(
        "cordon.toml",
        config.replace(
            "[env.prod.policy]\n",
            "[env.prod.policy]\nbreak-glass = true\n",
        ),
    );
    // Allowed, but a justification is required.
    let out = break_glass(&ws, "  ");
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("needs a justification"),
        "{}",
        out.stderr
    );
    assert!(ws.records().is_empty());

    let out = break_glass(&ws, "outage 12: hotfix");
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("BREAK-GLASS: running despite"),
        "{}",
        out.stderr
    );
    let rec = ws.record();
    assert_eq!(rec["policy"]["decision"], "break-glass");
    assert_eq!(rec["policy"]["justification"], "outage 12: hotfix");
    let overridden: Vec<&str> = rec["policy"]["overridden"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["rule"].as_str().unwrap())
        .collect();
    assert!(overridden.contains(&"protected-approval"), "{overridden:?}");
    // The signed statement carries the decision too.
    let listed = ws.cordon(&["records", "--break-glass"], &[]);
    assert_eq!(listed.code, 0, "{listed:?}");
    assert!(
        listed.stdout.contains("outage 12: hotfix"),
        "{}",
        listed.stdout
    );
    assert!(listed.stdout.contains(rec["run_id"].as_str().unwrap()));
}

#[test]
fn user_rules_apply_and_a_default_rule_is_disabled_only_by_name_visibly() {
    let ws = Workspace::new();
    ws.step(PLAIN, &["--verbose"], "");
    ws.write(
        "policy/org.rego",
        "package org.rules\n\ndeny contains v if {\n  some s in input.steps\n  \"--verbose\" in s.args\n  v := {\"rule\": \"no-verbose\", \"step\": s.name, \"message\": \"verbose output may leak data\", \"fix\": \"drop --verbose\"}\n}\n",
    );
    ws.write(
        "cordon.toml",
        "[env.dev.policy]\nfiles = [\"policy/org.rego\"]\n",
    );
    let out = check(&ws, "dev");
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stdout
            .contains("violation: [no-verbose] step `plain`: verbose output may leak data"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("rule from: "), "{}", out.stdout);

    // Disabling a default rule is by name and is said on every check.
    ws.step(PLAIN, &[], "");
    ws.write(
        "cordon.toml",
        "[env.dev]\nprotected = true\n[env.dev.records]\n[env.dev.policy]\ndisable = [\"protected-explicit-limits\", \"protected-approval\"]\n",
    );
    let out = check(&ws, "dev");
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("default rule `protected-approval` is disabled for environment `dev` (cordon.toml line 5)"),
        "{}",
        out.stdout
    );
    // A name that is no default rule is a configuration error.
    ws.write(
        "cordon.toml",
        "[env.dev.policy]\ndisable = [\"everything\"]\n",
    );
    let out = check(&ws, "dev");
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains(
            "cordon.toml:2:12: environment `dev` disables `everything`, which is not a default rule"
        ),
        "{}",
        out.stderr
    );
}

#[test]
fn a_malformed_rego_file_is_a_clear_error_with_its_line() {
    let ws = Workspace::new();
    ws.step(PLAIN, &[], "");
    ws.write(
        "policy/bad.rego",
        "package bad\n\ndeny contains v if {\n  v := \n}\n",
    );
    ws.write(
        "cordon.toml",
        "[env.dev.policy]\nfiles = [\"policy/bad.rego\"]\n",
    );
    let before = ws.cordon(&["run", "step.toml"], &[]);
    assert_eq!(before.code, 2, "{before:?}");
    assert!(
        before.stderr.contains("policy/bad.rego:4:"),
        "{}",
        before.stderr
    );
    assert!(ws.records().is_empty());
}

#[test]
fn check_speaks_json_and_sarif_2_1_0() {
    let ws = Workspace::new();
    ws.step(PLAIN, &[], "");
    protected(&ws, "");
    let out = ws.cordon(
        &["check", "step.toml", "--env", "prod", "--format", "json"],
        &[],
    );
    assert_eq!(out.code, 2, "{out:?}");
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["passed"], false);
    assert_eq!(v["input"]["version"], 1);
    assert_eq!(v["input"]["environment"]["protected"], true);
    assert_eq!(v["input"]["steps"][0]["approval"]["approved"], false);

    let out = ws.cordon(
        &["check", "step.toml", "--env", "prod", "--format", "sarif"],
        &[],
    );
    assert_eq!(out.code, 2, "{out:?}");
    let sarif: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    assert!(results.iter().any(|r| r["ruleId"] == "protected-approval"));
    assert_eq!(
        results[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "step.toml"
    );
    validate_sarif(&ws.write("out.sarif", &out.stdout));
}

/// `sarif-multitool validate` (npm `@microsoft/sarif-multitool-linux`,
/// which ./test.sh unpacks into target/tools/sarif-multitool) over `file`,
/// with the default rules and with `--rule-kind Gh` (what GitHub code
/// scanning requires): every error or warning it reports, as
/// `rule: arguments`.
fn multitool_findings(ws: &Workspace, file: &std::path::Path) -> Vec<String> {
    let tool = std::env::var_os("CORDON_SARIF_MULTITOOL")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../target/tools/sarif-multitool/Sarif.Multitool")
        });
    assert!(
        tool.is_file(),
        "sarif-multitool is missing at {}: run ./test.sh, which unpacks it there",
        tool.display()
    );
    let mut findings = Vec::new();
    for (i, kind) in [None, Some("Gh")].into_iter().enumerate() {
        let log = ws.path(&format!("validation-{i}.sarif"));
        let mut cmd = std::process::Command::new(&tool);
        cmd.arg("validate").arg(file).arg("-o").arg(&log);
        if let Some(k) = kind {
            cmd.args(["--rule-kind", k]);
        }
        cmd.args(["--level", "Error", "Warning"])
            .env("DOTNET_SYSTEM_GLOBALIZATION_INVARIANT", "1");
        let out = cmd.output().expect("sarif-multitool runs");
        assert!(log.is_file(), "{out:?}");
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&log).unwrap()).unwrap();
        for r in v["runs"][0]["results"].as_array().into_iter().flatten() {
            findings.push(format!(
                "{:?} {}: {}",
                kind,
                r["ruleId"].as_str().unwrap_or("?"),
                r["message"]["arguments"]
            ));
        }
    }
    findings
}

#[test]
fn sarif_passes_sarif_multitool_for_github_and_points_at_the_offending_key() {
    let ws = Workspace::new();
    ws.step(
        PLAIN,
        &[],
        "[[mount]]\nguest = \"/data\"\nhost = \"data\"\naccess = \"read-write\"\npurpose = \"the data\"\n",
    );
    std::fs::create_dir_all(ws.path("data")).unwrap();
    protected(&ws, "");
    let out = ws.cordon(
        &["check", "step.toml", "--env", "prod", "--format", "sarif"],
        &[],
    );
    assert_eq!(out.code, 2, "{out:?}");
    let file = ws.write("check.sarif", &out.stdout);
    let findings = multitool_findings(&ws, &file);
    assert!(findings.is_empty(), "{findings:#?}");
    let sarif: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let run = &sarif["runs"][0];
    assert_eq!(run["automationDetails"]["id"], "cordon/check/prod/");
    assert!(run["tool"]["driver"]["fullName"].is_string());
    for rule in run["tool"]["driver"]["rules"].as_array().unwrap() {
        assert_ne!(rule["name"], rule["id"]);
        assert!(rule["help"]["text"].is_string() && rule["help"]["markdown"].is_string());
    }
    // The read-write violation points at the mount's `host` key: line 10
    // of step.toml (the [step] table takes the first six lines).
    let rw = run["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ruleId"] == "protected-read-write")
        .expect("the read-write mount is refused");
    let toml = std::fs::read_to_string(ws.path("step.toml")).unwrap();
    let line = toml
        .lines()
        .position(|l| l.starts_with("host = \"data\""))
        .unwrap()
        + 1;
    assert_eq!(
        rw["locations"][0]["physicalLocation"]["region"]["startLine"], line,
        "{rw}"
    );
    assert_eq!(rw["properties"]["mount"], "/data");
}

#[test]
fn a_manifest_error_is_a_sarif_result_at_its_line_and_exit_code_stays_2() {
    let ws = Workspace::new();
    ws.write("step.toml", "[step]\nname = \"x\"\ncomponent = 3\n");
    let out = ws.cordon(&["check", "step.toml", "--format", "sarif"], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("error: step.toml:"), "{}", out.stderr);
    let sarif: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("no SARIF on stdout ({e}): {out:?}"));
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    assert!(!results.is_empty());
    assert!(results.iter().all(|r| r["ruleId"] == "manifest-error"));
    assert_eq!(
        results[0]["locations"][0]["physicalLocation"]["region"]["startLine"], 3,
        "{results:?}"
    );
    let file = ws.write("errors.sarif", &out.stdout);
    validate_sarif(&file);
    let findings = multitool_findings(&ws, &file);
    assert!(findings.is_empty(), "{findings:#?}");
}

/// Validates `file` against the SARIF 2.1.0 JSON schema with Python's
/// `jsonschema`. `.ci/run` fetches the schema (from the npm package
/// `@microsoft/sarif-multitool-linux`) into `target/sarif-2.1.0.json`.
fn validate_sarif(file: &std::path::Path) {
    let schema = std::env::var_os("CORDON_SARIF_SCHEMA")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/sarif-2.1.0.json")
        });
    assert!(
        schema.is_file(),
        "the SARIF 2.1.0 schema is missing at {}: run .ci/run, or `npm pack @microsoft/sarif-multitool-linux` and extract package/sarif-2.1.0.json there",
        schema.display()
    );
    validate_json(&schema, file);
}

/// The rules `cordon check --format json` reports for `file` in `env`.
fn rules_violated(ws: &Workspace, file: &str, env: &str) -> Vec<String> {
    let out = ws.cordon(&["check", file, "--env", env, "--format", "json"], &[]);
    assert!(out.code == 0 || out.code == 2, "{out:?}");
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["passed"], out.code == 0, "{v}");
    let mut rules: Vec<String> = v["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["rule"].as_str().unwrap().to_string())
        .collect();
    rules.dedup();
    rules
}

/// Each default rule end to end, through the real binary: a manifest that
/// breaks it is refused with that rule, and the nearest manifest that does
/// not break it passes it. (`mount-purpose` cannot be reached from a
/// manifest: an empty purpose is a manifest error, tests/ui; the rule backs
/// that check up for plans built by other tools.)
#[test]
fn every_default_rule_refuses_what_breaks_it_and_passes_what_does_not() {
    let ws = Workspace::new();
    ws.write("restricted/data.csv", "id\n1\n");
    ws.write("shared/state.txt", "0");
    ws.write("ok/data.csv", "id\n1\n");
    ws.write(
        "cordon.toml",
        "[env.dev]\n\n[env.prod]\nprotected = true\n\n[env.ci]\nprotected = true\n\n[env.ci.secrets]\nprovider = \"env\"\n",
    );
    let restricted = "[[mount]]\nguest = \"/in\"\nhost = \"restricted\"\naccess = \"read\"\npurpose = \"patient rows\"\nclassification = \"restricted\"\n\n";
    let write = |name: &str, rest: &str| {
        let digest = format!(
            "sha256:{}",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
                std::fs::read(PLAIN).unwrap()
            ))
        );
        std::fs::copy(PLAIN, ws.path("plain.wasm")).unwrap();
        ws.write(
            &format!("{name}.toml"),
            format!(
                "[step]\nname = \"{name}\"\ncomponent = \"plain.wasm\"\ndigest = \"{digest}\"\n\n{rest}"
            ),
        );
    };
    let has = |file: &str, env: &str, rule: &str| {
        rules_violated(&ws, &format!("{file}.toml"), env)
            .iter()
            .any(|r| r == rule)
    };

    // restricted-isolation: restricted data and the network...
    write(
        "exfil",
        &format!("{restricted}[network]\nallow = [\"https://api.example.com/\"]\n"),
    );
    assert!(has("exfil", "dev", "restricted-isolation"));
    write("isolated", restricted);
    assert!(!has("isolated", "dev", "restricted-isolation"));
    // ...or restricted data and a read-write mount.
    write(
        "inplace",
        &format!(
            "{restricted}[[mount]]\nguest = \"/state\"\nhost = \"shared\"\naccess = \"read-write\"\npurpose = \"a counter\"\n"
        ),
    );
    assert!(has("inplace", "dev", "restricted-isolation"));

    // protected-read-write: fine in dev, refused in a protected environment.
    write(
        "counter",
        "[[mount]]\nguest = \"/state\"\nhost = \"shared\"\naccess = \"read-write\"\npurpose = \"a counter\"\n",
    );
    assert!(!has("counter", "dev", "protected-read-write"));
    assert!(has("counter", "prod", "protected-read-write"));
    write(
        "reader",
        "[[mount]]\nguest = \"/in\"\nhost = \"ok\"\naccess = \"read\"\npurpose = \"rows\"\n",
    );
    assert!(!has("reader", "prod", "protected-read-write"));

    // protected-reveal: a revealed secret in a protected environment.
    write(
        "reveals",
        "[[secret]]\nname = \"token\"\nuses = [\"reveal\"]\n",
    );
    assert!(!has("reveals", "dev", "protected-reveal"));
    assert!(has("reveals", "prod", "protected-reveal"));
    write("hmacs", "[[secret]]\nname = \"token\"\nuses = [\"hmac\"]\n");
    assert!(!has("hmacs", "prod", "protected-reveal"));

    // protected-reveal-egress: a revealed secret and a way out (a write
    // mount or the network) in a protected environment.
    assert!(!has("reveals", "prod", "protected-reveal-egress"));
    write(
        "reveals-and-writes",
        "[[secret]]\nname = \"token\"\nuses = [\"reveal\"]\n\n[[mount]]\nguest = \"/out\"\nhost = \"out\"\naccess = \"write\"\npurpose = \"a report\"\n",
    );
    assert!(!has("reveals-and-writes", "dev", "protected-reveal-egress"));
    assert!(has("reveals-and-writes", "prod", "protected-reveal-egress"));

    // protected-env-provider: secrets from CI variables in a protected
    // environment; the same grant from the local store passes it.
    assert!(has("hmacs", "ci", "protected-env-provider"));
    assert!(!has("hmacs", "prod", "protected-env-provider"));
}

/// The sealed decisions in the workspace's state directory.
fn cached_decisions(ws: &Workspace) -> Vec<std::path::PathBuf> {
    let dir = ws.path(".cordon/cache/policy");
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn a_cached_decision_is_reused_only_sealed_and_for_the_same_policy() {
    let ws = Workspace::new();
    ws.step(PLAIN, &[], "");
    ws.write(
        "policy/org.rego",
        "package org.rules\n\ndeny contains v if {\n  some s in input.steps\n  \"--verbose\" in s.args\n  v := {\"rule\": \"no-verbose\", \"step\": s.name, \"message\": \"verbose\"}\n}\n",
    );
    ws.write(
        "cordon.toml",
        "[env.dev.policy]\nfiles = [\"policy/org.rego\"]\n",
    );
    // The first run creates the state directory; the second remembers its
    // decision, and the third finds it (nothing new is written).
    for _ in 0..3 {
        let out = ws.cordon(&["run", "step.toml", "--no-cache"], &[]);
        assert_eq!(out.code, 0, "{out:?}");
    }
    let allow = cached_decisions(&ws);
    assert_eq!(allow.len(), 1, "one decision: {allow:?}");
    let sealed_allow = std::fs::read(&allow[0]).unwrap();
    // A run that finds the decision uses it and stores nothing: the entry
    // is the same file (storing replaces it through a temporary, a new
    // inode), so the decision came from the cache.
    use std::os::unix::fs::MetadataExt;
    let inode = |p: &std::path::Path| std::fs::metadata(p).unwrap().ino();
    let before = inode(&allow[0]);
    let out = ws.cordon(&["run", "step.toml", "--no-cache"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(inode(&allow[0]), before, "the cached decision was used");
    // The record names the policy files whether or not the decision was
    // evaluated in this process.
    let records = ws.records();
    assert_eq!(records.len(), 4);
    for rec in &records {
        assert_eq!(rec["policy"]["decision"], "allow");
        assert_eq!(rec["policy"]["files"], records[0]["policy"]["files"]);
        assert_eq!(rec["policy"]["files"].as_array().unwrap().len(), 2);
    }

    // A damaged entry is ignored: policy is evaluated again (same result)
    // and the entry is replaced by a sealed one.
    std::fs::write(&allow[0], b"{\"key\": \"forged\", \"violations\": []}").unwrap();
    let out = ws.cordon(&["run", "step.toml", "--no-cache"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(std::fs::read(&allow[0]).unwrap(), sealed_allow);

    // An edited policy file is another decision: refused, and remembered
    // under another name.
    ws.write(
        "policy/org.rego",
        "package org.rules\n\ndeny contains \"nothing runs today\" if true\n",
    );
    let out = ws.cordon(&["run", "step.toml", "--no-cache"], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains("nothing runs today"),
        "{out:?}"
    );
    let both = cached_decisions(&ws);
    assert_eq!(both.len(), 2, "{both:?}");
    let refusal = both.iter().find(|p| **p != allow[0]).unwrap();

    // The sealed allow copied over the refusal's entry does not open under
    // that name: still refused, the refusal evaluated again.
    std::fs::write(refusal, &sealed_allow).unwrap();
    let out = ws.cordon(&["run", "step.toml", "--no-cache"], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains("nothing runs today"),
        "{out:?}"
    );
    assert_ne!(std::fs::read(refusal).unwrap(), sealed_allow);

    // A cached refusal refuses too (the entry is now the refusal's own).
    let out = ws.cordon(&["run", "step.toml", "--no-cache"], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains("nothing runs today"),
        "{out:?}"
    );
}
