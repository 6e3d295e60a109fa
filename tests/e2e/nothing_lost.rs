//! Nothing a user put on disk is lost: a `write` mount replaces its host
//! directory only when a record can bring back what it held, a restore
//! leaves a record and a verifiable workspace, and every command recovers
//! what a killed one left.

use crate::harness::*;
use cordon_test_artifacts::CSV_VALIDATE;

fn csv_step(ws: &Workspace, extra_out: &str) {
    ws.write("raw/people.csv", "name,age\nada,36\n");
    ws.step(
        CSV_VALIDATE,
        &["--require", "name,age"],
        &(mount("/in", "raw", "read") + &mount("/out", "clean", "write") + extra_out),
    );
}

#[test]
fn a_users_file_in_a_write_mount_refuses_the_run_and_survives() {
    let ws = Workspace::new();
    csv_step(&ws, "");
    assert_eq!(ws.run(&[]).code, 0);
    // The user drops notes beside the published output.
    ws.write("clean/my-notes.txt", "remember the milk");
    ws.write("raw/people.csv", "name,age\nada,36\ncy,29\n");
    let out = ws.run(&[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("my-notes.txt"), "{}", out.stderr);
    // The message points at the mount's line in the manifest.
    assert!(out.stderr.contains("step.toml:"), "{}", out.stderr);
    assert!(
        out.stderr.contains("existing = \"keep\"") && out.stderr.contains("nothing ran"),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_to_string(ws.path("clean/my-notes.txt")).unwrap(),
        "remember the milk"
    );
    assert_eq!(ws.records().len(), 1, "the refused run left no record");
}

#[test]
fn a_users_directory_named_as_a_new_write_mount_refuses_the_first_run() {
    let ws = Workspace::new();
    csv_step(&ws, "");
    ws.write("clean/thesis.tex", "years of work");
    let out = ws.run(&[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("thesis.tex"), "{}", out.stderr);
    assert_eq!(
        std::fs::read_to_string(ws.path("clean/thesis.tex")).unwrap(),
        "years of work"
    );
    assert!(ws.records().is_empty());
}

#[test]
fn an_edited_output_refuses_the_run_and_names_the_changed_file() {
    let ws = Workspace::new();
    csv_step(&ws, "");
    assert_eq!(ws.run(&[]).code, 0);
    ws.write("clean/people.csv", "hand,edited\n");
    ws.write("raw/people.csv", "name,age\nbo,7\n");
    let out = ws.run(&[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("people.csv (changed)"),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_to_string(ws.path("clean/people.csv")).unwrap(),
        "hand,edited\n"
    );
}

#[test]
fn replacing_a_tree_an_earlier_run_published_stays_silent() {
    let ws = Workspace::new();
    csv_step(&ws, "");
    assert_eq!(ws.run(&[]).code, 0);
    ws.write("raw/people.csv", "name,age\nada,36\ncy,29\n");
    let out = ws.run(&[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        std::fs::read_to_string(ws.path("clean/people.csv")).unwrap(),
        "name,age\nada,36\ncy,29\n"
    );
    // Even with the hint the runner keeps gone, the records say so.
    std::fs::remove_dir_all(ws.path(".cordon/published")).unwrap();
    ws.write("raw/people.csv", "name,age\nbo,7\n");
    let out = ws.run(&[]);
    assert_eq!(out.code, 0, "{out:?}");
}

#[test]
fn a_file_where_a_write_mount_directory_belongs_refuses_the_run() {
    let ws = Workspace::new();
    csv_step(&ws, "");
    ws.write("clean", "not a directory");
    let out = ws.run(&[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("not a plain directory"),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_to_string(ws.path("clean")).unwrap(),
        "not a directory"
    );
}

/// A workspace whose `dev` environment signs its records.
fn signed() -> Workspace {
    let ws = Workspace::new();
    let out = ws.cordon(&["key", "generate", "--env", "dev"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    ws
}

fn run_id(record: &serde_json::Value) -> String {
    record["run_id"].as_str().unwrap().to_string()
}

/// The restore records of the default state directory, oldest first.
fn restore_records(ws: &Workspace) -> Vec<serde_json::Value> {
    ws.records()
        .into_iter()
        .filter(|r| r["format"] == "cordon.restore-record/v1")
        .collect()
}

#[test]
fn a_restore_leaves_a_chained_signed_record_and_a_verifiable_workspace() {
    let ws = signed();
    csv_step(&ws, "");
    assert_eq!(ws.run(&[]).code, 0);
    let first = run_id(&ws.latest_record("csv-validate"));
    ws.write("raw/people.csv", "name,age\nada,36\ncy,29\n");
    assert_eq!(ws.run(&[]).code, 0);

    let out = ws.cordon(&["restore", "--run", &first], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("restore record:"), "{}", out.stderr);
    assert_eq!(
        std::fs::read_to_string(ws.path("clean/people.csv")).unwrap(),
        "name,age\nada,36\n"
    );
    let restores = restore_records(&ws);
    assert_eq!(restores.len(), 1);
    assert_eq!(restores[0]["restored_run"], first.as_str());
    assert!(restores[0]["chain"]["sequence"].as_u64().unwrap() >= 3);
    assert!(restores[0]["signed_by"].is_object(), "{}", restores[0]);
    // The documented rollback leaves a workspace that verifies.
    let v = ws.cordon(&["verify"], &[]);
    assert_eq!(v.code, 0, "{v:?}");
    // And the next run replaces the restored tree silently.
    ws.write("raw/people.csv", "name,age\nbo,7\n");
    assert_eq!(ws.run(&[]).code, 0);
    assert_eq!(ws.cordon(&["verify"], &[]).code, 0);
}

#[test]
fn existing_keep_stores_the_unrecorded_tree_and_restore_replaced_brings_it_back() {
    let ws = signed();
    ws.write("raw/people.csv", "name,age\nada,36\n");
    ws.step(
        CSV_VALIDATE,
        &["--require", "name,age"],
        &(mount("/in", "raw", "read")
            + "[[mount]]\nguest = \"/out\"\nhost = \"clean\"\naccess = \"write\"\npurpose = \"test\"\nexisting = \"keep\"\n\n"),
    );
    ws.write("clean/my-notes.txt", "remember the milk");
    let out = ws.run(&[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(!ws.path("clean/my-notes.txt").exists());
    let rec = ws.latest_record("csv-validate");
    let out_mount = rec["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["guest"] == "/out")
        .unwrap();
    assert!(
        out_mount["replaced"]["sha256"]
            .as_str()
            .unwrap()
            .starts_with("sha256:"),
        "{out_mount}"
    );
    assert_eq!(ws.cordon(&["verify"], &[]).code, 0);

    let back = ws.cordon(&["restore", "--run", &run_id(&rec), "--replaced"], &[]);
    assert_eq!(back.code, 0, "{back:?}");
    assert_eq!(
        std::fs::read_to_string(ws.path("clean/my-notes.txt")).unwrap(),
        "remember the milk"
    );
    let v = ws.cordon(&["verify"], &[]);
    assert_eq!(v.code, 0, "{v:?}");
}

#[test]
fn a_restore_over_an_edited_output_keeps_the_edit_restorable() {
    let ws = signed();
    csv_step(&ws, "");
    assert_eq!(ws.run(&[]).code, 0);
    let first = run_id(&ws.latest_record("csv-validate"));
    ws.write("clean/people.csv", "hand,edited\n");
    let out = ws.cordon(&["restore", "--run", &first], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        std::fs::read_to_string(ws.path("clean/people.csv")).unwrap(),
        "name,age\nada,36\n"
    );
    let restore = restore_records(&ws).pop().unwrap();
    assert!(restore["trees"][0]["replaced"].is_object(), "{restore}");
    let again = ws.cordon(&["restore", "--run", &run_id(&restore), "--replaced"], &[]);
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(
        std::fs::read_to_string(ws.path("clean/people.csv")).unwrap(),
        "hand,edited\n"
    );
    assert_eq!(ws.cordon(&["verify"], &[]).code, 0);
}

#[test]
fn a_failed_restore_leaves_a_record_of_its_failure() {
    let ws = signed();
    csv_step(&ws, "");
    assert_eq!(ws.run(&[]).code, 0);
    let first = run_id(&ws.latest_record("csv-validate"));
    // Its outputs' blobs are gone from the store.
    std::fs::remove_dir_all(ws.path(".cordon/cas/blobs")).unwrap();
    ws.write("raw/people.csv", "name,age\nbo,7\n");
    assert_eq!(ws.run(&[]).code, 0);
    let out = ws.cordon(&["restore", "--run", &first], &[]);
    assert_ne!(out.code, 0, "{out:?}");
    let restore = restore_records(&ws).pop().expect("a restore record");
    assert!(restore["failure"].as_str().is_some(), "{restore}");
    assert_eq!(restore["trees"].as_array().unwrap().len(), 0);
    // Once the store holds the outputs again, the rollback goes through;
    // posture counts both.
    let ok = ws.cordon(
        &[
            "restore",
            "--run",
            &run_id(&ws.latest_record("csv-validate")),
        ],
        &[],
    );
    assert_eq!(ok.code, 0, "{ok:?}");
    let p = ws.cordon(&["posture", "--env", "dev", "--format", "json"], &[]);
    assert_eq!(p.code, 0, "{p:?}");
    let p: serde_json::Value = serde_json::from_str(&p.stdout).unwrap();
    assert_eq!(p["restores"], 1, "{p}");
    assert_eq!(p["restore_failures"], 1, "{p}");
    let text = ws.cordon(&["posture", "--env", "dev"], &[]);
    assert!(text.stdout.contains("restores: 1 (1 failed)"), "{text:?}");
}

/// A signed workspace whose checksum step has published once, with its
/// input changed so the next run publishes another tree.
#[cfg(feature = "fault-injection")]
fn published_once() -> Workspace {
    let ws = signed();
    csv_step(&ws, "");
    assert_eq!(ws.run(&[]).code, 0);
    ws.write("raw/people.csv", "name,age\nada,36\ncy,29\n");
    ws
}

/// A run killed at each point of its commit (and while its step runs)
/// needs nobody to run `repair`: the next ordinary `cordon run` completes
/// or rolls back what it left, says so in one line, leaves no staging or
/// swap leftovers, and `cordon verify` passes after it.
#[cfg(feature = "fault-injection")]
#[test]
fn after_a_kill_at_any_point_the_next_run_recovers_without_repair() {
    for point in [
        "before-intent",
        "after-intent",
        "after-record",
        "after-cache",
        "before-exchange",
        "mid-exchange",
        "after-publish",
    ] {
        let ws = published_once();
        let killed = ws.run(&[("CORDON_FAULT", point)]);
        assert_ne!(killed.code, 0, "{point}: {killed:?}");
        let next = ws.run(&[]);
        assert_eq!(next.code, 0, "{point}: {next:?}");
        assert_eq!(
            std::fs::read_to_string(ws.path("clean/people.csv")).unwrap(),
            "name,age\nada,36\ncy,29\n",
            "{point}"
        );
        let leftovers: Vec<String> = std::fs::read_dir(ws.path(".cordon/staging"))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.ends_with(".lock"))
                    .collect()
            })
            .unwrap_or_default();
        assert!(leftovers.is_empty(), "{point}: {leftovers:?}");
        let beside: Vec<String> = std::fs::read_dir(ws.root())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".cordon-new-") || n.contains(".cordon-old-"))
            .collect();
        assert!(beside.is_empty(), "{point}: {beside:?}");
        let v = ws.cordon(&["verify"], &[]);
        assert_eq!(v.code, 0, "{point}: {v:?}");
    }
}

#[cfg(feature = "fault-injection")]
#[test]
fn a_kill_while_a_restore_publishes_is_completed_by_the_next_command() {
    for point in [
        "restore-after-intent",
        "restore-after-record",
        "mid-exchange",
    ] {
        let ws = published_once();
        let first = run_id(&ws.latest_record("csv-validate"));
        assert_eq!(ws.run(&[]).code, 0);
        let killed = ws.cordon(&["restore", "--run", &first], &[("CORDON_FAULT", point)]);
        assert_ne!(killed.code, 0, "{point}: {killed:?}");
        // The next ordinary command: a run of the step on the same data.
        ws.write("raw/people.csv", "name,age\nbo,7\n");
        let next = ws.run(&[]);
        assert_eq!(next.code, 0, "{point}: {next:?}");
        let beside: Vec<String> = std::fs::read_dir(ws.root())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".cordon-new-") || n.contains(".cordon-old-"))
            .collect();
        assert!(beside.is_empty(), "{point}: {beside:?}");
        let v = ws.cordon(&["verify"], &[]);
        assert_eq!(v.code, 0, "{point}: {v:?}");
    }
}
