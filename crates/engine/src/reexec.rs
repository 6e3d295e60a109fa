//! Re-execution: run a recorded step again, in the same world, and compare.
//!
//! Everything comes from the record, never from the manifest (which may
//! have changed since): the component by digest from the state directory's
//! content-addressed store (where every run puts it) or from its recorded
//! path when the digest still matches; each read mount from its host path
//! when its tree digest still matches, else from the store; argv, env,
//! limits, the fixed clock and the random seed as recorded. Secrets are
//! resolved again the way `cordon run` does (their values are never
//! recorded).
//!
//! The step writes into scratch directories under `<state>/reexec/`, never
//! into the published outputs, and nothing is recorded or published. The
//! outputs, the stdout and stderr digests and the exit status are compared
//! with the record.

use crate::cas::Cas;
use cordon_manifest::manifest::{Access, SecretGrant, Sha256Digest};
use cordon_record::record::{StepRecord, TreeRecord};
use cordon_record::verify::{Finding, FindingKind, Scope};
use cordon_sandbox::{Determinism, Grants, Preopen, Sandbox, Stdio, Termination, Watched};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a re-execution found.
#[derive(Debug, Clone)]
pub enum Reexecution {
    /// Same outputs, streams and exit status.
    Reproduced {
        /// Output files compared.
        files: usize,
    },
    /// Something differs; each item names it.
    Differs(Vec<String>),
}

/// The outcome of re-executing several runs.
#[derive(Debug, Default)]
pub struct ScopeReport {
    /// Runs that differ or could not be re-executed.
    pub findings: Vec<Finding>,
    /// Runs that reproduced, with the number of output files compared and,
    /// when identical outputs here do not carry the usual guarantee (native
    /// floats re-executed on another CPU architecture), why.
    pub reproduced: Vec<(String, usize, Option<String>)>,
}

/// Why a re-execution on `here` (a CPU architecture) may not reproduce the
/// recorded run bit for bit, or `None` when it should: a run with native
/// floats produced the NaN bits of the architecture it ran on, so only
/// there is a re-execution held to identical bits. Canonical NaNs are the
/// same everywhere. A record without an architecture predates it being
/// recorded; with native floats, it cannot say where it ran.
pub fn architecture_caveat(
    reproducibility: &cordon_record::record::Reproducibility,
    here: &str,
) -> Option<String> {
    if reproducibility.nan_canonicalization {
        return None;
    }
    match reproducibility.arch.as_deref() {
        Some(arch) if arch == here => None,
        // The record's word, shown through the sanitizer like any text
        // read back from the state directory.
        Some(arch) => Some(format!(
            "recorded on {} with native floats, re-executed on {here}: NaN bits may differ between architectures",
            cordon_core::sanitize::escape_for_terminal(arch)
        )),
        None => Some(format!(
            "recorded with native floats on an architecture the record does not name, re-executed on {here}: NaN bits may differ between architectures"
        )),
    }
}

/// Re-executes every run in `scope` (in chain order). Returns a finding for
/// each run that differs or cannot be re-executed, and the runs that
/// reproduced with the number of output files compared. Records that are
/// missing or unreadable are skipped: `verify` reports them.
pub fn reexecute_scope(
    state_dir: &Path,
    scope: &Scope,
    sandbox: &Sandbox,
) -> std::io::Result<ScopeReport> {
    let records_dir = state_dir.join("records");
    let runs: Vec<String> = match scope {
        Scope::Run(id) => vec![id.clone()],
        Scope::All | Scope::Since(_) => {
            let all: Vec<String> = cordon_record::chain::read_lines(&records_dir)?
                .iter()
                .filter_map(|l| cordon_record::chain::LogEntry::parse(l).ok())
                .map(|e| e.run)
                .collect();
            match scope {
                Scope::Since(id) => match all.iter().position(|r| r == id) {
                    Some(from) => all[from..].to_vec(),
                    None => Vec::new(),
                },
                _ => all,
            }
        }
    };
    let mut findings = Vec::new();
    let mut reproduced = Vec::new();
    // Read through the record's type; a repair record (or anything that is
    // not a step record) has nothing to repeat and is skipped, like an
    // unreadable one (`verify` reports those).
    let read = |run: &str| {
        std::fs::read(cordon_record::chain::record_path(&records_dir, run))
            .ok()
            .and_then(|b| serde_json::from_slice::<StepRecord>(&b).ok())
    };
    // Each executed run is re-executed once, however many cache hits it
    // served.
    let mut done: std::collections::HashMap<String, Result<Reexecution, String>> =
        Default::default();
    for run in runs {
        let subject = format!("record {run}");
        let Some(record) = read(&run) else {
            continue;
        };
        // A cache hit ran nothing: its outputs are those of the run that
        // produced them (restored from the store, digests checked), so that
        // run is what is re-executed.
        let (target, shown) = if record.cache.hit {
            let Some(source) = record.cache.source_run.clone() else {
                findings.push(Finding {
                    subject,
                    kind: FindingKind::Reexecution,
                    problem: "cannot re-execute: a cache hit that names no source run".into(),
                });
                continue;
            };
            (source.to_string(), format!("{run} (cache hit of {source})"))
        } else {
            (run.clone(), run.clone())
        };
        let Some(target_record) = (if target == run {
            Some(record)
        } else {
            read(&target)
        }) else {
            findings.push(Finding {
                subject,
                kind: FindingKind::Reexecution,
                problem: format!(
                    "cannot re-execute: a cache hit of run {target}, whose record is not in this state directory"
                ),
            });
            continue;
        };
        let opted_out = !target_record.reproducibility.reproducible;
        let caveat = architecture_caveat(
            &target_record.reproducibility,
            cordon_record::record::host_arch(),
        );
        let result = done
            .entry(target)
            .or_insert_with(|| reexecute(state_dir, &target_record, sandbox))
            .clone();
        match result {
            Ok(Reexecution::Reproduced { files }) => reproduced.push((shown, files, caveat)),
            Ok(Reexecution::Differs(what)) => findings.push(Finding {
                subject,
                kind: FindingKind::Reexecution,
                problem: format!(
                    "re-execution differs{}{}: {}",
                    if opted_out {
                        " (the step opted out of the fixed clock or seeded randomness)"
                    } else {
                        ""
                    },
                    caveat.map(|c| format!(" ({c})")).unwrap_or_default(),
                    what.join(", ")
                ),
            }),
            Err(e) => findings.push(Finding {
                subject,
                kind: FindingKind::Reexecution,
                problem: format!("cannot re-execute: {e}"),
            }),
        }
    }
    Ok(ScopeReport {
        findings,
        reproduced,
    })
}

/// The tree a mount held before the run, which a re-execution needs.
fn before_of(m: &cordon_record::record::MountRecord) -> Result<Sha256Digest, String> {
    m.before.as_ref().map(|t| t.sha256.clone()).ok_or_else(|| {
        format!(
            "the record is malformed: mount {} has no tree before the run",
            m.guest
        )
    })
}

/// Runs the step of `record` again.
pub(crate) fn reexecute(
    state_dir: &Path,
    record: &StepRecord,
    sandbox: &Sandbox,
) -> Result<Reexecution, String> {
    let run_id = &record.run_id;
    let cas = Cas::for_state(state_dir).map_err(|e| format!("cannot open the store: {e}"))?;

    // The component.
    let component_digest = record.component.sha256.clone();
    let bytes = match cas.get(&component_digest) {
        Ok(b) => b,
        Err(_) => {
            let path = &record.component.path;
            match std::fs::read(path) {
                Ok(b) if Sha256Digest::of(&b) == component_digest => b,
                _ => {
                    return Err(format!(
                        "the component {component_digest} is neither in the store nor at {}",
                        path.display()
                    ));
                }
            }
        }
    };
    // The same float semantics as the recorded run.
    let floats = if !record.reproducibility.nan_canonicalization {
        cordon_manifest::manifest::FloatMode::Native
    } else {
        cordon_manifest::manifest::FloatMode::Canonical
    };
    // Read from the content store, which verified them.
    let checked = cordon_manifest::plan::ComponentBytes::checked(
        record.component.path.clone(),
        component_digest.clone(),
        bytes.into(),
    );
    let component = sandbox
        .load_step(&component_digest, &checked, false, floats)
        .map_err(|e| format!("cannot load the component: {e}"))?;

    let scratch = state_dir
        .join("reexec")
        .join(format!("{run_id}-{:08x}", rand::random::<u32>()));
    cordon_core::fsutil::create_private_dir(&scratch)
        .map_err(|e| format!("cannot create {}: {e}", scratch.display()))?;
    let result = run_in(&scratch, &cas, record, sandbox, &component);
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn run_in(
    scratch: &Path,
    cas: &Cas,
    record: &StepRecord,
    sandbox: &Sandbox,
    component: &cordon_sandbox::StepComponent,
) -> Result<Reexecution, String> {
    let mut preopens = Vec::new();
    let mut watched = Vec::new();
    let mut outputs: Vec<(String, PathBuf, Option<TreeRecord>)> = Vec::new();
    for (i, m) in record.mounts.iter().enumerate() {
        let guest = m.guest.clone();
        let host = m.host.clone();
        match m.access {
            Access::Read => {
                let want = before_of(m)?;
                let dir = match cordon_core::digest::tree(&host) {
                    Ok(t) if t.digest == want => host,
                    _ if cas.has_tree(&want) => {
                        let d = scratch.join(format!("in-{i}"));
                        cas.restore_tree(&want, &d)
                            .map_err(|e| format!("cannot restore input {guest}: {e}"))?;
                        d
                    }
                    _ => {
                        return Err(format!(
                            "input {guest} ({}) changed since the run and is not in the store",
                            host.display()
                        ));
                    }
                };
                preopens.push(Preopen {
                    host: dir,
                    guest,
                    writable: false,
                });
            }
            Access::Write => {
                let d = scratch.join(format!("out-{i}"));
                std::fs::create_dir(&d)
                    .map_err(|e| format!("cannot create {}: {e}", d.display()))?;
                watched.push(Watched {
                    path: d.clone(),
                    baseline: 0,
                });
                preopens.push(Preopen {
                    host: d.clone(),
                    guest: guest.clone(),
                    writable: true,
                });
                outputs.push((guest, d, m.after.clone()));
            }
            Access::ReadWrite => {
                // A read-write mount's contents before the run were replaced
                // in place by the run itself.
                let want = before_of(m)?;
                if !cas.has_tree(&want) {
                    return Err(format!(
                        "read-write mount {guest} was changed in place and its earlier contents are not in the store"
                    ));
                }
                let d = scratch.join(format!("rw-{i}"));
                cas.restore_tree(&want, &d)
                    .map_err(|e| format!("cannot restore {guest}: {e}"))?;
                watched.push(Watched {
                    path: d.clone(),
                    baseline: cordon_core::digest::charged_bytes(&d)
                        .map_err(|e| format!("cannot measure {guest}: {e}"))?,
                });
                preopens.push(Preopen {
                    host: d.clone(),
                    guest: guest.clone(),
                    writable: true,
                });
                outputs.push((guest, d, m.after.clone()));
            }
        }
    }

    let grants_for: Vec<SecretGrant> = record
        .secrets
        .iter()
        .map(|(name, a)| SecretGrant {
            name: name.clone(),
            uses: a.granted_uses.iter().copied().collect(),
            key: None,
            hosts: Vec::new(),
            at: Default::default(),
        })
        .collect();
    // The secrets come from the record's environment, as configured where
    // the re-execution runs; the session ends when `resolution` drops.
    let cwd = std::env::current_dir().map_err(|e| e.to_string())?;
    let workspace = cordon_manifest::config::WorkspaceConfig::discover(None, &cwd)
        .map_err(|e| e.to_string())?;
    let env = workspace
        .env(&record.environment)
        .map_err(|e| e.to_string())?;
    // The same reading as a run's: the grants only, and a value too short
    // to be redacted reliably refused for a use that shows it.
    let cordon_secrets::StepSecrets {
        resolution: _resolution,
        steps,
    } = cordon_secrets::resolve_steps(env, &[(&record.step, &grants_for)])
        .map_err(|e| e.to_string())?;
    let secrets = steps.into_iter().next().unwrap_or_default();

    // The limits the run had (network limits do not matter: a
    // re-execution has no network).
    let limits = record.limits;

    let r = &record.reproducibility;
    let seed = match r.seed.as_deref() {
        None => None,
        Some(h) => Some(
            hex::decode(h)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or("the record's seed is malformed")?,
        ),
    };
    let determinism = Determinism {
        wall_clock: r.fixed_clock_unix_s.map(Duration::from_secs),
        seed,
    };

    let grants = Grants {
        argv: record.args.clone(),
        env: record
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        preopens,
        secrets,
        limits,
        outputs: watched,
        determinism,
        cancel: None,
        // A re-execution never reaches the network: a step that did is
        // not reproducible, and replaying its calls could repeat effects.
        network: None,
        secret_hosts: Default::default(),
    };
    let outcome = sandbox
        .run(component, grants, Stdio::discard())
        .map_err(|e| format!("cannot run the step: {e}"))?;

    let mut differs = Vec::new();
    let recorded_termination = serde_json::to_value(&record.termination).unwrap_or_default();
    let now_termination = serde_json::to_value(&outcome.termination).unwrap_or_default();
    if recorded_termination["kind"] != now_termination["kind"]
        || recorded_termination["code"] != now_termination["code"]
    {
        differs.push(format!(
            "the step ended differently: {} (recorded: {})",
            outcome.termination.describe(),
            recorded_termination
        ));
    }
    for (name, summary, recorded) in [
        ("stdout", &outcome.stdout, &record.stdout),
        ("stderr", &outcome.stderr, &record.stderr),
    ] {
        if summary.sha256 != recorded.sha256 {
            differs.push(format!("{name} differs"));
        }
    }
    let mut files = 0;
    if matches!(outcome.termination, Termination::Exited { code: 0 }) {
        for (guest, dir, after) in &outputs {
            let tree =
                cordon_core::digest::tree(dir).map_err(|e| format!("cannot hash {guest}: {e}"))?;
            files += tree.file_count() as usize;
            let Some(after) = after else {
                continue;
            };
            if tree.digest != after.sha256 {
                for d in cordon_record::verify::differing_files(after, &tree) {
                    differs.push(format!("{guest}/{d}"));
                }
            }
        }
    }
    Ok(if differs.is_empty() {
        Reexecution::Reproduced { files }
    } else {
        Reexecution::Differs(differs)
    })
}

#[cfg(test)]
mod tests {
    use super::architecture_caveat;
    use cordon_record::record::Reproducibility;

    fn floats(canonical: bool, arch: Option<&str>) -> Reproducibility {
        Reproducibility {
            nan_canonicalization: canonical,
            arch: arch.map(String::from),
            ..Default::default()
        }
    }

    #[test]
    fn native_floats_are_held_to_the_same_bits_only_on_the_recorded_architecture() {
        assert_eq!(
            architecture_caveat(&floats(false, Some("x86_64")), "x86_64"),
            None
        );
        let other = architecture_caveat(&floats(false, Some("aarch64")), "x86_64").unwrap();
        assert!(
            other.contains("recorded on aarch64 with native floats, re-executed on x86_64"),
            "{other}"
        );
        // A record's architecture is shown escaped.
        let hostile = architecture_caveat(&floats(false, Some("arm\x1b[2J")), "x86_64").unwrap();
        assert!(!hostile.contains('\x1b'), "{hostile}");
        // Older records name no architecture: with native floats that is
        // said, not assumed to match.
        let unknown = architecture_caveat(&floats(false, None), "x86_64").unwrap();
        assert!(unknown.contains("does not name"), "{unknown}");
    }

    #[test]
    fn canonical_nans_reproduce_on_any_architecture() {
        for arch in [Some("aarch64"), Some("x86_64"), None] {
            assert_eq!(architecture_caveat(&floats(true, arch), "x86_64"), None);
        }
    }
}
