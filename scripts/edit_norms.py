"""How far each edit of a sequential stack moves its matrix, and whether the edits add up or cancel.

    python scripts/edit_norms.py runs/seq-smollm2-cf-2000 --method rome [--out FILE.json]

For every delta of every patch in RUN/METHOD/patches/ (in stack order) and the matrix it edits:
‖Δᵢ‖_F / ‖W₀‖_F of the edit alone, and after each patch ‖Σ Δᵢ‖_F / ‖W₀‖_F (what the run records as
`weight_change`) beside √(Σ ‖Δᵢ‖²_F) / ‖W₀‖_F, which it equals when the edits are mutually
orthogonal (⟨Δᵢ, Δⱼ⟩_F = 0): above it they pile up in shared directions, below it they cancel.
ROME's patches hold one rank-one delta per edit, so that is one number per edit; a MEMIT or
AlphaEdit patch holds one delta per layer for the whole batch. Writes OUT (default
RUN/METHOD-edit-norms.json). Seconds, on the CPU: the deltas are formed one at a time in float64.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
from pathlib import Path

import torch

from factpatch.core.cache import write_text_atomic
from factpatch.core.errors import FactpatchError
from factpatch.core.models import load_model
from factpatch.editing.patch import load_patch
from factpatch.evaluation.run import read_config

logger = logging.getLogger("edit_norms")


def stack_files(run: Path, method: str) -> list[Path]:
    files = sorted((run / method / "patches").glob("*.safetensors"))
    if not files:
        raise FactpatchError(f"{run / method / 'patches'} holds no patches")
    return files


def edit_norms(run: Path, method: str) -> dict:
    config = read_config(run)
    lm = load_model(config["model"])
    if config.get("fingerprint") not in (None, lm.fingerprint):
        raise FactpatchError(f"{run} was run on other weights of {config['model']} than these (fingerprints differ)")
    params = dict(lm.model.named_parameters())
    original_norm: dict[str, float] = {}
    total: dict[str, torch.Tensor] = {}
    squares: dict[str, float] = {}
    per_edit: dict[str, list[float]] = {}
    after_patch = []
    for path in stack_files(run, method):
        patch = load_patch(path)
        for delta in patch.deltas:
            if delta.param not in params:
                raise FactpatchError(f"{path}: {delta.param} is not a parameter of {config['model']}")
            if delta.param not in total:
                w0 = params[delta.param].detach().double()
                original_norm[delta.param] = w0.norm().item()
                total[delta.param] = torch.zeros_like(w0)
                squares[delta.param] = 0.0
                per_edit[delta.param] = []
            d = delta.tensor().double()
            total[delta.param] += d
            relative = d.norm().item() / original_norm[delta.param]
            squares[delta.param] += relative ** 2
            per_edit[delta.param].append(round(relative, 6))
        after_patch.append({
            "patch": patch.id,
            "matrices": {param: {"weight_change": round(total[param].norm().item() / original_norm[param], 6),
                                 "orthogonal_sum": round(math.sqrt(squares[param]), 6),
                                 "edits_so_far": len(per_edit[param])}
                         for param in total},
        })
        logger.info("%s: %s", path.name, after_patch[-1]["matrices"])
    return {
        "run": str(run), "method": method, "model": config["model"],
        "after_patch": after_patch,
        "per_edit": {param: {"median": round(statistics.median(values), 6), "max": max(values),
                             "values": values}
                     for param, values in per_edit.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--method", required=True)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        record = edit_norms(args.run, args.method)
    except FactpatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = args.out or args.run / f"{args.method}-edit-norms.json"
    write_text_atomic(out, json.dumps(record, indent=1) + "\n")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
