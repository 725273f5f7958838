//! The browser-only paths, in headless Chromium (`wasm-bindgen-test-runner`, see
//! `.cargo/config.toml` and `web/webdriver.json`): loading a model from bytes, async readback
//! on WebGPU and on the wasm CPU backend, the engine's JSON API, and Web Crypto's sha256.
//! Attributions are checked against Captum's for the committed fixture model.
#![cfg(target_arch = "wasm32")]

use astrid::explain::ExplainOptions;
use astrid::{LoadedModel, ModelFiles};
use burn::tensor::Device;
use burn::tensor::wgpu::WgpuBackend;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const CONFIG: &str = include_str!("../../tests/fixtures/tiny_bert/config.json");
const WEIGHTS: &[u8] = include_bytes!("../../tests/fixtures/tiny_bert/model.safetensors");
const TOKENIZER: &[u8] = include_bytes!("../../tests/fixtures/tiny_bert/tokenizer.json");
const ORACLE: &str = include_str!("../../tests/fixtures/tiny_bert_oracle.json");

fn files() -> ModelFiles {
    ModelFiles {
        config_json: CONFIG.to_string(),
        weights: WEIGHTS.to_vec(),
        tokenizer_json: TOKENIZER.to_vec(),
        meta_json: None,
        origin: "fixture".into(),
    }
}

/// Captum's answer for the oracle's first case (default options: 50 Gauss-Legendre steps,
/// zero baseline).
fn oracle() -> (String, Vec<f64>, Vec<String>) {
    let oracle: serde_json::Value = serde_json::from_str(ORACLE).unwrap();
    let case = &oracle["cases"][0];
    assert_eq!(
        case["cli_args"].as_array().map(Vec::len),
        Some(0),
        "first case uses the defaults"
    );
    let attributions = case["attributions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let tokens = case["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    (case["text"].as_str().unwrap().to_string(), attributions, tokens)
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

async fn explains_like_captum(device: &Device) {
    let model = LoadedModel::from_files(files(), None, device).expect("loads from bytes");
    let (text, expected, tokens) = oracle();
    let result = model
        .explain_text(&text, &ExplainOptions::default())
        .await
        .expect("explains");
    assert_eq!(result.tokenized.tokens, tokens);
    let got: Vec<f64> = result.explanation.attributions.iter().map(|&a| a as f64).collect();
    let similarity = cosine(&got, &expected);
    assert!(similarity > 0.9999, "cosine with Captum {similarity}");
    let delta = result.explanation.convergence_delta.unwrap();
    assert!(delta.abs() < 1e-3, "convergence delta {delta}");
}

#[wasm_bindgen_test]
async fn the_cpu_backend_in_wasm_matches_captum() {
    explains_like_captum(&Device::flex()).await;
}

#[wasm_bindgen_test]
async fn webgpu_matches_captum() {
    let device = Device::wgpu_options()
        .graphics_api(WgpuBackend::WebGpu)
        .init_async()
        .await
        .expect("a WebGPU device (the runner starts Chromium with --enable-unsafe-webgpu)");
    explains_like_captum(&device).await;
}

#[wasm_bindgen_test]
async fn the_engine_api_loads_bytes_and_answers_json() {
    let backend = web::init_backend(false).await.unwrap();
    assert_eq!(backend, "cpu");
    web::load_model("tiny".into(), CONFIG.into(), WEIGHTS.to_vec(), TOKENIZER.to_vec(), None).unwrap();
    let (text, expected, _) = oracle();
    // Progress arrives after each batch of points, ending at 50/50.
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let record = {
        let seen = seen.clone();
        wasm_bindgen::closure::Closure::<dyn FnMut(u32, u32)>::new(move |done, total| {
            seen.borrow_mut().push((done, total))
        })
    };
    let report: js_sys::Function = wasm_bindgen::JsCast::unchecked_ref::<js_sys::Function>(record.as_ref()).clone();
    let options = "{\"n_steps\": 50, \"internal_batch_size\": 20}";
    let json = web::explain("tiny".into(), text, options.into(), Some(report))
        .await
        .unwrap();
    assert_eq!(*seen.borrow(), [(20, 50), (40, 50), (50, 50)]);
    let answer: serde_json::Value = serde_json::from_str(&json).unwrap();
    let got: Vec<f64> = answer["attributions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(cosine(&got, &expected) > 0.9999);
    // Errors come back as errors, with what was wrong.
    let err = web::explain("nope".into(), "x".into(), String::new(), None)
        .await
        .unwrap_err();
    assert!(err.as_string().unwrap().contains("'nope' is not loaded"));
    let err = web::explain("tiny".into(), "x".into(), "{\"n_steps\": \"many\"}".into(), None)
        .await
        .unwrap_err();
    assert!(err.as_string().unwrap().contains("options"));
    let err = web::load_model("bad".into(), CONFIG.into(), vec![1, 2, 3], TOKENIZER.to_vec(), None).unwrap_err();
    assert!(!err.as_string().unwrap().is_empty());
}

#[wasm_bindgen_test]
async fn web_crypto_sha256_has_the_known_digest() {
    let bytes = js_sys::Uint8Array::from(&b"abc"[..]);
    assert_eq!(
        web::download::sha256_hex(&bytes).await.unwrap(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}
