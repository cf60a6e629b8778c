"""``vidretry doctor``: check a deployment's settings without changing anything."""

from __future__ import annotations

import enum
import shutil
from dataclasses import dataclass
from typing import Any

from vidretry.config import Config, exposed_secret_warning, telegram_login_token
from vidretry.errors import VidretryError
from vidretry.queue import reports
from vidretry.queue.handlers import load_function
from vidretry.results.configured import configured
from vidretry.results.files import FileStore
from vidretry.store import db, redact, schema, sqlfiles
from vidretry.store.embedded import EmbeddedServer, default_dir
from vidretry.telegram.plugins import load_plugins
from vidretry.telegram.session import readable_by_others, session_file


class Verdict(enum.StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Check:
    name: str
    verdict: Verdict
    detail: str


async def examine(config: Config) -> list[Check]:
    """Every check, in order; none raises, none changes anything."""
    url, problem = _database_url(config)
    database = await _database(url) if url else [Check("database", Verdict.FAIL, problem)]
    return [
        _config_file(config),
        *database,
        _handler(config),
        await _output_dir(config),
        await _storage(config),
        _telegram(config),
        *_plugins(config),
        *_session(config),
    ]


def _database_url(config: Config) -> tuple[str | None, str]:
    """The database to look at, or why there is none. The embedded server is looked at,
    never created or started."""
    if config.database.url:
        return config.database.url, ""
    server = EmbeddedServer(config.database.embedded_dir or default_dir())
    if not server.is_initialised():
        return None, (
            f"embedded PostgreSQL in {server.directory} does not exist yet "
            "(`vidretry db up`, a worker or a notifier creates it)"
        )
    if not server.is_running():
        return None, f"embedded PostgreSQL in {server.directory} is not running: vidretry db up"
    return server.url, ""


def _config_file(config: Config) -> Check:
    if config.source is None:
        return Check("config", Verdict.OK, "no file: defaults and environment")
    warning = exposed_secret_warning(config)
    if warning:
        return Check("config", Verdict.WARN, warning)
    return Check("config", Verdict.OK, str(config.source))


async def _database(url: str) -> list[Check]:
    try:
        conn = await db.connect(url)
    except VidretryError as exc:
        return [Check("database", Verdict.FAIL, str(exc))]
    async with conn:
        state = await schema.read_state(conn)
        problem = schema.refusal(state, sqlfiles.shipped())
        running = None if problem else await reports.releases(conn, None)
    checks = [
        Check("database", Verdict.OK, f"reachable at {redact.redact_url(url)}"),
        Check("schema", Verdict.FAIL, problem)
        if problem
        else Check("schema", Verdict.OK, schema.describe(state)),
    ]
    if running is not None:
        checks.append(_releases(running))
    return checks


def _releases(running: dict[str, Any]) -> Check:
    """Which releases run; a warning when a mix of them outlived a rollout."""
    shown = " · ".join(
        f"{entry['release']} ({entry['workers']} workers, {entry['notifiers']} notifiers, "
        f"{entry['web']} web)"
        for entry in running["running"]
    )
    if running["warning"]:
        return Check("releases", Verdict.WARN, running["warning"])
    return Check("releases", Verdict.OK, shown or "no worker, notifier or console running")


def _handler(config: Config) -> Check:
    worker = config.worker
    if worker.handler == "command":
        if not worker.command:
            return Check("handler", Verdict.FAIL, "[worker] command is empty")
        program = worker.command[0]
        found = shutil.which(program)
        if found is None:
            return Check("handler", Verdict.FAIL, f"{program} not found or not executable")
        return Check("handler", Verdict.OK, f"command {found}")
    try:
        load_function(worker.handler)
    except VidretryError as exc:
        return Check("handler", Verdict.FAIL, str(exc))
    return Check("handler", Verdict.OK, worker.handler)


async def _output_dir(config: Config) -> Check:
    """Where generators write (and, without ``[storage] url``, where videos are kept)."""
    directory = config.worker.output_dir
    try:
        await FileStore(directory).check()
    except VidretryError as exc:
        return Check("output", Verdict.FAIL, str(exc))
    return Check("output", Verdict.OK, str(directory))


async def _storage(config: Config) -> Check:
    """The store ``[storage]`` names answers (an S3 bucket: reached, the signature taken)."""
    try:
        return Check("storage", Verdict.OK, await configured(config).store.check())
    except VidretryError as exc:
        return Check("storage", Verdict.FAIL, str(exc))


def _plugins(config: Config) -> list[Check]:
    """Import the configured plugins as ``vidretry notifier`` will at start."""
    if not config.telegram.plugins:
        return []
    try:
        load_plugins(config.telegram.plugins)
    except VidretryError as exc:
        return [Check("plugins", Verdict.FAIL, str(exc))]
    return [Check("plugins", Verdict.OK, ", ".join(config.telegram.plugins))]


def _session(config: Config) -> list[Check]:
    """The bot's login file, if it exists: nobody else may read it."""
    path = session_file(config.telegram.session)
    if not readable_by_others(path):
        return []
    return [
        Check(
            "session",
            Verdict.WARN,
            f"{path} holds the bot's login and other users can read it: chmod 600 {path}",
        )
    ]


def _telegram(config: Config) -> Check:
    try:
        telegram_login_token(config.telegram)
    except VidretryError as exc:
        return Check("telegram", Verdict.WARN, f"{exc} (needed by `vidretry notifier`)")
    admins = len(config.telegram.admins)
    return Check("telegram", Verdict.OK, f"api_id, api_hash and bot token set; {admins} admin(s)")
