"""Analyse a study: rank distributions (the paper's Fig. 26), pairwise preferences with
bootstrap intervals, inter-rater agreement, and the files that record them.

`analyze_study(db, out)` writes to `out`:

- `ranks.png`: for each criterion, how often each method was ranked 1st, 2nd, 3rd...
- `report.md`: the same numbers in words, ready to paste into notes.
- `summary.json`: every number, for scripts.
- `pairwise.csv`: one row per criterion and pair of methods.
- `rankings.csv`: every rank every rater gave (the admin page's export).
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from matplotlib.figure import (
    Figure,  # no pyplot: no global figure state, no GUI backend
)

from factpatch.core.cache import atomic_path, write_text_atomic
from factpatch.core.errors import FactpatchError
from factpatch.study import db
from factpatch.study.export import write_rankings_csv
from factpatch.study.ranking import CRITERIA_INFO, ordinal
from factpatch.study.stats import (
    MIN_SCENARIOS_FOR_INTERVAL,
    Concordance,
    Judgement,
    Preference,
    alpha_of_judgements,
    mean_kendalls_w,
    mean_ranks,
    pairwise_preferences,
    rank_counts,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CriterionResult:
    criterion: str
    title: str
    judgements: int
    rank_counts: dict[str, list[int]]  # method -> [times 1st, times 2nd, ...]
    mean_rank: dict[str, float]
    preferences: list[Preference]
    kendalls_w: Concordance  # mean over scenarios with two or more raters, and its chance level
    krippendorff_alpha: float | None  # ordinal, one unit per (scenario, method)


@dataclass(frozen=True)
class StudyAnalysis:
    title: str
    methods: tuple[str, ...]
    raters_answering: int
    raters_total: int
    answers: int
    scenarios_answered: int
    scenarios_total: int
    bootstrap: int
    criteria: list[CriterionResult]


def judgements_by_criterion(rows: Sequence[db.RankingRow]) -> dict[str, list[Judgement]]:
    grouped: dict[tuple[str, int, int], dict[str, int]] = defaultdict(dict)
    scenario_of: dict[tuple[int, int], int] = {}
    for r in rows:
        grouped[(r.criterion, r.rater, r.position)][r.method] = r.rank
        scenario_of[(r.rater, r.position)] = r.scenario
    out: dict[str, list[Judgement]] = {c.key: [] for c in CRITERIA_INFO}
    for (criterion, rater, position), ranks in grouped.items():
        out[criterion].append(Judgement(rater, scenario_of[(rater, position)], ranks))
    return out


def analyze_rows(
    rows: Sequence[db.RankingRow], info: db.StudyInfo, *, n_boot: int = 2000, seed: int = 0
) -> StudyAnalysis:
    if not rows:
        raise FactpatchError("the study has no answers yet; nothing to analyse")
    by_criterion = judgements_by_criterion(rows)
    results = []
    for c in CRITERIA_INFO:
        js = by_criterion[c.key]
        results.append(
            CriterionResult(
                criterion=c.key,
                title=c.title,
                judgements=len(js),
                rank_counts=rank_counts(js, info.methods),
                mean_rank=mean_ranks(js, info.methods),
                preferences=pairwise_preferences(js, info.methods, n_boot=n_boot, seed=seed),
                kendalls_w=mean_kendalls_w(js),
                krippendorff_alpha=alpha_of_judgements(js),
            )
        )
    return StudyAnalysis(
        title=info.title,
        methods=info.methods,
        raters_answering=len({r.rater for r in rows}),
        raters_total=info.n_raters,
        answers=len({(r.rater, r.position) for r in rows}),
        scenarios_answered=len({r.scenario for r in rows}),
        scenarios_total=info.n_scenarios,
        bootstrap=n_boot,
        criteria=results,
    )


def analyze_study(db_path: Path, out_dir: Path, *, n_boot: int = 2000, seed: int = 0) -> StudyAnalysis:
    """Read every answer in the study at `db_path` and write the analysis files to `out_dir`."""
    if n_boot < 1:
        raise FactpatchError(f"--bootstrap must be at least 1, got {n_boot}")
    conn = db.connect(db_path)
    try:
        info = db.study_info(conn)
        rows = db.ranking_rows(conn)
    finally:
        conn.close()
    analysis = analyze_rows(rows, info, n_boot=n_boot, seed=seed)
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FactpatchError(f"cannot create {out_dir}: {exc.strerror or exc}") from exc
    # Each file whole or not at all: a killed analysis leaves the previous files, never half of one.
    with atomic_path(out_dir / "rankings.csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        write_rankings_csv(rows, f)
    write_pairwise_csv(analysis, out_dir / "pairwise.csv")
    write_text_atomic(out_dir / "summary.json", json.dumps(jsonable(asdict(analysis)), indent=2) + "\n")
    write_text_atomic(out_dir / "report.md", report(analysis))
    with atomic_path(out_dir / "ranks.png") as tmp:
        plot_ranks(analysis, tmp)
    logger.info("analysed %d answers into %s", analysis.answers, out_dir)
    return analysis


def jsonable(value: object) -> object:
    """JSON has no inf or NaN: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def number(x: float | None) -> str:
    """A CSV cell: four decimals, or empty for a value that does not exist (no interval, or a
    ratio whose method never lost); never "inf" or "nan", which spreadsheets read as text."""
    return f"{x:.4f}" if x is not None and math.isfinite(x) else ""


def write_pairwise_csv(analysis: StudyAnalysis, path: Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["criterion", "method", "other", "comparisons", "scenarios", "ranked_above", "share", "share_lo",
                    "share_hi", "ratio", "ratio_lo", "ratio_hi"])
        for c in analysis.criteria:
            for p in c.preferences:
                share_ci = p.share_ci or (None, None)
                ratio_ci = p.ratio_ci or (None, None)
                w.writerow([c.criterion, p.better, p.worse, p.comparisons, p.scenarios, p.wins, number(p.share),
                            number(share_ci[0]), number(share_ci[1]), number(p.ratio),
                            number(ratio_ci[0]), number(ratio_ci[1])])


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def preference_sentence(p: Preference, criterion: str) -> str:
    """"rome ranked above ft+l for consistency in 64.0 % of 150 comparisons (...), 1.78× as often"."""
    head = f"{p.better} ranked above {p.worse} for {criterion} in {100 * p.share:.1f} % of {plural(p.comparisons, 'comparison')}"
    reverse = "never the reverse" if p.losses == 0 else f"{p.ratio:.2f}× as often as the reverse"
    if p.share_ci is None or p.ratio_ci is None:
        return (
            f"{head}, {reverse}; no interval: compared on {plural(p.scenarios, 'scenario')}, "
            f"at least {MIN_SCENARIOS_FOR_INTERVAL} needed"
        )
    interval = f"95 % CI {100 * p.share_ci[0]:.1f}–{100 * p.share_ci[1]:.1f} %"
    lo, hi = p.ratio_ci
    if math.isinf(lo):  # every resample never lost either: there is no ratio to bound
        ratio_interval = ""
    elif math.isinf(hi):
        ratio_interval = f" (ratio at least {lo:.2f}×)"
    else:
        ratio_interval = f" ({lo:.2f}×–{hi:.2f}×)"
    return f"{head} ({interval}), {reverse}{ratio_interval}"


def agreement_sentence(c: CriterionResult) -> str:
    k = c.kendalls_w
    w = (
        f"Kendall's W {k.mean_w:.2f} (mean over {k.scenarios} scenarios ranked by two or more raters; "
        f"{k.chance:.2f} expected by chance)"
        if k.mean_w is not None
        else "Kendall's W n/a (no scenario has two raters yet)"
    )
    a = "n/a" if c.krippendorff_alpha is None else f"{c.krippendorff_alpha:.2f} (0 = chance, 1 = full agreement)"
    return f"Agreement: {w}; Krippendorff's α (ordinal) {a}."


def report(analysis: StudyAnalysis) -> str:
    lines = [
        f"# {analysis.title}: analysis",
        "",
        (
            f"{plural(analysis.answers, 'answer')} from {analysis.raters_answering} of {analysis.raters_total} "
            f"raters, covering {analysis.scenarios_answered} of {analysis.scenarios_total} scenarios. "
            f"Intervals: 95 % bootstrap percentiles over scenarios ({analysis.bootstrap} resamples); "
            f"a pair compared on fewer than {MIN_SCENARIOS_FOR_INTERVAL} scenarios gets none."
        ),
    ]
    for c in analysis.criteria:
        depth = max((len(v) for v in c.rank_counts.values()), default=0)
        header = " | ".join(ordinal(k + 1) for k in range(depth))
        lines += ["", f"## {c.title}", "", f"| method | {header} | mean rank |"]
        lines.append("|---" * (depth + 2) + "|")
        for method, counts in c.rank_counts.items():
            total = sum(counts) or 1
            cells = " | ".join(f"{100 * n / total:.0f} % ({n})" for n in counts)
            lines.append(f"| {method} | {cells} | {c.mean_rank[method]:.2f} |")
        lines.append("")
        lines += [f"- {preference_sentence(p, c.criterion)}." for p in c.preferences]
        lines += ["", agreement_sentence(c)]
    return "\n".join(lines) + "\n"


def plot_ranks(analysis: StudyAnalysis, path: Path) -> None:
    """One panel per criterion; a bar per method split by how often it came 1st, 2nd, 3rd..."""
    depth = max((len(v) for c in analysis.criteria for v in c.rank_counts.values()), default=1)
    colors = ["#1b4f8a", "#5d93cf", "#b9d3ee", "#dde9f6", "#eef4fb"]
    methods = list(analysis.methods)
    fig = Figure(figsize=(9.0, 1.2 + 0.55 * len(methods)), layout="constrained")
    axes = fig.subplots(1, len(analysis.criteria), sharey=True)
    for ax, c in zip(axes, analysis.criteria):
        for y, method in enumerate(reversed(methods)):
            counts = c.rank_counts[method]
            total = sum(counts) or 1
            left = 0.0
            for k, n in enumerate(counts):
                share = 100.0 * n / total
                color = colors[min(k, len(colors) - 1)]
                ax.barh(y, share, left=left, color=color, edgecolor="white", label=ordinal(k + 1) if y == 0 else None)
                if share >= 7:
                    ax.text(left + share / 2, y, f"{share:.0f}%", ha="center", va="center", fontsize=8,
                            color="white" if k == 0 else "#1a1a1a")
                left += share
        ax.set_yticks(range(len(methods)), list(reversed(methods)))
        ax.set_xlim(0, 100)
        ax.set_xticks([0, 25, 50, 75, 100])
        ax.set_xlabel("share of rankings (%)")
        ax.set_title(f"{c.title} (n={c.judgements})", fontsize=10)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, [f"ranked {lab}" for lab in labels], loc="outside lower center", ncol=depth, frameon=False)
    fig.suptitle(analysis.title, fontsize=11)
    fig.savefig(path, dpi=150, format="png")  # by name, not by suffix: `path` may be a temporary file
