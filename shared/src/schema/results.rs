//! `results.json`: what a run measured and decided, and `explanations/<model>.jsonl`: one
//! validation text's attributions per line.

use serde::{Deserialize, Serialize};

/// The version of the `results.json` layout.
pub const RESULTS_FORMAT: u32 = 1;
/// The results file of a run directory.
pub const RESULTS_FILE: &str = "results.json";

/// A model's part in the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The reference every student is compared with.
    Teacher,
    #[default]
    Student,
}

/// The decision rule's thresholds, with the paper's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Students need at least this test accuracy.
    pub min_accuracy: f64,
    /// ... and at least this mean cosine similarity to the teacher.
    pub min_similarity: f64,
    /// k of the top-k overlap measure.
    #[serde(default = "default_top_k")]
    pub top_k: usize,
}

fn default_top_k() -> usize {
    Thresholds::default().top_k
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            min_accuracy: 0.70,
            min_similarity: 0.80,
            top_k: 5,
        }
    }
}

/// The data a run used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct DataSummary {
    pub source: String,
    pub texts: usize,
    pub labels: Vec<String>,
    pub class_counts: Vec<usize>,
    pub dropped_blank_labels: usize,
    pub train: usize,
    pub validation: usize,
    pub test: usize,
    /// The embedded corpus: rationale and shortcut spans are known.
    pub planted_signal: bool,
}

/// One model's results.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelResult {
    pub name: String,
    pub role: Role,
    pub architecture: String,
    pub layers: usize,
    pub hidden: usize,
    pub params: usize,
    pub accuracy: f64,
    pub f1: f64,
    pub confusion: Vec<Vec<usize>>,
    pub inference_seq_per_s: f64,
    pub train_seq_per_s: f64,
    pub best_epoch: usize,
    pub epochs_run: usize,
    pub validation_accuracy: f64,
    pub mean_abs_convergence_delta: f64,
    pub similarity_mean: Option<f64>,
    pub similarity_std: Option<f64>,
    pub similarity_ci: Option<[f64; 2]>,
    pub spearman_mean: Option<f64>,
    /// Feature agreement at the top k (Krishna et al.): the top-k overlap.
    pub top_k_overlap_mean: Option<f64>,
    /// The same token at the same rank in both top-k lists, share of k.
    pub rank_agreement_mean: Option<f64>,
    /// Shared top-k tokens with the same sign, share of k.
    pub sign_agreement_mean: Option<f64>,
    /// The same token at the same rank with the same sign, share of k.
    pub signed_rank_agreement_mean: Option<f64>,
    pub word_similarity_mean: Option<f64>,
    pub rationale_mass: Option<f64>,
    pub shortcut_mass: Option<f64>,
    /// Mean |F(input) − F(baseline)| over the explained texts: what IG had to distribute.
    pub mean_abs_signal: Option<f64>,
    /// Explained texts whose |F(input) − F(baseline)| is below [`MIN_SIGNAL`] for this model.
    pub weak_signal_texts: Option<usize>,
    /// Mean F(baseline) (the explained class's probability at the baseline), per explained
    /// class; `None` for a class no text was explained as.
    pub mean_f_baseline_per_class: Vec<Option<f64>>,
    /// The similarity to the teacher over the informative texts only (both models' signal at
    /// least [`MIN_SIGNAL`]), with its 95% interval and how many texts that is.
    pub similarity_informative_mean: Option<f64>,
    pub similarity_informative_ci: Option<[f64; 2]>,
    pub informative_texts: Option<usize>,
    pub verdict: String,
}

/// Below this |F(input) − F(baseline)| IG has almost nothing to distribute, and the direction
/// of the attribution vector is dominated by noise: such a text is not "informative".
pub const MIN_SIGNAL: f64 = 0.05;

/// `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct RunResults {
    pub format: u32,
    pub data: DataSummary,
    /// The run's fingerprint as `run.json` holds it (the trainer's `RunSettings`): shown,
    /// not interpreted, by readers other than the trainer.
    pub settings: serde_json::Value,
    pub backend: String,
    pub thresholds: Thresholds,
    /// Teacher first.
    pub models: Vec<ModelResult>,
    pub recommended: Option<String>,
    pub recommendation: String,
}

impl RunResults {
    pub fn teacher(&self) -> Option<&ModelResult> {
        self.models.iter().find(|m| m.role == Role::Teacher)
    }

    pub fn model(&self, name: &str) -> Option<&ModelResult> {
        self.models.iter().find(|m| m.name == name)
    }
}

/// One line of `explanations/<model>.jsonl`: a validation text explained by one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextAttribution {
    /// The text's index in the data.
    pub index: usize,
    pub tokens: Vec<String>,
    pub special: Vec<bool>,
    pub attributions: Vec<f32>,
    pub target: usize,
    pub probs: Vec<f32>,
    pub convergence_delta: Option<f32>,
    pub label: usize,
    /// F(input) and F(baseline): the explained class's probability at both ends of IG's path.
    #[serde(default)]
    pub f_input: Option<f32>,
    #[serde(default)]
    pub f_baseline: Option<f32>,
}

impl TextAttribution {
    /// |F(input) − F(baseline)|, what the attributions add up to (up to the convergence delta).
    pub fn signal(&self) -> Option<f64> {
        Some((self.f_input? as f64 - self.f_baseline? as f64).abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_round_trip() {
        let results = RunResults {
            format: RESULTS_FORMAT,
            data: DataSummary {
                source: "x.csv".into(),
                texts: 10,
                labels: vec!["a".into(), "b".into()],
                class_counts: vec![4, 6],
                train: 8,
                validation: 1,
                test: 1,
                ..DataSummary::default()
            },
            settings: serde_json::json!({"format": 2}),
            backend: "cpu".into(),
            thresholds: Thresholds::default(),
            models: vec![
                ModelResult {
                    name: "t".into(),
                    role: Role::Teacher,
                    params: 10,
                    ..ModelResult::default()
                },
                ModelResult {
                    name: "s".into(),
                    similarity_ci: Some([0.1, 0.3]),
                    ..ModelResult::default()
                },
            ],
            recommended: Some("s".into()),
            recommendation: "s".into(),
        };
        let text = serde_json::to_string(&results).unwrap();
        assert_eq!(serde_json::from_str::<RunResults>(&text).unwrap(), results);
        assert_eq!(results.teacher().unwrap().name, "t");
        let row = TextAttribution {
            index: 3,
            tokens: vec!["[CLS]".into()],
            special: vec![true],
            attributions: vec![0.5],
            target: 1,
            probs: vec![0.25, 0.75],
            convergence_delta: None,
            label: 1,
            f_input: Some(0.75),
            f_baseline: Some(0.5),
        };
        assert_eq!(row.signal(), Some(0.25));
        let line = serde_json::to_string(&row).unwrap();
        assert_eq!(serde_json::from_str::<TextAttribution>(&line).unwrap(), row);
    }

    #[test]
    fn thresholds_default_to_the_papers() {
        let t: Thresholds = serde_json::from_str(r#"{"min_accuracy": 0.7, "min_similarity": 0.8}"#).unwrap();
        assert_eq!(t, Thresholds::default());
    }
}
