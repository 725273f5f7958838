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

impl TextTokenizer {
    /// Loads `tokenizer.json` bytes; `source` names them in errors.
    pub fn from_bytes(bytes: &[u8], source: &str, max_length: usize) -> Result<Self> {
        let inner = Tokenizer::from_bytes(bytes).map_err(|e| Error::Tokenizer {
            source_name: source.to_string(),
            message: format!("not a valid tokenizer.json: {e}"),
        })?;
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
