//! Execution records, and everything needed to trust one without the
//! sandbox: the typed record schema ([`record`], with what a run produced in
//! [`run`]), the hash chain of a state directory ([`chain`]), in-toto
//! statements and DSSE signatures ([`attest`]), the signed chain head
//! ([`head`]), the commit journal's format ([`journal`]), the trust roots a
//! verifier is given ([`trust`]), verification itself ([`verify`]) and the
//! verification summaries a promotion signs ([`vsa`]), and an environment's
//! posture read from its records ([`posture`]).
//!
//! Records are built from typed values and redacted as values (through
//! [`cordon_core::redact::Redact`]) before they are serialized. This crate
//! must never see a secret value, open a secret store, or depend on the
//! sandbox or the policy engine: an auditor's `cordon verify` needs nothing
//! else.

#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod attest;
pub mod chain;
pub mod head;
pub mod journal;
pub mod pipeline;
pub mod posture;
pub mod query;
pub mod record;
pub mod run;
pub mod trust;
pub mod verify;
pub mod vsa;
