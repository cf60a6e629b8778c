"""The outbox's crash count (schema 12), statement by statement: a rescued row is charged a
crash only if its send had begun, an answer ends a run of crashes, and the third crash in a
row sets the row aside with one notice per admin."""

from __future__ import annotations

from tests.support import FakeClock, rows
from vidretry.db import connection
from vidretry.queue.maintenance import rescue_notifications
from vidretry.telegram import outbox
from vidretry.telegram.outbox import Notification

LEASE = 30.0
ADMINS = (900, 901)


async def seed(conn: connection.Connection, clock: FakeClock) -> None:
    await conn.execute(
        "INSERT INTO video_assets (name) SELECT 'video ' || g FROM generate_series(1, 2) AS g"
    )
    await conn.execute(
        "INSERT INTO notifications (asset_id, user_id, chat_id, kind, generation, payload,"
        " created_at, next_attempt_at)"
        " SELECT id, id, id, 'failed', 0, jsonb_build_object('name', name), %s, %s"
        " FROM video_assets",
        (clock.now(), clock.now()),
    )


async def claim(conn: connection.Connection, clock: FakeClock) -> dict[int, Notification]:
    notes = await outbox.claim(conn, owner="n", limit=10, lease_seconds=LEASE, now=clock.now())
    return {note.user_id: note for note in notes}


async def rescue(conn: connection.Connection, clock: FakeClock) -> rescue_notifications.Rescued:
    clock.advance(LEASE + 1)
    return await rescue_notifications.rescue_expired(
        conn, give_up_after_seconds=86400, admins=ADMINS, now=clock.now()
    )


async def crashes(conn: connection.Connection) -> dict[int, tuple[str, int]]:
    found = await rows(
        conn, "SELECT user_id, state, crashes FROM notifications WHERE asset_id IS NOT NULL"
    )
    return {row["user_id"]: (row["state"], row["crashes"]) for row in found}


async def test_only_a_send_under_way_is_charged_and_an_answer_ends_the_run(
    db_url: str, clock: FakeClock
) -> None:
    async with await connection.connect(db_url) as conn:
        await seed(conn, clock)
        claimed = await claim(conn, clock)
        assert await outbox.mark_started(conn, [claimed[1]], now=clock.now()) == {1}
        back = await rescue(conn, clock)  # the notifier died: 1 was being sent, 2 waited
        assert back == rescue_notifications.Rescued(count=2, set_aside=())
        assert await crashes(conn) == {1: ("pending", 1), 2: ("pending", 0)}
        # Sent again, and Telegram answered (a transient error): the run of crashes ends.
        claimed = await claim(conn, clock)
        assert await outbox.mark_started(conn, [claimed[1]], now=clock.now()) == {1}
        state = await outbox.reschedule(
            conn, claimed[1], delay_seconds=0, error="x", refund=True,
            give_up_after_seconds=86400, now=clock.now(),
        )  # fmt: skip
        assert state == "pending"
        # Given back before its send began (its chat was busy): the count stays as it was.
        assert await crashes(conn) == {1: ("pending", 0), 2: ("sending", 0)}
        # A mark needs the row's lease: a stale token marks nothing.
        await rescue(conn, clock)
        assert await outbox.mark_started(conn, [claimed[2]], now=clock.now()) == set()


async def test_the_third_crash_in_a_row_sets_the_row_aside_and_tells_each_admin_once(
    db_url: str, clock: FakeClock
) -> None:
    async with await connection.connect(db_url) as conn:
        await seed(conn, clock)
        for crash in range(1, rescue_notifications.MAX_CRASHES + 1):
            claimed = await claim(conn, clock)
            await outbox.mark_started(conn, [claimed[1]], now=clock.now())
            back = await rescue(conn, clock)
            assert back.set_aside == (
                () if crash < rescue_notifications.MAX_CRASHES else (claimed[1].id,)
            )
        assert await crashes(conn) == {1: ("dead", 3), 2: ("pending", 0)}
        (dead,) = await rows(conn, "SELECT last_error FROM notifications WHERE user_id = 1")
        assert dead["last_error"].startswith("crashed the notifier 3 times while sending it")
        notices = await rows(
            conn,
            "SELECT user_id, chat_id, state, generation, payload FROM notifications"
            " WHERE kind = 'set_aside' ORDER BY user_id",
        )
        assert [(n["user_id"], n["chat_id"], n["state"]) for n in notices] == [
            (900, 900, "pending"),
            (901, 901, "pending"),
        ]
        assert {n["generation"] for n in notices} == {claimed[1].id}
        assert notices[0]["payload"] == {
            "notification": claimed[1].id, "kind": "failed", "user": 1, "asset": 1,
            "name": "video 1", "crashes": 3,
        }  # fmt: skip
        # A notice that itself kills the notifier three times is set aside too, with no
        # notice of its own (notices must not breed); row 2 gets its two.
        for _ in range(rescue_notifications.MAX_CRASHES):
            for note in (await claim(conn, clock)).values():
                await outbox.mark_started(conn, [note], now=clock.now())
            await rescue(conn, clock)
        notices = await rows(
            conn,
            "SELECT id, state, generation FROM notifications WHERE kind = 'set_aside' ORDER BY id",
        )
        assert [(n["state"], n["generation"]) for n in notices] == [
            ("dead", claimed[1].id), ("dead", claimed[1].id),
            ("pending", claimed[2].id), ("pending", claimed[2].id),
        ]  # fmt: skip


async def test_a_claim_does_not_wait_for_the_disk_and_the_mark_before_a_send_does(
    db_url: str, clock: FakeClock
) -> None:
    # The claim commits without waiting for its WAL to be flushed; the mark that precedes
    # every send commits as the connection says, and its flush takes the claim with it.
    async with await connection.connect(db_url) as conn:
        await seed(conn, clock)
        await conn.execute("SET synchronous_commit = on")  # as on a production server
        await conn.execute("CREATE TABLE seen (what text, setting text)")
        await conn.execute(
            "CREATE FUNCTION note_setting() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " INSERT INTO seen VALUES (TG_ARGV[0], current_setting('synchronous_commit'));"
            " RETURN NEW; END $$"
        )
        await conn.execute(
            "CREATE TRIGGER claimed BEFORE UPDATE ON notifications FOR EACH ROW"
            " WHEN (NEW.send_started_at IS NULL) EXECUTE FUNCTION note_setting('claim')"
        )
        await conn.execute(
            "CREATE TRIGGER marked BEFORE UPDATE ON notifications FOR EACH ROW"
            " WHEN (NEW.send_started_at IS NOT NULL) EXECUTE FUNCTION note_setting('mark')"
        )
        claimed = await claim(conn, clock)
        assert await outbox.mark_started(conn, [claimed[1]], now=clock.now()) == {1}
        assert await rows(conn, "SELECT DISTINCT what, setting FROM seen ORDER BY what") == [
            {"what": "claim", "setting": "off"},
            {"what": "mark", "setting": "on"},
        ]
        assert await rows(conn, "SHOW synchronous_commit") == [{"synchronous_commit": "on"}]
