"""Who is asking the console, and whether they may: logins, sessions, CSRF, throttling.

A caller is a session cookie (from logging in with a token at ``/login``) or an
``Authorization: Bearer <token>`` header. Every route but ``/login`` and ``/static`` needs
one; every change needs an ``operator`` (a ``service`` may ask for videos and act as a
Telegram user). A change made with a session cookie is a POST that carries the session's
CSRF token and comes from this origin (``Sec-Fetch-Site``/``Origin``), so another site
cannot make a logged-in browser act; a Bearer token is never sent by a browser on its own,
so it needs neither. A failed login is answered late, later with each recent failure from
the same address.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import time
from collections import defaultdict, deque
from collections.abc import Callable

from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request
from starlette.responses import Response

from vidretry.db.connection import Connection, fetch_one
from vidretry.web import tokens
from vidretry.web.answers import Refused, Templates, redirect
from vidretry.web.params import is_form
from vidretry.web.tokens import Caller

log = logging.getLogger("vidretry.web")

SESSION_COOKIE = "vidretry_session"
# A failed login is answered this long after it arrived, doubling with each failure from
# the same address in FAILURE_WINDOW seconds, up to MAX_LOGIN_DELAY.
LOGIN_DELAY = 1.0
MAX_LOGIN_DELAY = 30.0
FAILURE_WINDOW = 600.0


class Auth:
    def __init__(
        self,
        pool: AsyncConnectionPool[Connection],
        templates: Templates,
        *,
        behind_https: bool = False,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pool = pool
        self.templates = templates
        # Behind a proxy that speaks https, a browser's Origin says https while this
        # process sees http: the proxy must pass the Host header on (docs/deployment.md).
        self.scheme = "https" if behind_https else None
        self.monotonic = monotonic
        self.failures: dict[str, deque[float]] = defaultdict(deque)

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
                await self.same_origin_with_csrf(request)
        return caller

    def cross_site(self, request: Request) -> bool:
        """The browser says the request comes from another site (or another origin)."""
        site = request.headers.get("sec-fetch-site")
        origin = request.headers.get("origin")
        own = f"{self.scheme or request.url.scheme}://{request.url.netloc}"
        return (site is not None and site not in ("same-origin", "none")) or (
            origin is not None and origin != own
        )

    async def same_origin_with_csrf(self, request: Request) -> None:
        """A change made with the session cookie: from this origin, with the CSRF token."""
        if self.cross_site(request):
            raise Refused(403, "cross-site request refused")
        if "sec-fetch-site" not in request.headers and "origin" not in request.headers:
            raise Refused(403, "request without Origin or Sec-Fetch-Site refused")
        expected = request.session.get("csrf")
        sent = request.headers.get("x-csrf-token")
        if sent is None and is_form(request):
            sent = str((await request.form()).get("csrf", ""))
        if not isinstance(expected, str) or not sent or not hmac.compare_digest(sent, expected):
            raise Refused(403, "missing or wrong CSRF token")

    # -- the routes: logging in and out -------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        return self.templates.page(request, "login.html", None, error=None)

    async def login(self, request: Request) -> Response:
        if self.cross_site(request):  # another site logging a browser in as someone else
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
            response = self.templates.page(
                request, "login.html", None, error="That token is not valid."
            )
            response.status_code = 401
            return response
        request.session.clear()
        request.session.update({"token": digest.hex(), "csrf": secrets.token_urlsafe(32)})
        log.info("web: %s logged in from %s", caller.name, address)
        return redirect("/")

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
        await self.same_origin_with_csrf(request)
        request.session.clear()
        return redirect("/login")
