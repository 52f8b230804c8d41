"""Two stacks' known-fact answer changes compared fact by fact (the `.jsonl` of scripts/known_depth.py).

    python scripts/known_depth_paired.py A.jsonl B.jsonl [B.jsonl ...] [--json OUT]

For each B: the mean of B's change minus A's over the facts both measured, with its bootstrap 95 %
interval (resampled by fact, so what the facts share cancels), as `eval paired` compares health
entries that record the change. Seconds; no model.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from factpatch.core.cache import write_text_atomic
from factpatch.evaluation.metrics import bootstrap_mean


def changes(path: Path) -> dict[str, float]:
    """Fact id -> change of its answer's log-probability, from a known_depth `.jsonl`."""
    return {row["id"]: float(row["change"]) for row in map(json.loads, path.read_text().splitlines())}


def paired_change(a: dict[str, float], b: dict[str, float]) -> dict:
    shared = [i for i in a if i in b]
    if not shared:
        raise SystemExit("error: the two files share no fact")
    diff = bootstrap_mean([b[i] - a[i] for i in shared])
    return {"facts": len(shared), "b_minus_a": round(diff.mean, 4), "lo": round(diff.lo, 4), "hi": round(diff.hi, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path, nargs="+")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    for path in [args.a, *args.b]:
        if not path.is_file():
            parser.error(f"{path} not found")
    a = changes(args.a)
    out = {"a": str(args.a), "b": {str(path): paired_change(a, changes(path)) for path in args.b}}
    for path, result in out["b"].items():
        print(f"{path} - A: {result['b_minus_a']:+.2f} ({result['lo']:+.2f} to {result['hi']:+.2f}) nats over {result['facts']} facts")
    if args.json is not None:
        write_text_atomic(args.json, json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
