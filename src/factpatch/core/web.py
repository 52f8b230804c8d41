"""What factpatch's two web servers (the study, `factpatch serve`) share: the security headers,
the request-size limit, signed tokens, and binding a listening socket.

Both middlewares are plain ASGI (no BaseHTTPMiddleware): they wrap `send` and `receive` and
nothing else, so every response gets the headers, whatever made it (a page, a redirect, a static
file, a 404 or 413). The one response that passes through no user middleware is Starlette's 500,
sent from outside them: an app's 500 handler adds `headers_for(path)` itself.

Forms and sessions are guarded with HMACs under a server secret over what they are for (`sign`,
`verify`): nothing to store, nothing to forge. Request bodies are refused with 413 from their
declared length, and counted as they arrive when no length is declared, so an oversized body is
never read whole.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import ipaddress
import json
import secrets
import socket
from collections.abc import Callable
from typing import Any

from .errors import FactpatchError

TOKEN_BYTES = 32

NO_STORE_EXCEPT = "/static/"  # pages hold tokens and answers: never cached; our own files may be
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


def same(a: str, b: str) -> bool:
    """Constant-time equality of two strings of any characters (a lone surrogate included):
    `hmac.compare_digest` raises on a `str` with non-ASCII characters, so compare bytes."""
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass"))


def verify(secret: bytes, given: object, *parts: object) -> bool:
    """Whether `given` (untrusted: any type, any characters) is the signature of `parts`."""
    return isinstance(given, str) and same(sign(secret, *parts), given)


def headers_for(path: str) -> dict[str, str]:
    """The security headers a response to `path` gets."""
    return SECURITY_HEADERS if path.startswith(NO_STORE_EXCEPT) else {**SECURITY_HEADERS, "Cache-Control": "no-store"}


class SecurityHeaders:
    """ASGI middleware: `headers_for(path)` on every response."""

    def __init__(self, app: Callable) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        # imported here: tokens and signatures (above) serve `study create`, which runs without the web stack
        from starlette.datastructures import MutableHeaders

        extra = headers_for(scope.get("path", ""))

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in extra.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def add_security_headers(app: Any) -> None:
    """Security headers on every response of `app`: add this last, so it is the outermost
    middleware and the other middlewares' own answers (413) get them too."""
    app.add_middleware(SecurityHeaders)


def html_refusal(status: int, reason: str) -> tuple[str, bytes]:
    """A web page's refusal: a minimal page (the middleware answers before any template runs)."""
    text = html.escape(reason)
    page = f"<!doctype html><meta charset=utf-8><title>{status}</title><h1>{status}</h1><p>{text}</p>"
    return "text/html; charset=utf-8", page.encode()


def json_refusal(status: int, reason: str) -> tuple[str, bytes]:
    """An API's refusal: OpenAI's error shape."""
    return "application/json", json.dumps({"error": {"message": reason, "type": "invalid_request_error"}}).encode()


class BodyLimit:
    """ASGI middleware: a request body larger than `limit_for(path)` bytes gets 413 — at once when
    its Content-Length says so, else as soon as the bytes received pass the limit (chunked, or a
    Content-Length that lies). Bytes are counted as the app reads them, so nothing is read until a
    route asks for the body, and a route that checks credentials first reads nothing for a bad
    one. `refusal(status, reason)` gives the answer's content type and body (default: JSON).

    A body whose Content-Length is over the limit is refused before the app runs, unless
    `declared_at_once` is False: then it is refused when the app first reads it, so a route that
    refuses the request for another reason first (the study: a bogus invite token is a 404) says so.
    """

    def __init__(self, app: Callable, limit_for: Callable[[str], int],
                 refusal: Callable[[int, str], tuple[str, bytes]] = json_refusal,
                 declared_at_once: bool = True) -> None:
        self.app = app
        self.limit_for = limit_for
        self.refusal = refusal
        self.declared_at_once = declared_at_once

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limit_for(scope["path"])
        declared = dict(scope.get("headers") or []).get(b"content-length")
        declared_too_large = False
        if declared is not None:
            if not declared.isdigit():
                return await self._refuse(send, 400, "bad Content-Length")
            declared_too_large = len(declared) > 12 or int(declared) > limit
            if declared_too_large and self.declared_at_once:
                return await self._refuse(send, 413, self._over(limit))
        received = 0
        started = False

        async def counted_receive():
            nonlocal received
            if declared_too_large:
                raise _TooLarge  # refused on its word, before a byte of the body is read
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
                await self._refuse(send, 413, self._over(limit))

    @staticmethod
    def _over(limit: int) -> str:
        size = f"{limit // 1024} KiB" if limit % 1024 == 0 else f"{limit} bytes"
        return f"This request is larger than the {size} this server accepts."

    async def _refuse(self, send, status: int, reason: str) -> None:
        content_type, body = self.refusal(status, reason)
        headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]
        headers += [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


def _too_large(exc: BaseException) -> bool:
    if isinstance(exc, _TooLarge):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(_too_large(e) for e in exc.exceptions)
    return exc.__cause__ is not None and _too_large(exc.__cause__)


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
