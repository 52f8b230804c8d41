"""Reading the texts to rank: every bad line is refused with its line number."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from factpatch.core.errors import FactpatchError
from factpatch.study.scenarios import generate_scenarios, read_jsonl


def write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "texts.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_reads_sample(scenarios):
    assert len(scenarios) == 4
    first = scenarios[0]
    assert first.case_id == "3"
    assert first.counterfactual == "Autonomous University of Madrid is located in Sweden"
    assert list(first.texts) == ["rome", "ft+l", "none"]


def test_blank_lines_are_skipped_and_line_numbers_count_them(tmp_path, sample_lines):
    path = write(tmp_path, [json.dumps(sample_lines[0]), "", "{not json"])
    with pytest.raises(FactpatchError, match=r"texts.jsonl line 3: not valid JSON"):
        read_jsonl(path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r.pop("texts"), r"line 2: missing field texts"),
        (lambda r: (r.pop("prompt"), r.pop("case_id")), r"line 2: missing fields case_id, prompt"),
        (lambda r: r.update(texts={"rome": "only one"}), r"line 2: 1 text; a ranking needs at least 2"),
        (lambda r: r.update(texts={}), r"line 2: 0 texts; a ranking needs at least 2"),
        (lambda r: r.update(texts={"rome": "x", "none": ""}), r"line 2: the text for method 'none' must be"),
        (lambda r: r.update(texts=["a", "b"]), r"line 2: texts must be an object"),
        (lambda r: r.update(counterfactual="  "), r"line 2: counterfactual is empty"),
        (lambda r: r.update(case_id=None), r"line 2: case_id must be"),
        (lambda r: r.update(case_id=3), r"line 2: case_id 3 repeats .*line 1"),
    ],
)
def test_bad_line_names_the_line(tmp_path, sample_lines, edit, message):
    second = dict(sample_lines[1])
    edit(second)
    path = write(tmp_path, [json.dumps(sample_lines[0]), json.dumps(second)])
    with pytest.raises(FactpatchError, match=message):
        read_jsonl(path)


def test_not_an_object(tmp_path):
    with pytest.raises(FactpatchError, match="line 1: expected a JSON object, got list"):
        read_jsonl(write(tmp_path, ["[1, 2]"]))


def test_empty_file(tmp_path):
    with pytest.raises(FactpatchError, match="no scenarios"):
        read_jsonl(write(tmp_path, ["", "  "]))


def test_missing_file(tmp_path):
    with pytest.raises(FactpatchError, match="cannot read .*nope.jsonl"):
        read_jsonl(tmp_path / "nope.jsonl")


def test_methods_select_and_order_texts(tmp_path, sample_lines):
    path = write(tmp_path, [json.dumps(r) for r in sample_lines])
    picked = read_jsonl(path, ["none", "rome"])
    assert all(list(s.texts) == ["none", "rome"] for s in picked)
    with pytest.raises(FactpatchError, match="line 1: no text for method memit"):
        read_jsonl(path, ["rome", "memit"])


def test_model_generation_without_compare_says_what_to_do(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "factpatch.evaluation.compare", None)  # import of it fails
    with pytest.raises(FactpatchError, match="pass --from-jsonl"):
        generate_scenarios("gpt2", "counterfact:x.json", 5, ["rome", "none"], seed=0)


def test_model_generation_checks_what_compare_returns(monkeypatch, sample_lines):
    import sys
    import types

    calls = {}

    def compare_texts(**kwargs):
        calls.update(kwargs)
        return sample_lines[:2]

    monkeypatch.setitem(sys.modules, "factpatch.evaluation.compare", types.SimpleNamespace(compare_texts=compare_texts))
    got = generate_scenarios("gpt2", "counterfact:x.json", 2, ["rome", "none"], seed=4)
    assert [s.case_id for s in got] == ["3", "8"]
    assert calls == {"model": "gpt2", "dataset": "counterfact:x.json", "n": 2, "methods": ["rome", "none"], "seed": 4}
