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
//! entry to writing the new one, so two runners sharing a state directory
//! take turns. The record (and its envelope) is written first, atomically
//! (an unnamed temporary file linked into place, see
//! `cordon_core::fsutil::write_new_unsynced_via`), and made durable (`syncfs` of the
//! file system); then the entry is appended to the log as one
//! newline-terminated line in one `write` on a file opened for appending,
//! and the log is fsynced. The cost of an append does not grow with the
//! log. Records that are sealed together ([`seal_batch`], the scheduler's
//! group commit) share the lock, the durability barrier and the log write.
//!
//! A runner killed at any point leaves a valid log: at worst its entry is a
//! final line without its newline, which readers ignore (only complete
//! lines are entries) and the next append cuts off before writing. Named
//! temporary files it leaves behind (in `records/.tmp/`, used where the
//! file system has no unnamed ones) are ignored by `verify` and
//! removed by the next runner's first append, which lists only that
//! directory: a first append costs the same however many records exist. A
//! runner killed after writing its record but before its entry was complete
//! leaves a record the chain does not list; `verify` reports it as such.

use crate::attest::{self, Signer};
use crate::record::{ChainLink, StepRecord};
use cordon_manifest::manifest::Sha256Digest;
use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};

/// A chain log line that does not hold: what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LineError(pub String);

/// The log's file name inside the records directory.
pub const LOG_FILE: &str = "chain.log";
/// The lock file's name inside the records directory.
pub const LOCK_FILE: &str = "chain.lock";
/// Where appends write their temporary files, inside the records
/// directory: sweeping a killed runner's leftovers lists only this, not
/// every record.
pub const TMP_DIR: &str = ".tmp";

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

/// Whether `id` is a run id as the runner makes them (and so a safe file
/// name stem in the records directory): 1 to 255 ASCII letters, digits and
/// `-_.:`, not starting with `.`, with no `..`. A run id read from the
/// state directory becomes a path only after this check.
pub fn is_run_id(id: &str) -> bool {
    (1..=255).contains(&id.len())
        && !id.starts_with('.')
        && !id.contains("..")
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Where each run id and each record digest of a chain was first seen:
/// the check that makes a chain a set of unique facts. A chain entry copied
/// to the head keeps its valid signature and (relinked) a valid link, so
/// only this tells the copy from a new run. One type for the local log and
/// the shared chain, so both say it the same way.
#[derive(Debug, Default)]
pub struct Uniqueness {
    runs: std::collections::HashMap<String, u64>,
    records: std::collections::HashMap<String, u64>,
}

impl Uniqueness {
    /// Notes that entry `at` holds run `run` with record digest `record`,
    /// and says, naming both places, when either was already seen.
    pub fn check(&mut self, at: u64, run: &str, record: &str) -> Option<String> {
        let shown = cordon_core::sanitize::escape_for_terminal;
        let run_first = *self.runs.entry(run.to_string()).or_insert(at);
        let record_first = *self.records.entry(record.to_string()).or_insert(at);
        if run_first != at {
            Some(format!(
                "run {} is already entry {run_first}: entry {at} duplicates it (duplicated; a run appears in a chain once)",
                shown(run)
            ))
        } else if record_first != at {
            Some(format!(
                "its record {} is already entry {record_first}: entry {at} duplicates it (duplicated; a record appears in a chain once)",
                shown(record)
            ))
        } else {
            None
        }
    }
}

impl LogEntry {
    /// Parses one log line (without its newline) and checks every field:
    /// `seq` from 1, `run` a run id ([`is_run_id`]), `record`, `envelope`
    /// and `prev` digests in the form `sha256:<64 lowercase hex>`. Never
    /// panics, whatever the line.
    pub fn parse(line: &str) -> Result<LogEntry, LineError> {
        Self::parse_message(line).map_err(LineError)
    }

    fn parse_message(line: &str) -> Result<LogEntry, String> {
        let entry: LogEntry = serde_json::from_str(line).map_err(|e| e.to_string())?;
        if entry.seq == 0 || entry.seq == u64::MAX {
            return Err(format!("sequence number {} is out of range", entry.seq));
        }
        if !is_run_id(&entry.run) {
            return Err(format!(
                "`{}` is not a run id",
                cordon_core::sanitize::escape_for_terminal(&entry.run)
            ));
        }
        let digest = |what: &str, d: &str| {
            Sha256Digest::parse(d)
                .map(|_| ())
                .map_err(|_| format!("its {what} digest is not `sha256:` and 64 hex characters"))
        };
        digest("record", &entry.record)?;
        if let Some(e) = &entry.envelope {
            digest("envelope", e)?;
        }
        digest("prev", &entry.prev)?;
        Ok(entry)
    }

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

/// Reads the log's entries as raw lines (an absent log is empty). Only
/// newline-terminated lines count: a final line without its newline is an
/// append that never finished (its runner was killed, or is writing it
/// right now) and is not an entry.
pub fn read_lines(records_dir: &Path) -> io::Result<Vec<String>> {
    match std::fs::read(records_dir.join(LOG_FILE)) {
        Ok(bytes) => {
            let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            Ok(String::from_utf8_lossy(&bytes[..complete])
                .lines()
                .map(str::to_string)
                .collect())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The last complete line of `log` (without its newline) and the length of
/// the log's complete part, up to and including its last newline. Reads
/// backwards from the end, so the cost does not grow with the log.
fn last_entry(log: &std::fs::File) -> io::Result<(Option<String>, u64)> {
    use std::os::unix::fs::FileExt;
    let len = log.metadata()?.len();
    let mut pos = len;
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let chunk = pos.min(4096);
        pos -= chunk;
        let mut c = vec![0u8; chunk as usize];
        log.read_exact_at(&mut c, pos)?;
        c.extend_from_slice(&buf);
        buf = c;
        match buf.iter().rposition(|&b| b == b'\n') {
            Some(end) => {
                let complete = pos + end as u64 + 1;
                let before = &buf[..end];
                match before.iter().rposition(|&b| b == b'\n') {
                    Some(start) => {
                        let line = String::from_utf8_lossy(&before[start + 1..]).into_owned();
                        return Ok((Some(line), complete));
                    }
                    None if pos == 0 => {
                        return Ok((Some(String::from_utf8_lossy(before).into_owned()), complete));
                    }
                    None => {}
                }
            }
            None if pos == 0 => return Ok((None, 0)),
            None => {}
        }
    }
}

/// Links `record` to the end of the chain in `records_dir`, writes it (and
/// its signed statement when `signer` is given), and appends the log entry,
/// all under the chain lock. Secret values are redacted from the typed
/// record before anything is hashed, signed or written.
pub fn seal(
    records_dir: &Path,
    record: &mut StepRecord,
    redactor: &dyn cordon_core::redact::Redact,
    signer: Option<&Signer>,
) -> io::Result<Sealed> {
    seal_batch(records_dir, &mut [ToSeal { record, redactor }], signer)
        .pop()
        .expect("one result per record")
}

/// One step record of a batch for [`seal_batch`], with the redactor of the
/// secrets its step saw.
pub struct ToSeal<'a> {
    /// The record; its chain link and signer are filled in.
    pub record: &'a mut StepRecord,
    /// Redacts the values of the step's secrets.
    pub redactor: &'a dyn cordon_core::redact::Redact,
}

/// Seals every record of `batch`, in order, like [`seal`], with one chain
/// lock and one durability barrier for the whole batch instead of one per
/// record: this is the group commit that lets steps finishing close
/// together share one flush. What a crash can lose does not change: no
/// log line is written before every file it lists is durable, and no
/// record counts as sealed before its log line is. One result per record;
/// a record that cannot be written fails with the ones after it, and the
/// ones before it are sealed.
pub fn seal_batch(
    records_dir: &Path,
    batch: &mut [ToSeal<'_>],
    signer: Option<&Signer>,
) -> Vec<io::Result<Sealed>> {
    let builds = batch
        .iter_mut()
        .map(|item| {
            let run_id = item.record.run_id.clone();
            let build: Build<'_> = Box::new(move |link| {
                let record = &mut *item.record;
                record.chain = Some(link);
                record.signed_by = signer.map(|s| s.signed_by().clone());
                // Values are redacted in the typed record, never in its
                // serialized text: nothing a secret holds can corrupt the
                // document.
                record.redact_values(item.redactor);
                let bytes = record.to_bytes();
                let payload = attest::statement_bytes(&bytes).map_err(io::Error::other)?;
                Ok((bytes, attest::PAYLOAD_TYPE, payload))
            });
            (run_id, build)
        })
        .collect();
    append(records_dir, signer, builds)
}

/// The DSSE payload type of a signed repair record: the record's own bytes.
pub const REPAIR_PAYLOAD_TYPE: &str = "application/vnd.cordon.repair-record+json";

/// Appends what `cordon repair` did to the chain, signed (the envelope's
/// payload is the record file itself), so a repair is as visible and as
/// tamper-evident as the runs it completed.
pub fn seal_repair(
    records_dir: &Path,
    record: &mut crate::record::RepairRecord,
    signer: Option<&Signer>,
) -> io::Result<Sealed> {
    let run_id = record.run_id.clone();
    seal_own_bytes(
        records_dir,
        run_id,
        REPAIR_PAYLOAD_TYPE,
        signer,
        |link, signed_by| {
            record.chain = Some(link);
            record.signed_by = signed_by;
            record.to_bytes()
        },
    )
}

/// Appends one record whose envelope signs the record file itself (a
/// repair or a restore record): `place` fills in its chain link and signer
/// and returns its bytes.
fn seal_own_bytes(
    records_dir: &Path,
    run_id: String,
    payload_type: &'static str,
    signer: Option<&Signer>,
    place: impl FnOnce(ChainLink, Option<crate::attest::SignedBy>) -> Vec<u8>,
) -> io::Result<Sealed> {
    let build: Build<'_> = Box::new(move |link| {
        let bytes = place(link, signer.map(|s| s.signed_by().clone()));
        Ok((bytes.clone(), payload_type, bytes))
    });
    append(records_dir, signer, vec![(run_id, build)])
        .pop()
        .expect("one result per record")
}

/// The DSSE payload type of a signed restore record: the record's own bytes.
pub const RESTORE_PAYLOAD_TYPE: &str = "application/vnd.cordon.restore-record+json";

/// Appends what `cordon restore` published to the chain, signed (the
/// envelope's payload is the record file itself), so a rollback is as
/// visible as the runs it rolled back, and `verify` judges the restored
/// outputs against it.
pub fn seal_restore(
    records_dir: &Path,
    record: &mut crate::record::RestoreRecord,
    signer: Option<&Signer>,
) -> io::Result<Sealed> {
    let run_id = record.run_id.clone();
    seal_own_bytes(
        records_dir,
        run_id,
        RESTORE_PAYLOAD_TYPE,
        signer,
        |link, signed_by| {
            record.chain = Some(link);
            record.signed_by = signed_by;
            record.to_bytes()
        },
    )
}

/// Given its place in the chain, a record's bytes with what to sign
/// (payload type and payload).
type Build<'a> = Box<dyn FnOnce(ChainLink) -> io::Result<(Vec<u8>, &'static str, Vec<u8>)> + 'a>;

/// A record whose files are written (not yet durable) and whose log line
/// is ready.
struct Written {
    sealed: Sealed,
    line: String,
}

/// The one way anything enters the chain: under the chain lock, each build
/// gets its entry's place and returns the record's bytes with what to sign;
/// every file is written, then all of them are made durable at once, and
/// only then are the log lines that list them appended (one write) and the
/// log fsynced.
fn append(
    records_dir: &Path,
    signer: Option<&Signer>,
    builds: Vec<(String, Build<'_>)>,
) -> Vec<io::Result<Sealed>> {
    let n = builds.len();
    let fail_all = |e: io::Error| {
        (0..n)
            .map(|_| Err(io::Error::new(e.kind(), e.to_string())))
            .collect()
    };
    if let Err(e) = cordon_core::fsutil::create_private_dir(&records_dir.join(TMP_DIR)) {
        return fail_all(e);
    }
    let lock = match OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(records_dir.join(LOCK_FILE))
        .and_then(|f| f.lock().map(|()| f))
    {
        Ok(lock) => lock,
        Err(e) => return fail_all(e),
    };
    remove_stale_temporaries(records_dir);

    let log_path = records_dir.join(LOG_FILE);
    let created = !log_path.exists();
    let opened = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(&log_path)
        .and_then(|log| last_entry(&log).map(|last| (log, last)));
    let (mut log, (last, complete)) = match opened {
        Ok(o) => o,
        Err(e) => return fail_all(e),
    };
    let (mut sequence, mut previous) = match &last {
        None => (1, genesis()),
        Some(line) => match LogEntry::parse(line) {
            Ok(entry) => (entry.seq + 1, Sha256Digest::of(line.as_bytes())),
            Err(e) => {
                return fail_all(io::Error::other(format!(
                    "the last line of {} is not a chain entry ({e}); run `cordon verify` and repair the state directory before running more steps",
                    log_path.display()
                )));
            }
        },
    };

    // Every file of the batch, written but not yet durable; the first
    // failure ends the batch there.
    let mut written: Vec<Written> = Vec::with_capacity(n);
    let mut failure: Option<io::Error> = None;
    for (run_id, build) in builds {
        match write_one(records_dir, &run_id, signer, build, sequence, &previous) {
            Ok(w) => {
                previous = Sha256Digest::of(w.line.as_bytes());
                sequence += 1;
                written.push(w);
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    cordon_core::fault::point("batch-written");
    let files: Vec<&Path> = written
        .iter()
        .flat_map(|w| {
            std::iter::once(w.sealed.record_path.as_path()).chain(w.sealed.envelope_path.as_deref())
        })
        .collect();
    // Every file durable before the log lines that list them are written.
    let mut lines = Vec::new();
    for w in &written {
        lines.extend_from_slice(w.line.as_bytes());
        lines.push(b'\n');
    }
    let appended = if written.is_empty() {
        Ok(())
    } else {
        cordon_core::fsutil::sync_filesystem(records_dir, &files).and_then(|()| {
            cordon_core::fault::point("record-written");
            // An unfinished line left by a killed runner is not an entry;
            // cut it off so these start on a line of their own.
            if log.metadata()?.len() != complete {
                log.set_len(complete)?;
            }
            // One write of every line on an append-mode file: nothing else
            // can land in the middle, and a kill leaves at most a final
            // line without its newline.
            std::io::Write::write_all(&mut log, &lines)?;
            log.sync_all()?;
            if created {
                cordon_core::fsutil::sync_dir(records_dir)?;
            }
            Ok(())
        })
    };
    drop(lock);
    let mut results: Vec<io::Result<Sealed>> = match appended {
        Ok(()) => written.into_iter().map(|w| Ok(w.sealed)).collect(),
        Err(e) => written
            .iter()
            .map(|_| Err(io::Error::new(e.kind(), e.to_string())))
            .collect(),
    };
    if let Some(e) = failure {
        results.push(Err(io::Error::new(e.kind(), e.to_string())));
    }
    while results.len() < n {
        results.push(Err(io::Error::other(
            "not written: an earlier record of the same batch could not be written",
        )));
    }
    results
}

/// Builds one record at (`sequence`, `previous`), signs it, and writes its
/// files without making them durable.
fn write_one(
    records_dir: &Path,
    run_id: &str,
    signer: Option<&Signer>,
    build: Build<'_>,
    sequence: u64,
    previous: &Sha256Digest,
) -> io::Result<Written> {
    let (bytes, payload_type, payload) = build(ChainLink {
        sequence,
        previous: previous.clone(),
    })?;
    let record_digest = Sha256Digest::of(&bytes);
    let record_path = record_path(records_dir, run_id);

    let mut envelope_digest = None;
    let mut envelope_file = None;
    let mut envelope_bytes = Vec::new();
    if let Some(signer) = signer {
        envelope_bytes = serde_json::to_vec_pretty(
            &signer
                .envelope(payload_type, &payload)
                .map_err(|e| io::Error::other(format!("cannot sign the record: {e}")))?,
        )
        .map_err(io::Error::other)?;
        envelope_bytes.push(b'\n');
        envelope_digest = Some(Sha256Digest::of(&envelope_bytes).to_string());
        envelope_file = Some(envelope_path(records_dir, run_id));
    }
    let mut files: Vec<(&Path, &[u8])> = vec![(&record_path, &bytes)];
    if let Some(p) = &envelope_file {
        files.push((p, &envelope_bytes));
    }
    cordon_core::fsutil::write_new_unsynced_via(&records_dir.join(TMP_DIR), &files)?;
    let entry = LogEntry {
        seq: sequence,
        run: run_id.to_string(),
        record: record_digest.to_string(),
        envelope: envelope_digest,
        prev: previous.to_string(),
    };
    Ok(Written {
        sealed: Sealed {
            record_path,
            envelope_path: envelope_file,
            record_digest,
        },
        line: entry.to_line(),
    })
}

/// Removes temporary files a killed runner left in `records_dir`'s
/// temporary directory. Called with the chain lock held, so no live writer
/// owns them; once per directory per process, since a killed runner's
/// leftovers predate this process. (Runners before the temporary directory
/// left theirs beside the records, as `.…tmp-…` names that `verify`
/// ignores.)
fn remove_stale_temporaries(records_dir: &Path) {
    static SWEPT: std::sync::Mutex<Vec<std::path::PathBuf>> = std::sync::Mutex::new(Vec::new());
    {
        let mut swept = SWEPT.lock().unwrap_or_else(|p| p.into_inner());
        if swept.iter().any(|d| d == records_dir) {
            return;
        }
        swept.push(records_dir.to_path_buf());
    }
    let Ok(rd) = std::fs::read_dir(records_dir.join(TMP_DIR)) else {
        return;
    };
    for e in rd.flatten() {
        let _ = std::fs::remove_file(e.path());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run id or a record digest seen twice is named with both places;
    /// distinct entries pass.
    #[test]
    fn a_replayed_run_or_record_names_both_places() {
        let mut u = Uniqueness::default();
        assert_eq!(u.check(1, "run-a", "sha256:1"), None);
        assert_eq!(u.check(2, "run-b", "sha256:2"), None);
        let again = u.check(3, "run-a", "sha256:1").unwrap();
        assert!(
            again.contains("run run-a is already entry 1: entry 3 duplicates it"),
            "{again}"
        );
        let record = u.check(4, "run-c", "sha256:2").unwrap();
        assert!(
            record.contains("is already entry 2: entry 4 duplicates it"),
            "{record}"
        );
    }

    /// The last entry is found across read-chunk boundaries, with and
    /// without an unfinished final line, and `read_lines` agrees.
    #[test]
    fn the_last_complete_line_is_found_from_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOG_FILE);
        let open = || std::fs::File::open(&path).unwrap();
        std::fs::write(&path, b"").unwrap();
        assert_eq!(last_entry(&open()).unwrap(), (None, 0));
        std::fs::write(&path, b"half an ent").unwrap();
        assert_eq!(last_entry(&open()).unwrap(), (None, 0));
        assert!(read_lines(dir.path()).unwrap().is_empty());

        // Lines long enough that several straddle the 4 KiB chunks.
        let lines: Vec<String> = (0..50)
            .map(|i| format!("{{\"seq\":{i},\"pad\":\"{}\"}}", "x".repeat(i * 37)))
            .collect();
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(&path, &text).unwrap();
        let (last, complete) = last_entry(&open()).unwrap();
        assert_eq!(last.as_deref(), Some(lines[49].as_str()));
        assert_eq!(complete, text.len() as u64);

        let torn = format!("{text}{{\"seq\":50,\"pa");
        std::fs::write(&path, &torn).unwrap();
        let (last, complete) = last_entry(&open()).unwrap();
        assert_eq!(last.as_deref(), Some(lines[49].as_str()));
        assert_eq!(complete, text.len() as u64, "the torn tail is not counted");
        assert_eq!(read_lines(dir.path()).unwrap(), lines);

        std::fs::write(&path, format!("{}\n", lines[3])).unwrap();
        assert_eq!(
            last_entry(&open()).unwrap(),
            (Some(lines[3].clone()), lines[3].len() as u64 + 1)
        );
    }

    mod parse {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_line_parses_or_fails_without_panicking(line in "\\PC{0,200}") {
                let _ = LogEntry::parse(&line);
            }

            #[test]
            fn an_accepted_line_has_checked_fields_and_round_trips(
                seq in any::<u64>(),
                run in "\\PC{0,10}|[0-9T.Z]{4,12}-s-[0-9a-f]{8}|\\.\\./x",
                record in "\\PC{0,6}|sha256:[0-9a-f]{64}|sha256:[0-9a-f]{63}é",
                envelope in proptest::option::of("sha256:[0-9a-f]{64}|x"),
                prev in "sha256:[0-9a-f]{64}|sha256:",
            ) {
                let line = serde_json::json!({
                    "seq": seq, "run": run, "record": record, "envelope": envelope, "prev": prev,
                }).to_string();
                if let Ok(e) = LogEntry::parse(&line) {
                    prop_assert!(e.seq >= 1);
                    prop_assert!(is_run_id(&e.run));
                    prop_assert!(!e.run.contains('/'));
                    prop_assert!(Sha256Digest::parse(&e.record).is_ok());
                    prop_assert!(Sha256Digest::parse(&e.prev).is_ok());
                    prop_assert_eq!(LogEntry::parse(&e.to_line()), Ok(e));
                }
            }
        }
    }
}
