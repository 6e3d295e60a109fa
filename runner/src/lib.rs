//! Cordon runs each step of a deployment or ML pipeline as a WebAssembly
//! component inside a cordon: the step can touch only the directories,
//! secrets, environment variables and arguments its reviewed capability
//! manifest grants, and every run leaves an execution record.
//!
//! Data flows one way, one module per concern:
//!
//! ```text
//! manifest  (TOML → validated Manifest, errors with file:line)
//!   → plan     (paths resolved, component read and digest-checked)
//!   → sandbox  (wasmtime engine, grants → WASI context, limits)
//!   → record   (digests of everything that went in and came out)
//! ```
//!
//! [`exec`] drives one step through that flow; [`outputs`] stages,
//! checks (for secret values, in names and contents) and publishes written
//! mounts; [`secrets`] owns secret values, their providers (`local`, `env`,
//! `vault`) and redaction; [`sanitize`] escapes untrusted text for the
//! terminal; [`digest`] hashes files and trees without following links.
//!
//! For reviewers, [`audit`] says in plain language what each step may do,
//! [`capdiff`] lists every capability change between two versions of a
//! manifest or pipeline (escalations first), and [`inspect`] reads what a
//! component imports and exports; [`review`] holds their shared wording.
//! [`sanitize`] is the one way untrusted text (a step's streams, names
//! from manifests and records) is neutralized before a terminal or a log
//! shows it.

/// Writes to stdout or stderr and ignores the error. A closed stream
/// (`cordon run ... 2>&1 | head`) must not crash a run half-way: a
/// panicking worker would leave the scheduler waiting for it, and a
/// panicking main thread would exit with a crash instead of the run's exit
/// code. Lost lines are the reader's choice.
macro_rules! emit {
    ($stream:ident, $write:ident, $($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = $write!(std::io::$stream(), $($arg)*);
    }};
}

/// `eprintln!` that never panics (see `emit!`).
macro_rules! say {
    ($($arg:tt)*) => { emit!(stderr, writeln, $($arg)*) };
}

/// `eprint!` that never panics.
macro_rules! say_raw {
    ($($arg:tt)*) => { emit!(stderr, write, $($arg)*) };
}

/// `println!` that never panics: `cordon plan ... | head` ends quietly.
macro_rules! out {
    ($($arg:tt)*) => { emit!(stdout, writeln, $($arg)*) };
}

/// `print!` that never panics.
macro_rules! out_raw {
    ($($arg:tt)*) => { emit!(stdout, write, $($arg)*) };
}

pub mod approval;
pub mod attest;
pub mod audit;
pub mod cache;
pub mod capdiff;
pub mod cas;
pub mod chain;
pub mod cli;
pub mod compiled;
pub mod config;
pub mod digest;
pub mod exec;
pub mod export;
pub mod fault;
pub mod fsutil;
pub mod head;
pub mod inspect;
pub mod interrupt;
pub mod journal;
pub mod keys;
pub mod manifest;
pub mod mount_locks;
pub mod outputs;
pub mod pin;
pub mod pipeline;
pub mod plan;
pub mod policy;
pub mod record;
pub mod reexec;
pub mod restore;
pub mod review;
pub mod sandbox;
pub mod sanitize;
pub mod scaffold;
pub mod scheduler;
pub mod secrets;
pub mod units;
pub mod verify;
