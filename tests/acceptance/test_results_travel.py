"""Results that travel, end to end: the real ``vidretry worker`` and ``vidretry notifier``
processes (the notifier's Telethon talking to the double), each on a disk of its own (a
private tmpfs over ``[worker] output_dir``, in a mount namespace of its own), and a real S3
server between them (SeaweedFS's ``weed mini`` on loopback). Telegram gets the generator's
bytes exactly (the double reassembles the upload and hashes it); nothing is left on a shared
disk; a store outage of minutes spends no attempt, loses nothing, and tells the admins.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import obstore
import psycopg
import pytest

from tests.acceptance.conftest import Cli
from tests.faults.conftest import spawn, stop, wait_for
from tests.s3server import WeedS3, started
from tests.telegram.bot_process import read_events
from tests.telegram.double import BOT_TOKEN

ROOT = Path(__file__).resolve().parents[2]
ADMIN = 900

# The generator: a video of ``size`` bytes that depend on the name alone (the test knows
# what Telegram must get), written where the worker asks, after ``seconds``.
GENERATOR = """\
import pathlib, random, sys, time
name, output, size, seconds = sys.argv[1], pathlib.Path(sys.argv[2]), *sys.argv[3:]
time.sleep(float(seconds))
output.parent.mkdir(parents=True, exist_ok=True)
output.write_bytes(random.Random(name).randbytes(int(size)))
"""


def expected(name: str, size: int) -> tuple[int, str]:
    return size, hashlib.sha256(random.Random(name).randbytes(size)).hexdigest()


def own_disk(argv: list[str], directory: Path) -> list[str]:
    """``argv`` run with a tmpfs of its own over ``directory``: what it writes there no
    other process sees, as on another machine. As root, a mount namespace; as another user,
    one inside a user namespace of its own (where the kernel allows it)."""
    namespace = ["unshare", "--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        namespace[1:1] = ["--user", "--map-root-user"]
    mount = 'mount -t tmpfs -o size=256m vidretry-own-disk "$0" && exec "$@"'
    return [*namespace, "sh", "-c", mount, str(directory), *argv]


@pytest.fixture
def namespaces(tmp_path: Path) -> None:
    probe = subprocess.run(
        own_disk(["true"], tmp_path), capture_output=True, text=True, check=False
    )
    if shutil.which("unshare") is None or probe.returncode != 0:
        pytest.skip(f"this machine cannot give a process a disk of its own: {probe.stderr}")


@pytest.fixture
def weed(tmp_path: Path) -> Iterator[WeedS3]:
    (tmp_path / "weed").mkdir()
    server = started(tmp_path / "weed")
    yield server
    server.stop()


def knows_everybody(db_url: str) -> None:
    """Every user (and the admin) once wrote /start: the bot knows how to address them (the
    double's access hash for a user it adds)."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO telegram_users (user_id, access_hash)"
            " SELECT u, u * 1000 + 7 FROM unnest(%s::bigint[]) AS u",
            ([1, 2, 3, ADMIN],),
        )


class Deployment:
    """A config for the worker and the notifier, and the two of them started on disks of
    their own."""

    def __init__(self, db_url: str, tmp_path: Path, weed: WeedS3, **storage: object) -> None:
        self.tmp_path = tmp_path
        self.videos = tmp_path / "videos"
        self.videos.mkdir()
        generator = tmp_path / "generator.py"
        generator.write_text(GENERATOR)
        table = "\n".join(f"{k} = {json.dumps(v)}" for k, v in weed.settings(**storage).items())
        self.config = tmp_path / "vidretry.toml"
        self.config.write_text(
            f'[database]\nurl = "{db_url}"\n'
            f"[worker]\ncommand = [{json.dumps(sys.executable)}, {json.dumps(str(generator))},"
            ' "{name}", "{output}", "{size}", "{seconds}"]\noutput_dir = "videos"\n'
            f"[storage]\n{table}\n"
            f'[telegram]\napi_id = 1\napi_hash = "abc"\nsession = "bot.session"\n'
            f"admins = [{ADMIN}]\n"
        )
        self.cli = Cli.for_config(self.config)
        knows_everybody(db_url)
        self.events_file = tmp_path / "events.jsonl"
        self.processes: list[subprocess.Popen[str]] = []

    def start(self, *, worker: bool = True, notifier: bool = True) -> None:
        if notifier:
            env = {**self.cli.env, "VIDRETRY_TELEGRAM_BOT_TOKEN": BOT_TOKEN,
                   "VIDRETRY_TEST_EVENTS": str(self.events_file)}  # fmt: skip
            argv = [sys.executable, "-m", "tests.telegram.bot_process", "--config",
                    str(self.config), "notifier"]  # fmt: skip
            self.processes.append(spawn(own_disk(argv, self.videos), env=env, cwd=ROOT,
                                        log=self.tmp_path / "notifier.log"))  # fmt: skip
        if worker:
            self.processes.append(spawn(own_disk(self.cli.argv("worker"), self.videos),
                                        env=self.cli.env, cwd=ROOT,
                                        log=self.tmp_path / "worker.log"))  # fmt: skip

    def stop(self) -> list[str]:
        return [stop(process) for process in self.processes]

    def ask(self, name: str, user: int, *, size: int, seconds: float = 0.0) -> None:
        asked = self.cli("enqueue", name, "--user", str(user), "-p", f"size={size}",
                         "-p", f"seconds={seconds}")  # fmt: skip
        assert asked.returncode == 0, asked.stderr

    def videos_to(self, chat: int) -> list[dict[str, Any]]:
        sends = [e for e in read_events(self.events_file) if e["event"] == "send"]
        return [e for e in sends if e["chat"] == chat and e["key"].startswith("ready")]


def test_a_video_travels_from_the_workers_disk_to_telegram_through_the_store(
    db_url: str, tmp_path: Path, weed: WeedS3, namespaces: None
) -> None:
    size = 20 * 1024 * 1024 + 4321  # three parts of the store's upload, 41 of Telegram's
    app = Deployment(db_url, tmp_path, weed)
    app.start()
    try:
        app.ask("Маша", 1, size=size)
        app.ask("Маша", 2, size=size)
        wait_for(lambda: app.videos_to(1) and app.videos_to(2), within=60,
                 what="Маша's video sent to both users")  # fmt: skip
    finally:
        logs = app.stop()
    assert all(p.returncode == 0 for p in app.processes), logs
    sent = app.videos_to(1) + app.videos_to(2)
    (upload,) = [e for e in sent if "sha256" in e]  # once: the other went by reference
    assert (upload["size"], upload["sha256"]) == expected("Маша", size)
    # Nothing on the shared disk: the worker wrote to its own, and the store took it from
    # there (and it was removed once kept).
    assert list(app.videos.iterdir()) == []
    (kept,) = [o for o in obstore.list(weed.client(), "vidretry/").collect()]
    assert kept["size"] == size
    with psycopg.connect(db_url) as conn:
        result, recorded = conn.execute(
            "SELECT result, result_sha256 FROM video_assets WHERE name = 'Маша'"
        ).fetchone()  # type: ignore[misc]
    assert result == f"s3://videos/{kept['path']}"
    assert bytes(recorded).hex() == expected("Маша", size)[1]


def test_with_delete_after_delivery_telegram_keeps_the_video_and_the_store_lets_it_go(
    db_url: str, tmp_path: Path, weed: WeedS3, namespaces: None
) -> None:
    """Once everybody waiting has the video, its object is deleted; a later request is
    answered from Telegram's copy, by reference, without the store."""
    size = 1024 * 1024
    app = Deployment(db_url, tmp_path, weed, delete_after_delivery=True)
    app.start()
    try:
        app.ask("Маша", 1, size=size)
        wait_for(lambda: app.videos_to(1), within=60, what="Маша's video sent")
        wait_for(lambda: obstore.list(weed.client(), "vidretry/").collect() == [], within=30,
                 what="the video deleted from the store")  # fmt: skip
        app.ask("Маша", 2, size=size)
        wait_for(lambda: app.videos_to(2), within=60, what="Маша's video sent again")
    finally:
        logs = app.stop()
    assert all(p.returncode == 0 for p in app.processes), logs
    (first,) = app.videos_to(1)
    assert (first["size"], first["sha256"]) == expected("Маша", size)
    (again,) = app.videos_to(2)
    assert "sha256" not in again  # by reference: no upload, no store
    # What the operator checks when a user says the video is broken: `show` says what the
    # store recorded (size, SHA-256 in hex) and when the object was let go.
    with psycopg.connect(db_url) as conn:
        asset_id, deleted = conn.execute(
            "SELECT id, result_deleted_at FROM video_assets"
        ).fetchone()  # type: ignore[misc]
    assert deleted is not None
    shown = app.cli.json("show", str(asset_id))
    assert (shown["result_size"], shown["result_sha256"]) == expected("Маша", size)
    assert datetime.fromisoformat(shown["result_deleted_at"]) == deleted
    text = app.cli("show", str(asset_id))
    assert text.returncode == 0, text.stderr
    assert re.search(
        rf"{size:,} bytes, SHA-256 {expected('Маша', size)[1]}, deleted from the store "
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d",
        " ".join(text.stdout.split()),
    ), text.stdout


def test_without_the_store_the_notifier_could_not_have_read_the_video(
    db_url: str, tmp_path: Path, namespaces: None
) -> None:
    """The control: the same two processes keeping videos on the (not shared) disk. The
    notifier finds no video where the worker's URI says, and the message fails for good,
    naming it: the disks really were apart."""
    videos = tmp_path / "videos"
    videos.mkdir()
    generator = tmp_path / "generator.py"
    generator.write_text(GENERATOR)
    config = tmp_path / "vidretry.toml"
    config.write_text(
        f'[database]\nurl = "{db_url}"\n'
        f"[worker]\ncommand = [{json.dumps(sys.executable)}, {json.dumps(str(generator))},"
        ' "{name}", "{output}", "1000", "0"]\noutput_dir = "videos"\n'
        '[telegram]\napi_id = 1\napi_hash = "abc"\nsession = "bot.session"\n'
    )
    cli = Cli.for_config(config)
    knows_everybody(db_url)
    env = {**cli.env, "VIDRETRY_TELEGRAM_BOT_TOKEN": BOT_TOKEN}
    notifier = [sys.executable, "-m", "tests.telegram.bot_process", "--config", str(config),
                "notifier"]  # fmt: skip
    processes = [
        spawn(own_disk(notifier, videos), env=env, cwd=ROOT, log=tmp_path / "notifier.log"),
        spawn(own_disk(cli.argv("worker"), videos), env=cli.env, cwd=ROOT,
              log=tmp_path / "worker.log"),
    ]  # fmt: skip
    try:
        assert cli("enqueue", "Маша", "--user", "1").returncode == 0
        with psycopg.connect(db_url, autocommit=True) as conn:

            def dead() -> Any:
                return conn.execute(
                    "SELECT last_error FROM notifications WHERE kind = 'ready' AND state = 'dead'"
                ).fetchone()

            wait_for(dead, within=60, what="the video's message given up")
            (error,) = dead()
    finally:
        logs = [stop(process) for process in processes]
    assert all(p.returncode == 0 for p in processes), logs
    assert "video missing: file://" in error


OUTAGE_SECONDS = 120.0


@pytest.mark.slow  # a store outage of two minutes, as long as one really lasts
@pytest.mark.timeout(OUTAGE_SECONDS + 180)
def test_a_store_outage_of_minutes_costs_no_attempt_and_loses_nothing(
    db_url: str, tmp_path: Path, weed: WeedS3, namespaces: None
) -> None:
    """Петя's video is made before the outage; Маша's is finished during it. Every
    setting at its default but the admins' alert (a minute, so it falls in the outage)."""
    size = 3 * 1024 * 1024
    app = Deployment(db_url, tmp_path, weed, alert_after_seconds=60)
    app.start(notifier=False)
    try:
        with psycopg.connect(db_url, autocommit=True) as conn:

            def one(query: str) -> Any:
                row = conn.execute(query).fetchone()
                return row[0] if row else None

            app.ask("Петя", 3, size=size)
            wait_for(lambda: one("SELECT state FROM video_assets WHERE name = 'Петя'")
                     == "available", within=60, what="Петя's video kept")  # fmt: skip
            # Delivering Петя's video reads the store, and so does Маша's keeping: stop the
            # store first, and only then let the notifier see Петя's message.
            weed.stop()
            down_at = time.monotonic()
            app.start(worker=False)
            app.ask("Маша", 1, size=size, seconds=5)
            wait_for(lambda: one("SELECT count(*) FROM store_outage") == 1, within=60,
                     what="the worker found the store down")  # fmt: skip
            wait_for(lambda: any(e["chat"] == ADMIN for e in read_events(app.events_file)
                                 if e["event"] == "send"),
                     within=120, what="the admins told")  # fmt: skip
            assert time.monotonic() - down_at >= 60
            while time.monotonic() - down_at < OUTAGE_SECONDS:
                assert one("SELECT attempts FROM video_assets WHERE name = 'Маша'") == 1
                assert one("SELECT state FROM video_assets WHERE name = 'Маша'") == "running"
                time.sleep(1)
            assert app.videos_to(1) == []
            weed.start()
            wait_for(lambda: app.videos_to(1) and app.videos_to(3), within=90,
                     what="both videos delivered after the outage")  # fmt: skip
            history = conn.execute(
                "SELECT kind FROM job_events WHERE kind IN ('attempt_failed', 'paused')"
            ).fetchall()
            assert one("SELECT count(*) FROM store_outage") == 0
            assert one("SELECT attempts FROM video_assets WHERE name = 'Маша'") == 1
            dead = one("SELECT count(*) FROM notifications WHERE state = 'dead'")
    finally:
        logs = app.stop()
    assert all(p.returncode == 0 for p in app.processes), logs
    assert history == []  # no attempt failed, the breaker saw nothing
    assert dead == 0
    (masha,) = app.videos_to(1)
    assert (masha["size"], masha["sha256"]) == expected("Маша", size)
    (petya,) = app.videos_to(3)
    assert (petya["size"], petya["sha256"]) == expected("Петя", size)
    notices = [e for e in read_events(app.events_file) if e["event"] == "send"
               and e["chat"] == ADMIN]  # fmt: skip
    assert len(notices) == 1
