"""Whether Telegram is failing everybody, and when to probe it with one message (``Outage``).

While it lasts the notifier claims nothing but the probe, and the rows that were in flight
go back to the outbox uncharged; ``recovery_bound_seconds`` is how soon after Telegram's
recovery what waited is out.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

from vidretry import backoff
from vidretry.config import NotifierConfig
from vidretry.queue import metrics

log = logging.getLogger("vidretry.notifier")

# While Telegram fails everybody, one message probes it: after 1 s, 2 s, 4 s, ... at most
# [notifier] outage_probe_max_seconds apart (jittered), so what waited goes out within about
# that long of Telegram's recovery. A lost connection is such an outage at once; server
# errors, timeouts and other transient failures are when they hit OUTAGE_AFTER_CHATS
# different chats in a row with no answer between them (one alone may be a passing hiccup).
PROBE_BASE_SECONDS = 1.0
OUTAGE_AFTER_CHATS = 3


def recovery_bound_seconds(config: NotifierConfig) -> float:
    """How soon after Telegram recovers from an outage of any length what waited is out.

    The next probe (or reconnect try) is at most ``outage_probe_max_seconds`` away, jittered
    by up to a quarter; allow twice that (a probe under way when Telegram recovered may
    still fail), then a poll interval for the rows to be claimed. With the defaults: 27 s.
    """
    return 2 * 1.25 * config.outage_probe_max_seconds + config.poll_interval_seconds


class Outage:
    """Whether Telegram is failing everybody, and when to probe it with one message.

    Ridden out, not counted: while it lasts no row is claimed but the probe, and the rows
    that were in flight go back to the outbox without being charged. Times are monotonic.
    """

    def __init__(
        self, rng: random.Random, monotonic: Callable[[], float], *, probe_max_seconds: float
    ) -> None:
        self.rng = rng
        self.monotonic = monotonic
        self.probe_max_seconds = probe_max_seconds
        self.since: float | None = None
        self.probes = 0
        self.next_probe_at = 0.0
        self.probe_id: int | None = None  # the notification out as the probe
        self._failing_chats: set[int] = set()

    @property
    def down(self) -> bool:
        return self.since is not None

    def claim_limit(self, limit: int) -> int:
        """How many rows to claim now: all of ``limit`` normally; while down, one when a
        probe is due and none is out, else none."""
        if self.since is None:
            return limit
        if self.probe_id is not None or self.monotonic() < self.next_probe_at:
            return 0
        return 1

    def probing(self, note_id: int) -> None:
        if self.since is not None:
            self.probe_id = note_id

    def failed(
        self, note_id: int, chat_id: int, reason: str, *, connection_lost: bool = False
    ) -> None:
        """A send failed without an answer from Telegram (or with a transient error)."""
        now = self.monotonic()
        if self.since is not None:
            if note_id != self.probe_id:
                return  # one more of the sends that were in flight when it began
            log.info("probe failed after %.0fs of outage (%s)", now - self.since, reason)
        else:
            self._failing_chats.add(chat_id)
            if not connection_lost and len(self._failing_chats) < OUTAGE_AFTER_CHATS:
                return
            self.since = now
            metrics.TELEGRAM_OUTAGE.set(1)
            log.warning("Telegram is failing (%s): sends paused, probing with one message", reason)
        self.probe_id = None
        delay = backoff.exponential(
            self.probes + 1, min(PROBE_BASE_SECONDS, self.probe_max_seconds), self.probe_max_seconds
        )
        self.probes += 1
        self.next_probe_at = now + backoff.jittered(delay, self.rng)

    def settled(self, note_id: int) -> None:
        """A delivery ended. If it was the probe and reached no verdict (its chat was busy,
        it was cancelled), the next probe may go as soon as it is due."""
        if note_id == self.probe_id:
            self.probe_id = None

    def answered(self) -> None:
        """Telegram answered a send (accepted, refused, or asked to wait): it is up."""
        self._failing_chats.clear()
        if self.since is not None:
            log.warning(
                "Telegram answers again after %.0fs: sending what waited",
                self.monotonic() - self.since,
            )
        self.since, self.probe_id, self.probes = None, None, 0
        metrics.TELEGRAM_OUTAGE.set(0)

    def probe_now(self) -> None:
        """The connection is back: do not wait out the probe interval."""
        self.next_probe_at = 0.0
