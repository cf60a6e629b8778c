"""vidretry through a real PgBouncer in transaction pooling mode: the worker, the notifier
(console transport) and the CLI, with `[database] prepare = false` (Debian's PgBouncer 1.18
has no max_prepared_statements) and with and without `[database] listen_url`."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.acceptance.conftest import Cli
from vidretry.db import connection, embedded, schema, sqlfiles
from vidretry.db.listen import LISTEN_CHECK_SECONDS

POLL_WARNING = "receives no notifications"


def pgbouncer_binary() -> str:
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
    if found is None:
        pytest.fail("PgBouncer is not installed: ./dev installs Debian's pgbouncer package")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def pgbouncer(postgresql: psycopg.Connection[Any]) -> Iterator[str]:
    """A PgBouncer in transaction mode in front of this test's server; its URL for the
    test's database. Started as the server's user when we are root (it refuses root)."""
    info = postgresql.info
    owner = embedded._server_user()  # None: ourselves
    directory = Path(tempfile.mkdtemp(prefix="vidretry-pgbouncer-"))
    directory.chmod(0o755)
    port = free_port()
    (directory / "users.txt").write_text(f'"{info.user}" ""\n')
    ini = directory / "pgbouncer.ini"
    ini.write_text(
        "[databases]\n"
        f"* = host={info.host} port={info.port} user={info.user}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {directory / 'users.txt'}\n"
        "pool_mode = transaction\ndefault_pool_size = 4\nmax_client_conn = 200\n"
        f"logfile = {directory / 'pgbouncer.log'}\npidfile = {directory / 'pgbouncer.pid'}\n"
        "ignore_startup_parameters = extra_float_digits,options\n"
    )
    argv = [pgbouncer_binary(), "-d", str(ini)]
    if owner is not None:
        entry = pwd.getpwnam(owner)
        for path in [directory, *directory.iterdir()]:
            os.chown(path, entry.pw_uid, entry.pw_gid)
        argv = ["runuser", "-u", owner, "--", *argv]
    started = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert started.returncode == 0, started.stderr
    url = f"postgresql://{info.user}@127.0.0.1:{port}/{info.dbname}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                psycopg.connect(url, connect_timeout=2, prepare_threshold=None).close()
                break
            except psycopg.OperationalError:
                assert time.monotonic() < deadline, (directory / "pgbouncer.log").read_text()
                time.sleep(0.1)
        yield url
    finally:
        pid = int((directory / "pgbouncer.pid").read_text())
        os.kill(pid, signal.SIGTERM)
        shutil.rmtree(directory, ignore_errors=True)


def through(make_cli: Callable[[str], Cli], bouncer: str, worker_toml: str, database: str) -> Cli:
    cli = make_cli(worker_toml)
    text = cli.config.read_text()
    _, rest = text.split("\n\n", 1)
    cli.config.write_text(f'[database]\nurl = "{bouncer}"\n{database}\n\n{rest}')
    return cli


WORKER = (
    'command = ["sh", "-c", "case {name} in bad*) exit 3;; *) echo v > {output};; esac"]\n'
    "max_attempts = 2\nbackoff_base_seconds = 0\npoll_interval_seconds = 0.2\n"
    # Eight bad names in a row would trip the circuit breaker: not what this test is about.
    "breaker = false\n"
)


@contextmanager
def worker_running(cli: Cli) -> Iterator[Path]:
    """A ``vidretry worker`` in the background; its log."""
    log = cli.config.parent / "worker.log"
    with log.open("ab") as out:
        worker = subprocess.Popen(
            cli.argv("worker"), stdout=out, stderr=subprocess.STDOUT, env=cli.env,
            cwd=cli.config.parent,
        )  # fmt: skip
        try:
            yield log
        finally:
            worker.terminate()
            worker.wait(timeout=30)


def wait_until(cli: Cli, check: Callable[[dict[str, int]], bool], log: Path) -> None:
    deadline = time.monotonic() + 60
    while not check(cli.json("status")["counts"]):
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.3)


@pytest.mark.slow
def test_worker_notifier_and_cli_through_transaction_pooling(
    make_cli: Callable[[str], Cli], pgbouncer: str
) -> None:
    cli = through(make_cli, pgbouncer, WORKER, "prepare = false")
    names = [f"good-{i}" for i in range(12)] + [f"bad-{i}" for i in range(8)]
    with worker_running(cli) as log:
        for i, name in enumerate(names):
            done = cli("enqueue", name, "--user", str(100 + i))
            assert done.returncode == 0, done.stderr
        wait_until(cli, lambda n: n["available"] == 12 and n["failed"] == 8, log)
        # More than five runs of the same statements on one connection: without
        # prepare = false they would be prepared, and PgBouncer 1.18 would lose them.
        retried = cli("retry", "--all-failed", "--reason", "through pgbouncer")
        assert retried.returncode == 0, retried.stderr
        assert "8 of 8" in retried.stdout
        wait_until(cli, lambda n: n["failed"] == 8 and n["pending"] + n["running"] == 0, log)
        time.sleep(LISTEN_CHECK_SECONDS)  # the listener has given up by now
    # LISTEN cannot work through transaction pooling: the worker polls, and says so once.
    assert log.read_text().count(POLL_WARNING) == 1, log.read_text()
    sent = cli("notifier", "--transport", "console", "--mark-sent", "--drain", timeout=120)
    assert sent.returncode == 0, sent.stderr
    with psycopg.connect(pgbouncer, prepare_threshold=None) as conn:
        states = dict(
            conn.execute("SELECT kind, count(*) FROM notifications WHERE state = 'sent'"
                         " GROUP BY kind").fetchall()
        )  # fmt: skip
        assert conn.execute("SELECT count(*) FROM notifications WHERE state IN"
                            " ('pending', 'sending')").fetchone() == (0,)  # fmt: skip
    # 12 videos; 8 failures told, retried, failed again and told again (a failure row
    # still pending at the retry is superseded instead: never more than two per user).
    assert states["ready"] == 12
    assert 8 <= states["failed"] <= 16


def test_listen_url_wakes_workers_at_once_through_pgbouncer(
    make_cli: Callable[[str], Cli], pgbouncer: str, db_url: str
) -> None:
    # A poll every 60 s: only a notification can make the job start well within it.
    slow_poll = WORKER.replace("poll_interval_seconds = 0.2", "poll_interval_seconds = 60")
    cli = through(make_cli, pgbouncer, slow_poll, f'prepare = false\nlisten_url = "{db_url}"')
    with worker_running(cli) as log, psycopg.connect(db_url, autocommit=True) as conn:
        # Listening (its LISTEN seen on the direct connection), and its first idle poll
        # done: a fixed sleep was too short on a busy machine.
        deadline = time.monotonic() + 60
        while not conn.execute(
            "SELECT count(*) > 0 FROM pg_stat_activity"
            " WHERE datname = current_database() AND query ILIKE 'LISTEN%%'"
        ).fetchone()[0]:  # type: ignore[index]
            assert time.monotonic() < deadline, "the worker never listened"
            time.sleep(0.1)
        time.sleep(1)
        asked = time.monotonic()
        assert cli("enqueue", "good-1", "--user", "1").returncode == 0
        wait_until(cli, lambda n: n["available"] == 1, log)
        assert time.monotonic() - asked < 30  # not the 60 s poll, even on a slow day
        time.sleep(LISTEN_CHECK_SECONDS)
    assert POLL_WARNING not in log.read_text()


async def test_db_upgrade_through_transaction_pooling(pgbouncer: str, empty_database: str) -> None:
    # From an empty database to this release and a next release's step that runs outside a
    # transaction (an index built CONCURRENTLY, a backfill in batches), two runs at once:
    # they take turns through a lock held in a transaction, which pins one server connection.
    name = conninfo_to_dict(empty_database)["dbname"]
    url = f"{pgbouncer.rsplit('/', 1)[0]}/{name}"
    shipped = sqlfiles.shipped()
    step = sqlfiles.parse_migration(
        shipped.latest_version + 1, "styles",
        "-- kind: expand\n-- transaction: no\n"
        "ALTER TABLE video_assets ADD COLUMN IF NOT EXISTS style text;\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS video_assets_style ON video_assets (style);\n"
        "-- in batches\n"
        "UPDATE video_assets SET style = 'plain' WHERE id IN"
        " (SELECT id FROM video_assets WHERE style IS NULL LIMIT 2);\n",
    )  # fmt: skip
    catalog = sqlfiles.Catalog((*shipped.migrations, step), shipped.functions, shipped.release)

    async def upgrade() -> schema.Upgraded:
        async with await connection.connect(url, prepare=False) as conn:
            return await schema.upgrade(conn, catalog)

    runs = await asyncio.gather(upgrade(), upgrade())
    assert sorted(len(run.applied) for run in runs) == [0, step.version]
    async with await connection.connect(url, prepare=False) as conn:
        await schema.check_schema(conn, catalog)
