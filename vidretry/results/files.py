"""The directory store (``file:///srv/videos``): the default, ``[worker] output_dir``.

A video the generator wrote into the directory is kept where it is: only its size and
SHA-256 are read. Anything else is copied in through a temporary name and renamed into
place, so a reader never sees half a video. Objects are ``file://`` URIs; a bare absolute
path (what vidretry recorded before it kept URIs) is read as one. Only what is inside the
directory (symlinks followed) is ever read or deleted: a URI naming anything else is
``ResultRefused``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
from collections.abc import AsyncIterable, Sequence
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

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


def path_of(uri: str) -> Path:
    """The local path a ``file://`` URI (or a bare absolute path) names."""
    if uri.startswith("file://"):
        return Path(unquote(urlsplit(uri).path))
    return Path(uri)


# A video this small is measured on the event loop: a thread would cost more than the read.
SMALL = 256 * 1024


class FileStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._real: str | None = None  # the directory, symlinks followed: resolved once

    def owns(self, uri: str) -> bool:
        """A local file's URI (inside the directory or not: ``holds`` tells)."""
        return uri.startswith("file://") or uri.startswith("/")

    def holds(self, path: Path) -> bool:
        """Whether ``path``, its symlinks followed, is inside the directory."""
        return _within(os.path.realpath(path), self._real_directory())

    def _real_directory(self) -> str:
        if self._real is not None:
            return self._real
        real = os.path.realpath(self.directory)
        if os.path.isdir(real):  # kept once it exists (a worker makes it at its first video)
            self._real = real
        return real

    def _confined(self, uri: str) -> str:
        """The real path of a file ``uri`` names inside the directory, or ``ResultRefused``."""
        real = os.path.realpath(path_of(uri))
        if not _within(real, self._real_directory()):
            raise ResultRefused(f"refused: {uri} is outside the video store ({self.directory})")
        return real

    async def put_file(self, path: Path, key: str, *, limit: int) -> Stored:
        # The generator's own {output} is output_dir / name: the same directory object, no
        # syscall to tell; any other path is compared resolved.
        inside = path.parent == self.directory or await asyncio.to_thread(self._inside, path)
        if not inside:
            with path.open("rb") as source:
                return await self.put_chunks(file_chunks(source), key, limit=limit)
        size = path.stat().st_size  # noqa: ASYNC240 (one syscall)
        if size > limit:
            raise too_big(f"the video {path.name}", size, limit)
        if size <= SMALL:
            return self._measure(path, limit)
        return await asyncio.to_thread(self._measure, path, limit)

    def _inside(self, path: Path) -> bool:
        """Whether ``path`` is already a file of this store's directory."""
        return path.resolve().parent == self.directory.resolve()

    def _measure(self, path: Path, limit: int) -> Stored:
        """A video kept where it is: its size and SHA-256, read ``CHUNK`` at a time."""
        tally = Tally(limit, f"the video {path.name}")
        with path.open("rb") as source:
            while chunk := source.read(CHUNK):
                tally.add(chunk)
        return Stored(path.absolute().as_uri(), tally.size, tally.digest.digest())

    async def put_chunks(self, chunks: AsyncIterable[bytes], key: str, *, limit: int) -> Stored:
        target = self.directory / key
        partial = target.with_name(f".{target.name}.part")
        tally = Tally(limit, f"the video {key}")
        try:
            await asyncio.to_thread(self.directory.mkdir, parents=True, exist_ok=True)
            with partial.open("wb") as out:
                async for chunk in tally.counted(chunks):
                    await asyncio.to_thread(out.write, chunk)
            await asyncio.to_thread(os.replace, partial, target)
        except OSError as exc:
            raise StoreUnavailable(f"cannot write {target}: {exc.strerror or exc}") from None
        finally:
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)
        return Stored(target.absolute().as_uri(), tally.size, tally.digest.digest())

    async def open(self, uri: str) -> FileDownload:
        path = path_of(uri)
        try:
            source = await asyncio.to_thread(self._open_confined, uri)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ResultMissing(f"video missing: {uri}") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # made a symlink since it was checked
                raise ResultRefused(f"refused: {uri} became a symlink") from None
            raise StoreUnavailable(f"cannot read {path}: {exc.strerror or exc}") from None
        return FileDownload(source, path.name, os.fstat(source.fileno()).st_size)

    def _open_confined(self, uri: str) -> BinaryIO:
        # The path as checked, its last part not followed if it became a symlink since.
        descriptor = os.open(self._confined(uri), os.O_RDONLY | os.O_NOFOLLOW)
        return os.fdopen(descriptor, "rb")

    async def check(self) -> str:
        """The directory, or the nearest parent that would hold it, must be writable."""
        existing = next(
            (p for p in [self.directory, *self.directory.absolute().parents] if p.exists()),
            Path("/"),
        )
        if not os.access(existing, os.W_OK):
            raise StoreUnavailable(f"{self.directory} is not writable")
        return f"directory {self.directory}"

    async def delete(self, uris: Sequence[str]) -> None:
        await asyncio.to_thread(self._unlink, uris)

    def _unlink(self, uris: Sequence[str]) -> None:
        for uri in uris:
            path = path_of(uri)
            # An unlink removes the directory's entry (a symlink, never its target): the
            # entry's directory must be this one, or one inside it.
            if path.name in ("", ".", "..") or not _within(
                os.path.realpath(path.parent), self._real_directory(), itself=True
            ):
                raise ResultRefused(
                    f"refused to delete {uri}: outside the video store ({self.directory})"
                )
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                raise StoreUnavailable(f"cannot delete {uri}: {exc.strerror or exc}") from None


def _within(real: str, directory: str, *, itself: bool = False) -> bool:
    """Whether the resolved path ``real`` is inside the resolved ``directory`` (or, with
    ``itself``, is it)."""
    return (itself and real == directory) or real.startswith(directory.rstrip(os.sep) + os.sep)


class FileDownload:
    def __init__(self, source: BinaryIO, name: str, size: int) -> None:
        self.source = source
        self.name = name
        self.size = size

    async def read(self, n: int = -1) -> bytes:
        return await asyncio.to_thread(self.source.read, n)

    async def aclose(self) -> None:
        self.source.close()
