"""The study's web app: rater pages under /r/<token>, the admin page under /admin.

`create_app(db_path)` builds a FastAPI app over one study database. Raters need nothing but
their invite link; every form carries an HMAC token bound to the rater and the scenario
(security.py), so a forged, cross-rater or stale form is refused before anything is stored.
Pages are Jinja2 templates with autoescaping, served under a Content-Security-Policy that
allows only this server's own script and stylesheet, so model text can never run as code.

The admin signs in once with the admin token through a form, which starts a session: a random
nonce in an HttpOnly, SameSite=Strict cookie, whose hash and expiry the database keeps, so
sign-out (or the expiry) ends it for every copy of the cookie. Scripts may instead send
`Authorization: Bearer <admin token>`. A malformed credential of any kind is a 403, never an error.

Request bodies are limited (core.web.BodyLimit) and a rater's form is read only after the invite token
in its path is found valid; every response, errors included, carries the security headers.
"""
# No `from __future__ import annotations` here: FastAPI must see the Annotated dependency
# aliases defined inside create_app as objects, not as names to look up in this module.

import io
import logging
import sqlite3
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import jinja2
from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException

from factpatch.core.web import (
    BodyLimit,
    add_security_headers,
    headers_for,
    html_refusal,
)
from factpatch.study import db, security
from factpatch.study.export import write_rankings_csv
from factpatch.study.ranking import (
    CRITERIA,
    CRITERIA_INFO,
    RankingInvalid,
    ordinal,
    parse_ranking,
)

logger = logging.getLogger(__name__)

ADMIN_COOKIE = "factpatch_admin"
LOGIN_CSRF_COOKIE = "factpatch_login_csrf"


@dataclass(frozen=True)
class ServerSettings:
    # An answer form is under 1 KiB (a rank per text and criterion, a token, a position); anything
    # much larger is not one of our forms, and is refused before it is read.
    max_body_bytes: int = 16 * 1024
    # A working day of watching progress; then the admin signs in again. Sign-out ends it at once.
    admin_session: timedelta = timedelta(hours=12)


@dataclass(frozen=True)
class Current:
    """One request's connection and the study as the database holds it now."""

    conn: sqlite3.Connection
    info: db.StudyInfo


@dataclass(frozen=True)
class AdminAuth:
    status: int  # 200 signed in, 401 no (or no longer valid) credentials, 403 wrong or malformed ones
    session_sha256: str | None = None  # the cookie session's hash; None for a Bearer token


@dataclass(frozen=True)
class AnswerSummary:
    """One submitted scenario as the admin sees it, methods revealed."""

    rater: int
    position: int
    case_id: str
    counterfactual: str
    orders: dict[str, str]  # criterion -> "rome > ft+l > none"
    submitted_at: str


def summarize_answers(rows: list[db.RankingRow]) -> list[AnswerSummary]:
    grouped: dict[tuple[int, int], list[db.RankingRow]] = defaultdict(list)
    for r in rows:
        grouped[(r.rater, r.position)].append(r)
    out = []
    for (rater, position), group in grouped.items():
        orders = {
            c: " > ".join(r.method for r in sorted((r for r in group if r.criterion == c), key=lambda r: r.rank))
            for c in CRITERIA
        }
        first = group[0]
        out.append(AnswerSummary(rater, position, first.case_id, first.counterfactual, orders, first.submitted_at))
    return out


def when(stamp: str | None) -> str:
    """"2026-05-09T14:03:51+00:00" -> "2026-05-09 14:03:51" (all stamps are UTC)."""
    return stamp.replace("T", " ")[:19] if stamp else ""


def create_app(db_path: Path, settings: ServerSettings = ServerSettings()) -> FastAPI:
    """The web app for the study at `db_path`; fails now, not on the first request, if it isn't one.

    The study is read again on every request, so a `study create --force` that replaces the file
    under a running server takes effect at once: the old study's admin token, sessions, invites
    and forms stop working with the next request, not at the next restart.
    """
    db_path = Path(db_path)
    conn = db.connect(db_path)
    try:
        latest = [db.study_info(conn)]  # the last study seen; titles the error pages that read no database
    finally:
        conn.close()

    app = FastAPI(title="factpatch study", docs_url=None, redoc_url=None, openapi_url=None)
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("factpatch.study", "templates"), autoescape=True, undefined=jinja2.StrictUndefined
    )
    env.globals.update(ordinal=ordinal)
    env.filters["when"] = when
    templates = Jinja2Templates(env=env)
    app.mount("/static", StaticFiles(packages=[("factpatch.study", "static")]), name="static")
    # The last added is outermost: headers go on every response, the 413 page included.
    app.add_middleware(BodyLimit, limit_for=lambda path: settings.max_body_bytes, refusal=html_refusal,
                       declared_at_once=False)  # a bogus invite token is a 404 whatever its body
    add_security_headers(app)

    def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        return templates.TemplateResponse(
            request, name, {"study_title": latest[0].title, **context}, status_code=status
        )

    def message(request: Request, status: int, title: str, text: str, link: str | None = None) -> HTMLResponse:
        return page(request, "message.html", status, heading=title, text=text, link=link)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> HTMLResponse:
        heading = {400: "Bad request", 404: "Not found", 405: "Not allowed", 413: "Too large"}.get(
            exc.status_code, "Error"
        )
        return message(request, exc.status_code, heading, str(exc.detail))

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> HTMLResponse:
        # Sent from outside the middleware (Starlette re-raises afterwards, so the server logs the
        # traceback): the security headers are added here.
        response = message(request, 500, "Server error", "Something went wrong on the server. Please try again.")
        response.headers.update(headers_for(request.url.path))
        return response

    def current() -> Iterator[Current]:
        conn = db.connect(db_path)
        try:
            info = db.study_info(conn)
            if info.secret != latest[0].secret:
                logger.warning("%s now holds another study (created %s): serving it; the old one's tokens "
                               "no longer work", db_path, info.created_at)
            latest[0] = info
            yield Current(conn, info)
        finally:
            conn.close()

    async def read_form(request: Request) -> FormData:
        return await request.form(max_files=0, max_fields=200)

    def rater_for(study: Current, token: str) -> db.Rater:
        rater = db.rater_by_token_hash(study.conn, security.token_hash(token)) if security.plausible_token(token) else None
        if rater is None:
            # Same answer for a malformed and an unknown token: nothing to learn by probing.
            raise StarletteHTTPException(404, "This link is not valid. Check that you copied the whole link.")
        return rater

    # Dependencies run before a (sync) endpoint runs in the thread pool, so SQLite's waits never
    # block the event loop. A rater's form is read only once the invite token is known to be good.
    Study = Annotated[Current, Depends(current)]

    def current_rater(token: str, study: Study) -> db.Rater:
        return rater_for(study, token)

    RaterOf = Annotated[db.Rater, Depends(current_rater)]

    async def rater_form(request: Request, rater: RaterOf) -> FormData:
        return await read_form(request)

    RaterForm = Annotated[FormData, Depends(rater_form)]
    Form = Annotated[FormData, Depends(read_form)]

    # ---- raters ------------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse)
    def home(request: Request, study: Study) -> HTMLResponse:
        return message(request, 200, study.info.title, "Open the personal link you were sent to take part.")

    @app.get("/r/{token}", response_class=HTMLResponse)
    def rater_home(request: Request, token: str, study: Study, rater: RaterOf) -> HTMLResponse:
        if rater.finished:
            return page(request, "done.html", total=rater.assigned)
        if not rater.started:
            return instructions_page(request, study, token, rater)
        return scenario_page(request, study, token, rater)

    @app.get("/r/{token}/instructions", response_class=HTMLResponse)
    def instructions(request: Request, token: str, study: Study, rater: RaterOf) -> HTMLResponse:
        return instructions_page(request, study, token, rater)

    def instructions_page(request: Request, study: Current, token: str, rater: db.Rater) -> HTMLResponse:
        return page(
            request, "instructions.html", token=token, total=rater.assigned, started=rater.started,
            finished=rater.finished, criteria=CRITERIA_INFO,
            csrf=security.start_form_token(study.info.secret, rater.id),
        )

    def scenario_page(
        request: Request,
        study: Current,
        token: str,
        rater: db.Rater,
        status: int = 200,
        errors: tuple[str, ...] = (),
        selected: dict[str, str] | None = None,
    ) -> HTMLResponse:
        shown = db.shown_scenario(study.conn, rater, rater.position)
        return page(
            request, "scenario.html", status, token=token, scenario=shown, criteria=CRITERIA_INFO,
            ranks=range(1, len(shown.texts) + 1), errors=errors, selected=selected or {},
            csrf=security.answer_form_token(study.info.secret, rater.id, rater.position),
        )

    @app.post("/r/{token}/start")
    def start(request: Request, token: str, study: Study, rater: RaterOf, form: RaterForm) -> Response:
        if not security.verify(study.info.secret, form.get("csrf"), "start", rater.id):
            return message(request, 403, "Form not accepted", "This form has expired. Open your link again.",
                           f"/r/{token}")
        db.mark_started(study.conn, rater.id)
        return RedirectResponse(f"/r/{token}", status_code=303)

    @app.post("/r/{token}/answer")
    def answer(request: Request, token: str, study: Study, rater: RaterOf, form: RaterForm) -> Response:
        field = form.get("position", "")
        ok = isinstance(field, str) and field.isascii() and field.isdigit() and len(field) < 7
        position = int(field) if ok else -1
        # The token is signed for this rater and scenario: checked first, so nothing else is learnt from a forgery.
        if not security.verify(study.info.secret, form.get("csrf"), "answer", rater.id, position):
            return message(request, 403, "Form not accepted",
                           "This form could not be verified, so nothing was saved. Open your link again to continue.",
                           f"/r/{token}")
        if position != rater.position or rater.finished:
            return stale(request, token, rater)
        shown = db.shown_scenario(study.conn, rater, position)
        values = {key: str(value) for key, value in form.items()}
        try:
            ranked = parse_ranking(values, [t.label for t in shown.texts])
        except RankingInvalid as exc:
            return scenario_page(request, study, token, rater, 400, exc.errors, values)
        text_id = {t.label: t.text_id for t in shown.texts}
        by_text = {c: {text_id[label]: rank for label, rank in ranked[c].items()} for c in CRITERIA}
        try:
            db.save_answer(study.conn, rater.id, position, by_text)
        except db.StaleAnswer:  # another tab got there between our check and the write lock
            return stale(request, token, rater_for(study, token))
        logger.info("rater %d answered scenario %d of %d", rater.id, position, rater.assigned)
        return RedirectResponse(f"/r/{token}", status_code=303)  # a reload can't post the answer twice

    def stale(request: Request, token: str, rater: db.Rater) -> HTMLResponse:
        if rater.finished:
            where = "You have already answered every scenario."
        else:
            where = f"You are on scenario {rater.position} of {rater.assigned}."
        text = (
            "This form was for a scenario you had already answered (perhaps in another tab), "
            f"so it was not saved again. {where}"
        )
        return message(request, 409, "Already answered", text, f"/r/{token}")

    # ---- admin -------------------------------------------------------------------------------

    def admin_auth(request: Request, study: Current) -> AdminAuth:
        header = request.headers.get("authorization")
        if header is not None:
            scheme, _, value = header.partition(" ")
            ok = scheme.lower() == "bearer" and security.admin_token_ok(value.strip(), study.info.admin_token_sha256)
            return AdminAuth(200 if ok else 403)
        cookie = request.cookies.get(ADMIN_COOKIE)
        if cookie is None:
            return AdminAuth(401)
        if not security.plausible_token(cookie):
            return AdminAuth(403)  # not a value this server ever set
        session = security.token_hash(cookie)
        if db.admin_session_open(study.conn, session):
            return AdminAuth(200, session)
        return AdminAuth(401)  # expired, signed out, or from an earlier study at this address: sign in again

    def login_page(request: Request, status: int, error: str | None = None) -> HTMLResponse:
        nonce = security.new_token()
        response = page(request, "admin_login.html", status, csrf=nonce, error=error)
        response.set_cookie(LOGIN_CSRF_COOKIE, nonce, httponly=True, samesite="strict", path="/admin",
                            secure=request.url.scheme == "https")
        if status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="factpatch study admin"'
        return response

    @app.get("/admin", response_class=HTMLResponse)
    def admin(request: Request, study: Study) -> HTMLResponse:
        auth = admin_auth(request, study)
        if auth.status != 200:
            return login_page(request, auth.status, "That admin token is not right." if auth.status == 403 else None)
        progress = db.rater_progress(study.conn)
        answers = summarize_answers(db.ranking_rows(study.conn))
        return page(
            request, "admin.html", info=study.info, progress=progress, answers=answers,
            answered=sum(p.answered for p in progress), assigned=sum(p.assigned for p in progress),
            finished=sum(1 for p in progress if p.answered == p.assigned),
            logout_csrf=security.logout_form_token(study.info.secret, auth.session_sha256 or ""),
        )

    @app.post("/admin/login")
    def admin_login(request: Request, study: Study, form: Form) -> Response:
        expected = request.cookies.get(LOGIN_CSRF_COOKIE)
        given = form.get("csrf")
        if not (expected and security.plausible_token(expected) and isinstance(given, str)
                and security.same(expected, given)):
            return login_page(request, 403, "The sign-in form expired. Please try again.")
        if not security.admin_token_ok(str(form.get("token", "")).strip(), study.info.admin_token_sha256):
            logger.warning("failed admin sign-in from %s", request.client.host if request.client else "?")
            return login_page(request, 403, "That admin token is not right.")
        nonce = security.new_token()
        db.open_admin_session(study.conn, security.token_hash(nonce), settings.admin_session)
        response = RedirectResponse("/admin", status_code=303)
        response.set_cookie(ADMIN_COOKIE, nonce, max_age=int(settings.admin_session.total_seconds()), httponly=True,
                            samesite="strict", path="/admin", secure=request.url.scheme == "https")
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/admin")
        return response

    @app.post("/admin/logout")
    def admin_logout(request: Request, study: Study, form: Form) -> Response:
        auth = admin_auth(request, study)
        signed = auth.session_sha256 is not None and security.verify(
            study.info.secret, form.get("csrf"), "logout", auth.session_sha256
        )
        if auth.status != 200 or not signed:
            return message(request, 403, "Form not accepted", "Sign-out could not be verified.", "/admin")
        assert auth.session_sha256 is not None
        db.close_admin_session(study.conn, auth.session_sha256)  # the cookie is dead even if a copy survives
        response = RedirectResponse("/admin", status_code=303)
        response.delete_cookie(ADMIN_COOKIE, path="/admin")
        return response

    @app.get("/admin/export.csv")
    def export(request: Request, study: Study) -> Response:
        auth = admin_auth(request, study)
        if auth.status != 200:
            return message(request, auth.status, "Admin only", "Sign in at /admin first.", "/admin")
        out = io.StringIO()
        write_rankings_csv(db.ranking_rows(study.conn), out)
        return Response(
            out.getvalue(), media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="rankings.csv"'},
        )

    return app
