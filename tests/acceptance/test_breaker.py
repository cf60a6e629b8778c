"""The circuit breaker, pause/resume and the retries-first order, with real worker processes
and the default [worker] settings but the handler and three clocks, shortened: the breaker's
probe interval (2 s, doubling to 8, where the defaults are 30 and 120) and the backoff
between attempts (1 s where the default is 10). The outage is a few probe intervals long,
as a real one is with the defaults; that they probe and resume on the default schedule is
tests/properties's (a hand-moved clock), and when the breaker trips (five assets in a row,
within ten minutes) stays the default here."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.conftest import Cli
from tests.support import rows, scalar
from vidretry.config import WorkerConfig
from vidretry.db import connection
from vidretry.queue.enqueue import enqueue

ADMINS = (900, 901)
SETUP = (
    'handler = "python:sample_handlers:down_while_flagged"\n'
    "breaker_probe_seconds = 2\nbreaker_probe_max_seconds = 8\nbackoff_base_seconds = 1\n"
    f"\n[telegram]\nadmins = [{', '.join(map(str, ADMINS))}]\n"
)
SETTINGS = WorkerConfig(breaker_probe_seconds=2, breaker_probe_max_seconds=8)
# The generator is down for this long: probes fail at 2 s and 6 s, and the one at 14 s
# (8 s later, the interval's cap) works.
OUTAGE_SECONDS = 12.0


@contextmanager
def workers(cli: Cli, n: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``n`` worker processes, logging to files beside the config (a pipe nobody reads
    would fill up and block them)."""
    logs = [(cli.config.parent / f"worker-{i}.log").open("ab") for i in range(n)]
    processes = [
        subprocess.Popen(
            cli.argv("worker"), stdout=log, stderr=subprocess.STDOUT, env=cli.env,
            cwd=cli.config.parent,
        )
        for log in logs
    ]  # fmt: skip
    try:
        yield processes
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)
        for log in logs:
            log.close()


async def add_assets(db_url: str, names: list[str], **params: Any) -> list[int]:
    async with await connection.connect(db_url) as conn:
        ids = []
        for i, name in enumerate(names):
            result = await enqueue(conn, name, user_id=i + 1, params=dict(params))
            ids.append(result.asset_id)
        return ids


async def wait_for(
    db_url: str, query: str, check: Callable[[Any], bool], *, seconds: float
) -> float:
    """Poll ``query`` (one value) until ``check`` holds; the time it took."""
    started = time.monotonic()
    async with await connection.connect(db_url) as conn:
        while True:
            value = await scalar(conn, query)
            if check(value):
                return time.monotonic() - started
            assert time.monotonic() - started < seconds, f"still {value!r}: {query}"
            await asyncio.sleep(0.25)


OPEN = "SELECT count(*) FROM video_assets WHERE state IN ('pending', 'running')"
PAUSED = "SELECT count(*) FROM queue_pauses WHERE resumed_at IS NULL"


@pytest.mark.slow(seconds=20)
@pytest.mark.timeout(300)
async def test_a_generator_outage_pauses_the_queue_and_costs_nobody_an_attempt(
    db_url: str, make_cli: Callable[[str], Cli], tmp_path: Path
) -> None:
    """Two workers; the generator fails every job for a few probe intervals, then works."""
    cli = make_cli(SETUP)
    down = tmp_path / "generator-down"
    down.touch()
    ids = await add_assets(db_url, [f"v{i}" for i in range(20)], down=str(down))
    with workers(cli, 2):
        await wait_for(db_url, PAUSED, lambda n: n == 1, seconds=30)
        status = cli.json("status")["queue"]
        assert status["state"] == "paused"
        assert status["reason"] == "breaker"
        assert "wrong API key" in status["detail"]
        await asyncio.sleep(OUTAGE_SECONDS - 0.5)
        down.unlink()  # the generator is back
        drained = await wait_for(db_url, OPEN, lambda n: n == 0, seconds=120)
    assert drained <= SETTINGS.breaker_probe_max_seconds + 10  # the next probe, and the rest
    async with await connection.connect(db_url) as conn:
        assets = await rows(conn, "SELECT state, generation FROM video_assets ORDER BY id")
        assert assets == [{"state": "available", "generation": 0}] * len(ids)
        assert await scalar(conn, "SELECT count(*) FROM notifications WHERE kind = 'failed'") == 0
        notices = await rows(
            conn,
            "SELECT user_id, kind, payload FROM notifications"
            " WHERE kind IN ('paused', 'resumed') ORDER BY kind, user_id",
        )
        assert [(n["user_id"], n["kind"]) for n in notices] == [
            *((admin, "paused") for admin in ADMINS),
            *((admin, "resumed") for admin in ADMINS),
        ]
        assert "wrong API key" in notices[0]["payload"]["error"]
        assert notices[0]["payload"]["waiting"] == len(ids)
        assert notices[-1]["payload"]["paused_seconds"] >= OUTAGE_SECONDS - 1
        (pause,) = await rows(conn, "SELECT * FROM queue_pauses")
        assert pause["reason"] == "breaker"
        assert pause["resumed_at"] is not None
        assert pause["probes"] >= 2  # at least one failed probe, then the one that worked
        # Every attempt that failed was given back: each asset succeeded on "attempt 1".
        attempts = await rows(
            conn, "SELECT DISTINCT attempt FROM job_events WHERE kind = 'succeeded'"
        )
        assert attempts == [{"attempt": 1}]


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_poison_asset_still_fails_while_the_others_succeed(
    db_url: str, make_cli: Callable[[str], Cli], tmp_path: Path
) -> None:
    cli = make_cli(SETUP)
    down = tmp_path / "generator-down"  # never created: the generator works
    (poison,) = await add_assets(db_url, ["poison"], down=str(down), poison=True)
    with workers(cli, 2):
        for i in range(12):  # good work keeps arriving around the poison's attempts
            await add_assets(db_url, [f"good-{i}"], down=str(down))
            await asyncio.sleep(0.5)
        await wait_for(db_url, OPEN, lambda n: n == 0, seconds=120)
    async with await connection.connect(db_url) as conn:
        states = await rows(conn, "SELECT id, state, attempts FROM video_assets ORDER BY id")
        assert states[0] == {"id": poison, "state": "failed", "attempts": SETTINGS.max_attempts}
        assert {s["state"] for s in states[1:]} == {"available"}
        notes = await rows(conn, "SELECT asset_id FROM notifications WHERE kind = 'failed'")
        assert notes == [{"asset_id": poison}]
        assert await scalar(conn, "SELECT count(*) FROM queue_pauses") == 0


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_manual_pause_holds_through_probe_intervals_until_resume(
    db_url: str, make_cli: Callable[[str], Cli], tmp_path: Path
) -> None:
    cli = make_cli(SETUP)
    paused = cli("pause", "--reason", "render farm maintenance")
    assert paused.returncode == 0, paused.stderr
    assert "paused" in paused.stdout
    assert "already paused" in cli("pause").stdout
    ids = await add_assets(db_url, ["a", "b", "c"], down=str(tmp_path / "never"))
    with workers(cli, 2):
        await asyncio.sleep(SETTINGS.breaker_probe_seconds * 1.5)  # a probe would have run
        async with await connection.connect(db_url) as conn:
            assert await scalar(conn, "SELECT count(*) FROM job_events WHERE kind = 'claimed'") == 0
        status = cli.json("status")["queue"]
        assert status["state"] == "paused"
        assert status["reason"] == "manual"
        assert status["detail"] == "render farm maintenance"
        assert status["paused_by"].startswith("operator:")
        shown = cli("status").stdout
        assert "PAUSED" in shown
        assert "render farm maintenance" in shown
        resumed = cli("resume")
        assert resumed.returncode == 0, resumed.stderr
        assert "resumed" in resumed.stdout
        await wait_for(db_url, OPEN, lambda n: n == 0, seconds=30)  # NOTIFY wakes them
    assert cli.json("status")["queue"]["state"] == "running"
    assert "not paused" in cli("resume").stdout
    # A drain does not wait for a manual pause to end, nor say "drained": nothing would
    # run until then (tests/acceptance/test_cli.py has the breaker's pause too).
    assert cli("pause").returncode == 0
    await add_assets(db_url, ["d"], down=str(tmp_path / "never"))
    drained = cli("worker", "--drain", timeout=60)
    assert drained.returncode == 1, drained.stderr
    assert "vidretry: error: queue paused (by operator:" in drained.stderr
    assert "1 job(s) wait" in drained.stderr
    async with await connection.connect(db_url) as conn:
        assert await scalar(
            conn, "SELECT count(*) FROM video_assets WHERE state = 'available'"
        ) == len(ids)
        # A manual pause was never announced, so its end is not either.
        assert await scalar(conn, "SELECT count(*) FROM notifications WHERE asset_id IS NULL") == 0


async def test_a_retried_asset_is_claimed_before_an_older_backlog(
    db_url: str, make_cli: Callable[[str], Cli], tmp_path: Path
) -> None:
    cli = make_cli(SETUP)
    down = str(tmp_path / "never")
    (failed,) = await add_assets(db_url, ["failed-before"], down=down)
    async with await connection.connect(db_url) as conn:
        await conn.execute(
            "UPDATE video_assets SET state = 'failed', attempts = max_attempts,"
            " finished_at = now() WHERE id = %s",
            (failed,),
        )
    backlog = await add_assets(db_url, [f"backlog-{i}" for i in range(100)], down=down)
    retried = cli("retry", str(failed))
    assert retried.returncode == 0, retried.stderr
    done = cli("worker", "--concurrency", "1", "--drain", timeout=120)
    assert done.returncode == 0, done.stderr
    async with await connection.connect(db_url) as conn:
        order = await rows(
            conn, "SELECT asset_id FROM job_events WHERE kind = 'claimed' ORDER BY id"
        )
    assert [o["asset_id"] for o in order] == [failed, *backlog]
