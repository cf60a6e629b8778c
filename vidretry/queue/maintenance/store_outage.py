"""The video store's outage, ridden out: a worker whose finished video the store cannot take
keeps it and tries again (after 1 s, 2 s, 4 s ... at most ``[storage] retry_max_seconds``
apart), its attempt not charged and the breaker told nothing. The outage is noted for
everybody (``store_outage``: ``vidretry status``, the console), the admins are told once it
has lasted ``[storage] alert_after_seconds``, and the next success of any worker ends it
(complete_jobs).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence

from psycopg_pool import AsyncConnectionPool

from vidretry.clock import Clock
from vidretry.db.connection import Connection, execute
from vidretry.db.listen import ReconnectDelay
from vidretry.db.redact import one_line, without_queries
from vidretry.db.transient import TRANSIENT_DB_ERRORS
from vidretry.results.base import Stored, StoreUnavailable

log = logging.getLogger("vidretry.worker")


class StoreOutageWatch:
    def __init__(
        self,
        pool: AsyncConnectionPool[Connection],
        *,
        owner: str,
        admins: Sequence[int],
        alert_after_seconds: float,
        retry_max_seconds: float,
        clock: Clock,
        rng: random.Random,
    ) -> None:
        self.pool = pool
        self.owner = owner
        self.admins = tuple(admins)
        self.alert_after_seconds = alert_after_seconds  # [storage] alert_after_seconds
        self.retry_max_seconds = retry_max_seconds  # [storage] retry_max_seconds
        self.clock = clock
        self.rng = rng

    async def through(self, job_id: int, keep: Callable[[], Awaitable[Stored]]) -> Stored:
        """``keep`` the finished video of job ``job_id``, trying again while the store cannot
        be reached. A shutdown meanwhile cancels this, and the job is handed back as any
        running job is."""
        delay: ReconnectDelay | None = None  # made when the store first fails
        failed_since: float | None = None
        while True:
            try:
                stored = await keep()
            except StoreUnavailable as exc:
                delay = delay or ReconnectDelay(self.rng)
                wait = min(delay.next(), self.retry_max_seconds)
                log.warning(
                    "job %s: video made, but the store cannot take it (%s); it is kept here, "
                    "trying again in %.1fs", job_id, without_queries(one_line(exc)), wait,
                )  # fmt: skip
                await self.note(without_queries(str(exc)))
                failed_since = failed_since or time.monotonic()
                await asyncio.sleep(wait)
                continue
            if failed_since is not None:
                log.warning(
                    "job %s: the store took the video (it could not for %.0fs)",
                    job_id, time.monotonic() - failed_since,
                )  # fmt: skip
            return stored

    async def note(self, detail: str) -> None:
        """The store is down: noted for everybody, the admins told once it lasts; the next
        success of any worker ends it (complete_jobs)."""
        params = {
            "owner": self.owner, "detail": detail[:500], "alert_after": self.alert_after_seconds,
            "admins": list(self.admins), "now": self.clock.now(),
        }  # fmt: skip
        try:
            async with self.pool.connection() as conn:
                await execute(conn, "note_store_outage_and_queue_notices", params)
        except TRANSIENT_DB_ERRORS as exc:
            log.warning("the store's outage was not recorded: %s", one_line(exc))
