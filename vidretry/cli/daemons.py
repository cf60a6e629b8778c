"""The commands that run a daemon until a signal (``worker``, ``notifier``) or a guided run
of both (``demo``); their wiring is vidretry.app.daemons."""

from __future__ import annotations

import dataclasses
import enum
import logging
from typing import TYPE_CHECKING, Annotated

import typer

from vidretry.cli.running import out, run, session
from vidretry.config import Config

if TYPE_CHECKING:
    from vidretry.telegram.console import ConsoleSender


MetricsPort = Annotated[
    int | None,
    typer.Option("--metrics-port", min=1, max=65535, help="Serve /metrics (Prometheus)."),
]


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

    from vidretry.telegram import outbox
    from vidretry.telegram.notifications import deliver_to

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
        from vidretry.db.embedded import EmbeddedServer, default_dir

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
