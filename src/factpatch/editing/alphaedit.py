"""AlphaEdit: null-space constrained knowledge editing (Fang et al., ICLR 2025).

MEMIT's batch edit (memit.py: the same z, keys and layer shares R) with the update confined to
directions the preserved knowledge does not use:

    P_l = U₀ U₀ᵀ, U₀ the eigenvectors of C_l = E[k kᵀ] with the smallest eigenvalues
    Δ_l = R K_lᵀ P_l (K_p K_pᵀ P_l + K_l K_lᵀ P_l + α I)⁻¹,   i.e. Δ_lᵀ solves
          (P_l (K_l K_lᵀ + K_p K_pᵀ) + α I) Δ_lᵀ = P_l K_l Rᵀ

K_p K_pᵀ sums K Kᵀ over the edits already in the patch stack (their keys, taken after each
batch was written, travel in each patch as attachments `keys.<layer>`), so later batches leave
earlier edits alone; since Δ_l = (…) P_l, any key k with P_l k = 0 — the high-energy directions
of ordinary text — maps to Δ_l k = 0. With `replay_edits` (memit.py) the earlier edits are
columns of K instead, read on the model as it is, with their residuals, and K_p is not used.

Choosing the null space: the reference keeps eigenvalues below an absolute 2e-2, which depends on
the scale of the keys (it was set for GPT-2 XL, GPT-J and Llama-3 with 100,000 Wikipedia
samples). factpatch's default is scale-free: the null space is the smallest-eigenvalue
directions that together carry at most `nullspace_energy` of tr C (the keys' mean energy
E‖k‖²); `nullspace_threshold` restores the reference rule. The projector is computed once per
model, layer, statistics and rule and cached beside C.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..core.cache import atomic_path, stable_hash
from ..core.errors import FactpatchError
from ..core.models import LoadedModel
from .memit import (
    BatchEditor,
    BatchEditParams,
    TargetValues,
    batch_patch,
    replayed_edits,
    spread_over_layers,
)
from .patch import Patch, PatchStack
from .request import EditRequest, check_batch
from .stats import CorpusSpec, preserved_keys, stats_dir

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AlphaEditParams(BatchEditParams):
    # α (`L2` in the reference): keeps the solve well posed where P_l K has no component
    # (all reference settings: 10).
    L2: float = 10.0
    # Share of tr C the null space may carry (factpatch's scale-free rule, see the module doc).
    nullspace_energy: float = 0.1
    # The reference rule instead: eigenvalues below this absolute value (GPT-2 XL/GPT-J/Llama-3: 2e-2).
    nullspace_threshold: float | None = None
    # What K_p keeps of an earlier edit: its key averaged over the contexts (the reference's
    # `cache_c += K Kᵀ`), or — factpatch's option — every context's key, weighted as in the
    # average (Σ_p w_p k kᵀ ⪰ k̄ k̄ᵀ), so later batches also leave the edit's other contexts alone.
    # The patch then carries n × contexts key columns a layer instead of n.
    preserve_contexts: bool = False

    def __post_init__(self):
        super().__post_init__()
        if self.L2 <= 0:
            raise FactpatchError("L2 must be positive")
        if not 0 < self.nullspace_energy < 1:
            raise FactpatchError("nullspace_energy must be between 0 and 1")
        if self.replay_edits and self.preserve_contexts:
            raise FactpatchError("replay_edits writes the earlier edits again instead of keeping their stored keys: "
                                 "set preserve_contexts or replay_edits, not both")

    def rule(self) -> dict:
        if self.nullspace_threshold is not None:
            return {"threshold": self.nullspace_threshold}
        return {"energy": self.nullspace_energy}


# ----------------------------------------------------------------------------- pure math


def null_space_projector(C: torch.Tensor, energy: float | None = None, threshold: float | None = None) -> torch.Tensor:
    """P = U₀ U₀ᵀ over the eigenvectors of C (d, d) with the smallest eigenvalues: those below
    `threshold`, or the longest run from the bottom whose eigenvalues sum to ≤ energy · tr C."""
    eigenvalues, eigenvectors = torch.linalg.eigh(C.to(torch.float64))  # ascending
    if threshold is not None:
        keep = eigenvalues < threshold
    else:
        assert energy is not None
        keep = torch.cumsum(eigenvalues.clamp(min=0), 0) <= energy * eigenvalues.clamp(min=0).sum()
    U0 = eigenvectors[:, keep]  # (d, rank)
    return (U0 @ U0.T).to(torch.float32)


def alphaedit_solve(K: torch.Tensor, P: torch.Tensor, preserved: torch.Tensor, alpha: float) -> torch.Tensor:
    """(P (K Kᵀ + K_p K_pᵀ) + α I)⁻¹ P K, so that Δ = R · resultᵀ.

    K: (d_in, n), P: (d_in, d_in), preserved = K_p K_pᵀ: (d_in, d_in). Solved in float64."""
    K64, P64 = K.to(torch.float64), P.to(torch.float64)
    A = P64 @ (K64 @ K64.T + preserved.to(torch.float64)) + alpha * torch.eye(K.shape[0], dtype=torch.float64, device=K.device)
    return torch.linalg.solve(A, P64 @ K64).to(torch.float32)  # (d_in, n)


# ----------------------------------------------------------------------------- the editor


def projector(lm: LoadedModel, layer: int, C: torch.Tensor, corpus: CorpusSpec, params: AlphaEditParams,
              cache_dir: Path | None) -> tuple[torch.Tensor, int]:
    """P_l from cache, or computed and cached; with its rank."""
    key = stable_hash({**corpus.key(), "n_tokens": corpus.n_tokens, "layer": layer, **params.rule()})
    path = stats_dir(lm, cache_dir) / f"nullspace-layer{layer}-{key}.safetensors"
    if path.exists():
        P = load_file(path)["P"]
    else:
        P = null_space_projector(C, energy=params.nullspace_energy, threshold=params.nullspace_threshold)
        with atomic_path(path) as tmp:
            save_file({"P": P.contiguous()}, str(tmp))
    rank = round(float(torch.trace(P)))
    return P, rank


class AlphaEditor(BatchEditor):
    name = "alphaedit"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._P: dict[int, tuple[torch.Tensor, int]] = {}

    def P(self, layer: int) -> torch.Tensor:
        if layer not in self._P:
            params = self.params
            assert isinstance(params, AlphaEditParams)
            self._P[layer] = projector(self.lm, layer, self.C(layer), self.corpus, params, self.cache_dir)
            logger.info("AlphaEdit null space at layer %d: rank %d of %d", layer, self._P[layer][1],
                        self._P[layer][0].shape[0])
        return self._P[layer][0]

    def patch_and_targets(self, requests: Sequence[EditRequest], stack: PatchStack | None = None,
                          targets: TargetValues | None = None) -> tuple[Patch, TargetValues]:
        check_batch(requests, allow_conflicts=True)  # user input was checked where it was read
        self.prepare(stack)
        params = self.params
        assert isinstance(params, AlphaEditParams) and params.layers is not None

        def solve(layer: int, K: torch.Tensor) -> torch.Tensor:
            P = self.P(layer).to(K.device)
            # replaying, the earlier edits are columns of K (with their residuals), not K_p
            preserved = (torch.zeros(K.shape[0], K.shape[0]) if params.replay_edits
                         else preserved_keys(stack, layer, K.shape[0]))
            return alphaedit_solve(K, P, preserved.to(K.device), params.L2)

        found, written, anchoring = self.targets(requests, stack, targets)
        replay = replayed_edits(stack, requests, params.z_layer) if params.replay_edits else None
        result = spread_over_layers(self.lm, requests, params, self.prefixes, solve, self.progress,
                                    keys_after=replay is None, targets=written,
                                    context_keys=params.preserve_contexts, replay=replay)
        ranks = {str(layer): self._P[layer][1] for layer in params.layers}
        return batch_patch(self.lm, self.name, params, requests, result, stack, replay, keep_keys=True,
                           nullspace_rank=ranks, **anchoring), found
