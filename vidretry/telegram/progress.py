"""The acceptance message, kept current: a waiting user sees their place in line, then the
video's progress, in the message that accepted their request.

The leading notifier runs one ``ProgressEditor``. It looks at the acceptance messages every
``[notifier] progress_edit_seconds`` and whenever a worker records progress (NOTIFY
vidretry_progress), and edits one only when its text changed, at most once per that interval
in a chat, at the lowest priority: an edit goes only when the pacer has a spare slot
(``Pacer.spare``), so it never delays a failure message or a video; one that finds the rate
busy is dropped, and the next pass tries again with what is current then. A request made
through the command line has no acceptance message: nothing to edit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool

from vidretry.clock import Clock
from vidretry.db.connection import Connection, execute, fetch_all
from vidretry.db.listen import PROGRESS_CHANNEL, Listener
from vidretry.db.redact import one_line
from vidretry.db.transient import TRANSIENT_DB_ERRORS
from vidretry.models import JobState
from vidretry.queue import reports
from vidretry.telegram.callback_data import cancel_data
from vidretry.telegram.pacing import Pacer
from vidretry.telegram.transport import (
    DeliveryError,
    EditsMessages,
    InlineButton,
    MessageGone,
    Recipient,
    SendLater,
    TelegramDown,
)
from vidretry.texts import MessagesConfig, render

log = logging.getLogger("vidretry.progress")

# Acceptance messages looked at per pass (a pass every few seconds at most).
PASS_LIMIT = 50
# Passes woken by progress reports are at least this far apart.
MIN_PASS_GAP_SECONDS = 1.0
BAR_CELLS = 6


def progress_bar(fraction: float) -> str:
    """▰▰▰▱▱▱ for 0.5."""
    filled = round(min(1.0, max(0.0, fraction)) * BAR_CELLS)
    return "▰" * filled + "▱" * (BAR_CELLS - filled)


async def in_line(conn: Connection, m: MessagesConfig, asset_id: int) -> str:
    """ "Place in line: 3. Expected wait: about 5 min." for a pending asset; "" otherwise
    (and no wait when there is nothing to go by: no number rather than a wrong one)."""
    place = await reports.place_in_line(conn, asset_id)
    if place is None:
        return ""
    text = render(m.place_in_line, "", place=str(place.place))
    if place.minutes is not None:
        text += " " + render(m.expected_wait, "", minutes=str(place.minutes))
    return text


async def remember_acceptance(
    pool: AsyncConnectionPool[Connection],
    clock: Clock,
    user_id: int,
    asset_id: int,
    message_id: int,
    text: str,
) -> None:
    """Record the message (``message_id``, saying ``text``) that accepted ``user_id``'s
    request for ``asset_id``. Best effort: without it the message just stays as sent."""
    try:
        async with pool.connection() as conn:
            await execute(
                conn,
                "remember_acceptance",
                {
                    "asset_id": asset_id, "user_id": user_id, "message_id": message_id,
                    "text": text, "now": clock.now(),
                },
            )  # fmt: skip
    except TRANSIENT_DB_ERRORS as exc:
        log.warning("acceptance of %s not remembered: %s", user_id, one_line(exc))


@dataclass(frozen=True)
class Acceptance:
    """A waiting request's acceptance message, and what it should say now."""

    request_id: int
    to: Recipient
    message_id: int
    text: str
    buttons: tuple[InlineButton, ...]


class ProgressEditor:
    def __init__(
        self,
        pool: AsyncConnectionPool[Connection],
        messages: MessagesConfig,
        sender: EditsMessages,
        pacer: Pacer,
        *,
        interval_seconds: float,
        listener: Listener | None,
        clock: Clock,
        rng: random.Random,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pool = pool
        self.messages = messages
        self.sender = sender
        self.pacer = pacer
        self.interval_seconds = interval_seconds
        self.listener = listener
        self.clock = clock
        self.rng = rng
        self.monotonic = monotonic
        self.paused_until = 0.0  # Telegram asked the edits to wait (a flood wait)

    async def remember(self, user_id: int, asset_id: int, message_id: int, text: str) -> None:
        """The bot sent the acceptance of ``user_id``'s request for ``asset_id``: keep it
        current from now on."""
        await remember_acceptance(self.pool, self.clock, user_id, asset_id, message_id, text)

    async def run(self, stop: asyncio.Event) -> None:
        """Pass after pass until ``stop``: every interval, and soon after a progress report."""
        if self.interval_seconds <= 0:
            await stop.wait()
            return
        wake, listening = asyncio.Event(), asyncio.Event()
        listening.set()
        listener = (
            asyncio.create_task(self.listener.run(PROGRESS_CHANNEL, wake, listening, self.rng))
            if self.listener is not None
            else None
        )
        try:
            while not stop.is_set():
                wake.clear()
                started = self.monotonic()
                try:
                    await self.edit_once()
                except TRANSIENT_DB_ERRORS as exc:
                    log.warning("progress pass skipped: %s", one_line(exc))
                await _first(stop, wake, seconds=self.interval_seconds)
                gap = MIN_PASS_GAP_SECONDS - (self.monotonic() - started)
                if gap > 0 and not stop.is_set():
                    await _first(stop, asyncio.Event(), seconds=gap)
        finally:
            listening.clear()
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener

    async def edit_once(self) -> int:
        """One pass: edit the acceptance messages whose text changed; how many were."""
        if self.monotonic() < self.paused_until:
            return 0
        async with self.pool.connection() as conn:
            due = await self._due(conn)
        edited: list[Acceptance] = []
        current: list[int] = []
        gone: list[int] = []
        chats: set[int] = set()
        for acceptance, shown in due:
            if acceptance.to.chat_id in chats:
                continue  # one edit per chat per pass; the next pass takes the next one
            if acceptance.text == shown:
                current.append(acceptance.request_id)
                continue
            if not self.pacer.spare(acceptance.to.chat_id):
                continue  # dropped: a message needs the rate, or this chat had one just now
            chats.add(acceptance.to.chat_id)
            try:
                await self.sender.edit_text(
                    acceptance.to, acceptance.message_id, acceptance.text, acceptance.buttons
                )
            except MessageGone:
                gone.append(acceptance.request_id)
            except (SendLater, TelegramDown) as exc:
                wait = exc.seconds or self.interval_seconds
                self.paused_until = self.monotonic() + wait
                log.info("progress edits wait %.0fs: %s", wait, exc.reason)
                break
            except DeliveryError as exc:
                log.info("acceptance %s not edited: %s", acceptance.message_id, exc.reason)
                current.append(acceptance.request_id)
            else:
                edited.append(acceptance)
        if edited or current or gone:
            await self._record(edited, current, gone)
        return len(edited)

    async def _due(self, conn: Connection) -> list[tuple[Acceptance, str | None]]:
        rows = await fetch_all(
            conn,
            "progress_to_show",
            {"seconds": self.interval_seconds, "limit": PASS_LIMIT, "now": self.clock.now()},
        )
        due = []
        places: dict[tuple[int, str], str] = {}  # (asset, language): one query per asset
        for row in rows:
            m = self.messages.in_language(row["lang_code"])
            if row["state"] == JobState.RUNNING:
                if row["progress"] is None:
                    text = render(m.progress_started, row["name"])
                else:
                    text = render(
                        m.progress,
                        row["name"],
                        percent=str(round(row["progress"] * 100)),
                        bar=progress_bar(row["progress"]),
                    )
            else:
                accepted = render(m.requested, row["name"])
                key = (row["asset_id"], row["lang_code"] or "")
                if key not in places:
                    places[key] = await in_line(conn, m, row["asset_id"])
                place = places[key]
                text = f"{accepted}\n{place}" if place else accepted
            button = InlineButton(m.cancel_button, cancel_data(row["asset_id"], row["retry_round"]))
            to = Recipient(row["user_id"], row["chat_id"], row["access_hash"])
            acceptance = Acceptance(row["id"], to, row["accept_message_id"], text, (button,))
            due.append((acceptance, row["shown"]))
        return due

    async def _record(
        self, edited: Sequence[Acceptance], current: Sequence[int], gone: Sequence[int]
    ) -> None:
        now = self.clock.now()
        try:
            async with self.pool.connection() as conn, conn.transaction():
                if edited:
                    await execute(
                        conn,
                        "progress_shown",
                        {
                            "ids": [a.request_id for a in edited],
                            "texts": [a.text for a in edited],
                            "now": now,
                        },
                    )
                if current:
                    await execute(conn, "progress_checked", {"ids": list(current), "now": now})
                if gone:
                    await execute(conn, "forget_acceptances", {"ids": list(gone)})
        except TRANSIENT_DB_ERRORS as exc:  # at worst an edit is repeated: same text
            log.warning("progress pass not recorded: %s", one_line(exc))


async def _first(stop: asyncio.Event, wake: asyncio.Event, *, seconds: float) -> None:
    """Wait until ``stop`` or ``wake`` is set, or ``seconds`` pass."""
    waits = [asyncio.create_task(stop.wait()), asyncio.create_task(wake.wait())]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
