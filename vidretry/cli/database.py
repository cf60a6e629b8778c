"""`vidretry db …`: the database's schema (upgrade), its history's pruning, and the
embedded PostgreSQL server (up, down, status, url)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from vidretry import __version__
from vidretry.cli.running import fail, load, login, out, parse_age, progress, run, session, warn
from vidretry.config import DATABASE_URL_ENV, DEFAULT_PRUNE_PACE, Config
from vidretry.errors import VidretryError

if TYPE_CHECKING:
    from vidretry.db.embedded import EmbeddedServer

db_app = typer.Typer(
    help="The database schema and the embedded PostgreSQL server.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Create or migrate the schema. Running it twice changes nothing."""

    async def body(config: Config) -> None:
        from vidretry.db import connection, schema
        from vidretry.db.embedded import database_url

        url = database_url(config.database)
        async with await connection.connect(url, prepare=config.database.prepare) as conn:
            upgraded = await schema.upgrade(conn)
        if upgraded.applied:
            out().print(
                f"schema upgraded to version {upgraded.applied[-1]} (applied {upgraded.applied})"
            )
        elif not upgraded.newer or upgraded.newer.startswith("the SQL functions"):
            out().print(f"schema already at version {schema.latest_version()}")
        if upgraded.newer:
            out().print(upgraded.newer)
        if upgraded.functions:
            out().print(f"SQL functions of vidretry {__version__} installed")

    run(ctx, body)


@db_app.command("prune")
def db_prune(
    ctx: typer.Context,
    older_than: Annotated[
        str, typer.Option("--older-than", help="Age, e.g. 30d, 12h.", show_default=False)
    ],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count, delete nothing.")] = False,
    assets: Annotated[
        bool,
        typer.Option(
            "--assets", help="Also finished assets nobody waits for, and their stored videos."
        ),
    ] = False,
    pace: Annotated[
        float,
        typer.Option(
            "--pace", min=0, help="Rest this many times each batch's duration (0: full speed)."
        ),
    ] = DEFAULT_PRUNE_PACE,
) -> None:
    """Delete history events and notifications in a final state older than --older-than, in
    small batches that hold no long locks, resting between them so that running workers keep
    their pace. Assets stay unless --assets is given; their videos go with them."""

    async def body(config: Config) -> None:
        from vidretry.cli import views
        from vidretry.queue.maintenance import retention
        from vidretry.results.configured import configured

        seconds = parse_age(older_than)
        conn = await session(config)
        async with conn:
            before = await retention.cutoff(conn, seconds, now=None)
            found = await retention.prunable(conn, before, assets=assets)
            if dry_run:
                out().print(
                    f"would delete {views.pruned(found)} (older than {before:%Y-%m-%d %H:%M})"
                )
                return
            with progress() as bar:
                task = bar.add_task("pruning", total=found.total)
                done = await retention.prune(
                    conn, before, assets=assets, pace=pace,
                    on_progress=lambda n: bar.advance(task, n), by=f"operator:{login()}",
                    results=configured(config) if assets else None,
                )  # fmt: skip
        out().print(f"deleted {views.pruned(done)}")
        if done.videos_left:
            warn(
                f"{done.videos_left} video(s) of the deleted assets stay in the store "
                f"({done.store_error}): nothing points at them; delete them by hand"
            )

    run(ctx, body)


def _embedded(ctx: typer.Context, command: str) -> EmbeddedServer:
    """The embedded server ``db COMMAND`` manages; with a configured database there is
    none to manage, and saying nothing would hide where the data is: exit 1, one line."""
    from vidretry.db.embedded import EmbeddedServer, default_dir
    from vidretry.db.redact import redact_url

    config = load(ctx)
    if config.database.url:
        fail(
            f"`db {command}` manages the embedded PostgreSQL, but the database is configured "
            f"([database] url or ${DATABASE_URL_ENV}): {redact_url(config.database.url)}",
            1,
        )
    return EmbeddedServer(config.database.embedded_dir or default_dir())


@db_app.command("up")
def db_up(ctx: typer.Context) -> None:
    """Start the embedded PostgreSQL (initialising it on first use) and apply the schema."""
    server = _embedded(ctx, "up")

    async def body(config: Config) -> None:
        from vidretry.db import connection, schema

        async with await connection.connect(server.start()) as conn:
            await schema.upgrade(conn)
        out().print(f"embedded PostgreSQL running in {server.directory}")

    run(ctx, body)


@db_app.command("down")
def db_down(ctx: typer.Context) -> None:
    """Stop the embedded PostgreSQL."""
    server = _embedded(ctx, "down")
    try:
        stopped = server.stop()
    except VidretryError as exc:
        fail(str(exc), exc.exit_code)
    out().print("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")


@db_app.command("status")
def db_status(ctx: typer.Context) -> None:
    """Say whether the embedded PostgreSQL is running (exit 1 if not)."""
    server = _embedded(ctx, "status")
    if server.is_running():
        out().print(f"embedded PostgreSQL running in {server.directory}")
        return
    out().print(f"embedded PostgreSQL not running ({server.directory})")
    raise typer.Exit(1)


@db_app.command("url")
def db_url(ctx: typer.Context) -> None:
    """Print the database's connection URL (for psql and other tools): the configured one,
    as configured, or the embedded server's."""
    config = load(ctx)
    typer.echo(config.database.url or _embedded(ctx, "url").url)
