"""The δ optimisation in bfloat16 (`v_dtype`): the optimisation runs on a bfloat16 copy of the
weights, while keys, the unedited values and the model stay float32."""

import pytest
import torch

from factpatch.core.errors import FactpatchError
from factpatch.core.hooks import act_name, run_with_cache
from factpatch.core.models import weights_fingerprint
from factpatch.editing.memit import compute_targets
from factpatch.editing.registry import make_editor, method_params
from factpatch.editing.request import EditRequest
from factpatch.editing.rome import ROMEParams, compute_key_value, context_prefixes
from factpatch.editing.stats import CorpusSpec
from factpatch.editing.values import build_contexts, states_at_subject
from factpatch.evaluation.run import check_out_dir

pytestmark = pytest.mark.usefixtures("one_thread")

REQUESTS = [
    EditRequest("{} is located in the city of", "Eiffel Tower", "Rome", "Paris"),
    EditRequest("{} is the capital of", "Paris", "Italy", "France"),  # subject first: no prefix tokens
    EditRequest("The mother tongue of {} is", "Danielle Darrieux", "Japanese", "French"),
]
FAST = {"v_steps": "10", "group_size": "2", "layers": "0-1", "clamp_factor": "100", "weight_decay": "0",
        "v_lr": "0.1", "kl_weight": "0", "early_stop_nll": "0"}


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma3"])
def test_states_at_subject_read_what_the_cached_pass_reads(tiny_models, tmp_path, family):
    """One pass over whole rows gives the subject's states that the prefix-cached pass gives."""
    lm = tiny_models[family]
    prefixes = context_prefixes(lm, ROMEParams(layer=1, prefixes=((3, 4),)), tmp_path)
    ctx = build_contexts(lm, REQUESTS, prefixes, "{} is a")
    names = [act_name("mlp_key", 1), act_name("resid_post", 1)]
    cached = run_with_cache(lm, ctx.suffix_ids, names, stop_after=names[1], **ctx.forward_kwargs(lm))
    whole = states_at_subject(lm, ctx, names, names[1])
    for name in names:
        torch.testing.assert_close(whole[name], cached[name][:, 0], rtol=1e-4, atol=1e-5)


def test_bfloat16_z_is_near_float32_and_leaves_the_model_in_float32(fresh_tiny, tmp_path):
    lm = fresh_tiny("llama")
    with torch.no_grad():
        lm.module(lm.adapter.unembed).weight.mul_(30.0)
    fingerprint = weights_fingerprint(lm.model)
    runs = {}
    for dtype in ("float32", "bfloat16"):
        params = method_params(lm, "memit", {**FAST, "v_dtype": dtype})
        prefixes = make_editor(lm, "memit", params, tmp_path, progress=False, corpus=CorpusSpec(n_tokens=512)).prefixes
        runs[dtype] = compute_targets(lm, REQUESTS, params, prefixes, progress=False)
    assert weights_fingerprint(lm.model) == fingerprint
    assert all(p.dtype == torch.float32 for p in lm.model.parameters())
    full, half = runs["float32"], runs["bfloat16"]
    # z = h_L + δ with h_L from the float32 model: the two differ only through δ's optimisation
    base = states_at_subject(lm, build_contexts(lm, REQUESTS, [""], None), [act_name("resid_post", 1)],
                             act_name("resid_post", 1))[act_name("resid_post", 1)]
    write_full, write_half = full.Z - base, half.Z - base  # (n, d) what each update is asked to write
    assert float(write_full.norm(dim=-1).min()) > 0
    cosine = torch.nn.functional.cosine_similarity(write_full, write_half, dim=-1)
    assert bool((cosine > 0.95).all()), cosine
    assert not torch.equal(full.Z, half.Z)  # it did run in the other precision
    assert all(b > a for a, b in zip(half.p_first, half.p_last))


def test_bfloat16_rome_keeps_k_star_in_float32(tiny_models, tmp_path):
    lm = tiny_models["llama"]
    request = REQUESTS[0]
    found = {}
    for dtype in ("float32", "bfloat16"):
        hp = ROMEParams(layer=1, prefixes=((3, 4),), v_steps=3, v_dtype=dtype)
        found[dtype] = compute_key_value(lm, request, hp, context_prefixes(lm, hp, tmp_path))
    assert found["bfloat16"].k_star.dtype == torch.float32
    # k* enters the closed form: computed by the float32 model, equal up to summation order
    torch.testing.assert_close(found["bfloat16"].k_star, found["float32"].k_star, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(found["bfloat16"].Wk_star, found["float32"].Wk_star, rtol=1e-4, atol=1e-6)


def test_an_unknown_precision_is_one_clear_error(tiny_models):
    with pytest.raises(FactpatchError, match="v_dtype must be one of float32, bfloat16"):
        method_params(tiny_models["llama"], "memit", {"v_dtype": "float16"})
    with pytest.raises(FactpatchError, match="v_dtype"):
        ROMEParams(v_dtype="fp8")


def test_runs_recorded_before_v_dtype_existed_stay_resumable(tiny_models, tmp_path):
    lm = tiny_models["llama"]
    recorded = {m: method_params(lm, m).to_dict() for m in ("rome", "memit")}
    for values in recorded.values():
        del values["v_dtype"]  # as configs written before the setting existed read
    check_out_dir(tmp_path / "run", {"hparams": recorded, "model": "tiny"})
    now = {m: method_params(lm, m).to_dict() for m in ("rome", "memit")}
    check_out_dir(tmp_path / "run", {"hparams": now, "model": "tiny"})  # the same run: resumes
    other = {m: method_params(lm, m, {"v_dtype": "bfloat16"}).to_dict() for m in ("rome", "memit")}
    with pytest.raises(FactpatchError, match="differs in hparams"):
        check_out_dir(tmp_path / "run", {"hparams": other, "model": "tiny"})



@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_states_at_some_rows_are_those_rows_of_the_whole_pass(tiny_models, family):
    """z's float32 base in a bfloat16 run reads only each request's bare prompt: those rows alone
    give what the pass over every context gives at them (rows attend only to themselves)."""
    lm = tiny_models[family]
    ctx = build_contexts(lm, REQUESTS, ["", "A short prefix. ", "Another, longer prefix than that. "], "{} is a")
    name = act_name("resid_post", 1)
    rows = torch.arange(len(REQUESTS)) * ctx.n_contexts
    whole = states_at_subject(lm, ctx, [name], name)[name]
    some = states_at_subject(lm, ctx, [name], name, rows=rows)[name]
    assert some.shape == (len(REQUESTS), whole.shape[1])
    assert torch.allclose(some, whole[rows], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(some, whole[rows + 1], rtol=1e-3, atol=1e-4)  # another context differs
