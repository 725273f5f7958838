//! Fine-tuning one model: AdamW with linear warm-up and decay, gradient clipping, early
//! stopping on validation accuracy, optional distillation from the teacher's logits, and a
//! checkpoint after every epoch so a killed run resumes where it stopped. On the CPU each
//! batch can be split between model replicas on their own threads ([`train_batch`]).

use std::time::Instant;

use anyhow::{Context, bail};
use astrid::explain::argmax;
use astrid::kernels::AdamWStep;
use astrid::model::EncoderClassifier;
use astrid::weights::to_safetensors_bytes;
use burn::module::Module;
use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::optim::ModuleOptimizer;
use burn::tensor::Device;
use burn_store::{BurnpackStore, ModuleSnapshot};
use serde::{Deserialize, Serialize};

use crate::data::split::SplitMix64;
use crate::training::batches::{Encoded, predict_logits};
use crate::training::losses::{Distill, Guidance};
use crate::training::metrics::classification;
use crate::training::optimizer::FusedAdamW;
use crate::training::resume::{EpochRecord, TrainState, TrainingStateDir, save_training_state};
use crate::training::steps::{Batch, StepPlan, step_seed, train_batch};
use astrid::files::write_atomic;
use astrid::schema::SelectBy;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainOptions {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub warmup_ratio: f64,
    /// Gradient clipping by norm, per parameter tensor (burn's `GradientClipping::Norm`).
    pub clip_norm: f64,
    /// Stop after this many epochs without a better validation figure (`select_by`).
    pub patience: usize,
    pub seed: u64,
    pub distill: Option<Distill>,
    /// Per-class weights of the cross-entropy (`--class-weight balanced`); `None`: all 1.
    #[serde(default)]
    pub class_weights: Option<Vec<f32>>,
    /// The validation figure that picks the best epoch (and counts toward `patience`).
    #[serde(default)]
    pub select_by: SelectBy,
    /// Model replicas each batch is split between, one thread each ([`train_batch`]).
    #[serde(default = "one")]
    pub workers: usize,
}

fn one() -> usize {
    1
}

/// Class weights that make every class count as much in the loss (scikit-learn's
/// "balanced"): `n / (classes · n_c)` for the `n` training labels, `n_c` of class c.
pub fn balanced_class_weights(labels: &[usize], classes: usize) -> anyhow::Result<Vec<f64>> {
    let mut counts = vec![0usize; classes];
    for &l in labels {
        if let Some(c) = counts.get_mut(l) {
            *c += 1;
        }
    }
    if let Some(empty) = counts.iter().position(|&c| c == 0) {
        bail!(
            "--class-weight balanced: class {} has no training text, so it cannot be weighted; drop the class or use more data",
            empty + 1
        );
    }
    Ok(counts
        .iter()
        .map(|&c| labels.len() as f64 / (classes as f64 * c as f64))
        .collect())
}
/// Whether an epoch beats the best so far by the selection figure (ties keep the earlier).
fn improves(select_by: SelectBy, state: &TrainState, record: &EpochRecord) -> bool {
    let score = |r: &EpochRecord| match select_by {
        SelectBy::Accuracy => r.validation_accuracy,
        SelectBy::MacroF1 => r.validation_macro_f1.unwrap_or(f64::NEG_INFINITY),
    };
    let best = state
        .best_epoch
        .checked_sub(1)
        .and_then(|i| state.history.get(i))
        .map_or(f64::NEG_INFINITY, score);
    score(record) > best
}

fn learning_rate(options: &TrainOptions, step: usize, total: usize) -> f64 {
    let warmup = ((total as f64) * options.warmup_ratio).round().max(1.0) as usize;
    let scale = if step < warmup {
        (step + 1) as f64 / warmup as f64
    } else {
        (total.saturating_sub(step)) as f64 / (total - warmup).max(1) as f64
    };
    options.learning_rate * scale.max(0.0)
}

/// The result of training one model.
pub struct Trained {
    /// The best model (by validation accuracy), in validation mode on the plain device.
    pub model: EncoderClassifier,
    pub state: TrainState,
}

/// Trains `model` (on `device`, which must not be an autodiff device: autodiff is enabled
/// here) and returns the best epoch's model. Resumes from `checkpoints` when a state is
/// there; returns at once when that state says the model is finished.
#[allow(clippy::too_many_arguments)]
pub fn train(
    name: &str,
    model: EncoderClassifier,
    train: &Encoded,
    validation: &Encoded,
    guidance: Guidance,
    options: &TrainOptions,
    device: &Device,
    checkpoints: &TrainingStateDir,
    quiet: bool,
) -> anyhow::Result<Trained> {
    std::fs::create_dir_all(&checkpoints.0).with_context(|| format!("{}: cannot create", checkpoints.0.display()))?;
    let config = model.config.clone();
    let mut state = checkpoints.load_state()?.unwrap_or_else(fresh_state);
    let autodiff = device.clone().autodiff();
    let mut optimizer = adamw(options);
    let mut model = model.to_device(&autodiff).train();
    let run = Run {
        name,
        train,
        validation,
        guidance,
        options,
        checkpoints,
        quiet,
    };
    if !run.finished(&state) {
        if state.epochs_done > 0 {
            optimizer = resume(&mut model, optimizer, checkpoints, &state)?;
        }
        run.epochs(model, optimizer, &autodiff, &mut state)?;
    }
    let best_path = checkpoints.best_weights(state.best_epoch);
    let best = checkpoints.read_checked(&best_path, &state.best_sha256)?;
    let (best, _) =
        astrid::weights::load_safetensors_bytes(&config, best, &best_path.display().to_string(), false, device)?;
    Ok(Trained {
        model: best.valid(),
        state,
    })
}

/// The state of a model that has not trained yet.
fn fresh_state() -> TrainState {
    TrainState {
        epochs_done: 0,
        best_accuracy: f64::NEG_INFINITY,
        best_epoch: 0,
        epochs_without_improvement: 0,
        finished: false,
        history: Vec::new(),
        weights_sha256: String::new(),
        optimizer_sha256: String::new(),
        best_sha256: String::new(),
    }
}

/// Loads the weights and the optimizer state of the last epoch `state` records into `model`
/// and returns the optimizer.
fn resume(
    model: &mut EncoderClassifier,
    optimizer: ModuleOptimizer,
    checkpoints: &TrainingStateDir,
    state: &TrainState,
) -> anyhow::Result<ModuleOptimizer> {
    let weights_path = checkpoints.epoch_weights(state.epochs_done);
    let weights = checkpoints.read_checked(&weights_path, &state.weights_sha256)?;
    let mut store = BurnpackStore::from_bytes(Some(burn::tensor::Bytes::from_bytes_vec(weights)));
    model.load_from(&mut store).with_context(|| {
        format!(
            "{}: cannot resume from it; delete {} to train this model again",
            weights_path.display(),
            checkpoints.0.display()
        )
    })?;
    let optimizer_path = checkpoints.epoch_optimizer(state.epochs_done);
    let bytes = checkpoints.read_checked(&optimizer_path, &state.optimizer_sha256)?;
    optimizer
        .from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
        .map_err(|e| anyhow::anyhow!("{}: {e:?}", optimizer_path.display()))
}

/// What [`train`] was given besides the model and the device.
struct Run<'a> {
    name: &'a str,
    train: &'a Encoded,
    validation: &'a Encoded,
    guidance: Guidance<'a>,
    options: &'a TrainOptions,
    checkpoints: &'a TrainingStateDir,
    quiet: bool,
}

/// Optimizer steps per epoch and in all, for the learning-rate schedule.
#[derive(Clone, Copy)]
struct Schedule {
    steps_per_epoch: usize,
    total_steps: usize,
}

/// What one epoch's batches added up to.
struct EpochTotals {
    loss_sum: f64,
    right: usize,
    seen: usize,
    /// Texts per second over the batches.
    speed: f64,
    started: Instant,
}

impl Run<'_> {
    fn finished(&self, state: &TrainState) -> bool {
        state.finished || state.epochs_done >= self.options.epochs
    }

    /// The epochs from the one after `state`'s last, each validated and checkpointed, until
    /// the last epoch or `patience` epochs without a better one.
    fn epochs(
        &self,
        mut model: EncoderClassifier,
        mut optimizer: ModuleOptimizer,
        autodiff: &Device,
        state: &mut TrainState,
    ) -> anyhow::Result<()> {
        let options = self.options;
        let steps_per_epoch = self.train.ids.len().div_ceil(options.batch_size.max(1));
        let schedule = Schedule {
            steps_per_epoch,
            total_steps: steps_per_epoch * options.epochs,
        };
        let loss_fn = CrossEntropyLossConfig::new()
            .with_weights(options.class_weights.clone())
            .init(autodiff);
        for epoch in state.epochs_done..options.epochs {
            let (trained, totals) = self.epoch(epoch, model, &mut optimizer, &loss_fn, schedule)?;
            model = trained;
            let valid = model.valid();
            let record = self.validate(&valid, epoch, &totals)?;
            self.record(state, record, &valid)?;
            save_training_state(self.checkpoints, &model, &optimizer, state)?;
            if state.finished {
                break;
            }
        }
        Ok(())
    }

    /// One pass over the training texts in this epoch's shuffled order, a step per batch.
    fn epoch(
        &self,
        epoch: usize,
        mut model: EncoderClassifier,
        optimizer: &mut ModuleOptimizer,
        loss_fn: &CrossEntropyLoss,
        schedule: Schedule,
    ) -> anyhow::Result<(EncoderClassifier, EpochTotals)> {
        let (name, options, train) = (self.name, self.options, self.train);
        let mut order: Vec<usize> = (0..train.ids.len()).collect();
        SplitMix64::new(options.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9)).shuffle(&mut order);
        let bar = crate::util::progress::bar(train.ids.len(), format!("{name} e{}", epoch + 1), "", self.quiet);
        let started = Instant::now();
        let (mut loss_sum, mut right, mut seen) = (0.0, 0usize, 0usize);
        for (b, chunk) in order.chunks(options.batch_size.max(1)).enumerate() {
            let lr = learning_rate(options, epoch * schedule.steps_per_epoch + b, schedule.total_steps);
            let plan = StepPlan {
                lr,
                distill: options.distill,
                class_weights: options.class_weights.as_deref(),
                workers: options.workers,
                dropout_seed: step_seed(options.seed, epoch, b),
            };
            let texts = Batch {
                texts: chunk,
                data: train,
                epoch,
            };
            let step = train_batch(model, optimizer, loss_fn, texts, self.guidance, plan)?;
            model = step.model;
            let loss_value = step.loss;
            if !loss_value.is_finite() {
                bail!(
                    "{name}: the loss became {loss_value} at epoch {}, batch {}; lower --lr (now {}) or check the data",
                    epoch + 1,
                    b + 1,
                    options.learning_rate
                );
            }
            right += step.right;
            loss_sum += loss_value * chunk.len() as f64;
            seen += chunk.len();
            bar.inc(chunk.len() as u64);
            bar.set_message(format!(
                "loss {:.4} acc {:.3} {:.1} seq/s",
                loss_sum / seen as f64,
                right as f64 / seen as f64,
                seen as f64 / started.elapsed().as_secs_f64()
            ));
        }
        let speed = seen as f64 / started.elapsed().as_secs_f64();
        bar.finish_and_clear();
        let totals = EpochTotals {
            loss_sum,
            right,
            seen,
            speed,
            started,
        };
        Ok((model, totals))
    }

    /// The epoch's record: its training figures and the model's on the validation texts
    /// (printed too).
    fn validate(&self, valid: &EncoderClassifier, epoch: usize, totals: &EpochTotals) -> anyhow::Result<EpochRecord> {
        let val_logits = predict_logits(valid, &self.validation.ids, 64)?;
        let predicted: Vec<usize> = val_logits.iter().map(|l| argmax(l)).collect();
        let classes = val_logits.first().map_or(0, Vec::len);
        let val = classification(&predicted, &self.validation.labels, classes);
        let record = EpochRecord {
            epoch: epoch + 1,
            loss: totals.loss_sum / totals.seen.max(1) as f64,
            train_accuracy: totals.right as f64 / totals.seen.max(1) as f64,
            validation_accuracy: val.accuracy,
            validation_macro_f1: Some(val.macro_f1),
            sequences_per_second: totals.speed,
            seconds: totals.started.elapsed().as_secs_f64(),
        };
        let name = self.name;
        eprintln!(
            "{name:>14} epoch {}: loss {:.4}, train acc {:.3}, validation acc {:.3}, macro-F1 {:.3}, {:.1} seq/s",
            record.epoch, record.loss, record.train_accuracy, record.validation_accuracy, val.macro_f1, totals.speed
        );
        Ok(record)
    }

    /// Adds `record` to `state`, keeps the model's weights when the epoch is the best so far,
    /// and says whether training is finished.
    fn record(&self, state: &mut TrainState, record: EpochRecord, valid: &EncoderClassifier) -> anyhow::Result<()> {
        let options = self.options;
        let (epoch, accuracy) = (record.epoch, record.validation_accuracy);
        let better = improves(options.select_by, state, &record);
        state.history.push(record);
        state.epochs_done = epoch;
        if better {
            state.best_accuracy = accuracy;
            state.best_epoch = epoch;
            state.epochs_without_improvement = 0;
            let best = to_safetensors_bytes(valid)?;
            state.best_sha256 = crate::util::digest::sha256_hex(&best);
            write_atomic(&self.checkpoints.best_weights(state.best_epoch), &best)?;
        } else {
            state.epochs_without_improvement += 1;
        }
        state.finished = state.epochs_without_improvement >= options.patience || state.epochs_done >= options.epochs;
        Ok(())
    }
}

/// AdamW with weight decay and per-tensor gradient clipping by norm (burn's defaults for the
/// rest), its step fused on the CPU ([`FusedAdamW`]).
pub fn adamw(options: &TrainOptions) -> ModuleOptimizer {
    FusedAdamW::new(AdamWStep {
        lr: 0.0,
        beta_1: 0.9,
        beta_2: 0.999,
        epsilon: 1e-5,
        weight_decay: options.weight_decay as f32,
        time: 0,
        clip_norm: Some(options.clip_norm as f32),
    })
    .into_module_optimizer()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn the_best_epoch_is_picked_by_the_selection_figure() {
        let epoch = |n: usize, accuracy: f64, f1: f64| EpochRecord {
            epoch: n,
            loss: 0.5,
            train_accuracy: 0.5,
            validation_accuracy: accuracy,
            validation_macro_f1: Some(f1),
            sequences_per_second: 1.0,
            seconds: 1.0,
        };
        // Epoch 1 predicts the majority class (65%): high accuracy, low macro-F1.
        let state = TrainState {
            epochs_done: 1,
            best_accuracy: 0.648,
            best_epoch: 1,
            epochs_without_improvement: 0,
            finished: false,
            history: vec![epoch(1, 0.648, 0.393)],
            weights_sha256: String::new(),
            optimizer_sha256: String::new(),
            best_sha256: String::new(),
        };
        let second = epoch(2, 0.580, 0.560);
        assert!(!improves(SelectBy::Accuracy, &state, &second));
        assert!(improves(SelectBy::MacroF1, &state, &second));
        // A tie keeps the earlier epoch; the first epoch always counts.
        assert!(!improves(SelectBy::MacroF1, &state, &epoch(2, 0.7, 0.393)));
        let empty = TrainState {
            epochs_done: 0,
            best_epoch: 0,
            history: Vec::new(),
            ..state
        };
        assert!(improves(SelectBy::MacroF1, &empty, &epoch(1, 0.1, 0.1)));
    }

    #[test]
    fn balanced_class_weights_make_each_class_weigh_the_same() {
        // 65/35 as SCOTUS: 13 texts of class 0, 7 of class 1.
        let labels: Vec<usize> = (0..20).map(|i| usize::from(i >= 13)).collect();
        let w = balanced_class_weights(&labels, 2).unwrap();
        assert!(
            (w[0] - 20.0 / 26.0).abs() < 1e-12 && (w[1] - 20.0 / 14.0).abs() < 1e-12,
            "{w:?}"
        );
        // Each class's total weight is n / classes.
        assert!((13.0 * w[0] - 10.0).abs() < 1e-9 && (7.0 * w[1] - 10.0).abs() < 1e-9);
        let missing = balanced_class_weights(&[0, 0, 2], 3).unwrap_err().to_string();
        assert!(missing.contains("class 2 has no training text"), "{missing}");
    }
}
