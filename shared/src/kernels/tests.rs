//! The fused kernels against burn's own operations, and the helpers the cases share.

use super::*;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::{Bool, Device, Tensor, TensorData};

mod adamw_kernel;
mod attention_kernel;
mod gelu_kernel;
mod layer_norm_kernel;
mod linear_kernel;

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

fn grid() -> Vec<f32> {
    // −12 to 12, plus the extremes where GELU saturates.
    let mut xs: Vec<f32> = (0..=48_000).map(|i| -12.0 + i as f32 / 2000.0).collect();
    xs.extend([-100.0, -30.0, 30.0, 100.0, f32::MIN_POSITIVE, -0.0]);
    xs
}
