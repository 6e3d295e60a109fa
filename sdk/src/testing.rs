//! Test doubles for the runner's side of `secrets`, `report` and `http`,
//! in native builds only (a component always talks to the real runner).
//!
//! Each test thread has its own double, so `cargo test`'s parallel tests
//! do not see each other's grants. The doubles behave as the runner does
//! where a step can tell: a secret not granted is
//! [`secrets::Error::NotGranted`](crate::secrets::Error::NotGranted), a use
//! not granted is `Denied`, tags and signatures are the real HMAC-SHA256
//! and ed25519 of the value, and a request nobody answers is
//! [`http::Error::Refused`](crate::http::Error::Refused), like a request
//! to a destination the manifest does not grant.
//!
//! ```
//! use cordon_sdk::testing::{self, Use};
//! testing::reset();
//! testing::grant_secret("pseudonym-key", b"0123456789abcdef", &[Use::Hmac]);
//! let key = cordon_sdk::secrets::get("pseudonym-key").unwrap();
//! assert_eq!(key.hmac_sha256(b"alice").unwrap().len(), 32);
//! assert!(key.reveal().is_err(), "reveal is not granted");
//! cordon_sdk::report::metric("rows", 3.0);
//! assert_eq!(testing::metrics()["rows"], 3.0);
//! ```

use crate::http::{Error as HttpError, Response};
use crate::secrets::Error;
use std::cell::RefCell;
use std::collections::BTreeMap;

/// A use of a secret a manifest can grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// `hmac`: [`crate::secrets::Secret::hmac_sha256`].
    Hmac,
    /// `sign`: [`crate::secrets::Secret::sign_ed25519`] and the public key.
    Sign,
    /// `reveal`: [`crate::secrets::Secret::reveal`].
    Reveal,
    /// `http-header`: [`crate::secrets::Secret::http_header_placeholder`].
    HttpHeader,
}

struct Grant {
    value: Vec<u8>,
    uses: Vec<Use>,
}

/// A request the step sent through the double.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentRequest {
    /// The method, upper case.
    pub method: String,
    /// The absolute URL.
    pub url: String,
    /// Header names (lower case) and values, as the step set them (a
    /// placeholder stays a placeholder: the double never substitutes).
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body.
    pub body: Vec<u8>,
}

#[derive(Default)]
struct Double {
    secrets: BTreeMap<String, Grant>,
    routes: Vec<(String, String, Response)>,
    sent: Vec<SentRequest>,
    metrics: BTreeMap<String, f64>,
    annotations: BTreeMap<String, String>,
}

thread_local! {
    static DOUBLE: RefCell<Double> = RefCell::default();
}

fn with<T>(f: impl FnOnce(&mut Double) -> T) -> T {
    DOUBLE.with(|d| f(&mut d.borrow_mut()))
}

/// Forgets this thread's grants, routes, sent requests and reported facts.
pub fn reset() {
    with(|d| *d = Double::default());
}

/// Grants secret `name` with `value` for `uses`, as a manifest's
/// `[[secret]]` and the environment's provider would.
pub fn grant_secret(name: &str, value: impl AsRef<[u8]>, uses: &[Use]) {
    with(|d| {
        d.secrets.insert(
            name.to_string(),
            Grant {
                value: value.as_ref().to_vec(),
                uses: uses.to_vec(),
            },
        )
    });
}

/// Answers `method url` (exact URL) with `response` from now on.
pub fn respond(method: &str, url: &str, response: Response) {
    with(|d| {
        d.routes
            .push((method.to_ascii_uppercase(), url.to_string(), response))
    });
}

/// A `200` response with `body`.
pub fn ok(body: Vec<u8>) -> Response {
    Response {
        status: 200,
        headers: Vec::new(),
        body,
    }
}

/// A redirect with `status` to `location` (relative or absolute).
pub fn redirect(status: u16, location: &str) -> Response {
    Response {
        status,
        headers: vec![("location".into(), location.as_bytes().to_vec())],
        body: Vec::new(),
    }
}

/// Every request sent on this thread, oldest first (refused ones too).
pub fn sent() -> Vec<SentRequest> {
    with(|d| d.sent.clone())
}

/// The metrics reported on this thread.
pub fn metrics() -> BTreeMap<String, f64> {
    with(|d| d.metrics.clone())
}

/// The annotations reported on this thread.
pub fn annotations() -> BTreeMap<String, String> {
    with(|d| d.annotations.clone())
}

/// The placeholder the double hands out for secret `name`: what a test
/// expects in a header the step set from
/// [`crate::secrets::Secret::http_header_placeholder`].
pub fn placeholder(name: &str) -> String {
    format!("cordon-test-placeholder:{name}")
}

pub(crate) fn record_metric(name: &str, value: f64) {
    with(|d| d.metrics.insert(name.to_string(), value));
}

pub(crate) fn record_annotation(key: &str, value: &str) {
    with(|d| d.annotations.insert(key.to_string(), value.to_string()));
}

pub(crate) fn exchange(
    method: &str,
    url: &str,
    headers: &[(String, Vec<u8>)],
    body: &[u8],
) -> Result<Response, HttpError> {
    with(|d| {
        d.sent.push(SentRequest {
            method: method.to_string(),
            url: url.to_string(),
            headers: headers.to_vec(),
            body: body.to_vec(),
        });
        d.routes
            .iter()
            .find(|(m, u, _)| m == method && u == url)
            .map(|(_, _, r)| r.clone())
            .ok_or(HttpError::Refused)
    })
}

/// The native side of [`crate::secrets::Secret`].
pub(crate) mod secret_handle {
    use super::{Error, Use, with};
    use hmac::{Hmac, Mac};
    use sha2::Sha256;

    /// A handle: the name; the value stays in the double, as it stays in
    /// the runner.
    pub struct Handle(String);

    pub fn get(name: &str) -> Result<Handle, Error> {
        with(|d| {
            d.secrets
                .contains_key(name)
                .then(|| Handle(name.to_string()))
                .ok_or(Error::NotGranted)
        })
    }

    pub fn name(h: &Handle) -> String {
        h.0.clone()
    }

    fn value(h: &Handle, needs: Use) -> Result<Vec<u8>, Error> {
        with(|d| match d.secrets.get(&h.0) {
            None => Err(Error::NotGranted),
            Some(g) if !g.uses.contains(&needs) => Err(Error::Denied),
            Some(g) => Ok(g.value.clone()),
        })
    }

    /// The seed forms the runner accepts: 64 hex characters or 32 bytes.
    fn signing_key(h: &Handle) -> Result<ed25519_dalek::SigningKey, Error> {
        let v = value(h, Use::Sign)?;
        let mut seed = [0u8; 32];
        if v.len() == 64 && hex::decode_to_slice(&v, &mut seed).is_ok() {
            return Ok(ed25519_dalek::SigningKey::from_bytes(&seed));
        }
        if v.len() == 32 {
            seed.copy_from_slice(&v);
            return Ok(ed25519_dalek::SigningKey::from_bytes(&seed));
        }
        Err(Error::Unavailable(
            "the secret is not an ed25519 seed (expected 64 hex characters or 32 raw bytes)".into(),
        ))
    }

    pub fn hmac_sha256(h: &Handle, data: &[u8]) -> Result<Vec<u8>, Error> {
        let key = value(h, Use::Hmac)?;
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("HMAC takes keys of any length");
        mac.update(data);
        Ok(mac.finalize().into_bytes().to_vec())
    }

    pub fn sign_ed25519(h: &Handle, data: &[u8]) -> Result<Vec<u8>, Error> {
        use ed25519_dalek::Signer;
        Ok(signing_key(h)?.sign(data).to_bytes().to_vec())
    }

    pub fn public_key_ed25519(h: &Handle) -> Result<Vec<u8>, Error> {
        Ok(signing_key(h)?.verifying_key().to_bytes().to_vec())
    }

    pub fn reveal(h: &Handle) -> Result<Vec<u8>, Error> {
        value(h, Use::Reveal)
    }

    pub fn http_header_placeholder(h: &Handle) -> Result<String, Error> {
        value(h, Use::HttpHeader)?;
        Ok(super::placeholder(&h.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets;

    #[test]
    fn secrets_are_refused_as_the_runner_refuses_them() {
        reset();
        assert_eq!(secrets::get("nope").unwrap_err(), Error::NotGranted);
        grant_secret("k", "0123456789abcdef", &[Use::Hmac]);
        let k = secrets::get("k").unwrap();
        assert_eq!(k.name(), "k");
        assert_eq!(k.reveal().unwrap_err(), Error::Denied);
        assert_eq!(k.sign_ed25519(b"x").unwrap_err(), Error::Denied);
        assert_eq!(k.http_header_placeholder().unwrap_err(), Error::Denied);
        assert_eq!(format!("{k:?}"), "Secret(\"k\")", "no value in Debug");
    }

    #[test]
    fn hmac_is_rfc_4231_test_case_2() {
        reset();
        grant_secret("jefe", "Jefe", &[Use::Hmac]);
        let tag = secrets::get("jefe")
            .unwrap()
            .hmac_sha256(b"what do ya want for nothing?")
            .unwrap();
        assert_eq!(
            hex::encode(tag),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn signatures_verify_under_the_public_key_for_both_seed_forms() {
        use ed25519_dalek::{Signature, Verifier, VerifyingKey};
        reset();
        let seed = [7u8; 32];
        grant_secret("raw", seed, &[Use::Sign]);
        grant_secret("hex", hex::encode(seed), &[Use::Sign]);
        let raw = secrets::get("raw").unwrap();
        let hexed = secrets::get("hex").unwrap();
        let sig = raw.sign_ed25519(b"model").unwrap();
        assert_eq!(sig, hexed.sign_ed25519(b"model").unwrap());
        let public = VerifyingKey::from_bytes(&raw.ed25519_public_key().unwrap()).unwrap();
        public
            .verify(b"model", &Signature::from_bytes(&sig))
            .unwrap();
        grant_secret("short", "abc", &[Use::Sign]);
        assert!(matches!(
            secrets::get("short").unwrap().sign_ed25519(b"x"),
            Err(Error::Unavailable(_))
        ));
    }

    #[test]
    fn a_header_placeholder_is_sent_as_is() {
        reset();
        grant_secret("token", "s3cr3t-value", &[Use::HttpHeader]);
        respond("PUT", "http://store/up", ok(Vec::new()));
        let p = secrets::get("token")
            .unwrap()
            .http_header_placeholder()
            .unwrap();
        assert_eq!(p, placeholder("token"));
        crate::http::Request::put("http://store/up")
            .header("Authorization", &format!("Bearer {p}"))
            .body(b"data".to_vec())
            .send()
            .unwrap();
        let sent = sent();
        assert_eq!(sent[0].method, "PUT");
        assert_eq!(
            sent[0].headers,
            [(
                "authorization".to_string(),
                format!("Bearer {}", placeholder("token")).into_bytes()
            )]
        );
        assert_eq!(sent[0].body, b"data");
    }
}
