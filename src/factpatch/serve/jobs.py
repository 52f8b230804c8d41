"""Long work (a trace, an edit) as jobs: started by a POST, polled with GET /v1/jobs/{id}.

Jobs run one at a time on one worker thread: each needs the model to itself anyway (host.py),
and a queue shows a waiting user where they stand. A job's `progress` is a fraction, updated by
the work through a tqdm-like bar (`JobProgress`) or by `job.stage(...)`. Finished jobs are kept
(the newest `keep`) so a page that polls late still gets the result.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import FactpatchError

logger = logging.getLogger(__name__)


@dataclass
class Job:
    id: str
    kind: str  # "trace", "edit"
    params: dict
    state: str = "queued"  # queued, running, done, failed
    progress: float = 0.0
    message: str = "waiting for the model"
    result: Any = None
    error: str | None = None
    created: float = field(default_factory=time.time)
    finished: float | None = None

    def stage(self, message: str, progress: float | None = None) -> None:
        self.message = message
        if progress is not None:
            self.progress = max(self.progress, min(1.0, progress))

    def to_dict(self) -> dict:
        return {
            "id": self.id, "object": "job", "kind": self.kind, "state": self.state,
            "progress": round(self.progress, 4), "message": self.message, "params": self.params,
            "result": self.result, "error": self.error,
        }


class JobProgress:
    """A tqdm stand-in that moves a job's progress between `start` and `end` (fractions)."""

    def __init__(self, job: Job, start: float = 0.0, end: float = 1.0, total: float | None = None, **_: Any):
        self.job, self.start, self.end = job, start, end
        self.total = total or 0
        self.n = 0

    def __enter__(self) -> JobProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def update(self, n: float = 1) -> None:
        self.n += n
        if self.total:
            self.job.progress = self.start + (self.end - self.start) * min(1.0, self.n / self.total)

    def close(self) -> None:
        pass


class JobRunner:
    def __init__(self, keep: int = 100) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="factpatch-job")
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self.keep = keep

    def submit(self, kind: str, params: dict, work: Callable[[Job], Any]) -> Job:
        job = Job(secrets.token_hex(8), kind, params)
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > self.keep:
                self._jobs.popitem(last=False)
        self._pool.submit(self._run, job, work)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def _run(self, job: Job, work: Callable[[Job], Any]) -> None:
        job.state = "running"
        try:
            job.result = work(job)
            job.state, job.progress, job.message = "done", 1.0, "done"
        except FactpatchError as exc:
            job.state, job.error, job.message = "failed", str(exc), "failed"
        except Exception as exc:  # a job's failure is reported to its page, not lost in a thread
            logger.exception("%s job %s failed", job.kind, job.id)
            job.state, job.error, job.message = "failed", f"{type(exc).__name__}: {exc}", "failed"
        finally:
            job.finished = time.time()

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
