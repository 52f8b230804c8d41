"""Causal-tracing latency, this checkout against another one, in one process (a fair A/B).

    FACTPATCH_CACHE=/tmp/fpcache python benchmarks/trace_ab.py --other /path/to/older/checkout [--rounds 6]

This machine's speed drifts by ±10 % between runs of the same code minutes apart, more than the
changes one wants to measure. So both versions of causal tracing are loaded into one process
(the other checkout's package is copied to a temporary directory under another name; its imports
are relative) and run on the same loaded model in turn, the order swapped every round. Prints
each round, the medians, and the largest difference between the two versions' scores, as JSON.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import factpatch.tracing as this
from factpatch.core.models import load_model

PROMPT = "Lionel Messi plays the sport of"
SUBJECT = "Lionel Messi"


def load_other(checkout: Path, into: Path):
    """The other checkout's tracing API: `factpatch.tracing` (or the single `trace.py` of before)."""
    package = checkout / "src" / "factpatch"
    module = "tracing" if (package / "tracing" / "__init__.py").is_file() else "trace"
    if module == "trace" and not (package / "trace.py").is_file():
        raise SystemExit(f"error: {checkout} has neither src/factpatch/tracing/ nor src/factpatch/trace.py")
    shutil.copytree(package, into / "factpatch_other")
    sys.path.insert(0, str(into))
    return importlib.import_module(f"factpatch_other.{module}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other", type=Path, required=True, help="another checkout of factpatch")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--dtype", default="float32", help="the traces' precision (both checkouts must know it)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        versions = {"this": this, "other": load_other(args.other, Path(tmp))}
        lm = load_model(args.model)
        sigma = this.embedding_std(lm, progress=False)

        def trace(module, samples: int):
            extra = {} if args.dtype == "float32" else {"dtype": args.dtype}  # older checkouts lack the field
            settings = module.TraceSettings(noise=module.NoiseSettings(samples=samples), **extra)
            return module.trace_prompt(lm, PROMPT, SUBJECT, settings=settings, sigma=sigma, progress=False)

        for module in versions.values():
            trace(module, 1)  # warm-up
        seconds: dict[str, list[float]] = {name: [] for name in versions}
        results = {}
        for round_ in range(args.rounds):
            order = list(versions) if round_ % 2 == 0 else list(reversed(versions))
            for name in order:
                began = time.perf_counter()
                results[name] = trace(versions[name], args.samples)
                seconds[name].append(round(time.perf_counter() - began, 2))
            print(json.dumps({"round": round_, **{name: seconds[name][-1] for name in order}}), flush=True)

    differences = [
        abs(a - b)
        for kind, grid in results["this"].scores.items()
        for row_this, row_other in zip(grid, results["other"].scores[kind])
        if row_this is not None and row_other is not None
        for a, b in zip(row_this, row_other)
    ]
    print(json.dumps({
        "model": lm.name,
        "dtype": args.dtype,
        "seconds": seconds,
        "median_seconds": {name: statistics.median(values) for name, values in seconds.items()},
        "max_abs_score_difference": max(differences),
    }, indent=1))


if __name__ == "__main__":
    main()
