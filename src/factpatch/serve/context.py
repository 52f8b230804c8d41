"""What every route of one server shares: the host, the jobs, who may call, the limits; and the
small helpers that turn a request into checked input or an OpenAI-style error."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ..core.errors import FactpatchError
from .auth import Access
from .experiments import LabSettings
from .host import ModelHost, StackView
from .jobs import JobRunner

STACK_HEADER = "X-Factpatch-Stack"
SIMPLE_TYPES = ("", "application/x-www-form-urlencoded", "multipart/form-data", "text/plain")


@dataclass(frozen=True)
class Limits:
    body_bytes: int = 1 << 20  # JSON requests: 1 MiB is thousands of prompts' worth
    upload_bytes: int = 64 << 20  # patch files: a ROME patch is ~20 KB, a dense fine-tune of one layer ~4 MB


@dataclass
class ServeContext:
    host: ModelHost
    access: Access
    settings: LabSettings = field(default_factory=LabSettings)
    limits: Limits = field(default_factory=Limits)
    jobs: JobRunner = field(default_factory=JobRunner)


class ApiError(Exception):
    """An error answered as OpenAI's clients expect: {"error": {"message", "type", "code"}}."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}

    def response(self) -> JSONResponse:
        kind = {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
                413: "invalid_request_error"}.get(self.status, "invalid_request_error" if self.status < 500 else "server_error")
        body = {"error": {"message": self.message, "type": kind, "code": self.code, "param": None}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def authorize(ctx: ServeContext, request: Request, form_csrf: str | None = None) -> str:
    """Who is calling ("open", "bearer", "session"), or ApiError. Mutations from a browser (a
    session, or no credentials with a body a cross-site form could send) need the page's CSRF token."""
    access, headers = ctx.access, request.headers
    if not access.host_ok(headers):
        raise ApiError(400, "this server answers to loopback addresses only (Host header)")
    bearer = access.bearer(headers)
    if access.open:
        who = "open"
    elif bearer is not None:
        if not access.token_ok(bearer):
            raise ApiError(403, "wrong token")
        who = "bearer"
    elif access.signed_in(request.cookies):
        who = "session"
    else:
        raise ApiError(401, "this server needs `Authorization: Bearer <token>`",
                       headers={"WWW-Authenticate": 'Bearer realm="factpatch"'})
    if request.method not in ("GET", "HEAD"):
        if not access.origin_ok(headers):
            raise ApiError(403, "cross-site request refused (Origin)")
        # what a page on another site can send without a CORS preflight (which this server never grants)
        simple = request.method == "POST" and content_type(request) in SIMPLE_TYPES
        if (who == "session" or (who == "open" and simple)) and not access.csrf_ok(headers, form_csrf):
            raise ApiError(403, "missing or wrong CSRF token: reload the page")
    return who


def content_type(request: Request) -> str:
    return (request.headers.get("content-type") or "").split(";")[0].strip().lower()


async def json_body(request: Request) -> dict:
    if content_type(request) != "application/json":
        raise ApiError(415, "send the request as Content-Type: application/json")
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


async def checked(fn, *args):
    """Run blocking work off the event loop; a FactpatchError becomes a 400 with its reason."""
    try:
        return await run_in_threadpool(fn, *args)
    except FactpatchError as exc:
        raise ApiError(400, str(exc)) from None


def stack_headers(view: StackView) -> dict[str, str]:
    return {STACK_HEADER: view.label}
