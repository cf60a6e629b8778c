"""The migrator: brings a database to the schema this vidretry ships, and refuses to run
against a schema it cannot work with (docs/upgrading.md).

A schema is steps: the history (migrations 1-19, from before the expand/contract policy,
recorded in ``vidretry_migrations`` as vidretry 0.19.0 and older expect), then steps that each
declare themselves an *expand* (the previous release's code keeps working) or a *contract*
(it names the releases it breaks), recorded in ``vidretry_schema_steps``; then the SQL
functions of ``sql/functions``, installed as one set by every ``db upgrade`` that ships a
different one and recorded in ``vidretry_schema_functions``.

A process works with a schema that has every step it knows (each as shipped: compared by
checksum) and its release's functions or a newer release's; steps it does not know are a
newer release's, fine unless one is a contract that breaks it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from vidretry.errors import SchemaError
from vidretry.store.sqlfiles import (
    LEGACY_LAST,
    Catalog,
    Migration,
    latest_version,
    queries,
    shipped,
)
from vidretry.version import Release, parse_release, release_text

if TYPE_CHECKING:
    from vidretry.store.db import Connection

__all__ = [
    "Applied",
    "SchemaState",
    "Upgraded",
    "check_schema",
    "latest_version",
    "read_state",
    "schema_version",
    "upgrade",
]

# DDL waits at most this long for a table's lock, then gives up, lets the claims and sends
# queued behind it through, and tries again: a waiting ACCESS EXCLUSIVE lock stops every
# newer reader of the table too, so the wait must stay well under a second.
LOCK_TIMEOUT_MS = 200
# How long a step keeps trying to get its locks before `db upgrade` gives up (saying who
# holds them); run it again later: it resumes.
LOCK_RETRY_SECONDS = 300.0


@dataclass(frozen=True)
class Applied:
    """A step as the ledger has it."""

    version: int
    name: str
    checksum: str | None
    kind: str = "history"
    breaks_before: Release | None = None
    release: str | None = None
    finished: bool = True


@dataclass(frozen=True)
class SchemaState:
    """What a database holds: the history's versions (including a contract's bar above
    it), the steps after it, and whose functions."""

    history: dict[int, str | None] = field(default_factory=dict)
    steps: dict[int, Applied] = field(default_factory=dict)
    functions_release: str | None = None
    functions_checksum: str | None = None

    @property
    def version(self) -> int:
        """The highest step applied in full (0: no schema)."""
        done = [v for v in self.history if v <= LEGACY_LAST]
        done += [v for v, step in self.steps.items() if step.finished]
        return max(done, default=0)


@dataclass(frozen=True)
class Upgraded:
    """What one ``db upgrade`` did."""

    applied: list[int]
    functions: bool
    # Set when the database is a newer release's: nothing was changed, and this says why.
    newer: str | None = None


async def read_state(conn: Connection) -> SchemaState:
    cur = await conn.execute(queries()["schema_ledgers"])
    present = await cur.fetchone()
    assert present is not None
    history: dict[int, str | None] = {}
    steps: dict[int, Applied] = {}
    functions: dict[str, Any] | None = None
    if present["history"]:
        cur = await conn.execute(queries()["applied_migrations"])
        history = {int(r["version"]): r["checksum"] for r in await cur.fetchall()}
    if present["steps"]:
        cur = await conn.execute(queries()["applied_steps"])
        for r in await cur.fetchall():
            steps[r["version"]] = Applied(
                r["version"],
                r["name"],
                r["checksum"],
                r["kind"],
                parse_release(r["breaks_before"]) if r["breaks_before"] else None,
                r["release"],
                r["finished_at"] is not None,
            )
    if present["functions"]:
        cur = await conn.execute(queries()["installed_functions"])
        functions = await cur.fetchone()
    return SchemaState(
        history,
        steps,
        functions["release"] if functions else None,
        functions["checksum"] if functions else None,
    )


async def schema_version(conn: Connection) -> int:
    return (await read_state(conn)).version


def _release_of(text: str | None) -> Release | None:
    try:
        return parse_release(text) if text else None
    except ValueError:
        return None


def refusal(state: SchemaState, catalog: Catalog) -> str | None:
    """Why this release's code cannot work with the schema (one line saying what to do),
    or None when it can."""
    this = release_text(catalog.release)
    problem = _changed_step(state, catalog)
    if problem:
        return problem
    breaking = _breaking_step(state, catalog)
    if breaking is not None:
        assert breaking.breaks_before is not None
        return (
            f"database schema is at version {state.version}, which vidretry {this} cannot work "
            f"with (step {breaking.version}, {breaking.name}, is a contract for vidretry "
            f"{release_text(breaking.breaks_before)} and newer): deploy vidretry "
            f"{release_text(breaking.breaks_before)} or newer"
        )
    missing = _missing_steps(state, catalog)
    if missing:
        return (
            f"database schema is at version {state.version}, this vidretry needs "
            f"{catalog.latest_version}: run `vidretry db upgrade`"
        )
    if state.functions_checksum != catalog.functions_checksum:
        installed = _release_of(state.functions_release)
        if installed is None or installed <= catalog.release:
            whose = (
                f"vidretry {state.functions_release}'s"
                if state.functions_release
                else "from before vidretry 0.20.0"
            )
            return (
                f"the SQL functions in the database are {whose}, vidretry {this} needs its "
                "own: run `vidretry db upgrade`"
            )
    return None


def _changed_step(state: SchemaState, catalog: Catalog) -> str | None:
    """A step applied to the database that differs from the file shipped here."""
    for migration in catalog.migrations:
        if migration.version <= LEGACY_LAST:
            checksum = state.history.get(migration.version)
        else:
            applied = state.steps.get(migration.version)
            checksum = applied.checksum if applied else None
        if checksum is not None and checksum != migration.checksum:
            return (
                f"migration {migration.version} ({migration.name}) applied to this database "
                f"differs from the one shipped with this vidretry (checksum {checksum[:12]}, "
                f"expected {migration.checksum[:12]}): the schema was changed by hand or by "
                "another build; restore the shipped migration or the database"
            )
    return None


def _unknown_steps(state: SchemaState, catalog: Catalog) -> list[Applied]:
    known = {m.version for m in catalog.migrations}
    return [step for version, step in sorted(state.steps.items()) if version not in known]


def _breaking_step(state: SchemaState, catalog: Catalog) -> Applied | None:
    """A newer release's contract step that breaks this release's code."""
    for step in _unknown_steps(state, catalog):
        if step.breaks_before is not None and catalog.release < step.breaks_before:
            return step
    return None


def _missing_steps(state: SchemaState, catalog: Catalog) -> list[Migration]:
    """The steps of this release the database lacks, or has half done."""
    missing = []
    for migration in catalog.migrations:
        if migration.version <= LEGACY_LAST:
            if migration.version not in state.history:
                missing.append(migration)
        elif not (step := state.steps.get(migration.version)) or not step.finished:
            missing.append(migration)
    return missing


async def check_schema(conn: Connection, catalog: Catalog | None = None) -> None:
    """Refuse to run against a schema this code cannot work with."""
    problem = refusal(await read_state(conn), catalog or shipped())
    if problem:
        raise SchemaError(problem)


async def upgrade(conn: Connection, catalog: Catalog | None = None) -> Upgraded:
    """Bring the database to this release's schema: the steps it lacks, each in order (a
    step in a transaction of its own, or statement by statement when it says so; a
    half-done one is resumed), then this release's SQL functions when the database has
    another set. Safe to run concurrently (the runs take turns) and repeatedly.

    A database that has a step this release does not know is a newer release's: nothing is
    changed (``Upgraded.newer`` says so), or, when that release broke this one, it is an
    error. A step applied that differs from the shipped file is an error, and nothing
    changes.
    """
    catalog = catalog or shipped()
    async with _upgrade_lock(conn):
        ledgers = [
            queries()[f"create_{ledger}_table"] for ledger in ("migrations", "steps", "functions")
        ]
        await _transaction(conn, partial(_run, conn, *ledgers))
        state = await read_state(conn)
        problem = _changed_step(state, catalog)
        if problem:
            raise SchemaError(problem)
        unknown = _unknown_steps(state, catalog)
        if unknown:
            problem = refusal(state, catalog)
            if problem:
                raise SchemaError(problem)
            newest = unknown[-1]
            return Upgraded(
                [],
                False,
                f"database schema is at version {state.version}, a newer release's "
                f"(step {newest.version}, {newest.name}, by vidretry {newest.release}): "
                "nothing to do for this vidretry",
            )
        applied = await _apply_history(conn, catalog, state)
        for migration in _missing_steps(state, catalog):
            if migration.version > LEGACY_LAST:
                await _apply_step(conn, migration, catalog.release)
                applied.append(migration.version)
        installed = await _install_functions(conn, catalog, state)
    return Upgraded(applied, installed)


class _upgrade_lock:
    """Runs of ``db upgrade`` take turns: a second connection holds the migrator's advisory
    lock in a transaction for the whole run (a transaction, not a session, so that it holds
    through a transaction pooler; the key is the one vidretry 0.19.0's migrator takes, so
    it waits too). Its transaction takes no snapshot that an index built CONCURRENTLY would
    wait for."""

    def __init__(self, conn: Connection) -> None:
        self.conninfo = make_conninfo(conn.info.dsn, password=conn.info.password)
        self.holder: psycopg.AsyncConnection[Any] | None = None

    async def __aenter__(self) -> None:
        self.holder = await psycopg.AsyncConnection.connect(self.conninfo)
        await self.holder.execute(queries()["lock_migrations"])

    async def __aexit__(self, *exc: object) -> None:
        assert self.holder is not None
        await self.holder.close()  # its transaction ends, and the lock with it


async def _run(conn: Connection, *statements: str) -> None:
    for statement in statements:
        await conn.execute(statement)


async def _transaction(
    conn: Connection, body: Callable[[], Awaitable[None]], *, what: str = "the migrator"
) -> None:
    """``body`` in one transaction whose DDL waits at most ``LOCK_TIMEOUT_MS`` for a lock;
    when it times out, the transaction is rolled back and tried again, for up to
    ``LOCK_RETRY_SECONDS``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LOCK_RETRY_SECONDS
    pause = 0.05
    while True:
        try:
            async with conn.transaction():
                await conn.execute(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}")
                await body()
            return
        except psycopg.errors.LockNotAvailable:
            if loop.time() >= deadline:
                raise SchemaError(
                    f"{what} could not get its locks in {LOCK_RETRY_SECONDS:.0f} s of "
                    f"tries ({LOCK_TIMEOUT_MS} ms each): a long transaction holds a table it "
                    "changes; run `vidretry db upgrade` again once it has ended (it resumes)"
                ) from None
        await asyncio.sleep(pause)
        pause = min(pause * 2, 2.0)


async def _apply_history(conn: Connection, catalog: Catalog, state: SchemaState) -> list[int]:
    """Migrations 1-19, as vidretry 0.19.0 applied them: the missing ones all in one
    transaction; checksums recorded for those applied before checksums existed."""
    history = [m for m in catalog.migrations if m.version <= LEGACY_LAST]
    todo = [m for m in history if m.version not in state.history]
    unchecked = [m for m in history if m.version in state.history and not state.history[m.version]]
    if not todo and not unchecked:
        return []

    async def body() -> None:
        for migration in unchecked:
            await _record(conn, "record_missing_checksum", migration)
        for migration in todo:
            await conn.execute(migration.sql)
            await _record(conn, "record_migration", migration)

    await _transaction(conn, body, what="the history's migrations")
    return [m.version for m in todo]


async def _apply_step(conn: Connection, migration: Migration, release: Release) -> None:
    params = {
        "version": migration.version,
        "name": migration.name,
        "kind": migration.kind,
        "breaks_before": (
            release_text(migration.breaks_before) if migration.breaks_before else None
        ),
        "checksum": migration.checksum,
        "release": release_text(release),
    }

    what = f"step {migration.label}"
    if migration.in_transaction:

        async def body() -> None:
            await conn.execute(queries()["start_step"], params)
            await conn.execute(migration.sql)
            await _bar_old_releases(conn, migration)
            await conn.execute(queries()["finish_step"], params)

        await _transaction(conn, body, what=what)
        return
    # Statement by statement, each committed on its own; the step's row says it began, and
    # a run that stops half way is resumed by the next one from the first statement (every
    # statement of such a step can run twice: docs/upgrading.md).
    await _transaction(conn, partial(_run_with, conn, queries()["start_step"], params), what=what)
    for statement in split_statements(migration.sql):
        index = INDEX_CONCURRENTLY.search(statement.sql)
        if index:
            await _build_index(conn, statement.sql, index["name"])
        elif statement.in_batches:
            while await _transaction_count(conn, statement.sql, what=what):
                pass
        else:
            await _transaction(conn, partial(_run, conn, statement.sql), what=what)

    async def finish() -> None:
        await _bar_old_releases(conn, migration)
        await conn.execute(queries()["finish_step"], params)

    await _transaction(conn, finish, what=what)


@dataclass(frozen=True)
class Statement:
    sql: str
    # Preceded by the line ``-- in batches``: run again, each run a transaction, until it
    # changes no row.
    in_batches: bool


_STATEMENT_END = re.compile(r";[ \t]*$", re.MULTILINE)
INDEX_CONCURRENTLY = re.compile(
    r"\bCREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+IF\s+NOT\s+EXISTS\s+(?P<name>\w+)",
    re.IGNORECASE,
)


def split_statements(sql: str) -> list[Statement]:
    """The statements of a step that runs outside a transaction: each ends with ``;`` at
    the end of a line (such a step has no ``$$`` bodies)."""
    found = []
    for chunk in _STATEMENT_END.split(sql):
        lines = chunk.strip().splitlines()
        code = [line for line in lines if not line.lstrip().startswith("--")]
        if not "".join(code).strip():
            continue
        batches = any(line.strip() == "-- in batches" for line in lines)
        found.append(Statement("\n".join(lines), batches))
    return found


async def _run_with(conn: Connection, statement: str, params: dict[str, Any]) -> None:
    await conn.execute(statement, params)


async def _transaction_count(conn: Connection, statement: str, *, what: str) -> int:
    """Run one batch in a transaction of its own: how many rows it changed."""
    changed = 0

    async def body() -> None:
        nonlocal changed
        cur = await conn.execute(statement)
        changed = cur.rowcount

    await _transaction(conn, body, what=what)
    return changed


async def _build_index(conn: Connection, statement: str, name: str) -> None:
    """``CREATE INDEX CONCURRENTLY IF NOT EXISTS``, resumable: a valid index of that name is
    left alone; one a build is still making (another run's, whose client went away) is
    waited for; an invalid one left by a build that failed or was interrupted is dropped
    (CONCURRENTLY as well) and built again."""
    while True:
        cur = await conn.execute(queries()["index_state"], {"name": name})
        row = await cur.fetchone()
        if row is None:
            break
        if row["valid"]:
            return
        if not row["building"]:
            drop = sql.SQL(queries()["drop_index_concurrently"]).format(name=sql.Identifier(name))
            await conn.execute(drop)
            break
        await asyncio.sleep(0.5)
    await conn.execute(statement)


async def _bar_old_releases(conn: Connection, migration: Migration) -> None:
    """A contract that breaks vidretry 0.19.0 or older leaves them a version they refuse."""
    if migration.breaks_before is not None and migration.breaks_before > (0, 19, 0):
        await conn.execute(
            queries()["bar_releases_before_the_policy"],
            {
                "version": migration.version,
                "name": f"{migration.name} (see vidretry_schema_steps)",
            },
        )


async def _install_functions(conn: Connection, catalog: Catalog, state: SchemaState) -> bool:
    """This release's SQL functions, as one set in one transaction, unless the database
    has this very set, or a newer release's."""
    if state.functions_checksum == catalog.functions_checksum:
        return False
    installed = _release_of(state.functions_release)
    if installed is not None and installed > catalog.release:
        return False

    async def body() -> None:
        # As pg_dump does: a function may name one defined in a later file.
        await conn.execute("SET LOCAL check_function_bodies = off")
        for function in catalog.functions:
            await conn.execute(function.sql)
        await conn.execute(
            queries()["record_functions"],
            {"release": release_text(catalog.release), "checksum": catalog.functions_checksum},
        )

    await _transaction(conn, body, what="the SQL functions")
    return True


async def _record(conn: Connection, statement: str, migration: Migration) -> None:
    await conn.execute(
        queries()[statement],
        {"version": migration.version, "name": migration.name, "checksum": migration.checksum},
    )


def describe(state: SchemaState) -> str:
    """The schema in a few words, for ``doctor`` and ``status``."""
    if not state.version:
        return "no vidretry schema"
    text = f"version {state.version}"
    if state.functions_release:
        text += f", SQL functions of vidretry {state.functions_release}"
    return text
