"""An operator's plugin, as [telegram] plugins loads one: its own command beside vidretry's."""

from typing import Any

from telethon import events

SEEN: list[str] = []


def register(client: Any) -> None:
    @client.on(events.NewMessage(incoming=True))
    async def everything(event: Any) -> None:
        SEEN.append(event.raw_text)  # what reaches the plugin at all

    @client.on(events.NewMessage(incoming=True, pattern=r"^/ping\b"))
    async def ping(event: Any) -> None:
        await event.respond("pong")
        raise events.StopPropagation  # answered: no "unknown command" after it
