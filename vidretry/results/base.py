"""The interface every store implements, the records they return, and what reading back
checks: the size and the SHA-256 recorded when the video was kept."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from vidretry.errors import PermanentError, VidretryError

MIB = 1024 * 1024
# A bot uploads a file in at most 4,000 parts of 512 KiB: 2,000 MiB (MTProto's limit for bots).
TELEGRAM_BOT_UPLOAD_LIMIT = 2000 * MIB
# What a store reads or writes at a time: memory stays bounded whatever a video's size.
CHUNK = 8 * MIB


@dataclass(frozen=True)
class Stored:
    """A kept video: where it is, its size, and the SHA-256 of its bytes (None for both: a
    result recorded without them, as before schema 19)."""

    uri: str
    size: int | None
    sha256: bytes | None


class StoreUnavailable(VidretryError):
    """The store cannot be reached or refused us (network, a 5xx, wrong credentials): an
    outage of infrastructure, never the generator's failure."""

    exit_code = 3


class StoreMisaddressed(VidretryError):
    """The store answers for another bucket or place than the configured one: objects would
    not be where their URIs say."""


class ResultMissing(VidretryError):
    """The video is not (or no longer) where its URI says."""


class ResultRefused(VidretryError):
    """The URI names something that is not the store's (a file outside its directory, an
    object outside its prefix): never read, never deleted."""


class ResultCorrupt(VidretryError):
    """The bytes read back are not the bytes kept (size or SHA-256 differ)."""


class ResultTooBig(PermanentError):
    """The video is larger than a bot may upload to Telegram: retrying cannot help."""


class Download(Protocol):
    """A kept video, read back as a stream of known size (what Telegram's upload takes)."""

    @property
    def name(self) -> str: ...

    @property
    def size(self) -> int: ...

    async def read(self, n: int = -1) -> bytes:
        """Exactly ``n`` bytes, fewer only at the end (Telegram's parts must keep one size)."""
        ...

    async def aclose(self) -> None: ...


class ResultStore(Protocol):
    def owns(self, uri: str) -> bool:
        """Whether ``uri`` names an object of this store."""
        ...

    async def put_file(self, path: Path, key: str, *, limit: int) -> Stored:
        """Keep the local file ``path`` as ``key``; at most ``limit`` bytes."""
        ...

    async def put_chunks(self, chunks: AsyncIterable[bytes], key: str, *, limit: int) -> Stored:
        """Keep a stream of bytes as ``key``; at most ``limit`` bytes."""
        ...

    async def open(self, uri: str) -> Download: ...

    async def delete(self, uris: Sequence[str]) -> None:
        """Remove the objects (several in one request where the store can); one already gone
        is no error."""
        ...

    async def check(self) -> str:
        """Whether the store answers, changing nothing: what it is, or ``StoreUnavailable``."""
        ...


class Tally:
    """The size and SHA-256 of bytes as they stream past, and the limit on their size."""

    def __init__(self, limit: int, what: str) -> None:
        self.limit = limit
        self.what = what
        self.size = 0
        self.digest = hashlib.sha256()

    def add(self, chunk: bytes | memoryview) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise too_big(self.what, self.size, self.limit, exact=False)
        self.digest.update(chunk)

    async def counted(self, chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            self.add(chunk)
            yield chunk


def too_big(what: str, size: int, limit: int, *, exact: bool = True) -> ResultTooBig:
    amount = f"{size / MIB:,.0f} MiB" if exact else f"over {limit / MIB:,.0f} MiB"
    return ResultTooBig(
        f"{what} is {amount}: Telegram lets a bot upload at most {limit / MIB:,.0f} MiB"
    )


class Verified:
    """A download that checks, as its last bytes are read, that they are the bytes kept:
    ``ResultCorrupt`` from that read, so an upload of wrong bytes never completes."""

    def __init__(self, download: Download, uri: str, size: int, sha256: bytes | None) -> None:
        self.download = download
        self.uri = uri
        self.expected_size = size
        self.expected_sha256 = sha256
        self.digest = hashlib.sha256()
        self.seen = 0

    @property
    def name(self) -> str:
        return self.download.name

    @property
    def size(self) -> int:
        return self.expected_size

    async def read(self, n: int = -1) -> bytes:
        data = await self.download.read(n)
        self.digest.update(data)
        self.seen += len(data)
        if self.seen > self.expected_size or (not data and self.seen < self.expected_size):
            raise ResultCorrupt(f"{self.uri}: {self.seen} bytes, {self.expected_size} kept")
        if self.seen == self.expected_size and self.expected_sha256 is not None:
            if self.digest.digest() != self.expected_sha256:
                raise ResultCorrupt(f"{self.uri}: the SHA-256 differs from the one kept")
            self.expected_sha256 = None  # checked once
        return data

    async def aclose(self) -> None:
        await self.download.aclose()


async def file_chunks(source: BinaryIO) -> AsyncIterator[bytes]:
    """A local file's bytes, ``CHUNK`` at a time, read in a thread."""
    while chunk := await asyncio.to_thread(source.read, CHUNK):
        yield chunk


def object_key(asset_id: int, retry_round: int, attempt_token: str, source: str) -> str:
    """The name a video is kept under: its asset, retry round and attempt (two attempts never
    share one), with the source's extension when it has a plain one (else ``.mp4``)."""
    # The last part of the path, as pathlib names it (without building a Path for each job).
    name = source.split("?", 1)[0].rstrip("/").rpartition("/")[2]
    dot = name.rfind(".")
    suffix = name[dot:].lower() if 0 < dot < len(name) - 1 else ""
    if not (2 <= len(suffix) <= 6 and suffix[1:].isalnum()):
        suffix = ".mp4"
    return f"{asset_id}-g{retry_round}-{attempt_token}{suffix}"
