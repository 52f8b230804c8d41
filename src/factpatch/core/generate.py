"""Text generation from a (possibly patched) model, seeded and batched with left padding, and the
one seeded-sampling context every sampler in factpatch uses."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from .models import LoadedModel
from .tokens import pad_id


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch's global generator inside the block and restore the caller's state after it,
    so sampling here never changes what the caller's own random numbers would have been."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.random.set_rng_state(state)


@torch.no_grad()
def generate_texts(
    lm: LoadedModel,
    prompts: list[str],
    n: int = 1,
    max_new_tokens: int = 60,
    seed: int = 0,
    top_k: int = 50,
    max_length: int | None = None,
) -> list[list[str]]:
    """`n` sampled continuations per prompt (prompt included), reproducible for a given seed.

    Top-k sampling. With `max_length`, each text is that many tokens long *counting its own
    prompt's tokens* (the paper's `generate_fast(max_out_len=...)` in kmeng01/rome util/generate.py)
    and `max_new_tokens` is ignored; a prompt of max_length tokens or more gets no continuation.
    Rows are sampled together up to the longest budget and each is cut to its own, which does not
    change what a row samples (a token never depends on later ones).
    """
    tokenizer = lm.tokenizer
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # decoder-only batching: real tokens must end at the same place
    try:
        batch = tokenizer([p for p in prompts for _ in range(n)], return_tensors="pt", padding=True)
    finally:
        tokenizer.padding_side = side
    lengths = batch.attention_mask.sum(dim=1).tolist()  # each row's own prompt tokens
    budgets = [max_new_tokens] * len(lengths) if max_length is None else [max(0, max_length - k) for k in lengths]
    width = batch.input_ids.shape[1]
    if max(budgets) > 0:
        with seeded(seed):
            out = lm.model.generate(
                input_ids=batch.input_ids.to(lm.device),
                attention_mask=batch.attention_mask.to(lm.device),
                do_sample=True,
                top_k=top_k,
                max_new_tokens=max(budgets),
                pad_token_id=pad_id(tokenizer),
            )
        new_ids = [row[width : width + budget] for row, budget in zip(out, budgets)]
    else:
        new_ids = [batch.input_ids[i, :0] for i in range(len(budgets))]
    texts = [tokenizer.decode(ids, skip_special_tokens=True) for ids in new_ids]
    flat = [prompts[i // n] + texts[i] for i in range(len(texts))]
    return [flat[i * n : (i + 1) * n] for i in range(len(prompts))]
