"""A fair share of the generator with real `vidretry worker` processes: the fair order as a
user meets it, the global quotas held by several workers (measured by the generator
itself), and a generator's "slow down" holding every worker off at no attempt's cost."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.acceptance.conftest import Cli
from tests.acceptance.test_breaker import OPEN, wait_for, workers
from tests.support import eventually, rows
from tests.unit.test_handlers import _alive
from vidretry.cli import plain
from vidretry.db import connection
from vidretry.queue import reports
from vidretry.queue.enqueue import enqueue

GENERATOR = Path(__file__).with_name("counting_generator.py")


def generator_toml(directory: Path, **worker: object) -> str:
    """[worker] running counting_generator.py, which logs to ``directory``."""
    command = [sys.executable, str(GENERATOR), str(directory), "{name}", "{seconds}", "{output}"]
    settings = {"handler": "command", "command": command, **worker}
    return "\n".join(f"{key} = {json.dumps(value)}" for key, value in settings.items())


def generator_log(directory: Path) -> list[list[str]]:
    path = directory / "log"
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def starts(directory: Path) -> list[tuple[str, float, int]]:
    """(name, time, generators alive then) of every start, in order."""
    return [(n, float(t), int(alive)) for kind, n, t, alive in
            (line for line in generator_log(directory) if line[0] == "start")]  # fmt: skip


async def ask(db_url: str, names: list[tuple[str, int]], seconds: float, **kw: int) -> None:
    async with await connection.connect(db_url) as conn:
        for name, user in names:
            await enqueue(conn, name, user_id=user, params={"seconds": str(seconds)}, **kw)


def test_enqueue_takes_a_priority_and_needs_no_user(make_cli: Callable[[str], Cli]) -> None:
    cli = make_cli('handler = "python:sample_handlers:succeed"')
    assert cli("db", "upgrade").returncode == 0
    made = cli("enqueue", "для всех", "--priority", "7")
    assert made.returncode == 0, made.stderr
    asset = made.stdout.strip()
    shown = cli("show", asset)
    assert "priority 7, turn 0, owner itself" in shown.stdout
    listed = cli.json("list")
    assert [(a["name"], a["priority"]) for a in listed] == [("для всех", 7)]
    bad = cli("enqueue", "x", "--priority", "10")
    assert (bad.returncode, bad.stderr.strip()) == (
        2, "vidretry: error: priority must be an integer from 0 to 9 (higher first), got 10"
    )  # fmt: skip
    orphan = cli("enqueue", "x", "--chat", "-100")
    assert orphan.returncode == 2
    assert "a chat id needs the user id of the requester (--user)" in orphan.stderr


@pytest.mark.slow
async def test_five_users_are_not_put_behind_one_user_s_thirty_videos(
    make_cli: Callable[[str], Cli], db_url: str, tmp_path: Path
) -> None:
    # As a user found it: user 1 asks for 30 videos, then five others ask for one each; one
    # worker at concurrency 1. Each of the five starts before user 1's third video.
    cli = make_cli(generator_toml(tmp_path, concurrency=1))
    assert cli("db", "upgrade").returncode == 0
    await ask(db_url, [(f"A{i:02d}", 1) for i in range(30)], seconds=0.1)
    with workers(cli, 1):
        assert await eventually(lambda: bool(starts(tmp_path)), within=30)
        await ask(db_url, [(f"U{user}", user) for user in range(2, 7)], seconds=0.1)
        await wait_for(db_url, OPEN, lambda n: n == 0, seconds=90)
    order = [name for name, _, _ in starts(tmp_path)]
    assert len(order) == 35
    third = order.index("A02")
    assert all(order.index(f"U{user}") < third for user in range(2, 7)), order


@pytest.mark.slow
async def test_max_running_holds_across_three_workers(
    make_cli: Callable[[str], Cli], db_url: str, tmp_path: Path
) -> None:
    # Three workers with room for 4 jobs each, and a paid API with 2 slots. They poll every
    # 50 ms: all three keep trying to claim whenever a slot frees.
    cli = make_cli(
        generator_toml(tmp_path, concurrency=4, max_running=2, poll_interval_seconds=0.05)
    )
    assert cli("db", "upgrade").returncode == 0
    await ask(db_url, [(f"v{i:02d}", 1 + i % 6) for i in range(24)], seconds=0.4)
    with workers(cli, 3):
        await wait_for(db_url, OPEN, lambda n: n == 0, seconds=120)
    seen = starts(tmp_path)
    assert len(seen) == 24
    alive = [n for _, _, n in seen]
    assert max(alive) <= 2, alive  # never more than 2 generators alive at once
    assert alive.count(2) >= 5, alive  # and the quota is used, not just respected


# A generator that ignores SIGTERM, as does the process it starts (an ignored signal stays
# ignored across fork and exec): sh writes its pid and its child's, and when it started.
STUBBORN = (
    'trap \'\' TERM; echo $$ >> "$0/pids-$1"; date +%s.%N > "$0/started-$1"; '
    'sleep "$2" & echo $! >> "$0/pids-$1"; wait; echo video > "$3"'
)


@pytest.mark.slow  # a lease's end and the slot's margin: about 8 s
async def test_a_killed_workers_generator_dies_with_it_before_its_slot_is_free(
    make_cli: Callable[[str], Cli], db_url: str, tmp_path: Path
) -> None:
    """``max_running = 1`` and a worker SIGKILLed while its generator (which ignores
    SIGTERM, and has a child) runs: the generator's whole process group dies with the worker
    — SIGTERM, then SIGKILL after the grace — so when a second worker starts the next job,
    once the dead worker's slot is free, no generator of the first is alive."""
    command = ["sh", "-c", STUBBORN, str(tmp_path), "{name}", "{seconds}", "{output}"]
    settings = {
        "handler": "command", "command": command, "max_running": 1, "lease_seconds": 3,
        "heartbeat_seconds": 0.5, "poll_interval_seconds": 0.2, "timeout_seconds": 60,
    }  # fmt: skip
    cli = make_cli("\n".join(f"{k} = {json.dumps(v)}" for k, v in settings.items()))
    assert cli("db", "upgrade").returncode == 0
    await ask(db_url, [("stubborn", 1)], seconds=30)
    await ask(db_url, [("next", 2)], seconds=0.2)
    pids_file = tmp_path / "pids-stubborn"
    pids: list[int] = []
    try:
        with cli.spawn("worker") as doomed:
            assert await eventually(lambda: len(pids_of(pids_file)) == 2, within=30)
            pids = pids_of(pids_file)
            doomed.send_signal(signal.SIGKILL)
            doomed.wait(10)
        gone_at = None
        with workers(cli, 1):
            started = tmp_path / "started-next"
            deadline = time.monotonic() + 60
            while not started.exists() and time.monotonic() < deadline:
                if gone_at is None and not any(_alive(pid) for pid in pids):
                    gone_at = time.time()
                await asyncio.sleep(0.05)
        assert started.exists(), "the next job never started"
        next_started = float(started.read_text())
        assert gone_at is not None, "the killed worker's generator still runs"
        assert gone_at <= next_started
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def pids_of(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


# The quota's window here, where the default is a minute (tests/integration/test_fair_share.py
# holds the default on a hand-moved clock): a few polls long, as a minute is.
WINDOW = 6.0


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_no_window_has_more_starts_than_the_quota_and_the_quota_is_used(
    make_cli: Callable[[str], Cli], db_url: str, tmp_path: Path
) -> None:
    quota = 3
    cli = make_cli(
        generator_toml(
            tmp_path, concurrency=2, max_starts_per_minute=quota, starts_window_seconds=WINDOW
        )
    )
    assert cli("db", "upgrade").returncode == 0
    await ask(db_url, [(f"v{i:02d}", 1 + i) for i in range(12)], seconds=0.1)
    with workers(cli, 3):
        # Three at once, then nothing for a window, then three more.
        assert await eventually(lambda: len(starts(tmp_path)) >= 2 * quota, within=100)
        async with await connection.connect(db_url) as conn:
            claimed = await rows(
                conn,
                "SELECT extract(epoch FROM created_at)::float8 AS at FROM job_events"
                " WHERE kind = 'claimed' ORDER BY created_at",
            )
    at = [row["at"] for row in claimed]
    # No window holds quota + 1 starts, by the database's clock (where the tokens are
    # kept) ...
    assert all(at[i + quota] - at[i] >= WINDOW for i in range(len(at) - quota)), at
    # ... nor by the generator's own (each start comes a little after its claim: a spawn).
    times = [t for _, t, _ in starts(tmp_path)]
    assert all(times[i + quota] - times[i] >= WINDOW - 0.5 for i in range(len(times) - quota))
    # The quota is used: the next starts come as soon as the first tokens are free (a poll
    # of the workers' default 2 s), not a window after the last start.
    assert at[quota] - at[0] < WINDOW + 4, at


@pytest.mark.slow
async def test_a_slow_down_holds_every_worker_off_and_costs_no_attempt(
    make_cli: Callable[[str], Cli], db_url: str, tmp_path: Path
) -> None:
    # Default [worker] settings but one attempt per job: had the "slow down" counted as a
    # failed attempt, the job would have failed for good.
    cli = make_cli(generator_toml(tmp_path, max_attempts=1))
    assert cli("db", "upgrade").returncode == 0
    await ask(db_url, [("limited", 1)], seconds=0.1, priority=9)
    await ask(db_url, [(f"v{i}", 2 + i) for i in range(8)], seconds=0.5)
    with workers(cli, 2):
        assert await eventually(lambda: (tmp_path / "told-limited").exists(), within=30)
        async with await connection.connect(db_url) as conn:
            assert await eventually(lambda: _held(conn), within=10), "no hold recorded"
            # What `vidretry status` shows, read here and now: the hold lasts 4 s, and a
            # `status` process started on a loaded machine read the database after it (the
            # workers' next claims were a second old).
            shown = plain.dashboard(await reports.status(conn, None), [])
        assert "rate limited until" in shown, shown
        await wait_for(db_url, OPEN, lambda n: n == 0, seconds=90)
    async with await connection.connect(db_url) as conn:
        (hold,) = await rows(conn, "SELECT held_at, until FROM generator_hold")
        (limited,) = await rows(
            conn, "SELECT state, attempts FROM video_assets WHERE name = 'limited'"
        )
        assert limited == {"state": "available", "attempts": 1}
        claims = await rows(
            conn,
            "SELECT a.name, e.created_at FROM job_events AS e JOIN video_assets AS a"
            " ON a.id = e.asset_id WHERE e.kind = 'claimed' ORDER BY e.id",
        )
        streak = await rows(conn, "SELECT streak_assets FROM breaker")
    assert streak == [{"streak_assets": []}]  # the breaker never saw it
    held = [c for c in claims if hold["held_at"] < c["created_at"] < hold["until"]]
    assert held == []  # no worker started anything while it was held off
    after = [c for c in claims if c["created_at"] >= hold["until"]]
    assert after, "nothing waited for the hold: it proved nothing"
    # And it resumed by itself, within a poll of the end.
    assert (after[0]["created_at"] - hold["until"]).total_seconds() < 2 + 1.5
    assert (hold["until"] - hold["held_at"]).total_seconds() == 4


async def _held(conn: connection.Connection) -> bool:
    return bool(await rows(conn, "SELECT 1 FROM generator_hold WHERE until > now()"))
