"""ROME end to end on tiny models: k*, v*, the update, and the cached-prefix optimisation."""

import math

import pytest
import torch

from factpatch.core.errors import FactpatchError
from factpatch.evaluation.metrics import score_targets
from factpatch.editing.patch import PatchStack
from factpatch.editing.request import EditRequest
from factpatch.editing.rome import ROMEParams, compute_edit, to_patch, compute_key_value, context_prefixes, projection_weight
from factpatch.editing.stats import CorpusSpec, key_second_moment

from tiny import CORPUS

FAMILIES = ["llama", "gpt2", "gemma3"]


@pytest.fixture()
def corpus_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("\n\n".join(CORPUS * 3))
    return path


def _hp(**overrides):
    values = dict(layer=1, prefixes=((3, 4), (2, 6)), v_steps=8)
    values.update(overrides)
    return ROMEParams(**values)


@pytest.mark.parametrize("family", FAMILIES)
def test_first_step_matches_unedited_scores(tiny_models, tmp_path, family):
    """The optimisation runs only the suffix from the subject on, over cached keys and values of
    the earlier positions; at δ = 0 its P(target) must equal a plain full-sequence score."""
    lm = tiny_models[family]
    hp = _hp(v_steps=1)
    for request in [
        EditRequest("{} is located in the city of", "Eiffel Tower", "Rome"),
        EditRequest("{} is the capital of", "Paris", "Italy"),  # subject first: a row with no prefix
        EditRequest("The mother tongue of {} is", "Danielle Darrieux", "Japanese"),
    ]:
        prefixes = context_prefixes(lm, hp, tmp_path)
        kv = compute_key_value(lm, request, hp, prefixes)
        scores = score_targets(lm, [p + request.text for p in prefixes], [request.target_new] * len(prefixes))
        geometric_mean = math.exp(sum(s.log_prob for s in scores) / len(scores))
        assert math.isfinite(kv.losses[0]["nll"])
        assert kv.losses[0]["p_target"] == pytest.approx(geometric_mean, rel=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_edit_writes_value_and_raises_target(fresh_tiny, tmp_path, corpus_file, family):
    lm = fresh_tiny(family)
    with torch.no_grad():  # a random model's logits are nearly flat; sharpen them so o* can win
        lm.module(lm.adapter.unembed).weight.mul_(30.0)
    # random tiny models have tiny MLP outputs (‖Wk*‖ ~ 0.01): let δ grow past the paper's bounds
    hp = _hp(v_steps=15, early_stop_nll=0.0, weight_decay=0.0, clamp_factor=1000.0)
    C = key_second_moment(lm, 1, CorpusSpec(corpus_file, 2000), tmp_path, progress=False)
    request = EditRequest("{} is located in the city of", "Eiffel Tower", "Rome", "Paris")
    before = score_targets(lm, [request.text], ["Rome"])[0].prob
    edit = compute_edit(lm, request, C, hp, tmp_path)
    stack = PatchStack(lm)
    stack.apply(to_patch(lm, edit))
    try:
        W_hat = projection_weight(lm, 1)
        torch.testing.assert_close(W_hat @ edit.key_value.k_star, edit.key_value.v_star, rtol=1e-3, atol=1e-4)
        after = score_targets(lm, [request.text], ["Rome"])[0].prob
        assert after > before * 1.5
        assert edit.key_value.losses[-1]["nll"] < edit.key_value.losses[0]["nll"]
    finally:
        stack.revert()


def test_requests_are_validated():
    with pytest.raises(FactpatchError, match="not in the prompt"):
        EditRequest.from_text("The tower is in", "Eiffel Tower", "Rome")
    with pytest.raises(FactpatchError, match="target is empty"):
        EditRequest.from_text("{} is in", "Eiffel Tower", " ")
    with pytest.raises(FactpatchError, match="equals the true object"):
        EditRequest.from_text("{} is in", "Eiffel Tower", "Paris", "Paris")
    literal = EditRequest.from_text("The Eiffel Tower is in", "Eiffel Tower", "Rome")
    assert literal.prompt == "The {} is in" and literal.text == "The Eiffel Tower is in"


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma3"])
def test_top_k_sampler_with_k_one_is_greedy_decoding(tiny_models, family):
    """k = 1 leaves no choice: the cached loop must continue exactly as greedy `generate` does."""
    from factpatch.core.generate import sample_top_k

    lm = tiny_models[family]
    prompt = torch.tensor([[3, 17, 5], [8, 2, 9]], device=lm.device)
    ours = sample_top_k(lm, prompt, 12, top_k=1)
    with torch.no_grad():
        theirs = lm.model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                                   max_new_tokens=12, min_new_tokens=12, pad_token_id=0)
    assert torch.equal(ours, theirs)


def test_top_k_sampler_draws_only_among_the_k_largest_and_never_a_banned_token(tiny_models):
    from factpatch.core.generate import sample_top_k, seeded

    lm = tiny_models["llama"]
    prompt = torch.full((64, 1), 1, device=lm.device)
    with torch.no_grad():
        logits = lm.model(prompt[:1]).logits[0, -1]
    banned = [int(logits.argmax())]  # the most likely token: without the ban it would be drawn often
    allowed = set(logits.masked_fill(torch.tensor([i in banned for i in range(len(logits))], device=lm.device), float("-inf"))
                  .topk(3).indices.tolist())
    with seeded(0):
        first = sample_top_k(lm, prompt, 1, top_k=3, banned=banned)[:, 1]
    assert set(first.tolist()) <= allowed and len(set(first.tolist())) > 1  # drawn, not argmax
    with seeded(0):
        again = sample_top_k(lm, prompt, 1, top_k=3, banned=banned)[:, 1]
    assert torch.equal(first, again)


def test_self_sampled_corpus_is_seeded_and_its_progress_counts_every_token(tiny_models, tmp_path, capsys):
    """All sequences are sampled in one batch; the bar moves with each step and ends at the total."""
    from factpatch.editing.stats import SEQ_LEN, sample_token_corpus

    lm = tiny_models["llama"]
    ids = sample_token_corpus(lm, 3 * SEQ_LEN, seed=5, cache_dir=tmp_path / "a", progress=True)
    bar = capsys.readouterr().err
    assert ids.shape == (3, SEQ_LEN)
    assert f"{3 * SEQ_LEN}/{3 * SEQ_LEN}" in bar
    again = sample_token_corpus(lm, 3 * SEQ_LEN, seed=5, cache_dir=tmp_path / "b", progress=False)
    assert torch.equal(ids, again)  # a fresh cache samples the same corpus
    other = sample_token_corpus(lm, 3 * SEQ_LEN, seed=6, cache_dir=tmp_path / "b", progress=False)
    assert not torch.equal(ids, other)


def test_a_corpus_shipped_for_these_weights_replaces_sampling_and_one_for_others_is_ignored(
        tiny_models, tmp_path, monkeypatch):
    """The package's corpora drawn in advance are used only for the same weights and settings."""
    import dataclasses

    from factpatch.editing import stats

    lm = tiny_models["llama"]
    n_tokens = 3 * stats.SEQ_LEN
    drawn = stats.sample_token_corpus(lm, n_tokens, seed=5, cache_dir=tmp_path / "draw", progress=False)
    monkeypatch.setattr(stats, "shipped_corpora_root", lambda: tmp_path / "shipped")
    path = stats.write_shipped_corpus(lm, drawn, n_tokens, seed=5)
    assert path.is_relative_to(tmp_path / "shipped") and lm.fingerprint[:16] in str(path)

    def no_sampling(*args, **kwargs):
        raise AssertionError("sampled although a matching corpus was shipped")

    with monkeypatch.context() as patched:
        patched.setattr(stats, "sample_top_k", no_sampling)
        shipped = stats.sample_token_corpus(lm, n_tokens, seed=5, cache_dir=tmp_path / "empty", progress=False)
    assert shipped.dtype == torch.long and torch.equal(shipped, drawn)
    assert not (tmp_path / "empty").exists()  # read from the package, nothing cached

    # another seed, or the same file name with other weights recorded in it: drawn anew
    other_seed = stats.sample_token_corpus(lm, n_tokens, seed=6, cache_dir=tmp_path / "c", progress=False)
    assert not torch.equal(other_seed, drawn)
    impostor = dataclasses.replace(lm, fingerprint=lm.fingerprint[:16] + "0" * (len(lm.fingerprint) - 16))
    assert stats.shipped_corpus(impostor, n_tokens, 5) is None
    assert stats.shipped_corpus(lm, n_tokens, 5, root=tmp_path / "nowhere") is None
