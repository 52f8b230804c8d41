"""Two ASGI middlewares every request and response of the study server passes through.

- `SecurityHeaders` adds the security headers to every response the app sends, whatever made
  it: a page, a redirect, a static file, a 404 or 413 error page. (The one response that does
  not pass through user middleware is Starlette's 500, sent from outside them; the app's 500
  handler adds the same headers itself, from `SECURITY_HEADERS`.)
- `BodyLimit` refuses a request body larger than a limit with 413: at once when its
  Content-Length says so, and otherwise (chunked, or a Content-Length that lies) as soon as the
  bytes read pass it. It checks as the app reads, so nothing is read until a route asks for the
  body, and a route that checks credentials first reads nothing for a bad one.

Both are plain ASGI (no BaseHTTPMiddleware): they wrap `send` and `receive` and nothing else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SECURITY_HEADERS = {
    # Only our own files; no inline script or style, no framing, forms post back here only.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",  # invite tokens live in URLs: never leak them in a Referer
}
NO_STORE_EXCEPT = "/static/"  # pages hold tokens and answers: never cached; our own files may be


def headers_for(path: str) -> dict[str, str]:
    """The security headers a response to `path` gets."""
    return SECURITY_HEADERS if path.startswith(NO_STORE_EXCEPT) else {**SECURITY_HEADERS, "Cache-Control": "no-store"}


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = headers_for(scope.get("path", ""))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in extra.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyLimit:
    """413 for a request body over `max_bytes` (raised as an HTTPException where the app reads the
    body, so the app's own error page answers it)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def too_large(self) -> HTTPException:
        return HTTPException(413, f"This request is larger than the {self.max_bytes // 1024} KiB this server accepts.")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        # A malformed length (the server refuses most before we run) is simply not believed: bytes are counted.
        declared_too_large = declared.isascii() and declared.isdigit() and (
            len(declared) > 12 or int(declared) > self.max_bytes
        )
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            if declared_too_large:
                raise self.too_large()  # refused on its word, before a byte of the body is read
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise self.too_large()
            return message

        await self.app(scope, counting_receive, send)
