"""Causal tracing in float32 against bfloat16 (`factpatch trace --dtype`), side by side in one process.

    python benchmarks/trace_precision.py [--rounds 2] [--samples 10] [--json OUT.json]

Traces the Messi prompt (hidden, mlp, attn; window 10) with both precisions on the same loaded
model, alternating which goes first, and prints the seconds of each, the largest |ΔP| between the
two heatmaps of each kind, and each kind's peak (token, layer) in both. The bfloat16 trace includes
casting its copy of the weights. Run it alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import torch

from factpatch.core.cache import write_text_atomic
from factpatch.core.models import load_model
from factpatch.tracing import NoiseSettings, TraceSettings, embedding_std, trace_prompt

PROMPT = "Lionel Messi plays the sport of"
SUBJECT = "Lionel Messi"
PRECISIONS = ("float32", "bfloat16")


def peak(grid: list) -> list[int]:
    cells = [(i, l) for i, row in enumerate(grid) if row is not None for l in range(len(row))]
    return list(max(cells, key=lambda t: grid[t[0]][t[1]]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    lm = load_model(args.model)
    sigma = embedding_std(lm, progress=False)
    base = TraceSettings(noise=NoiseSettings(samples=args.samples))
    settings = {name: dataclasses.replace(base, dtype=name) for name in PRECISIONS}
    for name in PRECISIONS:  # warm-up
        trace_prompt(lm, PROMPT, SUBJECT, settings=dataclasses.replace(settings[name], noise=NoiseSettings(samples=1)),
                     sigma=sigma, progress=False)
    seconds: dict[str, list[float]] = {name: [] for name in PRECISIONS}
    results = {}
    for round_ in range(args.rounds):
        for name in (PRECISIONS if round_ % 2 == 0 else PRECISIONS[::-1]):
            began = time.perf_counter()
            results[name] = trace_prompt(lm, PROMPT, SUBJECT, settings=settings[name], sigma=sigma, progress=False)
            seconds[name].append(round(time.perf_counter() - began, 2))
        print(json.dumps({"round": round_, **{name: seconds[name][-1] for name in PRECISIONS}}), flush=True)
    full, half = results["float32"], results["bfloat16"]
    kinds = {}
    for kind, grid in full.scores.items():
        pairs = [(a, b) for ra, rb in zip(grid, half.scores[kind]) if ra is not None for a, b in zip(ra, rb)]
        kinds[kind] = {"max_abs_dp": round(max(abs(a - b) for a, b in pairs), 5),
                       "max_p_float32": round(max(a for a, _ in pairs), 5),
                       "peak_float32": peak(grid), "peak_bfloat16": peak(half.scores[kind])}
    result = {
        "benchmark": "trace_precision", "model": lm.name, "prompt": PROMPT, "samples": args.samples,
        "rounds": args.rounds, "threads": torch.get_num_threads(), "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"), "seconds": seconds,
        "median_seconds": {name: statistics.median(seconds[name]) for name in PRECISIONS},
        "p_clean": {"float32": full.p_clean, "bfloat16": half.p_clean},
        "p_corrupted": {"float32": full.p_corrupted, "bfloat16": half.p_corrupted},
        "kinds": kinds,
    }
    result["speedup"] = round(result["median_seconds"]["float32"] / result["median_seconds"]["bfloat16"], 3)
    print(json.dumps(result))
    if args.json is not None:
        write_text_atomic(args.json, json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
