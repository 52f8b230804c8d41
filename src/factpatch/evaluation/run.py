"""`factpatch eval`: run editing methods over a data set and measure the paper's metrics.

For each case and method: build the method's patch (the model is untouched), apply it, score every
prompt of the case in one batched pass (plus sampled generations with `generation`), revert
exactly, and append one JSON line to `DIR/results.jsonl` (flushed and fsynced). A rerun of the same
command skips the (case, method) pairs already there, so a killed run resumes; `DIR/config.json`
records the configuration, and a directory holding results of a different configuration is
refused rather than mixed. Summaries (`summary.json`, `.md`, `.csv`, `.png`) are computed from
the records alone, cases in data-set order with a fixed bootstrap seed, so a resumed run ends with
the same summary as an uninterrupted one.

Metrics per case (CounterFact): ES/EM, PS/PM, NS/NM (`metrics.counterfact_case_metrics`), with
`generation` also fluency (mean generation entropy of the texts sampled from the case's generation
prompts) and consistency (TF-IDF cosine between those texts and the reference text for o*).
Sampling follows the paper by default (`GenerationSettings`): top-k 5, each text 100 tokens
including its prompt, one text for every generation prompt of the case; each record names the
prompts it used and where they came from (the data set's own, or derived: data.py).
There is no Wikipedia here, so the reference for o* is what the *unedited* model writes when it
continues true statements about other subjects whose object is o* (the case's attribute prompts
completed with o*), together with those statements; document frequencies come from every
statement in the data set file. zsRE: top-1 token accuracy of the edit's target on the question
(efficacy) and its paraphrase, and of the NQ answer on the unrelated NQ question (specificity);
which answer is the target is the data set's `zsre_target` (data.py: the paper's answers[0] by
default, or `alt`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from ..core.cache import write_text_atomic
from ..core.errors import FactpatchError
from ..core.generate import generate_texts
from ..core.models import LoadedModel
from ..core.runstore import RunStore, check_identity
from ..editing.patch import Patch, applied
from ..editing.registry import METHODS, Editor, make_editor, method_params
from .data import Case, Dataset, load_dataset
from .metrics import (
    TfidfModel,
    bootstrap,
    bootstrap_mean,
    consistency,
    counterfact_case_metrics,
    generation_entropy,
    harmonic_mean,
    score_targets,
    token_accuracy,
)

logger = logging.getLogger(__name__)

# 2: EM/PM/NM from exp(−mean token NLL), the paper's summarize.py (1: whole-sequence probabilities;
# scripts/recompute_magnitudes.py brings format-1 records up to date from their raw scores)
FORMAT_VERSION = 2
RESULTS = "results.jsonl"
CONFIG = "config.json"

# Metric names per data-set kind, in the paper's table order.
COUNTERFACT_METRICS = ("S", "ES", "EM", "PS", "PM", "NS", "NM", "fluency", "consistency")
ZSRE_METRICS = ("efficacy", "paraphrase", "specificity")
METRIC_LABELS = {
    "S": "Score S", "ES": "Efficacy ES", "PS": "Paraphrase PS", "NS": "Neighborhood NS",
    "EM": "EM", "PM": "PM", "NM": "NM", "fluency": "Fluency GE", "consistency": "Consistency RS",
    "efficacy": "Efficacy", "paraphrase": "Paraphrase", "specificity": "Specificity",
}
# Paper reference rows (GPT-2 XL, ×100) for the tables; "~" marks values method.md calls approximate.
PAPER_GPT2XL = {
    "counterfact": {
        # fluency ~626 and consistency 31.9 are the *unedited* GPT-2 XL's (method.md); ROME's row has
        # no fluency figure in method.md, so none is shown for it
        "none": {"S": "30.5", "fluency": "~626", "consistency": "31.9"},
        "ft+l": {"ES": "~99", "PS": "~49", "NS": "~70"},
        "rome": {"S": "89.2", "ES": "100.0", "PS": "96.4", "NS": "75.4", "consistency": "41.9"},
    },
    "zsre": {
        "none": {"efficacy": "22.2", "paraphrase": "21.3", "specificity": "24.2"},
        "ft": {"efficacy": "99.6", "paraphrase": "82.1", "specificity": "23.2"},
        "ft+l": {"efficacy": "92.3", "paraphrase": "47.2", "specificity": "23.4"},
        "rome": {"efficacy": "99.8", "paraphrase": "88.1", "specificity": "24.2"},
    },
}


@dataclass(frozen=True)
class GenerationSettings:
    """Sampling for fluency and consistency: one text per generation prompt, seeded per case.

    The defaults are the paper's (kmeng01/rome eval_utils_counterfact.test_generation calling
    util/generate.generate_fast): top-k 5, each text 100 tokens long *including its prompt*, every
    generation prompt of the case. `max_new_tokens` (instead of `max_length`) and a larger `top_k`
    give factpatch's earlier setting (100 new tokens, top-k 50).
    """

    top_k: int = 5  # generate_fast's top_k
    max_length: int = 100  # tokens per text, prompt included (generate_fast's max_out_len=100)
    max_new_tokens: int | None = None  # if set: this many new tokens per text, max_length unused
    max_prompts: int | None = None  # generation prompts per case; None = all of them, as the paper
    reference_prompts: int = 5  # attribute statements continued for the consistency reference
    reference_tokens: int = 60  # new tokens per reference text (factpatch's stand-in for Wikipedia)

    def __post_init__(self):
        optional = [v for v in (self.max_new_tokens, self.max_prompts) if v is not None]
        if min(self.top_k, self.max_length, self.reference_prompts, self.reference_tokens, *optional) < 1:
            raise FactpatchError("generation settings must be at least 1")

    def describe(self) -> str:
        length = (f"{self.max_new_tokens} new tokens per text" if self.max_new_tokens is not None
                  else f"{self.max_length} tokens per text including the prompt")
        prompts = "all of each case's generation prompts" if self.max_prompts is None else f"up to {self.max_prompts} generation prompts per case"
        return f"top-k {self.top_k}, {length}, {prompts}"


REFERENCE_TOP_K = 50  # the consistency reference is sampled as before the paper's settings were adopted


def generate_for_case(lm: LoadedModel, case: Case, gen: GenerationSettings, seed: int) -> dict:
    """One sampled text for each of the case's generation prompts (as many as `gen` allows):
    {"prompts", "source" ("dataset" | "derived"), "texts"}."""
    prompts = list(case.generation_prompts if gen.max_prompts is None else case.generation_prompts[: gen.max_prompts])
    if gen.max_new_tokens is not None:
        texts = generate_texts(lm, prompts, 1, gen.max_new_tokens, seed, top_k=gen.top_k)
    else:
        texts = generate_texts(lm, prompts, 1, seed=seed, top_k=gen.top_k, max_length=gen.max_length)
    return {"prompts": prompts, "source": case.generation_source, "texts": [t[0] for t in texts]}


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


def describe_config(lm: LoadedModel, dataset: Dataset, config: EvalSettings, hparams: dict[str, dict]) -> dict:
    """What identifies a run: results made under two different descriptions are never mixed.
    (Round-tripped through JSON so that it compares equal to the stored copy.)"""
    description = {
        "format_version": FORMAT_VERSION,
        "model": lm.name,
        "fingerprint": lm.fingerprint,
        "dataset": {"name": dataset.name, **dataset.identity()},
        "methods": list(config.methods),
        "hparams": hparams,
        "n": config.n,
        "shard": list(config.shard) if config.shard else None,
        "generation": dataclasses.asdict(config.gen) if config.generation else None,
        "seed": config.seed,
    }
    return json.loads(json.dumps(description))


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


def check_out_dir(out_dir: Path, description: dict) -> dict:
    """Create `out_dir` for this configuration, or accept it if it holds the same one (a different
    `n` included: the run grows or shrinks to the new prefix; other methods: they join the run);
    refuse otherwise. Returns the stored description (every method the directory holds)."""
    out_dir = Path(out_dir)
    if not (out_dir / CONFIG).exists() and (out_dir / RESULTS).exists():
        raise FactpatchError(f"{out_dir} has {RESULTS} but no {CONFIG}; use another --out")
    return check_identity(out_dir, CONFIG, description, _differences, _with_methods_of_both)


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


def case_seed(seed: int, index: int) -> int:
    return (seed * 1_000_003 + index) % (2**31 - 1)


def case_generations(lm: LoadedModel, case: Case, gen: GenerationSettings, seed: int, index: int) -> dict:
    """One text for each of the case's generation prompts (as many as `gen` allows), seeded by the
    case's place in the data set (every method sees the same draws), and their fluency (mean n-gram
    entropy): {"prompts", "source" ("dataset" | "derived"), "texts", "fluency"}."""
    generated = generate_for_case(lm, case, gen, case_seed(seed, index))
    texts = generated["texts"]
    return {**generated, "fluency": sum(generation_entropy(t) for t in texts) / len(texts)}


def reference_texts(lm: LoadedModel, case: Case, gen: GenerationSettings, seed: int) -> list[str]:
    """Consistency reference for o* (see the module docstring), from the unedited model."""
    new = case.request.target_new
    statements = [f"{p.rstrip()} {new}" for p in case.attribute_prompts[: gen.reference_prompts]]
    if not statements:
        return []
    continued = generate_texts(lm, statements, 1, gen.reference_tokens, seed, top_k=REFERENCE_TOP_K)
    return [texts[0] for texts in continued]


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


def plan_eval(dataset: Dataset, config: EvalSettings, out_dir: Path, description: dict) -> EvalPlan:
    """Select the cases, check or create `out_dir` for `description` and list what is left."""
    cases = dataset.select(config.n, config.shard)
    if not cases:
        raise FactpatchError(f"shard {config.shard} of {dataset.name} has no cases")
    out_dir = Path(out_dir)
    description = check_out_dir(out_dir, description)  # every method the directory holds, for the summaries
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
    plan = plan_eval(dataset, config, out_dir, describe_config(lm, dataset, config, hparams))
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


def metric_names(kind: str) -> tuple[str, ...]:
    return COUNTERFACT_METRICS if kind == "counterfact" else ZSRE_METRICS


def summarize(records: list[dict], kind: str, methods: list[str], n_boot: int = 1000, seed: int = 0) -> dict:
    """{method: {metric: {"mean", "ci": [lo, hi], "n"}}} with percentile-bootstrap 95 % intervals.

    Records are taken in data-set order (their `index`) so the result does not depend on the
    order they were written in. S is the harmonic mean of the ES, PS and NS means, bootstrapped
    jointly over the cases that have all three.
    """
    summary: dict[str, dict] = {}
    for method in methods:
        rows = sorted((r for r in records if r["method"] == method), key=lambda r: (r["index"], r["case_id"]))
        if not rows:
            continue
        out: dict[str, dict] = {}
        for name in metric_names(kind):
            if name == "S":
                full = [r["metrics"] for r in rows if all(k in r["metrics"] for k in ("ES", "PS", "NS"))]
                if full:
                    columns = [[m[k] for m in full] for k in ("ES", "PS", "NS")]
                    out["S"] = bootstrap(columns, lambda *means: harmonic_mean(means), n_boot, seed).to_dict()
                continue
            values = [r["metrics"][name] for r in rows if name in r["metrics"]]
            if values:
                out[name] = bootstrap_mean(values, n_boot, seed).to_dict()
        summary[method] = out
    return summary


# Damage is judged against the unedited model on the same cases (issue 12: NS within 10 points of
# the unedited model's, generation entropy within 5 %). Two separate intervals say little about
# that; the comparison is paired: the cases both were scored on are resampled together.
# metric -> how the method's mean is set against the unedited model's
AGAINST_UNEDITED = {
    "counterfact": {"NS": "difference", "fluency": "relative"},
    "zsre": {"specificity": "difference"},
}


def against_unedited(records: list[dict], kind: str, methods: list[str], baseline: str = "none",
                     n_boot: int = 1000, seed: int = 0) -> dict:
    """{method: {metric: {"mean", "ci", "n", "as"}}}: each method's mean minus the baseline's
    ("difference") or its mean over the baseline's, minus 1 ("relative"), over the cases both
    have the metric for, with a paired percentile-bootstrap 95 % interval. {} without the baseline."""
    by_method: dict[str, dict[str, dict]] = {}
    for r in records:
        by_method.setdefault(r["method"], {})[r["case_id"]] = r["metrics"]
    base = by_method.get(baseline)
    if not base:
        return {}
    statistics_of = {"difference": lambda m, b: m - b, "relative": lambda m, b: m / b - 1.0}
    out: dict[str, dict] = {}
    for method in methods:
        if method == baseline or method not in by_method:
            continue
        rows = {}
        for name, how in AGAINST_UNEDITED[kind].items():
            ids = sorted(i for i, m in by_method[method].items() if name in m and name in base.get(i, {}))
            if not ids:
                continue
            columns = [[by_method[method][i][name] for i in ids], [base[i][name] for i in ids]]
            rows[name] = {**bootstrap(columns, statistics_of[how], n_boot, seed).to_dict(), "as": how}
        if rows:
            out[method] = rows
    return out


def against_unedited_lines(comparison: dict, baseline: str = "none") -> list[str]:
    """Markdown lines for summary.md: differences in points (×100), relative changes in %."""
    if not comparison:
        return []
    lines = [f"Against the unedited model (`{baseline}`) on the same cases, paired 95 % intervals:", ""]
    for method, rows in comparison.items():
        parts = []
        for name, e in rows.items():
            lo, hi = e["ci"]
            unit = " points" if e["as"] == "difference" else " %"
            parts.append(f"{METRIC_LABELS[name]} {100 * e['mean']:+.1f}{unit} ({100 * lo:+.1f} to {100 * hi:+.1f}; "
                         f"{e['n']} cases)")
        lines.append(f"- {method}: " + "; ".join(parts))
    return lines


def cases_of(metrics: dict) -> int:
    """The n of a method's row: the most cases behind any of its metrics."""
    return max((m["n"] for m in metrics.values()), default=0)


SCALE = {"fluency": 100.0, "consistency": 100.0}  # the paper's tables: everything ×100


def _fmt(estimate: dict | None, name: str, decimals: int = 1) -> str:
    if not estimate:
        return "–"
    k = SCALE.get(name, 100.0)
    lo, hi = (f"{bound * k:.{decimals}f}" for bound in estimate["ci"])
    # An en dash between two negative bounds reads as a minus ("-2.6–-1.9"): spell the range out.
    between = " to " if lo.startswith("-") or hi.startswith("-") else "–"
    return f"{estimate['mean'] * k:.{decimals}f} ({lo}{between}{hi})"


def summary_table(summary: dict, kind: str, paper: bool = False) -> str:
    """Markdown table in the paper's layout (values ×100, 95 % interval in brackets)."""
    names = [n for n in metric_names(kind) if any(n in s for s in summary.values())]
    header = "| Method | n | " + " | ".join(METRIC_LABELS[n] for n in names) + " |"
    lines = [header, "|" + "---|" * (len(names) + 2)]
    for method, metrics in summary.items():
        n = cases_of(metrics)
        lines.append(f"| {method} | {n} | " + " | ".join(_fmt(metrics.get(name), name) for name in names) + " |")
    if paper:
        for method, values in PAPER_GPT2XL[kind].items():
            lines.append(f"| {method} (paper, GPT-2 XL) | | " + " | ".join(values.get(n, "") for n in names) + " |")
    return "\n".join(lines)


def summary_csv(summary: dict, kind: str) -> str:
    names = metric_names(kind)
    columns = ["method", "n"] + [f"{n}{s}" for n in names for s in ("", "_lo", "_hi")]
    lines = [",".join(columns)]
    for method, metrics in summary.items():
        n = cases_of(metrics)
        cells = [method, str(n)]
        for name in names:
            e = metrics.get(name)
            k = SCALE.get(name, 100.0)
            cells += [f"{e['mean'] * k:.4f}", f"{e['ci'][0] * k:.4f}", f"{e['ci'][1] * k:.4f}"] if e else ["", "", ""]
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


def method_color(method: str) -> str:
    """One colour per method in every figure (its place in the registry; the unedited model grey), so
    two runs' figures can be read side by side."""
    if method == "none":
        return "tab:gray"
    names = [m for m in METHODS if m != "none"]
    return f"C{names.index(method) % 10}" if method in names else "black"


def plot_summary(summary: dict, kind: str, path: Path, title: str) -> None:
    """Grouped bars with 95 % interval whiskers: the headline scores of each method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in (("S", "ES", "PS", "NS") if kind == "counterfact" else ZSRE_METRICS)
             if any(n in s for s in summary.values())]
    methods = list(summary)
    width = 0.8 / max(len(methods), 1)
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(names) * max(1, len(methods)) / 2.5, 3.6))
    for i, method in enumerate(methods):
        xs, ys, err = [], [], [[], []]
        for j, name in enumerate(names):
            e = summary[method].get(name)
            if not e:
                continue
            xs.append(j + (i - (len(methods) - 1) / 2) * width)
            ys.append(100 * e["mean"])
            err[0].append(100 * (e["mean"] - e["ci"][0]))
            err[1].append(100 * (e["ci"][1] - e["mean"]))
        n = cases_of(summary[method])
        ax.bar(xs, ys, width, yerr=err, capsize=2, label=f"{method} (n={n})", color=method_color(method))
    ax.set_xticks(range(len(names)), [METRIC_LABELS[n] for n in names])
    ax.set_ylim(0, 105)
    ax.set_ylabel("score (×100), 95 % CI")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, ncols=min(len(methods), 5), loc="lower center", bbox_to_anchor=(0.5, 1.08), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_summaries(out_dir: Path, records: list[dict], description: dict) -> dict:
    kind = description["dataset"]["kind"]
    summary = summarize(records, kind, list(description["methods"]))
    out_dir = Path(out_dir)
    write_text_atomic(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    dataset = description["dataset"]
    n_cases = len({r["case_id"] for r in records})
    title = f"{description['model']} on {dataset['name']} ({n_cases} cases)"
    notes = [
        f"# factpatch eval: {title}",
        "",
        "Scores ×100 as in the paper (fluency: generation entropy ×100; consistency: TF-IDF cosine ×100); "
        "brackets: percentile-bootstrap 95 % interval over cases.",
        "",
        summary_table(summary, kind),
        "",
    ]
    generation_note = describe_generation(records, description.get("generation"))
    if generation_note:
        notes += [generation_note, ""]
    comparison = against_unedited_lines(against_unedited(records, kind, list(description["methods"])))
    if comparison:
        notes += [*comparison, ""]
    write_text_atomic(out_dir / "summary.md", "\n".join(notes))
    write_text_atomic(out_dir / "summary.csv", summary_csv(summary, kind))
    if summary:
        short = f"{description['model']} on {Path(dataset['name'].split(':', 1)[-1]).name}"
        plot_summary(summary, kind, out_dir / "summary.png", short)
    return summary


def describe_generation(records: list[dict], settings: dict | None) -> str | None:
    """One line for summary.md: how the texts behind fluency and consistency were sampled, and from
    which prompts (the data set's own generation prompts, or derived ones: data.py)."""
    with_texts = [r for r in records if "texts" in r]
    if not with_texts:
        return None
    sources: dict[str, set] = {}
    for r in with_texts:
        source = r.get("generation", {}).get("source", "unrecorded")
        sources.setdefault(source, set()).add(r["case_id"])
    counts = ", ".join(f"{len(ids)} cases with {name} prompts" for name, ids in sorted(sources.items()))
    how = GenerationSettings(**{k: v for k, v in settings.items() if k in GenerationSettings.__dataclass_fields__}).describe() if settings else "settings not recorded"
    derived = " (derived: the paraphrases and \"{subject} is\")" if "derived" in sources else ""
    return f"Generation: {how}; {counts}{derived}; each record lists its prompts."


def write_timing(out_dir: Path, records: list[dict]) -> dict:
    """Per-method seconds (not part of the summary: timings differ from run to run)."""
    timing = {}
    for method in dict.fromkeys(r["method"] for r in records):
        rows = [r for r in records if r["method"] == method]
        total = [r["edit_seconds"] + r["eval_seconds"] for r in rows]
        timing[method] = {
            "n": len(rows),
            "edit_seconds_median": statistics.median(r["edit_seconds"] for r in rows),
            "eval_seconds_median": statistics.median(r["eval_seconds"] for r in rows),
            "cases_per_minute": 60 * len(rows) / sum(total) if sum(total) else None,
        }
    write_text_atomic(Path(out_dir) / "timing.json", json.dumps(timing, indent=2) + "\n")
    return timing


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
        config_path = directory / CONFIG
        if not config_path.is_file():
            raise FactpatchError(f"{directory} is not an eval result directory (no {CONFIG})")
        try:
            descriptions.append(json.loads(config_path.read_text()))
        except json.JSONDecodeError:
            raise FactpatchError(f"{config_path} is not valid JSON") from None
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
