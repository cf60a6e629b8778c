"""The fair order's cost and what it buys, side by side in one run on one PostgreSQL.

    python -m bench.fairness            # 1,000,000 pending jobs across 10,000 owners
    python -m bench.fairness --short    # 50,000 across 500 (the test suite runs it)

1. Claim throughput: the fair claim (``claim_jobs``: priority, retries first, turn, due
   time; the quotas' and the hold's checks) against the claim of schema 16 (retries first,
   then due time: first come, first served), each on its own index over the same pending
   rows, claiming batches of 10 for a while, interleaved.
2. The light users' wait in the scenario of issue 32: user A asks for 30 videos, then five
   other users ask for one each; one worker at concurrency 1 with 50 ms jobs. The wait is
   from a light user's request to the start of their video, fair against first come, first
   served ([queue] fair = false), through the real enqueue and worker.

Prints Markdown rows for bench/RESULTS.md; asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import LiteralString

import psycopg

from vidretry.app.daemons import build_worker
from vidretry.config import Config, WorkerConfig
from vidretry.db import connection, schema
from vidretry.db.embedded import EmbeddedServer
from vidretry.db.pool import open_pool
from vidretry.db.sqlfiles import queries
from vidretry.models import JobContext
from vidretry.queue.enqueue import enqueue
from vidretry.queue.quota import NO_QUOTA


@dataclass(frozen=True)
class Size:
    pending: int
    owners: int
    seconds: float  # each claim run
    reps: int


FULL = Size(pending=1_000_000, owners=10_000, seconds=5.0, reps=3)
SHORT = Size(pending=50_000, owners=500, seconds=1.0, reps=1)
BATCH = 10
LIGHT_USERS = 5
HEAVY_JOBS = 30
JOB_SECONDS = 0.05

# The claim of schema 16 (sql/queries/jobs.sql before the fair order): retried jobs first,
# then by due time, from the index video_assets_claimable had then.
FIFO_INDEX: LiteralString = (
    "CREATE INDEX fifo_claimable ON video_assets ((generation = 0), run_at, id)"
    " WHERE state = 'pending'"
)
FIFO_CLAIM: LiteralString = """
WITH due AS (
    SELECT id
    FROM video_assets
    WHERE state = 'pending' AND run_at <= coalesce(%(now)s::timestamptz, now())
      AND NOT EXISTS (SELECT 1 FROM queue_pauses WHERE resumed_at IS NULL)
    ORDER BY (generation = 0), run_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
),
claimed AS (
    UPDATE video_assets AS a
    SET state = 'running',
        attempts = a.attempts + 1,
        progress = NULL,
        lease_owner = %(owner)s,
        lease_token = gen_random_uuid(),
        lease_expires_at = coalesce(%(now)s::timestamptz, now())
                           + make_interval(secs => %(lease_seconds)s),
        updated_at = coalesce(%(now)s::timestamptz, now())
    WHERE a.id = ANY (ARRAY(SELECT id FROM due))
    RETURNING a.id, a.name, a.params, a.attempts, a.max_attempts, a.generation, a.lease_token
),
history AS (
    INSERT INTO job_events (asset_id, generation, kind, attempt, actor, created_at)
    SELECT id, generation, 'claimed', attempts, %(owner)s, coalesce(%(now)s::timestamptz, now())
    FROM claimed
)
SELECT id, name, params, attempts, max_attempts, generation AS retry_round, lease_token,
       false AS probe
FROM claimed
ORDER BY id
"""


def fill(url: str, size: Size) -> None:
    """``size.pending`` jobs, asked for in turn by ``size.owners`` users (job g by user g mod
    owners): the turns fair enqueueing gives them, and the due times, one per millisecond."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO video_assets (name, owner, turn, run_at, created_at)"
            " SELECT 'v-' || g, g %% %(owners)s + 1, (g - 1) / %(owners)s,"
            "        now() - interval '2 hours' + g * interval '1 ms', now()"
            " FROM generate_series(1, %(n)s) AS g",
            {"n": size.pending, "owners": size.owners},
        )
        conn.execute(FIFO_INDEX)
        conn.execute("VACUUM ANALYZE")


def claim_rate(url: str, statement: LiteralString, seconds: float) -> float:
    """Jobs claimed per second by one connection claiming batches of ``BATCH``."""
    params = {
        "owner": "bench", "limit": BATCH, "lease_seconds": 600, "now": None, "probe": None,
        **NO_QUOTA.params(),
    }  # fmt: skip
    with psycopg.connect(url, autocommit=True, prepare_threshold=0) as conn:
        for _ in range(20):  # warm: the plan, the caches
            conn.execute(statement, params).fetchall()
        claimed, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds:
            claimed += len(conn.execute(statement, params).fetchall())
    return claimed / elapsed


async def light_users_wait(url: str, *, fair: bool, run: int, videos: Path) -> float:
    """The median wait, in seconds, of the five light users in issue 32's scenario (``run``
    keeps each run's names new: a name asked for before would join its finished video;
    ``videos``: where the generator writes)."""
    config = WorkerConfig(concurrency=1, poll_interval_seconds=0.05, output_dir=videos)
    starts = Starts(HEAVY_JOBS + LIGHT_USERS)
    async with open_pool(url, max_size=4) as pool:
        worker = build_worker(
            pool, Config(worker=config), starts, url=url,
            rng=random.Random(1), name="w",  # noqa: S311 (jitter only)
        )  # fmt: skip
        worker.fair = fair
        await worker.maintain()  # writes [queue] fair for the enqueues below
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop))
        async with await connection.connect(url) as conn:
            for i in range(HEAVY_JOBS):
                await enqueue(conn, f"heavy-{run}-{fair}-{i}", user_id=1)
            asked = {}
            for user in range(2, 2 + LIGHT_USERS):
                asked[user] = time.perf_counter()
                await enqueue(conn, f"light-{run}-{fair}-{user}", user_id=user)
        await starts.all.wait()
        stop.set()
        await running
    waits = [starts.at[f"light-{run}-{fair}-{user}"] - asked[user] for user in asked]
    return statistics.median(waits)


class Starts:
    """The generator: a short job that notes when it started."""

    def __init__(self, expected: int) -> None:
        self.at: dict[str, float] = {}
        self.expected = expected
        self.all = asyncio.Event()  # every expected job has started

    async def __call__(self, job: JobContext) -> str:
        self.at[job.name] = time.perf_counter()
        if len(self.at) == self.expected:
            self.all.set()
        await asyncio.sleep(JOB_SECONDS)
        job.output.parent.mkdir(parents=True, exist_ok=True)
        job.output.write_bytes(b"")  # a video, kept where it was written
        return str(job.output)


async def migrate(url: str) -> None:
    async with await connection.connect(url) as conn:
        await schema.upgrade(conn)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--short", action="store_true", help="50,000 pending jobs, once")
    args = parser.parse_args(argv)
    size = SHORT if args.short else FULL
    logging.getLogger("vidretry").setLevel(logging.ERROR)  # the worker's notes on its order
    base = Path(tempfile.mkdtemp(prefix="vidretry-bench-fair-"))
    base.chmod(0o755)
    server = EmbeddedServer(base / "pg")
    rates: dict[str, list[float]] = {"fair": [], "fifo": []}
    waits: dict[str, list[float]] = {"fair": [], "fifo": []}
    try:
        server.start()
        big, small = server.url_for("vidretry"), server.url_for("light")
        with psycopg.connect(server.url_for("postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE light")
        for url in (big, small):
            asyncio.run(migrate(url))
        fill(big, size)
        claims = {"fifo": FIFO_CLAIM, "fair": queries()["claim_jobs"]}
        for rep in range(size.reps):  # interleaved, each first in turn
            for mode in ("fifo", "fair") if rep % 2 == 0 else ("fair", "fifo"):
                rates[mode].append(claim_rate(big, claims[mode], size.seconds))
        for rep in range(size.reps):  # each run's jobs are all done before the next asks
            for mode in ("fifo", "fair"):
                wait = asyncio.run(
                    light_users_wait(small, fair=mode == "fair", run=rep, videos=base / "videos")
                )
                waits[mode].append(wait)
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    fair, fifo = statistics.median(rates["fair"]), statistics.median(rates["fifo"])
    print(
        f"| claim, first come first served (schema 16), {size.pending:,} pending"
        f" (jobs/s) | {fifo:,.0f} | {min(rates['fifo']):,.0f} – {max(rates['fifo']):,.0f} | |"
    )
    print(f"| claim, fair, {size.pending:,} pending across {size.owners:,} owners (jobs/s)"
          f" | {fair:,.0f} | {min(rates['fair']):,.0f} – {max(rates['fair']):,.0f}"
          f" | {fair / fifo:.2f}× first come first served |")  # fmt: skip
    light_fair, light_fifo = statistics.median(waits["fair"]), statistics.median(waits["fifo"])
    print(
        f"| light users' wait, first come first served (s) | {light_fifo:.2f} |"
        f" {min(waits['fifo']):.2f} – {max(waits['fifo']):.2f} | |"
    )
    print(
        f"| light users' wait, fair (s) | {light_fair:.2f} |"
        f" {min(waits['fair']):.2f} – {max(waits['fair']):.2f}"
        f" | {light_fair / light_fifo:.2f}× first come first served |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
