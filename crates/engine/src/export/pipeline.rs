//! A whole pipeline run as one in-toto layout: a link per step, and layout
//! steps that follow the lineage, so `in-toto-verify` checks that each step
//! consumed exactly what the step before it produced.
//!
//! The pipeline record (`<state>/pipelines/<id>.json`) is not signed; it is
//! read only for which step records make up the run. Every link is built
//! from a step record that verifies, and whether those records fit
//! together is left to `in-toto-verify` to judge, against the rules below:
//!
//! - **materials** of a step: files in a directory another step of the run
//!   wrote (the same directory, one inside it or one around it, as lineage
//!   orders the pipeline) must equal that step's products (`MATCH <dir>/*
//!   WITH PRODUCTS FROM <step>`, then `DISALLOW <dir>/*` for any that do
//!   not); files of an input no step of the run wrote — a source dataset —
//!   are allowed (`ALLOW <dir>/*`); nothing else (`DISALLOW *`);
//! - **products** of a step: only files inside its write and read-write
//!   mounts (`ALLOW <dir>/*`, then `DISALLOW *`);
//! - the `outputs-on-disk` inspection checks the output directories of
//!   every step, intermediate ones included: every recorded product must
//!   still be there, unchanged, and nothing else may be in them.
//!
//! A step served from the action cache is exported as its own record states
//! it: the outputs it published (restored from the store) as products, and
//! the inputs it saw as materials, their files named from the run whose
//! outputs it reused when its record keeps only tree digests.

use super::rules::{self, Rule};
use super::{Dir, ExportError, ExportRequest, Exported, Run};
use cordon_record::pipeline::PipelineRecord;
use serde_json::Value;

/// Whether `id` can name a file in `<state>/pipelines/` and nothing else.
fn plausible_id(id: &str) -> bool {
    !id.is_empty() && !id.starts_with('.') && !id.contains(['/', '\\', '\0'])
}

fn read_pipeline_record(req: &ExportRequest<'_>, id: &str) -> Result<PipelineRecord, ExportError> {
    let path = crate::scheduler::pipeline_record_path(req.state_dir, id);
    let missing = || {
        ExportError::Refused(format!(
            "no pipeline run `{id}` in {}; the id is the name of its record there without `.json` (`cordon run PIPELINE` prints the path)",
            req.state_dir.join("pipelines").display()
        ))
    };
    if !plausible_id(id) {
        return Err(missing());
    }
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing()),
        Err(e) => {
            return Err(ExportError::Unreadable {
                path,
                message: e.to_string(),
            });
        }
    };
    let view: PipelineRecord =
        serde_json::from_slice(&bytes).map_err(|e| ExportError::Unreadable {
            path: path.clone(),
            message: format!("not a pipeline record: {e}"),
        })?;
    if view.format != crate::scheduler::PIPELINE_RECORD_FORMAT || view.run_id != id {
        return Err(ExportError::Unreadable {
            path,
            message: format!(
                "not the record of pipeline run `{id}` (format {}, run {})",
                view.format, view.run_id
            ),
        });
    }
    Ok(view)
}

/// Exports pipeline run `id` into `req.dir`: one link per step and one
/// layout that follows the lineage. Refuses a run that did not succeed, or
/// one of whose step records does not verify.
pub fn export_pipeline_run(req: &ExportRequest<'_>, id: &str) -> Result<Exported, ExportError> {
    let view = read_pipeline_record(req, id)?;
    if let Some(s) = view.steps.iter().find(|s| s.run_id.is_none()) {
        return Err(ExportError::Refused(format!(
            "step `{}` of pipeline run {id} left no record ({}); only a pipeline run whose every step succeeded has products to attest",
            s.name, s.status
        )));
    }
    if !view.success {
        return Err(ExportError::Refused(format!(
            "pipeline run {id} did not succeed; only a pipeline run whose every step succeeded has products to attest"
        )));
    }
    let mut runs = Vec::new();
    for s in &view.steps {
        let run = super::verified_run(req, s.run_id.as_deref().unwrap_or_default())?;
        if run.step() != s.name || run.record.environment != view.environment {
            return Err(ExportError::Refused(format!(
                "pipeline run {id} names record {} for step `{}` in environment `{}`, but that record is of step `{}` in `{}`",
                run.record.run_id,
                s.name,
                view.environment,
                run.step(),
                run.record.environment
            )));
        }
        runs.push(run);
    }
    let functionary = super::functionary(req, &view.environment)?;
    let steps: Vec<Value> = runs
        .iter()
        .map(|r| {
            super::layout_step(
                r,
                &functionary,
                &material_rules(r, &runs),
                &product_rules(r),
            )
        })
        .collect();
    let refs: Vec<&Run> = runs.iter().collect();
    let layout = super::layout(
        format!(
            "Cordon pipeline run {id} of {} in environment {}",
            view.pipeline, view.environment
        ),
        &functionary,
        steps,
        &refs,
    );
    super::write(req, &functionary, &refs, &layout)
}

/// Where one step's input overlaps another step's output: the files there
/// must be that step's products.
#[derive(Debug, PartialEq, Eq)]
struct Produced<'a> {
    /// The overlap: the deeper of the two directories.
    dir: &'a Dir,
    /// The step that wrote it.
    by: &'a str,
}

/// The material rules of `run` within the pipeline run `runs`.
fn material_rules(run: &Run, runs: &[Run]) -> Vec<Rule> {
    let mut produced: Vec<Produced<'_>> = Vec::new();
    let mut datasets: Vec<&Dir> = Vec::new();
    for input in &run.inputs {
        let mut inside_an_output = false;
        for other in runs.iter().filter(|o| o.step() != run.step()) {
            for out in &other.outputs {
                let dir = if input.host.starts_with(&out.host) {
                    inside_an_output = true;
                    input
                } else if out.host.starts_with(&input.host) {
                    out
                } else {
                    continue;
                };
                let p = Produced {
                    dir,
                    by: other.step(),
                };
                if !produced.contains(&p) {
                    produced.push(p);
                }
            }
        }
        if !inside_an_output {
            datasets.push(input);
        }
    }
    // Deeper first: an enclosing directory's rule must not claim (or
    // refuse) files a deeper one's producer accounts for.
    produced.sort_by(|a, b| {
        b.dir
            .depth()
            .cmp(&a.dir.depth())
            .then(a.dir.name.cmp(&b.dir.name))
    });
    let mut out = Vec::new();
    for p in produced {
        let pattern = rules::under(&p.dir.name);
        out.push(Rule::MatchProducts {
            pattern: pattern.clone(),
            step: p.by.to_string(),
        });
        out.push(Rule::Disallow(pattern));
    }
    for d in datasets {
        out.push(Rule::Allow(rules::under(&d.name)));
    }
    out.push(Rule::Disallow("*".into()));
    out
}

/// The product rules of `run`: its write and read-write mounts, nothing
/// else.
fn product_rules(run: &Run) -> Vec<Rule> {
    let mut out: Vec<Rule> = run
        .outputs
        .iter()
        .map(|d| Rule::Allow(rules::under(&d.name)))
        .collect();
    out.push(Rule::Disallow("*".into()));
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::{mount, record};
    use super::*;
    use serde_json::json;
    use std::path::Path;

    fn run(step: &str, mounts: Value) -> Run {
        Run::new(record(step, mounts), None, Path::new("/w")).unwrap()
    }

    fn matches(pattern: &str, step: &str) -> Rule {
        Rule::MatchProducts {
            pattern: pattern.into(),
            step: step.into(),
        }
    }

    #[test]
    fn materials_match_the_products_of_the_step_that_wrote_them_and_datasets_are_allowed() {
        let runs = vec![
            run(
                "pseudonymize",
                json!([
                    mount("/in", "/w/raw", "read", &[("c.csv", "r")]),
                    mount("/out", "/w/pseudo", "write", &[("c.csv", "p")])
                ]),
            ),
            run(
                "train",
                json!([
                    mount("/in", "/w/pseudo", "read", &[("c.csv", "p")]),
                    mount("/labels", "/w/labels", "read", &[("l", "l")]),
                    mount("/out", "/w/model", "write", &[("m", "m")])
                ]),
            ),
        ];
        assert_eq!(
            material_rules(&runs[1], &runs),
            vec![
                matches("pseudo/*", "pseudonymize"),
                Rule::Disallow("pseudo/*".into()),
                Rule::Allow("labels/*".into()),
                Rule::Disallow("*".into()),
            ]
        );
        assert_eq!(
            material_rules(&runs[0], &runs),
            vec![Rule::Allow("raw/*".into()), Rule::Disallow("*".into())]
        );
        assert_eq!(
            product_rules(&runs[1]),
            vec![Rule::Allow("model/*".into()), Rule::Disallow("*".into())]
        );
    }

    #[test]
    fn an_input_around_an_output_matches_that_output_first_and_allows_the_rest() {
        let runs = vec![
            run(
                "prep",
                json!([mount("/out", "/w/data/prepared", "write", &[("x", "x")])]),
            ),
            run(
                "use",
                json!([
                    mount(
                        "/in",
                        "/w/data",
                        "read",
                        &[("prepared/x", "x"), ("raw", "r")]
                    ),
                    mount("/sub", "/w/data/prepared/part", "read", &[])
                ]),
            ),
        ];
        assert_eq!(
            material_rules(&runs[1], &runs),
            vec![
                matches("data/prepared/part/*", "prep"),
                Rule::Disallow("data/prepared/part/*".into()),
                matches("data/prepared/*", "prep"),
                Rule::Disallow("data/prepared/*".into()),
                Rule::Allow("data/*".into()),
                Rule::Disallow("*".into()),
            ]
        );
    }

    #[test]
    fn the_inspection_requires_every_product_of_every_step() {
        let runs = [
            run("a", json!([mount("/o", "/w/a", "write", &[("1", "1")])])),
            run("b", json!([mount("/o", "/w/b/c", "write", &[("2", "2")])])),
        ];
        let rules = super::super::inspection_rules(&[&runs[0], &runs[1]]);
        assert_eq!(
            rules,
            vec![
                Rule::Require("a/1".into()),
                Rule::Require("b/c/2".into()),
                matches("b/c/*", "b"),
                Rule::Disallow("b/c/*".into()),
                matches("a/*", "a"),
                Rule::Disallow("a/*".into()),
                Rule::Allow("*".into()),
            ]
        );
    }

    #[test]
    fn ids_that_could_name_another_file_are_not_pipeline_runs() {
        assert!(plausible_id("20260101T000000.000000Z-churn-model-0a1b2c3d"));
        for bad in ["", "../x", "a/b", ".hidden", "a\\b"] {
            assert!(!plausible_id(bad), "{bad}");
        }
    }
}
