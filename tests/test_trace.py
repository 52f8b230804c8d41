"""Causal tracing on tiny random models: exactness of restorations, noise, windows, token groups,
the cached-suffix speed-up against whole-prompt recomputation, dataset resume, the CLI."""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest
import torch

from factpatch.core.errors import FactpatchError
from factpatch.tracing.dataset import knows, load_facts, read_results, summarize, token_groups, trace_dataset
from factpatch.tracing.engine import prepare, restored_probs
from factpatch.tracing.prompt import save_trace, trace_prompt
from factpatch.tracing.reference import restored_prob
from factpatch.tracing.schedule import Restore, shared_trunks, start_layer
from factpatch.tracing.settings import KINDS, NoiseSettings, TraceSettings, layer_window

from tiny import CORPUS, FAMILIES, PARALLEL_FAMILIES

PROMPT = "The mother tongue of Danielle Darrieux is"
SUBJECT = "Danielle Darrieux"
SETTINGS = TraceSettings(noise=NoiseSettings(scale=3.0, samples=3, seed=1), window=2)

# one thread throughout, the real model included: on a machine shared with other jobs a trace of
# SmolLM2 ran 3-6x slower on 2 threads than on 1 (thread hand-offs), and tiny models gain nothing
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(params=FAMILIES)
def lm(request, tiny_models):
    return tiny_models[request.param]


def _all_restores(lm, prep, sever=True):
    T = prep.n_tokens
    restores = [Restore(kind, l, (i,)) for kind in KINDS for l in range(lm.n_layers) for i in range(T)]
    restores += [Restore("hidden", l, (i,), cut) for cut in ("mlp", "attn") if sever
                 for l in range(lm.n_layers) for i in range(T)]
    restores += [Restore("mlp", 1, (1, 3)), Restore("hidden", 2, tuple(range(2, T)))]
    return restores


# ----------------------------------------------------------------------------- exactness


def test_restoring_every_token_of_a_hidden_layer_reproduces_the_clean_run(lm):
    prep = prepare(lm, PROMPT, SUBJECT, sigma=1.0, noise=SETTINGS.noise, window=2)
    T = prep.n_tokens
    assert prep.p_corrupted != pytest.approx(prep.p_clean, rel=1e-3)  # the noise does something
    everything = [Restore("hidden", l, tuple(range(T))) for l in range(lm.n_layers)]
    probs = restored_probs(lm, prep, everything)
    torch.testing.assert_close(probs, torch.full_like(probs, prep.p_clean), rtol=1e-4, atol=1e-6)
    # the last token after the last block is the model's output itself
    last = restored_probs(lm, prep, [Restore("hidden", lm.n_layers - 1, (T - 1,))])
    torch.testing.assert_close(last, torch.full_like(last, prep.p_clean), rtol=1e-5, atol=1e-7)


def test_restorations_match_a_naive_hooked_run(lm):
    """The batched, cached, suffix-only runs give what the plain definition gives."""
    prep = prepare(lm, PROMPT, SUBJECT, sigma=1.0, noise=SETTINGS.noise, window=3)
    T, L = prep.n_tokens, lm.n_layers
    restores = [Restore("hidden", 1, (T - 2,)), Restore("hidden", 0, (prep.subject_range[0],)),
                Restore("mlp", 0, (T - 3,)), Restore("mlp", L - 1, (prep.subject_range[1] - 1,)),
                Restore("attn", 2, (T - 1,)), Restore("attn", 1, (2, 5)),
                Restore("hidden", 1, (T - 3,), "mlp"), Restore("hidden", 0, (T - 1,), "attn"),
                # windows clamped at layer 0 that share a trunk pass: [0, 2) and [0, 3)
                Restore("mlp", 1, (T - 3,)), Restore("attn", 0, (2, 5)), Restore("attn", 0, (T - 1,)),
                Restore("attn", 1, (T - 1,))]
    trunks = shared_trunks(restores, L, prep.window, sequential=True)
    assert (trunks.start, trunks.branch) == (1, 2)
    assert sorted(map(sorted, trunks.groups)) == [[2, 8], [5, 9], [10, 11]]
    fast = restored_probs(lm, prep, restores)
    for j, restore in enumerate(restores):
        for s in range(prep.samples):
            assert float(fast[j, s]) == pytest.approx(restored_prob(lm, prep, restore, s), rel=1e-4, abs=1e-7), restore


@pytest.mark.parametrize("family", PARALLEL_FAMILIES)
def test_gptj_and_neox_traces_match_the_reference(fresh_tiny, family):
    """Real parallel-block architectures (attention and MLP side by side, no resid_mid)."""
    lm = fresh_tiny(family)
    assert lm.adapter.mlp_sublayer is None
    prep = prepare(lm, PROMPT, SUBJECT, sigma=1.0, noise=SETTINGS.noise, window=2)
    T = prep.n_tokens
    restores = [Restore("hidden", 1, (T - 2,)), Restore("mlp", 0, (T - 3,)), Restore("attn", 2, (T - 1,)),
                Restore("mlp", 2, (prep.subject_range[1] - 1,)), Restore("hidden", 0, (T - 1,), "attn")]
    fast = restored_probs(lm, prep, restores)
    for j, restore in enumerate(restores):
        for s in range(prep.samples):
            assert float(fast[j, s]) == pytest.approx(restored_prob(lm, prep, restore, s), rel=1e-4, abs=1e-7), restore


def test_parallel_blocks_trace_without_the_first_block_shortcut(lm):
    """A model whose attention and MLP run in parallel (no resid_mid) computes the window's first
    block in the pass; the results are the same."""
    parallel = dataclasses.replace(lm, adapter=dataclasses.replace(lm.adapter, mlp_sublayer=None, attn_post=()))
    prep = prepare(lm, PROMPT, SUBJECT, sigma=1.0, noise=SETTINGS.noise, window=2)
    prep_parallel = prepare(parallel, PROMPT, SUBJECT, sigma=1.0, noise=SETTINGS.noise, window=2)
    assert prep.corrupted_resid_mid is not None and prep_parallel.corrupted_resid_mid is None
    restores = _all_restores(lm, prep, sever=False)
    torch.testing.assert_close(restored_probs(parallel, prep_parallel, restores),
                               restored_probs(lm, prep, restores), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("scale", [0, 0.0, -2.0, float("nan"), float("inf")])
def test_noise_must_corrupt(scale):
    """One rule for the library and the CLI (which builds these settings): ν/σ > 0, or there is
    no corrupted run to restore (test_cli_bad_input_one_line_no_files: `--noise 0`)."""
    with pytest.raises(FactpatchError, match="--noise .* greater than 0"):
        NoiseSettings(scale=scale)
    assert NoiseSettings(scale=1e-3).scale == 1e-3


def test_sigma_must_be_positive(tiny_models):
    with pytest.raises(FactpatchError, match="σ must be a finite number greater than 0"):
        prepare(tiny_models["llama"], PROMPT, SUBJECT, sigma=0.0, noise=SETTINGS.noise)


def test_tiny_noise_barely_moves_the_corrupted_run(lm):
    settings = TraceSettings(noise=NoiseSettings(scale=1e-6, samples=2), window=2)
    result = trace_prompt(lm, PROMPT, SUBJECT, settings=settings, sigma=1.0, progress=False)
    assert result.p_corrupted == pytest.approx(result.p_clean, rel=1e-4)
    for grid in result.scores.values():
        assert torch.allclose(torch.tensor(grid), torch.tensor(result.p_clean), rtol=1e-3)


def test_cached_suffix_matches_whole_prompt_recomputation(lm):
    prep = prepare(lm, PROMPT, SUBJECT, sigma=1.0, noise=SETTINGS.noise, window=2)
    restores = _all_restores(lm, prep)
    fast = restored_probs(lm, prep, restores, suffix=True)
    slow = restored_probs(lm, prep, restores, suffix=False)
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-6)
    if lm.adapter.family != "gemma3":  # its sliding window (8) is shorter than the prompt: no suffix then
        assert prep.kv is not None


def test_suffix_is_used_when_the_prompt_fits_the_sliding_window(tiny_models):
    lm = tiny_models["gemma3"]
    prep = prepare(lm, "Rome is the capital of", "Rome", sigma=1.0, noise=SETTINGS.noise, window=2)
    assert prep.n_tokens <= 8 and prep.kv is not None
    restores = _all_restores(lm, prep, sever=False)[:-1]
    torch.testing.assert_close(restored_probs(lm, prep, restores), restored_probs(lm, prep, restores, suffix=False),
                               rtol=1e-4, atol=1e-6)


def test_severing_changes_only_what_it_should(tiny_models):
    lm = tiny_models["llama"]
    prep = prepare(lm, PROMPT, SUBJECT, sigma=1.0, noise=SETTINGS.noise, window=2)
    T, L = prep.n_tokens, lm.n_layers
    # at the last layer nothing comes after: severing is a no-op
    plain, cut = restored_probs(lm, prep, [Restore("hidden", L - 1, (T - 1,)), Restore("hidden", L - 1, (T - 1,), "mlp")])
    torch.testing.assert_close(plain, cut)
    # restoring every token at layer 0 with later MLPs frozen at corrupted values is not the clean run
    everything = tuple(range(T))
    severed = restored_probs(lm, prep, [Restore("hidden", 0, everything, "mlp")])
    assert not torch.allclose(severed, torch.tensor(prep.p_clean), rtol=1e-4)


def test_tokens_before_the_subject_equal_the_corrupted_run(tiny_models):
    lm = tiny_models["gpt2"]
    result = trace_prompt(lm, PROMPT, SUBJECT, settings=SETTINGS, sigma=1.0, progress=False)
    start = result.subject_range[0]
    assert start > 0
    prep = prepare(lm, PROMPT, SUBJECT, sigma=1.0, noise=SETTINGS.noise, window=2)
    direct = restored_probs(lm, prep, [Restore("hidden", 1, (0,))]).mean()
    assert float(direct) == pytest.approx(result.p_corrupted, rel=1e-5)
    for grid in result.scores.values():
        assert grid[0] == [result.p_corrupted] * lm.n_layers


# ----------------------------------------------------------------------------- windows and token groups


def test_window_is_clamped_at_the_first_and_last_layers():
    assert layer_window(0, 30, 10) == range(0, 5)
    assert layer_window(3, 30, 10) == range(0, 8)
    assert layer_window(15, 30, 10) == range(10, 20)
    assert layer_window(29, 30, 10) == range(24, 30)
    assert layer_window(27, 30, 10) == range(22, 30)
    assert layer_window(2, 4, 1) == range(2, 3)
    assert layer_window(0, 4, 100) == range(0, 4) == layer_window(3, 4, 100)
    assert layer_window(0, 4, 3) == range(0, 2) and layer_window(3, 4, 3) == range(2, 4)
    assert start_layer(Restore("mlp", 0, (0,)), 30, 10) == 0
    assert start_layer(Restore("attn", 29, (0,)), 30, 10) == 24
    assert start_layer(Restore("hidden", 29, (0,)), 30, 10) == 30
    # with attention and MLP in sequence, a window's first block is computed without a pass
    assert start_layer(Restore("mlp", 0, (0,)), 30, 10, sequential=True) == 1
    assert start_layer(Restore("attn", 29, (0,)), 30, 10, sequential=True) == 25
    assert start_layer(Restore("hidden", 29, (0,)), 30, 10, sequential=True) == 30


def test_token_groups_for_subjects_at_the_start_middle_and_end():
    # "Danielle Darrieux's mother tongue is": subject tokens 0..2, then 5 more tokens
    assert token_groups((0, 3), 8) == [[0], [1], [2], [3], [4, 5, 6], [7]]
    # subject in the middle: tokens before it belong to no group
    assert token_groups((2, 4), 9) == [[2], [], [3], [4], [5, 6, 7], [8]]
    # subject at the end: no subsequent tokens; its last token is the prompt's last token
    assert token_groups((3, 6), 6) == [[3], [4], [5], [], [], [5]]
    # one-token subject followed by one token: first == last subject token, first subsequent == last
    assert token_groups((0, 1), 2) == [[0], [], [0], [1], [], [1]]
    with pytest.raises(FactpatchError):
        token_groups((3, 3), 5)


def test_token_groups_follow_the_tokenizer(tiny_models):
    lm = tiny_models["llama"]
    for prompt, subject in [("Rome is the capital of", "Rome"),
                            ("The capital of Italy is Rome", "Rome"),
                            ("The official language of Japan is", "Japan")]:
        prep = prepare(lm, prompt, subject, sigma=1.0, noise=NoiseSettings(samples=1), window=2)
        start, end = prep.subject_range
        groups = token_groups((start, end), prep.n_tokens)
        assert groups[0] == [start] and groups[2] == [end - 1] and groups[5] == [prep.n_tokens - 1]
        covered = sorted({t for g in groups for t in g})
        assert covered == list(range(start, prep.n_tokens))


# ----------------------------------------------------------------------------- one prompt: output, warnings, bad input


def test_trace_prompt_output_and_files(tiny_models, tmp_path, caplog):
    lm = tiny_models["llama"]
    settings = TraceSettings(kinds=("hidden", "mlp", "attn"), window=2, sever=("mlp",),
                             noise=NoiseSettings(samples=2))
    with caplog.at_level(logging.WARNING, logger="factpatch.tracing"):
        result = trace_prompt(lm, PROMPT, SUBJECT, target="French", settings=settings, sigma=1.0, progress=False)
    assert not result.target_is_top  # a random model does not know French
    assert any("does not predict" in r.message for r in caplog.records)
    files = save_trace(result, tmp_path / "out")
    assert sorted(f.name for f in files) == ["trace.json", "trace.png", "trace.svg"]
    data = json.loads((tmp_path / "out" / "trace.json").read_text())
    for key in ("prompt", "subject", "target", "tokens", "subject_range", "p_clean", "p_corrupted", "noise",
                "samples", "kinds"):
        assert key in data
    assert set(data["kinds"]) == {"hidden", "mlp", "attn", "hidden_sever_mlp"}
    T = len(data["tokens"])
    for kind in data["kinds"].values():
        assert len(kind["scores"]) == T and all(len(row) == lm.n_layers for row in kind["scores"])
    assert data["target"] == "French" and data["samples"] == 2
    assert (tmp_path / "out" / "trace.png").read_bytes()[:4] == b"\x89PNG"


def test_untargeted_trace_follows_the_top_prediction(tiny_models):
    lm = tiny_models["gemma3"]
    result = trace_prompt(lm, PROMPT, SUBJECT, settings=SETTINGS, sigma=1.0, progress=False)
    assert result.target_is_top and result.p_clean > 0
    # restoring the last token's final hidden state gives back the clean probability
    assert result.scores["hidden"][-1][-1] == pytest.approx(result.p_clean, rel=1e-4)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda lm: prepare(lm, PROMPT, "Paris"), "not in the prompt"),
        (lambda lm: prepare(lm, "   ", "x"), "prompt is empty"),
        (lambda lm: TraceSettings(kinds=("hidden", "mlps")), "unknown kind"),
        (lambda lm: NoiseSettings(samples=0), "samples"),
        (lambda lm: NoiseSettings(scale=-1.0), "noise"),
        (lambda lm: TraceSettings(sever=("hidden",)), "cannot sever"),
        (lambda lm: TraceSettings(window=0), "window"),
    ],
)
def test_bad_input_raises_one_clear_error(tiny_models, call, message):
    with pytest.raises(FactpatchError, match=message):
        call(tiny_models["llama"])


# ----------------------------------------------------------------------------- datasets and resume


def _known_dataset(lm, path, count=4):
    """Facts the tiny model 'knows' by construction: its own greedy next word after each prompt."""
    from factpatch.tracing.dataset import Fact

    candidates = []
    for number, sentence in enumerate(CORPUS):
        words = sentence.rstrip(".").split()
        for cut in range(3, len(words)):
            prompt = " ".join(words[:cut])
            ids = torch.tensor([lm.tokenizer(prompt).input_ids], device=lm.device)
            with torch.no_grad():
                top = int(lm.model(ids).logits[0, -1].argmax())
            word = lm.tokenizer.decode([top])
            if word.startswith(" ") and word.strip().isalpha():
                candidates.append({"known_id": len(candidates), "subject": words[0] + " " + words[1],
                                   "attribute": word.strip(), "prompt": prompt})
    facts = [Fact(str(c["known_id"]), c["prompt"], c["subject"], c["attribute"]) for c in candidates]
    flags = knows(lm, facts, progress=False)
    chosen = [c for c, ok in zip(candidates, flags) if ok][:count]
    assert len(chosen) >= 3, "the tiny model should know a few of its own continuations"
    unknown = {"known_id": 999, "subject": "Rome", "attribute": "Zanzibar", "prompt": "Rome is the capital of"}
    path.write_text(json.dumps([chosen[0], unknown] + chosen[1:]))
    return path


class _Killer:
    """A progress factory whose fact bar raises after `after` facts, as a killed run would stop."""

    def __init__(self, after):
        self.after = after

    def __call__(self, **kwargs):
        killer = self

        class Bar:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

            def update(self, n=1):
                if kwargs.get("desc") == "tracing facts":
                    killer.after -= n
                    if killer.after <= 0:
                        raise KeyboardInterrupt

        return Bar()


def test_a_killed_dataset_run_resumes_to_the_same_averages(tiny_models, tmp_path, another_process_writes):
    lm = tiny_models["llama"]
    dataset = _known_dataset(lm, tmp_path / "known.json")
    settings = TraceSettings(window=2, sever=("mlp", "attn"), sever_tokens="last subject",
                             noise=NoiseSettings(samples=2, seed=3))
    full = trace_dataset(lm, dataset, tmp_path / "full", settings, sigma=1.0, progress=False)
    assert full.known == full.traced >= 3 and full.checked == full.known + 1
    assert {p.name for p in full.files} >= {"results.jsonl", "summary.json", "average.png", "average.svg",
                                            "sever.png", "sever.svg"}
    record = read_results(tmp_path / "full" / "results.jsonl")[0]
    last_subject = record["subject_range"][1] - 1
    severed = record["kinds"]["hidden_sever_attn"]
    assert [i for i, row in enumerate(severed) if row is not None] == [last_subject]
    counts = full.summary["kinds"]["hidden_sever_mlp"]["facts_per_group"]
    assert counts[2] == full.traced and counts[1] == counts[3] == counts[4] == 0

    out = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        trace_dataset(lm, dataset, out, settings, sigma=1.0, progress=_Killer(after=2), plots=False)
    assert len(read_results(out / "results.jsonl")) == 2
    with open(out / "results.jsonl", "a") as handle:  # killed in the middle of writing a line
        handle.write('{"id": "7", "prompt": "The Eif')
    with another_process_writes(out), pytest.raises(FactpatchError, match="being written by another process"):
        trace_dataset(lm, dataset, out, settings, sigma=1.0, progress=False, plots=False)
    resumed = trace_dataset(lm, dataset, out, settings, sigma=1.0, progress=False, plots=False)
    assert resumed.new == full.traced - 2 and resumed.traced == full.traced
    assert resumed.summary["kinds"] == full.summary["kinds"]
    assert resumed.summary["p_clean"] == full.summary["p_clean"]
    assert len((out / "results.jsonl").read_text().splitlines()) == full.traced

    # a rerun with other settings into the same directory is refused
    other = TraceSettings(window=3, noise=NoiseSettings(samples=2, seed=3))
    with pytest.raises(FactpatchError, match="other settings"):
        trace_dataset(lm, dataset, out, other, sigma=1.0, progress=False)


def test_summary_averages_by_group():
    record = {"tokens": ["a", "b", "c", "d"], "subject_range": [0, 2], "p_clean": 0.5, "p_corrupted": 0.1,
              "kinds": {"mlp": [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6], [0.7, 0.8]]}}
    summary = summarize([record], ["mlp"], 2)
    p = summary["kinds"]["mlp"]["p"]
    assert p[0] == pytest.approx([0.1, 0.2]) and p[2] == pytest.approx([0.3, 0.4])
    assert summary["kinds"]["mlp"]["facts_per_group"] == [1, 0, 1, 1, 0, 1]
    assert summary["kinds"]["mlp"]["ie"][5] == pytest.approx([0.6, 0.7])
    assert summary["peaks"]["mlp_last_subject"]["layer"] == 1


def test_choose_layers_takes_the_mlp_peak_at_the_last_subject_token():
    from factpatch.tracing.dataset import choose_layers

    def record(mlp_last_subject, attn_last):
        rows = [[0.1] * 4 for _ in range(4)]
        mlp, attn = [list(r) for r in rows], [list(r) for r in rows]
        mlp[1], attn[3] = mlp_last_subject, attn_last  # subject tokens 0..1, last token 3
        return {"tokens": list("abcd"), "subject_range": [0, 2], "p_clean": 0.5, "p_corrupted": 0.1,
                "kinds": {"mlp": mlp, "attn": attn}}

    summary = summarize([record([0.2, 0.4, 0.3, 0.1], [0.1, 0.1, 0.2, 0.5]),
                         record([0.2, 0.5, 0.1, 0.1], [0.1, 0.1, 0.6, 0.1])], ["mlp", "attn"], 4)
    choice = choose_layers(summary)
    assert choice["edit_layer"] == 1 and choice["edit_layer_ie"] == pytest.approx(0.35)
    assert choice["attn_layer"] == 2 and choice["attn_layer_p"] == pytest.approx(0.4)
    with pytest.raises(FactpatchError, match="mlp"):
        choose_layers(summarize([record([0.1] * 4, [0.1] * 4)], ["attn"], 4))


def test_load_facts_rejects_missing_and_malformed_files(tmp_path):
    with pytest.raises(FactpatchError, match="not found"):
        load_facts(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(FactpatchError, match="not JSON"):
        load_facts(bad)
    bad.write_text(json.dumps([{"subject": "Rome", "prompt": "Rome is in"}]))
    with pytest.raises(FactpatchError, match="no attribute"):
        load_facts(bad)
    bad.write_text(json.dumps([{"subject": "Paris", "prompt": "Rome is in", "attribute": "Italy"}]))
    with pytest.raises(FactpatchError, match="not in its prompt"):
        load_facts(bad)
    good = tmp_path / "good.json"
    good.write_text(json.dumps([{"known_id": 5, "subject": "Rome", "template": "{} is in", "attribute": " Italy"}]))
    assert load_facts(good)[0].prompt == "Rome is in" and load_facts(good)[0].target == "Italy"


# ----------------------------------------------------------------------------- command line


@pytest.fixture()
def cli(capsys, tmp_path, monkeypatch):
    from factpatch.cli import main

    monkeypatch.setenv("FACTPATCH_CACHE", str(tmp_path / "cache"))
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(CORPUS * 3))

    def invoke(*args):
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    invoke.corpus = corpus
    return invoke


def test_cli_traces_one_prompt(cli, tiny_dir, tmp_path):
    out = tmp_path / "trace"
    code, stdout, err = cli("trace", "--model", tiny_dir, "--prompt", PROMPT, "--subject", SUBJECT,
                            "--samples", 2, "--window", 2, "--corpus", cli.corpus, "--quiet", "--out", out)
    assert code == 0, err
    assert "P clean" in stdout and "peak" in stdout
    assert {p.name for p in out.iterdir()} == {"trace.json", "trace.png", "trace.svg"}


def test_cli_bfloat16_trace_says_it_is_approximate(cli, tiny_dir, tmp_path):
    out = tmp_path / "trace"
    code, stdout, err = cli("trace", "--model", tiny_dir, "--prompt", PROMPT, "--subject", SUBJECT, "--dtype", "bfloat16",
                            "--samples", 2, "--window", 2, "--corpus", cli.corpus, "--quiet", "--out", out)
    assert code == 0, err
    assert "in bfloat16 (approximate" in stdout
    assert json.loads((out / "trace.json").read_text())["dtype"] == "bfloat16"


@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_bfloat16_trace_is_near_float32_and_leaves_the_model_alone(tiny_models, family):
    from factpatch.core.models import weights_fingerprint

    lm = tiny_models[family]
    fingerprint = weights_fingerprint(lm.model)
    exact = TraceSettings(kinds=("hidden", "mlp"), window=2, noise=NoiseSettings(samples=3))
    approx = dataclasses.replace(exact, dtype="bfloat16")
    full = trace_prompt(lm, PROMPT, SUBJECT, settings=exact, sigma=1.0, progress=False)
    half = trace_prompt(lm, PROMPT, SUBJECT, settings=approx, sigma=1.0, progress=False)
    assert weights_fingerprint(lm.model) == fingerprint and next(lm.model.parameters()).dtype == torch.float32
    cells = [(a, b) for kind in full.scores for ra, rb in zip(full.scores[kind], half.scores[kind])
             if ra is not None for a, b in zip(ra, rb)]
    assert max(abs(a - b) for a, b in cells) < 0.1 * max(a for a, _ in cells)  # near, within a tenth of the scale
    assert any(a != b for a, b in cells)  # and it did run in the other precision
    assert half.p_clean == pytest.approx(full.p_clean, rel=0.1)


@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_only_a_bfloat16_trace_packs_its_attention_and_packing_changes_no_score(tiny_models, family, monkeypatch):
    """The bfloat16 engine runs grouped-query attention packed (tiny Llama and Gemma 3 have
    grouped heads); unpacked it gives the same scores up to bfloat16 rounding. float32 never packs."""
    import contextlib

    from factpatch.tracing import engine

    lm = tiny_models[family]
    entered = []
    real = engine.packed_attention

    def counting(model):
        entered.append(next(model.model.parameters()).dtype)
        return real(model)

    monkeypatch.setattr(engine, "packed_attention", counting)
    settings = TraceSettings(kinds=("hidden", "attn"), window=2, noise=NoiseSettings(samples=3), dtype="bfloat16")
    packed = trace_prompt(lm, PROMPT, SUBJECT, settings=settings, sigma=1.0, progress=False)
    assert entered and set(entered) == {torch.bfloat16}
    trace_prompt(lm, PROMPT, SUBJECT, settings=dataclasses.replace(settings, dtype="float32"), sigma=1.0, progress=False)
    assert set(entered) == {torch.bfloat16}  # the float32 trace did not pack
    monkeypatch.setattr(engine, "packed_attention", lambda model: contextlib.nullcontext())
    plain = trace_prompt(lm, PROMPT, SUBJECT, settings=settings, sigma=1.0, progress=False)
    cells = [(a, b) for kind in packed.scores for ra, rb in zip(packed.scores[kind], plain.scores[kind])
             if ra is not None for a, b in zip(ra, rb)]
    assert max(abs(a - b) for a, b in cells) < 0.02 * max(abs(a) for a, _ in cells) + 1e-6


def test_float32_trace_settings_keep_the_key_runs_were_recorded_under():
    """A dataset run's identity holds the settings' key: the default precision leaves it as it was."""
    assert "dtype" not in TraceSettings().key()
    assert TraceSettings(dtype="bfloat16").key()["dtype"] == "bfloat16"


def test_cli_traces_a_dataset(cli, tiny_models, tiny_dir, tmp_path, monkeypatch, another_process_writes):
    from factpatch.core.models import from_pretrained_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    lm = from_pretrained_model(AutoModelForCausalLM.from_pretrained(tiny_dir), AutoTokenizer.from_pretrained(tiny_dir))
    dataset = _known_dataset(lm, tmp_path / "known.json", count=3)
    out = tmp_path / "avg"
    args = ("trace", "--model", tiny_dir, "--dataset", dataset, "--n", 2, "--samples", 2, "--window", 2,
            "--kinds", "hidden,mlp", "--corpus", cli.corpus, "--quiet", "--out", out)
    code, stdout, err = cli(*args)
    assert code == 0, err
    assert "knows 3 of 4 facts" in stdout and "2 traced (2 new" in stdout and "suggested edit layer" in stdout
    code, stdout, err = cli(*args)  # rerun: everything is there already
    assert code == 0 and "2 traced (0 new" in stdout
    results = (out / "results.jsonl").read_bytes()

    def no_load(*_, **__):
        raise AssertionError("the model was loaded for a run another process is writing")

    # a second start of a run still going is refused at once, before the model and σ are loaded
    monkeypatch.setattr("factpatch.cli.load_lm", no_load)
    with another_process_writes(out):
        code, stdout, err = cli(*args)
    assert code == 2 and err.startswith("error: ") and "being written by another process" in err
    assert err.count("\n") == 1 and (out / "results.jsonl").read_bytes() == results


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--prompt", PROMPT, "--subject", "Paris"], "is not in the prompt"),
        (["--prompt", "", "--subject", "x"], "prompt is empty"),
        (["--prompt", PROMPT, "--subject", SUBJECT, "--kinds", "hidden,mlp,attention"], "unknown kind"),
        (["--prompt", PROMPT, "--subject", SUBJECT, "--samples", "0"], "--samples"),
        (["--prompt", PROMPT, "--subject", SUBJECT, "--noise", "0"], "--noise"),
        (["--prompt", PROMPT, "--subject", SUBJECT, "--noise", "-2"], "--noise"),
        (["--prompt", PROMPT, "--subject", SUBJECT, "--window", "0"], "--window"),
        (["--prompt", PROMPT, "--subject", SUBJECT, "--dtype", "float16"], "--dtype must be one of float32, bfloat16"),
        (["--prompt", PROMPT, "--subject", " "], "subject is empty"),
        (["--prompt", PROMPT, "--subject", SUBJECT, "--target", " "], "target is empty"),
        (["--dataset", "MISSING"], "not found"),
        (["--dataset", "MALFORMED"], "not JSON"),
        (["--prompt", PROMPT, "--subject", SUBJECT, "--out", "UNWRITABLE"], "cannot write"),
    ],
)
def test_cli_bad_input_one_line_no_files(cli, tmp_path, extra, message):
    malformed = tmp_path / "malformed.json"
    malformed.write_text("[{")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    subs = {"MISSING": tmp_path / "missing.json", "MALFORMED": malformed, "UNWRITABLE": blocker / "sub"}
    extra = [str(subs.get(a, a)) for a in extra]
    out = tmp_path / "out"
    args = ["trace", "--quiet"] + extra + ([] if "--out" in extra else ["--out", str(out)])
    code, stdout, err = cli(*args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert not out.exists()


# ----------------------------------------------------------------------------- the real model


@pytest.mark.integration
def test_embedded_model_trace(embedded_lm, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(CORPUS * 20))
    from factpatch.tracing.settings import embedding_std

    sigma = embedding_std(embedded_lm, corpus=corpus, cache_dir=tmp_path / "cache", progress=False)
    assert 0.01 < sigma < 10
    # the hidden-state map alone: the lab's browser test traces all three kinds on this model
    settings = TraceSettings(kinds=("hidden",), noise=NoiseSettings(samples=2, seed=0))
    result = trace_prompt(embedded_lm, "The Eiffel Tower is located in the city of", "Eiffel Tower", "Paris",
                          settings=settings, sigma=sigma, progress=False)
    assert result.target_is_top and result.p_clean > 0.2
    assert result.p_corrupted < result.p_clean
    L = embedded_lm.n_layers
    assert {k: (len(g), len(g[0])) for k, g in result.scores.items()} == {"hidden": (len(result.tokens), L)}
    assert result.scores["hidden"][-1][-1] == pytest.approx(result.p_clean, rel=1e-4)
    # restoring a subject token's early hidden state brings much of the answer back
    start, end = result.subject_range
    assert max(max(row[:5]) for row in result.scores["hidden"][start:end]) > 0.2
