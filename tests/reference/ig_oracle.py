#!/usr/bin/env python3
"""Integrated Gradients oracle: Captum's attributions for a BERT sequence classifier.

    $VENV/bin/python tests/reference/ig_oracle.py --model-dir DIR --inputs inputs.json [--output out.json]

The model (DIR)
  config.json (model_type bert) and model.safetensors (or pytorch_model.bin), either in
  BertForSequenceClassification layout ("bert.*", "classifier.*") or in plain BertModel layout
  (no "bert." prefix, e.g. a sentence-transformers checkpoint). Weights the checkpoint lacks may
  only be the head (classifier, pooler); they are drawn from --head-seed: one CPU
  torch.Generator seeded with it, the missing keys in sorted order, weights normal(0, std) with
  std = --head-std or the config's initializer_range, biases zero. --export-model-dir OUT writes
  the weights actually used, head included, in BertForSequenceClassification layout (float32
  model.safetensors + config.json), so another implementation can load the very same model.

The inputs (inputs.json), one of
  {"items": [{"id": "a", "input_ids": [...], "attention_mask": [...], "target": 1,
              "token_type_ids": [...]}, ...]}            (all but input_ids optional)
  [{...}, ...]                                           (the items alone)
  {"input_ids": [[...]], "attention_mask": [[...]], "targets": [...], "token_type_ids": [[...]]}
  A missing or null target means the predicted class (argmax of the logits).

What is computed (the definition Astrid implements)
  F(e)     = softmax(model(inputs_embeds=e, attention_mask, token_type_ids).logits)[:, target]
  input    = word_embeddings(input_ids); the position and token-type embeddings and the
             embedding LayerNorm are applied inside the model and are not attributed
  baseline = zeros, n_steps 50, method gausslegendre, internal_batch_size unset
  attribution = captum.attr.IntegratedGradients(F) (multiply_by_inputs), per token summed over
             the embedding dimension; convergence_delta = sum(attributions) - (F(input) - F(baseline))
  Each item is explained on its own, as a batch of one at its own length. Eager attention,
  float32 and 2 threads unless told otherwise.

The output (--output, default stdout): {"meta": {...}, "results": [...]}, one result per item
with logits, probs, target, attributions, convergence_delta, f_input, f_baseline and more.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

# Nothing here may reach the network: every model comes from a local directory.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

METHODS = ["gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle"]
# The only keys a checkpoint may lack; they are drawn from the head seed.
HEAD_PREFIXES = ("classifier.", "bert.pooler.")
CONFIG_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size",
                 "max_position_embeddings", "type_vocab_size", "hidden_act", "layer_norm_eps")


def _ignored(key: str) -> bool:
    """Checkpoint keys that are no weights of the classifier: buffers and the pre-training heads."""
    return key.endswith(("embeddings.position_ids", "embeddings.token_type_ids")) or key.startswith("cls.")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def tensor_sha256(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def read_checkpoint(model_dir: Path) -> tuple[dict, Path]:
    safetensors_path = model_dir / "model.safetensors"
    if safetensors_path.exists():
        from safetensors.torch import load_file

        return load_file(str(safetensors_path)), safetensors_path
    bin_path = model_dir / "pytorch_model.bin"
    if bin_path.exists():
        return torch.load(str(bin_path), map_location="cpu", weights_only=True), bin_path
    raise SystemExit(f"{model_dir}: neither model.safetensors nor pytorch_model.bin")


def load_model(model_dir: Path, num_labels: int | None, head_seed: int, attn: str, head_std: float | None):
    """The classifier in eval mode (float32), its config, and a description of what was loaded."""
    from transformers import BertConfig, BertForSequenceClassification

    config_json = json.loads((model_dir / "config.json").read_text())
    if config_json.get("model_type", "bert") != "bert":
        raise SystemExit(f"{model_dir}: model_type {config_json.get('model_type')!r}; only bert is supported")
    config = BertConfig.from_dict(config_json)
    if num_labels is not None and num_labels != config.num_labels:
        config.num_labels = num_labels
    config.architectures = ["BertForSequenceClassification"]
    config._attn_implementation = attn

    # transformers' own initialisation is overwritten below; seeding only makes it repeatable.
    torch.manual_seed(head_seed)
    model = BertForSequenceClassification(config)
    expected = model.state_dict()

    checkpoint, weights_path = read_checkpoint(model_dir)
    if not any(key.startswith("bert.") for key in checkpoint):
        checkpoint = {(key if key.startswith("classifier.") else f"bert.{key}"): value
                      for key, value in checkpoint.items()}
    ignored = sorted(key for key in checkpoint if _ignored(key))
    weights = {key: value for key, value in checkpoint.items() if not _ignored(key)}
    if unexpected := sorted(set(weights) - set(expected)):
        raise SystemExit(f"weights the classifier does not have: {unexpected[:10]}")
    missing = sorted(set(expected) - set(weights))
    if not_head := [key for key in missing if not key.startswith(HEAD_PREFIXES)]:
        raise SystemExit(f"the checkpoint lacks weights other than the head: {not_head[:10]}")
    for key, value in weights.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise SystemExit(f"{key}: shape {tuple(value.shape)}, the config wants {tuple(expected[key].shape)}")

    generator = torch.Generator().manual_seed(head_seed)
    std = config.initializer_range if head_std is None else head_std
    drawn = {}
    for key in missing:  # sorted: the draws do not depend on dictionary order
        shape = expected[key].shape
        if key.endswith(".weight"):
            value = torch.empty(shape, dtype=torch.float32).normal_(0.0, std, generator=generator)
        else:
            value = torch.zeros(shape, dtype=torch.float32)
        weights[key] = value
        drawn[key] = tensor_sha256(value)
    model.load_state_dict({key: value.to(torch.float32) for key, value in weights.items()}, strict=True)
    model.eval()
    info = {
        "model_dir": str(model_dir),
        "weights_file": weights_path.name,
        "weights_sha256": file_sha256(weights_path),
        "config": {field: config_json.get(field) for field in CONFIG_FIELDS},
        "num_labels": config.num_labels,
        "attn_implementation": model.config._attn_implementation,
        "head_seed": head_seed,
        "head_init_std": std,
        "initialised_keys": drawn,  # key -> sha256 of its float32 bytes
        "ignored_checkpoint_keys": ignored,
    }
    return model, config, info


def export_model(model, config, out_dir: Path) -> str:
    """Writes the model's float32 weights and config as a BertForSequenceClassification directory."""
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().to(torch.float32).contiguous().clone() for key, value in model.state_dict().items()}
    save_file(state, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    config_json = config.to_dict()
    for private in ("_attn_implementation", "_attn_implementation_autoset"):
        config_json.pop(private, None)
    config_json["architectures"] = ["BertForSequenceClassification"]
    (out_dir / "config.json").write_text(json.dumps(config_json, indent=2, sort_keys=True) + "\n")
    return file_sha256(out_dir / "model.safetensors")


def read_items(doc) -> list[dict]:
    """The items of an inputs document, checked, in one shape."""
    if isinstance(doc, list):
        raw = doc
    elif "items" in doc:
        raw = doc["items"]
    else:
        rows = doc["input_ids"]
        n = len(rows)
        masks = doc.get("attention_mask") or [None] * n
        targets = doc.get("targets") or [None] * n
        types = doc.get("token_type_ids") or [None] * n
        raw = [{"id": str(i), "input_ids": rows[i], "attention_mask": masks[i], "target": targets[i],
                "token_type_ids": types[i]} for i in range(n)]
    items = []
    for i, item in enumerate(raw):
        ids = [int(x) for x in item["input_ids"]]
        mask = [int(x) for x in (item.get("attention_mask") or [1] * len(ids))]
        types = item.get("token_type_ids")
        if len(mask) != len(ids):
            raise SystemExit(f"item {i}: {len(mask)} attention_mask values for {len(ids)} input_ids")
        if types is not None and len(types) != len(ids):
            raise SystemExit(f"item {i}: {len(types)} token_type_ids for {len(ids)} input_ids")
        items.append({"id": str(item.get("id", i)), "input_ids": ids, "attention_mask": mask,
                      "target": item.get("target"), "token_type_ids": types})
    return items


def read_vocab(model_dir: Path) -> list[str] | None:
    path = model_dir / "vocab.txt"
    return path.read_text(encoding="utf-8").split("\n") if path.exists() else None


def explain(model, item: dict, dtype, n_steps: int, method: str, internal_batch_size, full: bool, vocab) -> dict:
    from captum.attr import IntegratedGradients

    ids = torch.tensor([item["input_ids"]], dtype=torch.long)
    mask = torch.tensor([item["attention_mask"]], dtype=torch.long)
    types = None if item["token_type_ids"] is None else torch.tensor([item["token_type_ids"]], dtype=torch.long)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits[0]
    if item["target"] is None:
        target, target_source = int(logits.argmax()), "argmax"
    else:
        target, target_source = int(item["target"]), "given"
    if not 0 <= target < logits.numel():
        raise SystemExit(f"item {item['id']}: target {target} outside 0..{logits.numel() - 1}")

    def forward(inputs_embeds, attention_mask, token_type_ids=None):
        out = model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return torch.softmax(out.logits, dim=-1)[:, target]

    embeds = model.get_input_embeddings()(ids).detach().to(dtype)
    baseline = torch.zeros_like(embeds)
    extra_args = (mask,) if types is None else (mask, types)
    started = time.perf_counter()
    attributions, delta = IntegratedGradients(forward).attribute(
        embeds, baselines=baseline, additional_forward_args=extra_args, n_steps=n_steps, method=method,
        internal_batch_size=internal_batch_size, return_convergence_delta=True,
    )
    seconds = time.perf_counter() - started
    with torch.no_grad():
        logits_via_embeds = model(inputs_embeds=embeds, attention_mask=mask, token_type_ids=types).logits[0]
        f_input = float(forward(embeds, mask, types)[0])
        f_baseline = float(forward(baseline, mask, types)[0])
    per_token = attributions[0].sum(dim=-1).double()
    result = {
        "id": item["id"],
        "seq_len": len(item["input_ids"]),
        "input_ids": item["input_ids"],
        "attention_mask": item["attention_mask"],
        "target": target,
        "target_source": target_source,
        "logits": logits.double().tolist(),
        "probs": torch.softmax(logits.double(), dim=-1).tolist(),
        "logits_via_inputs_embeds": logits_via_embeds.double().tolist(),
        "f_input": f_input,
        "f_baseline": f_baseline,
        "attributions": per_token.tolist(),
        "attributions_total": float(per_token.sum()),
        "convergence_delta": float(delta[0]),
        "seconds": round(seconds, 4),
    }
    if vocab is not None:
        result["tokens"] = [vocab[i] if 0 <= i < len(vocab) else None for i in item["input_ids"]]
    if full:
        result["attributions_full"] = attributions[0].double().tolist()
    return result


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True, type=Path)
    ap.add_argument("--inputs", required=True, type=Path)
    ap.add_argument("--output", type=Path, default=None, help="output JSON (default: stdout)")
    ap.add_argument("--n-steps", type=int, default=50)
    ap.add_argument("--method", default="gausslegendre", choices=METHODS)
    ap.add_argument("--internal-batch-size", type=int, default=None, help="Captum's internal_batch_size (default unset)")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                    help="compute dtype (the weights are loaded and exported as float32)")
    ap.add_argument("--attn", choices=["eager", "sdpa"], default="eager",
                    help="attention kernel; eager is the explicit softmax(Q K^T / sqrt(d) + mask) V")
    ap.add_argument("--num-labels", type=int, default=None, help="number of classes (default: config.json's)")
    ap.add_argument("--head-seed", type=int, default=0, help="seed of the weights the checkpoint lacks")
    ap.add_argument("--head-std", type=float, default=None,
                    help="std of those weights (default: the config's initializer_range)")
    ap.add_argument("--export-model-dir", type=Path, default=None, help="write the weights used here")
    ap.add_argument("--full-attributions", action="store_true", help="also write the [seq_len x hidden] attributions")
    ap.add_argument("--threads", type=int, default=2)
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
    model, config, info = load_model(args.model_dir, args.num_labels, args.head_seed, args.attn, args.head_std)
    if args.export_model_dir is not None:
        info["exported_to"] = str(args.export_model_dir)
        info["exported_sha256"] = export_model(model, config, args.export_model_dir)
    model = model.to(dtype)
    items = read_items(json.loads(args.inputs.read_text()))
    vocab = read_vocab(args.model_dir)

    import captum
    import transformers
    from captum.attr._utils.approximation_methods import approximation_parameters

    step_sizes_of, alphas_of = approximation_parameters(args.method)
    step_sizes, alphas = step_sizes_of(args.n_steps), alphas_of(args.n_steps)
    results = [explain(model, item, dtype, args.n_steps, args.method, args.internal_batch_size,
                       args.full_attributions, vocab) for item in items]
    doc = {
        "meta": {
            "tool": "ig_oracle.py",
            "versions": {"torch": torch.__version__, "captum": captum.__version__,
                         "transformers": transformers.__version__, "python": sys.version.split()[0]},
            "forward": "softmax(model(inputs_embeds=word_embeddings(input_ids), attention_mask, "
                       "token_type_ids).logits, -1)[:, target]",
            "attribution": "Captum IntegratedGradients(multiply_by_inputs=True) over inputs_embeds, "
                           "summed over embedding dim",
            "baseline": "zeros (inputs_embeds)",
            "n_steps": args.n_steps,
            "method": args.method,
            "internal_batch_size": args.internal_batch_size,
            "dtype": args.dtype,
            "threads": args.threads,
            # Captum scales the inputs by these alphas (Python floats) and weights the gradients by
            # torch.tensor(step_sizes).float(), i.e. step sizes rounded to float32.
            "alphas": alphas,
            "step_sizes": step_sizes,
            "step_sizes_as_used_float32": torch.tensor(step_sizes).float().double().tolist(),
            "model": info,
        },
        "results": results,
    }
    text = json.dumps(doc, indent=1)
    if args.output is None:
        print(text)
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
        print(f"wrote {args.output} ({len(results)} items)", file=sys.stderr)


if __name__ == "__main__":
    main()
