"""A stateful property test of the whole lifecycle against real PostgreSQL.

Hypothesis drives random sequences of enqueue, claim, heartbeat, success, failure, crash
(every lease expires and the rescuer runs), retry from the CLI, button presses (current,
stale, by a stranger, by an admin), cancel (a user withdrawing, current or stale; an operator
cancelling the asset; asking again re-opens it), stale workers finishing late, and delivery; and the
circuit breaker: failures on two different assets in a row pause the queue and are refunded,
probes, pause and resume by hand; and the claim order: priorities, retries first within a
priority, and the fair turns users get when they ask (a higher-priority request lifts a
waiting job), the assets of the breaker's streak after the others, with every pending
job's place in line where the fair order claims it. A small model
predicts every outcome; after each step the database must match it and its invariants
hold. Time is a clock moved by hand.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Collection, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.support import FakeClock
from vidretry.db import connection
from vidretry.models import ClaimedJob
from vidretry.queue import breaker, jobs, leases, reports
from vidretry.queue.breaker import Breaker
from vidretry.queue.cancel import CancelOutcome, cancel, withdraw
from vidretry.queue.enqueue import enqueue
from vidretry.queue.retry import Actor, RetryOutcome, retry
from vidretry.telegram import outbox

T = TypeVar("T")
LEASE = 30.0
MAX_ATTEMPTS = 2
NAMES = st.sampled_from(["a", "b", "c", "d", "e", "f"])
USERS = st.integers(1, 3)
PRIORITIES = st.sampled_from([0, 0, 0, 3])
ADMIN = 99
# Two different assets failing in a row trip it; the window never forgets within a run.
BREAKER = Breaker(
    min_assets=2, window_seconds=10**6, probe_seconds=1, probe_max_seconds=4, admins=(ADMIN,)
)


@dataclass
class Pause:
    id: int
    reason: str
    announced: bool
    interval: float = BREAKER.probe_seconds
    next_probe_at: datetime | None = None
    probe_asset: int | None = None


@dataclass
class Asset:
    id: int
    state: str = "pending"
    attempts: int = 0
    retry_round: int = 0
    token: UUID | None = None
    run_at: datetime | None = None  # when it became pending: the claim order
    owner: int = 0  # the user who asked first
    priority: int = 0
    turn: int = 0  # its round in the fair order, given when it was asked for
    requests: dict[int, str] = field(default_factory=dict)  # user -> request state
    notes: set[tuple[int, str, int]] = field(default_factory=set)  # (user, kind, generation)
    # Notes never to be sent: the user withdrew their request before it went out.
    withdrawn: set[tuple[int, str, int]] = field(default_factory=set)

    def settle(self, kind: str) -> None:
        for user, state in self.requests.items():
            if state == "pending":
                self.requests[user] = "done" if kind == "ready" else "failed"
                self.notes.add((user, kind, self.retry_round))

    def cancelled(self, now: datetime) -> None:
        """The job is cancelled: nobody waits any more, or an operator said so."""
        if self.state == "running":
            self.attempts -= 1  # the attempt is given back
        self.state, self.token = "cancelled", None

    def reopened(self, now: datetime) -> None:
        self.state, self.attempts, self.retry_round = "pending", 0, self.retry_round + 1
        self.run_at = now

    def retried(self, now: datetime) -> None:
        self.state, self.attempts, self.retry_round = "pending", 0, self.retry_round + 1
        self.run_at = now
        for user, state in self.requests.items():
            if state == "failed":
                self.requests[user] = "pending"


class Lifecycle(RuleBasedStateMachine):
    def __init__(self, url: str) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.conn: connection.Connection = self.run(connection.connect(url))
        self.run(self.conn.execute(
            "TRUNCATE video_assets, user_requests, notifications, job_events, telegram_users,"
            " queue_pauses RESTART IDENTITY CASCADE;"
            " UPDATE breaker SET streak_assets = '{}', streak_times = '{}'"
        ))  # fmt: skip
        self.clock = FakeClock()
        self.assets: dict[str, Asset] = {}
        self.held: list[ClaimedJob] = []  # leases our pretend workers believe they hold
        self.delivered: set[int] = set()
        self.delivered_keys: set[tuple[int | None, int, str, int]] = set()
        self.streak: list[int] = []  # assets whose attempts failed since the last success
        self.pause: Pause | None = None
        self.notices: set[tuple[str, int]] = set()  # (kind, pause id) told to the admin

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    def teardown(self) -> None:
        self.run(self.conn.close())
        self.loop.close()

    def turn_for(self, owner: int, priority: int) -> int:
        """The fair order's turn for a job ``owner`` asks for now: the current round at the
        priority (the newest turn running, else the oldest waiting), plus the owner's jobs
        waiting there and started in this round."""
        at = [a for a in self.assets.values() if a.priority == priority]
        running = [a.turn for a in at if a.state == "running"]
        waiting = [a.turn for a in at if a.state == "pending" and a.retry_round == 0]
        current = max(
            [*([max(running)] if running else []), *([min(waiting)] if waiting else [])],
            default=0,
        )
        mine = [a for a in at if a.owner == owner]
        ahead = sum(a.state == "pending" for a in mine)
        ahead += sum(a.state == "running" and a.turn >= current for a in mine)
        return current + ahead

    def claim_order(self, *, streak: Collection[int] = ()) -> list[Asset]:
        """Pending jobs in the order they are claimed (the fair order), those of the
        breaker's ``streak`` last: while every attempt fails, they wait for the others."""
        pending = [a for a in self.assets.values() if a.state == "pending"]
        return sorted(
            pending,
            key=lambda a: (a.id in streak, -a.priority, a.retry_round == 0, a.turn, a.run_at, a.id),
        )

    def model(self, asset_id: int) -> Asset:
        return next(a for a in self.assets.values() if a.id == asset_id)

    def valid(self, job: ClaimedJob) -> bool:
        asset = self.model(job.id)
        return asset.state == "running" and asset.token == job.lease_token

    # -- rules ----------------------------------------------------------------------------

    @rule(name=NAMES, user=USERS, priority=PRIORITIES)
    def ask(self, name: str, user: int, priority: int) -> None:
        turn = self.turn_for(user, priority)  # as the database counts, before this request
        result = self.run(enqueue(
            self.conn, name, user_id=user, priority=priority, max_attempts=MAX_ATTEMPTS,
            now=self.clock.now(),
        ))  # fmt: skip
        asset = self.assets.get(name)
        if asset is None:
            asset = Asset(result.asset_id, run_at=self.clock.now(), owner=user,
                          priority=priority, turn=turn)  # fmt: skip
            self.assets[name] = asset
        elif priority > asset.priority:
            event("a waiting job lifted to a higher priority")
            asset.priority, asset.turn = priority, turn
        assert result.asset_id == asset.id
        if asset.state == "cancelled":
            event("a cancelled asset asked for again")
            asset.reopened(self.clock.now())
        # A new request, or one the user cancelled before: theirs again.
        fresh = asset.requests.get(user, "cancelled") == "cancelled"
        if asset.state in ("pending", "running"):
            if fresh:
                asset.requests[user] = "pending"
        elif asset.state == "available":
            if fresh:
                asset.requests[user] = "done"
            asset.notes.add((user, "ready", asset.retry_round))
        elif asset.state == "failed":
            if fresh:
                asset.requests[user] = "failed"
            asset.retried(self.clock.now())
        assert result.state == asset.state

    @rule(limit=st.integers(1, 3))
    def claim(self, limit: int) -> None:
        claimed = self.run(
            jobs.claim(self.conn, owner="w", limit=limit, lease_seconds=LEASE, now=self.clock.now())
        )
        # Nothing while paused; else by priority, retried jobs first, then by turn, due
        # time and id; the assets of the breaker's streak after all others.
        order = self.claim_order(streak=self.streak)
        if order != self.claim_order():
            event("a job of the breaker's streak waited for the others")
        expected = [] if self.pause else order[:limit]
        first_come = sorted(order, key=lambda a: (-a.priority, a.retry_round == 0, a.run_at, a.id))
        if not self.pause and order[:limit] != first_come[:limit]:
            event("claimed in the fair order, not first come, first served")
        assert sorted(job.id for job in claimed) == sorted(a.id for a in expected)
        for job in claimed:
            self.took(job)

    def took(self, job: ClaimedJob) -> None:
        asset = self.model(job.id)
        assert asset.state == "pending"
        asset.state, asset.attempts, asset.token = "running", asset.attempts + 1, job.lease_token
        assert job.attempts == asset.attempts
        self.held.append(job)

    @rule(wait=st.sampled_from([0, 1, 3]))
    def probe(self, wait: float) -> None:
        """Time passes; a worker with nothing to claim asks whether a probe is due."""
        self.clock.advance(wait)
        job = self.run(
            jobs.claim_probe(self.conn, owner="w", lease_seconds=LEASE, now=self.clock.now())
        )
        pause, now = self.pause, self.clock.now()
        due = sorted(
            (
                a
                for a in self.assets.values()
                if a.state == "pending" and a.run_at is not None and a.run_at <= now
            ),
            key=lambda a: (a.run_at, a.id),  # oldest first, not retries first
        )
        probing = pause is not None and pause.probe_asset is not None and (
            self.model(pause.probe_asset).state == "running"
        )  # fmt: skip
        if (
            pause is None or pause.reason != "breaker" or probing or not due
            or pause.next_probe_at is None or pause.next_probe_at > now
        ):  # fmt: skip
            assert job is None
            return
        assert job is not None
        assert job.probe
        event("probe claimed")
        assert job.id == due[0].id
        pause.probe_asset, pause.next_probe_at = job.id, now + timedelta(seconds=pause.interval)
        self.took(job)

    @precondition(lambda self: self.held)
    @rule(pick=st.integers(0, 100))
    def heartbeat(self, pick: int) -> None:
        job = self.held[pick % len(self.held)]
        alive = self.run(
            leases.extend(self.conn, leases.JOBS, [job], lease_seconds=LEASE, now=self.clock.now())
        )
        assert (job.id in alive) == self.valid(job)

    @precondition(lambda self: self.held)
    @rule(pick=st.integers(0, 100))
    def succeed(self, pick: int) -> None:
        job = self.held.pop(pick % len(self.held))
        expected = self.valid(job)
        changed = self.run(
            jobs.complete(self.conn, job, owner="w", result="/v.mp4", now=self.clock.now())
        )
        assert changed == expected  # a stale worker finishing late changes nothing
        if changed:
            asset = self.model(job.id)
            asset.state, asset.token = "available", None
            asset.settle("ready")
            self.streak.clear()
        if job.probe and changed:
            resumed = self.run(
                breaker.resume(
                    self.conn, actor="w", admins=[ADMIN], probe=job.id, now=self.clock.now()
                )
            )
            pause = self.pause
            ends = pause is not None and pause.reason == "breaker" and pause.probe_asset == job.id
            assert (resumed is not None) == ends
            if ends:
                event("a probe resumed the queue")
                self.resumed()

    def resumed(self) -> None:
        assert self.pause is not None
        if self.pause.announced:
            self.notices.add(("resumed", self.pause.id))
        self.pause = None
        self.streak.clear()

    @precondition(lambda self: self.held)
    @rule(pick=st.integers(0, 100), permanent=st.booleans())
    def fail(self, pick: int, permanent: bool) -> None:
        job = self.held.pop(pick % len(self.held))
        final = permanent or job.is_last_attempt
        failure = self.run(jobs.record_failure(
            self.conn, job, owner="w", error="boom", final=final, backoff_seconds=0,
            breaker=BREAKER, now=self.clock.now(),
        ))  # fmt: skip
        event(f"failure recorded: {failure}")
        if not self.valid(job):
            assert failure is jobs.Failure.LOST  # and nothing changed, the streak neither
            return
        asset, now = self.model(job.id), self.clock.now()
        if self.pause is not None:
            assert failure is jobs.Failure.REFUNDED
            self.refund(asset)
            self.streak.clear()  # nothing counts while paused: the streak starts afresh
            if self.pause.probe_asset == job.id:  # the probe failed: wait twice as long
                self.pause.interval = min(self.pause.interval * 2, BREAKER.probe_max_seconds)
                self.pause.next_probe_at = now + timedelta(seconds=self.pause.interval)
                self.pause.probe_asset = None
            return
        self.streak.append(job.id)
        if len(set(self.streak)) >= BREAKER.min_assets:
            assert failure is jobs.Failure.PAUSED
            self.pause = Pause(
                self.open_pause_id(), "breaker", announced=True,
                next_probe_at=now + timedelta(seconds=BREAKER.probe_seconds),
            )  # fmt: skip
            self.notices.add(("paused", self.pause.id))
            self.refund(asset)
            others = Counter(self.streak)
            others[job.id] -= 1
            for asset_id, n in others.items():
                other = self.model(asset_id)
                if n > 0 and other.state in ("pending", "running"):
                    floor = 1 if other.state == "running" else 0
                    other.attempts = max(other.attempts - n, floor)
                    if other.state == "pending":
                        other.run_at = now
            self.streak.clear()
        elif final:
            assert failure is jobs.Failure.FAILED
            asset.state, asset.token = "failed", None
            asset.settle("failed")
        else:
            assert failure is jobs.Failure.RETRY
            asset.state, asset.token, asset.run_at = "pending", None, now

    def open_pause_id(self) -> int:
        """A pause's id is opaque (a conflicting insert uses one up): the model learns it."""
        cur = self.run(self.conn.execute("SELECT id FROM queue_pauses WHERE resumed_at IS NULL"))
        (row,) = self.run(cur.fetchall())
        return int(row["id"])

    def refund(self, asset: Asset) -> None:
        asset.state, asset.token, asset.run_at = "pending", None, self.clock.now()
        asset.attempts -= 1

    @rule(pause=st.booleans())
    def operator(self, pause: bool) -> None:
        if pause:
            self.operator_pauses()
        else:
            self.operator_resumes()

    def operator_pauses(self) -> None:
        done = self.run(breaker.pause(self.conn, actor="op", detail=None, now=self.clock.now()))
        if self.pause is None:
            assert done is breaker.Paused.PAUSED
            self.pause = Pause(self.open_pause_id(), "manual", announced=False)
        elif self.pause.reason == "breaker":
            assert done is breaker.Paused.HELD
            self.pause.reason, self.pause.probe_asset = "manual", None
        else:
            assert done is breaker.Paused.ALREADY

    def operator_resumes(self) -> None:
        resumed = self.run(
            breaker.resume(self.conn, actor="op", admins=[ADMIN], now=self.clock.now())
        )
        assert (resumed is not None) == (self.pause is not None)
        if self.pause is not None:
            self.resumed()

    @rule()
    def crash_everything(self) -> None:
        """Every worker dies: leases expire, the rescuer runs, the crash counts."""
        self.clock.advance(LEASE + 1)
        rescued = self.run(
            jobs.rescue_expired(
                self.conn, owner="rescuer", lease_seconds=LEASE, now=self.clock.now()
            )
        )
        for job in rescued.exhausted:
            assert self.run(
                jobs.fail(self.conn, job, owner="rescuer", error=None, now=self.clock.now())
            )
        running = [a for a in self.assets.values() if a.state == "running"]
        assert sorted(rescued.requeued + [j.id for j in rescued.exhausted]) == sorted(
            a.id for a in running
        )
        for asset in running:
            asset.token = None
            if asset.attempts < MAX_ATTEMPTS:
                asset.state, asset.run_at = "pending", self.clock.now()
            else:
                asset.state = "failed"
                asset.settle("failed")

    @rule(name=NAMES)
    def operator_retries(self, name: str) -> None:
        asset = self.assets.get(name)
        asset_id = asset.id if asset else 10_000
        result = self.run(retry(self.conn, asset_id, Actor.operator("op"), now=self.clock.now()))
        if asset is None:
            assert result.outcome is RetryOutcome.NOT_FOUND
        elif asset.state == "failed":
            assert result.outcome is RetryOutcome.RETRIED
            asset.retried(self.clock.now())
        else:
            assert result.outcome is RetryOutcome.NOT_FAILED
            assert result.state == asset.state

    @rule(name=NAMES, user=st.one_of(USERS, st.just(ADMIN)), stale=st.booleans())
    def press_button(self, name: str, user: int, stale: bool) -> None:
        asset = self.assets.get(name)
        if asset is None:
            return
        retry_round = asset.retry_round - 1 if stale else asset.retry_round
        actor = Actor.telegram(user, is_admin=user == ADMIN)
        result = self.run(
            retry(self.conn, asset.id, actor, retry_round=retry_round, now=self.clock.now())
        )
        if user != ADMIN and user not in asset.requests:
            assert result.outcome is RetryOutcome.FORBIDDEN
        elif stale:
            assert result.outcome is RetryOutcome.STALE
        elif asset.state == "failed":
            assert result.outcome is RetryOutcome.RETRIED
            asset.retried(self.clock.now())
        else:
            assert result.outcome is RetryOutcome.NOT_FAILED

    @rule(name=NAMES, user=USERS, stale=st.booleans())
    def withdraw(self, name: str, user: int, stale: bool) -> None:
        """A user presses the cancel button of their request (or a stale one)."""
        asset = self.assets.get(name)
        asset_id = asset.id if asset else 10_000
        retry_round = None if asset is None else asset.retry_round - (1 if stale else 0)
        result = self.run(
            withdraw(self.conn, asset_id, user, retry_round=retry_round, now=self.clock.now())
        )
        if asset is None:
            assert result.outcome is CancelOutcome.NOT_FOUND
            return
        if user not in asset.requests:
            assert result.outcome is CancelOutcome.FORBIDDEN
            return
        state = asset.requests[user]
        unsent = {
            note for note in asset.notes
            if note[0] == user and note[1] in ("ready", "failed")
            and note not in asset.withdrawn and not self.is_delivered(asset, note)
            and not (note[1] == "failed" and note[2] < asset.retry_round)
        }  # fmt: skip
        if stale or not (state == "pending" or (state in ("done", "failed") and unsent)):
            assert result.outcome is CancelOutcome.NOT_OPEN
            return
        asset.requests[user] = "cancelled"
        asset.withdrawn |= unsent
        nobody = all(s != "pending" for s in asset.requests.values())
        if nobody and asset.state in ("pending", "running"):
            event(f"withdrawn: a {asset.state} job cancelled")
            assert result.outcome is CancelOutcome.CANCELLED
            assert result.was_running == (asset.state == "running")
            asset.cancelled(self.clock.now())
        else:
            assert result.outcome is CancelOutcome.WITHDRAWN

    @rule(name=NAMES)
    def operator_cancels(self, name: str) -> None:
        asset = self.assets.get(name)
        asset_id = asset.id if asset else 10_000
        result = self.run(cancel(self.conn, asset_id, Actor.operator("op"), now=self.clock.now()))
        if asset is None:
            assert result.outcome is CancelOutcome.NOT_FOUND
        elif asset.state in ("pending", "running"):
            assert result.outcome is CancelOutcome.CANCELLED
            waiting = sorted(u for u, s in asset.requests.items() if s == "pending")
            assert list(result.told_users) == waiting
            for user in waiting:
                asset.requests[user] = "cancelled"
                asset.notes.add((user, "cancelled", asset.retry_round))
            asset.cancelled(self.clock.now())
        else:
            assert result.outcome is CancelOutcome.NOT_OPEN
            assert result.state == asset.state

    def is_delivered(self, asset: Asset, note: tuple[int, str, int]) -> bool:
        return (asset.id, *note) in self.delivered_keys

    @rule(limit=st.integers(1, 5))
    def deliver(self, limit: int) -> None:
        notes = self.run(
            outbox.claim(
                self.conn, owner="n", limit=limit, lease_seconds=LEASE, now=self.clock.now()
            )
        )
        for note in notes:
            assert note.id not in self.delivered
            assert self.run(outbox.mark_sent(self.conn, note, message_id=1, now=self.clock.now()))
            self.delivered.add(note.id)
            self.delivered_keys.add((note.asset_id, note.user_id, note.kind, note.retry_round))

    # -- what must always hold ------------------------------------------------------------

    @invariant()
    def database_matches_the_model(self) -> None:
        cur = self.run(self.conn.execute(
            "SELECT id, state, attempts, max_attempts, generation, lease_token FROM video_assets"
        ))  # fmt: skip
        rows = {r["id"]: r for r in self.run(cur.fetchall())}
        assert set(rows) == {a.id for a in self.assets.values()}
        for asset in self.assets.values():
            row = rows[asset.id]
            assert (row["state"], row["attempts"], row["generation"]) == (
                asset.state, asset.attempts, asset.retry_round
            )  # fmt: skip
            assert row["attempts"] <= row["max_attempts"]
            assert (row["lease_token"] is not None) == (asset.state == "running")
            if asset.token is not None:
                assert row["lease_token"] == asset.token

    @invariant()
    def the_order_and_every_place_in_line_match(self) -> None:
        cur = self.run(self.conn.execute("SELECT id, priority, turn FROM video_assets"))
        rows = {r["id"]: (r["priority"], r["turn"]) for r in self.run(cur.fetchall())}
        assert rows == {a.id: (a.priority, a.turn) for a in self.assets.values()}
        for place, asset in enumerate(self.claim_order(), start=1):
            shown = self.run(reports.place_in_line(self.conn, asset.id))
            assert shown is not None
            assert shown.place == place

    @invariant()
    def requests_and_notifications_match(self) -> None:
        cur = self.run(self.conn.execute("SELECT asset_id, user_id, state FROM user_requests"))
        requests = {(r["asset_id"], r["user_id"]): r["state"] for r in self.run(cur.fetchall())}
        assert requests == {
            (a.id, u): s for a in self.assets.values() for u, s in a.requests.items()
        }
        cur = self.run(
            self.conn.execute(
                "SELECT id, asset_id, user_id, kind, generation, state FROM notifications"
                " WHERE asset_id IS NOT NULL"
            )
        )
        notes = self.run(cur.fetchall())
        assert {(n["asset_id"], n["user_id"], n["kind"], n["generation"]) for n in notes} == {
            (a.id, *note) for a in self.assets.values() for note in a.notes
        }
        by_id = {a.id: a for a in self.assets.values()}
        for n in notes:
            asset = by_id[n["asset_id"]]
            # A retry supersedes the failure messages of the generation it ends that were not
            # delivered yet, and a withdrawal the user's own: they are never sent.
            obsolete = (n["kind"] == "failed" and n["generation"] < asset.retry_round) or (
                (n["user_id"], n["kind"], n["generation"]) in asset.withdrawn
            )
            expected = (
                "sent" if n["id"] in self.delivered else "superseded" if obsolete else "pending"
            )
            assert n["state"] == expected

    @invariant()
    def pause_matches_the_model(self) -> None:
        cur = self.run(self.conn.execute(
            "SELECT id, reason, probe_asset, next_probe_at, probe_interval_seconds"
            " FROM queue_pauses WHERE resumed_at IS NULL"
        ))  # fmt: skip
        open_pauses = self.run(cur.fetchall())
        if self.pause is None:
            assert open_pauses == []
        else:
            (row,) = open_pauses
            pause = self.pause
            assert (row["id"], row["reason"]) == (pause.id, pause.reason)
            if pause.reason == "breaker":
                assert row["next_probe_at"] == pause.next_probe_at
                assert row["probe_interval_seconds"] == pause.interval
                assert row["probe_asset"] == pause.probe_asset
        cur = self.run(self.conn.execute(
            "SELECT user_id, kind, generation FROM notifications WHERE asset_id IS NULL"
        ))  # fmt: skip
        notices = self.run(cur.fetchall())
        assert all(n["user_id"] == ADMIN for n in notices)
        assert {(n["kind"], n["generation"]) for n in notices} == self.notices
        assert len(notices) == len(self.notices)
        cur = self.run(self.conn.execute("SELECT streak_assets FROM breaker"))
        (row,) = self.run(cur.fetchall())
        assert row["streak_assets"] == self.streak


# 5,000 steps against the database: the full suite's, not the edit loop's. About 25 s on a
# quiet machine, and a counted run: two minutes on a busy one.
@pytest.mark.slow(seconds=25)
@pytest.mark.timeout(300)
def test_lifecycle(db_url: str) -> None:
    run_state_machine_as_test(
        lambda: Lifecycle(db_url),
        settings=settings(
            max_examples=100,
            stateful_step_count=50,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
