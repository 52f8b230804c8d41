"""One Markdown table of several sequential runs at one checkpoint: docs/mass-editing.md's
"At 2,000 edits, at a glance".

    python scripts/glance_table.py --edits 2000 \
        "SmolLM2|AlphaEdit|runs/seq-smollm2-cf-2000|alphaedit" \
        "SmolLM2|MEMIT held at keys read now|runs/seq-smollm2-cf-memit-hold|memit" ...

Each argument is MODEL|LABEL|RUN_DIR|METHOD. A row is that method's checkpoint at `--edits` (a
run that has not reached it prints "not reached"): ES, PS and NS over every case edited so far
with their 95 % bootstrap intervals, the share of known facts kept, their answers' mean
log-probability change where the run records it, and perplexity on the fixed text — all
recomputed from the run's records by `factpatch.evaluation.curves` (as `factpatch eval curves`
draws them), so the table and the figures cannot disagree. The generation entropy column is
mean(method) / mean(unedited) − 1 on the cases both generated for, resampled by case as `factpatch
eval paired` does, against the same model's row whose METHOD is `none` (its run's unedited model;
"–" where the model has no such row or the run generated no texts). Reads only: safe beside a
running run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from factpatch.core.errors import FactpatchError
from factpatch.evaluation.breakdown import Side, checkpoints, load_side, paired
from factpatch.evaluation.curves import load_run_curves

# issue 12's bounds for AlphaEdit at 2,000 edits: a point estimate that one decimal would round onto
# the other side of its bound (94.95 as "95.0") gets the decimals that keep it on its side.
BOUNDS = {"ES": 95.0, "PS": 85.0}
COLUMNS = ("model", "method, setting", "ES", "PS", "NS", "generation entropy vs unedited", "known facts kept",
           "known answers Δ log P (nats)", "perplexity")


def point(value: float, digits: int = 1, bound: float | None = None) -> str:
    """`value` to `digits` decimals, or as many more as keep the rounding on `value`'s side of `bound`."""
    text = f"{value:.{digits}f}"
    while bound is not None and (float(text) >= bound) != (value >= bound) and digits < 6:
        digits += 1
        text = f"{value:.{digits}f}"
    return text


def _interval(row: dict, name: str, scale: float = 100.0, digits: int = 1) -> str:
    if name not in row:
        return "–"
    text = point(row[name] * scale, digits, BOUNDS.get(name))
    if f"{name}_lo" in row:
        text += f" ({row[f'{name}_lo'] * scale:.{digits}f} to {row[f'{name}_hi'] * scale:.{digits}f})"
    return text


def parse_spec(spec: str) -> tuple[str, str, Path, str]:
    try:
        model, label, run_dir, method = spec.split("|")
    except ValueError:
        raise FactpatchError(f"expected MODEL|LABEL|RUN_DIR|METHOD, got {spec!r}") from None
    return model, label, Path(run_dir), method


def unedited_side(run_dir: Path, method: str, edits: int) -> Side | None:
    """The unedited row's records at `edits`, read once for all of its model's rows; None where
    that run has not reached the checkpoint (its own row says so)."""
    return load_side(run_dir, method, edits) if edits in checkpoints(run_dir, method) else None


def entropy_change(unedited: Side | None, run_dir: Path, method: str, edits: int) -> str:
    """Generation entropy against the unedited model on the same cases: "-0.8 % (-3.0 to +1.5)"."""
    if unedited is None or (unedited.directory, unedited.method) == (run_dir, method):
        return "–"
    fluency = paired(unedited, load_side(run_dir, method, edits)).metrics.get("fluency")
    if fluency is None or fluency.relative is None:
        return "–"
    change = fluency.relative
    return f"{change.mean * 100:+.1f} % ({change.lo * 100:+.1f} to {change.hi * 100:+.1f})"


def table_row(spec: str, edits: int, unedited: Side | None = None) -> list[str]:
    model, label, run_dir, method = parse_spec(spec)
    rows = load_run_curves(run_dir, methods=[method]).rows
    row = next((r for r in rows if r["method"] == method and r["edits"] == edits), None)
    if row is None:
        done = max((r["edits"] for r in rows if r["method"] == method), default=0)
        return [model, label, f"not reached ({done} edits scored)"] + [""] * (len(COLUMNS) - 3)
    return [model, label, _interval(row, "ES"), _interval(row, "PS"), _interval(row, "NS"),
            entropy_change(unedited, run_dir, method, edits),
            _interval(row, "known_share"), _interval(row, "known_logprob", scale=1.0, digits=2),
            f"{row['perplexity']:.2f}" if "perplexity" in row else "–"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("specs", nargs="+", metavar="MODEL|LABEL|RUN_DIR|METHOD")
    parser.add_argument("--edits", type=int, required=True, help="the checkpoint: edits made so far")
    args = parser.parse_args(argv)
    try:
        specs = [parse_spec(spec) for spec in args.specs]
        unedited = {model: unedited_side(run_dir, method, args.edits)
                    for model, _, run_dir, method in specs if method == "none"}
        rows = [table_row(spec, args.edits, unedited.get(model)) for spec, (model, *_) in zip(args.specs, specs)]
    except FactpatchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
