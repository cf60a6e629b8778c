"""How a schema step runs while workers claim and notifiers send (docs/upgrading.md): in a
transaction whose locks wait briefly and that is tried again when they time out, or, for a
step that says ``-- transaction: no``, statement by statement — indexes built
``CONCURRENTLY`` and resumed when a build was cut short, backfills in batches."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from vidretry.db.sqlfiles import queries
from vidretry.errors import SchemaError

if TYPE_CHECKING:
    from vidretry.db.connection import Connection

# DDL waits at most this long for a table's lock, then gives up, lets the claims and sends
# queued behind it through, and tries again: a waiting ACCESS EXCLUSIVE lock stops every
# newer reader of the table too, so the wait must stay well under a second.
LOCK_TIMEOUT_MS = 200
# How long a step keeps trying to get its locks before `db upgrade` gives up (saying why);
# run again, it resumes.
LOCK_RETRY_SECONDS = 300.0

_STATEMENT_END = re.compile(r";[ \t]*$", re.MULTILINE)
CONCURRENTLY = re.compile(r"\bCONCURRENTLY\b", re.IGNORECASE)
INDEX_CONCURRENTLY = re.compile(
    r"\bCREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+IF\s+NOT\s+EXISTS\s+(?P<name>\w+)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Statement:
    sql: str
    # Preceded by the line ``-- in batches``: run again, each run a transaction, until it
    # changes no row.
    in_batches: bool


def split_statements(text: str) -> list[Statement]:
    """The statements of a step that runs outside a transaction: each ends with ``;`` at
    the end of a line (such a step has no ``$$`` bodies)."""
    found = []
    for chunk in _STATEMENT_END.split(text):
        lines = chunk.strip().splitlines()
        code = [line for line in lines if not line.lstrip().startswith("--")]
        if not "".join(code).strip():
            continue
        batches = any(line.strip() == "-- in batches" for line in lines)
        found.append(Statement("\n".join(lines), batches))
    return found


@dataclass(frozen=True)
class Online:
    """Runs a migration's SQL on ``conn`` (autocommit) without holding up the queue for
    long; a lock not had within ``retry_seconds`` of tries is a ``SchemaError``."""

    conn: Connection
    retry_seconds: float = LOCK_RETRY_SECONDS

    async def transaction(self, body: Callable[[], Awaitable[None]], *, what: str) -> None:
        """``body`` in one transaction whose locks wait at most ``LOCK_TIMEOUT_MS``; when
        one times out, the transaction is rolled back and tried again, with growing
        pauses, for up to ``retry_seconds``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_seconds
        pause = 0.05
        while True:
            try:
                async with self.conn.transaction():
                    await self.conn.execute(queries()["wait_for_locks_briefly"])
                    await body()
                return
            except psycopg.errors.LockNotAvailable:
                if loop.time() >= deadline:
                    raise SchemaError(
                        f"{what} could not get its locks in {self.retry_seconds:g} s of tries "
                        f"({LOCK_TIMEOUT_MS} ms each): a long transaction holds a table it "
                        "changes; run `vidretry db upgrade` again once it has ended (it resumes)"
                    ) from None
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2.0)

    async def run(self, statement: str, *, what: str) -> None:
        """One statement in a transaction of its own."""
        await self.transaction(lambda: self._execute(statement), what=what)

    async def run_outside(self, text: str, *, what: str) -> None:
        """A step's statements one by one, each committed on its own: an index built
        CONCURRENTLY (resumable), any other CONCURRENTLY statement as it is, a statement
        marked ``-- in batches`` until it changes no row, any other in a transaction of
        its own."""
        for statement in split_statements(text):
            index = INDEX_CONCURRENTLY.search(statement.sql)
            if index:
                await self.build_index(statement.sql, index["name"])
            elif CONCURRENTLY.search(statement.sql):  # DROP INDEX CONCURRENTLY, REINDEX ...
                await self._execute(statement.sql)
            elif statement.in_batches:
                while await self._batch(statement.sql, what=what):
                    pass
            else:
                await self.run(statement.sql, what=what)

    async def build_index(self, statement: str, name: str) -> None:
        """``CREATE INDEX CONCURRENTLY IF NOT EXISTS``, resumable: a valid index of that
        name is left alone; one a build is still making (a run whose client went away) is
        waited for; an invalid one, left by a build that failed or was cut short, is
        dropped (CONCURRENTLY too) and built again."""
        while True:
            cur = await self.conn.execute(queries()["index_state"], {"name": name})
            row = await cur.fetchone()
            if row is None:
                break
            if row["valid"]:
                return
            if not row["building"]:
                drop = sql.SQL(queries()["drop_index_concurrently"])
                await self.conn.execute(drop.format(name=sql.Identifier(name)))
                break
            await asyncio.sleep(0.5)
        await self.conn.execute(statement)

    async def _batch(self, statement: str, *, what: str) -> int:
        """One batch in a transaction of its own: how many rows it changed."""
        changed = 0

        async def body() -> None:
            nonlocal changed
            cur = await self.conn.execute(statement)
            changed = cur.rowcount

        await self.transaction(body, what=what)
        return changed

    async def _execute(self, statement: str) -> None:
        await self.conn.execute(statement)
