//! Step authors outside this repository: `cordon new` for Rust and Python
//! in a temporary directory, the template's native unit test, `cordon
//! build`, `cordon compile`, `cordon run`, and what the SDK discovers at
//! run time. Real tools throughout (cargo for wasm32-wasip2 with crates.io,
//! componentize-py from tests/tools/requirements.txt); nothing is mocked.

use crate::harness::*;
use cordon_test_artifacts::PROBE;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One target directory for every Rust template build, under the
/// repository's target/, so wit-bindgen compiles once, not per test run.
fn template_target_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("step-templates")
}

/// What a build tool needs from the outer environment besides PATH (the
/// harness starts `cordon` with a clean environment).
fn toolchain_env() -> Vec<(&'static str, String)> {
    let mut env = vec![(
        "CARGO_TARGET_DIR",
        template_target_dir().display().to_string(),
    )];
    for var in ["HOME", "CARGO_HOME", "RUSTUP_HOME"] {
        if let Ok(v) = std::env::var(var) {
            env.push((var, v));
        }
    }
    env
}

fn borrowed<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Runs `program args` in `dir` with the same clean environment.
fn tool(dir: &Path, program: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    for (k, v) in toolchain_env() {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        raw_stdout: out.stdout,
        raw_stderr: out.stderr,
    }
}

/// The project's manifest pins exactly the component `cordon build` wrote.
fn assert_pins_its_component(project: &Path, name: &str) -> String {
    let component = std::fs::read(project.join(format!("build/{name}.wasm"))).unwrap();
    let digest = format!("sha256:{}", sha256_hex(&component));
    let manifest = std::fs::read_to_string(project.join("step.toml")).unwrap();
    assert!(
        manifest.contains(&format!("digest = \"{digest}\"")),
        "{manifest}"
    );
    digest
}

/// The records of the project's own state directory.
fn project_records(project: &Path) -> Vec<serde_json::Value> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(project.join(".cordon/records"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| is_record_file(p))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
        .collect()
}

#[test]
fn the_sdk_discovers_the_granted_mounts_and_arguments() {
    let ws = Workspace::new();
    ws.mkdir("in");
    ws.step(
        PROBE,
        &["grants", "--key", "k"],
        &(mount("/in", "in", "read") + &mount("/out", "out", "write")),
    );
    let out = ws.run(&[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.probe_lines("grants"),
        [r#"grants: ok mounts=/in:ro,/out:rw output=/out args=["grants", "--key", "k"]"#],
        "{out:?}"
    );
}

#[test]
fn an_sdk_step_error_exits_1_with_its_message_on_stderr() {
    let ws = Workspace::new();
    ws.step(PROBE, &["sdk-fail", "/in/rows.csv is empty"], "");
    let out = ws.run(&[]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("error: deliberate failure: /in/rows.csv is empty"),
        "{out:?}"
    );
    let rec = ws.record();
    assert_eq!(rec["termination"]["kind"], "exited", "{rec}");
    assert_eq!(rec["termination"]["code"], 1, "{rec}");
}

#[test]
fn cordon_wit_writes_the_package_the_runner_implements() {
    let ws = Workspace::new();
    let out = ws.cordon(&["wit", "my-wit"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("cordon:step WIT package"), "{out:?}");
    let repo_wit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit");
    for rel in [
        "step.wit",
        "deps/cli.wit",
        "deps/http.wit",
        "deps/filesystem.wit",
    ] {
        assert_eq!(
            std::fs::read(ws.path("my-wit").join(rel)).unwrap(),
            std::fs::read(repo_wit.join(rel)).unwrap(),
            "{rel}"
        );
    }
}

#[test]
fn new_refuses_to_write_into_a_directory_with_files() {
    let ws = Workspace::new();
    ws.write("taken/notes.txt", "mine");
    let out = ws.cordon(&["new", "taken", "--lang", "rust"], &[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("fix: "), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(ws.path("taken/notes.txt")).unwrap(),
        "mine"
    );
}

#[test]
fn a_new_rust_step_is_tested_built_and_run_outside_the_repository() {
    let ws = Workspace::new();
    assert!(
        !ws.root()
            .starts_with(Path::new(env!("CARGO_MANIFEST_DIR")).join("..")),
        "the workspace must be outside the repository"
    );
    let env = toolchain_env();
    let out = ws.cordon(&["new", "hello-rs", "--lang", "rust"], &borrowed(&env));
    assert_eq!(out.code, 0, "{out:?}");
    let project = ws.path("hello-rs");
    for file in [
        "Cargo.toml",
        "src/main.rs",
        "step.toml",
        "README.md",
        "wit/step.wit",
    ] {
        assert!(project.join(file).is_file(), "{file}: {out:?}");
    }

    let test = tool(&project, "cargo", &["test", "--quiet"]);
    assert_eq!(test.code, 0, "the template's native unit tests: {test:?}");
    assert!(test.stdout.contains("2 passed"), "{test:?}");

    let built = ws.cordon(&["build", "hello-rs/step.toml"], &borrowed(&env));
    assert_eq!(built.code, 0, "{built:?}");
    let digest = assert_pins_its_component(&project, "hello-rs");
    assert!(
        built
            .stderr
            .contains("with `cargo build --release --target wasm32-wasip2")
            && built.stderr.contains(&format!("now pins {digest}")),
        "says what it did: {built:?}"
    );

    let run = ws.cordon(&["run", "hello-rs/step.toml"], &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        std::fs::read_to_string(project.join("data/out/summary.json")).unwrap(),
        "{\"files\": 1, \"lines\": 3, \"bytes\": 21}\n"
    );
    let records = project_records(&project);
    assert_eq!(records.len(), 1);
    let rec = &records[0];
    assert_eq!(rec["component"]["sha256"], digest.as_str(), "{rec}");
    assert_eq!(rec["report"]["metrics"]["lines"], 3.0, "{rec}");
    assert_eq!(rec["outputs"], "published", "{rec}");

    // Built again unchanged: the same component, the pin holds.
    let again = ws.cordon(&["build", "hello-rs/step.toml"], &borrowed(&env));
    assert_eq!(again.code, 0, "{again:?}");
    assert!(
        again.stderr.contains(&format!("already pins {digest}")),
        "{again:?}"
    );
}

#[test]
fn a_new_python_step_uses_a_secret_handle_built_compiled_and_run_outside_the_repository() {
    const KEY: &str = "python-step-hmac-key-never-printed";
    let ws = Workspace::new();
    let out = ws.cordon(&["new", "hello-py", "--lang", "python"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    let project = ws.path("hello-py");

    let test = tool(&project, "python3", &["-m", "unittest", "-v"]);
    assert_eq!(test.code, 0, "the template's native unit tests: {test:?}");
    assert!(test.stderr.contains("Ran 2 tests"), "{test:?}");

    let built = ws.cordon(&["build", "hello-py/step.toml"], &[]);
    assert_eq!(
        built.code, 0,
        "{built:?}\n(componentize-py comes from tests/tools/requirements.txt: run ./test.sh, or put target/tools/venv/bin on PATH)"
    );
    let digest = assert_pins_its_component(&project, "hello-py");
    assert!(
        built
            .stderr
            .contains("with `componentize-py -d wit -w cordon:step/step componentize app"),
        "{built:?}"
    );
    assert!(!project.join("build/hello-py.wasm.partial").exists());

    // A compile cache of its own, so the first compile happens here.
    let cache = ws.path("compile-cache");
    let cache_env = [("CORDON_COMPILE_CACHE", cache.to_str().unwrap())];
    let compiled = ws.cordon(&["compile", "hello-py/step.toml"], &cache_env);
    assert_eq!(compiled.code, 0, "{compiled:?}");
    assert!(
        compiled
            .stderr
            .contains(&format!("cordon: compiling component {digest} (")),
        "announces the compile with its size: {compiled:?}"
    );
    assert!(
        compiled
            .stderr
            .contains(&format!("cordon: compiled component {digest} in ")),
        "{compiled:?}"
    );
    let again = ws.cordon(&["compile", "hello-py/step.toml"], &cache_env);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stderr.contains("already compiled"), "{again:?}");
    assert!(!again.stderr.contains("compiling component"), "{again:?}");

    let set = ws.cordon_with_input(&["secret", "set", "summary-key"], &[], Some(KEY.as_bytes()));
    assert_eq!(set.code, 0, "{set:?}");
    let run = ws.cordon(&["run", "hello-py/step.toml"], &cache_env);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!run.stderr.contains("compiling component"), "{run:?}");

    let summary = std::fs::read(project.join("data/out/summary.json")).unwrap();
    assert_eq!(summary, b"{\"bytes\": 21, \"files\": 1, \"lines\": 3}\n");
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(KEY.as_bytes()).unwrap();
    mac.update(&summary);
    assert_eq!(
        std::fs::read_to_string(project.join("data/out/summary.json.hmac")).unwrap(),
        format!("{}\n", hex::encode(mac.finalize().into_bytes())),
        "the runner's HMAC under the key the step never saw"
    );

    let records = project_records(&project);
    assert_eq!(records.len(), 1);
    let rec = &records[0];
    assert_eq!(rec["component"]["sha256"], digest.as_str(), "{rec}");
    assert_eq!(rec["compiled_from_cache"], true, "{rec}");
    assert_eq!(rec["secrets"]["summary-key"]["used"]["hmac"], 1, "{rec}");
    assert_eq!(rec["report"]["metrics"]["files"], 1.0, "{rec}");
    for out in [&built, &compiled, &run] {
        assert!(
            !out.stdout.contains(KEY) && !out.stderr.contains(KEY),
            "{out:?}"
        );
    }
    let mut state = Vec::new();
    for f in walk_files(&project.join(".cordon")) {
        state.extend(std::fs::read(f).unwrap_or_default());
    }
    assert!(
        !contains(&state, KEY.as_bytes()),
        "the key reached the state"
    );
}

#[test]
fn the_python_sdk_passes_its_own_native_tests() {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk/python");
    let out = tool(
        &sdk,
        "python3",
        &["-m", "unittest", "discover", "-s", "tests", "-v"],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("OK"), "{out:?}");
}

/// A Python step over the SDK's HTTP helper: it follows a relative
/// redirect, sends a host-bound secret through its placeholder, and a
/// request outside its grant is refused.
const PYTHON_HTTP_APP: &str = r#"
import cordon_sdk as cordon
from cordon_sdk import http


def step(ctx):
    base = ctx.option("--base")
    token = cordon.secrets.get("deploy-token").http_header_placeholder()
    lines = []
    resp = http.get(f"{base}/v1/latest", headers={"authorization": f"Bearer {token}"})
    lines.append(f"{resp.status} {resp.body.decode()}")
    try:
        http.get(ctx.option("--elsewhere"))
        lines.append("elsewhere: answered")
    except http.Refused as e:
        lines.append(f"elsewhere: {e}")
    with open(f"{ctx.output().path}/result.txt", "w") as f:
        f.write("\n".join(lines) + "\n")
    cordon.report.annotate("fetched", resp.body.decode())


class Run:
    def run(self):
        cordon.run(step)
"#;

#[test]
fn a_python_step_fetches_over_wasi_http_with_a_bound_secret_and_relative_redirects() {
    const TOKEN: &str = "py-http-token-7c1d-must-never-print";
    let server = crate::network::Server::start(|seen| match seen.path.as_str() {
        "/v1/latest" => (302, vec![("location".into(), "../v2/model".into())], vec![]),
        "/v2/model" => (200, vec![], b"weights".to_vec()),
        _ => (404, vec![], vec![]),
    });
    let other = crate::network::Server::start(|_| (200, vec![], b"other".to_vec()));
    let ws = Workspace::new();
    ws.write("cordon.toml", "[env.dev.secrets]\nprovider = \"env\"\n");
    let out = ws.cordon(&["new", "fetch", "--lang", "python"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    ws.write("fetch/app.py", PYTHON_HTTP_APP);
    let base = format!("http://127.0.0.1:{}", server.port);
    let elsewhere = format!("http://127.0.0.1:{}/x", other.port);
    ws.write(
        "fetch/step.toml",
        format!(
            "[step]\nname = \"fetch\"\ncomponent = \"build/fetch.wasm\"\nargs = [\"--base\", \"{base}\", \"--elsewhere\", \"{elsewhere}\"]\n\n\
             [[mount]]\nguest = \"/out\"\nhost = \"data/out\"\naccess = \"write\"\npurpose = \"what was fetched\"\n\n\
             [[secret]]\nname = \"deploy-token\"\nuses = [\"http-header\"]\nhosts = [\"{base}\"]\n\n\
             [network]\nallow = [\"{base}/\"]\n\n\
             [limits]\nfuel = 20_000_000_000\nmemory = \"256MiB\"\n"
        ),
    );
    let built = ws.cordon(&["build", "fetch/step.toml"], &[]);
    assert_eq!(built.code, 0, "{built:?}");
    assert!(
        built.stderr.contains("-w cordon:step/step-http"),
        "a [network] grant builds against step-http: {built:?}"
    );
    // componentize-py builds are not reproducible (a new digest each
    // time), so the compiled artifact goes to a cache that is removed with
    // the workspace rather than to the suite's shared one.
    let cache = ws.path("compile-cache");
    let run = ws.cordon(
        &["run", "fetch/step.toml"],
        &[
            ("CORDON_SECRET_DEPLOY_TOKEN", TOKEN),
            ("CORDON_COMPILE_CACHE", cache.to_str().unwrap()),
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let digest = assert_pins_its_component(&ws.path("fetch"), "fetch");
    assert!(
        run.stderr
            .contains(&format!("cordon: compiling component {digest} ("))
            && run.stderr.contains(" MiB) to native code")
            && run
                .stderr
                .contains(&format!("cordon: compiled component {digest} in ")),
        "the first run says it is compiling, the size and how long it took: {run:?}"
    );
    assert_eq!(
        std::fs::read_to_string(ws.path("fetch/data/out/result.txt")).unwrap(),
        "200 weights\nelsewhere: request refused by the runner (see the step's record)\n"
    );
    let seen = server.seen();
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        ["/v1/latest", "/v2/model"],
        "the relative redirect per RFC 3986"
    );
    for s in &seen {
        assert_eq!(
            s.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str()),
            "the runner substituted the bound secret"
        );
    }
    assert!(other.seen().is_empty(), "nothing reached an ungranted host");
    // The workspace's `cordon.toml` is at its root: so is its state.
    let rec = &project_records(ws.root())[0];
    assert_eq!(rec["report"]["annotations"]["fetched"], "weights", "{rec}");
    assert_eq!(rec["network"].as_array().map(Vec::len), Some(3), "{rec}");
    assert!(!run.stdout.contains(TOKEN) && !run.stderr.contains(TOKEN));
    let mut state = Vec::new();
    for f in walk_files(&ws.path(".cordon")) {
        state.extend(std::fs::read(f).unwrap_or_default());
    }
    assert!(
        !contains(&state, TOKEN.as_bytes()),
        "the token reached the state"
    );
}
