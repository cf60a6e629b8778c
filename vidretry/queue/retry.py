"""The one retry service, shared by ``vidretry retry``, the Telegram retry button, the
console, asking again for a failed video, and other programs (``vidretry_retry`` in SQL).

Its rules are the function ``vidretry_retry_asset`` (sql/functions/): a retry is a
single guarded UPDATE, so of any number of concurrent callers for one asset exactly one
changes it, and stale buttons and double clicks find nothing to change. Only when nothing
changed is the asset read, to tell the caller why. A Telegram user's button (``press``) and
asking again for a failed video (``vidretry.queue.enqueue``) first meet the daily retry
quota, whose one rule is the function ``vidretry_out_of_retries``: it tells the admins too.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from psycopg.rows import DictRow

from vidretry.db.connection import Connection, fetch_all, fetch_one
from vidretry.models import MAX_ASSET_ID, JobState

MAX_ID = MAX_ASSET_ID


class RetryOutcome(enum.StrEnum):
    RETRIED = "retried"
    NOT_FOUND = "not_found"
    NOT_FAILED = "not_failed"
    STALE = "stale"
    FORBIDDEN = "forbidden"
    OUT_OF_RETRIES = "out_of_retries"  # a user's retries for today are used up


@dataclass(frozen=True)
class Actor:
    """Who asks for a retry: an operator at a terminal, or a Telegram user."""

    label: str
    telegram_user_id: int | None = None
    is_admin: bool = False

    @classmethod
    def operator(cls, name: str) -> Actor:
        return cls(label=f"operator:{name}")

    @classmethod
    def telegram(cls, user_id: int, *, is_admin: bool = False) -> Actor:
        return cls(label=f"telegram:{user_id}", telegram_user_id=user_id, is_admin=is_admin)

    @classmethod
    def telegram_admin(cls, user_id: int) -> Actor:
        """An admin's /retry command: any asset, recorded as the admin's."""
        return cls(label=f"telegram-admin:{user_id}", telegram_user_id=user_id, is_admin=True)

    @property
    def needs_request(self) -> bool:
        """A Telegram user who is not an admin may retry only assets they asked for."""
        return self.telegram_user_id is not None and not self.is_admin


@dataclass(frozen=True)
class RetryResult:
    outcome: RetryOutcome
    asset_id: int
    state: JobState | None = None
    retry_round: int | None = None
    reopened_users: tuple[int, ...] = ()
    superseded_notifications: int = 0  # failure messages not sent, now no longer true

    @property
    def retried(self) -> bool:
        return self.outcome is RetryOutcome.RETRIED


async def retry(
    conn: Connection,
    asset_id: int,
    actor: Actor,
    *,
    retry_round: int | None = None,
    reason: str | None = None,
    now: datetime | None = None,
) -> RetryResult:
    """Put a failed asset back in the queue, exactly once.

    On success the asset is pending with attempts 0 and run time now, its retry round
    is bumped, the users who were told about the failure wait again, the failure messages
    not sent yet are superseded (never sent), the event records
    ``actor`` and ``reason``, and the workers are woken at commit. ``retry_round``, when given
    (the one printed on a button), must still be current, or the outcome is ``STALE``.
    """
    if not 1 <= asset_id <= MAX_ID:
        return RetryResult(RetryOutcome.NOT_FOUND, asset_id)
    user_id = actor.telegram_user_id if actor.needs_request else None
    params = {
        "id": asset_id,
        "retry_round": retry_round,
        "user_id": user_id,
        "actor": actor.label,
        "reason": reason,
        "now": now,
    }
    row = await fetch_one(conn, "retry_asset", params)
    return _result(row, asset_id)


async def press(
    conn: Connection,
    asset_id: int,
    user_id: int,
    *,
    retry_round: int | None = None,
    reason: str | None = None,
    now: datetime | None = None,
) -> RetryResult:
    """The retry button pressed by Telegram user ``user_id``, by the rules every program's
    button follows (the function ``vidretry_retry_pressed``): ``OUT_OF_RETRIES`` when the
    user is no admin and used up today's retries (the admins are told, once per failure);
    otherwise ``retry`` as that user, who must have asked for the asset unless an admin."""
    if not 1 <= asset_id <= MAX_ID:
        return RetryResult(RetryOutcome.NOT_FOUND, asset_id)
    params = {
        "id": asset_id, "user_id": user_id, "retry_round": retry_round, "reason": reason,
        "now": now,
    }  # fmt: skip
    return _result(await fetch_one(conn, "press_retry", params), asset_id)


def _result(row: DictRow | None, asset_id: int) -> RetryResult:
    assert row is not None  # the functions always return their row
    return RetryResult(
        RetryOutcome(row["outcome"]),
        asset_id,
        JobState(row["state"]) if row["state"] is not None else None,
        row["retry_round"],
        tuple(row["reopened_users"]),
        row["superseded"],
    )


_REFUSALS = {
    RetryOutcome.NOT_FOUND: "asset {id} not found",
    RetryOutcome.NOT_FAILED: "asset {id} is not failed ({state}): nothing to retry",
    RetryOutcome.STALE: "asset {id} was already retried (retry round {retry_round})",
    RetryOutcome.FORBIDDEN: "not allowed to retry asset {id}",
    RetryOutcome.OUT_OF_RETRIES: "no retries left today for asset {id}",
}


def describe_retry(result: RetryResult) -> str:
    if result.retried:
        return (
            f"asset {result.asset_id} queued again (retry round {result.retry_round}); "
            f"{len(result.reopened_users)} user(s) waiting"
        )
    return _REFUSALS[result.outcome].format(
        id=result.asset_id, state=result.state, retry_round=result.retry_round
    )


async def failed_asset_ids(conn: Connection) -> list[int]:
    """Every failed asset, oldest first (``vidretry retry --all-failed``)."""
    return [row["id"] for row in await fetch_all(conn, "failed_asset_ids", {})]
