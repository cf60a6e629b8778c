"""The migrator: brings a database to the schema this vidretry was written for, and refuses
to run against any other — older, newer, or one whose applied migrations differ from the
files shipped here (compared by checksum)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vidretry.errors import SchemaError
from vidretry.store.sqlfiles import Migration, latest_version, migrations, queries

if TYPE_CHECKING:
    from vidretry.store.db import Connection

__all__ = ["check_schema", "latest_version", "schema_version", "upgrade"]


async def schema_version(conn: Connection) -> int:
    applied = await _applied(conn)
    return max(applied, default=0)


async def _applied(conn: Connection) -> dict[int, str | None]:
    """Applied migrations: version -> checksum (None: applied before checksums existed)."""
    cur = await conn.execute(queries()["migrations_table_exists"])
    row = await cur.fetchone()
    if row is None or not row["present"]:
        return {}
    cur = await conn.execute(queries()["applied_migrations"])
    return {int(r["version"]): r["checksum"] for r in await cur.fetchall()}


async def upgrade(conn: Connection) -> list[int]:
    """Apply the migrations the database lacks, all in one transaction (a failing migration
    leaves the database as it was); return the versions applied.

    Safe to run concurrently (an advisory lock serialises runs) and repeatedly. A database
    newer than this code, or one whose applied migrations differ from the shipped files, is
    an error and nothing changes.
    """
    done: list[int] = []
    async with conn.transaction():
        await conn.execute(queries()["lock_migrations"])
        await conn.execute(queries()["create_migrations_table"])
        applied = await _applied(conn)
        _check_applied(applied)
        for migration in migrations():
            if migration.version in applied:
                if applied[migration.version] is None:
                    await _record(conn, "record_missing_checksum", migration)
                continue
            await conn.execute(migration.sql)
            await _record(conn, "record_migration", migration)
            done.append(migration.version)
    return done


async def check_schema(conn: Connection) -> None:
    """Refuse to run against a schema other than the one this code was written for."""
    applied = await _applied(conn)
    _check_applied(applied)
    current = max(applied, default=0)
    if current < latest_version():
        raise SchemaError(
            f"database schema is at version {current}, this vidretry needs "
            f"{latest_version()}: run `vidretry db upgrade`"
        )


def _check_applied(applied: dict[int, str | None]) -> None:
    current = max(applied, default=0)
    if current > latest_version():
        raise SchemaError(
            f"database schema is at version {current}, newer than this vidretry "
            f"(knows up to {latest_version()}): upgrade vidretry"
        )
    for migration in migrations():
        checksum = applied.get(migration.version)
        if checksum is not None and checksum != migration.checksum:
            raise SchemaError(
                f"migration {migration.version} ({migration.name}) applied to this database "
                f"differs from the one shipped with this vidretry (checksum {checksum[:12]}, "
                f"expected {migration.checksum[:12]}): the schema was changed by hand or by "
                "another build; restore the shipped migration or the database"
            )


async def _record(conn: Connection, statement: str, migration: Migration) -> None:
    await conn.execute(
        queries()[statement],
        {"version": migration.version, "name": migration.name, "checksum": migration.checksum},
    )
