//! The workspace file `cordon.toml`: environments and their settings.
//!
//! ```toml
//! version = 1                      # optional; the only version so far
//!
//! [env.dev]
//! protected = false                # policy treats protected environments strictly
//!
//! [env.dev.vars]                   # `${name}` in a manifest's mount `host`
//! data_root = "data/dev"
//!
//! [env.dev.secrets]
//! provider = "env"                 # where this environment's secrets come from
//!
//! [env.dev.records]                # see docs/records.md
//! signing-key = "keys/dev.key"     # ed25519 PKCS#8 PEM, mode 0600; signs every record
//! trusted-keys = ["keys/dev.pub"]  # PEM public keys `cordon verify` accepts
//! ```
//!
//! Each environment stands alone: nothing is shared between two
//! environments unless the file says so for each. The file is found by
//! walking up from the manifest (or pipeline) directory, or named with
//! `--config`. Unknown keys are errors, located like manifest errors.

use crate::manifest::{Location, ManifestError, Problem};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// The workspace file's name.
pub const FILE_NAME: &str = "cordon.toml";

/// The environment used when no `--env` is given.
pub const DEFAULT_ENV: &str = "dev";

/// Which secret provider an environment uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    /// `CORDON_SECRET_<NAME>` from the runner's environment (how CI systems
    /// inject secrets). Weaker: anything else in that environment can read it.
    #[default]
    Env,
}

/// Secret settings of one environment.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    /// The provider.
    #[serde(default)]
    pub provider: ProviderKind,
}

/// Record signing settings of one environment, paths resolved against the
/// workspace directory.
#[derive(Debug, Clone, Default)]
pub struct RecordsConfig {
    /// The private key that signs this environment's records. Without one,
    /// records of an unprotected environment are written unsigned (with a
    /// warning), and a protected environment refuses to run.
    pub signing_key: Option<PathBuf>,
    /// Public keys whose signatures `cordon verify` accepts for records of
    /// this environment.
    pub trusted_keys: Vec<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawRecords {
    signing_key: Option<Spanned<String>>,
    #[serde(default)]
    trusted_keys: Vec<Spanned<String>>,
}

/// One environment, validated.
#[derive(Debug, Clone)]
pub struct EnvConfig {
    /// Its name (`dev`, `prod`, ...).
    pub name: String,
    /// Whether policy treats it as protected.
    pub protected: bool,
    /// Variables for `${name}` substitution in mount host paths, relative
    /// paths resolved against the workspace directory.
    pub vars: BTreeMap<String, String>,
    /// Where its secrets come from.
    pub secrets: SecretsConfig,
    /// How its records are signed and verified.
    pub records: RecordsConfig,
    /// Where it is defined.
    pub at: Location,
}

/// A loaded `cordon.toml` (or the implicit default when there is none).
#[derive(Debug, Clone)]
pub struct WorkspaceConfig {
    /// The file, when one exists.
    pub path: Option<PathBuf>,
    /// The directory relative paths in it are resolved against.
    pub dir: PathBuf,
    /// Environments by name.
    pub envs: BTreeMap<String, EnvConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    version: Option<Spanned<i64>>,
    #[serde(default)]
    env: BTreeMap<Spanned<String>, RawEnv>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnv {
    #[serde(default)]
    protected: bool,
    #[serde(default)]
    vars: BTreeMap<String, String>,
    #[serde(default)]
    secrets: SecretsConfig,
    #[serde(default)]
    records: RawRecords,
}

/// Finds `cordon.toml` in `start` or the nearest ancestor.
pub fn find(start: &Path) -> Option<PathBuf> {
    let start = crate::fsutil::resolve(start).ok()?;
    start
        .ancestors()
        .map(|d| d.join(FILE_NAME))
        .find(|p| p.is_file())
}

impl WorkspaceConfig {
    /// The configuration for work in `start_dir`: the file named by
    /// `explicit`, else the nearest `cordon.toml`, else the implicit default
    /// (one environment, `dev`, with the `env` secret provider).
    pub fn discover(
        explicit: Option<&Path>,
        start_dir: &Path,
    ) -> Result<WorkspaceConfig, ManifestError> {
        match explicit.map(Path::to_path_buf).or_else(|| find(start_dir)) {
            Some(path) => WorkspaceConfig::load(&path),
            None => Ok(WorkspaceConfig::implicit(start_dir)),
        }
    }

    /// The configuration used when there is no `cordon.toml`.
    pub fn implicit(dir: &Path) -> WorkspaceConfig {
        let dev = EnvConfig {
            name: DEFAULT_ENV.into(),
            protected: false,
            vars: BTreeMap::new(),
            secrets: SecretsConfig::default(),
            records: RecordsConfig::default(),
            at: Location::default(),
        };
        WorkspaceConfig {
            path: None,
            dir: dir.to_path_buf(),
            envs: BTreeMap::from([(DEFAULT_ENV.to_string(), dev)]),
        }
    }

    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<WorkspaceConfig, ManifestError> {
        let fail = |problems| ManifestError {
            path: path.to_path_buf(),
            problems,
        };
        let source = std::fs::read_to_string(path).map_err(|e| {
            fail(vec![Problem {
                line: 0,
                column: 0,
                message: format!("cannot read the workspace file: {e}"),
                fix: None,
            }])
        })?;
        let lines = crate::manifest::LineIndex::new(&source);
        let raw: RawConfig = toml::from_str(&source).map_err(|e| {
            let at = e.span().map(|s| lines.at(s.start)).unwrap_or_default();
            fail(vec![at.problem(e.message().trim(), None)])
        })?;
        let mut problems = Vec::new();
        if let Some(v) = &raw.version
            && *v.get_ref() != 1
        {
            problems.push(lines.at(v.span().start).problem(
                format!("cordon.toml version {} is not supported", v.get_ref()),
                Some("use `version = 1`".into()),
            ));
        }
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut envs = BTreeMap::new();
        for (name, env) in raw.env {
            let at = lines.at(name.span().start);
            if !crate::manifest::is_valid_name(name.get_ref()) {
                problems.push(at.problem(
                    format!("environment name `{}` is invalid", name.get_ref()),
                    Some("use lowercase letters, digits and `-`, starting with a letter".into()),
                ));
                continue;
            }
            let mut key_path = |p: &Spanned<String>, what: &str| {
                let full = dir.join(p.get_ref());
                if !full.is_file() {
                    problems.push(lines.at(p.span().start).problem(
                        format!("{what} {} does not exist", full.display()),
                        Some(format!(
                            "create a key pair with `cordon key generate --env {}`, or correct the path (relative to {FILE_NAME})",
                            name.get_ref()
                        )),
                    ));
                }
                full
            };
            let records = RecordsConfig {
                signing_key: env
                    .records
                    .signing_key
                    .as_ref()
                    .map(|k| key_path(k, "signing key")),
                trusted_keys: env
                    .records
                    .trusted_keys
                    .iter()
                    .map(|k| key_path(k, "trusted key"))
                    .collect(),
            };
            envs.insert(
                name.get_ref().clone(),
                EnvConfig {
                    name: name.into_inner(),
                    protected: env.protected,
                    vars: env.vars,
                    secrets: env.secrets,
                    records,
                    at,
                },
            );
        }
        if !problems.is_empty() {
            return Err(fail(problems));
        }
        Ok(WorkspaceConfig {
            path: Some(path.to_path_buf()),
            dir,
            envs,
        })
    }

    /// The environment called `name`, or an error that lists the others.
    pub fn env(&self, name: &str) -> Result<&EnvConfig, ManifestError> {
        self.envs.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.envs.keys().map(String::as_str).collect();
            ManifestError {
                path: self.path.clone().unwrap_or_else(|| self.dir.join(FILE_NAME)),
                problems: vec![Problem {
                    line: 0,
                    column: 0,
                    message: format!("no environment `{name}` (defined: {})", if known.is_empty() { "none".into() } else { known.join(", ") }),
                    fix: Some(format!("add an `[env.{name}]` table to {FILE_NAME}, or pick one of the defined environments with --env")),
                }],
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_environments_and_rejects_unknown_keys() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(FILE_NAME);
        std::fs::write(
            &p,
            "[env.dev.vars]\ndata_root = \"data/dev\"\n\n[env.prod]\nprotected = true\n",
        )
        .unwrap();
        let c = WorkspaceConfig::load(&p).unwrap();
        assert_eq!(c.envs["dev"].vars["data_root"], "data/dev");
        assert!(c.envs["prod"].protected);
        let err = c.env("staging").unwrap_err().to_string();
        assert!(
            err.contains("no environment `staging` (defined: dev, prod)"),
            "{err}"
        );

        std::fs::write(&p, "[env.dev]\nprotect = true\n").unwrap();
        let err = WorkspaceConfig::load(&p).unwrap_err().to_string();
        assert!(
            err.contains("cordon.toml:2:1: unknown field `protect`"),
            "{err}"
        );
    }

    #[test]
    fn record_keys_resolve_against_the_workspace_and_must_exist() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(FILE_NAME);
        std::fs::create_dir(d.path().join("keys")).unwrap();
        std::fs::write(d.path().join("keys/dev.key"), "k").unwrap();
        std::fs::write(d.path().join("keys/dev.pub"), "p").unwrap();
        std::fs::write(
            &p,
            "[env.dev.records]\nsigning-key = \"keys/dev.key\"\ntrusted-keys = [\"keys/dev.pub\"]\n",
        )
        .unwrap();
        let c = WorkspaceConfig::load(&p).unwrap();
        assert_eq!(
            c.envs["dev"].records.signing_key.as_deref(),
            Some(d.path().join("keys/dev.key").as_path())
        );
        assert_eq!(
            c.envs["dev"].records.trusted_keys,
            [d.path().join("keys/dev.pub")]
        );

        std::fs::write(
            &p,
            "[env.dev.records]\ntrusted-keys = [\"keys/gone.pub\"]\n",
        )
        .unwrap();
        let err = WorkspaceConfig::load(&p).unwrap_err().to_string();
        assert!(err.contains("cordon.toml:2:17: trusted key"), "{err}");
        assert!(err.contains("does not exist"), "{err}");
        std::fs::write(&p, "[env.dev.records]\nsigning_key = \"keys/dev.key\"\n").unwrap();
        let err = WorkspaceConfig::load(&p).unwrap_err().to_string();
        assert!(err.contains("unknown field `signing_key`"), "{err}");
    }

    #[test]
    fn found_by_walking_up() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(FILE_NAME), "").unwrap();
        std::fs::create_dir_all(d.path().join("a/b")).unwrap();
        assert_eq!(
            find(&d.path().join("a/b")).unwrap(),
            d.path().canonicalize().unwrap().join(FILE_NAME)
        );
    }
}
