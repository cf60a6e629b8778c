"""Videos in S3-compatible object storage: the only module that imports the object-store
client.

obstore (Rust's object_store, async, two wheels): a video goes up as a multipart upload of
``CHUNK``-sized parts, four at a time, so a worker holds at most 32 MiB of it whatever its
size; it comes back as byte ranges of ``CHUNK``, each its own request (the client's timeout
covers a whole request, body included: one GET for a whole video read at Telegram's upload
speed would run out). Errors become vidretry's: a missing object ``ResultMissing``; anything
else — the network, a 5xx, a refused signature — ``StoreUnavailable``, an outage.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import obstore
from obstore.exceptions import (
    BaseError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from obstore.store import S3Store

from vidretry.results.base import (
    CHUNK,
    ResultMissing,
    ResultRefused,
    Stored,
    StoreUnavailable,
    Tally,
    file_chunks,
    too_big,
)

if TYPE_CHECKING:
    from obstore.store import RetryConfig

# Parts uploaded at once: 4 x 8 MiB in memory at most.
UPLOAD_CONCURRENCY = 4
# One request (a part, a range) may take this long, body included.
REQUEST_TIMEOUT = "120s"
CONNECT_TIMEOUT = "10s"
# The client retries a failed request (a 5xx, a dropped connection) a few times within
# seconds; an outage longer than that is vidretry's to ride out (the worker keeps the video
# and tries again, the notifier puts the message back), not a request held for the client's
# default three minutes.
RETRY: RetryConfig = {
    "max_retries": 3,
    "retry_timeout": timedelta(seconds=15),
    "backoff": {"init_backoff": timedelta(milliseconds=100), "max_backoff": timedelta(seconds=2)},
}


@dataclass(frozen=True)
class S3Settings:
    bucket: str
    prefix: str  # "" or ending in "/"
    endpoint_url: str | None
    region: str | None
    path_style: bool
    access_key_id: str | None
    secret_access_key: str | None


class S3ResultStore:
    """``s3://bucket/prefix``: objects ``<prefix><key>``. Credentials not configured come
    from the standard environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
    ``AWS_SESSION_TOKEN``, ...) as the client reads it."""

    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        config: dict[str, str | bool] = {
            "virtual_hosted_style_request": not settings.path_style,
        }
        for key, value in (
            ("endpoint", settings.endpoint_url),
            ("region", settings.region),
            ("access_key_id", settings.access_key_id),
            ("secret_access_key", settings.secret_access_key),
        ):
            if value:
                config[key] = value
        self.store = S3Store(
            settings.bucket,
            config=config,  # type: ignore[arg-type]  # a TypedDict, built key by key
            client_options={
                "allow_http": (settings.endpoint_url or "").startswith("http://"),
                "timeout": REQUEST_TIMEOUT,
                "connect_timeout": CONNECT_TIMEOUT,
            },
            retry_config=RETRY,
        )
        self.uri_prefix = f"s3://{settings.bucket}/"

    def owns(self, uri: str) -> bool:
        """An object under this store's prefix (of its bucket): the only ones it reads or
        deletes."""
        key = uri.removeprefix(self.uri_prefix)
        return (
            key != uri
            and key.startswith(self.settings.prefix)
            and not any(part in ("", ".", "..") for part in key.split("/"))
        )

    def _path(self, uri: str) -> str:
        if not self.owns(uri):
            raise ResultRefused(
                f"refused: {uri} is outside the video store ({self.uri_prefix}"
                f"{self.settings.prefix})"
            )
        return uri.removeprefix(self.uri_prefix)

    async def put_file(self, path: Path, key: str, *, limit: int) -> Stored:
        size = (await asyncio.to_thread(path.stat)).st_size
        if size > limit:
            raise too_big(f"the video {path.name}", size, limit)
        with path.open("rb") as source:
            return await self.put_chunks(file_chunks(source), key, limit=limit)

    async def put_chunks(self, chunks: AsyncIterable[bytes], key: str, *, limit: int) -> Stored:
        object_path = self.settings.prefix + key
        tally = Tally(limit, f"the video {key}")
        try:
            await obstore.put_async(
                self.store,
                object_path,
                tally.counted(chunks),
                attributes={"Content-Type": "video/mp4"},
                use_multipart=True,
                chunk_size=CHUNK,
                max_concurrency=UPLOAD_CONCURRENCY,
            )
        except BaseError as exc:
            raise StoreUnavailable(
                f"cannot store {self.uri_prefix}{object_path}: {_short(exc)}"
            ) from None
        return Stored(self.uri_prefix + object_path, tally.size, tally.digest.digest())

    async def open(self, uri: str) -> RangedDownload:
        path = self._path(uri)
        try:
            meta = await obstore.head_async(self.store, path)
        except (NotFoundError, FileNotFoundError):
            raise ResultMissing(f"video missing: {uri}") from None
        except BaseError as exc:
            raise StoreUnavailable(f"cannot read {uri}: {_short(exc)}") from None
        return RangedDownload(self.store, path, int(meta["size"]), uri)

    async def check(self) -> str:
        """A HEAD of a name nobody uses: "not found" means the server answered and took the
        signature. A refusal may also mean credentials that may not list the bucket (S3
        answers 403 for a missing object then): said so."""
        where = f"{self.uri_prefix}{self.settings.prefix}"
        at = f" at {self.settings.endpoint_url}" if self.settings.endpoint_url else ""
        try:
            await obstore.head_async(self.store, f"{self.settings.prefix}.vidretry-doctor")
        except (NotFoundError, FileNotFoundError):
            return f"{where}{at}"
        except (PermissionDeniedError, UnauthenticatedError) as exc:
            raise StoreUnavailable(
                f"{where}{at} refused us ({_short(exc)}): wrong credentials, or ones that may "
                "not list the bucket"
            ) from None
        except BaseError as exc:
            raise StoreUnavailable(f"{where}{at}: {_short(exc)}") from None
        return f"{where}{at}"

    async def delete(self, uris: Sequence[str]) -> None:
        """S3's DeleteObjects: up to 1,000 objects a request."""
        try:
            await obstore.delete_async(self.store, [self._path(uri) for uri in uris])
        except (NotFoundError, FileNotFoundError):
            return
        except BaseError as exc:
            shown = uris[0] if len(uris) == 1 else f"{len(uris)} videos"
            raise StoreUnavailable(f"cannot delete {shown}: {_short(exc)}") from None


class RangedDownload:
    """Reads a stored object in ranges of ``CHUNK``, serving reads of any size from them;
    the next range is fetched while the last one is read (the store's download overlaps
    Telegram's upload), so at most two ranges are in memory."""

    def __init__(self, store: S3Store, path: str, size: int, uri: str) -> None:
        self.store = store
        self.path = path
        self.size = size
        self.uri = uri
        self.name = path.rsplit("/", 1)[-1]
        self.fetched = 0  # bytes of the object asked for so far
        self.buffer = bytearray()
        self.ahead: asyncio.Task[obstore.Bytes] | None = None  # the next range, on its way

    def _fetch_next(self) -> None:
        if self.ahead is None and self.fetched < self.size:
            end = min(self.fetched + CHUNK, self.size)
            self.ahead = asyncio.ensure_future(
                obstore.get_range_async(self.store, self.path, start=self.fetched, end=end)
            )
            self.fetched = end

    async def read(self, n: int = -1) -> bytes:
        want = self.size if n < 0 else n
        self._fetch_next()
        while len(self.buffer) < want and self.ahead is not None:
            ahead, self.ahead = self.ahead, None
            try:
                chunk = await ahead
            except (NotFoundError, FileNotFoundError):
                raise ResultMissing(f"video missing: {self.uri}") from None
            except BaseError as exc:
                raise StoreUnavailable(f"cannot read {self.uri}: {_short(exc)}") from None
            self.buffer += memoryview(chunk)
            self._fetch_next()
        data = bytes(self.buffer[:want])
        del self.buffer[:want]
        return data

    async def aclose(self) -> None:
        if self.ahead is not None:
            self.ahead.cancel()
            with contextlib.suppress(asyncio.CancelledError, BaseError):
                await self.ahead
            self.ahead = None
        self.buffer.clear()


def _short(exc: BaseException) -> str:
    """The first line of the client's error: it goes on to quote the server's XML."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]
