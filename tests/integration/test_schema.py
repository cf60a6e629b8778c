import psycopg
import pytest

from tests.support import rows, scalar
from vidretry.errors import SchemaError
from vidretry.store import db, schema, sqlfiles


async def test_upgrade_twice_changes_nothing(conn: db.Connection) -> None:
    assert await schema.upgrade(conn) == []
    assert await schema.schema_version(conn) == schema.latest_version()


async def test_fresh_database_gets_every_migration(conn: db.Connection) -> None:
    await conn.execute("CREATE SCHEMA fresh")
    await conn.execute("SET search_path TO fresh")
    assert await schema.upgrade(conn) == [m.version for m in sqlfiles.migrations()]
    assert await scalar(conn, "SELECT count(*) FROM fresh.video_assets") == 0


async def test_newer_database_is_a_clear_error(conn: db.Connection) -> None:
    await conn.execute("INSERT INTO vidretry_migrations (version, name) VALUES (999, 'future')")
    with pytest.raises(SchemaError, match="version 999, newer than this vidretry"):
        await schema.upgrade(conn)
    with pytest.raises(SchemaError, match="newer than this vidretry"):
        await schema.check_schema(conn)


async def test_missing_schema_says_how_to_fix_it(conn: db.Connection) -> None:
    await conn.execute("DROP TABLE vidretry_migrations")
    with pytest.raises(SchemaError, match="run `vidretry db upgrade`"):
        await schema.check_schema(conn)


async def test_a_changed_migration_is_refused(conn: db.Connection) -> None:
    await conn.execute("UPDATE vidretry_migrations SET checksum = 'f00d' WHERE version = 3")
    with pytest.raises(SchemaError, match=r"migration 3 \(lean_writes\) applied to this"):
        await schema.check_schema(conn)
    with pytest.raises(SchemaError, match="differs from the one shipped"):
        await schema.upgrade(conn)
    assert await scalar(conn, "SELECT checksum FROM vidretry_migrations WHERE version = 3") == (
        "f00d"
    )


async def test_checksums_are_recorded_for_migrations_applied_before_them(
    conn: db.Connection,
) -> None:
    await conn.execute("ALTER TABLE vidretry_migrations DROP COLUMN checksum")
    await schema.check_schema(conn)  # an older vidretry's bookkeeping is still read
    assert await schema.upgrade(conn) == []
    recorded = await rows(conn, "SELECT version, checksum FROM vidretry_migrations")
    shipped = {m.version: m.checksum for m in sqlfiles.migrations()}
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
async def test_illegal_assets_are_unstorable(conn: db.Connection, insert: str) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        await conn.execute(insert)  # type: ignore[arg-type]


async def test_duplicate_notification_is_impossible(conn: db.Connection) -> None:
    await conn.execute("INSERT INTO video_assets (name) VALUES ('a')")
    insert = (
        "INSERT INTO notifications (asset_id, user_id, chat_id, kind, generation)"
        " SELECT id, 1, 1, 'failed', 0 FROM video_assets"
    )
    await conn.execute(insert)
    with pytest.raises(psycopg.errors.UniqueViolation):
        await conn.execute(insert)


async def test_event_history_is_append_only(conn: db.Connection) -> None:
    await conn.execute("INSERT INTO video_assets (name) VALUES ('a')")
    await conn.execute(
        "INSERT INTO job_events (asset_id, generation, kind)"
        " SELECT id, 0, 'enqueued' FROM video_assets"
    )
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        await conn.execute("UPDATE job_events SET actor = 'me'")
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        await conn.execute("DELETE FROM job_events")
