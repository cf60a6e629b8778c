"""A transport that prints notifications instead of sending them: demos and dry runs."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from vidretry.telegram.transport import InlineButton, Recipient, VideoRef


class ConsoleSender:
    def __init__(self, write: Callable[[str], None]) -> None:
        self.write = write

    async def send_text(
        self, to: Recipient, html_text: str, button: InlineButton | None
    ) -> int | None:
        lines = [
            f"→ user {to.user_id} (chat {to.chat_id}):",
            *("  " + line for line in html_text.splitlines()),
        ]
        if button:
            lines.append(f"  [ {button.text} ]  callback_data={button.data}")
        self.write("\n".join(lines))
        return None

    async def send_video(self, to: Recipient, video: VideoRef, caption_html: str) -> int | None:
        self.write(f"→ user {to.user_id} (chat {to.chat_id}): video {video.uri}\n  {caption_html}")
        return None

    async def edit_text(
        self, to: Recipient, message_id: int, html_text: str, buttons: Sequence[InlineButton]
    ) -> None:
        lines = [
            f"✎ user {to.user_id} (chat {to.chat_id}), message {message_id} now says:",
            *("  " + line for line in html_text.splitlines()),
            *(f"  [ {b.text} ]  callback_data={b.data}" for b in buttons),
        ]
        self.write("\n".join(lines))
