//! The fused kernels on flex: each operation takes its operands' values, runs the kernel of
//! its module (`gelu`, `gemm`, `layer_norm`, `attention`, `adamw`) and wraps the result in a
//! new tensor. Operands the kernels do not take (another dtype or shape) go to burn's own
//! operation.

use super::gelu::{gelu_gradients_widest, gelu_values_widest};
use super::gemm::{MatrixView, linear_dims, product, with_last};
use super::parallel::computed;
use super::{AdamWStep, AttentionInput, FusedKernels, adamw, attention, layer_norm};
use burn::backend::ops::{ActivationOps, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{DType, Flex};
use burn::tensor::{Shape, TensorData};

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

/// The attention operation's inputs made contiguous, its dimensions and q's shape (the
/// context's). The public [`attention`](fn@super::attention) checks what the assertions
/// state before choosing this route.
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

#[cfg(test)]
thread_local! {
    /// Fused linear operations this thread ran on flex, for a test to see that they did.
    pub(super) static FUSED_LINEAR_CALLS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// Fused layer norms this thread ran on flex under autodiff, likewise.
    pub(super) static FUSED_LAYER_NORM_CALLS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// Fused attention forward passes this thread ran on flex, likewise.
    pub(super) static FUSED_ATTENTION_CALLS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// Fused AdamW steps this thread ran on flex, likewise.
    pub(super) static FUSED_ADAMW_CALLS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}
