"""The study server under hostile input: malformed credentials, absurd fields, oversized bodies,
stolen or stale admin cookies, a database replaced under the running server, and the headers
every error page must still carry."""

from __future__ import annotations

import logging
import re

import pytest
from fastapi.testclient import TestClient

from factpatch.study import db
from factpatch.study.app import (
    ADMIN_COOKIE,
    LOGIN_CSRF_COOKIE,
    ServerSettings,
    create_app,
)
from factpatch.study.create import create_study
from factpatch.study.security import token_hash

NON_ASCII = "é" * 64  # a CSRF value or cookie no browser of ours would send; hmac.compare_digest raises on it


def raw_header(name: str, value: str) -> list[tuple[bytes, bytes]]:
    """A header whose value is not ASCII (httpx refuses to encode such a str itself)."""
    return [(name.encode(), value.encode("utf-8"))]


@pytest.fixture
def client(study) -> TestClient:
    # raise_server_exceptions=False: a 500 comes back as the response a browser would see
    return TestClient(create_app(study.db_path), raise_server_exceptions=False)


@pytest.fixture
def rater(client, study, rater_client):
    return rater_client(client, study.paths[0])


def count(study, table: str) -> int:
    conn = db.connect(study.db_path)
    try:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()


def sign_in(client: TestClient, token: str):
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/admin").text).group(1)
    return client.post("/admin/login", data={"csrf": csrf, "token": token}, follow_redirects=False)


def assert_security_headers(response) -> None:
    csp = response.headers.get("content-security-policy", "")
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp, response.status_code
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"


# ---- malformed credentials: 403, never 500 ------------------------------------------------------


def test_non_ascii_form_tokens_are_refused_not_errors(client, rater, study, caplog):
    caplog.set_level(logging.ERROR)
    r = client.post(f"{rater.path}/start", data={"csrf": NON_ASCII})
    assert r.status_code == 403 and "expired" in r.text
    rater.start()
    form = {**rater.form(), "csrf": NON_ASCII}
    r = rater.answer(form=form)
    assert r.status_code == 403 and "nothing was saved" in r.text
    assert count(study, "answer") == 0
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR]  # no traceback logged


@pytest.mark.parametrize(
    "headers",
    [
        raw_header("cookie", f"{ADMIN_COOKIE}={NON_ASCII}"),
        raw_header("cookie", f"{ADMIN_COOKIE}=<script>"),
        raw_header("authorization", f"Bearer {NON_ASCII}"),
        raw_header("authorization", "Bearer \x00\x01"),
    ],
    ids=["non-ascii-cookie", "junk-cookie", "non-ascii-bearer", "control-bearer"],
)
def test_malformed_admin_credentials_are_403(client, headers, caplog):
    caplog.set_level(logging.ERROR)
    for path in ("/admin", "/admin/export.csv"):
        r = client.get(path, headers=headers)
        assert r.status_code == 403, path
        assert_security_headers(r)
    r = client.post("/admin/logout", data={"csrf": "x"}, headers=headers)
    assert r.status_code == 403
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR]


def test_malformed_sign_in_form_is_403(client, study, caplog):
    caplog.set_level(logging.ERROR)
    client.get("/admin")  # sets the sign-in form's cookie
    for data in ({"csrf": NON_ASCII, "token": study.admin_token}, {"csrf": "x", "token": NON_ASCII}):
        r = client.post("/admin/login", data=data, follow_redirects=False)
        assert r.status_code == 403
    # a mangled sign-in cookie, with a form that matches it
    r = client.post("/admin/login", data={"csrf": NON_ASCII, "token": study.admin_token}, follow_redirects=False,
                    headers=raw_header("cookie", f"{LOGIN_CSRF_COOKIE}={NON_ASCII}"))
    assert r.status_code == 403
    # the right token with a form token of the right shape but a non-ASCII sign-in token
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/admin").text).group(1)
    r = client.post("/admin/login", data={"csrf": csrf, "token": study.admin_token + "é"}, follow_redirects=False)
    assert r.status_code == 403 and ADMIN_COOKIE not in r.headers.get("set-cookie", "")
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR]


# ---- absurd field values: 400 --------------------------------------------------------------------


@pytest.mark.parametrize("rank", ["9" * 5000, "٣", "+1", " 1e3", "1" * 20])
def test_absurd_rank_is_400(client, rater, study, rank):
    rater.start()
    data = {f"{c}-{x}": str(k) for c in ("consistency", "fluency") for k, x in enumerate("ABC", 1)}
    data.update(rater.form(), **{"fluency-A": rank})
    r = client.post(f"{rater.path}/answer", data=data, follow_redirects=False)
    assert r.status_code == 400
    assert "Fluency: text A has rank" in r.text and "ranks go from 1 to 3" in r.text
    assert count(study, "answer") == 0


def test_absurd_position_is_refused(client, rater, study):
    rater.start()
    for position in ("9" * 5000, "١", "-1"):
        r = rater.answer(form={**rater.form(), "position": position})
        assert r.status_code == 403
    assert count(study, "answer") == 0


# ---- request bodies: token first, then a size limit ----------------------------------------------


SMALL = ServerSettings(max_body_bytes=2048)


@pytest.fixture
def small_client(study) -> TestClient:
    return TestClient(create_app(study.db_path, SMALL), raise_server_exceptions=False)


def test_invite_token_is_checked_before_the_body_is_read(small_client, study):
    # A multipart body with a file is refused (400) when it is parsed; a bogus token is refused
    # (404) before that, without reading the body at all.
    files = {"upload": ("x.txt", b"x" * 100, "text/plain")}
    r = small_client.post("/r/" + "y" * 43 + "/answer", files=files)
    assert r.status_code == 404 and "This link is not valid" in r.text
    r = small_client.post(f"{study.paths[0]}/answer", files=files)
    assert r.status_code == 400  # the same body for a real token: read, and refused
    # An oversized body to a bogus token is a 404 too: the size of what was never read is no matter.
    r = small_client.post("/r/" + "y" * 43 + "/start", content=b"csrf=" + b"x" * 10_000,
                          headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 404


def test_body_over_the_limit_by_content_length_is_413(small_client, study, rater_client):
    rater = rater_client(small_client, study.paths[0])
    rater.start()
    big = {**rater.form(), "consistency-A": "1", "padding": "x" * 3000}
    r = small_client.post(f"{rater.path}/answer", data=big, follow_redirects=False)
    assert r.status_code == 413 and "larger than the 2 KiB" in r.text
    assert_security_headers(r)
    assert count(study, "answer") == 0
    r = small_client.post("/admin/login", data={"csrf": "x", "token": "t" * 3000})
    assert r.status_code == 413
    assert_security_headers(r)


def test_streamed_body_over_the_limit_is_413(small_client, study, rater_client):
    rater = rater_client(small_client, study.paths[0])
    rater.start()
    form = rater.form()
    chunks_sent = []

    def body():  # no Content-Length: sent chunked, counted as it arrives
        yield f"csrf={form['csrf']}&position=1&".encode()
        for _ in range(50):
            chunks_sent.append(1)
            yield b"padding=" + b"x" * 500 + b"&"

    r = small_client.post(f"{rater.path}/answer", content=body(),
                          headers={"content-type": "application/x-www-form-urlencoded"}, follow_redirects=False)
    assert r.status_code == 413
    assert_security_headers(r)
    assert count(study, "answer") == 0


def test_a_body_under_the_limit_without_content_length_is_accepted(small_client, study, rater_client):
    rater = rater_client(small_client, study.paths[0])
    html = rater.page().text
    csrf = rater.field(html, "csrf")
    r = small_client.post(f"{rater.path}/start", content=iter([b"csrf=", csrf.encode()]),
                          headers={"content-type": "application/x-www-form-urlencoded"}, follow_redirects=False)
    assert r.status_code == 303


def test_limit_over_real_http(study, live_server, rater_client):
    """Through uvicorn: a declared length over the limit is refused before the body is sent."""
    import http.client

    with live_server(create_app(study.db_path, SMALL)) as server:
        host, port = server.url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.putrequest("POST", f"{study.paths[0]}/start")
        conn.putheader("Content-Type", "application/x-www-form-urlencoded")
        conn.putheader("Content-Length", str(10**9))  # a gigabyte announced, none of it sent
        conn.endheaders()
        response = conn.getresponse()
        assert response.status == 413
        assert response.getheader("x-frame-options") == "DENY"
        conn.close()


# ---- admin sessions: nonce, expiry, revocation ---------------------------------------------------


def test_sign_out_revokes_the_session_cookie(client, study):
    assert sign_in(client, study.admin_token).status_code == 303
    stolen = client.cookies.get(ADMIN_COOKIE, path="/admin")
    assert stolen and stolen != study.admin_token
    conn = db.connect(study.db_path)
    stored = [r[0] for r in conn.execute("SELECT token_sha256 FROM admin_session")]
    conn.close()
    assert stored == [token_hash(stolen)]  # the database keeps the hash, never the nonce
    logout = re.search(r'action="/admin/logout".*?name="csrf" value="([^"]+)"', client.get("/admin").text, re.DOTALL)
    assert client.post("/admin/logout", data={"csrf": logout.group(1)}, follow_redirects=False).status_code == 303
    assert count(study, "admin_session") == 0
    # the old cookie, replayed (by the same browser or whoever copied it), opens nothing
    replay = TestClient(create_app(study.db_path))
    replay.cookies.set(ADMIN_COOKIE, stolen, path="/admin")
    assert replay.get("/admin").status_code == 401
    assert replay.get("/admin/export.csv").status_code == 401


def test_sessions_are_distinct_and_expire(client, study):
    second = TestClient(create_app(study.db_path))
    sign_in(client, study.admin_token)
    sign_in(second, study.admin_token)
    first_cookie, second_cookie = client.cookies.get(ADMIN_COOKIE), second.cookies.get(ADMIN_COOKIE)
    assert first_cookie != second_cookie  # a fresh nonce each time, not one fixed HMAC
    conn = db.connect(study.db_path)
    with db.transaction(conn):
        conn.execute("UPDATE admin_session SET expires_at = '2000-01-01T00:00:00+00:00' WHERE token_sha256 = ?",
                     (token_hash(first_cookie),))
    conn.close()
    assert client.get("/admin").status_code == 401  # expired: sign in again
    assert second.get("/admin").status_code == 200  # the other session is untouched


def test_session_cookie_expires_in_the_browser_too(study):
    settings = ServerSettings()
    r = sign_in(TestClient(create_app(study.db_path, settings)), study.admin_token)
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith(ADMIN_COOKIE + "="))
    assert f"Max-Age={int(settings.admin_session.total_seconds())}" in cookie


# ---- the database replaced under a running server ------------------------------------------------


def test_replacing_the_study_under_the_server_retires_the_old_credentials(client, study, scenarios, rater_client):
    old_rater = rater_client(client, study.paths[0])
    old_rater.start()
    old_form = old_rater.form()
    assert sign_in(client, study.admin_token).status_code == 303
    assert client.get("/admin").status_code == 200
    new = create_study(study.db_path, scenarios, raters=2, seed=11, title="The second study", force=True)
    # the old admin: token, cookie session, both retired at once (no restart)
    assert client.get("/admin").status_code == 401
    assert client.get("/admin/export.csv", headers={"Authorization": f"Bearer {study.admin_token}"}).status_code == 403
    assert client.get("/admin", headers={"Authorization": f"Bearer {new.admin_token}"}).status_code == 200
    # the old invites and forms are gone; the new ones work, under the new title
    assert client.get(study.paths[0]).status_code == 404
    assert rater_client(client, study.paths[0]).answer(form=old_form).status_code == 404
    page = client.get(new.paths[0])
    assert page.status_code == 200 and "The second study" in page.text


# ---- security headers on error responses ---------------------------------------------------------


def test_security_headers_on_every_error(client, rater, study, monkeypatch):
    assert_security_headers(client.get("/nope"))  # 404
    assert_security_headers(client.get("/r/" + "x" * 43))  # 404 from the app
    assert_security_headers(client.put("/admin"))  # 405
    rater.start()
    bad = {**rater.form(), "consistency-A": "9"}
    r = client.post(f"{rater.path}/answer", data=bad)
    assert r.status_code == 400
    assert_security_headers(r)

    def broken(conn):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(db, "ranking_rows", broken)
    r = client.get("/admin/export.csv", headers={"Authorization": f"Bearer {study.admin_token}"})
    assert r.status_code == 500 and "Something went wrong" in r.text and "disk on fire" not in r.text
    assert_security_headers(r)
