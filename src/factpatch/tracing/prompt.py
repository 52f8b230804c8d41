"""One prompt traced: the three heatmaps' numbers (`trace_prompt`), written as JSON and figures."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..core.models import LoadedModel, in_precision
from .engine import prepare, restored_probs
from .schedule import Restore
from .settings import Progress, TraceSettings, embedding_std

logger = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- one prompt


@dataclass
class PromptTrace:
    """The causal trace of one prompt. `scores[name][token][layer]` = P(target) with that state
    restored (mean over samples); tokens before the subject are never corrupted, so their rows
    equal `p_corrupted`; the rows of tokens not traced (see `TraceSettings.sever_tokens`) are None."""

    prompt: str
    subject: str
    target: str
    target_token: str
    target_is_top: bool
    tokens: list[str]
    subject_range: tuple[int, int]
    p_clean: float
    p_corrupted: float
    sigma: float
    settings: TraceSettings
    scores: dict[str, list[list[float] | None]]
    n_layers: int
    model: str = ""

    def to_json(self) -> dict:
        noise = self.settings.noise
        return {
            "model": self.model,
            "prompt": self.prompt,
            "subject": self.subject,
            "target": self.target,
            "target_token": self.target_token,
            "target_is_top": self.target_is_top,
            "tokens": self.tokens,
            "subject_range": list(self.subject_range),
            "p_clean": self.p_clean,
            "p_corrupted": self.p_corrupted,
            "noise": noise.scale,
            "sigma": self.sigma,
            "samples": noise.samples,
            "seed": noise.seed,
            "window": self.settings.window,
            "dtype": self.settings.dtype,
            "layers": self.n_layers,
            "kinds": {
                name: {"scores": grid, "window": self.settings.window if name in ("mlp", "attn") else 1}
                for name, grid in self.scores.items()
            },
        }


def _restores_for(name: str, layers: int, tokens: Iterable[int]) -> list[Restore]:
    if name.startswith("hidden_sever_"):
        return [Restore("hidden", l, (i,), name.removeprefix("hidden_sever_")) for i in tokens for l in range(layers)]
    return [Restore(name, l, (i,)) for i in tokens for l in range(layers)]


def trace_prompt(
    lm: LoadedModel,
    prompt: str,
    subject: str,
    target: str | None = None,
    settings: TraceSettings = TraceSettings(),
    sigma: float | None = None,
    cache_dir: Path | None = None,
    progress: Progress = True,
    suffix: bool = True,
) -> PromptTrace:
    """Trace one fact. Without `target`, the model's own top next token is traced; a target the
    model does not rank first is traced anyway, with a warning. `sigma` defaults to
    `embedding_std(lm)` (computed once per model, then cached)."""
    if sigma is None:
        sigma = embedding_std(lm, cache_dir=cache_dir, progress=bool(progress))
    lm = in_precision(lm, settings.dtype)  # every pass in the chosen precision (σ stays float32)
    prep = prepare(lm, prompt, subject, target, sigma, settings.noise, settings.window)
    decode = lm.tokenizer.decode
    if prep.target_id != prep.clean_top_id:
        logger.warning(
            "the model does not predict %r after %r (its top token is %r, P = %.3g vs %.3g): tracing it anyway",
            decode([prep.target_id]), prompt, decode([prep.clean_top_id]), prep.p_clean,
            prep.p_top,
        )
    L, T = lm.n_layers, prep.n_tokens
    first = prep.subject_range[0]
    traced = range(first, T)  # tokens before the subject are identical in both runs
    restores, spans = [], {}
    for name in settings.trace_names:
        tokens = traced
        if name.startswith("hidden_sever_") and settings.sever_tokens == "last subject":
            tokens = range(prep.subject_range[1] - 1, prep.subject_range[1])
        batch = _restores_for(name, L, tokens)
        spans[name] = (len(restores), len(restores) + len(batch), tokens)
        restores += batch
    probs = restored_probs(lm, prep, restores, suffix=suffix, progress=progress).mean(dim=1)
    scores = {}
    for name, (lo, hi, tokens) in spans.items():
        rows = dict(zip(tokens, probs[lo:hi].view(len(tokens), L).tolist()))
        # never-corrupted tokens before the subject: P*; tokens not traced: None
        scores[name] = [rows.get(i, [prep.p_corrupted] * L if i < first else None) for i in range(T)]
    target_text = target if target is not None else decode([prep.target_id]).strip() or decode([prep.target_id])
    return PromptTrace(
        prompt=prompt,
        subject=subject,
        target=target_text,
        target_token=decode([prep.target_id]),
        target_is_top=prep.target_id == prep.clean_top_id,
        tokens=[decode([t]) for t in prep.input_ids[0].tolist()],
        subject_range=prep.subject_range,
        p_clean=prep.p_clean,
        p_corrupted=prep.p_corrupted,
        sigma=sigma,
        settings=settings,
        scores=scores,
        n_layers=L,
        model=lm.name,
    )



def save_trace(trace: PromptTrace, out_dir: Path, plots: bool = True) -> list[Path]:
    """Write `trace.json`, `trace.png` and `trace.svg` into `out_dir`. Everything is rendered
    before anything is written, and each file is written atomically."""
    out_dir = Path(out_dir)
    data = trace.to_json()
    files = {"trace.json": (json.dumps(data, indent=1) + "\n").encode()}
    from .plot import write_bytes

    if plots:
        from .plot import plot_prompt, render_figure

        for fmt, blob in render_figure(plot_prompt(data)).items():
            files[f"trace.{fmt}"] = blob
    out_dir.mkdir(parents=True, exist_ok=True)
    return [write_bytes(out_dir / name, blob) for name, blob in files.items()]
