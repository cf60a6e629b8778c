"""One upload per video: the first send of a generation uploads it, every other send goes by
Telegram's reference, stored in PostgreSQL (through the double, which counts the bytes
uploaded and expires references on demand)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from telethon import functions, types

from tests.support import eventually
from tests.telegram.conftest import deployed, running
from tests.telegram.double import FakeTelegram
from tests.telegram.test_front_door import finish, query, say
from tests.telegram.test_notifier import introduce
from vidretry.clock import DatabaseClock
from vidretry.db import connection
from vidretry.db.pool import open_pool
from vidretry.queue import jobs
from vidretry.queue.enqueue import enqueue
from vidretry.results.files import FileStore
from vidretry.results.keeping import Results
from vidretry.telegram.transport import VideoFile
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
        async with await connection.connect(db_url) as conn:
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
        async with await connection.connect(db_url) as conn:
            await enqueue(conn, "Маша", user_id=1)
        async with running(app):
            await finish(db_url, video)
            await telegram.wait_for(lambda: len(telegram.sent(SendMedia)) == 1, timeout=10)
            # Hours later: the reference expired, and the first user deleted the chat.
            telegram.expire_file_references()
            telegram.messages.clear()
            async with await connection.connect(db_url) as conn:
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


async def test_a_video_outside_the_store_is_a_dead_notification_and_never_uploaded(
    db_url: str, telegram: FakeTelegram, tmp_path: Path, video: Path
) -> None:
    """A 'ready' row whose result names a file outside the store's directory (however it got
    into the outbox: issue 36 traced a temporary table) is refused, saying so; the file —
    a symlink to it too — never reaches Telegram."""
    store = tmp_path / "videos"
    store.mkdir()
    secret = tmp_path / "vidretry.toml"
    secret.write_text('[telegram]\nbot_token = "1:not-for-you"\n')
    (store / "innocent.mp4").symlink_to(secret)
    results = Results(FileStore(store), scratch=store)
    async with deployed(db_url, telegram, tmp_path, results=results) as app:
        await introduce(app, 1, 2)
        async with await connection.connect(db_url) as conn:
            for user, name, result in ((1, "Маша", secret.as_uri()),
                                       (2, "Петя", (store / "innocent.mp4").as_uri())):  # fmt: skip
                await enqueue(conn, name, user_id=user)
                (job,) = await jobs.claim(conn, owner="w", limit=1, lease_seconds=30, now=None)
                assert await jobs.complete(conn, job, owner="w", result=result, now=None)
        async with running(app):

            async def buried() -> bool:
                found = await query(db_url, "SELECT state FROM notifications")
                return [n["state"] for n in found] == ["dead", "dead"]

            assert await eventually(buried, within=10)
    errors = [n["last_error"] for n in await query(db_url, "SELECT * FROM notifications")]
    assert all(f"is outside the video store ({store})" in str(e) for e in errors), errors
    assert telegram.uploaded_bytes == 0
    assert telegram.sent(SendMedia) == []


async def test_delete_after_delivery_deletes_only_what_vidretry_kept(
    db_url: str, telegram: FakeTelegram, tmp_path: Path
) -> None:
    """A bare path recorded before schema 19 may be the user's own file: delivered, it stays
    (and the video is not marked deleted); a video vidretry kept goes."""
    store = tmp_path / "videos"
    store.mkdir()
    theirs, ours = store / "their-own.mp4", store / "2-g0-a1b2c3d4.mp4"
    for path in (theirs, ours):
        path.write_bytes(bytes(range(256)) * 64)
    results = Results(FileStore(store), scratch=store)
    async with deployed(
        db_url, telegram, tmp_path, results=results, delete_after_delivery=True
    ) as app:
        await introduce(app, 1, 2)
        async with await connection.connect(db_url) as conn:
            for user, name, result in ((1, "Маша", str(theirs)), (2, "Петя", ours.as_uri())):
                await enqueue(conn, name, user_id=user)
                (job,) = await jobs.claim(conn, owner="w", limit=1, lease_seconds=30, now=None)
                assert await jobs.complete(conn, job, owner="w", result=result, now=None)
        async with running(app):
            await telegram.wait_for(lambda: len(telegram.sent(SendMedia)) == 2, timeout=10)

            async def forgotten() -> bool:
                return not ours.exists()

            assert await eventually(forgotten, within=10)
    assert theirs.exists()
    deleted = await query(
        db_url, "SELECT name, result_deleted_at IS NOT NULL AS deleted FROM video_assets"
    )
    assert sorted((a["name"], a["deleted"]) for a in deleted) == [("Маша", False), ("Петя", True)]
