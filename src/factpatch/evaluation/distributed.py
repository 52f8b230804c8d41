"""Long runs on a Ray cluster: `factpatch eval --ray`, `factpatch trace --dataset … --ray`, and
the scoring of a sequential run's checkpoints spread over workers.

Each use hands the pool of workers (evaluation.ray_pool; each worker loads the model once,
evaluation.ray_worker) small tasks and appends every result as it arrives to the same
`results.jsonl` a single-process run writes (core.runstore), through the same planning and
summarising code (`plan_eval` / `finish_eval` in evaluation.run, `plan_trace` / `finish_trace` in
tracing.dataset). So a Ray run and a single-process run over the same cases write the same files
and the same numbers — each case starts from the unedited weights and its sampling is seeded by its
position in the data set — and either can resume the other's directory. A lost worker's tasks are
retried by the pool and each result is written once; when the driver dies, its workers die with it
(Ray ties them to the driver) and rerunning the same command resumes from `results.jsonl`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import FactpatchError
from ..core.runstore import RunLock
from .ray_pool import PoolStats, RaySettings, WorkerPool, chunks, connected, log_stats, progress_bar

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- eval --ray


@dataclass
class RayRun:
    """A run's outcome (EvalRun, DatasetRun, …) and what the pool measured."""

    run: object
    stats: PoolStats


def run_eval_ray(
    model: str,
    dataset,
    config,
    out_dir: Path,
    settings: RaySettings,
    cache_dir: Path | None = None,
    progress: bool = True,
    on_result: Callable[[WorkerPool, list[dict]], None] | None = None,
) -> RayRun:
    """`run_eval` over Ray workers: the same records, the same `out_dir` files, resumable either way.

    `model` is an embedded model's name or a model directory that every node has at the same path.
    `on_result(pool, records)` is called after each task's records are written."""
    from .run import describe_config, finish_eval, plan_eval

    started = time.perf_counter()
    # the lock first: one process writes out_dir at a time
    with RunLock() as lock, connected(settings) as ray, WorkerPool(model, settings, cache_dir) as pool:
        infos = pool.start()
        dataset_ref = ray.put(dataset)
        hparams = pool.setup(lambda actor: actor.setup_eval.remote(dataset_ref, config))
        if any(h != hparams[0] for h in hparams[1:]):
            raise FactpatchError("the workers disagree on the methods' settings: is factpatch the same version everywhere?")
        # describe_config reads only the model's name and fingerprint, which WorkerInfo carries
        plan = plan_eval(dataset, config, out_dir, describe_config(infos[0], dataset, config, hparams[0]), lock=lock)
        by_case: dict[str, list[str]] = {}
        for case, method in plan.todo:
            by_case.setdefault(case.case_id, []).append(method)
        work = [(plan.index_of[cid], methods) for cid, methods in by_case.items()]
        payloads = chunks(work, settings.cases_per_task)
        names = {plan.index_of[c.case_id]: c.case_id for c in plan.cases}
        new = 0
        with progress_bar(len(plan.todo), f"eval {infos[0].name} on {len(infos)} workers", progress) as bar:
            results = pool.results(payloads, lambda actor, chunk: actor.evaluate.remote(chunk),
                                   lambda chunk: "case " + ", ".join(names[i] for i, _ in chunk), bar)
            for _, records in results:
                for record in records:
                    key = (record["case_id"], record["method"])
                    if key in plan.done:  # cannot happen (a task is written once), but never count twice
                        logger.warning("dropping a second result for case %s, %s", *key)
                        continue
                    plan.store.append(record)
                    plan.records.append(record)
                    plan.done.add(key)
                    new += 1
                    bar.update(1)
                if on_result is not None:
                    on_result(pool, records)
        log_stats(pool.stats)
        return RayRun(finish_eval(plan, new, started), pool.stats)


# ----------------------------------------------------------------------------- trace --dataset --ray


def trace_dataset_ray(
    lm,
    model: str,
    dataset: Path,
    out_dir: Path,
    settings,
    cluster: RaySettings,
    n: int | None = None,
    sigma: float | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
    plots: bool = True,
) -> RayRun:
    """`trace_dataset` with the facts traced by Ray workers. The driver's `lm` (loaded from
    `model`) checks which facts the model knows and σ; the workers must hold the same weights."""
    from ..tracing.dataset import finish_trace, plan_trace

    with RunLock() as lock:  # one process writes out_dir at a time
        plan = plan_trace(lm, dataset, out_dir, settings, n, sigma, cache_dir, progress, lock=lock)
        with connected(cluster), WorkerPool(model, cluster, cache_dir, name=lm.name) as pool:
            infos = pool.start()
            if infos[0].fingerprint != lm.fingerprint:
                raise FactpatchError(f"the workers loaded other weights than {lm.name} here: every node needs the same model files")
            payloads = chunks(plan.todo, cluster.cases_per_task)
            with progress_bar(len(plan.selected), f"tracing facts on {len(infos)} workers", progress,
                      len(plan.selected) - len(plan.todo)) as bar:
                results = pool.results(payloads, lambda actor, facts: actor.trace.remote(facts, settings, plan.sigma),
                                       lambda facts: "fact " + ", ".join(f.id for f in facts), bar, "facts")
                for _, records in results:
                    for record in records:
                        if record["id"] in plan.done:
                            logger.warning("dropping a second trace of fact %s", record["id"])
                            continue
                        plan.store.append(record)
                        plan.done[record["id"]] = record
                        bar.update(1)
            log_stats(pool.stats)
            return RayRun(finish_trace(lm, plan, settings, plots), pool.stats)


# ----------------------------------------------------------------------------- sequential scoring


class StackScorer:
    """Scores a sequential run's checkpoints on Ray workers (`run_sequential(..., scorer=...)`):
    each worker gets the patch stack (each patch put into the object store once) and scores a
    disjoint slice of the edited cases."""

    def __init__(self, pool: WorkerPool, fingerprint: str):
        infos = [s.info for s in pool.slots]
        if any(i.fingerprint != fingerprint for i in infos):
            raise FactpatchError("the Ray workers loaded other weights than the driver: every node needs the same model files")
        self.pool = pool
        self.refs: dict[str, object] = {}

    def __call__(self, method: str, edits: int, todo: list, generate_for: set, config, stack, progress: bool) -> Iterator[dict]:
        ray = self.pool.ray
        for patch in stack.applied:
            if patch.id not in self.refs:
                self.refs[patch.id] = ray.put(patch)
        patches = [(p.id, self.refs[p.id]) for p in stack.applied]
        items = [(i, case, i in generate_for) for i, case in todo]
        payloads = chunks(items, self.pool.settings.cases_per_task)
        with progress_bar(len(items), f"{method}: scoring at {edits} on {len(self.pool.slots)} workers", progress) as bar:
            results = self.pool.results(
                payloads, lambda actor, chunk: actor.score_stack.remote(patches, method, edits, chunk, config),
                lambda chunk: f"{method} at {edits} edits: case " + ", ".join(c.case_id for _, c, _ in chunk), bar)
            for _, records in results:
                for record in records:
                    bar.update(1)
                    yield record


def run_sequential_ray(
    lm,
    model: str,
    dataset,
    config,
    out_dir: Path,
    cluster: RaySettings,
    cache_dir: Path | None = None,
    progress: bool = True,
    plots: bool = True,
) -> RayRun:
    """`run_sequential` with the edits made here, in order, and every checkpoint's scoring spread
    over Ray workers that load `model` (the same weights as `lm`)."""
    from .sequential import run_sequential

    with connected(cluster), WorkerPool(model, cluster, cache_dir, name=lm.name) as pool:
        pool.start()
        scorer = StackScorer(pool, lm.fingerprint)
        run = run_sequential(lm, dataset, config, out_dir, cache_dir, progress, scorer=scorer, plots=plots)
        log_stats(pool.stats)
        return RayRun(run, pool.stats)
