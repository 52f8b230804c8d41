"""The model host: serialised mutations, one stack version per generation, the state directory."""

from __future__ import annotations

import threading
import time

import pytest
from serve_helpers import rank_one_patch

from factpatch.core.errors import FactpatchError
from factpatch.core.models import weights_fingerprint
from factpatch.serve.host import ModelHost
from factpatch.serve.lock import ReadWriteLock
from factpatch.serve.state import StateDir

pytestmark = pytest.mark.usefixtures("one_thread")


def test_writer_waits_for_readers_and_new_readers_wait_for_a_waiting_writer():
    lock = ReadWriteLock()
    events: list[str] = []
    reading = threading.Event()
    release = threading.Event()

    def reader(name: str, hold: threading.Event | None) -> None:
        with lock.reading():
            events.append(f"{name} in")
            if hold is not None:
                reading.set()
                hold.wait(5)
            events.append(f"{name} out")

    def writer() -> None:
        with lock.writing():
            events.append("writer")

    first = threading.Thread(target=reader, args=("r1", release))
    first.start()
    reading.wait(5)
    w = threading.Thread(target=writer)
    w.start()
    time.sleep(0.1)  # the writer is waiting now
    second = threading.Thread(target=reader, args=("r2", None))
    second.start()
    time.sleep(0.1)
    assert events == ["r1 in"]  # neither the writer nor the later reader got in
    release.set()
    for t in (first, w, second):
        t.join(5)
    assert events == ["r1 in", "r1 out", "writer", "r2 in", "r2 out"]


def test_apply_and_revert_bump_the_version_and_restore_the_bits(fresh_tiny):
    lm = fresh_tiny("llama")
    host = ModelHost(lm)
    base = weights_fingerprint(lm.model)
    a, b = rank_one_patch(lm, 1, seed=1), rank_one_patch(lm, 2, seed=2)
    assert host.apply(a).version == 1
    view = host.apply(b)
    assert view.patch_ids == (a.id, b.id) and view.version == 2
    assert view.label == f"v2: {a.id},{b.id}"
    with pytest.raises(FactpatchError, match="applied already"):
        host.apply(a)
    host.revert(a.id[:6])
    assert host.view().patch_ids == (b.id,)
    host.revert()
    assert host.view() .patch_ids == () and host.view().version == 4
    assert host.fingerprint() == base


def test_a_foreign_patch_is_refused_before_touching_a_weight(fresh_tiny):
    lm = fresh_tiny("llama")
    host = ModelHost(lm)
    base = weights_fingerprint(lm.model)
    with pytest.raises(FactpatchError, match="another model"):
        host.apply(rank_one_patch(lm, fingerprint="0" * 64))
    assert host.view().version == 0 and weights_fingerprint(lm.model) == base


def test_state_directory_brings_back_the_same_weights(fresh_tiny, tmp_path):
    lm = fresh_tiny("llama")
    host = ModelHost(lm, StateDir(tmp_path / "state"))
    a, b, c = (rank_one_patch(lm, layer, seed=layer) for layer in (0, 1, 2))
    for p in (a, b, c):
        host.apply(p)
    host.revert(b.id)
    patched = host.fingerprint()
    assert sorted(f.stem for f in (tmp_path / "state" / "patches").iterdir()) == sorted([a.id, c.id])

    again = ModelHost(fresh_tiny("llama"), StateDir(tmp_path / "state"))
    assert again.view().patch_ids == (a.id, c.id)
    assert again.fingerprint() == patched != lm.fingerprint


def test_state_of_another_model_is_refused(fresh_tiny, tmp_path):
    lm = fresh_tiny("llama")
    ModelHost(lm, StateDir(tmp_path / "state")).apply(rank_one_patch(lm))
    with pytest.raises(FactpatchError, match="another model"):
        ModelHost(fresh_tiny("llama", seed=5), StateDir(tmp_path / "state"))


def test_a_generation_sees_one_stack_version_from_start_to_end(fresh_tiny):
    """A patch applied while a generation runs waits for it to finish; the next one sees the patch."""
    from factpatch.core.generate import Sampling, generate_ids

    lm = fresh_tiny("llama")
    host = ModelHost(lm)
    ids = lm.tokenizer("The Eiffel Tower is located in").input_ids
    sampling = Sampling(max_new_tokens=12)
    expected = generate_ids(lm, ids, sampling).token_ids
    started, applied = threading.Event(), threading.Event()
    seen: dict = {}

    class SlowStreamer:
        def put(self, value):
            started.set()
            time.sleep(0.02)

        def end(self):
            pass

    def generate():
        with host.reading() as view:
            seen["view"] = view
            seen["ids"] = generate_ids(lm, ids, sampling, streamer=SlowStreamer()).token_ids

    def mutate():
        started.wait(5)
        host.apply(rank_one_patch(lm, 1, scale=50.0))
        applied.set()

    threads = [threading.Thread(target=generate), threading.Thread(target=mutate)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert applied.is_set() and seen["view"].version == 0
    assert seen["ids"] == expected  # no token was made with the patch half way through
    assert generate_ids(lm, ids, sampling).token_ids != expected  # the big patch changes the text


def test_a_mutation_that_cannot_be_written_to_the_state_is_undone(fresh_tiny, tmp_path):
    lm = fresh_tiny("llama")
    state = StateDir(tmp_path / "state")
    host = ModelHost(lm, state)
    a, b = rank_one_patch(lm, 1, seed=1), rank_one_patch(lm, 2, seed=2)
    host.apply(a)
    host.apply(b)
    weights = host.fingerprint()

    def fail(*args):
        raise OSError("disk full")

    state.write = fail
    with pytest.raises(FactpatchError, match="disk full"):
        host.revert(a.id)
    assert host.view().patch_ids == (a.id, b.id) and host.fingerprint() == weights
    with pytest.raises(FactpatchError, match="disk full"):
        host.apply(rank_one_patch(lm, 3, seed=3))
    assert host.view().patch_ids == (a.id, b.id) and host.fingerprint() == weights
