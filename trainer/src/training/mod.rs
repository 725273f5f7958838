//! One model's training: the loop ([`train`]), its optimizer steps split between replicas
//! ([`steps`]) and their losses ([`losses`]), texts as tensors and predictions ([`batches`]), IG over a list of texts ([`explain_texts`]),
//! the optimizer, the resumable training state ([`resume`]), the alignment objective's views
//! and the teacher's targets on them ([`align`]), and the metrics that pick the best epoch.

pub mod align;
pub mod batches;
pub mod explain_texts;
#[cfg(test)]
mod fixtures;
pub mod losses;
pub mod metrics;
pub mod optimizer;
pub mod resume;
pub mod steps;
pub mod train;
