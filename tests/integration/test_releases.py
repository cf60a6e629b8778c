"""Which releases run (docs/upgrading.md): each worker, notifier and console records itself
while it runs; `status`, the console and `doctor` show them, and warn when a mix of releases
outlives a rollout."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from tests.support import FakeClock, eventually, rows, scalar
from vidretry.app.doctor import Verdict, _database
from vidretry.config import parse_config
from vidretry.db import connection
from vidretry.db.pool import open_pool
from vidretry.db.processes import recorded
from vidretry.queue import reports
from vidretry.version import __version__

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


async def record(
    conn: connection.Connection, role: str, name: str, release: str, started: datetime
) -> None:
    await conn.execute(
        "INSERT INTO vidretry_processes (role, name, release, started_at, seen_at)"
        " VALUES (%s, %s, %s, %s, %s)",
        (role, name, release, started, NOW),
    )


async def test_a_process_is_recorded_while_it_runs_and_says_so_again(db_url: str) -> None:
    clock = FakeClock(NOW)
    query = "SELECT role, name, release, started_at, seen_at FROM vidretry_processes"
    async with open_pool(db_url, max_size=2) as pool, pool.connection() as conn:
        async with recorded(pool, "worker", "gpu-1:42", clock, report_seconds=0.05):
            assert await rows(conn, query) == [{
                "role": "worker", "name": "gpu-1:42", "release": __version__,
                "started_at": NOW, "seen_at": NOW,
            }]  # fmt: skip
            # Pruned while it was away (ten minutes unseen): the next report brings it back,
            # with its first start. A report that read the clock before it moved may still
            # land after the prune: wait for one that read it after.
            clock.advance(60)
            await conn.execute("DELETE FROM vidretry_processes")
            later = NOW + timedelta(seconds=60)
            seen = "SELECT count(*) FROM vidretry_processes WHERE seen_at = %s"
            assert await eventually(lambda: scalar(conn, seen, later), within=10)
            (row,) = await rows(conn, query)
            assert (row["started_at"], row["seen_at"]) == (NOW, later)
        assert await rows(conn, query) == []  # stopped: gone


async def test_releases_side_by_side_for_more_than_an_hour_are_a_warning(
    conn: connection.Connection,
) -> None:
    await record(conn, "worker", "gpu-1:1", "0.20.0", NOW - timedelta(hours=3))
    await record(conn, "notifier", "bot-1:2", "0.20.0", NOW - timedelta(hours=2))
    await record(conn, "worker", "gpu-2:3", "0.21.0", NOW - timedelta(minutes=30))
    await record(conn, "web", "ops:4", "0.21.0", NOW - timedelta(minutes=20))
    # Seen three minutes ago: gone without a word (SIGKILL), not shown.
    await conn.execute(
        "INSERT INTO vidretry_processes (role, name, release, started_at, seen_at)"
        " VALUES ('worker', 'gpu-9:9', '0.18.0', %s, %s)",
        (NOW - timedelta(hours=5), NOW - timedelta(minutes=3)),
    )
    shown = await reports.releases(conn, NOW)
    assert [(r["release"], r["workers"], r["notifiers"], r["web"]) for r in shown["running"]] == [
        ("0.20.0", 1, 1, 0), ("0.21.0", 1, 0, 1)
    ]  # fmt: skip
    assert shown["mixed_since"] == NOW - timedelta(minutes=30)
    assert shown["warning"] is None  # a rollout under way
    later = NOW + timedelta(minutes=31)
    await conn.execute("UPDATE vidretry_processes SET seen_at = %s WHERE release <> '0.18.0'",
                       (later,))  # fmt: skip
    later = await reports.releases(conn, later)
    assert later["warning"] == (
        "releases 0.20.0 and 0.21.0 have run side by side for 1 h 1 min: finish the rollout, "
        "or roll back (docs/upgrading.md)"
    )


async def test_the_previous_release_is_seen_by_what_it_holds(conn: connection.Connection) -> None:
    # 0.19.0 records nothing: a worker holding a running video's lease and the leading
    # notifier are its.
    await record(conn, "worker", "gpu-1:1", __version__, NOW - timedelta(hours=2))
    await conn.execute(
        "INSERT INTO video_assets (name, state, attempts, lease_owner, lease_token,"
        " lease_expires_at) VALUES ('a', 'running', 1, 'old-gpu:7', gen_random_uuid(), %s),"
        " ('b', 'running', 1, 'gpu-1:1', gen_random_uuid(), %s)",
        (NOW + timedelta(minutes=1), NOW + timedelta(minutes=1)),
    )
    await conn.execute(
        "UPDATE leadership SET leader = 'old-bot:8', token = gen_random_uuid(),"
        " elected_at = %s, expires_at = %s",
        (NOW, NOW + timedelta(seconds=30)),
    )
    shown = await reports.releases(conn, NOW)
    old, new = shown["running"]
    assert (old["release"], old["workers"], old["notifiers"]) == ("0.19.0 or older", 1, 1)
    assert old["unrecorded"] == ["notifier old-bot:8", "worker old-gpu:7"]
    assert (new["release"], new["workers"]) == (__version__, 1)
    assert shown["mixed_since"] == NOW - timedelta(hours=2)
    assert shown["warning"] is not None
    assert shown["warning"].startswith(f"releases 0.19.0 or older and {__version__} have run")


async def test_doctor_shows_the_releases_and_warns_about_a_long_mix(
    conn: connection.Connection, db_url: str
) -> None:
    now = await scalar(conn, "SELECT now()")
    await record(conn, "worker", "gpu-1:1", "0.20.0", now - timedelta(hours=3))
    await conn.execute("UPDATE vidretry_processes SET seen_at = now()")
    checks = {check.name: check for check in await _database(db_url, parse_config({}))}
    assert checks["schema"].verdict is Verdict.OK
    assert checks["schema"].detail.startswith("version ")
    assert checks["releases"].verdict is Verdict.OK
    assert checks["releases"].detail == "0.20.0 (1 worker)"  # as `status` says it
    await record(conn, "worker", "gpu-2:2", "0.21.0", now - timedelta(hours=2))
    await conn.execute("UPDATE vidretry_processes SET seen_at = now()")
    checks = {check.name: check for check in await _database(db_url, parse_config({}))}
    assert checks["releases"].verdict is Verdict.WARN
    assert "have run side by side for" in checks["releases"].detail


async def test_a_process_is_not_held_up_by_its_record(
    db_url: str,
) -> None:
    # The pool's one connection is taken: the process is not held up by its record, at
    # start (the pool would wait 30 s for a connection) or when it stops.
    async with open_pool(db_url, max_size=1) as pool, pool.connection() as held:
        started = asyncio.get_running_loop().time()
        async with recorded(pool, "web", "ops:1", FakeClock(NOW), report_seconds=3600):
            pass
        assert asyncio.get_running_loop().time() - started < 10
        assert await scalar(held, "SELECT count(*) FROM vidretry_processes") == 0
