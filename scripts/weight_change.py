"""How far each batch of a sequential run moved the edited matrices, for runs recorded before
batches.jsonl carried it (2026-12-02).

    python scripts/weight_change.py runs/seq-gemma3-cf-2000-postnorm [--methods memit,alphaedit]

A sequential run now records, with every batch, ‖W − W₀‖_F / ‖W₀‖_F of every matrix its stack has
edited so far (`weight_change` in batches.jsonl; `eval curves` draws the largest as a panel). For
a batch record without it, this applies the method's patches (METHOD/patches/, in order) to the
run's model and adds it: the same numbers the run would have written. Records that have it, or
whose patch is not on disk, are left as they were. batches.jsonl is rewritten whole (a temporary
file, then a rename), so do not run this beside the run that appends to it; it refuses if the
file changed while it worked. Then the run's curves.csv/png are redrawn. Seconds a batch, mostly
loading the patches.
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
from factpatch.editing.patch import PatchStack, load_patch
from factpatch.evaluation.run import read_config
from factpatch.evaluation.sequential import BATCHES, batch_store, write_curves

logger = logging.getLogger("weight_change")


def patch_files(run: Path, method: str) -> dict[str, Path]:
    """The method's patches on disk, by patch id (files are named NNNN-<id>.safetensors)."""
    return {p.stem.split("-", 1)[1]: p for p in sorted((run / method / "patches").glob("[0-9]*-*.safetensors"))}


def fill_in(run: Path, methods: list[str] | None, lm: LoadedModel | None = None) -> int:
    """Adds weight_change to the batch records of `run` that lack it; returns how many it filled.
    `lm`: the run's model, already loaded (default: loaded by the name in its config.json)."""
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
        if all("weight_change" in r for r in mine):
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
                stack.apply(load_patch(files[record["patch"]]))
                if "weight_change" not in record and stack.originals:
                    record["weight_change"] = {k: round(v, 6) for k, v in stack.relative_change().items()}
                    filled += 1
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
    logger.info("%s: weight_change added to %d batch records", args.run, filled)
    return 0


if __name__ == "__main__":
    sys.exit(main())
