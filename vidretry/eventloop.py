"""The event loop a command runs on.

``vidretry worker`` runs on uvloop where it is installed (a dependency on Linux and macOS):
a busy worker spends much of its Python time in the event loop itself (a task, a future and
a few callbacks per job), and uvloop cut that by about a sixth (bench/). Everything else,
the notifier above all, keeps asyncio's own loop: the notifier sends at most 30 messages a
second, and Telethon's connections then go through Python's socket module, where the tests'
guard keeps them on this machine (uvloop opens its connections in libuv, past that guard).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
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
