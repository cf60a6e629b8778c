"""A half-open connection: the path to PostgreSQL dies without a FIN or an RST (a dead NAT
entry, a failed load balancer). The process must notice within its lease, stop working on
what it can no longer vouch for, and come back by itself when the path heals."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg_pool import PoolTimeout

from tests.acceptance.conftest import Cli
from tests.faults.conftest import spawn, stop, wait_for
from tests.faults.proxy import DeadLinkProxy
from vidretry.clock import DatabaseClock
from vidretry.db.deadlink import answer_seconds_for
from vidretry.db.pool import open_pool
from vidretry.telegram.leadership import Leadership

LEASE = 6.0
WORKER = (
    'handler = "python:sample_handlers:nap"\nlease_seconds = {lease}\nheartbeat_seconds = 2\n'
    "poll_interval_seconds = 0.5\nconcurrency = {concurrency}\nshutdown_grace_seconds = 0\n"
)


@pytest.fixture
def proxy(postgresql: psycopg.Connection[Any]) -> Iterator[DeadLinkProxy]:
    info = postgresql.info
    proxy = DeadLinkProxy(f"{info.host}/.s.PGSQL.{info.port}")
    proxy.start()
    yield proxy
    proxy.stop()


def runs(log: Path) -> dict[int, list[tuple[str, int, float]]]:
    """What the ``nap`` handler logged, by asset: (event, pid, time) in order."""
    by_asset: dict[int, list[tuple[str, int, float]]] = defaultdict(list)
    for line in log.read_text().splitlines() if log.exists() else []:
        event, asset, pid, at = line.split()
        by_asset[int(asset)].append((event, int(pid), float(at)))
    return by_asset


@pytest.mark.slow(seconds=25)
def test_a_worker_behind_a_dead_link_lets_go_within_its_lease_and_comes_back(
    db_url: str,
    postgresql: psycopg.Connection[Any],
    proxy: DeadLinkProxy,
    cli_for: Callable[[str, str], Cli],
    tmp_path: Path,
) -> None:
    info = postgresql.info
    behind_proxy = f"postgresql://{info.user}@127.0.0.1:{proxy.port}/{info.dbname}"
    worker = WORKER.format(lease=LEASE, concurrency=2)
    a = cli_for("a", f'[database]\nurl = "{behind_proxy}"\n[worker]\n{worker}')
    b = cli_for("b", f'[database]\nurl = "{db_url}"\n[worker]\n{worker}')
    log = tmp_path / "runs.log"

    def enqueue(name: str, seconds: float) -> int:
        params = ["-p", f"log={log}", "-p", f"seconds={seconds}"]
        return int(b.json("enqueue", name, "--user", "1", *params)["asset_id"])

    def states() -> dict[int, str]:
        with psycopg.connect(db_url, autocommit=True) as conn:
            return dict(conn.execute("SELECT id, state FROM video_assets").fetchall())

    worker_a = spawn(a.argv("worker"), env=a.env, cwd=tmp_path, log=tmp_path / "a.log")
    worker_b: subprocess.Popen[str] | None = None
    try:
        held = [enqueue(f"long {i}", 14) for i in range(2)]
        wait_for(lambda: len(runs(log)) == 2, within=30, what="worker A starts both jobs")
        worker_b = spawn(b.argv("worker"), env=b.env, cwd=tmp_path, log=tmp_path / "b.log")
        time.sleep(1)

        cut_at = time.time()
        proxy.cut()
        meanwhile = [enqueue(f"short {i}", 0.5) for i in range(4)]
        time.sleep(LEASE + 4)  # well past A's lease: B has rescued what A held
        proxy.heal()
        wait_for(
            lambda: all(state == "available" for state in states().values()),
            within=60, what="every asset available",
        )  # fmt: skip

        # A alone now: it must be back at work by itself.
        b_log = stop(worker_b)
        after = [enqueue(f"after {i}", 0.5) for i in range(3)]
        wait_for(
            lambda: all(states()[asset] == "available" for asset in after),
            within=60, what="worker A, back after the path healed, does new work",
        )  # fmt: skip
    finally:
        a_log = stop(worker_a)
        if worker_b is not None and worker_b.poll() is None:
            stop(worker_b)

    done = runs(log)
    for asset in held:  # A let go of each job it held within its lease, before it ran again
        (start, pid_a, _), (event, pid, stopped_at), (again, _, restarted_at), *_ = done[asset]
        assert (start, pid_a, event, pid, again) == (
            "start",
            worker_a.pid,
            "stop",
            worker_a.pid,
            "start",
        )
        assert stopped_at - cut_at <= LEASE + 1, a_log
        assert stopped_at <= restarted_at + 0.5, (stopped_at, restarted_at)
    for asset in meanwhile + after:  # nothing else ran twice
        assert [event for event, _, _ in done[asset]] == ["start", "end"]
    assert {pid for asset in after for _, pid, _ in done[asset]} == {worker_a.pid}
    assert "no answer from the database" in a_log
    assert "Traceback" not in a_log + b_log


async def test_a_leader_behind_a_dead_link_stops_sending_before_its_term_ends(
    db_url: str, postgresql: psycopg.Connection[Any], proxy: DeadLinkProxy
) -> None:
    info = postgresql.info
    behind_proxy = f"postgresql://{info.user}@127.0.0.1:{proxy.port}/{info.dbname}"
    lease = 12.0  # a term of 6 s; a statement gets answer_seconds_for(12) = 4 s
    async with (
        open_pool(behind_proxy, max_size=2, answer_seconds=answer_seconds_for(lease)) as pool,
        open_pool(db_url, max_size=1) as direct,
    ):
        a = Leadership(pool, candidate="a", lease_seconds=lease, clock=DatabaseClock())
        b = Leadership(direct, candidate="b", lease_seconds=lease, clock=DatabaseClock())
        stepped_down: list[float] = []

        async def body(done: asyncio.Event, lost: asyncio.Event) -> None:
            elected = time.monotonic()
            proxy.cut()  # every renewal from now on goes nowhere, and is never refused
            await lost.wait()
            stepped_down.append(time.monotonic() - elected)

        stop = asyncio.Event()
        campaign = asyncio.create_task(a.lead(stop, body))
        async with asyncio.timeout(30):
            while not stepped_down:
                await asyncio.sleep(0.05)
        # Stepped down before its term ended (counted from before the claim), so the standby
        # that takes over then never overlaps with it.
        assert stepped_down[0] < a.term_seconds
        async with asyncio.timeout(a.term_seconds + 5):
            while await b.try_claim() is None:
                await asyncio.sleep(0.2)
        proxy.heal()
        async with asyncio.timeout(30):  # back, on new connections: a standby now
            while True:
                with contextlib.suppress(psycopg.OperationalError, PoolTimeout):
                    if await a.current() == "b":
                        break
                await asyncio.sleep(0.2)
        stop.set()
        await asyncio.wait_for(campaign, 30)
