"""Python generation handlers used by the tests (``handler = "python:sample_handlers:..."``).

Subprocess tests put this folder on PYTHONPATH; in-process tests import it as
``tests.sample_handlers``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from vidretry.errors import PermanentError, RateLimited
from vidretry.models import JobContext


def made(job: JobContext) -> str:
    """A tiny video written where the worker asked for it: the handler's result."""
    job.output.parent.mkdir(parents=True, exist_ok=True)
    job.output.write_bytes(b"a tiny video\n")
    return str(job.output)


def succeed(job: JobContext) -> str:
    return made(job)


def reads_the_old_name(job: JobContext) -> str:
    """A handler written for 0.19.0: it reads the retry round by its deprecated name."""
    assert job.generation == job.retry_round
    return made(job)


async def succeed_async(job: JobContext) -> str:
    await asyncio.sleep(0)
    return made(job)


def returns(job: JobContext) -> str:
    """Whatever ``params.result`` says: a path, a URL, or something that is neither."""
    return str(job.params["result"])


def fail(job: JobContext) -> str:
    raise RuntimeError(f"render crashed on attempt {job.attempt}")


def fail_permanently(job: JobContext) -> str:
    raise PermanentError("the template does not exist")


def slow_down(job: JobContext) -> str:
    """An API that answers 429 with a Retry-After of ``params.seconds``."""
    raise RateLimited("429 Too Many Requests", retry_after=float(job.params["seconds"]))


def fail_once(job: JobContext) -> str:
    if job.attempt == 1:
        raise RuntimeError("flaky GPU")
    return made(job)


def sleep_then_succeed(job: JobContext) -> str:
    """Sleeps ``params.seconds`` (default 0.2), logging start/end to ``params.log`` if set."""
    log = job.params.get("log")
    if log:
        with Path(log).open("a") as f:
            f.write(f"start {job.asset_id} {os.getpid()} {time.time()}\n")
    time.sleep(float(job.params.get("seconds", 0.2)))
    if log:
        with Path(log).open("a") as f:
            f.write(f"end {job.asset_id} {os.getpid()} {time.time()}\n")
    return made(job)


async def hang(job: JobContext) -> str:
    await asyncio.sleep(3600)
    return "never"


async def hang_on_first_attempt(job: JobContext) -> str:
    """Hangs on attempt 1 (the test kills the worker); succeeds after that."""
    if job.attempt == 1:
        await asyncio.sleep(3600)
    return made(job)


def down_while_flagged(job: JobContext) -> str:
    """The whole generator is down while the file ``params.down`` exists (an expired API
    key, say); an asset with ``params.poison`` always fails on its own."""
    if Path(job.params["down"]).exists():
        raise RuntimeError("401 Unauthorized: wrong API key")
    if job.params.get("poison"):
        raise RuntimeError("the template cannot render this name")
    return made(job)


async def nap(job: JobContext) -> str:
    """Sleeps ``params.seconds`` without blocking the worker, logging ``start``, then ``end``
    or (when the worker cancels it) ``stop``, with the asset, pid and time, to ``params.log``;
    then writes a small file as the video."""

    def note(what: str) -> None:
        with Path(job.params["log"]).open("a") as f:
            f.write(f"{what} {job.asset_id} {os.getpid()} {time.time()}\n")

    note("start")
    try:
        await asyncio.sleep(float(job.params.get("seconds", 0.2)))
    except asyncio.CancelledError:
        note("stop")
        raise
    note("end")
    return made(job)


def kill_worker_for(job: JobContext) -> str:
    """With ``params.kill``, kills the worker process itself (as a segfault in a library
    would); otherwise succeeds."""
    if job.params.get("kill"):
        os.kill(os.getpid(), signal.SIGKILL)
    return made(job)
