//! A damaged or hostile state directory: cache entries, records and
//! compiled components that someone edited, and files that are not what
//! they claim to be. Nothing read from the state directory is trusted
//! blindly; each case either means "do the work again" or is refused, and
//! none of them crashes or hangs the runner.

use crate::harness::*;
use cordon_test_artifacts::PROBE;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Writes `<name>.toml`: the probe as step `name` with `args` and `rest`.
fn probe_step(ws: &Workspace, name: &str, args: &[&str], rest: &str) {
    let digest = ws.component(PROBE, "probe.wasm");
    let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    ws.write(
        &format!("{name}.toml"),
        format!(
            "[step]\nname = \"{name}\"\ncomponent = \"probe.wasm\"\ndigest = \"{digest}\"\nargs = [{}]\n\n{rest}",
            args.join(", ")
        ),
    );
}

fn pipeline(ws: &Workspace, entries: &[&str]) {
    let mut text = String::from("[pipeline]\nname = \"test\"\n\n");
    for e in entries {
        text.push_str(&format!("[[step]]\n{e}\n\n"));
    }
    ws.write("pipeline.toml", text);
}

/// `a` writes `a-out/x.txt`; `b` copies it to `b-out/y.txt`.
fn two_step_pipeline(ws: &Workspace) {
    probe_step(
        ws,
        "a",
        &["write", "/out/x.txt", "hello"],
        &mount("/out", "a-out", "write"),
    );
    probe_step(
        ws,
        "b",
        &["read", "/in/x.txt", "--", "write", "/out/y.txt", "copied"],
        &(mount("/in", "a-out", "read") + &mount("/out", "b-out", "write")),
    );
    pipeline(ws, &["manifest = \"a.toml\"", "manifest = \"b.toml\""]);
}

fn statuses(ws: &Workspace, report: &str) -> Vec<(String, String)> {
    let v: Value = serde_json::from_slice(&std::fs::read(ws.path(report)).unwrap()).unwrap();
    v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Every action-cache entry of the workspace's state directory.
fn cache_entries(ws: &Workspace) -> Vec<PathBuf> {
    let dir = ws.path(".cordon/cache/actions");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("no action cache at {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "the first run left cache entries");
    v
}

/// Rewrites every cache entry with `edit`.
fn edit_cache_entries(ws: &Workspace, edit: impl Fn(&mut Value)) {
    for p in cache_entries(ws) {
        let mut v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        edit(&mut v);
        std::fs::write(&p, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    }
}

/// Sets the digest of every file entry of every cached output to `digest`.
fn set_cached_digests(v: &mut Value, digest: &str) {
    for o in v["outputs"].as_array_mut().unwrap() {
        for e in o["entries"].as_array_mut().unwrap() {
            if e.get("sha256").is_some() {
                e["sha256"] = Value::from(digest);
            }
        }
    }
}

/// A damaged cache entry is a miss: the pipeline runs every step again,
/// succeeds, and says why it did not use the entry.
fn assert_damaged_cache_means_run(ws: &Workspace, what: &str) {
    let out = ws.cordon(&["run", "pipeline.toml", "--report", "json=r2.json"], &[]);
    assert_eq!(out.code, 0, "{what}: {out:?}");
    assert_eq!(
        statuses(ws, "r2.json"),
        vec![
            ("a".to_string(), "succeeded".to_string()),
            ("b".to_string(), "succeeded".to_string())
        ],
        "{what}: {out:?}"
    );
    assert!(
        out.stderr.contains("damaged cache entry"),
        "{what}: says the entry was damaged: {}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_to_string(ws.path("b-out/y.txt")).unwrap(),
        "copied",
        "{what}"
    );
}

#[test]
fn a_cache_entry_with_a_short_digest_means_run_the_step() {
    let ws = Workspace::new();
    two_step_pipeline(&ws);
    let first = ws.cordon(&["run", "pipeline.toml"], &[]);
    assert_eq!(first.code, 0, "{first:?}");
    edit_cache_entries(&ws, |v| set_cached_digests(v, "x"));
    assert_damaged_cache_means_run(&ws, "a one-character digest");
}

#[test]
fn an_empty_or_torn_cache_entry_left_by_a_power_failure_means_run_the_step() {
    // Cache entries are hints and are not fsynced: after a power failure
    // one may be empty or cut short. Either is a miss, never an error.
    for (what, cut) in [("empty", 0usize), ("torn", 17)] {
        let ws = Workspace::new();
        two_step_pipeline(&ws);
        let first = ws.cordon(&["run", "pipeline.toml"], &[]);
        assert_eq!(first.code, 0, "{first:?}");
        for p in cache_entries(&ws) {
            let bytes = std::fs::read(&p).unwrap();
            std::fs::write(&p, &bytes[..cut.min(bytes.len())]).unwrap();
        }
        assert_damaged_cache_means_run(&ws, what);
    }
}

#[test]
fn a_cache_entry_with_a_multibyte_digest_does_not_panic() {
    let ws = Workspace::new();
    two_step_pipeline(&ws);
    assert_eq!(ws.cordon(&["run", "pipeline.toml"], &[]).code, 0);
    edit_cache_entries(&ws, |v| set_cached_digests(v, "aé"));
    assert_damaged_cache_means_run(&ws, "a digest cut inside a character");
}

#[test]
fn a_cache_entry_that_names_no_digest_or_an_escaping_path_means_run_the_step() {
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "a file entry without a digest",
            Box::new(|v: &mut Value| {
                for o in v["outputs"].as_array_mut().unwrap() {
                    for e in o["entries"].as_array_mut().unwrap() {
                        e.as_object_mut().unwrap().remove("sha256");
                    }
                }
            }),
        ),
        (
            "a path that climbs out of the output",
            Box::new(|v: &mut Value| {
                for o in v["outputs"].as_array_mut().unwrap() {
                    for e in o["entries"].as_array_mut().unwrap() {
                        e["path"] = Value::from("../escaped.txt");
                    }
                }
            }),
        ),
        (
            "an unknown kind",
            Box::new(|v: &mut Value| {
                for o in v["outputs"].as_array_mut().unwrap() {
                    for e in o["entries"].as_array_mut().unwrap() {
                        e["kind"] = Value::from("symlink");
                    }
                }
            }),
        ),
    ];
    for (what, edit) in cases {
        let ws = Workspace::new();
        two_step_pipeline(&ws);
        assert_eq!(ws.cordon(&["run", "pipeline.toml"], &[]).code, 0, "{what}");
        edit_cache_entries(&ws, edit);
        assert_damaged_cache_means_run(&ws, what);
        assert!(
            !ws.path("escaped.txt").exists() && !ws.path(".cordon/staging/escaped.txt").exists(),
            "{what}: nothing was written outside the output"
        );
    }
}

/// A workspace whose `dev` environment signs its records.
fn signed_workspace() -> Workspace {
    let ws = Workspace::new();
    let out = ws.cordon(&["key", "generate", "--env", "dev"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    ws
}

fn record_path_of(ws: &Workspace, run: &str) -> PathBuf {
    ws.path(&format!(".cordon/records/{run}.json"))
}

/// Runs the single-step pipeline `gen` writing `host`; returns its run id.
fn gen_run(ws: &Workspace, host: &str) -> String {
    probe_step(
        ws,
        "gen",
        &["write", "/out/v.txt", "generated"],
        &mount("/out", host, "write"),
    );
    pipeline(ws, &["manifest = \"gen.toml\""]);
    let out = ws.cordon(&["run", "pipeline.toml"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    ws.latest_record("gen")["run_id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn restore_of_an_edited_record_touches_nothing() {
    for signed in [false, true] {
        let ws = if signed {
            signed_workspace()
        } else {
            Workspace::new()
        };
        let run = gen_run(&ws, "out");
        ws.write("victim/keep.txt", "precious");
        let before = snapshot(&ws.path("victim"));
        // Point the record's output at another directory.
        let path = record_path_of(&ws, &run);
        let mut rec: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for m in rec["mounts"].as_array_mut().unwrap() {
            if m["access"] == "write" {
                m["host"] = Value::from(ws.path("victim").display().to_string());
            }
        }
        std::fs::write(&path, serde_json::to_vec_pretty(&rec).unwrap()).unwrap();

        let out = ws.cordon(&["restore", "--run", &run], &[]);
        assert_eq!(out.code, 1, "signed={signed}: refused: {out:?}");
        assert!(
            out.stderr.contains("does not verify") && out.stderr.contains("modified"),
            "signed={signed}: says why: {}",
            out.stderr
        );
        assert_eq!(
            snapshot(&ws.path("victim")),
            before,
            "signed={signed}: the directory the edited record names is untouched"
        );
        assert!(
            !ws.path(".cordon/staging").exists()
                || std::fs::read_dir(ws.path(".cordon/staging"))
                    .unwrap()
                    .next()
                    .is_none(),
            "signed={signed}: nothing staged"
        );
    }
}

/// Staging directories a restore left behind.
fn restore_leftovers(ws: &Workspace) -> Vec<String> {
    std::fs::read_dir(ws.path(".cordon/staging"))
        .into_iter()
        .flatten()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("restore-"))
        .collect()
}

#[test]
fn a_failed_restore_leaves_no_staging() {
    let ws = Workspace::new();
    ws.mkdir("deep");
    let run = gen_run(&ws, "deep/out");
    // The output's parent is now a file: publishing must fail.
    std::fs::remove_dir_all(ws.path("deep")).unwrap();
    ws.write("deep", "not a directory");
    let failed = ws.cordon(&["restore", "--run", &run], &[]);
    assert_eq!(failed.code, 3, "{failed:?}");
    assert_eq!(
        restore_leftovers(&ws),
        Vec::<String>::new(),
        "a failed restore removes its staging: {failed:?}"
    );
    // Once the cause is fixed, the restore goes through.
    std::fs::remove_file(ws.path("deep")).unwrap();
    ws.mkdir("deep");
    let ok = ws.cordon(&["restore", "--run", &run], &[]);
    assert_eq!(ok.code, 0, "{ok:?}");
    assert_eq!(
        std::fs::read_to_string(ws.path("deep/out/v.txt")).unwrap(),
        "generated"
    );
    assert_eq!(restore_leftovers(&ws), Vec::<String>::new());
}

/// The compiled artifacts in `dir`.
fn compiled_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("no compile cache at {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    v.sort();
    v
}

#[test]
fn a_flipped_byte_in_a_compiled_component_recompiles_and_never_crashes() {
    let ws = Workspace::new();
    ws.step(PROBE, &["print", "alive"], "");
    // A compile cache of this test's own, so no other test sees the damage.
    let cache = ws.mkdir("compile-cache");
    let cache_var = cache.display().to_string();
    let env = [("CORDON_COMPILE_CACHE", cache_var.as_str())];
    let first = ws.run(&env);
    assert_eq!(first.code, 0, "{first:?}");
    let files = compiled_files(&cache);
    assert_eq!(files.len(), 1, "one compiled component: {files:?}");
    let original = std::fs::read(&files[0]).unwrap();
    const RUNS: usize = 20;
    for i in 0..RUNS {
        // Four bytes in a row at an offset that walks the whole file, the
        // header and the code alike.
        let at = i * (original.len() - 4) / (RUNS - 1);
        let mut damaged = original.clone();
        for b in &mut damaged[at..at + 4] {
            *b ^= 0x5a;
        }
        std::fs::write(&files[0], &damaged).unwrap();
        let out = ws.run(&env);
        assert_eq!(out.code, 0, "flip at {at}: {out:?}");
        assert!(
            out.stdout.contains("alive"),
            "flip at {at}: the step ran: {out:?}"
        );
        assert!(
            out.stderr.contains("recompiling"),
            "flip at {at}: says it recompiled: {}",
            out.stderr
        );
    }
    // The recompiled artifact is trusted again on the next run.
    let again = ws.run(&env);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(!again.stderr.contains("recompiling"), "{}", again.stderr);
}

#[test]
fn a_component_that_is_a_fifo_is_refused_not_waited_on() {
    let ws = Workspace::new();
    let fifo = ws.path("fifo.wasm");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    ws.write(
        "step.toml",
        format!(
            "[step]\nname = \"f\"\ncomponent = \"fifo.wasm\"\ndigest = \"sha256:{}\"\n",
            "0".repeat(64)
        ),
    );
    for cmd in ["plan", "run"] {
        let out = ws.cordon(&[cmd, "step.toml"], &[]);
        assert_eq!(out.code, 2, "{cmd}: {out:?}");
        assert!(
            out.stderr.contains("fifo.wasm") && out.stderr.contains("not a regular file"),
            "{cmd}: names the file and why: {}",
            out.stderr
        );
    }
}

#[test]
fn a_dev_zero_manifest_in_a_pipeline_is_refused() {
    let ws = Workspace::new();
    pipeline(&ws, &["manifest = \"/dev/zero\""]);
    for cmd in ["plan", "run"] {
        let out = ws.cordon(&[cmd, "pipeline.toml"], &[]);
        assert_eq!(out.code, 2, "{cmd}: {out:?}");
        assert!(
            out.stderr.contains("/dev/zero") && out.stderr.contains("not a regular file"),
            "{cmd}: {}",
            out.stderr
        );
    }
}

#[test]
fn a_generated_pipeline_of_several_megabytes_is_read_and_a_larger_than_32_mib_one_refused() {
    // Ten thousand inline steps weigh a few megabytes: over the 1 MiB of a
    // manifest, well under the pipeline cap.
    let ws = Workspace::new();
    two_step_pipeline(&ws);
    let text = std::fs::read_to_string(ws.path("pipeline.toml")).unwrap();
    let padding = "# generated\n".repeat((3 << 20) / 12);
    ws.write("pipeline.toml", format!("{padding}{text}"));
    let out = ws.cordon(&["plan", "pipeline.toml"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    let padding = "# generated\n".repeat((33 << 20) / 12);
    ws.write("pipeline.toml", format!("{padding}{text}"));
    let out = ws.cordon(&["plan", "pipeline.toml"], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("larger than"), "{}", out.stderr);
}

#[test]
fn a_dev_zero_component_is_refused() {
    let ws = Workspace::new();
    ws.write(
        "step.toml",
        format!(
            "[step]\nname = \"z\"\ncomponent = \"/dev/zero\"\ndigest = \"sha256:{}\"\n",
            "0".repeat(64)
        ),
    );
    pipeline(&ws, &["manifest = \"step.toml\""]);
    for file in ["step.toml", "pipeline.toml"] {
        let out = ws.cordon(&["plan", file], &[]);
        assert_eq!(out.code, 2, "{file}: {out:?}");
        assert!(
            out.stderr.contains("/dev/zero") && out.stderr.contains("not a regular file"),
            "{file}: {}",
            out.stderr
        );
    }
}

#[test]
fn an_oversized_component_is_refused() {
    let ws = Workspace::new();
    // Sparse: one byte over the limit costs no disk.
    let big = std::fs::File::create(ws.path("big.wasm")).unwrap();
    big.set_len(cordon_manifest::plan::MAX_COMPONENT_BYTES + 1)
        .unwrap();
    ws.write(
        "step.toml",
        format!(
            "[step]\nname = \"big\"\ncomponent = \"big.wasm\"\ndigest = \"sha256:{}\"\n",
            "0".repeat(64)
        ),
    );
    let out = ws.cordon(&["run", "step.toml"], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("big.wasm") && out.stderr.contains("larger than 256 MiB"),
        "names the file and the limit: {}",
        out.stderr
    );
    assert!(ws.records().is_empty(), "nothing ran");
}

#[test]
fn verify_does_not_hash_outputs_of_a_record_that_already_failed() {
    let ws = Workspace::new();
    let run = gen_run(&ws, "out");
    // The edited record names a host path that cannot be read: hashing it
    // would add a second finding.
    let path = record_path_of(&ws, &run);
    let mut rec: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    for m in rec["mounts"].as_array_mut().unwrap() {
        if m["access"] == "write" {
            m["host"] = Value::from(ws.path("no-such-dir").display().to_string());
        }
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&rec).unwrap()).unwrap();
    let out = ws.cordon(&["verify", "--run", &run], &[]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout.contains("the record was modified"),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains("no-such-dir"),
        "the outputs of a record that failed are not hashed: {}",
        out.stdout
    );
}
