"""A poison notification: its send kills the notifier process itself (a library's segfault,
an OOM kill), not with an exception. It must not take the outbox down with it every lease
for a day: after 3 crashes in a row while it was being sent it is set aside, the admins are
told, and everything else flows. A job that kills its worker: each crash is an attempt, and
it ends failed after max_attempts."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.acceptance.conftest import Cli
from tests.faults.conftest import spawn, stop, wait_for
from tests.telegram.double import BOT_TOKEN

ROOT = Path(__file__).resolve().parents[2]
ADMIN = 999


def seed(conn: psycopg.Connection[Any], users: int) -> int:
    """A failure message for each of ``users`` users; the first (the oldest) is poison.
    Returns its id."""
    conn.execute(
        "INSERT INTO telegram_users (user_id, access_hash)"
        " SELECT u, u * 1000 + 7 FROM generate_series(1, %s) AS u",
        (users,),
    )
    conn.execute("INSERT INTO telegram_users (user_id, access_hash) VALUES (%s, 7)", (ADMIN,))
    conn.execute(
        "INSERT INTO video_assets (name) SELECT CASE WHEN g = 1 THEN '☠ poison' "
        "ELSE 'video-' || g END FROM generate_series(1, %s) AS g",
        (users,),
    )
    conn.execute(
        "INSERT INTO notifications (asset_id, user_id, chat_id, kind, generation, payload)"
        " SELECT a.id, a.id, a.id, 'failed', 0, jsonb_build_object('name', a.name)"
        " FROM video_assets AS a ORDER BY a.id"
    )
    row = conn.execute("SELECT min(id) FROM notifications").fetchone()
    assert row is not None
    return int(row[0])


def notifier_logs(directory: Path) -> str:
    return "\n".join(log.read_text() for log in sorted(directory.glob("notifier-*.log")))


@pytest.mark.slow
def test_a_notification_that_kills_the_notifier_is_set_aside_after_three_crashes(
    db_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "vidretry.toml"
    config.write_text(
        f'[database]\nurl = "{db_url}"\n'
        f'[telegram]\napi_id = 1\napi_hash = "abc"\nsession = "{tmp_path / "bot.session"}"\n'
        f"admins = [{ADMIN}]\n"
        "[notifier]\nlease_seconds = 3\nheartbeat_seconds = 1\npoll_interval_seconds = 0.3\n"
        "per_chat_interval_seconds = 0\n"
    )
    # The failure message for the poison's video kills the process; the admins' notice,
    # which names the video too, does not. (Telegram gets the text without its HTML.)
    crash_on = "при создании видео для ☠ poison"
    env = {
        **os.environ,
        "VIDRETRY_TELEGRAM_BOT_TOKEN": BOT_TOKEN,
        "VIDRETRY_TEST_CRASH_ON": crash_on,
    }
    argv = [sys.executable, "-m", "tests.telegram.bot_process", "--config", str(config), "notifier"]
    logs = iter(tmp_path / f"notifier-{i}.log" for i in itertools.count())

    def start() -> subprocess.Popen[str]:
        return spawn(argv, env=env, cwd=ROOT, log=next(logs))

    with psycopg.connect(db_url, autocommit=True) as conn:
        poison = seed(conn, users=20)

        def settled() -> bool:
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE state IN ('pending', 'sending')) FROM notifications"
            ).fetchone()
            return row is not None and row[0] == 0

        # The return codes of the notifiers that died, each restarted as systemd would.
        crashes: list[int] = []
        notifier = start()
        try:
            deadline = time.monotonic() + 120
            while not settled() and len(crashes) <= 3 and time.monotonic() < deadline:
                if notifier.poll() is not None:
                    crashes.append(notifier.returncode)
                    notifier = start()
                time.sleep(0.1)
            assert crashes == [-signal.SIGKILL] * 3, (crashes, notifier_logs(tmp_path))
            wait_for(settled, within=60, what="everything else sent, and the admin told")
        finally:
            log = stop(notifier)
        rows = conn.execute(
            "SELECT id, user_id, kind, state, crashes, last_error, payload FROM notifications"
            " ORDER BY id"
        ).fetchall()
    assert notifier.returncode == 0, log
    by_id = {row[0]: row for row in rows}
    _, _, _, state, crashed, error, _ = by_id[poison]
    assert (state, crashed) == ("dead", 3)
    assert error.startswith("crashed the notifier 3 times while sending it: set aside")
    others = [row for row in rows if row[0] != poison and row[2] == "failed"]
    assert len(others) == 19
    assert {row[3] for row in others} == {"sent"}
    # Only a send under way at a crash is charged: the rows claimed with it, waiting for
    # their slots, were not (a crash charged to them would show here).
    charged = [row[:5] for row in others if row[4]]
    assert {row[4] for row in others} == {0}, (charged, notifier_logs(tmp_path))
    (notice,) = [row for row in rows if row[2] == "set_aside"]
    assert (notice[1], notice[3], notice[6]["notification"]) == (ADMIN, "sent", poison)


@pytest.mark.slow
def test_a_job_that_kills_its_worker_ends_failed_after_its_attempts(
    cli_for: Callable[[str, str], Cli], db_url: str, tmp_path: Path
) -> None:
    cli = cli_for(
        "vidretry",
        f'[database]\nurl = "{db_url}"\n[worker]\n'
        'handler = "python:sample_handlers:kill_worker_for"\nlease_seconds = 2\n'
        # One job at a time: a crash is charged to every job its worker was running (it
        # cannot tell which one killed it), so here the others run in turn, untouched.
        "concurrency = 1\nheartbeat_seconds = 0.5\npoll_interval_seconds = 0.2\n"
        "max_attempts = 3\n"
        "backoff_base_seconds = 0\n",
    )
    poison = cli.json("enqueue", "poison", "--user", "1", "-p", "kill=1")["asset_id"]
    fine = [cli.json("enqueue", f"fine {i}", "--user", "1")["asset_id"] for i in range(3)]

    def state(asset: int) -> str:
        return str(cli.json("show", str(asset))["state"])

    crashes = 0
    worker = cli.spawn("worker")
    deadline = time.monotonic() + 90
    while state(poison) != "failed" and crashes <= 3 and time.monotonic() < deadline:
        if worker.poll() is not None:
            worker.communicate()
            crashes += 1
            worker = cli.spawn("worker")
        time.sleep(0.1)
    stop(worker)
    shown = cli.json("show", str(poison))
    assert crashes == 3
    assert (shown["state"], shown["attempts"]) == ("failed", 3)
    assert {state(asset) for asset in fine} == {"available"}
    assert any(n["kind"] == "failed" for n in shown["notifications"])
