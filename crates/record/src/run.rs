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
///
/// Every metric is a finite number: the sandbox refuses NaN and ±inf at
/// the host boundary and counts them in `non_finite`, because JSON has no
/// spelling for them (serde writes `null`, which no typed reader takes
/// back as a number) and a renderer or a dashboard fed one computes
/// nonsense. Records written before that refusal may hold `null` metrics:
/// they are read as refused values (dropped from `metrics`, counted in
/// `non_finite`), so those records still parse, verify and render. The
/// signature covers the record file's bytes, not this typed view, so
/// reading them this way changes nothing a verifier checks.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(from = "ReportFields")]
pub struct Report {
    /// Named measurements, all finite.
    pub metrics: BTreeMap<String, f64>,
    /// Key/value annotations.
    pub annotations: BTreeMap<String, String>,
    /// Facts dropped for exceeding the bounds.
    pub dropped: u64,
    /// Metric values refused for not being finite numbers (NaN, ±inf).
    /// Absent (0) from records written before it existed, and left out
    /// when 0 so that the records of steps that never report one keep
    /// their bytes.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub non_finite: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// [`Report`] as records spell it, old ones included.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportFields {
    metrics: BTreeMap<String, Option<f64>>,
    annotations: BTreeMap<String, String>,
    dropped: u64,
    #[serde(default)]
    non_finite: u64,
}

impl From<ReportFields> for Report {
    fn from(f: ReportFields) -> Report {
        let (metrics, non_finite) = finite_metrics(f.metrics);
        Report {
            metrics,
            annotations: f.annotations,
            dropped: f.dropped,
            non_finite: f.non_finite + non_finite,
        }
    }
}

/// The finite values of `metrics` as records spell them, and how many
/// were not (`null`, the only spelling a non-finite value ever had in a
/// record).
pub fn finite_metrics(metrics: BTreeMap<String, Option<f64>>) -> (BTreeMap<String, f64>, u64) {
    let mut refused = 0;
    let finite = metrics
        .into_iter()
        .filter_map(|(k, v)| match v {
            Some(v) if v.is_finite() => Some((k, v)),
            _ => {
                refused += 1;
                None
            }
        })
        .collect();
    (finite, refused)
}

/// Reads a metrics map written by any runner, keeping its finite values
/// (for `#[serde(deserialize_with)]` on summaries that copy a report's
/// metrics, such as the pipeline record's).
pub fn deserialize_finite_metrics<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<BTreeMap<String, f64>>, D::Error> {
    let m: Option<BTreeMap<String, Option<f64>>> = serde::Deserialize::deserialize(d)?;
    Ok(m.map(|m| finite_metrics(m).0))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_written_before_the_refusal_with_a_null_metric_still_reads() {
        let old = r#"{"metrics":{"loss":null,"rows":3.0},"annotations":{},"dropped":0}"#;
        let r: Report = serde_json::from_str(old).unwrap();
        assert_eq!(r.metrics, BTreeMap::from([("rows".to_string(), 3.0)]));
        assert_eq!(r.non_finite, 1);
    }

    #[test]
    fn a_report_without_refusals_keeps_the_bytes_older_runners_wrote() {
        let r = Report {
            metrics: BTreeMap::from([("rows".to_string(), 3.0)]),
            ..Default::default()
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(
            text,
            r#"{"metrics":{"rows":3.0},"annotations":{},"dropped":0}"#
        );
        let counted = Report {
            non_finite: 2,
            ..r.clone()
        };
        let back: Report = serde_json::from_str(&serde_json::to_string(&counted).unwrap()).unwrap();
        assert_eq!(back, counted);
    }

    #[test]
    fn a_report_with_an_unknown_field_is_refused() {
        let odd = r#"{"metrics":{},"annotations":{},"dropped":0,"loss":1}"#;
        assert!(serde_json::from_str::<Report>(odd).is_err());
    }
}
