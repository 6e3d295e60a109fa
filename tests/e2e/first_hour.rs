//! A new user's first hour: what a newcomer does first, and what went wrong
//! for one. No private key is ever written into a git work tree; runs are
//! named `latest` and `latest:STEP` wherever an id is taken; `verify
//! --shared` is the shared-chain check; a run missing several secrets names
//! every one of them at once.

use crate::harness::*;
use cordon_test_artifacts::PROBE;
use std::path::Path;
use std::process::Command;

/// `git ARGS` in `dir`; panics unless it succeeds. Returns stdout.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The workspace as a git work tree with one commit of its cordon.toml,
/// as a user's repository is before they make a reviewer key.
fn git_workspace() -> Workspace {
    let ws = Workspace::new();
    ws.write("cordon.toml", "[env.dev]\n");
    git(ws.root(), &["init", "-q"]);
    git(ws.root(), &["add", "cordon.toml"]);
    git(
        ws.root(),
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.org",
            "commit",
            "-q",
            "-m",
            "init",
        ],
    );
    ws
}

#[test]
fn a_reviewer_key_made_in_a_git_work_tree_leaves_the_tree_clean() {
    let ws = git_workspace();
    let out = ws.cordon(&["key", "reviewer", "alice"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        git(
            ws.root(),
            &["status", "--porcelain", "--untracked-files=all"]
        ),
        "",
        "the work tree is clean"
    );
    let home = ws.secrets_home().join("reviewers");
    let private = std::fs::read_to_string(home.join("alice.key")).unwrap();
    assert!(private.contains("PRIVATE KEY"), "{private}");
    assert!(home.join("alice.pub").is_file());
    // The user is told where the pair is, to list the public key.
    assert!(
        out.stderr.starts_with(&format!(
            "cordon: wrote {}/alice.key (private, mode 0600: keep it with the reviewer, outside every workspace) and {}/alice.pub\n",
            home.display(),
            home.display()
        )),
        "{}",
        out.stderr
    );
}

#[test]
fn a_reviewer_key_dir_inside_a_git_work_tree_is_refused_and_nothing_is_written() {
    let ws = git_workspace();
    let out = ws.cordon(&["key", "reviewer", "alice", "--dir", "keys"], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert_eq!(
        out.stderr,
        format!(
            "error: keys is inside the git work tree {}, where the reviewer's private key would be one `git add` away from being committed\n  fix: leave out --dir to keep the key pair in {}/reviewers/ (your configuration, outside every workspace), or name a directory outside the work tree\n",
            ws.root().canonicalize().unwrap().display(),
            ws.secrets_home().display()
        )
    );
    // A subdirectory, or a path that reaches the tree from outside it, is
    // the same tree.
    ws.mkdir("sub");
    let nested = ws.path("sub/../sub/deeper/keys");
    let out = ws.cordon(
        &["key", "reviewer", "bob", "--dir", nested.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.code, 2, "{out:?}");
    assert_eq!(
        git(
            ws.root(),
            &["status", "--porcelain", "--untracked-files=all"]
        ),
        "",
        "nothing was written"
    );
}

#[test]
fn a_private_key_left_in_a_workspace_is_named_by_the_next_command() {
    // A workspace that is not a git work tree still takes --dir (older
    // setups, temporary workspaces), and every later command in it says
    // where the private key is and how to move it.
    let ws = Workspace::new();
    ws.write("cordon.toml", "[env.dev]\n");
    let out = ws.cordon(&["key", "reviewer", "alice", "--dir", "keys"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains(
            "cordon: warning: keys/alice.key is a private key inside the workspace, where a step's mount or a commit can reach it\n"
        ),
        "{}",
        out.stderr
    );
    ws.step(PROBE, &["cwd"], "");
    let out = ws.cordon(&["plan", "step.toml"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    let key = ws.root().canonicalize().unwrap().join("keys/alice.key");
    let to = format!("{}/reviewers/", ws.secrets_home().display());
    assert!(
        out.stderr.starts_with(&format!(
            "cordon: warning: {} is a private key inside the workspace, where a step's mount or a commit can reach it\n  fix: move it out of the workspace: `mkdir -p {to} && mv {} {to}`, then pass the new path to `cordon approve --key` (a public key the configuration names stays where it is)\n",
            key.display(),
            key.display()
        )),
        "{}",
        out.stderr
    );
    // The public half alone is no warning.
    std::fs::remove_file(&key).unwrap();
    let out = ws.cordon(&["plan", "step.toml"], &[]);
    assert!(!out.stderr.contains("private key"), "{}", out.stderr);
}

/// Two probe steps, `a` writing `a-out` and `b` reading it, as a pipeline;
/// the workspace signs its records.
fn two_step_pipeline(ws: &Workspace) {
    let digest = ws.component(PROBE, "probe.wasm");
    let step = |name: &str, args: &str, mounts: String| {
        ws.write(
            &format!("{name}.toml"),
            format!("[step]\nname = \"{name}\"\ncomponent = \"probe.wasm\"\ndigest = \"{digest}\"\nargs = [{args}]\n\n{mounts}"),
        );
    };
    step(
        "a",
        "\"write\", \"/out/x.txt\", \"one\"",
        mount("/out", "a-out", "write"),
    );
    step(
        "b",
        "\"read\", \"/in/x.txt\"",
        mount("/in", "a-out", "read"),
    );
    ws.write(
        "pipeline.toml",
        "[pipeline]\nname = \"p\"\n\n[[step]]\nmanifest = \"a.toml\"\n\n[[step]]\nmanifest = \"b.toml\"\n",
    );
    let key = ws.cordon(&["key", "generate", "--env", "dev"], &[]);
    assert_eq!(key.code, 0, "{key:?}");
}

/// The run id of the newest record of `step`.
fn newest_run_of(ws: &Workspace, step: &str) -> String {
    ws.latest_record(step)["run_id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn latest_and_latest_step_name_runs_wherever_a_run_id_is_taken() {
    let ws = Workspace::new();
    two_step_pipeline(&ws);
    let out = ws.cordon(&["run", "pipeline.toml"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    let pipeline_run = std::fs::read_dir(ws.path(".cordon/pipelines"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .unwrap()
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let first_a = newest_run_of(&ws, "a");
    // A later run of `a` alone: the newest run, and the newest of `a`.
    let out = ws.cordon(&["run", "a.toml", "--no-cache"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    let (a, b) = (newest_run_of(&ws, "a"), newest_run_of(&ws, "b"));
    assert!(a > b && a != first_a, "`a` ran last");

    // restore takes `latest`: `a`'s second run, not the pipeline's.
    let out = ws.cordon(&["restore", "--run", "latest"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains(&format!(" of run {a} to ")),
        "{}",
        out.stderr
    );
    let out = ws.cordon(&["restore", "--run", "latest:b"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("run `{b}` has no outputs to restore")),
        "{}",
        out.stderr
    );

    for args in [
        ["verify", "--run", "latest"],
        ["verify", "--run", "latest:b"],
        ["verify", "--since", "latest:b"],
    ] {
        let out = ws.cordon(&args, &[]);
        assert_eq!(out.code, 0, "{args:?}: {out:?}");
    }

    // card and export take pipeline runs: `latest` is the newest pipeline
    // run, `latest:STEP` the newest that had the step.
    for name in ["latest", "latest:b"] {
        let out = ws.cordon(&["card", "--run", name, "--format", "json"], &[]);
        assert_eq!(out.code, 0, "{name}: {out:?}");
        assert!(out.stdout.contains(&pipeline_run), "{name}: {}", out.stdout);
    }

    // Nothing fits: the directory searched and the steps it has are named.
    let out = ws.cordon(&["verify", "--run", "latest:c"], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert_eq!(
        out.stderr,
        format!(
            "error: no run of step `c` is recorded in {}/records (it has runs of `a`, `b`)\n  fix: check the step's name (as in its manifest's [step] name), or name the state directory that holds its records with --state\n",
            ws.root().canonicalize().unwrap().join(".cordon").display()
        )
    );
    let out = ws.cordon(&["card", "--run", "latest:c"], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.starts_with(&format!(
            "error: no pipeline run with a step `c` is recorded in {}/pipelines (it has runs of `a`, `b`)\n",
            ws.root().canonicalize().unwrap().join(".cordon").display()
        )),
        "{}",
        out.stderr
    );
}

#[test]
fn verify_shared_is_the_shared_chain_check_and_verify_env_still_works_with_a_note() {
    let ws = Workspace::new();
    ws.write("cordon.toml", "[env.dev]\n");
    let no_store = "error: environment `dev` has no shared store\n  fix: add [env.dev.store] to cordon.toml, or verify a local state directory with `cordon verify --state DIR`\n";
    let out = ws.cordon(&["verify", "--shared", "dev"], &[]);
    assert_eq!((out.code, out.stderr.as_str()), (2, no_store), "{out:?}");
    let out = ws.cordon(&["verify", "--env", "dev"], &[]);
    assert_eq!(
        (out.code, out.stderr),
        (
            2,
            format!(
                "cordon: note: `verify --env` is deprecated; it is `verify --shared dev` (the shared store's chain)\n{no_store}"
            )
        )
    );
    let help = ws.cordon(&["verify", "--help"], &[]);
    assert!(help.stdout.contains("--shared <ENV>"), "{}", help.stdout);
    assert!(!help.stdout.contains("--env"), "{}", help.stdout);
}

#[test]
fn a_pipeline_missing_several_secrets_names_every_one_in_one_run() {
    let ws = Workspace::new();
    let digest = ws.component(PROBE, "probe.wasm");
    for (name, secrets) in [
        ("a", &["api-token", "db-password"][..]),
        ("b", &["api-token", "signing-seed"][..]),
    ] {
        let grants: String = secrets
            .iter()
            .map(|s| format!("[[secret]]\nname = \"{s}\"\nuses = [\"hmac\"]\n\n"))
            .collect();
        ws.write(
            &format!("{name}.toml"),
            format!("[step]\nname = \"{name}\"\ncomponent = \"probe.wasm\"\ndigest = \"{digest}\"\nargs = [\"cwd\"]\n\n{grants}"),
        );
    }
    ws.write(
        "pipeline.toml",
        "[pipeline]\nname = \"p\"\n\n[[step]]\nmanifest = \"a.toml\"\n\n[[step]]\nmanifest = \"b.toml\"\n",
    );
    // The store exists (another secret is set), but holds none of these.
    let set = ws.cordon_with_input(
        &["secret", "set", "unrelated"],
        &[],
        Some(b"a value long enough"),
    );
    assert_eq!(set.code, 0, "{set:?}");
    let out = ws.cordon(&["run", "pipeline.toml"], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    let store = ws.secrets_home().join("stores/dev.store");
    let missing = |steps: &str, name: &str| {
        format!(
            "error: environment `dev`: {steps}: secret `{name}` is not in the local store {}\n  fix: add it with: cordon secret set {name} --env dev < value-file\n",
            store.display()
        )
    };
    assert_eq!(
        out.stderr,
        [
            missing("steps `a`, `b`", "api-token"),
            missing("step `a`", "db-password"),
            missing("step `b`", "signing-seed"),
        ]
        .concat()
    );
    assert!(ws.records().is_empty(), "nothing ran");
}
