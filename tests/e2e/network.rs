//! Network egress: deny by default, an allowlist per step, and secrets
//! bound to the hosts they may be sent to. The peers are real HTTP servers
//! on 127.0.0.1.

use crate::harness::*;
use cordon_test_artifacts::{HTTP_PROBE, PROBE, PUBLISH};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

const TOKEN: &str = "tok-9f8e7d6c5b4a-must-never-print";

/// What a server saw of one request.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Seen {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A one-request-per-connection HTTP/1.1 server on 127.0.0.1 that records
/// every request and answers with `respond` (the step-author tests use it
/// too).
pub(crate) struct Server {
    pub(crate) port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

type Responder = dyn Fn(&Seen) -> (u16, Vec<(String, String)>, Vec<u8>) + Send + Sync;

impl Server {
    pub(crate) fn start(
        respond: impl Fn(&Seen) -> (u16, Vec<(String, String)>, Vec<u8>) + Send + Sync + 'static,
    ) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let respond: Arc<Responder> = Arc::new(respond);
        let log = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let log = log.clone();
                let respond = respond.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut parts = line.split_whitespace();
                    let method = parts.next().unwrap_or("").to_string();
                    let path = parts.next().unwrap_or("").to_string();
                    let mut headers = Vec::new();
                    loop {
                        let mut h = String::new();
                        reader.read_line(&mut h).unwrap();
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        if let Some((n, v)) = h.split_once(':') {
                            headers.push((n.trim().to_string(), v.trim().to_string()));
                        }
                    }
                    let len: usize = headers
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                        .and_then(|(_, v)| v.parse().ok())
                        .unwrap_or(0);
                    let mut body = vec![0; len];
                    reader.read_exact(&mut body).unwrap();
                    let seen = Seen {
                        method,
                        path,
                        headers,
                        body,
                    };
                    let (status, extra, reply) = respond(&seen);
                    log.lock().unwrap().push(seen);
                    let mut head = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n",
                        reply.len()
                    );
                    for (n, v) in extra {
                        head.push_str(&format!("{n}: {v}\r\n"));
                    }
                    head.push_str("\r\n");
                    let _ = conn.write_all(head.as_bytes());
                    let _ = conn.write_all(&reply);
                });
            }
        });
        Server { port, seen }
    }

    fn hello() -> Server {
        Server::start(|_| (200, vec![], b"hello".to_vec()))
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// `step.toml` for the http probe with `args`, granting `allow` (none when
/// empty) and `rest`.
fn http_step(ws: &Workspace, args: &[&str], allow: &[String], rest: &str) {
    let network = if allow.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = allow.iter().map(|a| format!("{a:?}")).collect();
        format!("[network]\nallow = [{}]\n\n", list.join(", "))
    };
    ws.step(HTTP_PROBE, args, &format!("{network}{rest}"));
}

fn network_of(rec: &serde_json::Value) -> Vec<serde_json::Value> {
    rec["network"].as_array().cloned().unwrap_or_default()
}

#[test]
fn an_allowed_request_goes_through_and_is_recorded() {
    let a = Server::hello();
    let ws = Workspace::new();
    let url = format!("http://127.0.0.1:{}/hooks/deploy?token=abc", a.port);
    http_step(
        &ws,
        &["POST", &url, "body", "payload"],
        &[format!("http://127.0.0.1:{}/hooks/", a.port)],
        "",
    );
    let out = ws.run(&[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains(&format!("POST {url} -> 200 hello")),
        "{}",
        out.stdout
    );
    let seen = a.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].method.as_str(), seen[0].body.as_slice()),
        ("POST", &b"payload"[..])
    );
    let rec = ws.record();
    let calls = network_of(&rec);
    assert_eq!(calls.len(), 1, "{rec}");
    let c = &calls[0];
    assert_eq!(c["outcome"], "sent");
    assert_eq!(c["status"], 200);
    assert_eq!(c["method"], "POST");
    assert_eq!(
        c["url"],
        format!("http://127.0.0.1:{}/hooks/deploy?token=REDACTED", a.port)
    );
    assert_eq!(
        (c["bytes_sent"].as_u64(), c["bytes_received"].as_u64()),
        (Some(7), Some(5))
    );
    assert_eq!(c["request_sha256"], sha256_hex(b"payload"));
    assert_eq!(c["response_sha256"], sha256_hex(b"hello"));
    // A step that reaches the network is never cached.
    assert!(
        rec["cache"]["uncacheable"]
            .as_str()
            .unwrap()
            .contains("network"),
        "{rec}"
    );
}

#[test]
fn other_port_path_scheme_host_and_method_are_refused_before_connecting() {
    let a = Server::hello();
    let b = Server::hello();
    let ws = Workspace::new();
    let (pa, pb) = (a.port, b.port);
    let urls = [
        format!("http://127.0.0.1:{pb}/hooks/x"),  // other port
        format!("http://127.0.0.1:{pa}/admin"),    // other path prefix
        format!("https://127.0.0.1:{pa}/hooks/x"), // other scheme
        format!("http://localhost:{pa}/hooks/x"),  // other host
        format!("http://127.0.0.1:{pa}/hooks/../admin"), // climbing out
    ];
    let mut args: Vec<String> = Vec::new();
    for u in &urls {
        args.extend(["GET".into(), u.clone(), "--".into()]);
    }
    args.extend(["DELETE".into(), format!("http://127.0.0.1:{pa}/hooks/x")]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    http_step(
        &ws,
        &args,
        &[],
        &format!(
            "[network]\nallow = [{{ url = \"http://127.0.0.1:{pa}/hooks/\", methods = [\"GET\", \"POST\"] }}]\n"
        ),
    );
    let out = ws.run(&[]);
    assert_eq!(out.code, 0, "{out:?}");
    for u in &urls {
        assert!(
            out.stdout
                .contains(&format!("GET {u} -> error: request refused by the runner")),
            "{u}: {}",
            out.stdout
        );
    }
    assert!(out.stdout.contains("DELETE"), "{}", out.stdout);
    assert!(
        a.seen().is_empty() && b.seen().is_empty(),
        "no connection was made"
    );
    let calls = network_of(&ws.record());
    assert_eq!(calls.len(), 6);
    assert!(calls.iter().all(|c| c["outcome"] == "refused"), "{calls:?}");
    assert!(
        calls[5]["reason"]
            .as_str()
            .unwrap()
            .contains("method DELETE is not granted"),
        "{calls:?}"
    );
}

#[test]
fn a_redirect_to_a_destination_outside_the_grant_is_refused() {
    let b = Server::hello();
    let target = format!("http://127.0.0.1:{}/elsewhere", b.port);
    let a = Server::start(move |_| (302, vec![("location".into(), target.clone())], vec![]));
    let ws = Workspace::new();
    let url = format!("http://127.0.0.1:{}/hooks/r", a.port);
    http_step(
        &ws,
        &["GET", &url],
        &[format!("http://127.0.0.1:{}/hooks/", a.port)],
        "",
    );
    let out = ws.run(&[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("-> error: request refused"),
        "{}",
        out.stdout
    );
    assert_eq!(a.seen().len(), 1);
    assert!(
        b.seen().is_empty(),
        "the redirect target was never contacted"
    );
    let calls = network_of(&ws.record());
    assert_eq!(
        calls
            .iter()
            .map(|c| c["outcome"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["sent", "refused"]
    );
}

/// A workspace whose `dev` environment reads secrets from the runner's
/// environment (`CORDON_SECRET_<NAME>`).
fn env_secrets(ws: &Workspace) {
    ws.write("cordon.toml", "[env.dev.secrets]\nprovider = \"env\"\n");
}

#[test]
fn a_bound_secret_reaches_only_its_host_and_never_the_step() {
    let a = Server::hello();
    let b = Server::hello();
    let ws = Workspace::new();
    env_secrets(&ws);
    let (ua, ub) = (
        format!("http://127.0.0.1:{}/api/x", a.port),
        format!("http://127.0.0.1:{}/api/x", b.port),
    );
    http_step(
        &ws,
        &[
            "GET",
            &ua,
            "secret-header",
            "authorization",
            "deploy-token",
            "Bearer ",
            "--",
            "GET",
            &ub,
            "secret-header",
            "authorization",
            "deploy-token",
            "Bearer ",
        ],
        &[
            format!("http://127.0.0.1:{}/api/", a.port),
            format!("http://127.0.0.1:{}/api/", b.port),
        ],
        &format!(
            "[[secret]]\nname = \"deploy-token\"\nuses = [\"http-header\"]\nhosts = [\"http://127.0.0.1:{}\"]\n",
            a.port
        ),
    );
    // The plan shows every destination and where the secret may go.
    let plan = ws.cordon(&["plan", "step.toml"], &[]);
    assert_eq!(plan.code, 0, "{plan:?}");
    for line in [
        format!("network http://127.0.0.1:{}/api/", a.port),
        format!("network http://127.0.0.1:{}/api/", b.port),
        format!(
            "secret deploy-token (http-header, sent only to http://127.0.0.1:{})",
            a.port
        ),
        "network limits requests".to_string(),
    ] {
        assert!(plan.stdout.contains(&line), "{line}\n{}", plan.stdout);
    }
    let out = ws.run(&[("CORDON_SECRET_DEPLOY_TOKEN", TOKEN)]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains(&format!("GET {ua} -> 200 hello")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains(&format!("GET {ub} -> error: request refused")),
        "{}",
        out.stdout
    );
    let seen = a.seen();
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert!(
        b.seen().is_empty(),
        "the token never left for the unbound host"
    );
    let calls = network_of(&ws.record());
    assert_eq!(calls[0]["secrets"], serde_json::json!(["deploy-token"]));
    assert!(
        calls[1]["reason"]
            .as_str()
            .unwrap()
            .contains("secret `deploy-token` is not bound to host"),
        "{calls:?}"
    );
    assert!(!out.stdout.contains(TOKEN) && !out.stderr.contains(TOKEN));
    assert!(
        !contains(&ws.state_bytes(), TOKEN.as_bytes()),
        "no record or log holds it"
    );
}

#[test]
fn a_server_echoing_the_token_does_not_reveal_it_to_the_step() {
    let a = Server::start(|s| {
        let auth = s.header("authorization").unwrap_or("").to_string();
        (
            200,
            vec![("x-echo".into(), auth.clone())],
            format!("you sent: {auth}").into_bytes(),
        )
    });
    let ws = Workspace::new();
    env_secrets(&ws);
    let url = format!("http://127.0.0.1:{}/api/echo", a.port);
    http_step(
        &ws,
        &[
            "GET",
            &url,
            "secret-header",
            "authorization",
            "deploy-token",
            "Bearer ",
        ],
        &[format!("http://127.0.0.1:{}/api/", a.port)],
        &format!(
            "[[secret]]\nname = \"deploy-token\"\nuses = [\"http-header\"]\nhosts = [\"http://127.0.0.1:{}\"]\n",
            a.port
        ),
    );
    let out = ws.run(&[("CORDON_SECRET_DEPLOY_TOKEN", TOKEN)]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        a.seen()[0].header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert!(
        out.stdout
            .contains("-> 200 you sent: Bearer [REDACTED:deploy-token]"),
        "the step read a redacted body: {}",
        out.stdout
    );
    assert!(!out.stdout.contains(TOKEN));
    let calls = network_of(&ws.record());
    assert_eq!(
        calls[0]["response_sha256"],
        sha256_hex(b"you sent: Bearer [REDACTED:deploy-token]")
    );
}

#[test]
fn request_count_and_byte_limits_are_enforced() {
    let a = Server::start(|_| (200, vec![], vec![b'x'; 4096]));
    let ws = Workspace::new();
    let url = format!("http://127.0.0.1:{}/d/", a.port);
    http_step(
        &ws,
        &["GET", &url, "--", "GET", &url, "--", "GET", &url],
        std::slice::from_ref(&url),
        "[limits]\nrequests = 2\nrequest-bytes = \"6KiB\"\n",
    );
    let out = ws.run(&[]);
    assert_eq!(out.code, 0, "{out:?}");
    let calls = network_of(&ws.record());
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert_eq!(calls[0]["outcome"], "sent");
    // The second response would pass the 6 KiB budget.
    assert_eq!(calls[1]["outcome"], "failed", "{calls:?}");
    assert_eq!(calls[2]["outcome"], "refused");
    assert!(
        calls[2]["reason"]
            .as_str()
            .unwrap()
            .contains("request limit of 2"),
        "{calls:?}"
    );
}

#[test]
fn a_response_slower_than_the_request_timeout_fails_that_request() {
    // The server holds its answer back until told to go on (or for 30 s), so
    // only the runner's timeout can end the request; nothing here depends on
    // how fast the machine is.
    let release = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let held = release.clone();
    let slow = Server::start(move |_| {
        let (lock, cv) = &*held;
        let guard = lock.lock().unwrap();
        let _ = cv
            .wait_timeout_while(guard, std::time::Duration::from_secs(30), |go| !*go)
            .unwrap();
        (200, vec![], b"late".to_vec())
    });
    let quick = Server::hello();
    let ws = Workspace::new();
    let (slow_url, quick_url) = (
        format!("http://127.0.0.1:{}/s/", slow.port),
        format!("http://127.0.0.1:{}/q/", quick.port),
    );
    http_step(
        &ws,
        &["GET", &slow_url, "--", "GET", &quick_url],
        &[slow_url.clone(), quick_url.clone()],
        "[limits]\nrequest-timeout = \"1s\"\n",
    );
    let out = ws.run(&[]);
    {
        let (lock, cv) = &*release;
        *lock.lock().unwrap() = true;
        cv.notify_all();
    }
    assert_eq!(
        out.code, 0,
        "the step goes on after a failed request: {out:?}"
    );
    let calls = network_of(&ws.record());
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0]["outcome"], "failed", "{calls:?}");
    // Whichever of the client's timeouts (connect, first byte, between
    // bytes) or the whole-exchange one fires first, all are the limit.
    assert!(
        calls[0]["reason"].as_str().unwrap().contains("timeout"),
        "{calls:?}"
    );
    assert!(
        !out.stdout.contains("late"),
        "the late answer never reached the step: {}",
        out.stdout
    );
    assert_eq!(calls[1]["outcome"], "sent", "{calls:?}");
    assert_eq!(calls[1]["status"], 200);
}

#[test]
fn a_network_grant_does_not_link_raw_sockets() {
    // A step allowed to reach a server over wasi:http still has no socket:
    // a TCP connection to the very host and port it may call is a trap.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let ws = Workspace::new();
    ws.step(
        PROBE,
        &["tcp", &addr],
        &format!("[network]\nallow = [\"http://{addr}/\"]\n"),
    );
    let out = ws.run(&[]);
    assert_eq!(out.code, 1, "{out:?}");
    let rec = ws.record();
    assert_eq!(rec["termination"]["kind"], "trapped", "{rec}");
    let msg = rec["termination"]["message"].as_str().unwrap();
    assert!(
        msg.contains("network access denied") && msg.contains("wasi:sockets/tcp-create-socket"),
        "{msg}"
    );
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the step opened a raw socket to the host: {other:?}"),
    }
}

#[test]
fn a_step_without_a_network_grant_cannot_make_any_request() {
    let a = Server::hello();
    let ws = Workspace::new();
    let url = format!("http://127.0.0.1:{}/", a.port);
    http_step(&ws, &["GET", &url], &[], "");
    let out = ws.run(&[]);
    assert_eq!(out.code, 1, "{out:?}");
    let rec = ws.record();
    assert_eq!(rec["termination"]["kind"], "trapped", "{rec}");
    assert!(
        rec["termination"]["message"]
            .as_str()
            .unwrap()
            .contains("network access denied"),
        "{rec}"
    );
    assert!(a.seen().is_empty());
}

#[test]
fn http_header_secrets_need_hosts_and_a_network_grant() {
    let ws = Workspace::new();
    http_step(
        &ws,
        &[],
        &[],
        "[[secret]]\nname = \"t\"\nuses = [\"http-header\"]\n",
    );
    let out = ws.run(&[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("no hosts are bound to it"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("has no `[network]` grant"),
        "{}",
        out.stderr
    );
    http_step(&ws, &[], &["ftp://example.com/".into()], "");
    let out = ws.run(&[]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("only http and https"), "{}", out.stderr);
}

#[test]
fn the_publish_step_uploads_with_a_bound_token() {
    let a = Server::start(|_| (201, vec![], vec![]));
    let ws = Workspace::new();
    env_secrets(&ws);
    ws.write("model/model.json", "{\"w\": [1, 2]}");
    ws.write("model/card.md", "# card");
    let base = format!("http://127.0.0.1:{}/upload/", a.port);
    ws.step(
        PUBLISH,
        &["--input", "/in", "--to", &format!("{base}v1"), "--token", "registry-token"],
        &format!(
            "{}[network]\nallow = [{{ url = \"{base}\", methods = [\"PUT\"] }}]\n\n[[secret]]\nname = \"registry-token\"\nuses = [\"http-header\"]\nhosts = [\"http://127.0.0.1:{}\"]\n",
            mount("/in", "model", "read"),
            a.port
        ),
    );
    let out = ws.run(&[("CORDON_SECRET_REGISTRY_TOKEN", TOKEN)]);
    assert_eq!(out.code, 0, "{out:?}");
    let mut seen = a.seen();
    seen.sort_by(|x, y| x.path.cmp(&y.path));
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].path, "/upload/v1/card.md");
    assert_eq!(seen[1].body, b"{\"w\": [1, 2]}");
    assert!(seen.iter().all(|s| s.method == "PUT"
        && s.header("authorization") == Some(format!("Bearer {TOKEN}").as_str())));
    let rec = ws.record();
    assert_eq!(rec["report"]["metrics"]["files"], 2.0);
    assert!(!contains(&ws.state_bytes(), TOKEN.as_bytes()));
}

/// A server that reads paths the way Tomcat does: `;` parameters are
/// stripped from each segment, percent-escapes decoded, then `.` and `..`
/// resolved. It answers with the path it resolved.
fn tomcat_like() -> Server {
    Server::start(|seen| {
        let path = seen.path.split('?').next().unwrap_or("");
        let mut out: Vec<String> = Vec::new();
        for seg in path.split('/') {
            let seg = seg.split(';').next().unwrap_or("");
            let seg = percent_decode(seg);
            match seg.as_str() {
                "." | "" => {}
                ".." => {
                    out.pop();
                }
                s => out.push(s.to_string()),
            }
        }
        (
            200,
            vec![],
            format!("resolved /{}", out.join("/")).into_bytes(),
        )
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn paths_a_server_resolves_out_of_the_granted_prefix_are_refused_before_connecting() {
    let a = tomcat_like();
    let ws = Workspace::new();
    let base = format!("http://127.0.0.1:{}", a.port);
    let spellings = [
        "/api/..;/admin",
        "/api/%2e%2e;/admin",
        "/api/x/..;jsessionid=1/..;/admin",
        "/api/%252e%252e/admin",
        "/api/%c0%ae%c0%ae/admin",
        "/api/..%5cadmin",
        "/api/%2e%2e%2fadmin",
        "/api/.%2e/admin",
        "/api/x/../../admin",
    ];
    let mut args: Vec<String> = Vec::new();
    for (i, p) in spellings.iter().enumerate() {
        if i > 0 {
            args.push("--".into());
        }
        args.push("GET".into());
        args.push(format!("{base}{p}"));
    }
    // The one honest request still goes through.
    args.extend(["--".into(), "GET".into(), format!("{base}/api/ok")]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    http_step(&ws, &args, &[format!("{base}/api/")], "");
    let out = ws.run(&[]);
    assert_eq!(out.code, 0, "{out:?}");
    let seen = a.seen();
    assert_eq!(
        seen.iter().map(|s| s.path.as_str()).collect::<Vec<_>>(),
        ["/api/ok"],
        "only the honest request reached the server"
    );
    assert!(
        out.stdout.contains("-> 200 resolved /api/ok"),
        "{}",
        out.stdout
    );
    let calls = network_of(&ws.record());
    let refused: Vec<_> = calls.iter().filter(|c| c["outcome"] == "refused").collect();
    assert_eq!(refused.len(), spellings.len(), "{calls:?}");
    for c in refused {
        assert!(
            c["reason"]
                .as_str()
                .unwrap()
                .contains("only paths every server reads the same way"),
            "{c}"
        );
    }
}

#[test]
fn a_bound_secret_is_never_sent_over_plain_http_unless_its_host_entry_says_http() {
    let a = Server::start(|s| {
        (
            200,
            vec![],
            format!("auth={}", s.header("authorization").is_some()).into_bytes(),
        )
    });
    let ws = Workspace::new();
    env_secrets(&ws);
    let url = format!("http://127.0.0.1:{}/api/x", a.port);
    let secret = |hosts: &str| {
        format!(
            "[[secret]]\nname = \"deploy-token\"\nuses = [\"http-header\"]\nhosts = [{hosts}]\n"
        )
    };
    let args = [
        "GET",
        url.as_str(),
        "secret-header",
        "authorization",
        "deploy-token",
        "Bearer ",
    ];
    let allow = [format!("http://127.0.0.1:{}/api/", a.port)];
    // `host:port` alone means https: the plain-http request is refused.
    http_step(
        &ws,
        &args,
        &allow,
        &secret(&format!("\"127.0.0.1:{}\"", a.port)),
    );
    let out = ws.run(&[("CORDON_SECRET_DEPLOY_TOKEN", TOKEN)]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(a.seen().is_empty(), "nothing reached the server");
    let calls = network_of(&ws.record());
    assert_eq!(calls[0]["outcome"], "refused");
    let reason = calls[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("over https only")
            && reason.contains(&format!("http://127.0.0.1:{}", a.port)),
        "the refusal says how to allow it: {reason}"
    );
    // Said explicitly, it goes; and audit flags it.
    http_step(
        &ws,
        &args,
        &allow,
        &secret(&format!("\"http://127.0.0.1:{}\"", a.port)),
    );
    let out = ws.run(&[("CORDON_SECRET_DEPLOY_TOKEN", TOKEN)]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        a.seen()[0].header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert!(!out.stdout.contains(TOKEN) && !out.stderr.contains(TOKEN));
}

#[test]
fn thousands_of_refused_requests_leave_a_bounded_record() {
    let ws = Workspace::new();
    let long = "a".repeat(3_000);
    let mut args: Vec<String> = Vec::new();
    for i in 0..270 {
        if i > 0 {
            args.push("--".into());
        }
        args.push("GET".into());
        args.push(format!("http://127.0.0.1:9/denied/{long}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    http_step(
        &ws,
        &args,
        &["http://127.0.0.1:9/allowed/".to_string()],
        "[limits]\nrequests = 1000\n",
    );
    let out = ws.cordon(&["run", "step.toml", "--quiet"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    let recs = ws.records();
    let rec = &recs[0];
    let calls = network_of(rec);
    assert_eq!(calls.len(), 256, "the list stops at its bound");
    assert!(
        calls
            .iter()
            .all(|c| c["url"].as_str().unwrap().len() < 2_100)
    );
    assert_eq!(rec["network_omitted"]["refused"], 270 - 256);
    let size = std::fs::read_dir(ws.path(".cordon/records"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .max()
        .unwrap();
    assert!(size < 4 << 20, "record files stay small: {size} bytes");
}

/// `step.toml` for the http probe: one GET of `path` on 127.0.0.1:`port`
/// with the bound secret `deploy-token` as a bearer header, granting
/// `/api/` there and binding the secret to `http://127.0.0.1:port`.
fn bound_get(ws: &Workspace, port: u16, path: &str) {
    let url = format!("http://127.0.0.1:{port}{path}");
    http_step(
        ws,
        &[
            "GET",
            &url,
            "secret-header",
            "authorization",
            "deploy-token",
            "Bearer ",
        ],
        &[format!("http://127.0.0.1:{port}/api/")],
        &format!(
            "[[secret]]\nname = \"deploy-token\"\nuses = [\"http-header\"]\nhosts = [\"http://127.0.0.1:{port}\"]\n"
        ),
    );
}

/// gzip of `data`.
fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// zlib-wrapped deflate of `data`.
fn zlib(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// brotli of `data`.
fn br(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let params = brotli::enc::BrotliEncoderParams::default();
    brotli::BrotliCompress(&mut std::io::Cursor::new(data), &mut out, &params).unwrap();
    out
}

#[test]
fn a_bound_host_echoing_the_token_in_a_compressed_body_does_not_reveal_it() {
    for (coding, encode) in [
        ("gzip", gzip as fn(&[u8]) -> Vec<u8>),
        ("deflate", zlib),
        ("br", br),
    ] {
        let a = Server::start(move |s| {
            let echo = format!("you sent: {}", s.header("authorization").unwrap_or("-"));
            (
                200,
                vec![("Content-Encoding".into(), coding.into())],
                encode(echo.as_bytes()),
            )
        });
        let ws = Workspace::new();
        env_secrets(&ws);
        bound_get(&ws, a.port, "/api/x");
        let out = ws.run(&[("CORDON_SECRET_DEPLOY_TOKEN", TOKEN)]);
        assert_eq!(out.code, 0, "{coding}: {out:?}");
        assert_eq!(
            a.seen()[0].header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str()),
            "{coding}: the server got the token"
        );
        assert!(
            out.stdout
                .contains("-> 200 you sent: Bearer [REDACTED:deploy-token]"),
            "{coding}: the step read the decoded, redacted body: {}",
            out.stdout
        );
        // Not in any form the step could have printed or the runner kept.
        let compressed = encode(format!("you sent: Bearer {TOKEN}").as_bytes());
        for sink in [out.stdout.as_bytes(), out.stderr.as_bytes()] {
            assert!(!contains(sink, TOKEN.as_bytes()), "{coding}");
            assert!(!contains(sink, &compressed), "{coding}");
        }
        assert!(!contains(&ws.state_bytes(), TOKEN.as_bytes()), "{coding}");
    }
}

#[test]
fn a_compressed_body_that_cannot_be_checked_is_not_delivered() {
    let a = Server::start(|_| {
        (
            200,
            vec![("Content-Encoding".into(), "gzip".into())],
            b"this is not gzip at all".to_vec(),
        )
    });
    let ws = Workspace::new();
    env_secrets(&ws);
    bound_get(&ws, a.port, "/api/x");
    let out = ws.run(&[("CORDON_SECRET_DEPLOY_TOKEN", TOKEN)]);
    assert!(!out.stdout.contains("this is not gzip"), "{out:?}");
    let calls = network_of(&ws.record());
    assert_eq!(calls[0]["outcome"], "failed", "{calls:?}");
    assert!(
        calls[0]["reason"]
            .as_str()
            .unwrap()
            .contains("cannot be checked for echoed secrets"),
        "{calls:?}"
    );
}
