//! Questions asked of a state directory's records: which run a command
//! means by `latest` or `latest:STEP` ([`resolve_run`],
//! [`resolve_pipeline_run`]), which runs used a secret (version) — the
//! first question after a leak — and which runs went ahead by break-glass.
//! Records are read through the typed schema ([`StepRecord`],
//! [`PipelineRecord`]), never by string key; a file that is not a step record
//! (a repair or restore record, a signature envelope, a damaged file) is
//! skipped, as `cordon verify` is where damage is reported. So `latest`
//! never names a damaged record; a command that then verifies the run it
//! names still judges the whole chain.

use crate::pipeline::PipelineRecord;
use crate::record::{StepRecord, is_repair_record};
use std::path::{Path, PathBuf};

/// The word that names the newest run wherever a run id is taken.
pub const LATEST: &str = "latest";

/// How a command line names a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunName<'a> {
    /// An exact run id, used as given.
    Id(&'a str),
    /// `latest`: the newest run.
    Latest,
    /// `latest:STEP`: the newest run of step STEP (for a pipeline run, the
    /// newest pipeline run that had a step STEP).
    LatestOf(&'a str),
}

impl<'a> RunName<'a> {
    /// Reads `latest`, `latest:STEP`, or else an exact id.
    pub fn parse(name: &'a str) -> RunName<'a> {
        match name.split_once(':') {
            _ if name == LATEST => RunName::Latest,
            Some((LATEST, step)) => RunName::LatestOf(step),
            _ => RunName::Id(name),
        }
    }
}

/// Why `latest` or `latest:STEP` names no run. Each says where it looked.
#[derive(Debug, thiserror::Error)]
pub enum RunLookupError {
    /// No step record at all.
    #[error("no run is recorded in {}, so `latest` names none\n  fix: run a step first, or name the state directory that holds the records with --state", .0.display())]
    NoRun(PathBuf),
    /// No step record of that step.
    #[error("no run of step `{step}` is recorded in {}{}\n  fix: check the step's name (as in its manifest's [step] name), or name the state directory that holds its records with --state", dir.display(), known_steps(.known))]
    NoRunOfStep {
        /// The step asked for.
        step: String,
        /// The records directory searched.
        dir: PathBuf,
        /// The steps that have runs there.
        known: Vec<String>,
    },
    /// No pipeline record at all.
    #[error("no pipeline run is recorded in {}, so `latest` names none\n  fix: run a pipeline first, or name the state directory that holds its records with --state", .0.display())]
    NoPipelineRun(PathBuf),
    /// No pipeline record with a step of that name.
    #[error("no pipeline run with a step `{step}` is recorded in {}{}\n  fix: check the step's name (as in the pipeline file), or name the state directory that holds the pipeline's records with --state", dir.display(), known_steps(.known))]
    NoPipelineRunOfStep {
        /// The step asked for.
        step: String,
        /// The pipelines directory searched.
        dir: PathBuf,
        /// The steps that pipeline runs there had.
        known: Vec<String>,
    },
    /// The directory could not be listed.
    #[error("cannot list {}: {source}", dir.display())]
    Io {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

fn known_steps(known: &[String]) -> String {
    if known.is_empty() {
        return String::new();
    }
    // Step names come from record files anyone who can write the state
    // directory can edit.
    let names: Vec<String> = known
        .iter()
        .map(|s| format!("`{}`", cordon_core::sanitize::escape_for_terminal(s)))
        .collect();
    format!(" (it has runs of {})", names.join(", "))
}

/// The `.json` files of `dir` (not signature envelopes), newest first: ids
/// start with the UTC start time, so names sort by time. A missing
/// directory holds none.
fn newest_first(dir: &Path) -> Result<Vec<PathBuf>, RunLookupError> {
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().is_some_and(|x| x == "json")
                    && !p.to_string_lossy().ends_with(".dsse.json")
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(source) => {
            return Err(RunLookupError::Io {
                dir: dir.to_path_buf(),
                source,
            });
        }
    };
    paths.sort();
    paths.reverse();
    Ok(paths)
}

/// Reads the documents of `dir` newest first (each capped and typed; one
/// that `keep` refuses or that does not read is passed over) and returns
/// the id of the first that has a step `want` (any, without `want`);
/// when none has, the step names the others had.
fn newest_with_step<R: serde::de::DeserializeOwned>(
    dir: &Path,
    want: Option<&str>,
    keep: impl Fn(&[u8]) -> bool,
    steps: impl Fn(&R) -> Vec<String>,
    id: impl Fn(R) -> String,
) -> Result<Result<String, Vec<String>>, RunLookupError> {
    let mut known: Vec<String> = Vec::new();
    for path in newest_first(dir)? {
        let Some(doc) = cordon_core::fsutil::read_regular(&path, crate::record::MAX_RECORD_BYTES)
            .ok()
            .filter(|b| keep(b))
            .and_then(|b| serde_json::from_slice::<R>(&b).ok())
        else {
            continue;
        };
        let names = steps(&doc);
        match want {
            Some(step) if !names.iter().any(|n| n == step) => {
                for n in names {
                    if !known.contains(&n) {
                        known.push(n);
                    }
                }
            }
            // An id read from a file becomes a path later: only a run id
            // as the runner makes them is named.
            _ => {
                let id = id(doc);
                if crate::chain::is_run_id(&id) {
                    return Ok(Ok(id));
                }
            }
        }
    }
    Ok(Err(known))
}

/// The step-run id `name` means in `records_dir`: an exact id as given
/// (whether it exists is the command's to check, with its own message),
/// `latest` the newest step record, `latest:STEP` the newest record of step
/// STEP. Reads records newest first and stops at the first that fits.
pub fn resolve_run(records_dir: &Path, name: &str) -> Result<String, RunLookupError> {
    let want = match RunName::parse(name) {
        RunName::Id(id) => return Ok(id.to_string()),
        RunName::Latest => None,
        RunName::LatestOf(step) => Some(step),
    };
    let found = newest_with_step(
        records_dir,
        want,
        |b| !is_repair_record(b),
        |r: &StepRecord| vec![r.step.clone()],
        |r| r.run_id,
    )?;
    let mut known = match found {
        Ok(id) => return Ok(id),
        Err(known) => known,
    };
    known.sort();
    Err(match want {
        None => RunLookupError::NoRun(records_dir.to_path_buf()),
        Some(step) => RunLookupError::NoRunOfStep {
            step: step.to_string(),
            dir: records_dir.to_path_buf(),
            known,
        },
    })
}

/// The pipeline-run id `name` means in `pipelines_dir`: an exact id as
/// given, `latest` the newest pipeline record, `latest:STEP` the newest
/// pipeline run that had a step STEP.
pub fn resolve_pipeline_run(pipelines_dir: &Path, name: &str) -> Result<String, RunLookupError> {
    let want = match RunName::parse(name) {
        RunName::Id(id) => return Ok(id.to_string()),
        RunName::Latest => None,
        RunName::LatestOf(step) => Some(step),
    };
    let found = newest_with_step(
        pipelines_dir,
        want,
        |_| true,
        |r: &PipelineRecord| r.steps.iter().map(|s| s.name.clone()).collect(),
        |r| r.run_id,
    )?;
    let mut known = match found {
        Ok(id) => return Ok(id),
        Err(known) => known,
    };
    known.sort();
    Err(match want {
        None => RunLookupError::NoPipelineRun(pipelines_dir.to_path_buf()),
        Some(step) => RunLookupError::NoPipelineRunOfStep {
            step: step.to_string(),
            dir: pipelines_dir.to_path_buf(),
            known,
        },
    })
}

/// Every step record under `records_dir`, oldest first (run ids start with
/// the UTC start time, so names sort by time). A missing directory holds
/// none; one that cannot be listed is an error.
pub fn step_records(records_dir: &Path) -> std::io::Result<Vec<(PathBuf, StepRecord)>> {
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(records_dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().is_some_and(|x| x == "json")
                    && !p.to_string_lossy().ends_with(".dsse.json")
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    paths.sort();
    Ok(paths
        .into_iter()
        .filter_map(|path| {
            let bytes = std::fs::read(&path).ok()?;
            if is_repair_record(&bytes) {
                return None;
            }
            let record = serde_json::from_slice::<StepRecord>(&bytes).ok()?;
            Some((path, record))
        })
        .collect())
}

/// One run that was granted a secret.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretUsage {
    /// The record's run id.
    pub run_id: String,
    /// The step.
    pub step: String,
    /// The environment.
    pub environment: String,
    /// The provider that supplied it.
    pub provider: String,
    /// The provider's version, when it has one.
    pub version: Option<String>,
    /// Successful operations, `use=count` (empty if the step never used it).
    pub used: Vec<(String, u64)>,
    /// Refused operations, `use=count`.
    pub denied: Vec<(String, u64)>,
    /// When the run started.
    pub started_at: String,
    /// The record file.
    pub record: PathBuf,
}

/// Every run recorded under `records_dir` that was granted `name` (at
/// `version`, if given), oldest first. Records hold names and versions
/// only, never values.
pub fn runs_using(
    records_dir: &Path,
    name: &str,
    version: Option<&str>,
) -> std::io::Result<Vec<SecretUsage>> {
    Ok(step_records(records_dir)?
        .into_iter()
        .filter_map(|(path, rec)| {
            let s = rec.secrets.get(name)?;
            if version.is_some() && s.version.as_deref() != version {
                return None;
            }
            Some(SecretUsage {
                provider: s.provider.clone(),
                version: s.version.clone(),
                used: s.used.iter().map(|(k, v)| (k.clone(), *v)).collect(),
                denied: s.denied.iter().map(|(k, v)| (k.clone(), *v)).collect(),
                run_id: rec.run_id,
                step: rec.step,
                environment: rec.environment,
                started_at: rec.started_at,
                record: path,
            })
        })
        .collect())
}

/// One run that went ahead despite policy violations.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakGlassRun {
    /// The record's run id.
    pub run_id: String,
    /// The step.
    pub step: String,
    /// The environment.
    pub environment: String,
    /// When the run started.
    pub started_at: String,
    /// The rules it overrode.
    pub overridden: Vec<String>,
    /// The justification given.
    pub justification: String,
    /// The record file.
    pub record: PathBuf,
}

/// Every run recorded under `records_dir` whose policy decision was
/// `break-glass`, oldest first.
pub fn break_glass_runs(records_dir: &Path) -> std::io::Result<Vec<BreakGlassRun>> {
    Ok(step_records(records_dir)?
        .into_iter()
        .filter_map(|(path, rec)| {
            let policy = rec.policy?;
            (policy.decision == "break-glass").then(|| BreakGlassRun {
                overridden: policy.overridden.into_iter().map(|v| v.rule).collect(),
                justification: policy.justification.unwrap_or_default(),
                run_id: rec.run_id,
                step: rec.step,
                environment: rec.environment,
                started_at: rec.started_at,
                record: path,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A minimal complete step record, as a runner writes one.
    fn record(id: &str, secrets: serde_json::Value, policy: serde_json::Value) -> String {
        let digest = format!("sha256:{}", "a".repeat(64));
        let stream = json!({
            "sha256": digest, "bytes_written": 0, "bytes_captured": 0,
            "truncated": false, "redacted": false,
        });
        let mut r = json!({
            "format": crate::record::RECORD_FORMAT, "run_id": id, "step": "s",
            "environment": "dev",
            "runner": {"name": "cordon", "version": "0", "sandbox": "x"},
            "manifest": {"path": "/m.toml", "sha256": digest},
            "component": {"path": "/c.wasm", "sha256": digest},
            "args": [], "env": {}, "mounts": [], "secrets": secrets,
            "limits": cordon_manifest::manifest::Limits::default(),
            "stdout": stream, "stderr": stream,
            "termination": {"kind": "exited", "code": 0}, "success": true,
            "outputs": "no-outputs", "started_at": "t", "finished_at": "t",
        });
        if !policy.is_null() {
            r["policy"] = policy;
        }
        r.to_string()
    }

    #[test]
    fn finds_runs_by_secret_name_and_version_through_the_typed_record() {
        let d = tempfile::tempdir().unwrap();
        let granted = |version: &str| {
            json!({"k": {"provider": "local", "version": version, "granted_uses": ["hmac"],
                         "opened": 1, "used": {"hmac": 2}, "denied": {}}})
        };
        std::fs::write(
            d.path().join("1.json"),
            record("1", granted("1"), json!(null)),
        )
        .unwrap();
        std::fs::write(
            d.path().join("2.json"),
            record("2", granted("2"), json!(null)),
        )
        .unwrap();
        std::fs::write(d.path().join("junk.json"), "not json").unwrap();
        // A document that merely has a `secrets` key is not a record.
        std::fs::write(
            d.path().join("0.json"),
            json!({"secrets": {"k": {"provider": "forged"}}}).to_string(),
        )
        .unwrap();
        assert_eq!(runs_using(d.path(), "k", None).unwrap().len(), 2);
        let v2 = runs_using(d.path(), "k", Some("2")).unwrap();
        assert_eq!(v2.len(), 1);
        assert_eq!(v2[0].run_id, "2");
        assert_eq!(v2[0].used, vec![("hmac".to_string(), 2)]);
        assert!(runs_using(d.path(), "other", None).unwrap().is_empty());
        assert!(
            runs_using(&d.path().join("none"), "k", None)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn lists_break_glass_runs_with_their_overridden_rules() {
        let d = tempfile::tempdir().unwrap();
        let policy = |decision: &str| {
            json!({"decision": decision, "input_version": 1, "files": [], "disabled_rules": [],
                   "justification": "outage", "overridden": [
                       {"rule": "mount-purpose", "message": "m", "source": "builtin"}]})
        };
        std::fs::write(
            d.path().join("1.json"),
            record("1", json!({}), policy("allow")),
        )
        .unwrap();
        std::fs::write(
            d.path().join("2.json"),
            record("2", json!({}), policy("break-glass")),
        )
        .unwrap();
        let runs = break_glass_runs(d.path()).unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].run_id, "2");
        assert_eq!(runs[0].overridden, vec!["mount-purpose".to_string()]);
        assert_eq!(runs[0].justification, "outage");
    }

    /// A step record of `step` with id `id`.
    fn run_of(id: &str, step: &str) -> String {
        let mut r: serde_json::Value =
            serde_json::from_str(&record(id, json!({}), json!(null))).unwrap();
        r["step"] = json!(step);
        r.to_string()
    }

    #[test]
    fn latest_names_the_newest_run_and_latest_step_the_newest_run_of_that_step() {
        let d = tempfile::tempdir().unwrap();
        let w = |name: &str, text: &str| std::fs::write(d.path().join(name), text).unwrap();
        w(
            "20260101T000001Z-a.json",
            &run_of("20260101T000001Z-a", "a"),
        );
        w(
            "20260101T000002Z-b.json",
            &run_of("20260101T000002Z-b", "b"),
        );
        w(
            "20260101T000003Z-a.json",
            &run_of("20260101T000003Z-a", "a"),
        );
        // Newer than every run, but not a step record: never `latest`.
        w("20260101T000004Z-b.dsse.json", "{}");
        w("20260101T000005Z-junk.json", "not json");
        w(
            "20260101T000006Z-repair.json",
            &json!({"format": crate::record::REPAIR_FORMAT}).to_string(),
        );
        assert_eq!(
            resolve_run(d.path(), "latest").unwrap(),
            "20260101T000003Z-a"
        );
        assert_eq!(
            resolve_run(d.path(), "latest:b").unwrap(),
            "20260101T000002Z-b"
        );
        assert_eq!(
            resolve_run(d.path(), "latest:a").unwrap(),
            "20260101T000003Z-a"
        );
        // An exact id is the command's to look up, with its own message.
        assert_eq!(resolve_run(d.path(), "some-id").unwrap(), "some-id");
        assert_eq!(
            resolve_run(d.path(), "latest:c").unwrap_err().to_string(),
            format!(
                "no run of step `c` is recorded in {} (it has runs of `a`, `b`)\n  fix: check the step's name (as in its manifest's [step] name), or name the state directory that holds its records with --state",
                d.path().display()
            )
        );
        let none = d.path().join("none");
        assert_eq!(
            resolve_run(&none, "latest").unwrap_err().to_string(),
            format!(
                "no run is recorded in {}, so `latest` names none\n  fix: run a step first, or name the state directory that holds the records with --state",
                none.display()
            )
        );
    }

    #[test]
    fn latest_pipeline_run_is_the_newest_and_latest_step_the_newest_that_ran_it() {
        use crate::pipeline::{PIPELINE_RECORD_FORMAT, PipelineStep, StepStatus};
        let d = tempfile::tempdir().unwrap();
        let write = |id: &str, steps: &[&str]| {
            let r = PipelineRecord {
                format: PIPELINE_RECORD_FORMAT.into(),
                run_id: id.into(),
                pipeline: "p".into(),
                file: crate::record::FileRef {
                    path: "/w/pipeline.toml".into(),
                    sha256: cordon_core::digest::Sha256Digest::of(b"p"),
                },
                environment: "dev".into(),
                success: true,
                duration_ms: 1,
                steps: steps
                    .iter()
                    .map(|s| PipelineStep {
                        name: s.to_string(),
                        status: StepStatus::Succeeded,
                        duration_ms: 0,
                        run_id: None,
                        record: None,
                        cache_hit: false,
                        metrics: None,
                        message: None,
                    })
                    .collect(),
                datasets: vec![],
                artifacts: vec![],
                policy: None,
                finished_at: "t".into(),
            };
            std::fs::write(d.path().join(format!("{id}.json")), r.to_bytes()).unwrap();
        };
        write("20260101T000001Z-p", &["prepare", "train"]);
        write("20260101T000002Z-p", &["prepare"]);
        std::fs::write(d.path().join("20260101T000003Z-p.json"), "damaged").unwrap();
        assert_eq!(
            resolve_pipeline_run(d.path(), "latest").unwrap(),
            "20260101T000002Z-p"
        );
        assert_eq!(
            resolve_pipeline_run(d.path(), "latest:train").unwrap(),
            "20260101T000001Z-p"
        );
        assert!(matches!(
            resolve_pipeline_run(d.path(), "latest:deploy").unwrap_err(),
            RunLookupError::NoPipelineRunOfStep { ref known, .. } if known == &["prepare", "train"]
        ));
        let none = d.path().join("none");
        assert_eq!(
            resolve_pipeline_run(&none, "latest")
                .unwrap_err()
                .to_string(),
            format!(
                "no pipeline run is recorded in {}, so `latest` names none\n  fix: run a pipeline first, or name the state directory that holds its records with --state",
                none.display()
            )
        );
    }
}
