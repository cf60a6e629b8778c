"""The wait, seen from Telegram: cancel (the acceptance's button, /cancel, an admin's
/cancel <asset>) and the acceptance message kept current with the place in line and the
progress — through the real Telethon client, only its network layer faked."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from pathlib import Path
from typing import Any

from telethon import functions

from tests.support import eventually, scalar
from tests.telegram.conftest import ADMIN, FAST, Deployment, deployed, running
from tests.telegram.double import FakeTelegram
from tests.telegram.test_front_door import finish, query, say, texts_to
from tests.telegram.test_notifier import button_data, introduce
from vidretry.config import NotifierConfig
from vidretry.db import connection
from vidretry.queue import jobs
from vidretry.queue.enqueue import enqueue
from vidretry.texts import MessagesConfig

SendMessage = functions.messages.SendMessageRequest
SendMedia = functions.messages.SendMediaRequest
Edit = functions.messages.EditMessageRequest
Answer = functions.messages.SetBotCallbackAnswerRequest
M = MessagesConfig()


async def acceptance(db_url: str, telegram: FakeTelegram, user_id: int) -> tuple[int, bytes]:
    """The message id (as the bot recorded it) and the cancel button's data of the last
    acceptance sent to ``user_id``. The bot records the id once Telegram has answered the
    send, a moment after the message arrived: waited for."""
    sent = [r for r in telegram.sent() if r.peer.user_id == user_id and r.reply_markup]
    recorded: list[int] = []

    async def remembered() -> bool:
        found = await query(
            db_url,
            "SELECT accept_message_id FROM user_requests WHERE user_id = %s"
            " ORDER BY id DESC LIMIT 1",
            user_id,
        )
        recorded[:] = [found[0]["accept_message_id"]] if found else []
        return bool(recorded) and recorded[0] is not None

    assert await eventually(remembered, within=10), f"no acceptance recorded for {user_id}"
    return recorded[0], button_data(sent[-1])


async def press(app: Deployment, user_id: int, data: bytes, msg_id: int) -> str:
    """``user_id`` presses a button; the toast the bot answers with."""
    before = len(app.telegram.sent(Answer))
    app.telegram.press(app.client, user_id, data, msg_id)
    await app.telegram.wait_for(lambda: len(app.telegram.sent(Answer)) > before)
    return str(app.telegram.sent(Answer)[-1].message)


async def test_one_of_two_waiters_cancels_and_only_the_other_gets_the_video(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    video = tmp_path / "v.mp4"
    video.write_bytes(b"\x00" * 2048)
    async with deployed(db_url, telegram, tmp_path) as app:
        await introduce(app, 1, 2)
        async with running(app):
            await say(app, 1, "/video Маша")
            await say(app, 2, "/video Маша")
            msg_id, data = await acceptance(db_url, telegram, 1)
            assert data.startswith(b"cancel_video:")
            before = len(texts_to(telegram, 1))
            assert await press(app, 1, data, msg_id) == M.cancelled
            await telegram.wait_for(lambda: len(texts_to(telegram, 1)) > before)
            assert texts_to(telegram, 1)[-1] == (
                "Хорошо, видео для Маша не делаем. Передумаете — просто закажите снова."
            )
            requests = await query(db_url, "SELECT user_id, state FROM user_requests ORDER BY 1")
            assert requests == [
                {"user_id": 1, "state": "cancelled"},
                {"user_id": 2, "state": "pending"},
            ]
            assert await query(db_url, "SELECT state FROM video_assets") == [{"state": "pending"}]
            # A second press of the same button: answered, nothing changes.
            assert await press(app, 1, data, msg_id) == M.cancel_too_late
            await finish(db_url, video)
            await telegram.wait_for(lambda: len(telegram.sent(SendMedia)) == 1)
            await asyncio.sleep(0.3)  # nothing more is on its way
        assert [m.peer.user_id for m in telegram.sent(SendMedia)] == [2]
        assert "Ваши видео" in (await say(app, 1, "/my"))[0]


async def test_a_lone_pending_request_cancelled_from_the_list_is_never_made(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    async with deployed(db_url, telegram, tmp_path) as app:
        await introduce(app, 1)
        await say(app, 1, "/video Маша")
        await say(app, 1, "/video Петя")
        (listing,) = await say(app, 1, "/cancel")
        assert listing == "Что можно отменить — нажмите на видео:"
        request = telegram.sent()[-1]
        labels = [row.buttons[0].text for row in request.reply_markup.rows]
        assert labels == ["✖️ Отменить: Петя", "✖️ Отменить: Маша"]
        masha = bytes(request.reply_markup.rows[1].buttons[0].type.data)
        before = len(texts_to(telegram, 1))
        assert await press(app, 1, masha, 1) == M.cancelled
        await telegram.wait_for(lambda: len(texts_to(telegram, 1)) > before)  # the follow-up
        states = await query(db_url, "SELECT name, state FROM video_assets ORDER BY id")
        assert states == [
            {"name": "Маша", "state": "cancelled"},
            {"name": "Петя", "state": "pending"},
        ]
        async with await connection.connect(db_url) as conn:
            claimed = await jobs.claim(conn, owner="w", limit=5, lease_seconds=30, now=None)
        assert [job.name for job in claimed] == ["Петя"]
        # /my says so; asking again re-opens it as a new generation.
        (my,) = await say(app, 1, "/my")
        assert "• Маша — отменено" in my
        await say(app, 1, "/video Маша")
        assert await query(db_url, "SELECT state, generation FROM video_assets WHERE id = 1") == [
            {"state": "pending", "generation": 1}
        ]
        # The old button names retry round 0: stale, answered, changes nothing.
        assert await press(app, 1, masha, 1) == M.cancel_too_late
        assert await scalar_state(db_url, 1) == "pending"


async def scalar_state(db_url: str, asset_id: int) -> str:
    async with await connection.connect(db_url) as conn:
        return str(await scalar(conn, "SELECT state FROM video_assets WHERE id = %s", asset_id))


async def test_cancel_refusals_and_forged_data(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    async with deployed(db_url, telegram, tmp_path) as app:
        await introduce(app, 1, 2)
        assert await say(app, 1, "/cancel") == [M.cancel_list_empty]
        await say(app, 1, "/video Маша")
        _, data = await acceptance(db_url, telegram, 1)
        assert await press(app, 2, data, 1) == M.not_allowed  # not their request
        for forged in (b"cancel_video:abc:0", b"cancel_video:1", b"cancel_video:1:0:0", b"\xff"):
            assert await press(app, 1, forged, 1) == M.bad_button
        assert await press(app, 1, b"cancel_video:99999:0", 1) == M.not_found
        # A user's "/cancel 1" is not an admin's: it lists their own requests.
        assert await say(app, 2, "/cancel 1") == [M.cancel_list_empty]
        assert await query(db_url, "SELECT state FROM user_requests") == [{"state": "pending"}]


async def test_an_admin_cancels_an_asset_and_every_waiter_is_told(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    async with deployed(db_url, telegram, tmp_path) as app:
        await introduce(app, 1, 2, ADMIN)
        async with running(app):
            await say(app, 1, "/video Маша")
            await say(app, 2, "/video Маша")
            assert await say(app, ADMIN, "/cancel x") == ["Usage: /cancel <asset id>"]
            assert await say(app, ADMIN, "/cancel 1") == [
                "asset 1 cancelled; 2 waiting user(s) told"
            ]
            told = M.cancelled_by_operator.replace("<b>{name}</b>", "Маша")
            for user in (1, 2):
                await telegram.wait_for(lambda user=user: told in texts_to(telegram, user))
            assert await say(app, ADMIN, "/cancel 1") == ["asset 1 is cancelled: nothing to cancel"]
        (event,) = await query(
            db_url, "SELECT actor, detail FROM job_events WHERE kind = 'cancelled'"
        )
        assert event == {"actor": f"telegram-admin:{ADMIN}", "detail": "/cancel"}


PROGRESSING = dataclasses.replace(
    FAST, progress_edit_seconds=NotifierConfig().progress_edit_seconds
)


async def report(db_url: str, job: Any, fraction: float) -> None:
    async with await connection.connect(db_url) as conn:
        await jobs.record_progress(conn, job, fraction, now=None)


def edits_to(telegram: FakeTelegram, user_id: int) -> list[tuple[float, Any]]:
    return [
        (at, r)
        for at, r in zip(telegram.arrived_at, telegram.requests, strict=True)
        if isinstance(r, Edit) and r.peer.user_id == user_id
    ]


async def test_the_acceptance_shows_the_progress_edited_at_most_every_five_seconds(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    """With the default progress_edit_seconds: a report every half second for 12 s reaches
    the user as an edit at most every 5 s, each keeping the cancel button, the text always
    the latest; then the video arrives at once."""
    assert PROGRESSING.progress_edit_seconds == 5.0
    video = tmp_path / "v.mp4"
    video.write_bytes(b"\x00" * 2048)
    async with deployed(db_url, telegram, tmp_path, config=PROGRESSING) as app:
        await introduce(app, 1)
        async with running(app, edits=True):
            await say(app, 1, "/video Маша")
            msg_id, data = await acceptance(db_url, telegram, 1)
            async with await connection.connect(db_url) as conn:
                (job,) = await jobs.claim(conn, owner="w", limit=1, lease_seconds=60, now=None)
            started = time.monotonic()
            fraction = 0.0
            while time.monotonic() - started < 12:
                fraction = min(0.95, (time.monotonic() - started) / 12)
                await report(db_url, job, fraction)
                await asyncio.sleep(0.5)
            edits = edits_to(telegram, 1)
            assert len(edits) >= 2
            times = [at for at, _ in edits]
            assert min(b - a for a, b in itertools.pairwise(times)) >= 5.0 - 0.05
            for _, edit in edits:
                assert edit.id == msg_id
                assert edit.message.startswith("⏳ Создаём видео для Маша — ")
                assert button_data(edit) == data
            assert "▰" in edits[-1][1].message
            async with await connection.connect(db_url) as conn:
                finished_at = time.monotonic()
                await jobs.complete(conn, job, owner="w", result=str(video), now=None)
            await telegram.wait_for(lambda: len(telegram.sent(SendMedia)) == 1)
            (media_at,) = [
                at for at, r in zip(telegram.arrived_at, telegram.requests, strict=True)
                if isinstance(r, SendMedia)
            ]  # fmt: skip
            assert media_at - finished_at < 1.0  # the last edit held nothing back
            edits_before = len(edits_to(telegram, 1))
            await asyncio.sleep(1.0)
            assert len(edits_to(telegram, 1)) == edits_before  # a done request is left alone
        shown = await query(db_url, "SELECT shown FROM user_requests")
        assert shown[0]["shown"] == edits[-1][1].message.replace("Маша", "<b>Маша</b>")


async def test_progress_edits_give_way_to_a_burst_of_failure_messages(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    """While failure messages use the rate, no edit is sent between them (an edit is
    dropped, not queued), and they go out at the rate limit as if there were no edits."""
    config = dataclasses.replace(PROGRESSING, rate_per_second=20, progress_edit_seconds=1)
    waiting, failing = range(1, 21), range(100, 140)
    async with deployed(db_url, telegram, tmp_path, config=config) as app:
        await introduce(app, *waiting, *failing)
        async with running(app, edits=True):
            for user in waiting:
                await say(app, user, "/video Маша")
            async with await connection.connect(db_url) as conn:
                for user in failing:
                    await enqueue(conn, "Дима", user_id=user)
                claimed = await jobs.claim(conn, owner="w", limit=2, lease_seconds=60, now=None)
            masha = next(j for j in claimed if j.name == "Маша")
            dima = next(j for j in claimed if j.name == "Дима")
            await report(db_url, masha, 0.3)
            await telegram.wait_for(lambda: len(telegram.sent(Edit)) >= 5, timeout=10)
            stop_reporting = asyncio.Event()

            async def keep_reporting() -> None:
                n = 0
                while not stop_reporting.is_set():
                    n += 1
                    await report(db_url, masha, 0.3 + (n % 60) / 100)
                    await asyncio.sleep(0.2)

            reporter = asyncio.create_task(keep_reporting())
            async with await connection.connect(db_url) as conn:
                await jobs.fail(conn, dima, owner="w", error="boom", now=None)
            await telegram.wait_for(
                lambda: sum(1 for r in telegram.sent() if r.peer.user_id >= 100) == len(failing),
                timeout=20,
            )
            stop_reporting.set()
            await reporter
        sends = [
            (at, r) for at, r in zip(telegram.arrived_at, telegram.requests, strict=True)
            if isinstance(r, SendMessage) and r.peer.user_id >= 100
        ]  # fmt: skip
        first, last = sends[0][0], sends[-1][0]
        between = [
            at for at, r in zip(telegram.arrived_at, telegram.requests, strict=True)
            if isinstance(r, Edit) and first < at < last
        ]  # fmt: skip
        assert between == []
        # 40 messages at 20 a second: 39 gaps of 1/20 s, not stretched by edits.
        assert last - first <= (len(failing) - 1) / 20 * 1.15 + 0.2


async def test_a_pending_acceptance_shows_its_place_in_line_as_it_moves_up(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    config = dataclasses.replace(PROGRESSING, progress_edit_seconds=1)
    async with deployed(db_url, telegram, tmp_path, config=config) as app:
        await introduce(app, 1)
        async with await connection.connect(db_url) as conn:
            for name, user in (("x", 2), ("y", 3)):
                await enqueue(conn, name, user_id=user)
        async with running(app, edits=True):
            (accepted,) = await say(app, 1, "/video Маша")
            assert accepted.endswith("Место в очереди: 3.")
            async with await connection.connect(db_url) as conn:
                await jobs.claim(conn, owner="w", limit=2, lease_seconds=60, now=None)
            await telegram.wait_for(lambda: len(edits_to(telegram, 1)) >= 1, timeout=10)
        (_, edit), *_ = edits_to(telegram, 1)
        assert edit.message.endswith("Место в очереди: 1.")
        async with await connection.connect(db_url) as conn:
            shown = await scalar(conn, "SELECT shown FROM user_requests WHERE user_id = 1")
            assert shown == edit.message.replace("Маша", "<b>Маша</b>")
