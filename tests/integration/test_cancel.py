"""The cancel service: a user withdrawing their request, an operator cancelling an asset,
re-opening by asking again, and one winner when a cancel races the worker or an enqueue."""

import asyncio

from tests.support import FakeClock, rows, scalar
from vidretry.db import connection
from vidretry.models import JobState
from vidretry.queue import jobs, leases
from vidretry.queue.cancel import CancelOutcome, cancel, withdraw
from vidretry.queue.enqueue import enqueue
from vidretry.queue.retry import Actor


async def requests(conn: connection.Connection) -> dict[int, str]:
    found = await rows(conn, "SELECT user_id, state FROM user_requests ORDER BY user_id")
    return {r["user_id"]: r["state"] for r in found}


async def test_one_of_several_waiters_withdraws_and_the_job_goes_on(
    conn: connection.Connection, clock: FakeClock
) -> None:
    for user in (1, 2):
        asset = await enqueue(conn, "Маша", user_id=user, now=clock.now())
    result = await withdraw(conn, asset.asset_id, 1, now=clock.now())
    assert result.outcome is CancelOutcome.WITHDRAWN
    assert await requests(conn) == {1: "cancelled", 2: "pending"}
    assert await scalar(conn, "SELECT state FROM video_assets") == "pending"
    # The job still runs, and only the one who still waits hears of it.
    (job,) = await jobs.claim(conn, owner="w", limit=1, lease_seconds=30, now=clock.now())
    await jobs.complete(conn, job, owner="w", result="/v.mp4", now=clock.now())
    assert await rows(conn, "SELECT user_id, kind FROM notifications") == [
        {"user_id": 2, "kind": "ready"}
    ]
    events = await rows(conn, "SELECT kind, actor FROM job_events WHERE kind = 'withdrawn'")
    assert events == [{"kind": "withdrawn", "actor": "telegram:1"}]


async def test_the_last_waiter_withdrawing_cancels_a_pending_job(
    conn: connection.Connection, clock: FakeClock
) -> None:
    asset = await enqueue(conn, "Маша", user_id=1, now=clock.now())
    result = await withdraw(conn, asset.asset_id, 1, now=clock.now())
    assert result.outcome is CancelOutcome.CANCELLED
    assert not result.was_running
    (row,) = await rows(conn, "SELECT state, attempts, finished_at FROM video_assets")
    assert row == {"state": "cancelled", "attempts": 0, "finished_at": clock.now()}
    # Never claimed.
    assert await jobs.claim(conn, owner="w", limit=5, lease_seconds=30, now=clock.now()) == []
    # A second press changes nothing and says so.
    again = await withdraw(conn, asset.asset_id, 1, now=clock.now())
    assert again.outcome is CancelOutcome.NOT_OPEN


async def test_a_running_job_loses_its_lease_and_its_attempt_is_given_back(
    conn: connection.Connection, clock: FakeClock
) -> None:
    asset = await enqueue(conn, "Маша", user_id=1, now=clock.now())
    (job,) = await jobs.claim(conn, owner="w", limit=1, lease_seconds=30, now=clock.now())
    result = await withdraw(conn, asset.asset_id, 1, now=clock.now())
    assert result.outcome is CancelOutcome.CANCELLED
    assert result.was_running
    (row,) = await rows(conn, "SELECT state, attempts, lease_token FROM video_assets")
    assert row == {"state": "cancelled", "attempts": 0, "lease_token": None}
    # The worker's heartbeat finds the lease gone; its late outcome changes nothing.
    assert await leases.extend(conn, leases.JOBS, [job], lease_seconds=30, now=clock.now()) == set()
    assert not await jobs.complete(conn, job, owner="w", result="/v.mp4", now=clock.now())
    assert await scalar(conn, "SELECT count(*) FROM notifications") == 0
    detail = await scalar(conn, "SELECT detail FROM job_events WHERE kind = 'cancelled'")
    assert detail == "nobody waits any more; stopped on w"


async def test_asking_again_reopens_a_cancelled_asset_as_a_new_generation(
    conn: connection.Connection, clock: FakeClock
) -> None:
    asset = await enqueue(conn, "Маша", user_id=1, now=clock.now())
    await withdraw(conn, asset.asset_id, 1, now=clock.now())
    again = await enqueue(conn, "Маша", user_id=1, now=clock.now())
    assert (again.asset_id, again.state) == (asset.asset_id, JobState.PENDING)
    (row,) = await rows(conn, "SELECT state, generation, attempts FROM video_assets")
    assert row == {"state": "pending", "generation": 1, "attempts": 0}
    assert await requests(conn) == {1: "pending"}
    # A button from before the re-opening is stale: it cancels nothing.
    stale = await withdraw(conn, asset.asset_id, 1, retry_round=0, now=clock.now())
    assert stale.outcome is CancelOutcome.NOT_OPEN
    assert await requests(conn) == {1: "pending"}


async def test_withdrawing_before_the_video_went_out_supersedes_it(
    conn: connection.Connection, clock: FakeClock
) -> None:
    asset = await enqueue(conn, "Маша", user_id=1, now=clock.now())
    (job,) = await jobs.claim(conn, owner="w", limit=1, lease_seconds=30, now=clock.now())
    await jobs.complete(conn, job, owner="w", result="/v.mp4", now=clock.now())
    result = await withdraw(conn, asset.asset_id, 1, now=clock.now())
    assert result.outcome is CancelOutcome.WITHDRAWN  # the asset stays available
    assert await scalar(conn, "SELECT state FROM notifications") == "superseded"
    assert await requests(conn) == {1: "cancelled"}


async def test_refusals(conn: connection.Connection, clock: FakeClock) -> None:
    asset = await enqueue(conn, "Маша", user_id=1, now=clock.now())
    assert (await withdraw(conn, 10**6, 1)).outcome is CancelOutcome.NOT_FOUND
    assert (await withdraw(conn, 2**63, 1)).outcome is CancelOutcome.NOT_FOUND
    assert (await withdraw(conn, asset.asset_id, 2)).outcome is CancelOutcome.FORBIDDEN
    operator = Actor.operator("alice")
    assert (await cancel(conn, 10**6, operator)).outcome is CancelOutcome.NOT_FOUND
    (job,) = await jobs.claim(conn, owner="w", limit=1, lease_seconds=30, now=clock.now())
    await jobs.fail(conn, job, owner="w", error="boom", now=clock.now())
    refused = await cancel(conn, asset.asset_id, operator)
    assert (refused.outcome, refused.state) == (CancelOutcome.NOT_OPEN, JobState.FAILED)


async def test_an_operator_cancels_the_whole_asset_and_every_waiter_is_told(
    conn: connection.Connection, clock: FakeClock
) -> None:
    for user in (1, 2, 3):
        asset = await enqueue(conn, "Маша", user_id=user, now=clock.now())
    await withdraw(conn, asset.asset_id, 3, now=clock.now())
    await jobs.claim(conn, owner="w", limit=1, lease_seconds=30, now=clock.now())
    result = await cancel(
        conn, asset.asset_id, Actor.operator("alice"), reason="wrong name", now=clock.now()
    )
    assert result.outcome is CancelOutcome.CANCELLED
    assert result.was_running
    assert result.told_users == (1, 2)
    assert await requests(conn) == {1: "cancelled", 2: "cancelled", 3: "cancelled"}
    notes = await rows(conn, "SELECT user_id, kind, state FROM notifications ORDER BY user_id")
    assert notes == [
        {"user_id": 1, "kind": "cancelled", "state": "pending"},
        {"user_id": 2, "kind": "cancelled", "state": "pending"},
    ]
    (event,) = await rows(conn, "SELECT actor, detail FROM job_events WHERE kind = 'cancelled'")
    assert event == {"actor": "operator:alice", "detail": "wrong name; stopped on w"}
    assert (await cancel(conn, asset.asset_id, Actor.operator("bob"))).outcome is (
        CancelOutcome.NOT_OPEN
    )


async def test_an_operator_s_cancel_is_one_function_that_another_program_can_call(
    conn: connection.Connection, clock: FakeClock
) -> None:
    """One rule, one place: the job, the waiting users told and the answer when nothing
    changed are all vidretry_cancel_asset's, so one SQL call does what `vidretry cancel`
    does."""
    for user in (1, 2):
        asset = await enqueue(conn, "Маша", user_id=user, now=clock.now())

    async def cancel_in_sql(asset_id: int) -> dict[str, object]:
        (row,) = await rows(
            conn, "SELECT * FROM vidretry_cancel_asset(%s, 'operator:carol', NULL, NULL)", asset_id
        )
        return row

    assert await cancel_in_sql(asset.asset_id) == {
        "outcome": "cancelled", "state": None, "was_running": False, "told_users": [1, 2],
    }  # fmt: skip
    assert await scalar(conn, "SELECT count(*) FROM notifications WHERE kind = 'cancelled'") == 2
    assert await cancel_in_sql(asset.asset_id) == {
        "outcome": "not_open", "state": "cancelled", "was_running": False, "told_users": [],
    }  # fmt: skip
    assert (await cancel_in_sql(10**6))["outcome"] == "not_found"


async def test_a_cancel_racing_a_new_request_never_strands_it(db_url: str) -> None:
    """Whichever commits first, a user who asked is never left waiting on a cancelled
    asset: either the cancel saw their request (and the job goes on), or their enqueue saw
    the cancel (and re-opened the asset)."""
    for _ in range(20):
        async with await connection.connect(db_url) as a, await connection.connect(db_url) as b:
            await a.execute("TRUNCATE video_assets, user_requests, job_events CASCADE")
            asset = await enqueue(a, "race", user_id=1)
            await asyncio.gather(withdraw(a, asset.asset_id, 1), enqueue(b, "race", user_id=2))
            state = await scalar(a, "SELECT state FROM video_assets")
            assert await requests(a) == {1: "cancelled", 2: "pending"}
            assert state == "pending"


async def test_concurrent_presses_cancel_once(db_url: str, clock: FakeClock) -> None:
    async with await connection.connect(db_url) as conn:
        asset = await enqueue(conn, "Маша", user_id=1, now=clock.now())
    connections = [await connection.connect(db_url) for _ in range(5)]
    try:
        results = await asyncio.gather(*(withdraw(c, asset.asset_id, 1) for c in connections))
    finally:
        for c in connections:
            await c.close()
    outcomes = sorted(r.outcome for r in results)
    assert outcomes == [CancelOutcome.CANCELLED] + [CancelOutcome.NOT_OPEN] * 4
