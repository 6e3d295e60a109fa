//! Promotion policy: Rego rules over an artifact's verified provenance,
//! which `cordon promote` evaluates for the *target* environment before an
//! artifact crosses into it.
//!
//! The input document (versioned, [`INPUT_VERSION`]; see
//! `docs/promotion.md`) is built here from typed records only: the source
//! and target environments, the target's `[env.NAME.promotion]` settings,
//! the pipeline run, the artifact, the source datasets its lineage reaches,
//! and every step of that lineage with its component and manifest digests,
//! success, reproducibility, float semantics, the policy decision it ran
//! under and its approval by the target's reviewers. The default pack
//! ([`DEFAULT_PACK`], package `cordon.promotion`) is always evaluated; the
//! target adds its own files. Chain and signature checks are not policy:
//! the engine refuses a provenance that does not verify whatever the rules
//! say.

use crate::approval;
use crate::policy::{PolicyError, evaluate_sources};
use cordon_manifest::config::EnvConfig;
use cordon_record::pipeline::{Dataset, PipelineRecord};
use cordon_record::record::StepRecord;
use cordon_record::run::{PolicyFile, Violation};
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// The version of the promotion input document. Changes that remove or
/// rename fields raise it; additions do not.
pub const INPUT_VERSION: u32 = 1;

/// The default promotion pack.
pub const DEFAULT_PACK: &str = include_str!("../policy/promotion.rego");

/// The name under which the default promotion pack appears in VSAs and
/// reports.
pub const DEFAULT_PACK_NAME: &str = "builtin:cordon/promotion.rego";

/// The artifact being promoted.
#[derive(Debug, Clone)]
pub struct ArtifactRef<'a> {
    /// The step that produced it.
    pub step: &'a str,
    /// Its guest path in that step.
    pub guest: &'a str,
    /// Its tree digest.
    pub sha256: &'a cordon_core::digest::Sha256Digest,
}

/// What a promotion is judged on: already verified records.
pub struct Provenance<'a> {
    /// The environment the artifact comes from.
    pub source: &'a str,
    /// The environment it goes to (whose settings and reviewers count).
    pub target: &'a EnvConfig,
    /// The pipeline run.
    pub pipeline: &'a PipelineRecord,
    /// The artifact.
    pub artifact: ArtifactRef<'a>,
    /// The source datasets its lineage reaches.
    pub datasets: Vec<&'a Dataset>,
    /// Every step record of its lineage, producer first.
    pub steps: Vec<&'a StepRecord>,
    /// Runs re-executed with identical outputs (by run id).
    pub reexecuted: BTreeSet<String>,
}

/// Builds the input document, checking each step's approval against the
/// target environment's reviewer keys.
pub fn input(p: &Provenance<'_>) -> Result<Value, PolicyError> {
    let reviewers = p
        .target
        .policy
        .reviewers
        .iter()
        .map(|k| cordon_record::attest::TrustedKey::load(k))
        .collect::<Result<Vec<_>, _>>()?;
    let promo = &p.target.promotion;
    let steps: Vec<Value> = p
        .steps
        .iter()
        .map(|r| {
            let approval = approval::status_of(
                &r.manifest.path,
                &r.manifest.sha256,
                &r.component.sha256,
                &reviewers,
            );
            let policy = match &r.policy {
                Some(d) => json!({
                    "decision": d.decision,
                    "justification": d.justification,
                    "overridden": d.overridden.len(),
                    "files": d.files,
                }),
                None => json!({"decision": null, "justification": null, "overridden": 0, "files": []}),
            };
            json!({
                "name": r.step,
                "run_id": r.run_id,
                "environment": r.environment,
                "success": r.success,
                "cache_hit": r.cache.hit,
                "component": {"digest": r.component.sha256.to_string()},
                "manifest": {"path": r.manifest.path.display().to_string(), "sha256": r.manifest.sha256.hex()},
                "reproducible": r.reproducibility.reproducible,
                "reexecuted": p.reexecuted.contains(&r.run_id),
                "floats": if r.reproducibility.nan_canonicalization { "canonical" } else { "native" },
                "policy": policy,
                "approval": approval,
                "secrets": r.secrets.keys().collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(json!({
        "version": INPUT_VERSION,
        "source": {"name": p.source},
        "target": {
            "name": p.target.name,
            "protected": p.target.protected,
            "reviewers": reviewers.len(),
        },
        "promotion": {
            "required_steps": promo.required_steps,
            "classifications": promo.classifications,
            "break_glass": promo.break_glass,
            "native_floats": promo.native_floats,
        },
        "pipeline": {
            "run_id": p.pipeline.run_id,
            "name": p.pipeline.pipeline,
            "environment": p.pipeline.environment,
            "success": p.pipeline.success,
        },
        "artifact": {
            "step": p.artifact.step,
            "guest": p.artifact.guest,
            "sha256": p.artifact.sha256.to_string(),
        },
        "datasets": p.datasets.iter().map(|d| json!({
            "step": d.step,
            "guest": d.guest,
            "host": d.host.display().to_string(),
            "sha256": d.sha256.to_string(),
            "classification": d.classification,
        })).collect::<Vec<_>>(),
        "steps": steps,
    }))
}

/// The result of evaluating promotion policy.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// Every file evaluated, by digest (the default pack first).
    pub files: Vec<PolicyFile>,
    /// What broke.
    pub violations: Vec<Violation>,
    /// The input document.
    pub input: Value,
}

/// Evaluates the default promotion pack and `target`'s own promotion
/// files over `input`.
pub fn evaluate(target: &EnvConfig, input: Value) -> Result<Evaluation, PolicyError> {
    let mut sources = vec![(DEFAULT_PACK_NAME.to_string(), DEFAULT_PACK.to_string())];
    for f in &target.promotion.policy {
        let text = std::fs::read_to_string(f).map_err(|e| PolicyError::Load {
            path: f.display().to_string(),
            message: format!("cannot read: {e}"),
        })?;
        sources.push((f.display().to_string(), text));
    }
    let (files, violations) =
        evaluate_sources(&sources, &input.to_string(), DEFAULT_PACK_NAME, &[])?;
    Ok(Evaluation {
        files,
        violations,
        input,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(protected: bool) -> EnvConfig {
        let mut e = cordon_manifest::config::WorkspaceConfig::implicit(std::path::Path::new("."))
            .envs
            .remove("dev")
            .unwrap();
        e.name = "prod".into();
        e.protected = protected;
        e
    }

    fn doc(step: Value, promotion: Value, protected: bool) -> Value {
        json!({
            "version": 1,
            "source": {"name": "dev"},
            "target": {"name": "prod", "protected": protected, "reviewers": 0},
            "promotion": promotion,
            "pipeline": {"run_id": "p", "name": "n", "environment": "dev", "success": true},
            "artifact": {"step": "train", "guest": "/out", "sha256": "sha256:00"},
            "datasets": [{"step": "train", "guest": "/in", "host": "/d/raw", "sha256": "sha256:11", "classification": "confidential"}],
            "steps": [step],
        })
    }

    fn step() -> Value {
        json!({
            "name": "train", "run_id": "r", "environment": "dev", "success": true, "cache_hit": false,
            "component": {"digest": "sha256:22"}, "manifest": {"path": "/w/train.toml", "sha256": "33"},
            "reproducible": true, "reexecuted": false, "floats": "canonical",
            "policy": {"decision": "allow", "justification": null, "overridden": 0, "files": []},
            "approval": {"approved": false, "reviewers": [], "problems": ["no approvals"]},
            "secrets": [],
        })
    }

    fn rules(e: &Evaluation) -> Vec<&str> {
        e.violations.iter().map(|v| v.rule.as_str()).collect()
    }

    fn settings() -> Value {
        json!({"required_steps": [], "classifications": [], "break_glass": false, "native_floats": false})
    }

    #[test]
    fn a_clean_provenance_passes_an_unprotected_target() {
        let e = evaluate(&target(false), doc(step(), settings(), false)).unwrap();
        assert!(e.violations.is_empty(), "{:?}", e.violations);
        assert_eq!(e.files[0].path, DEFAULT_PACK_NAME);
    }

    #[test]
    fn each_default_rule_names_what_the_provenance_lacks() {
        let mut s = step();
        s["reproducible"] = json!(false);
        s["floats"] = json!("native");
        s["policy"]["decision"] = json!("break-glass");
        s["policy"]["justification"] = json!("incident 7");
        s["success"] = json!(false);
        let promo = json!({"required_steps": ["evaluate"], "classifications": ["internal"], "break_glass": false, "native_floats": false});
        let e = evaluate(&target(true), doc(s.clone(), promo, true)).unwrap();
        let mut got = rules(&e);
        got.sort();
        assert_eq!(
            got,
            [
                "promotion-approval",
                "promotion-break-glass",
                "promotion-classification",
                "promotion-native-floats",
                "promotion-reproducible",
                "promotion-required-steps",
                "promotion-step-succeeded",
            ]
        );
        // The settings of the target loosen exactly their rules.
        s["success"] = json!(true);
        s["reexecuted"] = json!(true);
        let promo = json!({"required_steps": [], "classifications": [], "break_glass": true, "native_floats": true});
        let e = evaluate(&target(true), doc(s, promo, true)).unwrap();
        assert_eq!(rules(&e), ["promotion-approval"]);
    }

    #[test]
    fn a_step_without_a_policy_decision_is_refused() {
        let mut s = step();
        s["policy"]["decision"] = Value::Null;
        let e = evaluate(&target(false), doc(s, settings(), false)).unwrap();
        assert_eq!(rules(&e), ["promotion-policy-decision"]);
    }
}
