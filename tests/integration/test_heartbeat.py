"""One heartbeat for every lease a process holds: the same LeaseKeeper keeps a notifier's
sends alive as it keeps a worker's jobs, with the outbox's own statement."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from uuid import uuid4

from tests.integration.test_set_aside import seed
from tests.support import FakeClock, eventually, scalar
from vidretry.db import connection
from vidretry.db.pool import open_pool
from vidretry.queue import leases
from vidretry.queue.leases import LeaseKeeper
from vidretry.telegram import outbox
from vidretry.telegram.outbox import Notification

LEASE = 30.0


async def test_the_heartbeat_keeps_a_sends_lease_and_stops_a_send_whose_lease_is_gone(
    db_url: str, clock: FakeClock
) -> None:
    async with await connection.connect(db_url) as conn:
        await seed(conn, clock)  # two notifications, due
        kept, taken = await outbox.claim(
            conn, owner="n", limit=10, lease_seconds=LEASE, now=clock.now()
        )
        await conn.commit()
    # Another notifier holds this one's row now: its lease token is not ours.
    impostor = dataclasses.replace(taken, lease_token=uuid4())
    clock.advance(10)

    async with open_pool(db_url, max_size=2) as pool:
        keeper: LeaseKeeper[Notification] = LeaseKeeper(
            pool, leases.NOTIFICATIONS, heartbeat_seconds=0.2, lease_seconds=LEASE, clock=clock
        )

        async def send(note: Notification) -> bool:
            """An upload that outlasts the beats: True if its lease was lost."""
            held = keeper.hold(note)
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                return held.cancelled_for_its_lease()
            finally:
                keeper.release(held)
            return False

        sending = asyncio.create_task(send(kept))
        lost = asyncio.create_task(send(impostor))
        try:
            assert await asyncio.wait_for(lost, timeout=10) is True

            async def extended() -> bool:
                async with pool.connection() as conn:
                    expires = await scalar(
                        conn, "SELECT lease_expires_at FROM notifications WHERE id = %s", kept.id
                    )
                return bool(expires == clock.now() + timedelta(seconds=LEASE))

            # The held send's lease runs from the beat on (the clock moved on since the claim).
            assert await eventually(extended, within=10)
            assert not sending.done()
        finally:
            sending.cancel()
            await keeper.stop()
