"""PRUNE on a sequential run's stack: what restraining the accumulated edits keeps and costs.

    python scripts/restrain_stack.py runs/seq-smollm2-cf-2000 rome --edits 500 --base 1.2 --base 2

Applies the first `--edits` edits of METHOD's patch stack, then for each `--base` α the PRUNE
correction of that stack (factpatch.editing.restrain: the singular values of every edited
matrix's ΔW above σ_max(W₀) pulled back logarithmically), and scores on the restrained model what
the run scores at a checkpoint: every edited case (ES/PS/NS and magnitudes), the known facts the
unedited model knew whose subject no edit touched, and perplexity on the run's fixed text. The
same cases' records of the unrestrained stack at that checkpoint (the run's `results.jsonl`) are
the comparison, paired over cases; `--check N` first rescores N of them on the unrestrained stack
and stops if they differ from the run's (so both sides are the same measurement).
Writes `prune-METHOD-EDITS.json` (summary) and `.jsonl` (one line a case and α) in the run
directory, keeping the other α's results of earlier calls. Minutes on a CPU (a case takes ~0.25 s to score on SmolLM2): run it alone.

    python scripts/restrain_stack.py runs/seq-smollm2-cf-2000 rome --edits 2000 --blocks 500

reads those records instead (no model, seconds): each block of SIZE consecutive cases in the run's
edit order, as edited and restrained (`factpatch eval blocks` on the run's own records gives the
first), printed and written to `prune-METHOD-EDITS-blocks.csv`.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from tqdm.auto import tqdm

from factpatch.core.cache import default_cache_dir, write_text_atomic
from factpatch.editing.patch import PatchStack, load_patch
from factpatch.editing.restrain import PruneParams, restraint_patch
from factpatch.evaluation.health import perplexity, perplexity_text
from factpatch.evaluation.breakdown import Side, blocks, blocks_csv, blocks_text, load_side
from factpatch.evaluation.metrics import bootstrap_mean
from factpatch.evaluation.run import score_case
from factpatch.tracing.dataset import knows
from known_facts_lost import load_run_facts, run_arguments  # scripts/: the same run and facts

logger = logging.getLogger("restrain_stack")
METRICS = ("ES", "PS", "NS")


def recorded(run: Path, method: str, edits: int) -> tuple[dict[str, dict], dict | None]:
    """The run's case records and health entry for METHOD at `edits` edits."""
    cases = {}
    with open(run / "results.jsonl") as handle:
        for line in handle:
            record = json.loads(line)
            if record["method"] == method and record["edits"] == edits:
                cases[record["case_id"]] = record
    health = None
    with open(run / "health.jsonl") as handle:
        for line in handle:
            entry = json.loads(line)
            if entry["method"] == method and entry["edits"] == edits:
                health = entry
    return cases, health


def estimate(values: list[float]) -> dict:
    found = bootstrap_mean(values)
    return {"mean": round(100 * found.mean, 1), "ci": [round(100 * found.lo, 1), round(100 * found.hi, 1)],
            "n": found.n}


def report_blocks(run: Path, method: str, edits: int, size: int) -> str:
    """The blocks of an earlier call's records: as edited (the run's checkpoint) and for each α
    restrained, over the same cases in the run's order; returns them as CSV (method column
    `METHOD` or `METHOD+prune(α)`)."""
    edited = load_side(run, method, edits)
    stem = run / f"prune-{method}-{edits}"
    restrained: dict[float, dict[str, dict[str, float]]] = {}
    with open(stem.with_suffix(".jsonl")) as handle:
        for row in map(json.loads, handle):
            restrained.setdefault(row["base"], {})[row["case_id"]] = row["metrics"]
    sides = [edited] + [Side(run, f"{method}+prune({base:g})", edits, metrics, edited.positions, edited.kind)
                        for base, metrics in sorted(restrained.items())]
    out = ""
    for side in sides:
        rows = blocks(side, size)
        print(blocks_text(side, rows, size))
        csv_text = blocks_csv(side, rows)
        out += csv_text if not out else csv_text.split("\n", 1)[1]
    return out


def main() -> None:
    parser = run_arguments(__doc__.splitlines()[0])
    parser.add_argument("--base", type=float, action="append", help="PRUNE's α (repeatable; default 1.2)")
    parser.add_argument("--check", type=int, default=20, help="cases rescored on the unrestrained stack first")
    parser.add_argument("--blocks", type=int, default=None, metavar="SIZE",
                        help="report an earlier call's records in blocks of SIZE cases instead of scoring")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.blocks is not None:
        if args.edits is None or not (args.run / f"prune-{args.method}-{args.edits}.jsonl").is_file():
            parser.error(f"--blocks reads prune-{args.method}-EDITS.jsonl of an earlier call: give its --edits")
        csv_text = report_blocks(args.run, args.method, args.edits, args.blocks)
        write_text_atomic(args.run / f"prune-{args.method}-{args.edits}-blocks.csv", csv_text)
        return
    bases = [PruneParams(base=b) for b in (args.base or [1.2])]
    loaded = load_run_facts(parser, args)
    lm, cases, facts = loaded.lm, loaded.cases, loaded.facts
    config = json.loads((args.run / "config.json").read_text())
    before, health = recorded(args.run, args.method, loaded.edits)
    if len(before) != len(cases) or health is None:
        parser.error(f"{args.run} has no complete checkpoint of {args.method} at {loaded.edits} edits to compare with")
    if len(facts) != health.get("known_total"):
        parser.error(f"{len(facts)} known facts here, the run counted {health.get('known_total')}")
    ppl_ids = perplexity_text(lm, int(config.get("perplexity_tokens", 2048)), default_cache_dir())
    stack = PatchStack(lm)
    for path in loaded.patches:
        stack.apply(load_patch(path))
    if [p.id for p in stack.applied] != health["patches"]:
        parser.error("the stack on disk is not the one the run's checkpoint scored")
    for case in cases[: args.check]:
        metrics, _ = score_case(lm, case)
        if any(abs(metrics[m] - before[case.case_id]["metrics"][m]) > 1e-9 for m in METRICS):
            parser.error(f"case {case.case_id} scores {metrics} now, the run recorded {before[case.case_id]['metrics']}")
    logger.info("%d cases rescored on the unrestrained stack: as recorded", min(args.check, len(cases)))

    rows, results = [], []
    for params in bases:
        started = time.perf_counter()
        correction = restraint_patch(lm, stack, params)
        stack.apply(correction)
        try:
            scored = {}
            for case in tqdm(cases, desc=f"PRUNE α={params.base}: scoring", unit="case"):
                scored[case.case_id], _ = score_case(lm, case)
                rows.append({"base": params.base, "case_id": case.case_id, "metrics": scored[case.case_id]})
            kept = sum(knows(lm, facts, progress=False))
            ppl = perplexity(lm, ppl_ids)
        finally:
            stack.revert(correction.id)
        result = {"base": params.base, "correction": correction.id, "restrained": correction.meta["restrained"],
                  "known_kept": kept, "known_total": len(facts), "perplexity": round(ppl, 4),
                  "seconds": round(time.perf_counter() - started, 1)}
        for m in METRICS:
            after = [scored[c.case_id][m] for c in cases]
            result[m] = estimate(after)
            result[f"{m}_minus_unrestrained"] = estimate(
                [scored[c.case_id][m] - before[c.case_id]["metrics"][m] for c in cases])
        results.append(result)
        logger.info("%s", json.dumps({k: v for k, v in result.items() if k != "restrained"}))
    summary = {
        "run": str(args.run), "method": args.method, "edits": loaded.edits, "patches": health["patches"],
        "unrestrained": {**{m: estimate([before[c.case_id]["metrics"][m] for c in cases]) for m in METRICS},
                         "known_kept": health["known_kept"], "known_total": health["known_total"],
                         "perplexity": health["perplexity"]},
        "restrained": results,
    }
    stem = args.run / f"prune-{args.method}-{loaded.edits}"
    # results of other α from earlier calls stay; this call's α replace theirs
    done = {r["base"] for r in results}
    if stem.with_suffix(".json").is_file():
        earlier = json.loads(stem.with_suffix(".json").read_text())
        summary["restrained"] = sorted([r for r in earlier["restrained"] if r["base"] not in done] + results,
                                       key=lambda r: r["base"])
        with open(stem.with_suffix(".jsonl")) as handle:
            rows = [r for r in map(json.loads, handle) if r["base"] not in done] + rows
    write_text_atomic(stem.with_suffix(".jsonl"), "".join(json.dumps(r) + "\n" for r in rows))
    write_text_atomic(stem.with_suffix(".json"), json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
