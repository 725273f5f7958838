//! Astrid's shared core: the encoder classifier (BERT and DistilBERT layouts), its weights
//! in Hugging Face format, Integrated Gradients with Captum's semantics, and the measures
//! that compare a student's explanations with its teacher's.
//!
//! It enables no Burn backend itself: the `trainer` (CPU and wgpu) and the `web` app
//! (WebGPU and a CPU fallback) choose theirs, and pass a `burn::tensor::Device` in.

pub mod bundle;
pub mod checkpoint;
pub mod compare;
pub mod config;
pub mod error;
pub mod explain;
#[cfg(not(target_arch = "wasm32"))]
pub mod files;
pub mod format;
pub mod heat;
pub mod model;
pub mod schema;
pub mod tokenize;

pub use bundle::{LoadedModel, ModelFiles, ModelMeta, TextExplanation};
pub use config::{Architecture, ModelConfig};
pub use error::{Error, Result};
pub use explain::{Attribution, Baseline, ExplainOptions, Explanation, Method};
pub use model::EncoderClassifier;
