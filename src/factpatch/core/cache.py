"""Where factpatch keeps converted weights, key statistics and sampled text.

The directory is always passed explicitly through the API; this module only resolves the default
(`$FACTPATCH_CACHE`, else `$XDG_CACHE_HOME/factpatch`, else `~/.cache/factpatch`) and writes files
atomically so that a killed run never leaves a half-written cache entry behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def default_cache_dir() -> Path:
    if env := os.environ.get("FACTPATCH_CACHE"):
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "factpatch"


def stable_hash(obj: object, length: int = 16) -> str:
    """Short hex digest of a JSON-serialisable object (keys sorted), for cache keys."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file's bytes: what identifies a data set, a corpus or a facts file
    wherever it is copied (its path and modification time do not)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _new_file_mode() -> int:
    """What `open(..., "w")` would give a new file: 0o666 less the umask (mkstemp gives 0o600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it over `final` only if the block succeeds.
    The file ends up with the mode any newly created file gets (the one file-mode rule)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, _new_file_mode())
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield an empty staging directory beside `final`; it replaces `final` only if the block
    succeeds, so readers see the old directory or the complete new one, never a partial one."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    retired = None
    try:
        yield staging
        if final.exists():
            # Moved aside in one rename, not deleted in place: a reader never finds `final` half
            # deleted (a model directory read while its tokenizer files were going loaded a tokenizer
            # that made every prompt one token). The old copy is deleted once the new one is there.
            retired = Path(tempfile.mkdtemp(prefix=f".{final.name}.old.", dir=final.parent))
            final.rename(retired / final.name)
        staging.rename(final)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
        if retired is not None:
            shutil.rmtree(retired, ignore_errors=True)
