//! `cordon export in-toto`: a run as in-toto link and layout metadata, for
//! `in-toto-verify` (PyPI `in-toto` 3.x), which verifies links, not
//! statements.
//!
//! For a run, the export writes into a directory:
//!
//! - `<step>.<first 8 hex of keyid>.link`: a DSSE envelope (payload type
//!   `application/vnd.in-toto+json`) whose payload is an in-toto link:
//!   `materials` = the input files, `products` = the output files, with
//!   their sha256 as the record holds them; signed with the environment's
//!   signing key (the key that signed the record);
//! - `root.layout`: a DSSE envelope around a layout with one step per link
//!   (its functionary is the environment's key, its command the step's
//!   argv, its products exactly the recorded outputs) and one inspection,
//!   `outputs-on-disk`, that re-reads the outputs where they are and
//!   requires them to match the step's products; signed with the key the
//!   user names.
//!
//! Artifact names are host paths relative to the base directory (the
//! current directory by default); run `in-toto-verify` in that directory.
//! Files outside it cannot be named and make the export fail.

use crate::attest::{self, Signer};
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};

/// What an export wrote.
#[derive(Debug)]
pub struct Exported {
    /// The link file.
    pub link: PathBuf,
    /// The layout file.
    pub layout: PathBuf,
}

fn relative(base: &Path, host: &str, rel: &str) -> Result<String, String> {
    let full = Path::new(host).join(rel);
    full.strip_prefix(base)
        .map(|p| p.to_string_lossy().into_owned())
        .map_err(|_| {
            format!(
                "{} is outside the base directory {}; export from a directory that contains every mount (--base)",
                full.display(),
                base.display()
            )
        })
}

fn artifacts(
    record: &Value,
    side: &str,
    base: &Path,
) -> Result<(Map<String, Value>, Vec<String>), String> {
    let mut files = Map::new();
    let mut dirs = Vec::new();
    for m in record["mounts"].as_array().into_iter().flatten() {
        let Some(tree) = m.get(side) else { continue };
        let host = m["host"].as_str().unwrap_or("");
        dirs.push(relative(base, host, "")?);
        for e in tree["entries"].as_array().into_iter().flatten() {
            if let Some(h) = e["sha256"].as_str() {
                let name = relative(base, host, e["path"].as_str().unwrap_or(""))?;
                files.insert(name, json!({"sha256": h}));
            }
        }
    }
    Ok((files, dirs))
}

fn public_key(s: &Signer) -> Value {
    json!({
        "keyid": s.keyid(),
        "keytype": "ed25519",
        "scheme": "ed25519",
        "keyval": {"public": hex::encode(s.public().as_bytes())},
    })
}

fn write_envelope(path: &Path, signer: &Signer, payload: &Value) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(payload)?;
    let envelope = signer
        .envelope(attest::PAYLOAD_TYPE, &bytes)
        .map_err(std::io::Error::other)?;
    let mut out = serde_json::to_vec_pretty(&envelope)?;
    out.push(b'\n');
    crate::fsutil::write_atomic(path, &out)
}

/// Exports the run whose record is `record` into `dir`.
pub fn export(
    record: &Value,
    functionary: &Signer,
    layout_key: &Signer,
    base: &Path,
    dir: &Path,
) -> Result<Exported, String> {
    if record["success"] != true {
        return Err("the run failed; only successful runs have products to attest".into());
    }
    let step = record["step"].as_str().unwrap_or("step").to_string();
    let (materials, _) = artifacts(record, "before", base)?;
    let (products, out_dirs) = artifacts(record, "after", base)?;
    let command: Vec<Value> = record["args"].as_array().cloned().unwrap_or_default();

    let link = json!({
        "_type": "link",
        "name": step,
        "command": command,
        "materials": materials,
        "products": products,
        "byproducts": {
            "return-value": record["termination"]["code"].as_i64().unwrap_or(-1),
            "stdout-sha256": record["stdout"]["sha256"],
            "stderr-sha256": record["stderr"]["sha256"],
        },
        "environment": {
            "cordon-run": record["run_id"],
            "cordon-environment": record["environment"],
            "cordon-component": record["component"]["sha256"],
        },
    });

    let mut material_rules = vec![];
    for name in materials.keys() {
        material_rules.push(json!(["ALLOW", name]));
    }
    material_rules.push(json!(["DISALLOW", "*"]));
    let mut product_rules = vec![];
    for name in products.keys() {
        product_rules.push(json!(["CREATE", name]));
    }
    product_rules.push(json!(["DISALLOW", "*"]));
    // The inspection sees the files on disk now: each output must be
    // exactly a product of the step, anything else under the output
    // directories is refused, the rest of the directory is not the step's
    // business.
    let mut inspect_rules = vec![];
    for d in &out_dirs {
        let pattern = if d.is_empty() {
            "*".to_string()
        } else {
            format!("{d}/*")
        };
        inspect_rules.push(json!(["MATCH", pattern, "WITH", "PRODUCTS", "FROM", step]));
        inspect_rules.push(json!(["DISALLOW", pattern]));
    }
    inspect_rules.push(json!(["ALLOW", "*"]));

    let expires = time::OffsetDateTime::now_utc() + time::Duration::days(365);
    let expires = expires
        .replace_nanosecond(0)
        .unwrap_or(expires)
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| e.to_string())?;
    let layout = json!({
        "_type": "layout",
        "expires": expires,
        "readme": format!("Cordon run {} of step {step}", record["run_id"].as_str().unwrap_or("")),
        "keys": { functionary.keyid(): public_key(functionary) },
        "steps": [{
            "_type": "step",
            "name": step,
            "threshold": 1,
            "pubkeys": [functionary.keyid()],
            "expected_command": record["args"],
            "expected_materials": material_rules,
            "expected_products": product_rules,
        }],
        "inspect": [{
            "_type": "inspection",
            "name": "outputs-on-disk",
            "run": ["true"],
            "expected_materials": inspect_rules,
            "expected_products": [["ALLOW", "*"]],
        }],
    });

    crate::fsutil::create_private_dir(dir).map_err(|e| e.to_string())?;
    let link_path = dir.join(format!("{step}.{}.link", &functionary.keyid()[..8]));
    let layout_path = dir.join("root.layout");
    write_envelope(&link_path, functionary, &link).map_err(|e| e.to_string())?;
    write_envelope(&layout_path, layout_key, &layout).map_err(|e| e.to_string())?;
    Ok(Exported {
        link: link_path,
        layout: layout_path,
    })
}
