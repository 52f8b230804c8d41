"""Two result directories on the cases they share: each metric's mean with its bootstrap 95 %
interval in each, and the paired difference (B − A) with its interval.

Written for issue 17's check that a new key-statistics corpus gives C of the same quality (ROME's
ES/PS/NS on the same CounterFact cases with the old and the new C), and usable for any two runs:

    .venv/bin/python scripts/same_cases.py runs/eval-smollm2-cf-rome runs/eval-smollm2-cf-rome-topk \\
        --method rome [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from factpatch.core.cache import write_text_atomic
from factpatch.core.errors import FactpatchError
from factpatch.evaluation.metrics import bootstrap_mean

METRICS = ("ES", "PS", "NS", "EM", "PM", "NM")


def per_case(directory: Path, method: str) -> dict[str, dict]:
    path = directory / "results.jsonl"
    if not path.is_file():
        raise FactpatchError(f"no results.jsonl in {directory}")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {r["case_id"]: r["metrics"] for r in rows if r.get("method") == method}


def compare(a: dict[str, dict], b: dict[str, dict]) -> dict:
    shared = [case for case in a if case in b]
    if not shared:
        raise FactpatchError("the two runs share no case of this method")
    out = {"cases": len(shared), "metrics": {}}
    for name in METRICS:
        if not all(name in a[c] and name in b[c] for c in shared):
            continue
        first = [a[c][name] for c in shared]
        second = [b[c][name] for c in shared]
        out["metrics"][name] = {
            "a": bootstrap_mean(first).to_dict(),
            "b": bootstrap_mean(second).to_dict(),
            "b_minus_a": bootstrap_mean([y - x for x, y in zip(first, second)]).to_dict(),
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--method", default="rome")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    try:
        result = {"a": str(args.a), "b": str(args.b), "method": args.method,
                  **compare(per_case(args.a, args.method), per_case(args.b, args.method))}
    except FactpatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{result['cases']} shared cases, {args.method}: A = {args.a}, B = {args.b}")
    for name, m in result["metrics"].items():
        fmt = lambda e: f"{100 * e['mean']:6.1f} ({100 * e['ci'][0]:.1f}–{100 * e['ci'][1]:.1f})"  # noqa: E731
        print(f"  {name}: A {fmt(m['a'])}   B {fmt(m['b'])}   B − A {fmt(m['b_minus_a'])}")
    if args.json is not None:
        write_text_atomic(args.json, json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
