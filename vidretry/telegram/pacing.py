"""Telegram's limits for every message the bot sends: at most so many a second overall, and one
per interval in each chat (``RateLimiter`` spaces the slots, ``Pacer`` guards each send as
it leaves); a flood wait pauses them all.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import deque
from collections.abc import Callable, Sequence

# The rate's window as the pacer keeps it: 2 % longer than a second, for the moment between
# its guard and the request on the wire.
WINDOW_SECONDS = 1.02


class RateLimiter:
    """Spaces sends: at most ``rate`` per second overall and one per ``chat_interval`` seconds
    in each chat. Every send gets a start time at least ``1/rate`` seconds from every other,
    so no one-second window holds more than the limit; a send that must wait for its chat
    takes a later start without holding back the sends to other chats, and an idle limiter
    lets a send go at once. Times are monotonic seconds, passed in."""

    def __init__(self, rate: float, chat_interval: float) -> None:
        self.spacing = 1.0 / rate
        self.chat_interval = chat_interval
        self.starts: list[float] = []  # reserved start times, sorted
        self.next_in_chat: dict[int, float] = {}
        self.paused_until = 0.0

    def reserve(self, chat_id: int, now: float, *, max_wait: float) -> float | None:
        """Reserve a send time; return the seconds to wait for it, or None (nothing reserved)
        when this chat is busy for longer than ``max_wait``."""
        chat_ready = self.next_in_chat.get(chat_id, 0.0)
        if chat_ready - now > max_wait:
            return None
        self._forget_before(now)
        start = max(now, chat_ready, self.paused_until)
        # The first gap of a full spacing on both sides, at or after ``start``.
        i = bisect.bisect_left(self.starts, start - self.spacing + 1e-9)
        while i < len(self.starts) and self.starts[i] < start + self.spacing - 1e-9:
            start = max(start, self.starts[i] + self.spacing)
            i += 1
        self.starts.insert(i, start)
        self.next_in_chat[chat_id] = start + self.chat_interval
        return start - now

    def _forget_before(self, now: float) -> None:
        cut = bisect.bisect_left(self.starts, now - self.spacing)
        del self.starts[:cut]
        if len(self.next_in_chat) > 10_000:
            self.next_in_chat = {c: t for c, t in self.next_in_chat.items() if t > now}

    def chat_wait(self, chat_id: int, now: float) -> float:
        return max(0.0, self.next_in_chat.get(chat_id, 0.0) - now)

    def sent_before(self, chat_id: int, at: float) -> None:
        """A send at ``at`` that this limiter did not space (a leader's before this one):
        the next ones are spaced from it, and its chat's next waits its interval."""
        bisect.insort(self.starts, at)
        self.next_in_chat[chat_id] = max(self.next_in_chat.get(chat_id, 0.0),
                                         at + self.chat_interval)  # fmt: skip

    def pause(self, until: float) -> None:
        """Telegram asked for a flood wait: nothing is sent before ``until``."""
        self.paused_until = max(self.paused_until, until)

    def paused_for(self, now: float) -> float:
        return max(0.0, self.paused_until - now)


class Pacer:
    """Telegram's limits for every message the bot sends: the outbox's, and the replies to a
    button press or a command alike. Only the leading notifier sends, so its pacer's limits
    are the bot's. Times are monotonic seconds from ``monotonic``."""

    def __init__(
        self, rate: float, chat_interval: float, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.limiter = RateLimiter(rate, chat_interval)
        self.chat_interval = chat_interval
        self.monotonic = monotonic
        # The last second's sends, one in a hundred short of the limit: a send may leave a
        # little after go() let it (a collection pause), and arrive in the next window.
        self._recent_sends: deque[float] = deque(maxlen=max(1, int(rate) - int(rate / 100)))
        self._sent_in_chat: dict[int, float] = {}
        self._window_lock = asyncio.Lock()

    def reserve(self, chat_id: int, *, max_wait: float) -> float | None:
        """Seconds to wait for a send slot in ``chat_id``, or None when the chat is busy for
        longer than ``max_wait`` (nothing is reserved then)."""
        return self.limiter.reserve(chat_id, self.monotonic(), max_wait=max_wait)

    def chat_wait(self, chat_id: int) -> float:
        return self.limiter.chat_wait(chat_id, self.monotonic())

    def pause(self, seconds: float) -> None:
        self.limiter.pause(self.monotonic() + seconds)

    @property
    def memory_seconds(self) -> float:
        """How far back the sends before this pacer matter: the rate's window, or a chat's
        interval if longer."""
        return max(WINDOW_SECONDS, self.chat_interval)

    def take_over(self, recent: Sequence[tuple[int, float]] | None) -> None:
        """A new leader's pacer, given what the bot sent in the last ``memory_seconds`` by
        any leader (``recent``: (chat, seconds ago), oldest first, as the outbox recorded
        them): each send counts in the rate's window and in its chat's interval as if this
        pacer had let it go, so the new leader sends at once what the limits leave — a
        hand-over without a gap, and without a second over the limit. ``None`` (the outbox
        could not be read): nothing is sent before a whole window and interval have passed,
        the rows waiting for their slots, unmarked, as in a flood wait."""
        if recent is None:
            self.pause(self.memory_seconds)
            return
        now = self.monotonic()
        for chat_id, seconds_ago in recent:
            at = now - seconds_ago
            self._recent_sends.append(at)
            self._sent_in_chat[chat_id] = max(self._sent_in_chat.get(chat_id, -1e9), at)
            self.limiter.sent_before(chat_id, at)

    def window_wait(self) -> float:
        """Seconds until the rate's window has room for one more send (0: now)."""
        if len(self._recent_sends) < (self._recent_sends.maxlen or 1):
            return 0.0
        return max(0.0, self._recent_sends[0] + WINDOW_SECONDS - self.monotonic())

    def paused_for(self) -> float:
        return self.limiter.paused_for(self.monotonic())

    async def turn(self, chat_id: int) -> None:
        """Wait for this chat's next send slot (a reply: it is sent, however late). The
        send then passes ``go`` as it leaves."""
        wait = self.reserve(chat_id, max_wait=float("inf"))
        assert wait is not None
        await asyncio.sleep(max(wait, self.paused_for()))

    async def ready(self, chat_id: int) -> None:
        """Wait until ``go`` would let a send to ``chat_id`` go at once (nothing recorded):
        a send marks itself as begun (``depart``) after this and before ``go``, so that it
        does not wait its turn marked. Sends at the full rate may still wait a little in
        ``go``: all that were ready for one free place in the window, but one."""
        while True:
            chat_wait = self._sent_in_chat.get(chat_id, -1e9) + self.chat_interval
            wait = max(chat_wait - self.monotonic(), self.window_wait())
            if wait <= 0:
                return
            await asyncio.sleep(wait)

    async def go(self, chat_id: int) -> None:
        """The last guard before a send, on actual send times: called as the request leaves
        (the Telegram adapter's client calls it then, after an upload and once Telethon has
        built the request; a transport that cannot, just before it sends). The limiter
        spaces reserved slots, but timers wake a little late and unevenly, a message may
        leave long after its slot (a video, when its upload is done), and a send held here
        for the overall limit could otherwise come too close to the next one in its chat:
        this keeps every one-second window within the limit, and every chat's sends the chat
        interval apart. Its window is 2 % longer than a second, for the moment between the
        guard and the request on the wire (it costs 2 % of the rate at most)."""
        while True:
            chat_wait = (
                self._sent_in_chat.get(chat_id, -1e9) + self.chat_interval - self.monotonic()
            )
            if chat_wait > 0:
                await asyncio.sleep(chat_wait)
            async with self._window_lock:
                wait = self.window_wait()
                if wait > 0:
                    await asyncio.sleep(wait)
                now = self.monotonic()
                if self._sent_in_chat.get(chat_id, -1e9) + self.chat_interval <= now:
                    self._recent_sends.append(now)
                    self._sent_in_chat[chat_id] = now
                    if len(self._sent_in_chat) > 10_000:
                        self._forget_chats(now)
                    return

    def spare(self, chat_id: int) -> bool:
        """A send that may be dropped (a progress edit), at the lowest priority: True, and
        the send counted in the rate's window, only when no message waits for a slot, the
        last second used under half the rate, nothing is paused, and the chat had no send
        within its interval. Never waits, and reserves nothing: the chat's next message is
        not held back by it."""
        now = self.monotonic()
        if self.paused_for() > 0:
            return False
        if self._sent_in_chat.get(chat_id, -1e9) + self.chat_interval > now:
            return False
        if self.limiter.starts and self.limiter.starts[-1] > now - self.limiter.spacing:
            return False  # a message has a slot reserved from about now on: it comes first
        assert self._recent_sends.maxlen is not None
        recent = sum(1 for t in self._recent_sends if t > now - 1.0)
        if recent * 2 >= self._recent_sends.maxlen:
            return False
        self._recent_sends.append(now)
        return True

    def sent(self, chat_id: int) -> None:
        """A send to ``chat_id`` has left (or failed): its chat's interval counts from now as
        well. ``go`` spaces the moments sends are let go; a request that leaves late (a
        collection pause, a busy loop: up to a tenth of a second at 1,000 messages a second)
        would otherwise arrive less than the interval before the chat's next one."""
        now = self.monotonic()
        if self._sent_in_chat.get(chat_id, -1e9) < now:
            self._sent_in_chat[chat_id] = now

    def _forget_chats(self, now: float) -> None:
        self._sent_in_chat = {
            c: t for c, t in self._sent_in_chat.items() if t + self.chat_interval > now
        }
