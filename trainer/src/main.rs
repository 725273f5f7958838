//! `trainer`: Astrid's command line. Explains a model's predictions with Integrated
//! Gradients (`explain`) and measures how fast that runs (`bench`).

mod bench;
mod device;
mod explain_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "trainer",
    version,
    about = "Astrid: does the small model decide for the same reasons as the big one?"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Explain one text with a trained model: token attributions for its prediction.
    Explain(explain_cmd::ExplainArgs),
    /// Measure IG and forward speed of the model presets on random weights.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Explain(args) => explain_cmd::run(args),
        Command::Bench(args) => bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
