//! `pseudonymize`: replaces the named columns of every `*.csv` under the
//! input directory with keyed pseudonyms: the first 16 hex characters of
//! HMAC-SHA256(key, value). Equal values get equal pseudonyms (joins still
//! work); without the key nobody can test a guess. The key is a secret
//! handle: the step asks the runner for the HMAC and never sees the key.
//!
//! ```text
//! pseudonymize --key SECRET --columns name,email [--input DIR] [--output DIR]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

struct Options {
    input: PathBuf,
    output: PathBuf,
    key: String,
    columns: Vec<String>,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        input: "/in".into(),
        output: "/out".into(),
        key: String::new(),
        columns: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--input" => o.input = value()?.into(),
            "--output" => o.output = value()?.into(),
            "--key" => o.key = value()?,
            "--columns" => {
                o.columns = value()?
                    .split(',')
                    .map(|c| c.trim().to_string())
                    .filter(|c| !c.is_empty())
                    .collect()
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if o.key.is_empty() || o.columns.is_empty() {
        return Err("--key and --columns are required".into());
    }
    Ok(o)
}

fn run(o: &Options) -> Result<(), String> {
    let key = cordon_sdk::secrets::get(&o.key).map_err(|e| format!("secret `{}`: {e}", o.key))?;
    let mut names: Vec<String> = std::fs::read_dir(&o.input)
        .map_err(|e| format!("cannot list {}: {e}", o.input.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".csv"))
        .collect();
    names.sort();
    let mut replaced = 0u64;
    for name in &names {
        let mut rdr =
            csv::Reader::from_path(o.input.join(name)).map_err(|e| format!("{name}: {e}"))?;
        let header = rdr.headers().map_err(|e| format!("{name}: {e}"))?.clone();
        let targets: Vec<usize> = header
            .iter()
            .enumerate()
            .filter(|(_, h)| o.columns.iter().any(|c| c == h))
            .map(|(i, _)| i)
            .collect();
        if targets.len() != o.columns.len() {
            return Err(format!(
                "{name}: not every column of {:?} is in the header",
                o.columns
            ));
        }
        let mut w =
            csv::Writer::from_path(o.output.join(name)).map_err(|e| format!("{name}: {e}"))?;
        w.write_record(&header)
            .map_err(|e| format!("{name}: {e}"))?;
        for rec in rdr.records() {
            let rec = rec.map_err(|e| format!("{name}: {e}"))?;
            let mut out: Vec<String> = rec.iter().map(str::to_string).collect();
            for &i in &targets {
                let tag = key
                    .hmac_sha256(out[i].as_bytes())
                    .map_err(|e| format!("secret `{}`: {e}", o.key))?;
                out[i] = hex::encode(&tag[..8]);
                replaced += 1;
            }
            w.write_record(&out).map_err(|e| format!("{name}: {e}"))?;
        }
        w.flush().map_err(|e| format!("{name}: {e}"))?;
    }
    println!("pseudonymized {replaced} values in {} files", names.len());
    cordon_sdk::report::metric("values_pseudonymized", replaced as f64);
    cordon_sdk::report::annotate("pseudonymized_columns", &o.columns.join(","));
    Ok(())
}

fn main() -> ExitCode {
    match parse_args().and_then(|o| run(&o)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pseudonymize: {e}");
            ExitCode::FAILURE
        }
    }
}
