"""Steps that run while the queue works (docs/upgrading.md): locks waited for briefly and
tried again, indexes built CONCURRENTLY and resumed after a failed build, a contract held
back while a release it breaks still runs, and a notification kind a later release adds."""

from __future__ import annotations

import asyncio
import time
from typing import LiteralString

import psycopg
import pytest
from psycopg import sql

from tests.support import eventually, rows, scalar
from vidretry.db import connection, schema, sqlfiles
from vidretry.db.online import LOCK_TIMEOUT_MS
from vidretry.errors import SchemaError
from vidretry.telegram import outbox

NEXT = sqlfiles.latest_version() + 1


def with_steps(*texts: LiteralString, release: str = "0.21.0") -> sqlfiles.Catalog:
    """This release's catalog and the next release's steps."""
    shipped = sqlfiles.shipped()
    steps = tuple(
        sqlfiles.parse_migration(NEXT + i, f"next_{i}", text) for i, text in enumerate(texts)
    )
    major, minor, patch = (int(part) for part in release.split("."))
    return sqlfiles.Catalog(shipped.migrations + steps, shipped.functions, (major, minor, patch))


async def test_a_failed_index_build_is_resumed_by_the_next_upgrade(
    conn: connection.Connection,
) -> None:
    # A unique index on names that repeat: the CONCURRENTLY build fails and leaves an
    # invalid index behind, and the step half done.
    await conn.execute("INSERT INTO web_tokens (name, role, token_hash) VALUES"
                       " ('a', 'viewer', sha256('1')), ('b', 'viewer', sha256('2'))")  # fmt: skip
    catalog = with_steps(
        "-- kind: expand\n-- transaction: no\n"
        "ALTER TABLE web_tokens ADD COLUMN IF NOT EXISTS team text;\n"
        "-- in batches\n"
        "UPDATE web_tokens SET team = 'ops' WHERE name IN"
        " (SELECT name FROM web_tokens WHERE team IS NULL LIMIT 1);\n"
        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS web_tokens_one_per_team"
        " ON web_tokens (team);\n"
    )
    with pytest.raises(psycopg.errors.UniqueViolation):
        await schema.upgrade(conn, catalog)
    assert await scalar(conn, "SELECT finished_at IS NULL FROM vidretry_schema_steps"
                              " WHERE version = %s", NEXT)  # fmt: skip
    valid = "SELECT indisvalid FROM pg_index WHERE indexrelid = 'web_tokens_one_per_team'::regclass"
    assert await scalar(conn, valid) is False
    # The step's code refuses the half-done schema; the shipped code works with it.
    with pytest.raises(SchemaError, match=f"needs {NEXT}: run `vidretry db upgrade`"):
        await schema.check_schema(conn, catalog)
    await schema.check_schema(conn)
    # Every batch ran (one row each), and the next run resumes once the data allows.
    assert await scalar(conn, "SELECT count(*) FROM web_tokens WHERE team = 'ops'") == 2
    await conn.execute("UPDATE web_tokens SET team = name")
    assert (await schema.upgrade(conn, catalog)).applied == [NEXT]
    assert await scalar(conn, valid) is True
    await schema.check_schema(conn, catalog)


async def test_ddl_waits_briefly_for_a_lock_and_tries_again(db_url: str) -> None:
    catalog = with_steps("-- kind: expand\nALTER TABLE video_assets ADD COLUMN style text;\n")
    async with (
        await connection.connect(db_url) as migrator,
        await connection.connect(db_url, autocommit=False) as long_reader,
        await connection.connect(db_url) as claimer,
    ):
        # A long transaction that read the table: ALTER TABLE cannot have its lock.
        await long_reader.execute("SELECT count(*) FROM video_assets")
        with pytest.raises(SchemaError, match="could not get its locks in 1 s of tries"):
            await schema.upgrade(migrator, catalog, lock_retry_seconds=1)
        upgrading = asyncio.create_task(schema.upgrade(migrator, catalog))
        # Meanwhile the queue is not held up behind the waiting lock for long.
        waits = []
        for _ in range(10):
            started = time.monotonic()
            await claimer.execute("SELECT count(*) FROM video_assets WHERE state = 'pending'")
            waits.append(time.monotonic() - started)
            await asyncio.sleep(0.1)
        assert not upgrading.done()
        # A claim waits for one lock timeout at most; a second is a generous bound on a
        # busy machine, and a lock held without a timeout would hold it until the end.
        assert max(waits) < 1.0 + LOCK_TIMEOUT_MS / 1000
        await long_reader.rollback()
        assert (await upgrading).applied == [NEXT]


async def test_a_contract_waits_for_the_releases_it_breaks_to_stop(
    conn: connection.Connection,
) -> None:
    catalog = with_steps(
        "-- kind: contract\n-- breaks: vidretry < 0.21.0\n"
        "ALTER TABLE queue_policy ADD CONSTRAINT at_most_20 CHECK (max_attempts <= 20);\n"
    )
    await conn.execute(
        "INSERT INTO vidretry_processes (role, name, release, started_at, seen_at)"
        " VALUES ('worker', 'gpu-1:42', '0.20.0', now(), now())"
    )
    refused = r"contract for vidretry 0\.21\.0 and newer, and older ones still run \(worker"
    with pytest.raises(SchemaError, match=refused + r" gpu-1:42 \(vidretry 0\.20\.0\)\)"):
        await schema.upgrade(conn, catalog)
    await conn.execute("DELETE FROM vidretry_processes")
    # 0.19.0 records nothing: its leader is seen by the leadership it holds.
    await conn.execute("UPDATE leadership SET leader = 'old:7', token = gen_random_uuid(),"
                       " elected_at = now(), expires_at = now() + interval '1 minute'")  # fmt: skip
    with pytest.raises(SchemaError, match=r"notifier old:7 \(vidretry 0\.19\.0 or older\)"):
        await schema.upgrade(conn, catalog)
    await conn.execute("UPDATE leadership SET leader = NULL, token = NULL, elected_at = NULL,"
                       " expires_at = NULL")  # fmt: skip
    assert (await schema.upgrade(conn, catalog)).applied == [NEXT]
    # Applied, it bars this release, and 0.19.0 (whose ledger now goes past 19).
    with pytest.raises(SchemaError, match=r"deploy vidretry 0\.21\.0 or newer"):
        await schema.check_schema(conn)
    assert await scalar(conn, "SELECT max(version) FROM vidretry_migrations") == NEXT


async def test_upgrades_at_once_take_turns(conn: connection.Connection, db_url: str) -> None:
    await conn.execute("CREATE SCHEMA fresh")

    async def upgrade() -> schema.Upgraded:
        async with await connection.connect(db_url) as other:
            await other.execute("SET search_path TO fresh")
            return await schema.upgrade(other)

    first, second = await asyncio.gather(upgrade(), upgrade())
    assert sorted([first.applied, second.applied], key=len) == [
        [], [m.version for m in sqlfiles.migrations()]
    ]  # fmt: skip


async def test_a_contract_bars_the_releases_it_breaks_while_it_waits_for_its_locks(
    db_url: str,
) -> None:
    """From the moment a contract begins, not once it is done: a process of a release it
    breaks that starts while the step waits for a lock (or is left half done) is refused,
    0.19.0's by the ledger it reads."""
    catalog = with_steps(
        "-- kind: contract\n-- breaks: vidretry < 0.21.0\n"
        "ALTER TABLE queue_policy ADD CONSTRAINT at_most_20 CHECK (max_attempts <= 20);\n"
    )
    async with (
        await connection.connect(db_url) as migrator,
        await connection.connect(db_url, autocommit=False) as long_reader,
        await connection.connect(db_url) as starting,
    ):
        await long_reader.execute("SELECT count(*) FROM queue_policy")  # holds a lock
        upgrading = asyncio.create_task(schema.upgrade(migrator, catalog))
        ledger = "SELECT max(version) FROM vidretry_migrations"  # what 0.19.0 checks

        async def barred() -> bool:
            return bool(await scalar(starting, ledger) == NEXT)

        assert await eventually(barred, within=10)
        with pytest.raises(SchemaError, match=r"deploy vidretry 0\.21\.0 or newer"):
            await schema.check_schema(starting)
        assert not upgrading.done()  # still waiting for its lock
        await long_reader.rollback()
        assert (await upgrading).applied == [NEXT]


async def _upgrade(db_url: str, catalog: sqlfiles.Catalog) -> schema.Upgraded:
    async with await connection.connect(db_url) as conn:
        return await schema.upgrade(conn, catalog)


async def _step_begun(conn: connection.Connection) -> bool:
    return bool(await scalar(conn, "SELECT count(*) FROM vidretry_schema_steps"
                                   " WHERE version = %s", NEXT))  # fmt: skip


async def test_a_run_waiting_its_turn_holds_up_no_index_built_concurrently(
    conn: connection.Connection, db_url: str
) -> None:
    """The second run waits through the first's CONCURRENTLY build, trying the lock many
    times (more than psycopg's five before it prepares a statement), then builds one of its
    own: neither the run that waits nor the one that holds the lock may keep a snapshot a
    build would wait for, or the runs wait for each other (or one for itself) for ever."""
    build = (
        "-- kind: expand\n-- transaction: no\n"
        "SELECT pg_sleep(2);\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS job_events_by_id ON job_events (id);\n"
    )
    first = asyncio.create_task(_upgrade(db_url, with_steps(build)))
    assert await eventually(lambda: _step_begun(conn), within=10)
    another = "-- kind: expand\n-- transaction: no\nCREATE INDEX CONCURRENTLY IF NOT EXISTS" \
              " job_events_by_kind ON job_events (kind);\n"  # fmt: skip
    second = asyncio.create_task(_upgrade(db_url, with_steps(build, another)))
    try:
        async with asyncio.timeout(30):  # 2 s, and builds of an empty table's indexes
            runs = await asyncio.gather(first, second)
    finally:
        for task in (first, second):
            task.cancel()
    assert [run.applied for run in runs] == [[NEXT], [NEXT + 1]]
    await schema.check_schema(conn, with_steps(build, another))


async def test_runs_take_turns_under_an_idle_in_transaction_timeout(
    conn: connection.Connection, db_url: str
) -> None:
    """Managed PostgreSQL often ends a transaction left idle (the run's lock is held by
    one for the whole run): the holder turns that off for itself, so the second run still
    waits for the first to finish instead of running the step again beside it."""
    name = await scalar(conn, "SELECT current_database()")
    await conn.execute(
        sql.SQL("ALTER DATABASE {} SET idle_in_transaction_session_timeout = '1s'").format(
            sql.Identifier(name)
        )
    )
    catalog = with_steps("-- kind: expand\n-- transaction: no\nSELECT pg_sleep(2);\n")
    first = asyncio.create_task(_upgrade(db_url, catalog))
    assert await eventually(lambda: _step_begun(conn), within=10)
    second = asyncio.create_task(_upgrade(db_url, catalog))
    runs = await asyncio.gather(first, second)
    assert [run.applied for run in runs] == [[NEXT], []]


async def test_a_notification_kind_of_a_later_release_waits_for_its_notifier(
    conn: connection.Connection,
) -> None:
    # The next release widened the CHECK (docs/upgrading.md) and wrote a kind this one
    # cannot send: this release's notifier leaves it alone and sends the rest.
    await conn.execute("ALTER TABLE notifications DROP CONSTRAINT notifications_kind_check")
    await conn.execute("INSERT INTO video_assets (name) VALUES ('a')")
    for kind in ("reminder", "failed"):
        await conn.execute(
            "INSERT INTO notifications (asset_id, user_id, chat_id, kind, generation, payload)"
            " SELECT id, 7, 7, %s, 0, '{}' FROM video_assets",
            (kind,),
        )
    claimed = await outbox.claim(conn, owner="n", limit=10, lease_seconds=60, now=None)
    assert [note.kind for note in claimed] == ["failed"]
    assert await outbox.due(conn, limit=10, now=None) == []
    left = await rows(conn, "SELECT kind, state FROM notifications WHERE state = 'pending'")
    assert left == [{"kind": "reminder", "state": "pending"}]
