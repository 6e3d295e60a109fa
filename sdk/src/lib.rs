//! `cordon-sdk`: what a Cordon step links against.
//!
//! A step is an ordinary Rust program built for `wasm32-wasip2`: `fn main`
//! becomes the component's `wasi:cli/run` export, `std::fs` sees exactly the
//! directories its capability manifest mounts, `std::env` sees exactly the
//! variables and arguments it grants. This crate adds the two Cordon
//! interfaces from `wit/step.wit`:
//!
//! - [`secrets`]: use a granted secret through a handle without ever seeing
//!   its bytes: [`secrets::Secret::hmac_sha256`],
//!   [`secrets::Secret::sign_ed25519`] and
//!   [`secrets::Secret::ed25519_public_key`]; [`secrets::Secret::reveal`]
//!   only under an explicit `reveal` grant.
//! - [`report`]: add metrics and annotations to the step's execution record.
//!
//! ```no_run
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let data = std::fs::read("/in/model.bin")?;
//!     let key = cordon_sdk::secrets::get("signing-key")?;
//!     let tag = key.hmac_sha256(&data)?;
//!     std::fs::write("/out/model.bin.hmac", tag)?;
//!     let release = cordon_sdk::secrets::get("release-key")?;
//!     std::fs::write("/out/model.bin.sig", release.sign_ed25519(&data)?)?;
//!     cordon_sdk::report::metric("bytes", data.len() as f64);
//!     Ok(())
//! }
//! ```
//!
//! The generated bindings stay private: the API below is the contract, and
//! the WIT file is its single source of truth.

mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "cordon:step/host-api",
    });
}

pub mod secrets {
    //! Secret handles. The value of a secret stays in the runner; a step can
    //! only ask the runner to use it in the ways its manifest grants.

    use crate::bindings::cordon::step::secrets as wit;
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

    impl From<wit::Error> for Error {
        fn from(e: wit::Error) -> Self {
            match e {
                wit::Error::NotGranted => Error::NotGranted,
                wit::Error::Denied => Error::Denied,
                wit::Error::Unavailable(why) => Error::Unavailable(why),
            }
        }
    }

    /// A handle to a granted secret. Dropping it releases the handle.
    pub struct Secret(wit::Secret);

    impl fmt::Debug for Secret {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_tuple("Secret").field(&self.0.name()).finish()
        }
    }

    /// Opens the secret granted under `name`.
    pub fn get(name: &str) -> Result<Secret, Error> {
        wit::get(name).map(Secret).map_err(Error::from)
    }

    impl Secret {
        /// The name the secret was granted under.
        pub fn name(&self) -> String {
            self.0.name()
        }

        /// HMAC-SHA256 of `data`, keyed with the secret (needs the `hmac` use).
        pub fn hmac_sha256(&self, data: &[u8]) -> Result<[u8; 32], Error> {
            let tag = self.0.hmac_sha256(data)?;
            tag.try_into()
                .map_err(|_| Error::Unavailable("runner returned a malformed tag".into()))
        }

        /// Ed25519 signature of `data` with the secret as seed (needs the
        /// `sign` use). The secret's value is a 32-byte seed, stored as 64
        /// hex characters or as the 32 raw bytes.
        pub fn sign_ed25519(&self, data: &[u8]) -> Result<[u8; 64], Error> {
            let sig = self.0.sign_ed25519(data)?;
            sig.try_into()
                .map_err(|_| Error::Unavailable("runner returned a malformed signature".into()))
        }

        /// The ed25519 public key that verifies [`Secret::sign_ed25519`]
        /// signatures (needs the `sign` use).
        pub fn ed25519_public_key(&self) -> Result<[u8; 32], Error> {
            let key = self.0.public_key_ed25519()?;
            key.try_into()
                .map_err(|_| Error::Unavailable("runner returned a malformed public key".into()))
        }

        /// The secret's bytes (needs the `reveal` use, which a reviewer
        /// grants only when no handle operation fits). The runner still
        /// redacts the value from the step's stdout and stderr and fails the
        /// step if an output file contains it.
        pub fn reveal(&self) -> Result<Vec<u8>, Error> {
            Ok(self.0.reveal()?)
        }
    }
}

pub mod report {
    //! Facts a step adds to its execution record.

    use crate::bindings::cordon::step::report as wit;

    /// Records a named measurement; a later value for the same name replaces
    /// the earlier one.
    pub fn metric(name: &str, value: f64) {
        wit::metric(name, value)
    }

    /// Records a key/value annotation.
    pub fn annotate(key: &str, value: &str) {
        wit::annotate(key, value)
    }
}
