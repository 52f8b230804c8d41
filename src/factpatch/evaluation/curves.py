"""Curves of sequential runs: each metric against the number of edits.

A sequential run writes its own curves (DIR/curves.csv and curves.png) at every checkpoint. To
compare runs — two models, or a setting against the default — `factpatch eval curves DIR... --out
FIG` puts several on one figure: a method keeps its colour in every run (`summary.method_color`)
and each run has its own line style, so "the same method on two models" and "two methods on one
model" read alike; runs that all draw one method (settings compared) get a colour each. Every point is a mean over the cases edited so far with its 95 % bootstrap
interval (shaded), recomputed from the records (results.jsonl, health.jsonl), so an unfinished
run can be plotted beside the run that writes it.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

from ..core.cache import atomic_path, write_text_atomic
from ..core.errors import FactpatchError
from .health import known_by_fact, known_logprob_by_fact
from .metrics import bootstrap_mean
from .run import RESULTS, read_config
from .summary import method_color

CURVE_METRICS = {"counterfact": ("ES", "PS", "NS"), "zsre": ("efficacy", "paraphrase", "specificity")}
HEALTH_MEASURES = ("known_share", "known_logprob", "perplexity")  # the rest of the model, at each checkpoint
STACK_MEASURES = ("weight_change",)  # the edited weights themselves, from the batch records
PANEL_MEASURES = HEALTH_MEASURES + STACK_MEASURES  # drawn after the metrics, in this order
PANEL_TITLES = {"known_share": "known facts kept", "known_logprob": "known answers: Δ log P (nats)",
                "perplexity": "perplexity (fixed text)",
                "weight_change": "edited weights: largest ‖W−W₀‖/‖W₀‖"}
UNBOUNDED = ("known_logprob", "perplexity", "weight_change")  # panels not drawn on the 0–1 scale of the shares
LOG_SCALE_RATIO = 10.0  # a perplexity panel whose largest value is this many times its smallest is drawn on a log
# axis: a collapsed method (ROME's 163 after 2,000 edits against the unedited 9) would flatten the others to one line
LINE_STYLES = ("-", "--", ":", "-.", (0, (3, 1, 1, 1, 1, 1)))  # one per run on a figure of several (the last: dash-dot-dot)
FIGURE_FORMATS = (".png", ".svg", ".pdf")


def curve_rows(records: list[dict], health: list[dict], kind: str, methods: list[str],
               batches: list[dict] | None = None) -> list[dict]:
    """One row per (method, checkpoint): each metric's mean and 95 % interval over the cases
    edited so far, the health measures, and (from `batches`, the batch records) how far the
    stack has moved the edited matrix that moved most."""
    rows = []
    change = weight_change_by_edits(batches or [])
    baseline = next((h for h in health if h["method"] == "unedited"), None)
    for method in methods:
        points = sorted({r["edits"] for r in records if r["method"] == method})
        for edits in points:
            chosen = sorted((r for r in records if r["method"] == method and r["edits"] == edits), key=lambda r: r["index"])
            row = {"method": method, "edits": edits, "cases": len(chosen)}
            for name in CURVE_METRICS[kind]:
                values = [r["metrics"][name] for r in chosen if name in r["metrics"]]
                if values:
                    estimate = bootstrap_mean(values)
                    row[name], row[f"{name}_lo"], row[f"{name}_hi"] = estimate.mean, estimate.lo, estimate.hi
            h = next((h for h in health if h["method"] == method and h["edits"] == edits), None)
            if h is not None:
                row["perplexity"] = h["perplexity"]
                if h.get("known_share") is not None:
                    row["known_share"] = h["known_share"]
                    by_fact = known_by_fact(h)
                    if by_fact:  # entries that name their facts (2026-12-03 on) get an interval over the facts
                        estimate = bootstrap_mean(list(by_fact.values()))
                        row["known_share_lo"], row["known_share_hi"] = estimate.lo, estimate.hi
                change_by_fact = known_logprob_by_fact(h)
                if change_by_fact:  # entries from 2026-12-03 10:30 UTC on: the answers' change, over the same facts
                    estimate = bootstrap_mean(list(change_by_fact.values()))
                    row["known_logprob"], row["known_logprob_lo"], row["known_logprob_hi"] = (
                        estimate.mean, estimate.lo, estimate.hi)
            if (method, edits) in change:
                row["weight_change"] = change[method, edits]
            rows.append(row)
    if baseline is not None and rows:
        for method in [m for m in methods if any(r["method"] == m for r in rows)]:  # methods run so far
            # before any edit every fact the model knows is still known: the kept share starts at 1
            rows.append({"method": method, "edits": 0, "cases": 0, "perplexity": baseline["perplexity"],
                         **({"known_share": 1.0} if baseline.get("known_share") is not None else {}),
                         # and no answer has moved yet, where the method's entries measure that
                         **({"known_logprob": 0.0} if any(r["method"] == method and "known_logprob" in r
                                                           for r in rows) else {}),
                         **({"weight_change": 0.0} if any(m == method for m, _ in change) else {})})
    return sorted(rows, key=lambda r: (methods.index(r["method"]), r["edits"]))


def weight_change_by_edits(batches: list[dict]) -> dict[tuple[str, int], float]:
    """(method, edits so far) -> the largest ‖W−W₀‖/‖W₀‖ over the matrices its stack has edited,
    from the batch records that carry it (runs before 2026-12-02 do not)."""
    change, edits = {}, {}
    for record in sorted(batches, key=lambda r: (r["method"], r["batch"])):
        method = record["method"]
        edits[method] = edits.get(method, 0) + record["edits"]
        if record.get("weight_change"):
            change[method, edits[method]] = max(record["weight_change"].values())
    return change


def curves_csv(rows: list[dict]) -> str:
    """The rows as CSV, the columns present in any of them (a `run` column for several runs)."""
    present = {k for row in rows for k in row}
    metrics = [c for m in (*CURVE_METRICS["counterfact"], *CURVE_METRICS["zsre"]) for c in (m, f"{m}_lo", f"{m}_hi")]
    measures = [c for m in PANEL_MEASURES for c in (m, f"{m}_lo", f"{m}_hi")]
    columns = [c for c in ("run", "method", "edits", "cases", *metrics, *measures) if c in present]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return buffer.getvalue()


def plot_curves(rows: list[dict], path: Path, title: str) -> None:
    """The figure people look at: each metric against the number of edits, one line per method
    (per run and method where the rows carry a `run`). The format follows the suffix."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    image_format = figure_format(path)
    metrics = [m for kind in CURVE_METRICS.values() for m in kind if any(m in r for r in rows)]
    panels = metrics + [m for m in PANEL_MEASURES if any(m in r for r in rows)]
    runs = list(dict.fromkeys(r.get("run") for r in rows))
    lines = list(dict.fromkeys((r.get("run"), r["method"]) for r in rows))
    # runs of one method (settings compared): a colour per run; otherwise a colour per method
    by_run = len(runs) > 1 and len({method for _, method in lines}) == 1

    def colour(run, method):
        return f"C{runs.index(run) % 10}" if by_run else method_color(method)
    # one legend beside the panels (inside one it hides a curve); every panel on the same edits axis.
    # More than four panels go on two rows: a single row of six is too wide for a page.
    columns = len(panels) if len(panels) <= 4 else math.ceil(len(panels) / 2)
    rows_of_panels = math.ceil(len(panels) / columns)
    fig, grid = plt.subplots(rows_of_panels, columns, figsize=(3.2 * columns + 1.6, 2.8 * rows_of_panels + 0.2),
                             squeeze=False, sharex=True, layout="constrained")
    axes = list(grid.flat)
    for ax in axes[len(panels):]:  # an odd number of panels leaves the last cell empty (for the legend)
        ax.set_visible(False)
    for index, (ax, name) in enumerate(zip(axes, panels)):
        for run, method in lines:
            points = [r for r in rows if r.get("run") == run and r["method"] == method and name in r]
            if not points:
                continue
            xs = [r["edits"] for r in points]
            label = method if run is None else f"{run}: {method}"
            ax.plot(xs, [r[name] for r in points], marker="o", markersize=3, label=label, color=colour(run, method),
                    linestyle=LINE_STYLES[runs.index(run) % len(LINE_STYLES)])
            banded = [r for r in points if f"{name}_lo" in r]  # a run's older entries may have no interval
            if banded:
                ax.fill_between([r["edits"] for r in banded], [r[f"{name}_lo"] for r in banded],
                                [r[f"{name}_hi"] for r in banded], color=colour(run, method), alpha=0.15, linewidth=0)
        ax.set_title(PANEL_TITLES.get(name, name), fontsize=9)
        if index + columns >= len(panels):  # the lowest panel of its column
            ax.set_xlabel("edits", fontsize=8)
            ax.xaxis.set_tick_params(labelbottom=True)  # sharex hides it above an empty cell
        ax.tick_params(labelsize=7)
        if name not in UNBOUNDED:
            ax.set_ylim(-0.02, 1.02)
        elif name == "perplexity" and _spans_decades(rows, name):
            ax.set_yscale("log")
            ax.set_title(f"{PANEL_TITLES[name]}, log scale", fontsize=9)
    axes[0].set_xlim(left=0)
    legend = {}  # every line once, from whichever panel has it (a zsRE run has no ES panel line)
    for ax in axes[: len(panels)]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    if len(axes) > len(panels):  # an empty cell holds the legend
        axes[-1].set_visible(True)
        axes[-1].axis("off")
        axes[-1].legend(list(legend.values()), list(legend), loc="center", fontsize=8)
    else:
        fig.legend(list(legend.values()), list(legend), loc="outside right upper", fontsize=7)
    fig.suptitle(title, fontsize=9)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=image_format, dpi=150)
    plt.close(fig)


def _spans_decades(rows: list[dict], name: str) -> bool:
    values = [r[name] for r in rows if isinstance(r.get(name), (int, float)) and r[name] > 0]
    return bool(values) and max(values) >= LOG_SCALE_RATIO * min(values)


def figure_format(path: Path) -> str:
    """The image format a figure's suffix names, or one clear error (before any work is done)."""
    suffix = Path(path).suffix.lower()
    if suffix not in FIGURE_FORMATS:
        raise FactpatchError(f"{path}: a figure is written as {', '.join(FIGURE_FORMATS)}, not {suffix or 'no suffix'!r}")
    return suffix[1:]


def run_title(description: dict) -> str:
    return f"{description['model']}: sequential edits, batches of {description['batch_size']}"


@dataclass(frozen=True)
class RunCurves:
    name: str  # the run's label on a figure of several
    description: dict  # its config.json
    rows: list[dict]  # curve_rows, each with "run": name
    cases: range | None = None  # the positions the means are over (None: every case edited so far)


def case_range(text: str) -> range:
    """"A-B": the cases at positions A to B of a run (both included), as `--cases` names them."""
    first, sep, last = text.partition("-")
    try:
        cases = range(int(first), int(last) + 1) if sep else range(int(first), int(first) + 1)
    except ValueError:
        cases = range(0)
    if not cases or cases.start < 0:
        raise FactpatchError(f"--cases takes A-B, the first and last position of the cases to draw (0-499), not {text!r}")
    return cases


def load_run_curves(out_dir: Path, name: str | None = None, methods: list[str] | None = None,
                    cases: range | None = None) -> RunCurves:
    """The curves of the sequential run in `out_dir` (its methods, or those of `methods` it has),
    read without writing: safe beside the run. With `cases`, the means are over the cases at those
    positions only — how a fixed set of edits holds as later batches land."""
    from .sequential import BATCHES, HEALTH, batch_store, case_store, health_store  # sequential draws its curves here

    out_dir = Path(out_dir)
    description = read_config(out_dir)
    if description.get("protocol") != "sequential":
        raise FactpatchError(f"{out_dir} holds a single-edit run: curves are drawn from sequential runs (eval --sequential)")
    chosen = list(description["methods"]) if methods is None else [m for m in methods if m in description["methods"]]
    if not chosen:
        raise FactpatchError(f"{out_dir} has none of the methods {', '.join(methods or [])} (it has "
                             f"{', '.join(description['methods'])})")
    records = case_store(out_dir / RESULTS).load(repair=False)
    if cases is not None:
        records = [r for r in records if r["index"] in cases]
    health = health_store(out_dir / HEALTH).load(repair=False)
    batches = batch_store(out_dir / BATCHES).load(repair=False)
    name = name or out_dir.name
    rows = [{"run": name, **row} for row in curve_rows(records, health, description["dataset"]["kind"], chosen, batches)]
    return RunCurves(name, description, rows, cases)


def plot_runs(runs: list[RunCurves], path: Path, csv_path: Path | None = None, title: str | None = None) -> Path:
    """Several runs' curves on one figure (and, with `csv_path`, their rows in one CSV)."""
    if not runs:
        raise FactpatchError("eval curves needs at least one result directory")
    names = [run.name for run in runs]
    if len(set(names)) < len(names):
        raise FactpatchError(f"two runs are named alike ({', '.join(names)}): name them with --names")
    rows = [row for run in runs for row in run.rows]
    if not any(row["edits"] > 0 for row in rows):
        raise FactpatchError(f"no checkpoint has been scored yet in {', '.join(names)}")
    if title is None:
        title = run_title(runs[0].description) if len(runs) == 1 else "sequential edits: " + ", ".join(names)
        if len({run.cases for run in runs}) == 1 and runs[0].cases is not None:
            title += f"; cases {runs[0].cases.start}–{runs[0].cases.stop - 1} only"
    # one run: its lines are named by method alone, as in the run's own curves.png
    plot_curves(rows if len(runs) > 1 else [{k: v for k, v in r.items() if k != "run"} for r in rows], path, title)
    if csv_path is not None:
        write_text_atomic(Path(csv_path), curves_csv(rows))
    return Path(path)
