"""`factpatch eval status`: what a result directory's run has done and has left, read without
writing — it is used beside the run it describes. (A real killed and resumed sequential run is
checked in test_sequential.py.)"""

import json

import pytest

from factpatch.cli import main
from factpatch.core.errors import FactpatchError
from factpatch.evaluation.sequential import checkpoints_of
from factpatch.evaluation.status import progress_lines, run_progress


def _lines(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


@pytest.fixture()
def sequential_dir(tmp_path):
    """A sequential run of 6 edits in batches of 2, killed after alphaedit's second batch."""
    out = tmp_path / "seq"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({
        "protocol": "sequential", "model": "tiny", "dataset": {"name": "builtin", "n_cases": 8},
        "methods": ["alphaedit", "memit"], "n": 6, "batch_size": 2, "checkpoint_every": 4}))
    _lines(out / "batches.jsonl", [{"method": "alphaedit", "batch": 0, "seconds": 10.0},
                                   {"method": "alphaedit", "batch": 1, "seconds": 30.0}])
    _lines(out / "results.jsonl", [{"method": "alphaedit", "edits": 4, "case_id": str(i), "index": i,
                                    "metrics": {"ES": es, "PS": 0.5, "NS": 1.0}}
                                   for i, es in enumerate([1.0, 1.0, 0.0, 1.0])])
    _lines(out / "health.jsonl", [{"method": "unedited", "edits": 0, "perplexity": 9.0, "known_share": 1.0},
                                  {"method": "alphaedit", "edits": 4, "perplexity": 9.5, "known_share": 0.75}])
    return out


def test_sequential_progress_counts_batches_and_checkpoints_and_prices_what_is_left(sequential_dir):
    progress = run_progress(sequential_dir)
    alpha, memit = progress.methods
    assert (alpha.done, alpha.planned, alpha.checkpoints_scored, alpha.checkpoints_planned) == (2, 3, (4,), (4, 6))
    assert alpha.latest == {"edits": 4, "cases": 4, "ES": 0.75, "PS": 0.5, "NS": 1.0, "known_share": 0.75, "perplexity": 9.5}
    assert alpha.seconds_left == 20.0  # one batch left at the median of the recent ones
    assert (memit.done, memit.latest, memit.seconds_left) == (0, None, None)  # nothing to go by yet
    assert not progress.complete
    text = "\n".join(progress_lines(progress))
    assert "alphaedit: 2/3 batches; 1 of 2 checkpoints scored (4 edits)" in text
    assert "ES/PS/NS 75.0 / 50.0 / 100.0, known facts kept 75.0 %" in text
    assert text.endswith("stopped: rerun the run's command to continue it (it resumes where it stopped)")
    # records written before scorings were timed: what is left to score is counted, its time unknown
    assert (alpha.cases_to_score, alpha.scoring_seconds_left, memit.cases_to_score) == (6, None, 10)
    assert "then scoring 6 cases at the checkpoints left: unknown time" in text
    assert "nats" not in text  # the entry does not record the answers' change
    health = (sequential_dir / "health.jsonl").read_text().splitlines()
    health[1] = json.dumps({**json.loads(health[1]), "known_logprob_change_mean": -1.234})
    (sequential_dir / "health.jsonl").write_text("\n".join(health) + "\n")
    progress = run_progress(sequential_dir)
    assert progress.methods[0].latest["known_logprob_change_mean"] == -1.234
    assert "known facts kept 75.0 % (their answers -1.23 nats)" in "\n".join(progress_lines(progress))
    assert progress.device == "cpu" and "(cuda)" not in progress_lines(progress)[0]
    config = json.loads((sequential_dir / "config.json").read_text())  # a run made with --device cuda
    (sequential_dir / "config.json").write_text(json.dumps({**config, "device": "cuda"}))
    progress = run_progress(sequential_dir)
    assert progress.device == "cuda" == progress.to_dict()["device"]
    assert f"{progress.model} (cuda) on " in progress_lines(progress)[0]


def test_checkpoints_left_are_priced_at_the_runs_scoring_pace(sequential_dir):
    """Scoring a case costs the same whichever method edited the model: one pace for the run,
    the known facts' check after each checkpoint on top; `none` scores each case only once."""
    config = json.loads((sequential_dir / "config.json").read_text())
    config["methods"].append("none")
    (sequential_dir / "config.json").write_text(json.dumps(config))
    _lines(sequential_dir / "results.jsonl", [
        *({"method": "alphaedit", "edits": 4, "case_id": str(i), "index": i, "metrics": {"ES": 1.0}, "eval_seconds": 2.0}
          for i in range(4)),
        *({"method": "none", "edits": 4, "case_id": str(i), "index": i, "metrics": {"ES": 0.0}, "eval_seconds": 2.0}
          for i in range(4))])
    _lines(sequential_dir / "health.jsonl", [
        {"method": "unedited", "edits": 0, "perplexity": 9.0, "known_share": 1.0, "seconds": 50.0},
        {"method": "alphaedit", "edits": 4, "perplexity": 9.5, "known_share": 0.75, "seconds": 5.0},
        {"method": "none", "edits": 4, "perplexity": 9.0, "known_share": 1.0, "seconds": 1.0}])
    alpha, memit, none = run_progress(sequential_dir).methods
    assert (alpha.cases_to_score, alpha.scoring_seconds_left) == (6, 6 * 2.0 + 5.0)  # checkpoint 6: every case again
    assert (memit.cases_to_score, memit.scoring_seconds_left) == (10, 10 * 2.0 + 2 * 5.0)  # 4 and 6
    assert (none.cases_to_score, none.scoring_seconds_left) == (2, 2 * 2.0 + 1.0)  # only cases 4 and 5 are new
    config["generation_cases"] = 1  # the final checkpoint also generates texts: no pace for them yet,
    (sequential_dir / "config.json").write_text(json.dumps(config))  # so the time leaves them out and says so
    progress = run_progress(sequential_dir)
    alpha, _, none = progress.methods
    assert (alpha.cases_to_score, alpha.scoring_seconds_left, alpha.untimed_generations) == (6, 5 * 2.0 + 5.0, 1)
    assert (none.cases_to_score, none.scoring_seconds_left, none.untimed_generations) == (3, 2 * 2.0 + 1.0, 1)  # none generates case 0's texts anew
    assert "scoring 6 cases at the checkpoints left: 0 min, plus 1 cases' texts, whose generation this run has not timed" in "\n".join(progress_lines(progress))
    with open(sequential_dir / "results.jsonl", "a") as handle:  # a generation timed: its own pace
        handle.write(json.dumps({"method": "memit", "edits": 6, "case_id": "0", "index": 0, "metrics": {"ES": 1.0},
                                 "texts": ["..."], "eval_seconds": 10.0}) + "\n")
    _, memit, none = run_progress(sequential_dir).methods
    assert memit.untimed_generations == none.untimed_generations == 0
    assert (memit.cases_to_score, memit.scoring_seconds_left) == (9, 9 * 2.0 + 2 * 5.0)
    assert (none.cases_to_score, none.scoring_seconds_left) == (3, 2 * 2.0 + 10.0 + 1.0)


def test_status_leaves_a_half_written_last_line_alone(sequential_dir):
    """The run may be writing its next line at that moment: left out of the count, never cut."""
    path = sequential_dir / "batches.jsonl"
    torn = path.read_text() + '{"method": "alphaedit", "ba'
    path.write_text(torn)
    assert run_progress(sequential_dir).methods[0].done == 2
    assert path.read_text() == torn


def test_checkpoints_are_the_runs_own():
    assert checkpoints_of(2000, 100, 500) == [500, 1000, 1500, 2000]
    assert checkpoints_of(250, 100, None) == [250]  # the last batch may be short; the end is always scored


def test_single_edit_progress_counts_the_selected_cases(tmp_path):
    out = tmp_path / "single"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({
        "model": "tiny", "dataset": {"name": "builtin", "n_cases": 10}, "methods": ["rome", "none"],
        "n": 6, "shard": [0, 2]}))  # cases 0, 2, 4
    _lines(out / "results.jsonl", [{"case_id": "0", "method": "rome", "edit_seconds": 4.0, "eval_seconds": 1.0},
                                   {"case_id": "2", "method": "rome", "edit_seconds": 6.0, "eval_seconds": 1.0}])
    rome, none = run_progress(out).methods
    assert (rome.done, rome.planned, rome.seconds_left) == (2, 3, 6.0)
    assert (none.done, none.planned) == (0, 3) and not run_progress(out).complete


def test_status_of_a_directory_that_holds_no_run_is_one_line_and_exit_2(tmp_path, capsys):
    with pytest.raises(FactpatchError, match="not a result directory"):
        run_progress(tmp_path)
    (tmp_path / "config.json").write_text("[1, 2")
    assert main(["eval", "status", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "not valid JSON" in err and "\n" not in err
    (tmp_path / "config.json").write_text(json.dumps({"protocol": "sequential", "methods": ["memit"], "dataset": {}}))
    assert main(["eval", "status", str(tmp_path)]) == 2  # no n, no batch size: not a run factpatch wrote
    assert "not the configuration of a factpatch eval run" in capsys.readouterr().err


def test_status_json_is_the_report_as_data(sequential_dir, capsys):
    assert main(["eval", "status", str(sequential_dir), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["complete"] is False and data["methods"][0]["seconds_left"] == 20.0


def test_status_says_whether_a_process_is_writing_the_run_now(sequential_dir, another_process_writes, capsys):
    with another_process_writes(sequential_dir):
        progress = run_progress(sequential_dir)
        assert progress.running and progress.to_dict()["running"] is True
        assert progress_lines(progress)[-1] == "running: a process is writing it now"
        assert main(["eval", "status", str(sequential_dir), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["running"] is True
        before = {p.name: p.read_bytes() for p in sequential_dir.iterdir()}
        assert run_progress(sequential_dir).running  # a second probe is refused nothing: readers share
    assert not run_progress(sequential_dir).running  # the writer went, and its lock with it
    assert {p.name: p.read_bytes() for p in sequential_dir.iterdir()} == before  # the probes wrote nothing


def test_status_names_the_checkpoints_scored_on_batches_rebuilt_with_other_bits(sequential_dir, capsys):
    """A resumed run on another machine rebuilds its earlier batches from their saved z with other
    last bits, so other patch ids: the checkpoints scored on them are named, the others are not."""
    _lines(sequential_dir / "batches.jsonl", [
        {"method": "alphaedit", "batch": 0, "seconds": 10.0, "patch": "a0"},
        {"method": "alphaedit", "batch": 1, "seconds": 30.0, "patch": "a1"},
        {"method": "alphaedit", "batch": 2, "seconds": 30.0, "patch": "a2"}])
    _lines(sequential_dir / "health.jsonl", [
        {"method": "unedited", "edits": 0, "perplexity": 9.0},
        {"method": "alphaedit", "edits": 4, "patches": ["a0", "a1"], "perplexity": 9.5},  # scored before the move
        {"method": "alphaedit", "edits": 6, "patches": ["b0", "a1", "a2"], "perplexity": 9.6}])  # batch 0 rebuilt
    alpha, memit = run_progress(sequential_dir).methods
    assert alpha.rebuilt_with_drift == {6: (0,)} and memit.rebuilt_with_drift == {}
    text = "\n".join(progress_lines(run_progress(sequential_dir)))
    assert "scored at 6 edits on batch 0 as rebuilt from the saved z, with other patch ids than the records" in text
    assert text.count("rebuilt from the saved z") == 1
    assert main(["eval", "status", str(sequential_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["methods"][0]["rebuilt_with_drift"] == {"6": [0]}


def test_status_of_several_runs_reads_every_one_before_printing(sequential_dir, tmp_path, capsys):
    other = tmp_path / "single"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model": "tiny", "dataset": {"name": "builtin", "n_cases": 10},
                                                   "methods": ["none"], "n": 3}))
    assert main(["eval", "status", str(sequential_dir), str(other)]) == 0
    reports = capsys.readouterr().out.split("\n\n")
    assert len(reports) == 2 and reports[0].startswith(f"{sequential_dir}: ") and reports[1].startswith(f"{other}: ")
    assert main(["eval", "status", str(sequential_dir), str(other), "--json"]) == 0
    assert [r["protocol"] for r in json.loads(capsys.readouterr().out)] == ["sequential", "single"]
    # one directory that holds no run: its one line, exit 2, and no report of the others
    assert main(["eval", "status", str(sequential_dir), str(tmp_path / "nothing")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: ") and err.count("\n") == 1
