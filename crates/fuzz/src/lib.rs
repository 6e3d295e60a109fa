//! Property-based fuzz targets for every parser of bytes that can come
//! from a step, a file, a bucket or a token: manifests, `cordon.toml`,
//! pipeline files, step, repair and pipeline records, DSSE envelopes,
//! chain heads, chain log entries, journal intents, action-cache entries,
//! stored tree listings, approvals and verification summaries. The targets
//! are the tests of this crate (`tests/fuzz/`); the library is empty.
//!
//! Each target feeds arbitrary bytes and, more usefully, structured
//! mutations of a valid document (a field set to another value or type,
//! a field removed or added, the text cut short, bytes flipped, inserted
//! or repeated) into the public parse or verify function. The property is
//! always that the function returns a value or a typed error and never
//! panics, plus what the parser promises beyond that: a round trip where
//! there is a serializer, and for signed documents that nothing but the
//! signed payload is ever accepted. Inputs are bounded in size, so a run
//! is bounded in time and memory.
//!
//! A run is bounded (see `tests/fuzz/main.rs`) so that all targets
//! together stay well under a minute in a debug build on two cores, as
//! part of `cargo test --workspace`. A longer session raises every target
//! at once: `PROPTEST_CASES=20000 cargo test -p cordon-fuzz --release`
//! (docs/security.md, "Fuzzing"). Every failure found becomes a plain
//! `#[test]` with the minimal input, named after what it would have let
//! through, beside the target that found it.
//!
//! Targets for functions that are not public live beside their code as
//! `#[cfg(test)]` blocks instead: the sandbox's request path, URL and
//! bound-host checks (`cordon-sandbox`, `net::fuzz`), what is read from the
//! shared bucket (`cordon-engine`, `remote::fuzz`), and the parsers of
//! action-cache entries, stored tree listings and chain log lines (their
//! `tests::parse` modules).

#![deny(unsafe_code)]
#![deny(missing_docs)]
