"""A stateful property test of the whole lifecycle against real PostgreSQL.

Hypothesis drives random sequences of enqueue, claim, heartbeat, success, failure, crash
(every lease expires and the rescuer runs), retry from the CLI, button presses (current,
stale, by a stranger, by an admin), stale workers finishing late, and delivery. A small model
predicts every outcome; after each step the database must match it and its invariants hold.
Time is a clock moved by hand.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar
from uuid import UUID

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.support import FakeClock
from vidretry import db, jobs, outbox
from vidretry.enqueue import enqueue
from vidretry.models import ClaimedJob
from vidretry.retry import Actor, RetryOutcome, retry

T = TypeVar("T")
LEASE = 30.0
MAX_ATTEMPTS = 2
NAMES = st.sampled_from(["a", "b", "c"])
USERS = st.integers(1, 4)
ADMIN = 99


@dataclass
class Asset:
    id: int
    state: str = "pending"
    attempts: int = 0
    generation: int = 0
    token: UUID | None = None
    requests: dict[int, str] = field(default_factory=dict)  # user -> request state
    notes: set[tuple[int, str, int]] = field(default_factory=set)  # (user, kind, generation)

    def settle(self, kind: str) -> None:
        for user, state in self.requests.items():
            if state == "pending":
                self.requests[user] = "done" if kind == "ready" else "failed"
                self.notes.add((user, kind, self.generation))

    def retried(self) -> None:
        self.state, self.attempts, self.generation = "pending", 0, self.generation + 1
        for user, state in self.requests.items():
            if state == "failed":
                self.requests[user] = "pending"


class Lifecycle(RuleBasedStateMachine):
    def __init__(self, url: str) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.conn: db.Connection = self.run(db.connect(url))
        self.run(self.conn.execute(
            "TRUNCATE video_assets, user_requests, notifications, job_events, telegram_users"
            " RESTART IDENTITY CASCADE"
        ))  # fmt: skip
        self.clock = FakeClock()
        self.assets: dict[str, Asset] = {}
        self.held: list[ClaimedJob] = []  # leases our pretend workers believe they hold
        self.delivered: set[int] = set()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    def teardown(self) -> None:
        self.run(self.conn.close())
        self.loop.close()

    def model(self, asset_id: int) -> Asset:
        return next(a for a in self.assets.values() if a.id == asset_id)

    def valid(self, job: ClaimedJob) -> bool:
        asset = self.model(job.id)
        return asset.state == "running" and asset.token == job.lease_token

    # -- rules ----------------------------------------------------------------------------

    @rule(name=NAMES, user=USERS)
    def ask(self, name: str, user: int) -> None:
        result = self.run(
            enqueue(self.conn, name, user_id=user, max_attempts=MAX_ATTEMPTS, now=self.clock.now())
        )
        asset = self.assets.setdefault(name, Asset(result.asset_id))
        assert result.asset_id == asset.id
        new_user = user not in asset.requests
        if asset.state in ("pending", "running"):
            asset.requests.setdefault(user, "pending")
        elif asset.state == "available":
            if new_user:
                asset.requests[user] = "done"
            asset.notes.add((user, "ready", asset.generation))
        elif asset.state == "failed":
            asset.requests.setdefault(user, "failed")
            asset.retried()
        assert result.state == asset.state

    @rule(limit=st.integers(1, 3))
    def claim(self, limit: int) -> None:
        claimed = self.run(
            jobs.claim(self.conn, owner="w", limit=limit, lease_seconds=LEASE, now=self.clock.now())
        )
        pending = [a for a in self.assets.values() if a.state == "pending"]
        assert len(claimed) == min(limit, len(pending))
        for job in claimed:
            asset = self.model(job.id)
            assert asset.state == "pending"
            asset.state, asset.attempts, asset.token = (
                "running",
                asset.attempts + 1,
                job.lease_token,
            )
            assert job.attempts == asset.attempts
            self.held.append(job)

    @precondition(lambda self: self.held)
    @rule(pick=st.integers(0, 100))
    def heartbeat(self, pick: int) -> None:
        job = self.held[pick % len(self.held)]
        alive = self.run(
            jobs.extend_leases(self.conn, [job], lease_seconds=LEASE, now=self.clock.now())
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

    @precondition(lambda self: self.held)
    @rule(pick=st.integers(0, 100), permanent=st.booleans())
    def fail(self, pick: int, permanent: bool) -> None:
        job = self.held.pop(pick % len(self.held))
        expected = self.valid(job)
        asset = self.model(job.id)
        if permanent or job.is_last_attempt:
            changed = self.run(
                jobs.fail(self.conn, job, owner="w", error="boom", now=self.clock.now())
            )
            if changed:
                asset.state, asset.token = "failed", None
                asset.settle("failed")
        else:
            changed = self.run(jobs.retry_later(
                self.conn, job, owner="w", error="boom", backoff_seconds=0, now=self.clock.now()
            ))  # fmt: skip
            if changed:
                asset.state, asset.token = "pending", None
        assert changed == expected

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
                asset.state = "pending"
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
            asset.retried()
        else:
            assert result.outcome is RetryOutcome.NOT_FAILED
            assert result.state == asset.state

    @rule(name=NAMES, user=st.one_of(USERS, st.just(ADMIN)), stale=st.booleans())
    def press_button(self, name: str, user: int, stale: bool) -> None:
        asset = self.assets.get(name)
        if asset is None:
            return
        generation = asset.generation - 1 if stale else asset.generation
        actor = Actor.telegram(user, is_admin=user == ADMIN)
        result = self.run(
            retry(self.conn, asset.id, actor, generation=generation, now=self.clock.now())
        )
        if user != ADMIN and user not in asset.requests:
            assert result.outcome is RetryOutcome.FORBIDDEN
        elif stale:
            assert result.outcome is RetryOutcome.STALE
        elif asset.state == "failed":
            assert result.outcome is RetryOutcome.RETRIED
            asset.retried()
        else:
            assert result.outcome is RetryOutcome.NOT_FAILED

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
                asset.state, asset.attempts, asset.generation
            )  # fmt: skip
            assert row["attempts"] <= row["max_attempts"]
            assert (row["lease_token"] is not None) == (asset.state == "running")
            if asset.token is not None:
                assert row["lease_token"] == asset.token

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
            )
        )
        notes = self.run(cur.fetchall())
        assert {(n["asset_id"], n["user_id"], n["kind"], n["generation"]) for n in notes} == {
            (a.id, *note) for a in self.assets.values() for note in a.notes
        }
        generation = {a.id: a.generation for a in self.assets.values()}
        for n in notes:
            # A retry supersedes the failure messages of the generation it ends that were not
            # delivered yet: they are never sent.
            obsolete = n["kind"] == "failed" and n["generation"] < generation[n["asset_id"]]
            expected = (
                "sent" if n["id"] in self.delivered else "superseded" if obsolete else "pending"
            )
            assert n["state"] == expected


def test_lifecycle(db_url: str) -> None:
    run_state_machine_as_test(
        lambda: Lifecycle(db_url),
        settings=settings(
            max_examples=60,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
