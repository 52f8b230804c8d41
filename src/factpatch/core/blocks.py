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


def mlp_contribution(lm: LoadedModel, layer: int, mlp_out: torch.Tensor) -> torch.Tensor:
    """What block `layer`'s MLP adds to the residual stream, given W_proj's output: mlp_post(mlp_out)."""
    return _through(lm, layer, lm.adapter.mlp_post, mlp_out)


def block_output_from_mlp_out(lm: LoadedModel, layer: int, resid_mid: torch.Tensor, mlp_out: torch.Tensor) -> torch.Tensor:
    """resid_post of block `layer` given its resid_mid and W_proj's output: resid_mid + mlp_post(mlp_out)."""
    assert lm.adapter.sequential, f"{lm.name} runs attention and MLP in parallel"
    return resid_mid + mlp_contribution(lm, layer, mlp_out)


def mlp_out_change_for(
    lm: LoadedModel, layer: int, mlp_out: torch.Tensor, resid_change: torch.Tensor, damping: float = 1e-3,
    steps: int = 2,
) -> torch.Tensor:
    """The change Δy of W_proj's output (n, d_out) that moves what block `layer`'s MLP adds to the
    residual stream by `resid_change` r (n, d_model), from W_proj's outputs y = `mlp_out` (n, d_out).

    Without `mlp_post` the two are the same. Through a norm (Gemma 2/3's post-norm) they are not:
    the norm divides by the output's scale (there W_proj's outputs are ~100× smaller than what
    reaches the residual stream), cannot change that scale, and its weights pass some directions
    ~1,000× more than others (a few are 0). So each row solves, by Gauss–Newton with the modules'
    own Jacobian J (no architecture fact here),

        min_Δy ‖post(y + Δy) − post(y) − r‖² + μ ‖Δy‖²,     μ = damping · mean(diag JᵀJ)

    μ keeps out the directions the norm barely passes: undamped, matching r there asks for Δy (and
    so ΔW) orders of magnitude beyond W; what one layer does not make, the layers after it are
    asked for (MEMIT's R is recomputed between layers)."""
    if not lm.adapter.mlp_post:
        return resid_change

    def post(y: torch.Tensor) -> torch.Tensor:  # (d_out,) -> (d_model,)
        return mlp_contribution(lm, layer, y)

    # rows a chunk: J and JᵀJ are (rows, d_model, d_out) and (rows, d_out, d_out) floats; ≤ 2²⁵ each
    chunk_rows = max(1, min(32, (1 << 25) // (resid_change.shape[-1] * mlp_out.shape[-1])))
    parts = []
    with torch.enable_grad():
        for start in range(0, len(mlp_out), chunk_rows):
            y0 = mlp_out[start : start + chunk_rows].detach().float()  # (c, d_out)
            with torch.no_grad():
                target = post(y0) + resid_change[start : start + chunk_rows].float()  # (c, d_model)
            change = torch.zeros_like(y0)
            for _ in range(steps):
                J = torch.func.vmap(torch.func.jacrev(post))(y0 + change).detach()  # (c, d_model, d_out)
                with torch.no_grad():
                    # linearised at y0 + change, solved for the whole change (so μ damps all of it)
                    wanted = target - post(y0 + change) + (J @ change[..., None])[..., 0]  # (c, d_model)
                    A = J.transpose(1, 2) @ J  # (c, d_out, d_out)
                    mu = damping * A.diagonal(dim1=1, dim2=2).mean(dim=1)  # (c,)
                    A.diagonal(dim1=1, dim2=2).add_(mu[:, None])
                    change = torch.linalg.solve(A, J.transpose(1, 2) @ wanted[..., None])[..., 0]
            parts.append(change.to(mlp_out.dtype))
    return torch.cat(parts)


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
