//! The fuzz targets, one module per kind of document, compiled into one
//! test binary (one link on a small machine). See the crate documentation
//! for what every target checks and how to run a longer session.

mod mutate;

mod approvals;
mod cache;
mod cas;
mod chain;
mod config;
mod envelopes;
mod journal;
mod manifests;
mod pipelines;
mod records;
mod vsa;

use proptest::test_runner::Config;

/// The configuration of a target that runs `cases` cases by default.
///
/// `cases` is chosen per target so that all of them together take well
/// under a minute in a debug build on two cores. `PROPTEST_CASES` in the
/// environment replaces every target's count, for longer sessions.
/// Failures are not persisted to files in the source tree: each one found
/// becomes a named regression test instead.
pub fn config(cases: u32) -> Config {
    let from_env = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse::<u32>().ok());
    Config {
        cases: from_env.unwrap_or(cases),
        failure_persistence: None,
        ..Config::default()
    }
}
