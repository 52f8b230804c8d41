"""Batch-edit latency: one batch of MEMIT or AlphaEdit edits on CounterFact cases (issue 12's benchmark).

Prints the seconds for the whole batch (z for every request, keys and the update of every layer;
the model, key statistics, projectors and context prefixes are loaded or computed once, before
timing, and cached), the seconds an edit, how many Adam steps z took, and the batch's efficacy
(P(o*) > P(o) on each rewrite prompt) after the edit. Run it alone: two CPU-bound processes on
two cores slow each other many-fold.

    python benchmarks/mass_edit.py [--model smollm2-135m] [--method memit|alphaedit] [--n 100] [--dataset PATH]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from factpatch.api import edit_many
from factpatch.editing.patch import PatchStack
from factpatch.editing.registry import make_editor, method_params
from factpatch.editing.request import EditRequest
from factpatch.core.models import load_model

DEFAULT_DATASET = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "counterfact-train.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or mps")
    parser.add_argument("--method", default="memit", choices=["memit", "alphaedit"])
    parser.add_argument("--n", type=int, default=100, help="edits in the batch")
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET, help="flattened CounterFact JSON")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()

    records = json.loads(args.dataset.read_text())[: args.n]
    requests = [EditRequest.from_text(r["prompt"], r["subject"], r["target_new"], r["ground_truth"]) for r in records]
    lm = load_model(args.model, device=args.device)
    params = method_params(lm, args.method, dict(item.split("=", 1) for item in args.set))
    make_editor(lm, args.method, params, progress=False).prepare()  # statistics, prefixes: cached, untimed
    if args.method == "alphaedit":  # the projectors too
        editor = make_editor(lm, args.method, params, progress=False)
        for layer in params.layers:
            editor.P(layer)
    stack = PatchStack(lm)
    started = time.perf_counter()
    result = edit_many(lm, requests, args.method, stack, params, progress=False)
    seconds = time.perf_counter() - started
    wins = [o.after[o.request.target_new] > o.after[o.request.target_true] for o in result.outcomes]
    steps = result.patch.meta["v_steps_run"]
    print(json.dumps({
        "model": lm.name, "method": args.method, "layers": list(params.layers), "n": len(requests),
        "edit_seconds": round(result.edit_seconds, 1), "seconds_per_edit": round(result.edit_seconds / len(requests), 3),
        "with_scoring_seconds": round(seconds, 1), "z_steps_mean": round(statistics.mean(steps), 1),
        "efficacy": round(sum(wins) / len(wins), 3),
        "mean_p_target_after": round(statistics.mean(o.after[o.request.target_new] for o in result.outcomes), 3),
        "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
    }))


if __name__ == "__main__":
    main()
