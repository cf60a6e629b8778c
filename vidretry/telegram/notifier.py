"""The notifier: delivers the outbox through a ``Sender``, rate-limited, one row at a time.

Each claimed notification is delivered in its own task, so one recipient's trouble (a slow
upload, a blocked user, a chat at its per-chat limit) never holds up the others. Failures
that mean Telegram is failing everybody (lost connection, timeouts, server errors) pause all
sends and probe with one message at growing intervals; they cost no row anything. A row is
dead only for reasons of its own, or when it keeps failing past the time budget. Delivery is
at-least-once: a notifier killed between Telegram's answer and recording it leaves the row
leased, and it is sent again after the lease expires (or the next leader takes it over).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool

from vidretry import backoff
from vidretry.clock import Clock
from vidretry.config import NotifierConfig
from vidretry.db.connection import Connection, fetch_one
from vidretry.db.listen import OUTBOX_CHANNEL, Listener
from vidretry.db.redact import one_line
from vidretry.db.transient import TRANSIENT_DB_ERRORS, through_outage
from vidretry.errors import FatalError, VidretryError
from vidretry.models import NotificationKind, NotificationState
from vidretry.names import default_process_name
from vidretry.queue import leases, metrics
from vidretry.queue.claim_loop import ClaimLoop
from vidretry.queue.groupcommit import GroupCommit
from vidretry.queue.leases import LeaseKeeper
from vidretry.queue.maintenance.rescue_notifications import OutboxRescuer
from vidretry.results.keeping import Results
from vidretry.telegram import outbox
from vidretry.telegram.notifications import deliver_to
from vidretry.telegram.outage import Outage
from vidretry.telegram.outbox import Notification
from vidretry.telegram.pacing import Pacer
from vidretry.telegram.transport import (
    GuardsDepartures,
    MessageRefused,
    RecipientRefused,
    Sender,
    SendLater,
    SharesVideos,
    StoreDown,
    TelegramDown,
    Withdrawn,
    depart,
    departing,
)
from vidretry.telegram.videos import VideoFiles
from vidretry.texts import MessagesConfig

log = logging.getLogger("vidretry.notifier")


class Delivery(enum.StrEnum):
    SENT = "sent"
    LATER = "later"  # rescheduled: a transient error, a flood wait, an outage, a busy chat
    DEAD = "dead"
    SUPERSEDED = "superseded"  # a failure message whose asset was retried meanwhile
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
        pool: AsyncConnectionPool[Connection],
        config: NotifierConfig,
        messages: MessagesConfig,
        sender: Sender,
        *,
        listener: Listener | None,
        clock: Clock,
        rng: random.Random,
        pacer: Pacer | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        name: str | None = None,
        admins: Sequence[int] = (),
        videos: VideoFiles | None = None,
        seed_buttons: bool = False,
        results: Results | None = None,
    ) -> None:
        self.listener = listener  # woken by NOTIFY; None: polls alone
        # One upload per video, when the transport can send by reference (Telegram can).
        self.videos = videos or (
            VideoFiles(pool, clock) if isinstance(sender, SharesVideos) else None
        )
        self.admins = tuple(admins)  # told when a notification is set aside
        # Retry buttons with the seed's data, retry_video:<id> (a send-only notifier's: the
        # host bot's own handler answers them).
        self.seed_buttons = seed_buttons
        # [storage] delete_after_delivery: a video's object goes once every waiting user has
        # it (None: objects stay).
        self.delete_after_delivery = results
        self.pool = pool
        self.config = config
        self.messages = messages
        self.sender = sender
        self.clock = clock
        self.rng = rng
        self.monotonic = monotonic
        self.name = name or default_process_name()
        # Rows of a notifier that died come back, every maintenance interval (and all of the
        # others' when this one is elected: vidretry.app.daemons).
        self.rescuer = OutboxRescuer(
            pool,
            name=self.name,
            give_up_after_seconds=config.give_up_after_seconds,
            admins=self.admins,
            clock=clock,
        )
        # What vidretry.queue.claim_loop.ClaimLoop reads.
        self.label = f"notifier {self.name}"
        # In flight: a batch, or a fifth of a second's sends when the rate is higher (a paid
        # broadcast at 1,000/s kept 50 busy and reached 930/s; 200 reach the limit), and no
        # more than can be sent within a quarter of the lease at the rate limit.
        self.capacity = max(
            1,
            min(
                max(config.batch_size, int(config.rate_per_second / 5)),
                int(config.rate_per_second * config.lease_seconds / 4),
            ),
        )
        self.poll_interval_seconds = config.poll_interval_seconds
        # Expired leases are looked for every quarter lease: a crash is rescued within about
        # 1.25 leases, and an idle process sends well under one query a second.
        self.maintenance_interval_seconds = max(
            config.poll_interval_seconds, min(config.lease_seconds / 4, 15.0)
        )
        # Text sends are quick; a video upload still going after this is rescued later.
        self.shutdown_grace_seconds = 10.0
        self.pacer = pacer or Pacer(
            config.rate_per_second, config.per_chat_interval_seconds, monotonic=monotonic
        )
        # The Telegram adapter's messages pass the pacer's last guard as they leave (after
        # an upload); any other transport's, just before the notifier hands them over.
        self._departures_guarded = isinstance(
            sender, GuardsDepartures
        ) and sender.guards_departures(self.pacer)
        self.outage = Outage(rng, monotonic, probe_max_seconds=config.outage_probe_max_seconds)
        # Sends are recorded as a group commit: at a paid broadcast's 1,000 messages a
        # second, one statement per message was a fifth of the notifier's time.
        self.sent: GroupCommit[tuple[Notification, int | None]] = GroupCommit(
            self._record_sent, key=lambda sent: sent[0].id
        )
        # And so is the mark a row gets just before its send begins: a notifier that dies
        # while a row is marked is charged a crash on it (MAX_CRASHES of them set it aside:
        # vidretry.queue.maintenance.rescue_notifications).
        self.started: GroupCommit[Notification] = GroupCommit(
            self._record_started, key=lambda note: note.id
        )
        self.leases: LeaseKeeper[Notification] = LeaseKeeper(
            pool,
            leases.NOTIFICATIONS,
            heartbeat_seconds=config.heartbeat_seconds,
            lease_seconds=config.lease_seconds,
            clock=clock,
            monotonic=monotonic,
        )

    # -- one pass -----------------------------------------------------------------------

    async def run_once(self) -> PassResult:
        """Rescue expired leases, claim one batch and deliver all of it."""
        rescued = await self.rescuer.run_once()
        claimed = await self.claim(self.config.batch_size)
        try:
            outcomes = await asyncio.gather(*(self.deliver(note) for note in claimed))
        finally:
            await self.leases.stop()
        return PassResult(rescued, len(claimed), Counter(outcomes))

    # -- one notification ---------------------------------------------------------------

    async def deliver(self, note: Notification) -> Delivery:
        """Wait for a send slot, send, and record the outcome, under a heartbeat that keeps
        the row's lease alive however long the upload takes. A send whose lease is lost is
        cancelled and not recorded: the notifier that took the row over sends it."""
        held = self.leases.hold(note)
        try:
            try:
                return await self._deliver(note)
            finally:
                self.leases.release(held)
                self.outage.settled(note.id)
        except asyncio.CancelledError:
            if held.cancelled_for_its_lease():
                log.warning("notification %s: lease lost mid-send; not recorded", note.id)
                return Delivery.LOST
            raise

    async def _deliver(self, note: Notification) -> Delivery:
        if self.videos is None or note.kind != NotificationKind.READY or note.asset_id is None:
            return await self._deliver_now(note)
        # One upload per video: wait, before taking a send slot, while another delivery
        # uploads it; then send by its reference, or upload in its place.
        async with self.videos.in_turn((note.asset_id, note.retry_round)):
            return await self._deliver_now(note)

    async def _deliver_now(self, note: Notification) -> Delivery:
        wait = self.pacer.reserve(note.chat_id, max_wait=self.config.lease_seconds / 4)
        if wait is None:  # this chat is busy for a while: come back then, attempt refunded
            return await self._reschedule(note, self.pacer.chat_wait(note.chat_id), None)
        await asyncio.sleep(wait)
        if self.outage.down and note.id != self.outage.probe_id:
            return await self._reschedule(note, 0, None)  # Telegram failed meanwhile
        paused = self.pacer.paused_for()
        if paused > 0:  # a flood wait arrived while this one waited for its slot
            return await self._reschedule(note, paused, None)
        try:
            try:
                async with asyncio.timeout(self.config.send_timeout_seconds):
                    with departing(lambda: self._begin(note)):
                        if not self._departures_guarded:  # else as its first request leaves
                            await self.pacer.ready(note.chat_id)
                            await depart()
                            await self.pacer.go(note.chat_id)
                        message_id = await self._send(note)
            finally:
                self.pacer.sent(note.chat_id)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is None or task.cancelling():  # this send's own cancellation
                raise
            # Not this task's: Telethon cancels the requests still awaiting their answers
            # when the bot logs out (a leader whose term ended). The notifier lives on: the
            # row goes back unmarked, not left for the next leader to charge a crash on.
            return await self._reschedule(note, 0, "the request was dropped: the bot logged out")
        except Withdrawn as exc:  # nothing was sent; its lease runs out, and no crash is counted
            log.warning("notification %s: %s; not sent", note.id, exc)
            return Delivery.LOST
        except TelegramDown as exc:
            return await self._telegram_failed(
                note, exc.reason, connection_lost=exc.connection_lost
            )
        except TimeoutError:
            timeout = self.config.send_timeout_seconds
            return await self._telegram_failed(note, f"no answer in {timeout:g}s")
        except RecipientRefused as exc:
            self.outage.answered()
            return await self._refused_recipient(note, exc.reason)
        except MessageRefused as exc:
            self.outage.answered()
            return await self._bury(note, exc.reason)
        except SendLater as exc:
            return await self._later(note, exc)
        except StoreDown as exc:  # not Telegram's trouble: the outage tracker is not told
            delay = backoff.jittered(self.config.outage_probe_max_seconds, self.rng)
            log.warning("notification %s: %s; again in %.1fs", note.id, exc.reason, delay)
            return await self._reschedule(note, delay, exc.reason)
        except FatalError:  # the bot itself is refused: give the row back, then stop
            await self._reschedule(note, 0, None)
            raise
        self.outage.answered()
        metrics.SENT.labels(note.kind).inc()
        outcome = await self._recorded(note, self._sent(note, message_id))
        if outcome is Delivery.SENT and note.kind == NotificationKind.READY:
            await self._forget_delivered(note)
        return outcome

    async def _begin(self, note: Notification) -> None:
        """Mark ``note`` as being sent, as its message is about to leave: a notifier that
        dies from here on is charged a crash on it (``Withdrawn``: it may not leave)."""
        try:
            marked = await self.started.add(note)
        except TRANSIENT_DB_ERRORS as exc:
            raise Withdrawn(f"could not mark it as being sent ({exc})") from None
        if not marked:
            raise Withdrawn("lease lost before its send")

    async def _forget_delivered(self, note: Notification) -> None:
        """With ``[storage] delete_after_delivery``: the last waiting user has the video and
        Telegram holds it, so its object goes (best effort: one left over is only space)."""
        results = self.delete_after_delivery
        if results is None or note.asset_id is None:
            return
        uri = str(note.payload.get("result") or "")
        if not results.kept_by_vidretry(uri):  # a bare path of before schema 19: maybe yours
            return
        params = {
            "id": note.asset_id, "retry_round": note.retry_round, "result": uri,
            "now": self.clock.now(),
        }  # fmt: skip
        try:
            async with self.pool.connection() as conn:
                row = await fetch_one(conn, "delivered_video_to_delete", params)
            if row is not None:
                await results.delete([row["result"]])
                log.info("video %s/%s delivered to all: %s deleted", note.asset_id,
                         note.retry_round, row["result"])  # fmt: skip
        except (*TRANSIENT_DB_ERRORS, VidretryError) as exc:
            log.warning("video %s/%s: not deleted after delivery: %s", note.asset_id,
                        note.retry_round, one_line(exc))  # fmt: skip

    async def _record_started(self, notes: list[Notification]) -> set[int]:
        """Mark a batch as being sent, through a database outage of up to a lease."""

        async def write(conn: Connection) -> set[int]:
            return await outbox.mark_started(conn, notes, now=self.clock.now())

        return await through_outage(
            self.pool, write, within=self.config.lease_seconds, rng=self.rng
        )

    async def _sent(self, note: Notification, message_id: int | None) -> Delivery | None:
        return Delivery.SENT if await self.sent.add((note, message_id)) else None

    async def _record_sent(self, sent: list[tuple[Notification, int | None]]) -> set[int]:
        """Record a batch of sends, through a database outage of up to a lease."""

        async def write(conn: Connection) -> set[int]:
            return await outbox.mark_sent_many(conn, sent, now=self.clock.now())

        return await through_outage(
            self.pool, write, within=self.config.lease_seconds, rng=self.rng
        )

    async def _telegram_failed(
        self, note: Notification, reason: str, *, connection_lost: bool = False
    ) -> Delivery:
        """Telegram's trouble, not the message's: never charged. In an outage the row waits
        for the probe to succeed; a lone failure is tried again shortly."""
        self.outage.failed(note.id, note.chat_id, reason, connection_lost=connection_lost)
        if self.outage.down:
            return await self._reschedule(note, 0, reason)
        delay = backoff.jittered(self.config.backoff_base_seconds, self.rng)
        log.info("notification %s: %s; again in %.1fs", note.id, reason, delay)
        return await self._reschedule(note, delay, reason)

    async def _later(self, note: Notification, exc: SendLater) -> Delivery:
        if exc.seconds is not None:  # flood wait: pause every send, and do not charge the row
            self.outage.answered()
            self.pacer.pause(exc.seconds)
            metrics.FLOOD_WAIT.inc(exc.seconds)
            log.warning("flood wait: pausing all sends for %gs", exc.seconds)
            return await self._reschedule(note, exc.seconds, exc.reason)
        self.outage.failed(note.id, note.chat_id, exc.reason)
        if self.outage.down:
            return await self._reschedule(note, 0, exc.reason)
        delay = backoff.jittered(
            backoff.exponential(
                note.attempts, self.config.backoff_base_seconds, self.config.backoff_max_seconds
            ),
            self.rng,
        )
        log.info("notification %s: %s; again in %.1fs", note.id, exc.reason, delay)
        return await self._reschedule(note, delay, exc.reason, refund=False)

    async def _reschedule(
        self, note: Notification, delay: float, error: str | None, *, refund: bool = True
    ) -> Delivery:
        """Back to the outbox. Refunded unless the row failed for a reason of its own; a row
        that did, and is older than the time budget, is dead instead."""

        async def change(conn: Connection) -> Delivery | None:
            state = await outbox.reschedule(
                conn,
                note,
                delay_seconds=delay,
                error=error,
                refund=refund,
                give_up_after_seconds=self.config.give_up_after_seconds,
                now=self.clock.now(),
            )
            return None if state is None else _DELIVERY_OF[state]

        outcome = await self._record_state(note, change)
        if outcome is Delivery.DEAD:
            metrics.DEAD.labels(note.kind, "gave_up").inc()
            log.warning("notification %s: dead: gave up: %s", note.id, error)
        return outcome

    async def _refused_recipient(self, note: Notification, reason: str) -> Delivery:
        async def record(conn: Connection) -> bool:
            async with conn.transaction():
                await outbox.mark_user_blocked(conn, note.user_id, reason, self.clock.now())
                return await outbox.bury(conn, note, error=reason, now=self.clock.now())

        log.info("notification %s: user %s unreachable: %s", note.id, note.user_id, reason)
        metrics.DEAD.labels(note.kind, "recipient").inc()
        return await self._record(Delivery.DEAD, note, record)

    async def _bury(self, note: Notification, reason: str) -> Delivery:
        log.warning("notification %s: dead: %s", note.id, reason)
        metrics.DEAD.labels(note.kind, "payload").inc()
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
        async def recorded(conn: Connection) -> Delivery | None:
            return outcome if await change(conn) else None

        return await self._record_state(note, recorded)

    async def _record_state(
        self, note: Notification, change: Callable[[Connection], Awaitable[Delivery | None]]
    ) -> Delivery:
        """Run a fenced statement through a database outage; None from it: the lease was lost."""
        return await self._recorded(
            note, through_outage(self.pool, change, within=self.config.lease_seconds, rng=self.rng)
        )

    async def _recorded(
        self, note: Notification, recording: Awaitable[Delivery | None]
    ) -> Delivery:
        """The outcome ``recording`` wrote, or LOST: the database stayed down, or (None) the
        lease was lost meanwhile."""
        try:
            outcome = await recording
        except TRANSIENT_DB_ERRORS as exc:
            log.error("notification %s: could not record the outcome (%s)", note.id, exc)
            return Delivery.LOST
        if outcome is None:
            log.warning("notification %s: lease lost before recording the outcome", note.id)
            return Delivery.LOST
        return outcome

    async def _send(self, note: Notification) -> int | None:
        return await deliver_to(
            self.sender, self.messages, note, videos=self.videos, seed_buttons=self.seed_buttons
        )

    # -- the loop: vidretry.queue.claim_loop.ClaimLoop drives these ----------------------------

    async def maintain(self) -> None:
        await self.rescuer.run_once()

    async def claim(self, limit: int) -> list[Notification]:
        """Due rows, up to ``limit``; while Telegram is down, only the probe when it is due."""
        limit = self.outage.claim_limit(limit)
        if limit == 0:
            return []
        async with self.pool.connection() as conn:
            claimed = await outbox.claim(
                conn,
                owner=self.name,
                limit=limit,
                lease_seconds=self.config.lease_seconds,
                now=self.clock.now(),
            )
        if claimed:
            self.outage.probing(claimed[0].id)
        return claimed

    async def process(self, item: Notification) -> Delivery:
        return await self.deliver(item)

    async def drained(self) -> tuple[bool, float | None]:
        return True, None  # --drain delivers what is due, then exits

    async def release(self, item: Notification) -> None:
        async with self.pool.connection() as conn:
            await outbox.reschedule(
                conn,
                item,
                delay_seconds=0,
                error=None,
                refund=True,
                give_up_after_seconds=self.config.give_up_after_seconds,
                now=self.clock.now(),
            )

    async def run(
        self,
        stop: asyncio.Event,
        *,
        drain: bool = False,
        hurry: asyncio.Event | None = None,
    ) -> None:
        """Deliver until ``stop`` is set (or, with ``drain``, until nothing is due). On stop,
        in-flight sends get a short grace; rows still waiting for a slot are released. With
        ``hurry`` set as well (leadership lost), nothing more is sent: all are released."""
        loop = ClaimLoop(self, listener=self.listener, channel=OUTBOX_CHANNEL, rng=self.rng)
        try:
            await loop.run(stop, drain=drain, hurry=hurry)
        finally:
            await self.leases.stop()


_DELIVERY_OF = {
    NotificationState.PENDING: Delivery.LATER,
    NotificationState.DEAD: Delivery.DEAD,
    NotificationState.SUPERSEDED: Delivery.SUPERSEDED,
}
