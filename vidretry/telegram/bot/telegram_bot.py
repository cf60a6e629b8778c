"""The bot, logged in through Telethon: what the notifier sends through (a ``Sender`` that
shares videos and edits messages) and where the buttons' presses and private messages land.

It holds the parts, each in its module: the client (``client``), its connection
(``connection``), sending texts (``messages``) and videos (``upload``), and receiving
(``updates``). Every message it sends waits for its turn at the shared ``Pacer``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import ModuleType

from telethon import TelegramClient

from vidretry.results.files import FileStore
from vidretry.results.keeping import Results
from vidretry.telegram.bot import messages
from vidretry.telegram.bot.client import BotClient
from vidretry.telegram.bot.connection import RECONNECT_MAX_SECONDS, BotConnection
from vidretry.telegram.bot.updates import Updates
from vidretry.telegram.bot.upload import VideoSender
from vidretry.telegram.buttons import ButtonService
from vidretry.telegram.conversation import Conversation
from vidretry.telegram.pacing import Pacer
from vidretry.telegram.transport import InlineButton, Recipient, SentVideo, VideoFile, VideoRef
from vidretry.telegram.videos import VideoFiles


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
        self.pacer = pacer
        if isinstance(client, BotClient):
            client.pacer = pacer
        self.connection = BotConnection(
            client, rng=rng, reconnect_max_seconds=reconnect_max_seconds, send_only=send_only
        )
        # Where finished videos are read from ([storage]; without one, local files only).
        self.video_sender = VideoSender(
            client, results or Results(FileStore(Path("/")), scratch=Path("/"))
        )
        self.updates = Updates(client, pacer, self.video_sender)

    # -- the connection -------------------------------------------------------------------

    async def start(self, bot_token: str) -> None:
        """Log in once (``BotConnection.start``)."""
        await self.connection.start(bot_token)

    async def connect(self, bot_token: str, until: asyncio.Event) -> bool:
        """Log in, trying again while Telegram cannot be reached (``BotConnection.connect``)."""
        return await self.connection.connect(bot_token, until)

    async def stay_connected(self, until: asyncio.Event, on_reconnect: Callable[[], None]) -> None:
        """Reconnect whenever the connection is lost (``BotConnection.stay_connected``)."""
        await self.connection.stay_connected(until, on_reconnect)

    async def stop(self) -> None:
        await self.connection.stop()

    # -- Sender ---------------------------------------------------------------------------

    async def send_text(
        self, to: Recipient, html_text: str, button: InlineButton | None
    ) -> int | None:
        return await messages.send_text(self.client, to, html_text, button)

    async def edit_text(
        self, to: Recipient, message_id: int, html_text: str, buttons: Sequence[InlineButton]
    ) -> None:
        await messages.edit_text(self.client, to, message_id, html_text, buttons)

    async def send_video(self, to: Recipient, video: VideoRef, caption_html: str) -> int | None:
        return int((await self.video_sender.upload(to, video, caption_html)).id)

    async def send_video_file(
        self, to: Recipient, video: VideoRef, caption_html: str, file: VideoFile | None
    ) -> SentVideo:
        """By reference, or uploaded (``VideoSender.send_video_file``)."""
        return await self.video_sender.send_video_file(to, video, caption_html, file)

    def guards_departures(self, pacer: Pacer) -> bool:
        """Whether every message this bot sends passes ``pacer.go`` as it leaves (its
        client does that: ``BotClient``), so that its sender need not."""
        return pacer is self.pacer and isinstance(self.client, BotClient)

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
        """Answer the buttons and private messages (``Updates.serve``)."""
        self.updates.serve(buttons, conversation, plugins, videos=videos, accepted=accepted)

    async def register_commands(
        self, commands: Sequence[tuple[str, str]], *, lang_code: str = ""
    ) -> None:
        """Show the bot's commands in Telegram's menu (``Updates.register_commands``)."""
        await self.updates.register_commands(commands, lang_code=lang_code)
