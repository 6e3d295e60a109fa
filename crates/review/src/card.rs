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

/// A value for a Markdown table cell: control characters escaped, and
/// the characters that would end the cell or the code span replaced.
fn cell(s: &str) -> String {
    cordon_core::sanitize::escape_for_terminal(s)
        .replace('|', "\\|")
        .replace('`', "'")
        .replace('\n', " ")
}

fn short(d: &Sha256Digest) -> String {
    format!("sha256:{}", &d.hex()[..12.min(d.hex().len())])
}

/// The card as Markdown, for a pull request or a model registry.
pub fn render_markdown(c: &Card) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "# Provenance card: `{}`\n", cell(&c.pipeline));
    let _ = writeln!(
        s,
        "Pipeline run `{}` in environment `{}`, finished {}: **{}**.\n",
        cell(&c.run_id),
        cell(&c.environment),
        cell(&c.finished_at),
        if c.success { "succeeded" } else { "failed" }
    );
    let _ = writeln!(
        s,
        "## Datasets\n\n| dataset | read by | digest | files | classification | purpose |\n| --- | --- | --- | --- | --- | --- |"
    );
    for d in &c.datasets {
        let _ = writeln!(
            s,
            "| `{}` | `{}` at `{}` | `{}` | {} | {} | {} |",
            cell(&d.host.display().to_string()),
            cell(&d.step),
            cell(&d.guest),
            short(&d.sha256),
            d.files,
            d.classification.as_deref().unwrap_or("unclassified"),
            cell(&d.purpose)
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
                cell(d),
                cell(j),
                st.policy.overridden
            ),
            (Some(d), None) => cell(d),
            (None, _) => "none recorded".into(),
        };
        let metrics: Vec<String> = st
            .metrics
            .iter()
            .map(|(k, v)| format!("{}={v}", cell(k)))
            .collect();
        let _ = writeln!(
            s,
            "| `{}`{} | `{}` | {} | {}{} | {} | {} |",
            cell(&st.name),
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
                |g| format!(
                    "`{}` ({})",
                    &g.keyid[..8.min(g.keyid.len())],
                    cell(&g.holder)
                )
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
        let _ = writeln!(s, "### `{}`\n", cell(&st.name));
        for m in &st.mounts {
            let _ = writeln!(
                s,
                "- {} `{}` → `{}` ({}): {}",
                m.access,
                cell(&m.guest),
                cell(&m.host.display().to_string()),
                m.classification.as_deref().unwrap_or("unclassified"),
                cell(&m.purpose)
            );
        }
        for sec in &st.secrets {
            let _ = writeln!(
                s,
                "- secret `{}` from {}{} for {}",
                cell(&sec.name),
                cell(&sec.provider),
                sec.version
                    .as_ref()
                    .map(|v| format!(" (version {})", cell(v)))
                    .unwrap_or_default(),
                sec.uses.join(", ")
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
            "| `{}` | `{}` | `{}` |",
            cell(&a.guest),
            cell(&a.step),
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
            "- `{}` into `{}`: {} at {}",
            short(&p.sha256),
            cell(&p.environment),
            cell(&p.result),
            cell(&p.time_verified)
        );
    }
    s
}
