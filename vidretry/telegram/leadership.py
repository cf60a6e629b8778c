"""One leader among notifiers, elected through PostgreSQL.

Telegram gives a bot's updates to one connection, so only one notifier may be logged in: the
leader. Leadership is a row with a term (River's shape): the leader renews it every third of
a term, a standby takes it when the term has lapsed, and a leader that resigns hands over at
once. A leader that cannot renew (the database is gone) knows when its term ends by its own
clock, and stops sending a margin before then (``step_down_margin``), so no standby can be
elected while it still sends.

With the notifier's ``lease_seconds`` L, the term is L/2 and standbys look every L/12 (at
most 5 s), so after a leader dies a standby leads within L/2 + L/12 (35 s by default). A
leader that resigns (stopped by SIGTERM, as in a rollout) is heard at once: the database
says so on ``vidretry_leadership`` (schema 20), and a standby that listens campaigns then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from uuid import UUID

from psycopg_pool import AsyncConnectionPool

from vidretry.clock import Clock
from vidretry.db.connection import Connection, fetch_one
from vidretry.db.redact import one_line
from vidretry.db.transient import TRANSIENT_DB_ERRORS
from vidretry.errors import RefusedError
from vidretry.eventloop import within
from vidretry.queue import metrics

log = logging.getLogger("vidretry.leadership")

# How long a resigning leader waits for the database before leaving the term to lapse.
RESIGN_SECONDS = 2.0


class Leadership:
    """Campaigns for ``role`` as ``candidate``; constructing it does no I/O."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Connection],
        *,
        candidate: str,
        lease_seconds: float,
        clock: Clock,
        role: str = "notifier",
        monotonic: Callable[[], float] = time.monotonic,
        vacated: asyncio.Event | None = None,
    ) -> None:
        self.pool = pool
        # Set when a leader resigns (NOTIFY on vidretry_leadership, schema 20): a standby
        # campaigns at once instead of at its next look.
        self.vacated = vacated or asyncio.Event()
        self.candidate = candidate
        self.role = role
        self.clock = clock
        self.monotonic = monotonic
        self.term_seconds = lease_seconds / 2
        self.renew_every = self.term_seconds / 3
        # A standby may take over at the very instant the term ends, so a leader cut off
        # from the database steps down a margin before: a tenth of the term, at most 1 s.
        # It covers a timer that fires late (the loop busy with a batch of sends, a
        # collection pause: milliseconds to tens of them) and the moment the body needs to
        # stop once ``lost`` is set, and leaves the renewals (every third of a term) their
        # chances. The term itself is counted from before the statement that granted it was
        # sent, so the database's end of the term is later still.
        self.step_down_margin = min(self.term_seconds / 10, 1.0)
        self.standby_poll_seconds = min(lease_seconds / 12, 5.0)

    async def try_claim(self) -> UUID | None:
        """One try at becoming the leader: its token, or None if another leads."""
        params = {
            "role": self.role,
            "candidate": self.candidate,
            "term_seconds": self.term_seconds,
            "now": self.clock.now(),
        }
        async with self.pool.connection() as conn:
            row = await fetch_one(conn, "claim_leadership", params)
        return row["token"] if row else None

    async def renew(self, token: UUID) -> bool:
        """Extend the term; False if another notifier leads now."""
        params = {
            "role": self.role,
            "token": token,
            "term_seconds": self.term_seconds,
            "now": self.clock.now(),
        }
        async with self.pool.connection() as conn:
            return await fetch_one(conn, "renew_leadership", params) is not None

    async def resign(self, token: UUID) -> None:
        try:
            async with asyncio.timeout(RESIGN_SECONDS), self.pool.connection() as conn:
                await fetch_one(conn, "resign_leadership", {"role": self.role, "token": token})
        except (TimeoutError, *TRANSIENT_DB_ERRORS) as exc:
            log.warning("could not resign (%s): the term lapses by itself", one_line(exc))

    async def current(self) -> str | None:
        async with self.pool.connection() as conn:
            row = await fetch_one(conn, "current_leader", {"role": self.role})
        return row["leader"] if row else None

    async def lead(
        self,
        stop: asyncio.Event,
        body: Callable[[asyncio.Event, asyncio.Event], Awaitable[None]],
        *,
        stand_by: bool = True,
    ) -> None:
        """Until ``stop`` is set: wait to be elected, then run ``body(done, lost)`` while
        leading. ``done`` is set when ``stop`` is or leadership is lost; ``lost`` only in the
        second case, when the body must stop sending at once. A body that returns by itself
        ends the campaign; its exception ends it too, after resigning. Without ``stand_by``,
        another leader is a ``RefusedError`` instead of a wait."""
        while not stop.is_set():
            if stand_by:
                elected = await self._elected(stop)
            else:
                elected = await self._claim_now()
            if elected is None:
                return
            token, started = elected
            log.info("%s leads the notifiers now", self.candidate)
            metrics.LEADER.set(1)
            done, lost = asyncio.Event(), asyncio.Event()
            keeper = asyncio.create_task(self._keep(token, started, stop, done, lost))
            try:
                await body(done, lost)
            finally:
                metrics.LEADER.set(0)
                done.set()
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeper
                if not lost.is_set():
                    await self.resign(token)
            if not lost.is_set():
                return
            log.warning("%s no longer leads: back to standby", self.candidate)

    async def _claim_now(self) -> tuple[UUID, float]:
        started = self.monotonic()
        token = await self.try_claim()
        if token is None:
            raise RefusedError(
                f"notifier {await self.current()} is running and delivers the outbox: stop it first"
            )
        return token, started

    async def _elected(self, stop: asyncio.Event) -> tuple[UUID, float] | None:
        """(token, when the winning try started) once elected; None if stopped first."""
        said_who = None
        while not stop.is_set():
            try:
                started = self.monotonic()
                token = await self.try_claim()
                if token is not None:
                    return token, started
                leader = await self.current()
                if leader != said_who:
                    log.info("standing by: %s leads", leader)
                    said_who = leader
            except TRANSIENT_DB_ERRORS as exc:
                log.error("database unavailable (%s): standing by", one_line(exc))
            waits = [asyncio.create_task(stop.wait()), asyncio.create_task(self.vacated.wait())]
            try:
                await asyncio.wait(
                    waits, timeout=self.standby_poll_seconds, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for wait in waits:
                    wait.cancel()
                await asyncio.gather(*waits, return_exceptions=True)
            self.vacated.clear()
        return None

    async def _keep(
        self,
        token: UUID,
        started: float,
        stop: asyncio.Event,
        done: asyncio.Event,
        lost: asyncio.Event,
    ) -> None:
        """Renew the term until ``stop``; set ``lost`` (and ``done``) if it is lost, or when
        it ends by the local clock without a successful renewal. Terms are counted from
        before the statement that granted them was sent, and end ``step_down_margin`` early,
        so the local end comes first."""
        term = self.term_seconds - self.step_down_margin
        term_ends = started + term
        next_wait = self.renew_every
        stopping = asyncio.create_task(stop.wait())
        try:
            while True:
                wait = min(next_wait, term_ends - self.monotonic())
                if wait > 0:
                    await asyncio.wait({stopping}, timeout=wait)
                if stop.is_set():
                    done.set()
                    return
                if self.monotonic() >= term_ends:
                    log.error("%s: term ended without renewal: stepping down", self.candidate)
                    break
                started = self.monotonic()
                try:
                    # Not asyncio.timeout: it would wait for the cancelled renewal, which
                    # on a dead link ends seconds after the term (vidretry.eventloop).
                    renewed = await within(term_ends - started, self.renew(token))
                except TimeoutError:
                    log.error("%s: term ended while renewing: stepping down", self.candidate)
                    break
                except TRANSIENT_DB_ERRORS as exc:
                    log.warning("could not renew leadership (%s); trying again", one_line(exc))
                    next_wait = min(1.0, self.renew_every)  # never past the term's end
                    continue
                if not renewed:
                    log.error("%s: another notifier was elected: stepping down", self.candidate)
                    break
                term_ends = started + term
                next_wait = self.renew_every
        finally:
            stopping.cancel()
        lost.set()
        done.set()
