//! Linear layers, GELU, multi-head attention and layer norm as fused operations on burn's CPU
//! backend (flex), forward and backward: they were most of what, besides the matrix products
//! themselves, made an explanation or a training step slower than PyTorch's (perf).
//!
//! - burn's `Linear` on a `[batch, seq, hidden]` input with rows that fill its tiles runs one
//!   product per batch item, packing the weight again each time, and burn-flex zeroes every
//!   output and then copies it to realign it. Here a linear layer is one product over all rows
//!   into a buffer that starts as the bias rows; its backward pass is one product per gradient.
//! - burn-flex computes GELU with libm's scalar `erff` per element, and its backward pass with
//!   `erff` and `exp` again. Here Φ(x) = ½·erfc(−x/√2) comes from Abramowitz & Stegun 7.1.26,
//!   whose only transcendental is e^(−x²/2), the Gaussian density itself; the backward pass,
//!   Φ(x) + x·φ(x), reuses that one exponential, a branch-free polynomial, so the loops
//!   vectorise.
//! - Attention ([`attention`], the `attention` module) runs per (text, head) on rayon's
//!   threads with no head split or merge copies, the scores going straight into a masked row
//!   softmax (one pass each way, where burn's autodiff took five operations).
//! - Layer norm under autodiff (the `layer_norm` module) is one pass keeping what its backward
//!   step needs, where burn's autodiff ran ten operations; after a residual connection
//!   ([`add_layer_norm`]) it reads the sum's two terms, which burn-flex would have added on
//!   one thread.
//!
//! Against burn's own operations: GELU within 3e-7·max(1, |x|), its derivative within
//! 1e-6·max(1, |x|), the attention softmax and its gradient within 1e-6, the linear layer 1e-5,
//! attention and layer norm 2e-5 relative (tested). The operations are a burn backend extension
//! ([`FusedKernels`]) for flex and for autodiff over flex; [`linear`], [`gelu`], [`attention`],
//! [`layer_norm`] and [`add_layer_norm`] use them on a flex device and burn's operations on
//! any other.
//!
//! The extension is defined here; `routing` holds the public operations, `flex` and
//! `autodiff` the extension's two implementations, and the kernels themselves are in `gelu`,
//! `gemm`, `layer_norm`, `attention` and `adamw`, on the lanes of `simd` and the threads of
//! `parallel`.

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, ExtensionType, backend_extension};

mod adamw;
mod attention;
mod autodiff;
mod flex;
mod gelu;
mod gemm;
mod layer_norm;
mod parallel;
mod routing;
mod simd;
#[cfg(test)]
mod tests;

pub use adamw::AdamWStep;
pub use routing::{adamw_fuses, adamw_step, add_layer_norm, attention, gelu, layer_norm, linear};

/// The fused operations, as backend operations. A default body is burn's own operation; the
/// methods without one are reached only on flex (the public functions route other devices to
/// burn's operations first).
#[backend_extension(Flex, Autodiff)]
pub trait FusedKernels: Backend {
    /// GELU(x) = x·Φ(x).
    fn gelu_fused(x: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::gelu(x)
    }

    /// `grad`·GELU′(x) = `grad`·(Φ(x) + x·φ(x)).
    fn gelu_fused_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::gelu_backward(x, grad)
    }

    /// x·W + b over x's last dimension (W is `[in, out]`, as burn stores it).
    fn linear_fused(x: FloatTensor<Self>, weight: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::linear(x, weight, Some(bias))
    }

    /// The input's gradient, grad·Wᵀ.
    fn linear_fused_input_backward(weight: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::linear_x_backward(weight, grad)
    }

    /// The weight's gradient, xᵀ·grad over all rows.
    fn linear_fused_weight_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::linear_weight_backward(x, grad)
    }

    /// The bias's gradient, grad summed over all rows.
    fn linear_fused_bias_backward(grad: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::linear_bias_backward(grad)
    }

    /// Layer normalisation over the last dimension: (x − mean)/√(var + ε)·γ + β.
    fn layer_norm_fused(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        Self::layer_norm(x, gamma, Some(beta), epsilon)
    }

    /// [`FusedKernels::layer_norm_fused`], the normalised values (before γ and β) and each
    /// row's 1/√(var + ε), for the backward pass.
    fn layer_norm_fused_statistics(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// Layer normalisation of x + `residual` (a residual connection: the sum is never
    /// written out, and its backward pass hands both the same gradient).
    fn add_layer_norm_fused(
        x: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        Self::layer_norm(Self::float_add(x, residual), gamma, Some(beta), epsilon)
    }

    /// [`FusedKernels::add_layer_norm_fused`] with the statistics of
    /// [`FusedKernels::layer_norm_fused_statistics`].
    fn add_layer_norm_fused_statistics(
        x: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// The input's gradient from the kept statistics, γ and the output's gradient.
    fn layer_norm_fused_input_backward(
        normalised: FloatTensor<Self>,
        rstd: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// γ's and β's gradients.
    fn layer_norm_fused_parameter_backward(
        normalised: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// Multi-head self-attention ([`attention`]'s flex route): the context `[batch, queries,
    /// hidden]`. No default body: other devices take the written-out form before reaching
    /// the extension.
    fn attention_fused(#[extension_type] input: AttentionInput<Self>) -> FloatTensor<Self>;

    /// [`FusedKernels::attention_fused`], and the probabilities before dropout `[batch, heads,
    /// queries, seq]` for the backward pass.
    fn attention_fused_probabilities(
        #[extension_type] input: AttentionInput<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// The gradients of q, k and v from the context's.
    fn attention_fused_backward(
        #[extension_type] input: AttentionInput<Self>,
        probabilities: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// One AdamW step of one parameter ([`adamw_step`]'s flex route): the parameter and its
    /// two moments after it. No default body: other devices use burn's `AdamW`
    /// ([`adamw_fuses`]).
    fn adamw_fused(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        step: AdamWStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// What multi-head self-attention reads: q `[batch, queries, hidden]` (the first `queries`
/// positions' queries), k and v `[batch, seq, hidden]`, with `heads` heads side by side in the
/// last dimension; `real` `[batch, seq]`, 1 for a token and 0 for padding; and `dropout`, the
/// multiplier on the probabilities: one per probability (`[batch, heads, queries, seq]`, the
/// mask scaled by 1/keep) or one for all (a single value, 1 without dropout: burn's extensions
/// take no optional tensors).
#[derive(ExtensionType, Clone, Debug)]
pub struct AttentionInput<B: Backend> {
    pub q: FloatTensor<B>,
    pub k: FloatTensor<B>,
    pub v: FloatTensor<B>,
    pub real: FloatTensor<B>,
    pub dropout: FloatTensor<B>,
    pub heads: usize,
}
