"""The event loop a command runs on, and deadlines that do not wait for what they cancel.

``vidretry worker`` runs on uvloop where it is installed (a dependency on Linux and macOS):
a busy worker spends much of its Python time in the event loop itself (a task, a future and
a few callbacks per job), and uvloop cut that by about a sixth (bench/). Everything else,
the notifier above all, keeps asyncio's own loop: the notifier sends at most 30 messages a
second, and Telethon's connections then go through Python's socket module, where the tests'
guard keeps them on this machine (uvloop opens its connections in libuv, past that guard).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T], *, fast: bool = False) -> T:
    """``asyncio.run(main)``; with ``fast``, on uvloop when it is installed."""
    if fast:
        try:
            import uvloop
        except ImportError:  # pragma: no cover - Windows, or installed without it
            pass
        else:
            return uvloop.run(main)
    return asyncio.run(main)


_abandoned: set[asyncio.Future[Any]] = set()  # work given up on, still ending


async def within(seconds: float, work: Awaitable[T]) -> T:
    """``work``'s result, or ``TimeoutError`` after ``seconds`` — at once.

    ``asyncio.timeout`` waits for the work it cancels to finish, and a statement on a dead
    link takes psycopg seconds to give up (it tries to cancel it on the server first). A
    deadline that matters (a lease, a leader's term) cannot wait for that: here the work is
    cancelled and left to end in the background."""
    task = asyncio.ensure_future(work)
    try:
        await asyncio.wait({task}, timeout=max(seconds, 0.0))
    finally:
        if not task.done():
            task.cancel()
            _abandoned.add(task)
            task.add_done_callback(_forget)
    if not task.done():
        raise TimeoutError
    return task.result()


def _forget(task: asyncio.Future[Any]) -> None:
    _abandoned.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: whoever gave up on it has said why
