//! `trainer run`: train the teacher and its students, evaluate them, explain validation
//! texts with every model, compare each student's reasons with the teacher's, rank them,
//! and write the report. Every stage's output is kept in the run directory, so running the
//! same command again after a kill resumes instead of starting over.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use astrid::EncoderClassifier;
use astrid::bundle::{ModelMeta, TOKENIZER_FILE, save_model_dir};
use astrid::compare::{cosine, merge_wordpieces, spearman, top_k_overlap};
use astrid::explain::{Attribution, ExplainInput, ExplainOptions, explain};
use astrid::files::write_atomic;
use astrid::tokenize::{TextTokenizer, TokenizedText};
use burn::module::Module;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::data::Dataset;
use crate::data::load::{Columns, load};
use crate::data::split::{Split, stratified};
use crate::data::synthetic::{CorpusSpec, generate};
use crate::device;
use crate::fingerprint::{
    CorpusSettings, DataSettings, DistillSettings, ExplanationSettings, ModelSettings, RUN_FORMAT, RunSettings,
    TokenizerSettings, TrainingSettings, checkpoint_digest, differences, sha256_hex,
};
use crate::metrics::{Classification, Summary, classification, summarise};
use crate::report;
pub use crate::run_args::{DataArgs, RunArgs, TargetChoice};
use crate::run_args::{MIN_EVALUATION_TEXTS, WARN_EVALUATION_TEXTS};
use crate::rundir::{self, OutDir, RUN_FILE};
use crate::suite::suite;
use crate::train::{CheckpointDir, Distill, Encoded, TrainOptions, argmax, predict_logits, train};
use crate::vocab::train_wordpiece;

/// The data a run works on, before tokenization: what the fingerprint needs.
pub struct Loaded {
    pub data: Dataset,
    /// The split made from `--seed` (a resumed run then checks it against its saved one).
    pub split: Split,
    /// Labelled texts before `--sample` cut them.
    pub texts_before_sample: usize,
    /// The tokenizer the run starts from (`--tokenizer`, or an `--init` checkpoint's) and its
    /// SHA-256; `None` when a vocabulary is trained on the data.
    pub source_tokenizer: Option<(String, String)>,
}

/// The data a run works on, tokenized.
pub struct Prepared {
    pub data: Dataset,
    pub split: Split,
    pub tokenizer_json: String,
    pub tokenizer: TextTokenizer,
}

/// Loads (or generates) the data, splits it and reads the tokenizer to start from. Reads
/// nothing of an earlier run.
pub fn load_data(args: &DataArgs, init_dirs: &BTreeMap<String, PathBuf>) -> anyhow::Result<Loaded> {
    let (data, split, texts_before_sample) = match &args.data {
        None => {
            let (data, split) = generate(&CorpusSpec {
                size: args.corpus_size,
                seed: args.seed,
                shortcut_rate: if args.no_shortcut {
                    0.0
                } else {
                    CorpusSpec::default().shortcut_rate
                },
                ..CorpusSpec::default()
            });
            let n = data.len();
            (data, split, n)
        }
        Some(path) => {
            let columns = Columns {
                text: args.text_col.clone(),
                label: args.label_col.clone(),
                label_order: args.labels.clone(),
            };
            let mut data = load(path, &columns)?;
            let before = data.len();
            if let Some(n) = args.sample {
                data.texts.truncate(n);
                data.labels.truncate(n);
            }
            let split = stratified(&data, 0.1, 0.1, args.seed);
            (data, split, before)
        }
    };
    if data.class_counts().iter().filter(|&&c| c > 0).count() < 2 {
        bail!("{}: the texts used hold a single class; use more rows", data.source);
    }
    let source = args
        .tokenizer
        .clone()
        .or_else(|| init_dirs.values().map(|d| d.join(TOKENIZER_FILE)).find(|p| p.exists()));
    let source_tokenizer = source
        .map(|path| {
            std::fs::read_to_string(&path)
                .with_context(|| format!("{}: cannot read the tokenizer", path.display()))
                .map(|json| {
                    let sha = sha256_hex(json.as_bytes());
                    (json, sha)
                })
        })
        .transpose()?;
    Ok(Loaded {
        data,
        split,
        texts_before_sample,
        source_tokenizer,
    })
}

/// Decides the split and the tokenizer. `saved` is the directory of the run being resumed:
/// its split (which must fit the data) and tokenizer are reused.
pub fn prepare(loaded: Loaded, args: &DataArgs, saved: Option<&Path>) -> anyhow::Result<Prepared> {
    let Loaded {
        data,
        mut split,
        source_tokenizer,
        ..
    } = loaded;
    if let Some(dir) = saved {
        let path = dir.join("split.json");
        if path.exists() {
            let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
            split = serde_json::from_str(&text).with_context(|| {
                format!(
                    "{}: not a split this tool wrote (edited?); give another --out for a new run",
                    path.display()
                )
            })?;
            split.check(data.len()).map_err(|why| {
                anyhow::anyhow!(
                    "{}: does not fit the data ({why}); the run directory was changed since the run started: \
                     give another --out for a new run",
                    path.display()
                )
            })?;
        }
    }
    let saved_tokenizer = saved.map(|d| d.join(TOKENIZER_FILE)).filter(|p| p.exists());
    let tokenizer_json = if let Some(path) = saved_tokenizer {
        std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?
    } else if let Some((json, _)) = source_tokenizer {
        json
    } else {
        train_wordpiece(split.train.iter().map(|&i| &data.texts[i]), args.vocab_size)?
    };
    let tokenizer = TextTokenizer::from_bytes(tokenizer_json.as_bytes(), "tokenizer.json", args.max_length)?;
    Ok(Prepared {
        data,
        split,
        tokenizer_json,
        tokenizer,
    })
}

/// Refuses a split too small to evaluate on; warns when accuracy will be rough.
fn check_evaluation_size(prepared: &Loaded, args: &DataArgs) -> anyhow::Result<()> {
    let (validation, test) = (prepared.split.validation.len(), prepared.split.test.len());
    if validation < MIN_EVALUATION_TEXTS || test < MIN_EVALUATION_TEXTS {
        bail!(
            "{}: {} texts give {validation} validation and {test} test texts; a run needs at least \
             {MIN_EVALUATION_TEXTS} of each (about {} labelled texts){}; nothing was written",
            prepared.data.source,
            prepared.data.len(),
            MIN_EVALUATION_TEXTS * 10,
            if args.sample.is_some() {
                ": use a larger --sample"
            } else {
                ": use more data"
            }
        );
    }
    if test < WARN_EVALUATION_TEXTS {
        eprintln!(
            "warning: only {test} test texts: each moves accuracy by {:.1} points, so compare accuracies with care",
            100.0 / test as f64
        );
    }
    Ok(())
}

fn encode(prepared: &Prepared, indices: &[usize]) -> anyhow::Result<(Encoded, Vec<TokenizedText>)> {
    let mut encoded = Encoded::default();
    let mut tokenized = Vec::with_capacity(indices.len());
    for &i in indices {
        let t = prepared
            .tokenizer
            .encode(&prepared.data.texts[i])
            .with_context(|| format!("{}: text {}", prepared.data.source, i + 1))?;
        encoded.ids.push(t.ids.clone());
        encoded.labels.push(prepared.data.labels[i]);
        tokenized.push(t);
    }
    Ok((encoded, tokenized))
}

/// One model's results.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ModelResult {
    pub name: String,
    pub architecture: String,
    pub layers: usize,
    pub hidden: usize,
    pub params: usize,
    pub accuracy: f64,
    pub f1: f64,
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
    pub top_k_overlap_mean: Option<f64>,
    pub word_similarity_mean: Option<f64>,
    pub rationale_mass: Option<f64>,
    pub shortcut_mass: Option<f64>,
    pub verdict: String,
}

/// Saved attributions of one validation text by one model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TextAttribution {
    pub index: usize,
    pub tokens: Vec<String>,
    pub special: Vec<bool>,
    pub attributions: Vec<f32>,
    pub target: usize,
    pub probs: Vec<f32>,
    pub convergence_delta: Option<f32>,
    pub label: usize,
}

fn parse_inits(specs: &[String]) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    for spec in specs {
        let Some((role, dir)) = spec.split_once('=') else {
            bail!("--init {spec}: expected ROLE=DIR, e.g. teacher_bert=checkpoints/bert-base-uncased");
        };
        if !crate::suite::ROLES.contains(&role) {
            bail!(
                "--init {spec}: unknown role '{role}'; roles are {}",
                crate::suite::ROLES.join(", ")
            );
        }
        out.insert(role.to_string(), PathBuf::from(dir));
    }
    Ok(out)
}

/// The run's fingerprint: what its results depend on, normalised.
fn run_settings(args: &RunArgs, prepared: &Loaded, init: BTreeMap<String, String>) -> RunSettings {
    let data = &prepared.data;
    let explained = args.explain_n.min(prepared.split.validation.len());
    RunSettings {
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
            learning_rate: learning_rate(args),
            weight_decay: args.weight_decay,
            warmup: args.warmup,
            clip: args.clip,
            patience: args.patience,
            distill: args.distill.then_some(DistillSettings {
                temperature: args.temperature,
                alpha: args.alpha,
            }),
        },
        explanations: ExplanationSettings {
            texts: explained,
            n_steps: args.ig.n_steps,
            method: args.ig.method,
            baseline: args.ig.baseline,
            target: args.target,
        },
    }
}

/// The peak learning rate: given, or the default for training from scratch / fine-tuning.
fn learning_rate(args: &RunArgs) -> f64 {
    args.lr.unwrap_or(if args.init.is_empty() { 5e-4 } else { 5e-5 })
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

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    // Everything is checked before anything is written: options, --out, data, checkpoints.
    args.validate()?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(crate::clock::timestamp()));
    let found = rundir::inspect(&out)?;
    let inits = parse_inits(&args.init)?;
    let mut init_digests = BTreeMap::new();
    for (role, dir) in &inits {
        let digest = checkpoint_digest(dir).with_context(|| format!("--init {role}={}", dir.display()))?;
        init_digests.insert(role.clone(), digest);
    }
    let loaded = load_data(&args.data, &inits)?;
    check_evaluation_size(&loaded, &args.data)?;
    let settings = run_settings(&args, &loaded, init_digests);
    if found == OutDir::Run {
        check_same_run(&out, &settings)?;
    }
    let prepared = prepare(loaded, &args.data, (found == OutDir::Run).then_some(out.as_path()))?;
    let selected = device::select(args.backend)?;
    let device = &selected.device;
    device.seed(args.data.seed);

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
    write_atomic(&out.join(RUN_FILE), serde_json::to_string_pretty(&settings)?.as_bytes())?;
    write_atomic(
        &out.join("split.json"),
        serde_json::to_string(&prepared.split)?.as_bytes(),
    )?;
    write_atomic(&out.join(TOKENIZER_FILE), prepared.tokenizer_json.as_bytes())?;
    let data = &prepared.data;
    eprintln!(
        "data: {} ({} texts; train {}, validation {}, test {}; classes {:?} = {:?}{})",
        data.source,
        data.len(),
        prepared.split.train.len(),
        prepared.split.validation.len(),
        prepared.split.test.len(),
        data.label_names,
        data.class_counts(),
        if data.dropped_blank_labels > 0 {
            format!("; {} rows with blank labels dropped", data.dropped_blank_labels)
        } else {
            String::new()
        }
    );
    let (train_set, _) = encode(&prepared, &prepared.split.train)?;
    let (val_set, val_tokens) = encode(&prepared, &prepared.split.validation)?;
    let (test_set, _) = encode(&prepared, &prepared.split.test)?;

    let models = suite(args.suite, prepared.tokenizer.vocab_size().max(8), args.data.max_length)?;
    let lr = settings.training.learning_rate;
    let mut trained: Vec<(String, EncoderClassifier, crate::train::TrainState)> = Vec::new();
    let mut teacher_train_logits: Option<Vec<Vec<f32>>> = None;
    for (k, (role, mut config)) in models.into_iter().enumerate() {
        config.num_labels = data.label_names.len();
        let initial = match inits.get(&role) {
            Some(dir) => {
                let (model, report) = astrid::bundle::load_checkpoint_dir(dir, data.label_names.len(), device)
                    .with_context(|| format!("--init {role}={}", dir.display()))?;
                if !report.fresh_head.is_empty() {
                    eprintln!(
                        "{role}: {} has no classification head; a fresh one is trained",
                        dir.display()
                    );
                }
                model
            }
            None => {
                config.validate()?;
                device.seed(args.data.seed.wrapping_add(k as u64));
                let fresh = config.init(device);
                match (&trained.first(), args.init_from_teacher && k > 0) {
                    (Some((_, teacher, _)), true) => match init_from_teacher(fresh, teacher) {
                        Ok((model, layers)) => {
                            eprintln!("{role}: starts from the teacher's embeddings and layers {layers:?}");
                            model
                        }
                        Err((model, why)) => {
                            eprintln!("{role}: trained from scratch ({why})");
                            model
                        }
                    },
                    _ => fresh,
                }
            }
        };
        let options = TrainOptions {
            epochs: args.epochs,
            batch_size: args.batch_size,
            learning_rate: lr,
            weight_decay: args.weight_decay,
            warmup_ratio: args.warmup,
            clip_norm: args.clip,
            patience: args.patience,
            seed: args.data.seed.wrapping_add(k as u64),
            distill: (args.distill && k > 0).then_some(Distill {
                temperature: args.temperature,
                alpha: args.alpha,
            }),
        };
        let checkpoints = CheckpointDir(out.join("checkpoints").join(&role));
        let result = train(
            &role,
            initial,
            &train_set,
            &val_set,
            teacher_train_logits.as_deref(),
            &options,
            device,
            &checkpoints,
            args.quiet,
        )?;
        let meta = ModelMeta {
            name: role.clone(),
            labels: data.label_names.clone(),
            max_length: args.data.max_length,
        };
        save_model_dir(
            &out.join("models").join(&role),
            &result.model,
            prepared.tokenizer_json.as_bytes(),
            &meta,
        )?;
        if k == 0 && args.distill {
            teacher_train_logits = Some(pollster::block_on(predict_logits(&result.model, &train_set.ids, 64))?);
        }
        trained.push((role, result.model, result.state));
    }

    // Evaluation on the test split.
    let mut results: Vec<ModelResult> = Vec::new();
    for (name, model, state) in &trained {
        let started = Instant::now();
        let logits = pollster::block_on(predict_logits(model, &test_set.ids, 64))?;
        let seconds = started.elapsed().as_secs_f64();
        let predicted: Vec<usize> = logits.iter().map(|l| argmax(l)).collect();
        let Classification {
            accuracy,
            macro_f1,
            confusion,
        } = classification(&predicted, &test_set.labels, data.label_names.len());
        results.push(ModelResult {
            name: name.clone(),
            architecture: model.config.architecture.model_type().to_string(),
            layers: model.config.num_layers,
            hidden: model.config.hidden_size,
            params: model.num_params(),
            accuracy,
            f1: macro_f1,
            confusion,
            inference_seq_per_s: test_set.ids.len() as f64 / seconds.max(1e-9),
            train_seq_per_s: state.history.iter().map(|h| h.sequences_per_second).sum::<f64>()
                / state.history.len().max(1) as f64,
            best_epoch: state.best_epoch,
            epochs_run: state.epochs_done,
            validation_accuracy: state.best_accuracy,
            mean_abs_convergence_delta: f64::NAN,
            ..ModelResult::default()
        });
    }

    // Explanations of the first N validation texts, for every model.
    let n_explain = args.explain_n.min(val_tokens.len());
    let options = args.ig.options(Attribution::Ig, None);
    let teacher_predictions: Vec<usize> = {
        let (_, teacher, _) = &trained[0];
        let logits = pollster::block_on(predict_logits(teacher, &val_set.ids[..n_explain], 64))?;
        logits.iter().map(|l| argmax(l)).collect()
    };
    let pad_id = prepared.tokenizer.token_id("[PAD]");
    let mask_id = prepared.tokenizer.token_id("[MASK]");
    let mut all_attributions: Vec<Vec<TextAttribution>> = Vec::new();
    for (name, model, _) in &trained {
        let path = out.join("explanations").join(format!("{name}.jsonl"));
        let existing: Vec<TextAttribution> = std::fs::read_to_string(&path)
            .ok()
            .map(|text| text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
            .unwrap_or_default();
        // Reused only when it explains exactly these texts (it is this run's own file).
        let fits = existing.len() == n_explain
            && existing
                .iter()
                .zip(&prepared.split.validation)
                .all(|(row, &index)| row.index == index);
        if fits {
            all_attributions.push(existing);
            continue;
        }
        let bar = if args.quiet {
            indicatif::ProgressBar::hidden()
        } else {
            indicatif::ProgressBar::new(n_explain as u64)
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template("{prefix:>14} IG {bar:30} {pos}/{len} ETA {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_prefix(name.clone());
        let mut rows = Vec::with_capacity(n_explain);
        for (j, tokens) in val_tokens.iter().take(n_explain).enumerate() {
            let target = match args.target {
                TargetChoice::Model => None,
                TargetChoice::Teacher => Some(teacher_predictions[j]),
                TargetChoice::Label => Some(val_set.labels[j]),
            };
            let input = ExplainInput {
                ids: &tokens.ids,
                special: &tokens.special,
                pad_id,
                mask_id,
            };
            let e = pollster::block_on(explain(
                model,
                &input,
                &ExplainOptions {
                    target,
                    ..options.clone()
                },
            ))?;
            rows.push(TextAttribution {
                index: prepared.split.validation[j],
                tokens: tokens.tokens.clone(),
                special: tokens.special.clone(),
                attributions: e.attributions,
                target: e.target,
                probs: e.probs,
                convergence_delta: e.convergence_delta,
                label: val_set.labels[j],
            });
            bar.inc(1);
        }
        bar.finish_and_clear();
        let jsonl: String = rows
            .iter()
            .map(|r| serde_json::to_string(r).map(|s| s + "\n"))
            .collect::<Result<_, _>>()?;
        write_atomic(&path, jsonl.as_bytes())?;
        all_attributions.push(rows);
    }

    // Similarity to the teacher, and mass on the planted rationale / shortcut.
    for (m, result) in results.iter_mut().enumerate() {
        let rows = &all_attributions[m];
        let deltas: Vec<f64> = rows
            .iter()
            .filter_map(|r| r.convergence_delta.map(|d| d.abs() as f64))
            .collect();
        result.mean_abs_convergence_delta = deltas.iter().sum::<f64>() / deltas.len().max(1) as f64;
        if data.has_planted_signal() {
            let (mut rationale, mut shortcut) = (Vec::new(), Vec::new());
            for (j, row) in rows.iter().enumerate() {
                let text_index = prepared.split.validation[j];
                let offsets = &val_tokens[j].offsets;
                let total: f64 = row
                    .attributions
                    .iter()
                    .zip(&row.special)
                    .filter(|(_, s)| !**s)
                    .map(|(a, _)| a.abs() as f64)
                    .sum();
                if total == 0.0 {
                    continue;
                }
                let mass = |spans: &[(usize, usize)]| -> f64 {
                    row.attributions
                        .iter()
                        .zip(offsets)
                        .zip(&row.special)
                        .filter(|((_, (s, e)), special)| !**special && spans.iter().any(|(a, b)| s < b && e > a))
                        .map(|((a, _), _)| a.abs() as f64)
                        .sum::<f64>()
                        / total
                };
                rationale.push(mass(&data.rationale_spans[text_index]));
                if !data.shortcut_spans[text_index].is_empty() {
                    shortcut.push(mass(&data.shortcut_spans[text_index]));
                }
            }
            result.rationale_mass = Some(rationale.iter().sum::<f64>() / rationale.len().max(1) as f64);
            result.shortcut_mass = Some(shortcut.iter().sum::<f64>() / shortcut.len().max(1) as f64);
        }
        if m == 0 {
            continue;
        }
        let teacher = &all_attributions[0];
        let (mut cos, mut rho, mut overlap, mut word_cos) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (t, s) in teacher.iter().zip(rows) {
            let keep: Vec<bool> = t.special.iter().map(|x| !x).collect();
            cos.push(cosine(&s.attributions, &t.attributions, &keep)?);
            rho.push(spearman(&s.attributions, &t.attributions, &keep)?);
            overlap.push(top_k_overlap(&t.attributions, &s.attributions, &keep, args.top_k)?);
            let tw = merge_wordpieces(&t.tokens, &t.attributions, &t.special);
            let sw = merge_wordpieces(&s.tokens, &s.attributions, &s.special);
            let ta: Vec<f32> = tw.iter().map(|w| w.attribution).collect();
            let sa: Vec<f32> = sw.iter().map(|w| w.attribution).collect();
            let wkeep: Vec<bool> = tw.iter().map(|w| !w.special).collect();
            word_cos.push(cosine(&sa, &ta, &wkeep)?);
        }
        let Summary { mean, std, ci95, .. } = summarise(&cos, args.data.seed);
        result.similarity_mean = Some(mean);
        result.similarity_std = Some(std);
        result.similarity_ci = Some(ci95);
        result.spearman_mean = Some(rho.iter().sum::<f64>() / rho.len().max(1) as f64);
        result.top_k_overlap_mean = Some(overlap.iter().sum::<f64>() / overlap.len().max(1) as f64);
        result.word_similarity_mean = Some(word_cos.iter().sum::<f64>() / word_cos.len().max(1) as f64);
    }

    let recommended = decide(&mut results, args.min_accuracy, args.min_similarity);
    let summary = json!({
        "data": {
            "source": data.source, "texts": data.len(), "labels": data.label_names, "class_counts": data.class_counts(),
            "dropped_blank_labels": data.dropped_blank_labels, "train": prepared.split.train.len(),
            "validation": prepared.split.validation.len(), "test": prepared.split.test.len(),
            "planted_signal": data.has_planted_signal(),
        },
        "settings": settings,
        "backend": selected.description,
        "thresholds": {"min_accuracy": args.min_accuracy, "min_similarity": args.min_similarity},
        "models": results,
        "recommended": recommended.recommended,
        "recommendation": recommended.explanation,
    });
    write_atomic(
        &out.join("results.json"),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    let samples: Vec<usize> = (0..n_explain.min(3)).collect();
    report::write(&out, &summary, &results, &all_attributions, &samples)?;
    println!("{}", report::table(&results, &recommended.explanation));
    println!(
        "\nwrote {}/results.json, report.md, report.html; models in {}/models/",
        out.display(),
        out.display()
    );
    Ok(())
}

/// Copies the teacher's embeddings (and LayerNorm) and evenly spaced encoder layers into a
/// student of the same width, as DistilBERT was initialised from BERT. The student keeps its
/// own head. Returns the model unchanged, with the reason, when the shapes do not allow it.
#[allow(clippy::result_large_err)]
pub fn init_from_teacher(
    mut student: EncoderClassifier,
    teacher: &EncoderClassifier,
) -> Result<(EncoderClassifier, Vec<usize>), (EncoderClassifier, String)> {
    let (s, t) = (&student.config, &teacher.config);
    let mismatch = [
        ("hidden size", s.hidden_size, t.hidden_size),
        ("attention heads", s.num_heads, t.num_heads),
        ("feed-forward size", s.intermediate_size, t.intermediate_size),
        ("vocabulary", s.vocab_size, t.vocab_size),
        ("positions", s.max_position_embeddings, t.max_position_embeddings),
    ]
    .into_iter()
    .find(|(_, a, b)| a != b);
    if let Some((what, a, b)) = mismatch {
        return Err((student, format!("its {what} is {a}, the teacher's {b}")));
    }
    if s.num_layers > t.num_layers {
        let why = format!(
            "it has more layers ({}) than the teacher ({})",
            s.num_layers, t.num_layers
        );
        return Err((student, why));
    }
    let layers: Vec<usize> = (0..s.num_layers).map(|i| i * t.num_layers / s.num_layers).collect();
    student.embeddings.word_embeddings = teacher.embeddings.word_embeddings.clone();
    student.embeddings.position_embeddings = teacher.embeddings.position_embeddings.clone();
    student.embeddings.layer_norm = teacher.embeddings.layer_norm.clone();
    if student.embeddings.token_type_embeddings.is_some() {
        student.embeddings.token_type_embeddings = teacher.embeddings.token_type_embeddings.clone();
    }
    for (i, &from) in layers.iter().enumerate() {
        let dropout = student.layers[i].dropout.clone();
        let attention_dropout = student.layers[i].attention_dropout.clone();
        student.layers[i] = teacher.layers[from].clone();
        student.layers[i].dropout = dropout;
        student.layers[i].attention_dropout = attention_dropout;
    }
    Ok((student, layers))
}

/// The decision framework's outcome.
pub struct Decision {
    pub recommended: Option<String>,
    pub explanation: String,
}

/// Keeps students with accuracy ≥ `min_accuracy` and similarity ≥ `min_similarity`,
/// recommends the smallest (fewest parameters); marks each model's verdict.
pub fn decide(results: &mut [ModelResult], min_accuracy: f64, min_similarity: f64) -> Decision {
    let mut best: Option<(usize, usize)> = None;
    for (i, r) in results.iter_mut().enumerate() {
        if i == 0 {
            r.verdict = "teacher (reference)".into();
            continue;
        }
        let similarity = r.similarity_mean.unwrap_or(f64::NAN);
        let mut reasons = Vec::new();
        if r.accuracy.is_nan() || r.accuracy < min_accuracy {
            reasons.push(format!("accuracy {:.3} < {min_accuracy}", r.accuracy));
        }
        if similarity.is_nan() || similarity < min_similarity {
            reasons.push(format!("similarity {similarity:.3} < {min_similarity}"));
        }
        if reasons.is_empty() {
            r.verdict = "keep".into();
            if best.is_none_or(|(_, p)| r.params < p) {
                best = Some((i, r.params));
            }
        } else {
            r.verdict = format!("drop: {}", reasons.join(", "));
        }
    }
    match best {
        Some((i, _)) => {
            results[i].verdict = "keep (recommended: smallest that passes)".into();
            let r = &results[i];
            Decision {
                recommended: Some(r.name.clone()),
                explanation: format!(
                    "Recommended: {} ({} parameters, {:.1}% of the teacher's): accuracy {:.3}, similarity to the teacher {:.3}.",
                    r.name,
                    r.params,
                    100.0 * r.params as f64 / results[0].params as f64,
                    r.accuracy,
                    r.similarity_mean.unwrap_or(f64::NAN)
                ),
            }
        }
        None => Decision {
            recommended: None,
            explanation: format!(
                "No student passes both thresholds (accuracy ≥ {min_accuracy}, similarity ≥ {min_similarity}); see each verdict. Keep the teacher, or train the students longer / with --distill."
            ),
        },
    }
}

/// `trainer data stats`: what is in a data file.
pub fn stats(args: DataArgs) -> anyhow::Result<()> {
    args.validate()?;
    let prepared = prepare(load_data(&args, &BTreeMap::new())?, &args, None)?;
    let data = &prepared.data;
    println!("source       {}", data.source);
    println!(
        "rows         {} labelled{}",
        data.len(),
        if data.dropped_blank_labels > 0 {
            format!(" ({} with blank labels dropped)", data.dropped_blank_labels)
        } else {
            String::new()
        }
    );
    for (name, count) in data.label_names.iter().zip(data.class_counts()) {
        println!(
            "class        {name:<24} {count:>6}  {:>5.1}%",
            100.0 * count as f64 / data.len() as f64
        );
    }
    let untruncated = TextTokenizer::from_bytes(prepared.tokenizer_json.as_bytes(), "tokenizer.json", 1 << 20)?;
    let mut lengths: Vec<usize> = data
        .texts
        .iter()
        .map(|t| untruncated.encode(t).map(|e| e.ids.len()))
        .collect::<Result<_, _>>()?;
    lengths.sort_unstable();
    let pct = |p: f64| lengths[((lengths.len() - 1) as f64 * p).round() as usize];
    println!(
        "tokens       mean {:.0}, p50 {}, p90 {}, p95 {}, max {} (with [CLS]/[SEP]; {} of {} texts longer than --max-length {})",
        lengths.iter().sum::<usize>() as f64 / lengths.len() as f64,
        pct(0.5),
        pct(0.9),
        pct(0.95),
        lengths[lengths.len() - 1],
        lengths.iter().filter(|&&l| l > args.max_length).count(),
        lengths.len(),
        args.max_length
    );
    println!(
        "split        train {}, validation {}, test {} (seed {})",
        prepared.split.train.len(),
        prepared.split.validation.len(),
        prepared.split.test.len(),
        prepared.split.seed
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use astrid::ModelConfig;
    use astrid::explain::read_f32;
    use burn::tensor::Device;

    fn result(name: &str, params: usize, accuracy: f64, similarity: Option<f64>) -> ModelResult {
        ModelResult {
            name: name.into(),
            architecture: "bert".into(),
            layers: 1,
            hidden: 8,
            params,
            accuracy,
            f1: accuracy,
            confusion: vec![],
            inference_seq_per_s: 1.0,
            train_seq_per_s: 1.0,
            best_epoch: 1,
            epochs_run: 1,
            validation_accuracy: accuracy,
            similarity_mean: similarity,
            ..ModelResult::default()
        }
    }

    #[test]
    fn decision_keeps_passing_students_and_recommends_the_smallest() {
        let mut results = vec![
            result("teacher", 100, 0.9, None),
            result("big", 50, 0.85, Some(0.9)),
            result("small", 10, 0.75, Some(0.81)),
            result("tiny_but_wrong", 5, 0.6, Some(0.95)),
            result("tiny_but_different", 4, 0.9, Some(0.5)),
        ];
        let d = decide(&mut results, 0.7, 0.8);
        assert_eq!(d.recommended.as_deref(), Some("small"));
        assert!(results[1].verdict.starts_with("keep") && results[2].verdict.contains("recommended"));
        assert!(
            results[3].verdict.contains("accuracy 0.600 < 0.7"),
            "{}",
            results[3].verdict
        );
        assert!(
            results[4].verdict.contains("similarity 0.500 < 0.8"),
            "{}",
            results[4].verdict
        );
        let d = decide(&mut results, 0.95, 0.8);
        assert_eq!(d.recommended, None);
        assert!(d.explanation.contains("No student passes"));
    }

    #[test]
    fn students_of_the_teachers_width_start_from_its_layers() {
        let device = Device::flex();
        let teacher_config = ModelConfig {
            num_layers: 4,
            ..ModelConfig::preset("tiny_bert").unwrap()
        };
        let teacher = teacher_config.init(&device);
        let student = ModelConfig {
            num_layers: 2,
            ..ModelConfig::preset("tiny_distilbert").unwrap()
        }
        .init(&device);
        let (student, layers) = init_from_teacher(student, &teacher).map_err(|(_, why)| why).unwrap();
        assert_eq!(layers, vec![0, 2]);
        let same = |a: burn::tensor::Tensor<2>, b: burn::tensor::Tensor<2>| {
            pollster::block_on(read_f32(a)).unwrap() == pollster::block_on(read_f32(b)).unwrap()
        };
        assert!(same(
            student.embeddings.word_embeddings.weight.val(),
            teacher.embeddings.word_embeddings.weight.val()
        ));
        assert!(same(
            student.layers[1].query.weight.val(),
            teacher.layers[2].query.weight.val()
        ));
        assert!(
            student.embeddings.token_type_embeddings.is_none(),
            "a DistilBERT student keeps its layout"
        );
        let narrow = ModelConfig {
            hidden_size: 8,
            ..ModelConfig::preset("tiny_bert").unwrap()
        }
        .init(&device);
        let (_, why) = init_from_teacher(narrow, &teacher).err().unwrap();
        assert!(why.contains("hidden size is 8"), "{why}");
    }
}
