"""PostgreSQL fails over: the primary is SIGKILLed mid-run and its streaming replica is
promoted. Workers and notifiers on one multi-host URL find the new primary by themselves.

With synchronous replication nothing committed is lost: no asset, no notification, and
what runs or is sent twice is at most what was in flight at the kill. With asynchronous
replication the last commits before the kill may be lost; the test measures what that
costs (a finished job run again, a notification sent twice) and that everything still
ends where it should."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.acceptance.conftest import Cli
from tests.faults.conftest import spawn, stop, wait_for
from tests.faults.test_half_open import runs
from tests.telegram.bot_process import read_events
from tests.telegram.double import BOT_TOKEN
from vidretry.db import connection
from vidretry.db.embedded import (
    SOCKET_PORT,
    SUPERUSER,
    EmbeddedServer,
    _make_reachable,
    find_bindir,
)
from vidretry.db.embedded import _server_user as server_user
from vidretry.queue.enqueue import enqueue

ROOT = Path(__file__).resolve().parents[2]
ASSETS = 120


class Pair:
    """A primary and its streaming replica, each an embedded server in its own directory."""

    def __init__(self, base: Path) -> None:
        self.primary = EmbeddedServer(base / "primary", (("wal_level", "replica"),))
        self.replica = EmbeddedServer(base / "replica")
        self.primary.start()
        self.replica.directory.mkdir()
        owner = server_user()
        if owner is not None:
            _make_reachable(self.replica.directory, owner)
        self.primary._run([
            str(find_bindir() / "pg_basebackup"), "-D", str(self.replica.data_dir), "-R",
            "-X", "stream", "-c", "fast", "-h", str(self.primary.data_dir),
            "-p", str(SOCKET_PORT), "-U", SUPERUSER,
        ])  # fmt: skip
        # The primary's socket lives in its data directory: its lock file came along.
        for copied in (".s.PGSQL.5432.lock", "server.log"):
            (self.replica.data_dir / copied).unlink(missing_ok=True)
        with (self.replica.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(f"unix_socket_directories = '{self.replica.data_dir}'\n")
        self.replica.start()

    def url(self) -> str:
        """Both servers; libpq takes the one that accepts writes."""
        hosts = f"{self.primary.data_dir},{self.replica.data_dir}"
        return (
            f"postgresql://{SUPERUSER}@/vidretry?host={hosts}&port={SOCKET_PORT},{SOCKET_PORT}"
            "&target_session_attrs=read-write"
        )

    def make_synchronous(self) -> None:
        """Commits wait for the replica: set on the primary only, after the base backup, so
        the promoted server does not wait forever for a standby it does not have."""
        with psycopg.connect(self.primary.url, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
            conn.execute("SELECT pg_reload_conf()")
            wait_for(
                lambda: conn.execute(
                    "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'"
                ).fetchone() == (1,),
                within=30, what="the replica is synchronous",
            )  # fmt: skip

    def kill_primary(self) -> None:
        """SIGKILL the postmaster and every backend at once: a crash, no shutdown."""
        postmaster = int((self.primary.data_dir / "postmaster.pid").read_text().split()[0])
        pids = [postmaster, *_children(postmaster)]
        for pid in pids:
            # A backend listed a moment ago may have ended since (a connection closed).
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def promote(self) -> None:
        self.replica._pg_ctl("promote", "-w", "-t", "60")

    def stop(self) -> None:
        self.replica.stop()
        self.primary.stop()


def _children(parent: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            found.append(int(stat.parent.name))
    return found


@pytest.fixture
def pair() -> Iterator[Pair]:
    base = Path(tempfile.mkdtemp(prefix="vidretry-failover-"))
    base.chmod(0o755)
    pair = Pair(base)
    yield pair
    pair.stop()
    subprocess.run(["rm", "-rf", str(base)], check=False)


async def ask(url: str, log: Path) -> None:
    """ASSETS videos, each asked for by its own user, who wrote to the bot first."""
    async with await connection.connect(url) as conn:
        await conn.execute(
            "INSERT INTO telegram_users (user_id, access_hash)"
            " SELECT u, u * 1000 + 7 FROM generate_series(1, %s) AS u",
            (ASSETS,),
        )
        for user in range(1, ASSETS + 1):
            params = {"log": str(log), "seconds": "0.3", "video": "1"}
            await enqueue(conn, f"video {user}", user_id=user, params=params)


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("replication", ["synchronous", "asynchronous"])
def test_a_failover_loses_nothing_committed_and_everyone_finds_the_new_primary(
    replication: str, pair: Pair, cli_for: Callable[[str, str], Cli], tmp_path: Path
) -> None:
    url = pair.url()
    cli = cli_for(
        "vidretry",
        f'[database]\nurl = "{url}"\n'
        f'[telegram]\napi_id = 1\napi_hash = "abc"\nsession = "{tmp_path / "bot.session"}"\n'
        '[worker]\nhandler = "python:sample_handlers:nap"\nconcurrency = 4\n'
        f"lease_seconds = 4\nheartbeat_seconds = 1\npoll_interval_seconds = 0.5\n"
        f'output_dir = "{tmp_path / "videos"}"\n'
        "[notifier]\nlease_seconds = 6\nheartbeat_seconds = 2\npoll_interval_seconds = 0.5\n"
        "per_chat_interval_seconds = 0\n",
    )
    assert cli("db", "upgrade").returncode == 0
    if replication == "synchronous":
        pair.make_synchronous()
    log, events = tmp_path / "runs.log", tmp_path / "events.jsonl"
    env = {**cli.env, "VIDRETRY_TELEGRAM_BOT_TOKEN": BOT_TOKEN, "VIDRETRY_TEST_EVENTS": str(events)}
    notifier_argv = [
        sys.executable, "-m", "tests.telegram.bot_process", "--config", str(cli.config),
        "notifier",
    ]  # fmt: skip

    def daemon(argv: list[str], name: str) -> subprocess.Popen[str]:
        return spawn(argv, env=env, cwd=ROOT, log=tmp_path / f"{name}.log")

    def sent() -> list[dict[str, Any]]:
        return [e for e in read_events(events) if e["event"] == "send"]

    processes = [
        daemon(cli.argv("worker"), "worker-1"), daemon(cli.argv("worker"), "worker-2"),
        daemon(notifier_argv, "notifier-1"), daemon(notifier_argv, "notifier-2"),
    ]  # fmt: skip
    try:
        wait_for(
            lambda: any(e["event"] == "connect" for e in read_events(events)),
            within=60, what="a notifier leads and is logged in to Telegram",
        )  # fmt: skip
        asyncio.run(ask(url, log))

        def made() -> int:
            with psycopg.connect(pair.primary.url, autocommit=True) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM video_assets WHERE state = 'available'"
                ).fetchone()
            return int(row[0]) if row else 0

        wait_for(lambda: made() >= ASSETS // 4, within=60, what="a quarter made")
        killed_at = time.time()
        pair.kill_primary()
        time.sleep(2)  # what a failover manager takes to decide, at the least
        promoted_at = time.time()
        pair.promote()

        def settled() -> bool:
            with psycopg.connect(pair.replica.url, autocommit=True) as conn:
                row = conn.execute(
                    "SELECT (SELECT count(*) FROM video_assets WHERE state = 'available'),"
                    " (SELECT count(*) FROM notifications WHERE state = 'sent')"
                ).fetchone()
            return row == (ASSETS, ASSETS)

        wait_for(settled, within=90, what="every video made and delivered after the failover")
    finally:
        logs = [stop(process) for process in processes]

    started = runs(log)
    sends = sent()
    first_claim = min(
        at for r in started.values() for e, _, at in r if e == "start" and at > promoted_at
    )
    first_send = min(e["t"] for e in sends if e["t"] > promoted_at)
    ran_twice = sum(1 for r in started.values() if sum(e == "start" for e, _, _ in r) > 1)
    in_flight = sum(  # started before the kill, not ended before it
        1 for r in started.values()
        if any(e == "start" and at < killed_at for e, _, at in r)
        and not any(e == "end" and at < killed_at for e, _, at in r)
    )  # fmt: skip
    per_chat = Counter(e["chat"] for e in sends)
    sent_twice = sum(1 for n in per_chat.values() if n > 1)
    sent_just_before = sum(1 for e in sends if killed_at - 2 < e["t"] <= killed_at)
    print(
        f"{replication}: first claim {first_claim - promoted_at:.1f}s and first send "
        f"{first_send - promoted_at:.1f}s after the promotion; ran twice {ran_twice} "
        f"(in flight {in_flight}); sent twice {sent_twice} "
        f"(sent in the 2 s before the kill {sent_just_before})"
    )
    assert set(per_chat) == set(range(1, ASSETS + 1))  # no notification lost
    # Found by themselves: workers within their reconnect backoff, the notifiers once the
    # old leader's term (lease / 2 = 3 s here, 30 s by default) has lapsed.
    assert first_claim - promoted_at <= 10
    assert first_send - promoted_at <= 3 + 10
    for text in logs:
        assert "Traceback" not in text
    if replication == "synchronous":
        assert ran_twice <= in_flight
        assert sent_twice <= sent_just_before
