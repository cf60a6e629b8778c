"""Prometheus metrics for ``vidretry worker --metrics-port N`` and ``vidretry notifier``.

Counters and the job duration histogram are updated where things happen; the queue's depth
and the oldest pending job's age are read by one cheap query every few seconds in a process
that serves ``/metrics``, never once per scrape. Names follow Prometheus' conventions:
``vidretry_`` prefix, ``_total`` for counters, base units (``_seconds``).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from prometheus_client import Counter, Gauge, Histogram, start_http_server
from psycopg_pool import AsyncConnectionPool

from vidretry.db.connection import Connection, fetch_one
from vidretry.db.redact import one_line
from vidretry.db.transient import TRANSIENT_DB_ERRORS
from vidretry.errors import ConfigError

log = logging.getLogger("vidretry.metrics")

# How often a process serving /metrics reads the queue's depth.
QUEUE_POLL_SECONDS = 5.0

# -- the worker --------------------------------------------------------------------------
JOBS_CLAIMED = Counter("vidretry_jobs_claimed", "Attempts started: jobs claimed by a worker.")
JOBS_SUCCEEDED = Counter("vidretry_jobs_succeeded", "Jobs whose video was made.")
ATTEMPTS_FAILED = Counter("vidretry_job_attempts_failed", "Attempts that failed (any).")
JOBS_FAILED = Counter("vidretry_jobs_failed", "Jobs failed for good: their users were told.")
JOBS_RESCUED = Counter("vidretry_jobs_rescued", "Jobs whose worker lost its lease (a crash).")
ATTEMPTS_REFUNDED = Counter(
    "vidretry_job_attempts_refunded",
    "Failed attempts given back because the queue was paused (or this failure paused it).",
)
ATTEMPTS_RATE_LIMITED = Counter(
    "vidretry_job_attempts_rate_limited",
    "Attempts the generator answered with 'slow down': given back, every worker held off.",
)
JOB_DURATION = Histogram(
    "vidretry_job_duration_seconds",
    "How long one attempt's generation took, whatever its outcome.",
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)

# -- the queue, read every QUEUE_POLL_SECONDS ----------------------------------------------
JOBS = Gauge("vidretry_jobs", "Jobs waiting, running and failed, by state.", ["state"])
OLDEST_PENDING = Gauge(
    "vidretry_oldest_pending_job_age_seconds", "How long the longest-waiting due job has waited."
)
NOTIFICATIONS = Gauge(
    "vidretry_notifications", "Notifications not delivered yet, by state.", ["state"]
)

# -- the notifier ------------------------------------------------------------------------
SENT = Counter("vidretry_notifications_sent", "Messages delivered from the outbox.", ["kind"])
DEAD = Counter(
    "vidretry_notifications_dead",
    "Notifications given up: recipient (blocked, deactivated), payload (refused, unreadable "
    "video), gave_up (failing on its own past the time budget).",
    ["kind", "reason"],
)
FLOOD_WAIT = Counter(
    "vidretry_telegram_flood_wait_seconds", "Seconds Telegram asked the bot to wait."
)
TELEGRAM_CONNECTED = Gauge("vidretry_telegram_connected", "1 while logged in to Telegram.")
TELEGRAM_OUTAGE = Gauge(
    "vidretry_telegram_outage", "1 while sends are paused because Telegram fails everybody."
)
QUEUE_PAUSED = Gauge(
    "vidretry_queue_paused", "1 while the queue is paused (by the circuit breaker or by hand)."
)
LEADER = Gauge("vidretry_notifier_leader", "1 while this notifier leads (is the bot session).")


def serve(port: int, address: str) -> None:
    """Serve /metrics on ``address:port`` from a background thread."""
    try:
        start_http_server(port, addr=address)
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on {address}:{port}: {exc.strerror}") from None
    log.info("metrics on http://%s:%d/metrics", address, port)


async def watch_queue(
    pool: AsyncConnectionPool[Connection], now: datetime | None, stop: asyncio.Event
) -> None:
    """Keep the queue gauges current until ``stop``: one query every QUEUE_POLL_SECONDS."""
    while not stop.is_set():
        try:
            async with pool.connection() as conn:
                row = await fetch_one(conn, "queue_depth", {"now": now})
        except TRANSIENT_DB_ERRORS as exc:
            log.warning("queue depth not read: %s", one_line(exc))
        else:
            assert row is not None
            for state in ("pending", "running", "failed"):
                JOBS.labels(state).set(row[state])
            for state in ("pending", "sending"):
                NOTIFICATIONS.labels(state).set(row[f"outbox_{state}"])
            OLDEST_PENDING.set(max(0.0, row["oldest_pending_seconds"] or 0.0))
            QUEUE_PAUSED.set(1 if row["paused"] else 0)
        try:
            async with asyncio.timeout(QUEUE_POLL_SECONDS):
                await stop.wait()
        except TimeoutError:
            pass
