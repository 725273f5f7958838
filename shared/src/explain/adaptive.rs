//! Adaptive quadrature for Integrated Gradients: Gauss–Kronrod (7/15 points, QUADPACK's
//! `qk15`) on panels of the path, the panel with the largest error estimate halved until the
//! attributions' convergence delta and the rule's own error estimate are both within the
//! tolerance, or the evaluations run out. A fixed rule spends the same number of gradients on
//! every text; most texts' paths are smooth and need one panel, a few have a sharp transition
//! and get their points there.
//!
//! The driver works on per-token vectors on the host: a panel's estimate is the attributions
//! it contributes (path ⊙ ∫ gradient over the panel, summed over the embedding), and
//! attributions add over panels. The caller evaluates the panels it asks for (on any backend).

/// Kronrod nodes on [-1, 1] (the non-negative half, largest first; the last is 0) and their
/// weights; the Gauss nodes are every other one from the second (`KRONROD_X[1]`, `[3]`, `[5]`,
/// `[7]` = 0) with [`GAUSS_W`]. From QUADPACK (Piessens et al., 1983).
const KRONROD_X: [f64; 8] = [
    0.991_455_371_120_812_6,
    0.949_107_912_342_758_5,
    0.864_864_423_359_769_1,
    0.741_531_185_599_394_4,
    0.586_087_235_467_691_1,
    0.405_845_151_377_397_2,
    0.207_784_955_007_898_5,
    0.0,
];
const KRONROD_W: [f64; 8] = [
    0.022_935_322_010_529_224,
    0.063_092_092_629_978_55,
    0.104_790_010_322_250_18,
    0.140_653_259_715_525_92,
    0.169_004_726_639_267_9,
    0.190_350_578_064_785_4,
    0.204_432_940_075_298_9,
    0.209_482_141_084_727_83,
];
const GAUSS_W: [f64; 4] = [
    0.129_484_966_168_869_7,
    0.279_705_391_489_276_7,
    0.381_830_050_505_118_9,
    0.417_959_183_673_469_4,
];

/// Gradient evaluations per panel.
pub const PANEL_POINTS: usize = 15;

/// The 15 points of a panel `[a, b]` in ascending order, with their Kronrod and Gauss weights
/// (the Gauss weight is 0 at a point that is Kronrod's only), scaled to the panel.
pub fn panel_rule(a: f64, b: f64) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (centre, half) = ((a + b) / 2.0, (b - a) / 2.0);
    let mut points = Vec::with_capacity(PANEL_POINTS);
    for i in 0..7 {
        points.push((
            -KRONROD_X[i],
            KRONROD_W[i],
            if i % 2 == 1 { GAUSS_W[i / 2] } else { 0.0 },
        ));
    }
    points.push((0.0, KRONROD_W[7], GAUSS_W[3]));
    for i in (0..7).rev() {
        points.push((
            KRONROD_X[i],
            KRONROD_W[i],
            if i % 2 == 1 { GAUSS_W[i / 2] } else { 0.0 },
        ));
    }
    (
        points.iter().map(|p| centre + half * p.0).collect(),
        points.iter().map(|p| half * p.1).collect(),
        points.iter().map(|p| half * p.2).collect(),
    )
}

/// One panel's estimate, per token: the 15-point Kronrod rule, its truncation error estimate,
/// and the rounding error of the f32 gradients it rests on (halving a panel cannot go below
/// that).
#[derive(Debug, Clone, PartialEq)]
pub struct PanelEstimate {
    pub kronrod: Vec<f64>,
    pub error: Vec<f64>,
    pub rounding: Vec<f64>,
}

impl PanelEstimate {
    /// From the integrand's values at the panel's 15 points (`values[point][token]`, points in
    /// [`panel_rule`]'s order) and the rule's weights. The error follows QUADPACK's `qk15`:
    /// |Kronrod − Gauss| is the 7-point rule's error, far above the 15-point rule's, so it is
    /// scaled as `resasc · min(1, (200 |K − G| / resasc)^1.5)` (resasc: the Kronrod integral
    /// of |f − its mean|); the rounding is 50 f32 epsilons of ∫|f| (QUADPACK's floor).
    pub fn from_values(values: &[Vec<f64>], kronrod_w: &[f64], gauss_w: &[f64]) -> Self {
        let tokens = values.first().map_or(0, Vec::len);
        let width: f64 = kronrod_w.iter().sum();
        let mut kronrod = vec![0.0; tokens];
        let mut error = vec![0.0; tokens];
        let mut rounding = vec![0.0; tokens];
        for t in 0..tokens {
            let k: f64 = values.iter().zip(kronrod_w).map(|(v, w)| w * v[t]).sum();
            let g: f64 = values.iter().zip(gauss_w).map(|(v, w)| w * v[t]).sum();
            let mean = if width > 0.0 { k / width } else { 0.0 };
            let resasc: f64 = values.iter().zip(kronrod_w).map(|(v, w)| w * (v[t] - mean).abs()).sum();
            let resabs: f64 = values.iter().zip(kronrod_w).map(|(v, w)| w * v[t].abs()).sum();
            let mut e = (k - g).abs();
            if resasc > 0.0 && e > 0.0 {
                e = resasc * (200.0 * e / resasc).powf(1.5).min(1.0);
            }
            kronrod[t] = k;
            error[t] = e;
            rounding[t] = 50.0 * f32::EPSILON as f64 * resabs;
        }
        Self {
            kronrod,
            error,
            rounding,
        }
    }
}

#[derive(Debug, Clone)]
struct Panel {
    a: f64,
    b: f64,
    kronrod: Vec<f64>,
    /// The estimated truncation error: its Euclidean norm over the tokens (what the direction
    /// of the attribution vector, and so a cosine, is sensitive to).
    error: f64,
    /// The rounding floor, the same norm.
    rounding: f64,
}

/// The state of one adaptive integration: ask [`Self::next`] for panels, evaluate them,
/// hand the estimates to [`Self::record`], until `next` says it is done: the convergence delta
/// and the truncation error within the tolerance, the budget spent, or every panel at its
/// rounding floor (the f32 gradients allow no better).
#[derive(Debug, Clone)]
pub struct AdaptiveIntegral {
    tolerance: f64,
    max_evaluations: usize,
    /// F(input) − F(baseline): what the attributions must add up to.
    target: f64,
    panels: Vec<Panel>,
    evaluations: usize,
}

impl AdaptiveIntegral {
    pub fn new(tolerance: f64, max_evaluations: usize, target: f64) -> Self {
        Self {
            tolerance,
            max_evaluations,
            target,
            panels: Vec::new(),
            evaluations: 0,
        }
    }

    /// The panels to evaluate next: all of [0, 1] first, then the two halves of the panel with
    /// the largest error; `None` when both the convergence delta and the error estimate are
    /// within the tolerance, or when halving again would pass the evaluation budget.
    pub fn next(&self) -> Option<Vec<(f64, f64)>> {
        if self.panels.is_empty() {
            return Some(vec![(0.0, 1.0)]);
        }
        if self.delta().abs() <= self.tolerance && self.truncation() <= self.tolerance {
            return None;
        }
        if self.evaluations + 2 * PANEL_POINTS > self.max_evaluations {
            return None;
        }
        // Only a panel whose error is above its rounding can be improved by halving it.
        let worst = self.worst()?;
        let p = &self.panels[worst];
        let mid = (p.a + p.b) / 2.0;
        (mid > p.a && mid < p.b).then(|| vec![(p.a, mid), (mid, p.b)])
    }

    fn worst(&self) -> Option<usize> {
        (0..self.panels.len())
            .filter(|&i| self.panels[i].error > self.panels[i].rounding)
            .max_by(|&i, &j| self.panels[i].error.total_cmp(&self.panels[j].error))
    }

    /// Takes the estimates of the panels [`Self::next`] asked for (in that order); they
    /// replace the panel they split.
    pub fn record(&mut self, asked: &[(f64, f64)], estimates: Vec<PanelEstimate>) {
        if let (false, Some(worst)) = (self.panels.is_empty(), self.worst())
            && asked.len() == 2
        {
            self.panels.swap_remove(worst);
        }
        for (&(a, b), e) in asked.iter().zip(estimates) {
            self.panels.push(Panel {
                a,
                b,
                error: e.error.iter().map(|x| x * x).sum::<f64>().sqrt(),
                rounding: e.rounding.iter().map(|x| x * x).sum::<f64>().sqrt(),
                kronrod: e.kronrod,
            });
            self.evaluations += PANEL_POINTS;
        }
    }

    /// The attributions so far: the panels' Kronrod estimates added up.
    pub fn attributions(&self) -> Vec<f64> {
        let n = self.panels.first().map_or(0, |p| p.kronrod.len());
        let mut total = vec![0.0; n];
        for p in &self.panels {
            for (t, v) in total.iter_mut().zip(&p.kronrod) {
                *t += v;
            }
        }
        total
    }

    /// Σ attributions − (F(input) − F(baseline)).
    pub fn delta(&self) -> f64 {
        self.attributions().iter().sum::<f64>() - self.target
    }

    /// The panels' truncation errors added up.
    pub fn truncation(&self) -> f64 {
        self.panels.iter().map(|p| p.error).sum()
    }

    /// The rule's own error estimate: each panel's truncation error, or its rounding floor
    /// where that is larger, added up.
    pub fn error(&self) -> f64 {
        self.panels.iter().map(|p| p.error.max(p.rounding)).sum()
    }

    pub fn evaluations(&self) -> usize {
        self.evaluations
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Evaluates a scalar integrand (one "token") on the panels the driver asks for.
    fn integrate(f: impl Fn(f64) -> f64, tolerance: f64, max: usize, exact: f64) -> AdaptiveIntegral {
        let mut state = AdaptiveIntegral::new(tolerance, max, exact);
        while let Some(panels) = state.next() {
            let estimates = panels
                .iter()
                .map(|&(a, b)| {
                    let (x, wk, wg) = panel_rule(a, b);
                    let values: Vec<Vec<f64>> = x.iter().map(|&x| vec![f(x)]).collect();
                    PanelEstimate::from_values(&values, &wk, &wg)
                })
                .collect();
            state.record(&panels, estimates);
        }
        state
    }

    #[test]
    fn the_rules_are_exact_for_polynomials_of_their_degree() {
        let (x, wk, wg) = panel_rule(0.0, 1.0);
        assert_eq!(x.len(), PANEL_POINTS);
        assert!(x.windows(2).all(|w| w[0] < w[1]) && x[0] > 0.0 && x[14] < 1.0);
        assert!((wk.iter().sum::<f64>() - 1.0).abs() < 1e-14);
        assert!((wg.iter().sum::<f64>() - 1.0).abs() < 1e-14);
        assert_eq!(wg.iter().filter(|w| **w > 0.0).count(), 7);
        // Kronrod 15 is exact to degree 22, Gauss 7 to degree 13: ∫₀¹ xᵈ = 1/(d+1).
        for d in 0..=22 {
            let k: f64 = x.iter().zip(&wk).map(|(x, w)| w * x.powi(d)).sum();
            assert!((k - 1.0 / (d + 1) as f64).abs() < 1e-13, "Kronrod, degree {d}: {k}");
            if d <= 13 {
                let g: f64 = x.iter().zip(&wg).map(|(x, w)| w * x.powi(d)).sum();
                assert!((g - 1.0 / (d + 1) as f64).abs() < 1e-13, "Gauss, degree {d}: {g}");
            }
        }
    }

    #[test]
    fn a_smooth_integrand_needs_one_panel() {
        // ∫₀¹ eˣ = e − 1.
        let s = integrate(f64::exp, 1e-8, 1000, std::f64::consts::E - 1.0);
        assert_eq!(s.evaluations(), PANEL_POINTS);
        assert!(s.delta().abs() < 1e-14 && s.truncation() < 1e-8, "{s:?}");
        // The rounding floor of f32 gradients: 50 epsilons of the integral.
        assert!((s.error() - 50.0 * f32::EPSILON as f64 * (std::f64::consts::E - 1.0)).abs() < 1e-12);
    }

    #[test]
    fn a_sharp_transition_gets_the_panels_and_the_estimate_bounds_the_error() {
        // A steep sigmoid at 0.8, as a trained model's probability along the path often is:
        // ∫₀¹ σ'(k(x − 0.8)) k dx = σ(0.2k) − σ(−0.8k).
        let k = 200.0;
        let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
        let derivative = |x: f64| k * sigmoid(k * (x - 0.8)) * (1.0 - sigmoid(k * (x - 0.8)));
        let exact = sigmoid(0.2 * k) - sigmoid(-0.8 * k);
        let s = integrate(derivative, 1e-6, 10_000, exact);
        let got = s.attributions()[0];
        assert!((got - exact).abs() < 1e-6, "{got} vs {exact}");
        assert!(s.truncation() <= 1e-6 && s.error() >= (got - exact).abs(), "{s:?}");
        assert!(
            s.evaluations() > PANEL_POINTS && s.evaluations() < 600,
            "{}",
            s.evaluations()
        );
        // The panels crowd around the transition.
        let narrow: Vec<&Panel> = s.panels.iter().filter(|p| p.b - p.a < 0.05).collect();
        assert!(
            !narrow.is_empty() && narrow.iter().all(|p| p.a > 0.7 && p.b < 0.9),
            "{:?}",
            s.panels
        );
    }

    #[test]
    fn the_budget_stops_it() {
        let k = 2000.0;
        let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
        let derivative = |x: f64| k * sigmoid(k * (x - 0.3)) * (1.0 - sigmoid(k * (x - 0.3)));
        let s = integrate(derivative, 1e-12, 50, 1.0);
        assert_eq!(s.evaluations(), 45, "15, then one split (30); a second would pass 50");
    }
}
