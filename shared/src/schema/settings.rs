//! A run's settings as `run.json` (its fingerprint) and `results.json` (`settings`) hold them:
//! what the results depend on, normalised so that an explicitly given default equals the
//! default and what does not apply is left out. The trainer writes them; the report, the
//! tests and a resumed run read them through these types.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::erasure::Erasure;
use crate::explain::{Baseline, Method};

/// The version of the `run.json` layout; a run written with another one cannot resume.
pub const RUN_FORMAT: u32 = 2;

/// Which models a run trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Suite {
    /// The six roles at reduced sizes: minutes on a CPU.
    #[default]
    Quick,
    /// The real shapes (BERT-base teacher, DistilBERT, ...).
    Paper,
    /// Tiny models, for tests.
    Test,
}

named_enum!(
    Suite,
    "suite",
    [(Suite::Quick, "quick"), (Suite::Paper, "paper"), (Suite::Test, "test")]
);

/// Which validation figure picks a model's best epoch (and stops training early).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SelectBy {
    #[default]
    Accuracy,
    /// The mean of the classes' F1: a model that predicts only the majority class scores low.
    MacroF1,
}

named_enum!(
    SelectBy,
    "select-by",
    [(SelectBy::Accuracy, "accuracy"), (SelectBy::MacroF1, "macro-f1")]
);

/// Which class each model explains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TargetChoice {
    /// Its own prediction.
    #[default]
    Model,
    /// The teacher's prediction.
    Teacher,
    /// The text's label.
    Label,
}

named_enum!(
    TargetChoice,
    "target",
    [
        (TargetChoice::Model, "model"),
        (TargetChoice::Teacher, "teacher"),
        (TargetChoice::Label, "label")
    ]
);

/// How a student is trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// On the labels only.
    #[default]
    Independent,
    /// On the labels and the teacher's logits (`--temperature`, `--alpha`).
    Distill,
    /// As distill, plus the teacher's probabilities on aligned views (`--align-*`).
    Align,
}

named_enum!(
    Objective,
    "training",
    [
        (Objective::Independent, "independent"),
        (Objective::Distill, "distill"),
        (Objective::Align, "align")
    ]
);

impl Objective {
    /// Whether the teacher's logits on the full texts are part of the loss.
    pub fn distills(self) -> bool {
        self != Objective::Independent
    }
}

/// Which aligned views a student sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AlignViews {
    /// Points around IG's path (no teacher attributions needed).
    Path,
    /// The text without / with only the teacher's top-k tokens.
    #[default]
    Evidence,
    /// Both, in turn.
    Both,
    /// Slopes along IG's path: the output's change between two points a step either side of
    /// a point of the path, along a random ±1 direction over the tokens: the IG integrand
    /// (the output's derivative per token) projected on that direction.
    Slope,
}

named_enum!(
    AlignViews,
    "align-views",
    [
        (AlignViews::Path, "path"),
        (AlignViews::Evidence, "evidence"),
        (AlignViews::Both, "both"),
        (AlignViews::Slope, "slope")
    ]
);

/// The settings of the alignment objective.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AlignSettings {
    pub views: AlignViews,
    /// Weight of the aligned-view term (KL at temperature 1; squared error of slopes) beside
    /// the distillation loss.
    pub weight: f64,
    /// σ of the path points (path views only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub noise: Option<f64>,
    /// The half-step of the slopes (slope views only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<f64>,
    /// Evidence views only: how many of the teacher's top tokens, how they are erased, and
    /// the Gauss-Legendre steps of the teacher's IG that ranks them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<EvidenceSettings>,
    /// The IG baseline the path points lead to (the run's `--baseline`).
    pub baseline: Baseline,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EvidenceSettings {
    pub top_k: usize,
    pub erasure: Erasure,
    pub ig_steps: usize,
}

/// `run.json`'s fingerprint, and `results.json`'s `settings`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RunSettings {
    pub format: u32,
    pub data: DataSettings,
    pub tokenizer: TokenizerSettings,
    pub models: ModelSettings,
    pub training: TrainingSettings,
    pub explanations: ExplanationSettings,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct DataSettings {
    /// Where the data came from: shown, not compared (the same content elsewhere resumes).
    pub source: String,
    /// SHA-256 of the data file's bytes; `None` for the embedded corpus.
    pub sha256: Option<String>,
    /// The embedded corpus's generator settings; `None` for a file.
    pub corpus: Option<CorpusSettings>,
    pub text_col: Option<String>,
    pub label_col: Option<String>,
    /// Class names in class order, as used.
    pub labels: Vec<String>,
    /// Labelled rows used, when fewer than the file has.
    pub sample: Option<usize>,
    pub seed: u64,
    /// The shifted part, when the user gave one (`--shift-data`, `--shift-by`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift: Option<ShiftSettings>,
}

/// Where the shifted part comes from: another file (by content hash), or the rows of the data
/// at or above a value of a column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ShiftSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct CorpusSettings {
    pub size: usize,
    pub shortcut: bool,
    /// The generator's version (2: the shortcut in every part, and a shifted part); absent
    /// in runs of the first, which cannot resume with this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TokenizerSettings {
    /// SHA-256 of the tokenizer.json the run started from (given, or an `--init` model's);
    /// `None` when a WordPiece vocabulary is trained.
    pub sha256: Option<String>,
    /// The trained vocabulary's size; `None` when a tokenizer is given.
    pub vocab_size: Option<usize>,
    pub max_length: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ModelSettings {
    pub suite: Suite,
    /// Role → digest of the model directory it started from.
    pub init: BTreeMap<String, String>,
    pub init_from_teacher: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TrainingSettings {
    pub backend: String,
    pub epochs: usize,
    pub batch_size: usize,
    /// The peak learning rate of every role not in `role_learning_rates`.
    pub learning_rate: f64,
    /// Roles with another rate (started from a pretrained model: 5e-5; `--role-lr`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub role_learning_rates: BTreeMap<String, f64>,
    pub weight_decay: f64,
    pub warmup: f64,
    /// Roles with another warm-up share (`--role-warmup`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub role_warmups: BTreeMap<String, f64>,
    pub clip: f64,
    pub patience: usize,
    /// `None` when no student distils (temperature and alpha then change nothing).
    pub distill: Option<DistillSettings>,
    /// The students' objectives, when they are not just what `distill` says (one objective,
    /// independent or distill).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objectives: Option<Vec<Objective>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub align: Option<AlignSettings>,
    /// `--class-weight balanced`: the cross-entropy's weight per class, from the training part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_weights: Option<Vec<f64>>,
    /// The figure that picks each model's best epoch; absent: validation accuracy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select_by: Option<SelectBy>,
    /// Model replicas per batch (`--workers`) when above 1; absent: 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
}

impl TrainingSettings {
    /// The students' objectives in the order trained: `objectives`, else the one `distill` implies.
    pub fn student_objectives(&self) -> Vec<Objective> {
        self.objectives.clone().unwrap_or_else(|| {
            vec![if self.distill.is_some() {
                Objective::Distill
            } else {
                Objective::Independent
            }]
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DistillSettings {
    pub temperature: f64,
    pub alpha: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ExplanationSettings {
    /// Validation texts explained (the option, capped at the validation part's size).
    pub texts: usize,
    pub n_steps: usize,
    pub method: Method,
    pub baseline: Baseline,
    pub target: TargetChoice,
    /// Adaptive IG only: its tolerance and budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_match_serde() {
        for suite in [Suite::Quick, Suite::Paper, Suite::Test] {
            assert_eq!(suite.name().parse::<Suite>().unwrap(), suite);
            assert_eq!(serde_json::to_value(suite).unwrap(), suite.name());
        }
        for o in [Objective::Independent, Objective::Distill, Objective::Align] {
            assert_eq!(o.name().parse::<Objective>().unwrap(), o);
            assert_eq!(serde_json::to_value(o).unwrap(), o.name());
        }
        assert_eq!(serde_json::to_value(SelectBy::MacroF1).unwrap(), "macro-f1");
        assert_eq!("macro-f1".parse::<SelectBy>().unwrap(), SelectBy::MacroF1);
        let err = "teach".parse::<Objective>().unwrap_err().to_string();
        assert!(err.contains("independent, distill, align"), "{err}");
    }

    #[test]
    fn the_objectives_default_to_what_distill_says() {
        let mut t = TrainingSettings::default();
        assert_eq!(t.student_objectives(), [Objective::Independent]);
        t.distill = Some(DistillSettings {
            temperature: 2.0,
            alpha: 0.5,
        });
        assert_eq!(t.student_objectives(), [Objective::Distill]);
        t.objectives = Some(vec![Objective::Align]);
        assert_eq!(t.student_objectives(), [Objective::Align]);
    }
}
