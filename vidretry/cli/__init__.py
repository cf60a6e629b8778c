"""The ``vidretry`` command line: the CLI layer, the only code that imports typer and rich.

``commands`` is the typer app and lists every command; each lives in its group's module:
``actions`` (enqueue, retry, cancel, pause, resume), ``daemons`` (worker, notifier, demo),
``inspection`` (status, list, show, doctor, version), ``database`` (``db …``) and
``web_console`` (``web …``). ``running`` is how one runs (config, event loop, errors as one
line and an exit code), ``views`` and ``plain`` the rendering (``plain`` without rich, for a
fast ``status``); the daemons' wiring is vidretry.app.daemons.

May import every package of vidretry (it is the top layer); nothing imports it but
``vidretry.__main__`` (``.importlinter`` checks it).
"""

from __future__ import annotations

import sys

import typer

from vidretry.cli.commands import app

__all__ = ["app", "main"]


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
