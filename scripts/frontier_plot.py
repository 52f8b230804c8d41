"""The one-batch trade-off on SmolLM2: what a setting writes against the known facts it keeps.

    .venv/bin/python scripts/frontier_plot.py --out docs/img/alphaedit-frontier-smollm2.png

Reads every setting measured on the sequential runs' first batch (CounterFact 0–99, written at
once into SmolLM2, from one z per z setting): `runs/alphaedit-sweep/*.jsonl` (scripts/alphaedit_sweep.py,
scripts/subject_anchors.py). Two panels, ES and PS against the share of the known_1000 facts the
unedited model knew that it still knows (Wilson 95 % intervals over the facts). Points measured
with C from the corpus `generate` drew (before the top-k-first sampler, rows without a "corpus"
field) are hollow. The shaded corner is issue 12's target for AlphaEdit after 2,000 edits
(ES ≥ 95, PS ≥ 85, ≥ 90 % kept); one batch is the easiest case of it.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402
from scipy.stats import binomtest  # noqa: E402

from factpatch.core.cache import atomic_path  # noqa: E402

logger = logging.getLogger("frontier_plot")

SWEEP = Path("runs/alphaedit-sweep")
# family -> (colour, marker); the first matching rule names a row's family
FAMILIES = {
    "AlphaEdit: null-space share, α": ("tab:blue", "o"),
    "MEMIT: λ": ("tab:orange", "s"),
    "C from 204,800 tokens": ("tab:purple", "D"),
    "C with facts in its text": ("tab:brown", "P"),
    "layers 3–5 only": ("tab:green", "^"),
    "other subjects' keys in K_p": ("tab:red", "v"),
    "z step 0.1 (the reference's Llama-3)": ("tab:gray", "X"),
    "z stopped once o* is likely (ENCORE's MPES; NLL < 0.7)": ("tab:olive", "*"),
}


def family(row: dict) -> str:
    setting = row.get("setting", "")
    if "weight" in row:
        return "other subjects' keys in K_p"
    if "early_stop_nll=" in setting or "early_stop_most_probable" in setting:
        return "z stopped once o* is likely (ENCORE's MPES; NLL < 0.7)"
    if "v_lr=0.1" in setting:
        return "z step 0.1 (the reference's Llama-3)"
    if "layers=3-5" in setting:
        return "layers 3–5 only"
    if "entity-corpus" in setting:
        return "C with facts in its text"
    if "@204800" in setting:
        return "C from 204,800 tokens"
    return "MEMIT: λ" if setting.startswith("memit") else "AlphaEdit: null-space share, α"


def label(row: dict) -> str:
    if "weight" in row:
        return f"w {row['weight']:g}"
    method, _, rest = row["setting"].partition(":")
    rest = rest.split("@")[0].replace("nullspace_energy=", "").replace("lambda_per_dim=", "λ/d ")
    rest = rest.replace("layers=3-5", "").replace("v_lr=0.1", "").replace("early_stop_nll=0.7", "NLL < 0.7")
    rest = rest.replace("early_stop_most_probable=true", "MPES").strip(",")
    rest = rest.replace(",L2=", ", α ")
    if method == "memit":
        return f"MEMIT {rest}".strip()
    return rest or "AlphaEdit"


def rows(sweep: Path) -> list[dict]:
    found = []
    for path in sorted(sweep.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if row.get("setting") == "none:" or ("weight" in row and row["weight"] == 0):
                continue  # the unedited model (ES 24); w = 0 repeats the default row
            if row.get("model", "smollm2-135m") != "smollm2-135m":
                continue  # another model's sweep in the same folder (gemma3-layers.jsonl)
            found.append(row)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", type=Path, default=SWEEP)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--min-kept", type=float, default=0.6, help="points keeping less are left off (named in the log)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    measured = rows(args.sweep)
    if not measured:
        parser.error(f"no settings measured in {args.sweep}/*.jsonl")
    figure = Figure(figsize=(11, 4.6), layout="constrained")
    axes = figure.subplots(1, 2, sharex=True)
    shown = set()
    for row in measured:
        kept, total = row["known_kept"], row["known_total"]
        share = kept / total
        if share < args.min_kept:
            logger.info("left off (keeps %.1f %%): %s", 100 * share, row.get("setting"))
            continue
        low, high = binomtest(kept, total).proportion_ci(method="wilson")
        name = family(row)
        colour, marker = FAMILIES[name]
        hollow = "corpus" not in row and "weight" not in row
        for ax, metric in zip(axes, ("ES", "PS")):
            ax.errorbar(100 * share, 100 * row[metric], xerr=[[100 * (share - low)], [100 * (high - share)]],
                        fmt=marker, color=colour, mfc="none" if hollow else colour, ms=7, elinewidth=0.7,
                        capsize=2, label=None if name in shown else name)
            # the crowd near the corner is told apart by the legend; the points away from it are named
            if row[metric] < (0.95 if metric == "ES" else 0.85) or share < 0.85 or row.get("setting") == "alphaedit:":
                text = "AlphaEdit default" if row.get("setting") == "alphaedit:" else label(row)
                ax.annotate(text, (100 * share, 100 * row[metric]), textcoords="offset points",
                            xytext=(4, 4), fontsize=7, color=colour)
        shown.add(name)
    for ax, metric, target in zip(axes, ("ES", "PS"), (95, 85)):
        ax.fill_between([90, 100], target, 101, color="tab:green", alpha=0.08, lw=0)
        ax.axhline(target, color="tab:green", lw=0.6, ls="--")
        ax.axvline(90, color="tab:green", lw=0.6, ls="--")
        ax.set_xlabel("known facts kept after the batch (%, Wilson 95 % interval)")
        ax.set_ylabel(f"{metric} of the batch (%)")
        ax.set_xlim(100 * args.min_kept, 96)
        ax.grid(alpha=0.3)
    axes[0].set_title("Efficacy against the facts kept", fontsize=10)
    axes[1].set_title("Paraphrase against the facts kept", fontsize=10)
    axes[0].legend(fontsize=7, loc="lower left")
    figure.suptitle("One batch of 100 CounterFact edits on SmolLM2-135M: every setting tried "
                    "(hollow: C from the earlier corpus)", fontsize=10)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        figure.savefig(tmp, dpi=150, format=args.out.suffix.lstrip("."))
    logger.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
