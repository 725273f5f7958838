//! The tiny models, texts and settings of the alignment tests.

use astrid::ModelConfig;
use astrid::explain::Baseline;
use astrid::rng::SplitMix64;
use burn::module::Module;
use burn::tensor::Device;

use crate::training::align::{AlignSettings, AlignViews, EvidenceSettings};
use crate::training::batches::Encoded;
use astrid::EncoderClassifier;
use astrid::erasure::Erasure;

pub const MASK: u32 = 3;

/// Seeding and initialising are one step: tests run in parallel and the seed is the
/// backend's, shared by all.
static SEEDED: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn tiny(seed: u64, hidden: usize, device: &Device) -> EncoderClassifier {
    let _one_at_a_time = SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    let mut config = ModelConfig::bert(1, hidden, 2, 2 * hidden);
    config.vocab_size = 40;
    config.max_position_embeddings = 16;
    config.hidden_dropout = 0.0;
    config.attention_dropout = 0.0;
    config.classifier_dropout = 0.0;
    device.seed(seed);
    config.init(device).valid()
}

/// Texts [CLS] w… [SEP] of 6 to 10 tokens; ids 10..40 are words, 1 [CLS], 2 [SEP].
pub fn data(n: usize) -> Encoded {
    let mut rng = SplitMix64::new(5);
    let mut d = Encoded::default();
    for i in 0..n {
        let len = 6 + i % 5;
        let mut ids = vec![1];
        ids.extend((0..len - 2).map(|_| 10 + rng.below(30) as u32));
        ids.push(2);
        d.special.push((0..len).map(|p| p == 0 || p == len - 1).collect());
        d.ids.push(ids);
        d.labels.push(i % 2);
    }
    d
}

pub fn settings(views: AlignViews, erasure: Erasure) -> AlignSettings {
    // Normalised as `RunConfig::align_settings` does.
    AlignSettings {
        views,
        weight: 1.0,
        noise: matches!(views, AlignViews::Path | AlignViews::Both).then_some(0.3),
        step: (views == AlignViews::Slope).then_some(0.1),
        evidence: matches!(views, AlignViews::Evidence | AlignViews::Both).then_some(EvidenceSettings {
            top_k: 2,
            erasure,
            ig_steps: 4,
        }),
        baseline: Baseline::Zero,
    }
}
