"""How firmly the unedited model knew the facts sequential runs keep and lose.

    python scripts/known_facts_firmness.py runs/seq-smollm2-cf-alphaedit-hold-ref:alphaedit \
        runs/seq-smollm2-cf-memit-hold:memit --names "AlphaEdit held,MEMIT held" --out runs/firmness-smollm2

A run's "known facts kept" counts the known_1000 facts whose every answer token is still the
model's top prediction. A fact's *firmness* here is how far the unedited model had it on top: the
smallest, over its answer tokens, of log p(answer token) − the largest log p of any other token
(nats; core.scoring's margins). The known facts are split at the quantiles of their firmness into
`--bins` groups of equal size (the edges are reported), and for every RUN:METHOD and every
checkpoint its health entries name the facts of (entries from 2026-12-03 on), each group's share
kept with its bootstrap 95 % interval and the mean change of its answers' log-probability. So: are
the facts the edits take the ones the model barely knew, or the firm ones as well?

The runs must share one model; it is loaded once (checked against each run's fingerprint) and
reads known_1000 once, unedited — no edit is applied, the health entries say what each checkpoint
kept. Writes `firmness.json`, `firmness.csv` (one row a run, checkpoint and group) and
`firmness.png`/`.svg` (share kept and answer change by group at `--edits`, default the largest
checkpoint every run has) in `--out`. About a minute on a CPU.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from factpatch.core.cache import write_text_atomic
from factpatch.evaluation.health import known_by_fact, known_logprob_by_fact
from factpatch.evaluation.metrics import bootstrap_mean

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Firmness:
    """The unedited model on known_1000: fact id -> firmness (nats) for the facts it knows."""

    by_fact: dict[str, float]

    @classmethod
    def measure(cls, lm, known_path: Path) -> Firmness:
        from factpatch.tracing.dataset import answer_scores, load_facts

        facts = load_facts(known_path)
        scores = answer_scores(lm, facts, progress=False)
        return cls({f.id: min(s.margins) for f, s in zip(facts, scores) if all(s.hits)})

    def edges(self, bins: int) -> list[float]:
        """bins + 1 edges: the quantiles of the known facts' firmness (first and last: min and max)."""
        return [float(x) for x in np.quantile(list(self.by_fact.values()), np.linspace(0, 1, bins + 1))]


def group_of(value: float, edges: list[float]) -> int:
    """The group of a firmness: i where edges[i] ≤ value < edges[i + 1] (the largest in the last)."""
    return min(int(np.searchsorted(edges, value, side="right")) - 1, len(edges) - 2)


def checkpoints(run: Path, method: str) -> list[dict]:
    """The run's health entries of `method` that name their facts, in order of edits."""
    path = run / "health.jsonl"
    if not path.is_file():
        raise SystemExit(f"error: {path} not found")
    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    named = sorted((e for e in entries if e.get("method") == method and known_by_fact(e) is not None),
                   key=lambda e: e["edits"])
    if not named:
        raise SystemExit(f"error: {run} has no checkpoint of {method} that names its known facts "
                         "(health entries from 2026-12-03 on do)")
    return named


def group_rows(entry: dict, firmness: Firmness, edges: list[float]) -> list[dict]:
    """One row a group: the facts the entry checked in it, the share kept and the mean answer change."""
    kept = known_by_fact(entry)
    change = known_logprob_by_fact(entry) or {}
    stray = sorted(i for i in kept if i not in firmness.by_fact)
    if stray:
        raise SystemExit(f"error: the run checked facts the loaded model does not know ({', '.join(stray[:5])}…): "
                         "another model or scoring code than the run's")
    rows = []
    for g in range(len(edges) - 1):
        ids = [i for i in kept if group_of(firmness.by_fact[i], edges) == g]
        share = bootstrap_mean([kept[i] for i in ids]) if ids else None
        moved = bootstrap_mean([change[i] for i in ids if i in change]) if any(i in change for i in ids) else None
        rows.append({
            "edits": entry["edits"], "group": g, "firmness_from": round(edges[g], 4), "firmness_to": round(edges[g + 1], 4),
            "facts": len(ids), "kept": int(sum(kept[i] for i in ids)),
            **_estimate("share", share), **_estimate("logprob_change", moved),
        })
    return rows


def _estimate(name: str, estimate) -> dict:
    """`name`, `name_lo`, `name_hi` from a bootstrap estimate (None each for a group without facts)."""
    values = (None, None, None) if estimate is None else (estimate.mean, estimate.lo, estimate.hi)
    return {key: None if v is None else round(float(v), 4)
            for key, v in zip((name, f"{name}_lo", f"{name}_hi"), values)}


def plot(results: list[dict], edits: int, edges: list[float], stem: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from factpatch.tracing.plot import write_figure

    labels = [f"{edges[g]:.1f}–{edges[g + 1]:.1f}" for g in range(len(edges) - 1)]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.5, 3.6), constrained_layout=True)
    offsets = np.linspace(-0.12, 0.12, len(results)) if len(results) > 1 else [0.0]
    for result, dx in zip(results, offsets):
        rows = [r for r in result["rows"] if r["edits"] == edits]
        x = np.arange(len(rows)) + dx
        for axis, key in ((left, "share"), (right, "logprob_change")):
            mean = np.array([np.nan if r[key] is None else r[key] for r in rows], dtype=float)
            lo = np.array([np.nan if r[key + "_lo"] is None else r[key + "_lo"] for r in rows], dtype=float)
            hi = np.array([np.nan if r[key + "_hi"] is None else r[key + "_hi"] for r in rows], dtype=float)
            scale = 100.0 if key == "share" else 1.0
            axis.errorbar(x, mean * scale, yerr=[(mean - lo) * scale, (hi - mean) * scale], marker="o", capsize=3,
                          label=result["name"])
    for axis, ylabel in ((left, "known facts kept (%)"), (right, "answer Δ log P (nats)")):
        axis.set_xticks(range(len(labels)), labels)
        axis.set_xlabel("firmness on the unedited model (nats, quantile groups)")
        axis.set_ylabel(ylabel)
        axis.grid(alpha=0.3)
    left.set_ylim(0, 100)
    left.legend(fontsize=8)
    fig.suptitle(f"Known facts after {edits:,} sequential edits, by how firmly the unedited model knew them")
    files = write_figure(fig, stem)
    plt.close(fig)
    return files


def main(argv: list[str] | None = None) -> None:
    from factpatch.core.models import load_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="RUN:METHOD")
    parser.add_argument("--names", default=None, help="comma-separated names for the figure (default: RUN:METHOD)")
    parser.add_argument("--known", type=Path, default=Path("../shared/datasets/known_1000.json"))
    parser.add_argument("--bins", type=int, default=4)
    parser.add_argument("--edits", type=int, default=None, help="the checkpoint the figure shows")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.bins < 1:
        parser.error("--bins must be at least 1")
    pairs = []
    for spec in args.runs:
        run, _, method = spec.rpartition(":")
        if not run or not method:
            parser.error(f"{spec}: expected RUN:METHOD")
        if not (Path(run) / "config.json").is_file():
            parser.error(f"{run} holds no run (no config.json)")
        pairs.append((Path(run), method))
    names = args.names.split(",") if args.names else [f"{r}:{m}" for r, m in pairs]
    if len(names) != len(pairs):
        parser.error(f"{len(names)} names for {len(pairs)} runs")
    if not args.known.is_file():
        parser.error(f"{args.known} not found")
    configs = [json.loads((run / "config.json").read_text()) for run, _ in pairs]
    if len({c["fingerprint"] for c in configs}) != 1:
        parser.error("the runs were made on different models; give runs of one model")
    entries = [checkpoints(run, method) for run, method in pairs]  # every run checked before the model loads

    lm = load_model(configs[0]["model"])
    if lm.fingerprint != configs[0]["fingerprint"]:
        parser.error("the model's weights are not the runs'")
    firmness = Firmness.measure(lm, args.known)
    edges = firmness.edges(args.bins)
    results = [{"run": str(run), "method": method, "name": name,
                "rows": [row for entry in named for row in group_rows(entry, firmness, edges)]}
               for (run, method), name, named in zip(pairs, names, entries)]
    shared = set.intersection(*({e["edits"] for e in named} for named in entries))
    edits = args.edits if args.edits is not None else max(shared, default=None)
    if edits is None or edits not in shared:
        parser.error(f"--edits: the runs share the checkpoints {sorted(shared)}")

    args.out.mkdir(parents=True, exist_ok=True)
    summary = {"model": configs[0]["model"], "known": str(args.known), "known_facts": len(firmness.by_fact),
               "edges": [round(e, 4) for e in edges], "results": results}
    write_text_atomic(args.out / "firmness.json", json.dumps(summary, indent=1) + "\n")
    table = io.StringIO()
    fields = ["name", "run", "method", *results[0]["rows"][0].keys()]
    writer = csv.DictWriter(table, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for result in results:
        for row in result["rows"]:
            writer.writerow({"name": result["name"], "run": result["run"], "method": result["method"], **row})
    write_text_atomic(args.out / "firmness.csv", table.getvalue())
    files = plot(results, edits, edges, args.out / "firmness")
    for result in results:
        for row in (r for r in result["rows"] if r["edits"] == edits):
            logger.info("%s, %d edits, firmness %.2f–%.2f: %d/%d kept (%s)", result["name"], edits,
                        row["firmness_from"], row["firmness_to"], row["kept"], row["facts"], row["share"])
    logger.info("written %s", ", ".join(str(p) for p in [args.out / "firmness.json", args.out / "firmness.csv", *files]))


if __name__ == "__main__":
    main()
