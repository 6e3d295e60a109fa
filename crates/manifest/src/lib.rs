//! What a reviewer approves, read and checked: a step's capability manifest
//! ([`manifest`]), the workspace configuration `cordon.toml` ([`config`]),
//! pipeline files ([`pipeline`]), and their resolution against the host into
//! a plan ([`plan`]): paths resolved, the component read and its digest
//! checked, every grant named. [`pin`] writes a component's digest into a
//! manifest; [`rules`] names the default policy rules a configuration may
//! disable.
//!
//! Every error names the file, the line and the fix. This crate reads
//! files a reviewer wrote; it must never run a step, open a secret store,
//! or write anything but the manifest `pin` is asked to edit.

#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod config;
pub mod manifest;
pub mod names;
pub mod pin;
pub mod pipeline;
pub mod plan;
pub mod rules;
