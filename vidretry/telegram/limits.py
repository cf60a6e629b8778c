"""The limits that keep one user from wearing out the generator or the bot.

New requests per minute are counted in memory by the leading notifier (the only process that
talks to Telegram). Retries per day are the database's rule (the function
vidretry_out_of_retries, which the button and asking again both meet in SQL), counted from
the history, so a button press and asking again for a failed video count alike, whichever
program's button it is or whoever asks.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

WINDOW_SECONDS = 60.0


class RequestRate:
    """At most ``per_minute`` new requests per user in any 60 seconds.

    ``admit`` answers True (go ahead), None (over the limit: tell them, once a window) or
    False (over, and already told: say nothing, so a flood costs the bot no messages)."""

    def __init__(self, per_minute: int, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.monotonic = monotonic
        self._recent: dict[int, deque[float]] = {}
        self._told: dict[int, float] = {}

    def admit(self, user_id: int) -> bool | None:
        now = self.monotonic()
        recent = self._recent.setdefault(user_id, deque())
        while recent and recent[0] <= now - WINDOW_SECONDS:
            recent.popleft()
        if len(recent) < self.per_minute:
            recent.append(now)
            if len(self._recent) > 10_000:
                self._forget(now)
            return True
        if self._told.get(user_id, -WINDOW_SECONDS) > now - WINDOW_SECONDS:
            return False
        self._told[user_id] = now
        return None

    def _forget(self, now: float) -> None:
        self._recent = {u: r for u, r in self._recent.items() if r and r[-1] > now - WINDOW_SECONDS}
        self._told = {u: t for u, t in self._told.items() if t > now - WINDOW_SECONDS}
