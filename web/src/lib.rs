//! Astrid in the browser: Integrated Gradients on WebGPU (or a CPU fallback) against model
//! bundles downloaded as static files. Compiled for `wasm32-unknown-unknown` only; on other
//! targets this crate is empty.

#[cfg(target_arch = "wasm32")]
mod engine;

#[cfg(target_arch = "wasm32")]
pub use engine::*;
