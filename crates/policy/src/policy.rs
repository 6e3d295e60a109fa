//! Policy as code: Rego rules, evaluated with regorus over the resolved
//! plan, gate every run before a single step starts.
//!
//! The input document (versioned, [`INPUT_VERSION`]; see `docs/policy.md`)
//! is the plan as JSON: the environment, and per step its manifest and
//! component digests, mounts, secrets, env var names, network grants,
//! limits (and which were set explicitly), cache setting and approvals.
//! Every policy module contributes violations to its package's `deny` set;
//! a violation is an object `{rule, step, message, fix}` (a bare string is
//! accepted as the message).
//!
//! The default pack ([`DEFAULT_PACK`], package `cordon.default`) is always
//! loaded; an environment adds its own files and may disable a default rule
//! only by name, which every check and record states.

use crate::approval;
use crate::decisions::{self, DecisionCache};
use cordon_manifest::config::{EnvConfig, ProviderKind};
use cordon_manifest::manifest::{Access, Manifest, Sha256Digest};
use cordon_manifest::plan::StepPlan;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// The version of the input document's schema. Changes that remove or
/// rename fields raise it; additions do not.
pub const INPUT_VERSION: u32 = 1;

/// The default policy pack.
pub const DEFAULT_PACK: &str = include_str!("../policy/default.rego");

/// The name under which the default pack appears in records and reports.
pub const DEFAULT_PACK_NAME: &str = "builtin:cordon/default.rego";

pub use cordon_manifest::rules::{DEFAULT_RULES, Rule};

/// Why policy could not be evaluated (distinct from violations).
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A policy file cannot be read or does not parse.
    #[error("policy file {path}: {message}")]
    Load {
        /// The file.
        path: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A reviewer key cannot be loaded.
    #[error("{0}")]
    Key(#[from] cordon_record::attest::AttestError),
    /// Evaluation failed (for example a rule raised a conflict).
    #[error("evaluating policy {package}: {message}")]
    Eval {
        /// The package whose `deny` failed.
        package: String,
        /// What went wrong.
        message: String,
    },
}

pub use cordon_record::run::{Decision, PolicyFile, Violation};

/// The result of evaluating policy over a plan.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// The environment.
    pub environment: String,
    /// Every file evaluated.
    pub files: Vec<PolicyFile>,
    /// Default rules disabled by the environment (with where, for messages).
    pub disabled: Vec<(String, String)>,
    /// What broke, sorted by step and rule.
    pub violations: Vec<Violation>,
    /// The input document, for `cordon check --format json`.
    pub input: InputDocument,
}

impl Evaluation {
    /// The violations concerning step `name` (and those naming no step).
    pub fn for_step(&self, name: &str) -> Vec<Violation> {
        self.violations
            .iter()
            .filter(|v| v.step.as_deref().is_none_or(|s| s == name))
            .cloned()
            .collect()
    }

    /// The record entry for a run that passed (or was let through by
    /// break-glass with `justification`).
    pub fn decision(&self, justification: Option<&str>) -> Decision {
        let broke = !self.violations.is_empty();
        Decision {
            decision: if broke { "break-glass" } else { "allow" }.into(),
            input_version: INPUT_VERSION,
            files: self.files.clone(),
            disabled_rules: self.disabled.iter().map(|(n, _)| n.clone()).collect(),
            justification: broke.then(|| justification.unwrap_or("").to_string()),
            overridden: self.violations.clone(),
        }
    }
}

/// One step as policy sees it.
pub struct StepInput<'a> {
    /// The manifest.
    pub manifest: &'a Manifest,
    /// Its plan for the environment.
    pub plan: &'a StepPlan,
    /// Whether the pipeline lets the action cache serve it.
    pub cache: bool,
}

fn provider_name(p: ProviderKind) -> &'static str {
    match p {
        ProviderKind::Local => "local",
        ProviderKind::Env => "env",
        ProviderKind::Vault => "vault",
    }
}

/// The input document policy evaluates, held as the JSON text regorus
/// parses. It is serialized once from typed values that borrow the plan,
/// never built as a tree of JSON maps: at 10,000 steps that tree was
/// 95 MiB of the runner's 143 MiB peak, the text is 7.5 MiB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputDocument(String);

impl InputDocument {
    /// The document of a JSON value (promotion's documents, tests).
    pub fn from_value(value: &Value) -> InputDocument {
        InputDocument(value.to_string())
    }

    /// The document as JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The document parsed into a JSON value, for reports.
    pub fn to_value(&self) -> Value {
        serde_json::from_str(&self.0).expect("the input document is JSON it wrote itself")
    }
}

/// The input document's shape (docs/policy.md, "The input document"). The
/// keys are the policy authors' contract; `tests/golden/policy-input.json`
/// holds every one of them.
#[derive(serde::Serialize)]
struct InputDoc<'a> {
    version: u32,
    environment: EnvironmentDoc<'a>,
    steps: Vec<StepDoc<'a>>,
}

#[derive(serde::Serialize)]
struct EnvironmentDoc<'a> {
    name: &'a str,
    protected: bool,
    break_glass: bool,
    secret_provider: &'static str,
}

#[derive(serde::Serialize)]
struct StepDoc<'a> {
    name: &'a str,
    manifest: ManifestDoc,
    component: ComponentDoc,
    args: &'a [String],
    env: Vec<&'a str>,
    mounts: Vec<MountDoc<'a>>,
    secrets: Vec<SecretDoc<'a>>,
    network: Vec<NetworkDoc<'a>>,
    limits: LimitsDoc<'a>,
    cache: bool,
    clock: cordon_manifest::manifest::ClockMode,
    random: cordon_manifest::manifest::RandomMode,
    floats: cordon_manifest::manifest::FloatMode,
    approval: approval::Status,
}

#[derive(serde::Serialize)]
struct ManifestDoc {
    path: String,
    sha256: String,
}

#[derive(serde::Serialize)]
struct ComponentDoc {
    path: String,
    digest: String,
}

#[derive(serde::Serialize)]
struct MountDoc<'a> {
    guest: &'a str,
    host: DisplayPath<'a>,
    access: &'static str,
    purpose: &'a str,
    classification: Option<cordon_manifest::manifest::Classification>,
}

#[derive(serde::Serialize)]
struct SecretDoc<'a> {
    name: &'a str,
    key: &'a str,
    provider: &'static str,
    uses: &'a std::collections::BTreeSet<cordon_manifest::manifest::SecretUse>,
    hosts: &'a [String],
}

#[derive(serde::Serialize)]
struct NetworkDoc<'a> {
    url: &'a str,
    scheme: &'a str,
    host: &'a str,
    port: u16,
    path_prefix: &'a str,
    methods: &'a Option<Vec<String>>,
}

#[derive(serde::Serialize)]
struct LimitsDoc<'a> {
    fuel: u64,
    memory: u64,
    timeout_ms: u64,
    output: u64,
    stdout: u64,
    explicit: &'a [&'static str],
}

/// Serializes a path's display form (lossy for non-UTF-8 names, as the
/// plan's other displays are).
struct DisplayPath<'a>(&'a Path);

impl serde::Serialize for DisplayPath<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0.display())
    }
}

/// Builds the input document for `steps` in `env`, checking approvals
/// against the environment's reviewer keys. Paths are shown relative to
/// `base` where they lie under it.
pub fn input(
    env: &EnvConfig,
    steps: &[StepInput<'_>],
    base: &Path,
) -> Result<InputDocument, PolicyError> {
    let reviewers = env
        .policy
        .reviewers
        .iter()
        .map(|p| cordon_record::attest::TrustedKey::load(p))
        .collect::<Result<Vec<_>, _>>()?;
    // Resolved once per path: the steps of a pipeline share their manifest
    // file and usually their component, and resolving walks the path one
    // `readlink` per component.
    let base = cordon_core::fsutil::resolve(base).unwrap_or_else(|_| base.to_path_buf());
    let mut shown = std::collections::HashMap::<PathBuf, String>::new();
    let mut rel = |p: &Path| -> String {
        if let Some(s) = shown.get(p) {
            return s.clone();
        }
        let abs = cordon_core::fsutil::resolve(p).unwrap_or_else(|_| p.to_path_buf());
        let s = abs
            .strip_prefix(&base)
            .map(Path::to_path_buf)
            .unwrap_or(abs)
            .display()
            .to_string();
        shown.insert(p.to_path_buf(), s.clone());
        s
    };
    let provider = provider_name(env.secrets.provider);
    let steps: Vec<StepDoc<'_>> = steps
        .iter()
        .map(|s| {
            let p = s.plan;
            let m = s.manifest;
            StepDoc {
                name: &p.name,
                manifest: ManifestDoc {
                    path: rel(&m.path),
                    sha256: m.sha256.hex().to_string(),
                },
                component: ComponentDoc {
                    path: rel(&p.component_path),
                    digest: p.component_digest.to_string(),
                },
                args: p.argv.get(1..).unwrap_or_default(),
                env: p.env.iter().map(|(k, _)| k.as_str()).collect(),
                mounts: p
                    .mounts
                    .iter()
                    .map(|mt| MountDoc {
                        guest: &mt.guest,
                        host: DisplayPath(&mt.host),
                        access: match mt.access {
                            Access::Read => "read",
                            Access::Write => "write",
                            Access::ReadWrite => "read-write",
                        },
                        purpose: &mt.purpose,
                        classification: mt.classification,
                    })
                    .collect(),
                secrets: p
                    .secrets
                    .iter()
                    .map(|g| SecretDoc {
                        name: &g.name,
                        key: g.provider_key(),
                        provider,
                        uses: &g.uses,
                        hosts: &g.hosts,
                    })
                    .collect(),
                network: p
                    .network
                    .iter()
                    .flat_map(|n| &n.allow)
                    .map(|r| NetworkDoc {
                        url: &r.url,
                        scheme: &r.scheme,
                        host: &r.host,
                        port: r.port,
                        path_prefix: &r.path_prefix,
                        methods: &r.methods,
                    })
                    .collect(),
                limits: LimitsDoc {
                    fuel: p.limits.fuel,
                    memory: p.limits.memory,
                    timeout_ms: p.limits.timeout.as_millis() as u64,
                    output: p.limits.output,
                    stdout: p.limits.stdout,
                    explicit: &m.limits_set,
                },
                cache: s.cache,
                clock: p.clock,
                random: p.random,
                floats: p.floats,
                approval: approval::status(m, &reviewers),
            }
        })
        .collect();
    let doc = InputDoc {
        version: INPUT_VERSION,
        environment: EnvironmentDoc {
            name: &env.name,
            protected: env.protected,
            break_glass: env.policy.break_glass,
            secret_provider: provider,
        },
        steps,
    };
    Ok(InputDocument(
        serde_json::to_string(&doc).expect("the input document encodes as JSON"),
    ))
}

/// Evaluates the default pack and the environment's own files over `input`.
pub fn evaluate(env: &EnvConfig, input: InputDocument) -> Result<Evaluation, PolicyError> {
    evaluate_cached(env, input, None)
}

/// Like [`evaluate`], but serves the violations from `cache` when it holds
/// a sealed decision for exactly these policy files, disabled rules and
/// input, and remembers a fresh one there. Policy files are read either
/// way (their text is part of the key), so an edited file is a miss.
pub fn evaluate_cached(
    env: &EnvConfig,
    input: InputDocument,
    cache: Option<&DecisionCache<'_>>,
) -> Result<Evaluation, PolicyError> {
    let mut sources: Vec<(String, String)> =
        vec![(DEFAULT_PACK_NAME.to_string(), DEFAULT_PACK.to_string())];
    for f in &env.policy.files {
        let text = std::fs::read_to_string(f).map_err(|e| PolicyError::Load {
            path: f.display().to_string(),
            message: format!("cannot read: {e}"),
        })?;
        sources.push((f.display().to_string(), text));
    }
    let disabled: Vec<(String, String)> = env
        .policy
        .disable
        .iter()
        .map(|(n, at)| (n.clone(), format!("line {}", at.line)))
        .collect();
    let cache = cache.filter(|_| decisions::cacheable(&sources));
    let key = cache
        .map(|_| decisions::decision_key(&sources, input.as_str(), DEFAULT_PACK_NAME, &disabled));
    let cached = cache.zip(key.as_ref()).and_then(|(c, k)| c.lookup(k));
    let (files, violations) = match cached {
        Some(violations) => (policy_files(&sources), violations),
        None => {
            let (files, violations) =
                evaluate_sources(&sources, input.as_str(), DEFAULT_PACK_NAME, &disabled)?;
            if let Some((c, k)) = cache.zip(key.as_ref()) {
                c.store(k, &violations);
            }
            (files, violations)
        }
    };
    Ok(Evaluation {
        environment: env.name.clone(),
        files,
        disabled,
        violations,
        input,
    })
}

/// The files of `sources` (name, text), by digest, as records list them.
fn policy_files(sources: &[(String, String)]) -> Vec<PolicyFile> {
    sources
        .iter()
        .map(|(path, text)| PolicyFile {
            path: path.clone(),
            sha256: Sha256Digest::of(text.as_bytes()).hex().to_string(),
        })
        .collect()
}

/// Evaluates every module in `sources` (name, text) over `input` and
/// collects the `deny` sets of their packages: the files by digest and the
/// violations, sorted and without duplicates. Violations of the module
/// called `default_pack` whose rule is in `disabled` are dropped. Shared by
/// run policy and promotion policy, so that both read rules the same way.
pub fn evaluate_sources(
    sources: &[(String, String)],
    input: &str,
    default_pack: &str,
    disabled: &[(String, String)],
) -> Result<(Vec<PolicyFile>, Vec<Violation>), PolicyError> {
    let files = policy_files(sources);
    let mut packages: Vec<(String, String)> = Vec::new();
    let mut engine = regorus::Engine::new();
    for (path, text) in sources {
        let package =
            engine
                .add_policy(path.clone(), text.clone())
                .map_err(|e| PolicyError::Load {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
        if !packages.iter().any(|(p, _)| *p == package) {
            packages.push((package, path.clone()));
        }
    }
    engine
        .set_input_json(input)
        .map_err(|e| PolicyError::Eval {
            package: "input".into(),
            message: e.to_string(),
        })?;
    let mut violations = Vec::new();
    for (package, source) in &packages {
        let eval_err = |e: anyhow::Error| PolicyError::Eval {
            package: package.clone(),
            message: e.to_string(),
        };
        let rule = format!("{package}.deny");
        // A module without `deny` contributes nothing.
        let has_deny = engine
            .eval_query(format!("{rule} == {rule}"), false)
            .map(|r| !r.result.is_empty())
            .unwrap_or(false);
        if !has_deny {
            continue;
        }
        let value = engine.eval_rule(rule.clone()).map_err(eval_err)?;
        let json_text = value.to_json_str().map_err(eval_err)?;
        let items: Value = serde_json::from_str(&json_text).unwrap_or(Value::Null);
        let items = match items {
            Value::Array(a) => a,
            Value::Null => Vec::new(),
            other => vec![other],
        };
        let default_rule = package.trim_start_matches("data.").to_string();
        for item in items {
            let v = match item {
                Value::String(message) => Violation {
                    rule: default_rule.clone(),
                    step: None,
                    message,
                    fix: None,
                    source: source.clone(),
                    mount: None,
                    secret: None,
                },
                Value::Object(o) => Violation {
                    rule: o
                        .get("rule")
                        .and_then(Value::as_str)
                        .unwrap_or(&default_rule)
                        .to_string(),
                    step: o.get("step").and_then(Value::as_str).map(str::to_string),
                    message: o
                        .get("message")
                        .or_else(|| o.get("msg"))
                        .and_then(Value::as_str)
                        .unwrap_or("(the rule gave no message)")
                        .to_string(),
                    fix: o.get("fix").and_then(Value::as_str).map(str::to_string),
                    source: source.clone(),
                    mount: o.get("mount").and_then(Value::as_str).map(str::to_string),
                    secret: o.get("secret").and_then(Value::as_str).map(str::to_string),
                },
                other => Violation {
                    rule: default_rule.clone(),
                    step: None,
                    message: other.to_string(),
                    fix: None,
                    source: source.clone(),
                    mount: None,
                    secret: None,
                },
            };
            let off = v.source == default_pack && disabled.iter().any(|(n, _)| *n == v.rule);
            if !off {
                violations.push(v);
            }
        }
    }
    violations.sort_by(|a, b| (&a.step, &a.rule, &a.message).cmp(&(&b.step, &b.rule, &b.message)));
    violations.dedup();
    Ok((files, violations))
}

/// The text report: one block per violation, then a summary line.
pub fn render_text(e: &Evaluation) -> String {
    let mut out = String::new();
    for (name, at) in &e.disabled {
        out.push_str(&format!(
            "policy: default rule `{name}` is disabled for environment `{}` (cordon.toml {at})\n",
            e.environment
        ));
    }
    for v in &e.violations {
        out.push_str(&format!(
            "violation: [{}] step `{}`: {}\n",
            v.rule,
            v.step.as_deref().unwrap_or("-"),
            v.message
        ));
        if let Some(fix) = &v.fix {
            out.push_str(&format!("  fix: {fix}\n"));
        }
        if v.source != DEFAULT_PACK_NAME {
            out.push_str(&format!("  rule from: {}\n", v.source));
        } else if let Some(r) = DEFAULT_RULES.iter().find(|r| r.name == v.rule) {
            out.push_str(&format!("  why: {}\n", r.reason));
        }
    }
    if e.violations.is_empty() {
        out.push_str(&format!(
            "policy: no violations in environment `{}` ({} policy files)\n",
            e.environment,
            e.files.len()
        ));
    } else {
        out.push_str(&format!(
            "policy: {} violation{} in environment `{}`\n",
            e.violations.len(),
            if e.violations.len() == 1 { "" } else { "s" },
            e.environment
        ));
    }
    out
}

/// The JSON report: violations, files, disabled rules and the input.
pub fn render_json(e: &Evaluation) -> Value {
    json!({
        "environment": e.environment,
        "passed": e.violations.is_empty(),
        "violations": e.violations,
        "files": e.files,
        "disabled_rules": e.disabled.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        "input": e.input.to_value(),
    })
}

/// Where a SARIF result points: a file (relative to where the report is
/// read) and the 1-based line and column of the offending key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SarifLocation {
    /// The file, as a relative URI.
    pub uri: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

/// The SARIF rule id of a manifest, pipeline or configuration error.
pub const MANIFEST_ERROR_RULE: &str = "manifest-error";

/// `mount-purpose` → `MountPurpose`: SARIF rule names are distinct from
/// their ids and Pascal-cased, as code-scanning tools expect.
fn pascal(id: &str) -> String {
    id.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// `text` for a SARIF message string: SARIF 2.1.0 (§3.11.6) reads
/// `[text](target)` in a message as an embedded link, so the brackets of
/// a message that quotes a manifest or a policy (a step name, a mount
/// path, a rule's own words) are escaped (`\[`, `\]`), and every
/// backslash of a run that ends at a bracket is doubled so none of them
/// can escape the escape.
fn sarif_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut backslashes = 0;
    for c in text.chars() {
        if c == '\\' {
            backslashes += 1;
            continue;
        }
        let bracket = matches!(c, '[' | ']');
        let run = if bracket {
            2 * backslashes
        } else {
            backslashes
        };
        out.extend(std::iter::repeat_n('\\', run));
        backslashes = 0;
        if bracket {
            out.push('\\');
        }
        out.push(c);
    }
    out.extend(std::iter::repeat_n('\\', backslashes));
    out
}

/// `text` for a SARIF `markdown` string (GitHub-flavoured Markdown): every
/// ASCII punctuation character backslash-escaped, so a rule id or a
/// policy's words open no link, image, HTML or emphasis.
fn sarif_markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_punctuation() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn sarif_rule(id: &str, short: &str, full: &str, help: &str) -> Value {
    json!({
        "id": id,
        "name": pascal(id),
        "shortDescription": {"text": sarif_text(short)},
        "fullDescription": {"text": sarif_text(full)},
        "help": {
            "text": sarif_text(help),
            "markdown": format!(
                "**{}**: {}\n\nSee [the default rules](https://example.invalid/cordon/docs/policy.md#default-rules).",
                sarif_markdown(id),
                sarif_markdown(help)
            ),
        },
        "helpUri": "https://example.invalid/cordon/docs/policy.md#default-rules",
        "defaultConfiguration": {"level": "error"},
    })
}

fn sarif_result(rule: &str, text: String, at: &SarifLocation, properties: Value) -> Value {
    json!({
        "ruleId": rule,
        "level": "error",
        "message": {"text": sarif_text(&text)},
        "locations": [{
            "physicalLocation": {
                "artifactLocation": {"uri": at.uri},
                "region": {"startLine": at.line.max(1), "startColumn": at.column.max(1)},
            },
        }],
        "properties": properties,
    })
}

/// A SARIF 2.1.0 log of one `cordon check` run, as GitHub code scanning
/// and `sarif-multitool validate` accept it.
fn sarif_log(environment: &str, rules: Vec<Value>, results: Vec<Value>) -> Value {
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "cordon",
                "fullName": "Cordon capability policy check",
                "version": env!("CARGO_PKG_VERSION"),
                "semanticVersion": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://example.invalid/cordon/docs/policy.md",
                "rules": rules,
            }},
            "automationDetails": {"id": format!("cordon/check/{environment}/")},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    })
}

/// The violations of `e` as SARIF: every default rule with its help, every
/// other rule a violation names, and each violation at the line and column
/// `locate` finds for it (the mount's or the secret's key, else the step).
pub fn render_sarif(e: &Evaluation, locate: &dyn Fn(&Violation) -> SarifLocation) -> Value {
    let mut rules: Vec<Value> = DEFAULT_RULES
        .iter()
        .map(|r| {
            sarif_rule(
                r.name,
                r.reason,
                r.reason,
                &format!(
                    "{} Each violation says how to fix it; docs/policy.md lists every rule.",
                    r.reason
                ),
            )
        })
        .collect();
    for v in &e.violations {
        if !rules.iter().any(|r| r["id"] == v.rule.as_str()) {
            let what = format!("Rule `{}` from policy file {}.", v.rule, v.source);
            rules.push(sarif_rule(
                &v.rule,
                &what,
                &what,
                &format!("{what} Each violation says how to fix it."),
            ));
        }
    }
    let results: Vec<Value> = e
        .violations
        .iter()
        .map(|v| {
            let text = match &v.fix {
                Some(f) => format!("{}. Fix: {f}.", v.message.trim_end_matches('.')),
                None => format!("{}.", v.message.trim_end_matches('.')),
            };
            sarif_result(
                &v.rule,
                text,
                &locate(v),
                json!({"step": v.step, "environment": e.environment, "policyFile": v.source,
                       "mount": v.mount, "secret": v.secret}),
            )
        })
        .collect();
    sarif_log(&e.environment, rules, results)
}

/// Manifest, pipeline and configuration errors as SARIF results, so code
/// scanning shows the most common failure too: each problem at its file,
/// line and column, under the rule [`MANIFEST_ERROR_RULE`]. `uri` turns a
/// path into the URI the report uses.
pub fn render_sarif_errors(
    environment: &str,
    errors: &[&cordon_manifest::manifest::ManifestError],
    uri: &dyn Fn(&std::path::Path) -> String,
) -> Value {
    let help = "A capability manifest, pipeline file or cordon.toml that Cordon cannot accept: nothing runs until it is fixed. The message names the problem and, where there is one, the fix.";
    let rules = vec![sarif_rule(
        MANIFEST_ERROR_RULE,
        "A manifest, pipeline or configuration file is not valid.",
        help,
        help,
    )];
    let results = errors
        .iter()
        .flat_map(|err| {
            err.problems.iter().map(move |p| {
                let text = match &p.fix {
                    Some(f) => format!("{}. Fix: {f}.", p.message.trim_end_matches('.')),
                    None => format!("{}.", p.message.trim_end_matches('.')),
                };
                sarif_result(
                    MANIFEST_ERROR_RULE,
                    text,
                    &SarifLocation {
                        uri: uri(&err.path),
                        line: p.line,
                        column: p.column,
                    },
                    json!({"environment": environment}),
                )
            })
        })
        .collect();
    sarif_log(environment, rules, results)
}

#[cfg(test)]
mod tests {

    /// A SARIF message string as a consumer reads it (§3.11.6): `\[` and
    /// `\]` are literal brackets, `\\` before a bracket a literal
    /// backslash; an unescaped `[` may open an embedded link.
    fn sarif_literal(text: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match (c, chars.peek()) {
                ('\\', Some('[' | ']')) => out.push(chars.next().unwrap()),
                ('\\', Some('\\')) => {
                    chars.next();
                    // A doubled backslash is one only before a bracket run.
                    let mut look = chars.clone();
                    while look.peek() == Some(&'\\') {
                        look.next();
                    }
                    out.push('\\');
                    if !matches!(look.peek(), Some('[' | ']')) {
                        out.push('\\');
                    }
                }
                ('[' | ']', _) => return Err(format!("an unescaped bracket in {text}")),
                (c, _) => out.push(c),
            }
        }
        Ok(out)
    }

    proptest::proptest! {
        #[test]
        fn any_message_reads_back_from_sarif_as_itself_and_opens_no_link(
            text in proptest::prop_oneof![
                "[\\[\\]()\\\\a ]{0,16}",
                proptest::prelude::any::<String>(),
            ]
        ) {
            let escaped = super::sarif_text(&text);
            proptest::prop_assert_eq!(sarif_literal(&escaped), Ok(text));
        }
    }

    #[test]
    fn a_message_quoting_a_markdown_link_is_no_embedded_link_in_sarif() {
        let text = "step `[approve](https://evil.example)` reads \\[x]";
        assert_eq!(
            super::sarif_text(text),
            "step `\\[approve\\](https://evil.example)` reads \\\\\\[x\\]"
        );
        assert_eq!(super::sarif_markdown("a_b[c]"), "a\\_b\\[c\\]");
        // Read back as SARIF consumers do: every escaped bracket and
        // doubled backslash is literal, so no `[` opens a link.
        let escaped = super::sarif_text("\\]([1](2)\\\\[");
        let mut chars = escaped.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '[' | ']' => panic!("an unescaped bracket in {escaped}"),
                _ => {}
            }
        }
    }

    #[test]
    fn sarif_rule_names_are_pascal_case_and_distinct_from_ids() {
        assert_eq!(super::pascal("mount-purpose"), "MountPurpose");
        assert_eq!(
            super::pascal("protected-reveal-egress"),
            "ProtectedRevealEgress"
        );
    }

    #[test]
    fn the_rule_catalogue_and_the_default_pack_name_the_same_rules() {
        let in_pack: std::collections::BTreeSet<&str> = DEFAULT_PACK
            .split("\"rule\": \"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .collect();
        let listed: std::collections::BTreeSet<&str> =
            DEFAULT_RULES.iter().map(|r| r.name).collect();
        assert_eq!(in_pack, listed);
    }

    use super::*;

    fn env(protected: bool) -> EnvConfig {
        let mut e = cordon_manifest::config::WorkspaceConfig::implicit(Path::new("."))
            .envs
            .remove("dev")
            .unwrap();
        e.protected = protected;
        e
    }

    /// A step every default rule accepts, even in a protected environment.
    fn clean_step() -> Value {
        json!({
            "name": "train",
            "manifest": {"path": "steps/train.toml", "sha256": "00"},
            "component": {"path": "train.wasm", "digest": "sha256:00"},
            "args": [], "env": [],
            "mounts": [
                {"guest": "/in", "host": "/d/in", "access": "read", "purpose": "features", "classification": "restricted"},
                {"guest": "/out", "host": "/d/out", "access": "write", "purpose": "model", "classification": "internal"},
            ],
            "secrets": [{"name": "k", "key": "k", "provider": "vault", "uses": ["hmac"]}],
            "network": [],
            "limits": {"fuel": 1, "memory": 1, "timeout_ms": 1, "output": 1, "stdout": 1,
                       "explicit": ["fuel", "memory", "timeout", "output"]},
            "cache": true, "clock": "fixed", "random": "seeded",
            "approval": {"approved": true, "reviewers": ["ab"], "problems": []},
        })
    }

    fn input_with(protected: bool, step: Value) -> InputDocument {
        InputDocument::from_value(&json!({
            "version": INPUT_VERSION,
            "environment": {"name": "prod", "protected": protected, "break_glass": false, "secret_provider": "vault"},
            "steps": [step],
        }))
    }

    fn rules_broken(protected: bool, step: Value) -> Vec<String> {
        evaluate(&env(protected), input_with(protected, step))
            .unwrap()
            .violations
            .into_iter()
            .map(|v| v.rule)
            .collect()
    }

    #[test]
    fn a_clean_plan_passes_every_default_rule() {
        assert_eq!(rules_broken(true, clean_step()), Vec::<String>::new());
    }

    #[test]
    fn each_default_rule_fails_its_plan() {
        // (rule, protected environment, how to break it)
        type Case = (&'static str, bool, Box<dyn Fn(&mut Value)>);
        let cases: Vec<Case> = vec![
            (
                "mount-purpose",
                false,
                Box::new(|s| s["mounts"][0]["purpose"] = json!("  ")),
            ),
            (
                "restricted-isolation",
                false,
                Box::new(|s| s["network"] = json!(["https://x/"])),
            ),
            (
                "restricted-isolation",
                false,
                Box::new(|s| s["mounts"][1]["access"] = json!("read-write")),
            ),
            (
                "protected-read-write",
                true,
                Box::new(|s| {
                    s["mounts"][0]["classification"] = json!("internal");
                    s["mounts"][1]["access"] = json!("read-write");
                }),
            ),
            (
                "protected-reveal",
                true,
                Box::new(|s| s["secrets"][0]["uses"] = json!(["reveal"])),
            ),
            (
                "protected-reveal-egress",
                true,
                Box::new(|s| s["secrets"][0]["uses"] = json!(["reveal"])),
            ),
            (
                "protected-env-provider",
                true,
                Box::new(|s| s["secrets"][0]["provider"] = json!("env")),
            ),
            (
                "protected-approval",
                true,
                Box::new(
                    |s| s["approval"] = json!({"approved": false, "reviewers": [], "problems": ["stale: the manifest changed after it was approved"]}),
                ),
            ),
            (
                "protected-explicit-limits",
                true,
                Box::new(|s| s["limits"]["explicit"] = json!(["fuel", "memory", "timeout"])),
            ),
        ];
        for (rule, protected, change) in cases {
            let mut step = clean_step();
            change(&mut step);
            let broken = rules_broken(protected, step.clone());
            assert!(broken.contains(&rule.to_string()), "{rule}: {broken:?}");
            // The protected-only rules hold outside protected environments.
            if rule.starts_with("protected-") {
                assert_eq!(rules_broken(false, step), Vec::<String>::new(), "{rule}");
            }
        }
    }

    #[test]
    fn violations_say_which_step_why_and_how_to_fix() {
        let mut step = clean_step();
        step["approval"] =
            json!({"approved": false, "reviewers": [], "problems": ["no approvals"]});
        let e = evaluate(&env(true), input_with(true, step)).unwrap();
        let v = &e.violations[0];
        assert_eq!(v.step.as_deref(), Some("train"));
        assert!(v.message.contains("(no approvals)"), "{v:?}");
        assert!(
            v.fix
                .as_deref()
                .unwrap()
                .contains("cordon approve steps/train.toml"),
            "{v:?}"
        );
        let text = render_text(&e);
        assert!(
            text.contains("violation: [protected-approval] step `train`"),
            "{text}"
        );
        assert!(text.contains("  why: "), "{text}");
    }

    #[test]
    fn user_rules_add_violations_and_disabled_rules_are_skipped_visibly() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("org.rego");
        std::fs::write(
            &f,
            "package org.rules\n\ndeny contains v if {\n  some s in input.steps\n  count(s.args) > 0\n  v := {\"rule\": \"no-args\", \"step\": s.name, \"message\": \"no args allowed\"}\n}\n",
        )
        .unwrap();
        let mut e = env(true);
        e.policy.files.push(f.clone());
        e.policy
            .disable
            .push(("protected-approval".into(), Default::default()));
        let mut step = clean_step();
        step["args"] = json!(["--x"]);
        step["approval"] = json!({"approved": false, "reviewers": [], "problems": []});
        let ev = evaluate(&e, input_with(true, step)).unwrap();
        let rules: Vec<&str> = ev.violations.iter().map(|v| v.rule.as_str()).collect();
        assert_eq!(rules, ["no-args"]);
        assert_eq!(ev.violations[0].source, f.display().to_string());
        assert_eq!(ev.files.len(), 2);
        assert!(render_text(&ev).contains("default rule `protected-approval` is disabled"));
        let d = ev.decision(Some("incident 42"));
        assert_eq!(d.decision, "break-glass");
        assert_eq!(d.disabled_rules, ["protected-approval"]);
    }

    #[test]
    fn a_malformed_rego_file_is_an_error_with_its_line() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("bad.rego");
        std::fs::write(&f, "package bad\n\ndeny contains v if {\n  v := \n}\n").unwrap();
        let mut e = env(false);
        e.policy.files.push(f.clone());
        let err = evaluate(&e, input_with(false, clean_step()))
            .unwrap_err()
            .to_string();
        assert!(err.contains(&f.display().to_string()), "{err}");
        assert!(err.contains(":4:") || err.contains(":5:"), "{err}");
    }
}
