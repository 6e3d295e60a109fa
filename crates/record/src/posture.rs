//! `cordon posture`: the operator's questions about one environment,
//! answered from its records — how many runs, how many with every check
//! passing, break-glass runs and their justifications, unsigned and
//! unverifiable records, and the secret versions in use.
//!
//! A run passes every check when it succeeded, ran under a clean policy
//! decision (`allow`), and its record verifies (chain, record, signature
//! by a trusted key) with nothing found. The numbers come from the typed
//! records and [`crate::verify`]; this module reads and never writes.
//!
//! Not answered yet, because records do not hold it: whether vault tokens
//! were revoked or left to expire, and restores with their outcome.

use crate::query::{BreakGlassRun, break_glass_runs, step_records};
use crate::trust::TrustRoots;
use crate::verify::{FindingKind, Scope, VerifyError, verify};
use cordon_manifest::config::WorkspaceConfig;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// One secret version and the runs that used it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SecretVersion {
    /// The secret's name.
    pub name: String,
    /// Its provider.
    pub provider: String,
    /// The version (`null` for providers without versions).
    pub version: Option<String>,
    /// Runs that were granted it.
    pub runs: u64,
    /// When the first of them started (RFC 3339): how long this version
    /// has been in use.
    pub first_used: String,
    /// When the last of them started.
    pub last_used: String,
}

/// A break-glass run, as posture lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakGlass {
    /// The run id.
    pub run_id: String,
    /// The step.
    pub step: String,
    /// The justification given.
    pub justification: String,
    /// The rules it overrode.
    pub overridden: Vec<String>,
}

/// One environment's posture.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Posture {
    /// The environment.
    pub environment: String,
    /// Step runs recorded.
    pub runs: u64,
    /// Runs with every check passing.
    pub passing: u64,
    /// Runs that failed.
    pub failed: u64,
    /// Runs served from the action cache.
    pub cache_hits: u64,
    /// Runs that went ahead despite policy violations.
    pub break_glass: Vec<BreakGlass>,
    /// Records written without a signature.
    pub unsigned: Vec<String>,
    /// Records that do not verify (chain, record or signature), with the
    /// first problem of each.
    pub unverifiable: BTreeMap<String, String>,
    /// Secret versions in use.
    pub secrets: Vec<SecretVersion>,
}

/// The posture of environment `env` from the records in `state_dir`,
/// verified against `roots` and `workspace`'s environments.
pub fn posture(
    state_dir: &Path,
    workspace: &WorkspaceConfig,
    roots: &TrustRoots,
    env: &str,
) -> Result<Posture, VerifyError> {
    let records_dir = state_dir.join("records");
    let verdict = verify(state_dir, workspace, roots, &Scope::All)?;
    let mut unsigned = BTreeSet::new();
    let mut unverifiable = BTreeMap::new();
    for f in &verdict.findings {
        let Some(run) = f.subject.strip_prefix("record ") else {
            continue;
        };
        match f.kind {
            FindingKind::Unsigned => {
                unsigned.insert(run.to_string());
            }
            FindingKind::Chain | FindingKind::Record | FindingKind::Signature => {
                unverifiable
                    .entry(run.to_string())
                    .or_insert_with(|| f.problem.clone());
            }
            _ => {}
        }
    }
    let io = |e| VerifyError::Io(records_dir.clone(), e);
    let records: Vec<_> = step_records(&records_dir)
        .map_err(io)?
        .into_iter()
        .map(|(_, r)| r)
        .filter(|r| r.environment == env)
        .collect();
    let ids: BTreeSet<&str> = records.iter().map(|r| r.run_id.as_str()).collect();
    let mut p = Posture {
        environment: env.to_string(),
        runs: records.len() as u64,
        passing: 0,
        failed: 0,
        cache_hits: 0,
        break_glass: Vec::new(),
        unsigned: unsigned
            .iter()
            .filter(|r| ids.contains(r.as_str()))
            .cloned()
            .collect(),
        unverifiable: unverifiable
            .into_iter()
            .filter(|(r, _)| ids.contains(r.as_str()))
            .collect(),
        secrets: Vec::new(),
    };
    let mut secrets: BTreeMap<(String, String, Option<String>), SecretVersion> = BTreeMap::new();
    for r in &records {
        let clean = r.policy.as_ref().is_some_and(|d| d.decision == "allow");
        if !r.success {
            p.failed += 1;
        }
        if r.cache.hit {
            p.cache_hits += 1;
        }
        if r.success
            && clean
            && !p.unsigned.contains(&r.run_id)
            && !p.unverifiable.contains_key(&r.run_id)
        {
            p.passing += 1;
        }
        for (name, a) in &r.secrets {
            let key = (name.clone(), a.provider.clone(), a.version.clone());
            let e = secrets.entry(key).or_insert_with(|| SecretVersion {
                name: name.clone(),
                provider: a.provider.clone(),
                version: a.version.clone(),
                runs: 0,
                first_used: r.started_at.clone(),
                last_used: r.started_at.clone(),
            });
            e.runs += 1;
            if r.started_at < e.first_used {
                e.first_used = r.started_at.clone();
            }
            if r.started_at > e.last_used {
                e.last_used = r.started_at.clone();
            }
        }
    }
    p.secrets = secrets.into_values().collect();
    p.break_glass = break_glass_runs(&records_dir)
        .map_err(io)?
        .into_iter()
        .filter(|b: &BreakGlassRun| b.environment == env)
        .map(|b| BreakGlass {
            run_id: b.run_id,
            step: b.step,
            justification: b.justification,
            overridden: b.overridden,
        })
        .collect();
    Ok(p)
}

/// A label value in the OpenMetrics text format: `\`, `"` and newlines
/// escaped (names and versions come from records anyone with the state
/// directory can write).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The posture as OpenMetrics text, for a Prometheus scrape.
pub fn render_openmetrics(p: &Posture) -> String {
    use std::fmt::Write as _;
    let env = label(&p.environment);
    let mut s = String::new();
    let mut gauge = |name: &str, help: &str, value: u64| {
        let _ = writeln!(s, "# HELP {name} {help}");
        let _ = writeln!(s, "# TYPE {name} gauge");
        let _ = writeln!(s, "{name}{{environment=\"{env}\"}} {value}");
    };
    gauge("cordon_runs", "Step runs recorded.", p.runs);
    gauge(
        "cordon_runs_passing",
        "Step runs with every check passing.",
        p.passing,
    );
    gauge("cordon_runs_failed", "Step runs that failed.", p.failed);
    gauge(
        "cordon_runs_cache_hits",
        "Step runs served from the action cache.",
        p.cache_hits,
    );
    gauge(
        "cordon_break_glass_runs",
        "Step runs that went ahead despite policy violations.",
        p.break_glass.len() as u64,
    );
    gauge(
        "cordon_unsigned_records",
        "Records written without a signature.",
        p.unsigned.len() as u64,
    );
    gauge(
        "cordon_unverifiable_records",
        "Records whose chain, file or signature does not verify.",
        p.unverifiable.len() as u64,
    );
    let _ = writeln!(
        s,
        "# HELP cordon_secret_version_runs Step runs granted a secret version."
    );
    let _ = writeln!(s, "# TYPE cordon_secret_version_runs gauge");
    for v in &p.secrets {
        let _ = writeln!(
            s,
            "cordon_secret_version_runs{{environment=\"{env}\",secret=\"{}\",provider=\"{}\",version=\"{}\"}} {}",
            label(&v.name),
            label(&v.provider),
            label(v.version.as_deref().unwrap_or("")),
            v.runs
        );
    }
    s.push_str("# EOF\n");
    s
}

/// The posture as text for people.
pub fn render_text(p: &Posture) -> String {
    use cordon_core::sanitize::escape_for_terminal as esc;
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "environment `{}`", esc(&p.environment));
    let _ = writeln!(
        s,
        "  runs: {} ({} with every check passing, {} failed, {} from the cache)",
        p.runs, p.passing, p.failed, p.cache_hits
    );
    let _ = writeln!(s, "  break-glass runs: {}", p.break_glass.len());
    for b in &p.break_glass {
        let _ = writeln!(
            s,
            "    {} `{}`: {} (overrode {})",
            esc(&b.run_id),
            esc(&b.step),
            esc(&b.justification),
            esc(&b.overridden.join(", "))
        );
    }
    let _ = writeln!(s, "  unsigned records: {}", p.unsigned.len());
    for r in &p.unsigned {
        let _ = writeln!(s, "    {}", esc(r));
    }
    let _ = writeln!(s, "  unverifiable records: {}", p.unverifiable.len());
    for (r, why) in &p.unverifiable {
        let _ = writeln!(s, "    {}: {}", esc(r), esc(why));
    }
    let _ = writeln!(s, "  secret versions in use: {}", p.secrets.len());
    for v in &p.secrets {
        let _ = writeln!(
            s,
            "    {} ({}, version {}): {} runs, first {}, last {}",
            esc(&v.name),
            esc(&v.provider),
            esc(v.version.as_deref().unwrap_or("-")),
            v.runs,
            esc(&v.first_used),
            esc(&v.last_used)
        );
    }
    s
}
