//! The JavaScript-facing engine: pick a backend once per page, load models from bytes,
//! explain texts. Results cross to JavaScript as JSON strings.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use astrid::erasure::{Eraser, Erasure};
use astrid::explain::ExplainOptions;
use astrid::schema::ExplanationRecord;
use astrid::{LoadedModel, ModelFiles};
use burn::tensor::Device;
use burn::tensor::wgpu::WgpuBackend;
use wasm_bindgen::prelude::*;

thread_local! {
    static DEVICE: RefCell<Option<(Device, String)>> = const { RefCell::new(None) };
    static MODELS: RefCell<HashMap<String, Rc<LoadedModel>>> = RefCell::new(HashMap::new());
}

fn js_error(err: impl std::fmt::Display) -> JsValue {
    JsValue::from_str(&err.to_string())
}

fn device() -> Result<Device, JsValue> {
    DEVICE
        .with(|d| d.borrow().as_ref().map(|(device, _)| device.clone()))
        .ok_or_else(|| js_error("no backend yet: call initBackend() first"))
}

/// Starts the backend: WebGPU when `prefer_webgpu` and the browser gives an adapter,
/// otherwise burn's CPU backend. Returns a description ("webgpu" or "cpu (…)"). Once per page.
#[wasm_bindgen(js_name = initBackend)]
pub async fn init_backend(prefer_webgpu: bool) -> Result<String, JsValue> {
    if let Some(description) = DEVICE.with(|d| d.borrow().as_ref().map(|(_, s)| s.clone())) {
        return Ok(description);
    }
    let (device, description) = if prefer_webgpu {
        match Device::wgpu_options()
            .graphics_api(WgpuBackend::WebGpu)
            .init_async()
            .await
        {
            Ok(device) => (device, "webgpu".to_string()),
            Err(err) => (Device::flex(), format!("cpu (WebGPU unavailable: {err:?})")),
        }
    } else {
        (Device::flex(), "cpu".to_string())
    };
    DEVICE.with(|d| *d.borrow_mut() = Some((device, description.clone())));
    Ok(description)
}

/// Loads a model from its files' contents under `name`, replacing one of the same name.
#[wasm_bindgen(js_name = loadModel)]
pub fn load_model(
    name: String,
    config_json: String,
    weights: Vec<u8>,
    tokenizer_json: Vec<u8>,
    meta_json: Option<String>,
) -> Result<(), JsValue> {
    let files = ModelFiles {
        config_json,
        weights,
        tokenizer_json,
        meta_json,
        origin: name.clone(),
    };
    let model = LoadedModel::from_files(files, None, &device()?).map_err(js_error)?;
    MODELS.with(|m| m.borrow_mut().insert(name, Rc::new(model)));
    Ok(())
}

/// Explains `text` with the model loaded as `name`. `options_json` holds any of
/// `{attribution, n_steps, method, baseline, internal_batch_size, target}`; the result is an
/// [`ExplanationRecord`] as JSON.
/// `on_progress(done, total)` hears of each batch of interpolation points.
#[wasm_bindgen]
pub async fn explain(
    name: String,
    text: String,
    options_json: String,
    on_progress: Option<js_sys::Function>,
) -> Result<String, JsValue> {
    let model = MODELS
        .with(|m| m.borrow().get(&name).cloned())
        .ok_or_else(|| js_error(format!("model '{name}' is not loaded")))?;
    let options: ExplainOptions = if options_json.trim().is_empty() {
        ExplainOptions::default()
    } else {
        serde_json::from_str(&options_json).map_err(|e| js_error(format!("options: {e}")))?
    };
    let report = |done: usize, total: usize| {
        if let Some(f) = &on_progress {
            let _ = f.call2(
                &JsValue::NULL,
                &JsValue::from(done as u32),
                &JsValue::from(total as u32),
            );
        }
    };
    let result = model
        .explain_text_with_progress(&text, &options, Some(&report))
        .await
        .map_err(js_error)?;
    let record = ExplanationRecord::new(&name, &model.meta.labels, &result, &options);
    serde_json::to_string(&record).map_err(js_error)
}

/// The class probabilities of the model loaded as `name` for `ids` with the tokens at
/// `positions` erased (`erasure`: "mask" or "delete"): what a model loses when another
/// model's evidence is taken away. Forward passes only.
#[wasm_bindgen(js_name = probabilitiesWithout)]
pub async fn probabilities_without(
    name: String,
    ids: Vec<u32>,
    positions: Vec<u32>,
    erasure: String,
) -> Result<Vec<f32>, JsValue> {
    let model = MODELS
        .with(|m| m.borrow().get(&name).cloned())
        .ok_or_else(|| js_error(format!("model '{name}' is not loaded")))?;
    let erasure: Erasure = erasure.parse().map_err(js_error)?;
    let eraser = Eraser::new(erasure, model.tokenizer.token_id("[MASK]")).map_err(js_error)?;
    let positions: Vec<usize> = positions.into_iter().map(|p| p as usize).collect();
    let erased = eraser.without(&ids, &positions);
    astrid::explain::probabilities(&model.model, &erased)
        .await
        .map_err(js_error)
}
