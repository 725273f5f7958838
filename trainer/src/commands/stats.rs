//! `trainer data stats`: what is in a data file.

use std::collections::BTreeMap;

use astrid::tokenize::TextTokenizer;

use crate::pipeline::prepare::{load_data, prepare};
use crate::settings::DataConfig;

/// `trainer data stats`: what is in a data file.
pub fn stats(args: DataConfig) -> anyhow::Result<()> {
    args.validate()?;
    let prepared = prepare(load_data(&args, &BTreeMap::new())?, &args, None)?;
    let data = &prepared.data;
    println!("source       {}", data.source);
    println!(
        "rows         {} labelled{}",
        data.len(),
        if data.dropped_blank_labels > 0 {
            format!(" ({} with blank labels dropped)", data.dropped_blank_labels)
        } else {
            String::new()
        }
    );
    for (name, count) in data.label_names.iter().zip(data.class_counts()) {
        println!(
            "class        {name:<24} {count:>6}  {:>5.1}%",
            100.0 * count as f64 / data.len() as f64
        );
    }
    let untruncated = TextTokenizer::from_bytes(prepared.tokenizer_json.as_bytes(), "tokenizer.json", 1 << 20)?;
    let mut lengths: Vec<usize> = data
        .texts
        .iter()
        .map(|t| untruncated.encode(t).map(|e| e.ids.len()))
        .collect::<Result<_, _>>()?;
    lengths.sort_unstable();
    let pct = |p: f64| lengths[((lengths.len() - 1) as f64 * p).round() as usize];
    println!(
        "tokens       mean {:.0}, p50 {}, p90 {}, p95 {}, max {} (with [CLS]/[SEP]; {} of {} texts longer than --max-length {})",
        lengths.iter().sum::<usize>() as f64 / lengths.len() as f64,
        pct(0.5),
        pct(0.9),
        pct(0.95),
        lengths[lengths.len() - 1],
        lengths.iter().filter(|&&l| l > args.max_length).count(),
        lengths.len(),
        args.max_length
    );
    println!(
        "split        train {}, validation {}, test {} (seed {})",
        prepared.split.train.len(),
        prepared.split.validation.len(),
        prepared.split.test.len(),
        prepared.split.seed
    );
    Ok(())
}
