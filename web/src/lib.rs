//! Astrid in the browser: Integrated Gradients on WebGPU (or a CPU fallback) for the teacher
//! and its students, side by side, against model bundles downloaded as static files.
//!
//! The page (Leptos) runs on the main thread; the models run in a Web Worker (`www/worker.js`)
//! that loads this same module and calls the engine, so long explanations never freeze the
//! page. The pure parts (manifest, deep links, results, colours) build and test natively.

pub mod deeplink;
pub mod outcome;

#[cfg(target_arch = "wasm32")]
mod app;
#[cfg(target_arch = "wasm32")]
pub mod download;
#[cfg(target_arch = "wasm32")]
mod engine;
#[cfg(target_arch = "wasm32")]
mod worker_client;

#[cfg(target_arch = "wasm32")]
pub use engine::*;

/// Mounts the page when this module runs in a window with the app's root element; in the
/// worker (no window) it does nothing, and the worker calls the engine directly.
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen(start)]
pub fn start() {
    let Some(document) = web_sys::window().and_then(|w| w.document()) else {
        return;
    };
    if document.get_element_by_id("astrid-app").is_some() {
        app::mount();
    }
}
