"""The database goes down under a running worker and notifier: they back off, reconnect and
carry on, without crashing, restarting in a loop or losing a job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from vidretry.db.embedded import EmbeddedServer

TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture
def server() -> Iterator[EmbeddedServer]:
    base = Path(tempfile.mkdtemp(prefix="vidretry-outage-"))
    base.chmod(0o755)
    server = EmbeddedServer(base / "pg")
    server.start()
    yield server
    server.stop()
    subprocess.run(["rm", "-rf", str(base)], check=False)


def wait_until(url: str, query: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=2) as conn:
                row = conn.execute(query).fetchone()  # type: ignore[arg-type]
                if row and row[0]:
                    return
        except psycopg.OperationalError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {query}")


@pytest.mark.slow
def test_worker_and_notifier_ride_out_a_database_restart(
    server: EmbeddedServer, tmp_path: Path
) -> None:
    url = server.url
    config = tmp_path / "vidretry.toml"
    config.write_text(
        f'[database]\nurl = "{url}"\n[worker]\nhandler = "python:sample_handlers:succeed"\n'
        "poll_interval_seconds = 0.2\nlease_seconds = 3\nheartbeat_seconds = 1\n"
        "[notifier]\npoll_interval_seconds = 0.2\nper_chat_interval_seconds = 0\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent)])}
    env.pop("VIDRETRY_DATABASE_URL", None)
    cli = [sys.executable, "-m", "vidretry", "--config", str(config)]
    assert (
        subprocess.run(
            [*cli, "db", "upgrade"], env=env, capture_output=True, check=False
        ).returncode
        == 0
    )
    run = {
        "env": env,
        "cwd": tmp_path,
        "stdout": subprocess.DEVNULL,
        "stderr": subprocess.PIPE,
        "text": True,
    }
    with (
        subprocess.Popen([*cli, "worker"], **run) as worker,
        subprocess.Popen(  # type: ignore[call-overload]
            [*cli, "notifier", "--transport", "console", "--mark-sent"], **run
        ) as notifier,
    ):
        subprocess.run(
            [*cli, "enqueue", "before", "--user", "1"], env=env, check=True, capture_output=True
        )
        wait_until(url, "SELECT count(*) = 1 FROM notifications WHERE state = 'sent'")

        server.stop()  # fast shutdown: every connection is cut
        time.sleep(3)
        assert worker.poll() is None
        assert notifier.poll() is None
        server.start()

        subprocess.run(
            [*cli, "enqueue", "after", "--user", "2"], env=env, check=True, capture_output=True
        )
        wait_until(url, "SELECT count(*) = 2 FROM notifications WHERE state = 'sent'")

        # A stop is not kept waiting by a database that is down again.
        server.stop()
        time.sleep(1)
        stopping = time.monotonic()
        for process in (worker, notifier):
            process.send_signal(signal.SIGTERM)
        _, worker_log = worker.communicate(timeout=60)
        worker_stopped_in = time.monotonic() - stopping
        _, notifier_log = notifier.communicate(timeout=60)
        stopped_in = time.monotonic() - stopping
    assert worker.returncode == 0, worker_log
    assert notifier.returncode == 0, notifier_log
    assert stopped_in < 10, (
        f"took {stopped_in:.1f}s to stop with the database down "
        f"(the worker {worker_stopped_in:.1f}s)\n{worker_log[-3000:]}\n{notifier_log[-3000:]}"
    )
    for log in (worker_log, notifier_log):
        assert "database unavailable" in log or "listener on" in log
        assert "Traceback" not in log
