"""Connections, the named SQL statements in ``sql/``, and schema migrations."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import re
import secrets
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any, LiteralString, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.rows import DictRow, args_row, dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from vidretry import backoff
from vidretry.errors import DatabaseUnavailable, SchemaError

log = logging.getLogger("vidretry.db")

Connection = psycopg.AsyncConnection[DictRow]
Params = Mapping[str, Any]
T = TypeVar("T")

JOBS_CHANNEL = "vidretry_jobs"
OUTBOX_CHANNEL = "vidretry_outbox"

_NAME_LINE = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
_MIGRATION_FILE = re.compile(r"^(\d{4})_(\w+)\.sql$")
# Serialises concurrent `db upgrade` runs; any constant works, this one spells "vidretry".
_MIGRATION_LOCK = 0x7669647265747279


def _sql_dir(kind: str) -> Traversable:
    """``sql/<kind>``: inside the package when installed from a wheel, beside it in a
    checkout (an editable install)."""
    packaged = resources.files("vidretry") / "sql"
    if packaged.is_dir():
        return packaged / kind
    return resources.files("vidretry").joinpath("..", "sql", kind)


@cache
def queries() -> Mapping[str, LiteralString]:
    """Every ``-- name: x`` block of ``sql/queries/*.sql``, keyed by name, loaded once."""
    found: dict[str, LiteralString] = {}
    for entry in sorted(_sql_dir("queries").iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        text = entry.read_text(encoding="utf-8")
        parts = _NAME_LINE.split(text)
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            if name in found:
                raise RuntimeError(f"SQL statement {name!r} is defined twice")
            # Our own files, shipped with the package: never built from input.
            found[name] = cast(LiteralString, body.strip().rstrip(";"))
    return found


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: LiteralString


@cache
def migrations() -> tuple[Migration, ...]:
    found = []
    for entry in _sql_dir("migrations").iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match:
            sql: LiteralString = entry.read_text(encoding="utf-8")
            found.append(Migration(int(match[1]), match[2], sql))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise RuntimeError("migration versions must be 1, 2, 3, ... without gaps")
    return tuple(found)


def latest_version() -> int:
    return migrations()[-1].version


def redact_url(url: str) -> str:
    """The URL with any password replaced, fit for messages and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable database url>"
    if parts.password is None:
        return re.sub(r"password=\S+", "password=***", url)
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def unavailable(url: str, exc: BaseException) -> DatabaseUnavailable:
    """A one-line error for a database that cannot be reached, without its password."""
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "password" in reason.lower() and "authentication" not in reason.lower():
        reason = "connection refused by the server"
    return DatabaseUnavailable(f"database unreachable at {redact_url(url)}: {reason}")


def _prepare_threshold(prepare: bool) -> int | None:
    # psycopg prepares a statement on the server after its fifth run on a connection. Behind
    # a transaction pooler (PgBouncer before 1.21, or without max_prepared_statements) the
    # next transaction may run on another server connection, which lacks it:
    # [database] prepare = false turns server-side preparing off.
    return 5 if prepare else None


async def connect(url: str, *, autocommit: bool = True, prepare: bool = True) -> Connection:
    """Open one connection; a database that is down becomes ``DatabaseUnavailable``."""
    try:
        return await psycopg.AsyncConnection.connect(
            url,
            autocommit=autocommit,
            row_factory=dict_row,
            connect_timeout=5,
            prepare_threshold=_prepare_threshold(prepare),
        )
    except psycopg.OperationalError as exc:
        raise unavailable(url, exc) from None


@asynccontextmanager
async def open_pool(
    url: str, *, max_size: int, prepare: bool = True
) -> AsyncIterator[AsyncConnectionPool[Connection]]:
    """A pool for a long-running process: it replaces connections a database restart broke.

    Checks the schema first, on one plain connection, so a down database or an old schema
    gives a clear error instead of a pool timeout.
    """
    conn = await connect(url, prepare=prepare)
    async with conn:
        await check_schema(conn)
    pool = AsyncConnectionPool(
        url,
        min_size=1,
        max_size=max_size,
        open=False,
        connection_class=psycopg.AsyncConnection[DictRow],
        kwargs={
            "autocommit": True,
            "row_factory": dict_row,
            "connect_timeout": 5,
            "prepare_threshold": _prepare_threshold(prepare),
        },
        name="vidretry",
    )
    try:
        await pool.open(wait=True, timeout=10)
    except PoolTimeout as exc:
        raise unavailable(url, exc) from None
    try:
        yield pool
    finally:
        await pool.close()


async def execute(conn: Connection, name: str, params: Params) -> None:
    await conn.execute(queries()[name], params)


async def fetch_one(conn: Connection, name: str, params: Params) -> DictRow | None:
    cur = await conn.execute(queries()[name], params)
    return await cur.fetchone()


async def fetch_all(conn: Connection, name: str, params: Params) -> list[DictRow]:
    cur = await conn.execute(queries()[name], params)
    return await cur.fetchall()


async def fetch_records(conn: Connection, name: str, params: Params, record: type[T]) -> list[T]:
    """Rows as instances of the dataclass ``record``, whose fields are the statement's
    columns in the same order. Built positionally (cheaper than by keyword on a claim's
    hot path); the order is checked on a statement's first use."""
    async with conn.cursor(row_factory=args_row(record)) as cur:
        await cur.execute(queries()[name], params)
        if (name, record) not in _checked_records:
            _check_columns(name, cur.description or [], record)
            _checked_records.add((name, record))
        return await cur.fetchall()


_checked_records: set[tuple[str, type[Any]]] = set()


def _check_columns(name: str, columns: Sequence[psycopg.Column], record: type[Any]) -> None:
    got = [column.name for column in columns]
    want = [field.name for field in dataclasses.fields(record)]
    if got != want:
        raise RuntimeError(f"statement {name} returns {got}, but {record.__name__} has {want}")


async def schema_version(conn: Connection) -> int:
    cur = await conn.execute("SELECT to_regclass('vidretry_migrations') IS NOT NULL AS present")
    row = await cur.fetchone()
    if row is None or not row["present"]:
        return 0
    cur = await conn.execute("SELECT coalesce(max(version), 0) AS version FROM vidretry_migrations")
    row = await cur.fetchone()
    return int(row["version"]) if row else 0


async def upgrade(conn: Connection) -> list[int]:
    """Apply the migrations the database lacks, each in its own transaction; return them.

    Safe to run concurrently and repeatedly. A database newer than this code is an error.
    """
    applied: list[int] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS vidretry_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        current = await schema_version(conn)
        if current > latest_version():
            raise SchemaError(
                f"database schema is at version {current}, newer than this vidretry "
                f"(knows up to {latest_version()}): upgrade vidretry"
            )
        for migration in migrations():
            if migration.version <= current:
                continue
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO vidretry_migrations (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
            applied.append(migration.version)
    return applied


async def check_schema(conn: Connection) -> None:
    """Refuse to run against a schema other than the one this code was written for."""
    current = await schema_version(conn)
    if current < latest_version():
        raise SchemaError(
            f"database schema is at version {current}, this vidretry needs "
            f"{latest_version()}: run `vidretry db upgrade`"
        )
    if current > latest_version():
        raise SchemaError(
            f"database schema is at version {current}, newer than this vidretry "
            f"(knows up to {latest_version()}): upgrade vidretry"
        )


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message, for a log line."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


async def listen(
    url: str, channel: str, wake: asyncio.Event, listening: asyncio.Event, rng: random.Random
) -> None:
    """LISTEN on ``channel`` and set ``wake`` on every notification, until ``listening`` is
    cleared (checked every second, so the connection is closed cleanly, never mid-query).

    The first time it listens it checks that notifications arrive at all: a transaction
    pooler (PgBouncer in transaction mode) accepts LISTEN but hands the server connection to
    other clients, so nothing would ever arrive. Then it says so once and returns: the
    process wakes by polling alone. ``[database] listen_url`` gives LISTEN a direct
    connection instead."""
    delay = ReconnectDelay(rng)
    checked = False
    while listening.is_set():
        try:
            conn = await psycopg.AsyncConnection.connect(url, autocommit=True, connect_timeout=5)
            async with conn:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                delay.reset()
                wake.set()  # whatever was sent while we were away is in the table: look
                if not checked:
                    if not await _notifications_arrive(conn, url, channel, wake):
                        log.warning(
                            "LISTEN on %s receives no notifications (a transaction pooler such "
                            "as PgBouncer?): waking by polling alone; set [database] "
                            "listen_url to a direct connection for instant wake-ups",
                            redact_url(url),
                        )
                        return
                    checked = True
                while listening.is_set():
                    async for _ in conn.notifies(timeout=1.0):
                        wake.set()
        except psycopg.Error as exc:
            seconds = delay.next()
            log.warning(
                "listener on %s down (%s); polling until it is back", channel, one_line(exc)
            )
            await asyncio.sleep(seconds)


LISTEN_CHECK_SECONDS = 5.0


async def _notifications_arrive(
    conn: psycopg.AsyncConnection[Any], url: str, channel: str, wake: asyncio.Event
) -> bool:
    """Send a notification from a second connection and wait for it on ``conn``."""
    token = f"vidretry-listen-check:{secrets.token_hex(8)}"
    async with await psycopg.AsyncConnection.connect(
        url, autocommit=True, connect_timeout=5, prepare_threshold=None
    ) as other:
        await other.execute("SELECT pg_notify(%s, %s)", (channel, token))
    deadline = time.monotonic() + LISTEN_CHECK_SECONDS
    while (left := deadline - time.monotonic()) > 0:
        async for notify in conn.notifies(timeout=left):
            wake.set()
            if notify.payload == token:
                return True
    return False


class ReconnectDelay:
    """Reconnect delays: 0.5 s doubling to 30 s, jittered."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.attempt = 0

    def next(self) -> float:
        self.attempt += 1
        return backoff.jittered(backoff.exponential(self.attempt, 0.5, 30.0), self.rng)

    def reset(self) -> None:
        self.attempt = 0
