"""The Ray side of factpatch's long runs: where to run (`RaySettings`, `connected`) and the pool
of workers that does the work (`WorkerPool`); what the work is lives in evaluation.distributed,
the worker itself in evaluation.ray_worker.

The driver keeps every worker busy with small tasks (a task is one case by default, so a lost
worker costs at most the few cases it held) and hands each result to the caller as it arrives.
When a worker dies (killed, out of memory, its node lost), every task it held goes back to the
front of the queue, a fresh worker is started in its place (Ray places it where there is room),
and the log names the cases retried. A result is handed over only once, when its task returns, so
nothing is lost or counted twice; a task whose worker dies `max_attempts` times is an error.
"""

from __future__ import annotations

import contextlib
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
from .ray_worker import Worker, WorkerInfo

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


def progress_bar(total: int, desc: str, progress: bool, initial: int = 0):
    return tqdm(total=total, initial=initial, desc=desc, unit="result", disable=not progress, dynamic_ncols=True)


def chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def log_stats(stats: PoolStats) -> None:
    if stats.retried_tasks:
        logger.warning("%d task(s) were retried after %d worker(s) died; each result was written once",
                       stats.retried_tasks, stats.restarted_workers)
    logger.info("%d workers: %.1f s to start, %d tasks in %.1f s (%.1f s of work)", stats.workers,
                stats.startup_seconds, stats.tasks, stats.run_seconds, stats.busy_seconds)
