"""Fixtures for the server tests: a host over a fresh tiny model, an app and a client for it, and
patches made by hand (a rank-one delta with the right metadata: what any method's patch is)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny import CORPUS

from factpatch.core.web import new_secret, token_hash
from factpatch.editing.patch import Patch, save_patch
from factpatch.editing.stats import CorpusSpec
from factpatch.serve.app import create_app
from factpatch.serve.auth import Access
from factpatch.serve.context import Limits, ServeContext
from factpatch.serve.experiments import LabSettings
from factpatch.serve.host import ModelHost
from factpatch.serve.state import StateDir


@pytest.fixture
def patch_file(tmp_path):
    def write(patch: Patch, name: str = "p.safetensors") -> Path:
        return save_patch(patch, tmp_path / name)

    return write


@pytest.fixture
def corpus_file(tmp_path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("\n\n".join(CORPUS * 3))
    return path


@pytest.fixture
def make_server(fresh_tiny, tmp_path, corpus_file):
    """make_server(token=None, state=None, family="llama", limits=Limits()) -> (ctx, app)."""

    def make(token: str | None = None, state: Path | None = None, family: str = "llama", limits: Limits = Limits(),
             loopback: bool = True):
        lm = fresh_tiny(family)
        host = ModelHost(lm, StateDir(state) if state is not None else None)
        access = Access(new_secret(), token_hash(token) if token else None, loopback)
        settings = LabSettings(cache_dir=tmp_path / "cache", corpus=CorpusSpec(corpus_file, 2000))
        ctx = ServeContext(host, access, settings, limits)
        return ctx, create_app(ctx)

    return make


@pytest.fixture
def client_for():
    from fastapi.testclient import TestClient

    clients = []

    def make(app, **kwargs):
        client = TestClient(app, base_url="http://127.0.0.1:8000", **kwargs)
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.close()
