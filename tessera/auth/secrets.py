"""Password hashing (argon2id) and bearer-token generation / hashing.

Passwords are low-entropy, so they get a slow, memory-hard KDF. Tokens are 256-bit random
values: SHA-256 is enough to store them and keeps per-request verification cheap.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from tessera.index.errors import InvalidValue

API_KEY_PREFIX = "tsk_"
SESSION_PREFIX = "tss_"
# Short-lived, read-only tokens handed to a viewer (POST {api}/viewer-token).
VIEWER_PREFIX = "tsv_"

_hasher = PasswordHasher()
# Checked against when a user does not exist, so "no such user" takes as long as "wrong
# password" (user names cannot be probed by timing).
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    if len(password) < 8:
        raise InvalidValue("a password has at least 8 characters")
    return _hasher.hash(password)


class _VerifiedCache:
    """HTTP Basic sends the password with every request; an argon2 check per frame would
    dominate. A successful check is remembered for a short while, keyed by the stored hash
    and a SHA-256 of the presented password (a changed password invalidates it)."""

    def __init__(self, ttl_seconds: float = 60.0, size: int = 1024) -> None:
        self.ttl = ttl_seconds
        self.size = size
        self.entries: dict[bytes, float] = {}
        self.lock = threading.Lock()

    def key(self, stored_hash: str, password: str) -> bytes:
        return hashlib.sha256(stored_hash.encode() + b"\0" + password.encode()).digest()

    def hit(self, key: bytes) -> bool:
        with self.lock:
            at = self.entries.get(key)
            return at is not None and time.monotonic() - at < self.ttl

    def remember(self, key: bytes) -> None:
        with self.lock:
            if len(self.entries) >= self.size:
                self.entries.clear()
            self.entries[key] = time.monotonic()


_verified = _VerifiedCache()


def verify_password(stored_hash: str | None, password: str) -> bool:
    if not stored_hash:
        _burn(password)
        return False
    key = _verified.key(stored_hash, password)
    if _verified.hit(key):
        return True
    try:
        _hasher.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    _verified.remember(key)
    return True


def _burn(password: str) -> None:
    try:
        _hasher.verify(_DUMMY_HASH, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        pass


def new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
