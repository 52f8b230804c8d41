"""The Python API that the command line mirrors: one function per CLI command's core work.

    >>> from factpatch import load_model, edit, EditRequest
    >>> lm = load_model("smollm2-135m")
    >>> result = edit(lm, EditRequest.from_text("{} is located in the city of", "Eiffel Tower", "Rome"))
    >>> result.after[result.request.text]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .errors import FactpatchError
from .metrics import score_targets, top_prediction
from .models import LoadedModel
from .patch import Patch, PatchStack, rome_patch
from .rome import EditRequest, ROMEHyperParams, compute_edit, context_prefixes, hparams_for
from .stats import CorpusSpec, key_second_moment

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


def edit(
    lm: LoadedModel,
    request: EditRequest,
    stack: PatchStack | None = None,
    probes: list[str] = (),
    hparams: ROMEHyperParams | None = None,
    corpus: CorpusSpec = CorpusSpec(),
    cache_dir: Path | None = None,
    progress: bool = True,
) -> EditResult:
    """Edit `lm` in place with ROME (through `stack`, so it can be reverted) and report the
    probabilities of the new and true objects on the prompt and probes, before and after."""
    hp = hparams or hparams_for(lm)
    assert hp.layer is not None
    if request.target_true is None:
        guess = top_prediction(lm, request.text)
        if guess.strip() == request.target_new.strip():
            raise FactpatchError(f"the model already predicts {request.target_new!r}: target equals the true object")
        request = EditRequest(request.prompt, request.subject, request.target_new, guess)
    stack = stack or PatchStack(lm)
    C = key_second_moment(lm, hp.layer, corpus, cache_dir, progress)
    context_prefixes(lm, hp, cache_dir)  # sampled once and cached: not part of the edit time
    texts = list(dict.fromkeys([request.text, *probes]))
    targets = [request.target_new, request.target_true]
    before = probabilities(lm, texts, targets)
    computed = compute_edit(lm, request, C, hp, cache_dir)
    patch = rome_patch(lm, computed, probabilities={"before": before})
    stack.apply(patch)
    after = probabilities(lm, texts, targets)
    patch.meta["probabilities"]["after"] = after
    return EditResult(request, patch, hp.layer, computed.seconds, before, after)
