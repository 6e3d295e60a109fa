//! The gate every run passes before anything runs: a clean evaluation lets
//! it through; violations refuse it, unless the environment allows
//! break-glass and the operator gave a justification, in which case it goes
//! ahead and its records carry the justification and every violation
//! overridden. The binary prints what this decides; it decides nothing.

use crate::policy::{Decision, Evaluation, render_text};
use cordon_manifest::config::EnvConfig;

/// Why the gate refused the run. Nothing ran.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GateError {
    /// `--break-glass` was given with an empty justification.
    #[error(
        "--break-glass needs a justification: --break-glass \"why this run cannot wait for a fix\""
    )]
    NoJustification,
    /// Policy found violations and no break-glass was asked for.
    #[error(
        "policy refused the run ({violations} violation{}); nothing ran\n  fix: change the manifests as each violation says{}",
        if *violations == 1 { "" } else { "s" },
        if *break_glass_allowed { ", or in an emergency run with --break-glass \"justification\" (recorded)" } else { "" }
    )]
    Refused {
        /// How many.
        violations: usize,
        /// Whether the environment would accept break-glass.
        break_glass_allowed: bool,
    },
    /// Break-glass was asked for in an environment that does not allow it.
    #[error(
        "environment `{env}` does not allow break-glass; nothing ran\n  fix: fix the violations (break-glass is enabled per environment with `break-glass = true` under [env.{env}.policy] in cordon.toml)"
    )]
    BreakGlassNotAllowed {
        /// The environment.
        env: String,
    },
}

/// What the gate decided, with what the operator must be told.
#[derive(Debug, Clone)]
pub struct Gate {
    /// The decision every record of the run carries.
    pub decision: Decision,
    /// Lines to show first (disabled rules, a needless break-glass), each
    /// without the `cordon: ` prefix.
    pub notices: Vec<String>,
    /// The violations overridden, rendered, when there are any.
    pub report: Option<String>,
    /// Lines to show after the report (the break-glass warnings).
    pub after_report: Vec<String>,
}

/// A refusal, with the violations to show (if there were any).
#[derive(Debug, Clone)]
pub struct Refusal {
    /// Why.
    pub error: GateError,
    /// Lines to show first (disabled rules).
    pub notices: Vec<String>,
    /// The violations, rendered.
    pub report: Option<String>,
}

/// The justification of `--break-glass`, trimmed; an empty one is refused
/// before policy is even evaluated.
pub fn justification(break_glass: Option<&str>) -> Result<Option<&str>, GateError> {
    match break_glass.map(str::trim) {
        Some("") => Err(GateError::NoJustification),
        j => Ok(j),
    }
}

/// Lets the run through, or refuses it, by `evaluation` and the
/// (already checked, see [`justification`]) break-glass justification.
pub fn gate(
    env: &EnvConfig,
    evaluation: &Evaluation,
    justification: Option<&str>,
) -> Result<Gate, Refusal> {
    let mut notices: Vec<String> = evaluation
        .disabled
        .iter()
        .map(|(name, at)| {
            format!(
                "policy: default rule `{name}` is disabled for environment `{}` (cordon.toml {at})",
                env.name
            )
        })
        .collect();
    if evaluation.violations.is_empty() {
        if justification.is_some() {
            notices.push(
                "policy: no violations; --break-glass is not needed and is not recorded".into(),
            );
        }
        return Ok(Gate {
            decision: evaluation.decision(None),
            notices,
            report: None,
            after_report: Vec::new(),
        });
    }
    let report = Some(render_text(evaluation));
    let n = evaluation.violations.len();
    match justification {
        None => Err(Refusal {
            error: GateError::Refused {
                violations: n,
                break_glass_allowed: env.policy.break_glass,
            },
            notices,
            report,
        }),
        Some(_) if !env.policy.break_glass => Err(Refusal {
            error: GateError::BreakGlassNotAllowed {
                env: env.name.clone(),
            },
            notices,
            report,
        }),
        Some(why) => {
            let mut after_report = vec![format!(
                "BREAK-GLASS: running despite {n} policy violation{} in environment `{}`; justification: {why}",
                if n == 1 { "" } else { "s" },
                env.name
            )];
            after_report.push("BREAK-GLASS: the justification and every overridden violation are in the records (`cordon records --break-glass`)".into());
            Ok(Gate {
                decision: evaluation.decision(Some(why)),
                notices,
                report,
                after_report,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Violation;

    fn evaluation(violations: usize) -> Evaluation {
        Evaluation {
            environment: "dev".into(),
            files: vec![],
            disabled: vec![],
            violations: (0..violations)
                .map(|i| Violation {
                    rule: "mount-purpose".into(),
                    step: Some(format!("s{i}")),
                    message: "m".into(),
                    fix: None,
                    source: "builtin".into(),
                    mount: None,
                    secret: None,
                })
                .collect(),
            input: crate::policy::InputDocument::from_value(&serde_json::Value::Null),
        }
    }

    fn env(break_glass: bool) -> EnvConfig {
        let ws = cordon_manifest::config::WorkspaceConfig::implicit(std::path::Path::new("/w"));
        let mut env = ws.envs["dev"].clone();
        env.policy.break_glass = break_glass;
        env
    }

    #[test]
    fn an_empty_justification_is_refused_before_anything_else() {
        assert_eq!(justification(Some("  ")), Err(GateError::NoJustification));
        assert_eq!(justification(Some(" why ")), Ok(Some("why")));
        assert_eq!(justification(None), Ok(None));
    }

    #[test]
    fn a_clean_run_is_allowed_and_break_glass_is_not_recorded() {
        let g = gate(&env(true), &evaluation(0), Some("why")).unwrap();
        assert_eq!(g.decision.decision, "allow");
        assert!(g.decision.justification.is_none());
        assert!(g.notices[0].contains("not needed"));
    }

    #[test]
    fn violations_refuse_the_run_and_say_whether_break_glass_would_help() {
        let r = gate(&env(true), &evaluation(2), None).unwrap_err();
        assert_eq!(
            r.error,
            GateError::Refused {
                violations: 2,
                break_glass_allowed: true
            }
        );
        assert!(r.error.to_string().contains("--break-glass"));
        assert!(r.report.is_some());
        let r = gate(&env(false), &evaluation(1), None).unwrap_err();
        assert!(!r.error.to_string().contains("--break-glass"));
    }

    #[test]
    fn break_glass_needs_an_environment_that_allows_it_and_is_recorded() {
        let r = gate(&env(false), &evaluation(1), Some("outage")).unwrap_err();
        assert!(matches!(r.error, GateError::BreakGlassNotAllowed { .. }));
        let g = gate(&env(true), &evaluation(1), Some("outage")).unwrap();
        assert_eq!(g.decision.decision, "break-glass");
        assert_eq!(g.decision.justification.as_deref(), Some("outage"));
        assert_eq!(g.decision.overridden.len(), 1);
        assert!(g.after_report.iter().all(|n| n.starts_with("BREAK-GLASS")));
        assert_eq!(g.after_report.len(), 2);
    }
}
