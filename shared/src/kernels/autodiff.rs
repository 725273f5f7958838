//! The fused kernels under autodiff: each forward operation records one backward step that
//! calls the fused derivative, keeping only what that step reads.

use super::{AdamWStep, AttentionInput, FusedKernels};
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend};

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

/// The attention input's inner tensors, outside the autodiff graph.
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
