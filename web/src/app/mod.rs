//! The page: bundle, models and leaderboard, a text box with samples and options, and one
//! row of coloured tokens per model after "Explain". State lives in signals (`state`); the
//! work (bundle, downloads, explanations) is in `actions` and runs in the compute worker, so
//! the page keeps answering while a model explains; `components` draws it.

mod actions;
mod components;
mod state;

use leptos::prelude::*;
use leptos::task::spawn_local;

use std::cell::RefCell;
use std::rc::Rc;

use actions::{EvidenceAction, ExplainAction, ensure_backend, fetch_manifest, read_link, show_bundle};
use components::*;
use state::{AppState, now_ms};

/// Where the bundle is, beside the page.
pub(crate) const BUNDLE_DIR: &str = "models";
/// Longest text accepted; models read at most their max length in tokens anyway.
pub(crate) const MAX_TEXT_CHARS: usize = 20_000;
/// Interpolation points per pass: bounds GPU memory for the teacher (the result does not
/// depend on it beyond rounding).
pub(crate) const INTERNAL_BATCH: usize = 10;

/// Shows a Rust panic in the browser console (and the page), instead of nothing.
pub fn mount() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(App);
}

#[component]
fn App() -> impl IntoView {
    let (link, problems) = read_link();
    let state = AppState {
        manifest: RwSignal::new(None),
        bundle_error: RwSignal::new(None),
        backend: RwSignal::new(None),
        selected: RwSignal::new(Vec::new()),
        cached: RwSignal::new(Vec::new()),
        text: RwSignal::new(link.text.clone().unwrap_or_default()),
        options: RwSignal::new(link.options.clone()),
        backend_choice: RwSignal::new(link.backend),
        downloads: RwSignal::new(Vec::new()),
        status: RwSignal::new(String::new()),
        steps: RwSignal::new(None),
        started_at: RwSignal::new(0.0),
        now: RwSignal::new(0.0),
        outcomes: RwSignal::new(Vec::new()),
        notices: RwSignal::new(problems),
        error: RwSignal::new(None),
        share_link: RwSignal::new(None),
    };
    provide_context(state);
    let explain = ExplainAction::new(state);
    provide_context(explain);
    provide_context(EvidenceAction::new(state));
    // A clock for the elapsed time shown while a run is going.
    let _ = set_interval_with_handle(move || state.now.set(now_ms()), std::time::Duration::from_millis(250));
    spawn_local(async move {
        if let Err(e) = ensure_backend(state).await {
            state.error.set(Some(format!("The compute backend did not start: {e}")));
        }
    });
    // The bundle as a resource; once it resolves, the page shows it (once: the link's
    // choices apply to the first load only).
    let bundle = LocalResource::new(fetch_manifest);
    let link = Rc::new(RefCell::new(Some(link)));
    Effect::new(move |_| {
        if let Some(manifest) = bundle.get()
            && let Some(link) = link.borrow_mut().take()
        {
            spawn_local(show_bundle(state, link, explain, manifest));
        }
    });
    view! {
        <header>
            <h1>"Astrid"</h1>
            <p class="tagline">
                "Does the small model decide for the same reasons as the big one? Integrated Gradients for a teacher and its students, computed in your browser."
            </p>
            <BackendBadge/>
        </header>
        <main>
            <BundleError/>
            <section class="panel">
                <h2>"Models"</h2>
                <ModelPicker/>
                <Downloads/>
            </section>
            <section class="panel">
                <h2>"Text"</h2>
                <TextInput/>
                <OptionsForm/>
                <ExplainButton/>
            </section>
            <Messages/>
            <ResultsView/>
            <Leaderboard/>
        </main>
    }
}

pub(crate) fn state() -> AppState {
    expect_context::<AppState>()
}
