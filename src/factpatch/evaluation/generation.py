"""The texts behind fluency and consistency: what is sampled for a case, how, and with which seed.

Sampling follows the paper by default (`GenerationSettings`): top-k 5, each text 100 tokens
including its prompt, one text for every generation prompt of the case; each record names the
prompts it used and where they came from (the data set's own, or derived: data.py). The seed of a
case is its place in the data set, so every method sees the same draws. There is no Wikipedia
here, so the consistency reference for o* is what the *unedited* model writes when it continues
true statements about other subjects whose object is o* (`reference_texts`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.errors import FactpatchError
from ..core.generate import generate_texts
from ..core.models import LoadedModel
from .data import Case
from .metrics import generation_entropy


@dataclass(frozen=True)
class GenerationSettings:
    """Sampling for fluency and consistency: one text per generation prompt, seeded per case.

    The defaults are the paper's (kmeng01/rome eval_utils_counterfact.test_generation calling
    util/generate.generate_fast): top-k 5, each text 100 tokens long *including its prompt*, every
    generation prompt of the case. `max_new_tokens` (instead of `max_length`) and a larger `top_k`
    give factpatch's earlier setting (100 new tokens, top-k 50).
    """

    top_k: int = 5  # generate_fast's top_k
    max_length: int = 100  # tokens per text, prompt included (generate_fast's max_out_len=100)
    max_new_tokens: int | None = None  # if set: this many new tokens per text, max_length unused
    max_prompts: int | None = None  # generation prompts per case; None = all of them, as the paper
    reference_prompts: int = 5  # attribute statements continued for the consistency reference
    reference_tokens: int = 60  # new tokens per reference text (factpatch's stand-in for Wikipedia)

    def __post_init__(self):
        optional = [v for v in (self.max_new_tokens, self.max_prompts) if v is not None]
        if min(self.top_k, self.max_length, self.reference_prompts, self.reference_tokens, *optional) < 1:
            raise FactpatchError("generation settings must be at least 1")

    def describe(self) -> str:
        length = (f"{self.max_new_tokens} new tokens per text" if self.max_new_tokens is not None
                  else f"{self.max_length} tokens per text including the prompt")
        prompts = "all of each case's generation prompts" if self.max_prompts is None else f"up to {self.max_prompts} generation prompts per case"
        return f"top-k {self.top_k}, {length}, {prompts}"


REFERENCE_TOP_K = 50  # the consistency reference is sampled as before the paper's settings were adopted


def generate_for_case(lm: LoadedModel, case: Case, gen: GenerationSettings, seed: int) -> dict:
    """One sampled text for each of the case's generation prompts (as many as `gen` allows):
    {"prompts", "source" ("dataset" | "derived"), "texts"}."""
    prompts = list(case.generation_prompts if gen.max_prompts is None else case.generation_prompts[: gen.max_prompts])
    if gen.max_new_tokens is not None:
        texts = generate_texts(lm, prompts, 1, gen.max_new_tokens, seed, top_k=gen.top_k)
    else:
        texts = generate_texts(lm, prompts, 1, seed=seed, top_k=gen.top_k, max_length=gen.max_length)
    return {"prompts": prompts, "source": case.generation_source, "texts": [t[0] for t in texts]}


def case_seed(seed: int, index: int) -> int:
    return (seed * 1_000_003 + index) % (2**31 - 1)


def case_generations(lm: LoadedModel, case: Case, gen: GenerationSettings, seed: int, index: int) -> dict:
    """One text for each of the case's generation prompts (as many as `gen` allows), seeded by the
    case's place in the data set (every method sees the same draws), and their fluency (mean n-gram
    entropy): {"prompts", "source" ("dataset" | "derived"), "texts", "fluency"}."""
    generated = generate_for_case(lm, case, gen, case_seed(seed, index))
    texts = generated["texts"]
    return {**generated, "fluency": sum(generation_entropy(t) for t in texts) / len(texts)}


def reference_texts(lm: LoadedModel, case: Case, gen: GenerationSettings, seed: int) -> list[str]:
    """Consistency reference for o* (see the module docstring), from the unedited model."""
    new = case.request.target_new
    statements = [f"{p.rstrip()} {new}" for p in case.attribute_prompts[: gen.reference_prompts]]
    if not statements:
        return []
    continued = generate_texts(lm, statements, 1, gen.reference_tokens, seed, top_k=REFERENCE_TOP_K)
    return [texts[0] for texts in continued]
