"""The console in-process: the real Starlette app on a real PostgreSQL, through httpx."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import pytest

from vidretry.db import connection
from vidretry.db.pool import open_pool
from vidretry.web import tokens
from vidretry.web.app import build_app

BASE = "http://console.test"


@dataclass
class Console:
    url: str  # the database's
    app: object
    operator: str  # tokens
    viewer: str
    service: str

    def client(self, **headers: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app)  # type: ignore[arg-type]
        return httpx.AsyncClient(transport=transport, base_url=BASE, headers=headers)

    @asynccontextmanager
    async def logged_in(self, token: str) -> AsyncIterator[httpx.AsyncClient]:
        """A browser-like client with a session: the login form, posted from this origin."""
        async with self.client(origin=BASE) as client:
            response = await client.post("/login", data={"token": token})
            assert response.status_code == 303, response.text
            yield client


@pytest.fixture
async def console(db_url: str) -> AsyncIterator[Console]:
    async with await connection.connect(db_url) as conn:
        operator = await tokens.add(conn, "alice", tokens.Role.OPERATOR)
        viewer = await tokens.add(conn, "victor", tokens.Role.VIEWER)
        service = await tokens.add(conn, "hostbot", tokens.Role.SERVICE)
    async with open_pool(db_url, max_size=4, prepare=False) as pool:
        app = build_app(pool, session_key=b"k" * 32, listen_url=db_url)
        yield Console(db_url, app, operator, viewer, service)
        await app.state.live.stop()


def csrf_of(page: str) -> str:
    """The CSRF token a page carries (its meta tag)."""
    marker = '<meta name="csrf" content="'
    start = page.index(marker) + len(marker)
    return page[start : page.index('"', start)]


from tests.acceptance.conftest import make_cli  # noqa: E402, F401 (a fixture the CLI tests use)
