//! Dropout whose masks can come from a stream of the thread's own, so that replicas trained
//! on several threads draw reproducible masks, and whose mask for a row subset is the one the
//! whole tensor would have drawn.

use burn::nn::Dropout;
use burn::tensor::{Device, Distribution, Shape, Tensor, TensorData};
use std::cell::RefCell;

use crate::rng::SplitMix64;

thread_local! {
    /// This thread's dropout stream, when [`with_dropout_stream`] set one.
    pub(super) static DROPOUT_STREAM: RefCell<Option<SplitMix64>> = const { RefCell::new(None) };
}

/// Runs `f` with dropout masks drawn from a stream of this thread's own, seeded by `seed`,
/// instead of the device's generator. Model replicas trained on several threads at once
/// (data-parallel training) draw their masks this way: the device's one generator, shared by
/// the threads, would hand out masks in whatever order the threads reach it, and the run
/// would not be reproducible.
pub fn with_dropout_stream<R>(seed: u64, f: impl FnOnce() -> R) -> R {
    let previous = DROPOUT_STREAM.with(|s| s.replace(Some(SplitMix64::new(seed))));
    let result = f();
    DROPOUT_STREAM.with(|s| s.replace(previous));
    result
}

/// A dropout mask: `1 / keep` with probability `keep`, else 0, for the first `kept` of every
/// `block` values of an `n`-value tensor (all of them when `kept == block`), as drawing the
/// whole tensor's mask would give them: the stream moves past all `n`. Each 64-bit draw gives
/// two 32-bit uniforms (low half first); a value is kept when its uniform is below
/// keep · 2³². Filled on rayon's threads natively, each chunk from its own draws
/// ([`SplitMix64::peek`]), which attention's dropout (a value per attention probability) made
/// a visible part of a training step.
pub(super) fn dropout_mask(n: usize, block: usize, kept: usize, keep: f64, rng: &mut SplitMix64) -> Vec<f32> {
    let threshold = (keep * 4_294_967_296.0) as u64;
    let scale = (1.0 / keep) as f32;
    let stream = rng.clone();
    // `values` are the mask at positions `position..` of the whole tensor.
    let fill = |position: usize, values: &mut [f32]| {
        let mut draw = stream.peek((position / 2) as u64);
        for (p, value) in (position..).zip(values.iter_mut()) {
            if p % 2 == 0 {
                draw = stream.peek((p / 2) as u64);
            }
            let uniform = if p % 2 == 0 { draw & 0xFFFF_FFFF } else { draw >> 32 };
            *value = if uniform < threshold { scale } else { 0.0 };
        }
    };
    let blocks = n.checked_div(block).unwrap_or(0);
    let mut mask = vec![0f32; blocks * kept];
    if kept > 0 {
        #[cfg(not(target_arch = "wasm32"))]
        {
            use rayon::prelude::*;
            const CHUNK: usize = 1 << 15;
            mask.par_chunks_mut(kept).enumerate().for_each(|(b, run)| {
                run.par_chunks_mut(CHUNK)
                    .enumerate()
                    .for_each(|(c, values)| fill(b * block + c * CHUNK, values))
            });
        }
        #[cfg(target_arch = "wasm32")]
        mask.chunks_mut(kept)
            .enumerate()
            .for_each(|(b, run)| fill(b * block, run));
    }
    rng.skip(n.div_ceil(2) as u64);
    mask
}

/// `layer`'s dropout as a multiplier for the first `rows` rows (dimension D − 2) of a tensor of
/// `shape`, as drawn for the whole of it (a classifier's last layer keeps only [CLS]'s row and
/// draws the masks it always drew): `None` unless training on an autodiff device with p > 0;
/// else zero with probability p and 1/(1−p) otherwise (burn's rule), drawn from this thread's
/// dropout stream ([`with_dropout_stream`]) or, without one, the device's generator.
pub(super) fn dropout_multiplier<const D: usize>(
    layer: &Dropout,
    shape: Shape,
    rows: usize,
    device: &Device,
) -> Option<Tensor<D>> {
    if !(layer.training.is_enabled() && device.is_autodiff() && layer.prob > 0.0) {
        return None;
    }
    let keep = 1.0 - layer.prob;
    let (n, width) = (shape.num_elements(), shape[D - 1]);
    let (block, kept) = (shape[D - 2] * width, rows * width);
    let mut kept_shape = shape.clone();
    kept_shape[D - 2] = rows;
    let streamed = DROPOUT_STREAM.with(|s| {
        let mut stream = s.borrow_mut();
        stream.as_mut().map(|rng| dropout_mask(n, block, kept, keep, rng))
    });
    Some(match streamed {
        Some(mask) => Tensor::from_data(TensorData::new(mask, kept_shape), device),
        None => Tensor::random(shape, Distribution::Bernoulli(keep), device)
            .narrow(D - 2, 0, rows)
            .mul_scalar(1.0 / keep),
    })
}

/// `x` through `layer`'s dropout, its mask drawn as for `full_rows` rows (dimension D − 2) of
/// which `x` holds the first ([`dropout_multiplier`]).
pub(super) fn dropout<const D: usize>(layer: &Dropout, x: Tensor<D>, full_rows: usize) -> Tensor<D> {
    let mut shape = x.shape();
    let rows = shape[D - 2];
    shape[D - 2] = full_rows;
    match dropout_multiplier(layer, shape, rows, &x.device()) {
        Some(mask) => x * mask,
        None => x,
    }
}
