"""The commands: each parses its arguments, calls the core (or vidretry.app.daemons) and hands
the result to vidretry.cli.views. Everything heavy is imported inside the command that
needs it, so ``vidretry --help`` starts without psycopg or the daemons."""

from __future__ import annotations

import dataclasses
import enum
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from vidretry import __version__
from vidretry.cli.running import (
    Options,
    fail,
    load,
    login,
    out,
    parse_age,
    print_json,
    progress,
    run,
    session,
    warn,
)
from vidretry.config import DATABASE_URL_ENV, DEFAULT_PRUNE_PACE, Config
from vidretry.errors import ConfigError, RefusedError, VidretryError
from vidretry.models import JobState, parse_asset_id

if TYPE_CHECKING:
    from vidretry.store.db import Connection
    from vidretry.store.embedded import EmbeddedServer
    from vidretry.telegram.console import ConsoleSender

app = typer.Typer(
    name="vidretry",
    help="A Postgres job queue for video generation that answers every Telegram user.",
    no_args_is_help=True,
    add_completion=False,
    # Tracebacks with locals can print a bot token or a database password: never show them.
    pretty_exceptions_enable=False,
    # Plain help: typer's boxed help loads much of rich and costs every `--help` a tenth
    # of a second (bench/cli_start.py).
    rich_markup_mode=None,
)
db_app = typer.Typer(
    help="The database schema and the embedded PostgreSQL server.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(db_app, name="db")


def _print_version(wanted: bool) -> None:
    if wanted:
        typer.echo(__version__)
        raise typer.Exit


@app.callback()
def _options(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="Config file (default: $VIDRETRY_CONFIG, ./vidretry.toml)."
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the release and exit.",
            callback=_print_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    ctx.obj = Options(config)


# -- db ----------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Create or migrate the schema. Running it twice changes nothing."""

    async def body(config: Config) -> None:
        from vidretry.store import db, schema
        from vidretry.store.embedded import database_url

        url = database_url(config.database)
        async with await db.connect(url, prepare=config.database.prepare) as conn:
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
        from vidretry.queue import retention
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
    from vidretry.store.embedded import EmbeddedServer, default_dir
    from vidretry.store.redact import redact_url

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
        from vidretry.store import db, schema

        async with await db.connect(server.start()) as conn:
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


# -- enqueue ---------------------------------------------------------------------------


@app.command()
def enqueue(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The video's name; the same name joins one asset.")],
    user: Annotated[
        int | None,
        typer.Option(
            "--user",
            help="Telegram user id of the requester (none: nobody is told; the job "
            "is its own owner in the fair order).",
        ),
    ] = None,
    chat: Annotated[
        int | None, typer.Option("--chat", help="Chat to answer in (default: the user's).")
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="KEY=VALUE for the handler.")
    ] = None,
    priority: Annotated[
        int, typer.Option("--priority", help="0 to 9, higher first (fair within a priority).")
    ] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Ask for a video (on behalf of a Telegram user, with --user); print the asset id (exit
    1 as well when it failed and the user has no retries left today)."""
    params: dict[str, str] = {}
    for item in param or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--param must look like KEY=VALUE, got {item!r}", 2)
        params[key] = value

    async def body(config: Config) -> None:
        from vidretry.queue.enqueue import enqueue

        conn = await session(config)
        async with conn:
            result = await enqueue(
                conn, name, user_id=user, chat_id=chat, params=params, priority=priority,
                max_attempts=config.worker.max_attempts, asked_by=f"operator:{login()}",
            )  # fmt: skip
        if as_json:
            print_json(
                {
                    "asset_id": result.asset_id, "state": result.state,
                    "out_of_retries": result.out_of_retries,
                }
            )  # fmt: skip
        else:
            typer.echo(result.asset_id)
        if result.out_of_retries:
            raise RefusedError(
                f"asset {result.asset_id} stays failed: user {user} has no retries left "
                "today (the admins are told)"
            )

    run(ctx, body)


# -- the daemons -------------------------------------------------------------------------


MetricsPort = Annotated[
    int | None,
    typer.Option("--metrics-port", min=1, max=65535, help="Serve /metrics (Prometheus)."),
]


@app.command()
def worker(
    ctx: typer.Context,
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", min=1, help="Jobs at once (default: config).")
    ] = None,
    drain: Annotated[
        bool,
        typer.Option(
            "--drain",
            help="Exit 0 once nothing is runnable or in backoff (1 if paused with jobs waiting).",
        ),
    ] = False,
    metrics_port: MetricsPort = None,
) -> None:
    """Run jobs until SIGINT/SIGTERM (running jobs get a grace period, the rest are released)."""

    async def body(config: Config) -> None:
        from vidretry.app.daemons import serve_worker

        await serve_worker(config, concurrency=concurrency, drain=drain, metrics_port=metrics_port)

    run(ctx, body, fast_loop=True)


class Transport(enum.StrEnum):
    TELEGRAM = "telegram"
    CONSOLE = "console"


@app.command()
def notifier(
    ctx: typer.Context,
    transport: Annotated[
        Transport, typer.Option("--transport", help="telegram, or console to print instead.")
    ] = Transport.TELEGRAM,
    drain: Annotated[
        bool, typer.Option("--drain", help="Deliver what is due, then exit 0.")
    ] = False,
    mark_sent: Annotated[
        bool,
        typer.Option("--mark-sent", help="console: deliver for real (default: a preview)."),
    ] = False,
    send_only: Annotated[
        bool,
        typer.Option(
            "--send-only",
            help="Beside a bot with its own framework: deliver, take none of its updates.",
        ),
    ] = False,
    metrics_port: MetricsPort = None,
) -> None:
    """Deliver the outbox through the Telegram bot and answer its retry button."""

    async def body(config: Config) -> None:
        from vidretry.app.daemons import serve_notifier, setup_logging
        from vidretry.telegram.console import ConsoleSender

        if send_only:
            config = dataclasses.replace(
                config, notifier=dataclasses.replace(config.notifier, send_only=True)
            )

        console = None
        if transport is Transport.CONSOLE:
            console = ConsoleSender(lambda text: out().print(text, markup=False))
            if not mark_sent:
                setup_logging()
                await _preview(config, console)
                return
        await serve_notifier(config, console=console, drain=drain, metrics_port=metrics_port)

    run(ctx, body)


async def _preview(config: Config, console: ConsoleSender) -> None:
    """``--transport console`` alone: print what is due as the bot would send it, and change
    nothing (no claim, no lease, nothing marked sent)."""
    import logging

    from vidretry.telegram import outbox
    from vidretry.telegram.notifier import deliver_to

    conn = await session(config)
    async with conn:
        due = await outbox.due(conn, limit=1000, now=None)
    for note in due:
        await deliver_to(console, config.messages, note)
    logging.getLogger("vidretry").info(
        "%d notification(s) due; nothing was marked sent (--mark-sent sends them)", len(due)
    )


# -- demo --------------------------------------------------------------------------------

DEPLOYMENT_NOTE = """\
What a real deployment configures (details: config.example.toml, README):
  [database] url       one PostgreSQL for every worker and notifier
  [worker] command     your generator, e.g. ["render", "{name}", "{output}"]
  [worker] max_attempts, lease_seconds, backoff_base_seconds
  [telegram] api_id, api_hash, bot_token (@BotFather; via env), admins
Then run `vidretry db upgrade`, `vidretry worker`, `vidretry notifier`."""


@app.command()
def demo(
    ctx: typer.Context,
    fast: Annotated[
        bool, typer.Option("--fast", help="A few seconds; exit 1 if a final state is missing.")
    ] = False,
) -> None:
    """A guided 30-second run on the embedded database: failures, notifications, a retry."""

    async def body(config: Config) -> int:
        from rich.live import Live

        from vidretry.app.demo import Snapshot, run_demo
        from vidretry.cli import views
        from vidretry.store.embedded import EmbeddedServer, default_dir

        server = EmbeddedServer(config.database.embedded_dir or default_dir())
        with Live(views.demo(Snapshot("Starting the embedded PostgreSQL")), console=out(),
                  refresh_per_second=8) as live:  # fmt: skip
            result = await run_demo(
                server, fast=fast, on_update=lambda s: live.update(views.demo(s))
            )
        if not result.ok:
            for line in result.missing:
                typer.echo(f"vidretry: error: demo: {line}", err=True)
            return 1
        out().print("\n[green]Every asset reached its expected state.[/]\n")
        out().print(DEPLOYMENT_NOTE, markup=False)
        return 0

    run(ctx, body)


# -- retry -----------------------------------------------------------------------------


@app.command("retry")
def retry_command(
    ctx: typer.Context,
    asset: Annotated[str | None, typer.Argument(help="Asset id.", show_default=False)] = None,
    all_failed: Annotated[
        bool, typer.Option("--all-failed", help="Retry every failed asset.")
    ] = False,
    reason: Annotated[str | None, typer.Option("--reason", help="Recorded with the retry.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Put a failed asset back in the queue (exit 1 if it is not failed)."""
    if all_failed == (asset is not None):
        fail("give an asset id or --all-failed (not both)", 2)

    async def one(config: Config) -> int:
        from vidretry.queue.retry import Actor, describe_retry, retry

        assert asset is not None
        asset_id = parse_asset_id(asset)
        conn = await session(config)
        async with conn:
            result = await retry(conn, asset_id, Actor.operator(login()), reason=reason)
        if as_json:
            print_json(dataclasses.asdict(result))
        if not result.retried:
            raise RefusedError(describe_retry(result))
        if not as_json:
            out().print(describe_retry(result))
        return 0

    async def every(config: Config) -> int:
        from vidretry.queue.retry import Actor, failed_asset_ids, retry

        actor = Actor.operator(login())
        conn = await session(config)
        async with conn:
            ids = await failed_asset_ids(conn)
            retried = 0
            with progress(disable=as_json) as bar:
                task = bar.add_task("retrying", total=len(ids))
                for asset_id in ids:
                    result = await retry(conn, asset_id, actor, reason=reason)
                    retried += result.retried
                    bar.advance(task)
        if as_json:
            print_json({"failed": len(ids), "retried": retried})
        else:
            out().print(f"{retried} of {len(ids)} failed asset(s) queued again")
        return 0

    run(ctx, every if all_failed else one)


@app.command("cancel")
def cancel_command(
    ctx: typer.Context,
    asset: Annotated[str, typer.Argument(help="Asset id.", show_default=False)],
    reason: Annotated[
        str | None, typer.Option("--reason", help="Recorded with the cancel.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Cancel an asset still to be made or being made, whoever waits for it: its worker
    stops the generator, and every waiting user is told (exit 1 if nothing was left to
    cancel)."""

    async def body(config: Config) -> int:
        from vidretry.queue.cancel import cancel, describe_cancel
        from vidretry.queue.retry import Actor

        asset_id = parse_asset_id(asset)
        conn = await session(config)
        async with conn:
            result = await cancel(conn, asset_id, Actor.operator(login()), reason=reason)
        if as_json:
            print_json(dataclasses.asdict(result))
        if not result.changed:
            raise RefusedError(describe_cancel(result))
        if not as_json:
            out().print(describe_cancel(result))
        return 0

    run(ctx, body)


# -- web ----------------------------------------------------------------------------------

web_app = typer.Typer(
    help="The operator's web console, and the tokens that log in to it.",
    invoke_without_command=True,
    no_args_is_help=False,
)
token_app = typer.Typer(
    help="Tokens for the web console (kept only as hashes).", no_args_is_help=True
)
web_app.add_typer(token_app, name="token")
app.add_typer(web_app, name="web")


@web_app.callback()
def web(
    ctx: typer.Context,
    address: Annotated[
        str | None, typer.Option("--address", help="Listen here ([web] address: 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option("--port", help="[web] port: 8080.")] = None,
) -> None:
    """Serve the web console until SIGINT/SIGTERM (log in with a token: `web token add`)."""
    if ctx.invoked_subcommand is not None:
        return

    async def body(config: Config) -> None:
        from vidretry.app.daemons import setup_logging, stop_on_signals
        from vidretry.web.serve import serve_web

        setup_logging()
        where, at = address or config.web.address, port or config.web.port
        stop = stop_on_signals()
        logging.getLogger("vidretry.web").warning("vidretry web on http://%s:%d/", where, at)
        await serve_web(config, address=where, port=at, stop=stop)

    run(ctx, body)


@token_app.command("add")
def token_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Who the token is for (recorded in the history).")],
    role: Annotated[
        str,
        typer.Option(
            "--role", help="viewer (reads), operator (also acts), service (asks, as users)."
        ),
    ] = "viewer",
) -> None:
    """Make a token and print it, once, alone on the last line (only its hash is kept)."""

    async def body(config: Config) -> None:
        from vidretry.web import tokens

        if role not in set(tokens.Role):
            raise ConfigError(f"--role must be viewer, operator or service, got {role!r}")
        conn = await session(config)
        async with conn:
            token = await tokens.add(conn, name, tokens.Role(role))
        typer.echo(f"token for {name} ({role}); shown once, keep it secret:")
        typer.echo(token)

    run(ctx, body)


@token_app.command("list")
def token_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The tokens: name, role, made and last used (never the tokens themselves)."""

    async def body(config: Config) -> None:
        from vidretry.web import tokens

        conn = await session(config)
        async with conn:
            rows = await tokens.listed(conn)
        if as_json:
            print_json(rows)
            return
        for row in rows:
            used = row["last_used_at"]
            last = f"last used {used:%Y-%m-%d %H:%M}" if used else "never used"
            typer.echo(
                f"{row['name']}\t{row['role']}\tmade {row['created_at']:%Y-%m-%d %H:%M}\t{last}"
            )

    run(ctx, body)


@token_app.command("revoke")
def token_revoke(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="The token's name.")]
) -> None:
    """Revoke a token: its sessions end on every web process at their next request."""

    async def body(config: Config) -> None:
        from vidretry.web import tokens

        conn = await session(config)
        async with conn:
            await tokens.revoke(conn, name)
        typer.echo(f"token {name} revoked")

    run(ctx, body)


# -- pause, resume ----------------------------------------------------------------------


@app.command()
def pause(
    ctx: typer.Context,
    reason: Annotated[str | None, typer.Option("--reason", help="Why; shown by `status`.")] = None,
) -> None:
    """Pause the queue: no worker starts a job until `vidretry resume` (running jobs finish)."""

    async def body(config: Config) -> None:
        from vidretry.queue import breaker

        conn = await session(config)
        async with conn:
            done = await breaker.pause(conn, actor=f"operator:{login()}", detail=reason)
        out().print(
            {
                breaker.Paused.PAUSED: "queue paused: no job starts until `vidretry resume`",
                breaker.Paused.HELD: "queue paused (it was paused by the circuit breaker; "
                "no probe will end it now, only `vidretry resume`)",
                breaker.Paused.ALREADY: "queue already paused by hand; nothing changed",
            }[done]
        )

    run(ctx, body)


@app.command()
def resume(ctx: typer.Context) -> None:
    """End a pause, manual or the circuit breaker's: workers start claiming at once."""

    async def body(config: Config) -> None:
        from vidretry.queue import breaker

        conn = await session(config)
        async with conn:
            resumed = await breaker.resume(
                conn, actor=f"operator:{login()}", admins=config.telegram.admins
            )
        if resumed is None:
            out().print("queue is not paused; nothing changed")
        else:
            out().print(f"queue resumed after {resumed.paused_seconds:.0f}s paused")

    run(ctx, body)


# -- status, list, show ----------------------------------------------------------------


@app.command()
def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    watch: Annotated[
        bool, typer.Option("--watch", help="A live dashboard, refreshed every second.")
    ] = False,
) -> None:
    """Counts by state, the oldest pending job, recent failures and the outbox backlog."""

    async def body(config: Config) -> None:
        from vidretry.cli import plain
        from vidretry.queue import reports

        conn = await session(config)
        async with conn:
            if watch:
                await _watch(conn, config)
                return
            summary = await reports.status(conn, None)
            running = await reports.running_jobs(conn, None)
        summary["quota"] = _quota(config)
        if as_json:
            print_json({**summary, "running": running})
            return
        print(plain.dashboard(summary, running))  # without rich: see vidretry/cli/plain.py

    run(ctx, body)


def _quota(config: Config) -> dict[str, float]:
    """This machine's [worker] quotas (0: none) and the start quota's window: the workers
    enforce them, status shows them."""
    worker = config.worker
    return {
        "max_running": worker.max_running,
        "max_starts_per_minute": worker.max_starts_per_minute,
        "starts_window_seconds": worker.starts_window_seconds,
    }


async def _watch(conn: Connection, config: Config) -> None:
    import asyncio
    import contextlib

    from rich.live import Live
    from rich.text import Text

    from vidretry.app.daemons import stop_on_signals
    from vidretry.cli import plain
    from vidretry.queue import reports

    stop = stop_on_signals()
    console = out()
    with Live(console=console, refresh_per_second=2, screen=False) as live:
        while not stop.is_set():
            summary = await reports.status(conn, None)
            running = await reports.running_jobs(conn, None)
            summary["quota"] = _quota(config)
            shown = plain.dashboard(summary, running, width=console.width, colour=True)
            live.update(Text.from_ansi(shown))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)


@app.command("list")
def list_command(
    ctx: typer.Context,
    state: Annotated[JobState | None, typer.Option("--state", help="Only this state.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List assets, oldest first."""

    async def body(config: Config) -> None:
        from vidretry.cli import views
        from vidretry.queue import reports

        conn = await session(config)
        async with conn:
            rows = await reports.list_assets(conn, state, limit)
        if as_json:
            print_json(rows)
        else:
            out().print(views.assets(rows))

    run(ctx, body)


@app.command()
def show(
    ctx: typer.Context,
    asset: Annotated[str, typer.Argument(help="Asset id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One asset with its requests, notifications and event history."""

    async def body(config: Config) -> None:
        from vidretry.cli import views
        from vidretry.queue import reports

        asset_id = parse_asset_id(asset)
        conn = await session(config)
        async with conn:
            details = await reports.show_asset(conn, asset_id)
        if details is None:
            raise RefusedError(f"asset {asset_id} not found")
        if as_json:
            print_json(details)
        else:
            out().print(views.asset(details))

    run(ctx, body)


@app.command()
def doctor(ctx: typer.Context) -> None:
    """Check the database, the schema, the handler and the Telegram settings (exit 1 on a
    failure). Changes nothing; never prints a secret."""

    async def body(config: Config) -> int:
        from vidretry.app.doctor import Verdict, examine
        from vidretry.cli import views

        checks = await examine(config)
        for check in checks:
            out().print(views.check(check.name, check.verdict, check.detail), soft_wrap=True)
        return 1 if any(c.verdict is Verdict.FAIL for c in checks) else 0

    run(ctx, body)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)
