//! What an explanation is asked for: the attribution method, IG's rule, steps and baseline,
//! the class, and how the work is batched; with the names every part of Astrid uses.

use serde::{Deserialize, Serialize};

use super::Method;

/// What the path of Integrated Gradients starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Baseline {
    /// All-zero word embeddings (Captum's default).
    #[default]
    Zero,
    /// The embedding of [PAD] at every position but the special tokens ([CLS], [SEP]).
    Pad,
    /// The embedding of [MASK] at every position but the special tokens.
    Mask,
    /// The mean of the word-embedding table (the expected token) at every position but the
    /// special tokens: a reference with no word of its own, often closer to neutral for the
    /// model than zero, [PAD] or [MASK] (the report measures each one's output).
    Uniform,
}

impl Baseline {
    pub const ALL: [Baseline; 4] = [Baseline::Zero, Baseline::Pad, Baseline::Mask, Baseline::Uniform];
}

/// Which attribution to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Attribution {
    #[default]
    Ig,
    /// |∂p/∂x| summed over the embedding (Captum's `Saliency`, abs=True).
    Saliency,
    /// x · ∂p/∂x summed over the embedding (Captum's `InputXGradient`).
    GradInput,
}

named_enum!(
    Baseline,
    "baseline",
    [
        (Baseline::Zero, "zero"),
        (Baseline::Pad, "pad"),
        (Baseline::Mask, "mask"),
        (Baseline::Uniform, "uniform")
    ]
);
named_enum!(
    Method,
    "method",
    [
        (Method::GaussLegendre, "gausslegendre"),
        (Method::RiemannLeft, "riemann_left"),
        (Method::RiemannRight, "riemann_right"),
        (Method::RiemannMiddle, "riemann_middle"),
        (Method::RiemannTrapezoid, "riemann_trapezoid"),
        (Method::Adaptive, "adaptive")
    ]
);
named_enum!(
    Attribution,
    "attribution",
    [
        (Attribution::Ig, "ig"),
        (Attribution::Saliency, "saliency"),
        (Attribution::GradInput, "grad-input")
    ]
);

/// The most interpolation steps IG accepts. Captum's default is 50; the quadrature error
/// of Gauss-Legendre is below float rounding long before 10,000, while the cost (one
/// gradient per step) keeps growing.
pub const MAX_N_STEPS: usize = 10_000;

/// Interpolation points in flight at once (over all workers) when the caller sets no
/// internal batch: memory grows with it (activations of every point), so it is bounded.
pub const DEFAULT_POINTS_IN_FLIGHT: usize = 64;

/// Options of an explanation; the defaults are Captum's (a field left out when read takes
/// its default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExplainOptions {
    pub attribution: Attribution,
    pub n_steps: usize,
    pub method: Method,
    pub baseline: Baseline,
    /// Interpolation points per forward/backward pass; `None` = the steps split between the
    /// CPU workers, at most [`DEFAULT_POINTS_IN_FLIGHT`] at once.
    /// The result does not depend on it beyond float rounding; it bounds memory.
    pub internal_batch_size: Option<usize>,
    /// Class to explain; `None` = the predicted class.
    pub target: Option<usize>,
    /// Independent chains of work that split the interpolation points between them, chosen
    /// by the caller for its backend: burn's CPU backend runs element-wise operations on one
    /// thread, so two chains fill a 2-core machine (docs/design/ig-engine.md); a GPU and the
    /// browser use 1. The result does not depend on it beyond float rounding.
    pub workers: usize,
    /// Adaptive IG: stop when |convergence delta| and the rule's error estimate are both at
    /// most this.
    pub tolerance: f64,
    /// Adaptive IG: at most this many gradient evaluations.
    pub max_steps: usize,
}

/// Adaptive IG's default tolerance on |convergence delta| and on its error estimate.
pub const DEFAULT_TOLERANCE: f64 = 1e-4;
/// Adaptive IG's default budget of gradient evaluations per text.
pub const DEFAULT_MAX_STEPS: usize = 1000;

impl Default for ExplainOptions {
    fn default() -> Self {
        Self {
            attribution: Attribution::Ig,
            n_steps: 50,
            method: Method::GaussLegendre,
            baseline: Baseline::Zero,
            internal_batch_size: None,
            target: None,
            workers: 1,
            tolerance: DEFAULT_TOLERANCE,
            max_steps: DEFAULT_MAX_STEPS,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fmt;
    use std::str::FromStr;

    use super::*;

    /// The names the command line, the page and the files use are one set: serde's.
    #[test]
    fn each_enum_has_one_name_everywhere() {
        fn same<T: Serialize + FromStr + fmt::Display + PartialEq + fmt::Debug + Copy>(values: &[T])
        where
            <T as FromStr>::Err: fmt::Debug,
        {
            for &v in values {
                let serde_name = serde_json::to_value(v).unwrap();
                assert_eq!(serde_name, serde_json::json!(v.to_string()));
                assert_eq!(v.to_string().parse::<T>().unwrap(), v);
            }
        }
        same(&Method::ALL);
        same(&Baseline::ALL);
        same(&[Attribution::Ig, Attribution::Saliency, Attribution::GradInput]);
    }
}
