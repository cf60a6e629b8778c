"""Acceptance tests run the real ``vidretry`` command line as a subprocess."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class BuiltWheel:
    """This checkout's wheel (None if the build failed), and what the build printed."""

    path: Path | None
    returncode: int
    output: str


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory: pytest.TempPathFactory) -> BuiltWheel:
    """This checkout's wheel, built once per run, offline: the build backend is this
    environment's (no build isolation, no index). Under xdist the first worker to need it
    builds it, under a lock in the run's directory, and the others find it there."""
    base = tmp_path_factory.getbasetemp()
    run = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    directory, record = run / "wheel", run / "wheel" / "build.json"
    with (run / "wheel.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not record.exists():
            directory.mkdir(exist_ok=True)
            build = subprocess.run(
                [sys.executable, "-m", "pip", "wheel", str(TESTS.parent), "--no-deps",
                 "--no-build-isolation", "--no-index", "-w", str(directory)],
                capture_output=True, text=True, timeout=600, check=False,
            )  # fmt: skip
            record.write_text(json.dumps([build.returncode, build.stdout + build.stderr]))
    returncode, output = json.loads(record.read_text())
    return BuiltWheel(next(directory.glob("vidretry-*.whl"), None), returncode, output)


class Cli:
    def __init__(self, config: Path, env: dict[str, str]) -> None:
        self.config = config
        self.env = env

    @classmethod
    def for_config(cls, config: Path) -> Cli:
        """A ``vidretry`` that reads ``config`` alone (no VIDRETRY_CONFIG, no database URL
        from the environment) and imports the tests' handlers."""
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent)]),
            "VIDRETRY_DATABASE_URL": "",
        }
        env.pop("VIDRETRY_CONFIG", None)
        return cls(config, env)

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "vidretry", "--config", str(self.config), *args]

    def __call__(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args),
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            check=False,
            cwd=self.config.parent,  # relative paths ([worker] output_dir) land in the test's dir
        )

    def json(self, *args: str) -> Any:
        result = self(*args, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
            cwd=self.config.parent,
        )


@pytest.fixture
def make_cli(db_url: str, tmp_path: Path) -> Callable[[str], Cli]:
    """A ``vidretry`` bound to this test's database and a config holding ``worker_toml``."""

    def make(worker_toml: str) -> Cli:
        config = tmp_path / "vidretry.toml"
        config.write_text(f'[database]\nurl = "{db_url}"\n\n[worker]\n{worker_toml}\n')
        return Cli.for_config(config)

    return make
