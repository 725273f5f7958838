#!/usr/bin/env python3
"""Speed reference: PyTorch + Captum on the six benchmark models of anchor_models.py, on the CPU.

Per model (random weights, 2 classes, sequence length 128, torch.set_num_threads(--threads)):
  params          parameter count (all, and without the word embeddings)
  ig              Captum IG seconds per explanation of one 128-token text: n_steps --n-steps,
                  gausslegendre, zero baseline, forward softmax(logits)[:, predicted class] over
                  inputs_embeds with the attention mask; one entry per --ibs value
                  (Captum's internal_batch_size, "none" = unset)
  forward_b32     inference throughput, batch 32, under torch.inference_mode
  train_b16       training throughput, AdamW steps at batch 16
with analytic FLOPs (anchor_models.py) turned into achieved GFLOP/s, and, unless --no-gemm, a
plain SGEMM (torch.mm) block for what the machine's BLAS reaches.

Each measurement records the load average before and after and the CPU time other processes
used while it ran; a figure taken while they used over 0.25 cores on average is marked
contended. --quiet-wait S waits up to S seconds before each measurement for the machine to go
quiet.

    $VENV/bin/python tests/reference/bench.py                      # everything (tens of minutes)
    $VENV/bin/python tests/reference/bench.py --quick              # smoke test, two small models
    $VENV/bin/python tests/reference/bench.py --models Step5_Custom2x384 --parts ig --reps 1

Writes into --out (default: results/ beside this script) bench_<UTC stamp>.json, the one
results file `trainer bench --against` reads, and bench_<UTC stamp>.md, a summary table.
"""
from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import torch  # noqa: E402

import anchor_models as am  # noqa: E402

CONTENDED_OTHER_CORES = 0.25  # other processes using more cores than this, on average: contended
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- what else the machine is doing
def loadavg() -> str | None:
    try:
        with open("/proc/loadavg") as f:
            return f.read().strip()
    except OSError:
        return None


def busy_and_steal_jiffies() -> tuple[int, int]:
    """CPU time spent busy, and stolen by the hypervisor, over all CPUs since boot (0, 0 if unknown)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return 0, 0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return user + nice + system + irq + softirq, steal


def own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def other_cores_while_sleeping(seconds: float) -> float:
    """Cores other processes used during a sleep of `seconds`."""
    busy0, own0 = busy_and_steal_jiffies()[0], own_cpu_seconds()
    time.sleep(seconds)
    busy1, own1 = busy_and_steal_jiffies()[0], own_cpu_seconds()
    return max(0.0, (busy1 - busy0) / CLOCK_TICKS - (own1 - own0)) / seconds


def wait_for_quiet(max_wait: float, threshold: float = 0.3) -> dict:
    """Waits, at most max_wait seconds, until other processes use under `threshold` cores."""
    started = time.perf_counter()
    other = other_cores_while_sleeping(1.0)
    while other >= threshold and time.perf_counter() - started < max_wait:
        time.sleep(2.0)
        other = other_cores_while_sleeping(1.0)
    return {"waited_s": round(time.perf_counter() - started, 1), "other_cores_at_start": round(other, 2)}


class Rep:
    """One timed repetition: wall time, and the cores this process, others and the hypervisor took."""

    def __enter__(self):
        self.busy0, self.steal0 = busy_and_steal_jiffies()
        self.own0 = own_cpu_seconds()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.t0
        own = own_cpu_seconds() - self.own0
        busy1, steal1 = busy_and_steal_jiffies()
        self.own_cores = own / self.wall
        self.other_cores = max(0.0, (busy1 - self.busy0) / CLOCK_TICKS - own) / self.wall
        self.steal_cores = (steal1 - self.steal0) / CLOCK_TICKS / self.wall
        return False


def measure(label: str, fn, reps: int, log, warmup: int = 1, inner: int = 1, quiet_wait: float = 0.0) -> dict:
    """`warmup` untimed calls, then `reps` timed repetitions of `inner` calls; seconds per call."""
    for _ in range(warmup):
        fn()
    gate = wait_for_quiet(quiet_wait) if quiet_wait > 0 else None
    load_before = loadavg()
    samples = []
    for _ in range(reps):
        with Rep() as rep:
            for _ in range(inner):
                fn()
        samples.append(rep)
    load_after = loadavg()
    per_call = [s.wall / inner for s in samples]
    other = statistics.mean(s.other_cores for s in samples)
    quiet = [t for t, s in zip(per_call, samples) if s.other_cores <= CONTENDED_OTHER_CORES]
    result = {
        "label": label,
        "reps": reps,
        "inner": inner,
        "warmup": warmup,
        "times_s": [round(t, 5) for t in per_call],
        "median_s": statistics.median(per_call),
        "min_s": min(per_call),
        # the median over the repetitions during which others used at most 0.25 cores (None: none did)
        "median_quiet_s": statistics.median(quiet) if quiet else None,
        "n_quiet_reps": len(quiet),
        "other_cores_per_rep": [round(s.other_cores, 3) for s in samples],
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "other_busy_cores_mean": round(other, 3),
        "own_cores_mean": round(statistics.mean(s.own_cores for s in samples), 3),
        "steal_cores_mean": round(statistics.mean(s.steal_cores for s in samples), 3),
        "contended": other > CONTENDED_OTHER_CORES,
        "quiet_gate": gate,
    }
    load = f"load {(load_before or '?').split()[0]}->{(load_after or '?').split()[0]}"
    log(f"  {label:<22} median {result['median_s']:.4f}s  min {result['min_s']:.4f}s  other-cores {other:.2f}  "
        f"own-cores {result['own_cores_mean']:.2f}  {load}  quiet reps {len(quiet)}/{reps}"
        + ("  [CONTENDED]" if result["contended"] else ""))
    return result


def calls_for(fn, seconds: float, cap: int = 50) -> int:
    """How many calls of fn take about `seconds` (from one timed call), 1..cap."""
    started = time.perf_counter()
    fn()
    once = time.perf_counter() - started
    return max(1, min(cap, math.ceil(seconds / max(once, 1e-6))))


# ---------------------------------------------------------------- workloads
def random_text(batch: int = 1, seq_len: int = am.SEQ_LEN, seed: int = 0):
    """Token ids ([CLS] ... [SEP], ordinary word pieces between) and an all-ones mask."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, am.VOCAB, (batch, seq_len), generator=generator)
    ids[:, 0] = 101
    ids[:, -1] = 102
    return ids, torch.ones(batch, seq_len, dtype=torch.long)


def ig_explanation(model, ids, mask, n_steps: int, internal_batch_size):
    """A function that explains the text (ids, mask) once, as ig_oracle.py does, and returns per-token attributions."""
    from captum.attr import IntegratedGradients

    with torch.no_grad():
        target = int(model(input_ids=ids, attention_mask=mask).logits.argmax(-1)[0])

    def forward(inputs_embeds, attention_mask):
        logits = model(inputs_embeds=inputs_embeds, attention_mask=attention_mask).logits
        return torch.softmax(logits, dim=-1)[:, target]

    ig = IntegratedGradients(forward)
    word_embeddings = model.get_input_embeddings()

    def run():
        embeds = word_embeddings(ids).detach()
        attributions = ig.attribute(embeds, baselines=torch.zeros_like(embeds), additional_forward_args=(mask,),
                                    n_steps=n_steps, method="gausslegendre", internal_batch_size=internal_batch_size)
        return attributions.sum(dim=-1)

    return run


def sgemm_block(reps: int, quiet_wait: float, log) -> list[dict]:
    results = []
    for m, k, n in [(2048, 2048, 2048), (6400, 768, 3072), (6400, 3072, 768), (6400, 768, 768)]:
        a, b = torch.randn(m, k), torch.randn(k, n)

        def mm():
            return torch.mm(a, b)

        r = measure(f"sgemm {m}x{k}x{n}", mm, reps, log, inner=calls_for(mm, 0.5), quiet_wait=quiet_wait)
        r["gflops"] = 2 * m * k * n / r["median_s"] / 1e9
        r["gflops_best"] = 2 * m * k * n / r["min_s"] / 1e9
        log(f"    -> {r['gflops']:.1f} GFLOP/s (best {r['gflops_best']:.1f})")
        results.append(r)
    return results


def bench_model(name: str, args, log) -> dict:
    teacher = name == "Teacher_BERT"
    reps = args.teacher_reps if teacher else args.reps
    ig_reps = args.teacher_ig_reps if teacher else args.reps
    result = {"model": name, "config": am.CONFIGS[name]._asdict()}
    log(f"== {name}  (reps {reps}, IG reps {ig_reps})  load {loadavg()}")
    started = time.perf_counter()
    model = am.build_model(name, seed=0, attn_implementation=args.attn)
    result["attn_implementation"] = model.config._attn_implementation
    result["params"] = sum(p.numel() for p in model.parameters())
    result["params_non_embedding"] = result["params"] - model.get_input_embeddings().weight.numel()
    flops = am.forward_flops(name)
    result["fwd_flops_per_seq"] = flops
    result["ig_flops"] = am.ig_flops(name, args.n_steps)
    log(f"  params {result['params']:,}  IG FLOPs {result['ig_flops'] / 1e9:.1f} G  "
        f"build {time.perf_counter() - started:.1f}s")
    model.eval()

    result["ig"] = {}
    if "ig" in args.parts:
        ids, mask = random_text(seed=1)
        for ibs in args.ibs:
            key = "none" if ibs is None else str(ibs)
            run = ig_explanation(model, ids, mask, args.n_steps, ibs)
            r = measure(f"IG ibs={key}", run, ig_reps, log, quiet_wait=args.quiet_wait)
            r["gflops"] = result["ig_flops"] / r["median_s"] / 1e9
            result["ig"][key] = r
            gc.collect()

    if "forward" in args.parts:
        ids32, mask32 = random_text(batch=32, seed=2)

        def forward():
            with torch.inference_mode():
                return model(input_ids=ids32, attention_mask=mask32).logits

        forward()
        r = measure("forward b32", forward, reps, log, inner=calls_for(forward, 1.0), quiet_wait=args.quiet_wait)
        r["seq_per_s"] = 32 / r["median_s"]
        r["gflops"] = 32 * flops["total"] / r["median_s"] / 1e9
        result["forward_b32"] = r

    if "train" in args.parts and not args.no_train:
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.01)
        ids16, mask16 = random_text(batch=16, seed=3)
        labels = torch.randint(0, am.NUM_LABELS, (16,), generator=torch.Generator().manual_seed(4))

        def step():
            optimizer.zero_grad(set_to_none=True)
            model(input_ids=ids16, attention_mask=mask16, labels=labels).loss.backward()
            optimizer.step()

        r = measure("train b16 (AdamW)", step, reps, log, warmup=2, quiet_wait=args.quiet_wait)
        r["seq_per_s"] = 16 / r["median_s"]
        r["gflops"] = 16 * am.train_flops_per_seq(name) / r["median_s"] / 1e9
        result["train_b16"] = r
        del optimizer
    result["wall_s_total"] = round(time.perf_counter() - started, 1)
    del model
    gc.collect()
    return result


def environment() -> dict:
    import captum
    import numpy
    import transformers

    cpu_flags, cpu_model = set(), None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and cpu_model is None:
                    cpu_model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    cpu_flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "captum": captum.__version__,
        "transformers": transformers.__version__,
        "numpy": numpy.__version__,
        "torch_num_threads": torch.get_num_threads(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkl": torch.backends.mkl.is_available(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "avx512f": "avx512f" in cpu_flags,
        "avx512_bf16": "avx512_bf16" in cpu_flags,
        "kernel": platform.release(),
    }


def summary_table(doc: dict) -> str:
    """A Markdown table of the figures in a results document."""
    ibs_keys = ["none" if x is None else str(x) for x in doc["args"]["ibs"]]
    head = ["model", "params"] + [f"IG s (ibs {k})" for k in ibs_keys] + ["forward seq/s", "train seq/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def cell(r, field, fmt):
        if not r:
            return "-"
        return format(r[field], fmt) + (" *" if r.get("contended") else "")

    for m in doc["models"]:
        row = [m["model"], f"{m['params'] / 1e6:.1f} M"]
        row += [cell(m["ig"].get(k), "median_s", ".3f") for k in ibs_keys]
        row += [cell(m.get("forward_b32"), "seq_per_s", ".1f"), cell(m.get("train_b16"), "seq_per_s", ".1f")]
        lines.append("| " + " | ".join(row) + " |")
    for g in doc.get("gemm", []):
        lines.append(f"\n{g['label']}: {g['gflops']:.1f} GFLOP/s" + (" *" if g["contended"] else ""))
    lines.append("\n\\* contended: other processes used over 0.25 cores during the measurement")
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=list(am.CONFIGS), choices=list(am.CONFIGS), metavar="MODEL",
                    help=f"models to measure (default all: {' '.join(am.CONFIGS)})")
    ap.add_argument("--parts", default="ig,forward,train", help="comma list of ig, forward, train")
    ap.add_argument("--reps", type=int, default=5, help="timed repetitions (all but Teacher_BERT)")
    ap.add_argument("--teacher-reps", type=int, default=3, help="timed repetitions of Teacher_BERT's forward/train")
    ap.add_argument("--teacher-ig-reps", type=int, default=3, help="timed repetitions of Teacher_BERT's IG")
    ap.add_argument("--n-steps", type=int, default=50)
    ap.add_argument("--ibs", default="none,10,25", help="comma list of internal_batch_size values; none = unset")
    ap.add_argument("--attn", default=None, help="attn_implementation (default: transformers' default)")
    ap.add_argument("--no-train", action="store_true", help="leave out training even if --parts names it")
    ap.add_argument("--no-gemm", action="store_true", help="leave out the SGEMM block")
    ap.add_argument("--quiet-wait", type=float, default=20.0,
                    help="before each measurement, wait up to this many seconds for other processes to go idle")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="smoke test: 2 small models, 1 rep, n_steps 4, no SGEMM")
    ap.add_argument("--out", default=str(HERE / "results"), help="directory for the results (default: %(default)s)")
    args = ap.parse_args(argv)
    args.ibs = [None if x.strip().lower() == "none" else int(x) for x in args.ibs.split(",")]
    args.parts = {x.strip() for x in args.parts.split(",") if x.strip()}
    if unknown := args.parts - {"ig", "forward", "train"}:
        ap.error(f"--parts: unknown {sorted(unknown)}")
    if args.quick:
        args.models = ["Step5_Custom2x384", "Step3_TinyBERT"]
        args.reps = args.teacher_reps = args.teacher_ig_reps = 1
        args.n_steps = 4
        args.quiet_wait = 0
        args.no_gemm = True
    return args


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    tag = "quick_" if args.quick else ""
    out_json = out_dir / f"bench_{tag}{stamp}.json"

    def log(message: str):
        print(message, flush=True)

    doc = {
        "started_utc": stamp,
        "args": {k: (sorted(v) if isinstance(v, set) else v) for k, v in vars(args).items()},
        "environment": environment(),
        "loadavg_start": loadavg(),
        "other_cores_at_start": round(other_cores_while_sleeping(2.0), 2),
        "models": [],
    }
    log(f"env: {json.dumps(doc['environment'])}")
    log(f"load at start: {doc['loadavg_start']}  other-process cores: {doc['other_cores_at_start']}")

    def save():
        doc["loadavg_end"] = loadavg()
        out_json.write_text(json.dumps(doc, indent=1))

    if not args.no_gemm:
        log("== SGEMM (torch.mm, fp32)")
        doc["gemm"] = sgemm_block(max(3, args.reps), args.quiet_wait, log)
        save()
    for name in args.models:
        doc["models"].append(bench_model(name, args, log))
        save()  # after each model, so that an interrupted run keeps what it measured
    doc["finished_utc"] = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    save()
    table = summary_table(doc)
    (out_dir / f"bench_{tag}{stamp}.md").write_text(table)
    log(table)
    log(f"wrote {out_json}")


if __name__ == "__main__":
    main()
