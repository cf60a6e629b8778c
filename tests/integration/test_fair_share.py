"""A fair share of the generator, on a real database with a clock moved by hand: the claim
order across users and priorities, retries' head start, the place in line, the global
quotas, and "slow down" answers that cost no attempt."""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace
from pathlib import Path

import pytest

from tests.integration.test_worker import FAST, add, worker_for
from tests.support import FakeClock, rows, scalar
from vidretry.config import WorkerConfig
from vidretry.db import connection
from vidretry.errors import ConfigError
from vidretry.models import ClaimedJob
from vidretry.queue import jobs, reports
from vidretry.queue.breaker import Breaker
from vidretry.queue.enqueue import enqueue
from vidretry.queue.handlers import TERM_GRACE_SECONDS
from vidretry.queue.quota import NO_QUOTA, Quota
from vidretry.queue.retry import Actor, retry
from vidretry.queue.worker import Outcome


async def claim_one(
    conn: connection.Connection, clock: FakeClock, quota: Quota = NO_QUOTA
) -> ClaimedJob | None:
    claimed = await jobs.claim(
        conn, owner="w", limit=1, lease_seconds=60, now=clock.now(), quota=quota
    )
    return claimed[0] if claimed else None


async def run_one(conn: connection.Connection, clock: FakeClock) -> str | None:
    """Claim the next job and finish it at once: its name, or None with nothing due."""
    clock.advance(1)
    job = await claim_one(conn, clock)
    if job is None:
        return None
    assert await jobs.complete(conn, job, owner="w", result="/v.mp4", now=clock.now())
    return job.name


async def ask(
    conn: connection.Connection, clock: FakeClock, name: str, user: int, **kw: int
) -> int:
    clock.advance(0.001)  # requests arrive one after another
    return (await enqueue(conn, name, user_id=user, now=clock.now(), **kw)).asset_id


async def test_one_user_s_backlog_does_not_hold_up_the_others(conn: connection.Connection) -> None:
    # User 1 asks for 30 videos, then five other users ask for one each: every one of the
    # five is made before user 1's second, and user 1 is not starved either.
    clock = FakeClock()
    for i in range(30):
        await ask(conn, clock, f"a{i:02d}", 1)
    for user in range(2, 7):
        await ask(conn, clock, f"u{user}", user)
    order = [await run_one(conn, clock) for _ in range(36)]
    assert order[:7] == ["a00", "u2", "u3", "u4", "u5", "u6", "a01"]
    assert order[7:] == [f"a{i:02d}" for i in range(2, 30)] + [None]


async def test_a_user_who_arrives_later_is_not_put_behind_a_backlog(
    conn: connection.Connection,
) -> None:
    clock = FakeClock()
    for i in range(30):
        await ask(conn, clock, f"a{i:02d}", 1)
    assert [await run_one(conn, clock) for _ in range(10)] == [f"a{i:02d}" for i in range(10)]
    await ask(conn, clock, "late", 2)
    # This round's job of user 1 was there first; then the newcomer, not 20 jobs later.
    assert [await run_one(conn, clock) for _ in range(3)] == ["a10", "late", "a11"]


async def test_the_heavy_user_keeps_a_turn_in_every_round(conn: connection.Connection) -> None:
    # A newcomer with one video every round: user 1's backlog still moves, one per round.
    clock = FakeClock()
    for i in range(10):
        await ask(conn, clock, f"a{i}", 1)
    order = []
    for user in range(2, 12):
        await ask(conn, clock, f"u{user}", user)
        order += [await run_one(conn, clock), await run_one(conn, clock)]
    assert order == [name for i in range(10) for name in (f"a{i}", f"u{i + 2}")]


async def test_a_job_started_in_this_round_counts_for_its_owner(
    conn: connection.Connection,
) -> None:
    # User 1's a0 runs, user 2's x0 waits in the same round. User 1 asks again, then user 3:
    # user 3's first goes before user 1's second, though user 1 asked first.
    clock = FakeClock()
    await ask(conn, clock, "a0", 1)
    await ask(conn, clock, "x0", 2)
    running = await claim_one(conn, clock)
    assert running is not None
    assert running.name == "a0"
    await ask(conn, clock, "a1", 1)
    await ask(conn, clock, "b0", 3)
    assert [await run_one(conn, clock) for _ in range(3)] == ["x0", "b0", "a1"]


async def test_higher_priority_first_and_fair_within_a_priority(
    conn: connection.Connection,
) -> None:
    clock = FakeClock()
    for i in range(5):
        await ask(conn, clock, f"free{i}", 1)
    for i in range(3):
        await ask(conn, clock, f"paid-a{i}", 2, priority=5)
    await ask(conn, clock, "paid-b", 3, priority=5)
    await ask(conn, clock, "urgent", 4, priority=9)
    order = [await run_one(conn, clock) for _ in range(10)]
    assert order == [
        "urgent",
        "paid-a0", "paid-b", "paid-a1", "paid-a2",
        "free0", "free1", "free2", "free3", "free4",
    ]  # fmt: skip


async def test_a_higher_priority_request_lifts_a_waiting_job(conn: connection.Connection) -> None:
    clock = FakeClock()
    for i in range(3):
        await ask(conn, clock, f"x{i}", 1)
    shared = await ask(conn, clock, "shared", 2)
    await ask(conn, clock, "shared", 3, priority=4)  # a paying user asks for the same video
    assert await scalar(conn, "SELECT priority FROM video_assets WHERE id = %s", shared) == 4
    assert await run_one(conn, clock) == "shared"
    await ask(conn, clock, "x1", 5, priority=3)
    await ask(conn, clock, "x1", 6, priority=1)  # a lower one lowers nothing
    assert await scalar(conn, "SELECT priority FROM video_assets WHERE name = 'x1'") == 3


async def test_the_priority_is_checked(conn: connection.Connection) -> None:
    for bad in (-1, 10, True):
        with pytest.raises(ConfigError, match="priority must be an integer from 0 to 9"):
            await enqueue(conn, "a", user_id=1, priority=bad)


async def test_retries_keep_their_head_start(conn: connection.Connection) -> None:
    clock = FakeClock()
    for i in range(3):
        await ask(conn, clock, f"a{i}", 1)
    await ask(conn, clock, "b0", 2)
    # a0 fails its first attempt: back in line after a 10 s backoff, with its turn.
    first = await claim_one(conn, clock)
    assert first is not None
    assert first.name == "a0"
    failed = await jobs.record_failure(
        conn, first, owner="w", error="flaky", final=False, backoff_seconds=10,
        breaker=Breaker(), now=clock.now(),
    )  # fmt: skip
    assert failed is jobs.Failure.RETRY
    assert await run_one(conn, clock) == "b0"  # a0 waits out its backoff
    clock.advance(10)
    # Due again, a0 comes first: nothing runs, so its round is the current one, and a
    # newcomer joins that round after it.
    await ask(conn, clock, "c0", 3)
    assert [await run_one(conn, clock) for _ in range(4)] == ["a0", "c0", "a1", "a2"]


async def test_a_retried_asset_goes_first_within_its_priority(conn: connection.Connection) -> None:
    clock = FakeClock()
    failed = await enqueue(conn, "broken", user_id=1, max_attempts=1, now=clock.now())
    job = await claim_one(conn, clock)
    assert job is not None
    assert await jobs.fail(conn, job, owner="w", error="boom", now=clock.now())
    for i in range(3):
        await ask(conn, clock, f"b{i}", 2 + i)
    await ask(conn, clock, "vip", 9, priority=3)
    assert (await retry(conn, failed.asset_id, Actor.telegram(1), now=clock.now())).retried
    order = [await run_one(conn, clock) for _ in range(5)]
    assert order == ["vip", "broken", "b0", "b1", "b2"]


async def test_the_place_in_line_is_the_order_the_jobs_are_claimed_in(
    conn: connection.Connection,
) -> None:
    # A mixed queue: users with backlogs, priorities, a retried asset, a failed attempt
    # waiting out its backoff. Every pending job's place must be where it is claimed.
    clock = FakeClock()
    rng = random.Random(7)
    broken = await enqueue(conn, "broken", user_id=6, max_attempts=1, priority=9)
    flaky = await ask(conn, clock, "flaky", 7, priority=9)
    for i in range(40):
        user = rng.choice([1, 1, 1, 2, 2, 3, 4, 5])
        await ask(conn, clock, f"j{i}", user, priority=rng.choice([0, 0, 0, 2, 5]))
    for _ in range(2):
        job = await claim_one(conn, clock)
        assert job is not None
        if job.id == flaky:
            await jobs.retry_later(conn, job, owner="w", error="x", backoff_seconds=5,
                                   now=clock.now())  # fmt: skip
        elif job.id == broken.asset_id:
            await jobs.fail(conn, job, owner="w", error="boom", now=clock.now())
        else:
            await jobs.complete(conn, job, owner="w", result="/v", now=clock.now())
    await retry(conn, broken.asset_id, Actor.operator("t"), now=clock.now())
    clock.advance(60)  # everything is due
    pending = await rows(conn, "SELECT id FROM video_assets WHERE state = 'pending'")
    places = {}
    for row in pending:
        place = await reports.place_in_line(conn, row["id"])
        assert place is not None
        places[row["id"]] = place.place
    claimed = []
    while (job := await claim_one(conn, clock)) is not None:
        claimed.append(job.id)
    assert len(claimed) == len(pending) > 30
    assert {asset: claimed.index(asset) + 1 for asset in claimed} == places


async def test_first_come_first_served_when_the_workers_say_so(conn: connection.Connection) -> None:
    clock = FakeClock()
    assert await jobs.set_policy(conn, fair=False, max_attempts=3, owner="w", now=None)
    assert not await jobs.set_policy(conn, fair=False, max_attempts=3, owner="w", now=None)
    for i in range(3):
        await ask(conn, clock, f"a{i}", 1)
    await ask(conn, clock, "b0", 2)
    await ask(conn, clock, "p", 3, priority=1)  # priorities still count
    assert [await run_one(conn, clock) for _ in range(5)] == ["p", "a0", "a1", "a2", "b0"]


async def test_a_worker_writes_its_order_for_every_enqueue(db_url: str) -> None:
    async with worker_for(db_url, FAST) as worker:
        worker.fair = False
        await worker.maintain()
    async with await connection.connect(db_url) as conn:
        assert await rows(conn, "SELECT fair, set_by FROM queue_policy") == [
            {"fair": False, "set_by": "w1"}
        ]


# -- the quotas ---------------------------------------------------------------------------


async def test_max_running_holds_across_concurrent_claimers(db_url: str) -> None:
    quota = Quota(max_running=3)
    async with await connection.connect(db_url) as conn:
        for i in range(40):
            await enqueue(conn, f"v{i}", user_id=1 + i % 4)
    claimers = [await connection.connect(db_url) for _ in range(4)]
    try:
        done = 0
        while done < 40:
            # Every claimer at once, each asking for up to 4: never more than 3 running.
            batches = await asyncio.gather(
                *(
                    jobs.claim(c, owner=f"w{i}", limit=4, lease_seconds=60, now=None, quota=quota)
                    for i, c in enumerate(claimers)
                )
            )
            running = [job for batch in batches for job in batch]
            assert (
                await scalar(
                    claimers[0], "SELECT count(*) FROM video_assets WHERE state = 'running'"
                )
                <= 3
            )
            assert running, "the quota was not used"
            for job in running[:2]:  # some finish, the rest keep their slots
                assert await jobs.complete(claimers[0], job, owner="w", result="/v", now=None)
                done += 1
            if len(running) > 2:
                await asyncio.gather(*(jobs.release(claimers[0], j, owner="w", now=None)
                                       for j in running[2:]))  # fmt: skip
    finally:
        for c in claimers:
            await c.close()


async def test_a_lost_worker_s_slot_comes_back_once_its_generator_is_gone(
    conn: connection.Connection,
) -> None:
    """A worker cut off from the database gives its job up as the lease ends and stops the
    generator (SIGTERM, then SIGKILL after a grace); the job is rescued meanwhile. Its slot
    is free when that worker says the generator is gone, or, should it never say (it
    crashed), a stop's grace after the lease's end: never while the generator may run."""
    clock = FakeClock()
    quota = Quota(max_running=1)
    for name in ("a", "b"):
        await ask(conn, clock, name, 1)
    held = await jobs.claim(conn, owner="lost", limit=5, lease_seconds=30, now=clock.now(),
                            quota=quota)  # fmt: skip
    assert [job.name for job in held] == ["a"]
    assert await claim_one(conn, clock, quota) is None  # the one slot is taken
    clock.advance(30.5)  # the lease runs out and the job is rescued
    await jobs.rescue_expired(conn, owner="w", lease_seconds=30, now=clock.now())
    assert await claim_one(conn, clock, quota) is None  # its generator may still be stopping
    assert await jobs.generator_gone(conn, held[0]) is False  # stopped; rescued, not cancelled
    again = await claim_one(conn, clock, quota)
    assert again is not None
    assert again.name == "a"

    clock.advance(60.5)  # this one's worker crashed (claim_one: a 60 s lease): it never says
    await jobs.rescue_expired(conn, owner="w", lease_seconds=30, now=clock.now())
    assert await claim_one(conn, clock, quota) is None
    clock.advance(2)
    await jobs.rescue_expired(conn, owner="w", lease_seconds=30, now=clock.now())
    assert await claim_one(conn, clock, quota) is None
    clock.advance(1)  # the lease's end and a stop's grace (TERM_GRACE_SECONDS, twice)
    assert await claim_one(conn, clock, quota) is not None
    await jobs.rescue_expired(conn, owner="w", lease_seconds=30, now=clock.now())
    assert await scalar(conn, "SELECT count(*) FROM generators_stopping") == 0  # tidied


async def test_a_stop_s_grace_in_the_database_covers_the_worker_s(
    conn: connection.Connection,
) -> None:
    grace = await scalar(
        conn, "SELECT extract(epoch FROM vidretry_generator_gone_by(now()) - now())::float8"
    )
    assert grace >= 2 * TERM_GRACE_SECONDS


async def test_no_sixty_seconds_hold_more_starts_than_the_quota(
    conn: connection.Connection,
) -> None:
    clock = FakeClock()
    # The default window: a minute (tests/acceptance/test_fair_share.py has a shorter one).
    window = WorkerConfig().starts_window_seconds
    assert window == 60
    quota = Quota(max_starts_per_minute=3, starts_window_seconds=window)
    await jobs.prepare_quota(conn, quota)
    for i in range(10):
        await ask(conn, clock, f"v{i}", 1 + i)

    async def starts() -> int:
        claimed = await jobs.claim(
            conn, owner="w", limit=10, lease_seconds=600, now=clock.now(), quota=quota
        )
        return len(claimed)

    assert await starts() == 3
    clock.advance(30)
    assert await starts() == 0
    clock.advance(29.9)
    assert await starts() == 0
    clock.advance(0.1)  # 60 s after the first three: three more, and the quota is used
    assert await starts() == 3
    assert await starts() == 0


# -- "slow down" -----------------------------------------------------------------------


async def test_a_rate_limited_attempt_costs_nothing_and_holds_every_worker_off(
    db_url: str,
) -> None:
    (limited,) = await add(db_url, "limited", seconds=7)
    config = replace(FAST, handler="python:tests.sample_handlers:slow_down", max_attempts=1)
    async with worker_for(db_url, config) as worker:
        assert await worker.process((await worker.claim(1))[0]) is Outcome.RATE_LIMITED
    async with await connection.connect(db_url) as conn:
        (asset,) = await rows(
            conn, "SELECT state, attempts, last_error FROM video_assets WHERE id = %s", limited
        )
        assert asset == {"state": "pending", "attempts": 0, "last_error": None}
        (hold,) = await rows(
            conn, "SELECT extract(epoch FROM until - held_at) AS seconds, detail, held_by"
                  " FROM generator_hold"
        )  # fmt: skip
        assert float(hold["seconds"]) == 7
        assert hold["held_by"] == "w1"
        assert hold["detail"] == "429 Too Many Requests; every worker holds off for 7s"
        assert await scalar(conn, "SELECT streak_assets FROM breaker") == []
        (event,) = await rows(
            conn, "SELECT attempt, detail FROM job_events WHERE kind = 'rate_limited'"
        )
        assert event == {"attempt": 1, "detail": hold["detail"]}
        # Nothing starts until the hold ends, whichever worker asks; then it is first again.
        await add(db_url, "other")
        assert await jobs.claim(conn, owner="w2", limit=5, lease_seconds=9, now=None) == []
        after = await scalar(conn, "SELECT until + interval '1 ms' FROM generator_hold")
        claimed = await jobs.claim(conn, owner="w2", limit=1, lease_seconds=9, now=after)
        assert [job.id for job in claimed] == [limited]


async def test_a_hold_is_extended_never_cut_short(conn: connection.Connection) -> None:
    clock = FakeClock()
    for name in ("a", "b"):
        await ask(conn, clock, name, 1 if name == "a" else 2)
    a, b = await jobs.claim(conn, owner="w", limit=2, lease_seconds=60, now=clock.now())
    first = await jobs.rate_limit(conn, a, owner="w", detail="x", retry_after=30, now=clock.now())
    second = await jobs.rate_limit(conn, b, owner="w", detail="y", retry_after=5, now=clock.now())
    assert first is not None
    assert second == first
    assert await scalar(conn, "SELECT detail FROM generator_hold") == "x"


async def test_a_command_says_slow_down_with_its_exit_status(db_url: str, tmp_path: Path) -> None:
    (asset_id,) = await add(db_url, "a")
    config = replace(
        FAST, handler="command", max_attempts=1,
        command=("sh", "-c", "echo 'Retry-After: 12'; echo 'quota exceeded' >&2; exit 75"),
    )  # fmt: skip
    async with worker_for(db_url, config) as worker:
        assert await worker.process((await worker.claim(1))[0]) is Outcome.RATE_LIMITED
    async with await connection.connect(db_url) as conn:
        assert await scalar(conn, "SELECT attempts FROM video_assets WHERE id = %s", asset_id) == 0
        assert await scalar(conn, "SELECT detail FROM generator_hold") == (
            "exit status 75: quota exceeded; every worker holds off for 12s"
        )


async def test_without_retry_after_the_hold_is_the_backoff(db_url: str) -> None:
    await add(db_url, "a")
    config = replace(
        FAST, handler="command", command=("sh", "-c", "exit 75"), backoff_base_seconds=20
    )
    async with worker_for(db_url, config) as worker:
        assert await worker.process((await worker.claim(1))[0]) is Outcome.RATE_LIMITED
    async with await connection.connect(db_url) as conn:
        seconds = await scalar(
            conn, "SELECT extract(epoch FROM until - held_at) FROM generator_hold"
        )
        assert float(seconds) == 20  # the backoff after attempt 1, no jitter on a hold
