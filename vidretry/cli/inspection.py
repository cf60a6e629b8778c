"""What the operator reads: ``status`` (and its live ``--watch``), ``list``, ``show``,
``doctor`` and ``version``. None of them changes anything."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from vidretry import __version__
from vidretry.cli.running import out, print_json, run, session
from vidretry.config import Config
from vidretry.errors import RefusedError
from vidretry.models import JobState, parse_asset_id

if TYPE_CHECKING:
    from vidretry.db.connection import Connection


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


def version() -> None:
    """Print the version."""
    typer.echo(__version__)
