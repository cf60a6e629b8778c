"""/metrics, scraped over loopback with a real HTTP client after a known workload."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from prometheus_client.parser import text_string_to_metric_families

from tests.acceptance.conftest import Cli

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def wait_for(port: int, condition: Callable[[Samples], bool], timeout: float = 30) -> Samples:
    deadline = time.monotonic() + timeout
    while True:
        try:
            samples = scrape(port)
            if condition(samples):
                return samples
        except OSError:
            samples = {}
        if time.monotonic() > deadline:
            raise AssertionError(f"metrics never matched: {samples}")
        time.sleep(0.3)


@contextmanager
def running(process: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    try:
        yield process
    finally:
        process.terminate()
        process.communicate(timeout=30)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_worker_metrics_count_a_known_workload(make_cli: Callable[[str], Cli]) -> None:
    cli = make_cli(
        'command = ["sh", "-c", "case {name} in bad*) exit 3;; *) echo v > {output};; esac"]\n'
        "backoff_base_seconds = 0\npoll_interval_seconds = 0.2\n"
    )
    for name in ("a", "b", "c", "bad"):
        assert cli("enqueue", name, "--user", "1").returncode == 0
    port = free_port()
    with running(cli.spawn("worker", "--metrics-port", str(port))):
        samples = wait_for(
            port,
            lambda s: (
                value(s, "vidretry_jobs", state="failed") == 1
                and value(s, "vidretry_jobs", state="pending") == 0
            ),
        )
    assert value(samples, "vidretry_jobs_claimed_total") == 6  # 3 + the bad one's 3 attempts
    assert value(samples, "vidretry_jobs_succeeded_total") == 3
    assert value(samples, "vidretry_job_attempts_failed_total") == 3
    assert value(samples, "vidretry_jobs_failed_total") == 1
    assert value(samples, "vidretry_jobs_rescued_total") == 0
    assert value(samples, "vidretry_job_duration_seconds_count") == 6
    assert value(samples, "vidretry_jobs", state="running") == 0
    assert value(samples, "vidretry_oldest_pending_job_age_seconds") == 0
    assert value(samples, "vidretry_notifications", state="pending") >= 0
    assert value(samples, "vidretry_queue_paused") == 0
    assert value(samples, "vidretry_job_attempts_refunded_total") == 0


def test_a_paused_queue_shows_on_the_gauge(make_cli: Callable[[str], Cli]) -> None:
    cli = make_cli('handler = "python:sample_handlers:succeed"\n')
    assert cli("pause", "--reason", "maintenance").returncode == 0
    assert cli("enqueue", "a", "--user", "1").returncode == 0
    port = free_port()
    with running(cli.spawn("worker", "--metrics-port", str(port))):
        samples = wait_for(port, lambda s: value(s, "vidretry_queue_paused") == 1)
        assert value(samples, "vidretry_jobs", state="pending") == 1
        assert cli("resume").returncode == 0
        samples = wait_for(port, lambda s: value(s, "vidretry_queue_paused") == 0)


def test_notifier_metrics_count_sends_and_leadership(
    make_cli: Callable[[str], Cli], db_url: str
) -> None:
    cli = make_cli("")
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO video_assets (name) VALUES ('a'), ('b')")
        conn.execute(
            "INSERT INTO notifications (asset_id, user_id, chat_id, kind, generation, payload)"
            " SELECT id, 7, 7, 'failed', 0, jsonb_build_object('name', name) FROM video_assets"
        )
    port = free_port()
    argv = ["notifier", "--transport", "console", "--mark-sent", "--metrics-port", str(port)]
    with running(cli.spawn(*argv)):
        samples = wait_for(
            port, lambda s: value(s, "vidretry_notifications_sent_total", kind="failed") == 2
        )
        assert value(samples, "vidretry_notifier_leader") == 1
        assert value(samples, "vidretry_telegram_outage") == 0
        wait_for(port, lambda s: value(s, "vidretry_notifications", state="pending") == 0)
