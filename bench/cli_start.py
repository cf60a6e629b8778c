"""How long a command takes to start and finish, beside pgqueuer's and procrastinate's.

    python -m bench.cli_start

Each command runs 7 times, interleaved with the others; the table gives medians of the wall
time, from starting the process to its exit, on a temporary PostgreSQL. The commands run in
this environment as they are: with the bytecode cache when Python may write it.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vidretry.queue.enqueue import enqueue
from vidretry.store import db, schema
from vidretry.store.embedded import EmbeddedServer

RUNS = 7
TARGET_SECONDS = 0.35


async def prepare(url: str) -> int:
    async with await db.connect(url) as conn:
        await schema.upgrade(conn)
        asset = await enqueue(conn, "bench", user_id=1)
        await conn.execute(
            "UPDATE video_assets SET state = 'failed', attempts = max_attempts,"
            " finished_at = now() WHERE id = %s",
            (asset.asset_id,),
        )
        return asset.asset_id


def main() -> int:
    base = Path(tempfile.mkdtemp(prefix="vidretry-bench-cli-"))
    base.chmod(0o755)
    server = EmbeddedServer(base / "pg")
    try:
        url = server.start()
        asset = asyncio.run(prepare(url))
        config = base / "vidretry.toml"
        config.write_text(f'[database]\nurl = "{url}"\n')
        bindir = Path(sys.executable).parent
        vidretry = [str(bindir / "vidretry"), "--config", str(config)]
        commands = {
            "python -c pass (the interpreter alone)": [sys.executable, "-c", "pass"],
            "python -c 'import psycopg'": [sys.executable, "-c", "import psycopg"],
            "vidretry --help": [*vidretry, "--help"],
            "vidretry status": [*vidretry, "status"],
            # Refused after the first run (not failed any more): the same work, exit 1.
            "vidretry retry N": [*vidretry, "retry", str(asset)],
            "pgq --help (pgqueuer)": [str(bindir / "pgq"), "--help"],
            "procrastinate --help": [str(bindir / "procrastinate"), "--help"],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(RUNS):
            for name, argv in commands.items():
                started = time.perf_counter()
                subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                times[name].append(time.perf_counter() - started)
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    print("| command | median (s) | range (s) | target |\n| --- | ---: | ---: | ---: |")
    for name, samples in times.items():
        target = f"≤ {TARGET_SECONDS}" if name.startswith("vidretry") else ""
        print(f"| `{name}` | {statistics.median(samples):.2f} | "
              f"{min(samples):.2f} – {max(samples):.2f} | {target} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
