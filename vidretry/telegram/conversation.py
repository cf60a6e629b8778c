"""What the bot answers when someone writes to it: the front door of vidretry.

Transport-free, like ``ButtonService``: the Telegram adapter turns a private message into an
``Incoming`` and sends each ``Outgoing`` of the answer, paced like every other message; the
demo does the same with the console. Groups and channels never get here.

A user asks for a video (``/video <name>``, or plain text when ``[telegram]
plain_text_requests`` is on) through the same ``enqueue`` service as the command line, follows
their requests with ``/my``, takes one back with ``/cancel`` (or the acceptance's button), and
meets the limits that protect the generator in friendly words. Admins also get ``/stats``,
``/retry <asset>``, ``/cancel <asset>`` and ``/failed``.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from typing import Any

from psycopg_pool import AsyncConnectionPool

from vidretry.clock import Clock
from vidretry.config import TelegramConfig
from vidretry.db.connection import Connection, fetch_all, fetch_one
from vidretry.db.redact import one_line
from vidretry.db.transient import TRANSIENT_DB_ERRORS
from vidretry.errors import ConfigError
from vidretry.models import JobState, RequestState, parse_asset_id
from vidretry.queue import reports
from vidretry.queue.cancel import cancel, describe_cancel, open_requests
from vidretry.queue.enqueue import enqueue, normalise_name
from vidretry.queue.retry import Actor, describe_retry, retry
from vidretry.telegram import outbox
from vidretry.telegram.callback_data import cancel_data, retry_data
from vidretry.telegram.limits import RequestRate
from vidretry.telegram.plugins import Priorities, PriorityRequest
from vidretry.telegram.progress import in_line
from vidretry.telegram.transport import Incoming, InlineButton, VideoRef
from vidretry.texts import MessagesConfig, render

log = logging.getLogger("vidretry.conversation")

# How many requests /my and failed assets /failed list.
LIST_LIMIT = 10
# Names and errors in lists are cut to this many characters (a message holds 4,096).
SHORT_NAME = 60
SHORT_ERROR = 200


@dataclass(frozen=True)
class Outgoing:
    """One message of an answer: HTML text with buttons (one per row), or a video with the
    text as its caption."""

    text: str
    buttons: tuple[InlineButton, ...] = ()
    video: VideoRef | None = None
    video_of: tuple[int, int] | None = None  # (asset, retry round): sent by reference if known
    # The acceptance of a request for this asset: once sent, its message id is recorded, and
    # the notifier edits it into the request's place in line and progress.
    accepts: int | None = None


# The commands the bot shows in Telegram's menu, with the [messages] key of each description.
USER_COMMANDS = (
    ("video", "command_video"),
    ("my", "command_my"),
    ("cancel", "command_cancel"),
    ("help", "command_help"),
)


class Conversation:
    def __init__(
        self,
        pool: AsyncConnectionPool[Connection],
        messages: MessagesConfig,
        settings: TelegramConfig,
        *,
        clock: Clock,
        rate: RequestRate,
        priorities: Priorities | None = None,
    ) -> None:
        self.pool = pool
        self.messages = messages
        self.settings = settings
        self.admins = frozenset(settings.admins)
        self.clock = clock
        self.rate = rate
        # The plugins' request_priority (none: every request at priority 0).
        self.priorities = priorities or Priorities(())

    async def handle(self, message: Incoming) -> list[Outgoing] | None:
        """The answer to a private message; None when it is not vidretry's (an unknown
        command, or plain text while plain-text requests are off): plugins may take it."""
        command, argument = _split_command(message.text)
        if command is None and self.settings.plain_text_requests:
            command, argument = "video", message.text
        handler = _USER_COMMANDS.get(command or "")
        if handler is None and message.user_id in self.admins:
            handler = _ADMIN_COMMANDS.get(command or "")
        # A request is counted before anything else is done for it: one over the limit
        # whose writer was told already costs nothing, not even a query (a flood of them
        # would otherwise hold the pool's connections that everybody else's need).
        verdict: bool | None = True
        if handler is Conversation._video and _request_name(argument) is not None:
            verdict = self.rate.admit(message.user_id)
            if verdict is False:
                return []
        m = self.messages.in_language(message.lang_code)
        try:
            async with self.pool.connection() as conn:
                # Any message tells us how to reach the user and their language, and lifts
                # a 'blocked' mark.
                lang_code = await outbox.remember_user(
                    conn,
                    message.user_id,
                    message.access_hash,
                    self.clock.now(),
                    lang_code=message.lang_code,
                )
                m = self.messages.in_language(lang_code)
                if handler is None:
                    return None
                if verdict is None:  # over the limit: told once a window
                    return [Outgoing(m.slow_down)]
                return await handler(self, conn, m, message.user_id, argument.strip())
        except TRANSIENT_DB_ERRORS as exc:
            log.error("message from %s not handled: %s", message.user_id, one_line(exc))
            return [Outgoing(m.try_later)]

    async def unknown(self, message: Incoming) -> list[Outgoing]:
        """The answer to a private message that nobody took: a command vidretry does not know
        (an admin command, for a non-admin), or plain text while plain-text requests are off.
        In the writer's language (``handle`` has recorded it; an update without one: the
        last known)."""
        lang_code = message.lang_code
        if lang_code is None:
            try:
                async with self.pool.connection() as conn:
                    lang_code = await outbox.user_language(conn, message.user_id)
            except TRANSIENT_DB_ERRORS as exc:
                log.error("language of %s unknown: %s", message.user_id, one_line(exc))
        m = self.messages.in_language(lang_code)
        if message.text.startswith("/"):
            return [Outgoing(m.unknown_command)]
        return [Outgoing(m.help)]

    # -- every user: ``m`` is the texts in the writer's language -------------------------

    async def _start(
        self, conn: Connection, m: MessagesConfig, user_id: int, argument: str
    ) -> list[Outgoing]:
        return [Outgoing(m.start)]

    async def _help(
        self, conn: Connection, m: MessagesConfig, user_id: int, argument: str
    ) -> list[Outgoing]:
        return [Outgoing(m.help)]

    async def _video(
        self, conn: Connection, m: MessagesConfig, user_id: int, name: str
    ) -> list[Outgoing]:
        if not name:
            return [Outgoing(m.ask_name)]
        try:
            name = normalise_name(name)
        except ConfigError:
            return [Outgoing(m.bad_name)]
        now = self.clock.now()  # (``handle`` counted it against the user's rate)
        mine = await fetch_one(conn, "user_open_requests", {"user_id": user_id, "name": name})
        assert mine is not None
        if not mine["asked_before"] and mine["open"] >= self.settings.max_open_requests_per_user:
            return [Outgoing(m.too_many_open)]
        priority = await self.priorities.of(
            PriorityRequest(user_id, name, is_admin=user_id in self.admins)
        )
        done = await enqueue(conn, name, user_id=user_id, priority=priority, now=now)
        if done.out_of_retries:
            return [Outgoing(render(m.retry_limit, name))]  # the admins are told
        if done.state is JobState.AVAILABLE:
            if done.ready_queued:
                return []  # the video is on its way through the outbox, paced like the rest
            video = await fetch_one(conn, "asset_for_button", {"id": done.asset_id})
            if video is None:
                return [Outgoing(render(m.ready_caption, name))]
            return [
                Outgoing(
                    render(m.ready_caption, name),
                    video=VideoRef.of(video),
                    video_of=(done.asset_id, video["retry_round"]),
                )
            ]
        accepted = render(m.retried_message if done.retried else m.requested, name)
        place = await in_line(conn, m, done.asset_id)
        asset = await fetch_one(conn, "asset_for_button", {"id": done.asset_id})
        retry_round = asset["retry_round"] if asset else 0
        return [
            Outgoing(
                f"{accepted}\n{place}" if place else accepted,
                (InlineButton(m.cancel_button, cancel_data(done.asset_id, retry_round)),),
                accepts=done.asset_id,
            )
        ]

    async def _my(
        self, conn: Connection, m: MessagesConfig, user_id: int, argument: str
    ) -> list[Outgoing]:
        rows = await fetch_all(
            conn, "user_requests_newest", {"user_id": user_id, "limit": LIST_LIMIT}
        )
        if not rows:
            return [Outgoing(m.my_empty)]
        words = {
            JobState.PENDING: m.state_pending,
            JobState.RUNNING: m.state_running,
            JobState.AVAILABLE: m.state_available,
            JobState.FAILED: m.state_failed,
            JobState.CANCELLED: m.state_cancelled,
        }
        lines = [m.my_header]
        buttons = []
        for row in rows:
            name = _short(row["name"], SHORT_NAME)
            if row["request_state"] == RequestState.CANCELLED:
                lines.append(f"• <b>{html.escape(name, quote=False)}</b> — {m.state_cancelled}")
                continue
            state = words[row["state"]]
            if row["state"] == JobState.PENDING and (place := await in_line(conn, m, row["id"])):
                state = f"{state} · {place}"
            lines.append(f"• <b>{html.escape(name, quote=False)}</b> — {state}")
            if row["state"] == JobState.FAILED:
                buttons.append(
                    InlineButton(
                        f"{m.retry_button}: {name}", retry_data(row["id"], row["retry_round"])
                    )
                )
        return [Outgoing("\n".join(lines), tuple(buttons))]

    async def _cancel(
        self, conn: Connection, m: MessagesConfig, user_id: int, argument: str
    ) -> list[Outgoing]:
        """The user's open requests, a cancel button each; an admin's ``/cancel <asset>``
        cancels the whole asset."""
        if argument and user_id in self.admins:
            return await self._cancel_asset(conn, user_id, argument)
        rows = await open_requests(conn, user_id, LIST_LIMIT)
        if not rows:
            return [Outgoing(m.cancel_list_empty)]
        buttons = tuple(
            InlineButton(
                f"{m.cancel_button}: {_short(row['name'], SHORT_NAME)}",
                cancel_data(row["id"], row["retry_round"]),
            )
            for row in rows
        )
        return [Outgoing(m.cancel_list_header, buttons)]

    # -- admins -------------------------------------------------------------------------

    # The admins' commands answer in English, like the command line they mirror.

    async def _stats(
        self, conn: Connection, m: MessagesConfig, user_id: int, argument: str
    ) -> list[Outgoing]:
        status = await reports.status(conn, self.clock.now())
        counts = status["counts"]
        lines = [
            "<b>vidretry</b>",
            " · ".join(f"{state} {counts[state]}" for state in JobState),
            f"oldest pending: {_when(status['oldest_pending'])}",
            f"failed in the last hour: {status['failed_last_hour']}",
            f"outbox: {status['outbox_backlog']} waiting, {status['outbox_dead']} dead",
        ]
        return [Outgoing("\n".join(lines))]

    async def _retry(
        self, conn: Connection, m: MessagesConfig, user_id: int, argument: str
    ) -> list[Outgoing]:
        asset_id = _asset_id(argument)
        if asset_id is None:
            return [Outgoing("Usage: /retry &lt;asset id&gt;")]
        actor = Actor.telegram_admin(user_id)
        result = await retry(conn, asset_id, actor, reason="/retry", now=self.clock.now())
        return [Outgoing(html.escape(describe_retry(result), quote=False))]

    async def _cancel_asset(self, conn: Connection, user_id: int, argument: str) -> list[Outgoing]:
        asset_id = _asset_id(argument)
        if asset_id is None:
            return [Outgoing("Usage: /cancel &lt;asset id&gt;")]
        actor = Actor.telegram_admin(user_id)
        result = await cancel(conn, asset_id, actor, reason="/cancel", now=self.clock.now())
        return [Outgoing(html.escape(describe_cancel(result), quote=False))]

    async def _failed(
        self, conn: Connection, m: MessagesConfig, user_id: int, argument: str
    ) -> list[Outgoing]:
        rows = await fetch_all(conn, "latest_failed", {"limit": LIST_LIMIT})
        if not rows:
            return [Outgoing("No failed assets.")]
        lines, buttons = ["<b>Latest failed assets</b>"], []
        for row in rows:
            name = html.escape(_short(row["name"], SHORT_NAME), quote=False)
            error = html.escape(_short(row["last_error"] or "", SHORT_ERROR), quote=False)
            lines.append(f"#{row['id']} <b>{name}</b>: {error}")
            buttons.append(
                InlineButton(f"🔄 #{row['id']}", retry_data(row["id"], row["retry_round"]))
            )
        return [Outgoing("\n".join(lines), tuple(buttons))]


def _asset_id(argument: str) -> int | None:
    """An admin command's asset id, by the command line's rule (``parse_asset_id``)."""
    try:
        return parse_asset_id(argument)
    except ConfigError:
        return None


def _split_command(text: str) -> tuple[str | None, str]:
    """("video", "Маша") for "/video Маша" or "/video@my_bot Маша"; (None, text) otherwise."""
    if not text.startswith("/"):
        return None, text
    head, _, rest = text[1:].partition(" ")
    command = head.split("@", 1)[0].lower()
    return command, rest


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "none"


def _request_name(argument: str) -> str | None:
    """The name a /video request asks for; None when it names nothing valid (such a
    request is answered, and not counted against the user's rate)."""
    try:
        return normalise_name(argument.strip()) if argument.strip() else None
    except ConfigError:
        return None


_USER_COMMANDS = {
    "start": Conversation._start,
    "help": Conversation._help,
    "video": Conversation._video,
    "my": Conversation._my,
    "cancel": Conversation._cancel,
}
_ADMIN_COMMANDS = {
    "stats": Conversation._stats,
    "retry": Conversation._retry,
    "failed": Conversation._failed,
}
