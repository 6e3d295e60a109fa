//! Policy over plans: Rego evaluation with the default rule pack and an
//! organization's own files ([`policy`]), SARIF and JSON renderings of its
//! findings, reviewers' signed approvals of manifests ([`approval`]), the
//! promotion policy over an artifact's provenance ([`promotion`]), and a
//! sealed cache of decisions ([`decisions`]).
//!
//! Policy decides before anything runs; it reads plans and approvals, and
//! must never run a step or see a secret value.

#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod approval;
pub mod decisions;
pub mod gate;
pub mod policy;
pub mod promotion;
