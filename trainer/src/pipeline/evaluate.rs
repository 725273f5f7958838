//! The evaluation stage: each trained model on the test part (accuracy, macro-F1,
//! confusion, speed), and on the shifted part when the run has one (accuracy, and how much of
//! it the shift costs).

use std::time::Instant;

use anyhow::Context;
use astrid::explain::argmax;
use astrid::schema::{ModelResult, Role};
use burn::module::Module;

use crate::pipeline::train_suite::TrainedModel;
use crate::training::batches::{Encoded, predict_logits};
use crate::training::metrics::{Classification, classification};

pub fn evaluate(
    trained: &[TrainedModel],
    test: &Encoded,
    shifted: Option<&Encoded>,
    num_labels: usize,
) -> anyhow::Result<Vec<ModelResult>> {
    let mut results = Vec::with_capacity(trained.len());
    for (
        k,
        TrainedModel {
            role,
            objective,
            starts_from,
            learning_rate,
            warmup,
            model,
            state,
        },
    ) in trained.iter().enumerate()
    {
        let started = Instant::now();
        let logits =
            predict_logits(model, &test.ids, 64).with_context(|| format!("{role}: evaluation on the test part"))?;
        let seconds = started.elapsed().as_secs_f64();
        let predicted: Vec<usize> = logits.iter().map(|l| argmax(l)).collect();
        let Classification {
            accuracy,
            macro_f1,
            confusion,
        } = classification(&predicted, &test.labels, num_labels);
        results.push(ModelResult {
            name: role.clone(),
            role: if k == 0 { Role::Teacher } else { Role::Student },
            objective: Some(*objective),
            starts_from: starts_from.clone(),
            learning_rate: *learning_rate,
            warmup: *warmup,
            train_seconds: state.history.iter().map(|h| h.seconds).sum(),
            architecture: model.config.architecture.model_type().to_string(),
            layers: model.config.num_layers,
            hidden: model.config.hidden_size,
            params: model.num_params(),
            accuracy,
            f1: macro_f1,
            confusion,
            inference_seq_per_s: test.ids.len() as f64 / seconds.max(1e-9),
            train_seq_per_s: state.history.iter().map(|h| h.sequences_per_second).sum::<f64>()
                / state.history.len().max(1) as f64,
            best_epoch: state.best_epoch,
            epochs_run: state.epochs_done,
            validation_accuracy: state.best_accuracy,
            mean_abs_convergence_delta: f64::NAN,
            ..ModelResult::default()
        });
        if let (Some(shifted), Some(result)) = (shifted, results.last_mut()) {
            let accuracy =
                accuracy_on(model, shifted, num_labels).with_context(|| format!("{role}: the shifted part"))?;
            result.shifted_accuracy = Some(accuracy);
            result.shifted_drop = Some(result.accuracy - accuracy);
        }
    }
    Ok(results)
}

/// A model's accuracy on some texts.
pub fn accuracy_on(model: &astrid::EncoderClassifier, texts: &Encoded, num_labels: usize) -> anyhow::Result<f64> {
    let predicted: Vec<usize> = predict_logits(model, &texts.ids, 64)?
        .iter()
        .map(|l| argmax(l))
        .collect();
    Ok(classification(&predicted, &texts.labels, num_labels).accuracy)
}
