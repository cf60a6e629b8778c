"""The Telegram adapter, logged in as a bot through Telethon: the only module importing it.

It sends messages for the notifier (a ``Sender``), answers the retry button and ``/start``,
and translates every Telethon error into vidretry's own outcomes, so the core never sees one.
The bot token is never logged, printed or put in an error message.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Awaitable, Callable
from typing import Any

from telethon import Button, TelegramClient, errors, events, functions, types

from vidretry.buttons import ButtonService, Press
from vidretry.config import TelegramConfig
from vidretry.delivery import InlineButton, MessageRefused, Recipient, RecipientRefused, SendLater
from vidretry.errors import ConfigError, TelegramUnavailable

log = logging.getLogger("vidretry.telegram")

_TOKEN_SHAPE = re.compile(r"^\d{1,20}:[A-Za-z0-9_-]{20,}$")

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
_TRANSIENT = (errors.ServerError, ConnectionError, OSError, asyncio.TimeoutError)
# Cleaning up after a press: Telegram may refuse, and that is fine.
_CLEANUP_REFUSED = (
    errors.QueryIdInvalidError,
    errors.MessageNotModifiedError,
    errors.MessageDeleteForbiddenError,
    errors.MessageIdInvalidError,
    errors.MessageEditTimeExpiredError,
)


def check_settings(config: TelegramConfig) -> str:
    """The bot token, after checking that everything a login needs is configured."""
    if config.api_id is None:
        raise ConfigError("[telegram] api_id is not set (get it at my.telegram.org)")
    if not config.api_hash:
        raise ConfigError("[telegram] api_hash is not set (or VIDRETRY_TELEGRAM_API_HASH)")
    token = config.bot_token
    if not token:
        raise ConfigError("[telegram] bot_token is not set (or VIDRETRY_TELEGRAM_BOT_TOKEN)")
    if not _TOKEN_SHAPE.match(token):
        raise ConfigError(
            "[telegram] bot_token is malformed: expected <digits>:<secret> from @BotFather"
        )
    return token


def build_client(config: TelegramConfig) -> TelegramClient:
    """A Telethon client for the bot. No I/O: nothing connects until ``TelegramBot.start``."""
    return TelegramClient(
        str(config.session),
        config.api_id,
        config.api_hash,
        # FloodWaitError must reach us (to reschedule the row), not sleep inside Telethon.
        flood_sleep_threshold=0,
        connection_retries=3,
        retry_delay=1,
        request_retries=1,
        # Raise Telegram's own error after the last try, not a generic ValueError.
        raise_last_call_error=True,
        timeout=15,
    )


class TelegramBot:
    """Sends through one logged-in Telethon client and serves the retry button."""

    def __init__(self, client: TelegramClient) -> None:
        self.client = client

    async def start(self, bot_token: str) -> None:
        """Connect and log in as the bot; a refusal or no connection is TelegramUnavailable."""
        try:
            await self.client.start(bot_token=bot_token)
        except _BOT_REFUSED as exc:
            raise TelegramUnavailable(f"Telegram refused the bot token ({_code(exc)})") from None
        except errors.FloodWaitError as exc:
            raise TelegramUnavailable(
                f"Telegram asks to wait {exc.seconds}s before logging in again"
            ) from None
        except (TimeoutError, ConnectionError, OSError) as exc:
            raise TelegramUnavailable(f"Telegram unreachable: {_describe(exc)}") from None
        me = await self.client.get_me()
        log.info("logged in to Telegram as @%s", getattr(me, "username", None) or me.id)

    async def stop(self) -> None:
        await self.client.disconnect()

    async def disconnected(self) -> None:
        """Returns when the connection is closed for good; raises TelegramUnavailable if
        Telegram dropped the bot (its token revoked)."""
        try:
            await self.client.disconnected
        except _BOT_REFUSED as exc:
            raise TelegramUnavailable(f"Telegram dropped the bot ({_code(exc)})") from None
        except (ConnectionError, OSError) as exc:
            raise TelegramUnavailable(
                f"lost the connection to Telegram: {_describe(exc)}"
            ) from None

    # -- Sender -------------------------------------------------------------------------

    async def send_text(
        self, to: Recipient, html_text: str, button: InlineButton | None
    ) -> int | None:
        buttons = [[Button.inline(button.text, button.data.encode())]] if button else None
        message = await self._sending(
            lambda peer: self.client.send_message(
                peer, html_text, parse_mode="html", buttons=buttons
            ),
            to,
        )
        return int(message.id)

    async def send_video(self, to: Recipient, path: str, caption_html: str) -> int | None:
        if not os.path.isfile(path):  # noqa: ASYNC240 (one stat, not worth a thread)
            raise MessageRefused(f"video file missing: {path}")
        message = await self._sending(
            lambda peer: self.client.send_file(
                peer, path, caption=caption_html, parse_mode="html", supports_streaming=True
            ),
            to,
        )
        return int(message.id)

    async def _sending(self, send: Callable[[Any], Awaitable[Any]], to: Recipient) -> Any:
        try:
            return await send(_peer(to))
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
        except (errors.RPCError, *_TRANSIENT) as exc:
            raise SendLater(_describe(exc)) from None

    # -- the button and /start ------------------------------------------------------------

    def serve(self, buttons: ButtonService) -> None:
        """Answer retry buttons and private messages through Telethon's update loop."""

        async def on_press(event: events.CallbackQuery.Event) -> None:
            await self._on_press(event, buttons)

        async def on_message(event: events.NewMessage.Event) -> None:
            await self._on_message(event, buttons)

        self.client.add_event_handler(on_press, events.CallbackQuery())
        self.client.add_event_handler(on_message, events.NewMessage(incoming=True))

    async def _on_press(self, event: events.CallbackQuery.Event, buttons: ButtonService) -> None:
        sender = await event.get_input_sender()
        reply = await buttons.press(
            Press(event.sender_id, getattr(sender, "access_hash", None), bytes(event.data or b""))
        )
        # Answer first: delete/edit/respond would otherwise answer empty in the background.
        try:
            await event.answer(reply.answer[:200])
        except _CLEANUP_REFUSED as exc:
            log.info("press by %s: answer refused (%s)", event.sender_id, _code(exc))
        if reply.remove_button:
            await self._remove_button(event)
        try:
            if reply.video:
                await self.client.send_file(
                    sender, reply.video, caption=reply.message, parse_mode="html"
                )
            elif reply.message:
                await self.client.send_message(sender, reply.message, parse_mode="html")
        except (errors.RPCError, ConnectionError, OSError, ValueError) as exc:
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

    async def _on_message(self, event: events.NewMessage.Event, buttons: ButtonService) -> None:
        if not event.is_private:
            return
        sender = await event.get_input_sender()
        text = await buttons.greet(event.sender_id, getattr(sender, "access_hash", None))
        if (event.raw_text or "").startswith("/start"):
            await event.respond(text, parse_mode="html")


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
