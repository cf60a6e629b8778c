"""How the daemons are put together: the pool, the listener, signals, metrics, and for the
notifier leadership and the bot session.

One place for the wiring, so the commands, the demo, the tests and the chaos run start the
same thing. ``serve_worker`` and ``serve_notifier`` are what ``vidretry worker`` and
``vidretry notifier`` run. Every notifier campaigns; the leader alone logs in to Telegram,
answers buttons and sends, all through one ``Pacer``; standbys hold a database connection
and nothing else.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

from psycopg_pool import AsyncConnectionPool

from vidretry.clock import Clock, DatabaseClock
from vidretry.config import Config, exposed_secret_warning, telegram_login_token
from vidretry.db.connection import Connection, execute
from vidretry.db.deadlink import answer_seconds_for
from vidretry.db.embedded import database_url, default_dir
from vidretry.db.listen import LEADERSHIP_CHANNEL, Listener
from vidretry.db.pool import open_pool
from vidretry.db.processes import recorded
from vidretry.db.redact import one_line
from vidretry.db.transient import TRANSIENT_DB_ERRORS
from vidretry.names import default_process_name
from vidretry.queue.breaker import breaker_settings
from vidretry.queue.handlers import Handler, build_handler
from vidretry.queue.maintenance import retention
from vidretry.queue.worker import Worker
from vidretry.results.configured import configured
from vidretry.telegram import outbox
from vidretry.telegram.buttons import ButtonService
from vidretry.telegram.conversation import USER_COMMANDS, Conversation
from vidretry.telegram.leadership import Leadership
from vidretry.telegram.limits import RequestRate
from vidretry.telegram.notifier import Notifier
from vidretry.telegram.pacing import Pacer
from vidretry.telegram.plugins import Priorities, registering
from vidretry.telegram.progress import ProgressEditor
from vidretry.telegram.session import keep_private
from vidretry.telegram.transport import EditsMessages, Sender
from vidretry.version import __version__

if TYPE_CHECKING:  # the console transport runs without Telethon loaded
    from vidretry.telegram.bot.telegram_bot import TelegramBot

log = logging.getLogger("vidretry.daemons")


# -- what every daemon does ---------------------------------------------------------------


def setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # psycopg_pool logs every failed reconnection with its full message; ours say it once.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def daemon_database_url(config: Config) -> str:
    """The database's URL, saying once at start when it is the embedded server: the default
    is fine on one machine and a trap on several."""
    if not config.database.url:
        directory = config.database.embedded_dir or default_dir()
        log.warning(
            "using the embedded PostgreSQL in %s: workers and notifiers on several machines "
            "need one shared [database] url",
            directory,
        )
    return database_url(config.database)


@asynccontextmanager
async def metrics_served(
    config: Config, port: int | None, pool: AsyncConnectionPool[Connection]
) -> AsyncIterator[None]:
    """Serve /metrics (``port``, else ``[metrics] port``) and keep the queue's gauges current
    while the daemon runs; nothing without a port."""
    port = port or config.metrics.port
    if port is None:
        yield
        return
    from vidretry.queue import metrics

    metrics.serve(port, config.metrics.address)
    stop = asyncio.Event()
    watcher = asyncio.create_task(metrics.watch_queue(pool, None, stop))
    try:
        yield
    finally:
        stop.set()
        await watcher


# -- the worker ---------------------------------------------------------------------------


def build_worker(
    pool: AsyncConnectionPool[Connection],
    config: Config,
    handler: Handler,
    *,
    url: str,
    clock: Clock | None = None,
    rng: random.Random | None = None,
    name: str | None = None,
) -> Worker:
    """A worker as ``config`` describes it: woken through ``[database] listen_url`` (else
    ``url``), pruning history when ``[retention] days`` is set, its breaker's pauses told to
    ``[telegram] admins``."""
    clock = clock or DatabaseClock()
    name = name or default_process_name()
    days = config.retention.days
    lease = config.worker.lease_seconds
    return Worker(
        pool,
        config.worker,
        handler,
        listener=Listener(config.database.listen_url or url, answer_seconds_for(lease)),
        clock=clock,
        rng=rng or random.Random(),  # noqa: S311 (jitter only)
        name=name,
        pruning=(
            retention.BackgroundPruning(pool, days, clock=clock, by=f"worker {name}")
            if days
            else None
        ),
        breaker=breaker_settings(config.worker, config.telegram.admins),
        fair=config.queue.fair,
        results=configured(config),
        store_alert_seconds=config.storage.alert_after_seconds,
        store_retry_max_seconds=config.storage.retry_max_seconds,
    )


async def serve_worker(
    config: Config, *, concurrency: int | None = None, drain: bool = False,
    metrics_port: int | None = None,
) -> None:  # fmt: skip
    """``vidretry worker``: run jobs until SIGINT/SIGTERM (or, with ``drain``, until none is
    left)."""
    if concurrency is not None:
        config = dataclasses.replace(
            config, worker=dataclasses.replace(config.worker, concurrency=concurrency)
        )
    handler = build_handler(config.worker)
    setup_logging()
    url = daemon_database_url(config)
    pool_size = config.worker.concurrency + 2
    async with (
        open_pool(
            url,
            max_size=pool_size,
            prepare=config.database.prepare,
            answer_seconds=answer_seconds_for(config.worker.lease_seconds),
        ) as pool,  # fmt: skip
        metrics_served(config, metrics_port, pool),
    ):
        worker = build_worker(pool, config, handler, url=url)
        async with recorded(pool, "worker", worker.name, worker.clock):
            log.info(
                "worker %s started (vidretry %s, concurrency %d)",
                worker.name, __version__, config.worker.concurrency,
            )  # fmt: skip
            await worker.run(stop_on_signals(), drain=drain)
        log.info("worker %s stopped", worker.name)


# -- the notifier -------------------------------------------------------------------------


async def serve_notifier(
    config: Config, *, console: Sender | None = None, drain: bool = False,
    metrics_port: int | None = None,
) -> None:  # fmt: skip
    """``vidretry notifier``: deliver the outbox through the Telegram bot (or to ``console``)
    and answer the bot's users, until SIGINT/SIGTERM (or, with ``drain``, until nothing is
    due)."""
    token, plugins = "", []
    if console is None:
        # Loaded before logging is set up: Telethon says at import which AES it found.
        from vidretry.telegram.plugins import load_plugins

        token = telegram_login_token(config.telegram)
        plugins = load_plugins(config.telegram.plugins)
    setup_logging()
    warning = exposed_secret_warning(config)
    if warning:
        log.warning(warning)
    if console is None:
        for line in keep_private(config.telegram.session):
            log.warning(line)
    url = daemon_database_url(config)
    answer_seconds = answer_seconds_for(config.notifier.lease_seconds)
    opened = open_pool(
        url, max_size=6, prepare=config.database.prepare, answer_seconds=answer_seconds
    )
    async with opened as pool, metrics_served(config, metrics_port, pool):
        process = NotifierProcess(
            Listener(config.database.listen_url or url, answer_seconds),
            pool,
            config,
            console=console,
            bot_token=token,
            plugins=plugins,
            rng=random.Random(),  # noqa: S311 (jitter only)
        )
        if console is None:
            from vidretry.telegram.bot.client import build_client
            from vidretry.telegram.bot.telegram_bot import TelegramBot

            paid, send_only = config.notifier.paid_broadcast, config.notifier.send_only
            results = configured(config)
            process.open_bot = lambda pacer: TelegramBot(
                build_client(config.telegram, paid_broadcast=paid, send_only=send_only),
                pacer=pacer,
                reconnect_max_seconds=config.notifier.outage_probe_max_seconds,
                send_only=send_only,
                results=results,
            )
        await process.run(stop_on_signals(), drain=drain)


@dataclass
class NotifierProcess:
    """What one ``vidretry notifier`` runs. ``open_bot`` makes the Telegram session the
    leader logs in with (None: deliver to ``console`` instead)."""

    listener: Listener | None
    pool: AsyncConnectionPool[Connection]
    config: Config
    open_bot: Callable[[Pacer], TelegramBot] | None = None
    bot_token: str = ""
    console: Sender | None = None
    plugins: Sequence[ModuleType] = ()
    clock: Clock = field(default_factory=DatabaseClock)
    rng: random.Random = field(default_factory=random.Random)
    name: str = field(default_factory=default_process_name)
    _noting: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)

    async def run(self, stop: asyncio.Event, *, drain: bool = False) -> None:
        """Campaign and, while leading, deliver until ``stop`` (with ``drain``: deliver what
        is due and return; another leader is then a ``RefusedError``)."""
        leadership = Leadership(
            self.pool,
            candidate=self.name,
            lease_seconds=self.config.notifier.lease_seconds,
            clock=self.clock,
        )
        async with (
            recorded(self.pool, "notifier", self.name, self.clock),
            self._hearing_resignations(leadership.vacated, standing_by=not drain),
        ):
            log.info("notifier %s started (vidretry %s)", self.name, __version__)
            await leadership.lead(
                stop, lambda done, lost: self._lead(done, lost, drain), stand_by=not drain
            )
        log.info("notifier %s stopped", self.name)

    @asynccontextmanager
    async def _hearing_resignations(
        self, vacated: asyncio.Event, *, standing_by: bool
    ) -> AsyncIterator[None]:
        """LISTEN for a leader's resignation while the block runs, so that a standby takes
        over without waiting for its next look (a rollout's hand-over)."""
        if self.listener is None or not standing_by:
            yield
            return
        listening = asyncio.Event()
        listening.set()
        hearing = asyncio.create_task(
            self.listener.run(LEADERSHIP_CHANNEL, vacated, listening, self.rng)
        )
        try:
            yield
        finally:
            listening.clear()  # the listener closes its connection within a second
            done, _ = await asyncio.wait({hearing}, timeout=1.5)
            if not done:
                hearing.cancel()
            await asyncio.gather(hearing, return_exceptions=True)

    async def _note_connection(self, connected: bool) -> None:
        async with self._noting:  # in the order the changes happened (the lock is FIFO)
            await _note_connection_of(self.pool, self.name, connected)

    async def _publish_bot_rules(self) -> None:
        """The button's rules, for other programs retrying through SQL (vidretry_retry): this
        leader's [telegram] admins and daily retries. Best effort: the next term writes
        them again."""
        telegram = self.config.telegram
        params = {
            "admins": list(telegram.admins),
            "per_day": telegram.max_retries_per_user_per_day,
        }
        try:
            async with self.pool.connection() as conn:
                await execute(conn, "set_bot_policy", params)
        except TRANSIENT_DB_ERRORS as exc:
            log.warning("the button's rules were not written for SQL callers: %s", one_line(exc))

    async def _recent_sends(self, seconds: float) -> list[tuple[int, float]] | None:
        """What the bot sent in the last ``seconds``, as the outbox recorded it; None if the
        outbox could not be read (the new leader then waits those seconds out)."""
        try:
            async with self.pool.connection() as conn:
                return await outbox.recent_sends(conn, seconds=seconds, now=self.clock.now())
        except TRANSIENT_DB_ERRORS as exc:
            log.warning("the last sends were not read (%s): sending nothing for %.1fs",
                        one_line(exc), seconds)  # fmt: skip
            return None

    async def _lead(self, done: asyncio.Event, lost: asyncio.Event, drain: bool) -> None:
        await self._publish_bot_rules()
        notifier_config = self.config.notifier
        pacer = Pacer(notifier_config.rate_per_second, notifier_config.per_chat_interval_seconds)
        # The leader before may have sent a moment ago: the budget is what it left.
        recent = await self._recent_sends(pacer.memory_seconds)
        pacer.take_over(recent)
        if recent is not None:
            log.info(
                "the bot sent %d messages in the last %.2fs: the next may go in %.2fs",
                len(recent), pacer.memory_seconds, pacer.window_wait(),
            )  # fmt: skip
        bot = self.open_bot(pacer) if self.open_bot is not None else None
        if bot is not None:
            bot.connection.on_connection = self._note_connection
        sender = bot or self.console
        assert sender is not None, "a notifier needs a bot or a console to deliver to"
        notifier = Notifier(
            self.pool,
            notifier_config,
            self.config.messages,
            sender,
            listener=self.listener,
            clock=self.clock,
            rng=self.rng,
            pacer=pacer,
            name=self.name,
            admins=self.config.telegram.admins,
            seed_buttons=notifier_config.send_only,
            results=configured(self.config) if self.config.storage.delete_after_delivery else None,
        )
        editor = (
            ProgressEditor(
                self.pool,
                self.config.messages,
                sender,
                pacer,
                interval_seconds=0 if drain else notifier_config.progress_edit_seconds,
                listener=self.listener,
                clock=self.clock,
                rng=self.rng,
            )
            if isinstance(sender, EditsMessages)
            else None
        )
        try:  # what a former leader still held is this leader's to send now
            await notifier.rescuer.run_once(take_over=True)
        except TRANSIENT_DB_ERRORS as exc:
            log.error("could not take over (%s): rows come back as leases expire", one_line(exc))
        if bot is None:
            if editor is None or drain:
                await notifier.run(done, drain=drain, hurry=lost)
            else:
                await until_first(notifier.run(done, drain=drain, hurry=lost), editor.run(done))
            return
        try:
            if not await bot.connect(self.bot_token, done):
                return
            if notifier_config.send_only:
                log.info(
                    "send-only: delivering the outbox; the bot's messages and buttons are its "
                    "own framework's (no update is asked for, no command menu is set)"
                )
            else:
                await self._serve(bot, notifier, editor)
            await until_first(
                notifier.run(done, drain=drain, hurry=lost),
                bot.stay_connected(done, notifier.outage.probe_now),
                _log_out_when(lost, bot),
                *([] if editor is None else [editor.run(done)]),
            )
        finally:
            await bot.stop()

    async def _serve(
        self, bot: TelegramBot, notifier: Notifier, editor: ProgressEditor | None
    ) -> None:
        """The bot's front door: its buttons, its conversations, the plugins, the menu."""
        telegram, messages = self.config.telegram, self.config.messages
        bot.serve(
            ButtonService(
                self.pool,
                messages,
                clock=self.clock,
            ),
            Conversation(
                self.pool,
                messages,
                telegram,
                clock=self.clock,
                rate=RequestRate(telegram.requests_per_minute),
                priorities=Priorities(self.plugins),
            ),
            registering(self.plugins),
            videos=notifier.videos,
            accepted=editor.remember if editor is not None else None,
        )
        # The menu in the default language, and in each other one for its users.
        for lang_code, texts in [("", messages), *messages.languages.items()]:
            await bot.register_commands(
                [(command, getattr(texts, key)) for command, key in USER_COMMANDS],
                lang_code=lang_code,
            )


async def _note_connection_of(
    pool: AsyncConnectionPool[Connection], leader: str, connected: bool
) -> None:
    """Record whether the leader's bot is connected (the web console shows it); best effort,
    and never for long: a database away now is no reason to hold up Telegram."""
    try:
        async with asyncio.timeout(2), pool.connection(timeout=2) as conn:
            await execute(
                conn, "note_telegram_connection", {"leader": leader, "connected": connected}
            )
    except (*TRANSIENT_DB_ERRORS, TimeoutError) as exc:
        log.info("Telegram connection (%s) not recorded: %s", connected, one_line(exc))


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
