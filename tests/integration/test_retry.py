"""The retry service: every outcome, and exactly one winner under concurrency."""

import asyncio

from tests.support import FakeClock, rows, scalar
from vidretry.db import connection
from vidretry.models import JobState
from vidretry.queue import jobs
from vidretry.queue.enqueue import enqueue
from vidretry.queue.retry import Actor, RetryOutcome, retry


async def failed_asset(
    conn: connection.Connection, clock: FakeClock, users: tuple[int, ...] = (1, 2)
) -> int:
    for user in users:
        created = await enqueue(conn, "a", user_id=user, now=clock.now())
    (job,) = await jobs.claim(conn, owner="w", limit=1, lease_seconds=30, now=clock.now())
    await jobs.fail(conn, job, owner="w", error="boom", now=clock.now())
    return created.asset_id


async def test_retry_requeues_a_failed_asset(db_url: str, clock: FakeClock) -> None:
    async with (
        await connection.connect(db_url) as conn,
        await connection.connect(db_url) as listener,
    ):
        await listener.execute("LISTEN vidretry_jobs")
        asset_id = await failed_asset(conn, clock)
        clock.advance(60)
        result = await retry(
            conn, asset_id, Actor.operator("alice"), reason="new GPU", now=clock.now()
        )
        assert result.outcome is RetryOutcome.RETRIED
        assert result.retry_round == 1
        assert sorted(result.reopened_users) == [1, 2]
        (row,) = await rows(
            conn, "SELECT state, attempts, generation, run_at, finished_at FROM video_assets"
        )
        assert row == {
            "state": "pending",
            "attempts": 0,
            "generation": 1,
            "run_at": clock.now(),
            "finished_at": None,
        }
        assert await rows(conn, "SELECT DISTINCT state FROM user_requests") == [
            {"state": "pending"}
        ]
        events = await rows(
            conn, "SELECT actor, detail, generation FROM job_events WHERE kind = 'retried'"
        )
        assert events == [{"actor": "operator:alice", "detail": "new GPU", "generation": 1}]
        notify = await anext(listener.notifies(timeout=5))
        assert notify.payload == str(asset_id)
        # The next failure of the new generation notifies again: a new unique key.
        (job,) = await jobs.claim(conn, owner="w", limit=1, lease_seconds=30, now=clock.now())
        await jobs.fail(conn, job, owner="w", error="boom", now=clock.now())
        counts = await rows(
            conn, "SELECT generation, count(*) AS n FROM notifications GROUP BY 1 ORDER BY 1"
        )
        assert counts == [{"generation": 0, "n": 2}, {"generation": 1, "n": 2}]


async def test_refusals(db_url: str, clock: FakeClock) -> None:
    async with await connection.connect(db_url) as conn:
        asset_id = await failed_asset(conn, clock)
        operator = Actor.operator("op")
        assert (await retry(conn, 999, operator)).outcome is RetryOutcome.NOT_FOUND
        assert (await retry(conn, 2**70, operator)).outcome is RetryOutcome.NOT_FOUND
        assert (await retry(conn, -1, operator)).outcome is RetryOutcome.NOT_FOUND
        stranger = await retry(conn, asset_id, Actor.telegram(42))
        assert stranger.outcome is RetryOutcome.FORBIDDEN
        assert stranger.state is None  # a stranger learns nothing about the asset
        assert (await retry(conn, asset_id, Actor.telegram(1), retry_round=0)).retried
        again = await retry(conn, asset_id, Actor.telegram(2), retry_round=0)
        assert (again.outcome, again.state, again.retry_round) == (
            RetryOutcome.STALE,
            JobState.PENDING,
            1,
        )
        not_failed = await retry(conn, asset_id, operator)
        assert (not_failed.outcome, not_failed.state) == (RetryOutcome.NOT_FAILED, JobState.PENDING)
        assert await scalar(conn, "SELECT generation FROM video_assets") == 1


async def test_admins_may_retry_what_they_did_not_ask_for(db_url: str, clock: FakeClock) -> None:
    async with await connection.connect(db_url) as conn:
        asset_id = await failed_asset(conn, clock)
        assert (await retry(conn, asset_id, Actor.telegram(42, is_admin=True))).retried


async def test_concurrent_retries_have_exactly_one_winner(db_url: str, clock: FakeClock) -> None:
    async with await connection.connect(db_url) as conn:
        asset_id = await failed_asset(conn, clock, users=tuple(range(1, 9)))
    connections = [await connection.connect(db_url) for _ in range(8)]
    try:
        start = asyncio.Event()

        async def press(conn: connection.Connection, user: int) -> RetryOutcome:
            await start.wait()
            return (await retry(conn, asset_id, Actor.telegram(user), retry_round=0)).outcome

        tasks = [asyncio.create_task(press(c, i + 1)) for i, c in enumerate(connections)]
        await asyncio.sleep(0.05)
        start.set()
        outcomes = await asyncio.gather(*tasks)
    finally:
        for c in connections:
            await c.close()
    assert outcomes.count(RetryOutcome.RETRIED) == 1
    assert set(outcomes) == {RetryOutcome.RETRIED, RetryOutcome.STALE}
    async with await connection.connect(db_url) as conn:
        assert await scalar(conn, "SELECT generation FROM video_assets") == 1
        assert await scalar(conn, "SELECT count(*) FROM job_events WHERE kind = 'retried'") == 1
