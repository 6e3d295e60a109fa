//! For reviewers: [`audit`] says in plain language what each step may do,
//! with risk flags; [`capdiff`] lists every capability change between two
//! versions of a manifest or pipeline, escalations first; [`inspect`] reads
//! what a component imports and exports; [`card`] renders a pipeline run's
//! provenance card from its records; [`review`] holds their shared
//! wording and escaping.
//!
//! Review reads manifests, configurations and components; it must never run
//! a step, open a secret store or write anything.

#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod audit;
pub mod capdiff;
pub mod card;
pub mod inspect;
pub mod review;
