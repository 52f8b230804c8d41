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

import copy
import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .cache import atomic_path, default_cache_dir, stable_hash
from .errors import FactpatchError
from .hooks import act_name, body, cache_kwarg, frozen, hooks, returned_cache, run_with_cache, start_at_layer, unembed
from .models import LoadedModel
from .tokens import encode_target, pad_id, subject_last_index

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EditRequest:
    """(s, r, o → o*): `prompt` is the relation template with "{}" where the subject goes."""

    prompt: str
    subject: str
    target_new: str
    target_true: str | None = None

    def __post_init__(self):
        if not self.subject.strip():
            raise FactpatchError("subject is empty")
        if self.prompt.count("{}") != 1:
            raise FactpatchError(f"prompt must contain '{{}}' exactly once where the subject goes: {self.prompt!r}")
        if not self.target_new.strip():
            raise FactpatchError("target is empty")
        if self.target_true is not None and self.target_new.strip() == self.target_true.strip():
            raise FactpatchError(f"target {self.target_new!r} equals the true object: nothing to edit")

    @classmethod
    def from_text(cls, prompt: str, subject: str, target_new: str, target_true: str | None = None) -> EditRequest:
        """Accept a template with "{}" or a prompt that contains the subject literally."""
        if not prompt.strip():
            raise FactpatchError("prompt is empty")
        if "{}" not in prompt:
            if not subject or subject not in prompt:
                raise FactpatchError(
                    f"subject {subject!r} is not in the prompt {prompt!r} (write '{{}}' where the subject goes)"
                )
            prompt = prompt.replace(subject, "{}", 1)
        return cls(prompt, subject, target_new, target_true)

    @property
    def text(self) -> str:
        return self.prompt.replace("{}", self.subject)


@dataclass(frozen=True)
class ROMEHyperParams:
    """ROME settings. Defaults are the paper's GPT-2 XL settings (method.md) unless noted."""

    layer: int | None = None  # l*; None = the model's default edit layer (models.EMBEDDED)
    v_steps: int = 20  # Adam steps for δ (paper: 20)
    v_lr: float = 0.5  # paper: 0.5
    kl_weight: float = 0.0625  # λ_KL on the essence prompt (paper: 0.0625)
    weight_decay: float = 0.5  # on ‖δ‖ / ‖W k*‖² (paper: 0.5)
    clamp_factor: float = 4.0  # ‖δ‖ ≤ clamp · ‖W k*‖ (paper: 4)
    # The paper stops when the total loss is below 0.05; on small models the KL and decay terms
    # keep it above that (measured.md: it never fired), so we stop on the NLL term alone, i.e.
    # when the geometric-mean probability of o* over the contexts exceeds e^-0.05 ≈ 0.95.
    early_stop_nll: float = 0.05
    prefixes: tuple[tuple[int, int], ...] = ((10, 5), (10, 10))  # (count, tokens): public ROME's 10×5 + 10×10
    essence_prompt: str = "{} is a"
    seed: int = 0  # prefix sampling

    def __post_init__(self):
        if self.v_steps < 1:
            raise FactpatchError("v_steps must be at least 1")
        if self.v_lr <= 0 or self.clamp_factor <= 0:
            raise FactpatchError("v_lr and clamp_factor must be positive")
        if self.essence_prompt.count("{}") != 1:
            raise FactpatchError("essence_prompt must contain '{}' once")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# Per-model overrides of the defaults above (only what differs, with why).
MODEL_HPARAMS: dict[str, dict] = {}


def hparams_for(lm: LoadedModel, **overrides) -> ROMEHyperParams:
    values = {**MODEL_HPARAMS.get(lm.name, {}), **{k: v for k, v in overrides.items() if v is not None}}
    hp = ROMEHyperParams(**values)
    if hp.layer is None:
        hp = dataclasses.replace(hp, layer=lm.default_layer)
    lm.check_layer(hp.layer)
    return hp


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


# ----------------------------------------------------------------------------- contexts


def context_prefixes(lm: LoadedModel, hp: ROMEHyperParams, cache_dir: Path | None = None) -> list[str]:
    """The texts x_j put before the prompt: sampled once from the model, then cached on disk.
    The bare prompt (empty prefix) comes first."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache_dir / "prefixes" / f"{lm.fingerprint[:16]}-{stable_hash([hp.prefixes, hp.seed])}.json"
    if path.exists():
        return json.loads(path.read_text())
    tokenizer = lm.tokenizer
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    state = torch.random.get_rng_state()
    torch.manual_seed(hp.seed)
    prefixes = [""]
    try:
        with torch.no_grad():
            for count, length in hp.prefixes:
                ids = torch.full((count, 1), start, dtype=torch.long, device=lm.device)
                out = lm.model.generate(
                    ids, attention_mask=torch.ones_like(ids), do_sample=True, top_k=5,
                    max_new_tokens=length, min_new_tokens=length, pad_token_id=pad_id(tokenizer),
                )
                for row in out[:, 1:]:
                    text = tokenizer.decode(row, skip_special_tokens=True).replace("{", "(").replace("}", ")")
                    prefixes.append(" ".join(text.split()) + ". ")
    finally:
        torch.random.set_rng_state(state)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(prefixes))
    return prefixes


@dataclass
class _Contexts:
    """The rewrite contexts (then the essence prompt as the last row), split at each row's subject
    last token: the part before it cannot depend on δ, so its keys and values are computed once.

    Prefix parts are left-padded and suffix parts right-padded, so every row's subject-last token
    sits in suffix column 0; position ids keep each row's true positions.
    """

    prefix_ids: torch.Tensor  # (B, P) tokens before the subject's last token, left-padded
    prefix_mask: torch.Tensor  # (B, P) 1 = real token
    suffix_ids: torch.Tensor  # (B, S) from the subject's last token on, right-padded
    prefix_positions: torch.Tensor  # (B, P)
    suffix_positions: torch.Tensor  # (B, S)
    target_rows: torch.Tensor  # (N_t,) row of each target token
    target_cols: torch.Tensor  # (N_t,) suffix column whose logits predict it
    target_ids: torch.Tensor  # (N_t,)
    n_rewrite: int

    @property
    def full_mask(self) -> torch.Tensor:  # (B, P + S): padding after real tokens is never attended
        return torch.cat([self.prefix_mask, torch.ones_like(self.suffix_ids)], dim=1)


def _build_contexts(lm: LoadedModel, request: EditRequest, prefixes: list[str], essence: str) -> _Contexts:
    tokenizer = lm.tokenizer
    rows_tokens, splits, rows, cols, targets = [], [], [], [], []
    for row, prefix in enumerate(prefixes):
        text = prefix + request.text
        prompt_ids, target_ids = encode_target(tokenizer, text, request.target_new)
        split = subject_last_index(tokenizer, text, request.subject, len(prefix) + request.prompt.index("{}"))
        rows_tokens.append(prompt_ids + target_ids[:-1])
        splits.append(split)
        for offset, token in enumerate(target_ids):
            rows.append(row)
            cols.append(len(prompt_ids) - 1 + offset - split)
            targets.append(token)
    # The essence distribution is read at the subject's last token of p′ (what the model expects
    # after the subject), so the essence row ends there.
    essence_text = essence.replace("{}", request.subject)
    essence_split = subject_last_index(tokenizer, essence_text, request.subject)
    rows_tokens.append(list(tokenizer(essence_text).input_ids)[: essence_split + 1])
    splits.append(essence_split)

    pad = pad_id(tokenizer)
    width_p = max(splits)
    width_s = max(len(t) - s for t, s in zip(rows_tokens, splits))
    B = len(rows_tokens)
    prefix_ids = torch.full((B, width_p), pad, dtype=torch.long)
    prefix_mask = torch.zeros((B, width_p), dtype=torch.long)
    prefix_positions = torch.zeros((B, width_p), dtype=torch.long)
    suffix_ids = torch.full((B, width_s), pad, dtype=torch.long)
    suffix_positions = torch.zeros((B, width_s), dtype=torch.long)
    for row, (tokens, split) in enumerate(zip(rows_tokens, splits)):
        if split:
            prefix_ids[row, width_p - split :] = torch.tensor(tokens[:split])
            prefix_mask[row, width_p - split :] = 1
            prefix_positions[row, width_p - split :] = torch.arange(split)
        suffix_ids[row, : len(tokens) - split] = torch.tensor(tokens[split:])
        suffix_positions[row] = split + torch.arange(width_s)
    device = lm.device
    as_tensor = lambda values: torch.tensor(values, dtype=torch.long, device=device)  # noqa: E731
    return _Contexts(
        prefix_ids=prefix_ids.to(device),
        prefix_mask=prefix_mask.to(device),
        suffix_ids=suffix_ids.to(device),
        prefix_positions=prefix_positions.to(device),
        suffix_positions=suffix_positions.to(device),
        target_rows=as_tensor(rows),
        target_cols=as_tensor(cols),
        target_ids=as_tensor(targets),
        n_rewrite=len(prefixes),
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
    lm: LoadedModel, request: EditRequest, hp: ROMEHyperParams, prefixes: list[str]
) -> KeyValue:
    """k* (mean key over the contexts) and v* (the optimisation above) for one request."""
    layer = hp.layer
    assert layer is not None
    ctx = _build_contexts(lm, request, prefixes, hp.essence_prompt)
    model_body = body(lm)

    # Keys and values of every layer at the positions before the subject's last token: fixed.
    prefix_cache = None
    if ctx.prefix_ids.shape[1]:
        with torch.no_grad():
            prefix_cache = returned_cache(model_body(
                input_ids=ctx.prefix_ids, attention_mask=ctx.prefix_mask,
                position_ids=ctx.prefix_positions, use_cache=True,
            ))

    def suffix_kwargs() -> dict:
        if prefix_cache is None:
            return {"position_ids": ctx.suffix_positions}
        # each pass appends to the cache it is given: hand it a copy
        return {"attention_mask": ctx.full_mask, "position_ids": ctx.suffix_positions,
                cache_kwarg(model_body): copy.deepcopy(prefix_cache), "use_cache": True}

    # One pass up to layer l*: the residual stream entering l* and the keys at the subject.
    resid_name, key_name = act_name("resid_pre", layer), act_name("mlp_key", layer)
    cached = run_with_cache(lm, ctx.suffix_ids, [resid_name, key_name], stop_after=key_name, **suffix_kwargs())
    keys = cached[key_name][:, 0]  # (B, d_mlp): suffix column 0 is each row's subject-last token
    k_star = keys[: ctx.n_rewrite].mean(dim=0)  # (d_mlp,)
    W = projection_weight(lm, layer).detach()
    Wk_star = W @ k_star  # (d_model,)

    delta = torch.zeros_like(Wk_star, requires_grad=True)
    optimizer = torch.optim.Adam([delta], lr=hp.v_lr)
    at_subject = torch.zeros(ctx.suffix_ids.shape + (1,), device=lm.device)  # (B, S, 1)
    at_subject[:, 0] = 1.0

    def add_delta(tensor, *, hook):
        return tensor + at_subject * delta

    max_norm = hp.clamp_factor * Wk_star.norm()
    result = KeyValue(k_star=k_star, v_star=Wk_star.clone(), Wk_star=Wk_star)
    essence_reference: torch.Tensor | None = None
    n_target_tokens = len(ctx.target_ids) // ctx.n_rewrite
    with frozen(lm.model), start_at_layer(lm, layer, cached[resid_name]), hooks(lm, {act_name("mlp_out", layer): add_delta}):
        for step in range(hp.v_steps + 1):
            hidden = model_body(input_ids=ctx.suffix_ids, **suffix_kwargs()).last_hidden_state
            read = torch.cat([hidden[ctx.target_rows, ctx.target_cols], hidden[-1:, 0]])
            log_probs = torch.log_softmax(unembed(lm, read).float(), dim=-1)
            token_lp = log_probs[:-1].gather(1, ctx.target_ids[:, None]).squeeze(1)
            nll = -token_lp.mean()
            essence = log_probs[-1]
            if essence_reference is None:
                essence_reference = essence.detach()  # δ = 0 on the first pass: the unedited model
            kl = torch.sum(essence.exp() * (essence - essence_reference))
            decay = hp.weight_decay * delta.norm() / Wk_star.norm() ** 2
            loss = nll + hp.kl_weight * kl + decay
            p_target = float(torch.exp(-nll.detach() * n_target_tokens))
            result.losses.append({"nll": nll.item(), "kl": kl.item(), "decay": decay.item(), "p_target": p_target})
            if nll.item() < hp.early_stop_nll or step == hp.v_steps:
                break
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                norm = delta.norm()
                if norm > max_norm:
                    delta.mul_(max_norm / norm)
            result.steps = step + 1
    result.v_star = (Wk_star + delta.detach()).detach()
    return result


# ----------------------------------------------------------------------------- the edit


@dataclass
class RomeEdit:
    """Everything one ROME edit produced; `patch()` turns it into a patch file's contents."""

    request: EditRequest
    hparams: ROMEHyperParams
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
    hp: ROMEHyperParams,
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
