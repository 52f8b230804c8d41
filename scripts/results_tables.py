"""The tables of docs/results.md from `factpatch eval` result directories.

    python scripts/results_tables.py RUN_DIR [--paper]

Prints two Markdown tables for RUN_DIR (one run, or the output of `factpatch eval merge`):
every method on all the cases it was run on, and every method on the cases that *all* methods
share (the first cases of the data set when methods were run on different --n), so that methods
are compared on the same facts.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from factpatch.evaluation.run import CONFIG, RESULTS, result_store
from factpatch.evaluation.summary import summarize, summary_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--paper", action="store_true", help="add the paper's GPT-2 XL rows to the first table")
    args = parser.parse_args(argv)

    description = json.loads((args.run_dir / CONFIG).read_text())
    kind, methods = description["dataset"]["kind"], list(description["methods"])
    records = result_store(args.run_dir / RESULTS).load()
    print(f"All cases run ({description['model']}, {description['dataset']['name']}):\n")
    print(summary_table(summarize(records, kind, methods), kind, paper=args.paper))

    shared = set.intersection(*({r["case_id"] for r in records if r["method"] == m} for m in methods))
    common = [r for r in records if r["case_id"] in shared]
    print(f"\nThe {len(shared)} cases every method was run on:\n")
    print(summary_table(summarize(common, kind, methods), kind))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
