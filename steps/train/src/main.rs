//! `train`: fits the churn model on the training split of every `*.csv`
//! under the input directory and writes `model.json`.
//!
//! ```text
//! train --features age,income,... --label churned [--epochs N] [--input DIR] [--output DIR]
//! ```

use cordon_step_train::{is_holdout, read_examples, train};
use std::process::ExitCode;

fn run() -> Result<(), String> {
    let (mut input, mut output) = ("/in".to_string(), "/out".to_string());
    let (mut features, mut label, mut epochs) = (Vec::new(), "label".to_string(), 500usize);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--input" => input = value()?,
            "--output" => output = value()?,
            "--features" => features = value()?.split(',').map(str::to_string).collect(),
            "--label" => label = value()?,
            "--epochs" => epochs = value()?.parse().map_err(|_| "--epochs needs a number")?,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    let mut data = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&input)
        .map_err(|e| format!("{input}: {e}"))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    files.sort();
    for f in files
        .iter()
        .filter(|f| f.extension().is_some_and(|x| x == "csv"))
    {
        let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
        data.extend(read_examples(&text, &features, &label)?);
    }
    let training: Vec<_> = data.into_iter().filter(|e| !is_holdout(&e.id)).collect();
    if training.is_empty() {
        return Err("no training rows".into());
    }
    let (model, loss) = train(&features, &training, epochs, 0.3, 1e-3);
    let json = serde_json::to_string_pretty(&model).map_err(|e| e.to_string())? + "\n";
    std::fs::write(format!("{output}/model.json"), json)
        .map_err(|e| format!("cannot write model.json: {e}"))?;
    println!(
        "trained on {} rows for {epochs} epochs, log-loss {loss:.4}",
        training.len()
    );
    cordon_sdk::report::metric("train_rows", training.len() as f64);
    cordon_sdk::report::metric("train_log_loss", loss);
    cordon_sdk::report::annotate("model", "logistic-regression");
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("train: {e}");
            ExitCode::FAILURE
        }
    }
}
