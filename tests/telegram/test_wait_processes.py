"""The wait, end to end: the real ``vidretry worker`` and ``vidretry notifier`` processes
(the notifier's Telethon talking to the double in its own process), users writing to the
bot and pressing its buttons through Telethon's update loop, every setting at its default.

Four users ask for three videos. The lone request still in line is cancelled and never
made; one of two waiters cancels and the other gets the video; the lone running request is
cancelled and its generator stopped within heartbeat_seconds + 2 s, no attempt counted. The
acceptance of the one who waits shows the progress, edited at most every 5 s, and the video
arrives at once when it is done, with "sending a video" shown while it uploads; a later
request gets it by its recorded reference, refreshed after Telegram expired it.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.acceptance.conftest import Cli
from tests.faults.conftest import spawn, stop, wait_for
from tests.telegram.bot_process import read_events
from tests.telegram.double import BOT_TOKEN
from vidretry.config import NotifierConfig, WorkerConfig

ROOT = Path(__file__).resolve().parents[2]

# The generator: Маша takes 14 s, reporting progress; Петя runs until told to stop (and
# says when it was); Вася is quick, if it is ever made.
GENERATOR = """\
import pathlib, signal, sys, time
name, output, log = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3]
def term(*_):
    with open(log, "a") as f:
        f.write("term %s %r\\n" % (name, time.time()))
    sys.exit(1)
signal.signal(signal.SIGTERM, term)
seconds = {"Маша": 14.0, "Петя": 600.0}.get(name, 0.1)
started = time.monotonic()
while time.monotonic() - started < seconds:
    print("progress", int(100 * (time.monotonic() - started) / seconds), flush=True)
    time.sleep(0.25)
output.parent.mkdir(parents=True, exist_ok=True)
output.write_bytes(b"\\x00" * 300000)
"""


def sends(events: list[dict[str, Any]], chat: int) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == "send" and e["chat"] == chat]


@pytest.mark.slow(seconds=20)  # half a minute of real processes
def test_cancel_and_progress_through_the_real_worker_and_notifier(
    db_url: str, tmp_path: Path
) -> None:
    assert NotifierConfig().progress_edit_seconds == 5.0
    heartbeat = WorkerConfig().heartbeat_seconds
    generator, stopped = tmp_path / "generator.py", tmp_path / "stopped.log"
    generator.write_text(GENERATOR)
    config = tmp_path / "vidretry.toml"
    config.write_text(
        f'[database]\nurl = "{db_url}"\n'
        f'[worker]\ncommand = [{json.dumps(sys.executable)}, "{generator}", "{{name}}",'
        f' "{{output}}", "{stopped}"]\noutput_dir = "{tmp_path / "videos"}"\n'
        f'[telegram]\napi_id = 1\napi_hash = "abc"\nsession = "{tmp_path / "bot.session"}"\n'
    )
    inbox, events_file = tmp_path / "inbox.jsonl", tmp_path / "events.jsonl"
    cli = Cli.for_config(config)
    env = {
        **cli.env,
        "VIDRETRY_TELEGRAM_BOT_TOKEN": BOT_TOKEN,
        "VIDRETRY_TEST_INBOX": str(inbox),
        "VIDRETRY_TEST_EVENTS": str(events_file),
        "VIDRETRY_TEST_EXPIRE_REFERENCES": "1",
    }
    notifier_argv = [
        sys.executable, "-m", "tests.telegram.bot_process", "--config", str(config), "notifier"
    ]  # fmt: skip
    notifier = spawn(notifier_argv, env=env, cwd=ROOT, log=tmp_path / "notifier.log")
    worker = spawn(cli.argv("worker"), env=cli.env, cwd=ROOT, log=tmp_path / "worker.log")

    def act(**action: Any) -> None:
        with inbox.open("a") as f:
            f.write(json.dumps(action, ensure_ascii=False) + "\n")

    def events() -> list[dict[str, Any]]:
        return read_events(events_file)

    def acceptance(user: int) -> tuple[int, str]:
        (sent,) = [e for e in sends(events(), user) if e["buttons"]]
        (data,) = sent["buttons"]
        return int(sent["id"]), data

    def answers() -> list[str]:
        return [e["text"] for e in events() if e["event"] == "answer"]

    try:
        wait_for(lambda: any(e["event"] == "connect" for e in events()), within=30,
                 what="the notifier logged in")  # fmt: skip
        with psycopg.connect(db_url, autocommit=True) as conn:

            def one(query: str, *params: Any) -> Any:
                row = conn.execute(query, params).fetchone()
                return row[0] if row else None

            # The leader says its bot is connected (the web console's overview shows it).
            wait_for(lambda: one("SELECT telegram_connected FROM leadership") is True,
                     within=10, what="the leader's connection recorded")  # fmt: skip
            for user, name in ((1, "Маша"), (2, "Маша"), (3, "Петя")):
                act(user=user, text=f"/video {name}")
            running = "SELECT count(*) FROM video_assets WHERE state = 'running'"
            wait_for(lambda: one(running) == 2, within=30, what="Маша and Петя taken")
            act(user=4, text="/video Вася")
            wait_for(
                lambda: all(any(e["buttons"] for e in sends(events(), u)) for u in (1, 2, 3, 4)),
                within=30, what="four acceptances with their cancel buttons",
            )  # fmt: skip

            # The lone request in line: cancelled, never made.
            msg_id, data = acceptance(4)
            act(user=4, press=data, msg_id=msg_id)
            vasya = "SELECT state FROM video_assets WHERE name = 'Вася'"
            wait_for(lambda: one(vasya) == "cancelled", within=30, what="Вася cancelled")
            # One of two waiters: the job goes on for the other.
            msg_id, data = acceptance(2)
            act(user=2, press=data, msg_id=msg_id)
            second = "SELECT state FROM user_requests WHERE user_id = 2"
            wait_for(lambda: one(second) == "cancelled", within=30, what="user 2 cancelled")
            assert one("SELECT state FROM video_assets WHERE name = 'Маша'") == "running"
            # The lone running request: its generator is stopped.
            msg_id, data = acceptance(3)
            pressed = time.time()
            act(user=3, press=data, msg_id=msg_id)
            wait_for(lambda: stopped.exists() and "Петя" in stopped.read_text(),
                     within=heartbeat + 10, what="Петя's generator stopped")  # fmt: skip
            (line,) = stopped.read_text().splitlines()
            assert float(line.split()[-1]) - pressed <= heartbeat + 2
            assert one("SELECT state || ' ' || attempts FROM video_assets WHERE name = 'Петя'") == (
                "cancelled 0"
            )

            # Маша is made; user 1 gets the video, user 2 does not.
            wait_for(lambda: any(e["key"] == "ready Маша" for e in sends(events(), 1)),
                     within=60, what="Маша's video sent to user 1")  # fmt: skip
            # A later request for the finished video: sent by its recorded reference (expired
            # by then, so refreshed from the message it first went out in), not uploaded.
            act(user=5, text="/video Маша")
            wait_for(lambda: any(e["key"] == "ready Маша" for e in sends(events(), 5)),
                     within=30, what="Маша's video sent to user 5")  # fmt: skip
            done_at: datetime = one(
                "SELECT e.created_at FROM job_events AS e JOIN video_assets AS a"
                " ON a.id = e.asset_id WHERE a.name = 'Маша' AND e.kind = 'succeeded'"
            )
            history = conn.execute(
                "SELECT a.name, e.kind FROM job_events AS e JOIN video_assets AS a"
                " ON a.id = e.asset_id ORDER BY e.id"
            ).fetchall()
            failures = one("SELECT count(*) FROM job_events WHERE kind = 'attempt_failed'")
        time.sleep(1.5)  # anything still on its way would arrive now
        seen = events()
    finally:
        notifier_log, worker_log = stop(notifier), stop(worker)
    assert notifier.returncode == 0, notifier_log
    assert worker.returncode == 0, worker_log

    assert answers()[:3] == ["Отменено."] * 3
    assert ("Вася", "claimed") not in history
    assert failures == 0  # no attempt failed: the breaker saw nothing
    assert [e for e in sends(seen, 2) if e["key"] == "ready Маша"] == []
    (video,) = [e for e in sends(seen, 1) if e["key"] == "ready Маша"]
    assert video["t"] - done_at.timestamp() < 2.0  # no progress edit held it back
    assert video["upload"] is True
    (later,) = [e for e in sends(seen, 5) if e["key"] == "ready Маша"]
    assert later["upload"] is False  # one upload per video, through a refreshed reference
    with psycopg.connect(db_url) as conn:
        refreshed = conn.execute("SELECT refreshed_at FROM telegram_videos").fetchone()
    assert refreshed is not None
    assert refreshed[0] is not None
    actions = [e for e in seen if e["event"] == "action" and e["chat"] == 1]
    assert actions
    assert actions[0]["action"] == "SendMessageUploadVideoAction"
    # The acceptance of user 1, edited into the progress: at most every 5 s, the button kept.
    accepted_id, data = next(
        (int(e["id"]), e["buttons"][0]) for e in sends(seen, 1) if e["buttons"]
    )
    edits = [e for e in seen if e["event"] == "edit" and e["chat"] == 1]
    assert len(edits) >= 2, edits
    assert all(e["id"] == accepted_id and e["buttons"] == [data] for e in edits)
    assert any("%" in e["text"] and "▰" in e["text"] for e in edits)
    gaps = [b["t"] - a["t"] for a, b in itertools.pairwise(edits)]
    assert min(gaps) >= 5.0 - 0.05, gaps
    assert os.path.exists(tmp_path / "videos")
