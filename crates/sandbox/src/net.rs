//! Outgoing HTTP for steps with a `[network]` grant, through `wasi:http`.
//!
//! Every request passes through [`NetHooks::send_request`] before any
//! connection is made: the request count limit, then the allowlist (scheme,
//! host, port, path prefix, method), then the secrets. A header value that
//! carries a secret's placeholder (what `secret.http-header-placeholder`
//! hands the guest) gets the real value only when the request goes to a
//! host the secret is bound to; otherwise the request is refused. Bodies
//! are buffered within the byte limit so that the runner can hash them and
//! redact any echo of a secret from the response before the guest reads it.
//! Redirects are never followed by the runner: a guest that follows one
//! makes a new request, which is checked like any other. Every request,
//! sent or refused, is recorded.

use bytes::Bytes;
use cordon_manifest::manifest::{AllowRule, NetworkGrant, split_host_port};
use cordon_secrets::{Redactor, ResolvedSecret, SecretValue};
use http_body_util::{BodyExt, Full};
use sha2::{Digest as _, Sha256};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

pub use cordon_record::run::{NetworkCall, OmittedCalls};

/// A call with `outcome` that moved no bytes yet: what a refusal records,
/// and where a sent call starts.
fn new_call(method: String, url: String, outcome: &str, secrets: Vec<String>) -> NetworkCall {
    NetworkCall {
        method,
        url,
        outcome: outcome.into(),
        reason: None,
        status: None,
        bytes_sent: 0,
        bytes_received: 0,
        request_sha256: None,
        response_sha256: None,
        duration_ms: 0,
        secrets,
    }
}

/// A secret the step may send as an HTTP header.
#[derive(Clone)]
pub(crate) struct Bound {
    pub name: String,
    pub placeholder: String,
    pub value: SecretValue,
    pub hosts: Vec<String>,
}

/// The per-run limits on HTTP.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NetLimits {
    pub requests: u64,
    pub bytes: u64,
    pub timeout: Duration,
}

/// Most calls a record lists one by one. Every call a step makes, refused
/// ones included, costs the runner memory and the record bytes; a step
/// that fires thousands of refused requests must not grow either without
/// bound. Past this many, calls are only counted ([`OmittedCalls`]), so a
/// record's network part is at most about
/// `MAX_RECORDED_CALLS × (2 × MAX_RECORDED_URL + 1 KiB)` ≈ 1.25 MiB (the
/// URL and the refusal reason, which quotes the path, are each cut).
pub const MAX_RECORDED_CALLS: usize = 256;

/// Longest URL a record keeps (bytes); a longer one is cut at a character
/// boundary and marked with its full length. A refusal reason, which
/// names the path it refused, is cut at the same length.
pub const MAX_RECORDED_URL: usize = 2048;

#[derive(Debug, Default)]
pub(crate) struct NetState {
    pub calls: Vec<NetworkCall>,
    pub omitted: Option<OmittedCalls>,
    requests: u64,
    bytes: u64,
}

impl NetState {
    /// Keeps `call` for the record, or only counts it once the list is full.
    fn log(&mut self, mut call: NetworkCall) {
        if self.calls.len() < MAX_RECORDED_CALLS {
            cut_for_record(&mut call.url);
            if let Some(reason) = call.reason.as_mut() {
                cut_for_record(reason);
            }
            self.calls.push(call);
            return;
        }
        let o = self.omitted.get_or_insert_with(OmittedCalls::default);
        match call.outcome.as_str() {
            "sent" => o.sent += 1,
            "refused" => o.refused += 1,
            _ => o.failed += 1,
        }
    }
}

/// Cuts `text` at [`MAX_RECORDED_URL`] bytes (at a character boundary),
/// marked with its full length.
fn cut_for_record(text: &mut String) {
    if text.len() > MAX_RECORDED_URL {
        let total = text.len();
        let mut cut = MAX_RECORDED_URL;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str(&format!("…({total} bytes)"));
    }
}

/// The hooks wasmtime-wasi-http calls for every outgoing request.
pub(crate) struct NetHooks {
    allow: Vec<AllowRule>,
    bound: Arc<Vec<Bound>>,
    redactor: Redactor,
    limits: NetLimits,
    pub state: Arc<Mutex<NetState>>,
}

/// The placeholder a guest puts in a header for secret `name`: unguessable,
/// fresh per run, and meaningless anywhere but in this runner.
pub(crate) fn placeholder_for(name: &str) -> String {
    format!("cordon-secret:{name}:{:032x}", rand::random::<u128>())
}

impl NetHooks {
    pub(crate) fn new(
        grant: &NetworkGrant,
        bound: Vec<Bound>,
        all_secrets: &[ResolvedSecret],
        limits: NetLimits,
    ) -> NetHooks {
        NetHooks {
            allow: grant.allow.clone(),
            bound: Arc::new(bound),
            redactor: Redactor::new(all_secrets),
            limits,
            state: Arc::new(Mutex::new(NetState::default())),
        }
    }
}

/// The URL with query values redacted: names of parameters are kept, their
/// values (which often carry tokens) are not.
fn redacted_url(uri: &http::Uri) -> String {
    let mut out = format!(
        "{}://{}{}",
        uri.scheme_str().unwrap_or("https"),
        uri.authority().map(|a| a.as_str()).unwrap_or(""),
        uri.path()
    );
    if let Some(q) = uri.query() {
        let parts: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) => format!("{k}=REDACTED"),
                None => kv.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&parts.join("&"));
    }
    out
}

/// Decodes `%XX` escapes; `None` when an escape is malformed.
fn percent_decode(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let text = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(text, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Why a request path cannot be judged against a path prefix the way the
/// server will read it, if it cannot.
///
/// Servers do not all read a path the same way: Tomcat and other Java
/// servers drop `;…` parameters from each segment before resolving `..`
/// (`/api/..;/admin` is `/admin` to them), many decode percent-escapes
/// once more than once (`%252e%252e`), some accept overlong UTF-8 for `.`
/// and `/` (`%c0%ae`), and Windows-minded ones treat `\` as `/`. A prefix
/// check on the raw string is only sound when none of that can change the
/// path's meaning, so every such spelling is refused and the path that was
/// judged is exactly the path that is sent. docs/network.md lists the
/// refused spellings.
fn path_problem(path: &str) -> Option<String> {
    if path.contains('\\') {
        return Some("a backslash, which some servers read as `/`".into());
    }
    if path.contains(';') {
        return Some("a `;` parameter, which servers such as Tomcat strip from a segment before resolving it".into());
    }
    for seg in path.split('/') {
        let Some(once) = percent_decode(seg.as_bytes()) else {
            return Some(format!("a malformed percent-escape in `{seg}`"));
        };
        if std::str::from_utf8(&once).is_err() {
            return Some(format!(
                "bytes in `{seg}` that are not UTF-8 (overlong encodings of `.` or `/` among them)"
            ));
        }
        // A segment that still holds an escape after one decoding was
        // encoded twice (or more): only a server that decodes as often as
        // the encoder did reads it as meant, so none is trusted to.
        let reescaped = once
            .windows(3)
            .any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit());
        let twice = percent_decode(&once).unwrap_or_else(|| once.clone());
        for (form, how) in [(&once, "decoded"), (&twice, "decoded twice")] {
            let dots = form.as_slice() == b"." || form.as_slice() == b"..";
            let separator = form.iter().any(|&b| matches!(b, b'/' | b'\\' | b';' | 0));
            if dots && form.as_slice() != seg.as_bytes() {
                return Some(format!(
                    "a segment that {how} is `{}`",
                    String::from_utf8_lossy(form)
                ));
            }
            if dots {
                return Some(format!("a `{seg}` segment"));
            }
            if separator {
                return Some(format!("an encoded separator or NUL in `{seg}` ({how})"));
            }
        }
        if reescaped {
            return Some(format!("a percent-escape encoded twice in `{seg}`"));
        }
    }
    None
}

/// The rule that admits `method scheme://host:port/path`, if any.
fn admitted<'a>(
    allow: &'a [AllowRule],
    method: &str,
    scheme: &str,
    host: &str,
    port: u16,
    path: &str,
) -> Result<&'a AllowRule, String> {
    if let Some(problem) = path_problem(path) {
        return Err(format!(
            "the path {path} has {problem}; only paths every server reads the same way are allowed"
        ));
    }
    let mut method_refused = None;
    for rule in allow {
        if rule.scheme == scheme
            && rule.host == host
            && rule.port == port
            && path.starts_with(&rule.path_prefix)
        {
            match &rule.methods {
                Some(m) if !m.iter().any(|x| x == method) => {
                    method_refused = Some(rule);
                }
                _ => return Ok(rule),
            }
        }
    }
    Err(match method_refused {
        Some(rule) => format!(
            "method {method} is not granted for {} (granted: {})",
            rule.url,
            rule.methods.as_deref().unwrap_or_default().join(", ")
        ),
        None => format!("{scheme}://{host}:{port}{path} is not in the step's network grant"),
    })
}

fn hex_sha256(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

type Io = Box<dyn std::future::Future<Output = Result<(), HttpError>> + Send>;
type Sent =
    Box<dyn std::future::Future<Output = Result<(http::Response<WasiBody>, Io), HttpError>> + Send>;

/// Collects `body` as long as it stays within `budget` bytes.
async fn collect_within(
    mut body: WasiBody,
    budget: u64,
    request: bool,
) -> Result<Vec<u8>, HttpError> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        if let Ok(data) = frame.into_data() {
            if out.len() as u64 + data.len() as u64 > budget {
                let n = Some(out.len() as u64 + data.len() as u64);
                return Err(if request {
                    HttpError::HttpRequestBodySize(n)
                } else {
                    HttpError::HttpResponseBodySize(n)
                });
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

/// How a response body was encoded, for the echo check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyCoding {
    Gzip,
    Deflate,
    Brotli,
}

impl BodyCoding {
    fn of(headers: &http::HeaderMap) -> Option<BodyCoding> {
        let v = headers.get(http::header::CONTENT_ENCODING)?.to_str().ok()?;
        match v.trim().to_ascii_lowercase().as_str() {
            "gzip" | "x-gzip" => Some(BodyCoding::Gzip),
            "deflate" => Some(BodyCoding::Deflate),
            "br" => Some(BodyCoding::Brotli),
            _ => None,
        }
    }
}

/// Decodes a compressed body, reading at most `budget` decoded bytes: a
/// small body must not inflate into the runner's memory without bound (a
/// compression bomb), so what decodes past the budget is an error.
fn decode_body(coding: BodyCoding, body: &[u8], budget: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let reader: Box<dyn Read + '_> = match coding {
        BodyCoding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(body)),
        // `deflate` is zlib-wrapped by the standard; some servers send raw
        // deflate: try zlib first, as browsers do.
        BodyCoding::Deflate => {
            let mut probe = flate2::read::ZlibDecoder::new(body);
            let mut first = [0u8; 1];
            if probe.read(&mut first).is_ok() {
                Box::new(flate2::read::ZlibDecoder::new(body))
            } else {
                Box::new(flate2::read::DeflateDecoder::new(body))
            }
        }
        BodyCoding::Brotli => Box::new(brotli_decompressor::Decompressor::new(body, 4096)),
    };
    let mut out = Vec::new();
    reader
        .take(budget.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    if out.len() as u64 > budget {
        return Err(format!(
            "it decodes to more than the {budget} bytes left of the request-bytes limit"
        ));
    }
    Ok(out)
}

/// The response body the guest may read. A body compressed with gzip,
/// deflate or br is decoded and scanned like a plain one: a bound host that
/// echoes a token inside a compressed body would otherwise hand the value
/// to the step, which decodes it. When the decoded body holds a value it is
/// delivered decoded and redacted, without its `Content-Encoding`; a body
/// that cannot be decoded (or would decode past the byte budget) is not
/// delivered at all. Other encodings pass unchanged: a server that hides
/// credentials in an encoding of its own is outside what the runner can see
/// (docs/network.md).
fn deliverable_body(
    headers: &mut http::HeaderMap,
    received: Vec<u8>,
    redactor: &Redactor,
    budget: u64,
) -> Result<Vec<u8>, String> {
    let Some(coding) = BodyCoding::of(headers) else {
        return Ok(redactor.redact(&received).into_owned());
    };
    if redactor.is_empty() {
        return Ok(received);
    }
    let decoded = decode_body(coding, &received, budget).map_err(|e| {
        format!(
            "the response body, encoded as {coding:?}, cannot be checked for echoed secrets: {e}"
        )
    })?;
    if !redactor.contains_secret(&decoded) {
        return Ok(received);
    }
    headers.remove(http::header::CONTENT_ENCODING);
    headers.remove(http::header::CONTENT_LENGTH);
    Ok(redactor.redact(&decoded).into_owned())
}

fn full(bytes: Vec<u8>) -> WasiBody {
    Full::new(Bytes::from(bytes))
        .map_err(|never| match never {})
        .boxed_unsync()
}

impl WasiHttpHooks for NetHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn std::future::Future<Output = Result<(), HttpError>> + Send>,
    ) -> Sent {
        let started = Instant::now();
        let method = request.method().as_str().to_string();
        let uri = request.uri().clone();
        let url = redacted_url(&uri);
        let state = self.state.clone();
        let record = move |call: NetworkCall| {
            if let Ok(mut st) = state.lock() {
                st.log(call);
            }
        };
        let refuse = |reason: String, secrets: Vec<String>| NetworkCall {
            reason: Some(reason),
            ..new_call(method.clone(), url.clone(), "refused", secrets)
        };

        // 1. The request count.
        {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if st.requests >= self.limits.requests {
                let call = refuse(
                    format!("the request limit of {} is reached", self.limits.requests),
                    vec![],
                );
                st.log(call);
                return Box::new(async { Err(HttpError::HttpRequestDenied) });
            }
            st.requests += 1;
        }

        // 2. The allowlist, before any connection.
        let scheme = uri.scheme_str().unwrap_or("https").to_ascii_lowercase();
        let default_port = if scheme == "http" { 80 } else { 443 };
        let Some((host, port)) = uri
            .authority()
            .and_then(|a| split_host_port(a.as_str(), default_port))
        else {
            record(refuse("the URL has no valid host".into(), vec![]));
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        };
        if let Err(reason) = admitted(&self.allow, &method, &scheme, &host, port, uri.path()) {
            record(refuse(reason, vec![]));
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }

        // 3. Secrets: placeholders become values only for bound hosts.
        let (mut parts, body) = request.into_parts();
        let mut attached = Vec::new();
        for value in parts.headers.values_mut() {
            let Ok(text) = value.to_str() else { continue };
            if !text.contains("cordon-secret:") {
                continue;
            }
            // Zeroed when dropped; the `HeaderValue` built from it (the
            // http crate's copy, marked sensitive) is the one copy that is
            // not, and it lives only until the request is sent.
            let mut replaced = zeroize::Zeroizing::new(text.as_bytes().to_vec());
            for b in self.bound.iter() {
                if !text.contains(&b.placeholder) {
                    continue;
                }
                let host_port = format!("{host}:{port}");
                if !b.hosts.iter().any(|h| {
                    cordon_manifest::manifest::BoundHost::parse(h)
                        .is_some_and(|h| h.admits(&scheme, &host, port))
                }) {
                    // The same host over https (at this port, or the bare
                    // host with https's default): say how to allow http.
                    let plain = scheme == "http"
                        && b.hosts.iter().any(|h| {
                            cordon_manifest::manifest::BoundHost::parse(h).is_some_and(|h| {
                                h.scheme == "https"
                                    && h.host == host
                                    && (h.port == port || h.port == 443)
                            })
                        });
                    let reason = if plain {
                        format!(
                            "secret `{}` is bound to {host} over https only; it is never sent over plain http unless `hosts` says `http://{host_port}`",
                            b.name
                        )
                    } else {
                        format!(
                            "secret `{}` is not bound to host {scheme}://{host_port} (bound: {})",
                            b.name,
                            b.hosts.join(", ")
                        )
                    };
                    record(refuse(reason, vec![b.name.clone()]));
                    return Box::new(async { Err(HttpError::HttpRequestDenied) });
                }
                replaced =
                    zeroize::Zeroizing::new(b.value.with_bytes(|value| {
                        replace_all(&replaced, b.placeholder.as_bytes(), value)
                    }));
                attached.push(b.name.clone());
            }
            match http::HeaderValue::from_bytes(&replaced) {
                Ok(mut v) => {
                    v.set_sensitive(true);
                    *value = v;
                }
                Err(_) => {
                    record(refuse(
                        "a secret's value cannot be sent in an HTTP header (it is not a valid header value)".into(),
                        attached.clone(),
                    ));
                    return Box::new(async { Err(HttpError::HttpRequestDenied) });
                }
            }
        }

        // 4. Send, within the byte budget and the per-request timeout.
        let limits = self.limits;
        let redactor = self.redactor.clone();
        let state = self.state.clone();
        Box::new(async move {
            let budget = {
                let st = state.lock().unwrap_or_else(|p| p.into_inner());
                limits.bytes.saturating_sub(st.bytes)
            };
            let mut call = new_call(method, url, "failed", attached);
            let finish = |mut call: NetworkCall, used: u64| {
                call.duration_ms = started.elapsed().as_millis() as u64;
                let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
                st.bytes += used;
                st.log(call);
            };
            let exchange = async {
                let sent = collect_within(body, budget, true).await?;
                let sent_len = sent.len() as u64;
                let sent_sha = hex_sha256(&sent);
                let request = http::Request::from_parts(parts, full(sent));
                let options = RequestOptions {
                    connect_timeout: Some(limits.timeout),
                    first_byte_timeout: Some(limits.timeout),
                    between_bytes_timeout: Some(limits.timeout),
                };
                let (response, io) =
                    wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
                // Drive the connection while the body is read.
                let io = tokio::spawn(io);
                let (mut rparts, rbody) = response.into_parts();
                let received =
                    collect_within(rbody.boxed_unsync(), budget.saturating_sub(sent_len), false)
                        .await;
                io.abort();
                let received = received?;
                // Any echo of a secret is gone before the guest sees it,
                // in the headers and in the body, compressed or not.
                for v in rparts.headers.values_mut() {
                    if redactor.contains_secret(v.as_bytes())
                        && let Ok(clean) =
                            http::HeaderValue::from_bytes(&redactor.redact(v.as_bytes()))
                    {
                        *v = clean;
                    }
                }
                let body = deliverable_body(
                    &mut rparts.headers,
                    received,
                    &redactor,
                    budget.saturating_sub(sent_len),
                )
                .map_err(|why| HttpError::InternalError(Some(why)))?;
                Ok::<_, HttpError>((sent_len, sent_sha, rparts.status.as_u16(), rparts, body))
            };
            match tokio::time::timeout(limits.timeout, exchange).await {
                Err(_) => {
                    call.reason = Some(format!(
                        "no complete response within the request timeout of {} ms",
                        limits.timeout.as_millis()
                    ));
                    finish(call, 0);
                    Err(HttpError::HttpResponseTimeout)
                }
                Ok(Err(e)) => {
                    call.reason = Some(redactor.redact_str(&e.to_string()));
                    finish(call, 0);
                    Err(e)
                }
                Ok(Ok((sent_len, sent_sha, status, rparts, received))) => {
                    call.outcome = "sent".into();
                    call.status = Some(status);
                    call.bytes_sent = sent_len;
                    call.bytes_received = received.len() as u64;
                    call.request_sha256 = Some(sent_sha);
                    call.response_sha256 = Some(hex_sha256(&received));
                    let used = call.bytes_sent + call.bytes_received;
                    finish(call, used);
                    let response = http::Response::from_parts(rparts, full(received));
                    Ok((response, Box::new(async { Ok(()) }) as Io))
                }
            }
        })
    }
}

fn replace_all(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use cordon_manifest::manifest::parse_allow_url;

    fn rule(url: &str, methods: Option<&[&str]>) -> AllowRule {
        let (scheme, host, port, path_prefix) = parse_allow_url(url).unwrap();
        AllowRule {
            url: url.into(),
            scheme,
            host,
            port,
            path_prefix,
            methods: methods.map(|m| m.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn scheme_host_port_prefix_and_method_must_all_match() {
        let allow = [
            rule("http://127.0.0.1:8080/hooks/", None),
            rule("https://registry.example.com/v2/", Some(&["GET", "PUT"])),
        ];
        let ok = |m, s, h, p, path| admitted(&allow, m, s, h, p, path).is_ok();
        assert!(ok("POST", "http", "127.0.0.1", 8080, "/hooks/deploy"));
        assert!(!ok("POST", "http", "127.0.0.1", 8081, "/hooks/deploy"));
        assert!(!ok("POST", "https", "127.0.0.1", 8080, "/hooks/deploy"));
        assert!(!ok("POST", "http", "localhost", 8080, "/hooks/deploy"));
        assert!(!ok("POST", "http", "127.0.0.1", 8080, "/admin"));
        assert!(!ok("POST", "http", "127.0.0.1", 8080, "/hooks/../admin"));
        assert!(!ok(
            "POST",
            "http",
            "127.0.0.1",
            8080,
            "/hooks/%2e%2e/admin"
        ));
        assert!(!ok(
            "POST",
            "http",
            "127.0.0.1",
            8080,
            "/hooks%2f..%2fadmin"
        ));
        assert!(ok("PUT", "https", "registry.example.com", 443, "/v2/x"));
        let err = admitted(
            &allow,
            "DELETE",
            "https",
            "registry.example.com",
            443,
            "/v2/x",
        )
        .unwrap_err();
        assert!(err.contains("method DELETE is not granted"), "{err}");
    }

    #[test]
    fn every_spelling_a_server_might_read_differently_is_refused() {
        for p in [
            "/api/..;/admin",
            "/api/%2e%2e;/admin",
            "/api/x/..;jsessionid=1/..;/admin",
            "/api/%252e%252e/admin",
            "/api/%25252e/admin",
            "/api/%c0%ae%c0%ae/admin",
            "/api/%e0%80%ae/admin",
            "/api/..%5cadmin",
            "/api/a\\..\\admin",
            "/api/%2e%2e%2fadmin",
            "/api/%2fadmin",
            "/api/.%2e/admin",
            "/api/./admin",
            "/api/x/../admin",
            "/api/%00",
            "/api/%zz",
            "/api/%",
        ] {
            assert!(path_problem(p).is_some(), "{p} must be refused");
        }
        for p in ["/api/ok", "/api/a.b/c..d", "/api/%41bc", "/api/x%20y", "/"] {
            assert_eq!(path_problem(p), None, "{p} is plain");
        }
    }

    #[test]
    fn bound_hosts_mean_https_unless_they_say_http() {
        use cordon_manifest::manifest::BoundHost;
        let bare = BoundHost::parse("Registry.Example.com").unwrap();
        assert!(bare.admits("https", "registry.example.com", 443));
        assert!(!bare.admits("http", "registry.example.com", 80));
        assert!(!bare.admits("https", "registry.example.com", 8443));
        let port = BoundHost::parse("h:8443").unwrap();
        assert!(port.admits("https", "h", 8443) && !port.admits("http", "h", 8443));
        let http = BoundHost::parse("http://h:8080").unwrap();
        assert!(http.admits("http", "h", 8080) && !http.admits("https", "h", 8080));
        assert!(
            BoundHost::parse("http://h")
                .unwrap()
                .admits("http", "h", 80)
        );
        for bad in ["ftp://h", "https://h/path", "https://u@h", "", "https://"] {
            assert!(BoundHost::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn the_call_log_is_bounded_and_counts_the_rest() {
        let mut st = NetState::default();
        let call = |outcome: &str, url: String| new_call("GET".into(), url, outcome, vec![]);
        st.log(call(
            "sent",
            format!("http://h/{}", "é".repeat(MAX_RECORDED_URL)),
        ));
        assert!(st.calls[0].url.len() < MAX_RECORDED_URL + 32);
        assert!(st.calls[0].url.ends_with("bytes)"));
        let long = format!("http://h/{}", "a".repeat(4 * MAX_RECORDED_URL));
        st.log(NetworkCall {
            reason: Some(format!("{long} is not in the step's network grant")),
            ..call("refused", long)
        });
        let reason = st.calls[1].reason.as_deref().unwrap();
        assert!(reason.len() < MAX_RECORDED_URL + 32, "{}", reason.len());
        assert!(reason.ends_with("bytes)"));
        for _ in 2..MAX_RECORDED_CALLS + 3 {
            st.log(call("refused", "u".into()));
        }
        assert_eq!(st.calls.len(), MAX_RECORDED_CALLS);
        assert_eq!(
            st.omitted,
            Some(OmittedCalls {
                sent: 0,
                refused: 3,
                failed: 0
            })
        );
    }

    #[test]
    fn query_values_are_redacted_in_recorded_urls() {
        let uri: http::Uri = "http://h:1/p?token=abc&x=1&flag".parse().unwrap();
        assert_eq!(
            redacted_url(&uri),
            "http://h:1/p?token=REDACTED&x=REDACTED&flag"
        );
    }

    #[test]
    fn placeholders_are_unique_per_run() {
        assert_ne!(placeholder_for("t"), placeholder_for("t"));
        assert!(placeholder_for("t").starts_with("cordon-secret:t:"));
    }
}

/// Fuzz targets for the checks every request passes before a connection
/// is made: the URL a step chose (arbitrary text through the `http`
/// crate's parser), its path against the allowlist, and the hosts a secret
/// is bound to. A bounded run is part of `cargo test`; `PROPTEST_CASES`
/// raises it (docs/security.md, "Fuzzing").
#[cfg(test)]
mod fuzz {
    use super::*;
    use cordon_manifest::manifest::{BoundHost, parse_allow_url};
    use proptest::prelude::*;

    fn config(cases: u32) -> ProptestConfig {
        ProptestConfig {
            cases: std::env::var("PROPTEST_CASES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(cases),
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    /// Pieces of paths that servers read differently, or that look like
    /// they might be.
    const PIECES: &[&str] = &[
        "api",
        "admin",
        "hooks",
        "",
        ".",
        "..",
        "..;",
        ";x=1",
        "%2e",
        "%2E%2e",
        "%252e",
        "%25",
        "%2f",
        "%2F",
        "%5c",
        "\\",
        "%00",
        "%c0%ae",
        "%e0%80%ae",
        "%zz",
        "%",
        "%4",
        "x%20y",
        "%41",
        "é",
        "%c3%a9",
        "a.b",
        "c..d",
        "?",
        "#",
    ];

    fn path() -> impl Strategy<Value = String> {
        prop_oneof![
            proptest::collection::vec(proptest::sample::select(PIECES), 0..6)
                .prop_map(|p| format!("/{}", p.join("/"))),
            "/\\PC{0,24}",
            any::<String>().prop_map(|s| s.chars().take(24).collect()),
        ]
    }

    /// `path` as a server that decodes once and resolves dot segments
    /// reads it.
    fn as_a_server_reads(path: &str) -> String {
        let decoded = percent_decode(path.as_bytes()).expect("an admitted path decodes");
        let decoded = String::from_utf8(decoded).expect("an admitted path is UTF-8");
        let mut out: Vec<&str> = Vec::new();
        for seg in decoded.split('/').skip(1) {
            match seg {
                "." => {}
                ".." => {
                    out.pop();
                }
                s => out.push(s),
            }
        }
        format!("/{}", out.join("/"))
    }

    fn rules() -> Vec<AllowRule> {
        ["https://h/api/", "https://h/v2", "http://h:8080/"]
            .iter()
            .map(|url| {
                let (scheme, host, port, path_prefix) = parse_allow_url(url).unwrap();
                AllowRule {
                    url: url.to_string(),
                    scheme,
                    host,
                    port,
                    path_prefix,
                    methods: Some(vec!["GET".into()]),
                }
            })
            .collect()
    }

    proptest! {
        #![proptest_config(config(512))]

        #[test]
        fn an_admitted_path_means_what_the_allowlist_says_to_every_server(
            path in path(),
            method in proptest::sample::select(&["GET", "POST", ""][..]),
        ) {
            let allow = rules();
            match admitted(&allow, method, "https", "h", 443, &path) {
                Ok(rule) => {
                    prop_assert_eq!(method, "GET");
                    prop_assert!(path_problem(&path).is_none());
                    let read = as_a_server_reads(&path);
                    prop_assert!(
                        read.starts_with(&rule.path_prefix),
                        "{path} is {read} to a server, outside {}", rule.path_prefix
                    );
                }
                Err(reason) => prop_assert!(!reason.is_empty()),
            }
        }

        #[test]
        fn any_url_a_step_sends_is_judged_and_recorded_without_its_query_values(
            url in prop_oneof![
                (path(), "[a-z=&]{0,12}").prop_map(|(p, q)| format!("https://h{p}?{q}")),
                "\\PC{0,48}",
            ],
        ) {
            let Ok(uri) = url.parse::<http::Uri>() else { return Ok(()); };
            let recorded = redacted_url(&uri);
            if let Some(q) = uri.query() {
                for kv in q.split('&') {
                    if let Some((_, v)) = kv.split_once('=')
                        && !v.is_empty()
                        && v != "REDACTED"
                    {
                        prop_assert!(!recorded.contains(&format!("={v}&")) && !recorded.ends_with(&format!("={v}")),
                            "{recorded} keeps the value {v}");
                    }
                }
            }
            if let Some(a) = uri.authority() {
                let _ = split_host_port(a.as_str(), 443);
            }
            let _ = admitted(&rules(), "GET", "https", "h", 443, uri.path());
        }

        #[test]
        fn a_bound_host_admits_only_the_scheme_host_and_port_it_names(
            entry in prop_oneof![
                "(https?://)?[a-zA-Z0-9.\\-]{1,10}(:[0-9]{1,6})?/?",
                "\\PC{0,24}",
            ],
            host in "[a-z0-9.\\-]{1,10}",
            port in any::<u16>(),
        ) {
            if let Some(b) = BoundHost::parse(&entry) {
                prop_assert!(b.scheme == "https" || b.scheme == "http");
                prop_assert_eq!(b.host.to_ascii_lowercase(), b.host.clone());
                for scheme in ["https", "http"] {
                    if b.admits(scheme, &host, port) {
                        prop_assert!(scheme == b.scheme && host == b.host && port == b.port);
                    }
                }
            }
        }

        #[test]
        fn a_placeholder_is_replaced_everywhere_and_nowhere_else(
            haystack in "[ab:x]{0,24}",
            needle in "[ab:]{1,4}",
            with in "[A-Z]{0,6}",
        ) {
            let got = replace_all(haystack.as_bytes(), needle.as_bytes(), with.as_bytes());
            prop_assert_eq!(got, haystack.replace(&needle, &with).into_bytes());
        }
    }
}
