"""The one teacher-forced scorer: a target after a prompt, token by token, in batched passes.

Every score in factpatch — P(o*) and P(o) for CounterFact, top-1 token accuracy for zsRE, "does
the model know this fact" for tracing and for sequential runs — is read from this pass: the
prompt and all but the last target token go in (right-padded: causal attention never lets a real
token see the padding after it), and logits are computed only where a target token is predicted.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .hooks import body, unembed
from .models import LoadedModel
from .tokens import encode_target, pad_id, pad_right


@dataclass(frozen=True)
class TargetTokens:
    """One (prompt, target) pair: each target token's log-probability and whether it was the
    model's top prediction, given the prompt and the target tokens before it."""

    log_probs: tuple[float, ...]
    hits: tuple[bool, ...]
    # log p(target token) − the largest log p of any other token, nats: > 0 exactly where it is a
    # hit, and how far a change of the model must move it to take the token off (or put it on) top
    margins: tuple[float, ...] = ()


@torch.no_grad()
def teacher_forced(lm: LoadedModel, prompts: list[str], targets: list[str], batch_size: int = 32) -> list[TargetTokens]:
    if len(prompts) != len(targets):
        raise ValueError(f"{len(prompts)} prompts but {len(targets)} targets")
    encoded = [encode_target(lm.tokenizer, p, t) for p, t in zip(prompts, targets)]
    results: list[TargetTokens] = []
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start : start + batch_size]
        batch = pad_right([p + t[:-1] for p, t in chunk], pad_id(lm.tokenizer), lm.device)
        hidden = body(lm)(input_ids=batch.input_ids, use_cache=False).last_hidden_state  # (B, T, d)
        rows = [row for row, (_, t) in enumerate(chunk) for _ in t]
        cols = [len(p) - 1 + offset for p, t in chunk for offset in range(len(t))]
        wanted = torch.tensor([token for _, t in chunk for token in t], device=lm.device)  # (N,)
        logits = unembed(lm, hidden[rows, cols]).float()  # (N, V)
        log_p = torch.log_softmax(logits, dim=-1)  # (N, V)
        wanted_lp = log_p.gather(1, wanted[:, None]).squeeze(1)  # (N,)
        top = log_p.topk(2, dim=-1)  # (N, 2): the best other token is the first unless that is the wanted one
        hit = top.indices[:, 0] == wanted  # (N,)
        best_other = torch.where(hit, top.values[:, 1], top.values[:, 0])  # (N,)
        token_lp, margins, hits = wanted_lp.tolist(), (wanted_lp - best_other).tolist(), hit.tolist()
        cursor = 0
        for _, target_ids in chunk:
            n = len(target_ids)
            results.append(TargetTokens(tuple(token_lp[cursor : cursor + n]), tuple(hits[cursor : cursor + n]),
                                        tuple(margins[cursor : cursor + n])))
            cursor += n
    return results
