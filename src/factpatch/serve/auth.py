"""Who may call the server, and the checks that keep a web page elsewhere from calling it for them.

* Bound to loopback without a token: anyone on this machine may call (as with any local tool).
  The `Host` header must name a loopback address, so a web page can't reach the server through
  DNS rebinding.
* With `--token` (required off loopback): every API call carries `Authorization: Bearer <token>`;
  the page signs in once through a form and gets an HttpOnly, SameSite=Strict session cookie
  (an HMAC under the server's secret, not the token).
* Cross-site requests: a POST or DELETE whose `Origin` is another site is refused. Requests
  made by the page (cookie, or no credentials at all) must also carry the page's CSRF token, in
  the `X-CSRF-Token` header or a `csrf` form field — except JSON bodies from scripts on loopback,
  which a browser cannot send cross-site without a CORS preflight this server never grants.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..core.web import is_loopback, sign, token_hash, verify

SESSION_COOKIE = "factpatch_lab"
LOGIN_CSRF_COOKIE = "factpatch_lab_login"


@dataclass(frozen=True)
class Access:
    secret: bytes
    token_sha256: str | None  # None: loopback, no token
    loopback: bool

    @property
    def open(self) -> bool:
        return self.token_sha256 is None

    def session_value(self) -> str:
        return sign(self.secret, "lab-session", self.token_sha256 or "")

    def csrf_token(self) -> str:
        return sign(self.secret, "lab-csrf", self.token_sha256 or "")

    def token_ok(self, given: str | None) -> bool:
        return (self.token_sha256 is not None and given is not None
                and hmac.compare_digest(token_hash(given), self.token_sha256))

    def bearer(self, headers) -> str | None:
        scheme, _, value = (headers.get("authorization") or "").partition(" ")
        return value.strip() if scheme.lower() == "bearer" else None

    def signed_in(self, cookies) -> bool:
        cookie = cookies.get(SESSION_COOKIE)
        return cookie is not None and secrets.compare_digest(cookie, self.session_value())

    def host_ok(self, headers) -> bool:
        """On loopback without a token, only loopback names may be in Host (DNS rebinding)."""
        if not (self.open and self.loopback):
            return True
        name = urlsplit("//" + (headers.get("host") or "")).hostname or ""
        return is_loopback(name)

    @staticmethod
    def origin_ok(headers) -> bool:
        """No Origin (not a browser, or same-origin GET), or this server's own."""
        origin = headers.get("origin")
        return origin is None or urlsplit(origin).netloc == (headers.get("host") or "")

    def csrf_ok(self, headers, form_value: str | None = None) -> bool:
        return verify(self.secret, headers.get("x-csrf-token") or form_value, "lab-csrf", self.token_sha256 or "")
