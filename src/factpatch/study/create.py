"""Create a study: lay out who ranks which scenario in what text order, and write the database.

The design is blind and balanced. Each rater gets `per_rater` scenarios (all of them by
default), dealt round-robin from a shuffled list so every scenario is seen by as nearly the
same number of raters as the numbers allow (the paper: 15 raters × 10 of 50 scenarios gives 3
raters a scenario). Each rater sees their scenarios in their own random order, and the texts of
each scenario in a random order of their own, shown only as A, B, C. One seed drives all of it
and is stored, and so is every order drawn from it.

The database is built in a temporary file next to the target and moved into place at the end,
so a failed create leaves no half-made study behind, and `force` replaces an old one whole.
"""

from __future__ import annotations

import json
import logging
import os
import random
import secrets
import sqlite3
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from factpatch.core.errors import FactpatchError
from factpatch.study import db
from factpatch.study.ranking import MAX_TEXTS
from factpatch.study.scenarios import Scenario
from factpatch.study.security import new_secret, new_token, token_hash

logger = logging.getLogger(__name__)

DEFAULT_TITLE = "Comparing generated texts"  # raters see it: it must not name the methods


@dataclass(frozen=True)
class Invites:
    """What `create` hands back once: the tokens exist nowhere else (the database keeps hashes)."""

    db_path: Path
    admin_token: str
    rater_tokens: tuple[str, ...]
    seed: int
    per_rater: int

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(f"/r/{t}" for t in self.rater_tokens)


def plan_assignments(n_scenarios: int, n_raters: int, per_rater: int, rng: random.Random) -> list[list[int]]:
    """Scenario indices for each rater, in the order that rater sees them.

    Rater r takes `per_rater` consecutive entries, wrapping, of one shuffled deck; as
    per_rater <= n_scenarios no rater gets a scenario twice, and coverage differs by at most one.
    """
    deck = list(range(n_scenarios))
    rng.shuffle(deck)
    plan = []
    for r in range(n_raters):
        mine = [deck[(r * per_rater + j) % n_scenarios] for j in range(per_rater)]
        rng.shuffle(mine)
        plan.append(mine)
    return plan


def check_design(scenarios: Sequence[Scenario], raters: int, per_rater: int | None) -> int:
    """Validate the counts; returns per_rater with its default filled in."""
    if raters < 1:
        raise FactpatchError(f"--raters must be at least 1, got {raters}")
    if not scenarios:
        raise FactpatchError("a study needs at least one scenario")
    if per_rater is None:
        per_rater = len(scenarios)
    if not 1 <= per_rater <= len(scenarios):
        raise FactpatchError(f"--per-rater must be between 1 and the {len(scenarios)} scenarios, got {per_rater}")
    too_many = [s.case_id for s in scenarios if len(s.texts) > MAX_TEXTS]
    if too_many:
        raise FactpatchError(f"case {too_many[0]} has more than {MAX_TEXTS} texts; a rater ranks at most {MAX_TEXTS}")
    return per_rater


def create_study(
    db_path: Path,
    scenarios: Sequence[Scenario],
    *,
    raters: int,
    per_rater: int | None = None,
    title: str = DEFAULT_TITLE,
    seed: int | None = None,
    force: bool = False,
) -> Invites:
    """Write a new study database at `db_path`; refuse an existing file unless `force`."""
    db_path = Path(db_path)
    per_rater = check_design(scenarios, raters, per_rater)
    if not title.strip():
        raise FactpatchError("--title must not be empty")
    if db_path.exists() and not force:
        raise FactpatchError(f"{db_path} exists already; pass --force to replace it (its answers are lost)")
    if not db_path.parent.is_dir():
        raise FactpatchError(f"cannot create {db_path}: folder {db_path.parent} does not exist")
    if seed is None:
        seed = secrets.randbits(32)
    rng = random.Random(seed)

    methods: list[str] = []  # first-seen order across scenarios
    for s in scenarios:
        methods.extend(m for m in s.texts if m not in methods)
    rater_tokens = tuple(new_token() for _ in range(raters))
    admin_token = new_token()

    fd, tmp_name = tempfile.mkstemp(dir=db_path.parent, prefix=f".{db_path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        conn = db.configure(sqlite3.connect(tmp, isolation_level=None))
        try:
            db.initialise(conn)
            with db.transaction(conn):
                meta = {
                    "title": title.strip(),
                    "methods": json.dumps(methods),
                    "seed": str(seed),
                    "per_rater": str(per_rater),
                    "created_at": db.now(),
                    "admin_token_sha256": token_hash(admin_token),
                    "secret": new_secret().hex(),
                }
                conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", meta.items())
                text_ids: list[list[int]] = []
                for sid, s in enumerate(scenarios, start=1):
                    conn.execute(
                        "INSERT INTO scenario (id, case_id, counterfactual, prompt) VALUES (?, ?, ?, ?)",
                        (sid, s.case_id, s.counterfactual, s.prompt),
                    )
                    ids = []
                    for method, body in s.texts.items():
                        cur = conn.execute(
                            "INSERT INTO text (scenario_id, method, body) VALUES (?, ?, ?)", (sid, method, body)
                        )
                        ids.append(cur.lastrowid)
                    text_ids.append(ids)
                plan = plan_assignments(len(scenarios), raters, per_rater, rng)
                for rid, (token, mine) in enumerate(zip(rater_tokens, plan), start=1):
                    conn.execute("INSERT INTO rater (id, token_sha256) VALUES (?, ?)", (rid, token_hash(token)))
                    for position, index in enumerate(mine, start=1):
                        order = list(text_ids[index])
                        rng.shuffle(order)
                        conn.execute(
                            "INSERT INTO assignment (rater_id, position, scenario_id, text_order) VALUES (?, ?, ?, ?)",
                            (rid, position, index + 1, json.dumps(order)),
                        )
            # WAL is a property of the file, so every later connection (the server's) gets it.
            conn.execute("PRAGMA journal_mode = WAL")
        finally:
            conn.close()  # the last close checkpoints and removes the -wal file
        place(tmp, db_path, force)
    except BaseException:
        for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            leftover.unlink(missing_ok=True)
        raise
    logger.info("created study %s: %d scenarios, %d raters, seed %d", db_path, len(scenarios), raters, seed)
    return Invites(db_path, admin_token, rater_tokens, seed, per_rater)


def place(tmp: Path, target: Path, force: bool) -> None:
    """Move the finished database into place in one step."""
    if not force:
        try:
            os.link(tmp, target)  # fails if target exists: no check-then-write race
        except FileExistsError:
            raise FactpatchError(f"{target} exists already; pass --force to replace it") from None
        except OSError:  # a file system without hard links: check, then rename
            if target.exists():
                raise FactpatchError(f"{target} exists already; pass --force to replace it") from None
            os.replace(tmp, target)
            return
        tmp.unlink()
        return
    # The old file's WAL and shared-memory index would be read as if they belonged to the new file.
    for sidecar in (Path(f"{target}-wal"), Path(f"{target}-shm")):
        sidecar.unlink(missing_ok=True)
    os.replace(tmp, target)
