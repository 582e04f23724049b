//! Retrains the hand-off classifier from the labelled corpus and writes the weights the server
//! ships with:
//!
//! ```text
//! cargo run -p fleety-actors --features train --example train_handoff
//! ```
//!
//! It reads `actors/data/handoff/train.tsv`, fits a multinomial logistic regression (linfa)
//! over the same hashed features the server computes, reports precision and recall of the
//! "needs a person" decision on `heldout.tsv`, and writes `actors/src/handoff/handoff.model`.
//! Training is deterministic: the same corpus gives the same file. Options: `--dims N` (hash
//! buckets, a power of two), `--alpha X` (L2 penalty), `--check` (report only, write nothing).

use std::path::PathBuf;

use fleety_actors::handoff::{corpus_hash, evaluate, features, read_corpus, Intent, Model};
use linfa::prelude::*;
use linfa_logistic::MultiLogisticRegression;
use ndarray::{Array1, Array2};

const DIMS: usize = 1 << 13;
const ALPHA: f64 = 0.002;
const ITERATIONS: u64 = 400;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut dims = DIMS;
    let mut alpha = ALPHA;
    let mut write = true;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--dims" => dims = args.next().ok_or("--dims needs a value")?.parse()?,
            "--alpha" => alpha = args.next().ok_or("--alpha needs a value")?.parse()?,
            "--check" => write = false,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let data = root.join("data/handoff");
    let train_text = std::fs::read_to_string(data.join("train.tsv"))?;
    let heldout_text = std::fs::read_to_string(data.join("heldout.tsv"))?;
    let train = read_corpus(&train_text)?;
    let heldout = read_corpus(&heldout_text)?;

    let mut x = Array2::<f64>::zeros((train.len(), dims));
    for (row, (_, text)) in train.iter().enumerate() {
        for (bucket, value) in features(text, dims) {
            x[[row, bucket]] = f64::from(value);
        }
    }
    let y: Array1<usize> = train
        .iter()
        .map(|(intent, _)| Intent::ALL.iter().position(|i| i == intent).unwrap_or(0))
        .collect();
    let fitted = MultiLogisticRegression::default()
        .alpha(alpha)
        .max_iterations(ITERATIONS)
        .fit(&Dataset::new(x, y))?;

    let classes: Vec<Intent> = fitted.classes().iter().map(|&c| Intent::ALL[c]).collect();
    let params = fitted.params();
    let weights: Vec<f32> = (0..dims)
        .flat_map(|row| (0..classes.len()).map(move |col| (row, col)))
        .map(|(row, col)| params[[row, col]] as f32)
        .collect();
    let bias: Vec<f32> = fitted.intercept().iter().map(|&b| b as f32).collect();
    let model = Model::new(dims, classes, bias, weights, corpus_hash(&train_text))?;

    let on_train = evaluate(&model, &train);
    let on_heldout = evaluate(&model, &heldout);
    println!(
        "train: {} messages, intent accuracy {:.3}; needs a person: precision {:.3}, recall {:.3}",
        train.len(),
        on_train.accuracy,
        on_train.precision,
        on_train.recall
    );
    println!(
        "held out: {} messages, intent accuracy {:.3}; needs a person: precision {:.3}, recall {:.3}",
        heldout.len(),
        on_heldout.accuracy,
        on_heldout.precision,
        on_heldout.recall
    );
    for (expected, got, text) in &on_heldout.mistakes {
        println!("  {:<11} as {:<11} {text}", expected.label(), got.label());
    }
    if write {
        let out = root.join("src/handoff/handoff.model");
        std::fs::write(&out, model.to_bytes())?;
        println!("wrote {}", out.display());
    }
    Ok(())
}
