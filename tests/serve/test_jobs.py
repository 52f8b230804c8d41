"""Jobs: run one at a time, report progress, and report a failure with its reason."""

from __future__ import annotations

import threading
import time

from factpatch.core.errors import FactpatchError
from factpatch.serve.jobs import JobProgress, JobRunner


def wait(runner: JobRunner, job_id: str):
    deadline = time.monotonic() + 10
    while (job := runner.get(job_id)).state in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return job


def test_jobs_run_in_order_with_progress_and_failures_reported():
    runner = JobRunner(keep=2)
    gate = threading.Event()
    seen: list[float] = []

    def slow(job):
        with JobProgress(job, 0.5, 1.0, total=4) as bar:
            bar.update(2)
            seen.append(job.progress)
            gate.wait(5)
        return {"ok": True}

    first = runner.submit("trace", {}, slow)
    second = runner.submit("edit", {}, lambda job: (_ for _ in ()).throw(FactpatchError("target equals the true object")))
    time.sleep(0.1)
    assert runner.get(second.id).state == "queued"  # one at a time
    gate.set()
    assert wait(runner, first.id).result == {"ok": True} and seen == [0.75]
    failed = wait(runner, second.id)
    assert failed.state == "failed" and failed.error == "target equals the true object"
    third = runner.submit("edit", {}, lambda job: 1 / 0)
    assert wait(runner, third.id).error.startswith("ZeroDivisionError")
    assert runner.get(first.id) is None  # only the newest `keep` are kept
    runner.shutdown()
