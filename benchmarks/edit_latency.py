"""ROME edit latency and quality on CounterFact cases (issue 2's benchmark).

Prints per-edit seconds (k*, v* and the update; the model, key statistics and context prefixes
are loaded or computed once, before timing), the median, and efficacy / paraphrase /
neighbourhood scores over the cases, each case edited on the unedited model (reverted exactly
between cases).

    python benchmarks/edit_latency.py [--model smollm2-135m] [--n 25] [--dataset PATH] [--preset fast] [--set KEY=VALUE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from factpatch.evaluation.metrics import counterfact_case_metrics, score_targets
from factpatch.core.models import load_model
from factpatch.editing.patch import PatchStack
from factpatch.editing.request import EditRequest
from factpatch.editing.registry import method_params
from factpatch.editing.rome import compute_edit, to_patch, context_prefixes
from factpatch.editing.stats import key_second_moment

DEFAULT_DATASET = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "counterfact-train.json"


def case_scores(lm, case: dict) -> dict[str, float]:
    """ES / PS / NS of one flattened CounterFact case, scored in one batch."""
    prompts = [case["prompt"], case["rephrase_prompt"], case["locality_prompt"]]
    new, true = case["target_new"], case["ground_truth"]
    s = score_targets(lm, [p for p in prompts for _ in (0, 1)], [new, true, new, true, new, case["locality_ground_truth"]])
    return counterfact_case_metrics(rewrite=[(s[0], s[1])], paraphrase=[(s[2], s[3])], neighborhood=[(s[4], s[5])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or mps")
    parser.add_argument("--n", type=int, default=25)
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--layer", type=int, default=None)
    parser.add_argument("--preset", default=None, help="named ROME settings (editing.registry.PRESETS), e.g. fast")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a ROME setting (repeatable)")
    parser.add_argument("--json", type=Path, default=None, help="also write per-case results here")
    args = parser.parse_args()

    cases = json.loads(args.dataset.read_text())[: args.n]
    started = time.perf_counter()
    lm = load_model(args.model, device=args.device)
    overrides = dict(item.split("=", 1) for item in args.set)
    if args.layer is not None:
        overrides["layer"] = args.layer
    hp = method_params(lm, "rome", overrides, args.preset)
    C = key_second_moment(lm, hp.layer)
    context_prefixes(lm, hp)
    print(f"model {lm.name}, layer {hp.layer}, v_lr {hp.v_lr}, v_dtype {hp.v_dtype}; setup {time.perf_counter() - started:.1f} s "
          f"(load + cached statistics); torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus")
    stack = PatchStack(lm)
    rows = []
    for case in cases:
        request = EditRequest.from_text(case["prompt"], case["subject"], case["target_new"], case["ground_truth"])
        edit = compute_edit(lm, request, C, hp)
        stack.apply(to_patch(lm, edit))
        metrics = case_scores(lm, case)
        row = {"case_id": case["case_id"], "seconds": edit.seconds, "steps": edit.key_value.steps,
               **{m: metrics[m] for m in ("ES", "PS", "NS")}}
        stack.revert()
        rows.append(row)
        print(f"case {row['case_id']:>6}: {row['seconds']:6.2f} s, {row['steps']:2d} steps, "
              f"ES {int(row['ES'])} PS {int(row['PS'])} NS {int(row['NS'])}  ({request.text} -> {request.target_new})",
              flush=True)
    seconds = [r["seconds"] for r in rows]
    print(f"\n{len(rows)} edits: median {statistics.median(seconds):.2f} s, mean {statistics.mean(seconds):.2f} s, "
          f"min {min(seconds):.2f} s, max {max(seconds):.2f} s")
    for metric in ("ES", "PS", "NS"):
        print(f"{metric} {sum(r[metric] for r in rows) / len(rows):.2f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
