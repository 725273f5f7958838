//! `trainer`: Astrid's command line. Trains a teacher and its students and compares their
//! reasons (`run`), explains single texts (`explain`), exports the web bundle (`export`),
//! describes data (`data stats`) and measures speed (`bench`).

mod align;
mod baselines;
mod bench;
mod bench_reference;
mod calibration;
mod checkpoints;
mod clock;
mod comparison;
mod data;
mod decision;
mod device;
mod evaluate;
mod explain_cmd;
mod explanations;
mod export;
mod faithfulness;
mod fingerprint;
mod hub;
mod metrics;
mod optimizer;
mod prepare;
mod report;
mod run;
mod run_args;
mod rundir;
mod stats;
mod suite;
mod train;
mod train_suite;
mod vocab;

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
    /// Train the teacher and five students, explain, compare, rank, report.
    Run(Box<run_args::RunArgs>),
    /// Explain one text with a trained model: token attributions for its prediction.
    Explain(explain_cmd::ExplainArgs),
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
enum DataCommand {
    /// Rows, label balance, token-length percentiles, split sizes.
    Stats(run_args::DataArgs),
}

/// glibc returns large blocks to the system as soon as they are freed, and maps them again
/// on the next allocation: with burn's per-op tensors that costs hundreds of thousands of
/// page faults per explanation (~15% of IG time, measured with `perf stat`). Keeping freed
/// memory in the process avoids it: large blocks come from the heap, and the heap is never
/// trimmed (with a 1 GB trim threshold, the end of each minilm explanation freed more than
/// that at the heap's top, glibc gave it back, and the next explanation faulted it in again:
/// 350 thousand page faults each, 3.3 s of system time in five explanations against 1.0 s
/// untrimmed, at the same peak RSS). One arena for all threads: with one per thread (IG's
/// workers, training's replicas, rayon's pool) each kept its own freed blocks, and the
/// teacher's `trainer bench` peaked at 7.1 GB instead of 4.3 GB, no faster.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator thresholds; it is called before any threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, -1);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Burn puts some state (the optimizer's, when a checkpoint is loaded) on its *default*
/// device, which is the GPU when wgpu is compiled in: on a CPU run that started a Vulkan
/// driver (stray "XDG_RUNTIME_DIR is invalid" lines) and panicked on a bad `BURN_DEVICE`.
/// The default follows `--backend` instead.
fn pin_default_device(backend: device::Backend) {
    let name = match backend {
        device::Backend::Cpu => "flex",
        device::Backend::Wgpu => "wgpu",
    };
    // SAFETY: called at the start of main, before any other thread exists.
    unsafe { std::env::set_var("BURN_DEVICE", name) };
}

fn main() -> ExitCode {
    keep_freed_memory();
    let cli = Cli::parse();
    pin_default_device(match &cli.command {
        Command::Run(args) => args.backend,
        Command::Explain(args) => args.backend,
        Command::Bench(args) => args.backend,
        Command::Export(_) | Command::Data { .. } => device::Backend::Cpu,
    });
    let result = match cli.command {
        Command::Run(args) => run::run(*args),
        Command::Explain(args) => explain_cmd::run(args),
        Command::Export(args) => export::run(args),
        Command::Data {
            command: DataCommand::Stats(args),
        } => stats::stats(args),
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
