//! `trainer bench`'s flags.

use std::path::PathBuf;

use astrid::explain::Method;
use clap::Args;
use serde::Serialize;
use trainer::settings::Backend;

#[derive(Args, Debug, Serialize)]
pub struct BenchArgs {
    /// Presets to measure (default: all six).
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    pub models: Vec<String>,
    #[arg(long, default_value_t = 50)]
    pub n_steps: usize,
    #[arg(long, default_value = "gausslegendre")]
    pub method: Method,
    /// Interpolation points per pass (default 25, as the reference's fastest setting).
    #[arg(long, default_value_t = 25)]
    pub internal_batch_size: usize,
    #[arg(long, default_value_t = 128)]
    pub seq_len: usize,
    /// Timed IG explanations and forward batches per model (after one warm-up each); the
    /// figures are medians.
    #[arg(long, default_value_t = 2)]
    pub reps: usize,
    /// Batch of the forward-throughput measurement.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Batch of the training-throughput measurement (AdamW steps).
    #[arg(long, default_value_t = 16)]
    pub train_batch: usize,
    /// Timed training steps per model (after one warm-up; the figure is their median); 0 skips
    /// training.
    #[arg(long, default_value_t = 2)]
    pub train_steps: usize,
    #[arg(long, default_value = "cpu", value_parser = crate::cli::choice::<Backend>(&["cpu", "wgpu"], &["flex", "gpu"]))]
    pub backend: Backend,
    /// Model replicas each training batch is split between, one thread each (as `trainer run
    /// --workers`; default as there: IG's thread count on the CPU, 1 on a GPU).
    #[arg(long)]
    pub workers: Option<usize>,
    /// The PyTorch + Captum reference's bench.py (without a value: the project's own,
    /// tests/reference/bench.py): each preset is then measured by Astrid and by the reference
    /// back to back, in alternating order, for `--rounds` rounds, and the table gives the
    /// medians of the per-round ratios (a noisy machine drifts between runs: whole suites
    /// run one after the other compare two machines). The reference's settings are fixed:
    /// sequence length 128, forward batch 32, training batch 16, Gauss–Legendre.
    #[arg(long, value_name = "BENCH_PY", num_args = 0..=1, default_missing_value = "tests/reference/bench.py")]
    pub against: Option<PathBuf>,
    /// The Python that runs `--against` (the reference's virtualenv, e.g.
    /// ~/.cache/astrid-reference-venv/bin/python).
    #[arg(long, default_value = "python3", requires = "against")]
    pub python: PathBuf,
    /// Rounds of paired measurements with `--against`.
    #[arg(long, default_value_t = 3, requires = "against")]
    pub rounds: usize,
}

#[cfg(test)]
mod tests {
    use trainer::commands::bench::{BenchRequest, reference};

    use super::*;

    /// `--against` refuses, before measuring anything, settings the reference does not
    /// measure with, and a script that is not there.
    #[test]
    fn the_reference_comparison_refuses_settings_it_cannot_match() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            bench: BenchArgs,
        }
        let typed = |args: &BenchArgs| -> BenchRequest { crate::cli::typed(args).expect("typed options") };
        let script = std::env::current_exe().expect("this test's binary: a file that exists");
        let script = script.to_str().expect("a UTF-8 path");
        let refused = |extra: &[&str]| {
            let args = typed(
                &Cli::try_parse_from([&["bench", "--against", script], extra].concat())
                    .expect("arguments")
                    .bench,
            );
            let path = args.against.clone().expect("--against");
            reference(&args, &path).err().map(|e| format!("{e:#}"))
        };
        assert_eq!(refused(&[]), None);
        for (extra, named) in [
            (&["--seq-len", "64"][..], "--seq-len 64"),
            (&["--batch", "8"], "--batch 8"),
            (&["--train-batch", "4"], "--train-batch 4"),
            (&["--method", "riemann_left"], "--method"),
            (&["--backend", "wgpu"], "--backend wgpu"),
            (&["--rounds", "0"], "--rounds 0"),
            (&["--models", "minilm,tiny_test"], "--models tiny_test"),
        ] {
            let error = refused(extra).expect("refused");
            assert!(error.contains(named), "{extra:?}: {error}");
        }
        let absent = typed(
            &Cli::try_parse_from(["bench", "--against", "/nonexistent/bench.py"])
                .expect("arguments")
                .bench,
        );
        let error = reference(&absent, absent.against.as_ref().expect("--against")).expect_err("absent");
        assert!(format!("{error:#}").contains("no such file"), "{error:#}");
        assert!(
            Cli::try_parse_from(["bench", "--rounds", "2"]).is_err(),
            "--rounds needs --against"
        );
    }
}
