"""Telegram at its ceiling: one notifier sending through the real Telethon client, with only
its network layer replaced by the in-process Telegram double (tests/telegram/double.py).

    python -m bench.broadcast            # 10,000 paid-broadcast messages at 1,000/s to 8,000
                                         # users (2,000 of them get two); 2,000
                                         # users on 500 assets failing at once, at 25/s and
                                         # at 1,000/s; three runs of each, interleaved
    python -m bench.broadcast --short    # 1/10 of the messages, one run (the suite runs it)

Each run is a fresh database on one temporary PostgreSQL and a notifier in a process of its
own (its CPU time and peak RSS are reported; they include the double, which answers in the
same process). Send times are the double's arrival times. Prints Markdown rows for
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidretry.db import connection, schema
from vidretry.db.embedded import EmbeddedServer
from vidretry.db.pool import open_pool
from vidretry.queue import jobs

ROOT = Path(__file__).resolve().parents[1]
PAID_RATE = 1000.0
FREE_RATE = 25.0
BROADCAST_TARGET = 950.0  # messages a second through one notifier
MASS_FAILURE_TARGET = 1.05  # × the ideal time (messages ÷ rate)


@dataclass(frozen=True)
class Size:
    broadcast_users: int
    broadcast_twice: int  # users with two notifications: the per-chat spacing matters
    failing_assets: int
    users_per_asset: int
    runs: int


FULL = Size(broadcast_users=8000, broadcast_twice=2000, failing_assets=500, users_per_asset=4,
            runs=3)  # fmt: skip
SHORT = Size(broadcast_users=800, broadcast_twice=200, failing_assets=50, users_per_asset=4,
             runs=1)  # fmt: skip


# -- the parent: databases, the failures, the figures ---------------------------------------


async def seed_broadcast(url: str, users: int, twice: int) -> int:
    """Due failure notifications for ``users`` users, each known to the bot; the first
    ``twice`` of them have two (two of their videos failed: their chat's spacing counts)."""
    async with await connection.connect(url) as conn:
        await schema.upgrade(conn)
        await conn.execute(
            "INSERT INTO video_assets (name, state, attempts, last_error, finished_at)"
            " SELECT 'b-' || g, 'failed', 3, 'x', now() FROM generate_series(1, 2) g"
        )
        await conn.execute(
            "INSERT INTO telegram_users (user_id, access_hash)"
            " SELECT u, u * 1000 + 7 FROM generate_series(1, %s) u",
            (users,),
        )
        await conn.execute(
            "INSERT INTO notifications (asset_id, user_id, chat_id, kind, generation, payload)"
            " SELECT a.id, u, u, 'failed', 0, jsonb_build_object('name', a.name)"
            " FROM video_assets a, generate_series(1, %s) u"
            " WHERE a.name = 'b-1' OR u <= %s ORDER BY random()",
            (users, twice),
        )
    return users + twice


async def seed_mass_failure(url: str, assets: int, users_per_asset: int) -> list[Any]:
    """``assets`` running jobs on their last attempt, each awaited by its own users."""
    async with await connection.connect(url) as conn:
        await schema.upgrade(conn)
        await conn.execute(
            "INSERT INTO video_assets (name, attempts, max_attempts)"
            " SELECT 'm-' || g, 2, 3 FROM generate_series(1, %s) g",
            (assets,),
        )
        await conn.execute(
            "INSERT INTO user_requests (asset_id, user_id, chat_id)"
            " SELECT a.id, (a.id - 1) * %(k)s + k, (a.id - 1) * %(k)s + k"
            " FROM video_assets a, generate_series(1, %(k)s) k",
            {"k": users_per_asset},
        )
        await conn.execute(
            "INSERT INTO telegram_users (user_id, access_hash)"
            " SELECT user_id, user_id * 1000 + 7 FROM user_requests"
        )
        return await jobs.claim(conn, owner="bench", limit=assets, lease_seconds=600, now=None)


async def fail_all(url: str, claimed: list[Any], workers: int = 16) -> float:
    """Each job's final failure in its own transaction, from ``workers`` connections at once
    as that many workers would; the monotonic time of the last commit."""

    async def worker(share: list[Any]) -> None:
        async with await connection.connect(url) as conn:
            for job in share:
                await jobs.fail(conn, job, owner="bench", error="generator down", now=None)

    await asyncio.gather(*(worker(claimed[i::workers]) for i in range(workers)))
    return time.monotonic()


def spawn(url: str, rate: float, expected: int, out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.broadcast", "--child", url, str(rate), str(expected),
         str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip


def busiest_second(times: list[float]) -> int:
    busiest, start = 0, 0
    for end, at in enumerate(times):
        while times[start] <= at - 1.0:
            start += 1
        busiest = max(busiest, end - start + 1)
    return busiest


def smallest_chat_spacing(sends: list[tuple[float, int]]) -> float | None:
    last: dict[int, float] = {}
    smallest = None
    for at, chat in sends:
        if chat in last:
            gap = at - last[chat]
            smallest = gap if smallest is None else min(smallest, gap)
        last[chat] = at
    return smallest


class Bench:
    def __init__(self, server: EmbeddedServer, base: Path, size: Size) -> None:
        self.server = server
        self.base = base
        self.size = size
        self.results: dict[str, list[float]] = {}
        self.databases = itertools.count(1)

    def record(self, label: str, value: float) -> None:
        self.results.setdefault(label, []).append(value)

    async def database(self) -> str:
        name = f"bench_{next(self.databases)}"
        async with await connection.connect(self.server.url) as conn:
            await conn.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
        return self.server.url_for(name)

    async def broadcast(self, *, twice: bool = True) -> None:
        """10,000 messages; with ``twice``, to fewer users, some of whom get two."""
        url = await self.database()
        users = self.size.broadcast_users + (0 if twice else self.size.broadcast_twice)
        expected = await seed_broadcast(url, users, self.size.broadcast_twice if twice else 0)
        if not twice:  # the rate alone: every user's one message
            out = self.base / "broadcast-once.json"
            child = spawn(url, PAID_RATE, expected, out)
            await asyncio.to_thread(child.communicate)  # waits, and closes its stdout
            times = sorted(at for at, _ in json.loads(out.read_text())["sends"])
            if len(times) != expected:
                raise RuntimeError(f"broadcast: {len(times)} of {expected} sent")
            self.record("paid broadcast, one message per user: messages/s",
                        (len(times) - 1) / (times[-1] - times[0]))  # fmt: skip
            self.record("paid broadcast, one message per user: busiest 1-second window",
                        busiest_second(times))  # fmt: skip
            return
        out = self.base / "broadcast.json"
        child = spawn(url, PAID_RATE, expected, out)
        await asyncio.to_thread(child.communicate)  # waits, and closes its stdout
        report = json.loads(out.read_text())
        sends = [(at, chat) for at, chat in report["sends"]]
        times = [at for at, _ in sends]
        if len(times) != expected:
            raise RuntimeError(f"broadcast: {len(times)} of {expected} sent")
        self.record("paid broadcast: messages/s, one notifier (limit 1,000)",
                    (len(times) - 1) / (times[-1] - times[0]))  # fmt: skip
        # Without the first and last tenth: the end of a run is the users' second messages,
        # which wait out their chat's interval whatever the rate.
        low, high = len(times) // 10, len(times) * 9 // 10
        self.record("paid broadcast: messages/s, the middle 80 % of the run",
                    (high - low) / (times[high] - times[low]))  # fmt: skip
        self.record("paid broadcast: busiest 1-second window (msgs)", busiest_second(times))
        spacing = smallest_chat_spacing(sends)
        assert spacing is not None
        self.record("paid broadcast: one chat, smallest spacing (s)", spacing)
        self.record("paid broadcast: notifier CPU (s per 1,000 messages)",
                    report["cpu_seconds"] * 1000 / expected)  # fmt: skip
        self.record("paid broadcast: notifier peak RSS (MiB)", report["max_rss_kib"] / 1024)

    async def mass_failure(self, rate: float) -> None:
        url = await self.database()
        claimed = await seed_mass_failure(url, self.size.failing_assets, self.size.users_per_asset)
        expected = self.size.failing_assets * self.size.users_per_asset
        out = self.base / "mass.json"
        child = spawn(url, rate, expected, out)
        assert child.stdout is not None
        if (await asyncio.to_thread(child.stdout.readline)).strip() != "ready":
            raise RuntimeError("the notifier did not start")
        last_failure = await fail_all(url, claimed)
        await asyncio.to_thread(child.communicate)  # waits, and closes its stdout
        report = json.loads(out.read_text())
        times = sorted(at for at, _ in report["sends"])
        if len(times) != expected:
            raise RuntimeError(f"mass failure: {len(times)} of {expected} sent")
        ideal = expected / rate
        label = f"mass failure at {rate:g}/s: last failure → last message, × ideal"
        self.record(label, (times[-1] - last_failure) / ideal)
        self.record(f"mass failure at {rate:g}/s: busiest 1-second window (msgs)",
                    busiest_second(times))  # fmt: skip

    async def run(self) -> None:
        for _ in range(self.size.runs):  # interleaved: every case once, then again
            await self.broadcast()
            await self.broadcast(twice=False)
            await self.mass_failure(FREE_RATE)
            await self.mass_failure(PAID_RATE)


async def main_async(size: Size, base: Path) -> dict[str, list[float]]:
    server = EmbeddedServer(base / "pg")
    await asyncio.to_thread(server.start)
    try:
        bench = Bench(server, base, size)
        await bench.run()
        return bench.results
    finally:
        await asyncio.to_thread(server.stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true")
    parser.add_argument("--child", nargs=4, metavar=("URL", "RATE", "EXPECTED", "OUT"))
    args = parser.parse_args(argv)
    if args.child:
        url, rate, expected, out = args.child
        asyncio.run(child(url, float(rate), int(expected), Path(out)))
        return 0
    size = SHORT if args.short else FULL
    base = Path(tempfile.mkdtemp(prefix="vidretry-bench-broadcast-"))
    base.chmod(0o755)  # the server may run as another user (we may be root)
    try:
        results = asyncio.run(main_async(size, base))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"one notifier through the Telegram double; medians of {size.runs}")
    print("| case | median | range |")
    print("| --- | ---: | ---: |")
    for label, values in results.items():
        print(f"| {label} | {statistics.median(values):,.2f} | "
              f"{min(values):,.2f} – {max(values):,.2f} |")  # fmt: skip
    if args.short:  # a tenth of the messages: too few to hold a rate to
        return 0
    # The target is the rate itself: a broadcast of one message per user.
    rate = statistics.median(results["paid broadcast, one message per user: messages/s"])
    slow = [k for k, v in results.items() if "× ideal" in k and statistics.median(v) > 1.05]
    return 0 if rate >= BROADCAST_TARGET and not slow else 1


# -- the child: one notifier, the Telegram double in its own process ------------------------


async def child(url: str, rate: float, expected: int, out: Path) -> None:
    import socket

    from telethon import functions

    from tests.telegram.double import BOT_TOKEN, FakeTelegram, install
    from tests.telegram.offline.sitecustomize import loopback_only
    from vidretry.clock import DatabaseClock
    from vidretry.config import NotifierConfig, TelegramConfig
    from vidretry.db.listen import Listener
    from vidretry.telegram.bot.client import build_client
    from vidretry.telegram.bot.telegram_bot import TelegramBot
    from vidretry.telegram.notifier import Notifier
    from vidretry.telegram.pacing import Pacer
    from vidretry.texts import MessagesConfig

    SENDS = (functions.messages.SendMessageRequest, functions.messages.SendMediaRequest)
    # Nothing here may reach Telegram, or anything but loopback and unix sockets.
    socket.socket.connect = loopback_only(socket.socket.connect)  # type: ignore[method-assign]
    telegram = FakeTelegram()
    async with await connection.connect(url) as conn:
        cur = await conn.execute("SELECT user_id FROM telegram_users")
        for row in await cur.fetchall():
            telegram.add_user(row["user_id"])
    config = NotifierConfig(rate_per_second=rate, paid_broadcast=rate > 30)
    pacer = Pacer(config.rate_per_second, config.per_chat_interval_seconds)
    settings = TelegramConfig(api_id=1, api_hash="0" * 32, bot_token=BOT_TOKEN,
                              session=out.with_suffix(".session"))  # fmt: skip
    client = build_client(settings, paid_broadcast=config.paid_broadcast)
    install(client, telegram)
    bot = TelegramBot(client, pacer=pacer)
    await bot.start(BOT_TOKEN)
    sends: list[tuple[float, int]] = []
    seen = 0
    cpu_before = time.process_time()
    try:
        async with open_pool(url, max_size=6) as pool:
            listener = Listener(url)
            notifier = Notifier(
                pool, config, MessagesConfig(), bot, listener=listener, clock=DatabaseClock(),
                rng=random.Random(1), pacer=pacer,  # noqa: S311
            )  # fmt: skip
            stop = asyncio.Event()
            running = asyncio.create_task(notifier.run(stop))
            await asyncio.wait_for(listener.ready.wait(), 30)
            print("ready", flush=True)
            deadline = time.monotonic() + expected / rate * 3 + 60
            while len(sends) < expected and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                requests, arrived = telegram.requests, telegram.arrived_at
                for request, at in zip(requests[seen:], arrived[seen:], strict=True):
                    if isinstance(request, SENDS):
                        if config.paid_broadcast and not request.allow_paid_floodskip:
                            raise RuntimeError("a paid broadcast went out without its flag")
                        sends.append((at, request.peer.user_id))
                seen = len(requests)
            stop.set()
            await running
    finally:
        await bot.stop()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out.write_text(json.dumps({  # noqa: ASYNC240 (once, at the end)
        "sends": sends,
        "cpu_seconds": time.process_time() - cpu_before,
        "max_rss_kib": usage.ru_maxrss,
    }))  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
