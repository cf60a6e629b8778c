"""Sending a text message through Telegram, with its button, and editing one the bot sent."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from telethon import Button, TelegramClient, errors, types
from telethon.extensions import html

from vidretry.telegram.bot.outcomes import MESSAGE_GONE, code, sending
from vidretry.telegram.transport import InlineButton, MessageGone, Recipient


async def send_text(
    client: TelegramClient, to: Recipient, html_text: str, button: InlineButton | None
) -> int:
    buttons = [[Button.inline(button.text, button.data.encode())]] if button else None
    text, entities = _parsed_html(html_text)
    message = await sending(
        lambda peer: (
            client.send_message(peer, text, formatting_entities=entities, buttons=buttons)
            if entities is not None
            else client.send_message(peer, html_text, parse_mode="html", buttons=buttons)
        ),
        to,
    )
    return int(message.id)


async def edit_text(
    client: TelegramClient,
    to: Recipient,
    message_id: int,
    html_text: str,
    buttons: Sequence[InlineButton],
) -> None:
    markup = [[Button.inline(b.text, b.data.encode())] for b in buttons] or None
    try:
        await sending(
            lambda peer: client.edit_message(
                peer, message_id, text=html_text, parse_mode="html", buttons=markup
            ),
            to,
            passing=(errors.MessageNotModifiedError, *MESSAGE_GONE),
        )
    except errors.MessageNotModifiedError:
        return  # it already says this
    except MESSAGE_GONE as exc:
        raise MessageGone(f"message {message_id} cannot be edited: {code(exc)}") from None


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
