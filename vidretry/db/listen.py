"""LISTEN/NOTIFY wake-ups: a claim loop sleeps until a notification says there is work.

``Wakeups`` is the one thing a loop needs to be woken: where to LISTEN and on what. It checks
at start that notifications arrive at all (through a transaction pooler they do not), and
reconnects with backoff when its connection breaks; the loop polls meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from vidretry import backoff
from vidretry.db.deadlink import ANSWER_SECONDS, WatchedConnection, dead_link_params
from vidretry.db.redact import one_line, redact_url

log = logging.getLogger("vidretry.listen")

JOBS_CHANNEL = "vidretry_jobs"
OUTBOX_CHANNEL = "vidretry_outbox"
PROGRESS_CHANNEL = "vidretry_progress"  # a worker recorded progress: acceptances to edit
LEADERSHIP_CHANNEL = "vidretry_leadership"  # a leader resigned (schema 20's trigger)


@dataclass
class Listener:
    """What a claim loop needs to be woken: LISTEN on a direct connection to ``url``
    (``[database] listen_url``, else the database url). ``ready`` is set while a LISTEN
    that was seen to receive notifications is on. ``answer_seconds``: how long a
    statement on it may go unanswered before the connection counts as dead."""

    url: str
    answer_seconds: float = ANSWER_SECONDS
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(
        self, channel: str, wake: asyncio.Event, listening: asyncio.Event, rng: random.Random
    ) -> None:
        await listen(
            self.url, channel, wake, listening, rng,
            answer_seconds=self.answer_seconds, ready=self.ready,
        )  # fmt: skip


async def listen(
    url: str,
    channel: str,
    wake: asyncio.Event,
    listening: asyncio.Event,
    rng: random.Random,
    *,
    answer_seconds: float = ANSWER_SECONDS,
    ready: asyncio.Event | None = None,
) -> None:
    """LISTEN on ``channel`` and set ``wake`` on every notification, until ``listening`` is
    cleared (checked every second, so the connection is closed cleanly, never mid-query).

    The first time it listens it checks that notifications arrive at all: a transaction
    pooler (PgBouncer in transaction mode) accepts LISTEN but hands the server connection to
    other clients, so nothing would ever arrive. Then it says so once and returns: the
    process wakes by polling alone. ``[database] listen_url`` gives LISTEN a direct
    connection instead.

    An idle LISTEN connection whose link died silently would wait forever, so every three
    ``answer_seconds`` (30 s by default: the loop polls meanwhile anyway) it runs
    ``SELECT 1``: no answer within ``answer_seconds``, and it reconnects."""
    delay = ReconnectDelay(rng)
    checked = False
    while listening.is_set():
        try:
            conn = await WatchedConnection.connect(
                url, autocommit=True, connect_timeout=5, **dead_link_params(url, answer_seconds)
            )
            conn.answer_seconds = answer_seconds
            async with conn:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                delay.reset()
                wake.set()  # whatever was sent while we were away is in the table: look
                if not checked:
                    if not await _notifications_arrive(conn, url, channel, wake):
                        log.warning(
                            "LISTEN on %s receives no notifications (a transaction pooler such "
                            "as PgBouncer?): waking by polling alone; set [database] "
                            "listen_url to a direct connection for instant wake-ups",
                            redact_url(url),
                        )
                        return
                    checked = True
                if ready is not None:
                    ready.set()
                ping_at = time.monotonic() + 3 * answer_seconds
                while listening.is_set():
                    async for _ in conn.notifies(timeout=1.0):
                        wake.set()
                    if time.monotonic() >= ping_at:
                        await conn.execute("SELECT 1")
                        ping_at = time.monotonic() + 3 * answer_seconds
        except psycopg.Error as exc:
            if ready is not None:
                ready.clear()
            seconds = delay.next()
            log.warning(
                "listener on %s down (%s); polling until it is back", channel, one_line(exc)
            )
            await asyncio.sleep(seconds)


LISTEN_CHECK_SECONDS = 5.0


async def _notifications_arrive(
    conn: psycopg.AsyncConnection[Any], url: str, channel: str, wake: asyncio.Event
) -> bool:
    """Send a notification from a second connection and wait for it on ``conn``."""
    token = f"vidretry-listen-check:{secrets.token_hex(8)}"
    async with await psycopg.AsyncConnection.connect(
        url, autocommit=True, connect_timeout=5, prepare_threshold=None
    ) as other:
        await other.execute("SELECT pg_notify(%s, %s)", (channel, token))
    deadline = time.monotonic() + LISTEN_CHECK_SECONDS
    while (left := deadline - time.monotonic()) > 0:
        async for notify in conn.notifies(timeout=left):
            wake.set()
            if notify.payload == token:
                return True
    return False


class ReconnectDelay:
    """Reconnect delays: 0.5 s doubling to 30 s, jittered."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.attempt = 0

    def next(self) -> float:
        self.attempt += 1
        return backoff.jittered(backoff.exponential(self.attempt, 0.5, 30.0), self.rng)

    def reset(self) -> None:
        self.attempt = 0
