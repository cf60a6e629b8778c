"""Sending a video through Telegram: streamed from the video store (vidretry.results) as it
uploads, or sent again by Telegram's reference to the copy it already has, refreshing an
expired reference from the message it was first sent in. Which of the two a delivery does
is vidretry.telegram.videos's to decide (one upload per video).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from telethon import TelegramClient, errors, functions, types

from vidretry.results.base import ResultMissing, ResultRefused, StoreUnavailable
from vidretry.results.keeping import Results
from vidretry.telegram.bot.outcomes import (
    REFERENCE_EXPIRED,
    REFERENCE_GONE,
    TELEGRAM_DOWN,
    code,
    describe,
    peer,
    sending,
)
from vidretry.telegram.transport import (
    MessageRefused,
    Recipient,
    SentVideo,
    StoreDown,
    VideoFile,
    VideoRef,
)

log = logging.getLogger("vidretry.telegram")

# Telegram shows "sending a video…" for about 5 s: sent again this often while an upload runs.
CHAT_ACTION_SECONDS = 4.0


class VideoSender:
    """Sends finished videos through one client, reading them from ``results``."""

    def __init__(self, client: TelegramClient, results: Results) -> None:
        self.client = client
        self.results = results

    async def upload(self, to: Recipient, video: VideoRef, caption_html: str) -> Any:
        """Upload the video from its store: read as a stream of Telegram's part size, checked
        against its recorded size and SHA-256 (a mismatch fails the last read, so the upload
        never completes). Never the whole video in memory. Telegram's message."""
        if video.deleted:
            raise MessageRefused(
                f"the video was deleted after delivery ([storage] delete_after_delivery) and "
                f"Telegram's reference is gone: {video.uri}"
            )
        try:
            download = await self.results.open(video.uri, size=video.size, sha256=video.sha256)
        except (ResultMissing, ResultRefused) as exc:
            raise MessageRefused(str(exc)) from None
        except StoreUnavailable as exc:
            raise StoreDown(f"the video store is unreachable: {exc}") from None
        try:
            async with self._showing_upload(to):
                return await sending(
                    lambda to_peer: self.client.send_file(
                        to_peer, download, file_size=download.size, caption=caption_html,
                        parse_mode="html", supports_streaming=True,
                    ),
                    to,
                )  # fmt: skip
        finally:
            await download.aclose()

    @contextlib.asynccontextmanager
    async def _showing_upload(self, to: Recipient) -> AsyncIterator[None]:
        """Telegram's "sending a video…" in the chat while the upload runs. Best effort and
        not paced (an action is not a message); the video's arrival ends it. Not Telethon's
        ``client.action``: its background task lets an RPC error escape into the send."""
        request = functions.messages.SetTypingRequest(
            peer(to), types.SendMessageUploadVideoAction(progress=0)
        )

        async def show() -> None:
            with contextlib.suppress(errors.RPCError, ValueError, *TELEGRAM_DOWN):
                await self.client(request)

        async def keep_showing() -> None:
            while True:
                await asyncio.sleep(CHAT_ACTION_SECONDS)
                await show()

        # The first one before the upload starts (a short upload would end before it left),
        # not waited for longer than a second.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await show()
        showing = asyncio.create_task(keep_showing())
        try:
            yield
        finally:
            showing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await showing

    async def send_video_file(
        self, to: Recipient, video: VideoRef, caption_html: str, file: VideoFile | None
    ) -> SentVideo:
        """One upload per video: by reference when Telegram has it, refreshing an expired
        reference from the message it was first sent in; an upload when there is no
        reference, or the origin is gone, or Telegram refuses the reference for good."""
        if file is not None:
            try:
                return await self._send_by_reference(to, file, caption_html)
            except REFERENCE_EXPIRED:
                fresh = await self._fresh_reference(file)
                if fresh is not None:
                    try:
                        return await self._send_by_reference(to, fresh, caption_html)
                    except (*REFERENCE_EXPIRED, *REFERENCE_GONE) as exc:
                        log.info(
                            "video %s: a fresh reference refused too (%s)",
                            fresh.document_id,
                            code(exc),
                        )
            except REFERENCE_GONE as exc:
                log.info(
                    "video %s: reference refused (%s): uploading again",
                    file.document_id,
                    code(exc),
                )
        message = await self.upload(to, video, caption_html)
        uploaded = _video_file(message, to)
        if uploaded is None:
            raise MessageRefused("Telegram returned no document for the uploaded video")
        return SentVideo(int(message.id), uploaded)

    async def _send_by_reference(
        self, to: Recipient, file: VideoFile, caption_html: str
    ) -> SentVideo:
        document = types.InputDocument(file.document_id, file.access_hash, file.file_reference)
        message = await sending(
            lambda to_peer: self.client.send_file(
                to_peer, document, caption=caption_html, parse_mode="html"
            ),
            to,
            passing=(*REFERENCE_EXPIRED, *REFERENCE_GONE),
        )
        return SentVideo(int(message.id), file)

    async def _fresh_reference(self, file: VideoFile) -> VideoFile | None:
        """The document of the message the video was first sent in, with the reference it
        has now; None when that message or its video is gone."""
        origin = Recipient(file.origin_chat_id, file.origin_chat_id, file.origin_access_hash)
        try:
            message = await self.client.get_messages(peer(origin), ids=file.origin_message_id)
        except (errors.RPCError, ValueError) as exc:
            log.info("video %s: origin unreadable (%s)", file.document_id, describe(exc))
            return None
        fresh = _video_file(message, origin) if message is not None else None
        if fresh is None or fresh.document_id != file.document_id:
            return None
        log.info("video %s: file reference refreshed from its origin", file.document_id)
        return VideoFile(
            fresh.document_id,
            fresh.access_hash,
            fresh.file_reference,
            file.origin_chat_id,
            file.origin_access_hash,
            file.origin_message_id,
        )


def _video_file(message: Any, to: Recipient) -> VideoFile | None:
    """How to send the video in ``message`` (sent to ``to``) again by reference."""
    document = getattr(getattr(message, "media", None), "document", None)
    if not isinstance(document, types.Document):
        return None
    return VideoFile(
        document_id=document.id,
        access_hash=document.access_hash,
        file_reference=bytes(document.file_reference),
        origin_chat_id=to.chat_id,
        origin_access_hash=to.access_hash,
        origin_message_id=int(message.id),
    )
