//! The `cordon` binary: parses the command line, renders results, owns the
//! process (exit codes, signals, progress and tracing setup) and leaves every
//! decision to the library crates. See `cordon --help` and
//! docs/architecture.md.

#![deny(unsafe_code)]

#[macro_use]
extern crate cordon_core;

mod cli;
mod interrupt;

fn main() -> std::process::ExitCode {
    cli::main()
}
