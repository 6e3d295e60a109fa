//! The ground every other Cordon crate stands on: content digests and tree
//! digests ([`digest`]), sizes and durations ([`units`]), durable file
//! operations ([`fsutil`]), the one way untrusted text is neutralized for a
//! terminal ([`sanitize`]), the clock and run ids ([`clock`]), where the
//! runner's own state lives ([`locations`]), the redaction seam
//! ([`redact::Redact`]), cooperative cancellation ([`cancel`]), the
//! runner's own output lines, plain or JSON ([`log`]), and the crash-test
//! fault points ([`fault`]).
//!
//! This crate owns no policy and no format of its own beyond digests: it
//! must never read a manifest, a record or a secret, and depends on no other
//! Cordon crate.

#![deny(unsafe_code)]
#![deny(missing_docs)]

/// Writes to stdout or stderr and ignores the error. A closed stream
/// (`cordon run ... 2>&1 | head`) must not crash a run half-way: a
/// panicking worker would leave the scheduler waiting for it, and a
/// panicking main thread would exit with a crash instead of the run's exit
/// code. Lost lines are the reader's choice.
#[macro_export]
macro_rules! emit {
    ($stream:ident, $write:ident, $($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = $write!(std::io::$stream(), $($arg)*);
    }};
}

/// A line of the runner's own on stderr: `eprintln!` that never panics
/// (see [`emit!`]), and that becomes a JSON event with `--log-format json`
/// (see [`log`]).
#[macro_export]
macro_rules! say {
    () => { $crate::log::say("") };
    ($($arg:tt)*) => { $crate::log::say(&format!($($arg)*)) };
}

/// `eprint!` that never panics (a JSON event per line with
/// `--log-format json`).
#[macro_export]
macro_rules! say_raw {
    ($($arg:tt)*) => { $crate::log::say_raw(&format!($($arg)*)) };
}

/// `println!` that never panics: `cordon plan ... | head` ends quietly.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::emit!(stdout, writeln, $($arg)*) };
}

/// `print!` that never panics.
#[macro_export]
macro_rules! out_raw {
    ($($arg:tt)*) => { $crate::emit!(stdout, write, $($arg)*) };
}

pub mod cancel;
pub mod clock;
pub mod digest;
pub mod fault;
pub mod fsutil;
pub mod locations;
pub mod log;
pub mod redact;
pub mod sanitize;
pub mod units;
