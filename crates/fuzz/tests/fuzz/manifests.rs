//! Capability manifests: the TOML a reviewer reads and a step author (or
//! whoever can edit the checkout) writes.

use crate::mutate;
use cordon_manifest::manifest::{Manifest, ManifestError};
use proptest::prelude::*;
use std::path::Path;

/// A manifest that uses every table and most keys.
pub const SEED: &str = r#"version = 1

[step]
name = "train"
component = "../components/train.wasm"
digest = "sha256:6c02523328182d3c3e7993d9784fc8fa46070b06510291872ec098492de73e38"
args = ["--epochs", "400"]
clock = "fixed"
random = "seeded"
floats = "canonical"

[env]
MODE = "fast"

[[mount]]
guest = "/in"
host = "${data_root}/pseudonymized"
access = "read"
purpose = "training features"
classification = "internal"

[[mount]]
guest = "/out"
host = "out"
access = "write"
purpose = "the trained model"
classification = "public"
existing = "keep"

[[secret]]
name = "api-token"
uses = ["http-header", "hmac"]
key = "team/api-token"
hosts = ["api.example.com", "http://127.0.0.1:8080"]

[network]
allow = ["https://api.example.com/v1/", { url = "http://127.0.0.1:8080/hooks/", methods = ["POST"] }]

[limits]
fuel = 20_000_000_000
memory = "256MiB"
timeout = "120s"
output = "16MiB"
stdout = "1MiB"
requests = 10
request-bytes = "1MiB"
request-timeout = "5s"
"#;

/// What every error must be: at least one problem, each with a message,
/// at a line of the file (0 when no line applies), and printable.
pub fn check_error(e: &ManifestError, source: &str) -> Result<(), TestCaseError> {
    let lines = source.split('\n').count();
    prop_assert!(!e.problems.is_empty(), "an error with no problem");
    for p in &e.problems {
        prop_assert!(!p.message.is_empty());
        prop_assert!(p.line <= lines, "line {} of {lines}: {}", p.line, p.message);
    }
    let _ = e.to_string();
    Ok(())
}

fn parse(source: &str) -> Result<(), TestCaseError> {
    match Manifest::parse(Path::new("/w/steps/train.toml"), source) {
        Ok(m) => {
            // What was accepted is checked: names are names.
            prop_assert!(cordon_manifest::manifest::is_valid_name(&m.name));
        }
        Err(e) => check_error(&e, source)?,
    }
    Ok(())
}

#[test]
fn the_seed_is_a_valid_manifest() {
    Manifest::parse(Path::new("/w/steps/train.toml"), SEED).unwrap();
}

proptest! {
    #![proptest_config(crate::config(256))]

    #[test]
    fn a_mutated_manifest_parses_or_names_its_problem(source in mutate::toml_text(SEED)) {
        parse(&source)?;
    }
}

proptest! {
    #![proptest_config(crate::config(512))]

    #[test]
    fn a_granted_destination_is_scheme_host_port_and_a_plain_prefix(
        url in prop_oneof![
            "(https?|HTTP|ftp)://[a-zA-Z0-9.@:\\[\\]\\-]{0,16}(/[a-z.%;\\\\?#]{0,8}){0,3}",
            mutate::string(),
        ],
    ) {
        if let Ok((scheme, host, port, prefix)) = cordon_manifest::manifest::parse_allow_url(&url) {
            prop_assert!(scheme == "http" || scheme == "https");
            prop_assert!(!host.is_empty() && !host.contains('@'));
            prop_assert_eq!(host.to_ascii_lowercase(), host.clone());
            prop_assert!(port > 0 || url.contains(":0"), "{url}: port {port}");
            prop_assert!(prefix.starts_with('/'));
            prop_assert!(!prefix.split('/').any(|s| s == ".."));
            prop_assert!(!prefix.contains('?') && !prefix.contains('#'));
        }
    }
}
