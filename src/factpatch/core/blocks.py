"""Running part of a model from cached states: the rest of a block after one of its sub-layers,
and a pass that attends to cached keys and values of earlier positions.

What a block does with its sub-layers' outputs is an architecture fact, named by the adapter
(`core.models.ArchAdapter`); this module turns those names into the two computations causal
tracing needs, so no algorithm runs a block's sub-modules by name. With attention and MLP in
sequence (Llama, Gemma, GPT-2) a block computes

    resid_mid  = resid_pre + attn_post(attn_out)          (attn_post: e.g. Gemma's post-norm)
    resid_post = resid_mid + mlp_sublayer(resid_mid)      (norm, MLP, any post-norm)

and `mlp_out` — W_proj's output — becomes what the MLP adds through `mlp_post`, the modules after
the MLP in `mlp_sublayer`. Blocks that run attention and MLP in parallel (GPT-J, GPT-NeoX) have no
resid_mid (`adapter.sequential` is False) and the two functions below do not apply.

All tensors are [batch, pos, d_model]; every position is computed on its own (norms and MLPs
are position-wise), so a caller may pass any subset of positions.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .hooks import body, cache_kwarg
from .models import LoadedModel


def _through(lm: LoadedModel, layer: int, names: Sequence[str], x: torch.Tensor) -> torch.Tensor:
    block = lm.module(lm.adapter.block(layer))
    for name in names:
        x = block.get_submodule(name)(x)
    return x


def block_output_from_mlp_out(lm: LoadedModel, layer: int, resid_mid: torch.Tensor, mlp_out: torch.Tensor) -> torch.Tensor:
    """resid_post of block `layer` given its resid_mid and W_proj's output: resid_mid + mlp_post(mlp_out)."""
    assert lm.adapter.sequential, f"{lm.name} runs attention and MLP in parallel"
    return resid_mid + _through(lm, layer, lm.adapter.mlp_post, mlp_out)


def block_output_from_attn_out(lm: LoadedModel, layer: int, resid_pre: torch.Tensor, attn_out: torch.Tensor) -> torch.Tensor:
    """resid_post of block `layer` given its resid_pre and the attention's output: the block's
    MLP half run on resid_mid = resid_pre + attn_post(attn_out)."""
    adapter = lm.adapter
    assert adapter.mlp_sublayer is not None, f"{lm.name} runs attention and MLP in parallel"
    mid = resid_pre + _through(lm, layer, adapter.attn_post, attn_out)
    return mid + _through(lm, layer, adapter.mlp_sublayer, mid)


# ----------------------------------------------------------------------------- key/value caches


KeysValues = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values [batch, head, pos, d_head]


def cached_keys_values(cache, n_layers: int, n_tokens: int) -> KeysValues | None:
    """Every layer's keys and values from the cache a pass returned, or None where they are not
    all there at full length (e.g. a sliding window shorter than the prompt)."""
    layers = getattr(cache, "layers", None)
    if layers is None or len(layers) != n_layers:
        return None
    kv = []
    for layer in layers:
        keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
        if not isinstance(keys, torch.Tensor) or keys.dim() != 4 or keys.shape[-2] != n_tokens:
            return None
        kv.append((keys.detach(), values.detach()))
    return kv


def prefix_cache_kwargs(lm: LoadedModel, kv: KeysValues, rows: torch.Tensor | None, length: int) -> dict:
    """Arguments for a model body's forward pass over positions `length`.. that attends to the
    cached keys and values of `rows` (None: every row) at positions ..`length`. The pass appends
    to a fresh cache and leaves `kv` as it was, so one `kv` serves any number of passes."""
    from transformers import DynamicCache

    prefix = [(k[:, :, :length] if rows is None else k[rows, :, :length],
               v[:, :, :length] if rows is None else v[rows, :, :length]) for k, v in kv]
    return {cache_kwarg(body(lm)): DynamicCache(prefix, config=lm.model.config), "use_cache": True}


@dataclass
class PrefixCache:
    """The keys and values of positions ..`length` of a batch of rows, for passes over the
    positions after them: any number of passes (each appends to its own fresh cache) and any
    subset of the rows. Kept as per-layer tensors where every layer holds all the positions; a
    sliding-window layer shorter than that keeps state (its offset) that only the cache object
    knows, and then the object itself is kept and each pass gets a copy."""

    length: int
    kv: KeysValues | None
    cache: object = None  # the model's cache object, only where `kv` could not be read from it

    @classmethod
    def of(cls, cache, n_layers: int, length: int) -> PrefixCache:
        kv = cached_keys_values(cache, n_layers, length)
        return cls(length, kv, None if kv is not None else cache)

    def select(self, rows: torch.Tensor) -> PrefixCache:
        """The same prefixes for `rows` only."""
        if self.kv is not None:
            return PrefixCache(self.length, [(k[rows], v[rows]) for k, v in self.kv])
        cache = copy.deepcopy(self.cache)
        cache.batch_select_indices(rows)
        return PrefixCache(self.length, None, cache)

    def forward_kwargs(self, lm: LoadedModel) -> dict:
        if self.kv is not None:
            return prefix_cache_kwargs(lm, self.kv, None, self.length)
        return {cache_kwarg(body(lm)): copy.deepcopy(self.cache), "use_cache": True}
