"""The model host: one model in memory, its patch stack, and who may touch them when.

Concurrency: a writer-preferring reader/writer lock (lock.py) rather than generation snapshots.
A snapshot per stack version would need a second copy of the weights (the point of hot patches
is one model in memory), while a ROME patch applies or reverts in milliseconds, so making a
mutation wait for the running generations to end, and new generations wait for the mutation,
costs little. Each generation holds a read lock from its first token to its last: it runs against
one stack version start to end and never sees half-applied weights. Traces and edits hook the
model's modules, which would change a concurrent forward pass, so they hold the write lock too.

Sampling with a seed uses torch's global generator, so sampled generations take turns on a second
lock (`sampling`); greedy ones, the default, run side by side.

Every mutation bumps `version`. With a state directory the stack is written to disk (state.py)
before the mutation is reported done; on start the saved stack is applied again, which gives
bit-for-bit the same weights (patches add their deltas in float32 in order, PatchStack).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from ..core.errors import FactpatchError
from ..core.models import LoadedModel, weights_fingerprint
from ..editing.patch import Patch, PatchStack
from .lock import ReadWriteLock
from .state import StateDir

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StackView:
    """The stack a response was made with: its version and the ids of its patches, in order."""

    version: int
    patch_ids: tuple[str, ...]

    @property
    def label(self) -> str:
        """What the X-Factpatch-Stack header says: "v3: a1b2c3d4e5f6,0f9e8d7c6b5a" ("v0: none")."""
        return f"v{self.version}: " + (",".join(self.patch_ids) or "none")

    def to_dict(self) -> dict:
        return {"version": self.version, "patches": list(self.patch_ids)}


@dataclass
class AppliedPatch:
    patch: Patch
    applied_at: float  # time.time()
    source: str  # "edit", "upload", "state"

    def to_dict(self) -> dict:
        meta = self.patch.meta
        return {
            "id": self.patch.id,
            "method": meta.get("method"),
            "layers": self.patch.layers,
            "requests": self.patch.requests,
            "created": meta.get("created"),
            "applied_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.applied_at)),
            "source": self.source,
            "description": self.patch.describe(),
        }


class ModelHost:
    def __init__(self, lm: LoadedModel, state: StateDir | None = None) -> None:
        self.lm = lm
        self.state = state
        self.lock = ReadWriteLock()
        self.sampling = threading.Lock()
        self._stack = PatchStack(lm)
        self._applied: list[AppliedPatch] = []
        self._version = 0
        self._fingerprints: dict[int, str] = {}
        if state is not None:
            self._restore(state)
        # What the stack is, published in one assignment after each mutation: listing it never
        # waits for the lock (a trace may hold it for a minute) and never sees a mutation half done.
        self._published: tuple[StackView, tuple[AppliedPatch, ...]] = (self._make_view(), tuple(self._applied))

    # ---- reading -------------------------------------------------------------------------------

    @property
    def stack(self) -> PatchStack:
        """The patch stack itself, for editors that read the applied patches (AlphaEdit); only
        inside `exclusive`."""
        return self._stack

    def _make_view(self) -> StackView:
        return StackView(self._version, tuple(a.patch.id for a in self._applied))

    def view(self) -> StackView:
        """The stack as of the last finished mutation (no lock needed)."""
        return self._published[0]

    @contextlib.contextmanager
    def reading(self) -> Iterator[StackView]:
        """Hold the weights still (one stack version) for the block; yields that version."""
        with self.lock.reading():
            yield self._make_view()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[StackView]:
        """The model alone for the block: no generation runs, nothing else mutates."""
        with self.lock.writing():
            yield self._make_view()

    def applied(self) -> list[AppliedPatch]:
        return list(self._published[1])

    def find(self, patch_id: str) -> Patch:
        matches = [a.patch for a in self._published[1] if a.patch.id.startswith(patch_id)]
        if len(matches) != 1:
            raise FactpatchError(f"no applied patch matches {patch_id!r}" if not matches
                                 else f"{patch_id!r} matches several patches")
        return matches[0]

    def fingerprint(self) -> str:
        """sha256 of the weights as they are now (computed once per stack version, ~0.3 s on SmolLM2)."""
        with self.lock.reading():
            version = self._version
            if version not in self._fingerprints:
                self._fingerprints = {version: weights_fingerprint(self.lm.model)}
            return self._fingerprints[version]

    # ---- mutations: call with the write lock held (`exclusive`), or use apply / revert ----------

    def apply_locked(self, patch: Patch, source: str) -> StackView:
        if any(a.patch.id == patch.id for a in self._applied):
            raise FactpatchError(f"patch {patch.id} is applied already")
        self._stack.apply(patch)  # checks fingerprint and shapes first; raises before touching a weight
        self._applied.append(AppliedPatch(patch, time.time(), source))
        try:
            self._committed()
        except BaseException:  # not on disk: not applied either
            self._stack.revert(patch.id)
            self._applied.pop()
            self._version += 1
            self._publish()
            raise
        return self.view()

    def revert_locked(self, patch_id: str | None) -> list[Patch]:
        before = list(self._applied)
        removed = self._stack.revert(patch_id)
        gone = {id(p) for p in removed}
        self._applied = [a for a in self._applied if id(a.patch) not in gone]
        try:
            self._committed()
        except BaseException:  # not on disk: put the stack back as it was, in its order
            self._stack.revert()
            for applied in before:
                self._stack.apply(applied.patch)
            self._applied = before
            self._version += 1
            self._publish()
            raise
        return removed

    def apply(self, patch: Patch, source: str = "upload") -> StackView:
        with self.lock.writing():
            return self.apply_locked(patch, source)

    def revert(self, patch_id: str | None = None) -> list[Patch]:
        with self.lock.writing():
            return self.revert_locked(patch_id)

    @contextlib.contextmanager
    def unpatched_locked(self) -> Iterator[None]:
        """Inside an `exclusive` block: the original weights for the block, the stack exactly back after."""
        patches = [a.patch for a in self._applied]
        self._stack.revert()
        try:
            yield
        finally:
            for patch in patches:
                self._stack.apply(patch)

    def _committed(self) -> None:
        self._version += 1
        if self.state is not None:
            try:
                self.state.write(self.lm.name, self.lm.fingerprint, [a.patch for a in self._applied])
            except OSError as exc:
                raise FactpatchError(f"cannot write the state directory {self.state.root}: {exc}") from exc
        self._publish()

    def _publish(self) -> None:
        self._published = (self._make_view(), tuple(self._applied))

    def _restore(self, state: StateDir) -> None:
        saved = state.read()
        if saved is None:
            return
        if saved.base_fingerprint != self.lm.fingerprint:
            raise FactpatchError(
                f"--state {state.root} holds patches for another model ({saved.model}, fingerprint "
                f"{saved.base_fingerprint[:12]}; this model is {self.lm.fingerprint[:12]})"
            )
        for patch in state.load_patches(saved):
            self._stack.apply(patch)
            self._applied.append(AppliedPatch(patch, time.time(), "state"))
        if saved.patch_ids:
            logger.info("restored %d patches from %s", len(saved.patch_ids), state.root)
