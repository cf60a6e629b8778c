"""Fault tests run the real ``vidretry`` processes against faults made on this machine: a
dead link (tests.faults.proxy), a full disk, a crashing send, a failover."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.acceptance.conftest import Cli


@pytest.fixture
def cli_for(tmp_path: Path) -> Callable[[str, str], Cli]:
    """``cli_for(name, toml)``: a ``vidretry`` whose config file ``name``.toml holds ``toml``."""

    def make(name: str, toml: str) -> Cli:
        config = tmp_path / f"{name}.toml"
        config.write_text(toml)
        return Cli.for_config(config)

    return make


_LOGS: dict[int, Path] = {}  # pid -> the file a process started by ``spawn`` logs to


def spawn(argv: list[str], *, env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[str]:
    """Start a daemon whose stderr goes to ``log``: a pipe nobody reads until the end would
    fill up and block a talkative process mid-run."""
    with log.open("a") as out:
        process = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=out, text=True
        )
    _LOGS[process.pid] = log
    return process


def stop(process: subprocess.Popen[str], timeout: float = 60) -> str:
    """SIGTERM ``process``, wait for it, and return what it wrote on stderr."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=timeout)
    log = _LOGS.pop(process.pid, None)
    return log.read_text() if log is not None else stderr


def wait_for(check: Callable[[], object], *, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within:g}s: {what}")
        time.sleep(0.1)
