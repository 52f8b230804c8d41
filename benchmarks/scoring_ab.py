"""Teacher-forced scoring (core.scoring, behind every ES/PS/NS and known-fact check), this checkout
against another one, in one process (a fair A/B).

    python benchmarks/scoring_ab.py --other /path/to/older/checkout [--model smollm2-135m] [--n 256] [--rounds 4]

Both versions' `core.scoring.teacher_forced` are loaded into one process (the other checkout's
package copied under another name, as benchmarks/trace_ab.py does) and score the same CounterFact
prompts and targets (the built-in cases' rewrite prompts with their true objects) on the same
loaded model in turn, the order swapped every round. Prints each round, the medians, and the
largest difference between the two versions' log-probabilities and hits, as JSON. Run it alone.
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

import factpatch.core.scoring as this
from factpatch.core.models import load_model
from factpatch.evaluation.data import load_dataset


def load_other(checkout: Path, into: Path):
    package = checkout / "src" / "factpatch"
    if not (package / "core" / "scoring.py").is_file():
        raise SystemExit(f"error: {checkout} has no src/factpatch/core/scoring.py")
    shutil.copytree(package, into / "factpatch_other")
    sys.path.insert(0, str(into))
    return importlib.import_module("factpatch_other.core.scoring")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other", type=Path, required=True, help="another checkout of factpatch")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--n", type=int, default=256, help="prompts scored a round")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    lm = load_model(args.model)
    cases = load_dataset("builtin").cases[: args.n]
    prompts = [c.request.text for c in cases]
    targets = [c.request.target_true or c.request.target_new for c in cases]
    with tempfile.TemporaryDirectory() as tmp:
        other = load_other(args.other, Path(tmp))
        sides = {"this": this.teacher_forced, "other": other.teacher_forced}
        times: dict[str, list[float]] = {name: [] for name in sides}
        results = {}
        for round_ in range(args.rounds):
            order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
            for name in order:
                started = time.perf_counter()
                results[name] = sides[name](lm, prompts, targets)
                times[name].append(time.perf_counter() - started)
            print(json.dumps({"round": round_, **{k: round(v[-1], 3) for k, v in times.items()}}), flush=True)
    lp_diff = max(abs(a - b) for x, y in zip(results["this"], results["other"]) for a, b in zip(x.log_probs, y.log_probs))
    hits_same = all(x.hits == y.hits for x, y in zip(results["this"], results["other"]))
    print(json.dumps({"model": args.model, "prompts": len(prompts), "rounds": args.rounds,
                      "median_s": {k: round(statistics.median(v), 3) for k, v in times.items()},
                      "max_log_prob_difference": lp_diff, "hits_identical": hits_same}))


if __name__ == "__main__":
    main()
