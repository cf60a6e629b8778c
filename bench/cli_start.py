"""How long a command takes to start and finish, beside pgqueuer's and procrastinate's.

    python -m bench.cli_start

Each command runs 15 times, interleaved with the others; the table gives medians of the wall
time, from starting the process to its exit, on a temporary PostgreSQL, and each command's
ratio to the floor, `python -c "import psycopg, typer"` measured in the same run (the
machine's speed drifts from day to day; a ratio within one run does not). The commands run
with the bytecode cache, as on a user's machine (PYTHONDONTWRITEBYTECODE is dropped).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vidretry.db import connection, schema
from vidretry.db.embedded import EmbeddedServer
from vidretry.queue.enqueue import enqueue

RUNS = 15
FLOOR = "python -c 'import psycopg, typer' (the floor)"
# status and retry start within this many times the floor.
TARGET_RATIO = 1.5
TARGETED = ("vidretry status", "vidretry retry N")


async def prepare(url: str) -> int:
    async with await connection.connect(url) as conn:
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
            FLOOR: [sys.executable, "-c", "import psycopg, typer"],
            "vidretry --help": [*vidretry, "--help"],
            "vidretry status": [*vidretry, "status"],
            # Refused after the first run (not failed any more): the same work, exit 1.
            "vidretry retry N": [*vidretry, "retry", str(asset)],
            "pgq --help (pgqueuer)": [str(bindir / "pgq"), "--help"],
            "procrastinate --help": [str(bindir / "procrastinate"), "--help"],
        }
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = str(base / "bytecode")
        times: dict[str, list[float]] = {name: [] for name in commands}
        for run in range(RUNS + 1):  # the first round fills the bytecode cache: not counted
            for name, argv in commands.items():
                started = time.perf_counter()
                subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
                if run:
                    times[name].append(time.perf_counter() - started)
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    floor = statistics.median(times[FLOOR])
    print("| command | median (s) | range (s) | × floor | target |")
    print("| --- | ---: | ---: | ---: | ---: |")
    missed = 0
    for name, samples in times.items():
        median = statistics.median(samples)
        target = f"≤ {TARGET_RATIO}×" if name in TARGETED else ""
        missed += name in TARGETED and median / floor > TARGET_RATIO
        print(f"| `{name}` | {median:.3f} | {min(samples):.3f} – {max(samples):.3f} | "
              f"{median / floor:.2f} | {target} |")  # fmt: skip
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
