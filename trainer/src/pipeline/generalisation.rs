//! Does similarity to the teacher predict generalisation? With a shifted part, every student
//! and every retrained copy of the teacher is one point: its similarity to the teacher against
//! what the shift costs it (test accuracy minus shifted accuracy). The rank correlation across
//! the models, with a bootstrap interval over them, says whether the low-similarity models are
//! the ones that fail; the same for i.i.d. accuracy says whether accuracy alone would have told.

use astrid::compare::ranks;
use astrid::rng::SplitMix64;
use astrid::schema::{Estimate, Generalisation, GeneralisationPoint, ModelResult, Role};

/// Bootstrap resamples of the models.
const RESAMPLES: usize = 2000;
/// A correlation at or below this, with its interval below 0, is a prediction.
const PREDICTS: f64 = -0.5;

/// The points and the two correlations, when there is a shifted part and three models or more.
pub fn generalisation(models: &[ModelResult], copies: &[GeneralisationPoint], seed: u64) -> Option<Generalisation> {
    let mut points: Vec<GeneralisationPoint> = models
        .iter()
        .filter(|m| m.role == Role::Student)
        .filter_map(|m| {
            Some(GeneralisationPoint {
                name: m.name.clone(),
                copy: false,
                similarity: m.similarity_mean?,
                calibrated: m.calibrated_mean,
                accuracy: m.accuracy,
                shifted_drop: m.shifted_drop?,
            })
        })
        .collect();
    points.extend(copies.iter().cloned());
    if points.len() < 3 {
        return None;
    }
    let drops: Vec<f64> = points.iter().map(|p| p.shifted_drop).collect();
    let similarity: Vec<f64> = points.iter().map(|p| p.similarity).collect();
    let accuracy: Vec<f64> = points.iter().map(|p| p.accuracy).collect();
    let by_similarity = correlation(&similarity, &drops, seed);
    let by_accuracy = correlation(&accuracy, &drops, seed);
    let finding = finding(by_similarity.as_ref(), by_accuracy.as_ref());
    Some(Generalisation {
        points,
        similarity_correlation: by_similarity,
        accuracy_correlation: by_accuracy,
        finding,
    })
}

/// Spearman's rank correlation of `x` and `y`; NaN when either is constant.
pub fn rank_correlation(x: &[f64], y: &[f64]) -> f64 {
    let (rx, ry) = (ranks(x), ranks(y));
    let n = rx.len() as f64;
    let (mx, my) = (rx.iter().sum::<f64>() / n, ry.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in rx.iter().zip(&ry) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx <= 0.0 || syy <= 0.0 {
        return f64::NAN;
    }
    sxy / (sxx * syy).sqrt()
}

/// The correlation with a 95% percentile interval over resamples of the models (resamples
/// in which either side is constant are skipped); `None` when it is not defined.
fn correlation(x: &[f64], y: &[f64], seed: u64) -> Option<Estimate> {
    let mean = rank_correlation(x, y);
    if !mean.is_finite() {
        return None;
    }
    let mut rng = SplitMix64::new(seed ^ 0x5eed_c0de);
    let mut draws: Vec<f64> = (0..RESAMPLES)
        .filter_map(|_| {
            let sample: Vec<usize> = (0..x.len()).map(|_| rng.below(x.len())).collect();
            let xs: Vec<f64> = sample.iter().map(|&i| x[i]).collect();
            let ys: Vec<f64> = sample.iter().map(|&i| y[i]).collect();
            Some(rank_correlation(&xs, &ys)).filter(|r| r.is_finite())
        })
        .collect();
    if draws.is_empty() {
        return None;
    }
    draws.sort_by(f64::total_cmp);
    let at = |q: f64| draws[((draws.len() - 1) as f64 * q).round() as usize];
    Some(Estimate {
        mean,
        ci: [at(0.025), at(0.975)],
    })
}

/// Whether a correlation with the drop predicts it: clearly negative (the higher the value,
/// the smaller the drop).
fn predicts(e: Option<&Estimate>) -> bool {
    e.is_some_and(|e| e.mean <= PREDICTS && e.ci[1] < 0.0)
}

/// One sentence: did similarity predict which models failed under the shift, and did it do
/// better or worse than i.i.d. accuracy?
fn finding(similarity: Option<&Estimate>, accuracy: Option<&Estimate>) -> String {
    let shown = |e: Option<&Estimate>| {
        e.map_or("ρ undefined: the same for every model".to_string(), |e| {
            format!("ρ = {:.2} [{:.2}, {:.2}]", e.mean, e.ci[0], e.ci[1])
        })
    };
    if similarity.is_none() {
        return "Whether similarity to the teacher predicted the failures under the shift cannot be said: the models' \
                similarities, or their drops in accuracy, are all the same."
            .to_string();
    }
    let verdict = if predicts(similarity) {
        "Similarity to the teacher predicted which models failed under the shift"
    } else {
        "Similarity to the teacher did not reliably predict which models failed under the shift"
    };
    let mean = |e: Option<&Estimate>| e.map_or(0.0, |e| e.mean);
    let comparison = match (predicts(similarity), predicts(accuracy)) {
        (true, false) => "i.i.d. accuracy did not",
        (false, true) => "i.i.d. accuracy did",
        _ if mean(similarity) < mean(accuracy) => "i.i.d. accuracy less so",
        _ => "i.i.d. accuracy as well or better",
    };
    format!(
        "{verdict} ({} with the drop in accuracy); {comparison} ({}).",
        shown(similarity),
        shown(accuracy)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_correlate_as_spearman_says() {
        assert!((rank_correlation(&[1.0, 2.0, 3.0], &[10.0, 20.0, 35.0]) - 1.0).abs() < 1e-12);
        assert!((rank_correlation(&[1.0, 2.0, 3.0, 4.0], &[4.0, 3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        assert!(rank_correlation(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]).is_nan());
        // Closed form without ties: 1 − 6 Σd² / (n (n² − 1)); here Σd² = 2, n = 4: 0.8.
        assert!((rank_correlation(&[1.0, 2.0, 3.0, 4.0], &[2.0, 1.0, 3.0, 4.0]) - 0.8).abs() < 1e-12);
    }

    fn point(name: &str, similarity: f64, accuracy: f64, shifted_drop: f64) -> GeneralisationPoint {
        GeneralisationPoint {
            name: name.into(),
            copy: false,
            similarity,
            calibrated: None,
            accuracy,
            shifted_drop,
        }
    }

    #[test]
    fn low_similarity_models_that_fail_the_shift_are_found_and_accuracy_does_not_see_them() {
        // Equal i.i.d. accuracy; the dissimilar ones lose the most under the shift.
        let points = [
            point("a", 0.9, 0.95, 0.01),
            point("b", 0.8, 0.94, 0.02),
            point("c", 0.7, 0.95, 0.05),
            point("d", 0.3, 0.95, 0.25),
            point("e", 0.2, 0.94, 0.30),
            point("f", 0.1, 0.95, 0.35),
        ];
        let g = generalisation(&[], &points, 7).unwrap();
        let by_similarity = g.similarity_correlation.unwrap();
        assert!((by_similarity.mean + 1.0).abs() < 1e-12, "{g:?}");
        assert!(by_similarity.ci[1] < 0.0, "{g:?}");
        assert!(
            g.finding.starts_with("Similarity to the teacher predicted"),
            "{}",
            g.finding
        );
        assert!(g.finding.contains("i.i.d. accuracy did not"), "{}", g.finding);
        // Too few models: no finding; every model alike: no correlation, said so.
        assert!(generalisation(&[], &points[..2], 7).is_none());
        let alike = [
            point("a", 0.5, 0.9, 0.1),
            point("b", 0.4, 0.9, 0.1),
            point("c", 0.3, 0.9, 0.1),
        ];
        let g = generalisation(&[], &alike, 7).unwrap();
        assert_eq!(g.similarity_correlation, None);
        assert!(
            g.finding.contains("cannot be said") && !g.finding.contains("NaN"),
            "{}",
            g.finding
        );
        assert!(serde_json::from_str::<Generalisation>(&serde_json::to_string(&g).unwrap()).is_ok());
    }
}
