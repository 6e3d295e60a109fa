//! In-process figures for one trivial step: where the runner's time goes.
//!
//! The step is `plain` (a WASI command that prints one line) with an empty
//! read mount and a write mount, in an environment with a signing key, so
//! every stage a real step pays for is paid: config load, manifest parse
//! and digest check, policy, engine set-up, loading the compiled component
//! from the cache, instantiate + run (with and without the pooling
//! allocator), an atomic fsynced write, and the whole `run_step` (hash
//! inputs, stage, run, publish, signed and chained record).
//!
//! Run with `cargo bench -p cordon --bench overhead` (or `bench/run.sh`,
//! which runs every benchmark and writes the tables).

mod common;

use cordon_engine::exec::{RunOptions, run_step};
use cordon_manifest::config::WorkspaceConfig;
use cordon_manifest::manifest::{Limits, Manifest};
use cordon_manifest::plan::{PlanContext, StepPlan, plan_step};
use cordon_sandbox::{Grants, Sandbox, SandboxOptions, Stdio, StepComponent};
use criterion::{Criterion, criterion_group, criterion_main};
use sha2::Digest;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// A workspace with the trivial step, its config and a signing key.
struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    config: PathBuf,
    manifest: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().to_path_buf();
    let wasm =
        std::fs::read(cordon_test_artifacts::PLAIN).expect("plain.wasm (built by tests/artifacts)");
    std::fs::write(root.join("plain.wasm"), &wasm).unwrap();
    std::fs::create_dir_all(root.join("empty")).unwrap();
    let config = root.join("cordon.toml");
    std::fs::write(&config, "version = 1\n\n[env.bench]\nprotected = false\n").unwrap();
    let manifest = root.join("trivial.toml");
    std::fs::write(
        &manifest,
        format!(
            r#"[step]
name = "trivial"
component = "plain.wasm"
digest = "sha256:{}"

[[mount]]
guest = "/in"
host = "empty"
access = "read"
purpose = "an empty input"
classification = "public"

[[mount]]
guest = "/out"
host = "out"
access = "write"
purpose = "an output nobody writes"
classification = "public"
"#,
            hex::encode(sha2::Sha256::digest(&wasm))
        ),
    )
    .unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args([
            "key",
            "generate",
            "--env",
            "bench",
            "--if-missing",
            "--config",
        ])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run cordon key generate");
    assert!(status.success(), "cordon key generate failed");
    Fixture {
        _dir: dir,
        root,
        config,
        manifest,
    }
}

fn load_plan(f: &Fixture, state: &Path) -> (Manifest, StepPlan, WorkspaceConfig) {
    let manifest = Manifest::load(&f.manifest).expect("manifest");
    let workspace = WorkspaceConfig::discover(Some(&f.config), &f.root).expect("config");
    let plan = {
        let env = workspace.env("bench").expect("env");
        let ctx = PlanContext {
            env,
            workspace_dir: &workspace.dir,
            state_dir: state,
            produced: &[],
            hash_index: None,
        };
        plan_step(&manifest, &ctx).expect("plan")
    };
    (manifest, plan, workspace)
}

fn bare_grants() -> Grants {
    common::grants(vec!["trivial".into()], Vec::new(), Limits::default())
}

fn stages(c: &mut Criterion) {
    let f = fixture();
    let state = f.root.join(".cordon");
    let cache = state.join("compiled");
    let (manifest, plan, workspace) = load_plan(&f, &state);
    let env = workspace.env("bench").unwrap();

    let mut g = c.benchmark_group("stage");
    g.bench_function("config_load", |b| {
        b.iter(|| WorkspaceConfig::discover(Some(black_box(&f.config)), &f.root).unwrap())
    });
    g.bench_function("manifest_plan_digest_check", |b| {
        b.iter(|| {
            let m = Manifest::load(black_box(&f.manifest)).unwrap();
            let ctx = PlanContext {
                env,
                workspace_dir: &workspace.dir,
                state_dir: &state,
                produced: &[],
                hash_index: None,
            };
            plan_step(&m, &ctx).unwrap()
        })
    });
    g.bench_function("policy_check", |b| {
        b.iter(|| {
            let steps = [cordon_policy::policy::StepInput {
                manifest: &manifest,
                plan: &plan,
                cache: true,
            }];
            let input = cordon_policy::policy::input(env, &steps, &f.root).unwrap();
            let e = cordon_policy::policy::evaluate(env, input).unwrap();
            assert!(e.violations.is_empty());
            e
        })
    });
    g.bench_function("engine_setup", |b| {
        b.iter(|| Sandbox::new(Some(cache.clone())).unwrap())
    });
    let sandbox = Sandbox::new(Some(cache.clone())).unwrap();
    // Fill the compiled-component cache once; every load below reads it.
    let first = sandbox
        .load(&plan.component_digest, &plan.component_bytes)
        .unwrap();
    drop(first);
    g.bench_function("compile_cache_load", |b| {
        b.iter(|| {
            let c = sandbox
                .load(&plan.component_digest, &plan.component_bytes)
                .unwrap();
            assert!(c.from_cache, "the compiled cache must serve the load");
            c
        })
    });
    let record = vec![b'x'; 4096];
    let target = f.root.join("record.json");
    g.bench_function("atomic_fsynced_write_4k", |b| {
        b.iter(|| cordon_core::fsutil::write_atomic(&target, black_box(&record)).unwrap())
    });
    g.finish();
}

/// A sandbox (with or without the pooling allocator) and the step's
/// component loaded from the state directory's compiled cache.
fn loaded(state: &Path, plan: &StepPlan, pooling: bool) -> (Sandbox, StepComponent) {
    let sandbox = Sandbox::with_options(
        Some(state.join("compiled")),
        SandboxOptions {
            pooling,
            ..Default::default()
        },
    )
    .unwrap();
    let component = sandbox
        .load(&plan.component_digest, &plan.component_bytes)
        .unwrap();
    (sandbox, component)
}

fn instantiate(c: &mut Criterion) {
    let f = fixture();
    let state = f.root.join(".cordon");
    let (_, plan, _) = load_plan(&f, &state);
    let mut g = c.benchmark_group("instantiate_run");
    for (name, pooling) in [("default_allocator", false), ("pooling_allocator", true)] {
        let (sandbox, component) = loaded(&state, &plan, pooling);
        g.bench_function(name, |b| {
            b.iter(|| {
                let out = sandbox
                    .run(&component, bare_grants(), Stdio::discard())
                    .unwrap();
                assert!(out.termination.success());
                out
            })
        });
    }
    g.finish();
}

fn whole_step(c: &mut Criterion) {
    let f = fixture();
    let state = f.root.join(".cordon");
    let (_, plan, workspace) = load_plan(&f, &state);
    let env = workspace.env("bench").unwrap();
    // The key the run itself would use: the local store's, made by
    // `cordon key generate` outside the workspace.
    let signer = cordon_engine::keys::signer_for_run(env, &workspace.dir)
        .expect("the bench environment's key")
        .map(|k| Arc::new(k.signer));
    assert!(signer.is_some(), "the fixture's environment signs records");
    let mut g = c.benchmark_group("run_step");
    for (name, pooling, no_cache) in [
        ("executed_default_allocator", false, true),
        ("executed_pooling_allocator", true, true),
        ("cache_hit", false, false),
    ] {
        let (sandbox, component) = loaded(&state, &plan, pooling);
        let opts = RunOptions {
            quiet: true,
            no_cache,
            signer: signer.clone(),
            hash_index: Some(Arc::new(cordon_core::digest::HashIndex::in_memory())),
            ..RunOptions::default()
        };
        g.bench_function(name, |b| {
            b.iter(|| {
                let run = run_step(&plan, &sandbox, &component, Vec::new(), &opts).unwrap();
                assert!(run.record.success);
                assert_eq!(run.record.cache.hit, !no_cache);
                run
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    // Fewer samples than criterion's default: every iteration of the
    // whole-step group fsyncs several files, and the suite must finish in
    // minutes on two cores.
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(4));
    targets = stages, instantiate, whole_step
}
criterion_main!(benches);
