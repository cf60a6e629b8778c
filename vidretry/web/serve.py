"""``vidretry web``: the console on one uvicorn server, until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Iterator

from vidretry.clock import DatabaseClock
from vidretry.config import Config
from vidretry.db.connection import fetch_one
from vidretry.db.embedded import database_url
from vidretry.db.pool import open_pool
from vidretry.db.processes import recorded
from vidretry.errors import ConfigError
from vidretry.names import default_process_name

log = logging.getLogger("vidretry.web")


async def serve_web(config: Config, *, address: str, port: int, stop: asyncio.Event) -> None:
    """Serve until ``stop`` is set; ``ConfigError`` when the web extra is missing or the
    address cannot be listened on."""
    try:
        import uvicorn

        from vidretry.web.app import build_app
    except ImportError as exc:
        raise ConfigError(
            f"the web console needs its extra: pip install 'vidretry[web]' ({exc.name} missing)"
        ) from None

    class Server(uvicorn.Server):
        """Signals are vidretry's (``stop``): uvicorn's own handling would re-raise the
        signal once it stopped, and the process would not exit 0."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    url = database_url(config.database)
    # Unprepared statements: each is planned with its parameters' values, so the console's
    # optional filters fold away and a state filter uses that state's partial index (a
    # generic plan would scan a million finished assets for the last few failed ones).
    async with open_pool(url, max_size=8, prepare=False) as pool:
        async with pool.connection() as conn:
            row = await fetch_one(conn, "web_session_key", {"key": secrets.token_bytes(32)})
            if row is None:  # another web process made it at the same moment
                row = await fetch_one(conn, "web_session_key", {"key": secrets.token_bytes(32)})
        assert row is not None
        app = build_app(
            pool,
            session_key=bytes(row["session_key"]),
            listen_url=config.database.listen_url or url,
            behind_https=config.web.behind_https,
        )
        server = Server(
            uvicorn.Config(
                app,
                host=address,
                port=port,
                log_level="warning",
                lifespan="on",
                proxy_headers=False,
                server_header=False,
                date_header=False,
                # Open event streams end at a stop instead of holding it up.
                timeout_graceful_shutdown=2,
            )
        )

        async def serve() -> None:
            with contextlib.suppress(SystemExit):  # uvicorn's way to say it cannot bind
                await server.serve()

        # A port in use is our one-line error below, not uvicorn's log line and traceback.
        startup_log = logging.getLogger("uvicorn.error")
        level = startup_log.level
        startup_log.setLevel(logging.CRITICAL)
        serving = asyncio.create_task(serve())
        while not server.started and not serving.done():  # noqa: ASYNC110 (uvicorn has a flag, no event)
            await asyncio.sleep(0.05)
        startup_log.setLevel(level)
        stopping = asyncio.create_task(stop.wait())
        async with recorded(pool, "web", default_process_name(), DatabaseClock()):
            await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
            server.should_exit = True
            stopping.cancel()
            await serving
        if not server.started:
            raise ConfigError(f"cannot listen on {address}:{port} (in use, or not this machine's)")
        log.info("vidretry web stopped")
