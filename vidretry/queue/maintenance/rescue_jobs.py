"""Rescuing jobs whose worker died: a lease that expired puts its job back in the queue (the
lost attempt counts), and a job that was on its last attempt fails for good.

Every worker runs it each quarter lease (vidretry.queue.claim_loop's upkeep), so a crash is
rescued within about 1.25 leases of it.
"""

from __future__ import annotations

import logging

from psycopg_pool import AsyncConnectionPool

from vidretry.clock import Clock
from vidretry.db.connection import Connection
from vidretry.queue import jobs, metrics

log = logging.getLogger("vidretry.worker")


class JobRescuer:
    def __init__(
        self,
        pool: AsyncConnectionPool[Connection],
        *,
        owner: str,
        lease_seconds: float,
        clock: Clock,
    ) -> None:
        self.pool = pool
        self.owner = owner  # who fails the exhausted jobs, in their history
        self.lease_seconds = lease_seconds
        self.clock = clock

    async def run_once(self) -> int:
        """Requeue jobs whose lease expired; fail those that had no attempts left. How many."""
        async with self.pool.connection() as conn:
            rescued = await jobs.rescue_expired(
                conn, owner=self.owner, lease_seconds=self.lease_seconds, now=self.clock.now()
            )
            for job in rescued.exhausted:
                await jobs.fail(conn, job, owner=self.owner, error=None, now=self.clock.now())
        metrics.JOBS_RESCUED.inc(len(rescued.requeued) + len(rescued.exhausted))
        for job_id in rescued.requeued:
            log.warning("job %s: lease expired, requeued (the lost attempt counts)", job_id)
        for job in rescued.exhausted:
            log.warning("job %s: lease expired on its last attempt, failed", job.id)
        return len(rescued.requeued) + len(rescued.exhausted)
