"""What an operator meets after the demo: paths, database errors, the console preview, doctor."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from tests.acceptance.conftest import TESTS, Cli
from vidretry.db.embedded import EmbeddedServer


def vidretry(config: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDRETRY_")}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(TESTS.parent)])
    return subprocess.run(
        [sys.executable, "-m", "vidretry", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
        cwd=cwd,
    )


def test_relative_paths_live_beside_the_config_whatever_the_working_directory(
    db_url: str, tmp_path: Path
) -> None:
    # Under systemd (no WorkingDirectory) the working directory is /: a relative output_dir
    # must not land there.
    etc = tmp_path / "etc"
    etc.mkdir()
    config = etc / "vidretry.toml"
    config.write_text(
        f'[database]\nurl = "{db_url}"\n\n[worker]\noutput_dir = "videos"\n'
        'command = ["sh", "-c", "echo video > {output}"]\nbackoff_base_seconds = 0\n'
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert vidretry(config, "enqueue", "Маша", "--user", "1", cwd=elsewhere).returncode == 0
    drained = vidretry(config, "worker", "--drain", cwd=elsewhere)
    assert drained.returncode == 0, drained.stderr
    with psycopg.connect(db_url) as conn:
        (result,) = conn.execute("SELECT result FROM video_assets").fetchone()  # type: ignore[misc]
    assert result == (etc / "videos" / "1-g0.mp4").as_uri()  # an absolute file:// URI
    assert (etc / "videos" / "1-g0.mp4").read_text() == "video\n"
    assert list(elsewhere.iterdir()) == []


def test_any_database_error_is_one_line_without_a_traceback_or_the_password(
    db_url: str, tmp_path: Path
) -> None:
    # A role that may connect but not create anything: `db upgrade` is refused by PostgreSQL.
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS weak_db")
        conn.execute("DROP ROLE IF EXISTS weak")
        conn.execute("CREATE ROLE weak LOGIN PASSWORD 'hunter2'")
        conn.execute("CREATE DATABASE weak_db")
    weak_url = db_url.replace("vidretry@", "weak:hunter2@").replace("/tests?", "/weak_db?")
    config = tmp_path / "vidretry.toml"
    config.write_text(f'[database]\nurl = "{weak_url}"\n')
    result = vidretry(config, "db", "upgrade", cwd=tmp_path)
    assert result.returncode == 3
    assert result.stderr.strip() == (
        "vidretry: error: database error: permission denied for schema public"
    )
    assert "hunter2" not in result.stdout + result.stderr


def test_the_console_transport_is_a_preview_unless_told_to_mark_sent(
    make_cli: Callable[[str], Cli], db_url: str
) -> None:
    cli = make_cli("")
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO video_assets (name) VALUES ('Маша')")
        conn.execute(
            "INSERT INTO notifications (asset_id, user_id, chat_id, kind, generation, payload)"
            " SELECT id, 7, 7, 'failed', 0, jsonb_build_object('name', name) FROM video_assets"
        )
    preview = cli("notifier", "--transport", "console")
    assert preview.returncode == 0, preview.stderr
    assert "→ user 7 (chat 7):" in preview.stdout
    assert "1 notification(s) due; nothing was marked sent (--mark-sent sends them)" in (
        preview.stderr
    )
    with psycopg.connect(db_url) as conn:
        state = conn.execute("SELECT state, attempts FROM notifications").fetchone()
    assert state == ("pending", 0)


@pytest.mark.slow
def test_doctor_reports_a_missing_embedded_database_and_creates_nothing(tmp_path: Path) -> None:
    embedded = tmp_path / "pg"
    config = tmp_path / "vidretry.toml"
    config.write_text(f'[database]\nembedded_dir = "{embedded}"\n')
    result = vidretry(config, "doctor", cwd=tmp_path)
    assert result.returncode == 1
    assert f"embedded PostgreSQL in {embedded} does not exist yet" in result.stdout
    assert not embedded.exists()


@pytest.mark.slow
def test_a_worker_on_the_embedded_database_says_so_once(tmp_path: Path) -> None:
    base = Path(tempfile.mkdtemp(prefix="vidretry-embedded-test-"))
    base.chmod(0o755)  # as root the server runs as another user, who must reach its directory
    try:
        config = tmp_path / "vidretry.toml"
        config.write_text(
            f'[database]\nembedded_dir = "{base / "pg"}"\n[worker]\ncommand = ["true"]\n'
        )
        upgraded = vidretry(config, "db", "upgrade", cwd=tmp_path)
        assert upgraded.returncode == 0, upgraded.stderr
        assert "embedded PostgreSQL" not in upgraded.stderr  # only the daemons say it
        result = vidretry(config, "worker", "--drain", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        notes = [line for line in result.stderr.splitlines() if "embedded PostgreSQL" in line]
        assert len(notes) == 1
        assert f"using the embedded PostgreSQL in {base / 'pg'}: workers and notifiers on " \
               "several machines need one shared [database] url" in notes[0]  # fmt: skip
    finally:
        EmbeddedServer(base / "pg").stop()
        subprocess.run(["rm", "-rf", str(base)], check=False)


def test_db_prune_dry_run_counts_and_changes_nothing(
    make_cli: Callable[[str], Cli], db_url: str
) -> None:
    cli = make_cli("")
    assert cli("enqueue", "Маша", "--user", "1").returncode == 0
    with psycopg.connect(db_url, autocommit=True) as conn:  # as if asked 40 days ago
        conn.execute("ALTER TABLE job_events DISABLE TRIGGER job_events_append_only")
        conn.execute("UPDATE job_events SET created_at = now() - interval '40 days'")
        conn.execute("ALTER TABLE job_events ENABLE TRIGGER job_events_append_only")
    dry = cli("db", "prune", "--older-than", "30d", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("would delete 1 history event(s), 0 notification(s), 0 asset(s)")
    pruned = cli("db", "prune", "--older-than", "30d")
    assert pruned.returncode == 0, pruned.stderr
    assert pruned.stdout.strip() == "deleted 1 history event(s), 0 notification(s), 0 asset(s)"
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM job_events").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM video_assets").fetchone() == (1,)
    bad = cli("db", "prune", "--older-than", "a month")
    assert bad.returncode == 2
    assert bad.stderr.strip() == (
        "vidretry: error: --older-than must look like 30d, 12h, 90m or 3600s, got 'a month'"
    )
