//! The layout docs/architecture.md describes, checked: the library crates
//! import one way (Cargo already refuses a cycle between crates; this
//! checks the order the document promises), no two modules of one crate
//! depend on each other, and the record crate, which an auditor's
//! `cordon verify` needs, depends on no sandbox, no policy engine and no
//! secret store.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The library crates in the order they may import each other: each may
/// use only crates before it.
const LAYERS: &[&str] = &[
    "cordon-core",
    "cordon-manifest",
    "cordon-record",
    "cordon-policy",
    "cordon-secrets",
    "cordon-sandbox",
    "cordon-engine",
    "cordon-review",
];

fn metadata() -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--offline"])
        .current_dir(root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Package name → names of its normal (non-dev, non-build) dependencies.
fn normal_deps(meta: &serde_json::Value) -> BTreeMap<String, BTreeSet<String>> {
    let name_of: BTreeMap<&str, &str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    meta["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let deps = n["deps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| {
                    d["dep_kinds"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|k| k["kind"].is_null())
                })
                .map(|d| name_of[d["pkg"].as_str().unwrap()].to_string())
                .collect();
            (name_of[n["id"].as_str().unwrap()].to_string(), deps)
        })
        .collect()
}

#[test]
fn library_crates_import_one_way_in_the_documented_order() {
    let deps = normal_deps(&metadata());
    for (i, krate) in LAYERS.iter().enumerate() {
        for d in deps[*krate].iter().filter(|d| d.starts_with("cordon-")) {
            let at = LAYERS.iter().position(|l| l == d);
            assert!(
                at.is_some_and(|j| j < i),
                "{krate} depends on {d}, which is not below it in docs/architecture.md"
            );
        }
    }
}

#[test]
fn the_record_crate_builds_without_the_sandbox_policy_or_secrets() {
    let deps = normal_deps(&metadata());
    let mut seen = BTreeSet::new();
    let mut todo = vec!["cordon-record".to_string()];
    while let Some(p) = todo.pop() {
        if seen.insert(p.clone()) {
            todo.extend(deps[&p].iter().cloned());
        }
    }
    for forbidden in [
        "wasmtime",
        "regorus",
        "cordon-sandbox",
        "cordon-secrets",
        "cordon-policy",
        "chacha20poly1305",
        "ureq",
    ] {
        assert!(
            !seen.contains(forbidden),
            "cordon-record depends (transitively) on {forbidden}"
        );
    }
}

/// The modules each module's code (tests left out) refers to, by the
/// crate root's children: `crate::m` from anywhere; `super::` from a
/// child's own file (`src/m.rs`, `src/m/mod.rs`), which is the root; and a
/// child's path (`m::item`) from the root.
fn module_edges(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    const ROOT: &str = "(root)";
    let module_of = |p: &Path| -> String {
        let rel = p.strip_prefix(src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        match first.trim_end_matches(".rs") {
            "lib" | "main" => ROOT.into(),
            m => m.into(),
        }
    };
    let modules: BTreeSet<String> = files.iter().map(|p| module_of(p)).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let m = module_of(f);
        let text = std::fs::read_to_string(f).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap();
        let parent_is_root = f.parent() == Some(src) || f.ends_with("mod.rs");
        for line in code.lines() {
            let l = line.split("//").next().unwrap();
            let mut to = |n: &str| {
                if n != m && modules.contains(n) {
                    edges.entry(m.clone()).or_default().insert(n.to_string());
                }
            };
            for (i, _) in l.match_indices("crate::") {
                let name: String = l[i + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                to(&name);
            }
            if m != ROOT
                && parent_is_root
                && (l.starts_with("use super::") || l.starts_with("pub use super::"))
            {
                to(ROOT);
            }
            if m == ROOT
                && !l.trim_start().starts_with("pub mod")
                && !l.trim_start().starts_with("mod ")
            {
                for child in modules.iter().filter(|c| c.as_str() != ROOT) {
                    let needle = format!("{child}::");
                    let direct = l.match_indices(&needle).any(|(i, _)| {
                        i == 0
                            || !l[..i].ends_with(|c: char| {
                                c == ':' || c == '_' || c.is_ascii_alphanumeric()
                            })
                    });
                    if direct {
                        to(child);
                    }
                }
            }
        }
    }
    edges
}

fn cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        path.push(n.to_string());
        for m in edges.get(n).into_iter().flatten() {
            match state.get(m) {
                Some(1) => {
                    let at = path.iter().position(|p| p == m).unwrap();
                    let mut c = path[at..].to_vec();
                    c.push(m.clone());
                    return Some(c);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(m, edges, state, path) {
                        return Some(c);
                    }
                }
            }
        }
        path.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in edges.keys() {
        if !state.contains_key(n)
            && let Some(c) = visit(n, edges, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

#[test]
fn no_two_modules_of_a_crate_depend_on_each_other() {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root().join("crates"))
        .unwrap()
        .map(|e| e.unwrap().path().join("src"))
        .collect();
    dirs.push(root().join("runner/src"));
    dirs.sort();
    for src in dirs {
        let edges = module_edges(&src);
        assert!(
            cycle(&edges).is_none(),
            "{}: modules depend on each other: {:?}",
            src.display(),
            cycle(&edges)
        );
    }
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    edges.entry("a".into()).or_default().insert("b".into());
    edges.entry("b".into()).or_default().insert("a".into());
    assert_eq!(
        cycle(&edges),
        Some(vec!["a".into(), "b".into(), "a".into()])
    );
}
