//! Token attributions for a classifier's prediction: Integrated Gradients with Captum's
//! semantics, plus saliency and gradient × input.
//!
//! Everything that reads a tensor back is `async` so the same code serves WebGPU in the
//! browser (where readback must be awaited); natively, drive it with any executor.

pub mod adaptive;
mod options;
mod path;
mod quadrature;

use burn::tensor::activation::softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::EncoderClassifier;
pub use options::{
    Attribution, Baseline, DEFAULT_MAX_STEPS, DEFAULT_POINTS_IN_FLIGHT, DEFAULT_TOLERANCE, ExplainOptions, MAX_N_STEPS,
};
use path::point_gradients;
pub use path::{Quadrature, integrate_path};
pub use quadrature::{Method, gauss_legendre, nodes};

/// One tokenized input to explain.
#[derive(Debug, Clone)]
pub struct ExplainInput<'a> {
    pub ids: &'a [u32],
    /// True for [CLS]/[SEP]: kept as they are in the [PAD]/[MASK] baselines.
    pub special: &'a [bool],
    /// Needed for the [PAD]/[MASK] baselines.
    pub pad_id: Option<u32>,
    pub mask_id: Option<u32>,
}

/// The result for one text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// One score per token (summed over the embedding dimension).
    pub attributions: Vec<f32>,
    pub target: usize,
    pub probs: Vec<f32>,
    /// IG only: sum(attributions) − (F(input) − F(baseline)), as Captum reports it.
    pub convergence_delta: Option<f32>,
    /// IG only: F(input) and F(baseline), the target probability at both ends of the path.
    pub f_input: Option<f32>,
    pub f_baseline: Option<f32>,
    /// Gradients computed: the steps of a fixed rule, as many as adaptive IG needed, 1 for
    /// saliency and gradient × input (0: not recorded).
    #[serde(default, deserialize_with = "count_or_null")]
    pub gradient_evaluations: usize,
}

impl Explanation {
    /// |F(input) − F(baseline)|, what the attributions add up to (up to the convergence delta).
    pub fn signal(&self) -> Option<f64> {
        Some((self.f_input? as f64 - self.f_baseline? as f64).abs())
    }
}

/// A count, or null (files that did not record it) as 0.
fn count_or_null<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<usize, D::Error> {
    Ok(Option::<usize>::deserialize(d)?.unwrap_or(0))
}

/// Reads a tensor back to the host; awaits, so it works on WebGPU in the browser.
pub async fn read_f32<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>> {
    let data = tensor
        .into_data_async()
        .await
        .map_err(|e| Error::Backend(format!("reading a result back failed: {e:?}")))?;
    data.convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| Error::Backend(format!("unexpected result type: {e:?}")))
}

fn model_device(model: &EncoderClassifier) -> Device {
    model.device()
}

fn ids_tensor(ids: &[u32], device: &Device) -> Tensor<2, Int> {
    let data: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
    Tensor::from_data(TensorData::new(data, [1, ids.len()]), device)
}

fn validate(model: &EncoderClassifier, input: &ExplainInput, options: &ExplainOptions) -> Result<()> {
    let config = &model.config;
    if input.ids.is_empty() {
        return Err(Error::invalid("text", "has no tokens; give a text to classify"));
    }
    if input.special.len() != input.ids.len() {
        return Err(Error::invalid("special", "needs one flag per token"));
    }
    if input.ids.len() > config.max_position_embeddings {
        return Err(Error::invalid(
            "text",
            format!(
                "has {} tokens but the model takes at most {}; lower --max-length",
                input.ids.len(),
                config.max_position_embeddings
            ),
        ));
    }
    if let Some(&bad) = input.ids.iter().find(|&&id| id as usize >= config.vocab_size) {
        return Err(Error::invalid(
            "input_ids",
            format!(
                "token id {bad} is outside the model's vocabulary of {}; is it the model's tokenizer?",
                config.vocab_size
            ),
        ));
    }
    if let Some(target) = options.target
        && target >= config.num_labels
    {
        return Err(Error::invalid(
            "target",
            format!(
                "class {target} does not exist; the model has {} classes (0..{})",
                config.num_labels,
                config.num_labels - 1
            ),
        ));
    }
    if options.internal_batch_size == Some(0) {
        return Err(Error::invalid("internal-batch-size", "must be at least 1"));
    }
    if options.attribution == Attribution::Ig && options.method == Method::Adaptive {
        if !(options.tolerance.is_finite() && options.tolerance > 0.0) {
            return Err(Error::invalid(
                "tolerance",
                format!("{} is not a positive number (1e-4 is the default)", options.tolerance),
            ));
        }
        if !(adaptive::PANEL_POINTS..=MAX_N_STEPS).contains(&options.max_steps) {
            return Err(Error::invalid(
                "max-steps",
                format!(
                    "{} is out of range; use {} (one Gauss-Kronrod panel) to {MAX_N_STEPS}",
                    options.max_steps,
                    adaptive::PANEL_POINTS
                ),
            ));
        }
    }
    if options.attribution == Attribution::Ig && !(1..=MAX_N_STEPS).contains(&options.n_steps) {
        return Err(Error::invalid(
            "n-steps",
            format!(
                "{} is out of range; use 1 to {MAX_N_STEPS} (50 is Captum's default and usually enough: see the convergence delta)",
                options.n_steps
            ),
        ));
    }
    Ok(())
}

/// Refuses NaN or infinite outputs: a broken model (weights, or an input it overflows on)
/// must not pass for a prediction or an explanation.
fn check_finite(values: &[f32], what: &str) -> Result<()> {
    if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
        return Err(Error::NotFinite(format!(
            "the model's {what} include {bad} ({} values): its weights are broken or it overflows on this input; \
             check the model (trainer explain loads and checks its weights) or retrain it",
            values.len()
        )));
    }
    Ok(())
}

/// The index of the largest value (the first of equal ones; 0 for none).
pub fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |best, (i, &v)| if v > best.1 { (i, v) } else { best },
        )
        .0
}

fn baseline_embeddings(
    model: &EncoderClassifier,
    input: &ExplainInput,
    kind: Baseline,
    words: &Tensor<3>,
) -> Result<Tensor<3>> {
    baseline_words(
        model,
        kind,
        input.ids,
        input.special,
        (input.pad_id, input.mask_id),
        words,
    )
}

/// The IG baseline's word embeddings for a batch: `words` `[batch, seq, hidden]` are the
/// embeddings of `ids`, and `ids` / `special` hold `batch × seq` entries, row by row;
/// `(pad_id, mask_id)` are needed for the [PAD] / [MASK] baselines. Special tokens keep their
/// own embedding except in the zero baseline (Captum's). Training that aligns a student with
/// the teacher on points of IG's path uses it too, so both lead to the same baseline.
pub fn baseline_words(
    model: &EncoderClassifier,
    kind: Baseline,
    ids: &[u32],
    special: &[bool],
    (pad_id, mask_id): (Option<u32>, Option<u32>),
    words: &Tensor<3>,
) -> Result<Tensor<3>> {
    let [batch, seq, hidden] = words.dims();
    if ids.len() != batch * seq || special.len() != batch * seq {
        return Err(Error::invalid(
            "baseline",
            format!(
                "{} ids and {} special flags for {batch} × {seq} tokens",
                ids.len(),
                special.len()
            ),
        ));
    }
    let device = &words.device();
    let replacement = match kind {
        Baseline::Zero => return Ok(words.zeros_like()),
        Baseline::Uniform => {
            let table = model.embeddings.word_embeddings.weight.val();
            let mean = table.mean_dim(0).reshape([1, 1, hidden]);
            let content: Vec<f32> = special.iter().map(|&s| if s { 0.0 } else { 1.0 }).collect();
            let content = Tensor::<3>::from_data(TensorData::new(content, [batch, seq, 1]), device);
            // Special tokens keep their own embedding, as in the [PAD]/[MASK] baselines.
            return Ok(content.clone() * mean + (content.ones_like() - content) * words.clone());
        }
        Baseline::Pad => pad_id.ok_or_else(|| Error::invalid("baseline", "pad: the tokenizer has no [PAD] token"))?,
        Baseline::Mask => {
            mask_id.ok_or_else(|| Error::invalid("baseline", "mask: the tokenizer has no [MASK] token"))?
        }
    };
    let ids: Vec<i64> = ids
        .iter()
        .zip(special)
        .map(|(&id, &special)| if special { id } else { replacement } as i64)
        .collect();
    Ok(model.word_embeddings(Tensor::from_data(TensorData::new(ids, [batch, seq]), device)))
}

/// The model's class probabilities for one token sequence (a forward pass, no gradient): what
/// erasing tokens does to a prediction.
pub async fn probabilities(model: &EncoderClassifier, ids: &[u32]) -> Result<Vec<f32>> {
    let special = vec![false; ids.len()];
    let input = ExplainInput {
        ids,
        special: &special,
        pad_id: None,
        mask_id: None,
    };
    validate(model, &input, &ExplainOptions::default())?;
    let device = model_device(model);
    let probs = read_f32(softmax(model.forward(ids_tensor(ids, &device), None), 1)).await?;
    check_finite(&probs, "probabilities")?;
    Ok(probs)
}

/// The model's class probabilities at the baseline IG would start from for `input`: how
/// far from neutral (the class prior) that reference is for this model.
pub async fn baseline_probabilities(
    model: &EncoderClassifier,
    input: &ExplainInput<'_>,
    baseline: Baseline,
) -> Result<Vec<f32>> {
    validate(model, input, &ExplainOptions::default())?;
    let device = model_device(model);
    let words = model.word_embeddings(ids_tensor(input.ids, &device));
    let at_baseline = baseline_embeddings(model, input, baseline, &words)?;
    let probs = read_f32(softmax(model.forward_embeds(at_baseline, None), 1)).await?;
    check_finite(&probs, "probabilities at the baseline")?;
    Ok(probs)
}

/// Probability of `target` for each row of a batch of word embeddings: `[batch, 1]`.
fn target_probability(model: &EncoderClassifier, words: Tensor<3>, target: usize) -> Tensor<2> {
    let [batch, _, _] = words.dims();
    softmax(model.forward_embeds(words, None), 1).slice([0..batch, target..target + 1])
}

/// Explains the model's output for one input. The model should be in validation mode
/// (`model.valid()`): otherwise dropout is active and the result is noise.
pub async fn explain(
    model: &EncoderClassifier,
    input: &ExplainInput<'_>,
    options: &ExplainOptions,
) -> Result<Explanation> {
    explain_with_progress(model, input, options, None).await
}

/// Reports progress as (interpolation points done, points in all).
pub type Progress<'a> = Option<&'a dyn Fn(usize, usize)>;

/// [`explain`], calling `progress` after each batch of interpolation points of IG (where
/// the points run one batch after another: always in the browser).
pub async fn explain_with_progress(
    model: &EncoderClassifier,
    input: &ExplainInput<'_>,
    options: &ExplainOptions,
    progress: Progress<'_>,
) -> Result<Explanation> {
    validate(model, input, options)?;
    let device = model_device(model);
    let words = model.word_embeddings(ids_tensor(input.ids, &device));
    let probs = read_f32(softmax(model.forward_embeds(words.clone(), None), 1)).await?;
    check_finite(&probs, "probabilities")?;
    let target = options.target.unwrap_or_else(|| argmax(&probs));
    match options.attribution {
        Attribution::Ig => integrated_gradients(model, input, options, words, probs, target, progress).await,
        Attribution::Saliency | Attribution::GradInput => {
            let tracked = words.clone().autodiff().require_grad();
            let grads = target_probability(model, tracked.clone(), target).sum().backward();
            let gradient = tracked
                .grad(&grads)
                .ok_or_else(|| Error::Backend("no gradient reached the word embeddings".into()))?;
            let per_dim = match options.attribution {
                Attribution::Saliency => gradient.abs(),
                _ => gradient * words,
            };
            let attributions = read_f32(per_dim.sum_dim(2).reshape([-1])).await?;
            check_finite(&attributions, "attributions")?;
            Ok(Explanation {
                attributions,
                target,
                probs,
                convergence_delta: None,
                f_input: None,
                f_baseline: None,
                gradient_evaluations: 1,
            })
        }
    }
}

async fn integrated_gradients(
    model: &EncoderClassifier,
    input: &ExplainInput<'_>,
    options: &ExplainOptions,
    words: Tensor<3>,
    probs: Vec<f32>,
    target: usize,
    progress: Progress<'_>,
) -> Result<Explanation> {
    let baseline = baseline_embeddings(model, input, options.baseline, &words)?;
    let f_baseline = read_f32(target_probability(model, baseline.clone(), target)).await?[0];
    let f_input = probs[target];
    let (attributions, gradient_evaluations) = if options.method == Method::Adaptive {
        let f = |points: Tensor<3>| target_probability(model, points, target);
        integrate_adaptive(&f, words, baseline, options, (f_input - f_baseline) as f64, progress).await?
    } else {
        let quadrature = Quadrature {
            method: options.method,
            n_steps: options.n_steps,
            chunk: options.internal_batch_size,
            workers: options.workers,
        };
        let per_dim = integrate_path(
            |points| target_probability(model, points, target),
            words,
            baseline,
            quadrature,
            progress,
        )?;
        (read_f32(per_dim.sum_dim(2).reshape([-1])).await?, options.n_steps)
    };
    check_finite(&attributions, "attributions")?;
    let total: f64 = attributions.iter().map(|&a| a as f64).sum();
    Ok(Explanation {
        convergence_delta: Some((total - (f_input as f64 - f_baseline as f64)) as f32),
        attributions,
        target,
        probs,
        f_input: Some(f_input),
        f_baseline: Some(f_baseline),
        gradient_evaluations,
    })
}

/// Adaptive IG ([`adaptive`]): Gauss–Kronrod panels, the worst one halved until
/// |convergence delta| and the error estimate are within `options.tolerance` or
/// `options.max_steps` gradients are spent. Returns the per-token attributions and the
/// gradients computed.
async fn integrate_adaptive(
    f: &(impl Fn(Tensor<3>) -> Tensor<2> + Sync),
    input: Tensor<3>,
    baseline: Tensor<3>,
    options: &ExplainOptions,
    target: f64,
    progress: Progress<'_>,
) -> Result<(Vec<f32>, usize)> {
    let path = input - baseline.clone();
    let chunk = options.internal_batch_size.unwrap_or(DEFAULT_POINTS_IN_FLIGHT).max(1);
    let mut state = adaptive::AdaptiveIntegral::new(options.tolerance, options.max_steps, target);
    while let Some(panels) = state.next() {
        let rules: Vec<_> = panels.iter().map(|&(a, b)| adaptive::panel_rule(a, b)).collect();
        let alphas: Vec<f64> = rules.iter().flat_map(|r| r.0.iter().copied()).collect();
        let gradients = point_gradients(f, &baseline, &path, &alphas, chunk)?;
        // Each point's contribution per token, `[points, seq]`: one readback per round.
        let [points, seq, _] = gradients.dims();
        let values = read_f32((path.clone() * gradients).sum_dim(2).reshape([points, seq])).await?;
        let estimates = rules
            .iter()
            .enumerate()
            .map(|(p, (_, kronrod, gauss))| {
                let rows: Vec<Vec<f64>> = (0..adaptive::PANEL_POINTS)
                    .map(|k| {
                        let row = (p * adaptive::PANEL_POINTS + k) * seq;
                        values[row..row + seq].iter().map(|&v| v as f64).collect()
                    })
                    .collect();
                adaptive::PanelEstimate::from_values(&rows, kronrod, gauss)
            })
            .collect();
        state.record(&panels, estimates);
        if let Some(report) = progress {
            report(state.evaluations(), options.max_steps);
        }
    }
    let attributions = state.attributions().into_iter().map(|x| x as f32).collect();
    Ok((attributions, state.evaluations()))
}
