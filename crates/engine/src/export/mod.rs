//! `cordon export in-toto`: runs as in-toto link and layout metadata, for
//! `in-toto-verify` (PyPI `in-toto` 3.x), which verifies links, not
//! statements.
//!
//! Two exports write into a directory:
//!
//! - [`export_run`], one step run: `<step>.<first 8 hex of keyid>.link` and
//!   `root.layout`;
//! - [`export_pipeline_run`] (see [`pipeline`]), one pipeline run: a link
//!   per step and one `root.layout` whose steps follow the lineage.
//!
//! A link is a DSSE envelope (payload type `application/vnd.in-toto+json`)
//! around an in-toto link: `materials` = the input files, `products` = the
//! output files, with their sha256 as the record holds them; signed with
//! the environment's record-signing key (the key that signed the record),
//! which the layout names as the step's only functionary. The layout is
//! signed with the key the user names (the layout owner's).
//!
//! Every layout has one inspection, `outputs-on-disk`, that `in-toto-verify`
//! runs where it is started: it re-reads the output directories and
//! requires every recorded product to be there (`REQUIRE`) and to be
//! exactly a product of the step that wrote it (`MATCH`), and nothing else
//! to be in them (`DISALLOW`).
//!
//! Artifact names are host paths relative to the base directory (the
//! current directory by default); run `in-toto-verify` in that directory.
//! Files outside it cannot be named and make the export fail.
//!
//! This module owns turning verified records into links, artifact rules and
//! a layout. It never exports a record `cordon verify` rejects (a link is a
//! signed claim, and signing a claim the records do not support would
//! launder it), never writes outside the export directory, and never sees
//! a secret value: records hold none.

pub mod pipeline;
pub mod rules;

use crate::keys::{KeyError, TrustRoots};
use cordon_core::digest::Entry;
#[cfg(test)]
use cordon_core::digest::Sha256Digest;
use cordon_manifest::config::WorkspaceConfig;
use cordon_manifest::manifest::ManifestError;
use cordon_record::attest::{self, AttestError, Signer};
#[cfg(test)]
use cordon_record::record::CacheInfo;
use cordon_record::record::{MountRecord, StepRecord, TreeRecord};
use cordon_record::run::Termination;
use cordon_record::verify::{Finding, Scope, VerifyError};
use rules::Rule;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The inspection every layout ends with.
pub const INSPECTION: &str = "outputs-on-disk";

/// How long a layout stays valid. in-toto refuses an expired layout; a year
/// lets an audit of last year's model still run, and a layout that must
/// last longer is exported again.
const LAYOUT_VALIDITY: time::Duration = time::Duration::days(365);

/// Why an export could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The records could not be verified at all (no state, no such run).
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// A record the export needs does not verify.
    #[error("the records do not verify ({0}); run `cordon verify` for every problem")]
    NotVerified(Finding),
    /// A record or pipeline record cannot be read or is not what it must be.
    #[error("cannot read {path}: {message}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The run cannot be exported as it is (it failed, names a file outside
    /// the base directory, ...).
    #[error("{0}")]
    Refused(String),
    /// The records' environment is not in the workspace configuration.
    #[error(transparent)]
    Config(#[from] ManifestError),
    /// The environment's record-signing key cannot be had.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The environment has no key to sign the links with.
    #[error(
        "environment `{0}` has no signing key to sign the link with\n  fix: run `cordon key generate --env {0}`"
    )]
    NoSigningKey(String),
    /// Signing failed.
    #[error(transparent)]
    Sign(#[from] AttestError),
    /// Writing the export failed.
    #[error("cannot write {0}: {1}")]
    Write(PathBuf, std::io::Error),
}

/// Where an export reads from and writes to.
#[derive(Debug)]
pub struct ExportRequest<'a> {
    /// The state directory holding `records/` (and `pipelines/`).
    pub state_dir: &'a Path,
    /// The workspace whose environments signed the records.
    pub workspace: &'a WorkspaceConfig,
    /// The keys the records are verified against.
    pub roots: &'a TrustRoots,
    /// The layout owner's key.
    pub layout_key: &'a Signer,
    /// The directory artifact names are relative to (resolved).
    pub base: &'a Path,
    /// Where the links and the layout go.
    pub dir: &'a Path,
}

/// What an export wrote.
#[derive(Debug)]
pub struct Exported {
    /// The link files, one per step.
    pub links: Vec<PathBuf>,
    /// The layout file.
    pub layout: PathBuf,
}

/// A mount directory of a run: its host path and its artifact name.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Dir {
    host: PathBuf,
    name: String,
}

impl Dir {
    /// Path components below the base: deeper directories are matched
    /// first, so a rule for an enclosing directory never claims their
    /// files.
    fn depth(&self) -> usize {
        Path::new(&self.name).components().count()
    }
}

/// A verified, successful step run as an export sees it: artifact names
/// (base-relative paths) with their sha256.
#[derive(Debug, Clone)]
struct Run {
    record: StepRecord,
    materials: BTreeMap<String, String>,
    products: BTreeMap<String, String>,
    /// Read and read-write mounts.
    inputs: Vec<Dir>,
    /// Write and read-write mounts.
    outputs: Vec<Dir>,
}

fn relative(base: &Path, host: &Path, rel: &str) -> Result<String, ExportError> {
    let full = if rel.is_empty() {
        host.to_path_buf()
    } else {
        host.join(rel)
    };
    // in-toto names an artifact by its path with every `\` turned into `/`
    // (its resolver normalizes Windows separators, on every platform), so a
    // file named `models\v1.bin` is the artifact `models/v1.bin` to
    // `in-toto-verify`; any other name would never match the file on disk.
    full.strip_prefix(base)
        .map(|p| p.to_string_lossy().replace('\\', "/"))
        .map_err(|_| {
            ExportError::Refused(format!(
                "{} is outside the base directory {}; export from a directory that contains every mount (--base)",
                full.display(),
                base.display()
            ))
        })
}

fn files(
    base: &Path,
    host: &Path,
    entries: &[Entry],
    into: &mut BTreeMap<String, String>,
) -> Result<(), ExportError> {
    for e in entries {
        if let Some(h) = &e.sha256 {
            let name = relative(base, host, &e.path)?;
            // Two files in-toto would name alike (`a\b` and `a/b`) cannot
            // both be stated: refused rather than one silently dropped.
            if into
                .insert(name.clone(), h.clone())
                .is_some_and(|old| old != *h)
            {
                return Err(ExportError::Refused(format!(
                    "two files are both `{}` to in-toto (which reads `\\` as `/`); rename one",
                    cordon_core::sanitize::escape_for_terminal(&name)
                )));
            }
        }
    }
    Ok(())
}

impl Run {
    /// The run as links and rules see it. A cache hit's record keeps only
    /// the tree digest of each input; its files are named from `source`,
    /// the run that produced the outputs, whose input trees are the same
    /// (the action key covers them; the digests are compared here).
    fn new(
        record: StepRecord,
        source: Option<&StepRecord>,
        base: &Path,
    ) -> Result<Run, ExportError> {
        if !record.success {
            return Err(ExportError::Refused(format!(
                "run {} of step `{}` failed; only successful runs have products to attest",
                record.run_id, record.step
            )));
        }
        let mut materials = BTreeMap::new();
        let mut products = BTreeMap::new();
        let mut inputs = Vec::new();
        let mut outputs = Vec::new();
        for m in &record.mounts {
            let dir = Dir {
                host: m.host.clone(),
                name: relative(base, &m.host, "")?,
            };
            if let Some(before) = &m.before {
                let entries = match &before.entries {
                    Some(e) => e,
                    None => source_entries(&record, m, before, source)?,
                };
                files(base, &m.host, entries, &mut materials)?;
                inputs.push(dir.clone());
            }
            if let Some(after) = &m.after {
                let entries = after.entries.as_deref().ok_or_else(|| {
                    ExportError::Refused(format!(
                        "record {} lists no files for output {}",
                        record.run_id, m.guest
                    ))
                })?;
                files(base, &m.host, entries, &mut products)?;
                outputs.push(dir);
            }
        }
        Ok(Run {
            record,
            materials,
            products,
            inputs,
            outputs,
        })
    }

    fn step(&self) -> &str {
        &self.record.step
    }

    fn link(&self) -> Value {
        let artifacts = |a: &BTreeMap<String, String>| -> Map<String, Value> {
            a.iter()
                .map(|(k, v)| (k.clone(), json!({ "sha256": v })))
                .collect()
        };
        let r = &self.record;
        let mut environment = json!({
            "cordon-run": r.run_id,
            "cordon-environment": r.environment,
            "cordon-component": r.component.sha256.to_string(),
        });
        if r.cache.hit
            && let Some(source) = &r.cache.source_run
        {
            environment["cordon-cache-hit-of"] = json!(source);
        }
        json!({
            "_type": "link",
            "name": r.step,
            "command": r.args,
            "materials": artifacts(&self.materials),
            "products": artifacts(&self.products),
            "byproducts": {
                "return-value": match r.termination {
                    Termination::Exited { code } => i64::from(code),
                    _ => -1,
                },
                "stdout-sha256": r.stdout.sha256.to_string(),
                "stderr-sha256": r.stderr.sha256.to_string(),
            },
            "environment": environment,
        })
    }
}

/// The input files of mount `m` of cache hit `record`, from the run that
/// produced its outputs.
fn source_entries<'a>(
    record: &StepRecord,
    m: &MountRecord,
    before: &TreeRecord,
    source: Option<&'a StepRecord>,
) -> Result<&'a [Entry], ExportError> {
    let refuse = |why: String| {
        ExportError::Refused(format!(
            "cannot name the input files of {} of run {} (step `{}`): {why}",
            m.guest, record.run_id, record.step
        ))
    };
    let source = source.ok_or_else(|| {
        refuse(
            "its record keeps only the tree digest, and it names no run it is a cache hit of"
                .into(),
        )
    })?;
    source
        .mounts
        .iter()
        .filter(|s| s.guest == m.guest)
        .filter_map(|s| s.before.as_ref())
        .find(|b| b.sha256 == before.sha256)
        .and_then(|b| b.entries.as_deref())
        .ok_or_else(|| {
            refuse(format!(
                "run {} it is a cache hit of read a different {}",
                source.run_id, m.guest
            ))
        })
}

/// Verifies run `run_id` as `cordon verify --run` does, then reads its
/// record.
fn verified_record(req: &ExportRequest<'_>, run_id: &str) -> Result<StepRecord, ExportError> {
    let verdict = cordon_record::verify::verify(
        req.state_dir,
        req.workspace,
        req.roots,
        &Scope::Run(run_id.to_string()),
    )?;
    if let Some(f) = verdict.findings.into_iter().next() {
        return Err(ExportError::NotVerified(f));
    }
    let path = cordon_record::chain::record_path(&req.state_dir.join("records"), run_id);
    let bytes = std::fs::read(&path).map_err(|e| ExportError::Unreadable {
        path: path.clone(),
        message: e.to_string(),
    })?;
    serde_json::from_slice(&bytes).map_err(|e| ExportError::Unreadable {
        path,
        message: format!("not a step record: {e}"),
    })
}

/// A verified run ready to export, with its cache source read (and
/// verified) when its record does not list its input files.
fn verified_run(req: &ExportRequest<'_>, run_id: &str) -> Result<Run, ExportError> {
    let record = verified_record(req, run_id)?;
    let lists_inputs = record
        .mounts
        .iter()
        .all(|m| m.before.as_ref().is_none_or(|b| b.entries.is_some()));
    let source = match (&record.cache.source_run, lists_inputs) {
        (Some(id), false) if record.cache.hit => Some(verified_record(req, id)?),
        _ => None,
    };
    Run::new(record, source.as_ref(), req.base)
}

/// The environment's record signer: the functionary of every step.
fn functionary(req: &ExportRequest<'_>, env_name: &str) -> Result<Signer, ExportError> {
    let env = req.workspace.env(env_name)?;
    Ok(crate::keys::record_signer(env, &req.workspace.dir)?
        .ok_or_else(|| ExportError::NoSigningKey(env_name.to_string()))?
        .signer)
}

fn public_key(s: &Signer) -> Value {
    json!({
        "keyid": s.keyid(),
        "keytype": "ed25519",
        "scheme": "ed25519",
        "keyval": {"public": hex::encode(s.public().as_bytes())},
    })
}

/// A layout step for `run`, signed for by `functionary`.
fn layout_step(run: &Run, functionary: &Signer, materials: &[Rule], products: &[Rule]) -> Value {
    json!({
        "_type": "step",
        "name": run.step(),
        "threshold": 1,
        "pubkeys": [functionary.keyid()],
        "expected_command": run.record.args,
        "expected_materials": rules::to_json(materials),
        "expected_products": rules::to_json(products),
    })
}

/// The `outputs-on-disk` inspection's material rules: the files on disk
/// now, where `in-toto-verify` runs. Every recorded product must be there
/// (`REQUIRE`, before anything consumes it: without it a deleted product
/// would simply be absent from the queue, and nothing fails on absence),
/// must equal the product of the step that wrote it (`MATCH`), and nothing
/// else may lie in an output directory (`DISALLOW`). The rest of the
/// directory is not the pipeline's business (`ALLOW *`).
fn inspection_rules(runs: &[&Run]) -> Vec<Rule> {
    let mut rules: Vec<Rule> = runs
        .iter()
        .flat_map(|r| r.products.keys())
        .map(|name| Rule::Require(name.clone()))
        .collect();
    let mut dirs: Vec<(&Dir, &str)> = runs
        .iter()
        .flat_map(|r| r.outputs.iter().map(move |d| (d, r.step())))
        .collect();
    dirs.sort_by(|a, b| b.0.depth().cmp(&a.0.depth()).then(a.0.name.cmp(&b.0.name)));
    for (dir, step) in dirs {
        let pattern = rules::under(&dir.name);
        rules.push(Rule::MatchProducts {
            pattern: pattern.clone(),
            step: step.to_string(),
        });
        rules.push(Rule::Disallow(pattern));
    }
    rules.push(Rule::Allow("*".into()));
    rules
}

/// The layout: `steps` signed for by `functionary`, then the inspection.
fn layout(readme: String, functionary: &Signer, steps: Vec<Value>, runs: &[&Run]) -> Value {
    let expires = time::OffsetDateTime::now_utc() + LAYOUT_VALIDITY;
    let expires = expires.replace_nanosecond(0).unwrap_or(expires);
    let expires = expires
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    json!({
        "_type": "layout",
        "expires": expires,
        "readme": readme,
        "keys": { functionary.keyid(): public_key(functionary) },
        "steps": steps,
        "inspect": [{
            "_type": "inspection",
            "name": INSPECTION,
            "run": ["true"],
            "expected_materials": rules::to_json(&inspection_rules(runs)),
            "expected_products": [["ALLOW", "*"]],
        }],
    })
}

fn write_envelope(path: &Path, signer: &Signer, payload: &Value) -> Result<(), ExportError> {
    let bytes = serde_json::to_vec(payload).expect("JSON values serialize");
    let envelope = signer.envelope(attest::PAYLOAD_TYPE, &bytes)?;
    let mut out = serde_json::to_vec_pretty(&envelope).expect("JSON values serialize");
    out.push(b'\n');
    cordon_core::fsutil::write_atomic(path, &out)
        .map_err(|e| ExportError::Write(path.to_path_buf(), e))
}

/// Signs and writes each run's link and the layout into `req.dir`.
fn write(
    req: &ExportRequest<'_>,
    functionary: &Signer,
    runs: &[&Run],
    layout: &Value,
) -> Result<Exported, ExportError> {
    cordon_core::fsutil::create_private_dir(req.dir)
        .map_err(|e| ExportError::Write(req.dir.to_path_buf(), e))?;
    let mut links = Vec::new();
    for run in runs {
        // The name in-toto looks for: `<step>.<keyid[:8]>.link`.
        let path = req
            .dir
            .join(format!("{}.{}.link", run.step(), &functionary.keyid()[..8]));
        write_envelope(&path, functionary, &run.link())?;
        links.push(path);
    }
    let layout_path = req.dir.join("root.layout");
    write_envelope(&layout_path, req.layout_key, layout)?;
    Ok(Exported {
        links,
        layout: layout_path,
    })
}

/// The layout step of a single run: its functionary, its command, exactly
/// its recorded inputs as materials and its recorded outputs as products.
fn single_step(run: &Run, functionary: &Signer) -> Value {
    let mut materials: Vec<Rule> = run
        .materials
        .keys()
        .map(|n| Rule::Allow(rules::literal(n)))
        .collect();
    materials.push(Rule::Disallow("*".into()));
    let mut products: Vec<Rule> = run
        .products
        .keys()
        .map(|n| Rule::Create(rules::literal(n)))
        .collect();
    products.push(Rule::Disallow("*".into()));
    layout_step(run, functionary, &materials, &products)
}

/// Exports step run `run_id` into `req.dir`: its link and a layout with one
/// step and the `outputs-on-disk` inspection. Refuses a run whose records
/// do not verify, or that failed.
pub fn export_run(req: &ExportRequest<'_>, run_id: &str) -> Result<Exported, ExportError> {
    let run = verified_run(req, run_id)?;
    let functionary = functionary(req, &run.record.environment)?;
    let layout = layout(
        format!("Cordon run {} of step {}", run.record.run_id, run.step()),
        &functionary,
        vec![single_step(&run, &functionary)],
        &[&run],
    );
    write(req, &functionary, &[&run], &layout)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A complete step record of a successful run of `step` (the one
    /// schema every reader uses).
    pub(super) fn record(step: &str, mounts: Value) -> StepRecord {
        let d = |s: &str| Sha256Digest::of(s.as_bytes()).to_string();
        let stream = json!({"sha256": d(""), "bytes_written": 0, "bytes_captured": 0,
                            "truncated": false, "redacted": false});
        serde_json::from_value(json!({
            "format": cordon_record::record::RECORD_FORMAT,
            "run_id": format!("r-{step}"),
            "step": step,
            "environment": "dev",
            "runner": {"name": "cordon", "version": "0", "sandbox": "x"},
            "manifest": {"path": "/m.toml", "sha256": d("manifest")},
            "component": {"path": "/c.wasm", "sha256": d("component")},
            "args": [step],
            "env": {},
            "mounts": mounts,
            "limits": cordon_manifest::manifest::Limits::default(),
            "stdout": stream,
            "stderr": stream,
            "termination": {"kind": "exited", "code": 0},
            "success": true,
            "outputs": "published",
            "cache": {"hit": false},
            "started_at": "t",
            "finished_at": "t",
        }))
        .unwrap()
    }

    pub(super) fn mount(guest: &str, host: &str, access: &str, files: &[(&str, &str)]) -> Value {
        let entries: Vec<Value> = files
            .iter()
            .map(|(p, h)| {
                serde_json::to_value(Entry {
                    path: p.to_string(),
                    path_hex: None,
                    kind: cordon_core::digest::EntryKind::File,
                    size: 1,
                    sha256: Some(h.to_string()),
                })
                .unwrap()
            })
            .collect();
        let tree = json!({"sha256": Sha256Digest::of(files.len().to_string().as_bytes()).to_string(),
                          "files": files.len(), "bytes": 1, "entries": entries});
        let mut m = json!({"guest": guest, "host": host, "access": access, "purpose": "p"});
        if access != "write" {
            m["before"] = tree.clone();
        }
        if access != "read" {
            m["after"] = tree;
        }
        m
    }

    #[test]
    fn a_deleted_product_is_required_before_any_rule_consumes_it() {
        let run = Run::new(
            record(
                "sum",
                json!([
                    mount("/in", "/w/data", "read", &[("a", "aa")]),
                    mount("/out", "/w/sums", "write", &[("S", "ss")])
                ]),
            ),
            None,
            Path::new("/w"),
        )
        .unwrap();
        assert_eq!(
            inspection_rules(&[&run]),
            vec![
                Rule::Require("sums/S".into()),
                Rule::MatchProducts {
                    pattern: "sums/*".into(),
                    step: "sum".into()
                },
                Rule::Disallow("sums/*".into()),
                Rule::Allow("*".into()),
            ]
        );
        assert_eq!(run.link()["materials"]["data/a"]["sha256"], "aa");
        assert_eq!(run.link()["products"]["sums/S"]["sha256"], "ss");
    }

    #[test]
    fn a_cache_hit_names_its_inputs_from_the_run_it_reused_and_only_if_the_trees_agree() {
        let source = record(
            "t",
            json!([
                mount("/in", "/w/d", "read", &[("x", "xx")]),
                mount("/out", "/w/o", "write", &[("m", "mm")])
            ]),
        );
        let mut hit = source.clone();
        hit.run_id = "r-hit".into();
        hit.cache = CacheInfo {
            hit: true,
            source_run: Some("r-t".into()),
            ..CacheInfo::default()
        };
        hit.mounts[0].before.as_mut().unwrap().entries = None;
        let run = Run::new(hit.clone(), Some(&source), Path::new("/w")).unwrap();
        assert_eq!(run.materials.get("d/x").map(String::as_str), Some("xx"));
        assert_eq!(run.link()["environment"]["cordon-cache-hit-of"], "r-t");

        let err = Run::new(hit.clone(), None, Path::new("/w")).unwrap_err();
        assert!(err.to_string().contains("tree digest"), "{err}");
        let mut other = source.clone();
        other.mounts[0].before.as_mut().unwrap().sha256 = Sha256Digest::of(b"other");
        let err = Run::new(hit, Some(&other), Path::new("/w")).unwrap_err();
        assert!(err.to_string().contains("read a different /in"), "{err}");
    }

    #[test]
    fn failed_runs_and_files_outside_the_base_are_refused() {
        let mut r = record("s", json!([mount("/out", "/w/o", "write", &[("m", "mm")])]));
        r.success = false;
        let err = Run::new(r, None, Path::new("/w")).unwrap_err();
        assert!(err.to_string().contains("failed"), "{err}");
        let r = record("s", json!([mount("/out", "/elsewhere/o", "write", &[])]));
        let err = Run::new(r, None, Path::new("/w")).unwrap_err();
        assert!(
            err.to_string().contains("outside the base directory"),
            "{err}"
        );
    }
}
