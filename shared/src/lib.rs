//! Astrid's shared core: the encoder classifier (BERT and DistilBERT layouts), its weights
//! in Hugging Face format, Integrated Gradients with Captum's semantics, and the measures
//! that compare a student's explanations with its teacher's.
//!
//! It enables no Burn backend itself: the `trainer` (CPU and wgpu) and the `web` app
//! (WebGPU and a CPU fallback) choose theirs, and pass a `burn::tensor::Device` in.

/// `name()`, `FromStr` and `Display` for a fieldless enum from one list of names (the
/// ones serde uses), so the command line, the page and the files agree.
macro_rules! named_enum {
    ($ty:ty, $field:literal, [$(($variant:path, $name:literal)),+]) => {
        impl $ty {
            pub fn name(self) -> &'static str {
                match self { $($variant => $name,)+ }
            }
        }
        impl std::str::FromStr for $ty {
            type Err = $crate::error::Error;
            fn from_str(s: &str) -> $crate::error::Result<Self> {
                match s {
                    $($name => Ok($variant),)+
                    other => Err($crate::error::Error::invalid($field, format!(
                        "unknown value '{other}'; use one of {}", [$($name),+].join(", ")))),
                }
            }
        }
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(self.name()) }
        }
    };
}

pub mod bundle;
pub mod compare;
pub mod config;
pub mod erasure;
pub mod error;
pub mod explain;
#[cfg(not(target_arch = "wasm32"))]
pub mod files;
pub mod format;
pub mod heat;
pub mod kernels;
pub mod model;
pub mod rng;
pub mod schema;
pub mod tokenize;
pub mod weights;

pub use bundle::{LoadedModel, ModelFiles, ModelMeta, TextExplanation};
pub use config::{Architecture, ModelConfig};
pub use error::{Error, Result};
pub use explain::{Attribution, Baseline, ExplainOptions, Explanation, Method};
pub use model::EncoderClassifier;
