"""The operator's actions on assets and the queue: ``enqueue`` (ask for a video), ``retry``,
``cancel``, ``pause`` and ``resume``. Each is recorded with the operator's login."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import typer

from vidretry.cli.running import fail, login, out, print_json, progress, run, session
from vidretry.config import Config
from vidretry.errors import RefusedError
from vidretry.models import parse_asset_id


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
