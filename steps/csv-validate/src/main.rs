//! `csv-validate`: checks every `*.csv` file under the input directory and
//! writes, for each, the rows that pass to the output directory, plus a
//! `report.json` that lists every rejected row and why.
//!
//! ```text
//! csv-validate [--input DIR] [--output DIR] [--require COL,COL...] [--max-invalid N]
//! ```
//!
//! A row is rejected when its field count differs from the header's or a
//! required column is empty. The step fails (exit 1) when a required column
//! is missing from a header, or more than `--max-invalid` rows (default 0)
//! are rejected in total.

use std::path::PathBuf;
use std::process::ExitCode;

struct Options {
    input: PathBuf,
    output: PathBuf,
    require: Vec<String>,
    max_invalid: u64,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        input: "/in".into(),
        output: "/out".into(),
        require: Vec::new(),
        max_invalid: 0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--input" => o.input = value()?.into(),
            "--output" => o.output = value()?.into(),
            "--require" => {
                o.require = value()?
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            }
            "--max-invalid" => {
                o.max_invalid = value()?
                    .parse()
                    .map_err(|_| "--max-invalid needs a number".to_string())?
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(o)
}

fn run(o: &Options) -> Result<bool, String> {
    let mut names: Vec<String> = std::fs::read_dir(&o.input)
        .map_err(|e| format!("cannot list {}: {e}", o.input.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".csv"))
        .collect();
    names.sort();
    let mut files = Vec::new();
    let (mut total_rows, mut total_bad) = (0u64, 0u64);
    let mut ok = true;
    for name in &names {
        let mut rdr = csv::ReaderBuilder::new()
            .flexible(true)
            .from_path(o.input.join(name))
            .map_err(|e| format!("{name}: {e}"))?;
        let header = rdr.headers().map_err(|e| format!("{name}: {e}"))?.clone();
        let missing: Vec<&String> = o
            .require
            .iter()
            .filter(|c| !header.iter().any(|h| h == c.as_str()))
            .collect();
        if !missing.is_empty() {
            eprintln!("{name}: missing required columns: {missing:?}");
            ok = false;
        }
        let required: Vec<usize> = o
            .require
            .iter()
            .filter_map(|c| header.iter().position(|h| h == c.as_str()))
            .collect();
        let mut w =
            csv::Writer::from_path(o.output.join(name)).map_err(|e| format!("{name}: {e}"))?;
        w.write_record(&header)
            .map_err(|e| format!("{name}: {e}"))?;
        let mut rejected = Vec::new();
        let mut rows = 0u64;
        for (i, rec) in rdr.records().enumerate() {
            let line = i + 2;
            rows += 1;
            let rec = match rec {
                Ok(r) => r,
                Err(e) => {
                    rejected.push(serde_json::json!({"line": line, "why": e.to_string()}));
                    continue;
                }
            };
            if rec.len() != header.len() {
                rejected.push(serde_json::json!({"line": line, "why": format!("{} fields, header has {}", rec.len(), header.len())}));
            } else if let Some(&c) = required.iter().find(|&&c| rec[c].trim().is_empty()) {
                rejected.push(serde_json::json!({"line": line, "why": format!("required column `{}` is empty", &header[c])}));
            } else {
                w.write_record(&rec).map_err(|e| format!("{name}: {e}"))?;
            }
        }
        w.flush().map_err(|e| format!("{name}: {e}"))?;
        total_rows += rows;
        total_bad += rejected.len() as u64;
        println!("{name}: {rows} rows, {} rejected", rejected.len());
        files.push(serde_json::json!({"file": name, "rows": rows, "rejected": rejected, "missing_columns": missing}));
    }
    let report = serde_json::json!({"files": files, "rows": total_rows, "rejected": total_bad, "max_invalid": o.max_invalid});
    std::fs::write(
        o.output.join("report.json"),
        serde_json::to_string_pretty(&report).unwrap() + "\n",
    )
    .map_err(|e| format!("cannot write report.json: {e}"))?;
    cordon_sdk::report::metric("files", names.len() as f64);
    cordon_sdk::report::metric("rows", total_rows as f64);
    cordon_sdk::report::metric("rows_rejected", total_bad as f64);
    if total_bad > o.max_invalid {
        eprintln!(
            "{total_bad} rows rejected, more than --max-invalid {}",
            o.max_invalid
        );
        ok = false;
    }
    Ok(ok)
}

fn main() -> ExitCode {
    match parse_args().and_then(|o| run(&o)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("csv-validate: {e}");
            ExitCode::FAILURE
        }
    }
}
