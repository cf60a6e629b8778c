"""The notifier: delivers the outbox through a ``Sender``, rate-limited, one row at a time.

Each claimed notification is delivered in its own task, so one recipient's trouble (a slow
upload, a blocked user, a chat at its per-chat limit) never holds up the others. Delivery is
at-least-once: a notifier killed between Telegram's answer and recording it leaves the row
leased, and it is sent again after the lease expires.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool

from vidretry import backoff, outbox
from vidretry.clock import Clock
from vidretry.config import MessagesConfig, NotifierConfig
from vidretry.db import OUTBOX_CHANNEL, Connection
from vidretry.delivery import (
    InlineButton,
    MessageRefused,
    RateLimiter,
    Recipient,
    RecipientRefused,
    Sender,
    SendLater,
    callback_data,
    render,
)
from vidretry.errors import FatalError
from vidretry.loop import TRANSIENT_DB_ERRORS, ClaimLoop, through_outage
from vidretry.models import NotificationKind
from vidretry.outbox import Notification
from vidretry.worker import default_worker_name

log = logging.getLogger("vidretry.notifier")

SEND_TIMEOUT_SECONDS = 60.0


class Delivery(enum.StrEnum):
    SENT = "sent"
    LATER = "later"  # rescheduled: transient error, flood wait or busy chat
    DEAD = "dead"
    LOST = "lost"  # the lease was lost, or the outcome could not be recorded


@dataclass(frozen=True)
class PassResult:
    rescued: int
    claimed: int
    outcomes: Counter[Delivery]


class Notifier:
    """Constructing a notifier does no I/O; the pool and the sender are opened by the caller."""

    def __init__(
        self,
        url: str,
        pool: AsyncConnectionPool[Connection],
        config: NotifierConfig,
        messages: MessagesConfig,
        sender: Sender,
        *,
        clock: Clock,
        rng: random.Random,
        monotonic: Callable[[], float] = time.monotonic,
        name: str | None = None,
    ) -> None:
        self.url = url
        self.pool = pool
        self.config = config
        self.messages = messages
        self.sender = sender
        self.clock = clock
        self.rng = rng
        self.monotonic = monotonic
        self.name = name or default_worker_name()
        # What vidretry.loop.ClaimLoop reads.
        self.label = f"notifier {self.name}"
        # No more in flight than can be sent within a quarter of the lease at the rate limit.
        self.capacity = max(
            1, min(config.batch_size, int(config.rate_per_second * config.lease_seconds / 4))
        )
        self.poll_interval_seconds = config.poll_interval_seconds
        # Expired leases are looked for every quarter lease: a crash is rescued within about
        # 1.25 leases, and an idle process sends well under one query a second.
        self.maintenance_interval_seconds = max(
            config.poll_interval_seconds, min(config.lease_seconds / 4, 15.0)
        )
        # In-flight sends are quick; rows still waiting for a rate slot are released.
        self.shutdown_grace_seconds = SEND_TIMEOUT_SECONDS / 6
        self.limiter = RateLimiter(config.rate_per_second, config.per_chat_interval_seconds)
        self._recent_sends: deque[float] = deque(maxlen=max(1, int(config.rate_per_second)))
        self._window_lock = asyncio.Lock()

    # -- one pass -----------------------------------------------------------------------

    async def run_once(self) -> PassResult:
        """Rescue expired leases, claim one batch and deliver all of it."""
        rescued = await self.rescue()
        claimed = await self.claim(self.config.batch_size)
        outcomes = await asyncio.gather(*(self.deliver(note) for note in claimed))
        return PassResult(rescued, len(claimed), Counter(outcomes))

    async def rescue(self) -> int:
        async with self.pool.connection() as conn:
            rescued = await outbox.rescue_expired(
                conn, max_attempts=self.config.max_attempts, now=self.clock.now()
            )
        if rescued:
            log.warning("%d notification(s) of a lost notifier back in the outbox", rescued)
        return rescued

    # -- one notification ---------------------------------------------------------------

    async def deliver(self, note: Notification) -> Delivery:
        """Wait for a send slot, send, and record the outcome. Never sends on a lease that
        is more than half spent."""
        claimed_at = self.monotonic()
        wait = self.limiter.reserve(
            note.chat_id, claimed_at, max_wait=self.config.lease_seconds / 4
        )
        if wait is None:  # this chat is busy for a while: come back then, attempt refunded
            delay = self.limiter.chat_wait(note.chat_id, self.monotonic())
            return await self._reschedule(note, delay, None, refund=True)
        await asyncio.sleep(wait)
        paused = self.limiter.paused_for(self.monotonic())
        if paused > 0:  # a flood wait arrived while this one waited for its slot
            return await self._reschedule(note, paused, None, refund=True)
        if self.monotonic() - claimed_at > self.config.lease_seconds / 2:
            # Sending now could race a rescuer that already took the row over: hand it back.
            return await self._reschedule(note, 0, None, refund=True)
        await self._strict_window()
        try:
            async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
                message_id = await self._send(note)
        except RecipientRefused as exc:
            return await self._refused_recipient(note, exc.reason)
        except MessageRefused as exc:
            return await self._bury(note, exc.reason)
        except SendLater as exc:
            return await self._later(note, exc)
        except TimeoutError:
            return await self._later(note, SendLater(f"no answer in {SEND_TIMEOUT_SECONDS:g}s"))
        except FatalError:  # the bot itself is refused: give the row back, then stop
            await self._reschedule(note, 0, None, refund=True)
            raise
        return await self._record(
            Delivery.SENT,
            note,
            lambda conn: outbox.mark_sent(conn, note, message_id=message_id, now=self.clock.now()),
        )

    async def _strict_window(self) -> None:
        """The limiter spaces send slots evenly, but timers wake a little late and unevenly;
        this guard, on actual send times, keeps every one-second window within the limit.
        Its window is 2 % longer than a second, because the request leaves a few
        milliseconds after the guard lets it go (it costs 2 % of the rate at most)."""
        async with self._window_lock:
            if len(self._recent_sends) == self._recent_sends.maxlen:
                wait = self._recent_sends[0] + 1.02 - self.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
            self._recent_sends.append(self.monotonic())

    async def _send(self, note: Notification) -> int | None:
        to = Recipient(note.user_id, note.chat_id, note.access_hash)
        if note.kind == NotificationKind.READY:
            path = str(note.payload.get("result") or "")
            return await self.sender.send_video(
                to, path, render(self.messages.ready_caption, note.name)
            )
        button = InlineButton(
            self.messages.retry_button, callback_data(note.asset_id, note.generation)
        )
        return await self.sender.send_text(to, render(self.messages.failed, note.name), button)

    async def _later(self, note: Notification, exc: SendLater) -> Delivery:
        if exc.seconds is not None:  # flood wait: pause every send, and do not charge the row
            self.limiter.pause(self.monotonic() + exc.seconds)
            log.warning("flood wait: pausing all sends for %gs", exc.seconds)
            return await self._reschedule(note, exc.seconds, exc.reason, refund=True)
        if note.attempts >= self.config.max_attempts:
            return await self._bury(note, f"gave up after {note.attempts} attempts: {exc.reason}")
        delay = backoff.jittered(
            backoff.exponential(
                note.attempts, self.config.backoff_base_seconds, self.config.backoff_max_seconds
            ),
            self.rng,
        )
        log.info("notification %s: %s; again in %.1fs", note.id, exc.reason, delay)
        return await self._reschedule(note, delay, exc.reason, refund=False)

    async def _reschedule(
        self, note: Notification, delay: float, error: str | None, *, refund: bool
    ) -> Delivery:
        return await self._record(
            Delivery.LATER,
            note,
            lambda conn: outbox.reschedule(
                conn, note, delay_seconds=delay, error=error, refund=refund, now=self.clock.now()
            ),
        )

    async def _refused_recipient(self, note: Notification, reason: str) -> Delivery:
        async def record(conn: Connection) -> bool:
            async with conn.transaction():
                await outbox.mark_user_blocked(conn, note.user_id, reason, self.clock.now())
                return await outbox.bury(conn, note, error=reason, now=self.clock.now())

        log.info("notification %s: user %s unreachable: %s", note.id, note.user_id, reason)
        return await self._record(Delivery.DEAD, note, record)

    async def _bury(self, note: Notification, reason: str) -> Delivery:
        log.warning("notification %s: dead: %s", note.id, reason)
        return await self._record(
            Delivery.DEAD,
            note,
            lambda conn: outbox.bury(conn, note, error=reason, now=self.clock.now()),
        )

    async def _record(
        self,
        outcome: Delivery,
        note: Notification,
        change: Callable[[Connection], Awaitable[bool]],
    ) -> Delivery:
        try:
            changed = await through_outage(
                self.pool, change, within=self.config.lease_seconds, rng=self.rng
            )
        except TRANSIENT_DB_ERRORS as exc:
            log.error("notification %s: could not record %s (%s)", note.id, outcome, exc)
            return Delivery.LOST
        if not changed:
            log.warning("notification %s: lease lost before recording %s", note.id, outcome)
            return Delivery.LOST
        return outcome

    # -- the loop: vidretry.loop.ClaimLoop drives these ------------------------------------

    async def maintain(self) -> None:
        await self.rescue()

    async def claim(self, limit: int) -> list[Notification]:
        async with self.pool.connection() as conn:
            return await outbox.claim(
                conn,
                owner=self.name,
                limit=limit,
                lease_seconds=self.config.lease_seconds,
                now=self.clock.now(),
            )

    async def process(self, item: Notification) -> Delivery:
        return await self.deliver(item)

    async def drained(self) -> tuple[bool, float | None]:
        return True, None  # --drain delivers what is due, then exits

    async def release(self, item: Notification) -> None:
        async with self.pool.connection() as conn:
            await outbox.reschedule(
                conn, item, delay_seconds=0, error=None, refund=True, now=self.clock.now()
            )

    async def run(self, stop: asyncio.Event, *, drain: bool = False) -> None:
        """Deliver until ``stop`` is set (or, with ``drain``, until nothing is due). On stop,
        in-flight sends finish; rows still waiting for a slot are released."""
        loop = ClaimLoop(self, url=self.url, channel=OUTBOX_CHANNEL, rng=self.rng)
        await loop.run(stop, drain=drain)
