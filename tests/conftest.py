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
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import hypothesis  # noqa: F401
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from pytest_postgresql import factories

from tests.support import FakeClock, apply_schema
from vidretry.store import db
from vidretry.store.embedded import SOCKET_PORT, SUPERUSER, EmbeddedServer

# hypothesis is imported up front: its pytest plugin otherwise imports it at the end of a
# run that used none of its tests, and on Python 3.11.7 pytest's rewriting of it then fails
# ("AST constructor recursion depth mismatch") once the Telegram tests have run.

_server: EmbeddedServer | None = None
_server_dir: Path | None = None
_bytecode_dir: Path | None = None


def _cache_bytecode_for_subprocesses() -> None:
    """The ``vidretry`` processes the tests start cache their bytecode, in a directory of
    this test process's own, as they would on a user's machine: with
    PYTHONDONTWRITEBYTECODE (set in some environments) every one of them compiled vidretry
    from source, hundreds of times a run."""
    global _bytecode_dir
    _bytecode_dir = Path(tempfile.mkdtemp(prefix="vidretry-test-bytecode-"))
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(_bytecode_dir)


def _is_xdist_controller(config: pytest.Config) -> bool:
    return bool(getattr(config.option, "numprocesses", None)) and not hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    global _server, _server_dir
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


def pytest_unconfigure(config: pytest.Config) -> None:
    if _server is not None:
        _server.stop()
    if _server_dir is not None:
        shutil.rmtree(_server_dir, ignore_errors=True)
    if _bytecode_dir is not None:
        shutil.rmtree(_bytecode_dir, ignore_errors=True)


pg_server = factories.postgresql_noproc(load=[apply_schema])
postgresql = factories.postgresql("pg_server")


@pytest.fixture
def db_url(postgresql: psycopg.Connection[Any]) -> str:
    """URL of this test's own database (schema applied, empty tables)."""
    info = postgresql.info
    return f"postgresql://{info.user}@/{info.dbname}?host={info.host}&port={info.port}"


@pytest.fixture
async def conn(db_url: str) -> AsyncIterator[db.Connection]:
    """A connection to this test's database (autocommit, rows as dicts)."""
    async with await db.connect(db_url) as connection:
        yield connection


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
