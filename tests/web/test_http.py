"""The console over plain HTTP: every route's auth, CSRF and origin checks, roles, the API,
search, bulk retry, resend, and the live overview's one read a second for every tab."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support import rows, scalar
from tests.web.conftest import BASE, Console, csrf_of
from vidretry.db import connection
from vidretry.queue import jobs
from vidretry.queue.enqueue import enqueue
from vidretry.web.live import Broadcaster

PAGES = ["/", "/assets", "/assets/1", "/failed", "/outbox"]
API_GETS = ["/api/assets", "/api/assets/1", "/api/events"]
API_POSTS = [
    "/api/assets",
    "/api/assets/1/retry",
    "/api/assets/1/cancel",
    "/api/queue/pause",
    "/api/queue/resume",
    "/api/notifications/1/resend",
    "/api/failed/retry",
]


async def failed(url: str, name: str, users: tuple[int, ...] = (1,)) -> int:
    async with await connection.connect(url) as conn:
        for user in users:
            asset = await enqueue(conn, name, user_id=user, max_attempts=1)
        (job,) = await jobs.claim(conn, owner="w", limit=1, lease_seconds=30, now=None)
        await jobs.fail(conn, job, owner="w", error="boom", now=None)
    return asset.asset_id


async def test_every_route_needs_a_login(console: Console) -> None:
    async with console.client() as client:
        for path in PAGES:
            response = await client.get(path)
            assert (response.status_code, response.headers["location"]) == (303, "/login"), path
        for path in API_GETS:
            response = await client.get(path)
            assert response.status_code == 401, path
            assert response.json() == {"ok": False, "error": "log in first"}
        for path in API_POSTS:
            assert (await client.post(path)).status_code == 401, path
        for token in ("", "vrt_not-a-token", console.operator + "x"):
            bearer = {"authorization": f"Bearer {token}"}
            assert (await client.get("/api/assets", headers=bearer)).status_code == 401
        login = await client.get("/login")
        assert login.status_code == 200
        assert "script-src 'self'" in login.headers["content-security-policy"]
        assert (await client.get("/static/app.js")).status_code == 200


async def test_a_failed_login_is_slowed_and_a_good_one_makes_a_strict_session(
    console: Console,
) -> None:
    async with console.client(origin=BASE) as client:
        started = time.monotonic()
        bad = await client.post("/login", data={"token": "vrt_guess"})
        assert bad.status_code == 401
        assert time.monotonic() - started >= 1.0
        assert "That token is not valid." in bad.text
        # Another site cannot log a browser in either (as someone of its choosing).
        forged = await client.post(
            "/login", data={"token": console.operator}, headers={"origin": "https://evil.example"}
        )
        assert forged.status_code == 403
        good = await client.post("/login", data={"token": console.operator})
        assert (good.status_code, good.headers["location"]) == (303, "/")
        cookie = good.headers["set-cookie"]
        assert "httponly" in cookie.lower()
        assert "samesite=strict" in cookie.lower()
        assert "secure" not in cookie.lower()  # plain http here; [web] behind_https sets it
        page = await client.get("/")
        assert page.status_code == 200
        assert "alice · operator" in page.text
        assert 'data-field="telegram">not connected<' in page.text
        async with await connection.connect(console.url) as conn:
            await conn.execute(
                "UPDATE leadership SET leader = 'n1', token = gen_random_uuid(),"
                " elected_at = now(), expires_at = now() + interval '1 minute',"
                " telegram_connected = true"
            )
        page = await client.get("/")
        assert 'data-field="leader">n1<' in page.text
        assert 'data-field="telegram">connected<' in page.text
        assert "<script>" not in page.text  # the CSP allows only /static/app.js


async def test_an_operator_acts_only_with_the_csrf_token_and_from_this_origin(
    console: Console,
) -> None:
    asset_id = await failed(console.url, "Маша")
    async with console.logged_in(console.operator) as client:
        page = await client.get(f"/assets/{asset_id}")
        assert 'id="retry"' in page.text
        csrf = csrf_of(page.text)
        path = f"/api/assets/{asset_id}/retry?next=/assets/{asset_id}"
        refusals = [
            ({}, {}),  # no CSRF token
            ({"csrf": "wrong"}, {}),
            ({"csrf": csrf}, {"origin": "https://evil.example"}),
            ({"csrf": csrf}, {"origin": BASE, "sec-fetch-site": "cross-site"}),
            ({"csrf": csrf}, {"origin": "null"}),
        ]
        for form, headers in refusals:
            response = await client.post(path, data=form, headers=headers)
            assert response.status_code == 403, (form, headers)
        async with await connection.connect(console.url) as conn:
            assert await scalar(conn, "SELECT state FROM video_assets") == "failed"
        done = await client.post(
            path, data={"csrf": csrf}, headers={"sec-fetch-site": "same-origin"}
        )
        assert (done.status_code, done.headers["location"]) == (303, f"/assets/{asset_id}")
        shown = await client.get(f"/assets/{asset_id}")
        assert "queued again (retry round 1)" in shown.text  # the flash
        async with await connection.connect(console.url) as conn:
            assert await scalar(conn, "SELECT state FROM video_assets") == "pending"
            actor = await scalar(conn, "SELECT actor FROM job_events WHERE kind = 'retried'")
            assert actor == "web:alice"
        # A form's way back is a path on this site, never another.
        again = await client.post("/api/queue/pause?next=//evil.example/x", data={"csrf": csrf})
        assert again.headers["location"] == "/"
        logout = await client.post("/logout", data={"csrf": csrf})
        assert logout.headers["location"] == "/login"
        assert (await client.get("/")).status_code == 303


async def test_a_viewer_sees_no_action_and_its_forged_posts_are_refused(console: Console) -> None:
    asset_id = await failed(console.url, "Маша")
    async with console.logged_in(console.viewer) as client:
        for path in PAGES:
            page = await client.get(path.replace("/1", f"/{asset_id}"))
            assert page.status_code == 200, path
            assert 'method="post" action="/api' not in page.text, path
        csrf = csrf_of(page.text)
        for path in API_POSTS:
            forged = await client.post(path.replace("/1/", f"/{asset_id}/"), data={"csrf": csrf})
            assert forged.status_code == 403, path
        bearer = {"authorization": f"Bearer {console.viewer}"}
        refused = await client.post(f"/api/assets/{asset_id}/retry", headers=bearer)
        assert refused.status_code == 403
        assert "viewer" in refused.json()["error"]
    async with await connection.connect(console.url) as conn:
        assert await scalar(conn, "SELECT state FROM video_assets") == "failed"


async def test_the_api_with_a_bearer_token(console: Console) -> None:
    asset_id = await failed(console.url, "Маша", users=(7, 8))
    bearer = {"authorization": f"Bearer {console.operator}"}
    async with console.client(**bearer) as client:
        listed = (await client.get("/api/assets?state=failed")).json()
        assert [a["id"] for a in listed["assets"]] == [asset_id]
        one = (await client.get(f"/api/assets/{asset_id}")).json()
        assert {r["user_id"] for r in one["requests"]} == {7, 8}
        # The retry round, under its old name "generation" too for one release (0.20.0).
        assert (listed["assets"][0]["retry_round"], listed["assets"][0]["generation"]) == (0, 0)
        assert (one["retry_round"], one["generation"]) == (0, 0)
        assert {(e["retry_round"], e["generation"]) for e in one["events"]} == {(0, 0)}
        assert {(n["retry_round"], n["generation"]) for n in one["notifications"]} == {(0, 0)}
        assert (await client.get("/api/assets/99999")).status_code == 404
        assert (await client.get("/api/assets/abc")).status_code == 404
        assert (await client.get("/api/assets?state=bogus")).status_code == 400
        done = await client.post(f"/api/assets/{asset_id}/retry")
        assert done.json()["ok"] is True
        again = await client.post(f"/api/assets/{asset_id}/retry")
        assert again.status_code == 409
        assert "is not failed (pending)" in again.json()["message"]
        cancelled = await client.post(f"/api/assets/{asset_id}/cancel")
        assert cancelled.json()["message"] == f"asset {asset_id} cancelled; 2 waiting user(s) told"
        assert (await client.post("/api/queue/pause")).json()["paused"] == "paused"
        assert (await client.post("/api/queue/resume")).json()["resumed"] is True
    async with await connection.connect(console.url) as conn:
        actors = await rows(
            conn, "SELECT paused_by, resumed_by FROM queue_pauses ORDER BY id DESC LIMIT 1"
        )
        assert actors == [{"paused_by": "web:alice", "resumed_by": "web:alice"}]
        used = await scalar(conn, "SELECT last_used_at FROM web_tokens WHERE name = 'alice'")
        assert used is not None


async def test_a_service_asks_for_videos_and_acts_for_users_with_the_button_s_rules(
    console: Console,
) -> None:
    bearer = {"authorization": f"Bearer {console.service}"}
    async with await connection.connect(console.url) as conn:
        await conn.execute(
            "UPDATE queue_policy SET max_retries_per_user_per_day = 1, admins = '{900}'"
        )
    async with console.client(**bearer) as client:
        made = await client.post(
            "/api/assets",
            json={"name": " Маша ", "telegram_user": 7, "params": {"voice": "alto"}, "priority": 2},
        )
        assert made.status_code == 200, made.text
        asset_id = made.json()["asset_id"]
        assert made.json() == {
            "ok": True,
            "asset_id": asset_id,
            "state": "pending",
            "created": True,
        }
        joined = await client.post("/api/assets", json={"name": "Маша", "telegram_user": 8})
        assert (joined.json()["asset_id"], joined.json()["created"]) == (asset_id, False)
        bad = await client.post("/api/assets", json={"name": "a\u0007b"})
        assert bad.status_code == 400
        assert bad.json()["error"].startswith("asset name must be 1 to 2000 bytes")
        assert (
            await client.post("/api/assets", json={"name": "x", "priority": 11})
        ).status_code == 400
        # A service changes nothing else, and retries only as a user.
        assert (await client.post("/api/queue/pause")).status_code == 403
        assert (await client.post(f"/api/assets/{asset_id}/retry")).status_code == 403
        not_failed = await client.post(f"/api/assets/{asset_id}/retry", json={"telegram_user": 7})
        assert (not_failed.status_code, not_failed.json()["sqlstate"]) == (409, "VR012")
    async with await connection.connect(console.url) as conn:
        (job,) = await jobs.claim(conn, owner="w", limit=1, lease_seconds=30, now=None)
        await jobs.fail(conn, job, owner="w", error="boom", now=None)
    async with console.client(**bearer) as client:
        stranger = await client.post(f"/api/assets/{asset_id}/retry", json={"telegram_user": 9})
        assert (stranger.status_code, stranger.json()["sqlstate"]) == (403, "VR011")
        # A form body from a script is still answered in JSON: a Bearer caller is no browser.
        done = await client.post(f"/api/assets/{asset_id}/retry", data={"telegram_user": "7"})
        assert done.status_code == 200
        assert done.json() == {"ok": True, "message": f"asset {asset_id} retried", "result": 1}
        gone = await client.post("/api/assets/99999/retry", json={"telegram_user": 7})
        assert (gone.status_code, gone.json()["sqlstate"]) == (404, "VR010")
    async with await connection.connect(console.url) as conn:
        (job,) = await jobs.claim(conn, owner="w", limit=1, lease_seconds=30, now=None)
        await jobs.fail(conn, job, owner="w", error="boom", now=None)
    async with console.client(**bearer) as client:
        again = await client.post(f"/api/assets/{asset_id}/retry", json={"telegram_user": 7})
        assert (again.status_code, again.json()["sqlstate"]) == (429, "VR014")
        assert again.json()["outcome"] == "out_of_retries"
        # Asking again for it is a retry too, refused alike; the asset stays failed.
        asked = await client.post("/api/assets", json={"name": "Маша", "telegram_user": 7})
        assert asked.status_code == 429
        assert asked.json() == {
            "ok": False, "asset_id": asset_id, "state": "failed", "created": False,
            "outcome": "out_of_retries", "sqlstate": "VR014",
            "error": f"asset {asset_id} stays failed: user 7 has no retries left today",
        }  # fmt: skip
        took_back = await client.post(f"/api/assets/{asset_id}/cancel", json={"telegram_user": 8})
        assert took_back.json()["result"] == "withdrawn"
    async with await connection.connect(console.url) as conn:
        events = await rows(
            conn, "SELECT kind, actor FROM job_events WHERE kind IN ('retried', 'withdrawn')"
        )
        assert events == [
            {"kind": "retried", "actor": "telegram:7"},
            {"kind": "withdrawn", "actor": "telegram:8"},
        ]
        # Out of retries through the API, the admins are told as the bot's button tells them.
        alerts = await rows(conn, "SELECT user_id, payload FROM notifications WHERE kind = 'alert'")
        assert alerts == [{"user_id": 900, "payload": {"name": "Маша", "user": 7, "error": "boom"}}]


async def test_a_script_s_empty_post_gets_json_not_a_redirect(console: Console) -> None:
    # curl -d '' -H "Authorization: Bearer ..." .../retry: a form content type, and a script.
    asset_id = await failed(console.url, "Маша")
    bearer = {"authorization": f"Bearer {console.operator}"}
    async with console.client(**bearer) as client:
        done = await client.post(
            f"/api/assets/{asset_id}/retry",
            content=b"",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert done.status_code == 200
        assert done.json()["ok"] is True
    async with console.client(authorization=f"Bearer {console.viewer}") as client:
        made = await client.post("/api/assets", json={"name": "x"})
        assert made.status_code == 403


async def test_nobody_but_a_service_or_operator_asks(console: Console) -> None:
    async with console.client(authorization=f"Bearer {console.operator}") as client:
        made = await client.post("/api/assets", json={"name": "от оператора"})
        assert made.json()["created"] is True
    async with await connection.connect(console.url) as conn:
        (event,) = await rows(conn, "SELECT kind, actor FROM job_events")
        assert event == {"kind": "enqueued", "actor": "web:alice"}


async def test_a_revoked_token_ends_its_sessions(console: Console) -> None:
    async with console.logged_in(console.viewer) as client:
        assert (await client.get("/")).status_code == 200
        async with await connection.connect(console.url) as conn:
            await conn.execute("DELETE FROM web_tokens WHERE name = 'victor'")
        assert (await client.get("/")).status_code == 303


async def test_search_by_id_user_and_name_prefix_with_keyset_pages(console: Console) -> None:
    async with await connection.connect(console.url) as conn:
        for i in range(60):
            await enqueue(conn, f"video {i:02d}", user_id=1000 + i % 2)
        await enqueue(conn, "100% real_", user_id=5)
    bearer = {"authorization": f"Bearer {console.viewer}"}
    async with console.client(**bearer) as client:
        page = (await client.get("/api/assets")).json()
        assert len(page["assets"]) == 50
        ids = [a["id"] for a in page["assets"]]
        assert ids == sorted(ids, reverse=True)
        rest = (await client.get(f"/api/assets?{page['next']}")).json()
        assert len(rest["assets"]) == 11
        assert rest["next"] is None
        assert max(a["id"] for a in rest["assets"]) < min(ids)
        mine = (await client.get("/api/assets?q=1001")).json()["assets"]
        assert len(mine) == 30  # user 1001's (no asset has id 1001)
        by_id = (await client.get("/api/assets?q=7")).json()["assets"]
        assert by_id[0]["id"] == 7
        named = (await client.get("/api/assets", params={"q": "video 1"})).json()["assets"]
        assert sorted(a["name"] for a in named) == [f"video {i}" for i in range(10, 20)]
        literal = (await client.get("/api/assets", params={"q": "100%"})).json()["assets"]
        assert [a["name"] for a in literal] == ["100% real_"]
        assert (await client.get("/api/assets", params={"q": "1_0"})).json()["assets"] == []


async def test_bulk_retry_takes_the_count_the_operator_saw(console: Console) -> None:
    for name in ("a1", "a2", "b1"):
        await failed(console.url, name)
    async with console.logged_in(console.operator) as client:
        page = await client.get("/failed?q=a")
        assert '<strong id="failed-count">2</strong>' in page.text
        csrf = csrf_of(page.text)
        stale = await client.post(
            "/api/failed/retry?next=/failed", data={"csrf": csrf, "q": "a", "expected": "3"}
        )
        assert stale.status_code == 303
        assert (
            "2 failed asset(s) match now, not 3: nothing retried"
            in (await client.get("/failed")).text
        )
        await client.post(
            "/api/failed/retry?next=/failed", data={"csrf": csrf, "q": "a", "expected": "2"}
        )
    async with await connection.connect(console.url) as conn:
        states = await rows(conn, "SELECT name, state FROM video_assets ORDER BY name")
        assert states == [
            {"name": "a1", "state": "pending"},
            {"name": "a2", "state": "pending"},
            {"name": "b1", "state": "failed"},
        ]


async def test_a_dead_notification_is_sent_again(console: Console) -> None:
    asset_id = await failed(console.url, "Маша")
    async with await connection.connect(console.url) as conn:
        await conn.execute(
            "UPDATE notifications SET state = 'dead', last_error = 'recipient refused: X'"
        )
        note = await scalar(conn, "SELECT id FROM notifications")
    bearer = {"authorization": f"Bearer {console.operator}"}
    async with console.client(**bearer) as client:
        dead = await client.get("/outbox?show=dead")
        assert dead.status_code == 200  # a page: bearer works there too
        assert "recipient refused: X" in dead.text
        assert (await client.post(f"/api/notifications/{note}/resend")).json()["resent"] is True
        assert (await client.post(f"/api/notifications/{note}/resend")).status_code == 409
    async with await connection.connect(console.url) as conn:
        assert await scalar(conn, "SELECT state FROM notifications") == "pending"
        detail = await scalar(
            conn, "SELECT actor || ' ' || detail FROM job_events WHERE kind = 'resent'"
        )
        assert detail == f"web:alice notification {note} to 1 (was: recipient refused: X)"
        assert asset_id


async def test_priorities_and_a_slow_down_hold_are_on_the_pages(console: Console) -> None:
    async with await connection.connect(console.url) as conn:
        urgent = await enqueue(conn, "срочно", user_id=1, priority=7)
        await enqueue(conn, "потом", user_id=2)
        (job,) = await jobs.claim(conn, owner="w", limit=1, lease_seconds=30, now=None)
        until = await jobs.rate_limit(
            conn, job, owner="w", detail="429 Too Many Requests", retry_after=600, now=None
        )
    assert until is not None
    async with console.logged_in(console.viewer) as client:
        overview = (await client.get("/")).text
        assert f"rate limited until {until.astimezone(UTC):%H:%M:%S} UTC" in overview
        assert "429 Too Many Requests" in overview
        assert "pending by priority:\n      7: 1 · 0: 1" in overview
        page = (await client.get(f"/assets/{urgent.asset_id}")).text
        assert "<p>priority 7 · attempts 0/3" in page
        listed = (await client.get("/api/assets?state=pending")).json()["assets"]
        assert [(a["name"], a["priority"]) for a in listed] == [("потом", 0), ("срочно", 7)]
        assert "Video store" not in overview


async def test_an_outage_of_the_video_store_is_on_the_overview(console: Console) -> None:
    since = datetime(2026, 12, 4, 16, 40, 5, tzinfo=UTC)
    async with await connection.connect(console.url) as conn:
        await connection.execute(conn, "note_store_outage_and_queue_notices", {
            "owner": "w", "detail": "cannot store s3://videos/1.mp4: 503", "alert_after": 300,
            "admins": [], "now": since,
        })  # fmt: skip
    async with console.logged_in(console.viewer) as client:
        overview = (await client.get("/")).text
    assert "unreachable since 16:40:05 UTC" in overview
    assert "cannot store s3://videos/1.mp4: 503" in overview


async def test_the_live_overview_streams_the_first_snapshot(console: Console) -> None:
    """What /api/events sends each tab (the stream itself is read by a real browser in
    tests/web/test_browser.py: httpx's in-process transport buffers a whole response)."""
    async with await connection.connect(console.url) as conn:
        await enqueue(conn, "Маша", user_id=1)
    live = console.app.state.live  # type: ignore[attr-defined]
    events = live.events()
    first = await asyncio.wait_for(anext(events), 10)
    assert '"pending": 1' in first
    await events.aclose()


async def test_every_tab_shares_one_read_a_second() -> None:
    """Ten tabs open: one overview read at a time for all of them, each a second or more
    after the one before, and every tab gets each change. (A busy machine only spaces the
    reads further; none is waited for by the wall clock.)"""
    loop = asyncio.get_running_loop()
    reads: list[float] = []

    async def read() -> dict[str, int]:
        reads.append(loop.time())
        return {"n": len(reads)}

    live = Broadcaster(read, listen_url=None, rng=__import__("random").Random(1))
    seen: list[list[str]] = [[] for _ in range(10)]

    async def tab(i: int) -> None:
        async for snapshot in live.events():
            seen[i].append(snapshot)
            if len(seen[i]) == 3:
                return

    tabs = [asyncio.create_task(tab(i)) for i in range(10)]
    await asyncio.wait_for(asyncio.gather(*tabs), 60)
    await live.stop()
    assert all([json.loads(s)["n"] for s in snapshots] == [1, 2, 3] for snapshots in seen)
    # A second apart, counted from the moment before each read (the read itself starts a
    # moment later: 10 ms for that, which a busy machine cannot make shorter).
    assert all(b - a >= live.every - 0.01 for a, b in itertools.pairwise(reads)), reads


def test_no_template_has_an_inline_script_or_style() -> None:
    templates = Path(__file__).resolve().parents[2] / "vidretry" / "web" / "templates"
    for page in templates.glob("*.html"):
        text = page.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)", text), page.name
        assert " style=" not in text, page.name
        assert "<style" not in text, page.name
        assert not re.search(r"\son[a-z]+=", text), page.name  # no onclick= and the like


@pytest.mark.parametrize("path", ["/assets/0", "/assets/99999999999999999999", "/assets/x"])
async def test_bad_ids_are_one_line_not_a_traceback(console: Console, path: str) -> None:
    async with console.logged_in(console.viewer) as client:
        response = await client.get(path)
        assert response.status_code == 404
        assert "\n" not in response.text.strip()


async def test_the_overview_shows_which_releases_run(console: Console) -> None:
    async with await connection.connect(console.url) as conn:
        for role, name, release, hours in (("worker", "gpu-1:1", "0.20.0", 3),
                                           ("worker", "gpu-2:2", "0.21.0", 2),
                                           ("notifier", "bot-1:3", "0.21.0", 2)):  # fmt: skip
            await conn.execute(
                "INSERT INTO vidretry_processes (role, name, release, started_at, seen_at)"
                " VALUES (%s, %s, %s, now() - make_interval(hours => %s), now())",
                (role, name, release, hours),
            )
    async with console.logged_in(console.viewer) as client:
        overview = (await client.get("/")).text
    assert "0.20.0: 1 worker · 0.21.0: 1 worker, 1 notifier" in overview
    assert "releases 0.20.0 and 0.21.0 have run side by side for 2 h" in overview
