"""Sequential editing: batches never reverted, every edited case scored on the final model, and a
killed run that resumes to the same weights."""

import json
import re

import pytest
import torch

from factpatch.evaluation.data import load_dataset
from factpatch.editing.patch import applied, load_patch
from factpatch.editing.stats import CorpusSpec
from factpatch.core.errors import FactpatchError
from factpatch.evaluation.sequential import SequentialSettings, run_sequential
from factpatch.evaluation.status import run_progress
from factpatch.core.models import weights_fingerprint

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = {"memit": {"v_steps": "3", "layers": "0-1", "group_size": "4"},
        "alphaedit": {"v_steps": "3", "layers": "0-1", "group_size": "4"},
        "rome": {"v_steps": "2", "prefixes": "[[1, 3]]"}}


@pytest.fixture()
def known_file(tmp_path):
    path = tmp_path / "known.json"
    path.write_text(json.dumps([
        {"known_id": 0, "subject": "Eiffel Tower", "prompt": "The Eiffel Tower is located in the city of", "attribute": "Paris"},
        {"known_id": 1, "subject": "Lionel Messi", "prompt": "Lionel Messi plays the sport of", "attribute": "soccer"},
    ]))
    return path


def _config(methods, known=None, n=4, **extra):
    return SequentialSettings(methods, n, batch_size=2, checkpoint_every=2, known_path=known, perplexity_tokens=64,
                            overrides={m: FAST[m] for m in methods if m in FAST}, corpus=CorpusSpec(n_tokens=256),
                            **extra)


def _stack_fingerprint(lm, directory):
    patches = [load_patch(p) for p in sorted(directory.glob("*.safetensors"))]
    with applied(lm, patches):
        return weights_fingerprint(lm.model)


def test_sequential_run_scores_every_case_at_every_checkpoint(fresh_tiny, tmp_path, known_file):
    lm = fresh_tiny("llama")
    original = weights_fingerprint(lm.model)
    run = run_sequential(lm, load_dataset("builtin"), _config(["memit", "rome"], known_file), tmp_path / "out",
                         tmp_path, progress=False)
    assert weights_fingerprint(lm.model) == original  # the model comes back unedited
    records = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    for method in ("memit", "rome"):
        assert sorted(r["index"] for r in records if r["method"] == method and r["edits"] == 2) == [0, 1]
        assert sorted(r["index"] for r in records if r["method"] == method and r["edits"] == 4) == [0, 1, 2, 3]
        patches = sorted((tmp_path / "out" / method / "patches").glob("*.safetensors"))
        assert [len(load_patch(p).requests) for p in patches] == [2, 2]
    assert set(run.summary) == {"memit", "rome"} and run.summary["memit"]["ES"]["n"] == 4
    health = [json.loads(line) for line in (tmp_path / "out" / "health.jsonl").read_text().splitlines()]
    assert {(h["method"], h["edits"]) for h in health} == {("unedited", 0), ("memit", 2), ("memit", 4), ("rome", 2), ("rome", 4)}
    assert all(h["perplexity"] > 1 and h["known_total"] >= 0 for h in health)
    curves = (tmp_path / "out" / "curves.csv").read_text().splitlines()
    assert curves[0].startswith("method,edits,cases,ES") and len(curves) == 1 + 2 * 3
    header = curves[0].split(",")
    start = dict(zip(header, curves[1].split(",")))
    assert start["edits"] == "0" and float(start["known_share"]) == 1.0  # every known fact is kept before any edit
    assert (tmp_path / "out" / "curves.png").stat().st_size > 1000
    batches = [json.loads(line) for line in (tmp_path / "out" / "batches.jsonl").read_text().splitlines()]
    assert [(b["method"], b["batch"], b["edits"]) for b in batches] == [
        ("memit", 0, 2), ("memit", 1, 2), ("rome", 0, 2), ("rome", 1, 2)]
    assert all(b["seconds"] > 0 for b in batches)
    # each batch record says how far the stack so far has moved every matrix it edited: recomputed here
    for record in batches:
        patches = [load_patch(p) for p in sorted((tmp_path / "out" / record["method"] / "patches").glob("*.safetensors"))]
        with applied(lm, patches[: record["batch"] + 1]) as stack:
            expected = stack.relative_change()
        assert set(record["weight_change"]) == set(expected) and expected
        assert all(record["weight_change"][k] == pytest.approx(v, abs=2e-6) and v > 0 for k, v in expected.items())
        # MEMIT's records also say what its batch asked of L's MLP, ‖v*‖ (editing/anchor.py); ROME's do not
        norms = patches[record["batch"]].meta.get("v_star_norm")
        assert (record.get("v_star_norm_mean"), record.get("v_star_norm_max")) == (
            (pytest.approx(sum(norms) / 2, abs=1e-4), max(norms)) if record["method"] == "memit" else (None, None))
        assert record["method"] == "rome" or all(n > 0 for n in norms)
    rows = [dict(zip(header, line.split(","))) for line in curves[1:]]
    memit_rows = {int(r["edits"]): float(r["weight_change"]) for r in rows if r["method"] == "memit"}
    last_memit = [b for b in batches if b["method"] == "memit"][-1]
    assert memit_rows[0] == 0.0 and memit_rows[4] == pytest.approx(max(last_memit["weight_change"].values()), rel=1e-4)


def test_a_method_added_later_joins_the_run_and_its_figure(fresh_tiny, tmp_path, monkeypatch):
    # Methods edit independently from the unedited model, so a run can take them one at a time
    # (a long queue reordered, a method added to a finished run); one refused only if its settings changed.
    from factpatch.evaluation import sequential
    from factpatch.evaluation.run import read_config

    drawn = []
    real_plot = sequential.plot_curves
    monkeypatch.setattr(sequential, "plot_curves", lambda rows, path, title: (drawn.append(len(rows)),
                                                                             real_plot(rows, path, title)))
    lm = fresh_tiny("llama")
    dataset = load_dataset("builtin")
    run_sequential(lm, dataset, _config(["rome"]), tmp_path / "out", tmp_path, progress=False)
    assert len(drawn) == 2  # at each of the two checkpoints; the run's end finds the same points drawn
    rome_batches = [json.loads(line) for line in (tmp_path / "out" / "batches.jsonl").read_text().splitlines()]
    assert len(rome_batches) == 2 and all(r["z_steps_mean"] >= 1 for r in rome_batches)  # each edit's v* steps, averaged
    before = (tmp_path / "out" / "results.jsonl").read_text()
    run = run_sequential(lm, dataset, _config(["memit"]), tmp_path / "out", tmp_path, progress=False)
    assert (tmp_path / "out" / "results.jsonl").read_text().startswith(before)  # rome's records stay, not rerun
    assert set(run.summary) == {"rome", "memit"}
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["methods"] == ["rome", "memit"]
    # a run on the model's device: a GPU's is recorded, the CPU's is not (every run recorded before
    # --device existed stays resumable); under FACTPATCH_TEST_DEVICE the models are on that device
    assert config.get("device") == (None if lm.device.type == "cpu" else lm.device.type)
    methods = {line.split(",")[0] for line in (tmp_path / "out" / "curves.csv").read_text().splitlines()[1:]}
    assert methods == {"rome", "memit"}
    assert len(drawn) == 4 and drawn[-1] > drawn[1]  # redrawn with memit's points
    run_sequential(lm, dataset, _config(["rome", "memit"]), tmp_path / "out", tmp_path, progress=False)
    assert len(drawn) == 4  # nothing left to do: nothing redrawn
    (tmp_path / "out" / "curves.png").unlink()
    sequential.write_curves(tmp_path / "out", read_config(tmp_path / "out"))
    assert len(drawn) == 5 and (tmp_path / "out" / "curves.png").exists()  # a missing figure is drawn
    other = _config(["memit"])
    other.overrides["memit"] = {**FAST["memit"], "v_steps": "4"}
    with pytest.raises(FactpatchError, match="differs in hparams"):
        run_sequential(lm, dataset, other, tmp_path / "out", tmp_path, progress=False)


def test_killed_run_resumes_to_the_same_weights(fresh_tiny, tmp_path, monkeypatch, another_process_writes):
    lm = fresh_tiny("gpt2")
    dataset = load_dataset("builtin")
    run_sequential(lm, dataset, _config(["alphaedit"]), tmp_path / "whole", tmp_path, progress=False, plots=False)

    from factpatch.editing import alphaedit

    calls = {"n": 0}
    real = alphaedit.AlphaEditor.patch_and_targets

    def dies_on_the_second_batch(self, requests, stack=None, targets=None):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, requests, stack, targets)

    monkeypatch.setattr(alphaedit.AlphaEditor, "patch_and_targets", dies_on_the_second_batch)
    with pytest.raises(KeyboardInterrupt):
        run_sequential(lm, dataset, _config(["alphaedit"]), tmp_path / "killed", tmp_path, progress=False)
    assert len(list((tmp_path / "killed" / "alphaedit" / "patches").glob("*.safetensors"))) == 1
    # the checkpoint scored before the kill is already drawn: an unfinished run shows where it stands
    curves = (tmp_path / "killed" / "curves.csv").read_text().splitlines()
    assert [row.split(",")[:2] for row in curves[1:]] == [["alphaedit", "0"], ["alphaedit", "2"]]
    assert (tmp_path / "killed" / "curves.png").stat().st_size > 1000
    # `factpatch eval status` on the killed run: what is done, what the rerun has left
    halfway = run_progress(tmp_path / "killed").methods[0]
    assert (halfway.method, halfway.done, halfway.planned) == ("alphaedit", 1, 2) and not halfway.complete
    assert (halfway.checkpoints_scored, halfway.checkpoints_planned) == ((2,), (2, 4))
    first = [json.loads(x) for x in (tmp_path / "killed" / "results.jsonl").read_text().splitlines()]
    assert halfway.latest["ES"] == pytest.approx(sum(r["metrics"]["ES"] for r in first) / len(first))
    batch = json.loads((tmp_path / "killed" / "batches.jsonl").read_text().splitlines()[0])
    assert halfway.seconds_left == pytest.approx(batch["seconds"])  # one batch left at the first one's pace
    monkeypatch.setattr(alphaedit.AlphaEditor, "patch_and_targets", real)
    # a resume while another process still writes the run is refused before it reads or writes a record
    before = {p: p.read_bytes() for p in (tmp_path / "killed").rglob("*") if p.is_file()}
    with another_process_writes(tmp_path / "killed"):
        with pytest.raises(FactpatchError, match="being written by another process"):
            run_sequential(lm, dataset, _config(["alphaedit"]), tmp_path / "killed", tmp_path, progress=False)
    assert {p: p.read_bytes() for p in (tmp_path / "killed").rglob("*") if p.is_file()} == before
    run_sequential(lm, dataset, _config(["alphaedit"]), tmp_path / "killed", tmp_path, progress=False, plots=False)
    assert len((tmp_path / "killed" / "curves.csv").read_text().splitlines()) == 1 + 3
    assert not (tmp_path / "killed" / "curves.png").exists()  # not drawn, and the older figure not left as if it were
    done = run_progress(tmp_path / "killed")
    assert done.complete and done.methods[0].checkpoints_scored == (2, 4) and done.methods[0].seconds_left == 0
    whole = _stack_fingerprint(lm, tmp_path / "whole" / "alphaedit" / "patches")
    assert _stack_fingerprint(lm, tmp_path / "killed" / "alphaedit" / "patches") == whole
    second = load_patch(sorted((tmp_path / "killed" / "alphaedit" / "patches").glob("*.safetensors"))[1])
    assert second.meta["preserved_edits"] == 2  # the resumed batch protected the first one
    lines = (tmp_path / "killed" / "results.jsonl").read_text().splitlines()
    assert len(lines) == len(set((json.loads(x)["edits"], json.loads(x)["case_id"]) for x in lines)) == 2 + 4


@pytest.mark.parametrize("family", ["gpt2", "gemma3"])  # Gemma: step 2 maps R through its post-MLP norm
def test_run_without_its_patches_rebuilds_them_from_the_saved_targets(fresh_tiny, tmp_path, monkeypatch, family):
    # A session's patch stack is lost (unversioned); the targets (z) beside it are kept. The resumed
    # run must rebuild the lost batches from them, without step 1, to the same bits.
    import shutil

    from factpatch.editing import alphaedit, memit

    lm = fresh_tiny(family)
    dataset = load_dataset("builtin")
    run_sequential(lm, dataset, _config(["alphaedit"]), tmp_path / "whole", tmp_path, progress=False, plots=False)
    whole_ids = [load_patch(p).id for p in sorted((tmp_path / "whole" / "alphaedit" / "patches").glob("*.safetensors"))]

    real = alphaedit.AlphaEditor.patch_and_targets

    def dies_on_the_second_batch(self, requests, stack=None, targets=None):
        if stack is not None and stack.applied:
            raise KeyboardInterrupt
        return real(self, requests, stack, targets)

    monkeypatch.setattr(alphaedit.AlphaEditor, "patch_and_targets", dies_on_the_second_batch)
    with pytest.raises(KeyboardInterrupt):
        run_sequential(lm, dataset, _config(["alphaedit"]), tmp_path / "killed", tmp_path, progress=False, plots=False)
    monkeypatch.setattr(alphaedit.AlphaEditor, "patch_and_targets", real)
    assert [p.name for p in (tmp_path / "killed" / "alphaedit" / "targets").iterdir()] == ["0000.safetensors"]
    shutil.rmtree(tmp_path / "killed" / "alphaedit" / "patches")

    real_targets = memit.compute_targets
    computed = []

    def counted(lm_, requests, *args, **kwargs):
        computed.append([r.subject for r in requests])
        return real_targets(lm_, requests, *args, **kwargs)

    monkeypatch.setattr(memit, "compute_targets", counted)
    run_sequential(lm, dataset, _config(["alphaedit"]), tmp_path / "killed", tmp_path, progress=False, plots=False)
    cases = dataset.select(4)
    assert computed == [[c.request.subject for c in cases[2:4]]]  # only the batch never edited
    patches = sorted((tmp_path / "killed" / "alphaedit" / "patches").glob("*.safetensors"))
    assert [load_patch(p).id for p in patches] == whole_ids  # batch 0 rebuilt bit for bit
    assert load_patch(patches[0]).meta["rebuilt"] is True
    with pytest.raises(FactpatchError, match="other requests"):
        memit.TargetValues.load(tmp_path / "killed" / "alphaedit" / "targets" / "0000.safetensors",
                                [c.request for c in cases[2:4]])


def test_finished_method_without_its_patches_is_not_edited_again(fresh_tiny, tmp_path, monkeypatch):
    # Patch stacks are not versioned: a run directory copied from its records alone must go on with
    # the methods it has not finished, not redo the finished ones.
    import shutil

    from factpatch.editing import memit

    lm = fresh_tiny("llama")
    dataset = load_dataset("builtin")
    run_sequential(lm, dataset, _config(["memit"]), tmp_path / "out", tmp_path, progress=False, plots=False)
    before = (tmp_path / "out" / "results.jsonl").read_text()
    shutil.rmtree(tmp_path / "out" / "memit" / "patches")

    def must_not_edit(self, requests, stack=None, targets=None):
        raise AssertionError("a finished method was edited again")

    monkeypatch.setattr(memit.MemitEditor, "patch_and_targets", must_not_edit)
    run = run_sequential(lm, dataset, _config(["memit"]), tmp_path / "out", tmp_path, progress=False, plots=False)
    assert (tmp_path / "out" / "results.jsonl").read_text() == before
    assert run.summary["memit"]["ES"]["n"] == 4
    # one missing record is enough to make the method unfinished: then it edits or rebuilds (here: fails)
    lines = before.splitlines()
    (tmp_path / "out" / "results.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(AssertionError, match="edited again"):
        run_sequential(lm, dataset, _config(["memit"]), tmp_path / "out", tmp_path, progress=False, plots=False)


def test_rebuild_writes_the_missing_patches_from_the_saved_targets(fresh_tiny, tmp_path, run, monkeypatch,
                                                                   another_process_writes):
    import shutil

    from factpatch.evaluation.sequential import rebuild_patches

    lm = fresh_tiny("llama")
    run_sequential(lm, load_dataset("builtin"), _config(["alphaedit"]), tmp_path / "out", tmp_path, progress=False, plots=False)
    patches = tmp_path / "out" / "alphaedit" / "patches"
    names = sorted(p.name for p in patches.iterdir())
    whole = _stack_fingerprint(lm, patches)
    shutil.rmtree(patches)
    with another_process_writes(tmp_path / "out"):  # the run still going: it would add patches beside the rebuild
        with pytest.raises(FactpatchError, match="being written by another process"):
            rebuild_patches(lm, tmp_path / "out", "alphaedit", tmp_path, progress=False)
        with monkeypatch.context() as patched:  # the command says so before loading the model
            patched.setattr("factpatch.cli.load_lm", lambda *_, **__: pytest.fail("the model was loaded"))
            code, _, err = run("eval", "rebuild", tmp_path / "out", "--methods", "alphaedit")
        assert code == 2 and "being written by another process" in err and err.count("\n") == 1
    assert not patches.exists()
    first = rebuild_patches(lm, tmp_path / "out", "alphaedit", tmp_path, progress=False, edits=1)
    assert [p.name for p in first] == names[:1]  # only the batch that holds the first edit
    with pytest.raises(FactpatchError, match="holds 4 edits of alphaedit, not 5"):
        rebuild_patches(lm, tmp_path / "out", "alphaedit", tmp_path, progress=False, edits=5)
    code, _, err = run("eval", "rebuild", tmp_path / "out", "--methods", "alphaedit", "--edits", "0")
    assert code == 2 and "--edits must be at least 1" in err
    written = first + rebuild_patches(lm, tmp_path / "out", "alphaedit", tmp_path, progress=False)
    assert sorted(p.name for p in written) == names  # the ids the batch records hold
    assert _stack_fingerprint(lm, patches) == whole
    assert rebuild_patches(lm, tmp_path / "out", "alphaedit", tmp_path, progress=False) == []  # nothing missing
    (patches / names[1]).unlink()
    (tmp_path / "out" / "alphaedit" / "targets" / "0001.safetensors").unlink()
    with pytest.raises(FactpatchError, match="neither its patch nor its saved z"):
        rebuild_patches(lm, tmp_path / "out", "alphaedit", tmp_path, progress=False)
    with pytest.raises(FactpatchError, match="no sequential run of memit"):
        rebuild_patches(lm, tmp_path / "out", "memit", tmp_path, progress=False)
    code, _, err = run("eval", "rebuild", tmp_path / "nothing", "--methods", "alphaedit")
    assert code == 2 and "not a result directory" in err


def test_rebuild_with_drift_accepted_writes_the_stack_under_its_own_ids(fresh_tiny, tmp_path, caplog):
    # A stack made on another machine rebuilds with other last bits, so other ids: strictly that
    # stops; with accept_drift the patches are written (once) and the drift from the record logged.
    import shutil

    from factpatch.evaluation.sequential import rebuild_patches

    lm = fresh_tiny("llama")
    run_sequential(lm, load_dataset("builtin"), _config(["alphaedit"]), tmp_path / "out", tmp_path, progress=False, plots=False)
    patches = tmp_path / "out" / "alphaedit" / "patches"
    whole = _stack_fingerprint(lm, patches)
    shutil.rmtree(patches)
    records = tmp_path / "out" / "batches.jsonl"
    lines = [json.loads(line) for line in records.read_text().splitlines()]
    lines[0]["patch"] = "000000000000"  # as if made elsewhere
    records.write_text("".join(json.dumps(r) + "\n" for r in lines))
    with pytest.raises(FactpatchError, match="not the run's weights"):
        rebuild_patches(lm, tmp_path / "out", "alphaedit", tmp_path, progress=False)
    assert not patches.exists() or not any(patches.iterdir())
    with caplog.at_level("WARNING"):
        written = rebuild_patches(lm, tmp_path / "out", "alphaedit", tmp_path, progress=False, accept_drift=True)
    assert len(written) == len(lines)
    assert _stack_fingerprint(lm, patches) == whole  # here the bits are the same: only the record was changed
    drift = re.search(r"differs from the record's by at most (\S+)", caplog.text)
    assert drift and float(drift.group(1)) < 1e-5  # the record rounds to 6 decimals
    assert rebuild_patches(lm, tmp_path / "out", "alphaedit", tmp_path, progress=False, accept_drift=True) == []


def test_unedited_model_is_scored_once_per_case_not_at_every_checkpoint(fresh_tiny, tmp_path, known_file, monkeypatch):
    # `none` applies nothing: the model at every checkpoint is the unedited one, so a case scored at
    # one checkpoint is recorded again at the next, and every untouched known fact is known.
    from factpatch.evaluation import sequential
    from factpatch.evaluation.health import KnownFacts
    from factpatch.evaluation.run import score_case

    lm = fresh_tiny("llama")
    scored = []
    real = sequential.edited_case_record

    def counting(lm, method, edits, index, case, generate, config):
        scored.append((edits, case.case_id))
        return real(lm, method, edits, index, case, generate, config)

    def no_passes(self, lm, subjects):
        raise AssertionError("the unedited model's known facts need no pass")

    monkeypatch.setattr(sequential, "edited_case_record", counting)
    monkeypatch.setattr(KnownFacts, "kept", no_passes)
    dataset = load_dataset("builtin")
    config = SequentialSettings(["none"], 6, batch_size=2, checkpoint_every=2, known_path=known_file,
                                perplexity_tokens=64, corpus=CorpusSpec(n_tokens=256))
    run_sequential(lm, dataset, config, tmp_path / "out", tmp_path, progress=False, plots=False)
    ids = [c.case_id for c in dataset.select(6)]
    assert scored == [(2, ids[0]), (2, ids[1]), (4, ids[2]), (4, ids[3]), (6, ids[4]), (6, ids[5])]
    records = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert sorted((r["edits"], r["index"]) for r in records) == [(e, i) for e in (2, 4, 6) for i in range(e)]
    for r in records:  # each record is what scoring the case on the unedited model gives
        metrics, raw = score_case(lm, dataset.select(6)[r["index"]])
        assert r["metrics"] == metrics and r["scores"] == json.loads(json.dumps(raw))
    batches = [json.loads(line) for line in (tmp_path / "out" / "batches.jsonl").read_text().splitlines()]
    assert len(batches) == 3 and not any("weight_change" in b for b in batches)  # nothing edited, nothing moved
    health = [json.loads(line) for line in (tmp_path / "out" / "health.jsonl").read_text().splitlines()]
    assert [(h["method"], h["edits"]) for h in health] == [("unedited", 0), ("none", 2), ("none", 4), ("none", 6)]
    assert all(h["known_kept"] == h["known_total"] for h in health if h["method"] == "none")
    assert len({h["perplexity"] for h in health}) == 1


def test_bad_sequential_settings_fail_before_any_work(tmp_path):
    with pytest.raises(FactpatchError, match="batch-size must be at least 1"):
        SequentialSettings(["memit"], 4, batch_size=0)
    with pytest.raises(FactpatchError, match="multiple of --batch-size"):
        SequentialSettings(["memit"], 4, batch_size=2, checkpoint_every=3)
    with pytest.raises(FactpatchError, match="known-facts file not found"):
        SequentialSettings(["memit"], 4, batch_size=2, known_path=tmp_path / "nope.json")


def test_sequential_generations_name_their_prompts(fresh_tiny, tmp_path):
    from factpatch.evaluation.generation import GenerationSettings

    lm = fresh_tiny("llama")
    dataset = load_dataset("builtin")
    config = _config(["memit", "none"], n=2, generation_cases=1, gen=GenerationSettings(max_length=24))
    run_sequential(lm, dataset, config, tmp_path / "out", tmp_path, progress=False, plots=False)
    records = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    generated, unedited = sorted((r for r in records if "texts" in r), key=lambda r: r["method"])
    assert unedited["method"] == "none" and unedited["case_id"] == generated["case_id"]
    case = dataset.cases[generated["index"]]
    assert generated["generation"] == {"prompts": list(case.generation_prompts), "source": "dataset"}
    assert case.request.text not in generated["generation"]["prompts"]
    summary_md = (tmp_path / "out" / "summary.md").read_text()
    assert "Generation: top-k 5, 24 tokens per text including the prompt" in summary_md
    # the damage targets are relative to the unedited model: a paired comparison in both summaries
    against = json.loads((tmp_path / "out" / "summary.json").read_text())["against_unedited"]
    assert set(against) == {"memit"} and against["memit"]["NS"]["n"] == 2 and against["memit"]["fluency"]["n"] == 1
    assert "- memit: Neighborhood NS" in summary_md


def test_sequential_zsre_run_scores_its_own_metrics_and_curves(fresh_tiny, tmp_path):
    from pathlib import Path

    lm = fresh_tiny("llama")
    dataset = load_dataset(f"zsre:{Path(__file__).parent / 'fixtures' / 'zsre.json'}")
    run = run_sequential(lm, dataset, _config(["alphaedit", "none"], n=2), tmp_path / "out", tmp_path, progress=False)
    records = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    edited = [r for r in records if r["method"] == "alphaedit"]
    assert sorted(r["index"] for r in edited) == [0, 1]
    assert all(set(r["metrics"]) >= {"efficacy", "paraphrase", "specificity"} and "ES" not in r["metrics"] for r in edited)
    assert run.summary["alphaedit"]["efficacy"]["n"] == 2
    curves = (tmp_path / "out" / "curves.csv").read_text().splitlines()
    header = curves[0].split(",")
    rows = [dict(zip(header, line.split(","))) for line in curves[1:]]
    assert {r["method"] for r in rows} == {"alphaedit", "none"}
    assert "ES" not in header and all(r["efficacy"] != "" for r in rows if r["edits"] != "0")
    assert (tmp_path / "out" / "curves.png").stat().st_size > 1000


def test_batch_records_of_an_older_run_are_filled_in_from_its_patches(fresh_tiny, tmp_path, load_script):
    """scripts/fill_batch_records.py: batch records written before they carried weight_change and
    ‖v*‖ get the numbers the run itself would have written, and the curves gain the panel's column."""

    from factpatch.evaluation.run import read_config
    from factpatch.evaluation.sequential import write_curves

    script = load_script("fill_batch_records")
    lm = fresh_tiny("llama")
    out = tmp_path / "out"
    run_sequential(lm, load_dataset("builtin"), _config(["memit"]), out, tmp_path, progress=False, plots=False)
    old = [json.loads(line) for line in (out / "batches.jsonl").read_text().splitlines()]
    assert len(old) == 2 and all(r["weight_change"] for r in old)
    added = {"weight_change", "v_star_norm_mean", "v_star_norm_max"}
    assert all(added <= set(r) for r in old)
    (out / "batches.jsonl").write_text("".join(json.dumps({k: v for k, v in r.items() if k not in added}) + "\n"
                                               for r in old))
    write_curves(out, read_config(out), plots=False)  # as a run before 2026-12-02 wrote them
    assert "weight_change" not in (out / "curves.csv").read_text().splitlines()[0]
    assert script.fill_in(out, None, lm) == 2
    filled = [json.loads(line) for line in (out / "batches.jsonl").read_text().splitlines()]
    assert [r["batch"] for r in filled] == [r["batch"] for r in old]
    for new, recorded in zip(filled, old):
        assert set(new) == set(recorded) and set(new["weight_change"]) == set(recorded["weight_change"])
        for name, value in recorded["weight_change"].items():
            assert new["weight_change"][name] == pytest.approx(value, abs=2e-6)
        # ‖v*‖ from the saved z, read on the model with the earlier batches applied: as the run found it
        assert new["v_star_norm_mean"] == pytest.approx(recorded["v_star_norm_mean"], abs=2e-4)
        assert new["v_star_norm_max"] == pytest.approx(recorded["v_star_norm_max"], abs=2e-4)
    assert "weight_change" in (out / "curves.csv").read_text().splitlines()[0]
    assert script.fill_in(out, None, lm) == 0  # nothing left to fill: the file is not rewritten
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "protocol": "single"}))
    with pytest.raises(FactpatchError, match="single-edit run"):
        script.fill_in(out, None, lm)


def test_health_entries_name_the_facts_checked_and_lost_and_compare_fact_by_fact(fresh_tiny, tmp_path, known_file,
                                                                                 monkeypatch):
    """A checkpoint's health entry lists which known facts it checked and which are lost, and how
    far each answer's log-probability moved, so two methods (or runs) at one checkpoint compare
    fact by fact, with an interval (`eval paired`). The tiny model knows nothing, so the answers'
    scores are replaced: the unedited model knows both facts (log-probability −1 each), the edited
    one fact 0 at −1.5 and fact 1 no more, at −4."""
    import factpatch.tracing.dataset as dataset
    from factpatch.core.scoring import TargetTokens
    from factpatch.evaluation.breakdown import compare_sides

    calls = []

    def answer_scores(lm, facts, batch_size=32, progress=True):
        calls.append(len(facts))
        if len(calls) == 1:
            return [TargetTokens((-0.25, -0.75), (True, True)) for _ in facts]
        return [TargetTokens((-1.5,), (True,)) if f.id == "0" else TargetTokens((-4.0,), (False,)) for f in facts]

    monkeypatch.setattr(dataset, "answer_scores", answer_scores)
    out = tmp_path / "out"
    run_sequential(fresh_tiny("llama"), load_dataset("builtin"), _config(["memit", "none"], known_file, n=2), out,
                   tmp_path, progress=False, plots=False)
    health = {(h["method"], h["edits"]): h for h in map(json.loads, (out / "health.jsonl").read_text().splitlines())}
    edited, unedited = health[("memit", 2)], health[("none", 2)]
    assert (edited["known_kept"], edited["known_total"]) == (1, 2)
    assert edited["known_checked"] == unedited["known_checked"] == ["0", "1"]
    assert edited["known_lost"] == ["1"] and unedited["known_lost"] == []
    result = compare_sides(out, "none", out, "memit")
    assert result.known.a.n == 2 and result.known.a.mean == 1.0 and result.known.b_minus_a.mean == pytest.approx(-0.5)
    assert result.to_dict()["known_kept"]["b_minus_a"]["mean"] == pytest.approx(-0.5)
    assert edited["known_logprob_change"] == {"0": -0.5, "1": -3.0} and edited["known_logprob_change_mean"] == -1.75
    assert unedited["known_logprob_change"] == {"0": 0.0, "1": 0.0}  # the unedited model, by definition
    assert result.known_logprob.b_minus_a.mean == pytest.approx(-1.75) and result.known_logprob.a.n == 2
    assert result.to_dict()["known_logprob_change"]["b"]["mean"] == pytest.approx(-1.75)


def _memit_run_for_script(fresh_tiny, tmp_path, monkeypatch, load_script, name):
    """A two-edit MEMIT run on a tiny Llama in tmp_path/out, and scripts/NAME.py loaded to read it
    (its run loader handed the same model instead of loading the run's by name)."""
    lm = fresh_tiny("llama")
    out = tmp_path / "out"
    run_sequential(lm, load_dataset("builtin"), _config(["memit"], n=2), out, tmp_path, progress=False, plots=False)
    script = load_script(name)
    monkeypatch.setattr("known_facts_lost.load_model", lambda name: lm)
    return lm, out, script


def test_known_depth_script_measures_how_far_the_answers_moved(fresh_tiny, tmp_path, known_file, monkeypatch, load_script):
    """scripts/known_depth.py on a run's saved stack: each untouched known fact's answer
    log-probability now minus before, kept or not, and their summary. The tiny model knows nothing,
    so the answers' scores are replaced: before the stack both at −1 (known), with it fact 0 at
    −1.2 (kept) and fact 1 at −5 (lost)."""
    import sys

    import factpatch.tracing.dataset as dataset
    from factpatch.core.scoring import TargetTokens

    lm, out, script = _memit_run_for_script(fresh_tiny, tmp_path, monkeypatch, load_script, "known_depth")

    def answer_scores(model, facts, batch_size=32, progress=True):
        edited = weights_fingerprint(model.model) != model.fingerprint
        if not edited:
            return [TargetTokens((-1.0,), (True,)) for _ in facts]
        return [TargetTokens((-1.2,), (True,)) if f.id == "0" else TargetTokens((-5.0,), (False,)) for f in facts]

    monkeypatch.setattr(dataset, "answer_scores", answer_scores)
    monkeypatch.setattr(script, "answer_scores", answer_scores)
    monkeypatch.setattr(sys, "argv", ["known_depth.py", str(out), "memit", "--known", str(known_file)])
    script.main()
    summary = json.loads((out / "known-depth-memit-2.json").read_text())
    assert (summary["edits"], summary["kept"], summary["facts"]) == (2, 1, 2)
    assert summary["all"]["mean"] == pytest.approx(-2.1) and summary["all"]["share_above_half"] == 0.5
    assert summary["kept_facts"]["mean"] == pytest.approx(-0.2) and summary["lost_facts"]["median"] == pytest.approx(-4.0)
    rows = [json.loads(line) for line in (out / "known-depth-memit-2.jsonl").read_text().splitlines()]
    assert [(r["id"], r["kept"], r["change"]) for r in rows] == [("0", True, -0.2), ("1", False, -4.0)]
    assert weights_fingerprint(lm.model) == lm.fingerprint  # the stack is reverted


def test_known_depth_paired_compares_the_changes_fact_by_fact(tmp_path, capsys, monkeypatch, load_script):
    """scripts/known_depth_paired.py: B − A over the facts both files measured, with an interval;
    a fact only one side has is left out; a missing file is a one-line error."""
    import sys

    script = load_script("known_depth_paired")
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("".join(json.dumps({"id": str(i), "change": c}) + "\n" for i, c in enumerate([-1.0, -2.0, -3.0])))
    b.write_text("".join(json.dumps({"id": str(i), "change": c}) + "\n" for i, c in enumerate([-0.5, -1.5, -2.5, -9.0])))
    monkeypatch.setattr(sys, "argv", ["x", str(a), str(b), "--json", str(tmp_path / "p.json")])
    script.main()
    result = json.loads((tmp_path / "p.json").read_text())["b"][str(b)]
    assert (result["facts"], result["b_minus_a"], result["lo"], result["hi"]) == (3, 0.5, 0.5, 0.5)
    assert "+0.50 (+0.50 to +0.50) nats over 3 facts" in capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", ["x", str(a), str(tmp_path / "gone.jsonl")])
    with pytest.raises(SystemExit) as stop:
        script.main()
    assert stop.value.code == 2 and "gone.jsonl not found" in capsys.readouterr().err


def test_glance_table_script_reads_a_checkpoint_as_the_curves_do(fresh_tiny, tmp_path, known_file, capsys, load_script):
    """scripts/glance_table.py: one Markdown row a run at the checkpoint asked for, its numbers the
    curves' (the same records, the same bootstrap), generation entropy against the model's unedited
    row as `eval paired` has it; a checkpoint not reached says so; a malformed spec is one error
    line and exit 2."""

    from factpatch.evaluation.breakdown import compare_sides
    from factpatch.evaluation.curves import load_run_curves
    from factpatch.evaluation.generation import GenerationSettings

    script = load_script("glance_table")
    lm = fresh_tiny("llama")
    out = tmp_path / "out"
    config = _config(["memit", "none"], known_file, generation_cases=2, gen=GenerationSettings(max_length=24))
    run_sequential(lm, load_dataset("builtin"), config, out, tmp_path, progress=False, plots=False)
    row = next(r for r in load_run_curves(out).rows if r["method"] == "memit" and r["edits"] == 4)
    assert script.main(["--edits", "4", f"tiny|unedited|{out}|none", f"tiny|MEMIT|{out}|memit"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| model | method, setting | ES |") and len(lines) == 4
    unedited, cells = ([c.strip() for c in line.strip("|").split("|")] for line in lines[2:])
    assert cells[:2] == ["tiny", "MEMIT"] and unedited[5] == "–"
    assert cells[2] == f"{row['ES'] * 100:.1f} ({row['ES_lo'] * 100:.1f} to {row['ES_hi'] * 100:.1f})"
    change = compare_sides(out, "none", out, "memit", 4).metrics["fluency"].relative
    assert change.n == 2 and cells[5] == f"{change.mean * 100:+.1f} % ({change.lo * 100:+.1f} to {change.hi * 100:+.1f})"
    # a tiny random model knows none of the known facts: no share to keep, and the cell says so
    assert (cells[6].startswith(f"{row['known_share'] * 100:.1f}") if "known_share" in row else cells[6] == "–")
    assert cells[8] == f"{row['perplexity']:.2f}"
    assert script.main(["--edits", "4", f"tiny|MEMIT|{out}|memit"]) == 0  # no unedited row: no entropy
    assert capsys.readouterr().out.splitlines()[2].split("|")[6].strip() == "–"
    assert script.main(["--edits", "6", f"tiny|MEMIT|{out}|memit"]) == 0
    assert "not reached (4 edits scored)" in capsys.readouterr().out
    assert script.main(["--edits", "4", f"tiny|{out}|memit"]) == 2
    assert capsys.readouterr().err.startswith("error: expected MODEL|LABEL|RUN_DIR|METHOD")


def test_glance_table_prints_a_second_decimal_only_where_rounding_would_cross_a_target(load_script):
    """94.95 is below ES ≥ 95: one decimal would print it as 95.0, so it gets two; values the
    rounding leaves on their side of the bound, and columns without one, keep one decimal."""
    point = load_script("glance_table").point
    assert point(94.95, bound=95.0) == "94.95"
    assert point(94.96, bound=95.0) == "94.96"
    assert point(94.94, bound=95.0) == "94.9"
    assert point(95.04, bound=95.0) == "95.0"
    assert point(84.97, bound=85.0) == "84.97"
    assert point(94.999, bound=95.0) == "94.999"
    assert point(94.95) == "95.0"


def test_a_run_with_a_corpus_file_resumes_after_a_fresh_clone_and_rebuilds_from_it(fresh_tiny, tmp_path):
    """A corpus file is recorded by its bytes (and the path given), not its absolute path and
    modification time: a fresh clone (new mtime, same bytes) resumes the run and rebuilds its
    patches; the same path with other bytes is refused."""
    import os
    import shutil

    from factpatch.evaluation.sequential import rebuild_patches

    lm = fresh_tiny("llama")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(f"The city number {i} lies on the river {i % 7}." for i in range(60)))
    config = SequentialSettings(["memit"], 4, batch_size=2, checkpoint_every=2, perplexity_tokens=64,
                                overrides={"memit": FAST["memit"]}, corpus=CorpusSpec(corpus, 300))
    out = tmp_path / "out"
    run_sequential(lm, load_dataset("builtin"), config, out, tmp_path, progress=False, plots=False)
    recorded = json.loads((out / "config.json").read_text())["corpus"]
    assert recorded["corpus"] == "file" and recorded["path"] == str(corpus) and "mtime" not in recorded
    patches = out / "memit" / "patches"
    whole = _stack_fingerprint(lm, patches)
    os.utime(corpus, (1, 1))  # as a clone leaves it: the same bytes, another time
    shutil.rmtree(patches)
    rebuild_patches(lm, out, "memit", tmp_path, progress=False)
    assert _stack_fingerprint(lm, patches) == whole
    run_sequential(lm, load_dataset("builtin"), config, out, tmp_path, progress=False, plots=False)  # resumes: done
    corpus.write_text(corpus.read_text() + "\n\nAnother line.")
    with pytest.raises(FactpatchError, match="not the one the run was made with"):
        rebuild_patches(lm, out, "memit", tmp_path, progress=False)


def test_sequential_options_without_sequential_are_refused(run, tmp_path):
    for extra, flag in ((["--known", tmp_path / "k.json"], "--known"), (["--batch-size", 10], "--batch-size"),
                        (["--corpus-tokens", 100], "--corpus-tokens")):
        code, _, err = run("eval", "--dataset", "builtin", "--out", tmp_path / "out", *extra)
        assert code == 2 and f"{flag} goes with --sequential" in err
    assert not (tmp_path / "out").exists()
    code, _, err = run("eval", "--sequential", "--n", 2, "--dataset", "builtin", "--out", tmp_path / "out",
                       "--corpus-tokens", 0)
    assert code == 2 and "--corpus-tokens must be at least 1" in err
    assert not (tmp_path / "out").exists()


def test_respun_keeps_the_spectrum_and_the_side_asked_for(load_script):
    """scripts/known_facts_random.py's controls: the same singular values; with `inputs` kept the
    change reads the same input directions (row space), with `outputs` kept it writes the same output
    directions (column space); with neither both are new."""
    script = load_script("known_facts_random")
    g = torch.Generator().manual_seed(0)
    delta = torch.randn(12, 3, generator=g, dtype=torch.float64) @ torch.randn(3, 20, generator=g, dtype=torch.float64)
    s = torch.linalg.svdvals(delta)[:3]

    def projector(A):  # onto the column space of A (rank 3)
        U = torch.linalg.svd(A, full_matrices=False)[0][:, :3]
        return U @ U.T

    spread = script.respun(delta, "norm", torch.Generator().manual_seed(1))  # the norm, in every direction
    assert torch.isclose(spread.norm(), delta.norm()) and torch.linalg.matrix_rank(spread) == min(delta.shape)
    for keep in ("none", "inputs", "outputs"):
        other = script.respun(delta, keep, torch.Generator().manual_seed(1))
        assert torch.allclose(torch.linalg.svdvals(other)[:3], s) and torch.linalg.svdvals(other)[3] < 1e-9
        same_inputs = torch.allclose(projector(other.T), projector(delta.T), atol=1e-9)
        same_outputs = torch.allclose(projector(other), projector(delta), atol=1e-9)
        assert (same_inputs, same_outputs) == (keep == "inputs", keep == "outputs")


def test_known_facts_random_script_counts_each_control_and_restores_the_model(fresh_tiny, tmp_path, known_file,
                                                                              monkeypatch, load_script):
    """On a run's saved stack: the tiny model knows nothing, so the answers' scores are replaced —
    both facts known at −1 on the unedited weights; on any other weights (the edits and every
    control alike) fact 0 kept at −1.5 and fact 1 lost at −4."""
    import sys

    import factpatch.tracing.dataset as dataset
    from factpatch.core.scoring import TargetTokens

    lm, out, script = _memit_run_for_script(fresh_tiny, tmp_path, monkeypatch, load_script, "known_facts_random")

    def answer_scores(model, facts, batch_size=32, progress=True):
        if weights_fingerprint(model.model) == model.fingerprint:
            return [TargetTokens((-1.0,), (True,)) for _ in facts]
        return [TargetTokens((-1.5,), (True,)) if f.id == "0" else TargetTokens((-4.0,), (False,)) for f in facts]

    monkeypatch.setattr(dataset, "answer_scores", answer_scores)
    monkeypatch.setattr(script, "answer_scores", answer_scores)
    monkeypatch.setattr(sys, "argv", ["known_facts_random.py", str(out), "memit", "--known", str(known_file),
                                      "--draws", "2"])
    script.main()
    summary = json.loads((out / "known-random-memit-2.json").read_text())
    assert (summary["facts"], summary["unedited_known"], summary["kept"]["edited"]) == (2, 2, 1)
    assert all(summary["kept"][name] == {"draws": [1, 1], "mean": 1.0} for name in script.CONDITIONS)
    assert summary["logprob_change_mean"]["edited"] == pytest.approx(-1.75)
    assert summary["logprob_change_mean"]["random directions"]["mean"] == pytest.approx(-1.75)
    rows = [json.loads(line) for line in (out / "known-random-memit-2.jsonl").read_text().splitlines()]
    assert [(r["id"], r["kept"]["edited"], r["logprob_change"]["edited"]) for r in rows] == [("0", True, -0.5),
                                                                                             ("1", False, -3.0)]
    assert weights_fingerprint(lm.model) == lm.fingerprint


def test_known_facts_where_script_restores_the_model_and_checks_every_condition(fresh_tiny, tmp_path, known_file,
                                                                                monkeypatch, load_script):
    """scripts/known_facts_where.py on a run's saved stack (the facts made "known" to the tiny model):
    every fact gets every condition, `removed everywhere` is the unedited model, and the weights
    come back."""
    import sys

    import factpatch.tracing.dataset as dataset
    from factpatch.core.scoring import TargetTokens

    lm, out, script = _memit_run_for_script(fresh_tiny, tmp_path, monkeypatch, load_script, "known_facts_where")
    monkeypatch.setattr(dataset, "answer_scores", lambda model, facts, batch_size=32, progress=True:
                        [TargetTokens((-1.0,), (True,)) for _ in facts])
    monkeypatch.setattr(sys, "argv", ["known_facts_where.py", str(out), "memit", "--known", str(known_file)])
    script.main()
    rows = [json.loads(line) for line in (out / "known-where-memit-2.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["0", "1"] and all(set(script.CONDITIONS) <= set(r["kept"]) for r in rows)
    truth = [script.first_token(lm, torch.tensor([script.encode(lm.tokenizer, r["prompt"])])) ==
             script.encode_target(lm.tokenizer, r["prompt"], r["target"])[1][0] for r in rows]
    assert [r["kept"]["removed everywhere"] for r in rows] == truth  # on the unedited weights, as now
    assert weights_fingerprint(lm.model) == lm.fingerprint


def test_known_facts_firmness_script_groups_the_checked_facts_by_the_unedited_margin(tmp_path, monkeypatch, load_script):
    """Four facts known with margins 0.5, 1, 2 and 4 nats (a fifth not known): two groups split at
    the median; the health entries say which each checkpoint lost, and a fact the loaded model does
    not know is refused as another model's."""
    import types

    import factpatch.core.models as models
    import factpatch.tracing.dataset as dataset
    from factpatch.core.scoring import TargetTokens

    script = load_script("known_facts_firmness")
    known = tmp_path / "known.json"
    known.write_text(json.dumps([{"known_id": i, "subject": f"S{i}", "prompt": f"S{i} is in", "attribute": "X"}
                                 for i in range(5)]))
    margins = {"0": 0.5, "1": 1.0, "2": 2.0, "3": 4.0, "4": -1.0}
    monkeypatch.setattr(dataset, "answer_scores", lambda lm, facts, batch_size=32, progress=True: [
        TargetTokens((-0.1,), (margins[f.id] > 0,), (margins[f.id],)) for f in facts])
    monkeypatch.setattr(models, "load_model", lambda name: types.SimpleNamespace(fingerprint="fp"))
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"model": "m", "fingerprint": "fp"}))
    entries = [{"method": "unedited", "edits": 0},
               {"method": "memit", "edits": 2, "known_checked": ["0", "1", "2", "3"], "known_lost": ["0"],
                "known_logprob_change": {"0": -2.0, "1": -0.5, "2": -0.25, "3": -0.75}},
               {"method": "memit", "edits": 4, "known_checked": ["0", "2", "3"], "known_lost": ["0", "3"],
                "known_logprob_change": {"0": -3.0, "2": -1.0, "3": -5.0}}]
    (run / "health.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    out = tmp_path / "firm"
    script.main([f"{run}:memit", "--known", str(known), "--bins", "2", "--out", str(out)])
    summary = json.loads((out / "firmness.json").read_text())
    assert summary["known_facts"] == 4 and summary["edges"] == [0.5, 1.5, 4.0]
    rows = {(r["edits"], r["group"]): r for r in summary["results"][0]["rows"]}
    assert (rows[2, 0]["facts"], rows[2, 0]["kept"], rows[2, 1]["kept"]) == (2, 1, 2)
    assert rows[2, 0]["logprob_change"] == pytest.approx(-1.25) and rows[2, 1]["share"] == 1.0
    assert (rows[4, 0]["facts"], rows[4, 0]["kept"], rows[4, 1]["facts"], rows[4, 1]["kept"]) == (1, 0, 2, 1)
    assert len((out / "firmness.csv").read_text().splitlines()) == 1 + 4
    assert (out / "firmness.png").stat().st_size > 0 and (out / "firmness.svg").is_file()
    margins["3"] = -0.5  # the loaded model does not know a fact the run checked: not the run's model
    with pytest.raises(SystemExit, match="does not know"):
        script.main([f"{run}:memit", "--known", str(known), "--bins", "2", "--out", str(out)])
    with pytest.raises(SystemExit, match="names its known facts"):
        script.main([f"{run}:alphaedit", "--known", str(known), "--out", str(out)])
