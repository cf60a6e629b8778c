"""The worker's side of the wait: a generator's progress reaches the job at a bounded rate,
and a cancelled job's generator is stopped with no attempt counted."""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from dataclasses import replace
from pathlib import Path

from tests.integration.test_worker import FAST, add, state_of, worker_for
from tests.support import eventually, rows, scalar
from vidretry.db import connection
from vidretry.queue.cancel import CancelOutcome, withdraw
from vidretry.queue.handlers import TERM_GRACE_SECONDS
from vidretry.queue.progress import ProgressWriter, parse_progress_line
from vidretry.queue.worker import Outcome

# A generator that reports progress as fast as it can for a while, then a last 100 %.
# (No braces: the command line is a template.)
CHATTY = (
    "import sys, time\n"
    "end = time.monotonic() + float(sys.argv[1])\n"
    "n = 0\n"
    "while time.monotonic() < end:\n"
    "    n += 1\n"
    "    print('progress', n % 100, flush=True)\n"
    "    print('frame', n, flush=True)\n"
    "    time.sleep(0.01)\n"
    "print('progress 100', flush=True)\n"
    "open(sys.argv[2], 'wb').write(b'a video')\n"
)

# A generator that records SIGTERM and then takes its time (or hangs, ignoring it).
STUBBORN = (
    "import signal, sys, time\n"
    "log = open(sys.argv[1], 'a', buffering=1)\n"
    "def term(*_):\n"
    "    log.write('term\\n')\n"
    "    if sys.argv[2] == 'exit':\n"
    "        sys.exit(0)\n"
    "signal.signal(signal.SIGTERM, term)\n"
    "log.write('started\\n')\n"
    "print('progress 10', flush=True)\n"
    "while True:\n"
    "    time.sleep(0.05)\n"
)


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def test_progress_lines() -> None:
    assert parse_progress_line("progress 40") == 0.4
    assert parse_progress_line("  progress 12.5%\n") == 0.125
    assert parse_progress_line("Progress 250") == 1.0
    assert parse_progress_line("progress -3") == 0.0
    for other in ("progress", "progress nan", "progress forty", "frame 12", "", "progressive 1"):
        assert parse_progress_line(other) is None


async def test_the_writer_writes_the_first_report_at_once_then_at_most_every_interval() -> None:
    writes: list[float] = []
    intervals: list[asyncio.Future[None]] = []  # each ends when the test says so

    async def write(fraction: float) -> None:
        writes.append(fraction)

    async def sleep(seconds: float) -> None:
        assert seconds == 0.2
        interval = asyncio.get_running_loop().create_future()
        intervals.append(interval)
        await interval

    async def settle() -> None:  # the writer's task runs as far as it can
        for _ in range(10):
            await asyncio.sleep(0)

    writer = ProgressWriter(write, every=0.2, sleep=sleep)
    writer.report(0.1)
    await settle()
    assert writes == [0.1]  # the first one is not held back
    for fraction in (0.2, 0.3, 0.35):
        writer.report(fraction)
        await settle()
    assert writes == [0.1]  # nothing more within the interval...
    intervals[-1].set_result(None)
    await settle()
    assert writes == [0.1, 0.35]  # ...then the latest report alone
    intervals[-1].set_result(None)
    await settle()
    assert (writes, writer.task) == ([0.1, 0.35], None)  # nothing new: nothing written, idle
    writer.report(0.5)
    await settle()
    assert writes == [0.1, 0.35, 0.5]  # after a quiet interval, at once again
    writer.report(float("nan"))
    assert writer.latest == 0.5
    await writer.stop()
    writer.report(0.9)
    await settle()
    assert writes == [0.1, 0.35, 0.5]  # stopped


async def test_a_chatty_generator_writes_its_progress_at_most_every_two_seconds(
    db_url: str, tmp_path: Path
) -> None:
    """With the default progress_write_seconds, hundreds of reports a second reach the job
    as one write per 2 s, each waking the notifiers."""
    (asset_id,) = await add(db_url, "a", seconds=5)
    config = replace(
        FAST,
        handler="command",
        command=(sys.executable, "-c", CHATTY, "{seconds}", "{output}"),
        output_dir=tmp_path,
        progress_write_seconds=replace(FAST).progress_write_seconds,
    )
    assert config.progress_write_seconds == 2.0
    wakes: list[float] = []
    seen: list[float] = []
    async with await connection.connect(db_url) as listener, worker_for(db_url, config) as worker:
        await listener.execute("LISTEN vidretry_progress")
        task = asyncio.create_task(worker.run(asyncio.Event(), drain=True))
        async for _ in listener.notifies(timeout=8):
            wakes.append(time.monotonic())
            async with await connection.connect(db_url) as conn:
                seen.append(await scalar(conn, "SELECT progress FROM video_assets"))
        await asyncio.wait_for(task, 30)
    assert (await state_of(db_url, asset_id))["state"] == "available"
    assert 2 <= len(wakes) <= 4  # 5 s of reports: one write at once, then one per 2 s
    gaps = [b - a for a, b in itertools.pairwise(wakes)]
    assert min(gaps) >= 2.0 - 0.1
    assert all(0 <= p <= 1 for p in seen)


async def test_cancelling_a_running_job_stops_its_generator_without_counting_the_attempt(
    db_url: str, tmp_path: Path
) -> None:
    """The generator gets SIGTERM within heartbeat_seconds + 2 s of the cancel; one that
    ignores it is killed after the grace. The job ends cancelled, its attempt given back,
    no failure recorded (the breaker sees nothing)."""
    for mode in ("exit", "ignore"):
        log = tmp_path / f"{mode}.log"
        (asset_id,) = await add(db_url, f"a-{mode}", log=str(log), mode=mode)
        config = replace(
            FAST,
            handler="command",
            command=(sys.executable, "-c", STUBBORN, "{log}", "{mode}"),
            output_dir=tmp_path,
            heartbeat_seconds=1,
        )
        async with worker_for(db_url, config) as worker:
            stop = asyncio.Event()
            task = asyncio.create_task(worker.run(stop))
            assert await eventually(lambda log=log: "started" in _read(log), within=20)
            async with await connection.connect(db_url) as conn:
                cancelled_at = time.monotonic()
                result = await withdraw(conn, asset_id, 1)
            assert result.outcome is CancelOutcome.CANCELLED
            assert result.was_running
            assert await eventually(lambda: worker.outcomes[Outcome.CANCELLED] >= 1, within=20)
            stopped_within = time.monotonic() - cancelled_at
            stop.set()
            await asyncio.wait_for(task, 30)
        worker.outcomes.clear()
        assert "term" in log.read_text()
        assert stopped_within <= config.heartbeat_seconds + 2 + (
            TERM_GRACE_SECONDS if mode == "ignore" else 0
        )
        assert await state_of(db_url, asset_id) == {
            "state": "cancelled", "attempts": 0, "result": None, "last_error": None,
        }  # fmt: skip
        async with await connection.connect(db_url) as conn:
            kinds = await rows(
                conn, "SELECT kind FROM job_events WHERE asset_id = %s ORDER BY id", asset_id
            )
            assert [k["kind"] for k in kinds] == ["enqueued", "claimed", "withdrawn", "cancelled"]
            assert await scalar(conn, "SELECT cardinality(streak_assets) FROM breaker") == 0


# A generator that notes whether another one is alive when it starts, and cleans up for a
# while when asked to stop (within the kill grace), then leaves.
COUNTED = (
    "import os, signal, sys, time\n"
    "alive, asset = sys.argv[1], sys.argv[2]\n"
    "others = sorted(os.listdir(alive))\n"
    "starts = open(os.path.join(alive, '..', 'starts'), 'a')\n"
    "starts.write(asset + ' ' + ','.join(others) + chr(10))\n"
    "starts.close()\n"
    "mine = os.path.join(alive, asset)\n"
    "open(mine, 'w').close()\n"
    "def term(*_):\n"
    "    time.sleep(float(sys.argv[3]))\n"
    "    os.unlink(mine)\n"
    "    sys.exit(1)\n"
    "signal.signal(signal.SIGTERM, term)\n"
    "while True:\n"
    "    time.sleep(0.05)\n"
)


async def test_a_cancelled_jobs_slot_is_free_only_once_its_generator_is_gone(
    db_url: str, tmp_path: Path
) -> None:
    """max_running = 1, a worker with room for two: the running job is cancelled. Its
    generator stops within a heartbeat and its cleanup; the next job's generator starts
    only after it is gone, never beside it."""
    alive = tmp_path / "alive"
    alive.mkdir()
    cleanup = TERM_GRACE_SECONDS / 2
    first, second = await add(db_url, "a", "b", alive=str(alive), cleanup=cleanup)
    config = replace(
        FAST,
        handler="command",
        command=(sys.executable, "-c", COUNTED, "{alive}", "{asset_id}", "{cleanup}"),
        output_dir=tmp_path,
        heartbeat_seconds=1,
        max_running=1,
    )
    starts = tmp_path / "starts"
    async with worker_for(db_url, config) as worker:
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        assert await eventually(lambda: (alive / str(first)).exists(), within=20)
        async with await connection.connect(db_url) as conn:
            assert (await withdraw(conn, first, 1)).outcome is CancelOutcome.CANCELLED
        assert await eventually(lambda: (alive / str(second)).exists(), within=20)
        async with await connection.connect(db_url) as conn:
            await withdraw(conn, second, 1)
        assert await eventually(lambda: worker.outcomes[Outcome.CANCELLED] == 2, within=20)
        stop.set()
        await asyncio.wait_for(task, 30)
    assert starts.read_text().splitlines() == [f"{first} ", f"{second} "]  # none beside another
