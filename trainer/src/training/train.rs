//! Fine-tuning one model: AdamW with linear warm-up and decay, gradient clipping, early
//! stopping on validation accuracy, optional distillation from the teacher's logits, and a
//! checkpoint after every epoch so a killed run resumes where it stopped. On the CPU each
//! batch can be split between model replicas on their own threads ([`train_batch`]).

use std::time::Instant;

use anyhow::{Context, bail};
use astrid::explain::{argmax, read_f32};
use astrid::kernels::AdamWStep;
use astrid::model::{EncoderClassifier, with_dropout_stream};
use astrid::weights::to_safetensors_bytes;
use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use burn_store::{BurnpackStore, ModuleSnapshot};
use serde::{Deserialize, Serialize};

use crate::data::split::SplitMix64;
use crate::training::align::{AlignTargets, Probe, View, view_logits};
use crate::training::metrics::classification;
use crate::training::optimizer::FusedAdamW;
use crate::training::resume::{EpochRecord, TrainState, TrainingStateDir, save_training_state};
use astrid::files::write_atomic;
use astrid::schema::SelectBy;

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

/// Logits for every text, in batches of `batch` sorted by length, without autodiff. On the
/// CPU each batch is split between [`crate::util::threads::cpu_workers`] threads, as PyTorch spreads
/// one forward pass over its threads (burn-flex runs element-wise operations on one thread;
/// inference builds no graph, so the parts are independent).
pub fn predict_logits(model: &EncoderClassifier, data: &[Vec<u32>], batch: usize) -> anyhow::Result<Vec<Vec<f32>>> {
    let labels = model.config.num_labels;
    let workers = inference_workers(&model.device());
    // Sorting by length keeps padding (wasted work) small.
    let mut order: Vec<usize> = (0..data.len()).collect();
    order.sort_by_key(|&i| data[i].len());
    let mut results = vec![Vec::new(); data.len()];
    for chunk in order.chunks(batch.max(1)) {
        let logits = batch_logits(model, data, chunk, workers)?;
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

/// Threads one forward pass is split between: the CPU's workers on burn-flex, 1 on a GPU.
pub fn inference_workers(device: &Device) -> usize {
    if *device == Device::flex() {
        crate::util::threads::cpu_workers()
    } else {
        1
    }
}

/// The logits of the texts `texts` (indices into `data`), `[texts × labels]` row by row: the
/// texts split into `workers` contiguous parts, each padded to its own longest text and run
/// on its own thread.
pub fn batch_logits(
    model: &EncoderClassifier,
    data: &[Vec<u32>],
    texts: &[usize],
    workers: usize,
) -> anyhow::Result<Vec<f32>> {
    let device = model.device();
    let run = |part: &[usize]| -> anyhow::Result<Vec<f32>> {
        let refs: Vec<&Vec<u32>> = part.iter().map(|&i| &data[i]).collect();
        let (ids, mask) = batch_tensors(&refs, &device);
        Ok(pollster::block_on(read_f32(model.forward(ids, Some(mask))))?)
    };
    let parts = shards(texts, workers);
    if parts.len() <= 1 {
        return run(texts);
    }
    let outputs = on_threads(&parts, "an inference thread", |_, part| run(part));
    let mut logits = Vec::new();
    for output in outputs {
        logits.extend(output?);
    }
    Ok(logits)
}

/// Runs `work(k, part)` for every part `k`, each on a thread of rayon's pool (as IG's chains
/// run), so that the kernels' own parallel loops inside share the pool's threads rather than
/// wake them from outside; the results come back in part order, a panic as an error naming
/// `what`.
fn on_threads<T: Send>(
    parts: &[&[usize]],
    what: &str,
    work: impl Fn(usize, &[usize]) -> anyhow::Result<T> + Sync,
) -> Vec<anyhow::Result<T>> {
    use rayon::prelude::*;
    parts
        .par_iter()
        .with_max_len(1)
        .enumerate()
        .map(|(k, &part)| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(k, part)))
                .unwrap_or_else(|_| Err(anyhow::anyhow!("{what} panicked")))
        })
        .collect()
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
            let bar = crate::util::progress::bar(train.ids.len(), format!("{name} e{}", epoch + 1), "", quiet);
            let started = Instant::now();
            let (mut loss_sum, mut right, mut seen) = (0.0, 0usize, 0usize);
            for (b, chunk) in order.chunks(options.batch_size.max(1)).enumerate() {
                let lr = learning_rate(options, epoch * steps_per_epoch + b, total_steps);
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
                let step = train_batch(model, &mut optimizer, &loss_fn, texts, guidance, plan)?;
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
            let val_logits = predict_logits(&valid, &validation.ids, 64)?;
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
                state.best_sha256 = crate::util::digest::sha256_hex(&best);
                write_atomic(&checkpoints.best_weights(state.best_epoch), &best)?;
            } else {
                state.epochs_without_improvement += 1;
            }
            state.finished =
                state.epochs_without_improvement >= options.patience || state.epochs_done >= options.epochs;
            save_training_state(checkpoints, &model, &optimizer, &mut state)?;
            if state.finished {
                break;
            }
        }
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

/// How much of a whole batch's loss one shard of it carries when the batch is split between
/// model replicas: its share of the class weight (the cross-entropy is a weighted mean) and
/// of the texts (the distillation and alignment terms are plain means). The shards' losses,
/// each scaled by its share, add up to the whole batch's, and so do their gradients.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Share {
    pub weight: f64,
    pub texts: f64,
}

impl Share {
    pub const WHOLE: Share = Share {
        weight: 1.0,
        texts: 1.0,
    };
}

/// `loss · share`, without an operation when the share is 1 (one thread: today's numbers).
fn scaled(loss: Tensor<1>, share: f64) -> Tensor<1> {
    if share == 1.0 { loss } else { loss.mul_scalar(share) }
}

/// The training loss of a batch (cross-entropy, plus the distillation term when the
/// teacher's logits are given), scaled by the batch's `share` of the step, and the logits.
pub fn batch_loss(
    model: &EncoderClassifier,
    loss_fn: &CrossEntropyLoss,
    ids: Tensor<2, Int>,
    mask: Tensor<2, Bool>,
    targets: Tensor<1, Int>,
    teacher: Option<(Tensor<2>, Distill)>,
    share: Share,
) -> (Tensor<1>, Tensor<2>) {
    let logits = model.forward(ids, Some(mask));
    let mut loss = scaled(loss_fn.forward(logits.clone(), targets), share.weight);
    if let Some((teacher, d)) = teacher {
        let kl = scaled(kl_divergence(teacher, logits.clone(), d.temperature), share.texts);
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
/// squared difference of their slopes ([`Probe::Slope`]); averaged over the texts and scaled
/// by the batch's share of the step's texts.
pub fn align_loss(
    model: &EncoderClassifier,
    targets: &AlignTargets,
    batch: &Batch,
    share: f64,
) -> anyhow::Result<Tensor<1>> {
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
    let mean = total.div_scalar(probes.len() as f64);
    Ok(scaled(mean, share).mul_scalar(targets.plan.settings.weight))
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

/// How one optimizer step runs.
#[derive(Debug, Clone, Copy)]
pub struct StepPlan<'a> {
    pub lr: f64,
    pub distill: Option<Distill>,
    /// The cross-entropy's class weights (the loss function's), to share the batch out.
    pub class_weights: Option<&'a [f32]>,
    /// Model replicas the batch is split between, one thread each (1: the model itself).
    pub workers: usize,
    /// Seeds the replicas' dropout streams (with `workers` > 1).
    pub dropout_seed: u64,
}

impl StepPlan<'_> {
    /// A plain step: one thread, no distillation, no class weights.
    pub fn single(lr: f64) -> Self {
        StepPlan {
            lr,
            distill: None,
            class_weights: None,
            workers: 1,
            dropout_seed: 0,
        }
    }
}

/// The seed of one step's dropout streams: fixed by the run's seed, the epoch and the batch,
/// so a resumed run draws what an uninterrupted one would.
pub fn step_seed(seed: u64, epoch: usize, batch: usize) -> u64 {
    SplitMix64::new(seed ^ ((epoch as u64) << 32) ^ batch as u64).next_u64()
}

/// Splits `texts` into `workers` contiguous shards whose sizes differ by at most one (fewer
/// shards when there are fewer texts).
pub fn shards(texts: &[usize], workers: usize) -> Vec<&[usize]> {
    let k = workers.clamp(1, texts.len().max(1));
    let (base, extra) = (texts.len() / k, texts.len() % k);
    let mut out = Vec::with_capacity(k);
    let mut start = 0;
    for i in 0..k {
        let len = base + usize::from(i < extra);
        out.push(&texts[start..start + len]);
        start += len;
    }
    out
}

/// What one replica computed on its shard (or the model on the whole batch).
struct ShardOutcome {
    grads: GradientsParams,
    /// The shard's loss, scaled by its share of the step.
    loss: f64,
    right: usize,
}

/// Loss, predictions and gradients of `model` on the texts of `batch`.
fn shard_gradients(
    model: &EncoderClassifier,
    loss_fn: &CrossEntropyLoss,
    texts: &Batch,
    guidance: Guidance,
    distill: Option<Distill>,
    share: Share,
) -> anyhow::Result<ShardOutcome> {
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
    let (mut loss, logits) = batch_loss(model, loss_fn, ids, mask, targets, teacher, share);
    if let Some(align) = guidance.align {
        loss = loss + align_loss(model, align, texts, share.texts)?;
    }
    let loss_value = pollster::block_on(read_f32(loss.clone().without_autodiff()))?[0] as f64;
    let predictions = pollster::block_on(read_f32(logits.without_autodiff()))?;
    let right = batch
        .iter()
        .enumerate()
        .filter(|(k, i)| argmax(&predictions[k * labels..(k + 1) * labels]) == data.labels[**i])
        .count();
    Ok(ShardOutcome {
        grads: GradientsParams::from_grads(loss.backward(), model),
        loss: loss_value,
        right,
    })
}

/// One AdamW step on the texts `batch` (indices into `data`).
///
/// With `plan.workers` > 1 the batch is split into that many shards, each run by a replica of
/// the model on its own thread: the replica is forked (`Module::fork`), so it has its own
/// autodiff graph and no node is shared between concurrent backward passes (burn #5573 was
/// about passes sharing the model's parameters). Each replica draws dropout masks from its
/// own stream; the shards' losses are scaled by their [`Share`]s, and their gradients summed
/// in shard order, so a step is the same for a given seed and worker count, whatever the
/// threads' timing.
pub fn train_batch(
    model: EncoderClassifier,
    optimizer: &mut ModuleOptimizer,
    loss_fn: &CrossEntropyLoss,
    texts: Batch,
    guidance: Guidance,
    plan: StepPlan,
) -> anyhow::Result<Step> {
    let outcome = batch_gradients(&model, loss_fn, &texts, guidance, &plan)?;
    check_gradients(&model, &outcome.grads)?;
    let model = optimizer.step(plan.lr, model, outcome.grads);
    Ok(Step {
        model,
        loss: outcome.loss,
        right: outcome.right,
    })
}

/// The whole batch's loss, hits and gradients, from one shard per worker (see [`train_batch`]).
fn batch_gradients(
    model: &EncoderClassifier,
    loss_fn: &CrossEntropyLoss,
    texts: &Batch,
    guidance: Guidance,
    plan: &StepPlan,
) -> anyhow::Result<ShardOutcome> {
    let parts = shards(texts.texts, plan.workers);
    if parts.len() <= 1 {
        return shard_gradients(model, loss_fn, texts, guidance, plan.distill, Share::WHOLE);
    }
    let weight_of = |shard: &[usize]| -> f64 {
        match plan.class_weights {
            Some(w) => shard
                .iter()
                .map(|&i| w.get(texts.data.labels[i]).copied().unwrap_or(1.0) as f64)
                .sum(),
            None => shard.len() as f64,
        }
    };
    let (total_weight, total_texts) = (weight_of(texts.texts), texts.texts.len() as f64);
    let device = model.device();
    let outcomes = on_threads(&parts, "a training thread", |k, shard| {
        let replica = model.clone().fork(&device);
        let share = Share {
            weight: weight_of(shard) / total_weight,
            texts: shard.len() as f64 / total_texts,
        };
        let batch = Batch {
            texts: shard,
            data: texts.data,
            epoch: texts.epoch,
        };
        let seed = SplitMix64::new(plan.dropout_seed ^ k as u64).next_u64();
        with_dropout_stream(seed, || {
            shard_gradients(&replica, loss_fn, &batch, guidance, plan.distill, share)
        })
    });
    let mut sum = GradientsAccumulator::new();
    let (mut loss, mut right) = (0.0, 0);
    for outcome in outcomes {
        let outcome = outcome?;
        sum.accumulate(model, outcome.grads);
        loss += outcome.loss;
        right += outcome.right;
    }
    Ok(ShardOutcome {
        grads: sum.grads(),
        loss,
        right,
    })
}

/// Adds up the gradients of every parameter (one readback per step); with `name_each`, finds
/// the first parameter whose gradient is not finite instead.
/// (burn 0.22's traversal calls `visit_float` and `enter_module`, never
/// `visit_float_with_path`: the path is kept here.)
struct GradientScan<'a> {
    grads: &'a GradientsParams,
    total: Option<Tensor<1>>,
    name_each: bool,
    first_bad: Option<String>,
    path: Vec<String>,
}

impl<'a> GradientScan<'a> {
    fn new(grads: &'a GradientsParams, name_each: bool) -> Self {
        GradientScan {
            grads,
            total: None,
            name_each,
            first_bad: None,
            path: Vec::new(),
        }
    }
}

impl ModuleVisitor for GradientScan<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let Some(grad) = self.grads.get::<D>(param.id) else {
            return;
        };
        let path = &self.path;
        // Σ g is finite exactly when every g is (short of overflow, itself a sign of
        // trouble), without the pass and buffer that |g| would take.
        let sum = grad.sum();
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
    let mut scan = GradientScan::new(grads, false);
    model.visit(&mut scan);
    let Some(total) = scan.total else {
        return Ok(());
    };
    let total = pollster::block_on(read_f32(total))?;
    if total.first().is_some_and(|t| t.is_finite()) {
        return Ok(());
    }
    let mut scan = GradientScan::new(grads, true);
    model.visit(&mut scan);
    bail!(
        "the gradient of {} is not finite (NaN or infinite); lower --lr or --clip, or check the data",
        scan.first_bad.unwrap_or_else(|| "a parameter".into())
    )
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
    use astrid::ModelConfig;
    use burn::module::ParamId;

    /// A one-layer BERT of width 16 over a 40-token vocabulary, with dropout `dropout`.
    fn tiny_model(dropout: f64) -> EncoderClassifier {
        let mut config = ModelConfig::bert(1, 16, 2, 32);
        config.vocab_size = 40;
        config.max_position_embeddings = 16;
        config.hidden_dropout = dropout;
        config.attention_dropout = dropout;
        config.classifier_dropout = dropout;
        config.init(&Device::flex())
    }

    /// Seven texts [CLS] w… [SEP] of 4 to 10 tokens, both classes, uneven.
    fn tiny_data() -> Encoded {
        let ids: Vec<Vec<u32>> = (0..7u32)
            .map(|t| {
                let words = (0..2 + t).map(|w| 10 + (t * 7 + w * 3) % 30);
                std::iter::once(1).chain(words).chain(std::iter::once(2)).collect()
            })
            .collect();
        Encoded {
            special: ids
                .iter()
                .map(|t| (0..t.len()).map(|p| p == 0 || p == t.len() - 1).collect())
                .collect(),
            labels: vec![0, 1, 1, 0, 1, 1, 1],
            ids,
        }
    }

    /// Every parameter's gradient, flattened, in the model's order.
    fn flat_gradients(model: &EncoderClassifier, grads: &GradientsParams) -> Vec<(ParamId, Vec<f32>)> {
        struct Collect<'a>(&'a GradientsParams, Vec<(ParamId, Vec<f32>)>);
        impl ModuleVisitor for Collect<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                if let Some(grad) = self.0.get::<D>(param.id) {
                    let values = pollster::block_on(read_f32(grad.reshape([-1]))).unwrap();
                    self.1.push((param.id, values));
                }
            }
        }
        let mut collect = Collect(grads, Vec::new());
        model.visit(&mut collect);
        collect.1
    }

    /// Every weight of a model, flattened, in the model's order.
    fn flat_weights(model: &EncoderClassifier) -> Vec<f32> {
        struct Collect(Vec<f32>);
        impl ModuleVisitor for Collect {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let values = pollster::block_on(read_f32(param.val().reshape([-1]))).unwrap();
                self.0.extend(values);
            }
        }
        let mut collect = Collect(Vec::new());
        model.valid().visit(&mut collect);
        collect.0
    }

    /// A NaN in one parameter's gradient stops training with that parameter's name (burn
    /// 0.22 never calls `visit_float_with_path`, which this check once relied on: it passed
    /// everything).
    #[test]
    fn a_gradient_that_is_not_finite_is_named() {
        let autodiff = Device::flex().autodiff();
        let model = tiny_model(0.0).to_device(&autodiff).train();
        let data = tiny_data();
        let loss_fn = CrossEntropyLossConfig::new().init(&autodiff);
        let texts: Vec<usize> = (0..7).collect();
        let batch = Batch {
            texts: &texts,
            data: &data,
            epoch: 0,
        };
        let mut grads = batch_gradients(&model, &loss_fn, &batch, Guidance::default(), &StepPlan::single(1e-3))
            .unwrap()
            .grads;
        check_gradients(&model, &grads).unwrap();
        let bias = &model.layers[0].output.bias.as_ref().unwrap();
        let poisoned = grads.get::<1>(bias.id).unwrap().mul_scalar(f64::NAN);
        grads.register::<1>(bias.id, poisoned);
        let error = check_gradients(&model, &grads).unwrap_err().to_string();
        assert!(error.contains("layers.0.output.bias"), "{error}");
    }

    /// Inference split between threads gives every text the logits it gets alone (each part
    /// is padded to its own longest text; padding is masked), in the order asked.
    #[test]
    fn a_forward_split_between_threads_gives_each_texts_logits() {
        let model = tiny_model(0.1).valid();
        let data = tiny_data();
        let texts = [6, 0, 3, 5, 1];
        let split = batch_logits(&model, &data.ids, &texts, 3).unwrap();
        assert_eq!(split.len(), 2 * texts.len());
        for (k, &i) in texts.iter().enumerate() {
            let alone = batch_logits(&model, &data.ids, &[i], 1).unwrap();
            for (a, b) in alone.iter().zip(&split[2 * k..2 * k + 2]) {
                assert!(
                    (a - b).abs() < 1e-5,
                    "text {i}: {alone:?} vs {:?}",
                    &split[2 * k..2 * k + 2]
                );
            }
        }
        let logits = predict_logits(&model, &data.ids, 4).unwrap();
        for (i, row) in logits.iter().enumerate() {
            let alone = batch_logits(&model, &data.ids, &[i], 1).unwrap();
            assert!(row.iter().zip(&alone).all(|(a, b)| (a - b).abs() < 1e-5), "text {i}");
        }
    }

    #[test]
    fn shards_split_a_batch_evenly_in_order() {
        let texts: Vec<usize> = (10..17).collect();
        let parts = shards(&texts, 3);
        assert_eq!(parts, vec![&texts[0..3], &texts[3..5], &texts[5..7]]);
        assert_eq!(shards(&texts, 1), vec![&texts[..]]);
        assert_eq!(shards(&texts[..2], 4).len(), 2, "no empty shard");
        assert_eq!(shards(&[], 2), vec![&[] as &[usize]]);
    }

    /// Shards weighted by their share of the class weight and of the texts give the whole
    /// batch's loss and gradient: cross-entropy with class weights plus distillation, uneven
    /// shards (3, 2, 2 texts) with different class mixes.
    #[test]
    fn a_batch_split_between_replicas_has_the_whole_batchs_gradient() {
        let autodiff = Device::flex().autodiff();
        let model = tiny_model(0.0).to_device(&autodiff).train();
        let data = tiny_data();
        let weights = [2.5f32, 0.6];
        let loss_fn = CrossEntropyLossConfig::new()
            .with_weights(Some(weights.to_vec()))
            .init(&autodiff);
        let teacher: Vec<Vec<f32>> = (0..7).map(|i| vec![0.3 * i as f32 - 1.0, 0.5]).collect();
        let guidance = Guidance {
            teacher_logits: Some(&teacher),
            align: None,
        };
        let texts: Vec<usize> = (0..7).collect();
        let batch = Batch {
            texts: &texts,
            data: &data,
            epoch: 0,
        };
        let plan = |workers| StepPlan {
            lr: 1e-3,
            distill: Some(Distill {
                temperature: 2.0,
                alpha: 0.3,
            }),
            class_weights: Some(&weights),
            workers,
            dropout_seed: 9,
        };
        let whole = batch_gradients(&model, &loss_fn, &batch, guidance, &plan(1)).unwrap();
        let split = batch_gradients(&model, &loss_fn, &batch, guidance, &plan(3)).unwrap();
        assert!(
            (whole.loss - split.loss).abs() < 1e-6,
            "{} vs {}",
            whole.loss,
            split.loss
        );
        assert_eq!(whole.right, split.right);
        let (a, b) = (
            flat_gradients(&model, &whole.grads),
            flat_gradients(&model, &split.grads),
        );
        assert_eq!(a.len(), b.len());
        assert!(a.len() > 10, "every parameter has a gradient: {} of them", a.len());
        for ((name, x), (_, y)) in a.iter().zip(&b) {
            let scale = x.iter().fold(0f32, |m, v| m.max(v.abs()));
            let gap = x.iter().zip(y).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
            assert!(
                gap <= 1e-5 * scale + 1e-8,
                "{name:?}: gradients differ by {gap} (largest {scale})"
            );
        }
        let largest = a.iter().flat_map(|(_, v)| v).fold(0f32, |m, v| m.max(v.abs()));
        assert!(largest > 1e-3, "the gradient is not flat ({largest})");
    }

    /// Two workers with dropout: the same seed gives the same weights, bit for bit, after
    /// three steps; another dropout seed gives others (the replicas' masks come from their
    /// streams, not from the device's shared generator).
    #[test]
    fn data_parallel_training_is_reproducible_for_a_seed_and_worker_count() {
        let autodiff = Device::flex().autodiff();
        let start = tiny_model(0.3);
        let data = tiny_data();
        let loss_fn = CrossEntropyLossConfig::new().init(&autodiff);
        let train = |seed: u64| {
            let mut model = start.clone().to_device(&autodiff).train();
            let mut optimizer = adamw(&TrainOptions {
                epochs: 1,
                batch_size: 7,
                learning_rate: 1e-2,
                weight_decay: 0.01,
                warmup_ratio: 0.0,
                clip_norm: 1.0,
                patience: 1,
                seed,
                distill: None,
                class_weights: None,
                select_by: SelectBy::Accuracy,
                workers: 2,
            });
            let texts: Vec<usize> = (0..7).collect();
            for step in 0..3 {
                let plan = StepPlan {
                    workers: 2,
                    dropout_seed: step_seed(seed, 0, step),
                    ..StepPlan::single(1e-2)
                };
                let batch = Batch {
                    texts: &texts,
                    data: &data,
                    epoch: 0,
                };
                model = train_batch(model, &mut optimizer, &loss_fn, batch, Guidance::default(), plan)
                    .unwrap()
                    .model;
            }
            flat_weights(&model)
        };
        let first = train(1);
        assert!(first != flat_weights(&start), "training moved no weight");
        assert!(first == train(1), "the same seed and worker count trained differently");
        assert!(first != train(2), "the dropout seed changed nothing");
    }

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
