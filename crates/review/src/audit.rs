//! `cordon audit`: what each step of a manifest or pipeline may do, in
//! plain language, for one environment.
//!
//! An audit reads the pipeline (or manifest) and the workspace
//! configuration, and nothing else: not the components, not the data, not
//! a secret, not the environment's record keys. It therefore runs wherever
//! the files are checked out (a CI job on a pull request), and it says what
//! the manifests grant, not whether a run would succeed; `cordon plan`
//! checks that. Host paths are shown with the environment's variables
//! expanded, relative to the current directory when they lie inside it.
//!
//! Each step's report lists its mounts (access, classification, purpose,
//! and which step writes what it reads), secret uses, network destinations,
//! environment, arguments and limits, whether it is approved, cacheable and
//! reproducible, and risk flags with stable codes (see [`FLAG_CODES`]).
//! Approvals are checked against the reviewer keys the environment trusts
//! (`null` when it trusts none: approvals are then not checked).

use crate::review::{
    Format, LimitValue, Phrase, classification_name, limit_values, md_code, md_code_cell, plural,
    secret_use_phrase,
};
use cordon_manifest::config::{EnvConfig, WorkspaceConfig};
use cordon_manifest::manifest::{
    Access, Classification, ClockMode, Manifest, ManifestError, RandomMode, SecretUse, Sha256Digest,
};
use cordon_manifest::pipeline::{Pipeline, is_pipeline_file};
use cordon_manifest::plan::{PlanContext, mount_host_raw};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

/// Every risk flag code an audit can raise, with what it means. Codes are
/// stable: CI scripts and policies may match on them.
pub const FLAG_CODES: &[(&str, &str)] = &[
    (
        "restricted-data",
        "a mount holds data classified restricted",
    ),
    (
        "reveal",
        "the step may read a secret's value, not only use it",
    ),
    (
        "reveal-with-egress",
        "the step may read a secret's value and also write outputs or reach the network: it can leak the value in any encoding, which no check can recognise",
    ),
    (
        "read-write",
        "a mount is changed in place: not staged, kept after a failed step, never cached",
    ),
    (
        "network-with-confidential-data",
        "the step may reach the network while it can read confidential or restricted data",
    ),
    (
        "declassifies",
        "the step writes data classified lower than data it reads",
    ),
    (
        "unclassified-mount",
        "a mount has no classification, so neither reviewers nor policy can tell how sensitive it is",
    ),
    (
        "secret-over-plain-http",
        "a secret is bound to a plain http host: every hop between the runner and that host can read it",
    ),
];

/// The audit of one manifest or pipeline in one environment.
#[derive(Debug, Clone, Serialize)]
pub struct Audit {
    /// `pipeline` or `manifest`.
    pub kind: &'static str,
    /// The pipeline's name, or the step's.
    pub name: String,
    /// The audited file, as shown (see [`Paths`]).
    pub file: String,
    /// The environment the grants were resolved for.
    pub environment: EnvironmentAudit,
    /// The steps in file order.
    pub steps: Vec<StepAudit>,
}

/// The environment an audit was made for.
#[derive(Debug, Clone, Serialize)]
pub struct EnvironmentAudit {
    /// Its name.
    pub name: String,
    /// Whether policy treats it as protected.
    pub protected: bool,
    /// Where its secrets come from (`local`, `env`, `vault`).
    pub secret_provider: &'static str,
}

/// The pinned component of a step.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentAudit {
    /// Its path, as shown.
    pub path: String,
    /// The digest the manifest pins (the file itself is not read).
    pub digest: Sha256Digest,
}

/// One directory grant.
#[derive(Debug, Clone, Serialize)]
pub struct MountAudit {
    /// The path the step sees.
    pub guest: String,
    /// The host path for this environment, as shown.
    pub host: String,
    /// The host path as the manifest writes it.
    pub host_as_written: String,
    /// Read, write or read-write.
    pub access: Access,
    /// The data classification, when given.
    pub classification: Option<Classification>,
    /// Why the step needs it.
    pub purpose: String,
    /// For a read mount: the step of the same pipeline that writes it.
    pub written_by: Option<String>,
    /// The grant in plain language.
    pub summary: Phrase,
}

/// One secret grant.
#[derive(Debug, Clone, Serialize)]
pub struct SecretAudit {
    /// The name the step asks for.
    pub name: String,
    /// The provider's key, when the manifest maps the name to another.
    pub key: Option<String>,
    /// The environment's provider.
    pub provider: &'static str,
    /// The granted uses.
    pub uses: BTreeSet<SecretUse>,
    /// For `http-header`: the only hosts the value is sent to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// One sentence per use.
    pub summary: Vec<Phrase>,
}

/// A yes/no answer with the reason for a no.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// The answer.
    pub value: bool,
    /// Why, in plain language.
    pub reason: Phrase,
}

/// A risk a reviewer should look at.
#[derive(Debug, Clone, Serialize)]
pub struct Flag {
    /// A stable code from [`FLAG_CODES`].
    pub code: &'static str,
    /// What in this step raised it.
    pub message: Phrase,
}

/// Everything one step may do.
#[derive(Debug, Clone, Serialize)]
pub struct StepAudit {
    /// Step name.
    pub name: String,
    /// Its manifest, as shown.
    pub manifest: String,
    /// The pinned component.
    pub component: ComponentAudit,
    /// Whether a trusted reviewer approved the manifest, in words; `None`
    /// (JSON `null`) when the environment trusts no reviewer keys.
    pub approval: Option<String>,
    /// Directory grants in manifest order.
    pub mounts: Vec<MountAudit>,
    /// Secret grants in manifest order.
    pub secrets: Vec<SecretAudit>,
    /// Network destinations the step may reach (`[network] allow`), with
    /// their methods when limited.
    pub network: Vec<String>,
    /// The environment variables the step sees.
    pub env: BTreeMap<String, String>,
    /// Its arguments after `argv[0]`.
    pub args: Vec<String>,
    /// Its limits, defaults marked.
    pub limits: Vec<LimitValue>,
    /// The wall clock it sees.
    pub clock: ClockMode,
    /// NaN handling of its float arithmetic.
    pub floats: cordon_manifest::manifest::FloatMode,
    /// The randomness it sees.
    pub random: RandomMode,
    /// Whether the same inputs give the same outputs.
    pub reproducible: Verdict,
    /// Whether the action cache may serve it.
    pub cacheable: Verdict,
    /// Risk flags.
    pub flags: Vec<Flag>,
}

/// How paths are shown: relative to the current directory when inside it,
/// absolute otherwise, never with `.` or `..`.
#[derive(Debug, Clone)]
pub struct Paths {
    cwd: PathBuf,
}

impl Paths {
    /// Paths shown relative to the current directory.
    pub fn from_cwd() -> std::io::Result<Paths> {
        Ok(Paths {
            cwd: cordon_core::fsutil::resolve(&std::env::current_dir()?)?,
        })
    }

    /// The absolute, normalised form of `path` (existing ancestors
    /// canonicalised, `..` removed lexically).
    pub fn absolute(&self, path: &Path) -> PathBuf {
        let abs = cordon_core::fsutil::resolve(path).unwrap_or_else(|_| self.cwd.join(path));
        normalize(&abs)
    }

    /// `path` for people.
    pub fn show(&self, path: &Path) -> String {
        let abs = self.absolute(path);
        match abs.strip_prefix(&self.cwd) {
            Ok(rel) if rel.as_os_str().is_empty() => ".".into(),
            Ok(rel) => rel.display().to_string(),
            Err(_) => abs.display().to_string(),
        }
    }
}

/// `path` without `.` and with `..` applied lexically.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// A step to audit, with its pipeline setting.
struct Entry<'a> {
    manifest: &'a Manifest,
    cache: bool,
}

/// Audits `file` (a pipeline or a step manifest) for environment `env`,
/// with the workspace file `config` (default: the nearest `cordon.toml`).
///
/// Errors are the manifest, pipeline and configuration problems that stop
/// the grants from being read, each naming the file and line to change.
pub fn audit(
    file: &Path,
    config: Option<&Path>,
    env: &str,
    paths: &Paths,
) -> Result<Audit, Vec<ManifestError>> {
    let pipeline;
    let single;
    let (kind, name, dir, entries) = if is_pipeline_file(file) {
        pipeline = Pipeline::load(file)?;
        let entries: Vec<Entry> = pipeline
            .steps
            .iter()
            .map(|s| Entry {
                manifest: &s.manifest,
                cache: s.cache,
            })
            .collect();
        ("pipeline", pipeline.name.clone(), &pipeline.dir, entries)
    } else {
        single = Manifest::load(file).map_err(|e| vec![e])?;
        let entries = vec![Entry {
            manifest: &single,
            cache: true,
        }];
        ("manifest", single.name.clone(), &single.dir, entries)
    };
    let workspace = WorkspaceConfig::discover_for_review(config, dir).map_err(|e| vec![e])?;
    let env = workspace.env(env).map_err(|e| vec![e])?;
    let ctx = PlanContext {
        env,
        workspace_dir: &workspace.dir,
        state_dir: dir,
        produced: &[],
        hash_index: None,
    };

    // Host paths of every mount, for this environment.
    let mut errors = Vec::new();
    let mut hosts: Vec<Vec<PathBuf>> = Vec::new();
    for e in &entries {
        let mut problems = Vec::new();
        let mut h = Vec::new();
        for m in &e.manifest.mounts {
            match mount_host_raw(e.manifest, m, &ctx) {
                Ok(raw) => h.push(paths.absolute(&raw)),
                Err(msg) => problems.push(m.host_at.problem(
                    msg.to_string(),
                    Some(format!(
                        "define it under `[env.{}.vars]` in cordon.toml",
                        env.name
                    )),
                )),
            }
        }
        if !problems.is_empty() {
            errors.push(ManifestError {
                path: e.manifest.path.clone(),
                problems,
            });
        }
        hosts.push(h);
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    // Reviewer keys the environment trusts; an unreadable key is a
    // configuration error like any other.
    let reviewers = env
        .policy
        .reviewers
        .iter()
        .map(|p| cordon_record::attest::TrustedKey::load(p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            vec![ManifestError {
                path: workspace.path.clone().unwrap_or_else(|| dir.join("cordon.toml")),
                problems: vec![cordon_manifest::manifest::Problem {
                    line: 0,
                    column: 0,
                    message: e.to_string(),
                    fix: Some("list PEM public keys made by `cordon key reviewer` under [env.NAME.policy] reviewers".into()),
                }],
            }]
        })?;
    let steps = entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut s = audit_step(i, e, &entries, &hosts, env, paths);
            s.approval = approval_verdict(e.manifest, &reviewers);
            s
        })
        .collect();
    Ok(Audit {
        kind,
        name,
        file: paths.show(file),
        environment: EnvironmentAudit {
            name: env.name.clone(),
            protected: env.protected,
            secret_provider: env.secrets.provider.as_str(),
        },
        steps,
    })
}

/// Whether `m` is approved by one of `reviewers`, in words; `None` when
/// the environment trusts no reviewer keys (approvals are then not checked).
fn approval_verdict(
    m: &Manifest,
    reviewers: &[cordon_record::attest::TrustedKey],
) -> Option<String> {
    if reviewers.is_empty() {
        return None;
    }
    let st = cordon_policy::approval::status(m, reviewers);
    Some(if st.approved {
        let ids: Vec<&str> = st.reviewers.iter().map(|k| &k[..k.len().min(16)]).collect();
        format!("approved by reviewer key {}", ids.join(", "))
    } else {
        format!("NOT approved: {}", st.problems.join("; "))
    })
}

fn audit_step(
    i: usize,
    e: &Entry<'_>,
    all: &[Entry<'_>],
    hosts: &[Vec<PathBuf>],
    env: &EnvConfig,
    paths: &Paths,
) -> StepAudit {
    let m = e.manifest;
    let provider = env.secrets.provider;
    let mounts: Vec<MountAudit> = m
        .mounts
        .iter()
        .zip(&hosts[i])
        .map(|(mount, host)| {
            let written_by = (mount.access == Access::Read)
                .then(|| {
                    (0..all.len()).filter(|&j| j != i).find(|&j| {
                        all[j]
                            .manifest
                            .mounts
                            .iter()
                            .zip(&hosts[j])
                            .filter(|(w, _)| w.access != Access::Read)
                            .any(|(_, w)| host.starts_with(w) || w.starts_with(host))
                    })
                })
                .flatten()
                .map(|j| all[j].manifest.name.clone());
            let shown = paths.show(host);
            let class = match mount.classification {
                Some(c) => Phrase::new(format!(" ({})", classification_name(c))),
                None => Phrase::new(" (unclassified)"),
            };
            let from = match &written_by {
                Some(w) => Phrase::new(", written by step ").code(w),
                None => Phrase::default(),
            };
            let summary = match mount.access {
                Access::Read => Phrase::new("may read ")
                    .code(&mount.guest)
                    .words(", mounted from ")
                    .code(&shown)
                    .then(from),
                Access::Write => Phrase::new("may write ")
                    .code(&mount.guest)
                    .words(", published to ")
                    .code(&shown)
                    .words(" only if the step succeeds"),
                Access::ReadWrite => Phrase::new("may read and change ")
                    .code(&shown)
                    .words(" in place at ")
                    .code(&mount.guest)
                    .words("; changes are not staged and survive a failed step"),
            }
            .then(class)
            .words(": ")
            .quote(&mount.purpose);
            MountAudit {
                guest: mount.guest.clone(),
                host: shown,
                host_as_written: mount.host.display().to_string(),
                access: mount.access,
                classification: mount.classification,
                purpose: mount.purpose.clone(),
                written_by,
                summary,
            }
        })
        .collect();

    let secrets: Vec<SecretAudit> = m
        .secrets
        .iter()
        .map(|g| {
            let via = match &g.key {
                Some(k) if *k != g.name => Phrase::new(" (provider key ").code(k).words(")"),
                _ => Phrase::default(),
            };
            SecretAudit {
                name: g.name.clone(),
                key: g.key.clone(),
                provider: provider.as_str(),
                uses: g.uses.clone(),
                hosts: g.hosts.clone(),
                summary: g
                    .uses
                    .iter()
                    .map(|u| match u {
                        SecretUse::HttpHeader if !g.hosts.is_empty() => {
                            crate::review::http_header_phrase(&g.name, &g.hosts)
                        }
                        _ => secret_use_phrase(&g.name, *u),
                    })
                    .map(|p| p.then(via.clone()))
                    .collect(),
            }
        })
        .collect();

    let cacheable = cordon_manifest::plan::uncacheable_by_grants(
        m.mounts.iter().map(|x| x.access),
        m.secrets.iter().map(|g| (g.name.as_str(), &g.uses)),
        m.network.is_some(),
        e.cache,
    )
    .or_else(|| {
        (!provider.keeps_versions())
            .then(|| m.secrets.first())
            .flatten()
            .map(|g| cordon_manifest::plan::unversioned_secret_reason(&g.name, provider.as_str()))
    });
    let cacheable = match cacheable {
        None => Verdict {
            value: true,
            reason: Phrase::new("yes"),
        },
        Some(why) => Verdict {
            value: false,
            reason: Phrase::new(format!("no: {why}")),
        },
    };

    let reproducible = match (m.clock, m.random) {
        (ClockMode::Fixed, RandomMode::Seeded) => Verdict {
            value: true,
            reason: Phrase::new(
                "yes: the wall clock is fixed and randomness is seeded, both stored in the record",
            ),
        },
        (ClockMode::Real, RandomMode::Seeded) => Verdict {
            value: false,
            reason: Phrase::new("no: it sees the host's real wall clock (`clock = \"real\"`)"),
        },
        (ClockMode::Fixed, RandomMode::Real) => Verdict {
            value: false,
            reason: Phrase::new("no: it sees real randomness (`random = \"real\"`)"),
        },
        (ClockMode::Real, RandomMode::Real) => Verdict {
            value: false,
            reason: Phrase::new(
                "no: it sees the host's real wall clock and real randomness (`clock` and `random` are `\"real\"`)",
            ),
        },
    };

    let reproducible = if m.floats == cordon_manifest::manifest::FloatMode::Native
        && reproducible.value
    {
        Verdict {
            value: true,
            reason: reproducible.reason.words(
                "; bit for bit only on the same CPU architecture, since its float NaNs are the CPU's (native floats, the default; `floats = \"canonical\"` makes them the same everywhere)",
            ),
        }
    } else {
        reproducible
    };

    let network: Vec<String> = m
        .network
        .iter()
        .flat_map(|n| n.allow.iter().map(|r| r.describe()))
        .collect();
    let flags = risk_flags(m, &network);
    StepAudit {
        name: m.name.clone(),
        manifest: paths.show(&m.path),
        component: ComponentAudit {
            path: paths.show(&m.dir.join(&m.component)),
            digest: m.digest.clone(),
        },
        approval: None,
        mounts,
        secrets,
        network,
        env: m.env.clone(),
        args: m.args.clone(),
        limits: limit_values(&m.limits, m.network.is_some()),
        clock: m.clock,
        floats: m.floats,
        random: m.random,
        reproducible,
        cacheable,
        flags,
    }
}

/// The risk flags of manifest `m` with network destinations `network`.
fn risk_flags(m: &Manifest, network: &[String]) -> Vec<Flag> {
    let mut flags = Vec::new();
    for mount in &m.mounts {
        if mount.classification == Some(Classification::Restricted) {
            flags.push(Flag {
                code: "restricted-data",
                message: Phrase::new("mount ")
                    .code(&mount.guest)
                    .words(" holds restricted data"),
            });
        }
    }
    for g in &m.secrets {
        if g.uses.contains(&SecretUse::Reveal) {
            flags.push(Flag {
                code: "reveal",
                message: Phrase::new("the step may read the value of secret ")
                    .code(&g.name)
                    .words(", not only use it"),
            });
        }
    }
    // Redaction and the output check find a value and its accidental
    // encodings; a step that reads the value and can write anywhere can
    // XOR, reverse or split it first, and nothing can tell.
    let writes = m.mounts.iter().any(|x| x.access != Access::Read);
    if writes || !network.is_empty() {
        let via = match (writes, !network.is_empty()) {
            (true, true) => "write outputs and reach the network",
            (true, false) => "write outputs",
            _ => "reach the network",
        };
        for g in m
            .secrets
            .iter()
            .filter(|g| g.uses.contains(&SecretUse::Reveal))
        {
            flags.push(Flag {
                code: "reveal-with-egress",
                message: Phrase::new("the step may read the value of secret ")
                    .code(&g.name)
                    .words(format!(
                        " and {via}: it can leak the value in any encoding (XOR, reversal, splitting), which no check can recognise"
                    )),
            });
        }
    }
    for mount in &m.mounts {
        if mount.access == Access::ReadWrite {
            flags.push(Flag {
                code: "read-write",
                message: Phrase::new("mount ").code(&mount.guest).words(
                    " is changed in place: changes are not staged, survive a failed step, and the step is never cached",
                ),
            });
        }
    }
    let most_sensitive = m.mounts.iter().filter_map(|x| x.classification).max();
    if !network.is_empty()
        && let Some(c) = most_sensitive.filter(|c| *c >= Classification::Confidential)
    {
        flags.push(Flag {
            code: "network-with-confidential-data",
            message: Phrase::new(format!(
                "the step may reach the network while it can read {} data",
                classification_name(c)
            )),
        });
    }
    let read_max = m
        .mounts
        .iter()
        .filter(|x| x.access != Access::Write)
        .filter_map(|x| x.classification.map(|c| (c, &x.guest)))
        .max_by_key(|(c, _)| *c);
    let written_min = m
        .mounts
        .iter()
        .filter(|x| x.access != Access::Read)
        .filter_map(|x| x.classification.map(|c| (c, &x.guest)))
        .min_by_key(|(c, _)| *c);
    if let (Some((high, from)), Some((low, to))) = (read_max, written_min)
        && low < high
    {
        flags.push(Flag {
            code: "declassifies",
            message: Phrase::new(format!("reads {} data (", classification_name(high)))
                .code(from)
                .words(format!(") and writes {} data (", classification_name(low)))
                .code(to)
                .words(format!(
                    "): check that the step removes what makes its input {}",
                    classification_name(high)
                )),
        });
    }
    // A bound secret is a credential; over plain http every proxy and
    // network hop sees it. The manifest allows it only when the entry says
    // `http://` outright, and a reviewer should see that choice.
    for g in &m.secrets {
        let plain: Vec<&String> = g
            .hosts
            .iter()
            .filter(|h| {
                cordon_manifest::manifest::BoundHost::parse(h).is_some_and(|b| b.scheme == "http")
            })
            .collect();
        if let Some(first) = plain.first() {
            flags.push(Flag {
                code: "secret-over-plain-http",
                message: Phrase::new("secret ")
                    .code(&g.name)
                    .words(" is sent as a header over plain http to ")
                    .code(first.as_str())
                    .words(format!(
                        "{}: every hop on the way can read it",
                        match plain.len() {
                            1 => String::new(),
                            n => format!(" and {} more", n - 1),
                        }
                    )),
            });
        }
    }
    for mount in &m.mounts {
        if mount.classification.is_none() {
            flags.push(Flag {
                code: "unclassified-mount",
                message: Phrase::new("mount ")
                    .code(&mount.guest)
                    .words(" has no classification"),
            });
        }
    }
    flags
}

/// A word for an argument: as it is, or in double quotes (with escapes)
/// when it is empty or holds spaces or quotes.
fn arg_word(a: &str) -> String {
    if a.is_empty()
        || a.chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '\'')
    {
        format!("{a:?}")
    } else {
        a.to_string()
    }
}

/// One labelled line of a step's report.
struct Line {
    label: &'static str,
    phrase: Phrase,
}

impl StepAudit {
    fn lines(&self) -> Vec<Line> {
        let line = |label, phrase| Line { label, phrase };
        let mut out = vec![
            line(
                "component",
                Phrase::new("")
                    .code(&self.component.path)
                    .words(", pinned to ")
                    .code(&self.component.digest),
            ),
            line(
                "approval",
                match &self.approval {
                    // Built from our words and approval problems that
                    // name files and reviewers: escaped as a whole.
                    Some(verdict) => Phrase::default().escaped(verdict),
                    None => Phrase::new("not checked (this environment trusts no reviewer keys)"),
                },
            ),
        ];
        if self.mounts.is_empty() {
            out.push(line("mounts", Phrase::new("none (no directory grant)")));
        }
        for m in &self.mounts {
            out.push(line("mount", m.summary.clone()));
        }
        if self.secrets.is_empty() {
            out.push(line("secrets", Phrase::new("none")));
        }
        for s in &self.secrets {
            for p in &s.summary {
                out.push(line("secret", p.clone()));
            }
        }
        if self.network.is_empty() {
            out.push(line("network", Phrase::new("none (no network grant)")));
        }
        for n in &self.network {
            out.push(line("network", Phrase::new("may connect to ").code(n)));
        }
        if self.env.is_empty() {
            out.push(line("environment", Phrase::new("none")));
        }
        for (k, v) in &self.env {
            out.push(line(
                "environment",
                Phrase::new("").code(format!("{k}={v}")),
            ));
        }
        out.push(line(
            "arguments",
            if self.args.is_empty() {
                Phrase::new("none")
            } else {
                let words: Vec<String> = self.args.iter().map(|a| arg_word(a)).collect();
                Phrase::new("").code(words.join(" "))
            },
        ));
        let limits: Vec<String> = self
            .limits
            .iter()
            .map(|l| {
                format!(
                    "{} {}{}",
                    l.name,
                    l.text,
                    if l.default { " (default)" } else { "" }
                )
            })
            .collect();
        out.push(line("limits", Phrase::new(limits.join("; "))));
        out.push(line("cacheable", self.cacheable.reason.clone()));
        out.push(line("reproducible", self.reproducible.reason.clone()));
        if self.flags.is_empty() {
            out.push(line("risk", Phrase::new("none")));
        }
        for f in &self.flags {
            out.push(line(
                "risk",
                Phrase::new(format!("{}: ", f.code)).then(f.message.clone()),
            ));
        }
        out
    }
}

impl Audit {
    /// The audit in `format`.
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Text => self.text(),
            Format::Markdown => self.markdown(),
            Format::Json => serde_json::to_string_pretty(self).unwrap_or_default() + "\n",
        }
    }

    /// The environment in our words; its name (from `cordon.toml`)
    /// escaped for `format`.
    fn environment_sentence(&self, format: Format) -> String {
        let e = &self.environment;
        format!(
            "environment {} ({}; secrets from the {} provider)",
            match format {
                Format::Markdown => crate::review::md_text(&e.name),
                Format::Text | Format::Json => cordon_core::sanitize::escape_for_terminal(&e.name),
            },
            if e.protected {
                "protected"
            } else {
                "not protected"
            },
            e.secret_provider
        )
    }

    fn text(&self) -> String {
        let mut out = format!(
            "capability audit of {} {} ({}) for {}\n{}; paths are relative to the current directory\n",
            self.kind,
            cordon_core::sanitize::escape_for_terminal(&self.name),
            cordon_core::sanitize::escape_for_terminal(&self.file),
            self.environment_sentence(Format::Text),
            plural(self.steps.len(), "step"),
        );
        for s in &self.steps {
            out.push_str(&format!(
                "\nstep {} ({})\n",
                cordon_core::sanitize::escape_for_terminal(&s.name),
                cordon_core::sanitize::escape_for_terminal(&s.manifest)
            ));
            for l in s.lines() {
                out.push_str(&format!("  {:<13}{}\n", l.label, l.phrase.text()));
            }
        }
        out
    }

    fn markdown(&self) -> String {
        let mut out = format!(
            "## Capability audit: {} {} ({})\n\nFor {}. {}; paths are relative to the directory the audit ran in.\n\n",
            self.kind,
            md_code(&self.name),
            md_code(&self.file),
            self.environment_sentence(Format::Markdown),
            capitalize(&plural(self.steps.len(), "step")),
        );
        out.push_str("| step | reads | writes | secrets | network | cacheable | reproducible | risk flags |\n");
        out.push_str("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
        for s in &self.steps {
            let count = |f: &dyn Fn(Access) -> bool| {
                let ms: Vec<&MountAudit> = s.mounts.iter().filter(|m| f(m.access)).collect();
                match ms.iter().filter_map(|m| m.classification).max() {
                    _ if ms.is_empty() => "none".to_string(),
                    Some(c) => format!("{} (up to {})", ms.len(), classification_name(c)),
                    None => format!("{} (unclassified)", ms.len()),
                }
            };
            let secrets: Vec<String> = s
                .secrets
                .iter()
                .map(|x| {
                    let uses: Vec<&str> =
                        x.uses.iter().map(|u| crate::review::use_name(*u)).collect();
                    format!("{} ({})", md_code_cell(&x.name), uses.join(", "))
                })
                .collect();
            let flags: Vec<String> = s.flags.iter().map(|f| format!("`{}`", f.code)).collect();
            let yes_no = |v: bool| if v { "yes" } else { "**no**" };
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
                md_code_cell(&s.name),
                count(&|a| a != Access::Write),
                count(&|a| a != Access::Read),
                if secrets.is_empty() {
                    "none".into()
                } else {
                    secrets.join(", ")
                },
                if s.network.is_empty() {
                    "none".to_string()
                } else {
                    s.network.len().to_string()
                },
                yes_no(s.cacheable.value),
                yes_no(s.reproducible.value),
                if flags.is_empty() {
                    "none".into()
                } else {
                    flags.join(", ")
                },
            ));
        }
        for s in &self.steps {
            out.push_str(&format!(
                "\n### Step {}\n\nManifest {}\n\n",
                md_code(&s.name),
                md_code(&s.manifest)
            ));
            for l in s.lines() {
                out.push_str(&format!("- **{}:** {}\n", l.label, l.phrase.markdown()));
            }
        }
        out
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

    fn manifest(extra: &str) -> Manifest {
        Manifest::parse(
            Path::new("s.toml"),
            &format!(
                "[step]\nname = \"s\"\ncomponent = \"s.wasm\"\ndigest = \"{DIGEST}\"\n{extra}"
            ),
        )
        .unwrap()
    }

    fn mount(guest: &str, access: &str, class: &str) -> String {
        format!(
            "[[mount]]\nguest = \"{guest}\"\nhost = \"h{}\"\naccess = \"{access}\"\npurpose = \"p\"\n{}\n",
            guest.replace('/', "-"),
            if class.is_empty() {
                String::new()
            } else {
                format!("classification = \"{class}\"")
            }
        )
    }

    fn codes(flags: &[Flag]) -> Vec<&str> {
        flags.iter().map(|f| f.code).collect()
    }

    /// An audit with two steps, every manifest- or configuration-chosen
    /// string taken from `next`.
    fn audit_of(next: &mut dyn FnMut() -> String) -> Audit {
        let mut step = || {
            let name = next();
            let guest = next();
            let purpose = next();
            let secret = next();
            StepAudit {
                manifest: next(),
                component: ComponentAudit {
                    path: next(),
                    digest: Sha256Digest::of(b"component"),
                },
                approval: Some(next()),
                mounts: vec![MountAudit {
                    host: next(),
                    host_as_written: next(),
                    access: Access::Read,
                    classification: Some(Classification::Internal),
                    written_by: Some(next()),
                    summary: Phrase::new("reads ")
                        .code(&guest)
                        .words(" for ")
                        .quote(&purpose),
                    guest,
                    purpose,
                }],
                secrets: vec![SecretAudit {
                    key: Some(next()),
                    provider: "local",
                    uses: BTreeSet::from([SecretUse::Hmac]),
                    hosts: vec![next()],
                    summary: vec![crate::review::secret_use_phrase(&secret, SecretUse::Hmac)],
                    name: secret,
                }],
                network: vec![next()],
                env: BTreeMap::from([(next(), next())]),
                args: vec![next(), next()],
                limits: limit_values(&cordon_manifest::manifest::Limits::default(), false),
                clock: ClockMode::default(),
                floats: Default::default(),
                random: RandomMode::default(),
                reproducible: Verdict {
                    value: false,
                    reason: Phrase::new("it reads ").quote(next()),
                },
                cacheable: Verdict {
                    value: true,
                    reason: Phrase::new("yes"),
                },
                flags: vec![Flag {
                    code: "reveal",
                    message: Phrase::new("secret ").code(next()),
                }],
                name,
            }
        };
        let steps = vec![step(), step()];
        Audit {
            kind: "pipeline",
            name: next(),
            file: next(),
            environment: EnvironmentAudit {
                name: next(),
                protected: true,
                secret_provider: "local",
            },
            steps,
        }
    }

    fn rendered(values: &[String]) -> String {
        let mut i = 0;
        audit_of(&mut || {
            i += 1;
            values[i % values.len()].clone()
        })
        .render(Format::Markdown)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        #[test]
        fn any_manifest_text_leaves_the_markdown_audit_its_structure(
            values in proptest::collection::vec(crate::review::structure::hostile(), 1..8)
        ) {
            use crate::review::structure;
            let md = rendered(&values);
            let plain = rendered(&["value".to_string()]);
            proptest::prop_assert_eq!(structure::active(&md), 0, "{}", md);
            proptest::prop_assert_eq!(
                structure::of_markdown(&md),
                structure::of_markdown(&plain),
                "{}", md
            );
        }
    }

    #[test]
    fn a_plain_step_raises_no_flag() {
        let m = manifest(&(mount("/in", "read", "internal") + &mount("/out", "write", "internal")));
        assert!(risk_flags(&m, &[]).is_empty());
    }

    #[test]
    fn each_risk_has_its_flag() {
        let m = manifest(&mount("/in", "read", "restricted"));
        assert_eq!(codes(&risk_flags(&m, &[])), ["restricted-data"]);
        let m = manifest("[[secret]]\nname = \"k\"\nuses = [\"sign\", \"reveal\"]\n");
        assert_eq!(codes(&risk_flags(&m, &[])), ["reveal"]);
        let m = manifest(
            &(mount("/out", "write", "internal")
                + "[[secret]]\nname = \"k\"\nuses = [\"reveal\"]\n"),
        );
        assert_eq!(
            codes(&risk_flags(&m, &[])),
            ["reveal", "reveal-with-egress"]
        );
        assert!(
            risk_flags(&m, &[])[1]
                .message
                .text()
                .contains("can leak the value in any encoding")
        );
        let m = manifest("[[secret]]\nname = \"k\"\nuses = [\"reveal\"]\n");
        assert_eq!(
            codes(&risk_flags(&m, &["h:1".into()])),
            ["reveal", "reveal-with-egress"]
        );
        let m = manifest(&mount("/work", "read-write", "internal"));
        assert_eq!(codes(&risk_flags(&m, &[])), ["read-write"]);
        let m =
            manifest(&(mount("/in", "read", "confidential") + &mount("/out", "write", "public")));
        let f = risk_flags(&m, &[]);
        assert_eq!(codes(&f), ["declassifies"]);
        assert_eq!(
            f[0].message.text(),
            "reads confidential data (/in) and writes public data (/out): check that the step removes what makes its input confidential"
        );
        let m = manifest(&mount("/in", "read", ""));
        assert_eq!(codes(&risk_flags(&m, &[])), ["unclassified-mount"]);
    }

    #[test]
    fn network_with_confidential_data_is_flagged_once_network_exists() {
        let m = manifest(&mount("/in", "read", "confidential"));
        assert!(risk_flags(&m, &[]).is_empty());
        let net = vec!["api.example:443".to_string()];
        assert_eq!(
            codes(&risk_flags(&m, &net)),
            ["network-with-confidential-data"]
        );
        let m = manifest(&mount("/in", "read", "internal"));
        assert!(risk_flags(&m, &net).is_empty());
    }

    #[test]
    fn a_secret_bound_to_a_plain_http_host_is_flagged() {
        let secret = |hosts: &str| {
            manifest(&format!(
                "[network]\nallow = [\"https://api.example/\"]\n\n[[secret]]\nname = \"tok\"\nuses = [\"http-header\"]\nhosts = [{hosts}]\n"
            ))
        };
        let https = secret("\"api.example\", \"https://b.example:8443\"");
        assert!(risk_flags(&https, &[]).is_empty());
        let m = secret("\"api.example\", \"HTTP://a.example:8080\", \"http://b.example\"");
        let f = risk_flags(&m, &[]);
        assert_eq!(codes(&f), ["secret-over-plain-http"]);
        assert_eq!(
            f[0].message.text(),
            "secret tok is sent as a header over plain http to http://a.example:8080 and 1 more: every hop on the way can read it"
        );
    }

    #[test]
    fn every_flag_code_is_documented() {
        let m = manifest(
            &(mount("/a", "read-write", "restricted")
                + &mount("/b", "write", "public")
                + &mount("/c", "read", "")
                + "[[secret]]\nname = \"k\"\nuses = [\"reveal\"]\n"
                + "[network]\nallow = [\"http://h/\"]\n\n"
                + "[[secret]]\nname = \"t\"\nuses = [\"http-header\"]\nhosts = [\"http://h\"]\n"),
        );
        for f in risk_flags(&m, &["h:1".into()]) {
            assert!(FLAG_CODES.iter().any(|(c, _)| *c == f.code), "{}", f.code);
        }
        assert_eq!(risk_flags(&m, &["h:1".into()]).len(), FLAG_CODES.len());
    }

    #[test]
    fn paths_are_normalised() {
        assert_eq!(normalize(Path::new("/a/b/../c/./d")), Path::new("/a/c/d"));
        assert_eq!(normalize(Path::new("a/../../b")), Path::new("../b"));
    }

    #[test]
    fn arguments_with_spaces_are_quoted() {
        assert_eq!(arg_word("--x"), "--x");
        assert_eq!(arg_word("a b"), "\"a b\"");
        assert_eq!(arg_word(""), "\"\"");
    }
}
