"""Evaluation and tracing on Ray workers (evaluation.distributed) with tiny models: the same
per-case results as the in-process run, a worker killed mid-run, a two-node cluster on this
machine, and the bad-input errors."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import factpatch
from factpatch.core.errors import FactpatchError
from factpatch.evaluation.data import load_dataset
from factpatch.evaluation.run import EvalSettings, run_eval
from tiny import build_tiny

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'factpatch[ray]' (make test installs it)")

from factpatch.evaluation.distributed import run_eval_ray, run_sequential_ray, trace_dataset_ray  # noqa: E402
from factpatch.evaluation.ray_pool import RaySettings  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

FIXTURES = Path(__file__).parent / "fixtures"
FLAT = f"counterfact:{FIXTURES / 'counterfact-flat.json'}"
FAST = {"ft+l": {"steps": "3"}, "rome": {"v_steps": "2", "prefixes": "[[1, 3]]"}}
# the workers import the factpatch under test, not whatever the interpreter would find first
SOURCE = str(Path(factpatch.__file__).resolve().parents[1])
TIMING = ("edit_seconds", "eval_seconds")


@pytest.fixture(scope="module")
def local_ray():
    """A private 2-CPU Ray instance for the module, shut down (its processes with it) at the end."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING,
             runtime_env={"env_vars": {"PYTHONPATH": SOURCE}})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_tokenizer):
    """The tiny Llama as a model directory: Ray workers load the model by path, as users give it."""
    path = tmp_path_factory.mktemp("tiny-llama-ray")
    build_tiny("llama", len(tiny_tokenizer)).save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


def _lines(directory: Path) -> list[dict]:
    return [json.loads(line) for line in (directory / "results.jsonl").read_text().splitlines()]


def _untimed(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in TIMING}


def _by_key(records: list[dict]) -> dict:
    return {(r["case_id"], r["method"]): _untimed(r) for r in records}


def _config(**kw):
    return EvalSettings(**{"methods": ["none", "rome", "ft+l"], "overrides": FAST, **kw})


def test_two_workers_give_the_in_process_results(local_ray, model_dir, tmp_path):
    from factpatch.core.models import load_model

    dataset = load_dataset(FLAT)
    alone = run_eval(load_model(str(model_dir), tmp_path / "cache"), dataset, _config(), tmp_path / "alone",
                     tmp_path / "cache", progress=False)
    spread = run_eval_ray(str(model_dir), dataset, _config(), tmp_path / "ray", RaySettings(workers=2),
                          tmp_path / "cache", progress=False)
    cases = len(dataset.cases)
    assert spread.stats.workers == 2 and spread.stats.tasks == cases  # one task per case
    assert spread.run.new_records == alone.new_records == 3 * cases
    ray_records = _lines(tmp_path / "ray")
    assert len(ray_records) == 3 * cases
    assert _by_key(ray_records) == _by_key(_lines(tmp_path / "alone"))  # metrics, raw scores, patch norms
    for name in ("summary.json", "summary.md", "summary.csv", "config.json"):
        assert (tmp_path / "ray" / name).read_text() == (tmp_path / "alone" / name).read_text()
    # either kind of run resumes the other's directory: nothing left to do
    again = run_eval(load_model(str(model_dir), tmp_path / "cache"), dataset, _config(), tmp_path / "ray",
                     tmp_path / "cache", progress=False)
    assert again.new_records == 0 and again.summary == alone.summary


def test_a_worker_killed_mid_run_loses_nothing_and_counts_nothing_twice(local_ray, model_dir, tmp_path, caplog):
    dataset = load_dataset("builtin")
    killed = []

    def kill_first_worker(pool, records):
        if not killed:  # after the first result: the worker holds more queued work, which must rerun
            slot = pool.slots[0]
            os.kill(slot.info.pid, signal.SIGKILL)
            killed.append(slot.info.pid)

    settings = RaySettings(workers=2)
    with caplog.at_level(logging.WARNING, logger="factpatch.evaluation.ray_pool"):
        run = run_eval_ray(str(model_dir), dataset, _config(methods=["none", "ft+l"], n=6), tmp_path / "out", settings,
                           tmp_path / "cache", progress=False, on_result=kill_first_worker)
    assert killed
    records = _lines(tmp_path / "out")
    keys = [(r["case_id"], r["method"]) for r in records]
    cases = [c.case_id for c in dataset.cases[:6]]
    assert sorted(keys) == sorted((c, m) for c in cases for m in ("none", "ft+l"))  # each exactly once
    assert run.stats.restarted_workers == 1 and run.stats.retried_tasks >= 1
    retried = [r.getMessage() for r in caplog.records if "died" in r.getMessage()]
    assert retried and f"pid {killed[0]}" in retried[0] and "retrying case" in retried[0]
    assert run.run.summary["none"]["ES"]["n"] == 6


def test_a_lost_task_is_retried_only_so_often(local_ray, model_dir, tmp_path):
    dataset = load_dataset("builtin")

    killed = set()

    def kill_every_worker(pool, records):
        for slot in pool.slots:
            if slot.info is not None and slot.info.pid not in killed:
                os.kill(slot.info.pid, signal.SIGKILL)
                killed.add(slot.info.pid)

    # every worker is killed as soon as one of its results arrives; a task lost once is an error here
    settings = RaySettings(workers=1, max_attempts=1)
    with pytest.raises(FactpatchError, match="was lost with its worker 1 times"):
        run_eval_ray(str(model_dir), dataset, _config(methods=["ft+l"], n=12), tmp_path / "out", settings,
                     tmp_path / "cache", progress=False, on_result=kill_every_worker)
    assert len(_lines(tmp_path / "out")) >= 1  # what finished stays; a rerun resumes from there


def test_trace_dataset_on_workers_matches_in_process(local_ray, model_dir, tmp_path):
    from factpatch.core.models import load_model
    from factpatch.tracing.dataset import trace_dataset
    from factpatch.tracing.settings import NoiseSettings, TraceSettings

    from test_trace import _known_dataset

    lm = load_model(str(model_dir), tmp_path / "cache")
    path = _known_dataset(lm, tmp_path / "known.json", count=3)  # 3 facts it knows, 1 it does not
    settings = TraceSettings(kinds=("hidden", "mlp"), window=2, noise=NoiseSettings(samples=2, seed=1))
    alone = trace_dataset(lm, path, tmp_path / "alone", settings, sigma=1.0, progress=False, plots=False)
    spread = trace_dataset_ray(lm, str(model_dir), path, tmp_path / "ray", settings, RaySettings(workers=2),
                               sigma=1.0, cache_dir=tmp_path / "cache", progress=False, plots=False)
    assert spread.run.traced == alone.traced and spread.stats.tasks == alone.traced
    by_id = lambda d: {r["id"]: r for r in map(json.loads, (d / "results.jsonl").read_text().splitlines())}
    assert by_id(tmp_path / "ray") == by_id(tmp_path / "alone")
    assert spread.run.summary == alone.summary


def test_cli_traces_a_dataset_on_workers_and_resumes_in_one_process(local_ray, model_dir, tmp_path, run):
    from factpatch.core.models import load_model
    from test_trace import _known_dataset

    path = _known_dataset(load_model(str(model_dir), tmp_path / "cache"), tmp_path / "known.json", count=3)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("The Eiffel Tower is located in the city of Paris. " * 40)
    args = ["trace", "--model", model_dir, "--dataset", path, "--samples", 2, "--window", 2, "--kinds", "hidden,mlp",
            "--corpus", corpus, "--quiet", "--out", tmp_path / "out"]
    code, out, err = run(*args, "--ray", "--workers", 2)
    assert code == 0, err
    assert "3 traced (3 new" in out
    code, out, err = run(*args)  # the same directory, one process: nothing left to do
    assert code == 0 and "3 traced (0 new" in out


def test_sequential_scoring_on_workers_matches_in_process(local_ray, model_dir, tmp_path):
    from factpatch.core.models import load_model
    from factpatch.editing.stats import CorpusSpec
    from factpatch.evaluation.sequential import SequentialSettings, run_sequential

    config = SequentialSettings(["memit"], 4, batch_size=2, checkpoint_every=2, perplexity_tokens=64,
                              overrides={"memit": {"v_steps": "3", "layers": "0-1", "group_size": "4"}},
                              corpus=CorpusSpec(n_tokens=256))
    dataset = load_dataset("builtin")
    cache = tmp_path / "cache"
    alone = run_sequential(load_model(str(model_dir), cache), dataset, config, tmp_path / "alone", cache, progress=False,
                           plots=False)
    spread = run_sequential_ray(load_model(str(model_dir), cache), str(model_dir), dataset, config, tmp_path / "ray",
                                RaySettings(workers=2), cache, progress=False, plots=False)
    assert spread.stats.tasks == 2 + 4  # every edited case at both checkpoints, on the workers
    key = lambda r: (r["method"], r["edits"], r["case_id"])
    records = lambda d: {key(r): _untimed(r) for r in map(json.loads, (d / "results.jsonl").read_text().splitlines())}
    assert records(tmp_path / "ray") == records(tmp_path / "alone")
    assert all("eval_seconds" in r for r in map(json.loads, (tmp_path / "ray" / "results.jsonl").read_text().splitlines()))
    assert spread.run.summary == alone.summary


# ----------------------------------------------------------------------------- bad input


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # free once the socket closes: nothing listens there


@pytest.mark.parametrize("extra, message", [
    (["--ray", "--workers", "0"], "--workers must be at least 1"),
    (["--ray", "--threads-per-worker", "0"], "--threads-per-worker must be at least 1"),
    (["--ray", "127.0.0.1:CLOSED"], "cannot reach a Ray cluster at 127.0.0.1:"),
    (["--ray", "not-an-address"], "use auto, HOST:PORT or ray://HOST:PORT"),
    (["--workers", "2"], "--workers and --threads-per-worker go with --ray"),
])
def test_bad_ray_options_are_one_line_and_exit_2(run, tmp_path, extra, message):
    extra = [e.replace("CLOSED", str(_closed_port())) for e in extra]
    began = time.perf_counter()
    for command in (["eval", "--dataset", FLAT, "--methods", "none", "--out", tmp_path / "out"],
                    ["trace", "--dataset", FIXTURES / "missing-is-not-read.json", "--out", tmp_path / "t"]):
        if command[0] == "trace":
            known = tmp_path / "known.json"
            known.write_text(json.dumps([{"known_id": 0, "prompt": "Rome is in", "subject": "Rome", "attribute": "Italy"}]))
            command[2] = known
        code, out, err = run(*command, *extra)
        assert code == 2 and out == ""
        assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert time.perf_counter() - began < 30  # an unreachable address fails fast, not after Ray's long retries
    assert not (tmp_path / "out").exists()


def test_without_ray_installed_the_error_says_how_to_get_it(run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    code, out, err = run("eval", "--dataset", FLAT, "--methods", "none", "--out", tmp_path / "out", "--ray", "auto")
    assert code == 2 and err == "error: --ray needs ray, not installed here: pip install 'factpatch[ray]'\n"


# ----------------------------------------------------------------------------- two nodes on one machine


def _free_ports(count: int) -> list[int]:
    """`count` distinct free ports: every socket stays bound until all are chosen, since a port
    closed and asked for again can come straight back (CI once gave two of Ray's components one port)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _ray_node(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    """`ray start --block` in its own process group, so the test stops exactly what it started."""
    ray_cli = Path(sys.executable).with_name("ray")
    with open(log, "w") as handle:
        return subprocess.Popen([str(ray_cli), "start", "--block", "--disable-usage-stats", *args], env=env,
                                stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(process: subprocess.Popen, temp_dir: str) -> None:
    """End a node started by `_ray_node`: its whole process group at once (a graceful stop drains
    for up to 30 s), then anything of it that left the group, found by the node's temp dir."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=30)
    for line in subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout.splitlines():
        pid, _, command = line.strip().partition(" ")
        if temp_dir in command and int(pid) != os.getpid():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.mark.slow
def test_a_two_node_cluster_runs_an_eval_end_to_end(model_dir, tmp_path):
    """A head and a second node (`ray start --address`), one CPU each, on this machine; the eval
    joins with `--ray HOST:PORT` from another process, as a user would, with a worker on each node."""
    if ray.is_initialized():
        ray.shutdown()  # this test's driver is a separate process; free the module's local instance
    temp_dir = tempfile.mkdtemp(prefix="fpray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    # RAY_AUTH_MODE=token: the head makes (or reuses) ~/.ray/auth_token, and the node and the driver,
    # joining by address, send it (Ray sends it to an explicit address only when told to)
    env = {**os.environ, "PYTHONPATH": SOURCE, "RAY_ADDRESS": "", "RAY_AUTH_MODE": "token"}
    # every listening port free and distinct (0: Ray picks one) so the two nodes, and anything else
    # here, never collide
    dashboard, head_agent, head_metrics, node_agent, node_metrics = _free_ports(5)
    ports = lambda agent, metrics: ["--node-ip-address", "127.0.0.1", "--num-cpus", "1",
                                    "--dashboard-agent-listen-port", str(agent), "--metrics-export-port", str(metrics)]
    head = _ray_node(["--head", "--port", "0", "--include-dashboard", "false", "--dashboard-port", str(dashboard),
                      "--temp-dir", temp_dir, *ports(head_agent, head_metrics)],
                     env, tmp_path / "head.log")
    nodes = [head]
    try:
        address_file = Path(temp_dir) / "ray_current_cluster"
        deadline = time.time() + 90
        while not address_file.is_file() or not address_file.read_text().strip():
            assert head.poll() is None and time.time() < deadline, (tmp_path / "head.log").read_text()[-3000:]
            time.sleep(0.5)
        address = address_file.read_text().strip()
        nodes.append(_ray_node(["--address", address, *ports(node_agent, node_metrics)], env, tmp_path / "node.log"))
        out = tmp_path / "out"
        command = [sys.executable, "-c", "import sys; from factpatch.cli import main; sys.exit(main())",
                   "-v", "eval", "--model", str(model_dir), "--dataset", FLAT, "--methods", "none,ft+l", "--set", "ft+l.steps=3", "--out", str(out), "--quiet",
                   "--cache-dir", str(tmp_path / "cache"), "--ray", address, "--workers", "2"]
        began = time.time()
        for attempt in range(60):  # the second node joins a few seconds after it starts
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
            if "Ray cluster has 1 CPUs" not in done.stderr:
                break
            time.sleep(1)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "2 workers ready on 2 node(s)" in done.stderr
        cases = [c.case_id for c in load_dataset(FLAT).cases]
        assert f"{len(cases)} cases, {2 * len(cases)} results ({2 * len(cases)} new)" in done.stdout
        records = _lines(out)
        assert sorted((r["case_id"], r["method"]) for r in records) == sorted(
            (c, m) for c in cases for m in ("none", "ft+l"))
        assert (out / "summary.json").is_file() and (out / "summary.png").is_file()
        print(f"two-node eval took {time.time() - began:.0f} s")
    finally:
        for process in reversed(nodes):
            _stop(process, temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
