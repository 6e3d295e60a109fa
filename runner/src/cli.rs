//! The command line: argument parsing and exit codes, nothing else. Each
//! command calls the library and turns its result into a message and an
//! exit code.

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use cordon_core::digest::HashIndex;
use cordon_core::locations::StateDir;
use cordon_core::sanitize::{escape_for_terminal, escape_lines};
use cordon_engine::exec::{RunOptions, run_step};
use cordon_engine::scheduler::{PipelineOptions, run_pipeline};
use cordon_manifest::config::WorkspaceConfig;
use cordon_manifest::manifest::{Manifest, ManifestError};
use cordon_manifest::pipeline::{Pipeline, PipelinePlan, is_pipeline_file};
use cordon_manifest::plan::{PlanContext, plan_step};
use cordon_record::record::Publication;
use cordon_sandbox::{Sandbox, SandboxError, SandboxOptions, StepComponent};
use promote_cmd::{CardArgs, PROMOTE_EXIT_CODES, PostureArgs, PromoteArgs};
use secret_cmd::{SecretCommand, records, secret};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

mod promote_cmd;
mod secret_cmd;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the step failed: non-zero exit, trap, or a limit (fuel, memory, timeout, output);
     for a pipeline, at least one step failed or was skipped
  2  the invocation, manifest, pipeline, component, policy or a secret is wrong,
     or policy refused the run; nothing ran
  3  the runner itself failed (for example the disk is full); earlier outputs
     and records are left intact
130  interrupted (Ctrl-C, SIGTERM, SIGHUP): running steps were stopped, nothing
     partial was published, their records say `interrupted`, and vault tokens
     were revoked. A second signal aborts at once (still revoking tokens)";

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
    /// Format of the runner's own diagnostics.
    #[arg(long, value_enum, default_value = "text", global = true)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// JSON lines, for log collectors.
    Json,
}

/// Where to look for the workspace and state (shared by several commands).
#[derive(clap::Args, Debug, Clone)]
struct Where {
    /// The environment, as defined in cordon.toml.
    #[arg(long, value_name = "NAME", default_value = cordon_manifest::config::DEFAULT_ENV)]
    env: String,
    /// The workspace file [default: the nearest cordon.toml above the
    /// manifest or pipeline, if any].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// State directory for records, logs, staging, the content store and
    /// the compiled cache [default: $CORDON_STATE, else .cordon/ beside the
    /// nearest cordon.toml above the manifest or pipeline, else beside it].
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run one step (a capability manifest) or a whole pipeline.
    #[command(after_help = EXIT_CODES)]
    Run {
        /// A step's capability manifest, or a pipeline file (TOML).
        file: PathBuf,
        #[command(flatten)]
        at: Where,
        /// Do not stream the steps' stdout/stderr (they are still captured).
        #[arg(short, long)]
        quiet: bool,
        /// Most steps running at once [default: the number of cores].
        #[arg(short, long, value_name = "N")]
        jobs: Option<usize>,
        /// After a step fails, start no further steps.
        #[arg(long)]
        fail_fast: bool,
        /// Run every step even when the action cache has its outputs.
        #[arg(long)]
        no_cache: bool,
        /// Write a report: `junit=FILE` or `json=FILE` (repeatable).
        #[arg(long, value_name = "KIND=FILE")]
        report: Vec<String>,
        /// Run despite policy violations, where the environment allows
        /// break-glass (`[env.NAME.policy] break-glass = true`). The
        /// justification and every overridden violation go into the records.
        #[arg(long, value_name = "JUSTIFICATION")]
        break_glass: Option<String>,
        /// Run only this step of the pipeline, on this machine: the outputs
        /// of the steps it depends on are taken from the environment's
        /// shared store, by the digests in their verified records.
        #[arg(long, value_name = "NAME")]
        step: Option<String>,
    },
    /// Evaluate policy over a pipeline or step without running anything.
    ///
    /// Every violation names the step, the rule, why and how to fix it.
    #[command(after_help = CHECK_EXIT_CODES)]
    Check {
        /// A pipeline file or a step's manifest.
        file: PathBuf,
        #[command(flatten)]
        at: Where,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: CheckFormat,
    },
    /// Sign an approval of a step's manifest and component with a
    /// reviewer's key.
    ///
    /// The approval binds the manifest's sha256 and the component digest
    /// it pins; any change to either voids it. It is kept beside the
    /// manifest in `<stem>.approvals.json`.
    Approve {
        /// The step's capability manifest.
        manifest: PathBuf,
        /// The reviewer's private key (PKCS#8 PEM, mode 0600), as made by
        /// `cordon key reviewer`.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
    },
    /// Print a pipeline's resolved DAG and every grant, without running.
    Plan {
        /// A pipeline file or a step's manifest.
        file: PathBuf,
        #[command(flatten)]
        at: Where,
    },
    /// Re-publish the outputs of an earlier run from the content store,
    /// after checking their digests (rollback). The record is verified
    /// first, as `cordon verify --run` does (chain and signature); one that
    /// does not verify restores nothing (exit 1).
    Restore {
        /// The run id (the record's file name without `.json`), `latest`
        /// (the newest run) or `latest:STEP` (the newest run of step STEP).
        #[arg(long)]
        run: String,
        /// State directory holding the run's record [default: $CORDON_STATE,
        /// else .cordon/ beside the nearest cordon.toml above the current
        /// directory, else in it].
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
        /// The workspace file [default: the nearest cordon.toml above the
        /// state directory, else above the current directory].
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// A public key (PEM) to trust for every environment (repeatable),
        /// as for `cordon verify`.
        #[arg(long = "trusted-key", value_name = "FILE")]
        trusted_keys: Vec<PathBuf>,
        /// Bring back what the run's outputs replaced (data its write
        /// mounts held that no record named, kept by `existing = "keep"`,
        /// or by an earlier restore) instead of its outputs.
        #[arg(long)]
        replaced: bool,
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
        /// Verify the shared chain of this environment's store
        /// (`[env.NAME.store]`) instead of a local state directory: every
        /// entry linked, every record signed by a key trusted for it.
        #[arg(long, value_name = "ENV", conflicts_with_all = ["record", "run", "state", "since", "head", "reexecute"])]
        shared: Option<String>,
        /// Deprecated spelling of --shared (for every other command --env
        /// names the environment a command works in; here it meant the
        /// shared store's).
        #[arg(long, value_name = "ENV", hide = true, conflicts_with_all = ["shared", "record", "run", "state", "since", "head", "reexecute"])]
        env: Option<String>,
        /// One run: its id, `latest` (the newest run) or `latest:STEP` (the
        /// newest run of step STEP).
        #[arg(long, value_name = "ID", conflicts_with = "record")]
        run: Option<String>,
        /// State directory [default: $CORDON_STATE, else .cordon/ beside the
        /// nearest cordon.toml above the current directory, else in it].
        #[arg(long, value_name = "DIR", conflicts_with = "record")]
        state: Option<PathBuf>,
        /// The workspace file that defines the records' environments
        /// [default: the nearest cordon.toml above the state directory, else
        /// above the current directory].
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// A public key (PEM) to trust for every environment (repeatable).
        /// Also trusted: `<secrets home>/trusted/<env>/*.pub` and the files
        /// listed in CORDON_TRUSTED_KEYS (`:`-separated).
        #[arg(long = "trusted-key", value_name = "FILE")]
        trusted_keys: Vec<PathBuf>,
        /// Check only this run (an id, `latest` or `latest:STEP`) and every
        /// later one (the whole chain is still checked): for an environment
        /// that began signing after its first records. Says how many earlier
        /// records were skipped.
        #[arg(long, value_name = "ID", conflicts_with_all = ["record", "run"])]
        since: Option<String>,
        /// A signed chain head from `cordon records head`, kept elsewhere:
        /// fail if the chain no longer reaches it (newest records removed)
        /// or holds another entry there.
        #[arg(long, value_name = "FILE")]
        head: Option<PathBuf>,
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
    /// Let an artifact of a pipeline run into a higher environment: verify
    /// its whole provenance against the target's trust roots and promotion
    /// policy, copy it by digest into the target's data root and sign a
    /// SLSA Verification Summary Attestation (docs/promotion.md).
    #[command(after_help = PROMOTE_EXIT_CODES)]
    Promote(PromoteArgs),
    /// Write the provenance card of a pipeline run: datasets, steps with
    /// their components, grants, policy decisions and signatures, metrics,
    /// artifacts and promotions, from the records.
    Card(CardArgs),
    /// Answer an operator's questions about an environment from its
    /// records: runs, runs with every check passing, break-glass runs and
    /// their justifications, unsigned or unverifiable records, secret
    /// versions in use.
    Posture(PostureArgs),
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
    ///
    /// With `--break-glass`: the runs that went ahead despite policy
    /// violations, with their justifications. `cordon records head` prints
    /// the chain's newest entry, signed, to keep elsewhere.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Records {
        #[command(subcommand)]
        command: Option<RecordsCommand>,
        /// The secret's name.
        #[arg(long, value_name = "NAME", required_unless_present = "break_glass")]
        secret: Option<String>,
        /// List the break-glass runs instead.
        #[arg(long, conflicts_with_all = ["secret", "version"])]
        break_glass: bool,
        /// Only runs that used this version of it.
        #[arg(long, value_name = "N")]
        version: Option<String>,
        /// State directory holding `records/` [default: $CORDON_STATE, else
        /// .cordon/ beside the nearest cordon.toml above the current
        /// directory, else in it].
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
    },
    /// Finish or roll back what a killed runner left in a state directory.
    ///
    /// Runs whose record is chained get their publication completed from
    /// the staged outputs; runs stopped before their record was written get
    /// their staging removed (nothing of them was visible); records the
    /// chain does not list move to `records/orphaned/`; leftover staging and
    /// publication trees are removed. Runs still going are left alone.
    #[command(after_help = REPAIR_EXIT_CODES)]
    Repair {
        /// State directory [default: $CORDON_STATE, else .cordon/ beside the
        /// nearest cordon.toml above the current directory, else in it].
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
        /// List what would be done, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// The environment whose record key signs the repair record that is
        /// appended to the chain.
        #[arg(long, value_name = "NAME", default_value = cordon_manifest::config::DEFAULT_ENV)]
        env: String,
        /// The workspace file [default: the nearest cordon.toml above the
        /// state directory, else above the current directory].
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Write the current digest of a manifest's component into the manifest.
    ///
    /// Run it after building a step you have reviewed; the digest change
    /// shows up in code review like any other change.
    #[command(after_help = PIN_EXIT_CODES)]
    Pin {
        /// The steps' capability manifests (TOML).
        #[arg(required = true, value_name = "MANIFEST")]
        manifests: Vec<PathBuf>,
        /// Only compare: change nothing, and exit 1 naming every manifest
        /// whose pinned digest is not its component's (for CI).
        #[arg(long)]
        check: bool,
    },
    /// Say in plain language what each step of a manifest or pipeline may
    /// do in an environment: data, secrets, network, limits, risk flags.
    ///
    /// Reads only the manifests and cordon.toml (not the components, the
    /// data, the secrets or the record keys), so it runs on any checkout.
    /// Host paths are shown relative to the current directory.
    #[command(after_help = REVIEW_EXIT_CODES)]
    Audit {
        /// A step's capability manifest, or a pipeline file (TOML).
        file: PathBuf,
        /// The environment whose variables and secret provider apply.
        #[arg(long, value_name = "NAME", default_value = cordon_manifest::config::DEFAULT_ENV)]
        env: String,
        /// The workspace file [default: the nearest cordon.toml above the
        /// manifest or pipeline, if any].
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Output format; `markdown` is meant for a pull-request comment.
        #[arg(long, value_enum, default_value = "text")]
        format: cordon_review::review::Format,
    },
    /// List every capability change between two versions of a manifest or
    /// pipeline, escalations first; exit 1 when anything escalates.
    ///
    /// `cordon diff OLD NEW` compares two files; `cordon diff --git REV
    /// FILE` compares FILE (and, for a pipeline, its manifests) as it is at
    /// git revision REV with the working tree. Components are not read.
    #[command(after_help = DIFF_EXIT_CODES)]
    Diff {
        /// OLD and NEW, or with --git the one file to compare.
        #[arg(value_name = "FILE", required = true, num_args = 1..=2)]
        files: Vec<PathBuf>,
        /// Compare FILE as it is at this git revision with the working tree.
        #[arg(long, value_name = "REV")]
        git: Option<String>,
        /// Output format; `markdown` is meant for a pull-request comment.
        #[arg(long, value_enum, default_value = "text")]
        format: cordon_review::review::Format,
    },
    /// Show a component's digest, size, producers, imports and exports.
    ///
    /// With --manifest, also the grants the component cannot use (it does
    /// not import the interface: over-privilege to remove) and the imports
    /// the manifest does not grant (denied at run time).
    #[command(after_help = REVIEW_EXIT_CODES)]
    Inspect {
        /// The component (.wasm).
        component: PathBuf,
        /// The step's capability manifest to check the component against.
        #[arg(long, value_name = "FILE")]
        manifest: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: cordon_review::review::Format,
    },
    /// Print a shell completion script for `cordon` to stdout.
    ///
    /// bash: `cordon completions bash > ~/.local/share/bash-completion/completions/cordon`;
    /// zsh: `cordon completions zsh > "${fpath[1]}/_cordon"`;
    /// fish: `cordon completions fish > ~/.config/fish/completions/cordon.fish`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) to stdout: `cordon man | man -l -`, or
    /// `cordon man > /usr/local/share/man/man1/cordon.1`.
    Man,
    /// Create a step project (source, capability manifest with a purpose on
    /// every mount, native unit test, README, the WIT) that builds with
    /// public registries only.
    New {
        /// The step's name: lower-case letters, digits and `-`.
        name: String,
        /// The step's language.
        #[arg(long, value_enum)]
        lang: LangArg,
        /// Where to create it (missing or empty) [default: ./NAME].
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Build a step made by `cordon new` for its language (cargo for Rust,
    /// componentize-py for Python) and pin the built component's digest
    /// in its manifest.
    Build {
        /// The step's capability manifest.
        #[arg(value_name = "MANIFEST", default_value = "step.toml")]
        manifest: PathBuf,
    },
    /// Write the cordon:step WIT package this runner implements, to
    /// generate a step's bindings from.
    Wit {
        /// The directory to write it to.
        dir: PathBuf,
    },
    /// Compile a step's component ahead of time into the compile cache,
    /// so that its first run does not compile (for CI images).
    Compile {
        /// The step's capability manifest (its component must be pinned).
        manifest: PathBuf,
        /// State directory whose compile cache to fill [default: as for `run`;
        /// $CORDON_COMPILE_CACHE overrides the cache].
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
    },
}

const REPAIR_EXIT_CODES: &str = "\
Exit codes:
  0  nothing to do, or everything found was completed or rolled back
  1  something needs a person (each is named), or --dry-run found work to do
  2  the invocation is wrong
  3  repairing failed (for example the disk is full); run it again";

const PIN_EXIT_CODES: &str = "\
Exit codes:
  0  every manifest pins its component's digest (after writing it, without --check)
  1  with --check: some manifest pins another digest; each is named with the digest to pin
  2  a manifest or its component cannot be read";

const CHECK_EXIT_CODES: &str = "\
Exit codes:
  0  no violations
  2  violations (or the invocation, a manifest, a policy file is wrong)";

/// `cordon new --lang`.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum LangArg {
    /// Rust, built with cargo for `wasm32-wasip2`.
    Rust,
    /// Python, built with componentize-py.
    Python,
}

impl From<LangArg> for cordon_engine::scaffold::Lang {
    fn from(l: LangArg) -> Self {
        match l {
            LangArg::Rust => cordon_engine::scaffold::Lang::Rust,
            LangArg::Python => cordon_engine::scaffold::Lang::Python,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CheckFormat {
    /// Lines for people.
    Text,
    /// The violations, policy files and the input document.
    Json,
    /// SARIF 2.1.0, for code-scanning UIs.
    Sarif,
}

#[derive(Subcommand, Debug)]
enum KeyCommand {
    /// Create an environment's ed25519 record-signing key.
    ///
    /// The private key is kept in the environment's secret store (the
    /// `local` provider's encrypted store, outside the workspace), where
    /// no step grant can reach it. The public key is written to
    /// `<secrets home>/trusted/<env>/<keyid>.pub`, which `cordon verify`
    /// trusts for this user; hand that file to other verifiers. Nothing in
    /// the workspace is written, and an existing key is never replaced.
    Generate {
        /// The environment.
        #[arg(long, value_name = "NAME")]
        env: String,
        /// The workspace file [default: the nearest cordon.toml above the
        /// current directory, if any].
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Succeed without change when the environment already has a key.
        #[arg(long)]
        if_missing: bool,
    },
    /// Create a reviewer's ed25519 key pair for approvals.
    ///
    /// Writes `NAME.key` (PKCS#8 PEM, mode 0600; keep it with the
    /// reviewer) and `NAME.pub` into `<secrets home>/reviewers/` (the
    /// user's configuration, outside every workspace) and prints where.
    /// List the public key under `[env.E.policy] reviewers` in cordon.toml,
    /// or copy it into `<secrets home>/trusted/E/reviewers/` to trust it for
    /// this user only. Existing files are never replaced.
    Reviewer {
        /// The reviewer's name.
        name: String,
        /// Write the files here instead; refused inside a git work tree,
        /// where the private key would be one `git add` from a commit.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum RecordsCommand {
    /// Print the chain's newest entry (sequence and digest), signed by the
    /// environment's record key, as a DSSE envelope on stdout.
    ///
    /// Keep the file somewhere the state directory's writers cannot reach
    /// (a CI artifact, another machine). `cordon verify --head FILE` later
    /// fails if records after it were removed: a hash chain alone cannot
    /// show that its newest entries were cut off.
    Head {
        /// The environment whose key signs the head.
        #[arg(long, value_name = "NAME", default_value = cordon_manifest::config::DEFAULT_ENV)]
        env: String,
        /// State directory holding `records/` [default: $CORDON_STATE, else
        /// .cordon/ beside the nearest cordon.toml above the current
        /// directory, else in it].
        #[arg(long, value_name = "DIR")]
        state: Option<PathBuf>,
        /// The workspace file [default: the nearest cordon.toml above the
        /// state directory, else above the current directory].
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum ExportCommand {
    /// A step run or a whole pipeline run as in-toto link and layout
    /// metadata for `in-toto-verify`.
    ///
    /// Writes `<step>.<keyid prefix>.link` for the step (--run) or for every
    /// step of the pipeline run (--pipeline-run), signed with the
    /// environment's signing key, and `root.layout` (signed with
    /// --layout-key) into DIR. Artifact names are paths relative to --base;
    /// verify with `in-toto-verify --layout DIR/root.layout
    /// --verification-keys LAYOUT_KEY.pub --link-dir DIR` run in the base
    /// directory.
    InToto {
        /// The step run to export: its id, `latest` or `latest:STEP`.
        #[arg(
            long,
            value_name = "ID",
            required_unless_present = "pipeline_run",
            conflicts_with = "pipeline_run"
        )]
        run: Option<String>,
        /// The pipeline run to export: one link per step and one layout
        /// whose steps follow the lineage (the id is the name of its record
        /// under `<state>/pipelines/`, without `.json`; `latest` is the
        /// newest pipeline run, `latest:STEP` the newest that had step
        /// STEP).
        #[arg(long, value_name = "ID")]
        pipeline_run: Option<String>,
        /// Where to write the links and the layout.
        dir: PathBuf,
        /// The private key (PKCS#8 PEM) that signs the layout.
        #[arg(long, value_name = "FILE")]
        layout_key: PathBuf,
        /// State directory [default: $CORDON_STATE, else .cordon/ beside the
        /// nearest cordon.toml above the current directory, else in it].
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
    /// A pipeline as a GitHub Actions workflow: one job per step, `needs`
    /// from the lineage, each job running `cordon run --step NAME` with the
    /// environment's shared store.
    ///
    /// The workflow has least-privilege permissions, pinned actions and no
    /// secret value: the store's credentials come from the repository's
    /// secrets of the same names. Written to stdout, or to --output.
    GithubActions {
        /// The pipeline file, as a path inside the repository.
        pipeline: PathBuf,
        #[command(flatten)]
        at: Where,
        /// Write the workflow here (e.g. .github/workflows/cordon.yml).
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
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

/// Several files' errors, kept typed so that `check --format sarif` can
/// report each problem at its line; shown one `error:` per problem.
#[derive(Debug)]
struct ManifestErrors(Vec<ManifestError>);

impl std::fmt::Display for ManifestErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text: Vec<String> = self.0.iter().map(|e| e.to_string()).collect();
        f.write_str(&text.join("\nerror: "))
    }
}

impl std::error::Error for ManifestErrors {}

fn bad_files(errors: Vec<ManifestError>) -> Failure {
    bad_input(ManifestErrors(errors))
}

/// The manifest, pipeline or configuration errors a failure carries, if
/// that is what it is.
fn manifest_errors(f: &Failure) -> Option<Vec<&ManifestError>> {
    if let Some(ManifestErrors(all)) = f.error.downcast_ref::<ManifestErrors>() {
        return Some(all.iter().collect());
    }
    f.error.downcast_ref::<ManifestError>().map(|e| vec![e])
}

/// `path` as a SARIF URI: relative to the current directory when it lies
/// below it.
fn sarif_uri(path: &Path) -> String {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let abs = cordon_core::fsutil::resolve(path).unwrap_or_else(|_| path.to_path_buf());
    abs.strip_prefix(&cwd)
        .map(Path::to_path_buf)
        .unwrap_or(abs)
        .to_string_lossy()
        .into_owned()
}

/// Parses the arguments, runs the command, returns the exit code.
/// Raises the soft limit on open descriptors to the hard limit.
///
/// A step's open files and directories are the runner's descriptors; with
/// the common soft limit of 1,024 or 4,096, a step holding many of them
/// left the runner unable to open what it needs to measure and check the
/// outputs (which then failed open). The sandbox caps a step's resources
/// (`sandbox::MAX_RESOURCES`) well below the raised limit, so the runner
/// always keeps descriptors of its own.
fn raise_descriptor_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The vault provider asks for the handler when a token is issued (so a
    // signal revokes it) and reads the token to report revocation; the
    // handler itself stays the binary's.
    cordon_secrets::vault::set_signal_hooks(cordon_secrets::vault::SignalHooks {
        session_started: crate::interrupt::install,
        interrupted: crate::interrupt::flag().clone(),
    });
    raise_descriptor_limit();
    let filter = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let env_filter =
        tracing_subscriber::EnvFilter::try_from_env("CORDON_LOG").unwrap_or_else(|_| filter.into());
    // Colours only on a terminal: a log file or a CI system must get plain
    // text, and the runner's own lines hold no escape a reader must trust.
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => fmt.without_time().init(),
        LogFormat::Json => {
            // Every line the runner writes becomes one JSON event, and the
            // tracing events put their message at the top level too.
            cordon_core::log::set_json(true);
            fmt.json().flatten_event(true).init()
        }
    }
    // A panic is a runner bug; it still ends with the runner-failure exit
    // code and a message (the panic hook has printed where), never with a
    // crash status a CI system would read as something else.
    warn_private_keys_here();
    let command = cli.command;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || dispatch(command)))
        .unwrap_or_else(|_| {
            Err(runner_fault(anyhow::anyhow!(
                "the runner failed (a bug; please report it)"
            )))
        });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            // Errors quote manifests, paths and what steps wrote: every line
            // is escaped, so none can draw on the terminal.
            say!("error: {}", escape_lines(&format!("{:#}", f.error)));
            ExitCode::from(f.code)
        }
    }
}

/// Warns, before any command, of private keys inside the workspace the
/// current directory belongs to (the nearest `cordon.toml` above it): left
/// there by older versions of `cordon key reviewer`, or put there by hand,
/// they are one `git add` or one mount away from leaking. A bounded scan
/// (see [`cordon_engine::keys::private_keys_in_workspace`]).
fn warn_private_keys_here() {
    let Some(config) = std::env::current_dir()
        .ok()
        .and_then(|cwd| cordon_manifest::config::find(&cwd))
    else {
        return;
    };
    let Some(workspace) = config.parent() else {
        return;
    };
    for key in cordon_engine::keys::private_keys_in_workspace(workspace) {
        say!(
            "cordon: warning: {}",
            cordon_engine::keys::private_key_warning(&key)
        );
    }
}

/// Runs one parsed command.
fn dispatch(command: Command) -> Result<u8, Failure> {
    match command {
        Command::Run {
            file,
            at,
            quiet,
            jobs,
            fail_fast,
            no_cache,
            report,
            break_glass,
            step,
        } => {
            let bg = break_glass.as_deref();
            if is_pipeline_file(&file) {
                let opts = PipelineRun {
                    quiet,
                    jobs,
                    fail_fast,
                    no_cache,
                    step: step.as_deref(),
                };
                run_pipeline_cmd(&file, &at, &opts, &report, bg)
            } else if step.is_some() {
                Err(bad_input(anyhow::anyhow!(
                    "--step names a step of a pipeline, but {} is a step's manifest\n  fix: give the pipeline file, or drop --step",
                    file.display()
                )))
            } else {
                run_step_cmd(&file, &at, quiet, no_cache, bg)
            }
        }
        Command::Check { file, at, format } => check_cmd(&file, &at, format),
        Command::Approve { manifest, key } => approve_cmd(&manifest, &key),
        Command::Key {
            command: KeyCommand::Reviewer { name, dir },
        } => key_reviewer(&name, dir.as_deref()),
        Command::Plan { file, at } => plan_cmd(&file, &at),
        Command::Restore {
            run,
            state,
            config,
            trusted_keys,
            replaced,
        } => restore_cmd(
            &run,
            &state_dir(state, Path::new("")),
            config.as_deref(),
            trusted_keys,
            replaced,
        ),
        Command::Pin { manifests, check } => pin(&manifests, check),
        Command::Repair {
            state,
            dry_run,
            env,
            config,
        } => repair_cmd(state, dry_run, &env, config.as_deref()),
        Command::Verify {
            shared: Some(env),
            config,
            trusted_keys,
            ..
        } => verify_shared(&env, config.as_deref(), trusted_keys),
        Command::Verify {
            env: Some(env),
            config,
            trusted_keys,
            ..
        } => {
            say!(
                "cordon: note: `verify --env` is deprecated; it is `verify --shared {env}` (the shared store's chain)"
            );
            verify_shared(&env, config.as_deref(), trusted_keys)
        }
        Command::Verify {
            record,
            run,
            state,
            config,
            trusted_keys,
            since,
            head,
            reexecute,
            env: None,
            shared: None,
        } => verify(
            record,
            run.map(cordon_record::verify::Scope::Run)
                .or(since.map(cordon_record::verify::Scope::Since)),
            state,
            config.as_deref(),
            trusted_keys,
            head.as_deref(),
            reexecute,
        ),
        Command::Export {
            command:
                ExportCommand::InToto {
                    run,
                    pipeline_run,
                    dir,
                    layout_key,
                    state,
                    config,
                    base,
                },
        } => export_in_toto(
            run.map(ExportTarget::Run)
                .or(pipeline_run.map(ExportTarget::PipelineRun)),
            &dir,
            &layout_key,
            state,
            config.as_deref(),
            base,
        ),
        Command::Export {
            command:
                ExportCommand::GithubActions {
                    pipeline,
                    at,
                    output,
                },
        } => export_github_actions(&pipeline, &at, output.as_deref()),
        Command::Key {
            command:
                KeyCommand::Generate {
                    env,
                    config,
                    if_missing,
                },
        } => key_generate(&env, config.as_deref(), if_missing),
        Command::Secret { action } => secret(action),
        Command::Promote(args) => promote_cmd::promote(args),
        Command::Card(args) => promote_cmd::card(args),
        Command::Posture(args) => promote_cmd::posture(args),
        Command::Records {
            command: Some(RecordsCommand::Head { env, state, config }),
            ..
        } => records_head(&env, state, config.as_deref()),
        Command::Records {
            break_glass: true,
            state,
            ..
        } => break_glass_records(state),
        Command::Records {
            secret,
            version,
            state,
            ..
        } => records(
            secret.as_deref().unwrap_or_default(),
            version.as_deref(),
            state,
        ),
        Command::Audit {
            file,
            env,
            config,
            format,
        } => audit_cmd(&file, &env, config.as_deref(), format),
        Command::Diff { files, git, format } => diff_cmd(&files, git.as_deref(), format),
        Command::Inspect {
            component,
            manifest,
            format,
        } => inspect_cmd(&component, manifest.as_deref(), format),
        Command::Completions { shell } => {
            use clap::CommandFactory as _;
            let mut cmd = Cli::command();
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd, "cordon", &mut out);
            out_raw!("{}", String::from_utf8_lossy(&out));
            Ok(0)
        }
        Command::Man => {
            use clap::CommandFactory as _;
            let mut out = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut out)
                .map_err(runner_fault)?;
            out_raw!("{}", String::from_utf8_lossy(&out));
            Ok(0)
        }
        Command::New { name, lang, dir } => scaffolded(cordon_engine::scaffold::new_step(
            &name,
            lang.into(),
            dir.as_deref(),
        )),
        Command::Build { manifest } => scaffolded(cordon_engine::scaffold::build(&manifest)),
        Command::Wit { dir } => scaffolded(cordon_engine::scaffold::wit(&dir)),
        Command::Compile { manifest, state } => scaffolded(cordon_engine::scaffold::compile(
            &manifest,
            Some(&state_dir(state, &dir_of(&manifest))),
        )),
    }
}

/// Says what a scaffolding command did, or turns its error into an exit
/// code (3 when the runner itself failed, 2 otherwise).
fn scaffolded<T: std::fmt::Display>(
    done: Result<T, cordon_engine::scaffold::ScaffoldError>,
) -> Result<u8, Failure> {
    match done {
        Ok(what) => {
            say!("{what}");
            Ok(0)
        }
        Err(e) if e.is_runner_fault() => Err(runner_fault(e)),
        Err(e) => Err(bad_input(e)),
    }
}

/// The state directory for a command on a file in `dir` (`""` for the
/// current directory), as [`StateDir::resolve`] finds it; a `.cordon/` that
/// older versions left beside the file is reported, not silently ignored.
fn state_dir(explicit: Option<PathBuf>, dir: &Path) -> PathBuf {
    let state = StateDir::resolve(explicit, dir);
    if let Some(leftover) = state.leftover() {
        say!("cordon: warning: {leftover}");
    }
    state.into_path()
}

fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The environment's record signer. A protected environment must have
/// one; elsewhere its absence is a warning and the records are unsigned.
fn signer_for(
    env: &cordon_manifest::config::EnvConfig,
    workspace_dir: &Path,
) -> Result<Option<Arc<cordon_record::attest::Signer>>, Failure> {
    let key = cordon_engine::keys::signer_for_run(env, workspace_dir).map_err(bad_input)?;
    Ok(key.map(|k| {
        if let Some(w) = &k.warning {
            say!("cordon: warning: {w}");
        }
        Arc::new(k.signer)
    }))
}

/// Says, once everything is checked and the run is about to start, that
/// its records will not be signed.
fn warn_unsigned(
    env: &cordon_manifest::config::EnvConfig,
    signer: &Option<Arc<cordon_record::attest::Signer>>,
) {
    if signer.is_none() {
        say!(
            "cordon: warning: environment `{}` has no signing key; records will be chained but not signed, and `cordon verify` reports them (fix: `cordon key generate --env {}`)",
            env.name,
            env.name
        );
    }
}

/// `cordon export github-actions`: the library writes the workflow; this
/// prints or saves it.
fn export_github_actions(
    pipeline: &Path,
    at: &Where,
    output: Option<&Path>,
) -> Result<u8, Failure> {
    let (plan, _, env) = plan_pipeline(pipeline, at, None)?;
    let Some(store) = &env.store else {
        return Err(bad_input(anyhow::anyhow!(
            "environment `{}` has no shared store, which the jobs need to hand outputs to each other\n  fix: add [env.{}.store] to cordon.toml (docs/scale-out.md)",
            env.name,
            env.name
        )));
    };
    // The jobs see the pipeline at the same path relative to the checkout,
    // so the path goes into the file as it is: one that is not UTF-8 would
    // be a different path there.
    let Some(file) = pipeline.to_str() else {
        return Err(bad_input(anyhow::anyhow!(
            "the pipeline path `{}` is not UTF-8, and a workflow can only name it as text\n  fix: rename the file",
            cordon_core::sanitize::escape_bytes_for_terminal(
                pipeline.as_os_str().as_encoded_bytes()
            )
        )));
    };
    let text = cordon_engine::github::workflow(&plan, file, &env.name, store).map_err(bad_input)?;
    match output {
        Some(file) => {
            std::fs::write(file, &text)
                .with_context(|| format!("cannot write {}", file.display()))
                .map_err(runner_fault)?;
            say!(
                "cordon: wrote {} ({} jobs)",
                file.display(),
                plan.steps.len()
            );
        }
        None => out!("{}", text.trim_end()),
    }
    Ok(0)
}

/// `--step NAME`: the plan and manifest of that step alone, once the
/// outputs it reads from upstream steps are published here from the store.
fn one_step(
    plan: PipelinePlan,
    mut manifests: Vec<Manifest>,
    env: &cordon_manifest::config::EnvConfig,
    remote: Option<&cordon_engine::remote::RemoteStore>,
    name: &str,
) -> Result<(PipelinePlan, Vec<Manifest>), Failure> {
    use cordon_engine::upstream;
    let i = upstream::select(&plan, name).map_err(bad_input)?;
    let remote = remote.ok_or_else(|| {
        bad_input(upstream::UpstreamError::NoStore {
            env: env.name.clone(),
        })
    })?;
    let roots = cordon_engine::keys::TrustRoots::from_process(Vec::new());
    let trusted = roots.keys_for(&env.name, Some(env)).map_err(bad_input)?;
    for w in &trusted.warnings {
        say!("cordon: warning: {w}");
    }
    let keys: Vec<_> = trusted.keys.into_iter().map(|(k, _)| k).collect();
    let taken = upstream::take_inputs(&plan, i, remote, &keys).map_err(|e| match e {
        upstream::UpstreamError::Remote(_) => runner_fault(e),
        _ => bad_input(e),
    })?;
    for t in &taken {
        say!(
            "cordon: took {} of step `{}` (run {}, {}) from the shared store into {}",
            t.guest,
            t.step,
            t.run_id,
            t.tree,
            t.host.display()
        );
    }
    let manifest = manifests.swap_remove(i);
    Ok((upstream::only(plan, i), vec![manifest]))
}

/// `cordon verify --shared NAME`: the shared chain of the environment's store,
/// from any machine, against the keys trusted for it here.
fn verify_shared(
    env_name: &str,
    config: Option<&Path>,
    trusted_keys: Vec<PathBuf>,
) -> Result<u8, Failure> {
    let here = std::env::current_dir().map_err(bad_input)?;
    let workspace = WorkspaceConfig::discover(config, &here).map_err(bad_input)?;
    let env = workspace.env(env_name).map_err(bad_input)?;
    let Some(remote) = remote_for(env)? else {
        return Err(bad_input(anyhow::anyhow!(
            "environment `{env_name}` has no shared store\n  fix: add [env.{env_name}.store] to cordon.toml, or verify a local state directory with `cordon verify --state DIR`"
        )));
    };
    let roots = cordon_engine::keys::TrustRoots::from_process(trusted_keys);
    let trusted = roots.keys_for(env_name, Some(env)).map_err(bad_input)?;
    for w in &trusted.warnings {
        say!("cordon: warning: {w}");
    }
    let keys: Vec<_> = trusted.keys.into_iter().map(|(k, _)| k).collect();
    let report = remote.verify_chain(&keys).map_err(runner_fault)?;
    for p in &report.problems {
        out!("{p}");
    }
    say!(
        "cordon: shared chain of `{env_name}` in {}: {} entries, {} signed by a trusted key, {} problem{}",
        remote.url(),
        report.entries,
        report.signed,
        report.problems.len(),
        if report.problems.len() == 1 { "" } else { "s" }
    );
    Ok(if report.problems.is_empty() { 0 } else { 1 })
}

/// The environment's shared store, opened and checked before anything
/// runs: missing or refused credentials are the user's to fix (exit 2), a
/// store that cannot be reached is the runner's (exit 3).
fn remote_for(
    env: &cordon_manifest::config::EnvConfig,
) -> Result<Option<Arc<cordon_engine::remote::RemoteStore>>, Failure> {
    use cordon_engine::remote::{RemoteError, RemoteStore};
    let Some(config) = &env.store else {
        return Ok(None);
    };
    // The keys trusted here for the environment's records (never only
    // cordon.toml's): a hit from the store must be signed by one.
    let roots = cordon_engine::keys::TrustRoots::from_process(Vec::new());
    let trusted = roots.keys_for(&env.name, Some(env)).map_err(bad_input)?;
    let keys: Vec<_> = trusted.keys.into_iter().map(|(k, _)| k).collect();
    match RemoteStore::open(env, config) {
        Ok(r) => Ok(Some(Arc::new(r.with_trusted(keys)))),
        Err(
            e @ (RemoteError::MissingCredentials { .. }
            | RemoteError::SecretCredentials { .. }
            | RemoteError::Refused { .. }),
        ) => Err(bad_input(e)),
        Err(e) => Err(runner_fault(e)),
    }
}

fn sandbox_for(state_dir: &Path) -> Result<Sandbox, Failure> {
    sandbox_with(state_dir, SandboxOptions::default())
}

fn sandbox_with(state_dir: &Path, options: SandboxOptions) -> Result<Sandbox, Failure> {
    cordon_core::fsutil::create_private_dir(state_dir)
        .with_context(|| format!("cannot create the state directory {}", state_dir.display()))
        .map_err(runner_fault)?;
    let cache_dir = cordon_manifest::plan::compile_cache_dir(state_dir);
    Sandbox::with_options(Some(cache_dir), options).map_err(runner_fault)
}

/// Steps from which a pipeline runs in a pooled sandbox. Setting the pool
/// up costs about 0.5 ms of CPU, which reused slots win back at about 8
/// trivial steps (measured, 30 alternating rounds each: 2 and 4 steps
/// slower pooled, 8 even, 16 faster at 13.1 against 13.9 ms).
const POOLED_FROM_STEPS: usize = 16;

/// The sandbox a pipeline runs in, with its steps' components loaded.
///
/// A pipeline of many steps runs in a sandbox with the pooling allocator
/// (see [`SandboxOptions::pooling`]): its slots are set up once and zeroed
/// in place between steps. That sandbox loads only from the compile
/// cache; when a component is not there yet, does not fit a slot, or more
/// steps run at once than there are slots, the pipeline gets the sandbox a
/// single run uses instead, so pooling never refuses or changes a step.
fn pipeline_sandbox(
    state_dir: &Path,
    steps: &[cordon_manifest::plan::StepPlan],
    jobs: usize,
    manifests: &[Manifest],
) -> Result<(Sandbox, Vec<StepComponent>), Failure> {
    let concurrent = u32::try_from(jobs.clamp(1, steps.len().max(1))).unwrap_or(u32::MAX);
    if steps.len() >= POOLED_FROM_STEPS && concurrent <= cordon_sandbox::POOL_SLOTS {
        let options = SandboxOptions {
            pooling: true,
            pool_max_memory: steps.iter().map(|s| s.limits.memory).max().unwrap_or(0),
            pool_slots: concurrent,
            cached_only: true,
            ..SandboxOptions::default()
        };
        // The pool reserves its address space at once: under a limit on
        // it (`ulimit -v`) that can fail where single instances fit.
        match sandbox_with(state_dir, options) {
            Ok(pooled) => match cordon_engine::scheduler::load_components(&pooled, steps) {
                Ok(components) => {
                    tracing::debug!("the pipeline's steps run in pooled slots");
                    return Ok((pooled, components));
                }
                Err((i, e)) => tracing::debug!(
                    "the pipeline runs without the pooling allocator: step `{}`: {}",
                    steps[i].name,
                    escape_lines(&e.to_string())
                ),
            },
            Err(f) => tracing::debug!(
                "the pipeline runs without the pooling allocator: {}",
                escape_lines(&format!("{:#}", f.error))
            ),
        }
    }
    let sandbox = sandbox_for(state_dir)?;
    let components = cordon_engine::scheduler::load_components(&sandbox, steps)
        .map_err(|(i, e)| component_error(e, &steps[i], &manifests[i]))?;
    Ok((sandbox, components))
}

fn load_component(
    sandbox: &Sandbox,
    plan: &cordon_manifest::plan::StepPlan,
    manifest: &Manifest,
) -> Result<StepComponent, Failure> {
    sandbox
        .load_step(
            &plan.component_digest,
            &plan.component_bytes,
            plan.network.is_some(),
            plan.floats,
        )
        .map_err(|e| component_error(e, plan, manifest))
}

/// A component that cannot be loaded: an invalid one is the manifest's
/// problem (named at its `component` key); anything else is the runner's.
fn component_error(
    e: SandboxError,
    plan: &cordon_manifest::plan::StepPlan,
    manifest: &Manifest,
) -> Failure {
    match e {
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
    }
}

fn run_step_cmd(
    manifest_path: &Path,
    at: &Where,
    quiet: bool,
    no_cache: bool,
    break_glass: Option<&str>,
) -> Result<u8, Failure> {
    let manifest = Manifest::load(manifest_path).map_err(bad_input)?;
    let workspace =
        WorkspaceConfig::discover(at.config.as_deref(), &manifest.dir).map_err(bad_input)?;
    let env = workspace.env(&at.env).map_err(bad_input)?;
    let state_dir = state_dir(at.state.clone(), &manifest.dir);
    // One index for planning (an unchanged component is not re-hashed) and
    // for the run's inputs; `--no-cache` trusts nothing remembered.
    let index = Arc::new(HashIndex::load(&state_dir));
    let ctx = PlanContext {
        env,
        workspace_dir: &workspace.dir,
        state_dir: &state_dir,
        produced: &[],
        hash_index: (!no_cache).then_some(&*index),
    };
    let plan = plan_step(&manifest, &ctx).map_err(bad_input)?;
    let remote = remote_for(env)?;
    let signer = signer_for(env, &workspace.dir)?;
    recover_state(&state_dir, &at.env, signer.as_deref())?;
    let policy = policy_gate(
        env,
        std::slice::from_ref(&manifest),
        std::slice::from_ref(&plan),
        &[true],
        break_glass,
        &state_dir,
    )?;
    promote_cmd::require_promoted(env, std::slice::from_ref(&plan))?;
    cordon_engine::outputs::existing::refuse_unrecorded(
        std::slice::from_ref(&plan),
        (!no_cache).then_some(&*index),
    )
    .map_err(existing_refused)?;
    // Every granted secret is read now, before anything runs; a vault
    // session ends when `resolution` does (finish below, or drop on any
    // early return).
    let cordon_secrets::StepSecrets {
        mut resolution,
        steps,
    } = cordon_secrets::resolve_steps(env, &[(&plan.name, &plan.secrets)]).map_err(bad_input)?;
    let secrets = steps.into_iter().next().unwrap_or_default();
    let sandbox = sandbox_for(&plan.state_dir)?;
    let component = load_component(&sandbox, &plan, &manifest)?;
    warn_unsigned(env, &signer);
    let opts = RunOptions {
        quiet,
        no_cache,
        cache_forbidden: false,
        cancel: Some(crate::interrupt::cancel_flag()),
        signer,
        hash_index: Some(index.clone()),
        policy: Some(policy),
        remote,
    };
    let run = run_step(&plan, &sandbox, &component, secrets, &opts).map_err(|e| {
        if e.is_cancelled() {
            Failure {
                code: crate::interrupt::EXIT_INTERRUPTED,
                error: e.into(),
            }
        } else {
            runner_fault(e)
        }
    })?;
    save_hash_index(opts.hash_index.as_deref());
    if let Err(e) = resolution.finish() {
        say!("cordon: warning: {e}");
    }
    // The step is over and the process ends after the report below. Dropping
    // the sandbox would wake and join its epoch thread and unmap the engine,
    // work the exit does anyway; on a busy machine the woken thread waited
    // to be scheduled for up to tens of milliseconds (strace of `cordon run`
    // under load). Nothing of theirs needs flushing.
    std::mem::forget(component);
    std::mem::forget(sandbox);

    let r = &run.record;
    let record_path = run.record_path.display();
    if r.cache.hit {
        say!(
            "cordon: step `{}` served from the cache (outputs of run {}); record: {record_path}",
            r.step,
            r.cache.source_run.as_deref().unwrap_or("?")
        );
        Ok(0)
    } else if r.success {
        say!(
            "cordon: step `{}` succeeded in {} ms (fuel {}, peak memory {}); record: {record_path}",
            r.step,
            r.usage.wall_ms,
            r.usage.fuel,
            cordon_core::units::format_size(r.usage.peak_memory)
        );
        Ok(0)
    } else {
        let (reason, kept, listing) = match &r.outputs {
            Publication::Withheld {
                reason,
                kept_at,
                listing,
            } => (reason.clone(), kept_at.clone(), listing.clone()),
            _ => (r.termination.describe(), None, None),
        };
        say!(
            "cordon: step `{}` failed: {}",
            r.step,
            escape_for_terminal(&reason)
        );
        if let Some(k) = kept {
            say!(
                "cordon: nothing was published; partial output kept at {}",
                k.display()
            );
        }
        if let Some(l) = listing {
            say!(
                "cordon: the refused output was not kept; its listing (names redacted, digests, no contents) is at {}",
                l.display()
            );
        }
        say!("cordon: record: {record_path}");
        Ok(failed_or_interrupted())
    }
}

/// Completes or rolls back what a stopped command left in `state` (see
/// `repair::recover`) before this command changes it, records what was
/// done in a repair record signed by `signer`, and says so in one line.
/// What needs a person is said too, without stopping this command.
fn recover_state(
    state: &Path,
    env: &str,
    signer: Option<&cordon_record::attest::Signer>,
) -> Result<(), Failure> {
    use cordon_engine::repair::Repair;
    let done = cordon_engine::repair::recover(state)
        .with_context(|| {
            format!(
                "cannot complete what a stopped command left in {}; run `cordon repair --dry-run --state {}` to see it",
                state.display(),
                state.display()
            )
        })
        .map_err(runner_fault)?;
    let (by_hand, acted): (Vec<&Repair>, Vec<&Repair>) = done
        .iter()
        .partition(|r| matches!(r, Repair::NeedsHand { .. }));
    for r in &by_hand {
        say!("cordon: warning: {r}");
    }
    if acted.is_empty() {
        return Ok(());
    }
    let mut record = cordon_record::record::RepairRecord::new(
        env,
        acted.iter().map(ToString::to_string).collect(),
    );
    let sealed = cordon_record::chain::seal_repair(&state.join("records"), &mut record, signer)
        .context("cannot append the repair record of the recovery to the chain")
        .map_err(runner_fault)?;
    let count = |f: fn(&Repair) -> bool| acted.iter().filter(|r| f(r)).count();
    let parts: Vec<String> = [
        (
            count(|r| matches!(r, Repair::RolledForward { .. })),
            "publication completed",
            "publications completed",
        ),
        (
            count(|r| matches!(r, Repair::RolledBack { .. })),
            "unrecorded run rolled back",
            "unrecorded runs rolled back",
        ),
        (
            count(|r| {
                matches!(
                    r,
                    Repair::LeftoverStaging { .. } | Repair::LeftoverSwap { .. }
                )
            }),
            "leftover removed",
            "leftovers removed",
        ),
        (
            count(|r| matches!(r, Repair::Orphaned { .. })),
            "unchained record set aside",
            "unchained records set aside",
        ),
        (
            count(|r| matches!(r, Repair::StaleCacheEntry { .. })),
            "stale cache entry removed",
            "stale cache entries removed",
        ),
    ]
    .into_iter()
    .filter(|(n, ..)| *n > 0)
    .map(|(n, one, many)| format!("{n} {}", if n == 1 { one } else { many }))
    .collect();
    say!(
        "cordon: a stopped command left work unfinished; recovered: {} (repair record: {})",
        parts.join(", "),
        sealed.record_path.display()
    );
    Ok(())
}

/// A run refused before anything ran because a write mount holds data no
/// record can bring back: bad input (exit 2), or a runner failure when the
/// directory could not be read.
fn existing_refused(e: cordon_engine::outputs::existing::ExistingError) -> Failure {
    match e {
        cordon_engine::outputs::existing::ExistingError::Unrecorded(_) => {
            bad_input(anyhow::anyhow!("{e}\nnothing ran"))
        }
        other => runner_fault(other),
    }
}

/// The exit code of a run that did not succeed: 130 when it was stopped by
/// a signal, 1 otherwise.
fn failed_or_interrupted() -> u8 {
    if crate::interrupt::interrupted() {
        crate::interrupt::EXIT_INTERRUPTED
    } else {
        1
    }
}

/// Loads and plans a pipeline for `at`.
fn plan_pipeline(
    file: &Path,
    at: &Where,
    index: Option<&HashIndex>,
) -> Result<
    (
        PipelinePlan,
        Vec<Manifest>,
        cordon_manifest::config::EnvConfig,
    ),
    Failure,
> {
    let pipeline = Pipeline::load(file).map_err(bad_files)?;
    let workspace =
        WorkspaceConfig::discover(at.config.as_deref(), &pipeline.dir).map_err(bad_input)?;
    let env = workspace.env(&at.env).map_err(bad_input)?;
    let state_dir = state_dir(at.state.clone(), &pipeline.dir);
    let ctx = PlanContext {
        env,
        workspace_dir: &workspace.dir,
        state_dir: &state_dir,
        produced: &[],
        hash_index: index,
    };
    let plan = pipeline.plan(&ctx).map_err(bad_files)?;
    let manifests = pipeline.steps.into_iter().map(|s| s.manifest).collect();
    Ok((plan, manifests, env.clone()))
}

/// How `cordon run PIPELINE` was asked to run.
struct PipelineRun<'a> {
    quiet: bool,
    jobs: Option<usize>,
    fail_fast: bool,
    no_cache: bool,
    /// `--step NAME`: only this step, upstream outputs from the store.
    step: Option<&'a str>,
}

fn run_pipeline_cmd(
    file: &Path,
    at: &Where,
    run: &PipelineRun<'_>,
    reports: &[String],
    break_glass: Option<&str>,
) -> Result<u8, Failure> {
    let PipelineRun {
        quiet,
        jobs,
        fail_fast,
        no_cache,
        step,
    } = *run;
    let mut outputs = Vec::new();
    for r in reports {
        match r.split_once('=') {
            Some(("junit", f)) if !f.is_empty() => outputs.push(("junit", PathBuf::from(f))),
            Some(("json", f)) if !f.is_empty() => outputs.push(("json", PathBuf::from(f))),
            _ => {
                return Err(bad_input(anyhow::anyhow!(
                    "--report `{r}`: use `junit=FILE` or `json=FILE`"
                )));
            }
        }
    }
    // The state directory's hash index, loaded before planning so that an
    // unchanged component is not re-hashed; `--no-cache` trusts nothing
    // remembered.
    let pipeline_dir = dir_of(file);
    // Resolved again (and any leftover reported) by `plan_pipeline`.
    let pipeline_state = StateDir::resolve(at.state.clone(), &pipeline_dir).into_path();
    let index = Arc::new(HashIndex::load(&pipeline_state));
    let (plan, manifests, env) = plan_pipeline(file, at, (!no_cache).then_some(&*index))?;
    let remote = remote_for(&env)?;
    let (plan, manifests) = match step {
        None => (plan, manifests),
        Some(name) => one_step(plan, manifests, &env, remote.as_deref(), name)?,
    };
    let signer = signer_for(&env, &pipeline_dir)?;
    recover_state(&pipeline_state, &at.env, signer.as_deref())?;
    let policy = policy_gate(
        &env,
        &manifests,
        &plan.steps,
        &plan.cacheable,
        break_glass,
        &pipeline_state,
    )?;
    promote_cmd::require_promoted(&env, &plan.steps)?;
    cordon_engine::outputs::existing::refuse_unrecorded(
        &plan.steps,
        (!no_cache).then_some(&*index),
    )
    .map_err(existing_refused)?;
    // One provider session for the whole pipeline (see `resolve_steps`).
    let grants: Vec<(&str, &[cordon_manifest::manifest::SecretGrant])> = plan
        .steps
        .iter()
        .map(|p| (p.name.as_str(), p.secrets.as_slice()))
        .collect();
    let cordon_secrets::StepSecrets {
        mut resolution,
        steps: secrets,
    } = cordon_secrets::resolve_steps(&env, &grants).map_err(bad_input)?;
    let state_dir = plan.steps[0].state_dir.clone();
    let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let (sandbox, components) = pipeline_sandbox(&state_dir, &plan.steps, jobs, &manifests)?;
    let live = !quiet && std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();
    warn_unsigned(&env, &signer);
    let opts = PipelineOptions {
        jobs,
        fail_fast,
        no_cache,
        live,
        cancel: crate::interrupt::cancel_flag(),
        signer,
        hash_index: Some(index.clone()),
        policy: Some(policy),
        remote,
    };
    say!(
        "cordon: pipeline `{}` in environment `{}`: {} steps",
        plan.name,
        at.env,
        plan.steps.len()
    );
    let outcome = run_pipeline(&plan, &sandbox, &components, secrets, &opts);
    save_hash_index(opts.hash_index.as_deref());
    if let Err(e) = resolution.finish() {
        say!("cordon: warning: {e}");
    }
    let record = cordon_engine::scheduler::write_pipeline_record(
        &plan,
        &outcome,
        &state_dir,
        opts.policy.as_deref(),
    )
    .context("cannot write the pipeline record")
    .map_err(runner_fault)?;
    for (kind, path) in &outputs {
        let text = match *kind {
            "junit" => cordon_engine::scheduler::junit_report(&plan, &outcome),
            _ => {
                serde_json::to_string_pretty(&cordon_engine::scheduler::json_report(
                    &plan, &outcome, &record,
                ))
                .unwrap_or_default()
                    + "\n"
            }
        };
        std::fs::write(path, text)
            .with_context(|| format!("cannot write report {}", path.display()))
            .map_err(runner_fault)?;
    }
    let count = |s: cordon_engine::scheduler::StepStatus| {
        outcome.steps.iter().filter(|r| r.status == s).count()
    };
    use cordon_engine::scheduler::StepStatus as S;
    say!(
        "cordon: {} ran, {} cached, {} failed, {} skipped in {} ms",
        count(S::Succeeded),
        count(S::Cached),
        count(S::Failed) + count(S::Interrupted),
        count(S::Skipped),
        outcome.duration.as_millis()
    );
    for r in outcome
        .steps
        .iter()
        .filter(|r| !matches!(r.status, S::Succeeded | S::Cached))
    {
        say!(
            "cordon:   {} {}: {}",
            r.status.word(),
            r.name,
            escape_for_terminal(r.message.as_deref().unwrap_or(""))
        );
        if let Some(rec) = &r.record
            && let Some(log) = &rec.stderr.log
        {
            say!("cordon:     stderr: {}", log.display());
        }
    }
    say!("cordon: pipeline record: {}", record.display());
    say!(
        "cordon: step records: {}",
        state_dir.join("records").display()
    );
    if outcome.steps.iter().any(|r| r.runner_fault) {
        Ok(3)
    } else if outcome.success() {
        Ok(0)
    } else {
        Ok(failed_or_interrupted())
    }
}

fn verify(
    record: Option<PathBuf>,
    scope: Option<cordon_record::verify::Scope>,
    state: Option<PathBuf>,
    config: Option<&Path>,
    trusted_keys: Vec<PathBuf>,
    head: Option<&Path>,
    reexecute: bool,
) -> Result<u8, Failure> {
    use cordon_record::verify::Scope;
    let (state_dir, scope) = match (record, scope) {
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
            let records = cordon_core::fsutil::resolve(&file)
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
        (None, scope) => (state_dir(state, Path::new("")), scope.unwrap_or(Scope::All)),
    };
    let workspace = verify_workspace(config, &state_dir)?;
    let scope = match scope {
        Scope::Run(name) => Scope::Run(run_named(&state_dir, &name)?),
        Scope::Since(name) => Scope::Since(run_named(&state_dir, &name)?),
        Scope::All => Scope::All,
    };
    let roots = cordon_engine::keys::TrustRoots::from_process(trusted_keys);
    let mut verdict =
        cordon_record::verify::verify(&state_dir, &workspace, &roots, &scope).map_err(bad_input)?;
    if let Some(head) = head {
        let bytes = cordon_core::fsutil::read_regular_to_string(
            head,
            cordon_manifest::manifest::MAX_FILE_BYTES,
        )
        .with_context(|| format!("cannot read the chain head {}", head.display()))
        .map_err(bad_input)?;
        let finding =
            cordon_record::verify::check_head(&state_dir, &workspace, &roots, bytes.as_bytes())
                .map_err(bad_input)?;
        verdict.findings.extend(finding);
    }
    if reexecute {
        reexecute_all(&state_dir, &scope, &mut verdict)?;
    }
    for w in &verdict.warnings {
        say!("cordon: warning: {w}");
    }
    for (env, source, origin) in &verdict.trusted {
        // The environment's name comes from the records being judged.
        say!(
            "cordon: trusting for `{}`: {} ({})",
            escape_for_terminal(env),
            escape_for_terminal(source),
            origin.describe()
        );
    }
    for f in &verdict.findings {
        out!("{f}");
    }
    if verdict.skipped > 0 {
        say!(
            "cordon: skipped {} earlier record{} (before the --since run; their chain entries were checked)",
            verdict.skipped,
            if verdict.skipped == 1 { "" } else { "s" }
        );
    }
    if verdict.findings.is_empty() {
        say!(
            "cordon: verified {} record{}: signatures, chain and outputs hold",
            verdict.records,
            if verdict.records == 1 { "" } else { "s" }
        );
        Ok(0)
    } else {
        say!(
            "cordon: verification failed: {} problem{} ({} record{} checked)",
            verdict.findings.len(),
            if verdict.findings.len() == 1 { "" } else { "s" },
            verdict.records,
            if verdict.records == 1 { "" } else { "s" }
        );
        Ok(1)
    }
}

/// The workspace configuration for verifying `state_dir`: the one named,
/// else the nearest `cordon.toml` above the state directory (records are
/// usually kept beside the workspace that made them), else the nearest
/// above the current directory, else the built-in default.
fn verify_workspace(config: Option<&Path>, state_dir: &Path) -> Result<WorkspaceConfig, Failure> {
    if config.is_some() {
        let cwd = std::env::current_dir().map_err(runner_fault)?;
        return WorkspaceConfig::discover_for_review(config, &cwd).map_err(bad_input);
    }
    let beside = cordon_core::fsutil::resolve(state_dir)
        .ok()
        .and_then(|s| s.parent().and_then(cordon_manifest::config::find));
    let cwd = std::env::current_dir().map_err(runner_fault)?;
    match beside {
        Some(found) => WorkspaceConfig::discover_for_review(Some(&found), &cwd),
        None => WorkspaceConfig::discover_for_review(None, &cwd),
    }
    .map_err(bad_input)
}

fn repair_cmd(
    state: Option<PathBuf>,
    dry_run: bool,
    env: &str,
    config: Option<&Path>,
) -> Result<u8, Failure> {
    let state = state_dir(state, Path::new(""));
    if !state.is_dir() {
        return Err(bad_input(anyhow::anyhow!(
            "{} is not a state directory; name one with --state",
            state.display()
        )));
    }
    // The signer is found before anything changes: a repair whose record
    // cannot be signed where it must be changes nothing.
    let signer = if dry_run {
        None
    } else {
        let workspace = verify_workspace(config, &state)?;
        let env_config = workspace.env(env).map_err(bad_input)?;
        cordon_engine::keys::signer_for_run(env_config, &workspace.dir)
            .map_err(bad_input)?
            .map(|k| k.signer)
    };
    let done = cordon_engine::repair::repair_state(&state, dry_run)
        .with_context(|| format!("cannot repair {}", state.display()))
        .map_err(runner_fault)?;
    let by_hand = done
        .iter()
        .filter(|r| matches!(r, cordon_engine::repair::Repair::NeedsHand { .. }))
        .count();
    for r in &done {
        out!("{}{r}", if dry_run { "would: " } else { "" });
    }
    // What was done goes into the chain, signed, like the runs it touched.
    if !dry_run && !done.is_empty() {
        let mut record = cordon_record::record::RepairRecord::new(
            env,
            done.iter().map(ToString::to_string).collect(),
        );
        let sealed =
            cordon_record::chain::seal_repair(&state.join("records"), &mut record, signer.as_ref())
                .with_context(|| "cannot append the repair record to the chain".to_string())
                .map_err(runner_fault)?;
        say!("cordon: repair record: {}", sealed.record_path.display());
    }
    say!(
        "cordon: {} {}{}",
        if dry_run { "found" } else { "repaired" },
        match done.len() - by_hand {
            0 => "nothing to do".to_string(),
            1 => "1 thing".to_string(),
            n => format!("{n} things"),
        },
        if by_hand > 0 {
            format!("; {by_hand} need a person")
        } else {
            String::new()
        }
    );
    Ok(if by_hand > 0 || (dry_run && !done.is_empty()) {
        1
    } else {
        0
    })
}

fn records_head(env: &str, state: Option<PathBuf>, config: Option<&Path>) -> Result<u8, Failure> {
    let state = state_dir(state, Path::new(""));
    let workspace = verify_workspace(config, &state)?;
    let env_config = workspace.env(env).map_err(bad_input)?;
    let key = cordon_engine::keys::record_signer(env_config, &workspace.dir)
        .map_err(bad_input)?
        .ok_or_else(|| {
            bad_input(anyhow::anyhow!(
                "environment `{env}` has no record-signing key to sign the head with\n  fix: run `cordon key generate --env {env}`"
            ))
        })?;
    let head = cordon_record::head::current(&state.join("records"), env).map_err(bad_input)?;
    let signed = cordon_record::head::sign(&head, &key.signer).map_err(runner_fault)?;
    out_raw!("{}", String::from_utf8_lossy(&signed));
    say!(
        "cordon: chain head: entry {} (run {}), signed by `{env}` (keyid {}); keep this file where the state directory's writers cannot change it, and check it with `cordon verify --head FILE`",
        head.sequence,
        head.run,
        key.signer.keyid()
    );
    Ok(0)
}

fn plan_cmd(file: &Path, at: &Where) -> Result<u8, Failure> {
    let plan = plan_any(file, at)?.0;
    print_plan(&plan, at);
    Ok(0)
}

/// Plans a pipeline file, or a single manifest as a one-step pipeline.
fn plan_any(
    file: &Path,
    at: &Where,
) -> Result<
    (
        PipelinePlan,
        Vec<Manifest>,
        cordon_manifest::config::EnvConfig,
    ),
    Failure,
> {
    if is_pipeline_file(file) {
        plan_pipeline(file, at, None)
    } else {
        let manifest = Manifest::load(file).map_err(bad_input)?;
        let workspace =
            WorkspaceConfig::discover(at.config.as_deref(), &manifest.dir).map_err(bad_input)?;
        let env = workspace.env(&at.env).map_err(bad_input)?;
        let state_dir = state_dir(at.state.clone(), &dir_of(file));
        let ctx = PlanContext {
            env,
            workspace_dir: &workspace.dir,
            state_dir: &state_dir,
            produced: &[],
            hash_index: None,
        };
        let step = plan_step(&manifest, &ctx).map_err(bad_input)?;
        let plan = PipelinePlan {
            name: step.name.clone(),
            path: step.manifest_path.clone(),
            sha256: step.manifest_sha256.clone(),
            steps: vec![step],
            cacheable: vec![true],
            deps: vec![vec![]],
            reasons: Default::default(),
        };
        Ok((plan, vec![manifest], env.clone()))
    }
}

/// A manifest value as the manifest spells it (`http-header`, `fixed`).
fn manifest_word(v: &impl serde::Serialize) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "?".into(),
    }
}

fn print_plan(plan: &PipelinePlan, at: &Where) {
    // Every value here comes from the manifests (paths, purposes,
    // arguments, environment values): each line is escaped whole.
    macro_rules! line {
        ($($arg:tt)*) => { out!("{}", escape_lines(&format!($($arg)*))) };
    }
    line!("pipeline {} (environment {})", plan.name, at.env);
    for i in plan.topological_order() {
        let s = &plan.steps[i];
        line!("\nstep {}", s.name);
        line!(
            "  component {} ({})",
            s.component_path.display(),
            s.component_digest
        );
        for &d in &plan.deps[i] {
            line!(
                "  after {} — {}",
                plan.steps[d].name,
                plan.reasons.get(&(i, d)).map(String::as_str).unwrap_or("")
            );
        }
        line!("  args {:?}", s.argv);
        for (k, v) in &s.env {
            line!("  env {k}={v}");
        }
        for m in &s.mounts {
            let class = m
                .classification
                .map(|c| format!(", {c:?}").to_lowercase())
                .unwrap_or_default();
            line!(
                "  mount {} <- {} ({}{class}) — {}",
                m.guest,
                m.host.display(),
                m.access,
                m.purpose
            );
        }
        for g in &s.secrets {
            let uses: Vec<String> = g.uses.iter().map(manifest_word).collect();
            let key = match &g.key {
                Some(k) if *k != g.name => format!(", provider key {k}"),
                _ => String::new(),
            };
            let hosts = if g.hosts.is_empty() {
                String::new()
            } else {
                format!(", sent only to {}", g.hosts.join(", "))
            };
            line!("  secret {} ({}{key}{hosts})", g.name, uses.join(", "));
        }
        match &s.network {
            Some(grant) => {
                for rule in &grant.allow {
                    line!("  network {}", rule.describe());
                }
            }
            None => line!("  network none"),
        }
        line!(
            "  clock {}, random {}, floats {}, cache {}",
            manifest_word(&s.clock),
            manifest_word(&s.random),
            manifest_word(&s.floats),
            if plan.cacheable[i] { "on" } else { "off" }
        );
        let l = &s.limits;
        line!(
            "  limits fuel {}, memory {}, timeout {} s, output {}, stdout {}",
            l.fuel,
            cordon_core::units::format_size(l.memory),
            l.timeout.as_secs(),
            cordon_core::units::format_size(l.output),
            cordon_core::units::format_size(l.stdout)
        );
        if s.network.is_some() {
            line!(
                "  network limits requests {}, request bytes {}, request timeout {} s",
                l.requests,
                cordon_core::units::format_size(l.request_bytes),
                l.request_timeout.as_secs()
            );
        }
    }
}

/// Evaluates policy over `plans` in `env`. Without violations, returns the
/// `allow` decision. With violations, prints them and refuses (exit 2),
/// unless break-glass is asked for, allowed here, and justified: then it
/// says so loudly and returns the `break-glass` decision for the records.
/// The decision may come from the sealed cache in `state_dir`
/// ([`cordon_policy::decisions`]).
fn policy_gate(
    env: &cordon_manifest::config::EnvConfig,
    manifests: &[Manifest],
    plans: &[cordon_manifest::plan::StepPlan],
    cacheable: &[bool],
    break_glass: Option<&str>,
    state_dir: &Path,
) -> Result<Arc<cordon_policy::policy::Decision>, Failure> {
    let justification = cordon_policy::gate::justification(break_glass).map_err(bad_input)?;
    let seal = DecisionSeal::load();
    let cache = seal
        .as_ref()
        .map(|s| cordon_policy::decisions::DecisionCache::new(state_dir, s));
    let evaluation = evaluate_policy(env, manifests, plans, cacheable, cache.as_ref())?;
    match cordon_policy::gate::gate(env, &evaluation, justification) {
        Ok(gate) => {
            for n in &gate.notices {
                say!("cordon: {n}");
            }
            if let Some(report) = &gate.report {
                say_raw!("{report}");
            }
            for n in &gate.after_report {
                say!("cordon: {n}");
            }
            Ok(Arc::new(gate.decision))
        }
        Err(refusal) => {
            for n in &refusal.notices {
                say!("cordon: {n}");
            }
            if let Some(report) = &refusal.report {
                say_raw!("{report}");
            }
            Err(bad_input(refusal.error))
        }
    }
}

/// Seals cached policy decisions with the compile cache's key: it lives
/// outside the state directory (in the secrets home, or where
/// `$CORDON_COMPILE_CACHE_KEY` says) and already vouches for the native
/// code a run loads, so a decision is as hard to forge as that code.
struct DecisionSeal(cordon_sandbox::compiled::CacheKey);

impl DecisionSeal {
    /// The key, or `None` (no decision is cached or trusted) when it cannot
    /// be loaded or created.
    fn load() -> Option<DecisionSeal> {
        let path = cordon_sandbox::compiled::key_path()?;
        cordon_sandbox::compiled::CacheKey::load_or_create(&path)
            .ok()
            .map(DecisionSeal)
    }
}

impl cordon_policy::decisions::Seal for DecisionSeal {
    fn seal(&self, name: &str, payload: &[u8]) -> Vec<u8> {
        self.0.seal(name, payload)
    }
    fn open<'a>(&self, name: &str, sealed: &'a [u8]) -> Option<&'a [u8]> {
        self.0.open(name, sealed).ok()
    }
}

fn evaluate_policy(
    env: &cordon_manifest::config::EnvConfig,
    manifests: &[Manifest],
    plans: &[cordon_manifest::plan::StepPlan],
    cacheable: &[bool],
    cache: Option<&cordon_policy::decisions::DecisionCache<'_>>,
) -> Result<cordon_policy::policy::Evaluation, Failure> {
    let steps: Vec<cordon_policy::policy::StepInput<'_>> = manifests
        .iter()
        .zip(plans)
        .zip(cacheable)
        .map(
            |((manifest, plan), &cache)| cordon_policy::policy::StepInput {
                manifest,
                plan,
                cache,
            },
        )
        .collect();
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let input = cordon_policy::policy::input(env, &steps, &cwd).map_err(bad_input)?;
    cordon_policy::policy::evaluate_cached(env, input, cache).map_err(bad_input)
}

fn check_cmd(file: &Path, at: &Where, format: CheckFormat) -> Result<u8, Failure> {
    let (plan, manifests, env) = match plan_any(file, at) {
        Ok(p) => p,
        Err(f) => {
            // Code scanning shows the most common failure too: the errors
            // as SARIF results on stdout, the usual message on stderr.
            if matches!(format, CheckFormat::Sarif)
                && let Some(errors) = manifest_errors(&f)
            {
                out!(
                    "{}",
                    serde_json::to_string_pretty(&cordon_policy::policy::render_sarif_errors(
                        &at.env, &errors, &sarif_uri
                    ))
                    .unwrap_or_default()
                );
            }
            return Err(f);
        }
    };
    // `cordon check` always evaluates: it is how a reviewer asks the
    // policy itself, and it must not create keys or state.
    let evaluation = evaluate_policy(&env, &manifests, &plan.steps, &plan.cacheable, None)?;
    match format {
        CheckFormat::Text => out_raw!("{}", cordon_policy::policy::render_text(&evaluation)),
        CheckFormat::Json => out!(
            "{}",
            serde_json::to_string_pretty(&cordon_policy::policy::render_json(&evaluation))
                .unwrap_or_default()
        ),
        CheckFormat::Sarif => {
            // Each violation at the key it is about: the mount's, the
            // secret's, else the step's component; a rule about no step at
            // the policy file that holds it.
            let locate = |v: &cordon_policy::policy::Violation| {
                let step = v
                    .step
                    .as_ref()
                    .and_then(|s| manifests.iter().find(|m| &m.name == s));
                match step {
                    Some(m) => {
                        let at = v
                            .mount
                            .as_ref()
                            .and_then(|g| m.mounts.iter().find(|x| &x.guest == g))
                            .map(|x| x.host_at)
                            .or_else(|| {
                                v.secret
                                    .as_ref()
                                    .and_then(|n| m.secrets.iter().find(|x| &x.name == n))
                                    .map(|x| x.at)
                            })
                            .unwrap_or(m.component_at);
                        cordon_policy::policy::SarifLocation {
                            uri: sarif_uri(&m.path),
                            line: at.line,
                            column: at.column,
                        }
                    }
                    None => cordon_policy::policy::SarifLocation {
                        uri: if v.source == cordon_policy::policy::DEFAULT_PACK_NAME {
                            sarif_uri(file)
                        } else {
                            sarif_uri(Path::new(&v.source))
                        },
                        line: 1,
                        column: 1,
                    },
                }
            };
            out!(
                "{}",
                serde_json::to_string_pretty(&cordon_policy::policy::render_sarif(
                    &evaluation,
                    &locate
                ))
                .unwrap_or_default()
            )
        }
    }
    Ok(if evaluation.violations.is_empty() {
        0
    } else {
        2
    })
}

fn approve_cmd(manifest: &Path, key: &Path) -> Result<u8, Failure> {
    let w = cordon_policy::approval::approve(manifest, key).map_err(bad_input)?;
    say!(
        "cordon: approved {} with reviewer key {} ({}); written to {}",
        manifest.display(),
        &w.keyid[..w.keyid.len().min(16)],
        if w.replaced {
            "replacing this key's earlier approval"
        } else {
            "new"
        },
        w.path.display()
    );
    say!(
        "cordon: commit the approvals file with the manifest; any change to either voids the approval"
    );
    Ok(0)
}

fn key_reviewer(name: &str, dir: Option<&Path>) -> Result<u8, Failure> {
    let key = cordon_engine::keys::create_reviewer_key(name, dir).map_err(|e| match e {
        cordon_engine::keys::KeyError::Io(..) => runner_fault(e),
        _ => bad_input(e),
    })?;
    say!(
        "cordon: wrote {} (private, mode 0600: keep it with the reviewer, outside every workspace) and {}",
        key.private.display(),
        key.public.display()
    );
    // `--dir` outside a git work tree may still be inside a workspace.
    if key
        .private
        .parent()
        .and_then(cordon_manifest::config::find)
        .is_some()
    {
        say!(
            "cordon: warning: {}",
            cordon_engine::keys::private_key_warning(&key.private)
        );
    }
    say!(
        "cordon: to trust this reviewer in an environment, add \"{}\" to `reviewers` under [env.NAME.policy] in cordon.toml, or copy it into {} for this user",
        key.public.display(),
        cordon_core::locations::reviewer_trust_dir("NAME").map_or_else(
            || "<secrets home>/trusted/NAME/reviewers/".into(),
            |d| format!("{}/", d.display())
        )
    );
    Ok(0)
}

fn break_glass_records(state: Option<PathBuf>) -> Result<u8, Failure> {
    let dir = state_dir(state, Path::new("")).join("records");
    let runs = cordon_record::query::break_glass_runs(&dir).map_err(|e| {
        bad_input(anyhow::anyhow!(
            "cannot read records in {}: {e}",
            dir.display()
        ))
    })?;
    if runs.is_empty() {
        say!("cordon: no break-glass runs (records in {})", dir.display());
        return Ok(0);
    }
    out!("run\tstep\tenvironment\tstarted\toverridden\tjustification\trecord");
    for r in &runs {
        out!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            escape_for_terminal(&r.run_id),
            escape_for_terminal(&r.step),
            escape_for_terminal(&r.environment),
            escape_for_terminal(&r.started_at),
            escape_for_terminal(&r.overridden.join(",")),
            escape_for_terminal(&r.justification),
            escape_for_terminal(&r.record.display().to_string())
        );
    }
    Ok(0)
}

/// The step-run id a command line names in the state directory `state`:
/// an exact id, `latest` (the newest run) or `latest:STEP` (the newest run
/// of step STEP). See [`cordon_record::query::resolve_run`].
fn run_named(state: &Path, name: &str) -> Result<String, Failure> {
    // Absolute, so that a failure names the directory wherever the state
    // directory was found from.
    let records = std::path::absolute(state.join("records")).map_err(runner_fault)?;
    cordon_record::query::resolve_run(&records, name).map_err(bad_input)
}

/// The pipeline-run id a command line names in the state directory
/// `state`: an exact id, `latest` (the newest pipeline run) or
/// `latest:STEP` (the newest pipeline run that had a step STEP).
fn pipeline_run_named(state: &Path, name: &str) -> Result<String, Failure> {
    let pipelines = std::path::absolute(state.join("pipelines")).map_err(runner_fault)?;
    cordon_record::query::resolve_pipeline_run(&pipelines, name).map_err(bad_input)
}

fn restore_cmd(
    run: &str,
    state: &Path,
    config: Option<&Path>,
    trusted_keys: Vec<PathBuf>,
    replaced: bool,
) -> Result<u8, Failure> {
    use cordon_record::record::RestoredWhat;
    let run = &run_named(state, run)?;
    let workspace = verify_workspace(config, state)?;
    // What a stopped command left is completed first, recorded under the
    // restored run's environment (its key signs the restore too).
    if let Some(env) = cordon_engine::restore::environment_of(state, run)
        && let Ok(env_config) = workspace.env(&env)
    {
        let signer = cordon_engine::keys::signer_for_run(env_config, &workspace.dir)
            .map_err(bad_input)?
            .map(|k| k.signer);
        recover_state(state, &env, signer.as_ref())?;
    }
    let roots = cordon_engine::keys::TrustRoots::from_process(trusted_keys);
    let what = if replaced {
        RestoredWhat::Replaced
    } else {
        RestoredWhat::Outputs
    };
    let restored =
        cordon_engine::restore::restore(state, run, &workspace, &roots, what).map_err(|e| {
            let code = if e.is_verification_failure() {
                1
            } else if e.is_bad_input() {
                2
            } else {
                3
            };
            Failure {
                code,
                error: e.into(),
            }
        })?;
    for w in &restored.warnings {
        say!("cordon: warning: {w}");
    }
    if restored.mounts.is_empty() {
        if replaced {
            say!("cordon: run `{run}` replaced nothing that no record named; nothing to restore");
        } else {
            say!("cordon: run `{run}` has no outputs to restore");
        }
    }
    for m in &restored.mounts {
        say!(
            "cordon: restored {}{} of run {run} to {} ({})",
            if replaced {
                "what was replaced at "
            } else {
                ""
            },
            escape_for_terminal(&m.guest),
            escape_for_terminal(&m.host.display().to_string()),
            m.tree
        );
    }
    if let Some(r) = &restored.record {
        say!("cordon: restore record: {}", r.display());
    }
    Ok(0)
}

/// Re-runs every record in `scope`, adds what differs to `verdict`, and
/// says which runs reproduced.
fn reexecute_all(
    state_dir: &Path,
    scope: &cordon_record::verify::Scope,
    verdict: &mut cordon_record::verify::Verdict,
) -> Result<(), Failure> {
    let sandbox = Sandbox::new(Some(cordon_manifest::plan::compile_cache_dir(state_dir)))
        .map_err(runner_fault)?;
    let report =
        cordon_engine::reexec::reexecute_scope(state_dir, scope, &sandbox).map_err(runner_fault)?;
    for (run, files, caveat) in report.reproduced {
        match caveat {
            None => say!("cordon: record {run}: reproducible ({files} output files identical)"),
            // Identical here, but not the guarantee a same-architecture
            // re-execution gives: say so rather than a plain "reproducible".
            Some(why) => say!(
                "cordon: record {run}: reproduced on another architecture ({files} output files identical; {why})"
            ),
        }
    }
    verdict.findings.extend(report.findings);
    Ok(())
}

/// What `cordon export in-toto` exports.
enum ExportTarget {
    /// One step run.
    Run(String),
    /// A whole pipeline run.
    PipelineRun(String),
}

fn export_in_toto(
    target: Option<ExportTarget>,
    dir: &Path,
    layout_key: &Path,
    state: Option<PathBuf>,
    config: Option<&Path>,
    base: Option<PathBuf>,
) -> Result<u8, Failure> {
    let target =
        target.ok_or_else(|| bad_input(anyhow::anyhow!("name --run or --pipeline-run")))?;
    let state = state_dir(state, Path::new(""));
    let target = match target {
        ExportTarget::Run(name) => ExportTarget::Run(run_named(&state, &name)?),
        ExportTarget::PipelineRun(name) => {
            ExportTarget::PipelineRun(pipeline_run_named(&state, &name)?)
        }
    };
    let cwd = std::env::current_dir().map_err(runner_fault)?;
    let workspace = WorkspaceConfig::discover(config, &cwd).map_err(bad_input)?;
    let layout_signer = cordon_record::attest::Signer::load(layout_key).map_err(bad_input)?;
    let base = cordon_core::fsutil::resolve(&base.unwrap_or(cwd)).map_err(bad_input)?;
    let roots = cordon_engine::keys::TrustRoots::from_process(Vec::new());
    let request = cordon_engine::export::ExportRequest {
        state_dir: &state,
        workspace: &workspace,
        roots: &roots,
        layout_key: &layout_signer,
        base: &base,
        dir,
    };
    let out = match &target {
        ExportTarget::Run(id) => cordon_engine::export::export_run(&request, id),
        ExportTarget::PipelineRun(id) => {
            cordon_engine::export::pipeline::export_pipeline_run(&request, id)
        }
    }
    .map_err(bad_input)?;
    let links: Vec<String> = out.links.iter().map(|l| l.display().to_string()).collect();
    say!(
        "cordon: wrote {} and {}",
        links.join(", "),
        out.layout.display()
    );
    Ok(0)
}

fn key_generate(env: &str, config: Option<&Path>, if_missing: bool) -> Result<u8, Failure> {
    let cwd = std::env::current_dir().map_err(runner_fault)?;
    let workspace = WorkspaceConfig::discover_for_review(config, &cwd).map_err(bad_input)?;
    let env_config = workspace.env(env).map_err(bad_input)?;
    if if_missing
        && let Some(key) =
            cordon_engine::keys::record_signer(env_config, &workspace.dir).map_err(bad_input)?
    {
        say!(
            "cordon: environment `{env}` already signs its records (keyid {})",
            key.signer.keyid()
        );
        return Ok(0);
    }
    let g = cordon_engine::keys::generate_for_env(env_config).map_err(|e| match e {
        cordon_engine::keys::KeyError::Io(..) => runner_fault(e),
        _ => bad_input(e),
    })?;
    say!(
        "cordon: environment `{env}` now signs its records with a key kept in {} (keyid {}); its public key {} is trusted by `cordon verify` for this user; give that file to every other verifier (`--trusted-key`)",
        g.store,
        g.keyid,
        g.public.display()
    );
    Ok(0)
}

fn pin(manifests: &[PathBuf], check: bool) -> Result<u8, Failure> {
    let mut drifted = 0;
    for manifest in manifests {
        let found = if check {
            cordon_manifest::pin::compare(manifest)
        } else {
            cordon_manifest::pin::pin(manifest)
        }
        .map_err(|e| match e {
            cordon_manifest::pin::PinError::Write(..) => runner_fault(e),
            _ => bad_input(e),
        })?;
        let shown = manifest.display();
        let was = found.pinned.as_deref().unwrap_or("unset");
        match (found.holds(), check) {
            (true, _) => say!("cordon: {shown} pins {}", found.actual),
            (false, true) => {
                drifted += 1;
                say!(
                    "cordon: {shown} pins {was}, but its component's digest is {}\n  fix: if the build is what was reviewed, run `cordon pin {shown}` and commit the change",
                    found.actual
                );
            }
            (false, false) => say!("cordon: {shown} now pins {} (was {was})", found.actual),
        }
    }
    if drifted > 0 {
        say!(
            "cordon: {drifted} of {} manifest{} pin a digest the component does not have",
            manifests.len(),
            if manifests.len() == 1 { "" } else { "s" }
        );
        return Ok(1);
    }
    Ok(0)
}

/// Saves the input hash index; failing to is worth a warning, not a failed
/// run (the index only saves time).
fn save_hash_index(index: Option<&HashIndex>) {
    if let Some(index) = index
        && let Err(e) = index.save()
    {
        say!("cordon: warning: cannot save the input hash index: {e}");
    }
}

const REVIEW_EXIT_CODES: &str = "\
Exit codes:
  0  the report was written
  2  a file is missing or invalid (the error names it and what to fix)
  3  the runner itself failed";

const DIFF_EXIT_CODES: &str = "\
Exit codes:
  0  nothing escalates (there may be de-escalations and other changes)
  1  at least one change escalates: a reviewer must approve it
  2  a file is missing or invalid, the two files are of different kinds,
     or REV is not a revision of the repository
  3  the runner itself failed (for example git could not be run)";

fn audit_cmd(
    file: &Path,
    env: &str,
    config: Option<&Path>,
    format: cordon_review::review::Format,
) -> Result<u8, Failure> {
    let paths = cordon_review::audit::Paths::from_cwd().map_err(runner_fault)?;
    let audit = cordon_review::audit::audit(file, config, env, &paths).map_err(bad_files)?;
    out_raw!("{}", audit.render(format));
    Ok(0)
}

fn diff_cmd(
    files: &[PathBuf],
    git: Option<&str>,
    format: cordon_review::review::Format,
) -> Result<u8, Failure> {
    use cordon_review::capdiff::{DiffError, diff_files, diff_git};
    let diff = match (git, files) {
        (Some(rev), [file]) => diff_git(rev, file),
        (None, [old, new]) => diff_files(old, new),
        (Some(_), _) => {
            return Err(bad_input(anyhow::anyhow!(
                "`--git REV` takes one file, compared with its own version at REV\n  fix: `cordon diff --git REV FILE`, or `cordon diff OLD NEW` without --git"
            )));
        }
        (None, _) => {
            return Err(bad_input(anyhow::anyhow!(
                "give two files to compare, or one file with `--git REV`\n  fix: `cordon diff OLD NEW` or `cordon diff --git REV FILE`"
            )));
        }
    }
    .map_err(|e| match e {
        DiffError::Input(errors) => bad_files(errors),
        DiffError::Git(msg) => runner_fault(anyhow::anyhow!(msg)),
    })?;
    out_raw!("{}", diff.render(format));
    Ok(u8::from(diff.escalates))
}

fn inspect_cmd(
    component: &Path,
    manifest: Option<&Path>,
    format: cordon_review::review::Format,
) -> Result<u8, Failure> {
    let shown = component.display().to_string();
    let bytes = cordon_manifest::plan::read_component(component)
        .with_context(|| format!("{shown}: cannot read the component"))
        .map_err(bad_input)?;
    let inspection = cordon_review::inspect::inspect(&shown, &bytes)
        .map_err(|e| bad_input(anyhow::anyhow!("{shown}: {e}")))?;
    let check = match manifest {
        None => None,
        Some(m) if is_pipeline_file(m) => {
            return Err(bad_input(anyhow::anyhow!(
                "{}: is a pipeline\n  fix: give the manifest of the step that runs this component",
                m.display()
            )));
        }
        Some(m) => {
            let man = Manifest::load(m).map_err(bad_input)?;
            Some(cordon_review::inspect::check(
                &inspection,
                &man,
                &m.display().to_string(),
            ))
        }
    };
    let report = cordon_review::inspect::Report {
        inspection,
        manifest: check,
    };
    out_raw!("{}", report.render(format));
    Ok(0)
}
