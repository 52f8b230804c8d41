"""Hook points read and patch the right activations; starting at a layer reproduces a full pass."""

import pytest
import torch

from factpatch.core.blocks import block_output_from_attn_out, block_output_from_mlp_out
from factpatch.core.hooks import act_name, body, hooks, run_with_cache, start_at_layer, unembed
from factpatch.core.errors import FactpatchError

FAMILIES = ["llama", "gpt2", "gemma3"]


def _ids(lm, text="The Eiffel Tower is located in the city of Paris"):
    return torch.tensor([lm.tokenizer(text).input_ids], device=lm.device)


@pytest.mark.parametrize("family", FAMILIES)
def test_start_at_layer_reproduces_full_forward(tiny_models, family):
    lm = tiny_models[family]
    ids = _ids(lm)
    with torch.no_grad():
        full = body(lm)(input_ids=ids, use_cache=False).last_hidden_state
        for layer in (1, 3):
            resid = run_with_cache(lm, ids, [act_name("resid_pre", layer)])[act_name("resid_pre", layer)]
            with start_at_layer(lm, layer, resid):
                partial = body(lm)(input_ids=ids, use_cache=False).last_hidden_state
            torch.testing.assert_close(partial, full, rtol=1e-5, atol=1e-5)
    # the original blocks are back
    assert all(type(b).__name__ != "_Passthrough" for b in lm.module(lm.adapter.blocks))


@pytest.mark.parametrize("family", FAMILIES)
def test_mlp_key_and_value_hooks_match_projection(tiny_models, family):
    lm = tiny_models[family]
    names = [act_name("mlp_key", 2), act_name("mlp_out", 2)]
    cache = run_with_cache(lm, _ids(lm), names)
    key, value = cache[names[0]], cache[names[1]]
    proj = lm.module(lm.adapter.mlp_out_path(2))
    torch.testing.assert_close(proj(key), value)


@pytest.mark.parametrize("family", FAMILIES)
def test_resid_mid_splits_the_block_into_its_attention_and_mlp_halves(tiny_models, family):
    """resid_mid = resid_pre + post(attn_out); resid_post = resid_mid + mlp_sublayer(resid_mid)."""
    lm = tiny_models[family]
    names = [act_name(kind, 2) for kind in ("resid_pre", "attn_out", "resid_mid", "resid_post")]
    pre, attn, mid, post = run_with_cache(lm, _ids(lm), names).values()
    block = lm.module(lm.adapter.block(2))
    for name in lm.adapter.attn_post:
        attn = block.get_submodule(name)(attn)
    torch.testing.assert_close(pre + attn, mid)
    out = mid
    with torch.no_grad():
        for name in lm.adapter.mlp_sublayer:
            out = block.get_submodule(name)(out)
    torch.testing.assert_close(mid + out, post)
    assert not torch.allclose(mid, pre) and not torch.allclose(mid, post)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_block_finishes_from_its_attention_or_mlp_output(tiny_models, family):
    """core.blocks computes a block's output from cached states and one sub-layer's output, as the
    block itself does (Gemma's post-norms included)."""
    lm = tiny_models[family]
    names = [act_name(kind, 2) for kind in ("resid_pre", "attn_out", "resid_mid", "mlp_out", "resid_post")]
    pre, attn, mid, mlp, post = run_with_cache(lm, _ids(lm), names).values()
    with torch.no_grad():
        torch.testing.assert_close(block_output_from_mlp_out(lm, 2, mid, mlp), post)
        torch.testing.assert_close(block_output_from_attn_out(lm, 2, pre, attn), post)
        # a different MLP output gives a different block output
        assert not torch.allclose(block_output_from_mlp_out(lm, 2, mid, torch.zeros_like(mlp)), post)


@pytest.mark.parametrize("family", ["gptj", "gpt_neox"])
def test_parallel_blocks_have_no_resid_mid(fresh_tiny, family):
    lm = fresh_tiny(family)
    assert not lm.adapter.sequential and lm.adapter.mlp_post == ()
    with pytest.raises(FactpatchError, match="in parallel"):
        run_with_cache(lm, _ids(lm), [act_name("resid_mid", 1)])


def test_hook_replacement_changes_output_and_is_removed(tiny_models):
    lm = tiny_models["llama"]
    ids = _ids(lm)
    with torch.no_grad():
        clean = body(lm)(input_ids=ids).last_hidden_state
        with hooks(lm, {act_name("mlp_out", 1): lambda t, hook: torch.zeros_like(t)}):
            patched = body(lm)(input_ids=ids).last_hidden_state
        again = body(lm)(input_ids=ids).last_hidden_state
    assert not torch.allclose(clean, patched)
    torch.testing.assert_close(clean, again)


def test_stop_after_runs_only_early_layers(tiny_models):
    lm = tiny_models["llama"]
    seen = []
    with hooks(lm, {act_name("resid_post", 3): lambda t, hook: seen.append(hook)}):
        run_with_cache(lm, _ids(lm), [act_name("mlp_key", 1)], stop_after=act_name("mlp_key", 1))
        # a stop_after that runs before another name asked for: the pass ends after that name
        got = run_with_cache(lm, _ids(lm), [act_name("mlp_key", 1), act_name("resid_post", 1)],
                             stop_after=act_name("mlp_key", 1))
    assert seen == []
    assert set(got) == {act_name("mlp_key", 1), act_name("resid_post", 1)}


def test_bad_names_and_layers_are_refused(tiny_models):
    lm = tiny_models["llama"]
    with pytest.raises(FactpatchError, match="unknown activation kind"):
        act_name("mlp_middle", 1)
    with pytest.raises(FactpatchError, match="out of range"):
        run_with_cache(lm, _ids(lm), [act_name("mlp_key", 9)])


@pytest.mark.parametrize("cap", [None, 3.0])
def test_unembed_into_a_buffer_matches_the_plain_logits(tiny_models, cap):
    lm = tiny_models["gemma3"]
    hidden = 100 * torch.randn(5, lm.model.config.hidden_size, device=lm.device)  # logits beyond the cap
    previous = lm.model.config.final_logit_softcapping
    try:
        lm.model.config.final_logit_softcapping = cap
        with torch.no_grad():
            plain = unembed(lm, hidden)
            buffer = torch.full((8, plain.shape[-1]), float("nan"), device=lm.device)
            into = unembed(lm, hidden, out=buffer[:5])
    finally:
        lm.model.config.final_logit_softcapping = previous
    assert into.data_ptr() == buffer.data_ptr()
    torch.testing.assert_close(into, plain)
    if cap:
        assert float(plain.abs().max()) <= cap
