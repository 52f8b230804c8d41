"""Long runs on a Ray cluster: `factpatch eval --ray`, `factpatch trace --dataset … --ray`, and
the scoring of a sequential run's checkpoints spread over workers.

One Ray actor per worker (`Worker`) loads the model once and then takes whatever work the driver
sends: a few cases to evaluate, a few facts to trace, or a slice of edited cases to score under a
patch stack. The driver (`WorkerPool`) keeps every worker busy with small tasks (a task is one case
by default, so a lost worker costs at most the few cases it held), and hands each result to the
caller as it arrives; the callers append it to the same `results.jsonl` a single-process run
writes (core.runstore), through the same planning and summarising code (`plan_eval` /
`finish_eval` in evaluation.run, `plan_trace` / `finish_trace` in tracing.dataset). So a Ray run
and a single-process run over the same cases write the same files and the same numbers — each case
starts from the unedited weights and its sampling is seeded by its position in the data set — and
either can resume the other's directory.

Faults: when a worker dies (killed, out of memory, its node lost), every task it held goes back to
the front of the queue, a fresh worker is started in its place (Ray places it where there is room),
and the log names the cases retried. A result is written only once, when its task returns, so
nothing is lost or counted twice; a task whose worker dies `max_attempts` times is an error. When
the driver dies, its workers die with it (Ray ties them to the driver) and rerunning the same
command resumes from `results.jsonl`.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from ..core.errors import FactpatchError

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class RaySettings:
    """Where to run and how wide."""

    address: str = "local"  # "local": a private instance on this machine (or $RAY_ADDRESS); "auto"; HOST:PORT; ray://HOST:PORT
    workers: int | None = None  # default: as many as the cluster's CPUs allow at `threads_per_worker` each
    threads_per_worker: int = 1  # torch threads per worker, and the CPUs Ray reserves for it
    cases_per_task: int = 1  # small: a lost worker costs at most this many cases per task it held
    tasks_per_worker: int = 2  # queued on each worker so it never waits for the driver between tasks
    max_attempts: int = 3  # a task lost with its worker this many times is an error, not a loop
    init_options: dict = field(default_factory=dict)  # extra ray.init options for a local instance (num_cpus, …)

    def __post_init__(self):
        if self.workers is not None and self.workers < 1:
            raise FactpatchError(f"--workers must be at least 1, got {self.workers}")
        if self.threads_per_worker < 1:
            raise FactpatchError(f"--threads-per-worker must be at least 1, got {self.threads_per_worker}")
        if min(self.cases_per_task, self.tasks_per_worker, self.max_attempts) < 1:
            raise FactpatchError("cases per task, tasks per worker and attempts must be at least 1")
        if not self.address or not self.address.strip():
            raise FactpatchError("--ray needs an address: auto, HOST:PORT or ray://HOST:PORT (or nothing for a local instance)")
        if self.address not in ("local", "auto"):
            host, sep, port = self.address.removeprefix("ray://").rpartition(":")
            if not sep or not host or not port.isdigit():
                raise FactpatchError(f"--ray {self.address!r}: use auto, HOST:PORT or ray://HOST:PORT")


def require_ray():
    """The ray module, or one clear error when it is not installed."""
    from ..core.extras import require

    require("ray", "--ray")
    import ray

    return ray


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast on an address nothing listens at (ray.init would retry for a minute or more)."""
    if address in ("local", "auto"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise FactpatchError(f"cannot reach a Ray cluster at {address}: {exc.strerror or exc}") from None


@contextlib.contextmanager
def connected(settings: RaySettings):
    """Join (or start) the cluster for the block; a Ray session already open in this process is used
    as it is and left open."""
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    check_reachable(settings.address)
    # "local" also tells Ray not to join a cluster that `ray start` left on this machine
    options = {"address": "local", "include_dashboard": False, "logging_level": logging.WARNING,
               **settings.init_options}
    if settings.address != "local" or os.environ.get("RAY_ADDRESS"):  # joining: the cluster has its own settings
        options = {"address": settings.address if settings.address != "local" else None,
                   "logging_level": logging.WARNING}
    try:
        ray.init(**options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = {"local": "a local Ray instance", "auto": "a Ray cluster on this machine (--ray auto)"}.get(
            settings.address, f"the Ray cluster at {settings.address}")
        message = _first_line(exc)
        if settings.address not in ("local", "auto") and "RAY_AUTH_MODE" not in os.environ:
            # Ray sends its token to an explicit address only when told to (docs/distributed.md)
            message += ("; if the cluster uses token authentication (Ray's default), set RAY_AUTH_MODE=token "
                        "and give its token (~/.ray/auth_token or RAY_AUTH_TOKEN)")
        raise FactpatchError(f"cannot start or join {where}: {message}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


# ----------------------------------------------------------------------------- the worker


@dataclass(frozen=True)
class WorkerInfo:
    """Who a worker is; `name` and `fingerprint` are what a run's description needs of the model."""

    slot: int
    node: str  # the node's IP address, for the log
    node_id: str  # Ray's node id (two nodes on one machine share an address)
    pid: int
    name: str
    fingerprint: str


@contextlib.contextmanager
def _node_lock(cache_dir: Path | None):
    """One model load at a time per cache directory: the first worker on a node converts the
    embedded model into the cache, the others wait and read it."""
    from ..core.cache import default_cache_dir

    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".factpatch-load.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class Worker:
    """One model on one node (a Ray actor: `ray.remote(Worker)`); does the work the driver sends.

    Errors a user can act on (a model not found on this node, bad settings) are kept and raised
    by every call, so the driver reports them as one line instead of a dead actor."""

    def __init__(self, model: str, name: str, cache_dir: str | None, threads: int, slot: int):
        import torch
        from transformers.utils import logging as hf_logging

        from ..core.models import load_model

        torch.set_num_threads(threads)
        hf_logging.disable_progress_bar()  # one bar per worker and load would drown the driver's
        self.slot = slot
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.error: str | None = None
        self.lm = None
        try:
            with _node_lock(self.cache_dir):
                self.lm = load_model(model, self.cache_dir)
            self.lm.name = name  # the name the user gave, as a single-process run records it
        except (FactpatchError, OSError) as exc:
            self.error = f"worker on {socket.gethostname()} could not load {model}: {exc}"
        self.task = None  # what setup_* prepared
        self.stack = None  # the patch stack applied for scoring

    def _check(self) -> None:
        if self.error is not None:
            raise FactpatchError(self.error)

    def ready(self) -> WorkerInfo:
        import ray

        self._check()
        return WorkerInfo(self.slot, ray.util.get_node_ip_address(), ray.get_runtime_context().get_node_id(),
                          os.getpid(), self.lm.name, self.lm.fingerprint)

    # --- single-edit evaluation (evaluation.run)

    def setup_eval(self, dataset, config) -> dict:
        """Editors and TF-IDF for `config` on `dataset`; returns the methods' settings on this model."""
        from ..editing.registry import method_params
        from .metrics import TfidfModel

        self._check()
        params = {m: method_params(self.lm, m, config.overrides.get(m), config.preset) for m in config.methods}
        tfidf = TfidfModel(dataset.idf_texts) if config.generation and dataset.kind == "counterfact" else None
        self.task = {"dataset": dataset, "config": config, "params": params, "editors": {}, "tfidf": tfidf}
        return {m: p.to_dict() for m, p in params.items()}

    def evaluate(self, chunk: list[tuple[int, list[str]]]) -> tuple[list[dict], float]:
        """Records for each (data-set index, methods) of the chunk, exactly as run_eval makes them."""
        from ..editing.registry import make_editor
        from . import generation, run

        self._check()
        began = time.perf_counter()
        task = self.task
        config = task["config"]
        records = []
        for index, methods in chunk:
            ctx = run.CaseContext(task["dataset"].cases[index], index)
            if task["tfidf"] is not None:
                ctx.reference = generation.reference_texts(self.lm, ctx.case, config.gen, generation.case_seed(config.seed, index))
            for method in methods:
                if method not in task["editors"]:
                    editor = make_editor(self.lm, method, task["params"][method], self.cache_dir, False)
                    editor.prepare()
                    task["editors"][method] = editor
                records.append(run.evaluate_case(self.lm, task["editors"][method], ctx, config, task["tfidf"]))
        return records, time.perf_counter() - began

    # --- causal tracing over a data set (tracing.dataset)

    def trace(self, facts: list, settings, sigma: float) -> tuple[list[dict], float]:
        from ..tracing.dataset import trace_fact

        self._check()
        began = time.perf_counter()
        records = [trace_fact(self.lm, fact, settings, sigma) for fact in facts]
        return records, time.perf_counter() - began

    # --- a sequential run's checkpoint scoring (evaluation.sequential)

    def score_stack(self, patches: list, method: str, edits: int, chunk: list, config) -> tuple[list[dict], float]:
        """Score (index, case, generate) items on the model with `patches` (ids and object refs, in
        order) applied; a stack that extends the one already applied only adds the new patches."""
        import ray

        from ..editing.patch import PatchStack
        from .sequential import edited_case_record

        self._check()
        began = time.perf_counter()
        if self.stack is None:
            self.stack = PatchStack(self.lm)
        wanted = [patch_id for patch_id, _ in patches]
        have = [p.id for p in self.stack.applied]
        if wanted[: len(have)] != have:
            self.stack.revert()
            have = []
        for patch_id, ref in patches[len(have):]:
            self.stack.apply(ray.get(ref))
        records = [edited_case_record(self.lm, method, edits, i, case, generate, config) for i, case, generate in chunk]
        return records, time.perf_counter() - began


# ----------------------------------------------------------------------------- the driver


@dataclass
class _Slot:
    info: WorkerInfo | None  # None until a restarted worker's `ready` is read
    actor: object
    ready: object = None  # a restarted worker's pending `ready()` call
    items: int = 0  # cases (facts) done
    busy_seconds: float = 0.0
    started: float = field(default_factory=time.perf_counter)
    restarts: int = 0


@dataclass
class PoolStats:
    """What the pool measured: the basis of Ray's overhead per case (benchmarks/ray_overhead.py)."""

    workers: int = 0
    startup_seconds: float = 0.0  # starting the workers and loading the model everywhere
    run_seconds: float = 0.0  # from the first task handed out to the last result
    busy_seconds: float = 0.0  # the workers' own time inside tasks
    tasks: int = 0
    retried_tasks: int = 0
    restarted_workers: int = 0


class WorkerPool:
    """`n` workers holding one model; `results()` runs tasks over them, retrying lost ones."""

    def __init__(self, model: str, settings: RaySettings, cache_dir: Path | None = None, name: str | None = None):
        from ..core.models import EMBEDDED

        self.ray = require_ray()
        self.settings = settings
        # workers run in other directories (other machines): paths must be absolute
        path = Path(model).expanduser()
        self.model = model if model in EMBEDDED else str(path.resolve())
        self.name = name or (model if model in EMBEDDED else str(path))  # as load_model names it
        self.cache_dir = str(Path(cache_dir).expanduser().resolve()) if cache_dir is not None else None
        self.slots: list[_Slot] = []
        self.setups: list[Callable] = []  # calls every (re)started worker gets before any task
        self.stats = PoolStats()
        self._remote = self.ray.remote(Worker)

    def _start_actor(self, slot: int):
        threads = self.settings.threads_per_worker
        return self._remote.options(num_cpus=threads, max_restarts=0, max_task_retries=0).remote(
            self.model, self.name, self.cache_dir, threads, slot)

    def start(self) -> list[WorkerInfo]:
        """Start the workers and wait for each to load the model; all must hold the same weights."""
        began = time.perf_counter()
        resources = self.ray.cluster_resources()
        cpus = int(resources.get("CPU", 0))
        threads = self.settings.threads_per_worker
        count = self.settings.workers or max(1, cpus // threads)
        if count * threads > cpus:
            raise FactpatchError(
                f"the Ray cluster has {cpus} CPUs; {count} workers × {threads} threads need {count * threads}")
        logger.info("starting %d Ray workers (%d threads each) for %s", count, threads, self.name)
        actors = [self._start_actor(i) for i in range(count)]
        infos = self._get([a.ready.remote() for a in actors], "starting the workers")
        self.slots = [_Slot(info, actor) for info, actor in zip(infos, actors)]
        for info in infos[1:]:
            if info.fingerprint != infos[0].fingerprint:
                raise FactpatchError(
                    f"the worker on {info.node} loaded other weights than the one on {infos[0].node} "
                    f"(fingerprints {info.fingerprint[:12]} and {infos[0].fingerprint[:12]}): every node needs the "
                    "same model files")
        nodes = {i.node_id: i.node for i in infos}
        logger.info("%d workers ready on %d node(s) (%s)", count, len(nodes), ", ".join(sorted(set(nodes.values()))))
        self.stats.workers = count
        self.stats.startup_seconds = time.perf_counter() - began
        return infos

    def setup(self, call: Callable) -> list:
        """Run `call(actor) -> ObjectRef` on every worker now and on every replacement later."""
        self.setups.append(call)
        return self._get([call(s.actor) for s in self.slots], "preparing the workers")

    def _get(self, refs: list, doing: str) -> list:
        try:
            return self.ray.get(refs)
        except self.ray.exceptions.RayTaskError as exc:
            raise _task_error(exc) from None
        except self.ray.exceptions.RayActorError as exc:
            raise FactpatchError(f"a Ray worker died while {doing}: {_first_line(exc)}") from None

    def _replace(self, slot: _Slot) -> None:
        with contextlib.suppress(Exception):
            self.ray.kill(slot.actor, no_restart=True)
        index = self.slots.index(slot)
        slot.actor = self._start_actor(index)
        slot.info = None
        slot.ready = slot.actor.ready.remote()
        slot.restarts += 1
        self.stats.restarted_workers += 1
        for call in self.setups:
            call(slot.actor)  # queued before any task: actor calls run in the order they were made

    def _started(self, slot: _Slot) -> bool:
        """Whether a replacement worker has loaded the model (its `ready` answered); one that died
        while starting is replaced again, up to `max_attempts` times a slot."""
        done, _ = self.ray.wait([slot.ready], timeout=0)
        if not done:
            return False
        try:
            slot.info = self.ray.get(slot.ready)
        except self.ray.exceptions.RayTaskError as exc:
            raise _task_error(exc) from None
        except self.ray.exceptions.RayActorError as exc:
            if slot.restarts >= self.settings.max_attempts * 2:
                raise FactpatchError(f"worker {self.slots.index(slot)} died {slot.restarts} times, the last while "
                                     f"starting ({_first_line(exc)}); see the Ray logs") from None
            logger.warning("a restarted worker died while starting (%s); starting another", _first_line(exc))
            self._replace(slot)
            return False
        slot.started = time.perf_counter()
        logger.info("worker %d restarted on %s, pid %d", self.slots.index(slot), slot.info.node, slot.info.pid)
        return True

    def results(self, payloads: Sequence[list], call: Callable, describe: Callable = str, bar=None,
                unit: str = "cases") -> Iterator[tuple[object, object]]:
        """Yield (payload, result) as each task finishes, in whatever order they finish.

        Each payload is a list of items (cases, facts); `call(actor, payload) -> ObjectRef`; each
        result is `(value, busy_seconds)`. A task whose worker dies goes back to the front of the
        queue for the next free worker; `describe(payload)` names it in the log. The bar's postfix
        shows each worker's rate in `unit` a minute."""
        ray = self.ray
        queue = deque(range(len(payloads)))
        attempts = [0] * len(payloads)
        in_flight: dict = {}  # ObjectRef -> (slot, task index)
        began = time.perf_counter()
        try:
            while queue or in_flight:
                for slot in self.slots:
                    if slot.info is None and not self._started(slot):
                        continue  # a replacement still starting (or waiting for room): no work for it yet
                    held = sum(1 for s, _ in in_flight.values() if s is slot)
                    while queue and held < self.settings.tasks_per_worker:
                        task = queue.popleft()
                        in_flight[call(slot.actor, payloads[task])] = (slot, task)
                        held += 1
                starting = [s.ready for s in self.slots if s.info is None]
                ready, _ = ray.wait(list(in_flight) + starting, num_returns=1)
                ref = ready[0]
                if ref not in in_flight:
                    continue  # a replacement is ready: the next round gives it work
                slot, task = in_flight.pop(ref)
                try:
                    value, busy = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:
                    raise _task_error(exc) from None
                except ray.exceptions.RayActorError as exc:
                    lost = [task] + [t for r, (s, t) in list(in_flight.items()) if s is slot]
                    for r in [r for r, (s, _) in in_flight.items() if s is slot]:
                        del in_flight[r]
                    for t in lost:
                        attempts[t] += 1
                        if attempts[t] >= self.settings.max_attempts:
                            raise FactpatchError(
                                f"{describe(payloads[t])} was lost with its worker {attempts[t]} times "
                                f"(last: {_first_line(exc)}); see the Ray logs") from None
                    queue.extendleft(sorted(lost, reverse=True))
                    logger.warning("worker %d on %s, pid %d, died (%s); retrying %s on the next free worker",
                                   self.slots.index(slot), slot.info.node, slot.info.pid, _first_line(exc),
                                   ", ".join(describe(payloads[t]) for t in sorted(lost)))
                    self.stats.retried_tasks += len(lost)
                    self._replace(slot)
                    continue
                slot.items += len(payloads[task])
                slot.busy_seconds += busy
                self.stats.busy_seconds += busy
                self.stats.tasks += 1
                if bar is not None:
                    bar.set_postfix_str(f"{unit}/min: {self.rates()}", refresh=False)
                yield payloads[task], value
        finally:
            self.stats.run_seconds += time.perf_counter() - began
            for ref in in_flight:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=False)

    def rates(self) -> str:
        """Each worker's items a minute since it started working, for the progress bar."""
        now = time.perf_counter()
        return " ".join(f"w{i} {60 * s.items / max(now - s.started, 1e-9):.1f}" for i, s in enumerate(self.slots))

    def close(self) -> None:
        for slot in self.slots:
            with contextlib.suppress(Exception):
                self.ray.kill(slot.actor, no_restart=True)
        self.slots = []

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _task_error(exc) -> BaseException:
    """A worker's exception as the driver raises it: a FactpatchError stays one clear line."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, FactpatchError):
        return FactpatchError(str(cause))
    return cause if isinstance(cause, BaseException) else exc


def _bar(total: int, desc: str, progress: bool, initial: int = 0):
    return tqdm(total=total, initial=initial, desc=desc, unit="result", disable=not progress, dynamic_ncols=True)


def chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


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
    with connected(settings) as ray, WorkerPool(model, settings, cache_dir) as pool:
        infos = pool.start()
        dataset_ref = ray.put(dataset)
        hparams = pool.setup(lambda actor: actor.setup_eval.remote(dataset_ref, config))
        if any(h != hparams[0] for h in hparams[1:]):
            raise FactpatchError("the workers disagree on the methods' settings: is factpatch the same version everywhere?")
        # describe_config reads only the model's name and fingerprint, which WorkerInfo carries
        plan = plan_eval(dataset, config, out_dir, describe_config(infos[0], dataset, config, hparams[0]))
        by_case: dict[str, list[str]] = {}
        for case, method in plan.todo:
            by_case.setdefault(case.case_id, []).append(method)
        work = [(plan.index_of[cid], methods) for cid, methods in by_case.items()]
        payloads = chunks(work, settings.cases_per_task)
        names = {plan.index_of[c.case_id]: c.case_id for c in plan.cases}
        new = 0
        with _bar(len(plan.todo), f"eval {infos[0].name} on {len(infos)} workers", progress) as bar:
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
        _log_stats(pool.stats)
        return RayRun(finish_eval(plan, new, started), pool.stats)


def _log_stats(stats: PoolStats) -> None:
    if stats.retried_tasks:
        logger.warning("%d task(s) were retried after %d worker(s) died; each result was written once",
                       stats.retried_tasks, stats.restarted_workers)
    logger.info("%d workers: %.1f s to start, %d tasks in %.1f s (%.1f s of work)", stats.workers,
                stats.startup_seconds, stats.tasks, stats.run_seconds, stats.busy_seconds)


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

    plan = plan_trace(lm, dataset, out_dir, settings, n, sigma, cache_dir, progress)
    with connected(cluster), WorkerPool(model, cluster, cache_dir, name=lm.name) as pool:
        infos = pool.start()
        if infos[0].fingerprint != lm.fingerprint:
            raise FactpatchError(f"the workers loaded other weights than {lm.name} here: every node needs the same model files")
        payloads = chunks(plan.todo, cluster.cases_per_task)
        with _bar(len(plan.selected), f"tracing facts on {len(infos)} workers", progress,
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
        _log_stats(pool.stats)
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
        with _bar(len(items), f"{method}: scoring at {edits} on {len(self.pool.slots)} workers", progress) as bar:
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
) -> RayRun:
    """`run_sequential` with the edits made here, in order, and every checkpoint's scoring spread
    over Ray workers that load `model` (the same weights as `lm`)."""
    from .sequential import run_sequential

    with connected(cluster), WorkerPool(model, cluster, cache_dir, name=lm.name) as pool:
        pool.start()
        scorer = StackScorer(pool, lm.fingerprint)
        run = run_sequential(lm, dataset, config, out_dir, cache_dir, progress, scorer=scorer)
        _log_stats(pool.stats)
        return RayRun(run, pool.stats)

