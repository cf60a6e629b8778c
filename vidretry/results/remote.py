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
import os
from collections.abc import AsyncIterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

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
    StoreMisaddressed,
    StoreUnavailable,
    Tally,
    file_chunks,
    too_big,
)
from vidretry.results.listing import check_listing, static_keys

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
    bucket_url: str  # the bucket's own URL: an object is <bucket_url>/<prefix><key>
    region: str
    access_key_id: str | None
    secret_access_key: str | None


class S3ResultStore:
    """``s3://bucket/prefix``: objects ``<prefix><key>``. The credentials are the
    configured keys, else the standard environment's (``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``): one pair, chosen once
    (``listing.static_keys``), for the uploads as for the doctor's signed listing. The
    client is given them explicitly, the session token too (empty with configured keys:
    the environment's belongs to other keys, and the client would send it along); without
    either, the client finds an instance's role's as it does.

    The client is given the bucket's URL as built from the configuration (path-style or
    virtual-hosted: ``StorageConfig.bucket_url``) and told to use it as it is, in both of
    its keys for an endpoint (the environment's ``AWS_ENDPOINT_URL_S3`` would override the
    plain one): left to itself it takes an endpoint for the bucket's own in virtual-hosted
    mode, and a request for ``results/1.mp4`` in bucket ``videos`` lands in a bucket named
    ``results``."""

    def __init__(self, settings: S3Settings, env: Mapping[str, str] = os.environ) -> None:
        self.settings = settings
        self.keys = static_keys(settings.access_key_id, settings.secret_access_key, env)
        config: dict[str, str | bool] = {
            "virtual_hosted_style_request": True,
            "endpoint": settings.bucket_url,
            "aws_endpoint_url_s3": settings.bucket_url,
            "region": settings.region,
        }
        if self.keys is not None:
            config["access_key_id"] = self.keys.access_key_id
            config["secret_access_key"] = self.keys.secret_access_key
            config["session_token"] = self.keys.session_token or ""
        self.store = S3Store(
            settings.bucket,
            config=config,  # type: ignore[arg-type]  # a TypedDict, built key by key
            client_options={
                "allow_http": settings.bucket_url.startswith("http://"),
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
        """A multipart upload that ends, whatever ends it: a stream that fails (the size
        cap, a copy that gives up) or this call cancelled (a copy past the job's time, a
        shutdown) stops the stream, and the client aborts the upload before this returns
        (``_Feed``): no parts left behind, and nothing still reading the stream."""
        object_path = self.settings.prefix + key
        uri = f"{self.uri_prefix}{object_path}"
        tally = Tally(limit, f"the video {key}")
        feed = _Feed(tally.counted(chunks))
        try:
            upload = asyncio.ensure_future(
                obstore.put_async(
                    self.store,
                    object_path,
                    feed,
                    attributes={"Content-Type": "video/mp4"},
                    use_multipart=True,
                    chunk_size=CHUNK,
                    max_concurrency=UPLOAD_CONCURRENCY,
                )
            )
            await asyncio.shield(upload)
        except asyncio.CancelledError:
            await feed.stop(upload)
            raise
        except BaseError as exc:
            raise StoreUnavailable(f"cannot store {uri}: {_short(exc)}") from None
        except (ValueError, TypeError) as exc:
            if feed.failed_with(exc):
                raise
            # The client refuses the object's name ([storage] url's prefix is checked at
            # load: a name it parses otherwise): the store's problem, never the
            # generator's; the worker holds the video, and the admins are told.
            raise StoreUnavailable(f"cannot store {uri}: {_short(exc)}") from None
        return Stored(uri, tally.size, tally.digest.digest())

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
        """Where the objects go, proved without writing anything: the client's own URL for
        an object lies under the bucket's URL, and the bucket answers a signed listing of the
        prefix with its own name and that prefix (``listing``). Without static keys to sign
        the listing with (credentials of an instance's role), a HEAD of a name nobody uses:
        the server answered and took the signature."""
        settings = self.settings
        where = f"{self.uri_prefix}{settings.prefix} at {settings.bucket_url}"
        probe = f"{settings.prefix}.vidretry-doctor"
        keys = self.keys
        if keys is None:
            await self._head(probe, where)
            return f"{where} (addressing not proved: no access key to sign a listing with)"
        try:
            signed = await obstore.sign_async(self.store, "GET", probe, timedelta(minutes=1))
        except BaseError as exc:
            raise StoreUnavailable(f"{where}: {_short(exc)}") from None
        except (ValueError, TypeError) as exc:
            raise StoreMisaddressed(f"{where}: the client cannot address {probe}: {exc}") from None
        # The client's URL is percent-encoded ("a b/" as "a%20b/"): compared as the store
        # reads it.
        addressed = unquote(signed.partition("?")[0])
        if addressed != f"{settings.bucket_url}/{probe}":
            raise StoreMisaddressed(
                f"{where}: the client would send {probe} to {addressed}, not under the bucket's URL"
            )
        await asyncio.to_thread(
            check_listing,
            settings.bucket_url,
            settings.bucket,
            settings.prefix,
            keys,
            settings.region,
            datetime.now(UTC),
        )
        return f"{where} (the bucket lists the prefix as its own)"

    async def _head(self, probe: str, where: str) -> None:
        """ "Not found" is the answer wanted. A refusal may also mean credentials that may not
        list the bucket (S3 answers 403 for a missing object then): said so."""
        try:
            await obstore.head_async(self.store, probe)
        except (NotFoundError, FileNotFoundError):
            return
        except (PermissionDeniedError, UnauthenticatedError) as exc:
            raise StoreUnavailable(
                f"{where} refused us ({_short(exc)}): wrong credentials, or ones that may "
                "not list the bucket"
            ) from None
        except BaseError as exc:
            raise StoreUnavailable(f"{where}: {_short(exc)}") from None
        except (ValueError, TypeError) as exc:
            raise StoreMisaddressed(f"{where}: the client cannot address {probe}: {exc}") from None

    async def delete(self, uris: Sequence[str]) -> None:
        """S3's DeleteObjects: up to 1,000 objects a request."""
        try:
            await obstore.delete_async(self.store, [self._path(uri) for uri in uris])
        except (NotFoundError, FileNotFoundError):
            return
        except BaseError as exc:
            shown = uris[0] if len(uris) == 1 else f"{len(uris)} videos"
            raise StoreUnavailable(f"cannot delete {shown}: {_short(exc)}") from None


class _Halted(Exception):
    """The upload's stream was stopped: the client aborts the upload."""


class _Feed:
    """The stream the client uploads, pulled by the client itself (each pull a task on the
    event loop), which can be stopped. Cancelling the client's call would not stop it: the
    client would go on pulling the stream while it is closed, and leave its multipart upload
    open. Stopped, the stream fails at once (a pull under way is cancelled), which the
    client answers as any failing stream: it aborts the upload and returns."""

    # After a stop, how long the client may take to abort before it is let go (the bucket's
    # lifecycle rule takes what it leaves: docs/deployment.md).
    ABORT_SECONDS = 30.0

    def __init__(self, chunks: AsyncIterable[bytes]) -> None:
        self.chunks = aiter(chunks)
        self.pulling: asyncio.Task[object] | None = None
        self.halted = False
        self.error: BaseException | None = None  # what the stream itself raised

    def __aiter__(self) -> _Feed:
        return self

    async def __anext__(self) -> bytes:
        if self.halted:
            raise _Halted
        self.pulling = asyncio.current_task()
        try:
            return await anext(self.chunks)
        except StopAsyncIteration:
            raise
        except asyncio.CancelledError:
            if self.halted:
                raise _Halted from None
            raise
        except Exception as exc:
            self.error = exc
            raise
        finally:
            self.pulling = None

    def failed_with(self, exc: BaseException) -> bool:
        """Whether ``exc``, raised by the client, is the stream's own error passed on."""
        error = self.error
        return error is not None and (
            exc is error or (type(exc) is type(error) and exc.args == error.args)
        )

    async def stop(self, upload: asyncio.Future[Any]) -> None:
        """Stop the stream and wait for the client to abort the upload."""
        self.halted = True
        if self.pulling is not None:
            self.pulling.cancel()
        with contextlib.suppress(Exception):  # _Halted, as it should; or the client's own
            await asyncio.wait_for(upload, self.ABORT_SECONDS)


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
