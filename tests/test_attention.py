"""Attention for gradient passes (core.attention): packed grouped-query attention computes what
transformers' `sdpa` attention computes, and bfloat16 passes run on the composite kernel."""

import pytest
import torch
import torch.nn.functional as F
from torch.profiler import profile

from factpatch.core.attention import PACKED_SDPA, gradient_attention, packed_sdpa_attention
from factpatch.core.hooks import body

pytestmark = pytest.mark.usefixtures("one_thread")


class _Module(torch.nn.Module):
    is_causal = True

    def __init__(self, n_rep):
        super().__init__()
        self.num_key_value_groups = n_rep


@pytest.mark.parametrize("q_len, k_len, masked", [(5, 9, True), (7, 7, False), (1, 6, False), (1, 6, True)])
@pytest.mark.parametrize("n_rep", [1, 3])
def test_packed_attention_equals_transformers_sdpa(q_len, k_len, masked, n_rep):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    torch.manual_seed(0)
    batch, kv_heads, d_head = 3, 2, 8
    query = torch.randn(batch, kv_heads * n_rep, q_len, d_head, requires_grad=True)
    key, value = (torch.randn(batch, kv_heads, k_len, d_head, requires_grad=True) for _ in range(2))
    mask = None
    if masked:  # causal, lower-right aligned, with left padding in row 0
        mask = torch.ones(q_len, k_len, dtype=torch.bool).tril(k_len - q_len).repeat(batch, 1, 1, 1)
        mask[0, :, :, :2] = False
    module = _Module(n_rep)
    want, _ = sdpa_attention_forward(module, query, key, value, mask, scaling=0.3)
    got, weights = packed_sdpa_attention(module, query, key, value, mask, scaling=0.3)
    assert weights is None and got.shape == want.shape == (batch, q_len, kv_heads * n_rep, d_head)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    want_grads = torch.autograd.grad(want.square().sum(), (query, key, value))
    got_grads = torch.autograd.grad(got.square().sum(), (query, key, value))
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", ["llama", "gemma3", "gpt2"])
def test_a_padded_batch_through_the_model_is_unchanged_and_the_setting_restored(tiny_models, family):
    lm = tiny_models[family]
    ids = torch.arange(5, 29, device=lm.device).reshape(2, 12)  # longer than the tiny Gemma 3's sliding window (8)
    ids[1, :3] = 0
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    before = lm.model.config._attn_implementation
    with torch.no_grad():
        want = body(lm)(input_ids=ids, attention_mask=mask).last_hidden_state
        with gradient_attention(lm):
            inside = lm.model.config._attn_implementation
            got = body(lm)(input_ids=ids, attention_mask=mask).last_hidden_state
    assert lm.model.config._attn_implementation == before
    if before == "sdpa" and family != "gpt2":  # GPT-2 has no grouped heads; its own function is kept
        assert inside == PACKED_SDPA
    real = mask.bool()
    torch.testing.assert_close(got[real], want[real], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype, fused", [(torch.float32, True), (torch.bfloat16, False)])
def test_bfloat16_gradient_passes_use_the_composite_kernel(tiny_models, dtype, fused):
    """PyTorch's fused CPU kernel computes its backward several times slower in bfloat16
    (BENCHMARKS.md); float32 keeps it, where it is the faster one."""
    from factpatch.core.models import cast_copy

    lm = cast_copy(tiny_models["llama"], dtype)
    q, k, v = (torch.randn(2, 3, n, 8, dtype=dtype, requires_grad=True) for n in (4, 6, 6))
    with profile() as prof, gradient_attention(lm):
        F.scaled_dot_product_attention(q, k, v).sum().backward()
    names = {event.key for event in prof.key_averages()}
    assert any("flash_attention" in name for name in names) == fused
