//! Model shapes: the named presets Astrid trains, and the Hugging Face `config.json`
//! dialects (BERT and DistilBERT) they are read from and written to.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Which Hugging Face layout a model follows. It decides the weight names, whether there are
/// token-type embeddings, and what sits between the [CLS] vector and the classifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    /// `BertForSequenceClassification`: token-type embeddings, pooler (tanh) over [CLS].
    Bert,
    /// `DistilBertForSequenceClassification`: no token types, pre_classifier (ReLU) over [CLS].
    DistilBert,
}

impl Architecture {
    /// The `model_type` Hugging Face writes in `config.json`.
    pub fn model_type(self) -> &'static str {
        match self {
            Architecture::Bert => "bert",
            Architecture::DistilBert => "distilbert",
        }
    }
}

/// The largest model Astrid builds (parameters): far above BERT-large, far below what
/// would exhaust a machine's memory by a typo in config.json.
pub const MAX_PARAMS: f64 = 2e9;

/// Everything needed to build an encoder classifier of a given shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    /// Token-type vocabulary (BERT only; ignored for DistilBERT).
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    pub num_labels: usize,
    pub hidden_dropout: f64,
    pub attention_dropout: f64,
    /// Dropout before the classifier (`classifier_dropout` / `seq_classif_dropout`).
    pub classifier_dropout: f64,
    pub pad_token_id: usize,
}

/// The named shapes of the product: a teacher and five students, plus small ones for tests.
pub const PRESET_NAMES: [&str; 6] = [
    "teacher_bert",
    "distilbert",
    "custom_6x512",
    "tinybert",
    "minilm",
    "custom_2x384",
];

impl ModelConfig {
    /// A BERT-layout config with the usual defaults (vocab 30522, 512 positions, 2 labels).
    pub fn bert(num_layers: usize, hidden_size: usize, num_heads: usize, intermediate: usize) -> Self {
        Self {
            architecture: Architecture::Bert,
            vocab_size: 30522,
            hidden_size,
            num_layers,
            num_heads,
            intermediate_size: intermediate,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            num_labels: 2,
            hidden_dropout: 0.1,
            attention_dropout: 0.1,
            classifier_dropout: 0.1,
            pad_token_id: 0,
        }
    }

    /// The same shape in DistilBERT layout.
    pub fn distilbert(num_layers: usize, hidden_size: usize, num_heads: usize, intermediate: usize) -> Self {
        Self {
            architecture: Architecture::DistilBert,
            type_vocab_size: 0,
            classifier_dropout: 0.2,
            ..Self::bert(num_layers, hidden_size, num_heads, intermediate)
        }
    }

    /// A named preset. The six product presets have their real shapes; `tiny_bert` and
    /// `tiny_distilbert` are a few thousand parameters, for tests.
    pub fn preset(name: &str) -> Result<Self> {
        Ok(match name {
            "teacher_bert" => Self::bert(12, 768, 12, 3072),
            "distilbert" => Self::distilbert(6, 768, 12, 3072),
            "custom_6x512" => Self::bert(6, 512, 8, 2048),
            "tinybert" => Self::bert(4, 312, 12, 1200),
            "minilm" => Self::bert(12, 384, 12, 1536),
            "custom_2x384" => Self::bert(2, 384, 6, 1536),
            "tiny_bert" => Self {
                vocab_size: 128,
                max_position_embeddings: 64,
                ..Self::bert(2, 16, 2, 32)
            },
            "tiny_distilbert" => Self {
                vocab_size: 128,
                max_position_embeddings: 64,
                ..Self::distilbert(2, 16, 2, 32)
            },
            other => {
                return Err(Error::invalid(
                    "preset",
                    format!(
                        "unknown preset '{other}'; known presets: {}, tiny_bert, tiny_distilbert",
                        PRESET_NAMES.join(", ")
                    ),
                ));
            }
        })
    }

    /// Checks the shape is buildable; the error names the offending field.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_layers),
            ("num_attention_heads", self.num_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("num_labels", self.num_labels),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(Error::invalid(field, "must be at least 1"));
            }
        }
        // A hostile or mistyped config must not make the model's allocation (or the
        // parameter count) overflow or exhaust memory before the weights are even read.
        let params = self.num_params_f64();
        if params > MAX_PARAMS {
            return Err(Error::invalid(
                "(shape)",
                format!(
                    "describes a model of {params:.3e} parameters; Astrid takes at most {MAX_PARAMS:.0e} (BERT-large has 3.4e8)"
                ),
            ));
        }
        if self.num_heads > self.hidden_size {
            return Err(Error::invalid(
                "num_attention_heads",
                format!("{} is more than hidden_size = {}", self.num_heads, self.hidden_size),
            ));
        }
        if !self.hidden_size.is_multiple_of(self.num_heads) {
            return Err(Error::invalid(
                "hidden_size",
                format!(
                    "{} is not divisible by num_attention_heads = {}",
                    self.hidden_size, self.num_heads
                ),
            ));
        }
        if self.num_labels < 2 {
            return Err(Error::invalid("num_labels", "a classifier needs at least 2 labels"));
        }
        if self.architecture == Architecture::Bert && self.type_vocab_size == 0 {
            return Err(Error::invalid("type_vocab_size", "must be at least 1 for BERT"));
        }
        if self.pad_token_id >= self.vocab_size {
            return Err(Error::invalid("pad_token_id", "must be smaller than vocab_size"));
        }
        Ok(())
    }

    /// [`Self::num_params`] in floating point, which cannot overflow for any shape.
    fn num_params_f64(&self) -> f64 {
        let [v, h, i, l, c, p, t] = [
            self.vocab_size,
            self.hidden_size,
            self.intermediate_size,
            self.num_layers,
            self.num_labels,
            self.max_position_embeddings,
            self.type_vocab_size,
        ]
        .map(|x| x as f64);
        let linear = |a: f64, b: f64| a * b + b;
        let emb = (v + p + t) * h + 2.0 * h;
        let layer = 4.0 * linear(h, h) + linear(h, i) + linear(i, h) + 4.0 * h;
        emb + l * layer + linear(h, h) + linear(h, c)
    }

    /// Parameter count computed from the shape alone (equals the built model's).
    pub fn num_params(&self) -> usize {
        let (h, i, l, c) = (
            self.hidden_size,
            self.intermediate_size,
            self.num_layers,
            self.num_labels,
        );
        let linear = |a: usize, b: usize| a * b + b;
        let norm = 2 * h;
        let mut emb = self.vocab_size * h + self.max_position_embeddings * h + norm;
        if self.architecture == Architecture::Bert {
            emb += self.type_vocab_size * h;
        }
        let layer = 4 * linear(h, h) + linear(h, i) + linear(i, h) + 2 * norm;
        emb + l * layer + linear(h, h) + linear(h, c)
    }

    /// Reads a Hugging Face `config.json` (BERT or DistilBERT dialect). `source` names the file
    /// in errors.
    pub fn from_hf_json(text: &str, source: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(text).map_err(|e| Error::Json {
            file: source.to_string(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
        let obj = value
            .as_object()
            .ok_or_else(|| Error::config(source, "(top level)", "expected a JSON object"))?;
        let fields = HfFields { obj, source };
        let model_type = obj.get("model_type").and_then(Value::as_str).unwrap_or("bert");
        let num_labels = fields.num_labels()?;
        fields.check_activation(model_type)?;
        let config = match model_type {
            "bert" => Self::bert_from_hf(&fields, num_labels)?,
            "distilbert" => Self::distilbert_from_hf(&fields, num_labels)?,
            other => {
                return Err(Error::config(
                    source,
                    "model_type",
                    format!("\"{other}\" is not supported; Astrid reads \"bert\" and \"distilbert\" models"),
                ));
            }
        };
        if model_type == "distilbert" && obj.get("sinusoidal_pos_embds").and_then(Value::as_bool) == Some(true) {
            return Err(Error::config(
                source,
                "sinusoidal_pos_embds",
                "sinusoidal position embeddings are not supported",
            ));
        }
        config.validate().map_err(|e| e.in_file(source))?;
        Ok(config)
    }

    /// BERT's field names, with transformers' `BertConfig` defaults for the optional ones
    /// (the classifier's dropout defaults to the hidden layers').
    fn bert_from_hf(fields: &HfFields, num_labels: usize) -> Result<Self> {
        let hidden_dropout = fields.float_or("hidden_dropout_prob", 0.1)?;
        Ok(Self {
            architecture: Architecture::Bert,
            vocab_size: fields.get("vocab_size")?,
            hidden_size: fields.get("hidden_size")?,
            num_layers: fields.get("num_hidden_layers")?,
            num_heads: fields.get("num_attention_heads")?,
            intermediate_size: fields.get("intermediate_size")?,
            max_position_embeddings: fields.get_or("max_position_embeddings", 512)?,
            type_vocab_size: fields.get_or("type_vocab_size", 2)?,
            layer_norm_eps: fields.float_or("layer_norm_eps", 1e-12)?,
            num_labels,
            hidden_dropout,
            attention_dropout: fields.float_or("attention_probs_dropout_prob", 0.1)?,
            classifier_dropout: fields.float_or("classifier_dropout", hidden_dropout)?,
            pad_token_id: fields.get_or("pad_token_id", 0)?,
        })
    }

    /// DistilBERT's field names, with `DistilBertConfig`'s defaults; it has no token types
    /// and a fixed layer-norm epsilon.
    fn distilbert_from_hf(fields: &HfFields, num_labels: usize) -> Result<Self> {
        Ok(Self {
            architecture: Architecture::DistilBert,
            vocab_size: fields.get("vocab_size")?,
            hidden_size: fields.get("dim")?,
            num_layers: fields.get("n_layers")?,
            num_heads: fields.get("n_heads")?,
            intermediate_size: fields.get("hidden_dim")?,
            max_position_embeddings: fields.get_or("max_position_embeddings", 512)?,
            type_vocab_size: 0,
            layer_norm_eps: 1e-12,
            num_labels,
            hidden_dropout: fields.float_or("dropout", 0.1)?,
            attention_dropout: fields.float_or("attention_dropout", 0.1)?,
            classifier_dropout: fields.float_or("seq_classif_dropout", 0.2)?,
            pad_token_id: fields.get_or("pad_token_id", 0)?,
        })
    }

    /// Writes the Hugging Face `config.json` for this shape, so transformers (and Captum) can
    /// load Astrid's models too.
    pub fn to_hf_json(&self) -> Value {
        let mut m = Map::new();
        let labels: Map<String, Value> = (0..self.num_labels)
            .map(|i| (i.to_string(), Value::from(format!("LABEL_{i}"))))
            .collect();
        let label2id: Map<String, Value> = (0..self.num_labels)
            .map(|i| (format!("LABEL_{i}"), Value::from(i)))
            .collect();
        m.insert("id2label".into(), Value::Object(labels));
        m.insert("label2id".into(), Value::Object(label2id));
        m.insert("model_type".into(), self.architecture.model_type().into());
        m.insert("vocab_size".into(), self.vocab_size.into());
        m.insert("max_position_embeddings".into(), self.max_position_embeddings.into());
        m.insert("pad_token_id".into(), self.pad_token_id.into());
        m.insert("initializer_range".into(), 0.02.into());
        match self.architecture {
            Architecture::Bert => {
                m.insert(
                    "architectures".into(),
                    serde_json::json!(["BertForSequenceClassification"]),
                );
                m.insert("hidden_size".into(), self.hidden_size.into());
                m.insert("num_hidden_layers".into(), self.num_layers.into());
                m.insert("num_attention_heads".into(), self.num_heads.into());
                m.insert("intermediate_size".into(), self.intermediate_size.into());
                m.insert("type_vocab_size".into(), self.type_vocab_size.into());
                m.insert("layer_norm_eps".into(), self.layer_norm_eps.into());
                m.insert("hidden_act".into(), "gelu".into());
                m.insert("hidden_dropout_prob".into(), self.hidden_dropout.into());
                m.insert("attention_probs_dropout_prob".into(), self.attention_dropout.into());
                m.insert("classifier_dropout".into(), self.classifier_dropout.into());
            }
            Architecture::DistilBert => {
                m.insert(
                    "architectures".into(),
                    serde_json::json!(["DistilBertForSequenceClassification"]),
                );
                m.insert("dim".into(), self.hidden_size.into());
                m.insert("n_layers".into(), self.num_layers.into());
                m.insert("n_heads".into(), self.num_heads.into());
                m.insert("hidden_dim".into(), self.intermediate_size.into());
                m.insert("activation".into(), "gelu".into());
                m.insert("dropout".into(), self.hidden_dropout.into());
                m.insert("attention_dropout".into(), self.attention_dropout.into());
                m.insert("seq_classif_dropout".into(), self.classifier_dropout.into());
                m.insert("sinusoidal_pos_embds".into(), false.into());
            }
        }
        Value::Object(m)
    }
}

/// A `config.json`'s fields, read with errors that name the file (`source`) and the field.
struct HfFields<'a> {
    obj: &'a Map<String, Value>,
    source: &'a str,
}

impl HfFields<'_> {
    /// A required whole number.
    fn get(&self, key: &str) -> Result<usize> {
        match self.obj.get(key) {
            Some(v) => v
                .as_u64()
                .map(|n| n as usize)
                .ok_or_else(|| Error::config(self.source, key, format!("expected a whole number, found {v}"))),
            None => Err(Error::config(self.source, key, "missing")),
        }
    }

    /// A whole number, `default` when the field is absent (a `null` is still an error).
    fn get_or(&self, key: &str, default: usize) -> Result<usize> {
        if self.obj.contains_key(key) {
            self.get(key)
        } else {
            Ok(default)
        }
    }

    /// A number, `default` when the field is absent or `null` (transformers writes `null`
    /// for an unset dropout).
    fn float_or(&self, key: &str, default: f64) -> Result<f64> {
        match self.obj.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| Error::config(self.source, key, format!("expected a number, found {v}"))),
        }
    }

    /// `num_labels`, else the size of `id2label`, else 2 (transformers' default).
    fn num_labels(&self) -> Result<usize> {
        match self.obj.get("num_labels") {
            Some(_) => self.get("num_labels"),
            None => match self.obj.get("id2label").and_then(Value::as_object) {
                Some(map) => Ok(map.len()),
                None => Ok(2),
            },
        }
    }

    /// Refuses an activation other than GELU: the encoder computes GELU only.
    fn check_activation(&self, model_type: &str) -> Result<()> {
        let activation_key = if model_type == "distilbert" {
            "activation"
        } else {
            "hidden_act"
        };
        if let Some(act) = self.obj.get(activation_key)
            && act.as_str() != Some("gelu")
        {
            return Err(Error::config(
                self.source,
                activation_key,
                format!("only \"gelu\" is supported, found {act}"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parameter counts of the transformers models of the same shapes (2 labels).
    #[test]
    fn preset_parameter_counts_match_transformers() {
        let expected = [
            ("teacher_bert", 109_483_778),
            ("distilbert", 66_955_010),
            ("custom_6x512", 35_069_442),
            ("tinybert", 14_350_874),
            ("minilm", 33_360_770),
            ("custom_2x384", 15_616_130),
        ];
        for (name, count) in expected {
            assert_eq!(ModelConfig::preset(name).unwrap().num_params(), count, "{name}");
        }
    }

    #[test]
    fn hf_json_round_trips_both_layouts() {
        for name in ["teacher_bert", "distilbert", "tiny_distilbert"] {
            let config = ModelConfig::preset(name).unwrap();
            let text = config.to_hf_json().to_string();
            let back = ModelConfig::from_hf_json(&text, "config.json").unwrap();
            assert_eq!(back, config, "{name}");
        }
    }

    #[test]
    fn bad_config_names_the_field() {
        let err = ModelConfig::from_hf_json(r#"{"model_type": "bert", "hidden_size": 10}"#, "x/config.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("x/config.json") && err.contains("vocab_size"), "{err}");
        let err = ModelConfig::from_hf_json(r#"{"model_type": "gpt2"}"#, "c.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("gpt2") && err.contains("model_type"), "{err}");
        let err = ModelConfig::from_hf_json("{\n  \"a\": ,\n}", "c.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
        let mut bad = ModelConfig::preset("tiny_bert").unwrap().to_hf_json();
        bad["num_attention_heads"] = 3.into();
        let err = ModelConfig::from_hf_json(&bad.to_string(), "c.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("hidden_size") && err.contains("divisible"), "{err}");
    }
}
