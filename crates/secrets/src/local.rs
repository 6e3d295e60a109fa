//! The `local` provider: an encrypted store per environment, with its key
//! file outside the repository.
//!
//! Layout (the *secrets home* is `$CORDON_SECRETS_HOME`, else
//! `$XDG_CONFIG_HOME/cordon`, else `~/.config/cordon`; `store` and
//! `key_file` in `[env.NAME.secrets]` override the paths):
//!
//! ```text
//! <secrets home>/keys/<env>.key      32 random bytes as hex, mode 0600
//! <secrets home>/stores/<env>.store  header ‖ nonce ‖ XChaCha20-Poly1305(JSON)
//! ```
//!
//! The store is authenticated with the environment's name as associated
//! data, so a `dev` store copied over the `prod` one does not open. Each
//! change decrypts the whole store, edits it in memory and replaces the file
//! atomically (temporary file, fsync, rename) under an exclusive lock on
//! `<store>.lock`: a crash leaves the old store or the new one, and two
//! concurrent changes never lose one another. A wrong key or a damaged file is reported as such and the
//! file is left exactly as it was.
//!
//! Every value keeps its versions (1, 2, ...) with their creation times;
//! runs use the newest, and the record names the version. `rm` removes a
//! secret with all its versions, and a later `set` of the same name goes on
//! numbering from the last removed version, so a version number in an old
//! record never names two different values.

use crate::value::{Provider, ResolvedSecret, SecretError, SecretValue};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use cordon_manifest::config::EnvConfig;
use cordon_manifest::manifest::SecretGrant;
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Names the variable that moves the secrets home (tests, and operators who
/// keep keys on a separate volume).
pub const HOME_VAR: &str = cordon_core::locations::SECRETS_HOME_VAR;

/// First bytes of a store file: format and version.
const MAGIC: &[u8] = b"cordon-store-v1\n";
const NONCE_LEN: usize = 24;
/// Largest value `secret set` accepts. Secrets are keys and tokens, not
/// data; the bound keeps a mistaken `< big-file` out of the store.
pub const MAX_VALUE: usize = 64 * 1024;

/// One version of a secret, as listed (never with its value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    /// Version number, from 1.
    pub version: u32,
    /// RFC 3339 creation time.
    pub created_at: String,
}

#[derive(serde::Serialize, serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct StoreData {
    /// Secrets by name; versions oldest first.
    secrets: BTreeMap<String, Vec<StoredVersion>>,
    /// The last version number of each removed secret.
    #[serde(default)]
    retired: BTreeMap<String, u32>,
    /// The ed25519 seed that signs this environment's records. It is the
    /// runner's, not a step's: it lives outside `secrets`, so no grant can
    /// name it, whatever the manifest's `name` or `key` says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    record_signing_key: Option<StoredVersion>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredVersion {
    version: u32,
    created_at: String,
    /// The value, hex-encoded (values are bytes, JSON strings are text).
    value: Zeroizing<String>,
}

/// An environment's record-signing seed, as [`LocalStore::record_signing_seed`]
/// returns it. Zeroed on drop.
pub struct RecordSeed {
    /// Its version in the store.
    pub version: u32,
    /// The ed25519 seed.
    pub seed: Zeroizing<[u8; 32]>,
}

/// One environment's encrypted store.
#[derive(Debug, Clone)]
pub struct LocalStore {
    env: String,
    store: PathBuf,
    key_file: PathBuf,
}

pub use cordon_core::locations::secrets_home;

impl LocalStore {
    /// The store of `env`, at its configured or default paths.
    pub fn for_env(env: &EnvConfig) -> Result<LocalStore, SecretError> {
        let local = &env.secrets.local;
        let home = || {
            secrets_home().ok_or_else(|| {
                SecretError::new(&env.name, "cannot place the local secret store: neither CORDON_SECRETS_HOME, XDG_CONFIG_HOME nor HOME is set")
                    .fix(format!("set {HOME_VAR}, or `store` and `key_file` in [env.{}.secrets]", env.name))
            })
        };
        let store = match &local.store {
            Some(p) => p.clone(),
            None => home()?.join("stores").join(format!("{}.store", env.name)),
        };
        let key_file = match &local.key_file {
            Some(p) => p.clone(),
            None => home()?.join("keys").join(format!("{}.key", env.name)),
        };
        Ok(LocalStore {
            env: env.name.clone(),
            store,
            key_file,
        })
    }

    /// The store file.
    pub fn store_path(&self) -> &Path {
        &self.store
    }

    /// The key file.
    pub fn key_path(&self) -> &Path {
        &self.key_file
    }

    fn err(&self, message: impl Into<String>) -> SecretError {
        SecretError::new(&self.env, message)
    }

    /// Reads the key. With `create`, makes one when neither key nor store
    /// exists yet (first `secret set` of an environment).
    fn key(&self, create: bool) -> Result<Zeroizing<[u8; 32]>, SecretError> {
        let path = &self.key_file;
        match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if self.store.exists() {
                    return Err(self
                        .err(format!(
                            "the local secret store {} exists but its key file {} is missing; the store cannot be opened without it",
                            self.store.display(),
                            path.display()
                        ))
                        .fix("restore the key file from your backup (the store is untouched)"));
                }
                if !create {
                    return Err(self
                        .err(format!(
                            "the local secret store has no key yet ({} does not exist)",
                            path.display()
                        ))
                        .fix(format!(
                            "add a secret first: cordon secret set NAME --env {} < value-file",
                            self.env
                        )));
                }
                return self.create_key();
            }
            Err(e) => {
                return Err(self.err(format!("cannot read key file {}: {e}", path.display())));
            }
            Ok(meta) => {
                if !meta.is_file() {
                    return Err(
                        self.err(format!("key file {} is not a regular file", path.display()))
                    );
                }
                if meta.permissions().mode() & 0o077 != 0 {
                    return Err(self
                        .err(format!(
                            "key file {} is readable by other users (mode {:o})",
                            path.display(),
                            meta.permissions().mode() & 0o777
                        ))
                        .fix(format!("chmod 600 {}", path.display())));
                }
            }
        }
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| self.err(format!("cannot read key file {}: {e}", path.display())))?,
        );
        let mut key = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), key.as_mut()).map_err(|_| {
            self.err(format!(
                "key file {} is not a cordon key (64 hex characters)",
                path.display()
            ))
        })?;
        Ok(key)
    }

    fn create_key(&self) -> Result<Zeroizing<[u8; 32]>, SecretError> {
        let path = &self.key_file;
        if let Some(dir) = path.parent() {
            cordon_core::fsutil::create_private_dir(dir).map_err(|e| {
                self.err(format!(
                    "cannot create key directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
        let mut key = Zeroizing::new([0u8; 32]);
        rand::fill(key.as_mut_slice());
        let text = Zeroizing::new(format!("{}\n", hex::encode(key.as_slice())));
        // create_new: never replace a key that appeared meanwhile; 0600 from
        // the first byte, not chmod after the fact.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| self.err(format!("cannot create key file {}: {e}", path.display())))?;
        f.write_all(text.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| self.err(format!("cannot write key file {}: {e}", path.display())))?;
        Ok(key)
    }

    fn aad(&self) -> Vec<u8> {
        [MAGIC, self.env.as_bytes()].concat()
    }

    fn damaged(&self) -> SecretError {
        self.err(format!(
            "cannot open the local secret store {} with key file {}: the key is wrong or the store is damaged; nothing was changed",
            self.store.display(),
            self.key_file.display()
        ))
        .fix("use the key file this store was created with (`key_file` in cordon.toml, or CORDON_SECRETS_HOME), or restore the store from a backup")
    }

    fn load(&self, key: &[u8; 32]) -> Result<StoreData, SecretError> {
        let bytes = match std::fs::read(&self.store) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(StoreData::default()),
            Err(e) => {
                return Err(self.err(format!(
                    "cannot read the local secret store {}: {e}",
                    self.store.display()
                )));
            }
            Ok(b) => b,
        };
        if bytes.len() < MAGIC.len() + NONCE_LEN || !bytes.starts_with(MAGIC) {
            return Err(self.damaged());
        }
        let (nonce, sealed) = bytes[MAGIC.len()..].split_at(NONCE_LEN);
        let cipher = XChaCha20Poly1305::new(key.into());
        let plain = Zeroizing::new(
            cipher
                .decrypt(
                    XNonce::from_slice(nonce),
                    Payload {
                        msg: sealed,
                        aad: &self.aad(),
                    },
                )
                .map_err(|_| self.damaged())?,
        );
        serde_json::from_slice(&plain).map_err(|_| self.damaged())
    }

    fn save(&self, key: &[u8; 32], data: &StoreData) -> Result<(), SecretError> {
        let plain = Zeroizing::new(serde_json::to_vec(data).expect("store serializes"));
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce);
        let cipher = XChaCha20Poly1305::new(key.into());
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: &self.aad(),
                },
            )
            .map_err(|_| self.err("cannot encrypt the local secret store"))?;
        if let Some(dir) = self.store.parent() {
            cordon_core::fsutil::create_private_dir(dir).map_err(|e| {
                self.err(format!(
                    "cannot create store directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
        let bytes = [MAGIC, &nonce, &sealed].concat();
        cordon_core::fsutil::write_atomic(&self.store, &bytes).map_err(|e| {
            self.err(format!(
                "cannot write the local secret store {}: {e}; the previous store is intact",
                self.store.display()
            ))
        })
    }

    /// Holds an exclusive lock on `<store>.lock` until dropped, so two
    /// concurrent `cordon secret` commands cannot both read the store, edit
    /// it and have one write lose the other's change.
    fn lock(&self) -> Result<std::fs::File, SecretError> {
        if let Some(dir) = self.store.parent() {
            cordon_core::fsutil::create_private_dir(dir).map_err(|e| {
                self.err(format!(
                    "cannot create store directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
        let mut name = self.store.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| self.err(format!("cannot open lock file {}: {e}", path.display())))?;
        // An exclusive flock, released when the file closes.
        if let Err(e) = file.lock() {
            return Err(self.err(format!("cannot lock {}: {e}", path.display())));
        }
        Ok(file)
    }

    fn edit<T>(
        &self,
        create: bool,
        f: impl FnOnce(&mut StoreData) -> Result<T, SecretError>,
    ) -> Result<T, SecretError> {
        let _lock = self.lock()?;
        let key = self.key(create)?;
        let mut data = self.load(&key)?;
        let out = f(&mut data)?;
        self.save(&key, &data)?;
        Ok(out)
    }

    /// Adds secret `name` as version 1 (or the next number after a removed
    /// one). Fails if it exists: replacing a value is `rotate`.
    pub fn set(&self, name: &str, value: SecretValue) -> Result<u32, SecretError> {
        self.check_value(name, &value)?;
        self.edit(true, |data| {
            if data.secrets.contains_key(name) {
                return Err(self
                    .err(format!("secret `{name}` already exists"))
                    .fix(format!(
                        "add a new version with: cordon secret rotate {name} --env {}",
                        self.env
                    )));
            }
            let version = data.retired.remove(name).unwrap_or(0) + 1;
            data.secrets
                .insert(name.to_string(), vec![stored(version, &value)]);
            Ok(version)
        })
    }

    /// Adds a new version of secret `name`; runs use it from now on.
    pub fn rotate(&self, name: &str, value: SecretValue) -> Result<u32, SecretError> {
        self.check_value(name, &value)?;
        self.edit(false, |data| {
            let versions = data
                .secrets
                .get_mut(name)
                .ok_or_else(|| self.missing(name))?;
            let version = versions.last().map_or(0, |v| v.version) + 1;
            versions.push(stored(version, &value));
            Ok(version)
        })
    }

    /// Removes secret `name` with all its versions; returns how many.
    pub fn remove(&self, name: &str) -> Result<usize, SecretError> {
        self.edit(false, |data| {
            let versions = data
                .secrets
                .remove(name)
                .ok_or_else(|| self.missing(name))?;
            if let Some(last) = versions.last() {
                data.retired.insert(name.to_string(), last.version);
            }
            Ok(versions.len())
        })
    }

    /// Every secret with its versions, oldest first. Never values.
    pub fn list(&self) -> Result<BTreeMap<String, Vec<VersionInfo>>, SecretError> {
        if !self.store.exists() {
            return Ok(BTreeMap::new());
        }
        let data = self.load(&*self.key(false)?)?;
        Ok(data
            .secrets
            .iter()
            .map(|(name, versions)| {
                (
                    name.clone(),
                    versions
                        .iter()
                        .map(|v| VersionInfo {
                            version: v.version,
                            created_at: v.created_at.clone(),
                        })
                        .collect(),
                )
            })
            .collect())
    }

    /// The seed that signs this environment's records, with its version,
    /// if `cordon key generate` made one. `None` when there is no store yet.
    pub fn record_signing_seed(&self) -> Result<Option<RecordSeed>, SecretError> {
        if !self.store.exists() {
            return Ok(None);
        }
        let data = self.load(&*self.key(false)?)?;
        let Some(stored) = &data.record_signing_key else {
            return Ok(None);
        };
        let mut seed = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(stored.value.as_bytes(), seed.as_mut()).map_err(|_| self.damaged())?;
        Ok(Some(RecordSeed {
            version: stored.version,
            seed,
        }))
    }

    /// Stores `seed` as the environment's record-signing key (version 1).
    /// Refuses to replace one: rotating a signing key is a decision, and
    /// every verifier must learn the new public key.
    pub fn create_record_signing_seed(&self, seed: &[u8; 32]) -> Result<u32, SecretError> {
        self.edit(true, |data| {
            if data.record_signing_key.is_some() {
                return Err(self
                    .err(format!(
                        "environment `{}` already has a record-signing key in {}",
                        self.env,
                        self.store.display()
                    ))
                    .fix(
                        "keep it; `cordon key generate --if-missing` succeeds when a key exists",
                    ));
            }
            let value = SecretValue::new(seed.to_vec());
            data.record_signing_key = Some(stored(1, &value));
            Ok(1)
        })
    }

    fn missing(&self, name: &str) -> SecretError {
        self.err(format!(
            "secret `{name}` is not in the local store {}",
            self.store.display()
        ))
        .fix(format!(
            "add it with: cordon secret set {name} --env {} < value-file",
            self.env
        ))
    }

    fn check_value(&self, name: &str, value: &SecretValue) -> Result<(), SecretError> {
        if !cordon_manifest::manifest::is_valid_name(name) {
            return Err(self
                .err(format!("secret name `{name}` is invalid"))
                .fix("use lowercase letters, digits and `-`, starting with a letter"));
        }
        let len = value.expose().len();
        if len == 0 {
            return Err(self
                .err(format!("the value for secret `{name}` is empty"))
                .fix(
                    "pipe the value on stdin, e.g. cordon secret set NAME --env ENV < value-file",
                ));
        }
        if len > MAX_VALUE {
            return Err(self.err(format!(
                "the value for secret `{name}` is {len} bytes; the local store takes at most {MAX_VALUE}"
            )));
        }
        Ok(())
    }
}

fn stored(version: u32, value: &SecretValue) -> StoredVersion {
    StoredVersion {
        version,
        created_at: cordon_record::record::now_rfc3339(),
        value: Zeroizing::new(hex::encode(value.expose())),
    }
}

/// Resolves grants from an environment's local store.
#[derive(Debug)]
pub struct LocalProvider {
    store: LocalStore,
}

impl LocalProvider {
    /// The provider for `env`.
    pub fn open(env: &EnvConfig) -> Result<LocalProvider, SecretError> {
        Ok(LocalProvider {
            store: LocalStore::for_env(env)?,
        })
    }
}

impl Provider for LocalProvider {
    fn name(&self) -> &'static str {
        "local"
    }

    fn resolve(&mut self, grants: &[SecretGrant]) -> Result<Vec<ResolvedSecret>, SecretError> {
        let s = &self.store;
        if !s.store.exists() {
            let first = grants.first().map_or("", |g| g.provider_key());
            return Err(s
                .err(format!(
                    "secret `{first}` is granted but there is no local secret store yet ({})",
                    s.store.display()
                ))
                .fix(format!(
                    "add it with: cordon secret set {first} --env {} < value-file",
                    s.env
                )));
        }
        let data = s.load(&*s.key(false)?)?;
        grants
            .iter()
            .map(|g| {
                let latest = data
                    .secrets
                    .get(g.provider_key())
                    .and_then(|v| v.last())
                    .ok_or_else(|| s.missing(g.provider_key()))?;
                let value = hex::decode(latest.value.as_bytes()).map_err(|_| s.damaged())?;
                Ok(ResolvedSecret {
                    name: g.name.clone(),
                    uses: g.uses.clone(),
                    provider: "local",
                    version: Some(latest.version.to_string()),
                    credential: None,
                    value: SecretValue::new(value),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path, env: &str) -> LocalStore {
        LocalStore {
            env: env.into(),
            store: dir.join("stores").join(format!("{env}.store")),
            key_file: dir.join("keys").join(format!("{env}.key")),
        }
    }

    fn v(s: &str) -> SecretValue {
        SecretValue::new(s.as_bytes().to_vec())
    }

    #[test]
    fn versions_are_numbered_and_survive_removal() {
        let d = tempfile::tempdir().unwrap();
        let s = store(d.path(), "dev");
        assert_eq!(s.set("api-key", v("one-value")).unwrap(), 1);
        assert!(
            s.set("api-key", v("again"))
                .unwrap_err()
                .to_string()
                .contains("rotate")
        );
        assert_eq!(s.rotate("api-key", v("two-value")).unwrap(), 2);
        let list = s.list().unwrap();
        assert_eq!(list["api-key"].len(), 2);
        assert_eq!(s.remove("api-key").unwrap(), 2);
        assert!(s.list().unwrap().is_empty());
        assert_eq!(s.set("api-key", v("three-value")).unwrap(), 3);
        let mode = std::fs::metadata(s.key_path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let store_bytes = std::fs::read(s.store_path()).unwrap();
        assert!(!store_bytes.windows(11).any(|w| w == b"three-value"));
    }

    #[test]
    fn wrong_key_and_damage_are_reported_and_change_nothing() {
        let d = tempfile::tempdir().unwrap();
        let s = store(d.path(), "dev");
        s.set("k", v("value-1")).unwrap();
        let before = std::fs::read(s.store_path()).unwrap();

        // A store moved to another environment does not open.
        let other = LocalStore {
            env: "prod".into(),
            ..s.clone()
        };
        assert!(
            other
                .list()
                .unwrap_err()
                .to_string()
                .contains("the key is wrong or the store is damaged")
        );

        std::fs::write(s.key_path(), format!("{}\n", "ab".repeat(32))).unwrap();
        let err = s.rotate("k", v("value-2")).unwrap_err().to_string();
        assert!(
            err.contains("the key is wrong or the store is damaged"),
            "{err}"
        );
        assert_eq!(std::fs::read(s.store_path()).unwrap(), before);
    }

    #[test]
    fn concurrent_changes_are_all_kept() {
        let d = tempfile::tempdir().unwrap();
        let s = store(d.path(), "dev");
        s.set("k", v("value-0")).unwrap();
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let s = s.clone();
                std::thread::spawn(move || s.rotate("k", v(&format!("value-{i}"))).unwrap())
            })
            .collect();
        let mut versions: Vec<u32> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        versions.sort();
        assert_eq!(versions, (2..=9).collect::<Vec<_>>());
        assert_eq!(s.list().unwrap()["k"].len(), 9);
    }

    #[test]
    fn key_readable_by_others_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let s = store(d.path(), "dev");
        s.set("k", v("value-1")).unwrap();
        std::fs::set_permissions(s.key_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = s.list().unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }
}
