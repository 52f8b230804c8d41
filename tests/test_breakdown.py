"""`factpatch eval paired` and `eval blocks`: a run's cases compared pairwise and in blocks of edit
order, read from the records without writing to them."""

import json

import pytest

from factpatch.cli import main
from factpatch.core.errors import FactpatchError
from factpatch.evaluation.breakdown import blocks, blocks_csv, load_side, paired


def _lines(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _sequential(tmp_path, name="seq", n=6):
    """Checkpoints at 3 and 6 edits. rome: ES 1 on every case at 3 edits; at 6 the first three
    cases are lost (ES 0) and the last three hold. memit: ES 1 everywhere. NS is 1 for memit, 0.5 for rome."""
    out = tmp_path / name
    out.mkdir()
    (out / "config.json").write_text(json.dumps({
        "protocol": "sequential", "model": "m", "dataset": {"name": "x", "kind": "counterfact", "n_cases": n},
        "methods": ["memit", "rome"], "n": n, "batch_size": 3, "checkpoint_every": 3}))
    records = []
    for edits in (3, 6):
        for i in range(edits):
            lost = edits == 6 and i < 3
            records.append({"method": "rome", "edits": edits, "index": i, "case_id": f"c{i}",
                            "metrics": {"ES": 0.0 if lost else 1.0, "NS": 0.5}})
            records.append({"method": "memit", "edits": edits, "index": i, "case_id": f"c{i}",
                            "metrics": {"ES": 1.0, "NS": 1.0}})
    _lines(out / "results.jsonl", records)
    return out


def _single(tmp_path, name, es):
    out = tmp_path / name
    out.mkdir()
    (out / "config.json").write_text(json.dumps({
        "model": "m", "dataset": {"name": "x", "kind": "counterfact"}, "methods": ["rome"]}))
    _lines(out / "results.jsonl", [{"method": "rome", "index": i, "case_id": f"c{i}", "metrics": {"ES": v}}
                                   for i, v in enumerate(es)])
    return out


def test_paired_difference_is_taken_case_by_case_at_the_latest_checkpoint(tmp_path):
    run = _sequential(tmp_path)
    before = {p: p.read_bytes() for p in run.iterdir()}
    result = paired(load_side(run, "memit"), load_side(run, "rome"))
    assert {p: p.read_bytes() for p in run.iterdir()} == before  # only read
    assert result.a.edits == 6 and result.cases == 6
    assert result.metrics["ES"].b_minus_a.mean == pytest.approx(-0.5)
    assert result.metrics["NS"].b_minus_a.mean == pytest.approx(-0.5)
    # every case's NS difference is -0.5: the paired interval has no width, the unpaired means' do not overlap
    assert result.metrics["NS"].b_minus_a.lo == pytest.approx(-0.5) and result.metrics["NS"].b_minus_a.hi == pytest.approx(-0.5)
    early = paired(load_side(run, "memit", edits=3), load_side(run, "rome", edits=3))
    assert early.cases == 3 and early.metrics["ES"].b_minus_a.mean == 0.0


def test_paired_over_two_directories_on_the_cases_they_share(tmp_path):
    a = _single(tmp_path, "a", [1.0, 1.0, 0.0, 1.0])
    b = _single(tmp_path, "b", [1.0, 0.0, 0.0])  # one case fewer: only the shared three count
    result = paired(load_side(a, "rome"), load_side(b, "rome"))
    assert result.cases == 3
    assert result.metrics["ES"].a.mean == pytest.approx(2 / 3) and result.metrics["ES"].b_minus_a.mean == pytest.approx(-1 / 3)


def test_a_metric_of_a_sample_of_cases_is_paired_on_that_sample_and_entropy_also_relative(tmp_path, capsys):
    """Generation entropy is measured on the first few edited cases only: it is compared where
    both sides have it (not dropped because the other cases lack it), and relative to A as the
    issue's "within 5 % of the unedited model's" is stated."""
    run = _sequential(tmp_path)
    records = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    for r in records:
        if r["edits"] == 6 and r["index"] < 2:
            r["metrics"]["fluency"] = {"memit": 5.0, "rome": 4.0}[r["method"]] + 0.5 * r["index"]
    _lines(run / "results.jsonl", records)
    result = paired(load_side(run, "memit"), load_side(run, "rome"))
    entropy = result.metrics["fluency"]
    assert result.cases == 6 and entropy.a.n == 2 and result.metrics["ES"].a.n == 6
    assert entropy.b_minus_a.mean == pytest.approx(-1.0)
    assert entropy.relative.mean == pytest.approx(4.25 / 5.25 - 1)
    assert result.metrics["ES"].relative is None
    assert "relative" in result.to_dict()["metrics"]["fluency"]
    assert main(["eval", "paired", str(run), "--method", "memit", "--method-b", "rome"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if "fluency" in line)
    assert "B - A -100.0" in line and "= -19.0" in line and line.endswith("(2 cases)")


def test_blocks_show_which_edits_decayed(tmp_path):
    side = load_side(_sequential(tmp_path), "rome")
    rows = blocks(side, 3)
    assert [(b.first, b.last, b.metrics["ES"].mean, b.metrics["ES"].n) for b in rows] == [(0, 2, 0.0, 3), (3, 5, 1.0, 3)]
    header, *lines = blocks_csv(side, rows).splitlines()
    assert header.startswith("method,edits,first,last,cases,ES,ES_lo,ES_hi") and lines[0].startswith("rome,6,0,2,3,0,")
    assert [b.metrics["ES"].mean for b in blocks(load_side(tmp_path / "seq", "rome", edits=3), 2)] == [1.0, 1.0]
    only_late = load_side(tmp_path / "seq", "rome", cases=range(3, 6))
    assert set(only_late.metrics) == {"c3", "c4", "c5"}


def test_cli_prints_and_writes_and_refuses_bad_input_in_one_line(tmp_path, capsys):
    run = _sequential(tmp_path)
    assert main(["eval", "paired", str(run), "--method", "memit", "--method-b", "rome", "--json", str(tmp_path / "p.json")]) == 0
    out = capsys.readouterr().out
    assert "6 cases scored on both sides" in out and "ES: A 100.0 (100.0 to 100.0)" in out and "B - A -50.0" in out
    written = json.loads((tmp_path / "p.json").read_text())
    assert written["edits"] == 6 and written["metrics"]["ES"]["b_minus_a"]["mean"] == pytest.approx(-0.5)
    assert main(["eval", "blocks", str(run), "--method", "rome", "--size", "3", "--csv", str(tmp_path / "b.csv")]) == 0
    out = capsys.readouterr().out
    assert "0-2 (3): ES 0.0" in out and "3-5 (3): ES 100.0" in out and "oldest edits first" in out
    assert (tmp_path / "b.csv").read_text().count("\n") == 3
    single = _single(tmp_path, "single", [1.0])
    cases = [
        (["paired", str(run), "--method", "rome"], "both sides are the same"),
        (["paired", str(run), "--method", "rome", "--method-b", "memit", "--edits", "4"],
         "has no rome checkpoint at 4 edits (it has 3, 6)"),
        (["paired", str(run), "--method", "ft", "--method-b", "rome"], "has no method 'ft'"),
        (["paired", str(run), str(single), str(single), "--method", "rome"], "one or two directories, not 3"),
        (["paired", str(tmp_path / "missing"), "--method", "rome", "--method-b", "memit"], "not a result directory"),
        (["blocks", str(run), "--method", "rome", "--size", "0"], "a block holds at least one case, not 0"),
        (["blocks", str(run), "--method", "rome", "--edits", "5"], "no rome checkpoint at 5 edits"),
        (["paired", str(run), "--method", "rome", "--method-b", "memit", "--cases", "9-10"], "no rome case at positions 9-10"),
    ]
    for argv, message in cases:
        assert main(["eval", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, (argv, err)


def test_a_single_edit_run_against_a_checkpoint_and_what_cannot_be_read(tmp_path, capsys):
    run, single = _sequential(tmp_path), _single(tmp_path, "single", [1.0, 0.0, 1.0])
    # --edits names the sequential side's checkpoint; the single-edit run has one record a case
    assert main(["eval", "paired", str(single), str(run), "--method", "rome", "--edits", "3"]) == 0
    assert "3 cases scored on both sides" in capsys.readouterr().out
    # blocks of a single-edit run do not speak of edits that are older: each case was edited alone
    assert main(["eval", "blocks", str(single), "--method", "rome", "--size", "2"]) == 0
    out = capsys.readouterr().out
    assert "each case edited alone" in out and "oldest" not in out
    with pytest.raises(FactpatchError, match="single-edit run"):
        load_side(single, "rome", edits=3)
    (run / "results.jsonl").write_text("")
    with pytest.raises(FactpatchError, match="scored no checkpoint"):
        load_side(run, "rome")


def test_known_facts_compare_fact_by_fact_where_the_entries_name_them(tmp_path, capsys):
    run = _sequential(tmp_path)
    old = {"method": "memit", "edits": 6, "perplexity": 9.0, "known_kept": 3, "known_total": 4}
    named = {"method": "rome", "edits": 6, "perplexity": 9.5, "known_kept": 1, "known_total": 4,
             "known_checked": ["k0", "k1", "k2", "k3"], "known_lost": ["k1", "k2", "k3"]}
    _lines(run / "health.jsonl", [old, named])
    assert paired(load_side(run, "memit"), load_side(run, "rome")).known is None  # written before they named them
    _lines(run / "health.jsonl", [{**old, "known_checked": ["k0", "k1", "k2", "k3"], "known_lost": ["k3"]}, named])
    known = paired(load_side(run, "memit"), load_side(run, "rome")).known
    assert (known.a.mean, known.b.mean, known.a.n) == (0.75, 0.25, 4) and known.b_minus_a.mean == pytest.approx(-0.5)
    assert main(["eval", "paired", str(run), "--method", "memit", "--method-b", "rome"]) == 0
    out = capsys.readouterr().out
    assert "known facts kept: A 75.0" in out and "log-prob change" not in out  # the entries do not record it
    change = {"k0": -0.25, "k1": -2.0, "k2": -3.0, "k3": -0.5}
    _lines(run / "health.jsonl", [{**old, "known_checked": ["k0", "k1", "k2", "k3"], "known_lost": ["k3"],
                                   "known_logprob_change": {k: 0.0 for k in change}},
                                  {**named, "known_logprob_change": change}])
    assert main(["eval", "paired", str(run), "--method", "memit", "--method-b", "rome"]) == 0
    assert "answer log-prob change (nats): A +0.00 (+0.00 to +0.00)   B -1.44" in capsys.readouterr().out
