//! What every provider shares: a secret's value ([`SecretValue`], zeroed on
//! drop and never printed), a granted secret with its value
//! ([`ResolvedSecret`]), the error that names the secret and the fix
//! ([`SecretError`]), and the [`Provider`] trait the `local`, `env` and
//! `vault` providers implement. It depends on no provider.

use cordon_manifest::manifest::{SecretGrant, SecretUse};
use std::collections::BTreeSet;
use std::fmt;
use zeroize::Zeroizing;

/// A secret that is not an ed25519 seed in an accepted form (never quoting the value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyFormError(pub String);

/// A secret's bytes. Zeroed on drop; never printed.
#[derive(Clone)]
pub struct SecretValue(Zeroizing<Vec<u8>>);

impl SecretValue {
    /// Wraps `bytes`.
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretValue(Zeroizing::new(bytes))
    }

    /// The bytes, for the operations in this crate that use them.
    pub(crate) fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Lends the bytes to `use_value` for one operation a grant allows: an
    /// HMAC through the handle, a granted `reveal`, a header bound to its
    /// hosts. The borrow cannot outlive the call, so no caller keeps a copy
    /// it did not make on purpose (and a copy it makes should be zeroized).
    pub fn with_bytes<T>(&self, use_value: impl FnOnce(&[u8]) -> T) -> T {
        use_value(&self.0)
    }

    /// The ed25519 signing key whose seed is this value: 64 hex characters
    /// (either case) or exactly 32 raw bytes. The error names the accepted
    /// forms and never the value.
    pub fn ed25519_key(&self) -> Result<ed25519_dalek::SigningKey, KeyFormError> {
        self.ed25519_key_message().map_err(KeyFormError)
    }

    fn ed25519_key_message(&self) -> Result<ed25519_dalek::SigningKey, String> {
        let v = self.expose();
        let mut seed = Zeroizing::new([0u8; 32]);
        if v.len() == 64 && hex::decode_to_slice(v, seed.as_mut()).is_ok() {
            return Ok(ed25519_dalek::SigningKey::from_bytes(&seed));
        }
        if v.len() == 32 {
            seed.copy_from_slice(v);
            return Ok(ed25519_dalek::SigningKey::from_bytes(&seed));
        }
        Err("the secret is not an ed25519 seed (expected 64 hex characters or 32 raw bytes)".into())
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

/// Why secrets could not be resolved or stored. Names the environment and
/// the secret; never contains a value (nor a credential).
#[derive(Debug, thiserror::Error)]
#[error("environment `{env}`: {message}{}", fix.as_ref().map(|f| format!("\n  fix: {f}")).unwrap_or_default())]
pub struct SecretError {
    /// The environment.
    pub env: String,
    /// What went wrong.
    pub message: String,
    /// What to do about it.
    pub fix: Option<String>,
}

impl SecretError {
    pub(crate) fn new(env: &str, message: impl Into<String>) -> Self {
        SecretError {
            env: env.to_string(),
            message: message.into(),
            fix: None,
        }
    }

    pub(crate) fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
}

/// A granted secret with its value, ready for the sandbox's handle table.
#[derive(Debug, Clone)]
pub struct ResolvedSecret {
    /// The name the step asks for.
    pub name: String,
    /// The uses the manifest grants.
    pub uses: BTreeSet<SecretUse>,
    /// Which provider supplied it (`local`, `env`, `vault`).
    pub provider: &'static str,
    /// The provider's version of the value, when it has one.
    pub version: Option<String>,
    /// The credential the provider read it with, when it names one in a
    /// way that is safe to record (the vault token's accessor, never the
    /// token).
    pub credential: Option<String>,
    /// The value.
    pub value: SecretValue,
}

/// Where one environment's secrets come from.
pub trait Provider {
    /// The provider's name in records (`local`, `env`, `vault`).
    fn name(&self) -> &'static str;

    /// Reads the value of every grant, or fails naming the first secret it
    /// could not read. Reads nothing that is not granted.
    fn resolve(&mut self, grants: &[SecretGrant]) -> Result<Vec<ResolvedSecret>, SecretError>;

    /// Ends the provider's session: after this, the credentials the run
    /// used are dead. Called once when the run ends; dropping the provider
    /// without calling it must end the session too.
    fn close(&mut self) -> Result<(), SecretError> {
        Ok(())
    }
}
