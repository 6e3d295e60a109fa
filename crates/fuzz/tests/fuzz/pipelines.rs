//! Pipeline files, with the manifests they name and the ones written
//! inline.

use crate::manifests::{SEED as MANIFEST, check_error};
use crate::mutate;
use cordon_manifest::pipeline::Pipeline;
use proptest::prelude::*;
use std::path::Path;

/// A pipeline with a named manifest, an inline one, `needs` and `cache`.
const SEED: &str = r#"version = 1

[pipeline]
name = "churn-model"
description = "validate -> train"

[[step]]
manifest = "steps/train.toml"

[[step]]
needs = ["train"]
cache = false
inline = """
[step]
name = "sign"
component = "sign.wasm"
digest = "sha256:e50650d8f89f6f88c245662715fbfb9c0d07ea577c25445df330bd284da672c9"

[[mount]]
guest = "/in"
host = "out"
access = "read"
purpose = "the model"
"""
"#;

fn load(pipeline: &str, manifest: &str) -> Result<(), TestCaseError> {
    let path = Path::new("/w/pipeline.toml");
    let read = |p: &Path| -> std::io::Result<String> {
        if p == path {
            Ok(pipeline.to_string())
        } else if p == Path::new("/w/steps/train.toml") {
            Ok(manifest.to_string())
        } else {
            Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such file",
            ))
        }
    };
    match Pipeline::load_from(path, &read) {
        Ok(p) => {
            let _ = format!("{p:?}");
        }
        Err(errors) => {
            prop_assert!(!errors.is_empty());
            for e in &errors {
                // Each error is about a file that was read, at one of its lines.
                if e.path == Path::new("/w/steps/train.toml") {
                    check_error(e, manifest)?;
                } else if e.path == path {
                    check_error(e, pipeline)?;
                } else {
                    // A manifest the changed pipeline names, which does
                    // not exist: no line of it is named.
                    prop_assert!(e.path.starts_with("/w"), "{}", e);
                    check_error(e, "")?;
                }
            }
        }
    }
    Ok(())
}

#[test]
fn the_seed_is_a_valid_pipeline() {
    let read = |p: &Path| -> std::io::Result<String> {
        Ok(if p.ends_with("pipeline.toml") {
            SEED
        } else {
            MANIFEST
        }
        .to_string())
    };
    Pipeline::load_from(Path::new("/w/pipeline.toml"), &read).unwrap();
}

proptest! {
    #![proptest_config(crate::config(192))]

    #[test]
    fn a_mutated_pipeline_loads_or_names_its_problem(source in mutate::toml_text(SEED)) {
        load(&source, MANIFEST)?;
    }

    #[test]
    fn a_pipeline_naming_a_mutated_manifest_loads_or_names_its_problem(
        manifest in mutate::toml_text(MANIFEST),
    ) {
        load(SEED, &manifest)?;
    }
}
