"""`study analyze` on a database of hand-made answers."""

from __future__ import annotations

import argparse
import csv
import json
import re

import pytest

from factpatch.core.errors import FactpatchError
from factpatch.study.analyze import analyze_study
from factpatch.study.cli import add_study_parser
from factpatch.study.stats import MIN_SCENARIOS_FOR_INTERVAL

R, F, N = "rome", "ft+l", "none"


@pytest.fixture
def answered(study, store_answer):
    """Raters 1 and 2 answer all 4 scenarios; rater 3 answers one. 9 answers in all.

    Consistency: rome first every time; ft+l second in 6 of 9. Fluency: none first every time,
    ft+l above rome in 6 of 9.
    """
    for rater, count in ((1, 4), (2, 4), (3, 1)):
        for k in range(count):
            if (rater, k) in {(1, 0), (2, 1), (3, 0)}:
                store_answer(study.db_path, rater, [R, N, F], [N, R, F])
            else:
                store_answer(study.db_path, rater, [R, F, N], [N, F, R])
    return study


def test_analysis_numbers(answered, tmp_path):
    a = analyze_study(answered.db_path, tmp_path / "out", n_boot=200)
    assert (a.answers, a.raters_answering, a.raters_total, a.scenarios_answered) == (9, 3, 3, 4)
    consistency, fluency = a.criteria
    assert consistency.rank_counts == {R: [9, 0, 0], F: [0, 6, 3], N: [0, 3, 6]}
    prefs = {(p.better, p.worse): p for p in consistency.preferences}
    assert (prefs[(R, F)].wins, prefs[(R, F)].comparisons, prefs[(R, F)].share) == (9, 9, 1.0)
    assert prefs[(F, N)].share == pytest.approx(6 / 9) and prefs[(F, N)].ratio == pytest.approx(2.0)
    flu = {(p.better, p.worse): p for p in fluency.preferences}
    assert flu[(R, F)].share == pytest.approx(3 / 9) and flu[(R, F)].ratio == pytest.approx(0.5)
    assert fluency.rank_counts[N] == [9, 0, 0]
    # agreement: scenarios with two or more raters; rome always first keeps it well above chance
    w = consistency.kendalls_w
    assert w.scenarios == 4 and w.chance == pytest.approx((1 / 3 + 3 * 1 / 2) / 4) and w.chance < w.mean_w <= 1.0
    assert consistency.krippendorff_alpha is not None and consistency.krippendorff_alpha > 0.5


def test_analysis_files(answered, tmp_path):
    out = tmp_path / "out"
    analyze_study(answered.db_path, out, n_boot=100)
    assert {p.name for p in out.iterdir()} == {"ranks.png", "report.md", "summary.json", "pairwise.csv", "rankings.csv"}
    assert (out / "ranks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader(open(out / "rankings.csv", encoding="utf-8")))
    assert len(rows) == 9 * 2 * 3  # answers × criteria × texts
    assert {r["method"] for r in rows} == {R, F, N} and {r["label"] for r in rows} == {"A", "B", "C"}
    summary = json.loads((out / "summary.json").read_text())
    first = summary["criteria"][0]["preferences"][0]
    assert (first["better"], first["worse"], first["share"], first["ratio"]) == (R, F, 1.0, None)  # inf -> null
    report = (out / "report.md").read_text()
    assert "rome ranked above ft+l for consistency in 100.0 % of 9 comparisons" in report
    assert "ft+l ranked above none for consistency in 66.7 % of 9 comparisons" in report and "2.00× as often" in report
    assert "Kendall's W" in report and "Krippendorff's α (ordinal)" in report
    pairwise = list(csv.DictReader(open(out / "pairwise.csv", encoding="utf-8")))
    assert len(pairwise) == 6


def test_no_answers_is_a_clear_error(study, tmp_path):
    with pytest.raises(FactpatchError, match="no answers yet"):
        analyze_study(study.db_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_analyze(answered, tmp_path, capsys):
    p = argparse.ArgumentParser()
    add_study_parser(p.add_subparsers(dest="command"))
    args = p.parse_args(["study", "analyze", "--db", str(answered.db_path), "--out", str(tmp_path / "o"),
                         "--bootstrap", "50"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "9 answers from 3 of 3 raters" in out and "rome ranked above ft+l for consistency" in out
    with pytest.raises(FactpatchError, match="--bootstrap must be at least 1"):
        args.bootstrap = 0
        args.func(args)


def run_cli(db_path, out, capsys, *extra: str) -> str:
    p = argparse.ArgumentParser()
    add_study_parser(p.add_subparsers(dest="command"))
    args = p.parse_args(["study", "analyze", "--db", str(db_path), "--out", str(out), "--bootstrap", "200", *extra])
    assert args.func(args) == 0
    return capsys.readouterr().out


def test_one_answer_says_so_and_prints_no_interval(study, store_answer, tmp_path, capsys):
    store_answer(study.db_path, 1, [R, F, N], [N, F, R])
    out = run_cli(study.db_path, tmp_path / "o", capsys)
    assert "1 answers" not in out and "1 answer from 1 of 3 raters" in out
    line = next(x for x in out.splitlines() if x.strip().startswith("rome ranked above ft+l for consistency"))
    assert line.strip() == (
        f"rome ranked above ft+l for consistency in 100.0 % of 1 comparison, never the reverse; "
        f"no interval: compared on 1 scenario, at least {MIN_SCENARIOS_FOR_INTERVAL} needed"
    )
    assert "CI" not in out and "∞" not in out and "inf" not in out
    pairwise = (tmp_path / "o" / "pairwise.csv").read_text()
    assert "inf" not in pairwise and "nan" not in pairwise
    row = next(csv.DictReader(pairwise.splitlines()))
    assert (row["comparisons"], row["scenarios"], row["share"]) == ("1", "1", "1.0000")
    assert row["share_lo"] == row["share_hi"] == row["ratio"] == row["ratio_lo"] == row["ratio_hi"] == ""
    report = (tmp_path / "o" / "report.md").read_text()
    assert "CI" not in report and "∞" not in report and "no interval" in report
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    first = summary["criteria"][0]["preferences"][0]
    assert first["share_ci"] is None and first["ratio"] is None


def test_enough_scenarios_give_intervals_and_still_no_inf(tmp_path, store_answer, capsys):
    from factpatch.study.create import create_study
    from factpatch.study.scenarios import Scenario

    scenarios = [
        Scenario(f"c{k}", f"Counterfactual {k}", "prompt", {R: f"r{k}", F: f"f{k}", N: f"n{k}"})
        for k in range(MIN_SCENARIOS_FOR_INTERVAL + 1)
    ]
    invites = create_study(tmp_path / "s.db", scenarios, raters=2, seed=4)
    for rater in (1, 2):
        for k in range(len(scenarios)):
            # rome always above the rest for consistency; ft+l above none in all but one answer
            store_answer(invites.db_path, rater, [R, N, F] if (rater, k) == (1, 0) else [R, F, N], [N, F, R])
    out = run_cli(invites.db_path, tmp_path / "o", capsys)
    assert "no interval" not in out
    line = next(x for x in out.splitlines() if x.strip().startswith("ft+l ranked above none for consistency"))
    assert re.fullmatch(
        r"ft\+l ranked above none for consistency in 91\.7 % of 12 comparisons \(95 % CI [\d.]+–100\.0 %\), "
        r"11\.00× as often as the reverse \(ratio at least [\d.]+×\)", line.strip()
    ), line
    never = next(x for x in out.splitlines() if x.strip().startswith("rome ranked above ft+l for consistency"))
    assert "(95 % CI 100.0–100.0 %), never the reverse" in never and "×" not in never
    pairwise = (tmp_path / "o" / "pairwise.csv").read_text()
    assert "inf" not in pairwise
    rows = {(r["criterion"], r["method"], r["other"]): r for r in csv.DictReader(pairwise.splitlines())}
    assert rows[("consistency", F, N)]["ratio"] == "11.0000" and rows[("consistency", F, N)]["ratio_hi"] == ""
    assert rows[("consistency", R, F)]["share_lo"] == "1.0000" and rows[("consistency", R, F)]["ratio"] == ""
