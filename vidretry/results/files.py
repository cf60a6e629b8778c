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
import hashlib
import os
import stat
from collections.abc import AsyncIterable, Sequence
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote_from_bytes, unquote, urlsplit

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
# How a video kept where it is is opened: read-only, not inherited by a generator, never
# waiting (a FIFO at the output opens at once, and is then no regular file), and never
# through a symlink (that is ELOOP: Results.keep then looks where it leads, and refuses it
# outside vidretry's directories).
_READ_ONLY = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY | os.O_NOFOLLOW


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
        stored = await self.keep_in_place(str(path.absolute()), limit=limit)  # noqa: ASYNC240 (getcwd at most)
        if stored is None:
            raise IsADirectoryError(errno.EISDIR, "not a regular file", str(path))
        return stored

    async def keep_in_place(self, path: str, *, limit: int) -> Stored | None:
        """Keep the video at ``path`` (absolute, in this store's directory) where it is: its
        size and SHA-256 are read. None if it is not a regular file; ``OSError`` (ELOOP) if
        it is a symlink.

        One open, whose fstat tells a small video (read and hashed here, as one read costs
        less than a thread's hop) from a larger one (read in a thread: it would hold the
        loop up). Plain strings and ``os`` calls: pathlib would cost more than the reading."""
        fd = os.open(path, _READ_ONLY)
        try:
            status = os.fstat(fd)
            if not stat.S_ISREG(status.st_mode):
                return None
            if status.st_size > limit:
                raise too_big(f"the video {os.path.basename(path)}", status.st_size, limit)
            if status.st_size <= SMALL:
                return _measure(fd, status.st_size, path, limit)
            return await asyncio.to_thread(_measure, fd, status.st_size, path, limit)
        finally:
            os.close(fd)

    def _inside(self, path: Path) -> bool:
        """Whether ``path`` is already a file of this store's directory."""
        return path.resolve().parent == self.directory.resolve()

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


def _measure(fd: int, size: int, path: str, limit: int) -> Stored:
    """A video kept where it is: its size and SHA-256. The first read asks for one byte more
    than ``fstat`` said (at most ``CHUNK``): a small video comes whole and short of it, which
    for a regular file means its end. A full read (a large video, or one that grew
    meanwhile) goes on to the end, ``CHUNK`` at a time."""
    want = min(size + 1, CHUNK)
    chunk = os.read(fd, want)
    # Path(path).as_uri(), for a path pathlib would leave as it is.
    uri = "file://" + quote_from_bytes(os.fsencode(path))
    if len(chunk) < want:  # all of it: at most ``size`` bytes, so within the limit
        return Stored(uri, len(chunk), hashlib.sha256(chunk).digest())
    tally = Tally(limit, f"the video {os.path.basename(path)}")
    tally.add(chunk)
    while chunk := os.read(fd, CHUNK):
        tally.add(chunk)
    return Stored(uri, tally.size, tally.digest.digest())


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
