//! Integrated Gradients along the straight path from a baseline to the input, for any scalar
//! function of an embedded sequence: the fixed rules' weighted gradient sum, split into
//! ranges of points that run on several workers, and the plain gradients at given points
//! that the adaptive rule combines itself.

use burn::tensor::{Tensor, TensorData};

use super::{DEFAULT_POINTS_IN_FLIGHT, Method, Progress, nodes};
use crate::error::{Error, Result};

/// ∇f at `baseline + α · path` for each α, one row per α (`[alphas, seq, hidden]`), `chunk`
/// points per backward pass.
pub(super) fn point_gradients(
    f: &(impl Fn(Tensor<3>) -> Tensor<2> + Sync),
    baseline: &Tensor<3>,
    path: &Tensor<3>,
    alphas: &[f64],
    chunk: usize,
) -> Result<Tensor<3>> {
    let device = path.device();
    let mut parts = Vec::new();
    for block in alphas.chunks(chunk) {
        let column: Vec<f32> = block.iter().map(|&x| x as f32).collect();
        let column = Tensor::<3>::from_data(TensorData::new(column, [block.len(), 1, 1]), &device);
        let points = (baseline.clone() + path.clone() * column).autodiff().require_grad();
        // Each point's output depends on that point only: the gradient of the sum is the
        // gradient of each.
        let grads = f(points.clone()).sum().backward();
        parts.push(
            points
                .grad(&grads)
                .ok_or_else(|| Error::Backend("no gradient reached the word embeddings".into()))?,
        );
    }
    Ok(Tensor::cat(parts, 0))
}

/// How a path integral is evaluated: the rule and its steps, how many points go through
/// the function at a time (`None`: split between the workers, at most
/// [`DEFAULT_POINTS_IN_FLIGHT`] in memory), and how many independent chains run at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quadrature {
    pub method: Method,
    pub n_steps: usize,
    pub chunk: Option<usize>,
    pub workers: usize,
}

/// Integrated Gradients of any scalar function of an embedded sequence: `f` maps a batch of
/// points `[batch, seq, hidden]` to one output per point (`[batch, 1]`). Returns
/// `(input − baseline) ⊙ Σ_k w_k ∇f(baseline + α_k (input − baseline))`, `[1, seq, hidden]`,
/// with Captum's nodes and weights for the rule, and `progress` hears of each chunk done.
pub fn integrate_path(
    f: impl Fn(Tensor<3>) -> Tensor<2> + Sync,
    input: Tensor<3>,
    baseline: Tensor<3>,
    quadrature: Quadrature,
    progress: Progress<'_>,
) -> Result<Tensor<3>> {
    let Quadrature {
        method,
        n_steps,
        chunk,
        workers,
    } = quadrature;
    let (alphas, weights) = nodes(method, n_steps)?;
    if chunk == Some(0) {
        return Err(Error::invalid("internal-batch-size", "must be at least 1"));
    }
    let workers = workers.clamp(1, n_steps.max(1));
    // Without a chunk size, split the points evenly between the workers, with at most
    // DEFAULT_POINTS_IN_FLIGHT points in memory at once.
    let chunk = chunk
        .unwrap_or(n_steps.div_ceil(workers).min(DEFAULT_POINTS_IN_FLIGHT / workers))
        .clamp(1, n_steps.max(1));
    let path = input - baseline.clone();
    let ranges: Vec<(usize, usize)> = (0..n_steps)
        .step_by(chunk)
        .map(|start| (start, (start + chunk).min(n_steps)))
        .collect();
    // Σ_k w_k ∇f(baseline + α_k · path) over one range of points.
    let gradient_sum = |(start, end): (usize, usize)| -> Result<Tensor<3>> {
        let device = path.device();
        let count = end - start;
        let column = |values: &[f64]| {
            let v: Vec<f32> = values[start..end].iter().map(|&x| x as f32).collect();
            Tensor::<3>::from_data(TensorData::new(v, [count, 1, 1]), &device)
        };
        let points = (baseline.clone() + path.clone() * column(&alphas))
            .autodiff()
            .require_grad();
        // Weighting each point's output before the backward pass sums the weighted
        // gradients in one go.
        let weighted = f(points.clone()).reshape([count, 1, 1]) * column(&weights);
        let grads = weighted.sum().backward();
        let gradient = points
            .grad(&grads)
            .ok_or_else(|| Error::Backend("no gradient reached the word embeddings".into()))?;
        Ok(gradient.sum_dim(0))
    };
    let partial_sums = run_ranges(&ranges, workers, &gradient_sum, progress)?;
    let integrated = partial_sums
        .into_iter()
        .fold(path.zeros_like(), |total, part| total + part);
    Ok(path * integrated)
}

/// Runs each range through `work`, on `workers` threads where there are several; the
/// results come back in range order, so the sum does not depend on scheduling.
/// `progress` hears of each finished range (of all of them at once when run in parallel).
fn run_ranges(
    ranges: &[(usize, usize)],
    workers: usize,
    work: &(dyn Fn((usize, usize)) -> Result<Tensor<3>> + Sync),
    progress: Progress<'_>,
) -> Result<Vec<Tensor<3>>> {
    let total = ranges.last().map_or(0, |r| r.1);
    #[cfg(not(target_arch = "wasm32"))]
    if workers > 1 && ranges.len() > 1 {
        // Inside rayon's pool, so that the matrix products the workers start share its
        // threads with them instead of oversubscribing the cores.
        use rayon::prelude::*;
        let parts = ranges.par_iter().with_max_len(1).map(|r| work(*r)).collect();
        if let Some(report) = progress {
            report(total, total);
        }
        return parts;
    }
    let _ = workers;
    ranges
        .iter()
        .map(|&r| {
            let part = work(r);
            if let Some(report) = progress {
                report(r.1, total);
            }
            part
        })
        .collect()
}
