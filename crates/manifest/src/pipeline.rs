//! Pipelines: a DAG of steps, each granted by its own capability manifest.
//!
//! ```toml
//! version = 1                         # optional
//!
//! [pipeline]
//! name = "churn-model"                # optional; defaults to the file stem;
//!                                     # ASCII letters, digits, `-`, `_`, `.`
//!
//! [[step]]
//! manifest = "steps/validate.toml"    # relative to this file
//!
//! [[step]]
//! manifest = "steps/train.toml"
//! needs = ["validate"]                # optional; lineage adds the rest
//! cache = false                       # optional; never serve from the cache
//!
//! [[step]]                            # a manifest written inline; its
//! inline = """                        # paths are relative to this file
//! [step]
//! name = "report"
//! component = "steps/report.wasm"
//! digest = "sha256:..."
//! """
//! ```
//!
//! Dependencies come from `needs` and from lineage: a step that reads a
//! host path another step writes (the same directory, or one inside or
//! around it) runs after it. Every structural problem — a cycle, two steps
//! writing the same path, a `needs` naming no step, two steps with one name,
//! a read of a path nobody produces that does not exist — is reported before
//! anything runs, with the file and line to change.

use crate::manifest::{Access, Location, Manifest, ManifestError, Problem};
use crate::names::PIPELINE_NAME;
use crate::plan::{PlanContext, PlanMemo, StepPlan, mount_host, plan_step_with};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// One step entry of a pipeline file.
#[derive(Debug, Clone)]
pub struct PipelineStep {
    /// The step's manifest, validated.
    pub manifest: Manifest,
    /// Explicit dependencies by step name.
    pub needs: Vec<(String, Location)>,
    /// Whether the action cache may serve this step.
    pub cache: bool,
    /// Where the entry is in the pipeline file.
    pub at: Location,
}

/// A validated pipeline file.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The file.
    pub path: PathBuf,
    /// Its directory.
    pub dir: PathBuf,
    /// sha256 of the file.
    pub sha256: crate::manifest::Sha256Digest,
    /// Pipeline name.
    pub name: String,
    /// Steps in file order.
    pub steps: Vec<PipelineStep>,
}

/// A pipeline resolved for one environment: plans and edges.
#[derive(Debug, Clone)]
pub struct PipelinePlan {
    /// Pipeline name.
    pub name: String,
    /// The pipeline file.
    pub path: PathBuf,
    /// sha256 of the pipeline file.
    pub sha256: crate::manifest::Sha256Digest,
    /// Step plans in file order.
    pub steps: Vec<StepPlan>,
    /// Whether each step may be served from the cache (pipeline setting).
    pub cacheable: Vec<bool>,
    /// `deps[i]`: indices of the steps step `i` waits for, sorted.
    pub deps: Vec<Vec<usize>>,
    /// Why each edge exists, for `cordon plan`.
    pub reasons: BTreeMap<(usize, usize), String>,
}

impl PipelinePlan {
    /// Indices in an order where every step comes after its dependencies.
    pub fn topological_order(&self) -> Vec<usize> {
        let n = self.steps.len();
        let mut done = vec![false; n];
        let mut order = Vec::with_capacity(n);
        while order.len() < n {
            for i in 0..n {
                if !done[i] && self.deps[i].iter().all(|&d| done[d]) {
                    done[i] = true;
                    order.push(i);
                }
            }
        }
        order
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    version: Option<Spanned<i64>>,
    pipeline: Option<RawMeta>,
    #[serde(rename = "step")]
    steps: Vec<Spanned<RawStep>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMeta {
    name: Option<Spanned<String>>,
    #[allow(dead_code)]
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    manifest: Option<Spanned<String>>,
    inline: Option<Spanned<String>>,
    #[serde(default)]
    needs: Vec<Spanned<String>>,
    #[serde(default = "yes")]
    cache: bool,
}

fn yes() -> bool {
    true
}

/// Whether the TOML file at `path` is a pipeline (`[[step]]` array) rather
/// than a step manifest (`[step]` table).
pub fn is_pipeline_file(path: &Path) -> bool {
    cordon_core::fsutil::read_regular_to_string(path, crate::manifest::MAX_PIPELINE_BYTES)
        .is_ok_and(|s| is_pipeline_source(&s))
}

/// Whether `source` is the text of a pipeline (`[[step]]` array) rather
/// than of a step manifest.
pub fn is_pipeline_source(source: &str) -> bool {
    source
        .parse::<toml::Table>()
        .is_ok_and(|t| matches!(t.get("step"), Some(toml::Value::Array(_))))
}

/// The pipeline's name: `[pipeline] name`, or else the file's stem, checked
/// against [`PIPELINE_NAME`] either way (a name reaches records, reports and
/// the jobs of an exported workflow; see [`crate::names`]). A refused name
/// is a problem at its line, or at the file when it is the stem.
fn pipeline_name(
    path: &Path,
    meta: Option<&RawMeta>,
    lines: &crate::manifest::LineIndex<'_>,
    problems: &mut Vec<Problem>,
) -> String {
    if let Some(n) = meta.and_then(|m| m.name.as_ref()) {
        if let Err(why) = PIPELINE_NAME.check(n.get_ref()) {
            problems.push(lines.at(n.span().start).problem(
                PIPELINE_NAME.refusal(n.get_ref(), &why),
                Some(PIPELINE_NAME.rule.into()),
            ));
        }
        return n.get_ref().clone();
    }
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
    let stem = stem.unwrap_or_else(|| "pipeline".into());
    if let Err(why) = PIPELINE_NAME.check(&stem) {
        problems.push(Problem {
            line: 0,
            column: 0,
            message: format!(
                "the pipeline is named after its file, and {}",
                PIPELINE_NAME.refusal(&stem, &why)
            ),
            fix: Some(format!(
                "name it in the file: `[pipeline]` with `name = \"...\"`; {}",
                PIPELINE_NAME.rule
            )),
        });
    }
    stem
}

/// Validates a manifest written inline in the pipeline file at `path`
/// (`source` is that file's text). Problems are reported against the
/// pipeline file, at the lines where they are in it.
/// `lines` indexes `source` once for the whole pipeline: building it per
/// step made planning a pipeline of N inline steps cost N scans of the file
/// (7 s for 10,000 steps).
fn load_inline(
    path: &Path,
    source: &str,
    lines: &crate::manifest::LineIndex<'_>,
    text: &Spanned<String>,
) -> Result<Manifest, ManifestError> {
    let start = text.span().start;
    let opening = lines.at(start).line;
    // A multi-line string drops the newline right after its opening quotes,
    // so its first line is the file's next one.
    let rest = &source[start..];
    let first_line = if (rest.starts_with("\"\"\"") || rest.starts_with("'''"))
        && matches!(rest.as_bytes().get(3), Some(b'\n' | b'\r'))
    {
        opening + 1
    } else {
        opening
    };
    Manifest::parse(path, text.get_ref()).map_err(|mut e| {
        for p in &mut e.problems {
            if p.line > 0 {
                p.line += first_line - 1;
            }
        }
        e
    })
}

fn file_error(path: &Path, problems: Vec<Problem>) -> ManifestError {
    ManifestError {
        path: path.to_path_buf(),
        problems,
    }
}

impl Pipeline {
    /// Reads a pipeline file and every manifest it names. Manifest problems
    /// are reported against the manifest files.
    pub fn load(path: &Path) -> Result<Pipeline, Vec<ManifestError>> {
        Pipeline::load_from(path, &|p: &Path| {
            cordon_core::fsutil::read_regular_to_string(p, crate::manifest::MAX_PIPELINE_BYTES)
        })
    }

    /// Like [`Pipeline::load`], with the pipeline file and every manifest
    /// read by `read` (for example as they were at a git revision). Manifest
    /// paths are joined to the pipeline's directory, not resolved on disk.
    pub fn load_from(
        path: &Path,
        read: &dyn Fn(&Path) -> std::io::Result<String>,
    ) -> Result<Pipeline, Vec<ManifestError>> {
        let source = read(path).map_err(|e| {
            vec![file_error(
                path,
                vec![Problem {
                    line: 0,
                    column: 0,
                    message: format!("cannot read the pipeline: {e}"),
                    fix: None,
                }],
            )]
        })?;
        let lines = crate::manifest::LineIndex::new(&source);
        let raw: RawPipeline = toml::from_str(&source).map_err(|e| {
            let at = e.span().map(|s| lines.at(s.start)).unwrap_or_default();
            vec![file_error(path, vec![at.problem(e.message().trim(), None)])]
        })?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut errors = Vec::new();
        let mut problems = Vec::new();
        if let Some(v) = &raw.version
            && *v.get_ref() != 1
        {
            problems.push(lines.at(v.span().start).problem(
                format!("pipeline format version {} is not supported", v.get_ref()),
                Some("use `version = 1`".into()),
            ));
        }
        if raw.steps.is_empty() {
            problems.push(Problem {
                line: 0,
                column: 0,
                message: "the pipeline has no steps".into(),
                fix: Some("add `[[step]]` entries with `manifest = \"...\"`".into()),
            });
        }
        let name = pipeline_name(path, raw.pipeline.as_ref(), &lines, &mut problems);
        let mut steps = Vec::new();
        let mut names: BTreeMap<String, Location> = BTreeMap::new();
        for s in &raw.steps {
            let at = lines.at(s.span().start);
            let entry = s.get_ref();
            let loaded = match (&entry.manifest, &entry.inline) {
                (Some(m), None) => Manifest::load_from(&dir.join(m.get_ref()), read),
                (None, Some(text)) => load_inline(path, &source, &lines, text),
                (Some(_), Some(_)) | (None, None) => {
                    problems.push(at.problem(
                        "a step needs exactly one of `manifest` (a file) and `inline` (the manifest itself)",
                        Some("write `manifest = \"steps/NAME.toml\"`, or move the manifest into `inline = \"\"\"...\"\"\"`".into()),
                    ));
                    continue;
                }
            };
            let name_at = entry
                .manifest
                .as_ref()
                .or(entry.inline.as_ref())
                .map_or(at, |v| lines.at(v.span().start));
            match loaded {
                Err(e) => errors.push(e),
                Ok(m) => {
                    if let Some(first) = names.get(&m.name) {
                        problems.push(name_at.problem(
                            format!("two steps are named `{}` (the other at line {})", m.name, first.line),
                            Some("step names must be unique in a pipeline; rename one in its manifest".into()),
                        ));
                    }
                    names.insert(m.name.clone(), at);
                    steps.push(PipelineStep {
                        manifest: m,
                        needs: entry
                            .needs
                            .iter()
                            .map(|n| (n.get_ref().clone(), lines.at(n.span().start)))
                            .collect(),
                        cache: entry.cache,
                        at,
                    });
                }
            }
        }
        for s in &steps {
            for (need, at) in &s.needs {
                if !names.contains_key(need) {
                    let known: Vec<&str> = names.keys().map(String::as_str).collect();
                    problems.push(at.problem(
                        format!(
                            "step `{}` needs `{need}`, but no step has that name",
                            s.manifest.name
                        ),
                        Some(format!("use one of: {}", known.join(", "))),
                    ));
                } else if *need == s.manifest.name {
                    problems.push(at.problem(format!("step `{need}` needs itself"), None));
                }
            }
        }
        if !problems.is_empty() {
            problems.sort_by_key(|p| (p.line, p.column));
            errors.insert(0, file_error(path, problems));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Pipeline {
            path: path.to_path_buf(),
            dir,
            sha256: crate::manifest::Sha256Digest::of(source.as_bytes()),
            name,
            steps,
        })
    }

    /// Resolves every step for `ctx` (whose `produced` is ignored; lineage
    /// computes it) and builds the DAG.
    pub fn plan(&self, ctx: &PlanContext<'_>) -> Result<PipelinePlan, Vec<ManifestError>> {
        let mut errors = Vec::new();
        let mut problems = Vec::new();

        // Pass 1: the host paths each step writes, for lineage.
        let mut writes: Vec<Vec<PathBuf>> = Vec::new();
        for s in &self.steps {
            let mut w = Vec::new();
            for m in s
                .manifest
                .mounts
                .iter()
                .filter(|m| m.access != Access::Read)
            {
                if let Ok(h) = mount_host(&s.manifest, m, ctx) {
                    w.push(h);
                }
            }
            writes.push(w);
        }
        for (i, wi) in writes.iter().enumerate() {
            for (j, wj) in writes.iter().enumerate().skip(i + 1) {
                for a in wi {
                    if let Some(b) = wj.iter().find(|b| a.starts_with(b) || b.starts_with(a)) {
                        problems.push(self.steps[j].at.problem(
                            format!(
                                "steps `{}` and `{}` both write {} (and {})",
                                self.steps[i].manifest.name,
                                self.steps[j].manifest.name,
                                a.display(),
                                b.display()
                            ),
                            Some("give every step its own output directory; a later step reads it through a `read` mount".into()),
                        ));
                    }
                }
            }
        }
        let produced: Vec<PathBuf> = writes.iter().flatten().cloned().collect();

        // Pass 2: full plans, with reads of produced paths allowed to be absent.
        let ctx = PlanContext {
            produced: &produced,
            ..*ctx
        };
        let mut plans: Vec<StepPlan> = Vec::new();
        // Steps that run the same component file share its bytes, read and
        // hashed once: a pipeline of a thousand steps of one component holds
        // one copy. Paths they share are resolved once, too.
        let mut memo = PlanMemo::default();
        for s in &self.steps {
            match plan_step_with(&s.manifest, &ctx, &mut memo) {
                Ok(p) => plans.push(p),
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() || !problems.is_empty() {
            if !problems.is_empty() {
                errors.insert(0, file_error(&self.path, problems));
            }
            return Err(errors);
        }

        // Edges: explicit needs, then lineage.
        let index: BTreeMap<&str, usize> = plans
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.as_str(), i))
            .collect();
        let mut reasons: BTreeMap<(usize, usize), String> = BTreeMap::new();
        for (i, s) in self.steps.iter().enumerate() {
            for (need, _) in &s.needs {
                reasons
                    .entry((i, index[need.as_str()]))
                    .or_insert_with(|| "needs".into());
            }
        }
        for (i, p) in plans.iter().enumerate() {
            for m in p.mounts.iter().filter(|m| m.access == Access::Read) {
                for (j, w) in writes.iter().enumerate() {
                    if i != j
                        && let Some(out) = w
                            .iter()
                            .find(|o| m.host.starts_with(o) || o.starts_with(&m.host))
                    {
                        reasons.entry((i, j)).or_insert_with(|| {
                            format!(
                                "reads {} ({} writes {})",
                                m.guest,
                                plans[j].name,
                                out.display()
                            )
                        });
                    }
                }
            }
        }
        let mut deps = vec![Vec::new(); plans.len()];
        for &(i, j) in reasons.keys() {
            deps[i].push(j);
        }
        for d in &mut deps {
            d.sort_unstable();
            d.dedup();
        }
        if let Some(cycle) = find_cycle(&deps) {
            let names: Vec<&str> = cycle.iter().map(|&i| plans[i].name.as_str()).collect();
            let at = self.steps[cycle[0]].at;
            return Err(vec![file_error(
                &self.path,
                vec![at.problem(
                    format!("the steps form a cycle: {} -> {}", names.join(" -> "), names[0]),
                    Some("a step cannot depend on its own outputs; split the cycle with a separate output directory or remove a `needs`".into()),
                )],
            )]);
        }
        Ok(PipelinePlan {
            name: self.name.clone(),
            path: cordon_core::fsutil::resolve(&self.path).unwrap_or_else(|_| self.path.clone()),
            sha256: self.sha256.clone(),
            steps: plans,
            cacheable: self.steps.iter().map(|s| s.cache).collect(),
            deps,
            reasons,
        })
    }
}

/// A cycle in the dependency graph, as the steps along it.
fn find_cycle(deps: &[Vec<usize>]) -> Option<Vec<usize>> {
    // 0 = unvisited, 1 = on the stack, 2 = done.
    fn visit(
        i: usize,
        deps: &[Vec<usize>],
        state: &mut [u8],
        stack: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        state[i] = 1;
        stack.push(i);
        for &d in &deps[i] {
            if state[d] == 1 {
                let pos = stack.iter().position(|&x| x == d).unwrap_or(0);
                let mut cycle: Vec<usize> = stack[pos..].to_vec();
                cycle.reverse();
                return Some(cycle);
            }
            if state[d] == 0
                && let Some(c) = visit(d, deps, state, stack)
            {
                return Some(c);
            }
        }
        stack.pop();
        state[i] = 2;
        None
    }
    let mut state = vec![0u8; deps.len()];
    for i in 0..deps.len() {
        if state[i] == 0
            && let Some(c) = visit(i, deps, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_from_any_source() {
        let files: BTreeMap<&str, &str> = BTreeMap::from([
            (
                "rev/p.toml",
                "[[step]]\nmanifest = \"steps/a.toml\"\ncache = false\n",
            ),
            (
                "rev/steps/a.toml",
                "[step]\nname = \"a\"\ncomponent = \"gone.wasm\"\ndigest = \"sha256:0000000000000000000000000000000000000000000000000000000000000000\"\n",
            ),
        ]);
        let read = |p: &Path| {
            files
                .get(p.to_str().unwrap())
                .map(|s| s.to_string())
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
        };
        let p = Pipeline::load_from(Path::new("rev/p.toml"), &read).unwrap();
        assert_eq!(p.steps[0].manifest.name, "a");
        assert!(!p.steps[0].cache);
        assert!(is_pipeline_source(files["rev/p.toml"]));
        assert!(!is_pipeline_source(files["rev/steps/a.toml"]));
    }

    /// The pipeline file `path` holding `text`, with one inline step.
    fn load_one(path: &str, text: &str) -> Result<Pipeline, Vec<ManifestError>> {
        let step = "[[step]]\ninline = \"\"\"\n[step]\nname = \"a\"\ncomponent = \"a.wasm\"\ndigest = \"sha256:0000000000000000000000000000000000000000000000000000000000000000\"\n\"\"\"\n";
        let source = format!("{text}{step}");
        Pipeline::load_from(Path::new(path), &|_: &Path| Ok(source.clone()))
    }

    #[test]
    fn a_pipeline_name_with_a_newline_is_refused_where_it_is_written() {
        let errors = load_one("p.toml", "[pipeline]\nname = \"x\\nenv:\"\n").unwrap_err();
        let shown = errors[0].to_string();
        assert_eq!(
            shown,
            "p.toml:2:8: pipeline name `x\\nenv:` is invalid: U+000A (a line break) at character 2 is not allowed\n  fix: use ASCII letters, digits, `-`, `_` and `.`, starting with a letter or a digit (at most 128 characters)"
        );
    }

    #[test]
    fn a_pipeline_name_with_a_unicode_line_separator_is_refused() {
        for brk in ["\\u2028", "\\u2029", "\\u0085"] {
            let errors =
                load_one("p.toml", &format!("[pipeline]\nname = \"x{brk}y\"\n")).unwrap_err();
            let shown = errors[0].to_string();
            assert!(shown.contains("a line break) at character 2"), "{shown}");
            assert!(shown.lines().count() == 2, "{shown:?}");
        }
    }

    #[test]
    fn a_pipeline_named_after_a_file_stem_outside_the_set_says_how_to_name_it() {
        let errors = load_one("my pipeline.toml", "").unwrap_err();
        let shown = errors[0].to_string();
        assert!(
            shown.starts_with("my pipeline.toml: the pipeline is named after its file, and pipeline name `my pipeline` is invalid: U+0020 (a space) at character 3"),
            "{shown}"
        );
        assert!(shown.contains("fix: name it in the file"), "{shown}");
        assert_eq!(
            load_one("churn_model.v2.toml", "").unwrap().name,
            "churn_model.v2"
        );
    }

    #[test]
    fn cycles_are_found() {
        assert_eq!(find_cycle(&[vec![1], vec![2], vec![]]), None);
        let c = find_cycle(&[vec![1], vec![2], vec![0]]).unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(find_cycle(&[vec![0]]), Some(vec![0]));
    }
}
