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
