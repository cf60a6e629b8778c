"""`vidretry web …`: serve the operator's web console, and the tokens that log in to it."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from vidretry.cli.running import print_json, run, session
from vidretry.config import Config
from vidretry.errors import ConfigError

web_app = typer.Typer(
    help="The operator's web console, and the tokens that log in to it.",
    invoke_without_command=True,
    no_args_is_help=False,
)
token_app = typer.Typer(
    help="Tokens for the web console (kept only as hashes).", no_args_is_help=True
)
web_app.add_typer(token_app, name="token")


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
