//! Compiles every crate under `steps/` to a wasm32-wasip2 component, the way
//! wasmtime's test-programs artifacts are built, and exposes their paths as
//! constants. A separate target directory keeps this nested cargo from
//! waiting on the outer build's lock, and keeps the step builds warm.

use std::path::{Path, PathBuf};
use std::process::Command;

/// (constant name, package, binary) for every step the tests run.
const STEPS: &[(&str, &str, &str)] = &[
    ("CHECKSUM", "cordon-step-checksum", "checksum"),
    ("CSV_VALIDATE", "cordon-step-csv-validate", "csv-validate"),
    ("PROBE", "cordon-test-probe", "probe"),
    ("HOSTILE", "cordon-test-hostile", "hostile"),
    ("PLAIN", "cordon-test-plain", "plain"),
    ("PSEUDONYMIZE", "cordon-step-pseudonymize", "pseudonymize"),
    ("TRAIN", "cordon-step-train", "train"),
    ("TRAIN_EVALUATE", "cordon-step-train", "evaluate"),
    ("SIGN_MODEL", "cordon-step-sign-model", "sign-model"),
    ("HTTP_PROBE", "cordon-test-http-probe", "http-probe"),
    ("PUBLISH", "cordon-step-publish", "publish"),
    (
        "HOSTILE_STREAMS",
        "cordon-test-hostile-streams",
        "hostile-streams",
    ),
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir
        .parent()
        .and_then(Path::parent)
        .expect("workspace root")
        .to_path_buf();
    for dir in ["steps", "sdk", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    let target_dir = root.join("target").join("wasm-steps");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .env("CARGO_TARGET_DIR", &target_dir);
    let mut packages: Vec<&str> = STEPS.iter().map(|(_, p, _)| *p).collect();
    packages.dedup();
    for package in packages {
        cmd.args(["-p", package]);
    }
    // Settings meant for the host build must not leak into the wasm build.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "CARGO_PROFILE_RELEASE_DEBUG",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("run cargo to build the wasm steps");
    assert!(
        status.success(),
        "building the wasm32-wasip2 steps failed (is the wasm32-wasip2 target installed? `rustup target add wasm32-wasip2`)"
    );

    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let mut code = String::new();
    for (name, _, bin) in STEPS {
        let path = target_dir
            .join("wasm32-wasip2")
            .join("release")
            .join(format!("{bin}.wasm"));
        assert!(path.is_file(), "missing {}", path.display());
        code.push_str(&format!(
            "/// The `{bin}` step component.\npub const {name}: &str = {:?};\n",
            path.display().to_string()
        ));
    }
    std::fs::write(out_dir.join("artifacts.rs"), code).unwrap();
}
