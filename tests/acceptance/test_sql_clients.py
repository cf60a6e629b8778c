"""The SQL interface through clients nobody here wrote: psql, and Node's pg (what a grammY or
Prisma bot uses). A transaction that commits and one that rolls back, a retry refused with
its SQLSTATE, and a running worker woken at the commit, not before."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.acceptance.conftest import Cli
from tests.acceptance.test_breaker import workers
from tests.integration.test_sql_interface import fail_for_good
from tests.support import eventually, rows, scalar
from vidretry.db import connection
from vidretry.db.embedded import find_bindir

NODE_DIR = Path(__file__).resolve().parents[1] / "node"


@pytest.fixture
def pg_env(postgresql: psycopg.Connection[Any]) -> dict[str, str]:
    """The standard PG* variables for this test's database: what psql and Node's pg read."""
    info = postgresql.info
    return {
        **os.environ,
        "PGHOST": info.host, "PGPORT": str(info.port), "PGUSER": info.user,
        "PGDATABASE": info.dbname,
    }  # fmt: skip


def psql(env: dict[str, str], script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(find_bindir() / "psql"), "-X", "-q", "-At", "-v", "VERBOSITY=verbose"],
        input=script, capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip


def node(env: dict[str, str], *args: str) -> list[dict[str, Any]]:
    if shutil.which("node") is None:
        pytest.skip("node is not installed (Debian: apt-get install nodejs)")
    if not (NODE_DIR / "node_modules" / "pg").is_dir():
        pytest.skip("Node's pg is not installed: npm ci --prefix tests/node (./dev test does)")
    done = subprocess.run(
        ["node", str(NODE_DIR / "interface.mjs"), *args],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


async def test_psql_commits_rolls_back_and_sees_the_sqlstate(
    db_url: str, pg_env: dict[str, str]
) -> None:
    done = psql(
        pg_env,
        "BEGIN;\n"
        "SELECT vidretry_enqueue('Маша', 111, NULL, '{\"voice\": \"alto\"}', 2);\n"
        "COMMIT;\n"
        "BEGIN;\n"
        "SELECT vidretry_enqueue('Петя', 222);\n"
        "ROLLBACK;\n"
        "SELECT vidretry_retry(1, 111);\n",
    )
    assert done.stdout.splitlines() == ["1", "2"]  # the second, rolled back, leaves nothing
    assert "ERROR:  VR012: asset 1 is not failed (pending): nothing to retry" in done.stderr
    async with await connection.connect(db_url) as conn:
        assert await rows(conn, "SELECT name, priority, params FROM video_assets") == [
            {"name": "Маша", "priority": 2, "params": {"voice": "alto"}}
        ]
        bad = psql(pg_env, "SELECT vidretry_enqueue(E'a\\x07b', 1);")
        assert "ERROR:  VR001: asset name must be 1 to 2000 bytes" in bad.stderr
        assert await scalar(conn, "SELECT count(*) FROM video_assets") == 1


async def test_node_pg_in_the_bot_s_own_transaction(db_url: str, pg_env: dict[str, str]) -> None:
    committed, rolled_back = node(pg_env, "orders")
    assert committed["outcome"] == "COMMIT"
    assert rolled_back["outcome"] == "ROLLBACK"
    async with await connection.connect(db_url) as conn:
        # The order and its video commit together, or neither does.
        assert await rows(conn, "SELECT asset FROM orders") == [{"asset": int(committed["asset"])}]
        assert await rows(conn, "SELECT name, owner, priority FROM video_assets") == [
            {"name": "Маша", "owner": 501, "priority": 3}
        ]
    (refused,) = node(pg_env, "retry", str(committed["asset"]), "501")
    assert refused == {
        "code": "VR012",
        "message": f"asset {committed['asset']} is not failed (pending): nothing to retry",
    }
    (stranger,) = node(pg_env, "retry", str(committed["asset"]), "999")
    assert stranger == {
        "code": "VR011", "message": f"user 999 may not retry asset {committed['asset']}"
    }  # fmt: skip
    # The button as docs/integrate.md's grammY bot presses it, and asking again: out of
    # retries, the answer is an outcome, and the admins' alert is committed.
    asset = int(committed["asset"])
    async with await connection.connect(db_url) as conn:
        await conn.execute(
            "UPDATE queue_policy SET admins = '{900}', max_retries_per_user_per_day = 1"
        )
        await fail_for_good(conn, asset)
    assert node(pg_env, "press", str(asset), "501") == [{"outcome": "retried", "generation": 1}]
    async with await connection.connect(db_url) as conn:
        await fail_for_good(conn, asset)
    assert node(pg_env, "press", str(asset), "501") == [
        {"outcome": "out_of_retries", "generation": 1}
    ]
    assert node(pg_env, "ask", "Маша", "501") == [{"asset": str(asset), "state": "failed"}]
    async with await connection.connect(db_url) as conn:
        alerts = "SELECT user_id, generation FROM notifications WHERE kind = 'alert'"
        assert await rows(conn, alerts) == [{"user_id": 900, "generation": 1}]


@pytest.mark.slow
async def test_a_running_worker_is_woken_at_the_commit_not_before(
    make_cli: Callable[[str], Cli], db_url: str, pg_env: dict[str, str]
) -> None:
    # A poll every 60 s: only the notification at commit can start the job within seconds.
    cli = make_cli('handler = "python:sample_handlers:succeed"\npoll_interval_seconds = 60')
    assert cli("db", "upgrade").returncode == 0
    with workers(cli, 1), psycopg.connect(db_url, autocommit=True) as conn:

        def listening() -> bool:
            row = conn.execute(
                "SELECT count(*) > 0 FROM pg_stat_activity"
                " WHERE datname = current_database() AND query ILIKE 'LISTEN%%'"
            ).fetchone()
            return bool(row and row[0])

        assert await eventually(listening, within=60), "the worker never listened"
        time.sleep(1)  # its first idle claim is done
        (slow,) = node(pg_env, "slow", "на коммите")
        async with await connection.connect(db_url) as check:
            assert await eventually(lambda: _claimed(check), within=30), "the worker was not woken"
            claimed = await scalar(
                check, "SELECT extract(epoch FROM created_at) FROM job_events"
                " WHERE kind = 'claimed'"
            )  # fmt: skip
    # Claimed after the commit (nothing before it: the transaction held it back for 1.5 s)
    # and at once: well within the poll.
    assert slow["committed_at"] - 0.5 <= float(claimed) <= slow["committed_at"] + 5


async def _claimed(conn: connection.Connection) -> bool:
    return bool(await scalar(conn, "SELECT count(*) FROM job_events WHERE kind = 'claimed'"))
