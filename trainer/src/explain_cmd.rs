//! `trainer explain`: token attributions for one text, as JSON or as a table.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use astrid::LoadedModel;
use astrid::compare::merge_wordpieces;
use astrid::explain::{Attribution, Baseline, ExplainOptions, Method};
use clap::Args;
use serde_json::json;

use crate::device::{self, Backend};

/// The Integrated Gradients options shared by `explain` and `run`.
#[derive(Args, Debug, Clone)]
pub struct IgArgs {
    /// Interpolation steps of Integrated Gradients.
    #[arg(long, default_value_t = 50)]
    pub n_steps: usize,
    /// Integration rule: gausslegendre, riemann_left, riemann_right, riemann_middle, riemann_trapezoid.
    #[arg(long, default_value = "gausslegendre")]
    pub method: Method,
    /// Where the path starts: zero, pad or mask ([CLS]/[SEP] are kept for pad and mask).
    #[arg(long, default_value = "zero")]
    pub baseline: Baseline,
    /// Interpolation points per forward/backward pass (default: all at once).
    #[arg(long)]
    pub internal_batch_size: Option<usize>,
}

impl IgArgs {
    pub fn options(&self, attribution: Attribution, target: Option<usize>) -> ExplainOptions {
        ExplainOptions {
            attribution,
            n_steps: self.n_steps,
            method: self.method,
            baseline: self.baseline,
            internal_batch_size: self.internal_batch_size,
            target,
        }
    }
}

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// An Astrid model directory or a Hugging Face one (config.json, model.safetensors, tokenizer.json).
    #[arg(long)]
    pub model: PathBuf,
    /// The text to classify and explain.
    #[arg(long)]
    pub text: String,
    /// Class to explain (default: the predicted class).
    #[arg(long)]
    pub target: Option<usize>,
    #[command(flatten)]
    pub ig: IgArgs,
    /// ig, saliency or grad-input.
    #[arg(long, default_value = "ig")]
    pub attribution: Attribution,
    /// Longest token sequence; longer texts are cut (keeping [CLS] … [SEP]).
    #[arg(long)]
    pub max_length: Option<usize>,
    /// cpu or wgpu.
    #[arg(long, default_value = "cpu")]
    pub backend: Backend,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ExplainArgs) -> anyhow::Result<()> {
    let selected = device::select(args.backend)?;
    let loaded = LoadedModel::from_dir(&args.model, args.max_length, &selected.device)
        .with_context(|| format!("cannot load the model in {}", args.model.display()))?;
    let options = args.ig.options(args.attribution, args.target);
    let started = Instant::now();
    let result = pollster::block_on(loaded.explain_text(&args.text, &options))?;
    let seconds = started.elapsed().as_secs_f64();
    let (tok, ex) = (&result.tokenized, &result.explanation);
    let words = merge_wordpieces(&tok.tokens, &ex.attributions, &tok.special);
    if args.json {
        let out = json!({
            "model": loaded.meta.name,
            "backend": selected.description,
            "tokens": tok.tokens,
            "input_ids": tok.ids,
            "special_tokens": tok.special,
            "truncated": tok.truncated,
            "attributions": ex.attributions,
            "target": ex.target,
            "label": loaded.meta.labels.get(ex.target),
            "probs": ex.probs,
            "convergence_delta": ex.convergence_delta,
            "f_input": ex.f_input,
            "f_baseline": ex.f_baseline,
            "attribution": args.attribution.name(),
            "n_steps": args.ig.n_steps,
            "method": args.ig.method.name(),
            "baseline": args.ig.baseline.name(),
            "internal_batch_size": args.ig.internal_batch_size,
            "words": words.iter().map(|w| json!({"text": w.text, "attribution": w.attribution, "tokens": w.tokens})).collect::<Vec<_>>(),
            "seconds": seconds,
        });
        println!("{out}");
        return Ok(());
    }
    let label = loaded
        .meta
        .labels
        .get(ex.target)
        .cloned()
        .unwrap_or_else(|| ex.target.to_string());
    println!("model     {} on {}", loaded.meta.name, selected.description);
    println!(
        "predicts  {label} (class {}), p = {:.4}{}",
        ex.target,
        ex.probs[ex.target],
        if tok.truncated {
            "  [text truncated to --max-length]"
        } else {
            ""
        }
    );
    if let Some(delta) = ex.convergence_delta {
        println!(
            "method    {} ({}, {} steps, {} baseline), convergence delta {delta:+.2e}",
            args.attribution, args.ig.method, args.ig.n_steps, args.ig.baseline
        );
    } else {
        println!("method    {}", args.attribution);
    }
    println!("time      {seconds:.3} s\n");
    let largest = ex
        .attributions
        .iter()
        .fold(0f32, |m, a| m.max(a.abs()))
        .max(f32::MIN_POSITIVE);
    println!("{:>4}  {:<20} {:>11}", "#", "token", "attribution");
    for (i, (token, score)) in tok.tokens.iter().zip(&ex.attributions).enumerate() {
        let bar_len = ((score.abs() / largest) * 20.0).round() as usize;
        let bar = if *score >= 0.0 {
            "+".repeat(bar_len)
        } else {
            "-".repeat(bar_len)
        };
        println!("{i:>4}  {token:<20} {score:>+11.5}  {bar}");
    }
    Ok(())
}
