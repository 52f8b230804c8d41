"""Attention for the passes whose gradient is taken (the δ optimisation of ROME, MEMIT, AlphaEdit),
and for causal tracing in bfloat16.

Two costs that PyTorch's and transformers' defaults leave in those passes on a CPU, each measured
(BENCHMARKS.md, "Two levers measured"; runs/bench/attention-backward-bf16-2026-11-30/):

- **Grouped-query attention copies its keys and values.** With a padding mask, transformers'
  `sdpa` attention repeats each key/value head for the query heads that share it (`repeat_kv`), a
  copy forward and a sum backward every layer. The same product needs no copy: the queries that
  share a key/value head are stacked along the query axis, so they become one head of
  `n_rep · q_len` queries (the mask repeated to match). The same dot products and softmaxes (the
  forward was bit-identical in the measurement; the keys' and values' gradients are summed in
  another order); 2× faster for a z step's attention at SmolLM2's shape.
- **The fused CPU kernel's backward is slow in bfloat16**: about 3× the composite ("math")
  kernel's (62 against 19 ms forward and backward at a z step's shape), while in float32 the
  fused kernel is the faster one.

`gradient_attention(lm)` switches both for the passes inside it, on the model it is given only;
`packed_attention(lm)` the first alone.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from .models import LoadedModel

PACKED_SDPA = "factpatch_packed_sdpa"  # the name transformers' attention registry knows it by


def packed_sdpa_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None,
                          is_causal=None, **kwargs):
    """transformers' `sdpa` attention with grouped-query heads packed instead of repeated.

    query: (B, H, Q, D); key, value: (B, H_kv, K, D); attention_mask: (B or 1, 1, Q, K) boolean or
    additive, or None. Returns (B, Q, H, D) and no weights, as the `sdpa` function does. Anything
    this does not cover (no grouping, per-head masks, soft-capping, attention sinks) goes to
    transformers' own function unchanged."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    batch, heads, q_len, d_head = query.shape
    kv_heads, k_len = key.shape[1], key.shape[-2]
    n_rep = heads // kv_heads
    per_head_mask = attention_mask is not None and attention_mask.shape[1] != 1
    unusual = kwargs.get("softcap") is not None or kwargs.get("s_aux") is not None
    if n_rep == 1 or per_head_mask or unusual or heads != kv_heads * n_rep:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, is_causal=is_causal, **kwargs)
    mask = attention_mask
    if mask is not None:
        mask = mask[:, :, :, :k_len]
    elif q_len > 1 and (is_causal if is_causal is not None else getattr(module, "is_causal", True)):
        # transformers drops the mask only when it is the plain causal one (q_len == k_len or one
        # query): packed queries no longer sit on the diagonal, so it is written out
        mask = torch.ones(q_len, k_len, dtype=torch.bool, device=query.device).tril(k_len - q_len)[None, None]
    packed_query = query.reshape(batch, kv_heads, n_rep * q_len, d_head)  # heads h = kv · n_rep + r
    if mask is not None:  # (b, 1, Q, K) -> (b, 1, n_rep · Q, K): each stacked query keeps its row
        mask = mask[:, :, None].expand(mask.shape[0], 1, n_rep, q_len, k_len).reshape(
            mask.shape[0], 1, n_rep * q_len, k_len)
    out = F.scaled_dot_product_attention(
        packed_query, key, value, attn_mask=mask, dropout_p=dropout if module.training else 0.0,
        scale=scaling, is_causal=False,
    )  # (B, H_kv, n_rep · Q, D)
    return out.reshape(batch, heads, q_len, d_head).transpose(1, 2).contiguous(), None


def _register() -> None:
    """Make PACKED_SDPA known to transformers (its documented extension point), once a process."""
    from transformers import AttentionInterface
    from transformers.masking_utils import (
        ALL_MASK_ATTENTION_FUNCTIONS,
        AttentionMaskInterface,
        sdpa_mask,
    )

    if PACKED_SDPA not in AttentionInterface._global_mapping:
        AttentionInterface.register(PACKED_SDPA, packed_sdpa_attention)
    if PACKED_SDPA not in ALL_MASK_ATTENTION_FUNCTIONS._global_mapping:
        AttentionMaskInterface.register(PACKED_SDPA, sdpa_mask)  # the same masks as `sdpa`


@contextlib.contextmanager
def packed_attention(lm: LoadedModel):
    """Within: `lm`'s `sdpa` attention runs packed (`packed_sdpa_attention`; the forward is exact).
    Causal tracing's bfloat16 passes run inside it: at their shapes the fused kernel's forward took
    0.68 against 1.03 ms packed against repeated (runs/bench/trace-bf16-profile-2026-11-30/), and a
    whole bfloat16 trace 23.2 against 26.2 s; in float32 the trace was slower packed (42.7
    against 39.5 s, runs/bench/trace-packed-2026-11-30/). Other implementations (eager, GPT-2's)
    are left as they are."""
    configs = {id(module.config): module.config for module in lm.model.modules()
               if getattr(module, "config", None) is not None}
    switched = [config for config in configs.values() if getattr(config, "_attn_implementation", None) == "sdpa"]
    if switched:
        _register()
    try:
        for config in switched:
            config._attn_implementation = PACKED_SDPA
        yield
    finally:
        for config in switched:
            config._attn_implementation = "sdpa"


@contextlib.contextmanager
def gradient_attention(lm: LoadedModel):
    """Within: `lm`'s `sdpa` attention runs packed (exact), and in bfloat16 on the composite kernel.
    Other implementations (eager, GPT-2's) are left as they are."""
    with packed_attention(lm):
        if next(lm.model.parameters()).dtype == torch.bfloat16:
            from torch.nn.attention import SDPBackend, sdpa_kernel

            with sdpa_kernel([SDPBackend.MATH]):
                yield
        else:
            yield
