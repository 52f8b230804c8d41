"""Causal tracing over many facts (the paper's Figs 2 and 3): which facts the model knows, the
resumable per-fact run, the averages by token group, and the layers they suggest for editing."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..core.cache import file_sha256, stable_hash
from ..core.errors import FactpatchError
from ..core.models import LoadedModel, in_precision
from ..core.runstore import RunLock, RunStore, check_identity
from ..core.scoring import TargetTokens, teacher_forced
from .engine import progress_bar
from .prompt import PromptTrace, trace_prompt
from .settings import Progress, TraceSettings, embedding_std

logger = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- many facts (Figs 2 and 3)

TOKEN_GROUPS = (
    "first subject token",
    "middle subject tokens",
    "last subject token",
    "first subsequent token",
    "further tokens",
    "last token",
)


def token_groups(subject_range: tuple[int, int], n_tokens: int) -> list[list[int]]:
    """Token indices of the six groups the paper averages by, in `TOKEN_GROUPS` order.

    A token can belong to two groups (a one-token subject is its first and its last token; a
    subject that ends the prompt has no subsequent token and its last token is the prompt's last);
    a group can be empty (no middle tokens in a two-token subject). Tokens before the subject
    belong to none: the noise never reaches them.

    >>> token_groups((1, 4), 8)
    [[1], [2], [3], [4], [5, 6], [7]]
    """
    start, end = subject_range
    if not 0 <= start < end <= n_tokens:
        raise FactpatchError(f"subject range {subject_range} does not fit {n_tokens} tokens")
    return [
        [start],
        list(range(start + 1, end - 1)),
        [end - 1],
        [end] if end < n_tokens else [],
        list(range(end + 1, n_tokens - 1)),
        [n_tokens - 1],
    ]


@dataclass(frozen=True)
class Fact:
    """A known fact: `prompt` contains `subject`; `target` is the object the model should say."""

    id: str
    prompt: str
    subject: str
    target: str


def load_facts(path: Path) -> list[Fact]:
    """Facts from a JSON list (known_1000.json layout: `known_id`, `subject`, `attribute`, `prompt`;
    `target` is accepted for `attribute`, and a prompt may be a template with "{}") or JSONL."""
    path = Path(path)
    if not path.is_file():
        raise FactpatchError(f"dataset file not found: {path}")
    text = path.read_text(errors="replace")
    try:
        records = json.loads(text)
    except json.JSONDecodeError:
        try:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise FactpatchError(f"{path}: not JSON or JSONL ({exc.msg}, line {exc.lineno})") from exc
    if isinstance(records, dict):
        records = next((v for v in records.values() if isinstance(v, list)), None)
    if not isinstance(records, list) or not records:
        raise FactpatchError(f"{path}: expected a non-empty list of facts")
    facts, seen = [], set()
    for number, record in enumerate(records):
        if not isinstance(record, dict):
            raise FactpatchError(f"{path}: record {number} is not an object")
        subject = record.get("subject")
        prompt = record.get("prompt", record.get("template"))
        target = record.get("attribute", record.get("target"))
        for name, value in (("subject", subject), ("prompt", prompt), ("attribute", target)):
            if not isinstance(value, str) or not value.strip():
                raise FactpatchError(f"{path}: record {number} has no {name}")
        if "{}" in prompt:
            prompt = prompt.replace("{}", subject, 1)
        if subject not in prompt:
            raise FactpatchError(f"{path}: record {number}: subject {subject!r} is not in its prompt {prompt!r}")
        fact_id = str(record.get("known_id", record.get("case_id", number)))
        if fact_id in seen:
            raise FactpatchError(f"{path}: record {number}: duplicate id {fact_id}")
        seen.add(fact_id)
        facts.append(Fact(fact_id, prompt, subject, target.strip()))
    return facts


@torch.no_grad()
def answer_scores(lm: LoadedModel, facts: Sequence[Fact], batch_size: int = 32,
                  progress: Progress = True) -> list[TargetTokens]:
    """Each fact's answer after its prompt, teacher-forced (core.scoring): every answer token's
    log-probability and whether it was the model's top prediction."""
    result: list[TargetTokens] = []
    with progress_bar(progress, total=len(facts), desc="checking known facts", unit="fact") as bar:
        for begin in range(0, len(facts), batch_size):
            chunk = facts[begin : begin + batch_size]
            result += teacher_forced(lm, [f.prompt for f in chunk], [f.target for f in chunk])
            bar.update(len(chunk))
    return result


def knows(lm: LoadedModel, facts: Sequence[Fact], batch_size: int = 32, progress: Progress = True) -> list[bool]:
    """Whether the model gets each fact right: its greedy continuation of the prompt begins with
    every token of the target (the teacher-forced pass of core.scoring, every token a top-1 hit)."""
    return [all(t.hits) for t in answer_scores(lm, facts, batch_size, progress)]


def fact_seed(seed: int, fact_id: str) -> int:
    """The noise seed of one fact: fixed by the run's seed and the fact, not by the order of work."""
    return int(stable_hash([seed, fact_id]), 16) % (2**31)


def _rounded(grid: list[list[float] | None]) -> list[list[float] | None]:
    return [None if row is None else [float(f"{v:.6g}") for v in row] for row in grid]


def fact_record(fact: Fact, trace: PromptTrace) -> dict:
    return {
        "id": fact.id,
        "prompt": fact.prompt,
        "subject": fact.subject,
        "target": fact.target,
        "tokens": trace.tokens,
        "subject_range": list(trace.subject_range),
        "p_clean": trace.p_clean,
        "p_corrupted": trace.p_corrupted,
        "seed": trace.settings.noise.seed,
        "kinds": {name: _rounded(grid) for name, grid in trace.scores.items()},
    }


def read_results(path: Path) -> list[dict]:
    """The traced facts of a results JSONL (a torn last line from a killed run is cut off)."""
    return RunStore(path, required=("id",)).load()


def summarize(records: Sequence[dict], names: Sequence[str], n_layers: int) -> dict:
    """Average the traces of many facts by token group and layer (the paper's Fig 2).

    For each trace name and group: `p[group][layer]` = mean over facts (with that group traced) of
    the mean over the group's traced tokens of P(target) restored; `ie` the same for the indirect effect
    P_restored − P*. Also the mean clean and corrupted P and where the effects peak."""
    summary: dict = {
        "facts": len(records),
        "groups": list(TOKEN_GROUPS),
        "layers": n_layers,
        "p_clean": float(sum(r["p_clean"] for r in records) / max(1, len(records))),
        "p_corrupted": float(sum(r["p_corrupted"] for r in records) / max(1, len(records))),
        "kinds": {},
    }
    summary["total_effect"] = summary["p_clean"] - summary["p_corrupted"]
    for name in names:
        p_sum = torch.zeros(len(TOKEN_GROUPS), n_layers, dtype=torch.float64)
        ie_sum = torch.zeros_like(p_sum)
        counts = torch.zeros(len(TOKEN_GROUPS), dtype=torch.float64)
        for record in records:
            rows = record["kinds"][name]
            groups = token_groups(tuple(record["subject_range"]), len(record["tokens"]))
            for g, tokens in enumerate(groups):
                traced = [rows[t] for t in tokens if rows[t] is not None]
                if traced:
                    mean = torch.tensor(traced, dtype=torch.float64).mean(dim=0)
                    p_sum[g] += mean
                    ie_sum[g] += mean - record["p_corrupted"]
                    counts[g] += 1
        safe = counts.clamp(min=1)[:, None]
        summary["kinds"][name] = {
            "p": (p_sum / safe).tolist(),
            "ie": (ie_sum / safe).tolist(),
            "facts_per_group": counts.int().tolist(),
        }
    summary["peaks"] = _peaks(summary)
    return summary


def _peak(summary: dict, name: str, group: str) -> dict | None:
    kind = summary["kinds"].get(name)
    if kind is None:
        return None
    g = TOKEN_GROUPS.index(group)
    ie = kind["ie"][g]
    layer = max(range(len(ie)), key=lambda l: ie[l])
    return {"trace": name, "group": group, "layer": layer, "ie": ie[layer], "p": kind["p"][g][layer]}


def _peaks(summary: dict) -> dict:
    wanted = {
        "hidden_last_subject": ("hidden", "last subject token"),
        "mlp_last_subject": ("mlp", "last subject token"),
        "attn_last_subject": ("attn", "last subject token"),
        "mlp_last": ("mlp", "last token"),
        "attn_last": ("attn", "last token"),
    }
    return {key: peak for key, (name, group) in wanted.items() if (peak := _peak(summary, name, group))}


def choose_layers(summary: dict) -> dict:
    """The edit layer from a dataset summary: where the average MLP indirect effect at the last
    subject token peaks (the layer at the centre of the restored window); the attention layer:
    where the attention effect at the last token peaks."""
    peaks = summary.get("peaks", {})
    if "mlp_last_subject" not in peaks:
        raise FactpatchError("choosing the edit layer needs the mlp trace")
    mlp = peaks["mlp_last_subject"]
    choice = {"edit_layer": mlp["layer"], "edit_layer_ie": mlp["ie"], "edit_layer_p": mlp["p"]}
    if "attn_last" in peaks:
        attn = peaks["attn_last"]
        choice.update({"attn_layer": attn["layer"], "attn_layer_ie": attn["ie"], "attn_layer_p": attn["p"]})
    return choice


@dataclass
class DatasetRun:
    """What `trace_dataset` did: the summary, and where it wrote."""

    summary: dict
    out_dir: Path
    checked: int
    known: int
    traced: int
    new: int
    files: list[Path] = field(default_factory=list)


@dataclass
class TracePlan:
    """What a dataset trace must still do, read from `out_dir` (shared by `trace_dataset` and the
    Ray driver in factpatch.evaluation.distributed)."""

    dataset: Path
    out_dir: Path
    sigma: float
    checked: int  # facts in the file
    known: int  # facts the model knows
    selected: list[Fact]  # the known facts to trace (the first n)
    store: RunStore
    done: dict[str, dict]  # fact id -> record already in results.jsonl (new ones are added here)
    todo: list[Fact]


def plan_trace(
    lm: LoadedModel,
    dataset: Path,
    out_dir: Path,
    settings: TraceSettings = TraceSettings(),
    n: int | None = None,
    sigma: float | None = None,
    cache_dir: Path | None = None,
    progress: Progress = True,
    *,
    lock: RunLock,
) -> TracePlan:
    """Check or create `out_dir` for this run (held by `lock` from then on), find the facts the
    model knows, list what is left."""
    from .plot import write_bytes

    out_dir = Path(out_dir)
    facts = load_facts(dataset)
    if n is not None and n < 1:
        raise FactpatchError(f"--n must be at least 1, got {n}")
    if sigma is None:
        sigma = embedding_std(lm, cache_dir=cache_dir, progress=bool(progress))
    run_key = {
        "model": lm.name,
        "fingerprint": lm.fingerprint,
        "dataset_sha256": file_sha256(dataset),
        "settings": settings.key(),
        "sigma": round(sigma, 8),
    }
    check_identity(out_dir, "run.json", run_key, lock=lock)

    known_path = out_dir / "known.json"
    known_ids = None
    if known_path.exists():
        try:
            known_ids = json.loads(known_path.read_text())["known"]
        except (json.JSONDecodeError, KeyError, TypeError):
            known_ids = None
    if known_ids is None:
        flags = knows(lm, facts, progress=progress)
        known_ids = [f.id for f, ok in zip(facts, flags) if ok]
        write_bytes(known_path, json.dumps({"checked": len(facts), "known": known_ids}).encode())
    known_set = set(known_ids)
    selected = [f for f in facts if f.id in known_set][: n if n is not None else None]
    logger.info("%s knows %d of %d facts in %s", lm.name, len(known_set), len(facts), dataset)

    store = RunStore(out_dir / "results.jsonl", required=("id",))
    done = {r["id"]: r for r in store.load()}
    todo = [f for f in selected if f.id not in done]
    return TracePlan(Path(dataset), out_dir, sigma, len(facts), len(known_set), selected, store, done, todo)


def trace_fact(lm: LoadedModel, fact: Fact, settings: TraceSettings, sigma: float) -> dict:
    """One fact's record, its noise seeded by the fact (not by the order of work)."""
    fact_settings = dataclasses.replace(
        settings, noise=dataclasses.replace(settings.noise, seed=fact_seed(settings.noise.seed, fact.id))
    )
    trace = trace_prompt(lm, fact.prompt, fact.subject, fact.target, fact_settings, sigma, progress=False)
    return fact_record(fact, trace)


def finish_trace(lm: LoadedModel, plan: TracePlan, settings: TraceSettings, plots: bool = True) -> DatasetRun:
    """The summary and figures from the records of the selected facts."""
    from .plot import write_bytes

    records = [plan.done[f.id] for f in plan.selected if f.id in plan.done]
    summary = summarize(records, settings.trace_names, lm.n_layers)
    summary.update(
        {
            "model": lm.name,
            "dataset": str(plan.dataset),
            "checked": plan.checked,
            "known": plan.known,
            "settings": settings.key(),
            "sigma": plan.sigma,
        }
    )
    if "mlp" in settings.kinds and records:
        summary["choice"] = choose_layers(summary)
    files = [plan.store.path]
    summary_path = plan.out_dir / "summary.json"
    write_bytes(summary_path, json.dumps(summary, indent=1).encode())
    files.append(summary_path)
    if plots and records:
        from .plot import plot_average, plot_sever, write_figure

        files += write_figure(plot_average(summary), plan.out_dir / "average")
        if settings.sever:
            files += write_figure(plot_sever(summary), plan.out_dir / "sever")
    return DatasetRun(summary, plan.out_dir, plan.checked, plan.known, len(records), len(plan.todo), files)


def trace_dataset(
    lm: LoadedModel,
    dataset: Path,
    out_dir: Path,
    settings: TraceSettings = TraceSettings(),
    n: int | None = None,
    sigma: float | None = None,
    cache_dir: Path | None = None,
    progress: Progress = True,
    plots: bool = True,
) -> DatasetRun:
    """Trace the facts of `dataset` that the model knows (the first `n` of them) and average.

    Writes into `out_dir`: `run.json` (model, dataset, settings: a resumed run must match),
    `known.json` (which facts the model gets right), `results.jsonl` (one traced fact per line,
    appended as each finishes, so a killed run resumes where it stopped), `summary.json`
    (averages by token group and layer) and the figures `average.png|svg` (and `sever.png|svg`)."""
    with RunLock() as lock:  # one process writes out_dir at a time
        plan = plan_trace(lm, dataset, out_dir, settings, n, sigma, cache_dir, progress, lock=lock)
        selected, todo = plan.selected, plan.todo
        bar = progress_bar(progress, total=len(selected), initial=len(selected) - len(todo), desc="tracing facts", unit="fact")
        traced = in_precision(lm, settings.dtype) if todo else lm  # one copy for every fact, when not float32
        with bar:
            for fact in todo:
                record = trace_fact(traced, fact, settings, plan.sigma)
                plan.store.append(record)
                plan.done[fact.id] = record
                bar.update(1)
        return finish_trace(lm, plan, settings, plots)
