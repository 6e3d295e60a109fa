//! A hostile step attacks the limits themselves: it spends the runner's
//! memory outside its own memory limit (header maps it never drops,
//! refused requests the runner logs), writes past the output limit where
//! the measurement does not look (one burst just before exiting; while it
//! holds every descriptor the runner has; below a tree too deep to name),
//! and a manifest binds a secret to a plain http host. Each attack must
//! stop the step or be bounded, and leave a record that says why.
//!
//! Memory is judged against a plain run of the same component measured in
//! the same test, never against a fixed number or a time.

use crate::harness::*;
use cordon_test_artifacts::{HOSTILE, HTTP_PROBE, PROBE};

const MIB: u64 = 1 << 20;

/// The step's own memory limit in these tests.
const STEP_MEMORY: &str = "memory = \"64MiB\"\n";

/// A grant the attacks never match: every request they make is refused.
const NETWORK: &str = "[network]\nallow = [\"http://127.0.0.1:9/allowed/\"]\n\n";

/// Runs the http probe with `args` under a 64 MiB memory limit; returns
/// the run, the runner's peak RSS, the one record and its size in bytes.
fn http_probe_measured(args: &[&str]) -> (Output, u64, serde_json::Value, u64) {
    let ws = Workspace::new();
    ws.step(
        HTTP_PROBE,
        args,
        &format!("{NETWORK}[limits]\n{STEP_MEMORY}requests = 100_000\n"),
    );
    let (out, peak) = ws.cordon_measured(&["run", "step.toml"], &[], None);
    eprintln!("{args:?}: peak RSS of the runner {} MiB", peak / MIB);
    let rec = ws.record();
    let size = ws
        .records_paths()
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    (out, peak, rec, size)
}

#[test]
fn thousands_of_full_header_maps_never_dropped_are_stopped_at_the_resource_cap() {
    let (plain, plain_peak, rec, _) = http_probe_measured(&["hoard-fields", "1", "12288"]);
    assert_eq!(plain.code, 0, "{plain:?}");
    assert_eq!(rec["success"], true, "{rec:#}");

    // Each map holds 12 KiB of values (with wasmtime's own accounting of
    // each entry, just under the 16 KiB per map): with no cap on the
    // resources a step holds, 20,000 of them were 240 MB of runner memory.
    let (out, peak, rec, size) = http_probe_measured(&["hoard-fields", "20000", "12288"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(rec["success"], false, "{rec:#}");
    assert_eq!(rec["termination"]["kind"], "limit-exceeded", "{rec:#}");
    assert_eq!(rec["termination"]["limit"], "resources", "{rec:#}");
    let why = rec["termination"]["message"].as_str().unwrap();
    assert!(why.contains("held 2048 resources at once"), "{why}");
    assert!(
        out.stderr.contains(why),
        "the runner says why: {}",
        out.stderr
    );
    assert!(
        !out.stdout.contains("hoard-fields: 20000 maps"),
        "the step was stopped before it held them all: {}",
        out.stdout
    );
    // The maps are bounded by MAX_RESOURCES × MAX_HTTP_FIELDS_BYTES
    // (32 MiB); 64 MiB more than a plain run leaves room for the maps'
    // own bookkeeping and for the step's linear memory.
    assert!(
        peak < plain_peak + 64 * MIB,
        "peak RSS {} MiB against {} MiB for a plain run",
        peak / MIB,
        plain_peak / MIB
    );
    assert!(size < MIB, "record of {size} bytes");
}

#[test]
fn thousands_of_refused_requests_with_long_urls_leave_the_runner_and_the_record_small() {
    let (plain, plain_peak, _, plain_size) =
        http_probe_measured(&["refused", "1", "16384", "http://127.0.0.1:9/denied"]);
    assert_eq!(plain.code, 0, "{plain:?}");

    // 5,000 URLs of 16 KiB are 80 MB, if the runner kept them.
    let (out, peak, rec, size) =
        http_probe_measured(&["refused", "5000", "16384", "http://127.0.0.1:9/denied"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("refused: 5000 requests"),
        "{}",
        out.stdout
    );
    let calls = rec["network"].as_array().unwrap();
    assert_eq!(calls.len(), 256, "the list stops at its bound");
    assert!(calls.iter().all(|c| c["outcome"] == "refused"));
    assert!(
        calls
            .iter()
            .all(|c| c["url"].as_str().unwrap().len() < 2_100)
    );
    assert_eq!(rec["network_omitted"]["refused"], 5000 - 256);
    // The documented bound of a record's network part is about 1.25 MiB
    // (net::MAX_RECORDED_CALLS); every URL kept was 80 MB.
    assert!(
        size < plain_size + 2 * MIB,
        "record of {size} bytes against {plain_size} for one request"
    );
    assert!(
        peak < plain_peak + 64 * MIB,
        "peak RSS {} MiB against {} MiB for a plain run",
        peak / MIB,
        plain_peak / MIB
    );
}

/// `probe ARGS` writing to `/out` with `[limits] output = "8MiB"`, run
/// with the descriptor limits `nofile` when given.
fn probe_against_output_limit(args: &[&str], nofile: Option<(u64, u64)>) -> (Workspace, Output) {
    let ws = Workspace::new();
    ws.step(
        PROBE,
        args,
        &(mount("/out", "out", "write") + "[limits]\noutput = \"8MiB\"\n"),
    );
    let (out, _) = ws.cordon_measured(&["run", "step.toml"], &[], nofile);
    (ws, out)
}

/// The step failed on its output limit, the record and the terminal say
/// so, and `/out` was not published.
fn assert_stopped_by_the_output_limit(ws: &Workspace, out: &Output) -> String {
    assert_eq!(out.code, 1, "{out:?}");
    let rec = ws.record();
    assert_eq!(rec["success"], false, "{rec:#}");
    assert_eq!(rec["termination"]["kind"], "limit-exceeded", "{rec:#}");
    assert_eq!(rec["termination"]["limit"], "output", "{rec:#}");
    let why = rec["termination"]["message"].as_str().unwrap().to_string();
    assert!(out.stderr.contains(&why), "{}", out.stderr);
    assert!(!ws.path("out").exists(), "nothing published");
    why
}

#[test]
fn a_burst_past_the_output_limit_just_before_exit_fails_the_step() {
    // Whether a poll of the watchdog falls inside the burst is chance; a
    // runner that judged only by its polls lets most bursts through, so
    // three of them catch it almost surely.
    for _ in 0..3 {
        let (ws, out) = probe_against_output_limit(&["burst", "/out/big.bin", "10485760"], None);
        let why = assert_stopped_by_the_output_limit(&ws, &out);
        assert!(why.contains("output limit of 8.0 MiB exceeded"), "{why}");
    }
}

#[test]
fn a_step_holding_every_descriptor_cannot_write_past_the_output_limit() {
    // With the hard limit at 512 the runner cannot raise its own: the
    // step's open files take what the measurement needs.
    let (ws, out) = probe_against_output_limit(
        &["hold-files-then-write", "/out", "50331648"],
        Some((512, 512)),
    );
    assert!(
        !out.stdout.contains("hold-files-then-write: ok"),
        "the step was stopped before it wrote 48 MiB: {}",
        out.stdout
    );
    let why = assert_stopped_by_the_output_limit(&ws, &out);
    assert!(why.contains("could not be measured"), "{why}");
}

#[test]
fn a_tree_deeper_than_any_path_fails_the_step_and_leaves_a_record() {
    let ws = Workspace::new();
    let set = ws.cordon_with_input(&["secret", "set", "token"], &[], Some(b"deep-value-5e2a"));
    assert_eq!(set.code, 0, "{set:?}");
    // 2,100 levels: `d/` 2,100 times is longer than PATH_MAX (4,096).
    ws.step(
        HOSTILE,
        &["deep-tree", "token", "/out", "2100"],
        &(mount("/out", "out", "write") + "[[secret]]\nname = \"token\"\nuses = [\"reveal\"]\n"),
    );
    let out = ws.run(&[]);
    assert_eq!(out.code, 1, "{out:?}");
    let rec = ws.record();
    assert_eq!(rec["success"], false, "{rec:#}");
    assert_eq!(rec["termination"]["kind"], "limit-exceeded", "{rec:#}");
    let why = rec["termination"]["message"].as_str().unwrap();
    assert!(why.contains("deeper than 64 directories"), "{why}");
    assert!(
        out.stderr.contains("deeper than 64 directories"),
        "{}",
        out.stderr
    );
    assert!(!ws.path("out").exists(), "nothing published");
    assert!(
        rec["outputs"]["withheld"]["kept_at"].is_null(),
        "nothing of the tree kept: {rec:#}"
    );
    let staging = ws.path(".cordon/staging");
    assert!(
        !staging.exists() || std::fs::read_dir(&staging).unwrap().next().is_none(),
        "staging left behind: {:?}",
        snapshot(&staging).first()
    );
    assert!(!contains(&ws.state_bytes(), b"deep-value-5e2a"));
}

#[test]
fn audit_flags_a_secret_bound_to_a_plain_http_host() {
    let ws = Workspace::new();
    let manifest = |hosts: &str| {
        format!(
            "[step]\nname = \"upload\"\ncomponent = \"upload.wasm\"\n\
             digest = \"sha256:0000000000000000000000000000000000000000000000000000000000000000\"\n\n\
             [network]\nallow = [\"http://registry.internal:8080/\", \"https://api.example/\"]\n\n\
             [[secret]]\nname = \"registry-token\"\nuses = [\"http-header\"]\nhosts = [{hosts}]\n"
        )
    };
    ws.write("step.toml", manifest("\"http://registry.internal:8080\""));
    let out = ws.cordon(&["audit", "step.toml"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains(
            "  risk         secret-over-plain-http: secret registry-token is sent as a header over plain http to http://registry.internal:8080: every hop on the way can read it\n"
        ),
        "{}",
        out.stdout
    );
    let json = ws.cordon(&["audit", "step.toml", "--format", "json"], &[]);
    assert_eq!(json.code, 0, "{json:?}");
    assert!(
        json.stdout.contains("\"secret-over-plain-http\""),
        "{json:?}"
    );

    // The same secret bound to an https host raises no such flag.
    ws.write("step.toml", manifest("\"api.example\""));
    let out = ws.cordon(&["audit", "step.toml"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        !out.stdout.contains("secret-over-plain-http"),
        "{}",
        out.stdout
    );
}
