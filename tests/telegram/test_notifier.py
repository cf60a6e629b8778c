"""The notifier and the retry button, end to end through the real Telethon client."""

from __future__ import annotations

import asyncio
import logging
import random
import tempfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from telethon import functions, types

from tests.support import FakeClock, busiest_second, eventually, rows, scalar
from tests.telegram.conftest import ADMIN, FAST, Deployment, deployed, running
from tests.telegram.double import BOT_TOKEN, FakeTelegram, install
from vidretry import eventloop
from vidretry.clock import DatabaseClock
from vidretry.config import TelegramConfig, WorkerConfig
from vidretry.db import connection
from vidretry.db.pool import open_pool
from vidretry.errors import TelegramUnavailable
from vidretry.queue import jobs
from vidretry.queue.enqueue import enqueue
from vidretry.queue.handlers import build_handler
from vidretry.queue.worker import Worker
from vidretry.telegram.bot.client import build_client
from vidretry.telegram.bot.telegram_bot import TelegramBot
from vidretry.telegram.notifier import Delivery
from vidretry.telegram.pacing import WINDOW_SECONDS
from vidretry.telegram.transport import Recipient, TelegramDown

SendMessage = functions.messages.SendMessageRequest
SendMedia = functions.messages.SendMediaRequest
CallbackAnswer = functions.messages.SetBotCallbackAnswerRequest


async def fail_for_good(db_url: str, name: str, users: tuple[int, ...]) -> int:
    """Enqueue ``name`` for ``users`` and fail it through a real worker's three attempts."""
    async with await connection.connect(db_url) as conn:
        for user in users:
            asset_id = (await enqueue(conn, name, user_id=user)).asset_id
    await run_worker_to_failure(db_url)
    return asset_id


async def run_worker_to_failure(db_url: str) -> None:
    # The command handler makes the output directory: a temporary one, not ./output.
    out = tempfile.TemporaryDirectory(prefix="vidretry-test-output-")
    config = WorkerConfig(
        handler="command",
        command=("sh", "-c", "exit 3"),
        backoff_base_seconds=0,
        poll_interval_seconds=0.1,
        output_dir=Path(out.name),
    )
    async with open_pool(db_url, max_size=3) as pool:
        worker = Worker(
            pool, config, build_handler(config), listener=None, clock=DatabaseClock(),
            rng=random.Random(1),
        )  # fmt: skip
        await worker.run(asyncio.Event(), drain=True)
    out.cleanup()


async def introduce(deployment: Deployment, *user_ids: int) -> None:
    """Users write /start, so the bot learns their access hashes."""
    for user_id in user_ids:
        deployment.telegram.add_user(user_id)
        deployment.telegram.write(deployment.client, user_id, "/start")
    await deployment.telegram.wait_for(lambda: len(deployment.telegram.sent()) >= len(user_ids))
    deployment.telegram.requests.clear()
    deployment.telegram.arrived_at.clear()


# A row back in the outbox as if its send had not been tried: no attempt, no crash, no mark.
UNCHARGED = [{"state": "pending", "attempts": 0, "crashes": 0, "send_started_at": None}]


async def charges(db_url: str) -> list[dict[str, Any]]:
    """What the rows were charged: their attempts and crashes, and any send's mark."""
    async with await connection.connect(db_url) as conn:
        return await rows(
            conn, "SELECT state, attempts, crashes, send_started_at FROM notifications ORDER BY id"
        )


def failure_messages(telegram: FakeTelegram) -> list[Any]:
    return [r for r in telegram.sent() if r.reply_markup is not None]


def button_data(request: Any) -> bytes:
    (row,) = request.reply_markup.rows
    (button,) = row.buttons
    return bytes(button.type.data)


async def notifications(db_url: str) -> list[dict[str, Any]]:
    async with await connection.connect(db_url) as conn:
        return await rows(
            conn,
            "SELECT user_id, kind, state, attempts, last_error, telegram_message_id"
            " FROM notifications ORDER BY user_id",
        )


async def test_three_users_notified_one_press_requeues_once_and_a_stranger_changes_nothing(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    async with deployed(db_url, telegram, tmp_path) as app:
        await introduce(app, 111, 222, 333)
        telegram.add_user(444)  # a stranger
        async with running(app):
            assert app.notifier.listener is not None  # idle and listening (poll: 60 s)
            await asyncio.wait_for(app.notifier.listener.ready.wait(), 10)
            asset_id = await fail_for_good(db_url, "Маша", (111, 222, 333))
            # Woken by NOTIFY, not by its 60-second poll.
            await telegram.wait_for(lambda: len(failure_messages(telegram)) == 3, timeout=2)
            sent = failure_messages(telegram)
            assert sorted(r.peer.user_id for r in sent) == [111, 222, 333]
            for request in sent:
                assert isinstance(request.peer, types.InputPeerUser)
                assert request.peer.access_hash == telegram.users[request.peer.user_id].access_hash
                assert request.message == (
                    "Упс! Что-то пошло не так при создании видео для Маша. 😔\n\n"
                    "Не переживайте, вы можете попробовать еще раз!"
                )
                (bold,) = request.entities
                assert isinstance(bold, types.MessageEntityBold)
                assert request.message[bold.offset : bold.offset + bold.length] == "Маша"
                assert isinstance(request.reply_markup, types.ReplyInlineMarkup)
                assert button_data(request) == f"retry_video:{asset_id}:0".encode()

            # Telegram has them; their record is a group commit a moment later.
            async def all_recorded() -> bool:
                return all(n["state"] == "sent" for n in await notifications(db_url))

            await eventually(all_recorded, within=10)
            recorded = await notifications(db_url)
            assert [n["state"] for n in recorded] == ["sent"] * 3
            assert all(n["telegram_message_id"] for n in recorded)

            # A stranger presses the button (forwarded message, or forged): nothing changes.
            first = next(r for r in sent if r.peer.user_id == 111)
            message_id = next(n["telegram_message_id"] for n in recorded if n["user_id"] == 111)
            telegram.requests.clear()
            telegram.press(app.client, 444, button_data(first), message_id)
            await telegram.wait_for(lambda: bool(telegram.sent(CallbackAnswer)))
            assert telegram.sent(CallbackAnswer)[0].message == "Эта кнопка не для вас."
            async with await connection.connect(db_url) as conn:
                assert await scalar(conn, "SELECT state FROM video_assets") == "failed"

            # User 111 presses it: re-queued once, answered, the button removed.
            telegram.requests.clear()
            telegram.press(app.client, 111, button_data(first), message_id)
            await telegram.wait_for(lambda: len(telegram.sent()) == 1)
            answer, delete, confirmation = (
                telegram.sent(CallbackAnswer)[0],
                telegram.sent(functions.messages.DeleteMessagesRequest)[0],
                telegram.sent()[0],
            )
            assert answer.message == "Запустили заново! 🔄"
            assert delete.id == [message_id]
            kinds = [type(r) for r in telegram.requests]
            assert kinds.index(CallbackAnswer) < kinds.index(
                functions.messages.DeleteMessagesRequest
            )
            assert confirmation.peer.user_id == 111
            assert "Маша" in confirmation.message
        async with await connection.connect(db_url) as conn:
            (asset,) = await rows(conn, "SELECT state, attempts, generation FROM video_assets")
            assert asset == {"state": "pending", "attempts": 0, "generation": 1}
            retried = await rows(
                conn, "SELECT actor, detail FROM job_events WHERE kind = 'retried'"
            )
            assert retried == [{"actor": "telegram:111", "detail": "retry button"}]
            # And the worker runs the job again.
            claimed = await jobs.claim(conn, owner="w", limit=1, lease_seconds=30, now=None)
            assert [j.id for j in claimed] == [asset_id]


async def test_a_blocked_user_does_not_hold_up_the_others(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    async with deployed(db_url, telegram, tmp_path) as app:
        await introduce(app, 1, 2, 3)
        telegram.fail(SendMessage, "USER_IS_BLOCKED", 400, when=lambda r: r.peer.user_id == 2)
        await fail_for_good(db_url, "a", (1, 2, 3))
        result = await app.notifier.run_once()
        assert result.outcomes == {Delivery.SENT: 2, Delivery.DEAD: 1}
        recorded = await notifications(db_url)
        assert [(n["user_id"], n["state"]) for n in recorded] == [
            (1, "sent"),
            (2, "dead"),
            (3, "sent"),
        ]
        assert recorded[1]["last_error"] == "recipient refused: USER_IS_BLOCKED"

        # Later notifications to that user are not attempted...
        telegram.requests.clear()
        await fail_for_good(db_url, "b", (2,))
        assert (await app.notifier.run_once()).claimed == 0
        assert telegram.sent() == []
        async with await connection.connect(db_url) as conn:
            reason = await scalar(
                conn,
                "SELECT last_error FROM notifications"
                " WHERE state = 'dead' ORDER BY id DESC LIMIT 1",
            )
        assert reason == "not attempted: recipient refused: USER_IS_BLOCKED"

        # ...until they write to the bot again.
        telegram.write(app.client, 2, "hello again")
        async with await connection.connect(db_url) as conn:
            for _ in range(50):
                if await scalar(
                    conn, "SELECT blocked_at IS NULL FROM telegram_users WHERE user_id = 2"
                ):
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the block was not lifted")


async def test_a_flood_wait_reschedules_without_charging_and_pauses_sending(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    # The notifier's and its pacer's time, moved by hand: a minute ahead of the database's,
    # so that the rows written meanwhile are due.
    clock = FakeClock(datetime.now(UTC) + timedelta(minutes=1))
    async with deployed(db_url, telegram, tmp_path, clock=clock, monotonic=clock.monotonic) as app:
        await introduce(app, 1, 2, 3)
        telegram.fail(SendMessage, "FLOOD_WAIT_2", 420)
        await fail_for_good(db_url, "a", (1, 2, 3))
        result = await app.notifier.run_once()
        assert result.outcomes == {Delivery.LATER: 3}
        assert len(telegram.sent()) == 1  # the others never went out: sending paused
        recorded = await notifications(db_url)
        assert {(n["state"], n["attempts"]) for n in recorded} == {("pending", 0)}
        async with await connection.connect(db_url) as conn:
            waits = await rows(
                conn, "SELECT next_attempt_at - %s AS wait FROM notifications", clock.now()
            )
        assert {w["wait"].total_seconds() for w in waits} == {2.0}  # Telegram's 2 s, for all
        clock.advance(1.9)
        assert (await app.notifier.run_once()).claimed == 0  # not due yet
        clock.advance(0.1)
        assert (await app.notifier.run_once()).outcomes == {Delivery.SENT: 3}


async def test_server_errors_never_use_up_a_row(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    # Telegram's own trouble (5xx) is not the message's: however often it happens, the row
    # is not charged and not given up; it goes out once Telegram answers.
    async with deployed(db_url, telegram, tmp_path) as app:
        await introduce(app, 1)
        telegram.fail(SendMessage, "RPC_CALL_FAIL", 500, times=6)
        await fail_for_good(db_url, "a", (1,))
        for _ in range(6):
            assert (await app.notifier.run_once()).outcomes == {Delivery.LATER: 1}
            (note,) = await notifications(db_url)
            assert (note["state"], note["attempts"]) == ("pending", 0)
            assert note["last_error"].startswith("RpcCallFailError")
        assert (await app.notifier.run_once()).outcomes == {Delivery.SENT: 1}


async def test_a_server_error_comes_back_as_it_arrives_not_after_telethon_s_pause(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    # Telethon sleeps 2 s after a server error before it raises it, even with no retry
    # left, and the row's mark (its send under way) stayed set all that while: a leader
    # killed then was charged a crash for a send that had already failed. In the chaos
    # run's Telegram outage, with a leader killed every second or two, rows were set aside
    # that way. The error must reach the notifier as it arrives: within a few turns of the
    # event loop, not seconds.
    async with deployed(db_url, telegram, tmp_path) as app:
        await introduce(app, 1)
        for error, code in (("RPC_CALL_FAIL", 500), ("INTERNAL_SERVER_ERROR", 500),
                            ("TIMEOUT", -503)):  # fmt: skip
            telegram.fail(SendMessage, error, code)
            sending = asyncio.create_task(app.bot.send_text(Recipient(1, 1, 1007), "hi", None))
            await telegram.wait_for(lambda: telegram.injected[-1].times == 0)
            for _ in range(50):  # turns of the loop, not time: the machine's speed is moot
                if sending.done():
                    break
                await asyncio.sleep(0)
            assert sending.done(), error
            with pytest.raises(TelegramDown):
                await sending
        # And the notifier's row: back in the outbox, unmarked, not charged.
        await fail_for_good(db_url, "a", (1,))
        telegram.fail(SendMessage, "RPC_CALL_FAIL", 500)
        assert (await app.notifier.run_once()).outcomes == {Delivery.LATER: 1}
        assert await charges(db_url) == UNCHARGED


async def test_a_row_failing_on_its_own_backs_off_then_dies_after_the_time_budget(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    clock = FakeClock(datetime.now(UTC))
    config = replace(FAST, backoff_base_seconds=1, give_up_after_seconds=3600)
    async with deployed(db_url, telegram, tmp_path, config=config, clock=clock) as app:
        await introduce(app, 1)
        # An error Telegram has no category for: transient, and this chat's own trouble.
        telegram.fail(SendMessage, "SOMETHING_ODD", 409, times=10)
        await fail_for_good(db_url, "a", (1,))
        clock.advance(5)  # the clock started before the failure was written
        for attempt in (1, 2, 3):
            assert (await app.notifier.run_once()).outcomes == {Delivery.LATER: 1}
            (note,) = await notifications(db_url)
            assert (note["state"], note["attempts"]) == ("pending", attempt)
            clock.advance(2**attempt)  # past its exponential backoff
        clock.advance(3600)
        assert (await app.notifier.run_once()).outcomes == {Delivery.DEAD: 1}
        (note,) = await notifications(db_url)
        assert note["state"] == "dead"
        assert note["last_error"].startswith("gave up after 3600s: RPCError: ")


async def test_old_message_loses_its_keyboard_instead(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    async with deployed(db_url, telegram, tmp_path) as app:
        await introduce(app, 1)
        asset_id = await fail_for_good(db_url, "a", (1,))
        await app.notifier.run_once()
        (note,) = await notifications(db_url)
        telegram.fail(functions.messages.DeleteMessagesRequest, "MESSAGE_DELETE_FORBIDDEN", 403)
        telegram.requests.clear()
        telegram.press(
            app.client, 1, f"retry_video:{asset_id}:0".encode(), note["telegram_message_id"]
        )
        await telegram.wait_for(lambda: bool(telegram.sent(functions.messages.EditMessageRequest)))
        (edit,) = telegram.sent(functions.messages.EditMessageRequest)
        assert edit.id == note["telegram_message_id"]
        assert edit.reply_markup == types.ReplyInlineMarkup(rows=[])
        assert telegram.sent(CallbackAnswer)[0].message == "Запустили заново! 🔄"


async def test_double_click_retries_once(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    async with deployed(db_url, telegram, tmp_path) as app:
        await introduce(app, 1, 2)
        asset_id = await fail_for_good(db_url, "a", (1, 2))
        data = f"retry_video:{asset_id}:0".encode()
        for user in (1, 1, 2):  # a double click, and the other user's button for the same asset
            telegram.press(app.client, user, data, 50)
        await telegram.wait_for(lambda: len(telegram.sent(CallbackAnswer)) == 3)
        answers = sorted(a.message for a in telegram.sent(CallbackAnswer))
        assert answers == sorted(
            ["Запустили заново! 🔄", *["Кто-то уже перезапустил это видео. ⏳"] * 2]
        )
        async with await connection.connect(db_url) as conn:
            assert await scalar(conn, "SELECT count(*) FROM job_events WHERE kind = 'retried'") == 1
            assert await scalar(conn, "SELECT generation FROM video_assets") == 1


async def test_replies_to_presses_keep_to_the_bots_rate(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    # The messages the bot sends after a press go through the notifier's pacing: with a
    # rate of 2 per second, four users pressing at once get their confirmations spread so
    # that no second holds more than 2: the pacer's promise, on when each reaches the
    # double (they pass its guard as they leave).
    config = replace(FAST, rate_per_second=2)
    async with deployed(db_url, telegram, tmp_path, config=config) as app:
        await introduce(app, 1, 2, 3, 4)
        for user in (1, 2, 3, 4):
            asset_id = await fail_for_good(db_url, f"v{user}", (user,))
            telegram.press(app.client, user, f"retry_video:{asset_id}:0".encode(), 50 + user)
        await telegram.wait_for(lambda: len(telegram.sent()) == 4, timeout=10)
        times = [t for r, t in zip(telegram.requests, telegram.arrived_at, strict=True)
                 if isinstance(r, SendMessage)]  # fmt: skip
        assert len(times) == 4
        assert all(times[i + 2] - times[i] >= 1.0 for i in range(len(times) - 2))


async def test_the_rate_holds_when_messages_leave_late_after_their_uploads(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    # Five videos whose uploads take a second each, then five text messages: at 5 a second
    # the videos' turns come first, but their messages leave only when their uploads are
    # done, as the texts' turns come. The rate holds on when each reaches Telegram.
    config = replace(FAST, rate_per_second=5)
    telegram.delays[functions.upload.SaveFilePartRequest] = 1.0
    video = tmp_path / "v.mp4"
    video.write_bytes(b"\x00" * 2048)
    async with deployed(db_url, telegram, tmp_path, config=config) as app:
        await introduce(app, *range(1, 11))
        async with await connection.connect(db_url) as conn:
            for user in range(1, 6):
                await enqueue(conn, f"v{user}", user_id=user)
            for job in await jobs.claim(conn, owner="w", limit=5, lease_seconds=30, now=None):
                await jobs.complete(conn, job, owner="w", result=str(video), now=None)
        async with running(app):
            uploading = functions.messages.SetTypingRequest
            await telegram.wait_for(lambda: len(telegram.sent(uploading)) == 5, timeout=10)
            async with await connection.connect(db_url) as conn:
                await conn.execute(
                    "INSERT INTO notifications"
                    " (asset_id, user_id, chat_id, kind, generation, payload)"
                    " SELECT (SELECT min(id) FROM video_assets), u, u, 'failed', 0,"
                    " jsonb_build_object('name', 'x') FROM generate_series(6, 10) AS u"
                )
                await conn.execute("NOTIFY vidretry_outbox")
            await telegram.wait_for(
                lambda: len(telegram.sent(SendMessage)) + len(telegram.sent(SendMedia)) == 10,
                timeout=10,
            )
    times = [t for r, t in zip(telegram.requests, telegram.arrived_at, strict=True)
             if isinstance(r, SendMessage | SendMedia)]  # fmt: skip

    assert busiest_second(times) <= config.rate_per_second


async def test_a_message_waiting_at_the_pacers_guard_is_not_yet_marked_as_being_sent(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    # A notifier that dies is charged a crash on every row whose send had begun, and sets a
    # row aside after three: a row merely waiting for its turn at the pacer's last guard
    # (here the last second's sends used the whole rate) has not begun. Its mark is made as
    # its message is let go, so the crash of a poison sent before it is not charged to it.
    clock = FakeClock(datetime.now(UTC) + timedelta(minutes=1))
    async with deployed(db_url, telegram, tmp_path, clock=clock, monotonic=clock.monotonic) as app:
        await introduce(app, 1)
        await fail_for_good(db_url, "a", (1,))
        for chat in range(100, 100 + int(FAST.rate_per_second)):
            await app.notifier.pacer.go(chat)
        (note,) = await app.notifier.claim(1)
        delivery = asyncio.create_task(app.notifier.deliver(note))

        async def marked() -> bool:
            async with await connection.connect(db_url) as conn:
                return bool(await scalar(
                    conn, "SELECT send_started_at IS NOT NULL FROM notifications"
                ))  # fmt: skip

        assert not await eventually(marked, within=1)  # held until the pacer's clock moves
        assert not telegram.sent(SendMessage)
        clock.advance(WINDOW_SECONDS)
        assert await delivery == Delivery.SENT
    assert len(telegram.sent(SendMessage)) == 1


async def test_a_message_whose_lease_was_lost_before_it_left_is_not_sent(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    # Its mark, made as it is about to leave, finds the row taken over: nothing leaves, and
    # the notifier that took it sends it.
    async with deployed(db_url, telegram, tmp_path) as app:
        await introduce(app, 1)
        await fail_for_good(db_url, "a", (1,))
        (note,) = await app.notifier.claim(1)
        async with await connection.connect(db_url) as conn:
            await conn.execute("UPDATE notifications SET lease_token = gen_random_uuid()")
        assert await app.notifier.deliver(note) is Delivery.LOST
    assert not telegram.sent(SendMessage)


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xfe\x00garbage",
        b"retry_video:abc:0",
        b"retry_video:-5:0",
        b"retry_video:99999999999999999999999:0",
        b"retry_video:1:0:0",
        b"retry_video:1:" + b"9" * 40,
        b"retry_video_",
        b"delete_everything:1",
        b"x" * 64,
    ],
)
async def test_forged_data_gets_a_polite_answer_and_changes_nothing(
    db_url: str, telegram: FakeTelegram, tmp_path: Path, data: bytes
) -> None:
    async with deployed(db_url, telegram, tmp_path) as app:
        await introduce(app, 1)
        await fail_for_good(db_url, "a", (1,))
        telegram.press(app.client, 1, data, 50)
        await telegram.wait_for(lambda: bool(telegram.sent(CallbackAnswer)))
        assert telegram.sent(CallbackAnswer)[0].message == "Эта кнопка больше не работает."
        async with await connection.connect(db_url) as conn:
            assert await scalar(conn, "SELECT state FROM video_assets") == "failed"


async def test_legacy_and_generation_less_buttons_still_work(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    async with deployed(db_url, telegram, tmp_path) as app:
        await introduce(app, 1)
        first = await fail_for_good(db_url, "legacy", (1,))
        second = await fail_for_good(db_url, "short", (1,))
        telegram.press(app.client, 1, f"retry_video_{first}".encode(), 50)
        telegram.press(app.client, 1, f"retry_video:{second}".encode(), 51)
        await telegram.wait_for(lambda: len(telegram.sent(CallbackAnswer)) == 2)
        assert {a.message for a in telegram.sent(CallbackAnswer)} == {"Запустили заново! 🔄"}
        async with await connection.connect(db_url) as conn:
            assert (
                await scalar(conn, "SELECT count(*) FROM video_assets WHERE state = 'pending'") == 2
            )


async def test_a_stale_button_after_a_second_failure(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    async with deployed(db_url, telegram, tmp_path) as app:
        await introduce(app, 1)
        asset_id = await fail_for_good(db_url, "a", (1,))
        async with await connection.connect(db_url) as conn:
            from vidretry.queue.retry import Actor, retry

            assert (await retry(conn, asset_id, Actor.operator("op"))).retried
        await run_worker_to_failure(db_url)  # retry round 1 fails too
        telegram.press(app.client, 1, f"retry_video:{asset_id}:0".encode(), 50)
        await telegram.wait_for(lambda: bool(telegram.sent(CallbackAnswer)))
        assert telegram.sent(CallbackAnswer)[0].message == "Кто-то уже перезапустил это видео. ⏳"
        async with await connection.connect(db_url) as conn:
            assert (
                await scalar(conn, "SELECT (state, generation)::text FROM video_assets")
                == "(failed,1)"
            )


async def test_an_admin_may_press_any_button(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    async with deployed(db_url, telegram, tmp_path) as app:
        await introduce(app, 1, ADMIN)
        asset_id = await fail_for_good(db_url, "a", (1,))
        telegram.press(app.client, ADMIN, f"retry_video:{asset_id}:0".encode(), 50)
        await telegram.wait_for(lambda: bool(telegram.sent(CallbackAnswer)))
        assert telegram.sent(CallbackAnswer)[0].message == "Запустили заново! 🔄"


async def test_names_are_shown_literally(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    name = "<b>x</b> & y *z* _w_"
    async with deployed(db_url, telegram, tmp_path) as app:
        await introduce(app, 1)
        await fail_for_good(db_url, name, (1,))
        await app.notifier.run_once()
        (request,) = failure_messages(telegram)
        (bold,) = request.entities
        assert request.message[bold.offset : bold.offset + bold.length] == name


async def test_ready_video_is_sent_and_a_missing_file_is_dead(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    video = tmp_path / "v.mp4"
    video.write_bytes(b"\x00" * 2048)
    async with deployed(db_url, telegram, tmp_path) as app:
        await introduce(app, 1, 2)
        async with await connection.connect(db_url) as conn:
            for name, path in (("here", str(video)), ("gone", str(tmp_path / "missing.mp4"))):
                await enqueue(conn, name, user_id=1 if name == "here" else 2)
                (job,) = await jobs.claim(conn, owner="w", limit=1, lease_seconds=30, now=None)
                await jobs.complete(conn, job, owner="w", result=path, now=None)
        result = await app.notifier.run_once()
        assert result.outcomes == {Delivery.SENT: 1, Delivery.DEAD: 1}
        (media,) = telegram.sent(functions.messages.SendMediaRequest)
        assert media.peer.user_id == 1
        assert media.message == "Ваше видео для here готово! 🎬"
        dead = [n for n in await notifications(db_url) if n["state"] == "dead"]
        assert dead[0]["last_error"] == f"video missing: {tmp_path / 'missing.mp4'}"


@pytest.mark.parametrize("paid", [False, True])
async def test_paid_broadcast_marks_every_message_and_video_it_sends(
    db_url: str, telegram: FakeTelegram, tmp_path: Path, paid: bool
) -> None:
    video = tmp_path / "v.mp4"
    video.write_bytes(b"\x00" * 2048)
    config = replace(FAST, paid_broadcast=paid, rate_per_second=1000 if paid else 30)
    async with deployed(db_url, telegram, tmp_path, config=config) as app:
        await introduce(app, 1, 2)
        async with await connection.connect(db_url) as conn:
            await enqueue(conn, "here", user_id=1)
            (job,) = await jobs.claim(conn, owner="w", limit=1, lease_seconds=30, now=None)
            await jobs.complete(conn, job, owner="w", result=str(video), now=None)
        await fail_for_good(db_url, "gone", (2,))
        assert (await app.notifier.run_once()).outcomes == {Delivery.SENT: 2}
        (media,) = telegram.sent(functions.messages.SendMediaRequest)
        (text,) = failure_messages(telegram)
        # As Telegram reads them: the flag is in the serialised request, or not.
        assert bool(media.allow_paid_floodskip) is paid
        assert bool(text.allow_paid_floodskip) is paid


async def test_a_notifier_killed_mid_batch_loses_nothing(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    clock = FakeClock(datetime.now(UTC))
    async with deployed(db_url, telegram, tmp_path, clock=clock, name="doomed") as doomed:
        await introduce(doomed, 1, 2, 3, 4, 5)
        await fail_for_good(db_url, "a", (1, 2, 3, 4, 5))
        clock.advance(5)  # the clock started before the failure was written
        batch = await doomed.notifier.claim(5)
        assert [await doomed.notifier.deliver(n) for n in batch[:2]] == [Delivery.SENT] * 2
        in_flight = batch[2]  # sent, then the process dies before recording it
        await doomed.notifier._send(in_flight)
    async with deployed(db_url, telegram, tmp_path, clock=clock, name="survivor") as survivor:
        assert (await survivor.notifier.run_once()).claimed == 0  # leases still held
        clock.advance(FAST.lease_seconds + 1)
        result = await survivor.notifier.run_once()
        assert (result.rescued, result.outcomes) == (3, {Delivery.SENT: 3})
    assert {n["state"] for n in await notifications(db_url)} == {"sent"}
    per_user = sorted(r.peer.user_id for r in failure_messages(telegram))
    assert per_user == [1, 2, 3, 3, 4, 5]  # only the in-flight row went out twice


async def test_a_send_dropped_by_the_bot_s_logout_goes_back_uncharged(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    # A leader whose term ended logs out first (vidretry.app.daemons), and Telethon cancels
    # every request still awaiting its answer. The notifier lives on: the row goes back to
    # the outbox unmarked, not left marked for the next leader to charge a crash on.
    async with deployed(db_url, telegram, tmp_path) as app:
        await introduce(app, 1)
        await fail_for_good(db_url, "a", (1,))
        telegram.delays[SendMessage] = 30  # its answer is on its way when the bot logs out
        (note,) = await app.notifier.claim(1)
        delivery = asyncio.create_task(app.notifier.deliver(note))
        assert await eventually(lambda: bool(app.client._sender._pending), within=10)
        await app.bot.stop()
        assert await delivery is Delivery.LATER
        assert await charges(db_url) == UNCHARGED


async def test_a_refused_token_is_a_clear_error(
    telegram: FakeTelegram, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    telegram.valid_token = "1:another-token-entirely-xxxxxxxxxxxx"
    client = build_client(TelegramConfig(api_id=1, api_hash="x", session=tmp_path / "s.session"))
    install(client, telegram)
    with pytest.raises(TelegramUnavailable) as info:
        await TelegramBot(client).start(BOT_TOKEN)
    await client.disconnect()
    assert str(info.value) == "Telegram refused the bot token (ACCESS_TOKEN_INVALID)"
    secret = BOT_TOKEN.split(":")[1]
    assert secret not in caplog.text


async def test_unreachable_telegram_is_a_clear_error_and_nothing_left_the_machine(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # The real network layer this time: socket.connect is refused by the no_network fixture.
    client = build_client(TelegramConfig(api_id=1, api_hash="x", session=tmp_path / "s.session"))
    with pytest.raises(TelegramDown, match=r"^Telegram unreachable: "):
        await TelegramBot(client).start(BOT_TOKEN)
    await client.disconnect()
    assert "network disabled in tests" in caplog.text  # it tried, and the guard refused
    assert BOT_TOKEN.split(":")[1] not in caplog.text


def test_the_network_guard_also_holds_on_uvloop() -> None:
    # uvloop connects in libuv, not through socket.connect: its own door is shut too. The
    # address is loopback (127.0.0.2 is not on the guard's list), so a broken guard would
    # still send nothing off this machine.
    async def attempt() -> None:
        await asyncio.get_running_loop().create_connection(asyncio.Protocol, "127.0.0.2", 9)

    with pytest.raises(OSError, match="network disabled in tests"):
        eventloop.run(attempt(), fast=True)


async def test_a_token_revoked_mid_run_stops_the_notifier_and_keeps_the_row(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    async with deployed(db_url, telegram, tmp_path) as app:
        await introduce(app, 1)
        telegram.fail(SendMessage, "AUTH_KEY_UNREGISTERED", 401, times=5)
        await fail_for_good(db_url, "a", (1,))
        with pytest.raises(
            TelegramUnavailable, match=r"Telegram dropped the bot \(AUTH_KEY_UNREGISTERED\)"
        ):
            await asyncio.wait_for(app.notifier.run(asyncio.Event()), 10)
        (note,) = await notifications(db_url)
        assert (note["state"], note["attempts"]) == ("pending", 0)
