"""The ``vidretry`` command line: the only module that imports typer.

Exit codes: 0 done, 1 refused (e.g. retry of an asset that is not failed, unknown asset),
2 usage or configuration error, 3 database unreachable, 4 Telegram unreachable or token
refused. Every error is one line on stderr, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import getpass
import json
import logging
import random
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import psycopg
import typer
from psycopg_pool import AsyncConnectionPool
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from vidretry import __version__, db, eventloop, outbox, reports, retention, views
from vidretry.clock import DatabaseClock
from vidretry.config import Config, exposed_secret_warning, load_config
from vidretry.embedded import EmbeddedServer, default_dir
from vidretry.enqueue import enqueue as enqueue_asset
from vidretry.errors import ConfigError, RefusedError, VidretryError
from vidretry.models import JobState
from vidretry.retry import Actor, describe_retry, retry

app = typer.Typer(
    name="vidretry",
    help="A Postgres job queue for video generation that answers every Telegram user.",
    no_args_is_help=True,
    add_completion=False,
    # Tracebacks with locals can print a bot token or a database password: never show them.
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(
    help="The database schema and the embedded PostgreSQL server.", no_args_is_help=True
)
app.add_typer(db_app, name="db")

out = Console(highlight=False)
log = logging.getLogger("vidretry")


@dataclass(frozen=True)
class Options:
    config_path: Path | None


@app.callback()
def _options(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="Config file (default: $VIDRETRY_CONFIG, ./vidretry.toml)."
        ),
    ] = None,
) -> None:
    ctx.obj = Options(config)


# -- running a command ----------------------------------------------------------------------


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"vidretry: error: {message}", err=True)
    raise typer.Exit(code)


def _load(ctx: typer.Context) -> Config:
    options: Options = ctx.obj
    return load_config(options.config_path)


def database_url(config: Config) -> str:
    """The configured URL, or the embedded server's (started on first use)."""
    if config.database.url:
        return config.database.url
    return EmbeddedServer(config.database.embedded_dir or default_dir()).start()


def _daemon_database_url(config: Config) -> str:
    """``database_url``, saying once at start when it is the embedded server: the default
    is fine on one machine and a trap on several."""
    if not config.database.url:
        directory = config.database.embedded_dir or default_dir()
        log.warning(
            "using the embedded PostgreSQL in %s: workers and notifiers on several machines "
            "need one shared [database] url",
            directory,
        )
    return database_url(config)


def _run(
    ctx: typer.Context,
    body: Callable[[Config], Coroutine[Any, Any, int | None]],
    *,
    fast_loop: bool = False,
) -> None:
    """Load the config, run ``body``, and turn every expected error into one line + exit code.
    ``fast_loop``: on uvloop if installed (see vidretry.eventloop)."""
    try:
        config = _load(ctx)
        code = eventloop.run(body(config), fast=fast_loop) or 0
    except VidretryError as exc:
        _fail(str(exc), exc.exit_code)
    except psycopg.OperationalError as exc:
        _fail(f"database error: {db.unavailable('', exc).args[0].split(': ', 1)[-1]}", 3)
    except psycopg.Error as exc:  # refused by the database (privileges, a constraint, ...)
        _fail(f"database error: {db.redact_url(db.one_line(exc))}", 3)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    raise typer.Exit(code)


async def _session(config: Config) -> db.Connection:
    conn = await db.connect(database_url(config), prepare=config.database.prepare)
    try:
        await db.check_schema(conn)
    except BaseException:
        await conn.close()
        raise
    return conn


def _parse_asset_id(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"asset id must be a positive integer, got {text!r}")
    return int(text)


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, default=_json_default, ensure_ascii=False, indent=2))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # psycopg_pool logs every failed reconnection with its full message; ours say it once.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)


# -- db ----------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Create or migrate the schema. Running it twice changes nothing."""

    async def body(config: Config) -> None:
        url = database_url(config)
        async with await db.connect(url, prepare=config.database.prepare) as conn:
            applied = await db.upgrade(conn)
        if applied:
            out.print(f"schema upgraded to version {applied[-1]} (applied {applied})")
        else:
            out.print(f"schema already at version {db.latest_version()}")

    _run(ctx, body)


def _embedded(ctx: typer.Context) -> EmbeddedServer:
    try:
        config = _load(ctx)
    except VidretryError as exc:
        _fail(str(exc), exc.exit_code)
    return EmbeddedServer(config.database.embedded_dir or default_dir())


_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _parse_age(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``3600s`` in seconds."""
    number, unit = text[:-1], text[-1:]
    if unit not in _AGE_UNITS or not number.isdigit() or int(number) < 1:
        raise ConfigError(f"--older-than must look like 30d, 12h, 90m or 3600s, got {text!r}")
    return float(int(number) * _AGE_UNITS[unit])


@db_app.command("prune")
def db_prune(
    ctx: typer.Context,
    older_than: Annotated[
        str, typer.Option("--older-than", help="Age, e.g. 30d, 12h.", show_default=False)
    ],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count, delete nothing.")] = False,
    assets: Annotated[
        bool, typer.Option("--assets", help="Also finished assets nobody waits for.")
    ] = False,
    pace: Annotated[
        float,
        typer.Option(
            "--pace", min=0, help="Rest this many times each batch's duration (0: full speed)."
        ),
    ] = retention.DEFAULT_PACE,
) -> None:
    """Delete history events and notifications in a final state older than --older-than, in
    small batches that hold no long locks, resting between them so that running workers keep
    their pace. Assets stay unless --assets is given."""

    async def body(config: Config) -> None:
        seconds = _parse_age(older_than)
        conn = await _session(config)
        async with conn:
            before = await retention.cutoff(conn, seconds, now=None)
            found = await retention.prunable(conn, before, assets=assets)
            if dry_run:
                out.print(f"would delete {_counts(found)} (older than {before:%Y-%m-%d %H:%M})")
                return
            with Progress(console=Console(stderr=True), transient=True) as bar:
                task = bar.add_task("pruning", total=found.total)
                done = await retention.prune(
                    conn,
                    before,
                    assets=assets,
                    pace=pace,
                    on_progress=lambda n: bar.advance(task, n),
                )
        out.print(f"deleted {_counts(done)}")

    _run(ctx, body)


def _counts(counts: retention.Counts) -> str:
    return (
        f"{counts.events} history event(s), {counts.notifications} notification(s)"
        f", {counts.assets} asset(s)"
    )


@db_app.command("up")
def db_up(ctx: typer.Context) -> None:
    """Start the embedded PostgreSQL (initialising it on first use) and apply the schema."""

    async def body(config: Config) -> None:
        server = EmbeddedServer(config.database.embedded_dir or default_dir())
        url = server.start()
        async with await db.connect(url) as conn:
            await db.upgrade(conn)
        out.print(f"embedded PostgreSQL running in {server.directory}")

    _run(ctx, body)


@db_app.command("down")
def db_down(ctx: typer.Context) -> None:
    """Stop the embedded PostgreSQL."""
    server = _embedded(ctx)
    try:
        stopped = server.stop()
    except VidretryError as exc:
        _fail(str(exc), exc.exit_code)
    out.print("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")


@db_app.command("status")
def db_status(ctx: typer.Context) -> None:
    """Say whether the embedded PostgreSQL is running (exit 1 if not)."""
    server = _embedded(ctx)
    if server.is_running():
        out.print(f"embedded PostgreSQL running in {server.directory}")
        return
    out.print(f"embedded PostgreSQL not running ({server.directory})")
    raise typer.Exit(1)


@db_app.command("url")
def db_url(ctx: typer.Context) -> None:
    """Print the embedded server's connection URL (for psql and other tools)."""
    typer.echo(_embedded(ctx).url)


# -- enqueue ---------------------------------------------------------------------------


@app.command()
def enqueue(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The video's name; the same name joins one asset.")],
    user: Annotated[int, typer.Option("--user", help="Telegram user id of the requester.")],
    chat: Annotated[
        int | None, typer.Option("--chat", help="Chat to answer in (default: the user's).")
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="KEY=VALUE for the handler.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Ask for a video on behalf of a Telegram user; print the asset id."""
    params: dict[str, str] = {}
    for item in param or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            _fail(f"--param must look like KEY=VALUE, got {item!r}", 2)
        params[key] = value

    async def body(config: Config) -> None:
        conn = await _session(config)
        async with conn:
            result = await enqueue_asset(
                conn,
                name,
                user_id=user,
                chat_id=chat,
                params=params,
                max_attempts=config.worker.max_attempts,
            )
        if as_json:
            _print_json({"asset_id": result.asset_id, "state": result.state})
        else:
            typer.echo(result.asset_id)

    _run(ctx, body)


# -- worker ----------------------------------------------------------------------------


@app.command()
def worker(
    ctx: typer.Context,
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", min=1, help="Jobs at once (default: config).")
    ] = None,
    drain: Annotated[
        bool, typer.Option("--drain", help="Exit 0 once nothing is runnable or in backoff.")
    ] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option("--metrics-port", min=1, max=65535, help="Serve /metrics (Prometheus)."),
    ] = None,
) -> None:
    """Run jobs until SIGINT/SIGTERM (running jobs get a grace period, the rest are released)."""

    async def body(config: Config) -> None:
        settings = config.worker
        if concurrency is not None:
            settings = dataclasses.replace(settings, concurrency=concurrency)
        from vidretry.handlers import build_handler
        from vidretry.worker import Worker, breaker_settings

        handler = build_handler(settings)
        _setup_logging()
        url = _daemon_database_url(config)
        async with (
            db.open_pool(
                url, max_size=settings.concurrency + 2, prepare=config.database.prepare
            ) as pool,
            _metrics(config, metrics_port, pool),
        ):
            days = config.retention.days
            pruning = (
                retention.BackgroundPruning(pool, days, clock=DatabaseClock()) if days else None
            )
            runner = Worker(
                config.database.listen_url or url,
                pool,
                settings,
                handler,
                clock=DatabaseClock(),
                rng=random.Random(),  # noqa: S311 (jitter only)
                pruning=pruning,
                breaker=breaker_settings(settings, config.telegram.admins),
            )
            stop = _stop_on_signals()
            log.info("worker %s started (concurrency %d)", runner.name, settings.concurrency)
            await runner.run(stop, drain=drain)
            log.info("worker %s stopped", runner.name)

    _run(ctx, body, fast_loop=True)


@contextlib.asynccontextmanager
async def _metrics(
    config: Config, port: int | None, pool: AsyncConnectionPool[db.Connection]
) -> AsyncIterator[None]:
    """Serve /metrics (``--metrics-port``, else ``[metrics] port``) and keep the queue's
    gauges current while the daemon runs; nothing without a port."""
    port = port or config.metrics.port
    if port is None:
        yield
        return
    from vidretry import metrics

    metrics.serve(port, config.metrics.address)
    stop = asyncio.Event()
    watcher = asyncio.create_task(metrics.watch_queue(pool, None, stop))
    try:
        yield
    finally:
        stop.set()
        await watcher


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


# -- notifier --------------------------------------------------------------------------


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
    metrics_port: Annotated[
        int | None,
        typer.Option("--metrics-port", min=1, max=65535, help="Serve /metrics (Prometheus)."),
    ] = None,
) -> None:
    """Deliver the outbox through the Telegram bot and answer its retry button."""

    async def body(config: Config) -> None:
        from vidretry.console import ConsoleSender
        from vidretry.daemons import NotifierProcess
        from vidretry.telegram import TelegramBot, build_client, check_settings, load_plugins

        _setup_logging()
        if transport is Transport.CONSOLE and not mark_sent:
            await _preview(config)
            return
        token = check_settings(config.telegram) if transport is Transport.TELEGRAM else ""
        plugins = load_plugins(config.telegram.plugins) if transport is Transport.TELEGRAM else []
        warning = exposed_secret_warning(config)
        if warning:
            log.warning(warning)
        url = _daemon_database_url(config)
        opened = db.open_pool(url, max_size=6, prepare=config.database.prepare)
        async with opened as pool, _metrics(config, metrics_port, pool):
            listen_url = config.database.listen_url or url
            process = NotifierProcess(listen_url, pool, config, rng=random.Random())  # noqa: S311
            if transport is Transport.CONSOLE:
                process.console = ConsoleSender(lambda text: out.print(text, markup=False))
            else:
                process.bot_token = token
                process.plugins = plugins
                process.open_bot = lambda pacer: TelegramBot(
                    build_client(config.telegram), pacer=pacer
                )
            await process.run(_stop_on_signals(), drain=drain)

    _run(ctx, body)


async def _preview(config: Config) -> None:
    """``--transport console`` alone: print what is due as the bot would send it, and change
    nothing (no claim, no lease, nothing marked sent)."""
    from vidretry.console import ConsoleSender
    from vidretry.notifier import deliver_to

    conn = await _session(config)
    async with conn:
        due = await outbox.due(conn, limit=1000, now=None)
    console = ConsoleSender(lambda text: out.print(text, markup=False))
    for note in due:
        await deliver_to(console, config.messages, note)
    log.info("%d notification(s) due; nothing was marked sent (--mark-sent sends them)", len(due))


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
        from vidretry.demo import Snapshot, run_demo

        server = EmbeddedServer(config.database.embedded_dir or default_dir())
        with Live(views.demo(Snapshot("Starting the embedded PostgreSQL")), console=out,
                  refresh_per_second=8) as live:  # fmt: skip
            result = await run_demo(
                server, fast=fast, on_update=lambda s: live.update(views.demo(s))
            )
        if not result.ok:
            for line in result.missing:
                typer.echo(f"vidretry: error: demo: {line}", err=True)
            return 1
        out.print("\n[green]Every asset reached its expected state.[/]\n")
        out.print(DEPLOYMENT_NOTE, markup=False)
        return 0

    _run(ctx, body)


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
        _fail("give an asset id or --all-failed (not both)", 2)
    actor = Actor.operator(_operator())

    async def one(config: Config) -> int:
        assert asset is not None
        asset_id = _parse_asset_id(asset)
        conn = await _session(config)
        async with conn:
            result = await retry(conn, asset_id, actor, reason=reason)
        if as_json:
            _print_json(dataclasses.asdict(result))
        if not result.retried:
            raise RefusedError(describe_retry(result))
        if not as_json:
            out.print(describe_retry(result))
        return 0

    async def every(config: Config) -> int:
        conn = await _session(config)
        async with conn:
            ids = [row["id"] for row in await db.fetch_all(conn, "failed_asset_ids", {})]
            retried = 0
            with Progress(console=Console(stderr=True), transient=True, disable=as_json) as bar:
                task = bar.add_task("retrying", total=len(ids))
                for asset_id in ids:
                    result = await retry(conn, asset_id, actor, reason=reason)
                    retried += result.retried
                    bar.advance(task)
        if as_json:
            _print_json({"failed": len(ids), "retried": retried})
        else:
            out.print(f"{retried} of {len(ids)} failed asset(s) queued again")
        return 0

    _run(ctx, every if all_failed else one)


# -- pause, resume ----------------------------------------------------------------------


@app.command()
def pause(
    ctx: typer.Context,
    reason: Annotated[str | None, typer.Option("--reason", help="Why; shown by `status`.")] = None,
) -> None:
    """Pause the queue: no worker starts a job until `vidretry resume` (running jobs finish)."""

    async def body(config: Config) -> None:
        from vidretry import breaker

        conn = await _session(config)
        async with conn:
            done = await breaker.pause(conn, actor=f"operator:{_operator()}", detail=reason)
        out.print(
            {
                breaker.Paused.PAUSED: "queue paused: no job starts until `vidretry resume`",
                breaker.Paused.HELD: "queue paused (it was paused by the circuit breaker; "
                "no probe will end it now, only `vidretry resume`)",
                breaker.Paused.ALREADY: "queue already paused by hand; nothing changed",
            }[done]
        )

    _run(ctx, body)


@app.command()
def resume(ctx: typer.Context) -> None:
    """End a pause, manual or the circuit breaker's: workers start claiming at once."""

    async def body(config: Config) -> None:
        from vidretry import breaker

        conn = await _session(config)
        async with conn:
            resumed = await breaker.resume(
                conn, actor=f"operator:{_operator()}", admins=config.telegram.admins
            )
        if resumed is None:
            out.print("queue is not paused; nothing changed")
        else:
            out.print(f"queue resumed after {resumed.paused_seconds:.0f}s paused")

    _run(ctx, body)


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
        conn = await _session(config)
        async with conn:
            if watch:
                await _watch(conn)
                return
            summary = await reports.status(conn, None)
            running = await reports.running_jobs(conn, None)
        if as_json:
            _print_json({**summary, "running": running})
            return
        out.print(views.dashboard(summary, running))

    _run(ctx, body)


async def _watch(conn: db.Connection) -> None:
    stop = _stop_on_signals()
    with Live(console=out, refresh_per_second=2, screen=False) as live:
        while not stop.is_set():
            summary = await reports.status(conn, None)
            running = await reports.running_jobs(conn, None)
            live.update(views.dashboard(summary, running))
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
        conn = await _session(config)
        async with conn:
            rows = await reports.list_assets(conn, state, limit)
        if as_json:
            _print_json(rows)
            return
        table = Table("id", "name", "state", "attempts", "gen", "last error")
        for row in rows:
            table.add_row(
                str(row["id"]),
                row["name"],
                row["state"],
                f"{row['attempts']}/{row['max_attempts']}",
                str(row["generation"]),
                (row["last_error"] or "")[:60],
            )
        out.print(table)

    _run(ctx, body)


@app.command()
def show(
    ctx: typer.Context,
    asset: Annotated[str, typer.Argument(help="Asset id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One asset with its requests, notifications and event history."""

    async def body(config: Config) -> None:
        asset_id = _parse_asset_id(asset)
        conn = await _session(config)
        async with conn:
            details = await reports.show_asset(conn, asset_id)
        if details is None:
            raise RefusedError(f"asset {asset_id} not found")
        if as_json:
            _print_json(details)
            return
        out.print(
            f"asset {details['id']} [bold]{escape(details['name'])}[/]: {details['state']}, "
            f"attempt {details['attempts']}/{details['max_attempts']}, "
            f"generation {details['generation']}"
        )
        if details["last_error"]:
            out.print(f"last error: {escape(details['last_error'])}")
        if details["result"]:
            out.print(f"result: {escape(details['result'])}")
        for title, rows, columns in (
            ("requests", details["requests"], ("user_id", "chat_id", "state")),
            (
                "notifications",
                details["notifications"],
                ("user_id", "kind", "generation", "state", "attempts", "last_error"),
            ),
            (
                "events",
                details["events"],
                ("created_at", "kind", "generation", "attempt", "actor", "detail"),
            ),
        ):
            table = Table(*columns, title=title)
            for row in rows:
                table.add_row(*(escape(str(row[c] if row[c] is not None else "")) for c in columns))
            out.print(table)

    _run(ctx, body)


@app.command()
def doctor(ctx: typer.Context) -> None:
    """Check the database, the schema, the handler and the Telegram settings (exit 1 on a
    failure). Changes nothing; never prints a secret."""

    async def body(config: Config) -> int:
        from vidretry.doctor import Verdict, examine

        url, problem = config.database.url, ""
        if not url:  # the embedded server: look at it, never create or start it
            server = EmbeddedServer(config.database.embedded_dir or default_dir())
            if not server.is_initialised():
                problem = (
                    f"embedded PostgreSQL in {server.directory} does not exist yet "
                    "(`vidretry db up`, a worker or a notifier creates it)"
                )
            elif not server.is_running():
                problem = (
                    f"embedded PostgreSQL in {server.directory} is not running: vidretry db up"
                )
            else:
                url = server.url
        checks = await examine(config, url, problem)
        marks = {Verdict.OK: "[green]✓[/]", Verdict.WARN: "[yellow]![/]", Verdict.FAIL: "[red]✗[/]"}
        for check in checks:
            out.print(
                f"{marks[check.verdict]} {check.name:<9} {escape(check.detail)}", soft_wrap=True
            )
        return 1 if any(c.verdict is Verdict.FAIL for c in checks) else 0

    _run(ctx, body)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    """Entry point. Usage errors become one line and exit 2, like every other error."""
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        typer.echo("vidretry: error: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        # typer's usage errors (click's, vendored privately): recognised by their interface.
        message, exit_code = getattr(exc, "format_message", None), getattr(exc, "exit_code", None)
        if not callable(message) or not isinstance(exit_code, int):
            raise
        if type(exc).__name__ == "NoArgsIsHelpError":
            typer.echo(message())
            sys.exit(0)
        ctx = getattr(exc, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        typer.echo(f"vidretry: error: {message()}{hint}", err=True)
        sys.exit(exit_code)
    sys.exit(code if isinstance(code, int) else 0)
