//! The training stage: the teacher, then each student (from an `--init` checkpoint, from
//! the teacher's layers, or from scratch; distilled from the teacher when asked), each saved
//! as a model directory of the run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use astrid::EncoderClassifier;
use astrid::bundle::{ModelMeta, save_model_dir};
use burn::tensor::Device;

use crate::checkpoints::{CheckpointDir, TrainState};
use crate::prepare::{EncodedSplits, Prepared};
use crate::run_args::RunArgs;
use crate::suite::suite;
use crate::train::{Distill, TrainOptions, predict_logits, train};

/// One trained model of the suite.
pub struct TrainedModel {
    pub role: String,
    pub model: EncoderClassifier,
    pub state: TrainState,
}

/// Where a role starts from before training (`config` already has the data's classes).
fn initial_model(
    role: &str,
    k: usize,
    args: &RunArgs,
    inits: &BTreeMap<String, PathBuf>,
    config: astrid::ModelConfig,
    teacher: Option<&EncoderClassifier>,
    device: &Device,
) -> anyhow::Result<EncoderClassifier> {
    if let Some(dir) = inits.get(role) {
        let (model, report) = astrid::bundle::load_checkpoint_dir(dir, config.num_labels, device)
            .with_context(|| format!("--init {role}={}", dir.display()))?;
        if !report.fresh_head.is_empty() {
            eprintln!(
                "{role}: {} has no classification head; a fresh one is trained",
                dir.display()
            );
        }
        return Ok(model);
    }
    config.validate()?;
    device.seed(args.data.seed.wrapping_add(k as u64));
    let fresh = config.init(device);
    Ok(match teacher.filter(|_| args.init_from_teacher) {
        Some(teacher) => match fresh.start_from_teacher(teacher) {
            Ok((model, layers)) => {
                eprintln!("{role}: starts from the teacher's embeddings and layers {layers:?}");
                model
            }
            Err((model, why)) => {
                eprintln!("{role}: trained from scratch ({why})");
                model
            }
        },
        None => fresh,
    })
}

/// Trains (or, after a kill, resumes) every model of the suite, teacher first.
pub fn train_suite(
    args: &RunArgs,
    inits: &BTreeMap<String, PathBuf>,
    learning_rate: f64,
    prepared: &Prepared,
    encoded: &EncodedSplits,
    out: &Path,
    device: &Device,
) -> anyhow::Result<Vec<TrainedModel>> {
    let labels = &prepared.data.label_names;
    let models = suite(args.suite, prepared.tokenizer.vocab_size().max(8), args.data.max_length)?;
    let mut trained: Vec<TrainedModel> = Vec::new();
    let mut teacher_train_logits: Option<Vec<Vec<f32>>> = None;
    for (k, (role, mut config)) in models.into_iter().enumerate() {
        config.num_labels = labels.len();
        let teacher = trained.first().map(|t| &t.model);
        let initial = initial_model(&role, k, args, inits, config, teacher, device)?;
        let options = TrainOptions {
            epochs: args.epochs,
            batch_size: args.batch_size,
            learning_rate,
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
            &encoded.train,
            &encoded.validation,
            teacher_train_logits.as_deref(),
            &options,
            device,
            &checkpoints,
            args.quiet,
        )?;
        let meta = ModelMeta {
            name: role.clone(),
            labels: labels.clone(),
            max_length: args.data.max_length,
        };
        save_model_dir(
            &out.join("models").join(&role),
            &result.model,
            prepared.tokenizer_json.as_bytes(),
            &meta,
        )?;
        if k == 0 && args.distill {
            let logits = pollster::block_on(predict_logits(&result.model, &encoded.train.ids, 64))
                .with_context(|| format!("{role}: logits for distillation"))?;
            teacher_train_logits = Some(logits);
        }
        trained.push(TrainedModel {
            role,
            model: result.model,
            state: result.state,
        });
    }
    Ok(trained)
}
