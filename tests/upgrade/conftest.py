"""Upgrades against real old code: the previous release (the one ``pyproject.toml`` names
under ``[tool.vidretry.previous-release]``) is taken from the git history into the test's
own directory and run with this virtual environment's Python, its tree first on PYTHONPATH:
its own command line, its own worker and its own notifier (through its own Telegram
double), against the schema of this checkout (docs/upgrading.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.conftest import Cli
from tests.faults.conftest import spawn
from tests.upgrade.releases import ROOT, MissingRelease, extract, previous_release

# The generator of these tests, run by both releases' workers as their command:
#     python generator.py LOG NAME GENERATION OUTPUT SECONDS
# It logs each start and end to LOG (a video made twice shows as two ends). A name that
# starts with "fails" fails every attempt of its first generation (exit 3); the others take
# SECONDS and write a tiny video.
GENERATOR = """\
import os, sys, time
log, name, generation, output, seconds = sys.argv[1:6]
def say(what):
    with open(log, "a") as f:
        f.write(f"{what} {name} {generation} {os.getpid()} {time.time()}\\n")
say("start")
if name.startswith("fails") and generation == "0":
    sys.exit(3)
time.sleep(float(seconds))
with open(output, "wb") as f:
    f.write(b"a tiny video\\n")
say("end")
"""


@dataclass(frozen=True)
class Release:
    """A release's tree: its command line, its notifier through its own Telegram double."""

    tree: Path
    name: str

    def env(self, base: dict[str, str]) -> dict[str, str]:
        offline = self.tree / "tests" / "telegram" / "offline"
        return {**base, "PYTHONPATH": os.pathsep.join([str(offline), str(self.tree)])}

    def cli(self, config: Path) -> Cli:
        cli = Cli.for_config(config)
        return Cli(config, self.env(cli.env))

    def notifier(self, config: Path, env: dict[str, str], log: Path) -> subprocess.Popen[str]:
        argv = [sys.executable, "-m", "tests.telegram.bot_process", "--config", str(config)]
        return spawn([*argv, "notifier"], env=self.env(env), cwd=self.tree, log=log)

    def worker(self, config: Path, log: Path) -> subprocess.Popen[str]:
        cli = self.cli(config)
        return spawn(cli.argv("worker"), env=cli.env, cwd=self.tree, log=log)


@pytest.fixture(scope="module")
def previous(tmp_path_factory: pytest.TempPathFactory) -> Release:
    version, commit = previous_release()
    try:
        tree = extract(commit, tmp_path_factory.mktemp("previous-release"))
    except MissingRelease as exc:
        pytest.fail(str(exc), pytrace=False)
    return Release(tree, version)


@pytest.fixture
def current() -> Release:
    return Release(ROOT, "current")


def write_config(path: Path, db_url: str, tmp_path: Path, **worker: Any) -> Path:
    """A config both releases read: the generator above as the worker's command, no
    backoff, the Telegram settings the double accepts."""
    generator = tmp_path / "generator.py"
    generator.write_text(GENERATOR)
    command = [sys.executable, str(generator), str(tmp_path / "generator.log"),
               "{name}", "{generation}", "{output}", "{seconds}"]  # fmt: skip
    settings = {"backoff_base_seconds": 0, **worker}
    path.write_text(
        f'[database]\nurl = "{db_url}"\n'
        f"[worker]\ncommand = {json.dumps(command)}\n"
        f'output_dir = "{tmp_path / "videos"}"\n'
        + "".join(f"{key} = {json.dumps(value)}\n" for key, value in settings.items())
        + f'[telegram]\napi_id = 1\napi_hash = "abc"\nsession = "{path.with_suffix(".session")}"\n'
    )
    return path


def generator_log(tmp_path: Path) -> list[list[str]]:
    log = tmp_path / "generator.log"
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []
