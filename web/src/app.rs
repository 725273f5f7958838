//! The page: bundle, models and leaderboard, a text box with samples and options, and one
//! row of coloured tokens per model after "Explain". State lives in signals; the work runs
//! in the compute worker, so the page keeps answering while a model explains.

use std::cell::RefCell;
use std::collections::HashMap;

use js_sys::{Promise, Reflect, Uint8Array};
use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, future_to_promise};

use crate::deeplink::{BackendChoice, DeepLink, MAX_STEPS, PageOptions};
use crate::download::{buffer_of, fetch_text, fetch_verified, is_cached, js_text};
use crate::heat::{colour, row_scale};
use crate::manifest::{FileEntry, Manifest, ManifestModel};
use crate::outcome::{EngineExplanation, ModelOutcome, compare_with_teacher, result_json};
use crate::worker_client::{client, field, request};
use astrid::explain::{Baseline, Method};

const MANIFEST_URL: &str = "models/manifest.json";
/// Longest text accepted; models read at most their max length in tokens anyway.
const MAX_TEXT_CHARS: usize = 20_000;
/// Interpolation points per pass: bounds GPU memory for the teacher (the result does not
/// depend on it beyond rounding).
const INTERNAL_BATCH: usize = 10;

/// Download state of one file.
#[derive(Debug, Clone, PartialEq)]
struct FileProgress {
    label: String,
    loaded: u64,
    total: u64,
    cached: bool,
}

/// The backend the worker runs on.
#[derive(Debug, Clone, PartialEq)]
struct BackendInfo {
    /// "webgpu" or "cpu".
    kind: String,
    /// The adapter (WebGPU) or why not WebGPU (CPU).
    detail: Option<String>,
}

#[derive(Clone, Copy)]
struct AppState {
    manifest: RwSignal<Option<Manifest>>,
    bundle_error: RwSignal<Option<String>>,
    backend: RwSignal<Option<BackendInfo>>,
    selected: RwSignal<Vec<String>>,
    cached: RwSignal<Vec<String>>,
    text: RwSignal<String>,
    options: RwSignal<PageOptions>,
    backend_choice: RwSignal<BackendChoice>,
    downloads: RwSignal<Vec<FileProgress>>,
    busy: RwSignal<bool>,
    status: RwSignal<String>,
    /// Interpolation points done / in all for the model being explained.
    steps: RwSignal<Option<(u32, u32)>>,
    started_at: RwSignal<f64>,
    now: RwSignal<f64>,
    outcomes: RwSignal<Vec<ModelOutcome>>,
    notices: RwSignal<Vec<String>>,
    error: RwSignal<Option<String>>,
    share_link: RwSignal<Option<String>>,
}

thread_local! {
    /// Work done once per page ("backend", "tokenizer", "model:NAME"): every caller awaits
    /// the same promise.
    static ONCE: RefCell<HashMap<String, Promise>> = RefCell::new(HashMap::new());
}

fn now_ms() -> f64 {
    web_sys::window().and_then(|w| w.performance()).map_or(0.0, |p| p.now())
}

/// Awaits the shared promise for `key`, created by `make` on first use; a failure is
/// forgotten so the next attempt retries.
async fn once<F, Fut>(key: String, make: F) -> Result<JsValue, String>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<JsValue, String>> + 'static,
{
    let existing = ONCE.with(|o| o.borrow().get(&key).cloned());
    let promise = existing.unwrap_or_else(|| {
        let future = make();
        let p = future_to_promise(async move { future.await.map_err(|e| JsValue::from_str(&e)) });
        ONCE.with(|o| o.borrow_mut().insert(key.clone(), p.clone()));
        p
    });
    let result = JsFuture::from(promise).await.map_err(js_text);
    if result.is_err() {
        ONCE.with(|o| o.borrow_mut().remove(&key));
    }
    result
}

async fn ensure_backend(state: AppState) -> Result<BackendInfo, String> {
    let choice = state.backend_choice.get_untracked().name();
    let answer = once("backend".into(), move || async move {
        client()?
            .call(&request("init", &[("backend", choice.into())]), &[])
            .await
    })
    .await?;
    let description = field(&answer, "backend").as_string().unwrap_or_default();
    let info = if description == "webgpu" {
        BackendInfo {
            kind: "webgpu".into(),
            detail: field(&answer, "adapter").as_string(),
        }
    } else {
        BackendInfo {
            kind: "cpu".into(),
            detail: field(&answer, "problem").as_string(),
        }
    };
    state.backend.set(Some(info.clone()));
    Ok(info)
}

fn set_progress(state: AppState, label: &str, loaded: u64) {
    state.downloads.update(|d| {
        if let Some(p) = d.iter_mut().find(|p| p.label == label) {
            p.loaded = loaded;
        }
    });
}

/// Downloads one bundle file with a progress bar.
async fn download(state: AppState, path: String, entry: FileEntry) -> Result<Uint8Array, String> {
    let url = format!("models/{path}");
    state.downloads.update(|d| {
        if !d.iter().any(|p| p.label == path) {
            d.push(FileProgress {
                label: path.clone(),
                loaded: 0,
                total: entry.size,
                cached: false,
            });
        }
    });
    let fetched = fetch_verified(&url, &entry, &|loaded| set_progress(state, &path, loaded)).await?;
    state.downloads.update(|d| {
        if let Some(p) = d.iter_mut().find(|p| p.label == path) {
            p.loaded = entry.size;
            p.cached = fetched.from_cache;
        }
    });
    Ok(fetched.bytes)
}

fn utf8(bytes: &Uint8Array, what: &str) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| format!("{what} is not UTF-8 text"))
}

async fn tokenizer_bytes(state: AppState, entry: FileEntry) -> Result<Uint8Array, String> {
    let value = once("tokenizer".into(), move || async move {
        download(state, "tokenizer.json".into(), entry).await.map(JsValue::from)
    })
    .await?;
    Ok(value.into())
}

/// Downloads a model's files and loads it into the worker (once per page).
async fn ensure_model(state: AppState, tokenizer: FileEntry, model: ManifestModel) -> Result<(), String> {
    once(format!("model:{}", model.name), move || async move {
        let tokenizer = tokenizer_bytes(state, tokenizer).await?;
        let file = |f: &str| {
            let entry = model
                .files
                .get(f)
                .cloned()
                .ok_or_else(|| format!("{}: no {f}", model.name))?;
            Ok::<_, String>(download(state, format!("{}/{f}", model.name), entry))
        };
        let config = utf8(&file("config.json")?.await?, "config.json")?;
        let meta = utf8(&file("astrid.json")?.await?, "astrid.json")?;
        let weights = file("model.safetensors")?.await?;
        let buffer = buffer_of(&weights);
        let fields = [
            ("name", JsValue::from_str(&model.name)),
            ("config", config.into()),
            ("weights", buffer.clone()),
            ("tokenizer", tokenizer.into()),
            ("meta", meta.into()),
        ];
        client()?
            .call(&request("load", &fields), &[buffer])
            .await
            .map_err(|e| format!("loading {} failed: {e}", model.name))
    })
    .await
    .map(|_| ())
}

fn engine_options(options: &PageOptions) -> String {
    serde_json::json!({
        "n_steps": options.n_steps,
        "method": options.method,
        "baseline": options.baseline,
        "internal_batch_size": options.n_steps.min(INTERNAL_BATCH),
    })
    .to_string()
}

fn set_window_result(value: &serde_json::Value) {
    if let Some(window) = web_sys::window()
        && let Ok(parsed) = js_sys::JSON::parse(&value.to_string())
    {
        let _ = Reflect::set(&window, &"astridResult".into(), &parsed);
    }
}

fn clear_window_result() {
    if let Some(window) = web_sys::window() {
        let _ = Reflect::set(&window, &"astridResult".into(), &JsValue::UNDEFINED);
    }
}

/// The models a run explains: the teacher first, then the chosen students in bundle order.
fn models_to_run(manifest: &Manifest, selected: &[String]) -> Vec<ManifestModel> {
    manifest
        .models
        .iter()
        .filter(|m| m.is_teacher())
        .chain(
            manifest
                .models
                .iter()
                .filter(|m| !m.is_teacher() && selected.contains(&m.name)),
        )
        .cloned()
        .collect()
}

fn current_link(state: AppState, run: bool) -> DeepLink {
    DeepLink {
        text: Some(state.text.get_untracked()).filter(|t| !t.is_empty()),
        models: Some(state.selected.get_untracked()),
        run,
        options: state.options.get_untracked(),
        backend: state.backend_choice.get_untracked(),
    }
}

async fn explain_all(state: AppState) -> Result<(String, Vec<ModelOutcome>), String> {
    let text = state.text.get_untracked();
    if text.trim().is_empty() {
        return Err("Type a text or pick a sample first.".into());
    }
    let chars = text.chars().count();
    if chars > MAX_TEXT_CHARS {
        return Err(format!(
            "The text has {chars} characters; the page takes at most {MAX_TEXT_CHARS}. Models read only their first 128 tokens or so: paste the part you want explained."
        ));
    }
    let manifest = state
        .manifest
        .get_untracked()
        .ok_or_else(|| "The model bundle has not loaded (see the message above).".to_string())?;
    let models = models_to_run(&manifest, &state.selected.get_untracked());
    let options = state.options.get_untracked();
    state.status.set("Starting the compute backend…".into());
    let backend = ensure_backend(state).await?;
    for model in &models {
        state.status.set(format!("Downloading {}…", model.name));
        ensure_model(state, manifest.tokenizer.clone(), model.clone()).await?;
    }
    let worker = client()?;
    let mut outcomes = Vec::new();
    for (i, model) in models.iter().enumerate() {
        state.status.set(format!(
            "Explaining with {} ({}/{}) on {}…",
            model.name,
            i + 1,
            models.len(),
            backend.kind
        ));
        let fields = [
            ("name", JsValue::from_str(&model.name)),
            ("text", JsValue::from_str(&text)),
            ("options", engine_options(&options).into()),
        ];
        state.steps.set(None);
        let on_progress = Box::new(move |done, total| state.steps.set(Some((done, total))));
        let answer = worker
            .call_with_progress(&request("explain", &fields), &[], Some(on_progress))
            .await
            .map_err(|e| format!("{}: {e}", model.name))?;
        state.steps.set(None);
        let json = field(&answer, "json").as_string().unwrap_or_default();
        let explanation: EngineExplanation = serde_json::from_str(&json)
            .map_err(|e| format!("{}: unexpected answer from the engine: {e}", model.name))?;
        outcomes.push(ModelOutcome {
            name: model.name.clone(),
            is_teacher: model.is_teacher(),
            explanation,
            ms: field(&answer, "ms").as_f64().unwrap_or(f64::NAN),
            similarity_to_teacher: None,
        });
        state.outcomes.set(outcomes.clone());
    }
    compare_with_teacher(&mut outcomes)?;
    Ok((backend.kind, outcomes))
}

fn run_explain(state: AppState) {
    if state.busy.get_untracked() {
        return;
    }
    state.busy.set(true);
    state.error.set(None);
    state.notices.set(Vec::new());
    state.outcomes.set(Vec::new());
    state.started_at.set(now_ms());
    clear_window_result();
    let link = current_link(state, true);
    spawn_local(async move {
        match explain_all(state).await {
            Ok((backend, outcomes)) => {
                if let Some(first) = outcomes.iter().find(|o| o.explanation.truncated) {
                    let max = first.explanation.tokens.len();
                    state.notices.update(|n| {
                        n.push(format!(
                            "The text is longer than the models read: only its first {max} tokens were explained. Shorten the text to explain all of it."
                        ))
                    });
                }
                set_window_result(&result_json(&backend, &outcomes));
                state.outcomes.set(outcomes);
            }
            Err(error) => {
                set_window_result(&serde_json::json!({ "error": error }));
                state.error.set(Some(error));
            }
        }
        // The address bar now reproduces this explanation.
        let query = link.to_query();
        if let Some(window) = web_sys::window()
            && let Ok(history) = window.history()
        {
            let _ = history.replace_state_with_url(&JsValue::NULL, "", Some(&query));
        }
        state.share_link.set(Some(query));
        state.status.set(String::new());
        state.busy.set(false);
    });
}

fn read_link() -> (DeepLink, Vec<String>) {
    let search = web_sys::window()
        .and_then(|w| w.location().search().ok())
        .unwrap_or_default();
    let Ok(params) = web_sys::UrlSearchParams::new_with_str(&search) else {
        return (DeepLink::default(), Vec::new());
    };
    let keys = [
        "text", "models", "run", "n_steps", "method", "baseline", "merge", "backend",
    ];
    let values: Vec<(&str, String)> = keys.iter().filter_map(|k| params.get(k).map(|v| (*k, v))).collect();
    DeepLink::from_pairs(values.iter().map(|(k, v)| (*k, v.as_str())))
}

async fn load_bundle(state: AppState, link: DeepLink) {
    let manifest = match fetch_text(MANIFEST_URL).await {
        Ok(text) => Manifest::parse(&text, MANIFEST_URL),
        Err(e) => Err(format!(
            "Cannot load the model bundle: {e}. Put a bundle next to this page with `trainer export --run RUN_DIR --to www/models`."
        )),
    };
    let manifest = match manifest {
        Ok(m) => m,
        Err(e) => {
            set_window_result(&serde_json::json!({ "error": e }));
            state.bundle_error.set(Some(e));
            return;
        }
    };
    let students: Vec<String> = manifest
        .models
        .iter()
        .filter(|m| !m.is_teacher())
        .map(|m| m.name.clone())
        .collect();
    let selected = match &link.models {
        Some(names) => {
            for unknown in names.iter().filter(|n| manifest.model(n).is_none()) {
                state.notices.update(|n| {
                    n.push(format!(
                        "The link names model '{unknown}', which this bundle does not have; it was left out."
                    ))
                });
            }
            students.iter().filter(|s| names.contains(s)).cloned().collect()
        }
        None => students,
    };
    state.selected.set(selected);
    if state.text.get_untracked().is_empty()
        && let Some(sample) = manifest.samples.first()
    {
        state.text.set(sample.clone());
    }
    let mut cached = Vec::new();
    for model in &manifest.models {
        if let Some(weights) = model.files.get("model.safetensors")
            && is_cached(&format!("models/{}/model.safetensors", model.name), weights).await
        {
            cached.push(model.name.clone());
        }
    }
    state.cached.set(cached);
    state.manifest.set(Some(manifest));
    if link.run {
        run_explain(state);
    }
}

pub fn mount() {
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
        busy: RwSignal::new(false),
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
    // A clock for the elapsed time shown while a run is going.
    let _ = set_interval_with_handle(move || state.now.set(now_ms()), std::time::Duration::from_millis(250));
    spawn_local(async move {
        if let Err(e) = ensure_backend(state).await {
            state.error.set(Some(format!("The compute backend did not start: {e}")));
        }
    });
    spawn_local(load_bundle(state, link));
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

fn state() -> AppState {
    expect_context::<AppState>()
}

#[component]
fn BackendBadge() -> impl IntoView {
    let state = state();
    move || match state.backend.get() {
        None => view! { <p class="badge pending">"Starting the compute backend…"</p> }.into_any(),
        Some(info) if info.kind == "webgpu" => view! {
            <p class="badge webgpu" id="backend">
                "Backend: WebGPU"
                {info.detail.map(|d| format!(" — {d}"))}
            </p>
        }
        .into_any(),
        Some(info) => view! {
            <p class="badge cpu" id="backend">
                "Backend: CPU (WebAssembly, one thread)"
                {info.detail.map(|d| format!(" — {d}"))}
            </p>
        }
        .into_any(),
    }
}

#[component]
fn BundleError() -> impl IntoView {
    let state = state();
    move || {
        state
            .bundle_error
            .get()
            .map(|e| view! { <div class="error" role="alert" id="bundle-error">{e}</div> })
    }
}

fn file_size(bytes: u64) -> String {
    match bytes {
        0..1_000 => format!("{bytes} B"),
        1_000..1_000_000 => format!("{:.1} kB", bytes as f64 / 1e3),
        _ => format!("{:.1} MB", bytes as f64 / 1e6),
    }
}

fn optional(value: Option<f64>, digits: usize) -> String {
    value.map_or("—".into(), |v| format!("{v:.digits$}"))
}

fn params_text(params: Option<u64>) -> String {
    match params {
        None => "—".into(),
        Some(p) if p < 1_000_000 => format!("{:.0}k", p as f64 / 1e3),
        Some(p) => format!("{:.1}M", p as f64 / 1e6),
    }
}

#[component]
fn ModelPicker() -> impl IntoView {
    let state = state();
    move || {
        let Some(manifest) = state.manifest.get() else {
            let text = if state.bundle_error.get().is_some() {
                "No models: the bundle did not load (see above)."
            } else {
                "Loading the bundle…"
            };
            return view! { <p class="muted">{text}</p> }.into_any();
        };
        let rows = manifest
            .models
            .into_iter()
            .map(|m| {
                let name = m.name.clone();
                let teacher = m.is_teacher();
                let checked = {
                    let name = name.clone();
                    move || teacher || state.selected.get().contains(&name)
                };
                let toggle = {
                    let name = name.clone();
                    move |ev| {
                        let on = event_target_checked(&ev);
                        state.selected.update(|s| {
                            s.retain(|n| n != &name);
                            if on {
                                s.push(name.clone());
                            }
                        });
                    }
                };
                let cached = {
                    let name = name.clone();
                    move || state.cached.get().contains(&name).then_some(" · cached")
                };
                view! {
                    <label class="model">
                        <input type="checkbox" name="model" value=name.clone() disabled=teacher
                            prop:checked=checked on:change=toggle/>
                        <span class="model-name">{name.clone()}</span>
                        <span class="muted">
                            {if teacher { "teacher" } else { "student" }}
                            {m.shape().map(|s| format!(" · {s}"))}
                            {format!(" · {} params · acc {} · similarity {} · {}",
                                params_text(m.params), optional(m.accuracy, 3), optional(m.similarity, 3),
                                file_size(m.download_size()))}
                            {cached}
                        </span>
                    </label>
                }
            })
            .collect_view();
        view! { <div class="models">{rows}</div> }.into_any()
    }
}

#[component]
fn Downloads() -> impl IntoView {
    let state = state();
    move || {
        let downloads = state.downloads.get();
        if downloads.is_empty() {
            return None;
        }
        let (count, finished) = (downloads.len(), downloads.iter().all(|d| d.loaded >= d.total));
        let total: u64 = downloads.iter().map(|d| d.total).sum();
        let from_cache = downloads.iter().filter(|d| d.cached).count();
        let rows = downloads
            .into_iter()
            .map(|d| {
                let label = if d.cached && d.loaded >= d.total {
                    "from cache".to_string()
                } else {
                    format!("{} / {}", file_size(d.loaded), file_size(d.total))
                };
                view! {
                    <div class="download">
                        <span class="file">{d.label}</span>
                        <progress max=d.total.max(1) value=d.loaded></progress>
                        <span class="muted">{label}</span>
                    </div>
                }
            })
            .collect_view();
        // Once everything is in, one line; the bars stay one click away.
        Some(if finished {
            view! {
                <details class="downloads">
                    <summary>{format!(
                        "{count} files ({}) checked against the manifest's sha256; {from_cache} from the browser's cache",
                        file_size(total)
                    )}</summary>
                    {rows}
                </details>
            }
            .into_any()
        } else {
            view! { <div class="downloads">{rows}</div> }.into_any()
        })
    }
}

#[component]
fn TextInput() -> impl IntoView {
    let state = state();
    let samples = move || {
        state.manifest.get().map(|m| {
            m.samples
                .into_iter()
                .enumerate()
                .map(|(i, sample)| {
                    let title = sample.clone();
                    let short: String = sample.chars().take(60).collect();
                    view! {
                        <button class="sample" title=title on:click=move |_| state.text.set(sample.clone())>
                            {format!("Sample {}: {short}…", i + 1)}
                        </button>
                    }
                })
                .collect_view()
        })
    };
    view! {
        <textarea id="text" rows="6" placeholder="Paste a case summary…"
            prop:value=move || state.text.get()
            on:input=move |ev| state.text.set(event_target_value(&ev))></textarea>
        <div class="samples">{samples}</div>
    }
}

#[component]
fn OptionsForm() -> impl IntoView {
    let state = state();
    let options = state.options;
    let methods = [
        Method::GaussLegendre,
        Method::RiemannTrapezoid,
        Method::RiemannMiddle,
        Method::RiemannLeft,
        Method::RiemannRight,
    ];
    let baselines = [Baseline::Zero, Baseline::Pad, Baseline::Mask];
    view! {
        <div class="options">
            <label>"Steps "
                <input id="n_steps" type="number" min="1" max=MAX_STEPS.to_string()
                    prop:value=move || options.get().n_steps.to_string()
                    on:change=move |ev| {
                        match event_target_value(&ev).trim().parse::<usize>() {
                            Ok(n) if (1..=MAX_STEPS).contains(&n) => options.update(|o| o.n_steps = n),
                            _ => state.error.set(Some(format!("Steps must be a whole number from 1 to {MAX_STEPS}."))),
                        }
                    }/>
            </label>
            <label>"Method "
                <select id="method" on:change=move |ev| {
                    if let Ok(m) = event_target_value(&ev).parse::<Method>() { options.update(|o| o.method = m) }
                }>
                    {methods.map(|m| view! {
                        <option value=m.name() selected=move || options.get().method == m>{m.name()}</option>
                    }).collect_view()}
                </select>
            </label>
            <label>"Baseline "
                <select id="baseline" on:change=move |ev| {
                    if let Ok(b) = event_target_value(&ev).parse::<Baseline>() { options.update(|o| o.baseline = b) }
                }>
                    {baselines.map(|b| view! {
                        <option value=b.name() selected=move || options.get().baseline == b>{b.name()}</option>
                    }).collect_view()}
                </select>
            </label>
            <label>
                <input id="merge" type="checkbox" prop:checked=move || options.get().merge_words
                    on:change=move |ev| { let on = event_target_checked(&ev); options.update(|o| o.merge_words = on) }/>
                " Merge word pieces into words"
            </label>
        </div>
    }
}

#[component]
fn ExplainButton() -> impl IntoView {
    let state = state();
    let ready = move || state.manifest.get().is_some() && !state.busy.get();
    let status = move || {
        state.busy.get().then(|| {
            let elapsed = ((state.now.get() - state.started_at.get()) / 1000.0).max(0.0);
            let steps = state.steps.get().map(|(done, total)| {
                view! {
                    <progress class="steps" max=total.max(1) value=done></progress>
                    <span class="muted">{format!("{done}/{total} points")}</span>
                }
            });
            view! {
                <span class="status" id="status"><span class="spinner"></span>
                    {format!("{} ({elapsed:.0} s)", state.status.get())}
                    {steps}
                </span>
            }
        })
    };
    view! {
        <div class="actions">
            <button id="explain" class="primary" disabled=move || !ready() on:click=move |_| run_explain(state)>
                "Explain"
            </button>
            {status}
            {move || state.share_link.get().map(|q| view! { <a class="share" href=q>"Link to this explanation"</a> })}
        </div>
    }
}

#[component]
fn Messages() -> impl IntoView {
    let state = state();
    view! {
        {move || state.error.get().map(|e| view! { <div class="error" role="alert" id="error">{e}</div> })}
        {move || state.notices.get().into_iter().map(|n| view! { <div class="notice">{n}</div> }).collect_view()}
    }
}

#[component]
fn ResultsView() -> impl IntoView {
    let state = state();
    move || {
        let outcomes = state.outcomes.get();
        if outcomes.is_empty() {
            return None;
        }
        let merge = state.options.get().merge_words;
        let rows = outcomes
            .into_iter()
            .map(|o| {
                let units = o.units(merge);
                let scale = row_scale(units.iter().map(|u| (u.score, u.special)));
                let tokens = units
                    .into_iter()
                    .map(|u| {
                        let class = if u.special { "tok special" } else { "tok" };
                        let style = if u.special { String::new() } else { format!("background:{}", colour(u.score, scale)) };
                        view! { <span class=class style=style title=format!("{:+.5}", u.score)>{u.text}</span> }
                    })
                    .collect_view();
                let similarity = if o.is_teacher {
                    "reference".to_string()
                } else {
                    optional(o.similarity_to_teacher, 3)
                };
                view! {
                    <div class="row" data-model=o.name.clone()>
                        <div class="row-head">
                            <span class="model-name">{o.name.clone()}</span>
                            <span>{format!("predicts {} ({:.1}%)", o.label(), 100.0 * o.probability())}</span>
                            <span>{format!("cosine to teacher: {similarity}")}</span>
                            <span class="muted">{format!("convergence δ {}", o.explanation.convergence_delta.map_or("—".into(), |d| format!("{d:+.2e}")))}</span>
                            <span class="muted">{format!("{:.0} ms", o.ms)}</span>
                        </div>
                        <div class="tokens">{tokens}</div>
                    </div>
                }
            })
            .collect_view();
        Some(view! {
            <section class="panel" id="results">
                <h2>"Attributions"</h2>
                <div class="legend">
                    <span class="swatch" style=format!("background:{}", colour(-1.0, 1.0))></span>" against the predicted class "
                    <span class="swatch" style=format!("background:{}", colour(1.0, 1.0))></span>" for it "
                    <span class="muted">"(intensity relative to each row's largest |attribution|; hover a token for its value)"</span>
                </div>
                {rows}
            </section>
        })
    }
}

#[component]
fn Leaderboard() -> impl IntoView {
    let state = state();
    move || {
        let manifest = state.manifest.get()?;
        let results = manifest.results;
        if results.models.is_empty() {
            return None;
        }
        let recommended = results.recommended.clone();
        let rows = results
            .models
            .into_iter()
            .map(|r| {
                let class = (recommended.as_deref() == Some(r.name.as_str())).then_some("recommended");
                let ci = r
                    .similarity_ci
                    .map_or(String::new(), |[lo, hi]| format!(" [{lo:.3}, {hi:.3}]"));
                view! {
                    <tr class=class>
                        <td>{r.name.clone()}</td>
                        <td>{format!("{}x{}", r.layers, r.hidden)}</td>
                        <td>{params_text(Some(r.params))}</td>
                        <td>{format!("{:.3}", r.accuracy)}</td>
                        <td>{format!("{:.3}", r.f1)}</td>
                        <td>{format!("{}{ci}", optional(r.similarity_mean, 3))}</td>
                        <td>{optional(r.spearman_mean, 3)}</td>
                        <td>{r.verdict.clone()}</td>
                    </tr>
                }
            })
            .collect_view();
        let verdict = match (&recommended, &results.recommendation) {
            (Some(name), _) => format!("Recommended: {name}"),
            (None, Some(why)) => why.clone(),
            (None, None) => String::new(),
        };
        Some(view! {
            <section class="panel" id="leaderboard">
                <h2>"Leaderboard (from the training run)"</h2>
                <table>
                    <thead><tr>
                        <th>"model"</th><th>"layers×hidden"</th><th>"params"</th><th>"test acc"</th>
                        <th>"macro-F1"</th><th>"similarity to teacher (95% CI)"</th><th>"Spearman"</th><th>"verdict"</th>
                    </tr></thead>
                    <tbody>{rows}</tbody>
                </table>
                <p class="recommendation">{verdict}</p>
            </section>
        })
    }
}
