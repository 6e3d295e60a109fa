//! Records: step records, repair records and pipeline records, as a
//! verifier, `card`, `posture` or a `--step` run on another machine reads
//! them from a state directory or a shared bucket; and the in-toto
//! statement rebuilt from a record's bytes, which `verify` compares with
//! the signed one.

use crate::mutate;
use cordon_manifest::manifest::Sha256Digest;
use cordon_record::attest::{self, StatementForm};
use cordon_record::pipeline::PipelineRecord;
use cordon_record::record::{RepairRecord, StepRecord};
use proptest::prelude::*;
use serde_json::{Value, json};

fn d(s: &str) -> String {
    Sha256Digest::of(s.as_bytes()).to_string()
}

/// A step record with every optional part: mounts with trees, secrets,
/// network calls, metrics, a policy decision, a chain link and a signer.
pub fn step_record() -> Value {
    let stream = json!({"sha256": d(""), "bytes_written": 3, "bytes_captured": 3,
                        "truncated": false, "redacted": true, "escaped": false});
    let tree = json!({"sha256": d("tree"), "files": 1, "bytes": 2, "entries": [
        {"path": "model.json", "file": null, "size": 2, "sha256": Sha256Digest::of(b"{}").hex()},
        {"path": "sub", "dir": null, "size": 0},
        {"path": "link", "symlink": {"target": "model.json"}, "size": 0},
    ]});
    json!({
        "format": cordon_record::record::RECORD_FORMAT,
        "run_id": "20260101T000000.000Z-train-0123abcd",
        "step": "train",
        "environment": "dev",
        "runner": {"name": "cordon", "version": "0.1.0", "sandbox": "wasmtime 48"},
        "manifest": {"path": "/w/steps/train.toml", "sha256": d("manifest")},
        "component": {"path": "/w/train.wasm", "sha256": d("component")},
        "compiled_from_cache": true,
        "args": ["train", "--epochs", "4"],
        "env": {"MODE": "fast"},
        "mounts": [
            {"guest": "/in", "host": "/w/data/in", "access": "read", "purpose": "features",
             "classification": "internal", "before": tree},
            {"guest": "/out", "host": "/w/data/out", "access": "write", "purpose": "model",
             "after": tree},
        ],
        "secrets": {"api-token": {"provider": "vault", "version": "3", "granted_uses": ["http-header"],
                                  "opened": 1, "used": {"http-header": 1}, "denied": {}}},
        "secrets_not_granted": {"other": 2},
        "network": [{"method": "POST", "url": "https://api.example.com/v1/x?token=REDACTED",
                     "outcome": "refused", "reason": "not granted", "bytes_sent": 0,
                     "bytes_received": 0, "duration_ms": 1, "secrets": []}],
        "limits": cordon_manifest::manifest::Limits::default(),
        "usage": {"fuel": 10, "peak_memory": 65536, "wall_ms": 3, "output_bytes": 2},
        "stdout": stream,
        "stderr": stream,
        "report": {"metrics": {"loss": 0.25, "accuracy": 1e-300}, "annotations": {"note": "ok"},
                   "dropped": 0},
        "termination": {"kind": "exited", "code": 0},
        "success": true,
        "outputs": "published",
        "cache": {"key": d("key"), "hit": false},
        "started_at": "2026-01-01T00:00:00Z",
        "finished_at": "2026-01-01T00:00:01Z",
        "reproducibility": {"reproducible": true, "clock": "fixed", "fixed_clock_unix_s": 1,
                            "random": "seeded", "seed": "00"},
        "policy": {"decision": "break-glass", "input_version": 1,
                   "files": [{"path": "default", "sha256": Sha256Digest::of(b"p").hex()}],
                   "disabled_rules": [], "justification": "incident 7",
                   "overridden": [{"rule": "r", "message": "m", "source": "default"}]},
        "chain": {"sequence": 2, "previous": d("prev")},
        "signed_by": {"keyid": "ab".repeat(32), "holder": "local-store"},
    })
}

fn repair_record() -> Value {
    json!({
        "format": cordon_record::record::REPAIR_FORMAT,
        "run_id": "20260101T000000.000Z-repair-0123abcd",
        "environment": "dev",
        "runner": {"name": "cordon", "version": "0.1.0", "sandbox": "wasmtime 48"},
        "repaired_at": "2026-01-01T00:00:00Z",
        "actions": ["rolled back run r"],
        "chain": {"sequence": 3, "previous": d("prev")},
    })
}

fn pipeline_record() -> Value {
    json!({
        "format": cordon_record::pipeline::PIPELINE_RECORD_FORMAT,
        "run_id": "20260101T000000.000Z-pipeline-0123abcd",
        "pipeline": "churn-model",
        "file": {"path": "/w/pipeline.toml", "sha256": d("pipeline")},
        "environment": "dev",
        "success": false,
        "duration_ms": 12,
        "steps": [
            {"name": "train", "status": "succeeded", "duration_ms": 5, "run_id": "r1",
             "record": "/s/records/r1.json", "cache_hit": false, "metrics": {"loss": 0.5, "nan": null},
             "message": null},
            {"name": "sign", "status": "skipped", "duration_ms": 0, "run_id": null, "record": null,
             "cache_hit": false, "metrics": null, "message": "a dependency failed"},
        ],
        "datasets": [{"step": "train", "guest": "/in", "host": "/w/in", "sha256": d("in"),
                      "files": 1, "bytes": 2, "classification": "internal"}],
        "artifacts": [{"step": "train", "guest": "/out", "host": "/w/out", "sha256": d("out"),
                       "files": null}],
        "finished_at": "2026-01-01T00:00:01Z",
    })
}

/// Parse, serialize, parse and serialize again: the second bytes are the
/// first (what a record says survives being written).
fn round_trips<T>(bytes: &[u8], to_bytes: fn(&T) -> Vec<u8>) -> Result<Option<T>, TestCaseError>
where
    T: serde::de::DeserializeOwned,
{
    let Ok(first) = serde_json::from_slice::<T>(bytes) else {
        return Ok(None);
    };
    let written = to_bytes(&first);
    let again: T = serde_json::from_slice(&written)
        .map_err(|e| TestCaseError::fail(format!("a record as written does not read back: {e}")))?;
    let rewritten = to_bytes(&again);
    prop_assert_eq!(
        String::from_utf8_lossy(&rewritten),
        String::from_utf8_lossy(&written)
    );
    Ok(Some(first))
}

#[test]
fn the_seeds_are_valid_records() {
    serde_json::from_value::<StepRecord>(step_record()).unwrap();
    serde_json::from_value::<RepairRecord>(repair_record()).unwrap();
    serde_json::from_value::<PipelineRecord>(pipeline_record()).unwrap();
}

proptest! {
    #![proptest_config(crate::config(256))]

    #[test]
    fn a_mutated_step_record_reads_or_fails_and_round_trips(bytes in mutate::json(step_record())) {
        if let Some(r) = round_trips(&bytes, StepRecord::to_bytes)? {
            let _ = r.termination.describe();
        }
        // The statement a verifier rebuilds from the bytes, in both forms.
        for form in [StatementForm::Current, StatementForm::Legacy] {
            let _ = attest::statement_in(&bytes, form);
        }
        let _ = cordon_record::record::is_repair_record(&bytes);
    }

    #[test]
    fn a_mutated_repair_record_reads_or_fails_and_round_trips(bytes in mutate::json(repair_record())) {
        round_trips(&bytes, RepairRecord::to_bytes)?;
        let _ = cordon_record::record::is_repair_record(&bytes);
        for form in [StatementForm::Current, StatementForm::Legacy] {
            let _ = attest::statement_in(&bytes, form);
        }
    }

    #[test]
    fn a_mutated_pipeline_record_reads_or_fails_and_round_trips(bytes in mutate::json(pipeline_record())) {
        if let Some(r) = round_trips(&bytes, PipelineRecord::to_bytes)? {
            let again: PipelineRecord = serde_json::from_slice(&r.to_bytes()).unwrap();
            prop_assert_eq!(again, r);
        }
    }
}
