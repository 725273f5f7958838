//! `trainer explain`: token attributions for one text, as JSON or as a table.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use astrid::LoadedModel;
use astrid::compare::merge_wordpieces;
use astrid::explain::Attribution;

use astrid::schema::ExplanationRecord;
use serde::{Deserialize, Serialize};

use crate::models::device::{self, Backend};
use crate::models::hub::{self, HubAccess, ModelRef};
use crate::settings::{IgConfig, Problems};

#[derive(Debug, Clone, Deserialize)]
pub struct ExplainRequest {
    /// An Astrid model directory, a Hugging Face one (config.json, model.safetensors,
    /// tokenizer.json), or a Hub id fetched into the Hugging Face cache: `hf:ORG/NAME[@REVISION]`.
    pub model: String,
    /// Use the Hugging Face cache only, never the network (as HF_HUB_OFFLINE=1).
    pub offline: bool,
    /// The text to classify and explain.
    pub text: Option<String>,
    /// Read the text from a file instead (`-` reads standard input): for long texts.
    pub text_file: Option<PathBuf>,
    /// Class to explain (default: the predicted class).
    pub target: Option<usize>,
    pub ig: IgConfig,
    /// ig, saliency or grad-input.
    pub attribution: Attribution,
    /// Longest token sequence; longer texts are cut (keeping `[CLS]` … `[SEP]`).
    pub max_length: Option<usize>,
    /// cpu or wgpu.
    pub backend: Backend,
    /// Print one JSON object instead of a table.
    pub json: bool,
}

/// The most text `explain` reads: far beyond any model's input (texts are cut to
/// --max-length tokens), and small enough to hold in memory.
const MAX_TEXT_BYTES: usize = 16 << 20;

/// The text from `--text`, or from `--text-file` (`-` = standard input).
fn read_text(args: &ExplainRequest) -> anyhow::Result<String> {
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

pub fn run(args: ExplainRequest) -> anyhow::Result<()> {
    let mut problems = Problems::new();
    args.ig.problems(&mut problems);
    problems.finish()?;
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
