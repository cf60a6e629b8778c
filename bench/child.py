"""Worker processes for the benchmark, one system each: ``python -m bench.child SYSTEM ...``.

Every child records what it processed (job id, start time) and writes it as JSON lines to its
output file on exit, so the harness can check that every job ran exactly once and measure
from the first start to the last finish across all processes.

In "drain" mode a child first starts up (imports, connections), says so with ``OUT.ready``
and waits for the harness's go file (``$BENCH_GO``): throughput is measured with every
process running, not while some of them are still importing their queue.

Every system's job does the same work, ``make_video``: it writes a 16-byte video file of its
own into a directory on tmpfs. vidretry's worker then keeps it (its size and SHA-256 recorded
with the success), which is vidretry's own cost; the peers, which keep nothing, leave it
where it is; the raw loop writes it too.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import resource
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from vidretry import eventloop
from vidretry.db.pool import open_pool

RECORDS: list[tuple[Any, float]] = []


def record(job_id: Any) -> None:
    RECORDS.append((job_id, time.time()))


def dump(out: Path) -> None:
    with out.open("w") as f:
        for job_id, at in RECORDS:
            f.write(json.dumps([job_id, at]) + "\n")


def _ready() -> Path | None:
    """Say this child has started; the go file to wait for (None: no start barrier)."""
    go = os.environ.get("BENCH_GO")
    if go is None:
        return None
    Path(f"{OUT}.ready").touch()
    return Path(go)


def started_together_sync() -> None:
    go = _ready()
    while go is not None and not go.exists():  # another process makes it: polled
        time.sleep(0.001)


async def started_together() -> None:
    await asyncio.to_thread(started_together_sync)


def flush_line(out: Path, job_id: Any) -> None:
    """Latency runs: write each start at once (the harness reads while the child runs)."""
    with out.open("a") as f:
        f.write(json.dumps([job_id, time.time()]) + "\n")


# -- the job: the same on every side ---------------------------------------------------------

VIDEO = b"a no-op's video\n"


def make_video(path: str) -> str:
    """The job every system runs: write a 16-byte video file (into an existing directory)."""
    with open(path, "wb") as out:  # the same plain write on every side
        out.write(VIDEO)
    return path


def videos_directory() -> Path:
    """A directory of this child's own for its videos: on tmpfs when there is one (this
    machine's /tmp takes 0.7 ms to create a file, which would measure the disk, not the
    queue), beside the harness's files otherwise; never the working directory."""
    shm = Path("/dev/shm")  # noqa: S108 (a directory of our own in it, made by mkdtemp)
    return Path(
        tempfile.mkdtemp(prefix="vidretry-bench-videos-", dir=shm if shm.is_dir() else OUT.parent)
    )


# -- vidretry ---------------------------------------------------------------------------------


async def vidretry_noop(job: Any) -> str:
    record(job.asset_id)
    return make_video(str(job.output))


async def vidretry_latency(job: Any) -> str:
    flush_line(OUT, job.asset_id)
    return make_video(str(job.output))


async def vidretry_fail(job: Any) -> str:
    from vidretry.errors import PermanentError

    raise PermanentError("bench")


async def run_vidretry(url: str, mode: str, concurrency: int) -> None:
    from vidretry.clock import DatabaseClock
    from vidretry.config import WorkerConfig
    from vidretry.db.listen import Listener
    from vidretry.queue.worker import Outcome, Worker

    handler = {"drain": vidretry_noop, "wait": vidretry_latency, "fail": vidretry_fail}[mode]
    # Every job fails on purpose in "fail" mode: the circuit breaker would (rightly) take
    # that for a broken generator and pause the queue instead of failing them.
    videos = videos_directory()
    config = WorkerConfig(
        concurrency=concurrency, poll_interval_seconds=2.0, breaker=mode != "fail",
        output_dir=videos,
    )  # fmt: skip

    class TimedWorker(Worker):
        async def process(self, item: Any) -> Outcome:
            outcome = await super().process(item)
            if outcome is Outcome.FAILED:  # the final-failure transaction has committed
                flush_line(OUT, item.id)
            return outcome

    async with open_pool(url, max_size=concurrency + 2) as pool:
        worker = TimedWorker(
            pool,
            config,
            handler,
            listener=Listener(url),
            clock=DatabaseClock(),
            rng=random.Random(1),  # noqa: S311
        )
        await started_together()
        try:
            await worker.run(_stop_event(), drain=mode == "drain")
        finally:
            shutil.rmtree(videos, ignore_errors=True)


async def run_notifier(url: str, rate: float, chat_interval: float) -> None:
    from vidretry.clock import DatabaseClock
    from vidretry.config import NotifierConfig
    from vidretry.db.listen import Listener
    from vidretry.telegram.notifier import Notifier
    from vidretry.telegram.transport import InlineButton, Recipient, VideoRef
    from vidretry.texts import MessagesConfig

    class RecordingSender:
        async def send_text(
            self, to: Recipient, html_text: str, button: InlineButton | None
        ) -> int:
            flush_line(OUT, [to.chat_id, button.data if button else None])
            return 1

        async def send_video(self, to: Recipient, video: VideoRef, caption_html: str) -> int:
            flush_line(OUT, [to.chat_id, video.uri])
            return 1

    config = NotifierConfig(
        rate_per_second=rate, per_chat_interval_seconds=chat_interval, poll_interval_seconds=2.0
    )
    async with open_pool(url, max_size=4) as pool:
        notifier = Notifier(pool, config, MessagesConfig(), RecordingSender(),
                            listener=Listener(url), clock=DatabaseClock(),
                            rng=random.Random(1))  # noqa: S311  # fmt: skip
        await notifier.run(_stop_event())


# -- pgqueuer -----------------------------------------------------------------------------------


async def run_pgqueuer(url: str, mode: str) -> None:
    import asyncpg
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.qm import QueueManager
    from pgqueuer.queries import Queries
    from pgqueuer.types import QueueExecutionMode

    connection = await asyncpg.connect(url)
    qm = QueueManager(Queries(AsyncpgDriver(connection)))

    videos = videos_directory()

    @qm.entrypoint("noop")
    async def noop(job: Any) -> None:
        if mode == "drain":
            record(job.id)
        else:
            flush_line(OUT, job.id)
        make_video(f"{videos}/{job.id}.mp4")

    stop = _stop_event()
    stopper = asyncio.create_task(_shutdown_when(stop, qm))
    execution = QueueExecutionMode.drain if mode == "drain" else QueueExecutionMode.continuous
    await started_together()
    try:
        await qm.run(mode=execution)
    finally:
        stopper.cancel()
        shutil.rmtree(videos, ignore_errors=True)


async def _shutdown_when(stop: asyncio.Event, qm: Any) -> None:
    await stop.wait()
    qm.shutdown.set()


# -- procrastinate ------------------------------------------------------------------------------


def procrastinate_app(url: str, mode: str = "drain", videos: Path | None = None) -> Any:
    """The procrastinate app with its one task (defined here, not in __main__); it writes
    its video into ``videos`` (the harness, which only enqueues, passes none)."""
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))

    @app.task(name="noop", pass_context=True)
    async def noop(context: Any) -> None:
        if mode == "drain":
            record(context.job.id)
        else:
            flush_line(OUT, context.job.id)
        make_video(f"{videos}/{context.job.id}.mp4")

    return app


async def run_procrastinate(url: str, mode: str) -> None:
    videos = videos_directory()
    app = procrastinate_app(url, mode, videos)
    try:
        async with app.open_async():
            await started_together()
            await app.run_worker_async(wait=mode != "drain", install_signal_handlers=True)
    finally:
        shutil.rmtree(videos, ignore_errors=True)


# -- the raw loop: the ceiling ----------------------------------------------------------------


def run_raw(url: str) -> None:
    """Claim 10 rows per FOR UPDATE SKIP LOCKED statement, run their jobs, mark them done:
    nothing else."""
    import psycopg

    videos = videos_directory()
    with psycopg.connect(url, autocommit=True) as conn:
        claim = (
            "WITH c AS (SELECT id FROM raw_jobs WHERE state = 'pending' ORDER BY id"
            " LIMIT 10 FOR UPDATE SKIP LOCKED)"
            " UPDATE raw_jobs r SET state = 'running' FROM c WHERE r.id = c.id RETURNING r.id"
        )
        done = "UPDATE raw_jobs SET state = 'done' WHERE id = ANY(%s)"
        started_together_sync()
        try:
            while True:
                ids = [row[0] for row in conn.execute(claim)]
                if not ids:
                    return
                for job_id in ids:
                    record(job_id)
                    make_video(f"{videos}/{job_id}.mp4")
                conn.execute(done, (ids,))
        finally:
            shutil.rmtree(videos, ignore_errors=True)


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    return stop


OUT = Path("/dev/null")

if __name__ == "__main__":
    system, url, mode, out = sys.argv[1:5]
    OUT = Path(out)
    extra = sys.argv[5:]
    try:
        # Each on the event loop its own command line uses: `vidretry worker` and `pgq run`
        # use uvloop when it is installed (eventloop.run with fast=True is that same rule);
        # `vidretry notifier` and procrastinate, asyncio's.
        if system == "vidretry":
            eventloop.run(run_vidretry(url, mode, int(extra[0]) if extra else 16), fast=True)
        elif system == "notifier":
            asyncio.run(run_notifier(url, float(extra[0]), float(extra[1])))
        elif system == "pgqueuer":
            eventloop.run(run_pgqueuer(url, mode), fast=True)
        elif system == "procrastinate":
            asyncio.run(run_procrastinate(url, mode))
        elif system == "raw":
            run_raw(url)
    finally:
        if RECORDS:
            dump(OUT)
        if Path("/dev/null") != OUT:  # the peak memory of this worker, for the harness
            peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            Path(f"{OUT}.rss").write_text(str(peak_kib))
