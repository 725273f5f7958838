//! One optimizer step, its batch optionally split between model replicas on their own
//! threads ([`train_batch`]), and the check that stops training on a gradient that is not
//! finite.

use anyhow::bail;
use astrid::explain::{argmax, read_f32};
use astrid::model::{EncoderClassifier, with_dropout_stream};
use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::loss::CrossEntropyLoss;
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::{Int, Tensor, TensorData};

use crate::data::split::SplitMix64;
use crate::training::batches::{Encoded, batch_tensors, on_threads};
use crate::training::losses::{Distill, Guidance, Share, align_loss, batch_loss};

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
/// autodiff graph and no node is shared between concurrent backward passes (burn #5573). Each
/// replica draws dropout masks from its own stream; the shards' losses are scaled by their
/// [`Share`]s, and their gradients summed in shard order, so a step is the same for a given
/// seed and worker count, whatever the threads' timing.
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
/// The path is kept here: burn's traversal calls `visit_float` and `enter_module`, never
/// `visit_float_with_path`.
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

#[cfg(test)]
mod tests;
