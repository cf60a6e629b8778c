"""Delivery in Telegram's real conditions: outages, slow uploads, retries, several notifiers.

Each test runs what ``vidretry notifier`` runs (``NotifierProcess``: leadership, the bot
session, the outbox loop) with the real Telethon client and only its network layer replaced,
with the default ``[notifier]`` settings unless a setting is the point. The outages keep
their shape at a smaller time scale: an outage of many leases and many of the longest
probe intervals, with those set small (``OUTAGE``); that the defaults keep the same promise
is tests/unit/test_outage.py, over the same bound.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from telethon import functions

from tests.support import rows, scalar
from tests.telegram.double import BOT_TOKEN, FakeTelegram, install
from tests.telegram.test_notifier import fail_for_good
from vidretry.app.daemons import NotifierProcess
from vidretry.config import Config, NotifierConfig, TelegramConfig
from vidretry.db import connection
from vidretry.db.listen import Listener
from vidretry.db.pool import open_pool
from vidretry.queue import jobs
from vidretry.queue.enqueue import enqueue
from vidretry.queue.retry import Actor, retry
from vidretry.telegram.bot.client import build_client
from vidretry.telegram.bot.telegram_bot import TelegramBot
from vidretry.telegram.outage import recovery_bound_seconds
from vidretry.telegram.pacing import Pacer

SendMessage = functions.messages.SendMessageRequest
SendMedia = functions.messages.SendMediaRequest
# Leases of 3 s and probes at most 1 s apart: a 24 s outage is eight leases (every row in
# flight at its start is leased again and again) and twenty-four of the longest probe
# intervals, as a two-minute outage is two leases and twelve intervals with the defaults.
OUTAGE = NotifierConfig(
    lease_seconds=3, heartbeat_seconds=1, outage_probe_max_seconds=1, poll_interval_seconds=0.5
)
OUTAGE_SECONDS = 24.0
RECOVERY_PROMISE_SECONDS = recovery_bound_seconds(OUTAGE)


def offline_bot(
    telegram: FakeTelegram, session: Path, config: NotifierConfig
) -> Callable[[Pacer], TelegramBot]:
    """The Telegram session a leader logs in with, talking to the double (as
    ``vidretry notifier`` builds it from ``config``)."""

    def open_bot(pacer: Pacer) -> TelegramBot:
        client = build_client(
            TelegramConfig(api_id=1, api_hash="0" * 32, bot_token=BOT_TOKEN, session=session)
        )
        install(client, telegram)
        return TelegramBot(
            client,
            pacer=pacer,
            rng=random.Random(5),
            reconnect_max_seconds=config.outage_probe_max_seconds,
        )

    return open_bot


@asynccontextmanager
async def notifier_running(
    db_url: str,
    telegram: FakeTelegram,
    tmp_path: Path,
    *,
    config: NotifierConfig | None = None,
    name: str = "n1",
) -> AsyncIterator[asyncio.Task[None]]:
    config = config or NotifierConfig()
    async with open_pool(db_url, max_size=6) as pool:
        process = NotifierProcess(
            Listener(db_url),
            pool,
            Config(notifier=config),
            open_bot=offline_bot(telegram, tmp_path / f"{name}.session", config),
            bot_token=BOT_TOKEN,
            rng=random.Random(11),
            name=name,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(process.run(stop))
        try:
            yield task
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)


async def know_users(db_url: str, telegram: FakeTelegram, *user_ids: int) -> None:
    """Users who have written to the bot before: their access hashes are stored."""
    async with await connection.connect(db_url) as conn:
        for user_id in user_ids:
            user = telegram.add_user(user_id)
            await conn.execute(
                "INSERT INTO telegram_users (user_id, access_hash) VALUES (%s, %s)",
                (user_id, user.access_hash),
            )


async def states(db_url: str) -> list[dict[str, Any]]:
    async with await connection.connect(db_url) as conn:
        return await rows(
            conn, "SELECT user_id, kind, state, attempts FROM notifications ORDER BY user_id"
        )


async def wait_until_sent(db_url: str, count: int, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while sum(n["state"] == "sent" for n in await states(db_url)) < count:
            await asyncio.sleep(0.2)


async def three_failures_during(db_url: str, seconds: float) -> None:
    """Three users' failure messages fall due at the start, middle and end of ``seconds``."""
    started = time.monotonic()
    for i, user in enumerate((1, 2, 3)):
        await asyncio.sleep(max(0.0, started + i * seconds / 3 - time.monotonic()))
        await fail_for_good(db_url, f"video-{user}", (user,))
    await asyncio.sleep(max(0.0, started + seconds - time.monotonic()))


@pytest.mark.slow(seconds=25)
@pytest.mark.timeout(OUTAGE_SECONDS + 120)
async def test_a_long_run_of_server_errors_loses_nobody_their_message(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    await know_users(db_url, telegram, 1, 2, 3)
    telegram.fail(SendMessage, "RPC_CALL_FAIL", 500, times=10**9)
    async with notifier_running(db_url, telegram, tmp_path, config=OUTAGE) as notifier:
        await three_failures_during(db_url, OUTAGE_SECONDS)
        assert {n["state"] for n in await states(db_url)} <= {"pending", "sending"}
        telegram.injected.clear()  # Telegram recovers
        recovered = time.monotonic()
        await wait_until_sent(db_url, 3, timeout=RECOVERY_PROMISE_SECONDS + 10)
        assert time.monotonic() - recovered <= RECOVERY_PROMISE_SECONDS
        assert not notifier.done()  # it ran throughout
    assert [(n["state"], n["attempts"]) for n in await states(db_url)] == [("sent", 1)] * 3
    assert telegram.connected() == 0


@pytest.mark.slow(seconds=25)
@pytest.mark.timeout(OUTAGE_SECONDS + 120)
async def test_a_long_time_without_network_loses_nobody_their_message(
    db_url: str, telegram: FakeTelegram, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await know_users(db_url, telegram, 1, 2, 3)
    async with notifier_running(db_url, telegram, tmp_path, config=OUTAGE) as notifier:
        await telegram.wait_for(lambda: telegram.connected() == 1, timeout=10)
        telegram.go_offline()  # the connection drops, and reconnecting fails
        await three_failures_during(db_url, OUTAGE_SECONDS)
        assert telegram.connected() == 0
        telegram.go_online()
        recovered = time.monotonic()
        await wait_until_sent(db_url, 3, timeout=RECOVERY_PROMISE_SECONDS + 10)
        assert time.monotonic() - recovered <= RECOVERY_PROMISE_SECONDS
        assert not notifier.done()
    assert [(n["state"], n["attempts"]) for n in await states(db_url)] == [("sent", 1)] * 3
    tries = [r.getMessage() for r in caplog.records if "trying again in" in r.getMessage()]
    # One line per try, backing off to at most the probe cap (+25 % jitter): in 24 s at
    # least 24 / 1.25 tries, less the first ones' shorter waits' head start.
    assert len(tries) >= 15
    assert all(t.startswith("Telegram unreachable: ") for t in tries)


@pytest.mark.slow
async def test_an_upload_three_leases_long_is_sent_once_with_two_notifiers(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    config = NotifierConfig(lease_seconds=3, heartbeat_seconds=1)
    telegram.delays[functions.upload.SaveFilePartRequest] = 3 * config.lease_seconds
    video = tmp_path / "v.mp4"
    video.write_bytes(b"\x00" * 4096)
    await know_users(db_url, telegram, 1)
    async with (
        notifier_running(db_url, telegram, tmp_path, config=config, name="a"),
        notifier_running(db_url, telegram, tmp_path, config=config, name="b"),
    ):
        async with await connection.connect(db_url) as conn:
            await enqueue(conn, "slow", user_id=1)
            (job,) = await jobs.claim(conn, owner="w", limit=1, lease_seconds=30, now=None)
            await jobs.complete(conn, job, owner="w", result=str(video), now=None)
        await wait_until_sent(db_url, 1, timeout=6 * config.lease_seconds)
        await asyncio.sleep(2 * config.lease_seconds)  # room for a second send to show up
        assert len(telegram.sent(SendMedia)) == 1
        assert telegram.connected() == 1  # one bot session between the two
    assert [(n["state"], n["attempts"]) for n in await states(db_url)] == [("sent", 1)]


async def test_a_retry_supersedes_the_failure_message_nobody_sent(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    video = tmp_path / "v.mp4"
    video.write_bytes(b"\x00" * 2048)
    await know_users(db_url, telegram, 1)
    asset_id = await fail_for_good(db_url, "Маша", (1,))
    async with await connection.connect(db_url) as conn:
        result = await retry(conn, asset_id, Actor.operator("ops"))
        assert result.superseded_notifications == 1
        (job,) = await jobs.claim(conn, owner="w", limit=1, lease_seconds=30, now=None)
        await jobs.complete(conn, job, owner="w", result=str(video), now=None)
    async with notifier_running(db_url, telegram, tmp_path):
        await wait_until_sent(db_url, 1, timeout=10)
        await asyncio.sleep(0.5)
    assert telegram.sent(SendMessage) == []  # no «Упс», only the video
    (media,) = telegram.sent(SendMedia)
    assert media.peer.user_id == 1
    assert [(n["kind"], n["state"]) for n in await states(db_url)] == [
        ("failed", "superseded"),
        ("ready", "sent"),
    ]


async def test_a_leader_steps_down_when_another_took_its_term(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    config = NotifierConfig(lease_seconds=3, heartbeat_seconds=1)
    async with notifier_running(db_url, telegram, tmp_path, config=config, name="a"):
        await telegram.wait_for(lambda: telegram.connected() == 1, timeout=10)
        async with await connection.connect(db_url) as conn:  # as if its term had lapsed unseen
            await conn.execute(
                "UPDATE leadership SET leader = 'usurper', token = gen_random_uuid(),"
                " expires_at = now() + interval '1 hour' WHERE role = 'notifier'"
            )
        # It logs out at its next renewal (every term / 3 = 0.5 s) and stands by.
        await telegram.wait_for(lambda: telegram.connected() == 0, timeout=3)
        async with await connection.connect(db_url) as conn:
            assert await scalar(conn, "SELECT leader FROM leadership") == "usurper"
            await conn.execute("UPDATE leadership SET expires_at = now() - interval '1 s'")
        await telegram.wait_for(lambda: telegram.connected() == 1, timeout=5)
