//! The hash chain: an append-only log of every record in a state directory.
//!
//! `<state>/records/chain.log` holds one JSON line per record:
//!
//! ```text
//! {"seq":1,"run":"<run id>","record":"sha256:…","envelope":"sha256:…"|null,"prev":"sha256:000…"}
//! ```
//!
//! `seq` counts from 1, `record` and `envelope` are the digests of the files
//! `<run id>.json` and `<run id>.dsse.json`, and `prev` is the sha256 of the
//! previous line's bytes (without its newline; 64 zeros for the first). The
//! record itself carries its `seq` and `prev` too (`chain` in the record),
//! so the signature binds each record to its place: deleting, reordering,
//! duplicating or editing a record or a log line breaks a digest or a link.
//! What a chain alone cannot show is that its *newest* entries were cut off
//! together with their records; keep a copy of the latest log line (or the
//! verify output) elsewhere if that matters.
//!
//! **Appends** hold an exclusive lock on `chain.lock` from reading the last
//! entry to replacing the log, so two runners sharing a state directory
//! take turns. The log is replaced atomically (a temporary file, fsync,
//! rename, fsync of the directory), so a runner killed at any point leaves
//! either the old log or the new one; temporary files it leaves behind are
//! ignored by `verify` and removed by the next append. A runner killed after
//! writing its record but before the log was replaced leaves a record the
//! chain does not list; `verify` reports it as such.
//!
//! Each append rewrites the log: linear in its length, which is fine for
//! the thousands of records a state directory typically holds.

use crate::attest::{self, Signer};
use crate::manifest::Sha256Digest;
use crate::record::{ChainLink, StepRecord};
use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};

/// The log's file name inside the records directory.
pub const LOG_FILE: &str = "chain.log";
/// The lock file's name inside the records directory.
pub const LOCK_FILE: &str = "chain.lock";

/// `prev` of the first entry.
pub fn genesis() -> Sha256Digest {
    Sha256Digest::from_bytes([0; 32])
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogEntry {
    /// Position, from 1.
    pub seq: u64,
    /// The run id (file name stem of the record).
    pub run: String,
    /// Digest of the record file.
    pub record: String,
    /// Digest of the envelope file, when the record was signed.
    pub envelope: Option<String>,
    /// Digest of the previous line.
    pub prev: String,
}

impl LogEntry {
    /// The line as written (no newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("entries serialize")
    }
}

/// A record appended to the chain.
#[derive(Debug, Clone)]
pub struct Sealed {
    /// The record file.
    pub record_path: PathBuf,
    /// The signed envelope, when there is a signer.
    pub envelope_path: Option<PathBuf>,
    /// The record's digest.
    pub record_digest: Sha256Digest,
}

/// The path of a run's record in `records_dir`.
pub fn record_path(records_dir: &Path, run_id: &str) -> PathBuf {
    records_dir.join(format!("{run_id}.json"))
}

/// The path of a run's signed envelope in `records_dir`.
pub fn envelope_path(records_dir: &Path, run_id: &str) -> PathBuf {
    records_dir.join(format!("{run_id}.dsse.json"))
}

/// Reads the log's raw lines (an absent log is empty).
pub fn read_lines(records_dir: &Path) -> io::Result<Vec<String>> {
    match std::fs::read(records_dir.join(LOG_FILE)) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_string)
            .collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Links `record` to the end of the chain in `records_dir`, writes it (and
/// its signed statement when `signer` is given), and appends the log entry,
/// all under the chain lock. Secret values are redacted from the record
/// bytes before anything is hashed, signed or written.
pub fn seal(
    records_dir: &Path,
    record: &mut StepRecord,
    redactor: &crate::secrets::Redactor,
    signer: Option<&Signer>,
) -> io::Result<Sealed> {
    crate::fsutil::create_private_dir(records_dir)?;
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(records_dir.join(LOCK_FILE))?;
    lock.lock()?;
    remove_stale_temporaries(records_dir);

    let log_path = records_dir.join(LOG_FILE);
    let old = match std::fs::read(&log_path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let last = String::from_utf8_lossy(&old)
        .lines()
        .last()
        .map(str::to_string);
    let (sequence, previous) = match &last {
        None => (1, genesis()),
        Some(line) => {
            let entry: LogEntry = serde_json::from_str(line).map_err(|e| {
                io::Error::other(format!(
                    "the last line of {} is not a chain entry ({e}); run `cordon verify` and repair the state directory before running more steps",
                    log_path.display()
                ))
            })?;
            (entry.seq + 1, Sha256Digest::of(line.as_bytes()))
        }
    };
    record.chain = Some(ChainLink {
        sequence,
        previous: previous.clone(),
    });

    let bytes = record.to_redacted_bytes(redactor);
    let record_digest = Sha256Digest::of(&bytes);
    let record_path = record_path(records_dir, &record.run_id);
    crate::fsutil::write_new(&record_path, &bytes)?;

    let mut envelope_digest = None;
    let mut envelope_file = None;
    if let Some(signer) = signer {
        let payload = attest::statement_bytes(&bytes).map_err(io::Error::other)?;
        let mut env = serde_json::to_vec_pretty(&signer.envelope(attest::PAYLOAD_TYPE, &payload))
            .map_err(io::Error::other)?;
        env.push(b'\n');
        let p = envelope_path(records_dir, &record.run_id);
        crate::fsutil::write_new(&p, &env)?;
        envelope_digest = Some(Sha256Digest::of(&env).to_string());
        envelope_file = Some(p);
    }

    let entry = LogEntry {
        seq: sequence,
        run: record.run_id.clone(),
        record: record_digest.to_string(),
        envelope: envelope_digest,
        prev: previous.to_string(),
    };
    let mut new = old;
    if !new.is_empty() && !new.ends_with(b"\n") {
        new.push(b'\n');
    }
    new.extend_from_slice(entry.to_line().as_bytes());
    new.push(b'\n');
    crate::fsutil::write_atomic(&log_path, &new)?;
    drop(lock);
    Ok(Sealed {
        record_path,
        envelope_path: envelope_file,
        record_digest,
    })
}

/// Removes temporary files a killed runner left in `records_dir`. Called
/// with the chain lock held, so no live writer owns them.
fn remove_stale_temporaries(records_dir: &Path) {
    let Ok(rd) = std::fs::read_dir(records_dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.contains(".tmp-") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
