"""Where enqueue → start goes: an idle worker (uvloop, as `vidretry worker`) woken by
NOTIFY, with a timestamp at each step, medians over the samples.

    python -m bench.wakeup [--samples 200]

Steps (CLOCK_MONOTONIC, shared by the processes on one machine): the enqueuing
transaction's commit (in this process) → the worker's listener receives the notification →
the claim statement starts → it returns → the handler's first line. Prints Markdown rows
for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from vidretry.db import connection, schema
from vidretry.db.embedded import EmbeddedServer
from vidretry.db.pool import open_pool

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument(
        "--async-commit",
        action="store_true",
        help="the worker's sessions with synchronous_commit = off (an experiment: what the "
        "claim's WAL flush costs)",
    )
    parser.add_argument("--child", nargs=2, metavar=("URL", "OUT"))
    args = parser.parse_args(argv)
    if args.child:
        from vidretry import eventloop

        eventloop.run(child(*args.child), fast=True)
        return 0
    base = Path(tempfile.mkdtemp(prefix="vidretry-bench-wakeup-"))
    base.chmod(0o755)  # the server may run as another user (we may be root)
    server = EmbeddedServer(base / "pg")
    try:
        url = server.start()
        asyncio.run(_migrate(url))
        out = base / "steps.jsonl"
        env = dict(os.environ)
        if args.async_commit:
            env["PGOPTIONS"] = "-c synchronous_commit=off"
        worker = subprocess.Popen([sys.executable, "-m", "bench.wakeup", "--child", url, str(out)],
                                  cwd=ROOT, stdout=subprocess.PIPE, text=True, env=env)  # fmt: skip
        assert worker.stdout is not None
        if worker.stdout.readline().strip() != "ready":
            raise RuntimeError("the worker did not start")
        committed: dict[int, float] = {}
        with psycopg.connect(url, autocommit=True) as conn:
            for i in range(args.samples):
                with conn.transaction():
                    row = conn.execute(
                        "INSERT INTO video_assets (name) VALUES (%s) RETURNING id", (f"w{i}",)
                    ).fetchone()
                    assert row is not None
                    conn.execute("SELECT pg_notify('vidretry_jobs', %s)", (str(row[0]),))
                committed[row[0]] = time.monotonic()
                time.sleep(0.05)  # idle again before the next one
        time.sleep(0.5)
        worker.terminate()
        worker.communicate(timeout=30)  # waits, and closes its stdout
        steps = [json.loads(line) for line in out.read_text().splitlines()]
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    rows: dict[str, list[float]] = {}
    for step in steps:
        start = committed.get(step["asset"])
        if start is None or step.get("notified") is None:
            continue
        points = [start, step["notified"], step["claim_sent"], step["claim_done"], step["ran"]]
        names = ["commit → notification received", "→ claim statement sent",
                 "claim round trip", "→ handler's first line"]  # fmt: skip
        for name, (a, b) in zip(names, itertools.pairwise(points), strict=True):
            rows.setdefault(name, []).append((b - a) * 1000)
        rows.setdefault("enqueue → start (total)", []).append((step["ran"] - start) * 1000)
    print(f"enqueue → start of an idle vidretry worker, {len(steps)} samples (ms)")
    print("| step | p50 | p90 |")
    print("| --- | ---: | ---: |")
    for name, values in rows.items():
        values.sort()
        p90 = values[int(len(values) * 0.9)]
        print(f"| {name} | {statistics.median(values):.2f} | {p90:.2f} |")
    return 0


async def _migrate(url: str) -> None:
    async with await connection.connect(url) as conn:
        await schema.upgrade(conn)


async def child(url: str, out_path: str) -> None:
    """A worker whose listener, claim and handler write down when they ran."""
    from vidretry.clock import DatabaseClock
    from vidretry.config import WorkerConfig
    from vidretry.db.listen import Listener
    from vidretry.queue.worker import Worker

    out = Path(out_path)
    steps: dict[int, dict[str, float]] = {}
    last_notified: list[float] = [0.0]

    class StampedWake:
        def __init__(self, wake: asyncio.Event) -> None:
            self.wake = wake

        def set(self) -> None:
            last_notified[0] = time.monotonic()
            self.wake.set()

    class StampedListener(Listener):
        async def run(self, channel: str, wake: asyncio.Event, listening: asyncio.Event,
                      rng: random.Random) -> None:  # fmt: skip
            await super().run(channel, StampedWake(wake), listening, rng)  # type: ignore[arg-type]

    class StampedWorker(Worker):
        async def claim(self, limit: int) -> Any:
            sent = time.monotonic()
            claimed = await super().claim(limit)
            done = time.monotonic()
            for job in claimed:
                steps[job.id] = {"notified": last_notified[0], "claim_sent": sent,
                                 "claim_done": done}  # fmt: skip
            return claimed

    async def handler(job: Any) -> str:
        steps[job.asset_id]["ran"] = time.monotonic()
        job.output.write_bytes(b"")  # a video, kept where it was written
        return str(job.output)

    videos = out.parent / "videos"  # beside the harness's files
    videos.mkdir(exist_ok=True)
    config = WorkerConfig(concurrency=4, poll_interval_seconds=60, output_dir=videos)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with open_pool(url, max_size=6) as pool:
        listener = StampedListener(url)
        worker = StampedWorker(pool, config, handler, listener=listener, clock=DatabaseClock(),
                               rng=random.Random(1))  # noqa: S311  # fmt: skip
        running = asyncio.create_task(worker.run(stop))
        await asyncio.wait_for(listener.ready.wait(), 30)
        await asyncio.sleep(0.5)
        print("ready", flush=True)
        await running
    lines = "".join(json.dumps({"asset": k, **v}) + "\n" for k, v in steps.items())
    out.write_text(lines)  # noqa: ASYNC240 (once, at the end)


if __name__ == "__main__":
    sys.exit(main())
