"""``vidretry doctor``: check a deployment's settings without changing anything."""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import re
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from vidretry.config import Config, exposed_secret_warning, telegram_login_token
from vidretry.db import connection, redact, schema, sqlfiles
from vidretry.db.embedded import EmbeddedServer, default_dir
from vidretry.errors import VidretryError
from vidretry.queue import reports
from vidretry.queue.handlers import load_function
from vidretry.results.configured import configured
from vidretry.results.files import FileStore
from vidretry.telegram.plugins import load_plugins
from vidretry.telegram.session import readable_by_others, session_file
from vidretry.web.tokens import Role, caller_for_hash, token_hash


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
    if url:
        database = await _database(url, config)
    else:
        database = [Check("database", Verdict.FAIL, problem), *await _token_files(config, None)]
    return [
        _config_file(config),
        *database,
        _handler(config),
        await _output_dir(config),
        await _storage(config),
        *_generator_urls(config),
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


async def _database(url: str, config: Config) -> list[Check]:
    try:
        conn = await connection.connect(url)
    except VidretryError as exc:
        return [Check("database", Verdict.FAIL, str(exc)), *await _token_files(config, None)]
    reachable = Check("database", Verdict.OK, f"reachable at {redact.redact_url(url)}")
    async with conn:
        try:
            state = await schema.read_state(conn)
            problem = schema.refusal(state, sqlfiles.shipped())
            running = None if problem else await reports.releases(conn, None)
            looks = [] if problem else await _sql_interface(conn, embedded=not config.database.url)
            looks += await _token_files(config, conn)
        except psycopg.errors.InsufficientPrivilege as exc:
            # A role that may only call the SQL interface (a host bot's): what needs no
            # database is still checked.
            refused = (
                f"{redact.one_line(exc)}: role {conn.info.user} may not read vidretry's "
                "tables; run doctor with the database URL vidretry's processes use"
            )
            return [reachable, Check("schema", Verdict.FAIL, refused),
                    *await _token_files(config, None)]  # fmt: skip
    checks = [
        reachable,
        Check("schema", Verdict.FAIL, problem)
        if problem
        else Check("schema", Verdict.OK, schema.describe(state)),
    ]
    if running is not None:
        checks.append(_releases(running))
    checks.extend(looks)
    return checks


def _releases(running: dict[str, Any]) -> Check:
    """Which releases run; a warning when a mix of them outlived a rollout."""
    shown = " · ".join(
        f"{entry['release']} ({reports.processes(entry)})" for entry in running["running"]
    )
    if running["warning"]:
        return Check("releases", Verdict.WARN, running["warning"])
    return Check("releases", Verdict.OK, shown or "no worker, notifier or console running")


async def _sql_interface(conn: connection.Connection, *, embedded: bool) -> list[Check]:
    """The functions other programs call run as their owner: a superuser owner gives any
    role allowed to call them every right a mistake in them could reach; and a role that may
    create objects in vidretry's schema could put its own operator in their way."""
    checks = []
    found = await connection.fetch_all(conn, "interface_functions_run_as_a_superuser", {})
    if found:
        callers = sorted({caller for row in found for caller in row["callers"]})
        owner = found[0]["owner"]
        how = (
            f"the embedded database has no role but {owner}: accept it (give EXECUTE to "
            "your bot alone), or run vidretry on a PostgreSQL of your own, as a role that is "
            "no superuser"
            if embedded
            else "give vidretry's schema and objects an owner that is no superuser, and run "
            "`vidretry db upgrade` as it"
        )
        checks.append(
            Check(
                "sql interface",
                Verdict.WARN,
                f"{', '.join(row['function'] for row in found)} run as superuser {owner} and "
                f"{', '.join(callers)} may call them: {how} (docs/integrate.md#rights)",
            )
        )
    creators = await connection.fetch_all(conn, "roles_that_may_create_in_vidretrys_schema", {})
    granted = [row["role"] for row in creators if not row["owns"]]
    if granted:
        where = creators[0]["schema"]
        checks.append(
            Check(
                "sql interface",
                Verdict.WARN,
                f"{', '.join(granted)} may create objects in schema {where}, where vidretry "
                "is: an operator or function of theirs could be picked by the interface's "
                f"statements; REVOKE CREATE ON SCHEMA {where} FROM {', '.join(granted)}",
            )
        )
    for row in creators:
        if row["owns"]:
            through = " (as the database's owner)" if row["as_database_owner"] else ""
            checks.append(
                Check(
                    "sql interface",
                    Verdict.WARN,
                    f"{row['role']} owns schema {row['schema']}{through}, where vidretry is, "
                    "and may create objects in it: an operator or function of theirs could be "
                    "picked by the interface's statements; ALTER SCHEMA "
                    f"{row['schema']} OWNER TO {row['vidretry_owner']}",
                )
            )
    ok = "no function of it runs as a superuser for another role; nobody else writes its schema"
    return checks or [Check("sql interface", Verdict.OK, ok)]


# A console token (vidretry.web.tokens: "vrt_" and 32 random bytes, URL-safe base64).
_TOKEN = re.compile(rb"\bvrt_[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])")


async def _token_files(config: Config, conn: connection.Connection | None) -> list[Check]:
    """A console token in a file other users can read. The files looked at are where a
    deployment keeps its secrets: the config file and the files beside it (deployment.md's
    /etc/vidretry/secrets.env, a host bot's .env there). A token this database does not know
    (revoked) is harmless; without a database, any is reported."""
    found = await asyncio.to_thread(_tokens_readable_by_others, config)
    checks = []
    for path, token in found:
        caller = await caller_for_hash(conn, token_hash(token)) if conn is not None else None
        if conn is not None and caller is None:
            continue
        what = "a console token" if caller is None else f"the console token {caller.name!r}"
        role = "" if caller is None else f" (role {caller.role}{_ROLE_REACH.get(caller.role, '')})"
        revoke = (
            "" if caller is None else f", or revoke it (vidretry web token revoke {caller.name})"
        )
        checks.append(
            Check(
                "tokens",
                Verdict.WARN,
                f"{path} holds {what}{role} and other users can read it: chmod 600 {path}{revoke}",
            )
        )
    return checks


_ROLE_REACH = {
    Role.SERVICE: ": it asks for videos, and retries and cancels for any Telegram user",
    Role.OPERATOR: ": it retries, cancels, pauses and resumes anything",
}


def _tokens_readable_by_others(config: Config) -> list[tuple[Path, str]]:
    if config.source is None:
        return []
    found: list[tuple[Path, str]] = []
    try:
        beside = sorted(config.source.absolute().parent.iterdir())
    except OSError:
        return []
    for path in beside:
        try:
            info = path.stat()
            if not stat.S_ISREG(info.st_mode) or info.st_size > 1024 * 1024:
                continue
            if not info.st_mode & (stat.S_IRGRP | stat.S_IROTH):
                continue
            text = path.read_bytes()
        except OSError:
            continue
        found.extend((path, m.decode()) for m in dict.fromkeys(_TOKEN.findall(text)))
    return found


def _generator_urls(config: Config) -> list[Check]:
    """What a generator's URL may reach ([generator_urls]): a warning for each way out of
    https:// to the public internet."""
    urls = config.generator_urls
    reach = "any host" if not urls.hosts else ", ".join(urls.hosts)
    warnings = []
    if urls.allow_http:
        warnings.append(
            "[generator_urls] allow_http = true: a generator's URL may be plain http://, its "
            "signature (a signed URL's credential) and the video travel in clear"
        )
    inside = [n for n in urls.allow_networks if _reaches_this_machine(n)]
    if inside:
        warnings.append(
            f"[generator_urls] allow_networks holds {', '.join(inside)}: a generator's URL may "
            "reach the services of the worker's own machine"
        )
    if warnings:
        return [Check("generator urls", Verdict.WARN, warning) for warning in warnings]
    extra = f", and {', '.join(urls.allow_networks)}" if urls.allow_networks else ""
    return [Check("generator urls", Verdict.OK, f"https:// only, {reach}, public addresses{extra}")]


def _reaches_this_machine(network: str) -> bool:
    allowed = ipaddress.ip_network(network, strict=False)
    return any(
        allowed.overlaps(ipaddress.ip_network(local))
        for local in ("127.0.0.0/8", "169.254.0.0/16", "::1/128", "fe80::/10", "0.0.0.0/32")
        if ipaddress.ip_network(local).version == allowed.version
    )


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
