"""Anchor subjects in AlphaEdit's K_p: does protecting the keys of *other* subjects keep the known facts?

    .venv/bin/python scripts/subject_anchors.py --run runs/seq-smollm2-cf-alphaedit-contexts \\
        --known ../shared/datasets/known_1000.json --out runs/alphaedit-sweep/anchors.jsonl \\
        --anchors 2000 --weights 0 0.1 0.3 1 3

scripts/known_facts_where.py found that three in four of the known facts AlphaEdit's sequential edits
take are lost through what the edits write at the *subject's* tokens: a subject's key overlaps the
edits' keys in the null space. AlphaEdit's K_p term keeps the outputs of the keys it holds (earlier
edits) where they were; this script adds the keys of `--anchors` other subjects to it, each weighted
by w (K_p K_pᵀ += w Σ k kᵀ), and writes the run's first batch (CounterFact 0–99, from the z the run
saved, `<run>/<method>/targets/0000.safetensors`, so every setting writes the same targets). The
anchors are the subjects of CounterFact records after the run's `--skip` (default 2000) whose
subject is neither a known_1000 subject (the facts scored) nor an edited case's, so nothing scored
is protected by name. Their key is read on the unedited model at the subject's last token, averaged
over the same contexts as an edit's key. One JSON line a weight: ES / PS / NS of the batch and the
known facts the unedited model gets right that it still gets right (as scripts/alphaedit_sweep.py).
A few minutes a weight on a CPU; a rerun skips the weights already written.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path

import torch

from factpatch.core.hooks import act_name
from factpatch.core.models import load_model
from factpatch.editing.stats import KEYS_ATTACHMENT
from factpatch.editing.memit import TargetValues, context_weights, read_at_subject
from factpatch.editing.patch import Patch, applied
from factpatch.editing.registry import make_editor, method_params
from factpatch.evaluation.data import load_dataset
from factpatch.evaluation.health import KnownFacts
from factpatch.evaluation.run import score_case

logger = logging.getLogger("subject_anchors")


class AnchorStack:
    """What AlphaEdit reads of a patch stack (`applied`): one patch that changes no weight and
    carries the anchors' keys, √w k per column, at every edited layer."""

    def __init__(self, keys: dict[int, torch.Tensor], weight: float):
        self.applied = [Patch([], {}, {KEYS_ATTACHMENT.format(layer=l): K * weight**0.5 for l, K in keys.items()})] if weight else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, type=Path, help="a sequential run directory whose batch 0 z is saved")
    parser.add_argument("--method", default="alphaedit")
    parser.add_argument("--known", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--anchors", type=int, default=2000)
    parser.add_argument("--skip", type=int, default=2000, help="anchors come from records after this many")
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.1, 0.3, 1.0])
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    saved = args.run / args.method / "targets" / "0000.safetensors"
    if not (args.run / "config.json").is_file() or not saved.is_file():
        parser.error(f"{args.run} is not a sequential run with {args.method}'s batch 0 targets ({saved})")
    config = json.loads((args.run / "config.json").read_text())
    batch = int(config["batch_size"])
    dataset = load_dataset(config["dataset"]["name"])
    cases = dataset.cases[:batch]
    requests = [c.request for c in cases]
    excluded = {f["subject"].strip().lower() for f in json.loads(args.known.read_text())}
    excluded |= {c.request.subject.strip().lower() for c in dataset.cases[: args.skip]}
    anchors, seen = [], set()
    for case in dataset.cases[args.skip :]:
        subject = case.request.subject.strip().lower()
        if subject not in excluded and subject not in seen:
            anchors.append(case.request)
            seen.add(subject)
        if len(anchors) == args.anchors:
            break
    if len(anchors) < args.anchors:
        parser.error(f"only {len(anchors)} anchor subjects after record {args.skip}")

    done = set()
    if args.out.exists():
        done = {(r["run"], r["anchors"], r["weight"]) for r in map(json.loads, args.out.read_text().splitlines())}
    lm = load_model(config["model"])
    if lm.fingerprint != config["fingerprint"]:
        parser.error("the model's weights are not the run's")
    params = method_params(lm, args.method, {})  # the defaults: batch 0's z does not depend on the rest
    editor = make_editor(lm, args.method, params, progress=False)
    targets = TargetValues.load(saved, requests)
    known = KnownFacts.check(lm, args.known)

    started = time.perf_counter()
    weights = context_weights(params.prefix_spec())
    names = [act_name("mlp_key", layer) for layer in params.layers]
    read = read_at_subject(lm, anchors, editor.prefixes, names)
    keys = {layer: torch.einsum("npd,p->dn", read[name], weights) for layer, name in zip(params.layers, names)}
    logger.info("anchor keys of %d subjects read in %.0f s", len(anchors), time.perf_counter() - started)

    for weight in args.weights:
        if (str(args.run), args.anchors, weight) in done:
            continue
        started = time.perf_counter()
        patch, _ = editor.patch_and_targets(requests, AnchorStack(keys, weight), targets=targets)
        with applied(lm, [patch]):
            metrics = [score_case(lm, c)[0] for c in cases]
            kept, total = known.kept(lm, [r.subject for r in requests])
        row = {"run": str(args.run), "method": args.method, "anchors": args.anchors, "weight": weight,
               "n": len(cases), "seconds": round(time.perf_counter() - started, 1),
               **{name: round(statistics.mean(m[name] for m in metrics), 4) for name in ("ES", "PS", "NS")},
               "known_kept": kept, "known_total": total, "known_share": round(kept / total, 4)}
        logger.info("%s", json.dumps(row))
        with args.out.open("a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
