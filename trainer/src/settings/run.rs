//! The settings of `trainer run`: every option as a typed value, the one thing the stages
//! take. A config file (`--config`) and the command line both become a [`RunConfig`]; its
//! keys are the flags' names without the dashes.

use std::path::PathBuf;

use astrid::erasure::Erasure;
use astrid::schema::{
    AlignSettings, AlignViews, EvidenceSettings, Objective, Positions, SelectBy, SimilarityMode, Suite, TargetChoice,
};
use serde::{Deserialize, Serialize};

use super::IgConfig;

/// The fewest validation and test texts a run accepts: below that, one text moves accuracy
/// by more than ten points and the comparison rests on a handful of explanations.
pub const MIN_EVALUATION_TEXTS: usize = 10;
/// Below this many test texts the run warns that its accuracy is rough.
pub const WARN_EVALUATION_TEXTS: usize = 50;
/// The most retrained copies of the teacher a run trains.
pub const MAX_REFERENCE_SEEDS: usize = 10;
/// The longest sequence the model shapes take (BERT's position table).
pub const MAX_SEQUENCE_LENGTH: usize = 512;

/// Where tensors live: burn's CPU backend (flex) or a GPU through wgpu.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// burn's CPU backend (flex).
    #[default]
    Cpu,
    /// A GPU through wgpu (Vulkan, Metal, DX12; Mesa's lavapipe without one).
    Wgpu,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Wgpu => "wgpu",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" | "flex" => Ok(Backend::Cpu),
            "wgpu" | "gpu" => Ok(Backend::Wgpu),
            other => Err(format!("unknown backend '{other}'; use cpu or wgpu")),
        }
    }
}

/// How the classes weigh in the cross-entropy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClassWeight {
    /// Every text counts the same.
    #[default]
    None,
    /// Every class counts the same: weights n / (classes · n_c) from the training part.
    Balanced,
}

impl std::str::FromStr for ClassWeight {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(ClassWeight::None),
            "balanced" => Ok(ClassWeight::Balanced),
            other => Err(format!("unknown class weight '{other}'; use none or balanced")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DataConfig {
    /// Labelled texts: CSV, TSV or JSONL (SCOTUS justice.csv is recognised). Default: the
    /// embedded generated corpus.
    pub data: Option<PathBuf>,
    /// Column (or JSON field) with the text.
    pub text_col: Option<String>,
    /// Column (or JSON field) with the label.
    pub label_col: Option<String>,
    /// Label values in class order, comma separated (default: sorted).
    pub labels: Option<Vec<String>>,
    /// Use only the first N labelled rows (validation and test must keep at least 10 texts each).
    pub sample: Option<usize>,
    /// Size of the embedded corpus.
    pub corpus_size: usize,
    /// Embedded corpus without the planted shortcut word.
    pub no_shortcut: bool,
    /// Seed of the split (and of the embedded corpus).
    pub seed: u64,
    /// A Hugging Face tokenizer.json (default: taken from an --init checkpoint, else a
    /// WordPiece vocabulary trained on the training split).
    pub tokenizer: Option<PathBuf>,
    /// Size of the trained WordPiece vocabulary.
    pub vocab_size: usize,
    /// Longest token sequence (texts are cut, keeping `[CLS]` … `[SEP]`); 8 to 512.
    pub max_length: usize,
    /// Labelled texts from elsewhere (same columns and labels as `data`): every model is also
    /// evaluated on them, the shifted part.
    pub shift_data: Option<PathBuf>,
    /// With `shift_from`: the rows of `data` whose value in this column is at or above
    /// `shift_from` (numbers numerically, else as text) are held out as the shifted part.
    pub shift_by: Option<String>,
    pub shift_from: Option<String>,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            data: None,
            text_col: None,
            label_col: None,
            labels: None,
            sample: None,
            corpus_size: 1600,
            no_shortcut: false,
            seed: 7,
            tokenizer: None,
            vocab_size: 8000,
            max_length: 128,
            shift_data: None,
            shift_by: None,
            shift_from: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RunConfig {
    #[serde(flatten)]
    pub data: DataConfig,
    /// quick (reduced sizes, minutes on a CPU), paper (the real shapes) or test (tiny).
    pub suite: Suite,
    /// The run directory: new, empty, or an earlier run's to resume (default `runs/<timestamp>`).
    pub out: Option<PathBuf>,
    pub backend: Backend,
    /// Training epochs (at least 1).
    pub epochs: usize,
    /// Texts per optimizer step (at least 1).
    pub batch_size: usize,
    /// CPU training: model replicas each batch is split between (data-parallel); `None`: as
    /// many as IG uses on the CPU, 1 on a GPU.
    pub workers: Option<usize>,
    /// Peak learning rate of every role (default 5e-4 for a role trained from scratch, 5e-5
    /// for one started from an --init checkpoint).
    pub lr: Option<f64>,
    /// One role's peak learning rate, above --lr: ROLE=RATE (repeatable; `teacher` names the
    /// teacher's role; its retrained copies use it too).
    pub role_lr: Vec<String>,
    pub weight_decay: f64,
    /// Share of the steps spent warming up the learning rate, in [0, 1).
    pub warmup: f64,
    /// One role's warm-up share, above --warmup: ROLE=SHARE (repeatable; `teacher` names the
    /// teacher's role).
    pub role_warmup: Vec<String>,
    /// Gradient clipping: largest norm per parameter tensor.
    pub clip: f64,
    /// Early stopping: epochs without a better validation accuracy (at least 1).
    pub patience: usize,
    /// none, or balanced: each class weighs the same in the cross-entropy (weights from the
    /// training part; for imbalanced labels such as SCOTUS's 65/35).
    pub class_weight: ClassWeight,
    /// The validation figure that picks each model's best epoch and stops early: accuracy, or
    /// macro-f1 (default with --class-weight balanced, where accuracy would favour the
    /// majority class the weights work against).
    pub select_by: Option<SelectBy>,
    /// Train the students on the trained teacher's logits as well as the labels (the same as
    /// --training distill).
    pub distill: bool,
    /// Train the students to keep the teacher's reasons: distillation plus the teacher's
    /// probabilities on aligned views of each text (the same as --training align; see --align-views).
    pub align: bool,
    /// How each student is trained, one student per role and entry (e.g. independent,distill,align
    /// gives three per role, named ROLE, ROLE-distill, ROLE-align, from the same seed): the
    /// ablation in one run. Default: independent (or what --distill / --align say).
    pub training: Vec<Objective>,
    /// Aligned views: path (points around IG's path to the baseline, each token moved by its
    /// own amount), evidence (the text without / with only the teacher's top tokens), both, or
    /// slope (the output's slope along IG's path in a random ±1 direction over the tokens).
    pub align_views: AlignViews,
    /// Weight of the aligned-view term beside the distillation loss (above 0).
    pub align_weight: f64,
    /// Path views: how far each token's position on the path strays from the text's (σ, 0 to 1).
    pub align_noise: f64,
    /// Slope views: half the distance between the two points whose outputs give a slope
    /// (0 to 0.5, as a share of the path).
    pub align_step: f64,
    /// Evidence views: how many of the teacher's top tokens are removed or kept (at least 1).
    pub align_top_k: usize,
    /// Evidence views: Gauss-Legendre steps of the teacher's IG that ranks the tokens (1 to 200).
    pub align_ig_steps: usize,
    pub temperature: f64,
    /// Weight of the distillation term, in [0, 1].
    pub alpha: f64,
    /// Start a role from a Hugging Face checkpoint: ROLE=DIR, or `ROLE=hf:ORG/NAME[@REVISION]`
    /// fetched into the Hugging Face cache (repeatable; `teacher` names the teacher's role).
    pub init: Vec<String>,
    /// The paper's pretrained starting points (`--suite paper` only): the teacher from
    /// bert-base-uncased, distilbert from distilbert-base-uncased, tinybert from
    /// huawei-noah/TinyBERT_General_4L_312D, minilm from microsoft/MiniLM-L12-H384-uncased; the
    /// two custom shapes from scratch (or the teacher's layers where the width matches,
    /// --init-from-teacher). `--init ROLE=...` overrides a role.
    pub pretrained: bool,
    /// Use the Hugging Face cache only, never the network (as HF_HUB_OFFLINE=1).
    pub offline: bool,
    /// Start each student whose width matches the teacher's from the trained teacher's
    /// embeddings and evenly spaced layers (every other one for half the depth, as DistilBERT).
    pub init_from_teacher: bool,
    /// How many validation texts to explain with every model (at least 1).
    pub explain_n: usize,
    #[serde(flatten)]
    pub ig: IgConfig,
    /// Which class each model explains: its own prediction (model), the teacher's, or the label.
    pub target: TargetChoice,
    /// Keep students at or above this test accuracy, in [0, 1].
    pub min_accuracy: f64,
    /// Keep students at or above this mean cosine similarity to the teacher, in [-1, 1].
    pub min_similarity: f64,
    /// Top-k for the overlap measure and the behavioural test (at least 1).
    pub top_k: usize,
    /// Retrain the teacher this many more times (other seeds; same data, split and settings)
    /// to measure the ceiling: what an equally good model of the same kind agrees with it.
    /// Each copy costs one teacher training and its explanations; 0 leaves the ceiling (and
    /// the calibrated score) out.
    pub reference_seeds: usize,
    /// A retrained copy counts towards the ceiling only within this of the teacher's
    /// validation score (and, with a shifted part, of its shifted accuracy).
    pub copy_tolerance: f64,
    /// Further seeds tried when a copy falls outside the tolerance.
    pub extra_reference_seeds: usize,
    /// calibrated (`min_calibrated`) or absolute (`min_similarity`); `None`: calibrated when
    /// the run's ceiling can calibrate, absolute otherwise.
    pub similarity_mode: Option<SimilarityMode>,
    /// Calibrated mode: keep students at or above this calibrated score.
    pub min_calibrated: f64,
    /// Also require comprehensiveness (AOPC) at least this far above its random control.
    pub min_faithfulness: Option<f64>,
    /// Also require behavioural agreement (the student's drop without the teacher's top-k
    /// tokens over the teacher's own drop) of at least this.
    pub min_behavioural: Option<f64>,
    /// With a shifted part: the most accuracy a student may lose there beyond the teacher's loss.
    pub max_shift_drop: f64,
    /// content: cosine over the real tokens; padded: the paper's cosine over every position
    /// of the padded sequence, `[CLS]`/`[SEP]` included.
    pub similarity_positions: Positions,
    /// How faithfulness and the behavioural test take a token out: mask (replace it with
    /// `[MASK]`) or delete (remove it; the text gets shorter).
    pub erasure: Erasure,
    /// No progress bars.
    pub quiet: bool,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            data: DataConfig::default(),
            suite: Suite::Quick,
            out: None,
            backend: Backend::Cpu,
            epochs: 5,
            batch_size: 16,
            workers: None,
            lr: None,
            role_lr: Vec::new(),
            weight_decay: 0.01,
            warmup: 0.1,
            role_warmup: Vec::new(),
            clip: 1.0,
            patience: 2,
            class_weight: ClassWeight::None,
            select_by: None,
            distill: false,
            align: false,
            training: Vec::new(),
            align_views: AlignViews::Evidence,
            align_weight: 1.0,
            align_noise: 0.3,
            align_step: 0.1,
            align_top_k: 5,
            align_ig_steps: 8,
            temperature: 2.0,
            alpha: 0.5,
            init: Vec::new(),
            pretrained: false,
            offline: false,
            init_from_teacher: false,
            explain_n: 50,
            ig: IgConfig::default(),
            target: TargetChoice::Model,
            min_accuracy: 0.70,
            min_similarity: 0.80,
            top_k: 5,
            reference_seeds: 2,
            copy_tolerance: 0.02,
            extra_reference_seeds: 2,
            similarity_mode: None,
            min_calibrated: 0.80,
            min_faithfulness: None,
            min_behavioural: None,
            max_shift_drop: 0.10,
            similarity_positions: Positions::default(),
            erasure: Erasure::default(),
            quiet: false,
        }
    }
}

impl RunConfig {
    /// How the students are trained, in the order given.
    pub fn objectives(&self) -> Vec<Objective> {
        if !self.training.is_empty() {
            return self.training.clone();
        }
        vec![if self.align {
            Objective::Align
        } else if self.distill {
            Objective::Distill
        } else {
            Objective::Independent
        }]
    }

    /// The alignment objective's settings, normalised (what does not apply is left out);
    /// `None` when no student is aligned.
    pub fn align_settings(&self) -> Option<AlignSettings> {
        self.objectives().contains(&Objective::Align).then(|| AlignSettings {
            views: self.align_views,
            weight: self.align_weight,
            noise: matches!(self.align_views, AlignViews::Path | AlignViews::Both).then_some(self.align_noise),
            step: (self.align_views == AlignViews::Slope).then_some(self.align_step),
            evidence: matches!(self.align_views, AlignViews::Evidence | AlignViews::Both).then_some(EvidenceSettings {
                top_k: self.align_top_k,
                erasure: self.erasure,
                ig_steps: self.align_ig_steps,
            }),
            baseline: self.ig.baseline,
        })
    }

    /// Training replicas per batch: `workers`, else IG's thread count on the CPU and 1 on a GPU.
    pub fn training_workers(&self) -> usize {
        self.workers.unwrap_or(match self.backend {
            Backend::Cpu => crate::util::threads::cpu_workers(),
            Backend::Wgpu => 1,
        })
    }

    /// The figure that picks the best epoch: `select_by`, else macro-F1 for balanced class
    /// weights and accuracy otherwise.
    pub fn selection(&self) -> SelectBy {
        self.select_by.unwrap_or(match self.class_weight {
            ClassWeight::Balanced => SelectBy::MacroF1,
            ClassWeight::None => SelectBy::Accuracy,
        })
    }
}
