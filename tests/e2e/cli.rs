//! The command line as other tools read it: shell completions that the
//! shell accepts, and a manual page that the man toolchain renders.

use crate::harness::*;

#[test]
fn completions_are_generated_for_each_shell_and_bash_parses_them() {
    let ws = Workspace::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = ws.cordon(&["completions", shell], &[]);
        assert_eq!(out.code, 0, "{shell}: {out:?}");
        for sub in ["run", "verify", "restore", "repair", "completions"] {
            assert!(out.stdout.contains(sub), "{shell} lacks {sub}");
        }
        if shell == "bash" {
            let file = ws.write("cordon.bash", &out.stdout);
            let check = std::process::Command::new("bash")
                .arg("-n")
                .arg(&file)
                .output()
                .expect("bash runs");
            assert!(
                check.status.success(),
                "{}",
                String::from_utf8_lossy(&check.stderr)
            );
        }
    }
    let bad = ws.cordon(&["completions", "tcsh"], &[]);
    assert_eq!(bad.code, 2, "{bad:?}");
}

#[test]
fn the_manual_page_renders_without_warnings_and_documents_every_command() {
    let ws = Workspace::new();
    let out = ws.cordon(&["man"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.starts_with(".ie") || out.stdout.contains(".TH"),
        "{}",
        &out.stdout[..200.min(out.stdout.len())]
    );
    let page = ws.write("cordon.1", &out.stdout);
    let render = std::process::Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .arg(&page)
        .output()
        .expect("groff runs (Debian: groff-base)");
    assert!(render.status.success(), "{render:?}");
    assert!(
        render.stderr.is_empty(),
        "groff warns: {}",
        String::from_utf8_lossy(&render.stderr)
    );
    for sub in [
        "run", "plan", "check", "verify", "restore", "repair", "audit", "diff", "inspect",
    ] {
        assert!(out.stdout.contains(sub), "the page lacks {sub}");
    }
}

/// Every line of `text` is one JSON event with the top-level fields a log
/// collector indexes; returns them.
fn events(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| {
            let e: serde_json::Value = serde_json::from_str(l)
                .unwrap_or_else(|err| panic!("not a JSON event ({err}): {l:?}\n{text}"));
            for key in ["timestamp", "level", "message"] {
                assert!(e.get(key).is_some(), "{key} missing: {l}");
            }
            e
        })
        .collect()
}

#[test]
fn with_log_format_json_every_line_of_a_run_a_failed_run_and_a_refused_run_is_an_event() {
    let ws = Workspace::new();
    ws.step(
        cordon_test_artifacts::PROBE,
        &["print", "hello \"quoted\"", "--", "eprint", "to stderr"],
        &mount("/out", "out", "write"),
    );
    let out = ws.cordon(&["--log-format", "json", "run", "step.toml"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    let err = events(&out.stderr);
    assert!(err.len() >= 2, "{err:?}");
    assert!(err.iter().all(|e| e["level"] != "error"), "{err:?}");
    let step_lines: Vec<_> = events(&out.stdout)
        .into_iter()
        .chain(err.iter().cloned())
        .filter(|e| e["event"] == "step-output")
        .collect();
    assert!(
        step_lines
            .iter()
            .any(|e| e["message"] == "hello \"quoted\"" && e["stream"] == "stdout"),
        "{step_lines:?}"
    );
    assert!(
        step_lines
            .iter()
            .any(|e| e["message"] == "to stderr" && e["stream"] == "stderr"),
        "{step_lines:?}"
    );

    // A failed run: its result line carries the exit code.
    ws.step(
        cordon_test_artifacts::PROBE,
        &["exit", "1"],
        &mount("/out", "out", "write"),
    );
    let out = ws.cordon(&["--log-format", "json", "run", "step.toml"], &[]);
    assert_eq!(out.code, 1, "{out:?}");
    let err = events(&out.stderr);
    assert!(
        err.iter()
            .any(|e| e["exit_code"] == 1 && e["level"] == "error"),
        "{err:?}"
    );
    assert!(err.iter().any(|e| e["record"].is_string()), "{err:?}");

    // A refused run (the manifest is wrong): the error and its fix are one
    // event at level error.
    ws.write("step.toml", "[step]\nname = \"x\"\n");
    let out = ws.cordon(&["--log-format", "json", "run", "step.toml"], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    let err = events(&out.stderr);
    let errors: Vec<_> = err.iter().filter(|e| e["level"] == "error").collect();
    assert_eq!(errors.len(), 1, "{err:?}");
    assert!(
        errors[0]["message"].as_str().unwrap().contains("step.toml"),
        "{errors:?}"
    );
}
