"""Pruning old history: ``vidretry db prune`` and a worker's background pruning.

History events and notifications in a final state older than a cut-off are deleted in
batches of ``BATCH_ROWS``, each its own short transaction that locks only the rows it
deletes, so running workers never wait on it. Assets stay (they are the record of the videos
made) unless asked for; their kept videos are deleted from the store once their rows are
gone (a store that fails leaves objects nobody points at, never a row pointing at nothing).
One process prunes at a time (an advisory lock).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool

from vidretry.clock import Clock
from vidretry.config import DEFAULT_PRUNE_PACE as DEFAULT_PACE
from vidretry.db.connection import Connection, execute, fetch_one
from vidretry.db.redact import one_line
from vidretry.db.transient import TRANSIENT_DB_ERRORS
from vidretry.errors import RefusedError, VidretryError
from vidretry.results.keeping import Results

log = logging.getLogger("vidretry.retention")

# Rows per statement: big enough that a million rows take a few hundred round trips, small
# enough that each transaction holds its row locks for milliseconds.
BATCH_ROWS = 5000
# After each batch, rest DEFAULT_PACE times as long as it took (vidretry.config).
# The advisory lock that keeps pruning to one process ("vidretrz": next to db upgrade's).
PRUNE_LOCK = 0x766964726574727A
_STATEMENTS = {
    "events": "prune_events",
    "notifications": "prune_notifications",
    "assets": "prune_assets",
}


@dataclass(frozen=True)
class Counts:
    events: int = 0
    notifications: int = 0
    assets: int = 0
    # The pruned assets' videos deleted from the store, and those it failed to delete (with
    # the first error): the rows are gone, the objects stay until deleted by hand.
    videos: int = 0
    videos_left: int = 0
    store_error: str | None = None

    @property
    def total(self) -> int:
        return self.events + self.notifications + self.assets


async def cutoff(conn: Connection, older_than_seconds: float, now: datetime | None) -> datetime:
    row = await fetch_one(conn, "prune_cutoff", {"seconds": older_than_seconds, "now": now})
    assert row is not None
    return row["before"]  # type: ignore[no-any-return]


async def prunable(conn: Connection, before: datetime, *, assets: bool) -> Counts:
    """What a prune would delete; changes nothing."""
    row = await fetch_one(conn, "prunable", {"before": before})
    assert row is not None
    return Counts(row["events"], row["notifications"], row["assets"] if assets else 0)


async def prune(
    conn: Connection,
    before: datetime,
    *,
    assets: bool,
    batch: int = BATCH_ROWS,
    pace: float = DEFAULT_PACE,
    on_progress: Callable[[int], None] = lambda rows: None,
    monotonic: Callable[[], float] = time.monotonic,
    by: str = "vidretry",
    results: Results | None = None,
) -> Counts:
    """Delete what is older than ``before``, batch by batch; ``RefusedError`` if another
    process is pruning. ``conn`` must be in autocommit mode (each batch commits). ``pace``
    rests that many times a batch's duration after it, leaving the database to the workers
    (3: a quarter of the time pruning; 0: as fast as it can). With ``results``, the pruned
    assets' videos vidretry kept are deleted from it."""
    bounds = await fetch_one(conn, "prune_range", {"before": before})
    assert bounds is not None
    done = {"events": 0, "notifications": 0, "assets": 0, "videos": 0, "videos_left": 0}
    store_errors: list[str] = []

    async def step(what: str, after: int = 0, upto: int = 0) -> int:
        started = monotonic()
        row = await _batch(conn, what, before, batch, after=after, upto=upto)
        if row is None:
            raise RefusedError("another process is pruning right now: try again later")
        deleted = int(row["deleted"])
        done[what] += deleted
        if results is not None and row.get("videos"):
            await _delete_videos(results, row["videos"], done, store_errors)
        on_progress(deleted)
        if pace > 0:
            await asyncio.sleep((monotonic() - started) * pace)
        return deleted

    for what in ("events", "notifications"):  # a window of ids per batch
        if bounds[what] is None:
            continue  # nothing old enough
        after, last = bounds[f"{what}_from"] - 1, bounds[what]
        while after < last:
            upto = min(after + batch, last)
            await step(what, after, upto)
            after = upto
    if assets:  # few, and not in time order: up to a batch per statement
        while await step("assets") == batch:
            pass
    rows = done["events"] + done["notifications"] + done["assets"]
    await execute(conn, "record_prune", {"by": by, "deleted": rows})
    return Counts(**done, store_error=store_errors[0] if store_errors else None)


async def _batch(
    conn: Connection, what: str, before: datetime, batch: int, *, after: int, upto: int
) -> Mapping[str, Any] | None:
    params = {"before": before, "batch": batch, "after": after, "upto": upto}
    async with conn.transaction():
        locked = await fetch_one(conn, "try_prune_lock", {"key": PRUNE_LOCK})
        if not (locked and locked["locked"]):
            return None
        await fetch_one(conn, "allow_pruning_before", {"before": before})
        row = await fetch_one(conn, _STATEMENTS[what], params)
        assert row is not None
        return row


async def _delete_videos(
    results: Results, uris: list[str], done: dict[str, int], errors: list[str]
) -> None:
    """Delete the videos of assets just pruned (committed: nothing points at them now)."""
    ours = [uri for uri in uris if results.kept_by_vidretry(uri)]
    if not ours:
        return
    try:
        await results.delete(ours)
    except VidretryError as exc:
        done["videos_left"] += len(ours)
        errors.append(str(exc))
        log.warning("%d videos of pruned assets stay in the store: %s; first: %s",
                    len(ours), exc, ours[0])  # fmt: skip
    else:
        done["videos"] += len(ours)


class BackgroundPruning:
    """A worker's chore with ``[retention] days``: prune once an hour, in a task of its own
    so the claim loop never waits for it. Workers that find another one pruning skip."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Connection],
        days: float,
        *,
        clock: Clock,
        every_seconds: float = 3600.0,
        monotonic: Callable[[], float] = time.monotonic,
        by: str = "a worker",
    ) -> None:
        self.pool = pool
        self.days = days
        self.clock = clock
        self.every_seconds = every_seconds
        self.monotonic = monotonic
        self.by = by
        self.next_at = 0.0
        self.task: asyncio.Task[Counts | None] | None = None

    def poke(self) -> None:
        """Start a round if one is due and none is running."""
        if (self.task is None or self.task.done()) and self.monotonic() >= self.next_at:
            self.next_at = self.monotonic() + self.every_seconds
            self.task = asyncio.create_task(self.run_once())

    async def run_once(self) -> Counts | None:
        """One round: what was deleted, or None if another process was pruning."""
        try:
            async with self.pool.connection() as conn:
                before = await cutoff(conn, self.days * 86400, self.clock.now())
                counts = await prune(conn, before, assets=False, by=self.by)
        except RefusedError:
            return None
        except TRANSIENT_DB_ERRORS as exc:
            log.warning("pruning skipped: %s", one_line(exc))
            return None
        if counts.total:
            log.info(
                "pruned %d history events and %d notifications older than %g days",
                counts.events,
                counts.notifications,
                self.days,
            )
        return counts

    async def stop(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
