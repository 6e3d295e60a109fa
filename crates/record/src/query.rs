//! Questions asked of a state directory's records: which runs used a
//! secret (version) — the first question after a leak — and which runs went
//! ahead by break-glass. Records are read through the typed schema
//! ([`StepRecord`]), never by string key; a file that is not a step record
//! (a repair record, a signature envelope, a damaged file) is skipped, as
//! `cordon verify` is where damage is reported.

use crate::record::{StepRecord, is_repair_record};
use std::path::{Path, PathBuf};

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
}
