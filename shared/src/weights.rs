//! Weights in Hugging Face's safetensors layout, read and written through burn-store.
//!
//! Astrid writes its own models in the same layout (`BertForSequenceClassification` or
//! `DistilBertForSequenceClassification` names, PyTorch's `[out, in]` linear weights), so
//! every model it trains can also be opened by transformers and checked against Captum.

use burn::tensor::{DType, Device};
use burn_store::{
    ApplyResult, BurnToPyTorchAdapter, FloatCastAdapter, ModuleAdapter, ModuleSnapshot, PyTorchToBurnAdapter,
    SafetensorsStore,
};

use crate::config::{Architecture, ModelConfig};
use crate::error::{Error, Result};
use crate::model::EncoderClassifier;

/// Hugging Face name prefix ↔ Astrid module path prefix. `{i}` is a layer index.
fn name_table(arch: Architecture) -> &'static [(&'static str, &'static str)] {
    match arch {
        Architecture::Bert => &[
            ("bert.embeddings.LayerNorm.", "embeddings.layer_norm."),
            ("bert.embeddings.word_embeddings.", "embeddings.word_embeddings."),
            (
                "bert.embeddings.position_embeddings.",
                "embeddings.position_embeddings.",
            ),
            (
                "bert.embeddings.token_type_embeddings.",
                "embeddings.token_type_embeddings.",
            ),
            ("bert.encoder.layer.{i}.attention.self.query.", "layers.{i}.query."),
            ("bert.encoder.layer.{i}.attention.self.key.", "layers.{i}.key."),
            ("bert.encoder.layer.{i}.attention.self.value.", "layers.{i}.value."),
            (
                "bert.encoder.layer.{i}.attention.output.dense.",
                "layers.{i}.attention_output.",
            ),
            (
                "bert.encoder.layer.{i}.attention.output.LayerNorm.",
                "layers.{i}.attention_norm.",
            ),
            ("bert.encoder.layer.{i}.intermediate.dense.", "layers.{i}.intermediate."),
            ("bert.encoder.layer.{i}.output.dense.", "layers.{i}.output."),
            ("bert.encoder.layer.{i}.output.LayerNorm.", "layers.{i}.output_norm."),
            ("bert.pooler.dense.", "pooler."),
        ],
        Architecture::DistilBert => &[
            ("distilbert.embeddings.LayerNorm.", "embeddings.layer_norm."),
            ("distilbert.embeddings.word_embeddings.", "embeddings.word_embeddings."),
            (
                "distilbert.embeddings.position_embeddings.",
                "embeddings.position_embeddings.",
            ),
            ("distilbert.transformer.layer.{i}.attention.q_lin.", "layers.{i}.query."),
            ("distilbert.transformer.layer.{i}.attention.k_lin.", "layers.{i}.key."),
            ("distilbert.transformer.layer.{i}.attention.v_lin.", "layers.{i}.value."),
            (
                "distilbert.transformer.layer.{i}.attention.out_lin.",
                "layers.{i}.attention_output.",
            ),
            (
                "distilbert.transformer.layer.{i}.sa_layer_norm.",
                "layers.{i}.attention_norm.",
            ),
            ("distilbert.transformer.layer.{i}.ffn.lin1.", "layers.{i}.intermediate."),
            ("distilbert.transformer.layer.{i}.ffn.lin2.", "layers.{i}.output."),
            (
                "distilbert.transformer.layer.{i}.output_layer_norm.",
                "layers.{i}.output_norm.",
            ),
            ("pre_classifier.", "pooler."),
        ],
    }
}

fn pattern(prefix: &str, optional_root: Option<&str>) -> String {
    let mut escaped = String::from("^");
    let mut rest = prefix;
    if let Some(root) = optional_root
        && let Some(stripped) = rest.strip_prefix(root)
    {
        escaped.push_str(&format!("(?:{})?", regex_escape(root)));
        rest = stripped;
    }
    escaped.push_str(&regex_escape(rest).replace(r"\{i\}", r"(\d+)"));
    escaped
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Weights that a checkpoint may carry but a sequence classifier has no use for.
fn ignorable(name: &str) -> bool {
    name.ends_with("position_ids")
        || name.ends_with("token_type_ids")
        || name.starts_with("cls.")
        || name.starts_with("vocab_")
        || name.starts_with("lm_head.")
}

/// The classification head: a checkpoint without one (a plain encoder) gets a fresh one.
fn is_head(path: &str) -> bool {
    path.starts_with("pooler.") || path.starts_with("classifier.")
}

/// What loading did besides filling the model: which head weights were freshly initialised,
/// and which tensors of the file a sequence classifier has no use for (TinyBERT's general
/// checkpoint carries `fit_denses`, its distillation projections).
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub fresh_head: Vec<String>,
    pub ignored: Vec<String>,
}

fn hf_to_astrid_store(store: SafetensorsStore, arch: Architecture) -> SafetensorsStore {
    let root = match arch {
        Architecture::Bert => Some("bert."),
        Architecture::DistilBert => None,
    };
    let mut store = store
        .with_from_adapter(PyTorchToBurnAdapter.chain(FloatCastAdapter::to(DType::F32)))
        .allow_partial(true)
        .validate(false);
    for (hf, astrid) in name_table(arch) {
        store = store.with_key_remapping(pattern(hf, root), astrid.replace("{i}", "${1}"));
    }
    store
}

fn check_applied(result: ApplyResult, file: &str, allow_fresh_head: bool) -> Result<LoadReport> {
    if let Some(err) = result.errors.first() {
        return Err(Error::weights(
            file,
            format!(
                "{err} ({} tensor(s) in error); the weights do not fit the shape in config.json",
                result.errors.len()
            ),
        ));
    }
    let unused: Vec<&String> = result.unused.iter().filter(|n| !ignorable(n)).collect();
    let (head, body): (Vec<_>, Vec<_>) = result
        .missing
        .iter()
        .map(|(path, _)| path.clone())
        .partition(|p| is_head(p));
    // Extra tensors beside a complete encoder are reported and ignored; with tensors of the
    // encoder missing, they are the clue that the checkpoint is of another kind.
    if !body.is_empty() {
        let sample = |v: Vec<String>| v.into_iter().take(4).collect::<Vec<_>>().join(", ");
        return Err(Error::weights(
            file,
            format!(
                "the weights do not match the architecture in config.json: {} model tensor(s) missing [{}], \
                 {} file tensor(s) not used [{}]; is model_type right, and is this a BERT or DistilBERT checkpoint?",
                body.len(),
                sample(body.clone()),
                unused.len(),
                sample(unused.into_iter().cloned().collect()),
            ),
        ));
    }
    if !head.is_empty() && !allow_fresh_head {
        return Err(Error::weights(
            file,
            format!(
                "the checkpoint has no classification head (missing {}); train or fine-tune it first",
                head.join(", ")
            ),
        ));
    }
    let mut ignored: Vec<String> = unused.into_iter().cloned().collect();
    ignored.sort();
    Ok(LoadReport {
        fresh_head: head,
        ignored,
    })
}

/// Builds a model of `config` and fills it from safetensors bytes in Hugging Face layout
/// (`BertForSequenceClassification`, a plain `BertModel`, or `DistilBertForSequenceClassification`).
/// `source` names the weights in errors. A missing pooler/classifier is freshly initialised
/// only when `allow_fresh_head` is set.
pub fn load_safetensors_bytes(
    config: &ModelConfig,
    bytes: Vec<u8>,
    source: &str,
    allow_fresh_head: bool,
    device: &Device,
) -> Result<(EncoderClassifier, LoadReport)> {
    config.validate()?;
    {
        let file = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| Error::weights(source, format!("not a readable safetensors file: {e}")))?;
        check_size(&file, config, source)?;
        check_finite_tensors(&file, source)?;
    }
    let mut model = config.init(device);
    let mut store = hf_to_astrid_store(SafetensorsStore::from_bytes(Some(bytes)), config.architecture);
    let result = model
        .load_from(&mut store)
        .map_err(|e| Error::weights(source, format!("not a readable safetensors file: {e}")))?;
    let report = check_applied(result, source, allow_fresh_head)?;
    Ok((model, report))
}

/// Refuses a config.json whose model is larger than the weights could fill (beyond a fresh
/// classification head): building it would only allocate memory for an error.
fn check_size(file: &safetensors::SafeTensors, config: &ModelConfig, source: &str) -> Result<()> {
    let values: f64 = file
        .iter()
        .map(|(_, view)| view.shape().iter().map(|&d| d as f64).product::<f64>())
        .sum();
    let (h, c) = (config.hidden_size as f64, config.num_labels as f64);
    let head = h * h + h + h * c + c;
    let needed = config.num_params() as f64;
    if needed > values + head {
        return Err(Error::weights(
            source,
            format!(
                "the shape in config.json needs {needed:.0} parameters but the file holds {values:.0} values; \
                 config.json and the weights do not belong together"
            ),
        ));
    }
    Ok(())
}

/// Refuses weights with a NaN or an infinity: such a model answers with NaN probabilities,
/// which would otherwise pass for a prediction. The error names the tensor and the element.
fn check_finite_tensors(file: &safetensors::SafeTensors, source: &str) -> Result<()> {
    use safetensors::Dtype;
    let mut tensors: Vec<_> = file.iter().collect();
    tensors.sort_by_key(|(name, _)| name.to_string());
    for (name, view) in tensors {
        let data = view.data();
        let (found, count) = match view.dtype() {
            Dtype::F32 => (
                data.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
                    .enumerate()
                    .find(|(_, v)| !v.is_finite()),
                data.len() / 4,
            ),
            Dtype::F64 => (
                data.chunks_exact(8)
                    .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                    .enumerate()
                    .find(|(_, v)| !v.is_finite()),
                data.len() / 8,
            ),
            // Half precision: all exponent bits set is an infinity or a NaN.
            Dtype::F16 | Dtype::BF16 => {
                let (shift, mask) = if view.dtype() == Dtype::F16 {
                    (10, 0x1f)
                } else {
                    (7, 0xff)
                };
                (
                    data.chunks_exact(2)
                        .map(|c| u16::from_le_bytes([c[0], c[1]]))
                        .enumerate()
                        .find(|(_, bits)| (bits >> shift) & mask == mask)
                        .map(|(i, bits)| {
                            (
                                i,
                                if bits & ((1 << shift) - 1) == 0 {
                                    f64::INFINITY
                                } else {
                                    f64::NAN
                                },
                            )
                        }),
                    data.len() / 2,
                )
            }
            _ => (None, 0),
        };
        if let Some((index, value)) = found {
            return Err(Error::weights(
                source,
                format!(
                    "tensor '{name}' holds {value} at element {index} of {count}: the weights are broken \
                     (a training run that diverged?); retrain the model or load another checkpoint"
                ),
            ));
        }
    }
    Ok(())
}

/// Serialises a model's weights to safetensors bytes in Hugging Face layout.
pub fn to_safetensors_bytes(model: &EncoderClassifier) -> Result<Vec<u8>> {
    let arch = model.config.architecture;
    let mut store = SafetensorsStore::from_bytes(None).with_to_adapter(BurnToPyTorchAdapter);
    for (hf, astrid) in name_table(arch) {
        store = store.with_key_remapping(pattern(astrid, None), hf.replace("{i}", "${1}"));
    }
    model
        .save_into(&mut store)
        .map_err(|e| Error::Backend(format!("could not serialise the weights: {e}")))?;
    store
        .get_bytes()
        .map_err(|e| Error::Backend(format!("could not serialise the weights: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `bytes` with the tensors `drop` names left out and `extra` (name, [rows, cols]) added.
    fn edited(bytes: &[u8], drop: &str, extra: &[(&str, [usize; 2])]) -> Vec<u8> {
        let file = safetensors::SafeTensors::deserialize(bytes).unwrap();
        let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = file
            .iter()
            .filter(|(name, _)| !name.contains(drop) || drop.is_empty())
            .map(|(name, view)| (name.to_string(), view.shape().to_vec(), view.data().to_vec()))
            .collect();
        for (name, [r, c]) in extra {
            tensors.push((name.to_string(), vec![*r, *c], vec![0u8; r * c * 4]));
        }
        let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
            .iter()
            .map(|(n, shape, data)| {
                let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data).unwrap();
                (n.clone(), view)
            })
            .collect();
        safetensors::serialize(views, None).unwrap()
    }

    #[test]
    fn extra_tensors_are_reported_and_ignored_but_a_missing_layer_is_an_error() {
        let device = Device::flex();
        let mut config = ModelConfig::bert(1, 16, 2, 32);
        config.vocab_size = 40;
        config.max_position_embeddings = 16;
        let bytes = to_safetensors_bytes(&config.init(&device)).unwrap();
        // TinyBERT's general checkpoint: its distillation projections beside the encoder.
        let with_extra = edited(
            &bytes,
            "",
            &[("fit_denses.0.weight", [16, 16]), ("fit_denses.0.bias", [1, 16])],
        );
        let (_, report) = load_safetensors_bytes(&config, with_extra, "tinybert", false, &device).unwrap();
        assert_eq!(report.ignored, ["fit_denses.0.bias", "fit_denses.0.weight"]);
        assert!(report.fresh_head.is_empty());
        // An encoder tensor missing: not a checkpoint of this shape, whatever else it holds.
        let broken = edited(
            &bytes,
            "attention.self.query.weight",
            &[("fit_denses.0.weight", [16, 16])],
        );
        let err = load_safetensors_bytes(&config, broken, "broken", false, &device)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("1 model tensor(s) missing") && err.contains("fit_denses.0.weight"),
            "{err}"
        );
    }

    #[test]
    fn patterns_escape_and_capture_layer_indices() {
        assert_eq!(
            pattern("bert.encoder.layer.{i}.output.dense.", Some("bert.")),
            r"^(?:bert\.)?encoder\.layer\.(\d+)\.output\.dense\."
        );
        assert_eq!(pattern("layers.{i}.query.", None), r"^layers\.(\d+)\.query\.");
    }
}
