"""vidretry for a Python bot that keeps its own framework (aiogram, python-telegram-bot):
ask for a video, retry and cancel as a Telegram user would, on the bot's own psycopg
connection and inside its transaction. Re-exported as ``vidretry.enqueue``,
``vidretry.retry``, ``vidretry.press_retry``, ``vidretry.cancel`` and ``vidretry.asset``.

Underneath is the SQL interface every language calls (``vidretry_enqueue``,
``vidretry_retry``, ``vidretry_press_retry``, ``vidretry_cancel``, ``vidretry_asset``;
sql/functions/ and
docs/integrate.md), so a Python bot gets exactly the rules a TypeScript bot gets. Its
SQLSTATEs come back as vidretry's errors: ``ConfigError`` for bad input (VR001-VR004),
``RefusedError`` for a refusal (VR010-VR014), each with the ``sqlstate``. The workers are
woken when the caller commits; a rollback asks for nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, LiteralString, cast

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from vidretry.errors import ConfigError, RefusedError, VidretryError

# Bad input, and refusals: what each SQLSTATE of the interface means.
INVALID = frozenset({"VR001", "VR002", "VR003", "VR004"})
REFUSED = frozenset({"VR010", "VR011", "VR012", "VR013", "VR014"})


async def enqueue(
    conn: psycopg.AsyncConnection[Any],
    name: str,
    *,
    user_id: int | None,
    chat_id: int | None = None,
    params: Mapping[str, Any] | None = None,
    priority: int = 0,
) -> int:
    """Ask for the video ``name`` for Telegram user ``user_id`` (None: nobody waits); its
    asset id — a new asset, or the one that has this name (joined, answered at once if it
    is made, retried if it failed)."""
    row = await _call(
        conn,
        "SELECT vidretry_enqueue(%(name)s, %(user_id)s, %(chat_id)s, %(params)s, %(priority)s)"
        " AS asset_id",
        {
            "name": name, "user_id": user_id, "chat_id": chat_id,
            "params": Jsonb(dict(params or {})), "priority": priority,
        },
    )  # fmt: skip
    return int(row["asset_id"])


async def retry(conn: psycopg.AsyncConnection[Any], asset_id: int, *, user_id: int) -> int:
    """The retry button pressed by ``user_id``: the asset's new retry round. Refused
    (``RefusedError``) unless it failed and the user asked for it (or is an admin) and has
    retries left today."""
    row = await _call(
        conn,
        "SELECT vidretry_retry(%(asset_id)s, %(user_id)s) AS retry_round",
        {"asset_id": asset_id, "user_id": user_id},
    )
    return int(row["retry_round"])


# What a press of the retry button can meet, answered rather than raised
# (``vidretry_press_retry``), and the refusal each stands for in vidretry_retry's codes.
PressOutcome = Literal["retried", "out_of_retries", "not_found", "forbidden", "not_failed"]
PRESS_REFUSAL: Mapping[str, str] = {
    "out_of_retries": "VR014", "not_found": "VR010", "forbidden": "VR011", "not_failed": "VR012",
}  # fmt: skip


async def press_retry(
    conn: psycopg.AsyncConnection[Any], asset_id: int, *, user_id: int
) -> tuple[PressOutcome, int | None]:
    """The retry button pressed by ``user_id``, by ``retry``'s rules, answered rather than
    raised: the outcome and the asset's retry round (the new one when 'retried'). When the
    user's retries for today are used up, each admin is told (an outbox row the caller's
    commit keeps, which ``retry``'s error would roll back); bad ids raise ``ConfigError``."""
    row = await _call(
        conn,
        "SELECT outcome, generation AS retry_round"
        " FROM vidretry_press_retry(%(asset_id)s, %(user_id)s)",
        {"asset_id": asset_id, "user_id": user_id},
    )
    return cast(PressOutcome, row["outcome"]), row["retry_round"]


async def cancel(
    conn: psycopg.AsyncConnection[Any], asset_id: int, *, user_id: int
) -> Literal["withdrawn", "cancelled"]:
    """``user_id`` takes back their request: 'withdrawn' (others still wait) or
    'cancelled' (nobody waits any more: the job is stopped, no attempt counted)."""
    row = await _call(
        conn,
        "SELECT vidretry_cancel(%(asset_id)s, %(user_id)s) AS outcome",
        {"asset_id": asset_id, "user_id": user_id},
    )
    return cast(Literal["withdrawn", "cancelled"], row["outcome"])


async def asset(conn: psycopg.AsyncConnection[Any], asset_id: int) -> dict[str, Any] | None:
    """The asset as a bot shows it (state, priority, attempts, result, last error, place in
    line while it waits), or None for an unknown id."""
    async with conn.cursor(row_factory=dict_row) as cur:
        try:
            await cur.execute("SELECT * FROM vidretry_asset(%(id)s)", {"id": asset_id})
        except psycopg.Error as exc:
            raise _translated(exc) from None
        return await cur.fetchone()


async def _call(
    conn: psycopg.AsyncConnection[Any], query: LiteralString, params: Mapping[str, Any]
) -> dict[str, Any]:
    async with conn.cursor(row_factory=dict_row) as cur:
        try:
            await cur.execute(query, params)
        except psycopg.Error as exc:
            raise _translated(exc) from None
        row = await cur.fetchone()
    assert row is not None  # a function call returns one row
    return row


def _translated(exc: psycopg.Error) -> Exception:
    """The interface's errors as vidretry's own; any other database error as it came."""
    message = exc.diag.message_primary or str(exc)
    error: VidretryError
    if exc.sqlstate in INVALID:
        error = ConfigError(message)
    elif exc.sqlstate in REFUSED:
        error = RefusedError(message)
    else:
        return exc
    error.sqlstate = exc.sqlstate
    return error
