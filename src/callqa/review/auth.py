"""Reviewer log-in: argon2 password hashes, sessions in signed cookies, CSRF tokens.

The session cookie holds only the username, signed (itsdangerous) with a secret kept in a file
the server generates on first use (`review.secret_file`, mode 600, never committed). The CSRF
token of a session is an HMAC of the session's nonce, sent in every form and checked on POST.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature, URLSafeTimedSerializer

_HASHER = PasswordHasher()
# verify_password checks this for unknown users, so a wrong name costs as long as a wrong
# password and response times do not tell which names exist.
_DUMMY_HASH = _HASHER.hash("not-a-password")
SESSION_COOKIE = "callqa_review"
MIN_PASSWORD_LEN = 8


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LEN:
        raise ValueError(f"password: at least {MIN_PASSWORD_LEN} characters")
    return _HASHER.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def load_secret(path: str | Path) -> bytes:
    """The signing secret in `path`, made (32 random bytes, mode 600) when missing."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


class Sessions:
    """Signed, time-limited session cookies: {"u": username, "n": nonce}."""

    def __init__(self, secret: bytes, max_age_s: int):
        self.max_age_s = max_age_s
        self._signer = URLSafeTimedSerializer(secret, salt="callqa-review-session")
        self._csrf_key = hashlib.sha256(secret + b"csrf").digest()

    def make(self, username: str) -> str:
        return self._signer.dumps({"u": username, "n": secrets.token_hex(16)})

    def read(self, cookie: str | None) -> dict | None:
        """The session data, or None for a missing, forged or expired cookie."""
        if not cookie:
            return None
        try:
            data = self._signer.loads(cookie, max_age=self.max_age_s)
        except BadSignature:  # SignatureExpired is a BadSignature
            return None
        return data if isinstance(data, dict) and "u" in data and "n" in data else None

    def csrf_token(self, session: dict) -> str:
        return hmac.new(self._csrf_key, session["n"].encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session: dict | None, token: str | None) -> bool:
        return bool(session and token) and hmac.compare_digest(self.csrf_token(session), token)


def login_csrf(secret_key: bytes, nonce: str) -> str:
    """The login form's token (no session yet): an HMAC of a nonce set in a short cookie."""
    return hmac.new(secret_key, b"login:" + nonce.encode(), hashlib.sha256).hexdigest()
