"""A generator's progress reports, written to its job at a bounded rate.

A handler reports as often as it likes (``JobContext.progress``, or ``progress <percent>``
lines from a command); the job keeps the latest, and at most one write per
``every`` seconds carries it to the database, where the notifier shows it. A report may come
from any thread (a plain Python handler runs in one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
from collections.abc import Awaitable, Callable

from vidretry.db.redact import one_line
from vidretry.db.transient import TRANSIENT_DB_ERRORS

log = logging.getLogger("vidretry.progress")


class ProgressWriter:
    """The first report is written at once, then the latest at most every ``every``
    seconds (waited with ``sleep``); nothing is written while nothing new is reported.
    ``stop`` ends it."""

    def __init__(
        self,
        write: Callable[[float], Awaitable[object]],
        *,
        every: float,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.write = write
        self.every = every
        self.sleep = sleep
        self.loop = asyncio.get_running_loop()
        self.loop_thread = threading.get_ident()
        self.latest: float | None = None
        self.written: float | None = None
        self.task: asyncio.Task[None] | None = None
        self.stopped = False

    def report(self, fraction: float) -> None:
        """Record ``fraction`` (0 to 1; clamped, NaN ignored) as the latest report."""
        try:
            value = float(fraction)
        except (TypeError, ValueError):
            return
        if math.isnan(value):
            return
        self.latest = round(min(1.0, max(0.0, value)), 4)
        if threading.get_ident() == self.loop_thread:
            self._start()
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed: the job is over
                self.loop.call_soon_threadsafe(self._start)

    def _start(self) -> None:
        if self.task is None and not self.stopped:
            self.task = self.loop.create_task(self._flush())

    async def _flush(self) -> None:
        try:
            while self.latest != self.written:
                value = self.latest
                assert value is not None
                try:
                    await self.write(value)
                except TRANSIENT_DB_ERRORS as exc:  # a report is not worth a retry loop
                    log.info("progress not recorded: %s", one_line(exc))
                self.written = value
                await self.sleep(self.every)
        finally:
            self.task = None

    async def stop(self) -> None:
        self.stopped = True
        task = self.task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def parse_progress_line(line: str) -> float | None:
    """``progress 40`` (or ``progress 40.5``, ``progress 40%``) → 0.4; None for any other
    line, which is the generator's own output."""
    head, _, rest = line.strip().partition(" ")
    if head.lower() != "progress":
        return None
    try:
        percent = float(rest.strip().removesuffix("%"))
    except ValueError:
        return None
    if not math.isfinite(percent):
        return None
    return min(100.0, max(0.0, percent)) / 100.0
