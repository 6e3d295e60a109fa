//! `cordon secret` (the local store) and `cordon records --secret`: argument
//! handling and terminal input; the work is in [`cordon_secrets`].

use super::{Failure, bad_input, runner_fault};
use anyhow::Context;
use clap::Subcommand;
use cordon_manifest::config::WorkspaceConfig;
use std::path::PathBuf;

/// Which environment's store a `secret` command works on.
#[derive(clap::Args, Debug)]
pub(super) struct StoreArgs {
    /// The environment, as defined in cordon.toml.
    #[arg(long, value_name = "NAME", default_value = cordon_manifest::config::DEFAULT_ENV)]
    env: String,
    /// The workspace file [default: the nearest cordon.toml above the
    /// current directory, if any].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub(super) enum SecretCommand {
    /// Add a secret, its value read from stdin (one trailing newline is
    /// dropped). Fails if the secret exists: use `rotate`.
    Set {
        /// The secret's name.
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Add a new version of a secret, read from stdin; runs use it from now
    /// on and their records name it.
    Rotate {
        /// The secret's name.
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List secrets with their versions and dates (never values).
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Remove a secret with all its versions.
    Rm {
        /// The secret's name.
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub(super) fn secret(action: SecretCommand) -> Result<u8, Failure> {
    use cordon_secrets::local::LocalStore;
    let store_args = match &action {
        SecretCommand::Set { store, .. }
        | SecretCommand::Rotate { store, .. }
        | SecretCommand::List { store }
        | SecretCommand::Rm { store, .. } => store,
    };
    let cwd = std::env::current_dir()
        .context("cannot read the current directory")
        .map_err(runner_fault)?;
    let workspace =
        WorkspaceConfig::discover(store_args.config.as_deref(), &cwd).map_err(bad_input)?;
    let env = workspace.env(&store_args.env).map_err(bad_input)?;
    if env.secrets.provider != cordon_manifest::config::ProviderKind::Local {
        return Err(bad_input(anyhow::anyhow!(
            "environment `{}` uses the `{}` secret provider; `cordon secret` manages only `local` stores",
            env.name,
            env.secrets.provider.as_str()
        )));
    }
    let store = LocalStore::for_env(env).map_err(bad_input)?;
    match action {
        SecretCommand::Set { name, .. } => {
            let value = read_value(&name)?;
            let v = store.set(&name, value).map_err(bad_input)?;
            say!(
                "cordon: secret `{name}` version {v} stored for environment `{}`",
                env.name
            );
        }
        SecretCommand::Rotate { name, .. } => {
            let value = read_value(&name)?;
            let v = store.rotate(&name, value).map_err(bad_input)?;
            say!(
                "cordon: secret `{name}` is now at version {v} in environment `{}`",
                env.name
            );
        }
        SecretCommand::Rm { name, .. } => {
            let n = store.remove(&name).map_err(bad_input)?;
            say!(
                "cordon: secret `{name}` removed from environment `{}` ({n} version{})",
                env.name,
                if n == 1 { "" } else { "s" }
            );
        }
        SecretCommand::List { .. } => {
            let list = store.list().map_err(bad_input)?;
            if list.is_empty() {
                say!(
                    "cordon: environment `{}` has no secrets in {}",
                    env.name,
                    store.store_path().display()
                );
            }
            for (name, versions) in list {
                for v in versions {
                    out!("{name}\tversion {}\t{}", v.version, v.created_at);
                }
            }
        }
    }
    Ok(0)
}

/// Reads a secret value from stdin: all of it when piped, one line with
/// echo turned off when it is a terminal. One trailing newline is dropped.
fn read_value(name: &str) -> Result<cordon_secrets::SecretValue, Failure> {
    use std::io::Read;
    let mut buf = zeroize::Zeroizing::new(Vec::new());
    let tty = std::io::IsTerminal::is_terminal(&std::io::stdin());
    if tty {
        say_raw!("Value for secret `{name}` (input hidden): ");
        let _echo = EchoOff::new();
        let mut line = zeroize::Zeroizing::new(String::new());
        std::io::stdin()
            .read_line(&mut line)
            .context("cannot read the value from the terminal")
            .map_err(bad_input)?;
        say!();
        buf.extend_from_slice(line.as_bytes());
    } else {
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("cannot read the value from stdin")
            .map_err(bad_input)?;
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    }
    Ok(cordon_secrets::SecretValue::new(std::mem::take(&mut *buf)))
}

/// Turns terminal echo off until dropped.
struct EchoOff(Option<rustix::termios::Termios>);

impl EchoOff {
    fn new() -> Self {
        use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        let Ok(saved) = tcgetattr(&stdin) else {
            return EchoOff(None);
        };
        let mut quiet = saved.clone();
        quiet.local_modes.remove(LocalModes::ECHO);
        let _ = tcsetattr(&stdin, OptionalActions::Now, &quiet);
        EchoOff(Some(saved))
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            let _ = rustix::termios::tcsetattr(
                std::io::stdin(),
                rustix::termios::OptionalActions::Now,
                t,
            );
        }
    }
}

pub(super) fn records(
    secret: &str,
    version: Option<&str>,
    state: Option<PathBuf>,
) -> Result<u8, Failure> {
    let state = super::state_dir(state, std::path::Path::new(""));
    let dir = state.join("records");
    let runs = cordon_record::query::runs_using(&dir, secret, version)
        .with_context(|| format!("cannot read records in {}", dir.display()))
        .map_err(bad_input)?;
    let which = match version {
        Some(v) => format!("secret `{secret}` version {v}"),
        None => format!("secret `{secret}`"),
    };
    if runs.is_empty() {
        say!(
            "cordon: no recorded run used {which} (records in {})",
            dir.display()
        );
        return Ok(0);
    }
    let counts = |c: &[(String, u64)]| {
        if c.is_empty() {
            "-".to_string()
        } else {
            c.iter()
                .map(|(u, n)| format!("{u}={n}"))
                .collect::<Vec<_>>()
                .join(",")
        }
    };
    out!("run\tstep\tenvironment\tprovider\tversion\tused\tdenied\tstarted\trecord");
    // Every field comes from a record file in the state directory: shown
    // through the one sanitizer, like the break-glass listing.
    let e = cordon_core::sanitize::escape_for_terminal;
    for r in &runs {
        out!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            e(&r.run_id),
            e(&r.step),
            e(&r.environment),
            e(&r.provider),
            e(r.version.as_deref().unwrap_or("-")),
            e(&counts(&r.used)),
            e(&counts(&r.denied)),
            e(&r.started_at),
            e(&r.record.display().to_string())
        );
    }
    say!("cordon: {} run(s) used {which}", runs.len());
    Ok(0)
}
