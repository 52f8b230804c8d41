"""How far a stack of patches moves each matrix, delta by delta, and whether the deltas add up or cancel.

For each matrix W a stack touches, with W₀ its original:

    each delta alone       ‖Δᵢ‖_F / ‖W₀‖_F
    after each patch       ‖Σᵢ Δᵢ‖_F / ‖W₀‖_F        (a sequential run's `weight_change`)
    beside it              √(Σᵢ ‖Δᵢ‖²_F) / ‖W₀‖_F     (the orthogonal sum)

The two totals are equal when the deltas are mutually orthogonal (⟨Δᵢ, Δⱼ⟩_F = 0); above the
orthogonal sum they pile up in shared directions, below it they cancel. A ROME patch holds one
rank-one delta per edit, so for ROME a delta is an edit; a MEMIT or AlphaEdit patch holds one delta
per layer for the whole batch. `factpatch patch norms` prints and writes these.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from ..core.errors import FactpatchError
from .patch import Patch


@dataclass(frozen=True)
class AfterPatch:
    patch: str  # the patch's id
    weight_change: dict[str, float]  # matrix -> ‖Σ Δ‖ / ‖W₀‖ after this patch
    orthogonal_sum: dict[str, float]  # matrix -> √(Σ ‖Δ‖²) / ‖W₀‖ after this patch
    deltas_so_far: dict[str, int]


@dataclass
class StackNorms:
    after_patch: list[AfterPatch] = field(default_factory=list)
    per_delta: dict[str, list[float]] = field(default_factory=dict)  # matrix -> ‖Δᵢ‖ / ‖W₀‖, in stack order

    def to_dict(self) -> dict:
        return {
            "after_patch": [
                {"patch": step.patch,
                 "matrices": {name: {"weight_change": round(step.weight_change[name], 6),
                                     "orthogonal_sum": round(step.orthogonal_sum[name], 6),
                                     "deltas_so_far": step.deltas_so_far[name]}
                              for name in step.weight_change}}
                for step in self.after_patch],
            "per_delta": {name: {"median": round(statistics.median(values), 6), "max": round(max(values), 6),
                                 "values": [round(v, 6) for v in values]}
                          for name, values in self.per_delta.items()},
        }


def stack_norms(originals: Mapping[str, torch.Tensor], patches: Sequence[Patch]) -> StackNorms:
    """The norms above for `patches` applied in order to the matrices `originals` (W₀ by parameter
    name). Float64 throughout: a delta of one part in 10⁷ of its matrix is not rounding."""
    result = StackNorms()
    w0_norm: dict[str, float] = {}
    total: dict[str, torch.Tensor] = {}  # Σ Δᵢ so far, (d_out, d_in) in the parameter's layout
    squares: dict[str, float] = {}  # Σ ‖Δᵢ‖² / ‖W₀‖² so far
    for patch in patches:
        for delta in patch.deltas:
            if delta.param not in originals:
                raise FactpatchError(f"patch {patch.id} touches {delta.param!r}, which this model does not have")
            if delta.param not in total:
                w0 = originals[delta.param].detach().double()
                w0_norm[delta.param] = float(torch.linalg.norm(w0))
                total[delta.param] = torch.zeros_like(w0)
                squares[delta.param] = 0.0
                result.per_delta[delta.param] = []
            d = delta.tensor().double()
            if d.shape != total[delta.param].shape:
                raise FactpatchError(f"patch {patch.id} delta for {delta.param} has shape {tuple(d.shape)}, "
                                     f"the model's is {tuple(total[delta.param].shape)}")
            total[delta.param] += d
            relative = float(torch.linalg.norm(d)) / w0_norm[delta.param]
            squares[delta.param] += relative ** 2
            result.per_delta[delta.param].append(relative)
        result.after_patch.append(AfterPatch(
            patch.id,
            {name: float(torch.linalg.norm(t)) / w0_norm[name] for name, t in total.items()},
            {name: math.sqrt(squares[name]) for name in total},
            {name: len(result.per_delta[name]) for name in total},
        ))
    return result
