"""The hostile-role tier: a program calling vidretry's SQL interface with exactly the rights
docs/integrate.md tells an operator to give it, trying what a hostile caller would.

``installed`` is vidretry as an operator installs it: in ``public`` (this test's database,
from the migrated template), or in a schema of its own in a database of its own (the
migration run with that schema first in its search path). ``hostile`` is a connection of a
role that has only the documented grants on it, nothing on the tables.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from vidretry.db import connection, schema

DOCS = Path(__file__).resolve().parents[2] / "docs" / "integrate.md"


@dataclass(frozen=True)
class Installed:
    """Where vidretry is installed: the database (as its owner) and the schema."""

    url: str
    schema: str
    dbname: str
    host: str
    port: int

    def url_as(self, role: str) -> str:
        return f"postgresql://{role}@/{self.dbname}?host={self.host}&port={self.port}"


def documented_grants() -> str:
    """The GRANT statements of docs/integrate.md, for the role ``my_bot``."""
    blocks = re.findall(r"```sql\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)
    grants = [block for block in blocks if "GRANT" in block]
    assert grants, "docs/integrate.md shows no GRANT"
    return "\n".join(grants)


@pytest.fixture(params=["public", "own schema"])
def installed(
    request: pytest.FixtureRequest, postgresql: psycopg.Connection[Any], db_url: str
) -> Iterator[Installed]:
    info = postgresql.info
    if request.param == "public":
        yield Installed(db_url, "public", info.dbname, info.host, info.port)
        return
    # A database of its own, vidretry migrated into the schema "video_queue" (public left
    # empty), as `vidretry db upgrade` does with a URL whose options set the search path.
    name = f"{info.dbname}_own"[:63]
    postgresql.autocommit = True
    postgresql.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = f"postgresql://{info.user}@/{name}?host={info.host}&port={info.port}"
    with psycopg.connect(url, autocommit=True) as own:
        own.execute("CREATE SCHEMA video_queue")
    migrated = f"{url}&options=-csearch_path%3Dvideo_queue"
    _migrate(migrated)
    yield Installed(migrated, "video_queue", name, info.host, info.port)
    postgresql.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def _migrate(url: str) -> None:
    import asyncio

    async def upgrade() -> None:
        async with await connection.connect(url) as conn:
            await schema.upgrade(conn)

    asyncio.run(upgrade())


@pytest.fixture
async def owner(installed: Installed) -> AsyncIterator[connection.Connection]:
    """vidretry's own connection (its processes', the functions' owner)."""
    async with await connection.connect(installed.url) as opened:
        yield opened


@pytest.fixture
async def hostile(installed: Installed) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A role with the documented grants and nothing else, its search path its own default
    (vidretry's schema reached only as the docs say: in the role's search path)."""
    role = f"hostile_{installed.dbname}"[:63]
    with psycopg.connect(installed.url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        admin.execute(
            sql.SQL("ALTER ROLE {} SET search_path = {}, public").format(
                sql.Identifier(role), sql.Identifier(installed.schema)
            )
        )
        if installed.schema != "public":  # as docs/integrate.md says for a schema of its own
            admin.execute(
                sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
                    sql.Identifier(installed.schema), sql.Identifier(role)
                )
            )
        admin.execute(documented_grants().replace("my_bot", f'"{role}"').encode())
    try:
        async with await psycopg.AsyncConnection.connect(
            installed.url_as(role), autocommit=True
        ) as connection:
            yield connection
    finally:
        with psycopg.connect(installed.url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
