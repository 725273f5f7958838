//! Fine-tuning one model: AdamW with linear warm-up and decay, gradient clipping, early
//! stopping on validation accuracy, optional distillation from the teacher's logits, and a
//! checkpoint after every epoch so a killed run resumes where it stopped.

use std::time::Instant;

use anyhow::{Context, bail};
use astrid::checkpoint::to_safetensors_bytes;
use astrid::explain::{argmax, read_f32};
use astrid::model::EncoderClassifier;
use burn::module::{Module, ModuleVisitor, ParamId};
use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use burn_store::{BurnpackStore, ModuleSnapshot};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::align::{AlignTargets, Probe, View, view_logits};
use crate::checkpoints::{CheckpointDir, EpochRecord, TrainState, save_checkpoint};
use crate::data::split::SplitMix64;
use crate::metrics::classification;
use crate::run_args::SelectBy;
use astrid::files::write_atomic;

/// Token ids of a set of texts and their classes.
#[derive(Debug, Clone, Default)]
pub struct Encoded {
    pub ids: Vec<Vec<u32>>,
    /// Per text, true for [CLS]/[SEP] (what IG's baselines and erasure leave alone).
    pub special: Vec<Vec<bool>>,
    pub labels: Vec<usize>,
}

/// What the teacher contributes to a student's loss: its logits on the full training texts
/// (distillation) and its logits on aligned views (`--training align`).
#[derive(Clone, Copy, Default)]
pub struct Guidance<'a> {
    pub teacher_logits: Option<&'a [Vec<f32>]>,
    pub align: Option<&'a AlignTargets>,
}

/// Distillation from the teacher: loss = α·T²·KL(teacher_T ‖ student_T) + (1−α)·CE.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Distill {
    pub temperature: f64,
    pub alpha: f64,
}

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

/// Pads a batch to its longest text: ids `[batch, len]` and the padding mask.
pub fn batch_tensors(ids: &[&Vec<u32>], device: &Device) -> (Tensor<2, Int>, Tensor<2, Bool>) {
    let len = ids.iter().map(|t| t.len()).max().unwrap_or(1);
    let mut flat = Vec::with_capacity(ids.len() * len);
    let mut mask = Vec::with_capacity(ids.len() * len);
    for t in ids {
        for p in 0..len {
            flat.push(t.get(p).copied().unwrap_or(0) as i64);
            mask.push(p < t.len());
        }
    }
    (
        Tensor::from_data(TensorData::new(flat, [ids.len(), len]), device),
        Tensor::from_data(TensorData::new(mask, [ids.len(), len]), device),
    )
}

/// Logits for every text, in batches, without autodiff.
pub async fn predict_logits(
    model: &EncoderClassifier,
    data: &[Vec<u32>],
    batch: usize,
) -> anyhow::Result<Vec<Vec<f32>>> {
    let device = model.device();
    let labels = model.config.num_labels;
    // Sorting by length keeps padding (wasted work) small.
    let mut order: Vec<usize> = (0..data.len()).collect();
    order.sort_by_key(|&i| data[i].len());
    let mut results = vec![Vec::new(); data.len()];
    for chunk in order.chunks(batch.max(1)) {
        let refs: Vec<&Vec<u32>> = chunk.iter().map(|&i| &data[i]).collect();
        let (ids, mask) = batch_tensors(&refs, &device);
        let logits = read_f32(model.forward(ids, Some(mask))).await?;
        if let Some(k) = logits.iter().position(|v| !v.is_finite()) {
            bail!(
                "the model's logits are not finite ({}) for text {} of {}: its weights are broken or it overflows; retrain it (lower --lr)",
                logits[k],
                chunk[k / labels] + 1,
                data.len()
            );
        }
        for (k, &i) in chunk.iter().enumerate() {
            results[i] = logits[k * labels..(k + 1) * labels].to_vec();
        }
    }
    Ok(results)
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
    checkpoints: &CheckpointDir,
    quiet: bool,
) -> anyhow::Result<Trained> {
    std::fs::create_dir_all(&checkpoints.0).with_context(|| format!("{}: cannot create", checkpoints.0.display()))?;
    let config = model.config.clone();
    let mut state = checkpoints.load_state()?.unwrap_or(TrainState {
        epochs_done: 0,
        best_accuracy: f64::NEG_INFINITY,
        best_epoch: 0,
        epochs_without_improvement: 0,
        finished: false,
        history: Vec::new(),
        weights_sha256: String::new(),
        optimizer_sha256: String::new(),
        best_sha256: String::new(),
    });
    let autodiff = device.clone().autodiff();
    let mut optimizer = adamw(options);
    let mut model = model.to_device(&autodiff).train();
    let finished = |state: &TrainState| state.finished || state.epochs_done >= options.epochs;
    if state.epochs_done > 0 && !finished(&state) {
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
        optimizer = optimizer
            .from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
            .map_err(|e| anyhow::anyhow!("{}: {e:?}", optimizer_path.display()))?;
    }
    if !finished(&state) {
        let steps_per_epoch = train.ids.len().div_ceil(options.batch_size.max(1));
        let total_steps = steps_per_epoch * options.epochs;
        let loss_fn = CrossEntropyLossConfig::new()
            .with_weights(options.class_weights.clone())
            .init(&autodiff);
        for epoch in state.epochs_done..options.epochs {
            let mut order: Vec<usize> = (0..train.ids.len()).collect();
            SplitMix64::new(options.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9)).shuffle(&mut order);
            let bar = if quiet {
                ProgressBar::hidden()
            } else {
                ProgressBar::new(train.ids.len() as u64)
            };
            bar.set_style(
                ProgressStyle::with_template("{prefix:>14} {bar:30} {pos}/{len} {msg} ETA {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_prefix(format!("{name} e{}", epoch + 1));
            let started = Instant::now();
            let (mut loss_sum, mut right, mut seen) = (0.0, 0usize, 0usize);
            for (b, chunk) in order.chunks(options.batch_size.max(1)).enumerate() {
                let lr = learning_rate(options, epoch * steps_per_epoch + b, total_steps);
                let step = train_batch(
                    model,
                    &mut optimizer,
                    &loss_fn,
                    Batch {
                        texts: chunk,
                        data: train,
                        epoch,
                    },
                    guidance,
                    options.distill,
                    lr,
                )?;
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
            let valid = model.valid();
            let val_logits = pollster::block_on(predict_logits(&valid, &validation.ids, 64))?;
            let predicted: Vec<usize> = val_logits.iter().map(|l| argmax(l)).collect();
            let classes = val_logits.first().map_or(0, Vec::len);
            let val = classification(&predicted, &validation.labels, classes);
            let record = EpochRecord {
                epoch: epoch + 1,
                loss: loss_sum / seen.max(1) as f64,
                train_accuracy: right as f64 / seen.max(1) as f64,
                validation_accuracy: val.accuracy,
                validation_macro_f1: Some(val.macro_f1),
                sequences_per_second: speed,
                seconds: started.elapsed().as_secs_f64(),
            };
            eprintln!(
                "{name:>14} epoch {}: loss {:.4}, train acc {:.3}, validation acc {:.3}, macro-F1 {:.3}, {:.1} seq/s",
                record.epoch, record.loss, record.train_accuracy, record.validation_accuracy, val.macro_f1, speed
            );
            let better = improves(options.select_by, &state, &record);
            state.history.push(record);
            state.epochs_done = epoch + 1;
            if better {
                state.best_accuracy = val.accuracy;
                state.best_epoch = epoch + 1;
                state.epochs_without_improvement = 0;
                let best = to_safetensors_bytes(&valid)?;
                state.best_sha256 = crate::fingerprint::sha256_hex(&best);
                write_atomic(&checkpoints.best_weights(state.best_epoch), &best)?;
            } else {
                state.epochs_without_improvement += 1;
            }
            state.finished =
                state.epochs_without_improvement >= options.patience || state.epochs_done >= options.epochs;
            save_checkpoint(checkpoints, &model, &optimizer, &mut state)?;
            if state.finished {
                break;
            }
        }
    }
    let best_path = checkpoints.best_weights(state.best_epoch);
    let best = checkpoints.read_checked(&best_path, &state.best_sha256)?;
    let (best, _) =
        astrid::checkpoint::load_safetensors_bytes(&config, best, &best_path.display().to_string(), false, device)?;
    Ok(Trained {
        model: best.valid(),
        state,
    })
}

/// The training loss of a batch (cross-entropy, plus the distillation term when the
/// teacher's logits are given) and the logits.
pub fn batch_loss(
    model: &EncoderClassifier,
    loss_fn: &CrossEntropyLoss,
    ids: Tensor<2, Int>,
    mask: Tensor<2, Bool>,
    targets: Tensor<1, Int>,
    teacher: Option<(Tensor<2>, Distill)>,
) -> (Tensor<1>, Tensor<2>) {
    let logits = model.forward(ids, Some(mask));
    let mut loss = loss_fn.forward(logits.clone(), targets);
    if let Some((teacher, d)) = teacher {
        let kl = kl_divergence(teacher, logits.clone(), d.temperature);
        loss = loss.mul_scalar(1.0 - d.alpha) + kl.mul_scalar(d.alpha * d.temperature * d.temperature);
    }
    (loss, logits)
}

/// Mean over rows of KL(softmax(teacher/T) ‖ softmax(student/T)), from logits (no log of a
/// zero probability): 0 when the rows are equal.
pub fn kl_divergence(teacher: Tensor<2>, student: Tensor<2>, temperature: f64) -> Tensor<1> {
    let t = teacher.div_scalar(temperature);
    let p_teacher = softmax(t.clone(), 1);
    let log_student = log_softmax(student.div_scalar(temperature), 1);
    (p_teacher * (log_softmax(t, 1) - log_student)).sum_dim(1).mean()
}

/// The alignment term of a batch, times its weight: per text, KL at temperature 1 between the
/// teacher's and the student's class probabilities on the text's view of this epoch, or the
/// squared difference of their slopes ([`Probe::Slope`]); averaged over the texts.
pub fn align_loss(model: &EncoderClassifier, targets: &AlignTargets, batch: &Batch) -> anyhow::Result<Tensor<1>> {
    let device = model.device();
    let labels = model.config.num_labels;
    let epoch_logits = targets
        .logits
        .get(batch.epoch)
        .with_context(|| format!("no aligned views for epoch {}", batch.epoch + 1))?;
    let probes: Vec<Probe> = batch
        .texts
        .iter()
        .map(|&i| targets.plan.probe(batch.epoch, i, batch.data))
        .collect();
    let views: Vec<&View> = probes.iter().flat_map(Probe::views).collect();
    let student = view_logits(model, &views, targets.plan.settings.baseline, targets.special_ids)?;
    let flat: Vec<f32> = batch
        .texts
        .iter()
        .flat_map(|&i| epoch_logits[i].iter().copied())
        .collect();
    if flat.len() != views.len() * labels {
        bail!("the cached aligned views do not fit this batch; delete the run's align/ directory to recompute them");
    }
    let teacher = Tensor::<2>::from_data(TensorData::new(flat, [views.len(), labels]), &device).without_autodiff();
    // Row indices of the value views, and of the two ends of each slope (with its step).
    let (mut values, mut ahead, mut behind, mut steps) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut row = 0i64;
    for probe in &probes {
        match probe {
            Probe::Value(_) => values.push(row),
            Probe::Slope { step, .. } => {
                ahead.push(row);
                behind.push(row + 1);
                steps.push(*step as f32);
            }
        }
        row += probe.views().len() as i64;
    }
    let rows = |r: &[i64]| Tensor::<1, Int>::from_data(TensorData::new(r.to_vec(), [r.len()]), &device);
    let mut total: Option<Tensor<1>> = None;
    let mut add = |term: Tensor<1>| {
        total = Some(match total.take() {
            Some(t) => t + term,
            None => term,
        })
    };
    if !values.is_empty() {
        let r = rows(&values);
        let kl = kl_divergence(teacher.clone().select(0, r.clone()), student.clone().select(0, r), 1.0);
        add(kl.mul_scalar(values.len() as f64));
    }
    if !ahead.is_empty() {
        let (a, b) = (rows(&ahead), rows(&behind));
        let width = Tensor::<2>::from_data(TensorData::new(steps.clone(), [steps.len(), 1]), &device).mul_scalar(2.0);
        let slope = |logits: Tensor<2>| {
            (softmax(logits.clone().select(0, a.clone()), 1) - softmax(logits.select(0, b.clone()), 1)) / width.clone()
        };
        let gap = slope(student) - slope(teacher);
        add((gap.clone() * gap).sum_dim(1).sum().reshape([1]));
    }
    let total = total.context("an empty batch")?;
    Ok(total
        .div_scalar(probes.len() as f64)
        .mul_scalar(targets.plan.settings.weight))
}

/// The texts of one optimizer step: indices into `data`, in training epoch `epoch` (0-based).
pub struct Batch<'a> {
    pub texts: &'a [usize],
    pub data: &'a Encoded,
    pub epoch: usize,
}

/// The outcome of one optimizer step.
pub struct Step {
    pub model: EncoderClassifier,
    /// Mean loss over the batch.
    pub loss: f64,
    /// How many texts of the batch the model (before the step) classified right.
    pub right: usize,
}

/// One AdamW step on the texts `batch` (indices into `data`).
///
/// The batch runs as one chain of operations. Splitting it between threads (as IG does)
/// trained ~20% faster on the CPU, but burn 0.22's autodiff is not safe for concurrent
/// backward passes that share parameters ("graph tape has already been consumed", seen
/// intermittently), so training stays sequential.
#[allow(clippy::too_many_arguments)]
pub fn train_batch(
    model: EncoderClassifier,
    optimizer: &mut ModuleOptimizer,
    loss_fn: &CrossEntropyLoss,
    texts: Batch,
    guidance: Guidance,
    distill: Option<Distill>,
    lr: f64,
) -> anyhow::Result<Step> {
    let (batch, data) = (texts.texts, texts.data);
    let device = model.device();
    let labels = model.config.num_labels;
    let refs: Vec<&Vec<u32>> = batch.iter().map(|&i| &data.ids[i]).collect();
    let (ids, mask) = batch_tensors(&refs, &device);
    let targets: Vec<i64> = batch.iter().map(|&i| data.labels[i] as i64).collect();
    let targets = Tensor::<1, Int>::from_data(TensorData::new(targets, [batch.len()]), &device);
    let teacher = match (distill, guidance.teacher_logits) {
        (Some(d), Some(teacher)) => {
            let flat: Vec<f32> = batch.iter().flat_map(|&i| teacher[i].iter().copied()).collect();
            let t = Tensor::<2>::from_data(TensorData::new(flat, [batch.len(), labels]), &device).without_autodiff();
            Some((t, d))
        }
        _ => None,
    };
    let (mut loss, logits) = batch_loss(&model, loss_fn, ids, mask, targets, teacher);
    if let Some(align) = guidance.align {
        loss = loss + align_loss(&model, align, &texts)?;
    }
    let loss_value = pollster::block_on(read_f32(loss.clone().without_autodiff()))?[0] as f64;
    let predictions = pollster::block_on(read_f32(logits.without_autodiff()))?;
    let right = batch
        .iter()
        .enumerate()
        .filter(|(k, i)| argmax(&predictions[k * labels..(k + 1) * labels]) == data.labels[**i])
        .count();
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    check_gradients(&model, &grads)?;
    let model = optimizer.step(lr, model, grads);
    Ok(Step {
        model,
        loss: loss_value,
        right,
    })
}

/// Adds up |gradient| over every parameter (one readback per step); with `name_each`, finds
/// the first parameter whose gradient is not finite instead.
struct GradientScan<'a> {
    grads: &'a GradientsParams,
    total: Option<Tensor<1>>,
    name_each: bool,
    first_bad: Option<String>,
}

impl ModuleVisitor for GradientScan<'_> {
    fn visit_float_with_path<const D: usize>(&mut self, path: &[String], id: ParamId, _: &Tensor<D>) {
        let Some(grad) = self.grads.get::<D>(id) else {
            return;
        };
        let sum = grad.abs().sum();
        if self.name_each {
            if self.first_bad.is_none() {
                let value = pollster::block_on(read_f32(sum)).ok().and_then(|v| v.first().copied());
                if !value.is_some_and(f32::is_finite) {
                    self.first_bad = Some(path.join("."));
                }
            }
            return;
        }
        self.total = Some(match self.total.take() {
            Some(total) => total + sum,
            None => sum,
        });
    }
}

/// A NaN or infinite gradient would turn every weight into NaN at the next step: stop with
/// the parameter's name instead.
fn check_gradients(model: &EncoderClassifier, grads: &GradientsParams) -> anyhow::Result<()> {
    let mut scan = GradientScan {
        grads,
        total: None,
        name_each: false,
        first_bad: None,
    };
    model.visit(&mut scan);
    let Some(total) = scan.total else {
        return Ok(());
    };
    let total = pollster::block_on(read_f32(total))?;
    if total.first().is_some_and(|t| t.is_finite()) {
        return Ok(());
    }
    let mut scan = GradientScan {
        grads,
        total: None,
        name_each: true,
        first_bad: None,
    };
    model.visit(&mut scan);
    bail!(
        "the gradient of {} is not finite (NaN or infinite); lower --lr or --clip, or check the data",
        scan.first_bad.unwrap_or_else(|| "a parameter".into())
    )
}

/// AdamW with weight decay and per-tensor gradient clipping by norm.
pub fn adamw(options: &TrainOptions) -> ModuleOptimizer {
    AdamWConfig::new()
        .with_weight_decay(options.weight_decay as f32)
        .with_grad_clipping(Some(GradientClippingConfig::Norm(options.clip_norm as f32)))
        .init()
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
