//! `checksum`: writes `SHA256SUMS` for every file under an input directory,
//! in the format `sha256sum -c` reads.
//!
//! ```text
//! checksum [--input DIR] [--output DIR] [--hmac-key SECRET]
//! ```
//!
//! With `--hmac-key`, also writes `SHA256SUMS.hmac`: the hex HMAC-SHA256 of
//! `SHA256SUMS` keyed with the named secret. The step never sees the key; it
//! asks the runner to compute the tag through the secret handle.

use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

struct Options {
    input: PathBuf,
    output: PathBuf,
    hmac_key: Option<String>,
}

fn parse_args() -> Result<Options, String> {
    let mut opts = Options {
        input: "/in".into(),
        output: "/out".into(),
        hmac_key: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--input" => opts.input = value()?.into(),
            "--output" => opts.output = value()?.into(),
            "--hmac-key" => opts.hmac_key = Some(value()?),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(opts)
}

fn collect(dir: &Path, rel: &str, out: &mut Vec<(String, PathBuf)>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let ft = entry.file_type()?;
        if ft.is_dir() {
            collect(&entry.path(), &rel, out)?;
        } else if ft.is_file() {
            out.push((rel, entry.path()));
        }
    }
    Ok(())
}

fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        h.update(&buf[..n]);
    }
    Ok((hex::encode(h.finalize()), total))
}

fn run(opts: &Options) -> Result<(), String> {
    let mut files = Vec::new();
    collect(&opts.input, "", &mut files)
        .map_err(|e| format!("cannot list {}: {e}", opts.input.display()))?;
    files.sort();
    let mut sums = String::new();
    let mut bytes = 0u64;
    for (rel, path) in &files {
        let (digest, len) = sha256_file(path).map_err(|e| format!("cannot read {rel}: {e}"))?;
        bytes += len;
        sums.push_str(&format!("{digest}  {rel}\n"));
    }
    let sums_path = opts.output.join("SHA256SUMS");
    std::fs::write(&sums_path, &sums)
        .map_err(|e| format!("cannot write {}: {e}", sums_path.display()))?;
    println!("hashed {} files, {bytes} bytes", files.len());
    if let Some(name) = &opts.hmac_key {
        let key = cordon_sdk::secrets::get(name).map_err(|e| format!("secret `{name}`: {e}"))?;
        let tag = key
            .hmac_sha256(sums.as_bytes())
            .map_err(|e| format!("secret `{name}`: {e}"))?;
        std::fs::write(
            opts.output.join("SHA256SUMS.hmac"),
            format!("{}\n", hex::encode(tag)),
        )
        .map_err(|e| format!("cannot write SHA256SUMS.hmac: {e}"))?;
        println!("authenticated SHA256SUMS with secret `{name}`");
        cordon_sdk::report::annotate("hmac-key", name);
    }
    cordon_sdk::report::metric("files", files.len() as f64);
    cordon_sdk::report::metric("bytes", bytes as f64);
    Ok(())
}

fn main() -> ExitCode {
    match parse_args().and_then(|o| run(&o)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("checksum: {e}");
            ExitCode::FAILURE
        }
    }
}
