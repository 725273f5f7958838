//! The options of `trainer run` and `trainer data stats` as flags, with their help texts.
//! They become [`RunConfig`] and [`DataConfig`] (the typed settings the library takes)
//! through their serialised form, whose keys are the config file's (`--config`).

use std::path::PathBuf;

use astrid::erasure::Erasure;
use astrid::explain::{Baseline, Method};
use astrid::schema::{AlignViews, Objective, Positions, SelectBy, SimilarityMode, Suite, TargetChoice};
use clap::Args;
use serde::Serialize;
use trainer::settings::{Backend, ClassWeight};

/// The Integrated Gradients options shared by `explain` and `run`.
#[derive(Args, Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct IgArgs {
    /// Interpolation steps of Integrated Gradients.
    #[arg(long, default_value_t = 50)]
    pub n_steps: usize,
    /// Integration rule: gausslegendre, riemann_left, riemann_right, riemann_middle,
    /// riemann_trapezoid (Captum's, fixed --n-steps), or adaptive (Gauss-Kronrod panels refined
    /// until --tolerance is met, at most --max-steps gradients).
    #[arg(long, default_value = "gausslegendre")]
    pub method: Method,
    /// Adaptive IG: the largest |convergence delta| and error estimate accepted.
    #[arg(long, default_value_t = astrid::explain::DEFAULT_TOLERANCE)]
    pub tolerance: f64,
    /// Adaptive IG: the most gradient evaluations per text (15 to 10,000).
    #[arg(long, default_value_t = astrid::explain::DEFAULT_MAX_STEPS)]
    pub max_steps: usize,
    /// Where the path starts: zero, pad, mask or uniform (the mean word embedding); [CLS]/[SEP]
    /// are kept for all but zero.
    #[arg(long, default_value = "zero")]
    pub baseline: Baseline,
    /// Interpolation points per forward/backward pass (default: all at once).
    #[arg(long)]
    pub internal_batch_size: Option<usize>,
}

#[derive(Args, Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
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
    /// Labelled texts from another distribution (same columns and labels as --data): every
    /// model is also evaluated on them, and the report asks whether similarity to the teacher
    /// predicted which models fail there.
    #[arg(long, value_name = "FILE")]
    pub shift_data: Option<PathBuf>,
    /// Hold out, as the shifted part, the rows of --data whose value in this column is at or
    /// above --shift-from (numbers compared numerically, else as text), e.g. the latest terms:
    /// --shift-by term --shift-from 2015.
    #[arg(long, value_name = "COLUMN", requires = "shift_from")]
    pub shift_by: Option<String>,
    /// See --shift-by.
    #[arg(long, value_name = "VALUE", requires = "shift_by")]
    pub shift_from: Option<String>,
}

#[derive(Args, Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct RunArgs {
    /// Settings from a TOML or JSON file: keys are the flags' names without the dashes
    /// (`epochs = 3`, `batch-size = 8`); a flag on the command line overrides the file, an
    /// unknown key is an error. A run's run.json is such a file: it repeats that run.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    #[serde(flatten)]
    pub data: DataArgs,
    /// quick (reduced sizes, minutes on a CPU), paper (the real shapes) or test (tiny).
    #[arg(long, default_value = "quick", value_parser = crate::cli::choice::<Suite>(&["quick", "paper", "test"], &[]))]
    pub suite: Suite,
    /// The run directory: new, empty, or an earlier run's to resume (default runs/<timestamp>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, default_value = "cpu", value_parser = crate::cli::choice::<Backend>(&["cpu", "wgpu"], &["flex", "gpu"]))]
    pub backend: Backend,
    /// Training epochs (at least 1).
    #[arg(long, default_value_t = 5)]
    pub epochs: usize,
    /// Texts per optimizer step (at least 1).
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// CPU training: model replicas each batch is split between, one thread each, their
    /// gradients summed into one step (data-parallel). Results are reproducible for a given
    /// seed and worker count; 1 trains on one thread. Default: as many as IG uses (the cores, at
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
    #[arg(long, default_value = "none", value_parser = crate::cli::choice::<ClassWeight>(&["none", "balanced"], &[]))]
    pub class_weight: ClassWeight,
    /// The validation figure that picks each model's best epoch and stops early: accuracy, or
    /// macro-f1 (default with --class-weight balanced, where accuracy would favour the
    /// majority class the weights work against).
    #[arg(long, value_parser = crate::cli::choice::<SelectBy>(&["accuracy", "macro-f1"], &[]))]
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
    #[arg(long, value_delimiter = ',', value_name = "LIST", value_parser = crate::cli::choice::<Objective>(&["independent", "distill", "align"], &[]))]
    pub training: Vec<Objective>,
    /// Aligned views: path (points around IG's path to the baseline, each token moved by its
    /// own amount), evidence (the text without / with only the teacher's top tokens), both, or
    /// slope (the output's slope along IG's path in a random ±1 direction over the tokens).
    #[arg(long, default_value = "evidence", value_parser = crate::cli::choice::<AlignViews>(&["path", "evidence", "both", "slope"], &[]))]
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
    #[serde(flatten)]
    pub ig: IgArgs,
    /// Which class each model explains: its own prediction (model), the teacher's, or the label.
    #[arg(long, default_value = "model", value_parser = crate::cli::choice::<TargetChoice>(&["model", "teacher", "label"], &[]))]
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
    /// A retrained copy counts towards the ceiling only when its validation score is within
    /// this of the teacher's (and, with a shifted part, its shifted accuracy too): the ceiling
    /// is what equally good models agree at.
    #[arg(long, default_value_t = 0.02)]
    pub copy_tolerance: f64,
    /// Further seeds tried, in all, when a copy falls outside --copy-tolerance.
    #[arg(long, default_value_t = 2)]
    pub extra_reference_seeds: usize,
    /// calibrated: students need --min-calibrated, where 0 is chance and 1 a retrained teacher
    /// (needs --reference-seeds); absolute: they need --min-similarity (`--similarity-mode
    /// absolute --min-similarity 0.8` is the paper's rule exactly). Default: calibrated when
    /// the run measures a ceiling that lies above chance, absolute otherwise (the report says
    /// which).
    #[arg(long, value_parser = crate::cli::choice::<SimilarityMode>(&["calibrated", "absolute"], &[]))]
    pub similarity_mode: Option<SimilarityMode>,
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
    /// With a shifted part (the embedded default's, --shift-data, --shift-by): drop students
    /// that lose more than this much accuracy there beyond what the teacher loses (a student
    /// that fails where the teacher holds is no replacement for it); 1 turns the test off.
    #[arg(long, default_value_t = 0.10)]
    pub max_shift_drop: f64,
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use trainer::settings::RunConfig;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    /// The settings the library gets from these flags.
    fn args(extra: &[&str]) -> RunConfig {
        let mut argv = vec!["run"];
        argv.extend_from_slice(extra);
        crate::cli::typed(&Cli::try_parse_from(argv).unwrap().run).unwrap()
    }

    #[test]
    fn the_flags_defaults_are_the_settings_defaults_and_every_flag_is_a_key() {
        assert_eq!(args(&[]), RunConfig::default());
        let flags = serde_json::to_value(Cli::try_parse_from(["run"]).unwrap().run).unwrap();
        let keys = serde_json::to_value(RunConfig::default()).unwrap();
        let names = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(names(&flags), names(&keys));
        // Every flag of `trainer run --help` but --config is a key of the file.
        use clap::CommandFactory;
        for arg in Cli::command().get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if long != "config" {
                assert!(keys.get(long).is_some(), "--{long} has no key");
            }
        }
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
        assert_eq!(args(&[]).training_workers(), trainer::util::threads::cpu_workers());
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

#[cfg(test)]
mod shift_tests {
    use clap::Parser;
    use trainer::settings::RunConfig;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn config(extra: &[&str]) -> Result<RunConfig, String> {
        let args = Cli::try_parse_from([&["run"], extra].concat()).map_err(|e| e.to_string())?;
        crate::cli::typed(&args.run).map_err(|e| e.to_string())
    }

    #[test]
    fn the_shift_options_are_checked_before_anything_runs() {
        assert!(
            config(&["--data", "d.csv", "--shift-by", "term"])
                .unwrap_err()
                .contains("--shift-from")
        );
        let err = |extra: &[&str]| config(extra).unwrap().validate().unwrap_err().to_string();
        assert!(err(&["--shift-data", "s.csv"]).contains("need --data"));
        let both = err(&[
            "--data",
            "d.csv",
            "--shift-data",
            "s.csv",
            "--shift-by",
            "t",
            "--shift-from",
            "1",
        ]);
        assert!(both.contains("not both"), "{both}");
        let ok = config(&["--data", "d.csv", "--shift-by", "term", "--shift-from", "2015"]).unwrap();
        assert_eq!(
            (ok.data.shift_by.as_deref(), ok.data.shift_from.as_deref()),
            (Some("term"), Some("2015"))
        );
    }
}
