//! Where along the straight path from baseline to input the gradient is sampled, and with
//! what weight: Captum's `approximation_methods`, reproduced so results agree with it.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// An integration rule for Integrated Gradients, named as in Captum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Method {
    #[default]
    #[serde(rename = "gausslegendre")]
    GaussLegendre,
    #[serde(rename = "riemann_left")]
    RiemannLeft,
    #[serde(rename = "riemann_right")]
    RiemannRight,
    #[serde(rename = "riemann_middle")]
    RiemannMiddle,
    #[serde(rename = "riemann_trapezoid")]
    RiemannTrapezoid,
    /// Gauss–Kronrod panels refined until the convergence delta and the rule's error estimate
    /// are within a tolerance (not Captum's: no fixed nodes; see `adaptive`).
    #[serde(rename = "adaptive")]
    Adaptive,
}

impl Method {
    pub const ALL: [Method; 6] = [
        Method::GaussLegendre,
        Method::RiemannLeft,
        Method::RiemannRight,
        Method::RiemannMiddle,
        Method::RiemannTrapezoid,
        Method::Adaptive,
    ];
}

/// Interpolation points `alphas` in [0, 1] and the weights (`step_sizes` in Captum) that
/// multiply the gradient at each point.
///
/// Riemann rules need `n >= 2`, as in Captum. Captum's trapezoid rule samples `n` evenly
/// spaced points including both ends but gives every interval the width `1/n`, so its weights
/// sum to `(n-1)/n`, not 1; it is reproduced as is, for parity.
pub fn nodes(method: Method, n: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    if n == 0 {
        return Err(Error::invalid("n-steps", "must be at least 1"));
    }
    if method == Method::Adaptive {
        return Err(Error::invalid(
            "method",
            "adaptive places its points as it goes: it has no fixed nodes",
        ));
    }
    if method != Method::GaussLegendre && n < 2 {
        return Err(Error::invalid("n-steps", format!("{method} needs at least 2 steps")));
    }
    let nf = n as f64;
    let linspace =
        |start: f64, end: f64| -> Vec<f64> { (0..n).map(|i| start + (end - start) * i as f64 / (nf - 1.0)).collect() };
    Ok(match method {
        Method::GaussLegendre => {
            let (x, w) = &*gauss_legendre_cached(n);
            (
                x.iter().map(|x| 0.5 * (1.0 + x)).collect(),
                w.iter().map(|w| 0.5 * w).collect(),
            )
        }
        Method::RiemannLeft => (linspace(0.0, 1.0 - 1.0 / nf), vec![1.0 / nf; n]),
        Method::RiemannRight => (linspace(1.0 / nf, 1.0), vec![1.0 / nf; n]),
        Method::RiemannMiddle => (linspace(0.5 / nf, 1.0 - 0.5 / nf), vec![1.0 / nf; n]),
        Method::RiemannTrapezoid => {
            let mut w = vec![1.0 / nf; n];
            w[0] /= 2.0;
            w[n - 1] /= 2.0;
            (linspace(0.0, 1.0), w)
        }
        Method::Adaptive => unreachable!("returned above"),
    })
}

/// Gauss-Legendre nodes and weights on [-1, 1].
type NodesAndWeights = (Vec<f64>, Vec<f64>);

/// [`gauss_legendre`], computed once per `n` in a process: the nodes cost O(n²) to find,
/// and IG asks for the same `n` for every text, so each explanation then costs O(n).
fn gauss_legendre_cached(n: usize) -> std::sync::Arc<NodesAndWeights> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<HashMap<usize, Arc<NodesAndWeights>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(hit) = cache.lock().ok().and_then(|c| c.get(&n).cloned()) {
        return hit;
    }
    let computed = Arc::new(gauss_legendre(n));
    if let Ok(mut c) = cache.lock() {
        c.insert(n, computed.clone());
    }
    computed
}

/// Gauss-Legendre nodes on [-1, 1] in ascending order (as numpy's `leggauss`) and weights,
/// by Newton's method on the Legendre recurrence.
///
/// All nodes iterate in lockstep, so the O(n) recurrence runs over a vector of nodes
/// (independent lanes) instead of one long dependent chain per node: the same arithmetic per
/// node as one at a time, several times faster (docs/design/ig-engine.md);
/// [`nodes`] then keeps them for the process, so each further explanation costs O(n).
pub fn gauss_legendre(n: usize) -> (Vec<f64>, Vec<f64>) {
    let half = n.div_ceil(2);
    let mut z: Vec<f64> = (0..half)
        .map(|i| (std::f64::consts::PI * (i as f64 + 0.75) / (n as f64 + 0.5)).cos())
        .collect();
    let mut converged = vec![false; half];
    for _ in 0..100 {
        let (p, dp) = legendre(n, &z);
        for i in 0..half {
            if converged[i] {
                continue;
            }
            let step = p[i] / dp[i];
            z[i] -= step;
            // Newton converges quadratically: once a step is below 1e-15 the node is exact
            // to rounding.
            if step.abs() < 1e-15 {
                converged[i] = true;
            }
        }
        if converged.iter().all(|&c| c) {
            break;
        }
    }
    let (_, derivative) = legendre(n, &z);
    let mut x = vec![0.0; n];
    let mut w = vec![0.0; n];
    for i in 0..half {
        let weight = 2.0 / ((1.0 - z[i] * z[i]) * derivative[i] * derivative[i]);
        x[i] = -z[i];
        x[n - 1 - i] = z[i];
        w[i] = weight;
        w[n - 1 - i] = weight;
    }
    if n % 2 == 1 {
        x[n / 2] = 0.0;
    }
    (x, w)
}

/// P_n(z) and P_n'(z) at every point of `z`.
fn legendre(n: usize, z: &[f64]) -> (Vec<f64>, Vec<f64>) {
    if n == 0 {
        return (vec![1.0; z.len()], vec![0.0; z.len()]);
    }
    let mut p0 = vec![1.0; z.len()];
    let mut p1 = z.to_vec();
    for k in 2..=n {
        let kf = k as f64;
        let (a, b) = (2.0 * kf - 1.0, kf - 1.0);
        for ((p0, p1), &z) in p0.iter_mut().zip(p1.iter_mut()).zip(z) {
            let p2 = (a * z * *p1 - b * *p0) / kf;
            *p0 = *p1;
            *p1 = p2;
        }
    }
    let dp = z
        .iter()
        .zip(p0.iter().zip(&p1))
        .map(|(&z, (&p0, &p1))| n as f64 * (z * p1 - p0) / (z * z - 1.0))
        .collect();
    (p1, dp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f64], b: &[f64], tol: f64) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < tol, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn gauss_legendre_matches_closed_forms() {
        let s = f64::sqrt;
        close(&gauss_legendre(1).0, &[0.0], 1e-15);
        close(&gauss_legendre(1).1, &[2.0], 1e-15);
        close(&gauss_legendre(2).0, &[-1.0 / s(3.0), 1.0 / s(3.0)], 1e-15);
        close(&gauss_legendre(2).1, &[1.0, 1.0], 1e-15);
        close(&gauss_legendre(3).0, &[-s(0.6), 0.0, s(0.6)], 1e-15);
        close(&gauss_legendre(3).1, &[5.0 / 9.0, 8.0 / 9.0, 5.0 / 9.0], 1e-15);
        let (a, b) = (s(3.0 / 7.0 - 2.0 / 7.0 * s(1.2)), s(3.0 / 7.0 + 2.0 / 7.0 * s(1.2)));
        close(&gauss_legendre(4).0, &[-b, -a, a, b], 1e-15);
        let (wa, wb) = ((18.0 + s(30.0)) / 36.0, (18.0 - s(30.0)) / 36.0);
        close(&gauss_legendre(4).1, &[wb, wa, wa, wb], 1e-15);
        let (a, b) = (s(5.0 - 2.0 * s(10.0 / 7.0)) / 3.0, s(5.0 + 2.0 * s(10.0 / 7.0)) / 3.0);
        close(&gauss_legendre(5).0, &[-b, -a, 0.0, a, b], 1e-15);
        let (w0, wa, wb) = (
            128.0 / 225.0,
            (322.0 + 13.0 * s(70.0)) / 900.0,
            (322.0 - 13.0 * s(70.0)) / 900.0,
        );
        close(&gauss_legendre(5).1, &[wb, wa, w0, wa, wb], 1e-15);
    }

    /// numpy.polynomial.legendre.leggauss(50): the first three nodes and weights.
    #[test]
    fn gauss_legendre_50_matches_numpy() {
        let (x, w) = gauss_legendre(50);
        close(
            &x[..3],
            &[-0.998866404420071, -0.9940319694320907, -0.9853540840480058],
            1e-14,
        );
        close(
            &w[..3],
            &[0.0029086225531579266, 0.006759799195744566, 0.010590548383651496],
            1e-13,
        );
        close(
            &x[47..],
            &[0.9853540840480058, 0.9940319694320907, 0.998866404420071],
            1e-14,
        );
    }

    #[test]
    fn weights_sum_to_one_and_integrate_polynomials_exactly() {
        for n in [1, 2, 3, 5, 20, 50, 128] {
            let (alphas, weights) = nodes(Method::GaussLegendre, n).unwrap();
            assert!((weights.iter().sum::<f64>() - 1.0).abs() < 1e-13, "n = {n}");
            // n-point Gauss-Legendre is exact for degree 2n - 1: ∫₀¹ t^(2n-1) dt = 1 / 2n.
            let degree = (2 * n - 1) as i32;
            let integral: f64 = alphas.iter().zip(&weights).map(|(a, w)| w * a.powi(degree)).sum();
            assert!((integral - 1.0 / (2 * n) as f64).abs() < 1e-12, "n = {n}: {integral}");
        }
        for method in [Method::RiemannLeft, Method::RiemannRight, Method::RiemannMiddle] {
            let (_, w) = nodes(method, 50).unwrap();
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-13);
        }
        let (_, w) = nodes(Method::RiemannTrapezoid, 50).unwrap();
        assert!(
            (w.iter().sum::<f64>() - 49.0 / 50.0).abs() < 1e-13,
            "Captum's trapezoid weights"
        );
    }

    #[test]
    fn many_nodes_stay_exact_and_are_computed_once() {
        for n in [1000, 10_000] {
            let (alphas, weights) = nodes(Method::GaussLegendre, n).unwrap();
            assert!((weights.iter().sum::<f64>() - 1.0).abs() < 1e-12, "n = {n}");
            // Exact for polynomials of degree up to 2n - 1; ∫₀¹ t^9 dt = 1/10.
            let integral: f64 = alphas.iter().zip(&weights).map(|(a, w)| w * a.powi(9)).sum();
            assert!((integral - 0.1).abs() < 1e-12, "n = {n}: {integral}");
            assert!(alphas.windows(2).all(|p| p[0] < p[1]), "ascending, distinct");
        }
        let first = gauss_legendre_cached(777);
        assert!(std::sync::Arc::ptr_eq(&first, &gauss_legendre_cached(777)));
    }

    #[test]
    fn riemann_points_are_captums() {
        close(
            &nodes(Method::RiemannLeft, 4).unwrap().0,
            &[0.0, 0.25, 0.5, 0.75],
            1e-15,
        );
        close(
            &nodes(Method::RiemannRight, 4).unwrap().0,
            &[0.25, 0.5, 0.75, 1.0],
            1e-15,
        );
        close(
            &nodes(Method::RiemannMiddle, 4).unwrap().0,
            &[0.125, 0.375, 0.625, 0.875],
            1e-15,
        );
        close(
            &nodes(Method::RiemannTrapezoid, 5).unwrap().0,
            &[0.0, 0.25, 0.5, 0.75, 1.0],
            1e-15,
        );
        assert!(nodes(Method::RiemannLeft, 1).is_err());
        assert!(nodes(Method::GaussLegendre, 0).is_err());
        assert_eq!("riemann_middle".parse::<Method>().unwrap(), Method::RiemannMiddle);
        assert!(
            "simpson"
                .parse::<Method>()
                .unwrap_err()
                .to_string()
                .contains("gausslegendre")
        );
    }
}
