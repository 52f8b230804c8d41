"""The one atomic writer: files appear whole or not at all, with the mode any new file gets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from factpatch.core.cache import atomic_path, write_text_atomic


@pytest.fixture(params=[0o022, 0o077, 0o002], ids=["umask-022", "umask-077", "umask-002"])
def umask(request):
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_written_files_get_the_umask_mode_not_mkstemps_0600(tmp_path, umask):
    # what a plain open() gives a new file here: the rule the atomic writer must follow
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert mode(plain) == 0o666 & ~umask

    write_text_atomic(tmp_path / "summary.md", "# α and ω\n")
    assert mode(tmp_path / "summary.md") == mode(plain)
    assert (tmp_path / "summary.md").read_bytes() == "# α and ω\n".encode()

    with atomic_path(tmp_path / "data.bin") as tmp:
        tmp.write_bytes(b"\x00\x01")
    assert mode(tmp_path / "data.bin") == mode(plain)


def test_a_replaced_file_gets_the_mode_too(tmp_path, umask):
    target = tmp_path / "report.md"
    target.write_text("old")
    os.chmod(target, 0o600)
    write_text_atomic(target, "new")
    assert target.read_text() == "new" and mode(target) == 0o666 & ~umask


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "results.jsonl"
    write_text_atomic(target, "complete\n")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "complete\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.jsonl"]
