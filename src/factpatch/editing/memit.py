"""MEMIT: Mass-Editing Memory in a Transformer (Meng et al., ICLR 2023).

A batch of n requests is written at once into the MLP output projections W_l of a range of layers
l ∈ 𝓛 = {l_1 < … < L}, each layer taking a share of the change:

1. z_r — for each request, the block output at the last edited layer L, at the subject's last
   token, that makes o*_r likely: z_r = h_L + δ_r with δ_r found like ROME's v* (values.py), but
   added to the whole block's output (MEMIT's `compute_z`). Contexts: the bare prompt and 5
   prefixes of ~10 sampled tokens starting "The", "Therefore", "Because", "I", "You".
2. For each l in ascending order, with the layers below already updated:
       K_l  (d_in, n)   keys at the subject's last token, the mean over the contexts (MEMIT's
                        `compute_ks`: the bare prompt weighs as much as all prefixes together)
       R    (d_out, n)  (Z − H_L) / (|𝓛| − i): the remaining error at L, shared by the layers left;
                        where a norm follows W_proj (Gemma 2/3) R is a residual change, mapped to the
                        change of W_proj's output that makes it (core.blocks.mlp_out_change_for)
       Δ_l = R K_lᵀ (λ C_l + K_l K_lᵀ)⁻¹          (C_l = E[k kᵀ], λ = mom2_update_weight)
   Δ_l has rank ≤ n and is stored as the factors R and (λ C_l + K_l K_lᵀ)⁻¹ K_l.

With `preserve_edits` the earlier edits of the stack join the solve:
       Δ_l = R K_lᵀ (λ C_l + K_p K_pᵀ + K_l K_lᵀ)⁻¹     (K_p: every earlier batch's keys at l)
   so that, batch after batch, the stack is the least-squares solution over *all* edits so far
   anchored at the unedited W (recursive least squares, as RLSEdit, Wang et al. 2026, frame
   lifelong editing): min_W Σ_s ‖W K_s − V_s‖² + λ ‖(W − W₀) C^½‖², whose update for the next
   batch is exactly this Δ. Without it each batch re-anchors at the weights it found, and λ C
   bounds only that batch's change (sequential MEMIT as the AlphaEdit paper runs it).

With `replay_edits` the earlier edits join the batch itself: each patch carries its z, and every
earlier request not superseded by a later one with the same prompt and subject is written again,
its key (the bare prompt's) and its residual z − h_L read on the model as it is now:
       Δ_l = [R R_p] [K_l K_p,l]ᵀ (λ C_l + K_p,l K_p,lᵀ + K_l K_lᵀ)⁻¹
   Where an earlier edit holds, its residual is small and this is close to `preserve_edits` with
   keys read after the layers below moved (later batches edit them too, so stored keys go stale);
   where it has decayed, the batch writes it back. `replay_scale` γ scales R_p: γ = 0 is
   `preserve_edits` with fresh (bare-prompt) keys instead of stored ones, each earlier output held
   where it now is; γ = 1 the above. Each batch then costs one read of every earlier edit's bare
   prompt per layer, and its delta has rank up to the number of edits so far (stored dense once
   that is smaller; with γ = 0 the held columns are zero, and `WeightDelta.factored` drops them).

AlphaEdit (alphaedit.py) shares steps 1 and 2 and replaces the solve.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

from ..core.blocks import mlp_contribution, mlp_out_change_for
from ..core.cache import atomic_path
from ..core.errors import FactpatchError
from ..core.hooks import act_name, run_with_cache, start_at_layer
from ..core.models import LoadedModel
from ..core.tokens import pad_id, pad_right, subject_last_index
from .anchor import ANCHOR_META, anchor_norm, anchored_targets, stack_anchor
from .patch import Patch, PatchStack, WeightDelta, applied, make_meta, unedited
from .request import EditRequest, check_batch
from .stats import KEYS_ATTACHMENT, CorpusSpec, key_second_moments, preserved_edit_count, preserved_keys
from .values import (
    PrefixSpec,
    ValueSettings,
    build_contexts,
    length_order,
    optimize_deltas,
    sample_prefixes,
    states_at_subject,
    value_model,
)

logger = logging.getLogger(__name__)

# Below this many requests the first batch's mean ‖v*‖ is a thin estimate of the anchor (anchor.py);
# NAS uses 1,000, factpatch's sequential runs 100.
MIN_ANCHOR_REQUESTS = 20


@dataclass(frozen=True)
class BatchEditParams:
    """What MEMIT and AlphaEdit share. Defaults: MEMIT's GPT-J settings (hparams/MEMIT/EleutherAI_gpt-j-6B.json),
    which AlphaEdit's Llama-3 8B settings repeat, unless noted."""

    layers: tuple[int, ...] | None = None  # the edit range 𝓛; None = the model's (registry.MODEL_DEFAULTS)
    v_steps: int = 25  # Adam steps for δ (GPT-J: 25)
    v_lr: float = 0.5  # GPT-J: 0.5
    kl_weight: float = 0.0625  # λ_KL on the essence prompt (all reference settings: 0.0625)
    weight_decay: float = 0.5  # on ‖δ‖ / ‖h_L‖² (all reference settings: 0.5)
    clamp_factor: float = 0.75  # ‖δ‖ ≤ clamp · ‖h_L‖ (all reference settings: 0.75)
    # The reference stops on the total loss < 0.05; factpatch stops on the NLL term, as its ROME does:
    # on small models the KL and decay terms keep the total above 0.05 (measured.md), so the
    # reference test would run every request for all steps without changing what is learnt.
    early_stop_nll: float = 0.05
    # Off, as in the reference methods. On, a request also stops once o* is the most probable
    # continuation in every context (ENCORE's MPES, Gupta et al. 2025): a smaller z that writes
    # less and harms less (docs/mass-editing.md, "Stopping z once the new object is likely").
    early_stop_most_probable: bool = False
    prefixes: tuple[tuple[int, int], ...] = ((5, 10),)  # MEMIT's get_context_templates: 5 of 10 tokens
    prefix_starts: tuple[str, ...] = ("The", "Therefore", "Because", "I", "You")  # MEMIT's start words
    essence_prompt: str = "{} is a"
    group_size: int = 32  # requests optimised together for z: bounds the (rows × vocabulary) logits
    seed: int = 0  # prefix sampling
    # Where a norm follows W_proj (Gemma 2/3), R (a residual change) becomes a change of W_proj's
    # output by damped Gauss–Newton through the norm (core.blocks.mlp_out_change_for). factpatch's
    # own settings, from AlphaEdit's first batch of 100 on Gemma 3 with the same z
    # (runs/seq-gemma3-cf-2000/diagnosis/damping.jsonl; unedited perplexity 6.75): damping 1e-4
    # gave ES 93, perplexity 10.2, ‖Δ‖ up to 3.8 ‖W‖; 3e-4: 97, 7.67, 1.3 ‖W‖; 1e-3: 90–96, 6.9–7.0,
    # ≤ 0.5 ‖W‖; 1e-2: 71–77, 6.82. Known facts kept (lr_damping_known.jsonl): 76.5 % at 1e-3, 82.6 %
    # at 3e-3 (ES 93, PS 73), 87.3 % at 1e-2: 1e-3 is where one batch reaches the ES ≥ 95.
    # Two steps did as well as four (one: ES 90), in less time. Gemma 3's AlphaEdit uses 1e-2 with a
    # converged z (v_lr 1.0): as many edits, more known facts kept over 2,000 (registry.MODEL_DEFAULTS).
    post_norm_damping: float = 1e-3
    post_norm_steps: int = 2
    # The precision of z's optimisation (core.models.PRECISIONS): float32 as the reference; bfloat16
    # is faster on CPUs with bf16 units and moves the results a little (BENCHMARKS.md).
    v_dtype: str = "float32"
    # Norm anchoring of z (anchor.py; NAS, Liu et al. 2026): off, as in MEMIT and AlphaEdit. On, every
    # request's MLP part v* = z − r is rescaled to one norm a, and one beyond `norm_anchor_skip` · a
    # is not written. a: `norm_anchor_value`, else the one the stack's first anchored batch carries,
    # else — on an unedited model — this batch's mean ‖v*‖ without its largest `norm_anchor_trim`.
    norm_anchor: bool = False
    norm_anchor_value: float | None = None
    norm_anchor_skip: float = 2.0  # NAS: v* longer than twice the anchor is skipped
    norm_anchor_trim: float = 0.05  # NAS: the mean leaves out the largest 5 % (upper quantile 0.95)
    # Earlier edits written again in every batch, from the z their patches carry, with keys and
    # residuals read on the current model (module doc): the stack stays the fit of every edit so
    # far even as the layers below each key move, and an edit a later batch wore down is written
    # back. Off by default (neither paper does it): each batch then also reads every earlier
    # edit's bare prompt at every layer. The earlier edits are then in K itself, so MEMIT's
    # preserve_edits and AlphaEdit's K_p (stored keys) are not used beside it.
    replay_edits: bool = False
    # γ, how far a replayed edit's state is pulled back towards its z: the earlier columns' residual
    # is γ (z − h_L). 1 writes them back (replay as described); 0 holds each earlier edit's output
    # where it now is, at its key read now: preserve_edits with fresh keys instead of stored ones.
    # On SmolLM2 γ = 1 held the earlier states at z and wore the rest of the model down
    # (docs/mass-editing.md, "Writing the earlier edits again"); between, a part of the way.
    replay_scale: float = 1.0

    def __post_init__(self):
        if not self.norm_anchor_skip > 0 or not 0 <= self.norm_anchor_trim < 1:
            raise FactpatchError("norm_anchor_skip must be positive and norm_anchor_trim in [0, 1)")
        if self.norm_anchor_value is not None and not self.norm_anchor_value > 0:
            raise FactpatchError("norm_anchor_value must be positive")
        if self.layers is not None:
            if not self.layers:
                raise FactpatchError("the layer range is empty")
            if list(self.layers) != sorted(set(self.layers)):
                raise FactpatchError(f"layers must be distinct and ascending, got {list(self.layers)}")
        if self.group_size < 1:
            raise FactpatchError("group_size must be at least 1")
        if not 0 <= self.replay_scale <= 1:
            raise FactpatchError(f"replay_scale must be in [0, 1], got {self.replay_scale}")
        if self.replay_scale != 1 and not self.replay_edits:
            raise FactpatchError("replay_scale applies to replayed edits: set replay_edits as well")
        if not self.post_norm_damping > 0 or self.post_norm_steps < 1:
            raise FactpatchError("post_norm_damping must be positive and post_norm_steps at least 1")
        self.value_settings()  # checks the optimisation's settings

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def z_layer(self) -> int:
        assert self.layers is not None
        return self.layers[-1]

    def prefix_spec(self) -> PrefixSpec:
        return PrefixSpec(groups=self.prefixes, starts=self.prefix_starts, seed=self.seed)

    def value_settings(self) -> ValueSettings:
        return ValueSettings(
            steps=self.v_steps, lr=self.v_lr, kl_weight=self.kl_weight, weight_decay=self.weight_decay,
            clamp_factor=self.clamp_factor, early_stop_nll=self.early_stop_nll, essence_prompt=self.essence_prompt,
            dtype=self.v_dtype, early_stop_most_probable=self.early_stop_most_probable,
        )


@dataclass(frozen=True)
class MEMITParams(BatchEditParams):
    # λ weighs C (the normalised second moment: one "average key") against the n new keys. For a
    # typical key kᵀC⁻¹k ≈ d_in, so one key's update is scaled by about d_in / (λ + d_in): λ only
    # means the same thing across models relative to d_in. The reference values — 15,000 on GPT-J
    # (d_in 16,384) and Llama-3 8B (14,336), 20,000 on GPT-2 XL (6,400) — are about 1 × d_in for the
    # first two, so factpatch's default is λ = 1.0 · d_in (1,536 on SmolLM2, 2,048 on Gemma 3 270M);
    # a fixed 15,000 there would shrink every layer's write ~10×. `mom2_update_weight` sets λ outright.
    lambda_per_dim: float = 1.0
    mom2_update_weight: float | None = None
    # Earlier edits' keys in the solve (K_p K_pᵀ, as AlphaEdit's, without its projection): the
    # stack stays the least-squares fit of every edit so far (module doc). Off by default: MEMIT's
    # paper and the AlphaEdit paper's sequential baseline solve each batch alone. The patch then
    # carries its keys (n columns a layer), as AlphaEdit's do.
    preserve_edits: bool = False
    def __post_init__(self):
        super().__post_init__()
        if self.lambda_per_dim < 0 or (self.mom2_update_weight is not None and self.mom2_update_weight < 0):
            raise FactpatchError("lambda_per_dim and mom2_update_weight must not be negative")
        if self.replay_edits and self.preserve_edits:
            raise FactpatchError("replay_edits already keeps the earlier edits' keys in the solve: "
                                 "set preserve_edits or replay_edits, not both")

    def lam(self, d_in: int) -> float:
        return self.mom2_update_weight if self.mom2_update_weight is not None else self.lambda_per_dim * d_in


# ----------------------------------------------------------------------------- pure math


def memit_solve(K: torch.Tensor, C: torch.Tensor, lam: float, preserved: torch.Tensor | None = None) -> torch.Tensor:
    """(λ C + K_p K_pᵀ + K Kᵀ)⁻¹ K, so that Δ = R · resultᵀ = R Kᵀ (λ C + K_p K_pᵀ + K Kᵀ)⁻¹.

    K: (d_in, n) keys, C: (d_in, d_in), preserved = K_p K_pᵀ: (d_in, d_in) or None (MEMIT's own
    solve). Solved in float64 (as the reference does), returned float32.
    """
    K64 = K.to(torch.float64)
    A = lam * C.to(torch.float64) + K64 @ K64.T  # (d_in, d_in)
    if preserved is not None:
        A = A + preserved.to(torch.float64)
    return torch.linalg.solve(A, K64).to(torch.float32)  # (d_in, n)


def layer_share(Z: torch.Tensor, H: torch.Tensor, layers_left: int) -> torch.Tensor:
    """R = (Z − H_L) / (layers still to update): (d_out, n) from (n, d_out) rows."""
    return ((Z - H) / layers_left).T


# ----------------------------------------------------------------------------- activations


def projection_module(lm: LoadedModel, layer: int) -> str:
    return lm.adapter.mlp_out_path(layer)


class SubjectReader:
    """Activations at the subject's last token of `prefix + prompt` for every request and prefix,
    read once before each layer of a batch is written (step 2, lowest layer first).

    Writing W_out at layer l changes nothing the blocks below l compute, so each read starts from
    the residual stream entering the layer written since the previous read, kept from that read:
    the same rows, chunks and blocks above it as a pass from the embedding, so the same values,
    for the blocks below skipped (the five reads of layers 1–5 run 20 blocks, not 30). Rows are
    right-padded in chunks: causal attention never lets a real token see the padding after it."""

    def __init__(self, lm: LoadedModel, requests: Sequence[EditRequest], prefixes: list[str], chunk_rows: int = 256):
        self.lm = lm
        self.shape = (len(requests), len(prefixes))
        tokenizer = lm.tokenizer
        rows, positions = [], []
        for request in requests:
            for prefix in prefixes:
                text = prefix + request.text
                rows.append(list(tokenizer(text).input_ids))
                positions.append(subject_last_index(tokenizer, text, request.subject, len(prefix) + request.prompt.index("{}")))
        self.chunks = [
            (pad_right(rows[start : start + chunk_rows], pad_id(tokenizer), lm.device).input_ids,
             torch.tensor(positions[start : start + chunk_rows], device=lm.device))
            for start in range(0, len(rows), chunk_rows)
        ]
        self._kept_layer = 0
        self._kept: list[torch.Tensor] | None = None  # per chunk (rows, T, d_model) entering _kept_layer

    def read(self, names: list[str], keep: int | None = None) -> dict[str, torch.Tensor]:
        """{name: (n, n_prefixes, dim)}. `keep`: the caller will write nothing below this layer
        before the next read, which then starts from the residual stream entering it."""
        start = self._kept_layer if self._kept is not None else 0
        kept_name = act_name("resid_pre", keep) if keep is not None else None
        wanted = list(dict.fromkeys(names + ([kept_name] if kept_name else [])))
        layer_of = {name: int(name.split(".")[1]) for name in wanted}
        if min(layer_of.values()) < start:
            raise ValueError(f"a read that starts at layer {start} cannot see {min(layer_of, key=layer_of.get)}")
        # within a layer: its input, the inside, its output
        last = max(wanted, key=lambda n: (layer_of[n], 0 if "resid_pre" in n else 2 if "resid_post" in n else 1))
        out: dict[str, list[torch.Tensor]] = {name: [] for name in names}
        kept: list[torch.Tensor] = []
        for chunk, (ids, at) in enumerate(self.chunks):
            with start_at_layer(self.lm, start, self._kept[chunk] if self._kept is not None else None):
                cached = run_with_cache(self.lm, ids, wanted, stop_after=last)
            for name in names:
                out[name].append(cached[name][torch.arange(len(at), device=at.device), at])  # (rows, dim)
            if kept_name:
                kept.append(cached[kept_name])
        self._kept_layer, self._kept = (keep, kept) if keep is not None else (0, None)
        return {name: torch.cat(parts).view(*self.shape, -1) for name, parts in out.items()}


def read_at_subject(
    lm: LoadedModel, requests: Sequence[EditRequest], prefixes: list[str], names: list[str], chunk_rows: int = 256
) -> dict[str, torch.Tensor]:
    """One read of `names` at the subject's last token (SubjectReader): {name: (n, n_prefixes, dim)}."""
    return SubjectReader(lm, requests, prefixes, chunk_rows).read(names)


def mlp_split_at_subject(lm: LoadedModel, requests: Sequence[EditRequest], layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(h, r), each (n, d_model): block `layer`'s output at the subject's last token of the bare
    prompt, and what precedes the MLP's part of it, h − v₀ (v₀ = mlp_post(W_proj's output))."""
    h_name, out_name = act_name("resid_post", layer), act_name("mlp_out", layer)
    read = read_at_subject(lm, requests, [""], [h_name, out_name])
    h = read[h_name][:, 0]
    return h, h - mlp_contribution(lm, layer, read[out_name][:, 0])


def context_weights(spec: PrefixSpec) -> torch.Tensor:
    """MEMIT's key average: the mean over context groups (the bare prompt; each prefix group) of
    each group's mean. (1 + number of prefixes,) weights that sum to 1."""
    sizes = [1] + [size for size in spec.group_sizes() if size]
    return torch.cat([torch.full((size,), 1.0 / (len(sizes) * size)) for size in sizes])


# ----------------------------------------------------------------------------- earlier edits, written again

# The z a patch wrote, (n, d_model) one row a request, carried for later batches' replay_edits.
TARGETS_ATTACHMENT = "targets.z"


@dataclass
class Replay:
    """Earlier edits a batch writes again (replay_edits): their requests and their z at L."""

    requests: list[EditRequest]
    Z: torch.Tensor  # (m, d_model)


def replayed_edits(stack: PatchStack | None, requests: Sequence[EditRequest], z_layer: int) -> Replay:
    """Every request the stack's applied patches wrote, with the z its patch carries, but those
    that a later patch or `requests` asks again for the same prompt and subject: the later edit
    supersedes the earlier. (Within one patch both are kept: that batch wrote their compromise.)"""
    superseded = {(r.subject, r.prompt) for r in requests}
    kept: list[EditRequest] = []
    rows: list[torch.Tensor] = []
    for patch in reversed(stack.applied if stack is not None else []):
        if not patch.requests:
            continue
        Z = patch.attachments.get(TARGETS_ATTACHMENT)
        if Z is None or Z.shape[0] != len(patch.requests):
            raise FactpatchError(f"replay_edits: patch {patch.id} ({patch.meta.get('method', '?')}) carries no z for "
                                 "its edits; a stack to replay is made with replay_edits from its first batch")
        if patch.layers and patch.layers[-1] != z_layer:
            raise FactpatchError(f"replay_edits: patch {patch.id} wrote its z at layer {patch.layers[-1]}, "
                                 f"this batch writes at layer {z_layer}")
        patch_keys = set()
        for record, z in zip(patch.requests, Z):
            request = EditRequest.from_dict(record)
            key = (request.subject, request.prompt)
            patch_keys.add(key)
            if key not in superseded:
                kept.append(request)
                rows.append(z)
        superseded |= patch_keys
    return Replay(kept, torch.stack(rows) if rows else torch.zeros(0, 0))


# ----------------------------------------------------------------------------- the batch edit


@dataclass
class TargetValues:
    Z: torch.Tensor  # (n, d_model) the wanted block outputs at L
    steps: list[int]
    p_first: list[float]
    p_last: list[float]
    losses: list[list[dict]]  # per request, per step: nll, kl, decay, p_target

    # Step 1 is nearly all of a batch's time and Z is small (n × d_model floats), so a sequential
    # run keeps each batch's targets beside its (large, unversioned) patch: given the same
    # model state, step 2 rebuilds the patch from them in seconds.
    def save(self, path: Path, requests: Sequence[EditRequest]) -> Path:
        meta = {"requests": json.dumps([r.to_dict() for r in requests]),
                "trace": json.dumps({"steps": self.steps, "p_first": self.p_first, "p_last": self.p_last,
                                     "losses": self.losses})}
        with atomic_path(Path(path)) as tmp:
            save_file({"Z": self.Z.detach().cpu().contiguous()}, str(tmp), metadata=meta)
        return Path(path)

    @classmethod
    def load(cls, path: Path, requests: Sequence[EditRequest]) -> TargetValues:
        """The targets saved for exactly `requests` (in order), else a FactpatchError."""
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                Z = f.get_tensor("Z")
            saved = json.loads(meta["requests"])
            trace = json.loads(meta["trace"])
        except (OSError, SafetensorError, KeyError, ValueError) as e:
            raise FactpatchError(f"{path}: not a targets file ({e})") from None
        if saved != [r.to_dict() for r in requests] or Z.shape[0] != len(requests):
            raise FactpatchError(f"{path} holds the targets of other requests")
        return cls(Z, trace["steps"], trace["p_first"], trace["p_last"], trace["losses"])


def compute_targets(
    lm: LoadedModel, requests: Sequence[EditRequest], params: BatchEditParams, prefixes: list[str],
    progress: bool = True,
) -> TargetValues:
    """z for every request (step 1), optimised `group_size` requests at a time."""
    L = params.z_layer
    resid_name, out_name = act_name("resid_pre", L), act_name("resid_post", L)
    Z, steps, p_first, p_last, losses = [], [], [], [], []
    # Groups of requests with similar suffix lengths: each group's rows are padded to its longest.
    # A request's z does not depend on its group (values.optimize_deltas), so the order is free.
    order = length_order(lm, requests)
    settings = params.value_settings()
    work = value_model(lm, settings)  # lm itself, or a lower-precision copy for the optimisation
    with tqdm(total=len(requests), desc=f"z at layer {L}", unit="req", disable=not progress) as bar:
        for start in range(0, len(requests), params.group_size):
            group = [requests[i] for i in order[start : start + params.group_size]]
            ctx = build_contexts(work, group, prefixes, params.essence_prompt)
            cached = run_with_cache(work, ctx.suffix_ids, [resid_name, out_name], stop_after=out_name,
                                    **ctx.forward_kwargs(work))
            bare_rows = torch.arange(len(group), device=lm.device) * ctx.n_contexts  # each request's bare prompt
            h_L = cached[out_name][bare_rows, 0]  # (g, d_model) at the subject's last token
            if work is not lm:  # z − h_L is what the update writes: its base in full precision
                h_L = states_at_subject(lm, ctx, [out_name], out_name, rows=bare_rows)[out_name]
            found = optimize_deltas(work, ctx, "resid_post", L, cached[resid_name], h_L.norm(dim=-1), settings)
            Z.append(h_L + found.delta)
            steps += found.steps
            p_first += found.p_first
            p_last += found.p_last
            losses += found.losses
            bar.update(len(group))
    back = sorted(range(len(order)), key=order.__getitem__)  # position of each request in `order`
    return TargetValues(torch.cat(Z)[back], [steps[i] for i in back], [p_first[i] for i in back],
                        [p_last[i] for i in back], [losses[i] for i in back])


# solve(l, K, i) -> right factor (d_in, n): the method's answer for layer l given its keys K
LayerSolver = Callable[[int, torch.Tensor], torch.Tensor]


@dataclass
class SpreadResult:
    deltas: list[WeightDelta]
    keys_after: dict[int, torch.Tensor]  # layer -> (d_in, n) keys once every layer is written
    # (or (d_in, n · contexts) with context_keys: √w_p k_{r,p}, so that their K Kᵀ is Σ_p w_p k kᵀ)
    targets: TargetValues
    seconds: float


def spread_over_layers(
    lm: LoadedModel,
    requests: Sequence[EditRequest],
    params: BatchEditParams,
    prefixes: list[str],
    solve: LayerSolver,
    progress: bool = True,
    keys_after: bool = False,
    targets: TargetValues | None = None,
    context_keys: bool = False,
    replay: Replay | None = None,
) -> SpreadResult:
    """Steps 1 and 2 with the method's solve (step 1 skipped if `targets` are given: those step 1
    found on the same model state); the model is left exactly as it was. `replay`: earlier edits
    written again beside the requests, each from its bare prompt's key and h_L (replay_edits: a
    context mean would read six times the rows for edits that mostly hold already); the solve
    then sees their key columns after the requests' (d_in, n + m), and `keys_after` holds only
    the requests'."""
    assert params.layers is not None
    started = time.perf_counter()
    if targets is None:
        targets = compute_targets(lm, requests, params, prefixes, progress)
    elif targets.Z.shape[0] != len(requests):
        raise FactpatchError(f"{targets.Z.shape[0]} targets for {len(requests)} requests")
    weights = context_weights(params.prefix_spec()).to(lm.device)  # (n_prefixes,)
    if len(weights) != len(prefixes):
        raise FactpatchError(f"{len(prefixes)} context prefixes, but the settings make {len(weights)}")
    L = params.z_layer
    z_name = act_name("resid_post", L)
    deltas: list[WeightDelta] = []
    after: dict[int, torch.Tensor] = {}
    reader = SubjectReader(lm, requests, prefixes)
    replaying = replay is not None and len(replay.requests) > 0
    replay_reader = SubjectReader(lm, replay.requests, [""]) if replaying else None
    Z = torch.cat([targets.Z, replay.Z.to(targets.Z)]) if replaying else targets.Z  # (n + m, d_model)
    through_norm = bool(lm.adapter.mlp_post)  # e.g. Gemma's post-norm: R is not W_proj's output change
    with applied(lm, []) as stack:
        for i, layer in enumerate(tqdm(params.layers, desc="writing layers", unit="layer", disable=not progress)):
            key_name, out_name = act_name("mlp_key", layer), act_name("mlp_out", layer)
            names = [key_name, z_name] + ([out_name] if through_norm else [])
            read = reader.read(names, keep=layer)  # only this layer and those above change next
            K = torch.einsum("npd,p->dn", read[key_name], weights)  # (d_in, n)
            H = read[z_name][:, 0]  # (n, d_model) the bare prompt's h_L with the lower layers written
            outs = read[out_name][:, 0] if through_norm else None
            K_all = K
            if replay_reader is not None:
                again = replay_reader.read(names, keep=layer)
                K_all = torch.cat([K, again[key_name][:, 0].T], dim=1)  # (d_in, n + m)
                H = torch.cat([H, again[z_name][:, 0]])  # (n + m, d_model)
                outs = torch.cat([outs, again[out_name][:, 0]]) if outs is not None else None
            R = layer_share(Z, H, len(params.layers) - i)  # (d_model, n + m) in the residual stream
            if replay_reader is not None and params.replay_scale != 1:
                R[:, len(requests):] *= params.replay_scale  # γ: how far the earlier edits are pulled back
            if outs is not None:  # what W_proj must output for the residual stream to move by R
                R = mlp_out_change_for(lm, layer, outs, R.T, params.post_norm_damping, params.post_norm_steps).T
            logger.debug("layer %d: mean ‖z − h_L‖ %.3f", layer, float((Z - H).norm(dim=-1).mean()))
            right = solve(layer, K_all)  # (d_in, n + m)
            module = projection_module(lm, layer)
            delta = WeightDelta.factored(f"{module}.weight", R.cpu(), right.cpu(), lm.adapter.mlp_out_transposed)
            stack.apply(Patch([delta], {"fingerprint": lm.fingerprint}))
            deltas.append(delta)
            if keys_after:  # a key at l is W_out's input at l: writing W_out here and above leaves it as it is
                after[layer] = (torch.einsum("npd,p->dnp", read[key_name], weights.sqrt()).flatten(1)
                                if context_keys else K).cpu()
    return SpreadResult(deltas, after, targets, time.perf_counter() - started)


def batch_patch(lm: LoadedModel, method: str, params: BatchEditParams, requests, result: SpreadResult,
                stack: PatchStack | None, replay: Replay | None, keep_keys: bool, **extra) -> Patch:
    """A batch's patch: its deltas, and what later batches read of it — its z where they write it
    again (`replay`), its keys where their solves keep them (`keep_keys`: preserve_edits,
    AlphaEdit's K_p), nothing more otherwise."""
    if replay is not None:
        meta = batch_meta(lm, method, params, requests, result, replayed_edits=len(replay.requests), **extra)
        return Patch(result.deltas, meta, {TARGETS_ATTACHMENT: result.targets.Z.detach().cpu().contiguous()})
    if not keep_keys:
        return Patch(result.deltas, batch_meta(lm, method, params, requests, result, **extra))
    meta = batch_meta(lm, method, params, requests, result, preserved_edits=preserved_edit_count(stack), **extra)
    attachments = {KEYS_ATTACHMENT.format(layer=layer): K.contiguous() for layer, K in result.keys_after.items()}
    return Patch(result.deltas, meta, attachments)


def batch_meta(lm: LoadedModel, method: str, params: BatchEditParams, requests, result: SpreadResult, **extra) -> dict:
    assert params.layers is not None
    return make_meta(
        lm, method, list(params.layers), [projection_module(lm, l) for l in params.layers], list(requests),
        hparams=params.to_dict(), v_steps_run=result.targets.steps,
        p_target_z=[round(p, 4) for p in result.targets.p_last],
        edit_seconds=round(result.seconds, 3), **extra,
    )


class BatchEditor:
    """What MEMIT and AlphaEdit editors share: statistics for every layer, the contexts."""

    name = "batch"

    def __init__(self, lm: LoadedModel, params: BatchEditParams, cache_dir: Path | None = None,
                 progress: bool = True, corpus: CorpusSpec | None = None):
        if params.layers is None:
            raise FactpatchError(f"{self.name}: no layer range given")
        for layer in params.layers:
            lm.check_layer(layer)
        self.lm, self.params, self.cache_dir, self.progress = lm, params, cache_dir, progress
        self.corpus = corpus if corpus is not None else CorpusSpec()
        self._C: dict[int, torch.Tensor] | None = None
        self._prefixes: list[str] | None = None

    def prepare(self, stack: PatchStack | None = None) -> None:
        if self._C is not None:
            return
        assert self.params.layers is not None
        with unedited(stack):  # C and the prefixes are cached as the unedited model's: computed on its weights
            self._C = key_second_moments(self.lm, list(self.params.layers), self.corpus, self.cache_dir, self.progress)
            self._prefixes = sample_prefixes(self.lm, self.params.prefix_spec(), self.cache_dir)

    @property
    def prefixes(self) -> list[str]:
        self.prepare()
        assert self._prefixes is not None
        return self._prefixes

    def C(self, layer: int) -> torch.Tensor:
        self.prepare()
        assert self._C is not None
        return self._C[layer]


    def patch(self, requests: Sequence[EditRequest], stack: PatchStack | None = None) -> Patch:
        return self.patch_and_targets(requests, stack)[0]

    def targets(self, requests: Sequence[EditRequest], stack: PatchStack | None,
                found: TargetValues | None) -> tuple[TargetValues, TargetValues, dict]:
        """(found, written, meta): step 1's targets (`found`, or computed on the model as it is),
        the targets the layers are written from — the same, or norm-anchored (anchor.py) — and
        for the patch's metadata each request's ‖v*‖ (the size of what it asks of L's MLP, which
        NAS finds growing over sequential runs; recorded with or without anchoring) and what the
        anchoring did."""
        if found is None:
            found = compute_targets(self.lm, requests, self.params, self.prefixes, self.progress)
        elif found.Z.shape[0] != len(requests):
            raise FactpatchError(f"{found.Z.shape[0]} targets for {len(requests)} requests")
        elif found.Z.device != self.lm.device:  # read from disk (a resumed or rebuilt batch) for a model on a GPU
            found = dataclasses.replace(found, Z=found.Z.to(self.lm.device))
        params = self.params
        H, r = mlp_split_at_subject(self.lm, requests, params.z_layer)
        v_star_norm = (found.Z - r).norm(dim=-1)  # (n,)
        meta: dict = {"v_star_norm": [round(float(x), 4) for x in v_star_norm]}
        if not params.norm_anchor:
            return found, found, meta
        a = params.norm_anchor_value or stack_anchor(stack)
        if a is None:
            if stack is not None and stack.applied:
                raise FactpatchError(f"{self.name}: norm_anchor needs the unedited model's anchor, and no patch of "
                                     "the stack carries one: set norm_anchor_value")
            a = anchor_norm(v_star_norm, params.norm_anchor_trim)
            if len(requests) < MIN_ANCHOR_REQUESTS:
                logger.warning("norm anchor from this batch's %d request(s) only: a later batch anchors to it too; "
                               "norm_anchor_value sets it outright (NAS takes it from 1,000)", len(requests))
        Z, skipped = anchored_targets(found.Z, H, r, a, params.norm_anchor_skip)
        logger.info("norm anchor %.3f: ‖v*‖ from %.3f to %.3f, %d of %d not written", a, float(v_star_norm.min()),
                    float(v_star_norm.max()), int(skipped.sum()), len(requests))
        meta.update({ANCHOR_META: round(a, 6), "norm_anchor_skipped": [int(i) for i in skipped.nonzero().flatten()]})
        return found, dataclasses.replace(found, Z=Z), meta

    def patch_and_targets(self, requests: Sequence[EditRequest], stack: PatchStack | None = None,
                          targets: TargetValues | None = None) -> tuple[Patch, TargetValues]:
        """`patch`, and the step-1 targets it was written from; given `targets` (saved by an
        earlier call on the same model state), step 1 is skipped and the same patch comes back."""
        raise NotImplementedError


class MemitEditor(BatchEditor):
    name = "memit"

    def patch_and_targets(self, requests: Sequence[EditRequest], stack: PatchStack | None = None,
                          targets: TargetValues | None = None) -> tuple[Patch, TargetValues]:
        check_batch(requests, allow_conflicts=True)  # user input was checked where it was read
        self.prepare(stack)
        params = self.params
        assert isinstance(params, MEMITParams)

        def solve(layer: int, K: torch.Tensor) -> torch.Tensor:
            preserved = preserved_keys(stack, layer, K.shape[0]).to(K.device) if params.preserve_edits else None
            return memit_solve(K, self.C(layer).to(K.device), params.lam(K.shape[0]), preserved)

        found, written, anchoring = self.targets(requests, stack, targets)
        replay = replayed_edits(stack, requests, params.z_layer) if params.replay_edits else None
        result = spread_over_layers(self.lm, requests, params, self.prefixes, solve, self.progress, targets=written,
                                    keys_after=params.preserve_edits, replay=replay)
        return batch_patch(self.lm, self.name, params, requests, result, stack, replay,
                           keep_keys=params.preserve_edits, **anchoring), found
