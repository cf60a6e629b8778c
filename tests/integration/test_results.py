"""Keeping finished videos, against a real database and a store in memory: an unreachable
store holds the job (no attempt spent, nothing for the breaker) and the admins hear of it
once; a store that comes back takes the video; what is wrong with a result itself is the
attempt's."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.integration.test_breaker import Recorder
from tests.integration.test_worker import FAST, add
from tests.memory_store import MemoryStore
from tests.support import FakeClock, eventually, rows, scalar
from vidretry.config import WorkerConfig
from vidretry.db import connection
from vidretry.db.pool import open_pool
from vidretry.queue.breaker import Breaker
from vidretry.queue.handlers import build_handler
from vidretry.queue.worker import Worker
from vidretry.results.base import MIB
from vidretry.results.keeping import Results
from vidretry.telegram import outbox
from vidretry.telegram.notifications import deliver_to
from vidretry.texts import MessagesConfig

ADMIN = 900


@asynccontextmanager
async def running(
    db_url: str, config: WorkerConfig, results: Results, clock: FakeClock, **options: float
) -> AsyncIterator[Worker]:
    """A worker running until the block ends (then stopped as SIGTERM stops it)."""
    async with open_pool(db_url, max_size=4) as pool:
        worker = Worker(
            pool, config, build_handler(config), listener=None, clock=clock,
            rng=random.Random(1), breaker=Breaker(admins=(ADMIN,)),
            results=results, **options,
        )  # fmt: skip
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            yield worker
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)


async def asset_row(conn: connection.Connection, asset: int) -> dict[str, object]:
    (row,) = await rows(conn, "SELECT * FROM video_assets WHERE id = %s", asset)
    return row


async def test_a_store_outage_holds_the_video_spends_no_attempt_and_tells_the_admins_once(
    db_url: str, tmp_path: Path
) -> None:
    store = MemoryStore()
    store.down = True
    clock = FakeClock()
    config = replace(FAST, output_dir=tmp_path, handler="python:tests.sample_handlers:made")
    (asset,) = await add(db_url, "a")
    async with await connection.connect(db_url) as conn:

        async def outage_noted() -> bool:
            return bool(await scalar(conn, "SELECT count(*) FROM store_outage"))

        async def notices() -> list[dict[str, object]]:
            query = "SELECT user_id, payload FROM notifications WHERE kind = 'store_down'"
            return await rows(conn, query)

        async def available() -> bool:
            return (await asset_row(conn, asset))["state"] == "available"

        results = Results(store, scratch=tmp_path)
        async with running(db_url, config, results, clock, store_alert_seconds=60):
            assert await eventually(outage_noted, within=10)
            assert await notices() == []  # not yet: under a minute is a blip
            clock.advance(61)
            calls = store.calls
            assert await eventually(lambda: store.calls >= calls + 2, within=30)
            (notice,) = await notices()  # one, however often the worker tried since
            assert notice["user_id"] == ADMIN
            assert "unreachable" in str(notice["payload"])
            held = await asset_row(conn, asset)
            assert (held["state"], held["attempts"]) == ("running", 1)
            assert await scalar(conn, "SELECT streak_assets FROM breaker") in ([], [0])
            assert (tmp_path / f"{asset}-g0.mp4").exists()  # the video waits in the worker

            store.down = False
            assert await eventually(available, within=15)
        done = await asset_row(conn, asset)
        assert done["attempts"] == 1
        (uri,) = store.objects
        assert done["result"] == uri
        assert done["result_size"] == len(store.objects[uri]) == len(b"a tiny video\n")
        assert not (tmp_path / f"{asset}-g0.mp4").exists()  # in the store now, not here
        assert await scalar(conn, "SELECT count(*) FROM store_outage") == 0
        notes = await outbox.claim(conn, owner="n", limit=10, lease_seconds=30, now=clock.now())
    recorder = Recorder()
    for note in notes:
        if note.asset_id is None:
            await deliver_to(recorder, MessagesConfig(), note)  # type: ignore[arg-type]
    ((text, button),) = recorder.texts
    assert "Хранилище видео недоступно с" in text
    assert "UTC" in text
    assert "unreachable" in text
    assert button is None


async def test_any_video_kept_ends_an_outage_and_the_next_outage_is_told_again(
    db_url: str, tmp_path: Path
) -> None:
    """The worker that saw an outage stops before the store is back; another worker keeps a
    video: the outage is over (status and the console no longer show the store down), and
    the next outage is a new one, told to the admins in its turn."""
    clock = FakeClock()
    config = replace(FAST, output_dir=tmp_path, handler="python:tests.sample_handlers:made")
    down = MemoryStore()
    down.down = True
    (first,) = await add(db_url, "a")
    async with await connection.connect(db_url) as conn:

        async def outages() -> int:
            return int(await scalar(conn, "SELECT count(*) FROM store_outage"))

        async def told(times: int) -> bool:
            query = "SELECT count(*) FROM notifications WHERE kind = 'store_down'"
            return int(await scalar(conn, query)) == times

        async def available(asset: int) -> bool:
            return (await asset_row(conn, asset))["state"] == "available"

        async with running(db_url, config, Results(down, scratch=tmp_path), clock,
                           store_alert_seconds=60):  # fmt: skip
            assert await eventually(outages, within=10)
            clock.advance(61)
            assert await eventually(lambda: told(1), within=30)
        # Stopped, the store still down: the outage stays until somebody keeps a video.
        assert await outages() == 1

        async with running(db_url, config, Results(MemoryStore(), scratch=tmp_path), clock):
            assert await eventually(lambda: available(first), within=30)
        assert await outages() == 0
        shape = await connection.fetch_one(conn, "queue_shape", {"now": None})
        assert shape is not None
        assert shape["store_down_since"] is None  # status and the console: the store is up

        clock.advance(120)  # another minute: another outage
        await add(db_url, "b")
        async with running(db_url, config, Results(down, scratch=tmp_path), clock,
                           store_alert_seconds=60):  # fmt: skip
            assert await eventually(outages, within=10)
            clock.advance(61)
            assert await eventually(lambda: told(2), within=30)
        assert await told(2)  # once per outage, however often the worker tried


async def test_a_result_that_is_no_video_fails_the_attempt_and_one_too_big_fails_for_good(
    db_url: str, tmp_path: Path
) -> None:
    """A generator that answers with neither a file nor a URL has failed (and will be
    tried again); a video over ``[storage] max_video_mib`` never fits: failed at once."""
    store = MemoryStore()
    big = tmp_path / "big.mp4"
    big.write_bytes(b"\0" * (MIB + 1))
    config = replace(
        FAST, output_dir=tmp_path, handler="python:tests.sample_handlers:returns",
        backoff_base_seconds=600,
    )  # fmt: skip
    (nonsense,) = await add(db_url, "nonsense", result="the video is ready!")
    (too_big,) = await add(db_url, "too big", result=str(big))
    async with await connection.connect(db_url) as conn:

        async def settled() -> bool:
            tried = (await asset_row(conn, nonsense))["last_error"] is not None
            return tried and (await asset_row(conn, too_big))["state"] == "failed"

        async with running(db_url, config, Results(store, scratch=tmp_path, limit=MIB),
                           FakeClock()):  # fmt: skip
            assert await eventually(settled, within=15)
        wrong, big_one = await asset_row(conn, nonsense), await asset_row(conn, too_big)
    assert "neither a video file nor an http(s) URL: 'the video is ready!'" in str(
        wrong["last_error"]
    )
    assert (wrong["attempts"], wrong["state"]) == (1, "pending")  # to be tried again
    assert (big_one["attempts"], big_one["state"]) == (1, "failed")
    assert "Telegram lets a bot upload at most 1 MiB" in str(big_one["last_error"])
    assert store.objects == {}
    assert big.exists()  # not the worker's to delete: the generator's own file


async def test_an_outage_that_follows_another_within_a_minute_is_told_too(
    db_url: str,
) -> None:
    """With ``alert_after_seconds`` under a minute two outages may begin in one minute: each
    is an outage of its own (its own number), and the admins are told of each, once."""
    start = datetime(2026, 12, 7, 12, 0, 5, tzinfo=UTC)
    async with await connection.connect(db_url) as conn:

        async def note(seconds: float) -> None:
            await connection.execute(conn, "note_store_outage_and_queue_notices", {
                "owner": "w", "detail": "cannot store s3://videos/1.mp4: 503", "alert_after": 5,
                "admins": [ADMIN, ADMIN + 1], "now": start + timedelta(seconds=seconds),
            })  # fmt: skip

        async def told() -> list[object]:
            query = (
                "SELECT user_id, payload->>'since' AS since FROM notifications"
                " WHERE kind = 'store_down' ORDER BY id"
            )
            return [(r["user_id"], r["since"][17:19]) for r in await rows(conn, query)]

        for began in (0, 20):  # 12:00:05 and 12:00:25
            await note(began)
            await note(began + 3)  # not yet
            await note(began + 6)
            await note(began + 7)  # told once
            await conn.execute("DELETE FROM store_outage")  # a video kept: it is over
        assert await told() == [
            (ADMIN, "05"), (ADMIN + 1, "05"), (ADMIN, "25"), (ADMIN + 1, "25")
        ]  # fmt: skip
