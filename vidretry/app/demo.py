"""``vidretry demo``: a guided, self-contained run on the embedded database.

A few pretend Telegram users ask the bot for videos (``/video <name>``, answered by the same
conversation service the real bot uses), a generator fails some assets always and some once,
a worker and a notifier (console transport) run in this process; then one user presses the
retry button of a failed asset and it succeeds. The acceptances are edited into the
progress as the videos are made, and one user cancels a video half way through: its worker
stops it. The scenario reports snapshots through a callback; drawing them is the command
line's business.
"""

from __future__ import annotations

import asyncio
import dataclasses
import html
import itertools
import random
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from vidretry.app.daemons import NotifierProcess, build_worker
from vidretry.clock import DatabaseClock
from vidretry.config import Config, NotifierConfig, TelegramConfig, WorkerConfig
from vidretry.db import connection, schema
from vidretry.db.embedded import EmbeddedServer
from vidretry.db.listen import Listener
from vidretry.db.pool import open_pool
from vidretry.errors import HandlerError, VidretryError
from vidretry.models import JobContext
from vidretry.queue import reports
from vidretry.telegram.buttons import ButtonService
from vidretry.telegram.conversation import Conversation
from vidretry.telegram.limits import RequestRate
from vidretry.telegram.progress import remember_acceptance
from vidretry.telegram.transport import Incoming, InlineButton, Recipient, VideoRef
from vidretry.texts import MessagesConfig

DEMO_DATABASE = "vidretry_demo"

# name, behaviour, the users who ask for it. "fail_until_retried" fails in retry round 0 and
# succeeds after a retry.
ASSETS: tuple[tuple[str, str, tuple[int, ...]], ...] = (
    ("Маша", "ok", (101, 102)),
    ("Петя", "flaky", (103,)),
    ("Аня", "fail_until_retried", (101, 104)),
    ("Коля", "ok", (105,)),
    ("Дима", "always_fails", (102,)),
    ("Вася", "until_cancelled", (106,)),
)
BEHAVIOURS = {name: behaviour for name, behaviour, _ in ASSETS}
PRESSER = 104  # presses Аня's retry button
CANCELLER = 106  # changes their mind about Вася while it is being made
EXPECTED = {"Маша": "available", "Петя": "available", "Аня": "available", "Коля": "available",
            "Дима": "failed", "Вася": "cancelled"}  # fmt: skip
PROGRESS_STEPS = 10


@dataclass
class Snapshot:
    phase: str
    assets: list[dict[str, Any]] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    outbox: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class DemoResult:
    states: dict[str, str]
    missing: list[str]  # expected final states that were not reached

    @property
    def ok(self) -> bool:
        return not self.missing


class DemoGenerator:
    """The demo's generation step: a short pause, then each asset's scripted behaviour."""

    def __init__(self, seconds: float, rng: random.Random) -> None:
        self.seconds = seconds
        self.rng = rng

    async def __call__(self, job: JobContext) -> str:
        behaviour = BEHAVIOURS.get(job.name)
        if behaviour == "until_cancelled":  # 2 % every quarter second, until stopped
            for step in itertools.count():
                job.progress(min(0.98, step / 50))
                await asyncio.sleep(0.25)
        seconds = self.seconds * (0.5 + self.rng.random())
        for step in range(PROGRESS_STEPS):  # a real generator prints "progress <percent>"
            job.progress(step / PROGRESS_STEPS)
            await asyncio.sleep(seconds / PROGRESS_STEPS)
        if behaviour == "always_fails" or (
            behaviour == "fail_until_retried" and job.retry_round == 0
        ):
            raise HandlerError("render farm: out of GPU memory")
        if behaviour == "flaky" and job.attempt == 1:
            raise HandlerError("render farm: node lost, try again")
        job.output.parent.mkdir(parents=True, exist_ok=True)
        job.output.write_bytes(b"not really a video\n")
        return str(job.output)


class RecordingConsole:
    """The console transport, kept in memory for the live view; remembers every button."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.sent = 0  # messages delivered from the outbox
        self.buttons: dict[int, str] = {}  # user id -> callback data of their last button
        self.cancels: dict[int, str] = {}  # user id -> their acceptance's cancel button
        self.edits = 0  # acceptance messages edited into the progress or the place in line
        self.message_ids = itertools.count(1)

    async def send_text(
        self, to: Recipient, html_text: str, button: InlineButton | None
    ) -> int | None:
        first_line = _plain(html_text).splitlines()[0]
        self.sent += 1
        self.lines.append(
            f"→ {to.user_id}: {first_line}" + (f"  [{button.text}]" if button else "")
        )
        if button:
            self.buttons[to.user_id] = button.data
        return None

    async def send_video(self, to: Recipient, video: VideoRef, caption_html: str) -> int | None:
        self.sent += 1
        name = video.uri.rsplit("/", 1)[-1]
        self.lines.append(f"→ {to.user_id}: 🎬 {name} — {_plain(caption_html)}")
        return None

    async def edit_text(
        self, to: Recipient, message_id: int, html_text: str, buttons: Sequence[InlineButton]
    ) -> None:
        self.edits += 1
        self.lines.append(f"✎ {to.user_id}: {_plain(html_text).splitlines()[0]}")


async def prepare_database(server: EmbeddedServer) -> str:
    """A fresh demo database on the embedded server, so the demo never touches real data."""
    admin = await psycopg.AsyncConnection.connect(server.url_for("postgres"), autocommit=True)
    async with admin:
        name = sql.Identifier(DEMO_DATABASE)
        await admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        await admin.execute(sql.SQL("CREATE DATABASE {}").format(name))
    url = server.url_for(DEMO_DATABASE)
    async with await connection.connect(url) as conn:
        await schema.upgrade(conn)
    return url


async def run_demo(
    server: EmbeddedServer, *, fast: bool, on_update: Callable[[Snapshot], None]
) -> DemoResult:
    """Run the whole scenario; ``on_update`` receives a snapshot a few times a second."""
    await asyncio.to_thread(server.start)
    url = await prepare_database(server)
    rng = random.Random(7)  # noqa: S311 (a demo's pauses)
    console = RecordingConsole()
    snapshot = Snapshot("Five pretend Telegram users ask the bot for videos")
    worker_config = WorkerConfig(
        concurrency=2,
        max_attempts=3,
        lease_seconds=10,
        heartbeat_seconds=2,
        backoff_base_seconds=0 if fast else 2,
        poll_interval_seconds=0.2,
        shutdown_grace_seconds=1,
    )
    notifier_config = NotifierConfig(
        per_chat_interval_seconds=0 if fast else 1,
        poll_interval_seconds=0.2,
        progress_edit_seconds=0.5 if fast else 2,  # a demo's pace; 5 s by default
    )
    with tempfile.TemporaryDirectory(prefix="vidretry-demo-") as output:
        worker_config = dataclasses.replace(worker_config, output_dir=Path(output))
        generator = DemoGenerator(0.02 if fast else 2.5, rng)
        async with open_pool(url, max_size=6) as pool:
            config = Config(worker=worker_config, notifier=notifier_config)
            worker = build_worker(pool, config, generator, url=url, rng=rng)
            notifier = NotifierProcess(Listener(url), pool, config, console=console, rng=rng)
            buttons = ButtonService(pool, MessagesConfig(), clock=DatabaseClock())
            bot = Conversation(
                pool,
                MessagesConfig(),
                TelegramConfig(),
                clock=DatabaseClock(),
                rate=RequestRate(TelegramConfig().requests_per_minute),
            )
            stop = asyncio.Event()
            background = [
                asyncio.create_task(worker.run(stop)),
                asyncio.create_task(notifier.run(stop)),
            ]

            async def refresh() -> dict[str, str]:
                async with pool.connection() as conn:
                    snapshot.assets = await reports.list_assets(conn, None, 20)
                    status = await reports.status(conn, None)
                snapshot.outbox = {
                    "waiting": status["outbox_backlog"],
                    "dead": status["outbox_dead"],
                    "sent": console.sent,
                }
                snapshot.messages = console.lines[-12:]
                on_update(snapshot)
                return {a["name"]: a["state"] for a in snapshot.assets}

            async def settle(
                condition: Callable[[dict[str, str]], bool], within: float
            ) -> dict[str, str]:
                loop = asyncio.get_running_loop()
                deadline = loop.time() + within
                states = await refresh()
                while not condition(states) and loop.time() < deadline:
                    await asyncio.sleep(0.1 if fast else 0.25)
                    states = await refresh()
                return states

            try:
                for name, _, users in ASSETS:
                    for user in users:
                        await _ask(bot, pool, console, user, f"/video {name}")
                    if not fast:
                        await asyncio.sleep(0.8)
                snapshot.phase = (
                    "Worker generating; progress shown in the acceptances; failures retried"
                )
                await settle(lambda s: s.get("Вася") == "running" and console.edits >= 2, 60)
                if not fast:
                    await settle(lambda s: False, 4)
                snapshot.phase = f"User {CANCELLER} changes their mind: «✖️ Отменить» on Вася"
                cancel = console.cancels.get(CANCELLER)
                if cancel is None:
                    raise VidretryError(f"demo: user {CANCELLER} never got a cancel button")
                reply = await buttons.press(Incoming(CANCELLER, None, data=cancel.encode()))
                console.lines.append(f"← {CANCELLER} pressed «✖️ Отменить»; bot: {reply.answer}")
                snapshot.phase = "Вася cancelled: its worker stops it, no attempt counted"
                await settle(lambda s: _all_terminal(s) and snapshot.outbox.get("waiting") == 0
                             and len(console.buttons) >= 3, 60)  # fmt: skip
                data = console.buttons.get(PRESSER)
                if data is None:
                    raise VidretryError("demo: user 104 never got a retry button")
                snapshot.phase = f"User {PRESSER} presses «🔄 Попробовать еще раз» on Аня"
                if not fast:
                    await settle(lambda s: False, 3)
                reply = await buttons.press(Incoming(PRESSER, None, data=data.encode()))
                console.lines.append(f"← {PRESSER} pressed the button; bot answers: {reply.answer}")
                snapshot.phase = "Аня is back in the queue and generated again"
                states = await settle(
                    lambda s: s == EXPECTED and snapshot.outbox.get("waiting") == 0, 60
                )
                snapshot.phase = (
                    f"Done: {console.edits} progress edits, one cancel, one retry by button"
                )
                on_update(snapshot)
            finally:
                stop.set()
                await asyncio.gather(*background, return_exceptions=True)
    missing = [f"{name}: expected {want}, got {states.get(name)}" for name, want in EXPECTED.items()
               if states.get(name) != want]  # fmt: skip
    return DemoResult(states, missing)


async def _ask(
    bot: Conversation,
    pool: AsyncConnectionPool[connection.Connection],
    console: RecordingConsole,
    user: int,
    text: str,
) -> None:
    """A user writes to the bot; the bot's answer is shown as the console shows messages,
    and an acceptance is remembered as the Telegram adapter remembers it (to be edited)."""
    console.lines.append(f"← {user}: {text}")
    for message in await bot.handle(Incoming(user, None, text)) or []:
        console.lines.append(f"→ {user}: {_plain(message.text).splitlines()[0]}")
        if message.accepts is not None:
            await remember_acceptance(
                pool, DatabaseClock(), user, message.accepts, next(console.message_ids),
                message.text,
            )  # fmt: skip
            console.cancels[user] = message.buttons[0].data


def _plain(html_text: str) -> str:
    """What a Telegram user would read: the HTML without its tags."""
    return html.unescape(re.sub(r"<[^>]+>", "", html_text))


def _all_terminal(states: dict[str, str]) -> bool:
    return len(states) == len(ASSETS) and all(
        s in ("available", "failed", "cancelled") for s in states.values()
    )
