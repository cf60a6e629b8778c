"""One heartbeat per process for every lease it holds: the worker's jobs, the notifier's sends.

Every half ``heartbeat_seconds`` one statement extends the lease of each item not extended
for that long, so no lease goes longer than ``heartbeat_seconds`` without a beat. An item
whose lease turns out to be lost has its task cancelled. Items that finish within half a
beat cost no query at all, and a process holding nothing runs no heartbeat.

The same heartbeat serves both tables: only its statement is each table's own (``JOBS``,
``NOTIFICATIONS``), fenced by the state a leased row is in and by its lease token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar
from uuid import UUID

from psycopg_pool import AsyncConnectionPool

from vidretry.clock import Clock
from vidretry.db.connection import Connection, fetch_all
from vidretry.db.redact import one_line
from vidretry.db.transient import TRANSIENT_DB_ERRORS
from vidretry.eventloop import within

log = logging.getLogger("vidretry.leases")


# The heartbeat statement of each leased table: sql/queries/jobs.sql, sql/queries/outbox.sql.
JOBS = "extend_leases"
NOTIFICATIONS = "extend_notification_leases"


class Leased(Protocol):
    @property
    def id(self) -> int: ...

    @property
    def lease_token(self) -> UUID: ...


Item = TypeVar("Item", bound=Leased)


async def extend(
    conn: Connection,
    statement: str,
    held: Sequence[Leased],
    *,
    lease_seconds: float,
    now: datetime | None,
) -> set[int]:
    """One beat: ``statement`` (``JOBS`` or ``NOTIFICATIONS``) extends the leases of
    ``held`` in one statement; returns the ids whose lease still held (the others were lost:
    rescued, and perhaps taken over)."""
    if not held:
        return set()
    params = {
        "ids": [item.id for item in held],
        "tokens": [item.lease_token for item in held],
        "lease_seconds": lease_seconds,
        "now": now,
    }
    return {row["id"] for row in await fetch_all(conn, statement, params)}


class Held(Generic[Item]):
    """A leased item as the heartbeat sees it, with the task working on it."""

    __slots__ = ("beat_at", "item", "lost", "task")

    def __init__(self, item: Item, task: asyncio.Task[Any], now: float) -> None:
        self.item = item
        self.task = task
        self.beat_at = now  # when the lease was last known to be extended
        self.lost = False

    def cancelled_for_its_lease(self) -> bool:
        """In an ``except CancelledError``: True if only the heartbeat cancelled the task
        (the lease is gone), False if someone else did (a shutdown) too."""
        return self.lost and self.task.uncancel() == 0


class LeaseKeeper(Generic[Item]):
    """Keeps the leases of the items being worked on alive.

    Each beat runs ``statement`` (``extend``) on a connection of ``pool``. A lease not
    confirmed for ``lease_seconds`` (counted from before the statement that last
    extended it was sent) counts as lost too, on time: whether the database is down or the
    statement hangs on a dead link, someone else may take the item over from then on, so
    the work on it stops then, not when the statement gives up.
    """

    def __init__(
        self,
        pool: AsyncConnectionPool[Connection],
        statement: str,
        *,
        heartbeat_seconds: float,
        lease_seconds: float,
        clock: Clock,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pool = pool
        self.statement = statement
        self.clock = clock
        self.heartbeat_seconds = heartbeat_seconds
        self.lease_seconds = lease_seconds
        # Let go a margin before the lease ends (a tenth, at most 1 s), as a leader steps
        # down before its term: a timer that fires late must not overlap the rescuer.
        self.give_up_after = lease_seconds - min(lease_seconds / 10, 1.0)
        self.monotonic = monotonic
        self.held: dict[int, Held[Item]] = {}
        self.beater: asyncio.Task[None] | None = None

    def hold(self, item: Item) -> Held[Item]:
        """Keep ``item``'s lease alive while the current task works on it."""
        task = asyncio.current_task()
        assert task is not None
        self.held[item.id] = held = Held(item, task, self.monotonic())
        if self.beater is None or self.beater.done():
            self.beater = asyncio.create_task(self._beat())
        return held

    def release(self, held: Held[Item]) -> None:
        if self.held.get(held.item.id) is held:
            del self.held[held.item.id]

    async def stop(self) -> None:
        if self.beater is not None:
            self.beater.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.beater
            self.beater = None

    async def _beat(self) -> None:
        half = self.heartbeat_seconds / 2
        while self.held:
            # Wake for the next beat, or sooner when a lease runs out before it: a lease is
            # let go on time whether or not a beat is under way.
            ends = min(h.beat_at for h in self.held.values()) + self.give_up_after
            await asyncio.sleep(max(0.0, min(half, ends - self.monotonic())))
            started = self.monotonic()
            self._lose([h for h in self.held.values() if started - h.beat_at >= self.give_up_after])
            due = [h for h in self.held.values() if not h.lost and started - h.beat_at >= half]
            if not due:
                continue
            try:
                alive = await self._extend_before_loss(due, started)
            except (TimeoutError, *TRANSIENT_DB_ERRORS) as exc:
                # Not known to be lost: keep working, try again at the next beat, unless the
                # lease has run out meanwhile.
                reason = one_line(exc) if str(exc) else "no answer before a lease ran out"
                log.warning("heartbeat failed, will try again: %s", reason)
                now = self.monotonic()
                self._lose([h for h in due if now - h.beat_at >= self.give_up_after])
                continue
            for held in due:
                if held.item.id in alive:
                    held.beat_at = started
            self._lose([h for h in due if h.item.id not in alive])

    async def _extend_before_loss(self, due: list[Held[Item]], started: float) -> set[int]:
        """``extend`` for ``due``, or ``TimeoutError`` the moment the first of their leases
        runs out (the statement is left to end in the background)."""
        left = min(h.beat_at for h in due) + self.give_up_after - started
        return await within(left, self._extend([h.item for h in due]))

    async def _extend(self, items: Sequence[Item]) -> set[int]:
        async with self.pool.connection() as conn:
            return await extend(
                conn, self.statement, items, lease_seconds=self.lease_seconds,
                now=self.clock.now(),
            )  # fmt: skip

    def _lose(self, lost: list[Held[Item]]) -> None:
        for held in lost:
            if self.held.get(held.item.id) is held and not held.lost:  # still worked on
                held.lost = True
                held.task.cancel()
