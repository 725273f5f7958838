"""The six benchmark models and their analytic FLOP counts, shared by bench.py.

Each model is a 2-class text classifier over the uncased BERT WordPiece vocabulary (30522
tokens) at sequence length 128, randomly initialised from a config (nothing is downloaded).
The names are the ones `trainer bench --against` asks for (trainer/src/bench_reference.rs,
`reference_name`): keep them in step with Astrid's presets.
"""
from __future__ import annotations

from typing import NamedTuple

VOCAB = 30522
SEQ_LEN = 128
NUM_LABELS = 2
MAX_POSITIONS = 512


class Shape(NamedTuple):
    family: str  # "bert" or "distilbert"
    layers: int
    hidden: int
    heads: int
    intermediate: int


CONFIGS: dict[str, Shape] = {
    "Teacher_BERT": Shape("bert", 12, 768, 12, 3072),
    "Step1_DistilBERT": Shape("distilbert", 6, 768, 12, 3072),
    "Step2_Custom6x512": Shape("bert", 6, 512, 8, 2048),
    "Step3_TinyBERT": Shape("bert", 4, 312, 12, 1200),
    "Step4_MiniLM": Shape("bert", 12, 384, 12, 1536),
    "Step5_Custom2x384": Shape("bert", 2, 384, 6, 1536),
}


def make_config(name: str, attn_implementation: str | None = None):
    """The Hugging Face config of model `name` (attention kernel: transformers' default unless given)."""
    from transformers import BertConfig, DistilBertConfig

    shape = CONFIGS[name]
    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    if shape.family == "bert":
        return BertConfig(
            vocab_size=VOCAB,
            hidden_size=shape.hidden,
            num_hidden_layers=shape.layers,
            num_attention_heads=shape.heads,
            intermediate_size=shape.intermediate,
            max_position_embeddings=MAX_POSITIONS,
            type_vocab_size=2,
            num_labels=NUM_LABELS,
            **extra,
        )
    return DistilBertConfig(
        vocab_size=VOCAB,
        dim=shape.hidden,
        n_layers=shape.layers,
        n_heads=shape.heads,
        hidden_dim=shape.intermediate,
        max_position_embeddings=MAX_POSITIONS,
        num_labels=NUM_LABELS,
        **extra,
    )


def build_model(name: str, seed: int = 0, attn_implementation: str | None = None):
    """Model `name` as a sequence classifier, its weights drawn after torch.manual_seed(seed)."""
    import torch
    from transformers import BertForSequenceClassification, DistilBertForSequenceClassification

    torch.manual_seed(seed)
    config = make_config(name, attn_implementation)
    if CONFIGS[name].family == "bert":
        return BertForSequenceClassification(config)
    return DistilBertForSequenceClassification(config)


def forward_flops(name: str, seq_len: int = SEQ_LEN) -> dict:
    """FLOPs (2 per multiply-add) of one forward pass of one sequence, by kind.

    linear: the Q, K, V and output projections (4*H*H) and the FFN (2*H*I), per token and layer;
    attn:   Q K^T and P V, 2*L*L*H multiply-adds per layer;
    head:   the pooler / pre-classifier (H*H, one token) and the classifier (H*labels).
    Element-wise work (softmax, GELU, LayerNorm, embeddings) is left out: under 2%.
    """
    shape = CONFIGS[name]
    h, i, n, length = shape.hidden, shape.intermediate, shape.layers, seq_len
    linear = n * 2 * length * (4 * h * h + 2 * h * i)
    attn = n * 2 * (2 * length * length * h)
    head = 2 * h * h + 2 * h * NUM_LABELS
    return {"linear": linear, "attn": attn, "head": head, "total": linear + attn + head}


def ig_flops(name: str, n_steps: int = 50, seq_len: int = SEQ_LEN, with_delta: bool = False) -> int:
    """FLOPs of one Captum IG explanation (gradients with respect to inputs_embeds).

    Captum asks autograd for the input gradient only, so the backward pass computes dX = dY W^T
    and no weight gradients: per step a forward (linear + attn) and a backward (linear + 2 attn).
    with_delta adds the two forwards Captum runs for the convergence delta.
    """
    f = forward_flops(name, seq_len)
    total = n_steps * (2 * f["linear"] + 3 * f["attn"] + 2 * f["head"])
    if with_delta:
        total += 2 * f["total"]
    return total


def train_flops_per_seq(name: str, seq_len: int = SEQ_LEN) -> int:
    """One training step's FLOPs per sequence: forward plus backward with weight gradients, ~3x forward."""
    return 3 * forward_flops(name, seq_len)["total"]
