//! Explanation-preserving distillation (`--training align`): students trained to keep the
//! teacher's reasons, with first-order objectives only. The methods in the literature (AD-KD,
//! e²KD) match attributions by double backpropagation, which burn 0.22's autodiff does not
//! offer; here the student instead gives the teacher's class probabilities on *aligned views*
//! of each training text, one probe per text and epoch, on top of plain distillation:
//!
//! - **path** points: each token's word embedding moved toward the IG baseline by its own
//!   amount, αᵢ = clamp(t + σ·εᵢ, 0, 1), t ~ U(0, 1), εᵢ ~ N(0, 1). IG's attribution of token i
//!   is the integral of ∂F/∂αᵢ along the diagonal αᵢ = t, so a student that gives the teacher's
//!   F on points scattered around that diagonal has the teacher's derivatives there (Srinivas &
//!   Fleuret, ICML 2018: distillation on noisy inputs matches Jacobians). The token-scaling
//!   space is shared by teacher and student whatever their widths.
//! - **evidence** views (ERASER's; the default): the text without the teacher's top-k content
//!   tokens, and with only them, from the teacher's IG on the training texts (few steps: a
//!   ranking is all that is needed).
//! - **slope** probes: the teacher's finite-difference slope along IG's path in a random ±1
//!   direction over the tokens (the IG integrand projected on it), matched in squared error.
//!
//! The views and the probe each text gets per epoch are in [`views`]; the teacher's logits on
//! every view of every epoch are computed once, before the students train, and cached in the
//! run directory with its attributions ([`targets`]).

pub use astrid::schema::{AlignSettings, AlignViews, EvidenceSettings, Objective};

pub mod targets;
pub mod views;

#[cfg(test)]
mod fixtures;
