"""Telegram tests: the real Telethon client, only its network layer replaced in-process.

``socket.socket.connect`` (and uvloop's loop, which does not use it) refuse every address but
loopback and unix sockets for the whole of these tests, so nothing can reach Telegram (or
anywhere else) even by mistake.
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.telegram.double import BOT_TOKEN, FakeTelegram, install
from tests.telegram.offline.sitecustomize import loopback_only, loopback_only_uvloop
from vidretry.clock import Clock, DatabaseClock
from vidretry.config import NotifierConfig, TelegramConfig
from vidretry.db import connection
from vidretry.db.listen import Listener
from vidretry.db.pool import open_pool
from vidretry.results.keeping import Results
from vidretry.telegram.bot.client import build_client
from vidretry.telegram.bot.telegram_bot import TelegramBot
from vidretry.telegram.buttons import ButtonService
from vidretry.telegram.conversation import Conversation
from vidretry.telegram.limits import RequestRate
from vidretry.telegram.notifier import Notifier
from vidretry.telegram.pacing import Pacer
from vidretry.telegram.plugins import Priorities, registering
from vidretry.telegram.progress import ProgressEditor
from vidretry.texts import MessagesConfig

ADMIN = 999
WITH_ADMIN = TelegramConfig(admins=(ADMIN,))


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", loopback_only(socket.socket.connect))
    monkeypatch.setattr(socket.socket, "connect_ex", lambda self, address: 111)
    loopback_only_uvloop(monkeypatch.setattr)


@pytest.fixture
def telegram() -> FakeTelegram:
    return FakeTelegram()


@dataclass
class Deployment:
    """A notifier and the bot's button handler, wired as ``vidretry notifier`` wires them."""

    telegram: FakeTelegram
    bot: TelegramBot
    notifier: Notifier
    pool: Any
    editor: ProgressEditor  # runs in ``running(..., edits=True)``

    @property
    def client(self) -> Any:
        return self.bot.client


FAST = NotifierConfig(
    rate_per_second=30,
    per_chat_interval_seconds=0,
    backoff_base_seconds=0,
    poll_interval_seconds=60,
)


@asynccontextmanager
async def deployed(
    db_url: str,
    telegram: FakeTelegram,
    tmp_path: Path,
    *,
    config: NotifierConfig = FAST,
    clock: Clock | None = None,
    name: str = "n1",
    settings: TelegramConfig = WITH_ADMIN,
    plugins: Sequence[ModuleType] = (),
    results: Results | None = None,
    delete_after_delivery: bool = False,
    monotonic: Callable[[], float] = time.monotonic,
) -> AsyncIterator[Deployment]:
    """A notifier and its bot on the double. ``results``: where videos are read from (by
    default any local file); ``delete_after_delivery``: ``[storage]``'s setting; ``clock``
    for SQL and ``monotonic`` for the pacer and the outage tracker (a ``FakeClock``'s two,
    for a test that moves time by hand)."""
    client = build_client(
        TelegramConfig(
            api_id=1, api_hash="0" * 32, bot_token=BOT_TOKEN, session=tmp_path / f"{name}.session"
        ),
        paid_broadcast=config.paid_broadcast,
    )
    install(client, telegram)
    pacer = Pacer(config.rate_per_second, config.per_chat_interval_seconds, monotonic=monotonic)
    bot = TelegramBot(client, pacer=pacer, results=results)
    await bot.start(BOT_TOKEN)
    try:
        async with open_pool(db_url, max_size=4) as pool:
            notifier = Notifier(
                pool,
                config,
                MessagesConfig(),
                bot,
                listener=Listener(db_url),
                clock=clock or DatabaseClock(),
                rng=random.Random(3),
                pacer=pacer,
                monotonic=monotonic,
                name=name,
                results=results if delete_after_delivery else None,
            )
            editor = ProgressEditor(
                pool,
                MessagesConfig(),
                bot,
                pacer,
                interval_seconds=config.progress_edit_seconds,
                listener=Listener(db_url),
                clock=DatabaseClock(),
                rng=random.Random(4),
            )
            async with pool.connection() as conn:  # what a leading notifier writes at start
                await connection.execute(conn, "set_bot_policy", {
                    "admins": list(settings.admins),
                    "per_day": settings.max_retries_per_user_per_day,
                })  # fmt: skip
            bot.serve(
                ButtonService(pool, MessagesConfig(), clock=DatabaseClock()),
                Conversation(
                    pool,
                    MessagesConfig(),
                    settings,
                    clock=DatabaseClock(),
                    rate=RequestRate(settings.requests_per_minute),
                    priorities=Priorities(plugins),
                ),
                registering(plugins),
                videos=notifier.videos,
                accepted=editor.remember,
            )
            yield Deployment(telegram, bot, notifier, pool, editor)
    finally:
        await bot.stop()


@asynccontextmanager
async def running(deployment: Deployment, *, edits: bool = False) -> AsyncIterator[None]:
    """The notifier delivering (and, with ``edits``, keeping acceptances current)."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(deployment.notifier.run(stop))]
    if edits:
        tasks.append(asyncio.create_task(deployment.editor.run(stop)))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
