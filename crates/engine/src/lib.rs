//! Runs steps and pipelines: one step through plan, sandbox and record
//! ([`exec`]), many as a DAG ([`scheduler`]), with the content store
//! ([`cas`]) and the action cache ([`cache`]), staged and checked outputs
//! published by the commit protocol ([`outputs`], [`mount_locks`],
//! [`repair`]), rollback to an earlier run's outputs ([`restore`]),
//! re-execution of a recorded run ([`reexec`]), the environments'
//! record-signing keys ([`keys`]), in-toto exports ([`export`]),
//! promotion of artifacts between environments ([`promote`]) and the
//! shared store on S3-compatible storage ([`remote`]), with one step of a
//! pipeline run on its own from upstream outputs there ([`upstream`]).
//!
//! Everything a run publishes is named by a durable, chained record first.
//! This crate decides; it never parses a command line, installs a signal
//! handler or draws anything but the live view it is asked for.

#![deny(unsafe_code)]
#![deny(missing_docs)]

#[macro_use]
extern crate cordon_core;

pub mod cache;
pub mod cas;
pub mod exec;
pub mod export;
pub mod github;
pub mod keys;
pub mod mount_locks;
pub mod outputs;
pub mod promote;
pub mod reexec;
pub mod remote;
pub mod repair;
pub mod restore;
pub mod scaffold;
pub mod scheduler;
pub mod upstream;
