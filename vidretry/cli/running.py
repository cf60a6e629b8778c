"""How a command runs: load the config, run its body on an event loop, and turn every
expected error into one line on stderr and an exit code — never a traceback, never a
password.

Exit codes: 0 done, 1 refused (e.g. retry of an asset that is not failed, unknown asset),
2 usage or configuration error, 3 database unreachable or refusing, 4 Telegram unreachable
or token refused.

Nothing heavy is imported at module level: ``vidretry --help`` loads neither psycopg nor
the daemons.
"""

from __future__ import annotations

import functools
import getpass
import json
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from vidretry.config import Config, load_config
from vidretry.errors import ConfigError, VidretryError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from vidretry.db.connection import Connection


@functools.cache
def out() -> Console:
    """Standard output, through rich (loaded on first use: `--help` does without)."""
    from rich.console import Console

    # Sentences are not broken by rich at the terminal's width (the terminal wraps them, and
    # a copied line stays one line); tables still fit the width.
    return Console(highlight=False, soft_wrap=True)


def progress(*, disable: bool = False) -> Progress:
    """A progress bar on stderr that disappears when done."""
    from rich.console import Console
    from rich.progress import Progress

    return Progress(console=Console(stderr=True), transient=True, disable=disable)


@dataclass(frozen=True)
class Options:
    """What the options before the command say (``ctx.obj``)."""

    config_path: Path | None


def fail(message: str, code: int) -> NoReturn:
    typer.echo(f"vidretry: error: {message}", err=True)
    raise typer.Exit(code)


def warn(message: str) -> None:
    """Something the operator should act on, though the command did what it was asked."""
    typer.echo(f"vidretry: warning: {message}", err=True)


def load(ctx: typer.Context) -> Config:
    options: Options = ctx.obj
    try:
        return load_config(options.config_path)
    except VidretryError as exc:
        fail(str(exc), exc.exit_code)


def run(
    ctx: typer.Context,
    body: Callable[[Config], Coroutine[Any, Any, int | None]],
    *,
    fast_loop: bool = False,
) -> None:
    """Load the config, run ``body``, and turn every expected error into one line + exit code.
    ``fast_loop``: on uvloop if installed (see vidretry.eventloop)."""
    import psycopg

    from vidretry import eventloop
    from vidretry.db import redact

    config = load(ctx)
    try:
        code = eventloop.run(body(config), fast=fast_loop) or 0
    except VidretryError as exc:
        fail(str(exc), exc.exit_code)
    except psycopg.OperationalError as exc:
        fail(f"database error: {redact.unavailable('', exc).args[0].split(': ', 1)[-1]}", 3)
    except psycopg.Error as exc:  # refused by the database (privileges, a constraint, ...)
        fail(f"database error: {redact.redact_url(redact.one_line(exc))}", 3)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    raise typer.Exit(code)


async def session(config: Config) -> Connection:
    """One connection for a short command, to a database whose schema this vidretry knows."""
    from vidretry.db import connection, schema
    from vidretry.db.embedded import database_url

    conn = await connection.connect(database_url(config.database), prepare=config.database.prepare)
    try:
        await schema.check_schema(conn)
    except BaseException:
        await conn.close()
        raise
    return conn


_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_age(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``3600s`` in seconds."""
    number, unit = text[:-1], text[-1:]
    if unit not in _AGE_UNITS or not number.isdigit():
        raise ConfigError(f"--older-than must look like 30d, 12h, 90m or 3600s, got {text!r}")
    if int(number) < 1:
        raise ConfigError(f"--older-than must be more than 0, got {text!r}")
    return float(int(number) * _AGE_UNITS[unit])


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, default=_json_default, ensure_ascii=False, indent=2))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def login() -> str:
    """Who runs the command (recorded as ``operator:<login>``)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
