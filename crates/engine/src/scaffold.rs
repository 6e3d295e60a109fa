//! Starting a step outside this repository: `cordon wit`, `cordon new`,
//! `cordon build` and `cordon compile`.
//!
//! The `cordon:step` WIT package, the step templates and the Python SDK
//! ship inside the binary ([`WIT_FILES`], [`TEMPLATE_FILES`]), so a new
//! step needs a `cordon` binary and public registries only: crates.io for
//! `wit-bindgen` (the Rust template generates its bindings from the WIT
//! that [`write_wit`] writes, since `cordon-sdk` is not published), PyPI
//! for `componentize-py`.
//!
//! This module writes files only where it is told (a new project's
//! directory, a WIT directory, the component a manifest names and its
//! `digest` line); it never overwrites an existing file of a new project.
//! It runs the language's build tool with the manifest's directory as the
//! working directory and nothing else, and never runs a step: compiling
//! ahead of time goes through the same [`Sandbox`] (and sealed compile
//! cache) as `cordon run`.

use cordon_manifest::manifest::{Manifest, ManifestError, Sha256Digest};
use cordon_manifest::pin::{PinError, Pinned};
use cordon_sandbox::{Sandbox, SandboxError};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The bytes of a file of this repository, embedded at build time. Every
/// embedded path goes through here, so moving the runner into another
/// directory changes one prefix.
macro_rules! repo_file {
    ($path:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../", $path))
    };
}

/// The `cordon:step` WIT package this runner implements, as
/// (path inside the WIT directory, contents).
pub const WIT_FILES: &[(&str, &str)] = &[
    ("step.wit", repo_file!("wit/step.wit")),
    ("deps/cli.wit", repo_file!("wit/deps/cli.wit")),
    ("deps/clocks.wit", repo_file!("wit/deps/clocks.wit")),
    ("deps/filesystem.wit", repo_file!("wit/deps/filesystem.wit")),
    ("deps/http.wit", repo_file!("wit/deps/http.wit")),
    ("deps/io.wit", repo_file!("wit/deps/io.wit")),
    ("deps/random.wit", repo_file!("wit/deps/random.wit")),
    ("deps/sockets.wit", repo_file!("wit/deps/sockets.wit")),
];

/// The `wit-bindgen` version the Rust template asks for: the one this
/// workspace's SDK is built with, so the generated bindings match the
/// WIT's syntax.
pub const WIT_BINDGEN_VERSION: &str = "0.61";

/// The language of a step project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// Rust, built with cargo for `wasm32-wasip2`.
    Rust,
    /// Python, built with componentize-py.
    Python,
}

impl std::fmt::Display for Lang {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
        })
    }
}

/// A template file: (path in the new project, contents with `{{name}}`
/// and `{{wit_bindgen}}` to fill in).
type TemplateFile = (&'static str, &'static str);

/// The files of each template.
pub const TEMPLATE_FILES: &[(Lang, &[TemplateFile])] = &[
    (
        Lang::Rust,
        &[
            ("Cargo.toml", repo_file!("templates/rust/Cargo.toml")),
            ("src/main.rs", repo_file!("templates/rust/src/main.rs")),
            ("step.toml", repo_file!("templates/rust/step.toml")),
            ("README.md", repo_file!("templates/rust/README.md")),
            (".gitignore", repo_file!("templates/rust/gitignore")),
            (
                "data/in/example.csv",
                repo_file!("templates/rust/data/in/example.csv"),
            ),
        ],
    ),
    (
        Lang::Python,
        &[
            ("app.py", repo_file!("templates/python/app.py")),
            ("test_app.py", repo_file!("templates/python/test_app.py")),
            ("step.toml", repo_file!("templates/python/step.toml")),
            ("README.md", repo_file!("templates/python/README.md")),
            (".gitignore", repo_file!("templates/python/gitignore")),
            (
                "data/in/example.csv",
                repo_file!("templates/python/data/in/example.csv"),
            ),
            // The SDK is copied in rather than installed: it is not on
            // PyPI, and componentize-py then finds it beside app.py.
            (
                "cordon_sdk/__init__.py",
                repo_file!("sdk/python/cordon_sdk/__init__.py"),
            ),
            (
                "cordon_sdk/_runtime.py",
                repo_file!("sdk/python/cordon_sdk/_runtime.py"),
            ),
            (
                "cordon_sdk/http.py",
                repo_file!("sdk/python/cordon_sdk/http.py"),
            ),
            (
                "cordon_sdk/report.py",
                repo_file!("sdk/python/cordon_sdk/report.py"),
            ),
            (
                "cordon_sdk/secrets.py",
                repo_file!("sdk/python/cordon_sdk/secrets.py"),
            ),
            (
                "cordon_sdk/step.py",
                repo_file!("sdk/python/cordon_sdk/step.py"),
            ),
            (
                "cordon_sdk/testing.py",
                repo_file!("sdk/python/cordon_sdk/testing.py"),
            ),
        ],
    ),
];

/// The componentize-py release the Python template and `cordon build` are
/// tested with (also pinned in tests/tools/requirements.txt).
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";

/// Why a scaffolding command failed. Each message says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The step name cannot name a package, a component and a step.
    #[error(
        "`{0}` is not a usable step name\n  fix: use lower-case letters, digits and `-`, starting with a letter (for example `summarize-rows`)"
    )]
    BadName(String),
    /// The project directory already has files.
    #[error(
        "{0} already exists and is not empty\n  fix: choose another directory with --dir, or remove it"
    )]
    NotEmpty(PathBuf),
    /// Reading or writing a file failed.
    #[error("{what} {}: {error}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error (in the message, so not also a `source`).
        error: std::io::Error,
    },
    /// The manifest's directory is not a project `cordon build` knows.
    #[error(
        "{}: cannot tell how to build this step: its directory has neither Cargo.toml (Rust) nor app.py (Python)\n  fix: run `cordon build` on the manifest of a project made by `cordon new`, or build the component yourself and run `cordon pin`",
        .0.display()
    )]
    UnknownProject(PathBuf),
    /// The manifest cannot be read as TOML or lacks `[step] component`.
    #[error("{}: {message}", path.display())]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The build tool is not installed.
    #[error("cannot run `{tool}`: {error}\n  fix: {fix}")]
    ToolMissing {
        /// The program.
        tool: String,
        /// Why it could not start.
        error: std::io::Error,
        /// How to install it.
        fix: String,
    },
    /// The build tool ran and failed (its own output said why).
    #[error("`{command}` failed ({status}); its output above says why")]
    BuildFailed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
    },
    /// cargo built nothing that looks like a component.
    #[error("`{0}` reported no wasm binary\n  fix: the crate needs a [[bin]] target (`fn main`)")]
    NoArtifact(String),
    /// Pinning the digest failed.
    #[error(transparent)]
    Pin(#[from] PinError),
    /// The manifest is invalid (for `cordon compile`).
    #[error(transparent)]
    InvalidManifest(#[from] ManifestError),
    /// The component is not the one the manifest pins.
    #[error(
        "{}: component {} has digest {actual}, but the manifest pins {pinned}\n  fix: build it with `cordon build {}` (which pins what it built), or pin a reviewed build with `cordon pin`",
        manifest.display(), component.display(), manifest.display()
    )]
    Unpinned {
        /// The manifest.
        manifest: PathBuf,
        /// The component.
        component: PathBuf,
        /// Its digest.
        actual: Sha256Digest,
        /// The manifest's digest.
        pinned: Sha256Digest,
    },
    /// The engine could not compile the component.
    #[error("{}: {error}", component.display())]
    Compile {
        /// The component.
        component: PathBuf,
        /// Why.
        error: SandboxError,
    },
}

impl ScaffoldError {
    /// Whether the runner itself failed (a write, the engine), as opposed
    /// to bad input or a failed build: the CLI's exit code 3 against 2.
    pub fn is_runner_fault(&self) -> bool {
        match self {
            ScaffoldError::Io { .. } => true,
            ScaffoldError::Pin(PinError::Write(..)) => true,
            ScaffoldError::Compile { error, .. } => {
                !matches!(error, SandboxError::InvalidComponent(_))
            }
            _ => false,
        }
    }
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ScaffoldError {
    let path = path.to_path_buf();
    move |error| ScaffoldError::Io { what, path, error }
}

/// What `cordon wit` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitWritten {
    /// The directory.
    pub dir: PathBuf,
    /// The files, in the order written.
    pub files: Vec<PathBuf>,
}

impl std::fmt::Display for WitWritten {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cordon: wrote the cordon:step WIT package ({} files) to {}\n  Rust: wit_bindgen::generate!({{ path: \"{}\", world: \"cordon:step/host-api\" }})\n  Python: componentize-py -d {} -w cordon:step/step componentize app -o step.wasm",
            self.files.len(),
            self.dir.display(),
            self.dir.display(),
            self.dir.display()
        )
    }
}

/// Writes the WIT package into `dir` (created if missing), replacing files
/// of the same names.
pub fn wit(dir: &Path) -> Result<WitWritten, ScaffoldError> {
    Ok(WitWritten {
        dir: dir.to_path_buf(),
        files: write_wit(dir)?,
    })
}

fn write_wit(dir: &Path) -> Result<Vec<PathBuf>, ScaffoldError> {
    let mut written = Vec::new();
    for (rel, text) in WIT_FILES {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io("cannot create", parent))?;
        }
        std::fs::write(&path, text).map_err(io("cannot write", &path))?;
        written.push(path);
    }
    Ok(written)
}

/// A project `cordon new` made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// Its directory.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: PathBuf,
    /// Every file written, relative to `dir`.
    pub files: Vec<PathBuf>,
}

impl std::fmt::Display for Created {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lang = if self.files.iter().any(|p| p.ends_with("Cargo.toml")) {
            Lang::Rust
        } else {
            Lang::Python
        };
        writeln!(
            f,
            "cordon: created a {lang} step in {} ({} files)",
            self.dir.display(),
            self.files.len()
        )?;
        let dir = self.dir.display();
        match lang {
            Lang::Rust => write!(
                f,
                "next:\n  cd {dir}\n  cargo test                # its unit tests, natively\n  cordon build step.toml    # cargo build --release --target wasm32-wasip2, pins the digest\n  cordon run step.toml"
            ),
            Lang::Python => write!(
                f,
                "next:\n  cd {dir}\n  python3 -m unittest       # its unit tests, natively\n  cordon build step.toml    # componentize-py {COMPONENTIZE_PY_VERSION}, pins the digest\n  cordon secret set summary-key\n  cordon run step.toml"
            ),
        }
    }
}

/// Whether `name` can be a Cargo package, a component file and a step
/// name at once.
fn valid_name(name: &str) -> bool {
    name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Creates a `lang` step project called `name` in `dir` (default: `./name`),
/// which must be missing or empty: the source, a manifest with a purpose on
/// every mount, a native unit test, a README, example input and the WIT.
pub fn new_step(name: &str, lang: Lang, dir: Option<&Path>) -> Result<Created, ScaffoldError> {
    if !valid_name(name) {
        return Err(ScaffoldError::BadName(name.to_string()));
    }
    let dir = dir.map_or_else(|| PathBuf::from(name), Path::to_path_buf);
    match std::fs::read_dir(&dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(ScaffoldError::NotEmpty(dir));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(&dir).map_err(io("cannot create", &dir))?;
        }
        Err(e) => return Err(io("cannot read", &dir)(e)),
    }
    let files = TEMPLATE_FILES
        .iter()
        .find(|(l, _)| *l == lang)
        .map(|(_, f)| *f)
        .unwrap_or_default();
    let mut written = Vec::new();
    for (rel, text) in files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io("cannot create", parent))?;
        }
        let text = text
            .replace("{{name}}", name)
            .replace("{{wit_bindgen}}", WIT_BINDGEN_VERSION);
        // create_new: a file that appeared meanwhile is never overwritten.
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()))
            .map_err(io("cannot write", &path))?;
        written.push(PathBuf::from(rel));
    }
    for path in write_wit(&dir.join("wit"))? {
        written.push(path.strip_prefix(&dir).unwrap_or(&path).to_path_buf());
    }
    Ok(Created {
        manifest: dir.join("step.toml"),
        dir,
        files: written,
    })
}

/// What `cordon build` did.
#[derive(Debug, Clone)]
pub struct Built {
    /// The project's language.
    pub lang: Lang,
    /// The build command, as run in the manifest's directory.
    pub command: String,
    /// Where the component was written (the manifest's `component`).
    pub component: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// The manifest's digest before, and the component's now pinned.
    pub pinned: Pinned,
}

impl std::fmt::Display for Built {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "cordon: built {} ({}, {}) with `{}`",
            self.component.display(),
            self.lang,
            cordon_core::units::format_size(self.bytes),
            self.command
        )?;
        let shown = self.pinned.manifest.display();
        match &self.pinned.pinned {
            _ if self.pinned.holds() => {
                write!(f, "cordon: {shown} already pins {}", self.pinned.actual)
            }
            Some(was) => write!(
                f,
                "cordon: {shown} now pins {} (was {was}); a reviewer approves this digest",
                self.pinned.actual
            ),
            None => write!(f, "cordon: {shown} now pins {}", self.pinned.actual),
        }
    }
}

/// What `cordon build` needs from a manifest, read without validating
/// the rest (a new project's manifest has no digest yet).
struct BuildTarget {
    dir: PathBuf,
    component: PathBuf,
    network: bool,
}

fn build_target(manifest: &Path) -> Result<BuildTarget, ScaffoldError> {
    // The tools run in the project's directory: every path handed to them
    // (or written after them) is absolute.
    let manifest = &std::path::absolute(manifest).map_err(io("cannot resolve", manifest))?;
    let bad = |message: String| ScaffoldError::Manifest {
        path: manifest.to_path_buf(),
        message,
    };
    let text = cordon_core::fsutil::read_regular_to_string(
        manifest,
        cordon_manifest::manifest::MAX_FILE_BYTES,
    )
    .map_err(|e| bad(format!("cannot read the manifest: {e}")))?;
    let doc: toml::Table = text
        .parse()
        .map_err(|e| bad(format!("not valid TOML: {e}")))?;
    let step = doc.get("step").and_then(|s| s.as_table());
    let field = |key: &str| step.and_then(|s| s.get(key)).and_then(|v| v.as_str());
    let component = field("component").ok_or_else(|| {
        bad(
            "[step] has no `component`\n  fix: add `component = \"build/NAME.wasm\"` under [step]"
                .into(),
        )
    })?;
    let dir = match manifest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok(BuildTarget {
        component: dir.join(component),
        network: doc.contains_key("network"),
        dir,
    })
}

/// Builds the step of `manifest` for its language, writes the component
/// to the path the manifest names, and pins its digest there.
///
/// Rust (a `Cargo.toml` beside the manifest): `cargo build --release
/// --target wasm32-wasip2`, the binary cargo reports copied into place
/// (so a shared `CARGO_TARGET_DIR` works). Python (an `app.py`):
/// `componentize-py -d wit -w cordon:step/step componentize app`, against
/// `cordon:step/step-http` when the manifest grants `[network]`. The
/// tools' own output goes to stderr as they print it.
pub fn build(manifest: &Path) -> Result<Built, ScaffoldError> {
    let target = build_target(manifest)?;
    let (lang, command) = if target.dir.join("Cargo.toml").is_file() {
        (Lang::Rust, build_rust(&target)?)
    } else if target.dir.join("app.py").is_file() {
        (Lang::Python, build_python(&target)?)
    } else {
        return Err(ScaffoldError::UnknownProject(manifest.to_path_buf()));
    };
    let bytes = std::fs::metadata(&target.component)
        .map_err(io("cannot read", &target.component))?
        .len();
    let pinned = cordon_manifest::pin::pin(manifest)?;
    Ok(Built {
        lang,
        command,
        component: target.component,
        bytes,
        pinned,
    })
}

/// Runs `program args` in `dir`; stdout is returned when `capture`,
/// otherwise it goes to stderr like the tool's diagnostics (cordon's
/// stdout stays for results).
fn run_tool(
    dir: &Path,
    program: &str,
    args: &[&str],
    capture: bool,
    fix: &str,
) -> Result<(String, Vec<u8>), ScaffoldError> {
    let command = std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    if capture {
        cmd.stdout(Stdio::piped());
    } else {
        cmd.stdout(std::io::stderr());
    }
    let out = cmd.output().map_err(|error| ScaffoldError::ToolMissing {
        tool: program.to_string(),
        error,
        fix: fix.to_string(),
    })?;
    if !out.status.success() {
        return Err(ScaffoldError::BuildFailed {
            command,
            status: out.status,
        });
    }
    Ok((command, out.stdout))
}

fn build_rust(t: &BuildTarget) -> Result<String, ScaffoldError> {
    let (command, stdout) = run_tool(
        &t.dir,
        "cargo",
        &[
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--message-format=json-render-diagnostics",
        ],
        true,
        "install Rust with rustup (https://rustup.rs), then `rustup target add wasm32-wasip2`",
    )?;
    let built = wasm_artifact(&String::from_utf8_lossy(&stdout))
        .ok_or_else(|| ScaffoldError::NoArtifact(command.clone()))?;
    let bytes = std::fs::read(&built).map_err(io("cannot read", &built))?;
    write_component(&t.component, &bytes)?;
    Ok(command)
}

/// The last wasm executable among cargo's JSON messages.
fn wasm_artifact(messages: &str) -> Option<PathBuf> {
    messages
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter_map(|m| m["executable"].as_str().map(PathBuf::from))
        .find(|p| p.extension().is_some_and(|e| e == "wasm"))
}

fn build_python(t: &BuildTarget) -> Result<String, ScaffoldError> {
    let world = if t.network {
        "cordon:step/step-http"
    } else {
        "cordon:step/step"
    };
    if let Some(parent) = t.component.parent() {
        std::fs::create_dir_all(parent).map_err(io("cannot create", parent))?;
    }
    // componentize-py writes its output as it goes: build beside the
    // component and rename, so a failed build leaves the old one whole.
    let partial = t.component.with_extension("wasm.partial");
    let partial_arg = partial.to_string_lossy().into_owned();
    let result = run_tool(
        &t.dir,
        "componentize-py",
        &[
            "-d",
            "wit",
            "-w",
            world,
            "componentize",
            "app",
            "-o",
            &partial_arg,
        ],
        false,
        &format!(
            "pip install componentize-py=={COMPONENTIZE_PY_VERSION} (in a virtual environment on PATH)"
        ),
    );
    let (command, _) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    std::fs::rename(&partial, &t.component).map_err(io("cannot write", &t.component))?;
    Ok(command)
}

fn write_component(path: &Path, bytes: &[u8]) -> Result<(), ScaffoldError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io("cannot create", parent))?;
    }
    cordon_core::fsutil::write_atomic(path, bytes).map_err(io("cannot write", path))
}

/// What `cordon compile` did.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The component.
    pub component: PathBuf,
    /// Its digest.
    pub digest: Sha256Digest,
    /// Its size.
    pub bytes: u64,
    /// Whether the compile cache already held it (nothing compiled).
    pub from_cache: bool,
    /// How long compiling (or loading) took.
    pub took: Duration,
    /// The compile cache it is in.
    pub cache: PathBuf,
}

impl std::fmt::Display for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let size = cordon_core::units::format_size(self.bytes);
        if self.from_cache {
            write!(
                f,
                "cordon: {} ({size}, {}) is already compiled in {}; nothing to do",
                self.component.display(),
                self.digest,
                self.cache.display()
            )
        } else {
            write!(
                f,
                "cordon: compiled {} ({size}, {}) in {:.1} s into {}; its runs start without compiling",
                self.component.display(),
                self.digest,
                self.took.as_secs_f64(),
                self.cache.display()
            )
        }
    }
}

/// Compiles the component of `manifest` into the compile cache of
/// `state_dir` (default: `.cordon` beside the manifest, as `cordon run`;
/// `$CORDON_COMPILE_CACHE` overrides the cache), so its first run does not
/// compile. The component must be the one the manifest pins.
pub fn compile(manifest: &Path, state_dir: Option<&Path>) -> Result<Compiled, ScaffoldError> {
    let m = Manifest::load(manifest)?;
    let component = m.dir.join(&m.component);
    let bytes =
        cordon_core::fsutil::read_regular(&component, cordon_manifest::plan::MAX_COMPONENT_BYTES)
            .map_err(io("cannot read component", &component))?;
    let digest = Sha256Digest::of(&bytes);
    if digest != m.digest {
        return Err(ScaffoldError::Unpinned {
            manifest: manifest.to_path_buf(),
            component,
            actual: digest,
            pinned: m.digest,
        });
    }
    let state = state_dir.map_or_else(|| m.dir.join(".cordon"), Path::to_path_buf);
    cordon_core::fsutil::create_private_dir(&state).map_err(io("cannot create", &state))?;
    let cache = cordon_manifest::plan::compile_cache_dir(&state);
    let compile_err = |error| ScaffoldError::Compile {
        component: component.clone(),
        error,
    };
    let sandbox = Sandbox::new(Some(cache.clone())).map_err(compile_err)?;
    let start = Instant::now();
    let size = bytes.len() as u64;
    let checked = cordon_manifest::plan::ComponentBytes::checked(
        component.clone(),
        digest.clone(),
        bytes.into(),
    );
    let loaded = sandbox
        .load_step(&digest, &checked, m.network.is_some(), m.floats)
        .map_err(compile_err)?;
    Ok(Compiled {
        bytes: size,
        component,
        digest,
        from_cache: loaded.from_cache,
        took: start.elapsed(),
        cache,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wit_written_is_the_package_the_runner_was_built_with() {
        let d = tempfile::tempdir().unwrap();
        let files = wit(d.path()).unwrap().files;
        assert_eq!(files.len(), WIT_FILES.len());
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wit");
        for (rel, _) in WIT_FILES {
            assert_eq!(
                std::fs::read(d.path().join(rel)).unwrap(),
                std::fs::read(root.join(rel)).unwrap(),
                "{rel}"
            );
        }
        let mut shipped: Vec<String> = walk(&root);
        shipped.sort();
        let mut listed: Vec<String> = WIT_FILES.iter().map(|(r, _)| r.to_string()).collect();
        listed.sort();
        assert_eq!(shipped, listed, "every file of wit/ ships in the binary");
    }

    fn walk(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
                }
            }
        }
        out
    }

    #[test]
    fn the_python_template_ships_the_whole_sdk() {
        let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk/python/cordon_sdk");
        let mut shipped: Vec<String> = walk(&sdk)
            .into_iter()
            .filter(|f| f.ends_with(".py"))
            .map(|f| format!("cordon_sdk/{f}"))
            .collect();
        shipped.sort();
        let (_, files) = TEMPLATE_FILES
            .iter()
            .find(|(l, _)| *l == Lang::Python)
            .unwrap();
        let mut listed: Vec<String> = files
            .iter()
            .map(|(r, _)| r.to_string())
            .filter(|r| r.starts_with("cordon_sdk/"))
            .collect();
        listed.sort();
        assert_eq!(shipped, listed);
    }

    #[test]
    fn a_new_project_has_a_manifest_with_a_purpose_on_every_mount() {
        for lang in [Lang::Rust, Lang::Python] {
            let d = tempfile::tempdir().unwrap();
            let dir = d.path().join("my-step");
            let created = new_step("my-step", lang, Some(&dir)).unwrap();
            assert_eq!(created.manifest, dir.join("step.toml"));
            assert!(created.files.contains(&PathBuf::from("README.md")));
            assert!(created.files.contains(&PathBuf::from("wit/step.wit")));
            let text = std::fs::read_to_string(&created.manifest).unwrap();
            assert!(!text.contains("{{"), "{lang}: unfilled placeholder");
            let doc: toml::Table = text.parse().unwrap();
            assert_eq!(doc["step"]["name"].as_str(), Some("my-step"));
            let mounts = doc["mount"].as_array().unwrap();
            assert!(!mounts.is_empty());
            for m in mounts {
                let purpose = m["purpose"].as_str().unwrap_or_default();
                assert!(!purpose.trim().is_empty(), "{lang}: {m:?}");
            }
            for rel in &created.files {
                let body = std::fs::read_to_string(dir.join(rel)).unwrap();
                assert!(!body.contains("{{name}}"), "{lang}: {}", rel.display());
            }
        }
    }

    #[test]
    fn the_rust_template_asks_for_the_workspace_wit_bindgen() {
        let workspace =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml"))
                .unwrap();
        assert!(
            workspace.contains(&format!("wit-bindgen = \"{WIT_BINDGEN_VERSION}\"")),
            "the template's wit-bindgen is the workspace's"
        );
    }

    #[test]
    fn new_refuses_a_bad_name_and_a_directory_with_files() {
        let d = tempfile::tempdir().unwrap();
        for bad in ["", "Upper", "1st", "has space", "trailing-", "../up", "a/b"] {
            assert!(
                matches!(
                    new_step(bad, Lang::Rust, Some(&d.path().join("x"))),
                    Err(ScaffoldError::BadName(_))
                ),
                "{bad:?}"
            );
        }
        std::fs::write(d.path().join("keep.txt"), "mine").unwrap();
        let err = new_step("ok", Lang::Python, Some(d.path())).unwrap_err();
        assert!(matches!(err, ScaffoldError::NotEmpty(_)), "{err}");
        assert_eq!(
            std::fs::read_to_string(d.path().join("keep.txt")).unwrap(),
            "mine"
        );
    }

    #[test]
    fn build_refuses_a_directory_it_cannot_build() {
        let d = tempfile::tempdir().unwrap();
        let m = d.path().join("step.toml");
        std::fs::write(&m, "[step]\nname = \"x\"\ncomponent = \"x.wasm\"\n").unwrap();
        let err = build(&m).unwrap_err();
        assert!(matches!(err, ScaffoldError::UnknownProject(_)), "{err}");
        assert!(err.to_string().contains("fix: "), "{err}");
        std::fs::write(&m, "[step]\nname = \"x\"\n").unwrap();
        let err = build(&m).unwrap_err();
        assert!(err.to_string().contains("no `component`"), "{err}");
    }

    #[test]
    fn the_wasm_binary_is_found_among_cargo_messages() {
        let messages = concat!(
            "{\"reason\":\"compiler-artifact\",\"executable\":null}\n",
            "not json\n",
            "{\"reason\":\"compiler-artifact\",\"executable\":\"/t/wasm32-wasip2/release/s.wasm\"}\n",
            "{\"reason\":\"build-finished\",\"success\":true}\n",
        );
        assert_eq!(
            wasm_artifact(messages),
            Some(PathBuf::from("/t/wasm32-wasip2/release/s.wasm"))
        );
        assert_eq!(wasm_artifact("{\"reason\":\"build-finished\"}"), None);
    }
}
