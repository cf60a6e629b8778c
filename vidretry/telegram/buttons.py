"""What happens when a user presses the retry or the cancel button: the answer, and what to
do next.

Transport-free: the Telegram adapter turns a CallbackQuery into an ``Incoming`` (its
``data``), calls ``ButtonService.press`` and carries out the ``PressReply`` (answer the query
first, then remove the button, then send the confirmation or the video).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from psycopg_pool import AsyncConnectionPool

from vidretry.clock import Clock
from vidretry.db.connection import Connection, fetch_one
from vidretry.db.redact import one_line
from vidretry.db.transient import TRANSIENT_DB_ERRORS
from vidretry.models import JobState
from vidretry.queue.cancel import CancelOutcome, withdraw
from vidretry.queue.retry import RetryOutcome
from vidretry.queue.retry import press as press_retry
from vidretry.telegram import outbox
from vidretry.telegram.callback_data import ButtonPress, parse_callback_data
from vidretry.telegram.transport import Incoming, VideoRef
from vidretry.texts import MessagesConfig, render

log = logging.getLogger("vidretry.buttons")


@dataclass(frozen=True)
class PressReply:
    answer: str  # the toast answering the callback query
    remove_button: bool = False  # delete the message (or drop its keyboard if too old)
    message: str | None = None  # an HTML message to send after answering
    video: VideoRef | None = None  # a video to send again, with ``message`` as its caption
    video_of: tuple[int, int] | None = None  # (asset, retry round): sent by reference if known


class ButtonService:
    def __init__(
        self,
        pool: AsyncConnectionPool[Connection],
        messages: MessagesConfig,
        *,
        clock: Clock,
    ) -> None:
        self.pool = pool
        self.messages = messages
        self.clock = clock

    async def press(self, press: Incoming) -> PressReply:
        """Retry (or cancel) the asset the button names, as the presser; never raises for
        bad input."""
        try:
            async with self.pool.connection() as conn:
                return await self._press(conn, press, self.clock.now())
        except TRANSIENT_DB_ERRORS as exc:
            log.error("button press by %s not handled: %s", press.user_id, one_line(exc))
            return PressReply(self.messages.in_language(press.lang_code).try_later)

    async def _press(self, conn: Connection, press: Incoming, now: datetime | None) -> PressReply:
        lang_code = await outbox.remember_user(
            conn, press.user_id, press.access_hash, now, lang_code=press.lang_code
        )
        m = self.messages.in_language(lang_code)
        button = parse_callback_data(press.data)
        if button is None:
            log.warning(
                "user %s pressed a button with unknown data %r", press.user_id, press.data[:64]
            )
            return PressReply(m.bad_button)
        if button.cancel:
            return await self._cancel(conn, m, press.user_id, button, now)
        # The daily retry quota and who may retry are the database's rules, the same for
        # every program's button (vidretry_retry_pressed); out of retries, the admins are told.
        result = await press_retry(
            conn,
            button.asset_id,
            press.user_id,
            retry_round=button.retry_round,
            reason="retry button",
            now=now,
        )
        if result.outcome is RetryOutcome.FORBIDDEN:
            return PressReply(m.not_allowed)
        if result.outcome is RetryOutcome.NOT_FOUND:
            return PressReply(m.not_found)
        asset = await fetch_one(conn, "asset_for_button", {"id": button.asset_id})
        name = asset["name"] if asset else ""
        if result.outcome is RetryOutcome.OUT_OF_RETRIES:
            return PressReply(m.retry_limit_short, message=render(m.retry_limit, name))
        if result.outcome is RetryOutcome.RETRIED:
            return PressReply(
                m.retried, remove_button=True, message=render(m.retried_message, name)
            )
        if result.state is JobState.AVAILABLE and asset and asset["result"]:
            return PressReply(
                m.already_available,
                remove_button=True,
                message=render(m.ready_caption, name),
                video=VideoRef.of(asset),
                video_of=(button.asset_id, asset["retry_round"]),
            )
        if result.outcome is RetryOutcome.STALE:
            return PressReply(m.stale, remove_button=True)
        return PressReply(m.already_queued)

    async def _cancel(
        self,
        conn: Connection,
        m: MessagesConfig,
        user_id: int,
        button: ButtonPress,
        now: datetime | None,
    ) -> PressReply:
        """The cancel button: the presser withdraws their own request (an admin's press is
        no different: their own). A stale button is answered and changes nothing."""
        result = await withdraw(
            conn, button.asset_id, user_id, retry_round=button.retry_round, now=now
        )
        if result.outcome is CancelOutcome.FORBIDDEN:
            return PressReply(m.not_allowed)
        if result.outcome is CancelOutcome.NOT_FOUND:
            return PressReply(m.not_found)
        if not result.changed:
            return PressReply(m.cancel_too_late, remove_button=True)
        asset = await fetch_one(conn, "asset_for_button", {"id": button.asset_id})
        name = asset["name"] if asset else ""
        return PressReply(
            m.cancelled, remove_button=True, message=render(m.cancelled_message, name)
        )
