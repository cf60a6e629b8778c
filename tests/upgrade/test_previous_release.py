"""The previous release keeps working against this release's schema (docs/upgrading.md):
its command line, its worker and its notifier — taken from the git history, run with only
Telethon's network layer replaced by its own double — through a whole video's life:
asked for from its command line and from SQL, three failures, the failure message,
the retry button, done, the video delivered."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.faults.conftest import stop, wait_for
from tests.telegram.bot_process import read_events
from tests.telegram.double import BOT_TOKEN
from tests.upgrade.conftest import Release, generator_log, write_config
from tests.upgrade.releases import ROOT, MissingRelease, examples, extract, previous_release
from vidretry import __version__
from vidretry.db import connection, schema, sqlfiles
from vidretry.version import parse_release


def sends(events: list[dict[str, Any]], chat: int) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == "send" and e["chat"] == chat]


@pytest.mark.slow  # real processes of the old release: about 15 s
@pytest.mark.timeout(180)
def test_the_previous_release_runs_a_video_s_whole_life_against_this_schema(
    db_url: str, tmp_path: Path, previous: Release
) -> None:
    # The test's database has this checkout's schema (tests/support.py: apply_schema).
    config = write_config(tmp_path / "old.toml", db_url, tmp_path)
    old = previous.cli(config)
    asked = old("enqueue", "fails-Маша", "--user", "111", "--param", "seconds=0.1")
    assert asked.returncode == 0, asked.stderr
    asset = int(asked.stdout.strip())
    with psycopg.connect(db_url, autocommit=True) as conn:
        joined = conn.execute(
            "SELECT vidretry_enqueue('fails-Маша', 222, NULL, '{\"seconds\": \"0.1\"}')"
        ).fetchone()
        assert joined == (asset,)

        def one(query: str) -> Any:
            row = conn.execute(query, (asset,)).fetchone()
            return row[0] if row else None

        events_file, inbox = tmp_path / "events.jsonl", tmp_path / "inbox.jsonl"
        env = {
            "VIDRETRY_TELEGRAM_BOT_TOKEN": BOT_TOKEN,
            "VIDRETRY_TEST_EVENTS": str(events_file),
            "VIDRETRY_TEST_INBOX": str(inbox),
        }
        notifier = previous.notifier(config, {**old.env, **env}, tmp_path / "notifier.log")
        worker = None
        try:
            # Telegram lets a bot write to those who started it.
            with inbox.open("a") as f:
                for user in (111, 222):
                    f.write(json.dumps({"user": user, "text": "/start"}) + "\n")
            wait_for(lambda: sends(read_events(events_file), 111)
                     and sends(read_events(events_file), 222),
                     within=30, what="the bot's welcome, to each user")  # fmt: skip
            worker = previous.worker(config, tmp_path / "worker.log")
            state = "SELECT state FROM video_assets WHERE id = %s"
            wait_for(lambda: one(state) == "failed", within=60, what="three failed attempts")
            assert one("SELECT attempts FROM video_assets WHERE id = %s") == 3

            def buttons(user: int) -> list[tuple[int, str]]:
                return [
                    (e["id"], data)
                    for e in sends(read_events(events_file), user)
                    for data in e["buttons"]
                    if data.startswith("retry_video:")
                ]

            wait_for(lambda: buttons(111) and buttons(222), within=60,
                     what="the failure message with its retry button, to each user")  # fmt: skip
            (message, data), *_ = buttons(111)
            with inbox.open("a") as f:
                f.write(json.dumps({"user": 111, "press": data, "msg_id": message}) + "\n")
            wait_for(lambda: one(state) == "available", within=60, what="made after the retry")

            def videos(user: int) -> list[dict[str, Any]]:
                return [e for e in sends(read_events(events_file), user) if "upload" in e]

            wait_for(lambda: videos(111) and videos(222), within=60,
                     what="the video, to each user")  # fmt: skip
        finally:
            worker_log = stop(worker) if worker is not None else ""
            notifier_log = stop(notifier)
    assert worker is not None
    assert worker.returncode == 0, worker_log
    assert notifier.returncode == 0, notifier_log
    assert "Traceback" not in worker_log + notifier_log
    made = [line for line in generator_log(tmp_path) if line[0] == "start"]
    assert [line[2] for line in made] == ["0", "0", "0", "1"]  # three failures, one success
    assert [len(videos(user)) for user in (111, 222)] == [1, 1]


@pytest.mark.slow  # the old release's command line, and this one's: a few seconds
def test_a_contract_that_breaks_the_previous_release_is_refused_by_it_in_its_own_words(
    db_url: str, tmp_path: Path, previous: Release, current: Release
) -> None:
    # The page's "tighten a CHECK" example, shipped by a made-up 0.21.0.
    (contract,) = [text for _, name, text in examples() if name == "NNNN_fewer_attempts"]
    shipped = sqlfiles.shipped()
    step = sqlfiles.parse_migration(shipped.latest_version + 1, "fewer_attempts", contract)
    catalog = sqlfiles.Catalog((*shipped.migrations, step), shipped.functions, (0, 21, 0))

    async def upgrade() -> None:
        async with await connection.connect(db_url) as conn:
            assert (await schema.upgrade(conn, catalog)).applied == [step.version]

    asyncio.run(upgrade())
    config = write_config(tmp_path / "vidretry.toml", db_url, tmp_path)
    old = previous.cli(config)("status")
    assert old.returncode == 2
    assert old.stderr == (
        f"vidretry: error: database schema is at version {step.version}, newer than this "
        "vidretry (knows up to 19): upgrade vidretry\n"
    )
    this = current.cli(config)("status")
    assert this.returncode == 2
    assert this.stderr.endswith("deploy vidretry 0.21.0 or newer\n")
    assert this.stderr.count("\n") == 1


def test_a_clone_without_the_previous_release_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(MissingRelease, match="not in this clone's git history: clone in full"):
        extract("0" * 40, tmp_path)


def test_a_change_to_the_schema_or_the_sql_functions_is_a_new_release() -> None:
    version, commit = previous_release()
    try:
        changed = subprocess.run(
            ["git", "-C", str(ROOT), "diff", "--quiet", commit, "--",
             "sql/migrations", "sql/functions"],
            capture_output=True, check=False,
        ).returncode  # fmt: skip
    except FileNotFoundError:
        pytest.fail("git is needed to compare with the previous release", pytrace=False)
    assert changed in (0, 1), f"git diff failed: is {commit} in this clone's history?"
    if changed:
        assert parse_release(__version__) > parse_release(version), (
            "sql/migrations or sql/functions changed since the previous release: bump the "
            "release (pyproject.toml, vidretry/version.py)"
        )
