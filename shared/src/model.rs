//! The encoder classifier: one Burn module for the BERT and DistilBERT layouts.
//!
//! Field names follow the Hugging Face weights closely enough that [`crate::weights`] maps
//! them with a handful of rules. The forward pass is split at the word embeddings so that
//! Integrated Gradients can differentiate with respect to them, exactly as transformers'
//! `inputs_embeds` does: position and token-type embeddings and the embedding LayerNorm are
//! applied after, and are not attributed.

use burn::module::Module;
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig,
};
use burn::tensor::activation::{relu, tanh};

use crate::kernels::{add_layer_norm, attention, gelu, layer_norm, linear};
use burn::tensor::{Bool, Device, Int, Shape, Tensor};

use crate::config::{Architecture, ModelConfig};

mod dropout;

pub use dropout::with_dropout_stream;
use dropout::{dropout, dropout_multiplier};

/// Word, position and (BERT) token-type embeddings, then LayerNorm and dropout.
#[derive(Module, Debug)]
pub struct Embeddings {
    pub word_embeddings: Embedding,
    pub position_embeddings: Embedding,
    pub token_type_embeddings: Option<Embedding>,
    pub layer_norm: LayerNorm,
    pub dropout: Dropout,
}

/// One post-LayerNorm transformer block (self-attention, then a GELU feed-forward).
#[derive(Module, Debug)]
pub struct EncoderLayer {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    pub attention_output: Linear,
    pub attention_norm: LayerNorm,
    pub intermediate: Linear,
    pub output: Linear,
    pub output_norm: LayerNorm,
    pub attention_dropout: Dropout,
    pub dropout: Dropout,
    pub num_heads: usize,
}

/// A sequence classifier: embeddings, encoder, a dense layer over [CLS] (BERT's tanh pooler
/// or DistilBERT's ReLU pre_classifier), dropout and a linear classifier.
#[derive(Module, Debug)]
pub struct EncoderClassifier {
    pub embeddings: Embeddings,
    pub layers: Vec<EncoderLayer>,
    pub pooler: Linear,
    pub classifier_dropout: Dropout,
    pub classifier: Linear,
    #[module(skip)]
    pub config: ModelConfig,
}

/// Which positions hold real tokens: `[batch, seq]`, true for a token, false for padding.
/// `None` in the APIs below means "every position is real".
pub type PaddingMask = Tensor<2, Bool>;

fn init_linear(d_in: usize, d_out: usize, device: &Device) -> Linear {
    let mut layer = LinearConfig::new(d_in, d_out)
        .with_initializer(Initializer::Normal { mean: 0.0, std: 0.02 })
        .init(device);
    if let Some(bias) = layer.bias.take() {
        layer.bias = Some(bias.map(|b| b.zeros_like()));
    }
    layer
}

fn embedding(n: usize, d: usize, device: &Device) -> Embedding {
    EmbeddingConfig::new(n, d)
        .with_initializer(Initializer::Normal { mean: 0.0, std: 0.02 })
        .init(device)
}

impl ModelConfig {
    /// Builds a freshly initialised model (normal(0, 0.02) weights, zero biases, as
    /// transformers does). Call [`ModelConfig::validate`] first for a clear error on bad shapes.
    pub fn init(&self, device: &Device) -> EncoderClassifier {
        let h = self.hidden_size;
        let norm = || LayerNormConfig::new(h).with_epsilon(self.layer_norm_eps).init(device);
        let embeddings = Embeddings {
            word_embeddings: embedding(self.vocab_size, h, device),
            position_embeddings: embedding(self.max_position_embeddings, h, device),
            token_type_embeddings: (self.architecture == Architecture::Bert)
                .then(|| embedding(self.type_vocab_size, h, device)),
            layer_norm: norm(),
            dropout: DropoutConfig::new(self.hidden_dropout).init(),
        };
        let layers = (0..self.num_layers)
            .map(|_| EncoderLayer {
                query: init_linear(h, h, device),
                key: init_linear(h, h, device),
                value: init_linear(h, h, device),
                attention_output: init_linear(h, h, device),
                attention_norm: norm(),
                intermediate: init_linear(h, self.intermediate_size, device),
                output: init_linear(self.intermediate_size, h, device),
                output_norm: norm(),
                attention_dropout: DropoutConfig::new(self.attention_dropout).init(),
                dropout: DropoutConfig::new(self.hidden_dropout).init(),
                num_heads: self.num_heads,
            })
            .collect();
        EncoderClassifier {
            embeddings,
            layers,
            pooler: init_linear(h, h, device),
            classifier_dropout: DropoutConfig::new(self.classifier_dropout).init(),
            classifier: init_linear(h, self.num_labels, device),
            config: self.clone(),
        }
    }
}

impl EncoderLayer {
    /// The layer's output `[batch, seq, hidden]`, or with `first_only` the first position's
    /// alone, `[batch, 1, hidden]`: every position's keys and values, but only [CLS]'s query,
    /// attention output, feed-forward and norms. A classifier's last layer needs no more (its
    /// head reads [CLS]), and skipping the rest skips most of that layer's work, forward and
    /// backward, with the outputs and dropout masks of the whole layer's first row.
    /// `epsilon`: the layer norms' (the model's config has it; burn's `LayerNorm` keeps it
    /// private).
    fn forward(&self, x: Tensor<3>, real: Option<&PaddingMask>, epsilon: f64, first_only: bool) -> Tensor<3> {
        let [batch, seq, _] = x.dims();
        let heads = self.num_heads;
        let k = linear(&self.key, x.clone());
        let v = linear(&self.value, x.clone());
        let (x, rows) = if first_only { (x.narrow(1, 0, 1), 1) } else { (x, seq) };
        let q = linear(&self.query, x.clone());
        let shape = Shape::new([batch, heads, seq, seq]);
        let attention_dropout = dropout_multiplier(&self.attention_dropout, shape, rows, &x.device());
        let context = attention(q, k, v, heads, real, attention_dropout);
        let attended = dropout(&self.dropout, linear(&self.attention_output, context), seq);
        let x = add_layer_norm(&self.attention_norm, epsilon, attended, x);
        let ff = linear(&self.output, gelu(linear(&self.intermediate, x.clone())));
        add_layer_norm(&self.output_norm, epsilon, dropout(&self.dropout, ff, seq), x)
    }
}

impl EncoderClassifier {
    /// The device the model's weights live on.
    pub fn device(&self) -> Device {
        self.embeddings.word_embeddings.weight.val().device()
    }

    /// Word embeddings of `ids` (`[batch, seq]` → `[batch, seq, hidden]`): the input that
    /// attributions are computed for.
    pub fn word_embeddings(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        self.embeddings.word_embeddings.forward(ids)
    }

    /// Logits `[batch, labels]` from token ids.
    pub fn forward(&self, ids: Tensor<2, Int>, mask: Option<PaddingMask>) -> Tensor<2> {
        let words = self.word_embeddings(ids);
        self.forward_embeds(words, mask)
    }

    /// Logits from word embeddings (`inputs_embeds` in transformers): positions, token types
    /// (all 0) and the embedding LayerNorm are added here. The last layer computes [CLS]'s
    /// row alone ([`EncoderLayer::forward`]).
    pub fn forward_embeds(&self, words: Tensor<3>, mask: Option<PaddingMask>) -> Tensor<2> {
        self.logits(words, mask, false)
    }

    /// [`EncoderClassifier::forward_embeds`], the last layer computing every row when
    /// `every_row` (what the tests compare the [CLS]-only layer with).
    fn logits(&self, words: Tensor<3>, mask: Option<PaddingMask>, every_row: bool) -> Tensor<2> {
        let [batch, seq, hidden] = words.dims();
        let emb = &self.embeddings;
        let positions = emb
            .position_embeddings
            .weight
            .val()
            .narrow(0, 0, seq)
            .reshape([1, seq, hidden]);
        let mut x = words + positions;
        if let Some(types) = &emb.token_type_embeddings {
            x = x + types.weight.val().narrow(0, 0, 1).reshape([1, 1, hidden]);
        }
        let epsilon = self.config.layer_norm_eps;
        let mut x = dropout(&emb.dropout, layer_norm(&emb.layer_norm, epsilon, x), seq);
        let last = self.layers.len().saturating_sub(1);
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x, mask.as_ref(), epsilon, i == last && !every_row);
        }
        let cls = x.narrow(1, 0, 1).reshape([batch, hidden]);
        let pooled = linear(&self.pooler, cls);
        let pooled = match self.config.architecture {
            Architecture::Bert => tanh(pooled),
            Architecture::DistilBert => relu(pooled),
        };
        linear(&self.classifier, dropout(&self.classifier_dropout, pooled, batch))
    }
}

impl EncoderClassifier {
    /// Copies the teacher's embeddings (and LayerNorm) and evenly spaced encoder layers into a
    /// student of the same width, as DistilBERT was initialised from BERT. The student keeps its
    /// own head. Returns the model unchanged, with the reason, when the shapes do not allow it.
    /// The encoder layers copied are returned (teacher layer indices, one per student layer).
    #[allow(clippy::result_large_err)]
    pub fn start_from_teacher(self, teacher: &EncoderClassifier) -> Result<(Self, Vec<usize>), (Self, String)> {
        let mut student = self;
        let (s, t) = (&student.config, &teacher.config);
        let mismatch = [
            ("hidden size", s.hidden_size, t.hidden_size),
            ("attention heads", s.num_heads, t.num_heads),
            ("feed-forward size", s.intermediate_size, t.intermediate_size),
            ("vocabulary", s.vocab_size, t.vocab_size),
            ("positions", s.max_position_embeddings, t.max_position_embeddings),
        ]
        .into_iter()
        .find(|(_, a, b)| a != b);
        if let Some((what, a, b)) = mismatch {
            return Err((student, format!("its {what} is {a}, the teacher's {b}")));
        }
        if s.layer_norm_eps != t.layer_norm_eps {
            let why = format!(
                "its layer-norm epsilon is {}, the teacher's {} (it would copy the teacher's layer norms)",
                s.layer_norm_eps, t.layer_norm_eps
            );
            return Err((student, why));
        }
        if s.num_layers > t.num_layers {
            let why = format!(
                "it has more layers ({}) than the teacher ({})",
                s.num_layers, t.num_layers
            );
            return Err((student, why));
        }
        let layers: Vec<usize> = (0..s.num_layers).map(|i| i * t.num_layers / s.num_layers).collect();
        student.embeddings.word_embeddings = teacher.embeddings.word_embeddings.clone();
        student.embeddings.position_embeddings = teacher.embeddings.position_embeddings.clone();
        student.embeddings.layer_norm = teacher.embeddings.layer_norm.clone();
        if student.embeddings.token_type_embeddings.is_some() {
            student.embeddings.token_type_embeddings = teacher.embeddings.token_type_embeddings.clone();
        }
        for (i, &from) in layers.iter().enumerate() {
            let dropout = student.layers[i].dropout.clone();
            let attention_dropout = student.layers[i].attention_dropout.clone();
            student.layers[i] = teacher.layers[from].clone();
            student.layers[i].dropout = dropout;
            student.layers[i].attention_dropout = attention_dropout;
        }
        Ok((student, layers))
    }
}

#[cfg(test)]
mod tests {
    use super::dropout::{DROPOUT_STREAM, dropout_mask};
    use super::*;
    use crate::explain::read_f32;
    use crate::rng::SplitMix64;

    /// A stream's masks keep each value with probability 1 − p, scaled by 1/(1 − p); the same
    /// seed gives the same mask; the stream ends with `with_dropout_stream`.
    #[test]
    fn dropout_streams_draw_scaled_masks_of_the_right_rate() {
        let mut rng = SplitMix64::new(3);
        let mask = dropout_mask(100_001, 100_001, 100_001, 0.9, &mut rng);
        assert_eq!(mask.len(), 100_001);
        let scale = (1.0 / 0.9) as f32;
        assert!(mask.iter().all(|&m| m == 0.0 || m == scale));
        let kept = mask.iter().filter(|&&m| m > 0.0).count() as f64 / mask.len() as f64;
        assert!((kept - 0.9).abs() < 0.005, "kept {kept}");
        assert_eq!(
            dropout_mask(1000, 1000, 1000, 0.9, &mut SplitMix64::new(3)),
            mask[..1000]
        );
        // The first 7 (odd: a run may start at a draw's high half) of every 13 values, as the
        // whole mask has them; the stream moves past the whole mask.
        let mut partial_rng = SplitMix64::new(3);
        let partial = dropout_mask(100_001 / 13 * 13, 13, 7, 0.9, &mut partial_rng);
        let expected: Vec<f32> = mask.chunks_exact(13).flat_map(|block| block[..7].to_vec()).collect();
        assert_eq!(partial, expected);
        let mut whole_rng = SplitMix64::new(3);
        whole_rng.skip((100_001usize / 13 * 13).div_ceil(2) as u64);
        assert_eq!(partial_rng.next_u64(), whole_rng.next_u64());
        // Several chunks on several threads give what drawing in order gives, and leave the
        // stream where drawing would.
        let mut in_order = SplitMix64::new(3);
        let threshold = (0.9 * 4_294_967_296.0) as u64;
        let expected: Vec<f32> = (0..mask.len().div_ceil(2))
            .flat_map(|_| {
                let draw = in_order.next_u64();
                [draw & 0xFFFF_FFFF, draw >> 32].map(|u| if u < threshold { scale } else { 0.0 })
            })
            .take(mask.len())
            .collect();
        assert_eq!(mask, expected);
        assert_eq!(
            rng.next_u64(),
            in_order.next_u64(),
            "the stream moved on by the draws used"
        );

        let mut config = ModelConfig::bert(1, 8, 2, 16);
        config.vocab_size = 20;
        config.max_position_embeddings = 8;
        config.hidden_dropout = 0.5;
        let autodiff = Device::flex().autodiff();
        let model = config.init(&Device::flex()).to_device(&autodiff).train();
        let ids = || Tensor::<2, Int>::from_data([[1, 5, 6, 7, 2]], &autodiff);
        let logits = |seed| {
            with_dropout_stream(seed, || {
                pollster::block_on(read_f32(model.forward(ids(), None))).unwrap()
            })
        };
        assert_eq!(logits(1), logits(1), "one seed, one mask");
        assert_ne!(logits(1), logits(2), "the stream drew no mask");
        assert!(
            DROPOUT_STREAM.with(|s| s.borrow().is_none()),
            "the stream outlived its scope"
        );
        let valid = model.valid();
        let plain = pollster::block_on(read_f32(valid.forward(ids().inner(), None))).unwrap();
        let streamed = with_dropout_stream(1, || {
            pollster::block_on(read_f32(valid.forward(ids().inner(), None))).unwrap()
        });
        assert_eq!(plain, streamed, "no dropout outside training");
    }

    /// The last layer computing [CLS]'s row alone gives the logits, and the gradients of the
    /// word embeddings and of the weights, of computing every row: in training (dropout masks
    /// from a stream), with padding, and in evaluation without autodiff.
    #[test]
    fn the_cls_only_last_layer_gives_the_whole_layers_results() {
        let mut config = ModelConfig::bert(2, 16, 4, 32);
        config.vocab_size = 30;
        config.max_position_embeddings = 12;
        config.hidden_dropout = 0.2;
        config.attention_dropout = 0.3;
        let autodiff = Device::flex().autodiff();
        let model = config.init(&Device::flex()).to_device(&autodiff).train();
        let ids = Tensor::<2, Int>::from_data([[1, 5, 6, 7, 2, 0, 0], [1, 8, 9, 10, 11, 12, 2]], &autodiff);
        let real = ids.clone().not_equal_elem(0);
        let words = model.word_embeddings(ids.clone()).detach().require_grad();
        let close = |a: &[f32], b: &[f32], what: &str| {
            assert_eq!(a.len(), b.len(), "{what}");
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{what}: {x} against {y}");
            }
        };
        let read = |t: Tensor<2>| pollster::block_on(read_f32(t)).unwrap();
        let run = |every_row: bool| {
            with_dropout_stream(9, || {
                let logits = model.logits(words.clone(), Some(real.clone()), every_row);
                let grads = logits.clone().sum().backward();
                let word_grad = words.grad(&grads).expect("the words' gradient");
                let last = &model.layers[1];
                let key_grad = last.key.weight.grad(&grads).expect("the last keys' gradient");
                let query_grad = last.query.weight.grad(&grads).expect("the last queries' gradient");
                let first_grad = model.layers[0].value.weight.grad(&grads).expect("a gradient");
                (
                    read(logits.inner()),
                    pollster::block_on(read_f32(word_grad)).unwrap(),
                    [key_grad, query_grad, first_grad].map(&read),
                )
            })
        };
        let (cls_only, every_row) = (run(false), run(true));
        close(&cls_only.0, &every_row.0, "logits in training");
        assert!(cls_only.0.iter().all(|l| l.is_finite()));
        close(&cls_only.1, &every_row.1, "the words' gradient");
        for (name, (a, b)) in ["last keys", "last queries", "first values"]
            .iter()
            .zip(cls_only.2.iter().zip(&every_row.2))
        {
            assert!(b.iter().any(|&g| g != 0.0), "{name}: no gradient to compare");
            close(a, b, &format!("{name}' weight gradient"));
        }
        let valid = model.valid();
        let plain = |every_row| read(valid.logits(words.clone().inner(), Some(real.clone().inner()), every_row));
        close(&plain(false), &plain(true), "logits in evaluation");
        assert_ne!(plain(false), cls_only.0, "dropout made no difference in training");
    }

    #[test]
    fn students_of_the_teachers_width_start_from_its_layers() {
        let device = Device::flex();
        let teacher_config = ModelConfig {
            num_layers: 4,
            ..ModelConfig::preset("tiny_bert").unwrap()
        };
        let teacher = teacher_config.init(&device);
        let student = ModelConfig {
            num_layers: 2,
            ..ModelConfig::preset("tiny_distilbert").unwrap()
        }
        .init(&device);
        let (student, layers) = student.start_from_teacher(&teacher).map_err(|(_, why)| why).unwrap();
        assert_eq!(layers, vec![0, 2]);
        let same = |a: burn::tensor::Tensor<2>, b: burn::tensor::Tensor<2>| {
            pollster::block_on(read_f32(a)).unwrap() == pollster::block_on(read_f32(b)).unwrap()
        };
        assert!(same(
            student.embeddings.word_embeddings.weight.val(),
            teacher.embeddings.word_embeddings.weight.val()
        ));
        assert!(same(
            student.layers[1].query.weight.val(),
            teacher.layers[2].query.weight.val()
        ));
        assert!(
            student.embeddings.token_type_embeddings.is_none(),
            "a DistilBERT student keeps its layout"
        );
        let narrow = ModelConfig {
            hidden_size: 8,
            ..ModelConfig::preset("tiny_bert").unwrap()
        }
        .init(&device);
        let (_, why) = narrow.start_from_teacher(&teacher).err().unwrap();
        assert!(why.contains("hidden size is 8"), "{why}");
        // The layer norms' epsilon is the config's, not the copied layer's own.
        let other_epsilon = ModelConfig {
            layer_norm_eps: 1e-5,
            ..ModelConfig::preset("tiny_bert").unwrap()
        }
        .init(&device);
        let (_, why) = other_epsilon.start_from_teacher(&teacher).err().unwrap();
        assert!(why.contains("layer-norm epsilon is 0.00001"), "{why}");
    }
}
