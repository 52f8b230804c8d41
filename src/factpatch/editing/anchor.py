"""Norm anchoring of the target values z (NAS: Liu, Zhu, Miao and Fujisawa 2026, "Toward
Ultra-Long-Horizon Sequential Model Editing", arXiv 2602.02543; reference code SasyaTitech/NAS).

MEMIT and AlphaEdit write each request's z = h_L + δ (memit.py, step 1). Split the block output
at the subject's last token as h_L = r + v₀, v₀ what layer L's MLP adds to the residual stream and
r what comes before it; then

    v* = v₀ + δ = z − r          (d_model,)  the MLP contribution the edit asks for.

Liu et al. trace the collapse of long sequential runs to ‖v*‖ (and with it the written weights)
growing batch after batch, and fix one norm a for every edit:

    z' = r + a · v* / ‖v*‖       if ‖v*‖ ≤ s · a
    z' = h_L                     otherwise (v* = v₀: nothing written; the key still enters the solve)

a is the mean ‖v*‖ of edits made on the unedited model, the largest 5 % left out; s = 2.
Where a comes from differs: NAS optimises δ for 1,000 sampled CounterFact requests on the bare
prompt alone; factpatch takes the first batch written on the unedited model (with the edits' own
optimisation, every context) and carries a in that batch's patch (`norm_anchor` in its
metadata), so every later batch of the stack, and a resumed run, anchors to the same a.
"""

from __future__ import annotations

import math

import torch

from .patch import PatchStack

ANCHOR_META = "norm_anchor"


def anchor_norm(norms: torch.Tensor, drop_top: float) -> float:
    """a: the mean of `norms` (n,) without its largest ⌊drop_top · n⌋ (NAS's upper-trimmed mean)."""
    values = norms.detach().double().flatten().sort().values
    dropped = math.floor(drop_top * len(values) + 1e-9)
    return float(values[: len(values) - dropped].mean())


def anchored_targets(Z: torch.Tensor, H: torch.Tensor, r: torch.Tensor, a: float,
                     skip_factor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(Z', skipped): z' = r + a · v*/‖v*‖ with v* = z − r, or z' = h_L where ‖v*‖ > skip_factor · a.

    Z, H, r: (n, d_model) targets, block outputs h_L and what precedes L's MLP (h_L − v₀);
    skipped: (n,) bool."""
    v_star = Z - r  # (n, d_model)
    norm = v_star.norm(dim=-1, keepdim=True)  # (n, 1)
    skipped = norm.squeeze(-1) > skip_factor * a
    scaled = r + v_star * (a / norm.clamp_min(torch.finfo(norm.dtype).tiny))
    return torch.where(skipped.unsqueeze(-1), H, scaled), skipped


def stack_anchor(stack: PatchStack | None) -> float | None:
    """The a that the stack's first anchored batch carries; None if no applied patch carries one."""
    for patch in stack.applied if stack is not None else []:
        if patch.meta.get(ANCHOR_META) is not None:
            return float(patch.meta[ANCHOR_META])
    return None
