"""One bot session among several notifiers: the election, and three real notifier processes."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from tests.support import FakeClock, busiest_second, eventually
from tests.telegram.bot_process import most_sessions_at_once, read_events
from tests.telegram.double import BOT_TOKEN
from vidretry.clock import DatabaseClock
from vidretry.config import NotifierConfig
from vidretry.db import connection
from vidretry.db.listen import LEADERSHIP_CHANNEL, Listener
from vidretry.db.pool import open_pool
from vidretry.telegram import outbox
from vidretry.telegram.leadership import Leadership
from vidretry.telegram.pacing import WINDOW_SECONDS

ROOT = Path(__file__).resolve().parents[2]
DEFAULTS = NotifierConfig()


def candidate(pool: Any, name: str, clock: FakeClock) -> Leadership:
    return Leadership(pool, candidate=name, lease_seconds=DEFAULTS.lease_seconds, clock=clock)


async def test_one_leader_until_its_term_lapses_then_the_next(db_url: str) -> None:
    clock = FakeClock(datetime.now(UTC))
    async with open_pool(db_url, max_size=2) as pool:
        a, b = candidate(pool, "a", clock), candidate(pool, "b", clock)
        token_a = await a.try_claim()
        assert token_a is not None
        assert await b.try_claim() is None
        clock.advance(a.term_seconds - 1)
        assert await a.renew(token_a)
        clock.advance(a.term_seconds - 1)  # renewed: still a's
        assert await b.try_claim() is None
        clock.advance(2)  # a died: its term lapses
        token_b = await b.try_claim()
        assert token_b is not None
        assert not await a.renew(token_a)  # fenced: a finds out it was replaced
        assert await b.current() == "b"
        await b.resign(token_b)  # a leader that stops hands over at once
        assert await a.try_claim() is not None


async def test_a_standby_hears_a_resignation_and_takes_over_at_once(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The hand-over of a rollout (docs/upgrading.md): the old release's leader resigns, with
    # the old release's own statement, and a standby of this one leads long before its next
    # look, woken by the database (schema 20's trigger on the leadership row).
    async with open_pool(db_url, max_size=3) as pool, pool.connection() as conn:
        await conn.execute(
            "UPDATE leadership SET leader = 'old:1', token = gen_random_uuid(),"
            " elected_at = now(), expires_at = now() + interval '1 hour' WHERE role = 'notifier'"
        )
        vacated, listening, stop, led = (asyncio.Event() for _ in range(4))
        listening.set()
        listener = Listener(db_url)
        hearing = asyncio.create_task(
            listener.run(LEADERSHIP_CHANNEL, vacated, listening, random.Random(0))
        )
        standby = Leadership(
            pool, candidate="new:2", lease_seconds=DEFAULTS.lease_seconds,
            clock=DatabaseClock(), vacated=vacated,
        )  # fmt: skip
        standby.standby_poll_seconds = 3600.0  # only the resignation can wake it in time

        async def lead(done: asyncio.Event, lost: asyncio.Event) -> None:
            led.set()
            await done.wait()

        assert await eventually(listener.ready.is_set, within=30)
        with caplog.at_level(logging.INFO, logger="vidretry.leadership"):
            campaign = asyncio.create_task(standby.lead(stop, lead))
            # Its first look: another leads.
            assert await eventually(lambda: "standing by: old:1 leads" in caplog.text, within=30)
        assert not led.is_set()
        await conn.execute(
            "UPDATE leadership SET leader = NULL, token = NULL, elected_at = NULL,"
            " expires_at = NULL, telegram_connected = false WHERE role = 'notifier'"
        )
        assert await eventually(led.is_set, within=30)
        assert await standby.current() == "new:2"
        stop.set()
        await campaign
        listening.clear()
        await hearing


async def test_the_term_and_the_standby_poll_keep_takeover_within_a_lease(db_url: str) -> None:
    async with open_pool(db_url, max_size=1) as pool:
        leadership = candidate(pool, "a", FakeClock())
    # A dead leader's term runs out at most one term after its last renewal; a standby
    # notices within one poll; both together are well within lease_seconds.
    assert leadership.term_seconds + leadership.standby_poll_seconds < DEFAULTS.lease_seconds
    assert leadership.renew_every * 3 == leadership.term_seconds


async def test_a_leader_cut_off_from_the_database_steps_down_when_its_term_ends(
    db_url: str,
) -> None:
    # Nothing listens on port 1 (loopback): every connection of this pool is refused.
    dead: AsyncConnectionPool[Any] = AsyncConnectionPool(
        "postgresql://x@127.0.0.1:1/none", open=False, timeout=1
    )
    await dead.open(wait=False)
    async with open_pool(db_url, max_size=2) as pool:
        leadership = Leadership(pool, candidate="a", lease_seconds=4, clock=DatabaseClock())
        stepped_down: list[float] = []

        async def body(done: asyncio.Event, lost: asyncio.Event) -> None:
            elected = time.monotonic()
            leadership.pool = dead  # the leader loses the database
            await lost.wait()
            stepped_down.append(time.monotonic() - elected)

        stop = asyncio.Event()
        task = asyncio.create_task(leadership.lead(stop, body))
        async with asyncio.timeout(10):
            while not stepped_down:
                await asyncio.sleep(0.05)
        stop.set()
        leadership.pool = pool
        await asyncio.wait_for(task, 10)
    await dead.close()
    # Its term is lease / 2 = 2 s from before the claim, and a standby may take over at its
    # very end: it stops before then, by the margin it keeps (not by luck of scheduling).
    assert stepped_down[0] < leadership.term_seconds
    assert leadership.step_down_margin == pytest.approx(0.2)


def closest_in_one_chat(sends: list[dict[str, Any]]) -> float:
    by_chat: dict[int, list[float]] = defaultdict(list)
    for send in sends:
        by_chat[send["chat"]].append(send["t"])
    for times in by_chat.values():
        times.sort()
    gaps = [b - a for times in by_chat.values() for a, b in itertools.pairwise(times)]
    return min(gaps)


def seed_outbox(conn: psycopg.Connection[Any], users: int, per_user: int) -> None:
    """``users`` users who wrote to the bot, each with ``per_user`` failure messages due."""
    conn.execute(
        "INSERT INTO telegram_users (user_id, access_hash)"
        " SELECT u, u * 1000 + 7 FROM generate_series(1, %s) AS u",
        (users,),
    )
    conn.execute(
        "INSERT INTO video_assets (name) SELECT 'video-' || g FROM generate_series(1, %s) AS g",
        (per_user,),
    )
    conn.execute(
        "INSERT INTO notifications (asset_id, user_id, chat_id, kind, generation, payload)"
        " SELECT a.id, u, u, 'failed', 0, jsonb_build_object('name', a.name)"
        " FROM video_assets AS a CROSS JOIN generate_series(1, %s) AS u",
        (users,),
    )


def log_of(directory: Path, pid: int) -> str:
    """What notifier ``pid`` logged (notifier-<pid>.log)."""
    return (directory / f"notifier-{pid}.log").read_text()


def sent_count(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM notifications WHERE state = 'sent'").fetchone()
    assert row is not None
    return int(row[0])


def wait_until(check: Any, *, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within:g}s: {what}")
        time.sleep(0.1)


async def test_a_new_leader_s_budget_is_what_the_outbox_says_the_bot_sent_in_the_last_second(
    db_url: str,
) -> None:
    """Whichever leader sent them: a sent row counts from when its send was recorded, a row
    still being sent from when it was handed to Telegram's library; a send older than the
    window, a row never handed over and a row waiting do not count."""
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    async with await connection.connect(db_url) as conn:
        await conn.execute(
            "INSERT INTO notifications (user_id, chat_id, kind, generation, state, sent_at,"
            " send_started_at, lease_owner, lease_token, lease_expires_at)"
            " SELECT chat, chat, 'paused', 0, state, %(now)s - sent * interval '1 s',"
            "        %(now)s - started * interval '1 s',"
            "        CASE WHEN state = 'sending' THEN 'old leader' END,"
            "        CASE WHEN state = 'sending' THEN gen_random_uuid() END,"
            "        CASE WHEN state = 'sending' THEN %(now)s END"
            " FROM (VALUES (1, 'sent', 0.5, NULL), (2, 'sent', 1.5, NULL),"
            "              (3, 'sending', NULL, 0.2), (4, 'sending', NULL, NULL),"
            "              (5, 'pending', NULL, NULL), (6, 'sent', 0.9, NULL))"
            "   AS r(chat, state, sent, started)",
            {"now": now},
        )
        recent = await outbox.recent_sends(conn, seconds=WINDOW_SECONDS, now=now)
    assert recent == [(6, pytest.approx(0.9)), (1, pytest.approx(0.5)), (3, pytest.approx(0.2))]


# The lease of this test's notifiers: a killed leader's term lapses in half of it. That the
# default lease bounds a takeover is test_the_term_and_the_standby_poll_keep_takeover_...
LEASE_SECONDS = 6


@pytest.mark.slow(seconds=20)
@pytest.mark.timeout(300)
def test_three_notifiers_one_session_one_rate_through_two_hand_overs(
    db_url: str, tmp_path: Path
) -> None:
    """Three notifiers, the default rate and chat interval, 300 messages. Part-way through,
    the leader is stopped: it resigns, and a standby takes over at once and sends the rest;
    then that one is killed, and the last takes over when its term lapses. One bot session
    at every moment, and one rate and one chat interval across the leaders, on when each
    message reached Telegram."""
    events = tmp_path / "events.jsonl"
    config = tmp_path / "vidretry.toml"
    config.write_text(
        f'[database]\nurl = "{db_url}"\n'
        f'[telegram]\napi_id = 1\napi_hash = "abc"\nsession = "{tmp_path / "bot.session"}"\n'
        f"[notifier]\nlease_seconds = {LEASE_SECONDS}\nheartbeat_seconds = 1\n"
    )
    env = {
        **os.environ,
        "VIDRETRY_TELEGRAM_BOT_TOKEN": BOT_TOKEN,
        "VIDRETRY_TEST_EVENTS": str(events),
    }
    argv = [sys.executable, "-m", "tests.telegram.bot_process", "--config", str(config), "notifier"]
    procs: dict[int, subprocess.Popen[bytes]] = {}
    killed: dict[int, float] = {}

    def sends() -> list[dict[str, Any]]:
        return [e for e in read_events(events) if e["event"] == "send"]

    try:
        for i in range(3):
            with (tmp_path / f"notifier-{i}.log").open("wb") as log:
                proc = subprocess.Popen(argv, cwd=ROOT, env=env, stderr=log, stdout=log)
            procs[proc.pid] = proc
            (tmp_path / f"notifier-{i}.log").rename(tmp_path / f"notifier-{proc.pid}.log")
        with psycopg.connect(db_url, autocommit=True) as conn:
            seed_outbox(conn, users=100, per_user=3)
            wait_until(lambda: sent_count(conn) >= 100, within=60, what="100 messages sent")
            (first,) = {e["pid"] for e in sends()}
            procs[first].send_signal(signal.SIGTERM)
            assert procs[first].wait(timeout=60) == 0
            wait_until(lambda: sent_count(conn) == 300, within=60, what="all 300 sent")

            sent = sends()
            assert len(sent) == 300
            by_leader: dict[int, list[float]] = defaultdict(list)
            for send in sent:
                by_leader[send["pid"]].append(send["t"])
            second = next(pid for pid in by_leader if pid != first)
            assert set(by_leader) == {first, second}
            assert max(by_leader[first]) < min(by_leader[second])  # one leader at a time
            assert busiest_second([e["t"] for e in sent]) <= DEFAULTS.rate_per_second
            # 10 ms for the moment between the pacer's guard and the request's arrival.
            assert closest_in_one_chat(sent) >= DEFAULTS.per_chat_interval_seconds - 0.01
            # No gap but what the pacing needs: the new leader took the budget the outbox
            # says the first left (not a pause of a whole second). How many sends that was
            # depends on how quickly it took over: printed.
            (budget,) = re.findall(
                r"the bot sent (\d+) messages in the last [\d.]+s: the next may go in ([\d.]+)s",
                log_of(tmp_path, second),
            )
            assert float(budget[1]) < WINDOW_SECONDS
            gap = min(by_leader[second]) - max(by_leader[first])
            print(f"hand-over: {budget[0]} sends in the last second, the next in "
                  f"{budget[1]}s; {gap:.2f}s between the two leaders' sends")  # fmt: skip

            procs[second].send_signal(signal.SIGKILL)
            killed[second] = time.time()
            procs[second].wait()
            conn.execute(
                "INSERT INTO notifications (asset_id, user_id, chat_id, kind, generation, payload)"
                " SELECT id, 1, 1, 'failed', 1, jsonb_build_object('name', name)"
                " FROM video_assets ORDER BY id LIMIT 1"
            )
            wait_until(
                lambda: any(e["pid"] not in (first, second) for e in sends()),
                within=LEASE_SECONDS + 5,
                what="a standby sent within lease_seconds + 5 s of the kill",
            )
    finally:
        for pid, proc in procs.items():
            if pid not in killed and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            proc.wait(timeout=30)
    assert [proc.returncode for pid, proc in procs.items() if pid not in killed] == [0, 0]
    assert most_sessions_at_once(read_events(events), killed) == 1
