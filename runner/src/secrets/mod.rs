//! Secret values, where they come from, and keeping them out of every output.
//!
//! This module owns secret *values*. Everything else handles names: the plan
//! lists which secrets a step is granted, the sandbox hands the guest opaque
//! handles and asks this module to use a value on its behalf, and the record
//! stores names, providers and versions, never values.
//!
//! Values live in [`SecretValue`], which zeroes its memory on drop and whose
//! `Debug` never prints the bytes, so a stray `{:?}` or a panic message
//! cannot leak one. A [`Redactor`] scrubs values (and their hex and base64
//! forms) out of anything the step prints before it reaches a terminal, a
//! log file or a record.
//!
//! Providers, one per environment (`[env.NAME.secrets]` in `cordon.toml`):
//!
//! - [`local`]: an encrypted store per environment whose key file lives
//!   outside the repository. The default, so a workspace works with no
//!   server.
//! - [`env`](mod@env): `CORDON_SECRET_<NAME>` from the runner's own environment, the
//!   way CI systems inject secrets. Weaker: anything else in that
//!   environment can read it.
//! - [`vault`]: HashiCorp Vault / OpenBao KV v2 through an AppRole login
//!   whose token lives only as long as the run.
//!
//! [`resolve`] reads exactly the secrets a plan grants, before any step
//! runs; [`Resolution::finish`] ends the provider's session (for `vault`,
//! revokes the token).

pub mod env;
pub mod local;
pub mod usage;
pub mod vault;

use crate::config::{EnvConfig, ProviderKind};
use crate::manifest::{SecretGrant, SecretUse};
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;
use zeroize::Zeroizing;

pub use env::env_var_for;

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

    /// The ed25519 signing key whose seed is this value: 64 hex characters
    /// (either case) or exactly 32 raw bytes. The error names the accepted
    /// forms and never the value.
    pub(crate) fn ed25519_key(&self) -> Result<ed25519_dalek::SigningKey, String> {
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

/// The secrets of one run, and the provider session they came from.
pub struct Resolution {
    /// The granted secrets with their values.
    pub secrets: Vec<ResolvedSecret>,
    provider: Option<Box<dyn Provider>>,
}

impl fmt::Debug for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolution")
            .field("secrets", &self.secrets)
            .field("provider", &self.provider.as_ref().map(|p| p.name()))
            .finish()
    }
}

impl Resolution {
    /// Ends the provider session (revokes a vault token). Dropping a
    /// `Resolution` does the same, silently; call this to see failures.
    pub fn finish(&mut self) -> Result<(), SecretError> {
        match self.provider.take() {
            Some(mut p) => p.close(),
            None => Ok(()),
        }
    }
}

/// Opens `env`'s provider and reads every secret in `grants`, before any
/// step runs. A plan without secrets touches no provider at all (no key
/// file, no server).
pub fn resolve(env: &EnvConfig, grants: &[SecretGrant]) -> Result<Resolution, SecretError> {
    if grants.is_empty() {
        return Ok(Resolution {
            secrets: Vec::new(),
            provider: None,
        });
    }
    let mut provider: Box<dyn Provider> = match env.secrets.provider {
        ProviderKind::Local => Box::new(local::LocalProvider::open(env)?),
        ProviderKind::Env => Box::new(env::EnvProvider::new(&env.name)),
        ProviderKind::Vault => Box::new(vault::VaultProvider::login(env, grants)?),
    };
    match provider.resolve(grants) {
        Ok(secrets) => Ok(Resolution {
            secrets,
            provider: Some(provider),
        }),
        Err(e) => {
            // End the session now; the caller never sees it.
            let _ = provider.close();
            Err(e)
        }
    }
}

/// Values shorter than this are redacted only as they are, not in their
/// hex and base64 forms: the encoding of a few bytes is a handful of
/// characters that ordinary text contains by chance, and mangling every
/// such run would make logs unreadable without protecting anything.
pub const MIN_ENCODED_REDACTION: usize = 8;

/// Replaces every occurrence of a secret value with `[REDACTED:<name>]`.
///
/// Every non-empty value is redacted, however short: a mangled log line is a
/// smaller harm than a leaked credential.
#[derive(Clone, Default)]
pub struct Redactor {
    /// (value or an encoded form of it, replacement). The values are
    /// secrets themselves, so they are zeroed when the redactor is dropped.
    needles: Vec<(Zeroizing<Vec<u8>>, Vec<u8>)>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} values)", self.needles.len())
    }
}

impl Redactor {
    /// A redactor for the values of `secrets`.
    pub fn new(secrets: &[ResolvedSecret]) -> Self {
        let mut needles: Vec<(Zeroizing<Vec<u8>>, Vec<u8>)> = Vec::new();
        for s in secrets {
            let value = s.value.expose();
            if value.is_empty() {
                continue;
            }
            let replacement = format!("[REDACTED:{}]", s.name).into_bytes();
            needles.push((Zeroizing::new(value.to_vec()), replacement.clone()));
            if value.len() >= MIN_ENCODED_REDACTION {
                for form in encoded_forms(value) {
                    let form = Zeroizing::new(form);
                    if !needles.iter().any(|(n, _)| *n == form) {
                        needles.push((form, replacement.clone()));
                    }
                }
            }
        }
        // Longest first, so a value that contains another is replaced whole.
        needles.sort_by_key(|n| std::cmp::Reverse(n.0.len()));
        Redactor { needles }
    }

    /// Whether there is nothing to redact.
    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// The length of the longest value: a streaming caller keeps this many
    /// bytes minus one back, so a value split across two writes is still
    /// found.
    pub fn longest(&self) -> usize {
        self.needles.first().map_or(0, |n| n.0.len())
    }

    /// The largest cut point `c <= want` such that no occurrence of a value,
    /// and no prefix of a value that later bytes could complete, straddles
    /// `c`. A streaming caller emits `redact(&data[..c])` and keeps the rest,
    /// so a value split across writes is still caught.
    pub fn safe_cut(&self, data: &[u8], want: usize) -> usize {
        let mut c = want.min(data.len());
        'again: loop {
            for (needle, _) in &self.needles {
                let n = needle.len();
                let lo = c.saturating_sub(n.saturating_sub(1));
                let straddler = (lo..c).find(|&p| {
                    let end = data.len().min(p + n);
                    p + n > c && data[p..end] == needle[..end - p]
                });
                if let Some(p) = straddler {
                    c = p;
                    continue 'again;
                }
            }
            return c;
        }
    }

    /// Whether `data` contains any secret value.
    pub fn contains_secret(&self, data: &[u8]) -> bool {
        self.needles.iter().any(|(n, _)| find(data, n).is_some())
    }

    /// `data` with every value replaced.
    pub fn redact<'a>(&self, data: &'a [u8]) -> Cow<'a, [u8]> {
        let mut out: Cow<'a, [u8]> = Cow::Borrowed(data);
        for (needle, replacement) in &self.needles {
            if find(&out, needle).is_none() {
                continue;
            }
            let mut next = Vec::with_capacity(out.len());
            let mut rest: &[u8] = &out;
            while let Some(i) = find(rest, needle) {
                next.extend_from_slice(&rest[..i]);
                next.extend_from_slice(replacement);
                rest = &rest[i + needle.len()..];
            }
            next.extend_from_slice(rest);
            out = Cow::Owned(next);
        }
        out
    }

    /// `text` with every value replaced.
    pub fn redact_str(&self, text: &str) -> String {
        String::from_utf8_lossy(&self.redact(text.as_bytes())).into_owned()
    }
}

/// The hex (both cases) and base64 (standard and URL-safe alphabets) forms
/// of `value`. For base64, the value can start at any of three offsets
/// inside a longer encoded text, and each offset encodes it differently; for
/// each, the form is the run of characters that depend on the value's bytes
/// alone, so it is found inside any longer encoding (and a standalone
/// encoding keeps at most its last character and padding).
fn encoded_forms(value: &[u8]) -> Vec<Vec<u8>> {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let mut forms = vec![
        hex::encode(value).into_bytes(),
        hex::encode_upper(value).into_bytes(),
    ];
    let bits = 8 * value.len();
    for offset in 0..3usize {
        let mut shifted = Zeroizing::new(vec![0u8; offset]);
        shifted.extend_from_slice(value);
        let first = (8 * offset).div_ceil(6);
        let last = (8 * offset + bits) / 6;
        for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
            let encoded = Zeroizing::new(engine.encode(&*shifted));
            forms.push(encoded.as_bytes()[first..last].to_vec());
        }
    }
    forms
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(name: &str, value: &str) -> ResolvedSecret {
        ResolvedSecret {
            name: name.into(),
            uses: BTreeSet::new(),
            provider: "env",
            version: None,
            credential: None,
            value: SecretValue::new(value.as_bytes().to_vec()),
        }
    }

    #[test]
    fn debug_never_prints_the_value() {
        let s = secret("k", "hunter2-value");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{:?}", s.value).contains("hunter2"));
    }

    #[test]
    fn redacts_every_occurrence_longest_first() {
        let r = Redactor::new(&[secret("short", "abc"), secret("long", "xxabcxx")]);
        let out = r.redact(b"1 xxabcxx 2 abc 3 abcabc");
        assert_eq!(
            &*out,
            b"1 [REDACTED:long] 2 [REDACTED:short] 3 [REDACTED:short][REDACTED:short]"
        );
        assert!(r.contains_secret(b"..abc.."));
        assert!(!r.contains_secret(b"ab c"));
        assert_eq!(r.longest(), 7);
    }

    #[test]
    fn safe_cut_never_splits_a_value() {
        let r = Redactor::new(&[secret("k", "SECRET")]);
        // A complete value straddling the wanted cut moves the cut before it.
        assert_eq!(r.safe_cut(b"ab SECRET cd", 5), 3);
        // A prefix at the end that later bytes could complete is held back.
        assert_eq!(r.safe_cut(b"line\nSEC", 8), 5);
        assert_eq!(r.safe_cut(b"line\nxyz", 8), 8);
    }

    #[test]
    fn redacts_hex_and_base64_forms_at_every_offset() {
        use base64::Engine;
        use base64::engine::general_purpose::{STANDARD, URL_SAFE};
        let value = "s3cr3t-\u{fb}\u{ff}-value";
        let r = Redactor::new(&[secret("k", value)]);
        let v = value.as_bytes();
        for text in [
            hex::encode(v),
            hex::encode_upper(v),
            STANDARD.encode(v),
            URL_SAFE.encode(v),
            STANDARD.encode([b"x".as_slice(), v, b"yz"].concat()),
            STANDARD.encode([b"xy".as_slice(), v].concat()),
            URL_SAFE.encode([b"xyz?".as_slice(), v, b"?"].concat()),
        ] {
            assert!(r.contains_secret(text.as_bytes()), "form not found");
            let out = r.redact_str(&text);
            assert!(out.contains("[REDACTED:k]"));
            assert!(out.len() < text.len() / 2 + 16, "most of the form is gone");
        }
        // Short values are redacted as they are, not in encoded forms.
        let short = Redactor::new(&[secret("s", "abc")]);
        assert!(!short.contains_secret(hex::encode("abc").as_bytes()));
    }

    #[test]
    fn safe_cut_holds_back_an_encoded_prefix() {
        let r = Redactor::new(&[secret("k", "SECRET-VALUE")]);
        let hex_form = hex::encode("SECRET-VALUE");
        let data = format!("log: {}", &hex_form[..10]);
        // The tail could become the hex form with the next write.
        assert_eq!(r.safe_cut(data.as_bytes(), data.len()), 5);
        assert!(r.longest() >= hex_form.len());
    }

    #[test]
    fn ed25519_seed_forms() {
        let raw = [7u8; 32];
        let from_raw = SecretValue::new(raw.to_vec()).ed25519_key().unwrap();
        let from_hex = SecretValue::new(hex::encode(raw).into_bytes())
            .ed25519_key()
            .unwrap();
        let from_upper = SecretValue::new(hex::encode_upper(raw).into_bytes())
            .ed25519_key()
            .unwrap();
        assert_eq!(from_raw.to_bytes(), from_hex.to_bytes());
        assert_eq!(from_raw.to_bytes(), from_upper.to_bytes());
        let err = SecretValue::new(b"not a seed".to_vec())
            .ed25519_key()
            .unwrap_err();
        assert!(err.contains("64 hex characters or 32 raw bytes"), "{err}");
        assert!(!err.contains("not a seed"));
    }
}
