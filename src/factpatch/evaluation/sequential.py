"""`factpatch eval --sequential`: many edits in a row, never reverted, the model measured as it goes.

The protocol of MEMIT's and AlphaEdit's sequential tables: the first N cases of a data set are
edited in batches of B, each batch on the model with all earlier batches applied; after the last
batch *every* edited case is scored on the final model. With `checkpoint_every` K, the cases
edited so far are also scored after every K edits, which gives the curves (metric against number
of edits, one line per method). At every checkpoint the run also measures damage beyond the
edited facts (health.py): known facts kept and perplexity on a fixed text.

Layout of DIR (everything resumable; a killed run continues from the last complete batch):

    config.json                       what identifies the run (refused if it differs)
    <method>/patches/NNNN-<id>.safetensors   the stack, one patch per batch: the checkpoint
    <method>/targets/NNNN.safetensors        MEMIT/AlphaEdit: each batch's z (step 1, nearly all of
                                      its time; ~0.2 MB a batch of 100 where a patch is ~7 MB). Without
                                      the patches (unversioned), a resumed run rebuilds them from
                                      these in seconds a batch: the same bits on the same code
    results.jsonl                     one line per (method, checkpoint, case): metrics and raw scores
    health.jsonl                      one line per (method, checkpoint): known facts kept (and their answers'
                                      log-probability change), perplexity
                                      (and, as each case record, the seconds it took)
    batches.jsonl                     one line per (method, batch): seconds, z steps, null-space ranks,
                                      ‖W − W₀‖/‖W₀‖ of every matrix the stack has edited so far
    summary.json|.md|.csv             the final checkpoint, with 95 % bootstrap intervals
    curves.csv, curves.png            every checkpoint, every method

Per-case scores are the single-edit evaluation's (factpatch.evaluation.run): ES/PS/NS and magnitudes
for CounterFact, token accuracies for zsRE. `none` (the unedited model, the baseline of every
comparison) scores each case once: at later checkpoints the model is the same, so its record is
written again for that checkpoint (with 2,000 cases and a checkpoint every 100 edits, 2,000
scorings instead of 21,000).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from ..core.cache import file_sha256, write_text_atomic
from ..core.errors import FactpatchError
from ..core.models import LoadedModel, weights_fingerprint
from ..core.runstore import RunLock, RunStore
from ..editing.memit import TargetValues
from ..editing.patch import Patch, PatchStack, applied, load_patch, save_patch
from ..editing.registry import make_editor, method_params
from ..editing.request import EditRequest, conflicting
from ..editing.stats import CorpusSpec
from .data import Case, Dataset
from .health import KnownFacts, known_record, perplexity, perplexity_text
from .curves import curve_rows, curves_csv, plot_curves, run_title
from .generation import GenerationSettings, case_generations
from .run import RESULTS, check_out_dir, run_description, score_case
from .summary import (
    against_unedited,
    against_unedited_lines,
    describe_generation,
    summarize,
    summary_csv,
    summary_table,
)

logger = logging.getLogger(__name__)

HEALTH = "health.jsonl"
BATCHES = "batches.jsonl"
TARGETS = "targets"  # <method>/targets/NNNN.safetensors: a batch method's z, enough to rebuild its patch
# 2: EM/PM/NM from exp(−mean token NLL), the paper's summarize.py (1: whole-sequence probabilities;
# scripts/recompute_magnitudes.py brings format-1 records up to date from their raw scores)
FORMAT_VERSION = 2


@dataclass(frozen=True)
class SequentialSettings:
    methods: list[str]
    n: int  # edits in all: the first n cases
    batch_size: int
    checkpoint_every: int | None = None  # edits between intermediate scorings (a multiple of batch_size)
    generation_cases: int = 0  # cases whose generations are scored at the final checkpoint
    known_path: Path | None = None  # known_1000-style facts for "known facts kept"
    perplexity_tokens: int = 2048
    seed: int = 0
    overrides: dict[str, dict[str, str]] = field(default_factory=dict)
    gen: GenerationSettings = GenerationSettings()
    corpus: CorpusSpec = CorpusSpec()  # key statistics (default: the model's own samples)
    preset: str | None = None  # editing.registry.PRESETS, under `overrides`; the resolved hparams are recorded

    def __post_init__(self):
        if self.batch_size < 1:
            raise FactpatchError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.n < 1:
            raise FactpatchError(f"--n must be at least 1, got {self.n}")
        if self.checkpoint_every is not None:
            if self.checkpoint_every < 1 or self.checkpoint_every % self.batch_size:
                raise FactpatchError(
                    f"--checkpoint-every must be a positive multiple of --batch-size ({self.batch_size}), "
                    f"got {self.checkpoint_every}"
                )
        if self.known_path is not None and not Path(self.known_path).is_file():
            raise FactpatchError(f"known-facts file not found: {self.known_path}")
        if self.generation_cases < 0 or self.perplexity_tokens < 16:
            raise FactpatchError("--generation-cases must be >= 0 and the perplexity text at least 16 tokens")

    def checkpoints(self) -> list[int]:
        """Edit counts at which the model is scored (always including the last)."""
        return checkpoints_of(self.n, self.batch_size, self.checkpoint_every)


def checkpoints_of(n: int, batch_size: int, every: int | None) -> list[int]:
    """The edit counts a run of `n` edits in batches of `batch_size` is scored at: every `every`
    edits that end a batch, and always the last (a run's config.json holds all three)."""
    ends = list(range(batch_size, n, batch_size)) + [n]
    return [e for e in ends if e == n or (every is not None and e % every == 0)]


def describe(lm: LoadedModel, dataset: Dataset, config: SequentialSettings, hparams: dict) -> dict:
    """The description of a sequential run (run.run_description)."""
    known = file_sha256(config.known_path) if config.known_path is not None else None
    return run_description(
        lm, dataset, config.methods, hparams, FORMAT_VERSION,
        protocol="sequential",
        n=config.n,
        batch_size=config.batch_size,
        checkpoint_every=config.checkpoint_every,
        generation_cases=config.generation_cases,
        generation=dataclasses.asdict(config.gen),
        known_sha256=known,
        perplexity_tokens=config.perplexity_tokens,
        seed=config.seed,
        corpus=config.corpus.record(),
    )


def batch_store(path: Path) -> RunStore:
    """batches.jsonl: what each batch cost, read from its patch (also for batches resumed from disk)."""
    return RunStore(path, required=("method", "batch"))


def batch_record(method: str, batch: int, patch, stack: PatchStack) -> dict:
    """What batch `batch` cost and did; `stack` holds it and every earlier batch, applied."""
    steps = patch.meta.get("v_steps_run")
    record = {"method": method, "batch": batch, "edits": len(patch.requests), "patch": patch.id,
              "seconds": patch.meta.get("batch_seconds")}
    if stack.originals:  # how far the stack so far has moved each edited matrix (`none` edits none)
        record["weight_change"] = {name: round(change, 6) for name, change in stack.relative_change().items()}
    if isinstance(steps, list) and steps:
        record["z_steps_mean"] = round(sum(steps) / len(steps), 2)
    conflicts = conflicting([EditRequest.from_dict(r) for r in patch.requests])
    if conflicts:  # cases of the data set that ask for two targets for one fact, edited together
        record["conflicting_requests"] = len(conflicts)
    for key in ("nullspace_rank", "preserved_edits", "norm_anchor"):
        if key in patch.meta:
            record[key] = patch.meta[key]
    norms = patch.meta.get("v_star_norm")
    if isinstance(norms, list) and norms:  # what the batch asked of L's MLP (editing/anchor.py)
        record["v_star_norm_mean"] = round(sum(norms) / len(norms), 4)
        record["v_star_norm_max"] = max(norms)
    if "norm_anchor_skipped" in patch.meta:
        record["norm_anchor_skipped"] = len(patch.meta["norm_anchor_skipped"])
    return record


def health_store(path: Path) -> RunStore:
    """health.jsonl: one line per (method, checkpoint)."""
    return RunStore(path, required=("method", "edits"))


def case_store(path: Path) -> RunStore:
    """results.jsonl: one line per (method, checkpoint, case)."""
    return RunStore(path, required=("method", "edits", "case_id"))


@dataclass
class SequentialRun:
    out_dir: Path
    records: list[dict]  # final-checkpoint case records
    health: list[dict]
    summary: dict
    final_health: dict[str, dict]  # method (and "unedited") -> perplexity, known_share at the end
    seconds: float


def _patch_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("[0-9][0-9][0-9][0-9]-*.safetensors"))


def edit_batch(editor, requests: list[EditRequest], stack: PatchStack, b: int, target_dir: Path,
               recorded: dict | None) -> Patch:
    """Batch `b`'s patch: made afresh (its step-1 targets saved to `target_dir` where the method has
    them), or rebuilt from the targets an earlier session saved, which skips nearly all the work."""
    if not hasattr(editor, "patch_and_targets"):  # ROME, fine-tuning: nothing cheaper to keep
        started = time.perf_counter()
        patch = editor.patch(requests, stack)
        patch.meta.update(batch=b, batch_seconds=round(time.perf_counter() - started, 3))
        return patch
    saved = target_dir / f"{b:04d}.safetensors"
    if saved.exists():
        patch, _ = editor.patch_and_targets(requests, stack, TargetValues.load(saved, requests))
        patch.meta.update(batch=b, batch_seconds=recorded.get("seconds") if recorded else None, rebuilt=True)
        if recorded is not None and recorded.get("patch") != patch.id:
            # Same code and state give the same bits; another machine or version may not.
            logger.warning("batch %d rebuilt from %s as patch %s, recorded as %s: the run continues on "
                           "slightly different weights", b, saved, patch.id, recorded.get("patch"))
        return patch
    started = time.perf_counter()
    patch, targets = editor.patch_and_targets(requests, stack)
    patch.meta.update(batch=b, batch_seconds=round(time.perf_counter() - started, 3))
    targets.save(saved, requests)
    return patch


def rebuild_patches(lm: LoadedModel, out_dir: Path, method: str, cache_dir: Path | None = None,
                    progress: bool = True, accept_drift: bool = False, edits: int | None = None) -> list[Path]:
    """Write the patch files of `method`'s batches that a run directory lacks (they are not
    versioned: docs/mass-editing.md), rebuilt from the z each batch saved, in order on the stack of
    the batches before it, with the run's recorded settings. Each rebuilt patch must have the id
    its batch record holds, or nothing more is written. With `accept_drift` (to study a stack made
    on another machine, whose floating point differs in the last bits) a patch whose id differs is
    written under its own id, and how far the stack's ‖W − W₀‖/‖W₀‖ strays from the batch record's
    is logged: the run's scores are not those of the rebuilt stack. Holds the directory's RunLock
    while it works, so it refuses a run still going there. With `edits`, only the batches that hold
    the first `edits` edits (rounded up to whole batches). Returns the files written."""
    from .run import read_config

    out_dir = Path(out_dir)
    config = read_config(out_dir)
    with RunLock() as lock:  # the run itself must not write beside the rebuild: both would add patches
        lock.take(out_dir)
        return _rebuild_held(lm, out_dir, config, method, cache_dir, progress, accept_drift, edits)


def _rebuild_held(lm: LoadedModel, out_dir: Path, config: dict, method: str, cache_dir: Path | None,
                  progress: bool, accept_drift: bool, edits: int | None) -> list[Path]:
    """rebuild_patches' work, with the run directory held."""
    from .data import load_dataset
    from ..editing.registry import params_from_record

    if config.get("protocol") != "sequential" or method not in config.get("hparams", {}):
        raise FactpatchError(f"{out_dir} holds no sequential run of {method}")
    if config["fingerprint"] != lm.fingerprint:
        raise FactpatchError(f"{out_dir} was run on another model ({config['model']}) than the one loaded")
    dataset = load_dataset(config["dataset"]["name"], config["dataset"].get("zsre_target", "paper"))
    if dataset.sha256 != config["dataset"].get("sha256"):
        raise FactpatchError(f"{config['dataset']['name']} is not the data set {out_dir} was run on")
    recorded = {r["batch"]: r for r in batch_store(out_dir / BATCHES).load() if r["method"] == method}
    size = int(config["batch_size"])
    if edits is not None:
        if edits > size * len(recorded):
            raise FactpatchError(f"{out_dir} holds {size * len(recorded)} edits of {method}, not {edits}")
        recorded = {b: r for b, r in recorded.items() if b < -(-edits // size)}
    cases = dataset.select(size * len(recorded))
    spec = CorpusSpec.from_record(config["corpus"])
    editor = make_editor(lm, method, params_from_record(method, config["hparams"][method]), cache_dir, progress, spec)
    patch_dir, target_dir = out_dir / method / "patches", out_dir / method / TARGETS
    on_disk = {path.name.split("-", 1)[1].removesuffix(".safetensors"): path for path in _patch_files(patch_dir)}
    written: list[Path] = []
    with applied(lm, []) as stack:
        for b in tqdm(sorted(recorded), desc=f"{method}: rebuilding patches", unit="batch", disable=not progress):
            want = recorded[b]["patch"]
            drifted = next((path for path in on_disk.values() if path.name.startswith(f"{b:04d}-")), None)
            if want in on_disk or (accept_drift and drifted is not None):  # a drifted one, once written, stays
                stack.apply(load_patch(on_disk[want] if want in on_disk else drifted))
                continue
            if not (target_dir / f"{b:04d}.safetensors").exists():
                raise FactpatchError(f"batch {b} of {method} has neither its patch nor its saved z in {out_dir}")
            requests = [c.request for c in cases[b * size : (b + 1) * size]]
            editor.prepare(stack)
            patch = edit_batch(editor, requests, stack, b, target_dir, recorded[b])
            if patch.id != want and not accept_drift:
                raise FactpatchError(f"batch {b} of {method} rebuilt as patch {patch.id}, recorded as {want}: "
                                     "not the run's weights (another code version or machine?); nothing more written")
            patch_dir.mkdir(parents=True, exist_ok=True)
            written.append(save_patch(patch, patch_dir / f"{b:04d}-{patch.id}.safetensors"))
            stack.apply(patch)
            if patch.id != want:
                logger.warning("batch %d: ‖W − W₀‖/‖W₀‖ of the rebuilt stack differs from the record's "
                               "by at most %.2g", b, _record_drift(stack, recorded[b]))
    return written


def _record_drift(stack: PatchStack, record: dict) -> float:
    """The largest |change now − change recorded| over the matrices the batch record names (nan if none)."""
    recorded = record.get("weight_change") or {}
    now = stack.relative_change()
    return max((abs(now[name] - value) for name, value in recorded.items() if name in now), default=float("nan"))


def method_complete(method: str, cases: list[Case], config: SequentialSettings, done: set,
                    health_done: set) -> bool:
    """Whether every checkpoint of `method` has all its case records and its health entry."""
    return all((method, edits) in health_done and all((method, edits, c.case_id) in done for c in cases[:edits])
               for edits in config.checkpoints())


def run_method(
    lm: LoadedModel,
    method: str,
    params,
    cases: list[Case],
    config: SequentialSettings,
    out_dir: Path,
    store: RunStore,
    health_log: RunStore,
    done: set,
    health_done: set,
    known: KnownFacts | None,
    ppl_ids,
    cache_dir: Path | None,
    progress: bool,
    scorer=None,
    after_checkpoint=None,
) -> None:
    """Edit, checkpoint and score one method, resuming from its patch directory;
    `after_checkpoint()` runs after each checkpoint is scored (run_sequential: redraw the curves)."""
    if method_complete(method, cases, config, done, health_done):
        # The records are the result; the patch stack is only the way to them. A run directory copied
        # without its (large, unversioned) patches must not edit a finished method all over again.
        logger.info("%s: every checkpoint is recorded in %s; nothing to edit", method, out_dir)
        return
    patch_dir = out_dir / method / "patches"
    patch_dir.mkdir(parents=True, exist_ok=True)
    existing = _patch_files(patch_dir)
    batches = [cases[i : i + config.batch_size] for i in range(0, len(cases), config.batch_size)]
    if len(existing) > len(batches):
        raise FactpatchError(f"{patch_dir} holds {len(existing)} batches, more than this run's {len(batches)}")
    checkpoints = set(config.checkpoints())
    batch_log = batch_store(out_dir / BATCHES)
    recorded = {r["batch"]: r for r in batch_log.load() if r["method"] == method}
    logged = set(recorded)
    target_dir = out_dir / method / TARGETS
    editor = make_editor(lm, method, params, cache_dir, progress, config.corpus)
    stack = PatchStack(lm)
    original = weights_fingerprint(lm.model)
    edited_subjects: list[str] = []
    unedited_records: dict[str, dict] | None = None  # by case, while every patch applies nothing
    try:
        with tqdm(total=len(cases), desc=f"{method}: edits", unit="edit", disable=not progress, dynamic_ncols=True) as bar:
            for b, batch in enumerate(batches):
                requests = [c.request for c in batch]
                if b < len(existing):
                    patch = load_patch(existing[b])
                    if patch.requests != [r.to_dict() for r in requests]:
                        raise FactpatchError(f"{existing[b]} does not hold batch {b} of this run; use another --out")
                else:
                    editor.prepare(stack)
                    patch = edit_batch(editor, requests, stack, b, target_dir, recorded.get(b))
                    save_patch(patch, patch_dir / f"{b:04d}-{patch.id}.safetensors")
                stack.apply(patch)
                if b not in logged:
                    batch_log.append(batch_record(method, b, patch, stack))
                edited_subjects += [r.subject for r in requests]
                bar.update(len(batch))
                edits = sum(len(x) for x in batches[: b + 1])
                if edits in checkpoints:
                    bar.set_postfix_str(f"scoring {edits} edits")
                    if any(p.deltas for p in stack.applied):
                        unedited_records = None  # the model is edited: every case is scored on it
                    elif unedited_records is None:
                        # the stack applies nothing (`none`): the model is the unedited one, as at every
                        # earlier checkpoint of this method, so what they scored holds here too
                        unedited_records = {r["case_id"]: r for r in store.load()
                                            if r["method"] == method and r["edits"] <= edits}
                    _checkpoint(lm, method, cases[:edits], edits, edits == len(cases), config, store, health_log,
                                done, health_done, known, ppl_ids, edited_subjects, stack, progress, scorer,
                                unedited_records)
                    if after_checkpoint is not None:
                        after_checkpoint()
    finally:
        stack.revert()
    if weights_fingerprint(lm.model) != original:
        raise FactpatchError("internal error: the model was not restored after the sequential run")


def edited_case_record(lm, method: str, edits: int, index: int, case: Case, generate: bool,
                       config: SequentialSettings) -> dict:
    """One edited case scored on the model as it is now (with its generations if `generate`).
    `eval_seconds` is what scoring it took (as in a single-edit run's records): `factpatch eval status`
    prices the checkpoints left by it."""
    started = time.perf_counter()
    metrics, raw = score_case(lm, case)
    record = {"method": method, "edits": edits, "case_id": case.case_id, "index": index, "metrics": metrics,
              "scores": raw}
    if generate and case.kind == "counterfact" and case.generation_prompts:
        generated = case_generations(lm, case, config.gen, config.seed, index)
        record["metrics"]["fluency"] = generated["fluency"]
        record["generation"] = {"prompts": generated["prompts"], "source": generated["source"]}
        record["texts"] = generated["texts"]
    record["eval_seconds"] = round(time.perf_counter() - started, 3)
    return record


def _checkpoint(lm, method, edited: list[Case], edits: int, final: bool, config: SequentialSettings,
                store: RunStore, health_log: RunStore, done: set, health_done: set, known, ppl_ids,
                edited_subjects: list[str], stack: PatchStack, progress: bool, scorer=None,
                unedited_records: dict[str, dict] | None = None) -> None:
    """Score every case edited so far on the current model, then the model's health.

    `scorer(method, edits, todo, generate_for, config, stack, progress)`, if given, yields the
    records instead (evaluation.distributed.StackScorer: the same records, made by Ray workers).
    `unedited_records` (given when the stack applies nothing) hold this method's earlier records by
    case: a case found there is recorded again for this checkpoint instead of scored again (not the
    cases whose texts are generated now), every untouched known fact is known (the unedited model's,
    by definition), and what is scored here joins them for the next checkpoint."""
    todo = [(i, c) for i, c in enumerate(edited) if (method, edits, c.case_id) not in done]
    generate_for = set(range(config.generation_cases)) if final else set()
    if unedited_records is not None:
        again = [(i, c) for i, c in todo if c.case_id in unedited_records and i not in generate_for]
        for i, case in again:
            store.append({**unedited_records[case.case_id], "edits": edits})
            done.add((method, edits, case.case_id))
        todo = [(i, c) for i, c in todo if (method, edits, c.case_id) not in done]
    if scorer is not None:
        records = scorer(method, edits, todo, generate_for, config, stack, progress)
    else:
        records = (edited_case_record(lm, method, edits, i, case, i in generate_for, config)
                   for i, case in tqdm(todo, desc=f"{method}: scoring at {edits}", unit="case", leave=False,
                                       disable=not progress))
    for record in records:
        store.append(record)
        done.add((method, edits, record["case_id"]))
        if unedited_records is not None:
            unedited_records[record["case_id"]] = record
    if (method, edits) not in health_done:
        started = time.perf_counter()
        entry = {"method": method, "edits": edits, "patches": [p.id for p in stack.applied],
                 "perplexity": round(perplexity(lm, ppl_ids), 4)}
        if known is not None:
            if unedited_records is not None:  # the unedited model keeps every fact it knows, as it knew it
                still = {f.id: True for f in known.untouched(edited_subjects)}
                change = {i: 0.0 for i in still}
            else:
                still, change = known.measure(lm, edited_subjects)
            entry.update(known_record(still, change))
        entry["seconds"] = round(time.perf_counter() - started, 3)
        health_log.append(entry)
        health_done.add((method, edits))


def run_sequential(
    lm: LoadedModel,
    dataset: Dataset,
    config: SequentialSettings,
    out_dir: Path,
    cache_dir: Path | None = None,
    progress: bool = True,
    scorer=None,
    plots: bool = True,
) -> SequentialRun:
    """Edit and score every method (see the module docstring); `scorer` spreads the scoring of each
    checkpoint (evaluation.distributed.StackScorer), the edits stay here and in order. `plots=False`
    writes curves.csv without drawing curves.png (a draw takes seconds: where only the records
    matter; `factpatch eval curves DIR` draws it later), as `trace_dataset(plots=False)`."""
    started = time.perf_counter()
    cases = dataset.select(config.n)
    if len(cases) < config.n:
        raise FactpatchError(f"{dataset.name} has {len(cases)} cases; --n {config.n} asks for more")
    params = {m: method_params(lm, m, config.overrides.get(m), config.preset) for m in config.methods}
    description = describe(lm, dataset, config, {m: p.to_dict() for m, p in params.items()})
    out_dir = Path(out_dir)
    with RunLock() as lock:  # one process writes out_dir at a time
        # the outputs cover every method the directory holds; this call edits and scores `config.methods`
        description = check_out_dir(out_dir, description, lock)
        store, health_log = case_store(out_dir / RESULTS), health_store(out_dir / HEALTH)
        records, health = store.load(), health_log.load()
        done = {(r["method"], r["edits"], r["case_id"]) for r in records}
        health_done = {(h["method"], h["edits"]) for h in health}
        known = KnownFacts.check(lm, config.known_path, progress) if config.known_path is not None else None
        ppl_ids = perplexity_text(lm, config.perplexity_tokens, cache_dir, progress)
        if ("unedited", 0) not in health_done:  # the baseline every curve starts from
            entry = {"method": "unedited", "edits": 0, "patches": [], "perplexity": round(perplexity(lm, ppl_ids), 4)}
            if known is not None:
                entry.update({"known_kept": sum(known.known), "known_total": len(known.facts),
                              "known_share": sum(known.known) / len(known.facts)})
            health_log.append(entry)
        for method in config.methods:
            # The curves are redrawn at every checkpoint: a run that takes days shows where it stands.
            run_method(lm, method, params[method], cases, config, out_dir, store, health_log, done, health_done,
                       known, ppl_ids, cache_dir, progress, scorer,
                       after_checkpoint=lambda: write_curves(out_dir, description, plots=plots))
        run = write_outputs(out_dir, description, plots)
    run.seconds = time.perf_counter() - started
    return run


def write_outputs(out_dir: Path, description: dict, plots: bool = True) -> SequentialRun:
    """Summary of the final checkpoint and the curves, from the records alone."""
    started = time.perf_counter()
    records = case_store(out_dir / RESULTS).load()
    health = health_store(out_dir / HEALTH).load()
    kind = description["dataset"]["kind"]
    final = [r for r in records if r["edits"] == description["n"]]
    summary = summarize(final, kind, description["methods"])
    final_health = {}
    for method in ["unedited", *description["methods"]]:
        edits = 0 if method == "unedited" else description["n"]
        last = [h for h in health if h["method"] == method and h["edits"] == edits]
        if last:
            final_health[method] = {k: last[-1][k] for k in ("perplexity", "known_share") if k in last[-1]}
    comparison = against_unedited(final, kind, description["methods"])
    write_text_atomic(out_dir / "summary.json", json.dumps(
        {"config": description, "summary": summary, "health": final_health, "against_unedited": comparison},
        indent=2) + "\n")
    table = summary_table(summary, kind)
    generation = describe_generation(final, description.get("generation"))
    against = "\n".join(against_unedited_lines(comparison))
    write_text_atomic(out_dir / "summary.md", f"{description['n']} sequential edits in batches of "
                      f"{description['batch_size']} on {description['model']}\n\n{table}\n"
                      + (f"\n{generation}\n" if generation else "") + (f"\n{against}\n" if against else ""))
    write_text_atomic(out_dir / "summary.csv", summary_csv(summary, kind))
    write_curves(out_dir, description, records, health, plots)
    return SequentialRun(out_dir, final, health, summary, final_health, time.perf_counter() - started)


def write_curves(out_dir: Path, description: dict, records: list[dict] | None = None,
                 health: list[dict] | None = None, plots: bool = True) -> None:
    """curves.csv and curves.png from every checkpoint recorded so far (also of an unfinished run).

    The figure is drawn from the CSV's points and the run's title alone, so when the points are
    those already on disk beside a figure (the last checkpoint has just drawn them, or a resumed run
    found nothing left to do) it is not drawn again: a draw takes seconds, and a sequential run's
    end would otherwise draw the same figure twice. `factpatch eval curves DIR --out DIR/curves.png`
    redraws it outright; `plots=False` writes the CSV alone."""
    records = case_store(out_dir / RESULTS).load() if records is None else records
    health = health_store(out_dir / HEALTH).load() if health is None else health
    if not records:
        return
    batches = batch_store(out_dir / BATCHES).load()
    curves = curve_rows(records, health, description["dataset"]["kind"], description["methods"], batches)
    text = curves_csv(curves)
    csv_path, figure = out_dir / "curves.csv", out_dir / "curves.png"
    if figure.exists() and csv_path.is_file() and csv_path.read_text() == text:
        return
    if curves and plots:  # the figure first: a run killed between the two leaves a CSV that differs, so it redraws
        plot_curves(curves, figure, run_title(description))
    elif not plots:  # a figure of fewer points would pass for the new CSV's: the next drawing run redraws
        figure.unlink(missing_ok=True)
    write_text_atomic(csv_path, text)
