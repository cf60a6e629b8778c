"""Nothing the suite starts outlives it.

Every process the suite starts is marked in its environment, which its own children inherit
whatever they do (a worker's generators, a server's backends, a daemon that left its
process group): ``VIDRETRY_TEST_RUN`` names the run, and ``VIDRETRY_TEST_ID`` the test that
was running when it started. After each test, whatever that test started and left running
is stopped (its process group too: SIGTERM, then SIGKILL) and the test fails, naming it; at
the end of the run, the same for anything of the run's. A test that fails half-way thus
still stops what it started, and cannot leave a daemon behind that would join the next
test's database (every test of a worker gets a database of the same name).

The marks are read from ``/proc/<pid>/environ``: the environment a process was started
with, which holds even for processes re-parented to init.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

RUN = "VIDRETRY_TEST_RUN"
TEST = "VIDRETRY_TEST_ID"


@dataclass(frozen=True)
class Leftover:
    pid: int
    command: str

    def __str__(self) -> str:
        return f"pid {self.pid}: {self.command}"


def marked(name: str, value: str) -> list[Leftover]:
    """The live processes (not this one) started with ``name=value`` in their environment."""
    mark = f"{name}={value}".encode() + b"\0"
    found = []
    for pid in _pids():
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            if not (environ.startswith(mark) or b"\0" + mark in environ):
                continue
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:  # gone meanwhile, or another user's
            continue
        if command:  # a zombie has none: it is dead, only not yet waited for
            found.append(Leftover(pid, command.replace(b"\0", b" ").decode(errors="replace")))
    return found


def _pids() -> Iterator[int]:
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and int(entry.name) != me:
            yield int(entry.name)


def settle(name: str, value: str, *, within: float) -> list[Leftover]:
    """Wait up to ``within`` seconds for the processes marked ``name=value`` to end by
    themselves (one may be on its way out); those still running."""
    deadline = time.monotonic() + within
    while (left := marked(name, value)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def stop(leftovers: list[Leftover], *, grace: float = 2.0) -> None:
    """SIGTERM each leftover and its process group (unless that group is this process's),
    then SIGKILL whatever is still there after ``grace`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for leftover in leftovers:
            _signal(leftover.pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_alive(p.pid) for p in leftovers):
            time.sleep(0.05)


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        group = os.getpgid(pid)
        if group != os.getpgrp():
            os.killpg(group, sig)
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _alive(pid: int) -> bool:
    try:
        return bool(Path(f"/proc/{pid}/cmdline").read_bytes())
    except OSError:
        return False
