"""The ``vidretry`` command: its options, and every command in the order ``--help`` lists
them. Each command lives with its group: ``actions`` (enqueue, retry, cancel, pause, resume),
``daemons`` (worker, notifier, demo), ``inspection`` (status, list, show, doctor, version),
``database`` (``db …``) and ``web_console`` (``web …``). A command parses its arguments,
calls the core (or vidretry.app.daemons) and hands the result to vidretry.cli.views;
everything heavy is imported inside the command that needs it, so ``vidretry --help``
starts without psycopg or the daemons."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vidretry import __version__
from vidretry.cli import actions, daemons, database, inspection, web_console
from vidretry.cli.running import Options

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


# typer lists the commands in the order they are added, then the groups.
app.command()(actions.enqueue)
app.command()(daemons.worker)
app.command()(daemons.notifier)
app.command()(daemons.demo)
app.command("retry")(actions.retry_command)
app.command("cancel")(actions.cancel_command)
app.command()(actions.pause)
app.command()(actions.resume)
app.command()(inspection.status)
app.command("list")(inspection.list_command)
app.command()(inspection.show)
app.command()(inspection.doctor)
app.command()(inspection.version)
app.add_typer(database.db_app, name="db")
app.add_typer(web_console.web_app, name="web")
