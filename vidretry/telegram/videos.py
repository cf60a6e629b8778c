"""One upload per video: the first send of a retry round's video uploads it, every other send
goes by reference.

A video for 100 waiting users used to be 100 uploads of the same file. Now the notifier's
deliveries of one retry round's video take turns: the first uploads, the others wait for it
— before they take a send slot, so the pacer's limits hold when they go — and then send
by Telegram's reference, which is stored in PostgreSQL (``telegram_videos``): a restarted
notifier, a new leader and the bot's own answers (a button pressed on a finished video, a
later request for it) use it too. Telethon's handles live in vidretry.telegram.bot; this holds only
the plain ``VideoFile``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from datetime import datetime

from psycopg_pool import AsyncConnectionPool

from vidretry.clock import Clock
from vidretry.db.connection import Connection, execute, fetch_one
from vidretry.db.redact import one_line
from vidretry.db.transient import TRANSIENT_DB_ERRORS
from vidretry.telegram.transport import Recipient, SentVideo, SharesVideos, VideoFile, VideoRef

log = logging.getLogger("vidretry.videos")

# References kept in memory, by (asset, retry round); the database holds all of them.
CACHED = 1000

Key = tuple[int, int]  # (asset id, retry round)


async def stored_video(conn: Connection, key: Key) -> VideoFile | None:
    params = {"asset_id": key[0], "retry_round": key[1]}
    row = await fetch_one(conn, "stored_video", params)
    if row is None:
        return None
    return VideoFile(
        row["document_id"],
        row["access_hash"],
        bytes(row["file_reference"]),
        row["origin_chat_id"],
        row["origin_access_hash"],
        row["origin_message_id"],
    )


async def remember_video(conn: Connection, key: Key, file: VideoFile, now: datetime | None) -> None:
    params = {
        "asset_id": key[0],
        "retry_round": key[1],
        "document_id": file.document_id,
        "access_hash": file.access_hash,
        "file_reference": file.file_reference,
        "origin_chat_id": file.origin_chat_id,
        "origin_access_hash": file.origin_access_hash,
        "origin_message_id": file.origin_message_id,
        "now": now,
    }
    await execute(conn, "remember_video", params)


class VideoFiles:
    """The references this process knows, and whose upload is under way."""

    def __init__(self, pool: AsyncConnectionPool[Connection], clock: Clock) -> None:
        self.pool = pool
        self.clock = clock
        self.known: OrderedDict[Key, VideoFile] = OrderedDict()
        self.uploading: dict[Key, asyncio.Event] = {}

    async def turn(self, key: Key) -> VideoFile | None:
        """Wait while another delivery uploads this video; then its reference (send by it),
        or None: the caller uploads, and must call ``done`` whatever happens."""
        while True:
            if key in self.known:
                return self.known[key]
            busy = self.uploading.get(key)
            if busy is None:
                break
            await busy.wait()
        # This delivery's turn, from before it looks in the database: the others wait for it.
        self.uploading[key] = asyncio.Event()
        try:
            file = await self._load(key)
        except BaseException:
            self.done(key)
            raise
        if file is not None:
            self._keep(key, file)
            self.done(key)
        return file

    @contextlib.asynccontextmanager
    async def in_turn(self, key: Key) -> AsyncIterator[None]:
        """Send this video inside: after any upload of it under way, and as the one that
        uploads it when nobody has (the next in line goes when this ends, however)."""
        if await self.turn(key) is not None:
            yield
            return
        try:
            yield
        finally:
            self.done(key)

    def done(self, key: Key) -> None:
        """The upload this delivery owned is over (sent, failed or cancelled): the next in
        line sends by its reference, or uploads in its place."""
        busy = self.uploading.pop(key, None)
        if busy is not None:
            busy.set()

    async def send(
        self, sender: SharesVideos, key: Key, to: Recipient, video: VideoRef, caption_html: str
    ) -> int | None:
        """Send by the reference known for ``key`` (or upload), and store what worked."""
        known = self.known.get(key)
        sent: SentVideo = await sender.send_video_file(to, video, caption_html, known)
        if sent.file != known:
            self._keep(key, sent.file)
            await self._store(key, sent.file)
        return sent.message_id

    async def _load(self, key: Key) -> VideoFile | None:
        try:
            async with self.pool.connection() as conn:
                return await stored_video(conn, key)
        except TRANSIENT_DB_ERRORS as exc:
            log.warning("video %s/%s: stored reference unreadable (%s)", *key, one_line(exc))
            return None

    async def _store(self, key: Key, file: VideoFile) -> None:
        """Best effort: the video is sent; without the row, a later send uploads again."""
        try:
            async with self.pool.connection() as conn:
                await remember_video(conn, key, file, self.clock.now())
        except TRANSIENT_DB_ERRORS as exc:
            log.warning("video %s/%s: reference not stored (%s)", *key, one_line(exc))

    def _keep(self, key: Key, file: VideoFile) -> None:
        self.known[key] = file
        self.known.move_to_end(key)
        while len(self.known) > CACHED:
            self.known.popitem(last=False)
