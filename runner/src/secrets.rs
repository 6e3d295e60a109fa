//! Secret values, where they come from, and keeping them out of every output.
//!
//! This module owns secret *values*. Everything else handles names: the plan
//! lists which secrets a step is granted, the sandbox hands the guest opaque
//! handles and asks this module to use a value on its behalf, and the record
//! stores names, providers and versions, never values.
//!
//! Values live in [`SecretValue`], which zeroes its memory on drop and whose
//! `Debug` never prints the bytes, so a stray `{:?}` or a panic message
//! cannot leak one. A [`Redactor`] scrubs values out of anything the step
//! prints before it reaches a terminal, a log file or a record.
//!
//! Provider today: `env`, which reads `CORDON_SECRET_<NAME>` from the
//! runner's own environment (the way CI systems inject secrets). It is never
//! read from argv, which other users on the machine can see.

use crate::manifest::{SecretGrant, SecretUse};
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;
use zeroize::Zeroizing;

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
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

/// Why a granted secret could not be resolved. Never contains a value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The environment provider has no variable for the secret.
    #[error(
        "secret `{name}` is granted but the runner's environment has no {var}\n  fix: export {var} in the environment that runs cordon (never pass secrets as arguments)"
    )]
    MissingEnv {
        /// Secret name.
        name: String,
        /// The variable that was looked for.
        var: String,
    },
    /// The variable exists but is empty or not valid Unicode.
    #[error("secret `{name}`: {var} is empty or not valid UTF-8")]
    BadEnv {
        /// Secret name.
        name: String,
        /// The variable that was read.
        var: String,
    },
}

/// A granted secret with its value, ready for the sandbox's handle table.
#[derive(Debug, Clone)]
pub struct ResolvedSecret {
    /// The name the step asks for.
    pub name: String,
    /// The uses the manifest grants.
    pub uses: BTreeSet<SecretUse>,
    /// Which provider supplied it (`env`).
    pub provider: &'static str,
    /// The provider's version of the value, when it has one.
    pub version: Option<String>,
    /// The value.
    pub value: SecretValue,
}

/// The environment variable the `env` provider reads for `name`:
/// `signing-key` becomes `CORDON_SECRET_SIGNING_KEY`.
pub fn env_var_for(name: &str) -> String {
    format!(
        "CORDON_SECRET_{}",
        name.to_ascii_uppercase().replace('-', "_")
    )
}

/// Resolves every grant from the runner's environment.
pub fn resolve_from_env(grants: &[SecretGrant]) -> Result<Vec<ResolvedSecret>, SecretError> {
    grants
        .iter()
        .map(|g| {
            let var = env_var_for(&g.name);
            let value = match std::env::var_os(&var) {
                None => {
                    return Err(SecretError::MissingEnv {
                        name: g.name.clone(),
                        var,
                    });
                }
                Some(v) => v.into_string().map_err(|_| SecretError::BadEnv {
                    name: g.name.clone(),
                    var: var.clone(),
                })?,
            };
            if value.is_empty() {
                return Err(SecretError::BadEnv {
                    name: g.name.clone(),
                    var,
                });
            }
            Ok(ResolvedSecret {
                name: g.name.clone(),
                uses: g.uses.clone(),
                provider: "env",
                version: None,
                value: SecretValue::new(value.into_bytes()),
            })
        })
        .collect()
}

/// Replaces every occurrence of a secret value with `[REDACTED:<name>]`.
///
/// Every non-empty value is redacted, however short: a mangled log line is a
/// smaller harm than a leaked credential.
#[derive(Clone, Default)]
pub struct Redactor {
    needles: Vec<(Vec<u8>, Vec<u8>)>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} values)", self.needles.len())
    }
}

impl Redactor {
    /// A redactor for the values of `secrets`.
    pub fn new(secrets: &[ResolvedSecret]) -> Self {
        let mut needles: Vec<(Vec<u8>, Vec<u8>)> = secrets
            .iter()
            .filter(|s| !s.value.expose().is_empty())
            .map(|s| {
                (
                    s.value.expose().to_vec(),
                    format!("[REDACTED:{}]", s.name).into_bytes(),
                )
            })
            .collect();
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
    fn env_var_names() {
        assert_eq!(env_var_for("signing-key"), "CORDON_SECRET_SIGNING_KEY");
    }
}
