"""The self-sampled corpus for C drawn in float32 against bfloat16, side by side in one process.

Issue 17's first-edit lever: sampling the 20,480-token corpus is most of the first edit, and it is
matrix products that bfloat16 runs several times faster on CPUs with bf16 dot products. The draw
is random anyway; what matters is whether C, computed from the corpus in float32 either way, is
as good. So this script times both samplers (alternating which goes first) and compares

- C from the bfloat16 corpus with C from the float32 corpus (same seed), against
- C from the float32 corpus with C from a float32 corpus of another seed: the sampling noise.

If the first difference is no larger than the second, the two corpora give C of the same quality
as far as any one corpus can. ROME's ES / PS / NS on CounterFact with each C is the check that
counts (docs say which run).

    python benchmarks/sampling_precision.py --json OUT.json [--model gemma3-270m] [--layers 4]

Run it alone: two CPU-bound processes on two cores slow each other many-fold.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import tempfile
import time
from pathlib import Path

import torch

from factpatch.core.cache import write_text_atomic
from factpatch.core.models import cast_copy, load_model
from factpatch.editing.stats import keys_second_moments_over, sample_token_corpus

logger = logging.getLogger("sampling_precision")


def sample(lm, n_tokens: int, seed: int) -> tuple[torch.Tensor, float]:
    """The corpus as factpatch draws it (`sample_token_corpus`, nothing shipped or cached): (ids, seconds)."""
    with tempfile.TemporaryDirectory() as scratch:
        began = time.perf_counter()
        ids = sample_token_corpus(lm, n_tokens, seed, Path(scratch), progress=False, use_shipped=False)
        return ids, time.perf_counter() - began


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.matrix_norm(a - b) / torch.linalg.matrix_norm(b))


def subspace_overlap(a: torch.Tensor, b: torch.Tensor, share: float = 0.9) -> float:
    """How much of b's leading eigen-subspace (the directions holding `share` of its trace) a's
    subspace of the same rank contains: 1 = the same directions."""
    values_b, vectors_b = torch.linalg.eigh(b.double())
    _, vectors_a = torch.linalg.eigh(a.double())
    cumulative = values_b.flip(0).cumsum(0) / values_b.sum()
    rank = int((cumulative < share).sum()) + 1
    top_a, top_b = vectors_a[:, -rank:], vectors_b[:, -rank:]
    return float(torch.linalg.matrix_norm(top_a.T @ top_b) ** 2 / rank)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--n-tokens", type=int, default=20_480)
    parser.add_argument("--rounds", type=int, default=2, help="timed draws per precision")
    parser.add_argument("--layers", default="4", help="layers whose C is compared, comma-separated")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    lm = load_model(args.model)
    lm_bf16 = cast_copy(lm, torch.bfloat16)
    samplers = {"float32": lm, "bfloat16": lm_bf16}
    seconds: dict[str, list[float]] = {name: [] for name in samplers}
    corpora: dict[str, torch.Tensor] = {}
    for round_ in range(args.rounds):
        order = list(samplers) if round_ % 2 == 0 else list(samplers)[::-1]
        for name in order:
            ids, took = sample(samplers[name], args.n_tokens, seed=0)
            seconds[name].append(round(took, 2))
            logger.info("%s: %.1f s (%.0f tok/s)", name, took, ids.numel() / took)
            if name in corpora and not torch.equal(corpora[name], ids):
                logger.warning("%s drew another corpus from the same seed", name)
            corpora[name] = ids
    corpora["float32 seed 1"], _ = sample(lm, args.n_tokens, seed=1)

    layers = [int(x) for x in args.layers.split(",")]
    moments = {name: keys_second_moments_over(lm, list(ids), layers, progress=False) for name, ids in corpora.items()}
    comparison = {}
    for layer in layers:
        C = {name: moments[name][layer].moment() for name in corpora}
        comparison[layer] = {
            "bf16 corpus vs fp32 corpus, same seed": {
                "relative_frobenius": round(relative(C["bfloat16"], C["float32"]), 4),
                "top_subspace_overlap": round(subspace_overlap(C["bfloat16"], C["float32"]), 4)},
            "fp32 seed 1 vs fp32 seed 0 (sampling noise)": {
                "relative_frobenius": round(relative(C["float32 seed 1"], C["float32"]), 4),
                "top_subspace_overlap": round(subspace_overlap(C["float32 seed 1"], C["float32"]), 4)},
        }
        logger.info("layer %d: %s", layer, comparison[layer])
    same_tokens = float((corpora["bfloat16"] == corpora["float32"]).float().mean())
    result = {
        "benchmark": "sampling_precision", "model": args.model, "n_tokens": args.n_tokens,
        "seconds": seconds, "tokens_per_second": {k: round(corpora[k].numel() / min(v), 1) for k, v in seconds.items()},
        "speedup_best": round(min(seconds["float32"]) / min(seconds["bfloat16"]), 3),
        "share_of_tokens_equal_bf16_vs_fp32": round(same_tokens, 4),
        "C": comparison, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    text = json.dumps(result, indent=2)
    if args.json:
        write_text_atomic(args.json, text + "\n")
    logger.info("%s", text)


if __name__ == "__main__":
    main()
