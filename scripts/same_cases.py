"""Two result directories on the cases they share: each metric's mean with its bootstrap 95 %
interval in each, and the paired difference (B − A) with its interval.

Written for issue 17's check that a new key-statistics corpus gives C of the same quality (ROME's
ES/PS/NS on the same CounterFact cases with the old and the new C), and usable for any two runs:

    .venv/bin/python scripts/same_cases.py runs/eval-smollm2-cf-rome runs/eval-smollm2-cf-rome-topk \\
        --method rome [--json OUT]

or two methods of one sequential run at one checkpoint (B's method with --method-b; a sequential
run's records are per checkpoint, so it needs --edits):

    .venv/bin/python scripts/same_cases.py runs/seq-smollm2-cf-2000 runs/seq-smollm2-cf-2000 \\
        --method alphaedit --method-b rome --edits 1000
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


def per_case(directory: Path, method: str, edits: int | None = None) -> dict[str, dict]:
    path = directory / "results.jsonl"
    if not path.is_file():
        raise FactpatchError(f"no results.jsonl in {directory}")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("method") == method]
    if edits is None and any("edits" in r for r in rows):
        raise FactpatchError(f"{directory} is a sequential run (a record per checkpoint): give --edits")
    if edits is not None:
        rows = [r for r in rows if r.get("edits") == edits]
        if not rows:
            raise FactpatchError(f"{directory} has no {method} records at {edits} edits")
    return {r["case_id"]: r["metrics"] for r in rows}


def compare(a: dict[str, dict], b: dict[str, dict]) -> dict:
    shared = [case for case in a if case in b]
    if not shared:
        raise FactpatchError("the two sides share no case")
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
    parser.add_argument("--method-b", default=None, help="B's method (default: --method)")
    parser.add_argument("--edits", type=int, default=None, help="a sequential run's checkpoint")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    method_b = args.method_b or args.method
    try:
        result = {"a": str(args.a), "b": str(args.b), "method": args.method, "method_b": method_b,
                  "edits": args.edits,
                  **compare(per_case(args.a, args.method, args.edits), per_case(args.b, method_b, args.edits))}
    except FactpatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    at = f" at {args.edits} edits" if args.edits is not None else ""
    print(f"{result['cases']} shared cases{at}: A = {args.a} {args.method}, B = {args.b} {method_b}")
    for name, m in result["metrics"].items():
        fmt = lambda e: f"{100 * e['mean']:6.1f} ({100 * e['ci'][0]:.1f}–{100 * e['ci'][1]:.1f})"  # noqa: E731
        print(f"  {name}: A {fmt(m['a'])}   B {fmt(m['b'])}   B − A {fmt(m['b_minus_a'])}")
    if args.json is not None:
        write_text_atomic(args.json, json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
