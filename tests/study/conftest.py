"""Fixtures for the study tests: a small study database, a rater driving the web app, a live server."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from factpatch.study import db
from factpatch.study.create import Invites, create_study
from factpatch.study.scenarios import Scenario, read_jsonl

SAMPLE = Path(__file__).parent / "data" / "sample.jsonl"


@pytest.fixture
def scenarios() -> list[Scenario]:
    return read_jsonl(SAMPLE)


@pytest.fixture
def study(tmp_path: Path, scenarios: list[Scenario]) -> Invites:
    """4 scenarios of 3 texts (rome, ft+l, none), 3 raters who each rank all 4."""
    return create_study(tmp_path / "study.db", scenarios, raters=3, seed=7)


class RaterClient:
    """One rater clicking through the app with a test client (or any httpx-like client)."""

    def __init__(self, client, path: str) -> None:
        self.client = client
        self.path = path

    def page(self):
        return self.client.get(self.path)

    @staticmethod
    def field(html: str, name: str) -> str:
        match = re.search(rf'name="{name}" value="([^"]*)"', html)
        assert match, f"no {name} field in page"
        return match.group(1)

    def start(self) -> None:
        html = self.page().text
        r = self.client.post(f"{self.path}/start", data={"csrf": self.field(html, "csrf")}, follow_redirects=False)
        assert r.status_code == 303, r.text

    def form(self) -> dict[str, str]:
        html = self.page().text
        return {"csrf": self.field(html, "csrf"), "position": self.field(html, "position")}

    @staticmethod
    def labels(html: str) -> list[str]:
        return re.findall(r"<h2>Text ([A-J])</h2>", html)

    def answer(self, consistency: str = "ABC", fluency: str = "ABC", form: Mapping[str, str] | None = None):
        """Submit the current scenario; `consistency` lists the labels best first."""
        data = dict(form if form is not None else self.form())
        data.update(ranks_fields("consistency", consistency))
        data.update(ranks_fields("fluency", fluency))
        return self.client.post(f"{self.path}/answer", data=data, follow_redirects=False)


def ranks_fields(criterion: str, order: str) -> dict[str, str]:
    return {f"{criterion}-{label}": str(rank) for rank, label in enumerate(order, start=1)}


@pytest.fixture
def rater_client() -> type[RaterClient]:
    return RaterClient


def answer_by_method(db_path: Path, rater: int, consistency: Sequence[str], fluency: Sequence[str]) -> None:
    """Store the rater's next answer given as method names, best first (bypasses the web app)."""
    conn = db.connect(db_path)
    try:
        answered = conn.execute("SELECT count(*) FROM answer WHERE rater_id = ?", (rater,)).fetchone()[0]
        row = conn.execute(
            "SELECT text_order FROM assignment WHERE rater_id = ? AND position = ?", (rater, answered + 1)
        ).fetchone()
        ids = json.loads(row["text_order"])
        method_of = {r["id"]: r["method"] for r in conn.execute("SELECT id, method FROM text")}
        id_of = {method_of[i]: i for i in ids}
        ranks = {
            "consistency": {id_of[m]: k for k, m in enumerate(consistency, start=1)},
            "fluency": {id_of[m]: k for k, m in enumerate(fluency, start=1)},
        }
        db.save_answer(conn, rater, answered + 1, ranks)
    finally:
        conn.close()


@pytest.fixture
def store_answer() -> Callable[..., None]:
    return answer_by_method


@pytest.fixture
def sample_lines() -> Iterator[list[dict]]:
    yield [json.loads(line) for line in SAMPLE.read_text().splitlines()]
