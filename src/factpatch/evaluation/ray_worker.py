"""One Ray actor per worker (`Worker`): it loads the model once and then takes whatever work the
driver (evaluation.ray_pool.WorkerPool) sends — a few cases to evaluate (evaluation.run), a few
facts to trace (tracing.dataset), or a slice of a sequential run's edited cases to score under a
patch stack (evaluation.sequential) — each made by the same functions a single-process run calls.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import FactpatchError

@dataclass(frozen=True)
class WorkerInfo:
    """Who a worker is; `name` and `fingerprint` are what a run's description needs of the model."""

    slot: int
    node: str  # the node's IP address, for the log
    node_id: str  # Ray's node id (two nodes on one machine share an address)
    pid: int
    name: str
    fingerprint: str

    @property
    def device(self):
        """Where the worker's model runs: Ray workers run on their CPUs (`--ray` refuses `--device`)."""
        import torch

        return torch.device("cpu")


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
