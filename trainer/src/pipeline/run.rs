//! `trainer run`'s stages in order: check every input ([`setup::check`]), open the run
//! directory ([`setup::open`]), train the suite and the teacher's retrained copies, evaluate,
//! explain, compare and calibrate, measure faithfulness, decide, write the results and the
//! report. Every stage keeps its output in the run directory, so the same command after a
//! kill resumes instead of starting over.

use astrid::EncoderClassifier;
use astrid::files::write_atomic;
use astrid::schema::results::{RESULTS_FILE, RESULTS_FORMAT};
use astrid::schema::{
    Calibration, DataSummary, Generalisation, GeneralisationPoint, ModelResult, RunResults, SimilarityMode,
    TextAttribution, Thresholds,
};

use crate::pipeline::calibration::{CalibrationInputs, calibrate};
use crate::pipeline::comparison::{compare, text_agreement};
use crate::pipeline::decision::decide;
use crate::pipeline::evaluate::evaluate;
use crate::pipeline::explanations::{explain_validation, teacher_targets};
use crate::pipeline::faithfulness;
use crate::pipeline::generalisation::generalisation;
use crate::pipeline::prepare::EncodedSplits;
use crate::pipeline::setup::{self, OpenRun};
use crate::pipeline::summary::summarise;
use crate::pipeline::train_suite::{References, TrainedModel, TrainingRun, train_references, train_suite};
use crate::report;
use crate::settings::RunConfig;

/// The explanations file of the untrained model of the teacher's shape (the floor).
const UNTRAINED: &str = "untrained_teacher";

/// Seconds each stage took in this invocation (a resumed run skips what is done).
struct StageTimer {
    laps: Vec<(String, f64)>,
    since: std::time::Instant,
}

impl StageTimer {
    fn start() -> Self {
        Self {
            laps: Vec::new(),
            since: std::time::Instant::now(),
        }
    }

    fn lap(&mut self, stage: &str) {
        let now = std::time::Instant::now();
        self.laps.push((stage.to_string(), (now - self.since).as_secs_f64()));
        self.since = now;
    }
}

/// What a finished run wrote: its directory and its results.
pub struct RunOutcome {
    pub out: std::path::PathBuf,
    pub results: RunResults,
}

/// Every model's explanations of the validation texts: the suite's (teacher first), the
/// retrained copies', and the untrained model's.
struct Explained {
    suite: Vec<Vec<TextAttribution>>,
    copies: Vec<Vec<TextAttribution>>,
    untrained: Vec<TextAttribution>,
}

/// Runs every stage; the run directory holds everything it wrote.
pub fn run(args: &RunConfig) -> anyhow::Result<RunOutcome> {
    let run = setup::open(args, setup::check(args)?)?;
    let encoded = run.prepared.encode_splits()?;
    let mut timer = StageTimer::start();
    let training = TrainingRun {
        args,
        inits: &run.inits,
        learning_rate: run.settings.training.learning_rate,
        role_learning_rates: &run.settings.training.role_learning_rates,
        role_warmups: &run.settings.training.role_warmups,
        prepared: &run.prepared,
        encoded: &encoded,
        out: &run.out,
        device: &run.selected.device,
        workers: run.selected.workers,
        class_weights: run.settings.training.class_weights.as_deref(),
    };
    let trained = train_suite(&training)?;
    timer.lap("training: the suite");
    let references = train_references(&training, &trained[0])?;
    timer.lap("training: the teacher's retrained copies");
    let classes = run.prepared.data.label_names.len();
    let shifted = encoded.shifted.as_ref();
    let mut models = evaluate(&trained, &encoded.test, shifted, classes)?;
    let copies = evaluate(&references.copies, &encoded.test, shifted, classes)?;
    let reference_accuracy: Vec<f64> = copies.iter().map(|r| r.accuracy).collect();
    timer.lap("evaluation");
    let explained = explain_all(args, &run, &encoded, &trained, &references, &mut timer)?;
    let calibration = measure(
        args,
        &run,
        &encoded,
        &mut models,
        &explained,
        (&references, &reference_accuracy),
    )?;
    timer.lap("comparison and calibration");
    let suite_models = models_of(&trained);
    faithfulness::measure(
        args,
        &mut models,
        &suite_models,
        &explained.suite,
        &run.prepared,
        &encoded,
    )?;
    timer.lap("faithfulness, behavioural agreement, baselines");
    let points = copy_points(args, &explained, &copies)?;
    let generalisation = generalisation(&models, &points, args.data.seed);
    let results = results(args, &run, models, (calibration, generalisation), timer.laps);
    write_atomic(
        &run.out.join(RESULTS_FILE),
        serde_json::to_string_pretty(&results)?.as_bytes(),
    )?;
    let samples: Vec<usize> = (0..run.settings.explanations.texts.min(3)).collect();
    report::write(&run.out, &results, &explained.suite, &samples)?;
    Ok(RunOutcome {
        out: run.out.clone(),
        results,
    })
}

/// Each retrained copy as a point of the generalisation plot: its similarity to the teacher
/// and what the shift costs it (none without a shifted part).
fn copy_points(
    args: &RunConfig,
    explained: &Explained,
    copies: &[ModelResult],
) -> anyhow::Result<Vec<GeneralisationPoint>> {
    let mut points = Vec::new();
    for (copy, rows) in copies.iter().zip(&explained.copies) {
        let Some(shifted_drop) = copy.shifted_drop else {
            continue;
        };
        let cosines: Vec<f64> = explained.suite[0]
            .iter()
            .zip(rows)
            .map(|(t, c)| text_agreement(t, &c.attributions, args.top_k, args.similarity_positions).map(|a| a.cosine))
            .collect::<anyhow::Result<_>>()?;
        points.push(GeneralisationPoint {
            name: copy.name.clone(),
            copy: true,
            similarity: cosines.iter().sum::<f64>() / cosines.len().max(1) as f64,
            calibrated: None,
            accuracy: copy.accuracy,
            shifted_drop,
        });
    }
    Ok(points)
}

/// (name, model) of each trained model, teacher first.
fn models_of(trained: &[TrainedModel]) -> Vec<(&str, &EncoderClassifier)> {
    trained.iter().map(|t| (t.role.as_str(), &t.model)).collect()
}

/// IG of the validation texts with the suite, then with the copies and the untrained model.
fn explain_all(
    args: &RunConfig,
    run: &OpenRun,
    encoded: &EncodedSplits,
    trained: &[TrainedModel],
    references: &References,
    timer: &mut StageTimer,
) -> anyhow::Result<Explained> {
    let suite_models = models_of(trained);
    let targets = teacher_targets(args, suite_models[0], encoded)?;
    let explain = |models: &[(&str, &EncoderClassifier)]| {
        explain_validation(
            args,
            models,
            &targets,
            &run.prepared,
            encoded,
            &run.out,
            run.selected.workers,
        )
    };
    let suite = explain(&suite_models)?;
    timer.lap("explanations: the suite");
    // The copies and the untrained model (the teacher's rows are already there).
    let mut calibration_models = models_of(&references.copies);
    calibration_models.push((UNTRAINED, &references.untrained));
    let mut copies = explain(&calibration_models)?;
    let untrained = copies.pop().unwrap_or_default();
    timer.lap("explanations: the teacher's copies and the untrained model");
    Ok(Explained {
        suite,
        copies,
        untrained,
    })
}

/// Each student's attributions against the teacher's, and the calibration they are read by
/// (against the copies kept as equally good).
fn measure(
    args: &RunConfig,
    run: &OpenRun,
    encoded: &EncodedSplits,
    models: &mut [ModelResult],
    explained: &Explained,
    (references, reference_accuracy): (&References, &[f64]),
) -> anyhow::Result<Calibration> {
    let seed = args.data.seed;
    compare(
        models,
        &explained.suite,
        &run.prepared,
        encoded,
        args.top_k,
        args.similarity_positions,
        seed,
    )?;
    calibrate(
        models,
        &explained.suite[1..].iter().map(Vec::as_slice).collect::<Vec<_>>(),
        &CalibrationInputs {
            teacher: &explained.suite[0],
            references: references
                .seeds
                .iter()
                .zip(reference_accuracy)
                .zip(&explained.copies)
                .map(|((&seed, &accuracy), rows)| (seed, accuracy, rows.as_slice()))
                .collect(),
            untrained: &explained.untrained,
            left_out: &references.left_out,
            majority_share: majority_share(&run.prepared.data.class_counts()),
        },
        args.top_k,
        args.similarity_positions,
        seed,
    )
}

/// The most common class's share of the texts.
fn majority_share(class_counts: &[usize]) -> f64 {
    let total = class_counts.iter().sum::<usize>().max(1);
    class_counts.iter().copied().max().unwrap_or(0) as f64 / total as f64
}

/// The decision rule's thresholds from the run's settings; without a `similarity_mode`,
/// calibrated similarity when the calibration gives scores, the raw similarity otherwise.
fn thresholds(args: &RunConfig, calibration: &Calibration, shifted: bool) -> Thresholds {
    let measurable = calibration.not_measurable.is_none();
    Thresholds {
        min_accuracy: args.min_accuracy,
        min_similarity: args.min_similarity,
        top_k: args.top_k,
        similarity_mode: args.similarity_mode.unwrap_or(if measurable {
            SimilarityMode::Calibrated
        } else {
            SimilarityMode::Absolute
        }),
        min_calibrated: args.min_calibrated,
        min_faithfulness: args.min_faithfulness,
        min_behavioural: args.min_behavioural,
        max_shift_drop: shifted.then_some(args.max_shift_drop),
        positions: args.similarity_positions,
    }
}

/// The decision, and everything `results.json` holds.
fn results(
    args: &RunConfig,
    run: &OpenRun,
    mut models: Vec<ModelResult>,
    (calibration, generalisation): (Calibration, Option<Generalisation>),
    stage_seconds: Vec<(String, f64)>,
) -> RunResults {
    let thresholds = thresholds(args, &calibration, !run.prepared.split.shifted.is_empty());
    let decision = decide(&mut models, &thresholds, Some(&calibration));
    let summary = summarise(&models, &thresholds, Some(&calibration), generalisation.as_ref());
    let (data, split) = (&run.prepared.data, &run.prepared.split);
    RunResults {
        format: RESULTS_FORMAT,
        data: DataSummary {
            source: data.source.clone(),
            texts: data.len() - split.shifted.len(),
            labels: data.label_names.clone(),
            class_counts: data.class_counts(),
            dropped_blank_labels: data.dropped_blank_labels,
            train: split.train.len(),
            validation: split.validation.len(),
            test: split.test.len(),
            shifted: split.shifted.len(),
            planted_signal: data.has_planted_signal(),
        },
        settings: run.settings.clone(),
        backend: match run.settings.training.workers {
            Some(w) => format!(
                "{}; training data-parallel on {w} model replicas",
                run.selected.description
            ),
            None => run.selected.description.clone(),
        },
        thresholds,
        models,
        calibration: Some(calibration),
        generalisation,
        stage_seconds,
        recommended: decision.recommended,
        recommendation: decision.explanation,
        summary,
    }
}
