"""The operator's web console: a Starlette application over the same services as the CLI.

Pages: ``/login``, ``/`` (the overview, live), ``/assets`` (``?state=``, ``?q=``, keyset
pages), ``/assets/{id}``, ``/failed`` (bulk retry), ``/outbox``. The JSON API, with the same
auth (a session cookie, or ``Authorization: Bearer <token>``): ``GET /api/assets``,
``GET /api/assets/{id}``, ``POST /api/assets/{id}/retry`` and ``/cancel``,
``POST /api/queue/pause`` and ``/resume``, ``POST /api/notifications/{id}/resend``,
``POST /api/failed/retry``, ``GET /api/events`` (Server-Sent Events).

Who may do what: every route but ``/login`` and ``/static`` needs a caller; every change
needs an ``operator``. A change made with a session cookie is a POST that carries the
session's CSRF token and comes from this origin (``Sec-Fetch-Site``/``Origin``), so another
site cannot make a logged-in browser act; a Bearer token is never sent by a browser on its
own, so it needs neither. Every page has a Content-Security-Policy with no inline script.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import html
import logging
import random
import secrets
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import (
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from vidretry.db.connection import Connection, fetch_all, fetch_one
from vidretry.errors import ConfigError, RefusedError
from vidretry.models import JobState, NotificationState
from vidretry.queue import breaker, interface, reports
from vidretry.queue.cancel import cancel, describe_cancel
from vidretry.queue.enqueue import enqueue
from vidretry.queue.loop import TRANSIENT_DB_ERRORS
from vidretry.queue.retry import Actor, describe_retry, retry
from vidretry.web import tokens
from vidretry.web.chart import outcomes_chart
from vidretry.web.live import Broadcaster
from vidretry.web.tokens import Caller

log = logging.getLogger("vidretry.web")

HERE = Path(__file__).parent
PAGE_SIZE = 50
SESSION_COOKIE = "vidretry_session"
# A failed login is answered this long after it arrived, doubling with each failure from
# the same address in FAILURE_WINDOW seconds, up to MAX_LOGIN_DELAY.
LOGIN_DELAY = 1.0
MAX_LOGIN_DELAY = 30.0
FAILURE_WINDOW = 600.0
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


class Refused(Exception):
    """A request refused: its status and a one-line reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Console:
    def __init__(
        self,
        pool: AsyncConnectionPool[Connection],
        *,
        listen_url: str | None,
        behind_https: bool = False,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.pool = pool
        # Behind a proxy that speaks https, a browser's Origin says https while this
        # process sees http: the proxy must pass the Host header on (docs/deployment.md).
        self.scheme = "https" if behind_https else None
        self.monotonic = monotonic
        self.live = Broadcaster(
            self._overview,
            listen_url=listen_url,
            rng=rng or random.Random(),  # noqa: S311 (reconnect jitter only)
        )
        self.failures: dict[str, deque[float]] = defaultdict(deque)
        self.templates = Jinja2Templates(
            env=jinja2.Environment(
                loader=jinja2.FileSystemLoader(HERE / "templates"),
                autoescape=True,
                undefined=jinja2.StrictUndefined,
            )
        )

    # -- who is asking --------------------------------------------------------------------

    async def caller(self, request: Request) -> Caller | None:
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            digest = tokens.token_hash(auth[7:])
            async with self.pool.connection() as conn:
                found = await tokens.caller_for_hash(conn, digest)
                if found is not None:
                    await fetch_one(conn, "note_web_token_used", {"hash": digest})
            return found
        stored = request.session.get("token")
        if not isinstance(stored, str):
            return None
        try:
            digest = bytes.fromhex(stored)
        except ValueError:
            return None
        async with self.pool.connection() as conn:
            return await tokens.caller_for_hash(conn, digest)

    async def require(self, request: Request, *, act: bool = False, ask: bool = False) -> Caller:
        """The caller, allowed to: read (always), ``ask`` (a service's changes: ask for a
        video, retry or cancel as a Telegram user) or ``act`` (an operator's)."""
        caller = await self.caller(request)
        if caller is None:
            raise Refused(401, "log in first")
        if act or ask:
            if not (caller.may_act if act else caller.may_ask):
                raise Refused(403, f"token {caller.name} is a {caller.role}: it may not do this")
            if "authorization" not in request.headers:
                await self._same_origin_with_csrf(request)
        return caller

    def _cross_site(self, request: Request) -> bool:
        """The browser says the request comes from another site (or another origin)."""
        site = request.headers.get("sec-fetch-site")
        origin = request.headers.get("origin")
        own = f"{self.scheme or request.url.scheme}://{request.url.netloc}"
        return (site is not None and site not in ("same-origin", "none")) or (
            origin is not None and origin != own
        )

    async def _same_origin_with_csrf(self, request: Request) -> None:
        """A change made with the session cookie: from this origin, with the CSRF token."""
        if self._cross_site(request):
            raise Refused(403, "cross-site request refused")
        if "sec-fetch-site" not in request.headers and "origin" not in request.headers:
            raise Refused(403, "request without Origin or Sec-Fetch-Site refused")
        expected = request.session.get("csrf")
        sent = request.headers.get("x-csrf-token")
        if sent is None and _is_form(request):
            sent = str((await request.form()).get("csrf", ""))
        if not isinstance(expected, str) or not sent or not hmac.compare_digest(sent, expected):
            raise Refused(403, "missing or wrong CSRF token")

    # -- pages ----------------------------------------------------------------------------

    def page(self, request: Request, name: str, caller: Caller | None, **context: Any) -> Response:
        csrf = request.session.get("csrf") or ""
        flash = request.session.pop("flash", None)
        response = self.templates.TemplateResponse(
            request,
            name,
            {"caller": caller, "csrf": csrf, "flash": flash, **context},
        )
        response.headers.update(SECURITY_HEADERS)
        return response

    async def login_page(self, request: Request) -> Response:
        return self.page(request, "login.html", None, error=None)

    async def login(self, request: Request) -> Response:
        if self._cross_site(request):  # another site logging a browser in as someone else
            raise Refused(403, "cross-site request refused")
        form = await request.form()
        token = str(form.get("token", ""))
        address = request.client.host if request.client else "?"
        digest = tokens.token_hash(token)
        async with self.pool.connection() as conn:
            caller = await tokens.caller_for_hash(conn, digest) if token else None
            if caller is not None:
                await fetch_one(conn, "note_web_token_used", {"hash": digest})
        if caller is None:
            await asyncio.sleep(self._failed_login(address))
            response = self.page(request, "login.html", None, error="That token is not valid.")
            response.status_code = 401
            return response
        request.session.clear()
        request.session.update({"token": digest.hex(), "csrf": secrets.token_urlsafe(32)})
        log.info("web: %s logged in from %s", caller.name, address)
        return _redirect("/")

    def _failed_login(self, address: str) -> float:
        """How long to make this failed login wait: longer with each recent one from there."""
        now = self.monotonic()
        recent = self.failures[address]
        while recent and recent[0] < now - FAILURE_WINDOW:
            recent.popleft()
        recent.append(now)
        if len(self.failures) > 10_000:
            self.failures = defaultdict(deque, {a: r for a, r in self.failures.items() if r})
        return float(min(MAX_LOGIN_DELAY, LOGIN_DELAY * 2.0 ** (len(recent) - 1)))

    async def logout(self, request: Request) -> Response:
        await self.require(request, act=False)
        await self._same_origin_with_csrf(request)
        request.session.clear()
        return _redirect("/login")

    async def overview(self, request: Request) -> Response:
        caller = await self.require(request)
        return self.page(request, "overview.html", caller, o=await self._overview())

    async def _overview(self) -> dict[str, Any]:
        async with self.pool.connection() as conn:
            status = await reports.status(conn, None)
            minutes = await fetch_all(conn, "outcomes_per_minute", {})
            facts = await fetch_one(conn, "console_facts", {})
        assert facts is not None
        queue = status["queue"]
        return {
            "counts": status["counts"],
            "available_estimated": status["available_estimated"],
            "failed_last_hour": status["failed_last_hour"],
            "outbox_waiting": status["outbox_backlog"],
            "outbox_dead": status["outbox_dead"],
            "paused": queue["state"] == "paused",
            "queue": queue,
            "order": status["order"],
            "pending_by_priority": status["pending_by_priority"],
            "rate_limited": status["rate_limited"],
            "generator": _generator(status["rate_limited"]),
            "store_down": _store_down(status["store_down"]),
            "leader": facts["leader"],
            "telegram": bool(facts["leader"]) and bool(facts["telegram"]),
            "leader_until": facts["leader_until"],
            "pruned_at": facts["pruned_at"],
            "pruned_by": facts["pruned_by"],
            "chart": outcomes_chart(minutes, facts["now"]),
            "releases": _releases(status["releases"]),
            "releases_warning": status["releases"]["warning"],
        }

    async def assets_page(self, request: Request) -> Response:
        caller = await self.require(request)
        found = await self._search(request)
        return self.page(request, "assets.html", caller, **found, states=list(JobState))

    async def _search(self, request: Request) -> dict[str, Any]:
        state = request.query_params.get("state") or None
        if state is not None and state not in set(JobState):
            raise Refused(400, f"unknown state {state[:20]!r}")
        q = (request.query_params.get("q") or "").strip()[:200]
        before = _int_param(request, "before")
        params: dict[str, Any] = {
            "state": state, "before": before, "prefix": None, "limit": PAGE_SIZE,
        }  # fmt: skip
        exact = None
        async with self.pool.connection() as conn:
            if q.isascii() and q.isdigit() and len(q) <= 19:
                # Digits: that asset, and the assets that Telegram user asked for.
                if before is None:
                    exact = await fetch_one(conn, "show_asset", {"id": int(q)})
                found = await fetch_all(conn, "assets_of_user", {**params, "user_id": int(q)})
            else:
                params["prefix"] = _like_prefix(q) if q else None
                found = await fetch_all(conn, "search_assets", params)
            rows = [dict(r) for r in found]
        if exact is not None and all(r["id"] != exact["id"] for r in rows):
            rows.insert(0, _asset_row(exact))
        more = None
        if len(rows) >= PAGE_SIZE:
            more = urlencode(
                {k: v for k, v in (("state", state), ("q", q), ("before", rows[-1]["id"])) if v}
            )
        return {"assets": rows, "state": state, "q": q, "more": more}

    async def asset_page(self, request: Request) -> Response:
        caller = await self.require(request)
        asset = await self._asset(request)
        return self.page(request, "asset.html", caller, a=asset)

    async def _asset(self, request: Request) -> dict[str, Any]:
        asset_id = _path_id(request)
        async with self.pool.connection() as conn:
            asset = await reports.show_asset(conn, asset_id)
        if asset is None:
            raise Refused(404, f"asset {asset_id} not found")
        return asset

    async def failed_page(self, request: Request) -> Response:
        caller = await self.require(request)
        q = (request.query_params.get("q") or "").strip()[:200]
        prefix = _like_prefix(q) if q else None
        async with self.pool.connection() as conn:
            count = await fetch_one(conn, "count_failed", {"prefix": prefix})
            rows = await fetch_all(
                conn, "search_assets",
                {"state": "failed", "before": None, "prefix": prefix, "limit": PAGE_SIZE},
            )  # fmt: skip
        assert count is not None
        return self.page(request, "failed.html", caller, q=q, count=count["n"], assets=rows)

    async def outbox_page(self, request: Request) -> Response:
        caller = await self.require(request)
        show = request.query_params.get("show", "waiting")
        states = {
            "waiting": [NotificationState.PENDING, NotificationState.SENDING],
            "dead": [NotificationState.DEAD],
        }.get(show)
        if states is None:
            raise Refused(400, "show must be waiting or dead")
        async with self.pool.connection() as conn:
            rows = await fetch_all(
                conn,
                "outbox_rows",
                {"states": states, "before": _int_param(request, "before"), "limit": PAGE_SIZE},
            )
        return self.page(request, "outbox.html", caller, show=show, notes=rows)

    # -- the API, and the actions the pages post ------------------------------------------------

    async def api_assets(self, request: Request) -> Response:
        await self.require(request)
        found = await self._search(request)
        return _json({"assets": found["assets"], "next": found["more"]})

    async def api_asset(self, request: Request) -> Response:
        await self.require(request)
        return _json(await self._asset(request))

    async def api_enqueue(self, request: Request) -> Response:
        """Ask for a video: ``name``, and optionally ``telegram_user`` (who waits; the
        request is then theirs), ``chat``, ``params`` (an object) and ``priority`` (0-9)."""
        caller = await self.require(request, ask=True)
        values = await _values(request)
        name = values.get("name")
        params = values.get("params") or {}
        if not isinstance(name, str) or not isinstance(params, dict):
            raise Refused(400, "name must be a string and params an object")
        try:
            user = _optional_int(values, "telegram_user")
            chat = _optional_int(values, "chat")
            priority = _optional_int(values, "priority") or 0
            async with self.pool.connection() as conn:
                done = await enqueue(
                    conn, name, user_id=user, chat_id=chat, params=params, priority=priority,
                    asked_by=caller.actor,
                )  # fmt: skip
        except ConfigError as exc:
            raise Refused(400, str(exc)) from None
        if done.out_of_retries:
            # Asking again for a failed video is a retry: refused as the user's button press
            # would be (vidretry_press_retry's 429), the admins told.
            return _json(
                {
                    "ok": False, "asset_id": done.asset_id, "state": done.state,
                    "created": False, "outcome": "out_of_retries", "sqlstate": "VR014",
                    "error": f"asset {done.asset_id} stays failed: user {user} has no "
                    "retries left today",
                },
                status=_STATUS_OF["VR014"],
            )  # fmt: skip
        return _json(
            {"ok": True, "asset_id": done.asset_id, "state": done.state, "created": done.created}
        )

    async def api_retry(self, request: Request) -> Response:
        """Retry as an operator; or, with ``telegram_user``, as that user's button press
        would (a service may only do that)."""
        user = _optional_int(await _values(request), "telegram_user")
        if user is not None:
            await self.require(request, ask=True)
            return await self._pressed(request, user)
        caller = await self.require(request, act=True)
        async with self.pool.connection() as conn:
            result = await retry(conn, _path_id(request), Actor(caller.actor), reason="web console")
        return self._done(request, result.retried, describe_retry(result), result)

    async def _pressed(self, request: Request, user: int) -> Response:
        """The retry button pressed by a Telegram user (vidretry_press_retry): out of retries
        for today, the admins are told as vidretry's own button tells them; each refusal is
        the HTTP status and SQLSTATE that vidretry_retry would have raised."""
        asset_id = _path_id(request)
        try:
            async with self.pool.connection() as conn:
                outcome, generation = await interface.press_retry(conn, asset_id, user_id=user)
        except ConfigError as exc:
            return _json({"ok": False, "error": str(exc), "sqlstate": exc.sqlstate}, status=400)
        if outcome == "retried":
            return _json({"ok": True, "message": f"asset {asset_id} retried", "result": generation})
        sqlstate = interface.PRESS_REFUSAL[outcome]
        error = f"asset {asset_id}: {outcome.replace('_', ' ')}"
        return _json(
            {"ok": False, "error": error, "outcome": outcome, "sqlstate": sqlstate},
            status=_STATUS_OF[sqlstate],
        )

    async def _as_user(
        self,
        request: Request,
        action: Callable[..., Awaitable[object]],
        user: int,
        done: str,
    ) -> Response:
        """The SQL interface's rules for a Telegram user (vidretry_cancel):
        its refusals as HTTP statuses, with its SQLSTATE."""
        asset_id = _path_id(request)
        try:
            async with self.pool.connection() as conn:
                result = await action(conn, asset_id, user_id=user)
        except (ConfigError, RefusedError) as exc:
            status = _STATUS_OF.get(exc.sqlstate or "", 409)
            return _json({"ok": False, "error": str(exc), "sqlstate": exc.sqlstate}, status=status)
        return _json({"ok": True, "message": f"asset {asset_id} {done}", "result": result})

    async def api_cancel(self, request: Request) -> Response:
        """Cancel the asset as an operator; or, with ``telegram_user``, take back that
        user's request, as their cancel button would."""
        user = _optional_int(await _values(request), "telegram_user")
        if user is not None:
            await self.require(request, ask=True)
            return await self._as_user(request, interface.cancel, user, "request taken back")
        caller = await self.require(request, act=True)
        async with self.pool.connection() as conn:
            result = await cancel(
                conn, _path_id(request), Actor(caller.actor), reason="web console"
            )
        return self._done(request, result.changed, describe_cancel(result), result)

    async def api_pause(self, request: Request) -> Response:
        caller = await self.require(request, act=True)
        async with self.pool.connection() as conn:
            done = await breaker.pause(conn, actor=caller.actor, detail="web console")
        return self._done(request, True, f"queue {done.value}", {"paused": done.value})

    async def api_resume(self, request: Request) -> Response:
        caller = await self.require(request, act=True)
        async with self.pool.connection() as conn:
            resumed = await breaker.resume(conn, actor=caller.actor, admins=[])
        text = "queue resumed" if resumed is not None else "queue was not paused"
        return self._done(request, resumed is not None, text, {"resumed": resumed is not None})

    async def api_resend(self, request: Request) -> Response:
        caller = await self.require(request, act=True)
        note_id = _path_id(request)
        async with self.pool.connection() as conn:
            row = await fetch_one(
                conn, "resend_notification", {"id": note_id, "actor": caller.actor}
            )
        text = f"notification {note_id} " + ("queued again" if row else "is not dead")
        return self._done(request, row is not None, text, {"resent": row is not None})

    async def api_retry_failed(self, request: Request) -> Response:
        """Retry every failed asset that matches the filter the page showed; the count the
        operator confirmed must still be the count, or nothing is retried."""
        caller = await self.require(request, act=True)
        values = await _values(request)
        q = str(values.get("q") or "").strip()[:200]
        prefix = _like_prefix(q) if q else None
        async with self.pool.connection() as conn:
            ids = [r["id"] for r in await fetch_all(conn, "failed_ids", {"prefix": prefix})]
            expected = str(values.get("expected") or "")
            if expected and expected != str(len(ids)):
                return self._done(
                    request, False,
                    f"{len(ids)} failed asset(s) match now, not {expected}: nothing retried",
                    {"retried": 0, "failed": len(ids)},
                )  # fmt: skip
            retried = 0
            for asset_id in ids:
                result = await retry(conn, asset_id, Actor(caller.actor), reason="web: bulk retry")
                retried += result.retried
        return self._done(
            request, True, f"{retried} of {len(ids)} failed asset(s) queued again",
            {"retried": retried, "failed": len(ids)},
        )  # fmt: skip

    def _done(self, request: Request, ok: bool, text: str, result: Any) -> Response:
        """An action's answer: back to the page for a browser's form, JSON for a script (one
        with a Bearer token is never a browser, whatever content type it sends)."""
        if _is_form(request) and "authorization" not in request.headers:
            request.session["flash"] = text
            return _redirect(_next(request))
        body = result if isinstance(result, dict) else _jsonable(result)
        return _json({"ok": ok, "message": text, **body}, status=200 if ok else 409)

    async def api_events(self, request: Request) -> Response:
        await self.require(request)

        async def stream() -> AsyncIterator[bytes]:
            async for snapshot in self.live.events():
                yield f"event: overview\ndata: {snapshot}\n\n".encode()

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )


def build_app(
    pool: AsyncConnectionPool[Connection],
    *,
    session_key: bytes,
    listen_url: str | None,
    behind_https: bool = False,
) -> Starlette:
    console = Console(pool, listen_url=listen_url, behind_https=behind_https)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await console.live.stop()

    def guarded(handler: Callable[[Request], Awaitable[Response]]) -> Callable[..., Any]:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except Refused as refused:
                return _refusal(request, refused)
            except TRANSIENT_DB_ERRORS as exc:
                log.error("web: %s %s: database unavailable: %s", request.method,
                          request.url.path, exc)  # fmt: skip
                return _refusal(request, Refused(503, "the database is unavailable: try again"))

        return endpoint

    c = console
    routes = [
        Route("/login", guarded(c.login_page), methods=["GET"]),
        Route("/login", guarded(c.login), methods=["POST"]),
        Route("/logout", guarded(c.logout), methods=["POST"]),
        Route("/", guarded(c.overview), methods=["GET"]),
        Route("/assets", guarded(c.assets_page), methods=["GET"]),
        Route("/assets/{id}", guarded(c.asset_page), methods=["GET"]),
        Route("/failed", guarded(c.failed_page), methods=["GET"]),
        Route("/outbox", guarded(c.outbox_page), methods=["GET"]),
        Route("/api/assets", guarded(c.api_assets), methods=["GET"]),
        Route("/api/assets", guarded(c.api_enqueue), methods=["POST"]),
        Route("/api/assets/{id}", guarded(c.api_asset), methods=["GET"]),
        Route("/api/assets/{id}/retry", guarded(c.api_retry), methods=["POST"]),
        Route("/api/assets/{id}/cancel", guarded(c.api_cancel), methods=["POST"]),
        Route("/api/queue/pause", guarded(c.api_pause), methods=["POST"]),
        Route("/api/queue/resume", guarded(c.api_resume), methods=["POST"]),
        Route("/api/notifications/{id}/resend", guarded(c.api_resend), methods=["POST"]),
        Route("/api/failed/retry", guarded(c.api_retry_failed), methods=["POST"]),
        Route("/api/events", guarded(c.api_events), methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[
            Middleware(
                SessionMiddleware,
                secret_key=session_key.hex(),
                session_cookie=SESSION_COOKIE,
                same_site="strict",
                https_only=behind_https,
                max_age=12 * 3600,
            )
        ],
    )
    app.state.console = console
    return app


# -- small parts ----------------------------------------------------------------------------


def _refusal(request: Request, refused: Refused) -> Response:
    if request.url.path.startswith("/api/") or "authorization" in request.headers:
        return _json({"ok": False, "error": refused.reason}, status=refused.status)
    if refused.status == 401:
        return _redirect("/login")
    response = PlainTextResponse(refused.reason, status_code=refused.status)
    response.headers.update(SECURITY_HEADERS)
    return response


def _redirect(path: str) -> Response:
    response = RedirectResponse(path, status_code=303)
    response.headers.update(SECURITY_HEADERS)
    return response


def _json(body: Any, status: int = 200) -> Response:
    response = JSONResponse(_jsonable(body), status_code=status)
    response.headers.update(SECURITY_HEADERS)
    return response


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "__dataclass_fields__"):
        return {k: _jsonable(getattr(value, k)) for k in value.__dataclass_fields__}
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


# The SQL interface's refusals, as HTTP says them.
_STATUS_OF = {
    "VR001": 400, "VR002": 400, "VR003": 400, "VR004": 400,
    "VR010": 404, "VR011": 403, "VR012": 409, "VR013": 409, "VR014": 429,
}  # fmt: skip


def _optional_int(values: dict[str, Any], key: str) -> int | None:
    """An integer field of a form or a JSON body: absent (None), or a whole number."""
    value = values.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise Refused(400, f"{key} must be an integer")
    text = str(value).strip()
    if not text.lstrip("-").isdigit() or not text.isascii() or len(text) > 20:
        raise Refused(400, f"{key} must be an integer, got {text[:30]!r}")
    return int(text)


def _is_form(request: Request) -> bool:
    kind = request.headers.get("content-type", "")
    return kind.startswith(("application/x-www-form-urlencoded", "multipart/form-data"))


async def _values(request: Request) -> dict[str, Any]:
    if _is_form(request):
        return dict(await request.form())
    with contextlib.suppress(ValueError):
        body = await request.json()
        if isinstance(body, dict):
            return body
    return dict(request.query_params)


def _next(request: Request) -> str:
    """Where a form's action goes back to: a path on this site, never elsewhere."""
    target = request.query_params.get("next") or "/"
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _path_id(request: Request) -> int:
    text = request.path_params["id"]
    if not (text.isascii() and text.isdigit() and 1 <= len(text) <= 19):
        raise Refused(404, f"no such id: {html.escape(text[:20])}")
    return int(text)


def _int_param(request: Request, name: str) -> int | None:
    text = request.query_params.get(name)
    if text is None or text == "":
        return None
    if not (text.isascii() and text.isdigit() and len(text) <= 19):
        raise Refused(400, f"{name} must be an id")
    return int(text)


def _like_prefix(text: str) -> str:
    """A LIKE pattern for names that start with ``text`` (its wildcards taken literally)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _asset_row(asset: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "name", "state", "attempts", "max_attempts", "generation", "last_error",
            "updated_at")  # fmt: skip
    return {k: asset[k] for k in keys}


def _store_down(outage: dict[str, Any] | None) -> dict[str, str] | None:
    """An outage of the video store as the overview says it: since when, and why."""
    if outage is None:
        return None
    return {"since": outage["since"].astimezone(UTC).strftime("%H:%M:%S UTC"),
            "why": str(outage["why"])}  # fmt: skip


def _releases(about: dict[str, Any]) -> str:
    """The releases that run, as the overview says it: "0.20.0: 2 workers, 1 notifier"."""
    shown = [f"{entry['release']}: {reports.processes(entry)}" for entry in about["running"]]
    return " · ".join(shown) or "none recorded"


def _generator(rate_limited: dict[str, Any] | None) -> str:
    """The generator as the overview says it: free to start jobs, or told to slow down."""
    if rate_limited is None:
        return "starting jobs"
    return f"rate limited until {rate_limited['until'].astimezone(UTC).strftime('%H:%M:%S UTC')}"
