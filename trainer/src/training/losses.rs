//! The losses of a training step: cross-entropy, distillation from the teacher's logits
//! ([`batch_loss`]) and the alignment term on the teacher's views ([`align_loss`]), each
//! scaled by a shard's [`Share`] of the step.

use anyhow::{Context, bail};
use astrid::model::EncoderClassifier;
use burn::nn::loss::CrossEntropyLoss;
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Bool, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::training::align::targets::AlignTargets;
use crate::training::align::views::{Probe, View, view_logits};
use crate::training::steps::Batch;

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

/// `loss · share`, without an operation when the share is 1, so a batch that is not split
/// has the numbers of an unscaled loss, bit for bit.
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
