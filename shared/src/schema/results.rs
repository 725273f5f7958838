//! `results.json`: what a run measured and decided, and `explanations/<model>.jsonl`: one
//! validation text's attributions per line.

use serde::{Deserialize, Serialize};

use super::settings::{Objective, RunSettings};
pub use super::verdict::Verdict;

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

/// How a student's attributions are held against the teacher's in the decision rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SimilarityMode {
    /// The mean cosine itself, against `min_similarity` (the paper's rule).
    #[default]
    Absolute,
    /// Where the mean cosine lies between chance (0) and a retrained teacher (1), against
    /// `min_calibrated`.
    Calibrated,
}

named_enum!(
    SimilarityMode,
    "similarity-mode",
    [
        (SimilarityMode::Absolute, "absolute"),
        (SimilarityMode::Calibrated, "calibrated")
    ]
);

/// Which positions the cosine similarity runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Positions {
    /// The real tokens only: [CLS], [SEP] and padding left out.
    #[default]
    Content,
    /// The paper's computation: every position of the sequence padded to the maximum length,
    /// [CLS] and [SEP] included. Padding is masked out of attention, so IG gives it exactly
    /// zero and it adds nothing to either norm: the cosine over the unpadded sequence with the
    /// special tokens is that number.
    Padded,
}

named_enum!(
    Positions,
    "similarity-positions",
    [(Positions::Content, "content"), (Positions::Padded, "padded")]
);

/// The decision rule's thresholds, with the paper's defaults, and how similarity is measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Students need at least this test accuracy.
    pub min_accuracy: f64,
    /// ... and at least this mean cosine similarity to the teacher (absolute mode).
    pub min_similarity: f64,
    /// k of the top-k overlap measure (and of the behavioural test).
    #[serde(default = "default_top_k")]
    pub top_k: usize,
    #[serde(default)]
    pub similarity_mode: SimilarityMode,
    /// Calibrated mode: at least this calibrated score (0 chance, 1 a retrained teacher).
    #[serde(default = "default_min_calibrated")]
    pub min_calibrated: f64,
    /// Optional: at least this comprehensiveness above its random-order control.
    #[serde(default)]
    pub min_faithfulness: Option<f64>,
    /// Optional: at least this behavioural agreement (the student's drop without the
    /// teacher's top-k tokens over the teacher's).
    #[serde(default)]
    pub min_behavioural: Option<f64>,
    /// With a shifted part: a student may lose at most this much more accuracy there than
    /// the teacher does (`None` without a shifted part).
    #[serde(default)]
    pub max_shift_drop: Option<f64>,
    #[serde(default)]
    pub positions: Positions,
}

impl Thresholds {
    /// The similarity part of the rule: `similarity ≥ 0.8` or `calibrated similarity ≥ 0.8`.
    pub fn similarity_rule(&self) -> String {
        match self.similarity_mode {
            SimilarityMode::Absolute => format!("similarity ≥ {}", self.min_similarity),
            SimilarityMode::Calibrated => format!("calibrated similarity ≥ {}", self.min_calibrated),
        }
    }

    /// The whole decision rule a student must pass, as the report and the terminal state it.
    pub fn rule(&self) -> String {
        let mut rule = format!("accuracy ≥ {}, {}", self.min_accuracy, self.similarity_rule());
        if let Some(x) = self.min_faithfulness {
            rule.push_str(&format!(", comprehensiveness ≥ {x} above random"));
        }
        if let Some(x) = self.min_behavioural {
            rule.push_str(&format!(", behavioural agreement ≥ {x}"));
        }
        if let Some(x) = self.max_shift_drop {
            rule.push_str(&format!(
                ", at most {x} more accuracy lost under the shift than the teacher"
            ));
        }
        rule
    }
}

fn default_top_k() -> usize {
    Thresholds::default().top_k
}

fn default_min_calibrated() -> f64 {
    Thresholds::default().min_calibrated
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            min_accuracy: 0.70,
            min_similarity: 0.80,
            top_k: 5,
            similarity_mode: SimilarityMode::Absolute,
            min_calibrated: 0.80,
            min_faithfulness: None,
            min_behavioural: None,
            max_shift_drop: None,
            positions: Positions::Content,
        }
    }
}

/// A mean over texts with its 95% bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Estimate {
    pub mean: f64,
    pub ci: [f64; 2],
}

/// How alike two sets of explanations of the same texts are, by every measure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Agreements {
    pub cosine: Estimate,
    pub spearman: Estimate,
    pub top_k_overlap: Estimate,
    pub word_cosine: Estimate,
}

/// What the similarity of a student to the teacher is measured against: a retrained
/// teacher above (ceiling), chance below (floor), and whether the teacher is a reference
/// worth measuring against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Calibration {
    /// Seeds of the teacher's retrained copies (same configuration, data and split).
    pub reference_seeds: Vec<u64>,
    /// Their test accuracies, in that order.
    pub reference_accuracy: Vec<f64>,
    /// The teacher against its retrained copies: what an equally good model of the same kind
    /// reaches. `None` without copies (`--reference-seeds 0`).
    pub ceiling: Option<Agreements>,
    /// The copies with each other (two or more copies): how much the teacher itself stands out.
    pub between_references: Option<Agreements>,
    /// The teacher against an untrained model of its shape.
    pub floor_untrained: Agreements,
    /// The teacher against its own attributions permuted within each text.
    pub floor_permuted: Agreements,
    /// The chance level of the cosine the calibrated score uses: the higher of the two floors.
    pub floor: f64,
    /// Why the teacher is not a reliable reference; empty when nothing says so.
    pub teacher_warnings: Vec<String>,
    /// Why the ceiling measures less than "equally good models" would (a copy clearly worse
    /// than the teacher); empty when nothing says so.
    pub ceiling_warnings: Vec<String>,
    /// Retrained copies trained to find the ones kept (`reference_seeds`): those outside the
    /// tolerance of the teacher's scores are left out of the ceiling.
    pub copies_tried: usize,
    /// Each copy left out, and why.
    pub copies_left_out: Vec<String>,
    /// Why no student has a calibrated score (no ceiling, or one whose interval reaches the
    /// floor's); `None` when the scores are given.
    pub not_measurable: Option<String>,
}

/// The model's output at a baseline IG could start from, averaged over the explained texts:
/// a neutral baseline gives about the class prior.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct BaselineOutput {
    pub baseline: String,
    /// Mean probability of each class at that baseline.
    pub mean_probs: Vec<f64>,
    /// Total variation distance of `mean_probs` from the class prior (the data's class shares).
    pub distance_from_prior: f64,
}

/// ERASER faithfulness of a model's own explanations (AOPC over [`crate::erasure::AOPC_FRACTIONS`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Faithfulness {
    pub erasure: crate::erasure::Erasure,
    /// Drop of the explained class's probability without the top tokens (higher: faithful).
    pub comprehensiveness: Estimate,
    /// Drop with only the top tokens kept (lower: they suffice).
    pub sufficiency: Estimate,
    /// The same with a random order of the tokens: what an explanation that knows nothing gets.
    pub random_comprehensiveness: Estimate,
    pub random_sufficiency: Estimate,
}

impl Faithfulness {
    /// Comprehensiveness above its random control.
    pub fn comprehensiveness_gain(&self) -> f64 {
        self.comprehensiveness.mean - self.random_comprehensiveness.mean
    }
}

/// Does the student rely on the teacher's evidence? Forward passes only.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Behaviour {
    /// Tokens removed per text.
    pub k: usize,
    /// Drop of the student's probability for its prediction when the teacher's top-k tokens
    /// are removed.
    pub student_drop: Estimate,
    /// The teacher's own drop on the same removal.
    pub teacher_drop: f64,
    /// `student_drop / teacher_drop` (ratio of the means; paired bootstrap over texts): 1 when
    /// the student leans on the teacher's evidence as much as the teacher does. `None` when the
    /// teacher's own drop is below [`MIN_DROP`]: then there is no evidence to share.
    pub agreement: Option<Estimate>,
    /// The reverse: the teacher's drop without the student's top-k tokens over the student's own
    /// (`None` when that is below [`MIN_DROP`]).
    pub reverse: Option<Estimate>,
    /// The student's drop with k random content tokens removed: the chance level.
    pub random_drop: Estimate,
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
    /// Texts of the shifted part (0 without one); not counted in `texts`.
    pub shifted: usize,
    /// The embedded corpus: rationale and shortcut spans are known.
    pub planted_signal: bool,
}

/// One model's results.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelResult {
    pub name: String,
    pub role: Role,
    /// How it was trained: independent (labels only), distill (and the teacher's logits) or
    /// align (and the teacher's probabilities on aligned views); `None` in older results.
    #[serde(deserialize_with = "objective_or_empty")]
    pub objective: Option<Objective>,
    /// Where its training started: `checkpoint SOURCE` (a directory, or a Hub id at its
    /// commit), the teacher's layers, or `scratch`; empty in older results.
    pub starts_from: String,
    /// Its peak learning rate (0 in older results).
    pub learning_rate: f64,
    /// The share of its training steps spent warming up to that rate (0 in older results).
    pub warmup: f64,
    /// Wall seconds its training took: the epochs' steps and validation passes (summed
    /// across resumes).
    pub train_seconds: f64,
    pub architecture: String,
    pub layers: usize,
    pub hidden: usize,
    pub params: usize,
    pub accuracy: f64,
    pub f1: f64,
    /// Accuracy on the shifted part (held out to test generalisation), when the run has one.
    pub shifted_accuracy: Option<f64>,
    /// Test accuracy minus shifted accuracy: what the shift costs the model.
    pub shifted_drop: Option<f64>,
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
    /// Where the similarity lies between the floor (0) and the ceiling (1) of the run's
    /// [`Calibration`], with a paired bootstrap interval over texts.
    pub calibrated_mean: Option<f64>,
    pub calibrated_ci: Option<[f64; 2]>,
    pub faithfulness: Option<Faithfulness>,
    /// Students only.
    pub behaviour: Option<Behaviour>,
    /// Each candidate baseline's output for this model.
    pub baseline_outputs: Vec<BaselineOutput>,
    pub verdict: Verdict,
}

/// An objective, or the empty string older results hold for "not recorded".
fn objective_or_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Objective>, D::Error> {
    let name: Option<String> = Option::deserialize(d)?;
    match name.as_deref() {
        None | Some("") => Ok(None),
        Some(name) => name.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

/// Below this mean drop of probability, removing a model's top tokens changes nothing worth
/// dividing by: behavioural agreement is not computed.
pub const MIN_DROP: f64 = 0.01;

/// Below this |F(input) − F(baseline)| IG has almost nothing to distribute, and the direction
/// of the attribution vector is dominated by noise: such a text is not "informative".
pub const MIN_SIGNAL: f64 = 0.05;

/// `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct RunResults {
    pub format: u32,
    pub data: DataSummary,
    /// The run's fingerprint, as `run.json` holds it.
    pub settings: RunSettings,
    pub backend: String,
    pub thresholds: Thresholds,
    /// Teacher first.
    pub models: Vec<ModelResult>,
    pub calibration: Option<Calibration>,
    /// Similarity against the shifted-accuracy drop, when the run has a shifted part.
    pub generalisation: Option<super::Generalisation>,
    /// Seconds each stage of the run took in the invocation that wrote this file (a resumed
    /// run skips what was done).
    pub stage_seconds: Vec<(String, f64)>,
    pub recommended: Option<String>,
    pub recommendation: String,
    /// The answer in at most eight lines, as the report, the terminal and the page open with
    /// it: the recommendation first, then the students that reason differently and how far the
    /// teacher can be trusted.
    pub summary: Vec<String>,
}

impl RunResults {
    pub fn teacher(&self) -> Option<&ModelResult> {
        self.models.iter().find(|m| m.role == Role::Teacher)
    }

    pub fn model(&self, name: &str) -> Option<&ModelResult> {
        self.models.iter().find(|m| m.name == name)
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
            settings: RunSettings {
                format: 2,
                ..RunSettings::default()
            },
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
            generalisation: None,
            calibration: Some(Calibration {
                reference_seeds: vec![107],
                floor: 0.1,
                ..Calibration::default()
            }),
            stage_seconds: vec![("training".into(), 1.5)],
            recommended: Some("s".into()),
            recommendation: "s".into(),
            summary: vec!["Use s.".into()],
        };
        let text = serde_json::to_string(&results).unwrap();
        assert_eq!(serde_json::from_str::<RunResults>(&text).unwrap(), results);
        assert_eq!(results.teacher().unwrap().name, "t");
    }

    #[test]
    fn an_empty_objective_is_none_and_a_verdict_reads_back() {
        let old: ModelResult = serde_json::from_str(r#"{"name": "s", "objective": "", "verdict": "keep"}"#).unwrap();
        assert_eq!((old.objective, old.verdict), (None, Verdict::Keep));
        let new: ModelResult = serde_json::from_str(r#"{"objective": "align"}"#).unwrap();
        assert_eq!(new.objective, Some(Objective::Align));
    }

    #[test]
    fn the_rule_is_stated_once_with_its_optional_parts() {
        let mut t = Thresholds::default();
        assert_eq!(t.rule(), "accuracy ≥ 0.7, similarity ≥ 0.8");
        t.similarity_mode = SimilarityMode::Calibrated;
        t.min_behavioural = Some(0.5);
        assert_eq!(
            t.rule(),
            "accuracy ≥ 0.7, calibrated similarity ≥ 0.8, behavioural agreement ≥ 0.5"
        );
    }

    #[test]
    fn thresholds_default_to_the_papers() {
        let t: Thresholds = serde_json::from_str(r#"{"min_accuracy": 0.7, "min_similarity": 0.8}"#).unwrap();
        assert_eq!(t, Thresholds::default());
    }
}
