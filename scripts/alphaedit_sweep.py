"""AlphaEdit's null space and α on one batch: what each setting writes and what it keeps.

The first batch of a sequential run, edited with several settings from the same z (z depends only
on the unedited model and the top layer of the range, so it is computed once and cached): ES, PS,
NS over the batch's cases and the known_1000 facts the unedited model gets right that it still
gets right. One JSON line per setting, appended (a rerun skips the settings already written).

    .venv/bin/python scripts/alphaedit_sweep.py --out runs/alphaedit-sweep/smollm2.jsonl \\
        --dataset counterfact:../shared/datasets/counterfact-train.json \\
        --known ../shared/datasets/known_1000.json --n 100

`--run RUN` takes the model, the cases and z from a sequential run (its first batch, the z it saved in
`RUN/<method>/targets/0000.safetensors`), for the settings whose top layer is the run's: no z to
compute, and the run's own settings (`method:`) rebuild the run's first batch. Its rows go to `--out` as usual.

`--corpus-tokens` sets how many self-sampled tokens C is estimated from (the setting is then
recorded as `...@TOKENS`); `--corpus-path` estimates C from a text file instead (`...@NAME:TOKENS`). Settings are `--grid` entries, `method:key=value,key=value` (e.g. `alphaedit:nullspace_energy=0.01,L2=1`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import statistics
import time
from pathlib import Path

import torch

from factpatch.core.models import load_model
from factpatch.editing import memit as memit_module
from factpatch.editing.alphaedit import AlphaEditParams
from factpatch.editing.memit import TargetValues
from factpatch.editing.patch import applied
from factpatch.core.errors import FactpatchError
from factpatch.editing.registry import make_editor, method_params, parse_methods, parse_overrides
from factpatch.editing.stats import CorpusSpec
from factpatch.evaluation.data import load_dataset
from factpatch.evaluation.health import KnownFacts
from factpatch.evaluation.run import score_case

logger = logging.getLogger("alphaedit_sweep")

DEFAULT_GRID = [
    "none:",
    "memit:",
    "alphaedit:nullspace_energy=0.1",
    "alphaedit:nullspace_energy=0.01",
    "alphaedit:nullspace_energy=0.01,L2=1",
    "alphaedit:nullspace_energy=0.01,L2=0.1",
    "alphaedit:nullspace_energy=0.03",
    "alphaedit:nullspace_energy=0.03,L2=1",
]


def parse_setting(text: str) -> tuple[str, dict[str, str]]:
    """"memit:v_lr=1.0,prefixes=[[5,10],[5,20]]" -> ("memit", {"v_lr": "1.0", "prefixes": "[[5,10],[5,20]]"}):
    commas inside brackets belong to the value."""
    method, _, rest = text.partition(":")
    parts, depth, current = [], 0, ""
    for char in rest:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    pairs = [p.split("=", 1) for p in parts if p.strip()]
    return method.strip(), {k.strip(): v.strip() for k, v in pairs}


def cached_targets(path: Path):
    """compute_targets that reads and writes `path` (Z, steps and probabilities of the batch)."""
    real = memit_module.compute_targets

    def compute(lm, requests, params, prefixes, progress=True):
        key = {"layer": params.z_layer, "requests": [r.to_dict() for r in requests],
               "value": dataclasses.asdict(params.value_settings()), "prefixes": prefixes}
        if path.exists():
            stored = torch.load(path, weights_only=False)
            if stored["key"] == key:
                return stored["targets"]
        targets = real(lm, requests, params, prefixes, progress)
        torch.save({"key": key, "targets": targets}, path)
        return targets

    return compute


# what z depends on besides the requests and the top layer (BatchEditParams.value_settings, the contexts)
Z_SETTINGS = ("v_steps", "v_lr", "kl_weight", "weight_decay", "clamp_factor", "early_stop_nll", "essence_prompt",
              "v_dtype", "prefixes", "prefix_starts", "seed")


def same_z_settings(params: dict, run_hparams: dict) -> bool:
    return all(json.dumps(params.get(k)) == json.dumps(run_hparams.get(k)) for k in Z_SETTINGS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--dataset", help="KIND:PATH (required unless --run gives it)")
    parser.add_argument("--known", required=True, type=Path)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--grid", nargs="*", default=DEFAULT_GRID)
    parser.add_argument("--corpus-tokens", type=int, default=CorpusSpec().n_tokens,
                        help="self-sampled tokens behind C (default: factpatch's)")
    parser.add_argument("--corpus-path", type=Path, help="estimate C from this text file instead (scripts/entity_corpus.py)")
    parser.add_argument("--run", type=Path, help="a sequential run: its model, first batch and saved z (see above)")
    args = parser.parse_args()
    if args.run is not None:
        config_path = args.run / "config.json"
        if not config_path.is_file():
            parser.exit(2, f"error: --run {args.run}: not a sequential run (no config.json)\n")
        run_config = json.loads(config_path.read_text())
        args.model, args.dataset, args.n = run_config["model"], run_config["dataset"]["name"], int(run_config["batch_size"])
    elif args.dataset is None:
        parser.exit(2, "error: --dataset or --run is required\n")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for entry in args.grid:  # every setting checked before the model loads
        method, overrides = parse_setting(entry)
        try:
            parse_overrides([f"{method}.{k}={v}" for k, v in overrides.items()] or None)
            parse_methods(method)
        except FactpatchError as exc:
            parser.exit(2, f"error: --grid {entry!r}: {exc}\n")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    # a setting is done for the corpus it was measured with (rows before the key was recorded: the
    # corpus `generate` drew, which the top-k-first sampler replaced)
    done = {(r["setting"], json.dumps(r.get("corpus"), sort_keys=True))
            for r in map(json.loads, args.out.read_text().splitlines())} if args.out.exists() else set()
    memit_module.compute_targets = cached_targets(args.out.with_suffix(".z.pt"))

    lm = load_model(args.model)
    cases = load_dataset(args.dataset).select(args.n)
    requests = [c.request for c in cases]
    run_targets: dict[str, tuple[int, dict, TargetValues]] = {}  # method: (top layer, hparams, batch 0's z) of --run
    if args.run is not None:
        if lm.fingerprint != run_config["fingerprint"]:
            parser.exit(2, f"error: --run {args.run}: the model's weights are not the run's\n")
        for method in run_config["methods"]:
            saved = args.run / method / "targets" / "0000.safetensors"
            if saved.is_file():
                layers = run_config["hparams"][method]["layers"]
                run_targets[method] = (max(layers), run_config["hparams"][method], TargetValues.load(saved, requests))
    known = KnownFacts.check(lm, args.known)
    subjects = [r.subject for r in requests]
    corpus = CorpusSpec(path=args.corpus_path, n_tokens=args.corpus_tokens)
    suffix = "" if args.corpus_tokens == CorpusSpec().n_tokens else f"@{args.corpus_tokens}"
    if args.corpus_path is not None:
        suffix = f"@{args.corpus_path.name}:{args.corpus_tokens}"
    for entry in args.grid:
        setting = entry + suffix
        if (setting, json.dumps(corpus.key(), sort_keys=True)) in done:
            continue
        method, overrides = parse_setting(entry)
        params = method_params(lm, method, overrides)
        editor = make_editor(lm, method, params, progress=False, corpus=corpus)
        started = time.perf_counter()
        # z does not depend on the method: any of the run's methods with the same top layer and z settings
        source = next((m for m in [method, *run_targets] if m in run_targets and run_targets[m][0] == params.z_layer
                       and same_z_settings(params.to_dict(), run_targets[m][1])), None)
        if source is not None:
            patch, _ = editor.patch_and_targets(requests, targets=run_targets[source][2])
            row_source = {"z_from": str(args.run / source)}
        else:
            patch, row_source = editor.patch(requests), {}
        seconds = time.perf_counter() - started
        row: dict = {"setting": setting, "model": lm.name, "n": len(cases), "corpus_tokens": corpus.n_tokens, "corpus": corpus.key(), "edit_seconds": round(seconds, 1),
                     "params": params.to_dict(), **row_source}
        if isinstance(params, AlphaEditParams):
            row["nullspace_rank"] = patch.meta.get("nullspace_rank")
        with applied(lm, [patch]):
            metrics = [score_case(lm, c)[0] for c in cases]
            kept, total = known.kept(lm, subjects)
        for name in ("ES", "PS", "NS"):
            row[name] = round(statistics.mean(m[name] for m in metrics), 4)
        row.update(known_kept=kept, known_total=total, known_share=round(kept / total, 4),
                   p_target_z=round(statistics.mean(patch.meta["p_target_z"]), 4) if "p_target_z" in patch.meta else None)
        logger.info("%s", json.dumps(row))
        with args.out.open("a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
