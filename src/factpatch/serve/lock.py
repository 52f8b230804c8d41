"""A reader/writer lock that prefers writers.

Generations are readers: any number run at once, each from its first token to its last under one
read hold, so it sees one stack version throughout. Applying or reverting a patch, and the lab's
traces and edits (which hook the model's modules, and so change what a concurrent forward pass
would compute), are writers: they wait for the running generations to finish and run alone.
A waiting writer stops new readers from starting, so a steady stream of requests cannot starve it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


class ReadWriteLock:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        with self._cond:
            while self._writing or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writing or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()

    @property
    def readers(self) -> int:
        return self._readers
