//! Text → token ids with a Hugging Face `tokenizer.json`, the same natively and in the browser.

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::error::{Error, Result};

/// A tokenizer fixed for classification: no padding (real lengths), truncation to
/// `max_length` that keeps [CLS] … [SEP].
pub struct TextTokenizer {
    inner: Tokenizer,
    source: String,
}

/// One tokenized text.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenizedText {
    pub ids: Vec<u32>,
    pub tokens: Vec<String>,
    /// True for [CLS], [SEP] and other added special tokens.
    pub special: Vec<bool>,
    /// Byte span of each token in the text ((0, 0) for special tokens).
    pub offsets: Vec<(usize, usize)>,
    /// True when the text was longer than `max_length` and was cut.
    pub truncated: bool,
}

/// The `tokenizer.json` of a BERT WordPiece tokenizer from the older checkpoint layout:
/// `vocab.txt` (one token per line, the line number its id) and `do_lower_case` from
/// `tokenizer_config.json` (true when absent, as in transformers' BertTokenizer). `source`
/// names the vocabulary in errors.
pub fn bert_tokenizer_json(vocab_txt: &str, lowercase: bool, source: &str) -> Result<String> {
    let tokens: Vec<&str> = vocab_txt.lines().map(|l| l.trim_end_matches('\r')).collect();
    let error = |message: String| Error::Tokenizer {
        source_name: source.to_string(),
        message,
    };
    let mut vocab = serde_json::Map::new();
    for (id, token) in tokens.iter().enumerate() {
        if token.is_empty() {
            return Err(error(format!(
                "line {}: an empty token; vocab.txt holds one token per line",
                id + 1
            )));
        }
        if vocab.insert(token.to_string(), id.into()).is_some() {
            return Err(error(format!("line {}: '{token}' appears twice", id + 1)));
        }
    }
    let id = |token: &str| -> Result<u64> {
        vocab.get(token).and_then(|v| v.as_u64()).ok_or_else(|| {
            error(format!(
                "has no {token} token; a BERT vocabulary needs [PAD], [UNK], [CLS], [SEP] and [MASK]"
            ))
        })
    };
    let specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
    let mut added = Vec::new();
    for token in specials {
        added.push(
            serde_json::json!({"id": id(token)?, "special": true, "content": token, "single_word": false,
            "lstrip": false, "rstrip": false, "normalized": false}),
        );
    }
    let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
    let json = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
            "strip_accents": null, "lowercase": lowercase},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
                {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
            "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [cls], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [sep], "tokens": ["[SEP]"]}}},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
            "max_input_chars_per_word": 100, "vocab": vocab},
    });
    let text = json.to_string();
    // Checked here, so a broken vocabulary is named now rather than at first use.
    Tokenizer::from_bytes(text.as_bytes()).map_err(|e| error(format!("does not make a tokenizer: {e}")))?;
    Ok(text)
}

/// `do_lower_case` of a `tokenizer_config.json` (true when absent or unreadable as such).
pub fn lowercase_from_config(tokenizer_config: Option<&str>) -> bool {
    tokenizer_config
        .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
        .and_then(|v| v.get("do_lower_case").and_then(|b| b.as_bool()))
        .unwrap_or(true)
}

impl TextTokenizer {
    /// Loads `tokenizer.json` bytes; `source` names them in errors.
    pub fn from_bytes(bytes: &[u8], source: &str, max_length: usize) -> Result<Self> {
        let invalid = |e: &dyn std::fmt::Display| Error::Tokenizer {
            source_name: source.to_string(),
            message: format!("not a valid tokenizer.json: {e}"),
        };
        // JSON first: tokenizers panics (an `expect` in its decoder's deserializer) on a file
        // that is not JSON there, such as an invalid \u escape; serde_json names the line and
        // column instead.
        serde_json::from_slice::<serde_json::Value>(bytes).map_err(|e| invalid(&e))?;
        let inner = Tokenizer::from_bytes(bytes).map_err(|e| invalid(&e))?;
        Self::new(inner, source, max_length)
    }

    fn new(mut inner: Tokenizer, source: &str, max_length: usize) -> Result<Self> {
        if max_length < 3 {
            return Err(Error::invalid(
                "max-length",
                format!("{max_length} is too short; use at least 3 tokens"),
            ));
        }
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                max_length,
                strategy: TruncationStrategy::LongestFirst,
                direction: TruncationDirection::Right,
                stride: 0,
            }))
            .map_err(|e| Error::Tokenizer {
                source_name: source.to_string(),
                message: e.to_string(),
            })?;
        Ok(Self {
            inner,
            source: source.to_string(),
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The id of a token such as `[PAD]`, if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Tokenizes one text, with special tokens. Empty or blank text is an error: there is
    /// nothing to explain.
    pub fn encode(&self, text: &str) -> Result<TokenizedText> {
        if text.trim().is_empty() {
            return Err(Error::invalid("text", "is empty; give a text to classify"));
        }
        let encoding = self.inner.encode(text, true).map_err(|e| Error::Tokenizer {
            source_name: self.source.clone(),
            message: e.to_string(),
        })?;
        Ok(TokenizedText {
            ids: encoding.get_ids().to_vec(),
            tokens: encoding.get_tokens().to_vec(),
            special: encoding.get_special_tokens_mask().iter().map(|&m| m == 1).collect(),
            offsets: encoding.get_offsets().to_vec(),
            truncated: !encoding.get_overflowing().is_empty(),
        })
    }
}
