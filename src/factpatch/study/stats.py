"""Statistics of rankings: rank distributions, pairwise preferences with bootstrap intervals,
and inter-rater agreement (Kendall's W and Krippendorff's α).

Everything here is pure: it takes `Judgement`s (one rater's ranking of one scenario on one
criterion) and returns numbers, so it can be checked on hand-made answers.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Judgement:
    rater: int
    scenario: int
    ranks: Mapping[str, int]  # method -> rank, 1 = best, all distinct


def rank_counts(judgements: Iterable[Judgement], methods: Sequence[str]) -> dict[str, list[int]]:
    """How often each method got each rank: {method: [times 1st, times 2nd, ...]}."""
    judgements = list(judgements)
    depth = max((len(j.ranks) for j in judgements), default=0)
    counts = {m: [0] * depth for m in methods}
    for j in judgements:
        for method, rank in j.ranks.items():
            counts[method][rank - 1] += 1
    return counts


def mean_ranks(judgements: Iterable[Judgement], methods: Sequence[str]) -> dict[str, float]:
    given: dict[str, list[int]] = {m: [] for m in methods}
    for j in judgements:
        for method, rank in j.ranks.items():
            given[method].append(rank)
    return {m: (sum(r) / len(r) if r else math.nan) for m, r in given.items()}


# A percentile bootstrap over fewer scenarios has so few distinct resamples that its "95 %"
# interval is not one (over one scenario every resample is that scenario: 100–100 %). Below this,
# a pair gets its counts and no interval.
MIN_SCENARIOS_FOR_INTERVAL = 5


@dataclass(frozen=True)
class Preference:
    """How often `better` was ranked above `worse` wherever a rater ranked both."""

    better: str
    worse: str
    comparisons: int
    wins: int
    scenarios: int  # scenarios on which the two were compared: what the bootstrap resamples
    share: float  # wins / comparisons
    share_ci: tuple[float, float] | None  # None below MIN_SCENARIOS_FOR_INTERVAL scenarios
    ratio: float  # wins / losses: "ranked above it 1.8× as often"; inf if it never lost
    ratio_ci: tuple[float, float] | None  # the share's interval mapped through share/(1-share)

    @property
    def losses(self) -> int:
        return self.comparisons - self.wins


def odds(share: float) -> float:
    return math.inf if share >= 1.0 else share / (1.0 - share)


def pairwise_preferences(
    judgements: Sequence[Judgement],
    methods: Sequence[str],
    *,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    min_scenarios: int = MIN_SCENARIOS_FOR_INTERVAL,
) -> list[Preference]:
    """Every pair of methods (in `methods` order) that some rater ranked together.

    Intervals are bootstrap percentiles over scenarios: resampling whole scenarios, with all
    their raters' answers, keeps the answers about one text together instead of pretending they
    are independent. The ratio's interval is the share's mapped through share/(1-share). A pair
    compared on fewer than `min_scenarios` scenarios gets no interval.
    """
    scenarios = sorted({j.scenario for j in judgements})
    where = {s: i for i, s in enumerate(scenarios)}
    rng = np.random.default_rng(seed)
    resample = rng.integers(0, len(scenarios), size=(n_boot, len(scenarios)))  # shared by all pairs
    tail = (1.0 - level) / 2.0
    out = []
    for i, a in enumerate(methods):
        for b in methods[i + 1:]:
            wins = np.zeros(len(scenarios))
            seen = np.zeros(len(scenarios))
            for j in judgements:
                if a in j.ranks and b in j.ranks:
                    seen[where[j.scenario]] += 1
                    wins[where[j.scenario]] += j.ranks[a] < j.ranks[b]
            total = int(seen.sum())
            if total == 0:
                continue
            share = float(wins.sum()) / total
            compared_on = int((seen > 0).sum())
            share_ci = ratio_ci = None
            if compared_on >= min_scenarios:
                boot_seen = seen[resample].sum(axis=1)
                boot_wins = wins[resample].sum(axis=1)
                shares = boot_wins[boot_seen > 0] / boot_seen[boot_seen > 0]
                lo, hi = (float(q) for q in np.quantile(shares, [tail, 1.0 - tail]))
                share_ci, ratio_ci = (lo, hi), (odds(lo), odds(hi))
            out.append(
                Preference(a, b, total, int(wins.sum()), compared_on, share, share_ci, odds(share), ratio_ci)
            )
    return out


def kendalls_w(ranks: np.ndarray) -> float:
    """Kendall's coefficient of concordance for m raters (rows) ranking the same n items (columns).

    W = 12 S / (m² (n³ − n)), S the squared deviations of the items' rank sums from their mean;
    1 when all raters agree, 0 when the rank sums are all equal. Rankings have no ties.
    """
    m, n = ranks.shape
    if m < 2 or n < 2:
        raise ValueError(f"Kendall's W needs at least 2 raters and 2 items, got {m} and {n}")
    sums = ranks.sum(axis=0)
    s = float(((sums - m * (n + 1) / 2.0) ** 2).sum())
    return 12.0 * s / (m * m * (n**3 - n))


@dataclass(frozen=True)
class Concordance:
    """Kendall's W averaged over the scenarios that two or more raters ranked.

    W is not chance-corrected: with m raters who rank at random its expected value is 1/m, so
    `chance` (the mean of 1/m over the same scenarios) is the level to compare `mean_w` with.
    """

    mean_w: float | None
    scenarios: int
    chance: float | None


def mean_kendalls_w(judgements: Iterable[Judgement]) -> Concordance:
    by_scenario: dict[int, list[Judgement]] = defaultdict(list)
    for j in judgements:
        by_scenario[j.scenario].append(j)
    values, chance = [], []
    for group in by_scenario.values():
        if len(group) < 2:
            continue
        methods = sorted(group[0].ranks)
        values.append(kendalls_w(np.array([[j.ranks[m] for m in methods] for j in group], dtype=float)))
        chance.append(1.0 / len(group))
    if not values:
        return Concordance(None, 0, None)
    return Concordance(float(np.mean(values)), len(values), float(np.mean(chance)))


def krippendorff_alpha(units: Iterable[Sequence[float]], metric: str = "ordinal") -> float | None:
    """Krippendorff's α for units each holding the values that different raters gave it.

    Units with fewer than two values can't be paired and are dropped. α = 1 − D_o / D_e from the
    coincidence matrix o (Krippendorff 2011, "Computing Krippendorff's Alpha-Reliability"):
    α = 1 − (n − 1) Σ o_ck δ²_ck / Σ n_c n_k δ²_ck. None when there is no variation to compare.
    """
    pairable = [list(u) for u in units if len(u) >= 2]
    values = sorted({v for u in pairable for v in u})
    if len(values) < 2:
        return None
    index = {v: i for i, v in enumerate(values)}
    o = np.zeros((len(values), len(values)))
    for u in pairable:
        m = len(u)
        for i, c in enumerate(u):
            for k, v in enumerate(u):
                if i != k:
                    o[index[c], index[v]] += 1.0 / (m - 1)
    n_c = o.sum(axis=1)
    n = n_c.sum()
    v = np.array(values, dtype=float)
    if metric == "nominal":
        delta = (v[:, None] != v[None, :]).astype(float)
    elif metric == "interval":
        delta = (v[:, None] - v[None, :]) ** 2
    elif metric == "ordinal":
        # δ²_ck = (Σ_{g=c..k} n_g − (n_c + n_k)/2)²: distance in how many values lie between
        cum = np.concatenate([[0.0], np.cumsum(n_c)])
        lo = np.minimum.outer(np.arange(len(v)), np.arange(len(v)))
        hi = np.maximum.outer(np.arange(len(v)), np.arange(len(v)))
        delta = (cum[hi + 1] - cum[lo] - (n_c[:, None] + n_c[None, :]) / 2.0) ** 2
    else:
        raise ValueError(f"unknown metric {metric!r}; use nominal, ordinal or interval")
    expected = float((np.outer(n_c, n_c) * delta).sum())
    if expected == 0.0:
        return None
    return 1.0 - (n - 1.0) * float((o * delta).sum()) / expected


def alpha_of_judgements(judgements: Iterable[Judgement]) -> float | None:
    """Ordinal α with one unit per (scenario, method): the ranks the raters gave that text."""
    units: dict[tuple[int, str], list[int]] = defaultdict(list)
    for j in judgements:
        for method, rank in j.ranks.items():
            units[(j.scenario, method)].append(rank)
    return krippendorff_alpha(units.values(), "ordinal")
