//! How alike two explanations of the same text are: cosine similarity, Spearman rank
//! correlation and top-k overlap over the real tokens, and WordPiece pieces merged into words.

use crate::error::{Error, Result};

fn check_lengths(a: &[f32], b: &[f32], keep: &[bool]) -> Result<()> {
    if a.len() != b.len() || a.len() != keep.len() {
        return Err(Error::invalid(
            "attributions",
            format!(
                "cannot compare {} scores with {} (mask of {}): the two models must share a tokenizer",
                a.len(),
                b.len(),
                keep.len()
            ),
        ));
    }
    Ok(())
}

fn kept(values: &[f32], keep: &[bool]) -> Vec<f64> {
    values
        .iter()
        .zip(keep)
        .filter(|(_, k)| **k)
        .map(|(v, _)| *v as f64)
        .collect()
}

/// Cosine similarity of two attribution vectors over the positions where `keep` is true
/// (real tokens: padding excluded). 0 when either vector is all zeros there.
pub fn cosine(a: &[f32], b: &[f32], keep: &[bool]) -> Result<f64> {
    check_lengths(a, b, keep)?;
    let (a, b) = (kept(a, keep), kept(b, keep));
    let dot: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
    let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    Ok(if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        (dot / (na * nb)).clamp(-1.0, 1.0)
    })
}

/// The positions compared: the real tokens ([CLS]/[SEP] and other special tokens left out).
pub fn content_mask(special: &[bool]) -> Vec<bool> {
    special.iter().map(|s| !s).collect()
}

/// A student's similarity to the teacher on one text, as the report and the page measure
/// it: the cosine of their attributions over the real tokens.
pub fn similarity_to_teacher(student: &[f32], teacher: &[f32], special: &[bool]) -> Result<f64> {
    cosine(student, teacher, &content_mask(special))
}

/// Ranks from 1, ties sharing their average rank (as scipy's `rankdata`).
pub fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&i, &j| values[i].total_cmp(&values[j]));
    let mut out = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            out[k] = rank;
        }
        i = j + 1;
    }
    out
}

/// Spearman rank correlation over the kept positions (Pearson correlation of the ranks).
/// 0 when either side is constant.
pub fn spearman(a: &[f32], b: &[f32], keep: &[bool]) -> Result<f64> {
    check_lengths(a, b, keep)?;
    let (ra, rb) = (ranks(&kept(a, keep)), ranks(&kept(b, keep)));
    Ok(pearson(&ra, &rb))
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    if a.len() < 2 {
        return 0.0;
    }
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    if va == 0.0 || vb == 0.0 {
        0.0
    } else {
        (cov / (va * vb).sqrt()).clamp(-1.0, 1.0)
    }
}

/// Indices of the `k` largest |scores| among the kept positions (ties: lower index first).
pub fn top_k(values: &[f32], keep: &[bool], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len())
        .filter(|&i| keep.get(i).copied().unwrap_or(false))
        .collect();
    idx.sort_by(|&i, &j| values[j].abs().total_cmp(&values[i].abs()).then(i.cmp(&j)));
    idx.truncate(k);
    idx
}

/// Share of the teacher's top-k tokens (by |attribution|) that are also in the student's
/// top-k; k is capped at the number of kept tokens.
pub fn top_k_overlap(a: &[f32], b: &[f32], keep: &[bool], k: usize) -> Result<f64> {
    Ok(top_k_agreement(a, b, keep, k)?.feature)
}

/// How two explanations agree on their k most important tokens (Krishna et al., "The
/// Disagreement Problem in Explainable Machine Learning", 2022), each a share of k: the same
/// tokens (feature), the same token at the same rank (rank), the same tokens with the same
/// sign (sign), and both at once (signed rank).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TopKAgreement {
    pub feature: f64,
    pub rank: f64,
    pub sign: f64,
    pub signed_rank: f64,
}

/// [`TopKAgreement`] of `b` with `a` (the reference) over the positions `keep` marks; k is
/// capped at the number of kept positions (all zero when there are none).
pub fn top_k_agreement(a: &[f32], b: &[f32], keep: &[bool], k: usize) -> Result<TopKAgreement> {
    check_lengths(a, b, keep)?;
    let k = k.min(keep.iter().filter(|x| **x).count());
    if k == 0 {
        return Ok(TopKAgreement::default());
    }
    let (ta, tb) = (top_k(a, keep, k), top_k(b, keep, k));
    let same_sign = |i: usize| (a[i] >= 0.0) == (b[i] >= 0.0);
    let share = |n: usize| n as f64 / k as f64;
    Ok(TopKAgreement {
        feature: share(ta.iter().filter(|i| tb.contains(i)).count()),
        rank: share(ta.iter().zip(&tb).filter(|(x, y)| x == y).count()),
        sign: share(ta.iter().filter(|&&i| tb.contains(&i) && same_sign(i)).count()),
        signed_rank: share(ta.iter().zip(&tb).filter(|(x, y)| x == y && same_sign(**x)).count()),
    })
}

/// A word made of one or more WordPiece tokens, with the sum of their attributions.
#[derive(Debug, Clone, PartialEq)]
pub struct Word {
    pub text: String,
    pub attribution: f32,
    /// Indices of the tokens it is made of.
    pub tokens: Vec<usize>,
    pub special: bool,
}

/// Merges `##` continuation pieces into the word before them, summing attributions
/// (attributions are additive, so a word's score is its pieces' total).
pub fn merge_wordpieces(tokens: &[String], attributions: &[f32], special: &[bool]) -> Vec<Word> {
    let mut words: Vec<Word> = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let score = attributions.get(i).copied().unwrap_or(0.0);
        let is_special = special.get(i).copied().unwrap_or(false);
        match (token.strip_prefix("##"), words.last_mut()) {
            (Some(piece), Some(word)) if !is_special && !word.special => {
                word.text.push_str(piece);
                word.attribution += score;
                word.tokens.push(i);
            }
            _ => words.push(Word {
                text: token.clone(),
                attribution: score,
                tokens: vec![i],
                special: is_special,
            }),
        }
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreement_at_the_top_by_hand() {
        let keep = [false, true, true, true, true, false];
        let teacher = [9.0, 0.9, -0.5, 0.1, 0.3, 9.0];
        // Same order and signs: full agreement; [CLS]/[SEP] (not kept) play no part.
        let same = [-9.0, 1.8, -1.0, 0.2, 0.6, -9.0];
        let all = top_k_agreement(&teacher, &same, &keep, 3).unwrap();
        assert_eq!((all.feature, all.rank, all.sign, all.signed_rank), (1.0, 1.0, 1.0, 1.0));
        // Teacher's top 3: 1 (0.9), 2 (-0.5), 4 (0.3). Student's: 2 (0.8), 1 (-0.7), 3 (0.6).
        let other = [0.0, -0.7, 0.8, 0.6, 0.05, 0.0];
        let t = top_k_agreement(&teacher, &other, &keep, 3).unwrap();
        assert_eq!(t.feature, 2.0 / 3.0, "tokens 1 and 2 in both");
        assert_eq!(t.rank, 0.0, "none at the same rank");
        assert_eq!(t.sign, 0.0, "both shared tokens flip sign");
        assert_eq!(t.signed_rank, 0.0);
        let k_capped = top_k_agreement(&teacher, &same, &keep, 50).unwrap();
        assert_eq!(k_capped.feature, 1.0);
        assert_eq!(
            top_k_agreement(&teacher, &same, &[false; 6], 3).unwrap(),
            TopKAgreement::default()
        );
        assert!(top_k_agreement(&teacher, &same[..5], &keep, 3).is_err());
    }

    #[test]
    fn cosine_closed_forms_and_masking() {
        let all = [true; 3];
        assert!((cosine(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0], &all).unwrap() - 1.0).abs() < 1e-12);
        assert!((cosine(&[1.0, 0.0, 0.0], &[0.0, 1.0, 0.0], &all).unwrap()).abs() < 1e-12);
        assert!((cosine(&[1.0, 2.0, 3.0], &[-1.0, -2.0, -3.0], &all).unwrap() + 1.0).abs() < 1e-12);
        // The masked position (padding) would make them orthogonal if it counted.
        let keep = [true, true, false];
        assert!((cosine(&[1.0, 1.0, 100.0], &[1.0, 1.0, -100.0], &keep).unwrap() - 1.0).abs() < 1e-12);
        assert!(cosine(&[1.0], &[1.0, 2.0], &[true]).is_err());
    }

    /// Reference values from scipy.stats.spearmanr.
    #[test]
    fn spearman_matches_scipy_with_ties() {
        let all = [true; 5];
        assert!(
            (spearman(&[1.0, 2.0, 3.0, 4.0, 5.0], &[5.0, 6.0, 7.0, 8.0, 7.0], &all).unwrap() - 0.8207826816681233)
                .abs()
                < 1e-12
        );
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0, 5.0], &[5.0, 4.0, 3.0, 2.0, 1.0], &all).unwrap() + 1.0).abs() < 1e-12);
        assert_eq!(ranks(&[10.0, 20.0, 10.0, 30.0]), vec![1.5, 3.0, 1.5, 4.0]);
    }

    #[test]
    fn top_k_uses_magnitude() {
        let keep = [true; 4];
        assert_eq!(top_k(&[0.1, -0.9, 0.5, 0.0], &keep, 2), vec![1, 2]);
        let overlap = top_k_overlap(&[0.1, -0.9, 0.5, 0.0], &[0.9, -0.8, 0.0, 0.1], &keep, 2).unwrap();
        assert!((overlap - 0.5).abs() < 1e-12);
    }

    #[test]
    fn wordpieces_merge_into_words() {
        let tokens: Vec<String> = ["[CLS]", "un", "##believ", "##able", "case", "[SEP]"]
            .map(String::from)
            .into();
        let words = merge_wordpieces(
            &tokens,
            &[0.0, 0.1, 0.2, 0.3, -0.5, 0.0],
            &[true, false, false, false, false, true],
        );
        let texts: Vec<_> = words.iter().map(|w| w.text.as_str()).collect();
        assert_eq!(texts, ["[CLS]", "unbelievable", "case", "[SEP]"]);
        assert!((words[1].attribution - 0.6).abs() < 1e-6);
        assert_eq!(words[1].tokens, vec![1, 2, 3]);
    }
}
