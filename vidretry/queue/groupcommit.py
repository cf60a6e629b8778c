"""Outcomes written in batches: while one batch commits, the next one forms, as in a
database's group commit. A busy process pays one transaction per batch instead of one per
item; an idle one waits for nobody. The worker writes its successes this way, the notifier
its sent messages."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class GroupCommit(Generic[T]):
    """``write`` records a batch and returns the keys (``key(item)``) that it changed: the
    items whose lease still held."""

    def __init__(
        self, write: Callable[[list[T]], Awaitable[set[int]]], key: Callable[[T], int]
    ) -> None:
        self.write = write
        self.key = key
        self.waiting: list[tuple[T, asyncio.Future[bool]]] = []
        self.flusher: asyncio.Task[None] | None = None

    async def add(self, item: T) -> bool:
        """Record ``item``; True if it was changed. An item whose caller is cancelled while
        it waits is still written: the flush runs in its own task."""
        written: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.waiting.append((item, written))
        if self.flusher is None or self.flusher.done():
            self.flusher = asyncio.create_task(self._flush())
        return await written

    async def _flush(self) -> None:
        while self.waiting:
            batch, self.waiting = self.waiting, []
            try:
                done = await self.write([item for item, _ in batch])
            except Exception as exc:  # each caller decides what an error means
                for _, written in batch:
                    if not written.done():
                        written.set_exception(exc)
            else:
                for item, written in batch:
                    if not written.done():
                        written.set_result(self.key(item) in done)
            if self.waiting:
                # The batch's callers go on before the next batch is written: each of the
                # notifier's sends marked as begun is handed to Telegram's library before a
                # later one is marked, so one whose send kills the process takes no later
                # one's mark with it (outbox.mark_started).
                await asyncio.sleep(0)
