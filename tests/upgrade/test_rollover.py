"""The first rollover (docs/upgrading.md): from the previous release's *running* workers
and notifier, through this release's `db upgrade`, to this release's processes. The old
ones keep working through the upgrade, this release's join, the old ones stop gracefully
(SIGTERM) and the leader hands over to a standby at once. Nothing is lost, no attempt is
charged, no video is made twice, and every user gets each video once."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests import schema_snapshot
from tests.faults.conftest import stop, wait_for
from tests.telegram.bot_process import read_events
from tests.telegram.double import BOT_TOKEN
from tests.upgrade.conftest import Release, generator_log, write_config
from vidretry import __version__
from vidretry.config import NotifierConfig
from vidretry.db import sqlfiles

USERS = (1, 2, 3, 4)


@pytest.mark.slow(seconds=30)  # the old and new processes of a rollout: about 30 s
@pytest.mark.timeout(240)
def test_the_first_rollover_from_the_previous_release_s_running_processes(
    empty_database: str, tmp_path: Path, previous: Release, current: Release
) -> None:
    # The database as the previous release left it: schema 19, by its own `db upgrade` on an
    # empty database.
    db_url = empty_database
    with psycopg.connect(db_url, autocommit=True) as conn:
        old_config = write_config(tmp_path / "old.toml", db_url, tmp_path)
        new_config = write_config(tmp_path / "new.toml", db_url, tmp_path)
        old, new = previous.cli(old_config), current.cli(new_config)
        assert old("db", "upgrade").returncode == 0
        assert conn.execute("SELECT max(version) FROM vidretry_migrations").fetchone() == (19,)
        # This release refuses it until its `db upgrade`, in one line that says so.
        refused = new("status")
        assert refused.returncode == 2
        assert refused.stderr == (
            f"vidretry: error: database schema is at version 19, this vidretry needs "
            f"{sqlfiles.latest_version()}: run `vidretry db upgrade`\n"
        )

        def one(query: str, *params: Any) -> Any:
            row = conn.execute(query, params).fetchone()
            return row[0] if row else None

        def enqueue(names: list[str]) -> None:
            for i, name in enumerate(names):
                conn.execute(
                    'SELECT vidretry_enqueue(%s, %s, NULL, \'{"seconds": "1.5"}\')',
                    (name, USERS[i % len(USERS)]),
                )

        events_file, inbox = tmp_path / "events.jsonl", tmp_path / "inbox.jsonl"
        telegram = {
            "VIDRETRY_TELEGRAM_BOT_TOKEN": BOT_TOKEN,
            "VIDRETRY_TEST_EVENTS": str(events_file),
            "VIDRETRY_TEST_INBOX": str(inbox),
        }
        processes: dict[str, Any] = {}
        logs: dict[str, str] = {}

        def start(name: str, release: Release, kind: str) -> Any:
            config = old_config if release is previous else new_config
            log = tmp_path / f"{name}.log"
            if kind == "notifier":
                env = {**(old if release is previous else new).env, **telegram}
                processes[name] = release.notifier(config, env, log)
            else:
                processes[name] = release.worker(config, log)
            return processes[name]

        def sends(kind: str | None = None) -> list[dict[str, Any]]:
            found = [e for e in read_events(events_file) if e["event"] == "send"]
            return [e for e in found if kind is None or "upload" in e]

        try:
            old_notifier = start("old-notifier", previous, "notifier")
            with inbox.open("a") as f:  # Telegram lets a bot write to those who started it
                for user in USERS:
                    f.write(json.dumps({"user": user, "text": "/start"}) + "\n")
            wait_for(lambda: {e["chat"] for e in sends()} == set(USERS), within=30,
                     what="the old notifier's welcome, to each user")  # fmt: skip
            old_workers = [start(f"old-worker-{n}", previous, "worker") for n in (1, 2)]
            enqueue([f"before-{i}" for i in range(8)])
            running = "SELECT count(*) FROM video_assets WHERE state = 'running'"
            wait_for(lambda: one(running) > 0, within=30, what="the old workers at work")

            # This release's `db upgrade`, while they work.
            upgrade_began = one("SELECT now()")
            upgrade_wall = time.time()
            upgraded = new("db", "upgrade")
            assert upgraded.returncode == 0, upgraded.stderr
            assert "schema upgraded to version" in upgraded.stdout
            # Upgraded from 19, the schema is the one a new database gets.
            assert schema_snapshot.dump(db_url) == schema_snapshot.SNAPSHOT.read_text()
            # The old command line still asks for videos, and an old worker still starts.
            for i, user in enumerate(USERS[:2]):
                asked = old("enqueue", f"between-{i}", "--user", str(user), "--param",
                            "seconds=1.5")  # fmt: skip
                assert asked.returncode == 0, asked.stderr
            old_workers.append(start("old-worker-3", previous, "worker"))

            # This release joins: a worker, and a notifier that stands by.
            start("new-worker", current, "worker")
            new_notifier = start("new-notifier", current, "notifier")
            recorded = "SELECT count(*) FROM vidretry_processes WHERE release = %s"
            wait_for(lambda: one(recorded, __version__) == 2, within=30,
                     what="this release's worker and notifier recorded")  # fmt: skip
            releases = new.json("status")["releases"]["running"]
            assert [r["release"] for r in releases] == ["0.19.0 or older", __version__]
            assert any(name.startswith("notifier ") for name in releases[0]["unrecorded"])
            assert (releases[1]["workers"], releases[1]["notifiers"]) == (1, 1)

            # The old workers stop one at a time, each while it has a video running.
            def at_work(pid: int) -> bool:
                """The old worker runs a video (or none is left to run)."""
                mine = one(running + " AND lease_owner LIKE %s", f"%:{pid}")
                return bool(mine) or one(running) == 0

            for worker in old_workers:
                pid = worker.pid
                wait_for(partial(at_work, pid), within=30, what="an old worker at work")
                worker.send_signal(signal.SIGTERM)
                logs[f"old-worker-{worker.pid}"] = stop(worker)
                assert worker.returncode == 0, logs[f"old-worker-{worker.pid}"]
            enqueue([f"after-{i}" for i in range(4)])

            # The old notifier stops; the standby leads at once.
            old_notifier.send_signal(signal.SIGTERM)
            logs["old-notifier"] = stop(old_notifier)
            assert old_notifier.returncode == 0, logs["old-notifier"]

            def connected(pid: int) -> list[float]:
                return [e["t"] for e in read_events(events_file)
                        if e["event"] == "connect" and e["pid"] == pid]  # fmt: skip

            wait_for(lambda: connected(new_notifier.pid), within=30,
                     what="this release's notifier leads")  # fmt: skip
            (gone,) = [e["t"] for e in read_events(events_file)
                       if e["event"] == "disconnect" and e["pid"] == old_notifier.pid]  # fmt: skip
            # Not the standby's next look (every 5 s with the defaults): the resignation.
            standby_look = min(NotifierConfig().lease_seconds / 12, 5.0)
            assert connected(new_notifier.pid)[0] - gone < standby_look

            names = 8 + 2 + 4
            available = "SELECT count(*) FROM video_assets WHERE state = 'available'"
            wait_for(lambda: one(available) == names, within=60, what="every video made")
            wait_for(lambda: len(sends("video")) >= names, within=60,
                     what="every video delivered")  # fmt: skip
        finally:
            for name, process in processes.items():
                if process.poll() is None:
                    logs[name] = stop(process)
        assert one("SELECT count(*) FROM video_assets") == names  # nothing lost
        # The running old workers went on working through the upgrade.
        finished_by = "SELECT count(*) FROM job_events WHERE kind = 'succeeded'" \
                      " AND created_at > %s AND actor LIKE %s"  # fmt: skip
        for worker in old_workers[:2]:
            assert one(finished_by, upgrade_began, f"%:{worker.pid}") > 0
        # No attempt charged: one attempt per video.
        assert one("SELECT array_agg(DISTINCT attempts) FROM video_assets") == [1]
    # No video made twice, and every user got each video once.
    made = Counter(line[1] for line in generator_log(tmp_path) if line[0] == "end")
    assert set(made.values()) == {1}
    assert len(made) == names
    delivered = Counter((e["chat"], e["key"]) for e in sends("video"))
    # ... and the running old notifier sent them through it.
    assert any(e["pid"] == old_notifier.pid and e["t"] > upgrade_wall for e in sends("video"))
    assert set(delivered.values()) == {1}
    assert len(delivered) == names
    for name, text in logs.items():
        assert "Traceback" not in text, f"{name}: {text}"
