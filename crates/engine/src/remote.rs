//! The shared store: an environment's content store, action cache and
//! record chain in S3-compatible object storage (`[env.NAME.store]`), so
//! that many machines share one cache and one chain. The local state
//! directory stays what it was and becomes a cache of this store: every hit
//! from the store is first copied into the local content store (checked),
//! then restored from there by the one "restore, verify, publish" routine
//! ([`crate::outputs::Staging::refill`]).
//!
//! Layout under the URL's prefix (all objects written create-only):
//!
//! ```text
//! cas/packs/sha256/<tree hex>        the files of one output tree, concatenated in
//!                                    listing order: one object per tree, never one
//!                                    round trip per file
//! cache/actions/<shared key hex>     {"format", "entry": <action entry>, "record": <record JSON>,
//!                                    "envelope", "sequence": <its record's chain entry>}
//! records/chain/<sequence, 20 digits> {"format", "sequence", "previous",
//!                                    "record": <record file text>, "envelope": <DSSE text>|null}
//! ```
//!
//! **Order of sharing: packs, then the chain entry, then the action
//! entry.** An action entry is what another machine serves as a hit, so it
//! is written last: a runner stopped (or a store failing) at any point
//! leaves at worst packs no entry names, or a chained record without an
//! action entry (the next machine runs the step). Never an entry whose
//! record is in no chain. Each action entry names the chain entry that
//! holds its record, and a pull checks that entry holds that record byte
//! for byte ([`RemoteStore::pull_action`]).
//!
//! **An entry proves its key.** A pulled entry's record must be signed by
//! a key trusted here, and the key document rebuilt from what it says ran
//! ([`crate::cache::KeyDocument::for_record`]) must give the shared key it
//! is filed under: an entry copied over another key is refused.
//!
//! **A chain entry is unique.** [`RemoteStore::verify_chain`] refuses a
//! chain in which a run id or a record appears twice (a genuine entry
//! copied to the head), naming both places.
//!
//! **What this machine knows is in the chain.** A local action entry is a
//! hit here, when the environment shares, only if the chain is known to
//! hold its record (`<state>/shared/chained/<run id>`, written once the
//! append or the pull succeeded). An entry of a run whose record never
//! reached the shared chain (the store failed after the run) is not served:
//! the step runs again and that run's record takes the ordinary path. The
//! runner does not append the old record instead: it cannot tell, short of
//! reading the whole chain, whether the record is already there (a runner
//! stopped between the append and the note), and appending it twice would
//! make exactly the duplicate `verify` refuses.
//!
//! **Create-only everywhere.** Packs are named by the tree digest their
//! bytes must reproduce, and action entries by the key, so a put that finds
//! the object present (`AlreadyExists`, from `If-None-Match: *`) is a
//! success: the first writer wins and nothing is ever overwritten. Chain
//! entries are small single-part objects (multipart completion is not
//! atomic on every store); a runner that loses the race for a sequence
//! re-reads the head and tries the next one, so concurrent runners never
//! fork the chain.
//!
//! **Nothing read back is trusted.** An action entry is parsed and checked
//! as a local one is ([`crate::cache::ActionEntry`]), every file cut from a
//! pack is rehashed against the entry before it enters the local store, and
//! the restored tree is hashed again by `refill`. A tampered object is an
//! error naming it; its bytes are never published.
//!
//! **Credentials never print.** They are read from the runner's environment
//! when the store is opened, handed to the S3 client and nowhere else; every
//! message built from a client error has them cut out.
//!
//! This module never parses a command line and never sees a step's secret.

use crate::cache::{ActionCache, ActionEntry, ActionKey};
use cordon_manifest::config::{StoreConfig, StoreCredentials};
use cordon_manifest::manifest::Sha256Digest;
use futures::StreamExt as _;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt as _, PutMode, PutOptions, PutPayload};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Format of an action entry in the store.
pub const ACTION_FORMAT: &str = "cordon.shared-action/v2";
/// Format of a chain entry in the store.
pub const CHAIN_FORMAT: &str = "cordon.shared-chain/v1";

/// Requests in flight at once. Measured against SeaweedFS: one create-only
/// put at a time gives some 450 a second, sixteen in flight 1,700+, so
/// store traffic is batched and parallel; more than that buys little and
/// holds more of the runner's memory.
pub const IN_FLIGHT: usize = 16;

/// Largest pack (the files of one output tree) shared. A pack is built and
/// read whole in memory; an output tree larger than this stays in the
/// local store only (with a warning) rather than costing the runner that
/// much memory.
pub const MAX_PACK_BYTES: u64 = 256 << 20;

/// Largest action entry or chain entry read back: the same cap as a local
/// entry, so a planted object cannot fill the runner's memory.
pub const MAX_ENTRY_BYTES: u64 = crate::cache::MAX_ENTRY_BYTES;

/// Digits of a chain entry's sequence in its object name: zero-padded so
/// that the store lists entries in order.
pub const SEQUENCE_DIGITS: usize = 20;

/// A failure of the shared store. Messages never hold a credential.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The secrets that hold the credentials cannot be read.
    #[error(
        "the shared store of environment `{env}` takes its credentials from the secrets `{names}`, which cannot be read: {detail}\n  fix: store them with `cordon secret set NAME --env {env}` (or in the environment's provider)"
    )]
    SecretCredentials {
        /// The environment.
        env: String,
        /// The two secret names.
        names: String,
        /// What the provider said (never a value).
        detail: String,
    },
    /// A credential variable is not set.
    #[error(
        "the shared store of environment `{env}` needs `{var}` in the runner's environment\n  fix: set {var} (and its pair) to the store's credentials, or remove [env.{env}.store]"
    )]
    MissingCredentials {
        /// The environment.
        env: String,
        /// The variable.
        var: String,
    },
    /// The store refused the credentials.
    #[error(
        "the shared store {url} refused the credentials from {vars}: {detail}\n  fix: make {vars} credentials that may read and write the bucket"
    )]
    Refused {
        /// The store's URL.
        url: String,
        /// The variables the credentials came from.
        vars: String,
        /// What the store said (credentials cut out).
        detail: String,
    },
    /// The store could not be used (down, unreachable, no such bucket).
    #[error(
        "the shared store {url} cannot be used: {detail}\n  fix: check `endpoint` and `url` in [env.{env}.store] and that the store is up"
    )]
    Unavailable {
        /// The store's URL.
        url: String,
        /// The environment.
        env: String,
        /// What went wrong (credentials cut out).
        detail: String,
    },
    /// A request about one object failed.
    #[error("shared store object {object}: {detail}")]
    Object {
        /// The object's key.
        object: String,
        /// What went wrong (credentials cut out).
        detail: String,
    },
    /// An object's bytes do not hold what its name or its entry says.
    #[error(
        "shared store object {object} is tampered or damaged: {detail}; nothing of it was used"
    )]
    Tampered {
        /// The object's key.
        object: String,
        /// What does not match.
        detail: String,
    },
    /// The local state directory failed.
    #[error("the local cache of the shared store: {0}")]
    Local(#[from] std::io::Error),
}

/// One environment's shared store, opened and checked.
pub struct RemoteStore {
    store: AmazonS3,
    prefix: String,
    url: String,
    env: String,
    /// Cut out of every message built from a client error.
    credentials: Vec<String>,
    runtime: tokio::runtime::Runtime,
    /// The keys trusted here for the environment's records: a cache hit
    /// from the store must come with a record one of them signed.
    trusted: Vec<cordon_record::attest::TrustedKey>,
    /// The newest chain sequence this runner has seen: later head reads
    /// list only the entries after it (S3's `start-after`), so a pipeline
    /// of many steps does not list the whole chain once per record.
    head_hint: std::sync::Mutex<u64>,
}

impl std::fmt::Debug for RemoteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the credentials.
        f.debug_struct("RemoteStore")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// What a shared chain append wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The entry's sequence (from 1).
    pub sequence: u64,
    /// The object's key.
    pub object: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SharedAction {
    format: String,
    entry: serde_json::Value,
    /// The producing run's record file, byte for byte.
    record: String,
    /// Its DSSE envelope file, when its environment signs.
    envelope: Option<String>,
    /// The shared chain entry that holds `record` (and `envelope`).
    sequence: u64,
}

/// A run's local action key and its shared key
/// ([`crate::cache::ActionKeys`]).
pub type Keys<'a> = (&'a ActionKey, &'a ActionKey);

/// One entry of the shared chain as stored.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainObject {
    /// [`CHAIN_FORMAT`].
    pub format: String,
    /// Its place in the chain, from 1; the same as its object name says.
    pub sequence: u64,
    /// The sha256 of the previous entry's object bytes (64 zeros for the
    /// first): editing, removing or reordering an entry breaks a link.
    pub previous: Sha256Digest,
    /// The step record's file, byte for byte as the runner that ran it
    /// wrote it (so its signed statement can be checked against it).
    pub record: String,
    /// The record's DSSE envelope file, when its environment signs.
    pub envelope: Option<String>,
}

/// What [`RemoteStore::verify_chain`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// Entries in the chain.
    pub entries: u64,
    /// Entries whose record is signed by a trusted key.
    pub signed: u64,
    /// Problems, one line each (`entry N: ...`).
    pub problems: Vec<String>,
    /// The record text of every entry that parsed, oldest first.
    pub records: Vec<String>,
}

impl RemoteStore {
    /// Opens the store of environment `env` with credentials from the
    /// runner's environment or from two secrets of the environment's
    /// provider, and checks, with one listing request, that the bucket is
    /// there and the credentials are accepted: a store that cannot be used
    /// stops the run before anything runs.
    pub fn open(
        env: &cordon_manifest::config::EnvConfig,
        config: &StoreConfig,
    ) -> Result<RemoteStore, RemoteError> {
        let (key_id, secret) = credentials(env, config)?;
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(&key_id)
            .with_secret_access_key(&secret)
            // Bounded: an unreachable store is an error within seconds, not
            // after the client's default three minutes of retries.
            .with_retry(object_store::RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(20),
                ..Default::default()
            })
            .with_client_options(
                object_store::ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(120)),
            );
        if let Ok(token) = std::env::var("AWS_SESSION_TOKEN")
            && !token.is_empty()
        {
            builder = builder.with_token(token);
        }
        if let Some(endpoint) = &config.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        let credentials = vec![secret, key_id];
        let store = builder.build().map_err(|e| RemoteError::Unavailable {
            url: config.url.clone(),
            env: env.name.clone(),
            detail: cut(&e.to_string(), &credentials),
        })?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let remote = RemoteStore {
            store,
            prefix: config.prefix.clone(),
            url: config.url.clone(),
            env: env.name.clone(),
            credentials,
            runtime,
            trusted: Vec::new(),
            head_hint: std::sync::Mutex::new(0),
        };
        remote.check(&config.credentials)?;
        Ok(remote)
    }

    /// Trusts `keys` for the environment's records: from then on a cache
    /// hit from the store is used only when its record is signed by one of
    /// them (without keys, as in an environment that does not sign, the
    /// entry's digests are all that is checked).
    pub fn with_trusted(mut self, keys: Vec<cordon_record::attest::TrustedKey>) -> RemoteStore {
        self.trusted = keys;
        self
    }

    /// The store's URL as configured.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn check(&self, credentials: &StoreCredentials) -> Result<(), RemoteError> {
        let source = match credentials {
            StoreCredentials::Env {
                access_key_id,
                secret_access_key,
            } => format!("{access_key_id} and {secret_access_key}"),
            StoreCredentials::Secrets {
                access_key_id,
                secret_access_key,
            } => format!(
                "the secrets `{access_key_id}` and `{secret_access_key}` of environment `{}`",
                self.env
            ),
        };
        let prefix = self.key("cache");
        let result = self.block_on(async { self.store.list_with_delimiter(Some(&prefix)).await });
        let Err(e) = result else { return Ok(()) };
        let text = self.cut(&e);
        // A listing refused for its signature or key comes back as a
        // generic error carrying the status; the typed variants cover the
        // rest.
        let refused = matches!(
            e,
            object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
        ) || text.contains("403 Forbidden")
            || text.contains("401 Unauthorized");
        let detail = s3_reason(&text).unwrap_or(text);
        if refused {
            Err(RemoteError::Refused {
                url: self.url.clone(),
                vars: source,
                detail,
            })
        } else {
            Err(RemoteError::Unavailable {
                url: self.url.clone(),
                env: self.env.clone(),
                detail,
            })
        }
    }

    /// Runs `f` on the store's own runtime. The engine calls the store
    /// from plain threads (the scheduler's workers), never from inside an
    /// async runtime, where blocking would be refused.
    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    fn key(&self, rest: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(rest)
        } else {
            ObjectPath::from(format!("{}/{rest}", self.prefix))
        }
    }

    fn cut(&self, e: &object_store::Error) -> String {
        cut(&e.to_string(), &self.credentials)
    }

    fn object_error(&self, object: &ObjectPath, e: &object_store::Error) -> RemoteError {
        RemoteError::Object {
            object: object.to_string(),
            detail: self.cut(e),
        }
    }

    /// Writes `bytes` to `object` unless it is there: `Ok(true)` when this
    /// call created it, `Ok(false)` when it was already present.
    async fn put_create(&self, object: &ObjectPath, bytes: Vec<u8>) -> Result<bool, RemoteError> {
        let opts = PutOptions::from(PutMode::Create);
        match self
            .store
            .put_opts(object, PutPayload::from(bytes), opts)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(self.object_error(object, &e)),
        }
    }

    /// The bytes of `object`, at most `cap` of them; `None` when absent.
    async fn get_capped(
        &self,
        object: &ObjectPath,
        cap: u64,
    ) -> Result<Option<Vec<u8>>, RemoteError> {
        let got = match self.store.get(object).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.object_error(object, &e)),
        };
        if got.meta.size > cap {
            return Err(RemoteError::Tampered {
                object: object.to_string(),
                detail: format!(
                    "it has {} bytes, more than the {cap} allowed",
                    got.meta.size
                ),
            });
        }
        let bytes = got
            .bytes()
            .await
            .map_err(|e| self.object_error(object, &e))?;
        Ok(Some(bytes.to_vec()))
    }

    /// Puts the pack of every output tree of a successful run (`record`)
    /// in the store, all in parallel: what a cache hit and a `--step` run
    /// on another machine restore from. Returns whether every tree was
    /// shared (one larger than [`MAX_PACK_BYTES`] stays local, with a
    /// warning).
    pub fn push_outputs(
        &self,
        cas: &crate::cas::Cas,
        record: &cordon_record::record::StepRecord,
    ) -> Result<bool, RemoteError> {
        if !record.success {
            return Ok(false);
        }
        let mut packs = Vec::new();
        let mut all = true;
        for m in &record.mounts {
            let Some(after) = &m.after else { continue };
            let Some(entries) = &after.entries else {
                continue;
            };
            let total: u64 = entries
                .iter()
                .filter(|e| e.sha256.is_some())
                .map(|e| e.size)
                .sum();
            if total > MAX_PACK_BYTES {
                tracing::warn!(
                    "output {} ({total} bytes) is larger than a shared pack may be ({MAX_PACK_BYTES}); it stays on this machine",
                    m.guest
                );
                all = false;
                continue;
            }
            let mut pack = Vec::with_capacity(total as usize);
            for e in entries {
                if let Some(hex) = &e.sha256 {
                    let d = Sha256Digest::parse(&format!("sha256:{hex}"))
                        .map_err(std::io::Error::other)?;
                    pack.extend_from_slice(&cas.get(&d)?);
                }
            }
            packs.push((self.pack_key(after.sha256.hex()), pack));
        }
        self.block_on(async {
            let results: Vec<Result<bool, RemoteError>> = futures::stream::iter(packs)
                .map(|(object, bytes)| async move { self.put_create(&object, bytes).await })
                .buffer_unordered(IN_FLIGHT)
                .collect()
                .await;
            results.into_iter().try_for_each(|r| r.map(|_| ()))
        })?;
        Ok(all)
    }

    /// Whether the store has an action entry for `shared`.
    fn has_action(&self, shared: &ActionKey) -> Result<bool, RemoteError> {
        let object = self.key(&format!("cache/actions/{}", shared.0.hex()));
        match self.block_on(self.store.head(&object)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.object_error(&object, &e)),
        }
    }

    fn pack_key(&self, tree_hex: &str) -> ObjectPath {
        self.key(&format!("cas/packs/sha256/{tree_hex}"))
    }

    /// Files the action entry kept locally under `keys.0` as the store's
    /// entry for `keys.1` (the shared key), with the record of the run it
    /// names and the chain entry that holds that record. An entry whose
    /// record is gone, or is not known to be in the shared chain, is not
    /// shared. The packs and the chain entry go first
    /// ([`RemoteStore::share_run`]), so no machine sees an entry whose packs
    /// or chained record are not there.
    pub fn push_action(&self, cache: &ActionCache, keys: Keys<'_>) -> Result<(), RemoteError> {
        let (key, shared) = keys;
        let both = crate::cache::ActionKeys {
            local: key.clone(),
            shared: shared.clone(),
        };
        let Ok(Some(entry)) = cache.get(&both) else {
            return Ok(());
        };
        let Some(sequence) = chained_at(cache.state_dir(), &entry.run_id) else {
            return Ok(());
        };
        // The record of the run that produced the outputs (for a cache hit,
        // the earlier run), which a pulling machine checks the entry by.
        let Ok(record) = std::fs::read_to_string(&entry.record) else {
            return Ok(());
        };
        let envelope = std::fs::read_to_string(envelope_beside(&entry.record)).ok();
        let mut shared_entry = serde_json::to_value(&entry).map_err(std::io::Error::other)?;
        // The local path of the record means nothing on another machine.
        shared_entry["record"] = serde_json::Value::String(String::new());
        shared_entry["key"] = serde_json::Value::String(shared.0.to_string());
        let action = SharedAction {
            format: ACTION_FORMAT.into(),
            entry: shared_entry,
            record,
            envelope,
            sequence,
        };
        let bytes = serde_json::to_vec(&action).map_err(std::io::Error::other)?;
        let object = self.key(&format!("cache/actions/{}", shared.0.hex()));
        self.block_on(self.put_create(&object, bytes))?;
        Ok(())
    }

    /// Copies the output tree `tree` (with its entries) from the store into
    /// the local content store: its pack fetched once, cut into files, each
    /// checked against its digest before any is stored.
    pub fn fetch_tree(
        &self,
        cas: &crate::cas::Cas,
        tree: &Sha256Digest,
        entries: &[cordon_core::digest::Entry],
        guest: &str,
    ) -> Result<(), RemoteError> {
        if cas.has_entries(entries) {
            return Ok(());
        }
        let pack = self.pack_key(tree.hex());
        let bytes = self
            .block_on(self.get_capped(&pack, MAX_PACK_BYTES))?
            .ok_or_else(|| RemoteError::Object {
                object: pack.to_string(),
                detail: "missing, though a record names it".into(),
            })?;
        let files: Vec<(&str, u64, &str)> = entries
            .iter()
            .filter_map(|e| e.sha256.as_deref().map(|h| (e.path.as_str(), e.size, h)))
            .collect();
        for (d, range) in cut_pack(&pack, &bytes, &files, guest)? {
            cas.put_verified(&d, &bytes[range])?;
        }
        Ok(())
    }

    /// Looks `keys.shared` up in the store. A hit is used only when it
    /// holds: its record is signed by a key trusted here, what the record
    /// says ran gives exactly that key, the record names the trees the
    /// entry restores, and the chain entry the action names holds that
    /// record byte for byte. Then every file of the entry is cut from its
    /// tree's pack, checked against the entry's digest and put in the
    /// local content store; the record is kept under
    /// `<state>/shared/records/`, noted as chained, and the entry written
    /// to the local action cache under `keys.local`, whose
    /// [`ActionCache::get`] then serves it as any local hit. `Ok(None)` on
    /// a miss.
    pub fn pull_action(
        &self,
        cache: &ActionCache,
        state_dir: &Path,
        keys: &crate::cache::ActionKeys,
    ) -> Result<Option<ActionEntry>, RemoteError> {
        let (key, shared) = (&keys.local, &keys.shared);
        let object = self.key(&format!("cache/actions/{}", shared.0.hex()));
        let Some(bytes) = self.block_on(self.get_capped(&object, MAX_ENTRY_BYTES))? else {
            return Ok(None);
        };
        let tampered = |detail: String| RemoteError::Tampered {
            object: object.to_string(),
            detail,
        };
        let action: SharedAction =
            serde_json::from_slice(&bytes).map_err(|e| tampered(format!("not an entry: {e}")))?;
        if action.format != ACTION_FORMAT {
            return Err(tampered("it has an unknown format".into()));
        }
        let entry_bytes = serde_json::to_vec(&action.entry).map_err(std::io::Error::other)?;
        let mut entry = ActionEntry::parse(&entry_bytes, shared).map_err(tampered)?;
        let record: cordon_record::record::StepRecord = serde_json::from_str(&action.record)
            .map_err(|e| tampered(format!("its record does not parse: {e}")))?;
        // Signed by a key trusted here, over exactly this record ...
        if !self.trusted.is_empty() {
            let envelope = action.envelope.as_deref().ok_or_else(|| {
                tampered(format!(
                    "its record is not signed, and environment `{}` trusts keys",
                    self.env
                ))
            })?;
            check_envelope(envelope, &action.record, &self.trusted).map_err(tampered)?;
        }
        if record.run_id != entry.run_id {
            return Err(tampered(format!(
                "its record is of run {}, not of run {}",
                cordon_core::sanitize::escape_for_terminal(&record.run_id),
                entry.run_id
            )));
        }
        // ... which says it ran exactly the action filed under this key ...
        let proven = crate::cache::KeyDocument::for_record(&record)
            .map_err(&tampered)?
            .keys();
        if proven.shared != *shared {
            return Err(tampered(format!(
                "its record (run {}) is of another action: what it says ran gives key {}, not the key it is filed under",
                entry.run_id, proven.shared.0
            )));
        }
        // ... and names exactly the trees the entry restores ...
        crate::cache::names_outputs(&record, &entry).map_err(&tampered)?;
        // ... and is in the shared chain, where the action says.
        self.check_chained(action.sequence, &action.record, action.envelope.as_deref())
            .map_err(tampered)?;
        // Every pack, fetched in parallel, cut into files, each checked
        // before any of it is stored.
        let wanted: Vec<_> = entry
            .outputs
            .iter()
            .filter(|o| o.entries.iter().any(|e| e.sha256.is_some()))
            .map(|o| {
                let pack = self.pack_key(tree_hex(&o.tree));
                (o, pack)
            })
            .collect();
        let fetched: Vec<Result<(usize, Vec<u8>), RemoteError>> = self.block_on(async {
            futures::stream::iter(wanted.iter().enumerate())
                .map(|(i, (_, pack))| async move {
                    match self.get_capped(pack, MAX_PACK_BYTES).await? {
                        Some(b) => Ok((i, b)),
                        None => Err(RemoteError::Object {
                            object: pack.to_string(),
                            detail: "missing, though an action entry names it".into(),
                        }),
                    }
                })
                .buffer_unordered(IN_FLIGHT)
                .collect()
                .await
        });
        let mut packs = vec![Vec::new(); wanted.len()];
        for r in fetched {
            let (i, bytes) = r?;
            packs[i] = bytes;
        }
        let mut checked = Vec::new();
        for (i, ((out, pack), bytes)) in wanted.iter().zip(&packs).enumerate() {
            let files: Vec<(&str, u64, &str)> = out
                .entries
                .iter()
                .filter_map(|e| e.sha256.as_deref().map(|h| (e.path.as_str(), e.size, h)))
                .collect();
            for (d, range) in cut_pack(pack, bytes, &files, &out.guest)? {
                checked.push((d, range, i));
            }
        }
        for (d, range, i) in &checked {
            cache.cas().put_verified(d, &packs[*i][range.clone()])?;
        }
        let records = shared_records_dir(state_dir);
        cordon_core::fsutil::create_private_dir(&records)?;
        let record_file = records.join(format!("{}.json", entry.run_id));
        cordon_core::fsutil::write_atomic(&record_file, action.record.as_bytes())?;
        if let Some(envelope) = &action.envelope {
            cordon_core::fsutil::write_atomic(&envelope_beside(&record_file), envelope.as_bytes())?;
        }
        note_chained(state_dir, &entry.run_id, action.sequence)?;
        entry.record = record_file;
        // Filed locally under the local key, as a run here would be.
        entry.key = key.0.to_string();
        cache.put(key, &entry)?;
        Ok(Some(entry))
    }

    /// Whether chain entry `sequence` holds `record` and `envelope`, byte
    /// for byte: one read, not the whole chain. (That the chain links up to
    /// it, and holds it once, is what `cordon verify --env` checks.)
    fn check_chained(
        &self,
        sequence: u64,
        record: &str,
        envelope: Option<&str>,
    ) -> Result<(), String> {
        let object = self.chain_key(sequence);
        let not =
            |why: &str| format!("its record is not in the shared chain (entry {sequence} {why})");
        let bytes = match self.block_on(self.get_capped(&object, MAX_ENTRY_BYTES)) {
            Ok(Some(b)) => b,
            Ok(None) => return Err(not("is missing")),
            Err(e) => return Err(not(&format!("cannot be read: {e}"))),
        };
        let entry: ChainObject =
            serde_json::from_slice(&bytes).map_err(|_| not("is not a chain entry"))?;
        if entry.sequence != sequence
            || entry.record != record
            || entry.envelope.as_deref() != envelope
        {
            return Err(not("holds another record"));
        }
        Ok(())
    }

    /// Shares one sealed run, in the order that never leaves a servable
    /// action entry without its chained record: unless the store has the
    /// run's action entry already, the packs of its outputs (`cache` names
    /// the local cache); then its record, as a new entry of the shared
    /// chain (noted locally as chained); then, when it is cacheable
    /// (`Keys`: the local key and the shared key) and the store lacked it,
    /// its action entry.
    pub fn share_run(
        &self,
        cache: Option<(&ActionCache, Option<Keys<'_>>)>,
        record_path: &Path,
        envelope_path: Option<&Path>,
    ) -> Result<Appended, RemoteError> {
        let record = std::fs::read_to_string(record_path)?;
        let envelope = envelope_path.map(std::fs::read_to_string).transpose()?;
        let typed: cordon_record::record::StepRecord =
            serde_json::from_str(&record).map_err(std::io::Error::other)?;
        let mut entry_to_push = None;
        if let Some((cache, keys)) = cache {
            let present = match keys {
                Some((_, shared)) => self.has_action(shared)?,
                None => false,
            };
            // An entry already in the store means its packs are too.
            if !present && self.push_outputs(cache.cas(), &typed)? {
                entry_to_push = keys.map(|k| (cache, k));
            }
        }
        let appended = self.append_chain(&record, envelope.as_deref())?;
        if let Some(state) = cache.map(|(c, _)| c.state_dir()) {
            note_chained(state, &typed.run_id, appended.sequence)?;
        }
        cordon_core::fault::point("after-shared-chain");
        if let Some((cache, keys)) = entry_to_push {
            self.push_action(cache, keys)?;
        }
        Ok(appended)
    }

    fn chain_key(&self, sequence: u64) -> ObjectPath {
        self.key(&format!(
            "records/chain/{sequence:0width$}",
            width = SEQUENCE_DIGITS
        ))
    }

    /// The newest entry of the shared chain: its sequence and the digest of
    /// its bytes (`(0, genesis)` for an empty chain). One listing (of the
    /// entries after the newest this runner has seen), then probes forward,
    /// since a listing may lag a create that just happened.
    fn head(&self) -> Result<(u64, Sha256Digest), RemoteError> {
        let prefix = self.key("records/chain");
        let hint = *self.head_hint.lock().unwrap_or_else(|e| e.into_inner());
        let listed: Vec<u64> = self.block_on(async {
            let mut names = vec![hint];
            let mut stream = if hint > 0 {
                self.store
                    .list_with_offset(Some(&prefix), &self.chain_key(hint))
            } else {
                self.store.list(Some(&prefix))
            };
            while let Some(meta) = stream.next().await {
                let meta = meta.map_err(|e| self.object_error(&prefix, &e))?;
                if let Some(n) = meta.location.filename().and_then(|f| f.parse::<u64>().ok()) {
                    names.push(n);
                }
            }
            Ok::<_, RemoteError>(names)
        })?;
        let mut sequence = listed.into_iter().max().unwrap_or(0);
        let mut digest = cordon_record::chain::genesis();
        if sequence > 0 {
            let object = self.chain_key(sequence);
            let bytes = self
                .block_on(self.get_capped(&object, MAX_ENTRY_BYTES))?
                .ok_or_else(|| RemoteError::Object {
                    object: object.to_string(),
                    detail: "listed but missing".into(),
                })?;
            digest = Sha256Digest::of(&bytes);
        }
        loop {
            let next = self.chain_key(sequence + 1);
            match self.block_on(self.get_capped(&next, MAX_ENTRY_BYTES))? {
                Some(bytes) => {
                    sequence += 1;
                    digest = Sha256Digest::of(&bytes);
                }
                None => {
                    let mut seen = self.head_hint.lock().unwrap_or_else(|e| e.into_inner());
                    *seen = (*seen).max(sequence);
                    return Ok((sequence, digest));
                }
            }
        }
    }

    /// Appends `record` (a step record file's text, with its DSSE
    /// `envelope` when signed) to the shared chain as the object
    /// `records/chain/<sequence>`, created only if absent. A runner that
    /// finds the sequence taken re-reads the head and tries again, so every
    /// entry lands exactly once and the sequences stay contiguous.
    pub fn append_chain(
        &self,
        record: &str,
        envelope: Option<&str>,
    ) -> Result<Appended, RemoteError> {
        let (mut sequence, mut previous) = self.head()?;
        loop {
            let entry = ChainObject {
                format: CHAIN_FORMAT.into(),
                sequence: sequence + 1,
                previous: previous.clone(),
                record: record.to_string(),
                envelope: envelope.map(str::to_string),
            };
            let bytes = serde_json::to_vec(&entry).map_err(std::io::Error::other)?;
            let object = self.chain_key(sequence + 1);
            if self.block_on(self.put_create(&object, bytes))? {
                return Ok(Appended {
                    sequence: sequence + 1,
                    object: object.to_string(),
                });
            }
            (sequence, previous) = self.head()?;
        }
    }

    /// Reads the whole shared chain and checks it: sequences 1, 2, ... with
    /// no gap, each entry's `previous` the digest of the entry before, each
    /// entry's sequence the one its name says, each record a step record,
    /// no run id and no record in two entries (a genuine entry copied to
    /// the head and relinked is a replay: both places are named),
    /// and each signed record's envelope valid under one of `trusted` and
    /// over exactly that record. With `trusted` keys given, an unsigned
    /// record is a problem too. What a chain alone cannot show is that its
    /// newest entries were removed.
    pub fn verify_chain(
        &self,
        trusted: &[cordon_record::attest::TrustedKey],
    ) -> Result<ChainReport, RemoteError> {
        let (head, _) = self.head()?;
        let mut problems = Vec::new();
        let mut records = Vec::new();
        let mut signed = 0;
        let mut previous = cordon_record::chain::genesis();
        let mut unique = cordon_record::chain::Uniqueness::default();
        let objects: Vec<_> = (1..=head).map(|s| self.chain_key(s)).collect();
        let fetched: Vec<Result<Option<Vec<u8>>, RemoteError>> = self.block_on(async {
            futures::stream::iter(objects.iter())
                .map(|o| self.get_capped(o, MAX_ENTRY_BYTES))
                .buffered(IN_FLIGHT)
                .collect()
                .await
        });
        for (i, got) in fetched.into_iter().enumerate() {
            let sequence = i as u64 + 1;
            let mut problem = |p: String| problems.push(format!("entry {sequence}: {p}"));
            let Some(bytes) = got? else {
                problem("missing".into());
                previous = cordon_record::chain::genesis();
                continue;
            };
            match serde_json::from_slice::<ChainObject>(&bytes) {
                Err(e) => problem(format!("not a chain entry: {e}")),
                Ok(entry) => {
                    if entry.format != CHAIN_FORMAT {
                        problem("an unknown format".into());
                    }
                    if entry.sequence != sequence {
                        problem(format!("says it is entry {}", entry.sequence));
                    }
                    if entry.previous != previous {
                        problem(format!("does not link to entry {}", sequence - 1));
                    }
                    match serde_json::from_str::<cordon_record::record::StepRecord>(&entry.record) {
                        Err(_) => problem("holds no step record".into()),
                        Ok(r) => {
                            let digest = Sha256Digest::of(entry.record.as_bytes()).to_string();
                            if let Some(p) = unique.check(sequence, &r.run_id, &digest) {
                                problem(p);
                            }
                        }
                    }
                    match &entry.envelope {
                        Some(envelope) => match check_envelope(envelope, &entry.record, trusted) {
                            Ok(()) => signed += 1,
                            Err(e) => problem(e),
                        },
                        None if !trusted.is_empty() => problem("the record is not signed".into()),
                        None => {}
                    }
                    records.push(entry.record);
                }
            }
            previous = Sha256Digest::of(&bytes);
        }
        Ok(ChainReport {
            entries: head,
            signed,
            problems,
            records,
        })
    }
}

/// Whether `envelope` is signed by one of `trusted` over the statement of
/// exactly `record`.
fn check_envelope(
    envelope: &str,
    record: &str,
    trusted: &[cordon_record::attest::TrustedKey],
) -> Result<(), String> {
    if trusted.is_empty() {
        return Err("the record is signed, but no key is trusted for its environment".into());
    }
    let (payload_type, payload) =
        cordon_record::attest::open_envelope(envelope.as_bytes(), trusted)
            .map_err(|e| format!("the signature does not hold: {e}"))?;
    let expected = cordon_record::attest::statement_bytes(record.as_bytes())
        .map_err(|e| format!("the record does not parse: {e}"))?;
    if payload_type != cordon_record::attest::PAYLOAD_TYPE || payload != expected {
        return Err("the signed statement is not the record's".into());
    }
    Ok(())
}

/// Cuts `bytes` (the pack `pack`) into the files it holds, in order, and
/// checks each against its digest: `(digest, range)` of each. Never panics,
/// whatever the bytes.
fn cut_pack(
    pack: &ObjectPath,
    bytes: &[u8],
    files: &[(&str, u64, &str)],
    guest: &str,
) -> Result<Vec<(Sha256Digest, std::ops::Range<usize>)>, RemoteError> {
    let tampered = |detail: String| RemoteError::Tampered {
        object: pack.to_string(),
        detail,
    };
    let mut out = Vec::with_capacity(files.len());
    let mut at = 0usize;
    for (path, size, hex) in files {
        let end = at
            .checked_add(usize::try_from(*size).unwrap_or(usize::MAX))
            .filter(|end| *end <= bytes.len())
            .ok_or_else(|| tampered("it is shorter than the files listed for it".into()))?;
        let d = Sha256Digest::of(&bytes[at..end]);
        if d.hex() != *hex {
            return Err(tampered(format!(
                "file `{}` of output {guest} hashes to {d}, not sha256:{hex}",
                cordon_core::sanitize::escape_for_terminal(path)
            )));
        }
        out.push((d, at..end));
        at = end;
    }
    if at != bytes.len() {
        return Err(tampered(
            "it holds more than the files listed for it".into(),
        ));
    }
    Ok(out)
}

/// [`RemoteStore::pull_action`] for a step run: a hit, or `None` on a miss
/// and on any failure, which is logged as a warning. A tampered or
/// unreachable store costs a re-run here, never a wrong output.
pub fn pull_or_warn(
    remote: &RemoteStore,
    cache: &ActionCache,
    state_dir: &Path,
    keys: &crate::cache::ActionKeys,
    step: &str,
) -> Option<ActionEntry> {
    match remote.pull_action(cache, state_dir, keys) {
        Ok(hit) => hit,
        Err(e) => {
            tracing::warn!("{e}; running step {step}");
            None
        }
    }
}

/// The hit of a step run in an environment with a shared store: the local
/// entry `local` when its record is known to be in the shared chain (see
/// the module documentation), otherwise whatever the store holds
/// ([`pull_or_warn`]).
pub fn hit_or_pull(
    remote: &RemoteStore,
    cache: &ActionCache,
    state_dir: &Path,
    local: Option<ActionEntry>,
    keys: &crate::cache::ActionKeys,
    step: &str,
) -> Option<ActionEntry> {
    match local {
        Some(entry) if chained_at(state_dir, &entry.run_id).is_some() => Some(entry),
        _ => pull_or_warn(remote, cache, state_dir, keys, step),
    }
}

/// Where this machine notes which of its runs the shared chain holds, and
/// at which sequence: `<state>/shared/chained/<run id>`.
fn chained_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("shared").join("chained")
}

/// The sequence at which the shared chain holds run `run_id`'s record, as
/// noted here; `None` when it is not known to hold it.
pub fn chained_at(state_dir: &Path, run_id: &str) -> Option<u64> {
    if !cordon_record::chain::is_run_id(run_id) {
        return None;
    }
    let bytes = cordon_core::fsutil::read_regular(&chained_dir(state_dir).join(run_id), 32).ok()?;
    std::str::from_utf8(&bytes).ok()?.trim().parse().ok()
}

/// Notes that the shared chain holds run `run_id` at `sequence`. Not
/// fsynced: lost, it costs a re-run of the step, never a wrong hit.
fn note_chained(state_dir: &Path, run_id: &str, sequence: u64) -> Result<(), RemoteError> {
    if !cordon_record::chain::is_run_id(run_id) {
        return Ok(());
    }
    let dir = chained_dir(state_dir);
    cordon_core::fsutil::create_private_dir(&dir)?;
    cordon_core::fsutil::replace_unsynced(&dir.join(run_id), sequence.to_string().as_bytes())?;
    Ok(())
}

/// The access key id and secret access key of `config`, from where it
/// says. Neither is ever part of an error.
fn credentials(
    env: &cordon_manifest::config::EnvConfig,
    config: &StoreConfig,
) -> Result<(String, String), RemoteError> {
    match &config.credentials {
        StoreCredentials::Env {
            access_key_id,
            secret_access_key,
        } => {
            let read = |var: &str| {
                std::env::var(var)
                    .ok()
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| RemoteError::MissingCredentials {
                        env: env.name.clone(),
                        var: var.into(),
                    })
            };
            Ok((read(access_key_id)?, read(secret_access_key)?))
        }
        StoreCredentials::Secrets {
            access_key_id,
            secret_access_key,
        } => {
            use cordon_manifest::manifest::{SecretGrant, SecretUse};
            let names = format!("{access_key_id}` and `{secret_access_key}");
            let fail = |detail: String| RemoteError::SecretCredentials {
                env: env.name.clone(),
                names: names.clone(),
                detail,
            };
            // The runner itself reads them (never a step): the one use
            // that hands out the value.
            let grant = |name: &str| SecretGrant {
                name: name.into(),
                uses: [SecretUse::Reveal].into_iter().collect(),
                key: None,
                hosts: Vec::new(),
                at: config.at,
            };
            let mut resolution =
                cordon_secrets::resolve(env, &[grant(access_key_id), grant(secret_access_key)])
                    .map_err(|e| fail(e.to_string()))?;
            let text = |i: usize| {
                resolution.secrets[i]
                    .value
                    .with_bytes(|b| String::from_utf8(b.trim_ascii().to_vec()))
                    .map_err(|_| fail("a value is not text".into()))
            };
            let pair = (text(0)?, text(1)?);
            resolution.finish().map_err(|e| fail(e.to_string()))?;
            Ok(pair)
        }
    }
}

/// The DSSE envelope file beside record file `record` (`<run>.json` →
/// `<run>.dsse.json`), as the chain writes them.
fn envelope_beside(record: &Path) -> PathBuf {
    record.with_extension("dsse.json")
}

/// Where records of runs that other machines executed are kept locally.
pub fn shared_records_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("shared").join("records")
}

/// The hex of a tree digest `sha256:<hex>` (checked by the entry's parse).
fn tree_hex(tree: &str) -> &str {
    tree.strip_prefix("sha256:").unwrap_or(tree)
}

/// The `<Code>` and `<Message>` of an S3 error body quoted in `text`, as
/// `Code: Message`: what a user can act on, without the request's details.
fn s3_reason(text: &str) -> Option<String> {
    let between = |open: &str, close: &str| {
        let start = text.find(open)? + open.len();
        let end = text[start..].find(close)? + start;
        Some(text[start..end].to_string())
    };
    let code = between("<Code>", "</Code>")?;
    Some(match between("<Message>", "</Message>") {
        Some(m) => format!("{code}: {m}"),
        None => code,
    })
}

/// `text` with every credential cut out, for messages built from client
/// errors (a store may echo what it was sent).
fn cut(text: &str, credentials: &[String]) -> String {
    let mut out = text.to_string();
    for c in credentials.iter().filter(|c| !c.is_empty()) {
        out = out.replace(c.as_str(), "[credential]");
    }
    cordon_core::sanitize::escape_for_terminal(&out).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_never_hold_a_credential() {
        let creds = vec!["s3cr3t-value".to_string(), "AKID".to_string()];
        let text = cut("denied for AKID signing with s3cr3t-value", &creds);
        assert!(
            !text.contains("s3cr3t-value") && !text.contains("AKID"),
            "{text}"
        );
    }

    #[test]
    fn an_s3_error_body_is_told_by_its_code_and_message() {
        let text = "403 Forbidden: <?xml?><Error><Code>SignatureDoesNotMatch</Code><Message>Check your key.</Message></Error>";
        assert_eq!(
            s3_reason(text).as_deref(),
            Some("SignatureDoesNotMatch: Check your key.")
        );
        assert_eq!(s3_reason("connection refused"), None);
    }

    #[test]
    fn chain_objects_sort_by_name() {
        let a = format!("{:0w$}", 9, w = SEQUENCE_DIGITS);
        let b = format!("{:0w$}", 10, w = SEQUENCE_DIGITS);
        assert!(a < b);
        assert_eq!(a.len(), SEQUENCE_DIGITS);
    }
}

/// Fuzz targets for what the runner reads from the bucket before it trusts
/// it: packs cut into files, a shared record's envelope, and the store's
/// error bodies. A bounded run is part of `cargo test`; `PROPTEST_CASES`
/// raises it (docs/security.md, "Fuzzing").
#[cfg(test)]
mod fuzz {
    use super::*;
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

    fn signer() -> cordon_record::attest::Signer {
        cordon_record::attest::Signer::from_key(ed25519_dalek::SigningKey::from_bytes(&[5; 32]))
    }

    fn trusted() -> cordon_record::attest::TrustedKey {
        let s = signer();
        cordon_record::attest::TrustedKey {
            keyid: s.keyid().into(),
            key: s.public(),
            source: "test".into(),
        }
    }

    /// A record as a runner writes it, and the envelope that signs its
    /// statement.
    fn signed_record() -> (String, String) {
        let d = |s: &str| Sha256Digest::of(s.as_bytes()).to_string();
        let record = serde_json::to_string_pretty(&serde_json::json!({
            "format": "cordon.step-record/v1", "run_id": "r", "step": "a", "environment": "dev",
            "runner": {"sandbox": "x", "version": "0"},
            "manifest": {"path": "/m", "sha256": d("m")}, "component": {"path": "/c", "sha256": d("c")},
            "mounts": [{"guest": "/out", "host": "/o", "access": "write", "after":
                {"sha256": d("t"), "files": 1, "bytes": 1, "entries": [
                    {"path": "f", "file": null, "size": 1, "sha256": Sha256Digest::of(b"x").hex()}]}}],
            "stdout": {"sha256": d("")}, "stderr": {"sha256": d("")},
        }))
        .unwrap();
        let statement = cordon_record::attest::statement_bytes(record.as_bytes()).unwrap();
        let envelope = signer()
            .envelope(cordon_record::attest::PAYLOAD_TYPE, &statement)
            .unwrap();
        (record, envelope.to_string())
    }

    proptest! {
        #![proptest_config(config(256))]

        #[test]
        fn a_pack_is_cut_into_exactly_the_files_listed_or_refused(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
            sizes in proptest::collection::vec(prop_oneof![0u64..24, Just(u64::MAX), any::<u64>()], 0..4),
            use_real in any::<bool>(),
        ) {
            // Digests that are either right for the piece the sizes name,
            // or arbitrary.
            let mut at = 0usize;
            let hexes: Vec<String> = sizes
                .iter()
                .map(|&n| {
                    let end = at.saturating_add(usize::try_from(n).unwrap_or(usize::MAX));
                    let h = match bytes.get(at..end) {
                        Some(piece) if use_real => Sha256Digest::of(piece).hex().to_string(),
                        _ => "0".repeat(64),
                    };
                    at = end;
                    h
                })
                .collect();
            let files: Vec<(&str, u64, &str)> = sizes
                .iter()
                .zip(&hexes)
                .map(|(n, h)| ("f", *n, h.as_str()))
                .collect();
            let pack = ObjectPath::from("packs/x");
            match cut_pack(&pack, &bytes, &files, "/out") {
                Ok(cut) => {
                    prop_assert_eq!(cut.len(), files.len());
                    let mut next = 0;
                    for ((d, range), (_, size, hex)) in cut.iter().zip(&files) {
                        prop_assert_eq!(range.start, next);
                        prop_assert_eq!((range.end - range.start) as u64, *size);
                        prop_assert_eq!(d.hex(), *hex);
                        prop_assert_eq!(&Sha256Digest::of(&bytes[range.clone()]), d);
                        next = range.end;
                    }
                    prop_assert_eq!(next, bytes.len());
                }
                Err(e) => {
                    let tampered = matches!(e, RemoteError::Tampered { .. });
                    prop_assert!(tampered, "{e}");
                }
            }
        }

        #[test]
        fn a_shared_record_holds_only_with_the_envelope_over_its_exact_bytes(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
            on_envelope in any::<bool>(),
        ) {
            let (record, envelope) = signed_record();
            let (mut r, mut e) = (record.clone().into_bytes(), envelope.clone().into_bytes());
            let target = if on_envelope { &mut e } else { &mut r };
            for (i, b) in &edits {
                let at = i.index(target.len());
                target[at] = *b;
            }
            let (r, e) = (String::from_utf8_lossy(&r), String::from_utf8_lossy(&e));
            let result = check_envelope(&e, &r, &[trusted()]);
            if r != record {
                prop_assert!(result.is_err(), "a changed record still holds");
            } else if e == envelope {
                prop_assert!(result.is_ok(), "{result:?}");
            }
            prop_assert!(check_envelope(&e, &r, &[]).is_err());
        }

        #[test]
        fn a_store_error_body_is_told_without_a_panic_and_without_credentials(
            body in "\\PC{0,16}(<Code>\\PC{0,8}</Code>)?\\PC{0,8}(<Message>\\PC{0,8}(</Message>)?)?",
            // No hex letters: escapes of controls must not spell it.
            credential in "[G-Z]{4,8}",
        ) {
            let _ = s3_reason(&body);
            let text = format!("{body} {credential} {body}");
            let shown = cut(&text, std::slice::from_ref(&credential));
            prop_assert!(!shown.contains(&credential), "{shown}");
        }
    }
}
