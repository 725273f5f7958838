//! The command line: clap's view of every command (flags, help texts) and how it becomes the
//! library's typed settings. Nothing below the binary sees these types.

pub mod bench;
pub mod config;
pub mod explain;
pub mod export;
pub mod run;

use clap::{Parser, Subcommand};
use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Parser)]
#[command(
    name = "trainer",
    version,
    about = "Astrid: does the small model decide for the same reasons as the big one?"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Train the teacher and five students, explain, compare, rank, report.
    Run(Box<run::RunArgs>),
    /// Explain one text with a trained model: token attributions for its prediction.
    Explain(explain::ExplainArgs),
    /// Write the web app's model bundle from a run.
    Export(export::ExportArgs),
    /// Look at a data file.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
    /// Measure IG and forward speed of the model presets on random weights.
    Bench(bench::BenchArgs),
}

#[derive(Subcommand)]
pub enum DataCommand {
    /// Rows, label balance, token-length percentiles, split sizes.
    Stats(run::DataArgs),
}

/// The library's options from clap's: both sides name their fields alike, so the serialised
/// flags are the typed options.
pub fn typed<A: Serialize, B: DeserializeOwned>(flags: &A) -> anyhow::Result<B> {
    Ok(serde_json::from_value(serde_json::to_value(flags)?)?)
}
