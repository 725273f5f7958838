//! A deterministic, stratified train / validation / test split.

use serde::{Deserialize, Serialize};

use super::Dataset;

pub use astrid::rng::SplitMix64;

/// Indices of the texts in each part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Split {
    pub seed: u64,
    pub train: Vec<usize>,
    pub validation: Vec<usize>,
    pub test: Vec<usize>,
    /// Texts held out from the i.i.d. parts to test generalisation (the embedded corpus's
    /// shifted part, `--shift-data`, `--shift-by`); empty without.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shifted: Vec<usize>,
}

impl Split {
    /// Whether this (saved) split fits a data set of `texts` texts: every index in range and
    /// used once, no empty part. A split that does not fit means the data or the split file
    /// changed since the run started.
    pub fn check(&self, texts: usize) -> Result<(), String> {
        let mut seen = vec![false; texts];
        for (part, indices) in [
            ("train", &self.train),
            ("validation", &self.validation),
            ("test", &self.test),
            ("shifted", &self.shifted),
        ] {
            if indices.is_empty() && part != "shifted" {
                return Err(format!("its {part} part is empty"));
            }
            for &i in indices.iter() {
                if i >= texts {
                    return Err(format!(
                        "its {part} part names text {} but the data has {texts} texts",
                        i + 1
                    ));
                }
                if std::mem::replace(&mut seen[i], true) {
                    return Err(format!("text {} is in it twice", i + 1));
                }
            }
        }
        Ok(())
    }
}

/// Shuffles each class with `seed` and deals `validation` and `test` fractions of it out,
/// so every part keeps the class balance. Each part gets at least one text per class when
/// the class has three or more.
pub fn stratified(data: &Dataset, validation: f64, test: f64, seed: u64) -> Split {
    stratified_except(data, validation, test, seed, Vec::new())
}

/// [`stratified`] over the texts not in `shifted`, which become the shifted part.
pub fn stratified_except(data: &Dataset, validation: f64, test: f64, seed: u64, shifted: Vec<usize>) -> Split {
    let held_out: std::collections::BTreeSet<usize> = shifted.iter().copied().collect();
    let mut rng = SplitMix64::new(seed);
    let mut split = Split {
        seed,
        train: Vec::new(),
        validation: Vec::new(),
        test: Vec::new(),
        shifted,
    };
    for class in 0..data.label_names.len() {
        let mut members: Vec<usize> = (0..data.len())
            .filter(|&i| data.labels[i] == class && !held_out.contains(&i))
            .collect();
        rng.shuffle(&mut members);
        let n = members.len();
        let share = |fraction: f64| {
            if n >= 3 {
                ((n as f64 * fraction).round() as usize).max(1)
            } else {
                0
            }
        };
        let (n_val, n_test) = (share(validation), share(test));
        split.validation.extend_from_slice(&members[..n_val]);
        split.test.extend_from_slice(&members[n_val..n_val + n_test]);
        split.train.extend_from_slice(&members[n_val + n_test..]);
    }
    for part in [&mut split.train, &mut split.validation, &mut split.test] {
        part.sort_unstable();
    }
    split
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(labels: Vec<usize>) -> Dataset {
        Dataset {
            texts: labels.iter().map(|l| format!("t{l}")).collect(),
            labels,
            label_names: vec!["a".into(), "b".into()],
            source: "test".into(),
            dropped_blank_labels: 0,
            rationale_spans: vec![],
            shortcut_spans: vec![],
            sha256: None,
            shift_values: Vec::new(),
        }
    }

    #[test]
    fn a_split_that_does_not_fit_the_data_is_named() {
        let s = stratified(&data((0..100).map(|i| i % 2).collect()), 0.1, 0.1, 1);
        s.check(100).unwrap();
        assert!(s.check(50).unwrap_err().contains("the data has 50 texts"));
        let mut twice = s.clone();
        twice.test.push(twice.train[0]);
        assert!(twice.check(100).unwrap_err().contains("twice"));
        let mut empty = s;
        empty.validation.clear();
        assert!(empty.check(100).unwrap_err().contains("validation part is empty"));
    }

    #[test]
    fn split_is_stratified_disjoint_and_deterministic() {
        let labels: Vec<usize> = (0..300).map(|i| usize::from(i % 3 == 0)).collect();
        let d = data(labels);
        let s = stratified(&d, 0.1, 0.1, 42);
        assert_eq!(s, stratified(&d, 0.1, 0.1, 42));
        assert_ne!(s.validation, stratified(&d, 0.1, 0.1, 43).validation);
        let mut all: Vec<usize> = s.train.iter().chain(&s.validation).chain(&s.test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..300).collect::<Vec<_>>());
        let ones = |part: &[usize]| part.iter().filter(|&&i| d.labels[i] == 1).count();
        assert_eq!((s.validation.len(), ones(&s.validation)), (30, 10));
        assert_eq!((s.test.len(), ones(&s.test)), (30, 10));
    }

    #[test]
    fn splitmix_reference_values() {
        // First outputs for seed 1234567 of the reference SplitMix64 (Vigna).
        let mut rng = SplitMix64::new(1234567);
        assert_eq!(rng.next_u64(), 6457827717110365317);
        assert_eq!(rng.next_u64(), 3203168211198807973);
    }
}
