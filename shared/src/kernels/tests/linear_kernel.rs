//! The fused linear operation against burn's `Linear`, and the products and bias rows under
//! it.

use super::*;
use crate::kernels::flex::FUSED_LINEAR_CALLS;
use crate::kernels::gemm::{MatrixView, fill_rows, product_into};
use std::mem::MaybeUninit;

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
