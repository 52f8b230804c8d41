"""`factpatch eval`: run editing methods over a data set and measure the paper's metrics.

For each case and method: build the method's patch (the model is untouched), apply it, score every
prompt of the case in one batched pass (plus sampled generations with `generation`), revert
exactly, and append one JSON line to `DIR/results.jsonl` (flushed and fsynced). A rerun of the same
command skips the (case, method) pairs already there, so a killed run resumes; `DIR/config.json`
records the configuration, and a directory holding results of a different configuration is
refused rather than mixed. Summaries (`summary.json`, `.md`, `.csv`, `.png`) are computed from
the records alone (summary.py).

Metrics per case (CounterFact): ES/EM, PS/PM, NS/NM (`metrics.counterfact_case_metrics`), with
`generation` also fluency (mean generation entropy of the texts sampled from the case's generation
prompts) and consistency (TF-IDF cosine between those texts and the reference text for o*): how
they are sampled, and the reference that stands in for Wikipedia, are in generation.py; document
frequencies come from every statement in the data set file. zsRE: top-1 token accuracy of the
edit's target on the question (efficacy) and its paraphrase, and of the NQ answer on the unrelated NQ question (specificity);
which answer is the target is the data set's `zsre_target` (data.py: the paper's answers[0] by
default, or `alt`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from ..core.cache import write_text_atomic
from ..core.errors import FactpatchError
from ..core.models import LoadedModel
from ..core.runstore import RunLock, RunStore, check_identity
from ..editing.patch import Patch, applied
from ..editing.registry import METHODS, Editor, make_editor, method_params
from .data import Case, Dataset, load_dataset
from .generation import GenerationSettings, case_generations, case_seed, reference_texts
from .metrics import TfidfModel, consistency, counterfact_case_metrics, score_targets, token_accuracy
from .summary import ZSRE_METRICS, write_summaries, write_timing

logger = logging.getLogger(__name__)

# 2: EM/PM/NM from exp(−mean token NLL), the paper's summarize.py (1: whole-sequence probabilities;
# scripts/recompute_magnitudes.py brings format-1 records up to date from their raw scores)
FORMAT_VERSION = 2
RESULTS = "results.jsonl"
CONFIG = "config.json"

@dataclass
class EvalSettings:
    methods: list[str]
    n: int | None = None
    shard: tuple[int, int] | None = None
    generation: bool = False
    seed: int = 0
    overrides: dict[str, dict[str, str]] = field(default_factory=dict)
    gen: GenerationSettings = GenerationSettings()
    preset: str | None = None  # editing.registry.PRESETS, under `overrides`; the resolved hparams are recorded

    def __post_init__(self):
        if self.n is not None and self.n < 1:
            raise FactpatchError(f"--n must be at least 1, got {self.n}")
        if not self.methods:
            raise FactpatchError("no methods to evaluate")


def run_description(lm: LoadedModel, dataset: Dataset, methods, hparams: dict[str, dict], format_version: int,
                    **fields) -> dict:
    """What identifies a run — model, data set, methods and their settings, and the protocol's
    `fields`: results made under two different descriptions are never mixed. (Round-tripped
    through JSON so that it compares equal to the stored copy.)"""
    description = {
        "format_version": format_version,
        "model": lm.name,
        "fingerprint": lm.fingerprint,
        "dataset": {"name": dataset.name, **dataset.identity()},
        "methods": list(methods),
        "hparams": hparams,
        # a run on a GPU differs from the CPU's in the last bits: the two are never mixed (runs on
        # the CPU, every one recorded so far, have no such field)
        **({"device": lm.device.type} if lm.device.type != "cpu" else {}),
        **fields,
    }
    return json.loads(json.dumps(description))


def describe_config(lm: LoadedModel, dataset: Dataset, config: EvalSettings, hparams: dict[str, dict]) -> dict:
    """The description of a single-edit run (run_description)."""
    return run_description(
        lm, dataset, config.methods, hparams, FORMAT_VERSION,
        n=config.n,
        shard=list(config.shard) if config.shard else None,
        generation=dataclasses.asdict(config.gen) if config.generation else None,
        seed=config.seed,
    )


# Not part of a run's identity: `n` only chooses how many cases (a prefix of the data set) to run,
# and every stored result stays valid for a larger or smaller n. Nor is the list of methods: each
# method's results are its own (a sequential run edits each from the unedited model), so a method
# may be added to a directory, or run alone, later — with the same settings where it is there already.
_NOT_IDENTITY = ("n", "methods")


def _differences(old: dict, new: dict) -> list[str]:
    keys = sorted((set(old) | set(new)) - set(_NOT_IDENTITY))
    diff = []
    for key in keys:
        a, b = old.get(key), new.get(key)
        if key == "dataset" and isinstance(a, dict) and isinstance(b, dict):
            a = {k: v for k, v in a.items() if k != "name"}  # the same file under another path is fine
            b = {k: v for k, v in b.items() if k != "name"}
        if key == "hparams" and isinstance(a, dict) and isinstance(b, dict):
            shared = set(a) & set(b)  # a method in one of the two only is another method, not another run
            a = {method: a[method] for method in shared}
            b = {method: _as_recorded(method, a.get(method), b[method]) for method in shared}
        if a != b:
            diff.append(key)
    return diff


def _with_methods_of_both(old: dict, new: dict) -> dict:
    """`new`, listing the methods of both runs (those already there first) and their settings."""
    methods = list(old.get("methods", [])) + [m for m in new.get("methods", []) if m not in old.get("methods", [])]
    return {**new, "methods": methods, "hparams": {**(old.get("hparams") or {}), **(new.get("hparams") or {})}}


def _as_recorded(method: str, recorded: dict | None, values: dict) -> dict:
    """`values` without the settings a method gained after `recorded` was written, where they
    are at their defaults: such a run is the same run, and it stays resumable."""
    spec = METHODS.get(method)
    if not isinstance(recorded, dict) or not isinstance(values, dict) or spec is None:
        return values
    defaults = {f.name: f.default for f in dataclasses.fields(spec.params_cls)}
    return {key: value for key, value in values.items()
            if key in recorded or key not in defaults or value != defaults[key]}


def check_out_dir(out_dir: Path, description: dict, lock: RunLock | None = None) -> dict:
    """Create `out_dir` for this configuration, or accept it if it holds the same one (a different
    `n` included: the run grows or shrinks to the new prefix; other methods: they join the run);
    refuse otherwise. Returns the stored description (every method the directory holds). With
    `lock`, the directory is held for this process from here on (`RunLock`)."""
    out_dir = Path(out_dir)
    if not (out_dir / CONFIG).exists() and (out_dir / RESULTS).exists():
        raise FactpatchError(f"{out_dir} has {RESULTS} but no {CONFIG}; use another --out")
    return check_identity(out_dir, CONFIG, description, _differences, _with_methods_of_both, lock)


def read_config(out_dir: Path) -> dict:
    """The description the run in `out_dir` was made under (its config.json), or one clear error."""
    config_path = Path(out_dir) / CONFIG
    if not config_path.is_file():
        raise FactpatchError(f"{out_dir} is not a result directory (no {CONFIG})")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError:
        raise FactpatchError(f"{config_path} is not valid JSON") from None
    if not isinstance(config, dict) or not isinstance(config.get("dataset"), dict) or "methods" not in config:
        raise FactpatchError(f"{config_path} is not the configuration of a factpatch eval run")
    return config


def result_store(path: Path) -> RunStore:
    """`results.jsonl`: one JSON line per (case, method), appended and fsynced as each finishes."""
    return RunStore(path, required=("case_id", "method"))


# ----------------------------------------------------------------------------- one case


def _pair_rows(scores) -> list[list[float]]:
    """[log P(o*), tokens, log P(o^c), tokens] per prompt, for the record."""
    return [[round(n.log_prob, 6), n.n_tokens, round(t.log_prob, 6), t.n_tokens] for n, t in scores]


def score_counterfact(lm: LoadedModel, case: Case) -> tuple[dict, dict]:
    """Per-case metrics and raw scores: every prompt × {o*, o^c} in one batched `score_targets`."""
    request = case.request
    if request.target_true is None:
        raise FactpatchError(f"case {case.case_id} has no true object")
    groups = {
        "rewrite": [request.text],
        "paraphrase": list(case.paraphrase_prompts),
        "neighborhood": [p.prompt for p in case.neighborhood],
    }
    prompts = [p for group in groups.values() for p in group for _ in range(2)]
    targets = [t for group in groups.values() for _ in group for t in (request.target_new, request.target_true)]
    flat = score_targets(lm, prompts, targets)
    pairs, cursor = {}, 0
    for name, group in groups.items():
        pairs[name] = [(flat[cursor + 2 * i], flat[cursor + 2 * i + 1]) for i in range(len(group))]
        cursor += 2 * len(group)
    metrics = counterfact_case_metrics(pairs["rewrite"], pairs["paraphrase"], pairs["neighborhood"])
    return metrics, {name: _pair_rows(p) for name, p in pairs.items()}


def score_zsre(lm: LoadedModel, case: Case) -> tuple[dict, dict]:
    new = case.request.target_new
    rows = [("efficacy", case.request.text, new)]
    rows += [("paraphrase", p, new) for p in case.paraphrase_prompts]
    rows += [("specificity", p.prompt, p.answer) for p in case.neighborhood]
    accuracy = token_accuracy(lm, [r[1] for r in rows], [r[2] for r in rows])
    metrics: dict[str, float] = {}
    for name in ZSRE_METRICS:
        values = [a for (kind, _, _), a in zip(rows, accuracy) if kind == name]
        if values:
            metrics[name] = sum(values) / len(values)
    return metrics, {"token_accuracy": [[kind, round(a, 6)] for (kind, _, _), a in zip(rows, accuracy)]}


def score_case(lm: LoadedModel, case: Case) -> tuple[dict, dict]:
    """The case's metrics and raw scores on the model as it is now (CounterFact or zsRE)."""
    return score_counterfact(lm, case) if case.kind == "counterfact" else score_zsre(lm, case)


def patch_summary(patch: Patch) -> dict:
    """Which parameters a patch touches and how much (Frobenius and max-abs norms)."""
    l2, linf = 0.0, 0.0
    for delta in patch.deltas:
        if delta.dense is not None:
            l2 += float(delta.dense.double().pow(2).sum())
            linf = max(linf, float(delta.dense.abs().max()))
        else:
            assert delta.left is not None and delta.right is not None
            l2 += float(delta.left.double().norm() ** 2 * delta.right.double().norm() ** 2)
            linf = max(linf, float(delta.left.abs().max() * delta.right.abs().max()))
    keep = ("steps_run", "v_steps_run", "loss_first", "loss_last")
    return {
        "params": [d.param for d in patch.deltas],
        "l2": l2**0.5,
        "linf": linf,
        **{k: patch.meta[k] for k in keep if k in patch.meta},
    }


@dataclass
class CaseContext:
    """What every method's run on one case shares."""

    case: Case
    index: int
    reference: list[str] | None = None


def evaluate_case(
    lm: LoadedModel,
    editor: Editor,
    ctx: CaseContext,
    config: EvalSettings,
    tfidf: TfidfModel | None,
) -> dict:
    """One (case, method) record: edit, apply, score (and generate), revert."""
    case = ctx.case
    started = time.perf_counter()
    patch = editor.patch([case.request])
    edit_seconds = time.perf_counter() - started
    generated: dict | None = None
    with applied(lm, [patch]):
        scored = time.perf_counter()
        metrics, raw = score_case(lm, case)
        if config.generation and case.kind == "counterfact" and case.generation_prompts:
            generated = case_generations(lm, case, config.gen, config.seed, ctx.index)
            texts, metrics["fluency"] = generated["texts"], generated["fluency"]
            if ctx.reference and tfidf is not None:
                metrics["consistency"] = consistency(tfidf, texts, ctx.reference)
        eval_seconds = time.perf_counter() - scored
    record = {
        "case_id": case.case_id,
        "index": ctx.index,
        "method": editor.name,
        "metrics": metrics,
        "scores": raw,
        "patch": patch_summary(patch),
        "edit_seconds": round(edit_seconds, 3),
        "eval_seconds": round(eval_seconds, 3),
    }
    if generated is not None:
        record["generation"] = {"prompts": generated["prompts"], "source": generated["source"]}
        record["texts"] = generated["texts"]
    return record


# ----------------------------------------------------------------------------- the run


@dataclass
class EvalRun:
    out_dir: Path
    records: list[dict]
    summary: dict
    new_records: int
    seconds: float


@dataclass
class EvalPlan:
    """What a run must still do, read from `out_dir` (shared by `run_eval` and the Ray driver in
    factpatch.evaluation.distributed, so both resume, refuse and summarise alike)."""

    out_dir: Path
    description: dict
    cases: list[Case]  # the selected cases, in data-set order
    index_of: dict[str, int]  # case id -> position in the data set (the case's seed)
    store: RunStore
    records: list[dict]  # what results.jsonl already holds; each new record is appended here too
    done: set[tuple[str, str]]  # (case id, method) pairs already there
    todo: list[tuple[Case, str]]


def plan_eval(dataset: Dataset, config: EvalSettings, out_dir: Path, description: dict, *, lock: RunLock) -> EvalPlan:
    """Select the cases, check or create `out_dir` for `description` (held by `lock` from then on)
    and list what is left."""
    cases = dataset.select(config.n, config.shard)
    if not cases:
        raise FactpatchError(f"shard {config.shard} of {dataset.name} has no cases")
    out_dir = Path(out_dir)
    description = check_out_dir(out_dir, description, lock)  # every method the directory holds, for the summaries
    store = result_store(out_dir / RESULTS)
    records = store.load()
    done = {(r["case_id"], r["method"]) for r in records}
    index_of = {c.case_id: i for i, c in enumerate(dataset.cases)}
    todo = [(c, m) for c in cases for m in config.methods if (c.case_id, m) not in done]
    if done:
        logger.info("resuming %s: %d results there, %d to go", out_dir, len(done), len(todo))
    if config.generation and dataset.kind != "counterfact":
        logger.warning("--generation measures CounterFact cases only; %s is %s", dataset.name, dataset.kind)
    return EvalPlan(out_dir, description, cases, index_of, store, records, done, todo)


def finish_eval(plan: EvalPlan, new: int, started: float) -> EvalRun:
    """Summaries and timing from the records of the selected cases, for every method in the directory."""
    selected = {c.case_id for c in plan.cases}
    methods = set(plan.description["methods"])
    records = [r for r in plan.records if r["case_id"] in selected and r["method"] in methods]
    summary = write_summaries(plan.out_dir, records, plan.description)
    write_timing(plan.out_dir, records)
    return EvalRun(plan.out_dir, records, summary, new, time.perf_counter() - started)


def run_eval(
    lm: LoadedModel,
    dataset: Dataset,
    config: EvalSettings,
    out_dir: Path,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> EvalRun:
    """Evaluate `config.methods` on the selected cases, resuming whatever `out_dir` already holds."""
    started = time.perf_counter()
    params = {m: method_params(lm, m, config.overrides.get(m), config.preset) for m in config.methods}
    hparams = {m: p.to_dict() for m, p in params.items()}
    with RunLock() as lock:  # one process writes out_dir at a time
        plan = plan_eval(dataset, config, out_dir, describe_config(lm, dataset, config, hparams), lock=lock)
        editors: dict[str, Editor] = {}
        tfidf = TfidfModel(dataset.idf_texts) if config.generation and dataset.kind == "counterfact" else None
        new = 0
        with tqdm(total=len(plan.todo), desc=f"eval {lm.name}", unit="edit", disable=not progress, dynamic_ncols=True) as bar:
            for case in plan.cases:
                methods = [m for m in config.methods if (case.case_id, m) not in plan.done]
                if not methods:
                    continue
                ctx = CaseContext(case, plan.index_of[case.case_id])
                if tfidf is not None:
                    ctx.reference = reference_texts(lm, case, config.gen, case_seed(config.seed, ctx.index))
                for method in methods:
                    if method not in editors:
                        editors[method] = make_editor(lm, method, params[method], cache_dir, progress)
                        editors[method].prepare()
                    bar.set_postfix_str(f"case {case.case_id} {method}")
                    record = evaluate_case(lm, editors[method], ctx, config, tfidf)
                    plan.store.append(record)
                    plan.records.append(record)
                    new += 1
                    bar.update(1)
        return finish_eval(plan, new, started)


# ----------------------------------------------------------------------------- summaries


# ----------------------------------------------------------------------------- merging shards


def merge_runs(dirs: list[Path], out_dir: Path) -> EvalRun:
    """Combine result directories of one model and data set (shards, or methods run separately)
    into `out_dir`. Methods shared by two directories must have the same settings."""
    started = time.perf_counter()
    if len(dirs) < 1:
        raise FactpatchError("eval merge needs at least one result directory")
    out_dir = Path(out_dir)
    descriptions, all_records = [], []
    for directory in map(Path, dirs):
        if directory.resolve() == out_dir.resolve():
            raise FactpatchError(f"--out {out_dir} is one of the directories being merged")
        descriptions.append(read_config(directory))
        all_records.append(result_store(directory / RESULTS).load())
    first = descriptions[0]
    methods: list[str] = []
    hparams: dict[str, dict] = {}
    for directory, d in zip(dirs, descriptions):
        for key in ("format_version", "fingerprint", "generation", "seed"):
            if d.get(key) != first.get(key):
                raise FactpatchError(f"cannot merge {directory} with {dirs[0]}: they differ in {key}")
        if _differences({"dataset": d["dataset"]}, {"dataset": first["dataset"]}):
            raise FactpatchError(f"cannot merge {directory} with {dirs[0]}: different data sets")
        for method in d["methods"]:
            if method in hparams and hparams[method] != d["hparams"][method]:
                raise FactpatchError(f"cannot merge {directory}: {method} was run with other settings than in {dirs[0]}")
            hparams.setdefault(method, d["hparams"][method])
            if method not in methods:
                methods.append(method)
    merged: dict[tuple[str, str], dict] = {}
    for records in all_records:
        for record in records:
            merged.setdefault((record["case_id"], record["method"]), record)
    records = sorted(merged.values(), key=lambda r: (r["index"], methods.index(r["method"])))
    description = {
        **first,
        "methods": methods,
        "hparams": hparams,
        "n": None,
        "shard": None,
        "merged_from": [str(Path(d)) for d in dirs],
    }
    if (out_dir / CONFIG).exists() or (out_dir / RESULTS).exists():
        raise FactpatchError(f"{out_dir} already holds results; merge into a new directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / CONFIG, json.dumps(description, indent=2) + "\n")
    write_text_atomic(out_dir / RESULTS, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    summary = write_summaries(out_dir, records, description)
    write_timing(out_dir, records)
    return EvalRun(out_dir, records, summary, 0, time.perf_counter() - started)


# ----------------------------------------------------------------------------- convenience


def evaluate(
    model: str | LoadedModel,
    dataset: str | Dataset,
    methods: list[str],
    out_dir: Path,
    cache_dir: Path | None = None,
    progress: bool = True,
    zsre_target: str = "paper",
    **config,
) -> EvalRun:
    """`factpatch eval` from Python: model and data set by name or already loaded. `zsre_target`
    ("paper" or "alt", factpatch.evaluation.data) says how a zsRE data set named by a spec is read."""
    from ..core.models import load_model

    ds = load_dataset(dataset, zsre_target) if isinstance(dataset, str) else dataset
    lm = load_model(model, cache_dir) if isinstance(model, str) else model
    return run_eval(lm, ds, EvalSettings(list(methods), **config), out_dir, cache_dir, progress)
