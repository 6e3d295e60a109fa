//! A small logistic-regression model in plain Rust, shared by the `train`
//! and `evaluate` steps (and built natively for benchmarks, so the same code
//! can be timed inside and outside the sandbox).
//!
//! Features are standardised with the training set's mean and deviation;
//! training is full-batch gradient descent with L2 regularisation. Rows are
//! split into training and hold-out sets by a hash of their id, so the split
//! is stable across runs and machines.

use serde::{Deserialize, Serialize};

/// A trained model.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Model {
    /// Feature column names, in order.
    pub features: Vec<String>,
    /// Mean of each feature on the training set.
    pub mean: Vec<f64>,
    /// Standard deviation of each feature on the training set.
    pub std: Vec<f64>,
    /// Weights, one per feature.
    pub weights: Vec<f64>,
    /// Intercept.
    pub bias: f64,
}

/// A labelled example.
#[derive(Debug, Clone)]
pub struct Example {
    /// Row id.
    pub id: String,
    /// Raw feature values.
    pub x: Vec<f64>,
    /// 0 or 1.
    pub y: f64,
}

/// Whether a row belongs to the hold-out set (about 1 in 5), by FNV-1a of its id.
pub fn is_holdout(id: &str) -> bool {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in id.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h.is_multiple_of(5)
}

/// Reads examples from CSV text with an `id` column, the `features` columns
/// and a 0/1 `label` column.
pub fn read_examples(
    csv_text: &str,
    features: &[String],
    label: &str,
) -> Result<Vec<Example>, String> {
    let mut rdr = csv::Reader::from_reader(csv_text.as_bytes());
    let header = rdr.headers().map_err(|e| e.to_string())?.clone();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or(format!("no column `{name}`"))
    };
    let id = col("id")?;
    let fx: Vec<usize> = features.iter().map(|f| col(f)).collect::<Result<_, _>>()?;
    let ly = col(label)?;
    let mut out = Vec::new();
    for (line, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| e.to_string())?;
        let num = |i: usize| {
            rec[i]
                .trim()
                .parse::<f64>()
                .map_err(|_| format!("line {}: `{}` is not a number", line + 2, &rec[i]))
        };
        out.push(Example {
            id: rec[id].to_string(),
            x: fx.iter().map(|&i| num(i)).collect::<Result<_, _>>()?,
            y: num(ly)?,
        });
    }
    Ok(out)
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

impl Model {
    /// Probability of the positive class for raw features `x`.
    pub fn predict(&self, x: &[f64]) -> f64 {
        let z: f64 = x
            .iter()
            .zip(&self.mean)
            .zip(&self.std)
            .zip(&self.weights)
            .map(|(((v, m), s), w)| w * (v - m) / s)
            .sum();
        sigmoid(z + self.bias)
    }
}

/// Trains on `data` for `epochs` passes with learning rate `lr` and L2
/// strength `l2`. Returns the model and the final training log-loss.
pub fn train(
    features: &[String],
    data: &[Example],
    epochs: usize,
    lr: f64,
    l2: f64,
) -> (Model, f64) {
    let d = features.len();
    let n = data.len().max(1) as f64;
    let mut mean = vec![0.0; d];
    for e in data {
        for (m, v) in mean.iter_mut().zip(&e.x) {
            *m += v / n;
        }
    }
    let mut std = vec![0.0; d];
    for e in data {
        for ((s, v), m) in std.iter_mut().zip(&e.x).zip(&mean) {
            *s += (v - m) * (v - m) / n;
        }
    }
    for s in &mut std {
        *s = s.sqrt().max(1e-9);
    }
    let xs: Vec<Vec<f64>> = data
        .iter()
        .map(|e| {
            e.x.iter()
                .zip(&mean)
                .zip(&std)
                .map(|((v, m), s)| (v - m) / s)
                .collect()
        })
        .collect();
    let mut w = vec![0.0; d];
    let mut b = 0.0;
    let mut loss = 0.0;
    for _ in 0..epochs {
        let mut gw = vec![0.0; d];
        let mut gb = 0.0;
        loss = 0.0;
        for (x, e) in xs.iter().zip(data) {
            let p = sigmoid(x.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>() + b);
            let err = p - e.y;
            for (g, v) in gw.iter_mut().zip(x) {
                *g += err * v / n;
            }
            gb += err / n;
            loss -= (e.y * p.max(1e-12).ln() + (1.0 - e.y) * (1.0 - p).max(1e-12).ln()) / n;
        }
        for (wi, g) in w.iter_mut().zip(&gw) {
            *wi -= lr * (g + l2 * *wi);
        }
        b -= lr * gb;
    }
    (
        Model {
            features: features.to_vec(),
            mean,
            std,
            weights: w,
            bias: b,
        },
        loss,
    )
}

/// Accuracy at threshold 0.5 and ROC AUC of `model` on `data`.
pub fn evaluate(model: &Model, data: &[Example]) -> (f64, f64) {
    let mut scored: Vec<(f64, f64)> = data.iter().map(|e| (model.predict(&e.x), e.y)).collect();
    let correct = scored
        .iter()
        .filter(|(p, y)| (*p >= 0.5) == (*y >= 0.5))
        .count();
    let accuracy = correct as f64 / scored.len().max(1) as f64;
    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
    let pos = scored.iter().filter(|(_, y)| *y >= 0.5).count() as f64;
    let neg = scored.len() as f64 - pos;
    let mut rank_sum = 0.0;
    for (i, (_, y)) in scored.iter().enumerate() {
        if *y >= 0.5 {
            rank_sum += (i + 1) as f64;
        }
    }
    let auc = if pos > 0.0 && neg > 0.0 {
        (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
    } else {
        f64::NAN
    };
    (accuracy, auc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_a_separable_rule() {
        let features = vec!["a".to_string()];
        let data: Vec<Example> = (0..200)
            .map(|i| Example {
                id: i.to_string(),
                x: vec![i as f64],
                y: if i >= 100 { 1.0 } else { 0.0 },
            })
            .collect();
        let (m, loss) = train(&features, &data, 300, 0.5, 0.0);
        assert!(loss < 0.3, "{loss}");
        let (acc, auc) = evaluate(&m, &data);
        assert!(acc > 0.95 && auc > 0.99, "{acc} {auc}");
    }
}
