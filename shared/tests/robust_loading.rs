//! The model loader on arbitrary and damaged files: a configuration, weights or tokenizer
//! that is not what it should be gives an error with a message, never a panic. Inputs are
//! random bytes and the committed tiny BERT fixture's files with bytes changed, cut or added.

use std::path::PathBuf;

use astrid::{LoadedModel, ModelFiles};
use burn::tensor::Device;
use proptest::prelude::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/tiny_bert")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

struct Fixture {
    config: Vec<u8>,
    weights: Vec<u8>,
    tokenizer: Vec<u8>,
}

fn files() -> &'static Fixture {
    static FILES: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
    FILES.get_or_init(|| Fixture {
        config: fixture("config.json"),
        weights: fixture("model.safetensors"),
        tokenizer: fixture("tokenizer.json"),
    })
}

fn try_load(config: &[u8], weights: Vec<u8>, tokenizer: Vec<u8>) -> astrid::Result<LoadedModel> {
    LoadedModel::from_files(
        ModelFiles {
            config_json: String::from_utf8_lossy(config).to_string(),
            weights,
            tokenizer_json: tokenizer,
            meta_json: None,
            origin: "fuzz".into(),
        },
        None,
        &Device::flex(),
    )
}

/// Loads; a result either way is fine, and an error must say something.
fn load(config: &[u8], weights: Vec<u8>, tokenizer: Vec<u8>) {
    if let Err(e) = try_load(config, weights, tokenizer) {
        assert!(!e.to_string().trim().is_empty(), "an error without a message");
    }
}

/// A change to a file: overwrite bytes, cut it short, or insert bytes.
#[derive(Debug, Clone)]
enum Damage {
    Overwrite(usize, Vec<u8>),
    Truncate(usize),
    Insert(usize, Vec<u8>),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8)).prop_map(|(at, b)| Damage::Overwrite(at, b)),
        any::<usize>().prop_map(Damage::Truncate),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8)).prop_map(|(at, b)| Damage::Insert(at, b)),
    ]
}

/// Applies `damage` within the first `focus` bytes (where the structure of a file lives).
fn apply(bytes: &[u8], damage: &Damage, focus: usize) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let span = focus.min(out.len()).max(1);
    match damage {
        Damage::Overwrite(at, with) => {
            for (k, b) in with.iter().enumerate() {
                let i = (at % span + k).min(out.len().saturating_sub(1));
                if let Some(slot) = out.get_mut(i) {
                    *slot = *b;
                }
            }
        }
        Damage::Truncate(at) => out.truncate(at % (out.len() + 1)),
        Damage::Insert(at, with) => {
            let i = at % (span + 1);
            out.splice(i..i, with.iter().copied());
        }
    }
    out
}

/// The safetensors header: its 8-byte length, then the JSON.
fn header_len(weights: &[u8]) -> usize {
    8 + u64::from_le_bytes(weights[..8].try_into().unwrap()) as usize
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_for_any_file(
        config in proptest::collection::vec(any::<u8>(), 0..300),
        weights in proptest::collection::vec(any::<u8>(), 0..300),
        tokenizer in proptest::collection::vec(any::<u8>(), 0..300),
        which in 0..4usize,
    ) {
        let f = files();
        // One file random, the others real (so the loader gets past the earlier checks), or all random.
        match which {
            0 => load(&config, f.weights.clone(), f.tokenizer.clone()),
            1 => load(&f.config, weights, f.tokenizer.clone()),
            2 => load(&f.config, f.weights.clone(), tokenizer),
            _ => load(&config, weights, tokenizer),
        }
    }

    #[test]
    fn damaged_weights(d in damage()) {
        let f = files();
        let focus = header_len(&f.weights) + 64;
        load(&f.config, apply(&f.weights, &d, focus), f.tokenizer.clone());
    }

    #[test]
    fn damaged_config(d in damage()) {
        let f = files();
        load(&apply(&f.config, &d, f.config.len()), f.weights.clone(), f.tokenizer.clone());
    }

    #[test]
    fn damaged_tokenizer(d in damage()) {
        let f = files();
        load(&f.config, f.weights.clone(), apply(&f.tokenizer, &d, f.tokenizer.len()));
    }

    #[test]
    fn configs_with_arbitrary_numbers(field in prop::sample::select(vec![
        "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
        "max_position_embeddings", "type_vocab_size", "pad_token_id",
    ]), value in prop_oneof![Just(0u64), Just(u64::MAX), Just(1u64 << 40), 0u64..100_000]) {
        let f = files();
        let mut config: serde_json::Value = serde_json::from_slice(&f.config).unwrap();
        config[field] = serde_json::json!(value);
        load(config.to_string().as_bytes(), f.weights.clone(), f.tokenizer.clone());
    }
}

#[test]
fn the_undamaged_fixture_loads() {
    let f = files();
    let loaded = try_load(&f.config, f.weights.clone(), f.tokenizer.clone());
    assert!(loaded.is_ok(), "{:?}", loaded.err());
}

/// A tokenizer.json whose decoder holds an invalid \u escape made tokenizers panic (an
/// `expect` in its decoder's deserializer; found by `damaged_tokenizer`): now an error that
/// names the file's line and column.
#[test]
fn a_tokenizer_that_is_not_json_is_an_error_not_a_panic() {
    let f = files();
    let text = String::from_utf8(f.tokenizer.clone()).unwrap();
    let decoder = r###""prefix": "##""###;
    assert!(text.contains(decoder), "the fixture's decoder changed");
    let damaged = text.replace(decoder, r#""prefix": "\udfff""#);
    let err = try_load(&f.config, f.weights.clone(), damaged.into_bytes())
        .err()
        .expect("refused");
    let message = err.to_string();
    assert!(message.contains("not a valid tokenizer.json"), "{message}");
    assert!(message.contains("line 1 column"), "{message}");
}

#[test]
fn a_config_larger_than_its_weights_is_refused_before_allocating() {
    let f = files();
    let mut config: serde_json::Value = serde_json::from_slice(&f.config).unwrap();
    config["vocab_size"] = serde_json::json!(50_000_000u64);
    let err = try_load(config.to_string().as_bytes(), f.weights.clone(), f.tokenizer.clone())
        .err()
        .expect("refused");
    assert!(err.to_string().contains("do not belong together"), "{err}");
}

#[test]
fn weights_with_nan_or_infinity_name_the_tensor() {
    let f = files();
    let header: serde_json::Value = serde_json::from_slice(&f.weights[8..header_len(&f.weights)]).unwrap();
    let (name, info) = header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, v)| *k != "__metadata__" && v["dtype"] == "F32")
        .min_by_key(|(k, _)| k.to_string())
        .unwrap();
    let start = header_len(&f.weights) + info["data_offsets"][0].as_u64().unwrap() as usize;
    for (value, shown) in [(f32::NAN, "NaN"), (f32::INFINITY, "inf")] {
        let mut weights = f.weights.clone();
        weights[start + 4..start + 8].copy_from_slice(&value.to_le_bytes());
        let err = try_load(&f.config, weights, f.tokenizer.clone())
            .err()
            .expect("refused");
        let message = err.to_string();
        assert!(
            message.contains(&format!("tensor '{name}' holds {shown} at element 1")),
            "{message}"
        );
    }
}
