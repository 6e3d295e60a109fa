//! `cordon card`: the provenance card of a pipeline run — what a model
//! was made from and how — for a pull request or a model registry.
//!
//! Built from the typed pipeline record and step records only (never from
//! manifests as they are now): the source datasets with digests,
//! classification and purpose; each step with its component and manifest
//! digests, grants (mounts, secrets by name, provider and version — never
//! values —, environment variable names), the policy decision it ran
//! under, reproducibility, metrics and who signed its record; the
//! artifacts; and the promotion VSAs that name an artifact's tree. The JSON
//! form is documented by `docs/schemas/provenance-card.schema.json`; the
//! Markdown form renders in a pull request, every value escaped (metric
//! names and paths are chosen by steps and manifests).
//!
//! The card reports what the records say; it is not a verification. Run
//! `cordon verify` (or `cordon promote`) to check them.

use crate::review::{md_code, md_code_cell, md_text};
use cordon_core::digest::Sha256Digest;
use cordon_manifest::manifest::Access;
use cordon_record::pipeline::{PipelineRecord, pipeline_record_path};
use cordon_record::record::StepRecord;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Format identifier of the card's JSON.
pub const CARD_FORMAT: &str = "cordon.provenance-card/v1";

/// Largest record read.
const MAX_RECORD_BYTES: u64 = 64 << 20;

/// Why a card cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum CardError {
    /// The run is unknown or its records unreadable.
    #[error("{0}")]
    Records(String),
}

/// A source dataset.
#[derive(Debug, Clone, Serialize)]
pub struct CardDataset {
    /// The step that read it and its guest path there.
    pub step: String,
    /// Guest path.
    pub guest: String,
    /// Host path.
    pub host: PathBuf,
    /// Tree digest.
    pub sha256: Sha256Digest,
    /// Regular files.
    pub files: u64,
    /// Bytes.
    pub bytes: u64,
    /// Classification (`null` when the manifest gives none).
    pub classification: Option<String>,
    /// Why the step read it.
    pub purpose: String,
}

/// A mount grant.
#[derive(Debug, Clone, Serialize)]
pub struct CardMount {
    /// Guest path.
    pub guest: String,
    /// Host path.
    pub host: PathBuf,
    /// `read`, `write` or `read-write`.
    pub access: String,
    /// Why.
    pub purpose: String,
    /// Classification.
    pub classification: Option<String>,
    /// Tree digest before (inputs) or after (outputs).
    pub sha256: Option<Sha256Digest>,
}

/// A secret grant as the record holds it: never a value.
#[derive(Debug, Clone, Serialize)]
pub struct CardSecret {
    /// Name.
    pub name: String,
    /// Provider.
    pub provider: String,
    /// Version, when the provider keeps versions.
    pub version: Option<String>,
    /// Granted uses.
    pub uses: Vec<String>,
}

/// Who signed a record.
#[derive(Debug, Clone, Serialize)]
pub struct CardSignature {
    /// in-toto keyid.
    pub keyid: String,
    /// Where the key is held (`local-store`, `vault-transit`, `file`).
    pub holder: String,
}

/// The policy decision a step ran under.
#[derive(Debug, Clone, Serialize)]
pub struct CardPolicy {
    /// `allow` or `break-glass` (`null` when none was recorded).
    pub decision: Option<String>,
    /// With break-glass: the justification.
    pub justification: Option<String>,
    /// With break-glass: how many violations were overridden.
    pub overridden: usize,
    /// The policy files, by digest.
    pub files: Vec<cordon_record::run::PolicyFile>,
}

/// One step of the run.
#[derive(Debug, Clone, Serialize)]
pub struct CardStep {
    /// Step name.
    pub name: String,
    /// Its record's run id.
    pub run_id: String,
    /// Whether it succeeded.
    pub success: bool,
    /// Whether it was served from the action cache.
    pub cache_hit: bool,
    /// The component that ran.
    pub component: Sha256Digest,
    /// The manifest that granted it, and its digest.
    pub manifest: cordon_record::record::FileRef,
    /// Arguments.
    pub args: Vec<String>,
    /// Environment variable names (values are in the record).
    pub env: Vec<String>,
    /// Directory grants.
    pub mounts: Vec<CardMount>,
    /// Secret grants.
    pub secrets: Vec<CardSecret>,
    /// HTTP requests made.
    pub network_calls: usize,
    /// The policy decision.
    pub policy: CardPolicy,
    /// Whether re-running gives the same outputs.
    pub reproducible: bool,
    /// `canonical` or `native`.
    pub floats: String,
    /// What the step reported.
    pub metrics: BTreeMap<String, f64>,
    /// Who signed its record (`null`: unsigned).
    pub signature: Option<CardSignature>,
}

/// An artifact of the run.
#[derive(Debug, Clone, Serialize)]
pub struct CardArtifact {
    /// The step that wrote it.
    pub step: String,
    /// Guest path.
    pub guest: String,
    /// Host path.
    pub host: PathBuf,
    /// Tree digest.
    pub sha256: Sha256Digest,
}

/// A promotion VSA naming a tree of the run (read, not verified).
#[derive(Debug, Clone, Serialize)]
pub struct CardPromotion {
    /// The environment that signed it.
    pub environment: String,
    /// The tree it names.
    pub sha256: Sha256Digest,
    /// `PASSED` or `FAILED`.
    pub result: String,
    /// When.
    pub time_verified: String,
    /// The VSA file.
    pub file: PathBuf,
}

/// The provenance card.
#[derive(Debug, Clone, Serialize)]
pub struct Card {
    /// [`CARD_FORMAT`].
    pub format: String,
    /// Pipeline name.
    pub pipeline: String,
    /// Pipeline run id.
    pub run_id: String,
    /// Environment it ran in.
    pub environment: String,
    /// Whether every step succeeded.
    pub success: bool,
    /// When it finished.
    pub finished_at: String,
    /// Source datasets.
    pub datasets: Vec<CardDataset>,
    /// Steps in pipeline order.
    pub steps: Vec<CardStep>,
    /// Artifacts.
    pub artifacts: Vec<CardArtifact>,
    /// Promotions of its trees.
    pub promotions: Vec<CardPromotion>,
}

fn access(a: Access) -> &'static str {
    match a {
        Access::Read => "read",
        Access::Write => "write",
        Access::ReadWrite => "read-write",
    }
}

fn class(c: Option<cordon_manifest::manifest::Classification>) -> Option<String> {
    c.and_then(|c| serde_json::to_value(c).ok())
        .and_then(|v| v.as_str().map(str::to_string))
}

fn read<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, CardError> {
    let bytes = cordon_core::fsutil::read_regular(path, MAX_RECORD_BYTES)
        .map_err(|e| CardError::Records(format!("{} cannot be read: {e}", path.display())))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| CardError::Records(format!("{} is not readable: {e}", path.display())))
}

/// The card of pipeline run `run` in `state_dir`.
pub fn card(state_dir: &Path, run: &str) -> Result<Card, CardError> {
    if !cordon_record::chain::is_run_id(run) {
        return Err(CardError::Records(format!(
            "`{}` is not a run id",
            cordon_core::sanitize::escape_for_terminal(run)
        )));
    }
    let path = pipeline_record_path(state_dir, run);
    if !path.is_file() {
        return Err(CardError::Records(format!(
            "no pipeline run `{run}` in {} (looked for {})",
            state_dir.display(),
            path.display()
        )));
    }
    let p: PipelineRecord = read(&path)?;
    let records_dir = state_dir.join("records");
    let mut records: Vec<StepRecord> = Vec::new();
    for s in &p.steps {
        if let Some(id) = &s.run_id
            && cordon_record::chain::is_run_id(id)
        {
            records.push(read(&cordon_record::chain::record_path(&records_dir, id))?);
        }
    }
    let datasets = p
        .datasets
        .iter()
        .map(|d| CardDataset {
            step: d.step.clone(),
            guest: d.guest.clone(),
            host: d.host.clone(),
            sha256: d.sha256.clone(),
            files: d.files,
            bytes: d.bytes,
            classification: class(d.classification),
            purpose: records
                .iter()
                .filter(|r| r.step == d.step)
                .flat_map(|r| &r.mounts)
                .find(|m| m.guest == d.guest)
                .map(|m| m.purpose.clone())
                .unwrap_or_default(),
        })
        .collect();
    let steps = records
        .iter()
        .map(|r| CardStep {
            name: r.step.clone(),
            run_id: r.run_id.clone(),
            success: r.success,
            cache_hit: r.cache.hit,
            component: r.component.sha256.clone(),
            manifest: r.manifest.clone(),
            args: r.args.clone(),
            env: r.env.keys().cloned().collect(),
            mounts: r
                .mounts
                .iter()
                .map(|m| CardMount {
                    guest: m.guest.clone(),
                    host: m.host.clone(),
                    access: access(m.access).into(),
                    purpose: m.purpose.clone(),
                    classification: class(m.classification),
                    sha256: match m.access {
                        Access::Read => m.before.as_ref(),
                        _ => m.after.as_ref(),
                    }
                    .map(|t| t.sha256.clone()),
                })
                .collect(),
            secrets: r
                .secrets
                .iter()
                .map(|(name, a)| CardSecret {
                    name: name.clone(),
                    provider: a.provider.clone(),
                    version: a.version.clone(),
                    uses: a
                        .granted_uses
                        .iter()
                        .filter_map(|u| serde_json::to_value(u).ok())
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect(),
                })
                .collect(),
            network_calls: r.network.len(),
            policy: match &r.policy {
                Some(d) => CardPolicy {
                    decision: Some(d.decision.clone()),
                    justification: d.justification.clone(),
                    overridden: d.overridden.len(),
                    files: d.files.clone(),
                },
                None => CardPolicy {
                    decision: None,
                    justification: None,
                    overridden: 0,
                    files: Vec::new(),
                },
            },
            reproducible: r.reproducibility.reproducible,
            floats: if r.reproducibility.nan_canonicalization {
                "canonical"
            } else {
                "native"
            }
            .into(),
            metrics: r.report.metrics.clone(),
            signature: r.signed_by.as_ref().map(|s| CardSignature {
                keyid: s.keyid.clone(),
                holder: s.holder.clone(),
            }),
        })
        .collect();
    let artifacts: Vec<CardArtifact> = p
        .artifacts
        .iter()
        .map(|a| CardArtifact {
            step: a.step.clone(),
            guest: a.guest.clone(),
            host: a.host.clone(),
            sha256: a.sha256.clone(),
        })
        .collect();
    let trees: Vec<&Sha256Digest> = records
        .iter()
        .flat_map(|r| &r.mounts)
        .filter(|m| m.access == Access::Write)
        .filter_map(|m| m.after.as_ref().map(|t| &t.sha256))
        .collect();
    let promotions = promotions(state_dir, &trees);
    Ok(Card {
        format: CARD_FORMAT.into(),
        pipeline: p.pipeline.clone(),
        run_id: p.run_id.clone(),
        environment: p.environment.clone(),
        success: p.success,
        finished_at: p.finished_at.clone(),
        datasets,
        steps,
        artifacts,
        promotions,
    })
}

/// The VSAs under `<state>/promotions/*/` whose file names start with one
/// of `trees` (see `cordon_record::vsa`), decoded without verification.
fn promotions(state_dir: &Path, trees: &[&Sha256Digest]) -> Vec<CardPromotion> {
    use base64::Engine as _;
    let mut out = Vec::new();
    let Ok(envs) = std::fs::read_dir(state_dir.join("promotions")) else {
        return out;
    };
    let mut envs: Vec<PathBuf> = envs.filter_map(|e| e.ok().map(|e| e.path())).collect();
    envs.sort();
    for dir in envs {
        let env = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        let Ok(files) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = files.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for f in files {
            let Some(name) = f.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(tree) = trees
                .iter()
                .find(|t| name.starts_with(&format!("{}.", t.hex())))
            else {
                continue;
            };
            let Ok(bytes) =
                cordon_core::fsutil::read_regular(&f, cordon_record::vsa::MAX_VSA_BYTES)
            else {
                continue;
            };
            let Some(st) = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["payload"].as_str().map(str::to_string))
                .and_then(|p| base64::engine::general_purpose::STANDARD.decode(p).ok())
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            else {
                continue;
            };
            let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
            out.push(CardPromotion {
                environment: env.clone(),
                sha256: (*tree).clone(),
                result: text(&st["predicate"]["verificationResult"]),
                time_verified: text(&st["predicate"]["timeVerified"]),
                file: f.clone(),
            });
        }
    }
    out
}

/// A name or path from a record in a table cell (see [`md_code_cell`]).
fn code_cell(v: &str) -> String {
    md_code_cell(v)
}

/// Free text from a record (a purpose, a justification) anywhere: every
/// Markdown-active character backslash-escaped, so it can open no link,
/// image, autolink, raw HTML, emphasis or table cell.
fn text(v: &str) -> String {
    md_text(v)
}

fn short(d: &Sha256Digest) -> String {
    format!("sha256:{}", &d.hex()[..12.min(d.hex().len())])
}

/// The card as Markdown, for a pull request or a model registry.
///
/// Our own words and the table and list structure are fixed here; every
/// value a step, a manifest or a record chose goes through [`code_cell`],
/// [`md_code`] or [`text`], so the document has the same links (none),
/// images (none), HTML (none), headings and table rows whatever the
/// records say (checked by a property test with a CommonMark parser).
pub fn render_markdown(c: &Card) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "# Provenance card: {}\n", md_code(&c.pipeline));
    let _ = writeln!(
        s,
        "Pipeline run {} in environment {}, finished {}: **{}**.\n",
        md_code(&c.run_id),
        md_code(&c.environment),
        md_code(&c.finished_at),
        if c.success { "succeeded" } else { "failed" }
    );
    let _ = writeln!(
        s,
        "## Datasets\n\n| dataset | read by | digest | files | classification | purpose |\n| --- | --- | --- | --- | --- | --- |"
    );
    for d in &c.datasets {
        let _ = writeln!(
            s,
            "| {} | {} at {} | `{}` | {} | {} | {} |",
            code_cell(&d.host.display().to_string()),
            code_cell(&d.step),
            code_cell(&d.guest),
            short(&d.sha256),
            d.files,
            text(d.classification.as_deref().unwrap_or("unclassified")),
            text(&d.purpose)
        );
    }
    let _ = writeln!(
        s,
        "\n## Steps\n\n| step | component | policy | reproducible | signed by | metrics |\n| --- | --- | --- | --- | --- | --- |"
    );
    for st in &c.steps {
        let policy = match (&st.policy.decision, &st.policy.justification) {
            (Some(d), Some(j)) => format!(
                "{} ({}; {} overridden)",
                text(d),
                text(j),
                st.policy.overridden
            ),
            (Some(d), None) => text(d),
            (None, _) => "none recorded".into(),
        };
        let metrics: Vec<String> = st
            .metrics
            .iter()
            .map(|(k, v)| format!("{}={v}", code_cell(k)))
            .collect();
        let keyid: String = st
            .signature
            .as_ref()
            .map(|g| g.keyid.chars().take(8).collect())
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "| {}{} | `{}` | {} | {}{} | {} | {} |",
            code_cell(&st.name),
            if st.cache_hit { " (cached)" } else { "" },
            short(&st.component),
            policy,
            if st.reproducible { "yes" } else { "no" },
            if st.floats == "native" {
                ", native floats"
            } else {
                ""
            },
            st.signature.as_ref().map_or_else(
                || "unsigned".into(),
                |g| format!("{} ({})", code_cell(&keyid), text(&g.holder))
            ),
            if metrics.is_empty() {
                "-".into()
            } else {
                metrics.join(", ")
            }
        );
    }
    let _ = writeln!(s, "\n## Grants\n");
    for st in &c.steps {
        let _ = writeln!(s, "### {}\n", md_code(&st.name));
        for m in &st.mounts {
            let _ = writeln!(
                s,
                "- {} {} → {} ({}): {}",
                text(&m.access),
                md_code(&m.guest),
                md_code(&m.host.display().to_string()),
                text(m.classification.as_deref().unwrap_or("unclassified")),
                text(&m.purpose)
            );
        }
        for sec in &st.secrets {
            let _ = writeln!(
                s,
                "- secret {} from {}{} for {}",
                md_code(&sec.name),
                text(&sec.provider),
                sec.version
                    .as_ref()
                    .map(|v| format!(" (version {})", text(v)))
                    .unwrap_or_default(),
                text(&sec.uses.join(", "))
            );
        }
        if st.network_calls > 0 {
            let _ = writeln!(s, "- {} network requests", st.network_calls);
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(
        s,
        "## Artifacts\n\n| artifact | step | digest |\n| --- | --- | --- |"
    );
    for a in &c.artifacts {
        let _ = writeln!(
            s,
            "| {} | {} | `{}` |",
            code_cell(&a.guest),
            code_cell(&a.step),
            short(&a.sha256)
        );
    }
    let _ = writeln!(s, "\n## Promotions\n");
    if c.promotions.is_empty() {
        let _ = writeln!(s, "None.");
    }
    for p in &c.promotions {
        let _ = writeln!(
            s,
            "- `{}` into {}: {} at {}",
            short(&p.sha256),
            md_code(&p.environment),
            text(&p.result),
            text(&p.time_verified)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::review::structure;
    use cordon_record::run::PolicyFile;
    use proptest::prelude::*;

    /// A card with two of everything, each step-, manifest- or
    /// record-chosen string taken from `next`.
    fn card_of(next: &mut dyn FnMut() -> String) -> Card {
        let digest = Sha256Digest::of(b"tree");
        let step = |next: &mut dyn FnMut() -> String| CardStep {
            name: next(),
            run_id: next(),
            success: true,
            cache_hit: false,
            component: digest.clone(),
            manifest: cordon_record::record::FileRef {
                path: PathBuf::from(next()),
                sha256: digest.clone(),
            },
            args: vec![next(), next()],
            env: vec![next()],
            mounts: vec![
                CardMount {
                    guest: next(),
                    host: PathBuf::from(next()),
                    access: "read".into(),
                    purpose: next(),
                    classification: Some(next()),
                    sha256: Some(digest.clone()),
                },
                CardMount {
                    guest: next(),
                    host: PathBuf::from(next()),
                    access: "write".into(),
                    purpose: next(),
                    classification: None,
                    sha256: None,
                },
            ],
            secrets: vec![CardSecret {
                name: next(),
                provider: next(),
                version: Some(next()),
                uses: vec![next()],
            }],
            network_calls: 1,
            policy: CardPolicy {
                decision: Some(next()),
                justification: Some(next()),
                overridden: 1,
                files: vec![PolicyFile {
                    path: next(),
                    sha256: next(),
                }],
            },
            reproducible: true,
            floats: "native".into(),
            metrics: BTreeMap::from([(next(), 0.5), (format!("2{}", next()), -1e300)]),
            signature: Some(CardSignature {
                keyid: next(),
                holder: next(),
            }),
        };
        let steps = vec![step(next), step(next)];
        Card {
            format: CARD_FORMAT.into(),
            pipeline: next(),
            run_id: next(),
            environment: next(),
            success: true,
            finished_at: next(),
            datasets: vec![CardDataset {
                step: next(),
                guest: next(),
                host: PathBuf::from(next()),
                sha256: digest.clone(),
                files: 1,
                bytes: 2,
                classification: Some(next()),
                purpose: next(),
            }],
            steps,
            artifacts: vec![CardArtifact {
                step: next(),
                guest: next(),
                host: PathBuf::from(next()),
                sha256: digest.clone(),
            }],
            promotions: vec![CardPromotion {
                environment: next(),
                sha256: digest.clone(),
                result: next(),
                time_verified: next(),
                file: PathBuf::from(next()),
            }],
        }
    }

    fn plain_card() -> Card {
        let mut n = 0;
        card_of(&mut || {
            n += 1;
            format!("value{n}")
        })
    }

    fn hostile_card(values: &[String]) -> Card {
        let mut i = 0;
        card_of(&mut || {
            i += 1;
            // Distinct keys, so that two metrics stay two.
            format!("{}{i}", values[i % values.len()])
        })
    }

    /// JSON with every string replaced: what stays is the keys and shape.
    /// Metric names are data (the keys of `metrics`), so they are counted.
    fn shape(v: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match v {
            Value::String(_) => Value::String(String::new()),
            Value::Array(a) => Value::Array(a.into_iter().map(shape).collect()),
            Value::Object(o) => Value::Object(
                o.into_iter()
                    .map(|(k, v)| match v {
                        Value::Object(m) if k == "metrics" => (k, Value::from(m.len())),
                        v => (k, shape(v)),
                    })
                    .collect(),
            ),
            v => v,
        }
    }

    #[test]
    fn a_metric_named_like_a_link_or_an_image_is_text_in_the_markdown_card() {
        let names = [
            "[approve](https://evil.example/approve)".to_string(),
            "<img src=x onerror=alert(1)>".to_string(),
        ];
        let md = render_markdown(&hostile_card(&names));
        assert_eq!(structure::active(&md), 0, "{md}");
        assert_eq!(
            structure::of_markdown(&md),
            structure::of_markdown(&render_markdown(&plain_card())),
            "{md}"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_record_text_leaves_the_markdown_card_its_structure(
            values in proptest::collection::vec(structure::hostile(), 1..8)
        ) {
            let md = render_markdown(&hostile_card(&values));
            prop_assert_eq!(structure::active(&md), 0, "{}", md);
            prop_assert_eq!(
                structure::of_markdown(&md),
                structure::of_markdown(&render_markdown(&plain_card())),
                "{}", md
            );
        }

        #[test]
        fn any_record_text_leaves_the_json_card_its_keys(
            values in proptest::collection::vec(structure::hostile(), 1..8)
        ) {
            let text = serde_json::to_string_pretty(&hostile_card(&values)).unwrap();
            let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
            let plain = serde_json::to_value(plain_card()).unwrap();
            prop_assert_eq!(shape(parsed), shape(plain));
        }
    }
}
