"""A notifier process for the chaos run: the real Notifier and Telethon client, talking to
an in-process Telegram double that answers with random flood waits, server errors and
blocked users. Every message the double accepts is logged, to count duplicate sends."""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from telethon import functions

from tests.telegram.double import BOT_TOKEN, FakeTelegram, install
from vidretry import db
from vidretry.clock import DatabaseClock
from vidretry.config import MessagesConfig, NotifierConfig, TelegramConfig
from vidretry.notifier import Notifier
from vidretry.telegram import TelegramBot, build_client

SENDS = (functions.messages.SendMessageRequest, functions.messages.SendMediaRequest)


def blocked(user_id: int) -> bool:
    return user_id % 37 == 0


class ChaosTelegram(FakeTelegram):
    def __init__(self, log: Path, rng: random.Random) -> None:
        super().__init__()
        self.log = log
        self.rng = rng

    def answer(self, request: Any) -> Any:
        if isinstance(request, SENDS):
            user_id = request.peer.user_id
            if user_id not in self.users:
                self.add_user(user_id)
            roll = self.rng.random()
            if blocked(user_id):
                self.fail(type(request), "USER_IS_BLOCKED", 400)
            elif roll < 0.02:
                self.fail(type(request), "FLOOD_WAIT_1", 420)
            elif roll < 0.06:
                self.fail(type(request), "INTERNAL_SERVER_ERROR", 500)
        result = super().answer(request)  # raises what was injected above
        if isinstance(request, SENDS):
            self._record(request)
        return result

    def _record(self, request: Any) -> None:
        user_id = request.peer.user_id
        if isinstance(request, functions.messages.SendMessageRequest):
            (row,) = request.reply_markup.rows
            key = "failed " + bytes(row.buttons[0].type.data).decode()
        else:
            match = re.search(r"для (\S+) готово", request.message)
            key = "ready " + (match[1] if match else "?")
        with self.log.open("a") as f:
            f.write(f"{key} {user_id} {os.getpid()}\n")


async def main(url: str, log_dir: Path) -> None:
    telegram = ChaosTelegram(log_dir / f"sent-{os.getpid()}.log", random.Random())
    session = Path(tempfile.mkdtemp()) / "bot.session"
    client = build_client(TelegramConfig(api_id=1, api_hash="0" * 32, session=session))
    install(client, telegram)
    bot = TelegramBot(client)
    await bot.start(BOT_TOKEN)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    config = NotifierConfig(rate_per_second=30, lease_seconds=3, poll_interval_seconds=0.2,
                            backoff_base_seconds=0.2, max_attempts=5)  # fmt: skip
    try:
        async with db.open_pool(url, max_size=4) as pool:
            notifier = Notifier(
                url, pool, config, MessagesConfig(), bot,
                clock=DatabaseClock(), rng=random.Random(),
            )  # fmt: skip
            await notifier.run(stop)
    finally:
        await bot.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2])))
