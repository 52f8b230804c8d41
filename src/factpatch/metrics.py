"""Scoring: probabilities of whole target sequences, and the paper's edit metrics.

P[o] for a multi-token object is the product of its token probabilities given the prompt
(teacher forcing); comparisons between two objects use the mean token log-probability, as the
paper does, so that longer objects are not penalised for their length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .hooks import body, unembed
from .models import LoadedModel
from .tokens import encode_target, pad_id, pad_right


@dataclass(frozen=True)
class TargetScore:
    log_prob: float  # sum of token log-probabilities: log P[target | prompt]
    n_tokens: int

    @property
    def prob(self) -> float:
        return math.exp(self.log_prob)

    @property
    def mean_log_prob(self) -> float:
        return self.log_prob / self.n_tokens


@torch.no_grad()
def score_targets(lm: LoadedModel, prompts: list[str], targets: list[str], batch_size: int = 32) -> list[TargetScore]:
    """Score `targets[i]` after `prompts[i]` (one forward pass per batch, logits only where read)."""
    if len(prompts) != len(targets):
        raise ValueError(f"{len(prompts)} prompts but {len(targets)} targets")
    encoded = [encode_target(lm.tokenizer, p, t) for p, t in zip(prompts, targets)]
    scores: list[TargetScore] = []
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start : start + batch_size]
        batch = pad_right([p + t[:-1] for p, t in chunk], pad_id(lm.tokenizer), lm.device)
        hidden = body(lm)(input_ids=batch.input_ids, use_cache=False).last_hidden_state
        rows, cols, wanted = [], [], []
        for row, (prompt_ids, target_ids) in enumerate(chunk):
            for offset, token in enumerate(target_ids):
                rows.append(row)
                cols.append(len(prompt_ids) - 1 + offset)
                wanted.append(token)
        log_probs = torch.log_softmax(unembed(lm, hidden[rows, cols]).float(), dim=-1)
        token_lp = log_probs[torch.arange(len(wanted)), torch.tensor(wanted)]
        cursor = 0
        for _, target_ids in chunk:
            n = len(target_ids)
            scores.append(TargetScore(float(token_lp[cursor : cursor + n].sum()), n))
            cursor += n
    return scores


@torch.no_grad()
def top_prediction(lm: LoadedModel, prompt: str, max_tokens: int = 3) -> str:
    """The model's greedy continuation of `prompt`, up to the first word boundary (for --target-true)."""
    ids = torch.tensor([lm.tokenizer(prompt).input_ids], device=lm.device)
    out = lm.model.generate(
        ids, max_new_tokens=max_tokens, do_sample=False, pad_token_id=pad_id(lm.tokenizer)
    )
    text = lm.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
    words = text.strip().split()
    return words[0].strip(".,;:!?\"'") if words else text.strip()
