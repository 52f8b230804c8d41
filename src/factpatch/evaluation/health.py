"""What an edited model still does well, beyond the edited facts themselves.

- **Known facts kept**: of the facts the *unedited* model knows (known_1000 layout; its greedy
  continuation starts with the whole answer), the share the edited model still knows, counting
  only facts whose subject no edit touched (an edit is allowed to change its own subject's facts).
  Beside the count, a graded measure of the same facts: each answer's log-probability now minus
  the unedited model's (nats, teacher-forced over the answer's tokens). The count says how many
  answers lost first place; the change says how far they fell, kept ones included, so two
  settings compare on every fact, not only on the ones that flipped.
- **Perplexity** on a fixed text the edits never saw: seeded samples from the unedited model
  (seed 1; the key statistics use seed 0), scored teacher-forced.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..core.hooks import body, unembed
from ..core.models import LoadedModel
from ..editing.stats import sample_token_corpus

PERPLEXITY_SEED = 1  # not the statistics' seed 0: a text the edit's C never saw


@torch.no_grad()
def perplexity(lm: LoadedModel, ids: torch.Tensor, batch_size: int = 8) -> float:
    """exp(mean next-token NLL) over (n_seq, T) token ids, every position after the first."""
    total, count = 0.0, 0
    for start in range(0, len(ids), batch_size):
        chunk = ids[start : start + batch_size].to(lm.device)  # (b, T)
        hidden = body(lm)(input_ids=chunk, use_cache=False).last_hidden_state[:, :-1]  # (b, T-1, d)
        log_probs = torch.log_softmax(unembed(lm, hidden).float(), dim=-1)  # (b, T-1, V)
        nll = -log_probs.gather(-1, chunk[:, 1:, None]).squeeze(-1)  # (b, T-1)
        total += float(nll.double().sum())
        count += nll.numel()
    return math.exp(total / count)


def perplexity_text(lm: LoadedModel, n_tokens: int, cache_dir: Path | None, progress: bool = False) -> torch.Tensor:
    """The fixed text: sampled once from the (unedited) model and cached with its fingerprint."""
    return sample_token_corpus(lm, n_tokens, PERPLEXITY_SEED, cache_dir, progress)


@dataclass
class KnownFacts:
    """The facts the unedited model knows, checked once."""

    facts: list  # tracing.Fact
    known: list[bool]
    log_probs: list[float]  # each fact's answer log-probability on the unedited model (sum over its tokens, nats)

    @classmethod
    def check(cls, lm: LoadedModel, path: Path, progress: bool = False) -> KnownFacts:
        from ..tracing.dataset import answer_scores, load_facts

        facts = load_facts(Path(path))
        scores = answer_scores(lm, facts, progress=progress)
        return cls(facts, [all(t.hits) for t in scores], [sum(t.log_probs) for t in scores])

    def untouched(self, edited_subjects: Sequence[str]) -> list:
        """The known facts whose subject no edit touched: the ones `kept` counts."""
        touched = {s.strip().lower() for s in edited_subjects}
        return [f for f, k in zip(self.facts, self.known) if k and f.subject.strip().lower() not in touched]

    def measure(self, lm: LoadedModel, edited_subjects: Sequence[str]) -> tuple[dict[str, bool], dict[str, float]]:
        """Over the known facts whose subject no edit touched, in one teacher-forced pass: fact id ->
        whether the model still knows it, and fact id -> its answer's log-probability now minus the
        unedited model's."""
        from ..tracing.dataset import answer_scores

        before = {f.id: lp for f, lp in zip(self.facts, self.log_probs)}
        facts = self.untouched(edited_subjects)
        scores = answer_scores(lm, facts, progress=False) if facts else []
        return ({f.id: all(t.hits) for f, t in zip(facts, scores)},
                {f.id: sum(t.log_probs) - before[f.id] for f, t in zip(facts, scores)})

    def kept(self, lm: LoadedModel, edited_subjects: Sequence[str]) -> tuple[int, int]:
        """(still known, known before) over the known facts whose subject no edit touched."""
        known, _ = self.measure(lm, edited_subjects)
        return sum(known.values()), len(known)


def known_record(still_known: dict[str, bool], log_prob_change: dict[str, float]) -> dict:
    """A health entry's known-facts fields: the counts, which facts were checked and which of them
    are lost, and each one's change of answer log-probability and their mean (KnownFacts.measure),
    so that two entries over the same facts compare fact by fact (eval paired)."""
    kept, total = sum(still_known.values()), len(still_known)
    return {"known_kept": kept, "known_total": total, "known_share": kept / total if total else None,
            "known_checked": sorted(still_known), "known_lost": sorted(i for i, k in still_known.items() if not k),
            "known_logprob_change_mean": (round(sum(log_prob_change.values()) / len(log_prob_change), 4)
                                          if log_prob_change else None),
            "known_logprob_change": {i: round(v, 4) for i, v in sorted(log_prob_change.items())}}


def known_logprob_by_fact(entry: dict) -> dict[str, float] | None:
    """Fact id -> change of its answer's log-probability against the unedited model, from a health
    entry; None for an entry written before the entries recorded it (2026-12-03)."""
    change = entry.get("known_logprob_change")
    return {i: float(v) for i, v in change.items()} if change is not None else None


def known_by_fact(entry: dict) -> dict[str, float] | None:
    """Fact id -> 1.0 kept / 0.0 lost from a health entry; None for an entry written before the
    entries named their facts (2026-12-03)."""
    if "known_checked" not in entry:
        return None
    lost = set(entry.get("known_lost", ()))
    return {i: 0.0 if i in lost else 1.0 for i in entry["known_checked"]}
