//! The trust roots that verify records: which public keys a verifier
//! trusts for an environment, decided from outside the data it judges. In
//! order, with where each came from:
//!
//! 1. `<secrets home>/trusted/<env>/*.pub`, the user's own configuration
//!    (`cordon key generate` puts the new public key there);
//! 2. `--trusted-key FILE` on the command line (every environment);
//! 3. `CORDON_TRUSTED_KEYS`, a `:`-separated list of files (every
//!    environment);
//! 4. `trusted-keys` in a workspace `cordon.toml`: only *candidates*, since
//!    anyone who can edit the file can add a key. They are used for an
//!    unprotected environment with a warning, and ignored for a protected
//!    one.
//!
//! Only public keys are read here; signing keys are the engine's.

use crate::attest::TrustedKey;
use cordon_manifest::config::EnvConfig;
use std::path::{Path, PathBuf};

pub use cordon_core::locations::trust_dir;

/// The environment variable that lists extra trusted public key files.
pub const TRUSTED_KEYS_VAR: &str = "CORDON_TRUSTED_KEYS";

/// A trusted key file that cannot be read: a verifier must not quietly
/// trust less (or more) than it was told.
#[derive(Debug, thiserror::Error)]
#[error("{problem} ({})", origin.describe())]
pub struct TrustError {
    /// What is wrong with the file.
    pub problem: String,
    /// Where the verifier was told to trust it.
    pub origin: TrustOrigin,
}

/// Where a trusted key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustOrigin {
    /// The user's trust directory.
    UserConfig,
    /// `--trusted-key`.
    CommandLine,
    /// [`TRUSTED_KEYS_VAR`].
    Environment,
    /// A workspace `cordon.toml` (self-asserted).
    Workspace,
}

impl TrustOrigin {
    /// How messages name it.
    pub fn describe(self) -> &'static str {
        match self {
            TrustOrigin::UserConfig => "user configuration",
            TrustOrigin::CommandLine => "--trusted-key",
            TrustOrigin::Environment => TRUSTED_KEYS_VAR,
            TrustOrigin::Workspace => "cordon.toml, self-asserted",
        }
    }
}

/// The trust roots a verifier was given, before they are read.
#[derive(Debug, Clone, Default)]
pub struct TrustRoots {
    /// `--trusted-key` files.
    pub command_line: Vec<PathBuf>,
    /// Files from [`TRUSTED_KEYS_VAR`].
    pub environment: Vec<PathBuf>,
}

impl TrustRoots {
    /// Command-line files plus those [`TRUSTED_KEYS_VAR`] lists.
    pub fn from_process(command_line: Vec<PathBuf>) -> TrustRoots {
        let environment = std::env::var_os(TRUSTED_KEYS_VAR)
            .map(|v| {
                std::env::split_paths(&v)
                    .filter(|p| !p.as_os_str().is_empty())
                    .collect()
            })
            .unwrap_or_default();
        TrustRoots {
            command_line,
            environment,
        }
    }

    /// The keys trusted for records of environment `name`, and warnings
    /// to show about them. `env` is its configuration, when the workspace
    /// defines it. A key file that cannot be read is an error: a verifier
    /// must not quietly trust less (or more) than it was told.
    pub fn keys_for(&self, name: &str, env: Option<&EnvConfig>) -> Result<Trusted, TrustError> {
        let mut keys = Vec::new();
        let mut warnings = Vec::new();
        let add = |path: &Path, origin: TrustOrigin, keys: &mut Vec<_>| {
            TrustedKey::load(path)
                .map(|k| keys.push((k, origin)))
                .map_err(|e| TrustError {
                    problem: e.to_string(),
                    origin,
                })
        };
        if let Some(dir) = trust_dir(name)
            && let Ok(entries) = std::fs::read_dir(&dir)
        {
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "pub"))
                .collect();
            files.sort();
            for f in files {
                add(&f, TrustOrigin::UserConfig, &mut keys)?;
            }
        }
        for f in &self.command_line {
            add(f, TrustOrigin::CommandLine, &mut keys)?;
        }
        for f in &self.environment {
            add(f, TrustOrigin::Environment, &mut keys)?;
        }
        if let Some(env) = env
            && !env.records.trusted_keys.is_empty()
        {
            if env.protected {
                warnings.push(format!(
                    "environment `{name}` is protected: the trusted-keys of cordon.toml are ignored (anyone who can edit the file could add a key); trust its keys with --trusted-key, {TRUSTED_KEYS_VAR} or {}",
                    trust_dir(name).map_or_else(|| "the user trust directory".into(), |d| d.display().to_string())
                ));
            } else {
                warnings.push(format!(
                    "environment `{name}`: trusting the keys listed in cordon.toml, which anyone who can edit the file can change; put them in {} or pass --trusted-key",
                    trust_dir(name).map_or_else(|| "the user trust directory".into(), |d| d.display().to_string())
                ));
                for f in &env.records.trusted_keys {
                    add(f, TrustOrigin::Workspace, &mut keys)?;
                }
            }
        }
        Ok(Trusted { keys, warnings })
    }
}

/// The keys a verifier trusts for one environment.
#[derive(Debug, Clone, Default)]
pub struct Trusted {
    /// Each key with where it came from.
    pub keys: Vec<(TrustedKey, TrustOrigin)>,
    /// What the verifier should hear about them (self-asserted keys).
    pub warnings: Vec<String>,
}

/// Where the user keeps the public keys environment `target` trusts for
/// records of environment `source` when an artifact is promoted from
/// `source` to `target`: `<secrets home>/trusted/<target>/promote-from/<source>/`.
/// Separate from `source`'s own trust directory on purpose: that the user
/// trusts a key for `dev` records says nothing about whether `prod` lets
/// an artifact signed by it in.
pub fn promotion_trust_dir(target: &str, source: &str) -> Option<PathBuf> {
    trust_dir(target).map(|d| d.join("promote-from").join(source))
}

/// The keys `target` trusts for records of `source` in a promotion: every
/// `*.pub` in [`promotion_trust_dir`] and the files in `extra` (the
/// command line's `--trusted-key`). Never the workspace's own
/// `trusted-keys`: a promotion gate must not be opened by editing the file
/// it judges.
pub fn promotion_keys(
    target: &str,
    source: &str,
    extra: &[PathBuf],
) -> Result<Vec<(TrustedKey, TrustOrigin)>, TrustError> {
    let mut keys = Vec::new();
    let mut add = |path: &Path, origin: TrustOrigin| {
        TrustedKey::load(path)
            .map(|k| keys.push((k, origin)))
            .map_err(|e| TrustError {
                problem: e.to_string(),
                origin,
            })
    };
    if let Some(dir) = promotion_trust_dir(target, source)
        && let Ok(entries) = std::fs::read_dir(&dir)
    {
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "pub"))
            .collect();
        files.sort();
        for f in files {
            add(&f, TrustOrigin::UserConfig)?;
        }
    }
    for f in extra {
        add(f, TrustOrigin::CommandLine)?;
    }
    Ok(keys)
}
