"""What Ray costs: cases a minute in one process against the same cases on Ray workers, and Ray's
overhead per case.

    FACTPATCH_CACHE=/tmp/fpcache python benchmarks/ray_overhead.py --methods rome --n 12

Three runs of `factpatch eval` over the same N CounterFact cases (after one warm-up case and the
methods' one-time work — key statistics, context prefixes — done and cached before any timing):

- `process`: one process, `--threads` torch threads (default 2): `run_eval`.
- `ray_1x<threads>`: one Ray worker with the same threads: the same work, plus Ray. Its run time
  minus the process run's, per case, is Ray's overhead per case (task round trip, shipping the
  records back, the driver's appends); the figure the issue asks for is that as a share of the
  process run's seconds per case (target < 2 % of a ROME case).
- `ray_<workers>x1`: `--workers` Ray workers (default 2) of one thread each.

Times exclude starting the workers (loading the model once each), which is reported apart as
`startup_seconds`: it is paid once per run, not per case. Each Ray run starts a private local Ray
instance with `--threads` CPUs. Also reported: whether the Ray runs' per-case results equal the
process run's (the one-worker run uses the same thread count, so it should be bit-identical), and
the throughput expected on k machines from the measured per-case time and overhead (a formula,
not a measurement). JSON on stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from factpatch.core.models import load_model
from factpatch.editing.registry import make_editor, method_params, parse_methods
from factpatch.evaluation.data import load_dataset
from factpatch.evaluation.distributed import run_eval_ray
from factpatch.evaluation.ray_pool import RaySettings
from factpatch.evaluation.run import EvalSettings, run_eval

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "counterfact-train.json"
TIMING = ("edit_seconds", "eval_seconds")


def _results(records: list[dict]) -> dict:
    return {(r["case_id"], r["method"]): {k: v for k, v in r.items() if k not in TIMING} for r in records}


def _ray_run(args, dataset, config, out: Path, workers: int, threads: int) -> tuple[dict, dict]:
    import ray

    ray.init(address="local", num_cpus=args.threads, include_dashboard=False, logging_level=logging.WARNING)
    try:
        settings = RaySettings(workers=workers, threads_per_worker=threads)
        result = run_eval_ray(args.model, dataset, config, out, settings, progress=False)
    finally:
        ray.shutdown()
    stats = result.stats
    cases = len(result.run.records)
    row = {
        "workers": workers, "threads_per_worker": threads, "cases": cases,
        "startup_seconds": round(stats.startup_seconds, 1),
        "run_seconds": round(stats.run_seconds, 2),
        "cases_per_minute": round(60 * cases / stats.run_seconds, 2),
        "busy_seconds": round(stats.busy_seconds, 2),
        # worker time not spent inside a task (round trips, the driver, the last task's idle tail)
        "idle_share": round(1 - stats.busy_seconds / (workers * stats.run_seconds), 4),
        "retried_tasks": stats.retried_tasks,
    }
    return row, _results(result.run.records)


def overhead_split(one: dict, per_case: float, n_results: int) -> dict:
    """The one-worker run's extra time a case, in two parts: Ray's own (the worker not inside a
    task: round trips, shipping records, the driver's appends) and the worker computing the case
    slower or faster than the process did (threads, or this machine's drift between runs, ±10 %)."""
    dispatch = (one["run_seconds"] * one["workers"] - one["busy_seconds"]) / n_results
    compute = one["busy_seconds"] / n_results - per_case
    return {"dispatch_seconds_per_case": round(dispatch, 4), "dispatch_share_of_a_case": round(dispatch / per_case, 5),
            "worker_compute_difference_per_case": round(compute, 4)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--methods", default="rome")
    parser.add_argument("--dataset", default=f"counterfact:{DEFAULT_DATA}")
    parser.add_argument("--n", type=int, default=12)
    parser.add_argument("--skip", type=int, default=1000, help="start at this case (away from other runs' caches)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the process run = the machine's CPUs")
    parser.add_argument("--workers", type=int, default=2, help="Ray workers of one thread each")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    lm = load_model(args.model)
    dataset = load_dataset(args.dataset)
    cases = dataset.cases[args.skip : args.skip + args.n + 1]
    warm = dataclasses.replace(dataset, cases=cases[:1])
    measured = dataclasses.replace(dataset, cases=cases[1:])
    methods = parse_methods(args.methods)
    for method in methods:  # one-time work (cached on disk, so the workers read it too)
        make_editor(lm, method, method_params(lm, method)).prepare()
    config = EvalSettings(methods)
    report = {
        "model": lm.name, "methods": methods, "n": args.n, "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(), "runs": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run_eval(lm, warm, config, tmp / "warm", progress=False)
        started = time.perf_counter()
        alone = run_eval(lm, measured, config, tmp / "process", progress=False)
        wall = time.perf_counter() - started
        n_results = len(alone.records)
        report["runs"]["process"] = {"threads": args.threads, "cases": n_results, "run_seconds": round(wall, 2),
                                     "cases_per_minute": round(60 * n_results / wall, 2)}
        reference = _results(alone.records)
        del lm  # the Ray workers load their own copies

        one, one_results = _ray_run(args, measured, config, tmp / "ray1", 1, args.threads)
        report["runs"][f"ray_1x{args.threads}"] = {**one, "identical_to_process": one_results == reference}
        many, many_results = _ray_run(args, measured, config, tmp / "rayN", args.workers, 1)
        report["runs"][f"ray_{args.workers}x1"] = {**many, "identical_to_process": many_results == reference}

    per_case = wall / n_results
    overhead = (one["run_seconds"] - wall) / n_results
    per_worker_case = many["run_seconds"] * args.workers / n_results  # one-thread worker seconds a case
    report["overhead"] = {
        "seconds_per_case_process": round(per_case, 3),
        "ray_seconds_per_case": round(overhead, 4),
        "ray_share_of_a_case": round(overhead / per_case, 4),
        **overhead_split(one, per_case, n_results),
    }
    report["expected_on_k_machines"] = {
        "formula": f"cases/min = 60 * k * {args.workers} / {per_worker_case:.3f} (k machines like this one, "
                   f"{args.workers} one-thread workers each; measured worker seconds a case incl. Ray)",
        **{str(k): round(60 * k * args.workers / per_worker_case, 1) for k in (1, 2, 4, 8, 16)},
    }
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
