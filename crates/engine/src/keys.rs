//! Record-signing keys and the trust roots that verify them.
//!
//! **Signing.** An environment's record-signing key is a secret of that
//! environment, kept by its secret provider, never a file in the workspace
//! a step or a contributor can reach. With the `local` provider it is an
//! ed25519 seed inside the environment's encrypted store, in a slot no
//! grant can name (`cordon key generate --env E` makes it). The older
//! `[env.E.records] signing-key = "FILE"` still works, with a warning when
//! the file lies inside the workspace.
//!
//! **Trust.** A verifier decides which public keys it trusts from outside
//! the data it judges. In order, with where each came from:
//!
//! 1. `<secrets home>/trusted/<env>/*.pub`, the user's own configuration
//!    (`cordon key generate` puts the new public key there);
//! 2. `--trusted-key FILE` on the command line (every environment);
//! 3. `CORDON_TRUSTED_KEYS`, a `:`-separated list of files (every
//!    environment);
//! 4. `trusted-keys` in a workspace `cordon.toml`: only *candidates*,
//!    since anyone who can edit the file can add a key. They are used for
//!    an unprotected environment with a warning, and ignored for a
//!    protected one.
//!
//! Nothing here prints or returns a private key.

use cordon_manifest::config::{EnvConfig, ProviderKind};
use cordon_record::attest::Signer;
use cordon_secrets::local::LocalStore;
use ed25519_dalek::SigningKey;
use std::path::{Path, PathBuf};

pub use cordon_record::trust::{
    TRUSTED_KEYS_VAR, TrustError, TrustOrigin, TrustRoots, Trusted, trust_dir,
};

/// Why a key could not be made, loaded or trusted.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The request, the configuration or an existing key is wrong; nothing
    /// was written.
    #[error("{0}")]
    Invalid(String),
    /// The secret store refused or failed.
    #[error(transparent)]
    Store(#[from] cordon_secrets::SecretError),
    /// Writing failed.
    #[error("cannot write {0}: {1}")]
    Io(PathBuf, std::io::Error),
}

/// Where a record signer's private key is kept (named in messages, never
/// the key itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The environment's local encrypted store, with the key's version.
    LocalStore {
        /// The store file.
        store: PathBuf,
        /// The key's version in it.
        version: u32,
    },
    /// A PKCS#8 PEM file named by `records.signing-key` (deprecated).
    File(PathBuf),
    /// A Transit key of the environment's vault, at this version; the
    /// private key never leaves the server.
    Transit {
        /// The Transit key's name.
        key: String,
        /// The version that signs.
        version: u64,
    },
}

/// An environment's record signer and where its key came from.
#[derive(Debug)]
pub struct RecordKey {
    /// The signer.
    pub signer: Signer,
    /// Where the private key is kept.
    pub source: KeySource,
    /// A warning to show once per run (a deprecated or exposed key file).
    pub warning: Option<String>,
}

/// The environment's record signer, if it has one.
///
/// A `signing-key` file in the configuration wins (so existing setups keep
/// working); otherwise the `local` provider's store is asked. Other
/// providers keep no record key yet, so their environments sign only with
/// a `signing-key` file.
pub fn record_signer(env: &EnvConfig, workspace_dir: &Path) -> Result<Option<RecordKey>, KeyError> {
    if let Some(path) = &env.records.signing_key {
        let signer = Signer::load(path).map_err(|e| KeyError::Invalid(e.to_string()))?;
        let inside = cordon_core::fsutil::resolve(path)
            .ok()
            .zip(cordon_core::fsutil::resolve(workspace_dir).ok())
            .is_some_and(|(p, w)| p.starts_with(w));
        let warning = Some(format!(
            "environment `{}` signs with the key file {}{}; key files are deprecated: move the key into the environment's secret store (`cordon key generate --env {}`) and remove `signing-key` from cordon.toml",
            env.name,
            path.display(),
            if inside {
                ", which lies inside the workspace where a step's mount or a commit can reach it"
            } else {
                ""
            },
            env.name
        ));
        return Ok(Some(RecordKey {
            signer,
            source: KeySource::File(path.clone()),
            warning,
        }));
    }
    if let Some(transit) = &env.records.transit {
        let (signer, public) = cordon_secrets::vault::TransitSigner::connect(env, transit)?;
        let public = ed25519_dalek::VerifyingKey::from_bytes(&public).map_err(|e| {
            KeyError::Invalid(format!(
                "Transit key `{}` of environment `{}` has an invalid ed25519 public key: {e}",
                transit.key, env.name
            ))
        })?;
        let version = signer.version();
        return Ok(Some(RecordKey {
            signer: Signer::remote(
                public,
                "vault-transit",
                Some(format!("{}/{}", transit.mount, transit.key)),
                Some(version),
                std::sync::Arc::new(signer),
            ),
            source: KeySource::Transit {
                key: transit.key.clone(),
                version,
            },
            warning: None,
        }));
    }
    if env.secrets.provider != ProviderKind::Local {
        return Ok(None);
    }
    let store = LocalStore::for_env(env)?;
    Ok(store.record_signing_seed()?.map(|s| RecordKey {
        signer: Signer::from_key(SigningKey::from_bytes(&s.seed)),
        source: KeySource::LocalStore {
            store: store.store_path().to_path_buf(),
            version: s.version,
        },
        warning: None,
    }))
}

/// The signer a run of `env` must use: [`record_signer`], plus the rule
/// that a protected environment never writes unsigned records.
pub fn signer_for_run(
    env: &EnvConfig,
    workspace_dir: &Path,
) -> Result<Option<RecordKey>, KeyError> {
    match record_signer(env, workspace_dir)? {
        Some(key) => Ok(Some(key)),
        None if env.protected => Err(KeyError::Invalid(format!(
            "environment `{}` is protected, and its records must be signed, but it has no signing key\n  fix: run `cordon key generate --env {}`",
            env.name, env.name
        ))),
        None => Ok(None),
    }
}

/// What [`generate_for_env`] made.
#[derive(Debug)]
pub struct Generated {
    /// Where the private key is held: the local store's file, or the
    /// vault's Transit key.
    pub store: String,
    /// The public key file, in the user's trust directory.
    pub public: PathBuf,
    /// The in-toto keyid of the public key.
    pub keyid: String,
}

/// Creates `env`'s record-signing key inside its secret store and trusts its
/// public half in the user's configuration. Nothing in the workspace is
/// written. Refuses when the environment already has a key.
pub fn generate_for_env(env: &EnvConfig) -> Result<Generated, KeyError> {
    if env.records.signing_key.is_some() {
        return Err(KeyError::Invalid(format!(
            "environment `{}` already signs with the key file named by `signing-key` in cordon.toml\n  fix: keep using it, or remove `signing-key` to have a key made in the environment's secret store",
            env.name
        )));
    }
    let dir = trust_dir(&env.name).ok_or_else(|| {
        KeyError::Invalid(
            "cannot place the trusted key: neither CORDON_SECRETS_HOME, XDG_CONFIG_HOME nor HOME is set".into(),
        )
    })?;
    if let Some(transit) = &env.records.transit {
        let vault = cordon_secrets::vault::VaultProvider::login_for_records(env)?;
        if !vault.transit_create_ed25519(&transit.mount, &transit.key)? {
            return Err(KeyError::Invalid(format!(
                "environment `{}` already has its Transit key `{}/{}`; refusing to replace it\n  fix: `cordon key generate --env {} --if-missing` trusts the existing key",
                env.name, transit.mount, transit.key, env.name
            )));
        }
        let (_, public) = vault.transit_public_key(&transit.mount, &transit.key)?;
        let public = ed25519_dalek::VerifyingKey::from_bytes(&public).map_err(|e| {
            KeyError::Invalid(format!("the Transit key's public key is invalid: {e}"))
        })?;
        let written = trust_public_key(&dir, &public)?;
        return Ok(Generated {
            store: format!("vault Transit key {}/{}", transit.mount, transit.key),
            public: written,
            keyid: cordon_record::attest::keyid(&public),
        });
    }
    if env.secrets.provider != ProviderKind::Local {
        return Err(KeyError::Invalid(format!(
            "environment `{}` uses the `{}` secret provider, which keeps no record-signing key here\n  fix: use `provider = \"local\"`, set `transit-key` in [env.{}.records] (vault), or name a key file outside the workspace with `signing-key`",
            env.name,
            env.secrets.provider.as_str(),
            env.name
        )));
    }
    let store = LocalStore::for_env(env)?;
    if store.record_signing_seed()?.is_some() {
        return Err(KeyError::Invalid(format!(
            "environment `{}` already has a record-signing key in {}; refusing to replace it (rotating a key is a decision every verifier must learn of)\n  fix: `cordon key generate --env {} --if-missing` succeeds when a key exists",
            env.name,
            store.store_path().display(),
            env.name
        )));
    }
    let seed = zeroize::Zeroizing::new(rand::random::<[u8; 32]>());
    let signer = Signer::from_key(SigningKey::from_bytes(&seed));
    // The public half first: a key whose public half could not be written
    // would sign records nobody trusts.
    let public = trust_public_key(&dir, &signer.public())?;
    store.create_record_signing_seed(&seed)?;
    Ok(Generated {
        store: store.store_path().display().to_string(),
        public,
        keyid: signer.keyid().to_string(),
    })
}

/// Trusts, for this user, the public key of `env`'s existing record key
/// (a key in the local store, or the vault's Transit key): what `cordon key
/// generate --if-missing` does on the machine that holds the key. A key
/// file is never trusted this way: it is deprecated, and anyone may have
/// written it.
pub fn trust_existing(env: &EnvConfig, key: &RecordKey) -> Result<Option<PathBuf>, KeyError> {
    if matches!(key.source, KeySource::File(_)) {
        return Ok(None);
    }
    let dir = trust_dir(&env.name).ok_or_else(|| {
        KeyError::Invalid(
            "cannot place the trusted key: neither CORDON_SECRETS_HOME, XDG_CONFIG_HOME nor HOME is set".into(),
        )
    })?;
    trust_public_key(&dir, &key.signer.public()).map(Some)
}

/// Writes `key` into the trust directory `dir` as `<keyid prefix>.pub`.
fn trust_public_key(dir: &Path, key: &ed25519_dalek::VerifyingKey) -> Result<PathBuf, KeyError> {
    let keyid = cordon_record::attest::keyid(key);
    let path = dir.join(format!("{}.pub", &keyid[..16]));
    cordon_core::fsutil::create_private_dir(dir).map_err(|e| KeyError::Io(dir.to_path_buf(), e))?;
    cordon_core::fsutil::write_atomic(&path, public_pem_of(key).as_bytes())
        .map_err(|e| KeyError::Io(path.clone(), e))?;
    Ok(path)
}

/// The PEM SubjectPublicKeyInfo of a signer's public key.
pub fn public_pem(signer: &Signer) -> String {
    public_pem_of(&signer.public())
}

fn public_pem_of(key: &ed25519_dalek::VerifyingKey) -> String {
    use ed25519_dalek::pkcs8::EncodePublicKey;
    key.to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .expect("an ed25519 key encodes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use cordon_manifest::config::WorkspaceConfig;

    /// Points the secrets home at a temporary directory for one test.
    /// Tests in this module take the lock so they never see each other's
    /// home.
    #[allow(unsafe_code)] // set_var; see SAFETY below.
    fn with_home<T>(f: impl FnOnce(&Path) -> T) -> T {
        static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let d = tempfile::tempdir().unwrap();
        // SAFETY: the lock above keeps the tests of this module from
        // touching the environment at the same time, and no other test of
        // the crate reads CORDON_SECRETS_HOME.
        unsafe { std::env::set_var(cordon_secrets::local::HOME_VAR, d.path()) };
        let out = f(d.path());
        unsafe { std::env::remove_var(cordon_secrets::local::HOME_VAR) };
        out
    }

    #[test]
    fn a_generated_key_lives_in_the_store_and_is_trusted_outside_the_workspace() {
        with_home(|home| {
            let ws = tempfile::tempdir().unwrap();
            let config = WorkspaceConfig::implicit(ws.path());
            let dev = &config.envs["dev"];
            let g = generate_for_env(dev).unwrap();
            assert!(g.store.starts_with(home.to_str().unwrap()) && g.public.starts_with(home));
            assert_eq!(
                std::fs::read_dir(ws.path()).unwrap().count(),
                0,
                "the workspace is untouched"
            );
            let key = record_signer(dev, ws.path()).unwrap().expect("a signer");
            assert_eq!(key.signer.keyid(), g.keyid);
            assert!(matches!(
                key.source,
                KeySource::LocalStore { version: 1, .. }
            ));
            let Trusted {
                keys: trusted,
                warnings,
            } = TrustRoots::default().keys_for("dev", Some(dev)).unwrap();
            assert!(warnings.is_empty());
            assert_eq!(trusted.len(), 1);
            assert_eq!(trusted[0].0.keyid, g.keyid);
            assert_eq!(trusted[0].1, TrustOrigin::UserConfig);
            let again = generate_for_env(dev).unwrap_err().to_string();
            assert!(
                again.contains("already has a record-signing key"),
                "{again}"
            );
        })
    }

    #[test]
    fn workspace_keys_are_candidates_and_a_protected_environment_ignores_them() {
        with_home(|_| {
            let ws = tempfile::tempdir().unwrap();
            let signer = Signer::from_key(SigningKey::from_bytes(&[7; 32]));
            std::fs::write(ws.path().join("k.pub"), public_pem(&signer)).unwrap();
            let file = ws.path().join("cordon.toml");
            std::fs::write(
                &file,
                "[env.dev.records]\ntrusted-keys = [\"k.pub\"]\n[env.prod]\nprotected = true\n[env.prod.records]\ntrusted-keys = [\"k.pub\"]\n",
            )
            .unwrap();
            let config = WorkspaceConfig::discover_for_review(Some(&file), ws.path()).unwrap();
            let roots = TrustRoots::default();
            let Trusted {
                keys: dev,
                warnings: w,
            } = roots.keys_for("dev", Some(&config.envs["dev"])).unwrap();
            assert_eq!(dev.len(), 1);
            assert_eq!(dev[0].1, TrustOrigin::Workspace);
            assert!(w[0].contains("anyone who can edit"), "{w:?}");
            let Trusted {
                keys: prod,
                warnings: w,
            } = roots.keys_for("prod", Some(&config.envs["prod"])).unwrap();
            assert!(prod.is_empty(), "a protected environment ignores them");
            assert!(w[0].contains("are ignored"), "{w:?}");
            let roots = TrustRoots {
                command_line: vec![ws.path().join("k.pub")],
                environment: vec![],
            };
            let prod = roots
                .keys_for("prod", Some(&config.envs["prod"]))
                .unwrap()
                .keys;
            assert_eq!(prod[0].1, TrustOrigin::CommandLine);
        })
    }
}
