"""The console's local accounts: a name, a role and a password hash, in the store's database.

Table
- console_accounts(name, role, password_hash, created_at, updated_at): one row per person.

Passwords are hashed with scrypt (``hashlib.scrypt``, memory-hard, in the standard library), a
random salt per password, the cost written into the hash so it can be raised later without
invalidating old hashes. ``gridbus console user add NAME --role ROLE`` writes a row; the console
reads the row on every request, so a changed role or a removed account takes effect at once.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
import re
import time
from dataclasses import dataclass

from gridbus.workers.store.db import Database

#: The roles, weakest first: a viewer reads; an operator also replays and edits; an admin also
#: purges, restores and changes retention.
ROLES = ("viewer", "operator", "admin")

#: A user name: what an audit row and a replayed copy's ``x-gridbus-replayed-by`` carry.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")

MIN_PASSWORD_CHARS = 12

#: scrypt cost: n=2**14, r=8 (16 MiB, about 50 ms here), as OWASP's minimum recommends.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
_SCHEME = "scrypt"


class AccountError(ValueError):
    """An account that cannot be written as asked: the message says why."""


@dataclass(frozen=True)
class Account:
    name: str
    role: str

    def may(self, role: str) -> bool:
        """True when this account's role is ``role`` or a stronger one."""
        return ROLES.index(self.role) >= ROLES.index(role)


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$salt$hash`` (base64): everything ``password_matches`` needs."""
    salt = os.urandom(16)
    digest = _scrypt(password, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    return "$".join((_SCHEME, str(_SCRYPT_N), str(_SCRYPT_R), str(_SCRYPT_P), _b64(salt), _b64(digest)))


def password_matches(password: str, stored: str) -> bool:
    """Whether ``password`` is the one ``stored`` was made from (compared in constant time)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != _SCHEME:
            return False
        expected = base64.b64decode(digest)
        actual = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=32)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@functools.cache
def _dummy_hash() -> str:
    """Checked against when a name is unknown, so a login takes as long for a wrong name as for a
    wrong password."""
    return hash_password(base64.b64encode(os.urandom(12)).decode())


class Accounts:
    SCHEMA = (
        """CREATE TABLE IF NOT EXISTS console_accounts (
            name TEXT PRIMARY KEY, role TEXT NOT NULL, password_hash TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL)""",
    )

    def __init__(self, db: Database):
        self._db = db
        db.create_tables(self.SCHEMA)

    def add(self, name: str, role: str, password: str) -> bool:
        """Create the account, or give an existing one this role and password; True if new."""
        _check(name, role, password)
        now = time.time()
        with self._db.transaction() as cur:
            cur.execute(self._db.sql("SELECT 1 FROM console_accounts WHERE name = {p}"), (name,))
            existed = cur.fetchone() is not None
            cur.execute(
                self._db.sql(
                    "INSERT INTO console_accounts (name, role, password_hash, created_at, updated_at) "
                    "VALUES ({p}, {p}, {p}, {p}, {p}) ON CONFLICT (name) DO UPDATE SET role = excluded.role, "
                    "password_hash = excluded.password_hash, updated_at = excluded.updated_at"
                ),
                (name, role, hash_password(password), now, now),
            )
        return not existed

    def remove(self, name: str) -> bool:
        with self._db.transaction() as cur:
            cur.execute(self._db.sql("DELETE FROM console_accounts WHERE name = {p}"), (name,))
            return cur.rowcount > 0

    def get(self, name: str) -> Account | None:
        rows = self._db.query("SELECT name, role FROM console_accounts WHERE name = {p}", (name,))
        return Account(*rows[0]) if rows and rows[0][1] in ROLES else None

    def all(self) -> list[Account]:
        return [Account(*r) for r in self._db.query("SELECT name, role FROM console_accounts ORDER BY name")]

    def authenticate(self, name: str, password: str) -> Account | None:
        """The account when ``password`` is its password; None otherwise (unknown name included)."""
        rows = self._db.query("SELECT name, role, password_hash FROM console_accounts WHERE name = {p}", (name,))
        if not rows:
            password_matches(password, _dummy_hash())
            return None
        account_name, role, stored = rows[0]
        if not password_matches(password, stored) or role not in ROLES:
            return None
        return Account(account_name, role)


def _check(name: str, role: str, password: str) -> None:
    if not NAME_PATTERN.fullmatch(name):
        raise AccountError(
            "a user name is 1-64 letters, digits and . _ @ -, starting with a letter or digit"
        )
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if len(password) < MIN_PASSWORD_CHARS:
        raise AccountError(f"a password has at least {MIN_PASSWORD_CHARS} characters")
