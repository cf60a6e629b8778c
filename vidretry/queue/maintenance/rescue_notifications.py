"""Rescuing notifications whose notifier died: a row whose lease expired goes back to the
outbox, due at once (it may have been sent: delivery is at least once); a row that was being
sent each of the last ``MAX_CRASHES`` times a notifier died is set aside (dead), the admins
told. A notifier just elected also takes back the rows any other notifier still holds.

Every notifier runs it each quarter lease, and the leader once more when it is elected.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from psycopg_pool import AsyncConnectionPool

from vidretry.clock import Clock
from vidretry.db.connection import Connection, fetch_all

log = logging.getLogger("vidretry.notifier")

# Expired leases are rescued at most this many per statement.
RESCUE_BATCH = 500
# A notification being sent each time a notifier died, this many times in a row, is set
# aside: a send that kills its process (a library's segfault, an OOM kill) must not take
# the outbox down with it every lease for a day.
MAX_CRASHES = 3


@dataclass(frozen=True)
class Rescued:
    """What a rescue brought back: how many rows, and the ids of those set aside."""

    count: int = 0
    set_aside: tuple[int, ...] = ()


async def rescue_expired(
    conn: Connection,
    *,
    give_up_after_seconds: float,
    admins: Sequence[int] = (),
    leader: str | None = None,
    now: datetime | None,
) -> Rescued:
    """Rows whose lease expired come back to the outbox; a row that was being sent counts a
    crash, and one at ``MAX_CRASHES`` in a row is set aside (dead), ``admins`` told.
    ``leader``, a notifier that was just elected, also takes back the rows any other
    notifier still holds."""
    params = {
        "give_up_after_seconds": give_up_after_seconds,
        "leader": leader,
        "limit": RESCUE_BATCH,
        "max_crashes": MAX_CRASHES,
        "admins": list(admins),
        "now": now,
    }
    count, set_aside = 0, []
    while True:  # in bounded batches, each its own short transaction
        batch = await fetch_all(conn, "rescue_notifications_and_queue_set_aside_notices", params)
        count += len(batch)
        set_aside += [row["id"] for row in batch if row["set_aside"]]
        if len(batch) < RESCUE_BATCH:
            return Rescued(count, tuple(set_aside))


class OutboxRescuer:
    def __init__(
        self,
        pool: AsyncConnectionPool[Connection],
        *,
        name: str,
        give_up_after_seconds: float,
        admins: Sequence[int] = (),
        clock: Clock,
    ) -> None:
        self.pool = pool
        self.name = name  # the notifier's: the rows it takes over when elected
        self.give_up_after_seconds = give_up_after_seconds
        self.admins = tuple(admins)  # told when a notification is set aside
        self.clock = clock

    async def run_once(self, *, take_over: bool = False) -> int:
        """Rows whose lease expired come back to the outbox; with ``take_over`` (this
        notifier was just elected) so do the rows of every other notifier. How many."""
        async with self.pool.connection() as conn:
            rescued = await rescue_expired(
                conn,
                give_up_after_seconds=self.give_up_after_seconds,
                admins=self.admins,
                leader=self.name if take_over else None,
                now=self.clock.now(),
            )
        if rescued.count:
            log.warning("%d notification(s) of a lost notifier back in the outbox", rescued.count)
        for note_id in rescued.set_aside:
            log.error(
                "notification %s was being sent each of the last %d times a notifier died: "
                "set aside (dead), admins told",
                note_id, MAX_CRASHES,
            )  # fmt: skip
        return rescued.count
