//! The entry point and what a step is granted, discovered at run time.
//!
//! Nothing here needs a Cordon-specific interface: the runner gives a step
//! its mounts as standard WASI preopens (`wasi:filesystem/preopens`, one
//! per mount, read-only or with `mutate-directory` for `write` and
//! `read-write` mounts) and its arguments as the standard `wasi:cli`
//! arguments (the step name, then exactly the manifest's `args`). Reading
//! those keeps the WIT unchanged and works the same for a step written
//! without this SDK; what they do not carry (a mount's purpose and
//! classification) is for reviewers and is in the manifest and the record.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// A directory the step was granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    guest: String,
    path: PathBuf,
    writable: bool,
}

impl Mount {
    /// A mount at guest path `guest` whose files are at `path`: in a
    /// component the same path; in a native unit test, a temporary
    /// directory standing in for it.
    pub fn new(guest: impl Into<String>, path: impl Into<PathBuf>, writable: bool) -> Mount {
        Mount {
            guest: guest.into(),
            path: path.into(),
            writable,
        }
    }

    /// The guest path the manifest mounts it at, such as `/in`.
    pub fn guest(&self) -> &str {
        &self.guest
    }

    /// Where to open its files.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the step may create, change and delete entries (`write` or
    /// `read-write` access).
    pub fn writable(&self) -> bool {
        self.writable
    }
}

/// A mount the step asked for was not granted (or not uniquely).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountError {
    /// No mount at this guest path; the guest paths that are granted.
    NotGranted {
        /// The guest path asked for.
        guest: String,
        /// The granted guest paths.
        granted: Vec<String>,
    },
    /// [`Context::output`] found no writable mount.
    NoOutput,
    /// [`Context::output`] found several writable mounts (their guest
    /// paths); name one with [`Context::mount`].
    SeveralOutputs(Vec<String>),
}

impl fmt::Display for MountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MountError::NotGranted { guest, granted } if granted.is_empty() => write!(
                f,
                "no mount at {guest}: the step's manifest grants no mounts (add a [[mount]] with guest = \"{guest}\")"
            ),
            MountError::NotGranted { guest, granted } => write!(
                f,
                "no mount at {guest}: the step's manifest grants {} (add a [[mount]] with guest = \"{guest}\", or use one of those)",
                granted.join(", ")
            ),
            MountError::NoOutput => f.write_str(
                "the step's manifest grants no writable mount (add a [[mount]] with access = \"write\")",
            ),
            MountError::SeveralOutputs(all) => write!(
                f,
                "the step's manifest grants several writable mounts ({}); name the one to use",
                all.join(", ")
            ),
        }
    }
}

impl std::error::Error for MountError {}

/// What the step was granted: its arguments and mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    args: Vec<String>,
    mounts: Vec<Mount>,
}

impl Context {
    /// The grants of this run: the arguments after the step name, and one
    /// [`Mount`] per preopened directory, in the runner's order. In a
    /// native build there are no preopens, so no mounts; tests build a
    /// context with [`Context::new`].
    pub fn from_runtime() -> Context {
        Context {
            args: std::env::args().skip(1).collect(),
            mounts: runtime_mounts(),
        }
    }

    /// A context with these arguments (after the step name) and mounts,
    /// for unit tests of a step's logic.
    pub fn new(args: Vec<String>, mounts: Vec<Mount>) -> Context {
        Context { args, mounts }
    }

    /// The arguments after the step name, exactly as the manifest's
    /// `args` lists them.
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// The value of option `name` (`--key value` or `--key=value`); the
    /// last one wins when it is given more than once.
    pub fn option(&self, name: &str) -> Option<&str> {
        let mut found = None;
        let mut args = self.args.iter();
        while let Some(a) = args.next() {
            if a == name {
                found = args.next().map(String::as_str);
            } else if let Some(v) = a.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
                found = Some(v);
            }
        }
        found
    }

    /// Whether flag `name` (such as `--dry-run`) is among the arguments.
    pub fn flag(&self, name: &str) -> bool {
        self.args.iter().any(|a| a == name)
    }

    /// Every granted mount.
    pub fn mounts(&self) -> &[Mount] {
        &self.mounts
    }

    /// The mount at guest path `guest`.
    pub fn mount(&self, guest: &str) -> Result<&Mount, MountError> {
        let want = guest.trim_end_matches('/');
        self.mounts
            .iter()
            .find(|m| m.guest.trim_end_matches('/') == want)
            .ok_or_else(|| MountError::NotGranted {
                guest: guest.to_string(),
                granted: self.mounts.iter().map(|m| m.guest.clone()).collect(),
            })
    }

    /// The read-only mounts.
    pub fn inputs(&self) -> impl Iterator<Item = &Mount> {
        self.mounts.iter().filter(|m| !m.writable)
    }

    /// The one writable mount, for the common step with a single output.
    pub fn output(&self) -> Result<&Mount, MountError> {
        let mut writable = self.mounts.iter().filter(|m| m.writable);
        match (writable.next(), writable.next()) {
            (None, _) => Err(MountError::NoOutput),
            (Some(m), None) => Ok(m),
            (Some(_), Some(_)) => Err(MountError::SeveralOutputs(
                self.mounts
                    .iter()
                    .filter(|m| m.writable)
                    .map(|m| m.guest.clone())
                    .collect(),
            )),
        }
    }
}

#[cfg(target_arch = "wasm32")]
fn runtime_mounts() -> Vec<Mount> {
    use wasip2::filesystem::types::DescriptorFlags;
    wasip2::filesystem::preopens::get_directories()
        .into_iter()
        .map(|(dir, guest)| {
            // A flag we cannot read is treated as read-only: the step then
            // fails on its first write with the runner's own error rather
            // than assuming a grant it may not have.
            let writable = dir
                .get_flags()
                .is_ok_and(|f| f.contains(DescriptorFlags::MUTATE_DIRECTORY));
            Mount::new(guest.clone(), guest, writable)
        })
        .collect()
}

#[cfg(not(target_arch = "wasm32"))]
fn runtime_mounts() -> Vec<Mount> {
    Vec::new()
}

/// Runs a step: calls `step` with the run's [`Context`] and returns the
/// exit code for `main`. An error ends the step with exit code 1 and
/// `error: ` and its message (with its causes, `: `-separated) on stderr,
/// where the runner captures it into the record (secret values redacted).
///
/// ```no_run
/// fn main() -> std::process::ExitCode {
///     cordon_sdk::run(|ctx| {
///         let out = ctx.output()?;
///         std::fs::write(out.path().join("hello.txt"), "hello\n")?;
///         Ok::<(), Box<dyn std::error::Error>>(())
///     })
/// }
/// ```
pub fn run<F, E>(step: F) -> ExitCode
where
    F: FnOnce(&Context) -> Result<(), E>,
    E: Into<Box<dyn std::error::Error>>,
{
    finish(step(&Context::from_runtime()))
}

/// The exit code for a step's result, printing the error.
fn finish<E: Into<Box<dyn std::error::Error>>>(result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let message = message(e.into().as_ref());
            use std::io::Write as _;
            // A closed stderr must not turn a clean failure into a panic.
            let _ = writeln!(std::io::stderr(), "error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes, `: `-separated (a cause already quoted at the
/// end of its parent's message is not repeated).
fn message(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let c_text = c.to_string();
        if !text.ends_with(&c_text) {
            text.push_str(": ");
            text.push_str(&c_text);
        }
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(args: &[&str]) -> Context {
        Context::new(
            args.iter().map(|a| a.to_string()).collect(),
            vec![
                Mount::new("/in", "/tmp/in", false),
                Mount::new("/out", "/tmp/out", true),
            ],
        )
    }

    #[test]
    fn options_take_the_next_argument_or_the_part_after_equals() {
        let c = ctx(&["--key", "k1", "--columns=name,email", "--dry-run"]);
        assert_eq!(c.option("--key"), Some("k1"));
        assert_eq!(c.option("--columns"), Some("name,email"));
        assert_eq!(c.option("--missing"), None);
        assert!(c.flag("--dry-run"));
        assert!(!c.flag("--key=k1"));
        assert_eq!(ctx(&["--key"]).option("--key"), None, "no value follows");
        assert_eq!(ctx(&["--key", "a", "--key=b"]).option("--key"), Some("b"));
        assert_eq!(ctx(&["--keys", "a"]).option("--key"), None);
    }

    #[test]
    fn mounts_are_found_by_guest_path_and_the_output_is_the_writable_one() {
        let c = ctx(&[]);
        assert_eq!(c.mount("/in/").unwrap().path(), Path::new("/tmp/in"));
        assert_eq!(c.output().unwrap().guest(), "/out");
        assert_eq!(c.inputs().map(Mount::guest).collect::<Vec<_>>(), ["/in"]);
        let err = c.mount("/data").unwrap_err();
        assert_eq!(
            err.to_string(),
            "no mount at /data: the step's manifest grants /in, /out (add a [[mount]] with guest = \"/data\", or use one of those)"
        );
        let none = Context::new(vec![], vec![Mount::new("/in", "/in", false)]);
        assert_eq!(none.output().unwrap_err(), MountError::NoOutput);
        let two = Context::new(
            vec![],
            vec![Mount::new("/a", "/a", true), Mount::new("/b", "/b", true)],
        );
        assert_eq!(
            two.output().unwrap_err(),
            MountError::SeveralOutputs(vec!["/a".into(), "/b".into()])
        );
    }

    #[test]
    fn an_error_ends_the_step_with_exit_code_1_and_its_causes() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("cannot read /in/rows.csv")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(std::io::Error::other("permission denied"));
        assert_eq!(message(&e), "cannot read /in/rows.csv: permission denied");
        assert_eq!(finish(Err::<(), _>(e)), ExitCode::FAILURE);
        assert_eq!(finish(Ok::<(), String>(())), ExitCode::SUCCESS);
        assert_eq!(finish(Err::<(), _>("plain text")), ExitCode::FAILURE);
    }

    #[test]
    fn natively_the_runtime_context_has_the_process_arguments_and_no_mounts() {
        let c = Context::from_runtime();
        assert!(c.mounts().is_empty());
        assert_eq!(c.args(), std::env::args().skip(1).collect::<Vec<_>>());
    }
}
