//! The `env` provider: `CORDON_SECRET_<NAME>` from the runner's own
//! environment, the way CI systems inject secrets.
//!
//! It is the weakest provider: every process that shares the runner's
//! environment (the CI job's other commands, anything that reads
//! `/proc/<pid>/environ` as the same user) can read the values, there are no
//! versions to record, and nothing expires when the run ends. Values are
//! never read from argv, which other users on the machine can see.

use crate::value::{Provider, ResolvedSecret, SecretError, SecretValue};
use cordon_manifest::manifest::SecretGrant;

/// The environment variable the `env` provider reads for `name` (or the
/// grant's `key`): `signing-key` becomes `CORDON_SECRET_SIGNING_KEY`; every
/// character that cannot appear in a variable name becomes `_`.
pub fn env_var_for(name: &str) -> String {
    let suffix: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("CORDON_SECRET_{suffix}")
}

/// Reads grants from the runner's environment.
#[derive(Debug)]
pub struct EnvProvider {
    env: String,
}

impl EnvProvider {
    /// The provider for the environment called `env`.
    pub fn new(env: &str) -> Self {
        EnvProvider {
            env: env.to_string(),
        }
    }
}

impl Provider for EnvProvider {
    fn name(&self) -> &'static str {
        "env"
    }

    fn resolve(&mut self, grants: &[SecretGrant]) -> Result<Vec<ResolvedSecret>, SecretError> {
        grants
            .iter()
            .map(|g| {
                let var = env_var_for(g.provider_key());
                let missing = || {
                    SecretError::new(
                        &self.env,
                        format!(
                            "secret {} is granted but the runner's environment has no {var}",
                            g.describe()
                        ),
                    )
                    .fix(format!(
                        "export {var} in the environment that runs cordon (never pass secrets as arguments)"
                    ))
                };
                let bad = || {
                    SecretError::new(
                        &self.env,
                        format!("secret {}: {var} is empty or not valid UTF-8", g.describe()),
                    )
                };
                let value = std::env::var_os(&var)
                    .ok_or_else(missing)?
                    .into_string()
                    .map_err(|_| bad())?;
                if value.is_empty() {
                    return Err(bad());
                }
                Ok(ResolvedSecret {
                    name: g.name.clone(),
                    uses: g.uses.clone(),
                    provider: "env",
                    version: None,
                    credential: None,
                    value: SecretValue::new(value.into_bytes()),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_var_names() {
        assert_eq!(env_var_for("signing-key"), "CORDON_SECRET_SIGNING_KEY");
        assert_eq!(env_var_for("ci/deploy.key"), "CORDON_SECRET_CI_DEPLOY_KEY");
    }
}
