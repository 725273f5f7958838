//! The explanation stage: IG of the first validation texts with every model (the suite, the
//! teacher's retrained copies, an untrained model of its shape), kept as
//! `explanations/<model>.jsonl` (a resumed run reuses a model's file when it explains exactly
//! these texts).

use std::path::Path;

use anyhow::Context;
use astrid::EncoderClassifier;
use astrid::explain::{Attribution, argmax};
use astrid::files::write_atomic;
use astrid::schema::TextAttribution;

use crate::pipeline::prepare::{EncodedSplits, Prepared};
use crate::settings::RunConfig;
use crate::training::batches::predict_logits;
use crate::training::explain_texts::{Progress, Texts, explain_texts};
use astrid::schema::TargetChoice;

/// The teacher's predicted class for each explained validation text: the targets with
/// `--target teacher` (empty otherwise: nothing needs them). Computed once per run.
pub fn teacher_targets(
    args: &RunConfig,
    (role, teacher): (&str, &EncoderClassifier),
    encoded: &EncodedSplits,
) -> anyhow::Result<Vec<usize>> {
    if args.target != TargetChoice::Teacher {
        return Ok(Vec::new());
    }
    let n_explain = args.explain_n.min(encoded.validation_tokens.len());
    let logits = predict_logits(teacher, &encoded.validation.ids[..n_explain], 64)
        .with_context(|| format!("{role}: predictions on the validation part"))?;
    Ok(logits.iter().map(|l| argmax(l)).collect())
}

/// One row per model (in the order given), one attribution per explained text;
/// `teacher_predictions` from [`teacher_targets`].
pub fn explain_validation(
    args: &RunConfig,
    models: &[(&str, &EncoderClassifier)],
    teacher_predictions: &[usize],
    prepared: &Prepared,
    encoded: &EncodedSplits,
    out: &Path,
    workers: usize,
) -> anyhow::Result<Vec<Vec<TextAttribution>>> {
    let (val_set, val_tokens) = (&encoded.validation, &encoded.validation_tokens);
    let n_explain = args.explain_n.min(val_tokens.len());
    let options = args.ig.options(Attribution::Ig, None, workers);
    let pad_id = prepared.tokenizer.token_id("[PAD]");
    let mask_id = prepared.tokenizer.token_id("[MASK]");
    let mut all_attributions: Vec<Vec<TextAttribution>> = Vec::new();
    for &(name, model) in models {
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
                .all(|(row, &index)| row.index == index && row.signal().is_some());
        if fits {
            all_attributions.push(existing);
            continue;
        }
        let texts = Texts {
            ids: &val_set.ids[..n_explain],
            special: &val_set.special[..n_explain],
            special_ids: (pad_id, mask_id),
        };
        let target = |j: usize| match args.target {
            TargetChoice::Model => None,
            TargetChoice::Teacher => Some(teacher_predictions[j]),
            TargetChoice::Label => Some(val_set.labels[j]),
        };
        let progress = Progress {
            label: name,
            quiet: args.quiet,
            describe: &|j| format!("{name}: explaining validation text {}", j + 1),
        };
        let explanations = explain_texts(model, texts, &options, target, progress)?;
        let rows: Vec<TextAttribution> = explanations
            .into_iter()
            .zip(val_tokens)
            .enumerate()
            .map(|(j, (e, tokens))| TextAttribution {
                index: prepared.split.validation[j],
                tokens: tokens.tokens.clone(),
                special: tokens.special.clone(),
                label: val_set.labels[j],
                explanation: e,
            })
            .collect();
        let jsonl: String = rows
            .iter()
            .map(|r| serde_json::to_string(r).map(|s| s + "\n"))
            .collect::<Result<_, _>>()?;
        write_atomic(&path, jsonl.as_bytes())?;
        all_attributions.push(rows);
    }

    Ok(all_attributions)
}
