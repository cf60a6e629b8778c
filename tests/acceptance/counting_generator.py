"""A generator for the quota tests, run by `vidretry worker` as its command:

    python counting_generator.py DIR NAME SECONDS OUTPUT

It measures what the promises are about from its own side: on start it leaves a marker in
DIR/alive and counts the markers there (every generator alive at that moment, itself
included), logs ``start NAME TIME ALIVE`` to DIR/log, sleeps SECONDS, writes a tiny video
to OUTPUT, logs ``end`` and takes its marker away before it exits. A name starting with
"limited" answers "slow down" the first time (exit 75, EX_TEMPFAIL, with ``retry-after 4``
on stdout), as an API's 429 would.
"""

import os
import sys
import time
from pathlib import Path


def log(directory: Path, line: str) -> None:
    with (directory / "log").open("a") as f:
        f.write(line + "\n")


def main() -> int:
    directory, name, seconds, output = (
        Path(sys.argv[1]),
        sys.argv[2],
        float(sys.argv[3]),
        sys.argv[4],
    )
    if name.startswith("limited"):
        told = directory / f"told-{name}"
        if not told.exists():
            told.touch()
            log(directory, f"limited {name} {time.time()}")
            print("retry-after 4", flush=True)
            return 75
    alive = directory / "alive"
    alive.mkdir(exist_ok=True)
    marker = alive / str(os.getpid())
    marker.touch()
    try:
        log(directory, f"start {name} {time.time()} {len(os.listdir(alive))}")
        time.sleep(seconds)
        Path(output).write_bytes(b"a tiny video\n")
        log(directory, f"end {name} {time.time()}")
    finally:
        marker.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
