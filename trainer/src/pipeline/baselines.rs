//! Which baseline says nothing? IG distributes F(input) − F(baseline); when the baseline
//! already gives the predicted class most of its probability, there is little to distribute
//! and the attributions' direction is noise. For each model, the output at every candidate
//! baseline (zero, `[PAD]`, `[MASK]`, the mean embedding), averaged over the explained texts and
//! held against the class prior (the data's class shares).

use anyhow::Context;
use astrid::EncoderClassifier;
use astrid::explain::{Baseline, ExplainInput, baseline_probabilities};
use astrid::schema::BaselineOutput;
use astrid::tokenize::TokenizedText;

/// The mean output at each baseline the tokenizer allows, with its distance from `prior`.
pub fn baseline_outputs(
    name: &str,
    model: &EncoderClassifier,
    texts: &[TokenizedText],
    pad_id: Option<u32>,
    mask_id: Option<u32>,
    prior: &[f64],
) -> anyhow::Result<Vec<BaselineOutput>> {
    let mut outputs = Vec::new();
    for baseline in Baseline::ALL {
        if (baseline == Baseline::Pad && pad_id.is_none()) || (baseline == Baseline::Mask && mask_id.is_none()) {
            continue;
        }
        let mut sums = vec![0.0; prior.len()];
        for text in texts {
            let input = ExplainInput {
                ids: &text.ids,
                special: &text.special,
                pad_id,
                mask_id,
            };
            let probs = pollster::block_on(baseline_probabilities(model, &input, baseline))
                .with_context(|| format!("{name}: output at the {baseline} baseline"))?;
            for (s, p) in sums.iter_mut().zip(probs) {
                *s += p as f64;
            }
        }
        let mean_probs: Vec<f64> = sums.iter().map(|s| s / texts.len().max(1) as f64).collect();
        outputs.push(BaselineOutput {
            baseline: baseline.to_string(),
            distance_from_prior: total_variation(&mean_probs, prior),
            mean_probs,
        });
    }
    Ok(outputs)
}

/// Half the L1 distance of two distributions: 0 equal, 1 disjoint.
pub fn total_variation(p: &[f64], q: &[f64]) -> f64 {
    p.iter().zip(q).map(|(a, b)| (a - b).abs()).sum::<f64>() / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_variation_by_hand() {
        assert_eq!(total_variation(&[0.5, 0.5], &[0.5, 0.5]), 0.0);
        assert!((total_variation(&[0.9, 0.1], &[0.65, 0.35]) - 0.25).abs() < 1e-12);
        assert_eq!(total_variation(&[1.0, 0.0], &[0.0, 1.0]), 1.0);
    }
}
