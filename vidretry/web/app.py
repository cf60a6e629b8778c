"""The operator's web console as one Starlette application: its routes, each answered by the
room that owns it (logging in: ``auth``; the HTML pages: ``pages``; the JSON API: ``api``;
the live overview: ``live``), and the session they share.

Every route but ``/login`` and ``/static`` needs a caller (vidretry.web.auth); a refusal is
answered as its caller reads it, and a database that is down is a 503, never a traceback.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from vidretry.db.connection import Connection
from vidretry.db.transient import TRANSIENT_DB_ERRORS
from vidretry.web import reads
from vidretry.web.answers import HERE, Refused, Templates, refusal
from vidretry.web.api import Api
from vidretry.web.auth import SESSION_COOKIE, Auth
from vidretry.web.live import Broadcaster
from vidretry.web.pages import Pages

log = logging.getLogger("vidretry.web")


def build_app(
    pool: AsyncConnectionPool[Connection],
    *,
    session_key: bytes,
    listen_url: str | None,
    behind_https: bool = False,
) -> Starlette:
    templates = Templates()
    auth = Auth(pool, templates, behind_https=behind_https)
    pages = Pages(pool, auth, templates)
    api = Api(pool, auth)
    live = Broadcaster(
        lambda: reads.overview(pool),
        listen_url=listen_url,
        rng=random.Random(),  # noqa: S311 (reconnect jitter only)
    )

    async def events(request: Request) -> Response:
        await auth.require(request)
        return live.stream()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await live.stop()

    def guarded(handler: Callable[[Request], Awaitable[Response]]) -> Callable[..., Any]:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except Refused as refused:
                return refusal(request, refused)
            except TRANSIENT_DB_ERRORS as exc:
                log.error("web: %s %s: database unavailable: %s", request.method,
                          request.url.path, exc)  # fmt: skip
                return refusal(request, Refused(503, "the database is unavailable: try again"))

        return endpoint

    routes = [
        Route("/login", guarded(auth.login_page), methods=["GET"]),
        Route("/login", guarded(auth.login), methods=["POST"]),
        Route("/logout", guarded(auth.logout), methods=["POST"]),
        Route("/", guarded(pages.overview), methods=["GET"]),
        Route("/assets", guarded(pages.assets), methods=["GET"]),
        Route("/assets/{id}", guarded(pages.asset), methods=["GET"]),
        Route("/failed", guarded(pages.failed), methods=["GET"]),
        Route("/outbox", guarded(pages.outbox), methods=["GET"]),
        Route("/api/assets", guarded(api.list_assets), methods=["GET"]),
        Route("/api/assets", guarded(api.ask_for_video), methods=["POST"]),
        Route("/api/assets/{id}", guarded(api.show_asset), methods=["GET"]),
        Route("/api/assets/{id}/retry", guarded(api.retry_asset), methods=["POST"]),
        Route("/api/assets/{id}/cancel", guarded(api.cancel_asset), methods=["POST"]),
        Route("/api/queue/pause", guarded(api.pause_queue), methods=["POST"]),
        Route("/api/queue/resume", guarded(api.resume_queue), methods=["POST"]),
        Route("/api/notifications/{id}/resend", guarded(api.resend_notification), methods=["POST"]),
        Route("/api/failed/retry", guarded(api.retry_failed), methods=["POST"]),
        Route("/api/events", guarded(events), methods=["GET"]),
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
    app.state.live = live
    return app
