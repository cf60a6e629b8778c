"""The circuit breaker's store, on a real database with a clock moved by hand: what the
property test (tests/properties) does not reach — the window, a disabled breaker, and what
the admins read."""

from __future__ import annotations

import asyncio
import itertools
import random
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from tests.integration.test_worker import FAST, add
from tests.support import FakeClock, eventually, rows, scalar
from vidretry.clock import DatabaseClock
from vidretry.db import connection
from vidretry.db.pool import open_pool
from vidretry.models import ClaimedJob
from vidretry.queue import breaker, jobs
from vidretry.queue.breaker import Breaker
from vidretry.queue.enqueue import enqueue
from vidretry.queue.handlers import build_handler
from vidretry.queue.worker import Worker
from vidretry.telegram import outbox
from vidretry.telegram.notifications import deliver_to
from vidretry.telegram.transport import InlineButton, Recipient
from vidretry.texts import MessagesConfig

ADMIN = 900
USERS = itertools.count(1)


async def fail_once_each(
    conn: connection.Connection, clock: FakeClock, names: list[str], settings: Breaker
) -> list[jobs.Failure]:
    """Enqueue ``names``, claim them and fail each attempt once, in order. Each has a user
    of its own: the fair order would put one user's later job behind their earlier ones."""
    for name in names:
        await enqueue(conn, name, user_id=next(USERS))
    claimed = await jobs.claim(conn, owner="w", limit=len(names), lease_seconds=30, now=clock.now())
    return [await fail(conn, clock, job, settings) for job in claimed]


async def fail(
    conn: connection.Connection, clock: FakeClock, job: ClaimedJob, settings: Breaker
) -> jobs.Failure:
    return await jobs.record_failure(
        conn, job, owner="w", error="401 wrong API key", final=job.is_last_attempt,
        backoff_seconds=10, breaker=settings, now=clock.now(),
    )  # fmt: skip


async def test_failures_older_than_the_window_are_forgotten(db_url: str) -> None:
    clock = FakeClock()
    settings = Breaker(min_assets=3, window_seconds=60, admins=(ADMIN,))
    async with await connection.connect(db_url) as conn:
        assert await fail_once_each(conn, clock, ["a", "b"], settings) == [jobs.Failure.RETRY] * 2
        clock.advance(61)  # a and b fell out of the window: c is the first of a new streak
        assert await fail_once_each(conn, clock, ["c"], settings) == [jobs.Failure.RETRY]
        assert await scalar(conn, "SELECT streak_assets FROM breaker") == [3]
        assert await fail_once_each(conn, clock, ["d", "e"], settings) == [
            jobs.Failure.RETRY,
            jobs.Failure.PAUSED,
        ]
        # c, d and e were given back their attempt; a and b (outside the streak) were not.
        found = await rows(conn, "SELECT name, attempts FROM video_assets ORDER BY id")
        assert {r["name"]: r["attempts"] for r in found} == {"a": 1, "b": 1, "c": 0, "d": 0, "e": 0}


async def test_while_every_attempt_fails_the_jobs_not_yet_tried_go_first(db_url: str) -> None:
    # By the fair order one user's job due again after a failed attempt goes before their
    # later ones. While nothing succeeds it waits for them instead: a generator that fails
    # every job (slower than the backoff) would otherwise use up the same few jobs'
    # attempts before the breaker saw failures on enough different assets to pause.
    clock = FakeClock()
    settings = Breaker(min_assets=5)

    async def claim(limit: int) -> list[str]:
        claimed = await jobs.claim(conn, owner="w", limit=limit, lease_seconds=30, now=clock.now())
        return [job.name for job in claimed]

    async with await connection.connect(db_url) as conn:
        for name in "abcd":
            await enqueue(conn, name, user_id=1)
        first = await jobs.claim(conn, owner="w", limit=2, lease_seconds=30, now=clock.now())
        assert [job.name for job in first] == ["a", "b"]
        for job in first:
            assert await fail(conn, clock, job, settings) is jobs.Failure.RETRY
        clock.advance(11)  # a and b are due again
        second = await jobs.claim(conn, owner="w", limit=2, lease_seconds=30, now=clock.now())
        assert [job.name for job in second] == ["c", "d"]  # not a and b
        assert await claim(1) == ["a"]  # nothing else is due
        await jobs.complete(conn, second[0], owner="w", result="/v.mp4", now=clock.now())
        await enqueue(conn, "e", user_id=1)
        assert await claim(1) == ["b"]  # a success ended the streak: the fair order again


async def test_a_disabled_breaker_never_trips_but_a_manual_pause_still_refunds(
    db_url: str,
) -> None:
    clock = FakeClock()
    off = Breaker(enabled=False, min_assets=2)
    async with await connection.connect(db_url) as conn:
        failures = await fail_once_each(conn, clock, [f"v{i}" for i in range(6)], off)
        assert failures == [jobs.Failure.RETRY] * 6
        assert await scalar(conn, "SELECT count(*) FROM queue_pauses") == 0
        clock.advance(60)
        (job,) = await jobs.claim(conn, owner="w", limit=1, lease_seconds=30, now=clock.now())
        assert (
            await breaker.pause(conn, actor="operator:ops", detail="maintenance", now=clock.now())
            is breaker.Paused.PAUSED
        )
        assert await fail(conn, clock, job, off) is jobs.Failure.REFUNDED
        assert await scalar(conn, "SELECT attempts FROM video_assets WHERE id = %s", job.id) == 1
        assert await jobs.claim(conn, owner="w", limit=5, lease_seconds=30, now=clock.now()) == []
        assert await jobs.claim_probe(conn, owner="w", lease_seconds=30, now=clock.now()) is None


@dataclass
class Recorder:
    texts: list[tuple[str, InlineButton | None]] = field(default_factory=list)

    async def send_text(self, to: Recipient, html_text: str, button: InlineButton | None) -> int:
        self.texts.append((html_text, button))
        return len(self.texts)


async def test_the_admins_read_why_the_queue_paused_and_how_long_it_was(db_url: str) -> None:
    clock = FakeClock()
    settings = Breaker(min_assets=2, probe_seconds=30, admins=(ADMIN,))
    async with await connection.connect(db_url) as conn:
        names = ["a", "b", "c"]
        assert (await fail_once_each(conn, clock, names, settings))[1] is jobs.Failure.PAUSED
        clock.advance(30)
        probe = await jobs.claim_probe(conn, owner="w", lease_seconds=30, now=clock.now())
        assert probe is not None
        assert probe.probe
        await jobs.complete(conn, probe, owner="w", result="/v.mp4", now=clock.now())
        resumed = await breaker.resume(
            conn, actor="w", admins=[ADMIN], probe=probe.id, now=clock.now()
        )
        assert resumed is not None
        assert resumed.paused_seconds == 30
        notes = await outbox.claim(conn, owner="n", limit=10, lease_seconds=30, now=clock.now())
    recorder = Recorder()
    for note in notes:
        if note.asset_id is not None:
            continue  # the probe's video, to its user
        await deliver_to(recorder, MessagesConfig(), note)  # type: ignore[arg-type]
    (paused, no_button), (resumed_text, no_button_either) = recorder.texts
    assert "Ждут: 3" in paused
    assert "401 wrong API key" in paused
    assert "0:00:30" in resumed_text
    assert no_button is None
    assert no_button_either is None


async def test_a_probe_is_claimed_by_the_claim_s_own_steps_and_clock(db_url: str) -> None:
    """One rule, one place: the probe is a claim (claim_jobs) of the job the breaker chose,
    timed by the statement as every claim is, not by the transaction's start; with no room
    under the quotas (here: the generator asked to slow down), nothing is chosen either."""
    clock = FakeClock()
    settings = Breaker(min_assets=2, probe_seconds=30, admins=(ADMIN,))
    async with await connection.connect(db_url) as conn:
        assert (await fail_once_each(conn, clock, ["a", "b", "c"], settings))[1] is (
            jobs.Failure.PAUSED
        )
        # The probe and its jobs are due by the database's own clock, which this test uses.
        await conn.execute("UPDATE queue_pauses SET next_probe_at = '-infinity'")
        await conn.execute("UPDATE video_assets SET run_at = '-infinity' WHERE state = 'pending'")
        await conn.execute(
            "INSERT INTO generator_hold (until, detail, held_by, held_at)"
            " VALUES (now() + interval '1 hour', '429', 'w', now())"
        )
        assert await jobs.claim_probe(conn, owner="w", lease_seconds=30, now=None) is None
        assert await scalar(conn, "SELECT probe_asset FROM queue_pauses") is None  # unchosen
        await conn.execute("DELETE FROM generator_hold")
        async with conn.transaction():
            began = await scalar(conn, "SELECT now()")
            await conn.execute("SELECT pg_sleep(0.5)")
            probe = await jobs.claim_probe(conn, owner="w", lease_seconds=30, now=None)
            assert probe is not None
            assert probe.probe
            leased = await scalar(
                conn, "SELECT lease_expires_at FROM video_assets WHERE id = %s", probe.id
            )
        assert (leased - began).total_seconds() >= 30.5  # the statement's time, as a claim's
        (event,) = await rows(
            conn, "SELECT detail FROM job_events WHERE kind = 'claimed' AND asset_id = %s"
            " ORDER BY id DESC LIMIT 1", probe.id,
        )  # fmt: skip
        assert event == {"detail": "probe: the queue is paused"}


async def claim_one(conn: connection.Connection, name: str, *, last: bool) -> ClaimedJob:
    """``name`` enqueued and claimed, by the database's clock; ``last``: on its last attempt."""
    await enqueue(conn, name, user_id=next(USERS), max_attempts=1 if last else 3)
    (job,) = await jobs.claim(conn, owner="w", limit=1, lease_seconds=30, now=None)
    return job


async def test_a_failure_for_good_before_the_trip_is_recorded_before_the_pause(
    db_url: str,
) -> None:
    """By the database's clock, as in production: the transaction that trips the breaker
    began (its worker sent BEGIN, then ran its other tasks) before another worker's last
    attempt failed for good, which got the breaker's lock first and was not held back by a
    pause that did not exist yet. The record says so: the failure comes before the pause
    (the chaos run read the transaction's start as the pause's, and saw an asset fail for
    good while the queue was paused)."""
    settings = Breaker(min_assets=3)
    error = "503 from the render service"
    async with await connection.connect(db_url) as conn, await connection.connect(db_url) as other:
        first = await claim_one(conn, "first", last=False)
        retry = await jobs.record_failure(
            conn, first, owner="w", error=error, final=False, backoff_seconds=10,
            breaker=settings, now=None,
        )  # fmt: skip
        assert retry is jobs.Failure.RETRY
        last = await claim_one(conn, "last", last=True)
        tripping = await claim_one(conn, "tripping", last=False)
        async with other.transaction():
            await other.execute("SELECT 1")  # BEGIN is sent; its worker does other things
            failed = await jobs.record_failure(
                conn, last, owner="w", error=error, final=True, backoff_seconds=0,
                breaker=settings, now=None,
            )  # fmt: skip
            assert failed is jobs.Failure.FAILED
            verdict = await breaker.judge_failure(
                other, tripping, breaker=settings, owner="w", error=error, now=None
            )
            assert verdict is breaker.Verdict.TRIPPED
        (pause,) = await rows(conn, "SELECT paused_at FROM queue_pauses")
        (failure,) = await rows(conn, "SELECT created_at FROM job_events WHERE kind = 'failed'")
        assert failure["created_at"] < pause["paused_at"]


async def test_a_failure_for_good_after_a_resume_is_recorded_after_it(db_url: str) -> None:
    """A last attempt fails while the queue is paused; its transaction begins, then waits for
    the breaker's lock (another failure holds it), and the queue is resumed meanwhile: it
    counts, and fails for good — after the resume, which is what the record says."""
    settings = Breaker(min_assets=3)
    async with (
        await connection.connect(db_url) as conn,
        await connection.connect(db_url) as holder,
        await connection.connect(db_url) as operator,
    ):
        last = await claim_one(conn, "last", last=True)
        assert await breaker.pause(operator, actor="op", detail=None) is breaker.Paused.PAUSED
        async with holder.transaction():
            await holder.execute("SELECT true FROM breaker FOR UPDATE")  # another failure's
            failing = asyncio.create_task(
                jobs.record_failure(
                    conn, last, owner="w", error="render failed", final=True,
                    backoff_seconds=0, breaker=settings, now=None,
                )
            )  # fmt: skip
            assert await eventually(lambda: _waits(holder, conn), within=10)
            assert await breaker.resume(operator, actor="op", admins=()) is not None
        assert await failing is jobs.Failure.FAILED
        (pause,) = await rows(conn, "SELECT resumed_at FROM queue_pauses")
        (failure,) = await rows(conn, "SELECT created_at FROM job_events WHERE kind = 'failed'")
        assert failure["created_at"] > pause["resumed_at"]


async def _waits(conn: connection.Connection, waiter: connection.Connection) -> bool:
    """Whether ``waiter``'s statement waits for a lock."""
    pid = waiter.info.backend_pid
    return bool(
        await scalar(conn, "SELECT count(*) FROM pg_locks WHERE pid = %s AND NOT granted", pid)
    )


@pytest.mark.slow  # two probes, 2 s and 4 s apart
async def test_a_probe_starts_when_it_is_due_not_at_the_next_upkeep(
    db_url: str, tmp_path: Path
) -> None:
    """``breaker_probe_seconds = 2`` beside a long lease (the worker's upkeep, a quarter of
    it, every 15 s) and a 2 s poll: the first probe is claimed when it is due, about 2 s after
    the pause opened, not at the next upkeep; so is the next one, after the doubled interval.
    Times are the database's (the worker's clock)."""
    config = replace(
        FAST, concurrency=1, lease_seconds=60, heartbeat_seconds=5, poll_interval_seconds=2.0,
        output_dir=tmp_path, handler="python:tests.sample_handlers:fail",
    )  # fmt: skip
    settings = Breaker(min_assets=2, probe_seconds=2, probe_max_seconds=4)
    await add(db_url, "a", "b", "c", users=(1,))
    async with await connection.connect(db_url) as conn, open_pool(db_url, max_size=4) as pool:
        worker = Worker(
            pool, config, build_handler(config), listener=None, clock=DatabaseClock(),
            rng=random.Random(1), breaker=settings, results=None,
        )  # fmt: skip
        assert worker.maintenance_interval_seconds == 15
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        probes = (
            "SELECT e.created_at - p.paused_at AS after FROM job_events AS e, queue_pauses AS p"
            " WHERE e.kind = 'claimed' AND e.detail = 'probe: the queue is paused'"
            " ORDER BY e.id"
        )
        try:
            assert await eventually(lambda: _count(conn, probes, 2), within=30)
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
        first, second = [row["after"].total_seconds() for row in await rows(conn, probes)]
    # Due 2 s after the pause, then 4 s after the first probe failed (it fails at once).
    assert 2 <= first < 2 + 5, first
    assert first + 4 <= second < first + 4 + 5, second


async def _count(conn: connection.Connection, query: str, n: int) -> bool:
    return len(await rows(conn, query)) >= n
