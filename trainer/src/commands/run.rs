//! `trainer run`: the stages in order (prepare the data → train the suite → evaluate →
//! explain → compare → decide → report), around what makes a run safe to repeat: every
//! option checked first, the run directory bound to its inputs by a fingerprint, one process
//! at a time. Every stage keeps its output in the run directory, so the same command after a
//! kill resumes instead of starting over.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use astrid::bundle::TOKENIZER_FILE;
use astrid::files::write_atomic;
use astrid::schema::results::{RESULTS_FILE, RESULTS_FORMAT};
use astrid::schema::{DataSummary, RunResults, Thresholds};

use astrid::explain::Method;

use crate::models::device;
use crate::models::hub::{self, HubAccess, LocalModel, ModelRef};
use crate::pipeline::calibration::{CalibrationInputs, calibrate};
use crate::pipeline::comparison::compare;
use crate::pipeline::decision::decide;
use crate::pipeline::evaluate::evaluate;
use crate::pipeline::explanations::{explain_validation, teacher_targets};
use crate::pipeline::faithfulness;
use crate::pipeline::fingerprint::{
    CorpusSettings, DataSettings, DistillSettings, ExplanationSettings, ModelSettings, RUN_FORMAT, RunFile,
    RunSettings, TokenizerSettings, TrainingSettings, differences,
};
use crate::pipeline::prepare::{Loaded, check_evaluation_size, load_data, prepare};
use crate::pipeline::rundir::{self, OutDir, RUN_FILE};
use crate::pipeline::train_suite::{TrainingRun, train_references, train_suite};
use crate::report;
use crate::settings::{ClassWeight, RunConfig, parse_inits, parse_role_lrs, parse_role_warmups};
use crate::training::align::Objective;
use crate::training::train::balanced_class_weights;
use crate::util::digest::model_dir_digest;
use astrid::schema::SelectBy;

/// Makes every role's checkpoint local (fetching Hub ids into the Hugging Face cache); every
/// role that cannot be had is named, not just the first.
fn resolve_inits(
    references: BTreeMap<String, (ModelRef, String)>,
    access: &HubAccess,
) -> anyhow::Result<BTreeMap<String, LocalModel>> {
    let mut resolved = BTreeMap::new();
    let mut failed = Vec::new();
    for (role, (reference, shown)) in references {
        match hub::resolve(&reference, access) {
            Ok(checkpoint) => {
                resolved.insert(role, checkpoint);
            }
            Err(e) => failed.push(format!("{shown}: {e:#}")),
        }
    }
    match failed.len() {
        0 => Ok(resolved),
        1 => bail!("{}", failed[0]),
        n => bail!("{n} checkpoints cannot be had:\n  {}", failed.join("\n  ")),
    }
}

/// The run's fingerprint: what its results depend on, normalised.
fn run_settings(
    args: &RunConfig,
    prepared: &Loaded,
    init: BTreeMap<String, String>,
    (learning_rate, role_learning_rates): (f64, BTreeMap<String, f64>),
    role_warmups: BTreeMap<String, f64>,
) -> anyhow::Result<RunSettings> {
    let data = &prepared.data;
    let class_weights = match args.class_weight {
        ClassWeight::None => None,
        ClassWeight::Balanced => {
            let labels: Vec<usize> = prepared.split.train.iter().map(|&i| data.labels[i]).collect();
            Some(balanced_class_weights(&labels, data.label_names.len())?)
        }
    };
    let explained = args.explain_n.min(prepared.split.validation.len());
    let objectives = args.objectives();
    Ok(RunSettings {
        format: RUN_FORMAT,
        data: DataSettings {
            source: data.source.clone(),
            sha256: data.sha256.clone(),
            corpus: args.data.data.is_none().then_some(CorpusSettings {
                size: args.data.corpus_size,
                shortcut: !args.data.no_shortcut,
            }),
            text_col: args.data.text_col.clone(),
            label_col: args.data.label_col.clone(),
            labels: data.label_names.clone(),
            sample: args.data.sample.filter(|&n| n < prepared.texts_before_sample),
            seed: args.data.seed,
        },
        tokenizer: TokenizerSettings {
            sha256: prepared.source_tokenizer.as_ref().map(|(_, sha)| sha.clone()),
            vocab_size: prepared.source_tokenizer.is_none().then_some(args.data.vocab_size),
            max_length: args.data.max_length,
        },
        models: ModelSettings {
            suite: args.suite,
            init_from_teacher: args.init_from_teacher,
            init,
        },
        training: TrainingSettings {
            backend: args.backend.to_string(),
            epochs: args.epochs,
            batch_size: args.batch_size,
            learning_rate,
            role_learning_rates,
            weight_decay: args.weight_decay,
            warmup: args.warmup,
            role_warmups,
            clip: args.clip,
            patience: args.patience,
            distill: objectives.iter().any(|o| o.distills()).then_some(DistillSettings {
                temperature: args.temperature,
                alpha: args.alpha,
            }),
            objectives: (objectives.len() > 1 || objectives.contains(&Objective::Align)).then_some(objectives.clone()),
            align: args.align_settings(),
            class_weights,
            select_by: Some(args.selection()).filter(|&s| s != SelectBy::Accuracy),
            workers: Some(args.training_workers()).filter(|&w| w > 1),
        },
        explanations: ExplanationSettings {
            texts: explained,
            n_steps: args.ig.n_steps,
            method: args.ig.method,
            baseline: args.ig.baseline,
            target: args.target,
            tolerance: (args.ig.method == Method::Adaptive).then_some(args.ig.tolerance),
            max_steps: (args.ig.method == Method::Adaptive).then_some(args.ig.max_steps),
        },
    })
}

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

/// Peak learning rates: `--lr` (default 5e-4, for training from scratch) for every role, but
/// 5e-5 (fine-tuning) for a role started from an `--init` checkpoint when `--lr` is not given,
/// and `--role-lr ROLE=R` above both. Returns the common rate and the roles that differ.
fn learning_rates(
    args: &RunConfig,
    inits: &BTreeMap<String, LocalModel>,
    role_lrs: &BTreeMap<String, f64>,
) -> (f64, BTreeMap<String, f64>) {
    let common = args.lr.unwrap_or(5e-4);
    let mut differing = BTreeMap::new();
    for role in crate::models::suite::ROLES {
        let rate = role_lrs.get(role).copied().unwrap_or(match args.lr {
            None if inits.contains_key(role) => 5e-5,
            _ => common,
        });
        if rate != common {
            differing.insert(role.to_string(), rate);
        }
    }
    (common, differing)
}

/// Refuses to resume a run whose saved fingerprint differs from this command's.
fn check_same_run(out: &Path, settings: &RunSettings) -> anyhow::Result<()> {
    let path = out.join(RUN_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    let saved: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not valid JSON; give another --out for a new run", path.display()))?;
    let lines = differences(&saved, settings).with_context(|| format!("{} holds a run, but", out.display()))?;
    if !lines.is_empty() {
        bail!(
            "{} holds a run made with other settings (saved → this command):\n  {}\nTo resume it, run the command it \
             was started with; for a new run, give another --out. Nothing was written.",
            out.display(),
            lines.join("\n  ")
        );
    }
    Ok(())
}

pub fn run(args: RunConfig) -> anyhow::Result<()> {
    // Everything is checked before anything is written: options, --out, data, checkpoints.
    args.validate()?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(crate::util::clock::timestamp()));
    let found = rundir::inspect(&out)?;
    // Named files first: a wrong path should not wait for a checkpoint's download.
    for (option, path) in [("--data", &args.data.data), ("--tokenizer", &args.data.tokenizer)] {
        if let Some(path) = path
            && !path.is_file()
        {
            bail!("{option} {}: no such file", path.display());
        }
    }
    let references = parse_inits(&args.init, args.pretrained)?;
    let role_lrs = parse_role_lrs(&args.role_lr)?;
    let role_warmups = parse_role_warmups(&args.role_warmup, args.warmup)?;
    let inits = resolve_inits(references, &HubAccess::from_env(args.offline, args.quiet))?;
    let mut init_digests = BTreeMap::new();
    for (role, checkpoint) in &inits {
        let digest =
            model_dir_digest(&checkpoint.dir).with_context(|| format!("--init {role}={}", checkpoint.source))?;
        init_digests.insert(role.clone(), digest);
    }
    let loaded = load_data(&args.data, &inits)?;
    check_evaluation_size(&loaded, &args.data)?;
    let rates = learning_rates(&args, &inits, &role_lrs);
    let settings = run_settings(&args, &loaded, init_digests, rates, role_warmups)?;
    if found == OutDir::Run {
        check_same_run(&out, &settings)?;
    }
    let prepared = prepare(loaded, &args.data, (found == OutDir::Run).then_some(out.as_path()))?;
    let selected = device::select(args.backend)?;
    selected.device.seed(args.data.seed);

    std::fs::create_dir_all(&out).with_context(|| format!("{}: cannot create the run directory", out.display()))?;
    let _lock = rundir::lock(&out)?;
    // Another run may have started here between the look above and the lock.
    let resuming = out.join(RUN_FILE).exists();
    if resuming {
        check_same_run(&out, &settings)?;
        eprintln!("resuming the run in {}", out.display());
    }
    rundir::clean_stale(&out);
    eprintln!("backend: {}", selected.description);
    if args.explain_n > settings.explanations.texts {
        eprintln!(
            "note: --explain-n {} but the validation part has {} texts; all of them are explained",
            args.explain_n, settings.explanations.texts
        );
    }
    let config = RunConfig {
        out: Some(out.clone()),
        ..args.clone()
    };
    let run_file = RunFile {
        settings: &settings,
        config: &config,
    };
    write_atomic(&out.join(RUN_FILE), serde_json::to_string_pretty(&run_file)?.as_bytes())?;
    write_atomic(
        &out.join("split.json"),
        serde_json::to_string(&prepared.split)?.as_bytes(),
    )?;
    write_atomic(&out.join(TOKENIZER_FILE), prepared.tokenizer_json.as_bytes())?;
    eprintln!("{}", prepared.describe());
    let encoded = prepared.encode_splits()?;
    let mut timer = StageTimer::start();
    let training = TrainingRun {
        args: &args,
        inits: &inits,
        learning_rate: settings.training.learning_rate,
        role_learning_rates: &settings.training.role_learning_rates,
        role_warmups: &settings.training.role_warmups,
        prepared: &prepared,
        encoded: &encoded,
        out: &out,
        device: &selected.device,
        workers: selected.workers,
        class_weights: settings.training.class_weights.as_deref(),
    };
    let trained = train_suite(&training)?;
    timer.lap("training: the suite");
    let references = train_references(&training)?;
    timer.lap("training: the teacher's retrained copies");
    let data = &prepared.data;
    let mut models = evaluate(&trained, &encoded.test, data.label_names.len())?;
    let reference_accuracy: Vec<f64> = evaluate(&references.copies, &encoded.test, data.label_names.len())?
        .iter()
        .map(|r| r.accuracy)
        .collect();
    timer.lap("evaluation");
    let suite_models: Vec<(&str, &astrid::EncoderClassifier)> =
        trained.iter().map(|t| (t.role.as_str(), &t.model)).collect();
    let targets = teacher_targets(&args, suite_models[0], &encoded)?;
    let explain = |models: &[(&str, &astrid::EncoderClassifier)]| {
        explain_validation(&args, models, &targets, &prepared, &encoded, &out, selected.workers)
    };
    let attributions = explain(&suite_models)?;
    timer.lap("explanations: the suite");
    // The copies and the untrained model (the teacher's rows are already there).
    let mut calibration_models: Vec<(&str, &astrid::EncoderClassifier)> =
        references.copies.iter().map(|t| (t.role.as_str(), &t.model)).collect();
    calibration_models.push((UNTRAINED, &references.untrained));
    let mut copy_rows = explain(&calibration_models)?;
    let untrained_rows = copy_rows.pop().unwrap_or_default();
    timer.lap("explanations: the teacher's copies and the untrained model");
    compare(
        &mut models,
        &attributions,
        &prepared,
        &encoded,
        args.top_k,
        args.similarity_positions,
        args.data.seed,
    )?;
    let calibration = calibrate(
        &mut models,
        &attributions[1..].iter().map(Vec::as_slice).collect::<Vec<_>>(),
        &CalibrationInputs {
            teacher: &attributions[0],
            references: references
                .seeds
                .iter()
                .zip(&reference_accuracy)
                .zip(&copy_rows)
                .map(|((&seed, &accuracy), rows)| (seed, accuracy, rows.as_slice()))
                .collect(),
            untrained: &untrained_rows,
        },
        args.top_k,
        args.similarity_positions,
        args.data.seed,
    )?;
    timer.lap("comparison and calibration");
    faithfulness::measure(&args, &mut models, &suite_models, &attributions, &prepared, &encoded)?;
    timer.lap("faithfulness, behavioural agreement, baselines");
    let thresholds = Thresholds {
        min_accuracy: args.min_accuracy,
        min_similarity: args.min_similarity,
        top_k: args.top_k,
        similarity_mode: args.similarity_mode,
        min_calibrated: args.min_calibrated,
        min_faithfulness: args.min_faithfulness,
        min_behavioural: args.min_behavioural,
        positions: args.similarity_positions,
    };
    let decision = decide(&mut models, &thresholds, Some(&calibration));
    let results = RunResults {
        format: RESULTS_FORMAT,
        data: DataSummary {
            source: data.source.clone(),
            texts: data.len(),
            labels: data.label_names.clone(),
            class_counts: data.class_counts(),
            dropped_blank_labels: data.dropped_blank_labels,
            train: prepared.split.train.len(),
            validation: prepared.split.validation.len(),
            test: prepared.split.test.len(),
            planted_signal: data.has_planted_signal(),
        },
        settings: settings.clone(),
        backend: match settings.training.workers {
            Some(w) => format!("{}; training data-parallel on {w} model replicas", selected.description),
            None => selected.description.clone(),
        },
        thresholds,
        models,
        calibration: Some(calibration),
        stage_seconds: timer.laps,
        recommended: decision.recommended,
        recommendation: decision.explanation,
    };
    write_atomic(
        &out.join(RESULTS_FILE),
        serde_json::to_string_pretty(&results)?.as_bytes(),
    )?;
    let samples: Vec<usize> = (0..settings.explanations.texts.min(3)).collect();
    report::write(&out, &results, &attributions, &samples)?;
    println!("{}", report::table(&results));
    println!(
        "\nwrote {}/{RESULTS_FILE}, report.md, report.html; models in {}/models/",
        out.display(),
        out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_takes_teacher_as_the_teachers_role_and_refuses_a_role_twice() {
        let inits = parse_inits(&["teacher=a".to_string(), "tinybert=hf:org/b@v1".to_string()], false).unwrap();
        assert_eq!(
            inits[crate::models::suite::ROLES[0]].0,
            ModelRef::Dir(PathBuf::from("a"))
        );
        assert_eq!(
            inits["tinybert"].0,
            ModelRef::Hub {
                repo: "org/b".into(),
                revision: "v1".into()
            }
        );
        assert_eq!(inits.len(), 2);
        let twice = parse_inits(
            &["teacher=a".to_string(), format!("{}=b", crate::models::suite::ROLES[0])],
            false,
        )
        .unwrap_err();
        assert!(twice.to_string().contains("given twice"), "{twice}");
        let unknown = parse_inits(&["student=a".to_string()], false).unwrap_err();
        assert!(unknown.to_string().contains("unknown role 'student'"), "{unknown}");
        let bad_id = parse_inits(&["teacher=hf:a/b/c".to_string()], false).unwrap_err();
        assert!(format!("{bad_id:#}").contains("not a Hub model id"), "{bad_id:#}");
    }

    #[test]
    fn pretrained_names_the_papers_checkpoints_and_init_overrides_a_role() {
        let inits = parse_inits(&["tinybert=local/tiny".to_string()], true).unwrap();
        let hub = |id: &str| ModelRef::Hub {
            repo: id.into(),
            revision: "main".into(),
        };
        assert_eq!(inits[crate::models::suite::ROLES[0]].0, hub("bert-base-uncased"));
        assert_eq!(inits["distilbert"].0, hub("distilbert-base-uncased"));
        assert_eq!(inits["minilm"].0, hub("microsoft/MiniLM-L12-H384-uncased"));
        assert_eq!(inits["tinybert"].0, ModelRef::Dir(PathBuf::from("local/tiny")));
        // The two custom shapes have no published checkpoint.
        assert!(!inits.contains_key("custom_6x512") && !inits.contains_key("custom_2x384"));
        assert!(inits["distilbert"].1.starts_with("--pretrained"));
    }

    #[test]
    fn a_role_from_a_checkpoint_fine_tunes_and_the_others_train_from_scratch() {
        let inits = BTreeMap::from([(
            crate::models::suite::ROLES[0].to_string(),
            LocalModel {
                dir: PathBuf::from("a"),
                source: "a".into(),
            },
        )]);
        let none = BTreeMap::new();
        // --init teacher: the teacher fine-tunes at 5e-5, the students from scratch at 5e-4.
        let (common, differing) = learning_rates(&RunConfig::default(), &inits, &none);
        assert_eq!(common, 5e-4);
        assert_eq!(
            differing,
            BTreeMap::from([(crate::models::suite::ROLES[0].to_string(), 5e-5)])
        );
        // Without --init: nothing differs (the fingerprint of earlier runs).
        assert!(
            learning_rates(&RunConfig::default(), &BTreeMap::new(), &none)
                .1
                .is_empty()
        );
        // --lr sets every role; --role-lr one.
        let lrs = parse_role_lrs(&["tinybert=1e-3".to_string()]).unwrap();
        let (common, differing) = learning_rates(
            &RunConfig {
                lr: Some(2e-4),
                ..RunConfig::default()
            },
            &inits,
            &lrs,
        );
        assert_eq!(common, 2e-4);
        assert_eq!(differing, BTreeMap::from([("tinybert".to_string(), 1e-3)]));
        for (bad, why) in [
            ("tinybert", "expected ROLE=RATE"),
            ("student=1e-3", "unknown role 'student'"),
            ("tinybert=2", "above 0 and below 1"),
            ("tinybert=x", "above 0 and below 1"),
        ] {
            let err = parse_role_lrs(&[bad.to_string()]).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
        // --role-warmup: only the roles that differ from --warmup are kept (the fingerprint).
        let shares = parse_role_warmups(&["teacher=0.06".to_string(), "tinybert=0.1".to_string()], 0.1).unwrap();
        assert_eq!(
            shares,
            BTreeMap::from([(crate::models::suite::ROLES[0].to_string(), 0.06)])
        );
        for bad in ["teacher=1", "teacher=-0.1", "teacher=x"] {
            let err = parse_role_warmups(&[bad.to_string()], 0.1).unwrap_err().to_string();
            assert!(
                err.contains("--role-warmup") && err.contains("in [0, 1)"),
                "{bad}: {err}"
            );
        }
    }
}
