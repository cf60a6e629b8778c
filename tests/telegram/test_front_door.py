"""The bot as the front door: users ask for videos, follow them, and meet the limits.

Every test talks to the bot as a user would, through the real Telethon client and its update
loop (only the network layer is the in-process double), and checks what the user sees and
what the database holds.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from telethon import functions

from tests.support import rows
from tests.telegram.conftest import ADMIN, Deployment, deployed, running
from tests.telegram.double import FakeTelegram
from tests.telegram.plugins import broken_priority, echo_plugin, paying_users
from tests.telegram.test_delivery_conditions import notifier_running
from tests.telegram.test_notifier import fail_for_good, introduce, run_worker_to_failure
from vidretry.config import TelegramConfig
from vidretry.db import connection
from vidretry.queue import jobs
from vidretry.queue.enqueue import enqueue
from vidretry.texts import MessagesConfig

SendMessage = functions.messages.SendMessageRequest
SendMedia = functions.messages.SendMediaRequest
M = MessagesConfig()
ACCEPTED_MASHA = (
    "Принято! Видео для Маша скоро будет готово — я пришлю его сюда.\nМесто в очереди: 1."
)


def texts_to(telegram: FakeTelegram, user_id: int) -> list[str]:
    return [r.message for r in telegram.sent() if r.peer.user_id == user_id]


async def say(app: Deployment, user_id: int, text: str, answers: int = 1) -> list[str]:
    """``user_id`` writes ``text``; wait for ``answers`` new messages to them, return them."""
    before = len(texts_to(app.telegram, user_id))
    app.telegram.write(app.client, user_id, text)
    await app.telegram.wait_for(lambda: len(texts_to(app.telegram, user_id)) >= before + answers)
    return texts_to(app.telegram, user_id)[before:]


async def query(db_url: str, sql: str, *params: Any) -> list[dict[str, Any]]:
    async with await connection.connect(db_url) as conn:
        return await rows(conn, sql, *params)


async def finish(db_url: str, video: Path) -> None:
    """A worker generates every pending video successfully."""
    async with await connection.connect(db_url) as conn:
        for job in await jobs.claim(conn, owner="w", limit=100, lease_seconds=30, now=None):
            await jobs.complete(conn, job, owner="w", result=str(video), now=None)


@pytest.fixture
def video(tmp_path: Path) -> Path:
    path = tmp_path / "v.mp4"
    path.write_bytes(b"\x00" * 2048)
    return path


async def test_ask_then_the_video_arrives(
    db_url: str, telegram: FakeTelegram, tmp_path: Path, video: Path
) -> None:
    async with deployed(db_url, telegram, tmp_path) as app:
        telegram.add_user(1)
        async with running(app):
            assert await say(app, 1, "/video Маша") == [ACCEPTED_MASHA]
            (request,) = await query(db_url, "SELECT user_id, state FROM user_requests")
            assert request == {"user_id": 1, "state": "pending"}
            stored = await query(db_url, "SELECT access_hash FROM telegram_users WHERE user_id = 1")
            assert stored == [{"access_hash": telegram.users[1].access_hash}]
            await finish(db_url, video)
            await telegram.wait_for(lambda: len(telegram.sent(SendMedia)) == 1)
        (media,) = telegram.sent(SendMedia)
        assert media.peer.user_id == 1
        assert media.message == "Ваше видео для Маша готово! 🎬"


async def test_asking_twice_is_one_request(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    async with deployed(db_url, telegram, tmp_path) as app:
        telegram.add_user(1)
        await say(app, 1, "/video Маша")
        assert await say(app, 1, "/video@vidretry_bot Маша") == [ACCEPTED_MASHA]
        assert await query(db_url, "SELECT count(*) AS n FROM user_requests") == [{"n": 1}]


async def test_an_available_video_is_sent_at_once_and_again_on_asking_again(
    db_url: str, telegram: FakeTelegram, tmp_path: Path, video: Path
) -> None:
    async with deployed(db_url, telegram, tmp_path) as app:
        await introduce(app, 1, 2)
        await say(app, 1, "/video Маша")
        await finish(db_url, video)
        async with running(app):
            await telegram.wait_for(lambda: len(telegram.sent(SendMedia)) == 1)  # user 1's
            app.telegram.write(app.client, 2, "/video Маша")  # a second user: through the outbox
            await telegram.wait_for(lambda: len(telegram.sent(SendMedia)) == 2)
            app.telegram.write(app.client, 2, "/video Маша")  # again: sent directly
            await telegram.wait_for(lambda: len(telegram.sent(SendMedia)) == 3)
        assert [m.peer.user_id for m in telegram.sent(SendMedia)] == [1, 2, 2]
        assert {m.message for m in telegram.sent(SendMedia)} == {"Ваше видео для Маша готово! 🎬"}


async def test_asking_for_a_failed_video_retries_it_as_the_user(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    async with deployed(db_url, telegram, tmp_path) as app:
        await introduce(app, 1)
        asset_id = await fail_for_good(db_url, "Маша", (1,))
        assert await say(app, 1, "/video Маша") == [
            "Мы снова создаём видео для Маша. Пришлём его, как только оно будет готово.\n"
            "Место в очереди: 1."
        ]
        (asset,) = await query(db_url, "SELECT state, generation FROM video_assets")
        assert asset == {"state": "pending", "generation": 1}
        (event,) = await query(
            db_url,
            "SELECT actor FROM job_events WHERE kind = 'retried' AND asset_id = %s",
            asset_id,
        )
        assert event == {"actor": "telegram:1"}


async def test_my_lists_requests_newest_first_with_buttons_for_failed_ones(
    db_url: str, telegram: FakeTelegram, tmp_path: Path, video: Path
) -> None:
    async with deployed(db_url, telegram, tmp_path) as app:
        await introduce(app, 1)
        assert await say(app, 1, "/my") == ["Вы ещё ничего не заказывали. Напишите /video и имя."]
        await say(app, 1, "/video готовое")
        await finish(db_url, video)
        failed_id = await fail_for_good(db_url, "<b>сломанное</b>", (1,))
        await say(app, 1, "/video в очереди")
        (answer,) = await say(app, 1, "/my")
        assert answer == (
            "Ваши видео\n• в очереди — в очереди · Место в очереди: 1.\n"
            "• <b>сломанное</b> — не получилось\n"
            "• готовое — готово"
        )
        (request,) = [r for r in telegram.sent() if r.message == answer]
        (row,) = request.reply_markup.rows
        (button,) = row.buttons
        assert button.text == "🔄 Попробовать еще раз: <b>сломанное</b>"
        assert bytes(button.type.data) == f"retry_video:{failed_id}:0".encode()


async def test_too_many_open_requests_are_refused_politely(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    settings = TelegramConfig(admins=(ADMIN,), max_open_requests_per_user=2)
    async with deployed(db_url, telegram, tmp_path, settings=settings) as app:
        telegram.add_user(1)
        await say(app, 1, "/video a")
        await say(app, 1, "/video b")
        assert await say(app, 1, "/video c") == [M.too_many_open]
        assert await say(app, 1, "/video a") == [  # asking again for one of them is fine
            "Принято! Видео для a скоро будет готово — я пришлю его сюда.\nМесто в очереди: 1."
        ]
        names = await query(db_url, "SELECT name FROM video_assets ORDER BY name")
        assert [n["name"] for n in names] == ["a", "b"]


async def test_a_flood_from_one_user_is_told_once_and_never_slows_the_others(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    settings = TelegramConfig(admins=(ADMIN,), requests_per_minute=2)
    async with deployed(db_url, telegram, tmp_path, settings=settings) as app:
        telegram.add_user(1)
        telegram.add_user(2)
        connections = app.pool.get_stats().get("requests_num", 0)
        for i in range(30):
            telegram.write(app.client, 1, f"/video flood-{i}")
        started = time.monotonic()
        assert len(await say(app, 2, "/video calm")) == 1
        assert time.monotonic() - started < 2  # not behind user 1's thirty
        await telegram.wait_for(lambda: len(texts_to(telegram, 1)) >= 3)
        await asyncio.sleep(0.5)
        # Only what user 1 was answered cost a query: the 27 messages past the limit took
        # none of the pool's connections, which everybody's requests share (34 before).
        assert app.pool.get_stats().get("requests_num", 0) - connections < 10
        answers = texts_to(telegram, 1)
        assert answers.count(M.slow_down) == 1  # told once; the rest cost no message
        assert len(answers) == 3
        flood = await query(db_url, "SELECT name FROM video_assets WHERE name <> 'calm'")
        assert len(flood) == 2


async def test_out_of_retries_the_user_is_answered_and_the_admins_told_once(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    settings = TelegramConfig(admins=(ADMIN,), max_retries_per_user_per_day=1)
    async with deployed(db_url, telegram, tmp_path, settings=settings) as app:
        await introduce(app, 1, ADMIN)
        asset_id = await fail_for_good(db_url, "Маша", (1,))
        await say(app, 1, "/video Маша")  # the one retry of the day
        await run_worker_to_failure(db_url)  # it fails again
        async with running(app):
            await telegram.wait_for(lambda: any(t.startswith("Упс") for t in texts_to(telegram, 1)))
            # Asking again, and pressing the new button: no retry left today.
            assert await say(app, 1, "/video Маша") == [
                "Видео для Маша сегодня уже несколько раз не получилось. "
                "Я сообщил администратору — он разберётся."
            ]
            telegram.press(app.client, 1, f"retry_video:{asset_id}:1".encode(), 77)
            await telegram.wait_for(
                lambda: any(a.message == M.retry_limit_short for a in telegram.sent(
                    functions.messages.SetBotCallbackAnswerRequest))
            )  # fmt: skip
            await telegram.wait_for(lambda: len(texts_to(telegram, ADMIN)) == 1)
            await asyncio.sleep(0.5)  # room for a second alert to show up
        (alert,) = texts_to(telegram, ADMIN)
        assert alert.startswith("⚠️ Пользователь 1 исчерпал перезапуски на сегодня: видео Маша")
        assert "Последняя ошибка: " in alert
        (asset,) = await query(db_url, "SELECT state, generation FROM video_assets")
        assert asset == {"state": "failed", "generation": 1}  # nothing more was retried
        alerts = await query(db_url, "SELECT user_id FROM notifications WHERE kind = 'alert'")
        assert alerts == [{"user_id": ADMIN}]


async def test_admin_commands_for_admins_only(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    async with deployed(db_url, telegram, tmp_path) as app:
        await introduce(app, 1, ADMIN)
        asset_id = await fail_for_good(db_url, "Маша", (1,))
        for command in ("/stats", f"/retry {asset_id}", "/failed"):
            assert await say(app, 1, command) == [M.unknown_command]
        (failed,) = await say(app, ADMIN, "/failed")
        assert failed.startswith(f"Latest failed assets\n#{asset_id} Маша: ")
        (stats,) = await say(app, ADMIN, "/stats")
        assert "failed 1" in stats
        assert await say(app, ADMIN, f"/retry {asset_id}") == [
            f"asset {asset_id} queued again (retry round 1); 1 user(s) waiting"
        ]
        (event,) = await query(db_url, "SELECT actor FROM job_events WHERE kind = 'retried'")
        assert event == {"actor": f"telegram-admin:{ADMIN}"}
        assert await say(app, ADMIN, "/retry abc") == ["Usage: /retry <asset id>"]


async def test_a_plugin_answers_its_command_and_vidretrys_come_first(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    echo_plugin.SEEN.clear()
    async with deployed(db_url, telegram, tmp_path, plugins=[echo_plugin]) as app:
        telegram.add_user(1)
        assert await say(app, 1, "/ping") == ["pong"]
        await say(app, 1, "/video Маша")
        assert await say(app, 1, "/nonsense") == [M.unknown_command]
        assert echo_plugin.SEEN == ["/ping", "/nonsense"]  # never vidretry's own command


async def test_a_plugin_gives_paying_users_and_admins_a_higher_priority(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    plugins = [paying_users, broken_priority]
    async with deployed(db_url, telegram, tmp_path, plugins=plugins) as app:
        for user, name in ((1, "бесплатно"), (7, "платно"), (ADMIN, "админ"), (8, "тоже")):
            telegram.add_user(user)
            (accepted,) = await say(app, user, f"/video {name}")
            assert accepted.startswith("Принято!")
    # The highest answer wins; a broken plugin's (an exception, 42) counts as 0.
    assert await query(db_url, "SELECT name, priority FROM video_assets ORDER BY id") == [
        {"name": "бесплатно", "priority": 0},
        {"name": "платно", "priority": 5},
        {"name": "админ", "priority": 9},
        {"name": "тоже", "priority": 5},
    ]


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("/video", M.ask_name),
        ("/video    ", M.ask_name),
        ("/video a\x07b", M.bad_name),
        ("/video line\nbreak", M.bad_name),
        ("/video a\tb", M.bad_name),  # the CLI refuses it too (tests/acceptance/test_cli.py)
        ("/video " + "ж" * 1001, M.bad_name),  # 2,002 bytes of UTF-8
    ],
)
async def test_bad_names_are_answered_and_change_nothing(
    db_url: str, telegram: FakeTelegram, tmp_path: Path, text: str, answer: str
) -> None:
    async with deployed(db_url, telegram, tmp_path) as app:
        telegram.add_user(1)
        assert await say(app, 1, text) == [answer.replace("<i>", "").replace("</i>", "")]
        assert await query(db_url, "SELECT count(*) AS n FROM video_assets") == [{"n": 0}]


async def test_silent_in_groups_and_helpful_in_private(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    async with deployed(db_url, telegram, tmp_path) as app:
        telegram.add_user(1)
        telegram.write(app.client, 1, "/video Маша", group=4242)
        await asyncio.sleep(0.5)
        assert telegram.sent() == []
        assert await query(db_url, "SELECT count(*) AS n FROM video_assets") == [{"n": 0}]
        (start,) = await say(app, 1, "/start")
        assert start.startswith("Привет! Я делаю видео по имени.")
        (help_text,) = await say(app, 1, "/help")
        assert help_text.startswith("Что я умею\n/video имя")
        assert await say(app, 1, "просто текст") == [help_text]  # plain text is off by default


async def test_plain_text_asks_for_a_video_when_turned_on(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    settings = TelegramConfig(admins=(ADMIN,), plain_text_requests=True)
    async with deployed(db_url, telegram, tmp_path, settings=settings) as app:
        telegram.add_user(1)
        assert await say(app, 1, "Маша") == [ACCEPTED_MASHA]


async def test_the_command_menu_is_registered_at_login(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    async with notifier_running(db_url, telegram, tmp_path):
        await telegram.wait_for(
            lambda: len(telegram.sent(functions.bots.SetBotCommandsRequest)) == 2, timeout=10
        )
    menus = {r.lang_code: r.commands for r in telegram.sent(functions.bots.SetBotCommandsRequest)}
    english = M.in_language("en")
    assert {code: [(c.command, c.description) for c in menu] for code, menu in menus.items()} == {
        "": [
            ("video", M.command_video),
            ("my", M.command_my),
            ("cancel", M.command_cancel),
            ("help", M.command_help),
        ],
        "en": [
            ("video", english.command_video),
            ("my", english.command_my),
            ("cancel", english.command_cancel),
            ("help", english.command_help),
        ],
    }


async def test_the_acceptance_and_my_tell_the_place_in_line_and_the_wait(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    async with await connection.connect(db_url) as conn:
        for name in ("x", "y", "z"):
            await enqueue(conn, name, user_id=9)
        # One runs now; the last attempts took two minutes each (claim to outcome).
        (busy,) = await jobs.claim(conn, owner="w", limit=1, lease_seconds=60, now=None)
        await conn.execute(
            "INSERT INTO job_events (asset_id, generation, kind, attempt, created_at)"
            " SELECT %s, 0, kind, 1, now() - make_interval(secs => ago)"
            " FROM (VALUES ('claimed', 125), ('succeeded', 5)) AS e (kind, ago)",
            (busy.id,),
        )
    async with deployed(db_url, telegram, tmp_path) as app:
        telegram.add_user(1)
        telegram.add_user(2, lang_code="en")
        async with running(app):
            # x runs; user 9's y is in this round, so it goes first, then Маша, then z
            # (the fair order: user 1 is not put behind user 9's backlog). Place 2, two
            # rounds of the one busy worker.
            assert await say(app, 1, "/video Маша") == [
                "Принято! Видео для Маша скоро будет готово — я пришлю его сюда.\n"
                "Место в очереди: 2. Ждать — около 4 мин."
            ]
            (mine,) = await say(app, 1, "/my")
            assert "• Маша — в очереди · Место в очереди: 2. Ждать — около 4 мин." in mine
            (answer,) = await say(app, 2, "/video y")
            assert answer.endswith("\nPlace in line: 1. Expected wait: about 2 min.")
