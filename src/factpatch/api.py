"""The Python API that the command line mirrors: one function per CLI command's core work.

    >>> from factpatch import load_model, edit, edit_many, EditRequest
    >>> lm = load_model("smollm2-135m")
    >>> result = edit(lm, EditRequest.from_text("{} is located in the city of", "Eiffel Tower", "Rome"))
    >>> result.after[result.request.text]
    >>> many = edit_many(lm, read_requests("facts.jsonl"), method="memit")
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .core.errors import FactpatchError
from .core.models import LoadedModel
from .editing.patch import Patch, PatchStack
from .editing.registry import hparams_for, make_editor, method_params
from .editing.request import EditRequest, check_batch
from .editing.rome import RomeEditor, ROMEParams
from .editing.stats import CorpusSpec
from .evaluation.metrics import score_targets, top_prediction

Probabilities = dict[str, dict[str, float]]  # text -> {target: P(target | text)}


@dataclass
class EditResult:
    request: EditRequest
    patch: Patch
    layer: int
    edit_seconds: float  # k*, v* and the update; excludes loading and key statistics
    before: Probabilities = field(default_factory=dict)
    after: Probabilities = field(default_factory=dict)


def probabilities(lm: LoadedModel, texts: list[str], targets: list[str]) -> Probabilities:
    """P(target | text) for every text and target (whole target: product over its tokens)."""
    pairs = [(text, target) for text in texts for target in targets]
    scores = score_targets(lm, [p for p, _ in pairs], [t for _, t in pairs])
    table: Probabilities = {text: {} for text in texts}
    for (text, target), score in zip(pairs, scores):
        table[text][target] = score.prob
    return table


def with_true_object(lm: LoadedModel, request: EditRequest) -> EditRequest:
    """The request with o filled in from the model's own top prediction where it is missing."""
    if request.target_true is not None:
        return request
    guess = top_prediction(lm, request.text)
    if guess.strip() == request.target_new.strip():
        raise FactpatchError(f"the model already predicts {request.target_new!r}: target equals the true object")
    return EditRequest(request.prompt, request.subject, request.target_new, guess)


def edit(
    lm: LoadedModel,
    request: EditRequest,
    stack: PatchStack | None = None,
    probes: list[str] = (),
    hparams: ROMEParams | None = None,
    corpus: CorpusSpec = CorpusSpec(),
    cache_dir: Path | None = None,
    progress: bool = True,
) -> EditResult:
    """Edit `lm` in place with ROME (through `stack`, so it can be reverted) and report the
    probabilities of the new and true objects on the prompt and probes, before and after."""
    hp = hparams or hparams_for(lm)
    assert hp.layer is not None
    request = with_true_object(lm, request)
    stack = stack if stack is not None else PatchStack(lm)
    editor = RomeEditor(lm, hp, cache_dir, progress, corpus)
    editor.prepare(stack)  # statistics and prefixes: computed once and cached, not part of the edit time
    texts = list(dict.fromkeys([request.text, *probes]))
    targets = [request.target_new, request.target_true]
    before = probabilities(lm, texts, targets)
    patch = editor.patch([request], stack)
    stack.apply(patch)
    after = probabilities(lm, texts, targets)
    patch.meta["probabilities"] = {"before": before, "after": after}
    return EditResult(request, patch, hp.layer, patch.meta["edit_seconds"], before, after)


@dataclass
class RequestOutcome:
    """One request of a batch: P(o*) and P(o) on its prompt before and after the patch."""

    request: EditRequest
    before: dict[str, float]
    after: dict[str, float]

    def to_dict(self) -> dict:
        return {"request": self.request.to_dict(), "before": self.before, "after": self.after}


@dataclass
class EditManyResult:
    method: str
    patch: Patch
    outcomes: list[RequestOutcome]
    edit_seconds: float  # building the patch: statistics and prefixes excluded (computed once, cached)


def _prompt_probabilities(lm: LoadedModel, requests: Sequence[EditRequest]) -> list[dict[str, float]]:
    prompts, targets = [], []
    for r in requests:
        for target in (r.target_new, r.target_true):
            if target is not None:
                prompts.append(r.text)
                targets.append(target)
    scores = iter(score_targets(lm, prompts, targets))
    return [{t: next(scores).prob for t in (r.target_new, r.target_true) if t is not None} for r in requests]


def edit_many(
    lm: LoadedModel,
    requests: Sequence[EditRequest],
    method: str = "memit",
    stack: PatchStack | None = None,
    params=None,
    cache_dir: Path | None = None,
    progress: bool = True,
    overrides: dict | None = None,
    corpus: CorpusSpec | None = None,
    preset: str | None = None,
) -> EditManyResult:
    """Edit `lm` in place with any registered method — one patch for the whole list, applied
    through `stack` — and report P(o*) and P(o) on each request's prompt before and after.
    ROME and the fine-tuning methods edit the list one after another; MEMIT and AlphaEdit write it
    at once. With a `stack` that already holds patches, AlphaEdit protects their edits."""
    requests = list(requests)
    check_batch(requests)
    params = params if params is not None else method_params(lm, method, overrides, preset)
    editor = make_editor(lm, method, params, cache_dir, progress, corpus)
    stack = stack if stack is not None else PatchStack(lm)
    editor.prepare(stack)
    before = _prompt_probabilities(lm, requests)
    started = time.perf_counter()
    patch = editor.patch(requests, stack)
    seconds = time.perf_counter() - started
    stack.apply(patch)
    after = _prompt_probabilities(lm, requests)
    outcomes = [RequestOutcome(r, b, a) for r, b, a in zip(requests, before, after)]
    return EditManyResult(method, patch, outcomes, seconds)
