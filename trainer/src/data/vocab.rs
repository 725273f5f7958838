//! A WordPiece vocabulary trained on the training texts, in BERT's style (lower case,
//! `[CLS]` … `[SEP]`), for runs without a pretrained tokenizer.

use std::collections::BTreeSet;

use anyhow::{Context, anyhow};
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::TrainerWrapper;
use tokenizers::models::wordpiece::{WordPiece, WordPieceTrainerBuilder};
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{
    AddedToken, NormalizedString, Normalizer, OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer,
    Tokenizer,
};

/// Special tokens, in id order: `[PAD]` is 0, as the models' `pad_token_id` expects.
pub const SPECIAL_TOKENS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

fn normalizer() -> BertNormalizer {
    BertNormalizer::new(true, true, None, true)
}

/// `##c` for every character that continues a word of `texts` (after BERT's normalisation
/// and word splitting), in character order.
fn continuation_tokens<'a>(texts: impl Iterator<Item = &'a String>) -> anyhow::Result<Vec<String>> {
    let normalizer = normalizer();
    let mut chars = BTreeSet::new();
    for text in texts {
        let mut normalized = NormalizedString::from(text.as_str());
        normalizer.normalize(&mut normalized).map_err(|e| anyhow!("{e}"))?;
        let mut words = PreTokenizedString::from(normalized);
        BertPreTokenizer.pre_tokenize(&mut words).map_err(|e| anyhow!("{e}"))?;
        for (word, _, _) in words.get_splits(OffsetReferential::Original, OffsetType::Byte) {
            chars.extend(word.chars().skip(1));
        }
    }
    Ok(chars.into_iter().map(|c| format!("##{c}")).collect())
}

/// Trains a WordPiece tokenizer of at most `vocab_size` tokens on `texts` and returns its
/// `tokenizer.json`. The same texts always give the same vocabulary: tokenizers 0.22's
/// trainer numbers the `##` pieces in hash-map order, which changes from run to run and, through
/// its tie-breaking, the merges it picks (huggingface/tokenizers#1794). So the pieces are given
/// to it up front, in character order, as extra special tokens, and the tokenizer is then
/// rebuilt from the trained vocabulary with only the real special tokens.
pub fn train_wordpiece<'a>(
    texts: impl Iterator<Item = &'a String> + Send + Clone,
    vocab_size: usize,
) -> anyhow::Result<String> {
    let specials: Vec<AddedToken> = SPECIAL_TOKENS
        .iter()
        .map(|t| t.to_string())
        .chain(continuation_tokens(texts.clone())?)
        .map(|t| AddedToken::from(t, true))
        .collect();
    let mut training = Tokenizer::new(WordPiece::default());
    training.with_normalizer(Some(normalizer()));
    training.with_pre_tokenizer(Some(BertPreTokenizer));
    let mut trainer: TrainerWrapper = WordPieceTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(specials)
        .build()
        .into();
    training
        .train(&mut trainer, texts)
        .map_err(|e| anyhow!("training the WordPiece vocabulary failed: {e}"))?;
    // The trained tokenizer with the `##` pieces dropped from its added (special) tokens;
    // they stay in the model's vocabulary.
    let mut json: serde_json::Value = serde_json::from_str(&training.to_string(false).map_err(|e| anyhow!("{e}"))?)?;
    if let Some(added) = json["added_tokens"].as_array_mut() {
        added.retain(|t| t["content"].as_str().is_some_and(|c| SPECIAL_TOKENS.contains(&c)));
    }
    let mut tokenizer: Tokenizer = json
        .to_string()
        .parse()
        .map_err(|e| anyhow!("rebuilding the trained tokenizer failed: {e}"))?;
    tokenizer.with_decoder(Some(WordPieceDecoder::default()));
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
        // "##" pieces are ordinary vocabulary, not special tokens.
        let enc = tok.encode("warrants").unwrap();
        assert_eq!(enc.special, [true, false, false, true], "{:?}", enc.tokens);
    }

    #[test]
    fn the_same_texts_give_the_same_vocabulary() {
        let texts: Vec<String> = (0..80)
            .map(|i| format!("Case {i}: the petitioner's appeal of the zoning order, quickly rejected, was reviewed."))
            .collect();
        let first = train_wordpiece(texts.iter(), 150).unwrap();
        for _ in 0..4 {
            assert_eq!(train_wordpiece(texts.iter(), 150).unwrap(), first);
        }
    }
}
