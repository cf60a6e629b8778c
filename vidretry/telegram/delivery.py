"""What the notifier needs from a transport, and the rules of sending.

A ``Sender`` (the Telegram adapter, or the console) delivers one message and reports trouble
only through the exceptions below, so the notifier never sees a library's own errors.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import contextvars
import html
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from vidretry.errors import VidretryError

# Callback data of the retry button. One constant defines the format; the handler also
# accepts the two older forms (see parse_callback_data). Telegram allows 1-64 bytes.
CALLBACK_PREFIX = "retry_video"
CALLBACK_FORMAT = CALLBACK_PREFIX + ":{asset_id}:{generation}"
# The cancel button on an acceptance message and in /cancel's list: the same shape.
CANCEL_PREFIX = "cancel_video"
CANCEL_FORMAT = CANCEL_PREFIX + ":{asset_id}:{generation}"
MAX_CALLBACK_BYTES = 64
_MAX_ID_DIGITS = 19  # bigint
_MAX_GENERATION = 2**31 - 1


@dataclass(frozen=True)
class Recipient:
    user_id: int
    chat_id: int
    access_hash: int | None


@dataclass(frozen=True)
class InlineButton:
    text: str
    data: str


@dataclass(frozen=True)
class VideoRef:
    """A finished video as the notifier sends it: where it is kept (a ``file://`` or
    ``s3://`` URI, or a bare path recorded before schema 19), its recorded size and SHA-256
    (None: not recorded), and whether its object was deleted after delivery."""

    uri: str
    size: int | None = None
    sha256: bytes | None = None
    deleted: bool = False

    @classmethod
    def of(cls, asset: Mapping[str, Any]) -> VideoRef:
        """From an asset's row (``result``, ``result_size``, ``result_sha256``,
        ``result_deleted``)."""
        return cls(
            str(asset["result"]),
            asset.get("result_size"),
            None if asset.get("result_sha256") is None else bytes(asset["result_sha256"]),
            bool(asset.get("result_deleted")),
        )


class Sender(Protocol):
    async def send_text(
        self, to: Recipient, html_text: str, button: InlineButton | None
    ) -> int | None:
        """Send an HTML message (with one inline button); return Telegram's message id."""
        ...

    async def send_video(self, to: Recipient, video: VideoRef, caption_html: str) -> int | None:
        """Send a video with an HTML caption; return Telegram's message id."""
        ...


@runtime_checkable
class EditsMessages(Protocol):
    """A transport that can edit a message it sent (the Telegram adapter, the console)."""

    async def edit_text(
        self, to: Recipient, message_id: int, html_text: str, buttons: Sequence[InlineButton]
    ) -> None:
        """Replace the text (and the buttons, one per row) of the bot's message
        ``message_id``; ``MessageGone`` when it no longer exists or cannot be edited."""
        ...


@runtime_checkable
class GuardsDepartures(Protocol):
    """A transport whose messages pass a pacer's last guard (``Pacer.ready``, ``depart``,
    ``Pacer.go``) as they leave (the Telegram adapter): the notifier then does not do it
    first."""

    def guards_departures(self, pacer: Pacer) -> bool:
        """Whether every message sent through this transport passes ``pacer.go``, and calls
        ``depart`` before its first request leaves."""
        ...


class Withdrawn(Exception):
    """Raised by a departure mark (``departing``): the send must not leave (its row's lease
    was lost, or the mark could not be written), and nothing of it has."""


@dataclass
class _Departure:
    mark: Callable[[], Awaitable[None]]
    marked: bool = False


# The departure mark of the send under way in this task (see ``departing``).
_departure: contextvars.ContextVar[_Departure | None] = contextvars.ContextVar(
    "vidretry_departure", default=None
)


@contextlib.contextmanager
def departing(mark: Callable[[], Awaitable[None]]) -> Iterator[None]:
    """A send within: ``mark`` (the notifier's mark that the send has begun, on which a
    crash is charged to its row) is awaited once, by ``depart``, as the send's first request
    is about to leave: after the message is rendered and built, after its turn at the
    pacer's guard, before its upload. A row is charged a crash only once its message is
    really going out, not while it waits its turn behind another one's (the one that
    crashed)."""
    token = _departure.set(_Departure(mark))
    try:
        yield
    finally:
        _departure.reset(token)


async def depart() -> None:
    """A request of the send under way is about to leave: the send's mark, the first time
    (``Withdrawn`` from it: nothing may leave). Nothing outside ``departing``."""
    departure = _departure.get()
    if departure is not None and not departure.marked:
        departure.marked = True
        await departure.mark()


@dataclass(frozen=True)
class VideoFile:
    """A video Telegram already has: how to send it again without an upload (the document's
    id, access hash and file reference), and where it came from (the message it was first
    sent in), to fetch a fresh reference when Telegram expires this one."""

    document_id: int
    access_hash: int
    file_reference: bytes
    origin_chat_id: int
    origin_access_hash: int | None
    origin_message_id: int


@dataclass(frozen=True)
class SentVideo:
    message_id: int | None
    file: VideoFile  # the reference that worked, or the new one (an upload, a refresh)


@runtime_checkable
class SharesVideos(Protocol):
    """A transport that can send a video it sent before by reference (the Telegram adapter)."""

    async def send_video_file(
        self, to: Recipient, video: VideoRef, caption_html: str, file: VideoFile | None
    ) -> SentVideo:
        """Send ``file`` by reference (refreshing an expired reference from its origin), or
        upload ``video`` when there is none or it is gone for good."""
        ...


class DeliveryError(VidretryError):
    """A message could not be delivered; subclasses say what to do about it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RecipientRefused(DeliveryError):
    """Permanent for this recipient (blocked the bot, deactivated, never started it)."""


class MessageRefused(DeliveryError):
    """Permanent for this message (too long, bad markup, missing file): a bug to look at."""


class MessageGone(DeliveryError):
    """The message to edit is no more: deleted by the user, or no longer editable."""


class StoreDown(DeliveryError):
    """The video's store cannot be reached: this message waits for it, uncharged, as one
    waits for Telegram; Telegram is fine, and every other message goes on."""


class SendLater(DeliveryError):
    """Transient. With ``seconds`` (a flood wait) every send pauses that long; without,
    the row backs off exponentially."""

    def __init__(self, reason: str, seconds: float | None = None) -> None:
        super().__init__(reason)
        self.seconds = seconds


class TelegramDown(DeliveryError):
    """Telegram is failing everybody, not this message: the connection is lost, a request
    timed out, or a server error (5xx such as RPC_CALL_FAIL). Every send pauses; the row is
    not charged. ``connection_lost``: no request can go out at all (an outage for certain);
    ``seconds``: Telegram said how long to wait (a flood wait on login)."""

    def __init__(
        self, reason: str, seconds: float | None = None, *, connection_lost: bool = False
    ) -> None:
        super().__init__(reason)
        self.seconds = seconds
        self.connection_lost = connection_lost


def render(template: str, name: str, **more: str) -> str:
    """A message template with the asset name (and ``more`` values) inserted, HTML-escaped: a
    name such as ``<b>x</b> & y`` is shown literally."""
    values = {key: html.escape(value, quote=False) for key, value in more.items()}
    return template.format(name=html.escape(name, quote=False), **values)


def callback_data(asset_id: int, generation: int | None) -> str:
    """The retry button's data; without a generation, the seed's ``retry_video:<id>``, what
    a host bot's own handler parses (a send-only notifier's buttons)."""
    if generation is None:
        data = f"{CALLBACK_PREFIX}:{asset_id}"
    else:
        data = CALLBACK_FORMAT.format(asset_id=asset_id, generation=generation)
    assert len(data.encode()) <= MAX_CALLBACK_BYTES
    return data


def cancel_data(asset_id: int, generation: int) -> str:
    data = CANCEL_FORMAT.format(asset_id=asset_id, generation=generation)
    assert len(data.encode()) <= MAX_CALLBACK_BYTES
    return data


@dataclass(frozen=True)
class ButtonPress:
    asset_id: int
    generation: int | None
    cancel: bool = False  # the cancel button; else the retry button


def parse_callback_data(data: bytes) -> ButtonPress | None:
    """The asset (and generation) a retry or cancel button names, or None for anything else.

    Accepts ``retry_video:<id>:<generation>`` (current), ``retry_video:<id>`` and the legacy
    ``retry_video_<id>``; and ``cancel_video:<id>:<generation>``. Ids are plain decimal
    digits that fit a bigint.
    """
    if not 1 <= len(data) <= MAX_CALLBACK_BYTES:
        return None
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return None
    cancel = text.startswith(CANCEL_PREFIX + ":")
    if cancel:
        parts = text[len(CANCEL_PREFIX) + 1 :].split(":")
        if len(parts) != 2:
            return None
    elif text.startswith(CALLBACK_PREFIX + ":"):
        parts = text[len(CALLBACK_PREFIX) + 1 :].split(":")
    elif text.startswith(CALLBACK_PREFIX + "_"):
        parts = [text[len(CALLBACK_PREFIX) + 1 :]]
    else:
        return None
    if not 1 <= len(parts) <= 2 or not all(_is_number(p, _MAX_ID_DIGITS) for p in parts):
        return None
    asset_id = int(parts[0])
    generation = int(parts[1]) if len(parts) == 2 else None
    if not 1 <= asset_id <= 2**63 - 1:
        return None
    if generation is not None and generation > _MAX_GENERATION:
        return None
    return ButtonPress(asset_id, generation, cancel)


def _is_number(text: str, max_digits: int) -> bool:
    return 1 <= len(text) <= max_digits and text.isascii() and text.isdigit()


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

    def take_over(self) -> None:
        """A new leader's pacer: the leader before it may have sent up to the limit in the
        second before it stopped, and to any chat within its interval (a standby takes over
        the moment a leader resigns). Nothing is sent before both have passed; the rows wait
        for their slots, unmarked, as in a flood wait."""
        self.pause(max(WINDOW_SECONDS, self.chat_interval))

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
            now = self.monotonic()
            wait = self._sent_in_chat.get(chat_id, -1e9) + self.chat_interval - now
            if len(self._recent_sends) == self._recent_sends.maxlen:
                wait = max(wait, self._recent_sends[0] + WINDOW_SECONDS - now)
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
                if len(self._recent_sends) == self._recent_sends.maxlen:
                    wait = self._recent_sends[0] + WINDOW_SECONDS - self.monotonic()
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
