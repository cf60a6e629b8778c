"""The console's screenshots in docs/, taken with the browser tests' helpers:

    python -m tests.web.screenshots      # writes docs/console-overview.png, docs/console-asset.png

A throwaway embedded PostgreSQL with a small, plausible queue: videos made, failed, being
made, waiting and cancelled, a retry and a few users.
"""

from __future__ import annotations

import asyncio
import os
import random
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.web.browser import browser, console_process, log_in, shoot
from vidretry.db import connection, schema
from vidretry.db.embedded import EmbeddedServer
from vidretry.queue import jobs
from vidretry.queue.cancel import withdraw
from vidretry.queue.enqueue import enqueue
from vidretry.queue.retry import Actor, retry
from vidretry.web import tokens

DOCS = Path(__file__).resolve().parents[2] / "docs"
NAMES = ["Маша", "Петя", "Аня", "Коля", "Дима", "Вася", "Оля", "Саша", "Лена", "Игорь"]


async def seed(url: str) -> tuple[str, int]:
    rng = random.Random(5)
    async with await connection.connect(url) as conn:
        await schema.upgrade(conn)
        # An hour of work: each job made (or failed) at its own minute, for the chart.
        start = datetime.now(UTC) - timedelta(minutes=58)
        for i, name in enumerate(NAMES * 12):
            await enqueue(
                conn, f"{name} {i}", user_id=100 + rng.randrange(40), max_attempts=1, now=start
            )
        for i in range(110):
            at = start + timedelta(seconds=i * 30 + rng.uniform(0, 20))
            (job,) = await jobs.claim(conn, owner="worker-a", limit=1, lease_seconds=60, now=at)
            at += timedelta(seconds=rng.uniform(5, 9))
            if rng.random() < 0.12:
                await jobs.fail(
                    conn, job, owner="worker-a", error="render farm: out of GPU memory", now=at
                )
            else:
                await jobs.complete(
                    conn, job, owner="worker-a", result=f"/videos/{job.id}.mp4", now=at
                )
        await jobs.claim(conn, owner="worker-b", limit=2, lease_seconds=60, now=None)
        cur = await conn.execute("SELECT id FROM video_assets WHERE state = 'failed' ORDER BY id")
        failed = [row["id"] for row in await cur.fetchall()]
        await retry(conn, failed[0], Actor.operator("olga"), reason="new GPU")
        cur = await conn.execute(
            "SELECT asset_id, user_id FROM user_requests WHERE state = 'pending'"
            " ORDER BY id DESC LIMIT 1"
        )
        row = await cur.fetchone()
        assert row is not None
        await withdraw(conn, row["asset_id"], row["user_id"])
        token = await tokens.add(conn, "olga", tokens.Role.OPERATOR)
    return token, failed[-1]


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="vidretry-shots-") as tmp:
        os.chmod(tmp, 0o755)  # as root the server runs as postgres, which must enter it
        server = EmbeddedServer(Path(tmp) / "pg")
        url = await asyncio.to_thread(server.start)
        try:
            token, asset = await seed(url)
            with console_process(url, Path(tmp)) as base:
                async with browser() as chromium:
                    page = await chromium.new_page()
                    await log_in(page, base, token)
                    await shoot(page, DOCS / "console-overview.png")
                    await page.goto(f"{base}/assets/{asset}")
                    await shoot(page, DOCS / "console-asset.png")
        finally:
            await asyncio.to_thread(server.stop)
    print(f"wrote {DOCS / 'console-overview.png'} and {DOCS / 'console-asset.png'}")


if __name__ == "__main__":
    asyncio.run(main())
