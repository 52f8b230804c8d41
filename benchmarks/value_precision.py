"""The δ optimisation in float32 against bfloat16 (`v_dtype`), side by side in one process.

Issue 17's precision lever, measured alone: the same edits with `v_dtype=float32` (the default)
and `v_dtype=bfloat16`, alternating which goes first, timed; then the ES / PS / NS of each on the
same CounterFact cases (flattened records: one rewrite, paraphrase and neighbourhood prompt each).

    python benchmarks/value_precision.py --method memit --n 100 --rounds 2 --json OUT.json
    python benchmarks/value_precision.py --method rome --n 50 --json OUT.json

memit / alphaedit: the n cases as one batch (z, keys and the update: the whole `patch` call),
`--rounds` times per precision; the last patch of each is scored. rome: each case edited on its
own with both precisions (alternating which goes first), scored, and reverted exactly.
Run it alone: two CPU-bound processes on two cores slow each other many-fold.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from edit_latency import DEFAULT_DATASET, case_scores

from factpatch.core.cache import write_text_atomic
from factpatch.core.models import load_model
from factpatch.editing.patch import PatchStack, applied
from factpatch.editing.registry import make_editor, method_params
from factpatch.editing.request import EditRequest
from factpatch.evaluation.metrics import bootstrap_mean

DTYPES = ("float32", "bfloat16")


def summary(rows: list[dict]) -> dict:
    out = {}
    for metric in ("ES", "PS", "NS"):
        estimate = bootstrap_mean([row[metric] for row in rows])
        out[metric] = [round(100 * estimate.mean, 1), round(100 * estimate.lo, 1), round(100 * estimate.hi, 1)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--method", default="memit", choices=["rome", "memit", "alphaedit"])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2, help="timed batches per precision (memit, alphaedit)")
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET, help="flattened CounterFact JSON")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    records = json.loads(args.dataset.read_text())[: args.n]
    requests = [EditRequest.from_text(r["prompt"], r["subject"], r["target_new"], r["ground_truth"]) for r in records]
    lm = load_model(args.model)
    editors = {}
    for dtype in DTYPES:
        editor = make_editor(lm, args.method, method_params(lm, args.method, {"v_dtype": dtype}), progress=False)
        editor.prepare()  # statistics, prefixes (and projectors): cached, untimed
        editors[dtype] = editor
    if args.method == "alphaedit":
        for layer in editors["float32"].params.layers:
            editors["float32"].P(layer)
    stack = PatchStack(lm)
    seconds: dict[str, list[float]] = {d: [] for d in DTYPES}
    scores: dict[str, list[dict]] = {d: [] for d in DTYPES}
    steps: dict[str, list[float]] = {d: [] for d in DTYPES}

    def timed_patch(dtype, batch):
        started = time.perf_counter()
        patch = editors[dtype].patch(batch, stack)
        seconds[dtype].append(time.perf_counter() - started)
        return patch

    if args.method == "rome":
        for i, (request, record) in enumerate(zip(requests, records)):
            for dtype in (DTYPES if i % 2 == 0 else DTYPES[::-1]):
                patch = timed_patch(dtype, [request])
                run = patch.meta.get("v_steps_run", [])
                steps[dtype] += run if isinstance(run, list) else [run]
                with applied(lm, [patch]):
                    scores[dtype].append({"case": i, **case_scores(lm, record)})
            print(i, {d: round(seconds[d][-1], 2) for d in DTYPES}, flush=True)
    else:
        last = {}
        for round_ in range(args.rounds):
            for dtype in (DTYPES if round_ % 2 == 0 else DTYPES[::-1]):
                last[dtype] = timed_patch(dtype, requests)
                print(round_, dtype, round(seconds[dtype][-1], 1), flush=True)
        for dtype in DTYPES:
            steps[dtype] = last[dtype].meta["v_steps_run"]
            with applied(lm, [last[dtype]]):
                scores[dtype] = [{"case": i, **case_scores(lm, record)} for i, record in enumerate(records)]

    result = {
        "benchmark": "value_precision", "model": lm.name, "method": args.method, "n": len(requests),
        "rounds": args.rounds if args.method != "rome" else 1, "torch": torch.__version__,
        "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
        "date": time.strftime("%Y-%m-%d"),
        "by_dtype": {
            d: {"seconds": [round(s, 2) for s in seconds[d]], "median_seconds": round(statistics.median(seconds[d]), 2),
                "v_steps_mean": round(statistics.mean(steps[d]), 2) if steps[d] else None, **summary(scores[d])}
            for d in DTYPES},
    }
    result["speedup"] = round(result["by_dtype"]["float32"]["median_seconds"] / result["by_dtype"]["bfloat16"]["median_seconds"], 3)
    print(json.dumps(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        result["per_case"] = scores
        write_text_atomic(args.json, json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
