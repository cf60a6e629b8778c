"""What keeps an open console page current: one overview for every tab, streamed to each as
Server-Sent Events.

Each web process runs one ``Broadcaster``. While at least one tab listens (Server-Sent
Events), it reads the overview at most once a second — woken at once by the NOTIFY channels
the workers and notifiers use (one LISTEN connection for the process), and every second
regardless, for the changes nobody announces (a claim, a success) — and hands the same
snapshot to every tab, only when it changed. A hundred open tabs cost the database what one
does; none costs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import psycopg
from psycopg import sql
from starlette.responses import StreamingResponse

from vidretry.db.listen import JOBS_CHANNEL, OUTBOX_CHANNEL, PROGRESS_CHANNEL, ReconnectDelay
from vidretry.db.redact import one_line

log = logging.getLogger("vidretry.web")

CHANNELS = (JOBS_CHANNEL, OUTBOX_CHANNEL, PROGRESS_CHANNEL)
REFRESH_SECONDS = 1.0


class Broadcaster:
    def __init__(
        self,
        read: Callable[[], Awaitable[dict[str, Any]]],
        *,
        listen_url: str | None,
        rng: random.Random,
        every: float = REFRESH_SECONDS,
    ) -> None:
        self.read = read
        self.listen_url = listen_url
        self.rng = rng
        self.every = every
        self.tabs: set[asyncio.Queue[str]] = set()
        self.latest: str | None = None
        self.reads = 0  # overview reads so far (the one-a-second promise is tested on it)
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.listener: asyncio.Task[None] | None = None

    async def stop(self) -> None:
        for task in (self.task, self.listener):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def events(self) -> AsyncIterator[str]:
        """One tab's stream: the current snapshot at once, then each change."""
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=1)
        self.tabs.add(queue)
        self._start()
        try:
            if self.latest is not None:
                yield self.latest
            while True:
                yield await queue.get()
        finally:
            self.tabs.discard(queue)

    def stream(self) -> StreamingResponse:
        """One tab's Server-Sent Events (``GET /api/events``): an ``overview`` event with the
        current snapshot, then one with each change."""

        async def body() -> AsyncIterator[bytes]:
            async for snapshot in self.events():
                yield f"event: overview\ndata: {snapshot}\n\n".encode()

        return StreamingResponse(
            body(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    def _start(self) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run())
        if self.listen_url and (self.listener is None or self.listener.done()):
            self.listener = asyncio.create_task(self._listen(self.listen_url))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self.tabs:
            started = loop.time()
            self.wake.clear()
            try:
                snapshot = json.dumps(await self.read(), default=str, sort_keys=True)
            except (psycopg.Error, OSError) as exc:
                log.warning("overview not read: %s", one_line(exc))
            else:
                self.reads += 1
                if snapshot != self.latest:
                    self.latest = snapshot
                    for queue in list(self.tabs):
                        if queue.full():  # a slow tab gets the newest, not a backlog
                            queue.get_nowait()
                        queue.put_nowait(snapshot)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.every):
                    await self.wake.wait()
            # Never more than one read a second, however many notifications arrive.
            await asyncio.sleep(max(0.0, started + self.every - loop.time()))

    async def _listen(self, url: str) -> None:
        """One LISTEN connection for the process, on every channel; a wake-up per batch."""
        delay = ReconnectDelay(self.rng)
        while self.tabs:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    url, autocommit=True, connect_timeout=5
                )
                async with conn:
                    for channel in CHANNELS:
                        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    delay.reset()
                    while self.tabs:
                        async for _ in conn.notifies(timeout=1.0):
                            self.wake.set()
            except psycopg.Error as exc:
                log.info("console's LISTEN down (%s): refreshing every second", one_line(exc))
                await asyncio.sleep(delay.next())
