"""The claim loop shared by the worker and the notifier.

Both claim rows into free slots, process each in its own task, wake on LISTEN/NOTIFY with
polling as the fallback, survive a database outage with backoff, and on stop give in-flight
work a grace period before cancelling and releasing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Sequence
from typing import Generic, Protocol, TypeVar

from vidretry.db.listen import Listener, ReconnectDelay
from vidretry.db.redact import one_line
from vidretry.db.transient import TRANSIENT_DB_ERRORS
from vidretry.errors import FatalError

log = logging.getLogger("vidretry.loop")

# How long a stopping loop spends handing back work it could not finish.
RELEASE_SECONDS = 5.0
# A full loop whose slot just freed waits this long for more to free (up to a tenth of
# them) before claiming: one claim for many slots at a paid broadcast's 1,000 sends a
# second, at most this much idle for a slot otherwise.
REFILL_SECONDS = 0.02


Item = TypeVar("Item")
T = TypeVar("T")


class Claimer(Protocol[Item]):
    """What a loop needs from the component it drives."""

    @property
    def label(self) -> str: ...

    @property
    def capacity(self) -> int:
        """How many items may be in flight at once."""
        ...

    @property
    def poll_interval_seconds(self) -> float:
        """How long to wait for a wake-up with nothing to do (read after each claim)."""
        ...

    @property
    def maintenance_interval_seconds(self) -> float:
        """How often ``maintain`` runs."""
        ...

    @property
    def shutdown_grace_seconds(self) -> float: ...

    async def maintain(self) -> None:
        """Periodic upkeep (rescuing expired leases)."""

    async def claim(self, limit: int) -> Sequence[Item]: ...

    async def process(self, item: Item) -> object: ...

    async def drained(self) -> tuple[bool, float | None]:
        """With --drain: (nothing left to do, seconds until the next item is due)."""
        ...

    async def release(self, item: Item) -> None:
        """Give back an item whose processing was cancelled by a shutdown."""


class ClaimLoop(Generic[Item]):
    def __init__(
        self,
        claimer: Claimer[Item],
        *,
        listener: Listener | None,
        channel: str,
        rng: random.Random,
    ) -> None:
        """``listener``: how notifications on ``channel`` wake the loop (None: it polls)."""
        self.claimer = claimer
        self.listener = listener
        self.channel = channel
        self.rng = rng

    async def run(
        self, stop: asyncio.Event, *, drain: bool = False, hurry: asyncio.Event | None = None
    ) -> None:
        """Loop until ``stop`` is set or, with ``drain``, until nothing is left to do. If
        ``hurry`` is set too, in-flight work gets no grace: it is cancelled and released.

        A stop is never kept waiting by a database that is down: the round in progress is
        abandoned, the listener is not waited for, and releasing in-flight work gets a few
        seconds (what it cannot release is rescued when its lease expires)."""
        claimer = self.claimer
        wake = asyncio.Event()
        listening = asyncio.Event()
        listening.set()
        listener = asyncio.create_task(
            self.listener.run(self.channel, wake, listening, self.rng)
            if self.listener is not None
            else _poll_only()
        )
        in_flight: dict[asyncio.Task[object], Item] = {}
        # Finished tasks are handed over by their done callbacks, so a round costs the same
        # with 1,000 in flight as with 10 (no scan of every task, no wait on each of them).
        finished: list[asyncio.Task[object]] = []
        freed = asyncio.Event()

        def on_done(task: asyncio.Task[object]) -> None:
            finished.append(task)
            freed.set()

        refill = max(1, claimer.capacity // 10)
        next_upkeep = 0.0
        outage = ReconnectDelay(self.rng)

        async def one_round(free: int) -> tuple[Sequence[Item], bool, float]:
            """Upkeep when due, a claim, and with --drain the check for the end."""
            nonlocal next_upkeep
            if time.monotonic() >= next_upkeep:
                await claimer.maintain()
                next_upkeep = time.monotonic() + claimer.maintenance_interval_seconds
            claimed = await claimer.claim(free) if free > 0 else []
            timeout = claimer.poll_interval_seconds  # after the claim, which may change it
            if drain and not claimed and not in_flight:
                done, next_due = await claimer.drained()
                if done:
                    return claimed, True, timeout
                if next_due is not None:
                    timeout = min(timeout, next_due)
            return claimed, False, timeout

        try:
            while not stop.is_set():
                freed.clear()
                _reap(in_flight, finished, claimer.label)
                free = claimer.capacity - len(in_flight)
                wake.clear()
                try:
                    result = await _unless_stopped(stop, one_round(free))
                except TRANSIENT_DB_ERRORS as exc:
                    seconds = outage.next()
                    log.error("database unavailable (%s); retry in %.1fs", one_line(exc), seconds)
                    await _wait_any(stop, seconds=seconds)
                    continue
                if result is None:  # stopped mid-round
                    break
                outage.reset()
                claimed, drained, timeout = result
                if drained:
                    log.info("%s drained: nothing left to do", claimer.label)
                    return
                for item in claimed:
                    task = asyncio.create_task(claimer.process(item))
                    in_flight[task] = item
                    task.add_done_callback(on_done)
                if claimed and len(claimed) == free:
                    # There may be more: claim again when a slot frees, after waiting a
                    # moment (REFILL_SECONDS) for others to free, up to a tenth of them.
                    await _wait_any(freed, stop, seconds=timeout)
                    until = time.monotonic() + REFILL_SECONDS
                    while len(finished) < refill and (left := until - time.monotonic()) > 0:
                        freed.clear()
                        await _wait_any(freed, stop, seconds=left)
                    continue
                await _wait_any(wake, stop, freed, seconds=timeout)
            _reap(in_flight, finished, claimer.label)
        finally:
            listening.clear()
            await self._shutdown(in_flight, hurry=hurry is not None and hurry.is_set())
            await _finish_or_cancel(listener, within=1.5)

    async def _shutdown(self, in_flight: dict[asyncio.Task[object], Item], *, hurry: bool) -> None:
        if not in_flight:
            return
        grace = 0.0 if hurry else self.claimer.shutdown_grace_seconds
        log.info("stopping: waiting up to %gs for %d in flight", grace, len(in_flight))
        _, unfinished = await asyncio.wait(in_flight, timeout=grace)
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)
        try:
            async with asyncio.timeout(RELEASE_SECONDS):
                for task in unfinished:
                    await self.claimer.release(in_flight[task])
        except (TimeoutError, *TRANSIENT_DB_ERRORS) as exc:
            log.error(
                "could not release everything (%s): the rest is rescued when its lease expires",
                one_line(exc) if str(exc) else "the database did not answer",
            )


async def _poll_only() -> None:
    """The listener of a loop that has none: it wakes by polling alone."""


async def _unless_stopped(stop: asyncio.Event, work: Awaitable[T]) -> T | None:
    """``work``'s result, or None if ``stop`` is set first (``work`` is then cancelled)."""
    task = asyncio.ensure_future(work)
    if stop.is_set():
        task.cancel()
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if task.done() and not task.cancelled():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, *TRANSIENT_DB_ERRORS):
        await task
    return None


async def _finish_or_cancel(task: asyncio.Task[None], *, within: float) -> None:
    """Give a task a moment to end by itself (cleanly), then cancel it."""
    done, _ = await asyncio.wait({task}, timeout=within)
    if not done:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _reap(
    in_flight: dict[asyncio.Task[object], Item], finished: list[asyncio.Task[object]], label: str
) -> None:
    """Forget finished tasks; log their bugs; re-raise a fatal error (the loop must stop)."""
    while finished:
        task = finished.pop()
        item = in_flight.pop(task)
        exc = None if task.cancelled() else task.exception()
        if isinstance(exc, FatalError):
            raise exc
        if exc is not None:
            log.error("%s: error processing %r", label, item, exc_info=exc)


async def _wait_any(*waitables: asyncio.Event | asyncio.Task[object], seconds: float) -> None:
    """Return when any event is set or task finishes, or after ``seconds``."""
    helpers = [asyncio.create_task(w.wait()) for w in waitables if isinstance(w, asyncio.Event)]
    tasks = [w for w in waitables if isinstance(w, asyncio.Task)]
    try:
        await asyncio.wait([*helpers, *tasks], timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for helper in helpers:
            helper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*helpers, return_exceptions=True)
