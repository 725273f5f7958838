//! A WordPiece vocabulary trained on the training texts, in BERT's style (lower case,
//! [CLS] … [SEP]), for runs without a pretrained tokenizer.

use anyhow::{Context, anyhow};
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::TrainerWrapper;
use tokenizers::models::wordpiece::{WordPiece, WordPieceTrainerBuilder};
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{AddedToken, Tokenizer};

/// Special tokens, in id order: [PAD] is 0, as the models' `pad_token_id` expects.
pub const SPECIAL_TOKENS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

/// Trains a WordPiece tokenizer of at most `vocab_size` tokens on `texts` and returns its
/// `tokenizer.json`.
pub fn train_wordpiece<'a>(
    texts: impl Iterator<Item = &'a String> + Send,
    vocab_size: usize,
) -> anyhow::Result<String> {
    let mut tokenizer = Tokenizer::new(WordPiece::default());
    tokenizer.with_normalizer(Some(BertNormalizer::new(true, true, None, true)));
    tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
    tokenizer.with_decoder(Some(WordPieceDecoder::default()));
    let mut trainer: TrainerWrapper = WordPieceTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(
            SPECIAL_TOKENS
                .iter()
                .map(|t| AddedToken::from(t.to_string(), true))
                .collect(),
        )
        .build()
        .into();
    tokenizer
        .train(&mut trainer, texts)
        .map_err(|e| anyhow!("training the WordPiece vocabulary failed: {e}"))?;
    let id = |t: &str| {
        tokenizer
            .token_to_id(t)
            .ok_or_else(|| anyhow!("trained vocabulary lacks {t}"))
    };
    let processor = BertProcessing::new(("[SEP]".into(), id("[SEP]")?), ("[CLS]".into(), id("[CLS]")?));
    tokenizer.with_post_processor(Some(processor));
    tokenizer
        .to_string(false)
        .map_err(|e| anyhow!("{e}"))
        .context("serialising the tokenizer")
}

#[cfg(test)]
mod tests {
    use super::*;
    use astrid::tokenize::TextTokenizer;

    #[test]
    fn trained_vocabulary_tokenizes_like_bert() {
        let texts: Vec<String> = (0..50)
            .map(|i| format!("The court found that the officers searched the home without a warrant in case {i}."))
            .collect();
        let json = train_wordpiece(texts.iter(), 200).unwrap();
        let tok = TextTokenizer::from_bytes(json.as_bytes(), "trained", 16).unwrap();
        assert_eq!(tok.token_id("[PAD]"), Some(0));
        let enc = tok.encode("The officers SEARCHED the home.").unwrap();
        assert_eq!(enc.tokens.first().map(String::as_str), Some("[CLS]"));
        assert_eq!(enc.tokens.last().map(String::as_str), Some("[SEP]"));
        assert!(enc.tokens.contains(&"searched".to_string()), "{:?}", enc.tokens);
        assert!(tok.vocab_size() <= 200);
    }
}
