//! The comparison stage: each student's attributions against the teacher's (cosine with a
//! bootstrap interval, Spearman, top-k overlap, word-level cosine), IG's convergence, and on
//! the embedded corpus the attribution mass on the planted rationale and shortcut.

use astrid::compare::{content_mask, cosine, merge_wordpieces, similarity_to_teacher, spearman, top_k_overlap};
use astrid::schema::{ModelResult, Role, TextAttribution};

use crate::metrics::{Summary, summarise};
use crate::prepare::{EncodedSplits, Prepared};

/// Fills the comparison fields of `results` (teacher first, in the order of `all_attributions`).
pub fn compare(
    results: &mut [ModelResult],
    all_attributions: &[Vec<TextAttribution>],
    prepared: &Prepared,
    encoded: &EncodedSplits,
    top_k: usize,
    seed: u64,
) -> anyhow::Result<()> {
    let data = &prepared.data;
    let val_tokens = &encoded.validation_tokens;
    for (m, result) in results.iter_mut().enumerate() {
        let rows = &all_attributions[m];
        let deltas: Vec<f64> = rows
            .iter()
            .filter_map(|r| r.convergence_delta.map(|d| d.abs() as f64))
            .collect();
        result.mean_abs_convergence_delta = deltas.iter().sum::<f64>() / deltas.len().max(1) as f64;
        if data.has_planted_signal() {
            let (mut rationale, mut shortcut) = (Vec::new(), Vec::new());
            for (j, row) in rows.iter().enumerate() {
                let text_index = prepared.split.validation[j];
                let offsets = &val_tokens[j].offsets;
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
                let mass = |spans: &[(usize, usize)]| -> f64 {
                    row.attributions
                        .iter()
                        .zip(offsets)
                        .zip(&row.special)
                        .filter(|((_, (s, e)), special)| !**special && spans.iter().any(|(a, b)| s < b && e > a))
                        .map(|((a, _), _)| a.abs() as f64)
                        .sum::<f64>()
                        / total
                };
                rationale.push(mass(&data.rationale_spans[text_index]));
                if !data.shortcut_spans[text_index].is_empty() {
                    shortcut.push(mass(&data.shortcut_spans[text_index]));
                }
            }
            result.rationale_mass = Some(rationale.iter().sum::<f64>() / rationale.len().max(1) as f64);
            result.shortcut_mass = Some(shortcut.iter().sum::<f64>() / shortcut.len().max(1) as f64);
        }
        if result.role == Role::Teacher {
            continue;
        }
        let teacher = &all_attributions[0];
        let (mut cos, mut rho, mut overlap, mut word_cos) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (t, s) in teacher.iter().zip(rows) {
            let keep = content_mask(&t.special);
            cos.push(similarity_to_teacher(&s.attributions, &t.attributions, &t.special)?);
            rho.push(spearman(&s.attributions, &t.attributions, &keep)?);
            overlap.push(top_k_overlap(&t.attributions, &s.attributions, &keep, top_k)?);
            let tw = merge_wordpieces(&t.tokens, &t.attributions, &t.special);
            let sw = merge_wordpieces(&s.tokens, &s.attributions, &s.special);
            let ta: Vec<f32> = tw.iter().map(|w| w.attribution).collect();
            let sa: Vec<f32> = sw.iter().map(|w| w.attribution).collect();
            let wkeep = content_mask(&tw.iter().map(|w| w.special).collect::<Vec<_>>());
            word_cos.push(cosine(&sa, &ta, &wkeep)?);
        }
        let Summary { mean, std, ci95, .. } = summarise(&cos, seed);
        result.similarity_mean = Some(mean);
        result.similarity_std = Some(std);
        result.similarity_ci = Some(ci95);
        result.spearman_mean = Some(rho.iter().sum::<f64>() / rho.len().max(1) as f64);
        result.top_k_overlap_mean = Some(overlap.iter().sum::<f64>() / overlap.len().max(1) as f64);
        result.word_similarity_mean = Some(word_cos.iter().sum::<f64>() / word_cos.len().max(1) as f64);
    }

    Ok(())
}
