"""PRUNE: restraining what a stack of edits has done to each matrix (Ma, Wang, Xu, Ling and Gu,
ICLR 2025, "Perturbation-Restrained Sequential Model Editing"; read in mjy1111/PRUNE).

After n sequential edits a matrix is W = W₀ + ΔW. PRUNE bounds how much W can perturb what W₀
stored through the condition number of W, and lowers that bound by shrinking the singular values
of ΔW that exceed W₀'s largest one:

    ΔW = U diag(σ) Vᵀ,   σ̄ᵢ = F(σᵢ) = log_α(σᵢ) − log_α(σ̂) + σ̂   if σᵢ ≥ σ̂ = σ_max(W₀), else σᵢ,
    W̄ = W₀ + U diag(σ̄) Vᵀ.

F is continuous at σ̂, grows logarithmically above it and leaves the rest of ΔW as it is: the edits
keep their directions, the few directions in which the stack has grown past anything W₀ does are
pulled back. The reference applies it to the accumulated ΔW of a sequential run before evaluating
it (`reduce_weights`), with α = 1.2 by default.

In factpatch the restraint is itself a patch: the low-rank correction U diag(σ̄ − σ) Vᵀ of every
matrix the stack touches (rank = the number of restrained singular values), made for exactly that
stack — its metadata names the stack's patches (`applies_on`) and `PatchStack` refuses it on any
other — so it applies on top, and reverting it or the stack restores the original bits as every
patch does.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from ..core.errors import FactpatchError
from ..core.models import LoadedModel
from .patch import Patch, PatchStack, WeightDelta, make_meta

METHOD = "prune"


@dataclass(frozen=True)
class PruneParams:
    # α, the base of F's logarithm: the reference's default reducer (`log1_2`); its others are
    # e, 1.5 and 2 (the larger α, the harder the large singular values are pulled back).
    base: float = 1.2

    def __post_init__(self):
        if not (self.base > 1 and math.isfinite(self.base)):
            raise FactpatchError(f"PRUNE's base must be a number above 1, not {self.base}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------- pure math


def restrained_singular_values(sigma: torch.Tensor, sigma_hat: float, base: float) -> torch.Tensor:
    """F applied to ΔW's singular values σ (any shape): log_α(σ) − log_α(σ̂) + σ̂ where σ ≥ σ̂
    (σ̂ = σ_max(W₀)), σ elsewhere.

    F(σ) ≤ σ for every σ ≥ σ̂ when ln α ≥ 1/σ̂ (F' = 1/(σ ln α) ≤ 1): for the default α = 1.2 on
    any matrix whose σ̂ is above 5.5, as on the language models PRUNE and factpatch edit (SmolLM2's
    layer 4: 22.9). On a matrix with a smaller σ̂ the reference's F would enlarge some values;
    here it never does (min(F(σ), σ)), which changes nothing where the condition holds."""
    above = sigma >= sigma_hat
    squashed = torch.log(sigma.clamp_min(sigma_hat) / sigma_hat) / math.log(base) + sigma_hat
    return torch.where(above, torch.minimum(squashed, sigma), sigma)


@dataclass
class Restraint:
    """The correction of one matrix, in the parameter's own layout: ΔW̄ − ΔW = left @ rightᵀ."""

    left: torch.Tensor  # (rows, k): U_k diag(σ̄ − σ) over the k restrained directions
    right: torch.Tensor  # (cols, k): V_k
    sigma_hat: float  # σ_max(W₀)
    sigma: list[float]  # the k restrained singular values of ΔW, before ...
    sigma_restrained: list[float]  # ... and after


def restrain(original: torch.Tensor, current: torch.Tensor, base: float) -> Restraint:
    """PRUNE's correction for one matrix edited from `original` (W₀) to `current` (W), both in the
    parameter's layout (the singular values do not depend on it). Computed in float64."""
    W0, delta = original.double(), current.double() - original.double()  # (rows, cols)
    sigma_hat = float(torch.linalg.matrix_norm(W0, ord=2))
    U, sigma, Vh = torch.linalg.svd(delta, full_matrices=False)  # U (rows, r), σ (r,), Vh (r, cols)
    restrained = restrained_singular_values(sigma, sigma_hat, base)  # (r,), descending like σ
    k = int((restrained < sigma).sum())  # the directions F pulls back: σ's largest k
    restrained = restrained[:k]
    left = U[:, :k] * (restrained - sigma[:k])  # (rows, k)
    right = Vh[:k].T  # (cols, k)
    return Restraint(left.to(original.dtype), right.to(original.dtype), sigma_hat,
                     sigma[:k].tolist(), restrained.tolist())


def restraint_patch(lm: LoadedModel, stack: PatchStack, params: PruneParams = PruneParams()) -> Patch:
    """PRUNE's correction of everything `stack` has applied, as a patch for exactly that stack (it
    writes no request). Matrices the stack moved nowhere past σ_max(W₀) get no delta."""
    if not stack.applied:
        raise FactpatchError("PRUNE restrains a stack of patches; none is applied")
    deltas, report = [], {}
    for name, original in stack.originals.items():
        current = lm.model.get_parameter(name).detach()
        if original.dim() != 2:
            continue  # a bias or a norm's weight that fine-tuning moved: no singular values to restrain
        found = restrain(original, current, params.base)
        report[name] = {"sigma_max_original": round(found.sigma_hat, 6), "restrained": len(found.sigma),
                        "largest_before": round(found.sigma[0], 6) if found.sigma else None,
                        "largest_after": round(found.sigma_restrained[0], 6) if found.sigma else None}
        if found.sigma:
            deltas.append(WeightDelta.factored(name, found.left, found.right, transposed=False))
    layers = sorted({layer for p in stack.applied for layer in p.layers})
    meta = make_meta(lm, METHOD, layers, [d.param.removesuffix(".weight") for d in deltas], [],
                     hparams=params.to_dict(), applies_on=[p.id for p in stack.applied], restrained=report)
    return Patch(deltas, meta)
