"""Telegram's side of the wire, in-process: the real Telethon client talks to this.

Only the network layer is replaced: ``FakeSender`` duck-types Telethon's ``MTProtoSender`` and
is assigned to ``client._sender`` before ``client.start(bot_token=...)``. Every request is
serialised with ``bytes(request)`` as the wire would, recorded, and answered with a realistic
TL object, or with an RPC error built by ``rpc_message_to_error`` as Telethon builds them from
the wire. Button presses and messages are fed through Telethon's real update loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from telethon import TelegramClient, errors, functions, types
from telethon.crypto import AuthKey
from telethon.network import MTProtoSender

BOT_ID = 777000
BOT_TOKEN = f"{BOT_ID}:AAH-test-token-that-is-not-real-123456"


@dataclass
class Injected:
    request_type: type
    message: str
    code: int
    times: int
    when: Callable[[Any], bool]


@dataclass
class FakeTelegram:
    """The server: known users, the bot's login, captured requests and injected errors."""

    valid_token: str = BOT_TOKEN
    requests: list[Any] = field(default_factory=list)
    users: dict[int, types.User] = field(default_factory=dict)
    authorized: bool = False
    injected: list[Injected] = field(default_factory=list)
    pts: int = 10
    message_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))
    query_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(5_000_000))
    # Set when a request of a given type arrives, so tests can wait for effects.
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    # An outage of the network: connecting fails, and connections are dropped.
    reachable: bool = True
    # Seconds before a request of a type is answered (a slow upload).
    delays: dict[type, float] = field(default_factory=dict)
    senders: list[FakeSender] = field(default_factory=list)
    # Uploads: the bytes received, and the link's bandwidth (None: instant). File parts
    # share the link: each waits for the ones before it.
    uploaded_bytes: int = 0
    # Each file being uploaded (by the client's file id), hashed as its parts arrive, and
    # the documents made of them: each one's size and SHA-256, as Telegram would store it.
    uploads: dict[int, Upload] = field(default_factory=dict)
    received: dict[int, tuple[int, bytes]] = field(default_factory=dict)
    upload_bytes_per_second: float | None = None
    upload_busy_until: float = 0.0
    # Documents by id, each with its current file reference; references no longer valid;
    # the messages the bot sent, by (chat, message id), for messages.getMessages.
    documents: dict[int, types.Document] = field(default_factory=dict)
    expired_references: set[bytes] = field(default_factory=set)
    messages: dict[tuple[int, int], types.Message] = field(default_factory=dict)
    document_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(7_000))
    # Expire every file reference right after each upload (the reference the upload's
    # message carries is stale at once): the refresh path, on demand.
    expire_after_upload: bool = False
    # When each request in ``requests`` arrived (monotonic seconds).
    arrived_at: list[float] = field(default_factory=list)
    # Every request as it came over the wire, wrappers (invokeWithoutUpdates) and all.
    wire: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.bot = types.User(
            id=BOT_ID, access_hash=0x0B07, bot=True, first_name="vidretry", username="vidretry_bot"
        )

    # -- test controls ---------------------------------------------------------------

    def add_user(
        self,
        user_id: int,
        access_hash: int | None = None,
        name: str = "user",
        lang_code: str | None = None,
    ) -> types.User:
        """A Telegram user; ``lang_code`` is their app's language, as bots see it."""
        user = types.User(
            id=user_id,
            access_hash=access_hash or user_id * 1000 + 7,
            first_name=name,
            lang_code=lang_code,
        )
        self.users[user_id] = user
        return user

    def fail(
        self,
        request_type: type,
        message: str,
        code: int = 400,
        *,
        times: int = 1,
        when: Callable[[Any], bool] = lambda request: True,
    ) -> None:
        """Answer the next ``times`` matching requests with the RPC error ``message``."""
        self.injected.append(Injected(request_type, message, code, times, when))

    def sent(self, request_type: type = functions.messages.SendMessageRequest) -> list[Any]:
        return [r for r in self.requests if isinstance(r, request_type)]

    def press(self, client: TelegramClient, user_id: int, data: bytes, msg_id: int) -> int:
        """A user presses an inline button: an update through the client's real update loop."""
        query_id = next(self.query_ids)
        update = types.UpdateBotCallbackQuery(
            query_id=query_id,
            user_id=user_id,
            peer=types.PeerUser(user_id),
            msg_id=msg_id,
            chat_instance=4242,
            data=data,
        )
        client._updates_queue.put_nowait(
            types.Updates([update], [self.users[user_id]], [], self._now(), 0)
        )
        return query_id

    def write(
        self, client: TelegramClient, user_id: int, text: str, *, group: int | None = None
    ) -> None:
        """A user writes to the bot (e.g. /start), in private or in the basic group ``group``."""
        chats = []
        if group is not None:
            chats = [types.Chat(group, "a group", types.ChatPhotoEmpty(), 3, self._now(), 1)]
        message = types.Message(
            id=next(self.message_ids),
            peer_id=types.PeerUser(user_id) if group is None else types.PeerChat(group),
            date=self._now(),
            message=text,
            from_id=types.PeerUser(user_id),
        )
        self.pts += 1
        update = types.UpdateNewMessage(message, self.pts, 1)
        client._updates_queue.put_nowait(
            types.Updates([update], [self.users[user_id]], chats, self._now(), 0)
        )

    def expire_file_references(self) -> None:
        """Telegram expires file references after some hours: every document gets a new
        one, and sending by an old one fails with FILE_REFERENCE_EXPIRED."""
        for doc_id, doc in self.documents.items():
            self.expired_references.add(doc.file_reference)
            fresh = doc.file_reference[:-4] + (
                int.from_bytes(doc.file_reference[-4:]) + 1
            ).to_bytes(4)
            self.documents[doc_id] = _with_reference(doc, fresh)

    def upload_delay(self, request: Any) -> float:
        """Seconds until a file part is through the link (0 without a bandwidth limit)."""
        if self.upload_bytes_per_second is None or not isinstance(request, _FILE_PARTS):
            return 0.0
        now = time.monotonic()
        start = max(now, self.upload_busy_until)
        self.upload_busy_until = start + len(request.bytes) / self.upload_bytes_per_second
        return self.upload_busy_until - now

    def go_offline(self) -> None:
        """The network is gone: live connections drop (as after Telethon's own retries), and
        every new connection fails until ``go_online``."""
        self.reachable = False
        for sender in self.senders:
            sender.drop(ConnectionError("Connection to Telegram failed 2 time(s)"))

    def go_online(self) -> None:
        self.reachable = True

    def connected(self) -> int:
        return sum(sender.is_connected() for sender in self.senders)

    def on_connection(self, connected: bool) -> None:
        """Who is connected changed (subclasses log it)."""
        self.arrived.set()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self.arrived.clear()
                await self.arrived.wait()

    # -- the server ------------------------------------------------------------------

    def answer(self, request: Any, arrived: float | None = None) -> Any:
        """Telegram's answer to ``request``, which reached it at ``arrived`` (monotonic
        seconds; None: now): what a rate is measured on, not the moment it is answered."""
        arrived = time.monotonic() if arrived is None else arrived
        bytes(request)  # serialise exactly as the wire would; a malformed request fails here
        self.wire.append(_as_recorded(request))
        # invokeWithoutUpdates (a send-only client's every request) wraps the request itself.
        while isinstance(request, functions.InvokeWithoutUpdatesRequest):
            request = request.query
        self.requests.append(_as_recorded(request))
        self.arrived_at.append(arrived)
        self.arrived.set()
        for injected in self.injected:
            if (
                isinstance(request, injected.request_type)
                and injected.times > 0
                and injected.when(request)
            ):
                injected.times -= 1
                raise errors.rpc_message_to_error(
                    types.RpcError(injected.code, injected.message), request
                )
        handler = _HANDLERS.get(type(request))
        if handler is None:
            raise AssertionError(f"the Telegram double does not answer {type(request).__name__}")
        return handler(self, request)

    def _now(self) -> datetime:
        return datetime.now(UTC).replace(microsecond=0)

    def _media(self, request: Any) -> types.MessageMediaDocument:
        """The document a sendMedia carries: a new one for an upload, or the one an
        InputMediaDocument names, if its reference is current."""
        media = request.media
        if isinstance(media, types.InputMediaUploadedDocument):
            doc_id = next(self.document_ids)
            reference = b"ref:" + doc_id.to_bytes(8) + bytes(4)  # the last 4 bytes: a version
            upload = self.uploads.pop(media.file.id, Upload())
            if upload.next_part != media.file.parts or upload.early:
                invalid = types.RpcError(400, "FILE_PARTS_INVALID")
                raise errors.rpc_message_to_error(invalid, request)
            size = upload.size
            self.received[doc_id] = (size, upload.digest.digest())
            doc = types.Document(
                id=doc_id, access_hash=doc_id * 31 + 5, file_reference=reference,
                date=self._now(), mime_type=media.mime_type, size=size, dc_id=2,
                attributes=media.attributes,
            )  # fmt: skip
            self.documents[doc_id] = doc
            if self.expire_after_upload:
                self.expire_file_references()
            return types.MessageMediaDocument(document=doc)
        if isinstance(media, types.InputMediaDocument):
            wanted = media.id
            doc = self.documents.get(wanted.id)
            if doc is None or doc.access_hash != wanted.access_hash:
                raise errors.rpc_message_to_error(types.RpcError(400, "MEDIA_EMPTY"), request)
            if wanted.file_reference != doc.file_reference:
                expired = wanted.file_reference in self.expired_references
                code = "FILE_REFERENCE_EXPIRED" if expired else "FILE_REFERENCE_INVALID"
                raise errors.rpc_message_to_error(types.RpcError(400, code), request)
            return types.MessageMediaDocument(document=doc)
        return types.MessageMediaDocument(document=types.DocumentEmpty(1))

    def _message_updates(self, request: Any, message_text: str, media: Any = None) -> types.Updates:
        message_id = next(self.message_ids)
        peer = _peer_of(request.peer)
        message = types.Message(
            id=message_id,
            peer_id=peer,
            date=self._now(),
            message=message_text,
            out=True,
            from_id=types.PeerUser(BOT_ID),
            reply_markup=getattr(request, "reply_markup", None),
            entities=getattr(request, "entities", None),
            media=media,
        )
        self.messages[peer.user_id, message_id] = message
        self.pts += 1
        return types.Updates(
            [
                types.UpdateMessageID(message_id, request.random_id),
                types.UpdateNewMessage(message, self.pts, 1),
            ],
            # As Telegram does, the entities the update mentions: the bot and the recipient.
            [self.bot, *([self.users[peer.user_id]] if peer.user_id in self.users else [])],
            [],
            self._now(),
            0,
        )


_FILE_PARTS = (functions.upload.SaveFilePartRequest, functions.upload.SaveBigFilePartRequest)


def _as_recorded(request: Any) -> Any:
    """A request as the double keeps it: a file part without its bytes (counted and hashed
    as it arrives), so the uploads of big videos cost the process they run in no memory."""
    if isinstance(request, functions.InvokeWithoutUpdatesRequest):
        return functions.InvokeWithoutUpdatesRequest(_as_recorded(request.query))
    if isinstance(request, functions.upload.SaveBigFilePartRequest):
        return functions.upload.SaveBigFilePartRequest(
            request.file_id, request.file_part, request.file_total_parts, b""
        )
    if isinstance(request, functions.upload.SaveFilePartRequest):
        return functions.upload.SaveFilePartRequest(request.file_id, request.file_part, b"")
    return request


def _with_reference(doc: types.Document, reference: bytes) -> types.Document:
    return types.Document(
        id=doc.id, access_hash=doc.access_hash, file_reference=reference, date=doc.date,
        mime_type=doc.mime_type, size=doc.size, dc_id=doc.dc_id, attributes=doc.attributes,
    )  # fmt: skip


@dataclass
class Upload:
    """A file's parts as they arrive: hashed in order (Telethon sends them in order; one
    that comes early waits for its turn), so a big video costs the double no memory."""

    digest: Any = field(default_factory=hashlib.sha256)
    size: int = 0
    next_part: int = 0
    early: dict[int, bytes] = field(default_factory=dict)

    def add(self, number: int, data: bytes) -> None:
        if number < self.next_part:
            return  # sent again (a retry after a lost answer): already counted
        self.early[number] = data
        while self.next_part in self.early:
            part = self.early.pop(self.next_part)
            self.digest.update(part)
            self.size += len(part)
            self.next_part += 1


def _save_part(t: FakeTelegram, r: Any) -> bool:
    t.uploaded_bytes += len(r.bytes)
    t.uploads.setdefault(r.file_id, Upload()).add(r.file_part, r.bytes)
    return True


def _get_messages(t: FakeTelegram, r: Any) -> types.messages.Messages:
    """A bot's messages.getMessages (private chats): each message as it is now, its
    document with the current file reference; MessageEmpty for one that is gone."""
    found: list[Any] = []
    for wanted in r.id:
        stored = next((m for (_, i), m in t.messages.items() if i == wanted.id), None)
        if stored is None:
            found.append(types.MessageEmpty(wanted.id, peer_id=types.PeerUser(0)))
            continue
        media = stored.media
        if isinstance(media, types.MessageMediaDocument) and isinstance(
            media.document, types.Document
        ):
            current = t.documents.get(media.document.id)
            if current is not None:
                stored.media = types.MessageMediaDocument(document=current)
        found.append(stored)
    return types.messages.Messages(found, [], [], [t.bot, *t.users.values()])


def _peer_of(input_peer: Any) -> types.PeerUser:
    if isinstance(input_peer, types.InputPeerUser):
        return types.PeerUser(input_peer.user_id)
    raise AssertionError(f"unexpected peer {input_peer!r}")


def _get_users(t: FakeTelegram, r: Any) -> list[types.User]:
    found = []
    for wanted in r.id:
        if isinstance(wanted, types.InputUserSelf):
            if not t.authorized:
                raise errors.rpc_message_to_error(types.RpcError(401, "AUTH_KEY_UNREGISTERED"), r)
            found.append(t.bot)
        elif wanted.user_id in t.users:
            found.append(t.users[wanted.user_id])
    return found


def _import_bot(t: FakeTelegram, r: Any) -> Any:
    if r.bot_auth_token != t.valid_token:
        raise errors.rpc_message_to_error(types.RpcError(400, "ACCESS_TOKEN_INVALID"), r)
    t.authorized = True
    return types.auth.Authorization(user=t.bot)


def _affected(t: FakeTelegram, r: Any) -> types.messages.AffectedMessages:
    t.pts += len(r.id)
    return types.messages.AffectedMessages(t.pts, len(r.id))


def _edit(t: FakeTelegram, r: Any) -> types.Updates:
    message = types.Message(
        id=r.id,
        peer_id=_peer_of(r.peer),
        date=t._now(),
        message=r.message or "",
        out=True,
        reply_markup=r.reply_markup,
        edit_date=t._now(),
    )
    t.pts += 1
    return types.Updates(
        [types.UpdateEditMessage(message, t.pts, 1)], [t.bot, *t.users.values()], [], t._now(), 0
    )


_HANDLERS: dict[type, Callable[[FakeTelegram, Any], Any]] = {
    functions.InvokeWithLayerRequest: lambda t, r: None,
    functions.users.GetUsersRequest: _get_users,
    functions.auth.ImportBotAuthorizationRequest: _import_bot,
    functions.updates.GetStateRequest: lambda t, r: types.updates.State(t.pts, 0, t._now(), 1, 0),
    functions.updates.GetDifferenceRequest: lambda t, r: types.updates.DifferenceEmpty(t._now(), 1),
    functions.updates.GetChannelDifferenceRequest: lambda t, r: (
        types.updates.ChannelDifferenceEmpty(r.pts, final=True)
    ),
    functions.messages.SendMessageRequest: lambda t, r: t._message_updates(r, r.message),
    functions.messages.SendMediaRequest: lambda t, r: t._message_updates(r, r.message, t._media(r)),
    functions.upload.SaveFilePartRequest: _save_part,
    functions.upload.SaveBigFilePartRequest: _save_part,
    functions.messages.GetMessagesRequest: _get_messages,
    functions.messages.SetBotCallbackAnswerRequest: lambda t, r: True,
    functions.messages.DeleteMessagesRequest: _affected,
    functions.messages.EditMessageRequest: _edit,
    functions.messages.SetTypingRequest: lambda t, r: True,
    functions.bots.SetBotCommandsRequest: lambda t, r: True,
}


def install(client: TelegramClient, telegram: FakeTelegram) -> FakeSender:
    """Replace the client's network layer with the double (before ``client.start``)."""
    sender = FakeSender(telegram, client._updates_queue)
    client._sender = sender
    telegram.senders.append(sender)
    return sender


class FakeSender:
    """Duck-types ``telethon.network.MTProtoSender``: what ``TelegramClient`` calls on it."""

    def __init__(self, telegram: FakeTelegram, updates_queue: asyncio.Queue[Any]) -> None:
        self.telegram = telegram
        # As the real sender does, results that carry updates (sent messages, deletions)
        # also go to the update loop, which keeps Telethon's pts in step with the server.
        self._updates_queue = updates_queue
        self._log = logging.getLogger("tests.telegram.double")
        self.auth_key = AuthKey(b"\x01" * 256)
        self._connected = False
        self._disconnected_future: asyncio.Future[None] | None = None
        # Requests sent and not yet answered (a slow answer): as MTProtoSender's pending
        # states, cancelled by a disconnect (a logout).
        self._pending: set[asyncio.Future[Any]] = set()

    async def connect(self, connection: Any) -> bool:
        if self._connected:
            return False
        if not self.telegram.reachable:
            # What MTProtoSender raises once its connection retries are used up.
            raise ConnectionError("Connection to Telegram failed 2 time(s)")
        self._connected = True
        self._disconnected_future = asyncio.get_running_loop().create_future()
        self.telegram.on_connection(True)
        return True

    def is_connected(self) -> bool:
        return self._connected

    def _transport_connected(self) -> bool:
        return self._connected

    async def disconnect(self) -> None:
        if self._connected:
            self.telegram.on_connection(False)
        self._connected = False
        for future in self._pending:  # as MTProtoSender._disconnect does, with no error
            future.cancel()
        self._pending.clear()
        if self._disconnected_future and not self._disconnected_future.done():
            self._disconnected_future.set_result(None)

    def drop(self, error: Exception) -> None:
        """The connection is lost and reconnecting failed: ``client.disconnected`` raises."""
        if self._connected:
            self.telegram.on_connection(False)
        self._connected = False
        if self._disconnected_future and not self._disconnected_future.done():
            self._disconnected_future.set_exception(error)

    @property
    def disconnected(self) -> asyncio.Future[None]:
        assert self._disconnected_future is not None
        return asyncio.shield(self._disconnected_future)

    def _keepalive_ping(self, rnd_id: int) -> None:
        pass

    def send(self, request: Any, ordered: bool = False) -> Any:
        if isinstance(request, list):
            return [self._one(r) for r in request]
        return self._one(request)

    def _one(self, request: Any) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if not self._connected:
            raise ConnectionError("Cannot send requests while disconnected")
        # Stamped as it leaves the client: the double's own work (serialising the request,
        # answering it) must not move the time a rate is measured on. A file part arrives
        # once it is through the link; a slow answer is slow after its request arrived.
        through = self.telegram.upload_delay(request)
        arrived = time.monotonic() + through
        delay = (self.telegram.delays.get(type(request)) or 0) + through
        if delay:
            self._pending.add(future)
            future.add_done_callback(self._pending.discard)
            asyncio.get_running_loop().call_later(delay, self._answer, request, future, arrived)
        else:
            self._answer(request, future, arrived)
        return future

    def _answer(self, request: Any, future: asyncio.Future[Any], arrived: float) -> None:
        if future.done():  # the caller gave up (cancelled) meanwhile
            return
        if not self._connected:
            future.set_exception(ConnectionError("the connection was lost"))
            return
        try:
            result = self.telegram.answer(request, arrived)
        except errors.RPCError as exc:
            future.set_exception(exc)
        else:
            MTProtoSender._store_own_updates(self, result)  # type: ignore[arg-type]
            future.set_result(result)
