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
import dataclasses
import inspect
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch

from ..core.cache import atomic_path, default_cache_dir, stable_hash
from ..core.errors import FactpatchError
from ..core.hooks import act_name, body, hooks, run_with_cache, start_at_layer, unembed
from ..core.models import LoadedModel
from ..core.tokens import encode_target, subject_token_range

logger = logging.getLogger(__name__)

KINDS = ("hidden", "mlp", "attn")
SEVERABLE = ("mlp", "attn")
_HOOK_KIND = {"mlp": "mlp_out", "attn": "attn_out"}  # trace kind -> hook point kind

Progress = bool | Callable[..., object]  # True: tqdm; False: silent; or a tqdm-like factory


# ----------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class NoiseSettings:
    """How the subject is corrupted: ε ~ N(0, ν²) added to each subject token's input embedding,
    ν = scale × σ; one draw per sample, drawn from a generator seeded with `seed`."""

    scale: float = 3.0  # the paper's ν = 3σ
    samples: int = 10  # noise draws per prompt (the paper's batch of 10)
    seed: int = 0

    def __post_init__(self):
        if not (isinstance(self.samples, int) and self.samples >= 1):
            raise FactpatchError(f"samples must be an integer of at least 1, got {self.samples!r}")
        if not (isinstance(self.scale, (int, float)) and math.isfinite(self.scale) and self.scale >= 0):
            raise FactpatchError(f"noise must be a finite number ≥ 0, got {self.scale!r}")


@dataclass(frozen=True)
class TraceSettings:
    """What to trace: the kinds of state restored, the MLP/attention window, severed paths."""

    kinds: tuple[str, ...] = KINDS
    window: int = 10  # layers restored together for `mlp` and `attn` (the paper's 10)
    sever: tuple[str, ...] = ()  # also trace `hidden` with these later-layer outputs frozen
    sever_tokens: str = "all"  # "all", or "last subject" (all Fig 3 needs: a tenth of the work)
    noise: NoiseSettings = NoiseSettings()

    def __post_init__(self):
        kinds = tuple(dict.fromkeys(self.kinds))
        if not kinds:
            raise FactpatchError(f"no kinds to trace: use some of {', '.join(KINDS)}")
        unknown = [k for k in kinds if k not in KINDS]
        if unknown:
            raise FactpatchError(f"unknown kind {unknown[0]!r}: use {', '.join(KINDS)}")
        sever = tuple(dict.fromkeys(self.sever))
        bad = [s for s in sever if s not in SEVERABLE]
        if bad:
            raise FactpatchError(f"cannot sever {bad[0]!r}: use {' or '.join(SEVERABLE)}")
        if self.sever_tokens not in ("all", "last subject"):
            raise FactpatchError(f"sever_tokens must be 'all' or 'last subject', got {self.sever_tokens!r}")
        if not (isinstance(self.window, int) and self.window >= 1):
            raise FactpatchError(f"window must be an integer of at least 1, got {self.window!r}")
        object.__setattr__(self, "kinds", kinds)
        object.__setattr__(self, "sever", sever)

    @property
    def trace_names(self) -> tuple[str, ...]:
        """Names of the traces produced: the kinds, then `hidden_sever_mlp` / `hidden_sever_attn`."""
        return self.kinds + tuple(f"hidden_sever_{s}" for s in self.sever)

    def key(self) -> dict:
        return {**dataclasses.asdict(self), "kinds": list(self.kinds), "sever": list(self.sever)}


def layer_window(layer: int, n_layers: int, size: int) -> range:
    """Layers restored together for a window of `size` centred on `layer`, clamped to the model:
    [layer − size//2, layer − size//2 + size) ∩ [0, n_layers).

    >>> layer_window(10, 30, 10)
    range(5, 15)
    >>> layer_window(1, 30, 10), layer_window(28, 30, 10)
    (range(0, 6), range(23, 30))
    """
    start = layer - size // 2
    return range(max(0, start), min(n_layers, start + size))


# ----------------------------------------------------------------------------- σ


def embedding_std(
    lm: LoadedModel,
    corpus: Path | None = None,
    n_tokens: int = 20_480,
    seed: int = 0,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> float:
    """σ: the standard deviation of the model's token embeddings (all coordinates) over a body of
    text — text sampled from the model itself (the same cached sample as the key statistics), or a
    plain-text / JSONL `corpus`. Computed once per model and cached beside its key statistics."""
    from ..editing.stats import CorpusSpec, read_text_corpus, sample_token_corpus

    spec = CorpusSpec(Path(corpus) if corpus is not None else None, n_tokens, seed)
    if spec.path is not None and not spec.path.is_file():
        raise FactpatchError(f"corpus file not found: {spec.path}")
    root = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / "stats" / lm.fingerprint[:16]
    path = root / f"embed-std-{stable_hash({**spec.key(), 'n_tokens': n_tokens})}.json"
    if path.exists():
        try:
            return float(json.loads(path.read_text())["sigma"])
        except (ValueError, KeyError, TypeError):
            logger.warning("ignoring unreadable cached σ at %s", path)
    if spec.path is None:
        sequences = list(sample_token_corpus(lm, n_tokens, seed, cache_dir, progress))
    else:
        sequences = read_text_corpus(spec.path, lm.tokenizer, n_tokens)
    embed = lm.module(lm.adapter.embed)
    total = torch.zeros((), dtype=torch.float64)
    total_sq = torch.zeros((), dtype=torch.float64)
    count = 0
    with torch.no_grad():
        for seq in sequences:
            vectors = embed(torch.as_tensor(seq, dtype=torch.long, device=lm.device)[None]).double()
            total += vectors.sum().cpu()
            total_sq += (vectors**2).sum().cpu()
            count += vectors.numel()
    mean = total / count
    sigma = float(torch.sqrt(torch.clamp(total_sq / count - mean**2, min=0.0)))
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"sigma": sigma, "elements": count, **spec.key()}))
    logger.info("σ of %s token embeddings: %.5g (over %d tokens)", lm.name, sigma, sum(len(s) for s in sequences))
    return sigma


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


def _output_cache(output):
    """The key/value cache a body returned (its attribute name differs between versions)."""
    for attr in ("cache", "past_key_values"):
        value = getattr(output, attr, None)
        if value is not None:
            return value
    return None


def _cache_kwarg(lm: LoadedModel) -> str:
    params = inspect.signature(body(lm).forward).parameters
    return "cache" if "cache" in params else "past_key_values"


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
    kv = _extract_kv(_output_cache(out), L, T)
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
                name = act_name(_HOOK_KIND[restore.sever], layer)
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
                name = act_name(_HOOK_KIND[restore.kind], layer)
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
        kwargs[_cache_kwarg(lm)] = DynamicCache(prefix, config=lm.model.config)
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


def _progress_bar(progress: Progress, **kwargs):
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
    with _progress_bar(progress, total=total, desc="tracing", unit="pos", leave=False) as bar:
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


# ----------------------------------------------------------------------------- one prompt


@dataclass
class PromptTrace:
    """The causal trace of one prompt. `scores[name][token][layer]` = P(target) with that state
    restored (mean over samples); tokens before the subject are never corrupted, so their rows
    equal `p_corrupted`; the rows of tokens not traced (see `TraceSettings.sever_tokens`) are None."""

    prompt: str
    subject: str
    target: str
    target_token: str
    target_is_top: bool
    tokens: list[str]
    subject_range: tuple[int, int]
    p_clean: float
    p_corrupted: float
    sigma: float
    settings: TraceSettings
    scores: dict[str, list[list[float] | None]]
    n_layers: int
    model: str = ""

    def to_json(self) -> dict:
        noise = self.settings.noise
        return {
            "model": self.model,
            "prompt": self.prompt,
            "subject": self.subject,
            "target": self.target,
            "target_token": self.target_token,
            "target_is_top": self.target_is_top,
            "tokens": self.tokens,
            "subject_range": list(self.subject_range),
            "p_clean": self.p_clean,
            "p_corrupted": self.p_corrupted,
            "noise": noise.scale,
            "sigma": self.sigma,
            "samples": noise.samples,
            "seed": noise.seed,
            "window": self.settings.window,
            "layers": self.n_layers,
            "kinds": {
                name: {"scores": grid, "window": self.settings.window if name in ("mlp", "attn") else 1}
                for name, grid in self.scores.items()
            },
        }


def _restores_for(name: str, layers: int, tokens: Iterable[int]) -> list[Restore]:
    if name.startswith("hidden_sever_"):
        return [Restore("hidden", l, (i,), name.removeprefix("hidden_sever_")) for i in tokens for l in range(layers)]
    return [Restore(name, l, (i,)) for i in tokens for l in range(layers)]


def trace_prompt(
    lm: LoadedModel,
    prompt: str,
    subject: str,
    target: str | None = None,
    settings: TraceSettings = TraceSettings(),
    sigma: float | None = None,
    cache_dir: Path | None = None,
    progress: Progress = True,
    suffix: bool = True,
) -> PromptTrace:
    """Trace one fact. Without `target`, the model's own top next token is traced; a target the
    model does not rank first is traced anyway, with a warning. `sigma` defaults to
    `embedding_std(lm)` (computed once per model, then cached)."""
    if sigma is None:
        sigma = embedding_std(lm, cache_dir=cache_dir, progress=bool(progress))
    prep = prepare(lm, prompt, subject, target, sigma, settings.noise, settings.window)
    decode = lm.tokenizer.decode
    if prep.target_id != prep.clean_top_id:
        logger.warning(
            "the model does not predict %r after %r (its top token is %r, P = %.3g vs %.3g): tracing it anyway",
            decode([prep.target_id]), prompt, decode([prep.clean_top_id]), prep.p_clean,
            prep.p_top,
        )
    L, T = lm.n_layers, prep.n_tokens
    first = prep.subject_range[0]
    traced = range(first, T)  # tokens before the subject are identical in both runs
    restores, spans = [], {}
    for name in settings.trace_names:
        tokens = traced
        if name.startswith("hidden_sever_") and settings.sever_tokens == "last subject":
            tokens = range(prep.subject_range[1] - 1, prep.subject_range[1])
        batch = _restores_for(name, L, tokens)
        spans[name] = (len(restores), len(restores) + len(batch), tokens)
        restores += batch
    probs = restored_probs(lm, prep, restores, suffix=suffix, progress=progress).mean(dim=1)
    scores = {}
    for name, (lo, hi, tokens) in spans.items():
        rows = dict(zip(tokens, probs[lo:hi].view(len(tokens), L).tolist()))
        # never-corrupted tokens before the subject: P*; tokens not traced: None
        scores[name] = [rows.get(i, [prep.p_corrupted] * L if i < first else None) for i in range(T)]
    target_text = target if target is not None else decode([prep.target_id]).strip() or decode([prep.target_id])
    return PromptTrace(
        prompt=prompt,
        subject=subject,
        target=target_text,
        target_token=decode([prep.target_id]),
        target_is_top=prep.target_id == prep.clean_top_id,
        tokens=[decode([t]) for t in prep.input_ids[0].tolist()],
        subject_range=prep.subject_range,
        p_clean=prep.p_clean,
        p_corrupted=prep.p_corrupted,
        sigma=sigma,
        settings=settings,
        scores=scores,
        n_layers=L,
        model=lm.name,
    )



def save_trace(trace: PromptTrace, out_dir: Path, plots: bool = True) -> list[Path]:
    """Write `trace.json`, `trace.png` and `trace.svg` into `out_dir`. Everything is rendered
    before anything is written, and each file is written atomically."""
    out_dir = Path(out_dir)
    data = trace.to_json()
    files = {"trace.json": (json.dumps(data, indent=1) + "\n").encode()}
    from .plot import write_bytes

    if plots:
        from .plot import plot_prompt, render_figure

        for fmt, blob in render_figure(plot_prompt(data)).items():
            files[f"trace.{fmt}"] = blob
    out_dir.mkdir(parents=True, exist_ok=True)
    return [write_bytes(out_dir / name, blob) for name, blob in files.items()]


# ----------------------------------------------------------------------------- many facts (Figs 2 and 3)

TOKEN_GROUPS = (
    "first subject token",
    "middle subject tokens",
    "last subject token",
    "first subsequent token",
    "further tokens",
    "last token",
)


def token_groups(subject_range: tuple[int, int], n_tokens: int) -> list[list[int]]:
    """Token indices of the six groups the paper averages by, in `TOKEN_GROUPS` order.

    A token can belong to two groups (a one-token subject is its first and its last token; a
    subject that ends the prompt has no subsequent token and its last token is the prompt's last);
    a group can be empty (no middle tokens in a two-token subject). Tokens before the subject
    belong to none: the noise never reaches them.

    >>> token_groups((1, 4), 8)
    [[1], [2], [3], [4], [5, 6], [7]]
    """
    start, end = subject_range
    if not 0 <= start < end <= n_tokens:
        raise FactpatchError(f"subject range {subject_range} does not fit {n_tokens} tokens")
    return [
        [start],
        list(range(start + 1, end - 1)),
        [end - 1],
        [end] if end < n_tokens else [],
        list(range(end + 1, n_tokens - 1)),
        [n_tokens - 1],
    ]


@dataclass(frozen=True)
class Fact:
    """A known fact: `prompt` contains `subject`; `target` is the object the model should say."""

    id: str
    prompt: str
    subject: str
    target: str


def load_facts(path: Path) -> list[Fact]:
    """Facts from a JSON list (known_1000.json layout: `known_id`, `subject`, `attribute`, `prompt`;
    `target` is accepted for `attribute`, and a prompt may be a template with "{}") or JSONL."""
    path = Path(path)
    if not path.is_file():
        raise FactpatchError(f"dataset file not found: {path}")
    text = path.read_text(errors="replace")
    try:
        records = json.loads(text)
    except json.JSONDecodeError:
        try:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise FactpatchError(f"{path}: not JSON or JSONL ({exc.msg}, line {exc.lineno})") from exc
    if isinstance(records, dict):
        records = next((v for v in records.values() if isinstance(v, list)), None)
    if not isinstance(records, list) or not records:
        raise FactpatchError(f"{path}: expected a non-empty list of facts")
    facts, seen = [], set()
    for number, record in enumerate(records):
        if not isinstance(record, dict):
            raise FactpatchError(f"{path}: record {number} is not an object")
        subject = record.get("subject")
        prompt = record.get("prompt", record.get("template"))
        target = record.get("attribute", record.get("target"))
        for name, value in (("subject", subject), ("prompt", prompt), ("attribute", target)):
            if not isinstance(value, str) or not value.strip():
                raise FactpatchError(f"{path}: record {number} has no {name}")
        if "{}" in prompt:
            prompt = prompt.replace("{}", subject, 1)
        if subject not in prompt:
            raise FactpatchError(f"{path}: record {number}: subject {subject!r} is not in its prompt {prompt!r}")
        fact_id = str(record.get("known_id", record.get("case_id", number)))
        if fact_id in seen:
            raise FactpatchError(f"{path}: record {number}: duplicate id {fact_id}")
        seen.add(fact_id)
        facts.append(Fact(fact_id, prompt, subject, target.strip()))
    return facts


@torch.no_grad()
def knows(lm: LoadedModel, facts: Sequence[Fact], batch_size: int = 32, progress: Progress = True) -> list[bool]:
    """Whether the model gets each fact right: its greedy continuation of the prompt begins with
    every token of the target (one teacher-forced pass per batch, logits only where read)."""
    from ..core.tokens import pad_id, pad_right

    result = []
    with _progress_bar(progress, total=len(facts), desc="checking known facts", unit="fact") as bar:
        for begin in range(0, len(facts), batch_size):
            chunk = [encode_target(lm.tokenizer, f.prompt, f.target) for f in facts[begin : begin + batch_size]]
            batch = pad_right([p + t[:-1] for p, t in chunk], pad_id(lm.tokenizer), lm.device)
            hidden = body(lm)(input_ids=batch.input_ids, use_cache=False).last_hidden_state
            rows = [r for r, (p, t) in enumerate(chunk) for _ in t]
            cols = [len(p) - 1 + k for p, t in chunk for k in range(len(t))]
            predicted = unembed(lm, hidden[rows, cols]).argmax(dim=-1).tolist()
            cursor = 0
            for _, target_ids in chunk:
                n = len(target_ids)
                result.append(predicted[cursor : cursor + n] == list(target_ids))
                cursor += n
            bar.update(len(chunk))
    return result


def fact_seed(seed: int, fact_id: str) -> int:
    """The noise seed of one fact: fixed by the run's seed and the fact, not by the order of work."""
    return int(stable_hash([seed, fact_id]), 16) % (2**31)


def _rounded(grid: list[list[float] | None]) -> list[list[float] | None]:
    return [None if row is None else [float(f"{v:.6g}") for v in row] for row in grid]


def fact_record(fact: Fact, trace: PromptTrace) -> dict:
    return {
        "id": fact.id,
        "prompt": fact.prompt,
        "subject": fact.subject,
        "target": fact.target,
        "tokens": trace.tokens,
        "subject_range": list(trace.subject_range),
        "p_clean": trace.p_clean,
        "p_corrupted": trace.p_corrupted,
        "seed": trace.settings.noise.seed,
        "kinds": {name: _rounded(grid) for name, grid in trace.scores.items()},
    }


def read_results(path: Path, repair: bool = False) -> list[dict]:
    """Records of a results JSONL. A last line cut short by a killed run is dropped (and, with
    `repair`, cut from the file so appending resumes cleanly); damage elsewhere is an error."""
    path = Path(path)
    if not path.exists():
        return []
    raw = path.read_bytes()
    records, offset = [], 0
    for line in raw.splitlines(keepends=True):
        complete = line.endswith(b"\n")
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if record is None or not complete:
            if offset + len(line) < len(raw):
                raise FactpatchError(f"{path}: damaged line {len(records) + 1}; remove it to resume")
            if repair:
                with open(path, "r+b") as handle:
                    handle.truncate(offset)
            logger.warning("dropped an incomplete last line of %s (a run was cut short)", path)
            break
        records.append(record)
        offset += len(line)
    return records


def summarize(records: Sequence[dict], names: Sequence[str], n_layers: int) -> dict:
    """Average the traces of many facts by token group and layer (the paper's Fig 2).

    For each trace name and group: `p[group][layer]` = mean over facts (with that group traced) of
    the mean over the group's traced tokens of P(target) restored; `ie` the same for the indirect effect
    P_restored − P*. Also the mean clean and corrupted P and where the effects peak."""
    summary: dict = {
        "facts": len(records),
        "groups": list(TOKEN_GROUPS),
        "layers": n_layers,
        "p_clean": float(sum(r["p_clean"] for r in records) / max(1, len(records))),
        "p_corrupted": float(sum(r["p_corrupted"] for r in records) / max(1, len(records))),
        "kinds": {},
    }
    summary["total_effect"] = summary["p_clean"] - summary["p_corrupted"]
    for name in names:
        p_sum = torch.zeros(len(TOKEN_GROUPS), n_layers, dtype=torch.float64)
        ie_sum = torch.zeros_like(p_sum)
        counts = torch.zeros(len(TOKEN_GROUPS), dtype=torch.float64)
        for record in records:
            rows = record["kinds"][name]
            groups = token_groups(tuple(record["subject_range"]), len(record["tokens"]))
            for g, tokens in enumerate(groups):
                traced = [rows[t] for t in tokens if rows[t] is not None]
                if traced:
                    mean = torch.tensor(traced, dtype=torch.float64).mean(dim=0)
                    p_sum[g] += mean
                    ie_sum[g] += mean - record["p_corrupted"]
                    counts[g] += 1
        safe = counts.clamp(min=1)[:, None]
        summary["kinds"][name] = {
            "p": (p_sum / safe).tolist(),
            "ie": (ie_sum / safe).tolist(),
            "facts_per_group": counts.int().tolist(),
        }
    summary["peaks"] = _peaks(summary)
    return summary


def _peak(summary: dict, name: str, group: str) -> dict | None:
    kind = summary["kinds"].get(name)
    if kind is None:
        return None
    g = TOKEN_GROUPS.index(group)
    ie = kind["ie"][g]
    layer = max(range(len(ie)), key=lambda l: ie[l])
    return {"trace": name, "group": group, "layer": layer, "ie": ie[layer], "p": kind["p"][g][layer]}


def _peaks(summary: dict) -> dict:
    wanted = {
        "hidden_last_subject": ("hidden", "last subject token"),
        "mlp_last_subject": ("mlp", "last subject token"),
        "attn_last_subject": ("attn", "last subject token"),
        "mlp_last": ("mlp", "last token"),
        "attn_last": ("attn", "last token"),
    }
    return {key: peak for key, (name, group) in wanted.items() if (peak := _peak(summary, name, group))}


def choose_layers(summary: dict) -> dict:
    """The edit layer from a dataset summary: where the average MLP indirect effect at the last
    subject token peaks (the layer at the centre of the restored window); the attention layer:
    where the attention effect at the last token peaks."""
    peaks = summary.get("peaks", {})
    if "mlp_last_subject" not in peaks:
        raise FactpatchError("choosing the edit layer needs the mlp trace")
    mlp = peaks["mlp_last_subject"]
    choice = {"edit_layer": mlp["layer"], "edit_layer_ie": mlp["ie"], "edit_layer_p": mlp["p"]}
    if "attn_last" in peaks:
        attn = peaks["attn_last"]
        choice.update({"attn_layer": attn["layer"], "attn_layer_ie": attn["ie"], "attn_layer_p": attn["p"]})
    return choice


@dataclass
class DatasetRun:
    """What `trace_dataset` did: the summary, and where it wrote."""

    summary: dict
    out_dir: Path
    checked: int
    known: int
    traced: int
    new: int
    files: list[Path] = field(default_factory=list)


def _file_sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def trace_dataset(
    lm: LoadedModel,
    dataset: Path,
    out_dir: Path,
    settings: TraceSettings = TraceSettings(),
    n: int | None = None,
    sigma: float | None = None,
    cache_dir: Path | None = None,
    progress: Progress = True,
    plots: bool = True,
) -> DatasetRun:
    """Trace the facts of `dataset` that the model knows (the first `n` of them) and average.

    Writes into `out_dir`: `run.json` (model, dataset, settings: a resumed run must match),
    `known.json` (which facts the model gets right), `results.jsonl` (one traced fact per line,
    appended as each finishes, so a killed run resumes where it stopped), `summary.json`
    (averages by token group and layer) and the figures `average.png|svg` (and `sever.png|svg`)."""
    from .plot import write_bytes

    out_dir = Path(out_dir)
    facts = load_facts(dataset)
    if n is not None and n < 1:
        raise FactpatchError(f"--n must be at least 1, got {n}")
    if sigma is None:
        sigma = embedding_std(lm, cache_dir=cache_dir, progress=bool(progress))
    run_key = {
        "model": lm.name,
        "fingerprint": lm.fingerprint,
        "dataset_sha256": _file_sha(dataset),
        "settings": settings.key(),
        "sigma": round(sigma, 8),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    run_path = out_dir / "run.json"
    if run_path.exists():
        try:
            previous = json.loads(run_path.read_text())
        except json.JSONDecodeError:
            previous = None
        if previous != run_key:
            raise FactpatchError(
                f"{out_dir} holds a run with other settings, model or dataset: use another --out "
                "(or the same options to resume it)"
            )
    else:
        write_bytes(run_path, json.dumps(run_key, indent=1).encode())

    known_path = out_dir / "known.json"
    known_ids = None
    if known_path.exists():
        try:
            known_ids = json.loads(known_path.read_text())["known"]
        except (json.JSONDecodeError, KeyError, TypeError):
            known_ids = None
    if known_ids is None:
        flags = knows(lm, facts, progress=progress)
        known_ids = [f.id for f, ok in zip(facts, flags) if ok]
        write_bytes(known_path, json.dumps({"checked": len(facts), "known": known_ids}).encode())
    known_set = set(known_ids)
    selected = [f for f in facts if f.id in known_set][: n if n is not None else None]
    logger.info("%s knows %d of %d facts in %s", lm.name, len(known_set), len(facts), dataset)

    results_path = out_dir / "results.jsonl"
    done = {r["id"]: r for r in read_results(results_path, repair=True)}
    todo = [f for f in selected if f.id not in done]
    bar = _progress_bar(progress, total=len(selected), initial=len(selected) - len(todo), desc="tracing facts", unit="fact")
    with bar, open(results_path, "a", encoding="utf-8") as handle:
        for fact in todo:
            fact_settings = dataclasses.replace(
                settings, noise=dataclasses.replace(settings.noise, seed=fact_seed(settings.noise.seed, fact.id))
            )
            trace = trace_prompt(lm, fact.prompt, fact.subject, fact.target, fact_settings, sigma, progress=False)
            record = fact_record(fact, trace)
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            done[fact.id] = record
            bar.update(1)
    records = [done[f.id] for f in selected if f.id in done]
    summary = summarize(records, settings.trace_names, lm.n_layers)
    summary.update(
        {
            "model": lm.name,
            "dataset": str(dataset),
            "checked": len(facts),
            "known": len(known_set),
            "settings": settings.key(),
            "sigma": sigma,
        }
    )
    if "mlp" in settings.kinds and records:
        summary["choice"] = choose_layers(summary)
    files = [results_path]
    summary_path = out_dir / "summary.json"
    write_bytes(summary_path, json.dumps(summary, indent=1).encode())
    files.append(summary_path)
    if plots and records:
        from .plot import plot_average, plot_sever, write_figure

        files += write_figure(plot_average(summary), out_dir / "average")
        if settings.sever:
            files += write_figure(plot_sever(summary), out_dir / "sever")
    return DatasetRun(summary, out_dir, len(facts), len(known_set), len(records), len(todo), files)
