"""`factpatch eval curves`: several sequential runs on one figure, drawn from their records
without writing to them. (A run's own curves.csv/png are checked in test_sequential.py.)"""

import json

import pytest

from factpatch.cli import main
from factpatch.core.errors import FactpatchError
from factpatch.evaluation.curves import load_run_curves, plot_runs


def _lines(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _run(tmp_path, name, kind="counterfact", es=(1.0, 0.0, 1.0, 1.0), protocol="sequential"):
    """A sequential run of 4 edits in batches of 2 with checkpoints at 2 and 4: alphaedit and none."""
    out = tmp_path / name
    out.mkdir()
    (out / "config.json").write_text(json.dumps({
        "protocol": protocol, "model": f"model-{name}", "dataset": {"name": "x", "kind": kind, "n_cases": 8},
        "methods": ["alphaedit", "none"], "n": 4, "batch_size": 2, "checkpoint_every": 2}))
    metric = "ES" if kind == "counterfact" else "efficacy"
    records = []
    for edits in (2, 4):
        for i in range(edits):
            records.append({"method": "alphaedit", "edits": edits, "index": i, "case_id": str(i), "metrics": {metric: es[i]}})
            records.append({"method": "none", "edits": edits, "index": i, "case_id": str(i), "metrics": {metric: 0.0}})
    _lines(out / "results.jsonl", records)
    _lines(out / "health.jsonl", [{"method": "unedited", "edits": 0, "perplexity": 9.0, "known_share": 1.0}]
           + [{"method": m, "edits": e, "perplexity": 9.0 + e, "known_share": 1 - e / 10} for m in ("alphaedit", "none")
              for e in (2, 4)])
    return out


def test_two_runs_on_one_figure_with_their_points_in_one_csv(tmp_path):
    first, second = _run(tmp_path, "a"), _run(tmp_path, "b", es=(0.0, 0.0, 1.0, 0.0))
    before = {p: p.read_bytes() for d in (first, second) for p in d.iterdir()}
    runs = [load_run_curves(first, "SmolLM2"), load_run_curves(second, "Gemma", methods=["alphaedit"])]
    plot_runs(runs, tmp_path / "both.png", tmp_path / "both.csv")
    assert {p: p.read_bytes() for d in (first, second) for p in d.iterdir()} == before  # the runs are only read
    assert (tmp_path / "both.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    header, *lines = (tmp_path / "both.csv").read_text().splitlines()
    rows = [dict(zip(header.split(","), line.split(","))) for line in lines]
    assert header.startswith("run,method,edits,cases,ES,ES_lo,ES_hi")
    points = {(r["run"], r["method"], r["edits"]): r for r in rows}
    assert set(points) == {("SmolLM2", m, e) for m in ("alphaedit", "none") for e in ("0", "2", "4")} | {
        ("Gemma", "alphaedit", e) for e in ("0", "2", "4")}  # the second run drew only the method asked for
    assert float(points["SmolLM2", "alphaedit", "4"]["ES"]) == 0.75  # the mean over the 4 cases edited so far
    assert float(points["SmolLM2", "alphaedit", "2"]["ES"]) == 0.5 and float(points["Gemma", "alphaedit", "4"]["ES"]) == 0.25
    assert float(points["Gemma", "alphaedit", "0"]["known_share"]) == 1.0  # before any edit every known fact is kept
    assert float(points["Gemma", "alphaedit", "4"]["perplexity"]) == 13.0


def test_curves_over_a_fixed_set_of_cases(tmp_path):
    """How the first edits hold as later batches land: the means over cases 0-1 only."""
    run = load_run_curves(_run(tmp_path, "a"), cases=range(0, 2))
    edited = {r["edits"]: r for r in run.rows if r["method"] == "alphaedit" and r["edits"] > 0}
    assert {e: (r["cases"], r["ES"]) for e, r in edited.items()} == {2: (2, 0.5), 4: (2, 0.5)}
    assert load_run_curves(tmp_path / "a", cases=range(2, 4)).rows[1]["edits"] == 4  # cases 2-3 exist only from 4 edits


def test_curves_of_a_zsre_run_and_vector_formats(tmp_path):
    run = load_run_curves(_run(tmp_path, "z", kind="zsre"))
    assert run.name == "z" and {r["efficacy"] for r in run.rows if r["method"] == "alphaedit" and r["edits"] == 4} == {0.75}
    plot_runs([run], tmp_path / "z.svg")
    assert b"<svg" in (tmp_path / "z.svg").read_bytes()[:500]
    plot_runs([run], tmp_path / "z.pdf")
    assert (tmp_path / "z.pdf").read_bytes()[:5] == b"%PDF-"


def test_cli_draws_runs_and_refuses_bad_input_in_one_line(tmp_path, capsys):
    first, second = _run(tmp_path, "a"), _run(tmp_path, "b")
    assert main(["eval", "curves", str(first), str(second), "--names", "one,two", "--out", str(tmp_path / "f.png"),
                 "--csv", str(tmp_path / "f.csv")]) == 0
    assert "f.png: 8 checkpoints of 2 run(s)" in capsys.readouterr().out
    single = _run(tmp_path, "single", protocol=None)
    cases = [
        ([str(first), "--out", str(tmp_path / "f.jpg")], "a figure is written as .png, .svg, .pdf"),
        ([str(tmp_path / "missing"), "--out", str(tmp_path / "g.png")], "is not a result directory"),
        ([str(single), "--out", str(tmp_path / "g.png")], "holds a single-edit run"),
        ([str(first), str(second), "--names", "x", "--out", str(tmp_path / "g.png")], "--names gives 1 names for 2"),
        ([str(first), str(second), "--names", "x,x", "--out", str(tmp_path / "g.png")], "two runs are named alike"),
        ([str(first), "--methods", "memit", "--out", str(tmp_path / "g.png")], "has none of the methods memit"),
        ([str(first), "--cases", "9-3", "--out", str(tmp_path / "g.png")], "--cases takes A-B"),
    ]
    for args, message in cases:
        assert main(["eval", "curves", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not list(tmp_path.glob("g.*")) and not (tmp_path / "f.jpg").exists()


def test_a_run_without_a_scored_checkpoint_has_no_curves(tmp_path):
    out = _run(tmp_path, "early")
    (out / "results.jsonl").write_text("")
    (out / "health.jsonl").write_text("")
    with pytest.raises(FactpatchError, match="no checkpoint has been scored yet in early"):
        plot_runs([load_run_curves(out)], tmp_path / "e.png")


def _png_size(path):
    header = path.read_bytes()[16:24]  # the IHDR chunk: width, height as big-endian 32-bit
    return int.from_bytes(header[:4], "big"), int.from_bytes(header[4:], "big")


def test_more_than_four_panels_go_on_two_rows(tmp_path):
    """A figure for a page: ES/PS/NS with known facts and perplexity is five panels, 3 + 2, not one
    row of five; three panels stay on one row."""
    from factpatch.evaluation.curves import plot_curves

    def rows(measures):
        return [{"method": "alphaedit", "edits": e, **{m: 0.5 for m in measures}} for e in (100, 200)]
    plot_curves(rows(["ES", "PS", "NS", "known_share", "perplexity"]), tmp_path / "five.png", "t")
    plot_curves(rows(["ES", "PS", "NS"]), tmp_path / "three.png", "t")
    (w5, h5), (w3, h3) = _png_size(tmp_path / "five.png"), _png_size(tmp_path / "three.png")
    assert h5 > 1.7 * h3  # two rows of panels
    assert w5 < 1.3 * w3  # three columns, as wide as the three-panel row


def test_a_perplexity_that_spans_a_decade_is_drawn_on_a_log_axis(tmp_path):
    """A collapsed method's perplexity (163 against 9) would flatten the others' to one line."""
    from factpatch.evaluation.curves import plot_curves

    def rows(collapsed):
        return [{"method": "rome", "edits": 0, "perplexity": 9.0}, {"method": "rome", "edits": 100, "perplexity": collapsed},
                {"method": "alphaedit", "edits": 100, "perplexity": 10.0}]
    plot_curves(rows(163.0), tmp_path / "log.svg", "t")
    plot_curves(rows(13.0), tmp_path / "linear.svg", "t")
    assert "perplexity (fixed text), log scale" in (tmp_path / "log.svg").read_text()
    linear = (tmp_path / "linear.svg").read_text()
    assert "perplexity (fixed text)" in linear and "log scale" not in linear


def test_known_facts_kept_get_an_interval_where_the_entries_name_their_facts(tmp_path):
    """Health entries from 2026-12-03 on list the facts checked and lost: the known-facts curve gets
    a 95 % interval over the facts (CSV columns and a band); older entries keep their point alone."""
    run = _run(tmp_path, "a")
    health = [json.loads(line) for line in (run / "health.jsonl").read_text().splitlines()]
    for entry in health:
        if entry["method"] == "alphaedit" and entry["edits"] == 4:  # 6 of 10 facts kept
            entry.update({"known_share": 0.6, "known_checked": [f"f{i}" for i in range(10)],
                          "known_lost": ["f0", "f1", "f2", "f3"]})
    _lines(run / "health.jsonl", health)
    plot_runs([load_run_curves(run, "a")], tmp_path / "k.png", tmp_path / "k.csv")
    header, *lines = (tmp_path / "k.csv").read_text().splitlines()
    rows = {(r["method"], r["edits"]): r for r in (dict(zip(header.split(","), line.split(","))) for line in lines)}
    assert "known_share_lo" in header.split(",")
    point = rows["alphaedit", "4"]
    assert float(point["known_share_lo"]) < 0.6 < float(point["known_share_hi"]) <= 1.0
    assert rows["alphaedit", "2"]["known_share_lo"] == ""  # an entry that does not name its facts
    assert (tmp_path / "k.png").stat().st_size > 1000


def test_the_known_answers_change_gets_its_own_panel_where_the_entries_record_it(tmp_path):
    """Entries that record each known answer's log-probability change get a panel of its mean over
    the facts, with an interval, starting at 0 before any edit; runs without it draw no such panel."""
    run = _run(tmp_path, "a")
    plot_runs([load_run_curves(run, "a")], tmp_path / "plain.svg", tmp_path / "plain.csv")
    assert "known_logprob" not in (tmp_path / "plain.csv").read_text()
    assert "Δ log P" not in (tmp_path / "plain.svg").read_text()
    health = [json.loads(line) for line in (run / "health.jsonl").read_text().splitlines()]
    for entry in health:
        if entry["method"] == "alphaedit" and entry["edits"] == 4:
            entry["known_logprob_change"] = {"f0": -1.0, "f1": -3.0, "f2": 0.0, "f3": -0.5}
    _lines(run / "health.jsonl", health)
    plot_runs([load_run_curves(run, "a")], tmp_path / "k.svg", tmp_path / "k.csv")
    header, *lines = (tmp_path / "k.csv").read_text().splitlines()
    rows = {(r["method"], r["edits"]): r for r in (dict(zip(header.split(","), line.split(","))) for line in lines)}
    assert float(rows["alphaedit", "4"]["known_logprob"]) == pytest.approx(-1.125)
    assert float(rows["alphaedit", "4"]["known_logprob_lo"]) < -1.125 < float(rows["alphaedit", "4"]["known_logprob_hi"])
    assert float(rows["alphaedit", "0"]["known_logprob"]) == 0.0 and rows["none", "0"]["known_logprob"] == ""
    assert "known answers: Δ log P (nats)" in (tmp_path / "k.svg").read_text()
