//! `trainer explain`: token attributions for one text, as JSON or as a table.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use astrid::LoadedModel;
use astrid::compare::merge_wordpieces;
use astrid::explain::{Attribution, Baseline, ExplainOptions, MAX_N_STEPS, Method};
use astrid::schema::ExplanationRecord;
use clap::Args;
use serde::Serialize;

use crate::device::{self, Backend};
use crate::hub::{self, HubAccess, ModelRef};

/// The Integrated Gradients options shared by `explain` and `run`.
#[derive(Args, Debug, Clone)]
pub struct IgArgs {
    /// Interpolation steps of Integrated Gradients.
    #[arg(long, default_value_t = 50)]
    pub n_steps: usize,
    /// Integration rule: gausslegendre, riemann_left, riemann_right, riemann_middle,
    /// riemann_trapezoid (Captum's, fixed --n-steps), or adaptive (Gauss-Kronrod panels refined
    /// until --tolerance is met, at most --max-steps gradients).
    #[arg(long, default_value = "gausslegendre")]
    pub method: Method,
    /// Adaptive IG: the largest |convergence delta| and error estimate accepted.
    #[arg(long, default_value_t = astrid::explain::DEFAULT_TOLERANCE)]
    pub tolerance: f64,
    /// Adaptive IG: the most gradient evaluations per text (15 to 10,000).
    #[arg(long, default_value_t = astrid::explain::DEFAULT_MAX_STEPS)]
    pub max_steps: usize,
    /// Where the path starts: zero, pad, mask or uniform (the mean word embedding); [CLS]/[SEP]
    /// are kept for all but zero.
    #[arg(long, default_value = "zero")]
    pub baseline: Baseline,
    /// Interpolation points per forward/backward pass (default: all at once).
    #[arg(long)]
    pub internal_batch_size: Option<usize>,
}

impl IgArgs {
    /// What is wrong with these options, one line each (empty when they can be used).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(1..=MAX_N_STEPS).contains(&self.n_steps) {
            problems.push(format!(
                "--n-steps {}: use 1 to {MAX_N_STEPS} (50 is Captum's default)",
                self.n_steps
            ));
        } else if self.method != Method::GaussLegendre && self.n_steps < 2 {
            problems.push(format!("--n-steps {}: {} needs at least 2", self.n_steps, self.method));
        }
        if self.method == Method::Adaptive {
            if !(self.tolerance.is_finite() && self.tolerance > 0.0) {
                problems.push(format!(
                    "--tolerance {}: a positive number (1e-4 is the default)",
                    self.tolerance
                ));
            }
            if !(astrid::explain::adaptive::PANEL_POINTS..=MAX_N_STEPS).contains(&self.max_steps) {
                problems.push(format!(
                    "--max-steps {}: use {} (one Gauss-Kronrod panel) to {MAX_N_STEPS}",
                    self.max_steps,
                    astrid::explain::adaptive::PANEL_POINTS
                ));
            }
        }
        if self.internal_batch_size == Some(0) {
            problems.push("--internal-batch-size 0: use at least 1 point per pass".to_string());
        }
        problems
    }

    /// The options for the device IG runs on (`workers` from [`crate::device::Selected`]).
    pub fn options(&self, attribution: Attribution, target: Option<usize>, workers: usize) -> ExplainOptions {
        ExplainOptions {
            attribution,
            n_steps: self.n_steps,
            method: self.method,
            baseline: self.baseline,
            internal_batch_size: self.internal_batch_size,
            target,
            workers,
            tolerance: self.tolerance,
            max_steps: self.max_steps,
        }
    }
}

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// An Astrid model directory, a Hugging Face one (config.json, model.safetensors,
    /// tokenizer.json), or a Hub id fetched into the Hugging Face cache: hf:ORG/NAME[@REVISION].
    #[arg(long, value_name = "DIR|hf:ID[@REV]")]
    pub model: String,
    /// Use the Hugging Face cache only, never the network (as HF_HUB_OFFLINE=1).
    #[arg(long)]
    pub offline: bool,
    /// The text to classify and explain.
    #[arg(long, required_unless_present = "text_file", conflicts_with = "text_file")]
    pub text: Option<String>,
    /// Read the text from a file instead (`-` reads standard input): for long texts.
    #[arg(long, value_name = "PATH")]
    pub text_file: Option<PathBuf>,
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
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    pub backend: Backend,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The most text `explain` reads: far beyond any model's input (texts are cut to
/// --max-length tokens), and small enough to hold in memory.
const MAX_TEXT_BYTES: usize = 16 << 20;

/// The text from `--text`, or from `--text-file` (`-` = standard input).
fn read_text(args: &ExplainArgs) -> anyhow::Result<String> {
    use std::io::Read;
    let Some(path) = &args.text_file else {
        return Ok(args.text.clone().unwrap_or_default());
    };
    let mut bytes = Vec::new();
    let shown = if path.as_os_str() == "-" {
        std::io::stdin()
            .lock()
            .take(MAX_TEXT_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .context("cannot read the text from standard input")?;
        "standard input".to_string()
    } else {
        if path.is_dir() {
            anyhow::bail!("--text-file {}: is a directory; give a text file", path.display());
        }
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_TEXT_BYTES as u64 + 1).read_to_end(&mut bytes))
            .with_context(|| format!("--text-file {}: cannot read", path.display()))?;
        path.display().to_string()
    };
    if bytes.len() > MAX_TEXT_BYTES {
        anyhow::bail!(
            "{shown}: longer than {} MiB; give the part to explain (the model reads at most --max-length tokens)",
            MAX_TEXT_BYTES >> 20
        );
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    String::from_utf8(bytes.to_vec()).map_err(|e| {
        anyhow::anyhow!(
            "{shown}: not UTF-8 text (byte {}); re-save it as UTF-8",
            e.utf8_error().valid_up_to() + 1
        )
    })
}

/// `trainer explain --json`: the explanation record, plus where and how fast it ran and the
/// WordPiece pieces merged into words.
#[derive(Serialize)]
struct ExplainOutput<'a> {
    #[serde(flatten)]
    record: ExplanationRecord,
    backend: &'a str,
    words: Vec<WordOut<'a>>,
    seconds: f64,
}

#[derive(Serialize)]
struct WordOut<'a> {
    text: &'a str,
    attribution: f32,
    tokens: &'a [usize],
}

pub fn run(args: ExplainArgs) -> anyhow::Result<()> {
    if let Some(problem) = args.ig.problems().first() {
        anyhow::bail!("{problem}");
    }
    let text = read_text(&args)?;
    if text.trim().is_empty() {
        anyhow::bail!("the text is empty; give a text to classify and explain");
    }
    let reference = ModelRef::parse(&args.model)?;
    let checkpoint = hub::resolve(&reference, &HubAccess::from_env(args.offline, false))?;
    let selected = device::select(args.backend)?;
    let loaded = LoadedModel::from_dir(&checkpoint.dir, args.max_length, &selected.device)
        .with_context(|| format!("cannot load the model in {}", checkpoint.source))?;
    let options = args.ig.options(args.attribution, args.target, selected.workers);
    let started = Instant::now();
    let result = pollster::block_on(loaded.explain_text(&text, &options))
        .with_context(|| format!("explaining with {}", checkpoint.source))?;
    let seconds = started.elapsed().as_secs_f64();
    let (tok, ex) = (&result.tokenized, &result.explanation);
    let words = merge_wordpieces(&tok.tokens, &ex.attributions, &tok.special);
    if args.json {
        let out = ExplainOutput {
            record: ExplanationRecord::new(&loaded.meta.name, &loaded.meta.labels, &result, &options),
            backend: &selected.description,
            words: words
                .iter()
                .map(|w| WordOut {
                    text: &w.text,
                    attribution: w.attribution,
                    tokens: &w.tokens,
                })
                .collect(),
            seconds,
        };
        println!("{}", serde_json::to_string(&out)?);
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
