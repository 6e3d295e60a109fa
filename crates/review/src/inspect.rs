//! `cordon inspect`: what a component file is and what it asks for.
//!
//! The file is parsed and validated with `wasmparser`; nothing is compiled
//! or run. The report gives its digest and size, the `producers` metadata
//! of the component and of every core module inside it (language, compiler,
//! tools), and its imports and exports by their WIT names
//! (`wasi:filesystem/preopens@0.2.6`), with the functions each one holds.
//!
//! Against a manifest ([`check`]), it says which grants the component
//! cannot use, because it does not import the interface the grant works
//! through (over-privilege to remove), and which imports the manifest does
//! not grant (they are denied at run time), or that the runner does not
//! provide at all (the component will not instantiate). Both are sound in
//! one direction only: an import proves the component *can* call an
//! interface, not that it does.

use crate::review::{Format, Phrase, count, md_code, md_text};
use cordon_core::sanitize::escape_for_terminal as plain;
use cordon_manifest::manifest::{ClockMode, Manifest, RandomMode, SecretUse, Sha256Digest};
use cordon_sandbox::LINKED_INTERFACES;
use serde::Serialize;
use wasmparser::component_types::ComponentEntityType;
use wasmparser::{Encoding, KnownCustom, Parser, Payload, Validator, WasmFeatures};

/// One import or export of a component.
#[derive(Debug, Clone, Serialize)]
pub struct WitItem {
    /// Its WIT name, e.g. `wasi:cli/run@0.2.6`, or a plain name.
    pub name: String,
    /// `interface`, `func`, `type`, `component`, `module` or `value`.
    pub kind: &'static str,
    /// For an interface: the functions it holds, as named in the binary
    /// (`get-directories`, `[method]descriptor.read`).
    pub functions: Vec<String>,
    /// For an interface: the types it holds (resources among them).
    pub types: Vec<String>,
}

impl WitItem {
    /// The name without `@version`.
    pub fn unversioned(&self) -> &str {
        self.name.split('@').next().unwrap_or(&self.name)
    }

    /// The version after `@`, if any.
    pub fn version(&self) -> Option<&str> {
        self.name.split_once('@').map(|(_, v)| v)
    }
}

/// One `name: value version` list of a `producers` section.
#[derive(Debug, Clone, Serialize)]
pub struct ProducerField {
    /// `language`, `processed-by` or `sdk`.
    pub name: String,
    /// `(name, version)` pairs.
    pub values: Vec<(String, String)>,
}

/// The `producers` section of the component or of a module inside it.
#[derive(Debug, Clone, Serialize)]
pub struct Producers {
    /// `component`, `core module N` or `nested component N`, in file order.
    pub location: String,
    /// Its fields.
    pub fields: Vec<ProducerField>,
}

/// What a component file is.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// The file, as named.
    pub file: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its sha256 digest (what a manifest pins).
    pub digest: Sha256Digest,
    /// Whether it exports `wasi:cli/run@0.2.x`, which is what the runner
    /// calls.
    pub runnable: bool,
    /// Producers metadata found: the component's own first, then that of
    /// the modules and components inside it, in file order.
    pub producers: Vec<Producers>,
    /// Imports in file order.
    pub imports: Vec<WitItem>,
    /// Exports in file order.
    pub exports: Vec<WitItem>,
}

/// Why a file cannot be inspected. Each says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InspectError {
    /// No `\0asm` header.
    #[error(
        "not a WebAssembly file (it lacks the `\\0asm` header)\n  fix: give the .wasm file a `cargo build --target wasm32-wasip2` produced"
    )]
    NotWasm,
    /// A core module, not a component.
    #[error(
        "a core WebAssembly module, not a component\n  fix: build for the wasm32-wasip2 target, which produces a component (or wrap the module with `wasm-tools component new`)"
    )]
    CoreModule,
    /// The bytes do not validate.
    #[error(
        "not a valid WebAssembly component: {message} (at byte {offset})\n  fix: rebuild the component; a copy may be truncated or damaged"
    )]
    Invalid {
        /// The validator's message.
        message: String,
        /// Where in the file.
        offset: usize,
    },
}

/// Reads what `bytes` (the file `file`) holds.
pub fn inspect(file: &str, bytes: &[u8]) -> Result<Inspection, InspectError> {
    if !bytes.starts_with(b"\0asm") {
        return Err(InspectError::NotWasm);
    }
    // Bytes 4..8: version and layer; layer 0 is a core module.
    if bytes.get(6..8) == Some(&[0, 0]) {
        return Err(InspectError::CoreModule);
    }
    let invalid = |e: wasmparser::BinaryReaderError| InspectError::Invalid {
        message: e.message().to_string(),
        offset: e.offset(),
    };
    let types = Validator::new_with_features(WasmFeatures::all())
        .validate_all(bytes)
        .map_err(invalid)?;
    let types = types.as_ref();

    let mut labels: Vec<String> = Vec::new();
    let (mut modules, mut components) = (0, 0);
    let mut producers = Vec::new();
    let mut import_names = Vec::new();
    let mut export_names = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(invalid)? {
            Payload::Version { encoding, .. } => {
                let label = match (labels.is_empty(), encoding) {
                    (true, Encoding::Module) => return Err(InspectError::CoreModule),
                    (true, Encoding::Component) => "component".to_string(),
                    (false, Encoding::Module) => {
                        modules += 1;
                        format!("core module {}", modules - 1)
                    }
                    (false, Encoding::Component) => {
                        components += 1;
                        format!("nested component {}", components - 1)
                    }
                };
                labels.push(label);
            }
            Payload::ComponentImportSection(r) if labels.len() == 1 => {
                for i in r {
                    import_names.push(i.map_err(invalid)?.name.name.to_string());
                }
            }
            Payload::ComponentExportSection(r) if labels.len() == 1 => {
                for e in r {
                    export_names.push(e.map_err(invalid)?.name.name.to_string());
                }
            }
            Payload::CustomSection(c) => {
                if let KnownCustom::Producers(r) = c.as_known() {
                    let mut fields = Vec::new();
                    for f in r {
                        let f = f.map_err(invalid)?;
                        let mut values = Vec::new();
                        for v in f.values {
                            let v = v.map_err(invalid)?;
                            values.push((v.name.to_string(), v.version.to_string()));
                        }
                        fields.push(ProducerField {
                            name: f.name.to_string(),
                            values,
                        });
                    }
                    producers.push(Producers {
                        location: labels.last().cloned().unwrap_or_default(),
                        fields,
                    });
                }
            }
            Payload::End(_) => {
                labels.pop();
            }
            _ => {}
        }
    }

    // The component's own section sits at the end of the file.
    producers.sort_by_key(|p: &Producers| p.location != "component");

    let item = |name: String, ty: Option<&ComponentEntityType>| {
        let mut functions = Vec::new();
        let mut type_names = Vec::new();
        let kind = match ty {
            Some(ComponentEntityType::Instance(id)) => {
                for (n, it) in &types[*id].exports {
                    match it.ty {
                        ComponentEntityType::Func(_) => functions.push(n.clone()),
                        ComponentEntityType::Type { .. } => type_names.push(n.clone()),
                        _ => {}
                    }
                }
                "interface"
            }
            Some(ComponentEntityType::Func(_)) => "func",
            Some(ComponentEntityType::Type { .. }) => "type",
            Some(ComponentEntityType::Component(_)) => "component",
            Some(ComponentEntityType::Module(_)) => "module",
            Some(ComponentEntityType::Value(_)) | None => "value",
        };
        WitItem {
            name,
            kind,
            functions,
            types: type_names,
        }
    };
    let imports: Vec<WitItem> = import_names
        .into_iter()
        .map(|n| {
            let ty = types.component_item_for_import(&n).map(|i| &i.ty);
            item(n, ty)
        })
        .collect();
    let exports: Vec<WitItem> = export_names
        .into_iter()
        .map(|n| {
            let ty = types.component_item_for_export(&n).map(|i| &i.ty);
            item(n, ty)
        })
        .collect();
    let runnable = exports.iter().any(|e| {
        e.unversioned() == "wasi:cli/run"
            && e.version().is_some_and(|v| v.starts_with("0.2"))
            && e.functions.iter().any(|f| f == "run")
    });
    Ok(Inspection {
        file: file.to_string(),
        size: bytes.len() as u64,
        digest: Sha256Digest::of(bytes),
        runnable,
        producers,
        imports,
        exports,
    })
}

/// One finding of a check against a manifest.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The grant (`mount /in`, `secret k: reveal`) or import it is about.
    pub subject: String,
    /// What it means.
    pub message: Phrase,
}

/// A component compared with the manifest that grants it.
#[derive(Debug, Clone, Serialize)]
pub struct GrantCheck {
    /// The manifest, as named.
    pub manifest: String,
    /// Its step name.
    pub step: String,
    /// The digest the manifest pins.
    pub pinned: Sha256Digest,
    /// Whether the file is the pinned build.
    pub digest_matches: bool,
    /// Grants the component cannot use: it does not import what they work
    /// through. Over-privilege to remove.
    pub unused_grants: Vec<Finding>,
    /// Imports the manifest does not grant: denied at run time.
    pub denied_imports: Vec<Finding>,
    /// Imports the runner does not provide: the component will not
    /// instantiate.
    pub unavailable_imports: Vec<Finding>,
}

impl Inspection {
    fn import(&self, interface: &str) -> Option<&WitItem> {
        self.imports
            .iter()
            .find(|i| i.kind == "interface" && i.unversioned() == interface)
    }

    fn imports_function(&self, interface: &str, function: &str) -> bool {
        self.import(interface)
            .is_some_and(|i| i.functions.iter().any(|f| f == function))
    }
}

/// Whether the runner's linker serves `item` (a name and version it
/// defines, in a compatible version).
fn linked(item: &WitItem) -> bool {
    LINKED_INTERFACES.iter().any(|l| {
        let (name, minor) = l.split_once('@').unwrap_or((l, ""));
        item.unversioned() == name
            && item
                .version()
                .is_some_and(|v| v == minor || v.starts_with(&format!("{minor}.")))
    })
}

/// Compares the component `ins` with `manifest`'s grants.
pub fn check(ins: &Inspection, manifest: &Manifest, manifest_shown: &str) -> GrantCheck {
    let mut unused = Vec::new();
    let mut denied = Vec::new();
    let mut unavailable = Vec::new();
    let finding = |subject: String, message: Phrase| Finding { subject, message };

    const PREOPENS: &str = "wasi:filesystem/preopens";
    const SECRETS: &str = "cordon:step/secrets";
    const ENVIRONMENT: &str = "wasi:cli/environment";
    if ins.import(PREOPENS).is_none() {
        for m in &manifest.mounts {
            unused.push(finding(
                format!("mount {}", m.guest),
                Phrase::new("the component does not import ")
                    .code(PREOPENS)
                    .words(", so it cannot open any directory: remove the mount"),
            ));
        }
    }
    let secrets_imported = ins.import(SECRETS).is_some();
    for g in &manifest.secrets {
        if !secrets_imported {
            unused.push(finding(
                format!("secret {}", g.name),
                Phrase::new("the component does not import ")
                    .code(SECRETS)
                    .words(", so it cannot use any secret: remove the grant"),
            ));
            continue;
        }
        for u in &g.uses {
            let needs: &[&str] = match u {
                SecretUse::Hmac => &["[method]secret.hmac-sha256"],
                SecretUse::Sign => &[
                    "[method]secret.sign-ed25519",
                    "[method]secret.public-key-ed25519",
                ],
                SecretUse::Reveal => &["[method]secret.reveal"],
                SecretUse::HttpHeader => &["[method]secret.http-header-placeholder"],
            };
            let usable = if *u == SecretUse::HttpHeader {
                ins.imports
                    .iter()
                    .any(|i| i.unversioned().starts_with("wasi:http/"))
                    && needs.iter().any(|f| ins.imports_function(SECRETS, f))
            } else {
                needs.iter().any(|f| ins.imports_function(SECRETS, f))
            };
            if !usable {
                let via = if *u == SecretUse::HttpHeader {
                    Phrase::new("the component imports no ")
                        .code("wasi:http")
                        .words(" interface")
                } else {
                    Phrase::new("the component does not import ")
                        .code(format!("{SECRETS}#{}", needs.join(" or ")))
                };
                unused.push(finding(
                    format!("secret {}: {}", g.name, crate::review::use_name(*u)),
                    via.words(format!(
                        ", so it cannot use {} with ",
                        crate::review::use_name(*u)
                    ))
                    .code(&g.name)
                    .words(": remove the use"),
                ));
            }
        }
    }
    if let Some(n) = &manifest.network
        && !ins
            .imports
            .iter()
            .any(|i| i.unversioned() == "wasi:http/outgoing-handler")
    {
        unused.push(finding(
            "network".into(),
            Phrase::new("the component does not import ")
                .code("wasi:http/outgoing-handler")
                .words(format!(
                    ", so it cannot reach the {} granted destination(s): remove `[network]`",
                    n.allow.len()
                )),
        ));
    }
    if !manifest.env.is_empty() && !ins.imports_function(ENVIRONMENT, "get-environment") {
        unused.push(finding(
            "environment".into(),
            Phrase::new("the component does not import ")
                .code(format!("{ENVIRONMENT}#get-environment"))
                .words(", so it cannot read environment variables: remove them"),
        ));
    }
    if !manifest.args.is_empty() && !ins.imports_function(ENVIRONMENT, "get-arguments") {
        unused.push(finding(
            "arguments".into(),
            Phrase::new("the component does not import ")
                .code(format!("{ENVIRONMENT}#get-arguments"))
                .words(", so it cannot read its arguments: remove them"),
        ));
    }
    // Components import `wasi:clocks/wall-clock` for its `datetime` type
    // alone (file timestamps); only `now` reads the clock.
    if manifest.clock == ClockMode::Real && !ins.imports_function("wasi:clocks/wall-clock", "now") {
        unused.push(finding(
            "clock".into(),
            Phrase::new("the component does not import ")
                .code("wasi:clocks/wall-clock#now")
                .words(", so `clock = \"real\"` only costs reproducibility: remove it"),
        ));
    }
    if manifest.random == RandomMode::Real
        && !ins
            .imports
            .iter()
            .any(|i| i.unversioned().starts_with("wasi:random/") && !i.functions.is_empty())
    {
        unused.push(finding(
            "random".into(),
            Phrase::new("the component imports no ")
                .code("wasi:random")
                .words(" function, so `random = \"real\"` only costs reproducibility: remove it"),
        ));
    }

    for i in &ins.imports {
        let name = i.unversioned();
        if name.starts_with("wasi:sockets/") {
            denied.push(finding(
                i.name.clone(),
                Phrase::new(
                    "every call traps with \"network access denied\" (raw sockets are never granted; steps use wasi:http)",
                ),
            ));
        } else if name.starts_with("wasi:http/") {
            if manifest.network.is_none() {
                denied.push(finding(
                    i.name.clone(),
                    Phrase::new(
                        "every call traps with \"network access denied\" (the manifest has no `[network]` grant)",
                    ),
                ));
            }
        } else if !linked(i) {
            unavailable.push(finding(
                i.name.clone(),
                Phrase::new("the runner does not provide this ")
                    .words(i.kind)
                    .words(", so the component will not instantiate"),
            ));
        } else if name == PREOPENS && manifest.mounts.is_empty() {
            denied.push(finding(
                i.name.clone(),
                Phrase::new("the manifest mounts no directory: the step finds none"),
            ));
        } else if name == SECRETS && manifest.secrets.is_empty() {
            denied.push(finding(
                i.name.clone(),
                Phrase::new(
                    "the manifest grants no secret: every `get` is refused with `not-granted`",
                ),
            ));
        }
    }
    GrantCheck {
        manifest: manifest_shown.to_string(),
        step: manifest.name.clone(),
        pinned: manifest.digest.clone(),
        digest_matches: manifest.digest == ins.digest,
        unused_grants: unused,
        denied_imports: denied,
        unavailable_imports: unavailable,
    }
}

/// An inspection, with the check against a manifest when one was given.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The component.
    #[serde(flatten)]
    pub inspection: Inspection,
    /// The check, or `null`.
    pub manifest: Option<GrantCheck>,
}

impl Report {
    /// The report in `format` (Markdown is rendered as text in a code
    /// block's stead: the same lines).
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Json => serde_json::to_string_pretty(self).unwrap_or_default() + "\n",
            Format::Text | Format::Markdown => self.lines(format),
        }
    }

    fn lines(&self, format: Format) -> String {
        let md = format == Format::Markdown;
        let i = &self.inspection;
        let code = |s: &str| if md { md_code(s) } else { plain(s) };
        // Producer names and versions are free text from the file.
        let free = |s: &str| if md { md_text(s) } else { plain(s) };
        let mut out = if md {
            format!("## Component {}\n\n", md_code(&i.file))
        } else {
            format!("component {}\n", plain(&i.file))
        };
        let item = |label: &str, value: String| {
            if md {
                format!("- **{label}:** {value}\n")
            } else {
                format!("  {label:<10}{value}\n")
            }
        };
        out += &item("size", format!("{} bytes", count(i.size)));
        out += &item("digest", code(&i.digest.to_string()));
        out += &item(
            "runs",
            if i.runnable {
                "yes: it exports wasi:cli/run, which the runner calls".into()
            } else {
                "no: it does not export wasi:cli/run@0.2, so the runner cannot run it".into()
            },
        );
        if i.producers.is_empty() {
            out += &item("producers", "none recorded".into());
        }
        for p in &i.producers {
            let fields: Vec<String> = p
                .fields
                .iter()
                .map(|f| {
                    let vals: Vec<String> = f
                        .values
                        .iter()
                        .map(|(n, v)| free(format!("{n} {v}").trim()))
                        .collect();
                    format!("{} {}", free(&f.name), vals.join(", "))
                })
                .collect();
            out += &item(
                "producers",
                format!("{}: {}", p.location, fields.join("; ")),
            );
        }
        let wit = |dir: &str, it: &WitItem| -> String {
            let mut s = match it.kind {
                "interface" => format!("{dir} {};", plain(&it.name)),
                k => format!("{dir} {}: {k};", plain(&it.name)),
            };
            if !it.functions.is_empty() {
                let f: Vec<String> = it.functions.iter().map(|f| plain(f)).collect();
                s += &format!("  // {}", f.join(", "));
            }
            s
        };
        if md {
            out += "\n```wit\n";
        } else {
            out += "  wit (imports and exports; // the functions each holds)\n";
        }
        for it in &i.imports {
            out += &format!("    {}\n", wit("import", it));
        }
        for it in &i.exports {
            out += &format!("    {}\n", wit("export", it));
        }
        if md {
            out += "```\n";
        }
        if let Some(c) = &self.manifest {
            out += &if md {
                format!(
                    "\n### Against manifest {} (step {})\n\n",
                    md_code(&c.manifest),
                    md_code(&c.step)
                )
            } else {
                format!(
                    "\nagainst manifest {} (step {})\n",
                    plain(&c.manifest),
                    plain(&c.step)
                )
            };
            out += &item(
                "digest",
                if c.digest_matches {
                    "matches the pin".into()
                } else {
                    format!(
                        "DIFFERS: the manifest pins {}; this file is not the reviewed build",
                        code(&c.pinned.to_string())
                    )
                },
            );
            for (title, list, none) in [
                (
                    "grants the component cannot use (over-privilege: remove them)",
                    &c.unused_grants,
                    "none",
                ),
                (
                    "imports the manifest does not grant (denied at run time)",
                    &c.denied_imports,
                    "none",
                ),
                (
                    "imports the runner does not provide (the component will not instantiate)",
                    &c.unavailable_imports,
                    "none",
                ),
            ] {
                out += &if md {
                    format!(
                        "\n**{title}:**{}\n",
                        if list.is_empty() { " none" } else { "" }
                    )
                } else {
                    format!(
                        "  {title}:{}\n",
                        if list.is_empty() {
                            format!(" {none}")
                        } else {
                            String::new()
                        }
                    )
                };
                for f in list {
                    out += &if md {
                        format!("- {}: {}\n", md_code(&f.subject), f.message.markdown())
                    } else {
                        format!("    {}: {}\n", plain(&f.subject), f.message.text())
                    };
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A report with every string from the component file or the
    /// manifest taken from `next`.
    fn report_of(next: &mut dyn FnMut() -> String) -> Report {
        let item = |next: &mut dyn FnMut() -> String| WitItem {
            name: next(),
            kind: "interface",
            functions: vec![next(), next()],
            types: Vec::new(),
        };
        let imports = vec![item(next), item(next)];
        let exports = vec![item(next)];
        let finding = |next: &mut dyn FnMut() -> String| Finding {
            subject: next(),
            message: crate::review::Phrase::new("grants ")
                .code(next())
                .words(" for ")
                .quote(next()),
        };
        let unused = vec![finding(next)];
        let denied = vec![finding(next)];
        let unavailable = vec![finding(next)];
        Report {
            inspection: Inspection {
                file: next(),
                size: 1,
                digest: Sha256Digest::of(b""),
                runnable: true,
                producers: vec![Producers {
                    location: "component".into(),
                    fields: vec![ProducerField {
                        name: next(),
                        values: vec![(next(), next())],
                    }],
                }],
                imports,
                exports,
            },
            manifest: Some(GrantCheck {
                manifest: next(),
                step: next(),
                pinned: Sha256Digest::of(b"x"),
                digest_matches: false,
                unused_grants: unused,
                denied_imports: denied,
                unavailable_imports: unavailable,
            }),
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        #[test]
        fn any_component_or_manifest_text_leaves_the_markdown_inspection_its_structure(
            values in proptest::collection::vec(crate::review::structure::hostile(), 1..8)
        ) {
            use crate::review::structure;
            let mut i = 0;
            let md = report_of(&mut || {
                i += 1;
                values[i % values.len()].clone()
            })
            .render(Format::Markdown);
            let plain = report_of(&mut || "value".to_string()).render(Format::Markdown);
            proptest::prop_assert_eq!(structure::active(&md), 0, "{}", md);
            proptest::prop_assert_eq!(
                structure::of_markdown(&md),
                structure::of_markdown(&plain),
                "{}", md
            );
        }
    }

    #[test]
    fn garbage_is_not_wasm() {
        assert_eq!(inspect("x", b"hello").unwrap_err(), InspectError::NotWasm);
    }

    #[test]
    fn a_core_module_is_not_a_component() {
        assert_eq!(
            inspect("x", b"\0asm\x01\0\0\0").unwrap_err(),
            InspectError::CoreModule
        );
    }

    #[test]
    fn a_truncated_component_is_invalid() {
        // A component header followed by a section that claims more bytes
        // than there are.
        let err = inspect("x", b"\0asm\x0d\0\x01\0\x01\x7f").unwrap_err();
        assert!(matches!(err, InspectError::Invalid { .. }), "{err}");
    }

    #[test]
    fn the_smallest_component_has_nothing() {
        let i = inspect("x", b"\0asm\x0d\0\x01\0").unwrap();
        assert!(i.imports.is_empty() && i.exports.is_empty() && !i.runnable);
        assert_eq!(i.size, 8);
    }

    fn iface(name: &str, functions: &[&str]) -> WitItem {
        WitItem {
            name: name.into(),
            kind: "interface",
            functions: functions.iter().map(|f| f.to_string()).collect(),
            types: Vec::new(),
        }
    }

    fn inspection(imports: Vec<WitItem>) -> Inspection {
        Inspection {
            file: "c.wasm".into(),
            size: 0,
            digest: Sha256Digest::of(b""),
            runnable: true,
            producers: Vec::new(),
            imports,
            exports: Vec::new(),
        }
    }

    fn manifest(extra: &str) -> Manifest {
        Manifest::parse(
            Path::new("s.toml"),
            &format!(
                "[step]\nname = \"s\"\ncomponent = \"s.wasm\"\ndigest = \"{}\"\n{extra}",
                Sha256Digest::of(b"")
            ),
        )
        .unwrap()
    }

    fn subjects(list: &[Finding]) -> Vec<&str> {
        list.iter().map(|f| f.subject.as_str()).collect()
    }

    #[test]
    fn grants_without_their_interface_are_over_privilege() {
        let m = manifest(
            "args = [\"-v\"]\n[env]\nA = \"1\"\n[[mount]]\nguest = \"/in\"\nhost = \"d\"\naccess = \"read\"\npurpose = \"p\"\n[[secret]]\nname = \"k\"\nuses = [\"hmac\"]\n",
        );
        let c = check(&inspection(vec![]), &m, "s.toml");
        assert_eq!(
            subjects(&c.unused_grants),
            ["mount /in", "secret k", "environment", "arguments"]
        );
        assert!(c.digest_matches);
    }

    #[test]
    fn secret_uses_are_checked_per_function() {
        let m = manifest("[[secret]]\nname = \"k\"\nuses = [\"sign\", \"reveal\"]\n");
        let ins = inspection(vec![iface(
            "cordon:step/secrets@0.1.0",
            &["get", "[method]secret.sign-ed25519"],
        )]);
        let c = check(&ins, &m, "s.toml");
        assert_eq!(subjects(&c.unused_grants), ["secret k: reveal"]);
    }

    #[test]
    fn ungranted_and_unknown_imports_are_reported() {
        let ins = inspection(vec![
            iface("wasi:filesystem/preopens@0.2.6", &["get-directories"]),
            iface("wasi:sockets/tcp@0.2.6", &[]),
            iface("cordon:step/secrets@0.1.0", &["get"]),
            iface("wasi:http/outgoing-handler@0.2.6", &["handle"]),
            iface("wasi:cli/environment@0.3.0", &[]),
            iface("wasi:cli/stdout@0.2.12", &[]),
        ]);
        let c = check(&ins, &manifest(""), "s.toml");
        assert_eq!(
            subjects(&c.denied_imports),
            [
                "wasi:filesystem/preopens@0.2.6",
                "wasi:sockets/tcp@0.2.6",
                "cordon:step/secrets@0.1.0",
                "wasi:http/outgoing-handler@0.2.6"
            ]
        );
        assert_eq!(
            subjects(&c.unavailable_imports),
            ["wasi:cli/environment@0.3.0"]
        );
        // With a network grant, wasi:http is linked.
        let granted = manifest("[network]\nallow = [\"https://api.example.com/\"]\n");
        let c = check(&ins, &granted, "s.toml");
        assert!(!subjects(&c.denied_imports).contains(&"wasi:http/outgoing-handler@0.2.6"));
    }

    #[test]
    fn a_different_build_is_noticed() {
        let mut ins = inspection(vec![]);
        ins.digest = Sha256Digest::of(b"other");
        assert!(!check(&ins, &manifest(""), "s.toml").digest_matches);
    }
}
