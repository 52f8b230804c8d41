"""Editing methods behind one interface: ROME and the paper's baselines (§4, App. I).

Every method is an `Editor`: built once per model (`prepare` loads what it needs, e.g. ROME's key
statistics), then `patch(request)` returns a `Patch` *without changing the model* — the evaluation
applies it with `patch.applied` and the original bits come back exactly after every case.

    rome   rank-one update of W_proj at l* (factpatch.rome)
    ft     fine-tune W_proj of one layer on the rewrite prompt: Adam, 25 steps
    ft+l   the same with ‖θ − θ₀‖∞ ≤ ε (projected after every step)
    attn   AttnEdit: fine-tune W_Q, W_K, W_V of all heads at one layer, weights clamped to
           ±ε = 0.001 around the originals after every step (paper App. I)
    none   the unedited model (an empty patch)

Fine-tuning minimises −(1/|o*|) Σ log P(o*_t | p, o*_<t) on the rewrite prompt p. It only changes
layers from the trained one on, so the residual stream entering that layer is computed once and
each step runs the remaining blocks (as in ROME's v* optimisation). The trained weights' deltas
are returned as dense `WeightDelta`s; grouped-query attention needs nothing special (K and V simply
have fewer rows than Q), and GPT-2's fused c_attn / NeoX's query_key_value *are* [Q, K, V], so the
whole fused weight is trained.

Hyper-parameters are typed dataclasses; `MODEL_DEFAULTS` holds the few per-model changes, each with
the reason, and `method_params(..., overrides)` applies `--set method.key=value` on top.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import torch

from .errors import FactpatchError
from .hooks import act_name, body, frozen, run_with_cache, start_at_layer, unembed
from .models import LoadedModel
from .patch import Patch, WeightDelta, make_meta, rome_patch
from .rome import EditRequest, ROMEHyperParams, compute_edit, context_prefixes, hparams_for
from .stats import CorpusSpec, key_second_moment
from .tokens import encode_target

logger = logging.getLogger(__name__)


class Editor(Protocol):
    """What every method implements."""

    name: str
    params: object  # the method's hyper-parameter dataclass

    def prepare(self) -> None:
        """One-time work before the first edit (key statistics, prefixes); idempotent."""

    def patch(self, request: EditRequest) -> Patch:
        """The edit for `request` as a patch; the model is left exactly as it was."""


def _request_meta(request: EditRequest) -> dict:
    return {
        "prompt": request.prompt,
        "subject": request.subject,
        "target_new": request.target_new,
        "target_true": request.target_true,
    }


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


ROME_CORPUS = CorpusSpec()  # key statistics: the model's own samples (factpatch.stats)


class RomeEditor:
    name = "rome"

    def __init__(
        self, lm: LoadedModel, params: ROMEHyperParams, cache_dir: Path | None = None, progress: bool = True,
        corpus: CorpusSpec | None = None,
    ):
        self.lm, self.params, self.cache_dir, self.progress = lm, params, cache_dir, progress
        self.corpus = corpus if corpus is not None else ROME_CORPUS
        self._C: torch.Tensor | None = None

    def prepare(self) -> None:
        if self._C is None:
            assert self.params.layer is not None
            self._C = key_second_moment(self.lm, self.params.layer, self.corpus, self.cache_dir, self.progress)
            context_prefixes(self.lm, self.params, self.cache_dir)

    def patch(self, request: EditRequest) -> Patch:
        self.prepare()
        assert self._C is not None
        edit = compute_edit(self.lm, request, self._C, self.params, self.cache_dir)
        return rome_patch(self.lm, edit)


class FineTuneEditor:
    """FT and FT+L: the MLP output projection W_proj of one layer."""

    def __init__(self, name: str, lm: LoadedModel, params: FineTuneParams):
        self.name, self.lm, self.params = name, lm, params
        assert params.layer is not None
        self.layer = lm.check_layer(params.layer)
        self.module = lm.adapter.mlp_out_path(self.layer)

    def prepare(self) -> None:
        return None

    def param_names(self) -> list[str]:
        return [f"{self.module}.weight"]

    def patch(self, request: EditRequest) -> Patch:
        started = time.perf_counter()
        result = finetune(self.lm, request, self.param_names(), self.layer, self.params)
        meta = make_meta(
            self.lm, self.name, self.layer, self.module, request=_request_meta(request),
            hparams=self.params.to_dict(), steps_run=result.steps,
            loss_first=round(result.losses[0], 4), loss_last=round(result.losses[-1], 4),
            edit_seconds=round(time.perf_counter() - started, 3),
        )
        return Patch(result.deltas, meta)


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

    def prepare(self) -> None:
        return None

    def patch(self, request: EditRequest) -> Patch:
        return Patch([], make_meta(self.lm, "none", None, None, request=_request_meta(request)))


# ----------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class MethodSpec:
    name: str
    description: str
    params_cls: type
    defaults: Callable[[LoadedModel], dict]  # the paper's defaults, resolved for this model
    build: Callable[[LoadedModel, object, Path | None, bool], Editor]


def _rome_defaults(lm: LoadedModel) -> dict:
    return hparams_for(lm).to_dict()


METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec(
            "rome", "ROME: rank-one update of the MLP output projection at l*", ROMEHyperParams,
            _rome_defaults, lambda lm, p, cache, progress: RomeEditor(lm, p, cache, progress),
        ),
        MethodSpec(
            "ft", "fine-tune W_proj of one layer (Adam, 25 steps, lr 5e-4)", FineTuneParams,
            lambda lm: {"layer": lm.default_layer, "lr": 5e-4, "norm_constraint": None},
            lambda lm, p, cache, progress: FineTuneEditor("ft", lm, p),
        ),
        MethodSpec(
            "ft+l", "fine-tune W_proj of one layer with ‖θ − θ₀‖∞ ≤ ε (paper ε = lr = 5e-4)", FineTuneParams,
            lambda lm: {"layer": lm.default_layer, "lr": 5e-4, "norm_constraint": 5e-4},
            lambda lm, p, cache, progress: FineTuneEditor("ft+l", lm, p),
        ),
        MethodSpec(
            "attn", "AttnEdit: fine-tune W_Q, W_K, W_V of one layer, clamped to ±0.001 (lr 1e-3)", FineTuneParams,
            lambda lm: {"layer": lm.attn_layer, "lr": 1e-3, "norm_constraint": 1e-3},
            lambda lm, p, cache, progress: AttnEditor("attn", lm, p),
        ),
        MethodSpec("none", "the unedited model", NoParams, lambda lm: {}, lambda lm, p, cache, progress: NoEditor(lm, p)),
    )
}

# Per-model changes to the paper's defaults: {model name: {method: {field: value}}}, each with why.
#
# smollm2-135m: with the paper's radii (FT+L ε = lr = 5e-4, AttnEdit ε = lr = 1e-3) neither method
# learns the new fact — on 12 calibration cases (CounterFact records 2000–2011, outside the
# reported runs) ES was 0.17 for both at layers 8/20, exactly the unedited model's 0.17. The radius
# (with lr = ε, as in the paper) was raised along a grid to the smallest value that reaches the
# paper's operating point for these baselines, ES ≥ 0.9 on the rewrite prompt: ×10 for both.
# Rechecked at the traced layers (FT+L at 4, AttnEdit at 19): FT+L ×2 → 0.58, ×4 → 0.75, ×10 → 1.0;
# AttnEdit ×3 → 0.58, ×10 → 1.0. Why this model: its weights are large — std 0.18 for W_proj at
# layer 4 and for W_Q at layer 19, against 0.022 and 0.040 in Gemma 3, with inputs of similar size
# (mean ‖k‖₁ 139 vs 116) — so a fixed absolute ε is a ~9× smaller relative change; ×10 restores it.
# gemma3-270m: on the same 12 cases at the traced layers (FT+L at 4, AttnEdit at 8) the paper's FT+L
# radius gives ES 1.0 (unedited 0.25) and is kept; the paper's AttnEdit radius gives ES 0.83, below
# the operating point, and the first step of the same grid (×3, ε = lr = 3e-3) gives 1.0. (At the
# earlier guess, layer 12, the paper's AttnEdit radius had reached 1.0.)
MODEL_DEFAULTS: dict[str, dict[str, dict]] = {
    "smollm2-135m": {
        "ft+l": {"norm_constraint": 5e-3, "lr": 5e-3},
        "attn": {"norm_constraint": 1e-2, "lr": 1e-2},
    },
    "gemma3-270m": {
        "attn": {"norm_constraint": 3e-3, "lr": 3e-3},
    },
}


def parse_methods(text: str) -> list[str]:
    """"rome,ft+l,none" -> ["rome", "ft+l", "none"], checked against the registry."""
    methods = [m.strip().lower() for m in (text or "").split(",") if m.strip()]
    if not methods:
        raise FactpatchError(f"no methods given: choose from {', '.join(METHODS)}")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise FactpatchError(f"unknown method {unknown[0]!r}: choose from {', '.join(METHODS)}")
    if len(set(methods)) != len(methods):
        raise FactpatchError(f"a method is listed twice in {text!r}")
    return methods


def _coerce(cls: type, key: str, value):
    """A `--set` string as the type of the dataclass field it sets (int, float, bool, tuple, None)."""
    fields = {f.name for f in dataclasses.fields(cls)}
    if key not in fields:
        raise FactpatchError(f"unknown setting {key!r}: {cls.__name__} has {', '.join(sorted(fields)) or 'no settings'}")
    if not isinstance(value, str):
        return value
    hint = typing.get_type_hints(cls)[key]
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    base = next((a for a in args if a is not type(None)), str)
    text = value.strip()
    if type(None) in args and text.lower() in {"none", "null"}:
        return None
    try:
        if base is bool:
            if text.lower() not in {"true", "false", "1", "0"}:
                raise ValueError(text)
            return text.lower() in {"true", "1"}
        if base is int:
            return int(text)
        if base is float:
            return float(text)
        if base is tuple or typing.get_origin(base) is tuple:
            return tuple(tuple(v) if isinstance(v, list) else v for v in json.loads(text))
    except (ValueError, TypeError):
        raise FactpatchError(f"bad value {value!r} for {cls.__name__}.{key}") from None
    return text


def parse_overrides(items: list[str] | None) -> dict[str, dict[str, str]]:
    """["ft.lr=1e-4", "rome.layer=10"] -> {"ft": {"lr": "1e-4"}, "rome": {"layer": "10"}}."""
    out: dict[str, dict[str, str]] = {}
    for item in items or []:
        name, eq, value = item.partition("=")
        method, dot, key = name.partition(".")
        if not eq or not dot or not key:
            raise FactpatchError(f"bad --set {item!r}: use METHOD.KEY=VALUE, e.g. ft+l.norm_constraint=1e-3")
        if method not in METHODS:
            raise FactpatchError(f"bad --set {item!r}: unknown method {method!r}")
        _coerce(METHODS[method].params_cls, key.strip(), value)  # fail now, before a model is loaded
        out.setdefault(method, {})[key.strip()] = value
    return out


def method_params(lm: LoadedModel, name: str, overrides: dict | None = None):
    """The hyper-parameters of method `name` on `lm`: paper defaults, model changes, overrides."""
    spec = METHODS[name]
    values = {**spec.defaults(lm), **MODEL_DEFAULTS.get(lm.name, {}).get(name, {})}
    for key, value in (overrides or {}).items():
        values[key] = _coerce(spec.params_cls, key, value)
    if name == "rome":
        return hparams_for(lm, **values)
    try:
        params = spec.params_cls(**values)
    except TypeError as exc:
        raise FactpatchError(f"bad settings for {name}: {exc}") from None
    if getattr(params, "layer", None) is not None:
        lm.check_layer(params.layer)
    return params


def make_editor(
    lm: LoadedModel, name: str, params=None, cache_dir: Path | None = None, progress: bool = True
) -> Editor:
    if name not in METHODS:
        raise FactpatchError(f"unknown method {name!r}: choose from {', '.join(METHODS)}")
    params = params if params is not None else method_params(lm, name)
    return METHODS[name].build(lm, params, cache_dir, progress)
