"""vidretry against procrastinate and pgqueuer, side by side, in one run on one PostgreSQL.

    python -m bench.run                              # the full run: every case three times
    python -m bench.run --results bench/RESULTS.md   # ... and record it there
    python -m bench.run --short                      # a few thousand jobs, once (the suite)

Starts one temporary PostgreSQL with default durability settings, runs every case, checks
that every job ran exactly once, and prints one table (median, range and ratios), the
targets met or not, and the cases that moved beyond the noise since the run recorded in
bench/RESULTS.md (bench/record.py says how they are compared). With --results FILE it
writes all of that, dated, with the commit and the machine's load, into FILE's generated
block, keeping the rest of the file.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench import record
from bench.broadcast import busiest_second
from bench.child import procrastinate_app
from vidretry.db import connection, schema, sqlfiles
from vidretry.db.embedded import EmbeddedServer

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Size:
    jobs: int
    reps: int
    latency_samples: int
    pacing_users: int
    finished_small: int
    finished_large: int
    scale_jobs: int
    one_chat: int
    fair_pairs: int  # runs of each layout of the fair case, per repetition
    commits: int  # one-row commits timed for the latencies' yardstick
    settle_seconds: float = 2.0  # a child is left to settle this long before it is measured
    idle_window_seconds: float = 10.0  # the idle processes' queries are counted this long


FULL = Size(jobs=20_000, reps=3, latency_samples=50, pacing_users=2000, finished_small=10_000,
            finished_large=1_000_000, scale_jobs=5000, one_chat=20, fair_pairs=3,
            commits=500)  # fmt: skip
# Every case once, small: that it runs and checks what it checks (the suite runs it).
SHORT = Size(jobs=500, reps=1, latency_samples=5, pacing_users=30,
             finished_small=200, finished_large=5000, scale_jobs=300, one_chat=3,
             fair_pairs=1, commits=50, settle_seconds=0.5, idle_window_seconds=2.0)  # fmt: skip

# vidretry's own setting for these no-op jobs: more jobs in flight, bigger write batches.
VIDRETRY_CONCURRENCY = "64"
CASES = frozenset({"throughput", "fair", "latency", "failure", "pacing", "idle", "scale"})
# The fair case's users: each no-op job is one user's in turn, as they would have asked.
FAIR_OWNERS = 1000


class Bench:
    def __init__(self, base: Path, size: Size) -> None:
        self.base = base
        self.size = size
        self.server = EmbeddedServer(
            base / "pg",
            extra_settings=(("shared_preload_libraries", "'pg_stat_statements'"),),
        )
        self.results: dict[str, list[float]] = defaultdict(list)
        self.counter = 0
        self.children: list[subprocess.Popen[bytes]] = []

    def reap(self) -> None:
        """Stop any child a failed case left running."""
        for proc in self.children:
            if proc.poll() is None:
                proc.kill()
            proc.wait()

    # -- plumbing -------------------------------------------------------------------------

    def database(self) -> str:
        self.counter += 1
        name = f"bench_{self.counter}"
        with psycopg.connect(self.server.url_for("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.server.url_for(name)

    def drop(self, url: str) -> None:
        name = url.split("/")[3].split("?")[0]
        with psycopg.connect(self.server.url_for("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))

    def spawn(
        self, system: str, url: str, mode: str, *extra: str, go: Path | None = None
    ) -> tuple[subprocess.Popen[bytes], Path]:
        """A child; with ``go``, it starts up and then waits for that file (bench.child)."""
        self.counter += 1
        out = self.base / f"{system}-{self.counter}.out"
        out.touch()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        if go is not None:
            env["BENCH_GO"] = str(go)
        with (self.base / f"{system}-{self.counter}.err").open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "bench.child", system, url, mode, str(out), *extra],
                env=env, stdout=subprocess.DEVNULL, stderr=err,
            )  # fmt: skip
        self.children.append(proc)
        return proc, out

    @staticmethod
    def start_together(
        label: str, children: list[tuple[subprocess.Popen[bytes], Path]], go: Path
    ) -> None:
        """Wait until every child has started up, then let them all go at once."""
        deadline = time.monotonic() + 120
        while not all(Path(f"{out}.ready").exists() for _, out in children):
            if any(proc.poll() is not None for proc, _ in children):
                raise RuntimeError(f"{label}: a worker exited while starting up")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{label}: the workers did not start within 120 s")
            time.sleep(0.01)
        go.touch()

    def wait_for_starts(self, out: Path, jobs: set[Any], system: str) -> None:
        """Until every one of ``jobs`` has started (a minute at most: then the caller reports
        the ones that never did)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if jobs <= {job for job, _ in self.read(out)}:
                    return
            except ValueError:  # a line the child is still writing
                pass
            time.sleep(0.05)

    def wait_for_lines(self, out: Path, n: int) -> None:
        """Until ``out`` holds ``n`` records (a minute at most: the caller counts them)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if len(self.read(out)) >= n:
                    return
            except ValueError:  # a line the child is still writing
                pass
            time.sleep(0.05)

    @staticmethod
    def read(out: Path) -> list[tuple[Any, float]]:
        return [tuple(json.loads(line)) for line in out.read_text().splitlines() if line]  # type: ignore[misc]

    # -- setups ---------------------------------------------------------------------------

    def setup_vidretry(
        self, url: str, jobs: int, finished: int = 0, owners: int = 0, bursts: bool = False
    ) -> None:
        async def migrate() -> None:
            async with await connection.connect(url) as conn:
                await schema.upgrade(conn)

        asyncio.run(migrate())
        with psycopg.connect(url, autocommit=True) as conn:
            if finished:
                conn.execute(
                    "INSERT INTO video_assets (name, state, attempts, result, finished_at)"
                    " SELECT 'done-' || g, 'available', 1, '/v.mp4', now()"
                    " FROM generate_series(1, %s) g",
                    (finished,),
                )
            # Job g: owner and turn as the fair order gives them when its owners ask in turn
            # (or each in one burst); first come, first served gives every job turn 0.
            conn.execute(
                "INSERT INTO video_assets (name, owner, turn)"
                " SELECT 'v-' || g, o, CASE WHEN %(owners)s > 0 THEN t ELSE 0 END"
                " FROM generate_series(1, %(n)s) AS g,"
                "      LATERAL (SELECT CASE WHEN %(bursts)s THEN (g - 1) / %(burst)s + 1"
                "                           ELSE (g - 1) %% greatest(%(owners)s, 1) + 1 END AS o,"
                "                      CASE WHEN %(bursts)s THEN (g - 1) %% %(burst)s"
                "                           ELSE (g - 1) / greatest(%(owners)s, 1) END AS t) AS f",
                {"n": jobs, "owners": owners, "bursts": bursts,
                 "burst": -(-jobs // max(owners, 1))},
            )  # fmt: skip
            conn.execute(
                "INSERT INTO user_requests (asset_id, user_id, chat_id)"
                " SELECT id, id, id FROM video_assets WHERE state = 'pending'"
            )
            conn.execute("VACUUM ANALYZE")

    def setup_vidretry_fair(self, url: str, jobs: int) -> None:
        """``setup_vidretry``'s jobs as ``FAIR_OWNERS`` users asked for them one after the
        other, in turn, with the turns the fair order gives them: the claim takes them in
        the order they were written, as first come, first served does."""
        self.setup_vidretry(url, jobs, owners=FAIR_OWNERS)

    def setup_vidretry_bursts(self, url: str, jobs: int) -> None:
        """The same jobs, but each user asked for all of theirs in one burst, after the
        previous user's: the claim takes them user by user, one row from each burst, across
        the whole table (the worst case for the heap's locality)."""
        self.setup_vidretry(url, jobs, owners=FAIR_OWNERS, bursts=True)

    def setup_raw(self, url: str, jobs: int) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE raw_jobs"
                " (id bigserial PRIMARY KEY, state text NOT NULL DEFAULT 'pending')"
            )
            conn.execute("CREATE INDEX ON raw_jobs (id) WHERE state = 'pending'")
            conn.execute(
                "INSERT INTO raw_jobs (state) SELECT 'pending' FROM generate_series(1, %s)", (jobs,)
            )
            conn.execute("VACUUM ANALYZE")

    def setup_pgqueuer(self, url: str, jobs: int) -> None:
        async def setup() -> None:
            import asyncpg
            from pgqueuer.db import AsyncpgDriver
            from pgqueuer.queries import Queries

            connection = await asyncpg.connect(url)
            queries = Queries(AsyncpgDriver(connection))
            await queries.install()
            for start in range(0, jobs, 5000):
                n = min(5000, jobs - start)
                await queries.enqueue(["noop"] * n, [None] * n, [0] * n)
            await connection.close()

        asyncio.run(setup())

    def setup_procrastinate(self, url: str, jobs: int) -> None:
        async def setup() -> None:
            app = procrastinate_app(url)
            async with app.open_async():
                await app.schema_manager.apply_schema_async()
                noop = app.tasks["noop"]
                for start in range(0, jobs, 2000):
                    await noop.batch_defer_async(*({} for _ in range(min(2000, jobs - start))))

        asyncio.run(setup())

    # -- cases ----------------------------------------------------------------------------

    def throughput(self, label: str, system: str, processes: int, setup: Callable[[str, int], None],
                   jobs: int, *extra: str, memory: str | None = None) -> float:  # fmt: skip
        url = self.database()
        try:
            setup(url, jobs)
            go = self.base / f"go-{self.counter}"
            children = [self.spawn(system, url, "drain", *extra, go=go) for _ in range(processes)]
            self.start_together(label, children, go)
            for proc, out in children:
                if proc.wait(timeout=600) != 0:
                    error = out.with_suffix(".err").read_text().strip().splitlines()[-3:]
                    raise RuntimeError(f"{label}: a worker exited with {proc.returncode}: {error}")
            records = [r for _, out in children for r in self.read(out)]
            if memory:  # the busiest process's peak
                peak = max(int(Path(f"{out}.rss").read_text()) for _, out in children)
                self.results[f"memory: {memory} under load, peak RSS (MiB)"].append(peak / 1024)
        finally:
            self.drop(url)
        counts = Counter(job_id for job_id, _ in records)
        if len(counts) != jobs or set(counts.values()) != {1}:
            raise RuntimeError(
                f"{label}: {len(counts)} distinct jobs of {jobs}, max runs {max(counts.values())}"
            )
        times = [at for _, at in records]
        rate = jobs / (max(times) - min(times))
        self.results[label].append(rate)
        return rate

    def latency(self, label: str, system: str, setup: Callable[[str, int], None],
                enqueue: Callable[[str], Any]) -> None:  # fmt: skip
        url = self.database()
        try:
            setup(url, 0)
            proc, out = self.spawn(system, url, "wait")
            # Listening, proven by a first job started (a fixed sleep was not enough on a
            # busy machine: pgqueuer's ten samples once all went out before it listened);
            # then idle a while for the RSS figure.
            warm_up, _ = enqueue(url)
            self.wait_for_starts(out, {warm_up}, system)
            time.sleep(self.size.settle_seconds)
            self.results[f"memory: {system} worker idle, RSS (MiB)"].append(rss_mib(proc.pid))
            sent: dict[Any, float] = {}
            for _ in range(self.size.latency_samples):
                job_id, committed_at = enqueue(url)
                sent[job_id] = committed_at
                time.sleep(0.1)
            self.wait_for_starts(out, set(sent), system)
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
            started = dict(self.read(out))
        finally:
            self.drop(url)
        samples = [(started[j] - t) * 1000 for j, t in sent.items() if j in started]
        if len(samples) != len(sent):
            raise RuntimeError(f"{label}: {len(sent) - len(samples)} jobs never started")
        self.results[label + " p50 (ms)"].append(statistics.median(samples))

    def failure_to_notification(self) -> None:
        url = self.database()
        try:
            self.setup_vidretry(url, 0)
            worker, failed_out = self.spawn("vidretry", url, "fail", "4")
            notifier, sent_out = self.spawn("notifier", url, "wait", "25", "1")
            time.sleep(self.size.settle_seconds)
            for i in range(self.size.latency_samples):
                _enqueue_vidretry(url, name=f"f-{i}", user_id=i + 1, max_attempts=1)
                time.sleep(0.1)
            self.wait_for_lines(sent_out, self.size.latency_samples)
            for proc in (worker, notifier):
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
            failed = dict(self.read(failed_out))
            sent = {int(key[1].split(":")[1]): at for key, at in self.read(sent_out)}
        finally:
            self.drop(url)
        samples = sorted((sent[a] - failed[a]) * 1000 for a in failed if a in sent)
        if len(samples) != self.size.latency_samples:
            raise RuntimeError(
                f"failure-to-notification: {len(samples)} of {self.size.latency_samples} notified"
            )
        self.results["failure → notification p50 (ms)"].append(statistics.median(samples))
        self.results["failure → notification p95 (ms)"].append(
            samples[int(len(samples) * 0.95) - 1]
        )

    def pacing(self) -> None:
        users = self.size.pacing_users
        for label, chats in (("many chats", users), ("one chat", self.size.one_chat)):
            url = self.database()
            try:
                self.setup_vidretry(url, 0)
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute(
                        "INSERT INTO video_assets (name, state, attempts, last_error, finished_at)"
                        " SELECT 'p-' || g, 'failed', 3, 'x', now() FROM generate_series(1, %s) g",
                        (chats,),
                    )
                    one_chat = label == "one chat"
                    conn.execute(
                        "INSERT INTO notifications"
                        " (asset_id, user_id, chat_id, kind, generation, payload)"
                        " SELECT id, CASE WHEN %s THEN 999 ELSE id END,"
                        " CASE WHEN %s THEN 999 ELSE id END,"
                        " 'failed', 0, jsonb_build_object('name', name) FROM video_assets",
                        (one_chat, one_chat),
                    )
                proc, out = self.spawn("notifier", url, "wait", "25", "1")
                deadline = time.monotonic() + chats + 60
                with psycopg.connect(url, autocommit=True) as conn:
                    while time.monotonic() < deadline:
                        row = conn.execute(
                            "SELECT count(*) FROM notifications WHERE state = 'sent'"
                        ).fetchone()
                        if row and row[0] == chats:
                            break
                        time.sleep(0.5)
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
                times = sorted(at for _, at in self.read(out))
            finally:
                self.drop(url)
            if len(times) != chats:
                raise RuntimeError(f"pacing {label}: {len(times)} of {chats} sent")
            if label == "many chats":
                self.results["pacing: achieved rate (msg/s, limit 25)"].append(
                    (len(times) - 1) / (times[-1] - times[0])
                )
                busiest = busiest_second(times)
                self.results["pacing: busiest 1-second window (msgs)"].append(busiest)
            else:
                gaps = [b - a for a, b in itertools.pairwise(times)]
                self.results["pacing: one chat, smallest spacing (s)"].append(min(gaps))

    def commit_round_trip(self) -> None:
        """The machine's commit: one-row inserts, each its own transaction waiting for its WAL
        flush, from one connection; the median of the middle of them."""
        url = self.database()
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("CREATE TABLE commits (id bigserial PRIMARY KEY, at float8)")
                took = []
                for _ in range(self.size.commits):
                    started = time.perf_counter()
                    conn.execute("INSERT INTO commits (at) VALUES (%s)", (started,))
                    took.append((time.perf_counter() - started) * 1000)
        finally:
            self.drop(url)
        self.results[record.COMMIT].append(statistics.median(took[len(took) // 10 :]))

    def idle_cost(self) -> None:
        for label, system, args in (
            ("worker", "vidretry", ("wait", "4")),
            ("notifier", "notifier", ("wait", "25", "1")),
        ):
            url = self.database()
            try:
                self.setup_vidretry(url, 0)
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                    proc, _ = self.spawn(system, url, *args)
                    time.sleep(self.size.settle_seconds * 1.5)
                    if label == "notifier":
                        self.results["memory: vidretry notifier idle, RSS (MiB)"].append(
                            rss_mib(proc.pid)
                        )
                    conn.execute("SELECT pg_stat_statements_reset()")
                    window = self.size.idle_window_seconds
                    time.sleep(window)
                    row = conn.execute(
                        "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements"
                        " WHERE dbid = (SELECT oid FROM pg_database"
                        "               WHERE datname = current_database())"
                        " AND query NOT LIKE '%%pg_stat_statements%%'"
                    ).fetchone()
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=60)
            finally:
                self.drop(url)
            self.results[f"idle {label}: queries per second"].append(
                float(row[0]) / window if row else -1
            )

    def scale(self) -> None:
        for label, finished in (
            ("small", self.size.finished_small),
            ("large", self.size.finished_large),
        ):
            rate = self.throughput(
                f"scale: claim throughput with {finished:,} finished rows (jobs/s)",
                "vidretry", 1,
                lambda url, jobs, f=finished: self.setup_vidretry(url, jobs, f),  # type: ignore[misc]
                self.size.scale_jobs, VIDRETRY_CONCURRENCY,
            )  # fmt: skip
            del rate, label

    # -- the whole run --------------------------------------------------------------------

    def run(self, cases: frozenset[str] = CASES) -> None:
        n = self.size.jobs
        for rep in range(self.size.reps):
            print(f"repetition {rep + 1} of {self.size.reps}", file=sys.stderr, flush=True)
            # Whatever the cases, the yardsticks they are compared by: the raw loop's speed
            # and a commit's round trip.
            self.throughput(record.RAW, "raw", 4, self.setup_raw, n)
            self.commit_round_trip()
            if "throughput" in cases:
                self.throughput(
                    "throughput: vidretry, 1 process (jobs/s)", "vidretry", 1,
                    self.setup_vidretry, n, VIDRETRY_CONCURRENCY,
                    memory=f"vidretry worker, concurrency {VIDRETRY_CONCURRENCY},",
                )  # fmt: skip
                self.throughput(
                    "throughput: vidretry, 4 processes (jobs/s)", "vidretry", 4,
                    self.setup_vidretry, n, VIDRETRY_CONCURRENCY,
                )  # fmt: skip
                self.throughput(
                    "throughput: pgqueuer, 4 processes (jobs/s)", "pgqueuer", 4,
                    self.setup_pgqueuer, n, memory="pgqueuer worker (its defaults)",
                )  # fmt: skip
                self.throughput("throughput: procrastinate, 4 processes (jobs/s)",
                                "procrastinate", 4, self.setup_procrastinate, n,
                                memory="procrastinate worker (its defaults)")  # fmt: skip
            if "fair" in cases:  # the same run as "throughput: vidretry, 4 processes"
                # Three runs of each a repetition, each layout first in turn: two runs of
                # the same case differ by ±10 % on this machine.
                for pair in range(self.size.fair_pairs):
                    for label, setup in (
                        ("first come, first served", self.setup_vidretry),
                        (f"fair, {FAIR_OWNERS:,} users asking in turn", self.setup_vidretry_fair),
                        (f"fair, {FAIR_OWNERS:,} users asking in bursts",
                         self.setup_vidretry_bursts),
                    )[:: 1 if (rep + pair) % 2 == 0 else -1]:  # fmt: skip
                        self.throughput(
                            f"fair: vidretry, 4 processes, {label} (jobs/s)", "vidretry", 4,
                            setup, n, VIDRETRY_CONCURRENCY,
                        )  # fmt: skip
            if "latency" in cases:
                self.latency(
                    "enqueue → start: vidretry", "vidretry", self.setup_vidretry, _enqueue_vidretry
                )
                self.latency(
                    "enqueue → start: pgqueuer", "pgqueuer", self.setup_pgqueuer, _enqueue_pgqueuer
                )
                self.latency("enqueue → start: procrastinate", "procrastinate",
                             self.setup_procrastinate, _enqueue_procrastinate)  # fmt: skip
            if "failure" in cases:
                self.failure_to_notification()
            if "pacing" in cases:
                self.pacing()
            if "idle" in cases:
                self.idle_cost()
            if "scale" in cases:
                self.scale()


def rss_mib(pid: int) -> float:
    """A running process's resident memory."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def _enqueue_vidretry(url: str, name: str = "", user_id: int = 1, max_attempts: int = 3) -> Any:
    from vidretry.queue.enqueue import enqueue

    async def go() -> tuple[int, float]:
        async with await connection.connect(url) as conn:
            asked = await enqueue(
                conn,
                name or f"lat-{time.monotonic_ns()}",
                user_id=user_id,
                max_attempts=max_attempts,
            )
            return asked.asset_id, time.time()

    return asyncio.run(go())


def _enqueue_pgqueuer(url: str) -> Any:
    async def go() -> Any:
        import asyncpg
        from pgqueuer.db import AsyncpgDriver
        from pgqueuer.queries import Queries

        connection = await asyncpg.connect(url)
        (job_id,) = await Queries(AsyncpgDriver(connection)).enqueue(["noop"], [None], [0])
        committed_at = time.time()
        await connection.close()
        return job_id, committed_at

    return asyncio.run(go())


def _enqueue_procrastinate(url: str) -> Any:
    async def go() -> Any:
        app = procrastinate_app(url)
        async with app.open_async():
            return await app.tasks["noop"].defer_async(), time.time()

    return asyncio.run(go())


def table(results: dict[str, list[float]]) -> list[str]:
    def median(label: str) -> float | None:
        values = results.get(label)
        return statistics.median(values) if values else None

    ratios = {
        "throughput: vidretry, 4 processes (jobs/s)": [
            ("pgqueuer", "throughput: pgqueuer, 4 processes (jobs/s)"),
            ("procrastinate", "throughput: procrastinate, 4 processes (jobs/s)"),
            ("raw loop", "throughput: raw loop, 4 processes (jobs/s)"),
        ],
        **{
            f"fair: vidretry, 4 processes, fair, {FAIR_OWNERS:,} users asking in {how} (jobs/s)": [
                (
                    "first come, first served",
                    "fair: vidretry, 4 processes, first come, first served (jobs/s)",
                ),
            ]
            for how in ("turn", "bursts")
        },
        "enqueue → start: vidretry p50 (ms)": [
            ("pgqueuer", "enqueue → start: pgqueuer p50 (ms)"),
            ("procrastinate", "enqueue → start: procrastinate p50 (ms)"),
        ],
    }
    lines = ["| case | median | range | ratio |", "| --- | ---: | ---: | --- |"]
    for label, values in results.items():
        mid = statistics.median(values)
        # Two decimals below 10 (milliseconds, seconds): the next run compares with them.
        shown = "{:,.2f}" if max(values) < 10 else "{:,.1f}"
        spread = f"{shown.format(min(values))} – {shown.format(max(values))}"
        ratio = ", ".join(
            f"{mid / other:.2f}× {name}"
            for name, peer in ratios.get(label, [])
            if (other := median(peer))
        )
        lines.append(f"| {label} | {shown.format(mid)} | {spread} | {ratio} |")
    return lines


def describe_machine(load: tuple[float, float]) -> str:
    versions = {
        name: _version(name)
        for name in ("vidretry", "pgqueuer", "procrastinate", "psycopg", "asyncpg", "uvloop")
    }
    versions["vidretry"] = f"{_vidretry_version()} (schema {_schema()})"
    pg = subprocess.run(
        ["pg_config", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; commit {_commit()}; {platform.node()}: "
        f"{os.cpu_count()} cores, load average {load[0]:.1f} before the run, {load[1]:.1f} "
        f"after; Python {platform.python_version()}, {pg or 'PostgreSQL'} (default "
        "durability); " + ", ".join(f"{k} {v}" for k, v in versions.items())
    )


def _commit() -> str:
    """The commit measured, and whether the tree had changes beyond it."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                              check=False)  # fmt: skip
        return done.stdout.strip() if done.returncode == 0 else "?"

    changed = git("status", "--porcelain", "--untracked-files=no")
    return git("rev-parse", "--short", "HEAD") + (" with uncommitted changes" if changed else "")


def _vidretry_version() -> str:
    """This tree's release (an editable install's metadata keeps the one it was made at)."""
    try:
        from vidretry.version import __version__
    except ImportError:
        return _version("vidretry")
    return __version__


def _schema() -> str:
    """The newest schema version this tree migrates to."""
    try:
        return str(max(m.version for m in sqlfiles.migrations()))
    except Exception:  # a description only: whatever the migrations' layout
        return "?"


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--short", action="store_true", help="a few thousand jobs, once")
    parser.add_argument(
        "--results", type=Path, help="record the run in this file's generated block"
    )
    parser.add_argument(
        "--compare", type=Path, default=RECORDED,
        help=f"the recorded run to compare with (default: {RECORDED.relative_to(ROOT)})",
    )  # fmt: skip
    parser.add_argument(
        "--case", choices=sorted(CASES), action="append", help="only these cases (default: all)"
    )
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="vidretry-bench-"))
    base.chmod(0o755)
    bench = Bench(base, SHORT if args.short else FULL)
    load_before = os.getloadavg()[0]
    try:
        bench.server.start()
        bench.run(frozenset(args.case) if args.case else CASES)
    finally:
        bench.reap()
        bench.server.stop()
        shutil.rmtree(base, ignore_errors=True)
    block = [describe_machine((load_before, os.getloadavg()[0])), "", *table(bench.results)]
    now = record.measured(bench.results)
    if goals := record.targets(now):
        block += ["", *goals]
    block += ["", *compared(now, args.compare, short=args.short)]
    if load_before > (os.cpu_count() or 1):
        block += ["", f"The machine was busy before this run (load average {load_before:.1f} on "
                  f"{os.cpu_count()} cores): other work shared its cores, which weighs on "
                  "latencies more than on the ratios of throughputs."]  # fmt: skip
    print("\n".join(block))
    if args.results:
        text = args.results.read_text() if args.results.exists() else ""
        args.results.write_text(record.replace_block(text, block))
    return 0


RECORDED = ROOT / "bench" / "RESULTS.md"


def compared(now: dict[str, record.Measured], recorded: Path, *, short: bool) -> list[str]:
    """What moved since the run recorded in ``recorded``."""
    if short:
        return ["(The short form is not compared with the recorded run: too few jobs.)"]
    try:
        heading, then = record.recorded(recorded.read_text())
    except OSError as exc:
        return [f"(Not compared: {recorded} cannot be read: {exc.strerror}.)"]
    return record.report(then, now, heading)


if __name__ == "__main__":
    sys.exit(main())
