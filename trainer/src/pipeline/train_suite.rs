//! The training stage: the teacher, then each student (from an `--init` checkpoint, from
//! the teacher's layers, or from scratch; distilled from the teacher when asked), each saved
//! as a model directory of the run; and the references the comparison is calibrated with:
//! the teacher retrained with other seeds, and an untrained model of its shape.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use astrid::EncoderClassifier;
use astrid::bundle::{ModelMeta, save_model_dir};
use burn::module::Module;
use burn::tensor::Device;

use crate::models::hub::LocalModel;
use crate::models::suite::{student_name, suite};
use crate::pipeline::prepare::{EncodedSplits, Prepared};
use crate::settings::RunConfig;
use crate::training::align::Objective;
use crate::training::align::targets::{AlignInputs, AlignTargets, align_targets};
use crate::training::batches::predict_logits;
use crate::training::losses::{Distill, Guidance};
use crate::training::resume::{TrainState, TrainingStateDir};
use crate::training::train::{TrainOptions, train};

/// One trained model of the suite.
pub struct TrainedModel {
    /// The model's name: its role, with `-distill` / `-align` when a run trains a role in
    /// more than one way.
    pub role: String,
    pub objective: Objective,
    /// Where its training started: a checkpoint, the teacher's layers, or scratch.
    pub starts_from: String,
    /// Its peak learning rate and the share of its steps spent warming up to it.
    pub learning_rate: f64,
    pub warmup: f64,
    pub model: EncoderClassifier,
    pub state: TrainState,
}

/// Where a role starts from before training (`config` already has the data's classes), and
/// that place in words for the report: its checkpoint, the teacher's layers, or scratch.
fn initial_model(
    run: &TrainingRun,
    role: &str,
    seed: u64,
    config: astrid::ModelConfig,
    teacher: Option<&EncoderClassifier>,
) -> anyhow::Result<(EncoderClassifier, String)> {
    let (args, device) = (run.args, run.device);
    if let Some(checkpoint) = run.inits.get(role) {
        let dir = &checkpoint.dir;
        let (model, report) = astrid::bundle::load_checkpoint_dir(dir, config.num_labels, device)
            .with_context(|| format!("--init {role}={}", checkpoint.source))?;
        let tokens = run.prepared.tokenizer.vocab_size();
        if model.config.vocab_size < tokens {
            anyhow::bail!(
                "--init {role}={}: its embeddings hold {} tokens, but the run's tokenizer has {tokens}; give roles \
                 checkpoints that share one vocabulary (or --tokenizer with the checkpoint's own)",
                checkpoint.source,
                model.config.vocab_size
            );
        }
        let own_tokenizer = astrid::bundle::read_tokenizer_json(dir).ok();
        if own_tokenizer.is_some_and(|json| json != run.prepared.tokenizer_json.as_bytes()) {
            eprintln!(
                "note: {role}: {} has a tokenizer of its own that differs from the run's; its embeddings are read \
                 with the run's token ids",
                checkpoint.source
            );
        }
        if !report.ignored.is_empty() {
            eprintln!(
                "{role}: {} tensor(s) of {} are not part of a sequence classifier and are ignored: {}",
                report.ignored.len(),
                checkpoint.source,
                report.ignored.iter().take(6).cloned().collect::<Vec<_>>().join(", ")
            );
        }
        let mut from = format!("checkpoint {}", checkpoint.source);
        if !report.fresh_head.is_empty() {
            eprintln!(
                "{role}: {} has no classification head; a fresh one is trained",
                checkpoint.source
            );
            from.push_str(" (fresh head)");
        }
        return Ok((model, from));
    }
    config.validate()?;
    device.seed(seed);
    let fresh = config.init(device);
    Ok(match teacher.filter(|_| args.init_from_teacher) {
        Some(teacher) => match fresh.start_from_teacher(teacher) {
            Ok((model, layers)) => {
                eprintln!("{role}: starts from the teacher's embeddings and layers {layers:?}");
                (model, format!("the teacher's embeddings and layers {layers:?}"))
            }
            Err((model, why)) => {
                eprintln!("{role}: trained from scratch ({why})");
                (model, format!("scratch ({why})"))
            }
        },
        None => (fresh, "scratch".to_string()),
    })
}

fn train_options(run: &TrainingRun, role: &str, seed: u64) -> TrainOptions {
    let (args, learning_rate) = (run.args, run.learning_rate_of(role));
    TrainOptions {
        epochs: args.epochs,
        batch_size: args.batch_size,
        learning_rate,
        weight_decay: args.weight_decay,
        warmup_ratio: run.warmup_of(role),
        clip_norm: args.clip,
        patience: args.patience,
        seed,
        distill: None,
        class_weights: run.class_weights.map(|w| w.iter().map(|&x| x as f32).collect()),
        select_by: args.selection(),
        workers: args.training_workers(),
    }
}

/// What every model trained in a run shares.
#[derive(Clone, Copy)]
pub struct TrainingRun<'a> {
    pub args: &'a RunConfig,
    pub inits: &'a BTreeMap<String, LocalModel>,
    /// The peak learning rate of every role not in `role_learning_rates`.
    pub learning_rate: f64,
    pub role_learning_rates: &'a BTreeMap<String, f64>,
    /// Roles whose warm-up share is not `--warmup`'s.
    pub role_warmups: &'a BTreeMap<String, f64>,
    pub prepared: &'a Prepared,
    pub encoded: &'a EncodedSplits,
    pub out: &'a Path,
    pub device: &'a Device,
    /// Threads for IG (the teacher's attributions for evidence views).
    pub workers: usize,
    /// The cross-entropy's class weights (`--class-weight balanced`).
    pub class_weights: Option<&'a [f64]>,
}

impl TrainingRun<'_> {
    /// The peak learning rate of a role (its copies and variants share it).
    pub fn learning_rate_of(&self, role: &str) -> f64 {
        self.role_learning_rates
            .get(role)
            .copied()
            .unwrap_or(self.learning_rate)
    }

    /// The share of a role's steps spent warming up.
    pub fn warmup_of(&self, role: &str) -> f64 {
        self.role_warmups.get(role).copied().unwrap_or(self.args.warmup)
    }
}

/// Seeds of the teacher's retrained copies: far from the suite's (seed + role index).
pub fn reference_seed(seed: u64, copy: usize) -> u64 {
    seed.wrapping_add(100 + copy as u64)
}

/// The seed of the untrained model of the teacher's shape.
pub fn untrained_seed(seed: u64) -> u64 {
    seed.wrapping_add(99)
}

/// What the comparison is calibrated with.
pub struct References {
    /// The teacher retrained with other seeds (same configuration, starting point, data, split
    /// and settings): up to `--reference-seeds` of them, each as good as the teacher.
    pub copies: Vec<TrainedModel>,
    /// Their seeds, in that order.
    pub seeds: Vec<u64>,
    /// Why each copy left out was left out.
    pub left_out: Vec<String>,
    /// A model of the teacher's shape as initialised, never trained.
    pub untrained: EncoderClassifier,
}

/// Whether a retrained copy is as good as the teacher: its validation score within
/// `tolerance` of the teacher's, and its shifted accuracy (where there is a shifted part) too,
/// so that it does not lean on what the shift breaks more than the teacher does.
pub fn equally_good(teacher: (f64, Option<f64>), copy: (f64, Option<f64>), tolerance: f64) -> Result<(), String> {
    let ((teacher_score, teacher_shifted), (copy_score, copy_shifted)) = (teacher, copy);
    if copy_score < teacher_score - tolerance {
        return Err(format!(
            "validation score {copy_score:.3} against the teacher's {teacher_score:.3} (more than {tolerance} below)"
        ));
    }
    if let (Some(t), Some(c)) = (teacher_shifted, copy_shifted)
        && c < t - tolerance
    {
        return Err(format!(
            "shifted accuracy {c:.3} against the teacher's {t:.3} (more than {tolerance} below): it leans on what the shift breaks"
        ));
    }
    Ok(())
}

/// Trains (or resumes) the teacher's retrained copies, named `reference_1`, `reference_2`, …
/// (checkpoints only: they are not part of the suite), keeping those as good as `teacher`
/// ([`equally_good`]) and trying up to `--extra-reference-seeds` further seeds in place of
/// the others; and builds the untrained model.
pub fn train_references(run: &TrainingRun, teacher: &TrainedModel) -> anyhow::Result<References> {
    let TrainingRun {
        args,
        prepared,
        encoded,
        out,
        device,
        ..
    } = *run;
    let labels = &prepared.data.label_names;
    let models = suite(args.suite, prepared.tokenizer.vocab_size().max(8), args.data.max_length)?;
    let Some((teacher_role, mut config)) = models.into_iter().next() else {
        anyhow::bail!("the suite has no teacher");
    };
    config.num_labels = labels.len();
    let (mut copies, mut seeds, mut left_out) = (Vec::new(), Vec::new(), Vec::new());
    let classes = labels.len();
    let shifted_accuracy = |model: &TrainedModel| -> anyhow::Result<Option<f64>> {
        let Some(shifted) = encoded.shifted.as_ref() else {
            return Ok(None);
        };
        crate::pipeline::evaluate::accuracy_on(&model.model, shifted, classes).map(Some)
    };
    let teacher_measures = (teacher.state.best_accuracy, shifted_accuracy(teacher)?);
    let budget = args.reference_seeds + args.extra_reference_seeds;
    for copy in 1..=budget {
        if copies.len() == args.reference_seeds {
            break;
        }
        let seed = reference_seed(args.data.seed, copy);
        let name = format!("reference_{copy}");
        let (initial, starts_from) = initial_model(run, &teacher_role, seed, config.clone(), None)?;
        let result = train(
            &name,
            initial,
            &encoded.train,
            &encoded.validation,
            Guidance::default(),
            &train_options(run, &teacher_role, seed),
            device,
            &TrainingStateDir(out.join("checkpoints").join(&name)),
            args.quiet,
        )?;
        let trained = TrainedModel {
            role: name.clone(),
            objective: Objective::Independent,
            starts_from,
            learning_rate: run.learning_rate_of(&teacher_role),
            warmup: run.warmup_of(&teacher_role),
            model: result.model,
            state: result.state,
        };
        let measures = (trained.state.best_accuracy, shifted_accuracy(&trained)?);
        match equally_good(teacher_measures, measures, args.copy_tolerance) {
            Ok(()) => {
                seeds.push(seed);
                copies.push(trained);
            }
            Err(why) => left_out.push(format!("{name} (seed {seed}): {why}")),
        }
    }
    config.validate()?;
    device.seed(untrained_seed(args.data.seed));
    let untrained = config.init(device).valid();
    Ok(References {
        copies,
        seeds,
        left_out,
        untrained,
    })
}

/// Trains (or, after a kill, resumes) every model of the suite, teacher first; each student
/// once per objective (`--training`), from the same seed and starting point.
pub fn train_suite(run: &TrainingRun) -> anyhow::Result<Vec<TrainedModel>> {
    let (args, prepared) = (run.args, run.prepared);
    let models = suite(args.suite, prepared.tokenizer.vocab_size().max(8), args.data.max_length)?;
    let objectives = args.objectives();
    let mut trained: Vec<TrainedModel> = Vec::new();
    let mut from_teacher = TeacherGuidance::default();
    for (k, (role, mut config)) in models.into_iter().enumerate() {
        config.num_labels = prepared.data.label_names.len();
        let seed = args.data.seed.wrapping_add(k as u64);
        let variants: &[Objective] = if k == 0 { &[Objective::Independent] } else { &objectives };
        for &objective in variants {
            let plan = ModelPlan {
                name: if k == 0 {
                    role.clone()
                } else {
                    student_name(&role, objective, &objectives)
                },
                role: &role,
                objective,
                seed,
                config: config.clone(),
            };
            let teacher = trained.first().map(|t| &t.model);
            let model = train_and_save(run, plan, teacher, from_teacher.for_objective(objective))?;
            if k == 0 {
                from_teacher = TeacherGuidance::of(run, &model, &objectives)?;
            }
            trained.push(model);
        }
    }
    Ok(trained)
}

/// One model of the suite to train: its role, its name in the run, how it learns, and from
/// which seed and configuration.
struct ModelPlan<'a> {
    role: &'a str,
    name: String,
    objective: Objective,
    seed: u64,
    config: astrid::ModelConfig,
}

/// What the trained teacher gives the students that learn from it: its logits on the training
/// texts (for distillation) and the alignment targets; each only when some objective needs it.
#[derive(Default)]
struct TeacherGuidance {
    train_logits: Option<Vec<Vec<f32>>>,
    align: Option<AlignTargets>,
}

impl TeacherGuidance {
    /// Computes what `objectives` need from the trained `teacher`.
    fn of(run: &TrainingRun, teacher: &TrainedModel, objectives: &[Objective]) -> anyhow::Result<TeacherGuidance> {
        let TrainingRun {
            args,
            prepared,
            encoded,
            out,
            ..
        } = *run;
        let mut guidance = TeacherGuidance::default();
        if objectives.iter().any(|o| o.distills()) {
            let logits = predict_logits(&teacher.model, &encoded.train.ids, 64)
                .with_context(|| format!("{}: logits for distillation", teacher.role))?;
            guidance.train_logits = Some(logits);
        }
        if let Some(settings) = args.align_settings() {
            let inputs = AlignInputs {
                settings,
                seed: args.data.seed,
                epochs: args.epochs,
                train: &encoded.train,
                special_ids: (
                    prepared.tokenizer.token_id("[PAD]"),
                    prepared.tokenizer.token_id("[MASK]"),
                ),
                workers: run.workers,
                quiet: args.quiet,
            };
            guidance.align = Some(align_targets(&teacher.model, &teacher.state.best_sha256, &inputs, out)?);
        }
        Ok(guidance)
    }

    /// The part of the guidance a model trained with `objective` uses.
    fn for_objective(&self, objective: Objective) -> Guidance<'_> {
        Guidance {
            teacher_logits: self.train_logits.as_deref().filter(|_| objective.distills()),
            align: self.align.as_ref().filter(|_| objective == Objective::Align),
        }
    }
}

/// Trains (or resumes) one model of the suite and saves it as a model directory of the run,
/// so that export and explain read every model the same way.
fn train_and_save(
    run: &TrainingRun,
    plan: ModelPlan,
    teacher: Option<&EncoderClassifier>,
    guidance: Guidance,
) -> anyhow::Result<TrainedModel> {
    let TrainingRun {
        args,
        prepared,
        encoded,
        out,
        device,
        ..
    } = *run;
    let ModelPlan {
        role,
        name,
        objective,
        seed,
        config,
    } = plan;
    let (initial, starts_from) = initial_model(run, role, seed, config, teacher)?;
    let options = TrainOptions {
        distill: objective.distills().then_some(Distill {
            temperature: args.temperature,
            alpha: args.alpha,
        }),
        ..train_options(run, role, seed)
    };
    let checkpoints = TrainingStateDir(out.join("checkpoints").join(&name));
    let result = train(
        &name,
        initial,
        &encoded.train,
        &encoded.validation,
        guidance,
        &options,
        device,
        &checkpoints,
        args.quiet,
    )?;
    let meta = ModelMeta {
        name: name.clone(),
        labels: prepared.data.label_names.clone(),
        max_length: args.data.max_length,
    };
    save_model_dir(
        &out.join("models").join(&name),
        &result.model,
        prepared.tokenizer_json.as_bytes(),
        &meta,
    )?;
    Ok(TrainedModel {
        role: name,
        objective,
        starts_from,
        learning_rate: run.learning_rate_of(role),
        warmup: run.warmup_of(role),
        model: result.model,
        state: result.state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_below_the_tolerance_is_not_an_equally_good_model() {
        // Within two points of the teacher: kept.
        assert!(equally_good((0.90, None), (0.885, None), 0.02).is_ok());
        // Better than the teacher: kept (the teacher check judges the teacher).
        assert!(equally_good((0.90, Some(0.80)), (0.95, Some(0.90)), 0.02).is_ok());
        // Three points below on validation: left out, with the figures.
        let why = equally_good((0.90, None), (0.87, None), 0.02).unwrap_err();
        assert!(
            why.starts_with("validation score 0.870 against the teacher's 0.900"),
            "{why}"
        );
        // As good on validation, but it falls on the shifted part where the teacher does not.
        let why = equally_good((0.90, Some(0.88)), (0.90, Some(0.70)), 0.02).unwrap_err();
        assert!(
            why.contains("shifted accuracy 0.700") && why.contains("leans on what the shift breaks"),
            "{why}"
        );
    }
}
