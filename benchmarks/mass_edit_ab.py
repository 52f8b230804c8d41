"""MEMIT/AlphaEdit's z optimisation, this checkout against another one, in one process (a fair A/B).

    python benchmarks/mass_edit_ab.py --other /path/to/older/checkout [--n 100] [--rounds 1] [--set v_dtype=bfloat16] [--whole]

The z optimisation (one target vector per request, `editing.memit.compute_targets`) is nearly all
of a batch edit's time. Both versions run it on the same loaded model, the same requests, prefixes
and settings, in turn (the order swapped every round), so the machine's drift between runs does not
enter the comparison. Prints each round, the medians, and how far apart the two versions' z are
(largest ‖Δz‖ / ‖z‖ over the requests) and their steps, as JSON. With `--whole`, the whole batch
edit instead (z, then every layer's keys and MEMIT's solve: `spread_over_layers`, the same solve and
C for both) and how far apart the two versions' weight changes are. Run it alone.
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

import torch

import factpatch.editing.memit as this
from factpatch.core.models import load_model
from factpatch.editing.registry import make_editor, method_params
from factpatch.editing.request import EditRequest

DEFAULT_DATASET = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "counterfact-train.json"


def load_other(checkout: Path, into: Path, module: str = "editing.memit"):
    """The other checkout's `factpatch.<module>`, imported from a copy named `factpatch_other`."""
    package = checkout / "src" / "factpatch"
    if not (package / (module.replace(".", "/") + ".py")).is_file():
        raise SystemExit(f"error: {checkout} has no src/factpatch/{module.replace('.', '/')}.py")
    if not (into / "factpatch_other").exists():
        shutil.copytree(package, into / "factpatch_other")
    if str(into) not in sys.path:
        sys.path.insert(0, str(into))
    return importlib.import_module(f"factpatch_other.{module}")


def ab_parser(description: str, method: str, n: int) -> argparse.ArgumentParser:
    """The arguments every side-by-side script takes: the other checkout, model, cases, settings."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--other", type=Path, required=True, help="another checkout of factpatch")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--n", type=int, default=n, help="CounterFact cases in file order")
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET, help="flattened CounterFact JSON")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help=f"a {method} setting for both versions (repeatable)")
    return parser


def ab_inputs(parser: argparse.ArgumentParser, args) -> tuple[dict[str, str], list[EditRequest]]:
    """The --set overrides and the first n CounterFact requests."""
    if any("=" not in item for item in args.set):
        parser.error("--set takes KEY=VALUE")
    records = json.loads(args.dataset.read_text())[: args.n]
    requests = [EditRequest.from_text(r["prompt"], r["subject"], r["target_new"], r["ground_truth"]) for r in records]
    return dict(item.split("=", 1) for item in args.set), requests


def main() -> None:
    parser = ab_parser(__doc__.splitlines()[0], "MEMIT", 100)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--whole", action="store_true", help="time the whole batch edit, not z alone")
    args = parser.parse_args()
    overrides, requests = ab_inputs(parser, args)
    with tempfile.TemporaryDirectory() as tmp:
        versions = {"this": this, "other": load_other(args.other, Path(tmp))}
        lm = load_model(args.model)
        params = method_params(lm, "memit", overrides)
        editor = make_editor(lm, "memit", params, progress=False)
        editor.prepare()  # statistics and prefixes cached, untimed
        prefixes = editor.prefixes

        def solve(layer: int, K: torch.Tensor) -> torch.Tensor:  # MEMIT's, the same for both versions
            return this.memit_solve(K, editor.C(layer), params.lam(K.shape[0]))

        seconds: dict[str, list[float]] = {name: [] for name in versions}
        found = {}
        for round_ in range(args.rounds):
            order = list(versions) if round_ % 2 == 0 else list(reversed(versions))
            for name in order:
                started = time.perf_counter()
                if args.whole:
                    found[name] = versions[name].spread_over_layers(lm, requests, params, prefixes, solve, progress=False)
                else:
                    found[name] = versions[name].compute_targets(lm, requests, params, prefixes, progress=False)
                seconds[name].append(round(time.perf_counter() - started, 1))
                print(json.dumps({"round": round_, "version": name, "seconds": seconds[name][-1]}), flush=True)
        a, b = found["this"], found["other"]
        if args.whole:
            deltas = {name: [d.tensor() for d in found[name].deltas] for name in versions}
            weight_relative = max(float((x - y).norm() / y.norm()) for x, y in zip(deltas["this"], deltas["other"]))
            a, b = a.targets, b.targets
        relative = ((a.Z - b.Z).norm(dim=-1) / b.Z.norm(dim=-1)).max()
        print(json.dumps({
            "model": lm.name, "n": len(requests), "rounds": args.rounds, "settings": overrides,
            "median_seconds": {name: statistics.median(s) for name, s in seconds.items()},
            "seconds": seconds, "what": "whole batch edit" if args.whole else "z",
            "max_relative_z_difference": float(relative),
            **({"max_relative_weight_change_difference": weight_relative} if args.whole else {}),
            "steps_equal": a.steps == b.steps, "mean_steps": statistics.mean(a.steps),
            "threads": torch.get_num_threads(),
        }))


if __name__ == "__main__":
    main()
