"""Creating a study: the blind, balanced design, the database file, and the CLI around them."""

from __future__ import annotations

import argparse
import json
import random
import re
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from factpatch.core.errors import FactpatchError
from factpatch.study import db
from factpatch.study.cli import add_study_parser, bind, is_loopback
from factpatch.study.create import create_study, plan_assignments
from factpatch.study.scenarios import read_jsonl
from factpatch.study.security import token_hash

SAMPLE = Path(__file__).parent / "data" / "sample.jsonl"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="factpatch")
    add_study_parser(p.add_subparsers(dest="command", required=True))
    return p


def run(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


def test_plan_is_balanced_like_the_paper():
    # 15 raters x 10 of 50 scenarios: every scenario seen by exactly 3 raters, none twice by one.
    plan = plan_assignments(50, 15, 10, random.Random(0))
    assert all(len(mine) == len(set(mine)) == 10 for mine in plan)
    assert set(Counter(s for mine in plan for s in mine).values()) == {3}


def test_plan_uneven_counts_differ_by_at_most_one():
    plan = plan_assignments(7, 4, 3, random.Random(1))
    coverage = Counter(s for mine in plan for s in mine)
    assert set(coverage) == set(range(7)) and max(coverage.values()) - min(coverage.values()) <= 1


def test_database_contents(study, scenarios):
    conn = db.connect(study.db_path)
    info = db.study_info(conn)
    assert (info.n_scenarios, info.n_raters, info.methods, info.seed) == (4, 3, ("rome", "ft+l", "none"), 7)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == db.SCHEMA_VERSION
    # tokens: distinct, random, stored only as hashes
    assert len(set(study.rater_tokens)) == 3 and all(len(t) >= 43 for t in study.rater_tokens)
    stored = {r[0] for r in conn.execute("SELECT token_sha256 FROM rater")}
    assert stored == {token_hash(t) for t in study.rater_tokens}
    dump = "\n".join(conn.iterdump())
    assert not any(t in dump for t in (*study.rater_tokens, study.admin_token))
    # every rater ranks every scenario once; text orders are recorded permutations of its texts
    rows = conn.execute("SELECT rater_id, scenario_id, text_order FROM assignment").fetchall()
    assert Counter(r[0] for r in rows) == {1: 4, 2: 4, 3: 4}
    for r in rows:
        ids = {t[0] for t in conn.execute("SELECT id FROM text WHERE scenario_id = ?", (r[1],))}
        assert sorted(json.loads(r[2])) == sorted(ids)
    conn.close()


def test_orders_are_seeded_and_vary(tmp_path, scenarios):
    def orders(path: Path, seed: int) -> list[tuple]:
        create_study(path, scenarios * 1, raters=6, seed=seed)
        conn = db.connect(path)
        try:
            return [tuple(r) for r in conn.execute("SELECT * FROM assignment ORDER BY rater_id, position")]
        finally:
            conn.close()

    a, b, c = orders(tmp_path / "a.db", 5), orders(tmp_path / "b.db", 5), orders(tmp_path / "c.db", 6)
    assert a == b and a != c
    # across 24 (rater, scenario) pairs the first text shown is not always the same method
    assert len({json.loads(row[3])[0] % 3 for row in a}) > 1


def test_refuses_existing_database_unless_forced(study, scenarios):
    with pytest.raises(FactpatchError, match="exists already; pass --force"):
        create_study(study.db_path, scenarios, raters=1)
    again = create_study(study.db_path, scenarios, raters=2, force=True)
    conn = db.connect(study.db_path)
    assert db.study_info(conn).n_raters == 2
    assert db.rater_by_token_hash(conn, token_hash(study.rater_tokens[0])) is None  # old invites are gone
    assert db.rater_by_token_hash(conn, token_hash(again.rater_tokens[0])) is not None
    conn.close()


def test_force_drops_the_old_wal(study, store_answer):
    # A crashed server can leave a write-ahead log beside the file; it belongs to the old study
    # and must not be replayed into the new one.
    keep = db.connect(study.db_path)
    keep.execute("PRAGMA wal_autocheckpoint = 0")
    store_answer(study.db_path, 1, ["rome", "ft+l", "none"], ["none", "ft+l", "rome"])
    wal = Path(f"{study.db_path}-wal")
    leftover = wal.read_bytes()
    keep.close()
    wal.write_bytes(leftover)
    create_study(study.db_path, read_jsonl(SAMPLE), raters=1, force=True)
    conn = db.connect(study.db_path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT count(*) FROM answer").fetchone()[0] == 0
    conn.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"raters": 0}, "--raters must be at least 1, got 0"),
        ({"raters": 2, "per_rater": 5}, "--per-rater must be between 1 and the 4 scenarios, got 5"),
        ({"raters": 2, "per_rater": 0}, "--per-rater must be between 1"),
        ({"raters": 2, "title": " "}, "--title must not be empty"),
    ],
)
def test_bad_design_leaves_no_file(tmp_path, scenarios, kwargs, message):
    with pytest.raises(FactpatchError, match=re.escape(message)):
        create_study(tmp_path / "s.db", scenarios, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_failure_half_way_leaves_no_file(tmp_path, scenarios, monkeypatch):
    import factpatch.study.create as create

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(create, "plan_assignments", boom)
    with pytest.raises(RuntimeError):
        create_study(tmp_path / "s.db", scenarios, raters=2)
    assert list(tmp_path.iterdir()) == []


def test_connect_refuses_other_files(tmp_path):
    with pytest.raises(FactpatchError, match="no study database at"):
        db.connect(tmp_path / "missing.db")
    (tmp_path / "junk.db").write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(FactpatchError, match="not a SQLite database"):
        db.connect(tmp_path / "junk.db")
    sqlite3.connect(tmp_path / "other.db").execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(FactpatchError, match="not a factpatch study database"):
        db.connect(tmp_path / "other.db")


def test_connect_refuses_a_newer_schema(study):
    conn = sqlite3.connect(study.db_path)
    conn.execute(f"PRAGMA user_version = {db.SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(FactpatchError, match="made by a newer factpatch"):
        db.connect(study.db_path)


def test_connect_upgrades_a_schema_1_file(study, store_answer):
    """A study made before admin sessions were stored (schema 1) opens, with its answers, and gains the table."""
    store_answer(study.db_path, 1, ["rome", "ft+l", "none"], ["none", "ft+l", "rome"])
    conn = sqlite3.connect(study.db_path)
    conn.execute("DROP TABLE admin_session")
    conn.execute("PRAGMA user_version = 1")
    conn.close()
    conn = db.connect(study.db_path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == db.SCHEMA_VERSION == 2
        assert conn.execute("SELECT count(*) FROM admin_session").fetchone()[0] == 0
        assert len(db.ranking_rows(conn)) == 6
        # an upgraded file has exactly the schema of a new one
        fresh = sqlite3.connect(":memory:")
        db.initialise(fresh)
        schema = "SELECT name, sql FROM sqlite_master ORDER BY name"
        assert [tuple(r) for r in conn.execute(schema)] == fresh.execute(schema).fetchall()
    finally:
        conn.close()


# ---- CLI --------------------------------------------------------------------------------------


def test_cli_create_prints_invites_and_admin_token(tmp_path, capsys):
    path = tmp_path / "s.db"
    code = run(["study", "create", "--db", str(path), "--from-jsonl", str(SAMPLE), "--raters", "3",
                "--per-rater", "2", "--title", "Reading study", "--seed", "11"])
    out = capsys.readouterr().out
    assert code == 0
    invites = re.findall(r"^rater (\d+): (/r/[A-Za-z0-9_-]+)$", out, re.M)
    admin = re.search(r"^admin token: ([A-Za-z0-9_-]+)$", out, re.M).group(1)
    assert [n for n, _ in invites] == ["1", "2", "3"]
    assert "4 scenarios of 3 texts, 3 raters with 2 scenarios each, seed 11" in out
    conn = db.connect(path)
    info = db.study_info(conn)
    assert info.title == "Reading study" and token_hash(admin) == info.admin_token_sha256
    for _, invite in invites:
        rater = db.rater_by_token_hash(conn, token_hash(invite.removeprefix("/r/")))
        assert rater is not None and rater.assigned == 2
    conn.close()


def test_cli_create_refuses_existing_db_and_bad_counts(study, tmp_path):
    with pytest.raises(FactpatchError, match="exists already"):
        run(["study", "create", "--db", str(study.db_path), "--from-jsonl", str(SAMPLE), "--raters", "2"])
    with pytest.raises(FactpatchError, match="--raters must be at least 1, got 0"):
        run(["study", "create", "--db", str(tmp_path / "n.db"), "--from-jsonl", str(SAMPLE), "--raters", "0"])
    with pytest.raises(FactpatchError, match="--methods needs at least two"):
        run(["study", "create", "--db", str(tmp_path / "n.db"), "--from-jsonl", str(SAMPLE), "--raters", "2",
             "--methods", "rome"])
    assert not (tmp_path / "n.db").exists()


def test_cli_create_reports_the_bad_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(SAMPLE.read_text().splitlines()[0] + "\n{\"case_id\": 9}\n")
    with pytest.raises(FactpatchError, match=r"bad.jsonl line 2: missing fields counterfactual, prompt, texts"):
        run(["study", "create", "--db", str(tmp_path / "s.db"), "--from-jsonl", str(bad), "--raters", "2"])
    assert not (tmp_path / "s.db").exists()


def test_cli_create_model_path_needs_compare(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "factpatch.evaluation.compare", None)
    argv = ["study", "create", "--db", str(tmp_path / "s.db"), "--model", "gpt2", "--raters", "2"]
    with pytest.raises(FactpatchError, match="--model needs --dataset"):
        run(argv)
    with pytest.raises(FactpatchError, match="needs factpatch.evaluation.compare"):
        run([*argv, "--dataset", "counterfact:x.json", "--n", "5", "--methods", "rome,ft+l,none"])


def test_cli_source_is_required_and_exclusive(capsys):
    with pytest.raises(SystemExit):
        parser().parse_args(["study", "create", "--db", "x.db", "--raters", "2"])
    with pytest.raises(SystemExit):
        parser().parse_args(["study", "create", "--db", "x.db", "--raters", "2", "--model", "m", "--from-jsonl", "t"])


def test_cli_serve_defaults_to_loopback_and_checks_the_db(tmp_path):
    args = parser().parse_args(["study", "serve", "--db", str(tmp_path / "s.db")])
    assert (args.host, args.port) == ("127.0.0.1", 8000)
    with pytest.raises(FactpatchError, match="no study database"):
        args.func(args)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")


def test_bind_reports_a_taken_port():
    sock = bind("127.0.0.1", 0)
    try:
        port = sock.getsockname()[1]
        sock.listen()
        with pytest.raises(FactpatchError, match=f"cannot serve on 127.0.0.1:{port}"):
            bind("127.0.0.1", port)
    finally:
        sock.close()
