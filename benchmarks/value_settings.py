"""Edits with two or more settings of one method, side by side in one process: seconds and quality.

Issue 17's levers on the δ optimisation, each measured alone: the same edits under every
`--variant` (a name and `--set`-style overrides), rotating which goes first, timed; then the
ES / PS / NS of each on the same CounterFact cases (flattened records: one rewrite, paraphrase and
neighbourhood prompt each). Without `--variant`: float32 against bfloat16 (`v_dtype`), the
precision lever (`benchmarks/value_precision.py` runs exactly that). `preset=NAME` in a variant
applies that preset (editing.registry.PRESETS) for the model, under the variant's other settings.

    python benchmarks/value_settings.py --method memit --n 100 --rounds 2 --json OUT.json
    python benchmarks/value_settings.py --method rome --n 50 --variant lr0.5:v_lr=0.5 \
        --variant lr2:v_lr=2.0 --variant lr2-bf16:v_lr=2.0,v_dtype=bfloat16 --json OUT.json
    python benchmarks/value_settings.py --method rome --n 50 --variant fast:preset=fast \
        --variant fast-6:preset=fast,prefixes=[[5,10]] --json OUT.json
    python benchmarks/value_settings.py --method alphaedit --n 100 --rounds 1 --variant default: \
        --variant fast:preset=fast --json OUT.json

memit / alphaedit: the n cases as one batch (z, keys and the update: the whole `patch` call),
`--rounds` times per variant; the last patch of each is scored. rome: each case edited on its
own under every variant (rotating which goes first), scored, and reverted exactly.
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

PRECISIONS = ("float32:v_dtype=float32", "bfloat16:v_dtype=bfloat16")


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    """"name:key=value,key=value" -> (name, overrides); "name:" is the method's defaults."""
    name, _, settings = text.partition(":")
    overrides = {}
    # split on the commas outside brackets, so a JSON value ("prefixes=[[5,10]]") stays whole
    items, depth, start = [], 0, 0
    for i, ch in enumerate(settings + ","):
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            items.append(settings[start:i])
            start = i + 1
    for item in filter(None, items):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"bad --variant {text!r}: expected name:key=value,key=value")
        overrides[key.strip()] = value.strip()
    if not name:
        raise SystemExit(f"bad --variant {text!r}: it needs a name before ':'")
    return name, overrides


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
    parser.add_argument("--rounds", type=int, default=2, help="timed batches per variant (memit, alphaedit)")
    parser.add_argument("--variant", action="append", default=None, metavar="NAME:KEY=VALUE,...",
                        help="a setting to compare (repeat; default: float32 and bfloat16 v_dtype)")
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET, help="flattened CounterFact JSON")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    records = json.loads(args.dataset.read_text())[: args.n]
    requests = [EditRequest.from_text(r["prompt"], r["subject"], r["target_new"], r["ground_truth"]) for r in records]
    variants = dict(parse_variant(v) for v in (args.variant or PRECISIONS))
    if len(variants) < 2:
        raise SystemExit("give at least two --variant with different names")
    names = tuple(variants)
    lm = load_model(args.model)
    editors = {}
    for name, overrides in variants.items():
        overrides = dict(overrides)
        preset = overrides.pop("preset", None)  # "name:preset=fast" is the named preset on this model
        editor = make_editor(lm, args.method, method_params(lm, args.method, overrides, preset), progress=False)
        editor.prepare()  # statistics, prefixes (and projectors): cached, untimed
        if args.method == "alphaedit":
            for layer in editor.params.layers:
                editor.P(layer)
        editors[name] = editor
    stack = PatchStack(lm)
    seconds: dict[str, list[float]] = {n: [] for n in names}
    scores: dict[str, list[dict]] = {n: [] for n in names}
    steps: dict[str, list[float]] = {n: [] for n in names}

    def timed_patch(name, batch):
        started = time.perf_counter()
        patch = editors[name].patch(batch, stack)
        seconds[name].append(time.perf_counter() - started)
        return patch

    def rotated(i: int) -> tuple[str, ...]:  # each variant goes first in turn
        return names[i % len(names):] + names[: i % len(names)]

    if args.method == "rome":
        for i, (request, record) in enumerate(zip(requests, records)):
            for name in rotated(i):
                patch = timed_patch(name, [request])
                run = patch.meta.get("v_steps_run", [])
                steps[name] += run if isinstance(run, list) else [run]
                with applied(lm, [patch]):
                    scores[name].append({"case": i, **case_scores(lm, record)})
            print(i, {n: round(seconds[n][-1], 2) for n in names}, flush=True)
    else:
        last = {}
        for round_ in range(args.rounds):
            for name in rotated(round_):
                last[name] = timed_patch(name, requests)
                print(round_, name, round(seconds[name][-1], 1), flush=True)
        for name in names:
            steps[name] = last[name].meta["v_steps_run"]
            with applied(lm, [last[name]]):
                scores[name] = [{"case": i, **case_scores(lm, record)} for i, record in enumerate(records)]

    result = {
        "benchmark": "value_settings", "model": lm.name, "method": args.method, "n": len(requests),
        "rounds": args.rounds if args.method != "rome" else 1, "torch": torch.__version__,
        "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
        "date": time.strftime("%Y-%m-%d"),
        "variants": {name: variants[name] for name in names},
        "by_variant": {
            n: {"seconds": [round(s, 2) for s in seconds[n]], "median_seconds": round(statistics.median(seconds[n]), 2),
                "v_steps_mean": round(statistics.mean(steps[n]), 2) if steps[n] else None, **summary(scores[n])}
            for n in names},
    }
    first = result["by_variant"][names[0]]["median_seconds"]  # speed-ups against the first variant
    result["speedup"] = {n: round(first / result["by_variant"][n]["median_seconds"], 3) for n in names[1:]}
    print(json.dumps(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        result["per_case"] = scores
        write_text_atomic(args.json, json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
