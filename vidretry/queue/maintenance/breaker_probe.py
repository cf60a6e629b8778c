"""The circuit breaker's probe: while the breaker holds the queue paused, one job at a time is
tried when a probe is due (vidretry.queue.breaker decides when, and which); its success
resumes the queue for everybody.

A worker whose claim found nothing looks for a due probe when the breaker's next one is due
(its claim loop wakes for it), and at most one maintenance interval apart (a pause another
worker opened is seen within one), so an idle worker still makes about one query per poll.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

from psycopg_pool import AsyncConnectionPool

from vidretry.clock import Clock
from vidretry.db.connection import Connection
from vidretry.db.redact import one_line
from vidretry.db.transient import TRANSIENT_DB_ERRORS, through_outage
from vidretry.models import ClaimedJob
from vidretry.queue import breaker, jobs
from vidretry.queue.breaker import Breaker
from vidretry.queue.quota import Quota

log = logging.getLogger("vidretry.worker")


class BreakerProbe:
    def __init__(
        self,
        pool: AsyncConnectionPool[Connection],
        settings: Breaker,
        *,
        owner: str,
        lease_seconds: float,
        poll_interval_seconds: float,
        look_every_seconds: float,
        quota: Quota,
        clock: Clock,
        rng: random.Random,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.poll_interval_seconds = poll_interval_seconds
        self.look_every_seconds = look_every_seconds  # the worker's maintenance interval
        self.quota = quota
        self.clock = clock
        self.rng = rng
        self.monotonic = monotonic
        self.next_look = 0.0  # monotonic time of the next look for a due probe
        self.due = False  # whether that look is for a probe the breaker has due then

    def wait(self, poll: float) -> float:
        """How long a worker with nothing to do waits: ``poll``, or less when the breaker's
        next probe is due sooner."""
        if not self.due:
            return poll
        return min(poll, max(self.next_look - self.monotonic(), 0.0)) or poll

    def look_again(self) -> None:
        """A pause opened, or a probe failed: learn at the next claim when the next is due."""
        self.next_look = 0.0

    async def claim(self, conn: Connection) -> ClaimedJob | None:
        """After a claim that found nothing: the probe, when one is due and no other worker's
        runs (and something waits to be tried); else None."""
        looked = self.monotonic()
        if looked < self.next_look:
            return None
        due_in = await breaker.next_probe_in(conn, now=self.clock.now())
        self.due = due_in is not None
        if due_in is None or due_in > 0:
            wait = self.look_every_seconds
            self.next_look = looked + (wait if due_in is None else min(due_in, wait))
            return None
        # Due: unless another worker's probe runs, or nothing waits to be tried.
        self.next_look = looked + self.poll_interval_seconds
        probe = await jobs.claim_probe(
            conn, owner=self.owner, lease_seconds=self.lease_seconds, now=self.clock.now(),
            quota=self.quota,
        )  # fmt: skip
        if probe is not None:
            log.info("job %s: probing whether the generator works again (queue paused)", probe.id)
        return probe

    async def succeeded(self, probe: ClaimedJob) -> None:
        """A probe succeeded: the generator works again; end the breaker's pause."""
        try:
            resumed = await through_outage(
                self.pool,
                lambda conn: breaker.resume(
                    conn, actor=self.owner, admins=self.settings.admins, probe=probe.id,
                    now=self.clock.now(),
                ),
                within=self.lease_seconds,
                rng=self.rng,
            )  # fmt: skip
        except TRANSIENT_DB_ERRORS as exc:  # the next probe will try again
            log.error("job %s: probe succeeded, but the queue was not resumed: %s", probe.id,
                      one_line(exc))  # fmt: skip
            return
        if resumed is not None:
            log.warning(
                "job %s: probe succeeded; queue resumed after %.0fs paused",
                probe.id, resumed.paused_seconds,
            )  # fmt: skip
