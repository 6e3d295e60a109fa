//! Shared helpers: a scratch workspace per test, manifests, running the
//! binary, reading records.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The `cordon` binary under test.
pub const CORDON: &str = env!("CARGO_BIN_EXE_cordon");

/// A bound on any single runner invocation. It is not a performance
/// assertion: a runner that fails to stop a step (sleep forever, spin) would
/// otherwise hang the suite instead of failing it.
const HANG_GUARD: Duration = Duration::from_secs(120);

/// Compiled components are shared by all tests so each is compiled once.
fn compile_cache() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e-compiled")
}

/// The key that seals the shared compile cache: one for the whole suite,
/// or every workspace's own secrets home would hold a different key and
/// each test would recompile what the last one cached.
fn compile_cache_key() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e-compile-cache.key")
}

/// sha256 hex of bytes.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The outcome of one `cordon` invocation.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// The bytes as printed (`stdout`/`stderr` are lossy text).
    pub raw_stdout: Vec<u8>,
    pub raw_stderr: Vec<u8>,
}

impl Output {
    /// Lines the probe printed for `op` (without the `[step] ` prefix).
    pub fn probe_lines(&self, op: &str) -> Vec<String> {
        self.stdout
            .lines()
            .filter_map(|l| l.split_once("] ").map(|(_, rest)| rest))
            .filter(|l| l.starts_with(&format!("{op}: ")))
            .map(str::to_string)
            .collect()
    }
}

/// A child's stdout and stderr, drained on threads so a chatty step
/// cannot block the runner.
struct Streams {
    out: std::thread::JoinHandle<Vec<u8>>,
    err: std::thread::JoinHandle<Vec<u8>>,
}

impl Streams {
    fn drain(child: &mut std::process::Child) -> Streams {
        let read = |mut r: Box<dyn std::io::Read + Send>| {
            std::thread::spawn(move || {
                let mut s = Vec::new();
                r.read_to_end(&mut s).unwrap();
                s
            })
        };
        Streams {
            out: read(Box::new(child.stdout.take().unwrap())),
            err: read(Box::new(child.stderr.take().unwrap())),
        }
    }

    fn output(self, code: i32) -> Output {
        let raw_stdout = self.out.join().unwrap();
        let raw_stderr = self.err.join().unwrap();
        Output {
            code,
            stdout: String::from_utf8_lossy(&raw_stdout).into_owned(),
            stderr: String::from_utf8_lossy(&raw_stderr).into_owned(),
            raw_stdout,
            raw_stderr,
        }
    }
}

/// A scratch directory holding manifests, components and data, and a
/// separate one (outside it, as key files must be) for the local secret
/// stores and their keys.
pub struct Workspace {
    dir: tempfile::TempDir,
    secrets_home: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Self {
        Workspace {
            dir: tempfile::tempdir().expect("tempdir"),
            secrets_home: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// Where this workspace's local secret stores and keys live
    /// (`CORDON_SECRETS_HOME` of every invocation).
    pub fn secrets_home(&self) -> &Path {
        self.secrets_home.path()
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The public key this workspace's user trusts for `env`'s records:
    /// the one `cordon key generate --env ENV` placed in the user's trust
    /// directory (outside the workspace).
    pub fn trusted_key(&self, env: &str) -> PathBuf {
        let dir = self.secrets_home().join("trusted").join(env);
        let keys: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("no trust directory {}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(
            keys.len(),
            1,
            "one trusted key in {}: {keys:?}",
            dir.display()
        );
        keys.into_iter().next().unwrap()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes a file, creating parent directories.
    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, contents).unwrap();
        p
    }

    pub fn mkdir(&self, rel: &str) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// Copies a built component into the workspace; returns its digest.
    pub fn component(&self, artifact: &str, name: &str) -> String {
        let bytes = std::fs::read(artifact).expect("built component");
        std::fs::write(self.path(name), &bytes).unwrap();
        format!("sha256:{}", sha256_hex(&bytes))
    }

    /// Writes `step.toml` for `component` (an artifact path) with `args`
    /// and the extra TOML `rest` (mounts, env, limits...).
    pub fn step(&self, component: &str, args: &[&str], rest: &str) -> PathBuf {
        let wasm = Path::new(component)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let digest = self.component(component, &wasm);
        let name = wasm.trim_end_matches(".wasm");
        let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
        let toml = format!(
            "[step]\nname = \"{name}\"\ncomponent = \"{wasm}\"\ndigest = \"{digest}\"\nargs = [{}]\n\n{rest}",
            args.join(", ")
        );
        self.write("step.toml", toml)
    }

    /// Runs `cordon ARGS` in the workspace with a clean environment plus
    /// `env`.
    pub fn cordon(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.cordon_with_input(args, env, None)
    }

    /// Like [`Workspace::cordon`], with `input` piped to stdin.
    pub fn cordon_with_input(
        &self,
        args: &[&str],
        env: &[(&str, &str)],
        input: Option<&[u8]>,
    ) -> Output {
        let mut cmd = self.command(args, env);
        cmd.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = cmd.spawn().expect("spawn cordon");
        if let Some(input) = input {
            let mut stdin = child.stdin.take().unwrap();
            std::io::Write::write_all(&mut stdin, input).unwrap();
        }
        let streams = Streams::drain(&mut child);
        let start = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if start.elapsed() > HANG_GUARD {
                let _ = child.kill();
                panic!(
                    "cordon {args:?} did not finish within {HANG_GUARD:?}: the step was not stopped"
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        streams.output(status.code().unwrap_or(-1))
    }

    /// Runs `cordon ARGS` like [`Workspace::cordon`] (with `env` added),
    /// with the (soft, hard) limits on open descriptors set to `nofile`
    /// when given, and returns
    /// the runner's peak resident memory in bytes as the kernel counted it
    /// (`ru_maxrss` of the reaped process, which covers every thread and
    /// allocation of the runner, the step's linear memory included).
    pub fn cordon_measured(
        &self,
        args: &[&str],
        env: &[(&str, &str)],
        nofile: Option<(u64, u64)>,
    ) -> (Output, u64) {
        let limits: Vec<_> = nofile
            .map(|(soft, hard)| (libc::RLIMIT_NOFILE, soft, hard))
            .into_iter()
            .collect();
        self.cordon_limited(args, env, &limits)
    }

    /// [`Workspace::cordon_measured`] with any resource limits: each
    /// `(resource, soft, hard)` is set in the child before it runs cordon.
    pub fn cordon_limited(
        &self,
        args: &[&str],
        env: &[(&str, &str)],
        limits: &[(libc::__rlimit_resource_t, u64, u64)],
    ) -> (Output, u64) {
        use std::os::unix::process::CommandExt;
        let mut cmd = self.command(args, env);
        cmd.stdin(Stdio::null());
        let limits = limits.to_vec();
        if !limits.is_empty() {
            // SAFETY: runs in the forked child before exec and calls only
            // setrlimit, which is async-signal-safe; `limits` was copied
            // before the fork and is only read.
            unsafe {
                cmd.pre_exec(move || {
                    for &(resource, soft, hard) in &limits {
                        let limit = libc::rlimit {
                            rlim_cur: soft,
                            rlim_max: hard,
                        };
                        if libc::setrlimit(resource, &limit) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().expect("spawn cordon");
        let pid = child.id() as libc::pid_t;
        let streams = Streams::drain(&mut child);
        let start = Instant::now();
        let (status, rusage) = loop {
            let mut status = 0;
            // SAFETY: an all-zero rusage is a valid value of the C struct.
            let mut rusage: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: `pid` is our own unreaped child; both pointers are
            // to live locals. std's `Child` is never waited on after this.
            let got = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut rusage) };
            assert!(got >= 0, "wait4: {}", std::io::Error::last_os_error());
            if got == pid {
                break (status, rusage);
            }
            if start.elapsed() > HANG_GUARD {
                let _ = child.kill();
                panic!(
                    "cordon {args:?} did not finish within {HANG_GUARD:?}: the step was not stopped"
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let code = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            -1
        };
        // Linux reports ru_maxrss in KiB.
        let peak = rusage.ru_maxrss as u64 * 1024;
        (streams.output(code), peak)
    }

    /// `cordon ARGS` in the workspace with a clean environment plus `env`,
    /// its output streams piped.
    /// The `cordon ARGS` command as every helper here runs it (clean
    /// environment plus `env`, the workspace as working directory).
    pub fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(CORDON);
        cmd.args(args)
            .current_dir(self.root())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("CORDON_COMPILE_CACHE", compile_cache())
            .env("CORDON_COMPILE_CACHE_KEY", compile_cache_key())
            .env("CORDON_SECRETS_HOME", self.secrets_home())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    /// `cordon run step.toml`.
    pub fn run(&self, env: &[(&str, &str)]) -> Output {
        self.cordon(&["run", "step.toml"], env)
    }

    /// Every record in the default state directory, oldest first.
    pub fn records(&self) -> Vec<serde_json::Value> {
        let dir = self.path(".cordon/records");
        let mut paths: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(rd) => rd
                .map(|e| e.unwrap().path())
                .filter(|p| is_record_file(p))
                .collect(),
            Err(_) => return Vec::new(),
        };
        paths.sort();
        paths
            .iter()
            .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
            .collect()
    }

    /// The newest record of step `name` in the default state directory.
    pub fn latest_record(&self, name: &str) -> serde_json::Value {
        self.records()
            .into_iter()
            .rev()
            .find(|r| r["step"] == name)
            .unwrap_or_else(|| panic!("no record of step `{name}`"))
    }

    /// The record files in the default state directory, oldest first.
    pub fn records_paths(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(self.path(".cordon/records"))
            .map(|rd| {
                rd.map(|e| e.unwrap().path())
                    .filter(|p| is_record_file(p))
                    .collect()
            })
            .unwrap_or_default();
        paths.sort();
        paths
    }

    /// The single record written so far.
    pub fn record(&self) -> serde_json::Value {
        let mut r = self.records();
        assert_eq!(r.len(), 1, "expected exactly one record");
        r.pop().unwrap()
    }

    /// Every byte under the state directory, for "never leaks" checks.
    pub fn state_bytes(&self) -> Vec<u8> {
        let mut all = Vec::new();
        collect_bytes(&self.path(".cordon"), &mut all, &["compiled"]);
        all
    }
}

fn collect_bytes(dir: &Path, out: &mut Vec<u8>, skip: &[&str]) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let ft = e.file_type().unwrap();
        if skip.iter().any(|s| e.file_name() == *s) {
            continue;
        }
        if ft.is_dir() {
            collect_bytes(&e.path(), out, skip);
        } else if ft.is_file() {
            out.extend(std::fs::read(e.path()).unwrap());
        }
    }
}

/// A listing of a host tree (path, content) for before/after comparisons.
pub fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        let mut items: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        items.sort_by_key(|e| e.file_name());
        for e in items {
            let rel = e.path().strip_prefix(base).unwrap().display().to_string();
            let ft = e.file_type().unwrap();
            if ft.is_symlink() {
                out.push((
                    rel,
                    std::fs::read_link(e.path())
                        .unwrap()
                        .display()
                        .to_string()
                        .into_bytes(),
                ));
            } else if ft.is_dir() {
                out.push((rel.clone() + "/", Vec::new()));
                walk(base, &e.path(), out);
            } else {
                out.push((rel, std::fs::read(e.path()).unwrap()));
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

/// TOML for a mount.
pub fn mount(guest: &str, host: &str, access: &str) -> String {
    format!(
        "[[mount]]\nguest = \"{guest}\"\nhost = \"{host}\"\naccess = \"{access}\"\npurpose = \"test\"\n\n"
    )
}

/// Whether `path` is a step record (`<run id>.json`, not a signed envelope
/// `<run id>.dsse.json` nor the chain's files).
pub fn is_record_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".json") && !n.ends_with(".dsse.json") && !n.starts_with('.'))
}

/// Whether `haystack` contains `needle`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Checks every signed envelope in `records_dir` with tools nobody here
/// wrote: `securesystemslib` verifies the DSSE signature with `public_key`
/// (PEM), and `in-toto-attestation` validates the statement (at least one
/// subject, each with a digest, predicate present). Every `digest` map in
/// the statement must hold bare lowercase hex, as in-toto and SLSA define
/// digests. Returns how many envelopes were checked; panics naming the
/// first that fails. These packages come with `./test.sh`
/// (tests/tools/requirements.txt).
pub fn validate_envelopes_with_outside_tools(records_dir: &Path, public_key: &Path) -> usize {
    let script = r#"
import base64, glob, json, os, re, sys
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey
from google.protobuf import json_format
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement

key = SSlibKey.from_crypto(load_pem_public_key(open(sys.argv[2], "rb").read()))
HEX = re.compile(r"^[0-9a-f]{64}$")

def digests(node, where):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "digest":
                assert isinstance(v, dict) and v, f"{where}: empty digest map"
                for alg, value in v.items():
                    assert alg == "sha256" and HEX.match(value), f"{where}: digest {alg}={value!r} is not bare sha256 hex"
            digests(v, f"{where}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            digests(v, f"{where}[{i}]")

n = 0
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.dsse.json"))):
    env = Envelope.from_dict(json.load(open(path)))
    env.verify([key], 1)
    payload = json.loads(env.payload)
    stmt = Statement.copy_from_pb(json_format.ParseDict(payload, statement_pb2.Statement()))
    stmt.validate()
    digests(payload, os.path.basename(path))
    n += 1
print(n)
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(records_dir)
        .arg(public_key)
        .output()
        .expect("python3 runs (./test.sh installs securesystemslib and in-toto-attestation)");
    assert!(
        out.status.success(),
        "an envelope fails outside validation (pip install securesystemslib in-toto-attestation, or run ./test.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Every regular file under `dir` (links not followed).
pub fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                todo.push(e.path());
            } else if t.is_file() {
                out.push(e.path());
            }
        }
    }
    out
}

/// Sends `signal` (`-INT`, `-TERM`, ...) to the process `pid`, as a user or
/// a CI system would.
pub fn send_signal(pid: u32, signal: &str) {
    let sent = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill {signal} {pid}");
}

/// Validates the JSON document `file` against the JSON Schema `schema` with
/// Python's `jsonschema` (installed by ./test.sh), failing with every error.
pub fn validate_json(schema: &Path, file: &Path) {
    let script = "import json, sys, jsonschema\n\
        schema = json.load(open(sys.argv[1]))\n\
        doc = json.load(open(sys.argv[2]))\n\
        cls = jsonschema.validators.validator_for(schema)\n\
        errors = list(cls(schema).iter_errors(doc))\n\
        for e in errors: print(e.json_path, e.message)\n\
        sys.exit(1 if errors else 0)\n";
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(schema)
        .arg(file)
        .output()
        .expect("python3 runs (./test.sh installs jsonschema)");
    assert!(
        out.status.success(),
        "{} does not validate against {}: {}{}",
        file.display(),
        schema.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
