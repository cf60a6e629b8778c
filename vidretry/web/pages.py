"""The console's HTML pages: ``/`` (the overview, kept live by vidretry.web.live),
``/assets`` (``?state=``, ``?q=``, keyset pages), ``/assets/{id}``, ``/failed`` (bulk retry)
and ``/outbox``. Their forms post to the JSON API's routes (vidretry.web.api).
"""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request
from starlette.responses import Response

from vidretry.db.connection import Connection, fetch_all, fetch_one
from vidretry.models import JobState, NotificationState
from vidretry.web import reads
from vidretry.web.answers import Refused, Templates
from vidretry.web.auth import Auth
from vidretry.web.params import int_param, like_prefix
from vidretry.web.reads import PAGE_SIZE


class Pages:
    def __init__(
        self, pool: AsyncConnectionPool[Connection], auth: Auth, templates: Templates
    ) -> None:
        self.pool = pool
        self.auth = auth
        self.templates = templates

    async def overview(self, request: Request) -> Response:
        caller = await self.auth.require(request)
        overview = await reads.overview(self.pool)
        return self.templates.page(request, "overview.html", caller, o=overview)

    async def assets(self, request: Request) -> Response:
        caller = await self.auth.require(request)
        found = await reads.search(self.pool, request)
        return self.templates.page(request, "assets.html", caller, **found, states=list(JobState))

    async def asset(self, request: Request) -> Response:
        caller = await self.auth.require(request)
        asset = await reads.asset(self.pool, request)
        return self.templates.page(request, "asset.html", caller, a=asset)

    async def failed(self, request: Request) -> Response:
        caller = await self.auth.require(request)
        q = (request.query_params.get("q") or "").strip()[:200]
        prefix = like_prefix(q) if q else None
        async with self.pool.connection() as conn:
            count = await fetch_one(conn, "count_failed", {"prefix": prefix})
            rows = await fetch_all(
                conn, "search_assets",
                {"state": "failed", "before": None, "prefix": prefix, "limit": PAGE_SIZE},
            )  # fmt: skip
        assert count is not None
        return self.templates.page(
            request, "failed.html", caller, q=q, count=count["n"], assets=rows
        )

    async def outbox(self, request: Request) -> Response:
        caller = await self.auth.require(request)
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
                {"states": states, "before": int_param(request, "before"), "limit": PAGE_SIZE},
            )
        return self.templates.page(request, "outbox.html", caller, show=show, notes=rows)
