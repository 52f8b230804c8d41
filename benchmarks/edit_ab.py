"""ROME's k* and v* (nearly all of an edit), this checkout against another one, in one process.

    python benchmarks/edit_ab.py --other /path/to/older/checkout [--n 20] [--set v_dtype=bfloat16]

Each of the first n CounterFact cases is computed by both versions on the same loaded model, the
same prefixes and settings, in turn (which goes first alternates case by case), so the machine's
drift does not enter the comparison. Prints each case and, as JSON, the median seconds of each
version, how far apart their v* are (largest ‖Δv*‖ / ‖v*‖) and whether they took the same steps.
The edit's closed-form update (milliseconds) is not timed. Run it alone.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from mass_edit_ab import ab_inputs, ab_parser, load_other

import factpatch.editing.rome as this
from factpatch.core.models import load_model
from factpatch.editing.registry import method_params


def main() -> None:
    parser = ab_parser(__doc__.splitlines()[0], "ROME", 20)
    parser.add_argument("--json", type=Path, default=None, help="also write the summary here")
    args = parser.parse_args()
    overrides, requests = ab_inputs(parser, args)
    with tempfile.TemporaryDirectory() as tmp:
        versions = {"this": this, "other": load_other(args.other, Path(tmp), "editing.rome")}
        lm = load_model(args.model)
        hp = method_params(lm, "rome", overrides)
        prefixes = this.context_prefixes(lm, hp)
        this.compute_key_value(lm, requests[0], hp, prefixes)  # warm: statistics-free, but first-call costs
        seconds: dict[str, list[float]] = {name: [] for name in versions}
        differences, same_steps = [], []
        for i, request in enumerate(requests):
            order = list(versions) if i % 2 == 0 else list(reversed(versions))
            found = {}
            for name in order:
                started = time.perf_counter()
                found[name] = versions[name].compute_key_value(lm, request, hp, prefixes)
                seconds[name].append(round(time.perf_counter() - started, 3))
            a, b = found["this"], found["other"]
            differences.append(float((a.v_star - b.v_star).norm() / b.v_star.norm()))
            same_steps.append(a.steps == b.steps)
            print(json.dumps({"case": i, **{name: s[-1] for name, s in seconds.items()}}), flush=True)
        summary = {
            "model": lm.name, "layer": hp.layer, "n": len(requests), "settings": overrides,
            "median_seconds": {name: statistics.median(s) for name, s in seconds.items()},
            "seconds": seconds, "max_relative_v_difference": max(differences),
            "same_steps": sum(same_steps), "threads": torch.get_num_threads(), "torch": torch.__version__,
        }
        print(json.dumps(summary))
        if args.json is not None:
            args.json.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
