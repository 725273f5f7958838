//! Texts as tensors, and predictions without autodiff: a batch padded to its longest text
//! ([`batch_tensors`]), and logits of many texts, each batch split between threads on the CPU
//! ([`predict_logits`]).

use anyhow::bail;
use astrid::explain::read_f32;
use astrid::model::EncoderClassifier;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

use crate::training::steps::shards;

/// Token ids of a set of texts and their classes.
#[derive(Debug, Clone, Default)]
pub struct Encoded {
    pub ids: Vec<Vec<u32>>,
    /// Per text, true for `[CLS]`/`[SEP]` (what IG's baselines and erasure leave alone).
    pub special: Vec<Vec<bool>>,
    pub labels: Vec<usize>,
}

/// Pads a batch to its longest text: ids `[batch, len]` and the padding mask.
pub fn batch_tensors(ids: &[&Vec<u32>], device: &Device) -> (Tensor<2, Int>, Tensor<2, Bool>) {
    let len = ids.iter().map(|t| t.len()).max().unwrap_or(1);
    let mut flat = Vec::with_capacity(ids.len() * len);
    let mut mask = Vec::with_capacity(ids.len() * len);
    for t in ids {
        for p in 0..len {
            flat.push(t.get(p).copied().unwrap_or(0) as i64);
            mask.push(p < t.len());
        }
    }
    (
        Tensor::from_data(TensorData::new(flat, [ids.len(), len]), device),
        Tensor::from_data(TensorData::new(mask, [ids.len(), len]), device),
    )
}

/// Logits for every text, in batches of `batch` sorted by length, without autodiff. On the
/// CPU each batch is split between [`crate::util::threads::cpu_workers`] threads, as PyTorch spreads
/// one forward pass over its threads (burn-flex runs element-wise operations on one thread;
/// inference builds no graph, so the parts are independent).
pub fn predict_logits(model: &EncoderClassifier, data: &[Vec<u32>], batch: usize) -> anyhow::Result<Vec<Vec<f32>>> {
    let labels = model.config.num_labels;
    let workers = inference_workers(&model.device());
    // Sorting by length keeps padding (wasted work) small.
    let mut order: Vec<usize> = (0..data.len()).collect();
    order.sort_by_key(|&i| data[i].len());
    let mut results = vec![Vec::new(); data.len()];
    for chunk in order.chunks(batch.max(1)) {
        let logits = batch_logits(model, data, chunk, workers)?;
        if let Some(k) = logits.iter().position(|v| !v.is_finite()) {
            bail!(
                "the model's logits are not finite ({}) for text {} of {}: its weights are broken or it overflows; retrain it (lower --lr)",
                logits[k],
                chunk[k / labels] + 1,
                data.len()
            );
        }
        for (k, &i) in chunk.iter().enumerate() {
            results[i] = logits[k * labels..(k + 1) * labels].to_vec();
        }
    }
    Ok(results)
}

/// Threads one forward pass is split between: the CPU's workers on burn-flex, 1 on a GPU.
pub fn inference_workers(device: &Device) -> usize {
    if *device == Device::flex() {
        crate::util::threads::cpu_workers()
    } else {
        1
    }
}

/// The logits of the texts `texts` (indices into `data`), `[texts × labels]` row by row: the
/// texts split into `workers` contiguous parts, each padded to its own longest text and run
/// on its own thread.
pub fn batch_logits(
    model: &EncoderClassifier,
    data: &[Vec<u32>],
    texts: &[usize],
    workers: usize,
) -> anyhow::Result<Vec<f32>> {
    let device = model.device();
    let run = |part: &[usize]| -> anyhow::Result<Vec<f32>> {
        let refs: Vec<&Vec<u32>> = part.iter().map(|&i| &data[i]).collect();
        let (ids, mask) = batch_tensors(&refs, &device);
        Ok(pollster::block_on(read_f32(model.forward(ids, Some(mask))))?)
    };
    let parts = shards(texts, workers);
    if parts.len() <= 1 {
        return run(texts);
    }
    let outputs = on_threads(&parts, "an inference thread", |_, part| run(part));
    let mut logits = Vec::new();
    for output in outputs {
        logits.extend(output?);
    }
    Ok(logits)
}
/// Runs `work(k, part)` for every part `k`, each on a thread of rayon's pool (as IG's chains
/// run), so that the kernels' own parallel loops inside share the pool's threads rather than
/// wake them from outside; the results come back in part order, a panic as an error naming
/// `what`.
pub(super) fn on_threads<T: Send>(
    parts: &[&[usize]],
    what: &str,
    work: impl Fn(usize, &[usize]) -> anyhow::Result<T> + Sync,
) -> Vec<anyhow::Result<T>> {
    use rayon::prelude::*;
    parts
        .par_iter()
        .with_max_len(1)
        .enumerate()
        .map(|(k, &part)| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(k, part)))
                .unwrap_or_else(|_| Err(anyhow::anyhow!("{what} panicked")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use burn::module::Module;

    use super::*;
    use crate::training::fixtures::{tiny_data, tiny_model};

    /// Inference split between threads gives every text the logits it gets alone (each part
    /// is padded to its own longest text; padding is masked), in the order asked.
    #[test]
    fn a_forward_split_between_threads_gives_each_texts_logits() {
        let model = tiny_model(0.1).valid();
        let data = tiny_data();
        let texts = [6, 0, 3, 5, 1];
        let split = batch_logits(&model, &data.ids, &texts, 3).unwrap();
        assert_eq!(split.len(), 2 * texts.len());
        for (k, &i) in texts.iter().enumerate() {
            let alone = batch_logits(&model, &data.ids, &[i], 1).unwrap();
            for (a, b) in alone.iter().zip(&split[2 * k..2 * k + 2]) {
                assert!(
                    (a - b).abs() < 1e-5,
                    "text {i}: {alone:?} vs {:?}",
                    &split[2 * k..2 * k + 2]
                );
            }
        }
        let logits = predict_logits(&model, &data.ids, 4).unwrap();
        for (i, row) in logits.iter().enumerate() {
            let alone = batch_logits(&model, &data.ids, &[i], 1).unwrap();
            assert!(row.iter().zip(&alone).all(|(a, b)| (a - b).abs() < 1e-5), "text {i}");
        }
    }
}
