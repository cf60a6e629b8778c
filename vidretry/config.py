"""The settings: frozen dataclasses, one per TOML section, validated once at load; every
error names its key. The bot's texts (``[messages]``) are declared in vidretry.texts and
checked here with the rest.

Nothing here reads the environment at import time: ``load_config`` is given the environment
it may use, so tests pass a plain dict.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import stat
import tomllib
import types
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit

from vidretry.errors import ConfigError
from vidretry.texts import (
    BUILT_IN_LANGUAGES,
    LANGUAGE_CODE,
    MessagesConfig,
    check_texts,
    placeholders,
    resolve_languages,
)

CONFIG_ENV = "VIDRETRY_CONFIG"
DATABASE_URL_ENV = "VIDRETRY_DATABASE_URL"
BOT_TOKEN_ENV = "VIDRETRY_TELEGRAM_BOT_TOKEN"  # noqa: S105 (a variable name, not a secret)
API_HASH_ENV = "VIDRETRY_TELEGRAM_API_HASH"
DEFAULT_CONFIG_FILE = Path("vidretry.toml")


def _bounded(low: float | None = None, high: float | None = None) -> dict[str, Any]:
    return {"low": low, "high": high}


@dataclass(frozen=True)
class DatabaseConfig:
    url: str | None = field(default=None, repr=False)
    embedded_dir: Path | None = None
    # A direct connection for LISTEN alone, when url goes through a transaction pooler.
    listen_url: str | None = field(default=None, repr=False)
    # Server-side prepared statements; false behind PgBouncer < 1.21 in transaction mode.
    prepare: bool = True


@dataclass(frozen=True)
class WorkerConfig:
    concurrency: int = field(default=2, metadata=_bounded(1, 256))
    max_attempts: int = field(default=3, metadata=_bounded(1, 100))
    lease_seconds: float = field(default=30.0, metadata=_bounded(1, 86400))
    heartbeat_seconds: float = field(default=10.0, metadata=_bounded(0.1, 86400))
    backoff_base_seconds: float = field(default=10.0, metadata=_bounded(0, 86400))
    backoff_max_seconds: float = field(default=3600.0, metadata=_bounded(0, 7 * 86400))
    poll_interval_seconds: float = field(default=2.0, metadata=_bounded(0.01, 3600))
    shutdown_grace_seconds: float = field(default=30.0, metadata=_bounded(0, 3600))
    handler: str = "command"
    command: tuple[str, ...] = ()
    permanent_exit_codes: tuple[int, ...] = ()
    timeout_seconds: float = field(default=600.0, metadata=_bounded(0.1, 7 * 86400))
    output_dir: Path = Path("output")
    # A generator's progress reports are written to the job at most this often (the
    # notifier shows them); a chatty generator costs no more than this.
    progress_write_seconds: float = field(default=2.0, metadata=_bounded(0.1, 3600))
    # The circuit breaker (vidretry/queue/breaker.py): attempts failing on this many different
    # assets in a row, within the window, pause the queue; a probe every probe_seconds
    # (doubling up to probe_max_seconds) resumes it.
    breaker: bool = True
    breaker_min_assets: int = field(default=5, metadata=_bounded(2, 10_000))
    breaker_window_seconds: float = field(default=600.0, metadata=_bounded(1, 7 * 86400))
    breaker_probe_seconds: float = field(default=30.0, metadata=_bounded(0.1, 86400))
    breaker_probe_max_seconds: float = field(default=120.0, metadata=_bounded(0.1, 86400))
    # Global quotas on the generator, across every worker on every machine (0: none): at most
    # max_running jobs running at once, and no 60-second window with more than
    # max_starts_per_minute starts (a window of starts_window_seconds, for a generator whose
    # quota is counted over another). Give every worker the same values.
    max_running: int = field(default=0, metadata=_bounded(0, 100_000))
    max_starts_per_minute: int = field(default=0, metadata=_bounded(0, 100_000))
    starts_window_seconds: float = field(default=60.0, metadata=_bounded(1, 86400))
    # A generator's "slow down" (exit status listed here, or RateLimited raised): the job
    # waits with its attempt given back and every worker holds off new starts for its
    # `retry-after <seconds>` (default: the backoff). 75 is EX_TEMPFAIL.
    rate_limited_exit_codes: tuple[int, ...] = (75,)


@dataclass(frozen=True)
class StorageConfig:
    # Where finished videos are kept: "file:///srv/videos" (a directory; unset: [worker]
    # output_dir, as before) or "s3://bucket/prefix" (S3-compatible object storage: workers
    # and notifiers on different machines need no shared disk).
    url: str | None = None
    # For S3: the endpoint of a store that is not AWS (MinIO, SeaweedFS, R2, ...), its
    # address alone (no path), and its region (unset: AWS_REGION or AWS_DEFAULT_REGION,
    # else us-east-1).
    endpoint_url: str | None = None
    region: str | None = None
    # How a request names the bucket. Unset: path-style (http://host/bucket/key) with an
    # endpoint_url, virtual-hosted (https://bucket.s3.region.amazonaws.com/key) on AWS.
    # false: virtual-hosted, the bucket a subdomain of endpoint_url's host; true: path-style.
    path_style: bool | None = None
    # Credentials, both or neither: used alone (no session token); unset: the standard
    # environment's (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN). Never
    # printed.
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    # A video larger than this fails its job at the worker (Telegram lets a bot upload at
    # most 2,000 MiB).
    max_video_mib: int = field(default=2000, metadata=_bounded(1, 2000))
    # Delete a video's object once every waiting user has it (later sends go by Telegram's
    # reference); a reference Telegram refuses for good cannot be uploaded again then.
    delete_after_delivery: bool = False
    # While the store cannot be reached, workers keep their finished videos and try again
    # (at least every retry_max_seconds); after alert_after_seconds the admins ([telegram]
    # admins) are told.
    alert_after_seconds: float = field(default=300.0, metadata=_bounded(1, 7 * 86400))
    retry_max_seconds: float = field(default=10.0, metadata=_bounded(0.1, 3600))

    @property
    def scheme(self) -> str:
        return "file" if self.url is None else self.url.split("://", 1)[0]

    @property
    def bucket(self) -> str:
        """An ``s3://`` url's bucket."""
        return (self.url or "").removeprefix("s3://").partition("/")[0]

    @property
    def prefix(self) -> str:
        """An ``s3://`` url's prefix: "" or a path ending in "/"."""
        prefix = (self.url or "").removeprefix("s3://").partition("/")[2].strip("/")
        return f"{prefix}/" if prefix else ""

    @property
    def bucket_url(self) -> str:
        """The URL of the bucket itself, to which every request appends an object's key:
        built here from the bucket, the endpoint and ``path_style``, so that an object is
        exactly where its ``s3://`` URI says, whatever the client would guess. A setting
        that cannot address the bucket is a ``ConfigError`` naming the key to set."""
        bucket, region = self.bucket, self.region or "us-east-1"
        if self.endpoint_url is None:
            aws = f"s3.{region}.amazonaws.com"
            if self.path_style:
                return f"https://{aws}/{bucket}"
            _check_virtual_host(bucket, "https", aws)
            return f"https://{bucket}.{aws}"
        endpoint = self.endpoint_url.rstrip("/")
        parts = urlsplit(endpoint)
        host = parts.hostname or ""
        if host.startswith(f"{bucket}.") and self.path_style is None:
            # The bucket's own endpoint (https://videos.s3.example.net), or a store whose host
            # happens to begin with the bucket's name: only the operator can tell which.
            raise ConfigError(
                f"[storage] endpoint_url {endpoint} begins with the bucket's name {bucket!r}: "
                "give the store's endpoint (without the bucket), or set [storage] path_style "
                "= false to use it as the bucket's own endpoint (true: path-style on it)"
            )
        if self.path_style is not False:
            return f"{endpoint}/{bucket}"
        if host.startswith(f"{bucket}."):
            return endpoint
        _check_virtual_host(bucket, parts.scheme, host)
        return f"{parts.scheme}://{bucket}.{parts.netloc}"


@dataclass(frozen=True)
class GeneratorUrlsConfig:
    # A generator's URL (a command's `result https://...` line, a Python handler's returned
    # URL) is copied into the store at once: https:// only, to an address on the public
    # internet. hosts: the only hosts it may name ("cdn.example.com", or "*.example.com"
    # for every name below it); empty: any.
    hosts: tuple[str, ...] = ()
    # Plain http:// too (a signed URL's credential and the video then travel in clear).
    allow_http: bool = False
    # Addresses off the public internet a URL may reach (CIDR: "10.20.0.0/16", a provider
    # inside your network); loopback, private and link-local ones are refused otherwise,
    # cloud metadata addresses always.
    allow_networks: tuple[str, ...] = ()


@dataclass(frozen=True)
class QueueConfig:
    # Claim round-robin across the users who wait (false: first come, first served within
    # a priority). The workers' setting: each writes it to the database when it starts, and
    # every enqueue follows it, from whatever program.
    fair: bool = True


# Messages a second: what Telegram allows a bot for free, and with paid broadcasts.
FREE_RATE_LIMIT = 30.0
PAID_RATE_LIMIT = 1000.0


@dataclass(frozen=True)
class NotifierConfig:
    # Telegram lets a bot send about 30 messages a second for free; up to 1,000 with
    # paid_broadcast (allow_paid_floodskip: Stars are charged for messages beyond the free
    # limit, from the bot's balance).
    rate_per_second: float = field(default=25.0, metadata=_bounded(0.1, PAID_RATE_LIMIT))
    paid_broadcast: bool = False
    per_chat_interval_seconds: float = field(default=1.0, metadata=_bounded(0, 3600))
    # A message that keeps failing on its own is given up after this long; outages of
    # Telegram cost it nothing (they pause all sends instead). Real outages have lasted hours.
    give_up_after_seconds: float = field(default=86400.0, metadata=_bounded(60, 30 * 86400))
    backoff_base_seconds: float = field(default=5.0, metadata=_bounded(0, 86400))
    backoff_max_seconds: float = field(default=3600.0, metadata=_bounded(0, 7 * 86400))
    # While Telegram fails everybody, one message probes it (and a lost connection is tried
    # again) after 1 s, 2 s, 4 s ... at most this far apart: what waited goes out within
    # about this long of Telegram's recovery.
    outage_probe_max_seconds: float = field(default=10.0, metadata=_bounded(0.1, 3600))
    # Also the leader's term: a standby takes over within this long of the leader's death.
    lease_seconds: float = field(default=60.0, metadata=_bounded(1, 86400))
    heartbeat_seconds: float = field(default=10.0, metadata=_bounded(0.1, 86400))
    send_timeout_seconds: float = field(default=300.0, metadata=_bounded(1, 86400))
    poll_interval_seconds: float = field(default=2.0, metadata=_bounded(0.01, 3600))
    batch_size: int = field(default=50, metadata=_bounded(1, 1000))
    # A waiting user's acceptance message is edited into their place in line and the
    # video's progress at most this often per chat (bots editing every 2 s meet flood
    # waits; 4-10 s is common practice), at the lowest priority; 0 turns it off.
    progress_edit_seconds: float = field(default=5.0, metadata=_bounded(0, 3600))
    # Beside a bot that keeps its own framework (grammY, aiogram; docs/integrate.md): deliver
    # the outbox and edit acceptances, but ask Telegram for none of the bot's updates, answer
    # no message or button, and leave the command menu alone. Retry buttons then carry the
    # seed's data, retry_video:<asset id>, for the host bot's handler.
    send_only: bool = False


@dataclass(frozen=True)
class TelegramConfig:
    api_id: int | None = field(default=None, metadata=_bounded(1, None))
    api_hash: str | None = field(default=None, repr=False)
    bot_token: str | None = field(default=None, repr=False)
    session: Path = Path("vidretry-bot.session")
    admins: tuple[int, ...] = ()
    # Any plain text message in a private chat asks for a video of that name, like /video.
    plain_text_requests: bool = False
    # The limits that protect the generator (and the bot) from one user.
    max_open_requests_per_user: int = field(default=5, metadata=_bounded(1, 10_000))
    max_retries_per_user_per_day: int = field(default=3, metadata=_bounded(0, 10_000))
    requests_per_minute: int = field(default=5, metadata=_bounded(1, 10_000))
    # Modules whose register(client) adds the operator's own Telethon handlers to the bot.
    plugins: tuple[str, ...] = ()


# Pruning rests this many times as long as each batch took: it then works a ninth of the
# time, and two busy workers beside it kept 0.96 of their claim rate (at 3: 0.59; bench/).
# A million history events then take about six minutes, far above any queue's event rate.
DEFAULT_PRUNE_PACE = 8.0


@dataclass(frozen=True)
class RetentionConfig:
    # Workers delete history events and delivered notifications older than this many days,
    # once an hour, one worker at a time; none by default (`vidretry db prune` by hand).
    days: float | None = field(default=None, metadata=_bounded(1, 36500))


@dataclass(frozen=True)
class MetricsConfig:
    # Serve Prometheus metrics on this port (worker and notifier); none by default.
    port: int | None = field(default=None, metadata=_bounded(1, 65535))
    address: str = "127.0.0.1"


@dataclass(frozen=True)
class WebConfig:
    # `vidretry web`: the operator's console. Loopback by default; every page and API call
    # needs a login (a token: `vidretry web token add`) on any address.
    address: str = "127.0.0.1"
    port: int = field(default=8080, metadata=_bounded(1, 65535))
    # Behind a reverse proxy that speaks https: session cookies are marked Secure.
    behind_https: bool = False


@dataclass(frozen=True)
class Config:
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    generator_urls: GeneratorUrlsConfig = field(default_factory=GeneratorUrlsConfig)
    notifier: NotifierConfig = field(default_factory=NotifierConfig)
    telegram: TelegramConfig = field(default_factory=TelegramConfig)
    messages: MessagesConfig = field(default_factory=MessagesConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    web: WebConfig = field(default_factory=WebConfig)
    source: Path | None = None


_SECTIONS: dict[str, type[Any]] = {
    "database": DatabaseConfig,
    "worker": WorkerConfig,
    "queue": QueueConfig,
    "storage": StorageConfig,
    "generator_urls": GeneratorUrlsConfig,
    "notifier": NotifierConfig,
    "telegram": TelegramConfig,
    "messages": MessagesConfig,
    "metrics": MetricsConfig,
    "web": WebConfig,
    "retention": RetentionConfig,
}


# Keys an older vidretry knew, with what replaced them: one clear line instead of "unknown".
_RETIRED = {
    ("notifier", "max_attempts"): (
        "a notification is given up after [notifier] give_up_after_seconds (default 86400), "
        "and outages of Telegram no longer count against it; remove the key"
    ),
}


def load_config(path: Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read the config file and apply environment overrides.

    ``path`` wins, then ``$VIDRETRY_CONFIG``, then ``./vidretry.toml`` if it exists; with none
    of them the defaults apply. A file that was named but is missing is an error. Relative
    paths are resolved against the file's directory (the working directory without a file).
    """
    env = os.environ if env is None else env
    named = path or (Path(env[CONFIG_ENV]) if env.get(CONFIG_ENV) else None)
    source = named or (DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None)
    raw: dict[str, Any] = {}
    if source is not None:
        try:
            raw = tomllib.loads(source.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {source} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config file {source}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {source} is not valid TOML: {exc}") from None
    config = parse_config(raw, source)
    base = source.parent if source is not None else Path.cwd()
    return _with_env(resolve_paths(config, base), env)


def resolve_paths(config: Config, base: Path) -> Config:
    """Relative paths in the config, resolved once against ``base`` (the config file's
    directory): a process started elsewhere (systemd starts in /) finds the same files."""

    def absolute(path: Path) -> Path:
        return path if path.is_absolute() else (base / path).absolute()

    database = config.database
    if database.embedded_dir is not None:
        database = dataclasses.replace(database, embedded_dir=absolute(database.embedded_dir))
    return dataclasses.replace(
        config,
        database=database,
        worker=dataclasses.replace(config.worker, output_dir=absolute(config.worker.output_dir)),
        telegram=dataclasses.replace(config.telegram, session=absolute(config.telegram.session)),
    )


def parse_config(raw: Mapping[str, Any], source: Path | None = None) -> Config:
    """Validate a parsed TOML document into a ``Config``."""
    for section in raw:
        if section not in _SECTIONS:
            raise ConfigError(f"unknown config section [{section}]")
    sections: dict[str, Any] = {}
    for section, cls in _SECTIONS.items():
        table = raw.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"[{section}] must be a table")
        if cls is MessagesConfig:
            sections[section] = _parse_messages(table)
        else:
            sections[section] = _build(cls, section, table)
    config = Config(**sections, source=source)
    _check_consistency(config)
    return config


def _build(cls: type[Any], section: str, table: Mapping[str, Any]) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    for key, value in table.items():
        if (section, key) in _RETIRED:
            raise ConfigError(f"[{section}] {key} is no longer used: {_RETIRED[section, key]}")
        if key not in fields:
            raise ConfigError(f"unknown config key [{section}] {key}")
        values[key] = _coerce(f"[{section}] {key}", hints[key], value, fields[key].metadata)
    return cls(**values)


def _coerce(key: str, hint: Any, value: Any, bounds: Mapping[str, Any]) -> Any:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):  # Optional[X]: TOML has no null, so just X
        (hint,) = [arg for arg in get_args(hint) if arg is not type(None)]
        origin = get_origin(hint)
    if origin is tuple:
        item = get_args(hint)[0]
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list of {_type_name(item)}")
        return tuple(_coerce(f"{key}[{i}]", item, v, {}) for i, v in enumerate(value))
    if hint is Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{key} must be a non-empty path string")
        return Path(value).expanduser()
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"{key} must be {_type_name(hint)}, not {type(value).__name__}")
    low, high = bounds.get("low"), bounds.get("high")
    if low is not None and value < low:
        raise ConfigError(f"{key} must be at least {low:g}, got {value}")
    if high is not None and value > high:
        raise ConfigError(f"{key} must be at most {high:g}, got {value}")
    return value


def _type_name(hint: Any) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        hint, getattr(hint, "__name__", str(hint))
    )


def _check_consistency(config: Config) -> None:
    worker = config.worker
    if worker.heartbeat_seconds >= worker.lease_seconds:
        raise ConfigError(
            "[worker] heartbeat_seconds must be shorter than [worker] lease_seconds "
            f"(got {worker.heartbeat_seconds:g} and {worker.lease_seconds:g})"
        )
    if worker.breaker_probe_max_seconds < worker.breaker_probe_seconds:
        raise ConfigError(
            "[worker] breaker_probe_max_seconds must be at least [worker] breaker_probe_seconds "
            f"(got {worker.breaker_probe_max_seconds:g} and {worker.breaker_probe_seconds:g})"
        )
    overlap = set(worker.rate_limited_exit_codes) & set(worker.permanent_exit_codes)
    if overlap or 0 in worker.rate_limited_exit_codes:
        code = min(overlap) if overlap else 0
        raise ConfigError(
            f"[worker] rate_limited_exit_codes must not hold {code}: "
            + ("it is listed in permanent_exit_codes too" if overlap else "0 is success")
        )
    notifier = config.notifier
    if notifier.rate_per_second > FREE_RATE_LIMIT and not notifier.paid_broadcast:
        raise ConfigError(
            f"[notifier] rate_per_second above {FREE_RATE_LIMIT:g} needs [notifier] "
            "paid_broadcast = true (Telegram charges Stars for messages beyond the free limit; "
            f"got {notifier.rate_per_second:g})"
        )
    if notifier.heartbeat_seconds * 3 > notifier.lease_seconds:
        # A lease must survive two missed beats, or a slow upload could outlive it and be
        # sent again by the notifier that takes the row over.
        raise ConfigError(
            "[notifier] heartbeat_seconds must be at most a third of [notifier] lease_seconds "
            f"(got {notifier.heartbeat_seconds:g} and {notifier.lease_seconds:g})"
        )
    _check_storage(config.storage)
    _check_generator_urls(config.generator_urls)
    if notifier.send_only and config.telegram.plugins:
        raise ConfigError(
            "[notifier] send_only = true leaves the bot's messages and buttons to its own "
            "framework: [telegram] plugins would never be called; remove them"
        )
    check_texts("[messages]", config.messages)
    handler = worker.handler
    if handler != "command" and not (handler.startswith("python:") and handler.count(":") == 2):
        raise ConfigError(
            '[worker] handler must be "command" or "python:package.module:function", '
            f"got {handler!r}"
        )


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def _check_storage(storage: StorageConfig) -> None:
    url = storage.url
    if url is not None:
        scheme, sep, rest = url.partition("://")
        if not sep or scheme not in ("file", "s3"):
            raise ConfigError(
                '[storage] url must be "file:///a/directory" or "s3://bucket/prefix", '
                f"got {url[:80]!r}"
            )
        if scheme == "file" and not rest.startswith("/"):
            raise ConfigError(f"[storage] url must name an absolute directory, got {url[:80]!r}")
        if scheme == "s3" and not _BUCKET.match(rest.partition("/")[0]):
            raise ConfigError(f"[storage] url must name an S3 bucket, got {url[:80]!r}")
        if scheme == "s3":
            _check_prefix(url, rest.partition("/")[2])
    endpoint = storage.endpoint_url
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        raise ConfigError(f"[storage] endpoint_url must be an http(s) URL, got {endpoint[:80]!r}")
    if storage.scheme != "s3" and (
        endpoint or storage.access_key_id or storage.region or storage.path_style is not None
    ):
        raise ConfigError(
            "[storage] endpoint_url, region, path_style and keys are for an s3:// url"
        )
    if endpoint is not None:
        parts = urlsplit(endpoint)
        if not parts.hostname or parts.query or parts.fragment or parts.username:
            raise ConfigError(
                "[storage] endpoint_url must be the store's address alone "
                f"(scheme, host, port), got {endpoint[:80]!r}"
            )
        if parts.path.strip("/"):
            # A path would be taken as part of every object's key, or as another bucket
            # (http://host/other makes a bucket "other" on stores that create them).
            raise ConfigError(
                f"[storage] endpoint_url must be the store's address without a path, got "
                f"{endpoint[:80]!r}: the bucket and the prefix go in [storage] url "
                '("s3://bucket/prefix")'
            )
    if bool(storage.access_key_id) != bool(storage.secret_access_key):
        # Half a key from the file and half from the environment would be nobody's.
        raise ConfigError(
            "[storage] access_key_id and secret_access_key go together: set both, or neither "
            "(then both come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
        )
    if storage.scheme == "s3":
        storage.bucket_url  # noqa: B018 (refused at load: a bucket it cannot address)


# S3 keys have at most 1,024 bytes; vidretry's own names take fewer than 100 of them.
MAX_PREFIX_BYTES = 900


def _check_prefix(url: str, prefix: str) -> None:
    """An ``s3://`` url's prefix is one the S3 client addresses as written: names
    separated by single slashes (one may end it), none of them "." or "..", no control
    characters. The client refuses the others for every object (``a//b``, ``../r``)."""
    names = prefix.removesuffix("/").split("/") if prefix else []
    if any(
        name in ("", ".", "..") or any(unicodedata.category(c) == "Cc" for c in name)
        for name in names
    ):
        raise ConfigError(
            "[storage] url's prefix must be names separated by single slashes, none of them "
            f'"." or ".." and without control characters, got {url[:80]!r}'
        )
    if len(prefix.encode()) > MAX_PREFIX_BYTES:
        raise ConfigError(
            f"[storage] url's prefix must be at most {MAX_PREFIX_BYTES} bytes "
            f"(an S3 key has at most 1,024), got {len(prefix.encode())}"
        )


def _check_virtual_host(bucket: str, scheme: str, host: str) -> None:
    """Whether ``bucket`` can be a subdomain of ``host`` (virtual-hosted addressing)."""
    if _is_ip(host) or "." not in host:
        raise ConfigError(
            f"[storage] path_style = false would address the bucket as {bucket}.{host}, "
            "which no name server knows: set [storage] path_style = true (or leave it unset)"
        )
    if "." in bucket and scheme == "https":
        raise ConfigError(
            f"[storage] the bucket {bucket!r} has dots: as a subdomain over https its name "
            "fails the server's certificate; set [storage] path_style = true"
        )


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_HOST = re.compile(rf"^(\*\.)?({_LABEL}\.)*{_LABEL}$")


def _check_generator_urls(urls: GeneratorUrlsConfig) -> None:
    for i, host in enumerate(urls.hosts):
        if not _HOST.match(host.lower()):
            raise ConfigError(
                f"[generator_urls] hosts[{i}] must be a host name (cdn.example.com) or "
                f"*.example.com, got {host[:80]!r}"
            )
    for i, network in enumerate(urls.allow_networks):
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ConfigError(
                f"[generator_urls] allow_networks[{i}] must be an address or a network "
                f"(10.20.0.0/16), got {network[:80]!r}"
            ) from None


def _parse_messages(table: Mapping[str, Any]) -> MessagesConfig:
    """[messages] and its [messages.<language>] tables. Each language uses the same
    placeholders as the default for every key it sets (a translation that drops {name}
    would tell a user about no video in particular)."""
    texts = {k: v for k, v in table.items() if not isinstance(v, dict)}
    if "languages" in texts:
        raise ConfigError("unknown config key [messages] languages")
    default: MessagesConfig = _build(MessagesConfig, "messages", texts)
    check_texts("[messages]", default)
    tables: dict[str, dict[str, str]] = {}
    for code, language in table.items():
        if not isinstance(language, dict):
            continue
        section = f"[messages.{code}]"
        if not LANGUAGE_CODE.match(code):
            raise ConfigError(
                f"{section} is not a language code: use Telegram's, in lower case "
                '(e.g. "en", "pt-br")'
            )
        if "languages" in language:
            raise ConfigError(f"unknown config key {section} languages")
        built = _build(MessagesConfig, f"messages.{code}", language)
        check_texts(section, built)
        for key in language:
            if key in BUILT_IN_LANGUAGES.get(code, {}) and key not in texts:
                expected = placeholders(BUILT_IN_LANGUAGES[code][key])
            else:
                expected = placeholders(getattr(default, key))
            if placeholders(language[key]) != expected:
                names = ", ".join(f"{{{name}}}" for name in sorted(expected)) or "none"
                raise ConfigError(
                    f"{section} {key} must use the same placeholders as [messages] {key}: {names}"
                )
        tables[code] = dict(language)
    return dataclasses.replace(default, languages=resolve_languages(default, tables))


def _with_env(config: Config, env: Mapping[str, str]) -> Config:
    database, telegram = config.database, config.telegram
    if env.get(DATABASE_URL_ENV):
        database = dataclasses.replace(database, url=env[DATABASE_URL_ENV])
    if env.get(BOT_TOKEN_ENV):
        telegram = dataclasses.replace(telegram, bot_token=env[BOT_TOKEN_ENV])
    if env.get(API_HASH_ENV):
        telegram = dataclasses.replace(telegram, api_hash=env[API_HASH_ENV])
    storage = config.storage
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if storage.scheme == "s3" and storage.region is None and region:
        # The standard variables, as AWS's clients read them: the region is passed to the
        # object-store client explicitly (with the bucket's URL), never left to its guess.
        storage = dataclasses.replace(storage, region=region)
    return dataclasses.replace(config, database=database, telegram=telegram, storage=storage)


_TOKEN_SHAPE = re.compile(r"^\d{1,20}:[A-Za-z0-9_-]{20,}$")


def telegram_login_token(config: TelegramConfig) -> str:
    """The bot token, after checking that everything a login needs is configured."""
    if config.api_id is None:
        raise ConfigError("[telegram] api_id is not set (get it at my.telegram.org)")
    if not config.api_hash:
        raise ConfigError("[telegram] api_hash is not set (or VIDRETRY_TELEGRAM_API_HASH)")
    token = config.bot_token
    if not token:
        raise ConfigError("[telegram] bot_token is not set (or VIDRETRY_TELEGRAM_BOT_TOKEN)")
    if not _TOKEN_SHAPE.match(token):
        raise ConfigError(
            "[telegram] bot_token is malformed: expected <digits>:<secret> from @BotFather"
        )
    return token


def exposed_secret_warning(config: Config) -> str | None:
    """A warning when the config file holds a secret (the bot token, the store's secret key)
    and other users can read it."""
    source = config.source
    if source is None:
        return None
    try:
        secret = re.search(
            r"^\s*(bot_token|secret_access_key)\s*=", source.read_text(encoding="utf-8"), re.M
        )
        mode = source.stat().st_mode
    except OSError:
        return None
    if secret and mode & (stat.S_IRGRP | stat.S_IROTH):
        what = "the bot token" if secret[1] == "bot_token" else "the store's secret key"
        return f"{source} holds {what} and other users can read it: chmod 600 {source}"
    return None
