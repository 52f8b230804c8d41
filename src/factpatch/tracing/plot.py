"""Figures for causal traces, in the paper's style (Meng et al. 2022, Figs 1–3).

* `plot_prompt` — one prompt: a heatmap per kind, tokens down, layers across, subject tokens
  marked with *, a colour bar of P(target) with the corrupted baseline marked on it.
* `plot_average` — many facts: the average indirect effect by token group and layer per kind,
  and the curves at the last subject token and the last token.
* `plot_sever` — the hidden-state effect at the last subject token with and without the later
  MLP (attention) outputs severed (Fig 3).

Figures are built with matplotlib's object API (no pyplot state, no display needed); `write_figure`
renders PNG and SVG in memory first, then writes both, so a failure leaves no partial files.
"""

from __future__ import annotations

import io
from pathlib import Path

from ..core.cache import atomic_path

CMAPS = {"hidden": "Purples", "mlp": "Greens", "attn": "Reds"}
COLOURS = {"hidden": "#6a51a3", "mlp": "#238b45", "attn": "#cb181d"}
TITLES = {"hidden": "hidden states", "mlp": "MLP outputs", "attn": "attention outputs"}
FONT = 7.5


def _style(name: str) -> tuple[str, str, str]:
    """(colour map, line colour, title) of a trace name, e.g. `hidden_sever_mlp`."""
    if name.startswith("hidden_sever_"):
        cut = name.removeprefix("hidden_sever_")
        return "Blues" if cut == "mlp" else "Oranges", COLOURS[cut], f"hidden, {TITLES[cut].split()[0]} severed"
    return CMAPS[name], COLOURS[name], TITLES[name]


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=200)
    fig.set_layout_engine("constrained")
    return fig


def _token_label(token: str) -> str:
    shown = token.replace("\n", "\\n").replace("\t", "\\t")
    return shown if shown.strip() else repr(token)


def _layer_ticks(n_layers: int) -> list[int]:
    step = 5 if n_layers > 12 else 2 if n_layers > 6 else 1
    return list(range(0, n_layers, step))


def plot_prompt(trace: dict):
    """The heatmaps of one prompt's trace (the dict `PromptTrace.to_json` returns)."""
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    names = list(trace["kinds"])
    tokens = trace["tokens"]
    start, end = trace["subject_range"]
    labels = [_token_label(t) + (" *" if start <= i < end else "") for i, t in enumerate(tokens)]
    n_layers = int(trace["layers"])
    fig = _figure(2.35 * len(names) + 0.6, 0.2 * len(tokens) + 1.9)
    axes = fig.subplots(1, len(names), sharey=True, squeeze=False)[0]
    baseline = trace["p_corrupted"]
    for ax, name in zip(axes, names):
        grid = np.asarray([[np.nan] * n_layers if row is None else row for row in trace["kinds"][name]["scores"]],
                          dtype=float)
        cmap, _, title = _style(name)
        window = trace["kinds"][name].get("window", 1)
        low = min(baseline, float(np.nanmin(grid)))
        high = max(float(np.nanmax(grid)), low + 1e-9)
        image = ax.imshow(grid, aspect="auto", cmap=cmap, vmin=low, vmax=high, interpolation="nearest")
        ax.set_title(f"{title}" + (f" (window {window})" if window > 1 else ""), fontsize=FONT + 0.5)
        ax.set_xticks(_layer_ticks(n_layers))
        ax.set_xlabel("layer" + (" (window centre)" if window > 1 else ""), fontsize=FONT)
        ax.set_yticks(range(len(tokens)))
        ax.set_yticklabels(labels, fontsize=FONT)
        ax.tick_params(labelsize=FONT, length=2)
        bar = fig.colorbar(image, ax=ax, orientation="horizontal", fraction=0.06, pad=0.02, aspect=30)
        bar.set_label("P(" + repr(trace["target"]) + ")", fontsize=FONT)
        bar.ax.xaxis.set_major_locator(MaxNLocator(4))
        bar.ax.tick_params(labelsize=FONT - 1, length=2)
        bar.ax.axvline(baseline, color="black", linewidth=1.0)
        bar.ax.text(baseline, 1.15, "corrupted", transform=bar.ax.get_xaxis_transform(),
                    ha="left" if baseline <= (low + high) / 2 else "right", va="bottom", fontsize=FONT - 1.5)
    fig.suptitle(
        f"{trace.get('model', '')}  “{trace['prompt']}” → {trace['target']!r}   "
        f"P clean {trace['p_clean']:.3g}, corrupted {baseline:.3g}   "
        f"(noise {trace['noise']:g}σ, {trace['samples']} samples; * subject)",
        fontsize=FONT,
    )
    return fig


def plot_average(summary: dict):
    """Average indirect effect by token group (rows) and layer (columns) per kind, plus the
    curves at the last subject token and the last token."""
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    names = [n for n in ("hidden", "mlp", "attn") if n in summary["kinds"]]
    groups = summary["groups"]
    labels = [g + (" *" if "subject token" in g else "") for g in groups]
    n_layers = summary["layers"]
    fig = _figure(2.45 * (len(names) + 1) + 1.6, 2.6)
    axes = fig.subplots(1, len(names) + 1, squeeze=False)[0]
    for ax, name in zip(axes, names):
        ie = np.asarray(summary["kinds"][name]["ie"], dtype=float)
        cmap, _, title = _style(name)
        # the scale starts at 0 (no effect); negative effects are drawn as 0, the bar's arrow says so
        image = ax.imshow(ie, aspect="auto", cmap=cmap, vmin=0.0, vmax=max(float(ie.max()), 1e-9),
                          interpolation="nearest")
        ax.set_title(title, fontsize=FONT + 0.5)
        ax.set_xticks(_layer_ticks(n_layers))
        ax.set_xlabel("layer", fontsize=FONT)
        ax.set_yticks(range(len(groups)))
        ax.set_yticklabels(labels if ax is axes[0] else [], fontsize=FONT)
        ax.tick_params(labelsize=FONT, length=2)
        bar = fig.colorbar(image, ax=ax, orientation="horizontal", fraction=0.08, pad=0.02, aspect=30,
                           extend="min" if float(ie.min()) < 0 else "neither")
        bar.set_label("average indirect effect on P(o)", fontsize=FONT)
        bar.ax.xaxis.set_major_locator(MaxNLocator(4))
        bar.ax.tick_params(labelsize=FONT - 1, length=2)
    ax = axes[-1]
    for name in names:
        _, colour, title = _style(name)
        kind = summary["kinds"][name]
        ax.plot(kind["ie"][groups.index("last subject token")], color=colour, linewidth=1.2, label=title)
        ax.plot(kind["ie"][groups.index("last token")], color=colour, linewidth=1.0, linestyle="--")
    ax.plot([], [], color="black", linewidth=1.2, label="last subject token")
    ax.plot([], [], color="black", linewidth=1.0, linestyle="--", label="last token")
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.set_xticks(_layer_ticks(n_layers))
    ax.set_xlabel("layer", fontsize=FONT)
    ax.set_ylabel("average indirect effect", fontsize=FONT)
    ax.tick_params(labelsize=FONT, length=2)
    ax.legend(fontsize=FONT - 2, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(
        f"{summary.get('model', '')}: average over {summary['facts']} known facts   "
        f"P clean {summary['p_clean']:.3g}, corrupted {summary['p_corrupted']:.3g}, "
        f"total effect {summary['total_effect']:.3g}",
        fontsize=FONT,
    )
    return fig


def plot_sever(summary: dict):
    """Fig 3: the indirect effect of restoring the hidden state at the last subject token, per layer,
    as it is and with the later MLP or attention outputs at that token severed."""
    import numpy as np

    names = [n for n in ("hidden", "hidden_sever_mlp", "hidden_sever_attn") if n in summary["kinds"]]
    g = summary["groups"].index("last subject token")
    n_layers = summary["layers"]
    fig = _figure(5.2, 2.2)
    ax = fig.subplots()
    width = 0.8 / max(1, len(names))
    for k, name in enumerate(names):
        _, colour, title = _style(name)
        ie = np.asarray(summary["kinds"][name]["ie"][g], dtype=float)
        ax.bar(np.arange(n_layers) + (k - (len(names) - 1) / 2) * width, ie, width=width,
               color=colour if name == "hidden" else "none", edgecolor=colour, linewidth=0.8,
               hatch=None if name == "hidden" else ("///" if name.endswith("mlp") else "..."), label=title)
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.set_xticks(_layer_ticks(n_layers))
    ax.set_xlabel("layer of the restored hidden state", fontsize=FONT)
    ax.set_ylabel("average indirect effect", fontsize=FONT)
    ax.tick_params(labelsize=FONT, length=2)
    ax.legend(fontsize=FONT - 1, frameon=False)
    ax.set_title(
        f"{summary.get('model', '')}: last subject token, {summary['facts']} facts", fontsize=FONT + 0.5
    )
    return fig


def render_figure(fig) -> dict[str, bytes]:
    """The figure as PNG and SVG bytes (SVG without a date, so reruns give identical files)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    rendered = {}
    for fmt in ("png", "svg"):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, metadata={"Date": None} if fmt == "svg" else None)
        rendered[fmt] = buffer.getvalue()
    return rendered


def write_bytes(path: Path, data: bytes) -> Path:
    """Write a file atomically (core.cache.atomic_path: readable as any new file would be)."""
    with atomic_path(Path(path)) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_figure(fig, stem: Path) -> list[Path]:
    """Write `stem`.png and `stem`.svg (both rendered before either is written)."""
    return [write_bytes(Path(stem).with_suffix(f".{fmt}"), data) for fmt, data in render_figure(fig).items()]
