//! The command line: argument parsing and exit codes, nothing else. Each
//! command calls the library and turns its result into a message and an
//! exit code.

use crate::config::WorkspaceConfig;
use crate::exec::{RunOptions, run_step};
use crate::manifest::{Manifest, Sha256Digest};
use crate::plan::{PlanContext, plan_step};
use crate::record::Publication;
use crate::sandbox::{Sandbox, SandboxError};
use anyhow::Context;
use clap::{Parser, Subcommand};
use secret_cmd::{SecretCommand, records, secret};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod secret_cmd;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the step failed: non-zero exit, trap, or a limit (fuel, memory, timeout, output)
  2  the invocation, manifest, component or a secret is wrong; nothing ran
  3  the runner itself failed (for example the disk is full); earlier outputs
     and records are left intact";

/// Cordon runs pipeline steps as WebAssembly components, each granted only
/// what its capability manifest says, and records every run.
#[derive(Parser, Debug)]
#[command(name = "cordon", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// More runner diagnostics on stderr (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run one step from its capability manifest.
    #[command(after_help = EXIT_CODES)]
    Run {
        /// The step's capability manifest (TOML).
        manifest: PathBuf,
        /// State directory for records, logs, staging and the compiled cache
        /// [default: .cordon/ beside the manifest].
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
        /// Do not stream the step's stdout/stderr (they are still captured).
        #[arg(short, long)]
        quiet: bool,
        /// The environment to run in, as defined in cordon.toml.
        #[arg(long, value_name = "NAME", default_value = crate::config::DEFAULT_ENV)]
        env: String,
        /// The workspace file [default: the nearest cordon.toml above the
        /// manifest, if any].
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Manage the secrets of an environment whose provider is `local`.
    ///
    /// Values are read from stdin, never from arguments (which other users
    /// can see), and never printed.
    Secret {
        #[command(subcommand)]
        action: SecretCommand,
    },
    /// List the runs whose records used a secret: the first question after
    /// a leak.
    Records {
        /// The secret's name.
        #[arg(long, value_name = "NAME")]
        secret: String,
        /// Only runs that used this version of it.
        #[arg(long, value_name = "N")]
        version: Option<String>,
        /// State directory holding `records/` [default: .cordon].
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
    },
    /// Write the current digest of a manifest's component into the manifest.
    ///
    /// Run it after building a step you have reviewed; the digest change
    /// shows up in code review like any other change.
    Pin {
        /// The step's capability manifest (TOML).
        manifest: PathBuf,
    },
}

/// An error with the exit code it maps to.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

fn bad_input(e: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: 2,
        error: e.into(),
    }
}

fn runner_fault(e: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: 3,
        error: e.into(),
    }
}

/// Parses the arguments, runs the command, returns the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CORDON_LOG")
                .unwrap_or_else(|_| filter.into()),
        )
        .with_writer(std::io::stderr)
        .without_time()
        .init();
    let result = match cli.command {
        Command::Run {
            manifest,
            state,
            quiet,
            env,
            config,
        } => run(&manifest, state, quiet, &env, config.as_deref()),
        Command::Pin { manifest } => pin(&manifest),
        Command::Secret { action } => secret(action),
        Command::Records {
            secret,
            version,
            state,
        } => records(&secret, version.as_deref(), state),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("error: {:#}", f.error);
            ExitCode::from(f.code)
        }
    }
}

fn run(
    manifest_path: &Path,
    state: Option<PathBuf>,
    quiet: bool,
    env: &str,
    config: Option<&Path>,
) -> Result<u8, Failure> {
    let manifest = Manifest::load(manifest_path).map_err(bad_input)?;
    let workspace = WorkspaceConfig::discover(config, &manifest.dir).map_err(bad_input)?;
    let env = workspace.env(env).map_err(bad_input)?;
    let state_dir = state.unwrap_or_else(|| manifest.dir.join(".cordon"));
    let ctx = PlanContext {
        env,
        workspace_dir: &workspace.dir,
        state_dir: &state_dir,
    };
    let plan = plan_step(&manifest, &ctx).map_err(bad_input)?;
    // Every granted secret is read now, before anything runs; a vault
    // session ends when `resolution` does (finish below, or drop on any
    // early return).
    let mut resolution = crate::secrets::resolve(env, &plan.secrets).map_err(bad_input)?;
    let secrets = std::mem::take(&mut resolution.secrets);

    crate::fsutil::create_private_dir(&plan.state_dir)
        .with_context(|| {
            format!(
                "cannot create the state directory {}",
                plan.state_dir.display()
            )
        })
        .map_err(runner_fault)?;
    let cache_dir = std::env::var_os("CORDON_COMPILE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| plan.state_dir.join("compiled"));
    let sandbox = Sandbox::new(Some(cache_dir)).map_err(runner_fault)?;
    let component = sandbox
        .load(&plan.component_digest, &plan.component_bytes)
        .map_err(|e| match e {
            SandboxError::InvalidComponent(msg) => {
                let at = manifest.component_at;
                bad_input(anyhow::anyhow!(
                    "{}:{}:{}: component {}: {msg}",
                    manifest.path.display(),
                    at.line,
                    at.column,
                    plan.component_path.display()
                ))
            }
            other => runner_fault(other),
        })?;
    let run = run_step(&plan, &sandbox, &component, secrets, &RunOptions { quiet })
        .map_err(runner_fault)?;
    if let Err(e) = resolution.finish() {
        eprintln!("cordon: warning: {e}");
    }

    let r = &run.record;
    let record_path = run.record_path.display();
    if r.success {
        eprintln!(
            "cordon: step `{}` succeeded in {} ms (fuel {}, peak memory {}); record: {record_path}",
            r.step,
            r.usage.wall_ms,
            r.usage.fuel,
            crate::units::format_size(r.usage.peak_memory)
        );
        Ok(0)
    } else {
        let (reason, kept) = match &r.outputs {
            Publication::Withheld { reason, kept_at } => (reason.clone(), kept_at.clone()),
            _ => (r.termination.describe(), None),
        };
        eprintln!("cordon: step `{}` failed: {reason}", r.step);
        if let Some(k) = kept {
            eprintln!(
                "cordon: nothing was published; partial output kept at {}",
                k.display()
            );
        }
        eprintln!("cordon: record: {record_path}");
        Ok(1)
    }
}

fn pin(manifest_path: &Path) -> Result<u8, Failure> {
    let source = std::fs::read_to_string(manifest_path)
        .with_context(|| format!("cannot read {}", manifest_path.display()))
        .map_err(bad_input)?;
    let mut doc: toml_edit::DocumentMut = source
        .parse()
        .with_context(|| format!("{} is not valid TOML", manifest_path.display()))
        .map_err(bad_input)?;
    let component = doc
        .get("step")
        .and_then(|s| s.get("component"))
        .and_then(|c| c.as_str())
        .ok_or_else(|| {
            bad_input(anyhow::anyhow!(
                "{}: [step] has no `component`",
                manifest_path.display()
            ))
        })?
        .to_string();
    let dir = match manifest_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let bytes = std::fs::read(dir.join(&component))
        .with_context(|| format!("cannot read component {}", dir.join(&component).display()))
        .map_err(bad_input)?;
    let digest = Sha256Digest::of(&bytes).to_string();
    let old = doc["step"]
        .get("digest")
        .and_then(|d| d.as_str())
        .map(str::to_string);
    if old.as_deref() == Some(digest.as_str()) {
        eprintln!("cordon: {} already pins {digest}", manifest_path.display());
        return Ok(0);
    }
    doc["step"]["digest"] = toml_edit::value(digest.clone());
    crate::fsutil::write_atomic(manifest_path, doc.to_string().as_bytes())
        .with_context(|| format!("cannot write {}", manifest_path.display()))
        .map_err(runner_fault)?;
    eprintln!(
        "cordon: {} now pins {digest} (was {})",
        manifest_path.display(),
        old.unwrap_or_else(|| "unset".into())
    );
    Ok(0)
}
