//! `evaluate`: scores `model.json` on the hold-out split and writes
//! `metrics.json`; reports accuracy and AUC to the record. Fails when the
//! AUC is below `--min-auc`.
//!
//! ```text
//! evaluate --label churned [--model DIR] [--data DIR] [--output DIR] [--min-auc X]
//! ```

use cordon_step_train::{Model, evaluate, is_holdout, read_examples};
use std::process::ExitCode;

fn run() -> Result<bool, String> {
    let (mut model_dir, mut data_dir, mut output) = (
        "/model".to_string(),
        "/data".to_string(),
        "/out".to_string(),
    );
    let (mut label, mut min_auc) = ("label".to_string(), 0.0f64);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--model" => model_dir = value()?,
            "--data" => data_dir = value()?,
            "--output" => output = value()?,
            "--label" => label = value()?,
            "--min-auc" => min_auc = value()?.parse().map_err(|_| "--min-auc needs a number")?,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    let model: Model = serde_json::from_str(
        &std::fs::read_to_string(format!("{model_dir}/model.json"))
            .map_err(|e| format!("model.json: {e}"))?,
    )
    .map_err(|e| format!("model.json: {e}"))?;
    let mut data = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&data_dir)
        .map_err(|e| format!("{data_dir}: {e}"))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    files.sort();
    for f in files
        .iter()
        .filter(|f| f.extension().is_some_and(|x| x == "csv"))
    {
        let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
        data.extend(read_examples(&text, &model.features, &label)?);
    }
    let holdout: Vec<_> = data.into_iter().filter(|e| is_holdout(&e.id)).collect();
    let (accuracy, auc) = evaluate(&model, &holdout);
    let metrics = serde_json::json!({"holdout_rows": holdout.len(), "accuracy": accuracy, "auc": auc, "min_auc": min_auc});
    std::fs::write(
        format!("{output}/metrics.json"),
        serde_json::to_string_pretty(&metrics).unwrap() + "\n",
    )
    .map_err(|e| format!("metrics.json: {e}"))?;
    println!(
        "hold-out rows {}, accuracy {accuracy:.3}, AUC {auc:.3}",
        holdout.len()
    );
    cordon_sdk::report::metric("holdout_rows", holdout.len() as f64);
    cordon_sdk::report::metric("accuracy", accuracy);
    cordon_sdk::report::metric("auc", auc);
    if auc < min_auc {
        eprintln!("AUC {auc:.3} is below the required {min_auc}");
        return Ok(false);
    }
    Ok(true)
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("evaluate: {e}");
            ExitCode::FAILURE
        }
    }
}
