//! One model's training: the loop and its losses ([`train`]), the optimizer, the resumable
//! training state ([`resume`]), the alignment objective's views ([`align`]), and the metrics
//! that pick the best epoch.

pub mod align;
pub mod metrics;
pub mod optimizer;
pub mod resume;
pub mod train;
