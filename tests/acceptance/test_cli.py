"""The CLI as an operator uses it: the README's scenario, crashes, signals and bad input."""

from __future__ import annotations

import random
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.acceptance.conftest import Cli
from vidretry import __version__

FAILING = 'handler = "command"\ncommand = ["sh", "-c", "exit 3"]\nbackoff_base_seconds = 0'


def test_two_users_fail_three_times_then_retry(make_cli: Callable[[str], Cli], db_url: str) -> None:
    cli = make_cli(FAILING)
    first = cli.json("enqueue", "Маша", "--user", "111")
    second = cli.json("enqueue", "Маша", "--user", "222", "--chat", "-1001")
    assert first["asset_id"] == second["asset_id"]
    assert first["state"] == "pending"
    asset = str(first["asset_id"])

    worker = cli("worker", "--drain")
    assert worker.returncode == 0, worker.stderr

    shown = cli.json("show", asset)
    assert (shown["state"], shown["attempts"], shown["max_attempts"]) == ("failed", 3, 3)
    # The retry round, under its old name "generation" too for one release (0.20.0).
    assert (shown["retry_round"], shown["generation"]) == (0, 0)
    assert {(e["retry_round"], e["generation"]) for e in shown["events"]} == {(0, 0)}
    assert {(n["retry_round"], n["generation"]) for n in shown["notifications"]} == {(0, 0)}
    assert shown["last_error"] == "exit status 3"
    assert {(r["user_id"], r["state"]) for r in shown["requests"]} == {
        (111, "failed"),
        (222, "failed"),
    }
    assert sorted((n["user_id"], n["kind"], n["state"]) for n in shown["notifications"]) == [
        (111, "failed", "pending"),
        (222, "failed", "pending"),
    ]
    assert [e["kind"] for e in shown["events"]][-1] == "failed"
    assert [e["kind"] for e in shown["events"]].count("claimed") == 3

    # Asking again for a user is a retry within their daily quota (none left here): the
    # asset's id, exit 1 saying why, and the asset stays failed.
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE queue_policy SET max_retries_per_user_per_day = 0")
    asked = cli("enqueue", "Маша", "--user", "111")
    assert (asked.returncode, asked.stdout.strip()) == (1, asset)
    assert asked.stderr.strip() == (
        f"vidretry: error: asset {asset} stays failed: user 111 has no retries left today "
        "(the admins are told)"
    )
    assert cli.json("show", asset)["state"] == "failed"

    retried = cli("retry", asset, "--reason", "new GPU")
    assert retried.returncode == 0, retried.stderr
    shown = cli.json("show", asset)
    assert (shown["state"], shown["attempts"], shown["retry_round"]) == ("pending", 0, 1)
    assert shown["generation"] == 1
    assert [(a["retry_round"], a["generation"]) for a in cli.json("list")] == [(1, 1)]
    assert shown["events"][-1]["kind"] == "retried"
    assert shown["events"][-1]["detail"] == "new GPU"

    again = cli("retry", asset)
    assert again.returncode == 1
    assert (
        again.stderr.strip()
        == f"vidretry: error: asset {asset} is not failed (pending): nothing to retry"
    )


def test_an_operator_cancels_an_asset_and_its_waiters_are_told(
    make_cli: Callable[[str], Cli],
) -> None:
    cli = make_cli(FAILING)
    asset = str(cli.json("enqueue", "Маша", "--user", "111")["asset_id"])
    cli.json("enqueue", "Маша", "--user", "222")
    done = cli("cancel", asset, "--reason", "wrong name")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"asset {asset} cancelled; 2 waiting user(s) told"
    shown = cli.json("show", asset)
    assert shown["state"] == "cancelled"
    assert {r["state"] for r in shown["requests"]} == {"cancelled"}
    assert sorted((n["user_id"], n["kind"]) for n in shown["notifications"]) == [
        (111, "cancelled"),
        (222, "cancelled"),
    ]
    assert shown["events"][-1]["kind"] == "cancelled"
    assert shown["events"][-1]["detail"] == "wrong name"
    assert shown["events"][-1]["actor"].startswith("operator:")
    again = cli("cancel", asset)
    assert again.returncode == 1
    assert again.stderr.strip() == (
        f"vidretry: error: asset {asset} is cancelled: nothing to cancel"
    )
    # Nothing is claimed; asking again makes it afresh.
    assert cli("worker", "--drain").returncode == 0
    assert cli.json("show", asset)["state"] == "cancelled"
    assert cli.json("enqueue", "Маша", "--user", "111")["state"] == "pending"
    assert cli.json("show", asset)["retry_round"] == 1


@pytest.mark.slow  # 10-20 s of subprocesses or waiting: not for the edit loop
def test_status_list_and_retry_all(make_cli: Callable[[str], Cli]) -> None:
    cli = make_cli(FAILING)
    for name in ("a", "b", "c"):
        assert cli("enqueue", name, "--user", "1").returncode == 0
    assert cli("worker", "--drain").returncode == 0
    status = cli.json("status")
    assert status["counts"] == {
        "pending": 0,
        "running": 0,
        "available": 0,
        "failed": 3,
        "cancelled": 0,
    }
    assert status["failed_last_hour"] == 3
    assert status["outbox_backlog"] == 3
    assert [a["name"] for a in cli.json("list", "--state", "failed")] == ["a", "b", "c"]
    every = cli.json("retry", "--all-failed")
    assert every == {"failed": 3, "retried": 3}
    assert cli.json("status")["counts"]["pending"] == 3
    plain = cli("status")
    assert plain.returncode == 0
    assert "pending" in plain.stdout


def test_status_names_the_start_quota_s_window_as_configured(
    make_cli: Callable[[str], Cli],
) -> None:
    """`[worker] starts_window_seconds` is the window status counts the starts in: a minute
    by default, and said as configured otherwise (an API's quota of N calls per 90 s)."""
    default = make_cli("max_starts_per_minute = 10")
    assert "quota: 0 of 10 starts in the last minute" in default("status").stdout
    other = make_cli("max_starts_per_minute = 10\nstarts_window_seconds = 90")
    assert "quota: 0 of 10 starts in the last 90 seconds" in other("status").stdout
    assert other.json("status")["quota"]["starts_window_seconds"] == 90


@pytest.mark.slow
def test_sigkilled_worker_loses_nothing(make_cli: Callable[[str], Cli], db_url: str) -> None:
    cli = make_cli(
        'handler = "python:sample_handlers:hang_on_first_attempt"\n'
        "lease_seconds = 2\nheartbeat_seconds = 0.5\npoll_interval_seconds = 0.2"
    )
    asset = str(cli.json("enqueue", "crashy", "--user", "1")["asset_id"])
    with cli.spawn("worker") as doomed:
        wait_for(db_url, "SELECT state = 'running' FROM video_assets")
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(10)
    killed_at = time.monotonic()

    with cli.spawn("worker") as survivor:
        try:
            wait_for(db_url, "SELECT state = 'available' FROM video_assets", timeout=20)
            recovered_in = time.monotonic() - killed_at
        finally:
            survivor.send_signal(signal.SIGTERM)
            assert survivor.wait(20) == 0
    shown = cli.json("show", asset)
    assert shown["attempts"] == 2  # the crash counted
    kinds = [e["kind"] for e in shown["events"]]
    assert kinds == ["enqueued", "claimed", "rescued", "claimed", "succeeded"]
    assert recovered_in < 2 + 5  # about one lease period, plus process start-up


@pytest.mark.slow
def test_sigterm_lets_the_worker_release_and_exit_zero(
    make_cli: Callable[[str], Cli], db_url: str
) -> None:
    cli = make_cli('handler = "python:sample_handlers:hang"\nshutdown_grace_seconds = 0.5')
    asset = str(cli.json("enqueue", "slow", "--user", "1")["asset_id"])
    with cli.spawn("worker") as worker:
        wait_for(db_url, "SELECT state = 'running' FROM video_assets")
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=20)
    assert worker.returncode == 0, stderr
    assert "released back to the queue" in stderr
    shown = cli.json("show", asset)
    assert (shown["state"], shown["attempts"]) == ("pending", 0)
    assert shown["events"][-1]["kind"] == "released"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ("show", "abc"),
            2,
            "asset id must be a positive integer (at most 9223372036854775807), got 'abc'",
        ),
        (("show", "0"), 2, "asset id must be a positive integer"),
        (("show", "-5"), 2, "No such option: -5"),
        (("retry", "-5"), 2, "No such option: -5"),
        (("show", "99999999999999999999999"), 2, "at most 9223372036854775807"),
        (("show", "١٢"), 2, "asset id must be a positive integer"),  # Arabic-Indic digits
        (("cancel", "abc"), 2, "got 'abc'"),
        (("cancel", "424242"), 1, "asset 424242 not found"),
        (("cancel",), 2, "Missing argument 'asset'"),
        (("retry", "424242"), 1, "asset 424242 not found"),
        (("retry",), 2, "give an asset id or --all-failed"),
        (("retry", "1", "--all-failed"), 2, "give an asset id or --all-failed"),
        (("enqueue", "x", "--user", "abc"), 2, "--user"),
        (("enqueue", "x", "--user", "1", "--param", "novalue"), 2, "KEY=VALUE"),
        (("enqueue", "x" * 2001, "--user", "1"), 2, "1 to 2000 bytes of UTF-8"),
        (("enqueue", "🎬" * 501, "--user", "1"), 2, "(2004 bytes)"),
        # One name rule for the CLI and the bot (tests/telegram/test_front_door.py).
        (("enqueue", "   ", "--user", "1"), 2, "asset name must be 1 to 2000 bytes"),
        (("enqueue", "a\tb", "--user", "1"), 2, "no control characters, got 'a\\tb'"),
        (("enqueue", "x", "--user", "99999999999999999999999"), 2, "user id must be a positive"),
        (("enqueue", "x", "--user", "-5"), 2, "a group's chat id goes in --chat"),
        (("enqueue", "x", "--user", "0"), 2, "user id must be a positive Telegram user id"),
        (("enqueue", "x", "--user", "1", "--chat", "0"), 2, "chat id must be a Telegram chat id"),
        (("enqueue", "x", "--user", "1", "--chat", str(-(2**63))), 2, "chat id must be"),
        (("list", "--state", "done"), 2, "--state"),
        (("db", "prune", "--older-than", "0d"), 2, "--older-than must be more than 0, got '0d'"),
        (("db", "prune", "--older-than", "30x"), 2, "must look like 30d, 12h, 90m or 3600s"),
        (("frobnicate",), 2, "No such command"),
    ],
)
def test_bad_input_is_one_line_and_an_exit_code(
    make_cli: Callable[[str], Cli], args: tuple[str, ...], code: int, message: str
) -> None:
    result = make_cli(FAILING)(*args)
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_injection_strings_are_just_names(make_cli: Callable[[str], Cli]) -> None:
    cli = make_cli(FAILING)
    name = "x'); DROP TABLE video_assets; -- <b>Маша</b> 🎬"
    created = cli.json("enqueue", name, "--user", "1", "--param", "k='; DELETE FROM jobs")
    assert cli.json("show", str(created["asset_id"]))["name"] == name


def test_a_name_means_the_same_asset_however_it_is_spaced(make_cli: Callable[[str], Cli]) -> None:
    cli = make_cli(FAILING)
    first = cli.json("enqueue", "  Маша ", "--user", "1")
    second = cli.json("enqueue", "Маша", "--user", "2")
    assert first["asset_id"] == second["asset_id"]
    assert cli.json("show", str(first["asset_id"]))["name"] == "Маша"
    group = cli.json("enqueue", "Маша", "--user", "3", "--chat", "-1001234567890")
    assert group["asset_id"] == first["asset_id"]


def test_a_drain_under_any_pause_says_so_and_exits_1_at_once(
    make_cli: Callable[[str], Cli], db_url: str
) -> None:
    cli = make_cli(FAILING)
    for name in ("a", "b", "c"):
        cli.json("enqueue", name, "--user", "1")
    assert cli("pause", "--reason", "maintenance").returncode == 0
    started = time.monotonic()
    drained = cli("worker", "--drain", timeout=60)
    assert drained.returncode == 1, drained.stderr
    assert "queue paused (by operator:" in drained.stderr
    assert "3 job(s) wait" in drained.stderr
    assert "drained" not in drained.stderr
    assert cli("resume").returncode == 0
    # The circuit breaker's pause: probes would come, but nothing runs before one does.
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO queue_pauses (reason, detail, paused_by, paused_at, next_probe_at,"
            " probe_interval_seconds) VALUES ('breaker', 'boom', 'worker:w1', now(),"
            " now() + interval '1 hour', 3600)"
        )
    drained = cli("worker", "--drain", timeout=60)
    assert drained.returncode == 1, drained.stderr
    assert "queue paused (by the circuit breaker): 3 job(s) wait" in drained.stderr
    assert time.monotonic() - started < 50  # at once, not after probes
    with psycopg.connect(db_url, autocommit=True) as conn:
        claimed = conn.execute("SELECT count(*) FROM job_events WHERE kind = 'claimed'")
        assert claimed.fetchone() == (0,)


def test_db_commands_for_the_embedded_server_say_when_the_database_is_elsewhere(
    make_cli: Callable[[str], Cli], db_url: str
) -> None:
    cli = make_cli(FAILING)
    cli.env["VIDRETRY_DATABASE_URL"] = db_url.replace("?", "?password=hunter2&")
    for command in ("up", "down", "status"):
        result = cli("db", command)
        assert result.returncode == 1, result.stderr
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(f"vidretry: error: `db {command}` manages the embedded PostgreSQL")
        assert "VIDRETRY_DATABASE_URL" in line
        assert db_url.split("?")[0] in line
        assert "hunter2" not in line
        assert result.stdout == ""
    # `db url` is for psql: it prints the database in use, the configured one as it is.
    url = cli("db", "url")
    assert url.returncode == 0, url.stderr
    assert url.stdout.strip() == cli.env["VIDRETRY_DATABASE_URL"]


def test_in_80_columns_nothing_that_tells_rows_apart_is_cut(
    make_cli: Callable[[str], Cli], db_url: str
) -> None:
    cli = make_cli(FAILING)
    cli.env["COLUMNS"] = "80"
    asset = str(cli.json("enqueue", "Маша", "--user", "111")["asset_id"])
    cli.json("enqueue", "Маша", "--user", "222")
    assert cli("worker", "--drain").returncode == 0
    shown = cli("show", asset)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in shown.stdout
    for whole in ("telegram:111", "telegram:222", "attempt_failed", "pending"):
        assert any(whole in line for line in lines), whole
    # Sentences are left for the terminal to wrap: one line each, dates whole.
    dry = cli("db", "prune", "--older-than", "30d", "--dry-run")
    (line,) = dry.stdout.splitlines()
    assert line.startswith("would delete 0 history event(s), 0 notification(s), 0 asset(s)")
    assert re.search(r"older than \d{4}-\d\d-\d\d \d\d:\d\d\)$", line)
    reason = "render farm maintenance until the new GPUs are racked in the second hall"
    assert cli("pause", "--reason", reason).returncode == 0
    status = cli("status").stdout
    assert any(line.startswith("queue: PAUSED by operator:") for line in status.splitlines())
    assert f"why: {reason}" in status.splitlines()
    # The dashboard's running jobs keep their worker's whole name.
    owner = "render-farm-07:123456"  # the default worker name is host:pid
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO video_assets (name, state, attempts, lease_owner, lease_token,"
            " lease_expires_at) VALUES ('long-running', 'running', 1, %s,"
            " gen_random_uuid(), now() + interval '1 minute')",
            (owner,),
        )
    status = cli("status").stdout
    assert max(len(line) for line in status.splitlines()) <= 80
    assert "…" not in status
    assert any(owner in line for line in status.splitlines())


def test_config_errors(make_cli: Callable[[str], Cli]) -> None:
    cli = make_cli("concurency = 3")
    result = cli("status")
    assert result.returncode == 2
    assert result.stderr.strip() == "vidretry: error: unknown config key [worker] concurency"
    broken = make_cli("concurrency = ")
    assert broken("status").returncode == 2
    assert "not valid TOML" in broken("status").stderr


def test_unreachable_database_is_exit_3_without_the_password(
    make_cli: Callable[[str], Cli],
) -> None:
    cli = make_cli(FAILING)
    cli.env["VIDRETRY_DATABASE_URL"] = "postgresql://vidretry:hunter2@127.0.0.1:1/vidretry"
    for args in (
        ("status",),
        ("worker", "--drain"),
        ("retry", "1"),
        ("enqueue", "a", "--user", "1"),
    ):
        result = cli(*args)
        assert result.returncode == 3, (args, result.stderr)
        assert result.stderr.startswith("vidretry: error: database unreachable at ")
        assert "hunter2" not in result.stderr
        assert "Traceback" not in result.stderr


def test_db_upgrade_is_idempotent(make_cli: Callable[[str], Cli]) -> None:
    cli = make_cli(FAILING)
    result = cli("db", "upgrade")
    assert result.returncode == 0
    assert "already at version" in result.stdout
    # The release, without a database.
    version = cli("--version")
    assert (version.returncode, version.stdout) == (0, f"{__version__}\n")


def wait_for(db_url: str, query: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    with psycopg.connect(db_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(query).fetchone()  # type: ignore[arg-type]
            if row and row[0]:
                return
            time.sleep(0.05)
    raise AssertionError(f"timed out waiting for: {query}")


def test_doctor_checks_without_printing_secrets(
    make_cli: Callable[[str], Cli], tmp_path: Path
) -> None:
    cli = make_cli('handler = "command"\ncommand = ["no-such-renderer", "{output}"]')
    cli.config.write_text(
        cli.config.read_text()
        + '\n[telegram]\nbot_token = "12345:abcdefghijklmnopqrstuvwxyz-SECRET"\n'
    )
    cli.config.chmod(0o644)
    result = cli("doctor")
    assert result.returncode == 1  # the handler is missing
    lines = result.stdout.splitlines()
    assert any(line.startswith("✓ database") for line in lines)
    assert any(line.startswith("✓ schema") and "version" in line for line in lines)
    assert any(
        line.startswith("✗ handler") and "no-such-renderer not found" in line for line in lines
    )
    assert any(line.startswith("! config") and "chmod 600" in line for line in lines)
    assert any(line.startswith("! telegram") for line in lines)
    assert "SECRET" not in result.stdout + result.stderr
    cli.config.chmod(0o600)
    assert not any(line.startswith("! config") for line in cli("doctor").stdout.splitlines())


def test_doctor_imports_the_configured_plugins(make_cli: Callable[[str], Cli]) -> None:
    cli = make_cli(FAILING)
    base = cli.config.read_text()
    cli.config.write_text(base + '\n[telegram]\nplugins = ["no.such.module"]\n')
    result = cli("doctor")
    assert result.returncode == 1
    (line,) = [line for line in result.stdout.splitlines() if "plugins" in line]
    assert line.startswith("✗ plugins")
    assert "[telegram] plugins[0]: cannot import 'no.such.module'" in line
    cli.config.write_text(base + '\n[telegram]\nplugins = ["tests.telegram.plugins.echo_plugin"]\n')
    lines = cli("doctor").stdout.splitlines()
    assert "✓ plugins tests.telegram.plugins.echo_plugin" in [" ".join(li.split()) for li in lines]


def test_status_watch_runs_until_sigterm(make_cli: Callable[[str], Cli], db_url: str) -> None:
    cli = make_cli(FAILING)
    assert cli("enqueue", "a", "--user", "1").returncode == 0
    with cli.spawn("status", "--watch") as proc:
        # Signalled once its connection has run a few queries apart in time (the refresh
        # loop is running, its signal handlers on), not after a fixed time a loaded machine
        # may not have started it in.
        starts: set[Any] = set()
        deadline = time.monotonic() + 30
        with psycopg.connect(db_url, autocommit=True) as conn:
            while len(starts) < 4:
                assert time.monotonic() < deadline, "status --watch never refreshed"
                for (started,) in conn.execute(
                    "SELECT query_start FROM pg_stat_activity WHERE datname = current_database()"
                    " AND pid <> pg_backend_pid() AND query_start IS NOT NULL"
                ):
                    starts.add(started)
                time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    assert "queue" in stdout
    assert "pending" in stdout


def test_long_unicode_names_round_trip(make_cli: Callable[[str], Cli]) -> None:
    cli = make_cli(FAILING)
    # The longest name allowed, in letters that do not compress: it must still fit the
    # unique index on names (a 6,000-character one once failed there as a database error).
    rng = random.Random(7)
    letters = "абвгдеёжзийклмнопрстуфхцчшщэюяAZaz🎬"
    name = ""
    while len((name + (letter := rng.choice(letters))).encode()) <= 2000:
        name += letter
    created = cli.json("enqueue", name, "--user", "1")
    assert cli.json("show", str(created["asset_id"]))["name"] == name


@pytest.mark.slow  # 10-20 s of subprocesses or waiting: not for the edit loop
def test_secrets_never_appear_in_any_output(make_cli: Callable[[str], Cli], db_url: str) -> None:
    cli = make_cli(FAILING)
    # trust authentication ignores the password, but it is in the URL vidretry is given
    cli.env["VIDRETRY_DATABASE_URL"] = db_url.replace("?", "?password=hunter2&")
    cli.env["VIDRETRY_TELEGRAM_BOT_TOKEN"] = "12345:abcdefghijklmnopqrstuvwxyz-SECRET"
    asset = str(cli.json("enqueue", "a", "--user", "1")["asset_id"])
    outputs = [
        cli(*args)
        for args in (
            ("status", "--json"),
            ("status",),
            ("list", "--json"),
            ("list",),
            ("show", asset, "--json"),
            ("show", asset),
            ("show", "999"),
            ("retry", asset),
            ("doctor",),
            ("worker", "--drain"),
        )
    ]
    for result in outputs:
        assert "hunter2" not in result.stdout + result.stderr, result.args
        assert "SECRET" not in result.stdout + result.stderr, result.args
