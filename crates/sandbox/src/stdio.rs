//! The step's stdout and stderr: streamed to the user with the step name as
//! prefix, sanitized, redacted, captured up to a cap for the record, hashed.
//!
//! Every byte goes through [`StreamSanitizer`] first (escape sequences
//! removed, other controls written visibly), then through the
//! [`Redactor`], so a step can neither draw on the runner's terminal nor
//! split a secret value with escapes to get it past redaction; the capture
//! file, the terminal and the record's digest all see the same sanitized,
//! redacted bytes.
//!
//! Nothing here buffers without bound. Bytes beyond the cap are counted and
//! dropped, not stored; a partial line is held back only up to
//! [`MAX_LINE`] bytes (plus [`Redactor::longest`], so a value split across
//! two writes is still redacted). A complete line is held back too when its
//! end could be the start of an encoded value that the next line continues
//! (base64 wrapped over lines): it is shown once the next line rules that
//! out, or when the step ends.

use bytes::Bytes;
use cordon_core::sanitize::StreamSanitizer;
use cordon_manifest::manifest::Sha256Digest;
use cordon_secrets::Redactor;
use sha2::{Digest as _, Sha256};
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi_io::poll::Pollable;
use wasmtime_wasi_io::streams::{OutputStream, StreamError};

/// Longest partial line held back before it is emitted without a newline.
/// Bounds the memory a step that never prints `\n` can make us hold.
pub const MAX_LINE: usize = 64 * 1024;

/// Most bytes one `write` may hand us; WASI streams ask before writing.
const WRITE_BUDGET: usize = 64 * 1024;

/// Where a stream's lines go besides the capture file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    /// The runner's own stdout.
    Stdout,
    /// The runner's own stderr.
    Stderr,
    /// Nowhere (quiet runs, benchmarks).
    None,
}

pub use cordon_record::run::StreamSummary;

struct Inner {
    prefix: String,
    forward: Forward,
    redactor: Redactor,
    sanitizer: StreamSanitizer,
    pending: Vec<u8>,
    /// The log, created with the first byte the stream keeps: a step that
    /// writes nothing to a stream leaves no file (and, writing to neither,
    /// no run directory) behind.
    file: Option<File>,
    /// A descriptor held from before the step starts until the log exists,
    /// and given up for it if the process has no other: a step that holds
    /// every descriptor it can get cannot leave its stream without a log.
    reserve: Option<File>,
    log: Option<PathBuf>,
    /// The first failure to create or write the log; the capture then
    /// fails the run instead of leaving a log that its digest misstates.
    log_error: Option<std::io::Error>,
    cap: u64,
    captured: u64,
    total: u64,
    hasher: Sha256,
    truncated: bool,
    redacted: bool,
}

/// One captured stream, shared by every handle the guest opens to it.
#[derive(Clone)]
pub struct Capture(Arc<Mutex<Inner>>);

impl Capture {
    /// A stream labelled `prefix`, forwarded to `forward`, captured into
    /// `log` (when given) up to `cap` bytes. The log and its directory are
    /// created with the first byte kept; a descriptor is reserved for them
    /// now.
    pub fn new(
        prefix: String,
        forward: Forward,
        redactor: Redactor,
        log: Option<PathBuf>,
        cap: u64,
    ) -> std::io::Result<Self> {
        let reserve = match &log {
            Some(_) => Some(File::open("/dev/null")?),
            None => None,
        };
        Ok(Capture(Arc::new(Mutex::new(Inner {
            prefix,
            forward,
            redactor,
            sanitizer: StreamSanitizer::new(),
            pending: Vec::new(),
            file: None,
            reserve,
            log,
            log_error: None,
            cap,
            captured: 0,
            total: 0,
            hasher: Sha256::new(),
            truncated: false,
            redacted: false,
        }))))
    }

    /// Takes bytes the guest wrote.
    pub fn push(&self, data: &[u8]) {
        let mut inner = self.0.lock().unwrap_or_else(|p| p.into_inner());
        inner.push(data);
    }

    /// Emits whatever is held back and returns the summary; fails when
    /// the log could not be written in full.
    pub fn finish(&self) -> std::io::Result<StreamSummary> {
        let mut inner = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let Inner {
            sanitizer, pending, ..
        } = &mut *inner;
        sanitizer.finish(pending);
        let rest = std::mem::take(&mut inner.pending);
        if !rest.is_empty() {
            inner.emit(&rest);
        }
        if let Some(f) = inner.file.as_mut()
            && let Err(e) = f.flush()
        {
            inner.log_error.get_or_insert(e);
        }
        if let Some(e) = inner.log_error.take() {
            return Err(e);
        }
        Ok(StreamSummary {
            sha256: Sha256Digest::from_bytes(inner.hasher.clone().finalize().into()),
            bytes_written: inner.total,
            bytes_captured: inner.captured,
            truncated: inner.truncated,
            redacted: inner.redacted,
            escaped: inner.sanitizer.changed(),
            // Only a stream that kept something has a log.
            log: inner.file.as_ref().and(inner.log.clone()),
        })
    }
}

impl Inner {
    /// Appends kept bytes to the log; a failure is kept for
    /// [`Capture::finish`].
    fn log_bytes(&mut self, kept: &[u8]) {
        if self.log_error.is_some() {
            return;
        }
        if self.file.is_none()
            && let Some(path) = &self.log
        {
            let create = |path: &PathBuf| {
                path.parent()
                    .map_or(Ok(()), cordon_core::fsutil::create_private_dir)
                    .and_then(|()| File::create(path))
            };
            let created = match create(path) {
                // Out of descriptors, say (the step may hold them all):
                // the reserved one is for this.
                Err(_) if self.reserve.is_some() => {
                    self.reserve = None;
                    create(path)
                }
                other => other,
            };
            match created {
                Ok(f) => {
                    self.file = Some(f);
                    self.reserve = None;
                }
                Err(e) => {
                    self.log_error = Some(e);
                    return;
                }
            }
        }
        if let Some(f) = self.file.as_mut()
            && let Err(e) = f.write_all(kept)
        {
            self.log_error = Some(e);
        }
    }

    fn push(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        if self.truncated {
            return;
        }
        self.sanitizer.push(data, &mut self.pending);
        // Emit complete lines; hold back a partial line, but never more than
        // MAX_LINE bytes of it.
        let want = match self.pending.iter().rposition(|b| *b == b'\n') {
            Some(i) => i + 1,
            None if self.pending.len() > MAX_LINE => {
                self.pending.len() - self.redactor.longest().saturating_sub(1)
            }
            None => 0,
        };
        let mut cut = self.redactor.safe_cut(&self.pending, want);
        if cut < want && self.pending.len() <= MAX_LINE {
            // What may be the start of a value (a PEM line that the next
            // line continues) is held back with its whole line, so the
            // terminal never shows a line cut in two.
            cut = self.pending[..cut]
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |i| i + 1);
        }
        if cut > 0 {
            let chunk: Vec<u8> = self.pending.drain(..cut).collect();
            self.emit(&chunk);
        }
    }

    fn emit(&mut self, raw: &[u8]) {
        let red = self.redactor.redact(raw);
        if red.len() != raw.len() || *red != *raw {
            self.redacted = true;
        }
        let room = self.cap.saturating_sub(self.captured) as usize;
        let take = room.min(red.len());
        let kept = &red[..take];
        self.hasher.update(kept);
        self.captured += take as u64;
        if !kept.is_empty() {
            self.log_bytes(kept);
        }
        if self.forward != Forward::None && !kept.is_empty() {
            let mut text = String::new();
            let json = cordon_core::log::is_json();
            let stream = if self.forward == Forward::Stdout {
                "stdout"
            } else {
                "stderr"
            };
            for line in String::from_utf8_lossy(kept).split_inclusive('\n') {
                if json {
                    // One event per line, the bytes the plain view shows.
                    text.push_str(
                        &cordon_core::log::step_output_event(&self.prefix, stream, line)
                            .to_string(),
                    );
                    text.push('\n');
                } else {
                    text.push_str(&self.prefix);
                    text.push_str(line);
                }
            }
            if !text.ends_with('\n') {
                text.push('\n');
            }
            match self.forward {
                Forward::Stdout => {
                    let _ = std::io::stdout().lock().write_all(text.as_bytes());
                }
                Forward::Stderr => {
                    let _ = std::io::stderr().lock().write_all(text.as_bytes());
                }
                Forward::None => {}
            }
        }
        if take < red.len() {
            self.truncated = true;
            self.pending.clear();
            if self.forward != Forward::None {
                cordon_core::log::say(&format!(
                    "cordon: {}output cut at {} bytes (limit); the rest is counted, not kept",
                    self.prefix, self.cap
                ));
            }
        }
    }
}

/// The handle the guest writes through.
struct CaptureStream(Capture);

#[async_trait::async_trait]
impl Pollable for CaptureStream {
    async fn ready(&mut self) {}
}

impl OutputStream for CaptureStream {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.0.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(WRITE_BUDGET)
    }
}

impl tokio::io::AsyncWrite for CaptureStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.0.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        // The guest never learns whether the runner has a terminal.
        false
    }
}

impl StdoutStream for Capture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(CaptureStream(self.clone()))
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(CaptureStream(self.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cordon_secrets::{ResolvedSecret, SecretValue};

    fn redactor(value: &str) -> Redactor {
        Redactor::new(&[ResolvedSecret {
            name: "tok".into(),
            uses: Default::default(),
            provider: "env",
            version: None,
            credential: None,
            value: SecretValue::new(value.as_bytes().to_vec()),
        }])
    }

    #[test]
    fn caps_without_buffering_and_counts_everything() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("out.log");
        let c = Capture::new(
            "[s] ".into(),
            Forward::None,
            Redactor::default(),
            Some(log.clone()),
            10,
        )
        .unwrap();
        for _ in 0..1000 {
            c.push(b"0123456789\n");
        }
        let s = c.finish().unwrap();
        assert_eq!(s.bytes_written, 11_000);
        assert_eq!(s.bytes_captured, 10);
        assert!(s.truncated);
        assert_eq!(std::fs::read(&log).unwrap(), b"0123456789");
    }

    #[test]
    fn a_stream_that_keeps_nothing_leaves_no_log_or_directory() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("run").join("out.log");
        let capture = || {
            Capture::new(
                String::new(),
                Forward::None,
                Redactor::default(),
                Some(log.clone()),
                10,
            )
            .unwrap()
        };
        let s = capture().finish().unwrap();
        assert_eq!(s.log, None);
        assert!(!log.parent().unwrap().exists());
        let c = capture();
        c.push(b"x\n");
        assert_eq!(c.finish().unwrap().log.as_deref(), Some(log.as_path()));
        assert_eq!(std::fs::read(&log).unwrap(), b"x\n");
    }

    #[test]
    fn a_log_that_cannot_be_written_fails_the_capture() {
        // /dev/full takes no byte: the failure reaches `finish` instead of
        // leaving a log shorter than its recorded digest says.
        let c = Capture::new(
            String::new(),
            Forward::None,
            Redactor::default(),
            Some(PathBuf::from("/dev/full")),
            10,
        )
        .unwrap();
        c.push(b"x\n");
        assert!(c.finish().is_err());
    }

    #[test]
    fn redacts_values_split_across_writes() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("out.log");
        let c = Capture::new(
            String::new(),
            Forward::None,
            redactor("s3cr3t-v4lue"),
            Some(log.clone()),
            1 << 20,
        )
        .unwrap();
        c.push(b"token=s3cr");
        c.push(b"3t-v4");
        c.push(b"lue done\nno newline s3cr3t-");
        c.push(b"v4lue");
        let s = c.finish().unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(!text.contains("s3cr3t"), "{text}");
        assert_eq!(text, "token=[REDACTED:tok] done\nno newline [REDACTED:tok]");
        assert!(s.redacted);
    }

    #[test]
    fn long_lines_are_flushed_but_redaction_holds() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("out.log");
        let c = Capture::new(
            String::new(),
            Forward::None,
            redactor("XYZSECRET"),
            Some(log.clone()),
            1 << 30,
        )
        .unwrap();
        let mut big = vec![b'a'; MAX_LINE + 3];
        big.extend_from_slice(b"XYZS");
        c.push(&big);
        c.push(b"ECRET");
        c.finish().unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(!text.contains("XYZSECRET") && text.ends_with("[REDACTED:tok]"));
    }
}
