"""``vidretry notifier`` as a subprocess: the console transport, and failures to start."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tests.telegram.double import BOT_TOKEN

OFFLINE = Path(__file__).parent / "offline"
TESTS = Path(__file__).resolve().parents[1]


def run(
    db_url: str, tmp_path: Path, config: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "vidretry.toml"
    path.write_text(f'[database]\nurl = "{db_url}"\n{config}\n')
    return subprocess.run(
        [sys.executable, "-m", "vidretry", "--config", str(path), "notifier", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
        env={
            **os.environ,
            # sitecustomize in OFFLINE refuses every non-loopback connection in the child.
            "PYTHONPATH": os.pathsep.join([str(OFFLINE), str(TESTS.parent)]),
            "VIDRETRY_DATABASE_URL": "",
            **(env or {}),
        },
    )


def test_console_transport_with_mark_sent_prints_and_marks_sent(
    db_url: str, tmp_path: Path
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO video_assets (name) VALUES ('<b>Маша</b>')")
        conn.execute(
            "INSERT INTO notifications (asset_id, user_id, chat_id, kind, generation, payload)"
            " SELECT id, 7, 7, 'failed', 0, jsonb_build_object('name', name) FROM video_assets"
        )
    result = run(db_url, tmp_path, "", "--transport", "console", "--mark-sent", "--drain")
    assert result.returncode == 0, result.stderr
    assert "→ user 7 (chat 7):" in result.stdout
    assert "&lt;b&gt;Маша&lt;/b&gt;" in result.stdout
    assert "[ 🔄 Попробовать еще раз ]  callback_data=retry_video:" in result.stdout
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT state FROM notifications").fetchone() == ("sent",)


def test_missing_settings_are_a_config_error(db_url: str, tmp_path: Path) -> None:
    result = run(db_url, tmp_path, "[telegram]\napi_id = 1\n")
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "vidretry: error: [telegram] api_hash is not set (or VIDRETRY_TELEGRAM_API_HASH)"
    )


def test_a_plugin_that_cannot_be_imported_is_a_config_error(db_url: str, tmp_path: Path) -> None:
    result = run(
        db_url,
        tmp_path,
        '[telegram]\napi_id = 1\napi_hash = "abc"\nplugins = ["no_such.plugin"]\n',
        env={"VIDRETRY_TELEGRAM_BOT_TOKEN": BOT_TOKEN},
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        "vidretry: error: [telegram] plugins[0]: cannot import 'no_such.plugin': "
        "ModuleNotFoundError: No module named 'no_such'"
    )


def test_a_malformed_token_is_refused_without_being_shown(db_url: str, tmp_path: Path) -> None:
    token = "not-a-token-hunter2"
    result = run(
        db_url,
        tmp_path,
        '[telegram]\napi_id = 1\napi_hash = "abc"\n',
        env={"VIDRETRY_TELEGRAM_BOT_TOKEN": token},
    )
    assert result.returncode == 2
    assert "bot_token is malformed" in result.stderr
    assert "hunter2" not in result.stdout + result.stderr


@pytest.mark.slow  # 10-20 s of subprocesses or waiting: not for the edit loop
def test_unreachable_telegram_is_ridden_out_until_sigterm(db_url: str, tmp_path: Path) -> None:
    # The real network layer: the child's sitecustomize refuses every non-loopback address,
    # so Telegram is unreachable. The notifier keeps trying, one line per try, and a SIGTERM
    # still stops it cleanly.
    path = tmp_path / "vidretry.toml"
    path.write_text(
        f'[database]\nurl = "{db_url}"\n'
        f'[telegram]\napi_id = 1\napi_hash = "abc"\nsession = "{tmp_path / "bot.session"}"\n'
    )
    argv = [sys.executable, "-m", "vidretry", "--config", str(path), "notifier"]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(OFFLINE), str(TESTS.parent)]),
        "VIDRETRY_TELEGRAM_BOT_TOKEN": BOT_TOKEN,
    }
    log = tmp_path / "stderr.log"
    with log.open("w") as err, subprocess.Popen(argv, stderr=err, env=env, cwd=tmp_path) as proc:
        deadline = time.monotonic() + 30
        while log.read_text().count("trying again in") < 3 and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    stderr = log.read_text()
    assert proc.returncode == 0, stderr
    tries = [line for line in stderr.splitlines() if "trying again in" in line]
    assert len(tries) >= 3
    assert "Telegram unreachable: " in tries[0]
    assert "(try 1)" in tries[0]
    assert "(try 3)" in tries[2]
    assert "Traceback" not in stderr
    assert BOT_TOKEN.split(":")[1] not in stderr


def test_a_refused_token_exits_4_with_one_line(db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "vidretry.toml"
    path.write_text(
        f'[database]\nurl = "{db_url}"\n'
        f'[telegram]\napi_id = 1\napi_hash = "abc"\nsession = "{tmp_path / "bot.session"}"\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "tests.telegram.bot_process", "--config", str(path), "notifier"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=TESTS.parent,
        env={
            **os.environ,
            "VIDRETRY_TELEGRAM_BOT_TOKEN": BOT_TOKEN,
            "VIDRETRY_TEST_VALID_TOKEN": "1:another-token-entirely-xxxxxxxxxxxx",
        },
    )
    assert result.returncode == 4, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last == "vidretry: error: Telegram refused the bot token (ACCESS_TOKEN_INVALID)"
    assert "Traceback" not in result.stderr
    assert BOT_TOKEN.split(":")[1] not in result.stdout + result.stderr


def test_sigterm_stops_a_running_notifier_with_exit_0(db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "vidretry.toml"
    path.write_text(f'[database]\nurl = "{db_url}"\n')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(OFFLINE), str(TESTS.parent)])}
    argv = [
        sys.executable,
        "-m",
        "vidretry",
        "--config",
        str(path),
        "notifier",
        "--transport",
        "console",
        "--mark-sent",
    ]
    log = tmp_path / "notifier.log"
    with log.open("w") as err:
        proc = subprocess.Popen(argv, stderr=err, stdout=subprocess.DEVNULL, env=env)
    try:
        # Up and listening: its LISTEN, in this test's own database (the server is shared
        # by the tests of this xdist worker, one after the other).
        deadline = time.monotonic() + 60
        with psycopg.connect(db_url, autocommit=True) as conn:
            while time.monotonic() < deadline:
                assert proc.poll() is None, log.read_text()
                listening = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND query LIKE 'LISTEN%vidretry_outbox%'"
                ).fetchone()
                if listening and listening[0]:
                    break
                time.sleep(0.05)
            else:
                raise AssertionError("the notifier never started listening:\n" + log.read_text())
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = log.read_text()
    assert proc.returncode == 0, stderr
    assert "stopped" in stderr


def test_the_session_file_is_kept_to_its_owner(db_url: str, tmp_path: Path) -> None:
    session = tmp_path / "bot.session"
    path = tmp_path / "vidretry.toml"
    path.write_text(
        f'[database]\nurl = "{db_url}"\n'
        f'[telegram]\napi_id = 1\napi_hash = "abc"\nsession = "{session}"\n'
    )
    argv = [sys.executable, "-m", "tests.telegram.bot_process", "--config", str(path)]
    env = {**os.environ, "VIDRETRY_TELEGRAM_BOT_TOKEN": BOT_TOKEN}

    def notifier() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*argv, "notifier", "--drain"], capture_output=True, text=True, timeout=60,
            check=False, cwd=TESTS.parent, env=env,
        )  # fmt: skip

    old = os.umask(0o022)  # the usual umask, which made it 0644 before
    try:
        first = notifier()
    finally:
        os.umask(old)
    assert first.returncode == 0, first.stderr
    assert stat.S_IMODE(session.stat().st_mode) == 0o600  # created so, and logged in
    assert session.stat().st_size > 0
    session.chmod(0o644)
    doctor = subprocess.run(
        [sys.executable, "-m", "vidretry", "--config", str(path), "doctor"],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip
    assert f"{session} holds the bot's login and other users can read it" in doctor.stdout
    second = notifier()
    assert second.returncode == 0, second.stderr
    assert f"{session} (the bot's login) was readable by other users: now mode 600" in (
        second.stderr
    )
    assert stat.S_IMODE(session.stat().st_mode) == 0o600
