"""The chaos run: workers and notifiers killed at random (the leading notifier above all),
PostgreSQL restarted, Telegram failing everybody for 30 s, the generator failing every job
for 20 s (the circuit breaker must pause the queue), failed assets retried from the CLI,
assets cancelled from the CLI and requests taken back by their users, and then SQL that
proves nothing was lost or done twice. One of the notifiers is send-only (beside a bot with
its own framework): it leads in its turn like the others.

    python -m tests.chaos.run            # short form, under two minutes (CI runs it)
    python -m tests.chaos.run --long     # 2,000 assets, 3,000 requests, four minutes of chaos

It starts its own embedded PostgreSQL in a temporary directory, so it can restart it.
Exit status 0 when every check holds.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.telegram.bot_process import blocked, most_sessions_at_once, read_events
from tests.telegram.double import BOT_TOKEN
from vidretry.db import connection, schema
from vidretry.db.embedded import EmbeddedServer
from vidretry.queue.cancel import withdraw
from vidretry.queue.enqueue import enqueue
from vidretry.telegram.callback_data import parse_callback_data

ROOT = Path(__file__).resolve().parents[2]
OFFLINE = ROOT / "tests" / "telegram" / "offline"
MAX_ATTEMPTS = 3
# Most users at the default priority, some paying: the fair order and priorities under chaos.
PRIORITIES = (0, 0, 0, 5)
LEASE_SECONDS = 2
NOTIFIER_LEASE_SECONDS = 3
TELEGRAM_OUTAGE_SECONDS = 30
GENERATOR_OUTAGE_SECONDS = 20
# 40 % of attempts fail anyway: eight different assets in a row is an outage, not bad luck
# (0.4^8 < 0.1 %). Probes every 1-2 s keep the run short.
BREAKER_MIN_ASSETS = 8


@dataclass(frozen=True)
class Plan:
    assets: int
    requests: int
    users: int
    chaos_seconds: float
    settle_seconds: float
    workers: int = 4
    notifiers: int = 2


SHORT = Plan(assets=200, requests=300, users=120, chaos_seconds=35, settle_seconds=60)
LONG = Plan(assets=2000, requests=3000, users=1000, chaos_seconds=240, settle_seconds=300)


@dataclass
class Process:
    kind: str  # "worker" or "notifier"
    argv: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    pids: list[int] = field(default_factory=list)  # of every start

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                self.argv, env=self.env, stdout=out, stderr=out, cwd=self.log.parent
            )
        self.pids.append(self.popen.pid)

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid


@dataclass
class Figures:
    kills: dict[int, tuple[str, float]] = field(default_factory=dict)  # pid -> (kind, time)
    notifier_kills: int = 0
    leader_kills: int = 0
    restarts_of_postgres: int = 0
    cli_retries: int = 0
    cancels: int = 0
    failures: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    send_only_pids: set[int] = field(default_factory=set)  # the send-only notifier's
    spans: dict[str, tuple[float, float]] = field(default_factory=dict)  # wall-clock times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--long", action="store_true", help="the long form")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    plan = LONG if args.long else SHORT
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    base = Path(tempfile.mkdtemp(prefix="vidretry-chaos-"))
    base.chmod(0o755)
    try:
        figures = asyncio.run(chaos(plan, base, random.Random(seed)))
    finally:
        EmbeddedServer(base / "pg").stop()
        shutil.rmtree(base, ignore_errors=True)
    print(f"chaos run: {'long' if args.long else 'short'} form, seed {seed}")
    print(f"  {plan.assets} assets, {plan.requests} requests, {plan.workers} workers, "
          f"{plan.notifiers} notifiers, {plan.chaos_seconds:g}s of chaos")  # fmt: skip
    for key, value in figures.facts.items():
        print(f"  {key}: {value}")
    for failure in figures.failures:
        print(f"  FAILED: {failure}")
    print("chaos run: " + ("all checks hold" if not figures.failures else "CHECKS FAILED"))
    return 1 if figures.failures else 0


async def chaos(plan: Plan, base: Path, rng: random.Random) -> Figures:
    server = EmbeddedServer(base / "pg")  # default durability: this is about crashes
    url = await asyncio.to_thread(server.start)
    async with await connection.connect(url) as conn:
        await schema.upgrade(conn)
        await _enqueue_everything(conn, plan, rng)
    logs = base / "logs"
    logs.mkdir()
    config = base / "vidretry.toml"
    config.write_text(
        f'[database]\nurl = "{url}"\n\n[worker]\nconcurrency = 4\nmax_attempts = {MAX_ATTEMPTS}\n'
        f"lease_seconds = {LEASE_SECONDS}\nheartbeat_seconds = 0.5\nbackoff_base_seconds = 0.1\n"
        "poll_interval_seconds = 0.2\ntimeout_seconds = 4\nshutdown_grace_seconds = 1\n"
        'handler = "python:tests.chaos.handler:generate"\n'
        f"breaker_min_assets = {BREAKER_MIN_ASSETS}\nbreaker_probe_seconds = 1\n"
        "breaker_probe_max_seconds = 2\n"
        f'output_dir = "{base / "videos"}"\n'
        f"\n[notifier]\nrate_per_second = 30\nlease_seconds = {NOTIFIER_LEASE_SECONDS}\n"
        "heartbeat_seconds = 1\npoll_interval_seconds = 0.2\nbackoff_base_seconds = 0.2\n"
        f'\n[telegram]\napi_id = 1\napi_hash = "{"0" * 32}"\n'
        f'session = "{base / "bot.session"}"\n'
    )
    outage = base / "telegram-outage"
    generator_down = base / "generator-down"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("VIDRETRY_")},
        "PYTHONPATH": os.pathsep.join([str(OFFLINE), str(ROOT)]),
        "VIDRETRY_CHAOS_LOG": str(logs),
        "VIDRETRY_CHAOS_GENERATOR_DOWN": str(generator_down),
        # For the notifiers: the Telegram double (tests/telegram/bot_process.py).
        "VIDRETRY_TELEGRAM_BOT_TOKEN": BOT_TOKEN,
        "VIDRETRY_TEST_CHAOS": "1",
        "VIDRETRY_TEST_EVENTS": str(logs / "telegram.jsonl"),
        "VIDRETRY_TEST_OUTAGE": str(outage),
    }
    cli = [sys.executable, "-m", "vidretry", "--config", str(config)]
    processes = [
        Process("worker", [*cli, "worker"], env, logs / f"worker-{i}.out")
        for i in range(plan.workers)
    ] + [
        Process("notifier", [sys.executable, "-m", "tests.telegram.bot_process",
                             "--config", str(config), "notifier",
                             *(["--send-only"] if i == plan.notifiers - 1 else [])],
                env, logs / f"notifier-{i}.out")
        for i in range(plan.notifiers)
    ]  # fmt: skip
    figures = Figures()
    for process in processes:
        process.start()
    started = time.monotonic()
    restart_at = started + plan.chaos_seconds * rng.uniform(0.3, 0.6)
    outage_at = started + rng.uniform(0, max(0.0, plan.chaos_seconds - TELEGRAM_OUTAGE_SECONDS))
    down_at = started + rng.uniform(0, max(0.0, plan.chaos_seconds - GENERATOR_OUTAGE_SECONDS - 5))
    next_retry = started + 3
    while time.monotonic() - started < plan.chaos_seconds:
        await asyncio.sleep(rng.uniform(1, 2))
        _telegram_outage(outage, outage_at, figures)
        _generator_outage(generator_down, down_at, figures)
        if generator_down.exists() and not figures.facts.get("asked during the generator outage"):
            # Users keep asking while the generator is down: their videos must not fail.
            figures.facts["asked during the generator outage"] = await _ask_more(url, plan, rng)
        victim = rng.choice(processes)
        if victim.kind == "notifier" and rng.random() < 0.7:
            # The leader is the one whose death matters: it holds the bot session.
            leader = await _leader(url, processes)
            if leader is not None:
                victim = leader
                figures.leader_kills += 1
        assert victim.popen is not None
        victim.popen.send_signal(signal.SIGKILL)
        victim.popen.wait()
        figures.kills[victim.pid] = (victim.kind, time.time())
        figures.notifier_kills += victim.kind == "notifier"
        victim.start()
        if figures.restarts_of_postgres == 0 and time.monotonic() >= restart_at:
            began = time.time()
            await asyncio.to_thread(_restart, server)
            figures.spans["postgres restart"] = (began, time.time())
            figures.restarts_of_postgres += 1
        if time.monotonic() >= next_retry:
            figures.cli_retries += await _retry_some(cli, env, url, rng)
            figures.cancels += await _cancel_some(cli, env, url, rng)
            next_retry = time.monotonic() + rng.uniform(2, 4)
    while outage.exists() or generator_down.exists():  # the chaos may end before they do
        await asyncio.sleep(0.5)
        _telegram_outage(outage, outage_at, figures)
        _generator_outage(generator_down, down_at, figures)
    settled = await _settle(url, plan.settle_seconds)
    for process in processes:
        assert process.popen is not None
        process.popen.send_signal(signal.SIGTERM)
    for process in processes:
        assert process.popen is not None
        process.popen.wait(30)
    figures.facts["settled in (s after the chaos)"] = settled
    figures.send_only_pids = set(processes[-1].pids)
    await _check(url, logs, figures)
    return figures


async def _enqueue_everything(conn: connection.Connection, plan: Plan, rng: random.Random) -> None:
    # Every user once wrote /start: the bot knows how to address them.
    await conn.execute(
        "INSERT INTO telegram_users (user_id, access_hash)"
        " SELECT u, u * 1000 + 7 FROM generate_series(1, %s) AS u",
        (plan.users,),
    )
    async with conn.transaction():
        for i in range(plan.assets):
            await enqueue(
                conn, f"chaos-{i}", user_id=rng.randint(1, plan.users), max_attempts=MAX_ATTEMPTS,
                priority=rng.choice(PRIORITIES),
            )  # fmt: skip
        for _ in range(plan.requests - plan.assets):
            asset = rng.randrange(plan.assets)
            await enqueue(
                conn,
                f"chaos-{asset}",
                user_id=rng.randint(1, plan.users),
                max_attempts=MAX_ATTEMPTS,
            )


def _telegram_outage(flag: Path, starts_at: float, figures: Figures) -> None:
    """Every send fails with a server error while the flag file exists."""
    now = time.monotonic()
    if not figures.facts.get("Telegram outage (s)") and now >= starts_at:
        flag.touch()
        figures.facts["Telegram outage (s)"] = TELEGRAM_OUTAGE_SECONDS
    if flag.exists() and now >= starts_at + TELEGRAM_OUTAGE_SECONDS:
        flag.unlink()


async def _ask_more(url: str, plan: Plan, rng: random.Random, n: int = 40) -> int:
    try:
        async with await connection.connect(url) as conn:
            for i in range(n):
                await enqueue(
                    conn, f"chaos-outage-{i}", user_id=rng.randint(1, plan.users),
                    max_attempts=MAX_ATTEMPTS,
                )  # fmt: skip
    except Exception:  # the database may be restarting: the next round asks again
        return 0
    return n


def _generator_outage(flag: Path, starts_at: float, figures: Figures) -> None:
    """Every attempt fails while the flag file exists; its span (wall clock) is kept, from
    the flag's creation to its removal (which comes at the run's next step, up to a few
    seconds after GENERATOR_OUTAGE_SECONDS when a step restarts PostgreSQL)."""
    now = time.monotonic()
    if "generator outage" not in figures.spans and now >= starts_at:
        flag.touch()
        figures.spans["generator outage"] = (time.time(), float("inf"))
        figures.facts["generator outage (s)"] = GENERATOR_OUTAGE_SECONDS
    if flag.exists() and now >= starts_at + GENERATOR_OUTAGE_SECONDS:
        flag.unlink()
        began = figures.spans["generator outage"][0]
        figures.spans["generator outage"] = (began, time.time())


async def _leader(url: str, processes: list[Process]) -> Process | None:
    try:
        async with await connection.connect(url) as conn:
            cur = await conn.execute("SELECT leader FROM leadership WHERE role = 'notifier'")
            row = await cur.fetchone()
    except Exception:  # the database may be restarting
        return None
    pid = _pid_of(row["leader"]) if row and row["leader"] else None
    return next((p for p in processes if p.popen and p.pid == pid), None)


def _restart(server: EmbeddedServer) -> None:
    server.stop()  # fast shutdown: every connection is cut
    time.sleep(1)
    server.start()


async def _retry_some(cli: list[str], env: dict[str, str], url: str, rng: random.Random) -> int:
    try:
        async with await connection.connect(url) as conn:
            cur = await conn.execute("SELECT id FROM video_assets WHERE state = 'failed'")
            failed = [row["id"] for row in await cur.fetchall()]
    except Exception:  # the database may be restarting
        return 0
    chosen = rng.sample(failed, min(3, len(failed)))
    for asset_id in chosen:
        await asyncio.to_thread(
            subprocess.run, [*cli, "retry", str(asset_id), "--reason", "chaos"], env=env,
            capture_output=True, check=False,
        )  # fmt: skip
    return len(chosen)


async def _cancel_some(cli: list[str], env: dict[str, str], url: str, rng: random.Random) -> int:
    """An operator cancels one asset still to be made (or being made) from the CLI, and two
    users take back a waiting request each (the cancel button's service)."""
    try:
        async with await connection.connect(url) as conn:
            cur = await conn.execute(
                "SELECT a.id, r.user_id FROM video_assets AS a"
                " JOIN user_requests AS r ON r.asset_id = a.id AND r.state = 'pending'"
                " WHERE a.state IN ('pending', 'running')"
            )
            open_requests = [(row["id"], row["user_id"]) for row in await cur.fetchall()]
            chosen = rng.sample(open_requests, min(3, len(open_requests)))
            for asset_id, user_id in chosen[1:]:
                await withdraw(conn, asset_id, user_id)
    except Exception:  # the database may be restarting
        return 0
    for asset_id, _ in chosen[:1]:
        await asyncio.to_thread(
            subprocess.run, [*cli, "cancel", str(asset_id), "--reason", "chaos"], env=env,
            capture_output=True, check=False,
        )  # fmt: skip
    return len(chosen)


async def _settle(url: str, seconds: float) -> float:
    """Wait until every asset is terminal and every notification sent or dead."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        try:
            async with await connection.connect(url) as conn:
                cur = await conn.execute(
                    "SELECT (SELECT count(*) FROM video_assets"
                    "        WHERE state IN ('pending', 'running'))"
                    " + (SELECT count(*) FROM notifications"
                    "    WHERE state IN ('pending', 'sending')) AS open"
                )
                row = await cur.fetchone()
                if row and row["open"] == 0:
                    return round(time.monotonic() - started, 1)
        except Exception:
            pass
        await asyncio.sleep(0.5)
    return -1.0


async def _check(url: str, logs: Path, figures: Figures) -> None:
    fail = figures.failures.append
    facts = figures.facts
    async with await connection.connect(url) as conn:

        async def rows(query: str) -> list[dict[str, Any]]:
            cur = await conn.execute(query)  # type: ignore[arg-type]
            return [dict(r) for r in await cur.fetchall()]

        async def by_state(table: str) -> dict[str, int]:
            query = f"SELECT state, count(*) AS n FROM {table} GROUP BY 1"
            return {r["state"]: r["n"] for r in await rows(query)}

        states = await by_state("video_assets")
        facts["assets by final state"] = states
        if set(states) - {"available", "failed", "cancelled"}:
            fail(f"assets not in a final state: {states}")
        facts["cancels (an operator's, a user's)"] = figures.cancels
        claimed_after = await rows(
            "SELECT c.asset_id FROM job_events AS c JOIN job_events AS k"
            " ON k.asset_id = c.asset_id AND k.generation = c.generation"
            " AND k.kind = 'claimed' AND k.id > c.id WHERE c.kind = 'cancelled'"
        )
        if claimed_after:
            fail(f"{len(claimed_after)} cancelled job(s) claimed again: {claimed_after[:3]}")
        stranded = await rows(
            "SELECT a.id FROM video_assets AS a JOIN user_requests AS r ON r.asset_id = a.id"
            " WHERE a.state = 'cancelled' AND r.state = 'pending'"
        )
        if stranded:
            fail(f"{len(stranded)} cancelled asset(s) with a user still waiting: {stranded[:3]}")

        # Attempts that counted: claimed, less those handed back at shutdown, those
        # refunded because the queue was paused, and "slow down" answers.
        over = await rows(
            "SELECT asset_id, generation, count(*) FILTER (WHERE kind = 'claimed')"
            " - count(*) FILTER (WHERE kind IN ('released', 'refunded', 'rate_limited'))"
            " AS attempts FROM job_events GROUP BY 1, 2"
            " HAVING count(*) FILTER (WHERE kind = 'claimed') - count(*) FILTER"
            f" (WHERE kind IN ('released', 'refunded', 'rate_limited')) > {MAX_ATTEMPTS}"
        )
        if over:
            fail(f"{len(over)} retry round(s) ran more than {MAX_ATTEMPTS} attempts: {over[:3]}")
        facts["attempts (claims)"] = (
            await rows("SELECT count(*) AS n FROM job_events WHERE kind = 'claimed'")
        )[0]["n"]
        facts["retries from the CLI"] = figures.cli_retries

        # Every user still waiting when a retry round failed was told once; a user who took
        # their request back (cancelled) may have been told of an earlier retry round or not.
        missing = await rows(
            """
            SELECT e.asset_id, e.generation,
                   (SELECT count(*) FROM user_requests r WHERE r.asset_id = e.asset_id
                      AND r.state <> 'cancelled' AND NOT EXISTS (
                          SELECT 1 FROM notifications n WHERE n.asset_id = r.asset_id
                            AND n.user_id = r.user_id AND n.generation = e.generation
                            AND n.kind = 'failed')) AS unnotified,
                   (SELECT count(*) FROM notifications n WHERE n.asset_id = e.asset_id
                      AND n.generation = e.generation AND n.kind = 'failed'
                      AND NOT EXISTS (SELECT 1 FROM user_requests r
                                      WHERE r.asset_id = n.asset_id
                                        AND r.user_id = n.user_id)) AS strangers
            FROM job_events e WHERE e.kind = 'failed'
            """
        )
        wrong = [m for m in missing if m["unnotified"] or m["strangers"]]
        if wrong:
            fail(
                f"{len(wrong)} failed retry round(s) without one notification per user: {wrong[:3]}"
            )
        facts["failed retry rounds"] = len(missing)

        outbox = await by_state("notifications")
        facts["notifications by final state"] = outbox
        if set(outbox) - {"sent", "dead", "superseded"}:
            fail(f"notifications not settled: {outbox}")
        reasonless = await rows(
            "SELECT id FROM notifications WHERE state = 'dead' AND last_error IS NULL"
        )
        if reasonless:
            fail(f"{len(reasonless)} dead notification(s) without a reason")
        dead = await rows("SELECT user_id, last_error FROM notifications WHERE state = 'dead'")
        wrongly_dead = [d for d in dead if not blocked(d["user_id"])]
        if wrongly_dead:
            fail(f"{len(wrongly_dead)} notification(s) dead for a user who did not block the bot: "
                 f"{wrongly_dead[:3]}")  # fmt: skip

        await _check_breaker(rows, figures)

        rescues = await rows("SELECT detail, created_at FROM job_events WHERE kind = 'rescued'")
        delays: list[float] = []  # from a kill to the rescue of its jobs
        across_restart: list[float] = []  # the same, with the database restarted meanwhile
        late: list[str] = []
        for rescue in rescues:
            pid = _pid_in(rescue["detail"])
            if pid not in figures.kills:
                continue
            killed = figures.kills[pid][1]
            delay = rescue["created_at"].timestamp() - killed
            allowed = LEASE_SECONDS + 3  # the lease runs out, the next look for it (a poll)
            down = _restart_within(figures, killed, killed + allowed)
            if down:
                # The database was restarted before the rescue was due: nobody can rescue
                # while it is down, and the workers' reconnect backoff doubles (0.5 s, 1 s,
                # 2 s...), so they find it back up to about as long again after it is.
                allowed += 2 * down
                across_restart.append(delay)
            else:
                delays.append(delay)
            if delay > allowed:
                late.append(f"{delay:.1f}s (allowed {allowed:.1f}s)")
        facts["jobs rescued after a lost lease"] = len(rescues)
        facts["longest rescue delay after a kill (s)"] = round(max(delays), 2) if delays else None
        facts["the same, across the database's restart (s)"] = (
            f"{max(across_restart):.2f} (restarted in {_span(figures, 'postgres restart'):.1f})"
            if across_restart
            else None
        )
        if late:
            fail(f"a rescue took {late[0]}: more than the lease plus a poll"
                 " (and the database's restart, with a reconnect)")  # fmt: skip

    facts["processes killed"] = (
        f"{len(figures.kills)} ({figures.notifier_kills} notifiers, "
        f"{figures.leader_kills} of them leading)"
    )
    facts["postgres restarts"] = figures.restarts_of_postgres
    overlaps = _overlapping_runs(logs, figures.kills)
    facts["jobs that ran in two workers at once"] = len(overlaps)
    if overlaps:
        fail(f"attempts overlapped: {overlaps[:3]}")
    # A failure message's button names its asset, and its retry round unless a send-only
    # notifier sent it (retry_video:<id>): failures are counted by asset and chat, against
    # the failure notifications of that asset and user that were delivered.
    sends: Counter[str] = Counter()
    events = read_events(logs / "telegram.jsonl")
    for event in events:
        if event["event"] == "send":
            key = event["key"]
            if key.startswith("failed "):
                press = parse_callback_data(key.removeprefix("failed ").encode())
                key = f"failed {press.asset_id if press else key}"
            sends[f"{key} {event['chat']}"] += 1
    facts["messages sent by the send-only notifier"] = sum(
        e["event"] == "send" and e["pid"] in figures.send_only_pids for e in events
    )
    most = most_sessions_at_once(events, {pid: t for pid, (_, t) in figures.kills.items()})
    facts["bot sessions at once (at most)"] = most
    if most > 1:
        fail(f"{most} bot sessions were logged in at once")
    delivered = Counter[str]()
    async with await connection.connect(url) as conn:
        cur = await conn.execute(
            "SELECT asset_id, chat_id, count(*) AS n FROM notifications"
            " WHERE kind = 'failed' AND state = 'sent' GROUP BY 1, 2"
        )
        for row in await cur.fetchall():
            delivered[f"failed {row['asset_id']} {row['chat_id']}"] = row["n"]
    duplicates = sum(max(0, n - max(1, delivered[key])) for key, n in sends.items())
    facts["messages sent"] = sum(sends.values())
    facts["duplicate sends (notifier kills)"] = f"{duplicates} ({figures.notifier_kills})"
    if duplicates > figures.notifier_kills:
        fail(f"{duplicates} duplicate sends for {figures.notifier_kills} notifier kills")


async def _check_breaker(
    rows: Callable[[str], Awaitable[list[dict[str, Any]]]], figures: Figures
) -> None:
    """The generator outage paused the queue, every pause ended, and no asset failed for
    good while the queue was paused (except a crash on its last attempt: that is no
    failure of the generator)."""
    fail = figures.failures.append
    pauses = await rows("SELECT paused_at, resumed_at, refunded, probes FROM queue_pauses")
    figures.facts["pauses by the breaker (attempts refunded)"] = (
        f"{len(pauses)} ({sum(p['refunded'] for p in pauses)})"
    )
    if any(p["resumed_at"] is None for p in pauses):
        fail("the queue is still paused after the generator came back")
    # The queue must have been paused during the outage: by the outage's failures (recorded
    # within a lease of the attempt, through a database restart too, so the pause may
    # commit up to a lease after the flag is gone), or by a pause still open when it began.
    start, end = figures.spans.get("generator outage", (0.0, 0.0))
    end += LEASE_SECONDS
    if start and not any(
        p["paused_at"].timestamp() <= end
        and (p["resumed_at"] is None or p["resumed_at"].timestamp() >= start)
        for p in pauses
    ):
        fail("the generator outage did not pause the queue")
    while_paused = [
        f for f in await rows(
            "SELECT e.created_at, e.detail FROM job_events AS e JOIN queue_pauses AS p"
            " ON e.created_at > p.paused_at AND e.created_at < p.resumed_at"
            " WHERE e.kind = 'failed' AND e.detail NOT LIKE 'lease of %'"
        )
    ]  # fmt: skip
    figures.facts["final failures while paused"] = len(while_paused)
    if while_paused:
        fail(f"{len(while_paused)} asset(s) failed for good while paused: {while_paused[:3]}")


def _span(figures: Figures, name: str) -> float:
    began, ended = figures.spans.get(name, (0.0, 0.0))
    return ended - began


def _restart_within(figures: Figures, start: float, end: float) -> float:
    """How long PostgreSQL's restart took, if it began between ``start`` and ``end`` or was
    under way at ``start`` (wall clock); else 0."""
    began, ended = figures.spans.get("postgres restart", (0.0, 0.0))
    return ended - began if began <= end and ended >= start and ended > began else 0.0


def _pid_of(name: str) -> int | None:
    try:
        return int(name.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return None


def _pid_in(detail: str) -> int | None:
    # "lease of host:1234 expired (worker lost)"
    try:
        return int(detail.split("lease of ", 1)[1].split(" ", 1)[0].rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return None


def _overlapping_runs(logs: Path, kills: dict[int, tuple[str, float]]) -> list[str]:
    """Attempts of one asset whose [start, end] intervals overlap. An attempt whose worker
    was killed ends at the kill."""
    runs: dict[str, dict[str, list[float]]] = defaultdict(dict)  # token -> start/end
    assets: dict[str, str] = {}
    pids: dict[str, int] = {}
    for log in logs.glob("handler-*.log"):
        for line in log.read_text().splitlines():
            event, asset, _gen, _attempt, token, pid, at = line.split()
            runs[token].setdefault(event, []).append(float(at))
            assets[token] = asset
            pids[token] = int(pid)
    intervals: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    for token, events in runs.items():
        start = min(events["start"])
        end = (
            max(events["end"]) if "end" in events else kills.get(pids[token], ("", float("inf")))[1]
        )
        intervals[assets[token]].append((start, end, token))
    overlaps = []
    for asset, spans in intervals.items():
        spans.sort()
        for (_s1, e1, t1), (s2, _e2, t2) in itertools.pairwise(spans):
            if s2 < e1:
                overlaps.append(f"asset {asset}: {t1} and {t2}")
    return overlaps


if __name__ == "__main__":
    sys.exit(main())
