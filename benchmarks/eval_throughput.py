"""Evaluation throughput: CounterFact cases a minute for each method, scoring included.

    FACTPATCH_CACHE=/tmp/fpcache python benchmarks/eval_throughput.py --methods rome --n 12 --threads 1

Runs `factpatch.evaluation.run.run_eval` on the first N CounterFact cases into a fresh temporary
directory, after one warm-up case (key statistics and context prefixes are computed once and cached,
so they are not part of the steady state). Reports wall-clock cases a minute per method and the
median seconds of the edit and of the scoring, as JSON on stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from factpatch.editing.registry import make_editor, method_params, parse_methods
from factpatch.evaluation.data import load_dataset
from factpatch.evaluation.run import EvalSettings, run_eval
from factpatch.core.models import load_model

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "counterfact-train.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--methods", default="rome")
    parser.add_argument("--dataset", default=f"counterfact:{DEFAULT_DATA}")
    parser.add_argument("--n", type=int, default=12)
    parser.add_argument("--skip", type=int, default=1000, help="start at this case (away from other runs' caches)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    lm = load_model(args.model)
    dataset = load_dataset(args.dataset)
    cases = dataset.cases[args.skip : args.skip + args.n + 1]
    warm = dataclasses.replace(dataset, cases=cases[:1])
    measured = dataclasses.replace(dataset, cases=cases[1:])
    methods = parse_methods(args.methods)
    for method in methods:  # one-time work (cached on disk): key statistics, prefixes
        make_editor(lm, method, method_params(lm, method)).prepare()
    report = {
        "model": lm.name, "n": args.n, "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(), "methods": {},
    }
    for method in methods:
        with tempfile.TemporaryDirectory() as tmp:
            run_eval(lm, warm, EvalSettings([method]), Path(tmp) / "warm", progress=False)
            started = time.perf_counter()
            run = run_eval(lm, measured, EvalSettings([method]), Path(tmp) / "run", progress=False)
            wall = time.perf_counter() - started
        rows = run.records
        report["methods"][method] = {
            "cases": len(run.records),
            "wall_seconds": round(wall, 1),
            "cases_per_minute": round(60 * len(run.records) / wall, 2),
            "edit_seconds_median": statistics.median(r["edit_seconds"] for r in rows),
            "score_seconds_median": statistics.median(r["eval_seconds"] for r in rows),
        }
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
