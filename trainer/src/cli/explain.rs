//! `trainer explain`'s flags.

use std::path::PathBuf;

use astrid::explain::Attribution;
use clap::Args;
use serde::Serialize;
use trainer::settings::Backend;

use super::run::IgArgs;

#[derive(Args, Debug, Serialize)]
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
    #[arg(long, default_value = "cpu", value_parser = crate::cli::choice::<Backend>(&["cpu", "wgpu"], &["flex", "gpu"]))]
    pub backend: Backend,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}
