import difflib

import psycopg
import pytest

from tests import schema_snapshot
from tests.support import functions_in, rows, scalar
from vidretry.db import connection, schema, sqlfiles
from vidretry.errors import SchemaError


async def test_upgrade_twice_changes_nothing(conn: connection.Connection) -> None:
    assert await schema.upgrade(conn) == schema.Upgraded([], functions=False)
    assert await schema.schema_version(conn) == schema.latest_version()


async def test_fresh_database_gets_every_migration(conn: connection.Connection) -> None:
    await conn.execute("CREATE SCHEMA fresh")
    await conn.execute("SET search_path TO fresh")
    upgraded = await schema.upgrade(conn)
    assert upgraded.applied == [m.version for m in sqlfiles.migrations()]
    assert upgraded.functions
    assert await scalar(conn, "SELECT count(*) FROM fresh.video_assets") == 0
    await schema.check_schema(conn)


async def test_the_history_stays_where_releases_before_the_policy_look(
    conn: connection.Connection,
) -> None:
    # vidretry 0.19.0 checks max(version) of vidretry_migrations against its 19.
    versions = await rows(conn, "SELECT version FROM vidretry_migrations ORDER BY version")
    assert [r["version"] for r in versions] == list(range(1, sqlfiles.LEGACY_LAST + 1))


async def test_a_newer_release_s_expand_step_is_no_reason_to_refuse(
    conn: connection.Connection,
) -> None:
    await conn.execute(
        "INSERT INTO vidretry_schema_steps (version, name, kind, checksum, release,"
        " finished_at) VALUES (999, 'future', 'expand', 'x', '9.0.0', now())"
    )
    await schema.check_schema(conn)
    upgraded = await schema.upgrade(conn)
    assert upgraded.applied == []
    assert upgraded.newer is not None
    assert "a newer release's (step 999, future, by vidretry 9.0.0)" in upgraded.newer


async def test_a_newer_release_s_contract_that_breaks_this_one_is_refused(
    conn: connection.Connection,
) -> None:
    await conn.execute(
        "INSERT INTO vidretry_schema_steps (version, name, kind, breaks_before, checksum,"
        " release, finished_at) VALUES (999, 'drop_x', 'contract', '9.0.0', 'x', '9.0.0', now())"
    )
    refused = "cannot work with .*: deploy vidretry 9.0.0 or newer"
    with pytest.raises(SchemaError, match=refused):
        await schema.check_schema(conn)
    with pytest.raises(SchemaError, match=refused):
        await schema.upgrade(conn)


async def test_functions_of_an_older_release_are_replaced_by_upgrade(
    conn: connection.Connection,
) -> None:
    await conn.execute(
        "CREATE OR REPLACE FUNCTION vidretry_interface_version() RETURNS integer"
        " LANGUAGE sql IMMUTABLE AS $$ SELECT 0 $$"
    )
    await conn.execute("UPDATE vidretry_schema_functions SET release = '0.19.9', checksum = 'x'")
    with pytest.raises(SchemaError, match=r"are vidretry 0\.19\.9's, vidretry .* needs its own"):
        await schema.check_schema(conn)
    assert await schema.upgrade(conn) == schema.Upgraded([], functions=True)
    assert await scalar(conn, "SELECT vidretry_interface_version()") == 2
    await schema.check_schema(conn)


async def test_functions_of_a_newer_release_are_left_alone(conn: connection.Connection) -> None:
    await conn.execute(
        "CREATE OR REPLACE FUNCTION vidretry_interface_version() RETURNS integer"
        " LANGUAGE sql IMMUTABLE AS $$ SELECT 99 $$"
    )
    await conn.execute("UPDATE vidretry_schema_functions SET release = '9.0.0', checksum = 'x'")
    await schema.check_schema(conn)
    upgraded = await schema.upgrade(conn)
    assert (upgraded.applied, upgraded.functions) == ([], False)
    assert (
        upgraded.newer
        == "the SQL functions are vidretry 9.0.0's, a newer release's: left as they are"
    )
    assert await scalar(conn, "SELECT vidretry_interface_version()") == 99


async def test_every_function_in_the_database_is_a_file_of_sql_functions(
    conn: connection.Connection,
) -> None:
    # A function whose file was deleted without a contract step dropping it stays behind;
    # the triggers' functions have theirs too: every function of vidretry's is pinned.
    names = await functions_in(conn, "public")
    assert names == sorted(f.name for f in sqlfiles.functions())


async def test_missing_schema_says_how_to_fix_it(conn: connection.Connection) -> None:
    await conn.execute("DROP TABLE vidretry_migrations")
    with pytest.raises(SchemaError, match="run `vidretry db upgrade`"):
        await schema.check_schema(conn)


async def test_a_changed_migration_is_refused(conn: connection.Connection) -> None:
    await conn.execute("UPDATE vidretry_migrations SET checksum = 'f00d' WHERE version = 3")
    with pytest.raises(SchemaError, match=r"migration 3 \(lean_writes\) applied to this"):
        await schema.check_schema(conn)
    with pytest.raises(SchemaError, match="differs from the one shipped"):
        await schema.upgrade(conn)
    assert await scalar(conn, "SELECT checksum FROM vidretry_migrations WHERE version = 3") == (
        "f00d"
    )


async def test_checksums_are_recorded_for_migrations_applied_before_them(
    conn: connection.Connection,
) -> None:
    await conn.execute("ALTER TABLE vidretry_migrations DROP COLUMN checksum")
    await schema.check_schema(conn)  # an older vidretry's bookkeeping is still read
    assert (await schema.upgrade(conn)).applied == []
    recorded = await rows(conn, "SELECT version, checksum FROM vidretry_migrations")
    shipped = {m.version: m.checksum for m in sqlfiles.migrations()[: sqlfiles.LEGACY_LAST]}
    assert {r["version"]: r["checksum"] for r in recorded} == shipped


@pytest.mark.parametrize(
    "insert",
    [
        # running without a lease
        "INSERT INTO video_assets (name, state, attempts) VALUES ('a', 'running', 1)",
        # a lease on a job that is not running
        "INSERT INTO video_assets (name, lease_owner, lease_token, lease_expires_at)"
        " VALUES ('a', 'w', gen_random_uuid(), now())",
        # available without its result
        "INSERT INTO video_assets (name, state, finished_at) VALUES ('a', 'available', now())",
        # terminal without finished_at
        "INSERT INTO video_assets (name, state) VALUES ('a', 'failed')",
        # more attempts than allowed
        "INSERT INTO video_assets (name, attempts, max_attempts) VALUES ('a', 4, 3)",
        # pending with no attempt left: it could never run
        "INSERT INTO video_assets (name, attempts, max_attempts) VALUES ('a', 3, 3)",
        "INSERT INTO video_assets (name, state) VALUES ('a', 'done')",
        "INSERT INTO video_assets (name, params) VALUES ('a', '[1]')",
        # a name the unique index on names could not hold (2,001 bytes: 'я' is 2, 'x' is 1)
        "INSERT INTO video_assets (name) VALUES (repeat('я', 1000) || 'x')",
    ],
)
async def test_illegal_assets_are_unstorable(conn: connection.Connection, insert: str) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        await conn.execute(insert)  # type: ignore[arg-type]


async def test_duplicate_notification_is_impossible(conn: connection.Connection) -> None:
    await conn.execute("INSERT INTO video_assets (name) VALUES ('a')")
    insert = (
        "INSERT INTO notifications (asset_id, user_id, chat_id, kind, generation)"
        " SELECT id, 1, 1, 'failed', 0 FROM video_assets"
    )
    await conn.execute(insert)
    with pytest.raises(psycopg.errors.UniqueViolation):
        await conn.execute(insert)


async def test_event_history_is_append_only(conn: connection.Connection) -> None:
    await conn.execute("INSERT INTO video_assets (name) VALUES ('a')")
    await conn.execute(
        "INSERT INTO job_events (asset_id, generation, kind)"
        " SELECT id, 0, 'enqueued' FROM video_assets"
    )
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        await conn.execute("UPDATE job_events SET actor = 'me'")
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        await conn.execute("DELETE FROM job_events")


def test_the_schema_snapshot_is_what_the_migrations_make_of_an_empty_database(
    db_url: str,
) -> None:
    # The test's database is a clone of the template the migrator brought from empty to
    # this release (tests/support.py: apply_schema).
    made = schema_snapshot.dump(db_url)
    kept = schema_snapshot.SNAPSHOT.read_text(encoding="utf-8")
    diff = "".join(difflib.unified_diff(kept.splitlines(True), made.splitlines(True), n=1))
    assert made == kept, f"sql/schema.sql is out of date: run `./dev schema`\n{diff[:3000]}"
