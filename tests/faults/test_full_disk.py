"""A full disk: the generator's output directory has no space left. Every attempt fails
with a clear one-line error, which the circuit breaker takes for what it is — the
generator is down for everybody — so no asset fails for good and the admins are told;
when space returns, the queue resumes by itself."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from tests.acceptance.conftest import Cli
from tests.faults.conftest import stop, wait_for

ADMIN = 999


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs, filled to the last byte (the file ``filler`` holds it)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], check=True)
    try:
        with (disk / "filler").open("wb", buffering=0) as filler:
            try:
                while filler.write(b"\0" * 4096):
                    pass
            except OSError:
                pass
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.mark.slow
def test_a_full_disk_pauses_the_queue_fails_nobody_and_the_queue_resumes_when_space_returns(
    small_disk: Path, db_url: str, cli_for: Callable[[str, str], Cli]
) -> None:
    cli = cli_for(
        "vidretry",
        f'[database]\nurl = "{db_url}"\n[telegram]\nadmins = [{ADMIN}]\n[worker]\n'
        'handler = "command"\n'
        # Each attempt takes longer than the backoff before it (at most 0.5 s here), as a
        # slow generator's or a busy machine's do: retrying the first few jobs whenever
        # they are due again must not use up their attempts before the breaker trips.
        'command = ["sh", "-c", "sleep 0.6; head -c 65536 /dev/zero > \\"$1\\"",'
        ' "sh", "{output}"]\n'
        f'output_dir = "{small_disk}"\n'
        "poll_interval_seconds = 0.2\nbackoff_base_seconds = 0.2\nbackoff_max_seconds = 1\n"
        "breaker_probe_seconds = 1\nbreaker_probe_max_seconds = 2\n",
    )
    assets = [cli.json("enqueue", f"video {i}", "--user", "1")["asset_id"] for i in range(8)]

    def query(sql: str) -> list[tuple[object, ...]]:
        with psycopg.connect(db_url, autocommit=True) as conn:
            return conn.execute(sql).fetchall()  # type: ignore[arg-type]

    worker = cli.spawn("worker")
    try:
        wait_for(
            lambda: query("SELECT 1 FROM queue_pauses WHERE resumed_at IS NULL"),
            within=60, what="the breaker pauses the queue",
        )  # fmt: skip
        errors = {row[0] for row in query(
            "SELECT detail FROM job_events WHERE kind = 'attempt_failed'"
        )}  # fmt: skip
        history = query(
            "SELECT asset_id, kind, attempt FROM job_events WHERE kind <> 'enqueued' ORDER BY id"
        )
        assert query("SELECT count(*) FROM video_assets WHERE state = 'failed'") == [(0,)], history
        assert query(
            f"SELECT kind FROM notifications WHERE user_id = {ADMIN}"
        ) == [("paused",)]  # fmt: skip

        (small_disk / "filler").unlink()  # space returns
        wait_for(
            lambda: query("SELECT count(*) FROM video_assets WHERE state = 'available'")
            == [(len(assets),)],
            within=60, what="the queue resumes by itself and every video is made",
        )  # fmt: skip
    finally:
        log = stop(worker)
    assert errors
    for error in errors:
        assert isinstance(error, str)
        assert "no space left on device writing " in error, error
        assert "\n" not in error
    assert query("SELECT count(*) FROM queue_pauses WHERE resumed_at IS NOT NULL") == [(1,)]
    assert "Traceback" not in log
