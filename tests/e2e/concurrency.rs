//! Runners sharing one workspace and state directory, and writers outside
//! Cordon: what a step reads is what its record says it read, runs of one
//! pipeline never fail because of each other, and a step whose input
//! changed under it fails and publishes nothing.

use crate::harness::*;
use crate::pipelines::example_pipeline;
use cordon_test_artifacts::PROBE;
use std::io::{BufRead, BufReader};

/// `runners` concurrent `cordon run` of the example pipeline, `rounds`
/// times over: every run exits 0 and `cordon verify` passes after every
/// round. Half the runners bypass the action cache so that every round
/// runs (and publishes) every step more than once at the same time; the
/// others may be served from the cache, which publishes too.
fn concurrent_runs_of_the_example(runners: usize, rounds: usize) {
    let ws = Workspace::new();
    example_pipeline(&ws);
    for round in 0..rounds {
        let outs: Vec<Output> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..runners)
                .map(|i| {
                    let ws = &ws;
                    s.spawn(move || {
                        let mut args = vec!["run", "pipeline.toml", "--env", "dev"];
                        if i % 2 == 0 {
                            args.push("--no-cache");
                        }
                        ws.cordon(&args, &[])
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (i, out) in outs.iter().enumerate() {
            assert_eq!(
                out.code, 0,
                "round {round}, runner {i}:\n{}{}",
                out.stdout, out.stderr
            );
        }
        let v = ws.cordon(&["verify"], &[]);
        assert_eq!(v.code, 0, "round {round}:\n{}{}", v.stdout, v.stderr);
    }
    // Every run of every step left a record in the one chain.
    let steps = 5;
    assert_eq!(ws.records().len(), runners * rounds * steps);
}

#[test]
fn two_runners_of_one_pipeline_on_one_state_directory_both_succeed() {
    concurrent_runs_of_the_example(2, 3);
}

#[test]
fn four_runners_of_one_pipeline_on_one_state_directory_all_succeed() {
    concurrent_runs_of_the_example(4, 3);
}

/// The probe reads its input, writes an output and sleeps; while it sleeps,
/// the test (not a runner: no lock keeps it out) rewrites the input. The
/// step fails, its record says the input changed during the run, and its
/// output is not published.
#[test]
fn an_input_changed_outside_cordon_while_the_step_runs_fails_the_step_and_publishes_nothing() {
    let ws = Workspace::new();
    let key = ws.cordon(&["key", "generate", "--env", "dev"], &[]);
    assert_eq!(key.code, 0, "{key:?}");
    ws.write("data/x.txt", "the rows the step reads\n");
    ws.step(
        PROBE,
        &[
            "read",
            "/in/x.txt",
            "--",
            "write",
            "/out/y.txt",
            "derived",
            "--",
            "sleep",
            "5",
        ],
        &(mount("/in", "data", "read") + &mount("/out", "out", "write")),
    );
    let mut child = std::process::Command::new(CORDON)
        .args(["run", "step.toml"])
        .current_dir(ws.root())
        .env("CORDON_SECRETS_HOME", ws.secrets_home())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // As soon as the step has read its input (and is about to sleep),
    // rewrite the input in place.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().contains("write: ok") {
            break;
        }
    }
    ws.write("data/x.txt", "other rows, swapped in while the step ran\n");
    lines.for_each(drop);
    let exit = child.wait().unwrap();
    assert_eq!(exit.code(), Some(1), "the step failed");

    let rec = ws.record();
    assert_eq!(rec["success"], false, "{rec}");
    let reason = rec["outputs"]["withheld"]["reason"]
        .as_str()
        .unwrap_or_else(|| panic!("outputs withheld: {rec}"));
    assert!(
        reason.contains("input mount /in changed during the run"),
        "{reason}"
    );
    // The record still names the tree hashed when the step started, and
    // the reason names both digests.
    let before = rec["mounts"][0]["before"]["sha256"].as_str().unwrap();
    assert!(reason.contains(before), "{reason}");
    assert!(!ws.path("out").exists(), "nothing was published");
    let v = ws.cordon(&["verify"], &[]);
    assert_eq!(v.code, 0, "the failed run's record holds: {v:?}");
}

/// The lock file of `path` in the workspace's state directory, as
/// `runner/src/mount_locks.rs` names it, locked by the test as another run
/// would lock it.
fn hold_lock_of(ws: &Workspace, path: &std::path::Path) -> std::fs::File {
    let key = sha256_hex(path.as_os_str().as_encoded_bytes());
    let dir = ws.path(".cordon/locks");
    std::fs::create_dir_all(&dir).unwrap();
    let f = std::fs::File::create(dir.join(format!("{key}.lock"))).unwrap();
    f.lock().unwrap();
    f
}

/// Starts `cordon run step.toml` and returns it once it says it waits for
/// a lock.
fn start_waiting_run(ws: &Workspace) -> std::process::Child {
    let mut child = std::process::Command::new(CORDON)
        .args(["run", "step.toml"])
        .current_dir(ws.root())
        .env("CORDON_SECRETS_HOME", ws.secrets_home())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let waiting = lines
        .by_ref()
        .map(Result::unwrap)
        .any(|l| l.contains("cordon: waiting for another run to release"));
    assert!(waiting, "the run waits for the held lock");
    // Keep draining so the runner never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    child
}

/// A run whose write destination another run holds waits for it instead
/// of failing, publishes once it is released, and Ctrl-C stops the wait
/// without running anything.
#[test]
fn a_run_whose_destination_is_locked_waits_and_ctrl_c_stops_the_wait() {
    let ws = Workspace::new();
    let key = ws.cordon(&["key", "generate", "--env", "dev"], &[]);
    assert_eq!(key.code, 0, "{key:?}");
    ws.step(
        PROBE,
        &["write", "/out/y.txt", "published"],
        &mount("/out", "out", "write"),
    );
    let dest = std::fs::canonicalize(ws.root()).unwrap().join("out");

    let held = hold_lock_of(&ws, &dest);
    let child = start_waiting_run(&ws);
    send_signal(child.id(), "-INT");
    let exit = child.wait_with_output().unwrap();
    assert_eq!(exit.status.code(), Some(130), "interrupted while waiting");
    assert!(ws.records().is_empty(), "nothing ran, nothing was recorded");
    assert!(!dest.exists(), "nothing was published");

    let mut child = start_waiting_run(&ws);
    drop(held);
    let exit = child.wait().unwrap();
    assert_eq!(exit.code(), Some(0), "the run went ahead once released");
    assert_eq!(
        std::fs::read_to_string(dest.join("y.txt")).unwrap(),
        "published"
    );
    assert_eq!(ws.records().len(), 1);
}
