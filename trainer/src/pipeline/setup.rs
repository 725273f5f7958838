//! Before a run writes anything: every input checked (options, `--out`, data files, starting
//! models), the fingerprint computed and held against a run already in `--out`; then the run
//! directory opened, locked, and given its `run.json`, split and tokenizer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use astrid::bundle::TOKENIZER_FILE;
use astrid::explain::Method;
use astrid::files::write_atomic;
use astrid::schema::SelectBy;

use crate::models::device::{self, Selected};
use crate::models::hub::{self, HubAccess, LocalModel, ModelRef};
use crate::pipeline::fingerprint::{
    CorpusSettings, DataSettings, DistillSettings, ExplanationSettings, ModelSettings, RUN_FORMAT, RunFile,
    RunSettings, TokenizerSettings, TrainingSettings, differences,
};
use crate::pipeline::prepare::{Loaded, Prepared, check_evaluation_size, load_data, prepare};
use crate::pipeline::rundir::{self, OutDir, RUN_FILE, RunLock};
use crate::settings::{ClassWeight, RunConfig, parse_inits, parse_role_lrs, parse_role_warmups};
use crate::training::align::Objective;
use crate::training::train::balanced_class_weights;
use crate::util::digest::model_dir_digest;
use astrid::schema::settings::ShiftSettings;

/// What a run starts from once every input has been checked; nothing is written yet.
pub struct Checked {
    pub out: PathBuf,
    found: OutDir,
    pub inits: BTreeMap<String, LocalModel>,
    pub settings: RunSettings,
    loaded: Loaded,
}

/// Checks everything before anything is written: options, `--out`, data, starting models.
pub fn check(args: &RunConfig) -> anyhow::Result<Checked> {
    args.validate()?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(crate::util::clock::timestamp()));
    let found = rundir::inspect(&out)?;
    // Named files first: a wrong path should not wait for a model's download.
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
    for (role, model) in &inits {
        let digest = model_dir_digest(&model.dir).with_context(|| format!("--init {role}={}", model.source))?;
        init_digests.insert(role.clone(), digest);
    }
    let loaded = load_data(&args.data, &inits)?;
    check_evaluation_size(&loaded, &args.data)?;
    let rates = learning_rates(args, &inits, &role_lrs);
    let settings = run_settings(args, &loaded, init_digests, rates, role_warmups)?;
    if found == OutDir::Run {
        check_same_run(&out, &settings)?;
    }
    Ok(Checked {
        out,
        found,
        inits,
        settings,
        loaded,
    })
}

/// A run whose directory is open: locked, with what the stages need written.
pub struct OpenRun {
    pub out: PathBuf,
    pub inits: BTreeMap<String, LocalModel>,
    pub settings: RunSettings,
    pub prepared: Prepared,
    pub selected: Selected,
    /// Held until the run ends.
    pub lock: RunLock,
}

/// Prepares the data, starts the device, then creates (or resumes) the run directory: the
/// lock, a last check that nobody started another run there, and `run.json`, `split.json`
/// and the tokenizer.
pub fn open(args: &RunConfig, checked: Checked) -> anyhow::Result<OpenRun> {
    let Checked {
        out,
        found,
        inits,
        settings,
        loaded,
    } = checked;
    let prepared = prepare(loaded, &args.data, (found == OutDir::Run).then_some(out.as_path()))?;
    let selected = device::select(args.backend)?;
    selected.device.seed(args.data.seed);
    std::fs::create_dir_all(&out).with_context(|| format!("{}: cannot create the run directory", out.display()))?;
    let lock = rundir::lock(&out)?;
    // Another run may have started here between the look above and the lock.
    if out.join(RUN_FILE).exists() {
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
    write_run_files(args, &out, &settings, &prepared)?;
    eprintln!("{}", prepared.describe());
    Ok(OpenRun {
        out,
        inits,
        settings,
        prepared,
        selected,
        lock,
    })
}

/// `run.json` (the fingerprint and the config that repeats the run), the split, the tokenizer.
fn write_run_files(args: &RunConfig, out: &Path, settings: &RunSettings, prepared: &Prepared) -> anyhow::Result<()> {
    let config = RunConfig {
        out: Some(out.to_path_buf()),
        ..args.clone()
    };
    let run_file = RunFile {
        settings,
        config: &config,
    };
    write_atomic(&out.join(RUN_FILE), serde_json::to_string_pretty(&run_file)?.as_bytes())?;
    write_atomic(
        &out.join("split.json"),
        serde_json::to_string(&prepared.split)?.as_bytes(),
    )?;
    write_atomic(&out.join(TOKENIZER_FILE), prepared.tokenizer_json.as_bytes())?;
    Ok(())
}

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
                version: Some(crate::data::synthetic::CORPUS_VERSION),
            }),
            text_col: args.data.text_col.clone(),
            label_col: args.data.label_col.clone(),
            labels: data.label_names.clone(),
            sample: args.data.sample.filter(|&n| n < prepared.texts_before_sample),
            seed: args.data.seed,
            shift: (args.data.shift_data.is_some() || args.data.shift_by.is_some()).then(|| ShiftSettings {
                sha256: prepared.shift_sha256.clone(),
                by: args.data.shift_by.clone(),
                from: args.data.shift_from.clone(),
            }),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

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
        // Without --init: no role has a rate of its own.
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
