//! Layer normalisation's backward pass on flex, and the forward pass that keeps what it needs.
//!
//! burn-flex normalises in one fused pass, but burn's autodiff has no layer norm of its own:
//! under autodiff (IG, training) it runs as ten operations (two means, subtract, square, add,
//! square root, divide, scale, shift), each a single-threaded pass with its own backward
//! step. Here the forward pass is one pass per row that also keeps the normalised values
//! n = (x − mean)·r and r = 1/√(var + ε); the input's gradient is r·(g − mean(g) − n·mean(g·n))
//! with g = grad·γ, and the parameters' are Σ grad·n and Σ grad over the rows.

use super::parallel::{Shared, for_each_unit};
use super::simd::{lane_dot, lane_sum, widest_vectors};

/// Rows per unit of work on rayon's threads.
const ROWS_PER_UNIT: usize = 32;

/// `rows` rows of `width` values cut into units of [`ROWS_PER_UNIT`]: (unit count, the row
/// range of a unit).
fn units(rows: usize) -> (usize, impl Fn(usize) -> std::ops::Range<usize> + Sync + Send) {
    let count = rows.div_ceil(ROWS_PER_UNIT);
    (count, move |unit: usize| {
        unit * ROWS_PER_UNIT..((unit + 1) * ROWS_PER_UNIT).min(rows)
    })
}

/// y = n·γ + β, the normalised values n and each row's r, for the rows of `gamma.len()` of
/// `x` (plus `residual`, of x's length, when there is one).
pub(super) fn forward(
    x: &[f32],
    residual: Option<&[f32]>,
    gamma: &[f32],
    beta: &[f32],
    epsilon: f32,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let width = gamma.len();
    let rows = x.len() / width;
    assert_eq!(rows * width, x.len(), "whole rows of {width}");
    assert!(residual.is_none_or(|r| r.len() == x.len()), "a residual of x's length");
    let (mut y, mut n, mut r) = (
        Vec::with_capacity(x.len()),
        Vec::with_capacity(x.len()),
        Vec::with_capacity(rows),
    );
    let (y_out, n_out, r_out) = (Shared(y.as_mut_ptr()), Shared(n.as_mut_ptr()), Shared(r.as_mut_ptr()));
    let (count, range) = units(rows);
    for_each_unit(count, |unit| {
        let rows = range(unit);
        let values = rows.start * width..rows.end * width;
        // SAFETY: each unit writes only its own rows of the three outputs, which have room
        // for all of them.
        let (y, n, r) = unsafe {
            (
                y_out.zeroed(values.clone()),
                n_out.zeroed(values.clone()),
                r_out.zeroed(rows),
            )
        };
        let residual = residual.map(|residual| &residual[values.clone()]);
        normalise_rows_widest((&x[values], residual), gamma, beta, epsilon, y, n, r);
    });
    // SAFETY: the units cover every row, and each zeroed its rows before writing them.
    unsafe {
        y.set_len(x.len());
        n.set_len(x.len());
        r.set_len(rows);
    }
    (y, n, r)
}

/// The input's gradient from the kept `normalised` values and `rstd`, γ and the output's `grad`.
pub(super) fn input_backward(normalised: &[f32], rstd: &[f32], gamma: &[f32], grad: &[f32]) -> Vec<f32> {
    let width = gamma.len();
    assert_eq!(rstd.len() * width, normalised.len(), "whole rows of {width}");
    let mut dx = Vec::with_capacity(normalised.len());
    let dx_out = Shared(dx.as_mut_ptr());
    let (count, range) = units(rstd.len());
    for_each_unit(count, |unit| {
        let rows = range(unit);
        let values = rows.start * width..rows.end * width;
        // SAFETY: each unit writes only its own rows, which the buffer has room for.
        let dx = unsafe { dx_out.zeroed(values.clone()) };
        input_gradient_rows_widest(&normalised[values.clone()], &rstd[rows], gamma, &grad[values], dx);
    });
    // SAFETY: the units cover every row, and each zeroed its rows before writing them.
    unsafe { dx.set_len(normalised.len()) };
    dx
}

/// γ's and β's gradients: Σ grad·n and Σ grad over the rows. Each unit sums its rows, and the
/// units' sums are added in order: the same result on any number of threads.
pub(super) fn parameter_backward(normalised: &[f32], grad: &[f32], width: usize) -> (Vec<f32>, Vec<f32>) {
    let rows = normalised.len() / width;
    let (count, range) = units(rows);
    let mut partial = vec![0f32; count * 2 * width];
    let out = Shared(partial.as_mut_ptr());
    for_each_unit(count, |unit| {
        let values = {
            let rows = range(unit);
            rows.start * width..rows.end * width
        };
        // SAFETY: each unit writes only its own 2·width partial sums.
        let sums = unsafe { out.slice(unit * 2 * width..(unit + 1) * 2 * width) };
        let (d_gamma, d_beta) = sums.split_at_mut(width);
        for (n, g) in normalised[values.clone()]
            .chunks_exact(width)
            .zip(grad[values].chunks_exact(width))
        {
            for (((dg, db), &n), &g) in d_gamma.iter_mut().zip(d_beta.iter_mut()).zip(n).zip(g) {
                *dg += g * n;
                *db += g;
            }
        }
    });
    let (mut d_gamma, mut d_beta) = (vec![0f32; width], vec![0f32; width]);
    for sums in partial.chunks_exact(2 * width) {
        let (g, b) = sums.split_at(width);
        d_gamma.iter_mut().zip(g).for_each(|(total, v)| *total += v);
        d_beta.iter_mut().zip(b).for_each(|(total, v)| *total += v);
    }
    (d_gamma, d_beta)
}

/// Each row of `input`, x (+ the residual): mean, variance (of the centred values, as burn
/// computes it), r, n, y.
#[inline(always)]
pub(super) fn normalise_rows(
    input: (&[f32], Option<&[f32]>),
    gamma: &[f32],
    beta: &[f32],
    epsilon: f32,
    y: &mut [f32],
    n: &mut [f32],
    r: &mut [f32],
) {
    let (x, residual) = input;
    let width = gamma.len();
    let rows = x
        .chunks_exact(width)
        .zip(y.chunks_exact_mut(width))
        .zip(n.chunks_exact_mut(width));
    for (row, (((x, y), n), r)) in rows.zip(r.iter_mut()).enumerate() {
        // n holds the row's values first.
        match residual {
            Some(residual) => {
                for ((n, &x), &s) in n.iter_mut().zip(x).zip(&residual[row * width..][..width]) {
                    *n = x + s;
                }
            }
            None => n.copy_from_slice(x),
        }
        let mean = lane_sum(n) / width as f32;
        for n in n.iter_mut() {
            *n -= mean;
        }
        let variance = lane_dot(n, n) / width as f32;
        *r = 1.0 / (variance + epsilon).sqrt();
        for (((y, n), &g), &b) in y.iter_mut().zip(n.iter_mut()).zip(gamma).zip(beta) {
            *n *= *r;
            *y = *n * g + b;
        }
    }
}

/// Each row: g = grad·γ, then r·(g − mean(g) − n·mean(g·n)).
#[inline(always)]
pub(super) fn input_gradient_rows(normalised: &[f32], rstd: &[f32], gamma: &[f32], grad: &[f32], dx: &mut [f32]) {
    let width = gamma.len();
    let rows = normalised
        .chunks_exact(width)
        .zip(grad.chunks_exact(width))
        .zip(dx.chunks_exact_mut(width));
    for (((n, grad), dx), &r) in rows.zip(rstd) {
        // dx holds g first.
        for ((d, &g), &gamma) in dx.iter_mut().zip(grad).zip(gamma) {
            *d = g * gamma;
        }
        let mean_g = lane_sum(dx) / width as f32;
        let mean_gn = lane_dot(dx, n) / width as f32;
        for (d, &n) in dx.iter_mut().zip(n) {
            *d = r * (*d - mean_g - n * mean_gn);
        }
    }
}

widest_vectors!(
    pub(super) normalise_rows_widest = normalise_rows(
        input: (&[f32], Option<&[f32]>),
        gamma: &[f32],
        beta: &[f32],
        epsilon: f32,
        y: &mut [f32],
        n: &mut [f32],
        r: &mut [f32]
    )
);
widest_vectors!(
    pub(super) input_gradient_rows_widest =
        input_gradient_rows(normalised: &[f32], rstd: &[f32], gamma: &[f32], grad: &[f32], dx: &mut [f32])
);
