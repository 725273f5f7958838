//! The page's work: starting the compute backend, loading the bundle, downloading and
//! checking files, explaining with every chosen model; each step updates the state.

use std::cell::RefCell;
use std::collections::HashMap;

use js_sys::{Promise, Reflect, Uint8Array, Uint32Array};
use leptos::prelude::*;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, future_to_promise};

use crate::deeplink::{DeepLink, PageOptions};
use crate::download::{buffer_of, fetch_text, fetch_verified, is_cached, js_text};
use crate::outcome::{EvidenceDrop, ModelOutcome, compare_with_teacher, result_json, teacher_evidence};
use crate::worker_client::{client, field, request};
use astrid::bundle::{CONFIG_FILE, META_FILE, TOKENIZER_FILE, WEIGHTS_FILE};
use astrid::schema::ExplanationRecord;
use astrid::schema::bundle::{FileEntry, MANIFEST_FILE, Manifest, ManifestModel};

use super::state::{AppState, BackendInfo, BackendKind, FileProgress, now_ms};
use super::{BUNDLE_DIR, INTERNAL_BATCH, MAX_TEXT_CHARS};

thread_local! {
    /// Work done once per page ("backend", "tokenizer", "model:NAME"): every caller awaits
    /// the same promise.
    static ONCE: RefCell<HashMap<String, Promise>> = RefCell::new(HashMap::new());
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

pub(crate) async fn ensure_backend(state: AppState) -> Result<BackendInfo, String> {
    let choice = state.backend_choice.get_untracked().name();
    let answer = once("backend".into(), move || async move {
        client()?
            .call(&request("init", &[("backend", choice.into())]), &[])
            .await
    })
    .await?;
    let description = field(&answer, "backend").as_string().unwrap_or_default();
    let info = if description == BackendKind::WebGpu.name() {
        BackendInfo {
            kind: BackendKind::WebGpu,
            detail: field(&answer, "adapter").as_string(),
        }
    } else {
        BackendInfo {
            kind: BackendKind::Cpu,
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
    let url = format!("{BUNDLE_DIR}/{path}");
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
        download(state, TOKENIZER_FILE.into(), entry).await.map(JsValue::from)
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
        let config = utf8(&file(CONFIG_FILE)?.await?, CONFIG_FILE)?;
        let meta = utf8(&file(META_FILE)?.await?, META_FILE)?;
        let weights = file(WEIGHTS_FILE)?.await?;
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
            backend.kind.name()
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
        let explanation: ExplanationRecord = serde_json::from_str(&json)
            .map_err(|e| format!("{}: unexpected answer from the engine: {e}", model.name))?;
        outcomes.push(ModelOutcome {
            name: model.name.clone(),
            is_teacher: model.is_teacher(),
            explanation,
            ms: field(&answer, "ms").as_f64().unwrap_or(f64::NAN),
            similarity_to_teacher: None,
            without_teacher_evidence: None,
        });
        state.outcomes.set(outcomes.clone());
    }
    compare_with_teacher(&mut outcomes)?;
    Ok((backend.kind.name().to_string(), outcomes))
}

/// "Explain" as a Leptos action: its `pending()` is the page's busy state.
#[derive(Clone, Copy)]
pub(crate) struct ExplainAction(pub(crate) Action<(), ()>);

impl ExplainAction {
    pub(crate) fn new(state: AppState) -> Self {
        Self(Action::new_local(move |_: &()| explain_and_show(state)))
    }

    pub(crate) fn busy(self) -> bool {
        self.0.pending().get()
    }

    /// Starts an explanation unless one is running.
    pub(crate) fn run(self) {
        if !self.0.pending().get_untracked() {
            self.0.dispatch(());
        }
    }
}

/// Explains with every chosen model and shows the outcome (or the error), then makes the
/// address bar reproduce it.
async fn explain_and_show(state: AppState) {
    state.error.set(None);
    state.notices.set(Vec::new());
    state.outcomes.set(Vec::new());
    state.started_at.set(now_ms());
    clear_window_result();
    let link = current_link(state, true);
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
    let query = link.to_query();
    if let Some(window) = web_sys::window()
        && let Ok(history) = window.history()
    {
        let _ = history.replace_state_with_url(&JsValue::NULL, "", Some(&query));
    }
    state.share_link.set(Some(query));
    state.status.set(String::new());
}

/// Erases the teacher's top-k tokens (k and the erasure as in the training run) from the
/// explained text and asks every shown model for its probabilities again: does each one
/// lose what the teacher loses? Forward passes only.
async fn remove_teacher_evidence(state: AppState) -> Result<Vec<ModelOutcome>, String> {
    let mut outcomes = state.outcomes.get_untracked();
    let teacher = outcomes
        .iter()
        .find(|o| o.is_teacher)
        .map(|o| o.explanation.clone())
        .ok_or_else(|| "Explain with the teacher first: its top tokens are the ones removed.".to_string())?;
    let manifest = state
        .manifest
        .get_untracked()
        .ok_or_else(|| "The model bundle has not loaded (see the message above).".to_string())?;
    let k = manifest.results.thresholds.top_k.max(1);
    let erasure = manifest
        .results
        .models
        .iter()
        .find_map(|m| m.faithfulness.map(|f| f.erasure))
        .unwrap_or_default();
    let (positions, removed) = teacher_evidence(&teacher, k);
    let positions: Vec<u32> = positions.into_iter().map(|p| p as u32).collect();
    let worker = client()?;
    for outcome in outcomes.iter_mut() {
        state
            .status
            .set(format!("Without the teacher's top {k} tokens: {}…", outcome.name));
        let fields = [
            ("name", JsValue::from_str(&outcome.name)),
            ("ids", Uint32Array::from(&teacher.input_ids[..]).into()),
            ("positions", Uint32Array::from(&positions[..]).into()),
            ("erasure", JsValue::from_str(erasure.name())),
        ];
        let answer = worker
            .call(&request("without", &fields), &[])
            .await
            .map_err(|e| format!("{}: {e}", outcome.name))?;
        let probs: Vec<f32> = js_sys::Array::from(&answer)
            .iter()
            .map(|v| v.as_f64().unwrap_or(f64::NAN) as f32)
            .collect();
        outcome.without_teacher_evidence = Some(EvidenceDrop {
            k: positions.len(),
            erasure,
            removed: removed.clone(),
            before: outcome.probability(),
            after: probs.get(outcome.explanation.target).copied().unwrap_or(f32::NAN),
        });
    }
    Ok(outcomes)
}

/// "Remove the teacher's top-k tokens" as a Leptos action.
#[derive(Clone, Copy)]
pub(crate) struct EvidenceAction(pub(crate) Action<(), ()>);

impl EvidenceAction {
    pub(crate) fn new(state: AppState) -> Self {
        Self(Action::new_local(move |_: &()| async move {
            state.error.set(None);
            match remove_teacher_evidence(state).await {
                Ok(outcomes) => {
                    let backend = state.backend.get_untracked().map_or("cpu", |b| b.kind.name());
                    set_window_result(&result_json(backend, &outcomes));
                    state.outcomes.set(outcomes);
                }
                Err(error) => state.error.set(Some(error)),
            }
            state.status.set(String::new());
        }))
    }

    pub(crate) fn busy(self) -> bool {
        self.0.pending().get()
    }

    pub(crate) fn run(self) {
        if !self.0.pending().get_untracked() {
            self.0.dispatch(());
        }
    }
}

pub(crate) fn read_link() -> (DeepLink, Vec<String>) {
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

/// The bundle's manifest, fetched and checked: what the page's bundle resource loads.
pub(crate) async fn fetch_manifest() -> Result<Manifest, String> {
    let manifest_url = format!("{BUNDLE_DIR}/{MANIFEST_FILE}");
    match fetch_text(&manifest_url).await {
        Ok(text) => Manifest::parse(&text, &manifest_url),
        Err(e) => Err(format!(
            "Cannot load the model bundle: {e}. Put a bundle next to this page with `trainer export --run RUN_DIR --to www/models`."
        )),
    }
}

/// Shows a loaded bundle (or why it could not be loaded): the models the link chose, a
/// sample text, which models are cached; runs the link's explanation when it asks to.
pub(crate) async fn show_bundle(
    state: AppState,
    link: DeepLink,
    explain: ExplainAction,
    manifest: Result<Manifest, String>,
) {
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
        if let Some(weights) = model.files.get(WEIGHTS_FILE)
            && is_cached(&format!("{BUNDLE_DIR}/{}/{WEIGHTS_FILE}", model.name), weights).await
        {
            cached.push(model.name.clone());
        }
    }
    state.cached.set(cached);
    state.manifest.set(Some(manifest));
    if link.run {
        explain.run();
    }
}
