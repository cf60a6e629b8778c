"""The bot's connection to Telegram: logging in, and staying connected through outages.

Telethon tries a lost connection once; then this reconnects with capped, jittered backoff,
one log line per try, for as long as it takes. Only a refused token ends it
(``TelegramUnavailable``). The bot token is never logged, printed or put in an error.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine
from typing import Any

from telethon import TelegramClient, errors

from vidretry import backoff
from vidretry.errors import TelegramUnavailable
from vidretry.queue import metrics
from vidretry.telegram.bot.client import NoUpdateFetching
from vidretry.telegram.bot.outcomes import BOT_REFUSED, TELEGRAM_DOWN, code, describe
from vidretry.telegram.transport import TelegramDown

log = logging.getLogger("vidretry.telegram")

# Reconnecting: 1 s doubling to 10 s ([notifier] outage_probe_max_seconds), jittered, so a
# recovered Telegram is found quickly.
RECONNECT_BASE_SECONDS = 1.0
RECONNECT_MAX_SECONDS = 10.0


class BotConnection:
    """One client's login, kept up (a send-only bot's with ``NoUpdateFetching``)."""

    def __init__(
        self,
        client: TelegramClient,
        *,
        rng: random.Random | None = None,
        reconnect_max_seconds: float = RECONNECT_MAX_SECONDS,
        send_only: bool = False,
    ) -> None:
        self.client = client
        self.send_only = send_only
        self.rng = rng or random.Random()  # noqa: S311 (jitter only)
        self.reconnect_max_seconds = reconnect_max_seconds
        # Told when the session connects and when it is lost (the leader records it).
        self.on_connection: Callable[[bool], Coroutine[Any, Any, None]] | None = None
        self._telling: set[asyncio.Task[None]] = set()
        self._token = ""

    async def start(self, bot_token: str) -> None:
        """Connect and log in as the bot, once. A refused token is ``TelegramUnavailable``;
        no connection (or a request to wait) is ``TelegramDown``."""
        self._token = bot_token
        if self.send_only and not isinstance(self.client._sender, NoUpdateFetching):
            self.client._sender = NoUpdateFetching(self.client._sender)
        try:
            await self.client.start(bot_token=bot_token)
        except BOT_REFUSED as exc:
            raise TelegramUnavailable(f"Telegram refused the bot token ({code(exc)})") from None
        except errors.FloodWaitError as exc:
            raise TelegramDown(
                f"Telegram asks to wait {exc.seconds}s before logging in again",
                seconds=float(exc.seconds),
            ) from None
        except TELEGRAM_DOWN as exc:
            raise TelegramDown(f"Telegram unreachable: {describe(exc)}") from None
        me = await self.client.get_me()
        self._connection(True)
        log.info("logged in to Telegram as @%s", getattr(me, "username", None) or me.id)

    async def connect(self, bot_token: str, until: asyncio.Event) -> bool:
        """Log in, trying again while Telegram cannot be reached, with capped, jittered
        backoff and one log line per try. False if ``until`` was set first; a refused token
        raises ``TelegramUnavailable`` (a person must act)."""
        attempt = 0
        while not until.is_set():
            attempt += 1
            try:
                await self.start(bot_token)
            except TelegramDown as exc:
                wait = exc.seconds or backoff.jittered(
                    backoff.exponential(
                        attempt,
                        min(RECONNECT_BASE_SECONDS, self.reconnect_max_seconds),
                        self.reconnect_max_seconds,
                    ),
                    self.rng,
                )
                log.warning("%s; trying again in %.1fs (try %d)", exc.reason, wait, attempt)
                await self.client.disconnect()
                if await _set_within(until, wait):
                    return False
            else:
                return True
        return False

    async def stay_connected(self, until: asyncio.Event, on_reconnect: Callable[[], None]) -> None:
        """Until ``until`` is set: whenever the connection is lost for good, reconnect (as
        ``connect`` does) and call ``on_reconnect``. Raises ``TelegramUnavailable`` if
        Telegram dropped the bot (its token revoked)."""
        while not until.is_set():
            reason = await self._lost(until)
            if reason is None:
                return
            log.warning("lost the connection to Telegram (%s): reconnecting", reason)
            await self.client.disconnect()
            if not await self.connect(self._token, until):
                return
            on_reconnect()

    async def _lost(self, until: asyncio.Event) -> str | None:
        """Why the connection ended, or None if ``until`` was set first."""
        gone = asyncio.ensure_future(self.client.disconnected)
        stopping = asyncio.create_task(until.wait())
        try:
            await asyncio.wait({gone, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not gone.done():
            gone.cancel()
            return None
        self._connection(False)
        try:
            gone.result()
        except BOT_REFUSED as exc:
            raise TelegramUnavailable(f"Telegram dropped the bot ({code(exc)})") from None
        except Exception as exc:
            return describe(exc)
        return "disconnected"

    async def stop(self) -> None:
        # Log out first, then say so: a leader whose term ended must be gone before a
        # standby logs in (a slow database must not keep two sessions up at once).
        await self.client.disconnect()
        self._connection(False)

    def _connection(self, connected: bool) -> None:
        """The bot session connected or lost: the metric, and whoever asked to know — in the
        background, so that nothing Telegram-side (a login, a logout at the end of a term)
        ever waits for it."""
        metrics.TELEGRAM_CONNECTED.set(1 if connected else 0)
        if self.on_connection is not None:
            told = asyncio.create_task(self.on_connection(connected))
            self._telling.add(told)
            told.add_done_callback(self._telling.discard)


async def _set_within(event: asyncio.Event, seconds: float) -> bool:
    """True if ``event`` is set within ``seconds``."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True
