"""Fills in the batch records of sequential runs made before batches.jsonl carried these fields.

    python scripts/fill_batch_records.py runs/seq-gemma3-cf-2000-postnorm [--methods memit,alphaedit]

A sequential run now records, with every batch,
- `weight_change`: ‖W − W₀‖_F / ‖W₀‖_F of every matrix its stack has edited so far (since
  2026-12-02 morning; `eval curves` draws the largest as a panel), and
- `v_star_norm_mean` / `v_star_norm_max`: ‖v*‖ = ‖z − r‖ of the batch's requests, what each asks of
  the last edited layer's MLP (editing/anchor.py; MEMIT and AlphaEdit, since 2026-12-02 noon).
For a batch record without them, this applies the method's patches (METHOD/patches/, in order) to
the run's model and adds them: the same numbers the run would have written (‖v*‖ needs the
batch's saved z, METHOD/targets/NNNN.safetensors, read on the model with the earlier batches
applied). Records that have them, or whose patch is not on disk, are left as they were.
batches.jsonl is rewritten whole (a temporary file, then a rename), so do not run this beside the
run that appends to it; it refuses if the file changed while it worked. Then the run's
curves.csv/png are redrawn. Seconds a batch, mostly loading the patches.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from factpatch.core.cache import write_text_atomic
from factpatch.core.errors import FactpatchError
from factpatch.core.models import LoadedModel, load_model
from factpatch.editing.memit import TargetValues, mlp_split_at_subject
from factpatch.editing.patch import PatchStack, load_patch
from factpatch.editing.request import EditRequest
from factpatch.evaluation.run import read_config
from factpatch.evaluation.sequential import BATCHES, TARGETS, batch_store, write_curves

logger = logging.getLogger("fill_batch_records")


def patch_files(run: Path, method: str) -> dict[str, Path]:
    """The method's patches on disk, by patch id (files are named NNNN-<id>.safetensors)."""
    return {p.stem.split("-", 1)[1]: p for p in sorted((run / method / "patches").glob("[0-9]*-*.safetensors"))}


def v_star_norms(lm: LoadedModel, patch, targets_file: Path) -> list[float]:
    """‖z − r‖ of each request of a batch, from its saved z, on the model as the batch found it."""
    requests = [EditRequest.from_dict(r) for r in patch.requests]
    Z = TargetValues.load(targets_file, requests).Z
    _, r = mlp_split_at_subject(lm, requests, patch.meta["layers"][-1])
    return [round(float(x), 4) for x in (Z.to(r.device) - r).norm(dim=-1)]


def _missing(record: dict) -> bool:
    return "weight_change" not in record or "v_star_norm_mean" not in record


def fill_in(run: Path, methods: list[str] | None, lm: LoadedModel | None = None) -> int:
    """Adds weight_change, and ‖v*‖ where the batch's z is on disk, to the batch records of `run`
    that lack them; returns how many records it changed. `lm`: the run's model, already loaded
    (default: loaded by the name in its config.json)."""
    description = read_config(run)
    if description.get("protocol") != "sequential":
        raise FactpatchError(f"{run} holds a single-edit run: only sequential runs have batches (eval --sequential)")
    store = batch_store(run / BATCHES)
    before = store.path.read_bytes()
    records = store.load(repair=False)
    wanted = [m for m in description["methods"] if methods is None or m in methods]
    filled = 0
    for method in wanted:
        mine = sorted((r for r in records if r["method"] == method), key=lambda r: r["batch"])
        if not any(_missing(r) for r in mine):
            continue
        files = patch_files(run, method)
        if lm is None:
            lm = load_model(description["model"])
            if lm.fingerprint != description["fingerprint"]:
                raise FactpatchError(f"{description['model']} is not the model {run} was run on (fingerprint differs)")
        stack = PatchStack(lm)
        try:
            for record in mine:
                if record["patch"] not in files:
                    logger.warning("%s batch %d: patch %s is not on disk; this and later batches stay as they are",
                                   method, record["batch"], record["patch"])
                    break
                patch = load_patch(files[record["patch"]])
                changed = False
                z_file = run / method / TARGETS / f"{record['batch']:04d}.safetensors"
                if "v_star_norm_mean" not in record and z_file.exists():  # before the batch is applied
                    norms = v_star_norms(lm, patch, z_file)
                    record["v_star_norm_mean"] = round(sum(norms) / len(norms), 4)
                    record["v_star_norm_max"] = max(norms)
                    changed = True
                stack.apply(patch)
                if "weight_change" not in record and stack.originals:
                    record["weight_change"] = {k: round(v, 6) for k, v in stack.relative_change().items()}
                    changed = True
                filled += changed
        finally:
            stack.revert()
    if filled:
        if store.path.read_bytes() != before:
            raise FactpatchError(f"{store.path} changed while this ran (is the run still going?); nothing written")
        write_text_atomic(store.path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        write_curves(run, description)
    return filled


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--methods", help="comma-separated; default: every method of the run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        filled = fill_in(args.run, args.methods.split(",") if args.methods else None)
    except FactpatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logger.info("%s: %d batch records filled in", args.run, filled)
    return 0


if __name__ == "__main__":
    sys.exit(main())
