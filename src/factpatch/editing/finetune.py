"""The paper's fine-tuning baselines (§4, App. I), behind the editor interface (registry.py).

    ft     fine-tune W_proj of one layer on the rewrite prompt: Adam, 25 steps
    ft+l   the same with ‖θ − θ₀‖∞ ≤ ε (projected after every step)
    attn   AttnEdit: fine-tune W_Q, W_K, W_V of all heads at one layer, weights clamped to
           θ₀ ± ε after every step (paper App. I)
    none   the unedited model (an empty patch)

The radius ε, with the learning rate equal to it as the paper ties them, is the paper's unless
`editing.registry.MODEL_DEFAULTS` changes it for a model (the reasons are there; a test keeps
this table and that one in step):

    method   paper    smollm2-135m   gemma3-270m
    ft+l     5e-4     5e-3           5e-4
    attn     1e-3     1e-2           3e-3

Fine-tuning minimises −(1/|o*|) Σ log P(o*_t | p, o*_<t) on the rewrite prompt p. It only changes
layers from the trained one on, so the residual stream entering that layer is computed once and
each step runs the remaining blocks (as in ROME's v* optimisation). The trained weights' deltas
are returned as dense `WeightDelta`s; grouped-query attention needs nothing special (K and V simply
have fewer rows than Q), and GPT-2's fused c_attn / NeoX's query_key_value *are* [Q, K, V], so the
whole fused weight is trained.

A list of requests is trained one after another (each on the model with the earlier ones applied).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..core.errors import FactpatchError
from ..core.hooks import act_name, body, frozen, run_with_cache, start_at_layer, unembed
from ..core.models import LoadedModel
from ..core.tokens import encode_target
from .patch import Patch, PatchStack, WeightDelta, make_meta, one_after_another
from .request import EditRequest

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- hyper-parameters


@dataclass(frozen=True)
class FineTuneParams:
    """FT / FT+L / AttnEdit settings (paper App. I; GPT-2 XL values unless noted)."""

    layer: int | None = None  # None: ROME's l* (MLP methods) or the model's attention layer (attn)
    steps: int = 25  # Adam steps (paper: 25)
    lr: float = 5e-4  # paper: 5e-4 for FT / FT+L, 1e-3 for AttnEdit
    norm_constraint: float | None = None  # L∞ radius ε around θ₀; None = unconstrained
    early_stop_nll: float = 1e-2  # stop once the mean target NLL is below this (P(o*) ≳ 0.99 a token)

    def __post_init__(self):
        if self.steps < 1:
            raise FactpatchError("steps must be at least 1")
        if self.lr <= 0:
            raise FactpatchError("lr must be positive")
        if self.norm_constraint is not None and self.norm_constraint <= 0:
            raise FactpatchError("norm_constraint must be positive (or None for no constraint)")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class NoParams:
    def to_dict(self) -> dict:
        return {}


# ----------------------------------------------------------------------------- fine-tuning core


@dataclass
class FineTuneResult:
    deltas: list[WeightDelta]
    losses: list[float]
    steps: int


def finetune(
    lm: LoadedModel, request: EditRequest, param_names: list[str], layer: int, params: FineTuneParams
) -> FineTuneResult:
    """Fine-tune the named parameters (all in blocks ≥ `layer`) to make o* follow the rewrite
    prompt; return their changes as dense deltas and restore the original bits."""
    prompt_ids, target_ids = encode_target(lm.tokenizer, request.text, request.target_new)
    ids = torch.tensor([prompt_ids + target_ids[:-1]], device=lm.device)  # (1, T)
    cols = torch.arange(len(prompt_ids) - 1, len(prompt_ids) - 1 + len(target_ids), device=lm.device)
    wanted = torch.tensor(target_ids, device=lm.device)  # (n_target,)
    resid_name = act_name("resid_pre", layer)
    resid = run_with_cache(lm, ids, [resid_name], stop_after=resid_name)[resid_name]  # (1, T, d_model)

    trained = [lm.model.get_parameter(name) for name in param_names]
    originals = [p.detach().clone() for p in trained]
    eps = params.norm_constraint
    losses: list[float] = []
    steps = 0
    try:
        with frozen(lm.model), start_at_layer(lm, layer, resid):
            for p in trained:
                p.requires_grad_(True)
            optimizer = torch.optim.Adam(trained, lr=params.lr)
            for step in range(params.steps + 1):
                hidden = body(lm)(input_ids=ids, use_cache=False).last_hidden_state  # (1, T, d_model)
                log_probs = torch.log_softmax(unembed(lm, hidden[0, cols]).float(), dim=-1)  # (n_target, vocab)
                nll = -log_probs.gather(1, wanted[:, None]).mean()
                losses.append(nll.item())
                if nll.item() < params.early_stop_nll or step == params.steps:
                    break
                optimizer.zero_grad()
                nll.backward()
                optimizer.step()
                steps = step + 1
                if eps is not None:
                    with torch.no_grad():
                        for p, p0 in zip(trained, originals):
                            p.copy_(torch.maximum(torch.minimum(p, p0 + eps), p0 - eps))
        deltas = [
            WeightDelta(param=name, dense=(p.detach() - p0).cpu())
            for name, p, p0 in zip(param_names, trained, originals)
        ]
    finally:
        with torch.no_grad():
            for p, p0 in zip(trained, originals):
                p.copy_(p0)
                p.grad = None
    return FineTuneResult(deltas, losses, steps)


# ----------------------------------------------------------------------------- editors


class FineTuneEditor:
    """FT and FT+L: the MLP output projection W_proj of one layer."""

    def __init__(self, name: str, lm: LoadedModel, params: FineTuneParams):
        self.name, self.lm, self.params = name, lm, params
        assert params.layer is not None
        self.layer = lm.check_layer(params.layer)
        self.module = lm.adapter.mlp_out_path(self.layer)

    def prepare(self, stack: PatchStack | None = None) -> None:
        return None

    def param_names(self) -> list[str]:
        return [f"{self.module}.weight"]

    def edit_one(self, request: EditRequest) -> Patch:
        started = time.perf_counter()
        result = finetune(self.lm, request, self.param_names(), self.layer, self.params)
        meta = make_meta(
            self.lm, self.name, [self.layer], [self.module], [request],
            hparams=self.params.to_dict(), steps_run=result.steps,
            loss_first=round(result.losses[0], 4), loss_last=round(result.losses[-1], 4),
            edit_seconds=round(time.perf_counter() - started, 3),
        )
        return Patch(result.deltas, meta)

    def patch(self, requests: Sequence[EditRequest], stack: PatchStack | None = None) -> Patch:
        """One request after another, each trained on the model with the earlier ones applied."""
        return one_after_another(self.lm, requests, self.edit_one, progress=False)


class AttnEditor(FineTuneEditor):
    """AttnEdit: W_Q, W_K, W_V (all heads) of one layer."""

    def __init__(self, name: str, lm: LoadedModel, params: FineTuneParams):
        super().__init__(name, lm, params)
        self.module = lm.adapter.attn_path(self.layer)

    def param_names(self) -> list[str]:
        return [f"{path}.weight" for path in self.lm.adapter.qkv_paths(self.layer)]


class NoEditor:
    name = "none"

    def __init__(self, lm: LoadedModel, params: NoParams):
        self.lm, self.params = lm, params

    def prepare(self, stack: PatchStack | None = None) -> None:
        return None

    def patch(self, requests: Sequence[EditRequest], stack: PatchStack | None = None) -> Patch:
        return Patch([], make_meta(self.lm, "none", [], [], list(requests)))


