"""Surviving an outage of the database: the errors a process rides out (the pool reconnects,
the caller backs off and carries on), and a change run through such an outage.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from vidretry.db.connection import Connection
from vidretry.db.listen import ReconnectDelay
from vidretry.db.redact import one_line

log = logging.getLogger("vidretry.loop")

T = TypeVar("T")

# Database errors a process survives: the pool reconnects, the caller backs off and carries on.
TRANSIENT_DB_ERRORS = (psycopg.OperationalError, PoolTimeout)


async def through_outage(
    pool: AsyncConnectionPool[Connection],
    change: Callable[[Connection], Awaitable[T]],
    *,
    within: float,
    rng: random.Random,
) -> T:
    """Run ``change`` on a pooled connection, retrying through a database outage for up to
    ``within`` seconds (then the last error is raised).

    Recording an outcome must survive a database restart: giving up would leave the row
    leased, and after the lease it would be done again (a job re-run, a message re-sent).
    A retry after the lease is harmless: the statement is fenced by the lease token.
    """
    deadline = time.monotonic() + within
    delay = ReconnectDelay(rng)
    while True:
        try:
            async with pool.connection() as conn:
                return await change(conn)
        except TRANSIENT_DB_ERRORS as exc:
            seconds = delay.next()
            if time.monotonic() + seconds > deadline:
                raise
            log.warning("database unavailable (%s); retrying in %.1fs", one_line(exc), seconds)
            await asyncio.sleep(seconds)
