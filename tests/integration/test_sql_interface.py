"""The SQL interface other programs call (vidretry_enqueue, vidretry_retry, vidretry_cancel,
vidretry_asset), through the Python API that wraps it for Python bots (vidretry.enqueue,
...), on the caller's own connection and in its transaction: rollback and commit, the wake-up
at commit, every SQLSTATE, the button's rules, and one name rule in Python and in SQL."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vidretry
from tests.support import rows, scalar
from vidretry.db import connection
from vidretry.errors import ConfigError, RefusedError
from vidretry.queue import jobs
from vidretry.queue.enqueue import normalise_name


@pytest.fixture
async def bot(db_url: str) -> Any:
    """The host bot's own connection: psycopg's defaults (tuples, not autocommit)."""
    async with await psycopg.AsyncConnection.connect(db_url) as opened:
        yield opened


async def fail_for_good(conn: connection.Connection, asset_id: int) -> None:
    (job,) = await jobs.claim(conn, owner="w", limit=1, lease_seconds=30, now=None)
    assert job.id == asset_id
    assert await jobs.fail(conn, job, owner="w", error="boom", now=None)


async def test_a_rollback_asks_for_nothing_and_the_workers_wake_at_commit(
    bot: psycopg.AsyncConnection[Any], conn: connection.Connection
) -> None:
    await conn.execute("LISTEN vidretry_jobs")
    await vidretry.enqueue(bot, "передумали", user_id=1)
    await bot.rollback()
    asset_id = await vidretry.enqueue(bot, "Маша", user_id=1, params={"voice": "alto"})
    # Not yet committed: nobody sees it, and no worker was woken.
    assert await scalar(conn, "SELECT count(*) FROM video_assets") == 0
    woken = conn.notifies(timeout=0.5)
    assert [n async for n in woken] == []
    await bot.commit()
    note = await anext(conn.notifies(timeout=5))
    assert (note.channel, note.payload) == ("vidretry_jobs", str(asset_id))
    assert await rows(conn, "SELECT name, state, owner, params FROM video_assets") == [
        {"name": "Маша", "state": "pending", "owner": 1, "params": {"voice": "alto"}}
    ]
    assert await rows(conn, "SELECT user_id, chat_id, state FROM user_requests") == [
        {"user_id": 1, "chat_id": 1, "state": "pending"}
    ]


async def test_joining_an_asset_is_what_the_command_line_does(
    bot: psycopg.AsyncConnection[Any], conn: connection.Connection
) -> None:
    first = await vidretry.enqueue(bot, " Маша ", user_id=1)
    again = await vidretry.enqueue(bot, "Маша", user_id=2, chat_id=-100, priority=4)
    nobody = await vidretry.enqueue(bot, "для витрины", user_id=None)
    await bot.commit()
    assert again == first
    assert await rows(conn, "SELECT id, priority, owner FROM video_assets ORDER BY id") == [
        {"id": first, "priority": 4, "owner": 1},
        {"id": nobody, "priority": 0, "owner": None},
    ]
    kinds = await rows(conn, "SELECT kind, actor FROM job_events ORDER BY id")
    assert kinds == [
        {"kind": "enqueued", "actor": "telegram:1"},
        {"kind": "requested", "actor": "telegram:2"},
        {"kind": "enqueued", "actor": "sql:" + bot.info.user},
    ]


async def test_max_attempts_are_the_workers(
    bot: psycopg.AsyncConnection[Any], conn: connection.Connection
) -> None:
    await jobs.set_policy(conn, fair=True, max_attempts=5, owner="w", now=None)
    await vidretry.enqueue(bot, "x", user_id=1)
    await bot.commit()
    assert await scalar(conn, "SELECT max_attempts FROM video_assets") == 5


@pytest.mark.parametrize(
    ("call", "sqlstate", "message"),
    [
        ({"name": "a\x07b"}, "VR001", "asset name must be 1 to 2000 bytes of UTF-8, not only "
         "spaces, no control characters, got 3 bytes"),
        ({"name": " \u3000 "}, "VR001", "got 0 bytes"),
        ({"name": "я" * 1001}, "VR001", "got 2002 bytes"),
        ({"user_id": 0}, "VR002", "user id must be a positive Telegram user id"),
        ({"user_id": 2**53}, "VR002", "user id must be a positive Telegram user id"),
        ({"chat_id": 0}, "VR002", "chat id must be a Telegram chat id"),
        ({"chat_id": -2**53}, "VR002", "chat id must be a Telegram chat id"),
        ({"chat_id": -2**63}, "VR002", "chat id must be a Telegram chat id"),  # the lowest
        ({"user_id": None, "chat_id": 5}, "VR002", "a chat id needs the user id"),
        ({"priority": 10}, "VR003", "priority must be an integer from 0 to 9"),
        ({"params": [1]}, "VR004", "params must be a JSON object, got array"),
    ],
)  # fmt: skip
async def test_bad_input_is_a_stable_sqlstate_and_one_line(
    bot: psycopg.AsyncConnection[Any], call: dict[str, Any], sqlstate: str, message: str
) -> None:
    args: dict[str, Any] = {"name": "x", "user_id": 1, **call}
    name = args.pop("name")
    if isinstance(args.get("params"), list):  # what another language could send
        with pytest.raises(psycopg.Error) as raw:
            await bot.execute("SELECT vidretry_enqueue('x', 1, NULL, '[1]')")
        assert raw.value.sqlstate == sqlstate
        return
    with pytest.raises(ConfigError) as error:
        await vidretry.enqueue(bot, name, **args)
    assert error.value.sqlstate == sqlstate
    assert message in str(error.value)
    assert "\n" not in str(error.value)


async def test_the_retry_button_s_rules(
    bot: psycopg.AsyncConnection[Any], conn: connection.Connection
) -> None:
    await conn.execute("UPDATE queue_policy SET admins = '{900}', max_retries_per_user_per_day = 1")
    asset_id = await vidretry.enqueue(bot, "Маша", user_id=1, chat_id=1)
    await vidretry.enqueue(bot, "Маша", user_id=2)
    await bot.commit()

    async def refused(user: int, asset: int = asset_id) -> str | None:
        with pytest.raises(RefusedError) as error:
            await vidretry.retry(bot, asset, user_id=user)
        await bot.rollback()  # an error ends the caller's transaction
        return error.value.sqlstate

    assert await refused(1) == "VR012"  # still pending: nothing to retry
    assert await refused(1, 10**9) == "VR010"
    await fail_for_good(conn, asset_id)
    assert await refused(3) == "VR011"  # never asked for it
    assert await vidretry.retry(bot, asset_id, user_id=1) == 1
    await bot.commit()
    assert await scalar(conn, "SELECT state FROM user_requests WHERE user_id = 2") == "pending"
    await fail_for_good(conn, asset_id)
    assert await refused(1) == "VR014"  # one retry a day, used
    assert await vidretry.retry(bot, asset_id, user_id=900) == 2  # an admin: any asset
    await bot.commit()
    actors = await rows(conn, "SELECT actor, detail FROM job_events WHERE kind = 'retried'")
    assert actors == [
        {"actor": "telegram:1", "detail": "retry button (host bot)"},
        {"actor": "telegram:900", "detail": "retry button (host bot)"},
    ]


async def test_a_host_bot_s_button_out_of_retries_tells_the_admins_as_vidretry_s_does(
    bot: psycopg.AsyncConnection[Any], conn: connection.Connection
) -> None:
    """One rule, one place: vidretry_press_retry answers a press with its outcome instead
    of an error, so the admins' alert of a user out of retries commits with the host bot's
    transaction, as it does for vidretry's own button and for asking again; vidretry_retry's
    VR014 takes it back with the transaction it ends."""
    await conn.execute("UPDATE queue_policy SET admins = '{900}', max_retries_per_user_per_day = 1")
    asset_id = await vidretry.enqueue(bot, "Маша", user_id=1)
    await bot.commit()

    async def press(user: int, asset: int = asset_id) -> tuple[str, int | None]:
        cur = await bot.execute("SELECT * FROM vidretry_press_retry(%s, %s)", (asset, user))
        row = await cur.fetchone()
        await bot.commit()
        assert row is not None
        return row[0], row[1]

    async def alerts() -> list[dict[str, object]]:
        query = "SELECT user_id, generation, payload FROM notifications WHERE kind = 'alert'"
        return await rows(conn, query)

    assert await press(1) == ("not_failed", 0)
    assert await press(1, 10**9) == ("not_found", None)
    await fail_for_good(conn, asset_id)
    assert await press(3) == ("forbidden", None)
    assert await press(1) == ("retried", 1)
    await fail_for_good(conn, asset_id)
    with pytest.raises(RefusedError) as refused:
        await vidretry.retry(bot, asset_id, user_id=1)
    assert refused.value.sqlstate == "VR014"
    await bot.rollback()
    assert await alerts() == []  # the error took the alert back
    assert await press(1) == ("out_of_retries", 1)
    assert await press(1) == ("out_of_retries", 1)  # told once per failure
    assert await alerts() == [
        {"user_id": 900, "generation": 1, "payload": {"name": "Маша", "user": 1, "error": "boom"}}
    ]
    # An admin has no quota; vidretry.press_retry is the same press from Python.
    assert await vidretry.press_retry(bot, asset_id, user_id=900) == ("retried", 2)
    await bot.commit()
    with pytest.raises(psycopg.DatabaseError) as bad:
        await bot.execute("SELECT * FROM vidretry_press_retry(NULL, 1)")
    assert bad.value.sqlstate == "VR002"


async def test_asking_again_is_a_retry_within_the_same_daily_quota(
    bot: psycopg.AsyncConnection[Any], conn: connection.Connection
) -> None:
    """The quota is SQL's, for every way of asking: a host bot's user out of retries who
    asks again for the failed video (vidretry_enqueue) gets no retry, as their button gets
    none. The call keeps interface version 1's answer — the asset id, no error — and the
    asset stays failed (vidretry_asset says so); the admins' alert is the button's, one per
    failure, and commits with the caller's transaction. Nothing is recorded for the user."""
    await conn.execute("UPDATE queue_policy SET admins = '{900}', max_retries_per_user_per_day = 1")
    asset_id = await vidretry.enqueue(bot, "Q1", user_id=400)
    await bot.commit()
    await fail_for_good(conn, asset_id)
    assert await vidretry.press_retry(bot, asset_id, user_id=400) == ("retried", 1)
    await bot.commit()
    await fail_for_good(conn, asset_id)
    assert await vidretry.press_retry(bot, asset_id, user_id=400) == ("out_of_retries", 1)
    await bot.commit()

    assert await scalar(conn, "SELECT vidretry_enqueue('Q1', 400)") == asset_id
    async with conn.transaction():
        await conn.execute("SELECT vidretry_enqueue('Q1', 400)")  # asked twice: told once
    cur = await bot.execute("SELECT vidretry_enqueue('Q1', 400)")
    assert await cur.fetchone() == (asset_id,)
    await bot.commit()
    assert (await vidretry.asset(bot, asset_id) or {})["state"] == "failed"
    assert await rows(conn, "SELECT state, generation FROM video_assets") == [
        {"state": "failed", "generation": 1}
    ]
    alerts = "SELECT user_id, generation, payload FROM notifications WHERE kind = 'alert'"
    assert await rows(conn, alerts) == [
        {"user_id": 900, "generation": 1, "payload": {"name": "Q1", "user": 400, "error": "boom"}}
    ]
    # Another user with retries left asks for it: retried for them; so may an admin.
    await conn.execute("UPDATE queue_policy SET max_retries_per_user_per_day = 2")
    assert await scalar(conn, "SELECT vidretry_enqueue('Q1', 401)") == asset_id
    assert await scalar(conn, "SELECT state FROM video_assets") == "pending"
    requests = "SELECT user_id, state FROM user_requests ORDER BY user_id"
    assert await rows(conn, requests) == [
        {"user_id": 400, "state": "pending"}, {"user_id": 401, "state": "pending"}
    ]  # fmt: skip


async def test_cancel_takes_back_one_request_then_the_job(
    bot: psycopg.AsyncConnection[Any], conn: connection.Connection
) -> None:
    asset_id = await vidretry.enqueue(bot, "Маша", user_id=1)
    await vidretry.enqueue(bot, "Маша", user_id=2)
    await bot.commit()
    assert await vidretry.cancel(bot, asset_id, user_id=1) == "withdrawn"
    await bot.commit()
    with pytest.raises(RefusedError) as stranger:
        await vidretry.cancel(bot, asset_id, user_id=3)
    assert stranger.value.sqlstate == "VR011"
    await bot.rollback()
    assert await vidretry.cancel(bot, asset_id, user_id=2) == "cancelled"
    await bot.commit()
    with pytest.raises(RefusedError, match=f"asset {asset_id} is cancelled: nothing to cancel"):
        await vidretry.cancel(bot, asset_id, user_id=2)
    await bot.rollback()
    assert await scalar(conn, "SELECT state FROM video_assets") == "cancelled"


async def test_an_asset_as_a_host_bot_shows_it(bot: psycopg.AsyncConnection[Any]) -> None:
    ids = [await vidretry.enqueue(bot, f"v{i}", user_id=1 + i) for i in range(3)]
    await bot.commit()
    shown = await vidretry.asset(bot, ids[2])
    assert shown is not None
    assert (shown["name"], shown["state"], shown["place"], shown["attempts"]) == (
        "v2",
        "pending",
        3,
        0,
    )
    assert await vidretry.asset(bot, 10**9) is None


async def test_interface_version(bot: psycopg.AsyncConnection[Any]) -> None:
    cur = await bot.execute("SELECT vidretry_interface_version()")
    assert await cur.fetchone() == (2,)  # 2: vidretry_press_retry


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30)
       | st.text(" \t\n\x85\u3000\u2028a", max_size=6))  # fmt: skip
def test_one_name_rule_in_python_and_in_sql(db_url: str, text: str) -> None:
    refused = None
    with psycopg.connect(db_url, autocommit=True) as conn:
        try:
            row = conn.execute("SELECT vidretry_normalise_name(%s)", (text,)).fetchone()
            in_sql = None if row is None else row[0]
        except psycopg.Error as exc:
            refused, in_sql = exc.sqlstate, None
    assert refused in (None, "VR001")
    try:
        in_python: str | None = normalise_name(text)
    except ConfigError:
        in_python = None
    assert in_sql == in_python
