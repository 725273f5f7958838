//! `trainer`: Astrid's command line. Trains a teacher and its students and compares their
//! reasons (`run`), explains single texts (`explain`), exports the web bundle (`export`),
//! describes data (`data stats`) and measures speed (`bench`). Parsing lives here and in
//! `cli/`; the work is the `trainer` library's.

mod cli;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use trainer::commands;
use trainer::settings::Backend;

use cli::{Cli, Command, DataCommand, typed};

/// glibc returns large blocks to the system as soon as they are freed, and maps them again
/// on the next allocation: with burn's per-op tensors that costs page faults on every
/// explanation. Keeping freed memory in the process avoids it: large blocks come from the
/// heap, and the heap is never trimmed (an explanation's end frees more than any trim
/// threshold at the heap's top, and the next one would fault it back in). One arena for all
/// threads: with one per thread (IG's workers, training's replicas, rayon's pool) each keeps
/// its own freed blocks and the peak memory grows, no faster (docs/performance.md).
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
fn pin_default_device(backend: Backend) {
    let name = match backend {
        Backend::Cpu => "flex",
        Backend::Wgpu => "wgpu",
    };
    // SAFETY: called at the start of main, before any other thread exists.
    unsafe { std::env::set_var("BURN_DEVICE", name) };
}

/// The command's work, from its parsed flags (`matches` say which were given).
/// Burn's default device is pinned first, from the backend the command runs on.
fn dispatch(command: Command, matches: &clap::ArgMatches) -> anyhow::Result<()> {
    match command {
        Command::Run(args) => {
            let run_matches = matches.subcommand_matches("run").unwrap_or(matches);
            let config = cli::config::run_config(&args, run_matches)?;
            pin_default_device(config.backend);
            commands::run::run(config)
        }
        Command::Explain(args) => {
            pin_default_device(args.backend);
            commands::explain::run(typed(&args)?)
        }
        Command::Bench(args) => {
            pin_default_device(args.backend);
            commands::bench::run(typed(&args)?)
        }
        Command::Export(args) => {
            pin_default_device(Backend::Cpu);
            commands::export::run(typed(&args)?)
        }
        Command::Data {
            command: DataCommand::Stats(args),
        } => {
            pin_default_device(Backend::Cpu);
            commands::stats::stats(typed(&args)?)
        }
    }
}

fn main() -> ExitCode {
    keep_freed_memory();
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match dispatch(cli.command, &matches) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
