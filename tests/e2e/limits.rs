//! Runaway steps: each limit stops the step, the runner reports which one,
//! and nothing partial is published.

use crate::harness::*;
use cordon_test_artifacts::PROBE;

fn run_with_limits(args: &[&str], limits: &str) -> (Workspace, Output, serde_json::Value) {
    let ws = Workspace::new();
    ws.step(
        PROBE,
        args,
        &(mount("/out", "out", "write") + "[limits]\n" + limits),
    );
    let out = ws.run(&[]);
    let rec = ws.record();
    (ws, out, rec)
}

fn assert_limit(out: &Output, rec: &serde_json::Value, limit: &str) {
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(rec["termination"]["kind"], "limit-exceeded", "{rec:#}");
    assert_eq!(rec["termination"]["limit"], limit, "{rec:#}");
    assert_eq!(rec["success"], false);
}

#[test]
fn a_cpu_spin_is_stopped_by_fuel() {
    let (_ws, out, rec) = run_with_limits(&["spin"], "fuel = 50_000_000\n");
    assert_limit(&out, &rec, "fuel");
    assert!(
        out.stderr.contains("fuel limit of 50000000 exhausted"),
        "{}",
        out.stderr
    );
    assert_eq!(rec["usage"]["fuel"], 50_000_000);
}

#[test]
fn a_cpu_spin_is_stopped_by_the_timeout() {
    let (_ws, out, rec) = run_with_limits(
        &["spin"],
        "fuel = 9_000_000_000_000_000\ntimeout = \"300ms\"\n",
    );
    assert_limit(&out, &rec, "timeout");
    assert!(out.stderr.contains("timeout of 300ms"), "{}", out.stderr);
}

#[test]
fn sleeping_forever_is_stopped_by_the_timeout() {
    // The step is blocked in a host call, not running wasm: epoch
    // interruption alone would never fire.
    let (_ws, out, rec) = run_with_limits(&["sleep", "100000"], "timeout = \"300ms\"\n");
    assert_limit(&out, &rec, "timeout");
}

#[test]
fn a_memory_bomb_is_stopped_by_the_memory_limit() {
    let (_ws, out, rec) = run_with_limits(&["alloc"], "memory = \"64MiB\"\n");
    assert_limit(&out, &rec, "memory");
    let peak = rec["usage"]["peak_memory"].as_u64().unwrap();
    assert!(peak <= 64 << 20, "peak {peak} above the limit");
    assert!(peak > 16 << 20, "the bomb did allocate ({peak})");
}

#[test]
fn deep_recursion_exhausting_the_wasm_stack_traps_with_a_clear_message() {
    let (_ws, out, rec) = run_with_limits(&["recurse-small"], "");
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(rec["termination"]["kind"], "trapped");
    let msg = rec["termination"]["message"].as_str().unwrap();
    assert!(msg.contains("call stack exhausted"), "{msg}");
    assert!(
        out.stderr.contains("call stack exhausted"),
        "{}",
        out.stderr
    );
}

#[test]
fn deep_recursion_overflowing_the_shadow_stack_traps() {
    // Rust keeps large frames on a stack in linear memory; overflowing it
    // runs off the bottom of memory, which is a trap, not a corruption.
    let (_ws, out, rec) = run_with_limits(&["recurse"], "");
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(rec["termination"]["kind"], "trapped");
    let msg = rec["termination"]["message"].as_str().unwrap();
    assert!(
        msg.contains("out of bounds memory access") || msg.contains("call stack exhausted"),
        "{msg}"
    );
}

#[test]
fn a_guest_panic_fails_the_step_not_the_runner() {
    let (_ws, out, rec) = run_with_limits(
        &["write", "/out/partial.txt", "half", "--", "panic", "boom"],
        "",
    );
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(rec["termination"]["kind"], "trapped");
    assert!(
        out.stderr.contains("probe panicked on purpose: boom"),
        "the guest's panic message is shown: {}",
        out.stderr
    );
    assert!(
        rec["termination"]["message"]
            .as_str()
            .unwrap()
            .contains("unreachable"),
        "{rec:#}"
    );
}

#[test]
fn a_stdout_flood_is_capped_without_buffering() {
    let (ws, out, rec) = run_with_limits(&["flood-stdout", "8388608"], "stdout = \"64KiB\"\n");
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(rec["stdout"]["truncated"], true);
    assert_eq!(rec["stdout"]["bytes_captured"], 65536);
    assert!(rec["stdout"]["bytes_written"].as_u64().unwrap() >= 8 << 20);
    let log = rec["stdout"]["log"].as_str().unwrap();
    assert_eq!(std::fs::metadata(log).unwrap().len(), 65536);
    // What reached the terminal is bounded by the cap too (plus prefixes).
    assert!(
        out.stdout.len() < 2 * 65536,
        "forwarded {} bytes",
        out.stdout.len()
    );
    assert!(
        out.stderr.contains("output cut at 65536 bytes"),
        "{}",
        out.stderr
    );
    drop(ws);
}

#[test]
fn a_disk_flood_is_stopped_by_the_output_limit() {
    let (ws, out, rec) = run_with_limits(&["flood-disk", "/out/big.bin"], "output = \"8MiB\"\n");
    assert_limit(&out, &rec, "output");
    assert!(!ws.path("out").exists(), "nothing published");
    let kept = rec["outputs"]["withheld"]["kept_at"].as_str().unwrap();
    let size: u64 = snapshot(std::path::Path::new(kept))
        .iter()
        .map(|(_, b)| b.len() as u64)
        .sum();
    // Stopped soon after the limit, long before the disk fills.
    assert!((8 << 20..1 << 30).contains(&size), "kept {size} bytes");
}

#[test]
fn a_many_files_flood_is_stopped_by_the_output_limit() {
    let (_ws, out, rec) = run_with_limits(&["many-files", "/out"], "output = \"1MiB\"\n");
    assert_limit(&out, &rec, "output");
    let kept = rec["outputs"]["withheld"]["kept_at"].as_str().unwrap();
    let files = snapshot(std::path::Path::new(kept)).len();
    // Each entry is charged at least 4 KiB: 1 MiB allows ~256.
    assert!((256..1_000_000).contains(&files), "{files} files");
}

/// A step with `floats = "native"` runs on a second engine; every limit
/// holds there too (its epoch is ticked, its fuel metered, its memory
/// bounded).
#[test]
fn limits_hold_for_a_step_with_native_floats() {
    let native = |args: &[&str], limits: &str| {
        let ws = Workspace::new();
        ws.step(
            PROBE,
            args,
            &("floats = \"native\"\n\n".to_string()
                + &mount("/out", "out", "write")
                + "[limits]\n"
                + limits),
        );
        let out = ws.run(&[]);
        let rec = ws.record();
        assert_eq!(
            rec["reproducibility"]["nan_canonicalization"], false,
            "{rec:#}"
        );
        (out, rec)
    };
    let (out, rec) = native(
        &["spin"],
        "fuel = 9_000_000_000_000_000\ntimeout = \"300ms\"\n",
    );
    assert_limit(&out, &rec, "timeout");
    let (out, rec) = native(&["spin"], "fuel = 50_000_000\n");
    assert_limit(&out, &rec, "fuel");
    let (out, rec) = native(&["alloc"], "memory = \"64MiB\"\n");
    assert_limit(&out, &rec, "memory");
}
