//! `cordon promote`, `cordon card` and `cordon posture`: argument handling
//! and rendering; the work is in [`cordon_engine::promote`],
//! [`cordon_review::card`] and [`cordon_record::posture`].

use super::{Failure, bad_input, runner_fault, verify_workspace};
use cordon_core::sanitize::escape_for_terminal;
use std::path::{Path, PathBuf};

/// Exit codes of `cordon promote`.
pub(super) const PROMOTE_EXIT_CODES: &str = "\
Exit codes:
  0  every artifact was verified, copied into the target and its VSA signed
  1  the promotion was refused (every reason is printed); nothing was written
     into the target
  2  the invocation or configuration is wrong (no such run, environment or key)
  3  the runner failed while copying or signing";

/// The arguments of `cordon promote`.
#[derive(clap::Args, Debug)]
pub(super) struct PromoteArgs {
    /// The pipeline run id (`<state>/pipelines/<id>.json`), `latest` (the
    /// newest pipeline run) or `latest:STEP` (the newest that had step STEP).
    #[arg(long, value_name = "PIPELINE_RUN")]
    run: String,
    /// The environment the artifact comes from.
    #[arg(long, value_name = "E")]
    from: String,
    /// The environment it goes to: its trust roots, reviewers and
    /// `[env.E.promotion]` decide.
    #[arg(long, value_name = "E")]
    to: String,
    /// One artifact by guest path (an output mount, or a read mount whose
    /// tree a step of the run wrote, such as `/model`) [default: every
    /// artifact of the run].
    #[arg(long, value_name = "/guest")]
    artifact: Option<String>,
    /// State directory holding the run's records [default: $CORDON_STATE,
    /// else .cordon/ beside the nearest cordon.toml above the current
    /// directory, else in it].
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
    /// The workspace file that defines both environments [default: the
    /// nearest cordon.toml above the state directory, else above the
    /// current directory].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A public key (PEM) the target trusts for records of the source, for
    /// this promotion (repeatable). Also trusted:
    /// `<secrets home>/trusted/<to>/promote-from/<from>/*.pub`.
    #[arg(long = "trusted-key", value_name = "FILE")]
    trusted_keys: Vec<PathBuf>,
    /// Run each step of the lineage that is not reproducible by
    /// construction (real clock or randomness) again from its record; one
    /// that gives the same outputs counts as re-executed.
    #[arg(long)]
    reexecute: bool,
}

pub(super) fn promote(a: PromoteArgs) -> Result<u8, Failure> {
    let state = super::state_dir(a.state.clone(), Path::new(""));
    let workspace = verify_workspace(a.config.as_deref(), &state)?;
    // What a stopped command (a promotion among them) left is completed
    // first, recorded under the target environment's key.
    if let Ok(target) = workspace.env(&a.to) {
        let signer = cordon_engine::keys::signer_for_run(target, &workspace.dir)
            .ok()
            .flatten()
            .map(|k| k.signer);
        super::recover_state(&state, &a.to, signer.as_ref())?;
    }
    let pipeline_run = super::pipeline_run_named(&state, &a.run)?;
    let request = cordon_engine::promote::PromoteRequest {
        state_dir: &state,
        workspace: &workspace,
        pipeline_run: &pipeline_run,
        from: &a.from,
        to: &a.to,
        artifact: a.artifact.as_deref(),
        trusted_keys: &a.trusted_keys,
    };
    let sandbox = if a.reexecute {
        Some(super::sandbox_for(&state)?)
    } else {
        None
    };
    let promoted = cordon_engine::promote::promote(&request, sandbox.as_ref()).map_err(|e| {
        if e.is_refusal() {
            Failure {
                code: 1,
                error: e.into(),
            }
        } else if e.is_bad_input() {
            bad_input(e)
        } else {
            runner_fault(e)
        }
    })?;
    for w in &promoted.warnings {
        say!("cordon: warning: {}", escape_for_terminal(w));
    }
    for p in &promoted.artifacts {
        say!(
            "cordon: promoted {} of step `{}` ({}) from `{}` to `{}`: {}",
            escape_for_terminal(&p.guest),
            escape_for_terminal(&p.step),
            p.tree,
            a.from,
            a.to,
            p.dest.display()
        );
        say!(
            "cordon: verification summary (SLSA VSA v1): {}",
            p.vsa.display()
        );
    }
    Ok(0)
}

/// Refuses the run (exit 2) when a mount that `requires = "promoted"`
/// holds a tree no valid VSA of `env` names; says which file and mount.
pub(super) fn require_promoted(
    env: &cordon_manifest::config::EnvConfig,
    plans: &[cordon_manifest::plan::StepPlan],
) -> Result<(), Failure> {
    let roots = cordon_engine::keys::TrustRoots::from_process(Vec::new());
    let missing =
        cordon_engine::promote::unpromoted_inputs(env, &roots, plans).map_err(bad_input)?;
    if missing.is_empty() {
        return Ok(());
    }
    let text: Vec<String> = missing.iter().map(ToString::to_string).collect();
    Err(bad_input(anyhow::anyhow!(
        "{}\nnothing ran",
        text.join("\n")
    )))
}

/// How `cordon card` writes the card.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub(super) enum CardFormat {
    /// Markdown that renders in a pull request.
    Markdown,
    /// JSON (docs/schemas/provenance-card.schema.json).
    Json,
}

/// The arguments of `cordon card`.
#[derive(clap::Args, Debug)]
pub(super) struct CardArgs {
    /// The pipeline run id (`<state>/pipelines/<id>.json`), `latest` (the
    /// newest pipeline run) or `latest:STEP` (the newest that had step STEP).
    #[arg(long, value_name = "PIPELINE_RUN")]
    run: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "markdown")]
    format: CardFormat,
    /// State directory holding the run's records [default: $CORDON_STATE,
    /// else .cordon/ beside the nearest cordon.toml above the current
    /// directory, else in it].
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
}

pub(super) fn card(a: CardArgs) -> Result<u8, Failure> {
    let state = super::state_dir(a.state, Path::new(""));
    let card = cordon_review::card::card(&state, &super::pipeline_run_named(&state, &a.run)?)
        .map_err(bad_input)?;
    let text = match a.format {
        CardFormat::Markdown => cordon_review::card::render_markdown(&card),
        CardFormat::Json => {
            let mut t = serde_json::to_string_pretty(&card).map_err(runner_fault)?;
            t.push('\n');
            t
        }
    };
    use std::io::Write as _;
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(runner_fault)?;
    Ok(0)
}

/// How `cordon posture` writes its answer.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub(super) enum PostureFormat {
    /// For people.
    Text,
    /// JSON.
    Json,
    /// OpenMetrics text, for a Prometheus scrape.
    Openmetrics,
}

/// The arguments of `cordon posture`.
#[derive(clap::Args, Debug)]
pub(super) struct PostureArgs {
    /// The environment.
    #[arg(long, value_name = "E")]
    env: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: PostureFormat,
    /// State directory [default: $CORDON_STATE, else .cordon/ beside the
    /// nearest cordon.toml above the current directory, else in it].
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
    /// The workspace file [default: the nearest cordon.toml above the
    /// state directory, else above the current directory].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A public key (PEM) to trust for every environment (repeatable), as
    /// for `cordon verify`.
    #[arg(long = "trusted-key", value_name = "FILE")]
    trusted_keys: Vec<PathBuf>,
}

pub(super) fn posture(a: PostureArgs) -> Result<u8, Failure> {
    let state = super::state_dir(a.state, Path::new(""));
    let workspace = verify_workspace(a.config.as_deref(), &state)?;
    let roots = cordon_engine::keys::TrustRoots::from_process(a.trusted_keys);
    let p =
        cordon_record::posture::posture(&state, &workspace, &roots, &a.env).map_err(bad_input)?;
    let text = match a.format {
        PostureFormat::Text => cordon_record::posture::render_text(&p),
        PostureFormat::Openmetrics => cordon_record::posture::render_openmetrics(&p),
        PostureFormat::Json => {
            let mut t = serde_json::to_string_pretty(&p).map_err(runner_fault)?;
            t.push('\n');
            t
        }
    };
    use std::io::Write as _;
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(runner_fault)?;
    Ok(0)
}
