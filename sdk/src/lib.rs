//! `cordon-sdk`: what a Cordon step links against.
//!
//! A step is an ordinary Rust program built for `wasm32-wasip2`: `fn main`
//! becomes the component's `wasi:cli/run` export, `std::fs` sees exactly the
//! directories its capability manifest mounts, `std::env` sees exactly the
//! variables and arguments it grants. This crate adds the two Cordon
//! interfaces from `wit/step.wit`:
//!
//! - [`secrets`]: use a granted secret through a handle without ever seeing
//!   its bytes: [`secrets::Secret::hmac_sha256`],
//!   [`secrets::Secret::sign_ed25519`] and
//!   [`secrets::Secret::ed25519_public_key`]; [`secrets::Secret::reveal`]
//!   only under an explicit `reveal` grant.
//! - [`report`]: add metrics and annotations to the step's execution record.
//! - [`http`]: a blocking HTTP client for steps with a `[network]` grant;
//!   with [`secrets::Secret::http_header_placeholder`], a step sends a token
//!   to the hosts it is bound to without ever holding it.
//!
//! ```no_run
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let data = std::fs::read("/in/model.bin")?;
//!     let key = cordon_sdk::secrets::get("signing-key")?;
//!     let tag = key.hmac_sha256(&data)?;
//!     std::fs::write("/out/model.bin.hmac", tag)?;
//!     let release = cordon_sdk::secrets::get("release-key")?;
//!     std::fs::write("/out/model.bin.sig", release.sign_ed25519(&data)?)?;
//!     cordon_sdk::report::metric("bytes", data.len() as f64);
//!     Ok(())
//! }
//! ```
//!
//! The generated bindings stay private: the API below is the contract, and
//! the WIT file is its single source of truth.

mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "cordon:step/host-api",
    });
}

pub mod secrets {
    //! Secret handles. The value of a secret stays in the runner; a step can
    //! only ask the runner to use it in the ways its manifest grants.

    use crate::bindings::cordon::step::secrets as wit;
    use std::fmt;

    /// Why the runner refused a secret operation. Every refusal is recorded.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Error {
        /// The manifest grants no secret of this name.
        NotGranted,
        /// The secret is granted, but not for this use.
        Denied,
        /// The provider could not supply the secret.
        Unavailable(String),
    }

    impl fmt::Display for Error {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                Error::NotGranted => f.write_str("secret not granted by the step's manifest"),
                Error::Denied => f.write_str("this use of the secret is not granted"),
                Error::Unavailable(why) => write!(f, "secret unavailable: {why}"),
            }
        }
    }

    impl std::error::Error for Error {}

    impl From<wit::Error> for Error {
        fn from(e: wit::Error) -> Self {
            match e {
                wit::Error::NotGranted => Error::NotGranted,
                wit::Error::Denied => Error::Denied,
                wit::Error::Unavailable(why) => Error::Unavailable(why),
            }
        }
    }

    /// A handle to a granted secret. Dropping it releases the handle.
    pub struct Secret(wit::Secret);

    impl fmt::Debug for Secret {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_tuple("Secret").field(&self.0.name()).finish()
        }
    }

    /// Opens the secret granted under `name`.
    pub fn get(name: &str) -> Result<Secret, Error> {
        wit::get(name).map(Secret).map_err(Error::from)
    }

    impl Secret {
        /// The name the secret was granted under.
        pub fn name(&self) -> String {
            self.0.name()
        }

        /// HMAC-SHA256 of `data`, keyed with the secret (needs the `hmac` use).
        pub fn hmac_sha256(&self, data: &[u8]) -> Result<[u8; 32], Error> {
            let tag = self.0.hmac_sha256(data)?;
            tag.try_into()
                .map_err(|_| Error::Unavailable("runner returned a malformed tag".into()))
        }

        /// Ed25519 signature of `data` with the secret as seed (needs the
        /// `sign` use). The secret's value is a 32-byte seed, stored as 64
        /// hex characters or as the 32 raw bytes.
        pub fn sign_ed25519(&self, data: &[u8]) -> Result<[u8; 64], Error> {
            let sig = self.0.sign_ed25519(data)?;
            sig.try_into()
                .map_err(|_| Error::Unavailable("runner returned a malformed signature".into()))
        }

        /// The ed25519 public key that verifies [`Secret::sign_ed25519`]
        /// signatures (needs the `sign` use).
        pub fn ed25519_public_key(&self) -> Result<[u8; 32], Error> {
            let key = self.0.public_key_ed25519()?;
            key.try_into()
                .map_err(|_| Error::Unavailable("runner returned a malformed public key".into()))
        }

        /// The secret's bytes (needs the `reveal` use, which a reviewer
        /// grants only when no handle operation fits). The runner still
        /// redacts the value from the step's stdout and stderr and fails the
        /// step if an output file contains it.
        pub fn reveal(&self) -> Result<Vec<u8>, Error> {
            Ok(self.0.reveal()?)
        }

        /// An opaque placeholder for the value (needs the `http-header`
        /// use). Put it in a request header, e.g. `format!("Bearer {p}")`;
        /// the runner substitutes the value only on a request to a host the
        /// manifest binds the secret to and refuses the request otherwise.
        pub fn http_header_placeholder(&self) -> Result<String, Error> {
            Ok(self.0.http_header_placeholder()?)
        }
    }
}

pub mod http {
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

    use std::fmt;
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{
        ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme,
    };
    use wasip2::io::streams::StreamError;

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
                Error::Refused => {
                    f.write_str("request refused by the runner (see the step's record)")
                }
                Error::BadUrl(u) => write!(f, "not an http(s) URL: {u}"),
                Error::Failed(why) => write!(f, "request failed: {why}"),
                Error::TooManyRedirects => f.write_str("too many redirects"),
            }
        }
    }

    impl std::error::Error for Error {}

    fn failed(e: ErrorCode) -> Error {
        match e {
            ErrorCode::HttpRequestDenied => Error::Refused,
            other => Error::Failed(format!("{other:?}")),
        }
    }

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

    /// `location` relative to `base` (absolute URLs, and absolute paths).
    fn resolve(base: &str, location: &str) -> String {
        if location.contains("://") {
            return location.to_string();
        }
        let (scheme, rest) = base.split_once("://").unwrap_or(("http", base));
        let authority = rest.split('/').next().unwrap_or("");
        format!("{scheme}://{authority}{location}")
    }

    fn send_once(
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
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
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

pub mod report {
    //! Facts a step adds to its execution record.

    #[cfg(target_arch = "wasm32")]
    use crate::bindings::cordon::step::report as wit;

    /// Records a named measurement; a later value for the same name replaces
    /// the earlier one.
    ///
    /// Built for the host rather than wasm32 (to test a step's logic, or to
    /// benchmark it against its component), a step has no record and the
    /// fact is dropped.
    pub fn metric(name: &str, value: f64) {
        #[cfg(target_arch = "wasm32")]
        wit::metric(name, value);
        #[cfg(not(target_arch = "wasm32"))]
        let _ = (name, value);
    }

    /// Records a key/value annotation (dropped outside wasm32, like
    /// [`metric`]).
    pub fn annotate(key: &str, value: &str) {
        #[cfg(target_arch = "wasm32")]
        wit::annotate(key, value);
        #[cfg(not(target_arch = "wasm32"))]
        let _ = (key, value);
    }
}
