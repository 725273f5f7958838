//! Classification metrics and the statistics of per-text similarities.

use serde::{Deserialize, Serialize};

use astrid::schema::Estimate;

use crate::data::split::SplitMix64;

/// Accuracy, macro-F1 and the confusion matrix (`confusion[true][predicted]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Classification {
    pub accuracy: f64,
    pub macro_f1: f64,
    pub confusion: Vec<Vec<usize>>,
}

pub fn classification(predicted: &[usize], truth: &[usize], classes: usize) -> Classification {
    let mut confusion = vec![vec![0usize; classes]; classes];
    for (&p, &t) in predicted.iter().zip(truth) {
        confusion[t][p] += 1;
    }
    let right: usize = (0..classes).map(|c| confusion[c][c]).sum();
    let f1s: Vec<f64> = (0..classes)
        .map(|c| {
            let tp = confusion[c][c] as f64;
            let predicted_c: usize = (0..classes).map(|t| confusion[t][c]).sum();
            let actual_c: usize = confusion[c].iter().sum();
            let precision = if predicted_c == 0 { 0.0 } else { tp / predicted_c as f64 };
            let recall = if actual_c == 0 { 0.0 } else { tp / actual_c as f64 };
            if precision + recall == 0.0 {
                0.0
            } else {
                2.0 * precision * recall / (precision + recall)
            }
        })
        .collect();
    Classification {
        accuracy: right as f64 / truth.len().max(1) as f64,
        macro_f1: f1s.iter().sum::<f64>() / classes as f64,
        confusion,
    }
}

/// Mean, standard deviation and a 95% percentile-bootstrap interval of the mean.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub mean: f64,
    pub std: f64,
    pub ci95: [f64; 2],
    pub n: usize,
}

pub fn summarise(values: &[f64], seed: u64) -> Summary {
    let n = values.len();
    if n == 0 {
        return Summary {
            mean: f64::NAN,
            std: f64::NAN,
            ci95: [f64::NAN, f64::NAN],
            n,
        };
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let var = if n > 1 {
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64
    } else {
        0.0
    };
    let mut rng = SplitMix64::new(seed);
    let mut means: Vec<f64> = (0..2000)
        .map(|_| (0..n).map(|_| values[rng.below(n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    Summary {
        mean,
        std: var.sqrt(),
        ci95: [means[49], means[1949]],
        n,
    }
}

/// The mean of `values` with its 95% bootstrap interval.
pub fn estimate(values: &[f64], seed: u64) -> Estimate {
    let Summary { mean, ci95, .. } = summarise(values, seed);
    Estimate { mean, ci: ci95 }
}

/// A statistic of several per-text series resampled together (a paired bootstrap: one
/// resample of the texts serves every series), with its 95% percentile interval. `stat` gets
/// the indices of the texts in a sample (all of them for the estimate itself); samples where
/// it is not finite are left out of the interval.
pub fn paired_bootstrap(n: usize, seed: u64, stat: impl Fn(&[usize]) -> f64) -> Option<Estimate> {
    if n == 0 {
        return None;
    }
    let all: Vec<usize> = (0..n).collect();
    let mean = stat(&all);
    if !mean.is_finite() {
        return None;
    }
    let mut rng = SplitMix64::new(seed);
    let mut sample = vec![0; n];
    let mut values: Vec<f64> = (0..2000)
        .filter_map(|_| {
            sample.iter_mut().for_each(|i| *i = rng.below(n));
            Some(stat(&sample)).filter(|v| v.is_finite())
        })
        .collect();
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    let ci = if values.is_empty() {
        [mean, mean]
    } else {
        [at(0.025), at(0.975)]
    };
    Some(Estimate { mean, ci })
}

/// The mean of `values` over the texts at `sample`.
pub fn mean_at(values: &[f64], sample: &[usize]) -> f64 {
    sample.iter().map(|&i| values[i]).sum::<f64>() / sample.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference values from scikit-learn (accuracy_score, f1_score(average="macro")).
    #[test]
    fn metrics_match_sklearn() {
        let truth = [0, 0, 1, 1, 1, 2, 2, 0];
        let pred = [0, 1, 1, 1, 0, 2, 1, 0];
        let c = classification(&pred, &truth, 3);
        assert!((c.accuracy - 0.625).abs() < 1e-12);
        assert!((c.macro_f1 - 0.6349206349206349).abs() < 1e-12, "{}", c.macro_f1);
        assert_eq!(c.confusion, vec![vec![2, 1, 0], vec![1, 2, 0], vec![0, 1, 1]]);
    }

    #[test]
    fn bootstrap_interval_brackets_the_mean() {
        let values: Vec<f64> = (0..100).map(|i| (i as f64 / 99.0) * 0.4 + 0.5).collect();
        let s = summarise(&values, 1);
        assert!((s.mean - 0.7).abs() < 1e-12);
        assert!(s.ci95[0] < s.mean && s.mean < s.ci95[1]);
        assert!(s.ci95[1] - s.ci95[0] < 0.1 && s.ci95[1] - s.ci95[0] > 0.01);
        assert_eq!(summarise(&[0.5; 10], 1).ci95, [0.5, 0.5]);
    }

    #[test]
    fn paired_bootstrap_of_a_ratio_of_identical_series_is_exactly_one() {
        let a: Vec<f64> = (0..30).map(|i| 0.1 + i as f64 / 40.0).collect();
        let e = paired_bootstrap(a.len(), 3, |s| mean_at(&a, s) / mean_at(&a, s)).unwrap();
        assert_eq!(e.mean, 1.0);
        assert_eq!(e.ci, [1.0, 1.0]);
        let b: Vec<f64> = a.iter().map(|x| x * 0.5 + 0.05).collect();
        let e = paired_bootstrap(a.len(), 3, |s| mean_at(&b, s) / mean_at(&a, s)).unwrap();
        assert!(
            e.ci[0] <= e.mean && e.mean <= e.ci[1] && e.ci[1] - e.ci[0] < 0.2,
            "{e:?}"
        );
        assert_eq!(paired_bootstrap(0, 3, |_| 1.0), None);
        assert_eq!(paired_bootstrap(3, 3, |_| f64::NAN), None);
    }
}
