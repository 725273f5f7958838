//! GELU, the exponential and the normal distribution behind it, and the wide-vector builds
//! of every vectorised kernel.

use super::*;
use crate::kernels::gelu::{
    FRAC_1_SQRT_2PI, cdf_and_density, exp_nonpositive, gelu_gradients, gelu_gradients_widest, gelu_values,
    gelu_values_widest,
};
use crate::kernels::parallel::Uninit;

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
