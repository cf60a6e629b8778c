"""The embedded PostgreSQL: started from nothing, reused by later commands, stopped."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from vidretry.db.embedded import EmbeddedError, EmbeddedServer, find_bindir


@pytest.fixture
def embedded_dir() -> Iterator[Path]:
    # Not under pytest's tmp_path: when we are root the server runs as another user, who
    # must be able to walk down to its directory.
    base = Path(tempfile.mkdtemp(prefix="vidretry-embedded-test-"))
    base.chmod(0o755)
    yield base / "pg"
    EmbeddedServer(base / "pg").stop()
    subprocess.run(["rm", "-rf", str(base)], check=False)


def vidretry(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("VIDRETRY_DATABASE_URL", "VIDRETRY_CONFIG")
    }
    return subprocess.run(
        [sys.executable, "-m", "vidretry", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
        cwd=config.parent,
    )


@pytest.mark.slow
def test_starts_from_nothing_is_reused_and_stops(embedded_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "vidretry.toml"
    config.write_text(f'[database]\nembedded_dir = "{embedded_dir}"\n')

    assert vidretry(config, "db", "status").returncode == 1
    up = vidretry(config, "db", "up")
    assert up.returncode == 0, up.stderr
    assert (embedded_dir / "data" / "PG_VERSION").exists()
    assert vidretry(config, "db", "status").returncode == 0

    # Later commands, with no URL configured, use the same server and its data.
    created = vidretry(config, "enqueue", "Маша", "--user", "1")
    assert created.returncode == 0, created.stderr
    shown = vidretry(config, "show", created.stdout.strip(), "--json")
    assert shown.returncode == 0
    assert '"Маша"' in shown.stdout
    url = vidretry(config, "db", "url").stdout.strip()
    assert url == f"postgresql://vidretry@/vidretry?host={embedded_dir / 'data'}&port=5432"

    down = vidretry(config, "db", "down")
    assert down.returncode == 0
    assert "stopped" in down.stdout
    assert vidretry(config, "db", "status").returncode == 1

    # A command that needs the database starts it again, with the data kept.
    again = vidretry(config, "list", "--json")
    assert again.returncode == 0, again.stderr
    assert "Маша" in again.stdout


def test_no_postgresql_is_one_line_naming_the_install(tmp_path: Path) -> None:
    with pytest.raises(
        EmbeddedError, match=r"not found: install it with `apt-get install postgresql`"
    ):
        find_bindir(search_path=str(tmp_path), usual_paths=())


@pytest.mark.slow
def test_demo_fast_reaches_every_expected_state(embedded_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "vidretry.toml"
    config.write_text(f'[database]\nembedded_dir = "{embedded_dir}"\n')
    result = vidretry(config, "demo", "--fast")
    assert result.returncode == 0, result.stderr
    assert "Every asset reached its expected state." in result.stdout
    assert "Запустили заново!" in result.stdout  # the button was pressed and answered
    assert re.search(r"Done: [1-9]\d* progress edits, one cancel", result.stdout)
    assert re.search(r"Вася\s+│ cancelled", result.stdout)
    assert "What a real deployment configures" in result.stdout
    assert not (tmp_path / "output").exists()  # the demo's files stay in its own temp dir
