//! The seam between what holds secret values and what must never see them.
//!
//! Records, chains and reports are built from typed data that may carry a
//! value a step chose (an argument, a metric name, a trap message). They are
//! redacted *as values*, before they are serialized, through this trait:
//! the record crate calls it without depending on the secrets crate, whose
//! redactor holds the values.

/// Replaces every secret value (and each encoding of one that the
/// implementation knows) in a string.
pub trait Redact {
    /// Whether there is nothing to redact (no secret was granted).
    fn is_empty(&self) -> bool;
    /// `text` with every secret value replaced.
    fn redact_str(&self, text: &str) -> String;
}

/// Redacts nothing: for runs that were granted no secret and for readers of
/// records, which never hold one.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSecrets;

impl Redact for NoSecrets {
    fn is_empty(&self) -> bool {
        true
    }
    fn redact_str(&self, text: &str) -> String {
        text.to_string()
    }
}
