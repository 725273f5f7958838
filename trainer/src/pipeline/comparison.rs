//! The comparison stage: each student's attributions against the teacher's (cosine with a
//! bootstrap interval, Spearman, agreement at the top k, word-level cosine), IG's convergence, and on
//! the embedded corpus the attribution mass on the planted rationale and shortcut.

use astrid::compare::{
    TopKAgreement, content_mask, cosine, merge_wordpieces, similarity_to_teacher, spearman, top_k_agreement,
};
use astrid::schema::results::MIN_SIGNAL;
use astrid::schema::{Agreements, ModelResult, Positions, Role, TextAttribution};

use crate::pipeline::prepare::{EncodedSplits, Prepared};
use crate::training::metrics::{Summary, estimate, summarise};

/// Fills the comparison fields of `results` (teacher first, in the order of `all_attributions`).
pub fn compare(
    results: &mut [ModelResult],
    all_attributions: &[Vec<TextAttribution>],
    prepared: &Prepared,
    encoded: &EncodedSplits,
    top_k: usize,
    positions: Positions,
    seed: u64,
) -> anyhow::Result<()> {
    let data = &prepared.data;
    let settings = Settings { top_k, positions, seed };
    for (m, result) in results.iter_mut().enumerate() {
        let rows = &all_attributions[m];
        result.mean_abs_convergence_delta = mean_abs_convergence_delta(rows);
        let signal = signal_summary(rows, data.label_names.len());
        result.mean_abs_signal = signal.mean_abs;
        result.weak_signal_texts = Some(signal.weak);
        result.mean_f_baseline_per_class = signal.mean_f_baseline;
        if data.has_planted_signal() {
            let (rationale, shortcut) = planted_masses(rows, prepared, encoded);
            result.rationale_mass = Some(rationale);
            result.shortcut_mass = Some(shortcut);
        }
        if result.role != Role::Teacher {
            fill_similarity(result, &all_attributions[0], rows, &settings)?;
        }
    }

    Ok(())
}

/// The settings every student is compared with the teacher by.
struct Settings {
    top_k: usize,
    positions: Positions,
    seed: u64,
}

/// Mean |convergence delta| over the texts that have one: how far IG's sum is from
/// F(input) − F(baseline), i.e. how well its integral was approximated.
fn mean_abs_convergence_delta(rows: &[TextAttribution]) -> f64 {
    let deltas: Vec<f64> = rows
        .iter()
        .filter_map(|r| r.convergence_delta.map(|d| d.abs() as f64))
        .collect();
    deltas.iter().sum::<f64>() / deltas.len().max(1) as f64
}

/// Mean shares of a model's attribution mass on the planted rationale and on the shortcut
/// (the latter over the texts that carry one): whether it learned the signal or the shortcut.
fn planted_masses(rows: &[TextAttribution], prepared: &Prepared, encoded: &EncodedSplits) -> (f64, f64) {
    let data = &prepared.data;
    let (mut rationale, mut shortcut) = (Vec::new(), Vec::new());
    for (j, row) in rows.iter().enumerate() {
        let text_index = prepared.split.validation[j];
        let offsets = &encoded.validation_tokens[j].offsets;
        let total: f64 = row
            .attributions
            .iter()
            .zip(&row.special)
            .filter(|(_, s)| !**s)
            .map(|(a, _)| a.abs() as f64)
            .sum();
        if total == 0.0 {
            continue;
        }
        let mass = |spans: &[(usize, usize)]| span_mass(row, offsets, spans) / total;
        rationale.push(mass(&data.rationale_spans[text_index]));
        if !data.shortcut_spans[text_index].is_empty() {
            shortcut.push(mass(&data.shortcut_spans[text_index]));
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    (mean(&rationale), mean(&shortcut))
}

/// The absolute attribution on the real tokens that overlap any of `spans` (character spans
/// of the text, compared with each token's offsets).
fn span_mass(row: &TextAttribution, offsets: &[(usize, usize)], spans: &[(usize, usize)]) -> f64 {
    row.attributions
        .iter()
        .zip(offsets)
        .zip(&row.special)
        .filter(|((_, (s, e)), special)| !**special && spans.iter().any(|(a, b)| s < b && e > a))
        .map(|((a, _), _)| a.abs() as f64)
        .sum::<f64>()
}

/// A student's similarity to the teacher by every measure: the cosine with its interval (also
/// over the informative texts alone) and the means of the others.
fn fill_similarity(
    result: &mut ModelResult,
    teacher: &[TextAttribution],
    rows: &[TextAttribution],
    settings: &Settings,
) -> anyhow::Result<()> {
    let per_text: Vec<TextAgreement> = teacher
        .iter()
        .zip(rows)
        .map(|(t, s)| text_agreement(t, &s.attributions, settings.top_k, settings.positions))
        .collect::<anyhow::Result<_>>()?;
    let cos: Vec<f64> = per_text.iter().map(|a| a.cosine).collect();
    let kept: Vec<f64> = informative(teacher, rows).into_iter().map(|j| cos[j]).collect();
    result.informative_texts = Some(kept.len());
    if !kept.is_empty() {
        let Summary { mean, ci95, .. } = summarise(&kept, settings.seed);
        result.similarity_informative_mean = Some(mean);
        result.similarity_informative_ci = Some(ci95);
    }
    let Summary { mean, std, ci95, .. } = summarise(&cos, settings.seed);
    result.similarity_mean = Some(mean);
    result.similarity_std = Some(std);
    result.similarity_ci = Some(ci95);
    let mean_of =
        |part: fn(&TextAgreement) -> f64| Some(per_text.iter().map(part).sum::<f64>() / per_text.len().max(1) as f64);
    result.spearman_mean = mean_of(|a| a.spearman);
    result.top_k_overlap_mean = mean_of(|a| a.top.feature);
    result.rank_agreement_mean = mean_of(|a| a.top.rank);
    result.sign_agreement_mean = mean_of(|a| a.top.sign);
    result.signed_rank_agreement_mean = mean_of(|a| a.top.signed_rank);
    result.word_similarity_mean = mean_of(|a| a.word_cosine);
    Ok(())
}

/// How two models' explanations of one text agree, by every measure.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TextAgreement {
    /// Over `positions`; the other measures over the real tokens.
    pub cosine: f64,
    pub spearman: f64,
    pub top: TopKAgreement,
    /// Cosine of the word-level attributions (WordPiece pieces summed).
    pub word_cosine: f64,
}

impl TextAgreement {
    /// The mean of several agreements of one text (with several references).
    pub fn mean(parts: &[TextAgreement]) -> TextAgreement {
        let n = parts.len().max(1) as f64;
        let sum = |f: fn(&TextAgreement) -> f64| parts.iter().map(f).sum::<f64>() / n;
        TextAgreement {
            cosine: sum(|a| a.cosine),
            spearman: sum(|a| a.spearman),
            top: TopKAgreement {
                feature: sum(|a| a.top.feature),
                rank: sum(|a| a.top.rank),
                sign: sum(|a| a.top.sign),
                signed_rank: sum(|a| a.top.signed_rank),
            },
            word_cosine: sum(|a| a.word_cosine),
        }
    }
}

/// `other` (attributions of the same tokens by another model, or a permutation) against
/// `reference`'s explanation of one text.
pub fn text_agreement(
    reference: &TextAttribution,
    other: &[f32],
    top_k: usize,
    positions: Positions,
) -> anyhow::Result<TextAgreement> {
    let keep = content_mask(&reference.special);
    let position_cosine = match positions {
        Positions::Content => similarity_to_teacher(other, &reference.attributions, &reference.special)?,
        Positions::Padded => cosine(other, &reference.attributions, &vec![true; other.len()])?,
    };
    let words_of = |attributions: &[f32]| {
        let words = merge_wordpieces(&reference.tokens, attributions, &reference.special);
        let values: Vec<f32> = words.iter().map(|w| w.attribution).collect();
        let keep = content_mask(&words.iter().map(|w| w.special).collect::<Vec<_>>());
        (values, keep)
    };
    let ((rw, wkeep), (ow, _)) = (words_of(&reference.attributions), words_of(other));
    Ok(TextAgreement {
        cosine: position_cosine,
        spearman: spearman(other, &reference.attributions, &keep)?,
        top: top_k_agreement(&reference.attributions, other, &keep, top_k)?,
        word_cosine: cosine(&ow, &rw, &wkeep)?,
    })
}

/// Each measure's mean over the texts with its 95% interval.
pub fn agreements(per_text: &[TextAgreement], seed: u64) -> Agreements {
    let of = |f: fn(&TextAgreement) -> f64| estimate(&per_text.iter().map(f).collect::<Vec<_>>(), seed);
    Agreements {
        cosine: of(|a| a.cosine),
        spearman: of(|a| a.spearman),
        top_k_overlap: of(|a| a.top.feature),
        word_cosine: of(|a| a.word_cosine),
    }
}

/// What IG had to distribute on a model's explained texts.
#[derive(Debug, PartialEq)]
struct SignalSummary {
    /// Mean |F(input) − F(baseline)|.
    mean_abs: Option<f64>,
    /// Texts below [`MIN_SIGNAL`].
    weak: usize,
    /// Mean F(baseline) per explained class.
    mean_f_baseline: Vec<Option<f64>>,
}

fn signal_summary(rows: &[TextAttribution], classes: usize) -> SignalSummary {
    let signals: Vec<f64> = rows.iter().filter_map(|r| r.signal()).collect();
    let mut sums = vec![(0.0, 0usize); classes];
    for row in rows {
        if let (Some(f), Some(slot)) = (row.f_baseline, sums.get_mut(row.target)) {
            slot.0 += f as f64;
            slot.1 += 1;
        }
    }
    SignalSummary {
        mean_abs: (!signals.is_empty()).then(|| signals.iter().sum::<f64>() / signals.len() as f64),
        weak: signals.iter().filter(|&&s| s < MIN_SIGNAL).count(),
        mean_f_baseline: sums
            .into_iter()
            .map(|(sum, n)| (n > 0).then(|| sum / n as f64))
            .collect(),
    }
}

/// The texts (positions) on which both the teacher's and the student's attributions carry
/// at least [`MIN_SIGNAL`]: there the direction of both vectors means something.
fn informative(teacher: &[TextAttribution], student: &[TextAttribution]) -> Vec<usize> {
    teacher
        .iter()
        .zip(student)
        .enumerate()
        .filter(|(_, (t, s))| {
            t.signal().is_some_and(|x| x >= MIN_SIGNAL) && s.signal().is_some_and(|x| x >= MIN_SIGNAL)
        })
        .map(|(j, _)| j)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(target: usize, f_input: f32, f_baseline: f32) -> TextAttribution {
        TextAttribution {
            index: 0,
            tokens: vec![],
            special: vec![],
            label: target,
            explanation: astrid::Explanation {
                attributions: vec![],
                target,
                probs: vec![],
                convergence_delta: None,
                f_input: Some(f_input),
                f_baseline: Some(f_baseline),
                gradient_evaluations: 0,
            },
        }
    }

    #[test]
    fn signal_is_counted_and_baselines_averaged_per_class() {
        let rows = [row(0, 0.9, 0.5), row(1, 0.93, 0.92), row(1, 0.8, 0.4)];
        let s = signal_summary(&rows, 3);
        assert!((s.mean_abs.unwrap() - (0.4 + 0.01 + 0.4) / 3.0).abs() < 1e-6);
        assert_eq!(s.weak, 1, "0.93 - 0.92 is below the threshold");
        assert!((s.mean_f_baseline[0].unwrap() - 0.5).abs() < 1e-6);
        assert!((s.mean_f_baseline[1].unwrap() - 0.66).abs() < 1e-6);
        assert_eq!(s.mean_f_baseline[2], None);
        let mut missing = row(0, 0.0, 0.0);
        missing.explanation.f_input = None;
        assert_eq!(signal_summary(&[missing], 2).mean_abs, None);
    }

    #[test]
    fn informative_texts_need_signal_in_both_models() {
        let teacher = [row(0, 0.9, 0.1), row(0, 0.9, 0.88), row(1, 0.7, 0.2)];
        let student = [row(0, 0.6, 0.2), row(0, 0.9, 0.1), row(1, 0.51, 0.5)];
        assert_eq!(informative(&teacher, &student), vec![0]);
    }
}
