//! The pipeline record: one document per pipeline run under
//! `<state>/pipelines/<run-id>.json`, linking the step records of the run
//! with the dataset versions that went in and the artifacts that came out.
//! Typed both ways: the scheduler writes it from these types, and
//! `cordon export in-toto --pipeline-run` reads it back through them. Its
//! strings come from step records already redacted as values, and from the
//! plan.

use crate::record::FileRef;
use crate::run::Decision;
use cordon_core::digest::{Entry, Sha256Digest};
use cordon_manifest::manifest::Classification;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Format identifier of the pipeline record.
pub const PIPELINE_RECORD_FORMAT: &str = "cordon.pipeline-record/v1";

/// Where the record of pipeline run `run_id` lives in `state_dir`.
pub fn pipeline_record_path(state_dir: &Path, run_id: &str) -> PathBuf {
    state_dir.join("pipelines").join(format!("{run_id}.json"))
}

/// Where a step of a pipeline run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepStatus {
    /// Waiting for its dependencies.
    Waiting,
    /// Running now.
    Running,
    /// Ran and succeeded.
    Succeeded,
    /// Served from the action cache.
    Cached,
    /// Ran and failed, or the runner failed running it.
    Failed,
    /// Not run: a dependency failed, `--fail-fast`, or Ctrl-C.
    Skipped,
    /// Stopped by Ctrl-C while running.
    Interrupted,
}

impl StepStatus {
    /// Whether the step's outputs are there: it succeeded or was cached.
    pub fn ok(self) -> bool {
        matches!(self, StepStatus::Succeeded | StepStatus::Cached)
    }

    /// The name records use (`succeeded`, `skipped`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Waiting => "waiting",
            StepStatus::Running => "running",
            StepStatus::Succeeded => "succeeded",
            StepStatus::Cached => "cached",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
            StepStatus::Interrupted => "interrupted",
        }
    }

    /// The word people read.
    pub fn word(self) -> &'static str {
        match self {
            StepStatus::Waiting => "waiting",
            StepStatus::Running => "running",
            StepStatus::Succeeded => "done",
            StepStatus::Cached => "cached",
            StepStatus::Failed => "FAILED",
            StepStatus::Skipped => "skipped",
            StepStatus::Interrupted => "interrupted",
        }
    }
}

/// The name records use.
impl std::fmt::Display for StepStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step of a pipeline run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineStep {
    /// Step name.
    pub name: String,
    /// How it ended.
    pub status: StepStatus,
    /// Wall time, milliseconds.
    pub duration_ms: u64,
    /// The step record's run id (none for a step that never ran).
    pub run_id: Option<String>,
    /// The step record's file.
    pub record: Option<PathBuf>,
    /// Whether it was served from the action cache.
    pub cache_hit: bool,
    /// The metrics the step reported (a `null` one, which runners wrote
    /// for NaN before refusing it, is read as absent).
    #[serde(default, deserialize_with = "crate::run::deserialize_finite_metrics")]
    pub metrics: Option<BTreeMap<String, f64>>,
    /// Why it failed or was skipped.
    pub message: Option<String>,
}

/// An input no step of the pipeline produced: a dataset version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    /// The step that read it.
    pub step: String,
    /// Its guest path in that step.
    pub guest: String,
    /// Its host path.
    pub host: PathBuf,
    /// Its tree digest.
    pub sha256: Sha256Digest,
    /// Regular files.
    pub files: u64,
    /// Bytes of regular files.
    pub bytes: u64,
    /// Data classification.
    pub classification: Option<Classification>,
}

/// An output of a step nothing else depends on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    /// The step that wrote it.
    pub step: String,
    /// Its guest path in that step.
    pub guest: String,
    /// Its host path.
    pub host: PathBuf,
    /// Its tree digest.
    pub sha256: Sha256Digest,
    /// Every entry with its digest.
    pub files: Option<Vec<Entry>>,
}

/// One pipeline run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineRecord {
    /// [`PIPELINE_RECORD_FORMAT`].
    pub format: String,
    /// Pipeline run id.
    pub run_id: String,
    /// Pipeline name.
    pub pipeline: String,
    /// The pipeline file and its digest.
    pub file: FileRef,
    /// Environment.
    pub environment: String,
    /// Whether every step succeeded or was cached.
    pub success: bool,
    /// Wall time.
    pub duration_ms: u64,
    /// Per step: status, record, metrics.
    pub steps: Vec<PipelineStep>,
    /// Inputs no step of the pipeline produced, with their tree digests.
    pub datasets: Vec<Dataset>,
    /// Outputs of the steps nothing depends on.
    pub artifacts: Vec<Artifact>,
    /// The policy decision the run went ahead under.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub policy: Option<Decision>,
    /// When it finished.
    pub finished_at: String,
}

impl PipelineRecord {
    /// The document's bytes (pretty JSON, newline-terminated).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("pipeline records serialize");
        v.push(b'\n');
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipeline_record_reads_back_as_written() {
        let d = Sha256Digest::of(b"tree");
        let r = PipelineRecord {
            format: PIPELINE_RECORD_FORMAT.into(),
            run_id: "20260101T000000.000000Z-p-00000000".into(),
            pipeline: "p".into(),
            file: FileRef {
                path: "/w/pipeline.toml".into(),
                sha256: d.clone(),
            },
            environment: "dev".into(),
            success: false,
            duration_ms: 3,
            steps: vec![PipelineStep {
                name: "s".into(),
                status: StepStatus::Skipped,
                duration_ms: 0,
                run_id: None,
                record: None,
                cache_hit: false,
                metrics: None,
                message: Some("`a` did not succeed".into()),
            }],
            datasets: vec![Dataset {
                step: "s".into(),
                guest: "/in".into(),
                host: "/w/in".into(),
                sha256: d.clone(),
                files: 1,
                bytes: 2,
                classification: None,
            }],
            artifacts: vec![],
            policy: None,
            finished_at: "t".into(),
        };
        let bytes = r.to_bytes();
        let text = String::from_utf8(bytes.clone()).unwrap();
        // The shape readers of earlier records rely on: absent values are
        // null, statuses are kebab-case words.
        assert!(text.contains("\"run_id\": null") && text.contains("\"status\": \"skipped\""));
        assert_eq!(serde_json::from_slice::<PipelineRecord>(&bytes).unwrap(), r);
        for s in [
            StepStatus::Waiting,
            StepStatus::Running,
            StepStatus::Succeeded,
            StepStatus::Cached,
            StepStatus::Failed,
            StepStatus::Skipped,
            StepStatus::Interrupted,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }
}
