"""Scoring: probabilities of whole target sequences, and the paper's edit metrics.

CounterFact (ES/EM, PS/PM, NS/NM, S), fluency (generation n-gram entropy), consistency (TF-IDF
cosine against reference text), zsRE top-1 token accuracy, and percentile-bootstrap intervals.

Both the comparisons and the magnitudes read a multi-token object through its *mean token*
log-probability given the prompt (teacher forcing), exactly as the paper's reference code does
(kmeng01/rome `experiments/py/eval_utils_counterfact.py` stores the mean token NLL of each object,
`experiments/summarize.py` compares those and takes exp(−mean NLL) as the object's probability for
EM, PM and NM), so that longer objects are not penalised for their length. `TargetScore.prob` is
the whole-sequence product P[o | prompt]; the metrics use `TargetScore.mean_token_prob`.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..core.models import LoadedModel
from ..core.scoring import teacher_forced
from ..core.tokens import pad_id


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

    @property
    def mean_token_prob(self) -> float:
        """exp(−mean token NLL): the geometric mean of the token probabilities, the paper's
        "probability" of a multi-token object in its magnitudes (summarize.py)."""
        return math.exp(self.mean_log_prob)


def score_targets(lm: LoadedModel, prompts: list[str], targets: list[str], batch_size: int = 32) -> list[TargetScore]:
    """Score `targets[i]` after `prompts[i]`: log P[target | prompt] (core.scoring)."""
    return [TargetScore(sum(t.log_probs), len(t.log_probs)) for t in teacher_forced(lm, prompts, targets, batch_size)]


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


# ============================================================================= paper metrics
#
# Everything below works on plain numbers (`TargetScore`s, strings) so that it can be checked on
# hand-made tables; `factpatch.evaluation.run` feeds it from the model. Scores are fractions in [0, 1]
# here; the paper's tables (and factpatch's summary.md) show them ×100.

Pair = tuple[TargetScore, TargetScore]  # (score of the new object o*, score of the true object o^c)


def _wins(first: TargetScore, second: TargetScore) -> bool:
    """P[first] > P[second], compared through the mean token log-probability."""
    return first.mean_log_prob > second.mean_log_prob


def counterfact_case_metrics(
    rewrite: Sequence[Pair], paraphrase: Sequence[Pair] = (), neighborhood: Sequence[Pair] = ()
) -> dict[str, float]:
    """The paper's per-case CounterFact metrics (§4.2) from (o*, o^c) score pairs.

    ES / PS: fraction of rewrite / paraphrase prompts on which P[o*] > P[o^c]; NS: fraction of
    neighbourhood prompts on which P[o^c] > P[o*]. EM / PM = mean of P[o*] − P[o^c]; NM = mean of
    P[o^c] − P[o*]. As in the paper's summarize.py, P[o] here is exp(−mean token NLL of o), for
    the comparisons and the magnitudes alike (not the whole-sequence product, which would shrink
    the magnitudes of multi-token objects). A metric whose prompt list is empty is left out.
    """
    out: dict[str, float] = {}
    for score, magnitude, pairs, sign in (
        ("ES", "EM", rewrite, 1), ("PS", "PM", paraphrase, 1), ("NS", "NM", neighborhood, -1)
    ):
        if not pairs:
            continue
        wins = [_wins(new, true) if sign > 0 else _wins(true, new) for new, true in pairs]
        out[score] = float(np.mean(wins))
        out[magnitude] = float(np.mean([sign * (new.mean_token_prob - true.mean_token_prob) for new, true in pairs]))
    return out


def harmonic_mean(values: Sequence[float]) -> float:
    """Harmonic mean; 0 if any value is 0 (the paper's S = HM(ES, PS, NS))."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("harmonic mean of nothing")
    if any(v <= 0 for v in values):
        return 0.0
    return len(values) / sum(1.0 / v for v in values)


# ----------------------------------------------------------------------------- fluency

_WORD = re.compile(r"\w+|[^\w\s]")


def words(text: str) -> list[str]:
    """Word tokens for n-gram statistics: runs of letters/digits and single punctuation marks."""
    return _WORD.findall(text)


def ngram_entropy(tokens: Sequence[str], n: int) -> float:
    """Entropy (bits) of the frequency distribution of the n-grams in `tokens` (0 if there are none).

    >>> round(ngram_entropy("the cat the cat the dog".split(), 2), 4)  # {the cat: 2, cat the: 2, the dog: 1}
    1.5219
    """
    grams = Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    total = sum(grams.values())
    if total == 0:
        return 0.0
    freqs = np.array(list(grams.values()), dtype=np.float64) / total
    return float(-(freqs * np.log2(freqs)).sum())


def generation_entropy(text: str) -> float:
    """Fluency of one text (method.md): the mean of (2/3)·H₂ and (4/3)·H₃ = H₂/3 + 2·H₃/3, in bits."""
    tokens = words(text)
    return (2 / 3 * ngram_entropy(tokens, 2) + 4 / 3 * ngram_entropy(tokens, 3)) / 2


# ----------------------------------------------------------------------------- consistency

_TERM = re.compile(r"(?u)\b\w\w+\b")


class TfidfModel:
    """TF-IDF vectors with document frequencies from a fixed corpus.

    idf(w) = ln((1 + N) / (1 + df(w))) + 1 (N documents; a word the corpus never saw gets df 0),
    a text's vector = raw term counts × idf, L2-normalised — scikit-learn's `TfidfVectorizer`
    defaults (lower-cased words of 2+ characters), except that words outside the corpus keep a
    weight instead of being dropped, so two texts are compared on all their words.
    """

    def __init__(self, corpus: Sequence[str]):
        self.n_docs = len(corpus)
        self.df: Counter[str] = Counter()
        for doc in corpus:
            self.df.update(set(self.terms(doc)))

    @staticmethod
    def terms(text: str) -> list[str]:
        return _TERM.findall(text.lower())

    def idf(self, term: str) -> float:
        return math.log((1 + self.n_docs) / (1 + self.df.get(term, 0))) + 1

    def vector(self, text: str) -> dict[str, float]:
        counts = Counter(self.terms(text))
        weights = {t: c * self.idf(t) for t, c in counts.items()}
        norm = math.sqrt(sum(w * w for w in weights.values()))
        return {t: w / norm for t, w in weights.items()} if norm else {}

    def cosine(self, a: str, b: str) -> float:
        va, vb = self.vector(a), self.vector(b)
        return float(sum(w * vb.get(t, 0.0) for t, w in va.items()))


def consistency(model: TfidfModel, generated: Sequence[str], reference: Sequence[str]) -> float:
    """Reference score: TF-IDF cosine between the generated texts and the reference texts (each
    side joined into one document)."""
    return model.cosine(" ".join(generated), " ".join(reference))


# ----------------------------------------------------------------------------- zsRE


@torch.no_grad()
def token_accuracy(lm: LoadedModel, prompts: list[str], targets: list[str], batch_size: int = 32) -> list[float]:
    """Top-1 token accuracy of `targets[i]` after `prompts[i]` under teacher forcing: the fraction of
    target tokens that are the argmax prediction given the prompt and the target tokens before them
    (the zsRE metric of the MEND and ROME papers)."""
    return [sum(t.hits) / len(t.hits) for t in teacher_forced(lm, prompts, targets, batch_size)]


# ----------------------------------------------------------------------------- bootstrap


@dataclass(frozen=True)
class Estimate:
    """A mean with its bootstrap 95 % interval over n cases."""

    mean: float
    lo: float
    hi: float
    n: int

    def to_dict(self) -> dict:
        return {"mean": self.mean, "ci": [self.lo, self.hi], "n": self.n}


def bootstrap(
    columns: Sequence[Sequence[float]],
    statistic: Callable[..., float],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> Estimate:
    """Percentile bootstrap of `statistic(*column_means)`, resampling cases (rows) with replacement.

    `columns` are equally long per-case value lists (e.g. ES, PS, NS for S = HM of their means).
    """
    data = np.asarray(columns, dtype=np.float64)  # (n_columns, n_cases)
    n = data.shape[1]
    if n == 0:
        raise ValueError("bootstrap of no cases")
    point = float(statistic(*data.mean(axis=1)))
    rng = np.random.default_rng(seed)
    index = rng.integers(0, n, size=(n_boot, n))
    means = data[:, index].mean(axis=2)  # (n_columns, n_boot)
    stats = np.array([statistic(*means[:, b]) for b in range(n_boot)])
    alpha = (1 - level) / 2
    lo, hi = np.quantile(stats, [alpha, 1 - alpha])
    return Estimate(point, float(lo), float(hi), n)


def bootstrap_mean(values: Sequence[float], n_boot: int = 1000, seed: int = 0) -> Estimate:
    return bootstrap([values], lambda m: m, n_boot, seed)
