//! Secret values, where they come from, and keeping them out of every output.
//!
//! This crate owns secret *values*, and must never print one, write one to
//! a file other than its encrypted store, or install a signal handler.
//! Everything else handles names: the plan lists which secrets a step is
//! granted, the sandbox hands the guest opaque handles and asks this crate
//! to use a value on its behalf, and the record stores names, providers and
//! versions, never values.
//!
//! Values live in [`SecretValue`], which zeroes its memory on drop and whose
//! `Debug` never prints the bytes, so a stray `{:?}` or a panic message
//! cannot leak one. A [`Redactor`] scrubs values (and the encodings a step
//! is likely to publish by accident: hex, base64 wrapped or not,
//! percent-encoding, JSON escapes, UTF-16) out of anything the step prints
//! before it reaches a terminal, a log file or a record, and finds them in
//! output files; [`refuse_short_values`] refuses a value too short for that
//! before any step runs.
//!
//! Providers, one per environment (`[env.NAME.secrets]` in `cordon.toml`):
//!
//! - [`local`]: an encrypted store per environment whose key file lives
//!   outside the repository. The default, so a workspace works with no
//!   server.
//! - [`env`](mod@env): `CORDON_SECRET_<NAME>` from the runner's own environment, the
//!   way CI systems inject secrets. Weaker: anything else in that
//!   environment can read it.
//! - [`vault`]: HashiCorp Vault / OpenBao KV v2 through an AppRole login
//!   whose token lives only as long as the run.
//!
//! [`resolve`] reads exactly the secrets a plan grants, before any step
//! runs; [`Resolution::finish`] ends the provider's session (for `vault`,
//! revokes the token).

#![deny(unsafe_code)]
#![deny(missing_docs)]

#[macro_use]
extern crate cordon_core;

pub mod env;
pub mod local;
pub mod value;
pub mod vault;

use cordon_manifest::config::{EnvConfig, ProviderKind};
use cordon_manifest::manifest::{SecretGrant, SecretUse};
use memchr::memmem;
use std::borrow::Cow;
use std::fmt;
use zeroize::Zeroizing;

pub use env::env_var_for;
pub use value::{KeyFormError, Provider, ResolvedSecret, SecretError, SecretValue};

/// The secrets of one run, and the provider session they came from.
pub struct Resolution {
    /// The granted secrets with their values.
    pub secrets: Vec<ResolvedSecret>,
    provider: Option<Box<dyn Provider>>,
}

impl fmt::Debug for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolution")
            .field("secrets", &self.secrets)
            .field("provider", &self.provider.as_ref().map(|p| p.name()))
            .finish()
    }
}

impl Resolution {
    /// Ends the provider session (revokes a vault token). Dropping a
    /// `Resolution` does the same, silently; call this to see failures.
    pub fn finish(&mut self) -> Result<(), SecretError> {
        match self.provider.take() {
            Some(mut p) => p.close(),
            None => Ok(()),
        }
    }
}

/// Opens `env`'s provider and reads every secret in `grants`, before any
/// step runs. A plan without secrets touches no provider at all (no key
/// file, no server).
pub fn resolve(env: &EnvConfig, grants: &[SecretGrant]) -> Result<Resolution, SecretError> {
    if grants.is_empty() {
        return Ok(Resolution {
            secrets: Vec::new(),
            provider: None,
        });
    }
    let mut provider = open_provider(env, grants)?;
    match provider.resolve(grants) {
        Ok(secrets) => Ok(Resolution {
            secrets,
            provider: Some(provider),
        }),
        Err(e) => {
            // End the session now; the caller never sees it.
            let _ = provider.close();
            Err(e)
        }
    }
}

/// `env`'s provider, logged in for `grants` (a vault session starts here).
fn open_provider(
    env: &EnvConfig,
    grants: &[SecretGrant],
) -> Result<Box<dyn Provider>, SecretError> {
    Ok(match env.secrets.provider {
        ProviderKind::Local => Box::new(local::LocalProvider::open(env)?),
        ProviderKind::Env => Box::new(env::EnvProvider::new(&env.name)),
        ProviderKind::Vault => Box::new(vault::VaultProvider::login(env, grants)?),
    })
}

/// The secrets of every step of a run, read in one provider session.
#[derive(Debug)]
pub struct StepSecrets {
    /// The session; [`Resolution::finish`] ends it when the run is over.
    pub resolution: Resolution,
    /// For each step, in order, exactly its own grants (names and uses)
    /// with their values.
    pub steps: Vec<Vec<ResolvedSecret>>,
}

/// Every problem that keeps a run's secrets from being read, each with its
/// own `fix:` line: a user who is missing three secrets learns all three
/// (and the three `cordon secret set` lines) from one attempt, the way a
/// manifest's errors are all reported at once. Shown as one `error:` per
/// problem.
#[derive(Debug)]
pub struct SecretErrors(pub Vec<SecretError>);

impl fmt::Display for SecretErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text: Vec<String> = self.0.iter().map(|e| e.to_string()).collect();
        f.write_str(&text.join("\nerror: "))
    }
}

impl std::error::Error for SecretErrors {}

impl From<SecretError> for SecretErrors {
    fn from(e: SecretError) -> Self {
        SecretErrors(vec![e])
    }
}

/// Reads the secrets of several steps at once: the union of their grants
/// (by name) is read once, before any step runs, so a pipeline opens one
/// provider session; each step then gets exactly its own grants with those
/// values. A value too short to be redacted reliably is refused for any
/// step that may see it (see [`refuse_short_values`]).
///
/// `steps` are `(step name, grants)`. When anything cannot be read, every
/// problem is reported, not the first: each secret the provider lacks,
/// each value too short, in the order the steps grant them. With more than
/// one step, each problem names the steps granted that secret. A provider
/// that cannot be opened at all (no key, a failed login) is one problem.
pub fn resolve_steps(
    env: &EnvConfig,
    steps: &[(&str, &[SecretGrant])],
) -> Result<StepSecrets, SecretErrors> {
    let mut union: Vec<SecretGrant> = Vec::new();
    for g in steps.iter().flat_map(|(_, grants)| grants.iter()) {
        if !union.iter().any(|u| u.name == g.name) {
            union.push(g.clone());
        }
    }
    // Which steps a secret is granted to, as a problem names them.
    let granted_to = |name: &str| -> Option<String> {
        if steps.len() < 2 {
            return None;
        }
        let names: Vec<String> = steps
            .iter()
            .filter(|(_, grants)| grants.iter().any(|g| g.name == name))
            .map(|(step, _)| format!("`{step}`"))
            .collect();
        Some(format!(
            "{} {}",
            if names.len() == 1 { "step" } else { "steps" },
            names.join(", ")
        ))
    };
    let mut resolution = if union.is_empty() {
        Resolution {
            secrets: Vec::new(),
            provider: None,
        }
    } else {
        let mut provider = open_provider(env, &union)?;
        match provider.resolve(&union) {
            Ok(secrets) => Resolution {
                secrets,
                provider: Some(provider),
            },
            Err(first) => {
                // Ask again one secret at a time, in the same session, to
                // learn every one that is missing; then end the session.
                let failed: Vec<(&str, SecretError)> = union
                    .iter()
                    .filter_map(|g| {
                        let e = provider.resolve(std::slice::from_ref(g)).err()?;
                        Some((g.name.as_str(), e))
                    })
                    .collect();
                let _ = provider.close();
                // A problem every failed secret shares (a store that cannot
                // be opened) is the provider's: shown once, for no step.
                let shared = failed.len() > 1
                    && failed.iter().all(|(_, e)| e.message == failed[0].1.message);
                let mut problems: Vec<SecretError> = Vec::new();
                for (name, mut e) in failed {
                    if !shared && let Some(steps) = granted_to(name) {
                        e.message = format!("{steps}: {}", e.message);
                    }
                    problems.push(e);
                    if shared {
                        break;
                    }
                }
                if problems.is_empty() {
                    // The provider failed as a whole, not for one secret.
                    problems.push(first);
                }
                return Err(SecretErrors(problems));
            }
        }
    };
    let values = std::mem::take(&mut resolution.secrets);
    let per_step: Vec<Vec<ResolvedSecret>> = steps
        .iter()
        .map(|(_, grants)| {
            grants
                .iter()
                .filter_map(|g| {
                    values
                        .iter()
                        .find(|v| v.name == g.name)
                        .map(|v| ResolvedSecret {
                            uses: g.uses.clone(),
                            ..v.clone()
                        })
                })
                .collect()
        })
        .collect();
    let mut problems: Vec<SecretError> = Vec::new();
    for ((step, _), secrets) in steps.iter().zip(&per_step) {
        for s in secrets {
            if let Err(mut e) = refuse_short_values(&env.name, std::slice::from_ref(s)) {
                if steps.len() > 1 {
                    e.message = format!("step `{step}`: {}", e.message);
                }
                problems.push(e);
            }
        }
    }
    if !problems.is_empty() {
        let _ = resolution.finish();
        return Err(SecretErrors(problems));
    }
    Ok(StepSecrets {
        resolution,
        steps: per_step,
    })
}

/// Values shorter than this are redacted only as they are, not in their
/// encoded forms: the encoding of a few bytes is a handful of characters
/// that ordinary text contains by chance, and mangling every such run would
/// make logs unreadable without protecting anything. For the same reason a
/// value this short cannot be granted for a use that shows it to the step
/// (see [`refuse_short_values`]).
pub const MIN_ENCODED_REDACTION: usize = 8;

/// Longest piece of text the escaped view decodes into bytes of a value:
/// a UTF-16 surrogate pair written as two JSON escapes (`\ud83d\ude00`).
/// Part of the bound [`Redactor::longest`] promises.
const MAX_ESCAPE: usize = 12;

/// Most decoded control bytes the escaped view drops between two bytes of
/// a value and still joins them: a line break (`\r\n`, PEM and MIME
/// wrapping), a NUL of UTF-16, a control the sanitizer wrote visibly. More
/// than this ends the run, so a match always spans a bounded stretch of the
/// text ([`Redactor::longest`]); a step that puts more between the bytes is
/// transforming the value on purpose, which no pattern check can undo.
const MAX_DROPPED: usize = 8;

/// Where the escaped view puts a run of more than [`MAX_DROPPED`] dropped
/// bytes. No needle of that view holds it (their control bytes are dropped
/// too), so no match crosses it.
const BARRIER: u8 = 0;

/// A form of a value, and whose value it is.
#[derive(Clone)]
struct Needle {
    bytes: Zeroizing<Vec<u8>>,
    secret: usize,
}

/// How the text is read before the needles of that reading are searched.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum View {
    /// As it is.
    Plain,
    /// Every `%XX` decoded (URLs, form bodies, either case of hex).
    Percent,
    /// Backslash escapes decoded (JSON `\uXXXX` and `\"`, Rust `\u{…}`,
    /// C and Python `\xNN`, and the sanitizer's own `\xNN`), then control
    /// bytes, C1 controls and bidirectional controls dropped (line breaks
    /// of wrapped base64, NULs of UTF-16, interleaved controls).
    Escaped,
}

const VIEWS: [View; 3] = [View::Plain, View::Percent, View::Escaped];

/// A match, as a byte range of the scanned text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    start: usize,
    end: usize,
    secret: usize,
}

/// Finds secret values, raw or in the encodings a step is likely to
/// publish by accident, and replaces each occurrence with
/// `[REDACTED:<name>]`.
///
/// For a value of [`MIN_ENCODED_REDACTION`] bytes or more it finds:
/// the value; its hex form (either case); its base64 form (standard and
/// URL-safe alphabets, at each of the three offsets it can have in a longer
/// encoding), also wrapped over lines (`\n` or `\r\n`, any width);
/// percent-encoding of every byte or only some (either case); the body of a
/// JSON string (`\uXXXX` with surrogate pairs, `\"`, `\\`, `\n`, …) and other
/// backslash escapes (`\xNN`, `\u{…}`); UTF-16 in both byte orders; and,
/// for a value that is not UTF-8, the same forms of its Latin-1 reading.
/// A value with control characters between its bytes (at most
/// [`MAX_DROPPED`] in a row) is found too. A shorter value is found only
/// as it is. Deliberate transforms (XOR, reversal, splitting, junk between
/// the bytes) are beyond any pattern check.
///
/// Every non-empty value is redacted, however short: a mangled log line is a
/// smaller harm than a leaked credential.
#[derive(Clone, Default)]
pub struct Redactor {
    /// `[REDACTED:<name>]` per secret.
    replacements: Vec<Vec<u8>>,
    /// Per view (in [`VIEWS`] order), the forms searched in it. They are
    /// secrets themselves, so they are zeroed when the redactor is dropped.
    needles: [Vec<Needle>; 3],
    /// See [`Redactor::longest`].
    longest: usize,
}

/// The record crate redacts through this seam, without seeing the values.
impl cordon_core::redact::Redact for Redactor {
    fn is_empty(&self) -> bool {
        Redactor::is_empty(self)
    }
    fn redact_str(&self, text: &str) -> String {
        Redactor::redact_str(self, text)
    }
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} values)", self.replacements.len())
    }
}

impl Redactor {
    /// A redactor for the values of `secrets`.
    pub fn new(secrets: &[ResolvedSecret]) -> Self {
        let mut r = Redactor::default();
        for s in secrets {
            let value = s.value.expose();
            if value.is_empty() {
                continue;
            }
            let secret = r.replacements.len();
            r.replacements
                .push(format!("[REDACTED:{}]", s.name).into_bytes());
            let mut add = |view: View, form: Vec<u8>, always: bool| {
                let form = Zeroizing::new(form);
                if form.is_empty() || (!always && form.len() < MIN_ENCODED_REDACTION) {
                    return;
                }
                let list = &mut r.needles[view as usize];
                if !list.iter().any(|n| n.bytes == form) {
                    list.push(Needle {
                        bytes: form,
                        secret,
                    });
                }
            };
            add(View::Plain, value.to_vec(), true);
            if value.len() < MIN_ENCODED_REDACTION {
                continue;
            }
            // The text a program would have: the value if it is UTF-8, else
            // its Latin-1 reading (what a JSON or UTF-16 encoder is handed
            // after a lossless decode).
            let latin1: Option<Zeroizing<Vec<u8>>> =
                std::str::from_utf8(value).is_err().then(|| {
                    Zeroizing::new(
                        value
                            .iter()
                            .map(|&b| char::from(b))
                            .collect::<String>()
                            .into_bytes(),
                    )
                });
            let text: &[u8] = latin1.as_deref().map_or(value, |l| l.as_slice());
            for form in encoded_forms(value) {
                add(View::Plain, form.to_vec(), false);
                add(View::Escaped, form.to_vec(), false);
            }
            let units: Vec<u16> = String::from_utf8_lossy(text).encode_utf16().collect();
            add(
                View::Plain,
                units.iter().flat_map(|u| u.to_le_bytes()).collect(),
                false,
            );
            add(
                View::Plain,
                units.iter().flat_map(|u| u.to_be_bytes()).collect(),
                false,
            );
            add(View::Percent, value.to_vec(), false);
            for base in [Some(value), latin1.as_deref().map(|l| l.as_slice())]
                .into_iter()
                .flatten()
            {
                add(View::Plain, base.to_vec(), false);
                let dropped = escaped_view(base, false, true).0;
                if !dropped.contains(&BARRIER) {
                    add(View::Escaped, dropped, false);
                }
                // As the sanitizer shows it, then read back: what a value
                // printed raw looks like in the escaped view of a stream.
                let shown = cordon_core::sanitize::StreamSanitizer::sanitize(base).0;
                let read_back = escaped_view(&shown, true, true).0;
                if !read_back.contains(&BARRIER) {
                    add(View::Escaped, read_back, false);
                }
            }
        }
        for list in &mut r.needles {
            list.sort_by_key(|n| std::cmp::Reverse(n.bytes.len()));
        }
        r.longest = VIEWS
            .iter()
            .flat_map(|&v| {
                r.needles[v as usize]
                    .iter()
                    .map(move |n| span_bound(v, n.bytes.len()))
            })
            .max()
            .unwrap_or(0);
        r
    }

    /// Whether there is nothing to redact.
    pub fn is_empty(&self) -> bool {
        self.replacements.is_empty()
    }

    /// The longest byte span any form the redactor detects can occupy in
    /// the scanned text. A caller that scans a stream in chunks overlaps
    /// them by this many bytes minus one, so every occurrence lies whole in
    /// some chunk. Encoded forms make it a multiple of the value's length
    /// (a form read through escapes, with line breaks between its bytes,
    /// can take [`MAX_ESCAPE`] bytes per byte plus what may lie between).
    pub fn longest(&self) -> usize {
        self.longest
    }

    /// The largest cut point `c <= want` such that no occurrence of a value,
    /// and no prefix of a value that later bytes could complete, straddles
    /// `c`. A streaming caller emits `redact(&data[..c])` and keeps the rest,
    /// so a value split across writes is still caught.
    pub fn safe_cut(&self, data: &[u8], want: usize) -> usize {
        let mut c = want.min(data.len());
        if self.is_empty() || c == 0 {
            return c;
        }
        // An escape at the very end that more bytes could complete.
        let open_escape = (data.len().saturating_sub(MAX_ESCAPE)..data.len())
            .find(|&q| matches!(data[q], b'\\' | b'%') && could_continue(&data[q..]));
        if let Some(q) = open_escape {
            c = c.min(q);
        }
        let mut spans = Vec::new();
        for v in VIEWS {
            let needles = &self.needles[v as usize];
            if needles.is_empty() {
                continue;
            }
            // Each view is read once: for whole occurrences, and for a
            // needle prefix that runs to its end (before an open escape,
            // which the view would read as text).
            let upto = match (v, open_escape) {
                (View::Plain, _) | (_, None) => data.len(),
                (_, Some(q)) => q,
            };
            let text = view_of(v, &data[..upto]).unwrap_or(Cow::Borrowed(&data[..upto]));
            let found = find_all(&text, needles);
            let prefix = prefix_at_end(&text, needles);
            if found.is_empty() && prefix.is_none() {
                continue;
            }
            let map = map_of(v, &data[..upto]);
            if let Some(p) = prefix {
                c = c.min(map[p].0);
            }
            spans.extend(found.into_iter().map(|(a, b, secret)| Span {
                start: map[a].0,
                end: map[b - 1].1,
                secret,
            }));
        }
        while let Some(s) = spans
            .iter()
            .filter(|s| s.start < c && c < s.end)
            .map(|s| s.start)
            .min()
        {
            c = s;
        }
        c
    }

    /// Whether `data` contains any secret value, in any form it detects.
    pub fn contains_secret(&self, data: &[u8]) -> bool {
        VIEWS.iter().any(|&v| {
            let needles = &self.needles[v as usize];
            if needles.is_empty() {
                return false;
            }
            match view_of(v, data) {
                None => false,
                Some(text) => needles
                    .iter()
                    .any(|n| memmem::find(&text, &n.bytes).is_some()),
            }
        })
    }

    /// `data` with every occurrence of every form replaced (overlapping
    /// occurrences together, named after the one that starts first and
    /// is longest).
    pub fn redact<'a>(&self, data: &'a [u8]) -> Cow<'a, [u8]> {
        if self.is_empty() {
            return Cow::Borrowed(data);
        }
        let mut spans = self.spans(data);
        if spans.is_empty() {
            return Cow::Borrowed(data);
        }
        spans.sort_by_key(|s| (s.start, std::cmp::Reverse(s.end)));
        let mut out = Vec::with_capacity(data.len());
        let mut at = 0;
        let mut i = 0;
        while i < spans.len() {
            let first = spans[i];
            let mut end = first.end;
            i += 1;
            while i < spans.len() && spans[i].start < end {
                end = end.max(spans[i].end);
                i += 1;
            }
            out.extend_from_slice(&data[at..first.start]);
            out.extend_from_slice(&self.replacements[first.secret]);
            at = end;
        }
        out.extend_from_slice(&data[at..]);
        Cow::Owned(out)
    }

    /// `text` with every value replaced.
    pub fn redact_str(&self, text: &str) -> String {
        String::from_utf8_lossy(&self.redact(text.as_bytes())).into_owned()
    }

    /// Every occurrence of every form in `data`, as ranges of `data`.
    fn spans(&self, data: &[u8]) -> Vec<Span> {
        let mut spans = Vec::new();
        for v in VIEWS {
            let needles = &self.needles[v as usize];
            if needles.is_empty() {
                continue;
            }
            let Some(text) = view_of(v, data) else {
                continue;
            };
            let found = find_all(&text, needles);
            if found.is_empty() {
                continue;
            }
            let map = map_of(v, data);
            for (a, b, secret) in found {
                spans.push(Span {
                    start: map[a].0,
                    end: map[b - 1].1,
                    secret,
                });
            }
        }
        spans
    }
}

/// Every occurrence of every needle in `text`: (start, end, secret).
fn find_all(text: &[u8], needles: &[Needle]) -> Vec<(usize, usize, usize)> {
    let mut found = Vec::new();
    for n in needles {
        for at in memmem::find_iter(text, &n.bytes) {
            found.push((at, at + n.bytes.len(), n.secret));
        }
    }
    found
}

/// How long a match of a needle of `len` bytes in view `v` can be in the
/// scanned text: see [`Redactor::longest`].
fn span_bound(v: View, len: usize) -> usize {
    match v {
        View::Plain => len,
        View::Percent => 3 * len,
        View::Escaped => len * MAX_ESCAPE + len.saturating_sub(1) * MAX_DROPPED * MAX_ESCAPE,
    }
}

/// `data` read as view `v`, or `None` when the view cannot hold anything
/// the plain text does not (no `%` to decode).
fn view_of(v: View, data: &[u8]) -> Option<Cow<'_, [u8]>> {
    match v {
        View::Plain => Some(Cow::Borrowed(data)),
        View::Percent => {
            memchr::memchr(b'%', data).map(|_| Cow::Owned(percent_view(data, false).0))
        }
        View::Escaped => Some(Cow::Owned(escaped_view(data, true, false).0)),
    }
}

/// For each byte of view `v` of `data`, the range of `data` it came from.
fn map_of(v: View, data: &[u8]) -> Vec<(usize, usize)> {
    match v {
        View::Plain => (0..data.len()).map(|i| (i, i + 1)).collect(),
        View::Percent => percent_view(data, true).1,
        View::Escaped => escaped_view(data, true, true).1,
    }
}

/// `data` with `%XX` decoded, and (when `map`) where each byte came from.
fn percent_view(data: &[u8], map: bool) -> (Vec<u8>, Vec<(usize, usize)>) {
    let mut out = Vec::with_capacity(data.len());
    let mut at = Vec::new();
    let mut i = 0;
    while i < data.len() {
        let decoded = (data[i] == b'%')
            .then(|| data.get(i + 1..i + 3))
            .flatten()
            .and_then(hex_byte);
        let (b, n) = match decoded {
            Some(b) => (b, 3),
            None => (data[i], 1),
        };
        out.push(b);
        if map {
            at.push((i, i + n));
        }
        i += n;
    }
    (out, at)
}

/// `data` with backslash escapes decoded (when `decode`) and deceptive
/// bytes dropped, a run of more than [`MAX_DROPPED`] of them replaced by
/// [`BARRIER`]; with `map`, where each byte came from.
fn escaped_view(data: &[u8], decode: bool, map: bool) -> (Vec<u8>, Vec<(usize, usize)>) {
    let mut out = Vec::with_capacity(data.len());
    let mut at: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < data.len() {
        if !decode || data[i] != b'\\' {
            let run = if decode {
                memchr::memchr(b'\\', &data[i..]).unwrap_or(data.len() - i)
            } else {
                data.len() - i
            };
            out.extend_from_slice(&data[i..i + run]);
            if map {
                at.extend((i..i + run).map(|k| (k, k + 1)));
            }
            i += run;
            continue;
        }
        match escape_at(&data[i..]) {
            Some((bytes, n, len)) => {
                out.extend_from_slice(&bytes[..n]);
                if map {
                    at.extend(std::iter::repeat_n((i, i + len), n));
                }
                i += len;
            }
            None => {
                out.push(b'\\');
                if map {
                    at.push((i, i + 1));
                }
                i += 1;
            }
        }
    }
    // Drop deceptive bytes in place; the write index never passes the read
    // index (a barrier stands for at least MAX_DROPPED + 1 dropped bytes).
    let (mut w, mut r, mut dropped) = (0, 0, 0);
    while r < out.len() {
        let n = deceptive_len(&out[r..]);
        if n > 0 {
            dropped += n;
            r += n;
            continue;
        }
        if dropped > MAX_DROPPED && w > 0 {
            out[w] = BARRIER;
            if map {
                at[w] = (at[r].0, at[r].0);
            }
            w += 1;
        }
        dropped = 0;
        out[w] = out[r];
        if map {
            at[w] = at[r];
        }
        w += 1;
        r += 1;
    }
    out.truncate(w);
    at.truncate(if map { w } else { 0 });
    (out, at)
}

/// How many bytes at the start of `s` are a deceptive character: a C0
/// control (line breaks included) or DEL, a C1 control (U+0080–U+009F), or
/// a bidirectional control (U+200E, U+200F, U+202A–U+202E, U+2066–U+2069),
/// as UTF-8. 0 when `s` starts with anything else.
fn deceptive_len(s: &[u8]) -> usize {
    match s {
        [b, ..] if *b < 0x20 || *b == 0x7f => 1,
        [0xc2, 0x80..=0x9f, ..] => 2,
        [0xe2, 0x80, 0x8e | 0x8f | 0xaa..=0xae, ..] | [0xe2, 0x81, 0xa6..=0xa9, ..] => 3,
        _ => 0,
    }
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn hex_byte(s: &[u8]) -> Option<u8> {
    Some(hex_digit(*s.first()?)? << 4 | hex_digit(*s.get(1)?)?)
}

fn hex_u16(s: &[u8]) -> Option<u32> {
    s.get(..4)?
        .iter()
        .try_fold(0u32, |acc, &b| Some(acc << 4 | u32::from(hex_digit(b)?)))
}

fn utf8(c: char) -> ([u8; 4], usize) {
    let mut buf = [0u8; 4];
    let n = c.encode_utf8(&mut buf).len();
    (buf, n)
}

/// The backslash escape at the start of `s` (which starts with `\`): the
/// bytes it stands for, how many, and how long the escape is. `None` when
/// it is not one (the backslash is then text).
fn escape_at(s: &[u8]) -> Option<([u8; 4], usize, usize)> {
    let one = |b: u8| Some(([b, 0, 0, 0], 1, 2));
    match *s.get(1)? {
        b'n' => one(b'\n'),
        b'r' => one(b'\r'),
        b't' => one(b'\t'),
        b'b' => one(0x08),
        b'f' => one(0x0c),
        b'0' => one(0),
        b @ (b'"' | b'\\' | b'/' | b'\'') => one(b),
        b'x' => hex_byte(s.get(2..4)?).map(|b| ([b, 0, 0, 0], 1, 4)),
        b'u' if s.get(2) == Some(&b'{') => {
            let close = s.iter().take(11).position(|&b| b == b'}')?;
            let digits = &s[3..close];
            if digits.is_empty() || digits.len() > 6 {
                return None;
            }
            let code = digits
                .iter()
                .try_fold(0u32, |acc, &b| Some(acc << 4 | u32::from(hex_digit(b)?)))?;
            let (buf, n) = utf8(char::from_u32(code)?);
            Some((buf, n, close + 1))
        }
        b'u' => {
            let unit = hex_u16(s.get(2..)?)?;
            if (0xd800..0xdc00).contains(&unit) {
                if s.get(6..8) != Some(b"\\u") {
                    return None;
                }
                let low = hex_u16(s.get(8..)?)?;
                if !(0xdc00..0xe000).contains(&low) {
                    return None;
                }
                let code = 0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00);
                let (buf, n) = utf8(char::from_u32(code)?);
                return Some((buf, n, 12));
            }
            let (buf, n) = utf8(char::from_u32(unit)?);
            Some((buf, n, 6))
        }
        _ => None,
    }
}

/// Whether `s` (starting with `\` or `%`) is cut off in the middle of an
/// escape that more bytes could complete.
fn could_continue(s: &[u8]) -> bool {
    let hex_run = |t: &[u8]| t.iter().all(|&b| hex_digit(b).is_some());
    match s {
        [b'%', rest @ ..] => rest.len() < 2 && hex_run(rest),
        [b'\\'] => true,
        [b'\\', b'x', rest @ ..] => rest.len() < 2 && hex_run(rest),
        [b'\\', b'u', b'{', rest @ ..] => rest.len() <= 6 && hex_run(rest),
        [b'\\', b'u', rest @ ..] if rest.len() < 4 => hex_run(rest),
        [b'\\', b'u', a, b, c, d, rest @ ..] => {
            // A high surrogate waiting for its low half.
            hex_u16(&[*a, *b, *c, *d]).is_some_and(|u| (0xd800..0xdc00).contains(&u))
                && match rest {
                    [] | [b'\\'] => true,
                    [b'\\', b'u', t @ ..] => t.len() < 4 && hex_run(t),
                    _ => false,
                }
        }
        _ => false,
    }
}

/// The earliest position of `text` from which the rest of it is a proper
/// prefix of some needle.
fn prefix_at_end(text: &[u8], needles: &[Needle]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for n in needles {
        let n = &n.bytes;
        let from = text.len() - (n.len() - 1).min(text.len());
        for p in from..best.unwrap_or(text.len()) {
            if text[p] == n[0] && text[p..] == n[..text.len() - p] {
                best = Some(p);
                break;
            }
        }
    }
    best
}

/// The hex (both cases) and base64 (standard and URL-safe alphabets) forms
/// of `value`. For base64, the value can start at any of three offsets
/// inside a longer encoded text, and each offset encodes it differently; for
/// each, the form is the run of characters that depend on the value's bytes
/// alone, so it is found inside any longer encoding (and a standalone
/// encoding keeps at most its last character and padding).
fn encoded_forms(value: &[u8]) -> Vec<Zeroizing<Vec<u8>>> {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let mut forms = vec![
        Zeroizing::new(hex::encode(value).into_bytes()),
        Zeroizing::new(hex::encode_upper(value).into_bytes()),
    ];
    let bits = 8 * value.len();
    for offset in 0..3usize {
        let mut shifted = Zeroizing::new(vec![0u8; offset]);
        shifted.extend_from_slice(value);
        let first = (8 * offset).div_ceil(6);
        let last = (8 * offset + bits) / 6;
        for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
            let encoded = Zeroizing::new(engine.encode(&*shifted));
            forms.push(Zeroizing::new(encoded.as_bytes()[first..last].to_vec()));
        }
    }
    forms
}

/// Refuses, before anything runs, a secret shorter than
/// [`MIN_ENCODED_REDACTION`] bytes that is granted for a use that lets its
/// value out of the runner (`reveal` to the step, `http-header` to a host
/// whose response the step reads): its encodings could not be redacted
/// without mangling every log, so the runner could not keep the promise
/// that the value never shows. A value used only through `hmac` or `sign`
/// never leaves the runner and may be as short as it likes.
pub fn refuse_short_values(env: &str, secrets: &[ResolvedSecret]) -> Result<(), SecretError> {
    for s in secrets {
        let len = s.value.expose().len();
        let exposed: Vec<&str> = s
            .uses
            .iter()
            .filter_map(|u| match u {
                SecretUse::Reveal => Some("reveal"),
                SecretUse::HttpHeader => Some("http-header"),
                SecretUse::Hmac | SecretUse::Sign => None,
            })
            .collect();
        if len < MIN_ENCODED_REDACTION && !exposed.is_empty() {
            return Err(SecretError::new(
                env,
                format!(
                    "secret `{}` is {len} bytes long, shorter than the {MIN_ENCODED_REDACTION} bytes the runner can redact reliably, and is granted for {} (its value would leave the runner)",
                    s.name,
                    exposed.join(" and ")
                ),
            )
            .fix(format!(
                "store a value of at least {MIN_ENCODED_REDACTION} bytes for `{}`, or grant it only for `hmac` or `sign`",
                s.name
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// A grant of `name` for `hmac`.
    fn grant(name: &str) -> SecretGrant {
        SecretGrant {
            name: name.into(),
            uses: BTreeSet::from([SecretUse::Hmac]),
            key: None,
            hosts: Vec::new(),
            at: Default::default(),
        }
    }

    /// An environment whose secrets come from the runner's environment
    /// (`CORDON_SECRET_<NAME>`): no store, no server.
    fn env_provider() -> (tempfile::TempDir, cordon_manifest::config::WorkspaceConfig) {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("cordon.toml");
        std::fs::write(&file, "[env.ci.secrets]\nprovider = \"env\"\n").unwrap();
        let config =
            cordon_manifest::config::WorkspaceConfig::discover_for_review(Some(&file), d.path())
                .unwrap();
        (d, config)
    }

    #[test]
    fn every_missing_secret_of_every_step_is_reported_at_once() {
        let (_d, config) = env_provider();
        let ci = config.env("ci").unwrap();
        let (a, b, c) = (
            grant("first-hour-missing-a"),
            grant("first-hour-missing-b"),
            grant("first-hour-missing-c"),
        );
        let train = [a.clone(), b.clone()];
        let deploy = [b, c];
        let errors = resolve_steps(ci, &[("train", &train), ("deploy", &deploy)]).unwrap_err();
        assert_eq!(
            errors.to_string(),
            "environment `ci`: step `train`: secret `first-hour-missing-a` is granted but the runner's environment has no CORDON_SECRET_FIRST_HOUR_MISSING_A\n  fix: export CORDON_SECRET_FIRST_HOUR_MISSING_A in the environment that runs cordon (never pass secrets as arguments)\n\
error: environment `ci`: steps `train`, `deploy`: secret `first-hour-missing-b` is granted but the runner's environment has no CORDON_SECRET_FIRST_HOUR_MISSING_B\n  fix: export CORDON_SECRET_FIRST_HOUR_MISSING_B in the environment that runs cordon (never pass secrets as arguments)\n\
error: environment `ci`: step `deploy`: secret `first-hour-missing-c` is granted but the runner's environment has no CORDON_SECRET_FIRST_HOUR_MISSING_C\n  fix: export CORDON_SECRET_FIRST_HOUR_MISSING_C in the environment that runs cordon (never pass secrets as arguments)"
        );
        // One step: the step is the run, so no problem repeats its name.
        let one = resolve_steps(ci, &[("train", &train)]).unwrap_err();
        assert_eq!(one.0.len(), 2);
        assert!(
            one.0[0]
                .message
                .starts_with("secret `first-hour-missing-a`")
        );
    }

    fn secret(name: &str, value: &str) -> ResolvedSecret {
        ResolvedSecret {
            name: name.into(),
            uses: BTreeSet::new(),
            provider: "env",
            version: None,
            credential: None,
            value: SecretValue::new(value.as_bytes().to_vec()),
        }
    }

    #[test]
    fn debug_never_prints_the_value() {
        let s = secret("k", "hunter2-value");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{:?}", s.value).contains("hunter2"));
    }

    #[test]
    fn redacts_every_occurrence_longest_first() {
        let r = Redactor::new(&[secret("short", "abc"), secret("long", "xxabcxx")]);
        let out = r.redact(b"1 xxabcxx 2 abc 3 abcabc");
        assert_eq!(
            &*out,
            b"1 [REDACTED:long] 2 [REDACTED:short] 3 [REDACTED:short][REDACTED:short]"
        );
        assert!(r.contains_secret(b"..abc.."));
        assert!(!r.contains_secret(b"ab c"));
        assert_eq!(r.longest(), 7);
    }

    #[test]
    fn safe_cut_never_splits_a_value() {
        let r = Redactor::new(&[secret("k", "SECRET")]);
        // A complete value straddling the wanted cut moves the cut before it.
        assert_eq!(r.safe_cut(b"ab SECRET cd", 5), 3);
        // A prefix at the end that later bytes could complete is held back.
        assert_eq!(r.safe_cut(b"line\nSEC", 8), 5);
        assert_eq!(r.safe_cut(b"line\nxyz", 8), 8);
    }

    #[test]
    fn redacts_hex_and_base64_forms_at_every_offset() {
        use base64::Engine;
        use base64::engine::general_purpose::{STANDARD, URL_SAFE};
        let value = "s3cr3t-\u{fb}\u{ff}-value";
        let r = Redactor::new(&[secret("k", value)]);
        let v = value.as_bytes();
        for text in [
            hex::encode(v),
            hex::encode_upper(v),
            STANDARD.encode(v),
            URL_SAFE.encode(v),
            STANDARD.encode([b"x".as_slice(), v, b"yz"].concat()),
            STANDARD.encode([b"xy".as_slice(), v].concat()),
            URL_SAFE.encode([b"xyz?".as_slice(), v, b"?"].concat()),
        ] {
            assert!(r.contains_secret(text.as_bytes()), "form not found");
            let out = r.redact_str(&text);
            assert!(out.contains("[REDACTED:k]"));
            assert!(out.len() < text.len() / 2 + 16, "most of the form is gone");
        }
        // Short values are redacted as they are, not in encoded forms.
        let short = Redactor::new(&[secret("s", "abc")]);
        assert!(!short.contains_secret(hex::encode("abc").as_bytes()));
    }

    /// A value with quotes, a backslash, NUL, a newline and bytes that are
    /// not UTF-8.
    const AWKWARD: &[u8] = b"s3cr\"t\\;\x00\n-\xff\xfe-value";

    fn redactor_for(value: &[u8]) -> Redactor {
        Redactor::new(&[ResolvedSecret {
            name: "k".into(),
            uses: BTreeSet::new(),
            provider: "env",
            version: None,
            credential: None,
            value: SecretValue::new(value.to_vec()),
        }])
    }

    /// Every accidental encoding of `v` the redactor promises to find, with
    /// `lead` bytes of unrelated text before it inside the same encoding.
    fn accidental_forms(v: &[u8], lead: usize) -> Vec<(String, Vec<u8>)> {
        use base64::Engine;
        use base64::engine::general_purpose::{STANDARD, URL_SAFE};
        let mut with_lead = vec![b'#'; lead];
        with_lead.extend_from_slice(v);
        with_lead.extend_from_slice(b"tail");
        let mut forms = vec![];
        for (name, b64) in [
            ("std", STANDARD.encode(&with_lead)),
            ("url", URL_SAFE.encode(&with_lead)),
        ] {
            forms.push((format!("base64 {name}"), b64.clone().into_bytes()));
            for width in [64, 76] {
                for eol in ["\n", "\r\n"] {
                    let lines: Vec<&[u8]> = b64.as_bytes().chunks(width).collect();
                    let mut pem = b"-----BEGIN KEY-----\n".to_vec();
                    pem.extend(lines.join(eol.as_bytes()));
                    pem.extend(eol.as_bytes());
                    forms.push((format!("base64 {name} wrapped at {width} {eol:?}"), pem));
                }
            }
        }
        forms.push(("hex".into(), hex::encode(&with_lead).into_bytes()));
        forms.push(("HEX".into(), hex::encode_upper(&with_lead).into_bytes()));
        let pct = |b: u8, upper: bool| {
            if upper {
                format!("%{b:02X}")
            } else {
                format!("%{b:02x}")
            }
        };
        for upper in [true, false] {
            forms.push((
                format!("percent all upper={upper}"),
                with_lead
                    .iter()
                    .flat_map(|&b| pct(b, upper).into_bytes())
                    .collect(),
            ));
            forms.push((
                format!("percent reserved upper={upper}"),
                with_lead
                    .iter()
                    .flat_map(|&b| {
                        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                            vec![b]
                        } else {
                            pct(b, upper).into_bytes()
                        }
                    })
                    .collect(),
            ));
        }
        let text: String = match std::str::from_utf8(&with_lead) {
            Ok(s) => s.into(),
            Err(_) => with_lead.iter().map(|&b| char::from(b)).collect(),
        };
        forms.push(("json".into(), serde_json::to_vec(&text).unwrap()));
        let ascii: String = text
            .chars()
            .map(|c| {
                if c.is_ascii() {
                    let s = serde_json::to_string(&c.to_string()).unwrap();
                    s[1..s.len() - 1].to_string()
                } else {
                    let mut u = [0u16; 2];
                    c.encode_utf16(&mut u)
                        .iter()
                        .map(|u| format!("\\u{u:04X}"))
                        .collect()
                }
            })
            .collect();
        forms.push((
            "json ascii".into(),
            format!("{{\"k\": \"{ascii}\"}}").into_bytes(),
        ));
        forms.push(("rust debug".into(), format!("{text:?}").into_bytes()));
        let units: Vec<u16> = text.encode_utf16().collect();
        forms.push((
            "utf-16le".into(),
            units.iter().flat_map(|u| u.to_le_bytes()).collect(),
        ));
        forms.push((
            "utf-16be".into(),
            units.iter().flat_map(|u| u.to_be_bytes()).collect(),
        ));
        forms
    }

    /// Streams `data` through safe_cut and redact the way the stdout
    /// capture does, with a write boundary at `split`.
    fn streamed(r: &Redactor, data: &[u8], split: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut pending = Vec::new();
        for part in [&data[..split], &data[split..]] {
            pending.extend_from_slice(part);
            let cut = r.safe_cut(&pending, pending.len());
            out.extend_from_slice(&r.redact(&pending[..cut]));
            pending.drain(..cut);
        }
        out.extend_from_slice(&r.redact(&pending));
        out
    }

    #[test]
    fn finds_every_accidental_encoding_at_every_offset_and_split() {
        for value in [
            AWKWARD,
            b"plain-ascii-token-123".as_slice(),
            "unicode-ключ-é".as_bytes(),
        ] {
            let r = redactor_for(value);
            for lead in 0..80 {
                for (name, form) in accidental_forms(value, lead) {
                    let text = [b"log: ".as_slice(), &form, b" end\n"].concat();
                    assert!(r.contains_secret(&text), "{name}, lead {lead}");
                    let out = r.redact(&text);
                    assert!(
                        !r.contains_secret(&out),
                        "{name}, lead {lead}: redacted whole"
                    );
                    assert!(
                        out.starts_with(b"log: ") && out.ends_with(b" end\n"),
                        "{name}"
                    );
                    for sp in r.spans(&text) {
                        assert!(
                            sp.end - sp.start <= r.longest(),
                            "{name}: span within longest()"
                        );
                    }
                    if lead % 13 == 0 {
                        for split in 0..=text.len() {
                            let out = streamed(&r, &text, split);
                            assert!(
                                !r.contains_secret(&out),
                                "{name}, lead {lead}, split {split}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_value_with_controls_between_its_bytes_is_found_once_sanitized() {
        let r = redactor_for(AWKWARD);
        for junk in [&b"\x1b[0m"[..], b"\x1b]0;t\x07", b"\r", b"\x08", b"\x00"] {
            let mut raw = b"x ".to_vec();
            for (i, b) in AWKWARD.iter().enumerate() {
                if i > 0 {
                    raw.extend_from_slice(junk);
                }
                raw.push(*b);
            }
            raw.extend_from_slice(b" y\n");
            let (shown, _) = cordon_core::sanitize::StreamSanitizer::sanitize(&raw);
            assert!(
                r.contains_secret(&shown),
                "{junk:?}: {}",
                String::from_utf8_lossy(&shown)
            );
            let out = r.redact(&shown);
            assert_eq!(&*out, b"x [REDACTED:k] y\n", "{junk:?}");
        }
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        let r = redactor_for(AWKWARD);
        let text: &[u8] = b"C:\\dir\\x41 100% done \\u00e9 %41%42 line\r\nnext \x1b[0m MIIB\n";
        assert!(!r.contains_secret(text));
        assert_eq!(&*r.redact(text), text);
        assert_eq!(r.safe_cut(text, text.len()), text.len());
    }

    #[test]
    fn safe_cut_holds_back_an_encoded_prefix() {
        let r = Redactor::new(&[secret("k", "SECRET-VALUE")]);
        let hex_form = hex::encode("SECRET-VALUE");
        let data = format!("log: {}", &hex_form[..10]);
        // The tail could become the hex form with the next write.
        assert_eq!(r.safe_cut(data.as_bytes(), data.len()), 5);
        assert!(r.longest() >= hex_form.len());
    }

    /// Scan speed over 10 MiB of log-like text, for the numbers in
    /// docs/performance.md: `cargo test -p cordon --lib scan_speed --
    /// --ignored --nocapture`. Prints the times; asserts only what was found.
    #[test]
    #[ignore]
    fn scan_speed_10_mib() {
        let value = "s3cr3t-v4lue-for-the-scan-benchmark";
        let r = Redactor::new(&[secret("k", value)]);
        let line = b"2024-05-01T12:00:00Z INFO step progress: 42% of shard 7 done, loss=0.1234 (\\share\\x)\n";
        let mut text = Vec::with_capacity(10 << 20);
        while text.len() < 10 << 20 {
            text.extend_from_slice(line);
        }
        let t = std::time::Instant::now();
        assert!(!r.contains_secret(&text));
        let clean = t.elapsed();
        let mid = text.len() / 2;
        text.splice(mid..mid, value.bytes());
        let t = std::time::Instant::now();
        assert!(r.contains_secret(&text));
        let redacted = r.redact(&text);
        let found = t.elapsed();
        assert!(!redacted.windows(value.len()).any(|w| w == value.as_bytes()));
        let t = std::time::Instant::now();
        let mut cut = 0;
        for chunk in text.chunks(line.len()) {
            cut += r.safe_cut(chunk, chunk.len());
        }
        let streamed = t.elapsed();
        assert!(cut > 0);
        eprintln!(
            "10 MiB: contains_secret (clean) {clean:?}; contains_secret + redact (one value) {found:?}; safe_cut per line {streamed:?}"
        );
    }

    #[test]
    fn ed25519_seed_forms() {
        let raw = [7u8; 32];
        let from_raw = SecretValue::new(raw.to_vec()).ed25519_key().unwrap();
        let from_hex = SecretValue::new(hex::encode(raw).into_bytes())
            .ed25519_key()
            .unwrap();
        let from_upper = SecretValue::new(hex::encode_upper(raw).into_bytes())
            .ed25519_key()
            .unwrap();
        assert_eq!(from_raw.to_bytes(), from_hex.to_bytes());
        assert_eq!(from_raw.to_bytes(), from_upper.to_bytes());
        let err = SecretValue::new(b"not a seed".to_vec())
            .ed25519_key()
            .unwrap_err();
        assert!(err.0.contains("64 hex characters or 32 raw bytes"), "{err}");
        assert!(!err.0.contains("not a seed"));
    }
}
