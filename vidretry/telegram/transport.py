"""What the notifier needs from a transport: the ``Sender`` protocol, the records it sends
(and the one it receives: ``Incoming``), the exceptions it reports trouble with, and the
departure mark (``departing``, ``depart``) a send makes as it is about to leave.

A ``Sender`` (the Telegram adapter, or the console) delivers one message and reports trouble
only through the exceptions below, so the notifier never sees a library's own errors.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from vidretry.errors import VidretryError

if TYPE_CHECKING:
    from vidretry.telegram.pacing import Pacer


@dataclass(frozen=True)
class Recipient:
    user_id: int
    chat_id: int
    access_hash: int | None


@dataclass(frozen=True)
class Incoming:
    """What a user sent the bot, as its services read it (``Conversation.handle`` a private
    message's ``text``, ``ButtonService.press`` a pressed button's ``data``): who sent it,
    the access hash to answer them by, and their app's language, as Telegram gives it."""

    user_id: int
    access_hash: int | None
    text: str = ""
    data: bytes = b""
    lang_code: str | None = None


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
