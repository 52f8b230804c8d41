"""Tokens, their hashes, and the signed values that guard forms and the admin session.

Invite and admin tokens, and admin session nonces, are 256-bit `secrets.token_urlsafe`
strings; the database keeps only their SHA-256 (enough for random tokens: there is nothing to
brute-force), so a copy of it lets no one impersonate a rater or the admin. Form tokens are
HMACs under the study's secret over what the form is for (`answer|rater|position`): a form
can't be forged, replayed for another rater, or reused for a later scenario, and it survives a
server restart with no session store.

Every credential a client sends is untrusted text: anything that is not shaped like a token
is refused before it is hashed or compared, and comparisons are of bytes (`hmac.compare_digest`
raises on a `str` with non-ASCII characters), so a malformed credential is a refusal, never an
error.
"""

from __future__ import annotations

import logging
import re

from factpatch.core.web import (
    TOKEN_BYTES,
    new_secret,
    new_token,
    same,
    sign,
    token_hash,
    verify,
)

__all__ = ["TOKEN_BYTES", "new_secret", "new_token", "same", "sign", "token_hash", "verify"]  # shared with serve
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{16,128}")  # looser than token_urlsafe(32); rejects junk early


def plausible_token(token: str) -> bool:
    return TOKEN_PATTERN.fullmatch(token) is not None


def answer_form_token(secret: bytes, rater_id: int, position: int) -> str:
    return sign(secret, "answer", rater_id, position)


def start_form_token(secret: bytes, rater_id: int) -> str:
    return sign(secret, "start", rater_id)


def logout_form_token(secret: bytes, session_sha256: str) -> str:
    """Sign-out is signed for the one session it ends."""
    return sign(secret, "logout", session_sha256)


def admin_token_ok(given: object, admin_token_sha256: str) -> bool:
    return isinstance(given, str) and plausible_token(given) and same(token_hash(given), admin_token_sha256)


INVITE_IN_PATH = re.compile(r"(/r/)([A-Za-z0-9_-]{6})[A-Za-z0-9_-]*")


class RedactInvites(logging.Filter):
    """Cut invite tokens in logged paths to six characters: enough to tell raters apart in a log,
    not enough to open their page."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(INVITE_IN_PATH.sub(r"\1\2…", a) if isinstance(a, str) else a for a in record.args)
        return True
