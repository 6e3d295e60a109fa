//! Where the runner keeps its own state, outside any step's reach: the
//! state directory of a workspace, the user's secrets home (encrypted
//! stores, their keys, trusted public keys) and the compiled-component
//! cache with the key that seals it. One place computes each, so the plan's
//! list of paths no mount may reach and the code that writes there agree.

use std::path::{Path, PathBuf};

/// The name of a state directory when none is given: `.cordon`, beside the
/// manifest or pipeline file (or in the current directory for commands
/// that take no file).
pub const STATE_DIR_NAME: &str = ".cordon";

/// The variable that moves the secrets home.
pub const SECRETS_HOME_VAR: &str = "CORDON_SECRETS_HOME";

/// The variable that moves the compiled-component cache out of the state
/// directory.
pub const COMPILE_CACHE_VAR: &str = "CORDON_COMPILE_CACHE";

/// The variable that names the file of the key sealing the compiled cache.
pub const COMPILE_CACHE_KEY_VAR: &str = "CORDON_COMPILE_CACHE_KEY";

/// The compiled cache's key file name inside the secrets home.
pub const COMPILE_CACHE_KEY_FILE: &str = "compile-cache.key";

/// A workspace's state directory: records, the content store, the action
/// cache, the journal and staging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir(PathBuf);

impl StateDir {
    /// `explicit` (from `--state`) when given, else `.cordon` inside `dir`.
    pub fn resolve(explicit: Option<PathBuf>, dir: &Path) -> StateDir {
        StateDir(explicit.unwrap_or_else(|| dir.join(STATE_DIR_NAME)))
    }

    /// `explicit` when given, else `.cordon` in the current directory: for
    /// commands that take no manifest.
    pub fn resolve_here(explicit: Option<PathBuf>) -> StateDir {
        StateDir(explicit.unwrap_or_else(|| PathBuf::from(STATE_DIR_NAME)))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The directory, owned.
    pub fn into_path(self) -> PathBuf {
        self.0
    }

    /// `<state>/records`.
    pub fn records(&self) -> PathBuf {
        self.0.join("records")
    }
}

/// The directory default key files and stores live in:
/// `$CORDON_SECRETS_HOME`, else `$XDG_CONFIG_HOME/cordon`, else
/// `~/.config/cordon`; `None` when none of them is set.
pub fn secrets_home() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    var(SECRETS_HOME_VAR)
        .map(PathBuf::from)
        .or_else(|| var("XDG_CONFIG_HOME").map(|d| PathBuf::from(d).join("cordon")))
        .or_else(|| var("HOME").map(|d| PathBuf::from(d).join(".config/cordon")))
}

/// The directory of public keys the user trusts for `env`'s records.
pub fn trust_dir(env: &str) -> Option<PathBuf> {
    secrets_home().map(|h| h.join("trusted").join(env))
}

/// The directory of reviewers' public keys whose approvals the user
/// trusts for `env`: `<secrets home>/trusted/<env>/reviewers/`. They count
/// with the `reviewers` of `cordon.toml`, and live outside the workspace
/// like every other trust root.
pub fn reviewer_trust_dir(env: &str) -> Option<PathBuf> {
    trust_dir(env).map(|d| d.join("reviewers"))
}

/// Where compiled components are cached for runs with state in
/// `state_dir`: `$CORDON_COMPILE_CACHE`, else `<state>/compiled`.
pub fn compile_cache_dir(state_dir: &Path) -> PathBuf {
    std::env::var_os(COMPILE_CACHE_VAR)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| state_dir.join("compiled"))
}

/// Where the key sealing the compiled cache is kept:
/// `$CORDON_COMPILE_CACHE_KEY`, else `<secrets home>/compile-cache.key`;
/// `None` when neither can be placed (then nothing is cached).
pub fn compile_cache_key_path() -> Option<PathBuf> {
    std::env::var_os(COMPILE_CACHE_KEY_VAR)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| secrets_home().map(|h| h.join(COMPILE_CACHE_KEY_FILE)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_directory_defaults_to_dot_cordon_beside_the_file() {
        assert_eq!(
            StateDir::resolve(None, Path::new("/w/step")).path(),
            Path::new("/w/step/.cordon")
        );
        assert_eq!(
            StateDir::resolve(Some("/s".into()), Path::new("/w")).path(),
            Path::new("/s")
        );
        assert_eq!(StateDir::resolve_here(None).path(), Path::new(".cordon"));
    }
}
