"""The web app through FastAPI's test client: tokens, CSRF, escaping, resume, restart, admin."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from factpatch.study import db
from factpatch.study.app import ADMIN_COOKIE, create_app
from factpatch.study.create import create_study
from factpatch.study.scenarios import Scenario


@pytest.fixture
def client(study) -> TestClient:
    return TestClient(create_app(study.db_path))


@pytest.fixture
def rater(client, study, rater_client):
    return rater_client(client, study.paths[0])


def count(study, table: str) -> int:
    conn = db.connect(study.db_path)
    try:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()


# ---- tokens and the rater's way through ---------------------------------------------------------


@pytest.mark.parametrize("path", ["/r/" + "x" * 43, "/r/short", "/r/%3Cscript%3E", "/r/" + "a" * 43 + "/instructions"])
def test_unknown_or_malformed_token_is_404(client, path):
    r = client.get(path)
    assert r.status_code == 404
    assert "This link is not valid" in r.text


def test_an_oversized_body_is_413_before_it_is_read(client, rater):
    rater.start()
    form = rater.form()
    r = client.post(f"{rater.path}/answer", data={**form, "junk": "x" * 100_000})
    assert r.status_code == 413
    assert client.post(f"{rater.path}/answer", data=form).status_code != 413


def test_unknown_token_cannot_post(client, study, rater_client):
    other = rater_client(client, "/r/" + "y" * 43)
    r = client.post(f"{other.path}/answer", data={"csrf": "0", "position": "1"})
    assert r.status_code == 404
    assert count(study, "answer") == 0


def test_first_visit_shows_instructions_then_scenarios(client, rater):
    page = rater.page()
    assert page.status_code == 200 and "Instructions" in page.text and "Begin" in page.text
    rater.start()
    page = rater.page()
    assert "Scenario 1 of 4" in page.text
    assert rater.labels(page.text) == ["A", "B", "C"]
    assert 'name="consistency-A"' in page.text and 'name="fluency-C"' in page.text
    # instructions stay reachable, now with a way back instead of a second Begin
    again = client.get(f"{rater.path}/instructions")
    assert "Back to the scenarios" in again.text and "Begin" not in again.text


def test_start_needs_its_csrf_token(client, rater, study):
    for data in ({}, {"csrf": "0" * 64}):
        r = client.post(f"{rater.path}/start", data=data, follow_redirects=False)
        assert r.status_code == 403
    assert "Instructions" in rater.page().text  # still not started


def test_security_headers(client, rater):
    for r in (rater.page(), client.get("/static/study.css"), client.get("/admin"), client.get("/nope")):
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
    assert rater.page().headers["cache-control"] == "no-store"
    assert client.get("/docs").status_code == 404 and client.get("/openapi.json").status_code == 404


def test_answer_is_stored_and_the_next_scenario_follows(client, rater, study):
    rater.start()
    r = rater.answer("BAC", "CAB")
    assert r.status_code == 303 and r.headers["location"] == rater.path
    assert "Scenario 2 of 4" in rater.page().text
    conn = db.connect(study.db_path)
    ranks = conn.execute("SELECT criterion, rank FROM ranking WHERE rater_id = 1 ORDER BY criterion, rank").fetchall()
    conn.close()
    assert [tuple(r) for r in ranks] == [("consistency", 1), ("consistency", 2), ("consistency", 3),
                                        ("fluency", 1), ("fluency", 2), ("fluency", 3)]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"consistency-B": "1"}, "Consistency: texts A and B are both ranked 1st; every text needs a different rank."),
        ({"consistency-C": ""}, "Consistency: give text C a rank."),
        ({"fluency-A": "7"}, "Fluency: text A has rank '7'; ranks go from 1 to 3."),
        ({"fluency-D": "4"}, "Fluency: there is no text D."),
    ],
)
def test_bad_ranking_is_refused_and_nothing_stored(client, rater, study, change, message):
    rater.start()
    data = {f"{c}-{x}": str(k) for c in ("consistency", "fluency") for k, x in enumerate("ABC", 1)}
    data.update(rater.form(), **change)
    r = client.post(f"{rater.path}/answer", data=data, follow_redirects=False)
    assert r.status_code == 400
    assert message in r.text.replace("&#39;", "'")
    assert "Nothing was saved yet" in r.text
    assert count(study, "answer") == 0 and count(study, "ranking") == 0
    # the choices already made are kept for the rater to correct
    assert re.search(r'name="consistency-A" value="1" required checked', r.text)


def test_forged_or_foreign_csrf_is_refused(client, study, rater_client):
    me, other = rater_client(client, study.paths[0]), rater_client(client, study.paths[1])
    me.start()
    other.start()
    mine = me.form()
    for form in ({"position": "1"}, {"csrf": "f" * 64, "position": "1"}, other.form(), {**mine, "position": "2"}):
        r = me.answer(form=form)
        assert r.status_code == 403, form
        assert "nothing was saved" in r.text
    assert count(study, "answer") == 0


def test_stale_form_is_refused_without_storing(client, rater, study):
    rater.start()
    first = rater.form()
    assert rater.answer("ABC", "ABC", first).status_code == 303
    r = rater.answer("CBA", "CBA", first)  # the same form again, e.g. from another tab
    assert r.status_code == 409
    assert "already answered" in r.text and "You are on scenario 2 of 4" in r.text
    assert count(study, "answer") == 1 and count(study, "ranking") == 6


def test_resume_from_a_new_browser(study, rater_client):
    first = rater_client(TestClient(create_app(study.db_path)), study.paths[0])
    first.start()
    first.answer()
    first.answer()
    later = rater_client(TestClient(create_app(study.db_path)), study.paths[0])  # no cookies, new app
    assert "Scenario 3 of 4" in later.page().text


def test_restart_keeps_answers_and_open_forms(study, rater_client):
    before = rater_client(TestClient(create_app(study.db_path)), study.paths[0])
    before.start()
    before.answer()
    form = before.form()  # a page opened before the restart...
    after = rater_client(TestClient(create_app(study.db_path)), study.paths[0])
    assert after.answer("CAB", "BCA", form).status_code == 303  # ...still submits after it
    assert count(study, "answer") == 2


def test_finished_rater_sees_thanks_and_cannot_add_more(client, rater, study):
    rater.start()
    forms = []
    for _ in range(4):
        forms.append(rater.form())
        assert rater.answer().status_code == 303
    page = rater.page()
    assert "Thank you" in page.text and "all 4 scenarios" in page.text
    assert rater.answer(form=forms[-1]).status_code == 409
    assert count(study, "answer") == 4


# ---- blindness and escaping ---------------------------------------------------------------------


HOSTILE = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'


@pytest.fixture
def hostile_study(tmp_path):
    scenario = Scenario(
        "x1", "Counterfactual with <b>markup</b> & quotes \"'",
        "prompt",
        {"method-secret-alpha": "Plain text. " + HOSTILE, "method-secret-beta": "Other text {{ 7 * 7 }}"},
    )
    return create_study(tmp_path / "h.db", [scenario], raters=4, seed=3)


def test_model_text_is_escaped_and_methods_stay_hidden(hostile_study, rater_client):
    client = TestClient(create_app(hostile_study.db_path))
    for path in hostile_study.paths:
        r = rater_client(client, path)
        r.start()
        html = r.page().text
        assert "<script>window" not in html and "<img src=x" not in html and "<b>markup" not in html
        assert "&lt;script&gt;window.pwned = 1&lt;/script&gt;" in html
        assert "Counterfactual with &lt;b&gt;markup&lt;/b&gt; &amp; quotes" in html
        assert "{{ 7 * 7 }}" in html  # model text is data, never a template
        assert "method-secret" not in html and "secret" not in html
    # the admin sees methods, and the same escaping
    assert r.answer("AB", "BA").status_code == 303
    admin = client.get("/admin", headers={"Authorization": f"Bearer {hostile_study.admin_token}"})
    assert admin.status_code == 200 and "&lt;b&gt;markup" in admin.text and "method-secret-alpha" in admin.text


def test_text_order_is_shuffled_between_raters(hostile_study, rater_client):
    client = TestClient(create_app(hostile_study.db_path))
    firsts = set()
    for path in hostile_study.paths:
        r = rater_client(client, path)
        r.start()
        html = r.page().text
        firsts.add(html.index("Plain text.") < html.index("Other text"))
    assert firsts == {True, False}  # seed 3: both orders occur among the 4 raters


# ---- admin ----------------------------------------------------------------------------------------


def test_admin_needs_the_token(client, study):
    r = client.get("/admin")
    assert r.status_code == 401 and "Admin sign-in" in r.text and r.headers["www-authenticate"].startswith("Bearer")
    assert client.get("/admin", headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert client.get("/admin", headers={"Authorization": f"Basic {study.admin_token}"}).status_code == 403
    assert client.get("/admin", headers={"Authorization": f"Bearer {study.rater_tokens[0]}"}).status_code == 403
    assert client.get("/admin/export.csv").status_code == 401
    client.cookies.set(ADMIN_COOKIE, "f" * 64, path="/admin")
    assert client.get("/admin").status_code == 401


def test_admin_sees_progress_and_answers(client, rater, study):
    rater.start()
    rater.answer()
    r = client.get("/admin", headers={"Authorization": f"Bearer {study.admin_token}"})
    assert r.status_code == 200
    assert "1 of 12 scenario rankings submitted" in r.text
    assert "rater 1" in r.text and "1 / 4" in r.text and "0 / 4" in r.text
    assert re.search(r"(rome|ft\+l|none) &gt; (rome|ft\+l|none) &gt; (rome|ft\+l|none)", r.text)


def test_admin_sign_in_sets_a_strict_httponly_cookie(client, study):
    page = client.get("/admin")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    wrong = client.post("/admin/login", data={"csrf": csrf, "token": "nope"}, follow_redirects=False)
    assert wrong.status_code == 403 and "not right" in wrong.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', wrong.text).group(1)
    r = client.post("/admin/login", data={"csrf": csrf, "token": study.admin_token}, follow_redirects=False)
    assert r.status_code == 303
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith(ADMIN_COOKIE + "="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and study.admin_token not in cookie
    assert client.get("/admin").status_code == 200
    assert client.get("/admin/export.csv").status_code == 200
    # sign out needs its CSRF token too
    logout = re.search(r'action="/admin/logout".*?name="csrf" value="([^"]+)"', client.get("/admin").text, re.S)
    assert client.post("/admin/logout", data={"csrf": "x"}, follow_redirects=False).status_code == 403
    r = client.post("/admin/logout", data={"csrf": logout.group(1)}, follow_redirects=False)
    assert r.status_code == 303
    assert client.get("/admin").status_code == 401


def test_admin_sign_in_needs_the_form_cookie(study):
    fresh = TestClient(create_app(study.db_path))
    r = fresh.post("/admin/login", data={"csrf": "abc", "token": study.admin_token}, follow_redirects=False)
    assert r.status_code == 403 and "expired" in r.text
    assert ADMIN_COOKIE not in r.headers.get("set-cookie", "")


def test_csv_export(client, rater, study):
    rater.start()
    rater.answer("ABC", "CBA")
    r = client.get("/admin/export.csv", headers={"Authorization": f"Bearer {study.admin_token}"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    lines = r.text.strip().splitlines()
    assert lines[0] == "rater,position,scenario,case_id,counterfactual,criterion,method,label,rank,submitted_at"
    assert len(lines) == 1 + 6


# ---- concurrency over real HTTP -----------------------------------------------------------------


def test_raters_submitting_at_once_lose_nothing(tmp_path, scenarios, live_server, rater_client):
    invites = create_study(tmp_path / "c.db", scenarios, raters=6, seed=1)
    with live_server(create_app(invites.db_path)) as server:
        raters = []
        for path in invites.paths:
            r = rater_client(httpx.Client(base_url=server.url), path)
            r.start()
            raters.append(r)
        failures: list[str] = []
        barrier = threading.Barrier(len(raters))

        def work(r) -> None:
            for _ in range(len(scenarios)):
                form = r.form()
                barrier.wait(timeout=10)  # everyone submits scenario k at the same moment
                got = r.answer("CAB", "BCA", form)
                if got.status_code != 303:
                    failures.append(f"{r.path}: {got.status_code}")

        threads = [threading.Thread(target=work, args=(r,)) for r in raters]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        for r in raters:
            r.client.close()
    assert failures == []
    conn = db.connect(invites.db_path)
    assert conn.execute("SELECT count(*) FROM answer").fetchone()[0] == 6 * 4
    assert conn.execute("SELECT count(*) FROM ranking").fetchone()[0] == 6 * 4 * 2 * 3
    assert conn.execute("SELECT count(*) FROM rater WHERE finished_at IS NOT NULL").fetchone()[0] == 6
    conn.close()


def test_double_submit_race_stores_one_answer(study, live_server, rater_client):
    with live_server(create_app(study.db_path)) as server:
        with httpx.Client(base_url=server.url) as client:
            r = rater_client(client, study.paths[0])
            r.start()
            form = r.form()
        codes: list[int] = []
        barrier = threading.Barrier(5)

        def submit() -> None:
            with httpx.Client(base_url=server.url) as c:
                barrier.wait(timeout=10)
                codes.append(rater_client(c, study.paths[0]).answer("ABC", "ABC", form).status_code)

        threads = [threading.Thread(target=submit) for _ in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
    assert sorted(codes) == [303, 409, 409, 409, 409]
    assert count(study, "answer") == 1


def test_app_refuses_a_missing_database(tmp_path):
    from factpatch.core.errors import FactpatchError

    with pytest.raises(FactpatchError, match="no study database"):
        create_app(Path(tmp_path / "none.db"))


def test_access_log_redacts_invite_tokens():
    import logging

    from factpatch.study.security import RedactInvites

    token = "tR-duhnvfWO-lkbV8gjPKbTlQhw2MjxRozWMfinAStc"
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5", "POST", f"/r/{token}/answer", "1.1", 303), None)
    assert RedactInvites().filter(record)
    assert token not in record.getMessage() and "/r/tR-duh…/answer" in record.getMessage()
