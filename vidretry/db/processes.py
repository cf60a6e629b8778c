"""Which releases run: a worker, notifier or web console records itself in
``vidretry_processes`` while it runs (its role, name and release), says so again every
``REPORT_SECONDS``, and deletes its row when it stops. ``status``, the console and ``doctor``
read it (vidretry.queue.reports.releases; docs/upgrading.md).

Recording is best effort: a database that is away now is the pool's and the loops' concern,
and the next report records the process again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Literal

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from vidretry.clock import Clock
from vidretry.db.connection import Connection, execute, fetch_one
from vidretry.db.redact import one_line
from vidretry.version import __version__

log = logging.getLogger("vidretry.processes")

Role = Literal["worker", "notifier", "web"]

REPORT_SECONDS = 30.0
# How long a report may take: a process is never held up by its record (at start, the first
# report; when it stops, its last words).
WAIT_SECONDS = 2.0

_AWAY = (psycopg.Error, PoolTimeout, TimeoutError)


@contextlib.asynccontextmanager
async def recorded(
    pool: AsyncConnectionPool[Connection],
    role: Role,
    name: str,
    clock: Clock,
    *,
    release: str = __version__,
    report_seconds: float = REPORT_SECONDS,
) -> AsyncIterator[None]:
    """Record the process for as long as the block runs."""
    params: dict[str, object] = {"role": role, "name": name, "release": release}
    started: datetime | None = None

    async def report() -> None:
        nonlocal started
        async with asyncio.timeout(WAIT_SECONDS), pool.connection(WAIT_SECONDS) as conn:
            row = await fetch_one(
                conn, "record_process", {**params, "started_at": started, "now": clock.now()}
            )
            await execute(conn, "forget_lost_processes", {"now": clock.now()})
        assert row is not None
        started = row["started_at"]

    async def keep_reporting() -> None:
        said = False
        while True:
            await asyncio.sleep(report_seconds)
            try:
                await report()
                said = False
            except _AWAY as exc:
                if not said:  # once per outage: the loops say the rest
                    log.info("%s %s not recorded as running: %s", role, name, one_line(exc))
                    said = True

    with contextlib.suppress(*_AWAY):  # the first report before the process does anything
        await report()
    reporter = asyncio.create_task(keep_reporting())
    try:
        yield
    finally:
        reporter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reporter
        try:
            async with asyncio.timeout(WAIT_SECONDS), pool.connection(WAIT_SECONDS) as conn:
                await execute(conn, "forget_process", params)
        except _AWAY as exc:
            log.info("%s %s still recorded (for two minutes): %s", role, name, one_line(exc))
