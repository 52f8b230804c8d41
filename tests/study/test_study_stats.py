"""Statistics on hand-made answers whose results are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from factpatch.study.stats import (
    MIN_SCENARIOS_FOR_INTERVAL,
    Concordance,
    Judgement,
    alpha_of_judgements,
    kendalls_w,
    krippendorff_alpha,
    mean_kendalls_w,
    mean_ranks,
    pairwise_preferences,
    rank_counts,
)

METHODS = ["rome", "ft+l", "none"]


def j(rater: int, scenario: int, *best_first: str) -> Judgement:
    return Judgement(rater, scenario, {m: k for k, m in enumerate(best_first, start=1)})


def test_kendalls_w_extremes():
    assert kendalls_w(np.array([[1, 2, 3]] * 4)) == pytest.approx(1.0)
    assert kendalls_w(np.array([[1, 2, 3], [2, 3, 1], [3, 1, 2]])) == pytest.approx(0.0)
    assert kendalls_w(np.array([[1, 2], [2, 1]])) == pytest.approx(0.0)


def test_kendalls_w_by_hand():
    # Rank sums 4, 5, 6 (mean 5): S = 2; W = 12·2 / (2²·(27 − 3)) = 0.25
    assert kendalls_w(np.array([[1, 2, 3], [3, 1, 2]])) == pytest.approx(0.25)
    with pytest.raises(ValueError):
        kendalls_w(np.array([[1, 2, 3]]))


def test_mean_kendalls_w_skips_scenarios_with_one_rater():
    js = [j(1, 1, "rome", "ft+l", "none"), j(2, 1, "rome", "ft+l", "none"),  # W = 1
          j(1, 2, "rome", "ft+l", "none"), j(2, 2, "none", "ft+l", "rome"),  # W = 0
          j(3, 3, "rome", "ft+l", "none")]
    got = mean_kendalls_w(js)
    assert (got.mean_w, got.scenarios, got.chance) == (pytest.approx(0.5), 2, pytest.approx(0.5))
    assert mean_kendalls_w(js[-1:]) == Concordance(None, 0, None)


# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 coders, 12 units,
# missing values. Published: nominal 0.743, ordinal 0.815, interval 0.849.
RELIABILITY_DATA = [
    [1, 1, 1], [2, 2, 3, 2], [3, 3, 3, 3], [3, 3, 3, 3], [2, 2, 2, 2], [1, 2, 3, 4],
    [4, 4, 4, 4], [1, 1, 2, 1], [2, 2, 2, 2], [5, 5, 5], [1, 1], [3],
]


@pytest.mark.parametrize(("metric", "expected"), [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849)])
def test_krippendorff_alpha_published_example(metric, expected):
    assert krippendorff_alpha(RELIABILITY_DATA, metric) == pytest.approx(expected, abs=5e-4)


def test_krippendorff_alpha_edges():
    assert krippendorff_alpha([[1, 1], [2, 2], [3, 3]]) == pytest.approx(1.0)
    assert krippendorff_alpha([[1, 1], [1, 1]]) is None  # no variation: undefined
    assert krippendorff_alpha([[1], [2]]) is None  # nothing pairable
    with pytest.raises(ValueError):
        krippendorff_alpha([[1, 2]], "ratio")


def test_alpha_of_identical_rankings_is_one():
    js = [j(r, s, "rome", "ft+l", "none") for r in (1, 2, 3) for s in (1, 2)]
    assert alpha_of_judgements(js) == pytest.approx(1.0)


def test_rank_counts_and_means():
    js = [j(1, 1, "rome", "ft+l", "none"), j(2, 1, "rome", "none", "ft+l"), j(1, 2, "ft+l", "rome", "none")]
    assert rank_counts(js, METHODS) == {"rome": [2, 1, 0], "ft+l": [1, 1, 1], "none": [0, 1, 2]}
    means = mean_ranks(js, METHODS)
    assert means["rome"] == pytest.approx(4 / 3) and means["none"] == pytest.approx(8 / 3)


def test_pairwise_preference_counts_and_ratio():
    # rome above ft+l in 3 of 4 comparisons: 75 %, 3× as often as the reverse.
    js = [
        j(1, 1, "rome", "ft+l", "none"),
        j(2, 1, "rome", "none", "ft+l"),
        j(1, 2, "none", "rome", "ft+l"),
        j(2, 2, "ft+l", "none", "rome"),
    ]
    # two scenarios are too few for an interval by default; min_scenarios=1 to check the arithmetic
    prefs = {(p.better, p.worse): p for p in pairwise_preferences(js, METHODS, n_boot=500, seed=1, min_scenarios=1)}
    assert list(prefs) == [("rome", "ft+l"), ("rome", "none"), ("ft+l", "none")]
    p = prefs[("rome", "ft+l")]
    assert (p.comparisons, p.wins, p.share, p.ratio) == (4, 3, 0.75, 3.0)
    lo, hi = p.share_ci
    assert 0.0 <= lo <= p.share <= hi <= 1.0
    assert p.ratio_ci == (pytest.approx(lo / (1 - lo)), pytest.approx(hi / (1 - hi) if hi < 1 else math.inf))
    q = prefs[("ft+l", "none")]
    assert (q.wins, q.share, q.ratio) == (2, 0.5, 1.0)
    assert prefs[("rome", "none")].wins == 2


def test_pairwise_bootstrap_is_seeded_and_resamples_scenarios():
    js = [j(1, s, "rome", "ft+l") if s % 3 else j(1, s, "ft+l", "rome") for s in range(30)]  # 20 of 30
    a = pairwise_preferences(js, ["rome", "ft+l"], n_boot=1000, seed=3)[0]
    b = pairwise_preferences(js, ["rome", "ft+l"], n_boot=1000, seed=3)[0]
    assert a == b
    assert a.share == pytest.approx(2 / 3) and a.ratio == pytest.approx(2.0)
    # binomial standard error sqrt(p(1-p)/30) ~ 0.086: a 95 % interval about ±0.17 wide
    assert a.share_ci[0] == pytest.approx(2 / 3 - 0.17, abs=0.06)
    assert a.share_ci[1] == pytest.approx(2 / 3 + 0.17, abs=0.06)


def test_unanimous_preference_has_infinite_ratio():
    js = [j(1, s, "rome", "ft+l") for s in range(5)]
    p = pairwise_preferences(js, ["rome", "ft+l"], n_boot=100)[0]
    assert p.share == 1.0 and math.isinf(p.ratio) and p.share_ci == (1.0, 1.0)


def test_too_few_scenarios_give_counts_and_no_interval():
    # One answer: 1 of 1, and a bootstrap over one scenario would say "95 % CI 100-100 %".
    p = pairwise_preferences([j(1, 1, "rome", "ft+l")], ["rome", "ft+l"], n_boot=100)[0]
    assert (p.comparisons, p.wins, p.scenarios, p.share) == (1, 1, 1, 1.0)
    assert p.share_ci is None and p.ratio_ci is None
    # many raters on few scenarios are still few scenarios: the bootstrap resamples scenarios
    js = [j(r, s, "rome", "ft+l") for r in range(10) for s in range(MIN_SCENARIOS_FOR_INTERVAL - 1)]
    p = pairwise_preferences(js, ["rome", "ft+l"], n_boot=100)[0]
    assert p.comparisons == 10 * (MIN_SCENARIOS_FOR_INTERVAL - 1) and p.share_ci is None
    js += [j(1, MIN_SCENARIOS_FOR_INTERVAL, "ft+l", "rome")]
    p = pairwise_preferences(js, ["rome", "ft+l"], n_boot=100)[0]
    assert p.scenarios == MIN_SCENARIOS_FOR_INTERVAL and p.share_ci is not None and p.ratio_ci is not None


def test_pairs_never_ranked_together_are_left_out():
    js = [j(1, 1, "rome", "ft+l"), j(1, 2, "none", "rome")]
    pairs = [(p.better, p.worse) for p in pairwise_preferences(js, METHODS, n_boot=10)]
    assert pairs == [("rome", "ft+l"), ("rome", "none")]
