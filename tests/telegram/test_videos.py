"""One upload per video: the first send of a generation uploads it, every other send goes by
Telegram's reference, stored in PostgreSQL (through the double, which counts the bytes
uploaded and expires references on demand)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from telethon import functions, types

from tests.telegram.conftest import deployed, running
from tests.telegram.double import FakeTelegram
from tests.telegram.test_front_door import finish, query, say
from tests.telegram.test_notifier import introduce
from vidretry.clock import DatabaseClock
from vidretry.queue.enqueue import enqueue
from vidretry.store import db
from vidretry.store.pool import open_pool
from vidretry.telegram.delivery import VideoFile
from vidretry.telegram.videos import VideoFiles

SendMedia = functions.messages.SendMediaRequest


@pytest.fixture
def video(tmp_path: Path) -> Path:
    path = tmp_path / "masha.mp4"
    path.write_bytes(bytes(range(256)) * 4096)  # 1 MiB: two upload parts
    return path


def media_to(telegram: FakeTelegram) -> list[tuple[int, str]]:
    """Each sendMedia: its recipient, and whether it uploaded or went by reference."""
    return [
        (
            r.peer.user_id,
            "upload" if isinstance(r.media, types.InputMediaUploadedDocument) else "reference",
        )
        for r in telegram.sent(SendMedia)
    ]


async def test_one_upload_for_three_waiting_users_and_a_later_request(
    db_url: str, telegram: FakeTelegram, tmp_path: Path, video: Path
) -> None:
    telegram.expire_after_upload = True  # the reference goes stale on the way
    async with deployed(db_url, telegram, tmp_path) as app:
        await introduce(app, 1, 2, 3)
        async with await db.connect(db_url) as conn:
            for user in (1, 2, 3):
                await enqueue(conn, "Маша", user_id=user)
        async with running(app):
            await finish(db_url, video)
            await telegram.wait_for(lambda: len(telegram.sent(SendMedia)) == 4, timeout=10)
        sent = media_to(telegram)
        # One upload; the next send by its reference is refused as expired, the origin is
        # fetched again, and both others go by the fresh reference.
        assert [how for _, how in sent].count("upload") == 1
        assert sorted({user for user, _ in sent}) == [1, 2, 3]
        assert telegram.uploaded_bytes == video.stat().st_size
        assert len(telegram.sent(functions.messages.GetMessagesRequest)) == 1
        (stored,) = await query(db_url, "SELECT * FROM telegram_videos")
        (document,) = telegram.documents.values()
        assert bytes(stored["file_reference"]) == document.file_reference  # the fresh one
        assert stored["refreshed_at"] is not None
        assert (stored["generation"], stored["document_id"]) == (0, document.id)
    # A restarted notifier (nothing in memory) and a user asking for the finished video:
    # by the stored reference, no upload.
    telegram.requests.clear()
    telegram.expire_after_upload = False
    async with deployed(db_url, telegram, tmp_path, name="n2") as app:
        telegram.add_user(4, lang_code="en")
        async with running(app):
            assert await say(app, 4, "/start")
            app.telegram.write(app.client, 4, "/video Маша")
            await telegram.wait_for(lambda: bool(telegram.sent(SendMedia)), timeout=10)
            # They ask again: the bot answers with the video itself, by reference too.
            app.telegram.write(app.client, 4, "/video Маша")
            await telegram.wait_for(lambda: len(telegram.sent(SendMedia)) == 2, timeout=10)
        assert media_to(telegram) == [(4, "reference"), (4, "reference")]
        assert telegram.uploaded_bytes == video.stat().st_size  # nothing more uploaded
        assert {m.message for m in telegram.sent(SendMedia)} == {"Your video for Маша is ready! 🎬"}


async def test_an_upload_again_when_the_origin_is_gone(
    db_url: str, telegram: FakeTelegram, tmp_path: Path, video: Path
) -> None:
    async with deployed(db_url, telegram, tmp_path) as app:
        await introduce(app, 1, 2)
        async with await db.connect(db_url) as conn:
            await enqueue(conn, "Маша", user_id=1)
        async with running(app):
            await finish(db_url, video)
            await telegram.wait_for(lambda: len(telegram.sent(SendMedia)) == 1, timeout=10)
            # Hours later: the reference expired, and the first user deleted the chat.
            telegram.expire_file_references()
            telegram.messages.clear()
            async with await db.connect(db_url) as conn:
                await enqueue(conn, "Маша", user_id=2)
            await telegram.wait_for(lambda: len(telegram.sent(SendMedia)) == 3, timeout=10)
        assert media_to(telegram) == [(1, "upload"), (2, "reference"), (2, "upload")]
        assert telegram.uploaded_bytes == 2 * video.stat().st_size
        (stored,) = await query(db_url, "SELECT document_id, origin_chat_id FROM telegram_videos")
        assert stored["origin_chat_id"] == 2  # the new upload is the origin now


async def test_concurrent_deliveries_of_one_video_take_turns(db_url: str) -> None:
    """Many deliveries of one video ask at once: one uploads, the others wait for it — also
    while the first is still looking in the database — then send by its reference."""
    async with open_pool(db_url, max_size=4) as pool:
        files = VideoFiles(pool, DatabaseClock())
        key = (1, 0)
        uploaded = VideoFile(9, 99, b"ref", 1, 7, 1000)
        order: list[str] = []

        async def deliver(n: int) -> None:
            file = await files.turn(key)
            if file is None:
                order.append(f"{n} uploads")
                await asyncio.sleep(0.2)  # the upload
                files._keep(key, uploaded)
                files.done(key)
            else:
                order.append(f"{n} by reference")

        await asyncio.gather(*(deliver(n) for n in range(5)))
    assert order[0] == "0 uploads"
    assert sorted(order[1:]) == [f"{n} by reference" for n in range(1, 5)]
