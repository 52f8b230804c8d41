"""What factpatch's two web servers (the study, `factpatch serve`) share: the security headers,
the request-size limit, signed tokens, and binding a listening socket.

Forms and sessions are guarded with HMACs under a server secret over what they are for (`sign`,
`verify`): nothing to store, nothing to forge. Request bodies are refused with 413 from their
declared length, and counted as they arrive when no length is declared, so an oversized body is
never read whole.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
from collections.abc import Callable
from typing import Any

from .errors import FactpatchError

TOKEN_BYTES = 32

SECURITY_HEADERS = {
    # Only our own files; no inline script or style, no framing, forms post back here only.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",  # tokens can live in URLs: never leak them in a Referer
}


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def new_secret() -> bytes:
    return secrets.token_bytes(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def sign(secret: bytes, *parts: object) -> str:
    message = "|".join(str(p) for p in parts).encode("utf-8")
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def verify(secret: bytes, given: str | None, *parts: object) -> bool:
    return given is not None and hmac.compare_digest(sign(secret, *parts), str(given))


def add_security_headers(app: Any) -> None:
    """Send SECURITY_HEADERS with every response of a FastAPI app, and `no-store` with every page."""

    @app.middleware("http")
    async def security_headers(request, call_next):
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        if not request.url.path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-store"
        return response


class BodyLimit:
    """ASGI middleware: a request body larger than `limit_for(path)` bytes gets 413 — at once when
    its Content-Length says so, else as soon as the bytes received pass the limit."""

    def __init__(self, app: Callable, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limit_for(scope["path"])
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                return await _refuse(send, 400, "bad Content-Length")
            if int(declared) > limit:
                return await _refuse(send, 413, f"request body over the limit of {limit} bytes")
        received = 0
        started = False

        async def counted_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge
            return message

        async def tracked_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except Exception as exc:  # raised by counted_receive, perhaps wrapped in a group by a middleware
            if not _too_large(exc):
                raise
            if not started:
                await _refuse(send, 413, f"request body over the limit of {limit} bytes")


class _TooLarge(Exception):
    pass


def _too_large(exc: BaseException) -> bool:
    if isinstance(exc, _TooLarge):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(_too_large(e) for e in exc.exceptions)
    return exc.__cause__ is not None and _too_large(exc.__cause__)


async def _refuse(send, status: int, reason: str) -> None:
    body = json.dumps({"error": {"message": reason, "type": "invalid_request_error"}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")]
    headers += [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready socket on host:port, or one clear FactpatchError."""
    if not 0 <= port < 65536:
        raise FactpatchError(f"--port must be between 0 and 65535, got {port}")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart needn't wait out TIME_WAIT
        sock.bind(address)
    except OSError as exc:
        raise FactpatchError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
