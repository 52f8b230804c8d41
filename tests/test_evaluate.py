"""`factpatch eval` / `compare` end to end on a tiny model: records, summaries, resume, shards, refusals."""

import json
from pathlib import Path

import pytest

from factpatch.evaluation import run as ev
from factpatch.evaluation import summary as report
from factpatch.cli import main
from factpatch.evaluation.compare import CompareSettings, compare_case, compare_texts, to_html, to_markdown, write_outputs
from factpatch.evaluation.data import load_dataset
from factpatch.core.errors import FactpatchError
from factpatch.evaluation.generation import GenerationSettings
from factpatch.evaluation.run import EvalSettings, merge_runs, run_eval

FIXTURES = Path(__file__).parent / "fixtures"
FLAT = f"counterfact:{FIXTURES / 'counterfact-flat.json'}"
ORIGINAL = f"counterfact:{FIXTURES / 'counterfact-original.json'}"
ZSRE = f"zsre:{FIXTURES / 'zsre.json'}"
FAST = {"ft+l": {"steps": "3"}, "ft": {"steps": "3"}, "attn": {"steps": "3"}}
GEN = GenerationSettings(max_new_tokens=8, max_prompts=2, reference_prompts=2, reference_tokens=6)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def lm(tiny_models):
    return tiny_models["llama"]


def _config(**kw):
    values = dict(methods=["none", "ft+l"], overrides=FAST)
    values.update(kw)
    return EvalSettings(**values)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in (path / "results.jsonl").read_text().splitlines()]


def test_counterfact_run_writes_records_and_summaries(lm, tmp_path):
    ds = load_dataset(ORIGINAL)
    run = run_eval(lm, ds, _config(generation=True, gen=GEN), tmp_path / "out", progress=False)
    records = _lines(tmp_path / "out")
    assert [(r["case_id"], r["method"]) for r in records] == [
        (c, m) for c in ("2", "3", "8") for m in ("none", "ft+l")
    ]
    first = records[0]
    assert set(first["metrics"]) >= {"ES", "EM", "PS", "PM", "NS", "NM", "fluency", "consistency"}
    assert len(first["scores"]["neighborhood"]) == 3 and len(first["scores"]["paraphrase"]) == 2
    assert len(first["texts"]) == 2 and first["patch"]["params"] == []
    assert "consistency" not in records[4]["metrics"]  # case 8 has no attribute prompts: no reference
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary == run.summary and list(summary) == ["none", "ft+l"]
    es = summary["none"]["ES"]
    assert set(es) == {"mean", "ci", "n"} and es["n"] == 3 and es["ci"][0] <= es["mean"] <= es["ci"][1]
    assert summary["none"]["S"]["n"] == 3 and summary["none"]["consistency"]["n"] == 2
    md = (tmp_path / "out" / "summary.md").read_text()
    assert "| Method | n | Score S | Efficacy ES | EM | Paraphrase PS |" in md and "| ft+l | 3 |" in md
    csv = (tmp_path / "out" / "summary.csv").read_text().splitlines()
    assert csv[0].startswith("method,n,S,S_lo,S_hi,ES,ES_lo,ES_hi,EM,") and len(csv) == 3
    assert (tmp_path / "out" / "summary.png").stat().st_size > 1000
    assert json.loads((tmp_path / "out" / "timing.json").read_text())["ft+l"]["n"] == 3


def test_zsre_run(lm, tmp_path):
    run = run_eval(lm, load_dataset(ZSRE), _config(), tmp_path / "z", progress=False)
    assert set(run.summary["none"]) == {"efficacy", "paraphrase", "specificity"}
    record = _lines(tmp_path / "z")[0]
    assert [row[0] for row in record["scores"]["token_accuracy"]] == ["efficacy", "paraphrase", "specificity"]


def test_resume_after_a_kill_gives_the_same_summary(lm, tmp_path, monkeypatch):
    ds = load_dataset(FLAT)
    full = run_eval(lm, ds, _config(), tmp_path / "full", progress=False)

    real = ev.evaluate_case
    calls = {"n": 0}

    def killed_after_three(*args, **kwargs):
        if calls["n"] == 3:
            raise KeyboardInterrupt  # as if the process were killed here
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(ev, "evaluate_case", killed_after_three)
    with pytest.raises(KeyboardInterrupt):
        run_eval(lm, ds, _config(), tmp_path / "part", progress=False)
    assert len(_lines(tmp_path / "part")) == 3
    # a write cut off mid-line is dropped on resume
    with open(tmp_path / "part" / "results.jsonl", "a") as handle:
        handle.write('{"case_id": "8", "method": "no')
    monkeypatch.setattr(ev, "evaluate_case", real)
    resumed = run_eval(lm, ds, _config(), tmp_path / "part", progress=False)
    assert resumed.new_records == 5
    assert len(_lines(tmp_path / "part")) == 8
    assert (tmp_path / "part" / "summary.json").read_text() == (tmp_path / "full" / "summary.json").read_text()
    assert resumed.summary == full.summary
    again = run_eval(lm, ds, _config(), tmp_path / "part", progress=False)  # nothing left to do
    assert again.new_records == 0 and again.summary == full.summary


def test_a_larger_n_continues_a_run_and_a_smaller_one_summarizes_its_prefix(lm, tmp_path):
    ds = load_dataset(FLAT)
    run_eval(lm, ds, _config(n=2), tmp_path / "grown", progress=False)
    grown = run_eval(lm, ds, _config(n=3), tmp_path / "grown", progress=False)
    assert grown.new_records == len(_config().methods)  # only the third case ran
    fresh = run_eval(lm, ds, _config(n=3), tmp_path / "fresh", progress=False)
    assert grown.summary == fresh.summary
    assert json.loads((tmp_path / "grown" / "config.json").read_text())["n"] == 3
    shrunk = run_eval(lm, ds, _config(n=2), tmp_path / "grown", progress=False)
    assert shrunk.new_records == 0 and len(_lines(tmp_path / "grown")) == 3 * len(_config().methods)
    assert shrunk.summary == run_eval(lm, ds, _config(n=2), tmp_path / "two", progress=False).summary


def test_a_directory_of_another_configuration_is_refused(lm, tmp_path):
    ds = load_dataset(FLAT)
    run_eval(lm, ds, _config(n=2), tmp_path / "out", progress=False)
    before = (tmp_path / "out" / "results.jsonl").read_bytes()
    with pytest.raises(FactpatchError, match="holds results of a different configuration"):
        run_eval(lm, ds, _config(n=2, overrides={"ft+l": {"steps": "4"}}), tmp_path / "out", progress=False)
    with pytest.raises(FactpatchError, match="different configuration.*dataset"):
        run_eval(lm, load_dataset(ORIGINAL), _config(n=2), tmp_path / "out", progress=False)
    assert (tmp_path / "out" / "results.jsonl").read_bytes() == before  # nothing lost


def test_methods_run_one_at_a_time_join_one_directory(lm, tmp_path):
    # Each method's results are its own: a method added later (or run alone first) is the same
    # run, and the directory's summary covers every method it holds.
    ds = load_dataset(FLAT)
    methods = _config().methods
    first = run_eval(lm, ds, _config(n=2, methods=[methods[0]]), tmp_path / "out", progress=False)
    assert list(first.summary) == [methods[0]]
    rest = run_eval(lm, ds, _config(n=2, methods=methods[1:]), tmp_path / "out", progress=False)
    assert rest.new_records == 2 * (len(methods) - 1)  # the first method was not run again
    together = run_eval(lm, ds, _config(n=2), tmp_path / "together", progress=False)
    assert rest.summary == together.summary and list(rest.summary) == list(methods)
    stored = json.loads((tmp_path / "out" / "config.json").read_text())
    assert stored["methods"] == list(methods) and set(stored["hparams"]) == set(methods)


def test_shards_merge_to_the_unsharded_summary(lm, tmp_path):
    ds = load_dataset(FLAT)
    full = run_eval(lm, ds, _config(), tmp_path / "full", progress=False)
    for i in range(2):
        run_eval(lm, ds, _config(shard=(i, 2)), tmp_path / f"s{i}", progress=False)
    merged = merge_runs([tmp_path / "s0", tmp_path / "s1"], tmp_path / "merged")
    assert merged.summary == full.summary
    assert [(r["case_id"], r["method"]) for r in _lines(tmp_path / "merged")] == [
        (r["case_id"], r["method"]) for r in _lines(tmp_path / "full")
    ]
    # methods run apart merge too; the same method with other settings does not
    run_eval(lm, ds, _config(methods=["ft+l"], overrides={"ft+l": {"steps": "4"}}), tmp_path / "other", progress=False)
    with pytest.raises(FactpatchError, match="ft\\+l was run with other settings"):
        merge_runs([tmp_path / "s0", tmp_path / "other"], tmp_path / "m2")
    with pytest.raises(FactpatchError, match="already holds results"):
        merge_runs([tmp_path / "s0", tmp_path / "s1"], tmp_path / "merged")
    run_eval(lm, load_dataset(ORIGINAL), _config(), tmp_path / "orig", progress=False)
    with pytest.raises(FactpatchError, match="different data sets"):
        merge_runs([tmp_path / "s0", tmp_path / "orig"], tmp_path / "m3")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--methods", "rome,mend"], "unknown method 'mend'"),
        (["--dataset", "counterfact:/nonexistent.json"], "dataset file not found"),
        (["--dataset", ZSRE.replace("zsre:", "counterfact:")], "holds zsre records"),
        (["--n", "0"], "--n must be at least 1"),
        (["--shard", "2/2"], "bad shard"),
        (["--dataset", "wiki"], "bad dataset"),
        (["--set", "ft.speed=3"], "unknown setting"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    args = ["eval", "--dataset", FLAT, "--out", str(tmp_path / "o"), "--model", str(tmp_path / "no-model")]
    rc = main(args + argv)
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_models):
    """The tiny Llama saved as a Hugging Face directory, for the command line's --model."""
    path = tmp_path_factory.mktemp("tiny-llama")
    tiny_models["llama"].model.save_pretrained(path)
    tiny_models["llama"].tokenizer.save_pretrained(path)
    return path


def test_paper_rows_put_the_unedited_fluency_in_the_unedited_row():
    estimate = {"mean": 0.3, "ci": [0.2, 0.4], "n": 3}
    summary = {"rome": {"fluency": estimate, "consistency": estimate}}
    rows = {line.split(" | ")[0]: line for line in report.summary_table(summary, "counterfact", paper=True).splitlines()}
    assert "~626" in rows["| none (paper, GPT-2 XL)"] and "31.9" in rows["| none (paper, GPT-2 XL)"]
    assert "626" not in rows["| rome (paper, GPT-2 XL)"]


def test_summary_intervals_with_negative_bounds_read_as_ranges():
    """A magnitude row below zero must not print as "-2.6–-1.9" (an en dash read as a minus)."""
    summary = {"rome": {"EM": {"mean": -0.023, "ci": [-0.026, -0.019], "n": 5},
                        "ES": {"mean": 0.5, "ci": [0.4, 0.6], "n": 5}}}
    table = report.summary_table(summary, "counterfact")
    assert "-2.3 (-2.6 to -1.9)" in table and "50.0 (40.0–60.0)" in table
    assert "–-" not in table


def test_generation_defaults_are_the_papers():
    """kmeng01/rome generate_fast as test_generation calls it: top-k 5, 100 tokens in all, every prompt."""
    gen = GenerationSettings()
    assert (gen.top_k, gen.max_length, gen.max_new_tokens, gen.max_prompts) == (5, 100, None, None)
    assert gen.describe() == "top-k 5, 100 tokens per text including the prompt, all of each case's generation prompts"
    with pytest.raises(FactpatchError):
        GenerationSettings(top_k=0)


def test_generated_texts_count_the_prompt_and_honour_top_k(lm, monkeypatch):
    from factpatch.core.generate import generate_texts

    tokenizer = lm.tokenizer
    prompts = ["Paris", "The Eiffel Tower is located in the city of"]
    lengths = [len(tokenizer(p).input_ids) for p in prompts]
    total = lengths[1] + 4  # the long prompt gets 4 new tokens, the short one many more
    sampled = []
    generate = lm.model.generate

    def spy(**kwargs):
        out = generate(**kwargs)
        sampled.append((kwargs, out))
        return out

    monkeypatch.setattr(lm.model, "generate", spy)
    texts = [t[0] for t in generate_texts(lm, prompts, 1, seed=1, top_k=5, max_length=total)]
    (kwargs, out), = sampled
    assert kwargs["top_k"] == 5 and kwargs["max_new_tokens"] == total - lengths[0]
    width = kwargs["input_ids"].shape[1]
    for row, (prompt, length) in enumerate(zip(prompts, lengths)):  # each text: total tokens with its prompt
        kept = out[row, width : width + total - length]
        assert len(kept) == total - length
        assert texts[row] == prompt + tokenizer.decode(kept, skip_special_tokens=True)
    monkeypatch.undo()
    # top-k 1 is greedy decoding: the sampler really uses the top_k it is given
    greedy = lm.model.generate(tokenizer([prompts[1]], return_tensors="pt").input_ids, max_new_tokens=4,
                               do_sample=False, pad_token_id=tokenizer.pad_token_id)
    expected = prompts[1] + tokenizer.decode(greedy[0, lengths[1]:], skip_special_tokens=True)
    assert generate_texts(lm, [prompts[1]], 1, seed=7, top_k=1, max_length=total)[0][0] == expected
    # a prompt already max_length long gets no continuation
    assert generate_texts(lm, [prompts[1]], 1, max_length=lengths[1])[0][0] == prompts[1]


def test_generation_needs_no_padding_token(lm):
    """Some conversions give a tokenizer without one (SmolLM2's GGUF under transformers 5.17): the
    prompts of a batch are padded here, and the texts are those a padding token would give."""
    from factpatch.core.generate import generate_texts

    prompts = ["Paris", "The Eiffel Tower is located in the city of"]
    tokenizer = lm.tokenizer
    saved = tokenizer.pad_token
    assert saved is not None
    want = generate_texts(lm, prompts, 2, seed=3, top_k=5, max_new_tokens=6)
    tokenizer.pad_token = None
    try:
        assert tokenizer.pad_token_id is None
        got = generate_texts(lm, prompts, 2, seed=3, top_k=5, max_new_tokens=6)
    finally:
        tokenizer.pad_token = saved
    assert got == want and all(text.startswith(prompt) for prompt, texts in zip(prompts, got) for text in texts)


def test_records_name_their_generation_prompts(lm, tmp_path):
    """Every generation prompt of the case, from the data set or derived (never the rewrite prompt)."""
    gen = GenerationSettings(max_length=24, reference_prompts=1, reference_tokens=4)
    original = run_eval(lm, load_dataset(ORIGINAL), _config(methods=["none"], n=1, generation=True, gen=gen),
                        tmp_path / "o", progress=False)
    record = original.records[0]
    case = load_dataset(ORIGINAL).cases[0]
    assert record["generation"] == {"prompts": list(case.generation_prompts), "source": "dataset"}
    assert len(record["texts"]) == len(case.generation_prompts)
    flat = run_eval(lm, load_dataset(FLAT), _config(methods=["none"], n=1, generation=True, gen=gen),
                    tmp_path / "f", progress=False)
    prompts = flat.records[0]["generation"]["prompts"]
    assert flat.records[0]["generation"]["source"] == "derived"
    assert load_dataset(FLAT).cases[0].request.text not in prompts
    md = (tmp_path / "f" / "summary.md").read_text()
    assert "Generation: top-k 5, 24 tokens per text including the prompt, all of each case's generation prompts; " \
           "1 cases with derived prompts" in md


def test_cli_eval_records_what_a_preset_set(model_dir, tmp_path, capsys, monkeypatch):
    """--preset reaches the editors and config.json records the settings it resolved to; the same
    directory refuses to continue without it (another configuration)."""
    monkeypatch.setattr("factpatch.editing.registry.native_bfloat16", lambda device: True)
    out = tmp_path / "o"
    base = ["eval", "--model", str(model_dir), "--cache-dir", str(tmp_path / "cache"), "--dataset", FLAT,
            "--methods", "rome", "--set", "rome.v_steps=2", "--out", str(out), "--quiet", "--n", "1"]
    assert main(base + ["--preset", "fast"]) == 0
    hparams = json.loads((out / "config.json").read_text())["hparams"]["rome"]
    assert hparams["v_dtype"] == "bfloat16" and hparams["v_steps"] == 2
    capsys.readouterr()
    assert main(base) == 2 and "differs in hparams" in capsys.readouterr().err


def test_cli_eval_resume_and_refusal(model_dir, tmp_path, capsys, monkeypatch, another_process_writes):
    out = tmp_path / "o"
    base = ["eval", "--model", str(model_dir), "--cache-dir", str(tmp_path / "cache"), "--dataset", FLAT,
            "--methods", "none,ft+l", "--set", "ft+l.steps=2", "--out", str(out), "--quiet"]
    assert main(base + ["--n", "2"]) == 0
    printed = capsys.readouterr().out
    assert "2 cases, 4 results (4 new)" in printed and "| ft+l | 2 |" in printed
    results = (out / "results.jsonl").read_bytes()
    assert main(base + ["--set", "ft+l.steps=3", "--n", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "different configuration (differs in hparams)" in err and err.count("\n") == 1
    assert (out / "results.jsonl").read_bytes() == results
    assert main(base + ["--n", "2"]) == 0 and "(0 new)" in capsys.readouterr().out
    with another_process_writes(out):  # the same run still going elsewhere: one line, exit 2, nothing written
        assert main(base + ["--n", "3"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "is being written by another process" in err and err.count("\n") == 1
        assert (out / "results.jsonl").read_bytes() == results
        with monkeypatch.context() as patched:  # and it is said before the model is loaded
            patched.setattr("factpatch.cli.load_lm", lambda *_, **__: pytest.fail("the model was loaded"))
            assert main(base + ["--n", "3"]) == 2
            assert main(base + ["--n", "3", "--sequential"]) == 2
            assert capsys.readouterr().err.count("is being written by another process") == 2
    assert main(base + ["--n", "2"]) == 0 and "(0 new)" in capsys.readouterr().out  # the lock went with its holder
    assert main(["eval", "merge", str(out), "--out", str(tmp_path / "m")]) == 0
    assert json.loads((tmp_path / "m" / "summary.json").read_text()) == json.loads((out / "summary.json").read_text())


def test_cli_zsre_target_is_a_named_option(model_dir, tmp_path, capsys):
    base = ["eval", "--model", str(model_dir), "--cache-dir", str(tmp_path / "cache"), "--dataset", ZSRE,
            "--methods", "none", "--n", "1", "--quiet"]
    assert main(base + ["--out", str(tmp_path / "paper")]) == 0
    assert main(base + ["--zsre-target", "alt", "--out", str(tmp_path / "alt")]) == 0
    configs = {name: json.loads((tmp_path / name / "config.json").read_text()) for name in ("paper", "alt")}
    assert configs["paper"]["dataset"]["zsre_target"] == "paper" and configs["alt"]["dataset"]["zsre_target"] == "alt"
    capsys.readouterr()
    assert main(base + ["--zsre-target", "alt", "--out", str(tmp_path / "paper")]) == 2  # never mixed
    assert "differs in dataset" in capsys.readouterr().err
    assert main(base + ["--zsre-target", "answers", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: bad zsRE target 'answers'") and err.count("\n") == 1


def test_compare_writes_side_by_side_outputs(lm, tmp_path):
    case = load_dataset(ORIGINAL).cases[0]
    settings = CompareSettings(n=2, max_new_tokens=6, max_prompts=2, seed=3)
    record = compare_case(lm, case, ["ft+l", "none"], settings, overrides=FAST)
    assert record["case_id"] == "2" and record["counterfactual"] == "Toko Yasuda, the piano"
    assert record["prompt"] == case.generation_prompts[0]
    assert set(record["texts"]) == {"ft+l", "none"}
    assert [len(s["texts"]["none"]) for s in record["samples"]] == [2, 2]
    again = compare_case(lm, case, ["none"], settings)
    assert again["samples"] == [{"prompt": s["prompt"], "texts": {"none": s["texts"]["none"]}} for s in record["samples"]]
    paths = write_outputs([record], tmp_path / "cmp")
    assert "| ft+l | none |" in paths["markdown"].read_text()
    from factpatch.study.scenarios import read_jsonl

    (scenario,) = read_jsonl(paths["jsonl"])
    assert scenario.case_id == "2" and set(scenario.texts) == {"ft+l", "none"}


def test_compare_html_escapes_model_text():
    record = {
        "case_id": "1", "counterfactual": "A <b>bold</b> claim",
        "texts": {"rome": "x"},
        "samples": [{"prompt": "P & Q", "texts": {"rome": ["<script>alert(1)</script>"]}}],
    }
    page = to_html([record])
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "A &lt;b&gt;bold&lt;/b&gt; claim" in page and "P &amp; Q" in page
    assert "<link" not in page and "src=" not in page  # self-contained


def test_compare_markdown_keeps_apostrophes_and_escapes_markup():
    record = {
        "case_id": "1", "counterfactual": "x",
        "texts": {"rome": "x"},
        "samples": [{"prompt": "It's", "texts": {"rome": ["Rome's <b>tower</b> | a|b"]}}],
    }
    page = to_markdown([record])
    assert "Rome's &lt;b&gt;tower&lt;/b&gt; \\| a\\|b" in page
    assert "&#x27;" not in page


def test_compare_texts_is_what_the_study_calls(lm):
    from factpatch.study.scenarios import parse_scenario

    records = compare_texts(model=lm, dataset=ORIGINAL, n=2, methods=["none", "ft+l"], seed=1, max_new_tokens=5)
    assert [r["case_id"] for r in records] == ["2", "3"]
    for i, record in enumerate(records):
        parse_scenario(record, f"record {i}", ["none", "ft+l"])
    with pytest.raises(FactpatchError, match="CounterFact"):
        compare_texts(model=lm, dataset=ZSRE, n=1, methods=["none"])


def test_format_1_results_are_brought_up_to_date_from_their_raw_scores(lm, tmp_path, load_script):
    """scripts/recompute_magnitudes.py: format-1 magnitudes (whole-sequence probabilities) become the
    paper's from the stored scores, and the directory resumes under the current code."""
    import math

    script = load_script("recompute_magnitudes")
    out = tmp_path / "old"
    run = run_eval(lm, load_dataset(ORIGINAL), _config(methods=["none"]), out, progress=False)
    fresh = [dict(r["metrics"]) for r in run.records]
    config = json.loads((out / "config.json").read_text())
    config["format_version"] = 1
    (out / "config.json").write_text(json.dumps(config))
    old = []
    for record in run.records:  # what format 1 stored: P[o] as the product of the token probabilities
        rows = record["scores"]["rewrite"]
        record["metrics"]["EM"] = sum(math.exp(r[0]) - math.exp(r[2]) for r in rows) / len(rows)
        old.append(record)
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
    with pytest.raises(FactpatchError, match="format_version"):
        run_eval(lm, load_dataset(ORIGINAL), _config(methods=["none"]), out, progress=False)
    assert "recomputed" in script.migrate(out)
    migrated = _lines(out)
    for record, metrics in zip(migrated, fresh):
        assert record["metrics"]["EM"] == pytest.approx(metrics["EM"], abs=1e-5)
    assert run_eval(lm, load_dataset(ORIGINAL), _config(methods=["none"]), out, progress=False).new_records == 0
    assert "already format 2" in script.migrate(out)


def test_against_unedited_pairs_the_cases_both_were_scored_on():
    from factpatch.evaluation.summary import against_unedited, against_unedited_lines

    records = [
        {"method": "none", "case_id": "a", "metrics": {"NS": 1.0, "fluency": 6.0}},
        {"method": "none", "case_id": "b", "metrics": {"NS": 0.0, "fluency": 4.0}},
        {"method": "none", "case_id": "c", "metrics": {"NS": 1.0, "fluency": 5.0}},  # memit has no record of c
        {"method": "memit", "case_id": "a", "metrics": {"NS": 0.0, "fluency": 5.4}},
        {"method": "memit", "case_id": "b", "metrics": {"NS": 0.0, "fluency": 3.6}},
    ]
    comparison = against_unedited(records, "counterfact", ["memit", "none"])
    assert set(comparison) == {"memit"}
    ns, ge = comparison["memit"]["NS"], comparison["memit"]["fluency"]
    assert ns["as"] == "difference" and ns["n"] == 2 and ns["mean"] == pytest.approx(-0.5)  # not −2/3: c is left out
    # each case's entropy is 0.9 of the unedited model's: every paired resample gives −10 %, so the
    # interval has no width (two unpaired intervals would)
    assert ge["as"] == "relative" and ge["mean"] == pytest.approx(-0.1)
    assert ge["ci"] == pytest.approx([-0.1, -0.1])
    lines = "\n".join(against_unedited_lines(comparison))
    assert "memit: Neighborhood NS -50.0 points" in lines and "Fluency GE -10.0 %" in lines
    assert against_unedited(records[3:], "counterfact", ["memit"]) == {}  # no unedited model in the run
    assert against_unedited_lines({}) == []


def test_each_method_keeps_its_colour_in_every_figure():
    from factpatch.editing.registry import METHODS
    from factpatch.evaluation.summary import method_color

    colours = {m: method_color(m) for m in METHODS}
    assert colours["none"] == "tab:gray"
    assert len(set(colours.values())) == len(METHODS)  # no two methods share a colour
    assert method_color("unknown-method") == "black"
