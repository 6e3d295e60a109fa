//! The plan: a validated manifest resolved against the machine.
//!
//! This module reads the component and checks its digest, resolves every
//! host path to an absolute canonical one, and checks that the grants make
//! sense together (no mount overlapping a written mount, none exposing the
//! state directory). What comes out is exactly what the sandbox will be
//! given; nothing downstream resolves a path again.
//!
//! Errors are [`ManifestError`]s pointing at the manifest line to change.

use crate::config::EnvConfig;
use crate::manifest::{
    Access, Classification, ClockMode, Limits, Manifest, ManifestError, Mount, Problem, RandomMode,
    SecretGrant, SecretUse, Sha256Digest,
};
use cordon_core::fsutil::resolve;
use std::path::{Path, PathBuf};

/// A mount's host path that cannot be expanded (an unknown variable).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MountPathError(pub String);

/// A mount with its host path resolved.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlannedMount {
    /// Absolute guest path.
    pub guest: String,
    /// Absolute, canonical host path. For `write` mounts the directory may
    /// not exist yet; it is created when outputs are published.
    pub host: PathBuf,
    /// Access.
    pub access: Access,
    /// Why the step needs it.
    pub purpose: String,
    /// Data classification.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classification: Option<Classification>,
    /// Whether its tree must have been promoted into the environment
    /// (`requires = "promoted"`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub requires_promoted: bool,
    /// Whether a `write` mount keeps what its host directory holds that no
    /// recorded run published there, in the content store, before
    /// replacing it (`existing = "keep"`); without it such a run is
    /// refused.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub keep_existing: bool,
    /// Where the mount's `host` is written in its manifest, for messages
    /// that point at it.
    #[serde(skip)]
    pub host_at: crate::manifest::Location,
}

/// One step, ready to run.
#[derive(Debug, Clone)]
pub struct StepPlan {
    /// Step name.
    pub name: String,
    /// Canonical manifest path.
    pub manifest_path: PathBuf,
    /// sha256 of the manifest bytes.
    pub manifest_sha256: Sha256Digest,
    /// Canonical component path.
    pub component_path: PathBuf,
    /// The verified component digest.
    pub component_digest: Sha256Digest,
    /// The component's bytes, verified against the pinned digest: read
    /// while planning, or, when the state directory's hash index vouches
    /// for the unchanged file, read (and verified again) only if something
    /// needs them (a compile-cache miss, the first copy into the content
    /// store). Shared: the steps of a pipeline that run the same component
    /// hold one copy.
    pub component_bytes: ComponentBytes,
    /// argv: the step name, then the granted arguments.
    pub argv: Vec<String>,
    /// The granted environment.
    pub env: Vec<(String, String)>,
    /// Mounts in manifest order.
    pub mounts: Vec<PlannedMount>,
    /// Secret grants (names and uses; values are resolved later).
    pub secrets: Vec<SecretGrant>,
    /// Limits.
    pub limits: Limits,
    /// The state directory (absolute).
    pub state_dir: PathBuf,
    /// The environment's name.
    pub environment: String,
    /// The wall clock the step sees.
    pub clock: ClockMode,
    /// The randomness the step sees.
    pub random: RandomMode,
    /// NaN handling of the step's float arithmetic.
    pub floats: crate::manifest::FloatMode,
    /// The network the step may reach; `None`: no `wasi:http` at all.
    pub network: Option<crate::manifest::NetworkGrant>,
}

fn nested(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// Largest component the runner reads, 256 MiB.
///
/// A component is read whole into memory, hashed and compiled; a path such
/// as `/dev/zero` or a runaway build artifact must be refused before it
/// fills the runner's memory. Real steps are a few megabytes (a large
/// Python step with its interpreter some tens); raising the cap costs
/// that much memory per distinct component of a pipeline, held for the
/// whole run.
pub const MAX_COMPONENT_BYTES: u64 = 256 << 20;

/// Reads a component file: a regular file of at most
/// [`MAX_COMPONENT_BYTES`], with a message that names the limit.
pub fn read_component(path: &Path) -> std::io::Result<Vec<u8>> {
    cordon_core::fsutil::read_regular(path, MAX_COMPONENT_BYTES).map_err(component_read_error)
}

/// The error of reading a component, naming the size limit when that is
/// what was hit.
fn component_read_error(e: std::io::Error) -> std::io::Error {
    if e.kind() == std::io::ErrorKind::InvalidData {
        std::io::Error::new(
            e.kind(),
            format!(
                "larger than {} MiB, the most a component may be",
                MAX_COMPONENT_BYTES >> 20
            ),
        )
    } else {
        e
    }
}

pub use cordon_core::locations::{COMPILE_CACHE_VAR, compile_cache_dir};

/// Paths no mount may contain, equal or lie inside, with what each holds.
///
/// A mount is how a step reaches the host, so a mount that reaches the
/// runner's own secrets hands them to the step: the secrets home (every
/// environment's encrypted store, the keys that open them, the trusted
/// public keys), the stores and key files a configuration names elsewhere,
/// record-signing and verifying keys, the vault's AppRole secret id file,
/// the compiled-code cache (native code the runner loads) and the key that
/// seals it, and the
/// configuration itself (which decides every grant). The state directory is
/// checked beside these. Paths are resolved through symbolic links first,
/// so a link in a host path cannot route around the check.
fn protected_paths(ctx: &PlanContext<'_>, state_dir: &Path) -> Vec<(PathBuf, String)> {
    let env = ctx.env;
    let mut out: Vec<(PathBuf, String)> = Vec::new();
    // A path that cannot be resolved is still protected as written:
    // dropping it would let the check fail open.
    let mut add = |p: &Path, what: String| {
        out.push((resolve(p).unwrap_or_else(|_| p.to_path_buf()), what));
    };
    if let Some(home) = cordon_core::locations::secrets_home() {
        add(
            &home,
            "the secrets home (encrypted secret stores, their keys and the trusted keys)".into(),
        );
    }
    if let Some(s) = &env.secrets.local.store {
        add(s, format!("the secret store of environment `{}`", env.name));
    }
    if let Some(k) = &env.secrets.local.key_file {
        add(
            k,
            format!("the key of environment `{}`'s secret store", env.name),
        );
    }
    if let Some(v) = &env.secrets.vault {
        if let crate::config::SecretIdSource::File(f) = &v.secret_id {
            add(f, "the vault AppRole secret id file".into());
        }
        if let Some(ca) = &v.ca_file {
            add(ca, "the vault CA file".into());
        }
    }
    if let Some(k) = &env.records.signing_key {
        add(k, "the record-signing key".into());
        if let Some(dir) = k.parent() {
            add(dir, "the directory of the record-signing key".into());
        }
    }
    for k in env.records.trusted_keys.iter().chain(&env.policy.reviewers) {
        add(k, "a key named in the configuration".into());
    }
    if let Some(c) = &env.config_file {
        add(c, "the workspace configuration".into());
    }
    add(
        &compile_cache_dir(state_dir),
        "the compiled-component cache (native code the runner loads)".into(),
    );
    if let Some(k) = cordon_core::locations::compile_cache_key_path() {
        add(&k, "the key that seals the compiled-component cache".into());
    }
    out
}

/// What a plan is resolved against.
#[derive(Debug, Clone, Copy)]
pub struct PlanContext<'a> {
    /// The environment the run is for.
    pub env: &'a EnvConfig,
    /// The directory of `cordon.toml` (relative variable values resolve
    /// against it).
    pub workspace_dir: &'a Path,
    /// The state directory of the run.
    pub state_dir: &'a Path,
    /// Host paths that earlier steps of a pipeline will write: a `read`
    /// mount inside one of them need not exist when the plan is made.
    pub produced: &'a [PathBuf],
    /// The state directory's hash index, when the run may trust it: an
    /// unchanged component file is then not read and hashed again.
    pub hash_index: Option<&'a cordon_core::digest::HashIndex>,
}

/// A step's component: its file and pinned digest, and its bytes once
/// read. Cloning shares the bytes. The bytes are only ever handed out after
/// their digest was found equal to the pinned one.
#[derive(Clone)]
pub struct ComponentBytes(std::sync::Arc<ComponentInner>);

struct ComponentInner {
    path: PathBuf,
    digest: Sha256Digest,
    bytes: std::sync::OnceLock<std::sync::Arc<[u8]>>,
}

impl std::fmt::Debug for ComponentBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComponentBytes")
            .field("path", &self.0.path)
            .field("digest", &self.0.digest)
            .field("read", &self.0.bytes.get().is_some())
            .finish()
    }
}

impl ComponentBytes {
    /// Bytes already read and found to have `digest`.
    pub fn checked(path: PathBuf, digest: Sha256Digest, bytes: std::sync::Arc<[u8]>) -> Self {
        let cell = std::sync::OnceLock::new();
        let _ = cell.set(bytes);
        ComponentBytes(std::sync::Arc::new(ComponentInner {
            path,
            digest,
            bytes: cell,
        }))
    }

    /// A file the hash index vouches has `digest`, not read yet.
    pub fn vouched(path: PathBuf, digest: Sha256Digest) -> Self {
        ComponentBytes(std::sync::Arc::new(ComponentInner {
            path,
            digest,
            bytes: std::sync::OnceLock::new(),
        }))
    }

    /// Whether the bytes have been read.
    pub fn is_read(&self) -> bool {
        self.0.bytes.get().is_some()
    }

    /// The bytes, read now if they were not: a file that no longer has the
    /// pinned digest is an error (fail closed), never run.
    pub fn get(&self) -> std::io::Result<std::sync::Arc<[u8]>> {
        if let Some(b) = self.0.bytes.get() {
            return Ok(b.clone());
        }
        let bytes = read_component(&self.0.path)?;
        let actual = Sha256Digest::of(&bytes);
        if actual != self.0.digest {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "component {} changed after it was checked: it now has digest {actual}, the manifest pins {}",
                    self.0.path.display(),
                    self.0.digest
                ),
            ));
        }
        Ok(self.0.bytes.get_or_init(|| bytes.into()).clone())
    }
}

/// Replaces `${name}` in a mount's host path with the environment's
/// variable; a relative value is relative to the workspace directory, and
/// made absolute: the manifest's directory is joined in front of a
/// relative result, and `--config cordon.toml` gives a relative workspace
/// directory.
fn expand_vars(host: &str, ctx: &PlanContext<'_>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = host;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed `${{` in host path `{host}`"))?;
        let name = &after[..end];
        let value = ctx.env.vars.get(name).ok_or_else(|| {
            format!(
                "`${{{name}}}` is not defined for environment `{}`",
                ctx.env.name
            )
        })?;
        if start == 0 && Path::new(value).is_relative() {
            let joined = ctx.workspace_dir.join(value);
            let joined = std::path::absolute(&joined).unwrap_or(joined);
            out.push_str(&joined.to_string_lossy());
        } else {
            out.push_str(value);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A mount's host path with variables expanded, joined to the manifest's
/// directory; neither resolved nor checked on disk (the audit shows it
/// without touching the data).
pub fn mount_host_raw(
    manifest: &Manifest,
    m: &Mount,
    ctx: &PlanContext<'_>,
) -> Result<PathBuf, MountPathError> {
    mount_host_raw_message(manifest, m, ctx).map_err(MountPathError)
}

fn mount_host_raw_message(
    manifest: &Manifest,
    m: &Mount,
    ctx: &PlanContext<'_>,
) -> Result<PathBuf, String> {
    Ok(manifest
        .dir
        .join(expand_vars(&m.host.to_string_lossy(), ctx)?))
}

/// A mount's absolute, canonical host path in `ctx` (what lineage compares).
pub(crate) fn mount_host(
    manifest: &Manifest,
    m: &Mount,
    ctx: &PlanContext<'_>,
) -> Result<PathBuf, String> {
    let raw = mount_host_raw_message(manifest, m, ctx)?;
    resolve(&raw).map_err(|e| format!("cannot resolve host path {}: {e}", raw.display()))
}

/// Resolves `manifest` for a run in `ctx`.
pub fn plan_step(manifest: &Manifest, ctx: &PlanContext<'_>) -> Result<StepPlan, ManifestError> {
    plan_step_with(manifest, ctx, &mut PlanMemo::default())
}

/// Paths no mount may reach, each with what it is (see [`protected_paths`]).
type Protected = std::rc::Rc<Vec<(PathBuf, String)>>;

/// What planning the steps of one pipeline shares between them, so each
/// is done once per pipeline rather than once per step:
///
/// - component files read and hashed, by path: steps that share a
///   component file all run the very bytes that were checked;
/// - paths resolved through their symbolic links: resolving walks the
///   path one component at a time (a `readlink` each), and every step
///   resolved the same state directory, manifest file and protected
///   paths, seventy system calls a step in a generated pipeline.
///
/// A memo lives for one planning pass; a later pass (the next run) starts
/// afresh.
#[derive(Default)]
pub struct PlanMemo {
    files: std::collections::HashMap<PathBuf, (ComponentBytes, Sha256Digest)>,
    resolved: std::collections::HashMap<PathBuf, PathBuf>,
    /// The protected paths, for the state directory they were built for
    /// (the environment is the same for every step of a pass).
    protected: Option<(PathBuf, Protected)>,
}

impl PlanMemo {
    /// [`resolve`], remembered. Failures are not remembered: they are
    /// reported, and the plan is not made.
    fn resolve(&mut self, path: &Path) -> std::io::Result<PathBuf> {
        if let Some(r) = self.resolved.get(path) {
            return Ok(r.clone());
        }
        let r = resolve(path)?;
        self.resolved.insert(path.to_path_buf(), r.clone());
        Ok(r)
    }

    /// [`protected_paths`] for `state_dir` in `ctx`, remembered.
    fn protected(&mut self, ctx: &PlanContext<'_>, state_dir: &Path) -> Protected {
        match &self.protected {
            Some((dir, list)) if dir == state_dir => list.clone(),
            _ => {
                let list = std::rc::Rc::new(protected_paths(ctx, state_dir));
                self.protected = Some((state_dir.to_path_buf(), list.clone()));
                list
            }
        }
    }
}

/// Like [`plan_step`], reusing (and adding to) what `memo` remembers from
/// the steps planned before it.
pub fn plan_step_with(
    manifest: &Manifest,
    ctx: &PlanContext<'_>,
    memo: &mut PlanMemo,
) -> Result<StepPlan, ManifestError> {
    let state_dir = ctx.state_dir;
    let mut problems: Vec<Problem> = Vec::new();
    let fail = |problems: Vec<Problem>| ManifestError {
        path: manifest.path.clone(),
        problems,
    };
    let io_problem = |what: String| Problem {
        line: 0,
        column: 0,
        message: what,
        fix: None,
    };

    let state_dir = memo.resolve(state_dir).map_err(|e| {
        fail(vec![io_problem(format!(
            "cannot resolve the state directory: {e}"
        ))])
    })?;
    let manifest_path = memo.resolve(&manifest.path).map_err(|e| {
        fail(vec![io_problem(format!(
            "cannot resolve the manifest path: {e}"
        ))])
    })?;

    let component_rel = manifest.dir.join(&manifest.component);
    let mut component_path = component_rel.clone();
    // Set only when the file was read (or vouched for) and has the pinned
    // digest; otherwise a problem says why and no plan is returned.
    let mut component_bytes: Option<ComponentBytes> = None;
    let read = match memo.files.get(&component_rel) {
        Some((bytes, digest)) => Ok((bytes.clone(), digest.clone())),
        None => {
            // An unchanged file the index vouches for is not read again
            // (a large component costs tens of milliseconds per run to
            // hash); otherwise it is read, hashed, and remembered.
            // Keyed by its canonical path, as every other entry is.
            let key = memo
                .resolve(&component_rel)
                .unwrap_or_else(|_| component_rel.clone());
            let read = match ctx.hash_index {
                Some(index) if index.vouch(&key).as_ref() == Some(&manifest.digest) => Ok((
                    ComponentBytes::vouched(component_rel.clone(), manifest.digest.clone()),
                    manifest.digest.clone(),
                )),
                Some(index) => index
                    .read_whole(&key, MAX_COMPONENT_BYTES)
                    .map_err(component_read_error)
                    .map(|(bytes, digest)| {
                        (
                            ComponentBytes::checked(
                                component_rel.clone(),
                                digest.clone(),
                                bytes.into(),
                            ),
                            digest,
                        )
                    }),
                None => read_component(&component_rel).map(|bytes| {
                    let digest = Sha256Digest::of(&bytes);
                    (
                        ComponentBytes::checked(
                            component_rel.clone(),
                            digest.clone(),
                            bytes.into(),
                        ),
                        digest,
                    )
                }),
            };
            if let Ok((bytes, digest)) = &read {
                memo.files
                    .insert(component_rel.clone(), (bytes.clone(), digest.clone()));
            }
            read
        }
    };
    match read {
        Err(e) => problems.push(manifest.component_at.problem(
            format!("cannot read component {}: {e}", component_rel.display()),
            Some("build the step (`cargo build --release --target wasm32-wasip2`) or correct the path; it is relative to the manifest".into()),
        )),
        Ok((bytes, actual)) => {
            if actual != manifest.digest {
                problems.push(manifest.digest_at.problem(
                    format!(
                        "component {} has digest {actual}, but the manifest pins {}; refusing to run an unreviewed component",
                        component_rel.display(),
                        manifest.digest
                    ),
                    Some(format!(
                        "if this build is the one you reviewed, pin it: digest = \"{actual}\" (or run `cordon pin {}`)",
                        manifest.path.display()
                    )),
                ));
            }
            component_bytes = Some(bytes);
            component_path = memo.resolve(&component_rel).unwrap_or(component_rel);
        }
    }

    let mut mounts = Vec::new();
    for m in &manifest.mounts {
        let raw = match mount_host_raw(manifest, m, ctx) {
            Ok(r) => r,
            Err(msg) => {
                problems.push(m.host_at.problem(
                    msg.to_string(),
                    Some(format!(
                        "define it under `[env.{}.vars]` in cordon.toml",
                        ctx.env.name
                    )),
                ));
                continue;
            }
        };

        let host = match memo.resolve(&raw) {
            Ok(h) => h,
            Err(e) => {
                problems.push(m.host_at.problem(
                    format!("cannot resolve host path {}: {e}", raw.display()),
                    None,
                ));
                continue;
            }
        };
        let upstream = m.access == Access::Read && ctx.produced.iter().any(|p| host.starts_with(p));
        match (m.access, std::fs::symlink_metadata(&raw)) {
            // An earlier step of the pipeline will create it.
            (Access::Read, Err(_)) if upstream => {}
            (Access::Read | Access::ReadWrite, Err(_)) => {
                problems.push(m.host_at.problem(
                    format!("host directory {} for {} mount {} does not exist", raw.display(), m.access, m.guest),
                    Some("create it or correct the path (relative to the manifest); only `write` mounts are created for the step".into()),
                ));
                continue;
            }
            (Access::Read | Access::ReadWrite, Ok(_)) if !host.is_dir() && !upstream => {
                problems.push(m.host_at.problem(
                    format!(
                        "host path {} for mount {} is not a directory",
                        raw.display(),
                        m.guest
                    ),
                    Some(
                        "mounts are directories; mount the directory that contains the file".into(),
                    ),
                ));
                continue;
            }
            (Access::Write, Ok(meta)) if meta.file_type().is_symlink() || !meta.is_dir() => {
                problems.push(m.host_at.problem(
                    format!("output path {} for write mount {} exists and is not a plain directory", raw.display(), m.guest),
                    Some("outputs are published by replacing a directory; point the mount at a directory (or a path that does not exist yet)".into()),
                ));
                continue;
            }
            _ => {}
        }
        mounts.push((m, host));
    }

    // Grants must not overlap in ways that would make a write escape its
    // mount or expose the runner's own state.
    let protected = memo.protected(ctx, &state_dir);
    for (i, (m, host)) in mounts.iter().enumerate() {
        for (p, what) in protected.iter() {
            if nested(host, p) {
                let how = if host == p {
                    "is"
                } else if host.starts_with(p) {
                    "lies inside"
                } else {
                    "contains"
                };
                problems.push(m.host_at.problem(
                    format!(
                        "mount {} ({}) {how} {what}, {}, which no step may reach",
                        m.guest,
                        host.display(),
                        p.display()
                    ),
                    Some("mount a narrower directory that holds only the step's data".into()),
                ));
            }
        }
        if nested(host, &state_dir) {
            problems.push(m.host_at.problem(
                format!(
                    "mount {} ({}) overlaps the state directory {}, which holds records and compiled code the step must not touch",
                    m.guest,
                    host.display(),
                    state_dir.display()
                ),
                Some("mount a narrower directory, or move the state with `--state DIR`".into()),
            ));
        }
        for (other, other_host) in &mounts[..i] {
            let writes = m.access != Access::Read || other.access != Access::Read;
            if writes && nested(host, other_host) {
                problems.push(m.host_at.problem(
                    format!(
                        "host path {} of mount {} overlaps {} of mount {}, and one of them is written",
                        host.display(),
                        m.guest,
                        other_host.display(),
                        other.guest
                    ),
                    Some("written mounts need host directories of their own, outside every other mount".into()),
                ));
            }
        }
    }

    problems.sort_by_key(|p| (p.line, p.column));
    let component_bytes = match component_bytes {
        Some(c) if problems.is_empty() => c,
        _ => return Err(fail(problems)),
    };

    let mut argv = vec![manifest.name.clone()];
    argv.extend(manifest.args.iter().cloned());
    Ok(StepPlan {
        name: manifest.name.clone(),
        manifest_path,
        manifest_sha256: manifest.sha256.clone(),
        component_path,
        component_digest: manifest.digest.clone(),
        component_bytes,
        argv,
        env: manifest
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        mounts: mounts
            .into_iter()
            .map(|(m, host)| PlannedMount {
                guest: m.guest.clone(),
                host,
                access: m.access,
                purpose: m.purpose.clone(),
                classification: m.classification,
                requires_promoted: m.requires_promoted,
                keep_existing: m.keep_existing,
                host_at: m.host_at,
            })
            .collect(),
        secrets: manifest.secrets.clone(),
        limits: manifest.limits,
        state_dir,
        environment: ctx.env.name.clone(),
        clock: manifest.clock,
        random: manifest.random,
        floats: manifest.floats,
        network: manifest.network.clone(),
    })
}

/// Why a step is never cached, as far as its grants alone decide, before
/// any secret is read: the engine's action cache adds what only the read
/// secrets can say, and `cordon audit` reports this part.
pub fn uncacheable_by_grants<'a>(
    accesses: impl IntoIterator<Item = Access>,
    secrets: impl IntoIterator<Item = (&'a str, &'a std::collections::BTreeSet<SecretUse>)>,
    network: bool,
    pipeline_allows: bool,
) -> Option<String> {
    if !pipeline_allows {
        return Some("the pipeline says `cache = false`".into());
    }
    if network {
        // A network call is an effect the cache cannot replay, and its
        // answer is an input the key cannot see.
        return Some("it may reach the network".into());
    }
    if accesses.into_iter().any(|a| a == Access::ReadWrite) {
        return Some("it changes a read-write mount in place".into());
    }
    if let Some((name, _)) = secrets
        .into_iter()
        .find(|(_, uses)| uses.contains(&SecretUse::Reveal))
    {
        return Some(format!("it may reveal secret `{name}`"));
    }
    None
}

/// Why a step using secret `name` from `provider`, which keeps no versions,
/// is not cached: without a version the key could not tell an old value
/// from a new one.
pub fn unversioned_secret_reason(name: &str, provider: &str) -> String {
    format!("secret `{name}` comes from a provider without versions ({provider})")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn a_relative_workspace_directory_still_expands_to_the_workspace() {
        let mut env = crate::config::WorkspaceConfig::implicit(Path::new("."))
            .envs
            .remove("dev")
            .unwrap();
        env.vars = BTreeMap::from([("data_root".to_string(), "data/dev".to_string())]);
        let ctx = PlanContext {
            env: &env,
            workspace_dir: Path::new("."),
            state_dir: Path::new(".cordon"),
            produced: &[],
            hash_index: None,
        };
        let expanded = expand_vars("${data_root}/raw", &ctx).unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(Path::new(&expanded), cwd.join("data/dev/raw"));
        let manifest = Manifest::parse(
            Path::new("steps/s.toml"),
            "[step]\nname = \"s\"\ncomponent = \"s.wasm\"\ndigest = \"sha256:0000000000000000000000000000000000000000000000000000000000000000\"\n\
             [[mount]]\nguest = \"/in\"\nhost = \"${data_root}/raw\"\naccess = \"read\"\npurpose = \"p\"\n",
        )
        .unwrap();
        assert_eq!(
            mount_host_raw(&manifest, &manifest.mounts[0], &ctx).unwrap(),
            cwd.join("data/dev/raw"),
            "not under steps/"
        );
    }

    #[test]
    fn an_unchanged_component_the_index_vouches_for_is_not_read_and_a_changed_one_fails_closed() {
        let d = tempfile::tempdir().unwrap();
        let wasm = d.path().join("s.wasm");
        std::fs::write(&wasm, b"\0asm component bytes").unwrap();
        let digest = Sha256Digest::of(b"\0asm component bytes");
        let manifest = Manifest::parse(
            &d.path().join("s.toml"),
            &format!("[step]\nname = \"s\"\ncomponent = \"s.wasm\"\ndigest = \"{digest}\"\n"),
        )
        .unwrap();
        let env = crate::config::WorkspaceConfig::implicit(d.path())
            .envs
            .remove("dev")
            .unwrap();
        // The index remembers only files whose timestamps have settled
        // (two seconds): wait them out rather than fake them.
        std::thread::sleep(std::time::Duration::from_millis(2100));
        let index = cordon_core::digest::HashIndex::in_memory();
        let ctx = PlanContext {
            env: &env,
            workspace_dir: d.path(),
            state_dir: &d.path().join(".cordon"),
            produced: &[],
            hash_index: Some(&index),
        };
        let first = plan_step(&manifest, &ctx).unwrap();
        assert!(
            first.component_bytes.is_read(),
            "first plan reads and hashes"
        );
        let second = plan_step(&manifest, &ctx).unwrap();
        assert!(!second.component_bytes.is_read(), "vouched for: not read");
        assert_eq!(
            &*second.component_bytes.get().unwrap(),
            b"\0asm component bytes"
        );
        // Changed after planning (same size): the bytes are refused, never
        // handed out.
        let third = plan_step(&manifest, &ctx).unwrap();
        std::fs::write(&wasm, b"\0asm c0mponent bytes").unwrap();
        let err = third.component_bytes.get().unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert!(
            err.to_string().contains("changed after it was checked"),
            "{err}"
        );
        // And the next plan reads it again and refuses the digest.
        let e = plan_step(&manifest, &ctx).unwrap_err().to_string();
        assert!(e.contains("refusing to run an unreviewed component"), "{e}");
    }

    /// Planning with a memo shared across steps gives each step the plan
    /// it gets alone, and still refuses a mount of a protected path.
    #[test]
    fn a_shared_plan_memo_changes_no_plan() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("s.wasm"), b"\0asm bytes").unwrap();
        std::fs::create_dir(d.path().join("data")).unwrap();
        std::fs::create_dir_all(d.path().join(".cordon/compiled")).unwrap();
        let digest = Sha256Digest::of(b"\0asm bytes");
        let manifest = |name: &str, host: &str| {
            Manifest::parse(
                &d.path().join(format!("{name}.toml")),
                &format!(
                    "[step]\nname = \"{name}\"\ncomponent = \"s.wasm\"\ndigest = \"{digest}\"\n\n\
                     [[mount]]\nguest = \"/in\"\nhost = \"{host}\"\naccess = \"read\"\n\
                     purpose = \"input\"\nclassification = \"public\"\n"
                ),
            )
            .unwrap()
        };
        let env = crate::config::WorkspaceConfig::implicit(d.path())
            .envs
            .remove("dev")
            .unwrap();
        let ctx = PlanContext {
            env: &env,
            workspace_dir: d.path(),
            state_dir: &d.path().join(".cordon"),
            produced: &[],
            hash_index: None,
        };
        let mut memo = PlanMemo::default();
        for name in ["a", "b"] {
            let m = manifest(name, "data");
            let shared = plan_step_with(&m, &ctx, &mut memo).unwrap();
            let alone = plan_step(&m, &ctx).unwrap();
            assert_eq!(shared.component_path, alone.component_path);
            assert_eq!(shared.state_dir, alone.state_dir);
            assert_eq!(shared.mounts[0].host, alone.mounts[0].host);
            assert_eq!(shared.component_digest, alone.component_digest);
        }
        let e = plan_step_with(&manifest("c", ".cordon/compiled"), &ctx, &mut memo)
            .unwrap_err()
            .to_string();
        assert!(e.contains("compiled-component cache"), "{e}");
    }
}
