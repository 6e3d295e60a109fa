//! One workspace, one state directory: every command finds `.cordon/`
//! beside the workspace's `cordon.toml`, whichever file it names and
//! wherever it is started, unless `--state` or `CORDON_STATE` says
//! otherwise. A state directory an older version left beside a manifest is
//! named in a warning, never silently ignored.

use crate::harness::*;
use crate::pipelines::{EXAMPLE_SECRET, example_pipeline};
use cordon_test_artifacts::PLAIN;
use std::path::{Path, PathBuf};

/// `cordon ARGS` with `dir` as the current directory and `env` added.
fn cordon_in(ws: &Workspace, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let out = ws.command(args, env).current_dir(dir).output().unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        raw_stdout: out.stdout,
        raw_stderr: out.stderr,
    }
}

/// The example set up as run.sh does, prod included (its record key, its
/// model-signing key, trust of dev's records for promotion, a reviewer
/// who approved every step), the release step pinned and one dev run of
/// the pipeline; returns the pipeline run id.
fn example_ready_to_promote(ws: &Workspace) -> String {
    example_pipeline(ws);
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/ml-pipeline");
    ws.write(
        "steps/release.toml",
        std::fs::read(example.join("steps/release.toml")).unwrap(),
    );
    let out = ws.cordon(&["pin", "steps/release.toml"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = ws.cordon(&["key", "generate", "--env", "prod", "--if-missing"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = ws.cordon_with_input(
        &["secret", "set", "model-signing-key", "--env", "prod"],
        &[],
        Some(EXAMPLE_SECRET.as_bytes()),
    );
    assert_eq!(out.code, 0, "{out:?}");
    let from_dev = ws.secrets_home().join("trusted/prod/promote-from/dev");
    std::fs::create_dir_all(&from_dev).unwrap();
    std::fs::copy(ws.trusted_key("dev"), from_dev.join("dev.pub")).unwrap();
    let reviewers = ws.secrets_home().join("reviewers");
    let out = ws.cordon(
        &[
            "key",
            "reviewer",
            "rev",
            "--dir",
            reviewers.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let trusted = ws.secrets_home().join("trusted/prod/reviewers");
    std::fs::create_dir_all(&trusted).unwrap();
    std::fs::copy(reviewers.join("rev.pub"), trusted.join("rev.pub")).unwrap();
    let key = reviewers.join("rev.key");
    for s in [
        "validate",
        "pseudonymize",
        "train",
        "evaluate",
        "sign",
        "release",
    ] {
        let manifest = format!("steps/{s}.toml");
        let out = ws.cordon(&["approve", &manifest, "--key", key.to_str().unwrap()], &[]);
        assert_eq!(out.code, 0, "{out:?}");
    }
    let out = ws.cordon(&["run", "pipeline.toml", "--env", "dev"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    let runs: Vec<PathBuf> = std::fs::read_dir(ws.path(".cordon/pipelines"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs[0].file_stem().unwrap().to_str().unwrap().to_string()
}

/// The number `cordon verify` says it checked, from its last line.
fn verified_count(out: &Output) -> usize {
    let line = out
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("cordon: verified "))
        .unwrap_or_else(|| panic!("no verdict: {out:?}"));
    line.split(' ').next().unwrap().parse().unwrap()
}

#[test]
fn a_manifest_in_a_subdirectory_runs_on_the_promotion_of_its_workspace_from_anywhere() {
    let ws = Workspace::new();
    let run = example_ready_to_promote(&ws);
    let root = ws.root().canonicalize().unwrap();
    let steps = root.join("steps");
    let elsewhere = tempfile::tempdir().unwrap();
    let release_abs = steps.join("release.toml");
    let release_abs = release_abs.to_str().unwrap();

    // Promoted from the workspace root, without --state.
    let out = ws.cordon(
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
        &[],
    );
    assert_eq!(out.code, 0, "{out:?}");

    // The release step finds the promotion from the root, from steps/ and
    // from outside the workspace with a path.
    let places: [(&Path, &str); 3] = [
        (&root, "steps/release.toml"),
        (&steps, "release.toml"),
        (elsewhere.path(), release_abs),
    ];
    for (dir, file) in places {
        let out = cordon_in(&ws, dir, &["run", file, "--env", "prod"], &[]);
        assert_eq!(out.code, 0, "from {}: {out:?}", dir.display());
        assert!(!out.stderr.contains("warning: "), "{}", out.stderr);
    }
    // A state directory without the promotion refuses, and the refusal
    // names the one it searched.
    let other = elsewhere.path().join("state");
    let out = cordon_in(
        &ws,
        &steps,
        &["run", "release.toml", "--env", "prod"],
        &[("CORDON_STATE", other.to_str().unwrap())],
    );
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "searched the promotions of the state directory {} (--state or CORDON_STATE name another)",
            other.display()
        )),
        "{}",
        out.stderr
    );
    let releases = ws
        .records()
        .iter()
        .filter(|r| r["step"] == "release" && r["environment"] == "prod")
        .count();
    assert_eq!(releases, 3, "every run recorded in the workspace's chain");
    assert!(
        !steps.join(".cordon").exists(),
        "a second state directory beside the manifest"
    );
    assert!(!elsewhere.path().join(".cordon").exists());

    // `cordon verify` checks the same chain from the root and from steps/,
    // and from outside the workspace when CORDON_STATE names it.
    let state = root.join(".cordon");
    let state = state.to_str().unwrap();
    let counts: Vec<usize> = [
        cordon_in(&ws, &root, &["verify"], &[]),
        cordon_in(&ws, &steps, &["verify"], &[]),
        cordon_in(
            &ws,
            elsewhere.path(),
            &["verify"],
            &[("CORDON_STATE", state)],
        ),
    ]
    .iter()
    .map(|out| {
        assert_eq!(out.code, 0, "{out:?}");
        verified_count(out)
    })
    .collect();
    assert_eq!(counts, vec![ws.records_paths().len(); 3], "{counts:?}");
}

/// A workspace with `cordon.toml` at its root and the plain step's
/// manifest in `sub/`.
fn workspace_with_a_step_in_a_subdirectory() -> Workspace {
    let ws = Workspace::new();
    ws.write("cordon.toml", "version = 1\n[env.dev]\n");
    let out = ws.cordon(&["key", "generate", "--env", "dev"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    let digest = ws.component(PLAIN, "plain.wasm");
    ws.write(
        "sub/step.toml",
        format!("[step]\nname = \"plain\"\ncomponent = \"../plain.wasm\"\ndigest = \"{digest}\"\n"),
    );
    ws
}

#[test]
fn a_state_directory_left_beside_a_manifest_is_named_with_the_one_used_now() {
    let ws = workspace_with_a_step_in_a_subdirectory();
    // What an older version made by default: a chain beside the manifest.
    let out = ws.cordon(&["run", "sub/step.toml", "--state", "sub/.cordon"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(!out.stderr.contains("warning: "), "{}", out.stderr);

    let root = ws.root().canonicalize().unwrap();
    let old = root.join("sub/.cordon");
    let old = old.display();
    let used = root.join(".cordon");
    let used = used.display();
    let warning = format!(
        "cordon: warning: {old} is a state directory left by an older version and is no longer read: this workspace's state directory is {used}; to merge, copy {old}/promotions/ into {used}/promotions/ and check the old records with `cordon verify --state {old}`, then remove it (rm -r {old}); or go on using it with --state {old} or CORDON_STATE\n"
    );
    let out = ws.cordon(&["run", "sub/step.toml"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stderr.matches(warning.as_str()).count(),
        1,
        "{}",
        out.stderr
    );
    assert_eq!(
        ws.records().len(),
        1,
        "the run went to the workspace's chain"
    );
    // A command without a file, started beside the old directory, says
    // the same.
    let out = cordon_in(&ws, &ws.path("sub"), &["verify"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains(&warning), "{}", out.stderr);
    assert_eq!(verified_count(&out), 1);
    // The old chain is still checked by naming it, without a warning.
    let out = ws.cordon(&["verify", "--state", "sub/.cordon"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(!out.stderr.contains("warning: "), "{}", out.stderr);
    // Removed, it is no longer mentioned.
    std::fs::remove_dir_all(ws.path("sub/.cordon")).unwrap();
    let out = ws.cordon(&["run", "sub/step.toml"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(!out.stderr.contains("warning: "), "{}", out.stderr);
}

#[test]
fn the_state_flag_wins_over_cordon_state_which_wins_over_the_workspace() {
    let ws = workspace_with_a_step_in_a_subdirectory();
    let chain = |dir: &str| {
        std::fs::read_dir(ws.path(dir).join("records"))
            .map(|rd| {
                rd.filter(|e| is_record_file(&e.as_ref().unwrap().path()))
                    .count()
            })
            .unwrap_or(0)
    };
    let var = ws.path("from-var");
    let var = var.to_str().unwrap();
    let out = ws.cordon(&["run", "sub/step.toml"], &[("CORDON_STATE", var)]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = ws.cordon(
        &["run", "sub/step.toml", "--state", "from-flag"],
        &[("CORDON_STATE", var)],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        (chain("from-var"), chain("from-flag"), chain(".cordon")),
        (1, 1, 0)
    );
    // Commands without a file follow the same order.
    let out = ws.cordon(&["verify"], &[("CORDON_STATE", var)]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(verified_count(&out), 1);
}
