//! The checks a run's settings pass before anything is read or written: every problem is
//! listed at once, and a rejected command leaves no trace.

use astrid::schema::{SimilarityMode, Suite};

use super::problems::finite_in;
use super::roles::{parse_inits, parse_role_lrs, parse_role_warmups};
use super::{Backend, DataConfig, MAX_REFERENCE_SEEDS, MAX_SEQUENCE_LENGTH, Problems, RunConfig};

impl DataConfig {
    /// Records what is wrong with the data options.
    pub fn problems(&self, p: &mut Problems) {
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
        p.check(self.shift_by.is_some() == self.shift_from.is_some(), || {
            "--shift-by COLUMN and --shift-from VALUE go together".to_string()
        });
        p.check(self.shift_data.is_none() || self.shift_by.is_none(), || {
            "give --shift-data or --shift-by, not both (one shifted part per run)".to_string()
        });
        p.check(
            self.data.is_some() || (self.shift_data.is_none() && self.shift_by.is_none()),
            || "--shift-data and --shift-by need --data (the embedded corpus makes its own shifted part)".to_string(),
        );
        if let Some(path) = &self.shift_data {
            p.check(!path.is_dir(), || {
                format!(
                    "--shift-data {}: is a directory; give a CSV, TSV or JSONL file",
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
        let mut p = Problems::new();
        self.problems(&mut p);
        p.finish()
    }
}

impl RunConfig {
    /// Every check that needs no file: ranges of numbers, combinations of options, and the
    /// syntax of the per-role options.
    pub fn validate(&self) -> anyhow::Result<()> {
        let mut p = Problems::new();
        self.data.problems(&mut p);
        self.training_problems(&mut p);
        self.objective_problems(&mut p);
        self.explanation_problems(&mut p);
        self.decision_problems(&mut p);
        p.take(parse_inits(&self.init, self.pretrained));
        p.take(parse_role_lrs(&self.role_lr));
        p.take(parse_role_warmups(&self.role_warmup, self.warmup));
        p.finish()
    }

    fn training_problems(&self, p: &mut Problems) {
        p.check(self.epochs >= 1, || {
            format!("--epochs {}: train at least 1 epoch", self.epochs)
        });
        p.check(!self.pretrained || self.suite == Suite::Paper, || {
            format!(
                "--pretrained gives the paper's checkpoints, whose shapes are the paper suite's; add --suite paper \
                 (not --suite {}), or start single roles with --init ROLE=hf:ID",
                self.suite
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
    }

    fn objective_problems(&self, p: &mut Problems) {
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
    }

    fn explanation_problems(&self, p: &mut Problems) {
        p.check(self.explain_n >= 1, || {
            format!(
                "--explain-n {}: explain at least 1 validation text (the comparison needs explanations)",
                self.explain_n
            )
        });
        self.ig.problems(p);
    }

    fn decision_problems(&self, p: &mut Problems) {
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
        p.check(finite_in(self.copy_tolerance, 0.0..=1.0), || {
            format!(
                "--copy-tolerance {}: a difference of accuracies, from 0 to 1 (0.02 is two points)",
                self.copy_tolerance
            )
        });
        p.check(self.extra_reference_seeds <= MAX_REFERENCE_SEEDS, || {
            format!(
                "--extra-reference-seeds {}: at most {MAX_REFERENCE_SEEDS} (each one trains the teacher again)",
                self.extra_reference_seeds
            )
        });
        p.check(self.reference_seeds <= MAX_REFERENCE_SEEDS, || {
            format!(
                "--reference-seeds {}: at most {MAX_REFERENCE_SEEDS} (each one trains the teacher again; 2 gives the ceiling and a check of the teacher)",
                self.reference_seeds
            )
        });
        p.check(
            self.similarity_mode != Some(SimilarityMode::Calibrated) || self.reference_seeds >= 1,
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
        p.check(finite_in(self.max_shift_drop, 0.0..=1.0), || {
            format!(
                "--max-shift-drop {}: a difference of accuracies, from 0 to 1 (0.1 is ten points)",
                self.max_shift_drop
            )
        });
        if let Some(x) = self.min_behavioural {
            p.check(finite_in(x, -10.0..=10.0), || {
                format!("--min-behavioural {x}: a ratio of probability drops (1: as much as the teacher)")
            });
        }
    }
}
