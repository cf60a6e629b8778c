"""The worker: claims jobs, runs the generation handler under a heartbeat, records the outcome.

``run`` loops until its stop event is set (or, with ``drain``, until nothing is left), woken
by LISTEN/NOTIFY with polling as the fallback; ``outcomes`` tallies what its jobs came to.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import logging
import random
import time
from collections import Counter
from datetime import datetime

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from vidretry import backoff
from vidretry.clock import Clock
from vidretry.config import WorkerConfig
from vidretry.db.connection import Connection
from vidretry.db.listen import JOBS_CHANNEL, Listener
from vidretry.db.redact import one_line, without_queries
from vidretry.db.transient import TRANSIENT_DB_ERRORS, through_outage
from vidretry.errors import HandlerError, PermanentError, RateLimited, RefusedError, VidretryError
from vidretry.models import ClaimedJob
from vidretry.names import default_process_name
from vidretry.queue import jobs, leases, metrics
from vidretry.queue.breaker import Breaker, breaker_settings
from vidretry.queue.claim_loop import ClaimLoop
from vidretry.queue.groupcommit import GroupCommit
from vidretry.queue.handlers import Handler, context_for, describe_os_error
from vidretry.queue.leases import LeaseKeeper
from vidretry.queue.maintenance.breaker_probe import BreakerProbe
from vidretry.queue.maintenance.rescue_jobs import JobRescuer
from vidretry.queue.maintenance.retention import BackgroundPruning
from vidretry.queue.maintenance.store_outage import StoreOutageWatch
from vidretry.queue.progress import ProgressWriter
from vidretry.queue.quota import Quota
from vidretry.results.base import Stored, object_key
from vidretry.results.files import FileStore
from vidretry.results.keeping import Results

log = logging.getLogger("vidretry.worker")

# A "slow down" holds every worker off at least this long, whatever the generator said: a
# generator answering 429 with "retry-after 0" must not turn the workers into a busy loop.
MIN_HOLD_SECONDS = 1.0


class Outcome(enum.StrEnum):
    SUCCEEDED = "succeeded"
    WILL_RETRY = "will_retry"
    FAILED = "failed"
    LOST = "lost"  # the lease was lost, or the outcome could not be recorded
    RELEASED = "released"
    REFUNDED = "refunded"  # failed while the queue was paused: the attempt was given back
    CANCELLED = "cancelled"  # nobody waits any more (or an operator cancelled): stopped
    RATE_LIMITED = "rate_limited"  # the generator said "slow down": given back, all held off


class Worker:
    """Constructing a worker does no I/O; the pool is opened by the caller."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Connection],
        config: WorkerConfig,
        handler: Handler,
        *,
        listener: Listener | None,
        clock: Clock,
        rng: random.Random,
        name: str | None = None,
        pruning: BackgroundPruning | None = None,
        breaker: Breaker | None = None,
        fair: bool = True,
        results: Results | None = None,
        store_alert_seconds: float = 300.0,  # [storage] alert_after_seconds
        # A store that cannot take a finished video is tried again after 1 s, 2 s, 4 s ...
        # at most this far apart: the video goes in within about this long of its recovery.
        store_retry_max_seconds: float = 10.0,
    ) -> None:
        self.listener = listener  # woken by NOTIFY; None: polls alone
        self.pruning = pruning  # [retention] days: old history pruned in the background
        self.pool = pool
        self.config = config
        # The circuit breaker: its settings come from [worker], its admins from [telegram].
        self.breaker = breaker if breaker is not None else breaker_settings(config)
        self.handler = handler
        # Where finished videos are kept ([storage]; without one, where they were written).
        self.results = results or Results(FileStore(config.output_dir), scratch=config.output_dir)
        self.fair = fair  # [queue] fair, written for every enqueue to follow
        self.quota = Quota(
            config.max_running, config.max_starts_per_minute, config.starts_window_seconds
        )
        self.prepared = False  # the queue's policy and quota tokens written, at the start
        self.clock = clock
        self.rng = rng
        self.name = name or default_process_name()
        self.completions: GroupCommit[tuple[ClaimedJob, Stored]] = GroupCommit(
            self._record_successes, key=lambda done: done[0].id
        )
        self.outcomes: Counter[Outcome] = Counter()  # what this worker's jobs came to
        self.leases: LeaseKeeper[ClaimedJob] = LeaseKeeper(
            pool,
            leases.JOBS,
            heartbeat_seconds=config.heartbeat_seconds,
            lease_seconds=config.lease_seconds,
            clock=clock,
        )
        # What vidretry.queue.claim_loop.ClaimLoop reads.
        self.label = f"worker {self.name}"
        self.capacity = config.concurrency
        # Expired leases are looked for every quarter lease: a crash is rescued within about
        # 1.25 leases, and an idle process sends well under one query a second.
        self.maintenance_interval_seconds = max(
            config.poll_interval_seconds, min(config.lease_seconds / 4, 15.0)
        )
        self.shutdown_grace_seconds = config.shutdown_grace_seconds
        # The periodic jobs of a worker (vidretry.queue.maintenance), and the watch over the
        # video store's outages.
        self.rescuer = JobRescuer(
            pool, owner=self.name, lease_seconds=config.lease_seconds, clock=clock
        )
        self.probe = BreakerProbe(
            pool, self.breaker, owner=self.name, lease_seconds=config.lease_seconds,
            poll_interval_seconds=config.poll_interval_seconds,
            look_every_seconds=self.maintenance_interval_seconds, quota=self.quota,
            clock=clock, rng=rng,
        )  # fmt: skip
        self.store_outage = StoreOutageWatch(
            pool, owner=self.name, admins=self.breaker.admins,
            alert_after_seconds=store_alert_seconds, retry_max_seconds=store_retry_max_seconds,
            clock=clock, rng=rng,
        )  # fmt: skip

    @property
    def poll_interval_seconds(self) -> float:
        """How long the loop waits with nothing to do (read after each round's claim): a
        poll, or less when the breaker's next probe is due sooner."""
        return self.probe.wait(self.config.poll_interval_seconds)

    async def _prepare(self) -> None:
        """At the start (the loop's first upkeep, so a database that is down is waited
        for): write ``[queue] fair`` and ``[worker] max_attempts`` for every enqueue, and
        the quota's start tokens."""
        async with self.pool.connection() as conn:
            changed = await jobs.set_policy(
                conn, fair=self.fair, max_attempts=self.config.max_attempts, owner=self.name,
                now=self.clock.now(),
            )  # fmt: skip
            if changed:
                log.warning(
                    "the queue's order is now %s ([queue] fair = %s): jobs enqueued from now "
                    "on follow it", "fair" if self.fair else "first come, first served",
                    str(self.fair).lower(),
                )  # fmt: skip
            await jobs.prepare_quota(conn, self.quota)
        self.prepared = True

    async def _record_successes(self, finished: list[tuple[ClaimedJob, Stored]]) -> set[int]:
        """Write a batch of successes (through a database outage of up to a lease); return
        the ids whose lease this worker still held."""

        async def write(conn: Connection) -> set[int]:
            return await jobs.complete_many(conn, finished, owner=self.name, now=self.clock.now())

        return await through_outage(
            self.pool, write, within=self.config.lease_seconds, rng=self.rng
        )

    async def _claim(self, conn: Connection, limit: int) -> list[ClaimedJob]:
        claimed = await jobs.claim(
            conn,
            owner=self.name,
            limit=limit,
            lease_seconds=self.config.lease_seconds,
            now=self.clock.now(),
            quota=self.quota,
        )
        metrics.JOBS_CLAIMED.inc(len(claimed))
        return claimed

    # -- one job ------------------------------------------------------------------------

    async def work(self, job: ClaimedJob) -> Outcome:
        """Run the handler for a claimed job under a heartbeat, then record the outcome."""
        started = time.monotonic()
        outcome = await self._work(job)
        metrics.JOB_DURATION.observe(time.monotonic() - started)
        if outcome is Outcome.SUCCEEDED:
            metrics.JOBS_SUCCEEDED.inc()
            if job.probe:
                await self.probe.succeeded(job)
        elif outcome is Outcome.REFUNDED:
            metrics.ATTEMPTS_REFUNDED.inc()
        elif outcome is Outcome.RATE_LIMITED:
            metrics.ATTEMPTS_RATE_LIMITED.inc()
        elif outcome in (Outcome.WILL_RETRY, Outcome.FAILED):
            metrics.ATTEMPTS_FAILED.inc()
            if outcome is Outcome.FAILED:
                metrics.JOBS_FAILED.inc()
        return outcome

    async def _work(self, job: ClaimedJob) -> Outcome:
        progress = ProgressWriter(
            lambda fraction: self._record_progress(job, fraction),
            every=self.config.progress_write_seconds,
        )
        context = context_for(job, self.config.output_dir, progress.report)
        held = self.leases.hold(job)
        try:
            try:
                try:
                    result = await self.handler(context)
                finally:
                    await progress.stop()
                # Kept under the lease: a store that is down holds the job, not loses it.
                stored = await self._keep(job, result)
            finally:
                self.leases.release(held)
        except asyncio.CancelledError:
            if held.cancelled_for_its_lease():
                return await self._lease_lost_mid_run(job)
            raise
        except RateLimited as exc:
            return await self._record_rate_limit(job, exc)
        except PermanentError as exc:
            return await self._record_failure(job, str(exc), permanent=True)
        except Exception as exc:
            return await self._record_failure(job, _describe(exc), permanent=False)
        try:
            recorded = await self.completions.add((job, stored))
        except TRANSIENT_DB_ERRORS as exc:
            return _not_recorded(job, Outcome.SUCCEEDED, exc)
        if not recorded:
            await self._let_go(stored)
            return await self._lease_gone(job, Outcome.SUCCEEDED)
        return Outcome.SUCCEEDED

    async def _keep(self, job: ClaimedJob, result: str) -> Stored:
        """Keep the generator's video in the store, through the store's outage (an outage of
        infrastructure: the attempt is not charged, the breaker sees nothing)."""
        key = object_key(job.id, job.retry_round, job.lease_token.hex[:8], result)
        return await self.store_outage.through(
            job.id, lambda: self.results.keep(result, key, url_timeout=self.config.timeout_seconds)
        )

    async def _let_go(self, stored: Stored) -> None:
        """A video kept for an attempt whose lease was lost: nobody will send it (another
        attempt's video is the one recorded)."""
        if stored.uri.startswith("file://") and self.results.store.owns(stored.uri):
            return  # the generator's own output, where it wrote it: the next attempt's too
        with contextlib.suppress(VidretryError, OSError):
            await self.results.delete([stored.uri])

    async def _record_progress(self, job: ClaimedJob, fraction: float) -> None:
        async with self.pool.connection() as conn:
            await jobs.record_progress(conn, job, fraction, now=self.clock.now())

    async def _lease_lost_mid_run(self, job: ClaimedJob) -> Outcome:
        """The heartbeat found the lease gone and the generator was stopped: because the
        job was cancelled (nobody waits any more), or it was rescued after a stall."""
        if await self._generator_gone(job):
            log.info("job %s: cancelled; generator stopped, no attempt counted", job.id)
            return Outcome.CANCELLED
        log.warning("job %s: lease lost mid-run; attempt abandoned", job.id)
        return Outcome.LOST

    async def _generator_gone(self, job: ClaimedJob) -> bool:
        """A job whose lease was lost has no generator here any more: its slot of
        ``max_running``, held while it might still run, is free. Whether it was cancelled.
        Unsaid (the database unreachable), the slot frees itself shortly after the lease's
        end."""
        try:
            async with self.pool.connection() as conn:
                return await jobs.generator_gone(conn, job)
        except TRANSIENT_DB_ERRORS:
            return False

    async def _lease_gone(self, job: ClaimedJob, outcome: Outcome) -> Outcome:
        log.warning("job %s: lease lost before recording %s; nothing changed", job.id, outcome)
        await self._generator_gone(job)
        return Outcome.LOST

    async def _record_failure(self, job: ClaimedJob, error: str, *, permanent: bool) -> Outcome:
        # What every reader sees (last_error, the history, the admins' alert, the console,
        # the log): a URL in it without its query, which may be a signed URL's credential.
        error = without_queries(error)
        final = permanent or job.is_last_attempt
        delay = 0.0
        if not final:
            delay = backoff.jittered(
                backoff.exponential(
                    job.attempts, self.config.backoff_base_seconds, self.config.backoff_max_seconds
                ),
                self.rng,
            )

        async def write(conn: Connection) -> jobs.Failure:
            return await jobs.record_failure(
                conn, job, owner=self.name, error=error, final=final, backoff_seconds=delay,
                breaker=self.breaker, now=self.clock.now(),
            )  # fmt: skip

        try:
            failure = await through_outage(
                self.pool, write, within=self.config.lease_seconds, rng=self.rng
            )
        except TRANSIENT_DB_ERRORS as exc:
            return _not_recorded(job, Outcome.FAILED if final else Outcome.WILL_RETRY, exc)
        attempt = f"job {job.id}: attempt {job.attempts}"
        if failure is jobs.Failure.RETRY:
            log.info("%s failed, next in %.1fs: %s", attempt, delay, error)
            return Outcome.WILL_RETRY
        if failure is jobs.Failure.FAILED:
            log.info("%s failed for good: %s", attempt, error)
            return Outcome.FAILED
        if failure in (jobs.Failure.PAUSED, jobs.Failure.REFUNDED):
            self.probe.look_again()  # learn when the (next) probe is due
        if failure is jobs.Failure.PAUSED:
            log.warning(
                "%s failed: attempts on %d assets in a row failed, the generator looks down; "
                "queue paused, their attempts given back, probing every %gs: %s",
                attempt, self.breaker.min_assets, self.breaker.probe_seconds, error,
            )  # fmt: skip
            return Outcome.REFUNDED
        if failure is jobs.Failure.REFUNDED:
            probe = " (the probe: still down)" if job.probe else ""
            log.info(
                "%s failed while the queue is paused%s; not counted: %s", attempt, probe, error
            )
            return Outcome.REFUNDED
        return await self._lease_gone(job, Outcome.FAILED if final else Outcome.WILL_RETRY)

    async def _record_rate_limit(self, job: ClaimedJob, said: RateLimited) -> Outcome:
        """The generator said "slow down": give the attempt back and hold every worker off
        for its ``retry_after`` (the backoff this attempt would have had when it gave none),
        at least ``MIN_HOLD_SECONDS`` and at most ``[worker] backoff_max_seconds``."""
        seconds = said.retry_after
        if seconds is None:
            seconds = backoff.exponential(
                job.attempts, self.config.backoff_base_seconds, self.config.backoff_max_seconds
            )
        seconds = min(max(seconds, MIN_HOLD_SECONDS), max(self.config.backoff_max_seconds, 1.0))
        detail = f"{without_queries(one_line(said))}; every worker holds off for {seconds:g}s"

        async def write(conn: Connection) -> datetime | None:
            return await jobs.rate_limit(
                conn, job, owner=self.name, detail=detail, retry_after=seconds,
                now=self.clock.now(),
            )  # fmt: skip

        try:
            until = await through_outage(
                self.pool, write, within=self.config.lease_seconds, rng=self.rng
            )
        except TRANSIENT_DB_ERRORS as exc:
            return _not_recorded(job, Outcome.RATE_LIMITED, exc)
        if until is None:
            return await self._lease_gone(job, Outcome.RATE_LIMITED)
        log.warning(
            "job %s: attempt %d: the generator asked to slow down; not counted, no new start "
            "until %s: %s", job.id, job.attempts, until.strftime("%H:%M:%S"), detail,
        )  # fmt: skip
        return Outcome.RATE_LIMITED

    # -- the loop: vidretry.queue.claim_loop.ClaimLoop drives these ----------------------------

    async def maintain(self) -> None:
        if not self.prepared:
            await self._prepare()
        await self.rescuer.run_once()
        if self.pruning is not None:
            self.pruning.poke()

    async def claim(self, limit: int) -> list[ClaimedJob]:
        async with self.pool.connection() as conn:
            claimed = await self._claim(conn, limit)
            if claimed or limit <= 0 or not self.breaker.enabled:
                return claimed
            # Nothing to claim: perhaps the breaker holds the queue paused and a probe is due.
            probe = await self.probe.claim(conn)
        if probe is None:
            return []
        metrics.JOBS_CLAIMED.inc()
        return [probe]

    async def process(self, item: ClaimedJob) -> Outcome:
        outcome = await self.work(item)
        self.outcomes[outcome] += 1
        return outcome

    async def drained(self) -> tuple[bool, float | None]:
        """For --drain: whether nothing is left to run. A paused queue with jobs waiting is
        no drain at all — nothing runs until the pause ends — so it is ``RefusedError``."""
        async with self.pool.connection() as conn:
            outlook = await jobs.drain_outlook(conn, self.clock.now())
        if outlook.paused_by is not None and outlook.waiting:
            raise RefusedError(
                f"queue paused (by {outlook.paused_by}): {outlook.waiting} job(s) wait"
            )
        return outlook.waiting == 0, outlook.next_due_in

    async def release(self, item: ClaimedJob) -> None:
        async with self.pool.connection() as conn:
            if await jobs.release(conn, item, owner=self.name, now=self.clock.now()):
                log.info("job %s: released back to the queue", item.id)

    async def run(self, stop: asyncio.Event, *, drain: bool = False) -> None:
        """Work until ``stop`` is set (or, with ``drain``, until no job is pending and no
        lease has expired). On stop: claim nothing more, give running jobs
        ``shutdown_grace_seconds`` to finish, then cancel the rest and release them."""
        try:
            loop = ClaimLoop(self, listener=self.listener, channel=JOBS_CHANNEL, rng=self.rng)
            await loop.run(stop, drain=drain)
        finally:
            await self.leases.stop()
            if self.pruning is not None:
                await self.pruning.stop()


def _not_recorded(job: ClaimedJob, outcome: Outcome, exc: BaseException) -> Outcome:
    # The job stays running; its lease expires and it is rescued and run again.
    log.error("job %s: could not record %s: %s", job.id, outcome, _describe(exc))
    return Outcome.LOST


def _describe(exc: BaseException) -> str:
    """An error for the job's record: a handler's own message, or the exception's type too."""
    if isinstance(exc, HandlerError | psycopg.Error | PoolTimeout):
        return one_line(exc)
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:  # a Python handler's write
        return describe_os_error(exc)
    return f"{type(exc).__name__}: {one_line(exc)}"
