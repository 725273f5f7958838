//! GELU and its derivative from one exponential each: Φ(x) = ½·erfc(−x/√2) by Abramowitz &
//! Stegun 7.1.26, whose only transcendental is e^(−x²/2), in a branch-free polynomial so that
//! the loops vectorise (burn-flex calls libm's scalar `erff` per element, and `erff` and `exp`
//! again backwards).

use super::parallel::Uninit;
use super::simd::widest_vectors;

/// GELU(x) for each x.
#[inline(always)]
pub(super) fn gelu_values(x: &[f32], out: &mut [Uninit]) {
    for (o, &x) in out.iter_mut().zip(x) {
        o.write(x * cdf_and_density(x).0);
    }
}

/// g·GELU′(x) for each x and g.
#[inline(always)]
pub(super) fn gelu_gradients(x: &[f32], g: &[f32], out: &mut [Uninit]) {
    for ((o, &x), &g) in out.iter_mut().zip(x).zip(g) {
        let (cdf, density) = cdf_and_density(x);
        o.write(g * (cdf + x * density));
    }
}

widest_vectors!(pub(super) gelu_values_widest = gelu_values(x: &[f32], out: &mut [Uninit]));
widest_vectors!(pub(super) gelu_gradients_widest = gelu_gradients(x: &[f32], g: &[f32], out: &mut [Uninit]));

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1/√(2π).
pub(super) const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

/// Φ(x) and φ(x), the standard normal distribution and density, from one exponential.
/// erfc(z) for z ≥ 0 by Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5e-7): t = 1/(1 + p·z),
/// erfc(z) = t·(a₁ + t·(a₂ + …))·e^(−z²); with z = |x|/√2, e^(−z²) = e^(−x²/2) = √(2π)·φ(x).
#[inline(always)]
pub(super) fn cdf_and_density(x: f32) -> (f32, f32) {
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
pub(super) fn exp_nonpositive(y: f32) -> f32 {
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
