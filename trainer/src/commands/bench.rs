//! `trainer bench`: how fast Integrated Gradients and inference run, per preset, on random
//! weights at sequence length 128, with the settings of the PyTorch + Captum reference
//! (the project's `tests/reference/bench.py`), so the two can be run side by side.

mod flops;
mod inputs;

use std::path::PathBuf;
use std::time::Instant;

use astrid::explain::{ExplainInput, ExplainOptions, Method, explain};
use astrid::{ModelConfig, config::PRESET_NAMES};
use burn::module::Module;
use serde::Deserialize;

use burn::nn::loss::CrossEntropyLossConfig;

pub use self::flops::{cls_only_skipped, forward_flops, ig_flops};
use self::inputs::{random_ids, special_ids};
use crate::commands::bench_reference::{Figures, Paired, Reference};
use crate::models::device::{self, Backend, Selected};
use crate::training::batches::{Encoded, batch_logits, inference_workers};
use crate::training::losses::Guidance;
use crate::training::steps::{Batch, StepPlan, train_batch};
use crate::training::train::{TrainOptions, adamw};

#[derive(Debug, Clone, Deserialize)]
pub struct BenchRequest {
    /// Presets to measure (default: all six).
    pub models: Vec<String>,
    pub n_steps: usize,
    pub method: Method,
    /// Interpolation points per pass (default 25, a setting the reference measures too).
    pub internal_batch_size: usize,
    pub seq_len: usize,
    /// Timed IG explanations and forward batches per model (after one warm-up each); the
    /// figures are medians.
    pub reps: usize,
    /// Batch of the forward-throughput measurement.
    pub batch: usize,
    /// Batch of the training-throughput measurement (AdamW steps).
    pub train_batch: usize,
    /// Timed training steps per model (after one warm-up; the figure is their median); 0 skips
    /// training.
    pub train_steps: usize,
    pub backend: Backend,
    /// Model replicas each training batch is split between, one thread each (as `trainer run
    /// --workers`; default as there: IG's thread count on the CPU, 1 on a GPU).
    pub workers: Option<usize>,
    /// The PyTorch + Captum reference's bench.py (the project's `tests/reference/bench.py`):
    /// each preset is then measured by Astrid and by the reference back to back, in alternating
    /// order, for `--rounds` rounds, and the table gives the medians of the per-round ratios (a
    /// shared machine's speed drifts within minutes, so whole suites run one after the other
    /// would compare two machines). The reference's settings are fixed: sequence length 128,
    /// forward batch 32, training batch 16, Gauss–Legendre.
    pub against: Option<PathBuf>,
    /// The Python that runs `--against` (the reference's virtualenv, e.g.
    /// ~/.cache/astrid-reference-venv/bin/python).
    pub python: PathBuf,
    /// Rounds of paired measurements with `--against`.
    pub rounds: usize,
}

/// Measures every preset asked for, alone or paired with the reference, and prints the table.
pub fn run(args: BenchRequest) -> anyhow::Result<()> {
    let names: Vec<String> = if args.models.is_empty() {
        PRESET_NAMES.iter().map(|s| s.to_string()).collect()
    } else {
        args.models.clone()
    };
    let configs = names
        .iter()
        .map(|n| ModelConfig::preset(n))
        .collect::<Result<Vec<_>, _>>()?;
    let reference = args
        .against
        .as_ref()
        .map(|script| reference(&args, script))
        .transpose()?;
    let selected = device::select(args.backend)?;
    let bench = Bench {
        args: &args,
        training_workers: args.workers.unwrap_or(selected.workers),
        selected: &selected,
    };
    bench.print_settings();
    let presets: Vec<(&String, &ModelConfig)> = names.iter().zip(&configs).collect();
    match reference {
        None => bench.measure_alone(&presets),
        Some(reference) => {
            let paired = bench.measure_paired(&presets, &reference)?;
            println!();
            print_paired(&names, &paired);
            Ok(())
        }
    }
}

/// What every preset's measurement shares: the settings, the device, and how many model
/// replicas a training batch is split between.
struct Bench<'a> {
    args: &'a BenchRequest,
    selected: &'a Selected,
    training_workers: usize,
}

impl Bench<'_> {
    /// The machine and the settings, so that the figures below say what they were measured on.
    fn print_settings(&self) {
        let args = self.args;
        println!("backend: {}", self.selected.description);
        println!("cpu: {}", cpu_description());
        println!(
            "IG: {} steps, {}, internal batch {}, sequence length {}; forward: batch {}; training: batch {} on {} model replicas\n",
            args.n_steps,
            args.method,
            args.internal_batch_size,
            args.seq_len,
            args.batch,
            args.train_batch,
            self.training_workers
        );
    }

    fn measure_preset(&self, config: &ModelConfig) -> anyhow::Result<Figures> {
        measure(config, self.args, self.selected, self.training_workers)
    }

    /// The plain table: each preset once, with the GFLOP/s its figures reach.
    fn measure_alone(&self, presets: &[(&String, &ModelConfig)]) -> anyhow::Result<()> {
        println!(
            "GFLOP/s count the reference's FLOPs (every position of every layer); the last layer here\n\
             computes [CLS] alone, which skips the share of a forward pass under 'skipped'.\n"
        );
        println!(
            "{:<14} {:>12} {:>10} {:>10} {:>13} {:>11} {:>11} {:>11} {:>8}",
            "model",
            "params",
            "IG s/expl",
            "IG GFLOP/s",
            "forward seq/s",
            "fwd GFLOP/s",
            "train seq/s",
            "trn GFLOP/s",
            "skipped"
        );
        for &(name, config) in presets {
            let figures = self.measure_preset(config)?;
            print_row(name, config, self.args, &figures);
        }
        Ok(())
    }

    /// Each preset measured by both sides back to back, round after round, printing each
    /// round's figures as they come.
    fn measure_paired(
        &self,
        presets: &[(&String, &ModelConfig)],
        reference: &Reference,
    ) -> anyhow::Result<Vec<Paired>> {
        let mut paired: Vec<Paired> = presets.iter().map(|_| Paired::default()).collect();
        for round in 0..self.args.rounds {
            for (&(name, config), paired) in presets.iter().zip(&mut paired) {
                // Alternating order, so that neither side always runs on a warmer or
                // cooler machine.
                let (astrid, theirs) = if round % 2 == 0 {
                    let astrid = self.measure_preset(config)?;
                    (astrid, reference.measure(name)?)
                } else {
                    let theirs = reference.measure(name)?;
                    (self.measure_preset(config)?, theirs)
                };
                println!(
                    "round {}: {name:<14} IG {:.3} / {:.3} s, forward {:.1} / {:.1} seq/s, training {:.2} / {:.2} seq/s (Astrid / PyTorch)",
                    round + 1,
                    astrid.ig_seconds,
                    theirs.ig_seconds,
                    astrid.forward_seqs,
                    theirs.forward_seqs,
                    astrid.train_seqs,
                    theirs.train_seqs
                );
                paired.rounds.push((astrid, theirs));
            }
        }
        Ok(paired)
    }
}

/// The reference run by `--against`, once every setting it cannot match has been refused:
/// before anything is measured.
pub fn reference(args: &BenchRequest, script: &std::path::Path) -> anyhow::Result<Reference> {
    let fixed = [
        ("--seq-len", args.seq_len, 128),
        ("--batch", args.batch, 32),
        ("--train-batch", args.train_batch, 16),
    ];
    for (option, value, theirs) in fixed {
        if value != theirs {
            anyhow::bail!(
                "{option} {value}: the reference measures with {theirs} only; leave {option} out with --against"
            );
        }
    }
    if args.method != Method::GaussLegendre {
        anyhow::bail!(
            "--method {}: the reference measures Gauss-Legendre only; leave --method out with --against",
            args.method
        );
    }
    if args.rounds == 0 {
        anyhow::bail!("--rounds 0: give at least one round");
    }
    if args.backend != Backend::Cpu {
        anyhow::bail!("--backend wgpu: the reference measures PyTorch on the CPU; compare with --backend cpu");
    }
    for name in args.models.iter() {
        if crate::commands::bench_reference::reference_name(name).is_none() {
            anyhow::bail!("--models {name}: the reference has no such model; it has the six presets");
        }
    }
    let reference = Reference {
        python: args.python.clone(),
        script: script.to_path_buf(),
        n_steps: args.n_steps,
        internal_batch_size: args.internal_batch_size,
        reps: args.reps,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        train: args.train_steps > 0,
    };
    reference.check()?;
    Ok(reference)
}

/// One preset measured: IG, inference and (unless `--train-steps 0`) training.
fn measure(
    config: &ModelConfig,
    args: &BenchRequest,
    selected: &Selected,
    training_workers: usize,
) -> anyhow::Result<Figures> {
    let model = config.init(&selected.device).valid();
    let device = &selected.device;
    let ids = random_ids(1, args.seq_len, config.vocab_size, 7);
    let special: Vec<bool> = (0..args.seq_len).map(|p| p == 0 || p == args.seq_len - 1).collect();
    let input = ExplainInput {
        ids: &ids,
        special: &special,
        pad_id: Some(0),
        mask_id: Some(special_ids(config.vocab_size).2),
    };
    let options = ExplainOptions {
        n_steps: args.n_steps,
        method: args.method,
        internal_batch_size: Some(args.internal_batch_size),
        workers: selected.workers,
        ..ExplainOptions::default()
    };
    pollster::block_on(explain(&model, &input, &options))?; // warm-up
    let ig_seconds = median_seconds(args.reps, || Ok(pollster::block_on(explain(&model, &input, &options))?))?;

    // Inference as `trainer run` does it (`predict_logits`): on the CPU the batch is split
    // between the workers' threads.
    let texts: Vec<Vec<u32>> = random_ids(args.batch, args.seq_len, config.vocab_size, 11)
        .chunks(args.seq_len)
        .map(|c| c.to_vec())
        .collect();
    let all: Vec<usize> = (0..texts.len()).collect();
    let workers = inference_workers(device);
    batch_logits(&model, &texts, &all, workers)?; // warm-up
    let forward_seconds = median_seconds(args.reps, || batch_logits(&model, &texts, &all, workers))?;
    let train_seqs = if args.train_steps > 0 {
        train_throughput(config, args, device, training_workers)?
    } else {
        f64::NAN
    };
    Ok(Figures {
        ig_seconds,
        forward_seqs: args.batch as f64 / forward_seconds,
        train_seqs,
    })
}

/// One preset's row of the plain table, with the achieved GFLOP/s.
fn print_row(name: &str, config: &ModelConfig, args: &BenchRequest, figures: &Figures) {
    let (linear, attention, head) = forward_flops(config, args.seq_len);
    let ig_gflops = ig_flops(config, args.seq_len, args.n_steps) / figures.ig_seconds / 1e9;
    let fwd_gflops = (linear + attention + head) * figures.forward_seqs / 1e9;
    // Forward + backward with weight gradients ≈ 3 × forward (the reference's count).
    let train_gflops = 3.0 * (linear + attention + head) * figures.train_seqs / 1e9;
    println!(
        "{:<14} {:>12} {:>10.3} {:>10.1} {:>13.1} {:>11.1} {:>11.2} {:>11.1} {:>7.1}%",
        name,
        config.num_params(),
        figures.ig_seconds,
        ig_gflops,
        figures.forward_seqs,
        fwd_gflops,
        figures.train_seqs,
        train_gflops,
        100.0 * cls_only_skipped(config, args.seq_len)
    );
}

/// The paired table: per preset and measure, the medians of Astrid's and the reference's
/// figures and the median of the per-round ratios, with each round's ratio.
fn print_paired(names: &[String], paired: &[Paired]) {
    println!("Medians over the rounds, Astrid / PyTorch; the ratio is the median of the rounds' ratios");
    println!("(IG: Astrid's time over Captum's, below 1 is faster; forward and training: Astrid's");
    println!("sequences/s over PyTorch's, above 1 is faster), each round's in brackets.\n");
    println!(
        "{:<14} {:<38} {:<38} {:<38}",
        "model", "IG s/explanation", "forward seq/s", "training seq/s"
    );
    for (name, paired) in names.iter().zip(paired) {
        let ratios = paired.ratios();
        let cell = |index: usize, decimals: usize| {
            let pick = |f: &Figures| [f.ig_seconds, f.forward_seqs, f.train_seqs][index];
            let ours = median(paired.rounds.iter().map(|(a, _)| pick(a)).collect());
            let theirs = median(paired.rounds.iter().map(|(_, r)| pick(r)).collect());
            let each: Vec<String> = ratios.iter().map(|r| format!("{:.2}", r[index])).collect();
            let ratio = median(ratios.iter().map(|r| r[index]).collect());
            format!(
                "{ours:.decimals$} / {theirs:.decimals$} {ratio:.2}x [{}]",
                each.join(" ")
            )
        };
        println!("{:<14} {:<38} {:<38} {:<38}", name, cell(0, 3), cell(1, 1), cell(2, 2));
    }
}

/// Training sequences per second: AdamW steps on random batches of full-length sequences.
fn train_throughput(
    config: &ModelConfig,
    args: &BenchRequest,
    device: &burn::tensor::Device,
    workers: usize,
) -> anyhow::Result<f64> {
    let options = TrainOptions {
        epochs: 1,
        batch_size: args.train_batch,
        learning_rate: 1e-4,
        weight_decay: 0.01,
        warmup_ratio: 0.0,
        clip_norm: 1.0,
        patience: 1,
        seed: 0,
        distill: None,
        class_weights: None,
        select_by: Default::default(),
        workers,
    };
    let autodiff = device.clone().autodiff();
    let mut model = config.init(device).to_device(&autodiff).train();
    let mut optimizer = adamw(&options);
    let loss_fn = CrossEntropyLossConfig::new().init(&autodiff);
    let data = Encoded {
        ids: random_ids(args.train_batch, args.seq_len, config.vocab_size, 3)
            .chunks(args.seq_len)
            .map(|c| c.to_vec())
            .collect(),
        labels: (0..args.train_batch).map(|i| i % config.num_labels).collect(),
        ..Encoded::default()
    };
    let batch: Vec<usize> = (0..args.train_batch).collect();
    let mut times = Vec::new();
    for step in 0..=args.train_steps {
        let started = Instant::now();
        let texts = Batch {
            texts: &batch,
            data: &data,
            epoch: 0,
        };
        let plan = StepPlan {
            workers,
            dropout_seed: step as u64,
            ..StepPlan::single(1e-4)
        };
        model = train_batch(model, &mut optimizer, &loss_fn, texts, Guidance::default(), plan)?.model;
        if step > 0 {
            times.push(started.elapsed().as_secs_f64());
        }
    }
    Ok(args.train_batch as f64 / median(times))
}

/// The median of `times` (the reference reports medians too: one slow repetition, from
/// another process waking up, does not move it).
fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    match times.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => times[n / 2],
        n => (times[n / 2 - 1] + times[n / 2]) / 2.0,
    }
}

/// The median time of `reps` runs of `work` (at least one).
fn median_seconds<T>(reps: usize, mut work: impl FnMut() -> anyhow::Result<T>) -> anyhow::Result<f64> {
    let mut times = Vec::new();
    for _ in 0..reps.max(1) {
        let started = Instant::now();
        work()?;
        times.push(started.elapsed().as_secs_f64());
    }
    Ok(median(times))
}

/// The CPU's model name and the vector extensions the matrix kernels can use (chosen at run
/// time by gemm: AVX-512 only where the CPU has it), so figures say what machine they are from.
fn cpu_description() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, name)| name.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    #[cfg(target_arch = "x86_64")]
    let extensions: Vec<&str> = [
        ("avx2", std::arch::is_x86_feature_detected!("avx2")),
        ("fma", std::arch::is_x86_feature_detected!("fma")),
        ("avx512f", std::arch::is_x86_feature_detected!("avx512f")),
    ]
    .into_iter()
    .filter_map(|(name, present)| present.then_some(name))
    .collect();
    #[cfg(not(target_arch = "x86_64"))]
    let extensions: Vec<&str> = Vec::new();
    format!(
        "{model}; {} cores; vector extensions: {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        if extensions.is_empty() {
            "none detected".to_string()
        } else {
            extensions.join(", ")
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// burn's `x86-v4` feature builds gemm's AVX-512 kernels, but gemm picks them at run time
    /// (`is_x86_feature_detected!("avx512f")`, else FMA, else scalar): the binary must not be
    /// compiled to assume AVX-512 anywhere else, or it would crash on CPUs without it.
    #[test]
    fn the_binary_does_not_assume_avx512() {
        let assumed = std::hint::black_box(cfg!(target_feature = "avx512f"));
        assert!(!assumed, "built with AVX-512 enabled globally");
        let description = cpu_description();
        assert!(description.contains("vector extensions"), "{description}");
    }

    #[test]
    fn medians_ignore_one_slow_repetition() {
        assert_eq!(median(vec![3.0, 1.0, 100.0]), 3.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 100.0]), 3.0);
        assert!(median(Vec::new()).is_nan());
    }
}
