"""Text generation from a (possibly patched) model: seeded, batched samples with left padding
(`generate_texts`), one prompt continued greedily or sampled, optionally streamed
(`generate_ids`, what `factpatch serve` uses), fixed-length top-k samples of many rows at once
(`sample_top_k`, the self-sampled statistics corpus), and the one seeded-sampling context every
sampler in factpatch uses."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from .errors import FactpatchError
from .hooks import body, cache_kwarg, unembed
from .models import LoadedModel
from .tokens import pad_id


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch's global generators inside the block and restore the caller's state after it,
    so sampling here never changes what the caller's own random numbers would have been. The
    CUDA generators are seeded too (draws on a GPU come from them) and restored when CUDA is in use."""
    cuda_devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(seed)
        yield


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
    encoded = [list(tokenizer(p).input_ids) for p in prompts for _ in range(n)]
    lengths = [len(ids) for ids in encoded]  # each row's own prompt tokens
    width = max(lengths)
    # Padded on the left here (decoder-only batching: real tokens must end at the same place), so a
    # tokenizer without a padding token (some GGUF conversions) needs none: the padded places are
    # masked out, and their id is pad_id's.
    input_ids = torch.full((len(encoded), width), pad_id(tokenizer), dtype=torch.long)
    attention_mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, ids in enumerate(encoded):
        input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, width - len(ids) :] = 1
    budgets = [max_new_tokens] * len(lengths) if max_length is None else [max(0, max_length - k) for k in lengths]
    if max(budgets) > 0:
        with seeded(seed):
            out = lm.model.generate(
                input_ids=input_ids.to(lm.device),
                attention_mask=attention_mask.to(lm.device),
                do_sample=True,
                top_k=top_k,
                max_new_tokens=max(budgets),
                pad_token_id=pad_id(tokenizer),
            )
        new_ids = [row[width : width + budget] for row, budget in zip(out, budgets)]
    else:
        new_ids = [input_ids[i, :0] for i in range(len(budgets))]
    texts = [tokenizer.decode(ids, skip_special_tokens=True) for ids in new_ids]
    flat = [prompts[i // n] + texts[i] for i in range(len(texts))]
    return [flat[i * n : (i + 1) * n] for i in range(len(prompts))]


@dataclass(frozen=True)
class Sampling:
    """How each next token is chosen (the OpenAI API's knobs)."""

    max_new_tokens: int = 64  # a sentence or two: what the lab shows; the API passes max_tokens
    temperature: float = 0.0  # 0 is greedy: the same text every time, which is what a before/after needs
    top_p: float = 1.0  # 1: no nucleus cut
    top_k: int = 0  # 0: no top-k cut
    seed: int = 0  # sampling only; greedy needs none
    stop: tuple[str, ...] = ()

    def __post_init__(self):
        if not 1 <= self.max_new_tokens <= 4096:
            raise FactpatchError(f"max_new_tokens must be between 1 and 4096, got {self.max_new_tokens}")
        if not 0 <= self.temperature <= 5:
            raise FactpatchError(f"temperature must be between 0 and 5, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise FactpatchError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise FactpatchError(f"top_k must be ≥ 0, got {self.top_k}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass
class Generated:
    token_ids: list[int]  # the new tokens only
    text: str  # their text, cut at the first stop string
    finish_reason: str  # "stop" (end of text or a stop string) or "length"


@torch.no_grad()
def generate_ids(lm: LoadedModel, prompt_ids: list[int], sampling: Sampling, streamer=None) -> Generated:
    """Continue one tokenised prompt. `streamer` (a transformers streamer) receives the prompt,
    then each new token as it is made. Sampling draws from torch's global generator seeded with
    `sampling.seed` (`seeded`): callers that sample on several threads at once must take turns."""
    input_ids = torch.tensor([prompt_ids], dtype=torch.long, device=lm.device)
    options: dict = dict(max_new_tokens=sampling.max_new_tokens, pad_token_id=pad_id(lm.tokenizer), streamer=streamer)
    if sampling.greedy:
        options.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    else:
        options.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k)
    if sampling.stop:
        options.update(stop_strings=list(sampling.stop), tokenizer=lm.tokenizer)
    context = contextlib.nullcontext() if sampling.greedy else seeded(sampling.seed)
    with context:
        out = lm.model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **options)
    new = out[0, input_ids.shape[1]:].tolist()
    text = lm.tokenizer.decode(new, skip_special_tokens=True)
    cut = cut_at_stop(text, sampling.stop)
    ended = cut != text or len(new) < sampling.max_new_tokens
    return Generated(new, cut, "stop" if ended else "length")


def cut_at_stop(text: str, stop: tuple[str, ...]) -> str:
    """`text` up to (not including) the earliest stop string in it."""
    ends = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return text[: min(ends)] if ends else text


def end_of_text_ids(lm: LoadedModel) -> list[int]:
    """Every token id that ends a text for `lm` (the tokenizer's and the generation config's)."""
    ids = {lm.tokenizer.eos_token_id}
    configured = getattr(getattr(lm.model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, (list, tuple)) else [configured])
    return sorted(i for i in ids if i is not None)


@torch.no_grad()
def sample_top_k(
    lm: LoadedModel,
    prompt: torch.Tensor,
    new_tokens: int,
    top_k: int,
    banned: Sequence[int] = (),
    on_step: Callable[[], None] | None = None,
) -> torch.Tensor:
    """`prompt` (B, T) token ids, no padding, continued by `new_tokens` top-k samples: (B, T + new_tokens).

    The distribution of transformers' top-k sampling — the softmax of the k largest logits — drawn
    the cheap way: the k largest first, then the draw among them. `generate` masks, normalises and
    draws over the whole vocabulary every step, about a third of a sampling step on SmolLM2's
    49,152 tokens (runs/bench/sampling-cache-2026-11-30). Draws come from torch's global generator
    (seed it with `seeded`); `banned` ids are never drawn (fixed-length samples ban end-of-text);
    `on_step()` runs after every step.
    """
    from transformers import DynamicCache

    if top_k < 1:
        raise FactpatchError("top_k must be at least 1")
    model_body = body(lm)
    cache = DynamicCache(config=lm.model.config)  # filled in place by each pass
    tokens, step_input = [prompt], prompt
    for _ in range(new_tokens):
        hidden = model_body(input_ids=step_input, use_cache=True, **{cache_kwarg(model_body): cache}).last_hidden_state
        logits = unembed(lm, hidden[:, -1]).float()  # (B, vocab)
        if banned:
            logits[:, list(banned)] = float("-inf")
        values, indices = logits.topk(top_k, dim=-1)  # (B, k)
        step_input = indices.gather(-1, torch.multinomial(torch.softmax(values, dim=-1), 1))  # (B, 1)
        tokens.append(step_input)
        if on_step is not None:
            on_step()
    return torch.cat(tokens, dim=1)

