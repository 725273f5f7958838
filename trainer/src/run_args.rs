//! The options of `trainer run` and `trainer data stats`, and the checks they pass before
//! anything is read or written: a rejected command leaves no trace.

use std::path::PathBuf;

use astrid::erasure::Erasure;
use astrid::schema::{Positions, SimilarityMode};
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::align::{AlignSettings, AlignViews, EvidenceSettings, Objective};
use crate::device::Backend;
use crate::explain_cmd::IgArgs;

/// The fewest validation and test texts a run accepts: below that, one text moves accuracy
/// by more than ten points and the comparison rests on a handful of explanations.
pub const MIN_EVALUATION_TEXTS: usize = 10;
/// Below this many test texts the run warns that its accuracy is rough.
pub const WARN_EVALUATION_TEXTS: usize = 50;
/// The most retrained copies of the teacher a run trains.
pub const MAX_REFERENCE_SEEDS: usize = 10;
/// The longest sequence the model shapes take (BERT's position table).
pub const MAX_SEQUENCE_LENGTH: usize = 512;

#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// Labelled texts: CSV, TSV or JSONL (SCOTUS justice.csv is recognised). Default: the
    /// embedded generated corpus.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Column (or JSON field) with the text.
    #[arg(long)]
    pub text_col: Option<String>,
    /// Column (or JSON field) with the label.
    #[arg(long)]
    pub label_col: Option<String>,
    /// Label values in class order, comma separated (default: sorted).
    #[arg(long, value_delimiter = ',')]
    pub labels: Option<Vec<String>>,
    /// Use only the first N labelled rows (validation and test must keep at least 10 texts each).
    #[arg(long)]
    pub sample: Option<usize>,
    /// Size of the embedded corpus.
    #[arg(long, default_value_t = 1600)]
    pub corpus_size: usize,
    /// Embedded corpus without the planted shortcut word.
    #[arg(long)]
    pub no_shortcut: bool,
    /// Seed of the split (and of the embedded corpus).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// A Hugging Face tokenizer.json (default: taken from an --init checkpoint, else a
    /// WordPiece vocabulary trained on the training split).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Size of the trained WordPiece vocabulary.
    #[arg(long, default_value_t = 8000)]
    pub vocab_size: usize,
    /// Longest token sequence (texts are cut, keeping [CLS] … [SEP]); 8 to 512.
    #[arg(long, default_value_t = 128)]
    pub max_length: usize,
}

/// Which models to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Suite {
    /// The six roles at reduced sizes: minutes on a CPU.
    Quick,
    /// The real shapes (BERT-base teacher, DistilBERT, ...).
    Paper,
    /// Tiny models, for tests.
    Test,
}

/// How the classes weigh in the cross-entropy.
/// Which validation figure picks a model's best epoch (and stops training early).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SelectBy {
    #[default]
    Accuracy,
    /// The mean of the classes' F1: a model that predicts only the majority class scores low.
    MacroF1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ClassWeight {
    /// Every text counts the same.
    None,
    /// Every class counts the same: weights n / (classes · n_c) from the training part.
    Balanced,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TargetChoice {
    Model,
    Teacher,
    Label,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// quick (reduced sizes, minutes on a CPU), paper (the real shapes) or test (tiny).
    #[arg(long, value_enum, default_value_t = Suite::Quick)]
    pub suite: Suite,
    /// The run directory: new, empty, or an earlier run's to resume (default runs/<timestamp>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    pub backend: Backend,
    /// Training epochs (at least 1).
    #[arg(long, default_value_t = 5)]
    pub epochs: usize,
    /// Texts per optimizer step (at least 1).
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// CPU training: model replicas each batch is split between, one thread each, their
    /// gradients summed into one step (data-parallel). Results are reproducible for a given
    /// seed and worker count; 1 trains as before. Default: as many as IG uses (the cores, at
    /// most 2; `ASTRID_THREADS` overrides); with --backend wgpu, 1.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Peak learning rate of every role (default 5e-4 for a role trained from scratch, 5e-5
    /// for one started from an --init checkpoint).
    #[arg(long)]
    pub lr: Option<f64>,
    /// One role's peak learning rate, above --lr: ROLE=RATE (repeatable; `teacher` names the
    /// teacher's role; its retrained copies use it too).
    #[arg(long = "role-lr", value_name = "ROLE=RATE")]
    pub role_lr: Vec<String>,
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    /// Share of the steps spent warming up the learning rate, in [0, 1).
    #[arg(long, default_value_t = 0.1)]
    pub warmup: f64,
    /// One role's warm-up share, above --warmup: ROLE=SHARE (repeatable; `teacher` names the
    /// teacher's role).
    #[arg(long = "role-warmup", value_name = "ROLE=SHARE")]
    pub role_warmup: Vec<String>,
    /// Gradient clipping: largest norm per parameter tensor.
    #[arg(long, default_value_t = 1.0)]
    pub clip: f64,
    /// Early stopping: epochs without a better validation accuracy (at least 1).
    #[arg(long, default_value_t = 2)]
    pub patience: usize,
    /// none, or balanced: each class weighs the same in the cross-entropy (weights from the
    /// training part; for imbalanced labels such as SCOTUS's 65/35).
    #[arg(long, value_enum, default_value_t = ClassWeight::None)]
    pub class_weight: ClassWeight,
    /// The validation figure that picks each model's best epoch and stops early: accuracy, or
    /// macro-f1 (default with --class-weight balanced, where accuracy would favour the
    /// majority class the weights work against).
    #[arg(long, value_enum)]
    pub select_by: Option<SelectBy>,
    /// Train the students on the trained teacher's logits as well as the labels (the same as
    /// --training distill).
    #[arg(long)]
    pub distill: bool,
    /// Train the students to keep the teacher's reasons: distillation plus the teacher's
    /// probabilities on aligned views of each text (the same as --training align; see --align-views).
    #[arg(long)]
    pub align: bool,
    /// How each student is trained, one student per role and entry (e.g. independent,distill,align
    /// gives three per role, named ROLE, ROLE-distill, ROLE-align, from the same seed): the
    /// ablation in one run. Default: independent (or what --distill / --align say).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "LIST")]
    pub training: Vec<Objective>,
    /// Aligned views: path (points around IG's path to the baseline, each token moved by its
    /// own amount), evidence (the text without / with only the teacher's top tokens), both, or
    /// slope (the output's slope along IG's path in a random ±1 direction over the tokens).
    #[arg(long, value_enum, default_value_t = AlignViews::Evidence)]
    pub align_views: AlignViews,
    /// Weight of the aligned-view term beside the distillation loss (above 0).
    #[arg(long, default_value_t = 1.0)]
    pub align_weight: f64,
    /// Path views: how far each token's position on the path strays from the text's (σ, 0 to 1).
    #[arg(long, default_value_t = 0.3)]
    pub align_noise: f64,
    /// Slope views: half the distance between the two points whose outputs give a slope
    /// (0 to 0.5, as a share of the path).
    #[arg(long, default_value_t = 0.1)]
    pub align_step: f64,
    /// Evidence views: how many of the teacher's top tokens are removed or kept (at least 1).
    #[arg(long, default_value_t = 5)]
    pub align_top_k: usize,
    /// Evidence views: Gauss-Legendre steps of the teacher's IG that ranks the tokens (1 to 200).
    #[arg(long, default_value_t = 8)]
    pub align_ig_steps: usize,
    #[arg(long, default_value_t = 2.0)]
    pub temperature: f64,
    /// Weight of the distillation term, in [0, 1].
    #[arg(long, default_value_t = 0.5)]
    pub alpha: f64,
    /// Start a role from a Hugging Face checkpoint: ROLE=DIR, or ROLE=hf:ORG/NAME[@REVISION]
    /// fetched into the Hugging Face cache (repeatable; `teacher` names the teacher's role).
    #[arg(long = "init", value_name = "ROLE=DIR|hf:ID[@REV]")]
    pub init: Vec<String>,
    /// The paper's pretrained starting points (`--suite paper` only): the teacher from
    /// bert-base-uncased, distilbert from distilbert-base-uncased, tinybert from
    /// huawei-noah/TinyBERT_General_4L_312D, minilm from microsoft/MiniLM-L12-H384-uncased; the
    /// two custom shapes from scratch (or the teacher's layers where the width matches,
    /// --init-from-teacher). `--init ROLE=...` overrides a role.
    #[arg(long)]
    pub pretrained: bool,
    /// Use the Hugging Face cache only, never the network (as HF_HUB_OFFLINE=1).
    #[arg(long)]
    pub offline: bool,
    /// Start each student whose width matches the teacher's from the trained teacher's
    /// embeddings and evenly spaced layers (every other one for half the depth, as DistilBERT).
    #[arg(long)]
    pub init_from_teacher: bool,
    /// How many validation texts to explain with every model (at least 1).
    #[arg(long, default_value_t = 50)]
    pub explain_n: usize,
    #[command(flatten)]
    pub ig: IgArgs,
    /// Which class each model explains: its own prediction (model), the teacher's, or the label.
    #[arg(long, value_enum, default_value_t = TargetChoice::Model)]
    pub target: TargetChoice,
    /// Keep students at or above this test accuracy, in [0, 1].
    #[arg(long, default_value_t = 0.70)]
    pub min_accuracy: f64,
    /// Keep students at or above this mean cosine similarity to the teacher, in [-1, 1].
    #[arg(long, default_value_t = 0.80)]
    pub min_similarity: f64,
    /// Top-k for the overlap measure and the behavioural test (at least 1).
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// Retrain the teacher this many more times (other seeds; same data, split and settings)
    /// to measure the ceiling: what an equally good model of the same kind agrees with it.
    /// Each copy costs one teacher training and its explanations; 0 leaves the ceiling (and
    /// the calibrated score) out.
    #[arg(long, default_value_t = 2)]
    pub reference_seeds: usize,
    /// absolute: students need --min-similarity (the paper's rule); calibrated: they need
    /// --min-calibrated, where 0 is chance and 1 a retrained teacher (needs --reference-seeds).
    #[arg(long, default_value = "absolute")]
    pub similarity_mode: SimilarityMode,
    /// Calibrated mode: keep students at or above this calibrated score.
    #[arg(long, default_value_t = 0.80)]
    pub min_calibrated: f64,
    /// Also require comprehensiveness (AOPC) at least this far above its random control.
    #[arg(long)]
    pub min_faithfulness: Option<f64>,
    /// Also require behavioural agreement (the student's drop without the teacher's top-k
    /// tokens over the teacher's own drop) of at least this.
    #[arg(long)]
    pub min_behavioural: Option<f64>,
    /// content: cosine over the real tokens; padded: the paper's cosine over every position
    /// of the padded sequence, [CLS]/[SEP] included.
    #[arg(long, default_value = "content")]
    pub similarity_positions: Positions,
    /// How faithfulness and the behavioural test take a token out: mask (replace it with
    /// [MASK]) or delete (remove it; the text gets shorter).
    #[arg(long, default_value = "mask")]
    pub erasure: Erasure,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

/// Collects every problem with the options, so one message lists them all.
struct Problems(Vec<String>);

impl Problems {
    fn check(&mut self, ok: bool, problem: impl FnOnce() -> String) {
        if !ok {
            self.0.push(problem());
        }
    }
}

impl DataArgs {
    fn problems(&self, p: &mut Problems) {
        p.check((8..=MAX_SEQUENCE_LENGTH).contains(&self.max_length), || {
            format!("--max-length {}: use 8 to {MAX_SEQUENCE_LENGTH}", self.max_length)
        });
        p.check(self.vocab_size >= 100, || {
            format!(
                "--vocab-size {}: use at least 100 (the special tokens and the alphabet need room)",
                self.vocab_size
            )
        });
        p.check(self.sample != Some(0), || {
            "--sample 0: use no texts? Give at least the number needed for 10 validation and 10 test texts (about 100)"
                .to_string()
        });
        p.check(self.corpus_size >= 100, || {
            format!(
                "--corpus-size {}: use at least 100 (10 validation and 10 test texts)",
                self.corpus_size
            )
        });
        if let Some(labels) = &self.labels {
            p.check(labels.len() >= 2 && labels.iter().all(|l| !l.trim().is_empty()), || {
                format!(
                    "--labels {}: give two or more non-empty label values, comma separated",
                    labels.join(",")
                )
            });
        }
        if let Some(path) = &self.data {
            p.check(!path.is_dir(), || {
                format!(
                    "--data {}: is a directory; give a CSV, TSV or JSONL file inside it",
                    path.display()
                )
            });
        }
        if self.data.is_none() {
            p.check(
                self.text_col.is_none() && self.label_col.is_none() && self.labels.is_none(),
                || "--text-col, --label-col and --labels need --data (the embedded corpus has its own)".to_string(),
            );
        }
    }

    /// `trainer data stats`'s checks.
    pub fn validate(&self) -> anyhow::Result<()> {
        let mut p = Problems(Vec::new());
        self.problems(&mut p);
        finish(p)
    }
}

fn finite_in(value: f64, range: std::ops::RangeInclusive<f64>) -> bool {
    value.is_finite() && range.contains(&value)
}

fn finish(p: Problems) -> anyhow::Result<()> {
    match p.0.len() {
        0 => Ok(()),
        1 => anyhow::bail!("{}; nothing was written", p.0[0]),
        _ => anyhow::bail!(
            "these options cannot be used (nothing was written):\n  {}",
            p.0.join("\n  ")
        ),
    }
}

impl RunArgs {
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

    /// Training replicas per batch: `--workers`, else IG's thread count on the CPU and 1 on a GPU.
    pub fn training_workers(&self) -> usize {
        self.workers.unwrap_or(match self.backend {
            Backend::Cpu => crate::device::cpu_workers(),
            Backend::Wgpu => 1,
        })
    }

    /// The figure that picks the best epoch: `--select-by`, else macro-F1 for balanced class
    /// weights and accuracy otherwise.
    pub fn selection(&self) -> SelectBy {
        self.select_by.unwrap_or(match self.class_weight {
            ClassWeight::Balanced => SelectBy::MacroF1,
            ClassWeight::None => SelectBy::Accuracy,
        })
    }

    /// Every check that needs no file: ranges of numbers, combinations of options.
    pub fn validate(&self) -> anyhow::Result<()> {
        let mut p = Problems(Vec::new());
        self.data.problems(&mut p);
        p.check(self.epochs >= 1, || {
            format!("--epochs {}: train at least 1 epoch", self.epochs)
        });
        p.check(!self.pretrained || self.suite == Suite::Paper, || {
            format!(
                "--pretrained gives the paper's checkpoints, whose shapes are the paper suite's; add --suite paper \
                 (not --suite {}), or start single roles with --init ROLE=hf:ID",
                self.suite
                    .to_possible_value()
                    .map(|v| v.get_name().to_string())
                    .unwrap_or_default()
            )
        });
        p.check(self.batch_size >= 1, || {
            format!("--batch-size {}: use at least 1 text per step", self.batch_size)
        });
        if let Some(workers) = self.workers {
            p.check((1..=self.batch_size.max(1)).contains(&workers), || {
                format!(
                    "--workers {workers}: from 1 to the batch size ({}); each worker trains on its share of a batch",
                    self.batch_size
                )
            });
            p.check(workers == 1 || self.backend == Backend::Cpu, || {
                format!("--workers {workers}: splitting batches between threads is for --backend cpu; a GPU takes the whole batch")
            });
        }
        if let Some(lr) = self.lr {
            p.check(lr.is_finite() && lr > 0.0 && lr < 1.0, || {
                format!("--lr {lr}: use a learning rate above 0 and below 1 (5e-4 from scratch, 5e-5 fine-tuning)")
            });
        }
        p.check(finite_in(self.weight_decay, 0.0..=1.0), || {
            format!("--weight-decay {}: use 0 to 1 (0.01 is usual)", self.weight_decay)
        });
        p.check(self.warmup.is_finite() && (0.0..1.0).contains(&self.warmup), || {
            format!(
                "--warmup {}: a share of the steps, from 0 up to (not including) 1",
                self.warmup
            )
        });
        p.check(self.clip.is_finite() && self.clip > 0.0, || {
            format!("--clip {}: a gradient norm above 0 (1.0 is usual)", self.clip)
        });
        p.check(self.patience >= 1, || {
            format!("--patience {}: at least 1 epoch without improvement", self.patience)
        });
        p.check(self.temperature.is_finite() && self.temperature > 0.0, || {
            format!("--temperature {}: above 0 (2 is usual)", self.temperature)
        });
        p.check(finite_in(self.alpha, 0.0..=1.0), || {
            format!("--alpha {}: a weight from 0 to 1", self.alpha)
        });
        p.check(self.training.is_empty() || !(self.distill || self.align), || {
            "--training lists every objective: give it without --distill or --align".to_string()
        });
        p.check(!(self.distill && self.align), || {
            "--distill and --align: --align already distils; for both, give --training distill,align".to_string()
        });
        let mut seen = Vec::new();
        for o in &self.training {
            p.check(!seen.contains(o), || {
                format!("--training: {} is listed twice", o.name())
            });
            seen.push(*o);
        }
        p.check(
            self.align_weight.is_finite() && self.align_weight > 0.0 && self.align_weight <= 100.0,
            || {
                format!(
                    "--align-weight {}: above 0, at most 100 (1 is usual)",
                    self.align_weight
                )
            },
        );
        p.check(finite_in(self.align_noise, 0.0..=1.0), || {
            format!(
                "--align-noise {}: a spread on the path, from 0 to 1 (0.3 is usual)",
                self.align_noise
            )
        });
        p.check(
            self.align_step.is_finite() && self.align_step > 0.0 && self.align_step < 0.5,
            || format!("--align-step {}: above 0 and below 0.5 (0.1 is usual)", self.align_step),
        );
        p.check(self.align_top_k >= 1, || {
            format!("--align-top-k {}: at least 1", self.align_top_k)
        });
        p.check((1..=200).contains(&self.align_ig_steps), || {
            format!(
                "--align-ig-steps {}: 1 to 200 (a ranking needs few)",
                self.align_ig_steps
            )
        });
        p.check(self.explain_n >= 1, || {
            format!(
                "--explain-n {}: explain at least 1 validation text (the comparison needs explanations)",
                self.explain_n
            )
        });
        p.0.extend(self.ig.problems());
        p.check(finite_in(self.min_accuracy, 0.0..=1.0), || {
            format!("--min-accuracy {}: an accuracy from 0 to 1", self.min_accuracy)
        });
        p.check(finite_in(self.min_similarity, -1.0..=1.0), || {
            format!(
                "--min-similarity {}: a cosine similarity from -1 to 1",
                self.min_similarity
            )
        });
        p.check(self.top_k >= 1, || format!("--top-k {}: at least 1", self.top_k));
        p.check(self.reference_seeds <= MAX_REFERENCE_SEEDS, || {
            format!(
                "--reference-seeds {}: at most {MAX_REFERENCE_SEEDS} (each one trains the teacher again; 2 gives the ceiling and a check of the teacher)",
                self.reference_seeds
            )
        });
        p.check(
            self.similarity_mode != SimilarityMode::Calibrated || self.reference_seeds >= 1,
            || "--similarity-mode calibrated needs --reference-seeds 1 or more (the ceiling)".to_string(),
        );
        p.check(finite_in(self.min_calibrated, -10.0..=10.0), || {
            format!(
                "--min-calibrated {}: a calibrated score (0 chance, 1 a retrained teacher; 0.8 is the default)",
                self.min_calibrated
            )
        });
        if let Some(x) = self.min_faithfulness {
            p.check(finite_in(x, -1.0..=1.0), || {
                format!("--min-faithfulness {x}: a difference of probabilities, from -1 to 1")
            });
        }
        if let Some(x) = self.min_behavioural {
            p.check(finite_in(x, -10.0..=10.0), || {
                format!("--min-behavioural {x}: a ratio of probability drops (1: as much as the teacher)")
            });
        }
        finish(p)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn args(extra: &[&str]) -> RunArgs {
        let mut argv = vec!["run"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).unwrap().run
    }

    #[test]
    fn defaults_pass() {
        args(&[]).validate().unwrap();
    }

    #[test]
    fn every_bad_value_is_named_at_once() {
        let err = args(&[
            "--epochs",
            "0",
            "--batch-size",
            "0",
            "--explain-n",
            "0",
            "--n-steps",
            "1000000",
            "--lr",
            "NaN",
            "--min-similarity",
            "2",
            "--alpha=-1",
            "--max-length",
            "4",
            "--reference-seeds",
            "0",
            "--similarity-mode",
            "calibrated",
        ])
        .validate()
        .unwrap_err()
        .to_string();
        for needle in [
            "--epochs 0",
            "--batch-size 0",
            "--explain-n 0",
            "--n-steps 1000000",
            "--lr NaN",
            "--min-similarity 2",
            "--alpha -1",
            "--max-length 4",
            "--similarity-mode calibrated needs --reference-seeds",
            "nothing was written",
        ] {
            assert!(err.contains(needle), "{needle} missing from: {err}");
        }
    }

    #[test]
    fn training_workers_are_checked_and_default_by_backend() {
        assert_eq!(args(&["--workers", "3"]).training_workers(), 3);
        assert_eq!(args(&["--backend", "wgpu"]).training_workers(), 1);
        assert_eq!(args(&[]).training_workers(), crate::device::cpu_workers());
        args(&["--workers", "16"]).validate().unwrap();
        for (bad, needle) in [
            (&["--workers", "0"][..], "--workers 0: from 1 to the batch size (16)"),
            (&["--workers", "17"][..], "--workers 17: from 1 to the batch size (16)"),
            (&["--workers", "2", "--backend", "wgpu"][..], "is for --backend cpu"),
        ] {
            let err = args(bad).validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{needle} missing from: {err}");
        }
    }

    #[test]
    fn an_unknown_suite_is_refused_by_the_parser() {
        assert!(Cli::try_parse_from(["run", "--suite", "foo"]).is_err());
        assert_eq!(args(&[]).selection(), SelectBy::Accuracy);
        assert_eq!(args(&["--class-weight", "balanced"]).selection(), SelectBy::MacroF1);
        assert_eq!(
            args(&["--class-weight", "balanced", "--select-by", "accuracy"]).selection(),
            SelectBy::Accuracy
        );
        assert_eq!(args(&["--select-by", "macro-f1"]).selection(), SelectBy::MacroF1);
        assert_eq!(args(&["--suite", "paper"]).suite, Suite::Paper);
        assert!(Cli::try_parse_from(["run", "--erasure", "drop"]).is_err());
        assert_eq!(args(&["--erasure", "delete"]).erasure, Erasure::Delete);
        assert_eq!(
            args(&["--similarity-positions", "padded"]).similarity_positions,
            Positions::Padded
        );
    }

    #[test]
    fn objectives_come_from_one_place_and_align_settings_only_when_used() {
        assert_eq!(args(&[]).objectives(), [Objective::Independent]);
        assert_eq!(args(&["--distill"]).objectives(), [Objective::Distill]);
        assert_eq!(args(&["--align"]).objectives(), [Objective::Align]);
        let all = args(&["--training", "independent,distill,align"]);
        assert_eq!(
            all.objectives(),
            [Objective::Independent, Objective::Distill, Objective::Align]
        );
        assert!(args(&["--distill"]).align_settings().is_none());
        // Normalised: what the chosen views do not use is left out of the fingerprint.
        let path = args(&["--align", "--align-views", "path", "--align-top-k", "9"])
            .align_settings()
            .unwrap();
        assert_eq!((path.noise, path.evidence), (Some(0.3), None));
        let evidence = args(&["--align", "--align-noise", "0.9"]).align_settings().unwrap();
        assert_eq!(evidence.noise, None);
        assert_eq!(evidence.evidence.map(|e| e.top_k), Some(5));
        let err = args(&[
            "--training",
            "align,align",
            "--distill",
            "--align-weight",
            "0",
            "--align-noise",
            "2",
            "--align-top-k",
            "0",
            "--align-ig-steps",
            "0",
        ])
        .validate()
        .unwrap_err()
        .to_string();
        for needle in [
            "--training lists every objective",
            "align is listed twice",
            "--align-weight 0",
            "--align-noise 2",
            "--align-top-k 0",
            "--align-ig-steps 0",
        ] {
            assert!(err.contains(needle), "{needle} missing from: {err}");
        }
        let both = args(&["--distill", "--align"]).validate().unwrap_err().to_string();
        assert!(both.contains("--align already distils"), "{both}");
        assert!(Cli::try_parse_from(["run", "--training", "independent,teach"]).is_err());
    }
}
