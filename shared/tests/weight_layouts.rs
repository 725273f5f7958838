//! Hugging Face checkpoint directories in the layouts seen in the wild, from the committed
//! tiny BERT fixture: the older tokenizer files (`vocab.txt` + `tokenizer_config.json`) in
//! place of `tokenizer.json`, and `pytorch_model.bin` alone.

use std::path::{Path, PathBuf};

use astrid::LoadedModel;
use astrid::bundle::{TOKENIZER_CONFIG_FILE, VOCAB_FILE, read_tokenizer_json};
use burn::tensor::Device;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny_bert")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("astrid-layouts-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The fixture's vocabulary as vocab.txt: token by id, one per line.
fn vocab_txt() -> String {
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture_dir().join("tokenizer.json")).unwrap()).unwrap();
    let vocab = json["model"]["vocab"].as_object().unwrap();
    let mut tokens: Vec<(u64, &str)> = vocab.iter().map(|(t, id)| (id.as_u64().unwrap(), t.as_str())).collect();
    tokens.sort();
    assert!(
        tokens.iter().enumerate().all(|(i, (id, _))| *id == i as u64),
        "ids 0..n"
    );
    tokens.iter().map(|(_, t)| format!("{t}\n")).collect()
}

/// A checkpoint directory with the fixture's weights and config, and `extra` files.
fn checkpoint(name: &str, extra: &[(&str, &[u8])]) -> PathBuf {
    let dir = scratch(name);
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture_dir().join(file), dir.join(file)).unwrap();
    }
    for (file, bytes) in extra {
        std::fs::write(dir.join(file), bytes).unwrap();
    }
    dir
}

fn load(dir: &Path) -> astrid::Result<LoadedModel> {
    LoadedModel::from_dir(dir, Some(64), &Device::flex())
}

#[test]
fn vocab_txt_without_tokenizer_json_tokenizes_as_the_fast_tokenizer_does() {
    let vocab = vocab_txt();
    let dir = checkpoint("vocab", &[(VOCAB_FILE, vocab.as_bytes())]);
    let reference = load(&fixture_dir()).unwrap();
    let built = load(&dir).unwrap();
    for text in [
        "The officers searched the home without a warrant.",
        "NOTABLY, the appeal was filed after the statutory deadline; unbelievably late!",
        "Ünïcödé and emojis 🙂 and numbers 12345",
    ] {
        let (a, b) = (
            reference.tokenizer.encode(text).unwrap(),
            built.tokenizer.encode(text).unwrap(),
        );
        assert_eq!(a.ids, b.ids, "{text}");
        assert_eq!(a.special, b.special, "{text}");
    }
    // do_lower_case false keeps the case: capitalised words are other pieces (or unknown).
    let cased = checkpoint(
        "cased",
        &[
            (VOCAB_FILE, vocab.as_bytes()),
            (TOKENIZER_CONFIG_FILE, br#"{"do_lower_case": false}"#),
        ],
    );
    let cased_model = load(&cased).unwrap();
    let text = "The Officers";
    assert_ne!(
        cased_model.tokenizer.encode(text).unwrap().ids,
        reference.tokenizer.encode(text).unwrap().ids
    );
    for dir in [dir, cased] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn a_vocabulary_without_the_special_tokens_is_named() {
    let vocab: String = vocab_txt()
        .lines()
        .filter(|t| *t != "[MASK]")
        .map(|t| format!("{t}\n"))
        .collect();
    let dir = checkpoint("no-mask", &[(VOCAB_FILE, vocab.as_bytes())]);
    let err = read_tokenizer_json(&dir).unwrap_err().to_string();
    assert!(
        err.contains("vocab.txt") && err.contains("has no [MASK] token"),
        "{err}"
    );
    let twice = format!("{}[CLS]\n", vocab_txt());
    std::fs::write(dir.join(VOCAB_FILE), twice).unwrap();
    let err = read_tokenizer_json(&dir).unwrap_err().to_string();
    assert!(err.contains("'[CLS]' appears twice"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn only_pytorch_model_bin_says_to_convert_it() {
    let dir = scratch("bin");
    std::fs::copy(fixture_dir().join("config.json"), dir.join("config.json")).unwrap();
    std::fs::copy(fixture_dir().join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    std::fs::write(dir.join("pytorch_model.bin"), b"PK\x03\x04 a pickle").unwrap();
    let err = load(&dir).err().expect("no safetensors").to_string();
    assert!(
        err.contains("model.safetensors") && err.contains("convert it to safetensors"),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// The fixture's weights split into two shards with their index; `edit` may change the index.
fn sharded(name: &str, edit: impl Fn(&mut serde_json::Value)) -> PathBuf {
    let dir = scratch(name);
    for file in ["config.json", "tokenizer.json"] {
        std::fs::copy(fixture_dir().join(file), dir.join(file)).unwrap();
    }
    let bytes = std::fs::read(fixture_dir().join("model.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = file.names().into_iter().map(str::to_string).collect();
    names.sort();
    let half = names.len() / 2;
    let mut map = serde_json::Map::new();
    for (k, part) in [&names[..half], &names[half..]].into_iter().enumerate() {
        let shard = format!("model-0000{}-of-00002.safetensors", k + 1);
        let views: Vec<(String, safetensors::tensor::TensorView)> =
            part.iter().map(|n| (n.clone(), file.tensor(n).unwrap())).collect();
        std::fs::write(dir.join(&shard), safetensors::serialize(views, None).unwrap()).unwrap();
        for n in part {
            map.insert(n.clone(), shard.clone().into());
        }
    }
    let mut index = serde_json::json!({"metadata": {"total_size": bytes.len()}, "weight_map": map});
    edit(&mut index);
    std::fs::write(dir.join(astrid::bundle::SHARD_INDEX_FILE), index.to_string()).unwrap();
    dir
}

#[test]
fn sharded_weights_load_as_the_single_file_does() {
    let dir = sharded("shards", |_| {});
    let whole = load(&fixture_dir()).unwrap();
    let parts = load(&dir).unwrap();
    let text = "The officers searched the home without a warrant.";
    let probs = |m: &LoadedModel| {
        let t = m.tokenizer.encode(text).unwrap();
        pollster::block_on(astrid::explain::probabilities(&m.model, &t.ids)).unwrap()
    };
    assert_eq!(probs(&whole), probs(&parts));
    // A shard missing, a tensor the index does not list, a path out of the directory: named.
    std::fs::remove_file(dir.join("model-00002-of-00002.safetensors")).unwrap();
    let err = load(&dir).err().unwrap().to_string();
    assert!(err.contains("model-00002-of-00002.safetensors"), "{err}");
    let escape = sharded("escape", |index| {
        let map = index["weight_map"].as_object_mut().unwrap();
        let first = map.keys().next().unwrap().clone();
        map.insert(first, "../model.safetensors".into());
    });
    let err = load(&escape).err().unwrap().to_string();
    assert!(err.contains("not a .safetensors file of this directory"), "{err}");
    let unlisted = sharded("unlisted", |index| {
        let map = index["weight_map"].as_object_mut().unwrap();
        let first = map.keys().next().unwrap().clone();
        map.remove(&first);
    });
    let err = load(&unlisted).err().unwrap().to_string();
    assert!(err.contains("does not place in this shard"), "{err}");
    for d in [dir, escape, unlisted] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

/// The fixture's weights under other names (`rename` returns the new name of each tensor),
/// beside its config and tokenizer.
fn renamed(name: &str, rename: impl Fn(&str) -> String) -> PathBuf {
    let dir = scratch(name);
    for file in ["config.json", "tokenizer.json"] {
        std::fs::copy(fixture_dir().join(file), dir.join(file)).unwrap();
    }
    let bytes = std::fs::read(fixture_dir().join("model.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let views: Vec<(String, safetensors::tensor::TensorView)> = file
        .names()
        .into_iter()
        .map(|n| (rename(n), file.tensor(n).unwrap()))
        .collect();
    std::fs::write(
        dir.join("model.safetensors"),
        safetensors::serialize(views, None).unwrap(),
    )
    .unwrap();
    dir
}

#[test]
fn layer_norms_named_gamma_and_beta_load_as_weight_and_bias() {
    // bert-base-uncased's checkpoint keeps TensorFlow's names for its LayerNorms.
    let dir = renamed("gamma-beta", |n| {
        n.replace("LayerNorm.weight", "LayerNorm.gamma")
            .replace("LayerNorm.bias", "LayerNorm.beta")
    });
    let names = safetensors::SafeTensors::deserialize(&std::fs::read(dir.join("model.safetensors")).unwrap())
        .unwrap()
        .names()
        .iter()
        .filter(|n| n.ends_with("LayerNorm.gamma"))
        .count();
    assert!(names >= 3, "the renamed file holds gamma tensors");
    let (whole, old) = (load(&fixture_dir()).unwrap(), load(&dir).unwrap());
    let text = "The officers searched the home without a warrant.";
    let probs = |m: &LoadedModel| {
        let t = m.tokenizer.encode(text).unwrap();
        pollster::block_on(astrid::explain::probabilities(&m.model, &t.ids)).unwrap()
    };
    assert_eq!(probs(&whole), probs(&old));
    std::fs::remove_dir_all(dir).unwrap();
}
