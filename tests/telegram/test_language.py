"""The user's language: Telegram tells the bot each user's ``lang_code``; the bot keeps it and
speaks it, in every answer and in every message the outbox sends later. English is built
in; anything else falls back to the default (Russian) texts."""

from __future__ import annotations

from pathlib import Path

from tests.support import eventually
from tests.telegram.conftest import ADMIN, deployed, running
from tests.telegram.double import FakeTelegram
from tests.telegram.test_front_door import query, say, texts_to
from tests.telegram.test_notifier import (
    CallbackAnswer,
    button_data,
    failure_messages,
    notifications,
    run_worker_to_failure,
)
from vidretry.db import connection
from vidretry.texts import ENGLISH, MessagesConfig

M = MessagesConfig()
EN = M.in_language("en")


async def test_an_english_speaking_user_gets_english_and_the_others_the_default(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    async with deployed(db_url, telegram, tmp_path) as app:
        telegram.add_user(1, lang_code="en")
        telegram.add_user(2, lang_code="ru")
        telegram.add_user(3)  # Telegram gives no language
        telegram.add_user(4, lang_code="de")  # a language vidretry has no texts for
        async with running(app):
            assert await say(app, 1, "/video Masha") == [
                "Got it! The video for Masha will be ready soon — I'll send it here.\n"
                "Place in line: 1."
            ]
            russian = (
                "Принято! Видео для Masha скоро будет готово — я пришлю его сюда.\n"
                "Место в очереди: 1."
            )
            for user in (2, 3, 4):
                assert await say(app, user, "/video Masha") == [russian]
            languages = await query(
                db_url, "SELECT user_id, lang_code FROM telegram_users ORDER BY user_id"
            )
            assert [u["lang_code"] for u in languages] == ["en", "ru", None, "de"]

            # The failure, rendered when it is sent: in each recipient's language.
            telegram.requests.clear()
            await run_worker_to_failure(db_url)
            await telegram.wait_for(lambda: len(failure_messages(telegram)) == 4)
            sent = {r.peer.user_id: r for r in failure_messages(telegram)}
            assert sent[1].message == (
                "Oops! Something went wrong while making the video for Masha. 😔\n\n"
                "Don't worry, you can try again!"
            )
            (row,) = sent[1].reply_markup.rows
            assert row.buttons[0].text == "🔄 Try again"
            for user in (2, 3, 4):
                assert sent[user].message.startswith("Упс! Что-то пошло не так")
                assert sent[user].reply_markup.rows[0].buttons[0].text == M.retry_button

            async def recorded() -> bool:
                return all(n["state"] == "sent" for n in await notifications(db_url))

            await eventually(recorded, within=10)
            (message_id,) = [
                n["telegram_message_id"] for n in await notifications(db_url) if n["user_id"] == 1
            ]
            # The button's answer too.
            telegram.requests.clear()
            telegram.press(app.client, 1, button_data(sent[1]), message_id)
            await telegram.wait_for(lambda: len(telegram.sent()) == 1)
            assert telegram.sent(CallbackAnswer)[0].message == EN.retried
            assert texts_to(telegram, 1) == [
                "We are making the video for Masha again. We'll send it as soon as it is ready."
            ]


async def test_the_language_follows_the_user_and_an_update_without_one_keeps_it(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    async with deployed(db_url, telegram, tmp_path) as app:
        user = telegram.add_user(7, lang_code="en-GB")  # a regional variant: English
        async with running(app):
            assert await say(app, 7, "/help") == [
                "What I can do\n/video name — order a video, for example /video Masha\n"
                "/my — your videos and how they are doing\n/cancel — cancel an order\n"
                "/help — this help"
            ]
            user.lang_code = None
            assert await say(app, 7, "/nonsense") == [ENGLISH["unknown_command"]]
            user.lang_code = "ru"
            assert await say(app, 7, "/nonsense") == [M.unknown_command]
        stored = await query(db_url, "SELECT lang_code FROM telegram_users WHERE user_id = 7")
        assert stored == [{"lang_code": "ru"}]


async def test_an_admin_alert_is_in_the_admins_language(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    async with deployed(db_url, telegram, tmp_path) as app:
        telegram.add_user(ADMIN, lang_code="en")
        async with running(app):
            await say(app, ADMIN, "/start")
            telegram.requests.clear()
            async with await connection.connect(db_url) as conn:
                await conn.execute(
                    "INSERT INTO notifications (user_id, chat_id, kind, generation, payload)"
                    " VALUES (%s, %s, 'paused', 1,"
                    ' \'{"waiting": 12, "error": "exit status 1"}\')',
                    (ADMIN, ADMIN),
                )
                await conn.execute("NOTIFY vidretry_outbox")
            await telegram.wait_for(lambda: bool(texts_to(telegram, ADMIN)))
        (alert,) = texts_to(telegram, ADMIN)
        assert alert.startswith("⏸ The queue is paused: the video generator seems to be down")
        assert "Waiting: 12." in alert
