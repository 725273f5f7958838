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

/// A parser for a value from a fixed list of names, so `--help` and a wrong value list them
/// (`hidden` names are accepted but not listed: aliases).
pub fn choice<T>(
    names: &'static [&'static str],
    hidden: &'static [&'static str],
) -> impl clap::builder::TypedValueParser<Value = T>
where
    T: std::str::FromStr + Clone + Send + Sync + 'static,
    T::Err: std::fmt::Display,
{
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    let values = names
        .iter()
        .map(|n| PossibleValue::new(*n))
        .chain(hidden.iter().map(|n| PossibleValue::new(*n).hide(true)));
    PossibleValuesParser::new(values).try_map(|name: String| name.parse::<T>().map_err(|e| e.to_string()))
}

/// The library's options from clap's: both sides name their fields alike, so the serialised
/// flags are the typed options. They travel as TOML, which holds every number a flag can give
/// (NaN included, for the checks to name).
pub fn typed<A: Serialize, B: DeserializeOwned>(flags: &A) -> anyhow::Result<B> {
    Ok(toml::Table::try_from(flags)?.try_into()?)
}
