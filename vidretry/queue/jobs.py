"""A job's transitions: one function each, each a guarded statement from sql/queries/jobs.sql.

Functions take the caller's connection, so a transition can join the caller's transaction
(``async with conn.transaction()`` nests as a savepoint). Every change to a running job is
fenced by its lease token: when a function returns ``False`` the lease was lost and nothing
changed.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg

from vidretry.db.connection import Connection, execute, fetch_all, fetch_one, fetch_records
from vidretry.db.sqlfiles import queries
from vidretry.models import ClaimedJob, NotificationKind
from vidretry.queue.breaker import Breaker, LeaseLost, Verdict, judge_failure
from vidretry.queue.quota import NO_QUOTA, Quota
from vidretry.results.base import Stored

# Expired leases are rescued at most this many per statement (after a mass crash, several).
RESCUE_BATCH = 500


class Failure(enum.StrEnum):
    """How a failed attempt was recorded."""

    RETRY = "retry"  # pending again after a backoff
    FAILED = "failed"  # failed for good: its users are told
    REFUNDED = "refunded"  # the queue is paused: the attempt was given back
    PAUSED = "paused"  # this failure tripped the breaker: the queue is paused
    LOST = "lost"  # the lease was lost: nothing changed


@dataclass(frozen=True)
class RescuedJobs:
    """What one rescue pass did: jobs put back in the queue, and jobs it must now fail."""

    requeued: list[int]
    exhausted: list[ClaimedJob]


@dataclass(frozen=True)
class DrainOutlook:
    paused_by: str | None  # who holds the queue paused (nothing runs until it ends), or None
    pending: int
    expired: int
    next_due_in: float | None

    @property
    def waiting(self) -> int:
        """Jobs that still have to run: pending ones, and those whose lease expired."""
        return self.pending + self.expired


async def claim(
    conn: Connection,
    *,
    owner: str,
    limit: int,
    lease_seconds: float,
    now: datetime | None,
    quota: Quota = NO_QUOTA,
    probe: int | None = None,
) -> list[ClaimedJob]:
    """Claim up to ``limit`` due jobs, in the fair order and within ``quota``: running, one
    more attempt, a fresh lease. Without a quota it is one statement; with one, claims take
    turns (``lock_quota``) so that every worker's starts count. ``probe``: the breaker's
    chosen job, claimed alone while the queue is paused (``claim_probe``)."""
    if limit <= 0:
        return []
    params = {
        "owner": owner, "limit": limit, "lease_seconds": lease_seconds, "now": now,
        "probe": probe, **quota.params(),
    }  # fmt: skip
    if not quota.limited:
        return await fetch_records(conn, "claim_jobs", params, ClaimedJob)
    async with conn.transaction():
        await execute(conn, "lock_quota", {})
        return await fetch_records(conn, "claim_jobs", params, ClaimedJob)


async def claim_probe(
    conn: Connection,
    *,
    owner: str,
    lease_seconds: float,
    now: datetime | None,
    quota: Quota = NO_QUOTA,
) -> ClaimedJob | None:
    """While the breaker holds the queue paused and a probe is due, claim one job to try:
    the breaker chooses it (``choose_probe``), and ``claim`` claims it with a claim's own
    steps and quotas (a probe is a start like any other). With no room for it, the choice
    is taken back and the next probe is due as before."""
    claimed: list[ClaimedJob] = []
    async with conn.transaction():
        if quota.limited:
            await execute(conn, "lock_quota", {})  # before the choice: claims take turns
        chosen = await fetch_one(conn, "choose_probe", {"now": now})
        if chosen is None:
            return None
        claimed = await claim(
            conn, owner=owner, limit=1, lease_seconds=lease_seconds, now=now, quota=quota,
            probe=chosen["probe_asset"],
        )  # fmt: skip
        if not claimed:
            raise psycopg.Rollback()
    return claimed[0] if claimed else None


async def prepare_quota(conn: Connection, quota: Quota) -> None:
    """The start tokens ``max_starts_per_minute`` needs (added once, at a worker's start)."""
    if quota.max_starts_per_minute > 0:
        await execute(conn, "provide_start_tokens", {"n": quota.max_starts_per_minute})


async def set_policy(
    conn: Connection, *, fair: bool, max_attempts: int, owner: str, now: datetime | None
) -> bool:
    """Write ``[queue] fair`` and ``[worker] max_attempts`` for every enqueue to follow;
    True if that changed the order."""
    params = {"fair": fair, "max_attempts": max_attempts, "owner": owner, "now": now}
    row = await fetch_one(conn, "set_queue_policy", params)
    return row is not None and row["was_fair"] != fair


async def complete(
    conn: Connection, job: ClaimedJob, *, owner: str, result: Stored | str, now: datetime | None
) -> bool:
    """Success: the asset becomes available, its requests done, one 'ready' row per user.
    ``result``: the kept video (a bare string: one whose size and hash are not known)."""
    return job.id in await complete_many(conn, [(job, result)], owner=owner, now=now)


async def complete_many(
    conn: Connection,
    finished: Sequence[tuple[ClaimedJob, Stored | str]],
    *,
    owner: str,
    now: datetime | None,
) -> set[int]:
    """``complete`` for a batch, in one transaction (the caller's, if it has one open);
    returns the ids whose lease still held (the others changed nothing)."""
    kept = [
        result if isinstance(result, Stored) else Stored(result, None, None)
        for _, result in finished
    ]
    params = {
        "ids": [job.id for job, _ in finished],
        "tokens": [job.lease_token for job, _ in finished],
        "results": [stored.uri for stored in kept],
        "sizes": [stored.size for stored in kept],
        "hashes": [stored.sha256 for stored in kept],
        "owner": owner,
        "now": now,
    }
    settle = {"ids": params["ids"], "kind": NotificationKind.READY, "now": now}
    # One round trip, one transaction: the two statements are pipelined up to one Sync, and
    # statements up to a Sync with no BEGIN among them commit together or not at all
    # (PostgreSQL's extended query protocol: an implicit transaction). conn.transaction()
    # here would cost a round trip of its own: psycopg syncs after its BEGIN.
    async with conn.pipeline():
        done = await conn.execute(queries()["complete_jobs"], params)
        await conn.execute(queries()["settle_requests_and_queue_notifications"], settle)
    return {row["id"] for row in await done.fetchall()}


async def retry_later(
    conn: Connection,
    job: ClaimedJob,
    *,
    owner: str,
    error: str,
    backoff_seconds: float,
    now: datetime | None,
) -> bool:
    """A failed attempt with attempts left: pending again after ``backoff_seconds``."""
    params = {
        "id": job.id,
        "token": job.lease_token,
        "owner": owner,
        "error": error,
        "backoff_seconds": backoff_seconds,
        "now": now,
    }
    return await fetch_one(conn, "schedule_next_attempt", params) is not None


async def fail(
    conn: Connection, job: ClaimedJob, *, owner: str, error: str | None, now: datetime | None
) -> bool:
    """The final failure, in one transaction: the asset and every waiting request become
    failed, one 'failed' outbox row per affected user is queued, the event is recorded and
    the notifiers are woken at commit. If any statement fails, none of it happens."""
    params = {"id": job.id, "token": job.lease_token, "owner": owner, "error": error, "now": now}
    async with conn.transaction():
        if await fetch_one(conn, "fail_job", params) is None:
            return False
        await _settle_requests(conn, [job.id], NotificationKind.FAILED, now)
    return True


async def record_failure(
    conn: Connection,
    job: ClaimedJob,
    *,
    owner: str,
    error: str,
    final: bool,
    backoff_seconds: float,
    breaker: Breaker,
    now: datetime | None,
) -> Failure:
    """A failed attempt, in one transaction with the circuit breaker's verdict on it: given
    back if the queue is paused or this failure pauses it; else pending again after
    ``backoff_seconds``, or (``final``) failed for good with its notifications."""
    try:
        async with conn.transaction():
            verdict = await judge_failure(
                conn, job, breaker=breaker, owner=owner, error=error, now=now
            )
            if verdict is Verdict.REFUNDED:
                return Failure.REFUNDED
            if verdict is Verdict.TRIPPED:
                return Failure.PAUSED
            if final:
                if not await fail(conn, job, owner=owner, error=error, now=now):
                    raise LeaseLost(job.id)
                return Failure.FAILED
            if not await retry_later(
                conn, job, owner=owner, error=error, backoff_seconds=backoff_seconds, now=now
            ):
                raise LeaseLost(job.id)
            return Failure.RETRY
    except LeaseLost:  # rolled back: a stale worker's failure is not counted either
        return Failure.LOST


async def _settle_requests(
    conn: Connection, asset_ids: list[int], kind: NotificationKind, now: datetime | None
) -> None:
    await fetch_one(
        conn,
        "settle_requests_and_queue_notifications",
        {"ids": asset_ids, "kind": kind, "now": now},
    )


async def release(conn: Connection, job: ClaimedJob, *, owner: str, now: datetime | None) -> bool:
    """Give back a job interrupted by a graceful shutdown; the attempt is not charged."""
    params = {
        "id": job.id, "token": job.lease_token, "owner": owner, "kind": "released",
        "detail": "worker shut down", "hold_seconds": None, "now": now,
    }  # fmt: skip
    return await fetch_one(conn, "give_back_job", params) is not None


async def rate_limit(
    conn: Connection,
    job: ClaimedJob,
    *,
    owner: str,
    detail: str,
    retry_after: float,
    now: datetime | None,
) -> datetime | None:
    """ "Slow down": the job waits again with its attempt given back, and every worker holds
    off new starts for ``retry_after`` seconds. Returns when the hold ends, or None if the
    lease was lost (nothing changed)."""
    params = {
        "id": job.id, "token": job.lease_token, "owner": owner, "kind": "rate_limited",
        "detail": detail, "hold_seconds": retry_after, "now": now,
    }  # fmt: skip
    row = await fetch_one(conn, "give_back_job", params)
    return None if row is None else row["held_until"]


async def record_progress(
    conn: Connection, job: ClaimedJob, fraction: float, *, now: datetime | None
) -> bool:
    """The generator's latest progress report (0 to 1), fenced by the lease; the
    notifiers are woken to show it. False if nothing was written: the lease was lost, or
    the report is the one already recorded."""
    params = {"id": job.id, "token": job.lease_token, "progress": fraction, "now": now}
    return await fetch_one(conn, "record_progress", params) is not None


async def generator_gone(conn: Connection, job: ClaimedJob) -> bool:
    """After a lost lease, once the job's generator is stopped: its slot of ``max_running``
    is free again (until now it counted as running: generators_stopping, schema 21). Returns
    whether the job was cancelled (rather than rescued)."""
    row = await fetch_one(conn, "generator_gone", {"id": job.id, "token": job.lease_token})
    return row is not None and row["cancelled"] is True


async def rescue_expired(
    conn: Connection, *, owner: str, lease_seconds: float, now: datetime | None
) -> RescuedJobs:
    """Put jobs whose lease expired back in the queue; the crash used up their attempt.

    Jobs that expired on their last attempt come back leased to ``owner``, for the caller to
    pass to ``fail`` with ``error=None`` (keeping the lost-lease error recorded here). Their
    generators keep their slots of ``max_running`` while their workers may still be
    stopping them (``generator_gone``).
    """
    params = {"owner": owner, "lease_seconds": lease_seconds, "limit": RESCUE_BATCH, "now": now}
    await execute(conn, "note_generators_stopping", {"now": now})
    requeued: list[int] = []
    while True:  # in bounded batches, each its own short transaction
        batch = [row["id"] for row in await fetch_all(conn, "rescue_expired_jobs", params)]
        requeued += batch
        if len(batch) < RESCUE_BATCH:
            break
    exhausted: list[ClaimedJob] = []
    while True:
        taken = await fetch_records(conn, "take_over_exhausted_jobs", params, ClaimedJob)
        exhausted += taken
        if len(taken) < RESCUE_BATCH:
            break
    return RescuedJobs(requeued, exhausted)


async def drain_outlook(conn: Connection, now: datetime | None) -> DrainOutlook:
    row = await fetch_one(conn, "drain_outlook", {"now": now})
    assert row is not None  # an aggregate always returns a row
    return DrainOutlook(row["paused_by"], row["pending"], row["expired"], row["next_due_in"])
