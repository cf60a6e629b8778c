"""The outbox: claiming notifications and recording each delivery outcome.

Same shape as a job's transitions (queue/jobs.py): every change to a claimed row is one
statement fenced by the lease token that the claim issued; ``False`` means the lease was lost
and nothing changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from vidretry.db.connection import Connection, execute, fetch_all, fetch_one, fetch_records
from vidretry.models import NotificationKind, NotificationState

# The kinds of notification this release can send: rows of a kind a later release added
# are left for a notifier of that release (docs/upgrading.md, "Add a notification kind").
KNOWN_KINDS = [kind.value for kind in NotificationKind]


@dataclass(frozen=True)
class Notification:
    """A claimed outbox row, with how to address its recipient."""

    id: int
    asset_id: int | None  # None for the admins' notices (kinds paused, resumed, set_aside)
    user_id: int
    chat_id: int
    kind: NotificationKind
    # The asset's retry round it tells of (the column "generation"); for an admins' notice,
    # the number that makes it one of a kind (the pause's, the outage's, the row's set aside).
    retry_round: int
    payload: dict[str, Any]
    attempts: int
    lease_token: UUID
    access_hash: int | None
    lang_code: str | None = None  # the recipient's language, as Telegram last told it
    # A 'ready' row's video: its recorded size and SHA-256 (None: kept before schema 19),
    # and whether its object was deleted after delivery (only Telegram's reference is left).
    result_size: int | None = None
    result_sha256: bytes | None = None
    result_deleted: bool | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", NotificationKind(self.kind))

    @property
    def name(self) -> str:
        return str(self.payload.get("name", ""))


async def claim(
    conn: Connection, *, owner: str, limit: int, lease_seconds: float, now: datetime | None
) -> list[Notification]:
    if limit <= 0:
        return []
    params = {
        "owner": owner, "limit": limit, "lease_seconds": lease_seconds, "now": now,
        "kinds": KNOWN_KINDS,
    }  # fmt: skip
    return await fetch_records(conn, "claim_notifications", params, Notification)


async def due(conn: Connection, *, limit: int, now: datetime | None) -> list[Notification]:
    """What is due, read only (a preview): nothing is claimed or changed."""
    params = {"limit": limit, "now": now, "kinds": KNOWN_KINDS}
    return await fetch_records(conn, "due_notifications", params, Notification)


async def mark_started(
    conn: Connection, notes: Sequence[Notification], *, now: datetime | None
) -> set[int]:
    """About to be sent: a crash from here until an outcome is recorded is charged to each.
    The ids whose lease still held (only those may be sent)."""
    params = {
        "ids": [note.id for note in notes],
        "tokens": [note.lease_token for note in notes],
        "now": now,
    }
    return {row["id"] for row in await fetch_all(conn, "mark_notifications_started", params)}


async def mark_sent(
    conn: Connection, note: Notification, *, message_id: int | None, now: datetime | None
) -> bool:
    """Delivered: False if the lease was lost meanwhile (nothing changed)."""
    return note.id in await mark_sent_many(conn, [(note, message_id)], now=now)


async def mark_sent_many(
    conn: Connection, sent: Sequence[tuple[Notification, int | None]], *, now: datetime | None
) -> set[int]:
    """``mark_sent`` for a batch, in one statement; the ids whose lease still held."""
    params = {
        "ids": [note.id for note, _ in sent],
        "tokens": [note.lease_token for note, _ in sent],
        "message_ids": [message_id for _, message_id in sent],
        "now": now,
    }
    return {row["id"] for row in await fetch_all(conn, "mark_notifications_sent", params)}


async def recent_sends(
    conn: Connection, *, seconds: float, now: datetime | None
) -> list[tuple[int, float]]:
    """What the bot sent in the last ``seconds``, by any leader, oldest first: (chat, seconds
    ago) of each send the outbox recorded, or began (a row still being sent)."""
    params = {"seconds": seconds, "now": now}
    return [
        (row["chat_id"], row["seconds_ago"])
        for row in await fetch_all(conn, "recent_sends", params)
    ]


async def reschedule(
    conn: Connection,
    note: Notification,
    *,
    delay_seconds: float,
    error: str | None,
    refund: bool,
    give_up_after_seconds: float,
    now: datetime | None,
) -> NotificationState | None:
    """Back to the outbox after ``delay_seconds``; ``refund`` gives the attempt back.

    Returns the row's new state: pending; dead (charged, and older than the budget);
    superseded (a failure message whose asset was retried meanwhile); None if the lease was
    lost and nothing changed."""
    params = {
        "id": note.id,
        "token": note.lease_token,
        "delay_seconds": delay_seconds,
        "error": error,
        "refund": int(refund),
        "give_up_after_seconds": give_up_after_seconds,
        "now": now,
    }
    row = await fetch_one(conn, "reschedule_notification", params)
    return NotificationState(row["state"]) if row else None


async def bury(conn: Connection, note: Notification, *, error: str, now: datetime | None) -> bool:
    params = {"id": note.id, "token": note.lease_token, "error": error, "now": now}
    return await fetch_one(conn, "bury_notification", params) is not None


async def user_language(conn: Connection, user_id: int) -> str | None:
    """The language the user's Telegram last reported; None if it never did."""
    row = await fetch_one(conn, "user_language", {"user_id": user_id})
    return row["lang_code"] if row else None


async def remember_user(
    conn: Connection,
    user_id: int,
    access_hash: int | None,
    now: datetime | None,
    *,
    lang_code: str | None = None,
) -> str | None:
    """How to reach a user who just wrote or pressed, and their language (None: unknown
    this time, the last one known is kept). Returns the language to answer them in."""
    params = {"user_id": user_id, "access_hash": access_hash, "lang_code": lang_code, "now": now}
    row = await fetch_one(conn, "remember_user", params)
    return row["lang_code"] if row else None


async def mark_user_blocked(
    conn: Connection, user_id: int, reason: str, now: datetime | None
) -> None:
    await execute(conn, "mark_user_blocked", {"user_id": user_id, "reason": reason, "now": now})
