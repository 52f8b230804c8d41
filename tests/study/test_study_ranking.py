"""The check of a submitted ranking: complete, in range, no ties, nothing unknown."""

from __future__ import annotations

import pytest

from factpatch.study.ranking import RankingInvalid, ordinal, parse_ranking

LABELS = ["A", "B", "C"]


def form(consistency: dict[str, str], fluency: dict[str, str]) -> dict[str, str]:
    out = {"csrf": "x", "position": "1"}
    out.update({f"consistency-{k}": v for k, v in consistency.items()})
    out.update({f"fluency-{k}": v for k, v in fluency.items()})
    return out


def test_valid_ranking():
    got = parse_ranking(form({"A": "2", "B": "1", "C": "3"}, {"A": "1", "B": "3", "C": "2"}), LABELS)
    assert got == {"consistency": {"A": 2, "B": 1, "C": 3}, "fluency": {"A": 1, "B": 3, "C": 2}}


def test_two_texts():
    got = parse_ranking(form({"A": "2", "B": "1"}, {"A": "1", "B": "2"}), ["A", "B"])
    assert got == {"consistency": {"A": 2, "B": 1}, "fluency": {"A": 1, "B": 2}}


def errors_of(f: dict[str, str], labels=LABELS) -> tuple[str, ...]:
    with pytest.raises(RankingInvalid) as info:
        parse_ranking(f, labels)
    return info.value.errors


def test_tie_is_refused():
    errors = errors_of(form({"A": "1", "B": "1", "C": "3"}, {"A": "1", "B": "2", "C": "3"}))
    assert errors == ("Consistency: texts A and B are both ranked 1st; every text needs a different rank.",)


def test_three_way_tie():
    errors = errors_of(form({"A": "1", "B": "2", "C": "3"}, {"A": "2", "B": "2", "C": "2"}))
    assert errors == ("Fluency: texts A, B and C are all ranked 2nd; every text needs a different rank.",)


def test_missing_text_is_refused():
    errors = errors_of(form({"A": "1", "B": "2"}, {"A": "1", "B": "2", "C": ""}))
    assert errors == ("Consistency: give text C a rank.", "Fluency: give text C a rank.")


@pytest.mark.parametrize("bad", ["0", "4", "-1", "1.5", "one", "²"])
def test_out_of_range_or_not_a_number(bad):
    errors = errors_of(form({"A": bad, "B": "2", "C": "3"}, {"A": "1", "B": "2", "C": "3"}))
    assert len(errors) == 1 and errors[0].startswith("Consistency: text A has rank") and "1 to 3" in errors[0]


def test_unknown_text_is_refused():
    f = form({"A": "1", "B": "2", "C": "3"}, {"A": "1", "B": "2", "C": "3"})
    f["fluency-D"] = "4"
    assert errors_of(f) == ("Fluency: there is no text D.",)


def test_all_problems_reported_at_once():
    errors = errors_of(form({"B": "1"}, {"A": "1", "B": "1", "C": "1"}))
    assert errors == (
        "Consistency: give texts A and C a rank.",
        "Fluency: texts A, B and C are all ranked 1st; every text needs a different rank.",
    )


def test_ordinal():
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st",
    ]
