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

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::ops::{ActivationOps, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, DType, Dispatch, DispatchDevice, ExtensionType, Flex, backend_extension};
use burn::nn::{LayerNorm, Linear};
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Device, Shape, Tensor, TensorData};
use std::mem::MaybeUninit;

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

/// Whether tensors on `device` compute on flex (with or without autodiff) and the kernels are
/// routed there: without this crate's `flex` feature the extension has no flex arm.
fn on_flex(device: &Device) -> bool {
    cfg!(feature = "flex") && matches!(device.as_dispatch().clone().inner(), DispatchDevice::Flex(_))
}

/// burn's GELU on any device but flex, where it is the fused kernel.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if on_flex(&x.device()) {
        Tensor::from_dispatch(<Dispatch as FusedKernels>::gelu_fused(x.into_dispatch()))
    } else {
        burn::tensor::activation::gelu(x)
    }
}

/// `layer` applied to `x`: on flex (with a bias) one fused operation, whose output starts as
/// the bias and takes the product on top, and whose backward pass writes each gradient once;
/// burn's `Linear` elsewhere.
pub fn linear<const D: usize>(layer: &Linear, x: Tensor<D>) -> Tensor<D> {
    match &layer.bias {
        Some(bias) if on_flex(&x.device()) => Tensor::from_dispatch(<Dispatch as FusedKernels>::linear_fused(
            x.into_dispatch(),
            layer.weight.val().into_dispatch(),
            bias.val().into_dispatch(),
        )),
        _ => layer.forward(x),
    }
}

/// `layer` applied to `x`: on flex (with a bias, in f32) one fused operation whose backward
/// pass is one step (burn's autodiff runs layer norm as ten operations); burn's `LayerNorm`
/// elsewhere. `epsilon` is the layer's own (burn keeps it private; the model's config has it).
pub fn layer_norm<const D: usize>(layer: &LayerNorm, epsilon: f64, x: Tensor<D>) -> Tensor<D> {
    match fused_layer_norm_parameters(layer, &x) {
        Some((gamma, beta)) => Tensor::from_dispatch(<Dispatch as FusedKernels>::layer_norm_fused(
            x.into_dispatch(),
            gamma.into_dispatch(),
            beta.into_dispatch(),
            epsilon,
        )),
        None => layer.forward(x),
    }
}

/// [`layer_norm`] of x + `residual` (a residual connection): on flex one fused operation
/// that never writes the sum out (burn-flex adds on one thread) and whose backward step hands
/// both the same gradient; elsewhere the sum, then [`layer_norm`].
pub fn add_layer_norm<const D: usize>(layer: &LayerNorm, epsilon: f64, x: Tensor<D>, residual: Tensor<D>) -> Tensor<D> {
    match fused_layer_norm_parameters(layer, &x) {
        Some((gamma, beta)) if residual.dims() == x.dims() && residual.dtype() == DType::F32 => {
            Tensor::from_dispatch(<Dispatch as FusedKernels>::add_layer_norm_fused(
                x.into_dispatch(),
                residual.into_dispatch(),
                gamma.into_dispatch(),
                beta.into_dispatch(),
                epsilon,
            ))
        }
        _ => layer_norm(layer, epsilon, x + residual),
    }
}

/// γ and β when the fused layer norm applies to `x`: on flex, with a bias, all in f32, and
/// parameters of x's width.
fn fused_layer_norm_parameters<const D: usize>(layer: &LayerNorm, x: &Tensor<D>) -> Option<(Tensor<1>, Tensor<1>)> {
    let (gamma, beta) = (layer.gamma.val(), layer.beta.as_ref()?.val());
    let width = x.dims()[D - 1];
    let fits = on_flex(&x.device())
        && [x.dtype(), gamma.dtype(), beta.dtype()] == [DType::F32; 3]
        && gamma.dims() == [width]
        && beta.dims() == [width]
        && width > 0;
    fits.then_some((gamma, beta))
}

/// Multi-head self-attention: the context `[batch, queries, hidden]` from the projected q
/// (`[batch, queries, hidden]`, the first `queries` positions' queries: all of them, or only
/// [CLS] in a classifier's last layer), k and v (`[batch, seq, hidden]`), `heads` heads side by
/// side, each head softmax(q·kᵀ/√(head size))·v with the padded keys masked (`real`: `[batch,
/// seq]`, true for a token) and `dropout` (the scaled mask on the probabilities, `[batch, heads,
/// queries, seq]`) applied to the probabilities. On flex one fused operation (the `attention`
/// module says how); elsewhere burn's operations written out.
pub fn attention(
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    heads: usize,
    real: Option<&Tensor<2, Bool>>,
    dropout: Option<Tensor<4>>,
) -> Tensor<3> {
    let [batch, _, hidden] = q.dims();
    let seq = k.dims()[1];
    let f32s = [&q, &k, &v].iter().all(|t| t.dtype() == DType::F32);
    let fits =
        f32s && heads > 0 && hidden.is_multiple_of(heads) && k.dims() == [batch, seq, hidden] && v.dims() == k.dims();
    let device = q.device();
    if fits && on_flex(&device) {
        let real = match real {
            Some(real) => real.clone().float(),
            None => Tensor::ones([batch, seq], &device),
        };
        let dropout = dropout.unwrap_or_else(|| Tensor::ones([1, 1, 1, 1], &device));
        let input = AttentionInput {
            q: q.into_dispatch(),
            k: k.into_dispatch(),
            v: v.into_dispatch(),
            real: real.into_dispatch(),
            dropout: dropout.into_dispatch(),
            heads,
        };
        return Tensor::from_dispatch(<Dispatch as FusedKernels>::attention_fused(input));
    }
    attention_written_out(q, k, v, heads, real, dropout)
}

/// [`attention`] in burn's operations: heads split and merged by reshapes, burn's fused
/// attention when nothing needs its steps (no gradients, no dropout).
fn attention_written_out(
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    heads: usize,
    real: Option<&Tensor<2, Bool>>,
    dropout: Option<Tensor<4>>,
) -> Tensor<3> {
    let [batch, queries, hidden] = q.dims();
    let seq = k.dims()[1];
    let split = |t: Tensor<3>, rows| t.reshape([batch, rows, heads, hidden / heads]).swap_dims(1, 2);
    let (q, k, v) = (split(q, queries), split(k, seq), split(v, seq));
    // [batch, heads, queries, seq], true where the key is padding.
    let padded = real.map(|r| {
        r.clone()
            .bool_not()
            .reshape([batch, 1, 1, seq])
            .expand([batch, heads, queries, seq])
    });
    let context = if q.is_autodiff() || dropout.is_some() {
        // Written out so that dropout applies; burn's autodiff would decompose its fused
        // attention into the same steps anyway.
        let scale = 1.0 / ((hidden / heads) as f64).sqrt();
        let mut scores = q.mul_scalar(scale).matmul(k.swap_dims(2, 3));
        if let Some(padded) = padded {
            scores = scores.mask_fill(padded, f32::MIN);
        }
        let probabilities = burn::tensor::activation::softmax(scores, 3);
        let probabilities = match dropout {
            Some(mask) => probabilities * mask,
            None => probabilities,
        };
        probabilities.matmul(v)
    } else {
        burn::tensor::module::attention(q, k, v, padded, None, AttentionModuleOptions::default())
    };
    context.swap_dims(1, 2).reshape([batch, queries, hidden])
}

/// Whether [`adamw_step`] takes this parameter and gradient: f32 tensors of one shape on flex,
/// without autodiff (an optimizer's tensors). Elsewhere burn's `AdamW` is the way.
pub fn adamw_fuses<const D: usize>(param: &Tensor<D>, grad: &Tensor<D>) -> bool {
    let f32s = [param, grad]
        .iter()
        .all(|t| t.dtype() == DType::F32 && !t.is_autodiff());
    f32s && param.shape() == grad.shape() && on_flex(&param.device())
}

/// One AdamW step of one parameter on flex: the parameter and its first and second moments
/// after it (`moments`: before it, `None` at the first step), the gradient clipped by norm
/// first when `step` says so. The update is burn's `AdamW`'s (with its clipping by norm), in
/// one parallel pass that writes the buffers in place where this step holds them alone (the
/// `adamw` module says how).
///
/// # Panics
/// Unless [`adamw_fuses`] the parameter and gradient, and the moments are like them.
pub fn adamw_step<const D: usize>(
    step: AdamWStep,
    param: Tensor<D>,
    grad: Tensor<D>,
    moments: Option<[Tensor<D>; 2]>,
) -> [Tensor<D>; 3] {
    assert!(
        adamw_fuses(&param, &grad),
        "adamw_step: not f32 tensors of one shape on flex"
    );
    let [moment_1, moment_2] = moments.unwrap_or_else(|| [grad.zeros_like(), grad.zeros_like()]);
    for moment in [&moment_1, &moment_2] {
        assert!(
            adamw_fuses(moment, &grad),
            "adamw_step: a moment is not an f32 tensor of the gradient's shape on flex"
        );
    }
    let (param, moment_1, moment_2) = <Dispatch as FusedKernels>::adamw_fused(
        param.into_dispatch(),
        grad.into_dispatch(),
        moment_1.into_dispatch(),
        moment_2.into_dispatch(),
        step,
    );
    [param, moment_1, moment_2].map(Tensor::from_dispatch)
}

/// A contiguous f32 tensor's values.
fn values(tensor: &FloatTensor<Flex>) -> &[f32] {
    let layout = tensor.layout();
    &tensor.storage::<f32>()[layout.start_offset()..][..layout.num_elements()]
}

impl FusedKernels for Flex {
    fn gelu_fused(x: FloatTensor<Self>) -> FloatTensor<Self> {
        if x.dtype() != DType::F32 {
            return Self::gelu(x);
        }
        let x = x.to_contiguous();
        computed(x.layout().shape().clone(), values(&x), None, 1, |x, _, out| {
            gelu_values_widest(x, out)
        })
    }

    fn gelu_fused_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        if x.dtype() != DType::F32 || grad.dtype() != DType::F32 || x.layout().shape() != grad.layout().shape() {
            return Self::gelu_backward(x, grad);
        }
        let (x, grad) = (x.to_contiguous(), grad.to_contiguous());
        let shape = x.layout().shape().clone();
        computed(shape, values(&x), Some(values(&grad)), 1, |x, g, out| {
            gelu_gradients_widest(x, g.unwrap_or_default(), out)
        })
    }

    fn linear_fused(x: FloatTensor<Self>, weight: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self> {
        let Some((rows, d_in, d_out)) = linear_dims(&x, &weight, Some(&bias)) else {
            return Self::linear(x, weight, Some(bias));
        };
        #[cfg(test)]
        FUSED_LINEAR_CALLS.with(|calls| calls.set(calls.get() + 1));
        let (x, bias) = (x.to_contiguous(), bias.to_contiguous());
        let lhs = MatrixView::rows(values(&x), d_in, false);
        let data = product(
            (rows, d_in, d_out),
            lhs,
            MatrixView::of(&weight, false),
            Some(values(&bias)),
        );
        FloatTensor::<Self>::from_data(TensorData::new(data, with_last(x.layout().shape(), d_out)))
    }

    fn linear_fused_input_backward(weight: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        let (gs, ws) = (grad.layout().shape().clone(), weight.layout().shape().clone());
        let fits = grad.dtype() == DType::F32 && weight.dtype() == DType::F32 && ws.num_dims() == 2;
        if !fits || gs[gs.num_dims() - 1] != ws[1] || ws[0] == 0 || ws[1] == 0 {
            return Self::linear_x_backward(weight, grad);
        }
        let (d_in, d_out) = (ws[0], ws[1]);
        let grad = grad.to_contiguous();
        let rows = gs.num_elements() / d_out;
        let lhs = MatrixView::rows(values(&grad), d_out, false);
        let data = product((rows, d_out, d_in), lhs, MatrixView::of(&weight, true), None);
        FloatTensor::<Self>::from_data(TensorData::new(data, with_last(&gs, d_in)))
    }

    fn linear_fused_weight_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        let (xs, gs) = (x.layout().shape().clone(), grad.layout().shape().clone());
        let (d_in, d_out) = (xs[xs.num_dims() - 1], gs[gs.num_dims() - 1]);
        let fits = x.dtype() == DType::F32 && grad.dtype() == DType::F32 && d_in > 0 && d_out > 0;
        if !fits || xs.num_elements() / d_in != gs.num_elements() / d_out {
            return Self::linear_weight_backward(x, grad);
        }
        let (x, grad) = (x.to_contiguous(), grad.to_contiguous());
        let rows = xs.num_elements() / d_in;
        let lhs = MatrixView::rows(values(&x), d_in, true);
        let rhs = MatrixView::rows(values(&grad), d_out, false);
        let data = product((d_in, rows, d_out), lhs, rhs, None);
        FloatTensor::<Self>::from_data(TensorData::new(data, [d_in, d_out]))
    }

    fn linear_fused_bias_backward(grad: FloatTensor<Self>) -> FloatTensor<Self> {
        let shape = grad.layout().shape().clone();
        let d_out = shape[shape.num_dims() - 1];
        if grad.dtype() != DType::F32 || d_out == 0 {
            return Self::linear_bias_backward(grad);
        }
        let grad = grad.to_contiguous();
        let mut sums = vec![0f32; d_out];
        for row in values(&grad).chunks_exact(d_out) {
            for (s, &g) in sums.iter_mut().zip(row) {
                *s += g;
            }
        }
        FloatTensor::<Self>::from_data(TensorData::new(sums, [d_out]))
    }

    fn layer_norm_fused_statistics(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        layer_norm_statistics(x, None, gamma, beta, epsilon)
    }

    fn add_layer_norm_fused(
        x: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        layer_norm_statistics(x, Some(residual), gamma, beta, epsilon).0
    }

    fn add_layer_norm_fused_statistics(
        x: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        layer_norm_statistics(x, Some(residual), gamma, beta, epsilon)
    }

    fn layer_norm_fused_input_backward(
        normalised: FloatTensor<Self>,
        rstd: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let shape = normalised.layout().shape().clone();
        let (normalised, rstd) = (normalised.to_contiguous(), rstd.to_contiguous());
        let (gamma, grad) = (gamma.to_contiguous(), grad.to_contiguous());
        let dx = layer_norm::input_backward(values(&normalised), values(&rstd), values(&gamma), values(&grad));
        FloatTensor::<Self>::from_data(TensorData::new(dx, shape))
    }

    fn layer_norm_fused_parameter_backward(
        normalised: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let shape = normalised.layout().shape().clone();
        let width = shape[shape.num_dims() - 1];
        let (normalised, grad) = (normalised.to_contiguous(), grad.to_contiguous());
        let (d_gamma, d_beta) = layer_norm::parameter_backward(values(&normalised), values(&grad), width);
        (
            FloatTensor::<Self>::from_data(TensorData::new(d_gamma, [width])),
            FloatTensor::<Self>::from_data(TensorData::new(d_beta, [width])),
        )
    }

    fn attention_fused(input: AttentionInput<Self>) -> FloatTensor<Self> {
        #[cfg(test)]
        FUSED_ATTENTION_CALLS.with(|calls| calls.set(calls.get() + 1));
        let (input, dims, shape) = attention_contiguous(input);
        let (context, _) = attention::forward(dims, &attention_values(&input), false);
        FloatTensor::<Self>::from_data(TensorData::new(context, shape))
    }

    fn attention_fused_probabilities(input: AttentionInput<Self>) -> (FloatTensor<Self>, FloatTensor<Self>) {
        #[cfg(test)]
        FUSED_ATTENTION_CALLS.with(|calls| calls.set(calls.get() + 1));
        let (input, dims, shape) = attention_contiguous(input);
        let (context, probabilities) = attention::forward(dims, &attention_values(&input), true);
        let probabilities = probabilities.unwrap_or_default();
        let block_shape = [dims.batch, dims.heads, dims.queries, dims.seq];
        (
            FloatTensor::<Self>::from_data(TensorData::new(context, shape)),
            FloatTensor::<Self>::from_data(TensorData::new(probabilities, block_shape)),
        )
    }

    fn attention_fused_backward(
        input: AttentionInput<Self>,
        probabilities: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (input, dims, q_shape) = attention_contiguous(input);
        let kv_shape = input.k.layout().shape().clone();
        let (probabilities, grad) = (probabilities.to_contiguous(), grad.to_contiguous());
        let [dq, dk, dv] = attention::backward(dims, &attention_values(&input), values(&probabilities), values(&grad));
        let tensor =
            |data: Vec<f32>, shape: &Shape| FloatTensor::<Self>::from_data(TensorData::new(data, shape.clone()));
        (tensor(dq, &q_shape), tensor(dk, &kv_shape), tensor(dv, &kv_shape))
    }

    fn adamw_fused(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        step: AdamWStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        #[cfg(test)]
        FUSED_ADAMW_CALLS.with(|calls| calls.set(calls.get() + 1));
        let grad = grad.to_contiguous();
        let [mut param, mut moment_1, mut moment_2] = [param, moment_1, moment_2].map(owned_contiguous);
        adamw::step(
            &step,
            values_mut(&mut param),
            values_mut(&mut moment_1),
            values_mut(&mut moment_2),
            values(&grad),
        );
        (param, moment_1, moment_2)
    }
}

/// `tensor` contiguous and with a buffer of its own to write (copied when shared).
fn owned_contiguous(tensor: FloatTensor<Flex>) -> FloatTensor<Flex> {
    let mut tensor = tensor.to_contiguous();
    if !tensor.is_unique() {
        // `storage_mut` copies a shared buffer whole; a view's own values are enough.
        tensor = FloatTensor::<Flex>::from_data(TensorData::new(
            values(&tensor).to_vec(),
            tensor.layout().shape().clone(),
        ));
    }
    tensor
}

/// A contiguous f32 tensor's values, to write (copied first if the buffer is shared).
fn values_mut(tensor: &mut FloatTensor<Flex>) -> &mut [f32] {
    let (start, n) = (tensor.layout().start_offset(), tensor.layout().num_elements());
    &mut tensor.storage_mut::<f32>()[start..][..n]
}

/// The attention operation's inputs made contiguous, its dimensions and q's shape (the
/// context's). The public [`attention`] checks what the assertions state before choosing this
/// route.
/// Layer norm of x (+ `residual`, of x's shape) on flex, with the statistics its backward
/// pass keeps: (y, the normalised values, each row's 1/√(var + ε)).
fn layer_norm_statistics(
    x: FloatTensor<Flex>,
    residual: Option<FloatTensor<Flex>>,
    gamma: FloatTensor<Flex>,
    beta: FloatTensor<Flex>,
    epsilon: f64,
) -> (FloatTensor<Flex>, FloatTensor<Flex>, FloatTensor<Flex>) {
    #[cfg(test)]
    FUSED_LAYER_NORM_CALLS.with(|calls| calls.set(calls.get() + 1));
    let shape = x.layout().shape().clone();
    if let Some(residual) = &residual {
        assert_eq!(residual.layout().shape(), &shape, "a residual of the input's shape");
    }
    let (x, gamma, beta) = (x.to_contiguous(), gamma.to_contiguous(), beta.to_contiguous());
    let residual = residual.map(|r| r.to_contiguous());
    let (y, normalised, rstd) = layer_norm::forward(
        values(&x),
        residual.as_ref().map(values),
        values(&gamma),
        values(&beta),
        epsilon as f32,
    );
    let rows = rstd.len();
    (
        FloatTensor::<Flex>::from_data(TensorData::new(y, shape.clone())),
        FloatTensor::<Flex>::from_data(TensorData::new(normalised, shape)),
        FloatTensor::<Flex>::from_data(TensorData::new(rstd, [rows])),
    )
}

fn attention_contiguous(input: AttentionInput<Flex>) -> (AttentionInput<Flex>, attention::Heads, Shape) {
    let shape = input.q.layout().shape().clone();
    let kv_shape = input.k.layout().shape().clone();
    let heads = input.heads;
    assert!(
        shape.num_dims() == 3 && heads > 0 && shape[2].is_multiple_of(heads),
        "attention: q is {shape:?} with {heads} heads"
    );
    assert!(
        kv_shape.num_dims() == 3
            && [kv_shape[0], kv_shape[2]] == [shape[0], shape[2]]
            && input.v.layout().shape() == &kv_shape,
        "attention: q is {shape:?}, k {kv_shape:?}, v {:?}",
        input.v.layout().shape()
    );
    let dims = attention::Heads {
        batch: shape[0],
        queries: shape[1],
        seq: kv_shape[1],
        heads,
        head: shape[2] / heads,
    };
    let input = AttentionInput {
        q: input.q.to_contiguous(),
        k: input.k.to_contiguous(),
        v: input.v.to_contiguous(),
        real: input.real.to_contiguous(),
        dropout: input.dropout.to_contiguous(),
        heads,
    };
    (input, dims, shape)
}

/// The values the attention kernels read, from contiguous inputs.
fn attention_values(input: &AttentionInput<Flex>) -> attention::Operands<'_> {
    attention::Operands {
        q: values(&input.q),
        k: values(&input.k),
        v: values(&input.v),
        real: values(&input.real),
        dropout: match values(&input.dropout) {
            [all] => attention::Dropout::All(*all),
            each => attention::Dropout::Each(each),
        },
    }
}

/// `[rows, in]`·`[in, out]` for the fused linear operation, through the gemm crate as
/// burn-flex's own products. The destination is a new buffer that starts as the bias rows
/// (`init`, the forward pass), or that no one zeroed: gemm does not read the destination
/// unless told to.
fn product(
    (rows, d_in, d_out): (usize, usize, usize),
    lhs: MatrixView,
    rhs: MatrixView,
    init: Option<&[f32]>,
) -> Vec<f32> {
    product_into(Vec::new(), (rows, d_in, d_out), lhs, rhs, init)
}

/// [`product`] into `data`'s allocation (emptied first; a test hands it memory full of NaN).
fn product_into(
    mut data: Vec<f32>,
    (rows, d_in, d_out): (usize, usize, usize),
    lhs: MatrixView,
    rhs: MatrixView,
    init: Option<&[f32]>,
) -> Vec<f32> {
    let n = rows * d_out;
    data.clear();
    data.reserve_exact(n);
    let parallel = rows.saturating_mul(d_in).saturating_mul(d_out) >= 192 * 192 * 192;
    if let Some(bias) = init {
        fill_rows(&mut data.spare_capacity_mut()[..n], bias, parallel);
        // SAFETY: fill_rows wrote all n values.
        unsafe { data.set_len(n) };
    }
    if d_in == 0 {
        // An empty sum: gemm would have nothing to write.
        data.resize(n, 0.0);
        return data;
    }
    let read_dst = init.is_some();
    let parallelism = if parallel {
        #[cfg(not(target_arch = "wasm32"))]
        {
            gemm::Parallelism::Rayon(0)
        }
        #[cfg(target_arch = "wasm32")]
        {
            gemm::Parallelism::None
        }
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the views address `rows × in` and `in × out` matrices inside their tensors'
    // storage (the callers take the dimensions from those tensors' shapes); the destination
    // has room for `rows × out` values, row-major, and is read only when it holds the bias
    // rows; gemm writes every value.
    unsafe {
        let operands = (lhs, rhs);
        gemm_into(
            (rows, d_out, d_in),
            (data.as_mut_ptr(), d_out),
            read_dst,
            operands,
            1.0,
            parallelism,
        );
        data.set_len(n);
    }
    data
}

/// Every row of `out` (rows of `row.len()` values) set to `row`: on rayon's threads when
/// `parallel` (a product's bias rows are as large as its output, and one thread filling them
/// left the other idle), in order otherwise and in wasm.
fn fill_rows(out: &mut [Uninit], row: &[f32], parallel: bool) {
    let fill = |out: &mut [Uninit]| {
        for out in out.chunks_exact_mut(row.len()) {
            for (o, &v) in out.iter_mut().zip(row) {
                o.write(v);
            }
        }
    };
    if row.is_empty() {
        return;
    }
    #[cfg(not(target_arch = "wasm32"))]
    if parallel {
        use rayon::prelude::*;
        let chunk = (1usize << 15).next_multiple_of(row.len());
        out.par_chunks_mut(chunk).for_each(fill);
        return;
    }
    let _ = parallel;
    fill(out);
}

/// dst (`m × n`, rows `row_stride` apart) = beta·lhs·rhs, plus dst's own values when
/// `accumulate` (else dst is never read), through the gemm crate as burn-flex's products.
///
/// # Safety
/// The views address `m × k` and `k × n` matrices of live memory, and dst `m × n` writable
/// values (initialised if `accumulate`) that nothing else touches meanwhile.
unsafe fn gemm_into(
    (m, n, k): (usize, usize, usize),
    (dst, row_stride): (*mut f32, usize),
    accumulate: bool,
    (lhs, rhs): (MatrixView, MatrixView),
    beta: f32,
    parallelism: gemm::Parallelism,
) {
    // SAFETY: as the caller promises.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            row_stride as isize,
            accumulate,
            lhs.ptr,
            lhs.cs,
            lhs.rs,
            rhs.ptr,
            rhs.cs,
            rhs.rs,
            1.0,
            beta,
            false,
            false,
            false,
            parallelism,
        )
    }
}

#[cfg(test)]
thread_local! {
    /// Fused linear operations this thread ran on flex, for a test to see that they did.
    static FUSED_LINEAR_CALLS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// Fused layer norms this thread ran on flex under autodiff, likewise.
    static FUSED_LAYER_NORM_CALLS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// Fused attention forward passes this thread ran on flex, likewise.
    static FUSED_ATTENTION_CALLS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// Fused AdamW steps this thread ran on flex, likewise.
    static FUSED_ADAMW_CALLS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// A 2-D matrix inside a tensor's storage: element (i, j) at `ptr + i·rs + j·cs`.
#[derive(Clone, Copy)]
struct MatrixView {
    ptr: *const f32,
    rs: isize,
    cs: isize,
}

impl MatrixView {
    /// A 2-D tensor as it is stored, or transposed.
    fn of(tensor: &FloatTensor<Flex>, transposed: bool) -> MatrixView {
        let layout = tensor.layout();
        let strides = layout.strides();
        let ptr = tensor.storage::<f32>()[layout.start_offset()..].as_ptr();
        let (rs, cs) = (strides[0], strides[1]);
        if transposed {
            MatrixView { ptr, rs: cs, cs: rs }
        } else {
            MatrixView { ptr, rs, cs }
        }
    }

    /// A contiguous tensor seen as `[rows, cols]` row-major, or transposed.
    fn rows(values: &[f32], cols: usize, transposed: bool) -> MatrixView {
        MatrixView::at(values, 0, cols, transposed)
    }

    /// Rows `row_stride` apart starting at `values[offset]` (a column block of a wider
    /// matrix, such as one attention head), or their transpose.
    fn at(values: &[f32], offset: usize, row_stride: usize, transposed: bool) -> MatrixView {
        let (rs, cs) = (row_stride as isize, 1);
        let ptr = values[offset..].as_ptr();
        if transposed {
            MatrixView { ptr, rs: cs, cs: rs }
        } else {
            MatrixView { ptr, rs, cs }
        }
    }
}

/// The linear operation's shapes when the fused kernels take them: f32 throughout, a 2-D weight
/// `[in, out]`, a bias `[out]`, an input whose last dimension is `in`. `(rows, in, out)`.
fn linear_dims(
    x: &FloatTensor<Flex>,
    weight: &FloatTensor<Flex>,
    bias: Option<&FloatTensor<Flex>>,
) -> Option<(usize, usize, usize)> {
    let (xs, ws) = (x.layout().shape(), weight.layout().shape());
    let f32s = x.dtype() == DType::F32 && weight.dtype() == DType::F32;
    if !f32s || ws.num_dims() != 2 || xs.num_dims() < 2 || xs[xs.num_dims() - 1] != ws[0] {
        return None;
    }
    if let Some(bias) = bias {
        let bs = bias.layout().shape();
        if bias.dtype() != DType::F32 || bs.num_dims() != 1 || bs[0] != ws[1] {
            return None;
        }
    }
    let (d_in, d_out) = (ws[0], ws[1]);
    (d_in > 0 && d_out > 0).then(|| (xs.num_elements() / d_in, d_in, d_out))
}

/// `shape` with its last dimension replaced.
fn with_last(shape: &Shape, last: usize) -> Shape {
    let mut dims: Vec<usize> = (0..shape.num_dims()).map(|i| shape[i]).collect();
    let end = dims.len() - 1;
    dims[end] = last;
    Shape::from(dims)
}

/// Accumulators for reductions in 16 lanes (the widest vector), combined at the end: a fixed
/// order, so the same at every vector width.
const LANES: usize = 16;

/// The largest value (NaN only if every value is NaN; a NaN elsewhere reaches the exponentials
/// and makes the row NaN).
#[inline(always)]
fn lane_max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a = if v > *a { v } else { *a };
        }
    }
    let max = acc.iter().fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    rest.iter().fold(max, |m, &v| if v > m { v } else { m })
}

/// Σ x.
#[inline(always)]
fn lane_sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (a, &x) in acc.iter_mut().zip(chunk) {
            *a += x;
        }
    }
    acc.iter().sum::<f32>() + rest
}

/// Σ x·w.
#[inline(always)]
fn lane_dot(x: &[f32], w: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    for (xs, ws) in x.chunks_exact(LANES).zip(w.chunks_exact(LANES)) {
        for ((a, &x), &w) in acc.iter_mut().zip(xs).zip(ws) {
            *a += x * w;
        }
    }
    let tail = x.len() - x.len() % LANES;
    let rest: f32 = x[tail..].iter().zip(&w[tail..]).map(|(x, w)| x * w).sum();
    acc.iter().sum::<f32>() + rest
}

/// GELU(x) for each x.
#[inline(always)]
fn gelu_values(x: &[f32], out: &mut [Uninit]) {
    for (o, &x) in out.iter_mut().zip(x) {
        o.write(x * cdf_and_density(x).0);
    }
}

/// g·GELU′(x) for each x and g.
#[inline(always)]
fn gelu_gradients(x: &[f32], g: &[f32], out: &mut [Uninit]) {
    for ((o, &x), &g) in out.iter_mut().zip(x).zip(g) {
        let (cdf, density) = cdf_and_density(x);
        o.write(g * (cdf + x * density));
    }
}

/// `$name` runs `$kernel` (an `#[inline(always)]` loop) compiled for the widest vectors this
/// CPU has: the binary targets baseline x86-64 (4 floats per SSE vector); most CPUs run 8
/// (AVX2) or 16 (AVX-512F). The arithmetic is the same in each (no fused multiply-add), and so
/// are the results.
macro_rules! widest_vectors {
    ($vis:vis $name:ident = $kernel:ident($($arg:ident: $ty:ty),*) $(-> $out:ty)?) => {
        $vis fn $name($($arg: $ty),*) $(-> $out)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512($($arg: $ty),*) $(-> $out)? {
                    $kernel($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                fn avx2($($arg: $ty),*) $(-> $out)? {
                    $kernel($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the feature the function was compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: as above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $kernel($($arg),*)
        }
    };
}
widest_vectors!(gelu_values_widest = gelu_values(x: &[f32], out: &mut [Uninit]));
widest_vectors!(gelu_gradients_widest = gelu_gradients(x: &[f32], g: &[f32], out: &mut [Uninit]));

mod adamw;
mod attention;
mod layer_norm;

pub use adamw::AdamWStep;

/// A buffer that units of work on several threads write through, each to its own elements.
#[derive(Clone, Copy)]
struct Shared(*mut f32);
// SAFETY: the kernels hand each unit a disjoint set of elements, and the buffer outlives the
// parallel loop.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    /// The elements `range` of the buffer.
    ///
    /// # Safety
    /// The range lies inside the buffer, and no other unit touches it meanwhile.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice<'a>(&self, range: std::ops::Range<usize>) -> &'a mut [f32] {
        // SAFETY: as the caller promises.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(range.start), range.len()) }
    }

    /// [`Shared::slice`] of a buffer not yet initialised there: zeroed first, by the unit
    /// that owns the range (one thread zeroing a whole fresh buffer left the other idle).
    ///
    /// # Safety
    /// As [`Shared::slice`], except that the range may hold uninitialised memory.
    #[allow(clippy::mut_from_ref)]
    unsafe fn zeroed<'a>(&self, range: std::ops::Range<usize>) -> &'a mut [f32] {
        // SAFETY: as the caller promises; all-zero bytes are the f32 0.0.
        unsafe {
            self.0.add(range.start).write_bytes(0, range.len());
            self.slice(range)
        }
    }
}

/// Runs `work` for every unit, on rayon's threads natively and in order in wasm.
fn for_each_unit(units: usize, work: impl Fn(usize) + Sync + Send) {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        (0..units).into_par_iter().for_each(work);
    }
    #[cfg(target_arch = "wasm32")]
    (0..units).for_each(work);
}

/// An output element before its kernel writes it.
type Uninit = MaybeUninit<f32>;

/// A new tensor of `shape` whose values `kernel` writes, every one, from matching chunks of
/// the inputs. The buffer is not zeroed first, nor copied after: burn-flex's
/// `FlexTensor::empty` does both (a zeroed `Vec<u8>`, then a copy to 16-byte alignment).
fn computed(
    shape: Shape,
    x: &[f32],
    grad: Option<&[f32]>,
    granule: usize,
    kernel: impl Fn(&[f32], Option<&[f32]>, &mut [Uninit]) + Sync,
) -> FloatTensor<Flex> {
    let n = x.len();
    let mut data = Vec::<f32>::with_capacity(n);
    for_chunks(x, grad, &mut data.spare_capacity_mut()[..n], granule, kernel);
    // SAFETY: the kernels write every element of their chunk, and the chunks cover 0..n.
    unsafe { data.set_len(n) };
    FloatTensor::<Flex>::from_data(TensorData::new(data, shape))
}

/// Runs `kernel` over matching chunks of the inputs and the output, each a whole number of
/// `granule`s (rows), on rayon's threads natively (burn-flex runs element-wise work on one), in
/// one piece in wasm.
fn for_chunks(
    x: &[f32],
    grad: Option<&[f32]>,
    out: &mut [Uninit],
    granule: usize,
    kernel: impl Fn(&[f32], Option<&[f32]>, &mut [Uninit]) + Sync,
) {
    #[cfg(not(target_arch = "wasm32"))]
    {
        let chunk = (1usize << 15).next_multiple_of(granule);
        if x.len() > chunk {
            use rayon::prelude::*;
            out.par_chunks_mut(chunk).enumerate().for_each(|(i, out)| {
                let range = i * chunk..i * chunk + out.len();
                kernel(&x[range.clone()], grad.map(|g| &g[range]), out);
            });
            return;
        }
    }
    let _ = granule;
    kernel(x, grad, out);
}

/// Autodiff over flex: the fused forward, and the fused derivative in the backward pass.
impl<B: Backend + FusedKernels, C: CheckpointStrategy> FusedKernels for Autodiff<B, C> {
    fn gelu_fused(x: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct FusedGelu;

        impl<B: Backend + FusedKernels> Backward<B, 1> for FusedGelu {
            type State = NodeId;

            fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
                let input = checkpointer.retrieve_node_output(ops.state);
                unary::<B, _>(ops.parents, ops.node, grads, |grad| B::gelu_fused_backward(input, grad));
            }
        }

        match FusedGelu.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let state = prep.checkpoint(&x);
                prep.finish(state, B::gelu_fused(x.primitive().clone()))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::gelu_fused(x.into_primitive())),
        }
    }

    fn linear_fused(x: FloatTensor<Self>, weight: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self> {
        /// Each tracked parent gets its gradient. The input is kept only for the weight's
        /// gradient and the weight only for the input's, as burn's own linear does: in IG the
        /// weights are constants, and keeping every layer's input (the GELU outputs among them)
        /// until the backward pass cost the teacher's explanations half a gigabyte.
        #[derive(Debug)]
        struct FusedLinear;

        impl<B: Backend + FusedKernels> Backward<B, 3> for FusedLinear {
            type State = (Option<NodeId>, Option<NodeId>);

            fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
                let [x_parent, weight_parent, bias_parent] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let (x, weight) = ops.state;
                let mut kept =
                    |id: Option<NodeId>| id.map(|id| checkpointer.retrieve_node_output::<FloatTensor<B>>(id));
                let (x, weight) = (kept(x), kept(weight));
                if let Some(node) = bias_parent {
                    grads.register::<B>(node.id, B::linear_fused_bias_backward(grad.clone()));
                }
                if let (Some(node), Some(x)) = (weight_parent, x) {
                    grads.register::<B>(node.id, B::linear_fused_weight_backward(x, grad.clone()));
                }
                if let (Some(node), Some(weight)) = (x_parent, weight) {
                    grads.register::<B>(node.id, B::linear_fused_input_backward(weight, grad));
                }
            }
        }

        let (x_tracked, weight_tracked) = (x.is_tracked(), weight.is_tracked());
        let nodes = [x.node(), weight.node(), bias.node()];
        match FusedLinear.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let x_kept = weight_tracked.then(|| prep.checkpoint(&x));
                let weight_kept = x_tracked.then(|| prep.checkpoint(&weight));
                let output = B::linear_fused(x.into_primitive(), weight.into_primitive(), bias.into_primitive());
                prep.finish((x_kept, weight_kept), output)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::linear_fused(
                x.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
            )),
        }
    }

    fn layer_norm_fused(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        let x_tracked = x.is_tracked();
        let nodes = [x.node(), gamma.node(), beta.node()];
        let (x, gamma, beta) = (x.into_primitive(), gamma.into_primitive(), beta.into_primitive());
        match FusedLayerNorm::<3>.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (y, normalised, rstd) = B::layer_norm_fused_statistics(x, gamma.clone(), beta, epsilon);
                prep.finish((normalised, x_tracked.then_some((rstd, gamma))), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::layer_norm_fused(x, gamma, beta, epsilon)),
        }
    }

    fn add_layer_norm_fused(
        x: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        let input_tracked = x.is_tracked() || residual.is_tracked();
        let nodes = [x.node(), residual.node(), gamma.node(), beta.node()];
        let (x, residual) = (x.into_primitive(), residual.into_primitive());
        let (gamma, beta) = (gamma.into_primitive(), beta.into_primitive());
        match FusedLayerNorm::<4>.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (y, normalised, rstd) =
                    B::add_layer_norm_fused_statistics(x, residual, gamma.clone(), beta, epsilon);
                prep.finish((normalised, input_tracked.then_some((rstd, gamma))), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::add_layer_norm_fused(x, residual, gamma, beta, epsilon)),
        }
    }

    /// Constants: the statistics are for a backward step, not part of one.
    fn add_layer_norm_fused_statistics(
        x: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (x, residual) = (x.into_primitive(), residual.into_primitive());
        let (gamma, beta) = (gamma.into_primitive(), beta.into_primitive());
        let (y, normalised, rstd) = B::add_layer_norm_fused_statistics(x, residual, gamma, beta, epsilon);
        let constant = FloatTensor::<Self>::new;
        (constant(y), constant(normalised), constant(rstd))
    }

    /// Constants: the statistics are for a backward step, not part of one.
    fn layer_norm_fused_statistics(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (x, gamma, beta) = (x.into_primitive(), gamma.into_primitive(), beta.into_primitive());
        let (y, normalised, rstd) = B::layer_norm_fused_statistics(x, gamma, beta, epsilon);
        let constant = FloatTensor::<Self>::new;
        (constant(y), constant(normalised), constant(rstd))
    }

    /// Constants: burn has no gradients of gradients.
    fn layer_norm_fused_input_backward(
        normalised: FloatTensor<Self>,
        rstd: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        FloatTensor::<Self>::new(B::layer_norm_fused_input_backward(
            normalised.into_primitive(),
            rstd.into_primitive(),
            gamma.into_primitive(),
            grad.into_primitive(),
        ))
    }

    /// Constants, likewise.
    fn layer_norm_fused_parameter_backward(
        normalised: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (d_gamma, d_beta) =
            B::layer_norm_fused_parameter_backward(normalised.into_primitive(), grad.into_primitive());
        (FloatTensor::<Self>::new(d_gamma), FloatTensor::<Self>::new(d_beta))
    }

    fn attention_fused(input: AttentionInput<Self>) -> FloatTensor<Self> {
        /// q, k and v get their gradients from one backward step, which keeps the inputs and
        /// the probabilities (burn's written-out form keeps as much: each product keeps both
        /// operands).
        #[derive(Debug)]
        struct FusedAttention;

        impl<B: Backend + FusedKernels> Backward<B, 3> for FusedAttention {
            type State = (AttentionInput<B>, FloatTensor<B>);

            fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
                let grad = grads.consume::<B>(&ops.node);
                let (input, probabilities) = ops.state;
                let (dq, dk, dv) = B::attention_fused_backward(input, probabilities, grad);
                for (parent, grad) in ops.parents.into_iter().zip([dq, dk, dv]) {
                    if let Some(node) = parent {
                        grads.register::<B>(node.id, grad);
                    }
                }
            }
        }

        let nodes = [input.q.node(), input.k.node(), input.v.node()];
        // The padding and dropout masks are constants.
        let input = untracked(input);
        match FusedAttention.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (context, probabilities) = B::attention_fused_probabilities(input.clone());
                prep.finish((input, probabilities), context)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::attention_fused(input)),
        }
    }

    /// Constants: the probabilities are for a backward step, not part of one.
    fn attention_fused_probabilities(input: AttentionInput<Self>) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (context, probabilities) = B::attention_fused_probabilities(untracked(input));
        (
            FloatTensor::<Self>::new(context),
            FloatTensor::<Self>::new(probabilities),
        )
    }

    /// Constants: burn has no gradients of gradients.
    fn attention_fused_backward(
        input: AttentionInput<Self>,
        probabilities: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (probabilities, grad) = (probabilities.into_primitive(), grad.into_primitive());
        let (dq, dk, dv) = B::attention_fused_backward(untracked(input), probabilities, grad);
        let constant = FloatTensor::<Self>::new;
        (constant(dq), constant(dk), constant(dv))
    }

    /// Constants: an optimizer step is not part of a graph ([`adamw_step`] takes tensors
    /// without autodiff; this route is for completeness).
    fn adamw_fused(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        step: AdamWStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let [param, grad, moment_1, moment_2] = [param, grad, moment_1, moment_2].map(|t| t.into_primitive());
        let (param, moment_1, moment_2) = B::adamw_fused(param, grad, moment_1, moment_2, step);
        let constant = FloatTensor::<Self>::new;
        (constant(param), constant(moment_1), constant(moment_2))
    }
}

/// The attention input's inner tensors, outside the autodiff graph.
/// What a fused layer norm's backward step keeps: the normalised values (for every gradient)
/// and, when an input is tracked, each row's 1/√(var + ε) and γ.
type LayerNormState<B> = (FloatTensor<B>, Option<(FloatTensor<B>, FloatTensor<B>)>);

/// A fused layer norm's backward step, its parents `N − 2` inputs (x, and the residual added
/// to it), then γ and β: γ's and β's gradients to them when tracked, and the input's
/// gradient, computed once, to every tracked input.
#[derive(Debug)]
struct FusedLayerNorm<const N: usize>;

impl<B: Backend + FusedKernels, const N: usize> Backward<B, N> for FusedLayerNorm<N> {
    type State = LayerNormState<B>;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let parents = ops.parents.map(|parent| parent.map(|p| p.id));
        let (inputs, parameters) = parents.split_at(N - 2);
        let grad = grads.consume::<B>(&ops.node);
        layer_norm_backward::<B>(grad, ops.state, inputs, [parameters[0], parameters[1]], grads);
    }
}

/// [`FusedLayerNorm`]'s step from the output's `grad`.
fn layer_norm_backward<B: Backend + FusedKernels>(
    grad: FloatTensor<B>,
    (normalised, for_input): LayerNormState<B>,
    inputs: &[Option<NodeId>],
    parameters: [Option<NodeId>; 2],
    grads: &mut Gradients,
) {
    if parameters.iter().any(Option::is_some) {
        let (d_gamma, d_beta) = B::layer_norm_fused_parameter_backward(normalised.clone(), grad.clone());
        for (parent, grad) in parameters.into_iter().zip([d_gamma, d_beta]) {
            if let Some(parent) = parent {
                grads.register::<B>(parent, grad);
            }
        }
    }
    let inputs: Vec<NodeId> = inputs.iter().flatten().copied().collect();
    if let (false, Some((rstd, gamma))) = (inputs.is_empty(), for_input) {
        let dx = B::layer_norm_fused_input_backward(normalised, rstd, gamma, grad);
        for parent in inputs {
            grads.register::<B>(parent, dx.clone());
        }
    }
}

fn untracked<B: Backend, C: CheckpointStrategy>(input: AttentionInput<Autodiff<B, C>>) -> AttentionInput<B> {
    AttentionInput {
        q: input.q.into_primitive(),
        k: input.k.into_primitive(),
        v: input.v.into_primitive(),
        real: input.real.into_primitive(),
        dropout: input.dropout.into_primitive(),
        heads: input.heads,
    }
}

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1/√(2π).
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

/// Φ(x) and φ(x), the standard normal distribution and density, from one exponential.
/// erfc(z) for z ≥ 0 by Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5e-7): t = 1/(1 + p·z),
/// erfc(z) = t·(a₁ + t·(a₂ + …))·e^(−z²); with z = |x|/√2, e^(−z²) = e^(−x²/2) = √(2π)·φ(x).
#[inline(always)]
fn cdf_and_density(x: f32) -> (f32, f32) {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [0.254_829_6, -0.284_496_74, 1.421_413_7, -1.453_152_1, 1.061_405_4];
    let z = x.abs() * FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + P * z);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let gauss = exp_nonpositive(-0.5 * x * x);
    let tail = 0.5 * poly * gauss; // Φ(−|x|)
    let cdf = if x < 0.0 { tail } else { 1.0 - tail };
    (cdf, FRAC_1_SQRT_2PI * gauss)
}

/// e^y for y ≤ 0, branch-free so that loops over it vectorise: y = k·ln2 + r with |r| ≤ ln2/2,
/// e^r by its Taylor polynomial to r⁷ (relative error < 2e-8 on that interval), 2^k from the
/// exponent bits. Below −87 (where e^y is subnormal in f32) it gives 0.
#[inline(always)]
fn exp_nonpositive(y: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Not `max`, which would turn a NaN into −87: a NaN must come out as one.
    let y = if y < -87.0 { -87.0 } else { y };
    // Round to nearest by adding and taking away 1.5·2²³ (libm's roundf would not vectorise).
    // The sum holds k in its low mantissa bits, so 2^k comes from those bits: a float-to-int
    // conversion (`k as i32`, NaN-checked) would turn the loop scalar again.
    const ROUND: f32 = 12_582_912.0;
    let shifted = y * std::f32::consts::LOG2_E + ROUND;
    let k = shifted - ROUND;
    let r = (y - k * LN2_HI) - k * LN2_LO;
    let mut p = 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    let k_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    let scale = f32::from_bits(k_bits.wrapping_add(127) << 23);
    let value = p * scale;
    if y <= -87.0 { 0.0 } else { value }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    /// Φ and φ in f64 from the error function's series and continued fraction would be a
    /// second implementation to trust; burn's own GELU (libm's erff) is the reference here,
    /// and the exponential is checked against the standard library.
    #[test]
    fn the_exponential_matches_the_standard_librarys() {
        let mut worst = 0f64;
        for i in 0..=200_000 {
            let y = -86.0 * i as f32 / 200_000.0;
            let (ours, exact) = (exp_nonpositive(y) as f64, (y as f64).exp());
            worst = worst.max((ours - exact).abs() / exact);
        }
        assert!(worst < 5e-7, "relative error {worst}");
        // Where e^y leaves f32's normal range the result is 0 or within 1e-37 of it.
        assert!(exp_nonpositive(-87.0) < 1e-37);
        assert_eq!(exp_nonpositive(-100.0), 0.0);
        assert_eq!(exp_nonpositive(0.0), 1.0);
    }

    #[test]
    fn the_normal_cdf_and_density_match_closed_forms() {
        // Φ(0) = ½, φ(0) = 1/√(2π); Φ(1.959964) = 0.975; Φ(−x) = 1 − Φ(x).
        let (cdf, density) = cdf_and_density(0.0);
        assert!((cdf - 0.5).abs() < 2e-7 && (density - FRAC_1_SQRT_2PI).abs() < 1e-7);
        assert!((cdf_and_density(1.959_964).0 - 0.975).abs() < 2e-7);
        for x in [-6.0f32, -2.5, -0.3, 0.7, 3.1] {
            let (a, b) = (cdf_and_density(x).0, cdf_and_density(-x).0);
            assert!((a + b - 1.0).abs() < 2e-7, "{x}: {a} + {b}");
            let gauss = (-(x as f64) * (x as f64) / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt();
            let density = cdf_and_density(x).1 as f64;
            assert!(
                (density - gauss).abs() < 5e-7 * gauss,
                "φ({x}) = {density}, not {gauss}"
            );
        }
    }

    /// The wide-vector builds compute exactly what the baseline build does.
    #[test]
    fn every_vector_width_gives_the_same_bits() {
        let xs = grid();
        let g: Vec<f32> = xs.iter().map(|x| 1.0 - x / 7.0).collect();
        let run = |kernel: &dyn Fn(&mut [Uninit])| {
            let mut out = vec![Uninit::new(0.0); xs.len()];
            kernel(&mut out);
            // SAFETY: initialised by `new` and the kernel.
            out.iter().map(|v| unsafe { v.assume_init() }).collect::<Vec<f32>>()
        };
        assert_eq!(run(&|o| gelu_values(&xs, o)), run(&|o| gelu_values_widest(&xs, o)));
        assert_eq!(
            run(&|o| gelu_gradients(&xs, &g, o)),
            run(&|o| gelu_gradients_widest(&xs, &g, o))
        );
        // The attention softmax and its gradient, and layer norm, in place.
        let (len, real) = (37, [[1.0; 30], [0.0; 30]].concat());
        let rows = || xs[..len * 100].to_vec();
        let in_place = |kernel: &dyn Fn(&mut [f32])| {
            let mut values = rows();
            kernel(&mut values);
            values
        };
        let p = in_place(&|s| attention::softmax_rows_widest(s, len, &real));
        assert_eq!(p, in_place(&|s| attention::softmax_rows(s, len, &real)));
        assert_eq!(
            in_place(&|d| attention::softmax_gradient_rows(&p, d, len, &real)),
            in_place(&|d| attention::softmax_gradient_rows_widest(&p, d, len, &real))
        );
        let (gamma, beta) = (&g[..len], &xs[len..2 * len]);
        let normalised = |widest: bool, residual: Option<&[f32]>| {
            let (mut y, mut n, mut r) = (rows(), rows(), vec![0.0; 100]);
            let normalise = if widest {
                layer_norm::normalise_rows_widest
            } else {
                layer_norm::normalise_rows
            };
            normalise((&rows(), residual), gamma, beta, 1e-12, &mut y, &mut n, &mut r);
            (y, n, r)
        };
        let residual = &g[..len * 100];
        assert_eq!(normalised(false, Some(residual)), normalised(true, Some(residual)));
        assert_eq!(normalised(false, None), normalised(true, None));
        let (_, n, r) = normalised(false, None);
        assert_eq!(
            in_place(&|d| layer_norm::input_gradient_rows(&n, &r, gamma, &g[..len * 100], d)),
            in_place(&|d| layer_norm::input_gradient_rows_widest(&n, &r, gamma, &g[..len * 100], d))
        );
    }

    /// The attention's row softmax and its input gradient against burn's softmax on flex
    /// through autodiff: rows of 37 (not a whole number of the 16 lanes) and of 128 (the
    /// attention's), a padded key and a row of padded keys only (f32::MIN, as the written-out
    /// mask writes, against the kernel's own masking); a NaN makes its row NaN and leaves the
    /// others.
    #[test]
    fn the_attention_softmax_and_its_gradient_match_burns() {
        for (rows, len) in [(5, 37), (600, 128)] {
            let n = rows * len;
            let mut rng = crate::rng::SplitMix64::new(len as u64);
            let xs: Vec<f32> = (0..n).map(|_| (rng.unit() as f32 - 0.5) * 20.0).collect();
            let upstream: Vec<f32> = (0..n).map(|_| rng.unit() as f32 - 0.5).collect();
            // Key 3 is padding in every row; the kernel masks it, burn gets f32::MIN.
            let mut real = vec![1.0f32; len];
            real[3] = 0.0;
            let mut masked = xs.clone();
            masked.iter_mut().skip(3).step_by(len).for_each(|x| *x = f32::MIN);
            let (burns, burn_grad) = value_and_gradient(&masked, [rows, len], &upstream, |x| {
                burn::tensor::activation::softmax(x, 1)
            });
            let mut ours = xs.clone();
            attention::softmax_rows_widest(&mut ours, len, &real);
            let mut our_grad = upstream.clone();
            attention::softmax_gradient_rows_widest(&ours, &mut our_grad, len, &real);
            assert_close(&ours, &burns, 1e-6, &format!("{rows}×{len} probabilities"));
            assert_close(&our_grad, &burn_grad, 1e-6, &format!("{rows}×{len} gradient"));
            assert!(
                ours.iter().skip(3).step_by(len).all(|&p| p == 0.0),
                "a padded key gets nothing"
            );
            assert!(
                our_grad.iter().skip(3).step_by(len).all(|&g| g == 0.0),
                "nor a gradient"
            );
        }
        let mut uniform = vec![0.5f32, -3.0, 2.0];
        attention::softmax_rows_widest(&mut uniform, 3, &[0.0; 3]);
        assert!(
            uniform.iter().all(|&p| (p - 1.0 / 3.0).abs() < 1e-7),
            "all keys padded: uniform, {uniform:?}"
        );
        let mut rows = vec![1.0f32, f32::NAN, 2.0, 0.0, 1.0, 2.0];
        attention::softmax_rows_widest(&mut rows, 3, &[1.0; 3]);
        assert!(rows[..3].iter().all(|v| v.is_nan()), "{rows:?}");
        assert!(rows[3..].iter().all(|v| v.is_finite()) && (rows[3..].iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }

    /// `op(x)` and x's gradient for Σ op(x)·upstream, on flex through autodiff.
    fn value_and_gradient<const D: usize>(
        xs: &[f32],
        shape: [usize; D],
        upstream: &[f32],
        op: impl Fn(Tensor<D>) -> Tensor<D>,
    ) -> (Vec<f32>, Vec<f32>) {
        let device = Device::flex().autodiff();
        let x = Tensor::<D>::from_data(TensorData::new(xs.to_vec(), shape), &device).require_grad();
        let y = op(x.clone());
        let weights = Tensor::<D>::from_data(TensorData::new(upstream.to_vec(), shape), &device);
        let grads = (y.clone() * weights).sum().backward();
        let grad = x.grad(&grads).expect("a gradient for x");
        let values = |t: Tensor<D>| t.into_data().try_to_vec::<f32>().expect("f32");
        (values(y.inner()), values(grad))
    }

    fn random(shape: [usize; 3], seed: u64, device: &Device) -> Tensor<3> {
        let mut rng = crate::rng::SplitMix64::new(seed);
        let n = shape.iter().product();
        let values: Vec<f32> = (0..n).map(|_| rng.unit() as f32 * 2.0 - 1.0).collect();
        Tensor::from_data(TensorData::new(values, shape), device)
    }

    /// Asserts `ours` is within `tolerance`·(1 + |burn's|) of `burns`, value by value.
    fn assert_close(ours: &[f32], burns: &[f32], tolerance: f32, what: &str) {
        assert_eq!(ours.len(), burns.len(), "{what}: lengths");
        for (i, (x, y)) in ours.iter().zip(burns).enumerate() {
            assert!(
                (x - y).abs() <= tolerance * (1.0 + y.abs()),
                "{what} {i}: {x} against burn's {y}"
            );
        }
    }

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().expect("f32")
    }

    /// A layer's output on x and, for Σ output·upstream, the gradients of x and of each
    /// parameter (`None` for a constant).
    struct LayerRun {
        output: Vec<f32>,
        input: Vec<f32>,
        parameters: Vec<Option<Vec<f32>>>,
    }

    /// A parameter's gradient, read from the backward pass's gradients.
    type ParameterGradient<'a> = &'a dyn Fn(&burn::tensor::Gradients) -> Option<Vec<f32>>;

    fn run_layer(x: &Tensor<3>, output: Tensor<3>, upstream: &Tensor<3>, parameters: &[ParameterGradient]) -> LayerRun {
        let grads = (output.clone() * upstream.clone()).sum().backward();
        LayerRun {
            output: values(output.inner()),
            input: values(x.grad(&grads).expect("x's gradient")),
            parameters: parameters.iter().map(|gradient| gradient(&grads)).collect(),
        }
    }

    /// Asserts two runs agree: outputs, input gradients and the gradients of the parameters
    /// named `names` (present in both or in neither).
    fn assert_runs_agree(ours: &LayerRun, burns: &LayerRun, names: &[&str], tolerance: f32, case: &str) {
        assert_close(&ours.output, &burns.output, tolerance, &format!("output, {case}"));
        assert_close(&ours.input, &burns.input, tolerance, &format!("input gradient, {case}"));
        for ((name, a), b) in names.iter().zip(&ours.parameters).zip(&burns.parameters) {
            match (a, b) {
                (Some(a), Some(b)) => assert_close(a, b, tolerance, &format!("{name}'s gradient, {case}")),
                (None, None) => {}
                _ => panic!("{name}: a gradient on one side only, {case}"),
            }
        }
    }

    /// Runs a fused layer and burn's, first with `trained` parameters, then with `constant`
    /// ones (IG's case), and asserts that they agree, that the fused operation ran (`calls`
    /// counts it), and that only trained parameters get gradients. Burn's trained run.
    fn assert_fused_layer_agrees<L>(
        (trained, constant): (&L, &L),
        run: impl Fn(&L, bool) -> LayerRun,
        calls: impl Fn() -> usize,
        names: &[&str],
        tolerance: f32,
    ) -> LayerRun {
        let before = calls();
        let (ours, burns) = (run(trained, true), run(trained, false));
        assert_eq!(calls(), before + 1, "the fused operation did not run");
        assert!(
            ours.parameters.iter().all(Option::is_some),
            "trained parameters get gradients"
        );
        assert_runs_agree(&ours, &burns, names, tolerance, "trained");
        let (ours, constant_burns) = (run(constant, true), run(constant, false));
        assert!(ours.parameters.iter().all(Option::is_none), "constants get no gradient");
        assert_runs_agree(&ours, &constant_burns, names, tolerance, "constant parameters");
        burns
    }

    /// The fused linear operation against burn's `Linear` on flex through autodiff, for a 3-D
    /// input: the output, and the gradients of the input, the weight and the bias (trained);
    /// with the layer's parameters as constants (IG's case), the input's; with the weight
    /// stored transposed (a strided view, as a converted checkpoint can hold it), the same.
    #[test]
    fn the_fused_linear_operation_and_its_gradients_match_burns() {
        use burn::module::{Module, Param};
        use burn::nn::LinearConfig;
        let device = Device::flex().autodiff();
        let trained = LinearConfig::new(24, 40).init(&device);
        let stored_transposed = Linear {
            weight: Param::from_tensor(
                Tensor::<2>::from_data(trained.weight.val().transpose().into_data(), &device).transpose(),
            ),
            bias: trained.bias.clone(),
        };
        let upstream = random([3, 7, 40], 2, &device).inner();
        let x = random([3, 7, 24], 1, &device).require_grad();
        let run = |layer: &Linear, fused: bool| {
            let y = if fused {
                linear(layer, x.clone())
            } else {
                layer.forward(x.clone())
            };
            let weight = |grads: &burn::tensor::Gradients| layer.weight.val().grad(grads).map(values);
            let bias = |grads: &burn::tensor::Gradients| layer.bias.as_ref()?.val().grad(grads).map(values);
            run_layer(&x, y, &upstream, &[&weight, &bias])
        };
        let names = ["weight", "bias"];
        // The products are the same gemm calls as burn's, bit for bit: the count shows that
        // the fused operation ran (once: burn's own `Linear` is not counted).
        let calls = || FUSED_LINEAR_CALLS.with(|calls| calls.get());
        assert_fused_layer_agrees((&trained, &trained.valid()), run, calls, &names, 1e-5);
        let (ours, burns) = (run(&stored_transposed, true), run(&trained, false));
        assert_runs_agree(&ours, &burns, &names, 1e-5, "transposed weight");
    }

    /// A layer norm of `width` with γ and β away from 1 and 0, so that their part in each
    /// gradient shows.
    fn test_layer_norm(width: usize, epsilon: f64, device: &Device) -> LayerNorm {
        use burn::module::Param;
        use burn::nn::LayerNormConfig;
        let mut layer = LayerNormConfig::new(width).with_epsilon(epsilon).init(device);
        let parameter = |seed, offset: f32| {
            let values = random([1, 1, width], seed, device).reshape([width]).add_scalar(offset);
            Param::from_tensor(Tensor::<1>::from_data(values.into_data(), device))
        };
        layer.gamma = parameter(5, 1.0);
        layer.beta = Some(parameter(6, 0.0));
        layer
    }

    /// The fused layer norm against burn's `LayerNorm` on flex through autodiff: the output
    /// and the gradients of the input, γ and β (trained); with γ and β as constants (IG's
    /// case), the input's; rows spread over several units, one of them constant (variance 0);
    /// without autodiff, the same values.
    #[test]
    fn the_fused_layer_norm_and_its_gradients_match_burns() {
        use burn::module::Module;
        let device = Device::flex().autodiff();
        let (shape, epsilon) = ([3, 37, 50], 1e-12);
        let layer = test_layer_norm(50, epsilon, &device);
        let mut xs = values(random(shape, 7, &device).mul_scalar(3.0).add_scalar(2.0));
        xs[50..100].fill(0.25);
        let x = Tensor::<3>::from_data(TensorData::new(xs, shape), &device).require_grad();
        let upstream = random(shape, 8, &device);
        let run = |layer: &LayerNorm, fused: bool| {
            let y = if fused {
                layer_norm(layer, epsilon, x.clone())
            } else {
                layer.forward(x.clone())
            };
            let gamma = |grads: &burn::tensor::Gradients| layer.gamma.val().grad(grads).map(values);
            let beta = |grads: &burn::tensor::Gradients| layer.beta.as_ref()?.val().grad(grads).map(values);
            run_layer(&x, y, &upstream, &[&gamma, &beta])
        };
        let names = ["γ", "β"];
        let calls = || FUSED_LAYER_NORM_CALLS.with(|calls| calls.get());
        let constant = layer.valid().to_device(&device);
        let burns = assert_fused_layer_agrees((&layer, &constant), run, calls, &names, 2e-5);

        let plain = layer.valid();
        let ours = layer_norm(&plain, epsilon, x.clone().inner());
        assert_close(&values(ours), &burns.output, 2e-5, "output without autodiff");
    }

    /// Layer norm of a residual sum, fused, against burn's sum and `LayerNorm` on flex: the
    /// output and the gradients of x, the residual, γ and β, with both inputs tracked, with
    /// only x (the residual gets none), with a residual that is a strided view (the [CLS]-only
    /// last layer narrows its input), and without autodiff.
    #[test]
    fn the_fused_residual_layer_norm_matches_burns_sum_and_layer_norm() {
        use burn::module::Module;
        let device = Device::flex().autodiff();
        let (shape, epsilon) = ([3, 37, 50], 1e-12);
        let layer = test_layer_norm(50, epsilon, &device);
        let upstream = random([3, 1, 50], 8, &device).repeat_dim(1, 37);
        let calls = || FUSED_LAYER_NORM_CALLS.with(|calls| calls.get());
        // The residual: a whole tensor, or every other row of a longer one.
        let whole = random(shape, 9, &device).mul_scalar(2.0);
        let strided = random([3, 74, 50], 10, &device).reshape([3, 37, 100]).narrow(2, 0, 50);
        for (residual, residual_tracked) in [(whole.clone(), true), (whole, false), (strided, true)] {
            let x = random(shape, 7, &device).mul_scalar(3.0).add_scalar(2.0).require_grad();
            let residual = if residual_tracked {
                residual.require_grad()
            } else {
                residual
            };
            let run = |fused: bool| {
                let before = calls();
                let y = if fused {
                    add_layer_norm(&layer, epsilon, x.clone(), residual.clone())
                } else {
                    layer.forward(x.clone() + residual.clone())
                };
                assert_eq!(
                    calls(),
                    before + usize::from(fused),
                    "the fused operation runs when asked"
                );
                let grads = (y.clone() * upstream.clone()).sum().backward();
                let gradient = |t: Tensor<1>| t.grad(&grads).map(values);
                (
                    values(y.inner()),
                    [x.grad(&grads).map(values), residual.grad(&grads).map(values)],
                    [
                        gradient(layer.gamma.val()),
                        gradient(layer.beta.as_ref().expect("β").val()),
                    ],
                )
            };
            let (ours, burns) = (run(true), run(false));
            let case = format!("residual tracked: {residual_tracked}");
            assert_close(&ours.0, &burns.0, 2e-5, &format!("output, {case}"));
            assert_eq!(ours.1[1].is_some(), residual_tracked, "the residual's gradient, {case}");
            for (name, (a, b)) in ["x", "residual", "γ", "β"]
                .iter()
                .zip(ours.1.iter().chain(&ours.2).zip(burns.1.iter().chain(&burns.2)))
            {
                match (a, b) {
                    (Some(a), Some(b)) => assert_close(a, b, 2e-5, &format!("{name}'s gradient, {case}")),
                    (None, None) => {}
                    _ => panic!("{name}: a gradient on one side only, {case}"),
                }
            }
            let plain = layer.valid();
            let ours = add_layer_norm(&plain, epsilon, x.clone().inner(), residual.clone().inner());
            assert_close(
                &values(ours),
                &burns.0,
                2e-5,
                &format!("output without autodiff, {case}"),
            );
        }
    }

    /// The fused attention against the same attention in burn's operations, on flex: the
    /// context, and the gradients of q, k and v, with texts fully real, partly padded and
    /// entirely padded (uniform probabilities, no gradient through the scores), with and
    /// without a dropout mask, with autodiff and without, for every position's queries and for
    /// the first ones only; and enough (text, head) units for several threads.
    #[test]
    fn the_fused_attention_and_its_gradients_match_burns_operations() {
        let close = |a: &[f32], b: &[f32], what: &str| assert_close(a, b, 2e-5, what);
        let calls = || FUSED_ATTENTION_CALLS.with(|calls| calls.get());
        for (batch, queries, seq, heads, head) in [
            (3, 7, 7, 3, 4),
            (4, 33, 33, 4, 8),
            (2, 5, 5, 1, 6),
            (4, 1, 33, 4, 8),
            (3, 2, 7, 3, 4),
        ] {
            let hidden = heads * head;
            let device = Device::flex().autodiff();
            let lengths: Vec<usize> = (0..batch).map(|i| [seq, seq - 3, 0, 1][i % 4]).collect();
            let real: Vec<bool> = lengths.iter().flat_map(|&n| (0..seq).map(move |j| j < n)).collect();
            let real = Tensor::<2, Bool>::from_data(TensorData::new(real, [batch, seq]), &device);
            let mut rng = crate::rng::SplitMix64::new(7);
            let mask: Vec<f32> = (0..batch * heads * queries * seq)
                .map(|_| if rng.unit() < 0.8 { 1.25 } else { 0.0 })
                .collect();
            let mask = Tensor::<4>::from_data(TensorData::new(mask, [batch, heads, queries, seq]), &device);
            let upstream = random([batch, queries, hidden], 4, &device);
            let shapes = [queries, seq, seq].map(|rows| [batch, rows, hidden]);
            let mut written_out_context = Vec::new();
            for dropout in [None, Some(mask)] {
                let inputs = [1, 2, 3].map(|seed| random(shapes[seed - 1], seed as u64, &device).require_grad());
                let run = |fused: bool| {
                    let [q, k, v] = inputs.clone();
                    let op = if fused { attention } else { attention_written_out };
                    let context = op(q, k, v, heads, Some(&real), dropout.clone());
                    let grads = (context.clone() * upstream.clone()).sum().backward();
                    let grads = inputs.clone().map(|x| values(x.grad(&grads).expect("a gradient")));
                    (values(context.inner()), grads)
                };
                let before = calls();
                let (ours, burns) = (run(true), run(false));
                assert_eq!(calls(), before + 1, "the fused attention did not run");
                let what = format!("{batch}×{queries}×{seq}, {heads} heads, dropout {}", dropout.is_some());
                if dropout.is_none() {
                    written_out_context = burns.0.clone();
                }
                close(&ours.0, &burns.0, &format!("context, {what}"));
                for (name, (a, b)) in ["q", "k", "v"].iter().zip(ours.1.iter().zip(&burns.1)) {
                    close(a, b, &format!("{name}'s gradient, {what}"));
                }
                if lengths[..].contains(&0) {
                    // An entirely padded text attends uniformly: its context rows are v's mean.
                    let text = lengths.iter().position(|&n| n == 0).expect("a padded text");
                    let v = values(inputs[2].clone().inner());
                    for (i, &c) in ours.0[text * queries * hidden..][..hidden].iter().enumerate() {
                        let mean = (0..seq).map(|j| v[(text * seq + j) * hidden + i]).sum::<f32>() / seq as f32;
                        if dropout.is_none() {
                            assert!((c - mean).abs() < 1e-5, "uniform attention: {c} against {mean}");
                        }
                    }
                }
            }
            // Without autodiff (evaluation and the forward benchmark), against the written-out
            // form with autodiff: burn's own fused attention, which the written-out form uses
            // without autodiff, gives an entirely padded text zeros instead of v's mean.
            let [q, k, v] = [1, 2, 3].map(|seed| random(shapes[seed - 1], seed as u64, &device).inner());
            let before = calls();
            let ours = attention(q, k, v, heads, Some(&real.clone().inner()), None);
            assert_eq!(calls(), before + 1, "the fused attention did not run");
            close(&values(ours), &written_out_context, "context without autodiff");
        }
    }

    /// AdamW's first step has a closed form: with both moments 0 the corrected moments are g
    /// and g², so the update is lr·g/(|g| + ε) on top of the decay, g first scaled to the
    /// clipping norm when its norm is above it. The fused step gives it, across several
    /// units of work; a tensor that shares the parameter's buffer keeps its values; a second
    /// step moves on from the moments the first returned.
    #[test]
    fn the_fused_adamw_step_matches_its_closed_form() {
        let device = Device::flex();
        let n = (1 << 16) + 5;
        let param: Vec<f32> = (0..n).map(|i| ((i % 13) as f32 - 6.0) * 0.1).collect();
        // ‖g‖ = 3·√n·0.01…: well above the clipping norm.
        let grad: Vec<f32> = (0..n)
            .map(|i| if i % 2 == 0 { 0.03 } else { -0.01 * (i % 5) as f32 })
            .collect();
        let norm = grad.iter().map(|g| (g * g) as f64).sum::<f64>().sqrt();
        let settings = AdamWStep {
            lr: 1e-3,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-5,
            weight_decay: 0.01,
            time: 1,
            clip_norm: Some(1.0),
        };
        assert!(norm > 2.0, "the test's gradient must be clipped: {norm}");
        let tensor = |v: &[f32]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [n]), &device);
        let kept = tensor(&param);
        let calls = || FUSED_ADAMW_CALLS.with(|calls| calls.get());
        let before = calls();
        assert!(adamw_fuses(&kept, &tensor(&grad)));
        let [stepped, m, v] = adamw_step(settings, kept.clone(), tensor(&grad), None);
        assert_eq!(calls(), before + 1, "the fused step did not run");
        assert_eq!(values(kept), param, "a shared buffer was written");
        let clip = (1.0 / norm) as f32;
        let expected: Vec<f32> = param
            .iter()
            .zip(&grad)
            .map(|(&p, &g)| {
                let g = g * clip;
                p * (1.0 - 1e-5) - 1e-3 * g / (g.abs() + 1e-5)
            })
            .collect();
        assert_close(&values(stepped), &expected, 1e-5, "the first step");
        let m = values(m);
        assert_close(&m, &grad.iter().map(|g| 0.1 * g * clip).collect::<Vec<_>>(), 1e-5, "m");
        // The second step, without clipping and decay, from the first step's moments: one
        // element worked by hand.
        let second = AdamWStep {
            time: 2,
            clip_norm: None,
            weight_decay: 0.0,
            ..settings
        };
        let v = values(v);
        let [p2, _, _] = adamw_step(second, tensor(&param), tensor(&grad), Some([tensor(&m), tensor(&v)]));
        let (g, m1, v1) = (grad[0], m[0], v[0]);
        let (m2, v2) = (0.9 * m1 + 0.1 * g, 0.999 * v1 + 0.001 * g * g);
        let delta = (m2 / (1.0 - 0.81)) / ((v2 / (1.0 - 0.998001)).sqrt() + 1e-5);
        let p2 = values(p2);
        assert!(
            (p2[0] - (param[0] - 1e-3 * delta)).abs() < 1e-6,
            "{} against {}",
            p2[0],
            param[0] - 1e-3 * delta
        );
    }

    /// A destination gemm is not told to read may hold anything: here NaN. With nothing to sum
    /// it is still written.
    #[test]
    fn a_fresh_product_never_reads_its_destination() {
        let (rows, d_in, d_out) = (33, 20, 17);
        let lhs: Vec<f32> = (0..rows * d_in).map(|i| (i % 11) as f32 - 5.0).collect();
        let rhs: Vec<f32> = (0..d_in * d_out).map(|i| (i % 7) as f32 * 0.5).collect();
        let poisoned = vec![f32::NAN; rows * d_out];
        let out = product_into(
            poisoned,
            (rows, d_in, d_out),
            MatrixView::rows(&lhs, d_in, false),
            MatrixView::rows(&rhs, d_out, false),
            None,
        );
        for r in 0..rows {
            for c in 0..d_out {
                let want: f32 = (0..d_in).map(|k| lhs[r * d_in + k] * rhs[k * d_out + c]).sum();
                assert!(
                    (out[r * d_out + c] - want).abs() < 1e-3,
                    "({r}, {c}): {} not {want}",
                    out[r * d_out + c]
                );
            }
        }
        // An empty inner dimension sums nothing: zeros, or the bias rows.
        let none = MatrixView::rows(&[], 0, false);
        let zeros = product_into(vec![f32::NAN; 12], (3, 0, 4), none, none, None);
        assert_eq!(zeros, vec![0.0; 12]);
        let bias = [1.0, 2.0, 3.0, 4.0];
        let rows = product_into(vec![f32::NAN; 12], (3, 0, 4), none, none, Some(&bias));
        assert_eq!(rows, bias.repeat(3));
    }

    /// Bias rows filled on rayon's threads (chunks of 2¹⁵ values, here not a whole number of
    /// them) are the bias repeated, every row written.
    #[test]
    fn bias_rows_are_filled_whole_on_any_number_of_threads() {
        let bias: Vec<f32> = (0..37).map(|i| i as f32 - 18.5).collect();
        for (rows, parallel) in [(5000, true), (5000, false), (1, true), (0, true)] {
            let mut out = vec![MaybeUninit::new(f32::NAN); rows * bias.len()];
            fill_rows(&mut out, &bias, parallel);
            // SAFETY: initialised above (and overwritten by fill_rows).
            let out: Vec<f32> = out.iter().map(|v| unsafe { v.assume_init() }).collect();
            assert_eq!(out, bias.repeat(rows), "{rows} rows, parallel {parallel}");
        }
    }

    fn grid() -> Vec<f32> {
        // −12 to 12, plus the extremes where GELU saturates.
        let mut xs: Vec<f32> = (0..=48_000).map(|i| -12.0 + i as f32 / 2000.0).collect();
        xs.extend([-100.0, -30.0, 30.0, 100.0, f32::MIN_POSITIVE, -0.0]);
        xs
    }

    /// Forward and backward against burn's GELU (libm's erff) on the flex device, through
    /// autodiff: values agree to 3e-7 and input gradients to 1e-6 (relative to max(1, |x|)), and
    /// large tensors (split between threads) give the same values as small ones.
    #[test]
    fn the_fused_gelu_and_its_gradient_match_burns() {
        let device = Device::flex();
        let xs = grid();
        let n = xs.len();
        let upstream: Vec<f32> = (0..n).map(|i| 0.5 + (i % 7) as f32 * 0.25).collect();
        let run = |fused: bool| {
            value_and_gradient(&xs, [n], &upstream, |x| {
                if fused {
                    gelu(x)
                } else {
                    burn::tensor::activation::gelu(x)
                }
            })
        };
        let (ours, our_grad) = run(true);
        let (burns, burn_grad) = run(false);
        for i in 0..n {
            let tolerance = 3e-7 * xs[i].abs().max(1.0);
            assert!(
                (ours[i] - burns[i]).abs() <= tolerance,
                "GELU({}) = {} against burn's {}",
                xs[i],
                ours[i],
                burns[i]
            );
            let tolerance = 1e-6 * xs[i].abs().max(1.0) * upstream[i];
            assert!(
                (our_grad[i] - burn_grad[i]).abs() <= tolerance,
                "GELU′({}) = {} against burn's {}",
                xs[i],
                our_grad[i],
                burn_grad[i]
            );
        }
        assert_ne!(ours, burns, "the same bits as burn's: did the fused kernel run?");
        // Without autodiff, the same values.
        let plain = gelu(Tensor::<1>::from_data(TensorData::new(xs.clone(), [n]), &device));
        assert_eq!(plain.into_data().try_to_vec::<f32>().expect("f32"), ours);
        let nan = gelu(Tensor::<1>::from_data([f32::NAN, 1.0], &device));
        let nan = nan.into_data().try_to_vec::<f32>().expect("f32");
        assert!(nan[0].is_nan() && nan[1].is_finite(), "{nan:?}");
    }
}
