//! Weights in Hugging Face layout: round trips, the parity fixture, and clear errors.

use std::path::PathBuf;

use astrid::explain::read_f32;
use astrid::weights::{load_safetensors_bytes, to_safetensors_bytes};
use astrid::{LoadedModel, ModelConfig};
use burn::module::Module;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};

fn fixture(name: &str) -> PathBuf {
    // Read at run time: a build cache shared with a checkout elsewhere keeps the compile-time path.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("../tests/fixtures")
        .join(name)
}

fn logits(model: &astrid::EncoderClassifier, ids: &[u32], device: &Device) -> Vec<f32> {
    let data: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
    let ids = Tensor::<2, Int>::from_data(TensorData::new(data, [1, ids.len()]), device);
    pollster::block_on(read_f32(model.forward(ids, None))).unwrap()
}

/// safetensors header keys, read directly from the bytes.
fn keys(bytes: &[u8]) -> Vec<String> {
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + len]).unwrap();
    let mut keys: Vec<String> = header
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| *k != "__metadata__")
        .cloned()
        .collect();
    keys.sort();
    keys
}

#[test]
fn both_layouts_round_trip_through_hugging_face_names() {
    let device = Device::flex();
    for (preset, expected_key) in [
        ("tiny_bert", "bert.encoder.layer.1.attention.output.LayerNorm.weight"),
        (
            "tiny_distilbert",
            "distilbert.transformer.layer.1.attention.q_lin.weight",
        ),
    ] {
        let config = ModelConfig::preset(preset).unwrap();
        let model = config.init(&device).valid();
        let bytes = to_safetensors_bytes(&model).unwrap();
        let names = keys(&bytes);
        assert!(names.contains(&expected_key.to_string()), "{preset}: {names:?}");
        assert!(names.contains(&"classifier.weight".to_string()), "{preset}: {names:?}");
        assert!(
            names.iter().all(|k| !k.contains("gamma") && !k.starts_with("layers.")),
            "{preset}: {names:?}"
        );
        let (loaded, report) = load_safetensors_bytes(&config, bytes, "memory", false, &device).unwrap();
        assert!(report.fresh_head.is_empty());
        let ids = [1, 7, 9, 30, 2];
        assert_eq!(
            logits(&model, &ids, &device),
            logits(&loaded.valid(), &ids, &device),
            "{preset}"
        );
    }
}

/// The fixture was written by transformers; its probabilities were computed by PyTorch.
#[test]
fn transformers_checkpoint_gives_pytorchs_probabilities() {
    let device = Device::flex();
    let model = LoadedModel::from_dir(&fixture("tiny_bert"), None, &device).unwrap();
    let oracle: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("tiny_bert_oracle.json")).unwrap()).unwrap();
    for case in oracle["cases"].as_array().unwrap() {
        let ids: Vec<u32> = case["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let ours = model.tokenizer.encode(case["text"].as_str().unwrap()).unwrap();
        assert_eq!(ours.ids, ids, "tokenization of {}", case["text"]);
        let l = logits(&model.model, &ids, &device);
        let p = pollster::block_on(read_f32(softmax(Tensor::<1>::from_floats(l.as_slice(), &device), 0))).unwrap();
        for (a, b) in p.iter().zip(case["probs"].as_array().unwrap()) {
            assert!(
                (a - b.as_f64().unwrap() as f32).abs() < 1e-5,
                "{p:?} vs {}",
                case["probs"]
            );
        }
    }
}

#[test]
fn mismatched_weights_are_clear_errors() {
    let device = Device::flex();
    let bert = ModelConfig::preset("tiny_bert").unwrap();
    let bytes = to_safetensors_bytes(&bert.init(&device)).unwrap();

    let mut wider = bert.clone();
    wider.hidden_size = 32;
    wider.intermediate_size = 64;
    let err = load_safetensors_bytes(&wider, bytes.clone(), "m/model.safetensors", false, &device)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("m/model.safetensors") && err.to_lowercase().contains("shape"),
        "{err}"
    );

    let distil = ModelConfig::preset("tiny_distilbert").unwrap();
    let err = load_safetensors_bytes(&distil, bytes.clone(), "m/model.safetensors", false, &device)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("do not match the architecture"), "{err}");

    let err = load_safetensors_bytes(
        &bert,
        b"not safetensors".to_vec(),
        "m/model.safetensors",
        false,
        &device,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("m/model.safetensors"), "{err}");
}

#[test]
fn checkpoint_without_head_needs_permission() {
    let device = Device::flex();
    let bert = ModelConfig::preset("tiny_bert").unwrap();
    let model = bert.init(&device);
    // A plain encoder: drop the pooler and classifier, and the "bert." prefix (BertModel layout).
    let bytes = to_safetensors_bytes(&model).unwrap();
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + len]).unwrap();
    let data = &bytes[8 + len..];
    let mut out_header = serde_json::Map::new();
    let mut out_data = Vec::new();
    for (k, v) in header.as_object().unwrap() {
        if k == "__metadata__" || k.starts_with("classifier") || k.contains("pooler") {
            continue;
        }
        let [start, end] = [
            v["data_offsets"][0].as_u64().unwrap() as usize,
            v["data_offsets"][1].as_u64().unwrap() as usize,
        ];
        let mut entry = v.clone();
        entry["data_offsets"] = serde_json::json!([out_data.len(), out_data.len() + end - start]);
        out_data.extend_from_slice(&data[start..end]);
        out_header.insert(k.trim_start_matches("bert.").to_string(), entry);
    }
    let header_bytes = serde_json::to_vec(&out_header).unwrap();
    let mut encoder = (header_bytes.len() as u64).to_le_bytes().to_vec();
    encoder.extend(header_bytes);
    encoder.extend(out_data);

    let err = load_safetensors_bytes(&bert, encoder.clone(), "enc", false, &device)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("no classification head"), "{err}");
    let (_, report) = load_safetensors_bytes(&bert, encoder, "enc", true, &device).unwrap();
    assert_eq!(report.fresh_head.len(), 4, "{:?}", report.fresh_head);
}

#[test]
fn model_directory_errors_name_the_file() {
    let device = Device::flex();
    let err = LoadedModel::from_dir(&fixture("does_not_exist"), None, &device)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("does_not_exist") && err.contains("config.json"), "{err}");
    let dir = std::env::temp_dir().join(format!("astrid-bad-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixture("tiny_bert").join(f), dir.join(f)).unwrap();
    }
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("tiny_bert").join("config.json")).unwrap()).unwrap();
    config["hidden_size"] = "big".into();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let err = LoadedModel::from_dir(&dir, None, &device).err().unwrap().to_string();
    assert!(err.contains("config.json") && err.contains("hidden_size"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A model directory is replaced only when it is Astrid's own: a directory holding a user's
/// file is refused and left byte for byte; an earlier model directory is replaced, and what a
/// killed write left beside it is removed.
#[test]
fn a_model_directory_replaces_only_its_own() {
    use astrid::bundle::{ModelMeta, save_model_dir};
    let base = std::env::temp_dir().join(format!("astrid-save-model-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let device = Device::flex();
    let model = ModelConfig::preset("tiny_bert").unwrap().init(&device);
    let tokenizer = std::fs::read(fixture("tiny_bert/tokenizer.json")).unwrap();
    let meta = ModelMeta {
        name: "tiny".into(),
        labels: vec!["a".into(), "b".into()],
        max_length: 16,
    };
    let user = base.join("user");
    std::fs::create_dir_all(&user).unwrap();
    std::fs::write(user.join("thesis.tex"), b"chapter one").unwrap();
    let err = save_model_dir(&user, &model, &tokenizer, &meta)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not replaced") && err.contains("astrid.json"), "{err}");
    assert_eq!(std::fs::read(user.join("thesis.tex")).unwrap(), b"chapter one");
    assert_eq!(std::fs::read_dir(&user).unwrap().count(), 1);

    let ours = base.join("model");
    // No process has pid 4000000000: this staging directory was left by a killed write.
    let stale = base.join(".model.partial-4000000000");
    std::fs::create_dir_all(&stale).unwrap();
    save_model_dir(&ours, &model, &tokenizer, &meta).unwrap();
    save_model_dir(&ours, &model, &tokenizer, &meta).unwrap();
    assert!(ours.join("model.safetensors").exists());
    assert_eq!(stale.exists(), !cfg!(target_os = "linux"));
    std::fs::write(ours.join("notes.txt"), b"mine").unwrap();
    let err = save_model_dir(&ours, &model, &tokenizer, &meta)
        .unwrap_err()
        .to_string();
    assert!(err.contains("notes.txt"), "{err}");
    assert_eq!(std::fs::read(ours.join("notes.txt")).unwrap(), b"mine");
    std::fs::remove_dir_all(&base).unwrap();
}
