"""The chaos run's generation step: fails about 40 % of the time, sometimes hangs past its
lease (the heartbeat must keep it), sometimes past its timeout, and fails every time while
the generator is "down" (the run creates $VIDRETRY_CHAOS_GENERATOR_DOWN for 20 s). Every
attempt logs its start and end with its lease token, so the run can prove no job ran in two
workers at once."""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path

from vidretry.errors import HandlerError
from vidretry.models import JobContext

LOG_DIR = Path(os.environ.get("VIDRETRY_CHAOS_LOG", "/tmp"))
DOWN = Path(os.environ.get("VIDRETRY_CHAOS_GENERATOR_DOWN", "/nonexistent"))


def _log(event: str, job: JobContext) -> None:
    fields = (event, job.asset_id, job.retry_round, job.attempt, job.lease_token, os.getpid())
    line = " ".join(map(str, fields)) + f" {time.time():.6f}\n"
    fd = os.open(LOG_DIR / f"handler-{os.getpid()}.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


async def generate(job: JobContext) -> str:
    _log("start", job)
    rng = random.Random()
    try:
        if DOWN.exists():
            raise HandlerError("chaos: 503 from the render service (generator down)")
        roll = rng.random()
        if roll < 0.04:
            await asyncio.sleep(3.0)  # past the 2 s lease: the heartbeat keeps it
        elif roll < 0.06:
            await asyncio.sleep(30)  # past the 4 s timeout: the attempt fails
        else:
            await asyncio.sleep(rng.uniform(0.01, 0.1))
        if rng.random() < 0.4:
            raise HandlerError("chaos: render failed")
        job.output.parent.mkdir(parents=True, exist_ok=True)
        job.output.write_bytes(b"chaos video\n")
        return str(job.output)
    finally:
        _log("end", job)
