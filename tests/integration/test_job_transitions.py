"""Each of a job's transitions against a real database, with a clock moved by hand."""

import asyncio
from uuid import uuid4

import psycopg
import pytest

from tests.support import FakeClock, rows, scalar
from vidretry.db import connection
from vidretry.models import ClaimedJob, JobState
from vidretry.queue import jobs, leases
from vidretry.queue.enqueue import enqueue

LEASE = 30.0


async def claim_one(conn: connection.Connection, clock: FakeClock, owner: str = "w1") -> ClaimedJob:
    claimed = await jobs.claim(conn, owner=owner, limit=1, lease_seconds=LEASE, now=clock.now())
    assert len(claimed) == 1
    return claimed[0]


async def asset(conn: connection.Connection, asset_id: int) -> dict[str, object]:
    (row,) = await rows(conn, "SELECT * FROM video_assets WHERE id = %s", asset_id)
    return row


async def test_enqueue_creates_then_joins(db_url: str, clock: FakeClock) -> None:
    async with await connection.connect(db_url) as conn:
        first = await enqueue(conn, "Маша", user_id=1, params={"voice": "alto"}, now=clock.now())
        second = await enqueue(conn, "Маша", user_id=2, chat_id=-100, now=clock.now())
        again = await enqueue(conn, "Маша", user_id=1, now=clock.now())
        assert first.created
        assert not second.created
        assert not again.created
        assert first.asset_id == second.asset_id == again.asset_id
        assert await scalar(conn, "SELECT count(*) FROM video_assets") == 1
        requests = await rows(
            conn, "SELECT user_id, chat_id, state FROM user_requests ORDER BY user_id"
        )
        assert requests == [
            {"user_id": 1, "chat_id": 1, "state": "pending"},
            {"user_id": 2, "chat_id": -100, "state": "pending"},
        ]
        kinds = await rows(conn, "SELECT kind, actor FROM job_events ORDER BY id")
        assert kinds == [
            {"kind": "enqueued", "actor": "telegram:1"},
            {"kind": "requested", "actor": "telegram:2"},
        ]


async def test_claim_counts_the_attempt_and_leases(db_url: str, clock: FakeClock) -> None:
    async with await connection.connect(db_url) as conn:
        created = await enqueue(conn, "a", user_id=1, now=clock.now())
        job = await claim_one(conn, clock)
        assert job.id == created.asset_id
        assert job.attempts == 1
        row = await asset(conn, job.id)
        assert row["state"] == "running"
        assert row["lease_owner"] == "w1"
        assert row["lease_token"] == job.lease_token
        assert (row["lease_expires_at"] - clock.now()).total_seconds() == LEASE  # type: ignore[operator]
        assert (
            await jobs.claim(conn, owner="w2", limit=5, lease_seconds=LEASE, now=clock.now()) == []
        )
        assert await scalar(conn, "SELECT count(*) FROM job_events WHERE kind = 'claimed'") == 1


async def test_claim_takes_a_batch_oldest_first_and_respects_run_at(
    db_url: str, clock: FakeClock
) -> None:
    async with await connection.connect(db_url) as conn:
        for i in range(5):
            await enqueue(conn, f"a{i}", user_id=1, now=clock.now())
            clock.advance(1)
        await conn.execute("UPDATE video_assets SET run_at = %s WHERE name = 'a0'", (clock.now(),))
        clock.advance(-0.5)
        claimed = await jobs.claim(conn, owner="w", limit=3, lease_seconds=LEASE, now=clock.now())
        assert [j.name for j in claimed] == ["a1", "a2", "a3"]  # a0 is not due yet


async def test_skip_locked_gives_concurrent_claimers_different_jobs(
    db_url: str, clock: FakeClock
) -> None:
    async with await connection.connect(db_url) as setup:
        for name in ("a", "b"):
            await enqueue(setup, name, user_id=1, now=clock.now())
    async with (
        await connection.connect(db_url) as first,
        await connection.connect(db_url) as second,
    ):
        async with first.transaction():
            mine = await jobs.claim(
                first, owner="w1", limit=1, lease_seconds=LEASE, now=clock.now()
            )
            # first still holds its row lock: second must skip it, not wait for it.
            theirs = await asyncio.wait_for(
                jobs.claim(second, owner="w2", limit=5, lease_seconds=LEASE, now=clock.now()), 5
            )
        assert len(mine) == len(theirs) == 1
        assert mine[0].id != theirs[0].id


async def test_heartbeat_extends_only_a_held_lease(db_url: str, clock: FakeClock) -> None:
    async with await connection.connect(db_url) as conn:
        await enqueue(conn, "a", user_id=1, now=clock.now())
        job = await claim_one(conn, clock)
        clock.advance(20)
        other = await enqueue(conn, "b", user_id=1, now=clock.now())
        second = await claim_one(conn, clock)
        assert second.id == other.asset_id
        impostor = ClaimedJob(**{**second.__dict__, "lease_token": uuid4()})
        clock.advance(20)
        # One statement for both: the held lease is extended, the impostor's is not.
        alive = await leases.extend(
            conn, leases.JOBS, [job, impostor], lease_seconds=LEASE, now=clock.now()
        )
        assert alive == {job.id}
        row = await asset(conn, job.id)
        assert (row["lease_expires_at"] - clock.now()).total_seconds() == LEASE  # type: ignore[operator]
        row = await asset(conn, second.id)
        assert (row["lease_expires_at"] - clock.now()).total_seconds() == LEASE - 20  # type: ignore[operator]
        assert (
            await leases.extend(conn, leases.JOBS, [], lease_seconds=LEASE, now=clock.now())
            == set()
        )


async def test_success_settles_every_request_with_a_ready_row(
    db_url: str, clock: FakeClock
) -> None:
    async with (
        await connection.connect(db_url) as conn,
        await connection.connect(db_url) as listener,
    ):
        await listener.execute("LISTEN vidretry_outbox")
        for user in (1, 2):
            await enqueue(conn, "a", user_id=user, now=clock.now())
        job = await claim_one(conn, clock)
        assert await jobs.complete(conn, job, owner="w1", result="/v/a.mp4", now=clock.now())
        row = await asset(conn, job.id)
        assert (row["state"], row["result"], row["lease_token"]) == ("available", "/v/a.mp4", None)
        assert row["finished_at"] == clock.now()
        assert await rows(conn, "SELECT DISTINCT state FROM user_requests") == [{"state": "done"}]
        notes = await rows(
            conn, "SELECT user_id, kind, generation, payload FROM notifications ORDER BY user_id"
        )
        assert notes == [
            {
                "user_id": u,
                "kind": "ready",
                "generation": 0,
                "payload": {"name": "a", "result": "/v/a.mp4"},
            }
            for u in (1, 2)
        ]
        notify = await anext(listener.notifies(timeout=5))
        assert notify.channel == "vidretry_outbox"


async def test_a_batch_of_successes_is_written_whole_or_not_at_all(
    db_url: str, clock: FakeClock
) -> None:
    async with await connection.connect(db_url) as conn:
        for name in ("a", "b"):
            await enqueue(conn, name, user_id=1, now=clock.now())
        claimed = await jobs.claim(conn, owner="w1", limit=2, lease_seconds=LEASE, now=clock.now())
        # The second statement of the batch (the requests and their 'ready' rows) fails.
        await conn.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql"
            " AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$"
        )
        await conn.execute(
            "CREATE TRIGGER refuse BEFORE UPDATE ON user_requests"
            " FOR EACH ROW EXECUTE FUNCTION refuse()"
        )
        finished = [(job, f"/v/{job.name}.mp4") for job in claimed]
        with pytest.raises(psycopg.errors.RaiseException, match="refused"):
            await jobs.complete_many(conn, finished, owner="w1", now=clock.now())
        states = await rows(conn, "SELECT DISTINCT state, result FROM video_assets")
        assert states == [{"state": "running", "result": None}]
        assert await scalar(conn, "SELECT count(*) FROM job_events WHERE kind = 'succeeded'") == 0
        assert await scalar(conn, "SELECT count(*) FROM notifications") == 0

        await conn.execute("DROP TRIGGER refuse ON user_requests")
        assert await jobs.complete_many(conn, finished, owner="w1", now=clock.now()) == {
            job.id for job in claimed
        }
        assert await scalar(conn, "SELECT count(*) FROM notifications") == 2


async def test_attempt_failure_backs_off_and_keeps_the_error(db_url: str, clock: FakeClock) -> None:
    async with await connection.connect(db_url) as conn:
        await enqueue(conn, "a", user_id=1, now=clock.now())
        job = await claim_one(conn, clock)
        assert await jobs.retry_later(
            conn, job, owner="w1", error="boom", backoff_seconds=20, now=clock.now()
        )
        row = await asset(conn, job.id)
        assert (row["state"], row["attempts"], row["last_error"]) == ("pending", 1, "boom")
        assert (row["run_at"] - clock.now()).total_seconds() == 20  # type: ignore[operator]
        assert (
            await jobs.claim(conn, owner="w", limit=1, lease_seconds=LEASE, now=clock.now()) == []
        )
        clock.advance(20)
        assert (await claim_one(conn, clock)).attempts == 2
        events = await rows(
            conn, "SELECT kind, attempt, detail FROM job_events WHERE kind = 'attempt_failed'"
        )
        assert events == [{"kind": "attempt_failed", "attempt": 1, "detail": "boom"}]


async def test_final_failure_fails_every_waiting_request_and_queues_one_row_each(
    db_url: str, clock: FakeClock
) -> None:
    async with (
        await connection.connect(db_url) as conn,
        await connection.connect(db_url) as listener,
    ):
        await listener.execute("LISTEN vidretry_outbox")
        for user in (1, 2, 3):
            await enqueue(conn, "a", user_id=user, now=clock.now())
        job = await claim_one(conn, clock)
        assert await jobs.fail(conn, job, owner="w1", error="exit status 3", now=clock.now())
        row = await asset(conn, job.id)
        assert (row["state"], row["last_error"], row["finished_at"]) == (
            "failed",
            "exit status 3",
            clock.now(),
        )
        assert await rows(conn, "SELECT DISTINCT state FROM user_requests") == [{"state": "failed"}]
        notes = await rows(
            conn, "SELECT user_id, kind, state, generation FROM notifications ORDER BY user_id"
        )
        assert notes == [
            {"user_id": u, "kind": "failed", "state": "pending", "generation": 0} for u in (1, 2, 3)
        ]
        assert await scalar(conn, "SELECT count(*) FROM job_events WHERE kind = 'failed'") == 1
        notify = await anext(listener.notifies(timeout=5))
        assert notify.channel == "vidretry_outbox"
        # The same lease cannot fail it twice.
        assert not await jobs.fail(conn, job, owner="w1", error="again", now=clock.now())
        assert await scalar(conn, "SELECT count(*) FROM notifications") == 3


async def test_final_failure_is_all_or_nothing(db_url: str, clock: FakeClock) -> None:
    async with await connection.connect(db_url) as conn:
        for user in (1, 2):
            await enqueue(conn, "a", user_id=user, now=clock.now())
        job = await claim_one(conn, clock)
        # Break the transaction part-way: the outbox insert, after the asset and requests changed.
        await conn.execute(
            """
            CREATE FUNCTION break_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'outbox is broken'; END $$;
            CREATE TRIGGER break_outbox BEFORE INSERT ON notifications
            FOR EACH ROW EXECUTE FUNCTION break_outbox();
            """
        )
        with pytest.raises(psycopg.errors.RaiseException, match="outbox is broken"):
            await jobs.fail(conn, job, owner="w1", error="boom", now=clock.now())
        row = await asset(conn, job.id)
        assert (row["state"], row["lease_token"]) == ("running", job.lease_token)
        assert await rows(conn, "SELECT DISTINCT state FROM user_requests") == [
            {"state": "pending"}
        ]
        assert await scalar(conn, "SELECT count(*) FROM job_events WHERE kind = 'failed'") == 0
        await conn.execute("DROP TRIGGER break_outbox ON notifications")
        assert await jobs.fail(conn, job, owner="w1", error="boom", now=clock.now())


async def test_expired_lease_is_rescued_and_the_crash_counts(db_url: str, clock: FakeClock) -> None:
    async with await connection.connect(db_url) as conn:
        await enqueue(conn, "a", user_id=1, now=clock.now())
        lost = await claim_one(conn, clock, owner="crashed")
        clock.advance(LEASE - 1)
        nothing = await jobs.rescue_expired(conn, owner="w2", lease_seconds=LEASE, now=clock.now())
        assert nothing.requeued == []
        assert nothing.exhausted == []
        clock.advance(2)
        rescued = await jobs.rescue_expired(conn, owner="w2", lease_seconds=LEASE, now=clock.now())
        assert rescued.requeued == [lost.id]
        row = await asset(conn, lost.id)
        assert (row["state"], row["attempts"]) == ("pending", 1)
        assert "lease of crashed expired" in str(row["last_error"])
        again = await claim_one(conn, clock, owner="w2")
        assert again.attempts == 2
        # The crashed worker comes back: its token no longer fences anything.
        assert not await jobs.complete(conn, lost, owner="crashed", result="x", now=clock.now())
        assert not await leases.extend(
            conn, leases.JOBS, [lost], lease_seconds=LEASE, now=clock.now()
        )
        assert (await asset(conn, lost.id))["state"] == "running"
        events = await rows(
            conn, "SELECT kind, attempt, actor FROM job_events WHERE kind = 'rescued'"
        )
        assert events == [{"kind": "rescued", "attempt": 1, "actor": "w2"}]


async def test_expiry_on_the_last_attempt_fails_the_job_for_good(
    db_url: str, clock: FakeClock
) -> None:
    async with await connection.connect(db_url) as conn:
        await enqueue(conn, "a", user_id=1, max_attempts=1, now=clock.now())
        await claim_one(conn, clock, owner="crashed")
        clock.advance(LEASE + 1)
        rescued = await jobs.rescue_expired(conn, owner="w2", lease_seconds=LEASE, now=clock.now())
        assert rescued.requeued == []
        (job,) = rescued.exhausted
        assert await jobs.fail(conn, job, owner="w2", error=None, now=clock.now())
        row = await asset(conn, job.id)
        assert (row["state"], row["attempts"]) == ("failed", 1)
        assert "lease of crashed expired" in str(row["last_error"])
        assert await scalar(conn, "SELECT count(*) FROM notifications WHERE kind = 'failed'") == 1


async def test_release_gives_the_attempt_back(db_url: str, clock: FakeClock) -> None:
    async with await connection.connect(db_url) as conn:
        await enqueue(conn, "a", user_id=1, now=clock.now())
        job = await claim_one(conn, clock)
        assert await jobs.release(conn, job, owner="w1", now=clock.now())
        row = await asset(conn, job.id)
        assert (row["state"], row["attempts"], row["lease_token"]) == ("pending", 0, None)
        assert not await jobs.release(conn, job, owner="w1", now=clock.now())


async def test_asking_for_an_available_video_answers_at_once(db_url: str, clock: FakeClock) -> None:
    async with await connection.connect(db_url) as conn:
        await enqueue(conn, "a", user_id=1, now=clock.now())
        job = await claim_one(conn, clock)
        await jobs.complete(conn, job, owner="w1", result="/v/a.mp4", now=clock.now())
        late = await enqueue(conn, "a", user_id=2, now=clock.now())
        assert late.state is JobState.AVAILABLE
        assert await scalar(conn, "SELECT state FROM user_requests WHERE user_id = 2") == "done"
        notes = await rows(conn, "SELECT user_id, kind FROM notifications ORDER BY user_id")
        assert notes == [{"user_id": 1, "kind": "ready"}, {"user_id": 2, "kind": "ready"}]
        await enqueue(conn, "a", user_id=2, now=clock.now())  # asking again sends nothing new
        assert await scalar(conn, "SELECT count(*) FROM notifications") == 2


async def test_asking_for_a_failed_video_retries_it_as_that_user(
    db_url: str, clock: FakeClock
) -> None:
    async with await connection.connect(db_url) as conn:
        await enqueue(conn, "a", user_id=1, now=clock.now())
        job = await claim_one(conn, clock)
        await jobs.fail(conn, job, owner="w1", error="boom", now=clock.now())
        again = await enqueue(conn, "a", user_id=2, now=clock.now())
        assert again.state is JobState.PENDING
        row = await asset(conn, job.id)
        assert (row["state"], row["attempts"], row["generation"]) == ("pending", 0, 1)
        requests = await rows(conn, "SELECT user_id, state FROM user_requests ORDER BY user_id")
        assert requests == [{"user_id": 1, "state": "pending"}, {"user_id": 2, "state": "pending"}]
        retried = await rows(conn, "SELECT actor, detail FROM job_events WHERE kind = 'retried'")
        assert retried == [{"actor": "telegram:2", "detail": "asked again"}]
