"""Pausing the queue: the circuit breaker that tells a broken generator from a bad job, its
probes, and pause/resume by hand. The statements are in sql/queries/breaker.sql.

The breaker counts failed attempts since the last success in one row of the database, so
every worker on every machine sees the same streak. When the streak covers
``min_assets`` different assets within ``window_seconds``, the generator is taken to be down
for everybody: a pause opens (no worker claims), the streak's attempts are given back, and
one worker at a time probes with one job every ``probe_seconds`` (doubling up to
``probe_max_seconds``) until one succeeds. A failure while a pause is open costs no attempt.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from vidretry.config import WorkerConfig
from vidretry.db.connection import Connection, fetch_one
from vidretry.models import ClaimedJob, NotificationKind


@dataclass(frozen=True)
class Breaker:
    """The breaker's settings (``[worker] breaker_*``) and the admins told of a pause."""

    enabled: bool = True
    min_assets: int = 5
    window_seconds: float = 600.0
    probe_seconds: float = 30.0
    probe_max_seconds: float = 120.0
    admins: tuple[int, ...] = ()


def breaker_settings(config: WorkerConfig, admins: Sequence[int] = ()) -> Breaker:
    """The circuit breaker as ``[worker]`` configures it; ``admins`` hear of its pauses."""
    return Breaker(
        enabled=config.breaker,
        min_assets=config.breaker_min_assets,
        window_seconds=config.breaker_window_seconds,
        probe_seconds=config.breaker_probe_seconds,
        probe_max_seconds=max(config.breaker_probe_seconds, config.breaker_probe_max_seconds),
        admins=tuple(admins),
    )


class Verdict(enum.StrEnum):
    """What the breaker made of a failed attempt."""

    COUNTS = "counts"  # the attempt counts: retry later, or fail for good
    REFUNDED = "refunded"  # the queue is paused: the attempt was given back
    TRIPPED = "tripped"  # this failure paused the queue: it and its streak were given back


class LeaseLost(Exception):
    """Raised inside a failure's transaction to roll it back: the job's lease was lost."""


async def judge_failure(
    conn: Connection,
    job: ClaimedJob,
    *,
    breaker: Breaker,
    owner: str,
    error: str,
    now: datetime | None,
) -> Verdict:
    """Count a failed attempt, inside the caller's transaction. When the queue is paused or
    this failure pauses it, the attempt is refunded here (``LeaseLost`` if the lease was
    lost); when it counts, the caller records it as usual."""
    await fetch_one(conn, "lock_breaker", {})
    params = {
        "asset_id": job.id,
        "counting": breaker.enabled,
        "window_seconds": breaker.window_seconds,
        "now": now,
    }
    streak = await fetch_one(conn, "note_failed_attempt", params)
    assert streak is not None  # the breaker row is created by the migration
    if streak["paused"]:
        await _refund(conn, job, breaker=breaker, owner=owner, error=error, now=now)
        return Verdict.REFUNDED
    if not breaker.enabled or streak["assets"] < breaker.min_assets:
        return Verdict.COUNTS
    pause = await fetch_one(
        conn,
        "open_breaker_pause",
        {
            "error": error,
            "owner": owner,
            "admins": list(breaker.admins),
            "probe_seconds": breaker.probe_seconds,
            "now": now,
        },
    )
    assert pause is not None  # no pause was open: the breaker row's lock says so
    await _refund(conn, job, breaker=breaker, owner=owner, error=error, now=now)
    others: Counter[int] = Counter(streak["streak_assets"])
    others[job.id] -= 1  # this attempt was refunded above
    ids = [asset for asset, n in others.items() if n > 0]
    await fetch_one(
        conn,
        "refund_streak",
        {
            "ids": ids,
            "counts": [others[asset] for asset in ids],
            "owner": owner,
            "pause_id": pause["id"],
            "now": now,
        },
    )
    await fetch_one(conn, "forget_streak", {})
    await _notices(conn, pause["id"], NotificationKind.PAUSED, breaker.admins, now)
    return Verdict.TRIPPED


async def _refund(
    conn: Connection,
    job: ClaimedJob,
    *,
    breaker: Breaker,
    owner: str,
    error: str,
    now: datetime | None,
) -> None:
    params = {
        "id": job.id,
        "token": job.lease_token,
        "owner": owner,
        "error": error,
        "probe_max_seconds": breaker.probe_max_seconds,
        "now": now,
    }
    if await fetch_one(conn, "refund_attempt", params) is None:
        raise LeaseLost(job.id)


@dataclass(frozen=True)
class Resumed:
    pause_id: int
    reason: str
    paused_seconds: float


async def resume(
    conn: Connection,
    *,
    actor: str,
    admins: Sequence[int],
    probe: int | None = None,
    now: datetime | None = None,
) -> Resumed | None:
    """End the open pause (``probe``: only if it is the breaker's and this asset was its
    probe), wake the workers and tell the admins if they were told of the pause. ``None``
    if there was nothing to end."""
    async with conn.transaction():
        row = await fetch_one(conn, "resume_queue", {"actor": actor, "probe": probe, "now": now})
        if row is None:
            return None
        if row["announced"]:
            await _notices(conn, row["id"], NotificationKind.RESUMED, admins, now)
    return Resumed(row["id"], row["reason"], row["paused_seconds"])


async def next_probe_in(conn: Connection, *, now: datetime | None) -> float | None:
    """Seconds until the breaker's next probe is due (0 or less: due, or one runs); None
    when the breaker holds no pause."""
    row = await fetch_one(conn, "next_probe_in", {"now": now})
    return None if row is None else float(row["seconds"])


class Paused(enum.StrEnum):
    PAUSED = "paused"  # a manual pause was opened
    HELD = "held"  # the breaker's pause became manual: no probe will end it
    ALREADY = "already"  # a manual pause was open already


async def pause(
    conn: Connection, *, actor: str, detail: str | None, now: datetime | None = None
) -> Paused:
    """``vidretry pause``: no worker claims a job until ``resume``."""
    params = {"actor": actor, "detail": detail, "now": now}
    if await fetch_one(conn, "pause_by_hand", params) is not None:
        return Paused.PAUSED
    if await fetch_one(conn, "hold_breaker_pause", params) is not None:
        return Paused.HELD
    return Paused.ALREADY


async def state(conn: Connection) -> dict[str, Any]:
    """The open pause (or the last one) and the breaker's streak, for ``status``."""
    row = await fetch_one(conn, "queue_pause_state", {})
    assert row is not None  # a LEFT JOIN from one row
    paused = row["id"] is not None and row["resumed_at"] is None
    return {"state": "paused" if paused else "running", **row}


async def _notices(
    conn: Connection,
    pause_id: int,
    kind: NotificationKind,
    admins: Sequence[int],
    now: datetime | None,
) -> None:
    if admins:
        params = {"pause_id": pause_id, "kind": kind, "admins": list(admins), "now": now}
        await fetch_one(conn, "queue_notices", params)
