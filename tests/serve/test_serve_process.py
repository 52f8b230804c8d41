"""`factpatch serve` as a process: SIGKILL right after an apply, restart with the same --state,
and the weights fingerprint is the same; bad options fail with one line before a model loads."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import factpatch
from serve_helpers import rank_one_patch

from factpatch.editing.patch import save_patch

SRC = Path(factpatch.__file__).resolve().parents[1]  # the directory holding the package under test


def start(model_dir: Path, state: Path) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "factpatch.cli", "serve", "--model", str(model_dir), "--port", "0",
         "--state", str(state), "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    deadline = time.monotonic() + 120
    for line in proc.stdout:
        match = re.search(r"on (http://127\.0\.0\.1:\d+)/", line)
        if match:
            url = match.group(1)
            break
        assert time.monotonic() < deadline, "the server did not start"
    else:
        raise AssertionError(f"the server exited: {proc.wait()}")
    while True:  # uvicorn accepts once its loop runs
        try:
            httpx.get(url + "/v1/models", timeout=2)
            return proc, url
        except httpx.TransportError:
            assert time.monotonic() < deadline
            time.sleep(0.1)


def test_sigkill_after_an_apply_then_restart_gives_the_same_fingerprint(fresh_tiny, tmp_path):
    lm = fresh_tiny("llama")
    model_dir = tmp_path / "model"
    lm.model.save_pretrained(model_dir)
    lm.tokenizer.save_pretrained(model_dir)
    state = tmp_path / "state"

    proc, url = start(model_dir, state)
    try:
        base = httpx.get(url + "/v1/state").json()
        assert base["fingerprint"] == base["base_fingerprint"] == lm.fingerprint
        patches = [rank_one_patch(lm, layer, seed=layer, scale=3.0) for layer in (1, 2)]
        for patch in patches:
            data = save_patch(patch, tmp_path / f"{patch.id}.safetensors").read_bytes()
            r = httpx.post(url + "/v1/patches", content=data, headers={"Content-Type": "application/octet-stream"})
            assert r.status_code == 201, r.text
        applied = httpx.get(url + "/v1/state").json()
        assert applied["fingerprint"] != base["fingerprint"]
        proc.send_signal(signal.SIGKILL)  # no shutdown handler runs
        proc.wait(10)
    finally:
        proc.kill()

    proc, url = start(model_dir, state)
    try:
        again = httpx.get(url + "/v1/state").json()
        assert again["fingerprint"] == applied["fingerprint"]
        assert again["stack"]["patches"] == [p.id for p in patches]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


@pytest.mark.parametrize("argv, message", [
    (["--host", "0.0.0.0"], "give a --token"),
    (["--host", "0.0.0.0", "--token", "short"], "at least 16 characters"),
    (["--port", "70000"], "--port must be between"),
])
def test_bad_options_fail_with_one_line(argv, message, capsys, monkeypatch):
    from factpatch.cli import main

    monkeypatch.delenv("FACTPATCH_TOKEN", raising=False)
    assert main(["serve", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
