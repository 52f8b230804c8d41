"""Key statistics: the second moment C = E[k kᵀ] of the inputs k to W_proj at the edit layer.

ROME's update is the smallest change to W_proj (in the metric C) that inserts (k*, v*), so C must
describe the keys the layer sees in ordinary text. The paper used 100,000 Wikipedia samples; with
no network, factpatch's default corpus is text *sampled from the model itself* (seeded, fixed
length, top-k 50, starting from its beginning-of-text token) — no data set needed, and by
construction it is text the model finds typical (the embedded models' default draw ships with
the package, `shipped_corpus`). `corpus=PATH` uses a plain-text or JSONL file
instead. Only the blocks up to the edit layer run. Results are cached on disk, keyed by model
fingerprint, layer, corpus and token count.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ..core.cache import atomic_path, default_cache_dir, file_sha256, stable_hash
from ..core.errors import FactpatchError
from ..core.generate import end_of_text_ids, sample_top_k, seeded
from ..core.hooks import act_name, run_with_cache
from ..core.models import LoadedModel

if TYPE_CHECKING:
    from .patch import PatchStack

logger = logging.getLogger(__name__)

SEQ_LEN = 128  # tokens per corpus sequence
# Sequences sampled together. Sampling is one token a step for every row at once, so the rows
# share each step's fixed cost and their matrix products are wide enough to run at full speed:
# 160 rows (the default corpus) in one batch sample several times faster than 5 batches of 32.
SAMPLE_BATCH = 256
TOP_K = 50  # the self-sampled corpus's top-k (transformers' default for sampling)
# How the corpus is drawn, part of its cache key: "top-k-first" (core.generate.sample_top_k) draws
# other tokens than transformers' `generate` did from the same seed (the corpora before it).
SAMPLER = "top-k-first"


@dataclass(frozen=True)
class CorpusSpec:
    """Where key statistics come from: the model's own samples (path None) or a text file."""

    path: Path | None = None
    n_tokens: int = 20_480
    seed: int = 0

    def key(self) -> dict:
        """What decides the statistics (the caches' key): the draw's settings, or the file's bytes.
        Not a file's path or modification time: a corpus copied elsewhere or cloned afresh keeps its
        cached statistics, and a run made with it resumes in another checkout."""
        if self.path is None:
            return {"corpus": "self-sampled", "seed": self.seed, "top_k": TOP_K, "seq_len": SEQ_LEN, "batch": SAMPLE_BATCH,
                    "sampler": SAMPLER}
        if not Path(self.path).is_file():
            raise FactpatchError(f"corpus file not found: {self.path}")
        return {"corpus": "file", "sha256": file_sha256(self.path)}

    def record(self) -> dict:
        """The corpus as a run's config.json records it: key(), the tokens read, and a file's path as
        given (where a rebuild reads it again, as a data set's name holds its path)."""
        return {**self.key(), "n_tokens": self.n_tokens, **({"path": str(self.path)} if self.path is not None else {})}

    @classmethod
    def from_record(cls, record: dict) -> CorpusSpec:
        """The corpus a run recorded (record(); also the form before 2026-12-04, which named a file by
        its absolute path, size and modification time), its file checked against the recorded bytes."""
        if record["corpus"] == "self-sampled":
            return cls(None, record["n_tokens"], record.get("seed", 0))
        spec = cls(Path(record.get("path", record["corpus"])), record["n_tokens"])
        if "sha256" in record and spec.key()["sha256"] != record["sha256"]:
            raise FactpatchError(f"corpus file {spec.path} is not the one the run was made with (its contents differ)")
        return spec


class SecondMoment:
    """Streaming E[k kᵀ] over rows of k (accumulated in float64, returned in float32)."""

    def __init__(self, dim: int):
        self.sum = torch.zeros(dim, dim, dtype=torch.float64)
        self.count = 0

    def add(self, keys: torch.Tensor) -> None:  # keys: (N, dim)
        keys = keys.to(torch.float64)
        self.sum += keys.T @ keys
        self.count += keys.shape[0]

    def moment(self) -> torch.Tensor:
        if self.count == 0:
            raise FactpatchError("no keys were collected: the corpus is empty")
        return (self.sum / self.count).to(torch.float32)


def stats_dir(lm: LoadedModel, cache_dir: Path | None) -> Path:
    return (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / "stats" / lm.cache_name


def _corpus_name(n_tokens: int, seed: int) -> str:
    # the batch is part of the key: the same seed draws other samples in batches of another size
    return f"sampled-{stable_hash([n_tokens, seed, SEQ_LEN, TOP_K, SAMPLE_BATCH, SAMPLER])}.safetensors"


def _draw_settings(lm: LoadedModel, n_tokens: int, seed: int) -> dict[str, str]:
    """Everything that decides which tokens a self-sampled corpus holds (safetensors metadata)."""
    return {"fingerprint": lm.fingerprint, "n_tokens": str(n_tokens), "seed": str(seed), "seq_len": str(SEQ_LEN),
            "top_k": str(TOP_K), "batch": str(SAMPLE_BATCH), "sampler": SAMPLER}


def shipped_corpora_root() -> Path:
    """The package's folder of corpora drawn in advance, one subfolder per weights fingerprint."""
    return Path(str(resources.files("factpatch") / "data" / "corpora"))


def shipped_corpus_path(lm: LoadedModel, n_tokens: int, seed: int, root: Path | None = None) -> Path:
    """Where a corpus drawn in advance for these weights is kept (it may not exist)."""
    return (root or shipped_corpora_root()) / lm.fingerprint[:16] / _corpus_name(n_tokens, seed)


def shipped_corpus(lm: LoadedModel, n_tokens: int, seed: int, root: Path | None = None) -> torch.Tensor | None:
    """The corpus the model draws with these settings, shipped with the package, or None.

    Sampling is most of the first edit on a fresh cache (~1 min on SmolLM2, ~2 on Gemma 3 here),
    so the embedded models' default corpora — 20,480 token ids, 80 KB — come with factpatch
    (`scripts/ship_corpus.py` draws them with `sample_token_corpus` itself). They are used only
    for weights with the same fingerprint and a draw with every setting the same; the statistics
    are still computed here, from the model. tests/test_integration.py redraws the first steps.
    (Another CPU's floating-point order could make a fresh draw differ after some token; the
    shipped corpus is as much the model's own sample, and the same on every machine.)
    """
    path = shipped_corpus_path(lm, n_tokens, seed, root)
    if not path.is_file():
        return None
    with safe_open(str(path), "pt") as handle:
        if handle.metadata() != _draw_settings(lm, n_tokens, seed):
            logger.warning("ignoring the shipped corpus %s: drawn with other settings", path)
            return None
        return handle.get_tensor("ids").long()


def write_shipped_corpus(lm: LoadedModel, ids: torch.Tensor, n_tokens: int, seed: int, root: Path | None = None) -> Path:
    """Store `ids` (drawn by `sample_token_corpus` with these settings) as the package's corpus."""
    path = shipped_corpus_path(lm, n_tokens, seed, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    if int(ids.max()) >= 2**31:
        raise FactpatchError("token ids do not fit in int32")
    with atomic_path(path) as tmp:
        save_file({"ids": ids.to(torch.int32).contiguous()}, str(tmp), metadata=_draw_settings(lm, n_tokens, seed))
    return path


def sample_token_corpus(
    lm: LoadedModel, n_tokens: int, seed: int = 0, cache_dir: Path | None = None, progress: bool = True,
    use_shipped: bool = True,
) -> torch.Tensor:
    """(n_seq, SEQ_LEN) token ids sampled from the model, cached per model fingerprint and seed
    (or shipped with the package for the embedded models' default draw: `shipped_corpus`)."""
    path = stats_dir(lm, cache_dir) / _corpus_name(n_tokens, seed)
    if path.exists():
        return load_file(path)["ids"]
    if use_shipped and (ids := shipped_corpus(lm, n_tokens, seed)) is not None:
        logger.info("corpus of %d tokens for %s: drawn in advance, shipped with factpatch", ids.numel(), lm.name)
        return ids
    tokenizer = lm.tokenizer
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    n_seq = -(-n_tokens // SEQ_LEN)
    chunks = []
    with seeded(seed), tqdm(total=n_seq * SEQ_LEN, desc="sampling corpus", unit="tok", disable=not progress) as bar:
        for first in range(0, n_seq, SAMPLE_BATCH):
            rows = min(SAMPLE_BATCH, n_seq - first)
            prompt = torch.full((rows, 1), start, dtype=torch.long, device=lm.device)
            bar.update(rows)
            # fixed length (no padding in the statistics pass): end-of-text is never drawn
            chunks.append(sample_top_k(lm, prompt, SEQ_LEN - 1, TOP_K, banned=end_of_text_ids(lm),
                                       on_step=lambda rows=rows: bar.update(rows)).cpu())
    ids = torch.cat(chunks)
    with atomic_path(path) as tmp:
        save_file({"ids": ids.contiguous()}, str(tmp))
    return ids


def read_text_corpus(path: Path, tokenizer, n_tokens: int) -> torch.Tensor:
    """(n_seq, ≤SEQ_LEN) token ids from a plain-text file (one document per blank-line-separated
    block) or a JSONL file (the "text" field of each line, else its first string field)."""
    path = Path(path)
    if not path.is_file():
        raise FactpatchError(f"corpus file not found: {path}")
    raw = path.read_text(errors="replace")
    if path.suffix in {".jsonl", ".json"}:
        documents = []
        for number, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise FactpatchError(f"{path}:{number}: not JSON ({exc.msg})") from exc
            text = record.get("text") if isinstance(record, dict) else record
            if not isinstance(text, str) and isinstance(record, dict):
                text = next((v for v in record.values() if isinstance(v, str)), None)
            if isinstance(text, str):
                documents.append(text)
    else:
        documents = [block for block in raw.split("\n\n")]
    documents = [d.strip() for d in documents if d.strip()]
    if not documents:
        raise FactpatchError(f"corpus file is empty: {path}")
    sequences, total = [], 0
    for document in documents:
        ids = tokenizer(document).input_ids
        for start in range(0, len(ids), SEQ_LEN):
            piece = ids[start : start + SEQ_LEN]
            if len(piece) < 2:
                continue
            sequences.append(piece)
            total += len(piece)
            if total >= n_tokens:
                break
        if total >= n_tokens:
            break
    if not sequences:
        raise FactpatchError(f"corpus file has no usable text: {path}")
    if total < n_tokens:
        logger.warning("corpus %s has only %d tokens (asked for %d)", path, total, n_tokens)
    return sequences


def _moment_path(lm: LoadedModel, layer: int, corpus: CorpusSpec, cache_dir: Path | None) -> Path:
    key = stable_hash({**corpus.key(), "layer": layer, "n_tokens": corpus.n_tokens})
    return stats_dir(lm, cache_dir) / f"keys-layer{layer}-{key}.safetensors"


def key_second_moment(
    lm: LoadedModel,
    layer: int,
    corpus: CorpusSpec = CorpusSpec(),
    cache_dir: Path | None = None,
    progress: bool = True,
    batch_size: int = 16,
) -> torch.Tensor:
    """C = E[k kᵀ] at `layer`, shape (d_mlp, d_mlp), float32 — from cache when possible."""
    return key_second_moments(lm, [layer], corpus, cache_dir, progress, batch_size)[layer]


def key_second_moments(
    lm: LoadedModel,
    layers: list[int],
    corpus: CorpusSpec = CorpusSpec(),
    cache_dir: Path | None = None,
    progress: bool = True,
    batch_size: int = 16,
) -> dict[int, torch.Tensor]:
    """C_l for every layer l (MEMIT and AlphaEdit edit several): the layers not cached yet share
    one pass over the corpus, which stops after the highest of them."""
    for layer in layers:
        lm.check_layer(layer)
    if corpus.path is not None and not Path(corpus.path).is_file():
        raise FactpatchError(f"corpus file not found: {corpus.path}")
    paths = {layer: _moment_path(lm, layer, corpus, cache_dir) for layer in layers}
    result = {layer: load_file(path)["C"] for layer, path in paths.items() if path.exists()}
    missing = sorted(set(layers) - set(result))
    if not missing:
        return result
    if corpus.path is None:
        sequences = list(sample_token_corpus(lm, corpus.n_tokens, corpus.seed, cache_dir, progress))
    else:
        sequences = read_text_corpus(corpus.path, lm.tokenizer, corpus.n_tokens)
    moments = keys_second_moments_over(lm, sequences, missing, progress, batch_size)
    for layer in missing:
        C = moments[layer].moment()
        with atomic_path(paths[layer]) as tmp:
            save_file({"C": C}, str(tmp), metadata={"count": str(moments[layer].count), "layer": str(layer)})
        logger.info("key statistics for layer %d from %d tokens cached at %s", layer, moments[layer].count, paths[layer])
        result[layer] = C
    return result


def keys_second_moments_over(
    lm: LoadedModel, sequences: list, layers: list[int], progress: bool = True, batch_size: int = 16
) -> dict[int, SecondMoment]:
    """E[k kᵀ] of the keys at each of `layers` over `sequences` (token id lists, any lengths, right
    padded in batches: padding is not counted). One pass, stopped after the highest layer."""
    layers = sorted(layers)
    names = {layer: act_name("mlp_key", layer) for layer in layers}
    moments: dict[int, SecondMoment] = {}
    total = sum(len(s) for s in sequences)
    label = f"layer {layers[0]}" if len(layers) == 1 else f"layers {','.join(map(str, layers))}"
    with tqdm(total=total, desc=f"key statistics, {label}", unit="tok", disable=not progress) as bar:
        for start in range(0, len(sequences), batch_size):
            chunk = sequences[start : start + batch_size]
            width = max(len(s) for s in chunk)
            ids = torch.zeros((len(chunk), width), dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, seq in enumerate(chunk):
                ids[row, : len(seq)] = torch.as_tensor(seq)
                mask[row, : len(seq)] = 1
            ids, mask = ids.to(lm.device), mask.to(lm.device)
            cached = run_with_cache(lm, ids, list(names.values()), stop_after=names[layers[-1]])
            for layer, name in names.items():
                keys = cached[name]
                if layer not in moments:
                    moments[layer] = SecondMoment(keys.shape[-1])
                moments[layer].add(keys[mask.bool()].cpu())  # right padding: real tokens only
            bar.update(int(mask.sum()))
    return moments


# ----------------------------------------------------------------------------- earlier edits' keys

# The keys an edit was written for, as its patch carries them (AlphaEdit's K_p; MEMIT's and ROME's
# with preserve_edits): (d_in, n) at `keys.<layer>`, one column a request.
KEYS_ATTACHMENT = "keys.{layer}"


def preserved_keys(stack: PatchStack | None, layer: int, dim: int) -> torch.Tensor:
    """K_p K_pᵀ at `layer`: Σ K Kᵀ over the keys every applied patch carries for it."""
    total = torch.zeros(dim, dim, dtype=torch.float64)
    for patch in stack.applied if stack is not None else []:
        K = patch.attachments.get(KEYS_ATTACHMENT.format(layer=layer))
        if K is not None:
            K = K.to(torch.float64)
            total += K @ K.T
    return total


def preserved_edit_count(stack: PatchStack | None) -> int:
    """How many requests the applied patches wrote: the earlier edits a new one is asked to keep."""
    return sum(len(patch.requests) for patch in (stack.applied if stack is not None else []))
