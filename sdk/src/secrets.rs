//! Secret handles. The value of a secret stays in the runner; a step can
//! only ask the runner to use it in the ways its manifest grants.
//!
//! In a native build (a step's unit tests) the runner's side is the
//! thread's `cordon_sdk::testing` double: grant a secret there with
//! `testing::grant_secret` and the same calls compute the same
//! tags and signatures the runner would.

use std::fmt;

/// Why the runner refused a secret operation. Every refusal is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The manifest grants no secret of this name.
    NotGranted,
    /// The secret is granted, but not for this use.
    Denied,
    /// The provider could not supply the secret.
    Unavailable(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotGranted => f.write_str("secret not granted by the step's manifest"),
            Error::Denied => f.write_str("this use of the secret is not granted"),
            Error::Unavailable(why) => write!(f, "secret unavailable: {why}"),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::Error;
    pub use crate::bindings::cordon::step::secrets as wit;

    impl From<wit::Error> for Error {
        fn from(e: wit::Error) -> Self {
            match e {
                wit::Error::NotGranted => Error::NotGranted,
                wit::Error::Denied => Error::Denied,
                wit::Error::Unavailable(why) => Error::Unavailable(why),
            }
        }
    }

    pub type Handle = wit::Secret;

    pub fn get(name: &str) -> Result<Handle, Error> {
        Ok(wit::get(name)?)
    }
    pub fn name(h: &Handle) -> String {
        h.name()
    }
    pub fn hmac_sha256(h: &Handle, data: &[u8]) -> Result<Vec<u8>, Error> {
        Ok(h.hmac_sha256(data)?)
    }
    pub fn sign_ed25519(h: &Handle, data: &[u8]) -> Result<Vec<u8>, Error> {
        Ok(h.sign_ed25519(data)?)
    }
    pub fn public_key_ed25519(h: &Handle) -> Result<Vec<u8>, Error> {
        Ok(h.public_key_ed25519()?)
    }
    pub fn reveal(h: &Handle) -> Result<Vec<u8>, Error> {
        Ok(h.reveal()?)
    }
    pub fn http_header_placeholder(h: &Handle) -> Result<String, Error> {
        Ok(h.http_header_placeholder()?)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    pub use crate::testing::secret_handle::*;
}

/// A handle to a granted secret. Dropping it releases the handle.
pub struct Secret(imp::Handle);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Secret").field(&self.name()).finish()
    }
}

/// Opens the secret granted under `name`.
pub fn get(name: &str) -> Result<Secret, Error> {
    imp::get(name).map(Secret)
}

impl Secret {
    /// The name the secret was granted under.
    pub fn name(&self) -> String {
        imp::name(&self.0)
    }

    /// HMAC-SHA256 of `data`, keyed with the secret (needs the `hmac` use).
    pub fn hmac_sha256(&self, data: &[u8]) -> Result<[u8; 32], Error> {
        imp::hmac_sha256(&self.0, data)?
            .try_into()
            .map_err(|_| Error::Unavailable("runner returned a malformed tag".into()))
    }

    /// Ed25519 signature of `data` with the secret as seed (needs the
    /// `sign` use). The secret's value is a 32-byte seed, stored as 64
    /// hex characters or as the 32 raw bytes.
    pub fn sign_ed25519(&self, data: &[u8]) -> Result<[u8; 64], Error> {
        imp::sign_ed25519(&self.0, data)?
            .try_into()
            .map_err(|_| Error::Unavailable("runner returned a malformed signature".into()))
    }

    /// The ed25519 public key that verifies [`Secret::sign_ed25519`]
    /// signatures (needs the `sign` use).
    pub fn ed25519_public_key(&self) -> Result<[u8; 32], Error> {
        imp::public_key_ed25519(&self.0)?
            .try_into()
            .map_err(|_| Error::Unavailable("runner returned a malformed public key".into()))
    }

    /// The secret's bytes (needs the `reveal` use, which a reviewer
    /// grants only when no handle operation fits). The runner still
    /// redacts the value from the step's stdout and stderr and fails the
    /// step if an output file contains it.
    pub fn reveal(&self) -> Result<Vec<u8>, Error> {
        imp::reveal(&self.0)
    }

    /// An opaque placeholder for the value (needs the `http-header`
    /// use). Put it in a request header, e.g. `format!("Bearer {p}")`;
    /// the runner substitutes the value only on a request to a host the
    /// manifest binds the secret to and refuses the request otherwise.
    pub fn http_header_placeholder(&self) -> Result<String, Error> {
        imp::http_header_placeholder(&self.0)
    }
}
