//! Signed chain heads: a way to notice that the newest records were cut off.
//!
//! A hash chain shows that nothing was changed, inserted or removed
//! *between* its entries, but not that its newest entries were deleted: a
//! truncated chain is still a valid chain. The fix is to keep the head
//! somewhere else. `cordon records head` prints the newest entry (its
//! sequence number and the digest of its log line) signed by the
//! environment's record key; whoever keeps that file elsewhere (a CI
//! artifact, a ticket, another machine) can later run `cordon verify --head
//! FILE`, which fails when the chain no longer reaches that entry or holds
//! a different one there.
//!
//! The head is a DSSE envelope of payload type [`HEAD_PAYLOAD_TYPE`] over
//! the JSON of [`ChainHead`]. This module reads the log and signs; it never
//! sees a secret value beyond the signer it is handed.

use crate::attest::{self, Signer, TrustedKey};
use crate::chain;
use cordon_manifest::manifest::Sha256Digest;
use std::path::Path;

/// The DSSE payload type of a signed chain head.
pub const HEAD_PAYLOAD_TYPE: &str = "application/vnd.cordon.chain-head+json";

/// The `format` of a chain head document.
pub const HEAD_FORMAT: &str = "cordon.chain-head/v1";

/// The newest entry of a chain, as signed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainHead {
    /// [`HEAD_FORMAT`].
    pub format: String,
    /// The environment whose key signs the head.
    pub environment: String,
    /// The entry's sequence number (the chain's length).
    pub sequence: u64,
    /// The run of the entry.
    pub run: String,
    /// sha256 of the entry's log line (without its newline): the `prev` the
    /// next entry will carry.
    pub entry: String,
    /// When the head was taken (RFC 3339).
    pub taken_at: String,
}

/// Why a head could not be taken or checked.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    /// The chain has no entry yet.
    #[error("{0} holds no chain entries yet; run a step first")]
    Empty(std::path::PathBuf),
    /// The log cannot be read.
    #[error("cannot read the chain log in {0}: {1}")]
    Io(std::path::PathBuf, std::io::Error),
    /// The last line is not an entry.
    #[error("the last line of the chain log is not an entry ({0}); run `cordon verify`")]
    Damaged(String),
    /// Signing failed (a remote signer did not answer).
    #[error("cannot sign the chain head: {0}")]
    Sign(String),
    /// The head file is not a signed head, or its signature does not hold.
    #[error("the head file is not a valid signed chain head: {0}")]
    Invalid(String),
}

/// The newest entry of the chain in `records_dir`, for `environment`.
pub fn current(records_dir: &Path, environment: &str) -> Result<ChainHead, HeadError> {
    let lines =
        chain::read_lines(records_dir).map_err(|e| HeadError::Io(records_dir.to_path_buf(), e))?;
    let last = lines
        .last()
        .ok_or_else(|| HeadError::Empty(records_dir.to_path_buf()))?;
    let entry = chain::LogEntry::parse(last).map_err(|e| HeadError::Damaged(e.0))?;
    Ok(ChainHead {
        format: HEAD_FORMAT.into(),
        environment: environment.into(),
        sequence: entry.seq,
        run: entry.run,
        entry: Sha256Digest::of(last.as_bytes()).to_string(),
        taken_at: crate::record::now_rfc3339(),
    })
}

/// The head as a signed DSSE envelope (pretty JSON, newline-terminated).
pub fn sign(head: &ChainHead, signer: &Signer) -> Result<Vec<u8>, HeadError> {
    let payload = serde_json::to_vec(head).expect("heads serialize");
    let envelope = signer
        .envelope(HEAD_PAYLOAD_TYPE, &payload)
        .map_err(|e| HeadError::Sign(e.to_string()))?;
    let mut out = serde_json::to_vec_pretty(&envelope).expect("envelopes serialize");
    out.push(b'\n');
    Ok(out)
}

/// The environment a head file claims to be signed for, read before its
/// signature is checked (to know whose keys to check it with).
pub fn claimed_environment(envelope: &[u8]) -> Result<String, HeadError> {
    use base64::Engine as _;
    let v: serde_json::Value =
        serde_json::from_slice(envelope).map_err(|e| HeadError::Invalid(e.to_string()))?;
    let payload = v["payload"]
        .as_str()
        .and_then(|p| base64::engine::general_purpose::STANDARD.decode(p).ok())
        .ok_or_else(|| HeadError::Invalid("no base64 payload".into()))?;
    let head: ChainHead =
        serde_json::from_slice(&payload).map_err(|e| HeadError::Invalid(e.to_string()))?;
    Ok(head.environment)
}

/// Opens a signed head with the keys trusted for its environment.
pub fn open(envelope: &[u8], trusted: &[TrustedKey]) -> Result<ChainHead, HeadError> {
    let (ptype, payload) =
        attest::open_envelope(envelope, trusted).map_err(|e| HeadError::Invalid(e.to_string()))?;
    if ptype != HEAD_PAYLOAD_TYPE {
        return Err(HeadError::Invalid(format!(
            "payload type {ptype}, not {HEAD_PAYLOAD_TYPE}"
        )));
    }
    let head: ChainHead =
        serde_json::from_slice(&payload).map_err(|e| HeadError::Invalid(e.to_string()))?;
    if head.format != HEAD_FORMAT {
        return Err(HeadError::Invalid(format!("format {}", head.format)));
    }
    Ok(head)
}

/// What does not hold of `head` against the chain's `lines`: `None` when
/// the chain still reaches the head with the same entry.
pub fn check(head: &ChainHead, lines: &[String]) -> Option<String> {
    let Some(line) = usize::try_from(head.sequence)
        .ok()
        .and_then(|n| n.checked_sub(1))
        .and_then(|i| lines.get(i))
    else {
        return Some(format!(
            "the chain ends at entry {}, but the signed head of {} names entry {} (run {}): the newest records were removed",
            lines.len(),
            head.taken_at,
            head.sequence,
            head.run
        ));
    };
    let digest = Sha256Digest::of(line.as_bytes()).to_string();
    (digest != head.entry).then(|| {
        format!(
            "chain entry {} has digest {digest}, but the signed head of {} holds {} (run {}): the chain was rewritten after the head was taken",
            head.sequence, head.taken_at, head.entry, head.run
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn trusted(s: &Signer) -> TrustedKey {
        TrustedKey {
            keyid: s.keyid().into(),
            key: s.public(),
            source: "test".into(),
        }
    }

    #[test]
    fn a_truncated_or_rewritten_chain_fails_its_head() {
        let lines: Vec<String> = (1..=3)
            .map(|i| format!("{{\"seq\":{i},\"run\":\"r{i}\"}}"))
            .collect();
        let head = ChainHead {
            format: HEAD_FORMAT.into(),
            environment: "dev".into(),
            sequence: 3,
            run: "r3".into(),
            entry: Sha256Digest::of(lines[2].as_bytes()).to_string(),
            taken_at: "t".into(),
        };
        assert_eq!(check(&head, &lines), None);
        let cut = check(&head, &lines[..2]).unwrap();
        assert!(cut.contains("newest records were removed"), "{cut}");
        let mut rewritten = lines.clone();
        rewritten[2] = "{\"seq\":3,\"run\":\"other\"}".into();
        let msg = check(&head, &rewritten).unwrap();
        assert!(msg.contains("rewritten"), "{msg}");
        // A later chain still reaches the head.
        let mut longer = lines.clone();
        longer.push("{\"seq\":4}".into());
        assert_eq!(check(&head, &longer), None);
    }

    #[test]
    fn a_head_opens_only_with_a_trusted_key() {
        let a = Signer::from_key(SigningKey::from_bytes(&[3; 32]));
        let b = Signer::from_key(SigningKey::from_bytes(&[4; 32]));
        let head = ChainHead {
            format: HEAD_FORMAT.into(),
            environment: "prod".into(),
            sequence: 1,
            run: "r".into(),
            entry: "sha256:00".into(),
            taken_at: "t".into(),
        };
        let signed = sign(&head, &a).unwrap();
        assert_eq!(claimed_environment(&signed).unwrap(), "prod");
        assert_eq!(open(&signed, &[trusted(&a)]).unwrap(), head);
        assert!(open(&signed, &[trusted(&b)]).is_err());
    }
}
