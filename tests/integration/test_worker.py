"""The worker against a real database: outcomes, heartbeats, lost leases, concurrency, wake-up."""

from __future__ import annotations

import asyncio
import random
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

from psycopg_pool import AsyncConnectionPool

from tests.support import eventually, rows, scalar
from vidretry.app.daemons import build_worker
from vidretry.config import Config, WorkerConfig
from vidretry.db import connection
from vidretry.db.pool import open_pool
from vidretry.queue.enqueue import enqueue
from vidretry.queue.handlers import build_handler
from vidretry.queue.worker import Outcome, Worker

FAST = WorkerConfig(
    concurrency=2,
    lease_seconds=5,
    heartbeat_seconds=1,
    backoff_base_seconds=0,
    poll_interval_seconds=0.1,
    shutdown_grace_seconds=1,
    handler="python:tests.sample_handlers:succeed",
)


@asynccontextmanager
async def worker_for(db_url: str, config: WorkerConfig, name: str = "w1") -> AsyncIterator[Worker]:
    """A worker whose videos go to a temporary directory of its own (the default
    ``output_dir``, "output", would be the working directory's)."""
    with tempfile.TemporaryDirectory(prefix="vidretry-videos-") as videos:
        if not config.output_dir.is_absolute():
            config = replace(config, output_dir=Path(videos))
        async with open_pool(db_url, max_size=config.concurrency + 2) as pool:
            yield make_worker(db_url, pool, config, name)


def video_of(worker: Worker, asset_id: int, retry_round: int = 0) -> str:
    """The URI a video the sample handlers made is kept under: where they wrote it."""
    return (worker.config.output_dir / f"{asset_id}-g{retry_round}.mp4").as_uri()


def make_worker(
    db_url: str, pool: AsyncConnectionPool[connection.Connection], config: WorkerConfig, name: str
) -> Worker:
    return build_worker(
        pool, Config(worker=config), build_handler(config), url=db_url, rng=random.Random(1),
        name=name,
    )  # fmt: skip


async def drained(worker: Worker) -> None:
    """Run the worker as `vidretry worker --drain` does, until nothing is left to do."""
    await asyncio.wait_for(worker.run(asyncio.Event(), drain=True), 30)


async def add(
    db_url: str, *names: str, users: tuple[int, ...] = (1,), **params: object
) -> list[int]:
    ids = []
    async with await connection.connect(db_url) as conn:
        for name in names:
            for user in users:
                result = await enqueue(conn, name, user_id=user, params=dict(params))
            ids.append(result.asset_id)
    return ids


async def state_is(db_url: str, asset_id: int, state: str) -> bool:
    return (await state_of(db_url, asset_id))["state"] == state


async def state_of(db_url: str, asset_id: int) -> dict[str, object]:
    async with await connection.connect(db_url) as conn:
        (row,) = await rows(
            conn,
            "SELECT state, attempts, result, last_error FROM video_assets WHERE id = %s",
            asset_id,
        )
        return row


async def test_success(db_url: str) -> None:
    (asset_id,) = await add(db_url, "a", users=(1, 2))
    async with worker_for(db_url, FAST) as worker:
        await drained(worker)
    assert worker.outcomes == {Outcome.SUCCEEDED: 1}
    assert await state_of(db_url, asset_id) == {
        "state": "available",
        "attempts": 1,
        "result": video_of(worker, asset_id),
        "last_error": None,
    }


async def test_three_failures_then_failed_for_good(db_url: str) -> None:
    (asset_id,) = await add(db_url, "a", users=(1, 2))
    config = replace(FAST, handler="command", command=("sh", "-c", "echo no GPU >&2; exit 3"))
    async with worker_for(db_url, config) as worker:
        await asyncio.wait_for(worker.run(asyncio.Event(), drain=True), 20)
    assert await state_of(db_url, asset_id) == {
        "state": "failed",
        "attempts": 3,
        "result": None,
        "last_error": "exit status 3: no GPU",
    }
    async with await connection.connect(db_url) as conn:
        kinds = [r["kind"] for r in await rows(conn, "SELECT kind FROM job_events ORDER BY id")]
        assert kinds == ["enqueued", "requested"] + ["claimed", "attempt_failed"] * 2 + [
            "claimed",
            "failed",
        ]
        assert await scalar(conn, "SELECT count(*) FROM notifications WHERE kind = 'failed'") == 2


async def test_permanent_error_skips_the_remaining_attempts(db_url: str) -> None:
    (asset_id,) = await add(db_url, "a")
    config = replace(FAST, handler="python:tests.sample_handlers:fail_permanently")
    async with worker_for(db_url, config) as worker:
        await asyncio.wait_for(worker.run(asyncio.Event(), drain=True), 20)
    assert (await state_of(db_url, asset_id))["attempts"] == 1
    assert (await state_of(db_url, asset_id))["state"] == "failed"


async def test_a_flaky_job_succeeds_on_its_second_attempt(db_url: str) -> None:
    (asset_id,) = await add(db_url, "a")
    config = replace(FAST, handler="python:tests.sample_handlers:fail_once")
    async with worker_for(db_url, config) as worker:
        await asyncio.wait_for(worker.run(asyncio.Event(), drain=True), 20)
    state = await state_of(db_url, asset_id)
    assert (state["state"], state["attempts"], state["last_error"]) == (
        "available",
        2,
        "RuntimeError: flaky GPU",
    )


# Jobs of 2.5 s on a 1 s lease, with another worker rescuing expired leases all along.
LONG_JOBS = replace(
    FAST,
    handler="python:tests.sample_handlers:sleep_then_succeed",
    lease_seconds=1,
    heartbeat_seconds=0.2,
)


@asynccontextmanager
async def rescuer_running(db_url: str) -> AsyncIterator[None]:
    async with worker_for(db_url, LONG_JOBS, "rescuer") as rescuer:

        async def keep_rescuing() -> None:
            while True:
                await rescuer.rescuer.run_once()
                await asyncio.sleep(0.1)

        rescuing = asyncio.create_task(keep_rescuing())
        try:
            yield
        finally:
            rescuing.cancel()


async def test_heartbeat_keeps_a_long_job_leased(db_url: str) -> None:
    (asset_id,) = await add(db_url, "a", seconds=2.5)
    async with worker_for(db_url, LONG_JOBS) as worker, rescuer_running(db_url):
        await drained(worker)
    assert worker.outcomes == {Outcome.SUCCEEDED: 1}
    assert await state_of(db_url, asset_id) == {
        "state": "available",
        "attempts": 1,
        "result": video_of(worker, asset_id),
        "last_error": None,
    }


async def test_a_lost_lease_cancels_the_handler_and_changes_nothing(db_url: str) -> None:
    (asset_id,) = await add(db_url, "a")
    config = replace(FAST, handler="python:tests.sample_handlers:hang", heartbeat_seconds=0.2)
    async with worker_for(db_url, config) as worker:
        running = asyncio.create_task(drained(worker))
        assert await eventually(lambda: state_is(db_url, asset_id, "running"), within=5)
        async with await connection.connect(db_url) as conn:  # someone else took the job over
            await conn.execute(
                "UPDATE video_assets SET lease_token = gen_random_uuid(), lease_owner = 'other'"
            )
        await asyncio.wait_for(running, 5)
    assert worker.outcomes == {Outcome.LOST: 1}
    async with await connection.connect(db_url) as conn:
        assert (
            await scalar(conn, "SELECT lease_owner FROM video_assets WHERE id = %s", asset_id)
            == "other"
        )


async def test_one_heartbeat_keeps_every_job_leased_and_cancels_only_the_lost_one(
    db_url: str,
) -> None:
    kept, taken = await add(db_url, "kept", "taken", seconds=2.5)
    async with worker_for(db_url, LONG_JOBS) as worker, rescuer_running(db_url):
        running = asyncio.create_task(drained(worker))
        for asset in (kept, taken):
            assert await eventually(lambda a=asset: state_is(db_url, a, "running"), within=5)
        async with await connection.connect(db_url) as conn:  # someone else took one job over
            await conn.execute(
                "UPDATE video_assets SET lease_token = gen_random_uuid(), lease_owner = 'other',"
                " lease_expires_at = now() + interval '1 hour' WHERE id = %s",
                (taken,),
            )
        await asyncio.wait_for(running, 10)
    # Both ran past their 1 s lease on one heartbeat; the lost one was abandoned at once.
    assert worker.outcomes == {Outcome.SUCCEEDED: 1, Outcome.LOST: 1}
    assert (await state_of(db_url, kept))["state"] == "available"
    async with await connection.connect(db_url) as conn:
        assert await scalar(conn, "SELECT lease_owner FROM video_assets WHERE id = %s", taken) == (
            "other"
        )
        assert await scalar(conn, "SELECT count(*) FROM job_events WHERE kind = 'rescued'") == 0


async def test_workers_on_separate_connections_never_claim_a_job_twice(db_url: str) -> None:
    ids = await add(db_url, *(f"v{i}" for i in range(120)), seconds=0.005)
    config = replace(FAST, handler="python:tests.sample_handlers:sleep_then_succeed", concurrency=3)
    async with (
        worker_for(db_url, config, "w1") as w1,
        worker_for(db_url, config, "w2") as w2,
        worker_for(db_url, config, "w3") as w3,
        worker_for(db_url, config, "w4") as w4,
    ):
        await asyncio.wait_for(
            asyncio.gather(*(w.run(asyncio.Event(), drain=True) for w in (w1, w2, w3, w4))), 60
        )
    async with await connection.connect(db_url) as conn:
        claims = await rows(
            conn, "SELECT asset_id, count(*) AS n FROM job_events WHERE kind = 'claimed' GROUP BY 1"
        )
        assert len(claims) == len(ids)
        assert {c["n"] for c in claims} == {1}
        assert await scalar(
            conn, "SELECT count(*) FROM video_assets WHERE state = 'available'"
        ) == len(ids)
        workers = await rows(conn, "SELECT DISTINCT actor FROM job_events WHERE kind = 'claimed'")
        assert len(workers) > 1  # the work was actually shared


async def test_notify_wakes_an_idle_worker_long_before_its_poll(db_url: str) -> None:
    config = replace(FAST, poll_interval_seconds=60)
    stop = asyncio.Event()
    async with worker_for(db_url, config) as worker, await connection.connect(db_url) as conn:
        running = asyncio.create_task(worker.run(stop))
        assert worker.listener is not None
        await asyncio.wait_for(worker.listener.ready.wait(), 10)  # idle, listening
        # A job written without a notification waits: nothing else wakes an idle worker
        # before its 60-second poll (so what follows is the notification's doing). It is
        # due a second later, so that no round already under way can take it.
        asset_id = await scalar(
            conn,
            "INSERT INTO video_assets (name, run_at) VALUES ('a', now() + interval '1 second')"
            " RETURNING id",
        )
        assert not await eventually(lambda: state_is(db_url, asset_id, "available"), within=2.5)
        await conn.execute("SELECT pg_notify('vidretry_jobs', '')")
        assert await eventually(lambda: state_is(db_url, asset_id, "available"), within=5)
        stop.set()
        await asyncio.wait_for(running, 10)


async def test_stop_releases_jobs_that_outlive_the_grace_period(db_url: str) -> None:
    (asset_id,) = await add(db_url, "a")
    config = replace(FAST, handler="python:tests.sample_handlers:hang", shutdown_grace_seconds=0.2)
    stop = asyncio.Event()
    async with worker_for(db_url, config) as worker:
        running = asyncio.create_task(worker.run(stop))
        assert await eventually(lambda: state_is(db_url, asset_id, "running"), within=5)
        stop.set()
        await asyncio.wait_for(running, 10)
    assert await state_of(db_url, asset_id) == {
        "state": "pending",
        "attempts": 0,
        "result": None,
        "last_error": None,
    }
    async with await connection.connect(db_url) as conn:
        assert await scalar(conn, "SELECT count(*) FROM job_events WHERE kind = 'released'") == 1


async def test_command_handler_writes_into_output_dir(db_url: str, tmp_path: Path) -> None:
    (asset_id,) = await add(db_url, "a", voice="alto")
    config = replace(
        FAST,
        handler="command",
        command=("sh", "-c", 'echo "$1" > "$0"', "{output}", "{voice}"),
        output_dir=tmp_path,
    )
    async with worker_for(db_url, config) as worker:
        await drained(worker)
    output = tmp_path / f"{asset_id}-g0.mp4"
    assert (await state_of(db_url, asset_id))["result"] == output.as_uri()
    assert output.read_text() == "alto\n"
