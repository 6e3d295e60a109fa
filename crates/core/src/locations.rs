//! Where the runner keeps its own state, outside any step's reach: the
//! state directory of a workspace, the user's secrets home (encrypted
//! stores, their keys, trusted public keys) and the compiled-component
//! cache with the key that seals it. One place computes each, so the plan's
//! list of paths no mount may reach and the code that writes there agree.

use std::path::{Path, PathBuf};

/// The name of a state directory when none is given: `.cordon`, beside the
/// workspace's `cordon.toml` (see [`StateDir::resolve`]).
pub const STATE_DIR_NAME: &str = ".cordon";

/// The variable that names the state directory when `--state` does not.
pub const STATE_VAR: &str = "CORDON_STATE";

/// The workspace file whose directory holds the default state directory.
/// (The manifest crate parses it; here only its place matters.)
pub const WORKSPACE_FILE: &str = "cordon.toml";

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
///
/// Invariant: every command finds it through [`StateDir::resolve`], so one
/// workspace has one state directory (one chain, one cache, one set of
/// promotions) whichever of its files a command names and wherever it is
/// started from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    path: PathBuf,
    leftover: Option<Leftover>,
}

/// A `.cordon/` beside the file (or in the current directory) that the
/// resolved state directory is not: older versions kept a state directory
/// beside every manifest and pipeline. Its records and promotions are not
/// read; [`Leftover`]'s `Display` is the one-line warning that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    /// The directory no longer used.
    pub old: PathBuf,
    /// The state directory used instead.
    pub used: PathBuf,
}

impl std::fmt::Display for Leftover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Paths are escaped: a directory name can hold a newline, and this
        // must stay one line.
        let old = crate::sanitize::escape_for_terminal(&self.old.display().to_string());
        let used = crate::sanitize::escape_for_terminal(&self.used.display().to_string());
        write!(
            f,
            "{old} is a state directory left by an older version and is no longer read: \
             this workspace's state directory is {used}; to merge, copy {old}/promotions/ \
             into {used}/promotions/ and check the old records with \
             `cordon verify --state {old}`, then remove it (rm -r {old}); \
             or go on using it with --state {old} or {STATE_VAR}"
        )
    }
}

impl StateDir {
    /// The state directory for a command on a file in `dir` (for commands
    /// that take no file, `dir` is the current directory, given as `""`
    /// or `.`): `explicit` (`--state`) when given, else `$CORDON_STATE`
    /// when set, else `.cordon` beside the nearest `cordon.toml` in `dir`
    /// or above it (the workspace's), else `.cordon` in `dir`.
    ///
    /// When the workspace's is used and `dir` holds a `.cordon/` of its
    /// own, that one is reported by [`StateDir::leftover`].
    pub fn resolve(explicit: Option<PathBuf>, dir: &Path) -> StateDir {
        let variable = std::env::var_os(STATE_VAR)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        Self::resolve_with(explicit, variable, dir)
    }

    /// [`StateDir::resolve`] with the variable's value given.
    fn resolve_with(explicit: Option<PathBuf>, variable: Option<PathBuf>, dir: &Path) -> StateDir {
        if let Some(path) = explicit.or(variable) {
            return StateDir {
                path,
                leftover: None,
            };
        }
        let beside = dir.join(STATE_DIR_NAME);
        let here = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let workspace = crate::fsutil::resolve(here).ok().and_then(|abs| {
            abs.ancestors()
                .find(|d| d.join(WORKSPACE_FILE).is_file())
                .map(|d| (abs.clone(), d.to_path_buf()))
        });
        match workspace {
            // The file is in the workspace's top directory (or there is no
            // workspace): the path stays as the user spelled it.
            None => StateDir {
                path: beside,
                leftover: None,
            },
            Some((abs, top)) if abs == top => StateDir {
                path: beside,
                leftover: None,
            },
            Some((abs, top)) => {
                let path = top.join(STATE_DIR_NAME);
                // Both absolute in the warning: it is read from wherever
                // the command was started.
                let leftover = beside.is_dir().then(|| Leftover {
                    old: abs.join(STATE_DIR_NAME),
                    used: path.clone(),
                });
                StateDir { path, leftover }
            }
        }
    }

    /// The `.cordon/` beside the file that this state directory is not,
    /// if there is one.
    pub fn leftover(&self) -> Option<&Leftover> {
        self.leftover.as_ref()
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory, owned.
    pub fn into_path(self) -> PathBuf {
        self.path
    }

    /// `<state>/records`.
    pub fn records(&self) -> PathBuf {
        self.path.join("records")
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

    /// No `cordon.toml` anywhere above: `.cordon` beside the file, as
    /// spelled. (Under a fresh temporary directory, so no workspace file
    /// of the machine running the test is found.)
    #[test]
    fn without_a_workspace_the_state_directory_is_beside_the_file() {
        let t = tempfile::tempdir().unwrap();
        if t.path()
            .ancestors()
            .any(|d| d.join(WORKSPACE_FILE).is_file())
        {
            return;
        }
        let dir = t.path().join("step");
        std::fs::create_dir(&dir).unwrap();
        let s = StateDir::resolve_with(None, None, &dir);
        assert_eq!(s.path(), dir.join(".cordon"));
        assert_eq!(s.leftover(), None);
    }

    #[test]
    fn a_file_in_a_subdirectory_uses_the_workspace_state_directory() {
        let t = tempfile::tempdir().unwrap();
        let top = crate::fsutil::resolve(t.path()).unwrap();
        std::fs::write(top.join(WORKSPACE_FILE), "version = 1\n").unwrap();
        std::fs::create_dir_all(top.join("steps/deep")).unwrap();
        for dir in [top.join("steps"), top.join("steps/deep")] {
            let s = StateDir::resolve_with(None, None, &dir);
            assert_eq!(s.path(), top.join(".cordon"), "from {}", dir.display());
            assert_eq!(s.leftover(), None);
        }
        // In the top directory itself, the path stays as given.
        assert_eq!(
            StateDir::resolve_with(None, None, &top).path(),
            top.join(".cordon")
        );
    }

    /// A directory name can hold a newline: the warning stays one line.
    #[test]
    fn a_leftover_whose_name_holds_a_newline_is_still_one_warning_line() {
        let t = tempfile::tempdir().unwrap();
        let top = crate::fsutil::resolve(t.path()).unwrap();
        std::fs::write(top.join(WORKSPACE_FILE), "version = 1\n").unwrap();
        let sub = top.join("a\ncordon: verified 0 records");
        std::fs::create_dir_all(sub.join(".cordon")).unwrap();
        let s = StateDir::resolve_with(None, None, &sub);
        let text = s.leftover().expect("reported").to_string();
        assert!(!text.contains('\n'), "{text}");
        assert!(text.contains("is a state directory left by an older version"));
    }

    #[test]
    fn the_flag_wins_over_the_variable_which_wins_over_the_workspace() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join(WORKSPACE_FILE), "version = 1\n").unwrap();
        let flag = Some(PathBuf::from("/flag"));
        let var = Some(PathBuf::from("/var"));
        assert_eq!(
            StateDir::resolve_with(flag, var.clone(), t.path()).path(),
            Path::new("/flag")
        );
        assert_eq!(
            StateDir::resolve_with(None, var, t.path()).path(),
            Path::new("/var")
        );
    }

    #[test]
    fn a_state_directory_beside_a_manifest_in_a_workspace_is_reported_as_left_over() {
        let t = tempfile::tempdir().unwrap();
        let top = crate::fsutil::resolve(t.path()).unwrap();
        std::fs::write(top.join(WORKSPACE_FILE), "version = 1\n").unwrap();
        std::fs::create_dir_all(top.join("steps/.cordon")).unwrap();
        let s = StateDir::resolve_with(None, None, &top.join("steps"));
        let leftover = s.leftover().expect("reported");
        assert_eq!(leftover.old, top.join("steps/.cordon"));
        assert_eq!(leftover.used, top.join(".cordon"));
        assert!(!leftover.to_string().contains('\n'));
        // Named outright, the old one is simply used.
        let s = StateDir::resolve_with(Some(top.join("steps/.cordon")), None, &top.join("steps"));
        assert_eq!(s.leftover(), None);
    }
}
