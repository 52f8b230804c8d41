"""ROME: Rank-One Model Editing (Meng et al. 2022, §3).

The MLP at layer l* is read as a key–value memory: its output projection W_proj maps a key k
(the MLP's hidden activation) to a value v = W_proj k. To make the model say o* for (s, r):

1. k* — the key at the subject's last token, averaged over N short texts x_j put before the
   prompt:  k* = (1/N) Σ_j k(x_j + s).
2. v* — a value that makes o* likely: optimise δ, added to the MLP output at the subject's last
   token in every context, so that  z = W k* + δ  minimises
       (1/N) Σ_j −log P[o* | x_j + p]  +  λ_KL · D_KL(P[x | p′] edited ‖ unedited)
   (p′ = "{s} is a", the essence prompt; the distribution is read at the subject's last token,
   as the public implementation does — on SmolLM2 it generalised to paraphrases a little better
   than reading it after "a", see BENCHMARKS.md) plus a weight decay on ‖δ‖, with δ clamped.
3. The closed-form update, the smallest change to W in the metric C = E[k kᵀ] that maps k* to v*:
       Ŵ = W + Λ (C⁻¹ k*)ᵀ,   Λ = (v* − W k*) / ((C⁻¹ k*)ᵀ k*).

The same k* is used in every step (Gupta et al. 2024 traced ROME's occasional "disabling" edits to
mixing the averaged key with the bare-prompt key).

Speed: the optimisation only changes activations from layer l* on, so the residual stream
entering l* is computed once and every step runs only blocks l*..L−1, with logits computed only at
the positions the loss reads and all contexts in one batch; the weights get no gradients.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..core.errors import FactpatchError
from ..core.hooks import act_name, run_with_cache
from ..core.models import LoadedModel
from .patch import Patch, PatchStack, WeightDelta, make_meta, one_after_another, unedited
from .request import EditRequest
from .stats import KEYS_ATTACHMENT, CorpusSpec, key_second_moment, preserved_edit_count, preserved_keys
from .values import (
    PrefixSpec,
    ValueSettings,
    build_contexts,
    optimize_deltas,
    sample_prefixes,
    states_at_subject,
    value_model,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ROMEParams:
    """ROME settings. Defaults are the paper's GPT-2 XL settings (method.md) unless noted."""

    layer: int | None = None  # l*; None = the model's default edit layer (registry.edit_layer)
    v_steps: int = 20  # Adam steps for δ (paper: 20)
    v_lr: float = 0.5  # paper: 0.5
    kl_weight: float = 0.0625  # λ_KL on the essence prompt (paper: 0.0625)
    weight_decay: float = 0.5  # on ‖δ‖ / ‖W k*‖² (paper: 0.5)
    clamp_factor: float = 4.0  # ‖δ‖ ≤ clamp · ‖W k*‖ (paper: 4)
    # The paper stops when the total loss is below 0.05; on small models the KL and decay terms
    # keep it above that (measured.md: it never fired), so we stop on the NLL term alone, i.e.
    # when the geometric-mean probability of o* over the contexts exceeds e^-0.05 ≈ 0.95.
    early_stop_nll: float = 0.05
    # Off, as in the reference methods. On, a request also stops once o* is the most probable
    # continuation in every context (ENCORE's MPES, Gupta et al. 2025): a smaller z that writes
    # less and harms less (docs/mass-editing.md, "Stopping z once the new object is likely").
    early_stop_most_probable: bool = False
    prefixes: tuple[tuple[int, int], ...] = ((10, 5), (10, 10))  # (count, tokens): public ROME's 10×5 + 10×10
    essence_prompt: str = "{} is a"
    seed: int = 0  # prefix sampling
    # The precision of v*'s optimisation (core.models.PRECISIONS): float32 as the paper; bfloat16 is
    # faster on CPUs with bf16 units and moves the results a little (BENCHMARKS.md).
    v_dtype: str = "float32"
    # Off, as in the paper. On, the metric of the update also holds every earlier edit's key —
    # C becomes λ C + K_p K_pᵀ (K_p: the k* of each edit in the stack below and of this list so far,
    # λ = lambda_per_dim · d_in as MEMIT's) — so that a new edit leaves the outputs at earlier edits'
    # keys nearly where they were: sequential ROME with the memory of MEMIT's `preserve_edits`
    # (docs/mass-editing.md). The patch then carries each request's k* (d_in floats an edit).
    preserve_edits: bool = False
    lambda_per_dim: float = 1.0  # MEMIT's default λ = 1 · d_in: one earlier key weighs as much as C's "average key"

    def __post_init__(self):
        value_settings(self)  # checks the optimisation's settings
        if self.lambda_per_dim <= 0:
            raise FactpatchError("rome.lambda_per_dim must be positive")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------- pure math


def rank_one_update(
    W: torch.Tensor, C: torch.Tensor, k_star: torch.Tensor, v_star: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form ROME update as rank-one factors (Λ, C⁻¹k*), so that Ŵ = W + Λ (C⁻¹k*)ᵀ.

    W: (d_out, d_in) the projection (logical orientation), C: (d_in, d_in) = E[k kᵀ],
    k*: (d_in,), v*: (d_out,).  Λ = (v* − W k*) / ((C⁻¹k*)ᵀ k*), hence Ŵ k* = v*, and Ŵ x = W x
    for every x with (C⁻¹k*)ᵀ x = 0. Solved in float64, returned in W's dtype.
    """
    C64, k64 = C.to(torch.float64), k_star.to(torch.float64)
    c_inv_k = torch.linalg.solve(C64, k64)  # (d_in,)
    residual = v_star.to(torch.float64) - W.to(torch.float64) @ k64  # (d_out,)
    Lambda = residual / (c_inv_k @ k64)  # (d_out,)
    return Lambda.to(W.dtype), c_inv_k.to(W.dtype)


def preserving_metric(C: torch.Tensor, preserved: torch.Tensor, lam: float) -> torch.Tensor:
    """C + K_p K_pᵀ / λ (float64): the metric in which the rank-one update is smallest when it must
    also leave earlier edits' keys alone. Scaling the metric does not change ROME's update, so this
    is λ C + K_p K_pᵀ, MEMIT's `preserve_edits` solve with one key and an equality constraint.

    C: (d_in, d_in) = E[k kᵀ], preserved = K_p K_pᵀ: (d_in, d_in), λ > 0.
    """
    return C.to(torch.float64) + preserved.to(torch.float64) / lam


# ----------------------------------------------------------------------------- contexts


def prefix_spec(hp: ROMEParams) -> PrefixSpec:
    return PrefixSpec(groups=hp.prefixes, seed=hp.seed)


def context_prefixes(lm: LoadedModel, hp: ROMEParams, cache_dir: Path | None = None) -> list[str]:
    """The texts x_j put before the prompt: sampled once from the model, then cached on disk.
    The bare prompt (empty prefix) comes first."""
    return sample_prefixes(lm, prefix_spec(hp), cache_dir)


def value_settings(hp: ROMEParams) -> ValueSettings:
    return ValueSettings(
        steps=hp.v_steps, lr=hp.v_lr, kl_weight=hp.kl_weight, weight_decay=hp.weight_decay,
        clamp_factor=hp.clamp_factor, early_stop_nll=hp.early_stop_nll, essence_prompt=hp.essence_prompt,
        dtype=hp.v_dtype, early_stop_most_probable=hp.early_stop_most_probable,
    )


# ----------------------------------------------------------------------------- k* and v*


@dataclass
class KeyValue:
    k_star: torch.Tensor  # (d_mlp,)
    v_star: torch.Tensor  # (d_model,) target output of W (without any bias): W k* + δ
    Wk_star: torch.Tensor  # (d_model,)
    losses: list[dict] = field(default_factory=list)  # per step: nll, kl, decay, p_target
    steps: int = 0


def projection_weight(lm: LoadedModel, layer: int) -> torch.Tensor:
    """W_proj at `layer` as (d_out, d_in), whatever its storage (GPT-2 Conv1D is transposed)."""
    weight = lm.module(lm.adapter.mlp_out_path(layer)).weight
    return weight.T if lm.adapter.mlp_out_transposed else weight


def compute_key_value(
    lm: LoadedModel, request: EditRequest, hp: ROMEParams, prefixes: list[str]
) -> KeyValue:
    """k* (mean key over the contexts) and v* (the optimisation in factpatch.editing.values)."""
    layer = hp.layer
    assert layer is not None
    settings = value_settings(hp)
    work = value_model(lm, settings)  # lm itself, or a lower-precision copy for the optimisation
    ctx = build_contexts(work, [request], prefixes, hp.essence_prompt)
    # One pass up to layer l*: the residual stream entering l* and the keys at the subject.
    resid_name, key_name = act_name("resid_pre", layer), act_name("mlp_key", layer)
    cached = run_with_cache(work, ctx.suffix_ids, [resid_name, key_name], stop_after=key_name,
                            **ctx.forward_kwargs(work))
    keys = cached[key_name][:, 0]  # (B, d_mlp): suffix column 0 is each row's subject-last token
    if work is not lm:  # k* enters the closed form: in full precision
        keys = states_at_subject(lm, ctx, [key_name], key_name)[key_name]
    k_star = keys[ctx.rewrite_rows(0)].mean(dim=0)  # (d_mlp,)
    W = projection_weight(lm, layer).detach()
    Wk_star = W @ k_star  # (d_model,)
    found = optimize_deltas(work, ctx, "mlp_out", layer, cached[resid_name], Wk_star.norm()[None], settings)
    v_star = (Wk_star + found.delta[0]).detach()
    return KeyValue(k_star=k_star, v_star=v_star, Wk_star=Wk_star, losses=found.losses[0], steps=found.steps[0])


# ----------------------------------------------------------------------------- the edit


@dataclass
class RomeEdit:
    """Everything one ROME edit produced; `patch()` turns it into a patch file's contents."""

    request: EditRequest
    hparams: ROMEParams
    layer: int
    module: str
    Lambda: torch.Tensor  # (d_out,)
    c_inv_k: torch.Tensor  # (d_in,)
    key_value: KeyValue
    seconds: float


def compute_edit(
    lm: LoadedModel,
    request: EditRequest,
    C: torch.Tensor,
    hp: ROMEParams,
    cache_dir: Path | None = None,
) -> RomeEdit:
    """Compute (not apply) the ROME edit for `request` with key statistics C at layer hp.layer."""
    assert hp.layer is not None
    prefixes = context_prefixes(lm, hp, cache_dir)
    started = time.perf_counter()
    kv = compute_key_value(lm, request, hp, prefixes)
    W = projection_weight(lm, hp.layer).detach()
    Lambda, c_inv_k = rank_one_update(W, C.to(W.device), kv.k_star, kv.v_star)
    seconds = time.perf_counter() - started
    logger.info(
        "ROME at layer %d: %d steps, P(target) %.3f -> %.3f, %.2f s",
        hp.layer, kv.steps, kv.losses[0]["p_target"], kv.losses[-1]["p_target"], seconds,
    )
    return RomeEdit(
        request=request,
        hparams=hp,
        layer=hp.layer,
        module=lm.adapter.mlp_out_path(hp.layer),
        Lambda=Lambda,
        c_inv_k=c_inv_k,
        key_value=kv,
        seconds=seconds,
    )


def to_patch(lm: LoadedModel, edit: RomeEdit, **extra_meta) -> Patch:
    """A ROME edit as a patch: the factors Λ and C⁻¹k*, not the matrix."""
    delta = WeightDelta(
        param=f"{edit.module}.weight",
        left=edit.Lambda.detach().cpu(),
        right=edit.c_inv_k.detach().cpu(),
        transposed=lm.adapter.mlp_out_transposed,
    )
    meta = make_meta(
        lm, "rome", [edit.layer], [edit.module], [edit.request],
        hparams=edit.hparams.to_dict(), v_steps_run=edit.key_value.steps,
        edit_seconds=round(edit.seconds, 3), **extra_meta,
    )
    return Patch([delta], meta)


class RomeEditor:
    """ROME behind the editor interface. A list of requests is edited one after another, each on
    the model with the earlier ones applied (rank one per request, as in the paper)."""

    name = "rome"

    def __init__(
        self, lm: LoadedModel, params: ROMEParams, cache_dir: Path | None = None, progress: bool = True,
        corpus: CorpusSpec | None = None,
    ):
        self.lm, self.params, self.cache_dir, self.progress = lm, params, cache_dir, progress
        self.corpus = corpus if corpus is not None else CorpusSpec()
        self._C: torch.Tensor | None = None

    def prepare(self, stack: PatchStack | None = None) -> None:
        if self._C is not None:
            return
        assert self.params.layer is not None
        with unedited(stack):  # C and the prefixes are cached as the unedited model's: computed on its weights
            self._C = key_second_moment(self.lm, self.params.layer, self.corpus, self.cache_dir, self.progress)
            context_prefixes(self.lm, self.params, self.cache_dir)

    def edit_one(self, request: EditRequest) -> Patch:
        self.prepare()
        assert self._C is not None
        return to_patch(self.lm, compute_edit(self.lm, request, self._C, self.params, self.cache_dir))

    def patch(self, requests: Sequence[EditRequest], stack: PatchStack | None = None) -> Patch:
        self.prepare(stack)
        if not self.params.preserve_edits:
            return one_after_another(self.lm, requests, self.edit_one, self.progress)
        assert self._C is not None and self.params.layer is not None
        layer, C = self.params.layer, self._C
        lam = self.params.lambda_per_dim * C.shape[0]
        preserved = preserved_keys(stack, layer, C.shape[0])  # K_p K_pᵀ of the stack below, grown edit by edit
        keys: list[torch.Tensor] = []

        def edit_remembering(request: EditRequest) -> Patch:
            nonlocal preserved
            edit = compute_edit(self.lm, request, preserving_metric(C, preserved, lam), self.params, self.cache_dir)
            k_star = edit.key_value.k_star.detach().cpu()
            preserved = preserved + torch.outer(k_star.double(), k_star.double())
            keys.append(k_star)
            return to_patch(self.lm, edit)

        earlier = preserved_edit_count(stack)
        patch = one_after_another(self.lm, requests, edit_remembering, self.progress)
        patch.attachments = {KEYS_ATTACHMENT.format(layer=layer): torch.stack(keys, dim=1).contiguous()}  # (d_in, n)
        patch.meta["preserved_edits"] = earlier
        return patch
