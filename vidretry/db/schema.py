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
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.conninfo import make_conninfo

from vidretry.db.connection import fetch_all, fetch_one
from vidretry.db.online import LOCK_RETRY_SECONDS, Online
from vidretry.db.sqlfiles import (
    LEGACY_LAST,
    Catalog,
    Migration,
    latest_version,
    queries,
    shipped,
)
from vidretry.errors import SchemaError
from vidretry.version import Release, parse_release, release_text

if TYPE_CHECKING:
    from vidretry.db.connection import Connection

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

# How often a run of `db upgrade` tries the lock another run holds.
LOCK_POLL_SECONDS = 0.2
# The last release before the expand/contract policy: it reads vidretry_migrations alone.
BEFORE_THE_POLICY = (0, 19, 0)


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
    # Set when the database, or its SQL functions, are a newer release's: what was left as
    # it is, and why.
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


async def upgrade(
    conn: Connection,
    catalog: Catalog | None = None,
    *,
    lock_retry_seconds: float = LOCK_RETRY_SECONDS,
) -> Upgraded:
    """Bring the database to this release's schema: the steps it lacks, each in order (in a
    transaction of its own, or statement by statement when it says so; a half-done one is
    resumed), then this release's SQL functions when the database has another set. Safe to
    run concurrently (the runs take turns) and repeatedly.

    A database that has a step this release does not know is a newer release's: nothing is
    changed (``Upgraded.newer`` says so), or, when that release broke this one, it is an
    error. A step applied that differs from the shipped file is an error, and nothing
    changes. A contract step is not applied while a process of a release it breaks is seen
    running. A step that cannot get its locks within ``lock_retry_seconds`` of tries stops
    the upgrade (vidretry.db.online); run again, it resumes.
    """
    catalog = catalog or shipped()
    online = Online(conn, lock_retry_seconds)
    async with _upgrade_lock(conn):
        ledgers = [
            queries()[f"create_{ledger}_table"] for ledger in ("migrations", "steps", "functions")
        ]
        await online.transaction(partial(_run, conn, *ledgers), what="the migrator")
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
        applied = await _apply_history(online, catalog, state)
        for migration in _missing_steps(state, catalog):
            if migration.version > LEGACY_LAST:
                await _apply_step(online, migration, catalog.release)
                applied.append(migration.version)
        installed = await _install_functions(online, catalog, state)
    newer = None
    if not installed and state.functions_checksum != catalog.functions_checksum:
        newer = (
            f"the SQL functions are vidretry {state.functions_release}'s, a newer release's: "
            "left as they are"
        )
    return Upgraded(applied, installed, newer)


class _upgrade_lock:
    """Runs of ``db upgrade`` take turns: a second connection holds the migrator's advisory
    lock in a transaction for the whole run (a transaction, not a session, so that it holds
    through a transaction pooler; the key is the one vidretry 0.19.0's migrator takes, so
    it waits too).

    An index built CONCURRENTLY waits for every transaction that holds a snapshot older
    than the build, so a run that waits must hold none: it tries the lock every
    ``LOCK_POLL_SECONDS``, each try a transaction of its own, ended at once when it fails,
    and has no transaction between tries (waiting inside a statement would hold the
    statement's snapshot; one transaction kept open across the tries was seen to keep one
    once psycopg prepared the try). Nothing is prepared on this connection: behind a
    transaction pooler each try may reach another server connection. The holder's
    transaction sits idle for the whole run, so it turns off, for itself, the server's
    timeouts that would end it and let another run in
    (``idle_in_transaction_session_timeout``, which managed PostgreSQL often sets)."""

    def __init__(self, conn: Connection) -> None:
        self.conninfo = make_conninfo(conn.info.dsn, password=conn.info.password)
        self.holder: psycopg.AsyncConnection[Any] | None = None

    async def __aenter__(self) -> None:
        self.holder = await psycopg.AsyncConnection.connect(
            self.conninfo, autocommit=False, prepare_threshold=None
        )
        while True:
            cur = await self.holder.execute(queries()["try_lock_migrations"])
            row = await cur.fetchone()
            if row is not None and row[0]:
                await self.holder.execute(queries()["hold_the_migrations_lock_while_idle"])
                return
            await self.holder.rollback()  # no transaction, and so no snapshot, while it waits
            await asyncio.sleep(LOCK_POLL_SECONDS)

    async def __aexit__(self, *exc: object) -> None:
        assert self.holder is not None
        await self.holder.close()  # its transaction ends, and the lock with it


async def _run(conn: Connection, *statements: str) -> None:
    for statement in statements:
        await conn.execute(statement)


async def _apply_history(online: Online, catalog: Catalog, state: SchemaState) -> list[int]:
    """Migrations 1-19, as vidretry 0.19.0 applied them: the missing ones all in one
    transaction; checksums recorded for those applied before checksums existed."""
    history = [m for m in catalog.migrations if m.version <= LEGACY_LAST]
    todo = [m for m in history if m.version not in state.history]
    unchecked = [m for m in history if m.version in state.history and not state.history[m.version]]
    if not todo and not unchecked:
        return []

    async def body() -> None:
        for migration in unchecked:
            await _record(online.conn, "record_missing_checksum", migration)
        for migration in todo:
            await online.conn.execute(migration.sql)
            await _record(online.conn, "record_migration", migration)

    await online.transaction(body, what="the history's migrations")
    return [m.version for m in todo]


async def _apply_step(online: Online, migration: Migration, release: Release) -> None:
    """One step after the history: recorded as begun, run, recorded as done. A contract is
    recorded as begun in a transaction of its own, before it runs: from then on the
    releases it breaks refuse the schema, for as long as it waits for its locks and if it
    is left half done, not only once it is done."""
    conn, what = online.conn, f"step {migration.label}"
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

    async def begin() -> None:
        if migration.breaks_before is not None:
            await _refuse_while_broken_releases_run(conn, migration)
        await conn.execute(queries()["start_step"], params)
        await _bar_old_releases(conn, migration)

    async def finish() -> None:
        await conn.execute(queries()["finish_step"], params)

    if migration.breaks_before is not None or not migration.in_transaction:
        await online.transaction(begin, what=what)
    if migration.in_transaction:

        async def whole() -> None:
            await conn.execute(queries()["start_step"], params)  # an expand begins here
            await conn.execute(migration.sql)
            await finish()

        await online.transaction(whole, what=what)
        return
    # Statement by statement, each committed on its own: the step's row says it began, and
    # a run that stops half way is resumed by the next one from the first statement.
    await online.run_outside(migration.sql, what=what)
    await online.transaction(finish, what=what)


async def _refuse_while_broken_releases_run(conn: Connection, migration: Migration) -> None:
    """A contract is applied only when no process of a release it breaks is seen running:
    those recorded in vidretry_processes, and, when it breaks 0.19.0, the workers and the
    leader of that release, which record nothing but hold leases and the leadership."""
    assert migration.breaks_before is not None
    running = [
        f"{row['role']} {row['name']} (vidretry {row['release']})"
        for row in await fetch_all(conn, "running_processes", {"now": None})
        if (_release_of(row["release"]) or (0, 0, 0)) < migration.breaks_before
    ]
    if migration.breaks_before > BEFORE_THE_POLICY:
        running += [
            f"{row['role']} {row['name']} (vidretry 0.19.0 or older)"
            for row in await fetch_all(conn, "unrecorded_processes", {"now": None})
        ]
    if running:
        raise SchemaError(
            f"step {migration.label} is a contract for vidretry "
            f"{release_text(migration.breaks_before)} and newer, and older ones still run "
            f"({', '.join(running)}): finish the rollout, then run `vidretry db upgrade` again"
        )


async def _bar_old_releases(conn: Connection, migration: Migration) -> None:
    """A contract that breaks vidretry 0.19.0 or older leaves them a version they refuse
    (written as it begins)."""
    if migration.breaks_before is not None and migration.breaks_before > BEFORE_THE_POLICY:
        await conn.execute(
            queries()["bar_releases_before_the_policy"],
            {
                "version": migration.version,
                "name": f"{migration.name} (see vidretry_schema_steps)",
            },
        )


async def _install_functions(online: Online, catalog: Catalog, state: SchemaState) -> bool:
    """This release's SQL functions, as one set in one transaction, unless the database
    has this very set, or a newer release's."""
    if state.functions_checksum == catalog.functions_checksum:
        return False
    installed = _release_of(state.functions_release)
    if installed is not None and installed > catalog.release:
        return False
    conn = online.conn

    async def body() -> None:
        # As pg_dump does: a function may name one defined in a later file.
        await conn.execute(queries()["skip_function_bodies"])
        # What "SET search_path FROM CURRENT" pins each function to: vidretry's schema,
        # pg_temp last.
        await conn.execute(queries()["pin_search_path_to_vidretrys_schema"])
        for function in catalog.functions:
            await conn.execute(function.sql)
        await conn.execute(
            queries()["record_functions"],
            {"release": release_text(catalog.release), "checksum": catalog.functions_checksum},
        )

    await online.transaction(body, what="the SQL functions")
    return True


async def _record(conn: Connection, statement: str, migration: Migration) -> None:
    await conn.execute(
        queries()[statement],
        {"version": migration.version, "name": migration.name, "checksum": migration.checksum},
    )


def describe(state: SchemaState) -> str:
    """The schema in a few words, for ``doctor`` and ``status``."""
    return _described(state.version, state.functions_release)


async def summary(conn: Connection) -> str:
    """``describe`` in one statement, for a schema a process already checked."""
    row = await fetch_one(conn, "schema_summary", {})
    assert row is not None
    return _described(row["version"] or 0, row["functions_release"])


def _described(version: int, functions_release: str | None) -> str:
    if not version:
        return "no vidretry schema"
    text = f"version {version}"
    if functions_release:
        text += f", SQL functions of vidretry {functions_release}"
    return text
