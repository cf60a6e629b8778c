"""``vidretry`` as a subprocess, with only Telethon's network layer replaced by the double.

    python -m tests.telegram.bot_process --config FILE notifier

runs the real command line (leadership, the bot session, the outbox loop) exactly as
``vidretry notifier`` does, except that every Telethon client it builds talks to an
in-process ``FakeTelegram`` instead of the network. The network guard is installed too, so
nothing can leave the machine. Environment variables steer the double:

- ``VIDRETRY_TEST_EVENTS``: a file to append one JSON line per event to: ``connect`` and
  ``disconnect`` of the bot session, and every accepted ``send`` (with its chat, key and time).
- ``VIDRETRY_TEST_CHAOS=1``: random flood waits and server errors, and blocked users.
- ``VIDRETRY_TEST_OUTAGE``: a path; while that file exists, every send fails with a server
  error (a Telegram outage).
- ``VIDRETRY_TEST_VALID_TOKEN``: the token the double accepts (default: the tests' token).
- ``VIDRETRY_TEST_CRASH_ON``: a text; sending a message that holds it kills the process
  with SIGKILL, as a library's segfault or an OOM kill would (a poison notification).
- ``VIDRETRY_TEST_EXPIRE_REFERENCES=1``: every upload's file reference is expired at once,
  so the next send by reference must fetch a fresh one from the message it went out in.
- Every video uploaded is logged with its ``size`` and ``sha256`` as the double received it.
- ``VIDRETRY_TEST_INBOX``: a file the test appends JSON lines to, each a user's action fed
  through the bot's real update loop: ``{"user": 1, "text": "/video Маша"}`` writes to the
  bot, ``{"user": 1, "press": "<callback data>", "msg_id": 1002}`` presses a button. Every
  message the bot sends, edits and the chat actions are logged to the events file then, with
  their text, buttons and message ids.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import socket
import time
from pathlib import Path
from typing import Any

from telethon import functions, types

from tests.telegram.double import BOT_TOKEN, FakeTelegram, install
from tests.telegram.offline.sitecustomize import loopback_only, loopback_only_uvloop

SENDS = (functions.messages.SendMessageRequest, functions.messages.SendMediaRequest)


def blocked(user_id: int) -> bool:
    """The chaos double's users who blocked the bot."""
    return user_id % 37 == 0


def message_key(request: Any) -> str:
    """What a sent message says, to count duplicates: the failure's button, or the video."""
    if isinstance(request, functions.messages.SendMessageRequest) and request.reply_markup:
        (row,) = request.reply_markup.rows
        return "failed " + bytes(row.buttons[0].type.data).decode()
    match = re.search(r"для (\S+) готово", request.message or "")
    return "ready " + (match[1] if match else "?")


def read_events(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line) for line in lines if line.strip()]


def most_sessions_at_once(events: list[dict[str, Any]], killed: dict[int, float]) -> int:
    """How many bot sessions were logged in at the same time, at most, across processes. A
    session still open when its process was killed ends at the kill (the process cannot log
    its own end)."""
    changes: list[tuple[float, int]] = []
    open_since: dict[int, float] = {}
    for event in sorted(events, key=lambda e: e["t"]):
        pid = event["pid"]
        if event["event"] == "connect":
            open_since[pid] = event["t"]
            changes.append((event["t"], 1))
        elif event["event"] == "disconnect" and pid in open_since:
            del open_since[pid]
            changes.append((event["t"], -1))
    for pid, since in open_since.items():
        changes.append((max(since, killed.get(pid, float("inf"))), -1))
    live = most = 0
    for _, change in sorted(changes):  # at equal times, an end (-1) sorts first
        live += change
        most = max(most, live)
    return most


class ProcessTelegram(FakeTelegram):
    def __init__(self, events: Path | None, chaos: bool, outage: Path | None) -> None:
        super().__init__(valid_token=os.environ.get("VIDRETRY_TEST_VALID_TOKEN", BOT_TOKEN))
        self.events = events
        self.chaos = chaos
        self.outage = outage
        self.rng = random.Random()
        inbox = os.environ.get("VIDRETRY_TEST_INBOX")
        self.inbox = Path(inbox) if inbox else None
        self.clients: list[Any] = []  # the bot sessions built, the newest last
        # Telegram expiring file references: each upload's reference is stale at once.
        self.expire_after_upload = os.environ.get("VIDRETRY_TEST_EXPIRE_REFERENCES") == "1"
        self.reading: asyncio.Task[None] | None = None

    def read_inbox(self) -> None:
        """Start feeding the inbox's actions to the newest client (in its event loop)."""
        if self.inbox is not None and self.reading is None:
            self.reading = asyncio.get_running_loop().create_task(self._feed())

    async def _feed(self) -> None:
        assert self.inbox is not None
        done = 0
        while True:
            await asyncio.sleep(0.05)
            lines = self.inbox.read_text().splitlines() if self.inbox.exists() else []
            for line in lines[done:]:
                action = json.loads(line)
                user = int(action["user"])
                if user not in self.users:
                    self.add_user(user, lang_code=action.get("lang"))
                if "text" in action:
                    self.write(self.clients[-1], user, action["text"])
                else:
                    self.press(
                        self.clients[-1], user, action["press"].encode(), int(action["msg_id"])
                    )
            done = len(lines)

    def answer(self, request: Any, arrived: float | None = None) -> Any:
        # The send's time is when it reached the double, on the wall clock (the tests
        # compare processes): not after the double has answered it.
        at = time.time() if arrived is None else time.time() - (time.monotonic() - arrived)
        self.read_inbox()
        wire = request
        while isinstance(request, functions.InvokeWithoutUpdatesRequest):  # a send-only bot's
            request = request.query
        crash_on = os.environ.get("VIDRETRY_TEST_CRASH_ON")
        if crash_on and isinstance(request, SENDS) and crash_on in (request.message or ""):
            os.kill(os.getpid(), signal.SIGKILL)
        if isinstance(request, SENDS):
            user_id = request.peer.user_id
            if user_id not in self.users:
                self.add_user(user_id)
            roll = self.rng.random()
            if self.outage is not None and self.outage.exists():
                self.fail(type(request), "RPC_CALL_FAIL", 500)
            elif self.chaos and blocked(user_id):
                self.fail(type(request), "USER_IS_BLOCKED", 400)
            elif self.chaos and roll < 0.02:
                self.fail(type(request), "FLOOD_WAIT_1", 420)
            elif self.chaos and roll < 0.04:
                self.fail(type(request), "INTERNAL_SERVER_ERROR", 500)
        result = super().answer(wire, arrived)  # raises what was injected above
        if isinstance(request, SENDS):
            fields: dict[str, Any] = {}
            if self.inbox is not None:
                fields = {"text": request.message, "id": _message_id(result)}
                fields["buttons"] = _buttons(request.reply_markup)
                media = getattr(request, "media", None)
                if media is not None:
                    fields["upload"] = isinstance(media, types.InputMediaUploadedDocument)
            received = self._received(result)
            if received is not None:  # an upload: what Telegram got, to compare with the video
                fields["size"], fields["sha256"] = received[0], received[1].hex()
            self.log("send", at, chat=request.peer.user_id, key=message_key(request), **fields)
        elif self.inbox is not None and isinstance(request, functions.messages.EditMessageRequest):
            self.log(
                "edit", chat=request.peer.user_id, id=request.id, text=request.message,
                buttons=_buttons(request.reply_markup),
            )  # fmt: skip
        elif self.inbox is not None and isinstance(request, functions.messages.SetTypingRequest):
            self.log("action", chat=request.peer.user_id, action=type(request.action).__name__)
        elif self.inbox is not None and isinstance(
            request, functions.messages.SetBotCallbackAnswerRequest
        ):
            self.log("answer", text=request.message)
        return result

    def _received(self, updates: Any) -> tuple[int, bytes] | None:
        for update in getattr(updates, "updates", []):
            document = getattr(getattr(getattr(update, "message", None), "media", None),
                               "document", None)  # fmt: skip
            if document is not None and document.id in self.received:
                return self.received.pop(document.id)
        return None

    def on_connection(self, connected: bool) -> None:
        super().on_connection(connected)
        self.log("connect" if connected else "disconnect")

    def log(self, event: str, at: float | None = None, **fields: Any) -> None:
        if self.events is None:
            return
        at = time.time() if at is None else at
        line = json.dumps({"event": event, "pid": os.getpid(), "t": at, **fields})
        with self.events.open("a") as f:
            f.write(line + "\n")


def _message_id(updates: Any) -> int | None:
    for update in getattr(updates, "updates", []):
        if isinstance(update, types.UpdateMessageID):
            return int(update.id)
    return None


def _buttons(markup: Any) -> list[str]:
    """The callback data of every inline button."""
    rows = getattr(markup, "rows", None) or []
    found = []
    for row in rows:
        for button in row.buttons:
            button = getattr(button, "type", button)  # Telethon's wrapper, or the TL object
            if getattr(button, "data", None) is not None:
                found.append(bytes(button.data).decode())
    return found


def main() -> None:
    socket.socket.connect = loopback_only(socket.socket.connect)  # type: ignore[method-assign]
    loopback_only_uvloop()
    events = os.environ.get("VIDRETRY_TEST_EVENTS")
    outage = os.environ.get("VIDRETRY_TEST_OUTAGE")
    telegram = ProcessTelegram(
        Path(events) if events else None,
        chaos=os.environ.get("VIDRETRY_TEST_CHAOS") == "1",
        outage=Path(outage) if outage else None,
    )

    from vidretry import cli
    from vidretry.telegram.bot import client as bot_client

    build_client = bot_client.build_client

    def build_offline_client(config: Any, **options: Any) -> Any:
        client = build_client(config, **options)
        install(client, telegram)
        telegram.clients.append(client)
        return client

    # The command imports the bot's client module when it runs, and takes build_client from
    # it then.
    bot_client.build_client = build_offline_client  # type: ignore[assignment]
    cli.main()


if __name__ == "__main__":
    main()
