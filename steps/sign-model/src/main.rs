//! `sign-model`: for every file under the model directory, signs
//! `sha256:<hex>  <name>` with an ed25519 key held in a secret handle, and
//! writes `signatures.json` with the digests, signatures and public key.
//! The step asks the runner to sign; it never sees the key.
//!
//! ```text
//! sign-model --key SECRET [--input DIR] [--output DIR]
//! ```

use sha2::{Digest, Sha256};
use std::process::ExitCode;

fn run() -> Result<(), String> {
    let (mut input, mut output, mut key) = ("/in".to_string(), "/out".to_string(), String::new());
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--input" => input = value()?,
            "--output" => output = value()?,
            "--key" => key = value()?,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    let secret = cordon_sdk::secrets::get(&key).map_err(|e| format!("secret `{key}`: {e}"))?;
    let public = secret
        .ed25519_public_key()
        .map_err(|e| format!("secret `{key}`: {e}"))?;
    let mut names: Vec<String> = std::fs::read_dir(&input)
        .map_err(|e| format!("{input}: {e}"))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut entries = Vec::new();
    for name in &names {
        let bytes = std::fs::read(format!("{input}/{name}")).map_err(|e| format!("{name}: {e}"))?;
        let digest = hex::encode(Sha256::digest(&bytes));
        let message = format!("sha256:{digest}  {name}");
        let sig = secret
            .sign_ed25519(message.as_bytes())
            .map_err(|e| format!("secret `{key}`: {e}"))?;
        entries.push(serde_json::json!({"file": name, "sha256": digest, "signed_message": message, "signature": hex::encode(sig)}));
        println!("signed {name} (sha256:{digest})");
    }
    let doc = serde_json::json!({"algorithm": "ed25519", "public_key": hex::encode(public), "files": entries});
    std::fs::write(
        format!("{output}/signatures.json"),
        serde_json::to_string_pretty(&doc).unwrap() + "\n",
    )
    .map_err(|e| format!("signatures.json: {e}"))?;
    cordon_sdk::report::annotate("model_signing_public_key", &hex::encode(public));
    cordon_sdk::report::metric("files_signed", names.len() as f64);
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sign-model: {e}");
            ExitCode::FAILURE
        }
    }
}
