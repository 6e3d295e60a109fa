//! A small blocking HTTP client over `wasi:http`, for steps with a
//! `[network]` grant. The runner checks every request against the
//! grant before connecting; a refused request comes back as
//! [`Error::Refused`].
//!
//! ```no_run
//! use cordon_sdk::{http, secrets};
//! let token = secrets::get("deploy-token")?.http_header_placeholder()?;
//! let resp = http::Request::put("http://127.0.0.1:8080/upload/model.bin")
//!     .header("authorization", &format!("Bearer {token}"))
//!     .body(b"...".to_vec())
//!     .send()?;
//! assert!(resp.status < 300);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! `GET` and `HEAD` follow redirects; a relative `Location` is resolved
//! against the request's URL as RFC 3986 section 5 says (`foo` from
//! `http://h/a/b` is `http://h/a/foo`; `../x`, `//other/x` and `?q` work
//! too).
//!
//! In a native build (a step's unit tests) requests go to the thread's
//! `cordon_sdk::testing` double instead: it answers the routes a test set
//! with `testing::respond`, refuses every other request as the
//! runner refuses an ungranted destination, and keeps what was sent.

use std::fmt;

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The runner refused it (not in the grant, a secret sent to a
    /// host it is not bound to, or a limit reached). The record says
    /// which.
    Refused,
    /// The URL is not `http(s)://host[:port]/path`.
    BadUrl(String),
    /// The request could not be made or the response not read.
    Failed(String),
    /// Too many redirects.
    TooManyRedirects,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Refused => f.write_str("request refused by the runner (see the step's record)"),
            Error::BadUrl(u) => write!(f, "not an http(s) URL: {u}"),
            Error::Failed(why) => write!(f, "request failed: {why}"),
            Error::TooManyRedirects => f.write_str("too many redirects"),
        }
    }
}

impl std::error::Error for Error {}

/// A response: status, headers and the whole body.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names (lowercase) and values.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name`, as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

/// A request being built.
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    redirects: usize,
}

impl Request {
    /// A request with `method` (`GET`, `PUT`, ...) to `url`.
    pub fn new(method: &str, url: &str) -> Request {
        Request {
            method: method.to_ascii_uppercase(),
            url: url.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
            redirects: 5,
        }
    }
    /// `GET url`.
    pub fn get(url: &str) -> Request {
        Request::new("GET", url)
    }
    /// `PUT url`.
    pub fn put(url: &str) -> Request {
        Request::new("PUT", url)
    }
    /// `POST url`.
    pub fn post(url: &str) -> Request {
        Request::new("POST", url)
    }
    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers
            .push((name.to_ascii_lowercase(), value.as_bytes().to_vec()));
        self
    }
    /// Sets the body.
    pub fn body(mut self, body: Vec<u8>) -> Request {
        self.body = body;
        self
    }
    /// How many redirects `GET`/`HEAD` follow (default 5; each hop is
    /// checked by the runner like any request).
    pub fn redirects(mut self, n: usize) -> Request {
        self.redirects = n;
        self
    }

    /// Sends the request and reads the whole response.
    pub fn send(self) -> Result<Response, Error> {
        let mut url = self.url.clone();
        let follow = matches!(self.method.as_str(), "GET" | "HEAD");
        for _ in 0..=self.redirects {
            let resp = send_once(&self.method, &url, &self.headers, &self.body)?;
            if follow
                && (300..400).contains(&resp.status)
                && let Some(location) = resp.header("location")
            {
                url = resolve(&url, &location);
                continue;
            }
            return Ok(resp);
        }
        Err(Error::TooManyRedirects)
    }
}

/// The authority and the request target (path and query, never the
/// fragment, which stays with the client) of `rest`, the part of an
/// absolute URL after `scheme://`.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
fn split_target(rest: &str) -> (&str, String) {
    let rest = rest.split('#').next().unwrap_or("");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, target) = rest.split_at(end);
    let target = match target.strip_prefix('?') {
        Some(_) => format!("/{target}"),
        None if target.is_empty() => "/".to_string(),
        None => target.to_string(),
    };
    (authority, target)
}

/// The parts of a URI reference (RFC 3986, appendix B).
struct Parts<'a> {
    scheme: Option<&'a str>,
    authority: Option<&'a str>,
    path: &'a str,
    query: Option<&'a str>,
}

fn parts(r: &str) -> Parts<'_> {
    // Fragments are dropped: a redirect's target is fetched without one.
    let r = r.split('#').next().unwrap_or("");
    let (r, query) = match r.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (r, None),
    };
    // A scheme is ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) before the
    // first ':' that comes before any '/'.
    let (scheme, r) = match r.find(':') {
        Some(i)
            if !r[..i].contains('/')
                && r[..i].starts_with(|c: char| c.is_ascii_alphabetic())
                && r[..i]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            (Some(&r[..i]), &r[i + 1..])
        }
        _ => (None, r),
    };
    let (authority, path) = match r.strip_prefix("//") {
        Some(rest) => {
            let end = rest.find('/').unwrap_or(rest.len());
            (Some(&rest[..end]), &rest[end..])
        }
        None => (None, r),
    };
    Parts {
        scheme,
        authority,
        path,
        query,
    }
}

/// RFC 3986 section 5.2.4.
fn remove_dot_segments(path: &str) -> String {
    let mut input = path.to_string();
    let mut output = String::new();
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../") {
            input = rest.to_string();
        } else if let Some(rest) = input.strip_prefix("./") {
            input = rest.to_string();
        } else if input.starts_with("/./") {
            input.replace_range(..3, "/");
        } else if input == "/." {
            input = "/".to_string();
        } else if input.starts_with("/../") || input == "/.." {
            let cut = if input == "/.." { 3 } else { 4 };
            input.replace_range(..cut, "/");
            let keep = output.rfind('/').unwrap_or(0);
            output.truncate(keep);
        } else if input == "." || input == ".." {
            input.clear();
        } else {
            let start = usize::from(input.starts_with('/'));
            let end = input[start..].find('/').map_or(input.len(), |i| i + start);
            output.push_str(&input[..end]);
            input.replace_range(..end, "");
        }
    }
    output
}

/// `location` resolved against `base`, an absolute URL (RFC 3986
/// section 5.2.2, "strict": a reference with a scheme is absolute).
pub(crate) fn resolve(base: &str, location: &str) -> String {
    let b = parts(base);
    let r = parts(location.trim());
    let (scheme, authority, path, query);
    if r.scheme.is_some() {
        scheme = r.scheme;
        authority = r.authority;
        path = remove_dot_segments(r.path);
        query = r.query;
    } else {
        scheme = b.scheme;
        if r.authority.is_some() {
            authority = r.authority;
            path = remove_dot_segments(r.path);
            query = r.query;
        } else {
            authority = b.authority;
            if r.path.is_empty() {
                path = b.path.to_string();
                query = r.query.or(b.query);
            } else {
                path = if r.path.starts_with('/') {
                    remove_dot_segments(r.path)
                } else if b.authority.is_some() && b.path.is_empty() {
                    remove_dot_segments(&format!("/{}", r.path))
                } else {
                    let dir = b.path.rfind('/').map_or("", |i| &b.path[..=i]);
                    remove_dot_segments(&format!("{dir}{}", r.path))
                };
                query = r.query;
            }
        }
    }
    let mut out = String::new();
    if let Some(s) = scheme {
        out.push_str(s);
        out.push(':');
    }
    if let Some(a) = authority {
        out.push_str("//");
        out.push_str(a);
    }
    out.push_str(&path);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

#[cfg(target_arch = "wasm32")]
use transport::send_once;

/// Sends one request (no redirect followed) to the thread's test double.
#[cfg(not(target_arch = "wasm32"))]
fn send_once(
    method: &str,
    url: &str,
    headers: &[(String, Vec<u8>)],
    body: &[u8],
) -> Result<Response, Error> {
    crate::testing::exchange(method, url, headers, body)
}

/// One request over `wasi:http`, no redirect followed.
#[cfg(target_arch = "wasm32")]
mod transport {
    use super::{Error, Response};
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{
        ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme,
    };
    use wasip2::io::streams::StreamError;

    fn failed(e: ErrorCode) -> Error {
        match e {
            ErrorCode::HttpRequestDenied => Error::Refused,
            other => Error::Failed(format!("{other:?}")),
        }
    }

    pub fn send_once(
        method: &str,
        url: &str,
        headers: &[(String, Vec<u8>)],
        body: &[u8],
    ) -> Result<Response, Error> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| Error::BadUrl(url.to_string()))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            _ => return Err(Error::BadUrl(url.to_string())),
        };
        let (authority, path) = super::split_target(rest);
        let path = path.as_str();
        let fields = Fields::new();
        for (n, v) in headers {
            fields
                .append(n, v)
                .map_err(|e| Error::Failed(format!("header {n}: {e:?}")))?;
        }
        let req = OutgoingRequest::new(fields);
        let m = match method {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.to_string()),
        };
        let bad = |what: &str| Error::Failed(format!("invalid {what}"));
        req.set_method(&m).map_err(|_| bad("method"))?;
        req.set_scheme(Some(&scheme)).map_err(|_| bad("scheme"))?;
        req.set_authority(Some(authority))
            .map_err(|_| bad("authority"))?;
        req.set_path_with_query(Some(path))
            .map_err(|_| bad("path"))?;
        let out_body = req.body().map_err(|_| bad("body"))?;
        let pending = outgoing_handler::handle(req, None).map_err(failed)?;
        {
            let stream = out_body.write().map_err(|_| bad("body stream"))?;
            for chunk in body.chunks(4096) {
                stream
                    .blocking_write_and_flush(chunk)
                    .map_err(|e| Error::Failed(format!("writing the body: {e:?}")))?;
            }
        }
        OutgoingBody::finish(out_body, None).map_err(failed)?;
        let resp = loop {
            match pending.get() {
                Some(result) => {
                    break result
                        .map_err(|_| Error::Failed("response taken twice".into()))?
                        .map_err(failed)?;
                }
                None => pending.subscribe().block(),
            }
        };
        let status = resp.status();
        let headers = resp
            .headers()
            .entries()
            .into_iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v))
            .collect();
        let incoming = resp.consume().map_err(|_| bad("response body"))?;
        let mut body = Vec::new();
        {
            let stream = incoming.stream().map_err(|_| bad("response body stream"))?;
            loop {
                match stream.blocking_read(64 * 1024) {
                    Ok(chunk) => body.extend_from_slice(&chunk),
                    Err(StreamError::Closed) => break,
                    Err(StreamError::LastOperationFailed(e)) => {
                        return Err(Error::Failed(e.to_debug_string()));
                    }
                }
            }
        }
        let _ = IncomingBody::finish(incoming);
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 3986 section 5.4: every normal and abnormal example, from the
    /// base URI the RFC uses.
    #[test]
    fn relative_references_resolve_as_rfc_3986_section_5_4_says() {
        let base = "http://a/b/c/d;p?q";
        for (reference, target) in [
            ("g:h", "g:h"),
            ("g", "http://a/b/c/g"),
            ("./g", "http://a/b/c/g"),
            ("g/", "http://a/b/c/g/"),
            ("/g", "http://a/g"),
            ("//g", "http://g"),
            ("?y", "http://a/b/c/d;p?y"),
            ("g?y", "http://a/b/c/g?y"),
            ("#s", "http://a/b/c/d;p?q"),
            ("g#s", "http://a/b/c/g"),
            (";x", "http://a/b/c/;x"),
            ("g;x?y#s", "http://a/b/c/g;x?y"),
            ("", "http://a/b/c/d;p?q"),
            (".", "http://a/b/c/"),
            ("./", "http://a/b/c/"),
            ("..", "http://a/b/"),
            ("../", "http://a/b/"),
            ("../g", "http://a/b/g"),
            ("../..", "http://a/"),
            ("../../", "http://a/"),
            ("../../g", "http://a/g"),
            ("../../../g", "http://a/g"),
            ("../../../../g", "http://a/g"),
            ("/./g", "http://a/g"),
            ("/../g", "http://a/g"),
            ("g.", "http://a/b/c/g."),
            (".g", "http://a/b/c/.g"),
            ("g..", "http://a/b/c/g.."),
            ("..g", "http://a/b/c/..g"),
            ("./../g", "http://a/b/g"),
            ("./g/.", "http://a/b/c/g/"),
            ("g/./h", "http://a/b/c/g/h"),
            ("g/../h", "http://a/b/c/h"),
            ("g;x=1/./y", "http://a/b/c/g;x=1/y"),
            ("g;x=1/../y", "http://a/b/c/y"),
            ("g?y/./x", "http://a/b/c/g?y/./x"),
            ("g?y/../x", "http://a/b/c/g?y/../x"),
            ("http:g", "http:g"),
        ] {
            assert_eq!(resolve(base, reference), target, "reference {reference:?}");
        }
    }

    #[test]
    fn a_bare_relative_redirect_stays_under_the_host() {
        // The bug this replaced: `foo` became `http://hostfoo`.
        assert_eq!(resolve("http://host", "foo"), "http://host/foo");
        assert_eq!(resolve("http://host/dir/a", "foo"), "http://host/dir/foo");
        assert_eq!(
            resolve("https://host:8443/x?y", "http://other/z"),
            "http://other/z"
        );
    }

    #[test]
    fn the_request_target_is_path_and_query_without_the_fragment() {
        assert_eq!(split_target("h:1"), ("h:1", "/".to_string()));
        assert_eq!(split_target("h?x=1#f"), ("h", "/?x=1".to_string()));
        assert_eq!(split_target("h/a/b?c#d"), ("h", "/a/b?c".to_string()));
    }

    #[test]
    fn a_relative_redirect_is_followed_to_the_resolved_url() {
        crate::testing::reset();
        crate::testing::respond(
            "GET",
            "http://models.internal/v1/latest",
            crate::testing::redirect(302, "../v2/model.bin"),
        );
        crate::testing::respond(
            "GET",
            "http://models.internal/v2/model.bin",
            crate::testing::ok(b"weights".to_vec()),
        );
        let resp = Request::get("http://models.internal/v1/latest")
            .send()
            .unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body, b"weights");
        let urls: Vec<String> = crate::testing::sent().into_iter().map(|r| r.url).collect();
        assert_eq!(
            urls,
            [
                "http://models.internal/v1/latest",
                "http://models.internal/v2/model.bin"
            ]
        );
    }

    #[test]
    fn a_request_nobody_answers_is_refused_like_an_ungranted_destination() {
        crate::testing::reset();
        assert_eq!(
            Request::get("http://elsewhere/").send().unwrap_err(),
            Error::Refused
        );
        assert_eq!(crate::testing::sent().len(), 1);
    }

    #[test]
    fn redirects_stop_at_the_limit() {
        crate::testing::reset();
        crate::testing::respond(
            "GET",
            "http://h/loop",
            crate::testing::redirect(301, "loop"),
        );
        assert_eq!(
            Request::get("http://h/loop")
                .redirects(2)
                .send()
                .unwrap_err(),
            Error::TooManyRedirects
        );
        assert_eq!(crate::testing::sent().len(), 3);
    }
}
