"""The benchmark harness's short form, so it cannot silently rot. It checks that every job
ran exactly once in every system; it asserts no timing (numbers live in bench/RESULTS.md)."""

import pytest

from bench import broadcast, fairness, operations, storage, upgrade, videos
from bench.run import main


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_benchmark_short_form_runs_every_case(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--short"]) == 0
    report = capsys.readouterr().out
    for case in (
        "throughput: raw loop",
        "throughput: vidretry, 4 processes",
        "fair: vidretry, 4 processes, fair, 1,000 users asking in bursts",
        "throughput: pgqueuer",
        "throughput: procrastinate",
        "enqueue → start: vidretry",
        "failure → notification p95",
        "pacing: busiest 1-second window",
        "idle notifier: queries per second",
        "scale: claim throughput",
        "memory: vidretry worker, concurrency 64, under load",
        "memory: vidretry notifier idle",
        "memory: pgqueuer worker idle",
        "memory: procrastinate worker (its defaults) under load",
    ):
        assert case in report


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_operations_benchmark_short_form_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert operations.main(["--short"]) == 0
    report = capsys.readouterr().out
    for row in ("`status` (counts, summary, pause)", "/metrics queue query",
                "claims/s while pruning"):  # fmt: skip
        assert row in report


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_broadcast_benchmark_short_form_runs(capsys: pytest.CaptureFixture[str]) -> None:
    # Through the real Telethon client and the Telegram double; the child process checks
    # that every paid broadcast carried its flag.
    assert broadcast.main(["--short"]) == 0
    report = capsys.readouterr().out
    for row in ("paid broadcast: messages/s", "paid broadcast: busiest 1-second window",
                "paid broadcast: notifier peak RSS", "mass failure at 25/s",
                "mass failure at 1000/s"):  # fmt: skip
        assert row in report


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_video_benchmark_short_form_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert videos.main(["--short"]) == 0
    report = capsys.readouterr().out
    uploaded = next(line for line in report.splitlines() if "bytes uploaded" in line)
    assert uploaded.split("|")[2].strip() == "1.00"  # one upload, whatever the machine's speed
    assert "success → last delivery" in report


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_fairness_benchmark_short_form_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert fairness.main(["--short"]) == 0
    report = capsys.readouterr().out
    for row in ("claim, fair, 50,000 pending across 500 owners", "light users' wait, fair"):
        assert row in report


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_storage_benchmark_short_form_runs(capsys: pytest.CaptureFixture[str]) -> None:
    # The run itself checks that Telegram got the generator's bytes (their SHA-256).
    assert storage.main(["--short"]) == 0
    report = capsys.readouterr().out
    for row in ("keeping in the store ÷ the S3 client alone",
                "done → delivered through S3 ÷ (S3 client alone + sending from disk)",
                "notifier (S3): peak RSS over idle (MiB)"):  # fmt: skip
        assert row in report


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_upgrade_benchmark_short_form_runs(
    empty_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # On the test's own server: the previous release's workers claim through it.
    assert upgrade.main(["--short", "--url", empty_database]) == 0
    report = capsys.readouterr().out
    for row in ("workers, nothing else", "`db upgrade` to this release",
                "the next release's steps of docs/upgrading.md"):  # fmt: skip
        assert row in report
