"""``vidretry web``: the console on one uvicorn server, until SIGINT/SIGTERM."""

from __future__ import annotations

import logging
import secrets

from vidretry.config import Config
from vidretry.errors import ConfigError
from vidretry.store.db import fetch_one
from vidretry.store.embedded import database_url
from vidretry.store.pool import open_pool

log = logging.getLogger("vidretry.web")


async def serve_web(config: Config, *, address: str, port: int) -> None:
    try:
        import uvicorn

        from vidretry.web.app import build_app
    except ImportError as exc:
        raise ConfigError(
            f"the web console needs its extra: pip install 'vidretry[web]' ({exc.name} missing)"
        ) from None

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
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=address,
                port=port,
                log_level="warning",
                lifespan="on",
                proxy_headers=False,
                server_header=False,
                date_header=False,
            )
        )
        log.warning("vidretry web on http://%s:%d/", address, port)
        try:
            await server.serve()
        except OSError as exc:  # the port is taken, the address is not ours
            raise ConfigError(f"cannot listen on {address}:{port}: {exc.strerror}") from None
        if server.started is False and not server.should_exit:
            raise ConfigError(f"cannot listen on {address}:{port}")
