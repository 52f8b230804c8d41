"""Helpers for the server tests (a module name of its own: several test folders have a conftest)."""

from __future__ import annotations

import torch

from factpatch.editing.patch import Patch, WeightDelta, make_meta
from factpatch.editing.request import EditRequest

TOKEN = "t" * 24


def rank_one_patch(lm, layer: int = 1, seed: int = 0, scale: float = 1.0, fingerprint: str | None = None) -> Patch:
    """A rank-one change to W_proj at `layer`, with the metadata a ROME patch carries."""
    param = lm.adapter.mlp_out_path(layer) + ".weight"
    d_out, d_in = lm.model.get_parameter(param).shape
    gen = torch.Generator().manual_seed(seed)
    delta = WeightDelta(param, left=scale * torch.randn(d_out, generator=gen), right=torch.randn(d_in, generator=gen))
    request = EditRequest("{} is located in the city of", "Eiffel Tower", f"Rome{seed}", "Paris")
    meta = make_meta(lm, "rome", [layer], [lm.adapter.mlp_out], [request], seed=seed)
    if fingerprint is not None:
        meta["fingerprint"] = fingerprint
    return Patch([delta], meta)
