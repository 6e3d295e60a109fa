//! `cordon-sdk`: what a Cordon step links against.
//!
//! A step is an ordinary Rust program built for `wasm32-wasip2`: `fn main`
//! becomes the component's `wasi:cli/run` export, `std::fs` sees exactly the
//! directories its capability manifest mounts, `std::env` sees exactly the
//! variables and arguments it grants. This crate adds:
//!
//! - [`run`] and [`Context`]: an entry point that turns an error into a
//!   non-zero exit with its message on stderr, and the granted mounts and
//!   arguments, discovered at run time.
//! - [`secrets`]: use a granted secret through a handle without ever seeing
//!   its bytes: [`secrets::Secret::hmac_sha256`],
//!   [`secrets::Secret::sign_ed25519`] and
//!   [`secrets::Secret::ed25519_public_key`]; [`secrets::Secret::reveal`]
//!   only under an explicit `reveal` grant.
//! - [`report`]: add metrics and annotations to the step's execution record.
//! - [`http`]: a blocking HTTP client for steps with a `[network]` grant;
//!   with [`secrets::Secret::http_header_placeholder`], a step sends a token
//!   to the hosts it is bound to without ever holding it.
//! - `testing` (native builds only): test doubles for the runner's side
//!   of `secrets`, `report` and `http`, so a step's logic is unit-tested
//!   with a plain `cargo test`.
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     cordon_sdk::run(|ctx| {
//!         let input = ctx.mount("/in")?;
//!         let output = ctx.output()?;
//!         let data = std::fs::read(input.path().join("model.bin"))?;
//!         let key = cordon_sdk::secrets::get(ctx.option("--key").unwrap_or("signing-key"))?;
//!         std::fs::write(output.path().join("model.bin.hmac"), key.hmac_sha256(&data)?)?;
//!         cordon_sdk::report::metric("bytes", data.len() as f64);
//!         Ok::<(), Box<dyn std::error::Error>>(())
//!     })
//! }
//! ```
//!
//! The generated bindings stay private: the API below is the contract, and
//! the WIT file is its single source of truth.

#[cfg(target_arch = "wasm32")]
mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "cordon:step/host-api",
    });
}

pub mod http;
pub mod report;
pub mod secrets;
mod step;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

pub use step::{Context, Mount, MountError, run};
