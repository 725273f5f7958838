//! Test models and texts shared by the training modules' tests.

use astrid::ModelConfig;
use astrid::model::EncoderClassifier;
use burn::tensor::Device;

use crate::training::batches::Encoded;

/// A one-layer BERT of width 16 over a 40-token vocabulary, with dropout `dropout`.
pub fn tiny_model(dropout: f64) -> EncoderClassifier {
    let mut config = ModelConfig::bert(1, 16, 2, 32);
    config.vocab_size = 40;
    config.max_position_embeddings = 16;
    config.hidden_dropout = dropout;
    config.attention_dropout = dropout;
    config.classifier_dropout = dropout;
    config.init(&Device::flex())
}

/// Seven texts [CLS] w… [SEP] of 4 to 10 tokens, both classes, uneven.
pub fn tiny_data() -> Encoded {
    let ids: Vec<Vec<u32>> = (0..7u32)
        .map(|t| {
            let words = (0..2 + t).map(|w| 10 + (t * 7 + w * 3) % 30);
            std::iter::once(1).chain(words).chain(std::iter::once(2)).collect()
        })
        .collect();
    Encoded {
        special: ids
            .iter()
            .map(|t| (0..t.len()).map(|p| p == 0 || p == t.len() - 1).collect())
            .collect(),
        labels: vec![0, 1, 1, 0, 1, 1, 1],
        ids,
    }
}
