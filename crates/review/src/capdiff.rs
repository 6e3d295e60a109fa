//! `cordon diff`: every capability change between two versions of a
//! manifest or a pipeline, escalations first.
//!
//! The comparison is of the files as written, independent of any
//! environment: host paths keep their `${variables}`, and neither the
//! components nor the data are read, so an old revision whose component is
//! long gone still compares. Pipelines are compared step by step, matched
//! by name.
//!
//! Every [`Change`] has a [`Direction`]. An escalation gives a step more
//! than it had, or something a reviewer has not seen:
//!
//! - a new step, mount, secret, secret use (`reveal` is called out on its
//!   own), network destination;
//! - an access that reaches further: `read` → `write` (the step now changes
//!   data), and `write` → `read` too (a write mount starts empty; a read
//!   mount shows what is there), anything → `read-write`;
//! - a mount pointed at another host path, a higher classification, a
//!   classification removed, a secret mapped to another provider key;
//! - a raised limit, a real clock or real randomness instead of the
//!   reproducible ones;
//! - a changed component digest (a different build is unreviewed code);
//! - a removed approval.
//!
//! The opposites are de-escalations. Everything else (purposes, arguments,
//! environment variables, `needs`, `cache`, file moves) is listed as a
//! neutral change. `cordon diff` exits 1 when anything escalates, so CI can
//! require a reviewer.

use crate::review::{
    Format, Phrase, classification_name, file_problem, limit_values, md_code, plural, use_name,
};
use cordon_core::sanitize::escape_for_terminal as plain;
use cordon_manifest::manifest::{
    Access, ClockMode, FloatMode, Limits, Manifest, ManifestError, Mount, RandomMode, SecretGrant,
    SecretUse, Sha256Digest,
};
use cordon_manifest::pipeline::{Pipeline, is_pipeline_source};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Which way a change moves a step's privileges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// More access, or code nobody reviewed: a reviewer must approve it.
    Escalation,
    /// Less access.
    DeEscalation,
    /// A change that grants nothing new.
    Neutral,
}

/// One capability change.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// Which way it goes.
    pub direction: Direction,
    /// The step it concerns (the new name); `None` for the pipeline itself.
    pub step: Option<String>,
    /// A stable code, e.g. `mount-added`, `limit-raised`, `secret-reveal`.
    pub code: &'static str,
    /// What the change is about: a guest path, a secret, a limit...
    pub subject: Option<String>,
    /// The value before, when there was one.
    pub old: Option<String>,
    /// The value after, when there is one.
    pub new: Option<String>,
    /// The change in plain language.
    pub message: Phrase,
}

/// Every capability change between two files.
#[derive(Debug, Clone, Serialize)]
pub struct CapDiff {
    /// `pipeline` or `manifest`.
    pub kind: &'static str,
    /// The old file (`REV:path` for a git revision).
    pub old: String,
    /// The new file.
    pub new: String,
    /// Whether any change escalates.
    pub escalates: bool,
    /// Escalations, then de-escalations, then neutral changes; in step
    /// order within each.
    pub changes: Vec<Change>,
}

/// What a step is granted, as compared: the manifest as written.
#[derive(Debug, Clone, PartialEq)]
pub struct StepGrants {
    /// Step name.
    pub name: String,
    /// Component path as written.
    pub component: String,
    /// The pinned digest.
    pub digest: Sha256Digest,
    /// Directory grants.
    pub mounts: Vec<Mount>,
    /// Secret grants.
    pub secrets: Vec<SecretGrant>,
    /// Network destinations (`[network] allow`), with methods when limited.
    pub network: Vec<String>,
    /// Environment variables.
    pub env: BTreeMap<String, String>,
    /// Arguments.
    pub args: Vec<String>,
    /// Limits.
    pub limits: Limits,
    /// Wall clock.
    pub clock: ClockMode,
    /// Randomness.
    pub random: RandomMode,
    /// NaN handling of float arithmetic.
    pub floats: FloatMode,
    /// The reviewer keys whose approvals beside the manifest still match
    /// it (signatures are the environment's business, not the diff's).
    pub approval: Option<String>,
}

impl From<&Manifest> for StepGrants {
    fn from(m: &Manifest) -> Self {
        StepGrants {
            name: m.name.clone(),
            component: m.component.display().to_string(),
            digest: m.digest.clone(),
            mounts: m.mounts.clone(),
            secrets: m.secrets.clone(),
            network: m
                .network
                .iter()
                .flat_map(|n| n.allow.iter().map(|r| r.describe()))
                .collect(),
            env: m.env.clone(),
            args: m.args.clone(),
            limits: m.limits,
            clock: m.clock,
            random: m.random,
            floats: m.floats,
            approval: current_approvals(m),
        }
    }
}

/// The reviewer keys (short ids) whose approvals beside `m` still match
/// its manifest and component digests, signatures unchecked: the diff is
/// about files, and which reviewers an environment trusts is the policy's
/// business. `None` when there are none (or `m` is not on disk, as at a
/// git revision).
fn current_approvals(m: &Manifest) -> Option<String> {
    let text = std::fs::read(cordon_policy::approval::file_for(&m.path)).ok()?;
    let list: Vec<serde_json::Value> = serde_json::from_slice(&text).ok()?;
    let ids: Vec<String> = list
        .iter()
        .filter(|e| {
            cordon_policy::approval::payload_of(e).is_some_and(|p| {
                p["manifest"]["sha256"].as_str() == Some(m.sha256.hex())
                    && p["component"]["sha256"].as_str() == Some(m.digest.hex())
            })
        })
        .filter_map(|e| e["signatures"][0]["keyid"].as_str())
        .map(|k| k[..k.len().min(16)].to_string())
        .collect();
    (!ids.is_empty()).then(|| ids.join(", "))
}

/// A step of a pipeline, as compared.
#[derive(Debug, Clone)]
pub struct PipelineEntry {
    /// Its grants.
    pub grants: StepGrants,
    /// Its manifest path as the pipeline writes it.
    pub manifest: String,
    /// Whether the cache may serve it.
    pub cache: bool,
    /// Its explicit dependencies.
    pub needs: Vec<String>,
}

impl PipelineEntry {
    /// The entries of `pipeline`, in file order.
    pub fn of(pipeline: &Pipeline) -> Vec<PipelineEntry> {
        pipeline
            .steps
            .iter()
            .map(|s| PipelineEntry {
                grants: StepGrants::from(&s.manifest),
                manifest: s
                    .manifest
                    .path
                    .strip_prefix(&pipeline.dir)
                    .unwrap_or(&s.manifest.path)
                    .display()
                    .to_string(),
                cache: s.cache,
                needs: s.needs.iter().map(|(n, _)| n.clone()).collect(),
            })
            .collect()
    }
}

/// Collects changes of one step.
struct Changes<'a> {
    step: Option<&'a str>,
    out: Vec<Change>,
}

impl Changes<'_> {
    fn push(
        &mut self,
        direction: Direction,
        code: &'static str,
        subject: Option<&str>,
        old: Option<String>,
        new: Option<String>,
        message: Phrase,
    ) {
        self.out.push(Change {
            direction,
            step: self.step.map(str::to_string),
            code,
            subject: subject.map(str::to_string),
            old,
            new,
            message,
        });
    }
}

fn reads(a: Access) -> bool {
    a != Access::Write
}

fn writes(a: Access) -> bool {
    a != Access::Read
}

/// Whether access `new` lets a step do anything `old` did not: see the
/// existing data, change data, or change it in place.
fn access_escalates(old: Access, new: Access) -> bool {
    (reads(new) && !reads(old))
        || (writes(new) && !writes(old))
        || (new == Access::ReadWrite && old != Access::ReadWrite)
}

fn mount_phrase(m: &Mount) -> Phrase {
    let class = m.classification.map_or("unclassified", classification_name);
    Phrase::new(format!("{} ", m.access))
        .code(m.host.display())
        .words(format!(" ({class}): "))
        .quote(&m.purpose)
}

fn uses_text(uses: &std::collections::BTreeSet<SecretUse>) -> String {
    uses.iter()
        .map(|u| use_name(*u))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every capability change from `old` to `new` (one step).
pub fn diff_steps(old: &StepGrants, new: &StepGrants) -> Vec<Change> {
    use Direction::*;
    let mut c = Changes {
        step: Some(&new.name),
        out: Vec::new(),
    };
    if old.name != new.name {
        c.push(
            Neutral,
            "step-renamed",
            None,
            Some(old.name.clone()),
            Some(new.name.clone()),
            Phrase::new("step renamed from ").code(&old.name),
        );
    }
    if old.digest != new.digest {
        c.push(
            Escalation,
            "component-changed",
            None,
            Some(old.digest.to_string()),
            Some(new.digest.to_string()),
            Phrase::new("component digest changed from ")
                .code(&old.digest)
                .words(" to ")
                .code(&new.digest)
                .words(": a different build, to be reviewed again"),
        );
    }
    if old.component != new.component {
        c.push(
            Neutral,
            "component-path",
            None,
            Some(old.component.clone()),
            Some(new.component.clone()),
            Phrase::new("component path changed from ")
                .code(&old.component)
                .words(" to ")
                .code(&new.component),
        );
    }

    for m in &new.mounts {
        let g = m.guest.as_str();
        let Some(o) = old.mounts.iter().find(|o| o.guest == m.guest) else {
            c.push(
                Escalation,
                "mount-added",
                Some(g),
                None,
                Some(m.access.to_string()),
                Phrase::new("new mount ")
                    .code(g)
                    .words(": ")
                    .then(mount_phrase(m)),
            );
            continue;
        };
        if o.access != m.access {
            let up = access_escalates(o.access, m.access);
            let mut msg = Phrase::new("mount ")
                .code(g)
                .words(format!(": access {} changed to {}", o.access, m.access));
            if up && reads(m.access) && !reads(o.access) {
                msg = msg
                    .words(": the step now sees what is already in ")
                    .code(m.host.display());
            } else if up && writes(m.access) && !writes(o.access) {
                msg = msg.words(": the step now changes ").code(m.host.display());
            } else if up {
                msg = msg.words(": changes are now made in place, not staged");
            }
            c.push(
                if up { Escalation } else { DeEscalation },
                "mount-access",
                Some(g),
                Some(o.access.to_string()),
                Some(m.access.to_string()),
                msg,
            );
        }
        if o.host != m.host {
            c.push(
                Escalation,
                "mount-host",
                Some(g),
                Some(o.host.display().to_string()),
                Some(m.host.display().to_string()),
                Phrase::new("mount ")
                    .code(g)
                    .words(" now points at ")
                    .code(m.host.display())
                    .words(" (was ")
                    .code(o.host.display())
                    .words("): other data"),
            );
        }
        let cls = |x: Option<cordon_manifest::manifest::Classification>| x.map(classification_name);
        match (o.classification, m.classification) {
            (Some(a), Some(b)) if a != b => c.push(
                if b > a { Escalation } else { DeEscalation },
                "mount-classification",
                Some(g),
                cls(Some(a)).map(str::to_string),
                cls(Some(b)).map(str::to_string),
                Phrase::new("mount ").code(g).words(format!(
                    ": classification {} from {} to {}",
                    if b > a { "raised" } else { "lowered" },
                    classification_name(a),
                    classification_name(b)
                )),
            ),
            (Some(a), None) => c.push(
                Escalation,
                "mount-classification",
                Some(g),
                Some(classification_name(a).into()),
                None,
                Phrase::new("mount ").code(g).words(format!(
                    ": classification {} removed; nobody can tell how sensitive it is",
                    classification_name(a)
                )),
            ),
            (None, Some(b)) => c.push(
                Neutral,
                "mount-classification",
                Some(g),
                None,
                Some(classification_name(b).into()),
                Phrase::new("mount ")
                    .code(g)
                    .words(format!(" is now classified {}", classification_name(b))),
            ),
            _ => {}
        }
        if o.purpose != m.purpose {
            c.push(
                Neutral,
                "mount-purpose",
                Some(g),
                Some(o.purpose.clone()),
                Some(m.purpose.clone()),
                Phrase::new("mount ")
                    .code(g)
                    .words(": purpose changed from ")
                    .quote(&o.purpose)
                    .words(" to ")
                    .quote(&m.purpose),
            );
        }
    }
    for o in &old.mounts {
        if !new.mounts.iter().any(|m| m.guest == o.guest) {
            c.push(
                DeEscalation,
                "mount-removed",
                Some(&o.guest),
                Some(o.access.to_string()),
                None,
                Phrase::new("mount ")
                    .code(&o.guest)
                    .words(" removed (was ")
                    .then(mount_phrase(o))
                    .words(")"),
            );
        }
    }

    for s in &new.secrets {
        let n = s.name.as_str();
        let Some(o) = old.secrets.iter().find(|o| o.name == s.name) else {
            c.push(
                Escalation,
                "secret-added",
                Some(n),
                None,
                Some(uses_text(&s.uses)),
                Phrase::new("new secret ")
                    .code(n)
                    .words(format!(" with uses {}", uses_text(&s.uses))),
            );
            if s.uses.contains(&SecretUse::Reveal) {
                c.push(
                    Escalation,
                    "secret-reveal",
                    Some(n),
                    None,
                    Some("reveal".into()),
                    crate::review::secret_use_phrase(n, SecretUse::Reveal),
                );
            }
            continue;
        };
        for u in s.uses.difference(&o.uses) {
            c.push(
                Escalation,
                if *u == SecretUse::Reveal {
                    "secret-reveal"
                } else {
                    "secret-use-added"
                },
                Some(n),
                Some(uses_text(&o.uses)),
                Some(uses_text(&s.uses)),
                Phrase::new("secret ")
                    .code(n)
                    .words(format!(": new use {}: ", use_name(*u)))
                    .then(crate::review::secret_use_phrase(n, *u)),
            );
        }
        for u in o.uses.difference(&s.uses) {
            c.push(
                DeEscalation,
                "secret-use-removed",
                Some(n),
                Some(uses_text(&o.uses)),
                Some(uses_text(&s.uses)),
                Phrase::new("secret ")
                    .code(n)
                    .words(format!(": use {} removed", use_name(*u))),
            );
        }
        // Where an http-header secret may be sent: a new host is a new place
        // the credential can go.
        for (direction, code, words, these, not_in) in [
            (
                Escalation,
                "secret-host-added",
                ": may now be sent to host ",
                &s.hosts,
                &o.hosts,
            ),
            (
                DeEscalation,
                "secret-host-removed",
                ": no longer sent to host ",
                &o.hosts,
                &s.hosts,
            ),
        ] {
            for h in these.iter().filter(|h| !not_in.contains(h)) {
                c.push(
                    direction,
                    code,
                    Some(n),
                    Some(o.hosts.join(", ")),
                    Some(s.hosts.join(", ")),
                    Phrase::new("secret ").code(n).words(words).code(h),
                );
            }
        }
        if o.provider_key() != s.provider_key() {
            c.push(
                Escalation,
                "secret-key",
                Some(n),
                Some(o.provider_key().into()),
                Some(s.provider_key().into()),
                Phrase::new("secret ")
                    .code(n)
                    .words(" now reads provider key ")
                    .code(s.provider_key())
                    .words(" (was ")
                    .code(o.provider_key())
                    .words("): a different secret"),
            );
        }
    }
    for o in &old.secrets {
        if !new.secrets.iter().any(|s| s.name == o.name) {
            c.push(
                DeEscalation,
                "secret-removed",
                Some(&o.name),
                Some(uses_text(&o.uses)),
                None,
                Phrase::new("secret ")
                    .code(&o.name)
                    .words(format!(" removed (uses {})", uses_text(&o.uses))),
            );
        }
    }

    for n in new.network.iter().filter(|n| !old.network.contains(n)) {
        c.push(
            Escalation,
            "network-added",
            Some(n),
            None,
            Some(n.clone()),
            Phrase::new("new network destination ").code(n),
        );
    }
    for n in old.network.iter().filter(|n| !new.network.contains(n)) {
        c.push(
            DeEscalation,
            "network-removed",
            Some(n),
            Some(n.clone()),
            None,
            Phrase::new("network destination ")
                .code(n)
                .words(" removed"),
        );
    }

    let network = !old.network.is_empty() || !new.network.is_empty();
    for (o, n) in limit_values(&old.limits, network)
        .into_iter()
        .zip(limit_values(&new.limits, network))
    {
        if o.value == n.value {
            continue;
        }
        let up = n.value > o.value;
        c.push(
            if up { Escalation } else { DeEscalation },
            if up { "limit-raised" } else { "limit-lowered" },
            Some(n.name),
            Some(o.text.clone()),
            Some(n.text.clone()),
            Phrase::new(format!(
                "{} limit {} from {}{} to {}{}",
                n.name,
                if up { "raised" } else { "lowered" },
                o.text,
                if o.default { " (default)" } else { "" },
                n.text,
                if n.default { " (default)" } else { "" },
            )),
        );
    }
    match (old.clock, new.clock) {
        (ClockMode::Fixed, ClockMode::Real) => c.push(
            Escalation,
            "clock-real",
            Some("clock"),
            Some("fixed".into()),
            Some("real".into()),
            Phrase::new(
                "now sees the host's real wall clock (was fixed): runs are no longer reproducible",
            ),
        ),
        (ClockMode::Real, ClockMode::Fixed) => c.push(
            DeEscalation,
            "clock-fixed",
            Some("clock"),
            Some("real".into()),
            Some("fixed".into()),
            Phrase::new("now sees a fixed wall clock (was the host's real clock)"),
        ),
        _ => {}
    }
    match (old.random, new.random) {
        (RandomMode::Seeded, RandomMode::Real) => c.push(
            Escalation,
            "random-real",
            Some("random"),
            Some("seeded".into()),
            Some("real".into()),
            Phrase::new("now sees real randomness (was seeded): runs are no longer reproducible"),
        ),
        (RandomMode::Real, RandomMode::Seeded) => c.push(
            DeEscalation,
            "random-seeded",
            Some("random"),
            Some("real".into()),
            Some("seeded".into()),
            Phrase::new("now sees seeded randomness (was real)"),
        ),
        _ => {}
    }
    match (old.floats, new.floats) {
        (FloatMode::Canonical, FloatMode::Native) => c.push(
            Escalation,
            "floats-native",
            Some("floats"),
            Some("canonical".into()),
            Some("native".into()),
            Phrase::new(
                "float NaNs now follow the CPU (was canonical): re-execution is bit for bit only on the same CPU architecture",
            ),
        ),
        (FloatMode::Native, FloatMode::Canonical) => c.push(
            DeEscalation,
            "floats-canonical",
            Some("floats"),
            Some("native".into()),
            Some("canonical".into()),
            Phrase::new("float NaNs are now canonical (was the CPU's): re-execution is bit for bit on any CPU architecture"),
        ),
        _ => {}
    }
    match (&old.approval, &new.approval) {
        (Some(a), None) => c.push(
            Escalation,
            "approval-removed",
            None,
            Some(a.clone()),
            None,
            Phrase::new("approval by ").code(a).words(" removed"),
        ),
        (a, Some(b)) if a.as_ref() != Some(b) => c.push(
            Neutral,
            "approval-added",
            None,
            a.clone(),
            Some(b.clone()),
            Phrase::new("approved by ").code(b),
        ),
        _ => {}
    }

    for (k, v) in &new.env {
        match old.env.get(k) {
            None => c.push(
                Neutral,
                "env-added",
                Some(k),
                None,
                Some(v.clone()),
                Phrase::new("new environment variable ").code(format!("{k}={v}")),
            ),
            Some(ov) if ov != v => c.push(
                Neutral,
                "env-changed",
                Some(k),
                Some(ov.clone()),
                Some(v.clone()),
                Phrase::new("environment variable ")
                    .code(k)
                    .words(" changed from ")
                    .code(ov)
                    .words(" to ")
                    .code(v),
            ),
            _ => {}
        }
    }
    for (k, v) in &old.env {
        if !new.env.contains_key(k) {
            c.push(
                Neutral,
                "env-removed",
                Some(k),
                Some(v.clone()),
                None,
                Phrase::new("environment variable ")
                    .code(k)
                    .words(" removed"),
            );
        }
    }
    if old.args != new.args {
        let show = |a: &[String]| format!("{a:?}");
        c.push(
            Neutral,
            "args-changed",
            None,
            Some(show(&old.args)),
            Some(show(&new.args)),
            Phrase::new("arguments changed from ")
                .code(show(&old.args))
                .words(" to ")
                .code(show(&new.args)),
        );
    }
    c.out
}

/// Every capability change from pipeline `old` to `new`, steps matched by
/// name.
pub fn diff_pipelines(old: &[PipelineEntry], new: &[PipelineEntry]) -> Vec<Change> {
    use Direction::*;
    let mut out = Vec::new();
    for n in new {
        let name = n.grants.name.as_str();
        let mut c = Changes {
            step: Some(name),
            out: Vec::new(),
        };
        let Some(o) = old.iter().find(|o| o.grants.name == n.grants.name) else {
            c.push(
                Escalation,
                "step-added",
                None,
                None,
                Some(n.manifest.clone()),
                new_step_phrase(n),
            );
            out.extend(c.out);
            continue;
        };
        if o.manifest != n.manifest {
            c.push(
                Neutral,
                "manifest-moved",
                None,
                Some(o.manifest.clone()),
                Some(n.manifest.clone()),
                Phrase::new("manifest moved from ")
                    .code(&o.manifest)
                    .words(" to ")
                    .code(&n.manifest),
            );
        }
        if o.cache != n.cache {
            c.push(
                Neutral,
                "cache",
                None,
                Some(o.cache.to_string()),
                Some(n.cache.to_string()),
                Phrase::new(if n.cache {
                    "the cache may now serve this step"
                } else {
                    "the cache no longer serves this step (`cache = false`)"
                }),
            );
        }
        if o.needs != n.needs {
            c.push(
                Neutral,
                "needs-changed",
                None,
                Some(o.needs.join(", ")),
                Some(n.needs.join(", ")),
                Phrase::new("`needs` changed from ")
                    .code(format!("{:?}", o.needs))
                    .words(" to ")
                    .code(format!("{:?}", n.needs)),
            );
        }
        out.extend(c.out);
        out.extend(diff_steps(&o.grants, &n.grants));
    }
    for o in old {
        if !new.iter().any(|n| n.grants.name == o.grants.name) {
            out.push(Change {
                direction: DeEscalation,
                step: Some(o.grants.name.clone()),
                code: "step-removed",
                subject: None,
                old: Some(o.manifest.clone()),
                new: None,
                message: Phrase::new("step removed (manifest ")
                    .code(&o.manifest)
                    .words(")"),
            });
        }
    }
    out
}

/// A new step in one sentence: its manifest, component and grants (its
/// limits and arguments are in `cordon audit`).
fn new_step_phrase(n: &PipelineEntry) -> Phrase {
    let g = &n.grants;
    let mut p = Phrase::new("new step (manifest ")
        .code(&n.manifest)
        .words("), component ")
        .code(&g.digest);
    for m in &g.mounts {
        p = p
            .words("; mount ")
            .code(&m.guest)
            .words(": ")
            .then(mount_phrase(m));
    }
    for s in &g.secrets {
        p = p
            .words("; secret ")
            .code(&s.name)
            .words(format!(" ({})", uses_text(&s.uses)));
    }
    for d in &g.network {
        p = p.words("; network ").code(d);
    }
    for (k, v) in &g.env {
        p = p.words("; environment ").code(format!("{k}={v}"));
    }
    p
}

/// Sorts changes escalations first, keeping step order within each group.
fn ordered(mut changes: Vec<Change>) -> Vec<Change> {
    changes.sort_by_key(|c| c.direction);
    changes
}

/// One side of a comparison, loaded.
enum Side {
    Manifest(Box<Manifest>),
    Pipeline(Pipeline),
}

impl Side {
    fn kind(&self) -> &'static str {
        match self {
            Side::Manifest(_) => "manifest",
            Side::Pipeline(_) => "pipeline",
        }
    }
}

/// Loads the manifest or pipeline at `path`, every file read by `read`.
fn load_side(
    path: &Path,
    read: &dyn Fn(&Path) -> std::io::Result<String>,
) -> Result<Side, Vec<ManifestError>> {
    let source = read(path).map_err(|e| {
        vec![file_problem(
            path,
            format!("cannot read the file: {e}"),
            Some("give a step manifest or a pipeline file (TOML)".into()),
        )]
    })?;
    if is_pipeline_source(&source) {
        Pipeline::load_from(path, read).map(Side::Pipeline)
    } else {
        Manifest::load_from(path, |_| Ok(source))
            .map(|m| Side::Manifest(Box::new(m)))
            .map_err(|e| vec![e])
    }
}

/// Why a diff could not be made.
#[derive(Debug)]
pub enum DiffError {
    /// A file is missing or invalid, the two files are of different kinds,
    /// or the revision does not exist: nothing to compare.
    Input(Vec<ManifestError>),
    /// `git` could not be run.
    Git(String),
}

fn compare(
    old: Side,
    new: Side,
    old_label: String,
    new_label: String,
) -> Result<CapDiff, DiffError> {
    let changes = match (&old, &new) {
        (Side::Manifest(o), Side::Manifest(n)) => {
            diff_steps(&StepGrants::from(&**o), &StepGrants::from(&**n))
        }
        (Side::Pipeline(o), Side::Pipeline(n)) => {
            let mut changes = Vec::new();
            if o.name != n.name {
                changes.push(Change {
                    direction: Direction::Neutral,
                    step: None,
                    code: "pipeline-renamed",
                    subject: None,
                    old: Some(o.name.clone()),
                    new: Some(n.name.clone()),
                    message: Phrase::new("pipeline renamed from ")
                        .code(&o.name)
                        .words(" to ")
                        .code(&n.name),
                });
            }
            changes.extend(diff_pipelines(&PipelineEntry::of(o), &PipelineEntry::of(n)));
            changes
        }
        _ => {
            return Err(DiffError::Input(vec![file_problem(
                Path::new(&new_label),
                format!(
                    "is a {}, but {old_label} is a {}; compare a manifest with a manifest, or a pipeline with a pipeline",
                    new.kind(),
                    old.kind()
                ),
                None,
            )]));
        }
    };
    let changes = ordered(changes);
    Ok(CapDiff {
        kind: new.kind(),
        old: old_label,
        new: new_label,
        escalates: changes.iter().any(|c| c.direction == Direction::Escalation),
        changes,
    })
}

fn read_disk(p: &Path) -> std::io::Result<String> {
    cordon_core::fsutil::read_regular_to_string(p, cordon_manifest::manifest::MAX_FILE_BYTES)
}

/// Compares two files on disk (each a manifest or a pipeline).
pub fn diff_files(old: &Path, new: &Path) -> Result<CapDiff, DiffError> {
    let o = load_side(old, &read_disk);
    let n = load_side(new, &read_disk);
    let (o, n) = match (o, n) {
        (Ok(o), Ok(n)) => (o, n),
        (o, n) => {
            let mut errors = o.err().unwrap_or_default();
            errors.extend(n.err().unwrap_or_default());
            return Err(DiffError::Input(errors));
        }
    };
    compare(o, n, old.display().to_string(), new.display().to_string())
}

fn git(dir: &Path, args: &[&str]) -> Result<std::process::Output, DiffError> {
    Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .map_err(|e| DiffError::Git(format!("cannot run git: {e}")))
}

/// Compares `file` as it is at git revision `rev` with the working tree.
/// For a pipeline, its manifests are read at `rev` too. Paths are resolved
/// against the repository that holds `file`.
pub fn diff_git(rev: &str, file: &Path) -> Result<CapDiff, DiffError> {
    let input =
        |msg: String, fix: Option<String>| DiffError::Input(vec![file_problem(file, msg, fix)]);
    if rev.is_empty() || rev.starts_with('-') || rev.contains(char::is_whitespace) {
        return Err(input(
            format!("`{}` is not a git revision", plain(rev)),
            Some("give a commit, branch or tag, e.g. `--git origin/main`".into()),
        ));
    }
    let abs = cordon_core::fsutil::resolve(file)
        .map_err(|e| input(format!("cannot resolve the path: {e}"), None))?;
    if !abs.is_file() {
        return Err(input(
            "does not exist in the working tree".into(),
            Some("`--git REV FILE` compares FILE at REV with FILE as it is now; give an existing file".into()),
        ));
    }
    let dir = abs.parent().unwrap_or(Path::new("/"));
    let top = git(dir, &["rev-parse", "--show-toplevel"])?;
    if !top.status.success() {
        return Err(input(
            "is not inside a git repository".into(),
            Some("run `cordon diff OLD NEW` with two files instead".into()),
        ));
    }
    let root = PathBuf::from(String::from_utf8_lossy(&top.stdout).trim());
    let root = cordon_core::fsutil::resolve(&root).unwrap_or(root);
    let rel = abs
        .strip_prefix(&root)
        .map_err(|_| {
            input(
                format!("lies outside the repository {}", root.display()),
                None,
            )
        })?
        .to_path_buf();
    let verify = git(
        &root,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{rev}^{{commit}}"),
        ],
    )?;
    if !verify.status.success() {
        return Err(input(
            format!("`{}` is not a revision of the repository at {}", plain(rev), root.display()),
            Some("give a commit, branch or tag that exists (fetch it first in a shallow CI checkout)".into()),
        ));
    }

    // Paths inside the revision are relative to the repository root; errors
    // name them as `REV:path`, the way git does.
    let read_at_rev = |p: &Path| -> std::io::Result<String> {
        let inside = crate::audit::normalize(p);
        if inside.starts_with("..") || inside.is_absolute() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the path leaves the repository",
            ));
        }
        let spec = format!("{rev}:{}", inside.display());
        let out = Command::new("git")
            .arg("-C")
            .arg(&root)
            .args(["cat-file", "blob", &spec])
            .output()?;
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr);
            let why = why.trim().trim_start_matches("fatal: ");
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                why.to_string(),
            ));
        }
        String::from_utf8(out.stdout)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))
    };
    let old_label = format!("{rev}:{}", rel.display());
    let old = load_side(&rel, &read_at_rev).map_err(|errors| {
        DiffError::Input(
            errors
                .into_iter()
                .map(|mut e| {
                    e.path = PathBuf::from(format!(
                        "{rev}:{}",
                        crate::audit::normalize(&e.path).display()
                    ));
                    e
                })
                .collect(),
        )
    })?;
    let new = load_side(file, &read_disk).map_err(DiffError::Input)?;
    compare(old, new, old_label, file.display().to_string())
}

impl CapDiff {
    /// How many changes go in `direction`.
    pub fn count(&self, direction: Direction) -> usize {
        self.changes
            .iter()
            .filter(|c| c.direction == direction)
            .count()
    }

    /// The diff in `format`.
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Text => self.text(),
            Format::Markdown => self.markdown(),
            Format::Json => {
                #[derive(Serialize)]
                struct Counts {
                    escalations: usize,
                    de_escalations: usize,
                    neutral: usize,
                }
                #[derive(Serialize)]
                struct Json<'a> {
                    #[serde(flatten)]
                    diff: &'a CapDiff,
                    counts: Counts,
                }
                let j = Json {
                    diff: self,
                    counts: Counts {
                        escalations: self.count(Direction::Escalation),
                        de_escalations: self.count(Direction::DeEscalation),
                        neutral: self.count(Direction::Neutral),
                    },
                };
                serde_json::to_string_pretty(&j).unwrap_or_default() + "\n"
            }
        }
    }

    fn summary(&self) -> String {
        format!(
            "{}, {}, {}",
            plural(self.count(Direction::Escalation), "escalation"),
            plural(self.count(Direction::DeEscalation), "de-escalation"),
            plural(self.count(Direction::Neutral), "other change"),
        )
    }

    fn text(&self) -> String {
        let mut out = format!(
            "capability diff of {} {} -> {}\n",
            self.kind,
            plain(&self.old),
            plain(&self.new)
        );
        if self.changes.is_empty() {
            out.push_str("no capability changes\n");
            return out;
        }
        out.push_str(&self.summary());
        out.push('\n');
        for c in &self.changes {
            let mark = match c.direction {
                Direction::Escalation => "! ESCALATION ",
                Direction::DeEscalation => "- lowered    ",
                Direction::Neutral => "~ changed    ",
            };
            let step = c
                .step
                .as_deref()
                .map(|s| format!("{s}: "))
                .unwrap_or_default();
            out.push_str(&format!("{mark} {step}{}\n", c.message.text()));
        }
        out
    }

    fn markdown(&self) -> String {
        let mut out = format!(
            "## Capability diff: {} {} → {}\n\n",
            self.kind,
            md_code(&self.old),
            md_code(&self.new)
        );
        if self.changes.is_empty() {
            out.push_str("No capability changes.\n");
            return out;
        }
        let e = self.count(Direction::Escalation);
        if e > 0 {
            out.push_str(&format!(
                "> [!WARNING]\n> **{}** {} a reviewer's approval.\n\n",
                plural(e, "escalation"),
                if e == 1 { "needs" } else { "need" }
            ));
        } else {
            out.push_str("No escalation.\n\n");
        }
        out.push_str(&format!("{}.\n", capitalize_first(&self.summary())));
        for (direction, title) in [
            (Direction::Escalation, "Escalations"),
            (Direction::DeEscalation, "De-escalations"),
            (Direction::Neutral, "Other changes"),
        ] {
            let items: Vec<&Change> = self
                .changes
                .iter()
                .filter(|c| c.direction == direction)
                .collect();
            if items.is_empty() {
                continue;
            }
            out.push_str(&format!("\n### {title}\n\n"));
            for c in items {
                let step = c
                    .step
                    .as_deref()
                    .map(|s| format!("**{}**: ", md_code(s)))
                    .unwrap_or_default();
                out.push_str(&format!("- {step}{}\n", c.message.markdown()));
            }
        }
        out
    }
}

fn capitalize_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A diff with a change of each direction, every string from the
    /// compared files taken from `next`.
    fn diff_of(next: &mut dyn FnMut() -> String) -> CapDiff {
        let change = |direction, next: &mut dyn FnMut() -> String| Change {
            direction,
            step: Some(next()),
            code: "mount-added",
            subject: Some(next()),
            old: Some(next()),
            new: Some(next()),
            message: Phrase::new("adds ")
                .code(next())
                .words(" for ")
                .quote(next()),
        };
        let changes = vec![
            change(Direction::Escalation, next),
            change(Direction::DeEscalation, next),
            change(Direction::Neutral, next),
        ];
        CapDiff {
            kind: "pipeline",
            old: next(),
            new: next(),
            escalates: true,
            changes,
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        #[test]
        fn any_manifest_text_leaves_the_markdown_diff_its_structure(
            values in proptest::collection::vec(crate::review::structure::hostile(), 1..8)
        ) {
            use crate::review::structure;
            let mut i = 0;
            let md = diff_of(&mut || {
                i += 1;
                values[i % values.len()].clone()
            })
            .render(Format::Markdown);
            let plain = diff_of(&mut || "value".to_string()).render(Format::Markdown);
            proptest::prop_assert_eq!(structure::active(&md), 0, "{}", md);
            proptest::prop_assert_eq!(
                structure::of_markdown(&md),
                structure::of_markdown(&plain),
                "{}", md
            );
        }
    }
    use Direction::*;

    const D0: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    fn grants(extra: &str) -> StepGrants {
        grants_with(D0, extra)
    }

    fn grants_with(digest: &str, extra: &str) -> StepGrants {
        let m = Manifest::parse(
            Path::new("s.toml"),
            &format!(
                "[step]\nname = \"s\"\ncomponent = \"s.wasm\"\ndigest = \"{digest}\"\n{extra}"
            ),
        )
        .unwrap();
        StepGrants::from(&m)
    }

    fn mount(guest: &str, host: &str, access: &str, class: &str) -> String {
        format!(
            "[[mount]]\nguest = \"{guest}\"\nhost = \"{host}\"\naccess = \"{access}\"\npurpose = \"p\"\nclassification = \"{class}\"\n"
        )
    }

    /// The (direction, code) of every change from `old` to `new`.
    fn changes(old: &StepGrants, new: &StepGrants) -> Vec<(Direction, &'static str)> {
        ordered(diff_steps(old, new))
            .iter()
            .map(|c| (c.direction, c.code))
            .collect()
    }

    #[test]
    fn identical_manifests_differ_in_nothing() {
        let g = grants(&mount("/in", "d", "read", "internal"));
        assert!(diff_steps(&g, &g).is_empty());
    }

    #[test]
    fn a_new_mount_escalates_and_a_removed_one_does_not() {
        let a = grants("");
        let b = grants(&mount("/in", "d", "read", "internal"));
        assert_eq!(changes(&a, &b), [(Escalation, "mount-added")]);
        assert_eq!(changes(&b, &a), [(DeEscalation, "mount-removed")]);
    }

    #[test]
    fn access_that_reaches_further_escalates() {
        let with = |a| grants(&mount("/m", "d", a, "internal"));
        let dir = |o, n| changes(&with(o), &with(n))[0].0;
        assert_eq!(dir("read", "write"), Escalation);
        assert_eq!(
            dir("write", "read"),
            Escalation,
            "a read mount shows existing data"
        );
        assert_eq!(dir("read", "read-write"), Escalation);
        assert_eq!(dir("write", "read-write"), Escalation);
        assert_eq!(dir("read-write", "read"), DeEscalation);
        assert_eq!(dir("read-write", "write"), DeEscalation);
    }

    #[test]
    fn another_host_path_escalates() {
        let a = grants(&mount("/in", "a", "read", "internal"));
        let b = grants(&mount("/in", "b", "read", "internal"));
        assert_eq!(changes(&a, &b), [(Escalation, "mount-host")]);
    }

    #[test]
    fn classification_up_escalates_down_does_not() {
        let c = |class| grants(&mount("/in", "d", "read", class));
        assert_eq!(
            changes(&c("internal"), &c("restricted")),
            [(Escalation, "mount-classification")]
        );
        assert_eq!(
            changes(&c("confidential"), &c("public")),
            [(DeEscalation, "mount-classification")]
        );
        let none = grants(
            "[[mount]]\nguest = \"/in\"\nhost = \"d\"\naccess = \"read\"\npurpose = \"p\"\n",
        );
        assert_eq!(
            changes(&c("public"), &none),
            [(Escalation, "mount-classification")]
        );
        assert_eq!(
            changes(&none, &c("public")),
            [(Neutral, "mount-classification")]
        );
    }

    #[test]
    fn secrets_uses_and_reveal() {
        let s = |uses: &str| grants(&format!("[[secret]]\nname = \"k\"\nuses = [{uses}]\n"));
        let none = grants("");
        assert_eq!(
            changes(&none, &s("\"hmac\"")),
            [(Escalation, "secret-added")]
        );
        assert_eq!(
            changes(&none, &s("\"reveal\"")),
            [(Escalation, "secret-added"), (Escalation, "secret-reveal")]
        );
        assert_eq!(
            changes(&s("\"hmac\""), &s("\"hmac\", \"sign\"")),
            [(Escalation, "secret-use-added")]
        );
        assert_eq!(
            changes(&s("\"sign\""), &s("\"sign\", \"reveal\"")),
            [(Escalation, "secret-reveal")]
        );
        assert_eq!(
            changes(&s("\"sign\", \"reveal\""), &s("\"sign\"")),
            [(DeEscalation, "secret-use-removed")]
        );
        assert_eq!(
            changes(&s("\"hmac\""), &none),
            [(DeEscalation, "secret-removed")]
        );
        let keyed = grants("[[secret]]\nname = \"k\"\nuses = [\"hmac\"]\nkey = \"other\"\n");
        assert_eq!(
            changes(&s("\"hmac\""), &keyed),
            [(Escalation, "secret-key")]
        );
    }

    #[test]
    fn a_new_host_for_a_bound_secret_escalates() {
        let bound = |hosts: &str| {
            grants(&format!(
                "[network]\nallow = [\"https://a.example/\", \"https://b.example/\"]\n\n[[secret]]\nname = \"t\"\nuses = [\"http-header\"]\nhosts = [{hosts}]\n"
            ))
        };
        assert_eq!(
            changes(
                &bound("\"a.example\""),
                &bound("\"a.example\", \"b.example\"")
            ),
            [(Escalation, "secret-host-added")]
        );
        assert_eq!(
            changes(
                &bound("\"a.example\", \"b.example\""),
                &bound("\"a.example\"")
            ),
            [(DeEscalation, "secret-host-removed")]
        );
        assert_eq!(
            changes(&bound("\"a.example\""), &bound("\"b.example\"")),
            [
                (Escalation, "secret-host-added"),
                (DeEscalation, "secret-host-removed")
            ]
        );
        assert!(changes(&bound("\"a.example\""), &bound("\"a.example\"")).is_empty());
    }

    #[test]
    fn limits_raised_escalate_lowered_do_not() {
        let l = |mem: &str| grants(&format!("[limits]\nmemory = \"{mem}\"\n"));
        assert_eq!(
            changes(&l("64MiB"), &l("1GiB")),
            [(Escalation, "limit-raised")]
        );
        assert_eq!(
            changes(&l("1GiB"), &l("64MiB")),
            [(DeEscalation, "limit-lowered")]
        );
        let raised = diff_steps(&grants(""), &grants("[limits]\ntimeout = \"10m\"\n"));
        assert_eq!(
            raised[0].message.text(),
            "timeout limit raised from 5 min (default) to 10 min"
        );
    }

    #[test]
    fn a_new_component_digest_escalates() {
        assert_eq!(
            changes(&grants(""), &grants_with(D1, "")),
            [(Escalation, "component-changed")]
        );
    }

    #[test]
    fn native_floats_escalate() {
        let a = grants("floats = \"canonical\"\n");
        let b = grants("floats = \"native\"\n");
        assert_eq!(changes(&a, &b), [(Escalation, "floats-native")]);
        assert_eq!(changes(&b, &a), [(DeEscalation, "floats-canonical")]);
        // Native is the default: saying so, or dropping `floats`, changes
        // nothing.
        assert!(changes(&grants(""), &b).is_empty());
        assert_eq!(changes(&a, &grants("")), [(Escalation, "floats-native")]);
    }

    #[test]
    fn real_clock_and_randomness_escalate() {
        let a = grants("");
        let b = grants("clock = \"real\"\nrandom = \"real\"\n");
        assert_eq!(
            changes(&a, &b),
            [(Escalation, "clock-real"), (Escalation, "random-real")]
        );
        assert_eq!(
            changes(&b, &a),
            [
                (DeEscalation, "clock-fixed"),
                (DeEscalation, "random-seeded")
            ]
        );
    }

    #[test]
    fn network_and_approval_slots_compare() {
        let a = grants("");
        let mut b = a.clone();
        b.network.push("api.example:443".into());
        b.approval = Some("reviewer".into());
        assert_eq!(
            changes(&a, &b),
            [(Escalation, "network-added"), (Neutral, "approval-added")]
        );
        assert_eq!(
            changes(&b, &a),
            [
                (Escalation, "approval-removed"),
                (DeEscalation, "network-removed")
            ]
        );
    }

    #[test]
    fn arguments_and_environment_are_neutral() {
        let a = grants("args = [\"-x\"]\n[env]\nA = \"1\"\n");
        let b = grants("args = [\"-y\"]\n[env]\nA = \"2\"\nB = \"3\"\n");
        assert_eq!(
            changes(&a, &b),
            [
                (Neutral, "env-changed"),
                (Neutral, "env-added"),
                (Neutral, "args-changed")
            ]
        );
    }

    #[test]
    fn escalations_come_first() {
        let a = grants(&mount("/in", "d", "read", "internal"));
        let b = grants(&format!(
            "args = [\"z\"]\n{}[limits]\nfuel = 5\n",
            mount("/out", "o", "write", "internal")
        ));
        let c = changes(&a, &b);
        let dirs: Vec<Direction> = c.iter().map(|x| x.0).collect();
        let mut sorted = dirs.clone();
        sorted.sort();
        assert_eq!(dirs, sorted, "{c:?}");
        assert_eq!(c[0], (Escalation, "mount-added"));
    }
}
