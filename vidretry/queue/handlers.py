"""The generation step: what a worker runs for a claimed job.

``handler = "command"`` runs an argv template; ``handler = "python:package.module:function"``
calls a function (plain or ``async``). Either signals a failure by raising (or exiting
non-zero); a ``PermanentError`` (or an exit status listed in ``permanent_exit_codes``) skips
the remaining attempts. ``RateLimited`` (or an exit status listed in
``rate_limited_exit_codes``) is no failure: the generator asks everybody to slow down.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import importlib
import inspect
import logging
import math
import os
import shutil
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from vidretry.config import WorkerConfig
from vidretry.db.redact import without_queries
from vidretry.errors import ConfigError, HandlerError, PermanentError, RateLimited
from vidretry.models import ClaimedJob, JobContext
from vidretry.queue.progress import parse_progress_line

STDERR_TAIL = 2000

log = logging.getLogger("vidretry.handler")


class Handler(Protocol):
    async def __call__(self, job: JobContext) -> str:
        """Generate the video; return the result to record (e.g. the output path)."""
        ...


def context_for(
    job: ClaimedJob,
    output_dir: Path,
    report_progress: Callable[[float], None] = lambda fraction: None,
) -> JobContext:
    return JobContext(
        asset_id=job.id,
        name=job.name,
        params=job.params,
        attempt=job.attempts,
        max_attempts=job.max_attempts,
        retry_round=job.retry_round,
        output_dir=output_dir,
        lease_token=job.lease_token,
        report_progress=report_progress,
    )


class CommandHandler:
    """Runs ``command`` with ``{asset_id}``, ``{name}``, ``{output}``, ``{attempt}``,
    ``{retry_round}``, ``{lease_token}`` and the job's params filled in. No shell is involved,
    so a name or param can never become part of a command line's syntax. ``{generation}``,
    the retry round's old name, is filled in too until the next release (deprecated).

    The video is ``{output}``, unless a line ``result <url>`` on its standard output says it
    is at a URL (a provider's, copied into the store at once) or ``result <absolute path>``
    names another file of ``output_dir``. A line ``progress <percent>`` reports progress, and
    ``retry-after <seconds>`` says how long to hold off after an exit status listed in
    ``rate_limited_exit_codes``; other lines (a ``result`` line that names neither too) are
    logged. When the attempt
    must stop (a timeout, a cancel, a lost lease, a shutdown's end), its whole process group
    gets SIGTERM, and SIGKILL ``TERM_GRACE_SECONDS`` later if it is still there; so it does
    when the worker dies (``lifeline``)."""

    def __init__(
        self,
        command: tuple[str, ...],
        *,
        timeout_seconds: float,
        permanent_exit_codes: tuple[int, ...] = (),
        rate_limited_exit_codes: tuple[int, ...] = (),
    ) -> None:
        if not command:
            raise ConfigError('[worker] command is empty but [worker] handler is "command"')
        self.command = command
        if any("{generation" in part for part in command):
            log.warning("[worker] command says {generation}, deprecated: say {retry_round}, the "
                        "same number (the old name goes in the next release)")  # fmt: skip
        self.timeout_seconds = timeout_seconds
        self.permanent_exit_codes = permanent_exit_codes
        self.rate_limited_exit_codes = rate_limited_exit_codes

    def argv(self, job: JobContext) -> list[str]:
        values: dict[str, Any] = {
            **{str(k): v for k, v in job.params.items()},
            "asset_id": job.asset_id,
            "name": job.name,
            "output": job.output,
            "attempt": job.attempt,
            "retry_round": job.retry_round,
            "generation": job.retry_round,  # its old name, deprecated: see the docstring
            "lease_token": job.lease_token,
        }
        try:
            return [part.format_map(values) for part in self.command]
        except (KeyError, IndexError, ValueError) as exc:
            raise PermanentError(f"[worker] command cannot be filled in: {exc!r}") from None

    async def __call__(self, job: JobContext) -> str:
        argv = self.argv(job)
        try:
            job.output.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            error = describe_os_error(exc)
            raise HandlerError(f"cannot create {job.output.parent}: {error}") from None
        supervisor = await lifeline(self.timeout_seconds)
        if supervisor and shutil.which(argv[0]) is None:  # said as the exec would say it
            found = os.path.exists(argv[0])  # noqa: ASYNC240 (one stat, on the error path)
            why = "Permission denied" if found else "No such file or directory"
            raise HandlerError(f"cannot run {argv[0]}: {why}")
        try:
            proc = await asyncio.create_subprocess_exec(
                *supervisor,
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # its own process group: stopped as a whole
            )
        except OSError as exc:
            raise HandlerError(f"cannot run {argv[0]}: {describe_os_error(exc)}") from None
        try:
            said = await asyncio.wait_for(_outputs(proc, job), self.timeout_seconds)
        except TimeoutError:
            await _stop_group(proc)
            raise HandlerError(f"timed out after {self.timeout_seconds:g}s") from None
        except asyncio.CancelledError:
            await asyncio.shield(_stop_group(proc))
            raise
        if proc.returncode != 0:
            tail = said.stderr.decode("utf-8", errors="replace").strip()[-STDERR_TAIL:]
            message = f"exit status {proc.returncode}" + (f": {tail}" if tail else "")
            if proc.returncode in self.rate_limited_exit_codes:
                raise RateLimited(message, retry_after=said.retry_after)
            if DISK_FULL in tail.lower():  # the generator's write failed: ENOSPC
                message = f"{DISK_FULL} writing {job.output} (exit status {proc.returncode})"
            if proc.returncode in self.permanent_exit_codes:
                raise PermanentError(message)
            raise HandlerError(message)
        if said.result is not None:
            return said.result
        if not job.output.is_file():
            raise HandlerError(
                f"exit status 0, but no video at {job.output} (nor a `result <url>` line)"
            )
        return str(job.output)


DISK_FULL = "no space left on device"


def describe_os_error(exc: OSError) -> str:
    """One line for a failed write or exec: a full disk says so plainly."""
    if exc.errno == errno.ENOSPC:
        return DISK_FULL + (f" ({exc.filename})" if exc.filename else "")
    return exc.strerror or str(exc)


# A generator asked to stop (SIGTERM) has this long to clean up before SIGKILL: a cancel
# stops it within [worker] heartbeat_seconds and this.
TERM_GRACE_SECONDS = 1.5


# A generator dies with its worker. Started through util-linux's setpriv, which asks the
# kernel for a SIGTERM when the worker dies (PR_SET_PDEATHSIG, kept across the exec that
# follows), and coreutils' timeout, which passes that SIGTERM on to the generator's whole
# process group and SIGKILLs the group TERM_GRACE_SECONDS later, as the worker itself stops
# a generator; timeout's own clock, a little longer than the job's, bounds a generator
# whose worker hangs. Not preexec_fn's prctl: unsafe in a process with threads (a child may
# deadlock before its exec), and it would reach the generator's first process only, not the
# processes it starts. Without both tools (another system, a minimal image) a generator
# runs as before: a killed worker's generator runs on until it ends, and the worker says so
# as it starts its first one.
_LIFELINE_BEYOND_THE_JOB = 10.0
_lifeline: bool | None = None  # whether this machine has both tools: asked once


async def lifeline(timeout_seconds: float) -> tuple[str, ...]:
    """The argv that goes before a generator's so that it dies with its worker, or ()."""
    global _lifeline
    if _lifeline is None:
        _lifeline = await _lifeline_works()
        if not _lifeline:
            log.warning(
                "setpriv (util-linux >= 2.33) or GNU timeout is missing: a generator will "
                "outlive its worker if the worker is killed, and hold its max_running slot "
                "only until the worker's lease ends"
            )
    if not _lifeline:
        return ()
    return (
        "setpriv", "--pdeathsig", "TERM", "timeout", f"--kill-after={TERM_GRACE_SECONDS:g}",
        f"{timeout_seconds + _LIFELINE_BEYOND_THE_JOB:.3f}",
    )  # fmt: skip


async def _lifeline_works() -> bool:
    """Both tools there and taking these options (setpriv's --pdeathsig is from 2.33)."""
    if shutil.which("setpriv") is None or shutil.which("timeout") is None:
        return False
    try:
        probe = await asyncio.create_subprocess_exec(
            "setpriv", "--pdeathsig", "TERM", "timeout", "--kill-after=1", "10", "true",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
    except OSError:
        return False
    try:
        return await asyncio.wait_for(probe.wait(), 10) == 0
    except TimeoutError:
        probe.kill()
        await probe.wait()
        return False


@dataclass
class _Said:
    """What a command said besides its exit status."""

    stderr: bytes = b""
    retry_after: float | None = None  # its last ``retry-after <seconds>`` line
    result: str | None = None  # its last ``result <url>`` line: the video is there


def parse_result_line(line: str) -> str | None:
    """``result https://cdn.example/v.mp4`` → the URL (a provider's output, to be copied
    into the store); ``result /srv/out/v.mp4`` → the path. None for any other line, a
    ``result`` line that names neither included (``result saved`` is chatter, logged)."""
    head, _, rest = line.strip().partition(" ")
    said = rest.strip()
    if head.lower() != "result" or not said:
        return None
    if said.startswith("/"):
        return said
    try:
        parts = urlsplit(said)
    except ValueError:
        return None
    if parts.scheme in ("http", "https") and parts.netloc and not any(c.isspace() for c in said):
        return said
    return None


def parse_retry_after(line: str) -> float | None:
    """``retry-after 30`` (or ``Retry-After: 30``, as an HTTP header is often echoed) → 30.0;
    None for any other line, or for a number that is not finite and at least 0."""
    head, _, rest = line.strip().partition(" ")
    if head.lower().rstrip(":") != "retry-after":
        return None
    try:
        seconds = float(rest.strip().removesuffix("s"))
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


async def _outputs(proc: asyncio.subprocess.Process, job: JobContext) -> _Said:
    """Read the generator's standard output line by line (its progress reports, a
    ``retry-after``) and its standard error whole, until it exits."""
    assert proc.stdout is not None
    assert proc.stderr is not None
    said = _Said()
    errors = asyncio.ensure_future(proc.stderr.read())
    try:
        while True:
            try:
                line = await proc.stdout.readline()
            except ValueError:  # a line longer than the stream's limit: not a report
                await proc.stdout.read(2**16)
                continue
            if not line:
                break
            text = line.decode("utf-8", errors="replace").rstrip()
            fraction = parse_progress_line(text)
            if fraction is not None:
                job.progress(fraction)
            elif (seconds := parse_retry_after(text)) is not None:
                said.retry_after = seconds
            elif (result := parse_result_line(text)) is not None:
                said.result = result
            elif text:
                log.info("job %s: %s", job.asset_id, without_queries(text[:STDERR_TAIL]))
        await proc.wait()
        said.stderr = await errors
        return said
    finally:
        errors.cancel()


async def _stop_group(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM to the generator's process group; SIGKILL after the grace if it is still
    running (and to whatever of its group is left)."""
    _signal_group(proc, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), TERM_GRACE_SECONDS)
    _signal_group(proc, signal.SIGKILL)
    await proc.wait()


def _signal_group(proc: asyncio.subprocess.Process, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signum)


class PythonHandler:
    """Calls ``function(job)``; a plain function runs in a thread. Its return value, if a
    string, is the result; otherwise the job's output path is recorded."""

    def __init__(self, spec: str, *, timeout_seconds: float) -> None:
        self.function = load_function(spec)
        self.timeout_seconds = timeout_seconds

    async def __call__(self, job: JobContext) -> str:
        call: Awaitable[Any]
        if inspect.iscoroutinefunction(self.function):
            call = self.function(job)
        else:
            call = asyncio.to_thread(self.function, job)
        try:
            result = await asyncio.wait_for(call, self.timeout_seconds)
        except TimeoutError:
            raise HandlerError(f"timed out after {self.timeout_seconds:g}s") from None
        return result if isinstance(result, str) else str(job.output)


def load_function(spec: str) -> Callable[..., Any]:
    """``python:package.module:function`` → the function, or a ``ConfigError`` naming it."""
    _, module_name, function_name = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"[worker] handler: cannot import {module_name}: {exc}") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ConfigError(f"[worker] handler: {module_name} has no function {function_name}")
    return function  # type: ignore[no-any-return]


def build_handler(config: WorkerConfig) -> Handler:
    if config.handler == "command":
        return CommandHandler(
            config.command,
            timeout_seconds=config.timeout_seconds,
            permanent_exit_codes=config.permanent_exit_codes,
            rate_limited_exit_codes=config.rate_limited_exit_codes,
        )
    return PythonHandler(config.handler, timeout_seconds=config.timeout_seconds)
