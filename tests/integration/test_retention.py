"""Pruning old history: what goes, what stays, and the append-only rule for everyone else."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.memory_store import MemoryStore
from tests.support import FakeClock, rows
from vidretry.db import connection
from vidretry.db.pool import open_pool
from vidretry.queue import jobs
from vidretry.queue.enqueue import enqueue
from vidretry.queue.maintenance import retention
from vidretry.queue.maintenance.retention import BackgroundPruning, Counts
from vidretry.results.base import Stored
from vidretry.results.keeping import Results

DAYS_30 = 30 * 86400


async def seed(conn: connection.Connection) -> None:
    """40 days ago: one video made (its message sent), one failed (its message not sent
    yet). Today: one video asked for."""
    old = FakeClock(datetime.now(UTC) - timedelta(days=40))
    await enqueue(conn, "old-made", user_id=1, now=old.now())
    (job,) = await jobs.claim(conn, owner="w", limit=1, lease_seconds=30, now=old.now())
    await jobs.complete(conn, job, owner="w", result="file:///videos/1.mp4", now=old.now())
    await conn.execute(
        "UPDATE notifications SET state = 'sent', sent_at = %s WHERE kind = 'ready'",
        (old.now(),),
    )
    await enqueue(conn, "old-failed", user_id=2, max_attempts=1, now=old.now())
    (job,) = await jobs.claim(conn, owner="w", limit=1, lease_seconds=30, now=old.now())
    await jobs.fail(conn, job, owner="w", error="boom", now=old.now())
    await enqueue(conn, "new", user_id=3)


async def table(conn: connection.Connection, query: str) -> list[dict[str, Any]]:
    return await rows(conn, query)


async def test_prune_deletes_old_history_and_delivered_notifications_only(db_url: str) -> None:
    async with await connection.connect(db_url) as conn:
        await seed(conn)
        old_events = len(await table(conn, "SELECT 1 FROM job_events WHERE asset_id <= 2"))
        before = await retention.cutoff(conn, DAYS_30, now=None)
        found = await retention.prunable(conn, before, assets=False)
        assert found == Counts(events=old_events, notifications=1, assets=0)

        progress: list[int] = []
        done = await retention.prune(
            conn, before, assets=False, batch=2, on_progress=progress.append
        )
        assert done == found
        assert sum(progress) == found.total
        events = await table(conn, "SELECT DISTINCT asset_id FROM job_events")
        assert events == [{"asset_id": 3}]  # only today's
        notes = await table(conn, "SELECT kind, state FROM notifications")
        assert notes == [{"kind": "failed", "state": "pending"}]  # not delivered yet: kept
        names = await table(conn, "SELECT name FROM video_assets ORDER BY id")
        assert [n["name"] for n in names] == ["old-made", "old-failed", "new"]  # assets stay

        # --assets: the finished one nobody waits for goes; the failed one, whose message
        # is still to be delivered, stays.
        assert (await retention.prunable(conn, before, assets=True)).assets == 1
        assert (await retention.prune(conn, before, assets=True)).assets == 1
        names = await table(conn, "SELECT name FROM video_assets ORDER BY id")
        assert [n["name"] for n in names] == ["old-failed", "new"]
        assert await table(conn, "SELECT 1 FROM user_requests WHERE asset_id = 1") == []


async def test_history_stays_append_only_for_everything_else(db_url: str) -> None:
    async with await connection.connect(db_url) as conn:
        await seed(conn)
        before = await retention.cutoff(conn, DAYS_30, now=None)
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            await conn.execute("DELETE FROM job_events WHERE asset_id = 1")
        async with conn.transaction():
            await connection.fetch_one(conn, "allow_pruning_before", {"before": before})
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                async with conn.transaction():  # newer than the cut-off: refused
                    await conn.execute("DELETE FROM job_events WHERE asset_id = 3")
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                async with conn.transaction():  # an update: never
                    await conn.execute("UPDATE job_events SET detail = 'x' WHERE asset_id = 1")


async def test_one_pruner_at_a_time(db_url: str) -> None:
    async with await connection.connect(db_url) as conn, await connection.connect(db_url) as other:
        await seed(conn)
        async with open_pool(db_url, max_size=2) as pool:
            pruning = BackgroundPruning(pool, days=30, clock=FakeClock(datetime.now(UTC)))
            async with other.transaction():  # another process holds the prune lock
                await other.execute("SELECT pg_advisory_xact_lock(%s)", (retention.PRUNE_LOCK,))
                assert await pruning.run_once() is None
            counts = await pruning.run_once()
        assert counts is not None
        assert counts.notifications == 1


async def test_pruned_assets_take_the_videos_vidretry_kept_with_them(
    db_url: str, tmp_path: Path
) -> None:
    """--assets deletes the pruned assets' videos from the store once their rows are gone;
    a store that cannot delete leaves orphaned objects (counted), never a row pointing at
    nothing; a video recorded as a bare path (before schema 19) is the user's and stays."""
    store = FlakyStore()
    own_file = tmp_path / "mine.mp4"
    own_file.write_bytes(b"the user's own")
    old = FakeClock(datetime.now(UTC) - timedelta(days=40))
    async with await connection.connect(db_url) as conn:
        for name in ("orphaned", "deleted", "legacy"):
            await enqueue(conn, name, user_id=1, now=old.now())
            (job,) = await jobs.claim(conn, owner="w", limit=1, lease_seconds=30, now=old.now())
            result: Stored | str = str(own_file)
            if name != "legacy":
                result = await store.put_chunks(chunks(name.encode()), f"{name}.mp4", limit=99)
            await jobs.complete(conn, job, owner="w", result=result, now=old.now())
        await conn.execute("UPDATE notifications SET state = 'sent', sent_at = %s", (old.now(),))
        before = await retention.cutoff(conn, DAYS_30, now=None)

        store.down_for_deletes = 1  # the first batch finds the store unreachable
        results = Results(store, scratch=tmp_path)
        done = await retention.prune(conn, before, assets=True, batch=1, results=results)
        assert done.assets == 3
        assert (done.videos, done.videos_left) == (1, 1)
        assert done.store_error is not None
        assert "unreachable" in done.store_error
        assert await table(conn, "SELECT 1 FROM video_assets") == []
    assert set(store.objects) == {"memory://test/orphaned.mp4"}  # left behind: nothing lost
    assert own_file.read_bytes() == b"the user's own"


class FlakyStore(MemoryStore):
    down_for_deletes = 0

    async def delete(self, uris: Sequence[str]) -> None:
        self.down, self.down_for_deletes = self.down_for_deletes > 0, self.down_for_deletes - 1
        await super().delete(uris)


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
