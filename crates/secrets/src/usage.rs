//! Which runs used a secret (version): the first question after a leak.
//!
//! Reads the execution records under `<state>/records/` and lists those
//! whose `secrets` table names the secret. It reads names and versions
//! only; records never hold values.

use std::path::{Path, PathBuf};

/// One run that was granted the secret.
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
/// `version`, if given), oldest first. A file that is not a record is
/// skipped; an unreadable directory is an error.
pub fn runs_using(
    records_dir: &Path,
    name: &str,
    version: Option<&str>,
) -> std::io::Result<Vec<SecretUsage>> {
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(records_dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    // Run ids start with the UTC start time, so names sort by time.
    paths.sort();
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let counts = |v: &serde_json::Value| -> Vec<(String, u64)> {
        v.as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for path in paths {
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let Ok(rec) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            continue;
        };
        let Some(s) = rec.get("secrets").and_then(|s| s.get(name)) else {
            continue;
        };
        let v = s
            .get("version")
            .and_then(|v| v.as_str())
            .map(str::to_string);
        if version.is_some() && v.as_deref() != version {
            continue;
        }
        out.push(SecretUsage {
            run_id: text(&rec["run_id"]),
            step: text(&rec["step"]),
            environment: text(&rec["environment"]),
            provider: text(&s["provider"]),
            version: v,
            used: counts(&s["used"]),
            denied: counts(&s["denied"]),
            started_at: text(&rec["started_at"]),
            record: path,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_runs_by_name_and_version() {
        let d = tempfile::tempdir().unwrap();
        let rec = |id: &str, version: &str| {
            serde_json::json!({
                "run_id": id, "step": "s", "environment": "dev", "started_at": "t",
                "secrets": { "k": { "provider": "local", "version": version, "used": { "hmac": 2 }, "denied": {} } }
            })
        };
        std::fs::write(d.path().join("1.json"), rec("1", "1").to_string()).unwrap();
        std::fs::write(d.path().join("2.json"), rec("2", "2").to_string()).unwrap();
        std::fs::write(d.path().join("junk.json"), "not json").unwrap();
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
}
