"""The study database: schema, connections and the queries the web app and the analysis share.

One SQLite file holds a whole study. It is versioned with `PRAGMA user_version` (an older file
is brought up to date when opened; a newer one is refused) and marked as ours with
`PRAGMA application_id`, runs in WAL mode (raters read while one writes) with
`synchronous=FULL` (an answer acknowledged to a rater survives a crash or power cut), and every
write is one `BEGIN IMMEDIATE` transaction, so two raters submitting at once queue for the
write lock instead of failing or interleaving.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from factpatch.core.errors import FactpatchError
from factpatch.study.ranking import CRITERIA, LABELS

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 2
APPLICATION_ID = 0x46505354  # "FPST": tells a study file from any other SQLite file

SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE scenario (
    id INTEGER PRIMARY KEY,                 -- 1-based, in input order
    case_id TEXT NOT NULL UNIQUE,
    counterfactual TEXT NOT NULL,
    prompt TEXT NOT NULL
);
CREATE TABLE text (
    id INTEGER PRIMARY KEY,
    scenario_id INTEGER NOT NULL REFERENCES scenario(id),
    method TEXT NOT NULL,                   -- never sent to a rater
    body TEXT NOT NULL,
    UNIQUE (scenario_id, method)
);
CREATE TABLE rater (
    id INTEGER PRIMARY KEY,                 -- the rater's number, as the admin sees it
    token_sha256 TEXT NOT NULL UNIQUE,      -- the invite token itself is only printed once
    started_at TEXT,
    finished_at TEXT
);
CREATE TABLE assignment (
    rater_id INTEGER NOT NULL REFERENCES rater(id),
    position INTEGER NOT NULL,              -- 1-based order in which this rater sees scenarios
    scenario_id INTEGER NOT NULL REFERENCES scenario(id),
    text_order TEXT NOT NULL,               -- JSON list of text ids, shown as A, B, C...
    PRIMARY KEY (rater_id, position),
    UNIQUE (rater_id, scenario_id)
) WITHOUT ROWID;
CREATE TABLE answer (
    rater_id INTEGER NOT NULL,
    position INTEGER NOT NULL,
    submitted_at TEXT NOT NULL,
    PRIMARY KEY (rater_id, position),
    FOREIGN KEY (rater_id, position) REFERENCES assignment(rater_id, position)
) WITHOUT ROWID;
CREATE TABLE ranking (
    rater_id INTEGER NOT NULL,
    position INTEGER NOT NULL,
    criterion TEXT NOT NULL CHECK (criterion IN ('consistency', 'fluency')),
    text_id INTEGER NOT NULL REFERENCES text(id),
    rank INTEGER NOT NULL CHECK (rank >= 1),  -- 1 = best
    PRIMARY KEY (rater_id, position, criterion, text_id),
    UNIQUE (rater_id, position, criterion, rank),  -- no ties, even if a bug let one through
    FOREIGN KEY (rater_id, position) REFERENCES answer(rater_id, position)
) WITHOUT ROWID;
"""

# Each entry brings a file of schema version k (the key) to k + 1; one statement each, so that an
# upgrade is one transaction (executescript would commit between statements).
UPGRADES = {
    1: """
CREATE TABLE admin_session (
    token_sha256 TEXT PRIMARY KEY,          -- the cookie's nonce itself is never stored
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL                -- refused from then on; sign-out deletes the row
) WITHOUT ROWID
""",
}
# A new file gets schema 1 and every upgrade: new and upgraded files are the same.
SCHEMA = SCHEMA_1 + "".join(statement.strip() + ";\n" for statement in UPGRADES.values())


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def configure(conn: sqlite3.Connection) -> sqlite3.Connection:
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = FULL")
    return conn


def connect(path: Path) -> sqlite3.Connection:
    """Open an existing study database (never creates one) and check that it is ours."""
    path = Path(path)
    if not path.is_file():
        raise FactpatchError(f"no study database at {path}; create one with `factpatch study create`")
    # isolation_level=None: we issue BEGIN ourselves. check_same_thread=False: FastAPI may open a
    # connection in one worker thread and use it in another, never in two at once.
    conn = sqlite3.connect(
        f"{path.resolve().as_uri()}?mode=rw", uri=True, isolation_level=None, check_same_thread=False, timeout=15
    )
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise FactpatchError(f"{path} is not a SQLite database ({exc})") from exc
    if app_id != APPLICATION_ID:
        conn.close()
        raise FactpatchError(f"{path} is not a factpatch study database")
    if version > SCHEMA_VERSION or version < min(UPGRADES, default=SCHEMA_VERSION):
        conn.close()
        newer = "a newer" if version > SCHEMA_VERSION else "an older"
        raise FactpatchError(
            f"{path} has study schema {version}, made by {newer} factpatch; this one reads schema {SCHEMA_VERSION}"
        )
    configure(conn)
    if version < SCHEMA_VERSION:
        try:
            upgrade(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise FactpatchError(f"{path} has study schema {version} and could not be upgraded: {exc}") from exc
    return conn


def upgrade(conn: sqlite3.Connection) -> None:
    """Bring the schema up to SCHEMA_VERSION in one transaction (another process may race us: the
    version is read again under the write lock)."""
    with transaction(conn):
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for from_version in range(version, SCHEMA_VERSION):
            conn.execute(UPGRADES[from_version].strip())
        if version < SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            logger.info("upgraded study schema %d to %d", version, SCHEMA_VERSION)


def initialise(conn: sqlite3.Connection) -> None:
    """Create the schema in an empty database."""
    conn.executescript(SCHEMA)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction that takes the write lock up front, so a check-then-write can't race."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@dataclass(frozen=True)
class StudyInfo:
    title: str
    methods: tuple[str, ...]  # in input order; analysis reports pairs in this order
    seed: int
    created_at: str
    admin_token_sha256: str
    secret: bytes  # signs CSRF tokens; new at every create, so it also tells one study from its replacement
    n_scenarios: int
    n_raters: int


def study_info(conn: sqlite3.Connection) -> StudyInfo:
    meta = {row["key"]: row["value"] for row in conn.execute("SELECT key, value FROM meta")}
    return StudyInfo(
        title=meta["title"],
        methods=tuple(json.loads(meta["methods"])),
        seed=int(meta["seed"]),
        created_at=meta["created_at"],
        admin_token_sha256=meta["admin_token_sha256"],
        secret=bytes.fromhex(meta["secret"]),
        n_scenarios=conn.execute("SELECT count(*) FROM scenario").fetchone()[0],
        n_raters=conn.execute("SELECT count(*) FROM rater").fetchone()[0],
    )


def open_admin_session(conn: sqlite3.Connection, token_sha256: str, lifetime: timedelta) -> None:
    """Record a signed-in admin session until `lifetime` from now; expired ones are dropped here."""
    stamp = datetime.now(UTC)
    with transaction(conn):
        conn.execute("DELETE FROM admin_session WHERE expires_at <= ?", (stamp.isoformat(timespec="seconds"),))
        conn.execute(
            "INSERT INTO admin_session (token_sha256, created_at, expires_at) VALUES (?, ?, ?)",
            (token_sha256, stamp.isoformat(timespec="seconds"), (stamp + lifetime).isoformat(timespec="seconds")),
        )


def admin_session_open(conn: sqlite3.Connection, token_sha256: str) -> bool:
    """True while the session exists and has not expired (all stamps are UTC in one format, so they sort)."""
    row = conn.execute(
        "SELECT 1 FROM admin_session WHERE token_sha256 = ? AND expires_at > ?", (token_sha256, now())
    ).fetchone()
    return row is not None


def close_admin_session(conn: sqlite3.Connection, token_sha256: str) -> None:
    with transaction(conn):
        conn.execute("DELETE FROM admin_session WHERE token_sha256 = ?", (token_sha256,))


@dataclass(frozen=True)
class Rater:
    id: int
    started: bool
    assigned: int  # scenarios this rater ranks
    answered: int

    @property
    def finished(self) -> bool:
        return self.answered >= self.assigned

    @property
    def position(self) -> int:
        """The 1-based scenario this rater is on: answers are given strictly in order."""
        return self.answered + 1


RATER_QUERY = """
SELECT r.id, r.started_at, r.finished_at,
       (SELECT count(*) FROM assignment a WHERE a.rater_id = r.id) AS assigned,
       (SELECT count(*) FROM answer s WHERE s.rater_id = r.id) AS answered,
       (SELECT max(submitted_at) FROM answer s WHERE s.rater_id = r.id) AS last_answer_at
FROM rater r
"""


def rater_by_token_hash(conn: sqlite3.Connection, token_sha256: str) -> Rater | None:
    row = conn.execute(RATER_QUERY + " WHERE r.token_sha256 = ?", (token_sha256,)).fetchone()
    if row is None:
        return None
    return Rater(row["id"], row["started_at"] is not None, row["assigned"], row["answered"])


def mark_started(conn: sqlite3.Connection, rater_id: int) -> None:
    with transaction(conn):
        conn.execute("UPDATE rater SET started_at = ? WHERE id = ? AND started_at IS NULL", (now(), rater_id))


@dataclass(frozen=True)
class ShownText:
    label: str  # "A", "B"... : all a rater ever learns about where a text came from
    text_id: int
    body: str


@dataclass(frozen=True)
class ShownScenario:
    position: int
    total: int
    counterfactual: str
    texts: tuple[ShownText, ...]


def shown_scenario(conn: sqlite3.Connection, rater: Rater, position: int) -> ShownScenario:
    row = conn.execute(
        "SELECT a.text_order, s.counterfactual FROM assignment a JOIN scenario s ON s.id = a.scenario_id "
        "WHERE a.rater_id = ? AND a.position = ?",
        (rater.id, position),
    ).fetchone()
    order: list[int] = json.loads(row["text_order"])
    bodies = {
        r["id"]: r["body"]
        for r in conn.execute(f"SELECT id, body FROM text WHERE id IN ({','.join('?' * len(order))})", order)
    }
    texts = tuple(ShownText(label, text_id, bodies[text_id]) for label, text_id in zip(LABELS, order))
    return ShownScenario(position, rater.assigned, row["counterfactual"], texts)


class StaleAnswer(Exception):
    """The rater is no longer on the scenario the form was for (answered in another tab, or done)."""

    def __init__(self, current: int) -> None:
        super().__init__(f"rater is on scenario {current}")
        self.current = current


def save_answer(
    conn: sqlite3.Connection, rater_id: int, position: int, ranks: Mapping[str, Mapping[int, int]]
) -> None:
    """Store one scenario's rankings ({criterion: {text_id: rank}}) all at once, or nothing.

    Raises StaleAnswer, storing nothing, unless `position` is the rater's next unanswered scenario;
    the check runs under the write lock, so a double submit from two tabs stores one answer.
    """
    with transaction(conn):
        answered = conn.execute("SELECT count(*) FROM answer WHERE rater_id = ?", (rater_id,)).fetchone()[0]
        assigned = conn.execute("SELECT count(*) FROM assignment WHERE rater_id = ?", (rater_id,)).fetchone()[0]
        if position != answered + 1 or position > assigned:
            raise StaleAnswer(answered + 1)
        stamp = now()
        conn.execute("UPDATE rater SET started_at = coalesce(started_at, ?) WHERE id = ?", (stamp, rater_id))
        conn.execute(
            "INSERT INTO answer (rater_id, position, submitted_at) VALUES (?, ?, ?)", (rater_id, position, stamp)
        )
        conn.executemany(
            "INSERT INTO ranking (rater_id, position, criterion, text_id, rank) VALUES (?, ?, ?, ?, ?)",
            [(rater_id, position, c, text_id, rank) for c in CRITERIA for text_id, rank in ranks[c].items()],
        )
        if position == assigned:
            conn.execute("UPDATE rater SET finished_at = ? WHERE id = ?", (stamp, rater_id))


@dataclass(frozen=True)
class RaterProgress:
    rater: int
    started_at: str | None
    finished_at: str | None
    answered: int
    assigned: int
    last_answer_at: str | None


def rater_progress(conn: sqlite3.Connection) -> list[RaterProgress]:
    rows = conn.execute(RATER_QUERY + " ORDER BY r.id").fetchall()
    return [
        RaterProgress(r["id"], r["started_at"], r["finished_at"], r["answered"], r["assigned"], r["last_answer_at"])
        for r in rows
    ]


@dataclass(frozen=True)
class RankingRow:
    """One rank one rater gave one text on one criterion: the unit of every export and analysis."""

    rater: int
    position: int  # which of the rater's scenarios (1-based)
    scenario: int
    case_id: str
    counterfactual: str
    criterion: str
    method: str
    label: str  # the letter the rater saw the text under
    rank: int
    submitted_at: str


def ranking_rows(conn: sqlite3.Connection) -> list[RankingRow]:
    rows = conn.execute(
        """
        SELECT k.rater_id, k.position, s.id AS scenario, s.case_id, s.counterfactual, k.criterion,
               t.method, k.text_id, k.rank, w.submitted_at, a.text_order
        FROM ranking k
        JOIN answer w ON w.rater_id = k.rater_id AND w.position = k.position
        JOIN assignment a ON a.rater_id = k.rater_id AND a.position = k.position
        JOIN scenario s ON s.id = a.scenario_id
        JOIN text t ON t.id = k.text_id
        ORDER BY k.rater_id, k.position, k.criterion, k.rank
        """
    ).fetchall()
    out = []
    for r in rows:
        label = LABELS[json.loads(r["text_order"]).index(r["text_id"])]
        out.append(
            RankingRow(
                r["rater_id"], r["position"], r["scenario"], r["case_id"], r["counterfactual"],
                r["criterion"], r["method"], label, r["rank"], r["submitted_at"],
            )
        )
    return out
