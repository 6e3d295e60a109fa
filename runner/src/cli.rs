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
use std::path::{Path, PathBuf};
use std::process::ExitCode;

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
    /// Check that records are intact, signed by trusted keys, chained, and
    /// that published outputs still match them.
    ///
    /// Without arguments, every record in the state directory's chain.
    /// Each problem is printed as `record <run id>: <what is wrong>`.
    #[command(after_help = VERIFY_EXIT_CODES)]
    Verify {
        /// One record file (`<state>/records/<run id>.json`); its state
        /// directory is the one above `records/`.
        record: Option<PathBuf>,
        /// One run, by id.
        #[arg(long, value_name = "ID", conflicts_with = "record")]
        run: Option<String>,
        /// State directory [default: .cordon/ in the current directory].
        #[arg(long, value_name = "DIR", conflicts_with = "record")]
        state: Option<PathBuf>,
        /// The workspace file with the trusted keys [default: the nearest
        /// cordon.toml above the current directory].
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Also run each step again from its record (component from the
        /// store, same inputs, clock and seed) and compare its outputs.
        #[arg(long)]
        reexecute: bool,
    },
    /// Export records in other formats.
    Export {
        #[command(subcommand)]
        command: ExportCommand,
    },
    /// Manage the keys that sign records.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
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

#[derive(Subcommand, Debug)]
enum KeyCommand {
    /// Create an ed25519 key pair for an environment and configure it.
    ///
    /// Writes `keys/<env>.key` (PKCS#8 PEM, mode 0600) and `keys/<env>.pub`
    /// (PEM SubjectPublicKeyInfo) beside cordon.toml, and sets the
    /// environment's `records.signing-key` and adds the public key to its
    /// `records.trusted-keys`. Existing key files are never overwritten.
    Generate {
        /// The environment.
        #[arg(long, value_name = "NAME")]
        env: String,
        /// The workspace file [default: the nearest cordon.toml above the
        /// current directory, or a new ./cordon.toml].
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum ExportCommand {
    /// A run as in-toto link and layout metadata for `in-toto-verify`.
    ///
    /// Writes `<step>.<keyid prefix>.link` (signed with the environment's
    /// signing key) and `root.layout` (signed with --layout-key) into DIR.
    /// Artifact names are paths relative to --base; verify with
    /// `in-toto-verify --layout DIR/root.layout --verification-keys
    /// LAYOUT_KEY.pub --link-dir DIR` run in the base directory.
    InToto {
        /// The run to export.
        #[arg(long, value_name = "ID")]
        run: String,
        /// Where to write the link and the layout.
        dir: PathBuf,
        /// The private key (PKCS#8 PEM) that signs the layout.
        #[arg(long, value_name = "FILE")]
        layout_key: PathBuf,
        /// State directory [default: .cordon/ in the current directory].
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
        /// The workspace file [default: the nearest cordon.toml].
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The directory artifact names are relative to [default: the
        /// current directory].
        #[arg(long, value_name = "DIR")]
        base: Option<PathBuf>,
    },
}

const VERIFY_EXIT_CODES: &str = "\
Exit codes:
  0  every record checked holds
  1  verification failed; each problem is printed
  2  the invocation is wrong (no such state directory, run or config)";

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
        Command::Verify {
            record,
            run,
            state,
            config,
            reexecute,
        } => verify(record, run, state, config.as_deref(), reexecute),
        Command::Export {
            command:
                ExportCommand::InToto {
                    run,
                    dir,
                    layout_key,
                    state,
                    config,
                    base,
                },
        } => export_in_toto(&run, &dir, &layout_key, state, config.as_deref(), base),
        Command::Key {
            command: KeyCommand::Generate { env, config },
        } => key_generate(&env, config.as_deref()),
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
    let secrets = crate::secrets::resolve_from_env(&plan.secrets).map_err(bad_input)?;
    let signer = match &env.records.signing_key {
        Some(path) => Some(std::sync::Arc::new(
            crate::attest::Signer::load(path).map_err(bad_input)?,
        )),
        None if env.protected => {
            return Err(bad_input(anyhow::anyhow!(
                "environment `{}` is protected, and its records must be signed, but it has no signing key\n  fix: run `cordon key generate --env {}`",
                env.name,
                env.name
            )));
        }
        None => None,
    };

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
    if signer.is_none() {
        eprintln!(
            "cordon: warning: environment `{}` has no signing key; the record will be chained but not signed, and `cordon verify` reports it (fix: `cordon key generate --env {}`)",
            env.name, env.name
        );
    }
    let run = run_step(
        &plan,
        &sandbox,
        &component,
        secrets,
        &RunOptions { quiet, signer },
    )
    .map_err(runner_fault)?;

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

fn verify(
    record: Option<PathBuf>,
    run: Option<String>,
    state: Option<PathBuf>,
    config: Option<&Path>,
    reexecute: bool,
) -> Result<u8, Failure> {
    use crate::verify::Scope;
    let (state_dir, scope) = match (record, run) {
        (Some(file), _) => {
            let id = file
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
                .filter(|n| !n.ends_with(".dsse"))
                .ok_or_else(|| {
                    bad_input(anyhow::anyhow!(
                        "{} is not a record file (`<run id>.json`)",
                        file.display()
                    ))
                })?
                .to_string();
            let records = crate::fsutil::resolve(&file)
                .map_err(bad_input)?
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            if records.file_name().is_none_or(|n| n != "records") {
                return Err(bad_input(anyhow::anyhow!(
                    "{} is not inside a state directory's `records/` folder",
                    file.display()
                )));
            }
            let state = records.parent().map(Path::to_path_buf).unwrap_or_default();
            (state, Scope::Run(id))
        }
        (None, run) => (
            state.unwrap_or_else(|| PathBuf::from(".cordon")),
            run.map_or(Scope::All, Scope::Run),
        ),
    };
    let cwd = std::env::current_dir().map_err(runner_fault)?;
    let workspace = WorkspaceConfig::discover(config, &cwd).map_err(bad_input)?;
    let mut verdict = crate::verify::verify(&state_dir, &workspace, &scope).map_err(bad_input)?;
    if reexecute {
        reexecute_all(&state_dir, &scope, &mut verdict)?;
    }
    for f in &verdict.findings {
        println!("{f}");
    }
    if verdict.findings.is_empty() {
        eprintln!(
            "cordon: verified {} record{}: signatures, chain and outputs hold",
            verdict.records,
            if verdict.records == 1 { "" } else { "s" }
        );
        Ok(0)
    } else {
        eprintln!(
            "cordon: verification failed: {} problem{} ({} record{} checked)",
            verdict.findings.len(),
            if verdict.findings.len() == 1 { "" } else { "s" },
            verdict.records,
            if verdict.records == 1 { "" } else { "s" }
        );
        Ok(1)
    }
}

/// Re-runs every record in `scope`, adds what differs to `verdict`, and
/// says which runs reproduced.
fn reexecute_all(
    state_dir: &Path,
    scope: &crate::verify::Scope,
    verdict: &mut crate::verify::Verdict,
) -> Result<(), Failure> {
    let cache_dir = std::env::var_os("CORDON_COMPILE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| state_dir.join("compiled"));
    let sandbox = Sandbox::new(Some(cache_dir)).map_err(runner_fault)?;
    let report =
        crate::reexec::reexecute_scope(state_dir, scope, &sandbox).map_err(runner_fault)?;
    for (run, files) in report.reproduced {
        eprintln!("cordon: record {run}: reproducible ({files} output files identical)");
    }
    verdict.findings.extend(report.findings);
    Ok(())
}

fn export_in_toto(
    run: &str,
    dir: &Path,
    layout_key: &Path,
    state: Option<PathBuf>,
    config: Option<&Path>,
    base: Option<PathBuf>,
) -> Result<u8, Failure> {
    let state = state.unwrap_or_else(|| PathBuf::from(".cordon"));
    let cwd = std::env::current_dir().map_err(runner_fault)?;
    let workspace = WorkspaceConfig::discover(config, &cwd).map_err(bad_input)?;
    // Only a record that verifies is worth exporting.
    let verdict = crate::verify::verify(
        &state,
        &workspace,
        &crate::verify::Scope::Run(run.to_string()),
    )
    .map_err(bad_input)?;
    if let Some(f) = verdict.findings.first() {
        return Err(bad_input(anyhow::anyhow!(
            "the records do not verify ({f}); run `cordon verify` for every problem"
        )));
    }
    let path = crate::chain::record_path(&state.join("records"), run);
    let record: serde_json::Value = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| bad_input(anyhow::anyhow!("cannot read {}", path.display())))?;
    let env_name = record["environment"].as_str().unwrap_or("");
    let env = workspace.env(env_name).map_err(bad_input)?;
    let functionary = env
        .records
        .signing_key
        .as_deref()
        .ok_or_else(|| {
            bad_input(anyhow::anyhow!(
                "environment `{env_name}` has no signing key to sign the link with"
            ))
        })
        .and_then(|p| crate::attest::Signer::load(p).map_err(bad_input))?;
    let layout_signer = crate::attest::Signer::load(layout_key).map_err(bad_input)?;
    let base = crate::fsutil::resolve(&base.unwrap_or(cwd)).map_err(bad_input)?;
    let out = crate::export::export(&record, &functionary, &layout_signer, &base, dir)
        .map_err(|e| bad_input(anyhow::anyhow!(e)))?;
    eprintln!(
        "cordon: wrote {} and {}",
        out.link.display(),
        out.layout.display()
    );
    Ok(0)
}

fn key_generate(env: &str, config: Option<&Path>) -> Result<u8, Failure> {
    let cwd = std::env::current_dir().map_err(runner_fault)?;
    let config_path = config
        .map(Path::to_path_buf)
        .or_else(|| crate::config::find(&cwd))
        .unwrap_or_else(|| cwd.join(crate::config::FILE_NAME));
    let g = crate::keys::generate_for_env(&config_path, env).map_err(|e| match e {
        crate::keys::KeyError::Invalid(_) => bad_input(e),
        crate::keys::KeyError::Io(..) => runner_fault(e),
    })?;
    eprintln!(
        "cordon: environment `{env}` now signs its records with {} (keyid {}); public key {} is trusted in {}",
        g.private.display(),
        g.keyid,
        g.public.display(),
        config_path.display()
    );
    Ok(0)
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
