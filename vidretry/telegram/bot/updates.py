"""Receiving through Telegram: the retry and cancel buttons' presses, private messages (the
bot's conversation, then each plugin's handlers, then the unknown-command answer) and the
command menu. Every answer keeps to the same pacing as the outbox's messages.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from types import ModuleType
from typing import Any

from telethon import Button, TelegramClient, errors, events, functions, types

from vidretry.telegram.bot.client import BotClient, sending_to
from vidretry.telegram.bot.outcomes import CLEANUP_REFUSED, TELEGRAM_DOWN, code, describe
from vidretry.telegram.bot.upload import VideoSender
from vidretry.telegram.buttons import ButtonService
from vidretry.telegram.callback_data import parse_callback_data
from vidretry.telegram.conversation import Conversation, Outgoing
from vidretry.telegram.pacing import Pacer
from vidretry.telegram.transport import DeliveryError, Incoming, Recipient, VideoRef
from vidretry.telegram.videos import VideoFiles

log = logging.getLogger("vidretry.telegram")


class Updates:
    """Serves the updates one client receives, answering through ``videos`` and ``pacer``."""

    def __init__(self, client: TelegramClient, pacer: Pacer | None, videos: VideoSender) -> None:
        self.client = client
        self.pacer = pacer
        self.sender = videos
        # The stored video references, shared with the notifier (``serve`` sets them): the
        # bot's own answers send a finished video by reference too.
        self.videos: VideoFiles | None = None
        # Told of every acceptance message sent (``serve`` sets it): the progress editor.
        self.accepted: Callable[[int, int, int, str], Awaitable[None]] | None = None

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
        except (errors.RPCError, *TELEGRAM_DOWN) as exc:
            log.warning("could not register the command menu (%s)", describe(exc))

    async def _on_press(self, event: events.CallbackQuery.Event, buttons: ButtonService) -> None:
        sender = await event.get_input_sender()
        reply = await buttons.press(
            Incoming(
                event.sender_id,
                getattr(sender, "access_hash", None),
                data=bytes(event.data or b""),
                lang_code=_lang_code(event),
            )
        )
        # Answer first: delete/edit/respond would otherwise answer empty in the background.
        try:
            await event.answer(reply.answer[:200])
        except CLEANUP_REFUSED as exc:
            log.info("press by %s: answer refused (%s)", event.sender_id, code(exc))
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
            log.warning("press by %s: follow-up not sent (%s)", event.sender_id, describe(exc))

    async def _remove_button(self, event: events.CallbackQuery.Event) -> None:
        """Delete the message; when Telegram will not (older than 48 hours), drop its keyboard."""
        try:
            affected = await event.delete()
            if any(getattr(a, "pts_count", 1) for a in affected or [None]):
                return
        except CLEANUP_REFUSED as exc:
            log.info("message %s not deleted (%s): editing instead", event.message_id, code(exc))
        try:
            await self.client(
                functions.messages.EditMessageRequest(
                    peer=await event.get_input_chat(),
                    id=event.message_id,
                    reply_markup=types.ReplyInlineMarkup(rows=[]),
                )
            )
        except CLEANUP_REFUSED as exc:
            log.info("message %s keeps its button (%s)", event.message_id, code(exc))

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
            except (errors.RPCError, ValueError, DeliveryError, *TELEGRAM_DOWN) as exc:
                log.warning("answer to %s not sent (%s)", event.sender_id, describe(exc))
                return

    async def _send_answer_video(
        self, to: Recipient, video: VideoRef, caption_html: str, key: tuple[int, int] | None
    ) -> None:
        """A finished video in an answer: by its stored reference (or uploaded once and
        stored), like the outbox's; a plain upload without a key."""
        if self.videos is None or key is None:
            await self.sender.upload(to, video, caption_html)
            return
        async with self.videos.in_turn(key):
            await self.videos.send(self.sender, key, to, video, caption_html)

    @contextlib.asynccontextmanager
    async def _turn(self, chat_id: int) -> AsyncIterator[None]:
        """Every message the bot sends keeps to the same limits as the outbox's: wait for the
        chat's turn, send inside (the message passes the pacer's guard as it leaves), and
        the chat's interval counts from when it is done."""
        if self.pacer is None:
            yield
            return
        await self.pacer.turn(chat_id)
        if not isinstance(self.client, BotClient):  # its client guards departures, or this
            await self.pacer.go(chat_id)
        sending = sending_to.set(chat_id)
        try:
            yield
        finally:
            sending_to.reset(sending)
            self.pacer.sent(chat_id)


async def _incoming(event: events.NewMessage.Event) -> Incoming:
    """A private message as the conversation reads it."""
    sender = await event.get_input_sender()
    return Incoming(
        event.sender_id,
        getattr(sender, "access_hash", None),
        text=event.raw_text or "",
        lang_code=_lang_code(event),
    )


def _lang_code(event: Any) -> str | None:
    """The language of the sender's Telegram app (``User.lang_code``, given to bots only),
    from the users the update carries (``event.sender``: no request is made for it). None
    when Telegram gives none."""
    lang = getattr(getattr(event, "sender", None), "lang_code", None)
    return lang if isinstance(lang, str) and lang else None
