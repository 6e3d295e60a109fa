//! `cordon.toml`: the workspace configuration, which anyone who can edit
//! the checkout can change.

use crate::manifests::check_error;
use crate::mutate;
use cordon_manifest::config::WorkspaceConfig;
use proptest::prelude::*;

/// A configuration with every provider, a store, records, policy and
/// promotion settings.
const SEED: &str = r#"version = 1

[env.dev]
protected = false

[env.dev.vars]
data_root = "data/dev"

[env.dev.secrets]
provider = "local"

[env.prod]
protected = true

[env.prod.vars]
data_root = "data/prod"

[env.prod.secrets]
provider = "vault"
address = "https://127.0.0.1:8200"
role_id = "cordon-prod"
secret_id_env = "CORDON_SECRET_ID"
approle_mount = "approle"
kv_mount = "secret"
path_prefix = "cordon/prod"
field = "value"

[env.prod.records]
transit-key = "cordon-prod"
transit-mount = "transit"

[env.prod.policy]
disable = []
break-glass = false

[env.prod.promotion]
required-steps = ["validate", "train"]
classifications = ["internal"]
break-glass = false
native-floats = true

[env.prod.store]
url = "s3://bucket/prefix"
endpoint = "http://127.0.0.1:8333"
region = "us-east-1"
credentials = { provider = "env", access-key-id-env = "AWS_ACCESS_KEY_ID", secret-access-key-env = "AWS_SECRET_ACCESS_KEY" }
"#;

fn load(source: &str) -> Result<(), TestCaseError> {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("cordon.toml");
    std::fs::write(&path, source).unwrap();
    for loaded in [
        WorkspaceConfig::load(&path),
        WorkspaceConfig::discover_for_review(Some(&path), d.path()),
    ] {
        match loaded {
            Ok(c) => {
                for name in c.envs.keys() {
                    prop_assert!(c.env(name).is_ok());
                }
            }
            Err(e) => check_error(&e, source)?,
        }
    }
    Ok(())
}

#[test]
fn the_seed_is_a_valid_configuration() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("cordon.toml");
    std::fs::write(&path, SEED).unwrap();
    let c = WorkspaceConfig::discover_for_review(Some(&path), d.path()).unwrap();
    assert_eq!(c.envs.len(), 2);
}

proptest! {
    #![proptest_config(crate::config(192))]

    #[test]
    fn a_mutated_configuration_loads_or_names_its_problem(source in mutate::toml_text(SEED)) {
        load(&source)?;
    }
}
