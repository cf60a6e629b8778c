"""The outbox store: claiming notifications and recording each delivery outcome.

Same shape as the job store: every change to a claimed row is one statement fenced by the
lease token that the claim issued; ``False`` means the lease was lost and nothing changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from vidretry.db import Connection, execute, fetch_all, fetch_one, fetch_records
from vidretry.models import NotificationKind


@dataclass(frozen=True)
class Notification:
    """A claimed outbox row, with how to address its recipient."""

    id: int
    asset_id: int
    user_id: int
    chat_id: int
    kind: NotificationKind
    generation: int
    payload: dict[str, Any]
    attempts: int
    lease_token: UUID
    access_hash: int | None

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
    params = {"owner": owner, "limit": limit, "lease_seconds": lease_seconds, "now": now}
    return await fetch_records(conn, "claim_notifications", params, Notification)


async def mark_sent(
    conn: Connection, note: Notification, *, message_id: int | None, now: datetime | None
) -> bool:
    params = {"id": note.id, "token": note.lease_token, "message_id": message_id, "now": now}
    return await fetch_one(conn, "mark_notification_sent", params) is not None


async def reschedule(
    conn: Connection,
    note: Notification,
    *,
    delay_seconds: float,
    error: str | None,
    refund: bool,
    now: datetime | None,
) -> bool:
    """Back to pending after ``delay_seconds``; ``refund`` gives the attempt back."""
    params = {
        "id": note.id,
        "token": note.lease_token,
        "delay_seconds": delay_seconds,
        "error": error,
        "refund": int(refund),
        "now": now,
    }
    return await fetch_one(conn, "reschedule_notification", params) is not None


async def bury(conn: Connection, note: Notification, *, error: str, now: datetime | None) -> bool:
    params = {"id": note.id, "token": note.lease_token, "error": error, "now": now}
    return await fetch_one(conn, "bury_notification", params) is not None


async def rescue_expired(conn: Connection, *, max_attempts: int, now: datetime | None) -> int:
    rescued = await fetch_all(
        conn, "rescue_expired_notifications", {"max_attempts": max_attempts, "now": now}
    )
    return len(rescued)


async def remember_user(
    conn: Connection, user_id: int, access_hash: int | None, now: datetime | None
) -> None:
    params = {"user_id": user_id, "access_hash": access_hash, "now": now}
    await execute(conn, "remember_user", params)


async def mark_user_blocked(
    conn: Connection, user_id: int, reason: str, now: datetime | None
) -> None:
    await execute(conn, "mark_user_blocked", {"user_id": user_id, "reason": reason, "now": now})
