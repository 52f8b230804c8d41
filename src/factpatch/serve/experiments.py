"""The lab's three experiments on the hosted model: trace one prompt, edit one fact, compare
generations with and without the applied patches. Each takes the model to itself (host.exclusive)
and reuses the library: tracing.trace_prompt, the editor registry, api.probabilities,
core.generate."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..api import probabilities, with_true_object
from ..core.errors import FactpatchError
from ..core.generate import Sampling, generate_ids
from ..editing.registry import METHODS, edit_layers, make_editor, method_params
from ..editing.request import EditRequest
from ..editing.stats import CorpusSpec
from ..tracing.prompt import trace_prompt
from ..tracing.settings import KINDS, NoiseSettings, TraceSettings, embedding_std
from .host import ModelHost
from .jobs import Job, JobProgress

logger = logging.getLogger(__name__)

LAB_METHODS = ("rome", "memit", "alphaedit", "ft+l")  # the editing methods offered for one fact
MAX_TEXTS = 20  # probes and neighbours each: enough to look at, few enough to score in a second


@dataclass(frozen=True)
class LabSettings:
    cache_dir: Path | None = None  # key statistics and σ: the user cache unless given
    corpus: CorpusSpec = field(default_factory=CorpusSpec)  # the CLI's default statistics
    max_trace_samples: int = 50  # ~5x the paper's 10: enough for a smooth map, bounded time


def _text(params: dict, name: str, required: bool = True, limit: int = 500) -> str | None:
    value = params.get(name)
    if value is None or (value == "" and not required):
        if required:
            raise FactpatchError(f"{name!r} is required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise FactpatchError(f"{name!r} must be a non-empty string")
    if len(value) > limit:
        raise FactpatchError(f"{name!r} is longer than {limit} characters")
    return value


def _texts(params: dict, name: str) -> list[str]:
    value = params.get(name) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FactpatchError(f"{name!r} must be a list of strings")
    value = [v.strip() for v in value if v.strip()]
    if len(value) > MAX_TEXTS or any(len(v) > 500 for v in value):
        raise FactpatchError(f"{name!r}: at most {MAX_TEXTS} texts of at most 500 characters")
    return value


def _int(params: dict, name: str, default: int | None, low: int, high: int) -> int | None:
    value = params.get(name, default)
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise FactpatchError(f"{name!r} must be an integer from {low} to {high}")
    return value


# ----------------------------------------------------------------------------- trace


def check_trace(host: ModelHost, settings: LabSettings, params: dict) -> dict:
    """The trace request, checked before a job is queued (a bad one is a 400, not a failed job)."""
    prompt = _text(params, "prompt")
    subject = _text(params, "subject")
    if subject not in prompt:
        raise FactpatchError(f"subject {subject!r} is not in the prompt")
    return {
        "prompt": prompt, "subject": subject, "target": _text(params, "target", required=False),
        "samples": _int(params, "samples", 10, 1, settings.max_trace_samples),
        "window": _int(params, "window", min(10, host.lm.n_layers), 1, host.lm.n_layers),  # the paper: 10
    }


def suggested_layer(trace: dict) -> int:
    """The edit layer a single trace points at: where restoring the MLP output at the last subject
    token helps most (ROME edits that MLP; the paper's Fig 2 peak)."""
    grid = trace["kinds"].get("mlp", trace["kinds"]["hidden"])["scores"]
    row = grid[trace["subject_range"][1] - 1]
    return max(range(len(row)), key=row.__getitem__)


def run_trace(host: ModelHost, settings: LabSettings, params: dict, job: Job) -> dict:
    trace_settings = TraceSettings(KINDS, params["window"], noise=NoiseSettings(samples=params["samples"]))
    with host.exclusive() as view:
        started = time.perf_counter()
        job.stage("σ of the token embeddings (sampled from the model once, then cached)", 0.01)
        sigma = embedding_std(host.lm, cache_dir=settings.cache_dir, progress=False)
        job.stage("tracing", 0.05)
        trace = trace_prompt(
            host.lm, params["prompt"], params["subject"], params["target"], trace_settings, sigma,
            cache_dir=settings.cache_dir, progress=lambda **kw: JobProgress(job, 0.05, 1.0, **kw),
        )
    data = trace.to_json()
    data["suggested_layer"] = suggested_layer(data)
    data["seconds"] = round(time.perf_counter() - started, 2)
    data["stack"] = view.to_dict()
    return data


# ----------------------------------------------------------------------------- edit


def check_edit(host: ModelHost, params: dict) -> dict:
    prompt, subject = _text(params, "prompt"), _text(params, "subject")
    target_new = _text(params, "target_new")
    target_true = _text(params, "target_true", required=False)
    EditRequest.from_text(prompt, subject, target_new, target_true)  # raises with the reason
    method = params.get("method", "rome")
    if method not in LAB_METHODS:
        raise FactpatchError(f"unknown method {method!r}: choose from {', '.join(LAB_METHODS)}")
    return {
        "prompt": prompt, "subject": subject, "target_new": target_new, "target_true": target_true,
        "method": method, "layer": _int(params, "layer", None, 0, host.lm.n_layers - 1),
        "probes": _texts(params, "probes"), "neighbours": _texts(params, "neighbours"),
    }


def _params_for(host: ModelHost, method: str, layer: int | None):
    """The method's defaults on this model, with the layer chosen in the page (MEMIT/AlphaEdit:
    their five-layer range moved to end at it, as their range ends where z is read)."""
    if layer is None:
        return method_params(host.lm, method)
    if METHODS[method].batched:
        first = max(0, layer - 4)
        return method_params(host.lm, method, {"layers": tuple(range(first, layer + 1))})
    return method_params(host.lm, method, {"layer": layer})


def run_edit(host: ModelHost, settings: LabSettings, params: dict, job: Job) -> dict:
    method = params["method"]
    with host.exclusive():
        lm = host.lm
        job.stage("reading the model's own answer", 0.02)
        request = with_true_object(lm, EditRequest.from_text(
            params["prompt"], params["subject"], params["target_new"], params["target_true"]))
        hp = _params_for(host, method, params["layer"])
        job.stage("key statistics (cached after the first edit at a layer)", 0.05)
        editor = make_editor(lm, method, hp, settings.cache_dir, False, settings.corpus)
        editor.prepare(host.stack)
        groups = {"prompt": [request.text], "probes": params["probes"], "neighbours": params["neighbours"]}
        texts = list(dict.fromkeys(t for group in groups.values() for t in group))
        targets = [request.target_new, request.target_true]
        job.stage("scoring before the edit", 0.35)
        before = probabilities(lm, texts, targets)
        job.stage(f"computing the {method} edit", 0.45)
        started = time.perf_counter()
        patch = editor.patch([request], host.stack)
        seconds = time.perf_counter() - started
        view = host.apply_locked(patch, "edit")
        job.stage("scoring after the edit", 0.9)
        after = probabilities(lm, texts, targets)
    rows = [
        {"group": group, "text": text, "before": before[text], "after": after[text]}
        for group, group_texts in groups.items() for text in group_texts
    ]
    return {
        "patch": patch.id, "method": method, "layers": edit_layers(hp), "request": request.to_dict(),
        "target_new": request.target_new, "target_true": request.target_true,
        "rows": rows, "edit_seconds": round(seconds, 3), "stack": view.to_dict(),
    }


def probabilities_now(host: ModelHost, texts: list[str], targets: list[str]) -> dict:
    """P(target | text) with the stack as it is: the lab re-reads its table after a revert."""
    with host.reading() as view:
        return {"probabilities": probabilities(host.lm, texts, targets), "stack": view.to_dict()}


# ----------------------------------------------------------------------------- compare


def compare(host: ModelHost, prompt: str, sampling: Sampling) -> dict:
    """The prompt continued with the applied patches and without them, same settings and seed."""
    ids = host.lm.tokenizer(prompt).input_ids
    with host.exclusive() as view:
        patched = generate_ids(host.lm, ids, sampling)
        with host.unpatched_locked():
            original = generate_ids(host.lm, ids, sampling)
    return {"prompt": prompt, "with_patches": patched.text, "without_patches": original.text,
            "seed": sampling.seed, "temperature": sampling.temperature, "stack": view.to_dict()}
