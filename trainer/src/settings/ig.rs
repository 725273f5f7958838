//! Integrated Gradients' options, shared by `run` and `explain`.

use astrid::explain::{Attribution, Baseline, ExplainOptions, MAX_N_STEPS, Method};
use serde::{Deserialize, Serialize};

use super::Problems;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct IgConfig {
    /// Interpolation steps (fixed rules).
    pub n_steps: usize,
    /// Integration rule (Captum's names, or adaptive).
    pub method: Method,
    /// Adaptive IG: the largest |convergence delta| and error estimate accepted.
    pub tolerance: f64,
    /// Adaptive IG: the most gradient evaluations per text.
    pub max_steps: usize,
    /// Where the path starts.
    pub baseline: Baseline,
    /// Interpolation points per forward/backward pass (`None`: all at once).
    pub internal_batch_size: Option<usize>,
}

impl Default for IgConfig {
    fn default() -> Self {
        Self {
            n_steps: 50,
            method: Method::GaussLegendre,
            tolerance: astrid::explain::DEFAULT_TOLERANCE,
            max_steps: astrid::explain::DEFAULT_MAX_STEPS,
            baseline: Baseline::Zero,
            internal_batch_size: None,
        }
    }
}

impl IgConfig {
    /// Records what is wrong with these options.
    pub fn problems(&self, p: &mut Problems) {
        if !(1..=MAX_N_STEPS).contains(&self.n_steps) {
            p.push(format!(
                "--n-steps {}: use 1 to {MAX_N_STEPS} (50 is Captum's default)",
                self.n_steps
            ));
        } else if self.method != Method::GaussLegendre && self.n_steps < 2 {
            p.push(format!("--n-steps {}: {} needs at least 2", self.n_steps, self.method));
        }
        if self.method == Method::Adaptive {
            p.check(self.tolerance.is_finite() && self.tolerance > 0.0, || {
                format!(
                    "--tolerance {}: a positive number (1e-4 is the default)",
                    self.tolerance
                )
            });
            let panel = astrid::explain::adaptive::PANEL_POINTS;
            p.check((panel..=MAX_N_STEPS).contains(&self.max_steps), || {
                format!(
                    "--max-steps {}: use {panel} (one Gauss-Kronrod panel) to {MAX_N_STEPS}",
                    self.max_steps
                )
            });
        }
        p.check(self.internal_batch_size != Some(0), || {
            "--internal-batch-size 0: use at least 1 point per pass".to_string()
        });
    }

    /// The options for the device IG runs on (`workers`: its independent chains of work).
    pub fn options(&self, attribution: Attribution, target: Option<usize>, workers: usize) -> ExplainOptions {
        ExplainOptions {
            attribution,
            n_steps: self.n_steps,
            method: self.method,
            baseline: self.baseline,
            internal_batch_size: self.internal_batch_size,
            target,
            workers,
            tolerance: self.tolerance,
            max_steps: self.max_steps,
        }
    }
}
