//! The aligned views of a training text ([`View`]), which view each text gets in each epoch
//! ([`ViewPlan`], [`Probe`]), and a model's logits on views ([`view_logits`]).

use anyhow::Context;
use astrid::EncoderClassifier;
use astrid::erasure::{Eraser, Erasure, ranked_content};
use astrid::explain::{Baseline, baseline_words};
use astrid::rng::SplitMix64;
use burn::tensor::{Bool, Int, Tensor, TensorData};

use crate::training::align::{AlignSettings, AlignViews};
use crate::training::batches::{Encoded, batch_tensors};

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

#[cfg(test)]
mod tests {
    use burn::tensor::Device;

    use super::*;
    use crate::training::align::fixtures::{MASK, data, settings, tiny};

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
            let want = crate::training::batches::predict_logits(&model, &d.ids, 64).unwrap();
            let want: Vec<f32> = want.concat();
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-4, "{baseline:?}: {g} vs {w}");
            }
        }
    }
}
