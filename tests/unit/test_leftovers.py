"""The suite's own guard (tests/leftovers.py): what a test started and left running is found
by its mark, even re-parented to init, and stopped with its process group."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from tests import leftovers

# A daemon as a test might leave one: it ignores SIGTERM, and starts a child of its own in
# a new process group, then exits, leaving that child to init.
STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
DOUBLE_FORK = f"""
import subprocess, sys
child = subprocess.Popen(
    [sys.executable, "-c", {STUBBORN!r}],
    start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
)
print(child.pid, flush=True)
"""


def test_an_orphan_that_ignores_sigterm_is_found_by_its_mark_and_stopped() -> None:
    mark = uuid.uuid4().hex
    env = {**os.environ, leftovers.TEST: mark}
    parent = subprocess.run(
        [sys.executable, "-c", DOUBLE_FORK], env=env, capture_output=True, text=True, check=True
    )
    orphan = int(parent.stdout)
    try:
        assert [p.pid for p in leftovers.marked(leftovers.TEST, mark)] == [orphan]
        assert leftovers.marked(leftovers.TEST, uuid.uuid4().hex) == []
        started = time.monotonic()
        leftovers.stop(leftovers.marked(leftovers.TEST, mark), grace=0.5)
        assert time.monotonic() - started < 5
        assert leftovers.settle(leftovers.TEST, mark, within=5) == []
    finally:
        if Path(f"/proc/{orphan}").exists():
            os.kill(orphan, 9)


def test_a_process_that_ends_by_itself_is_waited_for() -> None:
    mark = uuid.uuid4().hex
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(0.3)"], env={**os.environ, "M": mark}
    )
    try:
        assert leftovers.settle("M", mark, within=30) == []
    finally:
        process.wait()
