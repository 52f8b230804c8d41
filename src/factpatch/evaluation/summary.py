"""What a run's records add up to: bootstrap summaries per method, the paired comparison with the
unedited model, and the tables, CSV and figure written beside the records.

Summaries are computed from the records alone, cases in data-set order with a fixed bootstrap
seed, so a resumed run ends with the same summary as an uninterrupted one.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from ..core.cache import write_text_atomic
from ..editing.registry import METHODS
from .generation import GenerationSettings
from .metrics import bootstrap, bootstrap_mean, harmonic_mean

# Metric names per data-set kind, in the paper's table order.
COUNTERFACT_METRICS = ("S", "ES", "EM", "PS", "PM", "NS", "NM", "fluency", "consistency")
ZSRE_METRICS = ("efficacy", "paraphrase", "specificity")
METRIC_LABELS = {
    "S": "Score S", "ES": "Efficacy ES", "PS": "Paraphrase PS", "NS": "Neighborhood NS",
    "EM": "EM", "PM": "PM", "NM": "NM", "fluency": "Fluency GE", "consistency": "Consistency RS",
    "efficacy": "Efficacy", "paraphrase": "Paraphrase", "specificity": "Specificity",
}
# Paper reference rows (GPT-2 XL, ×100) for the tables; "~" marks values method.md calls approximate.
PAPER_GPT2XL = {
    "counterfact": {
        # fluency ~626 and consistency 31.9 are the *unedited* GPT-2 XL's (method.md); ROME's row has
        # no fluency figure in method.md, so none is shown for it
        "none": {"S": "30.5", "fluency": "~626", "consistency": "31.9"},
        "ft+l": {"ES": "~99", "PS": "~49", "NS": "~70"},
        "rome": {"S": "89.2", "ES": "100.0", "PS": "96.4", "NS": "75.4", "consistency": "41.9"},
    },
    "zsre": {
        "none": {"efficacy": "22.2", "paraphrase": "21.3", "specificity": "24.2"},
        "ft": {"efficacy": "99.6", "paraphrase": "82.1", "specificity": "23.2"},
        "ft+l": {"efficacy": "92.3", "paraphrase": "47.2", "specificity": "23.4"},
        "rome": {"efficacy": "99.8", "paraphrase": "88.1", "specificity": "24.2"},
    },
}


def metric_names(kind: str) -> tuple[str, ...]:
    return COUNTERFACT_METRICS if kind == "counterfact" else ZSRE_METRICS


def summarize(records: list[dict], kind: str, methods: list[str], n_boot: int = 1000, seed: int = 0) -> dict:
    """{method: {metric: {"mean", "ci": [lo, hi], "n"}}} with percentile-bootstrap 95 % intervals.

    Records are taken in data-set order (their `index`) so the result does not depend on the
    order they were written in. S is the harmonic mean of the ES, PS and NS means, bootstrapped
    jointly over the cases that have all three.
    """
    summary: dict[str, dict] = {}
    for method in methods:
        rows = sorted((r for r in records if r["method"] == method), key=lambda r: (r["index"], r["case_id"]))
        if not rows:
            continue
        out: dict[str, dict] = {}
        for name in metric_names(kind):
            if name == "S":
                full = [r["metrics"] for r in rows if all(k in r["metrics"] for k in ("ES", "PS", "NS"))]
                if full:
                    columns = [[m[k] for m in full] for k in ("ES", "PS", "NS")]
                    out["S"] = bootstrap(columns, lambda *means: harmonic_mean(means), n_boot, seed).to_dict()
                continue
            values = [r["metrics"][name] for r in rows if name in r["metrics"]]
            if values:
                out[name] = bootstrap_mean(values, n_boot, seed).to_dict()
        summary[method] = out
    return summary


# Damage is judged against the unedited model on the same cases (issue 12: NS within 10 points of
# the unedited model's, generation entropy within 5 %). Two separate intervals say little about
# that; the comparison is paired: the cases both were scored on are resampled together.
# metric -> how the method's mean is set against the unedited model's
AGAINST_UNEDITED = {
    "counterfact": {"NS": "difference", "fluency": "relative"},
    "zsre": {"specificity": "difference"},
}


def against_unedited(records: list[dict], kind: str, methods: list[str], baseline: str = "none",
                     n_boot: int = 1000, seed: int = 0) -> dict:
    """{method: {metric: {"mean", "ci", "n", "as"}}}: each method's mean minus the baseline's
    ("difference") or its mean over the baseline's, minus 1 ("relative"), over the cases both
    have the metric for, with a paired percentile-bootstrap 95 % interval. {} without the baseline."""
    by_method: dict[str, dict[str, dict]] = {}
    for r in records:
        by_method.setdefault(r["method"], {})[r["case_id"]] = r["metrics"]
    base = by_method.get(baseline)
    if not base:
        return {}
    statistics_of = {"difference": lambda m, b: m - b, "relative": lambda m, b: m / b - 1.0}
    out: dict[str, dict] = {}
    for method in methods:
        if method == baseline or method not in by_method:
            continue
        rows = {}
        for name, how in AGAINST_UNEDITED[kind].items():
            ids = sorted(i for i, m in by_method[method].items() if name in m and name in base.get(i, {}))
            if not ids:
                continue
            columns = [[by_method[method][i][name] for i in ids], [base[i][name] for i in ids]]
            rows[name] = {**bootstrap(columns, statistics_of[how], n_boot, seed).to_dict(), "as": how}
        if rows:
            out[method] = rows
    return out


def against_unedited_lines(comparison: dict, baseline: str = "none") -> list[str]:
    """Markdown lines for summary.md: differences in points (×100), relative changes in %."""
    if not comparison:
        return []
    lines = [f"Against the unedited model (`{baseline}`) on the same cases, paired 95 % intervals:", ""]
    for method, rows in comparison.items():
        parts = []
        for name, e in rows.items():
            lo, hi = e["ci"]
            unit = " points" if e["as"] == "difference" else " %"
            parts.append(f"{METRIC_LABELS[name]} {100 * e['mean']:+.1f}{unit} ({100 * lo:+.1f} to {100 * hi:+.1f}; "
                         f"{e['n']} cases)")
        lines.append(f"- {method}: " + "; ".join(parts))
    return lines


def cases_of(metrics: dict) -> int:
    """The n of a method's row: the most cases behind any of its metrics."""
    return max((m["n"] for m in metrics.values()), default=0)


SCALE = {"fluency": 100.0, "consistency": 100.0}  # the paper's tables: everything ×100


def _fmt(estimate: dict | None, name: str, decimals: int = 1) -> str:
    if not estimate:
        return "–"
    k = SCALE.get(name, 100.0)
    lo, hi = (f"{bound * k:.{decimals}f}" for bound in estimate["ci"])
    # An en dash between two negative bounds reads as a minus ("-2.6–-1.9"): spell the range out.
    between = " to " if lo.startswith("-") or hi.startswith("-") else "–"
    return f"{estimate['mean'] * k:.{decimals}f} ({lo}{between}{hi})"


def summary_table(summary: dict, kind: str, paper: bool = False) -> str:
    """Markdown table in the paper's layout (values ×100, 95 % interval in brackets)."""
    names = [n for n in metric_names(kind) if any(n in s for s in summary.values())]
    header = "| Method | n | " + " | ".join(METRIC_LABELS[n] for n in names) + " |"
    lines = [header, "|" + "---|" * (len(names) + 2)]
    for method, metrics in summary.items():
        n = cases_of(metrics)
        lines.append(f"| {method} | {n} | " + " | ".join(_fmt(metrics.get(name), name) for name in names) + " |")
    if paper:
        for method, values in PAPER_GPT2XL[kind].items():
            lines.append(f"| {method} (paper, GPT-2 XL) | | " + " | ".join(values.get(n, "") for n in names) + " |")
    return "\n".join(lines)


def summary_csv(summary: dict, kind: str) -> str:
    names = metric_names(kind)
    columns = ["method", "n"] + [f"{n}{s}" for n in names for s in ("", "_lo", "_hi")]
    lines = [",".join(columns)]
    for method, metrics in summary.items():
        n = cases_of(metrics)
        cells = [method, str(n)]
        for name in names:
            e = metrics.get(name)
            k = SCALE.get(name, 100.0)
            cells += [f"{e['mean'] * k:.4f}", f"{e['ci'][0] * k:.4f}", f"{e['ci'][1] * k:.4f}"] if e else ["", "", ""]
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


def method_color(method: str) -> str:
    """One colour per method in every figure (its place in the registry; the unedited model grey), so
    two runs' figures can be read side by side."""
    if method == "none":
        return "tab:gray"
    names = [m for m in METHODS if m != "none"]
    return f"C{names.index(method) % 10}" if method in names else "black"


def plot_summary(summary: dict, kind: str, path: Path, title: str) -> None:
    """Grouped bars with 95 % interval whiskers: the headline scores of each method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in (("S", "ES", "PS", "NS") if kind == "counterfact" else ZSRE_METRICS)
             if any(n in s for s in summary.values())]
    methods = list(summary)
    width = 0.8 / max(len(methods), 1)
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(names) * max(1, len(methods)) / 2.5, 3.6))
    for i, method in enumerate(methods):
        xs, ys, err = [], [], [[], []]
        for j, name in enumerate(names):
            e = summary[method].get(name)
            if not e:
                continue
            xs.append(j + (i - (len(methods) - 1) / 2) * width)
            ys.append(100 * e["mean"])
            err[0].append(100 * (e["mean"] - e["ci"][0]))
            err[1].append(100 * (e["ci"][1] - e["mean"]))
        n = cases_of(summary[method])
        ax.bar(xs, ys, width, yerr=err, capsize=2, label=f"{method} (n={n})", color=method_color(method))
    ax.set_xticks(range(len(names)), [METRIC_LABELS[n] for n in names])
    ax.set_ylim(0, 105)
    ax.set_ylabel("score (×100), 95 % CI")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, ncols=min(len(methods), 5), loc="lower center", bbox_to_anchor=(0.5, 1.08), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_summaries(out_dir: Path, records: list[dict], description: dict) -> dict:
    kind = description["dataset"]["kind"]
    summary = summarize(records, kind, list(description["methods"]))
    out_dir = Path(out_dir)
    write_text_atomic(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    dataset = description["dataset"]
    n_cases = len({r["case_id"] for r in records})
    title = f"{description['model']} on {dataset['name']} ({n_cases} cases)"
    notes = [
        f"# factpatch eval: {title}",
        "",
        "Scores ×100 as in the paper (fluency: generation entropy ×100; consistency: TF-IDF cosine ×100); "
        "brackets: percentile-bootstrap 95 % interval over cases.",
        "",
        summary_table(summary, kind),
        "",
    ]
    generation_note = describe_generation(records, description.get("generation"))
    if generation_note:
        notes += [generation_note, ""]
    comparison = against_unedited_lines(against_unedited(records, kind, list(description["methods"])))
    if comparison:
        notes += [*comparison, ""]
    write_text_atomic(out_dir / "summary.md", "\n".join(notes))
    write_text_atomic(out_dir / "summary.csv", summary_csv(summary, kind))
    if summary:
        short = f"{description['model']} on {Path(dataset['name'].split(':', 1)[-1]).name}"
        plot_summary(summary, kind, out_dir / "summary.png", short)
    return summary


def describe_generation(records: list[dict], settings: dict | None) -> str | None:
    """One line for summary.md: how the texts behind fluency and consistency were sampled, and from
    which prompts (the data set's own generation prompts, or derived ones: data.py)."""
    with_texts = [r for r in records if "texts" in r]
    if not with_texts:
        return None
    sources: dict[str, set] = {}
    for r in with_texts:
        source = r.get("generation", {}).get("source", "unrecorded")
        sources.setdefault(source, set()).add(r["case_id"])
    counts = ", ".join(f"{len(ids)} cases with {name} prompts" for name, ids in sorted(sources.items()))
    how = GenerationSettings(**{k: v for k, v in settings.items() if k in GenerationSettings.__dataclass_fields__}).describe() if settings else "settings not recorded"
    derived = " (derived: the paraphrases and \"{subject} is\")" if "derived" in sources else ""
    return f"Generation: {how}; {counts}{derived}; each record lists its prompts."


def write_timing(out_dir: Path, records: list[dict]) -> dict:
    """Per-method seconds (not part of the summary: timings differ from run to run)."""
    timing = {}
    for method in dict.fromkeys(r["method"] for r in records):
        rows = [r for r in records if r["method"] == method]
        total = [r["edit_seconds"] + r["eval_seconds"] for r in rows]
        timing[method] = {
            "n": len(rows),
            "edit_seconds_median": statistics.median(r["edit_seconds"] for r in rows),
            "eval_seconds_median": statistics.median(r["eval_seconds"] for r in rows),
            "cases_per_minute": 60 * len(rows) / sum(total) if sum(total) else None,
        }
    write_text_atomic(Path(out_dir) / "timing.json", json.dumps(timing, indent=2) + "\n")
    return timing
