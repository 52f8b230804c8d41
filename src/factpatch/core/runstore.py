"""Resumable runs on disk: one directory per run, an identity file that a resumed run must
match, and append-only JSONL records.

Every long command (tracing a data set, evaluating, editing sequentially) writes its records one
line at a time — appended, flushed and fsynced as each finishes — so a killed run loses at most
the line it was writing, and rerunning the same command skips what is there. A torn last line
(a kill mid-write) is cut from the file on load; damage anywhere else is an error. One process
at a time writes a run directory (`RunLock`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: runs are not locked there
    fcntl = None  # type: ignore[assignment]

from .cache import write_text_atomic
from .errors import FactpatchError

logger = logging.getLogger(__name__)

LOCK_TRIES = 10  # RunLock.take's tries over one second before it says another process writes the run


class RunStore:
    """An append-only JSONL file of records, each of which must carry the `required` keys."""

    def __init__(self, path: Path, required: Iterable[str] = ()):
        self.path = Path(path)
        self.required = tuple(required)

    def load(self, repair: bool = True) -> list[dict]:
        """Every complete record. A torn last line is cut from the file so appending resumes cleanly;
        with `repair=False` (a reader beside a running writer, whose last line may be half-written
        *now*) it is only left out, and the file is not touched."""
        if not self.path.exists():
            return []
        raw = self.path.read_bytes()
        lines = raw.split(b"\n")
        records, offset = [], 0
        for number, line in enumerate(lines, 1):
            last = number == len(lines)  # text after the final newline: empty, or a torn write
            if line.strip():
                try:
                    record = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    if not last:
                        raise FactpatchError(
                            f"{self.path} line {number} is corrupt; move the file away to start over"
                        ) from None
                    if not repair:
                        break
                    logger.warning("%s: dropping an incomplete last line (interrupted write)", self.path)
                    with open(self.path, "r+b") as handle:
                        handle.truncate(offset)
                    break
                if not isinstance(record, dict) or any(k not in record for k in self.required):
                    raise FactpatchError(f"{self.path} line {number} is not a record of this run")
                records.append(record)
                if last and repair:  # complete but unterminated: terminate it so the next append starts a line
                    with open(self.path, "ab") as handle:
                        handle.write(b"\n")
            offset += len(line) + 1
        return records

    def append(self, record: dict) -> None:
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())


class RunLock:
    """Lets one process at a time write a run directory.

    Two processes resuming the same run would both load its records and then append their own
    beside each other's: the same batch twice in one stack, a checkpoint scored twice. The lock is
    an advisory `flock` on the directory itself, so it creates no file, and the kernel drops it
    when its holder exits, however it exits: a killed run leaves no stale lock behind. Hold one
    around a whole run (`with RunLock() as lock:`) and pass it to `check_identity`, which takes it
    as soon as the directory exists, before any record is read. Readers (`eval status`, `eval
    paired`) take no lock. Where `fcntl` is missing (Windows) nothing is locked."""

    def __init__(self) -> None:
        self._fd: int | None = None
        self.path: Path | None = None

    def take(self, out_dir: Path) -> None:
        """Hold `out_dir` (an existing directory), or fail with a one-line error if another process does."""
        out_dir = Path(out_dir)
        if self._fd is not None:
            if self.path != out_dir:
                raise ValueError(f"this lock already holds {self.path}, not {out_dir}")
            return
        if fcntl is None:
            return
        fd = os.open(out_dir, os.O_RDONLY)
        # a few tries over a second: `being_written` holds a probe for microseconds, and a run
        # started at that moment should not fail for it
        for attempt in range(LOCK_TRIES):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt < LOCK_TRIES - 1:
                    time.sleep(1.0 / LOCK_TRIES)
        else:
            os.close(fd)
            raise _held_elsewhere(out_dir) from None
        self._fd, self.path = fd, out_dir

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = self.path = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def being_written(out_dir: Path) -> bool:
    """Whether a process holds `out_dir`'s RunLock now: a run still going. A shared probe, held
    only for this call, so readers do not exclude each other."""
    if fcntl is None or not Path(out_dir).is_dir():
        return False
    fd = os.open(out_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def _held_elsewhere(out_dir: Path) -> FactpatchError:
    return FactpatchError(
        f"{out_dir} is being written by another process (a run still going?); "
        "stop it or let it finish, then run the same command to resume"
    )


def refuse_if_being_written(out_dir: Path) -> None:
    """Fail now, with RunLock's error, if a process holds `out_dir`: the commands call it before
    loading a model, so a second start of a run still going is told in a moment, not after the
    load. Only a probe: the run still takes its RunLock before it reads a record, which is what
    keeps out a process that starts between the two."""
    if being_written(out_dir):
        raise _held_elsewhere(Path(out_dir))


def check_identity(out_dir: Path, name: str, identity: dict, differences=None, merge=None,
                   lock: RunLock | None = None) -> dict:
    """Create `out_dir` with `name` holding `identity`, or accept it if it holds the same run;
    refuse a directory that holds another run, so results are never mixed. Returns what is stored.

    `differences(old, new) -> [keys]` decides what counts as another run (default: any change);
    where the stored identity differs only in what it allows, the stored file is brought up to
    date: to `merge(old, new)` if given (e.g. the union of two runs' methods), else to `new`.
    With `lock`, the directory is held for this process from here on (the caller is about to write
    records); without it, the call only checks and creates."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FactpatchError(f"--out {out_dir} exists and is not a directory")
    if lock is not None and out_dir.is_dir():
        lock.take(out_dir)
    path = out_dir / name
    identity = json.loads(json.dumps(identity))  # as it will read back
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError:
            raise FactpatchError(f"{path} is not valid JSON; use another --out") from None
        diff = differences(old, identity) if differences else sorted(
            k for k in set(old) | set(identity) if old.get(k) != identity.get(k))
        if diff:
            raise FactpatchError(
                f"{out_dir} holds results of a different configuration (differs in {', '.join(diff)}): "
                "a run with other settings, model or data; use another --out, or the same options to resume"
            )
        stored = json.loads(json.dumps(merge(old, identity))) if merge else identity
        if old != stored:
            write_text_atomic(path, json.dumps(stored, indent=2) + "\n")
        return stored
    out_dir.mkdir(parents=True, exist_ok=True)
    if lock is not None:
        lock.take(out_dir)
    write_text_atomic(path, json.dumps(identity, indent=2) + "\n")
    return identity
