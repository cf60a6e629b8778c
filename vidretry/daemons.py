"""How ``vidretry notifier`` is put together: leadership, the bot session, the outbox loop.

One place for the wiring, so the command, the tests and the chaos run start the same thing:
every notifier campaigns; the leader alone logs in to Telegram, answers buttons and sends,
all through one ``Pacer``; standbys hold a database connection and nothing else.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from psycopg_pool import AsyncConnectionPool

from vidretry.buttons import ButtonService
from vidretry.clock import Clock, DatabaseClock
from vidretry.config import Config
from vidretry.conversation import USER_COMMANDS, Conversation
from vidretry.db import Connection, one_line
from vidretry.delivery import Pacer, Sender
from vidretry.leadership import Leadership
from vidretry.limits import RequestRate
from vidretry.loop import TRANSIENT_DB_ERRORS
from vidretry.names import default_process_name
from vidretry.notifier import Notifier
from vidretry.telegram import TelegramBot

log = logging.getLogger("vidretry.daemons")


@dataclass
class NotifierProcess:
    """What one ``vidretry notifier`` runs. ``open_bot`` makes the Telegram session the
    leader logs in with (None: deliver to ``console`` instead)."""

    url: str
    pool: AsyncConnectionPool[Connection]
    config: Config
    open_bot: Callable[[Pacer], TelegramBot] | None = None
    bot_token: str = ""
    console: Sender | None = None
    plugins: Sequence[ModuleType] = ()
    clock: Clock = field(default_factory=DatabaseClock)
    rng: random.Random = field(default_factory=random.Random)
    name: str = field(default_factory=default_process_name)

    async def run(self, stop: asyncio.Event, *, drain: bool = False) -> None:
        """Campaign and, while leading, deliver until ``stop`` (with ``drain``: deliver what
        is due and return; another leader is then a ``RefusedError``)."""
        leadership = Leadership(
            self.pool,
            candidate=self.name,
            lease_seconds=self.config.notifier.lease_seconds,
            clock=self.clock,
        )
        log.info("notifier %s started", self.name)
        await leadership.lead(
            stop, lambda done, lost: self._lead(done, lost, drain), stand_by=not drain
        )
        log.info("notifier %s stopped", self.name)

    async def _lead(self, done: asyncio.Event, lost: asyncio.Event, drain: bool) -> None:
        notifier_config = self.config.notifier
        pacer = Pacer(notifier_config.rate_per_second, notifier_config.per_chat_interval_seconds)
        bot = self.open_bot(pacer) if self.open_bot is not None else None
        sender = bot or self.console
        assert sender is not None, "a notifier needs a bot or a console to deliver to"
        notifier = Notifier(
            self.url,
            self.pool,
            notifier_config,
            self.config.messages,
            sender,
            clock=self.clock,
            rng=self.rng,
            pacer=pacer,
            name=self.name,
        )
        try:  # what a former leader still held is this leader's to send now
            await notifier.rescue(take_over=True)
        except TRANSIENT_DB_ERRORS as exc:
            log.error("could not take over (%s): rows come back as leases expire", one_line(exc))
        if bot is None:
            await notifier.run(done, drain=drain, hurry=lost)
            return
        try:
            if not await bot.connect(self.bot_token, done):
                return
            telegram, messages = self.config.telegram, self.config.messages
            bot.serve(
                ButtonService(
                    self.pool,
                    messages,
                    admins=frozenset(telegram.admins),
                    clock=self.clock,
                    max_retries_per_day=telegram.max_retries_per_user_per_day,
                ),
                Conversation(
                    self.pool,
                    messages,
                    telegram,
                    clock=self.clock,
                    rate=RequestRate(telegram.requests_per_minute),
                ),
                self.plugins,
            )
            await bot.register_commands(
                [(command, getattr(messages, key)) for command, key in USER_COMMANDS]
            )
            await until_first(
                notifier.run(done, drain=drain, hurry=lost),
                bot.stay_connected(done, notifier.outage.probe_now),
                _log_out_when(lost, bot),
            )
        finally:
            await bot.stop()


async def _log_out_when(lost: asyncio.Event, bot: TelegramBot) -> None:
    """A leader whose term ended logs out before anything else: a standby may be elected
    any moment now, and only one bot session may be logged in. Handing rows back can wait."""
    await lost.wait()
    await bot.stop()


async def until_first(*coroutines: Coroutine[Any, Any, None]) -> None:
    """Run until the first coroutine returns or raises; cancel the others."""
    tasks = [asyncio.create_task(c) for c in coroutines]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        task.result()
