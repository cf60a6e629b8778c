"""The Telegram adapter, logged in as a bot through Telethon: the only module importing it.

It sends messages for the notifier (a ``Sender``), answers the retry button and ``/start``,
and translates every Telethon error into vidretry's own outcomes, so the core never sees one.
It stays connected through outages: Telethon tries a lost connection once, then this module
reconnects with capped, jittered backoff, one log line per try, for as long as it takes. Only
a refused token ends it (``TelegramUnavailable``). Every message it sends waits for its turn
at the shared ``Pacer``. The bot token is never logged, printed or put in an error message.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from telethon import Button, TelegramClient, errors, events, functions, types
from telethon.extensions import html

from vidretry import backoff
from vidretry.config import TelegramConfig
from vidretry.errors import TelegramUnavailable
from vidretry.queue import metrics
from vidretry.results.base import (
    ResultCorrupt,
    ResultMissing,
    ResultRefused,
    StoreUnavailable,
)
from vidretry.results.files import FileStore
from vidretry.results.keeping import Results
from vidretry.telegram.buttons import ButtonService, Press
from vidretry.telegram.conversation import Conversation, Incoming, Outgoing
from vidretry.telegram.delivery import (
    DeliveryError,
    InlineButton,
    MessageGone,
    MessageRefused,
    Pacer,
    Recipient,
    RecipientRefused,
    SendLater,
    SentVideo,
    StoreDown,
    TelegramDown,
    VideoFile,
    VideoRef,
    depart,
    parse_callback_data,
)
from vidretry.telegram.videos import VideoFiles

log = logging.getLogger("vidretry.telegram")


# Permanent for the recipient: blocked, deactivated, or an id Telegram does not know.
_RECIPIENT_GONE = (
    errors.UserIsBlockedError,
    errors.InputUserDeactivatedError,
    errors.PeerIdInvalidError,
    errors.UserIsBotError,
    errors.ChatWriteForbiddenError,
    errors.ForbiddenError,
)
# The bot's own authorisation is gone: nothing can be sent until an operator acts.
_BOT_REFUSED = (
    errors.UnauthorizedError,
    errors.AuthKeyError,
    errors.AccessTokenInvalidError,
    errors.AccessTokenExpiredError,
)
# Telegram is failing everybody: the connection is gone, or a timeout, a server error (5xx).
_CONNECTION_LOST = (ConnectionError, OSError)
_TELEGRAM_DOWN = (errors.ServerError, errors.TimedOutError, asyncio.TimeoutError, *_CONNECTION_LOST)
# Reading the video file failed: this message's trouble, not Telegram's (they are OSErrors).
_UNREADABLE_FILE = (FileNotFoundError, PermissionError, IsADirectoryError)
# A stored video reference Telegram will not take: expired (fetch a fresh one from the
# message it was first sent in), or gone for good (upload again).
_REFERENCE_EXPIRED = (errors.FileReferenceExpiredError,)
_REFERENCE_GONE = (
    errors.FileReferenceInvalidError,
    errors.FileReferenceEmptyError,
    errors.MediaEmptyError,
    errors.FileIdInvalidError,
)
# Reconnecting: 1 s doubling to 10 s ([notifier] outage_probe_max_seconds), jittered, so a
# recovered Telegram is found quickly.
RECONNECT_BASE_SECONDS = 1.0
RECONNECT_MAX_SECONDS = 10.0
# Cleaning up after a press: Telegram may refuse, and that is fine.
_CLEANUP_REFUSED = (
    errors.QueryIdInvalidError,
    errors.MessageNotModifiedError,
    errors.MessageDeleteForbiddenError,
    errors.MessageIdInvalidError,
    errors.MessageEditTimeExpiredError,
)

# An acceptance message that can no longer be edited: deleted, or not the bot's to edit.
_MESSAGE_GONE = (
    errors.MessageIdInvalidError,
    errors.MessageEditTimeExpiredError,
    errors.MessageAuthorRequiredError,
)
# Telegram shows "sending a video…" for about 5 s: sent again this often while an upload runs.
CHAT_ACTION_SECONDS = 4.0

# The sends a paid broadcast may push past the free limit of about 30 messages a second.
_PAID_REQUESTS = (functions.messages.SendMessageRequest, functions.messages.SendMediaRequest)


# The chat a message is being sent to, while ``TelegramBot`` sends it (its pacer's key).
_sending_to: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "vidretry_sending_to", default=None
)


class BotClient(TelegramClient):  # type: ignore[misc]  # Telethon is untyped
    """Telethon's client, marking every message it sends as a paid broadcast when
    ``paid_broadcast`` is on (``allow_paid_floodskip``: Telegram then accepts up to 1,000
    messages a second from the bot and charges Stars for those beyond the free limit).

    With a ``pacer``, every message a ``TelegramBot`` sends passes the pacer's last guard
    (``Pacer.go``) here, as its request leaves: after its upload, and after Telethon has
    built it. Guarded any earlier, a video whose upload takes a while would leave long after
    its turn, together with the messages whose turns came meanwhile.

    The notifier's mark that a send has begun (``delivery.depart``) is made here too, as
    the send's first request is about to leave (a message once it is ready to go at the
    pacer's guard, a video's upload before its first part): a send waiting for its turn, or
    being built while another one goes out, is not charged when that one kills the
    process."""

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
        chat = _sending_to.get()
        if chat is not None:  # a request of a TelegramBot's send
            if pacer is not None:
                await pacer.ready(chat)
            await depart()
            if pacer is not None:
                await pacer.go(chat)
        return await super().__call__(
            request, ordered=ordered, flood_sleep_threshold=flood_sleep_threshold
        )


@functools.lru_cache(maxsize=1024)
def _parsed_html(html_text: str) -> tuple[str, list[Any] | None]:
    """A message's text and entities, parsed once: a broadcast sends the same text to many
    users, and Telethon's HTML parser costs a third of a millisecond per message. Entities
    that name a user (a mention) are left to Telethon, which resolves them per send (None)."""
    text, entities = html.parse(html_text)
    if any(isinstance(e, _MENTIONS) or not e.length for e in entities):
        return html_text, None
    return text, entities


# Entities Telethon rewrites at send time (it resolves the user they name).
_MENTIONS = (types.MessageEntityTextUrl, types.MessageEntityMentionName,
             types.InputMessageEntityMentionName)  # fmt: skip


def build_client(
    config: TelegramConfig, *, paid_broadcast: bool = False, send_only: bool = False
) -> BotClient:
    """A Telethon client for the bot. No I/O: nothing connects until ``TelegramBot.start``.
    ``paid_broadcast``: ``[notifier] paid_broadcast``. ``send_only``: every request asks
    Telegram not to send this session updates (``invokeWithoutUpdates``); see
    ``NoUpdateFetching`` for the requests Telethon would still make to fetch them."""
    client = BotClient(
        str(config.session),
        config.api_id,
        config.api_hash,
        receive_updates=not send_only,
        # FloodWaitError must reach us (to reschedule the row), not sleep inside Telethon.
        flood_sleep_threshold=0,
        # Telethon tries a lost connection once; after that TelegramBot reconnects, with
        # backoff and a log line per try, for as long as it takes.
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


class TelegramBot:
    """Sends through one logged-in Telethon client and serves the retry button (a send-only
    bot serves nothing: ``send_only``, with a client from ``build_client(send_only=True)``)."""

    def __init__(
        self,
        client: TelegramClient,
        *,
        pacer: Pacer | None = None,
        rng: random.Random | None = None,
        reconnect_max_seconds: float = RECONNECT_MAX_SECONDS,
        send_only: bool = False,
        results: Results | None = None,
    ) -> None:
        self.client = client
        self.send_only = send_only
        # Where finished videos are read from ([storage]; without one, local files only).
        self.results = results or Results(FileStore(Path("/")), scratch=Path("/"))
        self.pacer = pacer
        if isinstance(client, BotClient):
            client.pacer = pacer
        self.rng = rng or random.Random()  # noqa: S311 (jitter only)
        self.reconnect_max_seconds = reconnect_max_seconds
        # The stored video references, shared with the notifier (``serve`` sets them): the
        # bot's own answers send a finished video by reference too.
        self.videos: VideoFiles | None = None
        # Told of every acceptance message sent (``serve`` sets it): the progress editor.
        self.accepted: Callable[[int, int, int, str], Awaitable[None]] | None = None
        # Told when the session connects and when it is lost (the leader records it).
        self.on_connection: Callable[[bool], Coroutine[Any, Any, None]] | None = None
        self._telling: set[asyncio.Task[None]] = set()
        self._token = ""

    async def start(self, bot_token: str) -> None:
        """Connect and log in as the bot, once. A refused token is ``TelegramUnavailable``;
        no connection (or a request to wait) is ``TelegramDown``."""
        self._token = bot_token
        if self.send_only and not isinstance(self.client._sender, NoUpdateFetching):
            self.client._sender = NoUpdateFetching(self.client._sender)
        try:
            await self.client.start(bot_token=bot_token)
        except _BOT_REFUSED as exc:
            raise TelegramUnavailable(f"Telegram refused the bot token ({_code(exc)})") from None
        except errors.FloodWaitError as exc:
            raise TelegramDown(
                f"Telegram asks to wait {exc.seconds}s before logging in again",
                seconds=float(exc.seconds),
            ) from None
        except _TELEGRAM_DOWN as exc:
            raise TelegramDown(f"Telegram unreachable: {_describe(exc)}") from None
        me = await self.client.get_me()
        self._connection(True)
        log.info("logged in to Telegram as @%s", getattr(me, "username", None) or me.id)

    async def connect(self, bot_token: str, until: asyncio.Event) -> bool:
        """Log in, trying again while Telegram cannot be reached, with capped, jittered
        backoff and one log line per try. False if ``until`` was set first; a refused token
        raises ``TelegramUnavailable`` (a person must act)."""
        attempt = 0
        while not until.is_set():
            attempt += 1
            try:
                await self.start(bot_token)
            except TelegramDown as exc:
                wait = exc.seconds or backoff.jittered(
                    backoff.exponential(
                        attempt,
                        min(RECONNECT_BASE_SECONDS, self.reconnect_max_seconds),
                        self.reconnect_max_seconds,
                    ),
                    self.rng,
                )
                log.warning("%s; trying again in %.1fs (try %d)", exc.reason, wait, attempt)
                await self.client.disconnect()
                if await _set_within(until, wait):
                    return False
            else:
                return True
        return False

    async def stay_connected(self, until: asyncio.Event, on_reconnect: Callable[[], None]) -> None:
        """Until ``until`` is set: whenever the connection is lost for good, reconnect (as
        ``connect`` does) and call ``on_reconnect``. Raises ``TelegramUnavailable`` if
        Telegram dropped the bot (its token revoked)."""
        while not until.is_set():
            reason = await self._lost(until)
            if reason is None:
                return
            log.warning("lost the connection to Telegram (%s): reconnecting", reason)
            await self.client.disconnect()
            if not await self.connect(self._token, until):
                return
            on_reconnect()

    async def _lost(self, until: asyncio.Event) -> str | None:
        """Why the connection ended, or None if ``until`` was set first."""
        gone = asyncio.ensure_future(self.client.disconnected)
        stopping = asyncio.create_task(until.wait())
        try:
            await asyncio.wait({gone, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not gone.done():
            gone.cancel()
            return None
        self._connection(False)
        try:
            gone.result()
        except _BOT_REFUSED as exc:
            raise TelegramUnavailable(f"Telegram dropped the bot ({_code(exc)})") from None
        except Exception as exc:
            return _describe(exc)
        return "disconnected"

    async def stop(self) -> None:
        # Log out first, then say so: a leader whose term ended must be gone before a
        # standby logs in (a slow database must not keep two sessions up at once).
        await self.client.disconnect()
        self._connection(False)

    def _connection(self, connected: bool) -> None:
        """The bot session connected or lost: the metric, and whoever asked to know — in the
        background, so that nothing Telegram-side (a login, a logout at the end of a term)
        ever waits for it."""
        metrics.TELEGRAM_CONNECTED.set(1 if connected else 0)
        if self.on_connection is not None:
            told = asyncio.create_task(self.on_connection(connected))
            self._telling.add(told)
            told.add_done_callback(self._telling.discard)

    # -- Sender -------------------------------------------------------------------------

    async def send_text(
        self, to: Recipient, html_text: str, button: InlineButton | None
    ) -> int | None:
        buttons = [[Button.inline(button.text, button.data.encode())]] if button else None
        text, entities = _parsed_html(html_text)
        message = await self._sending(
            lambda peer: (
                self.client.send_message(peer, text, formatting_entities=entities, buttons=buttons)
                if entities is not None
                else self.client.send_message(peer, html_text, parse_mode="html", buttons=buttons)
            ),
            to,
        )
        return int(message.id)

    async def edit_text(
        self, to: Recipient, message_id: int, html_text: str, buttons: Sequence[InlineButton]
    ) -> None:
        markup = [[Button.inline(b.text, b.data.encode())] for b in buttons] or None
        try:
            await self._sending(
                lambda peer: self.client.edit_message(
                    peer, message_id, text=html_text, parse_mode="html", buttons=markup
                ),
                to,
                passing=(errors.MessageNotModifiedError, *_MESSAGE_GONE),
            )
        except errors.MessageNotModifiedError:
            return  # it already says this
        except _MESSAGE_GONE as exc:
            raise MessageGone(f"message {message_id} cannot be edited: {_code(exc)}") from None

    async def send_video(self, to: Recipient, video: VideoRef, caption_html: str) -> int | None:
        return int((await self._upload_video(to, video, caption_html)).id)

    async def _upload_video(self, to: Recipient, video: VideoRef, caption_html: str) -> Any:
        """Upload the video from its store: read as a stream of Telegram's part size, checked
        against its recorded size and SHA-256 (a mismatch fails the last read, so the upload
        never completes). Never the whole video in memory."""
        if video.deleted:
            raise MessageRefused(
                f"the video was deleted after delivery ([storage] delete_after_delivery) and "
                f"Telegram's reference is gone: {video.uri}"
            )
        try:
            download = await self.results.open(video.uri, size=video.size, sha256=video.sha256)
        except (ResultMissing, ResultRefused) as exc:
            raise MessageRefused(str(exc)) from None
        except StoreUnavailable as exc:
            raise StoreDown(f"the video store is unreachable: {exc}") from None
        try:
            async with self._showing_upload(to):
                return await self._sending(
                    lambda peer: self.client.send_file(
                        peer, download, file_size=download.size, caption=caption_html,
                        parse_mode="html", supports_streaming=True,
                    ),
                    to,
                )  # fmt: skip
        finally:
            await download.aclose()

    @contextlib.asynccontextmanager
    async def _showing_upload(self, to: Recipient) -> AsyncIterator[None]:
        """Telegram's "sending a video…" in the chat while the upload runs. Best effort and
        not paced (an action is not a message); the video's arrival ends it. Not Telethon's
        ``client.action``: its background task lets an RPC error escape into the send."""
        request = functions.messages.SetTypingRequest(
            _peer(to), types.SendMessageUploadVideoAction(progress=0)
        )

        async def show() -> None:
            with contextlib.suppress(errors.RPCError, ValueError, *_TELEGRAM_DOWN):
                await self.client(request)

        async def keep_showing() -> None:
            while True:
                await asyncio.sleep(CHAT_ACTION_SECONDS)
                await show()

        # The first one before the upload starts (a short upload would end before it left),
        # not waited for longer than a second.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await show()
        showing = asyncio.create_task(keep_showing())
        try:
            yield
        finally:
            showing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await showing

    async def send_video_file(
        self, to: Recipient, video: VideoRef, caption_html: str, file: VideoFile | None
    ) -> SentVideo:
        """One upload per video: by reference when Telegram has it, refreshing an expired
        reference from the message it was first sent in; an upload when there is no
        reference, or the origin is gone, or Telegram refuses the reference for good."""
        if file is not None:
            try:
                return await self._send_by_reference(to, file, caption_html)
            except _REFERENCE_EXPIRED:
                fresh = await self._fresh_reference(file)
                if fresh is not None:
                    try:
                        return await self._send_by_reference(to, fresh, caption_html)
                    except (*_REFERENCE_EXPIRED, *_REFERENCE_GONE) as exc:
                        log.info(
                            "video %s: a fresh reference refused too (%s)",
                            fresh.document_id,
                            _code(exc),
                        )
            except _REFERENCE_GONE as exc:
                log.info(
                    "video %s: reference refused (%s): uploading again",
                    file.document_id,
                    _code(exc),
                )
        message = await self._upload_video(to, video, caption_html)
        uploaded = _video_file(message, to)
        if uploaded is None:
            raise MessageRefused("Telegram returned no document for the uploaded video")
        return SentVideo(int(message.id), uploaded)

    async def _send_by_reference(
        self, to: Recipient, file: VideoFile, caption_html: str
    ) -> SentVideo:
        document = types.InputDocument(file.document_id, file.access_hash, file.file_reference)
        message = await self._sending(
            lambda peer: self.client.send_file(
                peer, document, caption=caption_html, parse_mode="html"
            ),
            to,
            passing=(*_REFERENCE_EXPIRED, *_REFERENCE_GONE),
        )
        return SentVideo(int(message.id), file)

    async def _fresh_reference(self, file: VideoFile) -> VideoFile | None:
        """The document of the message the video was first sent in, with the reference it
        has now; None when that message or its video is gone."""
        origin = Recipient(file.origin_chat_id, file.origin_chat_id, file.origin_access_hash)
        try:
            message = await self.client.get_messages(_peer(origin), ids=file.origin_message_id)
        except (errors.RPCError, ValueError) as exc:
            log.info("video %s: origin unreadable (%s)", file.document_id, _describe(exc))
            return None
        fresh = _video_file(message, origin) if message is not None else None
        if fresh is None or fresh.document_id != file.document_id:
            return None
        log.info("video %s: file reference refreshed from its origin", file.document_id)
        return VideoFile(
            fresh.document_id,
            fresh.access_hash,
            fresh.file_reference,
            file.origin_chat_id,
            file.origin_access_hash,
            file.origin_message_id,
        )

    async def _sending(
        self,
        send: Callable[[Any], Awaitable[Any]],
        to: Recipient,
        *,
        passing: tuple[type[BaseException], ...] = (),
    ) -> Any:
        """``send`` to ``to``, Telethon's errors told as ``DeliveryError``s; those in
        ``passing`` are raised as they are (the caller handles them)."""
        sending = _sending_to.set(to.chat_id)
        try:
            return await send(_peer(to))
        except passing:
            raise
        except (*_UNREADABLE_FILE, ResultMissing, ResultRefused, ResultCorrupt) as exc:
            raise MessageRefused(f"cannot read the video: {_describe(exc)}") from None
        except StoreUnavailable as exc:
            raise StoreDown(f"the video store is unreachable: {exc}") from None
        except (
            errors.FloodWaitError,
            errors.FloodPremiumWaitError,
            errors.SlowModeWaitError,
        ) as exc:
            raise SendLater(f"flood wait {exc.seconds}s", seconds=float(exc.seconds)) from None
        except _RECIPIENT_GONE as exc:
            raise RecipientRefused(f"recipient refused: {_code(exc)}") from None
        except _BOT_REFUSED as exc:
            raise TelegramUnavailable(f"Telegram dropped the bot ({_code(exc)})") from None
        except errors.BadRequestError as exc:
            raise MessageRefused(f"Telegram refused the message: {_code(exc)}") from None
        except ValueError as exc:
            if "input entity" in str(exc):  # Telethon cannot address them: never wrote to us
                raise RecipientRefused("recipient unknown (never started the bot)") from None
            raise SendLater(_describe(exc)) from None
        except _TELEGRAM_DOWN as exc:
            # TimeoutError is an OSError too, but one slow answer is not a lost connection.
            lost = isinstance(exc, _CONNECTION_LOST) and not isinstance(exc, TimeoutError)
            raise TelegramDown(_describe(exc), connection_lost=lost) from None
        except errors.RPCError as exc:
            raise SendLater(_describe(exc)) from None
        finally:
            _sending_to.reset(sending)

    # -- the button and /start ------------------------------------------------------------

    def serve(
        self,
        buttons: ButtonService,
        conversation: Conversation,
        plugins: Sequence[ModuleType] = (),
        *,
        videos: VideoFiles | None = None,
        accepted: Callable[[int, int, int, str], Awaitable[None]] | None = None,
    ) -> None:
        """Answer retry and cancel buttons and private messages through Telethon's update
        loop; ``accepted(user, asset, message id, text)`` hears of each acceptance sent.

        vidretry's own commands and the button come first and stop there; then each plugin's
        handlers, in the order configured; last, private messages nobody took get the
        unknown-command answer (a plugin that answers raises ``events.StopPropagation``)."""
        self.videos = videos
        self.accepted = accepted

        async def on_press(event: events.CallbackQuery.Event) -> None:
            if parse_callback_data(bytes(event.data or b"")) is None and plugins:
                return  # not a retry button: perhaps a plugin's
            await self._on_press(event, buttons)
            raise events.StopPropagation

        async def on_message(event: events.NewMessage.Event) -> None:
            await self._on_message(event, conversation)

        async def on_unknown(event: events.NewMessage.Event) -> None:
            if event.is_private:
                await self._answer(event, await conversation.unknown(await _incoming(event)))

        self.client.add_event_handler(on_press, events.CallbackQuery())
        self.client.add_event_handler(on_message, events.NewMessage(incoming=True))
        for plugin in plugins:
            plugin.register(self.client)
        self.client.add_event_handler(on_unknown, events.NewMessage(incoming=True))

    async def register_commands(
        self, commands: Sequence[tuple[str, str]], *, lang_code: str = ""
    ) -> None:
        """Show the bot's commands in Telegram's menu (bots.setBotCommands) for users whose
        app speaks ``lang_code`` ("": everybody else); best effort."""
        request = functions.bots.SetBotCommandsRequest(
            scope=types.BotCommandScopeDefault(),
            lang_code=lang_code,
            commands=[types.BotCommand(command, text) for command, text in commands],
        )
        try:
            await self.client(request)
        except (errors.RPCError, *_TELEGRAM_DOWN) as exc:
            log.warning("could not register the command menu (%s)", _describe(exc))

    async def _on_press(self, event: events.CallbackQuery.Event, buttons: ButtonService) -> None:
        sender = await event.get_input_sender()
        reply = await buttons.press(
            Press(
                event.sender_id,
                getattr(sender, "access_hash", None),
                bytes(event.data or b""),
                lang_code=_lang_code(event),
            )
        )
        # Answer first: delete/edit/respond would otherwise answer empty in the background.
        try:
            await event.answer(reply.answer[:200])
        except _CLEANUP_REFUSED as exc:
            log.info("press by %s: answer refused (%s)", event.sender_id, _code(exc))
        if reply.remove_button:
            await self._remove_button(event)
        try:
            async with self._turn(event.chat_id):
                if reply.video:
                    to = Recipient(
                        event.sender_id, event.chat_id, getattr(sender, "access_hash", None)
                    )
                    await self._send_answer_video(
                        to, reply.video, reply.message or "", reply.video_of
                    )
                elif reply.message:
                    await self.client.send_message(sender, reply.message, parse_mode="html")
        except (errors.RPCError, ConnectionError, OSError, ValueError, DeliveryError) as exc:
            log.warning("press by %s: follow-up not sent (%s)", event.sender_id, _describe(exc))

    async def _remove_button(self, event: events.CallbackQuery.Event) -> None:
        """Delete the message; when Telegram will not (older than 48 hours), drop its keyboard."""
        try:
            affected = await event.delete()
            if any(getattr(a, "pts_count", 1) for a in affected or [None]):
                return
        except _CLEANUP_REFUSED as exc:
            log.info("message %s not deleted (%s): editing instead", event.message_id, _code(exc))
        try:
            await self.client(
                functions.messages.EditMessageRequest(
                    peer=await event.get_input_chat(),
                    id=event.message_id,
                    reply_markup=types.ReplyInlineMarkup(rows=[]),
                )
            )
        except _CLEANUP_REFUSED as exc:
            log.info("message %s keeps its button (%s)", event.message_id, _code(exc))

    async def _on_message(self, event: events.NewMessage.Event, conversation: Conversation) -> None:
        if not event.is_private:
            return  # silent in groups and channels
        answer = await conversation.handle(await _incoming(event))
        if answer is None:
            return  # not vidretry's: the plugins', or the unknown-command answer
        await self._answer(event, answer)
        raise events.StopPropagation

    async def _answer(self, event: events.NewMessage.Event, answer: Sequence[Outgoing]) -> None:
        """Send an answer's messages in order, each paced like the outbox's."""
        peer = await event.get_input_chat()
        for message in answer:
            buttons = [[Button.inline(b.text, b.data.encode())] for b in message.buttons]
            try:
                async with self._turn(event.chat_id):
                    if message.video:
                        to = Recipient(
                            event.sender_id, event.chat_id, getattr(peer, "access_hash", None)
                        )
                        await self._send_answer_video(
                            to, message.video, message.text, message.video_of
                        )
                    else:
                        sent = await self.client.send_message(
                            peer, message.text, parse_mode="html", buttons=buttons or None
                        )
                        if message.accepts is not None and self.accepted is not None:
                            await self.accepted(
                                event.sender_id, message.accepts, int(sent.id), message.text
                            )
            except (errors.RPCError, ValueError, DeliveryError, *_TELEGRAM_DOWN) as exc:
                log.warning("answer to %s not sent (%s)", event.sender_id, _describe(exc))
                return

    async def _send_answer_video(
        self, to: Recipient, video: VideoRef, caption_html: str, key: tuple[int, int] | None
    ) -> None:
        """A finished video in an answer: by its stored reference (or uploaded once and
        stored), like the outbox's; a plain upload without a key."""
        if self.videos is None or key is None:
            await self._upload_video(to, video, caption_html)
            return
        async with self.videos.in_turn(key):
            await self.videos.send(self, key, to, video, caption_html)

    def guards_departures(self, pacer: Pacer) -> bool:
        """Whether every message this bot sends passes ``pacer.go`` as it leaves (its
        client does that: ``BotClient``), so that its sender need not."""
        return pacer is self.pacer and isinstance(self.client, BotClient)

    @contextlib.asynccontextmanager
    async def _turn(self, chat_id: int) -> AsyncIterator[None]:
        """Every message the bot sends keeps to the same limits as the outbox's: wait for the
        chat's turn, send inside (the message passes the pacer's guard as it leaves), and
        the chat's interval counts from when it is done."""
        if self.pacer is None:
            yield
            return
        await self.pacer.turn(chat_id)
        if not self.guards_departures(self.pacer):
            await self.pacer.go(chat_id)
        sending = _sending_to.set(chat_id)
        try:
            yield
        finally:
            _sending_to.reset(sending)
            self.pacer.sent(chat_id)


async def _set_within(event: asyncio.Event, seconds: float) -> bool:
    """True if ``event`` is set within ``seconds``."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True


async def _incoming(event: events.NewMessage.Event) -> Incoming:
    """A private message as the conversation reads it."""
    sender = await event.get_input_sender()
    return Incoming(
        event.sender_id,
        getattr(sender, "access_hash", None),
        event.raw_text or "",
        lang_code=_lang_code(event),
    )


def _video_file(message: Any, to: Recipient) -> VideoFile | None:
    """How to send the video in ``message`` (sent to ``to``) again by reference."""
    document = getattr(getattr(message, "media", None), "document", None)
    if not isinstance(document, types.Document):
        return None
    return VideoFile(
        document_id=document.id,
        access_hash=document.access_hash,
        file_reference=bytes(document.file_reference),
        origin_chat_id=to.chat_id,
        origin_access_hash=to.access_hash,
        origin_message_id=int(message.id),
    )


def _lang_code(event: Any) -> str | None:
    """The language of the sender's Telegram app (``User.lang_code``, given to bots only),
    from the users the update carries (``event.sender``: no request is made for it). None
    when Telegram gives none."""
    code = getattr(getattr(event, "sender", None), "lang_code", None)
    return code if isinstance(code, str) and code else None


def _peer(to: Recipient) -> Any:
    if to.access_hash is not None and to.chat_id == to.user_id:
        return types.InputPeerUser(to.user_id, to.access_hash)
    return to.chat_id


def _code(exc: BaseException) -> str:
    """Telegram's error code, e.g. USER_IS_BLOCKED. Telethon's named errors carry only their
    category in ``.message`` (BAD_REQUEST), so the code is rebuilt from the class name."""
    name = type(exc).__name__
    if isinstance(exc, errors.RPCError) and type(exc).__module__.startswith(
        "telethon.errors.rpcerrorlist"
    ):
        return re.sub(r"(?<!^)(?=[A-Z])", "_", name.removesuffix("Error")).upper()
    message = getattr(exc, "message", None)
    return str(message) if message else name


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
