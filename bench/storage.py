"""Results that travel: a 200 MB video from the generator through the store to Telegram.

    python -m bench.storage            # 200 MB, three runs, interleaved
    python -m bench.storage --short    # 20 MB, one run (the suite runs it)

The real ``vidretry worker`` and notifier processes (the notifier's Telethon talking to the
in-process Telegram double, instant: the harshest case for the overhead), PostgreSQL, and
SeaweedFS's ``weed mini`` as the S3 server, all on this machine. The generator hard-links a
prepared video into ``{output}`` and notes the time it is done. Each run measures, side by
side:

- **S3**: ``[storage] url = "s3://…"``: generator done → kept in the store (read, hashed,
  multipart upload) and recorded → read back from the store into Telegram's upload;
- **disk**: the default (the video kept where the generator wrote it): the same, the upload
  read from the local disk — what vidretry did before it kept videos elsewhere;
- **the S3 client alone**: obstore's ``put`` of the same file, its defaults.

Ratios: keeping ÷ the S3 client alone; sending from the store ÷ sending from the disk; and
the whole way (done → delivered through S3) ÷ (the S3 client alone + sending from disk), the
issue's "store + send over upload alone" (target ≤ 1.3×). Memory: each process's peak RSS
during the run (the kernel's high-water mark, reset once the process is idle) over its idle
RSS (target ≤ 64 MiB).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import obstore

from tests.s3server import WeedS3
from tests.telegram.bot_process import read_events
from tests.telegram.double import BOT_TOKEN
from tests.telegram.offline.sitecustomize import loopback_only
from vidretry.db import connection, schema
from vidretry.db.embedded import EmbeddedServer
from vidretry.queue.enqueue import enqueue

ROOT = Path(__file__).resolve().parents[1]
WHOLE_WAY_TARGET = 1.3  # × the S3 client alone + sending from the disk
MEMORY_TARGET_MIB = 64  # over idle

GENERATOR = """\
import os, sys, time
source, output, done = sys.argv[1:4]
os.makedirs(os.path.dirname(output), exist_ok=True)
os.link(source, output)
with open(done, "w") as f:
    f.write(repr(time.time()))
"""


@dataclass(frozen=True)
class Size:
    megabytes: int
    runs: int


FULL = Size(megabytes=200, runs=3)
SHORT = Size(megabytes=20, runs=1)


def mib(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for process {pid}")


def reset_peak(pid: int) -> None:
    """Start the process's peak RSS (VmHWM) again from its current RSS (Linux ≥ 4.0)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


@dataclass
class Figures:
    keep: float  # generator done → kept and recorded (s)
    send: float  # recorded → delivered (s)
    worker_mib: float  # peak over idle
    notifier_mib: float


class Bench:
    def __init__(self, base: Path, server: EmbeddedServer, weed: WeedS3, size: Size) -> None:
        self.base = base
        self.server = server
        self.weed = weed
        self.size = size
        self.video = base / "video.mp4"
        self.video.write_bytes(random.Random(1).randbytes(size.megabytes * 1_000_000))  # noqa: S311
        self.sha256 = hashlib.sha256(self.video.read_bytes()).hexdigest()
        self.generator = base / "generator.py"
        self.generator.write_text(GENERATOR)
        self.results: dict[str, list[float]] = {}
        self.runs = 0

    def record(self, label: str, value: float) -> None:
        self.results.setdefault(label, []).append(value)

    async def run(self) -> None:
        for _ in range(self.size.runs):  # interleaved
            s3 = await self.deployment(stored=True)
            disk = await self.deployment(stored=False)
            alone = await self.s3_client_alone()
            self.record("S3: done → kept (s)", s3.keep)
            self.record("S3: kept → delivered (s)", s3.send)
            self.record("disk: done → kept (s)", disk.keep)
            self.record("disk: kept → delivered (s)", disk.send)
            self.record("the S3 client alone: the file copied (s)", alone)
            self.record("keeping in the store ÷ the S3 client alone", s3.keep / alone)
            self.record("sending from the store ÷ sending from the disk", s3.send / disk.send)
            self.record("done → delivered through S3 ÷ (S3 client alone + sending from disk)",
                        (s3.keep + s3.send) / (alone + disk.send))  # fmt: skip
            self.record("worker (S3): peak RSS over idle (MiB)", s3.worker_mib)
            self.record("notifier (S3): peak RSS over idle (MiB)", s3.notifier_mib)

    async def s3_client_alone(self) -> float:
        client = self.weed.client()
        key = f"alone/{self.runs}.mp4"
        started = time.monotonic()
        await obstore.put_async(client, key, self.video)
        took = time.monotonic() - started
        await obstore.delete_async(client, key)
        return took

    async def deployment(self, *, stored: bool) -> Figures:
        self.runs += 1
        here = self.base / f"run{self.runs}"
        here.mkdir()
        url = await self.database(f"storage_{self.runs}")
        done = here / "done"
        storage = ""
        if stored:
            table = self.weed.settings(url=f"s3://{self.weed.bucket}/run{self.runs}")
            storage = "[storage]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in table.items())
        config = here / "vidretry.toml"
        config.write_text(
            f'[database]\nurl = "{url}"\n'
            f"[worker]\ncommand = [{json.dumps(sys.executable)}, "
            f'{json.dumps(str(self.generator))}, {json.dumps(str(self.video))}, "{{output}}", '
            f'{json.dumps(str(done))}]\noutput_dir = "videos"\n{storage}'
            '[telegram]\napi_id = 1\napi_hash = "abc"\nsession = "bot.session"\n'
        )
        events = here / "events.jsonl"
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "VIDRETRY_DATABASE_URL": "",
            "VIDRETRY_TELEGRAM_BOT_TOKEN": BOT_TOKEN,
            "VIDRETRY_TEST_EVENTS": str(events),
        }
        env.pop("VIDRETRY_CONFIG", None)
        argv = [sys.executable, "-m", "vidretry", "--config", str(config)]
        notifier = spawn([sys.executable, "-m", "tests.telegram.bot_process", "--config",
                          str(config), "notifier"], env, here / "notifier.log")  # fmt: skip
        worker = spawn([*argv, "worker"], env, here / "worker.log")
        try:
            await until(lambda: any(e["event"] == "connect" for e in read_events(events)), 60)
            await until(lambda: "started" in (here / "worker.log").read_text(), 60)
            await asyncio.sleep(2.0)  # settled: what an idle process holds
            idle = {p.pid: mib(p.pid, "VmRSS") for p in (worker, notifier)}
            for process in (worker, notifier):
                reset_peak(process.pid)
            async with await connection.connect(url) as conn:
                await enqueue(conn, "Маша", user_id=1)

            def delivered() -> list[dict[str, Any]]:
                return [e for e in read_events(events) if e["event"] == "send" and "sha256" in e]

            await until(lambda: bool(delivered()), 300)
            peak = {p.pid: mib(p.pid, "VmHWM") for p in (worker, notifier)}
            (sent,) = delivered()
            if sent["sha256"] != self.sha256:
                raise RuntimeError("Telegram got other bytes than the generator's")
            async with await connection.connect(url) as conn:
                cur = await conn.execute("SELECT finished_at FROM video_assets")
                row = await cur.fetchone()
            assert row is not None
            kept_at: datetime = row["finished_at"]
        finally:
            for process in (worker, notifier):
                process.terminate()
            for process in (worker, notifier):
                process.wait(60)
        generator_done = float(done.read_text())
        return Figures(
            keep=kept_at.timestamp() - generator_done,
            send=float(sent["t"]) - kept_at.timestamp(),
            worker_mib=peak[worker.pid] - idle[worker.pid],
            notifier_mib=peak[notifier.pid] - idle[notifier.pid],
        )

    async def database(self, name: str) -> str:
        async with await connection.connect(self.server.url) as conn:
            await conn.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
        url = self.server.url_for(name)
        async with await connection.connect(url) as conn:
            await schema.upgrade(conn)
            # The user once wrote /start (the double's access hash for user 1).
            await conn.execute("INSERT INTO telegram_users (user_id, access_hash) VALUES (1, 1007)")
        return url


def spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


async def until(check: Any, within: float) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"not within {within:g}s")
        await asyncio.sleep(0.02)


async def main_async(size: Size, base: Path) -> dict[str, list[float]]:
    server = EmbeddedServer(base / "pg")
    await asyncio.to_thread(server.start)
    (base / "weed").mkdir()
    weed = WeedS3(base / "weed")
    try:
        await asyncio.to_thread(weed.start)
        bench = Bench(base, server, weed, size)
        await bench.run()
        return bench.results
    finally:
        await asyncio.to_thread(weed.stop)
        await asyncio.to_thread(server.stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--short", action="store_true", help="the suite's short form")
    args = parser.parse_args(argv)
    size = SHORT if args.short else FULL
    # Nothing here may reach Telegram, or anything but loopback and unix sockets.
    socket.socket.connect = loopback_only(socket.socket.connect)  # type: ignore[method-assign]
    base = Path(tempfile.mkdtemp(prefix="vidretry-bench-storage-"))
    base.chmod(0o755)
    try:
        results = asyncio.run(main_async(size, base))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"A {size.megabytes} MB video, generator → store → Telegram (the double, instant); "
          f"medians of {size.runs}")  # fmt: skip
    print("| case | median | range | target |")
    print("| --- | ---: | ---: | ---: |")
    targets = {
        "done → delivered through S3 ÷ (S3 client alone + sending from disk)":
            f"≤ {WHOLE_WAY_TARGET:g}×",
        "worker (S3): peak RSS over idle (MiB)": f"≤ {MEMORY_TARGET_MIB}",
        "notifier (S3): peak RSS over idle (MiB)": f"≤ {MEMORY_TARGET_MIB}",
    }  # fmt: skip
    for name, values in results.items():
        print(f"| {name} | {statistics.median(values):.2f} | {min(values):.2f} – "
              f"{max(values):.2f} | {targets.get(name, '')} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
