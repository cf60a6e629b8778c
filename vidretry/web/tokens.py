"""The console's tokens: long random secrets, kept in PostgreSQL only as SHA-256 hashes.

A token is 32 random bytes (256 bits) shown once, URL-safe base64, with a ``vrt_`` prefix so
a leaked one is recognisable in a log or a commit. A secret that random needs no slow hash:
nobody can guess one to test against the hashes, and a slow hash would cost every API call.
"""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
from dataclasses import dataclass

import psycopg

from vidretry.db.connection import Connection, fetch_all, fetch_one
from vidretry.errors import ConfigError, RefusedError

PREFIX = "vrt_"
NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


class Role(enum.StrEnum):
    VIEWER = "viewer"  # reads everything, changes nothing
    OPERATOR = "operator"  # retries, cancels, pauses, resumes, sends again
    # Another program (a bot with its own framework): asks for videos, and retries and
    # cancels on behalf of a Telegram user with the button's rules; nothing else.
    SERVICE = "service"


@dataclass(frozen=True)
class Caller:
    """Who a request comes from: a token's name and role."""

    name: str
    role: Role

    @property
    def actor(self) -> str:
        """How the history records what they do."""
        return f"web:{self.name}"

    @property
    def may_act(self) -> bool:
        """An operator's changes: retry or cancel any asset, pause, resume, send again."""
        return self.role is Role.OPERATOR

    @property
    def may_ask(self) -> bool:
        """A service's: ask for a video, and retry or cancel as a Telegram user would."""
        return self.role in (Role.OPERATOR, Role.SERVICE)


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.strip().encode("utf-8", "surrogatepass")).digest()


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise ConfigError(
            f"token name must be 1 to 64 letters, digits or . _ @ -, got {name[:70]!r}"
        )
    return name


async def add(conn: Connection, name: str, role: Role) -> str:
    """Make a token for ``name``; the token itself (only its hash is kept)."""
    token = new_token()
    try:
        await fetch_one(
            conn,
            "add_web_token",
            {"name": check_name(name), "role": role, "hash": token_hash(token)},
        )
    except psycopg.errors.UniqueViolation:
        raise RefusedError(f"a token named {name} exists: revoke it first") from None
    return token


async def revoke(conn: Connection, name: str) -> None:
    if await fetch_one(conn, "revoke_web_token", {"name": name}) is None:
        raise RefusedError(f"no token named {name}")


async def listed(conn: Connection) -> list[dict[str, object]]:
    return [dict(row) for row in await fetch_all(conn, "web_tokens", {})]


async def caller_for_hash(conn: Connection, digest: bytes) -> Caller | None:
    row = await fetch_one(conn, "web_token_by_hash", {"hash": digest})
    return Caller(row["name"], Role(row["role"])) if row else None
