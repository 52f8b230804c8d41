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
(`schedule.plan_passes` groups them so each pass is neither tiny nor padded with wasted positions), and the
logits are read at the last position only.

Three more exact savings. A window's first block changes only the restored positions, where its
new output follows from cached states (`core.blocks`), so an `mlp`/`attn` restoration starts
one block later. Windows clamped at layer 0 run the same edits up to the smallest one's end and
share one trunk pass up to there (`schedule.shared_trunks`). Only the last position of the last block
reaches the logits, so that block's MLP runs there alone.

One generic routine (`restored_probs`) runs any list of `Restore` requests; the kinds are small
setters that say which hook point gets which clean (or corrupted) value.

Result axes: `scores[token][layer]` — P(o) with that state restored, averaged over samples.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from ..core.attention import packed_attention
from ..core.blocks import (
    block_output_from_attn_out,
    block_output_from_mlp_out,
    cached_keys_values,
    prefix_cache_kwargs,
)
from ..core.errors import FactpatchError
from ..core.hooks import (
    act_name,
    body,
    hooks,
    returned_cache,
    run_with_cache,
    start_at_layer,
    unembed,
)
from ..core.models import LoadedModel
from ..core.tokens import encode_target, subject_token_range
from .schedule import Restore, plan
from .settings import HOOK_KIND, KINDS, SEVERABLE, NoiseSettings, Progress, layer_window

logger = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- one prompt: clean and corrupted runs


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


def check_fact(prompt: str, subject: str, target: str | None = None) -> None:
    """What a traceable fact needs, checked before a model is loaded: a prompt that contains its
    subject, and a target (None: the model's own top token) that is not blank."""
    if not prompt.strip():
        raise FactpatchError("prompt is empty")
    if not subject.strip():
        raise FactpatchError("subject is empty")
    if subject not in prompt:
        raise FactpatchError(f"subject {subject!r} is not in the prompt {prompt!r}")
    if target is not None and not target.strip():
        raise FactpatchError("target is empty")


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
    check_fact(prompt, subject, target)
    if not (math.isfinite(sigma) and sigma > 0):  # ν = scale × σ: no noise, no corrupted run
        raise FactpatchError(f"σ must be a finite number greater than 0, got {sigma!r}")
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
    if lm.adapter.sequential:
        fns.update({act_name("resid_mid", l): _saver(corrupted) for l in range(L)})
    fns[act_name("resid_pre", 0)] = add_noise
    with hooks(lm, fns):
        out = body(lm)(input_ids=ids.expand(S, T), use_cache=True)
    p_corrupted = _target_probs(lm, out.last_hidden_state[:, -1], target_id)
    kv = cached_keys_values(returned_cache(out), L, T)
    resid = [corrupted.pop(act_name("resid_pre", l)) for l in range(L)] + [corrupted[act_name("resid_post", L - 1)]]
    resid_mid = [corrupted.pop(act_name("resid_mid", l)) for l in range(L)] if lm.adapter.sequential else None
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


# ----------------------------------------------------------------------------- one pass


def _window_entry(lm: LoadedModel, prep: Prepared, layer: int, kind: str, at: Sequence[tuple[int, int]]) -> torch.Tensor:
    """The stream after block `layer` at `at` = [(token, sample)] when `kind`'s output is restored
    there, from the cached corrupted states and the clean output: [len(at), d_model]."""
    tokens = torch.tensor([t for t, _ in at], device=lm.device)
    samples = torch.tensor([s for _, s in at], device=lm.device)
    if kind == "mlp":
        resid_mid = prep.corrupted_resid_mid[layer][samples, tokens]  # type: ignore[index]
        return block_output_from_mlp_out(lm, layer, resid_mid[None], prep.clean[act_name("mlp_out", layer)][:, tokens])[0]
    resid_pre = prep.corrupted_resid[layer][samples, tokens]
    return block_output_from_attn_out(lm, layer, resid_pre[None], prep.clean[act_name("attn_out", layer)][:, tokens])[0]


@dataclass
class _Edits:
    """What one hook point's setter writes: at each (row, token) the clean run's value (source -1)
    or corrupted sample `source`'s. Positions are counted from `first`, the call's first position."""

    first: int
    at: list[tuple[int, int, int]] = field(default_factory=list)  # (row, token, source)

    def at_only(self, token: int) -> _Edits:
        """The entries at `token`, moved to position 0 (for a module that sees that token alone)."""
        return _Edits(token, [entry for entry in self.at if entry[1] == token])

    def setter(self, clean: torch.Tensor, corrupted: torch.Tensor | None):
        """Hook fn that writes the values [n, d_model] at their (row, position) of an activation."""
        rows, tokens, sources = (list(column) for column in zip(*self.at))
        rows_t = torch.tensor(rows, device=clean.device)
        positions_t = torch.tensor([token - self.first for token in tokens], device=clean.device)
        tokens_t, sources_t = torch.tensor(tokens, device=clean.device), torch.tensor(sources, device=clean.device)
        values = clean[0, tokens_t]
        if corrupted is not None and bool((sources_t >= 0).any()):
            from_corrupted = corrupted[sources_t.clamp(min=0), tokens_t]
            values = torch.where((sources_t >= 0)[:, None], from_corrupted, values)

        def put(tensor, *, hook):
            tensor[rows_t, positions_t] = values.to(tensor.dtype)  # in place: a module's fresh output
            return tensor

        return put


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


Row = tuple[Restore, int]  # one restoration for one noise sample


def _entry_stream(
    lm: LoadedModel, prep: Prepared, start: int, first: int, rows: Sequence[Row],
    entries: Sequence[torch.Tensor | None] | None,
) -> torch.Tensor:
    """The stream entering block `start` at positions `first`.. for each row [row, pos - first, d_model]:
    the corrupted run's, with a trunk pass's result where `entries` gives one, the clean state at
    a hidden-state restoration's tokens, and, for a window whose first block comes before `start`,
    that block's output with the restored output put in (`_window_entry`)."""
    samples = torch.tensor([s for _, s in rows], device=lm.device)
    resid = prep.corrupted_resid[start][samples, first:].clone()
    hidden: list[tuple[int, int]] = []  # (row, token)
    folded: dict[str, list[tuple[int, int, int]]] = {"mlp": [], "attn": []}  # kind -> (row, token, sample)
    for row, (restore, sample) in enumerate(rows):
        entry = entries[row] if entries is not None else None
        if entry is not None:
            resid[row, resid.shape[1] - entry.shape[0] :] = entry
        elif restore.kind == "hidden":
            hidden += [(row, token) for token in restore.tokens]
        elif layer_window(restore.layer, lm.n_layers, prep.window).start < start:
            folded[restore.kind] += [(row, token, sample) for token in restore.tokens]
    if hidden:
        clean = prep.clean[act_name("resid_post", start - 1)][0]
        resid[[r for r, _ in hidden], [t - first for _, t in hidden]] = clean[[t for _, t in hidden]]
    for kind, at in folded.items():
        if at:
            restored = _window_entry(lm, prep, start - 1, kind, [(t, s) for _, t, s in at])
            resid[[r for r, _, _ in at], [t - first for _, t, _ in at]] = restored
    return resid


def _edits_in_pass(n_layers: int, window: int, start: int, first: int, rows: Sequence[Row]) -> dict[str, _Edits]:
    """Per hook point at block `start` or later, what the pass sets there: the window's outputs
    from the clean run, severed outputs held at the row's corrupted sample."""
    edits: dict[str, _Edits] = {}

    def add(kind: str, layers: range, row: int, tokens: tuple[int, ...], source: int) -> None:
        for layer in layers:
            name = act_name(HOOK_KIND[kind], layer)
            edits.setdefault(name, _Edits(first)).at.extend((row, token, source) for token in tokens)

    for row, (restore, sample) in enumerate(rows):
        if restore.kind != "hidden":
            layers = layer_window(restore.layer, n_layers, window)
            add(restore.kind, range(max(layers.start, start), layers.stop), row, restore.tokens, -1)
        elif restore.sever:
            add(restore.sever, range(restore.layer + 1, n_layers), row, restore.tokens, sample)
    return edits


@torch.no_grad()
def _run(
    lm: LoadedModel,
    prep: Prepared,
    start: int,
    first: int,
    rows: Sequence[Row],
    entries: Sequence[torch.Tensor | None] | None = None,
    stop: int | None = None,
) -> torch.Tensor:
    """Run restorations `rows` that all begin at block `start`, computing positions `first`.. only
    (earlier positions come from the cached corrupted keys and values at every layer). Returns
    the final hidden states at the last position [len(rows), d_model], or with `stop` the stream
    entering block `stop` [len(rows), pos - first, d_model].

    `entries[row]`, where given, is that row's stream entering block `start` from its restored
    token on [pos, d_model] (computed by a shared trunk pass); it replaces the entry state."""
    L = lm.n_layers
    resid = _entry_stream(lm, prep, start, first, rows, entries)
    edits = _edits_in_pass(L, prep.window, start, first, rows)
    # Only the last position of the last block reaches the logits: its MLP runs there alone.
    last_mlp = start < L and stop is None
    last_mlp_out = act_name("mlp_out", L - 1)
    if last_mlp and last_mlp_out in edits:
        kept = edits.pop(last_mlp_out).at_only(prep.n_tokens - 1)
        if kept.at:
            edits[last_mlp_out] = kept
    fns = {name: e.setter(prep.clean[name], prep.corrupted.get(name)) for name, e in edits.items()}
    if first > 0:
        assert prep.kv is not None
        samples = torch.tensor([s for _, s in rows], device=lm.device)
        kwargs = prefix_cache_kwargs(lm, prep.kv, samples, first)
    else:
        kwargs = {"use_cache": False}
    ids = prep.input_ids[:, first:].expand(len(rows), -1)
    with contextlib.ExitStack() as stack:
        if start == 0:
            fns[act_name("resid_pre", 0)] = lambda tensor, *, hook: resid
        else:
            stack.enter_context(start_at_layer(lm, start, resid))
        stack.enter_context(hooks(lm, fns))
        if last_mlp:
            stack.enter_context(_last_position_only(lm.module(lm.adapter.mlp_path(L - 1))))
        if stop is not None:
            name = act_name("resid_post", stop - 1)
            return run_with_cache(lm, ids, [name], stop_after=name, **kwargs)[name]
        out = body(lm)(input_ids=ids, **kwargs)
    return out.last_hidden_state[:, -1]


# ----------------------------------------------------------------------------- every restoration of a prompt


# The unembedding runs on at most this many rows at once (its logits buffer: rows × vocabulary).
UNEMBED_ROWS = 1024


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
    _check_restores(lm, prep, restores)
    L, T, S = lm.n_layers, prep.n_tokens, prep.samples
    suffix = suffix and prep.kv is not None
    passes = plan(restores, L, prep.window, S, T, suffix, sequential=prep.corrupted_resid_mid is not None)
    trunks = passes.trunks
    final = None  # [restore, sample, d_model]
    entries: dict[int, torch.Tensor] = {}  # restore -> its stream entering the branch [sample, pos, d_model]
    trunk_blocks = trunks.branch - trunks.start
    total = sum((L - start + 1) * len(js) * S * (T - first) for start, first, js in passes.passes)
    total += sum(trunk_blocks * len(ks) * S * (T - first) for first, ks in passes.trunk_passes)
    # In bfloat16, grouped-query attention packed rather than repeated (core.attention): a trace
    # 11 % faster; in float32 it was slower (runs/bench/trace-packed-2026-11-30/), so not there.
    bfloat16 = next(lm.model.parameters()).dtype == torch.bfloat16
    attention = packed_attention(lm) if bfloat16 else contextlib.nullcontext()
    with attention, progress_bar(progress, total=total, desc="tracing", unit="pos", leave=False) as bar:
        for first, ks in passes.trunk_passes:
            shared = [restores[trunks.groups[k][0]] for k in ks]
            rows = [(restore, s) for restore in shared for s in range(S)]
            out = _run(lm, prep, trunks.start, first, rows, stop=trunks.branch).view(len(ks), S, T - first, -1)
            for i, (k, restore) in enumerate(zip(ks, shared)):
                for j in trunks.groups[k]:
                    entries[j] = out[i, :, min(restore.tokens) - first :]
            bar.update(trunk_blocks * len(ks) * S * (T - first))
        for start, first, js in passes.passes:
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


def _check_restores(lm: LoadedModel, prep: Prepared, restores: Sequence[Restore]) -> None:
    T = prep.n_tokens
    for restore in restores:
        if restore.kind not in KINDS:
            raise FactpatchError(f"unknown kind {restore.kind!r}: use {', '.join(KINDS)}")
        if restore.sever is not None and (restore.kind != "hidden" or restore.sever not in SEVERABLE):
            raise FactpatchError("severing applies to hidden-state restorations, of mlp or attn")
        lm.check_layer(restore.layer)
        if not restore.tokens or not all(0 <= t < T for t in restore.tokens):
            raise FactpatchError(f"token indices {restore.tokens} out of range 0..{T - 1}")
