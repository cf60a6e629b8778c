"""What each kind of notification sends: a failure with its retry button, a finished video
(by vidretry.telegram.videos: one upload, then Telegram's reference), an operator's
cancellation, or an admin's notice — rendered in the recipient's language and handed to a
``Sender``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from vidretry.models import NotificationKind
from vidretry.telegram.callback_data import retry_data
from vidretry.telegram.outbox import Notification
from vidretry.telegram.transport import InlineButton, Recipient, Sender, SharesVideos, VideoRef
from vidretry.telegram.videos import VideoFiles
from vidretry.texts import MessagesConfig, render

# An admin alert quotes the last error up to this long (a message holds 4,096 characters).
ALERT_ERROR_CHARS = 1000


async def deliver_to(
    sender: Sender,
    messages: MessagesConfig,
    note: Notification,
    *,
    videos: VideoFiles | None = None,
    seed_buttons: bool = False,
) -> int | None:
    """Send one notification as its kind says; Telegram's message id. The transport's
    exceptions (``transport.DeliveryError``) tell what went wrong. Rendered now, in the
    recipient's language as Telegram last told it (the default when unknown).
    ``seed_buttons``: retry buttons carry ``retry_video:<id>`` (no retry round)."""
    to = Recipient(note.user_id, note.chat_id, note.access_hash)
    messages = messages.in_language(note.lang_code)
    if note.kind == NotificationKind.PAUSED:
        text = render(
            messages.queue_paused,
            "",
            waiting=str(note.payload.get("waiting", "")),
            error=str(note.payload.get("error", ""))[:ALERT_ERROR_CHARS],
        )
        return await sender.send_text(to, text, None)
    if note.kind == NotificationKind.RESUMED:
        paused = timedelta(seconds=round(float(note.payload.get("paused_seconds", 0))))
        return await sender.send_text(
            to, render(messages.queue_resumed, "", duration=str(paused)), None
        )
    if note.kind == NotificationKind.SET_ASIDE:
        text = render(
            messages.set_aside_alert,
            note.name,
            notification=str(note.payload.get("notification", "")),
            user=str(note.payload.get("user", "")),
            crashes=str(note.payload.get("crashes", "")),
        )
        return await sender.send_text(to, text, None)
    if note.kind == NotificationKind.STORE_DOWN:
        text = render(
            messages.store_down,
            "",
            since=_utc_minute(note.payload.get("since")),
            waiting=str(note.payload.get("waiting", "")),
            error=str(note.payload.get("error", ""))[:ALERT_ERROR_CHARS],
        )
        return await sender.send_text(to, text, None)
    assert note.asset_id is not None  # only the admins' notices belong to no asset
    if note.kind == NotificationKind.CANCELLED:
        return await sender.send_text(to, render(messages.cancelled_by_operator, note.name), None)
    if note.kind == NotificationKind.READY:
        video = VideoRef(
            str(note.payload.get("result") or ""),
            note.result_size,
            note.result_sha256,
            bool(note.result_deleted),
        )
        caption = render(messages.ready_caption, note.name)
        if videos is not None and isinstance(sender, SharesVideos):
            return await videos.send(sender, (note.asset_id, note.retry_round), to, video, caption)
        return await sender.send_video(to, video, caption)
    retry_round = None if seed_buttons else note.retry_round
    button = InlineButton(messages.retry_button, retry_data(note.asset_id, retry_round))
    if note.kind == NotificationKind.ALERT:
        text = render(
            messages.retry_limit_alert,
            note.name,
            user=str(note.payload.get("user", "")),
            asset=str(note.asset_id),
            error=str(note.payload.get("error", ""))[:ALERT_ERROR_CHARS],
        )
        return await sender.send_text(to, text, button)
    return await sender.send_text(to, render(messages.failed, note.name), button)


def _utc_minute(stamp: object) -> str:
    """A JSON timestamp as an admin reads it: ``2026-12-04 16:40 UTC``."""
    try:
        return f"{datetime.fromisoformat(str(stamp)).astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    except ValueError:
        return str(stamp)
