"""One video to many: a 20 MB video for 100 waiting users, one upload.

    python -m bench.videos            # 20 MB, 100 users, three runs
    python -m bench.videos --short    # 2 MB, 20 users, one run (the suite runs it)

One notifier with the default settings (25 messages/s) sends through the real Telethon client
whose network layer is the in-process Telegram double, its upload bandwidth limited to a
realistic 10 MB/s (file parts share the link). Reported: the bytes uploaded as a multiple of
the file, and the time from the job's success to the last video's arrival as a multiple of
the ideal — one upload plus the pacing alone (bytes ÷ bandwidth + users ÷ rate). Before
schema 14 every user's send uploaded the file: 100 × 20 MB = 2 GB, 200 s of upload at
10 MB/s (not run: it is arithmetic).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from telethon import functions

from tests.telegram.double import BOT_TOKEN, FakeTelegram, install
from tests.telegram.offline.sitecustomize import loopback_only
from vidretry.clock import DatabaseClock
from vidretry.config import NotifierConfig, TelegramConfig
from vidretry.db import connection, schema
from vidretry.db.embedded import EmbeddedServer
from vidretry.db.listen import Listener
from vidretry.db.pool import open_pool
from vidretry.queue import jobs
from vidretry.queue.enqueue import enqueue
from vidretry.telegram.bot.client import build_client
from vidretry.telegram.bot.telegram_bot import TelegramBot
from vidretry.telegram.notifier import Notifier
from vidretry.telegram.pacing import Pacer
from vidretry.texts import MessagesConfig

BANDWIDTH = 10e6  # bytes a second
UPLOADED_TARGET = 1.0  # × the file
TIME_TARGET = 1.2  # × one upload plus the pacing


@dataclass(frozen=True)
class Size:
    megabytes: int
    users: int
    runs: int


FULL = Size(megabytes=20, users=100, runs=3)
SHORT = Size(megabytes=2, users=20, runs=1)


async def one_run(base: Path, url: str, size: Size, run: int) -> tuple[float, float]:
    """(bytes uploaded ÷ file size, time to the last delivery ÷ the ideal)."""
    database = f"videos{run}"
    async with await connection.connect(url) as admin:
        await admin.execute(f"CREATE DATABASE {database}")
    run_url = url.replace("/vidretry?", f"/{database}?")
    video = base / f"video{run}.mp4"
    video.write_bytes(random.Random(run).randbytes(size.megabytes * 1_000_000))  # noqa: S311
    telegram = FakeTelegram(upload_bytes_per_second=BANDWIDTH)
    async with await connection.connect(run_url) as conn:
        await schema.upgrade(conn)
        for user in range(1, size.users + 1):
            telegram.add_user(user)
            await conn.execute(
                "INSERT INTO telegram_users (user_id, access_hash) VALUES (%s, %s)",
                (user, telegram.users[user].access_hash),
            )
            await enqueue(conn, "Маша", user_id=user)
    config = NotifierConfig()  # the defaults: 25 messages a second
    pacer = Pacer(config.rate_per_second, config.per_chat_interval_seconds)
    settings = TelegramConfig(
        api_id=1, api_hash="0" * 32, bot_token=BOT_TOKEN, session=base / f"bot{run}.session"
    )
    client = build_client(settings)
    install(client, telegram)
    bot = TelegramBot(client, pacer=pacer)
    await bot.start(BOT_TOKEN)
    try:
        async with open_pool(run_url, max_size=6) as pool:
            listener = Listener(run_url)
            notifier = Notifier(
                pool, config, MessagesConfig(), bot, listener=listener, clock=DatabaseClock(),
                rng=random.Random(run), pacer=pacer,  # noqa: S311
            )  # fmt: skip
            stop = asyncio.Event()
            running = asyncio.create_task(notifier.run(stop))
            await asyncio.wait_for(listener.ready.wait(), 30)
            async with await connection.connect(run_url) as conn:
                (job,) = await jobs.claim(conn, owner="w", limit=1, lease_seconds=60, now=None)
                started = time.monotonic()
                await jobs.complete(conn, job, owner="w", result=str(video), now=None)
            await telegram.wait_for(
                lambda: len(telegram.sent(functions.messages.SendMediaRequest)) >= size.users,
                timeout=120,
            )
            last = max(
                at
                for request, at in zip(telegram.requests, telegram.arrived_at, strict=True)
                if isinstance(request, functions.messages.SendMediaRequest)
            )
            stop.set()
            await running
    finally:
        await bot.stop()
    file_bytes = video.stat().st_size
    ideal = file_bytes / BANDWIDTH + size.users / config.rate_per_second
    return telegram.uploaded_bytes / file_bytes, (last - started) / ideal


async def main_async(size: Size, base: Path) -> dict[str, list[float]]:
    server = EmbeddedServer(base / "pg")
    url = await asyncio.to_thread(server.start)
    figures: dict[str, list[float]] = {"uploaded": [], "time": []}
    try:
        for run in range(size.runs):
            uploaded, ratio = await one_run(base, url, size, run)
            figures["uploaded"].append(uploaded)
            figures["time"].append(ratio)
    finally:
        await asyncio.to_thread(server.stop)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="the suite's short form")
    args = parser.parse_args(argv)
    size = SHORT if args.short else FULL
    # Nothing here may reach Telegram, or anything but loopback and unix sockets.
    socket.socket.connect = loopback_only(socket.socket.connect)  # type: ignore[method-assign]
    base = Path(tempfile.mkdtemp(prefix="vidretry-bench-videos-"))
    base.chmod(0o755)
    try:
        figures = asyncio.run(main_async(size, base))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"One {size.megabytes} MB video to {size.users} waiting users, upload at "
          f"{BANDWIDTH / 1e6:g} MB/s, 25 messages/s; medians of {size.runs}")  # fmt: skip
    print("| case | median | range | target |")
    print("| --- | ---: | ---: | ---: |")
    rows = [
        ("bytes uploaded, × the file", figures["uploaded"], f"{UPLOADED_TARGET:g}×"),
        ("success → last delivery, × one upload + the pacing", figures["time"],
         f"≤ {TIME_TARGET:g}×"),
    ]  # fmt: skip
    for name, values, target in rows:
        print(f"| {name} | {statistics.median(values):.2f} | {min(values):.2f} – "
              f"{max(values):.2f} | {target} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
