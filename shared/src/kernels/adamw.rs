//! One AdamW step of one parameter in one pass, on rayon's threads.
//!
//! burn's `AdamW` with clipping by norm runs some twenty element-wise operations per parameter
//! (the norm's square, the clipped gradient, both moments, their corrections, the square
//! root, the quotient, the decay and the update), each a pass over the parameter on one
//! thread with a new buffer for its result: for BERT-base, a pass over 110 million values
//! each time. Here the norm is one parallel reduction and the rest one parallel pass that
//! updates the parameter and its moments where they are. The arithmetic is burn's, in the
//! same order and in f32, so the results agree to rounding (the norm's sum runs in another
//! order).

use super::parallel::{Shared, for_each_unit};
use super::simd::{lane_dot, widest_vectors};

/// The settings of one AdamW step, as burn's `AdamWConfig` and its clipping by norm name them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWStep {
    pub lr: f64,
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    pub weight_decay: f32,
    /// The steps taken with this one: 1 at the first.
    pub time: usize,
    /// A gradient whose L2 norm is above this is scaled down to it (per parameter).
    pub clip_norm: Option<f32>,
}

/// Values per unit of work.
const CHUNK: usize = 1 << 15;

/// Unit `unit`'s values of `n`.
fn chunk(unit: usize, n: usize) -> std::ops::Range<usize> {
    unit * CHUNK..((unit + 1) * CHUNK).min(n)
}

/// The factor burn's clipping by norm multiplies the gradient by: threshold / (‖g‖ +
/// f32::MIN_POSITIVE), at most 1. The squares are summed per chunk on rayon's threads and
/// the chunks' sums in order, so the result does not depend on the thread count.
pub(super) fn clip_factor(grad: &[f32], threshold: f32) -> f32 {
    let units = grad.len().div_ceil(CHUNK);
    let mut sums = vec![0f32; units];
    let out = Shared(sums.as_mut_ptr());
    for_each_unit(units, |unit| {
        let values = &grad[chunk(unit, grad.len())];
        // SAFETY: unit `unit` alone writes its sum.
        unsafe { out.slice(unit..unit + 1)[0] = sum_of_squares_widest(values) };
    });
    let norm = sums.iter().sum::<f32>().sqrt();
    (threshold / (norm + f32::MIN_POSITIVE)).min(1.0)
}

/// Σ x².
#[inline(always)]
fn sum_of_squares(x: &[f32]) -> f32 {
    lane_dot(x, x)
}

/// The per-step constants of burn's update, each rounded as burn rounds it.
#[derive(Clone, Copy)]
struct Constants {
    clip: f32,
    beta_1: f32,
    beta_2: f32,
    factor_1: f32,
    factor_2: f32,
    correction_1: f32,
    correction_2: f32,
    epsilon: f32,
    /// 1 − lr·weight decay, or `None` when that product is 0 (burn then skips the decay).
    decay: Option<f32>,
    lr: f32,
}

impl Constants {
    fn new(step: &AdamWStep, clip: f32) -> Self {
        let time = step.time as i32;
        let decay_rate = step.lr * step.weight_decay as f64;
        Constants {
            clip,
            beta_1: step.beta_1,
            beta_2: step.beta_2,
            factor_1: 1.0 - step.beta_1,
            factor_2: 1.0 - step.beta_2,
            correction_1: 1.0 - step.beta_1.powi(time),
            correction_2: 1.0 - step.beta_2.powi(time),
            epsilon: step.epsilon,
            decay: (decay_rate != 0.0).then_some((1.0 - decay_rate) as f32),
            lr: step.lr as f32,
        }
    }
}

/// The step for one chunk: the parameter and both moments updated in place from the
/// gradient, as burn's `AdamW::step` (with `AdaptiveMomentumW::transform`) computes them.
#[inline(always)]
fn update(c: Constants, param: &mut [f32], moment_1: &mut [f32], moment_2: &mut [f32], grad: &[f32]) {
    for (((p, m), v), &g) in param.iter_mut().zip(moment_1).zip(moment_2).zip(grad) {
        let g = g * c.clip;
        *m = *m * c.beta_1 + g * c.factor_1;
        *v = *v * c.beta_2 + g * g * c.factor_2;
        let delta = (*m / c.correction_1) / ((*v / c.correction_2).sqrt() + c.epsilon);
        let decayed = match c.decay {
            Some(decay) => *p * decay,
            None => *p,
        };
        *p = decayed - delta * c.lr;
    }
}

/// One step: `param`, `moment_1` and `moment_2` (all of the gradient's length; zeros before
/// the first step, which gives burn's first moments exactly) updated in place.
pub(super) fn step(step: &AdamWStep, param: &mut [f32], moment_1: &mut [f32], moment_2: &mut [f32], grad: &[f32]) {
    let n = grad.len();
    assert!(
        param.len() == n && moment_1.len() == n && moment_2.len() == n,
        "adamw: the parameter, its moments and its gradient differ in length"
    );
    let clip = step.clip_norm.map_or(1.0, |threshold| clip_factor(grad, threshold));
    let constants = Constants::new(step, clip);
    let [p, m, v] = [param, moment_1, moment_2].map(|b| Shared(b.as_mut_ptr()));
    for_each_unit(n.div_ceil(CHUNK), |unit| {
        let range = chunk(unit, n);
        // SAFETY: unit `unit` alone touches these elements of the three buffers, which hold
        // `n` values each (asserted) and outlive the loop.
        let (p, m, v) = unsafe { (p.slice(range.clone()), m.slice(range.clone()), v.slice(range.clone())) };
        update_widest(constants, p, m, v, &grad[range]);
    });
}

widest_vectors!(sum_of_squares_widest = sum_of_squares(x: &[f32]) -> f32);
widest_vectors!(update_widest = update(c: Constants, param: &mut [f32], moment_1: &mut [f32], moment_2: &mut [f32], grad: &[f32]));
