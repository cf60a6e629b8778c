"""A send-only notifier beside a bot with its own framework (``[notifier] send_only``): what
``vidretry notifier --send-only`` runs, the real Telethon client with only its network layer
replaced. It delivers failure messages (with the seed's ``retry_video:<id>`` button), videos
and progress edits of the host bot's acceptances, paced as always; and the double shows what
it never does: fetch an update, ask for updates without ``invokeWithoutUpdates``, answer a
message or a button, or touch the command menu."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from telethon import functions, types

from tests.support import eventually, rows, scalar
from tests.telegram.double import BOT_TOKEN, FakeTelegram, install
from tests.telegram.test_front_door import finish
from tests.telegram.test_notifier import fail_for_good
from vidretry.app.daemons import NotifierProcess
from vidretry.config import Config, NotifierConfig, TelegramConfig, parse_config
from vidretry.db import connection
from vidretry.db.listen import Listener
from vidretry.db.pool import open_pool
from vidretry.errors import ConfigError
from vidretry.queue import jobs
from vidretry.queue.enqueue import enqueue
from vidretry.telegram.bot.client import NoUpdateFetching, build_client
from vidretry.telegram.bot.telegram_bot import TelegramBot
from vidretry.telegram.pacing import Pacer

SEND_ONLY = NotifierConfig(send_only=True, progress_edit_seconds=1)  # else the defaults
SendMessage = functions.messages.SendMessageRequest
SendMedia = functions.messages.SendMediaRequest
FETCHES = (
    functions.updates.GetStateRequest,
    functions.updates.GetDifferenceRequest,
    functions.updates.GetChannelDifferenceRequest,
)


@asynccontextmanager
async def send_only_notifier(
    db_url: str, telegram: FakeTelegram, tmp_path: Path, bots: list[TelegramBot]
) -> AsyncIterator[None]:
    def open_bot(pacer: Pacer) -> TelegramBot:
        config = TelegramConfig(
            api_id=1, api_hash="0" * 32, bot_token=BOT_TOKEN, session=tmp_path / "n.session"
        )
        client = build_client(config, send_only=True)
        install(client, telegram)
        bot = TelegramBot(client, pacer=pacer, rng=random.Random(5), send_only=True)
        bots.append(bot)
        return bot

    async with open_pool(db_url, max_size=6) as pool:
        process = NotifierProcess(
            Listener(db_url), pool, Config(notifier=SEND_ONLY), open_bot=open_bot,
            bot_token=BOT_TOKEN, rng=random.Random(11), name="n1",
        )  # fmt: skip
        stop = asyncio.Event()
        task = asyncio.create_task(process.run(stop))
        try:
            yield
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)


def sends_to(telegram: FakeTelegram, user: int) -> list[tuple[int, Any]]:
    return [
        (i, r) for i, r in enumerate(telegram.requests)
        if isinstance(r, SendMessage) and getattr(r.peer, "user_id", None) == user
    ]  # fmt: skip


async def test_it_delivers_and_edits_but_takes_none_of_the_bot_s_updates(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    # The host bot's users: they wrote to the bot, never to vidretry (no stored hashes).
    for user in (1, 2, 3):
        telegram.add_user(user)
    bots: list[TelegramBot] = []
    async with send_only_notifier(db_url, telegram, tmp_path, bots):
        assert await eventually(lambda: bool(bots) and telegram.authorized, within=10)
        first = await fail_for_good(db_url, "Маша", (1, 2))
        second = await fail_for_good(db_url, "Петя", (1,))
        async with await connection.connect(db_url) as conn:
            waiting = await enqueue(conn, "Лиза", user_id=3)
            # The host bot accepted Лиза with its own message, 4242, and asks vidretry to
            # keep it current.
            await conn.execute("SELECT vidretry_track_message(%s, 3, 4242)", (waiting.asset_id,))
        edits = functions.messages.EditMessageRequest
        assert await eventually(
            lambda: len(sends_to(telegram, 1)) == 2 and bool(telegram.sent(edits)), within=20
        )
        # Someone presses the button and writes to the bot: the host bot's, not ours.
        client = bots[0].client
        telegram.press(client, 1, f"retry_video:{first}".encode(), msg_id=1000)
        telegram.write(client, 2, "/video Маша")
        await asyncio.sleep(1.0)
    # The failure messages carry the seed's button data, for the host bot's handler.
    data = {
        bytes(r.reply_markup.rows[0].buttons[0].type.data)
        for _, r in sends_to(telegram, 1) + sends_to(telegram, 2)
    }
    assert data == {f"retry_video:{first}".encode(), f"retry_video:{second}".encode()}
    # Paced as always: one chat's two messages at least a second apart (the default).
    (a, _), (b, _) = sends_to(telegram, 1)
    assert telegram.arrived_at[b] - telegram.arrived_at[a] >= 1.0
    # The host's acceptance, edited into the place in line, with a cancel button.
    (edit,) = telegram.sent(edits)[:1]
    assert (edit.id, edit.peer.user_id) == (4242, 3)
    assert "Место в очереди: 1." in edit.message
    assert bytes(edit.reply_markup.rows[0].buttons[0].type.data) == (
        f"cancel_video:{waiting.asset_id}:0".encode()
    )
    # What it never did: fetch an update (Telethon asked, at login: answered in-process),
    # send a request that does not say "no updates", answer, or set the command menu.
    assert not [r for r in telegram.requests if isinstance(r, FETCHES)]
    assert isinstance(client._sender, NoUpdateFetching)
    assert client._sender.answered_here >= 2  # updates.getState and getDifference
    assert all(_without_updates(r) for r in telegram.wire), telegram.wire[:3]
    assert not telegram.sent(functions.messages.SetBotCallbackAnswerRequest)
    assert not telegram.sent(functions.bots.SetBotCommandsRequest)
    assert not sends_to(telegram, 2)[1:]  # user 2 got their failure message, no answer
    async with await connection.connect(db_url) as conn:
        assert await scalar(conn, "SELECT state FROM video_assets WHERE id = %s", first) == (
            "failed"
        )  # the press was not ours to answer
        sent = await rows(conn, "SELECT state FROM notifications")
        assert {n["state"] for n in sent} == {"sent"}


def _without_updates(request: Any) -> bool:
    if isinstance(request, functions.InvokeWithLayerRequest):
        request = request.query
    return isinstance(request, functions.InvokeWithoutUpdatesRequest)


async def test_a_running_job_s_progress_reaches_the_host_s_message(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    telegram.add_user(5)
    async with await connection.connect(db_url) as conn:
        asset = await enqueue(conn, "Маша", user_id=5)
        assert await scalar(conn, "SELECT vidretry_track_message(%s, 5, 77)", asset.asset_id)
        assert not await scalar(conn, "SELECT vidretry_track_message(%s, 6, 78)", asset.asset_id)
        (job,) = await jobs.claim(conn, owner="w", limit=1, lease_seconds=60, now=None)
        await jobs.record_progress(conn, job, 0.4, now=None)
    bots: list[TelegramBot] = []
    async with send_only_notifier(db_url, telegram, tmp_path, bots):
        assert await eventually(
            lambda: any("40 %" in (e.message or "") for e in telegram.sent(
                functions.messages.EditMessageRequest)),
            within=20,
        )  # fmt: skip


def test_send_only_and_plugins_do_not_mix() -> None:
    with pytest.raises(ConfigError, match=r"send_only = true .* \[telegram\] plugins"):
        parse_config({"notifier": {"send_only": True}, "telegram": {"plugins": ["x"]}})


async def test_one_upload_per_video_in_send_only_mode_too(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    video = tmp_path / "v.mp4"
    video.write_bytes(bytes(range(256)) * 4096)  # 1 MiB: two upload parts
    for user in (1, 2, 3):
        telegram.add_user(user)
    async with await connection.connect(db_url) as conn:
        for user in (1, 2, 3):
            await enqueue(conn, "Маша", user_id=user)
    await finish(db_url, video)
    bots: list[TelegramBot] = []
    async with send_only_notifier(db_url, telegram, tmp_path, bots):
        await telegram.wait_for(lambda: len(telegram.sent(SendMedia)) == 3, timeout=20)
    uploads = [r for r in telegram.sent(SendMedia)
               if isinstance(r.media, types.InputMediaUploadedDocument)]  # fmt: skip
    assert len(uploads) == 1
    assert telegram.uploaded_bytes == video.stat().st_size
