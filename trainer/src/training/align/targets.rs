//! The teacher's targets for aligned views: its attributions on the training texts (for
//! evidence views) and its logits on every view of every epoch, computed once and cached in
//! the run directory ([`CACHE_FILE`]).

use std::path::Path;

use anyhow::Context;
use astrid::EncoderClassifier;
use astrid::explain::{Attribution, Baseline, ExplainOptions, Method};
use astrid::files::write_atomic;
use serde::{Deserialize, Serialize};

use crate::training::align::AlignSettings;
use crate::training::align::views::{Probe, View, ViewPlan, view_logits};
use crate::training::batches::Encoded;
use crate::training::explain_texts::{Progress, Texts, explain_texts};

/// The teacher's logits on each training text's probe, per epoch: `[epoch][text] → logits`
/// of the probe's views, one after the other.
pub struct AlignTargets {
    pub plan: ViewPlan,
    pub logits: Vec<Vec<Vec<f32>>>,
    pub special_ids: (Option<u32>, Option<u32>),
}

/// What [`CACHE_FILE`] holds: the teacher's attributions on the training texts (evidence views)
/// and its logits on every view, bound to the teacher's weights and the settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlignCache {
    pub format: u32,
    pub settings: AlignSettings,
    pub seed: u64,
    /// SHA-256 of the teacher's best weights.
    pub teacher_sha256: String,
    pub texts: usize,
    pub epochs: usize,
    pub attributions: Option<Vec<Vec<f32>>>,
    pub logits: Vec<Vec<Vec<f32>>>,
}

pub const CACHE_FILE: &str = "align/teacher_views.json";
const CACHE_FORMAT: u32 = 1;

/// Everything [`align_targets`] needs besides the teacher.
pub struct AlignInputs<'a> {
    pub settings: AlignSettings,
    pub seed: u64,
    pub epochs: usize,
    pub train: &'a Encoded,
    pub special_ids: (Option<u32>, Option<u32>),
    pub workers: usize,
    pub quiet: bool,
}

/// The teacher's attributions (evidence views) and its logits on every view: read from the
/// run's cache when it was made for this teacher and these settings, computed (and cached)
/// otherwise.
pub fn align_targets(
    teacher: &EncoderClassifier,
    teacher_sha256: &str,
    inputs: &AlignInputs,
    out: &Path,
) -> anyhow::Result<AlignTargets> {
    let AlignInputs {
        settings,
        seed,
        epochs,
        train,
        special_ids,
        workers,
        quiet,
    } = *inputs;
    let path = out.join(CACHE_FILE);
    if let Some(cache) = read_cache(&path, inputs, teacher_sha256) {
        let plan = ViewPlan::new(settings, seed, train, cache.attributions.as_deref(), special_ids.1)?;
        return Ok(AlignTargets {
            plan,
            logits: cache.logits,
            special_ids,
        });
    }
    let attributions = match settings.evidence {
        Some(e) => Some(teacher_attributions(
            teacher,
            train,
            e.ig_steps,
            settings.baseline,
            special_ids,
            workers,
            quiet,
        )?),
        None => None,
    };
    let plan = ViewPlan::new(settings, seed, train, attributions.as_deref(), special_ids.1)?;
    let logits = teacher_view_logits(teacher, &plan, inputs)?;
    let cache = AlignCache {
        format: CACHE_FORMAT,
        settings,
        seed,
        teacher_sha256: teacher_sha256.to_string(),
        texts: train.ids.len(),
        epochs,
        attributions,
        logits,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    }
    write_atomic(&path, &serde_json::to_vec(&cache)?)?;
    Ok(AlignTargets {
        plan,
        logits: cache.logits,
        special_ids,
    })
}

/// The cache at `path` when it was made for this teacher and these inputs (and fits them);
/// `None` when it is missing, unreadable or made for others.
fn read_cache(path: &Path, inputs: &AlignInputs, teacher_sha256: &str) -> Option<AlignCache> {
    let texts = inputs.train.ids.len();
    std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .filter(|c: &AlignCache| {
            c.format == CACHE_FORMAT
                && c.settings == inputs.settings
                && c.seed == inputs.seed
                && c.teacher_sha256 == teacher_sha256
                && c.texts == texts
                && c.epochs == inputs.epochs
                && c.logits.len() == inputs.epochs
                && c.logits.iter().all(|e| e.len() == texts)
                && c.attributions.as_ref().is_none_or(|a| a.len() == texts)
        })
}

/// The teacher's logits on every training text's probe in every epoch: `[epoch][text]`, the
/// probe's views one after the other.
fn teacher_view_logits(
    teacher: &EncoderClassifier,
    plan: &ViewPlan,
    inputs: &AlignInputs,
) -> anyhow::Result<Vec<Vec<Vec<f32>>>> {
    let train = inputs.train;
    let mut logits = Vec::with_capacity(inputs.epochs);
    for epoch in 0..inputs.epochs {
        let probes: Vec<Probe> = (0..train.ids.len()).map(|i| plan.probe(epoch, i, train)).collect();
        let views: Vec<&View> = probes.iter().flat_map(Probe::views).collect();
        let mut rows = batched_logits(teacher, &views, inputs.settings.baseline, inputs.special_ids)?.into_iter();
        // One entry per text: its views' logits, one after the other.
        let per_text = probes
            .iter()
            .map(|p| {
                (0..p.views().len())
                    .flat_map(|_| rows.next().unwrap_or_default())
                    .collect()
            })
            .collect();
        logits.push(per_text);
    }
    Ok(logits)
}

/// Logits of every view, 64 at a time, sorted by length to keep padding small.
fn batched_logits(
    model: &EncoderClassifier,
    views: &[&View],
    baseline: Baseline,
    special_ids: (Option<u32>, Option<u32>),
) -> anyhow::Result<Vec<Vec<f32>>> {
    let labels = model.config.num_labels;
    let mut order: Vec<usize> = (0..views.len()).collect();
    order.sort_by_key(|&i| views[i].ids.len());
    let mut out = vec![Vec::new(); views.len()];
    for chunk in order.chunks(64) {
        let batch: Vec<&View> = chunk.iter().map(|&i| views[i]).collect();
        let logits = view_logits(model, &batch, baseline, special_ids)?;
        let values = pollster::block_on(astrid::explain::read_f32(logits))?;
        if values.iter().any(|v| !v.is_finite()) {
            anyhow::bail!("the teacher's logits on an aligned view are not finite: retrain it (lower --lr)");
        }
        for (k, &i) in chunk.iter().enumerate() {
            out[i] = values[k * labels..(k + 1) * labels].to_vec();
        }
    }
    Ok(out)
}

/// The teacher's IG (Gauss-Legendre, `steps` points) on every training text, explaining its
/// own prediction.
fn teacher_attributions(
    teacher: &EncoderClassifier,
    train: &Encoded,
    steps: usize,
    baseline: Baseline,
    special_ids: (Option<u32>, Option<u32>),
    workers: usize,
    quiet: bool,
) -> anyhow::Result<Vec<Vec<f32>>> {
    let options = ExplainOptions {
        attribution: Attribution::Ig,
        method: Method::GaussLegendre,
        n_steps: steps,
        baseline,
        workers,
        ..ExplainOptions::default()
    };
    let texts = Texts {
        ids: &train.ids,
        special: &train.special,
        special_ids,
    };
    let progress = Progress {
        label: "teacher (align)",
        quiet,
        describe: &|i| format!("the teacher's attributions for aligned views: training text {}", i + 1),
    };
    let explanations = explain_texts(teacher, texts, &options, |_| None, progress)?;
    Ok(explanations.into_iter().map(|e| e.attributions).collect())
}

#[cfg(test)]
mod tests {
    use astrid::erasure::Erasure;
    use burn::module::Module;
    use burn::optim::GradientsParams;
    use burn::tensor::{Device, Int, Tensor, TensorData};

    use super::*;
    use crate::training::align::AlignViews;
    use crate::training::align::fixtures::{MASK, data, settings, tiny};
    use crate::training::batches::batch_tensors;
    use crate::training::losses::{Share, align_loss, batch_loss};
    use crate::training::steps::Batch;

    /// A fresh directory of this test's own.
    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("astrid-align-{name}-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn targets_for(teacher: &EncoderClassifier, d: &Encoded, views: AlignViews, out: &Path) -> AlignTargets {
        targets_of(teacher, "teacher-sha", d, views, out)
    }

    /// [`align_targets`] for a teacher whose weights hash to `sha`.
    fn targets_of(teacher: &EncoderClassifier, sha: &str, d: &Encoded, views: AlignViews, out: &Path) -> AlignTargets {
        let inputs = AlignInputs {
            settings: settings(views, Erasure::Mask),
            seed: 3,
            epochs: 2,
            train: d,
            special_ids: (Some(0), Some(MASK)),
            workers: 1,
            quiet: true,
        };
        align_targets(teacher, sha, &inputs, out).unwrap()
    }

    /// A one-element loss read back.
    fn value(loss: Tensor<1>) -> f32 {
        pollster::block_on(astrid::explain::read_f32(loss)).unwrap()[0]
    }

    /// A tiny model trained a little on the labels, so its probabilities are far from uniform
    /// (an untrained one gives ~0.5 everywhere, and any two such models nearly agree).
    /// `flip` trains it on the opposite labels: a model that disagrees with the teacher.
    fn taught(d: &Encoded, device: &Device, flip: bool) -> EncoderClassifier {
        let autodiff = device.clone().autodiff();
        let mut model = tiny(1, 16, device).to_device(&autodiff).train();
        let mut optimizer = burn::optim::AdamWConfig::new().init();
        let loss_fn = burn::nn::loss::CrossEntropyLossConfig::new().init(&autodiff);
        let refs: Vec<&Vec<u32>> = d.ids.iter().collect();
        for _ in 0..12 {
            let (ids, mask) = batch_tensors(&refs, &autodiff);
            let labels: Vec<i64> = d.labels.iter().map(|&l| (l ^ usize::from(flip)) as i64).collect();
            let targets = Tensor::<1, Int>::from_data(TensorData::new(labels, [d.labels.len()]), &autodiff);
            let (loss, _) = batch_loss(&model, &loss_fn, ids, mask, targets, None, Share::WHOLE);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(1e-2, model, grads);
        }
        model.valid().to_device(device)
    }

    #[test]
    fn the_alignment_loss_is_zero_for_the_teacher_itself() {
        let device = Device::flex();
        let d = data(6);
        let teacher = taught(&d, &device, false);
        let other = taught(&d, &device, true);
        let dir = scratch("zero");
        for views in [
            AlignViews::Path,
            AlignViews::Evidence,
            AlignViews::Both,
            AlignViews::Slope,
        ] {
            std::fs::remove_file(dir.join(CACHE_FILE)).ok();
            let targets = targets_for(&teacher, &d, views, dir.as_path());
            for epoch in 0..2 {
                let batch = Batch {
                    texts: &[0, 3, 5, 1],
                    data: &d,
                    epoch,
                };
                let loss = value(align_loss(&teacher, &targets, &batch, 1.0).unwrap());
                assert!(loss.abs() < 1e-6, "{views:?} epoch {epoch}: {loss}");
                let loss = value(align_loss(&other, &targets, &batch, 1.0).unwrap());
                assert!(
                    loss > 1e-3,
                    "{views:?}: a model that disagrees is not the teacher ({loss})"
                );
            }
        }
    }

    #[test]
    fn the_alignment_gradient_moves_a_student_toward_the_teachers_views() {
        let device = Device::flex();
        let d = data(8);
        let teacher = taught(&d, &device, false);
        let dir = scratch("gradient");
        for views in [AlignViews::Both, AlignViews::Slope] {
            std::fs::remove_file(dir.join(CACHE_FILE)).ok();
            moves_toward(&d, &targets_for(&teacher, &d, views, dir.as_path()));
        }
    }

    /// A few AdamW steps on the alignment loss alone halve it (from a loss large enough to
    /// show it: the teacher's outputs must vary over the views).
    fn moves_toward(d: &Encoded, targets: &AlignTargets) {
        let device = Device::flex();
        let autodiff = device.clone().autodiff();
        // A narrower student: the views are shared whatever the widths.
        let mut student = tiny(2, 8, &device).to_device(&autodiff).train();
        let mut optimizer = burn::optim::AdamWConfig::new().init();
        let texts: Vec<usize> = (0..8).collect();
        let loss_of = |model: &EncoderClassifier| {
            let batch = Batch {
                texts: &texts,
                data: d,
                epoch: 0,
            };
            align_loss(model, targets, &batch, 1.0).unwrap()
        };
        let before = value(loss_of(&student.valid()));
        assert!(
            before > 1e-4,
            "{:?}: the teacher's targets are too flat to test ({before})",
            targets.plan.settings.views
        );
        for _ in 0..40 {
            let loss = loss_of(&student);
            let grads = GradientsParams::from_grads(loss.backward(), &student);
            student = optimizer.step(1e-2, student, grads);
        }
        let after = value(loss_of(&student.valid()));
        assert!(
            after < 0.5 * before,
            "{:?}: the loss went from {before} to {after}",
            targets.plan.settings.views
        );
    }

    #[test]
    fn the_teachers_views_are_computed_once_per_teacher() {
        let device = Device::flex();
        let teacher = tiny(1, 16, &device);
        let d = data(5);
        let dir = scratch("cache");
        let first = targets_for(&teacher, &d, AlignViews::Evidence, dir.as_path());
        let path = dir.as_path().join(CACHE_FILE);
        let cache: AlignCache = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(cache.attributions.as_ref().map(Vec::len), Some(5));
        // A planted value shows whether the second call reads the cache.
        let mut planted = cache.clone();
        planted.logits[1][4] = vec![7.0, -7.0];
        std::fs::write(&path, serde_json::to_vec(&planted).unwrap()).unwrap();
        let second = targets_for(&teacher, &d, AlignViews::Evidence, dir.as_path());
        assert_eq!(second.logits[1][4], [7.0, -7.0]);
        assert_eq!(second.logits[0], first.logits[0]);
        // Another teacher: recomputed.
        let third = targets_of(&teacher, "another-teacher", &d, AlignViews::Evidence, dir.as_path());
        assert_eq!(third.logits, first.logits);
    }
}
