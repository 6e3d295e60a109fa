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
//! Nothing is skipped silently: a record file that does not read as a step
//! record (damaged, truncated, of a schema this runner does not know) is a
//! run all the same, counted as unverifiable and named with the reason. It
//! belongs to this environment when its `environment` can still be read,
//! and to every environment's posture when even that cannot, because an
//! operator must see it somewhere. Repair and restore records are other
//! kinds of record, not step runs, and are left to `cordon verify`.
//!
//! The OpenMetrics form has fixed metric names (none comes from a record);
//! record values reach it only as label values, escaped as the format
//! says (`\\`, `\"`, `\n`).
//!
//! Not answered yet, because records do not hold it: whether vault tokens
//! were revoked or left to expire, and restores with their outcome.

use crate::query::{BreakGlassRun, break_glass_runs, step_records};
use crate::record::{StepRecord, is_repair_record, is_restore_record};
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
    /// `cordon restore`s (rollbacks) that published what they restored.
    pub restores: u64,
    /// `cordon restore`s that failed (their records say why).
    pub restore_failures: u64,
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
    let unreadable = unreadable_records(&records_dir, env).map_err(io)?;
    let mut ids: BTreeSet<&str> = records.iter().map(|r| r.run_id.as_str()).collect();
    ids.extend(unreadable.keys().map(String::as_str));
    for (run, why) in &unreadable {
        // The reader's reason comes first: it says more than a digest
        // mismatch does about a file that no longer parses.
        unverifiable.insert(run.clone(), why.clone());
    }
    let mut p = Posture {
        environment: env.to_string(),
        runs: ids.len() as u64,
        passing: 0,
        failed: 0,
        cache_hits: 0,
        restores: 0,
        restore_failures: 0,
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
    let (restores, restore_failures) = restores_of(&records_dir, env).map_err(io)?;
    p.restores = restores;
    p.restore_failures = restore_failures;
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

/// How many restores of `env` published what they restored, and how many
/// failed, from the restore records under `records_dir` (the rate of
/// successful rollbacks an operator watches).
fn restores_of(records_dir: &Path, env: &str) -> std::io::Result<(u64, u64)> {
    let names = match crate::verify::record_files(records_dir) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(e),
    };
    let (mut ok, mut failed) = (0, 0);
    for run in names.iter().filter(|r| r.contains("-restore-")) {
        let path = crate::chain::record_path(records_dir, run);
        let Ok(bytes) = cordon_core::fsutil::read_regular(&path, MAX_RECORD_BYTES) else {
            continue;
        };
        // An unreadable one is named by `verify`, which posture reports.
        let Ok(r) = serde_json::from_slice::<crate::record::RestoreRecord>(&bytes) else {
            continue;
        };
        if r.environment != env {
            continue;
        }
        if r.failure.is_some() {
            failed += 1;
        } else {
            ok += 1;
        }
    }
    Ok((ok, failed))
}

/// Largest record file read: a record is a few kilobytes; the cap keeps a
/// planted file from costing the reader its memory.
const MAX_RECORD_BYTES: u64 = 64 << 20;

/// The record files under `records_dir` that are not readable step records
/// and may belong to `env`, by run id, each with why it cannot be read.
fn unreadable_records(records_dir: &Path, env: &str) -> std::io::Result<BTreeMap<String, String>> {
    /// The one field that places a record, read on its own when the rest
    /// of the record does not parse.
    #[derive(serde::Deserialize)]
    struct Placed {
        environment: String,
    }
    let names = match crate::verify::record_files(records_dir) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(e),
    };
    let mut out = BTreeMap::new();
    for run in names {
        let path = crate::chain::record_path(records_dir, &run);
        let bytes = match cordon_core::fsutil::read_regular(&path, MAX_RECORD_BYTES) {
            Ok(b) => b,
            Err(e) => {
                out.insert(run, format!("the record cannot be read: {e}"));
                continue;
            }
        };
        if is_repair_record(&bytes) || is_restore_record(&bytes) {
            continue;
        }
        let Err(e) = serde_json::from_slice::<StepRecord>(&bytes) else {
            continue;
        };
        let mine = match serde_json::from_slice::<Placed>(&bytes) {
            Ok(p) => p.environment == env,
            Err(_) => true,
        };
        if mine {
            out.insert(
                run,
                format!("the record does not read as a step record: {e}"),
            );
        }
    }
    Ok(out)
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
        "cordon_restores",
        "Restores (rollbacks) that published what they restored.",
        p.restores,
    );
    gauge(
        "cordon_restore_failures",
        "Restores that failed.",
        p.restore_failures,
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
    let _ = writeln!(
        s,
        "  restores: {} ({} failed)",
        p.restores, p.restore_failures
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn posture_of(env: &str, secrets: &[(String, String, Option<String>)]) -> Posture {
        Posture {
            environment: env.to_string(),
            runs: 3,
            passing: 1,
            failed: 1,
            cache_hits: 0,
            restores: 0,
            restore_failures: 0,
            break_glass: Vec::new(),
            unsigned: vec!["r1".into()],
            unverifiable: BTreeMap::from([("r2".to_string(), "bad".to_string())]),
            secrets: secrets
                .iter()
                .map(|(name, provider, version)| SecretVersion {
                    name: name.clone(),
                    provider: provider.clone(),
                    version: version.clone(),
                    runs: 1,
                    first_used: "t0".into(),
                    last_used: "t1".into(),
                })
                .collect(),
        }
    }

    /// A sample: metric name, labels in order, value.
    type Sample = (String, Vec<(String, String)>, String);

    /// One sample line of the OpenMetrics text format, read strictly as
    /// its ABNF says: a metric name, label values in double quotes with
    /// only `\\`, `\"` and `\n` escaped, a value.
    fn sample(line: &str) -> Result<Sample, String> {
        let open = line.find('{').ok_or("no labels")?;
        let name = &line[..open];
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        {
            return Err(format!("bad metric name {name:?}"));
        }
        let mut labels = Vec::new();
        let mut rest = &line[open + 1..];
        loop {
            let eq = rest.find("=\"").ok_or("no label value")?;
            let key = rest[..eq].to_string();
            let mut value = String::new();
            let mut chars = rest[eq + 2..].char_indices();
            let end = loop {
                match chars.next().ok_or("unterminated label value")? {
                    (_, '\\') => match chars.next().ok_or("dangling escape")?.1 {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        c => return Err(format!("bad escape \\{c}")),
                    },
                    (i, '"') => break eq + 2 + i + 1,
                    (_, '\n') => return Err("raw newline".into()),
                    (_, c) => value.push(c),
                }
            };
            labels.push((key, value));
            rest = &rest[end..];
            if let Some(r) = rest.strip_prefix(',') {
                rest = r;
            } else if let Some(r) = rest.strip_prefix("} ") {
                return Ok((name.to_string(), labels, r.to_string()));
            } else {
                return Err(format!("after a label: {rest:?}"));
            }
        }
    }

    fn hostile() -> impl Strategy<Value = String> {
        prop_oneof![
            "[\"\\\\{}=, #\n\r\t\u{0}\u{2028}a-z]{0,20}",
            any::<String>(),
            Just("x\"} 1\ncordon_runs{environment=\"prod\"} 0\n# EOF".to_string()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_environment_or_secret_text_stays_inside_its_openmetrics_label(
            env in hostile(),
            secrets in proptest::collection::vec(
                (hostile(), hostile(), proptest::option::of(hostile())), 0..4),
        ) {
            let text = render_openmetrics(&posture_of(&env, &secrets));
            prop_assert!(text.ends_with("# EOF\n"));
            let lines: Vec<&str> = text.lines().collect();
            prop_assert_eq!(lines.iter().filter(|l| **l == "# EOF").count(), 1);
            let samples: Vec<_> = lines
                .iter()
                .filter(|l| !l.starts_with('#'))
                .map(|l| sample(l))
                .collect::<Result<_, _>>()
                .map_err(TestCaseError::fail)?;
            // The same fixed gauges and one sample per secret version,
            // whatever the text: nothing a record holds adds or ends one.
            let fixed = render_openmetrics(&posture_of("env", &[]))
                .lines()
                .filter(|l| !l.starts_with('#'))
                .count();
            prop_assert_eq!(samples.len(), fixed + secrets.len());
            for (name, labels, value) in &samples {
                prop_assert!(name.starts_with("cordon_"));
                prop_assert_eq!(&labels[0], &("environment".to_string(), env.clone()));
                prop_assert!(value.parse::<u64>().is_ok(), "{}", value);
            }
            for ((_, labels, _), (name, provider, version)) in samples[fixed..].iter().zip(&secrets) {
                let want: Vec<(String, String)> = vec![
                    ("environment".into(), env.clone()),
                    ("secret".into(), name.clone()),
                    ("provider".into(), provider.clone()),
                    ("version".into(), version.clone().unwrap_or_default()),
                ];
                prop_assert_eq!(labels, &want);
            }
        }
    }
}
