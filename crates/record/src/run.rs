//! What a step run produced, as the record keeps it: how it ended, what it
//! used, what it wrote to its streams, how it used its secrets, what it
//! reported, the HTTP requests it made, and the policy decision that let it
//! run. The sandbox and the policy crate produce these values; they are
//! defined here, with the record, so that the record (and every reader of
//! records) depends on no sandbox, no policy engine and no secret.

use cordon_core::digest::Sha256Digest;
use cordon_core::redact::Redact;
use cordon_manifest::manifest::SecretUse;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Which limit stopped a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LimitKind {
    /// Fuel ran out.
    Fuel,
    /// Linear memory would have grown beyond the limit.
    Memory,
    /// Wall-clock timeout.
    Timeout,
    /// Output mounts grew beyond the limit.
    Output,
    /// The step held the most resources the sandbox allows at once and
    /// asked for another.
    Resources,
}

/// How a step run ended.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Termination {
    /// `wasi:cli/run` returned or the step called `exit`; 0 is success.
    Exited {
        /// The exit code.
        code: i32,
    },
    /// The step trapped: a panic, an out-of-bounds access, a stack overflow,
    /// a call to an ungranted import.
    Trapped {
        /// The root cause, e.g. `wasm trap: call stack exhausted`.
        message: String,
        /// The full error with the guest's wasm backtrace.
        detail: String,
    },
    /// The run was interrupted (Ctrl-C) before the step finished.
    Interrupted,
    /// A limit stopped the step.
    LimitExceeded {
        /// Which one.
        limit: LimitKind,
        /// Human-readable detail.
        message: String,
    },
}

impl Termination {
    /// Whether the step succeeded.
    pub fn success(&self) -> bool {
        matches!(self, Termination::Exited { code: 0 })
    }

    /// Replaces secret values in its messages (a trap message quotes what
    /// the step wrote).
    pub fn redact(&mut self, r: &dyn Redact) {
        match self {
            Termination::Trapped { message, detail } => {
                *message = r.redact_str(message);
                *detail = r.redact_str(detail);
            }
            Termination::LimitExceeded { message, .. } => *message = r.redact_str(message),
            _ => {}
        }
    }

    /// One line for people.
    pub fn describe(&self) -> String {
        match self {
            Termination::Exited { code: 0 } => "succeeded".into(),
            Termination::Exited { code } => format!("exited with code {code}"),
            Termination::Trapped { message, .. } => format!("trapped: {message}"),
            Termination::LimitExceeded { message, .. } => message.clone(),
            Termination::Interrupted => "interrupted".into(),
        }
    }
}

/// Resources a run consumed.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    /// Fuel consumed.
    pub fuel: u64,
    /// Peak linear memory, bytes, over all memories.
    pub peak_memory: u64,
    /// Wall time of instantiate + run, milliseconds.
    pub wall_ms: u64,
    /// Largest charged growth of the output mounts the watchdog saw.
    pub output_bytes: u64,
}

/// What the record keeps about one stream.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StreamSummary {
    /// sha256 of the captured (redacted) bytes.
    pub sha256: Sha256Digest,
    /// Bytes the step wrote in total.
    pub bytes_written: u64,
    /// Bytes captured (at most the cap).
    pub bytes_captured: u64,
    /// Whether output beyond the cap was dropped.
    pub truncated: bool,
    /// Whether a secret value was found and redacted.
    pub redacted: bool,
    /// Whether control bytes or escape sequences were removed or written
    /// visibly (`\x1b`) before the stream was shown and stored. (Absent
    /// from records written before it existed.)
    #[serde(default)]
    pub escaped: bool,
    /// The capture file, when the stream kept any byte (a stream that
    /// kept nothing has none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<PathBuf>,
}

/// What the record says about one secret.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct SecretAudit {
    /// Provider that supplied the value.
    pub provider: String,
    /// Provider version of the value, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The credential the provider read it with, when one can be named
    /// safely: the vault token's accessor (never the token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_accessor: Option<String>,
    /// Uses the manifest grants.
    pub granted_uses: Vec<SecretUse>,
    /// Handles opened.
    pub opened: u64,
    /// Successful operations, per use.
    pub used: BTreeMap<String, u64>,
    /// Refused operations, per use that was not granted.
    pub denied: BTreeMap<String, u64>,
}

/// Facts the step reported about itself.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Report {
    /// Named measurements.
    pub metrics: BTreeMap<String, f64>,
    /// Key/value annotations.
    pub annotations: BTreeMap<String, String>,
    /// Facts dropped for exceeding the bounds.
    pub dropped: u64,
}

/// One request a step made (or tried to), as the record keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NetworkCall {
    /// The HTTP method.
    pub method: String,
    /// The URL, with every query value replaced by `REDACTED`.
    pub url: String,
    /// `sent` or `refused` or `failed`.
    pub outcome: String,
    /// Why it was refused or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The response status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Request body bytes.
    pub bytes_sent: u64,
    /// Response body bytes.
    pub bytes_received: u64,
    /// sha256 of the request body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_sha256: Option<String>,
    /// sha256 of the response body as the step received it (after
    /// redaction).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_sha256: Option<String>,
    /// Milliseconds from the request to the last byte of the response.
    pub duration_ms: u64,
    /// The secrets attached to it (names only).
    pub secrets: Vec<String>,
}

/// The calls past [`MAX_RECORDED_CALLS`], counted by outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OmittedCalls {
    /// Calls sent.
    pub sent: u64,
    /// Calls refused before any connection.
    pub refused: u64,
    /// Calls that failed.
    pub failed: u64,
}

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
pub struct Violation {
    /// The rule's name.
    pub rule: String,
    /// The step it concerns, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// The policy file the rule is in.
    pub source: String,
    /// The mount (guest path) the violation is about, when it is about one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub mount: Option<String>,
    /// The secret (name) the violation is about, when it is about one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub secret: Option<String>,
}

/// A policy file that took part, by digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PolicyFile {
    /// Its path, or the name of the built-in default pack.
    pub path: String,
    /// sha256 of its text.
    pub sha256: String,
}

/// What goes into every record: which policy decided, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Decision {
    /// `allow` (no violations) or `break-glass` (violations overridden).
    pub decision: String,
    /// The input schema version.
    pub input_version: u32,
    /// The policy files, by digest.
    pub files: Vec<PolicyFile>,
    /// Default rules the environment disabled.
    pub disabled_rules: Vec<String>,
    /// With break-glass: the justification given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
    /// With break-glass: every violation overridden.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub overridden: Vec<Violation>,
}
