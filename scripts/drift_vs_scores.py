"""Do the edits whose states drifted most fail most? Joins replay_residuals.py's per-edit shares with the run's scores.

    python scripts/drift_vs_scores.py runs/seq-smollm2-cf-memit-preserve memit --edits 2000

Reads `replay-residuals-METHOD-EDITS.jsonl` (scripts/replay_residuals.py: each edit's unwritten
share ‖z − h_L‖/‖z − h_L⁰‖ at the end) and the run's case records at that checkpoint (edit order is
case order), and compares the edits within each batch — so that age, which both drift and decay
follow, is held fixed: the Spearman correlation of the unwritten share with the edit's magnitude
EM in each batch, and ES, PS and EM over the more-drifted half of each batch against the other
half (over all batches, and over the oldest half of the batches). Writes
`drift-vs-scores-METHOD-EDITS.json` in the run directory. Seconds.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from factpatch.core.cache import write_text_atomic

logger = logging.getLogger("drift_vs_scores")


def half_means(scores: dict[str, np.ndarray], drifted: np.ndarray, within: np.ndarray, resamples: int = 2000) -> dict:
    """Each metric's mean (×100) over the more-drifted half and the other half, among `within`, and
    their difference with a 95 % interval (each half resampled on its own: the halves are different edits)."""
    rng = np.random.default_rng(0)
    out = {}
    for name, v in scores.items():
        a, b = v[drifted & within] * 100, v[~drifted & within] * 100
        diffs = [rng.choice(a, a.size).mean() - rng.choice(b, b.size).mean() for _ in range(resamples)]
        lo, hi = np.percentile(diffs, [2.5, 97.5])
        out[name] = {"drifted": round(float(a.mean()), 1), "other": round(float(b.mean()), 1),
                     "difference": round(float(a.mean() - b.mean()), 1), "ci": [round(float(lo), 1), round(float(hi), 1)]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("method")
    parser.add_argument("--edits", type=int, required=True, help="the checkpoint replay_residuals.py read")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    shares_file = args.run / f"replay-residuals-{args.method}-{args.edits}.jsonl"
    if not shares_file.exists():
        parser.error(f"{shares_file} is missing: run scripts/replay_residuals.py {args.run} {args.method} first")
    edits = [json.loads(line) for line in shares_file.read_text().splitlines()]
    records = {}
    for line in (args.run / "results.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r["method"] == args.method and r["edits"] == args.edits:
            records[r["index"]] = r["metrics"]
    if len(edits) != args.edits or any(i not in records for i in range(args.edits)):
        parser.error(f"{args.run}: {len(edits)} edits' shares, {len(records)} case records at {args.edits} edits")
    unwritten = np.array([e["unwritten"] for e in edits])
    batch = np.array([e["batch"] for e in edits])
    scores = {m: np.array([records[i][m] for i in range(args.edits)]) for m in ("ES", "PS", "EM")}
    drifted = np.zeros(args.edits, dtype=bool)  # above its own batch's median unwritten share
    rhos = []
    for b in np.unique(batch):
        mine = batch == b
        drifted |= mine & (unwritten > np.median(unwritten[mine]))
        rhos.append(float(spearmanr(unwritten[mine], scores["EM"][mine])[0]))
    oldest = batch < (batch.max() + 1) // 2
    summary = {
        "run": str(args.run), "method": args.method, "edits": args.edits,
        "spearman_unwritten_em_within_batch": {"median": round(float(np.median(rhos)), 3),
                                               "min": round(min(rhos), 3), "max": round(max(rhos), 3)},
        "all_batches": half_means(scores, drifted, np.ones(args.edits, dtype=bool)),
        "oldest_half_of_batches": half_means(scores, drifted, oldest),
    }
    out = args.run / f"drift-vs-scores-{args.method}-{args.edits}.json"
    write_text_atomic(out, json.dumps(summary, indent=1) + "\n")
    logger.info("%s", json.dumps(summary))


if __name__ == "__main__":
    main()
