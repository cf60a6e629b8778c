import errno
import logging
import sys
from pathlib import Path
from uuid import uuid4

import pytest

from tests.support import eventually
from vidretry.config import WorkerConfig
from vidretry.errors import ConfigError, HandlerError, PermanentError
from vidretry.models import JobContext
from vidretry.queue.handlers import (
    CommandHandler,
    PythonHandler,
    build_handler,
    describe_os_error,
    load_function,
)


def job(tmp_path: Path, **params: object) -> JobContext:
    return JobContext(
        asset_id=7,
        name="Маша; rm -rf /",
        params=dict(params),
        attempt=1,
        max_attempts=3,
        retry_round=0,
        output_dir=tmp_path,
        lease_token=uuid4(),
    )


def test_command_template_is_filled_without_a_shell(tmp_path: Path) -> None:
    handler = CommandHandler(
        ("render", "--id", "{asset_id}", "--name", "{name}", "--voice", "{voice}", "{output}"),
        timeout_seconds=5,
    )
    argv = handler.argv(job(tmp_path, voice="alto"))
    assert argv == [
        "render",
        "--id",
        "7",
        "--name",
        "Маша; rm -rf /",
        "--voice",
        "alto",
        str(tmp_path / "7-g0.mp4"),
    ]


def test_the_retry_round_keeps_its_old_name_for_one_release(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Handlers written for 0.19.0 read ``job.generation`` and command templates say
    ``{generation}``: both still give the retry round in 0.20.0 (deprecated)."""
    ran = JobContext(
        asset_id=7, name="a", params={}, attempt=1, max_attempts=3, retry_round=2,
        output_dir=tmp_path, lease_token=uuid4(),
    )  # fmt: skip
    with pytest.warns(DeprecationWarning, match="use JobContext.retry_round"):
        assert ran.generation == 2
    CommandHandler(("render", "{retry_round}"), timeout_seconds=5)
    assert "command says" not in caplog.text
    handler = CommandHandler(("render", "{retry_round}", "{generation}"), timeout_seconds=5)
    assert "command says {generation}, deprecated: say {retry_round}" in caplog.text
    assert handler.argv(ran) == ["render", "2", "2"]
    assert ran.output == tmp_path / "7-g2.mp4"  # the file's name is unchanged


async def test_command_success_records_the_output(tmp_path: Path) -> None:
    handler = CommandHandler(("sh", "-c", 'echo video > "$0"', "{output}"), timeout_seconds=5)
    result = await handler(job(tmp_path))
    assert result == str(tmp_path / "7-g0.mp4")
    assert (tmp_path / "7-g0.mp4").read_text() == "video\n"


async def test_a_command_may_say_its_video_is_at_a_url(tmp_path: Path) -> None:
    """A provider's API answers with a URL: the command prints ``result <url>`` (the last
    such line wins) and the worker copies it into the store."""
    script = 'echo "progress 50"; echo "result https://a.example/1"; echo "Result  https://b.example/v.mp4?sig=x"'
    handler = CommandHandler(("sh", "-c", script), timeout_seconds=5)
    assert await handler(job(tmp_path)) == "https://b.example/v.mp4?sig=x"


async def test_a_result_line_that_names_no_video_is_chatter(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A generator that writes ``{output}`` and says "result saved" (or "Result: ok") has
    made its video: only ``result <url>`` and ``result <absolute path>`` name one; the other
    lines are logged, a signed URL's query cut from them."""
    script = (
        'echo "result saved"; echo "Result: ok"; echo "result see https://x.example/a?sig=S3CR3T"; '
        'echo "result ftp://files.example/v.mp4"; echo video > "$0"'
    )
    handler = CommandHandler(("sh", "-c", script, "{output}"), timeout_seconds=5)
    with caplog.at_level(logging.INFO, logger="vidretry.handler"):
        assert await handler(job(tmp_path)) == str(tmp_path / "7-g0.mp4")
    logged = [r.getMessage() for r in caplog.records]
    assert "job 7: result saved" in logged
    assert "job 7: result ftp://files.example/v.mp4" in logged
    assert not any("S3CR3T" in line for line in logged)
    elsewhere = 'echo "result /srv/elsewhere/v.mp4"'
    handler = CommandHandler(("sh", "-c", elsewhere), timeout_seconds=5)
    assert await handler(job(tmp_path)) == "/srv/elsewhere/v.mp4"  # keep() confines it


async def test_a_command_that_writes_no_video_has_failed(tmp_path: Path) -> None:
    handler = CommandHandler(("sh", "-c", "echo done"), timeout_seconds=5)
    with pytest.raises(HandlerError, match=r"exit status 0, but no video at .*7-g0\.mp4"):
        await handler(job(tmp_path))


async def test_command_failure_keeps_the_stderr_tail(tmp_path: Path) -> None:
    handler = CommandHandler(
        (
            "sh",
            "-c",
            "head -c 5000 /dev/zero | tr '\\0' x >&2; echo ' ffmpeg: codec missing' >&2; exit 3",
        ),
        timeout_seconds=5,
    )
    with pytest.raises(HandlerError) as info:
        await handler(job(tmp_path))
    assert not isinstance(info.value, PermanentError)
    message = str(info.value)
    assert message.startswith("exit status 3: ")
    assert message.endswith("ffmpeg: codec missing")
    assert len(message) < 2100


async def test_listed_exit_status_is_permanent(tmp_path: Path) -> None:
    handler = CommandHandler(
        ("sh", "-c", "exit 100"), timeout_seconds=5, permanent_exit_codes=(100,)
    )
    with pytest.raises(PermanentError, match="exit status 100"):
        await handler(job(tmp_path))


async def test_command_timeout_kills_the_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    handler = CommandHandler(
        ("sh", "-c", f"sleep 30 & echo $! > {pid_file}; wait"), timeout_seconds=0.3
    )
    with pytest.raises(HandlerError, match=r"timed out after 0.3s"):
        await handler(job(tmp_path))
    child = int(pid_file.read_text())
    assert await eventually(lambda: not _alive(child), within=5), (
        "the child of the timed-out command was left running"
    )


def _alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped has stopped running)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


async def test_missing_program_is_an_attempt_failure(tmp_path: Path) -> None:
    handler = CommandHandler(("/nonexistent/render",), timeout_seconds=5)
    with pytest.raises(HandlerError, match="cannot run /nonexistent/render"):
        await handler(job(tmp_path))


async def test_unknown_placeholder_is_permanent(tmp_path: Path) -> None:
    handler = CommandHandler(("render", "{nope}"), timeout_seconds=5)
    with pytest.raises(PermanentError, match="cannot be filled in"):
        await handler(job(tmp_path))


def test_empty_command_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"\[worker\] command is empty"):
        build_handler(WorkerConfig())


async def test_python_handlers_sync_and_async(tmp_path: Path) -> None:
    for name in ("succeed", "succeed_async"):
        handler = PythonHandler(f"python:tests.sample_handlers:{name}", timeout_seconds=5)
        assert await handler(job(tmp_path)) == str(job(tmp_path).output)


async def test_python_handler_permanent_error(tmp_path: Path) -> None:
    handler = PythonHandler("python:tests.sample_handlers:fail_permanently", timeout_seconds=5)
    with pytest.raises(PermanentError):
        await handler(job(tmp_path))


async def test_python_handler_timeout(tmp_path: Path) -> None:
    handler = PythonHandler("python:tests.sample_handlers:hang", timeout_seconds=0.1)
    with pytest.raises(HandlerError, match="timed out"):
        await handler(job(tmp_path))


def test_python_handler_spec_errors() -> None:
    with pytest.raises(ConfigError, match="cannot import no_such_module"):
        load_function("python:no_such_module:f")
    with pytest.raises(ConfigError, match="has no function nope"):
        load_function("python:tests.sample_handlers:nope")
    assert sys.modules["tests.sample_handlers"]


def test_a_full_disk_is_named_plainly() -> None:
    full = OSError(errno.ENOSPC, "No space left on device", "/srv/videos/7-g0.mp4")
    assert describe_os_error(full) == "no space left on device (/srv/videos/7-g0.mp4)"
    assert describe_os_error(OSError(errno.EACCES, "Permission denied")) == "Permission denied"
