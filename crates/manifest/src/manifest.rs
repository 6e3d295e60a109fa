//! Capability manifests: parsing and validation.
//!
//! This module owns the TOML format a reviewer reads (see the README's
//! "Manifest reference"). It turns a file into a [`Manifest`]: typed, checked,
//! with the source position of every value a later phase may need to blame.
//! Nobody else reads manifest TOML.
//!
//! Parsing happens in two phases, as in cargo-deny's config handling: serde
//! (with `deny_unknown_fields`, so a misspelt key is an error and never a
//! silently ignored grant) into raw structs, then validation that collects
//! *every* problem instead of stopping at the first. Each [`Problem`] names the
//! file, line and column, says what is wrong and how to fix it.
//!
//! This module never touches the component or the mounted directories; that
//! is the plan's job.

use cordon_core::units::{parse_duration, parse_size};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

pub use cordon_core::digest::Sha256Digest;
use std::time::Duration;
use toml::Spanned;

/// An `allow` URL of a network grant that is not of the accepted form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AllowUrlError(pub String);

/// The only manifest format version this runner understands.
pub const FORMAT_VERSION: i64 = 1;

/// One thing wrong with a manifest, located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line, or 0 when the problem concerns the whole file.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when there is one obvious fix.
    pub fix: Option<String>,
}

/// Everything wrong with one manifest file.
#[derive(Debug, thiserror::Error)]
pub struct ManifestError {
    /// The manifest file as the user named it.
    pub path: PathBuf,
    /// At least one problem, in file order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            // One problem per line, each an `error:` of its own when the
            // caller prefixes the first one.
            if i > 0 {
                write!(f, "\nerror: ")?;
            }
            if p.line == 0 {
                write!(f, "{}: {}", self.path.display(), p.message)?;
            } else {
                write!(
                    f,
                    "{}:{}:{}: {}",
                    self.path.display(),
                    p.line,
                    p.column,
                    p.message
                )?;
            }
            if let Some(fix) = &p.fix {
                write!(f, "\n  fix: {fix}")?;
            }
        }
        Ok(())
    }
}

/// A position in the manifest source, kept so that later phases (the plan,
/// which checks digests and directories) can point at the offending line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Location {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl Location {
    /// Makes a [`Problem`] at this location.
    pub fn problem(self, message: impl Into<String>, fix: Option<String>) -> Problem {
        Problem {
            line: self.line,
            column: self.column,
            message: message.into(),
            fix,
        }
    }
}

/// How a step may use a mounted directory.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    /// A read-only view of the host directory.
    Read,
    /// A fresh, empty directory; its contents are published to the host path
    /// only when the step succeeds.
    Write,
    /// The host directory itself, read and written in place. Changes are not
    /// staged and survive a failed step; the record marks such mounts.
    ReadWrite,
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::ReadWrite => "read-write",
        })
    }
}

/// How sensitive the data behind a mount is, lowest first.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Classification {
    /// Anyone may see it.
    Public,
    /// Inside the organisation.
    Internal,
    /// A need-to-know group.
    Confidential,
    /// The most sensitive class; policy restricts what may touch it.
    Restricted,
}

/// Something a step may do with a secret without necessarily seeing it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum SecretUse {
    /// HMAC-SHA256 keyed with the secret.
    Hmac,
    /// Ed25519 signatures with the secret as seed.
    Sign,
    /// Sent as an HTTP header to hosts the manifest binds it to.
    HttpHeader,
    /// The value itself handed to the step.
    Reveal,
}

/// The wall clock a step sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClockMode {
    /// A wall clock fixed to one instant, stored in the record, so that
    /// re-running the step sees the same time.
    #[default]
    Fixed,
    /// The host's wall clock; the run is not reproducible.
    Real,
}

/// The randomness a step sees (`wasi:random`, secure and insecure).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RandomMode {
    /// A deterministic stream from a seed stored in the record.
    #[default]
    Seeded,
    /// The host's random generator; the run is not reproducible.
    Real,
}

/// How a step's float arithmetic treats NaNs (`[step] floats`).
///
/// Wasm float arithmetic is deterministic except for the bits of a NaN it
/// produces, so the choice only matters across CPU architectures. Native
/// is the default because canonicalizing costs about 3.5× in float-bound
/// code (docs/performance.md); the record names the architecture so that a
/// re-execution elsewhere is flagged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FloatMode {
    /// Every NaN a float operation produces is the canonical NaN, so
    /// results are bit for bit the same on every CPU architecture. Costs up
    /// to several times the time of float-heavy code (see
    /// docs/performance.md). `floats = "canonical"`.
    Canonical,
    /// NaN bit patterns are whatever the CPU produces: full speed, and
    /// re-execution is bit for bit on the same CPU architecture (the record
    /// names it). The default; `floats = "native"`.
    #[default]
    Native,
}

/// A directory grant, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    /// Absolute, normalised guest path.
    pub guest: String,
    /// The host path as written (relative paths are relative to the manifest).
    pub host: PathBuf,
    /// Where `host` is written in the manifest.
    pub host_at: Location,
    /// Read, write (staged) or read-write (in place).
    pub access: Access,
    /// Why the step needs it; goes into the record.
    pub purpose: String,
    /// Data classification, when the manifest gives one.
    pub classification: Option<Classification>,
    /// `requires = "promoted"`: the mount's tree must have been let into
    /// the run's environment by `cordon promote` (a valid VSA of that
    /// environment names its digest), or the run is refused.
    pub requires_promoted: bool,
    /// `existing = "keep"` on a `write` mount: what its host directory
    /// holds that no recorded run published there is put into the content
    /// store (and named in the record) before the new output replaces it,
    /// instead of refusing the run.
    pub keep_existing: bool,
}

/// The one value `requires` of a mount takes.
pub const REQUIRES_PROMOTED: &str = "promoted";

/// `existing = "keep"`: a write mount keeps unrecorded data in the store
/// before replacing it.
pub const EXISTING_KEEP: &str = "keep";

/// `existing = "refuse"`: the default, written out.
pub const EXISTING_REFUSE: &str = "refuse";

/// A secret grant, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretGrant {
    /// The name the step asks for.
    pub name: String,
    /// What the step may do with it.
    pub uses: BTreeSet<SecretUse>,
    /// Where the environment's provider finds it (`key = "..."`): a store
    /// name (`local`), a variable suffix (`env`) or a KV path (`vault`).
    /// `None` means the name itself.
    pub key: Option<String>,
    /// For `http-header`: the hosts (`host` or `host:port`) the value may
    /// be sent to.
    pub hosts: Vec<String>,
    /// Where the grant is written.
    pub at: Location,
}

impl SecretGrant {
    /// The name the environment's provider knows the secret by: `key`, or
    /// else the name.
    pub fn provider_key(&self) -> &str {
        self.key.as_deref().unwrap_or(&self.name)
    }

    /// The secret as error messages name it: `` `name` ``, plus its key when
    /// the manifest maps it to another.
    pub fn describe(&self) -> String {
        match &self.key {
            Some(k) if *k != self.name => format!("`{}` (key `{k}`)", self.name),
            _ => format!("`{}`", self.name),
        }
    }
}

/// One destination a step may reach (`[network] allow`): scheme, host,
/// port and path prefix must all match, and the method when `methods` is
/// given.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AllowRule {
    /// The entry as written, for messages and records.
    pub url: String,
    /// `http` or `https`.
    pub scheme: String,
    /// Lowercase host name or IP literal.
    pub host: String,
    /// The port (the scheme's default when not written).
    pub port: u16,
    /// Path prefix; a request path must start with it.
    pub path_prefix: String,
    /// Allowed methods (uppercase); `None` allows any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
}

impl AllowRule {
    /// The entry as a reviewer reads it: the URL, and the methods when
    /// limited.
    pub fn describe(&self) -> String {
        match &self.methods {
            Some(m) => format!("{} ({} only)", self.url, m.join(", ")),
            None => self.url.clone(),
        }
    }
}

/// The network a step may reach, validated (`[network]`).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct NetworkGrant {
    /// The destinations.
    pub allow: Vec<AllowRule>,
}

/// A URL split into the parts the allowlist compares. Only `http` and
/// `https` URLs without user info or fragment are accepted.
pub fn parse_allow_url(text: &str) -> Result<(String, String, u16, String), AllowUrlError> {
    parse_allow_url_message(text).map_err(AllowUrlError)
}

fn parse_allow_url_message(text: &str) -> Result<(String, String, u16, String), String> {
    let (scheme, rest) = text
        .split_once("://")
        .ok_or_else(|| format!("`{text}` is not a URL (expected `https://host/path/`)"))?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => {
            return Err(format!(
                "`{text}`: only http and https destinations can be granted"
            ));
        }
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.contains('@') || path.contains('#') || path.contains('?') {
        return Err(format!(
            "`{text}`: a destination is scheme, host, port and path prefix only (no user info, query or fragment)"
        ));
    }
    let (host, port) = split_host_port(authority, default_port)
        .ok_or_else(|| format!("`{text}`: the host or port is invalid"))?;
    if path.split('/').any(|seg| seg == "..") {
        return Err(format!("`{text}`: the path prefix may not contain `..`"));
    }
    Ok((scheme, host, port, path.to_string()))
}

/// Splits `host[:port]` (IPv6 literals in brackets), lowercasing the host.
pub fn split_host_port(authority: &str, default_port: u16) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        (format!("[{h}]"), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().ok()?),
            None => (authority.to_string(), default_port),
        }
    };
    let valid = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._[]:".contains(&b));
    valid.then(|| (host.to_ascii_lowercase(), port))
}

/// Resource limits, with defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Wasm fuel (roughly, instructions) the step may consume.
    pub fuel: u64,
    /// Bytes of linear memory the step may grow to, over all its memories.
    pub memory: u64,
    /// Wall-clock time the step may run.
    #[serde(
        serialize_with = "serialize_duration_ms",
        deserialize_with = "deserialize_duration_ms",
        rename = "timeout_ms"
    )]
    pub timeout: Duration,
    /// Bytes the step may write to its output mounts, in total.
    pub output: u64,
    /// Bytes of stdout and of stderr captured per stream; the rest is cut.
    pub stdout: u64,
    /// HTTP requests the step may make (with a network grant).
    pub requests: u64,
    /// Bytes of HTTP request and response bodies, together, over the run.
    pub request_bytes: u64,
    /// Time one HTTP request may take, connection to last byte.
    #[serde(
        serialize_with = "serialize_duration_ms",
        deserialize_with = "deserialize_duration_ms",
        rename = "request_timeout_ms"
    )]
    pub request_timeout: Duration,
}

fn serialize_duration_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

fn deserialize_duration_ms<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    use serde::Deserialize as _;
    u64::deserialize(d).map(Duration::from_millis)
}

impl Default for Limits {
    /// Defaults meant for an ordinary data step: generous enough that a
    /// real job rarely needs to raise them, small enough that a runaway step
    /// is stopped before it hurts the machine.
    fn default() -> Self {
        Limits {
            fuel: 50_000_000_000,
            memory: 512 << 20,
            timeout: Duration::from_secs(300),
            output: 1 << 30,
            stdout: 16 << 20,
            requests: 100,
            request_bytes: 64 << 20,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// A validated capability manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The manifest file as the user named it.
    pub path: PathBuf,
    /// The directory relative paths are resolved against.
    pub dir: PathBuf,
    /// sha256 of the manifest file's bytes.
    pub sha256: Sha256Digest,
    /// Step name: lowercase letters, digits and `-`.
    pub name: String,
    /// Component path as written.
    pub component: PathBuf,
    /// Where `component` is written.
    pub component_at: Location,
    /// The pinned component digest.
    pub digest: Sha256Digest,
    /// Where `digest` is written.
    pub digest_at: Location,
    /// Arguments after argv[0] (which is the step name).
    pub args: Vec<String>,
    /// The only environment variables the step sees.
    pub env: BTreeMap<String, String>,
    /// Directory grants.
    pub mounts: Vec<Mount>,
    /// Secret grants.
    pub secrets: Vec<SecretGrant>,
    /// Limits, defaults filled in.
    pub limits: Limits,
    /// The network the step may reach (`[network]`); `None`: none at all.
    pub network: Option<NetworkGrant>,
    /// The limits the manifest sets itself (`fuel`, `memory`, `timeout`,
    /// `output`, `stdout`); the rest are defaults. Policy may require them.
    pub limits_set: Vec<&'static str>,
    /// The wall clock the step sees (`[step] clock`).
    pub clock: ClockMode,
    /// The randomness the step sees (`[step] random`).
    pub random: RandomMode,
    /// NaN handling of float arithmetic (`[step] floats`).
    pub floats: FloatMode,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    version: Option<Spanned<i64>>,
    step: RawStep,
    #[serde(default)]
    env: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default, rename = "mount")]
    mounts: Vec<RawMount>,
    #[serde(default, rename = "secret")]
    secrets: Vec<RawSecret>,
    limits: Option<RawLimits>,
    network: Option<RawNetwork>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    allow: Vec<Spanned<RawAllow>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawAllow {
    Url(String),
    Rule {
        url: String,
        #[serde(default)]
        methods: Option<Vec<String>>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    name: Spanned<String>,
    component: Spanned<String>,
    digest: Spanned<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    clock: ClockMode,
    #[serde(default)]
    random: RandomMode,
    #[serde(default)]
    floats: FloatMode,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMount {
    guest: Spanned<String>,
    host: Spanned<String>,
    access: Spanned<Access>,
    purpose: Spanned<String>,
    classification: Option<Spanned<Classification>>,
    requires: Option<Spanned<String>>,
    existing: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecret {
    name: Spanned<String>,
    uses: Spanned<Vec<Spanned<SecretUse>>>,
    key: Option<Spanned<String>>,
    #[serde(default)]
    hosts: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    fuel: Option<Spanned<i64>>,
    memory: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    output: Option<Spanned<String>>,
    stdout: Option<Spanned<String>>,
    requests: Option<Spanned<i64>>,
    #[serde(rename = "request-bytes")]
    request_bytes: Option<Spanned<String>>,
    #[serde(rename = "request-timeout")]
    request_timeout: Option<Spanned<String>>,
}

/// Maps byte offsets in a TOML source to 1-based line and column.
pub struct LineIndex<'a> {
    source: &'a str,
    /// The byte offset each line starts at: a lookup is a binary search, so
    /// locating every step of a pipeline of thousands stays linear.
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    /// An index over `source`.
    pub fn new(source: &'a str) -> Self {
        let starts = std::iter::once(0)
            .chain(source.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { source, starts }
    }

    /// The location of byte `offset`.
    pub fn at(&self, offset: usize) -> Location {
        let offset = offset.min(self.source.len());
        let line = self.starts.partition_point(|&s| s <= offset);
        let column = self.source[self.starts[line - 1]..offset].chars().count() + 1;
        Location { line, column }
    }

    fn of<T>(&self, s: &Spanned<T>) -> Location {
        self.at(s.span().start)
    }
}

/// Whether `key` is a valid provider key for a secret: path segments of
/// ASCII letters, digits, `-`, `_` and `.`, separated by `/`, none empty or
/// `..` (a key is spliced into a store name, a variable name or a URL path).
pub fn is_valid_secret_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 256
        && key.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
}

/// Whether `name` is a valid step or secret name: lowercase ASCII letters,
/// digits and `-`, starting with a letter, at most 63 characters.
pub fn is_valid_name(name: &str) -> bool {
    crate::names::STEP_NAME.is_valid(name)
}

fn is_valid_env_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// Normalises an absolute guest path: it must start with `/`, and contain no
/// `.`/`..` components, empty components or NUL. Returns the path without a
/// trailing slash.
fn normalize_guest(path: &str) -> Result<String, String> {
    if !path.starts_with('/') {
        return Err(format!(
            "guest path `{path}` must be absolute (start with `/`)"
        ));
    }
    if path.contains('\0') {
        return Err("guest path contains a NUL byte".into());
    }
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok("/".into());
    }
    for comp in trimmed[1..].split('/') {
        match comp {
            "" => return Err(format!("guest path `{path}` has an empty component (`//`)")),
            "." | ".." => {
                return Err(format!("guest path `{path}` may not contain `.` or `..`"));
            }
            _ => {}
        }
    }
    Ok(trimmed.to_string())
}

fn guest_nested(a: &str, b: &str) -> bool {
    a == "/" || b == "/" || b.starts_with(&format!("{a}/")) || a.starts_with(&format!("{b}/"))
}

/// A host a secret is bound to (`[[secret]] hosts`), with its scheme.
///
/// `name` and `name:port` mean **https** only: a bound secret is a
/// credential, and plain http shows it to every hop on the way. Sending it
/// over http needs the entry to say so, `http://name[:port]`, which
/// `cordon audit` flags. A port given is matched exactly; without one,
/// the scheme's default port (443, 80) is the only one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundHost {
    /// `https` or `http`.
    pub scheme: String,
    /// The host, lowercase.
    pub host: String,
    /// The port.
    pub port: u16,
}

impl BoundHost {
    /// Parses a `hosts` entry; `None` when it is not one of the forms.
    pub fn parse(entry: &str) -> Option<BoundHost> {
        let (scheme, rest) = match entry.split_once("://") {
            Some((s, r)) if s.eq_ignore_ascii_case("https") => ("https", r),
            Some((s, r)) if s.eq_ignore_ascii_case("http") => ("http", r),
            Some(_) => return None,
            None => ("https", entry),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() || rest.contains(['/', '@', '?', '#']) {
            return None;
        }
        let default = if scheme == "http" { 80 } else { 443 };
        let (host, port) = split_host_port(rest, default)?;
        Some(BoundHost {
            scheme: scheme.into(),
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// Whether a request to `scheme://host:port` may carry the secret.
    pub fn admits(&self, scheme: &str, host: &str, port: u16) -> bool {
        self.scheme == scheme && self.host == host && self.port == port
    }
}

/// Largest manifest, pipeline or `cordon.toml` the runner reads. These are
/// reviewed text files of a few kilobytes; the cap keeps a path such as
/// `/dev/zero` or a runaway generated file from filling the runner's memory.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// Largest pipeline file (and manifest named by one) the runner reads:
/// generated pipelines of ten thousand inline steps weigh a few megabytes,
/// and the cap still keeps `/dev/zero` or a runaway file out of memory.
pub const MAX_PIPELINE_BYTES: u64 = 32 << 20;

impl Manifest {
    /// Reads and validates the manifest at `path`.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        Manifest::load_from(path, |p| {
            cordon_core::fsutil::read_regular_to_string(p, MAX_FILE_BYTES)
        })
    }

    /// Like [`Manifest::load`], with the file's text supplied by `read`
    /// (for example the manifest as it was at a git revision). Neither reads
    /// the component: a manifest can be checked without its build.
    pub fn load_from(
        path: &Path,
        read: impl FnOnce(&Path) -> std::io::Result<String>,
    ) -> Result<Manifest, ManifestError> {
        let source = read(path).map_err(|e| ManifestError {
            path: path.to_path_buf(),
            problems: vec![Problem {
                line: 0,
                column: 0,
                message: format!("cannot read the manifest: {e}"),
                fix: Some("check the path; a manifest is a TOML file such as `step.toml`".into()),
            }],
        })?;
        Manifest::parse(path, &source)
    }

    /// Validates `source` as the manifest at `path` (used for relative paths
    /// and in error messages; the file itself is not read).
    pub fn parse(path: &Path, source: &str) -> Result<Manifest, ManifestError> {
        let lines = LineIndex::new(source);
        let fail = |problems: Vec<Problem>| ManifestError {
            path: path.to_path_buf(),
            problems,
        };
        let raw: RawManifest = toml::from_str(source).map_err(|e| {
            let at = e.span().map(|s| lines.at(s.start)).unwrap_or_default();
            let message = e.message().trim().to_string();
            let fix = fix_for_parse_error(&message);
            fail(vec![at.problem(message, fix)])
        })?;

        let mut problems = Vec::new();

        if let Some(v) = &raw.version
            && *v.get_ref() != FORMAT_VERSION
        {
            problems.push(lines.of(v).problem(
                format!(
                    "manifest format version {} is not supported by this runner",
                    v.get_ref()
                ),
                Some(format!(
                    "use `version = {FORMAT_VERSION}`, or a runner that supports this version"
                )),
            ));
        }

        let name = raw.step.name.get_ref().clone();
        if let Err(why) = crate::names::STEP_NAME.check(&name) {
            problems.push(lines.of(&raw.step.name).problem(
                crate::names::STEP_NAME.refusal(&name, &why),
                Some(crate::names::STEP_NAME.rule.into()),
            ));
        }

        let component = PathBuf::from(raw.step.component.get_ref());
        if raw.step.component.get_ref().is_empty() {
            problems.push(lines.of(&raw.step.component).problem(
                "component path is empty",
                Some("give the path of the step's .wasm file, relative to this manifest".into()),
            ));
        }

        let digest = match Sha256Digest::parse(raw.step.digest.get_ref()) {
            Ok(d) => d,
            Err(msg) => {
                problems.push(
                    lines.of(&raw.step.digest).problem(
                        msg.to_string(),
                        Some(
                            "run `cordon pin <manifest>` to write the component's current digest"
                                .into(),
                        ),
                    ),
                );
                // Never used: the manifest is refused with the problem.
                Sha256Digest::from_bytes([0; 32])
            }
        };

        let mut env = BTreeMap::new();
        for (k, v) in &raw.env {
            if !is_valid_env_name(k.get_ref()) {
                problems.push(lines.of(k).problem(
                    format!("environment variable name `{}` is invalid", k.get_ref()),
                    Some("use letters, digits and `_`, not starting with a digit".into()),
                ));
            } else if v.get_ref().contains('\0') {
                problems.push(
                    lines
                        .of(v)
                        .problem("environment value contains a NUL byte", None),
                );
            } else {
                env.insert(k.get_ref().clone(), v.get_ref().clone());
            }
        }

        let mut mounts: Vec<Mount> = Vec::new();
        let mut guest_seen: Vec<(String, Location)> = Vec::new();
        for m in &raw.mounts {
            let guest_at = lines.of(&m.guest);
            let guest = match normalize_guest(m.guest.get_ref()) {
                Ok(g) => g,
                Err(msg) => {
                    problems.push(
                        guest_at.problem(msg, Some("write it like `/data` or `/out/model`".into())),
                    );
                    continue;
                }
            };
            if let Some((_, first)) = guest_seen.iter().find(|(g, _)| *g == guest) {
                problems.push(guest_at.problem(
                    format!(
                        "guest path `{guest}` is mounted twice (first at line {})",
                        first.line
                    ),
                    Some("give each mount its own guest path".into()),
                ));
                continue;
            }
            if let Some((other, first)) = guest_seen.iter().find(|(g, _)| guest_nested(g, &guest)) {
                problems.push(guest_at.problem(
                    format!("guest path `{guest}` is nested with `{other}` (line {})", first.line),
                    Some("mount directories side by side, e.g. `/in` and `/out`, not one inside the other".into()),
                ));
                continue;
            }
            guest_seen.push((guest.clone(), guest_at));
            let host_at = lines.of(&m.host);
            if m.host.get_ref().is_empty() {
                problems.push(host_at.problem(
                    "host path is empty",
                    Some("use `.` for the manifest's own directory".into()),
                ));
                continue;
            }
            if m.purpose.get_ref().trim().is_empty() {
                problems.push(
                    lines.of(&m.purpose).problem(
                        "purpose is empty",
                        Some(
                            "say why the step needs this directory; reviewers and records read it"
                                .into(),
                        ),
                    ),
                );
            }
            let mut requires_promoted = false;
            if let Some(r) = &m.requires {
                let at = lines.of(r);
                if r.get_ref() != REQUIRES_PROMOTED {
                    problems.push(at.problem(
                        format!(
                            "mount `{guest}` requires `{}`, which is not a requirement",
                            r.get_ref()
                        ),
                        Some(format!(
                            "write `requires = \"{REQUIRES_PROMOTED}\"`, or remove `requires`"
                        )),
                    ));
                } else if *m.access.get_ref() != Access::Read {
                    problems.push(at.problem(
                        format!("mount `{guest}` requires promoted inputs but is not a `read` mount"),
                        Some("only an input can require promotion: make it `access = \"read\"`, or remove `requires`".into()),
                    ));
                } else {
                    requires_promoted = true;
                }
            }
            let mut keep_existing = false;
            if let Some(e) = &m.existing {
                let at = lines.of(e);
                match e.get_ref().as_str() {
                    _ if *m.access.get_ref() != Access::Write => problems.push(at.problem(
                        format!("mount `{guest}` says what to do with existing data but is not a `write` mount"),
                        Some("only a `write` mount replaces its directory: make it `access = \"write\"`, or remove `existing`".into()),
                    )),
                    EXISTING_KEEP => keep_existing = true,
                    EXISTING_REFUSE => {}
                    other => problems.push(at.problem(
                        format!(
                            "mount `{guest}` has `existing = \"{}\"`, which is not a choice",
                            cordon_core::sanitize::escape_for_terminal(other)
                        ),
                        Some(format!(
                            "write `existing = \"{EXISTING_KEEP}\"` (keep unrecorded data in the content store before replacing it) or `existing = \"{EXISTING_REFUSE}\"` (the default: refuse the run)"
                        )),
                    )),
                }
            }
            mounts.push(Mount {
                guest,
                host: PathBuf::from(m.host.get_ref()),
                host_at,
                access: *m.access.get_ref(),
                purpose: m.purpose.get_ref().clone(),
                classification: m.classification.as_ref().map(|c| *c.get_ref()),
                requires_promoted,
                keep_existing,
            });
        }

        let mut secrets: Vec<SecretGrant> = Vec::new();
        for s in &raw.secrets {
            let at = lines.of(&s.name);
            let sname = s.name.get_ref();
            if !is_valid_name(sname) {
                problems.push(at.problem(
                    format!("secret name `{sname}` is invalid"),
                    Some("use lowercase letters, digits and `-`, starting with a letter".into()),
                ));
                continue;
            }
            if let Some(first) = secrets.iter().find(|g| g.name == *sname) {
                problems.push(at.problem(
                    format!(
                        "secret `{sname}` is granted twice (first at line {})",
                        first.at.line
                    ),
                    Some("list all its uses in one `[[secret]]` table".into()),
                ));
                continue;
            }
            let mut uses = BTreeSet::new();
            for u in s.uses.get_ref() {
                if !uses.insert(*u.get_ref()) {
                    problems.push(lines.of(u).problem("use listed twice", None));
                }
            }
            if uses.is_empty() {
                problems.push(lines.of(&s.uses).problem(
                    format!("secret `{sname}` grants no uses"),
                    Some("list what the step may do with it, e.g. `uses = [\"hmac\"]`, or remove the grant".into()),
                ));
            }
            let key = s.key.as_ref().map(|k| k.get_ref().clone());
            if let Some(k) = &s.key
                && !is_valid_secret_key(k.get_ref())
            {
                problems.push(lines.of(k).problem(
                    format!("secret key `{}` is invalid", k.get_ref()),
                    Some("use letters, digits, `-`, `_`, `.` and `/` between path segments (no empty or `..` segments)".into()),
                ));
            }
            let hosts: Vec<String> = s
                .hosts
                .as_ref()
                .map(|h| h.get_ref().iter().map(|x| x.to_ascii_lowercase()).collect())
                .unwrap_or_default();
            let header = uses.contains(&SecretUse::HttpHeader);
            match (&s.hosts, header) {
                (Some(h), false) => problems.push(lines.of(h).problem(
                    format!("secret `{sname}` lists hosts but not the `http-header` use"),
                    Some("add \"http-header\" to `uses`, or remove `hosts`".into()),
                )),
                (None, true) => problems.push(lines.of(&s.uses).problem(
                    format!("secret `{sname}` may be sent as an HTTP header, but no hosts are bound to it"),
                    Some("add `hosts = [\"api.example.com\"]`: the only hosts the runner will send it to".into()),
                )),
                (Some(h), true) => {
                    if hosts.is_empty() {
                        problems.push(lines.of(h).problem("`hosts` is empty", Some("bind at least one host".into())));
                    }
                    for host in &hosts {
                        if BoundHost::parse(host).is_none() {
                            problems.push(lines.of(h).problem(
                                format!("`{host}` is not a host (`name`, `name:port`, `https://name[:port]` or `http://name[:port]`)"),
                                None,
                            ));
                        }
                    }
                }
                (None, false) => {}
            }
            secrets.push(SecretGrant {
                name: sname.clone(),
                uses,
                key,
                hosts,
                at,
            });
        }

        let mut network = None;
        if let Some(n) = &raw.network {
            let mut allow = Vec::new();
            for entry in &n.allow {
                let at = lines.of(entry);
                let (url, methods) = match entry.get_ref() {
                    RawAllow::Url(u) => (u.clone(), None),
                    RawAllow::Rule { url, methods } => (url.clone(), methods.clone()),
                };
                match parse_allow_url(&url) {
                    Ok((scheme, host, port, path_prefix)) => {
                        let methods = methods
                            .map(|m| m.iter().map(|x| x.to_ascii_uppercase()).collect::<Vec<_>>());
                        if let Some(m) = &methods
                            && (m.is_empty()
                                || m.iter().any(|x| {
                                    x.is_empty() || !x.bytes().all(|b| b.is_ascii_alphabetic())
                                }))
                        {
                            problems.push(at.problem(
                                format!(
                                    "`{url}`: methods must be HTTP method names such as \"GET\""
                                ),
                                None,
                            ));
                        }
                        allow.push(AllowRule {
                            url,
                            scheme,
                            host,
                            port,
                            path_prefix,
                            methods,
                        });
                    }
                    Err(msg) => problems.push(at.problem(
                        msg.to_string(),
                        Some("write destinations as `https://host[:port]/path/prefix/`".into()),
                    )),
                }
            }
            if allow.is_empty() {
                problems.push(Problem {
                    line: 0,
                    column: 0,
                    message: "`[network]` grants no destination".into(),
                    fix: Some("list destinations in `allow`, or remove `[network]`".into()),
                });
            }
            network = Some(NetworkGrant { allow });
        }
        for g in &secrets {
            if g.uses.contains(&SecretUse::HttpHeader) && network.is_none() {
                problems.push(g.at.problem(
                    format!("secret `{}` may be sent as an HTTP header, but the step has no `[network]` grant", g.name),
                    Some("add `[network] allow = [...]` for the hosts, or remove the `http-header` use".into()),
                ));
            }
        }

        let mut limits = Limits::default();
        let mut limits_set = Vec::new();
        if let Some(l) = &raw.limits {
            for (name, set) in [
                ("fuel", l.fuel.is_some()),
                ("memory", l.memory.is_some()),
                ("timeout", l.timeout.is_some()),
                ("output", l.output.is_some()),
                ("stdout", l.stdout.is_some()),
                ("requests", l.requests.is_some()),
                ("request-bytes", l.request_bytes.is_some()),
                ("request-timeout", l.request_timeout.is_some()),
            ] {
                if set {
                    limits_set.push(name);
                }
            }
            if let Some(f) = &l.fuel {
                if *f.get_ref() <= 0 {
                    problems.push(lines.of(f).problem("fuel must be positive", None));
                } else {
                    limits.fuel = *f.get_ref() as u64;
                }
            }
            let mut size = |v: &Option<Spanned<String>>, slot: &mut u64, what: &str| {
                if let Some(v) = v {
                    match parse_size(v.get_ref()) {
                        Ok(0) => problems.push(
                            lines
                                .of(v)
                                .problem(format!("{what} limit must be more than zero"), None),
                        ),
                        Ok(n) => *slot = n,
                        Err(msg) => problems.push(lines.of(v).problem(msg.to_string(), None)),
                    }
                }
            };
            size(&l.memory, &mut limits.memory, "memory");
            size(&l.output, &mut limits.output, "output");
            size(&l.stdout, &mut limits.stdout, "stdout");
            if let Some(t) = &l.timeout {
                match parse_duration(t.get_ref()) {
                    Ok(d) if d.is_zero() => {
                        problems.push(lines.of(t).problem("timeout must be more than zero", None))
                    }
                    Ok(d) => limits.timeout = d,
                    Err(msg) => problems.push(lines.of(t).problem(msg.to_string(), None)),
                }
            }
            if let Some(r) = &l.requests {
                if *r.get_ref() <= 0 {
                    problems.push(lines.of(r).problem("requests must be positive", None));
                } else {
                    limits.requests = *r.get_ref() as u64;
                }
            }
            if let Some(b) = &l.request_bytes {
                match parse_size(b.get_ref()) {
                    Ok(0) => problems.push(
                        lines
                            .of(b)
                            .problem("request-bytes must be more than zero", None),
                    ),
                    Ok(n) => limits.request_bytes = n,
                    Err(msg) => problems.push(lines.of(b).problem(msg.to_string(), None)),
                }
            }
            if let Some(t) = &l.request_timeout {
                match parse_duration(t.get_ref()) {
                    Ok(d) if d.is_zero() => problems.push(
                        lines
                            .of(t)
                            .problem("request-timeout must be more than zero", None),
                    ),
                    Ok(d) => limits.request_timeout = d,
                    Err(msg) => problems.push(lines.of(t).problem(msg.to_string(), None)),
                }
            }
        }
        if limits.memory > 4 << 30 {
            problems.push(Problem {
                line: 0,
                column: 0,
                message: "memory limit above 4GiB: a wasm32 step cannot address more".into(),
                fix: Some("use at most `memory = \"4GiB\"`".into()),
            });
        }

        problems.sort_by_key(|p| (p.line, p.column));
        if !problems.is_empty() {
            return Err(fail(problems));
        }
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Ok(Manifest {
            path: path.to_path_buf(),
            dir,
            sha256: Sha256Digest::of(source.as_bytes()),
            name,
            component,
            component_at: lines.of(&raw.step.component),
            digest,
            digest_at: lines.of(&raw.step.digest),
            args: raw.step.args,
            env,
            mounts,
            secrets,
            limits,
            network,
            limits_set,
            clock: raw.step.clock,
            random: raw.step.random,
            floats: raw.step.floats,
        })
    }
}

/// A hint for the serde/TOML errors users hit most often.
fn fix_for_parse_error(message: &str) -> Option<String> {
    if message.starts_with("unknown field") {
        Some("remove the key or correct its spelling; the README's manifest reference lists every key".into())
    } else if message.starts_with("missing field") {
        Some("add the key; the README's manifest reference shows an example".into())
    } else if message.starts_with("unknown variant") {
        Some("use one of the values listed".into())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_index_gives_lines_and_columns_in_characters() {
        let src = "a = 1\nbé = \"x\"\n\nlast";
        let idx = LineIndex::new(src);
        let at = |o| {
            let l = idx.at(o);
            (l.line, l.column)
        };
        assert_eq!(at(0), (1, 1));
        assert_eq!(at(5), (1, 6), "the newline ends line 1");
        assert_eq!(at(6), (2, 1));
        assert_eq!(
            at(src.rfind('=').unwrap()),
            (2, 4),
            "columns count characters"
        );
        assert_eq!(at(src.find("last").unwrap()), (4, 1));
        assert_eq!(at(src.len() + 10), (4, 5), "past the end is the end");
    }

    const DIGEST: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

    fn parse(src: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse(Path::new("dir/step.toml"), src)
    }

    fn minimal(extra: &str) -> String {
        format!("[step]\nname = \"s\"\ncomponent = \"s.wasm\"\ndigest = \"{DIGEST}\"\n{extra}")
    }

    #[test]
    fn minimal_manifest_gets_defaults() {
        let m = parse(&minimal("")).unwrap();
        assert_eq!(m.name, "s");
        assert_eq!(m.dir, PathBuf::from("dir"));
        assert_eq!(m.limits, Limits::default());
        assert!(m.mounts.is_empty() && m.env.is_empty() && m.secrets.is_empty());
        assert_eq!((m.clock, m.random), (ClockMode::Fixed, RandomMode::Seeded));
    }

    #[test]
    fn floats_are_native_unless_the_step_says_canonical() {
        assert_eq!(parse(&minimal("")).unwrap().floats, FloatMode::Native);
        let m = parse(&minimal("floats = \"native\"\n")).unwrap();
        assert_eq!(m.floats, FloatMode::Native);
        let m = parse(&minimal("floats = \"canonical\"\n")).unwrap();
        assert_eq!(m.floats, FloatMode::Canonical);
        let err = parse(&minimal("floats = \"fast\"\n")).unwrap_err();
        assert!(
            err.to_string()
                .contains("unknown variant `fast`, expected `canonical` or `native`"),
            "{err}"
        );
    }

    #[test]
    fn clock_and_random_opt_out() {
        let m = parse(&minimal("clock = \"real\"\nrandom = \"real\"\n")).unwrap();
        assert_eq!((m.clock, m.random), (ClockMode::Real, RandomMode::Real));
        let err = parse(&minimal("clock = \"wall\"\n")).unwrap_err();
        assert!(
            err.to_string()
                .contains("unknown variant `wall`, expected `fixed` or `real`"),
            "{err}"
        );
    }

    #[test]
    fn unknown_key_is_located() {
        let err = parse(&minimal("[limits]\nfule = 3\n")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("dir/step.toml:6:1: unknown field `fule`"),
            "{text}"
        );
        assert!(text.contains("fix:"), "{text}");
    }

    #[test]
    fn collects_every_problem() {
        let src = "[step]\nname = \"Bad_Name\"\ncomponent = \"s.wasm\"\ndigest = \"sha256:xyz\"\n\
             [[mount]]\nguest = \"rel\"\nhost = \"a\"\naccess = \"read\"\npurpose = \"p\"\n";
        let err = parse(src).unwrap_err();
        assert_eq!(err.problems.len(), 3, "{err}");
        assert_eq!(err.problems[0].line, 2);
        assert_eq!(err.problems[1].line, 4);
        assert_eq!(err.problems[2].line, 6);
    }

    #[test]
    fn guest_paths_are_normalised_and_unique() {
        assert_eq!(normalize_guest("/data/").unwrap(), "/data");
        assert!(normalize_guest("/data/../etc").is_err());
        assert!(normalize_guest("/a//b").is_err());
        let mount = |g: &str| {
            format!(
                "[[mount]]\nguest = \"{g}\"\nhost = \"h\"\naccess = \"read\"\npurpose = \"p\"\n"
            )
        };
        let err = parse(&minimal(&(mount("/in") + &mount("/in/")))).unwrap_err();
        assert!(err.to_string().contains("mounted twice"), "{err}");
        let err = parse(&minimal(&(mount("/in") + &mount("/in/sub")))).unwrap_err();
        assert!(err.to_string().contains("nested"), "{err}");
    }

    #[test]
    fn limits_parse_and_reject_nonsense() {
        let m = parse(&minimal(
            "[limits]\nfuel = 1_000\nmemory = \"64MiB\"\ntimeout = \"2s\"\n",
        ))
        .unwrap();
        assert_eq!(m.limits.fuel, 1000);
        assert_eq!(m.limits.memory, 64 << 20);
        assert_eq!(m.limits.timeout, Duration::from_secs(2));
        let err = parse(&minimal("[limits]\nmemory = \"lots\"\n")).unwrap_err();
        assert!(err.to_string().contains("dir/step.toml:6:10"), "{err}");
    }

    #[test]
    fn version_is_checked() {
        let err = parse(&format!("version = 2\n{}", minimal(""))).unwrap_err();
        assert!(
            err.to_string().contains("version 2 is not supported"),
            "{err}"
        );
        assert!(parse(&format!("version = 1\n{}", minimal(""))).is_ok());
    }

    #[test]
    fn secret_uses_must_be_known() {
        let err = parse(&minimal(
            "[[secret]]\nname = \"k\"\nuses = [\"exfiltrate\"]\n",
        ))
        .unwrap_err();
        assert!(
            err.to_string().contains("unknown variant `exfiltrate`"),
            "{err}"
        );
    }
}
