"""Test harness: one private PostgreSQL per test process, a fresh database per test.

``async def`` tests and fixtures run on pytest-asyncio, each test on its own event loop.

pytest-postgresql clones each test's database from a template that already has the schema.
The server is vidretry's own embedded one, started in a temporary directory: it works the
same as root (it then runs as the ``postgres`` system user) and as an ordinary user, and it
listens only on a unix socket. Under pytest-xdist each worker starts its own server in its
own directory (the controller, which runs no test, starts none), so workers share no
socket, port or file. Set VIDRETRY_TEST_PG_HOST/PORT/USER to use a running server instead
(xdist workers then get databases of their own names from pytest-postgresql).
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import hypothesis  # noqa: F401
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from pytest_postgresql import factories

from tests import leftovers
from tests.support import FakeClock, apply_schema
from vidretry.db import connection
from vidretry.db.embedded import SOCKET_PORT, SUPERUSER, EmbeddedServer

# hypothesis is imported up front: its pytest plugin otherwise imports it at the end of a
# run that used none of its tests, and on Python 3.11.7 pytest's rewriting of it then fails
# ("AST constructor recursion depth mismatch") once the Telegram tests have run.

_server: EmbeddedServer | None = None
_server_dir: Path | None = None
_bytecode_dir: Path | None = None
_session: pytest.Session | None = None


_BYTECODE = "VIDRETRY_TEST_BYTECODE"


def _cache_bytecode_for_subprocesses() -> None:
    """The ``vidretry`` processes the tests start cache their bytecode, in a directory of
    the run's own (made by the process that runs pytest; xdist's workers share it), as they
    would on a user's machine: with PYTHONDONTWRITEBYTECODE (set in some environments) every
    one of them compiled vidretry from source, hundreds of times a run. Only the processes
    the tests start use it (pytest's own processes are already running)."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = os.environ[_BYTECODE]


def _is_xdist_controller(config: pytest.Config) -> bool:
    return bool(getattr(config.option, "numprocesses", None)) and not hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    global _server, _server_dir
    global _bytecode_dir
    if not hasattr(config, "workerinput"):  # xdist's workers inherit the controller's
        os.environ[leftovers.RUN] = uuid.uuid4().hex
        _bytecode_dir = Path(tempfile.mkdtemp(prefix="vidretry-test-bytecode-"))
        os.environ[_BYTECODE] = str(_bytecode_dir)
    if _is_xdist_controller(config):
        return
    _cache_bytecode_for_subprocesses()
    if os.environ.get("VIDRETRY_TEST_PG_HOST"):
        config.option.postgresql_host = os.environ["VIDRETRY_TEST_PG_HOST"]
        config.option.postgresql_port = os.environ.get("VIDRETRY_TEST_PG_PORT", "5432")
        config.option.postgresql_user = os.environ.get("VIDRETRY_TEST_PG_USER", "postgres")
        return
    _server_dir = Path(tempfile.mkdtemp(prefix="vidretry-test-"))
    _server_dir.chmod(0o755)  # the server may run as another user (we may be root)
    _server = EmbeddedServer(
        _server_dir / "pg",
        # Durability buys nothing in a throwaway test cluster.
        extra_settings=(
            ("fsync", "off"),
            ("synchronous_commit", "off"),
            ("full_page_writes", "off"),
        ),
    )
    _server.start()
    config.option.postgresql_host = _server.socket_host
    config.option.postgresql_port = str(SOCKET_PORT)
    config.option.postgresql_user = SUPERUSER


def pytest_sessionstart(session: pytest.Session) -> None:
    global _session
    _session = session


def pytest_unconfigure(config: pytest.Config) -> None:
    if _server is not None:
        _server.stop()
    if _server_dir is not None:
        shutil.rmtree(_server_dir, ignore_errors=True)
    if _bytecode_dir is not None:
        shutil.rmtree(_bytecode_dir, ignore_errors=True)
    if not hasattr(config, "workerinput"):
        _nothing_outlives_the_run()


def _nothing_outlives_the_run() -> None:
    """The run's last word: every process it started has ended (xdist's workers and their
    servers are given a few seconds to), or the run fails naming those still running."""
    left = leftovers.settle(leftovers.RUN, os.environ[leftovers.RUN], within=15)
    if not left:
        return
    leftovers.stop(left)
    print(
        "\nthe test run left these processes running (now stopped):\n"
        + "\n".join(f"  {leftover}" for leftover in left),
        file=sys.stderr,
    )
    if _session is not None:
        _session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tests that wait longest (``@pytest.mark.slow(seconds=N)``) start first, each on a
    worker of its own as far as they go, so that their waits overlap the rest of the run.
    pytest-xdist's ``worksteal`` hands each worker a contiguous share of the tests at the
    start (and steals from their ends later): each long test heads a share, and the shares
    are laid out as it will cut them. Every worker computes the same order."""
    waits = {item: _seconds(item) for item in items}
    longest = sorted((i for i in items if waits[i]), key=lambda i: -waits[i])
    if not longest:
        return
    rest = [item for item in items if not waits[item]]
    workerinput = getattr(config, "workerinput", {})
    workers = int(workerinput.get("workercount", 1))
    if workers == 1 or _dist(workerinput.get("mainargv", [])) != "worksteal":
        items[:] = longest + rest
        return
    sizes, left = [], len(items)
    for i in range(workers):
        sizes.append(left // (workers - i))
        left -= sizes[-1]
    shares: list[list[pytest.Item]] = [[] for _ in range(workers)]
    load = [0.0] * workers
    for item in longest:  # each to the share that waits least so far, and has room
        k = min((k for k in range(workers) if len(shares[k]) < sizes[k]), key=load.__getitem__)
        shares[k].append(item)
        load[k] += waits[item]
    others = iter(rest)
    for k, share in enumerate(shares):
        share.extend(next(others) for _ in range(sizes[k] - len(share)))
    items[:] = [item for share in shares for item in share]


def _dist(argv: list[str]) -> str | None:
    """The ``--dist`` mode of the run's command line (a worker's own option says "no")."""
    for arg, following in zip(argv, [*argv[1:], ""], strict=True):
        if arg == "--dist":
            return following
        if arg.startswith("--dist="):
            return arg.removeprefix("--dist=")
    return None


def _seconds(item: pytest.Item) -> float:
    marker = item.get_closest_marker("slow")
    return float(marker.kwargs.get("seconds", 0)) if marker else 0.0


@pytest.fixture(autouse=True)
def _stops_what_it_started(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every process this test starts carries its mark; what is still running when the
    test is over (its fixtures torn down) is stopped, and the test fails naming it."""
    test = uuid.uuid4().hex
    monkeypatch.setenv(leftovers.TEST, test)
    yield
    left = leftovers.settle(leftovers.TEST, test, within=2)
    if left:
        leftovers.stop(left)
        pytest.fail("left running (now stopped): " + "; ".join(map(str, left)), pytrace=False)


pg_server = factories.postgresql_noproc(load=[apply_schema])
postgresql = factories.postgresql("pg_server")


@pytest.fixture
def db_url(postgresql: psycopg.Connection[Any]) -> str:
    """URL of this test's own database (schema applied, empty tables)."""
    info = postgresql.info
    return f"postgresql://{info.user}@/{info.dbname}?host={info.host}&port={info.port}"


@pytest.fixture
async def conn(db_url: str) -> AsyncIterator[connection.Connection]:
    """A connection to this test's database (autocommit, rows as dicts)."""
    async with await connection.connect(db_url) as opened:
        yield opened


@pytest.fixture
def empty_database(db_url: str) -> Iterator[str]:
    """A database with no schema at all, on the test's server; dropped afterwards."""
    name = f"empty_{secrets.token_hex(4)}"
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(db_url, dbname=name)
    finally:
        with psycopg.connect(db_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def tmp_output(tmp_path: Path) -> Iterator[Path]:
    out = tmp_path / "output"
    out.mkdir()
    return out
