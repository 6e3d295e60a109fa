//! A runner killed at every point of a step's commit, and at random
//! moments: nothing is published without a chained record, `verify` names
//! the unfinished run and points at `repair`, `repair` completes or rolls
//! it back, and the next run works.
//!
//! The chosen points need the `fault-injection` feature (the test command
//! enables it): `CORDON_FAULT=<point>` aborts the runner there, as
//! `kill -9` would.

use crate::harness::*;
use cordon_test_artifacts::CHECKSUM;

/// A signed workspace whose checksum step has published once, with its
/// input then changed so the next run publishes a different tree.
fn published_once() -> Workspace {
    let ws = Workspace::new();
    let out = ws.cordon(&["key", "generate", "--env", "dev"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    ws.write("data/a.txt", "alpha\n");
    ws.step(
        CHECKSUM,
        &["--input", "/in", "--output", "/out"],
        &(mount("/in", "data", "read") + &mount("/out", "sums", "write")),
    );
    let out = ws.run(&[]);
    assert_eq!(out.code, 0, "{out:?}");
    ws.write("data/a.txt", "alpha, changed\n");
    ws
}

#[cfg(feature = "fault-injection")]
fn sums(ws: &Workspace) -> String {
    std::fs::read_to_string(ws.path("sums/SHA256SUMS")).unwrap()
}

/// After a kill: what verify says, then repair, then verify and a new run.
fn recover(ws: &Workspace, expect_interrupted: bool) {
    let v = ws.cordon(&["verify"], &[]);
    if expect_interrupted {
        assert_eq!(v.code, 1, "verify names the unfinished run: {v:?}");
        assert!(v.stdout.contains("cordon repair"), "{v:?}");
    }
    let dry = ws.cordon(&["repair", "--dry-run"], &[]);
    assert!(dry.code == 0 || dry.code == 1, "{dry:?}");
    let r = ws.cordon(&["repair"], &[]);
    assert_eq!(r.code, 0, "{r:?}");
    let v = ws.cordon(&["verify"], &[]);
    assert_eq!(v.code, 0, "after repair every record holds: {v:?}");
    assert!(
        std::fs::read_dir(ws.path(".cordon/staging"))
            .map(|d| d.count() == 0)
            .unwrap_or(true),
        "no staging is left"
    );
    let again = ws.cordon(&["run", "step.toml", "--no-cache"], &[]);
    assert_eq!(again.code, 0, "the next run works: {again:?}");
    let v = ws.cordon(&["verify"], &[]);
    assert_eq!(v.code, 0, "{v:?}");
}

#[cfg(feature = "fault-injection")]
fn killed_at(point: &str) -> (Workspace, String) {
    let ws = published_once();
    let old = sums(&ws);
    let out = ws.run(&[("CORDON_FAULT", point)]);
    assert_ne!(out.code, 0, "the runner was stopped at {point}: {out:?}");
    (ws, old)
}

#[cfg(feature = "fault-injection")]
#[test]
fn killed_before_its_intent_a_run_publishes_nothing() {
    let (ws, old) = killed_at("before-intent");
    assert_eq!(sums(&ws), old, "the old outputs stand");
    assert_eq!(ws.records().len(), 1, "no record of the killed run");
    let v = ws.cordon(&["verify"], &[]);
    assert_eq!(v.code, 1, "verify names the stopped run: {v:?}");
    assert!(v.stdout.contains("stopped while the step ran"), "{v:?}");
    recover(&ws, false);
}

#[cfg(feature = "fault-injection")]
#[test]
fn killed_after_its_intent_before_its_record_a_run_is_rolled_back() {
    let (ws, old) = killed_at("after-intent");
    assert_eq!(sums(&ws), old, "nothing was published without a record");
    assert_eq!(ws.records().len(), 1);
    recover(&ws, true);
    assert_ne!(sums(&ws), old, "the run after repair published");
}

#[cfg(feature = "fault-injection")]
#[test]
fn killed_after_writing_its_record_before_chaining_it_the_record_is_moved_aside() {
    let (ws, old) = killed_at("record-written");
    assert_eq!(sums(&ws), old);
    let v = ws.cordon(&["verify"], &[]);
    assert_eq!(v.code, 1, "{v:?}");
    assert!(v.stdout.contains("is not in the chain"), "{v:?}");
    recover(&ws, true);
    let orphaned = std::fs::read_dir(ws.path(".cordon/records/orphaned"))
        .unwrap()
        .count();
    assert!(orphaned >= 1, "the unchained record is kept aside");
}

#[cfg(feature = "fault-injection")]
#[test]
fn killed_after_its_record_before_publication_a_run_is_rolled_forward() {
    for point in [
        "after-record",
        "after-cache",
        "mid-exchange",
        "after-publish",
    ] {
        let (ws, old) = killed_at(point);
        let records = ws.records();
        assert_eq!(records.len(), 2, "{point}: the record is chained");
        let v = ws.cordon(&["verify"], &[]);
        assert_eq!(v.code, 1, "{point}: {v:?}");
        assert!(
            v.stdout.contains("stopped while publishing") && v.stdout.contains("cordon repair"),
            "{point}: {v:?}"
        );
        let r = ws.cordon(&["repair"], &[]);
        assert_eq!(r.code, 0, "{point}: {r:?}");
        assert!(r.stdout.contains("publication completed"), "{point}: {r:?}");
        assert_ne!(sums(&ws), old, "{point}: the recorded outputs are in place");
        // No leftover exchange trees beside the output.
        let beside: Vec<_> = std::fs::read_dir(ws.root())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("cordon-"))
            .collect();
        assert!(beside.is_empty(), "{point}: {beside:?}");
        recover(&ws, false);
    }
}

#[cfg(feature = "fault-injection")]
#[test]
fn a_cache_hit_killed_before_publication_is_completed_by_repair() {
    let ws = published_once();
    // Back to the first input: the next run is a cache hit of the first.
    ws.write("data/a.txt", "alpha\n");
    let first = sums(&ws);
    let out = ws.cordon(&["run", "step.toml", "--no-cache"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    ws.write("data/a.txt", "alpha, changed\n");
    let out = ws.run(&[]);
    assert_eq!(out.code, 0, "{out:?}");
    ws.write("data/a.txt", "alpha\n");
    let out = ws.run(&[("CORDON_FAULT", "after-record")]);
    assert_ne!(out.code, 0, "{out:?}");
    recover(&ws, true);
    assert_eq!(sums(&ws), first);
}

#[test]
fn runners_killed_at_random_moments_leave_nothing_unrecorded() {
    let ws = published_once();
    let mut interrupted = 0;
    for trial in 0..12u64 {
        ws.write("data/a.txt", format!("trial {trial}\n"));
        let mut child = std::process::Command::new(CORDON)
            .args(["run", "step.toml", "--quiet"])
            .current_dir(ws.root())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("CORDON_SECRETS_HOME", ws.secrets_home())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Spread the kills over a run's life: start-up, the step, the
        // commit. The delay is the experiment, not an assertion.
        std::thread::sleep(std::time::Duration::from_millis(trial * 9 % 110));
        let _ = child.kill();
        let status = child.wait().unwrap();
        if !status.success() {
            interrupted += 1;
        }
        let r = ws.cordon(&["repair"], &[]);
        assert_eq!(r.code, 0, "trial {trial}: {r:?}");
        let v = ws.cordon(&["verify"], &[]);
        assert_eq!(
            v.code, 0,
            "trial {trial}: after repair nothing is unrecorded: {v:?}"
        );
    }
    // The trials really interrupted runs (most are killed mid-way).
    assert!(interrupted > 0, "no run was interrupted");
    recover(&ws, false);
}

#[cfg(feature = "fault-injection")]
#[test]
fn a_worker_that_panics_fails_the_pipeline_with_exit_3_and_never_hangs() {
    let ws = Workspace::new();
    ws.write("data/a.txt", "alpha\n");
    ws.step(cordon_test_artifacts::PROBE, &["print", "hi"], "");
    ws.write(
        "pipeline.toml",
        "[pipeline]\nname = \"p\"\n\n[[step]]\nmanifest = \"step.toml\"\n",
    );
    // The harness kills a runner that does not finish within its hang
    // guard and fails the test: a hang cannot pass.
    let out = ws.cordon(
        &["run", "pipeline.toml"],
        &[("CORDON_FAULT", "worker-panic")],
    );
    assert_eq!(out.code, 3, "{out:?}");
    assert!(out.stderr.contains("fault point worker-panic"), "{out:?}");
}

#[cfg(feature = "fault-injection")]
#[test]
fn what_repair_did_is_appended_to_the_chain_signed_and_tamper_evident() {
    let (ws, _) = killed_at("after-record");
    let r = ws.cordon(&["repair"], &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("repair record:"), "{r:?}");
    let log = std::fs::read_to_string(ws.path(".cordon/records/chain.log")).unwrap();
    let last: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert!(
        last["envelope"].is_string(),
        "the repair record is signed: {last}"
    );
    let path = ws.path(&format!(
        ".cordon/records/{}.json",
        last["run"].as_str().unwrap()
    ));
    let record: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(record["format"], "cordon.repair-record/v1");
    assert!(
        record["actions"][0]
            .as_str()
            .unwrap()
            .contains("publication completed"),
        "{record}"
    );
    let v = ws.cordon(&["verify"], &[]);
    assert_eq!(v.code, 0, "{v:?}");
    // Nothing to do: nothing is appended.
    let lines = log.lines().count();
    assert_eq!(ws.cordon(&["repair"], &[]).code, 0);
    let again = std::fs::read_to_string(ws.path(".cordon/records/chain.log")).unwrap();
    assert_eq!(again.lines().count(), lines);
    // An edited repair record is detected.
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replacen("publication completed", "nothing happened", 1),
    )
    .unwrap();
    let v = ws.cordon(&["verify"], &[]);
    assert_eq!(v.code, 1, "{v:?}");
}

#[test]
fn a_cache_entry_for_a_run_without_a_chained_record_is_removed_by_repair() {
    let ws = published_once();
    let dir = ws.path(".cordon/cache/actions");
    let entry = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .expect("the run left a cache entry");
    let text = std::fs::read_to_string(&entry).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let run = v["run_id"].as_str().unwrap();
    // An entry whose run never got a chained record (an older runner's
    // order: the cache entry before the record).
    let ghost = format!("{}-ghost-{}", &run[..run.find('-').unwrap()], "0badf00d");
    std::fs::write(&entry, text.replace(run, &ghost)).unwrap();
    let dry = ws.cordon(&["repair", "--dry-run"], &[]);
    assert_eq!(dry.code, 1, "{dry:?}");
    assert!(
        dry.stdout
            .contains("points at a run without a chained record"),
        "{dry:?}"
    );
    assert!(entry.exists(), "a dry run changes nothing");
    let r = ws.cordon(&["repair"], &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!entry.exists(), "the stale entry is gone");
    assert_eq!(ws.cordon(&["verify"], &[]).code, 0);
}

/// Group commit: a step's record is sealed in a batch with whatever else
/// finished close to it, and the batch is made durable at once. A runner
/// killed after a step ended and its batch's files were written, but
/// before the batch was durable, must neither have published that step's
/// outputs nor started the step that depends on it.
#[cfg(feature = "fault-injection")]
#[test]
fn a_runner_killed_before_its_batch_is_durable_publishes_nothing_and_starts_no_dependent() {
    let ws = Workspace::new();
    let out = ws.cordon(&["key", "generate", "--env", "dev"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    let probe = ws.component(cordon_test_artifacts::PROBE, "probe.wasm");
    let step = |name: &str, args: &str, mounts: &str| {
        ws.write(
            &format!("{name}.toml"),
            format!(
                "[step]\nname = \"{name}\"\ncomponent = \"probe.wasm\"\ndigest = \"{probe}\"\nargs = [{args}]\n\n{mounts}"
            ),
        );
    };
    step(
        "a",
        "\"write\", \"/out/x.txt\", \"from a\"",
        &mount("/out", "a-out", "write"),
    );
    step(
        "b",
        "\"read\", \"/in/x.txt\", \"--\", \"write\", \"/out/y.txt\", \"copied\"",
        &(mount("/in", "a-out", "read") + &mount("/out", "b-out", "write")),
    );
    ws.write(
        "pipeline.toml",
        "[pipeline]\nname = \"p\"\n\n[[step]]\nmanifest = \"a.toml\"\n\n[[step]]\nmanifest = \"b.toml\"\n",
    );
    let out = ws.cordon(
        &["run", "pipeline.toml", "--jobs", "2"],
        &[("CORDON_FAULT", "batch-written")],
    );
    assert_ne!(out.code, 0, "the runner was stopped: {out:?}");
    assert!(out.stderr.contains("[a] started"), "a ran: {out:?}");
    assert!(
        !out.stderr.contains("[b] started"),
        "b depends on a, whose batch never became durable: {out:?}"
    );
    assert!(
        !ws.path("a-out/x.txt").exists(),
        "a's output was published without a durable record"
    );
    assert!(!ws.path("b-out").exists(), "b never ran");
    let log = ws.path(".cordon/records/chain.log");
    assert!(
        std::fs::read_to_string(&log).unwrap_or_default().is_empty(),
        "no log line lists a record of the unfinished batch"
    );
    // verify names the unfinished run; repair rolls it back; the pipeline
    // then runs.
    let v = ws.cordon(&["verify"], &[]);
    assert_eq!(v.code, 1, "{v:?}");
    assert!(v.stdout.contains("cordon repair"), "{v:?}");
    let r = ws.cordon(&["repair"], &[]);
    assert_eq!(r.code, 0, "{r:?}");
    let again = ws.cordon(&["run", "pipeline.toml"], &[]);
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(
        std::fs::read_to_string(ws.path("b-out/y.txt")).unwrap(),
        "copied"
    );
    let v = ws.cordon(&["verify"], &[]);
    assert_eq!(v.code, 0, "{v:?}");
}
