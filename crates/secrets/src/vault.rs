//! The `vault` provider: HashiCorp Vault (or OpenBao) over its HTTP API,
//! KV version 2, with a per-run AppRole login.
//!
//! One run, one token: the runner logs in with the environment's AppRole
//! (role id from `cordon.toml`, secret id from the environment variable or
//! file the file names), reads exactly the secrets the plan grants, and
//! revokes the token when the run ends, whatever the ending: success, a
//! failed step, a limit, a runner error (the provider revokes on drop) or
//! Ctrl-C or a CI cancellation (a SIGINT/SIGTERM/SIGHUP handler revokes
//! before the process exits with 130). The token
//! itself is never written anywhere; the record names its *accessor*, which
//! lets an operator look the token up or revoke it but not use it.
//!
//! Every failure (server unreachable, login refused, secret missing,
//! permission denied) is reported naming the environment and the secret,
//! before any step runs.

use crate::value::{Provider, ResolvedSecret, SecretError, SecretValue};
use cordon_manifest::config::{EnvConfig, SecretIdSource, VaultConfig};
use cordon_manifest::manifest::SecretGrant;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;
use zeroize::Zeroizing;

/// How the binary's signal handling reaches the vault provider, which
/// never installs a handler itself (a process-wide side effect is the
/// binary's to choose): `session_started` is called when a token is issued,
/// so the binary can make sure a signal revokes it, and `interrupted` says
/// whether a signal arrived, so that revocation at the end is reported.
pub struct SignalHooks {
    /// Called when a vault session (a token) starts.
    pub session_started: fn(),
    /// Set when a signal asked the run to stop.
    pub interrupted: cordon_core::cancel::Cancel,
}

static HOOKS: std::sync::OnceLock<SignalHooks> = std::sync::OnceLock::new();

/// Registers the binary's signal hooks (once; later calls are ignored).
pub fn set_signal_hooks(hooks: SignalHooks) {
    let _ = HOOKS.set(hooks);
}

/// How long one request to the server may take. A run must not hang on a
/// server that accepts connections and never answers; ten seconds is far
/// more than a login or a KV read needs.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A vault token. Zeroed on drop; never printed.
struct Token(Zeroizing<String>);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// What revoking a session needs.
struct Session {
    agent: ureq::Agent,
    address: String,
    token: Token,
}

impl Session {
    fn revoke(&self) -> Result<(), String> {
        let resp = self
            .agent
            .post(format!("{}/v1/auth/token/revoke-self", self.address))
            .header("X-Vault-Token", self.token.0.as_str())
            .send_empty()
            .map_err(|e| format!("cannot reach {}: {e}", self.address))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("the server answered {}", resp.status()))
        }
    }
}

/// Every live session of this process, by token accessor: what the SIGINT
/// handler revokes, and what each provider revokes for itself when its run
/// ends. Several runs (of a pipeline) may hold sessions at once.
static LIVE: Mutex<BTreeMap<String, Session>> = Mutex::new(BTreeMap::new());

fn take_session(accessor: &str) -> Option<Session> {
    LIVE.lock().ok().and_then(|mut live| live.remove(accessor))
}

/// Revokes every live session of this process (on an abort by signal;
/// see [`SignalHooks`]), saying so for each. Returns whether there was
/// any.
pub fn revoke_live_sessions() -> bool {
    let sessions = LIVE
        .lock()
        .map(|mut live| std::mem::take(&mut *live))
        .unwrap_or_default();
    let any = !sessions.is_empty();
    for (accessor, s) in sessions {
        report_revocation(&accessor, s.revoke());
    }
    any
}

/// Says that an interrupted run's token was revoked, or that revoking failed.
fn report_revocation(accessor: &str, result: Result<(), String>) {
    match result {
        Ok(()) => say!(
            "cordon: interrupted; the vault token of this run was revoked (accessor {accessor})"
        ),
        Err(e) => say!(
            "cordon: interrupted; revoking the vault token with accessor {accessor} failed: {e}"
        ),
    }
}

#[derive(serde::Deserialize)]
struct LoginResponse {
    auth: LoginAuth,
}

#[derive(serde::Deserialize)]
struct LoginAuth {
    client_token: Zeroizing<String>,
    accessor: String,
}

#[derive(serde::Deserialize)]
struct KvResponse {
    data: KvData,
}

#[derive(serde::Deserialize)]
struct KvData {
    data: Option<serde_json::Map<String, serde_json::Value>>,
    metadata: KvMetadata,
}

#[derive(serde::Deserialize)]
struct KvMetadata {
    version: u64,
}

#[derive(serde::Deserialize, Default)]
struct VaultErrors {
    #[serde(default)]
    errors: Vec<String>,
}

/// The certificates in a PEM file; at least one.
fn read_ca_file(path: &std::path::Path) -> Result<Vec<ureq::tls::Certificate<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| e.to_string())?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        if let ureq::tls::PemItem::Certificate(c) = item.map_err(|e| e.to_string())? {
            certs.push(c);
        }
    }
    if certs.is_empty() {
        return Err("it holds no PEM certificate".into());
    }
    Ok(certs)
}

/// Reads grants from Vault with a token that lives only for this run.
pub struct VaultProvider {
    env: String,
    config: VaultConfig,
    accessor: String,
}

impl fmt::Debug for VaultProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultProvider")
            .field("env", &self.env)
            .field("address", &self.config.address)
            .field("accessor", &self.accessor)
            .finish()
    }
}

fn server_errors(resp: ureq::http::Response<ureq::Body>) -> String {
    let status = resp.status();
    let errors = resp
        .into_body()
        .read_json::<VaultErrors>()
        .unwrap_or_default()
        .errors;
    if errors.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {}", errors.join("; "))
    }
}

impl VaultProvider {
    /// Logs in with the environment's AppRole. `grants` only name the
    /// secrets in errors; nothing is read yet.
    pub fn login(env: &EnvConfig, grants: &[SecretGrant]) -> Result<VaultProvider, SecretError> {
        let names: Vec<&str> = grants.iter().map(|g| g.name.as_str()).collect();
        VaultProvider::login_for(env, &format!("secrets {}", names.join(", ")))
    }

    /// Logs in to sign the environment's records with its Transit key: a
    /// session of its own, revoked when the signer is dropped at the end of
    /// the run.
    pub fn login_for_records(env: &EnvConfig) -> Result<VaultProvider, SecretError> {
        VaultProvider::login_for(env, "the record-signing key")
    }

    fn login_for(env: &EnvConfig, for_secrets: &str) -> Result<VaultProvider, SecretError> {
        let config = env
            .secrets
            .vault
            .clone()
            .ok_or_else(|| SecretError::new(&env.name, "the vault provider has no settings"))?;
        let err = |m: String| SecretError::new(&env.name, m);
        let secret_id = Zeroizing::new(match &config.secret_id {
            SecretIdSource::Env(var) => std::env::var(var).map_err(|_| {
                err(format!(
                    "cannot log in to vault for {for_secrets}: the AppRole secret id variable {var} is not set"
                ))
                .fix(format!("export {var} in the environment that runs cordon"))
            })?,
            SecretIdSource::File(path) => std::fs::read_to_string(path)
                .map_err(|e| {
                    err(format!(
                        "cannot log in to vault for {for_secrets}: cannot read the AppRole secret id file {}: {e}",
                        path.display()
                    ))
                })?
                .trim()
                .to_string(),
        });
        // Redirects are not followed: the token travels in `X-Vault-Token`,
        // which an HTTP client carries to wherever a redirect points. A
        // standby that redirects to the active node shows up as an error
        // naming the status; point `address` at the active node (or its
        // load balancer) instead.
        let mut agent_config = ureq::Agent::config_builder()
            .timeout_global(Some(REQUEST_TIMEOUT))
            .max_redirects(0)
            .http_status_as_error(false);
        if let Some(ca_file) = &config.ca_file {
            let roots = read_ca_file(ca_file).map_err(|why| {
                err(format!(
                    "cannot use the vault CA file {}: {why}",
                    ca_file.display()
                ))
                .fix("point `ca_file` at a PEM file with the CA certificate(s) of the server")
            })?;
            agent_config = agent_config.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::from(roots))
                    .build(),
            );
        }
        let agent: ureq::Agent = agent_config.build().into();
        let url = format!("{}/v1/auth/{}/login", config.address, config.approle_mount);
        let resp = agent
            .post(&url)
            .send_json(serde_json::json!({
                "role_id": config.role_id,
                "secret_id": secret_id.as_str(),
            }))
            .map_err(|e| {
                err(format!(
                    "vault at {} is unreachable ({e}); cannot read {for_secrets}",
                    config.address
                ))
                .fix("check that the server runs, that `address` in cordon.toml is right and, for a server behind a private CA, `ca_file`; no step was run")
            })?;
        if !resp.status().is_success() {
            return Err(err(format!(
                "vault refused the AppRole login at {url} ({}); cannot read {for_secrets}",
                server_errors(resp)
            ))
            .fix("check `role_id` and the secret id (it may have expired or been used up)"));
        }
        let login: LoginResponse = resp.into_body().read_json().map_err(|e| {
            err(format!(
                "vault's login answer is not what KV clients expect: {e}"
            ))
        })?;
        let accessor = login.auth.accessor.clone();
        if let Some(h) = HOOKS.get() {
            (h.session_started)();
        }
        if let Ok(mut live) = LIVE.lock() {
            live.insert(
                accessor.clone(),
                Session {
                    agent,
                    address: config.address.clone(),
                    token: Token(login.auth.client_token),
                },
            );
        }
        tracing::info!(env = %env.name, accessor = %accessor, "logged in to vault");
        Ok(VaultProvider {
            env: env.name.clone(),
            config,
            accessor,
        })
    }

    fn path_of(&self, name: &str) -> String {
        match &self.config.path_prefix {
            Some(p) => format!("{p}/{name}"),
            None => name.to_string(),
        }
    }

    fn read(&self, grant: &SecretGrant) -> Result<ResolvedSecret, SecretError> {
        let name = &grant.name;
        let path = self.path_of(grant.provider_key());
        let err = |m: String| SecretError::new(&self.env, m);
        let live = LIVE
            .lock()
            .map_err(|_| err("the vault session is gone".into()))?;
        let session = live
            .get(&self.accessor)
            .ok_or_else(|| err("the vault session is gone".into()))?;
        let url = format!(
            "{}/v1/{}/data/{path}",
            self.config.address, self.config.kv_mount
        );
        let resp = session
            .agent
            .get(&url)
            .header("X-Vault-Token", session.token.0.as_str())
            .call()
            .map_err(|e| {
                err(format!(
                    "vault at {} is unreachable ({e}) while reading secret `{name}`",
                    self.config.address
                ))
            })?;
        match resp.status().as_u16() {
            200 => {}
            404 => {
                return Err(err(format!(
                    "secret `{name}` is not in vault (no KV v2 entry at {}/{path})",
                    self.config.kv_mount
                ))
                .fix(format!(
                    "write it with `bao kv put -mount={} {path} {}=...`, or correct `kv_mount`/`path_prefix`",
                    self.config.kv_mount, self.config.field
                )));
            }
            403 => {
                return Err(err(format!(
                    "vault denied reading secret `{name}` at {}/data/{path} ({})",
                    self.config.kv_mount,
                    server_errors(resp)
                ))
                .fix("grant the AppRole's policy `read` on that path"));
            }
            _ => {
                return Err(err(format!(
                    "vault could not read secret `{name}` ({})",
                    server_errors(resp)
                )));
            }
        }
        let kv: KvResponse = resp.into_body().read_json().map_err(|e| {
            err(format!(
                "vault's answer for secret `{name}` is not a KV v2 entry ({e}); is `{}` a KV version 2 mount?",
                self.config.kv_mount
            ))
        })?;
        let field = &self.config.field;
        let value = match kv.data.data.as_ref().and_then(|d| d.get(field)) {
            Some(serde_json::Value::String(s)) => SecretValue::new(s.clone().into_bytes()),
            Some(_) => {
                return Err(err(format!(
                    "secret `{name}`: field `{field}` of its vault entry is not a string"
                )));
            }
            None => {
                return Err(err(format!(
                    "secret `{name}`: its vault entry (version {}) has no field `{field}` (deleted, or stored under another field)",
                    kv.data.metadata.version
                ))
                .fix("store the value under `value`, or set `field` in cordon.toml"));
            }
        };
        Ok(ResolvedSecret {
            name: name.clone(),
            uses: grant.uses.clone(),
            provider: "vault",
            version: Some(kv.data.metadata.version.to_string()),
            credential: Some(self.accessor.clone()),
            value,
        })
    }
}

/// The parts of a Transit key's description the runner reads.
#[derive(serde::Deserialize)]
struct TransitKeyResponse {
    data: TransitKeyData,
}

#[derive(serde::Deserialize)]
struct TransitKeyData {
    #[serde(rename = "type")]
    kind: String,
    latest_version: u64,
    keys: BTreeMap<String, TransitKeyVersion>,
}

#[derive(serde::Deserialize)]
struct TransitKeyVersion {
    #[serde(default)]
    public_key: String,
}

#[derive(serde::Deserialize)]
struct TransitSignResponse {
    data: TransitSignature,
}

#[derive(serde::Deserialize)]
struct TransitSignature {
    signature: String,
}

impl VaultProvider {
    /// Sends `method path` with the session's token; JSON body optional.
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<ureq::http::Response<ureq::Body>, String> {
        let live = LIVE
            .lock()
            .map_err(|_| "the vault session is gone".to_string())?;
        let session = live
            .get(&self.accessor)
            .ok_or_else(|| "the vault session is gone".to_string())?;
        let url = format!("{}/v1/{path}", self.config.address);
        let token = session.token.0.as_str();
        let sent = match (method, body) {
            ("GET", _) => session
                .agent
                .get(&url)
                .header("X-Vault-Token", token)
                .call(),
            (_, Some(b)) => session
                .agent
                .post(&url)
                .header("X-Vault-Token", token)
                .send_json(b),
            (_, None) => session
                .agent
                .post(&url)
                .header("X-Vault-Token", token)
                .send_empty(),
        };
        sent.map_err(|e| format!("vault at {} is unreachable ({e})", self.config.address))
    }

    /// The latest version of Transit key `key` and its ed25519 public key.
    pub fn transit_public_key(
        &self,
        mount: &str,
        key: &str,
    ) -> Result<(u64, [u8; 32]), SecretError> {
        let err = |m: String| SecretError::new(&self.env, m);
        let resp = self
            .call("GET", &format!("{mount}/keys/{key}"), None)
            .map_err(err)?;
        match resp.status().as_u16() {
            200 => {}
            404 => {
                return Err(err(format!(
                    "there is no Transit key `{key}` at {mount}/keys/{key}"
                ))
                .fix(format!(
                    "create it with `cordon key generate --env {}` (or `bao write -f {mount}/keys/{key} type=ed25519`)",
                    self.env
                )));
            }
            _ => {
                return Err(err(format!(
                    "vault could not read Transit key `{key}` ({})",
                    server_errors(resp)
                ))
                .fix(format!(
                    "grant the AppRole's policy `read` on {mount}/keys/{key}"
                )));
            }
        }
        let k: TransitKeyResponse = resp.into_body().read_json().map_err(|e| {
            err(format!(
                "vault's answer for Transit key `{key}` is not a key description ({e})"
            ))
        })?;
        if k.data.kind != "ed25519" {
            return Err(err(format!(
                "Transit key `{key}` is of type {}, but records are signed with ed25519",
                k.data.kind
            ))
            .fix(format!(
                "create an ed25519 key: `bao write -f {mount}/keys/NAME type=ed25519`"
            )));
        }
        let version = k.data.latest_version;
        use base64::Engine as _;
        let public = k
            .data
            .keys
            .get(&version.to_string())
            .and_then(|v| base64::engine::general_purpose::STANDARD.decode(&v.public_key).ok())
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
            .ok_or_else(|| {
                err(format!(
                    "Transit key `{key}` version {version} has no ed25519 public key in vault's answer"
                ))
            })?;
        Ok((version, public))
    }

    /// Creates Transit key `key` (ed25519) unless it exists; returns whether
    /// it was created. The key never leaves the server.
    pub fn transit_create_ed25519(&self, mount: &str, key: &str) -> Result<bool, SecretError> {
        let err = |m: String| SecretError::new(&self.env, m);
        let exists = self
            .call("GET", &format!("{mount}/keys/{key}"), None)
            .map_err(err)?
            .status()
            == 200;
        if exists {
            return Ok(false);
        }
        let resp = self
            .call(
                "POST",
                &format!("{mount}/keys/{key}"),
                Some(serde_json::json!({"type": "ed25519"})),
            )
            .map_err(err)?;
        if !resp.status().is_success() {
            return Err(err(format!(
                "vault refused to create Transit key `{key}` ({})",
                server_errors(resp)
            ))
            .fix(format!(
                "create it as an operator: `bao write -f {mount}/keys/{key} type=ed25519`, or grant the AppRole `create` on {mount}/keys/{key}"
            )));
        }
        Ok(true)
    }

    /// The ed25519 signature of `message` by version `version` of Transit
    /// key `key`.
    pub fn transit_sign(
        &self,
        mount: &str,
        key: &str,
        version: u64,
        message: &[u8],
    ) -> Result<[u8; 64], String> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let resp = self.call(
            "POST",
            &format!("{mount}/sign/{key}"),
            Some(serde_json::json!({"input": b64.encode(message), "key_version": version})),
        )?;
        if !resp.status().is_success() {
            return Err(format!(
                "vault refused to sign with Transit key `{key}` ({}); grant the AppRole `update` on {mount}/sign/{key}",
                server_errors(resp)
            ));
        }
        let s: TransitSignResponse = resp
            .into_body()
            .read_json()
            .map_err(|e| format!("vault's signing answer is not a signature ({e})"))?;
        // `vault:v<version>:<base64>`.
        let mut parts = s.data.signature.splitn(3, ':');
        let (Some("vault"), Some(v), Some(sig)) = (parts.next(), parts.next(), parts.next()) else {
            return Err("vault's signature is not of the form vault:vN:<base64>".into());
        };
        if v != format!("v{version}") {
            return Err(format!("vault signed with key version {v}, not v{version}"));
        }
        b64.decode(sig)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b.as_slice()).ok())
            .ok_or_else(|| "vault's signature is not 64 bytes of base64".into())
    }
}

/// Signs records with a Transit key, in a vault session of its own that is
/// revoked when the signer is dropped.
#[derive(Debug)]
pub struct TransitSigner {
    provider: VaultProvider,
    mount: String,
    key: String,
    version: u64,
}

impl TransitSigner {
    /// Logs in and reads the key's latest version and public key.
    pub fn connect(
        env: &EnvConfig,
        transit: &cordon_manifest::config::TransitConfig,
    ) -> Result<(TransitSigner, [u8; 32]), SecretError> {
        let provider = VaultProvider::login_for_records(env)?;
        let (version, public) = provider.transit_public_key(&transit.mount, &transit.key)?;
        Ok((
            TransitSigner {
                provider,
                mount: transit.mount.clone(),
                key: transit.key.clone(),
                version,
            },
            public,
        ))
    }

    /// The key version every signature uses.
    pub fn version(&self) -> u64 {
        self.version
    }
}

impl cordon_record::attest::RemoteSign for TransitSigner {
    fn sign(&self, message: &[u8]) -> Result<[u8; 64], cordon_record::attest::RemoteSignError> {
        self.provider
            .transit_sign(&self.mount, &self.key, self.version, message)
            .map_err(cordon_record::attest::RemoteSignError)
    }
}

impl Provider for VaultProvider {
    fn name(&self) -> &'static str {
        "vault"
    }

    fn resolve(&mut self, grants: &[SecretGrant]) -> Result<Vec<ResolvedSecret>, SecretError> {
        grants.iter().map(|g| self.read(g)).collect()
    }

    fn close(&mut self) -> Result<(), SecretError> {
        match take_session(&self.accessor) {
            Some(s) => {
                let result = s.revoke();
                if HOOKS.get().is_some_and(|h| h.interrupted.is_cancelled()) {
                    report_revocation(&self.accessor, result.clone());
                }
                result.map_err(|e| {
                    SecretError::new(
                        &self.env,
                        format!(
                            "cannot revoke the run's vault token (accessor {}): {e}",
                            self.accessor
                        ),
                    )
                    .fix(format!(
                        "revoke it by hand: bao token revoke -accessor {}",
                        self.accessor
                    ))
                })
            }
            None => Ok(()),
        }
    }
}

impl Drop for VaultProvider {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            say!("cordon: warning: {e}");
        }
    }
}
