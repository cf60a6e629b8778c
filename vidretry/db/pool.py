"""A daemon's connection pool, opened once the schema is known to be the right one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from vidretry.db.connection import Connection, connect, prepare_threshold
from vidretry.db.deadlink import ANSWER_SECONDS, WatchedConnection, dead_link_params
from vidretry.db.redact import unavailable
from vidretry.db.schema import check_schema


@asynccontextmanager
async def open_pool(
    url: str, *, max_size: int, answer_seconds: float = ANSWER_SECONDS, prepare: bool = True
) -> AsyncIterator[AsyncConnectionPool[Connection]]:
    """A pool for a long-running process: it replaces connections a database restart broke,
    and those found dead because a statement got no answer within ``answer_seconds``
    (vidretry.db.deadlink).

    Checks the schema first, on one plain connection, so a down database or an old schema
    gives a clear error instead of a pool timeout.
    """
    conn = await connect(url, prepare=prepare)
    async with conn:
        await check_schema(conn)

    async def watch(conn: Connection) -> None:
        assert isinstance(conn, WatchedConnection)
        conn.answer_seconds = answer_seconds

    pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
        url,
        min_size=1,
        max_size=max_size,
        open=False,
        connection_class=WatchedConnection,
        configure=watch,
        kwargs={
            **dead_link_params(url, answer_seconds),
            "autocommit": True,
            "row_factory": dict_row,
            "connect_timeout": 5,
            "prepare_threshold": prepare_threshold(prepare),
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
