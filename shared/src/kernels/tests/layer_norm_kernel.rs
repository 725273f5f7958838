//! The fused layer norm, alone and after a residual connection, against burn's `LayerNorm`.

use super::*;
use crate::kernels::flex::FUSED_LAYER_NORM_CALLS;

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
