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
//! **Reviewers.** A reviewer's key pair signs approvals. It is made in the
//! user's configuration (`<secrets home>/reviewers/`), never in a
//! workspace: [`create_reviewer_key`] refuses a directory inside a git work
//! tree, where the next `git add .` would commit the private key, and
//! [`private_keys_in_workspace`] finds the private keys older versions left
//! in a workspace, so every command can say where they are and how to move
//! them.
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

/// A reviewer's key pair as [`create_reviewer_key`] wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewerKey {
    /// The private key (PKCS#8 PEM, mode 0600).
    pub private: PathBuf,
    /// The public key (PEM), to list under `reviewers` or to trust.
    pub public: PathBuf,
}

/// Where reviewer key pairs are made unless a directory is named:
/// `<secrets home>/reviewers/`, the user's configuration, outside every
/// workspace.
pub fn reviewer_key_dir() -> Option<PathBuf> {
    cordon_core::locations::secrets_home().map(|h| h.join("reviewers"))
}

/// The git work tree `dir` lies in (the nearest directory at or above it
/// holding `.git`, a directory or a worktree's file), if any. `dir` need
/// not exist yet: its nearest existing ancestor is asked, after symlinks
/// are resolved, so a link cannot hide a work tree.
pub fn git_work_tree(dir: &Path) -> Option<PathBuf> {
    let absolute = std::path::absolute(dir).ok()?;
    let existing = absolute.ancestors().find(|a| a.exists())?;
    let resolved = cordon_core::fsutil::resolve(existing).ok()?;
    resolved
        .ancestors()
        .find(|a| a.join(".git").exists())
        .map(Path::to_path_buf)
}

/// Creates reviewer `name`'s ed25519 key pair: `NAME.key` (PKCS#8 PEM,
/// mode 0600) and `NAME.pub` in `dir`, by default [`reviewer_key_dir`].
///
/// A `dir` inside a git work tree is refused before anything is written: a
/// private key there is one `git add .` away from the repository's history,
/// which no later `git rm` takes back. Existing files are never replaced.
pub fn create_reviewer_key(name: &str, dir: Option<&Path>) -> Result<ReviewerKey, KeyError> {
    if !cordon_manifest::manifest::is_valid_name(name) {
        return Err(KeyError::Invalid(format!(
            "reviewer name `{name}` is invalid; use lowercase letters, digits and `-`"
        )));
    }
    let default = reviewer_key_dir();
    let dir = match (dir, &default) {
        (Some(dir), _) => {
            if let Some(tree) = git_work_tree(dir) {
                return Err(KeyError::Invalid(format!(
                    "{} is inside the git work tree {}, where the reviewer's private key would be one `git add` away from being committed\n  fix: leave out --dir to keep the key pair in {} (your configuration, outside every workspace), or name a directory outside the work tree",
                    dir.display(),
                    tree.display(),
                    default.as_deref().map_or_else(
                        || "<secrets home>/reviewers/".into(),
                        |d| format!("{}/", d.display())
                    ),
                )));
            }
            dir.to_path_buf()
        }
        (None, Some(default)) => default.clone(),
        (None, None) => {
            return Err(KeyError::Invalid(
                "cannot place the reviewer's key pair: neither CORDON_SECRETS_HOME, XDG_CONFIG_HOME nor HOME is set\n  fix: set one of them, or name a directory outside every git work tree with --dir".into(),
            ));
        }
    };
    let key = ReviewerKey {
        private: dir.join(format!("{name}.key")),
        public: dir.join(format!("{name}.pub")),
    };
    for p in [&key.private, &key.public] {
        if p.exists() {
            return Err(KeyError::Invalid(format!(
                "{} already exists; refusing to replace a key",
                p.display()
            )));
        }
    }
    cordon_core::fsutil::create_private_dir(&dir).map_err(|e| KeyError::Io(dir.clone(), e))?;
    let (private_pem, public_pem) = cordon_record::attest::generate();
    cordon_core::fsutil::write_new(&key.private, private_pem.as_bytes())
        .map_err(|e| KeyError::Io(key.private.clone(), e))?;
    cordon_core::fsutil::write_new(&key.public, public_pem.as_bytes())
        .map_err(|e| KeyError::Io(key.public.clone(), e))?;
    Ok(key)
}

/// How deep below a workspace's `cordon.toml` [`private_keys_in_workspace`]
/// looks (`keys/reviewers/alice.key` is depth 3), and how many directory
/// entries it reads at most. The check runs before every command, so it is
/// bounded: a workspace with a large data tree costs at most this many
/// `readdir` entries, never a walk of the data.
const KEY_SCAN_DEPTH: usize = 3;
const KEY_SCAN_ENTRIES: usize = 4096;

/// What a PEM private key's first line says, whatever its algorithm
/// (`-----BEGIN PRIVATE KEY-----`, `-----BEGIN EC PRIVATE KEY-----`, ...).
const PEM_PRIVATE: &[u8] = b"PRIVATE KEY-----";

/// The `*.key` files holding a PEM private key in the workspace whose
/// directory is `workspace_dir`, down to [`KEY_SCAN_DEPTH`] levels. Hidden
/// directories (`.git`, the `.cordon` state directory) are not entered;
/// only the first bytes of a `*.key` file are read; a symlink is not
/// followed. Cheap enough to run before every command.
pub fn private_keys_in_workspace(workspace_dir: &Path) -> Vec<PathBuf> {
    use std::io::Read as _;
    let mut found = Vec::new();
    let mut budget = KEY_SCAN_ENTRIES;
    let mut pending = vec![(workspace_dir.to_path_buf(), 1usize)];
    while let Some((dir, depth)) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if budget == 0 {
                found.sort();
                return found;
            }
            budget -= 1;
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let path = entry.path();
            let hidden = entry.file_name().as_encoded_bytes().starts_with(b".");
            if kind.is_dir() && !hidden && depth < KEY_SCAN_DEPTH {
                pending.push((path, depth + 1));
            } else if kind.is_file() && path.extension().is_some_and(|e| e == "key") {
                let mut head = [0u8; 64];
                let n = std::fs::File::open(&path)
                    .and_then(|mut f| f.read(&mut head))
                    .unwrap_or(0);
                if head[..n]
                    .windows(PEM_PRIVATE.len())
                    .any(|w| w == PEM_PRIVATE)
                {
                    found.push(path);
                }
            }
        }
    }
    found.sort();
    found
}

/// The warning for a private key found in a workspace: where it is and how
/// to move it into the user's configuration.
pub fn private_key_warning(key: &Path) -> String {
    let to = reviewer_key_dir().map_or_else(
        || "<secrets home>/reviewers/".into(),
        |d| format!("{}/", d.display()),
    );
    // The file's name comes from a checkout anyone may have written: it is
    // escaped before it reaches the terminal.
    let key = cordon_core::sanitize::escape_for_terminal(&key.display().to_string());
    let to = cordon_core::sanitize::escape_for_terminal(&to);
    format!(
        "{key} is a private key inside the workspace, where a step's mount or a commit can reach it\n  fix: move it out of the workspace: `mkdir -p {to} && mv {key} {to}`, then pass the new path to `cordon approve --key` (a public key the configuration names stays where it is)"
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_private_key_named_with_terminal_escapes_is_shown_escaped() {
        let w = private_key_warning(std::path::Path::new("/w/keys/a\x1b[2J\nb.key"));
        assert!(!w.contains('\x1b'), "{w:?}");
        assert_eq!(w.lines().count(), 2, "one warning line and its fix: {w:?}");
    }

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
    fn a_reviewer_key_is_made_in_the_secrets_home_and_never_replaced() {
        with_home(|home| {
            let key = create_reviewer_key("alice", None).unwrap();
            assert_eq!(key.private, home.join("reviewers/alice.key"));
            assert_eq!(key.public, home.join("reviewers/alice.pub"));
            assert!(
                std::fs::read_to_string(&key.private)
                    .unwrap()
                    .contains("PRIVATE KEY")
            );
            let again = create_reviewer_key("alice", None).unwrap_err().to_string();
            assert!(again.contains("refusing to replace a key"), "{again}");
        })
    }

    #[test]
    fn a_reviewer_key_dir_inside_a_git_work_tree_is_refused_before_anything_is_written() {
        with_home(|_| {
            let repo = tempfile::tempdir().unwrap();
            std::fs::create_dir(repo.path().join(".git")).unwrap();
            // Not created yet, several levels down, through `..`: the same tree.
            let dir = repo.path().join("a/../keys/reviewers");
            let e = create_reviewer_key("alice", Some(&dir)).unwrap_err();
            assert!(matches!(e, KeyError::Invalid(_)), "{e}");
            let text = e.to_string();
            let tree = cordon_core::fsutil::resolve(repo.path()).unwrap();
            assert!(
                text.contains(&format!("inside the git work tree {}", tree.display())),
                "{text}"
            );
            assert!(text.contains("\n  fix: leave out --dir"), "{text}");
            assert!(!repo.path().join("keys").exists(), "nothing written");
            // A linked worktree has a `.git` file, not a directory.
            let linked = tempfile::tempdir().unwrap();
            std::fs::write(linked.path().join(".git"), "gitdir: /elsewhere\n").unwrap();
            assert!(create_reviewer_key("bob", Some(linked.path())).is_err());
            // Outside every work tree, --dir still works.
            let plain = tempfile::tempdir().unwrap();
            if git_work_tree(plain.path()).is_none() {
                let key = create_reviewer_key("carol", Some(plain.path())).unwrap();
                assert_eq!(key.private, plain.path().join("carol.key"));
            }
        })
    }

    #[test]
    fn private_keys_in_a_workspace_are_found_and_nothing_else_is() {
        let ws = tempfile::tempdir().unwrap();
        let w = |rel: &str, text: &str| {
            let p = ws.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, text).unwrap();
        };
        let (private, public) = cordon_record::attest::generate();
        w("keys/reviewers/alice.key", &private);
        w("keys/reviewers/alice.pub", &public);
        w("layout.key", "-----BEGIN EC PRIVATE KEY-----\nAAAA\n");
        w("data/notes.key", "a musical key, not a private one");
        w(".git/hidden.key", &private);
        w("a/b/c/deep.key", &private);
        std::os::unix::fs::symlink(
            ws.path().join("keys/reviewers/alice.key"),
            ws.path().join("link.key"),
        )
        .unwrap();
        assert_eq!(
            private_keys_in_workspace(ws.path()),
            vec![
                ws.path().join("keys/reviewers/alice.key"),
                ws.path().join("layout.key"),
            ]
        );
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
