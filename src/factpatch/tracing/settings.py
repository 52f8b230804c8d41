"""Causal-tracing settings: which states to restore, the noise, and σ (the scale the noise is
measured in: the standard deviation of the model's token embeddings over a body of text)."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..core.cache import atomic_path, stable_hash
from ..core.errors import FactpatchError
from ..core.models import LoadedModel, check_precision

logger = logging.getLogger(__name__)

KINDS = ("hidden", "mlp", "attn")
SEVERABLE = ("mlp", "attn")
HOOK_KIND = {"mlp": "mlp_out", "attn": "attn_out"}  # trace kind -> hook point kind

Progress = bool | Callable[..., object]  # True: tqdm; False: silent; or a tqdm-like factory


# ----------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class NoiseSettings:
    """How the subject is corrupted: ε ~ N(0, ν²) added to each subject token's input embedding,
    ν = scale × σ; one draw per sample, drawn from a generator seeded with `seed`.

    The scale must be greater than 0: the method's corrupted run is the one with noise, and
    without it P* = P, so every effect is 0 and the trace says nothing.
    Error messages name the command-line options that set each value."""

    scale: float = 3.0  # the paper's ν = 3σ
    samples: int = 10  # noise draws per prompt (the paper's batch of 10)
    seed: int = 0

    def __post_init__(self):
        if not (isinstance(self.samples, int) and self.samples >= 1):
            raise FactpatchError(f"--samples must be an integer of at least 1, got {self.samples!r}")
        if not (isinstance(self.scale, (int, float)) and math.isfinite(self.scale) and self.scale > 0):
            raise FactpatchError(
                f"--noise (ν/σ) must be a finite number greater than 0: a trace needs a corrupted run, got {self.scale!r}"
            )


@dataclass(frozen=True)
class TraceSettings:
    """What to trace: the kinds of state restored, the MLP/attention window, severed paths."""

    kinds: tuple[str, ...] = KINDS
    window: int = 10  # layers restored together for `mlp` and `attn` (the paper's 10)
    sever: tuple[str, ...] = ()  # also trace `hidden` with these later-layer outputs frozen
    sever_tokens: str = "all"  # "all", or "last subject" (all Fig 3 needs: a tenth of the work)
    noise: NoiseSettings = NoiseSettings()
    # The precision of every pass (core.models.PRECISIONS). float32 is exact and the default;
    # bfloat16 is an opt-in approximation, ~2× faster on CPUs with bf16 dot products, that moves
    # probabilities by a few hundredths (BENCHMARKS.md); the outputs say which was used.
    dtype: str = "float32"

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
            raise FactpatchError(f"--window must be an integer of at least 1, got {self.window!r}")
        check_precision(self.dtype, "--dtype")
        object.__setattr__(self, "kinds", kinds)
        object.__setattr__(self, "sever", sever)

    @property
    def trace_names(self) -> tuple[str, ...]:
        """Names of the traces produced: the kinds, then `hidden_sever_mlp` / `hidden_sever_attn`."""
        return self.kinds + tuple(f"hidden_sever_{s}" for s in self.sever)

    def key(self) -> dict:
        key = {**dataclasses.asdict(self), "kinds": list(self.kinds), "sever": list(self.sever)}
        if self.dtype == "float32":  # the default leaves the key as it was before the setting existed
            del key["dtype"]
        return key


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
    from ..editing.stats import CorpusSpec, read_text_corpus, sample_token_corpus, stats_dir

    spec = CorpusSpec(Path(corpus) if corpus is not None else None, n_tokens, seed)
    if spec.path is not None and not spec.path.is_file():
        raise FactpatchError(f"corpus file not found: {spec.path}")
    path = stats_dir(lm, cache_dir) / f"embed-std-{stable_hash({**spec.key(), 'n_tokens': n_tokens})}.json"
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
