"""The console in a real browser (Debian's Chromium, through Playwright) against the real
``vidretry web`` process: login and logout, the overview updating by itself, search, retry
from the detail page, bulk retry, pause and resume, a viewer's page and forged POST, a
cross-site POST — each checked in the database."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect

from tests.support import scalar
from tests.web.browser import browser, console_process, free_port, log_in, shoot
from vidretry.db import connection
from vidretry.queue import jobs
from vidretry.queue.enqueue import enqueue
from vidretry.web import tokens


@pytest.fixture
async def site(db_url: str, tmp_path: Path) -> Any:
    async with await connection.connect(db_url) as conn:
        operator = await tokens.add(conn, "olga", tokens.Role.OPERATOR)
        viewer = await tokens.add(conn, "vera", tokens.Role.VIEWER)
    with console_process(db_url, tmp_path) as base:
        yield {"base": base, "operator": operator, "viewer": viewer, "url": db_url}


async def failed(url: str, name: str, user: int = 1) -> int:
    async with await connection.connect(url) as conn:
        asset = await enqueue(conn, name, user_id=user, max_attempts=1)
        (job,) = await jobs.claim(conn, owner="w", limit=1, lease_seconds=30, now=None)
        await jobs.fail(conn, job, owner="w", error="render farm: out of GPU memory", now=None)
    return asset.asset_id


async def value(url: str, query: str, *params: Any) -> Any:
    async with await connection.connect(url) as conn:
        return await scalar(conn, query, *params)


async def test_log_in_with_a_wrong_then_a_right_token_and_log_out(site: Any) -> None:
    async with browser() as chromium:
        page = await chromium.new_page()
        await page.goto(f"{site['base']}/")
        assert page.url.endswith("/login")  # every page needs a login
        await page.fill("#token", "vrt_wrong")
        await page.click("#login")
        assert await page.inner_text("#error") == "That token is not valid."
        await log_in(page, site["base"], site["operator"])
        assert "olga · operator" in await page.inner_text("header")
        await page.click("#logout")
        await page.wait_for_url(f"{site['base']}/login")
        await page.goto(f"{site['base']}/assets")
        assert page.url.endswith("/login")


async def test_the_overview_updates_by_itself_and_search_finds_by_user_id(
    site: Any, tmp_path: Path
) -> None:
    async with browser() as chromium:
        page = await chromium.new_page()
        await log_in(page, site["base"], site["operator"])
        assert await page.inner_text('[data-count="pending"]') == "0"
        async with await connection.connect(site["url"]) as conn:
            await enqueue(conn, "Маша", user_id=4242)
        changed = time.monotonic()
        # With no reload: the live stream, refreshed every second.
        await expect(page.locator('[data-count="pending"]')).to_have_text("1", timeout=5000)
        assert time.monotonic() - changed < 3.0  # a one-second refresh, with room to spare
        await shoot(page, tmp_path / "overview.png")
        await page.fill("header input[name=q]", "4242")
        await page.press("header input[name=q]", "Enter")
        await page.wait_for_url("**/assets?q=4242")
        assert "Маша" in await page.inner_text("table.assets")


async def test_retry_from_the_detail_page_and_bulk_retry(site: Any, tmp_path: Path) -> None:
    one = await failed(site["url"], "Маша")
    others = [await failed(site["url"], f"Петя {i}") for i in range(3)]
    async with browser() as chromium:
        page = await chromium.new_page()
        page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
        await log_in(page, site["base"], site["operator"])
        await page.goto(f"{site['base']}/assets/{one}")
        await shoot(page, tmp_path / "asset.png")
        await page.click("#retry")
        await page.wait_for_selector("#flash")
        assert "queued again" in await page.inner_text("#flash")
        assert await value(site["url"], "SELECT state FROM video_assets WHERE id = %s", one) == (
            "pending"
        )
        await page.goto(f"{site['base']}/failed?q=Петя")
        assert await page.inner_text("#failed-count") == "3"
        await page.click("#retry-all")
        await page.wait_for_selector("#flash")
        assert "3 of 3 failed asset(s) queued again" in await page.inner_text("#flash")
        states = await value(
            site["url"], "SELECT array_agg(DISTINCT state) FROM video_assets WHERE id = ANY(%s)",
            others,
        )  # fmt: skip
        assert states == ["pending"]
        actor = await value(
            site["url"], "SELECT DISTINCT actor FROM job_events WHERE kind = 'retried'"
        )
        assert actor == "web:olga"


async def test_pause_and_resume(site: Any) -> None:
    async with browser() as chromium:
        page = await chromium.new_page()
        page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
        await log_in(page, site["base"], site["operator"])
        await page.click("#pause")
        await page.wait_for_selector("#resume")
        assert await page.inner_text("#queue-state") == "paused"
        open_pause = "SELECT paused_by FROM queue_pauses WHERE resumed_at IS NULL"
        assert await value(site["url"], open_pause) == "web:olga"
        await page.click("#resume")
        await page.wait_for_selector("#pause")
        closed = "SELECT count(*) FROM queue_pauses WHERE resumed_by = 'web:olga'"
        assert await value(site["url"], closed) == 1


async def test_a_viewer_sees_no_action_button_and_its_forged_post_is_refused(site: Any) -> None:
    asset_id = await failed(site["url"], "Маша")
    async with browser() as chromium:
        page = await chromium.new_page()
        await log_in(page, site["base"], site["viewer"])
        await page.goto(f"{site['base']}/assets/{asset_id}")
        assert await page.query_selector("#retry") is None
        await page.goto(f"{site['base']}/")
        assert await page.query_selector("#pause") is None
        status = await page.evaluate(
            """async (path) => {
                const csrf = document.querySelector('meta[name=csrf]').content;
                const body = new URLSearchParams({csrf});
                const r = await fetch(path, {method: 'POST', body});
                return r.status;
            }""",
            f"/api/assets/{asset_id}/retry",
        )
        assert status == 403
    assert await value(site["url"], "SELECT state FROM video_assets") == "failed"


@contextlib.contextmanager
def another_site(target: str) -> Iterator[str]:
    """A page on another origin (another port) with a form that posts to the console."""
    page = (
        "<!doctype html><form id=f method=post action='" + target + "/api/queue/pause'>"
        "<input name=csrf value=guessed><button id=go>win a prize</button></form>"
    ).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()


async def test_a_cross_site_post_is_refused(site: Any) -> None:
    async with browser() as chromium:
        context = await chromium.new_context()
        page = await context.new_page()
        await log_in(page, site["base"], site["operator"])
        with another_site(site["base"]) as evil:
            await page.goto(evil)
            async with page.expect_navigation() as navigation:
                await page.click("#go")
            answer = await navigation.value
        # The browser sends no session cookie with it (SameSite=Strict), and the console
        # would refuse it anyway (Sec-Fetch-Site: cross-site, and no CSRF token).
        assert answer is not None
        assert answer.url.startswith(site["base"])
        assert answer.status in (401, 403)
    assert await value(site["url"], "SELECT count(*) FROM queue_pauses") == 0
