//! The public operations: each checks that its operands suit the fused kernel and that they
//! compute on flex, and routes them to the [`FusedKernels`] extension there and to burn's own
//! operations anywhere else.

use super::{AdamWStep, AttentionInput, FusedKernels};
use burn::backend::{DType, Dispatch, DispatchDevice};
use burn::nn::{LayerNorm, Linear};
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Device, Tensor};

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
pub(super) fn attention_written_out(
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
