//! The fused AdamW step against its closed form.

use super::*;
use crate::kernels::flex::FUSED_ADAMW_CALLS;

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
