"""Telethon's client for the bot, built once and tuned for vidretry: no flood sleeping, no
retrying of its own, paid broadcasts on request, every message past the pacer's last guard
as it leaves, a session file whose writes are committed within a second, and a send-only
session that never fetches the updates of a bot it shares.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import sqlite3
from datetime import UTC, datetime
from typing import Any

from telethon import TelegramClient, errors, functions, types
from telethon.sessions import SQLiteSession

from vidretry.config import TelegramConfig
from vidretry.telegram.pacing import Pacer
from vidretry.telegram.transport import depart

log = logging.getLogger("vidretry.telegram")

# The sends a paid broadcast may push past the free limit of about 30 messages a second.
_PAID_REQUESTS = (functions.messages.SendMessageRequest, functions.messages.SendMediaRequest)


# The chat a message is being sent to, while the bot sends it (its pacer's key).
sending_to: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "vidretry_sending_to", default=None
)


# Telegram's own trouble (a 5xx, a timeout on its side): Telethon sleeps 2 s after one
# before it raises it, even when no retry is left (see BotClient._call).
_PAUSED_AFTER = (errors.ServerError, errors.TimedOutError)


class _Answered(Exception):
    """Telegram's answer ``error`` (one of ``_PAUSED_AFTER``), carried past Telethon's
    pause: Telethon does not know this class, so it raises it at once."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(error)
        self.error = error


class _AnswersAtOnce:
    """A client's sender (Telethon's, or what wraps it) whose answers carry Telegram's own
    trouble as ``_Answered``."""

    def __init__(self, sender: Any) -> None:
        self._wrapped = sender

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)

    def send(self, request: Any, ordered: bool = False) -> Any:
        sent = self._wrapped.send(request, ordered=ordered)
        if isinstance(sent, list):  # a batch (the bot sends none): Telethon's as it is
            return sent
        return _at_once(sent)


async def _at_once(answer: Any) -> Any:
    try:
        return await answer
    except _PAUSED_AFTER as exc:
        raise _Answered(exc) from None


# How long a write to the session file may wait for its commit (see SessionFile).
SESSION_SAVE_SECONDS = 1.0


class SessionFile(SQLiteSession):  # type: ignore[misc]  # Telethon is untyped
    """Telethon's SQLite session file, whose writes are committed within
    ``SESSION_SAVE_SECONDS``. Telethon writes the users and chats of every answer into it
    and commits only at its next save (a login, a logout), so a leader held the file's
    write lock for its whole term; a standby taking over while the leader before it was
    still logging out (a failover under load) then failed its login after SQLite's 5 s
    wait, or the old leader its logout ("database is locked"). Held for a second at most,
    the lock is waited for. Committed on a timer, not at every write: a commit costs an
    fsync, on the event loop."""

    def __init__(self, path: str) -> None:
        self._save_due: asyncio.TimerHandle | None = None  # (the parent saves as it opens)
        super().__init__(path)

    def _written(self) -> None:
        if self._save_due is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # outside a loop: nothing would commit it later
            self.save()
            return
        self._save_due = loop.call_later(SESSION_SAVE_SECONDS, self._save_now)

    def _save_now(self) -> None:
        self._save_due = None
        try:
            self.save()
        except sqlite3.Error as exc:  # the next write tries again
            log.warning("the bot's session file was not saved: %s", exc)
            self._written()

    def process_entities(self, tlo: Any) -> None:
        super().process_entities(tlo)
        self._written()

    def set_update_state(self, entity_id: int, state: Any) -> None:
        super().set_update_state(entity_id, state)
        self._written()

    def cache_file(self, md5_digest: bytes, file_size: int, instance: Any) -> None:
        super().cache_file(md5_digest, file_size, instance)
        self._written()

    def get_entity_rows_by_username(self, username: str) -> Any:
        found = super().get_entity_rows_by_username(username)  # may forget a stale name
        self._written()
        return found

    def save(self) -> None:
        if self._save_due is not None:
            self._save_due.cancel()
            self._save_due = None
        super().save()

    def close(self) -> None:
        if self._save_due is not None:
            self._save_due.cancel()
            self._save_due = None
        super().close()


class BotClient(TelegramClient):  # type: ignore[misc]  # Telethon is untyped
    """Telethon's client, marking every message it sends as a paid broadcast when
    ``paid_broadcast`` is on (``allow_paid_floodskip``: Telegram then accepts up to 1,000
    messages a second from the bot and charges Stars for those beyond the free limit).

    With a ``pacer``, every message a ``TelegramBot`` sends passes the pacer's last guard
    (``Pacer.go``) here, as its request leaves: after its upload, and after Telethon has
    built it. Guarded any earlier, a video whose upload takes a while would leave long after
    its turn, together with the messages whose turns came meanwhile.

    The notifier's mark that a send has begun (``transport.depart``) is made here too, as
    the send's first request is about to leave (a message once it is ready to go at the
    pacer's guard, a video's upload before its first part): a send waiting for its turn, or
    being built while another one goes out, is not charged when that one kills the
    process.

    Telegram's own trouble (a server error, a timeout on its side) is raised as it arrives:
    Telethon would sleep 2 s first, even with no retry left (``request_retries=0``), and
    the send's mark stayed set meanwhile, so a leader killed in those 2 s was charged a
    crash for a send that had already failed (the chaos run's Telegram outage, a leader
    killed every second or two, set rows aside that way)."""

    paid_broadcast = False
    pacer: Pacer | None = None

    async def __call__(
        self, request: Any, ordered: bool = False, flood_sleep_threshold: Any = None
    ) -> Any:
        pacer = None  # the pacer's guard is for messages, not for an upload's parts
        if isinstance(request, _PAID_REQUESTS):
            if self.paid_broadcast:
                request.allow_paid_floodskip = True
            pacer = self.pacer
        chat = sending_to.get()
        if chat is not None:  # a request of a TelegramBot's send
            if pacer is not None:
                await pacer.ready(chat)
            await depart()
            if pacer is not None:
                await pacer.go(chat)
        return await super().__call__(
            request, ordered=ordered, flood_sleep_threshold=flood_sleep_threshold
        )

    async def _call(
        self, sender: Any, request: Any, ordered: bool = False, flood_sleep_threshold: Any = None
    ) -> Any:
        """Telethon's every request (``__call__``'s, a login's, an upload's): Telegram's
        own trouble raised at once, not after Telethon's 2 s pause (see the class)."""
        try:
            return await super()._call(
                _AnswersAtOnce(sender), request, ordered=ordered,
                flood_sleep_threshold=flood_sleep_threshold,
            )  # fmt: skip
        except _Answered as exc:
            raise exc.error from None


def build_client(
    config: TelegramConfig, *, paid_broadcast: bool = False, send_only: bool = False
) -> BotClient:
    """A Telethon client for the bot. No I/O: nothing connects until ``TelegramBot.start``.
    ``paid_broadcast``: ``[notifier] paid_broadcast``. ``send_only``: every request asks
    Telegram not to send this session updates (``invokeWithoutUpdates``); see
    ``NoUpdateFetching`` for the requests Telethon would still make to fetch them."""
    client = BotClient(
        SessionFile(str(config.session)),
        config.api_id,
        config.api_hash,
        receive_updates=not send_only,
        # FloodWaitError must reach us (to reschedule the row), not sleep inside Telethon.
        flood_sleep_threshold=0,
        # Telethon tries a lost connection once; after that the bot's connection
        # reconnects, with backoff and a log line per try, for as long as it takes.
        connection_retries=1,
        retry_delay=1,
        # One try per request: retrying is ours to decide (outages pause, a row is not charged).
        request_retries=0,
        # Raise Telegram's own error after the last try, not a generic ValueError.
        raise_last_call_error=True,
        timeout=15,
    )
    client.paid_broadcast = paid_broadcast
    return client


# The requests that fetch a bot's updates. Telethon makes them by itself: at every login
# (its _on_login asks for the state and the difference since it), and whenever its update
# state looks stale. A send-only session must never make them: they would hand the host
# bot's updates to a session that drops them.
_FETCHES_UPDATES = (
    functions.updates.GetStateRequest,
    functions.updates.GetDifferenceRequest,
    functions.updates.GetChannelDifferenceRequest,
)


class NoUpdateFetching:
    """Telethon's network layer for a send-only bot: every request goes to Telegram except
    those that fetch updates (``_FETCHES_UPDATES``), which are answered here — "nothing
    new" — and never leave the process. Wraps the client's sender (Telethon is pinned: its
    ``_sender`` is the one private name this relies on, as the tests' double does)."""

    def __init__(self, sender: Any) -> None:
        self._wrapped = sender
        self.answered_here = 0  # update fetches that Telethon asked for and never sent

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)

    def send(self, request: Any, ordered: bool = False) -> Any:
        if isinstance(request, list):
            if not any(_fetches_updates(r) for r in request):
                return self._wrapped.send(request, ordered=ordered)
            return [self.send(r, ordered=ordered) for r in request]
        if not _fetches_updates(request):
            return self._wrapped.send(request, ordered=ordered)
        self.answered_here += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(_nothing_new(_unwrapped(request)))
        return future


def _unwrapped(request: Any) -> Any:
    while isinstance(request, functions.InvokeWithoutUpdatesRequest):
        request = request.query
    return request


def _fetches_updates(request: Any) -> bool:
    return isinstance(_unwrapped(request), _FETCHES_UPDATES)


def _nothing_new(request: Any) -> Any:
    """What Telegram answers when there is no update: the same, made here."""
    now = datetime.now(UTC)
    if isinstance(request, functions.updates.GetStateRequest):
        return types.updates.State(pts=1, qts=0, date=now, seq=0, unread_count=0)
    if isinstance(request, functions.updates.GetDifferenceRequest):
        return types.updates.DifferenceEmpty(date=now, seq=0)
    return types.updates.ChannelDifferenceEmpty(pts=request.pts, final=True)
