"""Target values for many requests at once: ROME's v* and MEMIT's z, one optimisation.

For each request r a vector δ_r is added to one activation (ROME: the MLP output at l*; MEMIT and
AlphaEdit: the block output h_L at the last edited layer L) at the subject's last token, in every
context x_j + p(s_r), and optimised with Adam to minimise

    (1/N_r) Σ_j −log P[o*_r | x_j + p(s_r)] / |o*_r|                      (NLL, teacher-forced)
  + λ_KL · D_KL(P[· | p′(s_r)] edited ‖ unedited)                          (essence drift)
  + w_decay · ‖δ_r‖ / ‖v_r‖²                                              (v_r: the unedited value)

with ‖δ_r‖ ≤ clamp · ‖v_r‖ after every step. Requests never share a δ, and Adam is elementwise,
so optimising a batch together gives each request what optimising it alone would; a request whose
NLL falls below the early-stop value is frozen (its δ restored after each later step).

Speed, as for ROME: everything before the subject's last token cannot depend on δ, so those
positions' keys and values are computed once (a KV cache); the residual stream entering the
hooked layer is computed once; each step runs only the blocks from that layer on, over the
suffixes, and reads logits only where the loss reads them. Requests are optimised in groups of
`group_size` so that the logits (rows × vocabulary) stay within memory.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..core.attention import gradient_attention
from ..core.blocks import PrefixCache
from ..core.cache import atomic_path, default_cache_dir, stable_hash
from ..core.errors import FactpatchError
from ..core.generate import seeded
from ..core.hooks import (
    act_name,
    body,
    frozen,
    hooks,
    returned_cache,
    run_with_cache,
    start_at_layer,
    unembed,
)
from ..core.models import LoadedModel, check_precision, in_precision
from ..core.tokens import encode_target, pad_id, subject_last_index
from .request import EditRequest

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- contexts


@dataclass(frozen=True)
class PrefixSpec:
    """The texts x_j put before the prompt, sampled once from the model (top-k 5) and cached.

    `groups` are (count, tokens) pairs; `starts` are words the samples begin with (MEMIT: "The",
    "Therefore", "Because", "I", "You", one sample each), or empty to start from the model's
    beginning-of-text token (ROME)."""

    groups: tuple[tuple[int, int], ...]
    starts: tuple[str, ...] = ()
    seed: int = 0

    def copies_per_start(self, count: int) -> int:
        return max(1, count // len(self.starts))

    def group_sizes(self) -> list[int]:
        """How many prefixes each group yields (sample_prefixes samples exactly these)."""
        return [len(self.starts) * self.copies_per_start(c) if self.starts else c for c, _ in self.groups]

    def cache_key(self) -> str:
        # ROME's original key (groups, seed) is kept for start-less specs so existing caches stay valid
        return stable_hash([self.groups, self.seed] if not self.starts else [self.groups, self.starts, self.seed])


def sample_prefixes(lm: LoadedModel, spec: PrefixSpec, cache_dir: Path | None = None) -> list[str]:
    """The bare prompt's empty prefix first, then every sampled prefix ending in ". "."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache_dir / "prefixes" / f"{lm.cache_name}-{spec.cache_key()}.json"
    if path.exists():
        return json.loads(path.read_text())
    tokenizer = lm.tokenizer
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    prefixes = [""]
    with seeded(spec.seed), torch.no_grad():
        for count, length in spec.groups:
            if spec.starts:
                starts = [list(tokenizer(word).input_ids) for word in spec.starts]
                rows = [(ids, 1) for ids in starts for _ in range(spec.copies_per_start(count))]
            else:
                rows = [([bos], count)]
            for start_ids, copies in rows:
                ids = torch.tensor([start_ids] * copies, dtype=torch.long, device=lm.device)
                new_tokens = max(1, length - 1 if spec.starts else length)  # a start word is the first token
                out = lm.model.generate(
                    ids, attention_mask=torch.ones_like(ids), do_sample=True, top_k=5,
                    max_new_tokens=new_tokens, min_new_tokens=new_tokens, pad_token_id=pad_id(tokenizer),
                )
                keep_from = 0 if spec.starts else 1  # the start word is part of a MEMIT prefix
                for row in out[:, keep_from:]:
                    text = tokenizer.decode(row, skip_special_tokens=True).replace("{", "(").replace("}", ")")
                    prefixes.append(" ".join(text.split()) + ". ")
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(prefixes))
    return prefixes


# Padded essence positions from which the essence rows get a pass of their own: a pass's weight
# reads cost about as much as 18 rows of a rewrite pass at SmolLM2's sizes (0.29 ms a one-row
# product of an MLP matrix against 1.0 ms for 63 rows, runs/bench/rome-profile-2026-11-30/).
ESSENCE_APART_FROM = 16


@dataclass
class Contexts:
    """Every request's rewrite contexts (one row per prefix), then one essence row per request,
    split at each row's subject last token: the part before it cannot depend on δ.

    Prefix parts are left-padded and suffix parts right-padded, so every row's subject-last token
    sits in suffix column 0; position ids keep each row's true positions.
    """

    prefix_ids: torch.Tensor  # (B, P) tokens before the subject's last token, left-padded
    prefix_mask: torch.Tensor  # (B, P) 1 = real token
    suffix_ids: torch.Tensor  # (B, S) from the subject's last token on, right-padded
    prefix_positions: torch.Tensor  # (B, P)
    suffix_positions: torch.Tensor  # (B, S)
    row_request: torch.Tensor  # (B,) which request each row belongs to
    target_rows: torch.Tensor  # (N_t,) row of each target token
    target_cols: torch.Tensor  # (N_t,) suffix column whose logits predict it
    target_ids: torch.Tensor  # (N_t,)
    target_request: torch.Tensor  # (N_t,) request of each target token
    essence_rows: torch.Tensor  # (n,) the essence row of each request
    n_requests: int
    n_contexts: int  # rewrite rows per request
    _prefix_cache: PrefixCache | None = None

    @property
    def full_mask(self) -> torch.Tensor:  # (B, P + S): padding after real tokens is never attended
        return torch.cat([self.prefix_mask, torch.ones_like(self.suffix_ids)], dim=1)

    def select(self, keep: torch.Tensor) -> tuple[Contexts, torch.Tensor]:
        """The contexts of requests `keep` (local indices, ascending) alone, renumbered 0..len-1,
        and the rows they came from; the prefix cache is sliced, not recomputed."""
        new_index = torch.full((self.n_requests,), -1, dtype=torch.long, device=keep.device)
        new_index[keep] = torch.arange(len(keep), device=keep.device)
        rows = torch.nonzero(new_index[self.row_request] >= 0).flatten()  # rows of kept requests, in order
        return self.subset(rows, new_index, self.suffix_ids.shape[1]), rows

    def split_essence(self) -> list[tuple[Contexts, torch.Tensor]]:
        """The rewrite rows, and the essence rows apart (each with the rows it came from), where
        that saves time. An essence row is one token long after the subject, so in the rewrite
        rows' pass it is padded to their width; apart, it costs one column, but a pass of its own
        reads every weight matrix again. For one request (ROME) that read costs more than the
        padding saves: the one-row products took 1.2 of 8.4 s of an edit
        (runs/bench/rome-profile-2026-11-30/), so the rows stay together below ESSENCE_APART_FROM."""
        if not len(self.essence_rows) or len(self.essence_rows) * (self.suffix_ids.shape[1] - 1) < ESSENCE_APART_FROM:
            return [(self, torch.arange(len(self.row_request), device=self.row_request.device))]
        everyone = torch.arange(self.n_requests, device=self.row_request.device)
        is_essence = torch.zeros(len(self.row_request), dtype=torch.bool, device=self.row_request.device)
        is_essence[self.essence_rows] = True
        rewrite = torch.nonzero(~is_essence).flatten()
        essence = torch.nonzero(is_essence).flatten()
        return [(self.subset(rewrite, everyone, self.suffix_ids.shape[1]), rewrite),
                (self.subset(essence, everyone, 1), essence)]

    def subset(self, rows: torch.Tensor, new_index: torch.Tensor, width: int) -> Contexts:
        """Rows `rows` (ascending) cut to `width` suffix columns, requests renumbered by
        `new_index` (old request -> new, -1 = dropped); targets and essence rows follow their rows."""
        new_row = torch.full((len(self.row_request),), -1, dtype=torch.long, device=rows.device)
        new_row[rows] = torch.arange(len(rows), device=rows.device)
        tokens = torch.nonzero(new_row[self.target_rows] >= 0).flatten()
        essence = self.essence_rows[new_row[self.essence_rows] >= 0] if len(self.essence_rows) else self.essence_rows
        cache = self._prefix_cache.select(rows) if self._prefix_cache is not None else None
        return Contexts(
            prefix_ids=self.prefix_ids[rows], prefix_mask=self.prefix_mask[rows],
            suffix_ids=self.suffix_ids[rows, :width],
            prefix_positions=self.prefix_positions[rows], suffix_positions=self.suffix_positions[rows, :width],
            row_request=new_index[self.row_request[rows]],
            target_rows=new_row[self.target_rows[tokens]], target_cols=self.target_cols[tokens],
            target_ids=self.target_ids[tokens], target_request=new_index[self.target_request[tokens]],
            essence_rows=new_row[essence],
            n_requests=int((new_index >= 0).sum()), n_contexts=self.n_contexts, _prefix_cache=cache,
        )

    def rewrite_rows(self, request: int) -> slice:
        return slice(request * self.n_contexts, (request + 1) * self.n_contexts)

    def forward_kwargs(self, lm: LoadedModel) -> dict:
        """Arguments for a pass over the suffixes that attends to the cached prefixes."""
        if not self.prefix_ids.shape[1]:
            return {"position_ids": self.suffix_positions}
        if self._prefix_cache is None:
            width = self.prefix_ids.shape[1]
            with torch.no_grad():
                out = body(lm)(input_ids=self.prefix_ids, attention_mask=self.prefix_mask,
                               position_ids=self.prefix_positions, use_cache=True)
            self._prefix_cache = PrefixCache.of(returned_cache(out), lm.n_layers, width)
        return {"attention_mask": self.full_mask, "position_ids": self.suffix_positions,
                **self._prefix_cache.forward_kwargs(lm)}


def build_contexts(
    lm: LoadedModel, requests: Sequence[EditRequest], prefixes: list[str], essence: str | None
) -> Contexts:
    """Rows: for each request, `prefix + prompt(s) + o*[:-1]` for every prefix; then, with an
    essence template, `p′(s)` cut at the subject's last token (the KL reads what the model
    expects right after the subject), one row per request."""
    tokenizer = lm.tokenizer
    rows_tokens, splits, owners = [], [], []
    t_rows, t_cols, t_ids, t_req = [], [], [], []
    for r, request in enumerate(requests):
        for prefix in prefixes:
            row = len(rows_tokens)
            text = prefix + request.text
            prompt_ids, target_ids = encode_target(tokenizer, text, request.target_new)
            split = subject_last_index(tokenizer, text, request.subject, len(prefix) + request.prompt.index("{}"))
            rows_tokens.append(prompt_ids + target_ids[:-1])
            splits.append(split)
            owners.append(r)
            for offset, token in enumerate(target_ids):
                t_rows.append(row)
                t_cols.append(len(prompt_ids) - 1 + offset - split)
                t_ids.append(token)
                t_req.append(r)
    essence_rows = []
    if essence is not None:
        for r, request in enumerate(requests):
            essence_text = essence.replace("{}", request.subject)
            essence_split = subject_last_index(tokenizer, essence_text, request.subject)
            essence_rows.append(len(rows_tokens))
            rows_tokens.append(list(tokenizer(essence_text).input_ids)[: essence_split + 1])
            splits.append(essence_split)
            owners.append(r)

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
    as_tensor = lambda values: torch.tensor(values, dtype=torch.long, device=device)
    return Contexts(
        prefix_ids=prefix_ids.to(device),
        prefix_mask=prefix_mask.to(device),
        suffix_ids=suffix_ids.to(device),
        prefix_positions=prefix_positions.to(device),
        suffix_positions=suffix_positions.to(device),
        row_request=as_tensor(owners),
        target_rows=as_tensor(t_rows),
        target_cols=as_tensor(t_cols),
        target_ids=as_tensor(t_ids),
        target_request=as_tensor(t_req),
        essence_rows=as_tensor(essence_rows),
        n_requests=len(requests),
        n_contexts=len(prefixes),
    )


def suffix_length(lm: LoadedModel, request: EditRequest) -> int:
    """Tokens the δ optimisation runs per context of `request`: from the subject's last token to
    the one that predicts the target's last token (the bare prompt's; prefixes do not change it)."""
    prompt_ids, target_ids = encode_target(lm.tokenizer, request.text, request.target_new)
    split = subject_last_index(lm.tokenizer, request.text, request.subject, request.prompt.index("{}"))
    return len(prompt_ids) + len(target_ids) - 1 - split


def length_order(lm: LoadedModel, requests: Sequence[EditRequest]) -> list[int]:
    """Request indices sorted by suffix length (stable). Groups cut from this order pad little:
    on CounterFact's first 100 cases, file-order groups of 32 were 41 % padding."""
    lengths = [suffix_length(lm, request) for request in requests]
    return sorted(range(len(requests)), key=lengths.__getitem__)


# ----------------------------------------------------------------------------- the optimisation


@dataclass(frozen=True)
class ValueSettings:
    """The δ optimisation; each method's hyper-parameters fill these (see rome.py, memit.py)."""

    steps: int
    lr: float
    kl_weight: float
    weight_decay: float
    clamp_factor: float
    early_stop_nll: float
    essence_prompt: str = "{} is a"
    dtype: str = "float32"  # the weights the optimisation runs on (core.models.PRECISIONS)
    # Also stop a request once every token of o* is the most probable one in every context (ENCORE's
    # most-probable early stopping, Gupta et al. 2025): z no more likely than it needs to be.
    early_stop_most_probable: bool = False

    def __post_init__(self):
        if self.steps < 1:
            raise FactpatchError("v_steps must be at least 1")
        if self.lr <= 0 or self.clamp_factor <= 0:
            raise FactpatchError("v_lr and clamp_factor must be positive")
        if self.essence_prompt.count("{}") != 1:
            raise FactpatchError("essence_prompt must contain '{}' once")
        check_precision(self.dtype, "v_dtype")


def value_model(lm: LoadedModel, settings: ValueSettings) -> LoadedModel:
    """The model the δ optimisation runs on: `lm` itself in float32, else a copy in `settings.dtype`.
    Keys, the unedited values and the closed-form update stay float32 (the callers read them from
    `lm`), so only the optimised δ carries the lower precision."""
    return in_precision(lm, settings.dtype)


def states_at_subject(
    lm: LoadedModel, ctx: Contexts, names: list[str], stop_after: str, rows: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Activations `names` (B, d) at every row's subject-last token — or only at `rows` (indices,
    (b, d)) — from one pass over the whole rows (no prefix cache) that ends after `stop_after`.
    For a model other than the one whose prefix cache `ctx` holds: the full-precision keys and
    values beside a bfloat16 optimisation."""
    ids = torch.cat([ctx.prefix_ids, ctx.suffix_ids], dim=1)  # (B, P + S)
    positions = torch.cat([ctx.prefix_positions, ctx.suffix_positions], dim=1)
    mask = ctx.full_mask
    if rows is not None:  # each row attends only to itself: the others need not run
        ids, positions, mask = ids[rows], positions[rows], mask[rows]
    cached = run_with_cache(lm, ids, names, stop_after=stop_after, attention_mask=mask, position_ids=positions)
    column = ctx.prefix_ids.shape[1]  # suffix column 0: the subject's last token
    return {name: cached[name][:, column] for name in names}


@dataclass
class ValueResult:
    delta: torch.Tensor  # (n, d_model) the optimised δ of each request
    steps: list[int]  # Adam steps taken per request
    p_first: list[float]  # geometric-mean P(o*) over the contexts before the first step
    p_last: list[float]  # ... at the final δ
    losses: list[list[dict]] = field(default_factory=list)  # per request, per step: nll, kl, decay, p_target (and most_probable when it stops on it)


def optimize_deltas(
    lm: LoadedModel,
    ctx: Contexts,
    hook_kind: str,
    layer: int,
    resid_pre: torch.Tensor,
    value_norms: torch.Tensor,
    settings: ValueSettings,
    shrink_below: float = 1.0,
) -> ValueResult:
    """δ for every request of `ctx`, added to `hook_kind` at `layer` at the subject's last token.

    resid_pre: (B, S, d_model) the residual stream entering `layer` over the suffixes (from a
    pass with `ctx.forward_kwargs`); value_norms: (n,) ‖v_r‖, the unedited value's norm, which
    scales the weight decay and the clamp. Once fewer than `shrink_below` of the requests in the
    batch are still optimising, the batch is cut to those (their Adam state carried over): a
    request's result does not depend on which others share its batch. The default cuts it as soon
    as any request converges: a cut costs a slice of the prefix cache, far less than a step for
    a finished request (5 % faster than cutting below 0.75 on 100 requests,
    runs/bench/mass_edit_ab-shrink-2026-11-30.jsonl).
    """
    n, device = ctx.n_requests, lm.device
    value_norms = value_norms.float()
    d_model = resid_pre.shape[-1]
    final = torch.zeros((n, d_model), device=device)  # (n, d) δ of every request
    steps = [0] * n
    history: list[list[dict]] = [[] for _ in range(n)]
    p_first = [0.0] * n
    essence_reference: torch.Tensor | None = None  # (n, V) the unedited essence distributions
    active = torch.arange(n, device=device)  # requests in the current batch (global indices)
    delta = torch.zeros((n, d_model), device=device, requires_grad=True)  # (a, d) their δ
    optimizer = torch.optim.Adam([delta], lr=settings.lr)
    model_body = body(lm)
    # One forward per part a step: the rewrite rows, and the essence rows one column wide where
    # they have a pass of their own (Contexts.split_essence).
    parts = [(part, resid_pre[rows, : part.suffix_ids.shape[1]]) for part, rows in ctx.split_essence()]
    rewrite = parts[0][0]
    has_essence = len(ctx.essence_rows) > 0

    def run(part: Contexts, part_resid: torch.Tensor) -> torch.Tensor:
        """The final hidden states (rows, S, d) of `part` with each row's δ added at the subject."""
        at_subject = torch.zeros(part.suffix_ids.shape + (1,), device=device)  # (rows, S, 1)
        at_subject[:, 0] = 1.0

        def add_delta(tensor, *, hook):
            # δ and its optimiser stay fp32 whatever the model's dtype
            return tensor + (at_subject * delta[part.row_request][:, None, :]).to(tensor.dtype)  # (rows, S, d)

        with start_at_layer(lm, layer, part_resid), hooks(lm, {act_name(hook_kind, layer): add_delta}):
            return model_body(input_ids=part.suffix_ids, **part.forward_kwargs(lm)).last_hidden_state

    step = 0
    while True:  # one pass of this loop per batch size
        norms_a = value_norms[active]  # (a,)
        tokens_per_request = torch.bincount(rewrite.target_request, minlength=len(active)).clamp(min=1)  # (a,)
        target_length = tokens_per_request // rewrite.n_contexts  # (a,) |o*_r|
        done = torch.zeros(len(active), dtype=torch.bool, device=device)
        shrink = False
        with frozen(lm.model), gradient_attention(lm):  # set up once a batch size, not every pass
            while True:
                hidden = [run(part, part_resid) for part, part_resid in parts]  # per part (rows, S, d)
                read = hidden[0][rewrite.target_rows, rewrite.target_cols]  # (N_t, d)
                if has_essence:  # the essence rows' pass, or the rewrite pass where they share it
                    read = torch.cat([read, hidden[-1][parts[-1][0].essence_rows, 0]])  # (N_t + a, d)
                log_probs = torch.log_softmax(unembed(lm, read).float(), dim=-1)  # (N_t + n_e, V)
                n_t = len(rewrite.target_ids)
                token_lp = log_probs[:n_t].gather(1, rewrite.target_ids[:, None]).squeeze(1)  # (N_t,)
                nll = -torch.zeros(len(active), device=device).index_add(0, rewrite.target_request, token_lp)
                nll = nll / tokens_per_request  # (a,)
                if has_essence:
                    essence = log_probs[n_t:]  # (a, V)
                    if essence_reference is None:
                        essence_reference = essence.detach()  # δ = 0 on the first pass: the unedited model
                    kl = torch.sum(essence.exp() * (essence - essence_reference[active]), dim=-1)  # (a,)
                else:
                    kl = torch.zeros(len(active), device=device)
                decay = settings.weight_decay * delta.norm(dim=-1) / norms_a**2  # (a,)
                loss = nll + settings.kl_weight * kl + decay  # (a,)
                p_target = torch.exp(-nll.detach() * target_length)  # geometric mean over contexts
                columns = {"nll": nll, "kl": kl, "decay": decay, "p_target": p_target}
                if settings.early_stop_most_probable:  # an argmax over (N_t, V) a step: only when asked
                    # o* most probable: every target token the argmax at its position, in every context
                    missed = (log_probs[:n_t].detach().argmax(dim=-1) != rewrite.target_ids).float()  # (N_t,)
                    won = torch.zeros(len(active), device=device).index_add(0, rewrite.target_request, missed) == 0  # (a,)
                    columns["most_probable"] = won
                rows = torch.stack([c.detach().float() for c in columns.values()]).T.tolist()  # (a, columns)
                for i in torch.nonzero(~done).flatten().tolist():
                    r = int(active[i])
                    record = dict(zip(columns, rows[i]))
                    if "most_probable" in record:
                        record["most_probable"] = bool(record["most_probable"])
                    history[r].append(record)
                    if step == 0:
                        p_first[r] = rows[i][3]
                done |= nll.detach() < settings.early_stop_nll
                if settings.early_stop_most_probable:
                    done |= won
                if bool(done.all()) or step == settings.steps:
                    break
                frozen_delta = delta.detach()[done].clone()
                optimizer.zero_grad()
                loss.sum().backward()  # requests are independent: the sum's gradient is each one's own
                optimizer.step()
                with torch.no_grad():
                    norms = delta.norm(dim=-1, keepdim=True)  # (a, 1)
                    delta.mul_(torch.clamp(settings.clamp_factor * norms_a[:, None] / norms.clamp(min=1e-12), max=1.0))
                    delta[done] = frozen_delta
                step += 1
                for i in torch.nonzero(~done).flatten().tolist():
                    steps[int(active[i])] = step
                if int((~done).sum()) < shrink_below * len(active):
                    shrink = True
                    break
        final[active] = delta.detach()
        if not shrink:
            break
        # Cut the batch to the requests still optimising, carrying their Adam state over.
        keep = torch.nonzero(~done).flatten()  # local indices, ascending
        state = optimizer.state[delta]
        delta = delta.detach()[keep].clone().requires_grad_(True)
        optimizer = torch.optim.Adam([delta], lr=settings.lr)
        optimizer.state[delta] = {"step": state["step"].clone(), "exp_avg": state["exp_avg"][keep].clone(),
                                  "exp_avg_sq": state["exp_avg_sq"][keep].clone()}
        parts = [(part_kept, part_resid[rows_kept])
                 for (part, part_resid) in parts for part_kept, rows_kept in [part.select(keep)]]
        rewrite = parts[0][0]
        active = active[keep]
    p_last = [h[-1]["p_target"] for h in history]
    return ValueResult(final, steps, p_first, p_last, history)
