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
//! provider = "local"               # where this environment's secrets come from:
//!                                  # local (default), env or vault
//!
//! [env.dev.records]                # see docs/records.md; usually absent: the
//!                                  # signing key lives in the secret store
//!                                  # (`cordon key generate`)
//! # transit-key = "cordon-dev"     # vault only: sign with this Transit key
//! # signing-key = "/path/dev.key"  # deprecated: a PKCS#8 PEM file, mode 0600
//! # trusted-keys = ["dev.pub"]     # self-asserted candidates for `verify`
//!
//! [env.staging.store]             # optional: a shared store (docs/scale-out.md)
//! url = "s3://cordon-staging/team-a"   # bucket and key prefix
//! endpoint = "http://127.0.0.1:8333"   # optional: MinIO, SeaweedFS, Ceph, R2, ...
//! credentials = { provider = "env" }   # AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or
//! # credentials = { provider = "secrets", access-key-id = "NAME", secret-access-key = "NAME" }
//!
//! [env.prod.secrets]
//! provider = "vault"
//! address = "https://vault.example:8200"
//! role_id = "…"                    # AppRole role id (not a credential)
//! secret_id_env = "CORDON_PROD_SECRET_ID"   # or secret_id_file = "/run/…"
//! ```
//!
//! The keys of each provider are listed in `docs/secrets.md`; a key that
//! belongs to another provider is an error, so a typo never silently
//! changes where secrets come from.
//!
//! Each environment stands alone: nothing is shared between two
//! environments unless the file says so for each. The file is found by
//! walking up from the manifest (or pipeline) directory, or named with
//! `--config`. Unknown keys are errors, located like manifest errors.

use crate::manifest::{Classification, Location, ManifestError, Problem};
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
    /// The embedded encrypted store, one per environment, with its key file
    /// outside the repository. The default, so a workspace works with no
    /// server.
    #[default]
    Local,
    /// `CORDON_SECRET_<NAME>` from the runner's environment (how CI systems
    /// inject secrets). Weaker: anything else in that environment can read it.
    Env,
    /// HashiCorp Vault / OpenBao, KV v2, through a per-run AppRole login.
    Vault,
}

impl ProviderKind {
    /// The provider's name in configuration and records.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Local => "local",
            ProviderKind::Env => "env",
            ProviderKind::Vault => "vault",
        }
    }

    /// Whether the provider names a version of each value it supplies
    /// (`env` does not, so steps using its secrets are never cached).
    pub fn keeps_versions(self) -> bool {
        !matches!(self, ProviderKind::Env)
    }
}

/// Settings of the `local` provider. Paths are absolute (relative ones in
/// the file are resolved against the workspace directory).
#[derive(Debug, Clone, Default)]
pub struct LocalConfig {
    /// The encrypted store (default: `<secrets home>/stores/<env>.store`).
    pub store: Option<PathBuf>,
    /// The key file (default: `<secrets home>/keys/<env>.key`). It must lie
    /// outside the workspace, so the key never travels with the code.
    pub key_file: Option<PathBuf>,
}

/// Settings of the `vault` provider.
#[derive(Debug, Clone)]
pub struct VaultConfig {
    /// Server address, e.g. `https://vault.example:8200`.
    pub address: String,
    /// The AppRole role id (an identifier, not a credential).
    pub role_id: String,
    /// Where the AppRole secret id comes from.
    pub secret_id: SecretIdSource,
    /// Mount path of the AppRole auth method (default: `approle`).
    pub approle_mount: String,
    /// Mount path of the KV v2 engine (default: `secret`).
    pub kv_mount: String,
    /// Prefix of secret paths in the engine (default: none): secret `NAME`
    /// is read at `<kv_mount>/data/<path_prefix>/NAME`.
    pub path_prefix: Option<String>,
    /// The field of the KV entry that holds the value (default: `value`).
    pub field: String,
    /// PEM file of the CA certificates that sign the server's certificate
    /// (absolute path), for servers behind a private CA. Default: the
    /// Mozilla root set bundled with the runner.
    pub ca_file: Option<PathBuf>,
}

/// Where the vault provider finds its AppRole secret id. It is a credential,
/// so it never sits in `cordon.toml` itself.
#[derive(Debug, Clone)]
pub enum SecretIdSource {
    /// The runner's environment variable of this name.
    Env(String),
    /// A file (absolute path), e.g. one a CI system mounts.
    File(PathBuf),
}

/// Secret settings of one environment.
#[derive(Debug, Clone, Default)]
pub struct SecretsConfig {
    /// The provider.
    pub provider: ProviderKind,
    /// `local` settings (used when `provider` is `local`).
    pub local: LocalConfig,
    /// `vault` settings (present when `provider` is `vault`).
    pub vault: Option<VaultConfig>,
}

/// `[env.NAME.secrets]` as written; validated by [`RawSecrets::validate`].
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSecrets {
    provider: Option<Spanned<ProviderKind>>,
    store: Option<Spanned<String>>,
    key_file: Option<Spanned<String>>,
    address: Option<Spanned<String>>,
    role_id: Option<Spanned<String>>,
    secret_id_env: Option<Spanned<String>>,
    secret_id_file: Option<Spanned<String>>,
    approle_mount: Option<Spanned<String>>,
    kv_mount: Option<Spanned<String>>,
    path_prefix: Option<Spanned<String>>,
    field: Option<Spanned<String>>,
    ca_file: Option<Spanned<String>>,
}

impl RawSecrets {
    fn validate(
        self,
        env: &str,
        env_at: Location,
        dir: &Path,
        lines: &crate::manifest::LineIndex,
        problems: &mut Vec<Problem>,
    ) -> SecretsConfig {
        let provider = self
            .provider
            .as_ref()
            .map(|p| *p.get_ref())
            .unwrap_or_default();
        let abs = |p: &Spanned<String>| {
            let p = Path::new(p.get_ref());
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                dir.join(p)
            }
        };
        let local_keys = [("store", &self.store), ("key_file", &self.key_file)];
        let vault_keys = [
            ("address", &self.address),
            ("role_id", &self.role_id),
            ("secret_id_env", &self.secret_id_env),
            ("secret_id_file", &self.secret_id_file),
            ("approle_mount", &self.approle_mount),
            ("kv_mount", &self.kv_mount),
            ("path_prefix", &self.path_prefix),
            ("field", &self.field),
            ("ca_file", &self.ca_file),
        ];
        let mut foreign = |keys: &[(&str, &Option<Spanned<String>>)], owner: &str| {
            for (key, value) in keys {
                if let Some(v) = value {
                    problems.push(lines.at(v.span().start).problem(
                        format!(
                            "`{key}` is a setting of the `{owner}` provider, but environment `{env}` uses `{}`",
                            provider.as_str()
                        ),
                        Some(format!("remove it, or set `provider = \"{owner}\"`")),
                    ));
                }
            }
        };
        let mut config = SecretsConfig {
            provider,
            ..Default::default()
        };
        match provider {
            ProviderKind::Local => {
                foreign(&vault_keys, "vault");
                let key_file = self.key_file.as_ref().map(abs);
                if let (Some(k), Some(raw)) = (&key_file, &self.key_file)
                    && cordon_core::fsutil::resolve(k)
                        .unwrap_or_else(|_| k.clone())
                        .starts_with(
                            cordon_core::fsutil::resolve(dir).unwrap_or_else(|_| dir.to_path_buf()),
                        )
                {
                    problems.push(lines.at(raw.span().start).problem(
                        format!("the key file of environment `{env}` lies inside the workspace, where it would travel with the code"),
                        Some("keep it outside the repository, e.g. under ~/.config/cordon/keys/".into()),
                    ));
                }
                config.local = LocalConfig {
                    store: self.store.as_ref().map(abs),
                    key_file,
                };
            }
            ProviderKind::Env => {
                foreign(&local_keys, "local");
                foreign(&vault_keys, "vault");
            }
            ProviderKind::Vault => {
                foreign(&local_keys, "local");
                let at = self
                    .provider
                    .as_ref()
                    .map(|p| lines.at(p.span().start))
                    .unwrap_or(env_at);
                let mut required = |v: &Option<Spanned<String>>, key: &str, example: &str| match v {
                    Some(v) if !v.get_ref().is_empty() => v.get_ref().clone(),
                    _ => {
                        problems.push(at.problem(
                            format!("the vault provider of environment `{env}` needs `{key}`"),
                            Some(format!("add `{key} = {example}` to [env.{env}.secrets]")),
                        ));
                        String::new()
                    }
                };
                let address = required(&self.address, "address", "\"https://vault.example:8200\"");
                let role_id = required(&self.role_id, "role_id", "\"<the AppRole's role id>\"");
                let secret_id = match (&self.secret_id_env, &self.secret_id_file) {
                    (Some(v), None) => SecretIdSource::Env(v.get_ref().clone()),
                    (None, Some(f)) => SecretIdSource::File(abs(f)),
                    (Some(v), Some(_)) => {
                        problems.push(lines.at(v.span().start).problem(
                            "give the AppRole secret id either by `secret_id_env` or by `secret_id_file`, not both",
                            None,
                        ));
                        SecretIdSource::Env(String::new())
                    }
                    (None, None) => {
                        problems.push(at.problem(
                            format!("the vault provider of environment `{env}` needs a secret id source"),
                            Some("add `secret_id_env = \"VAR\"` (an environment variable of the runner) or `secret_id_file = \"/path\"`; never the secret id itself".into()),
                        ));
                        SecretIdSource::Env(String::new())
                    }
                };
                let is_url = address.starts_with("http://") || address.starts_with("https://");
                if !address.is_empty()
                    && !is_url
                    && let Some(a) = &self.address
                {
                    problems.push(lines.at(a.span().start).problem(
                        format!("vault address `{address}` is not an http:// or https:// URL"),
                        None,
                    ));
                }
                let or = |v: &Option<Spanned<String>>, d: &str| {
                    v.as_ref()
                        .map(|v| v.get_ref().trim_matches('/').to_string())
                        .unwrap_or_else(|| d.to_string())
                };
                config.vault = Some(VaultConfig {
                    address: address.trim_end_matches('/').to_string(),
                    role_id,
                    secret_id,
                    approle_mount: or(&self.approle_mount, "approle"),
                    kv_mount: or(&self.kv_mount, "secret"),
                    path_prefix: self
                        .path_prefix
                        .as_ref()
                        .map(|p| p.get_ref().trim_matches('/').to_string())
                        .filter(|p| !p.is_empty()),
                    field: or(&self.field, "value"),
                    ca_file: self.ca_file.as_ref().map(abs),
                });
            }
        }
        config
    }
}

/// Where the credentials of a shared store come from. They are
/// credentials, so they never sit in `cordon.toml` itself, and they never
/// reach a record, an error or a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreCredentials {
    /// The runner's environment: the access key id and the secret access
    /// key are read from these variables (by default `AWS_ACCESS_KEY_ID`
    /// and `AWS_SECRET_ACCESS_KEY`, as every S3 tool reads them; an
    /// optional `AWS_SESSION_TOKEN` is passed on).
    Env {
        /// The variable that holds the access key id.
        access_key_id: String,
        /// The variable that holds the secret access key.
        secret_access_key: String,
    },
    /// Two secrets of the environment's own secret provider
    /// (`[env.NAME.secrets]`: the local store, `env` or the vault), read
    /// once when the store is opened, never granted to a step.
    Secrets {
        /// The secret that holds the access key id.
        access_key_id: String,
        /// The secret that holds the secret access key.
        secret_access_key: String,
    },
}

/// The default variable of a shared store's access key id.
pub const STORE_ACCESS_KEY_ENV: &str = "AWS_ACCESS_KEY_ID";
/// The default variable of a shared store's secret access key.
pub const STORE_SECRET_KEY_ENV: &str = "AWS_SECRET_ACCESS_KEY";

/// A shared store of one environment (`[env.NAME.store]`): S3-compatible
/// object storage that holds the content store, the action cache and the
/// record chain for every machine that runs the environment. The local
/// state directory is then a cache of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// The URL as written (`s3://bucket/prefix`).
    pub url: String,
    /// The bucket.
    pub bucket: String,
    /// The key prefix inside the bucket (no leading or trailing `/`;
    /// empty for the bucket's root).
    pub prefix: String,
    /// The endpoint of a store other than AWS (`http://127.0.0.1:8333`).
    pub endpoint: Option<String>,
    /// The region (default `us-east-1`, which S3-compatible stores accept).
    pub region: String,
    /// Where the credentials come from.
    pub credentials: StoreCredentials,
    /// Where the table is, for errors about it.
    pub at: Location,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    url: Option<Spanned<String>>,
    endpoint: Option<Spanned<String>>,
    region: Option<Spanned<String>>,
    credentials: Option<Spanned<RawStoreCredentials>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawStoreCredentials {
    provider: Spanned<String>,
    access_key_id_env: Option<String>,
    secret_access_key_env: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
}

impl RawStore {
    fn validate(
        self,
        env: &str,
        env_at: Location,
        lines: &crate::manifest::LineIndex,
        problems: &mut Vec<Problem>,
    ) -> Option<StoreConfig> {
        let before = problems.len();
        let (url, bucket, prefix, at) = match &self.url {
            None => {
                problems.push(env_at.problem(
                    format!("the store of environment `{env}` needs `url`"),
                    Some(format!(
                        "add `url = \"s3://BUCKET/PREFIX\"` to [env.{env}.store]"
                    )),
                ));
                (String::new(), String::new(), String::new(), env_at)
            }
            Some(u) => {
                let at = lines.at(u.span().start);
                let text = u.get_ref();
                let (bucket, prefix) = match text.strip_prefix("s3://") {
                    Some(rest) => {
                        let (b, p) = rest.split_once('/').unwrap_or((rest, ""));
                        (b.to_string(), p.trim_matches('/').to_string())
                    }
                    None => (String::new(), String::new()),
                };
                let bucket_ok = !bucket.is_empty()
                    && bucket.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.'
                    });
                let prefix_ok = prefix
                    .split('/')
                    .all(|part| part != "." && part != ".." && !part.contains(char::is_control))
                    && !prefix.contains("//");
                if !text.starts_with("s3://") || !bucket_ok || !prefix_ok {
                    problems.push(at.problem(
                        format!(
                            "store url `{}` is not `s3://BUCKET/PREFIX`",
                            cordon_core::sanitize::escape_for_terminal(text)
                        ),
                        Some("use an S3 URL: a bucket name (lowercase letters, digits, `-`, `.`) and an optional key prefix, e.g. `s3://cordon-staging/team-a`".into()),
                    ));
                }
                (text.clone(), bucket, prefix, at)
            }
        };
        let endpoint = self.endpoint.as_ref().map(|e| {
            let text = e.get_ref();
            if !(text.starts_with("http://") || text.starts_with("https://")) {
                problems.push(
                    lines.at(e.span().start).problem(
                        format!(
                            "store endpoint `{}` is not an http:// or https:// URL",
                            cordon_core::sanitize::escape_for_terminal(text)
                        ),
                        Some(
                            "e.g. `endpoint = \"http://127.0.0.1:8333\"`, or remove it for AWS S3"
                                .into(),
                        ),
                    ),
                );
            }
            text.trim_end_matches('/').to_string()
        });
        let credentials = match &self.credentials {
            None => {
                problems.push(at.problem(
                    format!("the store of environment `{env}` needs `credentials`"),
                    Some("add `credentials = { provider = \"env\" }` (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY from the runner's environment)".into()),
                ));
                None
            }
            Some(c) => {
                let raw = c.get_ref();
                let at = lines.at(c.span().start);
                let name_ok = |n: &str| {
                    !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                };
                let mut bad =
                    |what: &str, fix: &str| problems.push(at.problem(what, Some(fix.into())));
                match raw.provider.get_ref().as_str() {
                    "env" => {
                        if raw.access_key_id.is_some() || raw.secret_access_key.is_some() {
                            bad(
                                "`access-key-id` and `secret-access-key` name secrets of `provider = \"secrets\"`",
                                "use `access-key-id-env` / `secret-access-key-env` to name other variables",
                            );
                        }
                        for name in [&raw.access_key_id_env, &raw.secret_access_key_env]
                            .into_iter()
                            .flatten()
                        {
                            if !name_ok(name) {
                                bad(
                                    &format!(
                                        "`{}` is not an environment variable name",
                                        cordon_core::sanitize::escape_for_terminal(name)
                                    ),
                                    "use letters, digits and `_`",
                                );
                            }
                        }
                        Some(StoreCredentials::Env {
                            access_key_id: raw
                                .access_key_id_env
                                .clone()
                                .unwrap_or_else(|| STORE_ACCESS_KEY_ENV.into()),
                            secret_access_key: raw
                                .secret_access_key_env
                                .clone()
                                .unwrap_or_else(|| STORE_SECRET_KEY_ENV.into()),
                        })
                    }
                    "secrets" => {
                        if raw.access_key_id_env.is_some() || raw.secret_access_key_env.is_some() {
                            bad(
                                "`access-key-id-env` and `secret-access-key-env` name variables of `provider = \"env\"`",
                                "name the two secrets with `access-key-id` and `secret-access-key`",
                            );
                        }
                        match (&raw.access_key_id, &raw.secret_access_key) {
                            (Some(a), Some(b))
                                if crate::manifest::is_valid_name(a)
                                    && crate::manifest::is_valid_name(b) =>
                            {
                                Some(StoreCredentials::Secrets {
                                    access_key_id: a.clone(),
                                    secret_access_key: b.clone(),
                                })
                            }
                            _ => {
                                bad(
                                    &format!(
                                        "store credentials from the secrets of environment `{env}` need `access-key-id` and `secret-access-key`, each a secret name"
                                    ),
                                    "e.g. `credentials = { provider = \"secrets\", access-key-id = \"store-key-id\", secret-access-key = \"store-secret\" }`",
                                );
                                None
                            }
                        }
                    }
                    other => {
                        problems.push(lines.at(raw.provider.span().start).problem(
                            format!(
                                "store credentials provider `{}` is not supported",
                                cordon_core::sanitize::escape_for_terminal(other)
                            ),
                            Some("use `provider = \"env\"` (the runner's environment variables) or `provider = \"secrets\"` (secrets of the environment's provider)".into()),
                        ));
                        None
                    }
                }
            }
        };
        if problems.len() != before {
            return None;
        }
        Some(StoreConfig {
            url,
            bucket,
            prefix,
            endpoint,
            region: self
                .region
                .map(|r| r.into_inner())
                .unwrap_or_else(|| "us-east-1".into()),
            credentials: credentials?,
            at,
        })
    }
}

/// An OpenBao/Vault Transit key that signs an environment's records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitConfig {
    /// The Transit key's name (an ed25519 key).
    pub key: String,
    /// The Transit engine's mount path (default: `transit`).
    pub mount: String,
}

/// Record signing settings of one environment, paths resolved against the
/// workspace directory.
#[derive(Debug, Clone, Default)]
pub struct RecordsConfig {
    /// A Transit key of the environment's vault that signs its records; the
    /// private key never leaves the server. Needs `provider = "vault"`.
    pub transit: Option<TransitConfig>,
    /// The private key that signs this environment's records. Without one,
    /// records of an unprotected environment are written unsigned (with a
    /// warning), and a protected environment refuses to run.
    pub signing_key: Option<PathBuf>,
    /// Public keys whose signatures `cordon verify` accepts for records of
    /// this environment.
    pub trusted_keys: Vec<PathBuf>,
}

/// An environment's policy settings (`[env.NAME.policy]`), paths resolved
/// against the workspace directory.
#[derive(Debug, Clone, Default)]
pub struct PolicyConfig {
    /// The organisation's own `.rego` files, evaluated with the default pack.
    pub files: Vec<PathBuf>,
    /// Default rules switched off, by name, with where each is switched off
    /// (runs say so every time).
    pub disable: Vec<(String, Location)>,
    /// Whether `--break-glass` may override violations here.
    pub break_glass: bool,
    /// Public keys of the reviewers whose approvals count here: those
    /// `reviewers` names, then those the user trusts for the environment
    /// (`<secrets home>/trusted/<env>/reviewers/*.pub`).
    pub reviewers: Vec<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawPolicy {
    #[serde(default)]
    files: Vec<Spanned<String>>,
    #[serde(default)]
    disable: Vec<Spanned<String>>,
    #[serde(default)]
    break_glass: bool,
    #[serde(default)]
    reviewers: Vec<Spanned<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawRecords {
    signing_key: Option<Spanned<String>>,
    transit_key: Option<Spanned<String>>,
    transit_mount: Option<Spanned<String>>,
    #[serde(default)]
    trusted_keys: Vec<Spanned<String>>,
}

/// What an environment accepts from a lower one (`[env.NAME.promotion]`),
/// paths resolved against the workspace directory. `cordon promote` reads
/// it for the *target* environment: the target decides what it lets in.
#[derive(Debug, Clone)]
pub struct PromotionConfig {
    /// The organisation's own promotion `.rego` files, evaluated with the
    /// default promotion pack.
    pub policy: Vec<PathBuf>,
    /// Steps that must be in an artifact's provenance.
    pub required_steps: Vec<String>,
    /// Data classifications the environment accepts in an artifact's
    /// source datasets and mounts; empty accepts every classification.
    pub classifications: Vec<Classification>,
    /// Whether an artifact whose provenance holds a break-glass run may
    /// come in.
    pub break_glass: bool,
    /// Whether steps that ran with native floats (bit for bit only on the
    /// same CPU architecture, which their records name) may be in its
    /// provenance. True unless the table says `native-floats = false`:
    /// native floats are the default float mode, and an environment that
    /// needs results bit for bit across architectures asks for it.
    pub native_floats: bool,
    /// Where the table is, for messages (none when absent).
    pub at: Option<Location>,
}

/// What an environment without a `[env.NAME.promotion]` table accepts.
impl Default for PromotionConfig {
    fn default() -> Self {
        PromotionConfig {
            policy: Vec::new(),
            required_steps: Vec::new(),
            classifications: Vec::new(),
            break_glass: false,
            native_floats: native_floats_by_default(),
            at: None,
        }
    }
}

/// `native-floats` when the table does not say.
fn native_floats_by_default() -> bool {
    true
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawPromotion {
    #[serde(default)]
    policy: Vec<Spanned<String>>,
    #[serde(default)]
    required_steps: Vec<String>,
    #[serde(default)]
    classifications: Vec<Classification>,
    #[serde(default)]
    break_glass: bool,
    #[serde(default = "native_floats_by_default")]
    native_floats: bool,
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
    /// Its policy: extra rules, disabled rules, break-glass, reviewers.
    pub policy: PolicyConfig,
    /// What it accepts by `cordon promote` (`[env.NAME.promotion]`).
    pub promotion: PromotionConfig,
    /// Its shared store, when `[env.NAME.store]` names one.
    pub store: Option<StoreConfig>,
    /// Where it is defined.
    pub at: Location,
    /// The `cordon.toml` that defines it (none for the built-in default).
    pub config_file: Option<PathBuf>,
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
    records: RawRecords,
    #[serde(default)]
    secrets: RawSecrets,
    #[serde(default)]
    policy: RawPolicy,
    promotion: Option<Spanned<RawPromotion>>,
    store: Option<RawStore>,
}

impl RawPolicy {
    fn validate(
        self,
        env: &str,
        dir: &Path,
        lines: &crate::manifest::LineIndex,
        problems: &mut Vec<Problem>,
    ) -> PolicyConfig {
        let mut existing = |list: Vec<Spanned<String>>, what: &str, fix: &str| -> Vec<PathBuf> {
            list.into_iter()
                .map(|p| {
                    let full = dir.join(p.get_ref());
                    if !full.is_file() {
                        problems.push(lines.at(p.span().start).problem(
                            format!("{what} {} does not exist", full.display()),
                            Some(format!("{fix} (paths are relative to {FILE_NAME})")),
                        ));
                    }
                    full
                })
                .collect()
        };
        let files = existing(self.files, "policy file", "correct the path");
        let mut reviewers = existing(
            self.reviewers,
            "reviewer key",
            "create one with `cordon key reviewer NAME`, or correct the path",
        );
        reviewers.extend(user_reviewers(env));
        let mut disable = Vec::new();
        for d in self.disable {
            let at = lines.at(d.span().start);
            if !crate::rules::DEFAULT_RULES
                .iter()
                .any(|r| r.name == d.get_ref())
            {
                let names: Vec<&str> = crate::rules::DEFAULT_RULES.iter().map(|r| r.name).collect();
                problems.push(at.problem(
                    format!(
                        "environment `{env}` disables `{}`, which is not a default rule",
                        d.get_ref()
                    ),
                    Some(format!("use one of: {}", names.join(", "))),
                ));
            }
            disable.push((d.into_inner(), at));
        }
        PolicyConfig {
            files,
            disable,
            break_glass: self.break_glass,
            reviewers,
        }
    }
}

/// The reviewer keys the user trusts for environment `env` (every `*.pub`
/// in [`cordon_core::locations::reviewer_trust_dir`]), sorted; none when
/// the directory is absent.
fn user_reviewers(env: &str) -> Vec<PathBuf> {
    let Some(dir) = cordon_core::locations::reviewer_trust_dir(env) else {
        return Vec::new();
    };
    let mut keys: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "pub") && p.is_file())
                .collect()
        })
        .unwrap_or_default();
    keys.sort();
    keys
}

/// Finds `cordon.toml` in `start` or the nearest ancestor.
pub fn find(start: &Path) -> Option<PathBuf> {
    let start = cordon_core::fsutil::resolve(start).ok()?;
    start
        .ancestors()
        .map(|d| d.join(FILE_NAME))
        .find(|p| p.is_file())
}

impl WorkspaceConfig {
    /// The configuration for work in `start_dir`: the file named by
    /// `explicit`, else the nearest `cordon.toml`, else the implicit default
    /// (one environment, `dev`, with the `local` secret provider).
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
            policy: PolicyConfig::default(),
            promotion: PromotionConfig::default(),
            store: None,
            at: Location::default(),
            config_file: None,
        };
        WorkspaceConfig {
            path: None,
            dir: dir.to_path_buf(),
            envs: BTreeMap::from([(DEFAULT_ENV.to_string(), dev)]),
        }
    }

    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<WorkspaceConfig, ManifestError> {
        WorkspaceConfig::load_checked(path, true)
    }

    /// Like [`WorkspaceConfig::discover`], for reading grants without
    /// running anything (`cordon audit`): the record key files need not
    /// exist, since a review machine (a CI job on a pull request) should
    /// not hold an environment's private signing key. Everything else is
    /// validated as for a run.
    pub fn discover_for_review(
        explicit: Option<&Path>,
        start_dir: &Path,
    ) -> Result<WorkspaceConfig, ManifestError> {
        match explicit.map(Path::to_path_buf).or_else(|| find(start_dir)) {
            Some(path) => WorkspaceConfig::load_checked(&path, false),
            None => Ok(WorkspaceConfig::implicit(start_dir)),
        }
    }

    pub(crate) fn load_checked(
        path: &Path,
        check_key_files: bool,
    ) -> Result<WorkspaceConfig, ManifestError> {
        let fail = |problems| ManifestError {
            path: path.to_path_buf(),
            problems,
        };
        let source =
            cordon_core::fsutil::read_regular_to_string(path, crate::manifest::MAX_FILE_BYTES)
                .map_err(|e| {
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
        let abs_dir = cordon_core::fsutil::resolve(&dir).unwrap_or_else(|_| dir.clone());
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
            let transit = env.records.transit_key.as_ref().map(|k| TransitConfig {
                key: k.get_ref().trim_matches('/').to_string(),
                mount: env.records.transit_mount.as_ref().map_or_else(
                    || "transit".into(),
                    |m| m.get_ref().trim_matches('/').to_string(),
                ),
            });
            if let Some(k) = &env.records.transit_key {
                let provider = env
                    .secrets
                    .provider
                    .as_ref()
                    .map(|p| *p.get_ref())
                    .unwrap_or_default();
                if provider != ProviderKind::Vault {
                    problems.push(lines.at(k.span().start).problem(
                        format!(
                            "`transit-key` signs with the vault's Transit engine, but environment `{}` uses the `{}` provider",
                            name.get_ref(),
                            provider.as_str()
                        ),
                        Some(format!("set `provider = \"vault\"` in [env.{}.secrets], or remove `transit-key`", name.get_ref())),
                    ));
                }
                if env.records.signing_key.is_some() {
                    problems.push(lines.at(k.span().start).problem(
                        "give the record-signing key either by `transit-key` or by `signing-key`, not both",
                        Some("remove `signing-key`: a Transit key never leaves the server".into()),
                    ));
                }
                if k.get_ref().trim_matches('/').is_empty()
                    || k.get_ref().contains(char::is_whitespace)
                {
                    problems.push(lines.at(k.span().start).problem(
                        format!("`transit-key` `{}` is not a Transit key name", k.get_ref()),
                        None,
                    ));
                }
            } else if let Some(m) = &env.records.transit_mount {
                problems.push(lines.at(m.span().start).problem(
                    "`transit-mount` without `transit-key`",
                    Some("add `transit-key = \"NAME\"`, or remove `transit-mount`".into()),
                ));
            }
            let mut key_path = |p: &Spanned<String>, what: &str| {
                let full = dir.join(p.get_ref());
                if check_key_files && !full.is_file() {
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
                transit,
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
            let secrets = env
                .secrets
                .validate(name.get_ref(), at, &abs_dir, &lines, &mut problems);
            let policy = env
                .policy
                .validate(name.get_ref(), &abs_dir, &lines, &mut problems);
            let promotion = env.promotion.map_or_else(PromotionConfig::default, |p| {
                let at = lines.at(p.span().start);
                let p = p.into_inner();
                let policy = p
                    .policy
                    .into_iter()
                    .map(|f| {
                        let full = abs_dir.join(f.get_ref());
                        if !full.is_file() {
                            problems.push(lines.at(f.span().start).problem(
                                format!("promotion policy file {} does not exist", full.display()),
                                Some(format!(
                                    "correct the path (paths are relative to {FILE_NAME})"
                                )),
                            ));
                        }
                        full
                    })
                    .collect();
                PromotionConfig {
                    policy,
                    required_steps: p.required_steps,
                    classifications: p.classifications,
                    break_glass: p.break_glass,
                    native_floats: p.native_floats,
                    at: Some(at),
                }
            });
            let store = env
                .store
                .and_then(|s| s.validate(name.get_ref(), at, &lines, &mut problems));
            envs.insert(
                name.get_ref().clone(),
                EnvConfig {
                    name: name.into_inner(),
                    protected: env.protected,
                    vars: env.vars,
                    records,
                    secrets,
                    policy,
                    promotion,
                    store,
                    at,
                    config_file: Some(path.to_path_buf()),
                },
            );
        }
        if !problems.is_empty() {
            problems.sort_by_key(|p| (p.line, p.column));
            return Err(fail(problems));
        }
        // A file that defines no environment at all (empty, or only
        // `version = 1`) means the built-in default, exactly as if there
        // were no file: a new workspace starts with `touch cordon.toml`.
        if envs.is_empty() {
            envs = WorkspaceConfig::implicit(&dir).envs;
            for env in envs.values_mut() {
                env.config_file = Some(path.to_path_buf());
            }
        }
        Ok(WorkspaceConfig {
            path: Some(path.to_path_buf()),
            dir,
            envs,
        })
    }

    /// The environment called `name`, or an error that lists the others.
    /// Without a `cordon.toml` the error names the directory the search
    /// started from (which exists) and the file to create.
    pub fn env(&self, name: &str) -> Result<&EnvConfig, ManifestError> {
        self.envs.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.envs.keys().map(String::as_str).collect();
            let known = if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            };
            let (path, message, fix) = match &self.path {
                Some(path) => (
                    path.clone(),
                    format!("no environment `{name}` (defined: {known})"),
                    format!("add an `[env.{name}]` table to {FILE_NAME}, or pick one of the defined environments with --env"),
                ),
                None => (
                    self.dir.clone(),
                    format!("no environment `{name}`: there is no {FILE_NAME} here or in any directory above, so only the built-in `{DEFAULT_ENV}` is defined"),
                    format!("create {} with an `[env.{name}]` table, or name one with --config", self.dir.join(FILE_NAME).display()),
                ),
            };
            ManifestError {
                path,
                problems: vec![Problem {
                    line: 0,
                    column: 0,
                    message,
                    fix: Some(fix),
                }],
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transit_key_needs_the_vault_provider_and_no_key_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(FILE_NAME);
        std::fs::write(
            &p,
            "[env.dev.records]\ntransit-key = \"k\"\nsigning-key = \"keys/k.key\"\n",
        )
        .unwrap();
        let e = WorkspaceConfig::load_checked(&p, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("uses the `local` provider"), "{e}");
        assert!(e.contains("not both"), "{e}");
        std::fs::write(
            &p,
            "[env.prod.secrets]\nprovider = \"vault\"\naddress = \"https://v:8200\"\nrole_id = \"r\"\nsecret_id_env = \"S\"\n[env.prod.records]\ntransit-key = \"cordon-prod\"\ntransit-mount = \"/keys/\"\n",
        )
        .unwrap();
        let c = WorkspaceConfig::load(&p).unwrap();
        assert_eq!(
            c.envs["prod"].records.transit,
            Some(TransitConfig {
                key: "cordon-prod".into(),
                mount: "keys".into()
            })
        );
    }

    #[test]
    fn an_empty_file_means_the_built_in_dev_environment() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(FILE_NAME);
        for text in ["", "version = 1\n", "# nothing yet\n"] {
            std::fs::write(&p, text).unwrap();
            let c = WorkspaceConfig::load(&p).unwrap();
            let dev = c.env(DEFAULT_ENV).unwrap();
            assert_eq!(dev.secrets.provider, ProviderKind::Local);
            assert!(!dev.protected);
        }
    }

    #[test]
    fn without_a_file_an_unknown_environment_names_no_missing_file() {
        let d = tempfile::tempdir().unwrap();
        let c = WorkspaceConfig::implicit(d.path());
        let e = c.env("prod").unwrap_err();
        assert_eq!(
            e.path,
            d.path(),
            "the error is about a directory that exists"
        );
        let text = e.to_string();
        assert!(text.contains("there is no cordon.toml"), "{text}");
        assert!(text.contains("fix: create "), "{text}");
    }

    #[test]
    fn a_fifo_or_device_is_refused_not_read_forever() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join(FILE_NAME);
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let e = WorkspaceConfig::load(&fifo).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        let e = WorkspaceConfig::load(Path::new("/dev/zero"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }

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
    fn provider_settings_per_environment() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(FILE_NAME);
        std::fs::write(
            &p,
            "[env.dev]

[env.ci.secrets]
provider = \"env\"

\
             [env.prod.secrets]
provider = \"vault\"
address = \"https://bao.example:8200/\"\n\
             role_id = \"r-1\"
secret_id_file = \"/run/secrets/id\"
kv_mount = \"/kv/\"\n\
             path_prefix = \"cordon/prod\"
",
        )
        .unwrap();
        let c = WorkspaceConfig::load(&p).unwrap();
        assert_eq!(c.envs["dev"].secrets.provider, ProviderKind::Local);
        assert_eq!(c.envs["ci"].secrets.provider, ProviderKind::Env);
        let v = c.envs["prod"].secrets.vault.as_ref().unwrap();
        assert_eq!(v.address, "https://bao.example:8200");
        assert_eq!(v.kv_mount, "kv");
        assert_eq!(v.approle_mount, "approle");
        assert_eq!(v.field, "value");
        assert_eq!(v.path_prefix.as_deref(), Some("cordon/prod"));
        assert!(
            matches!(&v.secret_id, SecretIdSource::File(f) if f == Path::new("/run/secrets/id"))
        );

        std::fs::write(
            &p,
            "[env.prod.secrets]
provider = \"vault\"
address = \"bao:8200\"
role_id = \"r\"\n\
             secret_id_env = \"A\"
secret_id_file = \"b\"
store = \"s\"
",
        )
        .unwrap();
        let err = WorkspaceConfig::load(&p).unwrap_err().to_string();
        assert!(
            err.contains(":3:11: vault address `bao:8200` is not an http:// or https:// URL"),
            "{err}"
        );
        assert!(
            err.contains(":5:17: give the AppRole secret id either"),
            "{err}"
        );
        assert!(
            err.contains(":7:9: `store` is a setting of the `local` provider"),
            "{err}"
        );

        let inside = d.path().join("keys/dev.key");
        std::fs::write(
            &p,
            format!("[env.dev.secrets]\nkey_file = \"{}\"\n", inside.display()),
        )
        .unwrap();
        let err = WorkspaceConfig::load(&p).unwrap_err().to_string();
        assert!(err.contains("lies inside the workspace"), "{err}");
    }

    #[test]
    fn review_does_not_need_the_record_keys() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(FILE_NAME);
        std::fs::write(&p, "[env.prod.records]\nsigning-key = \"keys/prod.key\"\n").unwrap();
        let err = WorkspaceConfig::load(&p).unwrap_err().to_string();
        assert!(err.contains("signing key"), "{err}");
        let c = WorkspaceConfig::discover_for_review(Some(&p), d.path()).unwrap();
        assert!(c.envs["prod"].records.signing_key.is_some());
        std::fs::write(&p, "[env.prod]\nprotect = true\n").unwrap();
        assert!(WorkspaceConfig::discover_for_review(Some(&p), d.path()).is_err());
    }

    #[test]
    fn a_shared_store_per_environment() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(FILE_NAME);
        std::fs::write(
            &p,
            "[env.staging.store]\nurl = \"s3://cordon-staging/team-a/\"\nendpoint = \"http://127.0.0.1:8333/\"\ncredentials = { provider = \"env\" }\n",
        )
        .unwrap();
        let c = WorkspaceConfig::load(&p).unwrap();
        let s = c.envs["staging"].store.as_ref().unwrap();
        assert_eq!(s.bucket, "cordon-staging");
        assert_eq!(s.prefix, "team-a");
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:8333"));
        assert_eq!(
            s.credentials,
            StoreCredentials::Env {
                access_key_id: "AWS_ACCESS_KEY_ID".into(),
                secret_access_key: "AWS_SECRET_ACCESS_KEY".into()
            }
        );

        std::fs::write(
            &p,
            "[env.staging.store]\nurl = \"https://bucket\"\nendpoint = \"127.0.0.1:8333\"\ncredentials = { provider = \"vault\" }\n",
        )
        .unwrap();
        let err = WorkspaceConfig::load(&p).unwrap_err().to_string();
        assert!(
            err.contains(":2:7: store url `https://bucket` is not `s3://BUCKET/PREFIX`"),
            "{err}"
        );
        assert!(
            err.contains(
                ":3:12: store endpoint `127.0.0.1:8333` is not an http:// or https:// URL"
            ),
            "{err}"
        );
        assert!(
            err.contains(":4:28: store credentials provider `vault` is not supported"),
            "{err}"
        );
        assert!(err.contains("fix: "), "{err}");

        std::fs::write(
            &p,
            "[env.staging.store]\nurl = \"s3://b\"\nbucket = \"b\"\n",
        )
        .unwrap();
        let err = WorkspaceConfig::load(&p).unwrap_err().to_string();
        assert!(err.contains(":3:1: unknown field `bucket`"), "{err}");

        std::fs::write(&p, "[env.staging.store]\nurl = \"s3://b\"\n").unwrap();
        let err = WorkspaceConfig::load(&p).unwrap_err().to_string();
        assert!(err.contains("needs `credentials`"), "{err}");

        std::fs::write(
            &p,
            "[env.staging.store]\nurl = \"s3://b\"\ncredentials = { provider = \"secrets\", access-key-id = \"store-id\", secret-access-key = \"store-secret\" }\n",
        )
        .unwrap();
        let c = WorkspaceConfig::load(&p).unwrap();
        assert_eq!(
            c.envs["staging"].store.as_ref().unwrap().credentials,
            StoreCredentials::Secrets {
                access_key_id: "store-id".into(),
                secret_access_key: "store-secret".into()
            }
        );
        std::fs::write(
            &p,
            "[env.staging.store]\nurl = \"s3://b\"\ncredentials = { provider = \"secrets\", access-key-id = \"store-id\" }\n",
        )
        .unwrap();
        let err = WorkspaceConfig::load(&p).unwrap_err().to_string();
        assert!(err.contains(":3:15: store credentials from the secrets of environment `staging` need `access-key-id` and `secret-access-key`"), "{err}");
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
