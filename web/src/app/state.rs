//! The page's state: one signal per thing the page shows.

use leptos::prelude::*;

use crate::deeplink::{BackendChoice, PageOptions};
use crate::outcome::ModelOutcome;
use astrid::schema::bundle::Manifest;

/// Download state of one file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FileProgress {
    pub(crate) label: String,
    pub(crate) loaded: u64,
    pub(crate) total: u64,
    pub(crate) cached: bool,
}

/// Where the worker computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BackendKind {
    WebGpu,
    Cpu,
}

impl BackendKind {
    /// The name the engine and `window.astridResult` use.
    pub(crate) fn name(self) -> &'static str {
        match self {
            BackendKind::WebGpu => "webgpu",
            BackendKind::Cpu => "cpu",
        }
    }
}

/// The backend the worker runs on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BackendInfo {
    pub(crate) kind: BackendKind,
    /// The adapter (WebGPU) or why not WebGPU (CPU).
    pub(crate) detail: Option<String>,
}

#[derive(Clone, Copy)]
pub(crate) struct AppState {
    pub(crate) manifest: RwSignal<Option<Manifest>>,
    pub(crate) bundle_error: RwSignal<Option<String>>,
    pub(crate) backend: RwSignal<Option<BackendInfo>>,
    pub(crate) selected: RwSignal<Vec<String>>,
    pub(crate) cached: RwSignal<Vec<String>>,
    pub(crate) text: RwSignal<String>,
    pub(crate) options: RwSignal<PageOptions>,
    pub(crate) backend_choice: RwSignal<BackendChoice>,
    pub(crate) downloads: RwSignal<Vec<FileProgress>>,
    pub(crate) status: RwSignal<String>,
    /// Interpolation points done / in all for the model being explained.
    pub(crate) steps: RwSignal<Option<(u32, u32)>>,
    pub(crate) started_at: RwSignal<f64>,
    pub(crate) now: RwSignal<f64>,
    pub(crate) outcomes: RwSignal<Vec<ModelOutcome>>,
    pub(crate) notices: RwSignal<Vec<String>>,
    pub(crate) error: RwSignal<Option<String>>,
    pub(crate) share_link: RwSignal<Option<String>>,
}

pub(crate) fn now_ms() -> f64 {
    web_sys::window().and_then(|w| w.performance()).map_or(0.0, |p| p.now())
}
