//! Erasing tokens to see what a prediction rests on. Faithfulness (ERASER, DeYoung et al.,
//! ACL 2020): comprehensiveness is how much the predicted class's probability drops when a
//! model's top-attributed tokens are removed, sufficiency how much it drops when only they are
//! kept, each averaged over the shares of tokens in [`AOPC_FRACTIONS`] (area over the
//! perturbation curve). Behavioural agreement: the same removal, with the teacher's top tokens,
//! applied to a student. Only forward passes: this module builds the erased token sequences and
//! turns the probabilities back into scores; the caller runs the model.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How a token is taken out of a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Erasure {
    /// Replaced by [MASK]: the length and positions stay (what BERT saw in pre-training).
    #[default]
    Mask,
    /// Deleted: the text gets shorter (ERASER's own choice); positions shift.
    Delete,
}

impl Erasure {
    pub const ALL: [Erasure; 2] = [Erasure::Mask, Erasure::Delete];
}

named_enum!(
    Erasure,
    "erasure",
    [(Erasure::Mask, "mask"), (Erasure::Delete, "delete")]
);

/// The shares of a text's content tokens removed (or kept) for AOPC: ERASER's bins.
pub const AOPC_FRACTIONS: [f64; 5] = [0.01, 0.05, 0.10, 0.20, 0.50];

/// Content positions (not special tokens) from the most to the least supporting the
/// explained class: by attribution, largest first; ties by position.
pub fn ranked_content(attributions: &[f32], special: &[bool]) -> Vec<usize> {
    let mut positions: Vec<usize> = (0..attributions.len())
        .filter(|&i| !special.get(i).copied().unwrap_or(true))
        .collect();
    positions.sort_by(|&i, &j| attributions[j].total_cmp(&attributions[i]).then(i.cmp(&j)));
    positions
}

/// How many of `content` tokens a share stands for: at least one, rounded up (as ERASER).
pub fn tokens_for(fraction: f64, content: usize) -> usize {
    if content == 0 {
        return 0;
    }
    ((fraction * content as f64).ceil() as usize).clamp(1, content)
}

/// Erases tokens from one text. `mask_id` is needed for [`Erasure::Mask`].
#[derive(Debug, Clone, Copy)]
pub struct Eraser {
    pub erasure: Erasure,
    pub mask_id: Option<u32>,
}

impl Eraser {
    pub fn new(erasure: Erasure, mask_id: Option<u32>) -> Result<Self> {
        if erasure == Erasure::Mask && mask_id.is_none() {
            return Err(Error::invalid(
                "erasure",
                "mask: the tokenizer has no [MASK] token; use delete",
            ));
        }
        Ok(Self { erasure, mask_id })
    }

    /// `ids` with the tokens at `positions` erased.
    pub fn without(&self, ids: &[u32], positions: &[usize]) -> Vec<u32> {
        self.erase(ids, |i| positions.contains(&i))
    }

    /// `ids` with every content token erased but those at `positions` (special tokens stay).
    pub fn only(&self, ids: &[u32], special: &[bool], positions: &[usize]) -> Vec<u32> {
        self.erase(ids, |i| !special[i] && !positions.contains(&i))
    }

    fn erase(&self, ids: &[u32], gone: impl Fn(usize) -> bool) -> Vec<u32> {
        match (self.erasure, self.mask_id) {
            (Erasure::Mask, Some(mask)) => ids
                .iter()
                .enumerate()
                .map(|(i, &id)| if gone(i) { mask } else { id })
                .collect(),
            _ => ids
                .iter()
                .enumerate()
                .filter(|(i, _)| !gone(*i))
                .map(|(_, &id)| id)
                .collect(),
        }
    }

    /// The texts whose probabilities give AOPC for one ranking of a text's content tokens:
    /// for each share in [`AOPC_FRACTIONS`], the text without its top share, then the text with
    /// only its top share (`2 × AOPC_FRACTIONS.len()` sequences, in that order).
    pub fn aopc_views(&self, ids: &[u32], special: &[bool], ranking: &[usize]) -> Vec<Vec<u32>> {
        let removed = AOPC_FRACTIONS
            .iter()
            .map(|&f| self.without(ids, &ranking[..tokens_for(f, ranking.len())]));
        let kept = AOPC_FRACTIONS
            .iter()
            .map(|&f| self.only(ids, special, &ranking[..tokens_for(f, ranking.len())]));
        removed.chain(kept).collect()
    }
}

/// Comprehensiveness and sufficiency of one ranking on one text.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Aopc {
    /// Mean drop of the class's probability with the top tokens removed: higher = the
    /// ranking found what the prediction rests on.
    pub comprehensiveness: f64,
    /// Mean drop with only the top tokens kept: lower = they suffice.
    pub sufficiency: f64,
}

impl Aopc {
    /// From the full text's probability of the explained class and its probability on each of
    /// [`Eraser::aopc_views`]' texts, in that order.
    pub fn from_probabilities(full: f32, views: &[f32]) -> Result<Self> {
        let n = AOPC_FRACTIONS.len();
        if views.len() != 2 * n {
            return Err(Error::invalid(
                "views",
                format!("AOPC needs {} probabilities, got {}", 2 * n, views.len()),
            ));
        }
        let mean_drop = |part: &[f32]| part.iter().map(|&p| (full - p) as f64).sum::<f64>() / n as f64;
        Ok(Self {
            comprehensiveness: mean_drop(&views[..n]),
            sufficiency: mean_drop(&views[n..]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranking_skips_special_tokens_and_sorts_by_support() {
        let special = [true, false, false, false, true];
        assert_eq!(ranked_content(&[9.0, 0.1, -2.0, 0.5, 9.0], &special), vec![3, 1, 2]);
        assert_eq!(ranked_content(&[0.0, 1.0, 1.0, 0.0, 0.0], &special), vec![1, 2, 3]);
        assert_eq!(tokens_for(0.01, 40), 1);
        assert_eq!(tokens_for(0.2, 40), 8);
        assert_eq!(tokens_for(0.5, 3), 2);
        assert_eq!(tokens_for(0.5, 0), 0);
    }

    #[test]
    fn views_remove_and_keep_exactly_the_ranked_tokens() {
        let ids = [101, 5, 6, 7, 8, 102];
        let special = [true, false, false, false, false, true];
        let mask = Eraser::new(Erasure::Mask, Some(103)).unwrap();
        assert_eq!(mask.without(&ids, &[2, 4]), vec![101, 5, 103, 7, 103, 102]);
        assert_eq!(mask.only(&ids, &special, &[2, 4]), vec![101, 103, 6, 103, 8, 102]);
        let delete = Eraser::new(Erasure::Delete, None).unwrap();
        assert_eq!(delete.without(&ids, &[2, 4]), vec![101, 5, 7, 102]);
        assert_eq!(delete.only(&ids, &special, &[2, 4]), vec![101, 6, 8, 102]);
        assert!(Eraser::new(Erasure::Mask, None).is_err());
        // Four content tokens: 1%, 5%, 10%, 20% → 1 token, 50% → 2.
        let views = delete.aopc_views(&ids, &special, &[3, 1, 2, 4]);
        assert_eq!(views.len(), 10);
        assert_eq!(views[0], vec![101, 5, 6, 8, 102]);
        assert_eq!(views[4], vec![101, 6, 8, 102]);
        assert_eq!(views[5], vec![101, 7, 102]);
        assert_eq!(views[9], vec![101, 5, 7, 102]);
    }

    #[test]
    fn aopc_is_the_mean_drop() {
        let a = Aopc::from_probabilities(0.9, &[0.5, 0.4, 0.3, 0.2, 0.1, 0.9, 0.8, 0.7, 0.6, 1.0]).unwrap();
        assert!((a.comprehensiveness - (0.4 + 0.5 + 0.6 + 0.7 + 0.8) / 5.0).abs() < 1e-6);
        assert!((a.sufficiency - (0.0 + 0.1 + 0.2 + 0.3 - 0.1) / 5.0).abs() < 1e-6);
        assert!(Aopc::from_probabilities(0.9, &[0.5]).is_err());
    }

    /// A bag-of-embeddings linear model, p = σ(Σ w[id]) over the text: its IG from an
    /// all-absent baseline is exact (w per token, up to σ's curvature), its AOPC by hand.
    #[test]
    fn aopc_of_a_linear_bag_of_words_by_hand() {
        let weight = |id: u32| match id {
            10 => 2.0,
            11 => 1.0,
            12 => -1.0,
            _ => 0.0f64,
        };
        let prob = |ids: &[u32]| (1.0 / (1.0 + (-ids.iter().map(|&i| weight(i)).sum::<f64>()).exp())) as f32;
        let ids = [101, 10, 11, 12, 13, 102];
        let special = [true, false, false, false, false, true];
        let attributions: Vec<f32> = ids.iter().map(|&i| weight(i) as f32).collect();
        let ranking = ranked_content(&attributions, &special);
        assert_eq!(ranking, vec![1, 2, 4, 3]);
        let eraser = Eraser::new(Erasure::Delete, None).unwrap();
        let views = eraser.aopc_views(&ids, &special, &ranking);
        let probs: Vec<f32> = views.iter().map(|v| prob(v)).collect();
        let a = Aopc::from_probabilities(prob(&ids), &probs).unwrap();
        let s = |x: f64| 1.0 / (1.0 + (-x).exp());
        // Full sum 2. Removing 1 token (the 2.0) four times, then 2 tokens (2.0 and 1.0).
        let comp = (4.0 * (s(2.0) - s(0.0)) + (s(2.0) - s(-1.0))) / 5.0;
        // Keeping only {10} four times (sum 2: no drop), then {10, 11} (sum 3).
        let suff = (s(2.0) - s(3.0)) / 5.0;
        assert!((a.comprehensiveness - comp).abs() < 1e-6, "{a:?} vs {comp}");
        assert!((a.sufficiency - suff).abs() < 1e-6, "{a:?} vs {suff}");
    }
}
