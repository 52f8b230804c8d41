"""Causal tracing: where does a model store a fact? (Meng et al. 2022, §2, Figs 1–3)

For a prompt p = (subject s, relation r) whose next token o is the object:

* clean run — the model as it is: P(o), and every hidden state h_i^(l) (token i, layer l);
* corrupted run — ε ~ N(0, ν²) added to the input embedding of every subject token, ν = scale × σ
  (σ: the standard deviation of the model's token embeddings over a body of text); one noise
  draw per sample, P*(o) = the mean over samples;
* corrupted-with-restoration — the corrupted run with one state put back to its clean value:
  `hidden` restores the residual stream after block l at token i; `mlp` and `attn` restore the
  MLP (attention) output at token i in a window of layers around l (clamped at the ends).
  Indirect effect IE = P_restored(o) − P*(o); total effect TE = P(o) − P*(o).
* severed paths (Fig 3) — restore h_i^(l) but hold the MLP (attention) outputs of every later
  layer at token i at their corrupted values.

P(o) is the probability of the object's first token, the one the model has to choose next.

Speed. A restoration at (token i, layer l) changes nothing before layer l and nothing at tokens
before i, so the corrupted run is cached once — its residual stream entering every block, the MLP
and attention outputs, and its attention keys and values. A restoration then starts at its first
changed block from the cached stream (`hooks.start_at_layer`) and computes only the positions
from its first restored token on, attending to the cached keys and values of the positions
before. Restorations that start at the same block are batched together across kinds and samples
(`_schedule` groups them so each pass is neither tiny nor padded with wasted positions), and the
logits are read at the last position only.

Three more exact savings. A window's first block changes only the restored positions, where its
new output follows from cached states (`_window_entry`), so an `mlp`/`attn` restoration starts
one block later. Windows clamped at layer 0 run the same edits up to the smallest one's end and
share one trunk pass up to there (`_shared_trunks`). Only the last position of the last block
reaches the logits, so that block's MLP runs there alone.

One generic routine (`restored_probs`) runs any list of `Restore` requests; the kinds are small
setters that say which hook point gets which clean (or corrupted) value.

Result axes: `scores[token][layer]` — P(o) with that state restored, averaged over samples.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, field
from typing import Sequence

import torch

from ..core.errors import FactpatchError
from ..core.hooks import act_name, body, cache_kwarg, hooks, returned_cache, run_with_cache, start_at_layer, unembed
from ..core.models import LoadedModel
from ..core.tokens import encode_target, subject_token_range
from .settings import HOOK_KIND, KINDS, SEVERABLE, NoiseSettings, Progress, layer_window

logger = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- one prompt: clean and corrupted runs


@dataclass(frozen=True)
class Restore:
    """One corrupted-with-restoration run (repeated for every noise sample).

    kind `hidden`: the residual stream after block `layer` at `tokens` is put back to its clean value;
    `mlp` / `attn`: that output at `tokens` in every layer of the window around `layer`.
    `sever`: additionally hold that output of every layer after `layer` at `tokens` at its
    corrupted value (only with kind `hidden`)."""

    kind: str
    layer: int
    tokens: tuple[int, ...]
    sever: str | None = None


@dataclass
class Prepared:
    """Everything the restorations of one prompt need: the clean states and the cached corrupted run.

    Tensors: clean[name] [1, pos, d_model]; corrupted_resid[b] [sample, pos, d_model] is the stream
    entering block b (b = n_layers: after the last block); corrupted_resid_mid[b] the stream
    between block b's attention and MLP (None for parallel blocks); corrupted[name]
    [sample, pos, d_model]; kv[l] = (keys, values) [sample, head, pos, d_head] of the corrupted
    run, or None."""

    input_ids: torch.Tensor  # [1, pos]
    subject_range: tuple[int, int]
    target_id: int
    sigma: float
    window: int
    clean: dict[str, torch.Tensor]
    corrupted_resid: list[torch.Tensor]
    corrupted_resid_mid: list[torch.Tensor] | None
    corrupted: dict[str, torch.Tensor]
    kv: list[tuple[torch.Tensor, torch.Tensor]] | None
    p_clean: float
    p_corrupted_samples: torch.Tensor  # [sample]
    clean_top_id: int
    p_top: float  # the clean probability of the model's own top token

    @property
    def n_tokens(self) -> int:
        return int(self.input_ids.shape[1])

    @property
    def samples(self) -> int:
        return int(self.p_corrupted_samples.shape[0])

    @property
    def p_corrupted(self) -> float:
        return float(self.p_corrupted_samples.mean())


def _target_probs(lm: LoadedModel, last_hidden: torch.Tensor, target_id: int) -> torch.Tensor:
    """P(target) from final hidden states at the last position [batch, d_model] -> [batch].

    In large chunks (the vocabulary product runs slowly on small ones), into one reused logits
    buffer with an in-place softmax (a fresh buffer of this size costs more in page faults than
    the softmax itself)."""
    vocab = lm.module(lm.adapter.unembed).weight.shape[0]
    buffer = last_hidden.new_empty((min(UNEMBED_ROWS, len(last_hidden)), vocab))
    probs = [last_hidden.new_empty(0)]
    for chunk in last_hidden.split(UNEMBED_ROWS):
        logits = unembed(lm, chunk, out=buffer[: len(chunk)])
        logits -= logits.amax(dim=-1, keepdim=True)
        target = logits[:, target_id].exp()
        probs.append(target / logits.exp_().sum(dim=-1))
    return torch.cat(probs).float()


def _saver(store: dict[str, torch.Tensor]):
    def save(tensor, *, hook):
        store[hook] = tensor.detach()

    return save


def _extract_kv(cache, n_layers: int, n_tokens: int) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
    layers = getattr(cache, "layers", None)
    if layers is None or len(layers) != n_layers:
        return None
    kv = []
    for layer in layers:
        keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
        if not isinstance(keys, torch.Tensor) or keys.dim() != 4 or keys.shape[-2] != n_tokens:
            return None  # e.g. a sliding window shorter than the prompt: recompute whole prompts instead
        kv.append((keys.detach(), values.detach()))
    return kv


@torch.no_grad()
def prepare(
    lm: LoadedModel,
    prompt: str,
    subject: str,
    target: str | None = None,
    sigma: float = 1.0,
    noise: NoiseSettings = NoiseSettings(),
    window: int = 10,
) -> Prepared:
    """Tokenise, run the clean pass and the corrupted pass (all samples in one batch), cache both."""
    if not prompt.strip():
        raise FactpatchError("prompt is empty")
    if not subject.strip():
        raise FactpatchError("subject is empty")
    if subject not in prompt:
        raise FactpatchError(f"subject {subject!r} is not in the prompt {prompt!r}")
    if not (math.isfinite(sigma) and sigma >= 0):
        raise FactpatchError(f"σ must be a finite number ≥ 0, got {sigma!r}")
    tokenizer = lm.tokenizer
    ids = torch.tensor([tokenizer(prompt).input_ids], dtype=torch.long, device=lm.device)
    start, end = subject_token_range(tokenizer, prompt, subject)
    L, T, S = lm.n_layers, int(ids.shape[1]), noise.samples

    names = {
        **{act_name("resid_post", l): None for l in range(L)},
        **{act_name("mlp_out", l): None for l in range(L)},
        **{act_name("attn_out", l): None for l in range(L)},
    }
    clean: dict[str, torch.Tensor] = {}
    with hooks(lm, {name: _saver(clean) for name in names}):
        out = body(lm)(input_ids=ids, use_cache=False)
    logits = unembed(lm, out.last_hidden_state[:, -1]).float()
    probs = torch.softmax(logits, dim=-1)[0]
    top_id = int(probs.argmax())
    if target is None:
        target_id = top_id
    else:
        _, target_ids = encode_target(tokenizer, prompt, target)
        target_id = int(target_ids[0])
    p_clean = float(probs[target_id])

    generator = torch.Generator(device="cpu").manual_seed(int(noise.seed))
    epsilon = torch.randn((S, end - start, out.last_hidden_state.shape[-1]), generator=generator)
    epsilon = (epsilon * (noise.scale * sigma)).to(lm.device, out.last_hidden_state.dtype)

    corrupted: dict[str, torch.Tensor] = {}

    def add_noise(tensor, *, hook):
        noisy = tensor.clone()
        noisy[:, start:end] += epsilon.to(noisy.dtype)
        corrupted[hook] = noisy.detach()
        return noisy

    fns = {name: _saver(corrupted) for name in names}
    fns.update({act_name("resid_pre", l): _saver(corrupted) for l in range(1, L)})
    sequential = lm.adapter.mlp_sublayer is not None
    if sequential:
        fns.update({act_name("resid_mid", l): _saver(corrupted) for l in range(L)})
    fns[act_name("resid_pre", 0)] = add_noise
    with hooks(lm, fns):
        out = body(lm)(input_ids=ids.expand(S, T), use_cache=True)
    p_corrupted = _target_probs(lm, out.last_hidden_state[:, -1], target_id)
    kv = _extract_kv(returned_cache(out), L, T)
    resid = [corrupted.pop(act_name("resid_pre", l)) for l in range(L)] + [corrupted[act_name("resid_post", L - 1)]]
    resid_mid = [corrupted.pop(act_name("resid_mid", l)) for l in range(L)] if sequential else None
    return Prepared(
        input_ids=ids,
        subject_range=(start, end),
        target_id=target_id,
        sigma=sigma,
        window=window,
        clean=clean,
        corrupted_resid=resid,
        corrupted_resid_mid=resid_mid,
        corrupted={n: t for n, t in corrupted.items() if not n.endswith("hook_resid_post")},
        kv=kv,
        p_clean=p_clean,
        p_corrupted_samples=p_corrupted,
        clean_top_id=top_id,
        p_top=float(probs[top_id]),
    )


# ----------------------------------------------------------------------------- the generic patch routine


def _start_layer(restore: Restore, n_layers: int, window: int, sequential: bool = False) -> int:
    """The first block a restoration's pass has to compute.

    In a window's first block only the restored positions change (the block's inputs are the
    corrupted run's), and with attention and MLP in sequence their new output follows from the
    cached corrupted states without running the block (`_window_entry`): the pass starts one
    block later, as a hidden-state restoration at that block does."""
    if restore.kind == "hidden":
        return restore.layer + 1
    start = layer_window(restore.layer, n_layers, window).start
    return start + 1 if sequential else start


def _window_entry(lm: LoadedModel, prep: Prepared, layer: int, kind: str, at: list[tuple[int, int]]) -> torch.Tensor:
    """The stream after block `layer` at positions `at` = [(token, sample)] when `kind`'s output is
    restored there: [len(at), d_model].

    mlp:  resid_post = resid_mid* + post(mlp_out)                     (post: e.g. Gemma's post-norm)
    attn: resid_mid = resid_pre* + post(attn_out); resid_post = resid_mid + mlp_sublayer(resid_mid)
    with * the cached corrupted run and the outputs from the clean run."""
    adapter, block = lm.adapter, lm.module(lm.adapter.block(layer))
    tokens = torch.tensor([t for t, _ in at], device=lm.device)
    samples = torch.tensor([s for _, s in at], device=lm.device)

    def through(names: Sequence[str], x: torch.Tensor) -> torch.Tensor:
        for name in names:
            x = block.get_submodule(name)(x)
        return x

    sublayer = adapter.mlp_sublayer
    assert sublayer is not None and prep.corrupted_resid_mid is not None
    if kind == "mlp":
        after_mlp = sublayer[sublayer.index(adapter.mlp) + 1 :]
        restored = through(after_mlp, prep.clean[act_name("mlp_out", layer)][:, tokens])[0]
        return prep.corrupted_resid_mid[layer][samples, tokens] + restored
    restored = through(adapter.attn_post, prep.clean[act_name("attn_out", layer)][:, tokens])[0]
    mid = prep.corrupted_resid[layer][samples, tokens] + restored
    return mid + through(sublayer, mid[None])[0]


@dataclass
class _Edits:
    """Per hook point: which (row, position) gets which value — gathered, then set in one go."""

    rows: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)  # relative to the call's first position
    sources: list[int] = field(default_factory=list)  # -1: the clean run; s >= 0: corrupted sample s
    tokens: list[int] = field(default_factory=list)  # absolute token index

    def add(self, row: int, token: int, first: int, source: int) -> None:
        self.rows.append(row)
        self.positions.append(token - first)
        self.sources.append(source)
        self.tokens.append(token)

    def at_only(self, token: int) -> "_Edits":
        """The entries at `token`, moved to position 0 (for a module that sees that token alone)."""
        kept = _Edits()
        for row, source, at in zip(self.rows, self.sources, self.tokens):
            if at == token:
                kept.add(row, token, token, source)
        return kept

    def values(self, clean: torch.Tensor, corrupted: torch.Tensor | None) -> torch.Tensor:
        tokens = torch.tensor(self.tokens, device=clean.device)
        sources = torch.tensor(self.sources, device=clean.device)
        values = clean[0, tokens]
        if corrupted is not None and bool((sources >= 0).any()):
            from_corrupted = corrupted[sources.clamp(min=0), tokens]
            values = torch.where((sources >= 0)[:, None], from_corrupted, values)
        return values


@contextlib.contextmanager
def _last_position_only(module: torch.nn.Module):
    """Inside the block, a position-wise module (the last block's MLP) runs on the last position
    alone; its output is broadcast back over all positions, of which only the last is read."""
    length = 0

    def take_last(mod, args):
        nonlocal length
        length = args[0].shape[-2]
        # contiguous: a strided slice would send every product to a slow batched-matmul path
        return (args[0][..., -1:, :].contiguous(), *args[1:])

    def broadcast(mod, args, output):
        return output.expand(*output.shape[:-2], length, output.shape[-1])

    handles = [module.register_forward_pre_hook(take_last), module.register_forward_hook(broadcast)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _setter(rows: list[int], positions: list[int], values: torch.Tensor):
    """Hook fn that writes `values` [n, d_model] at (rows[k], positions[k]) of an activation."""
    rows_t = torch.tensor(rows, device=values.device)
    positions_t = torch.tensor(positions, device=values.device)

    def put(tensor, *, hook):
        tensor[rows_t, positions_t] = values.to(tensor.dtype)  # in place: a module's fresh output
        return tensor

    return put


@torch.no_grad()
def _run(
    lm: LoadedModel,
    prep: Prepared,
    start: int,
    first: int,
    rows: Sequence[tuple[Restore, int]],
    entries: Sequence[torch.Tensor | None] | None = None,
    stop: int | None = None,
) -> torch.Tensor:
    """Run restorations (restore, sample) that all begin at block `start`, computing positions
    `first`.. only (earlier positions come from the cached corrupted keys and values at every
    layer). Returns the final hidden states at the last position [len(rows), d_model], or with
    `stop` the stream entering block `stop` [len(rows), pos - first, d_model].

    `entries[row]`, where given, is that row's stream entering block `start` from its restored
    token on [pos, d_model] (computed by a shared trunk pass); it replaces the entry state."""
    L = lm.n_layers
    samples = torch.tensor([s for _, s in rows], device=lm.device)
    resid = prep.corrupted_resid[start][samples, first:].clone()  # [row, pos - first, d_model]
    edits: dict[str, _Edits] = {}
    hidden_rows, hidden_pos, hidden_tokens = [], [], []
    folded: dict[str, tuple[list[int], list[int], list[tuple[int, int]]]] = {"mlp": ([], [], []), "attn": ([], [], [])}
    for row, (restore, sample) in enumerate(rows):
        entry = entries[row] if entries is not None else None
        if entry is not None:
            resid[row, resid.shape[1] - entry.shape[0] :] = entry
        if restore.kind == "hidden":
            for token in restore.tokens:
                hidden_rows.append(row)
                hidden_pos.append(token - first)
                hidden_tokens.append(token)
            for layer in range(restore.layer + 1, L) if restore.sever else ():
                name = act_name(HOOK_KIND[restore.sever], layer)
                for token in restore.tokens:
                    edits.setdefault(name, _Edits()).add(row, token, first, sample)
        else:
            window = layer_window(restore.layer, L, prep.window)
            if window.start < start and entry is None:  # the first block is folded into the entry state
                entry_rows, entry_pos, entry_at = folded[restore.kind]
                for token in restore.tokens:
                    entry_rows.append(row)
                    entry_pos.append(token - first)
                    entry_at.append((token, sample))
            for layer in range(max(window.start, start), window.stop):
                name = act_name(HOOK_KIND[restore.kind], layer)
                for token in restore.tokens:
                    edits.setdefault(name, _Edits()).add(row, token, first, -1)
    if hidden_rows:
        clean = prep.clean[act_name("resid_post", start - 1)][0]
        resid[hidden_rows, hidden_pos] = clean[hidden_tokens]
    for kind, (entry_rows, entry_pos, entry_at) in folded.items():
        if entry_rows:
            resid[entry_rows, entry_pos] = _window_entry(lm, prep, start - 1, kind, entry_at)
    # Only the last position of the last block reaches the logits: its MLP runs there alone.
    last_mlp = start < L and stop is None
    if last_mlp and act_name("mlp_out", L - 1) in edits:
        kept = edits.pop(act_name("mlp_out", L - 1)).at_only(prep.n_tokens - 1)
        if kept.rows:
            edits[act_name("mlp_out", L - 1)] = kept

    fns = {
        name: _setter(e.rows, e.positions, e.values(prep.clean[name], prep.corrupted.get(name)))
        for name, e in edits.items()
    }
    kwargs = {}
    if first > 0:
        from transformers import DynamicCache

        assert prep.kv is not None
        prefix = [(k[samples, :, :first], v[samples, :, :first]) for k, v in prep.kv]
        kwargs[cache_kwarg(body(lm))] = DynamicCache(prefix, config=lm.model.config)
        kwargs["use_cache"] = True
    else:
        kwargs["use_cache"] = False
    ids = prep.input_ids[:, first:].expand(len(rows), -1)
    with contextlib.ExitStack() as stack:
        if start == 0:
            fns[act_name("resid_pre", 0)] = lambda tensor, *, hook: resid
        else:
            stack.enter_context(start_at_layer(lm, start, resid))
        stack.enter_context(hooks(lm, fns))
        if last_mlp:
            stack.enter_context(_last_position_only(lm.module(f"{lm.adapter.block(L - 1)}.{lm.adapter.mlp}")))
        if stop is not None:
            name = act_name("resid_post", stop - 1)
            return run_with_cache(lm, ids, [name], stop_after=name, **kwargs)[name]
        out = body(lm)(input_ids=ids, **kwargs)
    return out.last_hidden_state[:, -1]


# Cost model for grouping restorations into passes, in token positions per block: a pass costs
# about CALL_OVERHEAD positions' worth of work on top of rows × positions (Python and kernel
# overhead dominate small passes on a CPU); passes are capped at MAX_POSITIONS rows × positions.
CALL_OVERHEAD = 48
MAX_POSITIONS = 768
UNEMBED_ROWS = 1024


@dataclass
class _Trunks:
    """Restorations (indices into the list) that share a trunk pass from block `start` to `branch`."""

    groups: list[list[int]]
    start: int
    branch: int


def _shared_trunks(restores: Sequence[Restore], n_layers: int, window: int, sequential: bool) -> _Trunks:
    """Window restorations clamped at the first layer, [0, e) with e ≥ the window of layer 0's end,
    run the same blocks with the same edits up to that end (`branch`): restorations of one kind
    and tokens share one trunk pass up to there and continue from its result."""
    start = _start_layer(Restore("mlp", 0, (0,)), n_layers, window, sequential)
    branch = layer_window(0, n_layers, window).stop
    groups: dict[tuple[str, tuple[int, ...]], list[int]] = {}
    for j, restore in enumerate(restores):
        if restore.kind != "hidden" and layer_window(restore.layer, n_layers, window).start == 0:
            groups.setdefault((restore.kind, restore.tokens), []).append(j)
    shared = [js for js in groups.values() if len(js) > 1] if branch > start else []
    return _Trunks(shared, start, branch)


def _schedule(firsts: list[int], rows_each: int, n_tokens: int, suffix: bool) -> list[tuple[int, list[int]]]:
    """Split restorations with first restored tokens `firsts` (each run for `rows_each` samples)
    into passes [(first position computed, indices)] minimising the modelled cost."""
    order = sorted(range(len(firsts)), key=lambda j: firsts[j])
    if not suffix:
        groups = [(0, order)]
    else:
        # Dynamic programme over contiguous runs of the sorted list: a run computes positions from
        # its smallest first token, so grouping trades wasted positions for fewer passes.
        n = len(order)
        best = [0.0] + [math.inf] * n
        cut = [0] * (n + 1)
        for end in range(1, n + 1):
            for begin in range(end):
                width = n_tokens - firsts[order[begin]]
                rows = (end - begin) * rows_each
                passes = math.ceil(rows * width / MAX_POSITIONS)
                cost = best[begin] + rows * width + CALL_OVERHEAD * passes
                if cost < best[end]:
                    best[end], cut[end] = cost, begin
        groups, end = [], n
        while end > 0:
            begin = cut[end]
            groups.append((firsts[order[begin]], order[begin:end]))
            end = begin
        groups.reverse()
    passes = []
    for first, members in groups:
        per_pass = max(1, MAX_POSITIONS // max(1, (n_tokens - first) * rows_each))
        for k in range(0, len(members), per_pass):
            passes.append((first, members[k : k + per_pass]))
    return passes


def progress_bar(progress: Progress, **kwargs):
    if callable(progress):
        return progress(**kwargs)
    from tqdm.auto import tqdm

    return tqdm(disable=not progress, **kwargs)


@torch.no_grad()
def restored_probs(
    lm: LoadedModel,
    prep: Prepared,
    restores: Sequence[Restore],
    suffix: bool = True,
    progress: Progress = False,
) -> torch.Tensor:
    """P(target) with each restoration applied, for every noise sample: [restore, sample].

    `suffix=False` recomputes whole prompts (slower; the same numbers up to rounding)."""
    L, T, S = lm.n_layers, prep.n_tokens, prep.samples
    for restore in restores:
        if restore.kind not in KINDS:
            raise FactpatchError(f"unknown kind {restore.kind!r}: use {', '.join(KINDS)}")
        if restore.sever is not None and (restore.kind != "hidden" or restore.sever not in SEVERABLE):
            raise FactpatchError("severing applies to hidden-state restorations, of mlp or attn")
        lm.check_layer(restore.layer)
        if not restore.tokens or not all(0 <= t < T for t in restore.tokens):
            raise FactpatchError(f"token indices {restore.tokens} out of range 0..{T - 1}")
    suffix = suffix and prep.kv is not None
    sequential = prep.corrupted_resid_mid is not None
    starts = [_start_layer(restore, L, prep.window, sequential) for restore in restores]
    trunks = _shared_trunks(restores, L, prep.window, sequential)
    for members in trunks.groups:
        for j in members:
            starts[j] = trunks.branch
    trunk_plan = _schedule([min(restores[js[0]].tokens) for js in trunks.groups], S, T, suffix)
    by_start: dict[int, list[int]] = {}
    for j, start in enumerate(starts):
        by_start.setdefault(start, []).append(j)
    plan = []
    for start, members in sorted(by_start.items()):
        firsts = [min(restores[j].tokens) for j in members]
        for first, chosen in _schedule(firsts, S, T, suffix):
            plan.append((start, first, [members[k] for k in chosen]))
    final = None  # [restore, sample, d_model]
    entries: dict[int, torch.Tensor] = {}  # restore -> its stream entering the branch [sample, pos, d_model]
    trunk_blocks = trunks.branch - trunks.start
    total = sum((L - start + 1) * len(js) * S * (T - first) for start, first, js in plan)
    total += sum(trunk_blocks * len(ks) * S * (T - first) for first, ks in trunk_plan)
    with progress_bar(progress, total=total, desc="tracing", unit="pos", leave=False) as bar:
        for first, ks in trunk_plan:
            shared = [restores[trunks.groups[k][0]] for k in ks]
            rows = [(restore, s) for restore in shared for s in range(S)]
            out = _run(lm, prep, trunks.start, first, rows, stop=trunks.branch).view(len(ks), S, T - first, -1)
            for i, (k, restore) in enumerate(zip(ks, shared)):
                for j in trunks.groups[k]:
                    entries[j] = out[i, :, min(restore.tokens) - first :]
            bar.update(trunk_blocks * len(ks) * S * (T - first))
        for start, first, js in plan:
            rows = [(restores[j], s) for j in js for s in range(S)]
            row_entries = [entries[j][s] if j in entries else None for j in js for s in range(S)]
            hidden = _run(lm, prep, start, first, rows, row_entries if entries else None)
            if final is None:
                final = hidden.new_empty((len(restores), S, hidden.shape[-1]))
            final[js] = hidden.view(len(js), S, -1)
            bar.update((L - start + 1) * len(js) * S * (T - first))
    if final is None:
        return torch.empty((0, S), dtype=torch.float32)
    return _target_probs(lm, final.view(-1, final.shape[-1]), prep.target_id).view(len(restores), S).cpu()
