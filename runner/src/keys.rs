//! Record signing keys on disk: `cordon key generate`.
//!
//! A key pair for an environment is two files beside `cordon.toml`,
//! `keys/<env>.key` (PKCS#8 PEM, mode 0600) and `keys/<env>.pub` (PEM
//! SubjectPublicKeyInfo), and two settings in it, `records.signing-key` and
//! an entry in `records.trusted-keys`. Existing key files are never
//! replaced: rotating a key is a decision, not a side effect.
//!
//! The configuration edit is prepared (and checked) before any file is
//! written, so a `cordon.toml` that cannot take the settings leaves no
//! orphaned key behind.

use std::path::{Path, PathBuf};

/// Why a key pair could not be made.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The request or the existing files are wrong; nothing was written.
    #[error("{0}")]
    Invalid(String),
    /// Writing failed.
    #[error("cannot write {0}: {1}")]
    Io(PathBuf, std::io::Error),
}

/// What [`generate_for_env`] made.
#[derive(Debug)]
pub struct Generated {
    /// The private key file.
    pub private: PathBuf,
    /// The public key file.
    pub public: PathBuf,
    /// The in-toto keyid of the public key.
    pub keyid: String,
}

/// Creates a key pair for `env` beside `config_path` and configures it
/// there (creating the file if it does not exist).
pub fn generate_for_env(config_path: &Path, env: &str) -> Result<Generated, KeyError> {
    let invalid = |m: String| KeyError::Invalid(m);
    if !crate::manifest::is_valid_name(env) {
        return Err(invalid(format!(
            "environment name `{env}` is invalid; use lowercase letters, digits and `-`"
        )));
    }
    let source = match std::fs::read_to_string(config_path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(invalid(format!(
                "cannot read {}: {e}",
                config_path.display()
            )));
        }
    };
    let mut doc: toml_edit::DocumentMut = source
        .parse()
        .map_err(|e| invalid(format!("{} is not valid TOML: {e}", config_path.display())))?;
    let dir = match config_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let (key_rel, pub_rel) = (format!("keys/{env}.key"), format!("keys/{env}.pub"));
    let (key_path, pub_path) = (dir.join(&key_rel), dir.join(&pub_rel));
    for p in [&key_path, &pub_path] {
        if p.exists() {
            return Err(invalid(format!(
                "{} already exists; refusing to replace a key (move it away first if you mean to rotate it)",
                p.display()
            )));
        }
    }

    let table = |item: &mut toml_edit::Item, what: &str| -> Result<(), KeyError> {
        if item.is_none() {
            let mut t = toml_edit::Table::new();
            t.set_implicit(what == "env");
            *item = toml_edit::Item::Table(t);
        }
        if item.is_table() {
            Ok(())
        } else {
            Err(KeyError::Invalid(format!(
                "`{what}` in {} is not a table",
                config_path.display()
            )))
        }
    };
    table(&mut doc["env"], "env")?;
    table(&mut doc["env"][env], &format!("env.{env}"))?;
    table(
        &mut doc["env"][env]["records"],
        &format!("env.{env}.records"),
    )?;
    let records = &mut doc["env"][env]["records"];
    records["signing-key"] = toml_edit::value(key_rel);
    if records.get("trusted-keys").is_none() {
        records["trusted-keys"] = toml_edit::value(toml_edit::Array::new());
    }
    let trusted = records["trusted-keys"].as_array_mut().ok_or_else(|| {
        invalid(format!(
            "`env.{env}.records.trusted-keys` in {} is not a list",
            config_path.display()
        ))
    })?;
    if !trusted.iter().any(|v| v.as_str() == Some(pub_rel.as_str())) {
        trusted.push(pub_rel);
    }

    let (private, public) = crate::attest::generate();
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e| KeyError::Io(p, e)
    };
    let keys_dir = dir.join("keys");
    crate::fsutil::create_private_dir(&keys_dir).map_err(io(&keys_dir))?;
    crate::fsutil::write_new(&key_path, private.as_bytes()).map_err(io(&key_path))?;
    crate::fsutil::write_new(&pub_path, public.as_bytes()).map_err(io(&pub_path))?;
    crate::fsutil::write_atomic(config_path, doc.to_string().as_bytes())
        .map_err(io(config_path))?;
    let keyid = crate::attest::TrustedKey::load(&pub_path)
        .map_err(|e| KeyError::Io(pub_path.clone(), std::io::Error::other(e.to_string())))?
        .keyid;
    Ok(Generated {
        private: key_path,
        public: pub_path,
        keyid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_configured_and_never_replaced() {
        let d = tempfile::tempdir().unwrap();
        let config = d.path().join("cordon.toml");
        std::fs::write(&config, "[env.prod]\nprotected = true\n").unwrap();
        let g = generate_for_env(&config, "prod").unwrap();
        let c = crate::config::WorkspaceConfig::load(&config).unwrap();
        let prod = &c.envs["prod"];
        assert!(prod.protected, "existing settings are kept");
        assert_eq!(
            prod.records.signing_key.as_deref(),
            Some(g.private.as_path())
        );
        assert_eq!(prod.records.trusted_keys, vec![g.public.clone()]);
        assert!(crate::attest::Signer::load(&g.private).is_ok());
        let err = generate_for_env(&config, "prod").unwrap_err().to_string();
        assert!(err.contains("already exists"), "{err}");
    }

    #[test]
    fn a_config_that_cannot_take_the_settings_leaves_no_key_behind() {
        let d = tempfile::tempdir().unwrap();
        let config = d.path().join("cordon.toml");
        std::fs::write(&config, "env = 3\n").unwrap();
        let err = generate_for_env(&config, "dev").unwrap_err().to_string();
        assert!(
            err.contains("`env`") && err.contains("is not a table"),
            "{err}"
        );
        assert!(!d.path().join("keys").exists());
    }
}
