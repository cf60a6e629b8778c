"""Status views stay cheap on a big table, and rescues work in bounded batches."""

from __future__ import annotations

from datetime import timedelta

from tests.support import FakeClock, rows, scalar
from vidretry.cli import plain
from vidretry.db import connection
from vidretry.queue import jobs, reports
from vidretry.queue.maintenance import rescue_notifications
from vidretry.telegram import outbox


async def test_available_is_counted_exactly_while_small_then_estimated(db_url: str) -> None:
    async with await connection.connect(db_url) as conn:
        await conn.execute(
            "INSERT INTO video_assets (name, state, attempts, result, finished_at)"
            " SELECT 'v' || i, 'available', 1, '/v.mp4', now() FROM generate_series(1, 1000) i"
        )
        await conn.execute("ANALYZE video_assets")
        small = await reports.status(conn, None)
        assert small["counts"]["available"] == 1000
        assert small["available_estimated"] is False
        await conn.execute(
            "INSERT INTO video_assets (name, state, attempts, result, finished_at)"
            " SELECT 'w' || i, 'available', 1, '/v.mp4', now()"
            " FROM generate_series(1, 120000) i"
        )
        await conn.execute("INSERT INTO video_assets (name) VALUES ('waiting')")
        await conn.execute("ANALYZE video_assets")
        big = await reports.status(conn, None)
    assert big["available_estimated"] is True
    assert abs(big["counts"]["available"] - 121_000) < 121_000 * 0.05
    assert big["counts"]["pending"] == 1  # the live states stay exact
    assert "≈ 12" in plain.dashboard(big, [], width=120, colour=False)


async def test_rescues_work_in_bounded_batches(db_url: str) -> None:
    clock = FakeClock()
    n = jobs.RESCUE_BATCH * 2 + 7
    async with await connection.connect(db_url) as conn:
        await conn.execute(
            "INSERT INTO video_assets (name) SELECT 'v' || i FROM generate_series(1, %s) i", (n,)
        )
        claimed = await jobs.claim(conn, owner="w", limit=n, lease_seconds=30, now=clock.now())
        assert len(claimed) == n
        clock.advance(31)
        rescued = await jobs.rescue_expired(
            conn, owner="rescuer", lease_seconds=30, now=clock.now()
        )
        assert len(rescued.requeued) == n
        assert await scalar(conn, "SELECT count(*) FROM video_assets WHERE state = 'pending'") == n
        # The outbox's rescue too.
        await conn.execute(
            "INSERT INTO notifications (asset_id, user_id, chat_id, kind, generation,"
            " created_at, next_attempt_at) SELECT id, id, id, 'ready', 0, %s, %s"
            " FROM video_assets",
            (clock.now(), clock.now()),
        )
        notes = await outbox.claim(conn, owner="n", limit=n, lease_seconds=30, now=clock.now())
        assert len(notes) == n
        later = clock.now() + timedelta(seconds=31)
        back = await rescue_notifications.rescue_expired(
            conn, give_up_after_seconds=86400, now=later
        )
        assert back.count == n
        states = await rows(conn, "SELECT DISTINCT state FROM notifications")
        assert states == [{"state": "pending"}]
