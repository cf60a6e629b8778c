"""The console in a real browser: the real ``vidretry web`` process, Debian's Chromium
driven by Playwright (its own browser download cannot work here, and is never tried).

``console_process`` starts ``vidretry web`` on a free loopback port; ``browser`` launches
Chromium headless with no network of its own (loopback only: the console is on 127.0.0.1);
``shoot`` takes the screenshots docs/ shows (``python -m tests.web.screenshots``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
NO_CHROMIUM = "Debian's Chromium is not installed: sudo apt-get install chromium"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def console_process(db_url: str, directory: Path) -> Iterator[str]:
    """``vidretry web`` on a free loopback port until the block ends; its base URL."""
    port = free_port()
    config = directory / "web.toml"
    config.write_text(f'[database]\nurl = "{db_url}"\n[web]\nport = {port}\n')
    env = {**os.environ, "VIDRETRY_DATABASE_URL": ""}
    env.pop("VIDRETRY_CONFIG", None)
    log = directory / "web.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "vidretry", "--config", str(config), "web"],
            cwd=directory, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"vidretry web did not start: {log.read_text()}")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            raise AssertionError(f"vidretry web did not stop: {log.read_text()}") from None
        assert process.returncode == 0, log.read_text()


@contextlib.asynccontextmanager
async def browser() -> AsyncIterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(NO_CHROMIUM)
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
        )
        try:
            yield launched
        finally:
            await launched.close()


async def log_in(page: Any, base: str, token: str) -> None:
    await page.goto(f"{base}/login")
    await page.fill("#token", token)
    await page.click("#login")
    await page.wait_for_url(f"{base}/")


async def shoot(page: Any, path: Path) -> None:
    """A screenshot of the whole page, at the width docs/ shows it."""
    await page.set_viewport_size({"width": 1200, "height": 800})
    await page.screenshot(path=str(path), full_page=True)
