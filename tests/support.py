"""Helpers shared by the tests: a clock moved by hand, schema loading, small SQL probes."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from vidretry.db import connection, schema


class FakeClock:
    """A clock that stands still until the test moves it: the time for SQL (``now``) and
    the seconds a pacer counts (``monotonic``) move together."""

    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
        self.start = self.current

    def now(self) -> datetime:
        return self.current

    def monotonic(self) -> float:
        return (self.current - self.start).total_seconds()

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


def busiest_second(times: list[float]) -> int:
    """The most of ``times`` (seconds) that fall within one second of each other."""
    times = sorted(times)
    most, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


def apply_schema(host: str, port: int, user: str, dbname: str, **_: Any) -> None:
    """pytest-postgresql loader: migrate the template database once per session."""

    async def upgrade() -> None:
        url = f"postgresql://{user}@/{dbname}?host={host}&port={port}"
        async with await connection.connect(url) as conn:
            await schema.upgrade(conn)

    asyncio.run(upgrade())


async def scalar(conn: connection.Connection, query: str, *params: Any) -> Any:
    cur = await conn.execute(query, params)  # type: ignore[arg-type]
    row = await cur.fetchone()
    assert row is not None
    return next(iter(row.values()))


async def rows(conn: connection.Connection, query: str, *params: Any) -> list[dict[str, Any]]:
    cur = await conn.execute(query, params)  # type: ignore[arg-type]
    return [dict(r) for r in await cur.fetchall()]


async def functions_in(conn: connection.Connection, schema_name: str) -> list[str]:
    """The functions in ``schema_name``: vidretry's, each of which has its file in
    sql/functions (docs/upgrading.md), until a contract step drops it with its file."""
    found = await rows(
        conn,
        "SELECT p.proname FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace"
        " WHERE n.nspname = %s ORDER BY p.proname",
        schema_name,
    )
    return [f["proname"] for f in found]


async def unpinned_functions(conn: connection.Connection, schema_name: str) -> list[str]:
    """The functions in ``schema_name`` that do not look there alone, with the caller's
    temporary schema last (PostgreSQL's "Writing SECURITY DEFINER Functions Safely"): each
    of vidretry's says ``SET search_path FROM CURRENT`` and is installed with the search
    path pinned (docs/upgrading.md), triggers' functions too."""
    found = await rows(
        conn,
        "SELECT p.proname, p.proconfig FROM pg_proc AS p"
        " JOIN pg_namespace AS n ON n.oid = p.pronamespace"
        " WHERE n.nspname = %s ORDER BY p.proname",
        schema_name,
    )
    pinned = [f"search_path={schema_name}, pg_temp"]
    return [f["proname"] for f in found if f["proconfig"] != pinned]


def sync_url_connect(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url, autocommit=True)


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], *, within: float, every: float = 0.05
) -> bool:
    """Poll ``condition`` until it holds (True) or ``within`` seconds pass (False): tests
    wait for what they need, never for a fixed time."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return True
        if asyncio.get_running_loop().time() >= deadline:
            return False
        await asyncio.sleep(every)
