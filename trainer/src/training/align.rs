//! Explanation-preserving distillation (`--training align`): students trained to keep the
//! teacher's reasons, with first-order objectives only. The methods in the literature (AD-KD,
//! e²KD) match attributions by double backpropagation, which burn 0.22's autodiff does not
//! offer; here the student instead gives the teacher's class probabilities on *aligned views*
//! of each training text, one probe per text and epoch, on top of plain distillation:
//!
//! - **path** points: each token's word embedding moved toward the IG baseline by its own
//!   amount, αᵢ = clamp(t + σ·εᵢ, 0, 1), t ~ U(0, 1), εᵢ ~ N(0, 1). IG's attribution of token i
//!   is the integral of ∂F/∂αᵢ along the diagonal αᵢ = t, so a student that gives the teacher's
//!   F on points scattered around that diagonal has the teacher's derivatives there (Srinivas &
//!   Fleuret, ICML 2018: distillation on noisy inputs matches Jacobians). The token-scaling
//!   space is shared by teacher and student whatever their widths.
//! - **evidence** views (ERASER's; the default): the text without the teacher's top-k content
//!   tokens, and with only them, from the teacher's IG on the training texts (few steps: a
//!   ranking is all that is needed; 8 Gauss-Legendre steps share 0.80 of the top 5 with 50).
//! - **slope** probes: the teacher's finite-difference slope along IG's path in a random ±1
//!   direction over the tokens (the IG integrand projected on it), matched in squared error.
//!
//! Measured on the embedded default (one teacher, five students): evidence views gave the
//! highest similarity and behavioural agreement, path points about the same similarity, and
//! slopes kept the students at the planted shortcut (README, "Students that keep the
//! teacher's reasons").
//!
//! The teacher's logits on every view of every epoch are computed once, before the students
//! train, and cached in the run directory ([`CACHE_FILE`]) with its attributions.

use std::path::Path;

use anyhow::Context;
use astrid::EncoderClassifier;
use astrid::erasure::{Eraser, Erasure, ranked_content};
use astrid::explain::{Attribution, Baseline, ExplainInput, ExplainOptions, Method, baseline_words, explain};
use astrid::files::write_atomic;
use burn::tensor::{Bool, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

pub use astrid::schema::{AlignSettings, AlignViews, EvidenceSettings, Objective};

use crate::training::train::{Encoded, batch_tensors};
use astrid::rng::SplitMix64;

/// One aligned view of a training text: token ids and, per token, how far along IG's path
/// from the baseline (1: the token as it is). Evidence views keep every α at 1.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub ids: Vec<u32>,
    pub special: Vec<bool>,
    pub alphas: Vec<f32>,
}

/// Which view each training text gets in each epoch.
#[derive(Debug, Clone)]
pub struct ViewPlan {
    pub settings: AlignSettings,
    seed: u64,
    /// Per training text: (without the teacher's top-k, only them), for evidence views.
    evidence: Vec<(View, View)>,
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut SplitMix64) -> f64 {
    let u = rng.unit().max(f64::MIN_POSITIVE);
    let v = rng.unit();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

impl ViewPlan {
    /// The plan; `attributions` (the teacher's, per training text) are needed for evidence views.
    pub fn new(
        settings: AlignSettings,
        seed: u64,
        data: &Encoded,
        attributions: Option<&[Vec<f32>]>,
        mask_id: Option<u32>,
    ) -> anyhow::Result<Self> {
        let mut evidence = Vec::new();
        if let Some(e) = settings.evidence {
            let attributions = attributions.context("evidence views need the teacher's attributions")?;
            let eraser = Eraser::new(e.erasure, mask_id)?;
            for ((ids, special), a) in data.ids.iter().zip(&data.special).zip(attributions) {
                let ranking = ranked_content(a, special);
                let top = &ranking[..e.top_k.min(ranking.len())];
                // Which flags stay: all when erased tokens become [MASK], the kept ones when deleted.
                let flags = |keep: &dyn Fn(usize) -> bool| -> Vec<bool> {
                    match e.erasure {
                        Erasure::Mask => special.clone(),
                        Erasure::Delete => (0..ids.len()).filter(|&i| keep(i)).map(|i| special[i]).collect(),
                    }
                };
                let view = |ids: Vec<u32>, special: Vec<bool>| View {
                    alphas: vec![1.0; ids.len()],
                    ids,
                    special,
                };
                evidence.push((
                    view(eraser.without(ids, top), flags(&|i| !top.contains(&i))),
                    view(
                        eraser.only(ids, special, top),
                        flags(&|i| special[i] || top.contains(&i)),
                    ),
                ));
            }
        }
        Ok(Self {
            settings,
            seed,
            evidence,
        })
    }

    /// What training text `text` is probed with in epoch `epoch` (0-based): the kinds in turn,
    /// shifted by one per epoch so every text sees each kind.
    pub fn probe(&self, epoch: usize, text: usize, data: &Encoded) -> Probe {
        let (ids, special) = (&data.ids[text], &data.special[text]);
        let kinds: &[u8] = match self.settings.views {
            AlignViews::Path => &[0],
            AlignViews::Evidence => &[1, 2],
            AlignViews::Both => &[0, 1, 2],
            AlignViews::Slope => &[3],
        };
        let mut rng = SplitMix64::new(
            self.seed
                ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                ^ (text as u64).wrapping_mul(0xD1B5_4A32_D192_ED03),
        );
        let at = |alphas: Vec<f32>| View {
            ids: ids.clone(),
            special: special.clone(),
            alphas,
        };
        match kinds[(epoch + text) % kinds.len()] {
            0 => {
                let t = rng.unit();
                let sigma = self.settings.noise.unwrap_or(0.0);
                Probe::Value(at(ids
                    .iter()
                    .map(|_| (t + sigma * normal(&mut rng)).clamp(0.0, 1.0) as f32)
                    .collect()))
            }
            1 => Probe::Value(self.evidence[text].0.clone()),
            2 => Probe::Value(self.evidence[text].1.clone()),
            _ => {
                let step = self.settings.step.unwrap_or(0.1);
                // A point of the path far enough from its ends that both steps stay on it.
                let t = step + (1.0 - 2.0 * step) * rng.unit();
                let direction: Vec<f64> = special
                    .iter()
                    .map(|&s| {
                        if s {
                            0.0
                        } else if rng.unit() < 0.5 {
                            -1.0
                        } else {
                            1.0
                        }
                    })
                    .collect();
                let point = |sign: f64| direction.iter().map(|d| (t + sign * step * d) as f32).collect();
                Probe::Slope {
                    ahead: at(point(1.0)),
                    behind: at(point(-1.0)),
                    step,
                }
            }
        }
    }
}

/// What the student must agree with the teacher on, for one text in one epoch.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// The class probabilities at one view.
    Value(View),
    /// (p(ahead) − p(behind)) / (2·step): the slope of the class probabilities.
    Slope { ahead: View, behind: View, step: f64 },
}

impl Probe {
    /// The views the model runs on, in the order their logits are kept.
    pub fn views(&self) -> Vec<&View> {
        match self {
            Probe::Value(v) => vec![v],
            Probe::Slope { ahead, behind, .. } => vec![ahead, behind],
        }
    }
}

/// Logits `[views, labels]` of `model` on `views`: word embeddings moved toward the IG
/// `baseline` by each token's α (`baseline + α · (words − baseline)`). The teacher's targets
/// and the student's loss go through this one function, so a student equal to the teacher
/// has zero alignment loss.
pub fn view_logits(
    model: &EncoderClassifier,
    views: &[&View],
    baseline: Baseline,
    (pad_id, mask_id): (Option<u32>, Option<u32>),
) -> anyhow::Result<Tensor<2>> {
    let device = model.device();
    let refs: Vec<&Vec<u32>> = views.iter().map(|v| &v.ids).collect();
    let (ids, mask): (Tensor<2, Int>, Tensor<2, Bool>) = batch_tensors(&refs, &device);
    let [batch, seq] = ids.dims();
    let (mut flat_ids, mut special, mut alphas) = (Vec::new(), Vec::new(), Vec::new());
    for v in views {
        for p in 0..seq {
            flat_ids.push(v.ids.get(p).copied().unwrap_or(0));
            // Padding keeps its own embedding: it is masked out anyway.
            special.push(v.special.get(p).copied().unwrap_or(true));
            alphas.push(v.alphas.get(p).copied().unwrap_or(1.0));
        }
    }
    let words = model.word_embeddings(ids);
    let base = baseline_words(model, baseline, &flat_ids, &special, (pad_id, mask_id), &words)?;
    let alphas = Tensor::<3>::from_data(TensorData::new(alphas, [batch, seq, 1]), &device);
    let points = base.clone() + (words - base) * alphas;
    Ok(model.forward_embeds(points, Some(mask)))
}

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
    let cached: Option<AlignCache> = std::fs::read(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .filter(|c: &AlignCache| {
            c.format == CACHE_FORMAT
                && c.settings == settings
                && c.seed == seed
                && c.teacher_sha256 == teacher_sha256
                && c.texts == train.ids.len()
                && c.epochs == epochs
                && c.logits.len() == epochs
                && c.logits.iter().all(|e| e.len() == train.ids.len())
                && c.attributions.as_ref().is_none_or(|a| a.len() == train.ids.len())
        });
    if let Some(cache) = cached {
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
    let mut logits = Vec::with_capacity(epochs);
    for epoch in 0..epochs {
        let probes: Vec<Probe> = (0..train.ids.len()).map(|i| plan.probe(epoch, i, train)).collect();
        let views: Vec<&View> = probes.iter().flat_map(Probe::views).collect();
        let mut rows = batched_logits(teacher, &views, settings.baseline, special_ids)?.into_iter();
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
    (pad_id, mask_id): (Option<u32>, Option<u32>),
    workers: usize,
    quiet: bool,
) -> anyhow::Result<Vec<Vec<f32>>> {
    let bar = crate::util::progress::bar(train.ids.len(), "teacher (align)", "IG", quiet);
    let options = ExplainOptions {
        attribution: Attribution::Ig,
        method: Method::GaussLegendre,
        n_steps: steps,
        baseline,
        workers,
        ..ExplainOptions::default()
    };
    let mut rows = Vec::with_capacity(train.ids.len());
    for (i, (ids, special)) in train.ids.iter().zip(&train.special).enumerate() {
        let input = ExplainInput {
            ids,
            special,
            pad_id,
            mask_id,
        };
        let e = pollster::block_on(explain(teacher, &input, &options))
            .with_context(|| format!("the teacher's attributions for aligned views: training text {}", i + 1))?;
        rows.push(e.attributions);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use astrid::ModelConfig;
    use burn::module::Module;
    use burn::optim::GradientsParams;
    use burn::tensor::Device;

    use super::*;
    use crate::training::train::{Batch, align_loss};

    const MASK: u32 = 3;

    /// Seeding and initialising are one step: tests run in parallel and the seed is the
    /// backend's, shared by all.
    static SEEDED: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn tiny(seed: u64, hidden: usize, device: &Device) -> EncoderClassifier {
        let _one_at_a_time = SEEDED.lock().unwrap_or_else(|e| e.into_inner());
        let mut config = ModelConfig::bert(1, hidden, 2, 2 * hidden);
        config.vocab_size = 40;
        config.max_position_embeddings = 16;
        config.hidden_dropout = 0.0;
        config.attention_dropout = 0.0;
        config.classifier_dropout = 0.0;
        device.seed(seed);
        config.init(device).valid()
    }

    /// Texts [CLS] w… [SEP] of 6 to 10 tokens; ids 10..40 are words, 1 [CLS], 2 [SEP].
    fn data(n: usize) -> Encoded {
        let mut rng = SplitMix64::new(5);
        let mut d = Encoded::default();
        for i in 0..n {
            let len = 6 + i % 5;
            let mut ids = vec![1];
            ids.extend((0..len - 2).map(|_| 10 + rng.below(30) as u32));
            ids.push(2);
            d.special.push((0..len).map(|p| p == 0 || p == len - 1).collect());
            d.ids.push(ids);
            d.labels.push(i % 2);
        }
        d
    }

    fn settings(views: AlignViews, erasure: Erasure) -> AlignSettings {
        // Normalised as `RunConfig::align_settings` does.
        AlignSettings {
            views,
            weight: 1.0,
            noise: matches!(views, AlignViews::Path | AlignViews::Both).then_some(0.3),
            step: (views == AlignViews::Slope).then_some(0.1),
            evidence: matches!(views, AlignViews::Evidence | AlignViews::Both).then_some(EvidenceSettings {
                top_k: 2,
                erasure,
                ig_steps: 4,
            }),
            baseline: Baseline::Zero,
        }
    }

    #[test]
    fn evidence_views_remove_or_keep_exactly_the_teachers_top_content_tokens() {
        let d = data(1);
        // Content positions 1..=4; the attributions rank 3, then 1 (position 0 is [CLS],
        // with the largest attribution, and must stay).
        let attributions = vec![vec![9.0, 0.5, -1.0, 0.9, 0.1, 5.0]];
        let ids = d.ids[0].clone();
        for erasure in Erasure::ALL {
            let plan = ViewPlan::new(
                settings(AlignViews::Evidence, erasure),
                1,
                &d,
                Some(&attributions),
                Some(MASK),
            )
            .unwrap();
            // Text 0: epoch 0 is the view without the top tokens, epoch 1 the one with only them.
            let value = |p: Probe| match p {
                Probe::Value(v) => v,
                other => panic!("{other:?}"),
            };
            let (without, only) = (value(plan.probe(0, 0, &d)), value(plan.probe(1, 0, &d)));
            match erasure {
                Erasure::Mask => {
                    assert_eq!(without.ids, [ids[0], MASK, ids[2], MASK, ids[4], ids[5]]);
                    assert_eq!(only.ids, [ids[0], ids[1], MASK, ids[3], MASK, ids[5]]);
                    assert_eq!(without.special, d.special[0]);
                    assert_eq!(only.special, d.special[0]);
                }
                Erasure::Delete => {
                    assert_eq!(without.ids, [ids[0], ids[2], ids[4], ids[5]]);
                    assert_eq!(only.ids, [ids[0], ids[1], ids[3], ids[5]]);
                    assert_eq!(without.special, [true, false, false, true]);
                    assert_eq!(only.special, [true, false, false, true]);
                }
            }
            for v in [&without, &only] {
                assert_eq!(v.alphas, vec![1.0; v.ids.len()]);
                assert_eq!(v.special.len(), v.ids.len());
            }
        }
    }

    #[test]
    fn path_views_stay_on_the_path_and_are_reproducible() {
        let d = data(4);
        let plan = ViewPlan::new(settings(AlignViews::Path, Erasure::Mask), 9, &d, None, Some(MASK)).unwrap();
        for text in 0..4 {
            let Probe::Value(v) = plan.probe(2, text, &d) else {
                panic!("path probes are values")
            };
            assert_eq!(v.ids, d.ids[text]);
            assert_eq!(v.special, d.special[text]);
            assert_eq!(v.alphas.len(), v.ids.len());
            assert!(v.alphas.iter().all(|a| (0.0..=1.0).contains(a)), "{:?}", v.alphas);
            // Tokens stray from the text's point on the path: not all equal.
            assert!(
                v.alphas.iter().any(|&a| (a - v.alphas[0]).abs() > 1e-3),
                "{:?}",
                v.alphas
            );
            assert_eq!(
                Probe::Value(v.clone()),
                plan.probe(2, text, &d),
                "same epoch and text, same view"
            );
            assert_ne!(Probe::Value(v), plan.probe(3, text, &d), "another epoch, another point");
        }
        // Both: path, without, only in turn.
        let attributions: Vec<Vec<f32>> = d.ids.iter().map(|t| vec![0.0; t.len()]).collect();
        let plan = ViewPlan::new(
            settings(AlignViews::Both, Erasure::Mask),
            9,
            &d,
            Some(&attributions),
            Some(MASK),
        )
        .unwrap();
        let kinds: Vec<bool> = (0..3)
            .map(|e| plan.probe(e, 0, &d).views()[0].ids.contains(&MASK))
            .collect();
        assert_eq!(kinds, [false, true, true]);
    }

    #[test]
    fn a_slope_steps_either_side_of_a_point_of_the_path_along_the_content_tokens() {
        let d = data(4);
        let plan = ViewPlan::new(settings(AlignViews::Slope, Erasure::Mask), 9, &d, None, Some(MASK)).unwrap();
        let mut signs = Vec::new();
        for text in 0..4 {
            let Probe::Slope { ahead, behind, step } = plan.probe(1, text, &d) else {
                panic!("slope views are slopes")
            };
            assert_eq!(step, 0.1);
            assert_eq!((&ahead.ids, &behind.ids), (&d.ids[text], &d.ids[text]));
            // The midpoint is one point of the path, every α within [0, 1].
            let t = (ahead.alphas[0] + behind.alphas[0]) / 2.0;
            for (p, (&a, &b)) in ahead.alphas.iter().zip(&behind.alphas).enumerate() {
                assert!((0.0..=1.0).contains(&a) && (0.0..=1.0).contains(&b));
                assert!(((a + b) / 2.0 - t).abs() < 1e-6, "{p}: {a} {b}");
                let gap = a - b;
                if d.special[text][p] {
                    assert_eq!(gap, 0.0, "special tokens stay on the path");
                } else {
                    assert!((gap.abs() - 0.2).abs() < 1e-6, "{gap}");
                    signs.push(gap > 0.0);
                }
            }
        }
        assert!(signs.contains(&true) && signs.contains(&false), "random ±1 directions");
    }

    #[test]
    fn a_view_with_every_token_whole_is_the_text() {
        let device = Device::flex();
        let model = tiny(1, 16, &device);
        let d = data(3);
        let views: Vec<View> = d
            .ids
            .iter()
            .zip(&d.special)
            .map(|(ids, special)| View {
                ids: ids.clone(),
                special: special.clone(),
                alphas: vec![1.0; ids.len()],
            })
            .collect();
        for baseline in Baseline::ALL {
            let refs: Vec<&View> = views.iter().collect();
            let got = pollster::block_on(astrid::explain::read_f32(
                view_logits(&model, &refs, baseline, (Some(0), Some(MASK))).unwrap(),
            ))
            .unwrap();
            let want = crate::training::train::predict_logits(&model, &d.ids, 64).unwrap();
            let want: Vec<f32> = want.concat();
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-4, "{baseline:?}: {g} vs {w}");
            }
        }
    }

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
            let (loss, _) = crate::training::train::batch_loss(
                &model,
                &loss_fn,
                ids,
                mask,
                targets,
                None,
                crate::training::train::Share::WHOLE,
            );
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
