//! A model ready to explain texts: weights, config and tokenizer together, loaded from a
//! directory (natively) or from bytes (in the browser).
//!
//! An Astrid model directory is a Hugging Face directory (`config.json`,
//! `model.safetensors`, `tokenizer.json`) plus `astrid.json` with what Astrid knows about it.

use burn::module::Module;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::explain::{ExplainInput, ExplainOptions, Explanation, Progress, explain_with_progress};
use crate::model::EncoderClassifier;
use crate::tokenize::{TextTokenizer, TokenizedText};
use crate::weights::{LoadReport, load_safetensors_bytes};

pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const META_FILE: &str = "astrid.json";

/// What Astrid records about a model beyond its Hugging Face files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    /// The preset or role name (e.g. `teacher_bert`).
    pub name: String,
    /// Class names, in class-index order.
    pub labels: Vec<String>,
    /// The maximum sequence length the model was trained with.
    pub max_length: usize,
}

/// A loaded model with its tokenizer, in validation mode (dropout off).
pub struct LoadedModel {
    pub model: EncoderClassifier,
    pub tokenizer: TextTokenizer,
    pub meta: ModelMeta,
    pub report: LoadReport,
}

/// A text's tokens and the explanation of the model's output for it.
#[derive(Debug, Clone)]
pub struct TextExplanation {
    pub tokenized: TokenizedText,
    pub explanation: Explanation,
}

/// The raw files of a model, however they were obtained.
pub struct ModelFiles {
    pub config_json: String,
    pub weights: Vec<u8>,
    pub tokenizer_json: Vec<u8>,
    pub meta_json: Option<String>,
    /// Where the files came from, for error messages (a directory or a URL).
    pub origin: String,
}

impl LoadedModel {
    /// Builds the model from its files. `max_length` overrides the one in `astrid.json`.
    pub fn from_files(files: ModelFiles, max_length: Option<usize>, device: &Device) -> Result<Self> {
        let at = |file: &str| format!("{}/{file}", files.origin);
        let config = ModelConfig::from_hf_json(&files.config_json, &at(CONFIG_FILE))?;
        let meta: Option<ModelMeta> = match &files.meta_json {
            Some(text) => Some(serde_json::from_str(text).map_err(|e| Error::Json {
                file: at(META_FILE),
                line: e.line(),
                column: e.column(),
                message: e.to_string(),
            })?),
            None => None,
        };
        let max_length = max_length
            .or(meta.as_ref().map(|m| m.max_length))
            .unwrap_or(128)
            .min(config.max_position_embeddings);
        let tokenizer = TextTokenizer::from_bytes(&files.tokenizer_json, &at(TOKENIZER_FILE), max_length)?;
        if tokenizer.vocab_size() > config.vocab_size {
            return Err(Error::config(
                at(TOKENIZER_FILE),
                "vocab",
                format!(
                    "the tokenizer has {} tokens but the model only {} (vocab_size in config.json): they do not belong together",
                    tokenizer.vocab_size(),
                    config.vocab_size
                ),
            ));
        }
        let (model, report) = load_safetensors_bytes(&config, files.weights, &at(WEIGHTS_FILE), false, device)?;
        let meta = meta.unwrap_or_else(|| ModelMeta {
            name: files
                .origin
                .rsplit(['/', '\\'])
                .find(|s| !s.is_empty())
                .unwrap_or("model")
                .to_string(),
            labels: (0..config.num_labels).map(|i| format!("LABEL_{i}")).collect(),
            max_length,
        });
        Ok(Self {
            model: model.valid(),
            tokenizer,
            meta,
            report,
        })
    }

    /// Loads an Astrid model directory or a Hugging Face one.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_dir(dir: &std::path::Path, max_length: Option<usize>, device: &Device) -> Result<Self> {
        let shown = dir.display().to_string();
        if !dir.is_dir() {
            return Err(Error::io(
                &shown,
                "no such model directory; give a directory with config.json, model.safetensors and tokenizer.json",
            ));
        }
        let read = |name: &str| read_model_file(dir, name);
        let config_json = String::from_utf8(read(CONFIG_FILE)?)
            .map_err(|_| Error::io(dir.join(CONFIG_FILE).display(), "is not UTF-8 text"))?;
        let meta_path = dir.join(META_FILE);
        let meta_json = if meta_path.exists() {
            Some(String::from_utf8(read(META_FILE)?).map_err(|_| Error::io(meta_path.display(), "is not UTF-8 text"))?)
        } else {
            None
        };
        let files = ModelFiles {
            config_json,
            weights: read_weights(dir)?,
            tokenizer_json: read_tokenizer_json(dir)?,
            meta_json,
            origin: shown,
        };
        Self::from_files(files, max_length, device)
    }

    /// Tokenizes and explains one text.
    pub async fn explain_text(&self, text: &str, options: &ExplainOptions) -> Result<TextExplanation> {
        self.explain_text_with_progress(text, options, None).await
    }

    /// [`Self::explain_text`], reporting IG's progress (points done, points in all).
    pub async fn explain_text_with_progress(
        &self,
        text: &str,
        options: &ExplainOptions,
        progress: Progress<'_>,
    ) -> Result<TextExplanation> {
        let tokenized = self.tokenizer.encode(text)?;
        let explanation = self.explain_ids_with_progress(&tokenized, options, progress).await?;
        Ok(TextExplanation { tokenized, explanation })
    }

    /// Explains already tokenized input.
    pub async fn explain_ids(&self, tokenized: &TokenizedText, options: &ExplainOptions) -> Result<Explanation> {
        self.explain_ids_with_progress(tokenized, options, None).await
    }

    async fn explain_ids_with_progress(
        &self,
        tokenized: &TokenizedText,
        options: &ExplainOptions,
        progress: Progress<'_>,
    ) -> Result<Explanation> {
        let input = ExplainInput {
            ids: &tokenized.ids,
            special: &tokenized.special,
            pad_id: self.tokenizer.token_id("[PAD]"),
            mask_id: self.tokenizer.token_id("[MASK]"),
        };
        explain_with_progress(&self.model, &input, options, progress).await
    }
}

/// A model directory's `tokenizer.json`, or, for the older layout without one, the same built
/// from `vocab.txt` and `tokenizer_config.json` (BERT WordPiece).
#[cfg(not(target_arch = "wasm32"))]
pub fn read_tokenizer_json(dir: &std::path::Path) -> Result<Vec<u8>> {
    if dir.join(TOKENIZER_FILE).exists() || !dir.join(VOCAB_FILE).exists() {
        return read_model_file(dir, TOKENIZER_FILE);
    }
    let vocab_path = dir.join(VOCAB_FILE);
    let vocab = String::from_utf8(read_model_file(dir, VOCAB_FILE)?)
        .map_err(|_| Error::io(vocab_path.display(), "is not UTF-8 text"))?;
    let config = std::fs::read_to_string(dir.join(TOKENIZER_CONFIG_FILE)).ok();
    let lowercase = crate::tokenize::lowercase_from_config(config.as_deref());
    Ok(crate::tokenize::bert_tokenizer_json(&vocab, lowercase, &vocab_path.display().to_string())?.into_bytes())
}

/// The index of a checkpoint saved in shards (`model-00001-of-00002.safetensors`, …).
pub const SHARD_INDEX_FILE: &str = "model.safetensors.index.json";

/// A model directory's weights as one safetensors buffer: `model.safetensors`, or the shards
/// that `model.safetensors.index.json` lists, merged. Shards must be plain file names in the
/// directory; every tensor must be in the shard the index names.
#[cfg(not(target_arch = "wasm32"))]
pub fn read_weights(dir: &std::path::Path) -> Result<Vec<u8>> {
    let index_path = dir.join(SHARD_INDEX_FILE);
    if dir.join(WEIGHTS_FILE).exists() || !index_path.exists() {
        return read_model_file(dir, WEIGHTS_FILE);
    }
    let shown = index_path.display().to_string();
    let (map, shards) = shard_index(&read_model_file(dir, SHARD_INDEX_FILE)?, &shown)?;
    let shards: Vec<&str> = shards.iter().map(String::as_str).collect();
    let buffers: Vec<(String, Vec<u8>)> = shards
        .iter()
        .map(|&f| read_model_file(dir, f).map(|b| (f.to_string(), b)))
        .collect::<Result<_>>()?;
    let mut tensors = Vec::new();
    for (file, bytes) in &buffers {
        let shard = safetensors::SafeTensors::deserialize(bytes).map_err(|e| {
            Error::weights(
                dir.join(file).display().to_string(),
                format!("not a readable safetensors file: {e}"),
            )
        })?;
        for (name, view) in shard.tensors() {
            if map.get(&name).and_then(|f| f.as_str()) != Some(file.as_str()) {
                return Err(Error::weights(
                    dir.join(file).display().to_string(),
                    format!("holds '{name}', which {SHARD_INDEX_FILE} does not place in this shard"),
                ));
            }
            tensors.push((name, view));
        }
    }
    if let Some(missing) = map.keys().find(|k| !tensors.iter().any(|(n, _)| n == *k)) {
        return Err(Error::weights(
            &shown,
            format!("lists '{missing}', which is in none of the shards"),
        ));
    }
    safetensors::serialize(tensors, None)
        .map_err(|e| Error::weights(&shown, format!("the shards could not be merged: {e}")))
}

/// A shard index's `weight_map` (tensor name → shard file) and its shard files in first-seen
/// order; every shard must be a plain `.safetensors` file name of the same directory (so an
/// index can name nothing outside it). `shown` names the index in errors.
#[cfg(not(target_arch = "wasm32"))]
pub fn shard_index(bytes: &[u8], shown: &str) -> Result<(serde_json::Map<String, serde_json::Value>, Vec<String>)> {
    let mut index: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| Error::io(shown, format!("not valid JSON: {e}")))?;
    let Some(serde_json::Value::Object(map)) = index.get_mut("weight_map").map(std::mem::take) else {
        return Err(Error::io(
            shown,
            "has no \"weight_map\" object (tensor name → shard file)",
        ));
    };
    let mut shards: Vec<String> = Vec::new();
    for (tensor, file) in &map {
        let file = file
            .as_str()
            .ok_or_else(|| Error::io(shown, format!("weight_map.{tensor}: not a file name")))?;
        let plain = std::path::Path::new(file).file_name().and_then(|n| n.to_str()) == Some(file);
        if !plain || !file.ends_with(".safetensors") {
            return Err(Error::io(
                shown,
                format!("weight_map.{tensor}: '{file}' is not a .safetensors file of this directory"),
            ));
        }
        if !shards.iter().any(|s| s == file) {
            shards.push(file.to_string());
        }
    }
    Ok((map, shards))
}

/// The older tokenizer layout of Hugging Face checkpoints: a WordPiece vocabulary and its settings.
pub const VOCAB_FILE: &str = "vocab.txt";
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";

/// Reads one file of a model directory; the error names the file (and, for missing
/// safetensors weights next to a PyTorch checkpoint, says how to convert them).
#[cfg(not(target_arch = "wasm32"))]
fn read_model_file(dir: &std::path::Path, name: &str) -> Result<Vec<u8>> {
    let path = dir.join(name);
    std::fs::read(&path).map_err(|e| {
        let hint = if name == WEIGHTS_FILE && dir.join("pytorch_model.bin").exists() {
            " (only pytorch_model.bin is there: convert it to safetensors, e.g. with transformers' save_pretrained(safe_serialization=True))"
        } else {
            ""
        };
        Error::io(path.display(), format!("{e}{hint}"))
    })
}

/// Loads the weights of a Hugging Face (or Astrid) model directory as a starting point for
/// training with `num_labels` classes: a checkpoint without a classification head gets a
/// fresh one (listed in the report); a head for another number of classes is an error.
#[cfg(not(target_arch = "wasm32"))]
pub fn load_checkpoint_dir(
    dir: &std::path::Path,
    num_labels: usize,
    device: &Device,
) -> Result<(EncoderClassifier, LoadReport)> {
    if !dir.is_dir() {
        return Err(Error::io(dir.display(), "no such checkpoint directory"));
    }
    let config_path = dir.join(CONFIG_FILE).display().to_string();
    let config_json = String::from_utf8(read_model_file(dir, CONFIG_FILE)?)
        .map_err(|_| Error::io(&config_path, "is not UTF-8 text"))?;
    let mut config = ModelConfig::from_hf_json(&config_json, &config_path)?;
    config.num_labels = num_labels;
    let weights = read_weights(dir)?;
    load_safetensors_bytes(
        &config,
        weights,
        &dir.join(WEIGHTS_FILE).display().to_string(),
        true,
        device,
    )
}

/// Why `dir` is not an Astrid model directory (`astrid.json` beside the Hugging Face files
/// and nothing else), or `Ok` when it is one: only such a directory is ever replaced.
#[cfg(not(target_arch = "wasm32"))]
pub fn recognise_model_dir(dir: &std::path::Path) -> std::result::Result<(), String> {
    let meta = std::fs::read_to_string(dir.join(META_FILE)).map_err(|_| format!("it has no {META_FILE}"))?;
    serde_json::from_str::<ModelMeta>(&meta).map_err(|e| format!("its {META_FILE} is not Astrid's ({e})"))?;
    let foreign: Vec<String> = crate::files::list_dir(dir)
        .into_iter()
        .filter(|n| ![CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE, META_FILE].contains(&n.as_str()))
        .filter(|n| crate::files::temp_name_pid(n).is_none())
        .collect();
    if foreign.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "it holds files Astrid did not write ({})",
            crate::files::show_names(&foreign)
        ))
    }
}

/// Writes an Astrid model directory. Files are written into a temporary directory that is
/// renamed into place at the end, so a crash never leaves a half-written model; an existing
/// `dir` is replaced only when it is an Astrid model directory ([`recognise_model_dir`]).
#[cfg(not(target_arch = "wasm32"))]
pub fn save_model_dir(
    dir: &std::path::Path,
    model: &EncoderClassifier,
    tokenizer_json: &[u8],
    meta: &ModelMeta,
) -> Result<()> {
    if dir.exists() && !crate::files::is_empty_dir(dir) {
        recognise_model_dir(dir).map_err(|why| Error::io(dir.display(), format!("not replaced: {why}")))?;
    }
    let staging = crate::files::StagingDir::new(dir)?;
    let write = |file: &str, bytes: &[u8]| {
        std::fs::write(staging.path().join(file), bytes).map_err(|e| Error::io(staging.path().join(file).display(), e))
    };
    let config = serde_json::to_string_pretty(&model.config.to_hf_json()).map_err(|e| Error::Backend(e.to_string()))?;
    write(CONFIG_FILE, config.as_bytes())?;
    write(WEIGHTS_FILE, &crate::weights::to_safetensors_bytes(model)?)?;
    write(TOKENIZER_FILE, tokenizer_json)?;
    let meta = serde_json::to_string_pretty(meta).map_err(|e| Error::Backend(e.to_string()))?;
    write(META_FILE, meta.as_bytes())?;
    staging.commit(recognise_model_dir)
}
