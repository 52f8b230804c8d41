"""How far a sequential run's edits moved the known facts' answers: the graded measure behind the count.

    python scripts/known_depth.py runs/seq-smollm2-cf-2000 rome --edits 2000

Applies the first `--edits` edits of METHOD's patch stack (runs/…/METHOD/patches/, in order; for
MEMIT/AlphaEdit runs `factpatch eval rebuild` writes them from the saved z) to the run's model and,
for every known_1000 fact the unedited model knew whose subject no edit touched (the facts the
run's "known facts kept" counts), teacher-forces the answer: its log-probability now minus the
unedited model's (nats, summed over the answer's tokens), and whether every token is still the top
prediction (the run's "kept"). Runs scored from 2026-12-03 record the same change in their health
entries at every checkpoint (`known_logprob_change`); this script measures it on stacks scored
before. Writes `known-depth-METHOD-EDITS.json` (the summary: the mean change with its bootstrap
95 % interval, its median, over all facts and over the kept and lost ones, and the share of facts
whose answer keeps at least half its probability) and `.jsonl` (one line a fact) in the run
directory. A minute or two on a CPU: run it alone.
"""

from __future__ import annotations

import logging
import math
import statistics

from factpatch.editing.patch import PatchStack, load_patch
from factpatch.evaluation.metrics import bootstrap_mean
from factpatch.tracing.dataset import answer_scores
from known_facts_lost import load_run_facts, run_arguments  # scripts/: the same run and facts

HALF = math.log(0.5)  # an answer whose probability fell to half its unedited value


def depth_summary(changes: list[float]) -> dict:
    """The mean change with its interval, the median, and the share above log ½ (only the count: no facts)."""
    if not changes:
        return {"facts": 0}
    mean = bootstrap_mean(changes)
    return {"facts": len(changes), "mean": round(mean.mean, 4), "lo": round(mean.lo, 4), "hi": round(mean.hi, 4),
            "median": round(statistics.median(changes), 4),
            "share_above_half": round(sum(c >= HALF for c in changes) / len(changes), 4)}


def main() -> None:
    parser = run_arguments(__doc__.splitlines()[0])
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    loaded = load_run_facts(parser, args)
    lm, facts, before = loaded.lm, loaded.facts, loaded.unedited_log_probs  # the check's pass, not a second one
    stack = PatchStack(lm)
    for path in loaded.patches:
        stack.apply(load_patch(path))
    try:
        after = answer_scores(lm, facts, progress=False)
    finally:
        stack.revert()
    rows = [{"id": f.id, "prompt": f.prompt, "target": f.target, "kept": all(a.hits),
             "log_prob_before": round(before[f.id], 4), "log_prob_now": round(sum(a.log_probs), 4),
             "change": round(sum(a.log_probs) - before[f.id], 4)}
            for f, a in zip(facts, after)]
    summary = {
        "run": str(args.run), "method": args.method, "edits": loaded.edits,
        "kept": sum(r["kept"] for r in rows), "facts": len(rows),
        "all": depth_summary([r["change"] for r in rows]),
        "kept_facts": depth_summary([r["change"] for r in rows if r["kept"]]),
        "lost_facts": depth_summary([r["change"] for r in rows if not r["kept"]]),
    }
    loaded.write("depth", rows, summary)


if __name__ == "__main__":
    main()
