"""Cancelling, shared by the Telegram cancel button, ``/cancel`` and ``vidretry cancel``.

A user *withdraws* their own request (``withdraw``): it ends cancelled, its video or failure
message that has not gone out is never sent, and when nobody else waits for the asset the job
is cancelled with it. An operator (or an admin's ``/cancel``) *cancels* a whole asset
(``cancel``): every waiting user is told. Either way a pending job is never claimed, and a
running one loses its lease: its worker's heartbeat notices and stops the generator. No
attempt is counted and no failure recorded, so the circuit breaker never sees a cancel.
Every rule is a function of sql/functions/, each change in it a guarded UPDATE:
``vidretry_withdraw_request`` (which the SQL interface's ``vidretry_cancel`` calls too) and
``vidretry_cancel_asset``, both over ``vidretry_cancel_job``. A double press, a stale button
or two operators at once change things once, and the asset is read only to word the answer
when nothing changed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from psycopg.rows import DictRow

from vidretry.db.connection import Connection, fetch_all, fetch_one
from vidretry.models import JobState
from vidretry.queue.retry import MAX_ID, Actor


class CancelOutcome(enum.StrEnum):
    WITHDRAWN = "withdrawn"  # the user's request; others still wait, the job goes on
    CANCELLED = "cancelled"  # the job as well
    NOT_FOUND = "not_found"
    NOT_OPEN = "not_open"  # nothing left to cancel: made, failed, cancelled already
    FORBIDDEN = "forbidden"  # a Telegram user with no request on the asset


@dataclass(frozen=True)
class CancelResult:
    outcome: CancelOutcome
    asset_id: int
    state: JobState | None = None  # the asset's state when nothing changed
    was_running: bool = False  # the job was running: its worker stops the generator
    told_users: tuple[int, ...] = ()  # users who waited and are told (an operator's cancel)

    @property
    def changed(self) -> bool:
        return self.outcome in (CancelOutcome.WITHDRAWN, CancelOutcome.CANCELLED)


async def withdraw(
    conn: Connection,
    asset_id: int,
    user_id: int,
    *,
    retry_round: int | None = None,
    now: datetime | None = None,
) -> CancelResult:
    """``user_id`` takes back their request for ``asset_id``: ``WITHDRAWN``, or
    ``CANCELLED`` when nobody waits for the asset any more (the job is cancelled too).
    ``retry_round`` (a button's) must still be the asset's, else nothing changes."""
    if not 1 <= asset_id <= MAX_ID:
        return CancelResult(CancelOutcome.NOT_FOUND, asset_id)
    params = {"id": asset_id, "user_id": user_id, "retry_round": retry_round, "now": now}
    row = await fetch_one(conn, "withdraw_request", params)
    assert row is not None  # the function always returns its row
    return CancelResult(
        CancelOutcome(row["outcome"]),
        asset_id,
        JobState(row["state"]) if row["outcome"] == CancelOutcome.NOT_OPEN else None,
        was_running=row["was_running"],
    )


async def cancel(
    conn: Connection,
    asset_id: int,
    actor: Actor,
    *,
    reason: str | None = None,
    now: datetime | None = None,
) -> CancelResult:
    """Cancel the whole asset, whoever waits for it (an operator's or an admin's call);
    each waiting user is told. ``NOT_OPEN`` for an asset already made, failed or cancelled.
    Every rule of it is the function ``vidretry_cancel_asset``."""
    if not 1 <= asset_id <= MAX_ID:
        return CancelResult(CancelOutcome.NOT_FOUND, asset_id)
    params = {"id": asset_id, "actor": actor.label, "reason": reason, "now": now}
    row = await fetch_one(conn, "cancel_asset", params)
    assert row is not None  # the function always returns its row
    return CancelResult(
        CancelOutcome(row["outcome"]),
        asset_id,
        JobState(row["state"]) if row["outcome"] == CancelOutcome.NOT_OPEN else None,
        was_running=row["was_running"],
        told_users=tuple(row["told_users"]),
    )


async def open_requests(conn: Connection, user_id: int, limit: int) -> list[DictRow]:
    """A user's requests that can still be cancelled, newest first: id, name, retry_round."""
    return await fetch_all(conn, "open_requests_of_user", {"user_id": user_id, "limit": limit})


_REFUSALS = {
    CancelOutcome.NOT_FOUND: "asset {id} not found",
    CancelOutcome.NOT_OPEN: "asset {id} is {state}: nothing to cancel",
    CancelOutcome.FORBIDDEN: "not allowed to cancel asset {id}",
}


def describe_cancel(result: CancelResult) -> str:
    if result.outcome is CancelOutcome.WITHDRAWN:
        return f"request for asset {result.asset_id} cancelled; others still wait for it"
    if result.outcome is CancelOutcome.CANCELLED:
        stopped = "; its worker stops the generator" if result.was_running else ""
        told = f"; {len(result.told_users)} waiting user(s) told" if result.told_users else ""
        return f"asset {result.asset_id} cancelled{stopped}{told}"
    return _REFUSALS[result.outcome].format(id=result.asset_id, state=result.state)
