"""Bring stored CounterFact results up to format 2: EM, PM and NM from the mean token probability.

    python scripts/recompute_magnitudes.py RUN_DIR... [--summaries-to RUN_DIR=DOCS_DIR ...]

Format 1 of `factpatch eval` (and `eval --sequential`) took the magnitudes from whole-sequence
probabilities; format 2 takes them, as the paper's `experiments/summarize.py` does, from
exp(−mean token NLL) (factpatch.evaluation.metrics). Every record keeps its raw scores —
[log P(o*), tokens of o*, log P(o^c), tokens of o^c] per prompt — so the metrics are recomputed
from them, not from the model: ES, PS and NS are recomputed too and must come out unchanged
(the script stops if one does not). Each directory's results.jsonl is rewritten in place
(atomically), its config.json gets format_version 2, and the summary files it already has
(summary.json, .md, .csv; plots are left alone: they show ES/PS/NS/S only) are rewritten from the
records. A directory already at format 2 is left as it is.

zsRE directories of format 1 were made by what is now `--zsre-target alt` (edit towards `alt`, the
NQ question as written): their scores do not change, their config.json gets format_version 2 and
`"zsre_target": "alt"` in its data-set identity, so they stay resumable with `--zsre-target alt`
and are never mixed with runs by the paper's convention.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from factpatch.core.cache import write_text_atomic
from factpatch.evaluation import run as single
from factpatch.evaluation import sequential
from factpatch.evaluation import summary as report
from factpatch.evaluation.metrics import TargetScore, counterfact_case_metrics

GROUPS = ("rewrite", "paraphrase", "neighborhood")


def case_metrics(scores: dict) -> dict[str, float]:
    pairs = {
        name: [(TargetScore(row[0], row[1]), TargetScore(row[2], row[3])) for row in scores.get(name, [])]
        for name in GROUPS
    }
    return counterfact_case_metrics(pairs["rewrite"], pairs["paraphrase"], pairs["neighborhood"])


def migrate_records(records: list[dict]) -> int:
    """Recompute EM/PM/NM in place; return how many records changed."""
    changed = 0
    for record in records:
        fresh = case_metrics(record["scores"])
        for name in ("ES", "PS", "NS"):
            old = record["metrics"].get(name)
            if old is not None and not math.isclose(old, fresh[name], abs_tol=1e-12):
                raise SystemExit(f"case {record['case_id']} {record['method']}: {name} {old} recomputes as {fresh[name]}")
        for name in ("EM", "PM", "NM"):
            if name in fresh and record["metrics"].get(name) != fresh[name]:
                record["metrics"][name] = fresh[name]
                changed += 1
    return changed


def migrate(run_dir: Path) -> str:
    config_path = run_dir / single.CONFIG
    description = json.loads(config_path.read_text())
    is_sequential = description.get("protocol") == "sequential"
    version = sequential.FORMAT_VERSION if is_sequential else single.FORMAT_VERSION
    if description["format_version"] == version:
        return f"{run_dir}: already format {version}"
    if description["dataset"]["kind"] == "zsre":
        description["format_version"] = version
        description["dataset"].setdefault("zsre_target", "alt")
        write_text_atomic(config_path, json.dumps(description, indent=2) + "\n")
        return f"{run_dir}: zsRE, labelled zsre_target={description['dataset']['zsre_target']}"
    store = sequential.case_store(run_dir / single.RESULTS) if is_sequential else single.result_store(run_dir / single.RESULTS)
    records = store.load()
    changed = migrate_records(records)
    write_text_atomic(run_dir / single.RESULTS, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    description["format_version"] = version
    write_text_atomic(config_path, json.dumps(description, indent=2) + "\n")
    if (run_dir / "summary.json").exists():
        write_summary_files(run_dir, run_dir, records, description)
    return f"{run_dir}: {len(records)} records, {changed} magnitudes recomputed"


def write_summary_files(run_dir: Path, out_dir: Path, records: list[dict], description: dict) -> None:
    """summary.json / .md / .csv as the run itself writes them (without the plot)."""
    kind = "counterfact"
    if description.get("protocol") == "sequential":
        final = [r for r in records if r["edits"] == description["n"]]
        summary = report.summarize(final, kind, description["methods"])
        stored = json.loads((run_dir / "summary.json").read_text())
        stored.update({"config": description, "summary": summary})
        write_text_atomic(out_dir / "summary.json", json.dumps(stored, indent=2) + "\n")
        write_text_atomic(out_dir / "summary.md", f"{description['n']} sequential edits in batches of "
                          f"{description['batch_size']} on {description['model']}\n\n{report.summary_table(summary, kind)}\n")
        write_text_atomic(out_dir / "summary.csv", report.summary_csv(summary, kind))
        return
    if description.get("n") is not None:  # a run's summary covers its first n cases (run_eval's selection)
        order = sorted({(r["index"], r["case_id"]) for r in records})[: description["n"]]
        keep = {case_id for _, case_id in order}
        records = [r for r in records if r["case_id"] in keep]
    summary = report.summarize(records, kind, list(description["methods"]))
    write_text_atomic(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    md = (out_dir / "summary.md").read_text().split("\n")
    table_start = next(i for i, line in enumerate(md) if line.startswith("| Method"))
    table_end = next((i for i in range(table_start, len(md)) if not md[i].startswith("|")), len(md))
    md[table_start:table_end] = report.summary_table(summary, kind).split("\n")
    write_text_atomic(out_dir / "summary.md", "\n".join(md))
    write_text_atomic(out_dir / "summary.csv", report.summary_csv(summary, kind))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", type=Path)
    parser.add_argument("--summaries-to", action="append", default=[], metavar="RUN_DIR=DOCS_DIR",
                        help="also write RUN_DIR's summary files into DOCS_DIR (docs/results/...)")
    args = parser.parse_args(argv)
    for run_dir in args.run_dirs:
        print(migrate(run_dir))
    for pair in args.summaries_to:
        source, _, target = pair.partition("=")
        source_dir, target_dir = Path(source), Path(target)
        description = json.loads((source_dir / single.CONFIG).read_text())
        records = single.result_store(source_dir / single.RESULTS).load()
        write_summary_files(source_dir, target_dir, records, description)
        docs_config = json.loads((target_dir / single.CONFIG).read_text())
        docs_config["format_version"] = description["format_version"]
        write_text_atomic(target_dir / single.CONFIG, json.dumps(docs_config, indent=2) + "\n")
        print(f"{target_dir}: summaries from {source_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
