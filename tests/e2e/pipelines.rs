//! Pipelines: DAG inference and its errors, parallel runs, failure
//! isolation, the action cache, reports, restore, and the example pipeline.

use crate::harness::*;
use cordon_test_artifacts::{CSV_VALIDATE, PROBE, PSEUDONYMIZE, SIGN_MODEL, TRAIN, TRAIN_EVALUATE};
use std::path::Path;

/// Writes `<name>.toml`: the probe as step `name` with `args` and `rest`.
fn probe_step(ws: &Workspace, name: &str, args: &[&str], rest: &str) {
    let digest = ws.component(PROBE, "probe.wasm");
    let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    ws.write(
        &format!("{name}.toml"),
        format!("[step]\nname = \"{name}\"\ncomponent = \"probe.wasm\"\ndigest = \"{digest}\"\nargs = [{}]\n\n{rest}", args.join(", ")),
    );
}

fn pipeline(ws: &Workspace, entries: &[&str]) {
    let mut text = String::from("[pipeline]\nname = \"test\"\n\n");
    for e in entries {
        text.push_str(&format!("[[step]]\n{e}\n\n"));
    }
    ws.write("pipeline.toml", text);
}

/// A `[[step]]` entry: the probe (pinned to `digest`) written inline as
/// step `name` with `args`, and `rest` after them (mounts, limits).
fn inline_probe(digest: &str, name: &str, args: &[&str], rest: &str) -> String {
    let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    format!(
        "inline = \"\"\"\n[step]\nname = \"{name}\"\ncomponent = \"probe.wasm\"\n\
         digest = \"{digest}\"\nargs = [{}]\n\n{rest}\"\"\"",
        args.join(", ")
    )
}

/// Writes `pipeline.toml` with these `[[step]]` entries.
fn pipeline_of(ws: &Workspace, entries: &[String]) {
    pipeline(ws, &entries.iter().map(String::as_str).collect::<Vec<_>>());
}

fn steps_of(ws: &Workspace, report: &str) -> Vec<serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ws.path(report)).unwrap()).unwrap();
    v["steps"].as_array().unwrap().clone()
}

fn status(steps: &[serde_json::Value], name: &str) -> String {
    steps.iter().find(|s| s["name"] == name).unwrap()["status"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `a` writes `a-out`; `b` reads it and writes `b-out`. Listed in reverse
/// order: only lineage can put `a` first.
fn two_step_chain(ws: &Workspace, a_text: &str) {
    probe_step(
        ws,
        "b",
        &["read", "/in/x.txt", "--", "write", "/out/y.txt", "copied"],
        &(mount("/in", "a-out", "read") + &mount("/out", "b-out", "write")),
    );
    probe_step(
        ws,
        "a",
        &["write", "/out/x.txt", a_text],
        &mount("/out", "a-out", "write"),
    );
    pipeline(ws, &["manifest = \"b.toml\"", "manifest = \"a.toml\""]);
}

#[test]
fn lineage_orders_steps_and_an_unchanged_rerun_is_served_from_the_cache() {
    let ws = Workspace::new();
    two_step_chain(&ws, "hello");
    let plan = ws.cordon(&["plan", "pipeline.toml"], &[]);
    assert_eq!(plan.code, 0, "{plan:?}");
    assert!(
        plan.stdout.contains("after a — reads /in"),
        "{}",
        plan.stdout
    );

    let first = ws.cordon(&["run", "pipeline.toml", "--report", "json=r1.json"], &[]);
    assert_eq!(first.code, 0, "{first:?}");
    assert!(
        first.stdout.contains("[b] read: ok 5 bytes: hello"),
        "b ran after a: {}",
        first.stdout
    );
    let s = steps_of(&ws, "r1.json");
    assert_eq!(
        (status(&s, "a"), status(&s, "b")),
        ("succeeded".into(), "succeeded".into())
    );

    let second = ws.cordon(&["run", "pipeline.toml", "--report", "json=r2.json"], &[]);
    assert_eq!(second.code, 0, "{second:?}");
    let s = steps_of(&ws, "r2.json");
    assert_eq!(
        (status(&s, "a"), status(&s, "b")),
        ("cached".into(), "cached".into())
    );
    let hit = ws.latest_record("b");
    assert_eq!(hit["cache"]["hit"], true);
    assert!(hit["cache"]["source_run"].is_string());
    assert_eq!(
        std::fs::read_to_string(ws.path("b-out/y.txt")).unwrap(),
        "copied"
    );

    // Any change to a key part misses: here an argument of `a`, and so
    // `b`'s input tree.
    two_step_chain(&ws, "changed");
    let third = ws.cordon(&["run", "pipeline.toml", "--report", "json=r3.json"], &[]);
    assert_eq!(third.code, 0, "{third:?}");
    let s = steps_of(&ws, "r3.json");
    assert_eq!(
        (status(&s, "a"), status(&s, "b")),
        ("succeeded".into(), "succeeded".into())
    );

    // --no-cache forces a run.
    let fourth = ws.cordon(
        &[
            "run",
            "pipeline.toml",
            "--no-cache",
            "--report",
            "json=r4.json",
        ],
        &[],
    );
    assert_eq!(
        status(&steps_of(&ws, "r4.json"), "a"),
        "succeeded",
        "{fourth:?}"
    );
}

#[test]
fn a_cache_entry_whose_input_byte_changed_is_not_used() {
    let ws = Workspace::new();
    ws.write("data/in.txt", "one");
    probe_step(
        &ws,
        "c",
        &["read", "/in/in.txt", "--", "write", "/out/o.txt", "x"],
        &(mount("/in", "data", "read") + &mount("/out", "o", "write")),
    );
    pipeline(&ws, &["manifest = \"c.toml\""]);
    assert_eq!(ws.cordon(&["run", "pipeline.toml"], &[]).code, 0);
    ws.write("data/in.txt", "onf");
    let out = ws.cordon(&["run", "pipeline.toml", "--report", "json=r.json"], &[]);
    assert_eq!(
        status(&steps_of(&ws, "r.json"), "c"),
        "succeeded",
        "{out:?}"
    );
}

#[test]
fn independent_steps_run_side_by_side_and_jobs_1_serialises_them() {
    let ws = Workspace::new();
    probe_step(&ws, "left", &["sleep", "1"], "");
    probe_step(&ws, "right", &["sleep", "1"], "");
    pipeline(
        &ws,
        &[
            "manifest = \"left.toml\"\ncache = false",
            "manifest = \"right.toml\"\ncache = false",
        ],
    );
    let intervals = |ws: &Workspace| {
        let recs = ws.records();
        let n = recs.len();
        let span = |r: &serde_json::Value| {
            (
                r["started_at"].as_str().unwrap().to_string(),
                r["finished_at"].as_str().unwrap().to_string(),
            )
        };
        (span(&recs[n - 2]), span(&recs[n - 1]))
    };
    assert_eq!(
        ws.cordon(&["run", "pipeline.toml", "--jobs", "2"], &[])
            .code,
        0
    );
    let ((s1, e1), (s2, e2)) = intervals(&ws);
    assert!(
        s1 < e2 && s2 < e1,
        "with two jobs the runs overlap: {s1}..{e1} and {s2}..{e2}"
    );
    assert_eq!(
        ws.cordon(&["run", "pipeline.toml", "--jobs", "1"], &[])
            .code,
        0
    );
    let ((s1, e1), (s2, e2)) = intervals(&ws);
    assert!(
        e1 <= s2 || e2 <= s1,
        "with one job they do not: {s1}..{e1} and {s2}..{e2}"
    );
}

#[test]
fn a_failed_step_stops_its_dependents_but_not_independent_branches() {
    let ws = Workspace::new();
    probe_step(
        &ws,
        "bad",
        &[
            "write",
            "/out/x",
            "partial",
            "--",
            "eprint",
            "AUC 0.771 is below the required 0.99",
            "--",
            "exit",
            "1",
        ],
        &mount("/out", "bad-out", "write"),
    );
    probe_step(
        &ws,
        "after-bad",
        &["read", "/in/x"],
        &(mount("/in", "bad-out", "read") + &mount("/out", "after-out", "write")),
    );
    probe_step(
        &ws,
        "ok",
        &["write", "/out/fine", "yes"],
        &mount("/out", "ok-out", "write"),
    );
    pipeline(
        &ws,
        &[
            "manifest = \"bad.toml\"",
            "manifest = \"after-bad.toml\"",
            "manifest = \"ok.toml\"",
        ],
    );
    let out = ws.cordon(
        &[
            "run",
            "pipeline.toml",
            "--report",
            "junit=junit.xml",
            "--report",
            "json=r.json",
        ],
        &[],
    );
    assert_eq!(out.code, 1, "{out:?}");
    let s = steps_of(&ws, "r.json");
    assert_eq!(status(&s, "bad"), "failed");
    assert_eq!(status(&s, "after-bad"), "skipped");
    assert_eq!(status(&s, "ok"), "succeeded");
    assert!(!ws.path("bad-out").exists(), "nothing partial published");
    assert_eq!(
        std::fs::read_to_string(ws.path("ok-out/fine")).unwrap(),
        "yes"
    );

    // The JUnit report: one case per step, read by junitparser (what CI
    // test reporters are built on), with only the attributes junit-10.xsd
    // (Jenkins xUnit) allows where it allows them, and a failure that says
    // why in the step's own (redacted) words.
    let check = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, junitparser, xml.etree.ElementTree as E\n\
             x = junitparser.JUnitXml.fromfile(sys.argv[1])\n\
             suites = list(x)\n\
             cases = [c for s in suites for c in s]\n\
             assert len(cases) == 3, cases\n\
             failed = [c for c in cases if any(isinstance(r, junitparser.Failure) for r in c.result)]\n\
             assert len(failed) == 1, failed\n\
             text = failed[0].result[0].text or ''\n\
             assert 'exited with code 1' in text and 'AUC 0.771 is below the required 0.99' in text, text\n\
             assert 'AUC 0.771' in (failed[0].system_err or ''), failed[0].system_err\n\
             r = E.parse(sys.argv[1]).getroot()\n\
             assert set(r.attrib) <= {'name', 'time', 'tests', 'failures', 'errors'}, r.attrib\n\
             s = r.find('testsuite')\n\
             assert s.get('failures') == '1' and s.get('skipped') == '1' and s.get('errors') == '0', s.attrib\n\
             assert {'name', 'tests', 'failures', 'errors'} <= set(s.attrib)\n\
             for c in s.findall('testcase'):\n\
             \x20   assert {ch.tag for ch in c} <= {'skipped', 'error', 'failure', 'system-out', 'system-err'}\n\
             print('ok')",
            ws.path("junit.xml").to_str().unwrap(),
        ])
        .output()
        .expect("python3 runs (./test.sh installs junitparser)");
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    // The JSON report and the pipeline record match their published schemas.
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/schemas");
    validate_json(&docs.join("report.schema.json"), &ws.path("r.json"));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ws.path("r.json")).unwrap()).unwrap();
    assert_eq!(report["schema"], "cordon.report/v1");
    validate_json(
        &docs.join("pipeline-record.schema.json"),
        std::path::Path::new(report["pipeline_record"].as_str().unwrap()),
    );

    // --fail-fast starts nothing after the failure (jobs 1: `ok` comes later).
    let out = ws.cordon(
        &[
            "run",
            "pipeline.toml",
            "--fail-fast",
            "--jobs",
            "1",
            "--report",
            "json=ff.json",
        ],
        &[],
    );
    assert_eq!(out.code, 1);
    assert_eq!(status(&steps_of(&ws, "ff.json"), "ok"), "skipped");
}

#[test]
fn pipeline_errors_are_reported_before_anything_runs() {
    type Setup = Box<dyn Fn(&Workspace)>;
    let cases: Vec<(&str, Setup, &str)> = vec![
        (
            "cycle",
            Box::new(|ws: &Workspace| {
                probe_step(
                    ws,
                    "p",
                    &["list", "/in"],
                    &(mount("/in", "q-out", "read") + &mount("/out", "p-out", "write")),
                );
                probe_step(
                    ws,
                    "q",
                    &["list", "/in"],
                    &(mount("/in", "p-out", "read") + &mount("/out", "q-out", "write")),
                );
                pipeline(ws, &["manifest = \"p.toml\"", "manifest = \"q.toml\""]);
            }),
            "the steps form a cycle",
        ),
        (
            "two writers",
            Box::new(|ws: &Workspace| {
                probe_step(ws, "p", &["list", "/out"], &mount("/out", "same", "write"));
                probe_step(ws, "q", &["list", "/out"], &mount("/out", "same", "write"));
                pipeline(ws, &["manifest = \"p.toml\"", "manifest = \"q.toml\""]);
            }),
            "both write",
        ),
        (
            "unknown needs",
            Box::new(|ws: &Workspace| {
                probe_step(ws, "p", &["list", "/"], "");
                pipeline(ws, &["manifest = \"p.toml\"\nneeds = [\"nobody\"]"]);
            }),
            "needs `nobody`, but no step has that name",
        ),
        (
            "read of nothing",
            Box::new(|ws: &Workspace| {
                probe_step(ws, "p", &["list", "/in"], &mount("/in", "missing", "read"));
                pipeline(ws, &["manifest = \"p.toml\""]);
            }),
            "does not exist",
        ),
        (
            "duplicate names",
            Box::new(|ws: &Workspace| {
                probe_step(ws, "p", &["list", "/"], "");
                pipeline(ws, &["manifest = \"p.toml\"", "manifest = \"p.toml\""]);
            }),
            "two steps are named `p`",
        ),
    ];
    for (what, setup, expected) in cases {
        let ws = Workspace::new();
        setup(&ws);
        let out = ws.cordon(&["run", "pipeline.toml"], &[]);
        assert_eq!(out.code, 2, "{what}: {out:?}");
        assert!(out.stderr.contains(expected), "{what}: {}", out.stderr);
        assert!(
            out.stderr.contains("pipeline.toml") || out.stderr.contains(".toml:"),
            "{what}: names the file: {}",
            out.stderr
        );
        assert!(ws.records().is_empty(), "{what}: nothing ran");
    }
}

#[test]
fn restore_republishes_an_earlier_runs_outputs() {
    let ws = Workspace::new();
    probe_step(
        &ws,
        "gen",
        &["write", "/out/v.txt", "version one"],
        &mount("/out", "out", "write"),
    );
    pipeline(&ws, &["manifest = \"gen.toml\""]);
    assert_eq!(ws.cordon(&["run", "pipeline.toml"], &[]).code, 0);
    let first = ws
        .records()
        .into_iter()
        .find(|r| r["step"] == "gen")
        .unwrap();
    probe_step(
        &ws,
        "gen",
        &["write", "/out/v.txt", "version two"],
        &mount("/out", "out", "write"),
    );
    assert_eq!(ws.cordon(&["run", "pipeline.toml"], &[]).code, 0);
    assert_eq!(
        std::fs::read_to_string(ws.path("out/v.txt")).unwrap(),
        "version two"
    );
    let out = ws.cordon(
        &["restore", "--run", first["run_id"].as_str().unwrap()],
        &[],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        std::fs::read_to_string(ws.path("out/v.txt")).unwrap(),
        "version one"
    );
}

/// The value of both demo secrets of the example pipeline.
pub(crate) const EXAMPLE_SECRET: &str =
    "4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f4f";

/// Sets up `examples/ml-pipeline` in `ws` as `run.sh` does: the workspace
/// and pipeline files, the components pinned, a signing key for `dev` and
/// the demo secrets in its store.
pub(crate) fn example_pipeline(ws: &Workspace) {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/ml-pipeline");
    for f in [
        "cordon.toml",
        "pipeline.toml",
        "data/dev/raw/customers.csv",
        "data/prod/raw/customers.csv",
    ] {
        ws.write(f, std::fs::read(example.join(f)).unwrap());
    }
    // As run.sh does: the dev environment signs its records.
    let key = ws.cordon(&["key", "generate", "--env", "dev", "--if-missing"], &[]);
    assert_eq!(key.code, 0, "{key:?}");
    ws.mkdir("components");
    for (artifact, name) in [
        (CSV_VALIDATE, "csv-validate.wasm"),
        (PSEUDONYMIZE, "pseudonymize.wasm"),
        (TRAIN, "train.wasm"),
        (TRAIN_EVALUATE, "evaluate.wasm"),
        (SIGN_MODEL, "sign-model.wasm"),
    ] {
        std::fs::write(
            ws.path(&format!("components/{name}")),
            std::fs::read(artifact).unwrap(),
        )
        .unwrap();
    }
    for s in ["validate", "pseudonymize", "train", "evaluate", "sign"] {
        let rel = format!("steps/{s}.toml");
        ws.write(&rel, std::fs::read(example.join(&rel)).unwrap());
        let pin = ws.cordon(&["pin", &rel], &[]);
        assert_eq!(pin.code, 0, "{pin:?}");
    }
    // Demo secrets in the embedded store of `dev`, read from stdin.
    for name in ["pseudonym-key", "model-signing-key"] {
        let out = ws.cordon_with_input(
            &[
                "secret",
                "set",
                name,
                "--env",
                "dev",
                "--config",
                "cordon.toml",
            ],
            &[],
            Some(EXAMPLE_SECRET.as_bytes()),
        );
        assert_eq!(out.code, 0, "{out:?}");
    }
}

#[test]
fn the_example_pipeline_runs_end_to_end_and_reruns_from_the_cache() {
    let ws = Workspace::new();
    example_pipeline(&ws);
    let seed = EXAMPLE_SECRET;
    // The example passes policy in dev; prod is protected, and its steps
    // are not approved there.
    let check = ws.cordon(&["check", "pipeline.toml", "--env", "dev"], &[]);
    assert_eq!(check.code, 0, "{check:?}");
    let check = ws.cordon(&["check", "pipeline.toml", "--env", "prod"], &[]);
    assert_eq!(check.code, 2, "{check:?}");
    assert!(
        check
            .stdout
            .contains("violation: [protected-approval] step `train`"),
        "{}",
        check.stdout
    );
    let first = ws.cordon(
        &[
            "run",
            "pipeline.toml",
            "--env",
            "dev",
            "--report",
            "json=r1.json",
        ],
        &[],
    );
    assert_eq!(first.code, 0, "{first:?}");
    let s = steps_of(&ws, "r1.json");
    assert!(s.iter().all(|x| x["status"] == "succeeded"), "{s:?}");
    let metrics: serde_json::Value = serde_json::from_slice(
        &std::fs::read(ws.path("data/dev/evaluation/metrics.json")).unwrap(),
    )
    .unwrap();
    assert!(metrics["auc"].as_f64().unwrap() > 0.6, "{metrics}");
    let pseudo = std::fs::read_to_string(ws.path("data/dev/pseudonymized/customers.csv")).unwrap();
    assert!(
        !pseudo.contains("@example.com"),
        "e-mail addresses were pseudonymized"
    );
    let sigs: serde_json::Value = serde_json::from_slice(
        &std::fs::read(ws.path("data/dev/signature/signatures.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(sigs["files"][0]["file"], "model.json");
    assert!(
        !contains(&ws.state_bytes(), seed.as_bytes()),
        "a secret value reached the state directory"
    );

    let second = ws.cordon(
        &[
            "run",
            "pipeline.toml",
            "--env",
            "dev",
            "--report",
            "json=r2.json",
        ],
        &[],
    );
    assert_eq!(second.code, 0, "{second:?}");
    let s = steps_of(&ws, "r2.json");
    assert!(
        s.iter().all(|x| x["status"] == "cached"),
        "second run is served from the cache: {s:?}"
    );
    // Every record re-executes bit for bit, the secret-using steps too (the
    // values come from the store again); a cache hit re-executes the run
    // that produced its outputs.
    let reexec = ws.cordon(&["verify", "--reexecute"], &[]);
    assert_eq!(reexec.code, 0, "{reexec:?}");
    for step in ["validate", "pseudonymize", "train", "evaluate", "sign"] {
        let lines: Vec<&str> = reexec
            .stderr
            .lines()
            .filter(|l| l.contains(&format!("-{step}-")) && l.contains(": reproducible ("))
            .collect();
        assert_eq!(lines.len(), 2, "{step}: {}", reexec.stderr);
        assert!(
            lines.iter().any(|l| l.contains("(cache hit of ")),
            "{step}: {}",
            reexec.stderr
        );
    }
    // Every envelope of both runs passes outside validation.
    let checked =
        validate_envelopes_with_outside_tools(&ws.path(".cordon/records"), &ws.trusted_key("dev"));
    assert_eq!(checked, 10, "five steps, two runs");
    // The pipeline record links datasets, step records and artifacts.
    let mut pipelines: Vec<_> = std::fs::read_dir(ws.path(".cordon/pipelines"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(pipelines.len(), 2);
    pipelines.sort();
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&pipelines[0]).unwrap()).unwrap();
    assert!(
        !record["datasets"].as_array().unwrap().is_empty(),
        "{record}"
    );
    assert!(
        !record["artifacts"].as_array().unwrap().is_empty(),
        "{record}"
    );
    assert_eq!(record["policy"]["decision"], "allow", "{record}");
}

#[test]
fn ctrl_c_stops_running_steps_and_publishes_nothing_partial() {
    use std::io::{BufRead, BufReader};
    let ws = Workspace::new();
    probe_step(
        &ws,
        "slow",
        &["write", "/out/partial.txt", "half", "--", "sleep", "600"],
        &mount("/out", "slow-out", "write"),
    );
    probe_step(
        &ws,
        "later",
        &["list", "/in"],
        &(mount("/in", "slow-out", "read") + &mount("/out", "later-out", "write")),
    );
    pipeline(
        &ws,
        &["manifest = \"slow.toml\"", "manifest = \"later.toml\""],
    );
    let mut child = std::process::Command::new(CORDON)
        .args(["run", "pipeline.toml", "--report", "json=r.json"])
        .current_dir(ws.root())
        .env("CORDON_SECRETS_HOME", ws.secrets_home())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the step has written its partial output, then interrupt.
    let stdout = child.stdout.take().unwrap();
    for line in BufReader::new(stdout).lines() {
        if line.unwrap().contains("write: ok") {
            break;
        }
    }
    send_signal(child.id(), "-INT");
    let exit = child.wait().unwrap();
    assert_eq!(exit.code(), Some(130), "interrupted runs exit with 130");
    let s = steps_of(&ws, "r.json");
    assert_eq!(status(&s, "slow"), "interrupted");
    assert_eq!(status(&s, "later"), "skipped");
    assert!(!ws.path("slow-out").exists(), "nothing partial published");
    let rec = ws
        .records()
        .into_iter()
        .find(|r| r["step"] == "slow")
        .unwrap();
    assert_eq!(rec["termination"]["kind"], "interrupted");
}

#[test]
fn a_step_may_be_written_inline_and_its_errors_point_into_the_pipeline_file() {
    let ws = Workspace::new();
    probe_step(
        &ws,
        "a",
        &["write", "/out/x.txt", "inline-works"],
        &mount("/out", "a-out", "write"),
    );
    let digest = ws.component(PROBE, "probe.wasm");
    let inline = format!(
        "inline = \"\"\"\n[step]\nname = \"b\"\ncomponent = \"probe.wasm\"\ndigest = \"{digest}\"\nargs = [\"read\", \"/in/x.txt\"]\n\n[[mount]]\nguest = \"/in\"\nhost = \"a-out\"\naccess = \"read\"\npurpose = \"test\"\n\"\"\""
    );
    pipeline(&ws, &[&inline, "manifest = \"a.toml\""]);
    let out = ws.cordon(&["run", "pipeline.toml"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("[b] read: ok 12 bytes: inline-works"),
        "{}",
        out.stdout
    );

    // A mistake inside the inline manifest is reported at its line of the
    // pipeline file; nothing runs.
    let bad = inline.replace("access = \"read\"", "access = \"reed\"");
    pipeline(&ws, &[&bad, "manifest = \"a.toml\""]);
    let text = std::fs::read_to_string(ws.path("pipeline.toml")).unwrap();
    let line = text.lines().position(|l| l.contains("reed")).unwrap() + 1;
    let records_before = ws.records().len();
    let out = ws.cordon(&["run", "pipeline.toml"], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains(&format!("pipeline.toml:{line}:")),
        "expected line {line}: {}",
        out.stderr
    );
    assert_eq!(ws.records().len(), records_before);

    // Both `manifest` and `inline`, or neither, is an error.
    pipeline(&ws, &[&format!("manifest = \"a.toml\"\n{inline}")]);
    let out = ws.cordon(&["plan", "pipeline.toml"], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("exactly one of `manifest`"),
        "{}",
        out.stderr
    );
}

/// A reader that goes away (`cordon run ... 2>&1 | head -1` in a CI
/// script) must not crash the run or hang it: every step still runs and is
/// recorded, and the exit code is the run's.
#[test]
fn a_closed_stderr_and_stdout_neither_crash_nor_hang_a_run() {
    let ws = Workspace::new();
    for name in ["a", "b", "c"] {
        probe_step(
            &ws,
            name,
            &["write", "/out/x.txt", name],
            &mount("/out", &format!("{name}-out"), "write"),
        );
    }
    pipeline(
        &ws,
        &[
            "manifest = \"a.toml\"",
            "manifest = \"b.toml\"",
            "manifest = \"c.toml\"",
        ],
    );
    let mut child = std::process::Command::new(CORDON)
        .args(["run", "pipeline.toml", "--jobs", "2"])
        .current_dir(ws.root())
        .env("CORDON_SECRETS_HOME", ws.secrets_home())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Both pipes are closed before the runner writes a line.
    drop(child.stdout.take());
    drop(child.stderr.take());
    // Not a timing threshold: a hung run never exits, so the test stops
    // waiting after a very generous two minutes and fails.
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > std::time::Duration::from_secs(120) {
            let _ = child.kill();
            panic!("cordon hung after its output pipes were closed");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "{status:?}");
    for name in ["a", "b", "c"] {
        assert_eq!(
            std::fs::read_to_string(ws.path(&format!("{name}-out/x.txt"))).unwrap(),
            name
        );
    }
    assert_eq!(ws.records().len(), 3);
    // The same for a command that only prints.
    let mut plan = std::process::Command::new(CORDON)
        .args(["plan", "pipeline.toml"])
        .current_dir(ws.root())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(plan.stdout.take());
    drop(plan.stderr.take());
    assert_eq!(plan.wait().unwrap().code(), Some(0));
}

/// A committer that falls behind (a slow disk; here a fault point that
/// stalls it for each run it seals) makes the workers wait. Every run
/// waiting to be sealed holds descriptors (its mount lock and its staging
/// directory's lock) and its staged outputs, and trivial steps run faster
/// than they are sealed: when the queue of such runs had no bound, it grew
/// with the pipeline until the runner ran out of descriptors and steps
/// failed. Under a descriptor limit far below what the whole pipeline's
/// runs would hold at once, every step must still succeed.
#[test]
fn a_committer_that_falls_behind_makes_workers_wait_instead_of_exhausting_descriptors() {
    const STEPS: usize = 300;
    let ws = Workspace::new();
    let digest = ws.component(PROBE, "probe.wasm");
    let entries: Vec<String> = (0..STEPS)
        .map(|i| {
            inline_probe(
                &digest,
                &format!("s{i:03}"),
                &["write", "/out/x.txt", &i.to_string()],
                &mount("/out", &format!("out-{i:03}"), "write"),
            )
        })
        .collect();
    pipeline_of(&ws, &entries);
    let (out, _) = ws.cordon_measured(
        &["run", "pipeline.toml", "--jobs", "2", "--no-cache"],
        &[("CORDON_FAULT", "slow-commit")],
        Some((384, 384)),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(ws.records().len(), STEPS, "{}", out.stderr);
    for i in [0, STEPS / 2, STEPS - 1] {
        assert_eq!(
            std::fs::read_to_string(ws.path(&format!("out-{i:03}/x.txt"))).unwrap(),
            i.to_string()
        );
    }
}

/// A pipeline of many steps runs in the pooling allocator's slots, each
/// reused from one step to the next and zeroed in place in between (the
/// first 2 MiB with `memset`, the rest given back to the kernel). A step
/// reads the whole of its linear memory for what the step before it in the
/// same slot left there, below and beyond the part zeroed in place; it must
/// find nothing, though the same scan finds a step's own leftovers. With
/// one job there is one slot, so every step reuses the one before it. A
/// static a step changes starts from its initial value in the next
/// instance. Pooling must change nothing else either: a component not
/// compiled yet runs without it, and a step's memory limit holds in a slot.
#[test]
fn a_pooled_slot_shows_a_step_nothing_of_the_step_before_and_keeps_its_limits() {
    let ws = Workspace::new();
    let digest = ws.component(PROBE, "probe.wasm");
    let step = |name: &str, args: &[&str], rest: &str| inline_probe(&digest, name, args, rest);
    // 512 KiB and 4 MiB of a sequence each, then a scan for it right after.
    let mut entries = Vec::new();
    for (i, words) in ["65536", "524288"].iter().cycle().take(8).enumerate() {
        let seed = (1000 + i).to_string();
        entries.push(step(
            &format!("fill{i}"),
            &["fill-memory", &seed, words],
            "",
        ));
        entries.push(format!(
            "{}\nneeds = [\"fill{i}\"]",
            step(&format!("scan{i}"), &["scan-memory", &seed], "")
        ));
    }
    entries.push(step(
        "own",
        &["fill-memory", "7", "65536", "--", "scan-memory", "7"],
        "",
    ));
    // A static the step changes starts from its initial value in the next
    // instance in the slot.
    entries.push(step("data0", &["bump-static", "--", "bump-static"], ""));
    entries.push(format!(
        "{}\nneeds = [\"data0\"]",
        step("data1", &["bump-static"], "")
    ));
    entries.push(step("hoard", &["alloc"], "[limits]\nmemory = \"64MiB\"\n"));
    pipeline_of(&ws, &entries);
    let cache = ws.path("compile-cache");
    let cache = cache.to_str().unwrap();
    let run = |report: &str| {
        ws.cordon(
            &[
                "-vv",
                "run",
                "pipeline.toml",
                "--jobs",
                "1",
                "--no-cache",
                "--report",
                &format!("json={report}"),
            ],
            &[("CORDON_COMPILE_CACHE", cache)],
        )
    };
    // Nothing compiled yet: the pooled sandbox loads only from the cache,
    // so this run goes without it.
    let first = run("r1.json");
    assert!(
        first.stderr.contains("runs without the pooling allocator")
            && !first.stderr.contains("run in pooled slots"),
        "{}",
        first.stderr
    );
    let second = run("r2.json");
    assert!(
        second
            .stderr
            .contains("the pipeline's steps run in pooled slots"),
        "{}",
        second.stderr
    );
    for (out, report) in [(&first, "r1.json"), (&second, "r2.json")] {
        assert_eq!(out.code, 1, "only the hoarding step fails: {}", out.stderr);
        let steps = steps_of(&ws, report);
        assert_eq!(status(&steps, "hoard"), "failed", "{}", out.stderr);
        for s in &steps {
            if s["name"] != "hoard" {
                assert_eq!(s["status"], "succeeded", "{s}");
            }
        }
    }
    // What each step printed, from the run whose scans reused the slots
    // the fills had just left.
    let stdout = &second.stdout;
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("[own] scan-memory: ok found")),
        "the scan finds a step's own leftovers: {stdout}"
    );
    assert!(
        stdout.contains("[data0] bump-static: ok 41")
            && stdout.contains("[data0] bump-static: ok 42")
            && stdout.contains("[data1] bump-static: ok 41")
            && !stdout.contains("[data1] bump-static: ok 42"),
        "{stdout}"
    );
    for i in 0..8 {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("[scan{i}] scan-memory:")))
            .unwrap_or_else(|| panic!("scan{i} printed nothing: {stdout}"));
        assert!(line.contains("ok clean"), "{line}");
    }
    let hoard = ws.latest_record("hoard");
    assert!(
        hoard["termination"].to_string().contains("memory"),
        "{}",
        hoard["termination"]
    );
}

/// The pooled slots of a pipeline of many steps reserve their address
/// space up front (4 GiB and more per memory of each slot). Under a limit
/// on address space (`ulimit -v`) that the steps run in one at a time, the
/// pool cannot be made: the pipeline must run without it, not fail.
#[test]
fn a_pipeline_under_an_address_space_limit_runs_without_pooled_slots() {
    const STEPS: usize = 16;
    let ws = Workspace::new();
    let digest = ws.component(PROBE, "probe.wasm");
    let entries: Vec<String> = (0..STEPS)
        .map(|i| inline_probe(&digest, &format!("s{i:02}"), &["cwd"], ""))
        .collect();
    pipeline_of(&ws, &entries);
    let args = ["-vv", "run", "pipeline.toml", "--jobs", "1", "--no-cache"];
    // Warm the compile cache first: the pooled sandbox loads only from it.
    assert_eq!(ws.cordon(&args, &[]).code, 0);
    let unlimited = ws.cordon(&args, &[]);
    assert!(
        unlimited.stderr.contains("run in pooled slots"),
        "{}",
        unlimited.stderr
    );
    let limit = 12 << 30;
    let (out, _) = ws.cordon_limited(&args, &[], &[(libc::RLIMIT_AS, limit, limit)]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("runs without the pooling allocator"),
        "{}",
        out.stderr
    );
    assert_eq!(ws.records().len(), 3 * STEPS);
}
